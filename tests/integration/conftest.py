"""Fixtures for the pushbridge integration tests.

- kafka (session): one real Apache Kafka broker (KRaft) on free loopback
  ports, see kafka_harness.KafkaBroker. API: .bootstrap, .create_topic(name,
  partitions), .produce(topic, value, key=None, headers=None, partition=None),
  .produce_many(topic, [(key, value)]), .consume(topic, n), .unique_topic(),
  .stop() / .start() / .kill() (same ports and data), .end_offsets(topic).
- bridge_factory (function): starts the real binary, see bridge.BridgeFactory.
  bridge_factory(config={...overrides}, env={...}, args=[...],
  wait_ready=True, partitions=1) -> bridge.Bridge.
- bridge: a bridge with the default config (a shortcut).
- module_bridge_factory (module): the same, for bridges shared by the tests
  of one module (each test then uses its own user IDs and metric deltas).
- run_cli: run the binary to completion, run_cli(args, config=None, env=None).

On a failed test the tail of every involved bridge's log is attached to the
report.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bridge import OPEN_CLIENTS, BridgeFactory, Bridge, run_cli as _run_cli  # noqa: E402
from kafka_harness import KafkaBroker  # noqa: E402


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    broker = KafkaBroker(workdir=str(tmp_path_factory.mktemp("kafka")))
    broker.start()
    yield broker
    broker.stop()


def _finish(factory, request_node=None):
    errors = factory.teardown()
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def bridge_factory(kafka, tmp_path, request):
    factory = BridgeFactory(kafka, str(tmp_path))
    yield factory
    _finish(factory)


@pytest.fixture
def bridge(bridge_factory):
    return bridge_factory()


@pytest.fixture(scope="module")
def module_bridge_factory(kafka, tmp_path_factory):
    factory = BridgeFactory(kafka, str(tmp_path_factory.mktemp("bridges")))
    yield factory
    _finish(factory)


@pytest.fixture(autouse=True)
def _drop_clients():
    """Close the WebSocket clients a test opened once it is over."""
    yield
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().abort()


@pytest.fixture
def run_cli(tmp_path):
    def run(args=(), config=None, env=None, timeout=30.0):
        return _run_cli(args, config=config, env=env, tmpdir=str(tmp_path), timeout=timeout)
    return run


def _bridges_of(item):
    found = []
    for v in getattr(item, "funcargs", {}).values():
        if isinstance(v, BridgeFactory):
            found.extend(v.bridges)
        elif isinstance(v, Bridge):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            found.extend(x for x in v if isinstance(x, Bridge))
    seen, out = set(), []
    for b in found:
        if id(b) not in seen:
            seen.add(id(b))
            out.append(b)
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for b in _bridges_of(item):
            rep.sections.append((f"pushbridge log {b.name} ({b.log_path})", b.log_tail(12000)))
        kafka = getattr(item, "funcargs", {}).get("kafka")
        if kafka is not None and not kafka.running:
            rep.sections.append(("kafka broker log", kafka.log_tail()))
