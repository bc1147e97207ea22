"""Running it (SPEC §4): flags, --check-config, unknown keys and bad values
(exit 2 naming the key), environment overrides winning over the file."""

import json
import re
import socket

import pytest

from pbutil import unique_uid

VALID = {
    "listen": {"public": "127.0.0.1:18080", "internal": "127.0.0.1:18081"},
    "kafka": {"brokers": "127.0.0.1:9092", "topics": ["t"], "group_id": "g"},
    "auth": {"mode": "none"},
}


def _with(path, value, base=VALID):
    cfg = json.loads(json.dumps(base))
    node = cfg
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return cfg


def test_version(run_cli):
    r = run_cli(["--version"])
    assert r.returncode == 0
    assert re.search(r"\d+\.\d+\.\d+", r.stdout + r.stderr)


def test_help_lists_flags(run_cli):
    r = run_cli(["--help"])
    assert r.returncode == 0
    out = r.stdout + r.stderr
    for flag in ("--config", "--dev", "--check-config", "--version", "--log-level"):
        assert flag in out, f"--help does not mention {flag}"


def test_unknown_flag_exits_2(run_cli):
    r = run_cli(["--no-such-flag"])
    assert r.returncode == 2
    assert "--no-such-flag" in r.stderr


def test_check_config_valid_exits_0(run_cli):
    r = run_cli(["--check-config"], config=VALID)
    assert r.returncode == 0, r.stderr


def test_check_config_full_example_exits_0(run_cli):
    cfg = {
        "listen": {"public": "127.0.0.1:18080", "internal": "127.0.0.1:18081"},
        "kafka": {"brokers": "127.0.0.1:9092", "topics": ["a", "^b.*"], "group_id": "g",
                  "properties": {"fetch.wait.max.ms": "50"}, "dead_letter_topic": None,
                  "max_event_age_ms": 60000, "max_event_bytes": 1048576},
        "auth": {"mode": "none"},
        "ws": {"path": "/ws", "allowed_origins": [], "auth_timeout_ms": 10000,
               "ping_interval_ms": 25000, "idle_timeout_ms": 60000, "max_message_bytes": 4096,
               "max_connections": 100000, "max_connections_per_user": 32,
               "queue_max_messages": 1024, "queue_max_bytes": 1048576,
               "slow_client": "drop_oldest"},
        "push": {"api_keys": [], "max_body_bytes": 1048576, "max_batch": 1000,
                 "topic": "pushbridge.push"},
        "cluster": {"mode": "standalone"},
        "log": {"level": "info", "format": "json"},
        "shutdown_timeout_ms": 10000,
    }
    r = run_cli(["--check-config"], config=cfg)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("key, value, named", [
    ("ws.pth", "/x", "ws.pth"),
    ("kafka.brokerz", "x:1", "kafka.brokerz"),
    ("nosection.key", 1, "nosection"),
    ("bogus_top_level", True, "bogus_top_level"),
])
def test_unknown_key_exits_2_naming_it(run_cli, key, value, named):
    r = run_cli(["--check-config"], config=_with(key, value))
    assert r.returncode == 2
    assert named in r.stderr, r.stderr


@pytest.mark.parametrize("key, value", [
    ("ws.max_message_bytes", "big"),
    ("ws.max_message_bytes", -1),
    ("ws.max_message_bytes", 1.5),
    ("ws.max_connections", 0),
    ("ws.auth_timeout_ms", [1]),
    ("ws.slow_client", "maybe"),
    ("ws.path", 5),
    ("ws.path", "no-slash"),
    ("ws.allowed_origins", "http://a"),
    ("auth.mode", "foo"),
    ("log.level", "loud"),
    ("log.format", "xml"),
    ("listen.public", "nonsense"),
    ("listen.internal", "127.0.0.1:99999"),
    ("kafka.topics", "not-a-list"),
    ("kafka.topics", [""]),
    ("kafka.properties", ["x"]),
    ("kafka.max_event_age_ms", -5),
    ("cluster.mode", "mesh"),
    ("shutdown_timeout_ms", "soon"),
    ("push.max_body_bytes", 0),
])
def test_bad_value_exits_2_naming_key(run_cli, key, value):
    r = run_cli(["--check-config"], config=_with(key, value))
    assert r.returncode == 2, f"accepted {key}={value!r}: {r.stderr}"
    assert key in r.stderr, r.stderr


def test_section_not_an_object(run_cli):
    cfg = dict(VALID, ws=5)
    r = run_cli(["--check-config"], config=cfg)
    assert r.returncode == 2
    assert "ws" in r.stderr


@pytest.mark.parametrize("text", ["{not json", "[]", "", '{"ws": {"path": "/x"}} trailing'],
                         ids=["broken", "array", "empty", "trailing"])
def test_config_file_not_a_json_object(run_cli, text):
    r = run_cli(["--check-config"], config=text)
    assert r.returncode == 2
    assert r.stderr.strip()


