"""A client that stops reading (slow consumer): with ws.slow_client "close"
it is closed with 4009 once its outgoing queue is full; with "drop_oldest" it
stays and loses the oldest events. Either way every other connection gets
everything, in order, without waiting for it."""

import json

import pytest

from pbutil import unique_uid

PAD = "x" * 16000
# Enough bytes to fill the kernel's socket buffers (tcp_wmem max is 4 MB by
# default) several times over, so the bridge's own queue must fill.
N = 400


def _produce(kafka, topic, uid, n=N):
    kafka.produce_many(topic, [(uid, json.dumps({"event": "big", "data": {"i": i, "pad": PAD}}))
                               for i in range(n)])


def _read_all(c, n, timeout=60):
    got = [c.recv_json(timeout=timeout)["data"]["i"] for _ in range(n)]
    assert got == list(range(n))


@pytest.mark.parametrize("limits", [
    {"queue_max_messages": 32, "queue_max_bytes": 64 * 1024 * 1024},
    {"queue_max_messages": 100000, "queue_max_bytes": 256 * 1024},
], ids=["by_messages", "by_bytes"])
def test_slow_client_closed_4009_others_unaffected(bridge_factory, kafka, limits):
    b = bridge_factory(config={"ws": dict(limits, slow_client="close")})
    uid, other_uid = unique_uid(), unique_uid()
    slow = b.ws(rcvbuf=4096)
    slow.login_native(uid)
    fast, _ = b.native_client(uid)
    other, _ = b.native_client(other_uid)
    _produce(kafka, b.topic, uid)
    kafka.produce(b.topic, json.dumps({"data": "other user"}), key=other_uid)
    _read_all(fast, N)
    assert other.recv_json(timeout=20)["data"] == "other user"
    assert slow.expect_close(timeout=30)[0] == 4009
    b.wait_metric("pushbridge_slow_client_closes_total", 1)
    b.wait_user_connections(uid, 1)
    # The bridge goes on delivering to the user's remaining connection.
    assert b.push(uid, "after", event="big") == (200, {"delivered": 1})
    assert fast.recv_json()["data"] == "after"


def test_drop_oldest_keeps_slow_client_with_newest_events(bridge_factory, kafka):
    b = bridge_factory(config={"ws": {"queue_max_messages": 32, "slow_client": "drop_oldest"}})
    uid = unique_uid()
    slow = b.ws(rcvbuf=4096)
    slow.login_native(uid)
    fast, _ = b.native_client(uid)
    _produce(kafka, b.topic, uid)
    _read_all(fast, N)
    # Now the slow client catches up: it sees an increasing subsequence that
    # ends with the newest event, and is still connected.
    seen = []
    while not seen or seen[-1] != N - 1:
        seen.append(slow.recv_json(timeout=30)["data"]["i"])
    assert seen == sorted(set(seen)), "events out of order or duplicated"
    assert len(seen) < N, "nothing was dropped: the test did not back up the queue"
    assert slow.is_open()
    assert b.metric("pushbridge_slow_client_closes_total") in (None, 0)
    assert b.user_connections(uid) == 2


def test_slow_client_does_not_delay_http_push_to_others(bridge_factory, kafka):
    b = bridge_factory(config={"ws": {"queue_max_messages": 64, "slow_client": "close"}})
    uid, other_uid = unique_uid(), unique_uid()
    slow = b.ws(rcvbuf=4096)
    slow.login_native(uid)
    other = b.uid_client(other_uid)
    _produce(kafka, b.topic, uid, n=200)
    # While the slow client's queue fills, pushes to someone else go through.
    for i in range(20):
        assert b.push(other_uid, i) == (200, {"delivered": 1})
        assert other.recv_text(timeout=5) == str(i)
    assert slow.expect_close(timeout=30)[0] == 4009
