"""/readyz follows the broker whatever the bridge's age (issue 15 item 3;
SPEC §1 "reports not-ready", §3 /readyz).

librdkafka does not always raise ALL_BROKERS_DOWN for a young client (its
bootstrap connection is still counted among the brokers), so a bridge a few
seconds old used to answer 200 for tens of seconds into an outage. The
broker states in librdkafka's statistics (every 2 s) now say it too."""

import json
import time

from pbutil import envelope, unique_uid, wait_until


def _readyz(b):
    st, _, body = b.http("GET", "/readyz")
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    return st, doc


def test_young_bridge_reports_not_ready_within_seconds_of_broker_loss(bridge_factory, kafka):
    b = bridge_factory()
    assert b.http("GET", "/readyz")[0] == 200
    # A bridge about 3 s old: past its first assignment, still young.
    wait_until(lambda: (b.metric("pushbridge_uptime_seconds") or 0) >= 3, timeout=10,
               desc="bridge 3 s old")
    kafka.stop()
    try:
        lost = time.monotonic()

        def not_ready():
            st, doc = _readyz(b)
            return st == 503 and doc
        doc = wait_until(not_ready, timeout=20, interval=0.1, desc="/readyz 503 after broker loss")
        took = time.monotonic() - lost
        assert "unreachable" in doc["message"], doc
        # Statistics come every 2 s (two in a row without a broker); allow
        # for a loaded machine.
        assert took < 10, f"/readyz took {took:.1f} s to notice the broker was gone"
        b.wait_metric("pushbridge_kafka_outages_total", 1, timeout=5)
    finally:
        kafka.start()
    b.wait_ready(timeout=60)
    uid = unique_uid()
    c = b.uid_client(uid)
    kafka.produce(b.topic, envelope(data="after"), key=uid)
    assert c.recv_text(timeout=30) == "after"
