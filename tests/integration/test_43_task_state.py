"""Task state (SPEC §7): the latest event of each task per user, the snapshot
a login gets before live events, GET /users/{id}/tasks, updates older by
Kafka timestamp dropped, and every bound pushed past (max_tasks_per_user,
max_bytes, ttl, final_ttl) with its eviction counted."""

import json
import time

import pytest

from pbutil import unique_uid, wait_until, without_pos


def progress(task, pct, final=False, event="task.progress", **extra):
    env = {"event": event, "task": task, "data": {"progress": pct, "message": f"{task} {pct}%"}}
    if final:
        env["final"] = True
    env.update(extra)
    return json.dumps(env)


@pytest.fixture
def shared(module_bridge_factory):
    return module_bridge_factory.shared()


def recv_events(c, n, timeout=10):
    return [c.recv_json(timeout) for _ in range(n)]


def test_refresh_mid_job_gets_every_task_at_its_latest_then_live(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    kafka.produce_many(shared.topic, [(uid, progress(t, p)) for p in (10, 20, 30)
                                      for t in ("job-a", "job-b", "job-c")])
    live = recv_events(c, 9)
    assert [(m["task"], m["data"]["progress"]) for m in live[-3:]] == \
        [("job-a", 30), ("job-b", 30), ("job-c", 30)]
    assert not any("snapshot" in m for m in live)
    c.close()

    # The refreshed page: one frame per task at its latest value, marked
    # snapshot, each the live frame's shape; then live events again.
    c2, welcome = shared.native_client(uid)
    assert "resumed" not in welcome
    snap = recv_events(c2, 3)
    assert [(m["task"], m["data"], m["snapshot"]) for m in snap] == [
        ("job-a", {"progress": 30, "message": "job-a 30%"}, True),
        ("job-b", {"progress": 30, "message": "job-b 30%"}, True),
        ("job-c", {"progress": 30, "message": "job-c 30%"}, True)]
    assert all(set(m) == {"type", "event", "task", "snapshot", "data"} for m in snap), snap
    c2.no_message(0.2)
    kafka.produce(shared.topic, progress("job-b", 40), key=uid)
    m = c2.recv_json(10)
    assert (m["task"], m["data"]["progress"], "snapshot" in m) == ("job-b", 40, False)


def test_seed_logins_get_the_snapshot_as_data_alone(shared, kafka):
    uid = unique_uid()
    kafka.produce_many(shared.topic, [(uid, progress("j1", 50)),
                                      (uid, json.dumps({"task": "j2", "data": "half way"}))])
    wait_until(lambda: len(shared.json("GET", f"/users/{uid}/tasks")[1]["tasks"]) == 2,
               desc="both tasks kept")
    c = shared.ws()
    c.login_uid(uid)
    # The producer's data bytes, in the order the tasks were last updated.
    assert [c.recv_text(10), c.recv_text(10)] == ['{"progress": 50, "message": "j1 50%"}',
                                                  "half way"]


def test_snapshot_honours_the_event_filter(shared, kafka):
    uid = unique_uid()
    kafka.produce_many(shared.topic, [(uid, progress("p", 5)),
                                      (uid, progress("n", 7, event="notice"))])
    wait_until(lambda: len(shared.json("GET", f"/users/{uid}/tasks")[1]["tasks"]) == 2)
    c, _ = shared.native_client(uid, events=["notice"])
    m = c.recv_json(10)
    assert (m["task"], m["event"]) == ("n", "notice")
    c.no_message(0.3)


def test_get_tasks_endpoint(shared, kafka):
    uid = unique_uid()
    st, doc, _ = shared.json("GET", f"/users/{uid}/tasks")
    assert (st, doc) == (200, {"user": uid, "tasks": []})
    kafka.produce_many(shared.topic, [(uid, progress("t1", 1)), (uid, progress("t1", 2)),
                                      (uid, progress("t2", 100, final=True))])
    wait_until(lambda: len(shared.json("GET", f"/users/{uid}/tasks")[1]["tasks"]) == 2
               and shared.json("GET", f"/users/{uid}/tasks")[1]["tasks"][0]["data"]["progress"] == 2)
    st, doc, _ = shared.json("GET", f"/users/{uid}/tasks")
    assert st == 200 and doc["user"] == uid
    assert doc["tasks"] == [
        {"type": "event", "event": "task.progress", "task": "t1", "snapshot": True,
         "data": {"progress": 2, "message": "t1 2%"}},
        {"type": "event", "event": "task.progress", "task": "t2", "final": True,
         "snapshot": True, "data": {"progress": 100, "message": "t2 100%"}}]
    # A user ID with a slash comes %-encoded; /tasks is the endpoint's.
    st, doc, _ = shared.json("GET", "/users/a%2Fb/tasks")
    assert (st, doc) == (200, {"user": "a/b", "tasks": []})
    st, _, _ = shared.json("POST", f"/users/{uid}/tasks", b"{}")
    assert st == 405


def test_update_older_by_timestamp_is_not_delivered(shared, kafka):
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    now = int(time.time() * 1000)
    before = shared.metric("pushbridge_events_dropped_total", topic=shared.topic,
                           reason="outdated") or 0
    kafka.produce_at(shared.topic, [(uid, progress("job", 60))], now)
    assert c.recv_json(10)["data"]["progress"] == 60
    # Produced later, stamped earlier (a retry from a lagging worker).
    kafka.produce_at(shared.topic, [(uid, progress("job", 40))], now - 5000)
    kafka.produce_at(shared.topic, [(uid, progress("other", 1))], now - 5000)
    m = c.recv_json(10)
    assert (m["task"], m["data"]["progress"]) == ("other", 1)   # the stale one never came
    shared.wait_metric("pushbridge_events_dropped_total", before + 1, topic=shared.topic,
                       reason="outdated")
    tasks = shared.json("GET", f"/users/{uid}/tasks")[1]["tasks"]
    assert [(t["task"], t["data"]["progress"]) for t in tasks] == [("job", 60), ("other", 1)]


def test_task_older_than_ttl_is_not_kept(shared, kafka):
    uid = unique_uid()
    old = int(time.time() * 1000) - 3_600_000   # an hour old: past state.ttl_ms (10 min)
    kafka.produce_at(shared.topic, [(uid, progress("ancient", 5))], old)
    kafka.produce(shared.topic, progress("fresh", 6), key=uid)
    wait_until(lambda: shared.json("GET", f"/users/{uid}/tasks")[1]["tasks"], desc="fresh kept")
    assert [t["task"] for t in shared.json("GET", f"/users/{uid}/tasks")[1]["tasks"]] == ["fresh"]


def test_max_tasks_per_user_evicts_the_task_updated_longest_ago(bridge_factory, kafka):
    b = bridge_factory(config={"state": {"max_tasks_per_user": 3}})
    uid = unique_uid()
    kafka.produce_many(b.topic, [(uid, progress(f"t{i}", i)) for i in range(5)] +
                       [(uid, progress("t2", 99))])
    b.wait_metric("pushbridge_state_evictions_total", 2, reason="max_tasks_per_user")
    tasks = b.json("GET", f"/users/{uid}/tasks")[1]["tasks"]
    assert [(t["task"], t["data"]["progress"]) for t in tasks] == [("t3", 3), ("t4", 4), ("t2", 99)]


def test_final_ttl_forgets_a_finished_task(bridge_factory, kafka):
    b = bridge_factory(config={"state": {"final_ttl_ms": 1000}})
    uid = unique_uid()
    kafka.produce_many(b.topic, [(uid, progress("done", 100, final=True)),
                                 (uid, progress("running", 50))])
    wait_until(lambda: len(b.json("GET", f"/users/{uid}/tasks")[1]["tasks"]) == 2)
    wait_until(lambda: [t["task"] for t in b.json("GET", f"/users/{uid}/tasks")[1]["tasks"]]
               == ["running"], timeout=10, desc="the final task forgotten")
    b.wait_metric("pushbridge_state_evictions_total", 1, reason="ttl")
    c, _ = b.native_client(uid)
    assert c.recv_json(10)["task"] == "running"
    c.no_message(0.3)


def test_a_flood_of_distinct_tasks_and_users_stays_within_state_max_bytes(bridge_factory, kafka):
    bound = 256 * 1024
    b = bridge_factory(config={"state": {"max_bytes": bound},
                               "history": {"max_bytes": bound}})
    pad = "x" * 200
    msgs = [(f"flood-{i % 500}", progress(f"task-{i}", 1, pad=pad)) for i in range(6000)]
    kafka.produce_many(b.topic, msgs)
    consumed = lambda: b.metric("pushbridge_events_consumed_total", topic=b.topic) or 0
    wait_until(lambda: consumed() >= 6000, timeout=60, desc="the flood consumed")
    assert b.metric("pushbridge_state_bytes") <= bound
    assert b.metric("pushbridge_history_bytes") <= bound
    assert b.metric("pushbridge_state_evictions_total", reason="max_bytes") > 0
    assert b.metric("pushbridge_history_evictions_total", reason="max_bytes") > 0
    # The newest tasks are the ones kept, and delivery carries on.
    assert b.json("GET", "/users/flood-499/tasks")[1]["tasks"][-1]["task"] == "task-5999"
    uid = unique_uid()
    c, _ = b.native_client(uid)
    kafka.produce(b.topic, progress("after", 1), key=uid)
    assert without_pos(c.recv_json(10))["task"] == "after"
    b.assert_alive()


def test_state_off_keeps_nothing(bridge_factory, kafka):
    b = bridge_factory(config={"state": {"max_tasks_per_user": 0},
                               "history": {"max_events": 0}})
    uid = unique_uid()
    kafka.produce(b.topic, progress("t", 1), key=uid)
    wait_until(lambda: (b.metric("pushbridge_events_consumed_total", topic=b.topic) or 0) >= 1)
    assert b.json("GET", f"/users/{uid}/tasks")[:2] == (200, {"user": uid, "tasks": []})
    assert b.metric("pushbridge_state_tasks") == 0 and b.metric("pushbridge_history_events") == 0
