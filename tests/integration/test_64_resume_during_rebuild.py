"""A client that resumes on a bridge still rebuilding its history (SPEC §7,
§8: "killing one loses nothing for clients that reconnect to another"): the
public listener is up before the rebuild at start has read the lookback, so
a client sent there at once (a rolling restart behind a balancer that does
not wait for /readyz; tests/soak/rolling.py --balancer blind found it) used
to be answered "resumed": false and lost what it had missed. Now its login
is held until the rebuild is done, then resumed exactly; the wait is
bounded (half of ws.auth_timeout_ms), after which it is answered as before.
The rebuild is kept from finishing by stopping the broker."""

import json
import signal
import socket
import time
import urllib.parse

from pbutil import unique_uid, wait_until


def event(n):
    return json.dumps({"event": "tick", "data": {"n": n}})


def pos_after_three_events(bridge_factory, kafka):
    """A bridge, a user, three events received; the pos of the third, and
    two more events the client then misses."""
    a = bridge_factory()
    uid = unique_uid()
    c, _ = a.native_client(uid)
    kafka.produce_many(a.topic, [(uid, event(n)) for n in range(3)])
    got = [c.recv_json(10) for _ in range(3)]
    assert [m["data"]["n"] for m in got] == [0, 1, 2]
    c.close()
    kafka.produce_many(a.topic, [(uid, event(n)) for n in (3, 4)])
    wait_until(lambda: (a.metric("pushbridge_events_consumed_total", topic=a.topic) or 0) >= 5,
               desc="the bridge read all five")
    return a, uid, got[-1]["pos"]


def rebuilding_bridge(bridge_factory, kafka, a, auth_timeout_ms, **ws):
    """A second bridge (its own group) started while the broker is down: it
    listens, but its rebuild cannot finish."""
    kafka.stop()
    b = bridge_factory(config={"ws": {"auth_timeout_ms": auth_timeout_ms, **ws}}, topic=a.topic,
                       create_topic=False, wait_ready=False)
    b.wait_healthy()
    st, _, body = b.http("GET", "/readyz")
    assert st == 503 and b"rebuilding" in body, (st, body)
    return b


def progress(p):
    return json.dumps({"event": "task.progress", "task": "job", "data": {"p": p}})


def test_a_fresh_login_during_the_rebuild_gets_the_task_updates_it_reads(
        bridge_factory, kafka):
    """A login without resume is answered at once, with the snapshot as it
    stands: empty here, the rebuild has read nothing. The updates the
    rebuild reads afterwards are skipped by the live consumer as read, so
    its progress view used to stay empty (or stale) until the task's next
    live event; now they reach it as snapshot frames, up to the latest."""
    a = bridge_factory()
    uid = unique_uid()
    kafka.produce_many(a.topic, [(uid, progress(p)) for p in (10, 20, 30)])
    wait_until(lambda: (a.metric("pushbridge_events_consumed_total", topic=a.topic) or 0) >= 3,
               desc="the first bridge read the three")
    b = rebuilding_bridge(bridge_factory, kafka, a, 60000)
    c, welcome = b.native_client(uid)
    assert welcome.get("resumed") is None, welcome
    c.no_message(0.5)  # nothing read yet: an empty snapshot
    kafka.start()
    # Snapshot frames of job, in order, up to its latest: one still queued
    # gives way to the next, so how many of the three arrive depends on how
    # fast this client reads; the last is p 30.
    got = [c.recv_json(40)]
    while got[-1]["data"]["p"] != 30:
        got.append(c.recv_json(10))
    assert all(m["task"] == "job" and m.get("snapshot") is True for m in got), got
    ps = [m["data"]["p"] for m in got]
    assert ps == sorted(set(ps)) and set(ps) <= {10, 20, 30}, ps
    b.wait_ready()
    kafka.produce(a.topic, progress(40), key=uid)
    live = c.recv_json(20)
    assert live["data"]["p"] == 40 and "snapshot" not in live, live
    c.no_message(0.3)


def test_a_long_job_read_by_the_rebuild_does_not_overflow_the_queue(bridge_factory, kafka):
    """The rebuild reads ten minutes of updates at the broker's speed, 512 a
    turn of the loop. Sent one frame each, a job's 2,000 updates filled a
    16-message queue and the client was closed as slow (4009); queued
    snapshot frames of a task now give way to its next, so it gets the job's
    latest progress and stays."""
    a = bridge_factory()
    uid = unique_uid()
    kafka.produce_many(a.topic, [(uid, progress(p)) for p in range(2000)])
    wait_until(lambda: (a.metric("pushbridge_events_consumed_total", topic=a.topic) or 0) >= 2000,
               desc="the first bridge read the 2,000")
    b = rebuilding_bridge(bridge_factory, kafka, a, 60000, queue_max_messages=16)
    c, _ = b.native_client(uid)
    kafka.start()
    got = [c.recv_json(40)]
    while got[-1]["data"]["p"] != 1999:
        got.append(c.recv_json(10))
    ps = [m["data"]["p"] for m in got]
    assert ps == sorted(set(ps)) and all(m.get("snapshot") is True for m in got), ps[:20]
    b.wait_ready()
    assert (b.metric("pushbridge_slow_client_closes_total") or 0) == 0
    assert b.metric("pushbridge_coalesced_total") > 0
    kafka.produce(a.topic, progress(2000), key=uid)
    assert c.recv_json(20)["data"]["p"] == 2000


