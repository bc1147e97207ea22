"""A small OAuth 2.0 identity provider over HTTPS for the OIDC tests: a
token endpoint (client-credentials grant, RFC 6749 §4.4, client id and
secret in HTTP Basic auth) issuing RS256 JWTs signed with a test key (the
openssl command line: no Python package beyond the standard library), and
the JWKS endpoint Kafka's OAuthBearerValidatorCallbackHandler checks them
against. Served on 127.0.0.1 with a certificate from secure_kafka's test CA
(SAN localhost, 127.0.0.1), on a thread of the test process.

Clients: id -> (secret, expires_in seconds). The one named "*-chunked"
gets its answers in chunked transfer coding. Every token request is
recorded (.issued: client id, time, expiry, scope; .refused: client id,
time)."""

import base64
import http.server
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse

AUDIENCE = "kafka"
KID = "pushbridge-test-key"


def _b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64uint(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class IdentityProvider:
    def __init__(self, certfile, keyfile, clients):
        self.clients = dict(clients)
        self.issued, self.refused = [], []
        self.keydir = tempfile.TemporaryDirectory(prefix="pb-idp-")
        self.keyfile = os.path.join(self.keydir.name, "signing.key")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", self.keyfile],
                       check=True, capture_output=True)
        modulus = subprocess.run(["openssl", "rsa", "-in", self.keyfile, "-noout", "-modulus"],
                                 check=True, capture_output=True, text=True).stdout
        n = int(modulus.strip().split("=", 1)[1], 16)
        self.jwks = {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
                               "n": _b64uint(n), "e": _b64uint(65537)}]}
        self.lock = threading.Lock()
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != "/jwks":
                    return self._send(404, {"error": "not_found"})
                self._send(200, idp.jwks)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                status, doc, chunked = idp.grant(self.path, self.headers.get("Authorization", ""),
                                                 form)
                self._send(status, doc, chunked)

            def _send(self, status, doc, chunked=False):
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(body), 100):
                        part = body[i:i + 100]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.token_url = f"https://localhost:{self.port}/token"
        self.jwks_url = f"https://localhost:{self.port}/jwks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def grant(self, path, authorization, form):
        """(status, JSON document, chunked) for a token request."""
        if path != "/token":
            return 404, {"error": "not_found"}, False
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}, False
        try:
            scheme, cred = authorization.split(" ", 1)
            cid, secret = base64.b64decode(cred).decode().split(":", 1)
        except ValueError:
            cid, secret, scheme = "", "", ""
        now = time.time()
        with self.lock:
            client = self.clients.get(cid)
            if scheme != "Basic" or not client or client[0] != secret:
                self.refused.append((cid, now))
                return 401, {"error": "invalid_client",
                             "error_description": "client authentication failed"}, False
            lifetime = client[1]
            scope = form.get("scope", [""])[0]
            self.issued.append((cid, now, now + lifetime, scope))
        claims = {"sub": cid, "aud": AUDIENCE, "iss": f"https://localhost:{self.port}",
                  "iat": int(now), "exp": int(now + lifetime),
                  "scope": " ".join(form.get("scope", [""])[0].split())}
        token = self.sign(claims)
        return 200, {"access_token": token, "token_type": "Bearer",
                     "expires_in": lifetime}, cid.endswith("-chunked")

    def sign(self, claims):
        """An RS256 JWS (RFC 7515 compact form) of claims with the test key."""
        head = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": KID}).encode())
        body = _b64(json.dumps(claims).encode())
        # RSASSA-PKCS1-v1_5 with SHA-256, which is what RS256 is (RFC 7518).
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.keyfile],
                             input=f"{head}.{body}".encode(), check=True,
                             capture_output=True).stdout
        return f"{head}.{body}.{_b64(sig)}"

    def set_secret(self, cid, secret):
        """From now on cid's secret is secret (a rotation the bridge missed)."""
        with self.lock:
            self.clients[cid] = (secret, self.clients[cid][1])

    def issued_to(self, cid):
        with self.lock:
            return [t for t in self.issued if t[0] == cid]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.keydir.cleanup()
