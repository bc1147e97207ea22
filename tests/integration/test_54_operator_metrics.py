"""Metrics for operators (SPEC §5, issue 5): consumer lag per partition,
broker connection state, offset commits, and per-topic consumed/delivered
counts, each read back from GET /metrics and checked against what the test
did."""

from pbutil import envelope, unique_uid, wait_until

PARTITIONS = 3


def _lag_rows(bridge):
    return {int(labels["partition"]): v
            for labels, v in bridge.metrics().get("pushbridge_consumer_lag", [])
            if labels.get("topic") == bridge.topic}


def test_lag_per_partition_commits_and_broker_state(bridge_factory, kafka):
    b = bridge_factory(partitions=PARTITIONS)
    uid = unique_uid()
    c = b.uid_client(uid)
    per_partition = 7
    for p in range(PARTITIONS):
        kafka.produce_many(b.topic, [(uid, envelope(data=f"{p}-{i}")) for i in range(per_partition)],
                           partition=p)
    got = sorted(c.recv_texts(PARTITIONS * per_partition, timeout=20))
    assert got == sorted(f"{p}-{i}" for p in range(PARTITIONS) for i in range(per_partition))

    # One lag row per assigned partition, at 0 once everything is consumed.
    wait_until(lambda: _lag_rows(b) == {p: 0 for p in range(PARTITIONS)}, timeout=15,
               desc=f"lag rows for {PARTITIONS} partitions at 0 (now {_lag_rows(b)})")
    assert b.metric("pushbridge_events_consumed_total", topic=b.topic) == PARTITIONS * per_partition
    assert b.metric("pushbridge_events_delivered_total", topic=b.topic) == PARTITIONS * per_partition
    # Auto-commit runs every second once offsets were stored.
    wait_until(lambda: (b.metric("pushbridge_kafka_commits_total") or 0) >= 1, timeout=15,
               desc="an offset commit")
    assert b.metric("pushbridge_kafka_commit_failures_total") == 0
    # Every delivered offset was stored for the commit (nothing revoked here).
    assert b.metric("pushbridge_kafka_offset_store_failures_total") == 0
    wait_until(lambda: (b.metric("pushbridge_kafka_brokers_up") or 0) >= 1, timeout=15,
               desc="one broker up")
    assert b.metric("pushbridge_kafka_outages_total") == 0
    assert b.metric("pushbridge_kafka_ready") == 1

    # /stats carries the same per-topic view.
    st, stats, _ = b.json("GET", "/stats")
    assert st == 200
    t = stats["topics"][b.topic]
    assert (t["consumed"], t["delivered"], t["lag"]) == (21, 21, 0)

