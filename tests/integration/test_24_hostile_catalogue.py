"""A catalogue of hostile input (issue 4 item 6; SPEC §6: nothing malformed
from Kafka, HTTP or a client can crash the bridge or stall delivery to
others). Each entry sends one hostile input, asserts the exact answer (drop
reason, HTTP status and JSON error, close code, or what is delivered), and
then that a healthy connection receives an event produced right after.

Only inputs that test_06 (Kafka), test_07 (HTTP) and test_08 (WebSocket
frames) do not already cover are here. The entries are listed in
CATALOGUE at the end of the file (test_catalogue_has_at_least_30_entries
counts them)."""

import json
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
import types
import urllib.parse

import pytest

from pbutil import envelope, unique_uid, wait_until, without_pos
from wsclient import (ABNORMAL_CLOSURE, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                      ConnectionClosed, WsClient, WsHandshakeError, encode_frame)

MAX_MSG = 16384                 # ws.max_message_bytes of the shared bridge
BIG_MAX_MSG = 4 * 1024 * 1024   # of the bridge for multi-megabyte client messages
MAX_EVENT = 1024 * 1024         # kafka.max_event_bytes (the default)
PROTOCOL_CLOSE = (1002, ABNORMAL_CLOSURE)


# ---- fixtures -------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_topic(kafka):
    """The shared bridge's topic, made to take messages of several MiB."""
    t = kafka.unique_topic("hostile")
    kafka.create_topic(t, 1, config={"max.message.bytes": str(16 * 1024 * 1024)})
    return t


@pytest.fixture
def shared(module_bridge_factory, big_topic):
    return module_bridge_factory.shared(
        config={"ws": {"max_message_bytes": MAX_MSG}}, topic=big_topic, create_topic=False)


@pytest.fixture
def big(module_bridge_factory):
    """A bridge that accepts client messages of up to 4 MiB."""
    return module_bridge_factory.shared(config={"ws": {"max_message_bytes": BIG_MAX_MSG}})


@pytest.fixture
def healthy(shared):
    """A user with a native and a seed connection that must keep receiving."""
    uid = unique_uid("h")
    native, _ = shared.native_client(uid)
    seed = shared.uid_client(uid)
    return types.SimpleNamespace(uid=uid, native=native, seed=seed)


# ---- helpers ----------------------------------------------------------------------

def _carried_on_kafka(bridge, kafka, h, tag):
    """A good event produced now is the first thing both connections get."""
    bridge.assert_alive()
    kafka.produce(bridge.topic, envelope(event="good", data={"after": tag}), key=h.uid)
    m = h.native.recv_json(15)
    assert without_pos(m) == {"type": "event", "event": "good", "data": {"after": tag}}, m
    assert json.loads(h.seed.recv_text(15)) == {"after": tag}


def _carried_on_http(bridge, h, tag, timeout=5.0):
    bridge.assert_alive()
    st, doc = bridge.push(h.uid, {"after": tag}, event="good")
    assert (st, doc) == (200, {"delivered": 2}), (st, doc)
    m = h.native.recv_json(timeout)
    assert without_pos(m) == {"type": "event", "event": "good", "data": {"after": tag}}, m
    assert json.loads(h.seed.recv_text(timeout)) == {"after": tag}


def _carried_on_native(bridge, c, uid, tag, timeout=5.0):
    bridge.assert_alive()
    assert bridge.push(uid, tag, event="good") == (200, {"delivered": 1})
    m = c.recv_json(timeout)
    assert (m["event"], m["data"]) == ("good", tag), m


def _dropped(bridge, **labels):
    return bridge.metric("pushbridge_events_dropped_total", topic=bridge.topic, **labels) or 0


def _assert_survived(bridge):
    """After a connection ended unexpectedly: is the process still there?
    (Polls one second for a dying process, so a crash is reported as one.)"""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and bridge.alive:
        time.sleep(0.05)
    bridge.assert_alive()


def _error_json(doc, code, field=None):
    assert isinstance(doc, dict), f"error body is not a JSON object: {doc!r}"
    assert doc.get("error") == code, doc
    assert isinstance(doc.get("message"), str) and doc["message"], doc
    if field:
        assert field in doc["message"], f"message does not name {field!r}: {doc!r}"


def kcat_produce_raw(kafka, topic, value, key=None, headers=()):
    """One message through kcat with a raised producer size limit (the
    harness keeps librdkafka's 1 000 000-byte default) and headers given as
    raw bytes, so that a header value may be invalid UTF-8. key: bytes
    without NUL (an argv string)."""
    fd, path = tempfile.mkstemp(prefix="pb-hostile-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        args = [b"kcat", b"-P", b"-b", kafka.bootstrap.encode(), b"-t", topic.encode(),
                b"-X", b"message.max.bytes=33554432", b"-X", b"message.timeout.ms=20000"]
        if key is not None:
            args += [b"-k", key]
        for hk, hv in headers:
            args += [b"-H", hk + b"=" + hv]
        args.append(path.encode())
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        err = r.stderr.decode(errors="replace")
        assert r.returncode == 0 and "ERROR" not in err, f"kcat failed: {err}"
    finally:
        os.unlink(path)


# ==== Kafka values and keys ==========================================================
#
# Each case: (id, build(uid, other) -> dict(key, value, headers, raw, expect)).
# expect: ("drop", reason) — counted under that reason, delivered to nobody;
#         ("nobody",) — delivered to no connection of the test;
#         ("deliver", event, data_text, seed_text) — the healthy user gets it.

def _nested(n):
    return b'{"data":' + b"[" * n + b"]" * n + b"}"


def _many_members(n):
    body = ",".join(f'"m{i}":{i}' for i in range(n))
    return ('{' + body + ',"data":"end"}').encode()


