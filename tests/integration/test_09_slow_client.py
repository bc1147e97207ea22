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
