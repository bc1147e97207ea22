"""GET /sse (SPEC §9, issue 12 item 2): Server-Sent Events with the native
login, from a raw HTTP client. Login by query or Authorization header;
each message is `id: <pos>` + `data: <the native frame>`; the task snapshot
after login; Last-Event-ID (or resume=) resumes exactly; refusals are an
HTTP status with a JSON error before any stream; an SSE stream counts like a
WebSocket (per-user limit, /users/{id}, slow-client close with its close
message); keep-alive comments at ws.ping_interval_ms."""

import json
import socket
import time
import urllib.parse

import pytest

from pbutil import unique_uid, wait_until


def progress(task, pct):
    return json.dumps({"event": "task.progress", "task": task, "data": {"progress": pct}})


class SSE:
    """A raw SSE client: the request, the head, then messages."""

    def __init__(self, port, query="", headers=None, rcvbuf=None, timeout=10.0):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        lines = [f"GET /sse{query} HTTP/1.1", "Host: 127.0.0.1", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in
                        (l.split(":", 1) for l in lines[1:] if ":" in l)}
        self.comments = 0

    def body(self):
        """The whole body of a refusal (Content-Length framed)."""
        n = int(self.headers.get("content-length", "0"))
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        return json.loads(self.buf[:n])

    def message(self, timeout=10.0):
        """The next message as (id or None, parsed data); comments counted."""
        self.sock.settimeout(timeout)
        while True:
            while b"\n\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("stream ended")
                self.buf += chunk
            block, _, self.buf = self.buf.partition(b"\n\n")
            mid, data = None, []
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    self.comments += 1
                elif line.startswith("id: "):
                    mid = line[4:]
                elif line.startswith("data: "):
                    data.append(line[6:])
            if data:
                return mid, json.loads("\n".join(data))

    def close(self):
        self.sock.close()


@pytest.fixture
def shared(module_bridge_factory):
    return module_bridge_factory.shared()


def test_login_by_query_welcome_then_events_with_pos_as_id(shared, kafka):
    uid = unique_uid()
    s = SSE(shared.public_port, f"?token={uid}&events=task.progress")
    assert s.status == 200
    assert s.headers["content-type"].startswith("text/event-stream")
    assert s.headers["cache-control"] == "no-store"
    mid, w = s.message()
    assert w["type"] == "welcome" and w["user"] == uid and mid == w["pos"]
    shared.wait_user_connections(uid, 1)
    kafka.produce_many(shared.topic, [(uid, json.dumps({"event": "other", "data": 1})),
                                      (uid, progress("a", 10))])
    mid, f = s.message()
    assert f["event"] == "task.progress" and f["data"] == {"progress": 10}, "filter applied"
    assert mid == f["pos"]
    s.close()
    wait_until(lambda: shared.user_connections(uid) == 0, desc="disconnect seen")


def test_login_by_authorization_header_and_snapshot_without_id(shared, kafka):
    uid = unique_uid()
    kafka.produce_many(shared.topic, [(uid, progress("a", 20)), (uid, progress("b", 40))])
    wait_until(lambda: len(shared.json("GET", f"/users/{uid}/tasks")[1]["tasks"]) == 2,
               desc="tasks kept")
    s = SSE(shared.public_port, headers={"Authorization": f"Bearer {uid}"})
    assert s.status == 200
    _, w = s.message()
    assert w["type"] == "welcome" and "resumed" not in w
    snap = [s.message() for _ in range(2)]
    assert [(mid, f["task"], f["snapshot"]) for mid, f in snap] == [(None, "a", True),
                                                                   (None, "b", True)]


def test_last_event_id_resumes_exactly(shared, kafka):
    uid = unique_uid()
    s = SSE(shared.public_port, f"?token={uid}")
    s.message()
    kafka.produce_many(shared.topic, [(uid, progress("r", p)) for p in (1, 2)])
    last_id, _ = s.message()
    s.message()
    s.close()
    wait_until(lambda: shared.user_connections(uid) == 0, desc="disconnect seen")
    kafka.produce(shared.topic, progress("r", 3), key=uid)
    s2 = SSE(shared.public_port, f"?token={uid}", headers={"Last-Event-ID": last_id})
    _, w = s2.message()
    assert w["resumed"] is True
    got = [s2.message()[1]["data"]["progress"] for _ in range(2)]
    assert got == [2, 3], "exactly what was missed, in order"
    # resume= in the query does the same (a client that cannot set headers).
    s3 = SSE(shared.public_port, f"?token={uid}&resume={urllib.parse.quote(last_id)}")
    assert s3.message()[1]["resumed"] is True


def test_refusals_are_json_before_the_stream(module_bridge_factory):
    b = module_bridge_factory.shared(config={
        "auth": {"mode": "jwt", "jwt_secret": "pushbridge-test-secret-0123456789abcdef"}})
    s = SSE(b.public_port)
    assert s.status == 401 and s.body()["error"] == "missing_token"
    s = SSE(b.public_port, "?token=not.a.jwt")
    body = s.body()
    assert s.status == 401 and body["error"] and body["message"], body
    assert s.headers["content-type"] == "application/json"


def test_per_user_limit_counts_sse_and_ws_together(bridge_factory):
    b = bridge_factory(config={"ws": {"max_connections_per_user": 2}})
    uid = unique_uid()
    c, _ = b.native_client(uid)
    s = SSE(b.public_port, f"?token={uid}")
    assert s.status == 200
    s.message()
    s2 = SSE(b.public_port, f"?token={uid}")
    assert s2.status == 429 and s2.body()["error"] == "too_many_connections"
    assert b.user_connections(uid) == 2


def test_slow_sse_client_is_closed_and_counted(bridge_factory):
    b = bridge_factory(config={"ws": {"queue_max_messages": 50, "send_buffer_bytes": 4096,
                                      "slow_client_grace_ms": 200}})
    uid = unique_uid()
    s = SSE(b.public_port, f"?token={uid}", rcvbuf=4096)
    assert s.status == 200
    before = b.stats()["slow_client_closes"]
    big = "x" * 1000
    for _ in range(120):  # never read: the kernel buffers fill, then the queue
        b.push(uid, {"pad": big})
    wait_until(lambda: b.stats()["slow_client_closes"] > before, timeout=15,
               desc="slow-client close counted")
    wait_until(lambda: b.user_connections(uid) == 0, timeout=10,
               desc="the stream dropped")


def test_keepalive_comments(bridge_factory):
    b = bridge_factory(config={"ws": {"ping_interval_ms": 1000, "idle_timeout_ms": 3000}})
    uid = unique_uid()
    s = SSE(b.public_port, f"?token={uid}")
    s.message()
    time.sleep(4.5)  # past idle_timeout: a stream taking its comments is not cut
    b.push(uid, "still here")
    _, f = s.message()
    assert f["data"] == "still here"
    assert s.comments >= 2


def test_shutdown_sends_a_close_message(bridge_factory):
    b = bridge_factory()
    uid = unique_uid()
    s = SSE(b.public_port, f"?token={uid}")
    s.message()
    b.stop()
    _, f = s.message()
    assert f == {"type": "close", "code": 1001, "reason": "server shutting down"}
