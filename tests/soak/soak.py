#!/usr/bin/env python3
"""Memory soak for pushbridge (issue 5, item 5). Python standard library only.

Starts a real Kafka broker (tests/integration/kafka_harness.py) or, with
--dev, uses `pushbridge --dev`; starts the real binary with its own config on
free loopback ports; then

  1. churn: connects, logs in and disconnects N times (100,000; --quick
     10,000) over a rotating set of users, C sockets at a time (non-blocking,
     one selector), in eight ways (clean close, FIN, RST, never logging in
     until the 4001 auth timeout, cut before the handshake, ...), while a kcat
     producer and an HTTP pusher feed events continuously and long-lived
     readers check that they receive every event addressed to them, in order;
  2. samples VmRSS (and open descriptors) of the bridge every second (quick:
     every 0.25 s); after the warm-up (the first 20 % of the churn) the
     maximum must stay within 5 % of the warm-up level; connections/users
     return to the readers alone and pushbridge_queue_bytes to 0;
  3. pushes every bound past its limit and reads the bridge's answers and
     metrics: 4009 + pushbridge_slow_client_closes_total (slow_client close),
     drop_oldest keeping at most queue_max_messages queued (counted exactly
     against what the kernel buffers held), 1013 + connections_refused_total,
     4008, 1009, 413, batch_too_large, oversized Kafka events; then all of it
     once more, and RSS after the second pass must be within 5 % of after the
     first;
  4. SIGTERM: readers get 1001, the bridges exit 0; then the same scenario,
     shorter, against the AddressSanitizer build, whose SIGTERM exit must be 0
     with no LeakSanitizer/AddressSanitizer report in its stderr; and a canary
     (a leak planted with LD_PRELOAD) must be reported, to show it can fail.

Every loop is bounded in count and time; all traffic goes to 127.0.0.1; every
process started here is stopped on exit (finally + atexit; the children also
get PR_SET_PDEATHSIG). Exit status 0 only when every check passed.
See README.md beside this file.
"""

import argparse
import atexit
import base64
import errno
import json
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from bridge import SANITIZER_RE, BridgeFactory, is_sanitized  # noqa: E402
from kafka_harness import KafkaBroker, kcat_produce  # noqa: E402
from pbutil import (die_with_parent, http_request, metric_value,  # noqa: E402
                    parse_prometheus, wait_until)
from wsclient import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                      accept_key, encode_frame)

LOG_LOCK = threading.Lock()
T_START = time.monotonic()


