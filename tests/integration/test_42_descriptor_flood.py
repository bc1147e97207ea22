"""Descriptor flood on the public listener (issue 14 item 1; README
"Security model", ws.max_pending, ws.max_pending_per_ip,
ws.handshake_timeout_ms, pushbridge_accept_refused_total).

The bridge runs under an open-file limit of 256 (prlimit). Hundreds of
connections send only a request line and never finish the upgrade, from
one address and then from many (127.0.0.2-41, which defeats the per-address
bound and runs the process into its descriptor reserve). Throughout, the
bridge stays cheap on CPU, the internal /healthz answers, a logged-in
client receives its events, the condition is logged a bounded number of
times; when the flood stops, a new client logs in at once."""

import os
import resource
import socket
import stat
import threading
import time

import pytest

from bridge import binary_path
from pbutil import unique_uid, wait_until

NOFILE = 256
REQUEST_LINE = b"GET /ws HTTP/1.1\r\n"


@pytest.fixture
def limited(bridge_factory, tmp_path):
    wrapper = tmp_path / "pushbridge-nofile"
    wrapper.write_text(f"#!/bin/sh\nexec prlimit --nofile={NOFILE}:{NOFILE} "
                       f"{binary_path()} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    return bridge_factory(binary=str(wrapper), config={
        "ws": {"max_pending_per_ip": 32, "handshake_timeout_ms": 2000}})


def _cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Flood:
    """Keeps `n` half-open upgrades open from the given source addresses,
    reopening each one the bridge closes, as an attacker would."""

    def __init__(self, port, sources, n):
        self.port, self.sources, self.n = port, sources, n
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((self.sources[i % len(self.sources)], 0))
            s.connect_ex(("127.0.0.1", self.port))
            self.opened += 1
        except OSError:
            pass
        return [s, False]

    def _run(self):
        socks = [self._open(i) for i in range(self.n)]
        while not self.stop.is_set():
            for i, slot in enumerate(socks):
                s = slot[0]
                try:
                    if not slot[1]:
                        s.send(REQUEST_LINE)
                        slot[1] = True
                    elif s.recv(1) == b"":
                        raise ConnectionResetError
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    s.close()
                    socks[i] = self._open(i)
            time.sleep(0.02)  # pacing the attacker, not synchronisation
        for slot in socks:
            slot[0].close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def _served(b, c, uid, n):
    st, body, _ = b.http("GET", "/healthz", timeout=3)
    assert st == 200, (st, body)
    st, doc = b.push(uid, {"n": n}, event="during")
    assert st == 200 and doc["delivered"] == 1, (st, doc)
    m = c.recv_json(timeout=3)
    assert m["data"] == {"n": n}, m


def _under_flood(b, c, uid, sources, reason):
    with Flood(b.public_port, sources, 400) as flood:
        wait_until(lambda: (b.metric("pushbridge_accept_refused_total", reason=reason) or 0)
                   >= 50, timeout=15, desc=f"refusals for {reason}")
        cpu0, t0 = _cpu_s(b.proc.pid), time.monotonic()
        for n in range(10):
            _served(b, c, uid, n)
            time.sleep(0.2)  # spreads the checks over the measured window
        share = (_cpu_s(b.proc.pid) - cpu0) / (time.monotonic() - t0)
        assert share < 0.5, f"bridge used {share:.0%} of a core under the flood"
        assert flood.opened >= 400
        pending = b.metric("pushbridge_pending_connections")
        assert pending <= 32 * len(sources), pending
    return share


def test_flood_from_one_address_is_bounded_per_address(limited):
    b = limited
    uid = unique_uid("flood")
    c, _ = b.native_client(uid)
    _under_flood(b, c, uid, ["127.0.0.1"], "per_ip")
    assert b.metric("pushbridge_pending_connections") <= 33
    _recovers(b)


def test_flood_from_many_addresses_keeps_the_descriptor_reserve(limited):
    b = limited
    uid = unique_uid("flood")
    c, _ = b.native_client(uid)
    sources = [f"127.0.0.{i}" for i in range(2, 42)]
    _under_flood(b, c, uid, sources, "descriptors")
    _recovers(b)


def _recovers(b):
    """The flood has stopped: a new client logs in at once, and the log
    reported the condition a bounded number of times."""
    t0 = time.monotonic()
    uid = unique_uid("after")
    c, welcome = b.native_client(uid)
    assert welcome["type"] == "welcome"
    assert time.monotonic() - t0 < 2.0
    wait_until(lambda: b.metric("pushbridge_pending_connections") == 0, timeout=10,
               desc="no pending connection left")
    log = b.log_text()
    assert log.count("listen.public: closing new connections at once") <= 3, log[-3000:]
    assert log.count("accept failed") <= 3, log[-3000:]
    assert "errno 24" not in log


def test_half_open_upgrade_is_closed_after_the_handshake_timeout(limited):
    b = limited
    s = socket.create_connection(("127.0.0.1", b.public_port))
    s.sendall(REQUEST_LINE)
    s.settimeout(10)
    t0 = time.monotonic()
    try:
        assert s.recv(100) == b""
    except ConnectionResetError:
        pass
    elapsed = time.monotonic() - t0
    s.close()
    # ws.handshake_timeout_ms is 2 s; lws's timers are served once a second.
    assert 1.5 <= elapsed <= 4.5, elapsed
