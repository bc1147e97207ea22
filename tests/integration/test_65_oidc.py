"""OAUTHBEARER with OIDC tokens the bridge fetches itself (issue 20 item 6;
README "Connecting to a secure cluster"): Debian 12's librdkafka has no
libcurl, so with sasl.oauthbearer.method=oidc the bridge does the
client-credentials grant (kafka_oidc.c). Against real parts: the broker's
secured validator (signature checked against the JWKS, audience, expiry)
and an HTTPS identity provider in the test process (oidc_idp.py), both
from secure_kafka.SecureKafka."""

import time

import pytest

from bridge import BridgeFactory, run_cli
from pbutil import envelope, free_port, unique_uid, wait_until
from secure_kafka import OIDC_CLIENTS, SecureKafka
from test_62_secure_kafka import (assert_logged_once_per_interval, delivers, readyz, start,
                                  wait_refused)


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    broker = SecureKafka(str(tmp_path_factory.mktemp("oidc-kafka")))
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


def check_config(tmp_path, props):
    cfg = {"listen": {"public": "127.0.0.1:18080", "internal": "127.0.0.1:18081"},
           "kafka": {"brokers": "127.0.0.1:9092", "topics": ["t"], "group_id": "g",
                     "properties": props},
           "auth": {"mode": "none"}}
    return run_cli(["--check-config"], config=cfg, tmpdir=str(tmp_path))


def test_oidc_properties_pass_the_start_up_check(secure, tmp_path):
    # Debian's librdkafka alone says "not supported in this build" to
    # sasl.oauthbearer.method=oidc: the bridge keeps these properties.
    r = check_config(tmp_path, secure.oidc_properties())
    assert r.returncode == 0, r.stderr
    props = secure.oidc_properties()
    props["sasl.oauthbearer.token.endpoint.url"] = "http://localhost:1/token"
    r = check_config(tmp_path, props)
    assert r.returncode != 0
    assert "sasl.oauthbearer.token.endpoint.url must be an https:// URL" in r.stderr, r.stderr
    del props["sasl.oauthbearer.client.secret"]
    props["sasl.oauthbearer.token.endpoint.url"] = secure.idp.token_url
    r = check_config(tmp_path, props)
    assert r.returncode != 0
    assert "sasl.oauthbearer.client.secret" in r.stderr, r.stderr


def test_oidc_token_delivers(factory, secure):
    b = start(factory, secure, secure.oidc_properties(), bootstrap=secure.oidc_bootstrap,
              acl_principal="User:oidc-bridge")
    delivers(b, secure)
    st, doc = readyz(b)
    assert st == 200 and doc == {"ready": True}
    issued = secure.idp.issued_to("oidc-bridge")
    assert issued, "no token issued"
    assert issued[-1][3] == "kafka events", issued[-1]  # the scope, form-urlencoded


def test_unreachable_token_endpoint_is_named(factory, secure):
    props = secure.oidc_properties()
    url = f"https://localhost:{free_port()}/token"
    props["sasl.oauthbearer.token.endpoint.url"] = url
    b = start(factory, secure, props, bootstrap=secure.oidc_bootstrap,
              acl_principal="User:oidc-bridge", wait_ready=False)
    why = wait_refused(b, r"token endpoint .*cannot connect")
    assert url in why and "Connection refused" in why, why


def test_wrong_client_secret_names_the_token_endpoint(factory, secure):
    b = start(factory, secure, secure.oidc_properties(secret="not-the-secret"),
              bootstrap=secure.oidc_bootstrap, acl_principal="User:oidc-bridge",
              wait_ready=False)
    why = wait_refused(b, r"token endpoint")
    assert secure.idp.token_url in why, why
    assert "HTTP 401" in why and "invalid_client" in why, why
    assert "client authentication failed" in why, why
    assert any("token endpoint" in ln for ln in b.log_text().splitlines()), b.log_tail(3000)


def test_token_refreshed_before_expiry(factory, secure):
    # 8 s tokens, answered chunked; the broker ends each session when its
    # token expires (connections.max.reauth.ms), so the bridge reconnects
    # with whatever token it holds: only a refreshed one gets through.
    cid = "oidc-short-chunked"
    b = start(factory, secure, secure.oidc_properties(client=cid),
              bootstrap=secure.oidc_bootstrap, acl_principal=f"User:{cid}")
    delivers(b, secure)
    first_expiry = secure.idp.issued_to(cid)[0][2]
    wait_until(lambda: time.time() > first_expiry + 2, timeout=30,
               desc="the first token expired")
    issued = secure.idp.issued_to(cid)
    # Refreshed before it expired (librdkafka asks at 80 % of the lifetime).
    assert any(t[1] < first_expiry for t in issued[1:]), issued
    delivers(b, secure)
    st, doc = readyz(b)
    assert st == 200 and doc == {"ready": True}, doc


