"""Events held up by a broker outage are delivered on every partition (issue
15 item 1; SPEC §1 "delivers what was produced during the outage", README
"failure modes").

kafka.max_event_age_ms skips the stale backlog a bridge finds when it is
assigned a partition. It must stop there, at the end of that backlog, on a
partition that had no traffic since the bridge started just as on a busy
one: a producer that buffered events through an outage delivers them, older
than max_event_age_ms by then, and a connected reader gets every one."""

import time

from pbutil import envelope, unique_uid, wait_until

AGE_MS = 4000  # shorter than the outage below, so held-up events are "old"
N = 10


def _lag(b, partition):
    return b.metric("pushbridge_consumer_lag", topic=b.topic, partition=partition)


def test_held_up_events_delivered_on_busy_and_quiet_partitions(bridge_factory, kafka):
    b = bridge_factory(partitions=2, config={"kafka": {"max_event_age_ms": AGE_MS}})
    uid = unique_uid()
    c = b.uid_client(uid)
    # Partition 0 has traffic after start; partition 1 stays quiet.
    kafka.produce(b.topic, envelope(data="p0-before"), key=uid, partition=0)
    assert c.recv_text(timeout=15) == "p0-before"
    # The bridge has fetched the quiet partition once (its lag is known):
    # that is where its backlog at assignment ended.
    wait_until(lambda: _lag(b, 1) == 0 and _lag(b, 0) == 0, timeout=15,
               desc="consumer lag known (0) on both partitions")

    kafka.stop()
    try:
        producers = [kafka.buffering_producer(b.topic, [envelope(data=f"p{p}-{i}")
                                                        for i in range(N)],
                                              key=uid, partition=p)
                     for p in (0, 1)]
        handed_over = time.time()
        # The outage has to outlast max_event_age_ms: that is the scenario.
        wait_until(lambda: time.time() - handed_over > AGE_MS / 1000.0 + 1.0, timeout=15,
                   desc="held-up events older than kafka.max_event_age_ms")
    finally:
        kafka.start()

    got = c.recv_texts(2 * N, timeout=90)
    received = time.time()
    for p in (0, 1):
        assert producers[p].wait(timeout=60) == 0
        assert [g for g in got if g.startswith(f"p{p}-")] == [f"p{p}-{i}" for i in range(N)], got
    assert (b.metric("pushbridge_events_dropped_total", topic=b.topic, reason="stale") or 0) == 0
    # They really were older than the limit when they arrived.
    stamps = [m["timestamp"] / 1000.0 for m in kafka.consume(b.topic, N, partition=1)]
    assert len(stamps) == N
    assert min(received - ts for ts in stamps) > AGE_MS / 1000.0