def log(msg):
    with LOG_LOCK:
        print(f"[{time.monotonic() - T_START:7.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------------------
# results

class Checks:
    """Every verdict of the run, in order; the summary prints them all."""

    def __init__(self, quiet=False):
        self.items = []  # (phase, name, ok, detail)
        self.quiet = quiet

    def add(self, phase, name, ok, detail=""):
        self.items.append((phase, name, bool(ok), detail))
        if not self.quiet or not ok:
            log(f"{'PASS' if ok else 'FAIL'} [{phase}] {name}{': ' + detail if detail else ''}")
        return ok

    @property
    def failed(self):
        return [i for i in self.items if not i[2]]


# ---------------------------------------------------------------------------
# non-blocking WebSocket clients on one selector

HS_LIMIT = 16384


def frame_header_len(n):
    return 2 if n < 126 else (4 if n < 65536 else 10)


class Loop:
    def __init__(self):
        self.sel = selectors.DefaultSelector()

    def poll(self, timeout):
        for key, mask in self.sel.select(timeout):
            conn = key.data
            if not conn.done:
                conn.on_event(mask)

    def pump(self, seconds):
        """Serve the sockets for `seconds` (readers answer pings, read events)."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.poll(min(left, 0.05))


class NbConn:
    """One client socket: connect, upgrade, then frames. Subclasses react in
    on_open / on_text / on_close_frame / on_eof / on_fail."""

    rcvbuf = None

    def __init__(self, loop, addr, path="/ws"):
        self.loop = loop
        self.addr = addr
        self.path = path
        self.sock = None
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.state = "connecting"
        self.key = None
        self.mask = 0
        self.close_code = None  # code of the server's close frame
        self.close_sent = False
        self.frag_op = None
        self.frag = []
        self.done = False

    # -- socket plumbing --
    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if self.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        err = s.connect_ex(self.addr)
        self.sock = s
        if err not in (0, errno.EINPROGRESS):
            self.fail(f"connect: {os.strerror(err)}")
            return
        self.mask = selectors.EVENT_WRITE
        self.loop.sel.register(s, self.mask, self)

    def _set_mask(self, m):
        if self.sock is not None and m != self.mask:
            self.mask = m
            self.loop.sel.modify(self.sock, m, self)

    def send(self, data, quiet=False):
        if self.sock is None or self.done:
            return
        if self.wbuf:
            self.wbuf += data
            return
        try:
            n = self.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError as e:
            if not quiet:  # quiet: the read side will see the end
                self.on_eof(f"send: {e}")
            return
        if n < len(data):
            self.wbuf += data[n:]
            self._set_mask(selectors.EVENT_READ | selectors.EVENT_WRITE)

    def send_frame(self, op, payload):
        self.send(encode_frame(op, payload))

    def send_close(self, code=1000):
        self.close_sent = True
        self.send_frame(OP_CLOSE, struct.pack("!H", code))

    def shut(self, reset=False):
        """Unregister and close: FIN, or RST with reset=True."""
        s, self.sock = self.sock, None
        self.done = True
        if s is None:
            return
        try:
            self.loop.sel.unregister(s)
        except (KeyError, ValueError):
            pass
        try:
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        except OSError:
            pass

    def on_event(self, mask):
        if self.state == "connecting":
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.fail(f"connect: {os.strerror(err)}")
                return
            self.state = "handshake"
            self._set_mask(selectors.EVENT_READ)
            self.on_connected()
            return
        if mask & selectors.EVENT_WRITE and self.wbuf:
            try:
                n = self.sock.send(self.wbuf)
                del self.wbuf[:n]
            except BlockingIOError:
                pass
            except OSError as e:
                self.on_eof(f"send: {e}")
                return
            if not self.wbuf:
                self._set_mask(selectors.EVENT_READ)
        if self.done or not mask & selectors.EVENT_READ:
            return
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as e:
            self.on_eof(f"recv: {e}")
            return
        if not data:
            self.on_eof("EOF")
            return
        self.rbuf += data
        if self.state == "handshake":
            end = self.rbuf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.rbuf) > HS_LIMIT:
                    self.fail("handshake answer too long")
                return
            head = bytes(self.rbuf[:end]).decode("iso-8859-1")
            del self.rbuf[:end + 4]
            lines = head.split("\r\n")
            parts = lines[0].split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            if status != 101:
                self.fail(f"handshake status {status}")
                return
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            if hdrs.get("sec-websocket-accept") != accept_key(self.key):
                self.fail("bad Sec-WebSocket-Accept")
                return
            self.state = "open"
            self.on_open()
        self._frames()

    def _frames(self):
        buf = self.rbuf
        while not self.done and len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            hl = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = struct.unpack_from("!H", buf, 2)[0]
                hl = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = struct.unpack_from("!Q", buf, 2)[0]
                hl = 10
            if b1 & 0x80:
                self.fail("server sent a masked frame")
                return
            if len(buf) < hl + n:
                return
            payload = bytes(buf[hl:hl + n])
            del buf[:hl + n]
            fin, op = b0 & 0x80, b0 & 0x0F
            if op == OP_PING:
                if not self.close_sent:
                    self.send(encode_frame(OP_PONG, payload), quiet=True)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.close_code = code
                if not self.close_sent:
                    self.close_sent = True
                    self.send(encode_frame(OP_CLOSE, payload[:2]), quiet=True)
                self.on_close_frame(code)
                continue
            if op in (OP_TEXT, OP_BINARY):
                self.frag_op, self.frag = op, [payload]
            elif op == OP_CONT and self.frag_op is not None:
                self.frag.append(payload)
            else:
                self.fail(f"unexpected opcode {op}")
                return
            if fin:
                msg = b"".join(self.frag)
                self.frag_op, self.frag = None, []
                self.on_text(msg, n + hl)

    def on_connected(self):
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.send(self.request())

    def request(self):
        h, p = self.addr
        return (f"GET {self.path} HTTP/1.1\r\nHost: {h}:{p}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n\r\n").encode()

    # -- to override --
    def on_open(self):
        pass

    def on_text(self, payload, wire_len):
        pass

    def on_close_frame(self, code):
        pass

    def on_eof(self, why):
        self.shut()

    def fail(self, why):
        self.shut(reset=True)


# The eight ways a churn connection lives and ends, 20 per cycle:
#   native_close   native login, welcome, client close 1000 (echoed), server FIN
#   uid_close      {"uid"} login and a close 1000 in the same segment
#   token_close    {"token","event"} login and a close 1000
#   native_fin     native login, welcome, then the TCP connection is closed (no close frame)
#   uid_rst        {"uid"} login, then RST at once
#   nologin_4001   never logs in: the server closes with 4001 after ws.auth_timeout_ms
#   nologin_rst    upgraded, never logs in, RST
#   tcp_abort      half an upgrade request, then RST
KIND_PATTERN = (["native_close"] * 6 + ["uid_close"] * 3 + ["token_close"] +
                ["native_fin"] * 3 + ["uid_rst"] * 3 + ["nologin_4001"] * 2 +
                ["nologin_rst", "tcp_abort"])
assert len(KIND_PATTERN) == 20
KINDS = sorted(set(KIND_PATTERN))
LOGIN_KINDS = {"native_close", "uid_close", "token_close", "native_fin"}


class ChurnStats:
    def __init__(self, total):
        self.total = total
        self.started = 0
        self.done = 0
        self.ok = {k: 0 for k in KINDS}
        self.bad = {}           # reason -> count
        self.bad_examples = []  # first few details
        self.events_seen = 0    # event frames churn connections received
        self.close_codes = {}
        self.races = []         # (idx, kind, ms from the 101 to the 4001)
        self.loop_lag = 0.0     # longest the client loop went without polling

    def finish(self, conn, ok, why=""):
        self.done += 1
        if why == "auth-timeout race":
            return
        if ok:
            self.ok[conn.kind] += 1
        else:
            reason = f"{conn.kind}: {why}"
            key = re.sub(r"\d{3,}", "N", reason)
            self.bad[key] = self.bad.get(key, 0) + 1
            if len(self.bad_examples) < 8:
                self.bad_examples.append(f"#{conn.idx} user {conn.uid} {reason}")


class ChurnConn(NbConn):
    def __init__(self, loop, addr, idx, kind, uid, stats, deadline):
        super().__init__(loop, addr)
        self.idx = idx
        self.kind = kind
        self.uid = uid
        self.stats = stats
        self.deadline = deadline
        self.expect_close = None
        self.t_open = None
        self.race = False

    def _end(self, ok, why="", reset=False):
        if self.done:
            return
        self.shut(reset=reset)
        self.stats.finish(self, ok, why)

    def on_connected(self):
        self.key = base64.b64encode(os.urandom(16)).decode()
        req = self.request()
        if self.kind == "tcp_abort":
            self.send(req[:len(req) // 2])
            self._end(True, reset=True)
            return
        self.send(req)

    def on_open(self):
        k = self.kind
        self.t_open = time.monotonic()
        if k in ("native_close", "native_fin"):
            self.send_frame(OP_TEXT, json.dumps({"type": "auth", "token": self.uid}).encode())
            self.state = "welcome"
        elif k == "uid_close":
            self.send(encode_frame(OP_TEXT, json.dumps({"uid": self.uid}).encode()) +
                      encode_frame(OP_CLOSE, struct.pack("!H", 1000)))
            self.close_sent = True
            self.state, self.expect_close = "closing", 1000
        elif k == "token_close":
            self.send(encode_frame(OP_TEXT, json.dumps({"token": self.uid, "event": "soak"}).encode())
                      + encode_frame(OP_CLOSE, struct.pack("!H", 1000)))
            self.close_sent = True
            self.state, self.expect_close = "closing", 1000
        elif k == "uid_rst":
            self.send_frame(OP_TEXT, json.dumps({"uid": self.uid}).encode())
            self._end(True, reset=True)
        elif k == "nologin_4001":
            self.state, self.expect_close = "closing", 4001
        elif k == "nologin_rst":
            self._end(True, reset=True)

    def on_text(self, payload, wire_len):
        if self.state == "welcome":
            try:
                msg = json.loads(payload)
            except ValueError:
                msg = {}
            if msg.get("type") == "welcome":
                if self.kind == "native_close":
                    self.send_close(1000)
                    self.state, self.expect_close = "closing", 1000
                else:  # native_fin
                    self._end(True)
                return
            if msg.get("type") == "error":
                self._end(False, f"login refused: {msg.get('code')}", reset=True)
                return
        self.stats.events_seen += 1

    def on_close_frame(self, code):
        self.stats.close_codes[code] = self.stats.close_codes.get(code, 0) + 1
        if code == 4001 and self.kind in LOGIN_KINDS and self.t_open is not None:
            # The login was sent the moment the 101 was read, yet the auth
            # timer won: the client (or the bridge) was stalled for about
            # ws.auth_timeout_ms between the upgrade and the login. Counted
            # apart and bounded in the check, not a failure on its own.
            self.stats.races.append((self.idx, self.kind,
                                     (time.monotonic() - self.t_open) * 1000))
            self.state, self.expect_close = "closed", 4001
            self.race = True
            return
        if code != self.expect_close:
            self._end(False, f"close code {code} in state {self.state} "
                             f"(expected {self.expect_close})", reset=True)
            return
        self.state = "closed"  # the echo is sent; wait for the server's FIN

    def on_eof(self, why):
        if self.state == "closed":
            self._end(not self.race, "auth-timeout race" if self.race else "")
        else:
            self._end(False, f"{why} in state {self.state}")

    def fail(self, why):
        self._end(False, why, reset=True)

    def expire(self):
        self._end(False, f"timed out in state {self.state}", reset=True)


class Reader(NbConn):
    """A long-lived client that must receive every event addressed to it, in
    order, for as long as the soak runs. Event data: {"src": k|h|b, "s": n}
    (k: Kafka, h: HTTP /push, b: /broadcast); one counter per source."""

    def __init__(self, loop, addr, uid, native):
        super().__init__(loop, addr)
        self.uid = uid
        self.native = native
        self.next = {"k": 0, "h": 0, "b": 0}
        self.errors = []
        self.ready = False
        self.closed_why = None
        self.last_rx = None
        self.max_gap = 0.0
        self.track_gap = False
        self.received = 0

    def on_open(self):
        if self.native:
            self.send_frame(OP_TEXT, json.dumps({"type": "auth", "token": self.uid}).encode())
        else:
            self.send_frame(OP_TEXT, json.dumps({"uid": self.uid}).encode())
            self.ready = True  # the seed form is not answered; checked via /users

    def on_text(self, payload, wire_len):
        try:
            msg = json.loads(payload)
        except ValueError:
            self.errors.append(f"not JSON: {payload[:80]!r}")
            return
        if self.native:
            t = msg.get("type") if isinstance(msg, dict) else None
            if t == "welcome":
                self.ready = True
                return
            if t in ("pong",):
                return
            if t != "event":
                self.errors.append(f"unexpected message {payload[:120]!r}")
                return
            data = msg.get("data")
        else:
            data = msg
        if not isinstance(data, dict) or data.get("src") not in self.next:
            self.errors.append(f"unexpected data {payload[:120]!r}")
            return
        src, s = data["src"], data.get("s")
        if s != self.next[src]:
            if len(self.errors) < 20:
                self.errors.append(f"{src}: got #{s}, expected #{self.next[src]}")
            self.next[src] = (s if isinstance(s, int) else self.next[src]) + 1
        else:
            self.next[src] += 1
        self.received += 1
        now = time.monotonic()
        if self.track_gap and self.last_rx is not None:
            self.max_gap = max(self.max_gap, now - self.last_rx)
        self.last_rx = now

    def on_close_frame(self, code):
        self.closed_why = f"close frame {code}"

    def on_eof(self, why):
        if self.closed_why is None:
            self.closed_why = why
        self.shut()

    def fail(self, why):
        self.closed_why = why
        self.shut(reset=True)


# ---------------------------------------------------------------------------
# background load: kcat producer, HTTP pusher, RSS sampler

class KafkaFeeder(threading.Thread):
    """One long-running `kcat -P` fed through its stdin ("key<TAB>value"
    lines): every 50 ms one event per reader (a sequence per reader), a few
    for random churn users, and once a second a malformed one."""

    def __init__(self, bootstrap, topic, readers, churn_users, period=0.05, extra=10):
        super().__init__(daemon=True, name="kafka-feeder")
        self.bootstrap, self.topic = bootstrap, topic
        self.readers = readers
        self.churn_users = churn_users
        self.period, self.extra = period, extra
        self.sent = {r: 0 for r in readers}
        self.total = 0
        self.stop_ev = threading.Event()
        self.error = None
        self.proc = None

    def start(self):
        # Launched here, on the calling (main) thread: PR_SET_PDEATHSIG fires
        # when the *thread* that forked the child ends, so kcat started from
        # this feeder thread would get SIGTERM as soon as feeding stops.
        args = ["kcat", "-P", "-b", self.bootstrap, "-t", self.topic, "-K", "\t",
                "-X", "linger.ms=5", "-X", "message.timeout.ms=30000", "-q"]
        self.errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=self.errf, preexec_fn=die_with_parent())
        super().start()

    def run(self):
        rnd = random.Random(7)
        tick = 0
        next_t = time.monotonic()
        try:
            while not self.stop_ev.is_set():
                lines = []
                for r in self.readers:
                    lines.append(f'{r}\t{{"event":"soak","data":{{"src":"k","s":{self.sent[r]}}}}}')
                    self.sent[r] += 1
                for _ in range(self.extra):
                    u = self.churn_users(rnd)
                    # Task updates of ever new tasks: the task state and the
                    # history fill to their bounds and stay there.
                    lines.append(f'{u}\t{{"event":"soak","task":"job-{tick}-{rnd.randint(0, 99)}",'
                                 f'"data":{{"src":"x","pad":"{"p" * rnd.randint(0, 600)}"}}}}')
                if tick % 20 == 0:
                    lines.append(f"{self.churn_users(rnd)}\tnot json {tick}")
                tick += 1
                self.total += len(lines)
                self.proc.stdin.write(("\n".join(lines) + "\n").encode())
                self.proc.stdin.flush()
                next_t += self.period
                self.stop_ev.wait(max(0.0, next_t - time.monotonic()))
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            self.error = f"feeding kcat: {e!r}"

    def finish(self, timeout=60):
        """Stop feeding; kcat flushes and exits. Returns an error or None."""
        self.stop_ev.set()
        self.join(10)
        if self.proc is None:
            return self.error or "kcat never started"
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return "kcat did not exit after its stdin closed"
        self.errf.seek(0)
        err = self.errf.read().decode(errors="replace")
        if rc != 0 or "ERROR" in err or "Failed" in err:
            return f"kcat exited {rc}: {err[-500:]}"
        return self.error


class HttpFeeder(threading.Thread):
    """POST /push to the readers in turn (one sequence per reader) and to
    random churn users, and POST /broadcast every 2 s; a fresh HTTP
    connection each time (the internal listener churns too)."""

    def __init__(self, port, readers, churn_users, period=0.02):
        super().__init__(daemon=True, name="http-feeder")
        self.port = port
        self.readers = readers
        self.churn_users = churn_users
        self.period = period
        self.sent = {r: 0 for r in readers}
        self.broadcasts = 0
        self.calls = 0
        self.errors = []
        self.stop_ev = threading.Event()

    def _post(self, path, body):
        self.calls += 1
        try:
            st, _, data = http_request("127.0.0.1", self.port, "POST", path, body=body, timeout=10)
        except OSError as e:
            return None, str(e)
        try:
            return st, json.loads(data)
        except ValueError:
            return st, data[:200]

    def run(self):
        rnd = random.Random(11)
        i = 0
        next_t = time.monotonic()
        while not self.stop_ev.is_set():
            r = self.readers[i % len(self.readers)]
            st, doc = self._post("/push", {"user_id": r, "event": "soak",
                                           "data": {"src": "h", "s": self.sent[r]}})
            if st == 200 and doc == {"delivered": 1}:
                self.sent[r] += 1
            elif len(self.errors) < 10:
                self.errors.append(f"/push to reader {r}: {st} {doc}")
            if i % 4 == 0:
                st, doc = self._post("/push", {"user_id": self.churn_users(rnd), "event": "soak",
                                               "data": {"src": "x"}})
                if st != 200 and len(self.errors) < 10:
                    self.errors.append(f"/push to a churn user: {st} {doc}")
            if i % 100 == 0:
                st, doc = self._post("/broadcast", {"event": "soak",
                                                    "data": {"src": "b", "s": self.broadcasts}})
                if st == 200:
                    self.broadcasts += 1
                elif len(self.errors) < 10:
                    self.errors.append(f"/broadcast: {st} {doc}")
            i += 1
            next_t += self.period
            self.stop_ev.wait(max(0.0, next_t - time.monotonic()))

    def finish(self):
        self.stop_ev.set()
        self.join(30)


def read_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def count_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Sampler(threading.Thread):
    """VmRSS and open descriptors of the bridge every `period` s, tagged
    with the churn progress at that moment."""

    def __init__(self, pid, progress, period=1.0):
        super().__init__(daemon=True, name="rss-sampler")
        self.pid = pid
        self.progress = progress  # object with .done
        self.period = period
        self.samples = []  # (t, done, rss_kb, fds)
        self.load_max = 0.0  # highest 1-minute load average seen (2 cores here)
        self.stop_ev = threading.Event()

    def sample(self):
        try:
            rss = read_rss_kb(self.pid)
        except OSError:
            return None
        s = (time.monotonic(), self.progress.done, rss, count_fds(self.pid))
        self.samples.append(s)
        try:
            with open("/proc/loadavg") as f:
                self.load_max = max(self.load_max, float(f.read().split()[0]))
        except (OSError, ValueError):
            pass
        return s

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(self.period)

    def finish(self):
        self.stop_ev.set()
        self.join(5)


# ---------------------------------------------------------------------------
# the scenario

def mib(kb):
    return f"{kb / 1024:.1f} MiB"


def metrics_of(b):
    return parse_prometheus(b.metrics_text())


def mval(b, name, **labels):
    return metric_value(metrics_of(b), name, **labels) or 0


def flatten_env(cfg, prefix="PUSHBRIDGE"):
    env = {}
    for k, v in cfg.items():
        if isinstance(v, dict) and k != "properties":
            env.update(flatten_env(v, f"{prefix}_{k.upper()}"))
        elif isinstance(v, list):
            env[f"{prefix}_{k.upper()}"] = ",".join(v)
        else:
            env[f"{prefix}_{k.upper()}"] = str(v)
    return env


class Scenario:
    """One bridge (plus one drop_oldest bridge for that bound) driven
    through churn, bounds and shutdown. Used twice: the soak proper (the
    Release binary, RSS checked) and the leak check (the ASan binary)."""

    def __init__(self, args, checks, phase, factory, kafka, binary, n_conns, env=None,
                 check_rss=True):
        self.a = args
        self.checks = checks
        self.phase = phase
        self.factory = factory
        self.kafka = kafka
        self.binary = binary
        self.n = n_conns
        self.env = dict(env or {})
        self.check_rss = check_rss
        self.loop = Loop()
        self.readers = []
        self.summary = {}
        self.rss_full = None
        self.ws_cfg = {
            "auth_timeout_ms": args.auth_timeout_ms,
            "max_connections": args.max_connections,
            "max_connections_per_user": 4,
            "queue_max_messages": 64,
            "queue_max_bytes": 256 * 1024,
            "slow_client": "close",
            "slow_client_grace_ms": 0,  # queue_max_bytes applies at once: the bound checked
            "max_message_bytes": 4096,
            "ping_interval_ms": 20000,
            "idle_timeout_ms": 600000,
        }
        self.push_cfg = {"max_body_bytes": 64 * 1024, "max_batch": 100}
        self.kafka_max_event = 64 * 1024
        # Small enough that the churn users' task updates fill both within the
        # warm-up: from then on they are held at their bounds (SPEC 7).
        self.state_cfg = {"max_bytes": 128 * 1024}
        self.history_cfg = {"max_bytes": 128 * 1024}

    def check(self, name, ok, detail=""):
        return self.checks.add(self.phase, name, ok, detail)

    # -- bridges --
    def start_bridge(self, ws_over=None, push_over=None, prefill=True):
        ws = dict(self.ws_cfg, **(ws_over or {}))
        push = dict(self.push_cfg, **(push_over or {}))
        if self.a.dev:
            env = flatten_env({"ws": ws, "push": push,
                               "kafka": {"max_event_bytes": self.kafka_max_event},
                               "state": self.state_cfg, "history": self.history_cfg,
                               "log": {"level": "info"}})
            env.update(self.env)
            b = self.factory.dev(env=env, binary=self.binary, timeout=60)
            m = b.wait_log(r"bootstrap\.servers=([A-Za-z0-9_.\-]+:\d+)", timeout=30)
            b.bootstrap = m.group(1)
            if prefill:
                self.prefill_mock(b)
        else:
            cfg = {"ws": ws, "push": push, "log": {"level": "info"},
                   "kafka": {"max_event_bytes": self.kafka_max_event},
                   "state": self.state_cfg, "history": self.history_cfg,
                   "shutdown_timeout_ms": 10000}
            b = self.factory(config=cfg, env=self.env, binary=self.binary, partitions=4,
                             timeout=60)
            b.bootstrap = self.kafka.bootstrap
        b.ws_cfg, b.push_cfg = ws, push
        return b

    def prefill_mock(self, b, mib_=8):
        """--dev: the embedded mock cluster lives in the bridge's process and
        keeps the last 5 MiB (librdkafka: max_size per partition) of every
        partition's log in memory. Fill it past that before measuring, so
        that its growth is not taken for the bridge's. Small batches keep
        its evictions fine-grained."""
        chunk = 256  # 512 KiB, consumed before the next (the log must not
        n = mib_ * 1024 * 1024 // 2048  # be evicted under the consumer's feet)
        val = json.dumps({"event": "soak", "data": {"src": "fill", "pad": "f" * 1990}})
        for _ in range(n // chunk):
            before = mval(b, "pushbridge_events_consumed_total")
            r = subprocess.run(["kcat", "-P", "-b", b.bootstrap, "-t", b.topic, "-K", "\t",
                                "-X", "batch.size=16384", "-X", "linger.ms=5", "-q"],
                               input="".join(f"soak-prefill\t{val}\n"
                                             for _ in range(chunk)).encode(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
            if r.returncode != 0:
                raise AssertionError(f"prefilling the embedded Kafka: {r.stderr.decode()[-300:]}")
            wait_until(lambda: mval(b, "pushbridge_events_consumed_total") >= before + chunk,
                       timeout=60, desc="prefill consumed")
        log(f"prefilled the embedded Kafka with {n} events ({mib_} MiB): RSS "
            f"{mib(read_rss_kb(b.proc.pid))}")

    def addr(self, b):
        return ("127.0.0.1", b.public_port)

    # -- readers --
    def start_readers(self, b):
        for i in range(self.a.readers):
            r = Reader(self.loop, self.addr(b), f"r{i}", native=(i % 2 == 0))
            r.start()
            self.readers.append(r)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(r.ready or r.done for r in self.readers):
            self.loop.poll(0.05)
        ok = wait_until(lambda: (self.loop.poll(0.01), b.stats()["users"] == len(self.readers))[1],
                        timeout=30, desc="readers logged in")
        return ok and all(r.ready and not r.done for r in self.readers)

    def readers_caught_up(self, kfeed, hfeed):
        for r in self.readers:
            if r.next["h"] < hfeed.sent[r.uid] or r.next["b"] < hfeed.broadcasts:
                return False
            if kfeed is not None and r.next["k"] < kfeed.sent[r.uid]:
                return False
        return True

    # -- 1. churn --
    def churn(self, b, sampler, progress):
        stats = progress
        users = self.a.users
        conc = self.a.concurrency
        addr = self.addr(b)
        active = set()
        t0 = time.monotonic()
        limit = t0 + self.a.churn_time_limit
        next_check = t0
        next_report = t0 + 10
        marks = [int(self.n * f / 10) for f in range(1, 11)]
        for r in self.readers:
            r.track_gap = True
        last_pass = time.monotonic()
        while stats.done < self.n:
            # in flight = started - done (a finished connection leaves
            # `active` only at the next sweep, 0.2 s later)
            while stats.started - stats.done < conc and stats.started < self.n:
                i = stats.started
                c = ChurnConn(self.loop, addr, i, KIND_PATTERN[i % 20], f"u{i % users}", stats,
                              time.monotonic() + self.a.conn_timeout)
                stats.started += 1
                active.add(c)
                c.start()
            self.loop.poll(0.02)
            now = time.monotonic()
            # one pass of this loop: at most 20 ms waiting, the rest is work
            # (or the process not being scheduled)
            stats.loop_lag = max(stats.loop_lag, now - last_pass - 0.02)
            last_pass = now
            if now >= next_check:
                next_check = now + 0.2
                for c in [c for c in active if c.done]:
                    active.discard(c)
                for c in [c for c in active if c.deadline < now]:
                    c.expire()
                    active.discard(c)
                if not b.alive:
                    self.check("bridge alive during churn", False,
                               f"exit status {b.proc.returncode}:\n{b.log_tail(3000)}")
                    break
                if now > limit:
                    self.check("churn finished in its time limit", False,
                               f"{stats.done}/{self.n} after {self.a.churn_time_limit}s")
                    break
            if now >= next_report or (marks and stats.done >= marks[0]):
                while marks and stats.done >= marks[0]:
                    marks.pop(0)
                next_report = now + 10
                s = sampler.samples[-1] if sampler and sampler.samples else None
                dead = [r.uid for r in self.readers if r.done]
                log(f"churn {stats.done}/{self.n} ({stats.done / max(now - t0, 1e-9):.0f}/s), "
                    f"open {stats.started - stats.done}, bad {sum(stats.bad.values())}"
                    + (f", RSS {mib(s[2])}, fds {s[3]}" if s else "")
                    + (f", readers closed: {dead}" if dead else ""))
        for c in active:
            if not c.done:
                c.shut(reset=True)
        elapsed = time.monotonic() - t0
        for r in self.readers:
            r.track_gap = False
        return elapsed

    # -- 2. RSS flatness --
    def judge_rss(self, sampler, t_end):
        s = [x for x in sampler.samples if x[0] <= t_end]
        warm_n = int(self.n * self.a.warmup)
        warm = [x for x in s if x[1] < warm_n]
        later = [x for x in s if x[1] >= warm_n]
        if len(warm) < 1 or len(later) < 2:
            if not self.check_rss:
                log(f"RSS: too few samples to summarise ({len(warm)} + {len(later)})")
                return None
            self.check("RSS samples", False, f"{len(warm)} warm-up and {len(later)} later samples "
                       "(churn too short to judge?)")
            return None
        level = max(x[2] for x in warm[-3:])
        peak = max(x[2] for x in later)
        growth = peak / level - 1
        deciles = []
        for f in range(1, 11):
            mark = self.n * f / 10
            pts = [x for x in s if x[1] <= mark]
            if pts:
                deciles.append(pts[-1][2])
        # least-squares slope of the later samples, per 10,000 connections
        xs = [x[1] for x in later]
        ys = [x[2] for x in later]
        slope = 0.0
        if len(set(xs)) > 1:
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            slope = (sum((a - mx) * (b_ - my) for a, b_ in zip(xs, ys)) /
                     sum((a - mx) ** 2 for a in xs)) * 10000
        first = s[0][2]
        info = {"start_kb": first, "warmup_kb": level, "later_max_kb": peak,
                "later_min_kb": min(ys), "later_median_kb": statistics.median(ys),
                "growth": growth, "slope_kb_per_10k": slope, "samples": len(s),
                "warm_samples": len(warm), "deciles": deciles}
        log(f"RSS series ({len(s)} samples, every {self.a.sample_interval:g} s): start {mib(first)}, warm-up level {mib(level)} "
            f"(max of the last {len(warm[-3:])} warm-up samples), later min/median/max "
            f"{mib(min(ys))}/{mib(statistics.median(ys))}/{mib(peak)}, growth {growth * 100:+.2f}%, "
            f"trend {slope:+.0f} KiB per 10k connections")
        log("RSS at each 10% of the churn (MiB): " + " ".join(f"{d / 1024:.1f}" for d in deciles))
        if self.check_rss:
            self.check(f"RSS flat after warm-up (max within {self.a.rss_tolerance * 100:.0f}% of "
                       "the warm-up level)", growth <= self.a.rss_tolerance,
                       f"warm-up {mib(level)}, later max {mib(peak)} ({growth * 100:+.2f}%)")
        fds_warm = max(x[3] for x in warm[-3:] if x[3] is not None)
        fds_peak = max(x[3] for x in later if x[3] is not None)
        info["fds_warm"], info["fds_peak"] = fds_warm, fds_peak
        return info

    # -- 3. bounds --
    def bound_slow_close(self, b):
        uid = "slow-close"
        before = mval(b, "pushbridge_slow_client_closes_total")
        slow = b.ws(rcvbuf=4096)
        slow.login_native(uid)
        fast, _ = b.native_client(uid)
        pad = "s" * (40 * 1024)
        qmax_b = b.ws_cfg["queue_max_bytes"]
        pushes, max_gauge = 0, 0
        closed_at = None
        for i in range(400):
            st, doc = b.push(uid, {"i": i, "pad": pad}, event="big")
            pushes += 1
            if st != 200:
                return self.check("slow_client close: 4009", False, f"/push answered {st} {doc}")
            got = fast.recv_json(timeout=20)["data"]["i"]
            if got != i:
                return self.check("slow_client close: 4009", False, f"fast reader got {got}, not {i}")
            max_gauge = max(max_gauge, mval(b, "pushbridge_queue_bytes"))
            if doc["delivered"] < 2:
                closed_at = i
                break
            self.loop.poll(0)
        code = slow.expect_close(timeout=30)[0]
        after = mval(b, "pushbridge_slow_client_closes_total")
        ok = code == 4009 and after == before + 1 and closed_at is not None
        self.check("slow_client close: queue past ws.queue_max_bytes -> 4009", ok,
                   f"closed with {code} after {pushes} pushes of 40 KiB (bound "
                   f"{qmax_b // 1024} KiB), slow_client_closes_total {before:.0f} -> {after:.0f}, "
                   f"queue_bytes gauge peaked at {max_gauge / 1024:.0f} KiB")
        self.check("slow_client close: queue_bytes never above the bound", max_gauge <= qmax_b,
                   f"{max_gauge:.0f} <= {qmax_b}")
        self.check("slow_client close: the user's other connection stays",
                   b.user_connections(uid) == 1 and fast.is_open())
        fast.close()
        slow.abort()

    def bound_drop_oldest(self, drop):
        """A client that stops reading under drop_oldest. Frames are big
        (64 KiB) and its SO_RCVBUF tiny, so the kernel holds a countable
        number of them (its buffers are measured from /proc/net/tcp: the
        server's send queue grows by autotuning, to ~2 MiB here); the rest
        waits on the bridge's queue, which drop_oldest caps at
        queue_max_messages. When the client reads again, every frame it gets
        was either in the kernel, or the one frame lws may hold half-written,
        or on the queue: so what came from the queue is counted exactly, and
        every frame it did not get must have been counted as dropped."""
        q = drop.ws_cfg["queue_max_messages"]
        uid = "slow-drop"
        n = self.a.drop_events
        before = mval(drop, "pushbridge_queue_dropped_total")
        slow = drop.ws(rcvbuf=4096)
        slow.login_native(uid)
        fast, _ = drop.native_client(uid)
        pad = "d" * (64 * 1024)
        gauge_max = 0
        for i in range(n):
            st, doc = drop.push(uid, {"i": i, "pad": pad}, event="big")
            if (st, doc) != (200, {"delivered": 2}):
                return self.check("drop_oldest", False, f"push {i}: {st} {doc}")
            got = fast.recv_json(timeout=20)["data"]["i"]
            if got != i:
                return self.check("drop_oldest", False, f"fast reader got {got}, not {i}")
            if i % 10 == 9:
                gauge_max = max(gauge_max, mval(drop, "pushbridge_queue_bytes"))
        gauge = mval(drop, "pushbridge_queue_bytes")
        gauge_max = max(gauge_max, gauge)
        kernel = kernel_queued_bytes(slow.sock, drop.public_port)
        dropped = mval(drop, "pushbridge_queue_dropped_total") - before
        # Now it reads again.
        seen = []
        wire_bytes = []
        deadline = time.monotonic() + 60
        while (not seen or seen[-1] != n - 1) and time.monotonic() < deadline:
            op, payload = slow.recv(timeout=30)
            if op != OP_TEXT:
                break
            seen.append(json.loads(payload)["data"]["i"])
            wire_bytes.append(len(payload))
        frame_len = max(wire_bytes, default=0)
        frame_len = max(frame_len, len(pad))
        wire = frame_len + frame_header_len(frame_len)
        # The bytes the slow client reads come, in this order, from the
        # kernel (what the server's send queue and the client's receive
        # queue held when it resumed), then at most one frame lws had taken
        # but not yet fully written, then the bridge's queue. So the frames
        # that lie within the first kernel + one-frame bytes may have come
        # from outside the queue; every later one came from the queue.
        outside, acc = 0, 0
        for w in wire_bytes:
            if acc >= kernel + wire:
                break
            acc += w + frame_header_len(w)
            outside += 1
        from_queue = len(seen) - outside
        tail_start = len(seen) - 1
        while tail_start > 0 and seen[tail_start - 1] == seen[tail_start] - 1:
            tail_start -= 1
        in_order = all(x < y for x, y in zip(seen, seen[1:]))
        self.check("drop_oldest: slow client still connected, newest event last, in order",
                   seen and seen[-1] == n - 1 and in_order and slow.is_open(),
                   f"received {len(seen)} of {n}, last #{seen[-1] if seen else None}, "
                   f"{'increasing' if in_order else 'OUT OF ORDER'}; the last run is "
                   f"#{seen[tail_start] if seen else None}..#{n - 1}")
        self.check(f"drop_oldest: at most ws.queue_max_messages ({q}) came from the queue",
                   from_queue <= q,
                   f"{len(seen)} received = {outside} within the {kernel} B the kernel held "
                   f"(+ one {wire} B frame lws may hold) + {from_queue} from the queue")
        self.check("drop_oldest: received + pushbridge_queue_dropped_total == pushed",
                   len(seen) + dropped == n,
                   f"{len(seen)} + {dropped:.0f} vs {n}; at most {q} + "
                   f"{(kernel + wire) // wire + 1} could ever arrive")
        self.check("drop_oldest: pushbridge_queue_bytes <= queue_max_messages frames",
                   0 < gauge <= q * frame_len and gauge_max <= q * frame_len,
                   f"{gauge:.0f} B while stalled (peak seen {gauge_max:.0f}), bound {q} x "
                   f"{frame_len} B")
        fast.close()
        slow.close()
        wait_until(lambda: drop.metric("pushbridge_queue_bytes") == 0, timeout=20,
                   desc="drop bridge queue_bytes == 0")

    def bound_max_connections(self, b):
        m = b.ws_cfg["max_connections"]
        base = b.stats()["connections"]
        before = mval(b, "pushbridge_connections_refused_total")
        held = []
        try:
            for i in range(m - base):
                c = b.ws(timeout=20)
                c.login_uid(f"cap{i}", sync=False)
                held.append(c)
                if i % 50 == 0:
                    self.loop.poll(0)
            wait_until(lambda: b.stats()["connections"] == m, timeout=30,
                       desc=f"{m} connections")
            rss_full = read_rss_kb(b.proc.pid)
            self.rss_full = max(self.rss_full or 0, rss_full)
            extra = b.ws(timeout=20)
            code = extra.expect_close(timeout=10)[0]
            after = mval(b, "pushbridge_connections_refused_total")
            self.check(f"ws.max_connections ({m}) reached -> 1013", code == 1013 and after == before + 1,
                       f"close {code}, connections_refused_total {before:.0f} -> {after:.0f}, "
                       f"RSS with {m} connections {mib(rss_full)}")
            self.check("ws.max_connections: count stays at the bound",
                       b.stats()["connections"] == m)
        finally:
            for c in held:
                c.abort(reset=True)
        wait_until(lambda: b.stats()["connections"] == base, timeout=30,
                   desc="connections back to the readers")
        c = b.ws()
        c.login_native("cap-after")
        c.close()

    def bound_per_user(self, b):
        p = b.ws_cfg["max_connections_per_user"]
        uid = "per-user"
        conns = [b.native_client(uid)[0] for _ in range(p)]
        extra = b.ws()
        extra.send_json({"type": "auth", "token": uid})
        msg = extra.recv_json()
        code = extra.expect_close()[0]
        n = b.user_connections(uid)
        self.check(f"ws.max_connections_per_user ({p}) -> error + 4008",
                   msg.get("code") == "too_many_connections" and code == 4008 and n == p,
                   f"{msg.get('code')}, close {code}, /users says {n}")
        for c in conns:
            c.close()

    def bound_message_size(self, b):
        mx = b.ws_cfg["max_message_bytes"]
        c = b.ws()
        c.login_native("big-msg")
        c.send_text(json.dumps({"type": "ping", "pad": "m" * mx})[:mx + 1])
        code1 = c.expect_close()[0]
        c2 = b.ws()
        c2.login_native("big-msg2")
        half = mx // 2 + 8
        # The three fragments go out in one write: see README ("findings")
        # for what happens when the third arrives separately.
        c2.send_raw(encode_frame(OP_TEXT, "a" * half, fin=False) +
                    encode_frame(OP_CONT, "b" * half, fin=False) +
                    encode_frame(OP_CONT, "c" * half, fin=True))
        code2 = c2.expect_close()[0]
        c3 = b.ws()  # before login
        c3.send_text("x" * (mx + 1))
        code3 = c3.expect_close()[0]
        self.check(f"ws.max_message_bytes ({mx}) -> 1009 (whole, fragmented, before login)",
                   (code1, code2, code3) == (1009, 1009, 1009), f"closes {code1}, {code2}, {code3}")
        for x in (c, c2, c3):
            x.abort()

    def bound_http(self, b):
        mx = b.push_cfg["max_body_bytes"]
        before = mval(b, "pushbridge_push_requests_total", status="413")
        body = json.dumps({"user_id": "nobody", "data": "z" * mx}).encode()
        st, _, data = b.http("POST", "/push", body=body,
                             headers={"Content-Type": "application/json"})
        try:
            err = json.loads(data).get("error")
        except ValueError:
            err = data[:80]
        after = mval(b, "pushbridge_push_requests_total", status="413")
        self.check(f"push.max_body_bytes ({mx}) -> 413", st == 413 and err == "payload_too_large"
                   and after == before + 1,
                   f"{st} {err}, push_requests_total{{status=413}} {before:.0f} -> {after:.0f}")
        # at the bound exactly it is accepted
        body = json.dumps({"user_id": "nobody", "data": ""}).encode()
        body = json.dumps({"user_id": "nobody", "data": "z" * (mx - len(body))}).encode()
        st2, _, _ = b.http("POST", "/push", body=body, headers={"Content-Type": "application/json"})
        self.check("push.max_body_bytes: a body of exactly the bound is accepted", st2 == 200,
                   f"{len(body)} bytes -> {st2}")
        mb = b.push_cfg["max_batch"]
        st, doc, _ = b.json("POST", "/push", [{"user_id": "nobody", "data": i} for i in range(mb + 1)])
        self.check(f"push.max_batch ({mb}) -> 400 batch_too_large",
                   st == 400 and isinstance(doc, dict) and doc.get("error") == "batch_too_large",
                   f"{st} {doc}")

    def bound_kafka_event(self, b):
        mx = self.kafka_max_event
        topic = b.topic
        before = mval(b, "pushbridge_events_dropped_total", reason="oversized")
        r = self.readers[0]
        val = json.dumps({"event": "soak", "data": {"src": "x", "pad": "o" * mx}}).encode()
        kcat_produce(b.bootstrap, topic, [(r.uid.encode(), val)])
        wait_until(lambda: mval(b, "pushbridge_events_dropped_total", reason="oversized") >= before + 1,
                   timeout=30, desc="oversized event counted")
        after = mval(b, "pushbridge_events_dropped_total", reason="oversized")
        self.loop.pump(0.3)
        self.check(f"kafka.max_event_bytes ({mx}) -> dropped as oversized, not delivered",
                   after == before + 1 and not r.errors,
                   f"events_dropped_total{{reason=oversized}} {before:.0f} -> {after:.0f}")

    def bounds(self, b, drop):
        steps = [("slow_client close", self.bound_slow_close, b),
                 ("max_connections", self.bound_max_connections, b),
                 ("max_connections_per_user", self.bound_per_user, b),
                 ("max_message_bytes", self.bound_message_size, b),
                 ("HTTP body and batch", self.bound_http, b),
                 ("Kafka event size", self.bound_kafka_event, b)]
        if drop is not None:
            steps.append(("drop_oldest", self.bound_drop_oldest, drop))
        for name, fn, br in steps:
            try:
                fn(br)
            except Exception as e:  # noqa: BLE001 - a bound that errors is a failed check
                self.check(f"bound {name}", False, f"{type(e).__name__}: {e}")
            self.loop.pump(0.05)

    # -- the whole scenario --
    def run(self):
        a = self.a
        log(f"[{self.phase}] starting {self.binary} ({'--dev' if a.dev else 'real Kafka broker'})")
        b = self.start_bridge()
        drop = None
        if not a.skip_bounds:
            drop = self.start_bridge(ws_over={"slow_client": "drop_oldest", "queue_max_messages": 16,
                                              "queue_max_bytes": 64 * 1024 * 1024},
                                     push_over={"max_body_bytes": 256 * 1024}, prefill=False)
        self.bridge = b
        pid = b.proc.pid
        if not self.check("readers logged in", self.start_readers(b),
                          f"{len(self.readers)} readers"):
            return b
        progress = ChurnStats(self.n)
        sampler = Sampler(pid, progress, period=a.sample_interval)
        sampler.sample()
        rss0 = read_rss_kb(pid)
        kfeed = KafkaFeeder(b.bootstrap, b.topic, [r.uid for r in self.readers],
                            lambda rnd: f"u{rnd.randrange(a.users)}")
        hfeed = HttpFeeder(b.internal_port, [r.uid for r in self.readers],
                           lambda rnd: f"u{rnd.randrange(a.users)}")
        kfeed.start()
        hfeed.start()
        self.loop.pump(1.0)  # events flowing before the first connection
        sampler.start()
        log(f"[{self.phase}] churn: {self.n} connections, {a.concurrency} at a time, "
            f"{a.users} users, {len(self.readers)} readers, RSS {mib(rss0)}")
        try:
            elapsed = self.churn(b, sampler, progress)
            t_churn_end = time.monotonic()
        finally:
            hfeed.finish()
            kerr = kfeed.finish()
        sampler.finish()
        st = progress
        bad = sum(st.bad.values())
        rate = st.done / elapsed if elapsed else 0
        self.summary.update(done=st.done, elapsed=elapsed, rate=rate, bad=bad,
                            events_seen=st.events_seen, load_max=sampler.load_max)
        log(f"[{self.phase}] churn done: {st.done} connections in {elapsed:.1f}s "
            f"({rate:.0f}/s); by kind: " + ", ".join(f"{k} {v}" for k, v in st.ok.items()))
        # A 4001 read with (or just after) the 101 means the server's timer
        # had run out before this client even read the upgrade answer: the
        # client was descheduled for the whole ws.auth_timeout_ms. A later
        # one means the login was already in the bridge's socket when its
        # timer fired: the bridge was late.
        races = len(st.races)
        client_late = [r for r in st.races if r[2] < 20]
        bridge_late = [r for r in st.races if r[2] >= 20]
        self.summary["races"] = (len(client_late), len(bridge_late))
        self.check(f"churn: logins beaten by the {a.auth_timeout_ms} ms auth timer because the "
                   "client was descheduled <= 2%", len(client_late) <= max(1, self.n // 50),
                   f"{len(client_late)}; longest client loop pass {st.loop_lag * 1000:.0f} ms"
                   + ("; e.g. " + ", ".join(f"#{i} {k}" for i, k, _ in client_late[:5])
                      if client_late else ""))
        self.check(f"churn: logins already sent when the bridge's {a.auth_timeout_ms} ms auth "
                   "timer fired <= 0.2%", len(bridge_late) <= max(1, self.n // 500),
                   f"{len(bridge_late)}"
                   + ("; e.g. " + ", ".join(f"#{i} {k} 4001 {ms:.0f} ms after the 101 was read"
                                            for i, k, ms in bridge_late[:5])
                      if bridge_late else ""))
        self.check(f"churn: {self.n} connections, each ended as expected",
                   st.done == self.n and bad == 0,
                   f"{st.done} done, {bad} unexpected, {races} auth-timeout races"
                   + ("" if not bad else ": " + "; ".join(f"{k} x{v}" for k, v in st.bad.items())
                      + " | e.g. " + " | ".join(st.bad_examples)))
        self.check("kcat producer delivered everything", kerr is None, kerr or f"{kfeed.total} events")
        self.check("HTTP pushes answered as expected", not hfeed.errors,
                   "; ".join(hfeed.errors[:5]) or f"{hfeed.calls} calls, {hfeed.broadcasts} broadcasts")

        # readers caught up: everything produced for them arrived, in order
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.readers_caught_up(kfeed, hfeed):
            self.loop.poll(0.05)
        self.loop.pump(0.3)
        closed = [f"{r.uid}: {r.closed_why}" for r in self.readers if r.done]
        errs = [f"{r.uid}: {e}" for r in self.readers for e in r.errors[:3]]
        short = [f"{r.uid} k {r.next['k']}/{kfeed.sent[r.uid]} h {r.next['h']}/{hfeed.sent[r.uid]} "
                 f"b {r.next['b']}/{hfeed.broadcasts}" for r in self.readers
                 if r.next["k"] != kfeed.sent[r.uid] or r.next["h"] != hfeed.sent[r.uid]
                 or r.next["b"] != hfeed.broadcasts]
        got = sum(r.received for r in self.readers)
        gap = max(r.max_gap for r in self.readers)
        self.summary["reader_events"] = got
        self.summary["reader_max_gap"] = gap
        self.check("readers received every event for them, in order, and stayed connected",
                   not closed and not errs and not short,
                   "; ".join(closed + errs + short)[:1500] or
                   f"{got} events over {len(self.readers)} readers; longest silence during the "
                   f"churn {gap:.2f}s")

        # counts back to baseline, queues drained
        nr = len(self.readers)

        def baseline():
            self.loop.poll(0.02)
            s = b.stats()
            return (s["connections"], s["users"]) == (nr, nr)
        try:
            wait_until(baseline, timeout=30, interval=0.1, desc="connections and users == readers")
        except AssertionError:
            pass
        m = metrics_of(b)
        conns, users = metric_value(m, "pushbridge_connections"), metric_value(m, "pushbridge_users")
        self.check("pushbridge_connections and pushbridge_users back to the readers alone",
                   (conns, users) == (nr, nr), f"connections {conns:.0f}, users {users:.0f}, "
                   f"readers {nr}")
        try:
            wait_until(lambda: (self.loop.poll(0.02), b.metric("pushbridge_queue_bytes") == 0)[1],
                       timeout=30, interval=0.1, desc="queue_bytes == 0")
        except AssertionError:
            pass
        qb = b.metric("pushbridge_queue_bytes")
        self.check("pushbridge_queue_bytes == 0 once the readers caught up", qb == 0, f"{qb}")
        sb, hb = b.metric("pushbridge_state_bytes"), b.metric("pushbridge_history_bytes")
        se = mval(b, "pushbridge_state_evictions_total")
        he = mval(b, "pushbridge_history_evictions_total")
        self.check("task state and history held at state.max_bytes / history.max_bytes, "
                   "evicting", sb <= self.state_cfg["max_bytes"] and
                   hb <= self.history_cfg["max_bytes"] and se > 0 and he > 0,
                   f"state {sb:.0f} B ({se:.0f} evicted), history {hb:.0f} B ({he:.0f} evicted)")
        consumed = mval(b, "pushbridge_events_consumed_total")
        dropped = mval(b, "pushbridge_events_dropped_total")
        self.summary["kafka"] = (kfeed.total, consumed, dropped)
        log(f"[{self.phase}] Kafka: produced {kfeed.total}, consumed {consumed:.0f}, "
            f"dropped (malformed) {dropped:.0f}; churn connections received {st.events_seen} events")

        rss_info = self.judge_rss(sampler, t_churn_end)
        self.summary["rss"] = rss_info
        if rss_info:
            fds_now = count_fds(pid)
            self.check("open descriptors back to the warm-up level",
                       fds_now is not None and fds_now <= rss_info["fds_warm"] + 2,
                       f"now {fds_now}, warm-up {rss_info['fds_warm']}, peak {rss_info['fds_peak']}")

        if not a.skip_bounds:
            log(f"[{self.phase}] bounds")
            self.bounds(b, drop)
            rss_after = read_rss_kb(pid)
            self.summary["rss_after_bounds"] = rss_after
            # Holding ws.max_connections connections takes memory that the
            # allocator keeps for reuse once they are gone, so the first pass
            # raises RSS above the churn's level by about what that many
            # connections cost (logged). Bounded means: pushing every bound
            # again reuses that memory instead of adding to it.
            log(f"[{self.phase}] bounds again (RSS {mib(rss_after)}; with "
                f"{a.max_connections} connections held it was {mib(self.rss_full or 0)})")
            quiet = Checks(quiet=True)
            loud, self.checks = self.checks, quiet
            try:
                self.bounds(b, drop)
            finally:
                self.checks = loud
            rss_again = read_rss_kb(pid)
            self.summary["rss_after_bounds2"] = rss_again
            bad = [f"{n}: {d}" for _, n, ok, d in quiet.items if not ok]
            self.check("every bound holds a second time", not bad,
                       "; ".join(bad)[:1500] or f"{len(quiet.items)} checks passed again")
            if self.check_rss and self.rss_full:
                g = max(rss_after, rss_again) / self.rss_full - 1
                self.check(f"RSS after the bounds within {a.rss_tolerance * 100:.0f}% of RSS at "
                           f"the bound ({a.max_connections} connections held)",
                           g <= a.rss_tolerance,
                           f"{mib(max(rss_after, rss_again))} vs {mib(self.rss_full)} "
                           f"({g * 100:+.2f}%)")
            if rss_info and self.check_rss:
                g = rss_again / rss_after - 1
                self.check(f"RSS after pushing every bound twice within {a.rss_tolerance * 100:.0f}% "
                           "of after once", g <= a.rss_tolerance,
                           f"{mib(rss_after)} -> {mib(rss_again)} ({g * 100:+.2f}%); churn warm-up "
                           f"level {mib(rss_info['warmup_kb'])}, with {a.max_connections} "
                           f"connections held {mib(self.rss_full or 0)}")
            wait_until(lambda: (self.loop.poll(0.02), b.stats()["connections"] == nr)[1],
                       timeout=30, interval=0.1, desc="connections == readers after bounds")
            self.check("after the bounds: connections back to the readers, queue_bytes 0",
                       b.stats()["connections"] == nr and b.metric("pushbridge_queue_bytes") == 0)
        return b

    def shutdown(self):
        """SIGTERM the bridges: readers get 1001, exit 0, no sanitizer report."""
        for b in list(self.factory.bridges):
            if not b.alive and b.returncode is not None:
                continue
            is_main = b is getattr(self, "bridge", None)
            if is_main:
                b.proc.send_signal(signal.SIGTERM)
                end = time.monotonic() + 15
                while time.monotonic() < end and not all(r.done for r in self.readers):
                    self.loop.poll(0.05)
                codes = sorted({r.close_code for r in self.readers})
                self.check("SIGTERM: readers closed with 1001", codes == [1001], f"close codes {codes}")
            t0 = time.monotonic()
            try:
                rc = b.stop(signal.SIGTERM, timeout=30)
            except AssertionError as e:
                self.check(f"{b.name} exits after SIGTERM", False, str(e))
                continue
            log_text = b.log_text()
            m = SANITIZER_RE.search(log_text)
            lsan = "LeakSanitizer" in log_text
            what = "main" if is_main else "drop_oldest"
            self.check(f"SIGTERM: {what} bridge exits 0", rc == 0,
                       f"exit {rc} after {time.monotonic() - t0:.1f}s"
                       + ("" if rc == 0 else "\n" + b.log_tail(3000)))
            if is_sanitized(b.binary):
                report = ""
                if m:
                    start = max(0, m.start() - 200)
                    report = "\n" + log_text[start:start + 4000]
                self.check(f"LeakSanitizer/AddressSanitizer: no report from the {what} bridge",
                           not m and not lsan, (f"log {b.log_path}" + report) if (m or lsan)
                           else "clean (detect_leaks=1)")


CANARY_C = r"""
#include <stdlib.h>
#include <string.h>
void *pb_soak_canary_sink;
__attribute__((constructor)) static void pb_soak_canary(void)
{
    char *p = malloc(4321);
    memset(p, 1, 4321);
    pb_soak_canary_sink = p;
    pb_soak_canary_sink = NULL; /* unreachable from here on: a leak */
}
"""


def leak_canary(checks, factory, kafka, asan_binary, dev, workdir):
    """Shows that the leak check can fail: the ASan bridge, started with an
    LD_PRELOADed library that leaks 4321 bytes in a constructor, must end
    with a LeakSanitizer report naming it (and a non-zero exit status)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        checks.add("leak", "canary: the leak check sees a planted leak", False, "no C compiler")
        return
    src = os.path.join(workdir, "canary.c")
    lib = os.path.join(workdir, "canary.so")
    with open(src, "w") as f:
        f.write(CANARY_C)
    subprocess.run([cc, "-shared", "-fPIC", "-O0", "-o", lib, src], check=True, timeout=60)
    env = {"ASAN_OPTIONS": "detect_leaks=1:verify_asan_link_order=0", "LD_PRELOAD": lib}
    if dev:
        b = factory.dev(env=env, binary=asan_binary, timeout=60)
    else:
        b = factory(config={"log": {"level": "info"}}, env=env, binary=asan_binary, timeout=60)
    rc = b.stop(signal.SIGTERM, timeout=30)
    text = b.log_text()
    seen = "ERROR: LeakSanitizer: detected memory leaks" in text and "pb_soak_canary" in text
    b.sanitizer_reported = True  # expected here: not a failure of the factory teardown
    checks.add("leak", "canary: a planted 4321-byte leak is reported by LeakSanitizer", seen and rc != 0,
               f"exit {rc}, report {'found' if seen else 'MISSING'}")


def kernel_queued_bytes(client_sock, server_port):
    """Bytes written by the server on this connection that the client has not
    read: the server socket's send queue plus the client socket's receive
    queue, from /proc/net/tcp (tx_queue / rx_queue columns)."""
    cport = client_sock.getsockname()[1]
    tx = rx = None
    # The bridge's sockets may be IPv6 ones carrying IPv4 (::ffff:127.0.0.1).
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                p = line.split()
                lport = int(p[1].rsplit(":", 1)[1], 16)
                rport = int(p[2].rsplit(":", 1)[1], 16)
                txq, rxq = (int(x, 16) for x in p[4].split(":"))
                if lport == server_port and rport == cport:
                    tx = txq
                elif lport == cport and rport == server_port:
                    rx = rxq
    if tx is None or rx is None:
        raise AssertionError(f"connection {cport}<->{server_port} not in /proc/net/tcp")
    return tx + rx


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 connections (CI)")
    ap.add_argument("--dev", action="store_true", help="use pushbridge --dev (embedded Kafka)")
    ap.add_argument("--connections", type=int, help="churn connections (default 100000, quick 10000)")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--readers", type=int, default=16)
    ap.add_argument("--warmup", type=float, default=0.2, help="fraction of the churn that warms up")
    ap.add_argument("--sample-interval", type=float,
                    help="seconds between RSS samples (default 1; quick 0.25, its churn is short)")
    ap.add_argument("--rss-tolerance", type=float, default=0.05)
    ap.add_argument("--auth-timeout-ms", type=int, default=500)
    ap.add_argument("--max-connections", type=int, default=1000)
    ap.add_argument("--conn-timeout", type=float, default=20.0, help="bound per churn connection (s)")
    ap.add_argument("--churn-time-limit", type=float, help="bound for the whole churn (s)")
    ap.add_argument("--drop-events", type=int, default=120)
    ap.add_argument("--leak-connections", type=int,
                    help="churn connections of the ASan leak phase (default 20000, quick 5000)")
    ap.add_argument("--skip-bounds", action="store_true")
    ap.add_argument("--skip-leak", action="store_true", help="no ASan phase")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    a = ap.parse_args()
    a.connections = a.connections or (10000 if a.quick else 100000)
    a.sample_interval = a.sample_interval or (0.25 if a.quick else 1.0)
    a.churn_time_limit = a.churn_time_limit or max(300.0, a.connections / 50.0)
    a.leak_connections = a.leak_connections or (5000 if a.quick else 20000)
    binary = os.environ.get("PB_BINARY", os.path.join(REPO, "build", "pushbridge"))
    asan_binary = os.environ.get("PB_ASAN_BINARY", os.path.join(REPO, "build-asan", "pushbridge"))
    binary, asan_binary = os.path.abspath(binary), os.path.abspath(asan_binary)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.concurrency + a.max_connections + 512
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))

    workdir = tempfile.mkdtemp(prefix="pb-soak-")
    checks = Checks()
    kafka = None
    factories = []
    feeders = []

    def cleanup():
        for f in factories:
            for b in f.bridges:
                if b.proc is not None and b.proc.poll() is None:
                    b.proc.kill()
                    try:
                        b.proc.wait(10)
                    except subprocess.TimeoutExpired:
                        pass
        if kafka is not None:
            kafka.stop()
    atexit.register(cleanup)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    summaries = []
    t0 = time.monotonic()
    try:
        for tool in (["kcat"] + ([] if a.dev else ["java"])):
            if shutil.which(tool) is None:
                checks.add("setup", f"{tool} on PATH", False, "run tests/run.sh once to install it")
                raise SystemExit(2)
        if not os.path.exists(binary):
            checks.add("setup", "binary", False, f"{binary} missing (cmake --build build)")
            raise SystemExit(2)
        if not a.dev:
            log("starting the Kafka broker (KRaft) ...")
            os.makedirs(os.path.join(workdir, "kafka"))
            kafka = KafkaBroker(workdir=os.path.join(workdir, "kafka"))
            kafka.start(timeout=120)
            log(f"broker up at {kafka.bootstrap}")
        soak_env = {}
        if is_sanitized(binary):
            # A small quarantine keeps ASan's own memory from growing for the
            # whole run (the RSS check is still not meaningful: see README).
            soak_env["ASAN_OPTIONS"] = "detect_leaks=1:quarantine_size_mb=16"
        f = BridgeFactory(kafka, os.path.join(workdir, "soak"))
        os.makedirs(f.tmpdir, exist_ok=True)
        factories.append(f)
        sc = Scenario(a, checks, "soak", f, kafka, binary, a.connections, env=soak_env,
                      check_rss=not is_sanitized(binary))
        try:
            sc.run()
        finally:
            sc.shutdown()
        summaries.append(sc)

        if not a.skip_leak:
            if is_sanitized(binary):
                log("the soak binary is the ASan build: its shutdown was the leak check")
                leak_canary(checks, f, kafka, binary, a.dev, workdir)
            elif not os.path.exists(asan_binary) or not is_sanitized(asan_binary):
                checks.add("leak", "ASan binary", False,
                           f"{asan_binary} missing or not an ASan build (cmake -S . -B build-asan "
                           "-DPB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug; or --skip-leak)")
            else:
                f2 = BridgeFactory(kafka, os.path.join(workdir, "leak"))
                os.makedirs(f2.tmpdir, exist_ok=True)
                factories.append(f2)
                la = argparse.Namespace(**vars(a))
                la.concurrency = min(a.concurrency, 100)
                la.churn_time_limit = max(300.0, a.leak_connections / 10.0)
                lc = Scenario(la, checks, "leak", f2, kafka, asan_binary, a.leak_connections,
                              env={"ASAN_OPTIONS": "detect_leaks=1"}, check_rss=False)
                try:
                    lc.run()
                finally:
                    lc.shutdown()
                summaries.append(lc)
                leak_canary(checks, f2, kafka, asan_binary, a.dev, workdir)
    except KeyboardInterrupt as e:
        checks.add("run", "interrupted", False, str(e))
    except SystemExit:
        pass
    except Exception as e:  # noqa: BLE001
        import traceback
        checks.add("run", "unexpected error", False, f"{e!r}\n{traceback.format_exc()}")
    finally:
        cleanup()

    # ---- summary ----
    total = time.monotonic() - t0
    print("\n" + "=" * 78)
    print(f"pushbridge memory soak ({'quick' if a.quick else 'full'}, "
          f"{'--dev' if a.dev else 'real Kafka'}) in {total:.0f}s")
    for sc in summaries:
        s = sc.summary
        if "done" in s:
            print(f"  [{sc.phase}] {os.path.relpath(sc.binary, REPO)}: {s['done']} connections in "
                  f"{s['elapsed']:.1f}s = {s['rate']:.0f}/s ({sc.a.concurrency} at a time), "
                  f"{s['bad']} unexpected; readers got {s.get('reader_events', 0)} events; "
                  f"load average up to {s.get('load_max', 0):.1f} on {os.cpu_count()} CPUs; "
                  f"auth-timeout races {s.get('races', (0, 0))[0]} client-late / "
                  f"{s.get('races', (0, 0))[1]} bridge-late")
        r = s.get("rss")
        if r:
            print(f"  [{sc.phase}] RSS: start {mib(r['start_kb'])}, warm-up {mib(r['warmup_kb'])}, "
                  f"later max {mib(r['later_max_kb'])} ({r['growth'] * 100:+.2f}%), trend "
                  f"{r['slope_kb_per_10k']:+.0f} KiB/10k conns"
                  + (f", after the bounds {mib(s['rss_after_bounds'])}, after them again "
                     f"{mib(s['rss_after_bounds2'])} (holding {sc.a.max_connections} "
                     f"connections: {mib(sc.rss_full or 0)})" if "rss_after_bounds2" in s else "")
                  + ("" if sc.check_rss else " (sanitizer build: not judged)"))
    print("-" * 78)
    for phase, name, ok, detail in checks.items:
        d = detail.split("\n")[0]
        print(f"  {'PASS' if ok else 'FAIL'}  [{phase}] {name}" + (f" — {d}" if d else ""))
    print("-" * 78)
    passed = sum(1 for i in checks.items if i[2])
    failed = len(checks.items) - passed
    print(f"soak: {passed} passed, {failed} failed")
    if failed or a.keep:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed or not checks.items else 0


if __name__ == "__main__":
    sys.exit(main())
