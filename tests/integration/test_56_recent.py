"""Recent notifications (SPEC §9, issue 21): a native login with "recent": N
(SSE: recent=N) gets, after the welcome and the task snapshot, up to N of
the user's latest history events that carry no task (its own and the
broadcasts), oldest first, each with "recent": true and no pos, then live
events. The login's event filter applies; a resumed login gets none (it has
them); a bad N is refused with a clear error. Raw WebSocket and raw SSE
against the real bridge and the real broker."""

import json
import urllib.parse

import pytest

from jwtutil import claims, hs256
from pbutil import unique_uid
from test_48_sse import SSE


def note(text, event="order.new"):
    return json.dumps({"event": event, "data": {"message": text}})


def progress(task, pct):
    return json.dumps({"event": "task.progress", "task": task, "data": {"progress": pct}})


@pytest.fixture
def shared(module_bridge_factory):
    return module_bridge_factory.shared()


def seed(bridge, kafka, uid, token=None):
    """Five notifications and a task for uid, one for someone else. A client
    of uid reads its six live: then the bridge has kept them (it records an
    event before it delivers it)."""
    watcher, _ = bridge.native_client(token or uid)
    kafka.produce_many(bridge.topic, [
        (uid, note("n1")), (uid, progress("build", 40)), (uid, note("n2")),
        (unique_uid(), note("not yours")), (uid, note("s3", event="status")),
        (uid, note("n4")), (uid, note("n5"))])
    got = [watcher.recv_json(10) for _ in range(6)]
    assert got[-1]["data"]["message"] == "n5"
    watcher.close()


def login(bridge, uid, **extra):
    c = bridge.ws()
    c.send_json({"type": "auth", "token": uid, **extra})
    return c


def test_ws_recent_after_the_snapshot_oldest_first_then_live(shared, kafka):
    uid = unique_uid()
    seed(shared, kafka, uid)
    c = login(shared, uid, recent=3)
    w = c.recv_json(10)
    assert w["type"] == "welcome" and "resumed" not in w
    snap = c.recv_json(10)
    assert snap["task"] == "build" and snap["snapshot"] is True and "recent" not in snap
    recent = [c.recv_json(10) for _ in range(3)]
    assert [m["data"]["message"] for m in recent] == ["s3", "n4", "n5"]
    assert all(m["recent"] is True and "pos" not in m and "snapshot" not in m for m in recent)
    c.no_message(0.3)
    kafka.produce(shared.topic, note("live"), key=uid)
    live = c.recv_json(10)
    assert live["data"]["message"] == "live" and "recent" not in live and live["pos"]


def test_ws_recent_respects_the_filter_and_the_count(shared, kafka):
    uid = unique_uid()
    seed(shared, kafka, uid)
    # More asked than kept: all of them; the filter leaves out "status".
    c = login(shared, uid, recent=100, events=["order.new"])
    assert c.recv_json(10)["type"] == "welcome"
    got = [c.recv_json(10)["data"]["message"] for _ in range(4)]
    assert got == ["n1", "n2", "n4", "n5"]
    c.no_message(0.3)
    # Without "recent" (or 0): the snapshot alone, as before.
    c0 = login(shared, uid, recent=0)
    assert c0.recv_json(10)["type"] == "welcome"
    assert c0.recv_json(10)["snapshot"] is True
    c0.no_message(0.3)


def test_ws_resumed_login_gets_no_recent(shared, kafka):
    uid = unique_uid()
    seed(shared, kafka, uid)
    c = login(shared, uid, recent=5)
    w = c.recv_json(10)
    c.close()
    kafka.produce(shared.topic, note("missed"), key=uid)
    c2 = login(shared, uid, recent=5, resume=w["pos"])
    w2 = c2.recv_json(10)
    assert w2["resumed"] is True
    m = c2.recv_json(10)
    assert m["data"]["message"] == "missed" and "recent" not in m
    c2.no_message(0.3)


@pytest.mark.parametrize("bad", [101, -1, 2.5, "3"])
def test_ws_bad_recent_is_refused(shared, bad):
    c = login(shared, unique_uid(), recent=bad)
    err = c.recv_json(10)
    assert err["type"] == "error" and err["code"] == "bad_recent"
    assert "0 to 100" in err["message"]
    assert c.expect_close(5)[0] == 4003


@pytest.mark.parametrize("pad", [0, 240])
def test_sse_recent(shared, kafka, pad):
    # pad: a long user (the token in none mode) before recent= in the query.
    uid = unique_uid() + "x" * pad
    seed(shared, kafka, uid)
    s = SSE(shared.public_port, f"?token={uid}&recent=2")
    assert s.status == 200
    assert s.message()[1]["type"] == "welcome"
    assert s.message()[1]["snapshot"] is True
    recent = [s.message() for _ in range(2)]
    assert [(mid, f["data"]["message"], f["recent"]) for mid, f in recent] == \
        [(None, "n4", True), (None, "n5", True)]
    kafka.produce(shared.topic, note("live"), key=uid)
    mid, f = s.message()
    assert f["data"]["message"] == "live" and mid == f["pos"]
    s.close()


@pytest.mark.parametrize("bad", ["abc", "101", "-1", "", "1000000"])
def test_sse_bad_recent_is_a_400(shared, bad):
    s = SSE(shared.public_port, f"?token={unique_uid()}&recent={bad}")
    body = s.body()
    assert s.status == 400 and body["error"] == "bad_recent", body


SECRET = "pushbridge-test-secret-0123456789abcdef"


def test_sse_query_after_a_long_token(bridge_factory, kafka):
    """A JWT of 2.6 KiB (40 long groups) before events=, resume= and recent=
    in the query (the whole request line fits lws's 4 KiB of headers): each
    still applies (lws reads the arguments through one buffer and gave up at
    the first that did not fit it)."""
    b = bridge_factory(config={"auth": {"mode": "jwt", "jwt_secret": SECRET},
                               "ws": {"max_message_bytes": 16384}})
    uid = unique_uid()
    token = hs256(claims(uid, lifetime=300, groups=[f"group-{i:02d}-" + "g" * 36 for i in range(40)]), SECRET)
    assert 2100 < len(token) < 3000
    seed(b, kafka, uid, token=token)
    s = SSE(b.public_port, f"?token={token}&events=order.new&recent=2")
    assert s.status == 200
    assert s.message()[1]["type"] == "welcome"
    got = [s.message()[1]["data"]["message"] for _ in range(2)]
    assert got == ["n4", "n5"], "recent and the events filter both applied"
    kafka.produce_many(b.topic, [(uid, note("hidden", event="status")), (uid, note("shown"))])
    last_id, f = s.message()
    assert f["data"]["message"] == "shown", "filtered"
    s.close()
    kafka.produce(b.topic, note("missed"), key=uid)
    s2 = SSE(b.public_port, f"?token={token}&resume={urllib.parse.quote(last_id)}")
    _, w = s2.message()
    assert w["resumed"] is True, "resume= after the long token applied"
    assert s2.message()[1]["data"]["message"] == "missed"
    # An events= over its 2 KiB bound is refused, not ignored.
    short = hs256(claims(uid, lifetime=300), SECRET)
    s3 = SSE(b.public_port, f"?token={short}&events={'e' * 2100}")
    assert s3.status == 400 and s3.body()["error"] == "bad_events"
