"""Malformed Kafka input (SPEC §1): every case is dropped, counted by reason
in pushbridge_events_dropped_total{topic,reason}, logged with topic,
partition, offset and reason, and never stops the consumer: the next good
event reaches a healthy connection, first."""

import json
import re

import pytest

from pbutil import envelope, unique_uid, without_pos

MAX_EVENT_BYTES = 1024

# (case id, key, value, reason): key "UID" stands for the test's user, OTHER
# in a value for a second connected user; a reason of None means "any reason"
# (the contract only says such an event is dropped).
CASES = [
    ("garbage", "UID", b"this is not json", "not_json"),
    ("truncated", "UID", b'{"event":"x","data":', "not_json"),
    ("binary", "UID", b"\xff\xfe\x00\x01binary", "not_json"),
    ("trailing_garbage", "UID", b'{"data":1} {"data":2}', "not_json"),
    ("invalid_utf8_in_string", "UID", b'{"data":"\xc3\x28"}', "not_json"),
    ("deep_nesting", "UID", b"[" * 1000, None),
    ("deep_nesting_object", "UID", b'{"data":' + b"[" * 1000, None),
    ("array", "UID", b"[1,2,3]", "not_object"),
    ("string", "UID", b'"just a string"', "not_object"),
    ("number", "UID", b"42", "not_object"),
    ("null", "UID", b"null", "not_object"),
    ("no_key_no_user_id", None, envelope(data="orphan"), "no_target"),
    ("no_key_user_id_null", None, b'{"data":1,"user_id":null}', None),
    ("no_key_user_id_empty", None, b'{"data":1,"user_id":""}', None),
    ("oversized", "UID", envelope(data="x" * (MAX_EVENT_BYTES + 100)), "oversized"),
    ("key_mismatch", "UID", b'{"data":1,"user_id":"OTHER"}', "key_mismatch"),
    ("event_not_string", "UID", b'{"event":5,"data":1}', "bad_field"),
    ("id_not_string", "UID", b'{"id":{"a":1},"data":1}', "bad_field"),
    ("user_id_object_no_key", None, b'{"data":1,"user_id":{"id":"x"}}', None),
    ("key_too_long", "x" * 257, envelope(data=1), None),
    ("key_invalid_utf8", b"\xff\xfeuser", envelope(data=1), None),
    ("tombstone", "UID", None, None),
]


@pytest.fixture
def shared(module_bridge_factory):
    """The bridge these tests share (a fresh one after a crash)."""
    return module_bridge_factory.shared(config={"kafka": {"max_event_bytes": MAX_EVENT_BYTES}})


def _dropped(bridge, **labels):
    return bridge.metric("pushbridge_events_dropped_total", topic=bridge.topic, **labels) or 0


@pytest.mark.parametrize("case, key, value, reason", CASES, ids=[c[0] for c in CASES])
def test_malformed_event_dropped_and_next_one_delivered(shared, kafka, case, key, value, reason):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    seed = shared.uid_client(uid)
    other_uid = unique_uid()
    other = shared.uid_client(other_uid)
    before_total = _dropped(shared)
    before_reason = _dropped(shared, reason=reason) if reason else None
    if key == "UID":
        key = uid
    if value is not None:
        value = value.replace(b"OTHER", other_uid.encode())
    kafka.produce(shared.topic, value, key=key)
    kafka.produce(shared.topic, envelope(event="good", data={"after": case}), key=uid)
    msg = c.recv_json(timeout=10)
    assert without_pos(msg) == {"type": "event", "event": "good", "data": {"after": case}}
    assert json.loads(seed.recv_text(10)) == {"after": case}
    c.no_message(0.1)
    other.no_message(0.05)
    assert _dropped(shared) == before_total + 1
    if reason:
        assert _dropped(shared, reason=reason) == before_reason + 1
    shared.assert_alive()


def test_storm_of_malformed_events_does_not_stall_good_ones(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    before = _dropped(shared)
    msgs = []
    for i in range(50):
        for bad in (b"nope", b"[1]", b'{"data":1,"user_id":"zz"}', b'{"event":1}'):
            msgs.append((uid, bad))
        msgs.append((uid, json.dumps({"data": i})))
    kafka.produce_many(shared.topic, msgs)
    assert [c.recv_json(timeout=15)["data"] for _ in range(50)] == list(range(50))
    assert _dropped(shared) == before + 200
    for reason in ("not_json", "not_object", "key_mismatch", "bad_field"):
        assert _dropped(shared, reason=reason) >= 50


def test_event_exactly_at_size_limit_is_delivered(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    head, tail = b'{"data":"', b'"}'
    value = head + b"y" * (MAX_EVENT_BYTES - len(head) - len(tail)) + tail
    assert len(value) == MAX_EVENT_BYTES
    kafka.produce(shared.topic, value, key=uid)
    assert c.recv_json(10)["data"] == "y" * (MAX_EVENT_BYTES - len(head) - len(tail))


def test_malformed_event_is_logged_with_topic_partition_offset_reason(bridge_factory, kafka):
    b = bridge_factory(partitions=2)
    uid = unique_uid()
    c, _ = b.native_client(uid)
    kafka.produce(b.topic, b'{"data":1}', key=uid, partition=1)
    kafka.produce(b.topic, b'{"data":2}', key=uid, partition=1)
    kafka.produce(b.topic, b"definitely not json", key=uid, partition=1)
    kafka.produce(b.topic, b'{"data":3}', key=uid, partition=1)
    assert [c.recv_json(10)["data"] for _ in range(3)] == [1, 2, 3]
    # One log line names the topic, the partition (1), the offset (2) and why.
    lines = [ln for ln in b.log_text().splitlines() if b.topic in ln
             and re.search(r"not[ _-]?json", ln, re.I)]
    assert lines, "no log line names the topic and the reason"
    assert any(re.search(r"\b1\b", ln) and re.search(r"\b2\b", ln) for ln in lines), lines