KAFKA_CASES = {
    "value_over_1_mib": lambda u, o: dict(
        key=u.encode(), value=envelope(data="x" * MAX_EVENT), raw=True,
        expect=("drop", "oversized")),
    "key_with_nul_after_user": lambda u, o: dict(
        key=u.encode() + b"\x00evil", value=envelope(data="for whom?"),
        expect=("nobody",)),
    "key_star_with_nul": lambda u, o: dict(
        key=b"*\x00", value=envelope(data="for everyone?"), expect=("nobody",)),
    "key_overlong_encoded_star": lambda u, o: dict(
        key=b"\xc0\xaa", value=envelope(data="overlong star"), expect=("drop", "no_target")),
    "key_group_name_300_bytes": lambda u, o: dict(
        key=b"group:" + b"g" * 300, value=envelope(data="long group"),
        expect=("drop", "no_target")),
    "key_group_name_empty": lambda u, o: dict(
        key=b"group:", value=envelope(data="empty group"), expect=("drop", "no_target")),
    "key_86_chars_258_bytes": lambda u, o: dict(
        key="\u20ac".encode() * 86, value=envelope(data="multibyte"),
        expect=("drop", "no_target")),
    "value_1e6_nested_arrays_unclosed": lambda u, o: dict(
        key=u.encode(), value=b'{"data":' + b"[" * 1000000, raw=True,
        expect=("drop", "not_json")),
    "value_500k_nested_arrays_valid": lambda u, o: dict(
        key=u.encode(), value=_nested(500000), raw=True,
        expect=("deliver", "message", (b"[" * 500000 + b"]" * 500000).decode(),
                (b"[" * 500000 + b"]" * 500000).decode())),
    "value_utf16le_with_bom": lambda u, o: dict(
        key=u.encode(), value='\ufeff{"data":"utf16"}'.encode("utf-16-le"),
        expect=("drop", "not_json")),
    "value_utf16be_without_bom": lambda u, o: dict(
        key=u.encode(), value='{"data":"utf16"}'.encode("utf-16-be"),
        expect=("drop", "not_json")),
    "value_utf32le": lambda u, o: dict(
        key=u.encode(), value='{"data":"utf32"}'.encode("utf-32-le"),
        expect=("drop", "not_json")),
    "value_duplicated_members_last_wins": lambda u, o: dict(
        key=u.encode(),
        value=b'{"event":"first","data":"first","event":"last","data":"last"}',
        expect=("deliver", "last", '"last"', "last")),
    "value_duplicated_user_id_no_key": lambda u, o: dict(
        key=None, value=json.dumps({"data": "dup"}).encode()[:-1]
        + f',"user_id":"{o}","user_id":"{u}"}}'.encode(),
        expect=("deliver", "message", '"dup"', "dup")),
    "header_event_invalid_utf8": lambda u, o: dict(
        key=u.encode(), value=envelope(data="bad header"), raw=True,
        headers=[(b"event", b"\xff\xfe\xc3\x28")], expect=("drop", "bad_field")),
    "header_event_300_bytes": lambda u, o: dict(
        key=u.encode(), value=envelope(data="long header"), raw=True,
        headers=[(b"event", b"e" * 300)], expect=("drop", "bad_field")),
    "value_raw_nul_in_string": lambda u, o: dict(
        key=u.encode(), value=b'{"data":"a\x00b"}', expect=("drop", "not_json")),
    "value_raw_control_char_in_string": lambda u, o: dict(
        key=u.encode(), value=b'{"data":"a\x1fb"}', expect=("drop", "not_json")),
    "value_escaped_nul_in_data": lambda u, o: dict(
        key=u.encode(), value=b'{"data":"a\\u0000b"}',
        expect=("deliver", "message", '"a\\u0000b"', "a\x00b")),
    "value_lone_low_surrogate_escape": lambda u, o: dict(
        key=u.encode(), value=b'{"data":"x\\udc00y"}',
        expect=("deliver", "message", '"x\\udc00y"', None)),
    "value_number_overflow": lambda u, o: dict(
        key=u.encode(), value=b'{"data":1e999999}',
        expect=("deliver", "message", "1e999999", "1e999999")),
    "value_event_with_escaped_nul": lambda u, o: dict(
        key=u.encode(), value=b'{"event":"a\\u0000b","data":1}', expect=("drop", "bad_field")),
    "value_user_id_with_escaped_nul_no_key": lambda u, o: dict(
        key=None, value=json.dumps({"user_id": u + "\u0000x", "data": 1}).encode(),
        expect=("drop", "bad_field")),
    "value_50000_members": lambda u, o: dict(
        key=u.encode(), value=_many_members(50000),
        expect=("deliver", "message", '"end"', "end")),
}


@pytest.mark.parametrize("case", list(KAFKA_CASES))
def test_kafka_hostile(shared, kafka, healthy, case):
    other = unique_uid("o")
    other_c, _ = shared.native_client(other)
    spec = KAFKA_CASES[case](healthy.uid, other)
    expect = spec["expect"]
    before_total = _dropped(shared)
    before_reason = _dropped(shared, reason=expect[1]) if expect[0] == "drop" else None
    if spec.get("raw"):
        kcat_produce_raw(kafka, shared.topic, spec["value"], key=spec["key"],
                         headers=spec.get("headers", ()))
    else:
        kafka.produce(shared.topic, spec["value"], key=spec["key"])

    if expect[0] == "deliver":
        _, event, data_text, seed_text = expect
        text = healthy.native.recv_text(20)
        pos = re.match(r'\{"type":"event","event":(?:"(?:[^"\\]|\\.)*"),"pos":"([^"]+)"', text)
        assert pos, f"native frame without pos: {text[:300]!r}"
        want = ('{"type":"event","event":' + json.dumps(event) + ',"pos":"' + pos.group(1) +
                '","data":' + data_text + "}")
        assert text == want, f"native frame {text[:300]!r} (len {len(text)}), " \
                             f"expected {want[:300]!r} (len {len(want)})"
        got = healthy.seed.recv_text(20)   # strict UTF-8: a browser would fail otherwise
        if seed_text is not None:
            assert got == seed_text, (got[:200], seed_text[:200])
    _carried_on_kafka(shared, kafka, healthy, case)
    other_c.no_message(0.05)
    if expect[0] == "drop":
        assert _dropped(shared, reason=expect[1]) == before_reason + 1
        assert _dropped(shared) == before_total + 1
    else:
        assert _dropped(shared) == before_total


