"""GET /metrics (SPEC §5): valid Prometheus text whose values follow what
happened."""

import re

from pbutil import metric_value, parse_prometheus, unique_uid, wait_until

REQUIRED = [
    "pushbridge_connections", "pushbridge_users", "pushbridge_events_consumed_total",
    "pushbridge_events_delivered_total", "pushbridge_events_dropped_total",
    "pushbridge_push_requests_total", "pushbridge_slow_client_closes_total",
    "pushbridge_queue_bytes", "pushbridge_delivery_latency_seconds",
    "pushbridge_consumer_lag",
]


def test_exposition_format(bridge):
    st, hdrs, body = bridge.http("GET", "/metrics")
    assert st == 200
    assert hdrs.get("Content-Type", "").startswith("text/plain")
    text = body.decode()
    assert text.endswith("\n")
    parse_prometheus(text)  # every sample line parses
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name in REQUIRED:
        assert name in types, f"no # TYPE line for {name}"
    assert types["pushbridge_delivery_latency_seconds"] == "histogram"
    assert types["pushbridge_events_consumed_total"] == "counter"
    assert types["pushbridge_connections"] == "gauge"


def test_connection_and_user_gauges(bridge):
    assert bridge.metric("pushbridge_connections") == 0
    assert bridge.metric("pushbridge_users") == 0
    uid = unique_uid()
    a = bridge.uid_client(uid)
    bridge.native_client(uid)
    bridge.uid_client(unique_uid())
    assert bridge.metric("pushbridge_connections") == 3
    assert bridge.metric("pushbridge_users") == 2
    a.close()
    bridge.wait_metric("pushbridge_connections", 2)
    assert bridge.metric("pushbridge_users") == 2


def test_kafka_counters(bridge, kafka):
    uid = unique_uid()
    c = bridge.uid_client(uid)
    kafka.produce_many(bridge.topic, [
        (uid, b'{"data":"one"}'),
        (uid, b"not json"),
        (uid, b"[1]"),
        (unique_uid(), b'{"data":"nobody listening"}'),
        (uid, b'{"data":"two"}'),
    ])
    assert c.recv_texts(2, timeout=10) == ["one", "two"]
    t = bridge.topic
    bridge.wait_metric("pushbridge_events_consumed_total", 5, topic=t)
    assert bridge.metric("pushbridge_events_delivered_total", topic=t) == 2
    assert bridge.metric("pushbridge_events_dropped_total", topic=t, reason="not_json") == 1
    assert bridge.metric("pushbridge_events_dropped_total", topic=t, reason="not_object") == 1
    assert bridge.metric("pushbridge_events_dropped_total", topic=t) == 2
    wait_until(lambda: bridge.metric("pushbridge_consumer_lag", topic=t, partition="0") == 0,
               timeout=15, desc="consumer lag 0")
    s = bridge.stats()["topics"][t]
    assert (s["consumed"], s["delivered"], s["dropped"]) == (5, 2, 2)


def test_push_requests_by_status(bridge):
    uid = unique_uid()
    bridge.uid_client(uid)
    for _ in range(3):
        assert bridge.push(uid, "x")[0] == 200
    assert bridge.json("POST", "/push", b"nope")[0] == 400
    assert bridge.json("GET", "/push")[0] == 405
    m = bridge.metrics()
    assert metric_value(m, "pushbridge_push_requests_total", status="200") == 3
    assert metric_value(m, "pushbridge_push_requests_total", status="400") == 1


def test_delivery_latency_histogram(bridge, kafka):
    uid = unique_uid()
    c = bridge.uid_client(uid)
    kafka.produce_many(bridge.topic, [(uid, b'{"data":%d}' % i) for i in range(10)])
    assert len(c.recv_texts(10, timeout=10)) == 10
    m = bridge.metrics()
    buckets = sorted(((float(lab["le"]), v) for lab, v in
                      m["pushbridge_delivery_latency_seconds_bucket"]), key=lambda x: x[0])
    assert buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "histogram buckets are not cumulative"
    count = metric_value(m, "pushbridge_delivery_latency_seconds_count")
    assert count >= 10
    assert buckets[-1][1] == count
    total = metric_value(m, "pushbridge_delivery_latency_seconds_sum")
    assert 0 <= total < count * 10, "latency sum implausible (seconds, not ms?)"


def test_queue_bytes_and_slow_closes_present(bridge):
    m = bridge.metrics()
    assert metric_value(m, "pushbridge_queue_bytes") >= 0
    assert metric_value(m, "pushbridge_slow_client_closes_total") == 0
