"""The Debian package (issue 13): `cpack -G DEB` in the build directory makes
pushbridge_<version>-1_<arch>.deb holding the binary, the systemd unit, the
config under /etc/pushbridge/ and the man page; `apt-get install ./...deb`
installs it; the installed binary answers --version and --check-config on the
packaged config. The packaged config carries no secret (it would be the same
on every machine): the secret comes from /etc/pushbridge/env, so the check is
run with one in the environment, as the unit runs it, and without one it must
fail naming auth.jwt_secret. The package is purged again at the end."""

import os
import re
import secrets
import shutil
import subprocess

import pytest

from bridge import binary_path

FILES = ("./usr/bin/pushbridge", "./lib/systemd/system/pushbridge.service",
         "./etc/pushbridge/pushbridge.json", "./usr/share/man/man8/pushbridge.8.gz",
         "./usr/share/doc/pushbridge/examples/env.example")


def run(argv, env=None, timeout=300, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, timeout=timeout, **kw)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHBRIDGE_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    build = os.path.dirname(binary_path())
    cfg = os.path.join(build, "CPackConfig.cmake")
    if not os.path.exists(cfg):
        pytest.fail(f"{cfg} is missing: configure the build with CMake first")
    out = str(tmp_path_factory.mktemp("deb"))
    r = run(["cpack", "-G", "DEB", "--config", cfg, "-B", out], cwd=build)
    assert r.returncode == 0, r.stdout + r.stderr
    debs = [f for f in os.listdir(out) if re.match(r"pushbridge_.*\.deb$", f)]
    assert len(debs) == 1, os.listdir(out)
    return os.path.join(out, debs[0])


def test_deploy_deb_contents(deb):
    r = run(["dpkg-deb", "-c", deb])
    assert r.returncode == 0, r.stderr
    listed = {line.split()[-1] for line in r.stdout.splitlines()}
    for f in FILES:
        assert f in listed, f"{f} not in the package:\n{r.stdout}"
    info = run(["dpkg-deb", "-f", deb, "Depends"]).stdout
    assert "libwebsockets-evlib-ev" in info and "librdkafka" in info, info
    # An edited /etc/pushbridge/pushbridge.json survives upgrades.
    conffiles = run(["dpkg-deb", "-I", deb, "conffiles"])
    assert "/etc/pushbridge/pushbridge.json" in conffiles.stdout, conffiles.stderr


@pytest.fixture(scope="module")
def installed(deb):
    if os.geteuid() != 0:
        pytest.skip("installing the .deb needs root (apt-get install ./pushbridge_*.deb); "
                    "the package was built and its contents checked")
    if not shutil.which("apt-get"):
        pytest.skip("no apt-get on this machine: not Debian, cannot install the .deb")
    had = run(["dpkg-query", "-W", "-f=${Status}", "pushbridge"]).stdout
    if "install ok installed" in had:
        pytest.skip("a pushbridge package is already installed here; not replacing it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
             "-o", "DPkg::Lock::Timeout=300", deb], env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    yield
    r = run(["apt-get", "purge", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "pushbridge"],
            env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not os.path.exists("/usr/bin/pushbridge")


def test_deploy_deb_installed_binary_answers(installed):
    r = run(["/usr/bin/pushbridge", "--version"])
    assert r.returncode == 0 and r.stdout.startswith("pushbridge "), r.stdout + r.stderr
    assert run(["dpkg-query", "-W", "-f=${Status}", "pushbridge"]).stdout.endswith(
        "install ok installed")


def test_deploy_deb_packaged_config_checks_with_a_secret(installed):
    env = clean_env(PUSHBRIDGE_AUTH_JWT_SECRET=secrets.token_urlsafe(48),
                    PUSHBRIDGE_PUSH_API_KEYS=secrets.token_hex(32))
    r = run(["/usr/bin/pushbridge", "--check-config", "-c", "/etc/pushbridge/pushbridge.json"],
            env=env)
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stderr
    # Secrets are masked in the printed configuration.
    assert env["PUSHBRIDGE_AUTH_JWT_SECRET"] not in r.stdout


def test_deploy_deb_packaged_config_refuses_to_run_without_a_secret(installed):
    r = run(["/usr/bin/pushbridge", "--check-config", "-c", "/etc/pushbridge/pushbridge.json"],
            env=clean_env())
    assert r.returncode == 2, r.stdout + r.stderr
    assert "auth.jwt_secret" in r.stderr


def test_deploy_deb_man_page_lists_every_setting(installed):
    r = run(["sh", "-c", "zcat /usr/share/man/man8/pushbridge.8.gz"])
    assert r.returncode == 0 and r.stdout.startswith(".\\\""), r.stderr
    table = run(["/usr/bin/pushbridge", "--print-settings"]).stdout
    keys = re.findall(r"^\| `([^`]+)` \|", table, re.M)
    assert keys
    for k in keys:
        assert f"\\fB{k}\\fR" in r.stdout, f"{k} missing from pushbridge(8)"


def test_deploy_deb_unit_points_at_the_installed_paths(installed):
    with open("/lib/systemd/system/pushbridge.service") as f:
        unit = f.read()
    for path in re.findall(r"^Exec\w*=(\S+)", unit, re.M):
        assert os.access(path, os.X_OK), f"the unit runs {path}, which is not installed"
    if shutil.which("systemd-analyze"):
        # Checks every directive, the Exec paths and Documentation=man:pushbridge(8).
        r = run(["systemd-analyze", "verify", "/lib/systemd/system/pushbridge.service"])
        assert r.returncode == 0, r.stdout + r.stderr
