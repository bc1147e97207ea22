"""JWT login (issue 4 item 1; SPEC §2, README "WebSocket clients" and
"Security model"): auth.mode jwt, the default. HS256 with auth.jwt_secret,
RS256 / ES256 with the PEM file in auth.jwt_public_key; exp/nbf (30 s
leeway), iss, aud honoured; sub is the user; the groups claim feeds
group:NAME routing and POST /broadcast {"group"}.

Every refused login is seen as a browser sees it: one
{"type":"error","code":…,"message":…} text frame, then a close with 4003,
and the user is not registered (GET /users/{sub} says 0 connections).

Tokens are made here (jwtutil): HS256 with hmac, RS256/ES256 with the
openssl command line and keys generated at test time."""

import json
import time
import types

import pytest

import jwtutil
from jwtutil import b64url, claims, es256, hs256, rs256, unsigned
from pbutil import envelope, unique_uid, without_pos

SECRET = "pushbridge-test-secret-0123456789abcdef"
ISSUER = "https://issuer.example.test"
AUDIENCE = "pushbridge-tests"
# Login messages carrying tokens over 8 KiB must reach the JWT check
# instead of being cut by the message size limit (1009).
MAX_MSG = 65536
LEEWAY = 30


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("jwt-keys"))
    return types.SimpleNamespace(
        rsa=jwtutil.KeyPair(d, "rsa", "rsa"),
        rsa_other=jwtutil.KeyPair(d, "rsa", "rsa-other"),
        ec=jwtutil.KeyPair(d, "ec", "ec"),
        ec_other=jwtutil.KeyPair(d, "ec", "ec-other"),
    )


@pytest.fixture
def hs(module_bridge_factory):
    """HS256. auth.mode is left out of the config: jwt is the default."""
    return module_bridge_factory.shared(config={
        "auth": {"mode": None, "jwt_secret": SECRET},
        "ws": {"max_message_bytes": MAX_MSG}})


@pytest.fixture
def strict(module_bridge_factory):
    """HS256 with a required issuer and audience."""
    return module_bridge_factory.shared(config={
        "auth": {"mode": "jwt", "jwt_secret": SECRET, "jwt_issuer": ISSUER,
                 "jwt_audience": AUDIENCE}})


@pytest.fixture
def rsa(module_bridge_factory, keys):
    """RS256: only a public key is configured (no secret)."""
    return module_bridge_factory.shared(config={
        "auth": {"mode": "jwt", "jwt_public_key": keys.rsa.public_path}})


@pytest.fixture
def ec(module_bridge_factory, keys):
    """ES256: only a public key is configured (no secret)."""
    return module_bridge_factory.shared(config={
        "auth": {"mode": "jwt", "jwt_public_key": keys.ec.public_path}})


# ---- helpers ------------------------------------------------------------------

def _login(bridge, token, events=None):
    c = bridge.ws()
    msg = {"type": "auth", "token": token}
    if events is not None:
        msg["events"] = events
    c.send_json(msg)
    return c


def _accepted(bridge, token, user, events=None):
    """A native login that must succeed as `user`; returns the client."""
    c = _login(bridge, token, events)
    welcome = c.recv_json()
    assert welcome.get("type") == "welcome", f"login refused: {welcome!r}"
    assert welcome["user"] == user, welcome
    assert isinstance(welcome.get("conn_id"), str) and welcome["conn_id"], welcome
    return c


def _expect_refusal(c, code):
    msg = c.recv_json()
    assert msg.get("type") == "error", f"expected an error frame, got {msg!r}"
    if isinstance(code, (set, tuple)):
        assert msg.get("code") in code, msg
    else:
        assert msg.get("code") == code, msg
    assert isinstance(msg.get("message"), str) and msg["message"], msg
    assert set(msg) == {"type", "code", "message"}, msg
    got = c.expect_close()
    assert got[0] == 4003, f"close code {got}, expected 4003"
    return msg


def _refused(bridge, token, code, sub=None):
    """A native login that must be refused with `code` (error frame, 4003);
    afterwards `sub` (if given) has no connection."""
    c = _login(bridge, token)
    msg = _expect_refusal(c, code)
    if sub is not None:
        assert bridge.user_connections(sub) == 0
    return msg


def _delivers(bridge, c, user):
    """An HTTP push to `user` reaches the native client c."""
    st, doc = bridge.push(user, {"for": user}, event="check")
    assert st == 200 and doc["delivered"] >= 1, (st, doc)
    m = c.recv_json()
    assert (m["type"], m["event"], m["data"]) == ("event", "check", {"for": user}), m


