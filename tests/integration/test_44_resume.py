"""Positions and resume (SPEC §7): every native event carries "pos"; a login
with "resume" gets exactly the events missed, in order, none twice, with
"resumed": true, or "resumed": false (and the task snapshot) when the
history cannot cover the gap; a malformed or foreign resume costs nothing
but the replay. Across two real bridges the same pos resumes the same way."""

import json

import pytest

from pbutil import unique_uid, wait_until


def ev(seq, **extra):
    env = {"event": "note", "data": {"seq": seq}}
    env.update(extra)
    return json.dumps(env)


@pytest.fixture
def shared(module_bridge_factory):
    return module_bridge_factory.shared()


def resume_login(bridge, uid, pos, events=None):
    c = bridge.ws()
    msg = {"type": "auth", "token": uid, "resume": pos}
    if events is not None:
        msg["events"] = events
    c.send_json(msg)
    welcome = c.recv_json(10)
    assert welcome["type"] == "welcome", welcome
    return c, welcome


def last_pos(bridge, kafka, uid):
    """A client that sees one event and leaves: the pos it would resume from."""
    c, _ = bridge.native_client(uid)
    kafka.produce(bridge.topic, ev(0), key=uid)
    m = c.recv_json(10)
    assert m["data"] == {"seq": 0} and isinstance(m["pos"], str)
    c.close()
    bridge.wait_user_connections(uid, 0)
    return m["pos"]


def wait_consumed(bridge, n):
    wait_until(lambda: (bridge.metric("pushbridge_events_consumed_total",
                                      topic=bridge.topic) or 0) >= n,
               timeout=30, desc=f"{n} events consumed")


def test_resume_after_200_missed_gets_exactly_those_in_order(shared, kafka):
    uid = unique_uid()
    pos = last_pos(shared, kafka, uid)
    before = shared.metric("pushbridge_events_consumed_total", topic=shared.topic)
    kafka.produce_many(shared.topic, [(uid, ev(i)) for i in range(1, 201)])
    wait_consumed(shared, before + 200)

    c, welcome = resume_login(shared, uid, pos)
    assert welcome["resumed"] is True and welcome["pos"]
    got = [c.recv_json(10) for _ in range(200)]
    assert [m["data"]["seq"] for m in got] == list(range(1, 201))
    assert not any(m.get("snapshot") for m in got)
    c.no_message(0.5)                      # nothing twice, no snapshot
    kafka.produce(shared.topic, ev(201), key=uid)
    assert c.recv_json(10)["data"] == {"seq": 201}

    # The last replayed pos resumes from there too: nothing more to get.
    c.close()
    c2, w2 = resume_login(shared, uid, got[-1]["pos"])
    assert w2["resumed"] is True
    assert c2.recv_json(10)["data"] == {"seq": 201}
    c2.no_message(0.3)


def test_resume_from_the_welcome_pos_with_nothing_missed(shared, kafka):
    uid = unique_uid()
    c, welcome = shared.native_client(uid)
    c.close()
    c2, w2 = resume_login(shared, uid, welcome["pos"])
    assert w2["resumed"] is True
    c2.no_message(0.3)


def test_missed_broadcasts_are_replayed_in_order(shared, kafka):
    uid = unique_uid()
    pos = last_pos(shared, kafka, uid)
    before = shared.metric("pushbridge_events_consumed_total", topic=shared.topic)
    kafka.produce_many(shared.topic, [(uid, ev(1)), ("*", ev(2)), (uid, ev(3)),
                                      ("group:nobody-" + uid, ev(99))])
    wait_consumed(shared, before + 4)
    c, welcome = resume_login(shared, uid, pos)
    assert welcome["resumed"] is True
    assert [c.recv_json(10)["data"]["seq"] for _ in range(3)] == [1, 2, 3]
    c.no_message(0.3)                      # not the other group's broadcast


def test_resume_honours_the_event_filter(shared, kafka):
    uid = unique_uid()
    pos = last_pos(shared, kafka, uid)
    before = shared.metric("pushbridge_events_consumed_total", topic=shared.topic)
    kafka.produce_many(shared.topic, [(uid, ev(1)), (uid, ev(2, event="wanted")), (uid, ev(3))])
    wait_consumed(shared, before + 3)
    c, welcome = resume_login(shared, uid, pos, events=["wanted"])
    assert welcome["resumed"] is True
    assert c.recv_json(10)["data"] == {"seq": 2}
    c.no_message(0.3)


@pytest.mark.parametrize("pos", [
    "garbage", "", "1.", "1.x", "2.123", "1.123.zzzzzzzz-0~5", "1.123.abc~notanumber",
    "1.99999999999999999999999", "h" * 3000, 42, None, ["1.2"], {"a": 1},
], ids=["garbage", "empty", "no_time", "bad_time", "version", "unknown_stream",
        "bad_offset", "huge_number", "long", "number", "null", "array", "object"])
