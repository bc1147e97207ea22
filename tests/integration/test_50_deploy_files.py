"""deploy/ holds what an operator takes to production (SPEC §10): every file
there parses, every setting and PUSHBRIDGE_* variable it names exists in the
settings table (as `pushbridge --print-settings` prints it), every metric the
dashboard and the alert rules use is one a running bridge serves, and the
manifests keep the promises the README makes (probes, grace period, limits)."""

import json
import os
import re

import pytest
import yaml  # python3-yaml (tests/run.sh installs it)

from bridge import REPO, binary_path, run_cli

DEPLOY = os.path.join(REPO, "deploy")
SECTIONS = ("listen", "kafka", "auth", "ws", "push", "tls", "cluster", "state", "history",
            "dashboard", "log")


def deploy_files(*exts):
    for root, _, files in os.walk(DEPLOY):
        # The Helm chart's templates are Go templates, not YAML: test_60_helm.py renders
        # them (its values.yaml is checked here like any config).
        if exts and os.sep + "templates" in root and os.sep + "helm" + os.sep in root:
            continue
        for f in sorted(files):
            if not exts or f.endswith(exts):
                yield os.path.join(root, f)


def rel(path):
    return os.path.relpath(path, REPO)


@pytest.fixture(scope="module")
def settings():
    """{key: env name} from the README table the binary prints."""
    r = run_cli(["--print-settings"])
    assert r.returncode == 0, r.stderr
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", r.stdout, re.M)
    assert len(rows) > 30, r.stdout[:500]
    return dict(rows)


def flatten(obj, prefix=""):
    """A config file's keys as dotted settings; kafka.properties' own keys are
    librdkafka's, not ours."""
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key != "kafka.properties":
            yield from flatten(v, key + ".")
        else:
            yield key


def config_documents():
    """(where, parsed config) for every pushbridge config in deploy/: the JSON
    files that look like one, and the ConfigMap's embedded pushbridge.json."""
    out = []
    for path in deploy_files(".json"):
        with open(path) as f:
            doc = json.load(f)
        if "listen" in doc or "kafka" in doc:
            out.append((rel(path), doc))
    for path in deploy_files(".yaml", ".yml"):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
                    for name, text in doc.get("data", {}).items():
                        if name.endswith(".json"):
                            out.append((f"{rel(path)}:{name}", json.loads(text)))
    return out


def test_deploy_yaml_and_json_parse():
    n = 0
    for path in deploy_files(".yaml", ".yml"):
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        assert docs, f"{rel(path)} holds no YAML document"
        n += 1
    for path in deploy_files(".json"):
        with open(path) as f:
            json.load(f)
        n += 1
    for _, doc in config_documents():
        assert isinstance(doc, dict)
    assert n >= 10, "deploy/ lost its manifests?"


def test_deploy_settings_in_config_files_exist(settings):
    docs = config_documents()
    assert len(docs) >= 2, docs
    for where, doc in docs:
        unknown = [k for k in flatten(doc) if k not in settings]
        assert not unknown, f"{where}: not in the settings table: {unknown}"


def test_deploy_env_variables_and_setting_names_exist(settings):
    envs = set(settings.values())
    setting_re = re.compile(r"\b((?:%s)\.[a-z_]+)\b(?![.\-][a-z0-9])" % "|".join(SECTIONS))
    seen_env = 0
    for path in deploy_files():
        with open(path, errors="replace") as f:
            text = f.read()
        for name in set(re.findall(r"\bPUSHBRIDGE_[A-Z0-9_]+", text)):
            if name.endswith("_"):  # a prefix named in prose: PUSHBRIDGE_<SECTION>_<KEY>
                continue
            seen_env += 1
            assert name in envs, f"{rel(path)} names {name}, which is not a setting"
        for key in set(setting_re.findall(text)):
            assert key in settings, f"{rel(path)} names setting {key}, which does not exist"
    assert seen_env >= 10


@pytest.fixture(scope="module")
def served_metric_names(module_bridge_factory):
    b = module_bridge_factory.shared()
    text = b.metrics_text()
    names = set(re.findall(r"^# TYPE (\w+)", text, re.M))
    names |= set(re.findall(r"^(\w+)[{ ]", text, re.M))
    assert "pushbridge_connections" in names, text[:500]
    return names


