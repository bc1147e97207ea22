"""Malformed HTTP input (SPEC §3): the right status and a JSON error
{"error": code, "message": sentence naming the field}, and afterwards the
bridge still serves and delivers."""

import json
import socket

import pytest

from pbutil import unique_uid

MAX_BODY = 2048
MAX_BATCH = 10


@pytest.fixture
def shared(module_bridge_factory):
    """The bridge these tests share (a fresh one after a crash)."""
    return module_bridge_factory.shared(config={"push": {"max_body_bytes": MAX_BODY,
                                                  "max_batch": MAX_BATCH}})


@pytest.fixture
def healthy(shared):
    """A logged-in connection; after the test a good push must reach it."""
    uid = unique_uid()
    c = shared.uid_client(uid)
    yield c
    shared.assert_alive()
    st, doc = shared.push(uid, "still alive")
    assert (st, doc) == (200, {"delivered": 1})
    assert c.recv_text() == "still alive"


def _error(doc, code, field=None):
    assert isinstance(doc, dict), f"error body is not a JSON object: {doc!r}"
    assert doc.get("error") == code, doc
    assert isinstance(doc.get("message"), str) and doc["message"], doc
    if field:
        assert field in doc["message"], f"message does not name {field!r}: {doc!r}"


@pytest.mark.parametrize("body", [
    b"",
    b"not json",
    b'{"user_id":"u1","data":',
    b'{"user_id":"u1","data":"\xc3\x28"}',
    b"[" * 1500,
    b'{"user_id":"u1"} extra',
    b"{'user_id':'u1'}",
], ids=["empty", "garbage", "truncated", "bad_utf8", "deep_unclosed", "trailing", "single_quotes"])
def test_push_bad_json(shared, healthy, body):
    st, doc, hdrs = shared.json("POST", "/push", body, headers={"Content-Type": "application/json"})
    assert st == 400
    _error(doc, "bad_json")
    assert "json" in hdrs.get("Content-Type", "")


@pytest.mark.parametrize("body", [b'"a string"', b"42", b"null", b"true"])
def test_push_body_not_object_or_array(shared, healthy, body):
    st, doc, _ = shared.json("POST", "/push", body)
    assert st == 400
    assert doc["error"] in ("bad_json", "bad_field"), doc


def test_push_missing_user_id_names_it(shared, healthy):
    st, doc, _ = shared.json("POST", "/push", {"event": "e", "data": 1})
    assert st == 400
    _error(doc, "missing_field", "user_id")


@pytest.mark.parametrize("body, field", [
    ({"user_id": {"a": 1}, "data": 1}, "user_id"),
    ({"user_id": ["u"], "data": 1}, "user_id"),
    ({"user_id": "", "data": 1}, "user_id"),
    ({"user_id": "x" * 257, "data": 1}, "user_id"),
    ({"user_id": "u1", "event": 5, "data": 1}, "event"),
    ({"user_id": "u1", "event": {"x": 1}, "data": 1}, "event"),
], ids=["uid_object", "uid_array", "uid_empty", "uid_too_long", "event_number", "event_object"])
def test_push_bad_field_names_it(shared, healthy, body, field):
    st, doc, _ = shared.json("POST", "/push", body)
    assert st == 400
    _error(doc, "bad_field", field)


def test_push_body_over_limit_is_413(shared, healthy):
    body = {"user_id": "u1", "data": "x" * (MAX_BODY + 10)}
    st, doc, _ = shared.json("POST", "/push", body)
    assert st == 413
    _error(doc, "payload_too_large")


def test_push_body_at_limit_is_accepted(shared, healthy):
    uid = unique_uid()
    c = shared.uid_client(uid)
    head = json.dumps({"user_id": uid, "data": ""})[:-2]  # ends with '"'
    body = head + "z" * (MAX_BODY - len(head) - 2) + '"}'
    assert len(body) == MAX_BODY
    st, doc, _ = shared.json("POST", "/push", body.encode())
    assert (st, doc) == (200, {"delivered": 1})
    assert c.recv_text() == "z" * (MAX_BODY - len(head) - 2)