def _wait_registered(bridge, user, n=1):
    bridge.wait_user_connections(user, n)


# ---- HS256 accepted -------------------------------------------------------------

def test_hs256_valid_token_user_is_sub_and_events_arrive(hs, kafka):
    sub = unique_uid("jwt")
    c = _accepted(hs, hs256(claims(sub), SECRET), sub)
    assert hs.user_connections(sub) == 1
    kafka.produce(hs.topic, envelope(event="task.progress", data={"pct": 40}, id="e1"), key=sub)
    assert without_pos(c.recv_json(10)) == {"type": "event", "event": "task.progress", "id": "e1",
                               "data": {"pct": 40}}
    _delivers(hs, c, sub)


def test_hs256_token_without_exp_is_refused(hs):
    """auth.jwt_require_exp is true by default (test_37 has the rest)."""
    sub = unique_uid("jwt")
    _refused(hs, hs256(claims(sub, lifetime=None), SECRET), "invalid_token", sub)


def test_events_filter_with_jwt_login(hs, kafka):
    sub = unique_uid("jwt")
    c = _accepted(hs, hs256(claims(sub), SECRET), sub, events=["wanted"])
    kafka.produce(hs.topic, envelope(event="unwanted", data=1), key=sub)
    kafka.produce(hs.topic, envelope(event="wanted", data=2), key=sub)
    m = c.recv_json(10)
    assert (m["event"], m["data"]) == ("wanted", 2), m
    c.no_message(0.3)


@pytest.mark.parametrize("field, offset", [("exp", -(LEEWAY - 20)), ("nbf", LEEWAY - 20)],
                         ids=["exp_10s_ago", "nbf_in_10s"])
def test_clock_skew_within_leeway_is_accepted(hs, field, offset):
    sub = unique_uid("jwt")
    c = _accepted(hs, hs256(claims(sub, **{field: int(time.time()) + offset}), SECRET), sub)
    _delivers(hs, c, sub)


# ---- groups -------------------------------------------------------------------------

def test_groups_claim_routes_kafka_group_keys_and_group_broadcast(hs, kafka):
    g = "admins" + unique_uid("")
    other_g = "staff" + unique_uid("")
    a1, a2, st, ng = (unique_uid("jwt") for _ in range(4))
    admin1 = _accepted(hs, hs256(claims(a1, groups=[g, other_g]), SECRET), a1)
    admin2 = _accepted(hs, hs256(claims(a2, groups=[g]), SECRET), a2)
    staff = _accepted(hs, hs256(claims(st, groups=[other_g]), SECRET), st)
    nogroup = _accepted(hs, hs256(claims(ng), SECRET), ng)
    # A user whose *name* is the group name is not a member of it.
    named_like_group = _accepted(hs, hs256(claims(g), SECRET), g)
    # A seed-form login carries the token's groups too, and gets data alone.
    seed = hs.ws()
    seed.send_json({"token": hs256(claims(a1, groups=[g]), SECRET)})
    _wait_registered(hs, a1, 2)

    kafka.produce(hs.topic, envelope(event="ops", data={"n": 1}), key="group:" + g)
    for c in (admin1, admin2):
        m = c.recv_json(10)
        assert (m["type"], m["event"], m["data"]) == ("event", "ops", {"n": 1}), m
    assert json.loads(seed.recv_text(10)) == {"n": 1}

    st_, doc = hs.json("POST", "/broadcast", {"event": "ops", "data": {"n": 2},
                                              "group": g})[:2]
    assert (st_, doc) == (200, {"delivered": 3})
    for c in (admin1, admin2):
        m = c.recv_json()
        assert (m["event"], m["data"]) == ("ops", {"n": 2}), m
    assert json.loads(seed.recv_text()) == {"n": 2}

    # The other group's members, users without groups and the user named
    # like the group got neither.
    for c in (staff, nogroup, named_like_group):
        c.no_message(0.2)
    st_, doc = hs.json("POST", "/broadcast", {"event": "ops", "data": 3, "group": other_g})[:2]
    assert (st_, doc) == (200, {"delivered": 2})
    assert admin1.recv_json()["data"] == 3
    assert staff.recv_json()["data"] == 3
    admin2.no_message(0.2)