@pytest.mark.parametrize("name", ["grafana/pushbridge.json", "prometheus/alerts.yml"])
def test_deploy_metric_names_exist_in_a_running_bridge(served_metric_names, name):
    with open(os.path.join(DEPLOY, name)) as f:
        used = set(re.findall(r"\bpushbridge_[a-z0-9_]+", f.read()))
    assert len(used) >= 10, used
    missing = sorted(used - served_metric_names)
    assert not missing, f"deploy/{name} uses metrics no bridge serves: {missing}"


def test_deploy_alerts_cover_the_issue():
    with open(os.path.join(DEPLOY, "prometheus", "alerts.yml")) as f:
        rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
    exprs = " ".join(r["expr"] for r in rules)
    for metric in ("pushbridge_kafka_ready", "pushbridge_consumer_lag",
                   "pushbridge_events_dropped_total", "pushbridge_slow_client_closes_total",
                   "pushbridge_dead_letter_failures_total", "pushbridge_kafka_backpressure_total"):
        assert metric in exprs, f"no alert on {metric}"
    for r in rules:
        assert r["alert"] and r["annotations"]["summary"], r


def load_k8s():
    docs = {}
    for path in deploy_files(".yaml"):
        if os.sep + "k8s" + os.sep in path:
            with open(path) as f:
                for d in yaml.safe_load_all(f):
                    if d and "kind" in d:
                        docs.setdefault(d["kind"], []).append(d)
    return docs


def test_deploy_k8s_deployment_probes_grace_and_limits(settings):
    k8s = load_k8s()
    for kind in ("Deployment", "Service", "ConfigMap", "PodDisruptionBudget"):
        assert kind in k8s, f"deploy/k8s has no {kind}"
    with open(os.path.join(DEPLOY, "k8s", "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    for res in kust["resources"]:
        assert os.path.exists(os.path.join(DEPLOY, "k8s", res)), res
    pod = k8s["Deployment"][0]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "preStop" in c["lifecycle"]
    assert c["resources"]["requests"]
    cfg = json.loads(k8s["ConfigMap"][0]["data"]["pushbridge.json"])
    shutdown_s = cfg.get("shutdown_timeout_ms", 10000) / 1000
    prestop_s = float(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > prestop_s + shutdown_s
    # The probes reach the internal listener from outside the container.
    assert cfg["listen"]["internal"].startswith("0.0.0.0:")
    ports = {p["port"] for s in k8s["Service"] for p in s["spec"]["ports"]}
    assert ports == {8080, 8081}


def test_deploy_systemd_unit():
    with open(os.path.join(DEPLOY, "pushbridge.service")) as f:
        unit = f.read()
    kv = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert kv["Type"] == "notify"
    assert int(kv["WatchdogSec"]) > 2
    for opt in ("ProtectSystem", "NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert opt in kv, f"no {opt}= in the unit"
    # Enough descriptors for the default ws.max_connections and
    # push.max_connections, and not wildly more (every close scans the table).
    assert 100000 + 1024 < int(kv["LimitNOFILE"]) <= 2 * 100000
    assert "AF_UNIX" in kv["RestrictAddressFamilies"]  # the notify socket


def test_deploy_dockerfile():
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        text = f.read()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "not multi-stage"
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("0", "root")), user
    assert re.search(r"^HEALTHCHECK .*/healthz", text, re.M | re.S)
    exposed = set(" ".join(re.findall(r"^EXPOSE (.*)$", text, re.M)).split())
    assert {"8080", "8081"} <= exposed
    assert "libwebsockets-evlib-ev" in text
    with open(os.path.join(REPO, "scripts", "deps.sh")) as f:
        deps = re.search(r"pkgs=\(([^)]*)\)", f.read()).group(1).split()
    for p in deps:
        if p != "kcat":  # the README tour's producer, not a build dependency
            assert p in text, f"the build stage lacks {p} from scripts/deps.sh"


def test_deploy_compose():
    with open(os.path.join(DEPLOY, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    svc = compose["services"]
    assert svc["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in svc["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    bridges = [n for n, s in svc.items() if s.get("build")]
    assert bridges, "no bridge built from deploy/Dockerfile"
    assert any("8080:8080" in p for b in bridges for p in svc[b]["ports"])
    assert "demo-producer" in svc
