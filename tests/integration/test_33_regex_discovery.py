"""Regex subscriptions find new topics within seconds (issue 15 item 5;
SPEC §1 "a name starting with ^ is a regex subscription", README "Pointing it
at a real Kafka").

librdkafka matches a regex against the topics it learns at each metadata
refresh, every topic.metadata.refresh.interval.ms (5 minutes by default).
pushbridge sets 5 s when a topic is a regex (kafka.properties may say
otherwise): an event produced on a topic created after the bridge started
reaches a connected client within seconds."""

import time
import uuid

from pbutil import envelope, unique_uid, wait_until


def test_topic_created_after_start_is_consumed_within_seconds(bridge_factory, kafka):
    prefix = f"pbre-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(f"{prefix}-first", 1)
    # The bridge becomes ready once the topic that exists is assigned.
    b = bridge_factory(topic=f"^{prefix}-.*", create_topic=False)
    uid = unique_uid()
    c = b.uid_client(uid)
    kafka.produce(f"{prefix}-first", envelope(data="first"), key=uid)
    assert c.recv_text(timeout=15) == "first"

    later = kafka.create_topic(f"{prefix}-later", 1)
    created = time.monotonic()
    kafka.produce(later, envelope(data="later"), key=uid)
    assert c.recv_text(timeout=30) == "later"
    took = time.monotonic() - created
    # One refresh interval (5 s) plus a rebalance, on a loaded machine.
    assert took < 20, f"the new topic's event took {took:.1f} s"
    wait_until(lambda: (b.metric("pushbridge_events_delivered_total", topic=later) or 0) == 1,
               timeout=5, desc="the new topic counted under its own name")
