"""Origin allow-list (issue 4 item 4; SPEC §2): ws.allowed_origins holds
exact origins ("https://app.example.com") and patterns
("https://*.example.com", one or more subdomain labels, not the bare
domain). A refused upgrade is answered with HTTP 403 before any WebSocket
frame and counted in pushbridge_origin_refused_total. An empty list accepts
any origin, and a missing Origin header."""

import pytest

from pbutil import envelope, unique_uid
from wsclient import WsHandshakeError

ORIGINS = ["https://app.example.com", "https://*.example.com"]

ALLOWED = [
    "https://app.example.com",
    "https://a.example.com",
    "https://deep.sub.example.com",
    "https://x-1.example.com",
]

REFUSED = [
    "https://evil.com",
    "https://example.com",
    "https://app.example.com.evil.com",
    "https://evilexample.com",
    "https://example.com.evil.com",
    "http://app.example.com",
    "http://a.example.com",
    "https://app.example.com:8443",
    "https://.example.com",
    "null",
    "",
    "https://app.example.co",
    "https://app.example.comm",
    "https://evil.com/https://app.example.com",
    "https://evil.com?https://app.example.com",
    "https://evil.com#.example.com",
    "https://app.example.com@evil.com",
    "ws://app.example.com",
    "https://*.example.com",
]

METRIC = "pushbridge_origin_refused_total"


@pytest.fixture
def guarded(module_bridge_factory):
    return module_bridge_factory.shared(config={"ws": {"allowed_origins": ORIGINS}})


def _refused_count(bridge):
    return bridge.metric(METRIC) or 0


def _upgrade_refused(bridge, origin=None, headers=None):
    """Assert the upgrade is refused with 403 and no WebSocket frame."""
    with pytest.raises(WsHandshakeError) as ei:
        bridge.ws(origin=origin, headers=headers)
    e = ei.value
    assert e.status == 403, f"origin {origin!r}: status {e.status}, expected 403"
    assert "sec-websocket-accept" not in e.headers, e.headers
    assert e.headers.get("upgrade", "").lower() != "websocket", e.headers
    # What follows the status line and headers is an HTTP body (if any),
    # not a WebSocket frame: a frame would start with 0x81/0x88.
    if e.body:
        assert e.body[:1] not in (b"\x81", b"\x88"), e.body[:20]


@pytest.mark.parametrize("origin", ALLOWED)
def test_allowed_origin_upgrades_logs_in_and_receives(guarded, kafka, origin):
    before = _refused_count(guarded)
    c = guarded.ws(origin=origin)
    uid = unique_uid()
    assert c.login_native(uid)["user"] == uid
    kafka.produce(guarded.topic, envelope(event="e", data=origin), key=uid)
    assert c.recv_json(10)["data"] == origin
    assert _refused_count(guarded) == before


@pytest.mark.parametrize("origin", REFUSED, ids=[o or "empty" for o in REFUSED])
def test_refused_origin_gets_403_and_is_counted(guarded, origin):
    uid = unique_uid()
    healthy = guarded.ws(origin=ALLOWED[0])
    healthy.login_native(uid)
    before = _refused_count(guarded)
    _upgrade_refused(guarded, origin=origin)
    assert _refused_count(guarded) == before + 1
    # Delivery to an allowed connection carried on.
    assert guarded.push(uid, "still here", event="x") == (200, {"delivered": 1})
    assert healthy.recv_json()["data"] == "still here"


def test_missing_origin_refused_when_a_list_is_set(guarded):
    before = _refused_count(guarded)
    _upgrade_refused(guarded, origin=None)
    assert _refused_count(guarded) == before + 1


def test_each_refusal_counts_once(guarded):
    before = _refused_count(guarded)
    for origin in ("https://evil.com", "https://example.com", None, "https://evil.com"):
        _upgrade_refused(guarded, origin=origin)
    assert _refused_count(guarded) == before + 4
    # Allowed upgrades do not count.
    for origin in ALLOWED:
        assert guarded.ws_status(origin=origin) == 101
    assert _refused_count(guarded) == before + 4


def test_metric_is_exposed_before_any_refusal(bridge_factory):
    b = bridge_factory(config={"ws": {"allowed_origins": ORIGINS}})
    assert b.metric(METRIC) == 0


def test_refused_upgrade_registers_no_connection(guarded):
    before = guarded.metric("pushbridge_connections")
    for _ in range(5):
        _upgrade_refused(guarded, origin="https://evil.com")
    assert guarded.metric("pushbridge_connections") == before


def test_origin_header_case_and_port_of_allowed_origin(guarded):
    # The header name is case-insensitive (RFC 7230); the value is matched
    # as the browser serialises it.
    assert guarded.ws_status(headers={"ORIGIN": "https://app.example.com"}) == 101
    _upgrade_refused(guarded, headers={"origin": "https://evil.com"})


def test_empty_list_accepts_any_origin(bridge_factory):
    b = bridge_factory(config={"ws": {"allowed_origins": []}})
    for origin in ("https://evil.com", "null", "http://localhost:3000", None):
        assert b.ws_status(origin=origin) == 101, origin
    assert (b.metric(METRIC) or 0) == 0


def test_default_config_accepts_any_origin(bridge):
    for origin in ("https://evil.com", None):
        assert bridge.ws_status(origin=origin) == 101


def test_allowed_origins_from_environment(bridge_factory):
    b = bridge_factory(env={"PUSHBRIDGE_WS_ALLOWED_ORIGINS":
                            "https://one.example.net,https://*.two.example.net"})
    assert b.ws_status(origin="https://one.example.net") == 101
    assert b.ws_status(origin="https://x.two.example.net") == 101
    _upgrade_refused(b, origin="https://two.example.net")
    _upgrade_refused(b, origin="https://evil.com")
    assert b.metric(METRIC) == 2


def test_only_exact_origin_configured(bridge_factory):
    b = bridge_factory(config={"ws": {"allowed_origins": ["https://app.example.com"]}})
    assert b.ws_status(origin="https://app.example.com") == 101
    _upgrade_refused(b, origin="https://a.app.example.com")
    _upgrade_refused(b, origin="https://x.example.com")


def test_origin_check_does_not_touch_internal_api(guarded):
    """Business systems calling the internal API send no Origin."""
    uid = unique_uid()
    c = guarded.ws(origin=ALLOWED[1])
    c.login_native(uid)
    st, doc, _ = guarded.json("POST", "/push", {"user_id": uid, "data": 1},
                              headers={"Origin": "https://evil.com"})
    assert (st, doc) == (200, {"delivered": 1})
    assert c.recv_json()["data"] == 1
