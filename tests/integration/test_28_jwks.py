"""JWT keys from a JWKS file (issue 4): auth.jwt_public_key may name a JWKS
document; the token's kid picks the key, so a new key can be published next
to the current one and both verify during the rotation. Also the leeway on
exp/nbf is configurable (auth.jwt_leeway_s)."""

import json
import re
import subprocess
import time

import pytest

import jwtutil
from jwtutil import KeyPair, b64url


def _public_numbers(pem_path):
    """(kind, fields) of a public key, read from `openssl pkey -text`."""
    out = subprocess.run(["openssl", "pkey", "-pubin", "-in", pem_path, "-text", "-noout"],
                         check=True, stdout=subprocess.PIPE).stdout.decode()

    def hexblock(label):
        m = re.search(label + r":\s*\n((?:\s+[0-9a-f:]+\n)+)", out)
        return bytes.fromhex(re.sub(r"[\s:]", "", m.group(1)))

    if "Modulus" in out:
        n = hexblock("Modulus").lstrip(b"\x00")
        e = int(re.search(r"Exponent: (\d+)", out).group(1))
        return {"kty": "RSA", "n": b64url(n), "e": b64url(e.to_bytes((e.bit_length() + 7) // 8,
                                                                      "big"))}
    point = hexblock("pub")
    assert point[0] == 4 and len(point) == 65
    return {"kty": "EC", "crv": "P-256", "x": b64url(point[1:33]), "y": b64url(point[33:])}


@pytest.fixture(scope="module")
def keyset(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwks")
    old, new, ec = KeyPair(str(d), "rsa"), KeyPair(str(d), "rsa"), KeyPair(str(d), "ec")
    jwks = {"keys": [dict(_public_numbers(old.public_path), kid="old", use="sig"),
                     dict(_public_numbers(new.public_path), kid="new", use="sig"),
                     dict(_public_numbers(ec.public_path), kid="ec1"),
                     {"kty": "oct", "kid": "sym", "k": b64url(b"not for us")}]}
    path = d / "jwks.json"
    path.write_text(json.dumps(jwks))
    return {"path": str(path), "old": old, "new": new, "ec": ec,
            "other": KeyPair(str(d), "rsa")}


def _login(bridge, token):
    c = bridge.ws()
    c.send_json({"type": "auth", "token": token})
    return c, c.recv_json()


def test_jwks_keys_selected_by_kid(bridge_factory, keyset):
    b = bridge_factory(config={"auth": {"mode": "jwt", "jwt_public_key": keyset["path"]}})
    for kid, key, sign in [("old", keyset["old"], jwtutil.rs256),
                           ("new", keyset["new"], jwtutil.rs256),
                           ("ec1", keyset["ec"], jwtutil.es256)]:
        alg = "ES256" if sign is jwtutil.es256 else "RS256"
        tok = sign(jwtutil.claims(sub=f"user-{kid}"), key, header={"alg": alg, "kid": kid})
        _, msg = _login(b, tok)
        assert msg["type"] == "welcome" and msg["user"] == f"user-{kid}", msg
    # The oct key is skipped at load, with a log line naming it.
    assert re.search(r"skipping key sym", b.log_text())


@pytest.mark.parametrize("case", ["wrong_kid", "key_of_other_kid", "unknown_key"])
def test_jwks_refusals(bridge_factory, keyset, case):
    b = bridge_factory(config={"auth": {"mode": "jwt", "jwt_public_key": keyset["path"]}})
    if case == "wrong_kid":
        tok = jwtutil.rs256(jwtutil.claims(sub="x"), keyset["old"],
                            header={"alg": "RS256", "kid": "nope"})
    elif case == "key_of_other_kid":  # signed by old, claims to be new
        tok = jwtutil.rs256(jwtutil.claims(sub="x"), keyset["old"],
                            header={"alg": "RS256", "kid": "new"})
    else:  # no kid, a key that is not in the set: every RSA key is tried, none verifies
        tok = jwtutil.rs256(jwtutil.claims(sub="x"), keyset["other"], header={"alg": "RS256"})
    c, msg = _login(b, tok)
    assert msg["type"] == "error" and msg["code"] == "invalid_token", msg
    assert c.expect_close()[0] == 4003


def test_jwks_without_usable_key_is_a_config_error(run_cli, tmp_path):
    bad = tmp_path / "jwks.json"
    bad.write_text(json.dumps({"keys": [{"kty": "oct", "k": "AAAA"}]}))
    for args in (["--check-config"], []):
        r = run_cli(args, config={"auth": {"mode": "jwt", "jwt_public_key": str(bad)}})
        assert r.returncode == 2, r.stderr
        assert f"auth.jwt_public_key: {bad} holds no usable RSA or P-256 key" in r.stderr


LEEWAY_SECRET = "s3-leeway-test-secret-0123456789abcdef"


@pytest.mark.parametrize("leeway, expired_ago, accepted", [(30, 20, True), (30, 60, False),
                                                           (0, 5, False), (120, 90, True)])
def test_leeway_is_configurable(bridge_factory, leeway, expired_ago, accepted):
    b = bridge_factory(config={"auth": {"mode": "jwt", "jwt_secret": LEEWAY_SECRET,
                                        "jwt_leeway_s": leeway}})
    tok = jwtutil.hs256({"sub": "lee", "exp": int(time.time()) - expired_ago}, LEEWAY_SECRET)
    c, msg = _login(b, tok)
    if accepted:
        assert msg["type"] == "welcome", msg
    else:
        assert msg["code"] == "token_expired", msg
        assert c.expect_close()[0] == 4003
