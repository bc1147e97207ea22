"""Kafka as companies run it (SPEC §1, secure clusters; issue 20): a real
broker with SASL_SSL (SCRAM-SHA-512), mutual TLS, OAUTHBEARER and ACLs
(StandardAuthorizer, allow.everyone.if.no.acl.found=false), made by
secure_kafka.SecureKafka and shared by every test of this module.

The good paths deliver through kafka.properties alone. Each refusal leaves
the process up (/healthz 200) and is said in one sentence that names it and
its object: /readyz 503 where consumption stopped (login, certificates, the
group, an event topic), 200 with a "warning" where only a write is refused
(dead-letter and push topics: delivery goes on, a metric counts them, push
calls answer 503 naming the topic); logged once, then once per interval."""

import re
import time

import pytest

from bridge import BridgeFactory
from pbutil import envelope, unique_uid, wait_until
from secure_kafka import MTLS_USER, SecureKafka

BRIDGE = "User:bridge"


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    broker = SecureKafka(str(tmp_path_factory.mktemp("secure-kafka")))
    broker.start()
    yield broker
    broker.stop()
    broker.idp.stop()


@pytest.fixture
def factory(secure, tmp_path):
    f = BridgeFactory(secure, str(tmp_path))
    yield f
    errors = f.teardown()
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


def start(factory, secure, props, bootstrap=None, acl_principal=BRIDGE, topic_acl=True,
          group_acl=True, wait_ready=True, config=None):
    """A bridge on a fresh topic and group, with the ACLs asked for."""
    topic = secure.unique_topic("sec")
    secure.create_topic(topic)
    group = f"g-{unique_uid('s')}"
    rules = []
    if topic_acl:
        rules.append(("topic", topic, "read"))
    if group_acl:
        rules.append(("group", group, "read", "prefixed"))
    if rules and acl_principal:
        secure.allow(acl_principal, *rules)
    props = dict(props)
    props["auto.offset.reset"] = "earliest"
    cfg = {"kafka": {"brokers": bootstrap or secure.sasl_bootstrap, "properties": props}}
    for k, v in (config or {}).items():
        cfg.setdefault(k, {}).update(v)
    return factory(config=cfg, topic=topic, create_topic=False, group_id=group,
                   wait_ready=wait_ready)


def readyz(b):
    st, doc, _ = b.json("GET", "/readyz")
    return st, doc


def wait_refused(b, pattern, timeout=30):
    """Waits for /readyz 503 whose reason matches pattern; checks /healthz
    200 and the process alive. Returns the reason."""
    b.wait_healthy()
    seen = {}

    def refused():
        b.assert_alive()
        st, doc = readyz(b)
        seen["last"] = (st, doc)
        msg = (doc or {}).get("message", "") if st == 503 else ""
        return st == 503 and re.search(pattern, msg)
    wait_until(refused, timeout=timeout, desc=f"/readyz 503 matching {pattern!r} "
                                              f"(last: {seen.get('last')})")
    st, _, _ = b.http("GET", "/healthz")
    assert st == 200
    return seen["last"][1]["message"]


def delivers(b, secure):
    uid = unique_uid()
    c = b.uid_client(uid)
    secure.produce(b.topic, envelope(data="through"), key=uid)
    assert c.recv_text(timeout=15) == "through"


def refusal_lines(b, text):
    return [ln for ln in b.log_text().splitlines() if text in ln and "kafka:" in ln]


def assert_logged_once_per_interval(b, text, started):
    """The refusal repeats on every retry; the log says it once, then once
    per 10 s interval."""
    lines = refusal_lines(b, text)
    assert lines, f"no log line with {text!r}:\n{b.log_tail(4000)}"
    elapsed = time.monotonic() - started
    assert len(lines) <= 1 + int(elapsed / 10) + 1, (elapsed, lines)


# ---- good paths ----------------------------------------------------------

def test_sasl_scram_delivers_with_acls(factory, secure):
    b = start(factory, secure, secure.sasl_properties())
    delivers(b, secure)
    st, doc = readyz(b)
    assert st == 200 and doc == {"ready": True}


def test_mutual_tls_delivers_with_acls(factory, secure):
    b = start(factory, secure, secure.mtls_properties(), bootstrap=secure.mtls_bootstrap,
              acl_principal=f"User:{MTLS_USER}")
    delivers(b, secure)


def test_oauthbearer_delivers_with_acls(factory, secure):
    # Kafka's unsecured JWT validator (test only) and librdkafka's unsecured
    # token: the principal is the token's subject. A production cluster
    # validates signed tokens; the bridge's side is the same SASL mechanism.
    props = {"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER",
             "enable.sasl.oauthbearer.unsecure.jwt": "true",
             "sasl.oauthbearer.config": "principal=oauth-bridge",
             "ssl.ca.location": secure.pki.ca}
    b = start(factory, secure, props, bootstrap=secure.oauth_bootstrap,
              acl_principal="User:oauth-bridge")
    delivers(b, secure)


# ---- refusals of the connection -------------------------------------------

def test_wrong_password_is_named(factory, secure):
    started = time.monotonic()
    b = start(factory, secure, secure.sasl_properties(password="not-the-password"),
              wait_ready=False)
    why = wait_refused(b, r"Kafka refused the SASL login of user 'bridge'")
    assert "invalid credentials" in why, why
    assert_logged_once_per_interval(b, "refused the SASL login", started)