def test_batch_with_a_bad_item_answers_per_item(shared, healthy):
    uid = unique_uid()
    c = shared.uid_client(uid)
    st, doc, _ = shared.json("POST", "/push", [
        {"user_id": uid, "data": "one"},
        {"data": "no target"},
        {"user_id": uid, "event": 7, "data": "bad event"},
        {"user_id": uid, "data": "two"},
    ])
    assert st == 200
    res = doc["results"] if isinstance(doc, dict) else doc
    assert len(res) == 4
    assert res[0] == {"delivered": 1} and res[3] == {"delivered": 1}
    _error(res[1], "missing_field", "user_id")
    _error(res[2], "bad_field", "event")
    assert c.recv_texts(2) == ["one", "two"]
    c.no_message(0.1)


def test_batch_over_max_batch_is_rejected(shared, healthy):
    uid = unique_uid()
    c = shared.uid_client(uid)
    st, doc, _ = shared.json("POST", "/push", [{"user_id": uid, "data": i}
                                               for i in range(MAX_BATCH + 1)])
    assert st in (400, 413)
    assert isinstance(doc.get("error"), str) and doc.get("message")
    c.no_message(0.2)


def test_batch_of_non_objects(shared, healthy):
    st, doc, _ = shared.json("POST", "/push", b"[1, \"two\", null]")
    if st == 200:
        res = doc["results"] if isinstance(doc, dict) else doc
        assert len(res) == 3 and all("error" in r for r in res)
    else:
        assert st == 400 and doc["error"] in ("bad_json", "bad_field")


def test_broadcast_bad_json(shared, healthy):
    st, doc, _ = shared.json("POST", "/broadcast", b"{nope")
    assert st == 400
    _error(doc, "bad_json")


def test_broadcast_bad_event_type(shared, healthy):
    st, doc, _ = shared.json("POST", "/broadcast", {"event": ["x"], "data": 1})
    assert st == 400
    _error(doc, "bad_field", "event")


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/push", "POST"),
    ("PUT", "/push", "POST"),
    ("GET", "/broadcast", "POST"),
    ("DELETE", "/users/someone", "GET"),
    ("POST", "/stats", "GET"),
    ("POST", "/metrics", "GET"),
    ("DELETE", "/send", "GET"),
])
def test_wrong_method_is_405_with_allow(shared, healthy, method, path, allowed):
    st, doc, hdrs = shared.json(method, path, b"{}" if method in ("PUT", "POST") else None)
    assert st == 405
    _error(doc, "method_not_allowed")
    assert allowed in [m.strip() for m in hdrs.get("Allow", "").split(",")], hdrs.get("Allow")


# "/" on the internal listener is the operator page now (SPEC 9).
@pytest.mark.parametrize("path", ["/nope", "/push/extra", "/users", "/index.html", "/readyz/x"])
def test_unknown_path_is_404(shared, healthy, path):
    st, doc, _ = shared.json("GET", path)
    assert st == 404
    _error(doc, "not_found")


def _raw(shared, data, read=True):
    s = socket.create_connection(("127.0.0.1", shared.internal_port), timeout=5)
    try:
        s.sendall(data)
        if not read:
            return b""
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and len(out) > 12:
                    break
        except (socket.timeout, ConnectionResetError):
            pass
        return out
    finally:
        s.close()


@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"\x00\x01\x02\x03\xff\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n" + b"X-Flood: y\r\n" * 2000 + b"\r\n",
    b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
    b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n0\r\n\r\n",
], ids=["garbage", "binary", "long_uri", "header_flood", "negative_length", "huge_length",
        "bad_chunked"])
def test_raw_malformed_requests_do_not_hurt(shared, healthy, data):
    answer = _raw(shared, data)
    if answer:
        assert answer.startswith(b"HTTP/1."), answer[:100]
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 600, answer[:200]
    assert shared.http("GET", "/healthz")[0] == 200


def test_truncated_body_then_disconnect(shared, healthy):
    _raw(shared, b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"user_id\":",
         read=False)
    _raw(shared, b"POST /push HTTP/1.1\r\nHost: x\r\nContent", read=False)
    assert shared.http("GET", "/healthz")[0] == 200


def test_stalled_request_does_not_block_others(shared, healthy):
    # A client that sends half a request and waits must not hold up others.
    s = socket.create_connection(("127.0.0.1", shared.internal_port), timeout=5)
    try:
        s.sendall(b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        uid = unique_uid()
        c = shared.uid_client(uid)
        assert shared.push(uid, "meanwhile") == (200, {"delivered": 1})
        assert c.recv_text() == "meanwhile"
    finally:
        s.close()