def test_a_resume_during_the_rebuild_waits_for_it_then_gets_what_was_missed(
        bridge_factory, kafka):
    a, uid, pos = pos_after_three_events(bridge_factory, kafka)
    b = rebuilding_bridge(bridge_factory, kafka, a, 60000)
    r = b.ws()
    r.send_json({"type": "auth", "token": uid, "resume": pos})
    r.no_message(1.0)  # held: no welcome while the history is incomplete
    kafka.start()
    welcome = r.recv_json(40)
    assert welcome["type"] == "welcome" and welcome["resumed"] is True, welcome
    missed = [r.recv_json(10) for _ in range(2)]
    assert [m["data"]["n"] for m in missed] == [3, 4]
    b.wait_log(r"1 resuming login\(s\) held during the rebuild")
    b.wait_ready()
    # The group consumer reads the five from the start: none is sent again.
    kafka.produce(a.topic, event(5), key=uid)
    assert r.recv_json(20)["data"]["n"] == 5
    r.no_message(0.3)


def test_the_wait_is_bounded_by_half_the_auth_timeout(bridge_factory, kafka):
    a, uid, pos = pos_after_three_events(bridge_factory, kafka)
    b = rebuilding_bridge(bridge_factory, kafka, a, 4000)
    r = b.ws()
    r.send_json({"type": "auth", "token": uid, "resume": pos})
    # 2 s, on the next second's tick: answered before the 4 s auth timeout,
    # as a resume the bridge cannot cover.
    welcome = r.recv_json(3.5)
    assert welcome["type"] == "welcome" and welcome["resumed"] is False, welcome
    r.no_message(0.1)
    kafka.start()


def test_a_login_sent_late_is_answered_not_closed_by_its_auth_timer(bridge_factory, kafka):
    """The auth timer runs from the upgrade, the wait from the login: a
    client that logged in 1.6 s into a 3 s auth timeout was closed with 4001
    while held (a 1.5 s wait, then the tick). Its timer starts again when
    its login is taken."""
    a, uid, pos = pos_after_three_events(bridge_factory, kafka)
    b = rebuilding_bridge(bridge_factory, kafka, a, 3000)
    r = b.ws()
    time.sleep(1.6)  # the client's own delay is the case under test
    r.send_json({"type": "auth", "token": uid, "resume": pos})
    welcome = r.recv_json(4.0)
    assert welcome["type"] == "welcome" and welcome["resumed"] is False, welcome


def test_held_logins_do_not_count_as_pending(bridge_factory, kafka):
    """ws.max_pending_per_ip bounds sockets that have not authenticated. A
    held login has: behind a balancer (one address) a rolling restart's
    resumes, held during the rebuild, used to fill it, and the next clients
    were closed at accept."""
    a, uid, pos = pos_after_three_events(bridge_factory, kafka)
    b = rebuilding_bridge(bridge_factory, kafka, a, 60000, max_pending_per_ip=2)
    held = [b.ws() for _ in range(2)]
    for r in held:
        r.send_json({"type": "auth", "token": uid, "resume": pos})
    b.wait_metric("pushbridge_pending_connections", 0)
    third = b.ws()  # was closed at accept: 2 pending from 127.0.0.1
    third.send_json({"type": "auth", "token": uid, "resume": pos})
    b.wait_metric("pushbridge_pending_connections", 0)
    assert (b.metric("pushbridge_accept_refused_total", reason="per_ip") or 0) == 0
    for r in held + [third]:
        r.no_message(0.2)  # still held
    kafka.start()
    for r in held + [third]:
        welcome = r.recv_json(40)
        assert welcome["type"] == "welcome" and welcome["resumed"] is True, welcome
        assert [r.recv_json(10)["data"]["n"] for _ in range(2)] == [3, 4]


def test_a_held_sse_login_is_answered_at_shutdown(bridge_factory, kafka):
    """An SSE request whose resume is held has no response yet; closed by
    SIGTERM meanwhile, it gets the shutdown's 503, as a request that comes
    during the shutdown does, not 3 s of silence and a dropped socket."""
    a, uid, pos = pos_after_three_events(bridge_factory, kafka)
    b = rebuilding_bridge(bridge_factory, kafka, a, 60000)
    s = socket.create_connection(("127.0.0.1", b.public_port), timeout=10)
    q = urllib.parse.quote(pos)
    s.sendall(f"GET /sse?token={uid}&resume={q} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    b.wait_metric("pushbridge_pending_connections", 0)  # authenticated, held
    b.proc.send_signal(signal.SIGTERM)
    s.settimeout(2.0)  # under the 3 s after which the socket used to be dropped
    got = b""
    while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
        chunk = s.recv(4096)
        assert chunk, f"closed without an answer: {got!r}"
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), head
    assert json.loads(body)["error"] == "not_ready", body
    b.stop()
