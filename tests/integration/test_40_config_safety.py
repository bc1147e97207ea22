"""Unsafe configurations (issue 14 item 5; README "Security model"): the
example config without its secret, CHANGE-ME placeholders and HS256 secrets
under 32 bytes are refused by --check-config and at start (exit 2, naming the key); an
internal listener reachable from beyond the host (not loopback, or the
public port) without push.api_keys is warned about at start."""

import json
import os

import pytest

from bridge import REPO
from pbutil import free_port

GOOD_SECRET = "config-safety-secret-0123456789abcdef"


def _deploy_config():
    with open(os.path.join(REPO, "deploy", "pushbridge.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("mode", [["--check-config"], []], ids=["check_config", "start"])
def test_example_config_is_refused_until_a_secret_is_set(run_cli, mode):
    # The packaged example carries no secret (deploy/env.example sets it in
    # the environment): as shipped it does not start.
    cfg = _deploy_config()
    r = run_cli(mode, config=cfg, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "auth.jwt_secret" in r.stderr, r.stderr
    r = run_cli(["--check-config"], config=cfg, env={"PUSHBRIDGE_AUTH_JWT_SECRET": GOOD_SECRET},
                timeout=20)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("mode", [["--check-config"], []], ids=["check_config", "start"])
def test_change_me_placeholders_are_refused(run_cli, mode):
    cfg = _deploy_config()
    cfg["auth"]["jwt_secret"] = "CHANGE-ME-to-a-long-random-secret"
    cfg["push"]["api_keys"] = ["CHANGE-ME"]
    r = run_cli(mode, config=cfg, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "auth.jwt_secret is still the example's CHANGE-ME placeholder" in r.stderr, r.stderr
    cfg["auth"]["jwt_secret"] = GOOD_SECRET
    r = run_cli(mode, config=cfg, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "push.api_keys[0] is still the example's CHANGE-ME placeholder" in r.stderr, r.stderr


def test_placeholder_from_the_environment_is_refused(run_cli):
    cfg = _deploy_config()
    cfg["auth"]["jwt_secret"] = GOOD_SECRET
    r = run_cli(["--check-config"], config=cfg,
                env={"PUSHBRIDGE_PUSH_API_KEYS": "a-real-key-0123456789"})
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stderr


@pytest.mark.parametrize("secret, ok", [("x", False), ("a" * 31, False), ("a" * 32, True)])
def test_short_hs256_secret_is_refused(run_cli, secret, ok):
    r = run_cli(["--check-config"], config={"auth": {"mode": "jwt", "jwt_secret": secret}})
    if ok:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 2, r.stderr
        assert f"auth.jwt_secret is {len(secret)} bytes: HS256 needs at least 32" in r.stderr


WARNING = "push.api_keys is empty and the internal listener"


@pytest.mark.parametrize("where", ["any_address", "public_port"])
def test_exposed_internal_listener_without_keys_is_warned(bridge_factory, where):
    pub = free_port()
    internal = f"0.0.0.0:{free_port()}" if where == "any_address" else f"127.0.0.1:{pub}"
    b = bridge_factory(config={"listen": {"public": f"127.0.0.1:{pub}", "internal": internal}},
                       wait_ready=False)
    b.wait_log(WARNING)
    line = [ln for ln in b.log_text().splitlines() if WARNING in ln]
    assert len(line) == 1 and "warn" in line[0].lower() and internal in line[0], line


def test_loopback_or_keyed_internal_listener_is_not_warned(bridge_factory):
    keyed = bridge_factory(config={"listen": {"internal": f"0.0.0.0:{free_port()}"},
                                   "push": {"api_keys": ["k-0123456789abcdef"]}})
    plain = bridge_factory()
    for b in (keyed, plain):
        b.wait_log(r"listening on .*internal")
        assert WARNING not in b.log_text()
