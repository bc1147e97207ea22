"""The internal listener's own HTTP/1.1 server (issue 9 item 3; SPEC §3):
keep-alive for sequential requests, HTTP/1.0 keep-alive on request,
100-continue, parameter splitting before decoding in /send, and the
connection bound. Pipelining and framing attacks are in
test_24_hostile_catalogue."""
import http.client
import json
import socket

import pytest

from pbutil import unique_uid, wait_until


@pytest.fixture
def shared(module_bridge_factory):
    return module_bridge_factory.shared()


def _read_all(sock):
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def _conn(b):
    return http.client.HTTPConnection("127.0.0.1", b.internal_port, timeout=10)


def test_sequential_pushes_share_one_connection(shared):
    uid = unique_uid()
    c = shared.uid_client(uid)
    conn = _conn(shared)
    conn.connect()
    local = conn.sock.getsockname()
    for i in range(50):
        body = json.dumps({"user_id": uid, "data": f"k{i}"})
        conn.request("POST", "/push", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert (r.status, json.loads(r.read())) == (200, {"delivered": 1})
        assert r.getheader("Connection") is None
        assert conn.sock is not None and conn.sock.getsockname() == local, "reconnected"
    assert [c.recv_text() for _ in range(50)] == [f"k{i}" for i in range(50)]
    conn.close()


def test_connection_close_is_honoured(shared):
    conn = _conn(shared)
    conn.request("GET", "/healthz", headers={"Connection": "close"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Connection") == "close"
    r.read()
    assert conn.sock is None or conn.sock.recv(1) == b""


def test_http10_keep_alive_on_request(shared):
    s = socket.create_connection(("127.0.0.1", shared.internal_port), timeout=5)
    for _ in range(3):
        s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"connection: keep-alive" in head.lower(), head
        body_len = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        rest = head.split(b"\r\n\r\n", 1)[1]
        while len(rest) < body_len:
            rest += s.recv(4096)
    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")  # no keep-alive: closed after
    data = _read_all(s)
    assert data.startswith(b"HTTP/1.1 200") and b"connection: close" in data.lower()
    s.close()


def test_expect_100_continue(shared):
    uid = unique_uid()
    c = shared.uid_client(uid)
    body = json.dumps({"user_id": uid, "data": "after-100"}).encode()
    s = socket.create_connection(("127.0.0.1", shared.internal_port), timeout=5)
    s.sendall(b"POST /push HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    interim = s.recv(4096)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim
    s.sendall(body)
    answer = b""
    while not answer.endswith(b"}"):
        answer += s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"delivered":1}')
    assert c.recv_text() == "after-100"
    s.close()


def test_unknown_expectation_is_417(shared):
    s = socket.create_connection(("127.0.0.1", shared.internal_port), timeout=5)
    s.sendall(b"POST /push HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n{}")
    answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 417"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "expectation_failed"
    s.close()


def test_send_splits_the_query_before_decoding(shared):
    """An escaped & or = in a value stays in the value: no parameter can be
    smuggled in through message (issue 14 item 3)."""
    alice, bob = unique_uid(), unique_uid()
    ca, cb = shared.uid_client(alice), shared.uid_client(bob)
    st, doc = shared.json("GET", f"/send?message=hi%26uid%3D{bob}&uid={alice}")[:2]
    assert (st, doc) == (200, {"delivered": 1})
    assert ca.recv_text() == f"hi&uid={bob}"
    cb.no_message(0.3)
    st, doc = shared.json("GET", f"/send?uid={alice}&message=Tom%20%26%20Jerry")[:2]
    assert (st, doc) == (200, {"delivered": 1})
    assert ca.recv_text() == "Tom & Jerry"


def test_connections_over_push_max_connections_get_503(bridge_factory):
    """The harness's own probes may still hold a slot when the test starts,
    so connections are opened until one is refused: it must happen by the
    third, with a 503 JSON answer sent at once."""
    b = bridge_factory(config={"push": {"max_connections": 2}})
    held, refused = [], None
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", b.internal_port), timeout=5)
        s.settimeout(0.5)  # a refused connection is answered without a request
        try:
            refused = _read_all(s)
            s.close()
            break
        except socket.timeout:
            s.settimeout(5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):
            answer += s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        held.append(s)
    assert refused is not None, f"{len(held)} connections held, none refused"
    assert refused.startswith(b"HTTP/1.1 503"), refused
    assert json.loads(refused.split(b"\r\n\r\n", 1)[1])["error"] == "not_ready"
    assert 1 <= len(held) <= 2
    held[0].close()

    def healthz_answers():
        # The freed slot is taken again once the bridge has seen the close;
        # until then a new connection is answered 503 and closed.
        try:
            st = b.http("GET", "/healthz", timeout=2)[0]
        except (ConnectionError, http.client.HTTPException, OSError):
            return False
        return st == 200
    wait_until(healthz_answers, timeout=10, desc="a connection slot freed by a close")
    for s in held[1:]:
        s.close()


def test_head_gets_the_head_alone_and_the_connection_goes_on(shared):
    s = socket.create_connection(("127.0.0.1", shared.internal_port), timeout=5)
    s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
        data += s.recv(4096)
    first, second = data.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"405") and first.endswith(b"\r\n\r\n"), first  # no body
    assert second.startswith(b"200") and second.endswith(b'{"status":"ok"}'), second
    s.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_oversized_push_is_413_and_counted(bridge_factory, framing):
    b = bridge_factory(config={"push": {"max_body_bytes": 1024}})
    body = json.dumps({"user_id": "u", "data": "x" * 2000}).encode()
    if framing == "chunked":
        head = b"POST /push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        data = head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        data = (b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body)
    s = socket.create_connection(("127.0.0.1", b.internal_port), timeout=5)
    s.sendall(data)
    answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "payload_too_large"
    assert b.metric("pushbridge_push_requests_total", status="413") == 1