def test_group_name_is_matched_exactly(hs, kafka):
    g = "team" + unique_uid("")
    sub = unique_uid("jwt")
    c = _accepted(hs, hs256(claims(sub, groups=[g]), SECRET), sub)
    for key in ("group:" + g.upper(), "group:" + g[:-1], "group:" + g + "x", "group: " + g):
        kafka.produce(hs.topic, envelope(event="ops", data=key), key=key)
    kafka.produce(hs.topic, envelope(event="ops", data="exact"), key="group:" + g)
    assert c.recv_json(10)["data"] == "exact"
    c.no_message(0.2)


# ---- RS256 / ES256 accepted --------------------------------------------------------

def test_rs256_valid_token(rsa, keys, kafka):
    sub = unique_uid("rs")
    c = _accepted(rsa, rs256(claims(sub, groups=["g-rs"]), keys.rsa), sub)
    kafka.produce(rsa.topic, envelope(event="x", data="rs"), key=sub)
    assert c.recv_json(10)["data"] == "rs"
    kafka.produce(rsa.topic, envelope(event="x", data="grp"), key="group:g-rs")
    assert c.recv_json(10)["data"] == "grp"


def test_es256_valid_token(ec, keys, kafka):
    sub = unique_uid("es")
    c = _accepted(ec, es256(claims(sub), keys.ec), sub)
    kafka.produce(ec.topic, envelope(event="x", data="es"), key=sub)
    assert c.recv_json(10)["data"] == "es"
    _delivers(ec, c, sub)


def test_es256_many_tokens_all_verify(ec, keys):
    # r or s with a leading zero byte (about 1 in 128 signatures) must be
    # padded to 32 bytes: a few dozen logins exercise the conversion.
    for _ in range(40):
        sub = unique_uid("es")
        c = _accepted(ec, es256(claims(sub), keys.ec), sub)
        c.close()


# ---- refused: HS256 bridge ----------------------------------------------------------

def _hs_cases():
    now = int(time.time())
    sub = "victim-hs"
    good = hs256(claims(sub), SECRET)
    h, p, s = good.split(".")
    other_payload = b64url(json.dumps(claims("someone-else")))
    return [
        ("alg_none", unsigned(claims(sub)), "invalid_token"),
        ("alg_None", unsigned(claims(sub), alg="None"), "invalid_token"),
        ("alg_NONE", unsigned(claims(sub), alg="NONE"), "invalid_token"),
        ("alg_none_with_hmac_signature",
         jwtutil.signing_input({"alg": "none"}, claims(sub)) + "." + s, "invalid_token"),
        ("wrong_secret", hs256(claims(sub), SECRET + "x"), "invalid_token"),
        ("empty_secret", hs256(claims(sub), ""), "invalid_token"),
        ("signature_stripped", f"{h}.{p}.", "invalid_token"),
        ("payload_swapped_after_signing", f"{h}.{other_payload}.{s}", "invalid_token"),
        ("signature_truncated", f"{h}.{p}.{s[:-4]}", "invalid_token"),
        ("expired", hs256(claims(sub, exp=now - 120), SECRET), "token_expired"),
        ("expired_long_ago", hs256(claims(sub, exp=1), SECRET), "token_expired"),
        ("not_yet_valid", hs256(claims(sub, nbf=now + 120), SECRET), "token_not_yet_valid"),
        ("bad_base64_payload", f"{h}.!!!!{p[4:]}.{s}", "invalid_token"),
        ("standard_base64_not_url", f"{h}.{p}+/.{s}", "invalid_token"),
        ("base64_length_mod_4_is_1", f"{h}.{p}{'A' * ((1 - len(p)) % 4 or 4)}.{s}",
         "invalid_token"),
        ("two_parts", f"{h}.{p}", "invalid_token"),
        ("five_parts_jwe", f"{h}.{p}.{s}.{s}.{s}", "invalid_token"),
        ("header_not_json", b64url(b"not json") + f".{p}." + s, "invalid_token"),
        ("header_without_alg", hs256(claims(sub), SECRET, header={"typ": "JWT"}),
         "invalid_token"),
        ("claims_not_object", hs256(["sub", sub], SECRET), "invalid_token"),
        ("no_sub", hs256({k: v for k, v in claims(sub).items() if k != "sub"}, SECRET), "invalid_token"),
        ("sub_number", hs256(dict(claims(sub), sub=12345), SECRET), "invalid_token"),
        ("sub_star", hs256(claims("*"), SECRET), "bad_user"),
        ("sub_group", hs256(claims("group:admins"), SECRET), "bad_user"),
        ("sub_empty", hs256(claims(""), SECRET), "bad_user"),
        ("sub_over_256_bytes", hs256(claims("s" * 257), SECRET), "bad_user"),
        ("groups_not_names", hs256(claims(sub, groups=[1, 2]), SECRET), "invalid_token"),
        ("rs256_header_on_hs_bridge",
         hs256(claims(sub), SECRET, header={"alg": "RS256"}), "invalid_token"),
        ("plain_user_id_as_token", sub, "invalid_token"),
    ]


