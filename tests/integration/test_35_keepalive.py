"""WebSocket keep-alive (SPEC §2; issue 9): the server pings a connection
that has been quiet for ws.ping_interval_ms, and cuts one that has sent
nothing (no message, no pong) for ws.idle_timeout_ms, without holding up
anyone else. Timings are the smallest the settings allow (whole seconds:
one sweep a second)."""
import time

import pytest

from pbutil import unique_uid
from wsclient import OP_PING, ConnectionClosed


@pytest.fixture
def fast(bridge_factory):
    return bridge_factory(config={"ws": {"ping_interval_ms": 1000, "idle_timeout_ms": 3000}})


def test_quiet_connection_is_pinged_and_stays_while_it_answers(fast):
    c, _ = fast.native_client(unique_uid())
    # recv() answers every ping with a pong; 5 s is past idle_timeout_ms.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        c.no_message(0.5)
    assert len(c.pings_received) >= 2, c.pings_received
    assert c.is_open()


def test_connection_that_never_answers_is_cut(fast):
    uid, other_uid = unique_uid(), unique_uid()
    mute = fast.ws()
    assert mute.login_native(uid)["type"] == "welcome"
    other, _ = fast.native_client(other_uid)
    pings = 0
    t0 = time.monotonic()
    with pytest.raises(ConnectionClosed):
        while time.monotonic() - t0 < 10:
            try:
                _, _, op, _ = mute.recv_frame(timeout=0.2)  # raw: pings are not answered
                pings += op == OP_PING
            except TimeoutError:
                pass
            other.no_message(0.2)  # the other client answers its pings meanwhile
    elapsed = time.monotonic() - t0
    assert pings >= 1, "the server never pinged"
    assert 2.0 <= elapsed <= 6.0, f"cut after {elapsed:.1f} s, idle_timeout_ms is 3 s"
    fast.wait_user_connections(uid, 0)
    # The other connection was answering all along and is still served.
    assert fast.push(other_uid, "still here")[0] == 200
    assert other.recv_json()["data"] == "still here"
