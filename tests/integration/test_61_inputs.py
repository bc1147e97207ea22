"""Reading the topics a company already has (SPEC §12, issue 26): kafka.inputs
rules read plain JSON, CloudEvents (binary and structured mode, as the
CloudEvents Python SDK writes them), a Debezium outbox row with its headers and
JSON behind Confluent's Schema Registry prefix, with no producer change. Each
malformed case is dead-lettered naming the rule and the source that failed,
while delivery to everyone else goes on; pos, task state and resume hold."""

import base64
import json
import struct

import pytest

from jwtutil import claims, hs256
from pbutil import assert_data_verbatim, envelope, unique_uid, wait_until

SECRET = "pushbridge-test-secret-0123456789abcdef"

try:  # the real producers' library; the test says why when it is missing
    from cloudevents.v1.http import CloudEvent
    from cloudevents.v1.conversion import to_structured as http_to_structured
    from cloudevents.v1.kafka import to_binary, to_structured
    CE_MISSING = None
except ImportError as e:  # pragma: no cover - tests/run.sh installs it
    CE_MISSING = f"the CloudEvents Python SDK cannot be imported ({e}); tests/run.sh installs it"

needs_ce = pytest.mark.skipif(CE_MISSING is not None, reason=CE_MISSING or "")


class Topics:
    pass


@pytest.fixture(scope="module")
def inputs(module_bridge_factory, kafka):
    """One bridge, one topic per case, each read by its own rule."""
    t = Topics()
    for name in ("orders", "ce", "outbox", "sr", "jobs", "dlt"):
        setattr(t, name, kafka.unique_topic(name))
        kafka.create_topic(getattr(t, name), 1)
    rules = [
        # Plain JSON order events keyed by order ID, to every admin.
        {"topic": t.orders, "format": "json", "target": "group:admins",
         "event": "order.created", "id": "field:/order_id"},
        # CloudEvents with the user in subject.
        {"topic": t.ce, "format": "cloudevents", "target": "ce:subject"},
        # A Debezium outbox: the event type and ID from headers.
        {"topic": t.outbox, "format": "json", "target": "field:/customerId",
         "event": "header:eventType", "id": "header:id"},
        # JSON behind the Schema Registry prefix.
        {"topic": t.sr, "format": "json", "target": "field:/user"},
        # Progress updates of jobs, in the producers' own shape.
        {"topic": t.jobs, "format": "json", "target": "field:/owner", "event": "job.progress",
         "task": "field:/job", "final": {"field:/state": ["done", "failed"]}},
    ]
    b = module_bridge_factory(config={
        "auth": {"mode": "jwt", "jwt_secret": SECRET},
        "kafka": {"inputs": rules, "dead_letter_topic": t.dlt}})
    b.t = t
    return b


def login(b, uid, groups=None):
    extra = {"groups": groups} if groups else {}
    c, welcome = b.native_client(hs256(claims(uid, **extra), SECRET))
    assert welcome["user"] == uid
    return c


def headers_of(kcat_headers):
    return dict(h.split("=", 1) for h in kcat_headers.split(",") if "=" in h)


def dropped(b, topic, reason):
    return b.metric("pushbridge_events_dropped_total", topic=topic, reason=reason) or 0


# ---- plain JSON ---------------------------------------------------------------

def test_plain_json_order_reaches_every_admin_byte_for_byte(inputs, kafka):
    b = inputs
    a1, a2, staff = unique_uid("adm"), unique_uid("adm"), unique_uid("staff")
    c1, c2 = login(b, a1, ["admins"]), login(b, a2, ["admins", "ops"])
    cs = login(b, staff, ["staff"])
    value = b'{"order_id":"o-1",  "total":10.50,"lines":[{"sku":"a"}]}'
    kafka.produce(b.t.orders, value, key="o-1")  # keyed by order ID, as order services key
    for c in (c1, c2):
        raw = c.recv_text(10)
        m = json.loads(raw)
        assert (m["type"], m["event"], m["id"]) == ("event", "order.created", "o-1")
        assert isinstance(m["pos"], str) and m["pos"]
        assert_data_verbatim(raw, value)
    cs.no_message(0.3)
    stats = b.stats()["topics"][b.t.orders]
    assert (stats["rule"], stats["format"]) == (0, "json")
    assert stats["delivered"] >= 2


