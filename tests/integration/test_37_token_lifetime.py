"""Token lifetime (issue 14 item 2; SPEC §2 "Token lifetime", README
"Token lifetime"): a connection logged in with a JWT that has exp lives no
longer than that token. The bridge asks a native client for a new token
({"type":"refresh","expires_in_ms":N}, 30 s before exp or at half the
remaining life when shorter); {"type":"refresh","token":…} for the same sub
answers {"type":"refreshed","expires_in_ms":N}; another sub or a bad token
gets an error frame and close 4003; a connection still on an expired token
at exp + auth.jwt_leeway_s is closed with 4004. Seed-form clients are never
asked (they get data alone) and are closed with 4004. auth.jwt_require_exp
(default true) refuses tokens without exp.

Tokens here live a few seconds and the leeway is 0, so each test takes the
token's life; waits are for frames, not sleeps."""

import json
import time

import pytest

from jwtutil import claims, hs256
from pbutil import unique_uid

SECRET = "pushbridge-test-secret-0123456789abcdef"


@pytest.fixture
def b(module_bridge_factory):
    return module_bridge_factory.shared(config={
        "auth": {"mode": "jwt", "jwt_secret": SECRET, "jwt_leeway_s": 0}})


def _token(sub, lifetime, **extra):
    return hs256(claims(sub, lifetime=lifetime, **extra), SECRET)


def _native(b, token):
    c = b.ws()
    c.send_json({"type": "auth", "token": token})
    welcome = c.recv_json()
    assert welcome.get("type") == "welcome", welcome
    return c


def _refresh_request(c, lifetime_s):
    """The refresh request, which must come at half the token's life (it
    is shorter than 60 s), checked once a second."""
    m = c.recv_json(timeout=lifetime_s + 2)
    assert m.get("type") == "refresh" and set(m) == {"type", "expires_in_ms"}, m
    assert isinstance(m["expires_in_ms"], int), m
    assert 0 <= m["expires_in_ms"] <= lifetime_s * 1000 / 2 + 100, m
    return m


def _delivers(b, c, sub, data):
    st, doc = b.push(sub, data, event="check")
    assert st == 200 and doc["delivered"] == 1, (st, doc)
    m = c.recv_json()
    assert (m["type"], m["data"]) == ("event", data), m


def test_refresh_keeps_the_connection_past_the_first_exp(b):
    sub = unique_uid("tl")
    c = _native(b, _token(sub, 4))
    old_exp = time.time() + 4
    _refresh_request(c, 4)
    c.send_json({"type": "refresh", "token": _token(sub, 300)})
    m = c.recv_json()
    assert m.get("type") == "refreshed" and set(m) == {"type", "expires_in_ms"}, m
    assert 290000 <= m["expires_in_ms"] <= 300000, m
    # Past the first token's exp (and a sweep), the connection still lives
    # and is asked for nothing: its token is the new one.
    c.no_message(max(0.0, old_exp - time.time()) + 1.5)
    _delivers(b, c, sub, {"after": "refresh"})
    assert b.user_connections(sub) == 1


def test_expired_token_closes_4004_and_events_flow_until_then(b):
    sub = unique_uid("tl")
    c = _native(b, _token(sub, 3))
    _delivers(b, c, sub, {"n": 1})
    _refresh_request(c, 3)
    code, reason = c.expect_close(timeout=5)
    assert code == 4004, (code, reason)
    b.wait_user_connections(sub, 0)
    b.wait_log(r"token expired .* closing with 4004")


@pytest.mark.parametrize("case", ["other_sub", "bad_signature", "expired", "no_token"])
def test_refresh_refused_closes_4003(b, case):
    sub = unique_uid("tl")
    c = _native(b, _token(sub, 300))
    token = {
        "other_sub": _token(sub + "-other", 300),
        "bad_signature": _token(sub, 300)[:-3] + "AAA",
        "expired": _token(sub, -3600),
        "no_token": None,
    }[case]
    msg = {"type": "refresh"}
    if token is not None:
        msg["token"] = token
    c.send_json(msg)
    err = c.recv_json()
    want = {"other_sub": "wrong_user", "bad_signature": "invalid_token",
            "expired": "token_expired", "no_token": "missing_token"}[case]
    assert err.get("type") == "error" and err.get("code") == want, err
    assert c.expect_close()[0] == 4003
    b.wait_user_connections(sub, 0)


def test_refresh_before_it_is_asked_for_is_accepted(b):
    sub = unique_uid("tl")
    c = _native(b, _token(sub, 300))
    c.send_json({"type": "refresh", "token": _token(sub, 600)})
    m = c.recv_json()
    assert m["type"] == "refreshed" and 590000 <= m["expires_in_ms"] <= 600000, m


def test_seed_form_gets_no_refresh_request_and_closes_4004(b):
    sub = unique_uid("tl")
    c = b.ws()
    c.send_json({"token": _token(sub, 3), "event": "check"})
    b.wait_user_connections(sub, 1)
    st, doc = b.push(sub, "hello", event="check")
    assert (st, doc["delivered"]) == (200, 1)
    assert c.recv_text() == "hello"
    # The only thing that arrives next is the close: no refresh frame,
    # which a seed client would take for data.
    op, payload = c.recv(timeout=6)
    assert op == 0x8, (op, payload)
    assert c.close_received[0] == 4004, c.close_received


def test_token_without_exp_is_refused_by_default(b):
    sub = unique_uid("tl")
    c = b.ws()
    c.send_json({"type": "auth", "token": _token(sub, None)})
    err = c.recv_json()
    assert err["type"] == "error" and err["code"] == "invalid_token", err
    assert "exp" in err["message"], err
    assert c.expect_close()[0] == 4003


def test_token_without_exp_accepted_when_not_required(bridge_factory):
    nb = bridge_factory(config={"auth": {"mode": "jwt", "jwt_secret": SECRET,
                                         "jwt_require_exp": False}})
    sub = unique_uid("tl")
    c = _native(nb, _token(sub, None))
    _delivers(nb, c, sub, {"no": "exp"})


@pytest.mark.parametrize("exp", ["1e400", "-1e400", "1e300", "99999999999999999999999", "-1"])
def test_exp_that_is_not_a_finite_date_is_refused(b, exp):
    sub = unique_uid("tl")
    payload = ('{"sub":"%s","exp":%s}' % (sub, exp)).encode()
    c = b.ws()
    c.send_json({"type": "auth", "token": hs256(payload, SECRET)})
    err = c.recv_json()
    assert err["type"] == "error" and err["code"] == "invalid_token", err
    assert c.expect_close()[0] == 4003
    assert b.user_connections(sub) == 0
