"""Fixtures for the pushbridge integration tests (see README.md here).

- kafka (session): one real Apache Kafka broker (KRaft) on free loopback
  ports, kafka_harness.KafkaBroker: .bootstrap, .create_topic(name,
  partitions), .produce(topic, value, key=None, headers=None, partition=None),
  .produce_many(topic, [(key, value)]), .consume(topic, n), .unique_topic(),
  .metadata(topic), .end_offsets(topic), .delete_records(topic, partition,
  offset) (moves the log start, as retention would), .buffering_producer(topic,
  values, key, partition) (a kcat that keeps its messages through an outage),
  .stop() / .start() / .kill() (same ports and data; a test that leaves it
  stopped gets it restarted).
- bridge_factory (function): bridge.BridgeFactory; bridge_factory(config=
  {overrides}, env={...}, args=[...], wait_ready=True, partitions=1,
  topic=None, group_id=None) -> bridge.Bridge; bridge_factory.dev() runs
  --dev. Bridges get SIGTERM at teardown; a sanitizer build that exits badly
  or reports fails the test.
- bridge: one bridge with the default config.
- module_bridge_factory (module): the same for bridges shared by the tests
  of a module: module_bridge_factory.shared(**same arguments) (restarted
  for the next test if a test crashed it).
- run_cli: run the binary to completion: run_cli(args, config=None, env=None).

On a failed test the log tail of every bridge it used is attached to the
report. WebSocket clients a test opened are dropped after it.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bridge import OPEN_CLIENTS, BridgeFactory, Bridge, run_cli as _run_cli  # noqa: E402
from kafka_harness import KafkaBroker  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cluster: runs a 3-node Kafka cluster (minutes); -m 'not cluster' skips")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    broker = KafkaBroker(workdir=str(tmp_path_factory.mktemp("kafka")))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(autouse=True)
def _kafka_back_up(request):
    """A test that stops the broker (outage tests) and fails before starting
    it again must not take the rest of the session down with it."""
    yield
    if "kafka" in request.fixturenames:
        broker = request.getfixturevalue("kafka")
        if not broker.running:
            broker.start()


def _finish(factory):
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
def _drop_clients(request):
    """Close the WebSocket clients a test opened once it is over, and fail
    the test if a bridge it used (shared ones included) printed a sanitizer
    report meanwhile."""
    yield
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().abort()
    reports = [f"{b.name}:\n{r}" for b in _bridges_of(request.node)
               for r in [b.new_sanitizer_report()] if r]
    if reports:
        pytest.fail("sanitizer report during this test:\n" + "\n\n".join(reports),
                    pytrace=False)


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
