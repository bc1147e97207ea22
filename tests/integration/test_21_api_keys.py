"""Push API keys (issue 4 item 2; SPEC §3, README "HTTP API"): with
push.api_keys set, POST /push, POST /broadcast and GET/POST /send need
`Authorization: Bearer <key>` with any one of the keys (so keys can be
rotated); anything else is 401 {"error":"unauthorized","message":…} and
nothing is delivered. The operator endpoints stay open. Every push call
counts in pushbridge_push_requests_total{status}."""

import http.client
import urllib.parse

import pytest

from pbutil import unique_uid

KEYS = ["k1-0123456789abcdef", "k2-fedcba9876543210"]


@pytest.fixture
def keyed(module_bridge_factory):
    return module_bridge_factory.shared(config={"push": {"api_keys": KEYS}})


def _bearer(key):
    return {"Authorization": f"Bearer {key}"}


def _unauthorized(st, doc, hdrs=None):
    assert st == 401, (st, doc)
    assert isinstance(doc, dict), f"401 body is not a JSON object: {doc!r}"
    assert doc.get("error") == "unauthorized", doc
    assert isinstance(doc.get("message"), str) and doc["message"], doc
    if hdrs is not None:
        assert "json" in hdrs.get("Content-Type", ""), hdrs.get("Content-Type")


def _calls(uid):
    """(name, method, path, body, headers) of every push call, addressed to
    uid (or to everyone, for broadcast)."""
    form = urllib.parse.urlencode({"uid": uid, "message": "via send"})
    return [
        ("push", "POST", "/push", {"user_id": uid, "event": "e", "data": "via push"}, {}),
        ("push_batch", "POST", "/push", [{"user_id": uid, "data": "via batch"}], {}),
        ("broadcast", "POST", "/broadcast", {"event": "e", "data": "via broadcast"}, {}),
        ("send_get", "GET", "/send?" + form, None, {}),
        ("send_post", "POST", "/send", form.encode(),
         {"Content-Type": "application/x-www-form-urlencoded"}),
    ]


CALL_IDS = [c[0] for c in _calls("x")]


def _call(bridge, name, uid, headers):
    for n, method, path, body, hdrs in _calls(uid):
        if n == name:
            h = dict(hdrs)
            h.update(headers)
            return bridge.json(method, path, body, headers=h)
    raise KeyError(name)


@pytest.mark.parametrize("name", CALL_IDS)
@pytest.mark.parametrize("auth", [
    None,
    "Bearer wrong-key",
    "Bearer " + KEYS[0][:-1],
    "Bearer " + KEYS[0] + "x",
    "Bearer " + KEYS[0].upper(),
    "Bearer " + KEYS[0] + KEYS[1],
    "Bearer ",
    "Bearer",
    KEYS[0],
    "Basic " + KEYS[0],
    "Token " + KEYS[0],
], ids=["missing", "wrong", "prefix_of_key", "key_plus_char", "key_upper_case",
        "two_keys_joined", "empty_bearer", "bearer_alone", "no_scheme", "basic_scheme",
        "token_scheme"])
def test_push_calls_without_a_valid_key_are_401(keyed, name, auth):
    uid = unique_uid()
    c = keyed.uid_client(uid)
    st, doc, hdrs = _call(keyed, name, uid, {} if auth is None else {"Authorization": auth})
    _unauthorized(st, doc, hdrs)
    c.no_message(0.2)
    # The same call with a key goes through, on the same bridge, right after.
    st, doc, _ = _call(keyed, name, uid, _bearer(KEYS[0]))
    assert st == 200, (st, doc)
    assert c.recv_text() in ("via push", "via batch", "via broadcast", "via send")


@pytest.mark.parametrize("key", KEYS, ids=["k1", "k2"])
@pytest.mark.parametrize("name", CALL_IDS)
def test_every_configured_key_is_accepted(keyed, key, name):
    uid = unique_uid()
    c = keyed.uid_client(uid)
    st, doc, _ = _call(keyed, name, uid, _bearer(key))
    assert st == 200, (st, doc)
    expected = {"push": "via push", "push_batch": "via batch", "broadcast": "via broadcast",
                "send_get": "via send", "send_post": "via send"}[name]
    assert c.recv_text() == expected
    if name == "push":
        assert doc == {"delivered": 1}


def test_rotation_old_and_new_key_both_work_in_turn(keyed):
    uid = unique_uid()
    c = keyed.uid_client(uid)
    for i, key in enumerate([KEYS[0], KEYS[1], KEYS[0], KEYS[1]]):
        st, doc, _ = keyed.json("POST", "/push", {"user_id": uid, "data": i},
                                headers=_bearer(key))
        assert (st, doc) == (200, {"delivered": 1})
    assert c.recv_texts(4) == ["0", "1", "2", "3"]


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/stats", "/users/x"])
def test_operator_endpoints_stay_open(keyed, path):
    st, _, body = keyed.http("GET", path)
    assert st == 200, (path, st, body[:200])