def test_malformed_or_foreign_resume_is_not_resumed_and_costs_nothing_else(shared, kafka, pos):
    uid = unique_uid()
    kafka.produce(shared.topic, json.dumps({"task": "job", "data": {"progress": 3}}), key=uid)
    wait_until(lambda: shared.json("GET", f"/users/{uid}/tasks")[1]["tasks"])
    before = shared.metric("pushbridge_resumes_total", resumed="false")
    c, welcome = resume_login(shared, uid, pos)
    assert welcome["resumed"] is False
    snap = c.recv_json(10)                 # the snapshot still arrives
    assert (snap["task"], snap["snapshot"]) == ("job", True)
    kafka.produce(shared.topic, ev(7), key=uid)
    assert c.recv_json(10)["data"] == {"seq": 7}
    assert shared.metric("pushbridge_resumes_total", resumed="false") == before + 1
    shared.assert_alive()


def test_resume_past_what_the_history_holds_is_not_resumed(bridge_factory, kafka):
    b = bridge_factory(config={"history": {"max_events": 50}})
    uid = unique_uid()
    pos = last_pos(b, kafka, uid)
    kafka.produce_many(b.topic, [(uid, ev(i, task="job")) for i in range(1, 81)])
    wait_consumed(b, 81)
    assert b.metric("pushbridge_history_evictions_total", reason="max_events") >= 31
    c, welcome = resume_login(b, uid, pos)
    assert welcome["resumed"] is False
    snap = c.recv_json(10)                 # the client reloads from the snapshot
    assert (snap["task"], snap["data"], snap["snapshot"]) == ("job", {"seq": 80}, True)
    c.no_message(0.3)
    assert b.metric("pushbridge_resumes_total", resumed="false") == 1


def test_a_replay_larger_than_the_queue_is_not_resumed(bridge_factory, kafka):
    # The history holds the 80 missed events, but a queue of 50 could not
    # take them whole: the client reloads instead of losing the middle.
    b = bridge_factory(config={"ws": {"queue_max_messages": 50}})
    uid = unique_uid()
    pos = last_pos(b, kafka, uid)
    kafka.produce_many(b.topic, [(uid, ev(i, task="job")) for i in range(1, 81)])
    wait_consumed(b, 81)
    c, welcome = resume_login(b, uid, pos)
    assert welcome["resumed"] is False
    snap = c.recv_json(10)
    assert (snap["task"], snap["data"], snap["snapshot"]) == ("job", {"seq": 80}, True)
    c.no_message(0.3)


def test_resume_older_than_history_ttl_is_not_resumed(bridge_factory, kafka):
    b = bridge_factory(config={"history": {"ttl_ms": 1000}})
    uid = unique_uid()
    pos = last_pos(b, kafka, uid)
    kafka.produce(b.topic, ev(1), key=uid)
    wait_consumed(b, 2)
    # The once-a-second sweep drops what is older than history.ttl_ms.
    wait_until(lambda: b.metric("pushbridge_history_evictions_total", reason="ttl") >= 2,
               timeout=10, desc="the history expired")
    c, welcome = resume_login(b, uid, pos)
    assert welcome["resumed"] is False
    c.no_message(0.3)


def test_local_http_pushes_resume_on_the_same_bridge(shared):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    shared.push(uid, {"n": 0})
    pos = c.recv_json(10)["pos"]
    c.close()
    shared.wait_user_connections(uid, 0)
    for n in (1, 2):
        shared.push(uid, {"n": n})
    c2, welcome = resume_login(shared, uid, pos)
    assert welcome["resumed"] is True
    assert [c2.recv_json(10)["data"] for _ in range(2)] == [{"n": 1}, {"n": 2}]
    c2.no_message(0.3)


def test_pos_from_one_bridge_resumes_on_another(bridge_factory, kafka):
    """Two real bridges, each reading every partition (own consumer group):
    a client moves from one to the other and misses nothing, gets nothing
    twice, though the topic has 3 partitions and broadcasts interleave."""
    a = bridge_factory(partitions=3)
    b = bridge_factory(topic=a.topic, create_topic=False)
    uid = unique_uid()
    c, _ = a.native_client(uid)
    kafka.produce_many(a.topic, [(uid, ev(0)), ("*", ev(1))])
    first = [c.recv_json(10) for _ in range(2)]   # two partitions: either order
    assert sorted(m["data"]["seq"] for m in first) == [0, 1]
    c.close()
    batch = []
    for i in range(2, 32):
        batch.append((uid, ev(i)) if i % 3 else ("*", ev(i)))
    kafka.produce_many(a.topic, batch)
    wait_consumed(b, 32)
    c2, welcome = resume_login(b, uid, first[-1]["pos"])
    assert welcome["resumed"] is True
    got = [c2.recv_json(10)["data"]["seq"] for _ in range(30)]
    # Per target (user, broadcast) in produce order; across them, in b's order.
    assert sorted(got) == list(range(2, 32))
    assert [s for s in got if s % 3] == [s for s in range(2, 32) if s % 3]
    assert [s for s in got if not s % 3] == [s for s in range(2, 32) if not s % 3]
    c2.no_message(0.5)
