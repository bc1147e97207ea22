"""The bridge's end of a client's connection, looked at directly: every event
is one small write, so Nagle's algorithm must be off (TCP_NODELAY), or an
event sent while the previous one is unacknowledged waits for that ACK (a
round trip, or the client's delayed ACK: 40 ms on Linux, 200 ms on Windows).
lws turns it off on sockets it accepts itself; the public listener accepts
its own (admission control) and hands them to lws, which then did not. The
socket is read through a duplicate of the bridge's descriptor (pidfd_getfd,
Linux 5.6); where that is not allowed the test says so and skips."""

import ctypes
import os
import socket

import pytest

from pbutil import unique_uid

SYS_PIDFD_GETFD = 438  # x86_64 and arm64 alike


def _socket_inode(local_port, remote_port):
    """The inode of the TCP socket bound to local_port and connected to
    remote_port (either address family), from /proc/net."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            # f[9] == "0": a socket in TIME_WAIT (an earlier connection
            # that had the same ports), which no descriptor holds.
            if (int(f[1].rsplit(":", 1)[1], 16) == local_port
                    and int(f[2].rsplit(":", 1)[1], 16) == remote_port and f[9] != "0"):
                return f[9]
    return None


def bridge_side_option(pid, server_port, client, level, option):
    """getsockopt on the bridge's end of client's connection."""
    inode = _socket_inode(server_port, client.getsockname()[1])
    assert inode, "the bridge's end of the connection is not in /proc/net/tcp"
    target = None
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                target = int(fd)
        except OSError:
            continue
    assert target is not None, f"no descriptor of process {pid} holds socket {inode}"
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        dup = libc.syscall(SYS_PIDFD_GETFD, pidfd, target, 0)
        if dup < 0:
            pytest.skip(f"pidfd_getfd refused here: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(pidfd)
    s = socket.socket(fileno=dup)
    try:
        return s.getsockopt(level, option)
    finally:
        s.close()


@pytest.fixture
def shared(module_bridge_factory):
    return module_bridge_factory.shared()


def test_websocket_connections_have_nagle_off(shared):
    c, _ = shared.native_client(unique_uid())
    assert bridge_side_option(shared.proc.pid, shared.public_port, c.sock,
                              socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_sse_streams_have_nagle_off(shared):
    s = socket.create_connection(("127.0.0.1", shared.public_port), timeout=10)
    s.sendall(f"GET /sse?token={unique_uid()} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    assert bridge_side_option(shared.proc.pid, shared.public_port, s,
                              socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    s.close()


def test_internal_api_connections_have_nagle_off(shared):
    s = socket.create_connection(("127.0.0.1", shared.internal_port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    assert bridge_side_option(shared.proc.pid, shared.internal_port, s,
                              socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    s.close()
