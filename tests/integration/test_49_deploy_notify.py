"""The service manager's notify protocol (SPEC §10, issue 13): under systemd
Type=notify the bridge sends READY=1 once it is ready (what /readyz says),
WATCHDOG=1 from its loop at half of WATCHDOG_USEC, STATUS= lines, and
STOPPING=1 when SIGTERM starts the shutdown. The test plays systemd: it binds
an AF_UNIX datagram socket and hands its name over in NOTIFY_SOCKET."""

import os
import signal
import socket
import time
import uuid

import pytest

from pbutil import FrozenThread, thread_id


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, tmpdir, abstract):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"pushbridge-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env_name = "@" + name
        else:
            path = os.path.join(tmpdir, "notify.sock")
            self.sock.bind(path)
            self.env_name = path
        self.seen = []  # every message received, in order

    def expect(self, pred, timeout, desc):
        """Reads datagrams until one satisfies pred; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {desc} within {timeout}s; got {self.seen!r}")
            self.sock.settimeout(left)
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            self.seen.append(msg)
            if pred(msg):
                return msg

    def close(self):
        self.sock.close()


def lines(msg):
    return msg.split("\n")


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_deploy_notify_ready_watchdog_stopping_in_order(bridge_factory, tmp_path, abstract):
    ns = NotifySocket(str(tmp_path), abstract)
    try:
        b = bridge_factory(env={"NOTIFY_SOCKET": ns.env_name, "WATCHDOG_USEC": "1000000"},
                           wait_ready=False)
        ready = ns.expect(lambda m: "READY=1" in lines(m), 30, "READY=1")
        # READY=1 means what /readyz 200 means.
        st, _, _ = b.http("GET", "/readyz")
        assert st == 200, b.log_tail()
        assert any(l.startswith("STATUS=Ready") for l in lines(ready)), ready
        # Watchdog pings keep coming after READY (every 0.5 s for 1 s).
        ns.expect(lambda m: m == "WATCHDOG=1", 5, "WATCHDOG=1 after READY=1")
        ns.expect(lambda m: m == "WATCHDOG=1", 5, "a second WATCHDOG=1")
        b.proc.send_signal(signal.SIGTERM)
        stopping = ns.expect(lambda m: "STOPPING=1" in lines(m), 10, "STOPPING=1")
        assert any(l.startswith("STATUS=Stopping") for l in lines(stopping)), stopping
        assert b.stop(signal.SIGTERM) == 0, b.log_tail()
        order = [i for i, m in enumerate(ns.seen) if "READY=1" in lines(m)]
        assert len(order) == 1, f"READY=1 sent {len(order)} times: {ns.seen!r}"
        assert ns.seen.index(stopping) > order[0]
    finally:
        ns.close()


def test_deploy_notify_a_wedged_worker_stops_the_watchdog(bridge_factory, tmp_path):
    """The watchdog covers every worker (SPEC 11), not only the main loop: with worker
    1's thread stopped the main loop goes on, but the WATCHDOG=1 pings stop (so systemd
    restarts a bridge that would otherwise hold Kafka back for that worker for good),
    the log names the worker, and the pings come back once it runs again."""
    ns = NotifySocket(str(tmp_path), False)
    try:
        b = bridge_factory(config={"workers": 2},
                           env={"NOTIFY_SOCKET": ns.env_name, "WATCHDOG_USEC": "1000000"},
                           wait_ready=False)
        ns.expect(lambda m: "READY=1" in lines(m), 30, "READY=1")
        ns.expect(lambda m: m == "WATCHDOG=1", 5, "WATCHDOG=1 after READY=1")
        frozen = FrozenThread(thread_id(b.proc.pid, "pb-worker-1"))
        try:
            b.wait_log(r"worker 1's loop has not turned for \d+ ms: no more watchdog pings",
                       timeout=10)
            ns.sock.setblocking(False)  # what was sent before that line
            try:
                while True:
                    ns.sock.recv(4096)
            except BlockingIOError:
                pass
            ns.seen.clear()
            with pytest.raises(AssertionError):
                ns.expect(lambda m: m == "WATCHDOG=1", 2.0, "WATCHDOG=1 with worker 1 stopped")
            st, _, _ = b.http("GET", "/readyz")  # the main loop itself still serves
            assert st == 200
        finally:
            frozen.thaw()
        ns.expect(lambda m: m == "WATCHDOG=1", 5, "WATCHDOG=1 once worker 1 runs again")
        b.wait_log(r"every worker's loop turns again: watchdog pings resume")
    finally:
        ns.close()


def test_deploy_notify_not_ready_status_without_kafka(bridge_factory, tmp_path):
    """No broker: no READY=1, and STATUS says why (as /readyz does)."""
    from pbutil import free_port
    ns = NotifySocket(str(tmp_path), abstract=False)
    try:
        b = bridge_factory(env={"NOTIFY_SOCKET": ns.env_name},
                           config={"kafka": {"brokers": f"127.0.0.1:{free_port()}"},
                                   "shutdown_timeout_ms": 2000},
                           create_topic=False, wait_ready=False)
        msg = ns.expect(lambda m: m.startswith("STATUS=Not ready"), 10, "STATUS=Not ready")
        assert "READY=1" not in "".join(ns.seen)
        st, _, _ = b.http("GET", "/readyz")
        assert st == 503, msg
        b.proc.send_signal(signal.SIGTERM)
        ns.expect(lambda m: "STOPPING=1" in lines(m), 10, "STOPPING=1")
        assert not any("READY=1" in lines(m) for m in ns.seen), ns.seen
        b.stop(signal.SIGTERM)
    finally:
        ns.close()


def test_deploy_notify_watchdog_pid_of_another_process_is_ignored(bridge_factory, tmp_path):
    """WATCHDOG_USEC inherited from a parent service (WATCHDOG_PID names
    someone else) is not ours: no WATCHDOG=1 pings."""
    ns = NotifySocket(str(tmp_path), abstract=False)
    try:
        b = bridge_factory(env={"NOTIFY_SOCKET": ns.env_name, "WATCHDOG_USEC": "200000",
                                "WATCHDOG_PID": "1"}, wait_ready=False)
        ns.expect(lambda m: "READY=1" in lines(m), 30, "READY=1")
        b.proc.send_signal(signal.SIGTERM)
        ns.expect(lambda m: "STOPPING=1" in lines(m), 10, "STOPPING=1")
        assert "WATCHDOG=1" not in ns.seen, ns.seen
        b.stop(signal.SIGTERM)
    finally:
        ns.close()


@pytest.mark.parametrize("env,needle", [
    ({"NOTIFY_SOCKET": "relative/path"}, "NOTIFY_SOCKET"),
    ({"NOTIFY_SOCKET": "/" + "x" * 200}, "NOTIFY_SOCKET"),
    ({"NOTIFY_SOCKET": "@pb-test", "WATCHDOG_USEC": "soon"}, "WATCHDOG_USEC"),
])
def test_deploy_notify_bad_environment_is_named(bridge_factory, env, needle):
    b = bridge_factory(env=env, wait_ready=False, create_topic=False)
    rc = b.wait_exit(timeout=20)
    b.expected_exit = True
    assert rc == 1, b.log_tail()
    assert needle in b.log_text(), b.log_tail()
