"""--dev (SPEC §4): no config, an embedded Kafka whose address is logged as
bootstrap.servers=HOST:PORT and shown in /stats, auth mode none, any origin;
environment variables still apply."""

import re

import pytest

from kafka_harness import kcat_produce
from pbutil import unique_uid


@pytest.fixture
def dev(bridge_factory):
    return bridge_factory.dev()


def _bootstrap(b):
    m = b.wait_log(r"bootstrap\.servers=([A-Za-z0-9_.\-]+:\d+)")
    return m.group(1)


def test_dev_logs_bootstrap_and_stats_shows_it(dev):
    bootstrap = _bootstrap(dev)
    assert dev.stats()["kafka_bootstrap"] == bootstrap
    assert len(re.findall(r"bootstrap\.servers=", dev.log_text())) == 1


def test_dev_kcat_to_embedded_kafka_reaches_uid_login(dev):
    bootstrap = _bootstrap(dev)
    c = dev.uid_client("123")
    kcat_produce(bootstrap, "pushbridge.events", [(b"123", b'{"data":"Hello World"}')])
    assert c.recv_text(timeout=15) == "Hello World"


def test_dev_native_and_send(dev):
    c, welcome = dev.native_client("dev-user")
    assert welcome["user"] == "dev-user"
    assert dev.send("dev-user", "hi")[0] == 200
    assert c.recv_json()["data"] == "hi"


def test_dev_accepts_any_origin(dev):
    assert dev.ws_status(origin="http://evil.example") == 101
    assert dev.ws_status(origin="null") == 101


def test_dev_env_topics_are_created_in_embedded_kafka(bridge_factory):
    b = bridge_factory.dev(env={"PUSHBRIDGE_KAFKA_TOPICS": "progress,orders"})
    bootstrap = _bootstrap(b)
    uid = unique_uid()
    c = b.uid_client(uid)
    kcat_produce(bootstrap, "orders", [(uid.encode(), b'{"data":"order 1"}')])
    kcat_produce(bootstrap, "progress", [(uid.encode(), b'{"data":"50%"}')])
    assert sorted([c.recv_text(15), c.recv_text(15)]) == ["50%", "order 1"]


def test_dev_sigterm_exits_0(dev):
    c = dev.uid_client(unique_uid())
    assert dev.stop() == 0
    assert c.expect_close(timeout=10)[0] == 1001
