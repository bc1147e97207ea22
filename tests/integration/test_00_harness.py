"""Self-tests of the harness, independent of pushbridge: the Kafka broker
fixture (start, topics, exact-bytes produce/consume, stop/start), the raw
WebSocket client against a small Python WebSocket server written here, and
the bridge launcher against a stub binary."""

import base64
import hashlib
import json
import socket
import struct
import subprocess
import textwrap
import threading

import pytest

from bridge import BridgeFactory, deep_merge
from pbutil import parse_prometheus, metric_value, wait_until
from wsclient import (ABNORMAL_CLOSURE, GUID, OP_BINARY, OP_CLOSE, OP_TEXT, WsClient,
                      WsHandshakeError, apply_mask, encode_frame)


# --------------------------------------------------------------------------
# Kafka broker fixture
# --------------------------------------------------------------------------


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    """The storage tool reads "-t -xyz..." as a missing argument: an ID that would
    start with "-" (its first 6 bits 62) is drawn again."""
    import uuid
    import kafka_harness
    drawn = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(kafka_harness.uuid, "uuid4", lambda: next(drawn))
    assert base64.urlsafe_b64encode(b"\xf8").decode().startswith("-")
    cid = kafka_harness.new_cluster_id()
    assert cid == base64.urlsafe_b64encode(b"\x01" * 16).decode().rstrip("=")

def test_broker_answers_metadata(kafka):
    r = subprocess.run(["kcat", "-b", kafka.bootstrap, "-L", "-J"], stdout=subprocess.PIPE,
                       timeout=20, check=True)
    md = json.loads(r.stdout)
    assert [b["name"] for b in md["brokers"]] == [kafka.bootstrap]
    assert kafka.bootstrap.startswith("127.0.0.1:")


def test_create_topic_with_partitions(kafka):
    topic = kafka.unique_topic()
    kafka.create_topic(topic, 3)
    parts = kafka.metadata(topic)["partitions"]
    assert sorted(p["partition"] for p in parts) == [0, 1, 2]
    assert all(p["leader"] == 1 for p in parts)
    # Creating it again is not an error.
    kafka.create_topic(topic, 3)


def test_produce_consume_exact_bytes(kafka):
    topic = kafka.unique_topic()
    kafka.create_topic(topic, 1)
    value = b'{"event":"x","data":"line1\nline2"}\x00\xff\xfe end\n'
    kafka.produce(topic, value, key=b"user-1", headers={"event": "e9"})
    kafka.produce(topic, b"no key here")
    kafka.produce(topic, None, key="tomb")
    got = kafka.consume(topic, 3)
    assert [(m["key"], m["value"]) for m in got] == [
        (b"user-1", value), (None, b"no key here"), (b"tomb", None)]
    assert got[0]["headers"] == "event=e9"
    assert got[1]["headers"] == ""
    assert [m["offset"] for m in got] == [0, 1, 2]
    assert kafka.end_offsets(topic) == {0: 3}


def test_produce_many_keeps_order_and_bytes(kafka):
    topic = kafka.unique_topic()
    kafka.create_topic(topic, 2)
    msgs = [(f"k{i % 3}" if i % 5 else None, f'{{"n":{i}}}\n\t' * (1 + i % 4))
            for i in range(200)]
    kafka.produce_many(topic, msgs, partition=1)
    got = kafka.consume(topic, 200, partition=1)
    assert [(m["key"], m["value"]) for m in got] == [
        (None if k is None else k.encode(), v.encode()) for k, v in msgs]
    assert kafka.end_offsets(topic) == {0: 0, 1: 200}


def test_broker_stop_start_keeps_data_and_port(kafka):
    topic = kafka.unique_topic()
    kafka.create_topic(topic, 1)
    kafka.produce(topic, b"before")
    bootstrap = kafka.bootstrap
    kafka.stop()
    assert not kafka.running
    assert not kafka.is_up()
    kafka.start()
    assert kafka.running and kafka.bootstrap == bootstrap
    kafka.produce(topic, b"after")
    assert [m["value"] for m in kafka.consume(topic, 2)] == [b"before", b"after"]


# --------------------------------------------------------------------------
# WebSocket client against a tiny server written here
# --------------------------------------------------------------------------

