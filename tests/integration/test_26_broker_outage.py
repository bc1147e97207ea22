"""Broker loss (SPEC §1, §6): the bridge keeps its WebSocket connections,
/readyz answers 503 naming the cause, the outage is logged once and counted,
and once the broker is back every event produced during and after the
outage reaches the connected client, in order."""

import json
import subprocess

from pbutil import envelope, unique_uid, wait_until


def test_outage_keeps_clients_and_delivers_everything_after(bridge_factory, kafka):
    b = bridge_factory()
    uid = unique_uid()
    c = b.uid_client(uid)
    kafka.produce(b.topic, envelope(data="before"), key=uid)
    assert c.recv_text() == "before"

    kafka.stop()
    try:
        def not_ready():
            st, _, body = b.http("GET", "/readyz")
            return st == 503 and json.loads(body)
        body = wait_until(not_ready, timeout=20, desc="/readyz 503 during the outage")
        assert body["error"] == "not_ready"
        assert "unreachable" in body["message"]
        b.wait_metric("pushbridge_kafka_outages_total", 1)
        assert b.http("GET", "/healthz")[0] == 200

        # A producer that keeps trying through the outage: its messages land
        # when the broker is back, as a business system's would.
        during = [envelope(data=f"during-{i}") for i in range(5)]
        producer = subprocess.Popen(
            ["kcat", "-P", "-E", "-b", kafka.bootstrap, "-t", b.topic, "-k", uid, "-D", "\n",
             "-X", "message.timeout.ms=120000",
             # Retries after the outage must keep the order (as the harness's
             # buffering_producer does): without idempotence they may not.
             "-X", "enable.idempotence=true"],
            stdin=subprocess.PIPE)
        producer.stdin.write(b"\n".join(during) + b"\n")
        producer.stdin.close()
        assert c.is_open(), "the WebSocket connection must survive the outage"
    finally:
        kafka.start()

    assert producer.wait(timeout=120) == 0
    kafka.produce(b.topic, envelope(data="after"), key=uid)
    got = [c.recv_text(timeout=60) for _ in range(6)]
    assert got == [f"during-{i}" for i in range(5)] + ["after"]
    b.wait_ready(timeout=30)
    assert b.log_text().count("all brokers are down") == 1
    assert "brokers reachable again" in b.log_text()
    # The gauge comes from librdkafka's statistics, every 2 s.
    wait_until(lambda: (b.metric("pushbridge_kafka_brokers_up") or 0) >= 1, timeout=15,
               desc="pushbridge_kafka_brokers_up >= 1 after the outage")