def test_unknown_user_is_named(factory, secure):
    props = secure.sasl_properties()
    props["sasl.username"] = "nobody-here"
    b = start(factory, secure, props, wait_ready=False)
    why = wait_refused(b, r"SASL login of user 'nobody-here'")
    assert "SCRAM-SHA-512" in why, why


def test_untrusted_broker_certificate_is_named(factory, secure):
    started = time.monotonic()
    b = start(factory, secure, secure.sasl_properties(ca=secure.pki.foreign_ca),
              wait_ready=False)
    why = wait_refused(b, r"Kafka broker's TLS certificate is not trusted")
    assert "certificate verify failed" in why and "ssl.ca.location" in why, why
    assert_logged_once_per_interval(b, "certificate is not trusted", started)


def test_refused_client_certificate_is_named(factory, secure):
    b = start(factory, secure, secure.mtls_properties(foreign=True),
              bootstrap=secure.mtls_bootstrap, acl_principal=f"User:{MTLS_USER}",
              wait_ready=False)
    why = wait_refused(b, r"refused this bridge's TLS client certificate")
    assert "alert" in why, why


# ---- refusals by ACL -----------------------------------------------------

def test_no_acl_on_the_group_names_it_and_recovers_when_granted(factory, secure):
    started = time.monotonic()
    b = start(factory, secure, secure.sasl_properties(), group_acl=False, wait_ready=False)
    group = b.config["kafka"]["group_id"]
    why = wait_refused(b, rf"consumer group '{re.escape(group)}'")
    assert "Group authorization failed" in why and "READ on the group" in why, why
    assert_logged_once_per_interval(b, f"consumer group '{group}'", started)
    # Granted: the bridge finds the coordinator on its next try, no restart.
    secure.allow(BRIDGE, ("group", group, "read"))
    b.wait_ready(timeout=30)
    delivers(b, secure)


def test_no_acl_on_an_event_topic_names_it(factory, secure):
    b = start(factory, secure, secure.sasl_properties(), topic_acl=False, wait_ready=False)
    why = wait_refused(b, rf"topic '{re.escape(b.topic)}'")
    assert "Topic authorization failed" in why and "READ on the topic" in why, why


def test_dead_letter_write_refused_is_a_warning(factory, secure):
    started = time.monotonic()
    dlq = secure.unique_topic("dlq")
    secure.create_topic(dlq)
    b = start(factory, secure, secure.sasl_properties(),
              config={"kafka": {"dead_letter_topic": dlq}})
    uid = unique_uid()
    c = b.uid_client(uid)
    secure.produce(b.topic, b"not json", key=uid)
    b.wait_metric("pushbridge_kafka_writes_refused_total", 1, topic="dead_letter", timeout=20)
    st, doc = readyz(b)
    assert st == 200 and doc["ready"] is True, doc
    assert f"dead-letter topic '{dlq}'" in doc["warning"], doc
    assert "WRITE" in doc["warning"], doc
    # Delivery goes on.
    secure.produce(b.topic, envelope(data="still here"), key=uid)
    assert c.recv_text(timeout=15) == "still here"
    assert_logged_once_per_interval(b, f"dead-letter topic '{dlq}'", started)
    # Granted: the next dead letter lands and the warning goes.
    secure.allow(BRIDGE, ("topic", dlq, "write"))
    secure.produce(b.topic, b"not json either", key=uid)

    def landed():
        secure.produce(b.topic, b"still not json", key=uid)
        return (b.metric("pushbridge_events_dead_lettered_total", topic=b.topic) or 0) >= 1
    wait_until(landed, timeout=30, interval=1.0, desc="a dead letter produced once granted")
    wait_until(lambda: readyz(b)[1] == {"ready": True}, timeout=5, desc="warning gone")


def test_push_topic_write_refused_answers_503_naming_it(factory, secure):
    push_topic = secure.unique_topic("push")
    secure.create_topic(push_topic)
    secure.allow(BRIDGE, ("topic", push_topic, "read"))
    # Cluster mode also reads and writes presence (SPEC 8); the operator made it.
    presence = secure.unique_topic("presence")
    secure.create_topic(presence)
    secure.allow(BRIDGE, ("topic", presence, "read"), ("topic", presence, "write"))
    b = start(factory, secure, secure.sasl_properties(),
              config={"cluster": {"mode": "kafka", "node_name": "n1",
                                  "presence_topic": presence},
                      "push": {"topic": push_topic}})
    uid = unique_uid()
    c = b.uid_client(uid)
    st, doc = b.push(uid, "refused")
    assert st == 503, (st, doc)
    assert f"push topic '{push_topic}'" in doc["message"], doc
    b.wait_metric("pushbridge_kafka_writes_refused_total", 1, topic="push", timeout=10)
    st, doc = readyz(b)
    assert st == 200 and f"push topic '{push_topic}'" in doc.get("warning", ""), doc
    # Events from Kafka still reach the client.
    secure.produce(b.topic, envelope(data="kafka still flows"), key=uid)
    assert c.recv_text(timeout=15) == "kafka still flows"
    b.assert_alive()
    st, _, _ = b.http("GET", "/healthz")
    assert st == 200