def test_kafka_key_with_nul_reaches_neither_prefix_user_nor_broadcast(shared, kafka):
    """The user named by the bytes before a NUL must not get the event."""
    victim = unique_uid("v")
    c, _ = shared.native_client(victim)
    bystander, _ = shared.native_client(unique_uid("b"))
    kafka.produce(shared.topic, envelope(event="x", data="leak"), key=victim.encode() + b"\x00")
    kafka.produce(shared.topic, envelope(event="x", data="leak"), key=b"*\x00" + victim.encode())
    kafka.produce(shared.topic, envelope(event="x", data="fine"), key=victim)
    assert c.recv_json(10)["data"] == "fine"
    bystander.no_message(0.1)


# ==== HTTP requests ==================================================================

def _exchange(port, data, timeout=5.0, until_responses=None, shut_write=False):
    """Send raw bytes; read until EOF, `until_responses` complete answers,
    or timeout. Returns (responses, closed_by_server, leftover)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    closed = False
    deadline = time.monotonic() + timeout
    try:
        if data:
            s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        while True:
            if until_responses is not None and \
                    len(_parse_responses(buf)[0]) >= until_responses:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            s.settimeout(remaining)
            try:
                chunk = s.recv(1 << 20)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
    finally:
        s.close()
    responses, rest = _parse_responses(buf)
    return responses, closed, rest


def _parse_responses(buf):
    """Complete HTTP/1.x responses in buf: [(status, headers, body)], rest."""
    out = []
    while b"\r\n\r\n" in buf:
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if not parts[0].startswith("HTTP/1."):
            break
        hdrs = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        if len(rest) < n:
            break
        out.append((int(parts[1]), hdrs, rest[:n]))
        buf = rest[n:]
    return out, buf


def _json_body(resp):
    try:
        return json.loads(resp[2])
    except ValueError:
        raise AssertionError(f"body is not JSON: {resp[2][:200]!r} "
                             f"(status {resp[0]}, {resp[1]})") from None


def _req(method, path, body=b"", headers=(), version="HTTP/1.1", host=True):
    lines = [f"{method} {path} {version}"]
    if host:
        lines.append("Host: pushbridge")
    lines += list(headers)
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def test_slowloris_headers_do_not_block_other_requests(shared, healthy):
    stop = threading.Event()
    socks = []
    for _ in range(30):
        s = socket.create_connection(("127.0.0.1", shared.internal_port), timeout=5)
        s.sendall(b"POST /push HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    # One request trickled whole, a byte every 20 ms, must get its answer.
    slow_whole = socket.create_connection(("127.0.0.1", shared.internal_port), timeout=15)

    def trickle():
        whole = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        i = 0
        while not stop.is_set():
            for s in socks:
                try:
                    s.send(b"a")
                except OSError:
                    pass
            if i < len(whole):
                slow_whole.send(whole[i:i + 1])
                i += 1
            stop.wait(0.02)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        for i in range(5):
            t0 = time.monotonic()
            _carried_on_http(shared, healthy, f"slowloris-{i}", timeout=2)
            assert shared.http("GET", "/healthz", timeout=2)[0] == 200
            assert time.monotonic() - t0 < 2
        late = shared.ws()
        assert late.login_native(unique_uid())["type"] == "welcome"
        slow_whole.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = slow_whole.recv(4096)
            assert chunk, "the trickled request got no answer"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    finally:
        stop.set()
        t.join(5)
        for s in socks + [slow_whole]:
            s.close()


def test_1000_pipelined_gets_answered_in_order(bridge_factory):
    """The internal listener answers pipelined requests, in order, on the
    same connection (RFC 9112 9.3.2), and goes on serving after them."""
    b = bridge_factory()
    uid = unique_uid()
    c = b.uid_client(uid)
    paths = ["/users/" + uid, "/healthz", "/readyz", "/nope"] * 250
    data = b"".join(_req("GET", p) for p in paths)
    responses, closed, _ = _exchange(b.internal_port, data, timeout=15, until_responses=1000)
    assert [r[0] for r in responses] == [200, 200, 200, 404] * 250, responses[:8]
    assert _json_body(responses[0]) == {"online": True, "connections": 1}
    assert _json_body(responses[3])["error"] == "not_found"
    assert all(r[1].get("connection") != "close" for r in responses)
    assert b.push(uid, "after pipeline") == (200, {"delivered": 1})
    assert c.recv_text() == "after pipeline"


def test_pipelined_get_then_post(bridge_factory):
    """Two requests in one write, the second a POST with a body: both are
    answered in order and the POST is acted on once."""
    b = bridge_factory()
    uid = unique_uid()
    c, _ = b.native_client(uid)
    body = json.dumps({"user_id": uid, "event": "p", "data": "pipelined"}).encode()
    data = _req("GET", "/healthz") + _req("POST", "/push", body)
    responses, _, _ = _exchange(b.internal_port, data, timeout=5, until_responses=2)
    assert [r[0] for r in responses] == [200, 200], responses
    assert _json_body(responses[1]) == {"delivered": 1}
    assert c.recv_json()["data"] == "pipelined"
    c.no_message(0.3)
    _carried_on_native(b, c, uid, "after")


def test_100_pipelined_pushes(bridge_factory):
    """100 pushes in one write: 100 answers in order, 100 events in order,
    nothing misread (no event from garbage, no 400)."""
    b = bridge_factory()
    uid = unique_uid()
    c = b.uid_client(uid)
    data = b"".join(_req("POST", "/push", json.dumps({"user_id": uid, "data": i}).encode())
                    for i in range(100))
    responses, _, _ = _exchange(b.internal_port, data, timeout=10, until_responses=100)
    assert [r[0] for r in responses] == [200] * 100, responses[:3]
    assert all(_json_body(r) == {"delivered": 1} for r in responses)
    assert [c.recv_text() for _ in range(100)] == [str(i) for i in range(100)]
    c.no_message(0.3)
    assert b.metric("pushbridge_push_requests_total", status="400") in (None, 0)
    assert b.http("GET", "/healthz", timeout=3)[0] == 200


def test_pipelined_chunked_pushes_are_read_exactly(bridge_factory):
    """Chunked bodies pipelined behind each other: each is decoded at its
    own end, so the next request starts where the last chunk ended."""
    b = bridge_factory()
    uid = unique_uid()
    c = b.uid_client(uid)
    data = b""
    for i in range(20):
        body = json.dumps({"user_id": uid, "data": f"c{i}"}).encode()
        half = len(body) // 2
        data += (b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n"
                 % (half, body[:half], len(body) - half, body[half:]))
    responses, _, _ = _exchange(b.internal_port, data, timeout=10, until_responses=20)
    assert [r[0] for r in responses] == [200] * 20, responses[:3]
    assert [c.recv_text() for _ in range(20)] == [f"c{i}" for i in range(20)]


def test_http10_without_host(shared, healthy):
    responses, _, _ = _exchange(shared.internal_port,
                                _req("GET", "/healthz", version="HTTP/1.0", host=False),
                                until_responses=1)
    assert [r[0] for r in responses] == [200]
    body = json.dumps({"user_id": healthy.uid, "event": "good", "data": "http/1.0"}).encode()
    responses, _, _ = _exchange(shared.internal_port,
                                _req("POST", "/push", body, version="HTTP/1.0", host=False),
                                until_responses=1)
    assert [r[0] for r in responses] == [200]
    assert _json_body(responses[0]) == {"delivered": 2}
    assert healthy.native.recv_json()["data"] == "http/1.0"
    assert healthy.seed.recv_text() == "http/1.0"
    _carried_on_http(shared, healthy, "http10")


def test_http11_without_host_is_400(shared, healthy):
    """RFC 7230 5.4: a server MUST answer 400 to an HTTP/1.1 request
    without Host."""
    body = json.dumps({"user_id": healthy.uid, "data": "no host"}).encode()
    responses, _, _ = _exchange(shared.internal_port, _req("POST", "/push", body, host=False),
                                until_responses=1)
    assert [r[0] for r in responses] == [400], responses
    _carried_on_http(shared, healthy, "no-host")



@pytest.mark.parametrize("method", ["BREW", "get", "TRACE", "CONNECT", "PROPFIND"])
def test_unknown_or_unsupported_method_is_a_json_error(shared, healthy, method):
    body = json.dumps({"user_id": healthy.uid, "data": "by " + method}).encode()
    responses, _, _ = _exchange(shared.internal_port, _req(method, "/push", body),
                                until_responses=1)
    assert len(responses) == 1, responses
    st = responses[0][0]
    assert st in (405, 501), responses[0][:2]
    doc = _json_body(responses[0])
    _error_json(doc, "method_not_allowed" if st == 405 else doc.get("error"))
    if st == 405:
        assert "POST" in responses[0][1].get("allow", ""), responses[0][1]
    _carried_on_http(shared, healthy, "method-" + method)


def test_8_kib_method_name(shared, healthy):
    responses, closed, _ = _exchange(shared.internal_port,
                                     _req("X" * 8192, "/push", b"{}"), until_responses=1)
    assert not any(200 <= r[0] < 300 for r in responses), responses
    assert responses or closed
    _carried_on_http(shared, healthy, "long-method")


@pytest.mark.parametrize("path", ["/healthz%00", "/healthz%00/../healthz", "/push%00"])
def test_nul_in_path_is_not_served(shared, healthy, path):
    responses, closed, _ = _exchange(shared.internal_port, _req("GET", path),
                                     until_responses=1)
    assert not any(200 <= r[0] < 300 for r in responses), responses
    assert closed or (responses and 400 <= responses[0][0] < 500), responses
    _carried_on_http(shared, healthy, "nul-path")


def test_users_lookup_with_nul_does_not_report_prefix_user(shared, healthy):
    responses, _, _ = _exchange(shared.internal_port,
                                _req("GET", "/users/" + urllib.parse.quote(healthy.uid)
                                     + "%00evil"), until_responses=1)
    for r in responses:
        if r[0] == 200:
            assert _json_body(r) == {"online": False, "connections": 0}, r
    _carried_on_http(shared, healthy, "users-nul")


def test_send_form_uid_with_nul_is_not_delivered_to_prefix_user(shared, healthy):
    form = "uid=" + urllib.parse.quote(healthy.uid) + "%00evil&message=leak"
    st, doc, _ = shared.json("POST", "/send", form.encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 400, (st, doc)
    assert doc.get("error") in ("bad_field", "no_connection"), doc
    _carried_on_http(shared, healthy, "send-nul")


def test_push_user_id_with_nul_is_bad_field(shared, healthy):
    st, doc, _ = shared.json("POST", "/push", {"user_id": healthy.uid + "\u0000x", "data": 1})
    assert st == 400
    _error_json(doc, "bad_field", "user_id")
    _carried_on_http(shared, healthy, "push-nul")


@pytest.mark.parametrize("how", ["query", "form"])
@pytest.mark.parametrize("fields, code", [
    ("uid=%zz&message=x", "bad_field"),
    ("uid=%&message=x", "bad_field"),
    ("uid=UID&message=%ff%fe", "bad_field"),
    ("uid=UID&message=%c0%80", "bad_field"),
    ("uid=UID&message=%ed%a0%80", "bad_field"),
], ids=["uid_bad_escape", "uid_lone_percent", "message_ff_fe", "message_overlong_nul",
        "message_surrogate"])
def test_send_broken_escapes_and_bad_utf8(shared, healthy, how, fields, code):
    """README: /send answers 400 for a broken %-escape, and the message
    must be UTF-8 text (it is written into WebSocket text frames)."""
    fields = fields.replace("UID", urllib.parse.quote(healthy.uid))
    if how == "query":
        st, doc, hdrs = shared.json("GET", "/send?" + fields)
    else:
        st, doc, hdrs = shared.json("POST", "/send", fields.encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded"})
    assert st == 400, (st, doc, hdrs.get("Content-Type"))
    _error_json(doc, code)
    _carried_on_http(shared, healthy, "send-" + code)


def test_send_4000_byte_message_arrives_whole(shared, healthy):
    msg = "m" * 4000
    st, doc = shared.send(healthy.uid, msg)
    assert (st, doc) == (200, {"delivered": 2})
    assert healthy.seed.recv_text() == msg
    assert healthy.native.recv_json()["data"] == msg
    _carried_on_http(shared, healthy, "send-long")


def test_send_uid_with_crlf_injects_no_header(shared, healthy):
    st, hdrs, body = shared.http("GET", "/send?uid=x%0d%0aSet-Cookie:%20a=b&message=1")
    assert st == 400
    assert hdrs.get("Set-Cookie") is None, dict(hdrs)
    doc = json.loads(body)
    assert doc["error"] in ("no_connection", "bad_field"), doc
    _carried_on_http(shared, healthy, "crlf")


@pytest.mark.parametrize("length", [2 * 1024 ** 3, 2 ** 32 + 1, 2 ** 63 - 1])
def test_huge_content_length_is_413_before_the_body(shared, healthy, length):
    head = (f"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()
    responses, _, _ = _exchange(shared.internal_port, head + b'{"user_id":', timeout=5,
                                until_responses=1)
    assert [r[0] for r in responses] == [413], responses
    _error_json(_json_body(responses[0]), "payload_too_large")
    # The same, the client closing right after the headers.
    _exchange(shared.internal_port, head, timeout=1, shut_write=True)
    _carried_on_http(shared, healthy, f"content-length-{length}")


def test_conflicting_content_lengths_get_one_400_and_close(shared, healthy):
    """RFC 7230 3.3.3: differing Content-Length values are an unrecoverable
    framing error: 400, then the connection is closed, and no second
    request is read out of the body."""
    smuggled = _req("GET", "/nope")
    data = (b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n"
            b"Content-Length: " + str(7 + len(smuggled)).encode() + b"\r\n\r\n{\"a\":1}" +
            smuggled)
    responses, closed, _ = _exchange(shared.internal_port, data, timeout=5)
    assert [r[0] for r in responses] == [400], [(r[0], r[2][:80]) for r in responses]
    assert closed
    _carried_on_http(shared, healthy, "dup-cl")


def test_transfer_encoding_with_content_length_gets_one_answer_and_close(shared, healthy):
    """RFC 9112 6.1: a request with both Transfer-Encoding and
    Content-Length may be a smuggling attempt; the server answers it and
    closes the connection (no request is read out of the leftover bytes)."""
    smuggled = _req("GET", "/nope")
    data = (b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled)
    responses, closed, _ = _exchange(shared.internal_port, data, timeout=5)
    assert len(responses) == 1, [(r[0], r[2][:80]) for r in responses]
    assert 400 <= responses[0][0] < 500, responses[0][:2]
    assert closed
    _carried_on_http(shared, healthy, "te-cl")


def test_chunked_body_with_absurd_chunk_size_is_answered(shared, healthy):
    data = (b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"ffffffffffffffff\r\n{\"user_id\":")
    t0 = time.monotonic()
    responses, _, _ = _exchange(shared.internal_port, data, timeout=5, until_responses=1)
    assert len(responses) == 1, f"no answer within {time.monotonic() - t0:.1f}s"
    assert responses[0][0] in (400, 411, 413, 501), responses[0][:2]
    _json_body(responses[0])
    _carried_on_http(shared, healthy, "huge-chunk")


def test_valid_chunked_push_is_delivered(shared, healthy):
    body = json.dumps({"user_id": healthy.uid, "event": "good", "data": "chunked"}).encode()
    data = (b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    responses, _, _ = _exchange(shared.internal_port, data, timeout=5, until_responses=1)
    assert len(responses) == 1, "a chunked push got no answer within 5 s"
    assert responses[0][0] == 200, responses[0][:2]
    assert _json_body(responses[0]) == {"delivered": 2}
    assert healthy.native.recv_json()["data"] == "chunked"
    assert healthy.seed.recv_text() == "chunked"
    _carried_on_http(shared, healthy, "chunked")


def test_obsolete_line_folding_is_answered(shared, healthy):
    """RFC 7230 3.2.4: obs-fold in a request is rejected with 400 or
    replaced by a space; either way there is an answer."""
    data = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n"
    responses, _, _ = _exchange(shared.internal_port, data, timeout=5, until_responses=1)
    assert [r[0] for r in responses] in ([200], [400]), "no answer within 5 s"
    _carried_on_http(shared, healthy, "obs-fold")


@pytest.mark.parametrize("name", ["X-Nul", "X-A", "Accept"])
def test_nul_in_header_value_is_answered(shared, healthy, name):
    """RFC 9110 5.5: a NUL in a field value is rejected (400) or replaced
    by a space (then the request is served): an answer either way, and
    without holding the connection."""
    data = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + name.encode() + b": a\x00b\r\n\r\n"
    responses, closed, _ = _exchange(shared.internal_port, data, timeout=5, until_responses=1)
    assert [r[0] for r in responses] in ([200], [400]), \
        f"no answer within 5 s (closed by the server: {closed})"
    _carried_on_http(shared, healthy, "nul-header")


def test_push_with_300k_deep_data_is_delivered_verbatim(big, kafka):
    """max_body_bytes is 1 MiB: 600 KB of nesting is a legal body."""
    uid = unique_uid()
    c, _ = big.native_client(uid)
    data = "[" * 300000 + "]" * 300000
    body = ('{"user_id":' + json.dumps(uid) + ',"event":"deep","data":' + data + "}").encode()
    st, doc, _ = big.json("POST", "/push", body)
    assert (st, doc) == (200, {"delivered": 1})
    text = c.recv_text(20)
    pos = re.match(r'\{"type":"event","event":"deep","pos":"([^"]+)",', text)
    assert pos, text[:200]
    assert text == '{"type":"event","event":"deep","pos":"' + pos.group(1) + '","data":' + data + "}"
    _carried_on_native(big, c, uid, "after-deep-push")


def test_websocket_upgrade_on_internal_listener_is_refused(shared, healthy):
    with pytest.raises(WsHandshakeError) as ei:
        c = WsClient.connect("127.0.0.1", shared.internal_port, timeout=5)
        c.abort()
    assert ei.value.status != 101
    _carried_on_http(shared, healthy, "internal-upgrade")


# ==== WebSocket frames ===============================================================

def _native(bridge):
    uid = unique_uid()
    c, _ = bridge.native_client(uid)
    return c, uid


def _ping_msg(total_len):
    head, tail = '{"type":"ping","pad":"', '"}'
    return head + "x" * (total_len - len(head) - len(tail)) + tail


def test_10k_one_byte_fragments_under_the_limit(shared, healthy):
    c, _ = _native(shared)
    msg = _ping_msg(10000).encode()
    c.send_raw(b"".join(encode_frame(OP_TEXT if i == 0 else OP_CONT, msg[i:i + 1],
                                     fin=(i == len(msg) - 1)) for i in range(len(msg))))
    assert c.recv_json(15) == {"type": "pong"}
    _carried_on_http(shared, healthy, "frag-under")


def test_one_byte_fragments_over_the_limit_close_1009(shared, healthy):
    c, _ = _native(shared)
    # Exactly one byte over the limit, and nothing after it.
    c.send_raw(b"".join(encode_frame(OP_TEXT if i == 0 else OP_CONT, b"x", fin=False)
                        for i in range(MAX_MSG + 1)))
    assert c.expect_close(15)[0] == 1009
    _carried_on_http(shared, healthy, "frag-over")


def test_100k_empty_continuations_do_not_stall_others(shared, healthy):
    c, _ = _native(shared)
    flood = encode_frame(OP_TEXT, b'{"type":', fin=False) + \
        b"".join(encode_frame(OP_CONT, b"", fin=False) for _ in range(100000)) + \
        encode_frame(OP_CONT, b'"ping"}', fin=True)
    sender = threading.Thread(target=c.send_raw, args=(flood,), daemon=True)
    sender.start()
    _carried_on_http(shared, healthy, "during-empty-flood", timeout=5)
    sender.join(30)
    assert c.recv_json(30) == {"type": "pong"}
    _carried_on_http(shared, healthy, "empty-flood")


@pytest.mark.parametrize("logged_in", [False, True], ids=["before_login", "after_login"])
def test_ping_with_125_byte_payload_gets_exact_pong(shared, healthy, logged_in):
    payload = bytes(range(125))
    if logged_in:
        c, _ = _native(shared)
        c.send_ping(payload)
        assert c.is_open()
    else:
        c = shared.ws()
        c.send_ping(payload)
        c.login_native(unique_uid())
    assert c.pongs_received == [payload]
    _carried_on_http(shared, healthy, "ping125")


def test_close_frame_inside_fragmented_login(shared, healthy):
    uid = unique_uid()
    c = shared.ws()
    c.send_frame(OP_TEXT, b'{"type":"auth",', fin=False)
    c.send_close(1000)
    c.send_frame(OP_CONT, ('"token":"%s"}' % uid).encode(), fin=True)
    assert c.expect_close()[0] == 1000
    assert shared.user_connections(uid) == 0
    _carried_on_http(shared, healthy, "close-mid-login")


def test_many_control_frames_inside_fragmented_login(shared, healthy):
    uid = unique_uid()
    c = shared.ws()
    login = json.dumps({"type": "auth", "token": uid}).encode()
    parts = [login[i:i + 2] for i in range(0, len(login), 2)]
    out = b""
    for i, p in enumerate(parts):
        out += encode_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
        if i < len(parts) - 1:
            out += encode_frame(OP_PONG, b"unsolicited")
            out += encode_frame(OP_PING, b"%03d" % i + b"p" * 122)
    c.send_raw(out)
    welcome = c.recv_json()
    assert welcome["type"] == "welcome" and welcome["user"] == uid, welcome
    assert c.is_open()
    # RFC 6455 5.5.3: pongs may be coalesced, each answering the latest ping.
    assert c.pongs_received and all(len(p) == 125 for p in c.pongs_received)
    _carried_on_http(shared, healthy, "control-in-login")


def test_frame_length_with_most_significant_bit_set(shared, healthy):
    c, _ = _native(shared)
    c.send_raw(bytes([0x81, 0xFF]) + struct.pack("!Q", (1 << 63) + 5) + b"mask" + b"x" * 64)
    assert c.expect_close()[0] in PROTOCOL_CLOSE
    _carried_on_http(shared, healthy, "len-msb")


def test_frame_claiming_a_terabyte_closes_1009(shared, healthy):
    c, _ = _native(shared)
    c.send_raw(bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 40) + b"mask" + b"x" * (MAX_MSG + 1))
    assert c.expect_close(10)[0] == 1009
    _carried_on_http(shared, healthy, "len-tb")


def test_close_reason_not_utf8_gets_1002(shared, healthy):
    c, _ = _native(shared)
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye \xff\xfe")
    assert c.expect_close()[0] in PROTOCOL_CLOSE
    _carried_on_http(shared, healthy, "close-bad-utf8")


def test_close_frame_with_126_byte_payload(shared, healthy):
    c, _ = _native(shared)
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"r" * 124)
    assert c.expect_close()[0] in PROTOCOL_CLOSE
    _carried_on_http(shared, healthy, "close-126")


def test_close_frame_with_125_byte_payload_is_echoed(shared, healthy):
    c, _ = _native(shared)
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"r" * 123)
    assert c.expect_close()[0] == 1000
    _carried_on_http(shared, healthy, "close-125")


@pytest.mark.parametrize("payload", [b'{"type":"ping","x":"\xc0\x80"}',
                                     b'{"type":"ping","x":"\xf4\x90\x80\x80"}',
                                     b'{"type":"ping","x":"\xf8\x88\x80\x80\x80"}'],
                         ids=["overlong_nul", "above_U+10FFFF", "five_byte_form"])
def test_more_invalid_utf8_closes_1007(shared, healthy, payload):
    c = shared.ws()
    c.send_text(payload)
    assert c.expect_close()[0] == 1007
    _carried_on_http(shared, healthy, "utf8")


def test_empty_text_message_as_login(shared, healthy):
    c = shared.ws()
    c.send_text(b"")
    msg = c.recv_json()
    assert (msg["type"], msg["code"]) == ("error", "bad_login"), msg
    assert c.expect_close()[0] == 4003
    _carried_on_http(shared, healthy, "empty-login")


@pytest.mark.parametrize("form", ["uid", "native", "token_event"])
def test_login_with_nul_in_user_does_not_become_the_prefix_user(shared, healthy, form):
    victim = unique_uid("v")
    real, _ = shared.native_client(victim)
    evil = victim + "\u0000evil"
    c = shared.ws()
    c.send_json({"uid": {"uid": evil}, "native": {"type": "auth", "token": evil},
                 "token_event": {"token": evil, "event": "good"}}[form])
    # Either refused (bad_user, 4003) or logged in as the full name.
    c.send_json({"type": "ping"})
    msg = c.recv_json()
    if msg["type"] == "error":
        assert msg["code"] == "bad_user", msg
        assert c.expect_close()[0] == 4003
    else:
        if msg["type"] == "welcome":
            assert msg["user"] == evil, f"logged in as {msg['user']!r}"
            msg = c.recv_json()
        assert msg == {"type": "pong"}, msg
    assert shared.user_connections(victim) == 1, "the NUL login counts as the victim's"
    assert shared.push(victim, "private", event="good") == (200, {"delivered": 1})
    assert real.recv_json()["data"] == "private"
    _carried_on_http(shared, healthy, "nul-login-" + form)


# ---- issue 14: one identity per user, strict edges ------------------------------------

@pytest.mark.parametrize("escape", ["\\ud800", "\\udbff", "\\udc00", "\\ud800\\u0041"])
@pytest.mark.parametrize("form", ["uid", "native", "token_event"])
def test_login_with_lone_surrogate_is_not_the_question_mark_user(shared, healthy, form, escape):
    """yajl decodes a lone high surrogate to "?": "bob\\ud800" must not log in
    as "bob?" (and "\\udc00" must not reach a welcome frame as bad UTF-8)."""
    victim = unique_uid("q") + "?"
    real, _ = shared.native_client(victim)
    evil = json.dumps(victim[:-1])[:-1] + escape + '"'
    c = shared.ws()
    c.send_text({"uid": '{"uid":%s}', "native": '{"type":"auth","token":%s}',
                 "token_event": '{"token":%s,"event":"good"}'}[form] % evil)
    msg = c.recv_json()
    assert (msg["type"], msg["code"]) == ("error", "bad_user"), msg
    assert c.expect_close()[0] == 4003
    assert shared.user_connections(victim) == 1
    _carried_on_http(shared, healthy, "surrogate-login-" + form)


@pytest.mark.parametrize("message", ["%00", "a%00b"])
def test_send_query_message_with_nul_is_answered_400(shared, healthy, message):
    st, doc = shared.json("GET", f"/send?uid={healthy.uid}&message={message}")[:2]
    assert st == 400 and doc["error"] == "bad_field", (st, doc)
    _carried_on_http(shared, healthy, "send-nul-" + message)


def test_send_form_message_with_nul_is_answered_400(shared, healthy):
    st, doc = shared.json("POST", "/send", f"uid={healthy.uid}&message=a%00b".encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})[:2]
    assert st == 400 and doc["error"] == "bad_field", (st, doc)
    _carried_on_http(shared, healthy, "send-form-nul")


def test_ping_with_126_byte_payload_gets_1002(shared, healthy):
    c, _ = _native(shared)
    c.send_frame(OP_PING, b"p" * 126)
    assert c.expect_close()[0] == 1002
    _carried_on_http(shared, healthy, "ping-126")


@pytest.mark.parametrize("logged_in", [False, True], ids=["login_message", "after_login"])
def test_deeply_nested_client_message(big, logged_in):
    """1 000 000 nested arrays inside a 2 MB message (ws.max_message_bytes
    is 4 MiB here): answered like any message with an unknown member, and
    the bridge survives."""
    healthy_c, healthy_uid = _native(big)
    n = 1000000
    nest = "[" * n + "]" * n
    uid = unique_uid()
    c = big.ws()
    if logged_in:
        c.login_native(uid)
        c.send_text('{"type":"ping","x":' + nest + "}")
    else:
        c.send_text('{"type":"auth","token":' + json.dumps(uid) + ',"x":' + nest + "}")
    try:
        msg = c.recv_json(30)
    except ConnectionClosed:
        _assert_survived(big)
        raise
    if logged_in:
        assert msg == {"type": "pong"} or msg.get("type") == "error", msg
        assert c.is_open()
    elif msg.get("type") == "error":
        assert msg["code"] == "bad_login", msg
        assert c.expect_close()[0] == 4003
    else:
        assert msg.get("type") == "welcome" and msg["user"] == uid, msg
    _carried_on_native(big, healthy_c, healthy_uid, "after-nesting")


def test_login_with_100k_event_names(big):
    # Refused on its size (32 KiB), before any parsing work is spent on it.
    healthy_c, healthy_uid = _native(big)
    c = big.ws()
    c.send_json({"type": "auth", "token": unique_uid(), "events": [f"e{i}" for i in range(100000)]})
    msg = c.recv_json(10)
    assert (msg["type"], msg["code"]) == ("error", "bad_login"), msg
    assert "32 KiB" in msg["message"]
    assert c.expect_close()[0] == 4003
    _carried_on_native(big, healthy_c, healthy_uid, "after-events")


def test_half_open_upgrades_do_not_block_others(shared, healthy):
    socks = []
    try:
        for i in range(30):
            s = socket.create_connection(("127.0.0.1", shared.public_port), timeout=5)
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      if i % 2 else b"GET /ws HTTP/1.1\r\nHo")
            socks.append(s)
        t0 = time.monotonic()
        _carried_on_http(shared, healthy, "half-open", timeout=2)
        late = shared.ws()
        assert late.login_native(unique_uid())["type"] == "welcome"
        assert time.monotonic() - t0 < 3
    finally:
        for s in socks:
            s.close()


def test_application_ping_flood_without_reading(shared, healthy):
    c = shared.ws(rcvbuf=4096)
    c.login_native(unique_uid())
    flood = encode_frame(OP_TEXT, b'{"type":"ping"}') * 20000
    sender = threading.Thread(target=lambda: _send_quietly(c, flood), daemon=True)
    sender.start()
    _carried_on_http(shared, healthy, "during-ping-flood", timeout=5)
    sender.join(30)
    # The flooder gets pongs only, then possibly a slow-consumer close.
    n = 0
    while True:
        try:
            op, payload = c.recv(5)
        except (TimeoutError, ConnectionClosed):
            break
        if op == OP_CLOSE:
            assert c.close_received[0] == 4009, c.close_received
            break
        assert payload == b'{"type":"pong"}', payload[:100]
        n += 1
        if n == 20000:
            break
    assert n > 0
    _carried_on_http(shared, healthy, "ping-flood")


def _send_quietly(c, data):
    try:
        c.send_raw(data)
    except OSError:
        pass


def test_websocket_level_ping_flood(shared, healthy):
    c, _ = _native(shared)
    c.send_raw(encode_frame(OP_PING, b"flood") * 20000)
    _carried_on_http(shared, healthy, "during-ws-ping-flood", timeout=5)
    assert c.is_open(timeout=30)
    assert c.pongs_received and set(c.pongs_received) == {b"flood"}


@pytest.mark.parametrize("version", ["99", "8", None], ids=["v99", "v8", "missing"])
def test_unsupported_websocket_version_is_refused(shared, healthy, version):
    """RFC 6455 4.2.2/4.4: only version 13 is spoken; another version is
    answered with 426 and Sec-WebSocket-Version: 13, a missing one with
    400 or 426."""
    with pytest.raises(WsHandshakeError) as ei:
        c = WsClient.connect("127.0.0.1", shared.public_port, version=version, timeout=5)
        c.abort()
    e = ei.value
    if version is None:
        assert e.status in (400, 426), e.status
    else:
        assert e.status == 426, e.status
        assert e.headers.get("sec-websocket-version") == "13", e.headers
    _carried_on_http(shared, healthy, f"version-{version}")


def test_upgrade_without_key_is_refused(shared, healthy):
    data = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n")
    responses, closed, rest = _exchange(shared.public_port, data, timeout=5, until_responses=1)
    assert not any(r[0] == 101 for r in responses), responses
    assert not rest.startswith(b"HTTP/1.1 101"), rest[:100]
    assert responses or closed
    _carried_on_http(shared, healthy, "no-key")


def test_broadcast_flood_to_a_client_that_never_reads(bridge_factory):
    b = bridge_factory(config={"ws": {"queue_max_messages": 64, "slow_client": "close"}})
    reader_uid = unique_uid()
    reader, _ = b.native_client(reader_uid)
    slow = b.ws(rcvbuf=4096)
    slow.login_native(unique_uid())
    # 400 x 16 kB: well over what the kernel buffers of both ends absorb.
    pad = "p" * 16000
    for i in range(400):
        st, doc = b.json("POST", "/broadcast", {"event": "flood", "data": {"i": i, "pad": pad}})[:2]
        assert st == 200, (st, doc)
        assert reader.recv_json(5)["data"]["i"] == i
    assert slow.expect_close(30)[0] == 4009
    b.wait_metric("pushbridge_slow_client_closes_total", 1)
    _carried_on_native(b, reader, reader_uid, "after-broadcast-flood")


# ==== the catalogue itself ===========================================================

def _catalogue():
    """Every hostile input of this file: the Kafka cases and each
    parametrized case of the other tests."""
    entries = [f"kafka:{c}" for c in KAFKA_CASES] + ["kafka:key_nul_prefix_and_star"]
    skip = {"test_kafka_hostile", "test_catalogue_has_at_least_30_entries",
            "test_kafka_key_with_nul_reaches_neither_prefix_user_nor_broadcast"}
    for name, fn in globals().items():
        if not name.startswith("test_") or not callable(fn) or name in skip:
            continue
        n = 1
        for m in getattr(fn, "pytestmark", []):
            if m.name == "parametrize":
                n *= len(m.args[1])
        entries += [name] * n
    return entries


def test_catalogue_has_at_least_30_entries():
    entries = _catalogue()
    assert len(entries) >= 30, len(entries)
