"""TLS for the tests: a self-signed certificate made at test time with the
openssl command line, a client SSLContext that trusts exactly that
certificate, a WebSocket client over TLS (wss://) and one HTTPS request.

TlsWsClient runs wsclient.WsClient's own handshake and frame code over an
ssl.SSLSocket; it registers itself with the harness so that conftest drops it
after the test."""

import http.client
import json
import os
import socket
import ssl
import subprocess

from bridge import OPEN_CLIENTS
from wsclient import WsClient


def make_cert(directory, cn="localhost", name="server"):
    """(cert_path, key_path): an RSA 2048 self-signed certificate for cn,
    with subjectAltName DNS:localhost and IP:127.0.0.1, valid one day."""
    cert = os.path.join(directory, name + ".crt.pem")
    key = os.path.join(directory, name + ".key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-subj", f"/CN={cn}", "-days", "1",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl req failed: " + r.stderr.decode(errors="replace"))
    return cert, key


def client_context(cafile):
    """Verifies the server against cafile only, and its name (localhost)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def cert_der(cert_path):
    with open(cert_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class TlsWsClient(WsClient):
    @classmethod
    def connect_tls(cls, host, port, context, server_hostname="localhost", path="/ws",
                    origin=None, headers=None, timeout=10.0):
        """WsClient.connect over TLS, verifying the server as server_hostname."""
        c = cls.connect(host, port, path=path, origin=origin, headers=headers, timeout=timeout,
                        wrap=lambda raw: context.wrap_socket(raw,
                                                             server_hostname=server_hostname),
                        host_header=server_hostname)
        OPEN_CLIENTS.append(c)
        return c


def https_request(port, method, path, context, body=None, headers=None, timeout=10.0,
                  server_hostname="localhost"):
    """(status, headers, body bytes) over HTTPS to 127.0.0.1:port. body: bytes,
    str or a JSON-able object."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, bytearray, str)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    # Connect to 127.0.0.1 but verify the certificate for server_hostname:
    # the connection is made here and handed to http.client.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port),
                                                                 timeout=timeout),
                                        server_hostname=server_hostname)
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()