class EchoServer:
    """A small RFC 6455 server: echoes messages, and obeys text commands
    (frag:N:TEXT, big:N, ping-me, close:CODE:REASON, eof)."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.events = []  # what the server saw, for assertions
        self.threads = []
        self._stop = False
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()

    def close(self):
        self._stop = True
        self.lsock.close()

    def _accept_loop(self):
        while not self._stop:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            t.start()

    @staticmethod
    def _recvn(s, n, buf):
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def _read_frame(self, s, buf):
        b0, b1 = self._recvn(s, 2, buf)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._recvn(s, 2, buf))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._recvn(s, 8, buf))[0]
        masked = bool(b1 & 0x80)
        mk = self._recvn(s, 4, buf) if masked else None
        payload = self._recvn(s, n, buf)
        if masked:
            payload = apply_mask(payload, mk)
        return bool(b0 & 0x80), b0 & 0x0F, masked, payload

    def _serve(self, s):
        buf = bytearray()
        try:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return
                buf += chunk
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            buf = bytearray(rest)
            lines = head.decode().split("\r\n")
            path = lines[0].split()[1]
            hdrs = {k.strip().lower(): v.strip() for k, v in
                    (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            self.events.append(("handshake", path, hdrs.get("origin")))
            if path == "/forbidden":
                body = b'{"error":"forbidden"}'
                s.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body)
                return
            accept = base64.b64encode(hashlib.sha1(
                (hdrs["sec-websocket-key"] + GUID).encode()).digest()).decode()
            if path == "/bad-accept":
                accept = base64.b64encode(b"x" * 20).decode()
            s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            parts, msg_op = [], None
            while True:
                fin, op, masked, payload = self._read_frame(s, buf)
                if not masked:
                    self.events.append(("unmasked", op))
                    s.sendall(encode_frame(OP_CLOSE, struct.pack("!H", 1002), mask=False))
                    return
                if op == 0x9:
                    s.sendall(encode_frame(0xA, payload, mask=False))
                    continue
                if op == 0xA:
                    self.events.append(("pong", payload))
                    s.sendall(encode_frame(OP_TEXT, b"got-pong:" + payload, mask=False))
                    continue
                if op == OP_CLOSE:
                    self.events.append(("close", payload))
                    s.sendall(encode_frame(OP_CLOSE, payload[:2], mask=False))
                    return
                if op in (OP_TEXT, OP_BINARY):
                    msg_op, parts = op, [payload]
                else:
                    parts.append(payload)
                if not fin:
                    continue
                msg = b"".join(parts)
                if msg_op == OP_TEXT:
                    self.events.append(("text", msg))
                    if self._command(s, buf, msg):
                        return
                    continue
                self.events.append(("binary", msg))
                s.sendall(encode_frame(msg_op, msg, mask=False))
        except (EOFError, OSError):
            return
        finally:
            s.close()

    def _command(self, s, buf, msg):
        """Handle a text message; True when the connection is done."""
        t = msg.decode()
        if t.startswith("frag:"):
            _, n, text = t.split(":", 2)
            n = int(n)
            step = max(1, len(text) // n)
            pieces = [text[i:i + step] for i in range(0, len(text), step)]
            for i, p in enumerate(pieces):
                s.sendall(encode_frame(OP_TEXT if i == 0 else 0, p, fin=i == len(pieces) - 1,
                                       mask=False))
                if i == 0:
                    s.sendall(encode_frame(0x9, b"between", mask=False))
        elif t.startswith("big:"):
            s.sendall(encode_frame(OP_TEXT, b"x" * int(t[4:]), mask=False))
        elif t == "ping-me":
            s.sendall(encode_frame(0x9, b"srv", mask=False))
        elif t.startswith("close:"):
            _, code, reason = t.split(":", 2)
            s.sendall(encode_frame(OP_CLOSE, struct.pack("!H", int(code)) + reason.encode(),
                                   mask=False))
            try:
                _fin, op, _m, payload = self._read_frame(s, buf)
                self.events.append(("close-echo", op, payload))
            except (EOFError, OSError):
                pass
            return True
        elif t == "eof":
            return True
        elif t == "masked-frame":
            s.sendall(encode_frame(OP_TEXT, b"bad", mask=True))
        else:
            s.sendall(encode_frame(OP_TEXT, msg, mask=False))
        return False


@pytest.fixture
def echo():
    srv = EchoServer()
    yield srv
    srv.close()


def test_ws_handshake_and_echo(echo):
    c = WsClient.connect("127.0.0.1", echo.port, path="/ws", origin="http://example.test")
    assert echo.events[0] == ("handshake", "/ws", "http://example.test")
    c.send_text("hello \u00e9")
    assert c.recv_text() == "hello \u00e9"
    c.send_json({"a": 1})
    assert c.recv_json() == {"a": 1}
    c.send_binary(b"\x00\x01\xff")
    assert c.recv() == (OP_BINARY, b"\x00\x01\xff")
    c.no_message(0.1)
    c.close()
    assert ("close", struct.pack("!H", 1000)) in echo.events


@pytest.mark.parametrize("size", [125, 126, 65535, 65536, 300000])
def test_ws_payload_lengths(echo, size):
    c = WsClient.connect("127.0.0.1", echo.port)
    c.send_text("y" * size)
    assert c.recv_text() == "y" * size
    c.send_text(f"big:{size}")
    assert c.recv_text() == "x" * size
    c.close()


def test_ws_fragmented_both_ways(echo):
    c = WsClient.connect("127.0.0.1", echo.port)
    c.send_fragmented(OP_TEXT, ["fr", "ag", "ment"], interleave_ping=True)
    assert c.recv_text() == "fragment"
    # Server fragments with a ping between fragments: recv() reassembles and
    # answers the ping.
    c.send_text("frag:3:abcdefghi")
    assert c.recv_text() == "abcdefghi"
    assert c.pings_received == [b"between"]
    assert c.recv_text() == "got-pong:between"
    c.close()


def test_ws_answers_server_ping(echo):
    c = WsClient.connect("127.0.0.1", echo.port)
    c.send_text("ping-me")
    assert c.recv_text() == "got-pong:srv"
    assert ("pong", b"srv") in echo.events
    c.send_ping(b"cli")
    c.send_text("after")
    assert c.recv_text() == "after"
    assert c.pongs_received == [b"cli"]
    c.close()


def test_ws_expect_close_code_and_echo(echo):
    c = WsClient.connect("127.0.0.1", echo.port)
    c.send_text("close:4009:slow consumer")
    assert c.expect_close() == (4009, "slow consumer")
    c.expect_eof()
    wait_until(lambda: any(e[0] == "close-echo" for e in echo.events), timeout=5,
               desc="close echo seen by server")
    echo_ev = [e for e in echo.events if e[0] == "close-echo"][0]
    assert echo_ev[1] == OP_CLOSE and echo_ev[2] == struct.pack("!H", 4009)


def test_ws_expect_close_on_eof_is_1006(echo):
    c = WsClient.connect("127.0.0.1", echo.port)
    c.send_text("eof")
    assert c.expect_close() == (ABNORMAL_CLOSURE, "")


def test_ws_unmasked_frame_is_sent_raw(echo):
    c = WsClient.connect("127.0.0.1", echo.port)
    c.send_frame(OP_TEXT, b"naked", mask=False)
    assert c.expect_close() == (1002, "")
    assert ("unmasked", OP_TEXT) in echo.events


def test_ws_rejects_masked_server_frame(echo):
    from wsclient import ProtocolError
    c = WsClient.connect("127.0.0.1", echo.port)
    c.send_text("masked-frame")
    with pytest.raises(ProtocolError):
        c.recv()
    c.abort()


def test_ws_failed_upgrade_status_is_visible(echo):
    with pytest.raises(WsHandshakeError) as ei:
        WsClient.connect("127.0.0.1", echo.port, path="/forbidden")
    assert ei.value.status == 403
    assert ei.value.body == b'{"error":"forbidden"}'


def test_ws_checks_accept_key(echo):
    with pytest.raises(WsHandshakeError, match="Sec-WebSocket-Accept"):
        WsClient.connect("127.0.0.1", echo.port, path="/bad-accept")


def test_ws_no_message_asserts_absence(echo):
    c = WsClient.connect("127.0.0.1", echo.port)
    c.send_text("something")
    with pytest.raises(AssertionError, match="expected no message"):
        c.no_message(2.0)
    c.close()


def test_accept_key_rfc_example():
    # The example of RFC 6455 section 1.3.
    from wsclient import accept_key
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# --------------------------------------------------------------------------
# Helpers and the bridge launcher (against a stub binary)
# --------------------------------------------------------------------------

def test_parse_prometheus():
    text = textwrap.dedent('''\
        # HELP pushbridge_connections Open connections
        # TYPE pushbridge_connections gauge
        pushbridge_connections 3
        pushbridge_events_dropped_total{topic="t",reason="not_json"} 2
        pushbridge_events_dropped_total{topic="t",reason="stale"} 1
        pushbridge_delivery_latency_seconds_bucket{le="+Inf"} 7
        x{a="q\\"uote"} 1.5e3
        ''')
    m = parse_prometheus(text)
    assert metric_value(m, "pushbridge_connections") == 3
    assert metric_value(m, "pushbridge_events_dropped_total", topic="t") == 3
    assert metric_value(m, "pushbridge_events_dropped_total", reason="stale") == 1
    assert metric_value(m, "pushbridge_delivery_latency_seconds_bucket", le="+Inf") == 7
    assert metric_value(m, "x", a='q"uote') == 1500
    assert metric_value(m, "absent") is None
    with pytest.raises(ValueError):
        parse_prometheus("not a metric line at all {")


def test_deep_merge():
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    assert deep_merge(base, {"a": {"b": 5}, "d": [2], "e": 1}) == {
        "a": {"b": 5, "c": 2}, "d": [2], "e": 1}
    assert deep_merge(base, {"a": {"c": None}}) == {"a": {"b": 1}, "d": [1]}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1]}


STUB = r'''#!/usr/bin/env python3
# Stands in for pushbridge: reads -c CONFIG, serves /readyz and /users on the
# internal listener, exits 0 on SIGTERM.
import json, signal, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
cfg = json.load(open(sys.argv[sys.argv.index("-c") + 1]))
if cfg.get("stub_exit"):
    print("stub: bad config key stub_exit", file=sys.stderr, flush=True)
    sys.exit(cfg["stub_exit"])
host, port = cfg["listen"]["internal"].rsplit(":", 1)
start = time.monotonic()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/readyz":
            ok = time.monotonic() - start > 0.3
            self.send_response(200 if ok else 503)
            body = b"{}"
        else:
            self.send_response(200)
            body = json.dumps({"path": self.path, "env": __import__("os").environ.get("PB_STUB_ENV")}).encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print("stub http:", fmt % args, file=sys.stderr, flush=True)
srv = HTTPServer((host, int(port)), H)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("stub listening", cfg["kafka"]["brokers"], cfg["kafka"]["topics"], file=sys.stderr, flush=True)
srv.serve_forever()
'''


@pytest.fixture
def stub_binary(tmp_path):
    p = tmp_path / "stub-pushbridge"
    p.write_text(STUB)
    p.chmod(0o755)
    return str(p)


def test_bridge_launcher_with_stub(kafka, tmp_path, stub_binary):
    factory = BridgeFactory(kafka, str(tmp_path))
    try:
        b = factory(binary=stub_binary, config={"ws": {"path": "/x"}},
                    env={"PB_STUB_ENV": "yes"}, partitions=2)
        cfg = json.load(open(b.config_path))
        assert cfg["ws"] == {"path": "/x"}
        assert cfg["auth"] == {"mode": "none"}
        assert cfg["kafka"]["brokers"] == kafka.bootstrap
        assert cfg["kafka"]["topics"] == [b.topic]
        assert len(kafka.metadata(b.topic)["partitions"]) == 2
        assert cfg["listen"]["public"] == f"127.0.0.1:{b.public_port}"
        st, doc, _ = b.json("GET", "/anything")
        assert st == 200 and doc == {"path": "/anything", "env": "yes"}
        b.wait_log(r"stub http: .*GET /anything")
        assert f"stub listening {kafka.bootstrap}" in b.log_text()
        assert b.stop() == 0
    finally:
        assert factory.teardown() == []


def test_bridge_launcher_reports_early_exit(kafka, tmp_path, stub_binary):
    factory = BridgeFactory(kafka, str(tmp_path))
    with pytest.raises(AssertionError, match=r"exited with 2 before ready(.|\n)*stub_exit"):
        factory(binary=stub_binary, config={"stub_exit": 2})
    factory.teardown()
