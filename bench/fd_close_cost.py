#!/usr/bin/env python3
"""What the open-file limit costs per WebSocket close (deploy/pushbridge.service
LimitNOFILE): Debian's libwebsockets 4.1 is a debug build that scans its
descriptor table on close, and lws sizes that table from the limit. Starts
`pushbridge --dev` under each limit, opens N WebSockets, closes them all, and
prints the CPU time the bridge's loop thread spent on the closes
(/proc/PID/schedstat).

    bench/fd_close_cost.py [BINARY] [N]      (prlimit from util-linux)
"""
import base64
import os
import socket
import subprocess
import sys
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/pushbridge"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
LIMITS = [4096, 16384, 19968, 65536, 1048576]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    """CPU time of the main (event loop) thread, in ns resolution: librdkafka's
    threads are not counted."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def ws_open(port):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert b" 101 " in buf.split(b"\r\n")[0], buf
    return s


def measure(limit):
    pub, internal = free_port(), free_port()
    env = dict(os.environ, PUSHBRIDGE_LISTEN_PUBLIC=f"127.0.0.1:{pub}",
               PUSHBRIDGE_LISTEN_INTERNAL=f"127.0.0.1:{internal}",
               PUSHBRIDGE_WS_AUTH_TIMEOUT_MS="600000", PUSHBRIDGE_LOG_LEVEL="warn")
    p = subprocess.Popen(["prlimit", f"--nofile={limit}:{limit}", BIN, "--dev"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", pub), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "bridge did not start"
                time.sleep(0.05)
        socks = [ws_open(pub) for _ in range(N)]
        time.sleep(0.5)
        before = cpu_seconds(p.pid)
        t0 = time.monotonic()
        for s in socks:
            s.close()
        # Wait until the bridge has processed every close (its CPU settles).
        last = -1.0
        while True:
            time.sleep(0.3)
            now = cpu_seconds(p.pid)
            if now == last:
                break
            last = now
        spent = last - before
        print(f"limit {limit:>8}: {N} closes took {spent * 1000:.0f} ms of bridge CPU "
              f"({spent / N * 1e6:.1f} us per close), wall {time.monotonic() - t0 - 0.3:.2f} s")
    finally:
        p.terminate()
        p.wait(timeout=20)


if __name__ == "__main__":
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (N + 256, max(N + 256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for lim in LIMITS:
        if lim < N + 64:
            continue
        if hard != resource.RLIM_INFINITY and lim > hard and os.geteuid() != 0:
            print(f"limit {lim:>8}: above this process's hard limit {hard}, skipped")
            continue
        try:
            measure(lim)
        except AssertionError as e:
            print(f"limit {lim:>8}: bridge did not start under it ({e}); the hard limit "
                  f"here is {hard} and may not be raised")