def test_401_is_checked_before_the_body(keyed):
    # An unauthenticated caller learns nothing about what a valid body is.
    for body in (b"not json", b"", b"[1,2]", b'{"data":1}'):
        st, doc, _ = keyed.json("POST", "/push", body)
        _unauthorized(st, doc)
    # With a key, the same bad bodies get their 400s.
    st, doc, _ = keyed.json("POST", "/push", b"not json", headers=_bearer(KEYS[1]))
    assert (st, doc["error"]) == (400, "bad_json"), doc


def test_401_carries_www_authenticate(keyed):
    """RFC 7235 3.1: a 401 answer MUST carry a WWW-Authenticate challenge."""
    st, doc, hdrs = keyed.json("POST", "/push", {"user_id": "u", "data": 1})
    _unauthorized(st, doc)
    assert hdrs.get("WWW-Authenticate", "").lower().startswith("bearer"), dict(hdrs)


def test_unauthorized_requests_are_counted(keyed):
    def count(status):
        return keyed.metric("pushbridge_push_requests_total", status=status) or 0

    before_401, before_200 = count("401"), count("200")
    uid = unique_uid()
    c = keyed.uid_client(uid)
    for name in CALL_IDS:
        st, _, _ = _call(keyed, name, uid, {})
        assert st == 401
    st, _, _ = _call(keyed, "push", uid, {"Authorization": "Bearer nope"})
    assert st == 401
    st, _, _ = _call(keyed, "push", uid, _bearer(KEYS[0]))
    assert st == 200
    assert c.recv_text() == "via push"
    # Operator endpoints are not push requests: not counted either way.
    keyed.http("GET", "/stats")
    keyed.http("GET", "/users/" + uid)
    assert count("401") == before_401 + len(CALL_IDS) + 1
    assert count("200") == before_200 + 1


def test_keys_from_environment(bridge_factory):
    b = bridge_factory(env={"PUSHBRIDGE_PUSH_API_KEYS": "env-a,env-b"})
    uid = unique_uid()
    c = b.uid_client(uid)
    st, doc, _ = b.json("POST", "/push", {"user_id": uid, "data": "x"})
    _unauthorized(st, doc)
    for key in ("env-a", "env-b"):
        st, doc, _ = b.json("POST", "/push", {"user_id": uid, "data": key},
                            headers=_bearer(key))
        assert (st, doc) == (200, {"delivered": 1})
        assert c.recv_text() == key
    st, doc, _ = b.json("POST", "/push", {"user_id": uid, "data": "x"},
                        headers=_bearer("env-a,env-b"))
    _unauthorized(st, doc)


def test_no_keys_configured_means_open(bridge):
    uid = unique_uid()
    c = bridge.uid_client(uid)
    assert bridge.push(uid, "open") == (200, {"delivered": 1})
    assert c.recv_text() == "open"


def test_long_authorization_header_is_401_not_a_crash(keyed):
    uid = unique_uid()
    c = keyed.uid_client(uid)
    # Around the bridge's 512-byte header copy, and well inside the
    # request-head budget of libwebsockets (about 4 KiB): a plain 401.
    for n in (504, 505, 506, 511, 512, 513, 3000):
        st, doc, _ = keyed.json("POST", "/push", {"user_id": uid, "data": 1},
                                headers={"Authorization": "Bearer " + "k" * n})
        _unauthorized(st, doc)
    # Beyond the head budget: 431, 401, or the connection is closed
    # without an answer (libwebsockets does that); never a 200.
    try:
        st, doc, _ = keyed.json("POST", "/push", {"user_id": uid, "data": 1},
                                headers={"Authorization": "Bearer " + "k" * 7000})
        assert st in (401, 431), (st, doc)
    except (ConnectionError, http.client.RemoteDisconnected):
        pass
    keyed.assert_alive()
    c.no_message(0.1)
    st, doc, _ = keyed.json("POST", "/push", {"user_id": uid, "data": "ok"},
                            headers=_bearer(KEYS[0]))
    assert (st, doc) == (200, {"delivered": 1})
    assert c.recv_text() == "ok"


def test_600_byte_key_works_and_its_prefixes_are_refused(bridge_factory):
    """Nothing limits the length of a key in the config, so a long random
    key must work; the first bytes of it alone must not."""
    long_key = "L" * 600
    b = bridge_factory(config={"push": {"api_keys": [long_key]}})
    uid = unique_uid()
    c = b.uid_client(uid)
    for n in (505, 511, 599):
        st, doc, _ = b.json("POST", "/push", {"user_id": uid, "data": 1},
                            headers={"Authorization": "Bearer " + long_key[:n]})
        _unauthorized(st, doc)
    c.no_message(0.1)
    st, doc, _ = b.json("POST", "/push", {"user_id": uid, "data": "long"},
                        headers=_bearer(long_key))
    assert (st, doc) == (200, {"delivered": 1}), "a 600-byte key is refused"
    assert c.recv_text() == "long"
