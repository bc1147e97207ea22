"""JSON Web Tokens for the tests, made with the standard library (HS256:
hmac/hashlib) and the openssl command line (RS256, ES256): key pairs are
generated at test time, signatures made with `openssl dgst -sha256 -sign`,
and ES256's DER signature is turned into the raw r||s form of RFC 7518 3.4
here, by parsing the DER.

Nothing here verifies anything: the bridge does that. Every function can
also build broken tokens (wrong alg, bad signature, DER instead of r||s)."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time


def b64url(data):
    """Unpadded base64url (RFC 7515 2)."""
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(obj):
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    return json.dumps(obj, separators=(",", ":")).encode()


def signing_input(header, claims):
    """The ASCII text that is signed: b64url(header) "." b64url(claims).
    header/claims: dicts (encoded as compact JSON) or raw bytes."""
    return b64url(_json(header)) + "." + b64url(_json(claims))


def claims(sub="user", lifetime=300, **extra):
    """Typical claims: sub, iat, exp (now + lifetime; lifetime None: no
    exp); extra claims are added (a value of None removes the claim)."""
    now = int(time.time())
    c = {"sub": sub, "iat": now}
    if lifetime is not None:
        c["exp"] = now + lifetime
    for k, v in extra.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


# ---- HS256 ---------------------------------------------------------------

def hs256_sig(secret, data):
    if isinstance(secret, str):
        secret = secret.encode()
    return hmac.new(secret, data.encode(), hashlib.sha256).digest()


def hs256(claims_, secret, header=None):
    """An HS256 token (header default {"alg":"HS256","typ":"JWT"})."""
    header = header if header is not None else {"alg": "HS256", "typ": "JWT"}
    si = signing_input(header, claims_)
    return si + "." + b64url(hs256_sig(secret, si))


def unsigned(claims_, alg="none"):
    """An `alg: none` token with an empty signature part."""
    return signing_input({"alg": alg, "typ": "JWT"}, claims_) + "."


# ---- keys and signatures through the openssl CLI --------------------------

def _openssl(args, data=None):
    r = subprocess.run(["openssl"] + args, input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: "
                           f"{r.stderr.decode(errors='replace')}")
    return r.stdout


class KeyPair:
    """A private key PEM file and its public key PEM file (in `directory`).
    kind: "rsa" (2048 bits) or "ec" (P-256)."""

    def __init__(self, directory, kind, name=None):
        self.kind = kind
        name = name or f"{kind}-{os.urandom(4).hex()}"
        self.private_path = os.path.join(directory, name + ".key.pem")
        self.public_path = os.path.join(directory, name + ".pub.pem")
        if kind == "rsa":
            _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                      "-out", self.private_path])
        elif kind == "ec":
            _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-out", self.private_path])
        else:
            raise ValueError(kind)
        _openssl(["pkey", "-in", self.private_path, "-pubout", "-out", self.public_path])
        with open(self.public_path, "rb") as f:
            self.public_pem = f.read()

    def sign_der(self, data):
        """`openssl dgst -sha256 -sign`: PKCS#1 v1.5 for RSA, a DER
        ECDSA-Sig-Value for EC."""
        if isinstance(data, str):
            data = data.encode()
        return _openssl(["dgst", "-sha256", "-sign", self.private_path], data)


def der_ecdsa_to_raw(der, size=32):
    """DER SEQUENCE { INTEGER r, INTEGER s } -> r||s, each `size` bytes
    big-endian (RFC 7518 3.4)."""
    def read_len(buf, i):
        n = buf[i]
        i += 1
        if n < 0x80:
            return n, i
        k = n & 0x7F
        return int.from_bytes(buf[i:i + k], "big"), i + k

    if der[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    _, i = read_len(der, 1)
    out = b""
    for _ in range(2):
        if der[i] != 0x02:
            raise ValueError("not a DER INTEGER")
        n, i = read_len(der, i + 1)
        v = der[i:i + n]
        i += n
        v = v.lstrip(b"\x00")
        if len(v) > size:
            raise ValueError("integer too large")
        out += v.rjust(size, b"\x00")
    return out


def rs256(claims_, keypair, header=None):
    header = header if header is not None else {"alg": "RS256", "typ": "JWT"}
    si = signing_input(header, claims_)
    return si + "." + b64url(keypair.sign_der(si))


def es256(claims_, keypair, header=None, der=False):
    """An ES256 token; der=True leaves the signature in DER form (wrong on
    purpose: JWS wants r||s)."""
    header = header if header is not None else {"alg": "ES256", "typ": "JWT"}
    si = signing_input(header, claims_)
    sig = keypair.sign_der(si)
    if not der:
        sig = der_ecdsa_to_raw(sig)
    return si + "." + b64url(sig)