HS_CASES = [(c[0], c[2]) for c in _hs_cases()]


@pytest.mark.parametrize("case, code", HS_CASES, ids=[c[0] for c in HS_CASES])
def test_hs256_refused(hs, case, code):
    # Tokens are rebuilt per test: the cases with exp/nbf are relative to now.
    token = {c[0]: c[1] for c in _hs_cases()}[case]
    healthy_sub = unique_uid("jwt")
    healthy = _accepted(hs, hs256(claims(healthy_sub), SECRET), healthy_sub)
    _refused(hs, token, code, sub="victim-hs")
    hs.assert_alive()
    _delivers(hs, healthy, healthy_sub)


def test_token_over_8_kib_refused(hs):
    sub = unique_uid("jwt")
    big = hs256(claims(sub, pad="p" * 6200), SECRET)
    assert len(big) > 8192
    _refused(hs, big, "invalid_token", sub=sub)


def test_token_just_under_8_kib_accepted(hs):
    sub = unique_uid("jwt")
    base = len(hs256(claims(sub, pad=""), SECRET))
    # base64 grows 3 -> 4: pick a pad that lands just under 8192 characters.
    pad = (8192 - base - 8) * 3 // 4
    tok = hs256(claims(sub, pad="p" * pad), SECRET)
    assert 8000 < len(tok) <= 8192, len(tok)
    c = _accepted(hs, tok, sub)
    _delivers(hs, c, sub)


def test_sub_with_nul_does_not_log_in_as_the_prefix(hs):
    victim = unique_uid("victim")
    real = _accepted(hs, hs256(claims(victim), SECRET), victim)
    c = _login(hs, hs256(claims(victim + "\u0000evil"), SECRET))
    msg = c.recv_json()
    if msg.get("type") == "welcome":
        assert msg["user"] == victim + "\u0000evil", (
            f"a token for {victim!r}+NUL+'evil' logged in as {msg['user']!r}")
    else:
        assert msg.get("type") == "error" and msg.get("code") in ("bad_user", "invalid_token"), msg
        assert c.expect_close()[0] == 4003
    # Only the real victim connection is the victim's.
    assert hs.user_connections(victim) == 1
    st, doc = hs.push(victim, "private", event="secret")
    assert (st, doc) == (200, {"delivered": 1})
    assert real.recv_json()["data"] == "private"
    if msg.get("type") == "welcome":
        c.no_message(0.3)


# ---- refused: issuer and audience -----------------------------------------------

def test_issuer_and_audience_accepted(strict):
    sub = unique_uid("jwt")
    c = _accepted(strict, hs256(claims(sub, iss=ISSUER, aud=AUDIENCE), SECRET), sub)
    _delivers(strict, c, sub)
    sub2 = unique_uid("jwt")
    c2 = _accepted(strict, hs256(claims(sub2, iss=ISSUER, aud=["other", AUDIENCE]), SECRET),
                   sub2)
    _delivers(strict, c2, sub2)


@pytest.mark.parametrize("extra, code", [
    ({"iss": "https://evil.example.test", "aud": AUDIENCE}, "wrong_issuer"),
    ({"iss": ISSUER + "/", "aud": AUDIENCE}, "wrong_issuer"),
    ({"aud": AUDIENCE}, "wrong_issuer"),
    ({"iss": [ISSUER], "aud": AUDIENCE}, "wrong_issuer"),
    ({"iss": ISSUER, "aud": "someone-else"}, "wrong_audience"),
    ({"iss": ISSUER, "aud": ["a", "b"]}, "wrong_audience"),
    ({"iss": ISSUER, "aud": AUDIENCE.upper()}, "wrong_audience"),
    ({"iss": ISSUER}, "wrong_audience"),
], ids=["other_issuer", "issuer_trailing_slash", "no_issuer", "issuer_list",
        "other_audience", "audience_list_without_ours", "audience_case", "no_audience"])