def test_plain_json_missing_pointer_is_dead_lettered_and_others_go_on(inputs, kafka):
    b = inputs
    uid = unique_uid()
    c = login(b, uid)
    before = dropped(b, b.t.sr, "no_target")
    kafka.produce(b.t.sr, b'{"no_user_here":1}', key="k-1", headers={"trace": "t-9"})
    kafka.produce(b.t.sr, json.dumps({"user": uid, "n": 2}), key="k-2")
    assert c.recv_json(10)["data"] == {"user": uid, "n": 2}
    b.wait_metric("pushbridge_events_dropped_total", before + 1, topic=b.t.sr, reason="no_target")
    # A value of the wrong kind where the target is expected.
    kafka.produce(b.t.sr, b'{"user":{"id":1}}', key="k-3")
    kafka.produce(b.t.sr, json.dumps({"user": uid, "n": 3}), key="k-4")
    assert c.recv_json(10)["data"] == {"user": uid, "n": 3}
    h = wait_letter(b, kafka, b'{"user":{"id":1}}')
    assert (h["pushbridge-reason"], h["pushbridge-rule-source"]) == \
        ("bad_field", "target=field:/user")
    h = wait_letter(b, kafka, b'{"no_user_here":1}')
    assert h["pushbridge-reason"] == "no_target"
    assert h["pushbridge-rule"] == "kafka.inputs[3]"
    assert h["pushbridge-rule-source"] == "target=field:/user"
    assert h["trace"] == "t-9"  # the producer's own headers are kept
    b.wait_log(r"no_target: target: field:/user found nothing \(kafka.inputs\[3\]")


def wait_letter(b, kafka, value, timeout=20):
    """The dead letter carrying value (bytes), with its headers as a dict."""
    found = {}

    def there():
        end = kafka.end_offsets(b.t.dlt).get(0, 0)
        for m in kafka.consume(b.t.dlt, end, timeout=10) if end else []:
            if m["value"] == value:
                found["h"] = headers_of(m["headers"])
                return True
        return False
    wait_until(there, timeout=timeout, interval=0.3, desc=f"dead letter {value[:40]!r}")
    return found["h"]


# ---- Confluent wire format ----------------------------------------------------

def test_schema_registry_json_is_read_and_avro_is_dead_lettered(inputs, kafka):
    b = inputs
    uid = unique_uid()
    c = login(b, uid)
    body = json.dumps({"user": uid, "total": 3}).encode()
    # What Confluent's JSON Schema serializer writes: magic 0, schema ID, JSON.
    kafka.produce(b.t.sr, b"\x00" + struct.pack(">I", 7) + body, key="o-7")
    raw = c.recv_text(10)
    assert_data_verbatim(raw, body)
    assert json.loads(raw)["event"] == b.t.sr  # no name anywhere: the topic's
    # Avro behind the same prefix (a string "ann" and a long 1): not read.
    avro = b"\x00" + struct.pack(">I", 42) + b"\x06ann\x02"
    before = dropped(b, b.t.sr, "unsupported_encoding")
    kafka.produce(b.t.sr, avro, key="o-8")
    kafka.produce(b.t.sr, b"\x00" + struct.pack(">I", 7) + json.dumps({"user": uid}).encode())
    assert c.recv_json(10)["data"] == {"user": uid}
    b.wait_metric("pushbridge_events_dropped_total", before + 1, topic=b.t.sr,
                  reason="unsupported_encoding")
    h = wait_letter(b, kafka, avro)
    assert h["pushbridge-reason"] == "unsupported_encoding"
    assert h["pushbridge-rule"] == "kafka.inputs[3]"
    b.wait_log(r"unsupported_encoding: schema ID 42: the value behind Confluent's wire-format "
               r"prefix is not JSON")


# ---- CloudEvents --------------------------------------------------------------

def ce_event(uid, data, **attrs):
    a = {"type": "com.example.order.created", "source": "/orders", "subject": uid}
    a.update(attrs)
    return CloudEvent(a, data)


def produce_kafka_message(kafka, topic, msg):
    """A cloudevents KafkaMessage (headers, key, value) as it is."""
    kafka.produce(topic, msg.value, key=msg.key,
                  headers={k: v.decode() for k, v in msg.headers.items()})


