"""The native protocol (SPEC §2): auth -> welcome, one JSON text frame per
event with the producer's data byte for byte, event filters, ping/pong.

In auth.mode none the native token is taken as the user ID, like the
token + event seed form."""

import json

import pytest

from pbutil import assert_data_verbatim, envelope, unique_uid, without_pos


@pytest.fixture
def shared(module_bridge_factory):
    """The bridge these tests share (a fresh one after a crash)."""
    return module_bridge_factory.shared()


def test_welcome_shape(shared):
    uid = unique_uid()
    c = shared.ws()
    welcome = c.login_native(uid)
    assert set(welcome) == {"type", "user", "conn_id", "pos"}
    assert isinstance(welcome["pos"], str) and welcome["pos"]
    assert welcome["type"] == "welcome" and welcome["user"] == uid
    assert isinstance(welcome["conn_id"], str) and welcome["conn_id"]
    c.no_message(0.2)


def test_conn_ids_are_distinct(shared):
    uid = unique_uid()
    ids = {shared.native_client(uid)[1]["conn_id"] for _ in range(5)}
    ids |= {shared.native_client(unique_uid())[1]["conn_id"] for _ in range(5)}
    assert len(ids) == 10


@pytest.mark.parametrize("data", [
    b'{"pct":  42, "msg":"caf\\u00e9 \xe2\x98\xba",  "list":[1 ,2.50,null, 1e3]}',
    b'"a string with \\"quotes\\" and \\n"',
    b"123456789012345678901234567890",
    b"-0.0",
    b"[ ]",
    b"{}",
    b"null",
    b"false",
], ids=["object_odd_spacing", "string", "bignum", "neg_zero", "empty_array", "empty_object",
        "null", "false"])
def test_event_frame_carries_data_byte_for_byte(shared, kafka, data):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    kafka.produce(shared.topic, b'{"event":"task.progress","id":"ev-7","data":' + data + b"}",
                  key=uid)
    raw = c.recv_text(timeout=10)
    msg = json.loads(raw)
    assert msg["type"] == "event"
    assert msg["event"] == "task.progress"
    assert msg["id"] == "ev-7"
    assert set(msg) == {"type", "event", "id", "pos", "data"}
    assert_data_verbatim(raw, data)


def test_event_without_id_has_no_id_member(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    kafka.produce(shared.topic, envelope(event="e", data=1), key=uid)
    assert without_pos(c.recv_json(10)) == {"type": "event", "event": "e", "data": 1}


def test_event_defaults_to_message(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    kafka.produce(shared.topic, envelope(data="hi"), key=uid)
    assert without_pos(c.recv_json(10)) == {"type": "event", "event": "message", "data": "hi"}


def test_event_header_overrides_event_field(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    kafka.produce(shared.topic, envelope(event="from.field", data=1), key=uid,
                  headers={"event": "from.header"})
    assert c.recv_json(10)["event"] == "from.header"


def test_event_with_escapes_in_name_and_id(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid, events=['we"ird\u00e9'])
    kafka.produce(shared.topic, json.dumps({"event": 'we"ird\u00e9', "id": "a\\b\n",
                                            "data": 0}).encode(), key=uid)
    msg = c.recv_json(10)
    assert without_pos(msg) == {"type": "event", "event": 'we"ird\u00e9', "id": "a\\b\n", "data": 0}


def test_missing_data_is_null(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    kafka.produce(shared.topic, b'{"event":"nodata"}', key=uid)
    msg = c.recv_json(10)
    assert msg["event"] == "nodata"
    assert msg.get("data") is None


def test_events_filter(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid, events=["task.progress", "order.new"])
    kafka.produce_many(shared.topic, [
        (uid, envelope(event="chat", data=1)),
        (uid, envelope(event="task.progress", data=2)),
        (uid, envelope(data=3)),
        (uid, envelope(event="order.new", data=4)),
    ])
    assert [c.recv_json(10)["data"] for _ in range(2)] == [2, 4]
    c.no_message(0.2)


def test_empty_events_list_means_all(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid, events=[])
    kafka.produce_many(shared.topic, [(uid, envelope(event=e, data=e)) for e in ("a", "b")])
    assert [c.recv_json(10)["event"] for _ in range(2)] == ["a", "b"]


def test_user_id_field_targets_when_no_key(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    kafka.produce(shared.topic, envelope(data="via field", user_id=uid), key=None)
    assert c.recv_json(10)["data"] == "via field"


def test_key_and_matching_user_id(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    kafka.produce(shared.topic, envelope(data="both", user_id=uid), key=uid)
    assert c.recv_json(10)["data"] == "both"


def test_unicode_user_ids(shared, kafka):
    uid = "\u7528\u6237-" + unique_uid()
    c, welcome = shared.native_client(uid)
    assert welcome["user"] == uid
    kafka.produce(shared.topic, envelope(data="ok"), key=uid)
    assert c.recv_json(10)["data"] == "ok"


@pytest.mark.parametrize("ping", [b'{"type":"ping"}', b'{ "type" : "ping" }\n',
                                  b'{"type": "ping", "ts": 1}'],
                         ids=["compact", "spaced", "extra_member"])
def test_app_ping_pong(shared, ping):
    # Any JSON spelling of the ping is a ping, not only the compact one.
    c, _ = shared.native_client(unique_uid())
    for _ in range(3):
        c.send_text(ping)
        assert c.recv_json() == {"type": "pong"}


def test_unknown_type_error_keeps_connection(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    c.send_json({"type": "what"})
    err = c.recv_json()
    assert err["type"] == "error" and err["code"] == "unknown_message"
    assert isinstance(err["message"], str) and err["message"]
    kafka.produce(shared.topic, envelope(data="still here"), key=uid)
    assert c.recv_json(10)["data"] == "still here"


def test_http_push_native_frame(shared):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    st, doc = shared.json("POST", "/push", {"user_id": uid, "event": "e",
                                            "data": {"x": [1, "2"]}})[:2]
    assert (st, doc) == (200, {"delivered": 1})
    msg = c.recv_json()
    assert (msg["type"], msg["event"], msg["data"]) == ("event", "e", {"x": [1, "2"]})


def test_http_send_to_native_connection(shared):
    # /send carries a plain message: native clients get it as a "message"
    # event whose data is the text.
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    assert shared.send(uid, "hello")[0] == 200
    msg = c.recv_json()
    assert msg["type"] == "event" and msg["event"] == "message" and msg["data"] == "hello"
