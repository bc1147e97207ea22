"""Connection limits: per user (4008) and total (1013), and the incoming
message size limit (1009), each configurable (also through the environment),
each freeing its slot when a connection goes."""

import json

from pbutil import unique_uid, wait_until
from wsclient import ABNORMAL_CLOSURE, ConnectionClosed, WsHandshakeError


def test_per_user_limit_from_env_closes_4008(bridge_factory):
    b = bridge_factory(env={"PUSHBRIDGE_WS_MAX_CONNECTIONS_PER_USER": "2"})
    uid = unique_uid()
    first, _ = b.native_client(uid)
    second = b.uid_client(uid)
    third = b.ws()
    third.send_json({"type": "auth", "token": uid})
    msg = third.recv_json()
    if msg.get("type") == "error":
        assert third.expect_close()[0] == 4008
    else:
        raise AssertionError(f"third connection of {uid} was accepted: {msg}")
    # Other users are not affected.
    other, welcome = b.native_client(unique_uid())
    assert welcome["type"] == "welcome"
    # The first two still work.
    assert b.push(uid, "both", event="e") == (200, {"delivered": 2})
    assert first.recv_json()["data"] == "both"
    assert second.recv_text() == "both"


def test_per_user_limit_slot_freed_on_close(bridge_factory):
    b = bridge_factory(config={"ws": {"max_connections_per_user": 1}})
    uid = unique_uid()
    first = b.uid_client(uid)
    extra = b.ws()
    extra.send_json({"uid": uid})
    assert extra.expect_close()[0] == 4008
    first.close()
    b.wait_user_connections(uid, 0)
    again = b.uid_client(uid)
    assert b.send(uid, "back")[0] == 200
    assert again.recv_text() == "back"


def test_seed_token_form_counts_against_per_user_limit(bridge_factory):
    b = bridge_factory(config={"ws": {"max_connections_per_user": 1}})
    tok = unique_uid()
    c = b.ws()
    c.login_token(tok, "e1")
    extra = b.ws()
    extra.send_json({"token": tok, "event": "e2"})
    assert extra.expect_close()[0] == 4008


def _connect_or_status(b):
    """A WebSocket that survives the handshake and a login, or the reason it
    did not: ("close", code) or ("http", status)."""
    try:
        c = b.ws()
    except WsHandshakeError as e:
        return None, ("http", e.status)
    try:
        c.send_json({"type": "auth", "token": unique_uid()})
        msg = c.recv_json()
    except AssertionError:
        return None, ("close", c.close_received[0] if c.close_received else None)
    except (ConnectionClosed, OSError):
        return None, ("close", c.close_received[0] if c.close_received else ABNORMAL_CLOSURE)
    if msg.get("type") == "welcome":
        return c, None
    return None, ("close", c.expect_close()[0])


def test_total_connection_limit_closes_1013(bridge_factory):
    b = bridge_factory(config={"ws": {"max_connections": 3}})
    conns = []
    for _ in range(3):
        c, why = _connect_or_status(b)
        assert c is not None, why
        conns.append(c)
    c, why = _connect_or_status(b)
    assert c is None
    assert why == ("close", 1013), why
    # Established connections keep working.
    assert b.json("POST", "/broadcast", {"data": "hi"})[:2] == (200, {"delivered": 3})
    for c in conns:
        assert c.recv_json()["data"] == "hi"
    # Closing one frees the slot.
    conns[0].close()
    wait_until(lambda: b.stats()["connections"] == 2, timeout=10,
               desc="connections == 2 in /stats")
    c, why = _connect_or_status(b)
    assert c is not None, why


def test_total_limit_counts_unauthenticated_connections(bridge_factory):
    b = bridge_factory(config={"ws": {"max_connections": 2}})
    idle1, idle2 = b.ws(), b.ws()
    c, why = _connect_or_status(b)
    assert c is None and why == ("close", 1013), why
    idle1.close()
    idle2.close()
    wait_until(lambda: _connect_or_status(b)[0] is not None, timeout=10,
               desc="a new connection once the idle ones closed")


def test_incoming_message_limit_configurable(bridge_factory):
    b = bridge_factory(config={"ws": {"max_message_bytes": 128}})
    uid = unique_uid()
    c = b.ws()
    login = json.dumps({"type": "auth", "token": uid, "events": ["x" * 60]})
    assert len(login) <= 128
    c.send_text(login)
    assert c.recv_json()["type"] == "welcome"
    c.send_text(json.dumps({"type": "ping", "pad": "p" * 128}))
    assert c.expect_close()[0] == 1009
    big_login = b.ws()
    big_login.send_text(json.dumps({"type": "auth", "token": uid, "events": ["y" * 200]}))
    assert big_login.expect_close()[0] == 1009