@needs_ce
def test_cloudevents_binary_mode_from_the_sdk(inputs, kafka):
    b = inputs
    uid = unique_uid()
    c = login(b, uid)
    e = ce_event(uid, {"total": 5}, datacontenttype="application/json", partitionkey="o-1")
    msg = to_binary(e)
    assert "ce_specversion" in msg.headers  # binary mode, as the SDK writes it
    produce_kafka_message(kafka, b.t.ce, msg)
    raw = c.recv_text(10)
    m = json.loads(raw)
    assert (m["event"], m["id"], m["data"]) == ("com.example.order.created", e["id"], {"total": 5})
    assert_data_verbatim(raw, msg.value)
    # Text data (written as it is, not JSON-encoded) arrives as a JSON string.
    e = ce_event(uid, "hello \"there\"", datacontenttype="text/plain")
    produce_kafka_message(kafka, b.t.ce, to_binary(e, data_marshaller=lambda d: d))
    m = c.recv_json(10)
    assert (m["id"], m["data"]) == (e["id"], 'hello "there"')


@needs_ce
def test_cloudevents_structured_mode_with_and_without_its_content_type(inputs, kafka):
    b = inputs
    uid = unique_uid()
    c = login(b, uid)
    # Structured with application/cloudevents+json (the SDK's HTTP structured
    # form: the same JSON event format the Kafka binding carries).
    e1 = ce_event(uid, {"n": 1})
    hdrs, body = http_to_structured(e1)
    assert hdrs["content-type"] == "application/cloudevents+json"
    kafka.produce(b.t.ce, body, headers=hdrs)
    # The SDK's Kafka structured form: the data's type in content-type,
    # no ce_ headers, the whole event in the value.
    e2 = ce_event(uid, {"n": 2}, datacontenttype="application/json")
    msg = to_structured(e2)
    assert msg.headers == {"content-type": b"application/json"}
    produce_kafka_message(kafka, b.t.ce, msg)
    # ... and with no header at all.
    e3 = ce_event(uid, {"n": 3})
    msg = to_structured(e3)
    assert msg.headers == {}
    kafka.produce(b.t.ce, msg.value)
    # Binary data in structured mode: data_base64, passed on as that string.
    e4 = ce_event(uid, b"\x00\x01bytes")
    kafka.produce(b.t.ce, to_structured(e4).value)
    got = [c.recv_json(10) for _ in range(4)]
    assert [(m["event"], m["id"]) for m in got] == \
        [("com.example.order.created", e["id"]) for e in (e1, e2, e3, e4)]
    assert [m["data"] for m in got[:3]] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert base64.b64decode(got[3]["data"]) == b"\x00\x01bytes"


@needs_ce
def test_cloudevent_without_type_or_subject_is_dead_lettered(inputs, kafka):
    b = inputs
    uid = unique_uid()
    c = login(b, uid)
    e = ce_event(uid, {"x": 1})
    no_type = json.loads(to_structured(e).value)
    del no_type["type"]
    no_type = json.dumps(no_type).encode()
    no_subject = json.loads(to_structured(ce_event(uid, {"x": 2})).value)
    del no_subject["subject"]
    no_subject = json.dumps(no_subject).encode()
    kafka.produce(b.t.ce, no_type)
    kafka.produce(b.t.ce, no_subject)
    kafka.produce(b.t.ce, to_structured(ce_event(uid, {"x": 3})).value)
    assert c.recv_json(10)["data"] == {"x": 3}
    h = wait_letter(b, kafka, no_type)
    assert (h["pushbridge-reason"], h["pushbridge-rule"], h["pushbridge-rule-source"]) == \
        ("no_source", "kafka.inputs[1]", "ce:type")
    h = wait_letter(b, kafka, no_subject)
    assert (h["pushbridge-reason"], h["pushbridge-rule-source"]) == \
        ("no_target", "target=ce:subject")


# ---- Debezium outbox ----------------------------------------------------------

