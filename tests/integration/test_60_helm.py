"""The Helm chart (SPEC §10, issue 22): deploy/helm/pushbridge passes `helm lint`,
renders with `helm template` (defaults, and with the HPA, the ServiceMonitor and the
chart's own Secret on), and what it renders is valid against the Kubernetes schemas
(kubeconform, strict). Cluster mode by default, probes on the internal port, PDB,
non-root with a read-only root file system, preStop, the config checksum that restarts
pods; every setting the chart names is in the settings table.

helm and kubeconform are built from their Go modules when missing, and the Kubernetes
JSON schemas come from the PyPI package kubernetes-validate (no download at run time):
scripts/helm-tools.sh, into PB_TOOLS (default ~/.cache/pushbridge-tools). Without Go
the tests skip saying why. The ServiceMonitor is a CRD whose schema no package here
ships: kubeconform skips it, saying so, and the test checks its fields itself."""

import glob
import json
import os
import re
import subprocess

import pytest
import yaml

from bridge import run_cli

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(REPO, "deploy", "helm", "pushbridge")
K8S_VERSION = "1.34.0"


@pytest.fixture(scope="module")
def tools():
    if not (os.path.exists("/usr/local/go/bin/go") or subprocess.run(
            ["sh", "-c", "command -v go"], capture_output=True).returncode == 0):
        pytest.skip("skipped: Go is not installed, so helm and kubeconform cannot be built")
    r = subprocess.run([os.path.join(REPO, "scripts", "helm-tools.sh")], capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    print("\n".join(lines[:-1]))  # the build times
    root = lines[-1]
    schemas = glob.glob(os.path.join(root, "kubernetes-validate-*", "kubernetes_validate",
                                     "kubernetes-json-schema"))
    assert schemas, f"no schemas under {root}"
    return {"helm": os.path.join(root, "bin", "helm"),
            "kubeconform": os.path.join(root, "bin", "kubeconform"),
            "schemas": schemas[0]}


def schema_dir(tools):
    """The newest strict schema set at or below K8S_VERSION."""
    def ver(d):
        return [int(x) for x in re.findall(r"\d+", os.path.basename(d))[:3]]
    dirs = sorted(glob.glob(os.path.join(tools["schemas"], "v*-local-strict")), key=ver)
    want = [int(x) for x in K8S_VERSION.split(".")]
    ok = [d for d in dirs if ver(d) <= want]
    assert ok, f"no strict schemas at or below {K8S_VERSION} in {tools['schemas']}"
    return ok[-1]


def schema_file(kind, api_version):
    """kubeconform's name for a kind's schema: deployment-apps-v1.json, service-v1.json."""
    group, _, version = api_version.rpartition("/")
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    return f"{kind.lower()}{suffix}.json"


def standalone_schemas(tools, docs):
    """The package ships each kind's schema with its references in a shared
    /api/_definitions.json, which kubeconform does not resolve from a file; so
    each kind rendered gets a self-contained copy (the definitions inlined under
    $defs), written once per Kubernetes version under PB_TOOLS. Returns the
    directory, for kubeconform's -schema-location."""
    src = schema_dir(tools)
    out = os.path.join(os.path.dirname(tools["schemas"]), "..", "..", "standalone-schemas",
                       os.path.basename(src))
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    defs = None
    for d in docs:
        name = schema_file(d["kind"], d["apiVersion"])
        if os.path.exists(os.path.join(out, name)) or not os.path.exists(os.path.join(src, name)):
            continue
        if defs is None:
            with open(os.path.join(src, "_definitions.json")) as f:
                defs = f.read().replace('"/api/_definitions.json#/', '"#/')
            defs = json.loads(defs)["$defs"]
        with open(os.path.join(src, name)) as f:
            schema = json.loads(f.read().replace('"/api/_definitions.json#/', '"#/'))
        schema["$defs"] = defs
        with open(os.path.join(out, name + ".tmp"), "w") as f:
            json.dump(schema, f)
        os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
    return out


def helm(tools, *args):
    r = subprocess.run([tools["helm"], *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HELM_CACHE_HOME": "/tmp/pb-helm-cache",
                            "HELM_CONFIG_HOME": "/tmp/pb-helm-config",
                            "HELM_DATA_HOME": "/tmp/pb-helm-data"})
    assert r.returncode == 0, f"helm {' '.join(args)}: {r.stderr}{r.stdout[-2000:]}"
    return r.stdout


def render(tools, *sets):
    args = ["template", "pb", CHART]
    for s in sets:
        args += ["--set", s]
    text = helm(tools, *args)
    return text, [d for d in yaml.safe_load_all(text) if d]


def kubeconform(tools, text, skip=()):
    docs = [d for d in yaml.safe_load_all(text) if d]
    sd = standalone_schemas(tools, docs)
    loc = os.path.join(sd, "{{ .ResourceKind }}{{ .KindSuffix }}.json")
    args = [tools["kubeconform"], "-strict", "-summary", "-output", "json",
            "-schema-location", loc]
    if skip:
        args += ["-skip", ",".join(skip)]
    r = subprocess.run(args, input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"kubeconform against {os.path.basename(sd)}: {r.stdout}{r.stderr}"
    doc = json.loads(r.stdout)
    return doc["summary"], os.path.basename(sd)


def by_kind(docs):
    out = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def test_helm_lint(tools):
    out = helm(tools, "lint", CHART, "--strict")
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out


def test_default_render_is_valid_against_the_kubernetes_schemas(tools):
    text, docs = render(tools)
    kinds = by_kind(docs)
    assert set(kinds) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}, kinds
    summary, version = kubeconform(tools, text)
    print(f"kubeconform ({version}): {summary}")
    assert summary["valid"] == len(docs) and summary["invalid"] == 0 and summary["errors"] == 0
    assert summary["skipped"] == 0


def test_optional_parts_render_valid_and_the_crd_is_skipped_saying_so(tools):
    text, docs = render(tools, "autoscaling.enabled=true", "serviceMonitor.enabled=true",
                        "secrets.jwtSecret=s3cret-0123456789abcdef0123456789abcdef",
                        "secrets.pushApiKeys={k1,k2}",
                        "secrets.kafkaProperties=sasl.username=u\\,sasl.password=p")
    kinds = by_kind(docs)
    assert {"HorizontalPodAutoscaler", "ServiceMonitor", "Secret"} <= set(kinds), kinds
    assert "replicas" not in kinds["Deployment"][0]["spec"], "the HPA owns the replica count"
    summary, version = kubeconform(tools, text, skip=("ServiceMonitor",))
    print(f"kubeconform ({version}): {summary}")
    print("skipped: ServiceMonitor (monitoring.coreos.com/v1) is a CRD of the Prometheus "
          "Operator; no package reachable here ships its schema, so its fields are checked "
          "below instead")
    assert summary["invalid"] == 0 and summary["errors"] == 0
    assert summary["valid"] == len(docs) - 1 and summary["skipped"] == 1
    sm = kinds["ServiceMonitor"][0]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["endpoints"] == [{"port": "internal", "path": "/metrics",
                                        "interval": "30s"}]
    internal = [s for s in kinds["Service"] if s["metadata"]["name"].endswith("-internal")][0]
    for k, v in sm["spec"]["selector"]["matchLabels"].items():
        assert internal["metadata"]["labels"][k] == v, (k, v)
    secret = kinds["Secret"][0]["stringData"]
    assert secret == {"jwt-secret": "s3cret-0123456789abcdef0123456789abcdef",
                      "push-api-keys": "k1,k2",
                      "kafka-properties": "sasl.username=u,sasl.password=p"}
    hpa = kinds["HorizontalPodAutoscaler"][0]["spec"]
    assert hpa["scaleTargetRef"]["name"] == kinds["Deployment"][0]["metadata"]["name"]


def test_the_deployment_keeps_the_charts_promises(tools):
    _, docs = render(tools, "secrets.existingSecret=pb-secrets")
    kinds = by_kind(docs)
    dep = kinds["Deployment"][0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    config = json.loads(kinds["ConfigMap"][0]["data"]["pushbridge.json"])
    assert config["cluster"]["mode"] == "kafka"
    env = {e["name"]: e for e in c["env"]}
    assert env["PUSHBRIDGE_CLUSTER_NODE_NAME"]["value"] == "$(POD_NAME)"
    for name, key in (("PUSHBRIDGE_AUTH_JWT_SECRET", "jwt-secret"),
                      ("PUSHBRIDGE_PUSH_API_KEYS", "push-api-keys"),
                      ("PUSHBRIDGE_KAFKA_PROPERTIES", "kafka-properties")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "pb-secrets", "key": key,
                                                          "optional": True}
    assert "Secret" not in kinds, "existingSecret: the chart makes none"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "internal"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "internal"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"public": 8080, "internal": 8081}
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    # preStop + shutdown_timeout_ms + margin: SIGKILL never cuts the drain short.
    assert pod["terminationGracePeriodSeconds"] > 5 + config["shutdown_timeout_ms"] / 1000
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert kinds["PodDisruptionBudget"][0]["spec"]["maxUnavailable"] == 1
    # A config change changes the checksum, so the pods restart.
    ann = dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    _, docs2 = render(tools, "secrets.existingSecret=pb-secrets", "config.log.level=debug")
    ann2 = by_kind(docs2)["Deployment"][0]["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", ann) and ann2["checksum/config"] != ann


def flatten(obj, prefix=""):
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key != "kafka.properties":
            yield from flatten(v, key + ".")
        else:
            yield key


def test_every_setting_the_chart_names_exists():
    """values.yaml's config is pushbridge.json; the templates name PUSHBRIDGE_*
    variables: all of them are rows of the settings table."""
    r = run_cli(["--print-settings"])
    assert r.returncode == 0, r.stderr
    settings = dict(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", r.stdout, re.M))
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    keys = list(flatten(values["config"]))
    assert len(keys) >= 15, keys
    unknown = [k for k in keys if k not in settings]
    assert not unknown, f"values.yaml config names settings that do not exist: {unknown}"
    envs = set()
    for path in glob.glob(os.path.join(CHART, "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path) as f:
                envs |= set(re.findall(r"\bPUSHBRIDGE_[A-Z0-9_]+\b", f.read()))
    assert len(envs) >= 4, envs
    unknown = sorted(envs - set(settings.values()))
    assert not unknown, f"the chart names variables that are no setting: {unknown}"


def test_kubeconform_here_does_refuse_a_broken_manifest(tools):
    """The validation is real: a field the schema does not have, and a port that is not
    a number, are refused."""
    text, docs = render(tools)
    for bad in (text.replace("\n  replicas: 3\n", "\n  replicas: 3\n  bogus: 1\n"),
                text.replace("containerPort: 8080", "containerPort: \"x\"")):
        assert bad != text
        sd = standalone_schemas(tools, docs)
        r = subprocess.run([tools["kubeconform"], "-strict", "-summary", "-schema-location",
                            os.path.join(sd, "{{ .ResourceKind }}{{ .KindSuffix }}.json")],
                           input=bad, capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "Invalid: 1" in r.stdout, r.stdout


def test_the_rendered_config_passes_check_config(tools, tmp_path):
    """What the chart mounts is a configuration the binary takes, with the secrets as
    the pods get them (variables); and with the options on (a number past a million
    stays an integer in the JSON)."""
    for sets in ((), ("config.ws.max_connections=2000000",
                      "config.kafka.undelivered_topic=pushbridge.offline")):
        _, docs = render(tools, *sets)
        text = by_kind(docs)["ConfigMap"][0]["data"]["pushbridge.json"]
        path = tmp_path / "pushbridge.json"
        path.write_text(text)
        r = run_cli(["--check-config", "-c", str(path)], env={
            "PUSHBRIDGE_AUTH_JWT_SECRET": "x" * 48, "PUSHBRIDGE_PUSH_API_KEYS": "k" * 40,
            "PUSHBRIDGE_CLUSTER_NODE_NAME": "pb-pushbridge-0"})
        assert r.returncode == 0, (sets, r.stderr, text)
    assert '"max_connections": 2000000' in text
