"""A client that stops reading (slow consumer): with ws.slow_client "close"
it is closed with 4009 once its outgoing queue is full; with "drop_oldest" it
stays and loses the oldest events. Either way every other connection gets
everything, in order, without waiting for it."""

import json

import pytest

from pbutil import unique_uid

PAD = "x" * 16000
# Enough bytes to fill the kernel's socket buffers several times over, so the
# bridge's own queue for the slow client must fill.
N = 300
# Events are produced CHUNK at a time and every reading client reads each
# chunk before the next is produced: a reader never has more than CHUNK
# events queued, whatever the size of the batches the bridge drains from
# Kafka, while the client that does not read piles up all of them.
CHUNK = 8


def _feed(kafka, topic, uid, readers, n=N):
    for start in range(0, n, CHUNK):
        idx = range(start, min(n, start + CHUNK))
        kafka.produce_many(topic, [(uid, json.dumps({"event": "big", "data": {"i": i, "pad": PAD}}))
                                   for i in idx])
        for r in readers:
            for i in idx:
                got = r.recv_json(timeout=20)["data"]["i"]
                assert got == i, f"reader got event {got}, expected {i}"


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
    _feed(kafka, b.topic, uid, [fast])
    kafka.produce(b.topic, json.dumps({"data": "other user"}), key=other_uid)
    assert other.recv_json(timeout=20)["data"] == "other user"
    # Closed before it reads anything: once it reads, it is no longer slow
    # (ws.slow_client_grace_ms, 5 s, counts from the last frame that left).
    b.wait_metric("pushbridge_slow_client_closes_total", 1, timeout=20)
    assert slow.expect_close(timeout=30)[0] == 4009
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
    _feed(kafka, b.topic, uid, [fast])
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
    kafka.produce_many(b.topic, [(uid, json.dumps({"event": "big", "data": {"i": i, "pad": PAD}}))
                                 for i in range(N)])
    # While the slow client's queue fills, pushes to someone else go through.
    for i in range(20):
        assert b.push(other_uid, i) == (200, {"delivered": 1})
        assert other.recv_text(timeout=5) == str(i)
    assert slow.expect_close(timeout=30)[0] == 4009


def _bytes_until_closed(b, uid, step=8, limit=400):
    """Pushes 16 KB events to uid (a client that does not read) STEP at a
    time, until the bridge closes it as slow; returns the events pushed, or
    None when LIMIT went in without a close."""
    for n in range(step, limit + 1, step):
        for i in range(step):
            assert b.push(uid, {"i": n - step + i, "pad": PAD})[0] == 200
        if b.metric("pushbridge_slow_client_closes_total") == 1:
            return n
    return None


def test_send_buffer_bound_brings_the_queue_bound_into_play(bridge_factory):
    """ws.send_buffer_bytes (issue 9 item 2): with a small kernel send buffer
    a client that stops reading is closed once the bridge's 256 KiB queue is
    full: 16 events of 16 KB plus the few the kernel holds. Without the bound
    the kernel takes megabytes first (autotuned up to tcp_wmem's maximum,
    docs/PERFORMANCE.md), so 40 events (640 KB) would not close it."""
    b = bridge_factory(config={"ws": {"queue_max_bytes": 256 * 1024, "slow_client": "close",
                                      "send_buffer_bytes": 8192,
                                      "slow_client_grace_ms": 0}})
    uid, other_uid = unique_uid(), unique_uid()
    stalled = b.ws(rcvbuf=4096)
    stalled.login_native(uid)
    b.wait_user_connections(uid, 1)
    other = b.uid_client(other_uid)
    pushed = _bytes_until_closed(b, uid, limit=40)
    assert pushed is not None, "40 events of 16 KB did not fill the bound"
    b.wait_user_connections(uid, 0)
    assert b.push(other_uid, "still here") == (200, {"delivered": 1})
    assert other.recv_text() == "still here"
