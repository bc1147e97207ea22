"""TLS (issue 4 item 3; SPEC §2, README settings tls.*): tls.cert/tls.key
turn the public listener into https/wss; with tls.internal true the
internal listener is https too. The certificate is self-signed, made at test
time, and the client trusts exactly it (and checks the name localhost). A
certificate path that cannot be read is a start-up error naming the file,
for --check-config as for a start."""

import http.client
import json
import os
import socket
import ssl
import time
import types

import pytest

from pbutil import envelope, free_port, unique_uid, wait_until, without_pos
from tlsutil import TlsWsClient, cert_der, client_context, https_request, make_cert
from wsclient import WsClient, WsHandshakeError


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tls"))
    cert, key = make_cert(d, name="server")
    other_cert, other_key = make_cert(d, name="other")
    garbage = os.path.join(d, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    return types.SimpleNamespace(dir=d, cert=cert, key=key, other_cert=other_cert,
                                 other_key=other_key, garbage=garbage,
                                 ctx=client_context(cert))


@pytest.fixture
def tls(module_bridge_factory, certs):
    return module_bridge_factory.shared(config={"tls": {"cert": certs.cert, "key": certs.key}})


def _wss(bridge, certs, **kw):
    return TlsWsClient.connect_tls("127.0.0.1", bridge.public_port, certs.ctx, **kw)


# ---- wss:// on the public listener ------------------------------------------------

def test_wss_native_login_and_delivery(tls, certs, kafka):
    c = _wss(tls, certs)
    assert c.sock.getpeercert(binary_form=True) == cert_der(certs.cert)
    uid = unique_uid()
    welcome = c.login_native(uid)
    assert welcome["user"] == uid
    kafka.produce(tls.topic, envelope(event="task.progress", data={"pct": 1}), key=uid)
    assert without_pos(c.recv_json(10)) == {"type": "event", "event": "task.progress", "data": {"pct": 1}}
    # The internal listener stays plain HTTP without tls.internal.
    assert tls.push(uid, "over http", event="x") == (200, {"delivered": 1})
    assert c.recv_json()["data"] == "over http"


def test_wss_seed_login_and_send(tls, certs):
    c = _wss(tls, certs)
    uid = unique_uid()
    c.send_json({"uid": uid})
    tls.wait_user_connections(uid, 1)
    st, doc = tls.send(uid, "Hello World")
    assert (st, doc) == (200, {"delivered": 1})
    assert c.recv_text() == "Hello World"


def test_wss_large_event_and_fragmented_client_message(tls, certs):
    c = _wss(tls, certs)
    uid = unique_uid()
    c.login_native(uid)
    big = "z" * 200000
    assert tls.push(uid, big, event="big") == (200, {"delivered": 1})
    assert c.recv_json(10)["data"] == big
    c.send_fragmented(0x1, ['{"type":', '"ping"}'])
    assert c.recv_json() == {"type": "pong"}


def test_https_page_on_public_listener(tls, certs):
    st, _, body = https_request(tls.public_port, "GET", "/", certs.ctx)
    assert st == 200, (st, body[:200])


def test_plain_ws_to_tls_port_fails_and_bridge_carries_on(tls, certs):
    uid = unique_uid()
    healthy = _wss(tls, certs)
    healthy.login_native(uid)
    with pytest.raises((WsHandshakeError, OSError)) as ei:
        c = WsClient.connect("127.0.0.1", tls.public_port, timeout=5)
        c.abort()
    if isinstance(ei.value, WsHandshakeError):
        assert ei.value.status != 101
    tls.assert_alive()
    assert tls.push(uid, "after plain", event="x") == (200, {"delivered": 1})
    assert healthy.recv_json()["data"] == "after plain"


def test_plain_http_to_tls_port_gets_no_http_answer(tls, certs):
    s = socket.create_connection(("127.0.0.1", tls.public_port), timeout=5)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        got = b""
        try:
            while len(got) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    finally:
        s.close()
    assert not got.startswith(b"HTTP/1.1 200"), got[:200]
    assert _wss(tls, certs).login_native(unique_uid())["type"] == "welcome"


def test_stalled_and_garbage_tls_handshakes_do_not_block_others(tls, certs):
    uid = unique_uid()
    healthy = _wss(tls, certs)
    healthy.login_native(uid)
    stalled = []
    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", tls.public_port), timeout=5)
            # Half a ClientHello record header, or random bytes.
            s.sendall(b"\x16\x03\x01\x02\x00\x01" if i % 2 else os.urandom(64))
            stalled.append(s)
        t0 = time.monotonic()
        assert tls.push(uid, "meanwhile", event="x") == (200, {"delivered": 1})
        assert healthy.recv_json(5)["data"] == "meanwhile"
        late = _wss(tls, certs)
        assert late.login_native(unique_uid())["type"] == "welcome"
        assert time.monotonic() - t0 < 5
    finally:
        for s in stalled:
            s.close()


def test_client_verifying_against_another_cert_fails(tls, certs):
    """The bridge presents the configured certificate, not some other."""
    with pytest.raises(ssl.SSLCertVerificationError):
        TlsWsClient.connect_tls("127.0.0.1", tls.public_port, client_context(certs.other_cert))


# ---- tls.internal ---------------------------------------------------------------

def _wait_https_ready(b, ctx, timeout=30):
    def ready():
        if not b.alive:
            raise AssertionError(f"pushbridge exited with {b.proc.returncode}:\n"
                                 f"{b.log_tail(4000)}")
        try:
            return https_request(b.internal_port, "GET", "/readyz", ctx, timeout=2)[0] == 200
        except (OSError, ssl.SSLError):
            return False
    wait_until(ready, timeout=timeout, desc="GET https://internal/readyz == 200")


def test_tls_internal_serves_https_api(bridge_factory, certs):
    b = bridge_factory(config={"tls": {"cert": certs.cert, "key": certs.key,
                                       "internal": True}}, wait_ready=False)
    _wait_https_ready(b, certs.ctx)
    uid = unique_uid()
    c = _wss(b, certs)
    c.login_native(uid)
    st, _, body = https_request(b.internal_port, "POST", "/push", certs.ctx,
                                body={"user_id": uid, "event": "x", "data": "secure"})
    assert (st, json.loads(body)) == (200, {"delivered": 1})
    assert c.recv_json()["data"] == "secure"
    for path in ("/metrics", "/stats", "/healthz", "/users/" + uid):
        assert https_request(b.internal_port, "GET", path, certs.ctx)[0] == 200, path
    # Plain HTTP to the internal listener is not served.
    try:
        st = b.http("GET", "/healthz", timeout=5)[0]
    except (OSError, http.client.HTTPException):
        st = None
    assert st != 200, "plain HTTP is still served on the internal listener"


def test_tls_internal_without_cert_is_a_config_error(run_cli):
    cfg = {"listen": {"public": f"127.0.0.1:{free_port()}",
                      "internal": f"127.0.0.1:{free_port()}"},
           "kafka": {"brokers": "127.0.0.1:9092", "topics": ["t"], "group_id": "g"},
           "auth": {"mode": "none"}, "tls": {"internal": True}}
    r = run_cli(["--check-config"], config=cfg)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "tls.internal" in r.stdout + r.stderr


# ---- bad certificate paths and files --------------------------------------------

def _cfg(tls):
    return {"listen": {"public": f"127.0.0.1:{free_port()}",
                       "internal": f"127.0.0.1:{free_port()}"},
            "kafka": {"brokers": "127.0.0.1:9092", "topics": ["t"], "group_id": "g"},
            "auth": {"mode": "none"}, "tls": tls}


@pytest.mark.parametrize("which", ["cert", "key"])
def test_check_config_missing_file_names_it(run_cli, certs, which):
    missing = os.path.join(certs.dir, f"no-such-{which}.pem")
    tls = {"cert": certs.cert, "key": certs.key}
    tls[which] = missing
    r = run_cli(["--check-config"], config=_cfg(tls))
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert missing in out, f"the message does not name {missing}: {out!r}"


@pytest.mark.parametrize("which", ["cert", "key"])
def test_start_with_missing_file_exits_naming_it(bridge_factory, certs, which):
    missing = os.path.join(certs.dir, f"absent-{which}.pem")
    tls = {"cert": certs.cert, "key": certs.key}
    tls[which] = missing
    b = bridge_factory(config={"tls": tls}, wait_ready=False)
    rc = b.wait_exit(timeout=20)
    b.expected_exit = True
    assert rc != 0
    assert missing in b.log_text(), b.log_tail(2000)


@pytest.mark.parametrize("case", ["garbage_cert", "key_of_another_cert", "cert_as_key"])
def test_start_with_unusable_cert_or_key_exits(bridge_factory, certs, case):
    tls = {"garbage_cert": {"cert": certs.garbage, "key": certs.key},
           "key_of_another_cert": {"cert": certs.cert, "key": certs.other_key},
           "cert_as_key": {"cert": certs.cert, "key": certs.cert}}[case]
    b = bridge_factory(config={"tls": tls}, wait_ready=False)
    rc = b.wait_exit(timeout=20)
    b.expected_exit = True
    assert rc != 0
    log = b.log_text()
    # The message points at the TLS settings or the file.
    assert any(s in log for s in ("tls.cert", "tls.key", tls["cert"], tls["key"])), log[-2000:]