def test_unsigned_token_is_refused(factory, secure):
    # The control: the OIDC listener checks signatures, so librdkafka's own
    # unsecured token, which the OAUTH listener takes, does not get in.
    props = {"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER",
             "enable.sasl.oauthbearer.unsecure.jwt": "true",
             "sasl.oauthbearer.config": "principal=oidc-bridge",
             "ssl.ca.location": secure.pki.ca}
    b = start(factory, secure, props, bootstrap=secure.oidc_bootstrap,
              acl_principal="User:oidc-bridge", wait_ready=False)
    wait_refused(b, r"Kafka refused the SASL login")


def test_secret_rotated_at_the_idp_stops_then_resumes(factory, secure):
    # The IdP stops taking the bridge's secret: /readyz names the token
    # endpoint, and once the last token has expired the broker ends the
    # bridge's sessions, so nothing gets through. With the secret accepted
    # again the next retry gets a token and what was produced meanwhile
    # is delivered.
    started = time.monotonic()
    cid = "oidc-rotated"
    b = start(factory, secure, secure.oidc_properties(client=cid),
              bootstrap=secure.oidc_bootstrap, acl_principal=f"User:{cid}")
    uid = unique_uid()
    c = b.uid_client(uid)
    secure.produce(b.topic, envelope(data="before"), key=uid)
    assert c.recv_text(timeout=15) == "before"
    secure.idp.set_secret(cid, "rotated-elsewhere")
    why = wait_refused(b, r"token endpoint .*HTTP 401", timeout=30)
    assert secure.idp.token_url in why, why
    last_expiry = secure.idp.issued_to(cid)[-1][2]
    wait_until(lambda: time.time() > last_expiry + 2, timeout=30,
               desc="the last token expired")
    secure.produce(b.topic, envelope(data="during"), key=uid)
    with pytest.raises(TimeoutError):
        c.recv_text(timeout=5)
    # The broker now refuses the expired token: still said as the IdP's
    # refusal, the cause, and logged once per interval, not on each retry.
    st, doc = readyz(b)
    assert st == 503 and secure.idp.token_url in doc.get("message", ""), doc
    assert_logged_once_per_interval(b, "gave no token", started)
    secure.idp.set_secret(cid, OIDC_CLIENTS[cid][0])
    assert c.recv_text(timeout=40) == "during"
    wait_until(lambda: readyz(b)[0] == 200, timeout=30, desc="/readyz 200 again")


def test_every_client_of_the_bridge_gets_tokens(factory, secure):
    # Cluster mode with a dead-letter and an undelivered topic: the consumer,
    # the rebuild consumer, the push, dead-letter and undelivered producers
    # and the presence producer and consumer each fetch their own token.
    cid = "oidc-bridge"
    principal = f"User:{cid}"
    push_topic, presence, dlq, undelivered = (secure.unique_topic(n) for n in
                                              ("push", "presence", "dlq", "undeliv"))
    for t in (push_topic, presence, dlq, undelivered):
        secure.create_topic(t)
    secure.allow(principal, ("topic", push_topic, "read"), ("topic", push_topic, "write"),
                 ("topic", presence, "read"), ("topic", presence, "write"),
                 ("topic", dlq, "write"), ("topic", undelivered, "write"))
    before = len(secure.idp.issued_to(cid))
    b = start(factory, secure, secure.oidc_properties(), bootstrap=secure.oidc_bootstrap,
              acl_principal=principal,
              config={"cluster": {"mode": "kafka", "node_name": "n1", "presence_topic": presence},
                      "push": {"topic": push_topic},
                      "kafka": {"dead_letter_topic": dlq, "undelivered_topic": undelivered}})
    uid = unique_uid()
    c = b.uid_client(uid)
    st, doc = b.push(uid, "pushed through kafka")
    assert st == 202 and "offset" in doc, (st, doc)
    assert c.recv_text(timeout=15) == "pushed through kafka"
    secure.produce(b.topic, b"not json", key=uid)
    b.wait_metric("pushbridge_events_dead_lettered_total", 1, topic=b.topic, timeout=20)
    assert len(secure.consume(dlq, 1, timeout=20)) == 1
    wait_until(lambda: len(secure.idp.issued_to(cid)) - before >= 7, timeout=20,
               desc=f"7 tokens issued (got {len(secure.idp.issued_to(cid)) - before})")
    st, doc = readyz(b)
    assert st == 200 and doc == {"ready": True}, doc
