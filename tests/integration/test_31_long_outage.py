"""An outage longer than the consumer group's session timeout (issue 15 items
2 and 7; SPEC §1 "delivers what was produced during the outage", README
"failure modes").

Without static membership the bridge comes back as a new member and the
coordinator, which restored the old member with the group, waits for that
member's session to expire before it hands out the partitions: delivery
resumes a whole session.timeout.ms after the broker is back. With
group.instance.id (from cluster.node_name and the public port) it takes the
partitions back at once.

The scenario is scaled down: session.timeout.ms 15 s (default 45 s) and an
outage of ~20 s instead of 55 s. Events must arrive well within the session
timeout of the broker's return, and the consumer must survive the lost
session (librdkafka 2.0.2 would commit the lost assignment's offsets and be
fenced for good: see forget_stored_offsets in kafka.c).

Item 7: this is the outage in which "offset commit failed: Waiting for
coordinator" used to be logged every second. No warning may repeat for one
cause more than once per 10 s window (plus the line that counts the rest)."""

import collections
import re
import time

from pbutil import envelope, unique_uid, wait_until

SESSION_MS = 15000
N = 5


def test_delivery_within_seconds_after_an_outage_longer_than_the_session(bridge_factory, kafka):
    b = bridge_factory(config={"kafka": {"properties": {
        "auto.offset.reset": "earliest", "session.timeout.ms": str(SESSION_MS),
        "heartbeat.interval.ms": "1000"}}})
    assert re.search(r"member \S+:%d" % b.public_port, b.log_text()), \
        "the bridge joins as a static member named after its node and port"
    uid = unique_uid()
    c = b.uid_client(uid)
    kafka.produce(b.topic, envelope(data="before"), key=uid)
    assert c.recv_text(timeout=15) == "before"
    # Committed before the outage, so that "before" is not delivered again.
    wait_until(lambda: (b.metric("pushbridge_kafka_commits_total") or 0) >= 1, timeout=15,
               desc="the offset of 'before' committed")

    kafka.stop()
    stopped = time.monotonic()
    try:
        # Produce while the broker is away so that auto-commit has something
        # to commit and fails for the whole outage.
        producer = kafka.buffering_producer(b.topic, [envelope(data=f"during-{i}")
                                                      for i in range(N)], key=uid)
        # The scenario: the bridge's session runs out while the broker is down.
        b.wait_log(r"session timed out|Consumer group session", timeout=SESSION_MS / 1000 + 15)
        wait_until(lambda: time.monotonic() - stopped > SESSION_MS / 1000.0 + 3, timeout=30,
                   desc="an outage longer than session.timeout.ms")
    finally:
        kafka.start()
    back = time.monotonic()

    got = c.recv_texts(N, timeout=60)
    delay = time.monotonic() - back
    assert got == [f"during-{i}" for i in range(N)]
    assert producer.wait(timeout=30) == 0
    # Well within one session timeout of the broker's return.
    assert delay < SESSION_MS / 1000.0 * 0.6, f"delivered {delay:.1f} s after the broker was back"
    b.wait_ready(timeout=15)

    # Item 7: every warning of the outage, digits aside, at most once per
    # 10 s window and its count line.
    warnings = re.findall(r"^\S+ warn +(.*)$", b.log_text(), re.MULTILINE)
    counts = collections.Counter(re.sub(r"\d+", "N", w) for w in warnings)
    outage_s = back - stopped + delay
    for text, n in counts.items():
        assert n <= outage_s / 10 + 2, f"{n} x {text!r} in a {outage_s:.0f} s outage"
    assert (b.metric("pushbridge_kafka_commit_failures_total") or 0) <= outage_s / 10 + 2
