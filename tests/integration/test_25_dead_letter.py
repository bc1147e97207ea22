"""Dead-letter topic (SPEC §1): with kafka.dead_letter_topic set, every
malformed event is produced there unchanged (key, value and its own headers)
with pushbridge-* headers saying why, counted in
pushbridge_events_dead_lettered_total; the consumer carries on."""

import pytest

from pbutil import envelope, unique_uid

BAD = [
    ("not_json", b"this is not json"),
    ("not_object", b"[1,2,3]"),
    ("bad_field", b'{"event":5,"data":1}'),
]


@pytest.fixture
def dlq_bridge(bridge_factory, kafka):
    dlt = kafka.unique_topic()
    kafka.create_topic(dlt, 1)
    b = bridge_factory(config={"kafka": {"dead_letter_topic": dlt}})
    b.dlt = dlt
    return b


def _headers(kcat_headers):
    """kcat prints headers as name=value,name=value."""
    return dict(h.split("=", 1) for h in kcat_headers.split(",") if "=" in h)


def test_malformed_events_are_dead_lettered_unchanged(dlq_bridge, kafka):
    b = dlq_bridge
    uid = unique_uid()
    c = b.uid_client(uid)
    for _, value in BAD:
        kafka.produce(b.topic, value, key=uid, headers={"trace": "t-1"})
    kafka.produce(b.topic, envelope(data="after the bad ones"), key=uid)
    assert c.recv_text() == "after the bad ones"

    # Counted on the broker's acknowledgement, so the messages are there now.
    b.wait_metric("pushbridge_events_dead_lettered_total", len(BAD), topic=b.topic)
    got = kafka.consume(b.dlt, len(BAD))
    assert [m["value"] for m in got] == [v for _, v in BAD]
    assert all(m["key"] == uid.encode() for m in got)
    for (reason, _), m in zip(BAD, got):
        h = _headers(m["headers"])
        assert h["trace"] == "t-1"  # the producer's own headers are kept
        assert h["pushbridge-reason"] == reason
        assert h["pushbridge-source-topic"] == b.topic
        assert h["pushbridge-source-partition"] == "0"
    offsets = [int(_headers(m["headers"])["pushbridge-source-offset"]) for m in got]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(BAD)
    assert b.metric("pushbridge_dead_letter_failures_total") == 0


def test_good_events_are_not_dead_lettered(dlq_bridge, kafka):
    b = dlq_bridge
    uid = unique_uid()
    c = b.uid_client(uid)
    kafka.produce(b.topic, envelope(data="fine"), key=uid)
    assert c.recv_text() == "fine"
    assert b.metric("pushbridge_events_dead_lettered_total", topic=b.topic) == 0
    assert kafka.end_offsets(b.dlt) == {0: 0}


def test_dead_letter_failure_is_counted_and_never_blocks(bridge_factory, kafka):
    # A topic name Kafka refuses: every dead letter fails, delivery goes on.
    b = bridge_factory(config={"kafka": {"dead_letter_topic": "bad topic name!"}})
    uid = unique_uid()
    c = b.uid_client(uid)
    for i in range(20):
        kafka.produce(b.topic, b"garbage %d" % i, key=uid)
    kafka.produce(b.topic, envelope(data="still flowing"), key=uid)
    assert c.recv_text() == "still flowing"
    b.wait_metric("pushbridge_dead_letter_failures_total", 20, timeout=30)
    assert b.metric("pushbridge_events_dead_lettered_total", topic=b.topic) == 0
    # Logged once per interval, not once per failure.
    b.wait_log(r"cannot produce to dead-letter topic")
    assert b.log_text().count("cannot produce to dead-letter topic") < 5
