"""Who may broadcast (issue 14 item 9; README "Security model",
kafka.broadcast_topics): only events from the listed topics may use the
keys * and group:NAME. Any other such event is malformed: counted as
broadcast_not_allowed, logged, dead-lettered with that reason; the
consumer carries on and user-keyed events of the same topic flow."""

import pytest

from pbutil import envelope, unique_uid


def _headers(kcat_headers):
    return dict(h.split("=", 1) for h in kcat_headers.split(",") if "=" in h)


@pytest.fixture
def two_topics(bridge_factory, kafka):
    """Consumes `open_t` (may broadcast) and `closed_t` (may not)."""
    open_t, closed_t, dlt = kafka.unique_topic(), kafka.unique_topic(), kafka.unique_topic()
    for t in (open_t, closed_t, dlt):
        kafka.create_topic(t, 1)
    b = bridge_factory(topic=open_t, create_topic=False, config={
        "kafka": {"topics": [open_t, closed_t], "broadcast_topics": [open_t],
                  "dead_letter_topic": dlt}})
    b.open_t, b.closed_t, b.dlt = open_t, closed_t, dlt
    return b


def test_only_listed_topics_may_broadcast(two_topics, kafka):
    b = two_topics
    uid = unique_uid("bc")
    c = b.uid_client(uid)
    kafka.produce(b.closed_t, envelope(data="from closed to all"), key="*",
                  headers={"trace": "t-9"})
    kafka.produce(b.closed_t, envelope(data="from closed to a group"), key="group:ops")
    kafka.produce(b.closed_t, envelope(data="from closed to the user"), key=uid)
    kafka.produce(b.open_t, envelope(data="from open to all"), key="*")
    # In order per topic; the two refused broadcasts never arrive.
    got = sorted(c.recv_texts(2))
    assert got == ["from closed to the user", "from open to all"], got
    c.no_message(0.3)

    b.wait_metric("pushbridge_events_dropped_total", 2, topic=b.closed_t,
                  reason="broadcast_not_allowed")
    assert b.metric("pushbridge_events_dropped_total", topic=b.open_t,
                    reason="broadcast_not_allowed") in (None, 0)
    b.wait_metric("pushbridge_events_dead_lettered_total", 2, topic=b.closed_t)
    dead = kafka.consume(b.dlt, 2)
    assert [m["key"] for m in dead] == [b"*", b"group:ops"]
    for m in dead:
        h = _headers(m["headers"])
        assert h["pushbridge-reason"] == "broadcast_not_allowed"
        assert h["pushbridge-source-topic"] == b.closed_t
    assert _headers(dead[0]["headers"])["trace"] == "t-9"
    b.wait_log(r"broadcast_not_allowed|not in kafka\.broadcast_topics")


def test_empty_list_means_no_kafka_broadcast_but_http_broadcast_works(bridge_factory, kafka):
    b = bridge_factory(config={"kafka": {"broadcast_topics": []}})
    uid = unique_uid("bc")
    c = b.uid_client(uid)
    kafka.produce(b.topic, envelope(data="to all"), key="*")
    kafka.produce(b.topic, envelope(data="to me"), key=uid)
    assert c.recv_text() == "to me"
    b.wait_metric("pushbridge_events_dropped_total", 1, topic=b.topic,
                  reason="broadcast_not_allowed")
    st, doc = b.json("POST", "/broadcast", {"event": "x", "data": "over http"})[:2]
    assert st == 200 and doc["delivered"] >= 1, (st, doc)
    assert c.recv_text() == "over http"


def test_default_lets_every_topic_broadcast(bridge, kafka):
    uid = unique_uid("bc")
    c = bridge.uid_client(uid)
    kafka.produce(bridge.topic, envelope(data="default"), key="*")
    assert c.recv_text() == "default"