def test_debezium_outbox_row_with_id_and_event_type_headers(inputs, kafka):
    b = inputs
    uid = unique_uid()
    c = login(b, uid)
    # What Debezium's outbox event router emits with expand.json.payload and
    # table.fields.additional.placement=type:header:eventType: the key is the
    # aggregate ID, the value the payload, the event ID in header "id".
    payload = json.dumps({"orderId": "o-55", "customerId": uid, "status": "PAID"}).encode()
    kafka.produce(b.t.outbox, payload, key="o-55",
                  headers={"id": "4d5bd5c1-9c34-4c4c-a6f0-8fbb6e1a3d6b",
                           "eventType": "OrderPaid"})
    raw = c.recv_text(10)
    m = json.loads(raw)
    assert (m["event"], m["id"]) == ("OrderPaid", "4d5bd5c1-9c34-4c4c-a6f0-8fbb6e1a3d6b")
    assert_data_verbatim(raw, payload)
    # A row relayed without the eventType header: dead-lettered, the next goes.
    bad = json.dumps({"orderId": "o-56", "customerId": uid}).encode()
    kafka.produce(b.t.outbox, bad, key="o-56", headers={"id": "e-56"})
    good = json.dumps({"orderId": "o-57", "customerId": uid}).encode()
    kafka.produce(b.t.outbox, good, key="o-57", headers={"id": "e-57", "eventType": "OrderPaid"})
    assert c.recv_json(10)["id"] == "e-57"
    h = wait_letter(b, kafka, bad)
    assert (h["pushbridge-reason"], h["pushbridge-rule"], h["pushbridge-rule-source"]) == \
        ("no_source", "kafka.inputs[2]", "event=header:eventType")
    assert h["id"] == "e-56"


# ---- task state, pos, resume ----------------------------------------------------

def test_task_state_pos_and_resume_hold_for_rule_read_events(inputs, kafka):
    b = inputs
    uid = unique_uid()
    token = hs256(claims(uid), SECRET)
    c = login(b, uid)
    for pct, state in ((10, "running"), (60, "running"), (100, "done")):
        kafka.produce(b.t.jobs, json.dumps({"owner": uid, "job": "j-1", "pct": pct,
                                            "state": state}), key="j-1")
    live = [c.recv_json(10) for _ in range(3)]
    assert [(m["event"], m["task"], m["data"]["pct"]) for m in live] == \
        [("job.progress", "j-1", p) for p in (10, 60, 100)]
    assert [m.get("final", False) for m in live] == [False, False, True]
    # The task state keeps the latest; a refreshed page gets it as a snapshot.
    status, body, _ = b.json("GET", f"/users/{uid}/tasks")
    assert status == 200 and [t["data"]["pct"] for t in body["tasks"]] == [100]
    c2, welcome = b.native_client(token)
    snap = c2.recv_json(10)
    assert snap["snapshot"] is True and snap["task"] == "j-1" and snap["final"] is True
    c2.close()
    # Resume from the first pos: exactly the two after it, in order.
    c3 = b.ws()
    c3.send_json({"type": "auth", "token": token, "resume": live[0]["pos"]})
    w = c3.recv_json(10)
    assert w["type"] == "welcome" and w["resumed"] is True
    replay = [c3.recv_json(10) for _ in range(2)]
    assert all(m["pos"] for m in replay)
    assert [m["data"]["pct"] for m in replay] == [60, 100]
    c3.no_message(0.3)


def test_envelope_topics_are_untouched(inputs, kafka):
    b = inputs
    uid = unique_uid()
    c = login(b, uid)
    kafka.produce(b.topic, envelope(data={"k": 1}, event="e"), key=uid)
    m = c.recv_json(10)
    assert (m["event"], m["data"]) == ("e", {"k": 1})
    stats = b.stats()["topics"][b.topic]
    assert (stats["rule"], stats["format"]) == (None, "envelope")


# ---- configuration ------------------------------------------------------------

@pytest.mark.parametrize("rules, message", [
    ([{"topic": "a", "format": "avro"}], "kafka.inputs[0].format"),
    ([{"topic": "a"}, {"topic": "b", "target": "hedaer:user"}],
     "kafka.inputs[1].target: 'hedaer:user': unknown source"),
    ([{"topic": "a", "format": "json", "id": "field:order_id"}],
     "kafka.inputs[0].id: 'field:order_id': a JSON pointer must be empty or start with '/'"),
    ([{"topic": "^orders(", "format": "json"}], "kafka.inputs[0].topic: '^orders(' is not a "
                                                "valid regex"),
], ids=["format", "source", "pointer", "regex"])
def test_bad_rules_exit_2_naming_rule_and_key(run_cli, rules, message):
    r = run_cli(["--check-config"], config={"kafka": {"inputs": rules}})
    assert r.returncode == 2
    assert message in r.stderr