def test_missing_config_file_names_it(run_cli):
    r = run_cli(["-c", "/nonexistent/pushbridge.json", "--check-config"])
    assert r.returncode != 0
    assert "/nonexistent/pushbridge.json" in r.stderr


def test_bad_log_level_flag(run_cli):
    r = run_cli(["--log-level", "chatty", "--check-config"], config=VALID)
    assert r.returncode == 2
    assert "chatty" in r.stderr or "log" in r.stderr


@pytest.mark.parametrize("env, key", [
    ({"PUSHBRIDGE_WS_MAX_CONNECTIONS": "abc"}, "ws.max_connections"),
    ({"PUSHBRIDGE_WS_SLOW_CLIENT": "sometimes"}, "ws.slow_client"),
    ({"PUSHBRIDGE_AUTH_MODE": "nope"}, "auth.mode"),
])
def test_bad_env_value_exits_2_naming_it(run_cli, env, key):
    r = run_cli(["--check-config"], config=VALID, env=env)
    assert r.returncode == 2
    envname = next(iter(env))
    assert key in r.stderr or envname in r.stderr, r.stderr


def test_env_alone_is_a_valid_config(run_cli):
    env = {"PUSHBRIDGE_LISTEN_PUBLIC": "127.0.0.1:18080",
           "PUSHBRIDGE_LISTEN_INTERNAL": "127.0.0.1:18081",
           "PUSHBRIDGE_KAFKA_TOPICS": "progress,orders",
           "PUSHBRIDGE_AUTH_MODE": "none"}
    r = run_cli(["--check-config"], env=env)
    assert r.returncode == 0, r.stderr


def test_env_overrides_file_at_run_time(bridge_factory):
    # The file says 5 per user, the environment 1: the environment wins.
    b = bridge_factory(config={"ws": {"max_connections_per_user": 5}},
                       env={"PUSHBRIDGE_WS_MAX_CONNECTIONS_PER_USER": "1"})
    uid = unique_uid()
    b.uid_client(uid)
    extra = b.ws()
    extra.send_json({"uid": uid})
    assert extra.expect_close()[0] == 4008


def test_env_list_override_topics(bridge_factory, kafka):
    # PUSHBRIDGE_KAFKA_TOPICS is comma-separated and replaces the file's list.
    t1, t2 = kafka.unique_topic(), kafka.unique_topic()
    kafka.create_topic(t1, 1)
    kafka.create_topic(t2, 1)
    b = bridge_factory(env={"PUSHBRIDGE_KAFKA_TOPICS": f"{t1},{t2}"})
    uid = unique_uid()
    c = b.uid_client(uid)
    kafka.produce(t1, '{"data":"from t1"}', key=uid)
    kafka.produce(t2, '{"data":"from t2"}', key=uid)
    kafka.produce(b.topic, '{"data":"from the file topic"}', key=uid)
    got = sorted([c.recv_text(10), c.recv_text(10)])
    assert got == ["from t1", "from t2"]
    c.no_message(0.5)


def test_regex_topic_subscription(bridge_factory, kafka):
    prefix = kafka.unique_topic("rx")
    t1, t2 = prefix + "-a", prefix + "-b"
    kafka.create_topic(t1, 1)
    kafka.create_topic(t2, 1)
    b = bridge_factory(config={"kafka": {"topics": ["^" + prefix.replace("-", "[-]") + "-.*"]}},
                       create_topic=False)
    uid = unique_uid()
    c = b.uid_client(uid)
    kafka.produce(t1, '{"data":"a"}', key=uid)
    kafka.produce(t2, '{"data":"b"}', key=uid)
    assert sorted([c.recv_text(10), c.recv_text(10)]) == ["a", "b"]


def test_unknown_kafka_property_is_a_startup_error_naming_it(bridge_factory):
    b = bridge_factory(config={"kafka": {"properties": {"no.such.property": "1"}}},
                       wait_ready=False)
    rc = b.wait_exit(timeout=20)
    b.expected_exit = True
    assert rc != 0
    assert "no.such.property" in b.log_text()


def test_listen_address_in_use_is_a_startup_error(bridge_factory):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        b = bridge_factory(config={"listen": {"public": f"127.0.0.1:{port}"}},
                           wait_ready=False)
        rc = b.wait_exit(timeout=20)
        b.expected_exit = True
        assert rc != 0
        assert str(port) in b.log_text()
    finally:
        blocker.close()


def test_log_level_flag_overrides_file(bridge_factory):
    b = bridge_factory(config={"log": {"level": "debug"}}, args=["--log-level", "error"])
    uid = unique_uid()
    b.uid_client(uid)
    assert b.push(uid, "x")[0] == 200
    assert not re.search(r"\bdebug\b|\bDEBUG\b", b.log_text()), b.log_text()[-2000:]