def test_wrong_issuer_or_audience_refused(strict, extra, code):
    sub = unique_uid("jwt")
    _refused(strict, hs256(claims(sub, **extra), SECRET), code, sub=sub)


# ---- refused: RS256 bridge (public key only) ------------------------------------------

def test_rs256_signed_with_other_key_refused(rsa, keys):
    sub = unique_uid("rs")
    _refused(rsa, rs256(claims(sub), keys.rsa_other), "invalid_token", sub=sub)


@pytest.mark.parametrize("variant", ["pem_as_is", "pem_without_trailing_newline", "der"])
def test_algorithm_confusion_public_key_as_hs256_secret_refused(rsa, keys, variant):
    """The attacker knows the public key and signs an HS256 token with it as
    the HMAC secret; the bridge has no secret configured at all."""
    import base64
    pem = keys.rsa.public_pem
    secret = {"pem_as_is": pem,
              "pem_without_trailing_newline": pem.rstrip(b"\n"),
              "der": base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))}[variant]
    sub = unique_uid("rs")
    healthy_sub = unique_uid("rs")
    healthy = _accepted(rsa, rs256(claims(healthy_sub), keys.rsa), healthy_sub)
    _refused(rsa, hs256(claims(sub), secret), "invalid_token", sub=sub)
    _delivers(rsa, healthy, healthy_sub)


@pytest.mark.parametrize("case", ["alg_none", "es256_token", "rs512_header", "ps256_header",
                                  "hs256_with_configured_secret_name"])
def test_rs256_bridge_refuses_other_algorithms(rsa, keys, case):
    sub = unique_uid("rs")
    c = claims(sub)
    token = {
        "alg_none": lambda: unsigned(c),
        "es256_token": lambda: es256(c, keys.ec),
        "rs512_header": lambda: rs256(c, keys.rsa, header={"alg": "RS512"}),
        "ps256_header": lambda: rs256(c, keys.rsa, header={"alg": "PS256"}),
        # An HS256 token signed with the secret the other bridges use: this
        # bridge has no secret, so no HS256 token may verify.
        "hs256_with_configured_secret_name": lambda: hs256(c, SECRET),
    }[case]()
    _refused(rsa, token, "invalid_token", sub=sub)


def test_rs256_expired_refused(rsa, keys):
    sub = unique_uid("rs")
    _refused(rsa, rs256(claims(sub, exp=int(time.time()) - 300), keys.rsa), "token_expired",
             sub=sub)


# ---- refused: ES256 bridge -------------------------------------------------------------

@pytest.mark.parametrize("case", ["other_key", "der_signature", "zero_signature",
                                  "r_equals_s_equals_order", "hs256_with_public_pem",
                                  "rs256_token", "alg_none"])