def test_rules_from_the_environment_and_their_topics_consumed(run_cli):
    rules = [{"topic": "orders", "format": "json", "target": "group:admins"}]
    r = run_cli(["--check-config"], env={"PUSHBRIDGE_KAFKA_INPUTS": json.dumps(rules),
                                         "PUSHBRIDGE_AUTH_MODE": "none"})
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["kafka"]["inputs"] == [dict(rules[0], format="json")]
    assert "orders" in cfg["kafka"]["topics"]


# ---- cluster mode ---------------------------------------------------------------

def test_cluster_mode_field_target_is_not_skipped_by_the_key_lookup(bridge_factory, kafka):
    """SPEC §8's look-up of the key before the parse skips events for users
    this node holds no connection for; a target read from the value cannot
    be looked up that way, so such a rule's events are always parsed."""
    orders, push = kafka.unique_topic("orders"), kafka.unique_topic("push")
    kafka.create_topic(orders, 1)
    b = bridge_factory(config={
        "cluster": {"mode": "kafka", "node_name": "n1"}, "push": {"topic": push},
        "history": {"max_events": 0},  # nothing kept: the key look-up is on
        "kafka": {"inputs": [{"topic": orders, "format": "json", "target": "field:/user"}]}})
    uid = unique_uid()
    c = b.uid_client(uid)
    skipped = b.metric("pushbridge_events_skipped_total") or 0
    kafka.produce(b.topic, envelope(data="for nobody here"), key=unique_uid("away"))
    b.wait_metric("pushbridge_events_skipped_total", skipped + 1)
    # Keyed by an order ID no connection has: delivered by the value's user.
    kafka.produce(orders, json.dumps({"user": uid, "order": "o-1"}), key="o-1")
    assert json.loads(c.recv_text(10)) == {"user": uid, "order": "o-1"}


# ---- restart ----------------------------------------------------------------------

def test_restart_rebuilds_task_state_from_a_rule_read_topic(bridge_factory, kafka):
    """The rebuild on start (SPEC §7) reads a rule's topic through its rule."""
    jobs = kafka.unique_topic("jobs")
    kafka.create_topic(jobs, 1)
    cfg = {"kafka": {"inputs": [{"topic": jobs, "format": "json", "target": "field:/owner",
                                 "task": "field:/job", "event": "job.progress"}]}}
    a = bridge_factory(config=cfg)
    uid = unique_uid()
    c = a.uid_client(uid)
    kafka.produce_many(jobs, [("j-7", json.dumps({"owner": uid, "job": "j-7", "pct": p}))
                              for p in (30, 70)])
    assert [json.loads(c.recv_text(10))["pct"] for _ in range(2)] == [30, 70]
    c.close()
    group = a.config["kafka"]["group_id"]
    a.stop()
    b = bridge_factory(config=cfg, topic=a.topic, create_topic=False, group_id=group)
    status, body, _ = b.json("GET", f"/users/{uid}/tasks")
    assert status == 200
    assert [(t["task"], t["event"], t["data"]["pct"]) for t in body["tasks"]] == \
        [("j-7", "job.progress", 70)]


def test_readme_rules_are_valid_configuration(run_cli):
    """Each complete rule README's "Reading the topics you already have" shows."""
    import os
    import re
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    section = readme[readme.index("## Reading the topics you already have"):]
    section = section[:section.index("\n## ", 5)]
    blocks = re.findall(r"```json\n(.*?)```", section, re.S)
    assert len(blocks) == 4  # JSON orders, CloudEvents, Debezium outbox, Schema Registry
    for block in blocks:
        cfg = json.loads(block)
        cfg["auth"] = {"mode": "none"}
        r = run_cli(["--check-config"], config=cfg)
        assert r.returncode == 0, (block, r.stderr)
        assert json.loads(r.stdout)["kafka"]["inputs"][0]["topic"] == \
            cfg["kafka"]["inputs"][0]["topic"]
