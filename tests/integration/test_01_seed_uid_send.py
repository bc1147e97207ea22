"""Seed flow 1: a browser logs in with {"uid": "123"}, a business system calls
GET|POST /send?uid=123&message=..., the browser gets the message text. The
same login also receives Kafka events as their data alone (SPEC §2)."""

import urllib.parse

import pytest

from pbutil import envelope, unique_uid


@pytest.fixture
def shared(module_bridge_factory):
    """The bridge these tests share (a fresh one after a crash)."""
    return module_bridge_factory.shared()


def test_send_get_delivers_hello_world(shared):
    uid = unique_uid()
    c = shared.uid_client(uid)
    st, _ = shared.json("GET", f"/send?uid={urllib.parse.quote(uid)}&message=Hello%20World")[:2]
    assert st == 200
    assert c.recv_text() == "Hello World"
    c.no_message(0.2)


def test_send_post_form_delivers(shared):
    uid = unique_uid()
    c = shared.uid_client(uid)
    st, _ = shared.send(uid, "posted \u00e9 & more", method="POST")
    assert st == 200
    assert c.recv_text() == "posted \u00e9 & more"


def test_send_post_query_string_delivers(shared):
    uid = unique_uid()
    c = shared.uid_client(uid)
    q = urllib.parse.urlencode({"uid": uid, "message": "via query"})
    st, _, _ = shared.http("POST", "/send?" + q)
    assert st == 200
    assert c.recv_text() == "via query"


def test_send_reaches_every_connection_of_the_uid_only(shared):
    uid, other = unique_uid(), unique_uid()
    a, b = shared.uid_client(uid), shared.uid_client(uid)
    o = shared.uid_client(other)
    st, _ = shared.send(uid, "both tabs")
    assert st == 200
    assert a.recv_text() == "both tabs"
    assert b.recv_text() == "both tabs"
    o.no_message(0.3)


def test_send_missing_uid_is_400_naming_uid(shared):
    st, doc = shared.json("GET", "/send?message=hi")[:2]
    assert st == 400
    assert doc["error"] == "missing_field"
    assert "uid" in doc["message"]


def test_send_to_offline_uid_is_400_no_connection(shared):
    st, doc = shared.send(unique_uid(), "nobody home")
    assert st == 400
    assert doc["error"] == "no_connection"
    assert isinstance(doc["message"], str) and doc["message"]


def test_kafka_string_data_arrives_as_plain_text(shared, kafka):
    uid = unique_uid()
    c = shared.uid_client(uid)
    kafka.produce(shared.topic, envelope(data="Hello World"), key=uid)
    assert c.recv_text(timeout=10) == "Hello World"


def test_kafka_object_data_arrives_as_its_json_text_byte_for_byte(shared, kafka):
    uid = unique_uid()
    c = shared.uid_client(uid)
    raw_data = b'{"pct":  42, "msg":"caf\\u00e9",  "list":[1 ,2.50,null]}'
    kafka.produce(shared.topic, b'{"event":"task.progress","data":' + raw_data + b'}', key=uid)
    op_text = c.recv_text(timeout=10)
    assert op_text.encode() == raw_data


@pytest.mark.parametrize("raw_data, text", [
    (b"17", "17"),
    (b"true", "true"),
    (b"null", "null"),
    (b'"line1\\nline2 \\"q\\" \\u263a"', 'line1\nline2 "q" \u263a'),
    (b"[1, 2]", "[1, 2]"),
])
def test_kafka_non_object_data_forms(shared, kafka, raw_data, text):
    uid = unique_uid()
    c = shared.uid_client(uid)
    kafka.produce(shared.topic, b'{"data":' + raw_data + b'}', key=uid)
    assert c.recv_text(timeout=10) == text


def test_kafka_event_without_key_targets_user_id_field(shared, kafka):
    uid = unique_uid()
    c = shared.uid_client(uid)
    kafka.produce(shared.topic, envelope(data="by field", user_id=uid), key=None)
    assert c.recv_text(timeout=10) == "by field"


def test_seed_login_gets_no_welcome_and_stays_open(shared):
    uid = unique_uid()
    c = shared.uid_client(uid)
    c.no_message(0.2)
    assert shared.user_connections(uid) == 1