def test_es256_refused(ec, keys, case):
    sub = unique_uid("es")
    c = claims(sub)
    si = jwtutil.signing_input({"alg": "ES256", "typ": "JWT"}, c)
    p256_order = bytes.fromhex(
        "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
    token = {
        "other_key": lambda: es256(c, keys.ec_other),
        "der_signature": lambda: es256(c, keys.ec, der=True),
        # CVE-2022-21449 ("psychic signatures"): r = s = 0 must never verify.
        "zero_signature": lambda: si + "." + b64url(b"\x00" * 64),
        "r_equals_s_equals_order": lambda: si + "." + b64url(p256_order * 2),
        "hs256_with_public_pem": lambda: hs256(c, keys.ec.public_pem),
        "rs256_token": lambda: rs256(c, keys.rsa),
        "alg_none": lambda: unsigned(c),
    }[case]()
    healthy_sub = unique_uid("es")
    healthy = _accepted(ec, es256(claims(healthy_sub), keys.ec), healthy_sub)
    _refused(ec, token, "invalid_token", sub=sub)
    _delivers(ec, healthy, healthy_sub)


def test_es256_not_yet_valid_refused(ec, keys):
    sub = unique_uid("es")
    _refused(ec, es256(claims(sub, nbf=int(time.time()) + 3600), keys.ec),
             "token_not_yet_valid", sub=sub)


# ---- the seed login forms in jwt mode ---------------------------------------------

def test_uid_login_refused_in_jwt_mode(hs):
    c = hs.ws()
    c.send_json({"uid": "1"})
    _expect_refusal(c, "uid_login_disabled")
    assert hs.user_connections("1") == 0


def test_uid_login_refused_even_alongside_a_valid_token(hs):
    sub = unique_uid("jwt")
    c = hs.ws()
    c.send_json({"uid": "1", "token": hs256(claims(sub), SECRET)})
    msg = c.recv_json()
    # Either the uid form is refused, or the token wins; never user "1".
    if msg.get("type") == "error":
        assert msg["code"] == "uid_login_disabled", msg
        assert c.expect_close()[0] == 4003
    assert hs.user_connections("1") == 0


def test_token_event_form_uses_sub_and_gets_plain_data(hs, kafka):
    sub = unique_uid("jwt")
    token = hs256(claims(sub), SECRET)
    c = hs.ws()
    c.send_json({"token": token, "event": "e1"})
    _wait_registered(hs, sub)
    # The token text itself is not a user.
    assert hs.user_connections(token[:200]) == 0
    kafka.produce(hs.topic, envelope(event="e2", data="filtered out"), key=sub)
    kafka.produce(hs.topic, envelope(event="e1", data={"k": 1}), key=sub)
    kafka.produce(hs.topic, envelope(event="e1", data="Hello World"), key=sub)
    assert json.loads(c.recv_text(10)) == {"k": 1}
    assert c.recv_text(10) == "Hello World"
    c.no_message(0.2)
    st, doc = hs.push(sub, "via http", event="e1")
    assert (st, doc) == (200, {"delivered": 1})
    assert c.recv_text() == "via http"


def test_token_form_without_event_gets_all(hs):
    sub = unique_uid("jwt")
    c = hs.ws()
    c.send_json({"token": hs256(claims(sub), SECRET)})
    _wait_registered(hs, sub)
    assert hs.push(sub, "a", event="x") == (200, {"delivered": 1})
    assert hs.push(sub, "b", event="y") == (200, {"delivered": 1})
    assert c.recv_texts(2) == ["a", "b"]


@pytest.mark.parametrize("case, code", [
    ("bad_signature", "invalid_token"),
    ("expired", "token_expired"),
    ("plain_user", "invalid_token"),
])
def test_token_event_form_with_bad_token_refused(hs, case, code):
    sub = unique_uid("jwt")
    token = {"bad_signature": lambda: hs256(claims(sub), "nope"),
             "expired": lambda: hs256(claims(sub, exp=int(time.time()) - 600), SECRET),
             "plain_user": lambda: sub}[case]()
    c = hs.ws()
    c.send_json({"token": token, "event": "e1"})
    _expect_refusal(c, code)
    assert hs.user_connections(sub) == 0


# ---- issue 14 items 6 and 7: kid with a PEM key, crit, duplicate claims -------------

@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_pem_key_accepts_tokens_that_carry_a_kid(rsa, ec, keys, kind):
    """Identity providers send a kid with every token; a PEM key names
    none, so it is tried whatever the kid says."""
    sub = unique_uid("jwt")
    if kind == "rsa":
        b, tok = rsa, rs256(claims(sub), keys.rsa, header={"alg": "RS256", "kid": "idp-key-7"})
    else:
        b, tok = ec, es256(claims(sub), keys.ec, header={"alg": "ES256", "kid": "idp-key-7"})
    c = _accepted(b, tok, sub)
    _delivers(b, c, sub)


def test_pem_key_with_kid_still_checks_the_signature(rsa, keys):
    sub = unique_uid("jwt")
    tok = rs256(claims(sub), keys.rsa_other, header={"alg": "RS256", "kid": "idp-key-7"})
    _refused(rsa, tok, "invalid_token", sub)


def test_crit_header_is_refused(hs):
    """RFC 7515 4.1.11: crit names extensions that must be understood."""
    sub = unique_uid("jwt")
    tok = hs256(claims(sub), SECRET, header={"alg": "HS256", "crit": ["exp"], "exp": 1})
    msg = _refused(hs, tok, "invalid_token", sub)
    assert "crit" in msg["message"], msg


def test_duplicate_claims_are_refused(hs):
    """RFC 7519 4: one reader takes the first sub, another the last."""
    a, b = unique_uid("jwt"), unique_uid("jwt")
    exp = int(time.time()) + 300
    payload = ('{"sub":"%s","exp":%d,"sub":"%s"}' % (a, exp, b)).encode()
    msg = _refused(hs, hs256(payload, SECRET), "invalid_token", a)
    assert "twice" in msg["message"], msg
    assert hs.user_connections(b) == 0
    dup_header = hs256(claims(a), SECRET, header=b'{"alg":"HS256","alg":"HS256"}')
    _refused(hs, dup_header, "invalid_token", a)
