"""Rebuild on start (SPEC §7): a bridge stopped with SIGTERM mid-job and
started again re-reads state.lookback_ms of its topic by timestamp before it
says ready, so a refreshed page sees every task again at once; the events
produced while it was down reach the client that resumes, exactly once,
though the group consumer reads them again from its committed offsets."""

import json
import signal
import time

from pbutil import unique_uid, wait_until


def progress(task, pct):
    return json.dumps({"event": "task.progress", "task": task,
                       "data": {"progress": pct, "message": f"{task} {pct}%"}})


def resume_login(bridge, uid, pos):
    c = bridge.ws()
    c.send_json({"type": "auth", "token": uid, "resume": pos})
    welcome = c.recv_json(10)
    assert welcome["type"] == "welcome", welcome
    return c, welcome


def test_restart_mid_job_keeps_the_progress_view_and_resume_gets_what_was_missed(
        bridge_factory, kafka):
    cfg = {"state": {"lookback_ms": 60000, "ttl_ms": 20000}}
    a = bridge_factory(config=cfg)
    group = a.config["kafka"]["group_id"]
    uid = unique_uid()
    now = int(time.time() * 1000)
    # Before the lookback window, and inside it but past state.ttl_ms: a
    # rebuild brings back neither.
    kafka.produce_at(a.topic, [(uid, progress("before-lookback", 1))], now - 120000)
    kafka.produce_at(a.topic, [(uid, progress("expired", 1))], now - 30000)
    wait_until(lambda: (a.metric("pushbridge_events_consumed_total", topic=a.topic) or 0) >= 2)
    c, _ = a.native_client(uid)   # both past state.ttl_ms already: no snapshot
    kafka.produce_many(a.topic, [(uid, progress(t, 10)) for t in ("a", "b", "c")])
    seen = [c.recv_json(10) for _ in range(3)]
    assert [m["task"] for m in seen] == ["a", "b", "c"]
    pos = seen[-1]["pos"]
    a.stop()
    # While it is down the job goes on.
    kafka.produce_many(a.topic, [(uid, progress(t, p)) for p in (20, 30) for t in ("a", "b", "c")])

    b = bridge_factory(config=cfg, topic=a.topic, create_topic=False, group_id=group)
    b.wait_log(r"kafka: rebuilt from \d+ event\(s\)")
    fresh, welcome = b.native_client(uid)
    resumer, rwelcome = resume_login(b, uid, pos)

    snap = [fresh.recv_json(10) for _ in range(3)]
    assert [(m["task"], m["data"]["progress"], m["snapshot"]) for m in snap] == \
        [("a", 30, True), ("b", 30, True), ("c", 30, True)]
    assert rwelcome["resumed"] is True
    missed = [resumer.recv_json(10) for _ in range(6)]
    assert [(m["task"], m["data"]["progress"]) for m in missed] == \
        [(t, p) for p in (20, 30) for t in ("a", "b", "c")]
    assert not any(m.get("snapshot") for m in missed)

    # The group consumer reads the six again from the offsets the first
    # bridge committed: they are not sent a second time.
    b.wait_metric("pushbridge_redeliveries_skipped_total", 6, timeout=30)
    fresh.no_message(0.5)
    resumer.no_message(0.1)
    kafka.produce(b.topic, progress("a", 40), key=uid)
    for cl in (fresh, resumer):
        m = cl.recv_json(10)
        assert (m["task"], m["data"]["progress"], "snapshot" in m) == ("a", 40, False)


# A member that dies without leaving holds the group until its session times
# out: its successor has rebuilt its state long before it is assigned and
# reads again what was produced meanwhile, with clients already connected.
FAST_GROUP = {"kafka": {"properties": {"auto.offset.reset": "earliest",
                                       "session.timeout.ms": "6000",
                                       "heartbeat.interval.ms": "500"}},
              "state": {"lookback_ms": 60000}}


def test_redelivery_after_a_crash_is_not_sent_again_to_clients_that_have_it(
        bridge_factory, kafka):
    a = bridge_factory(config=FAST_GROUP)
    group = a.config["kafka"]["group_id"]
    uid = unique_uid()
    c, _ = a.native_client(uid)
    kafka.produce_many(a.topic, [(uid, progress("job", p)) for p in (10, 20)])
    pos = [c.recv_json(10) for _ in range(2)][-1]["pos"]
    commits = a.metric("pushbridge_kafka_commits_total")
    a.wait_metric("pushbridge_kafka_commits_total", commits + 1, timeout=10)
    a.stop(signal.SIGKILL)
    kafka.produce_many(a.topic, [(uid, progress("job", p)) for p in (30, 40, 50)])

    b = bridge_factory(config=FAST_GROUP, topic=a.topic, create_topic=False, group_id=group,
                       wait_ready=False)
    b.wait_log(r"kafka: rebuilt from \d+ event\(s\)", timeout=30)
    resumer, welcome = resume_login(b, uid, pos)
    fresh, _ = b.native_client(uid)
    assert (b.metric("pushbridge_redeliveries_skipped_total") or 0) == 0, \
        "assigned before the clients came: this test would prove nothing"
    assert welcome["resumed"] is True
    assert [resumer.recv_json(10)["data"]["progress"] for _ in range(3)] == [30, 40, 50]
    snap = fresh.recv_json(10)
    assert (snap["data"]["progress"], snap["snapshot"]) == (50, True)
    # Assigned once the dead member's session is over, the group consumer
    # reads the three again (from a's last commit): nobody gets them twice.
    b.wait_ready(timeout=30)
    wait_until(lambda: b.metric("pushbridge_redeliveries_skipped_total") >= 3, timeout=30,
               desc="the three read again")
    resumer.no_message(0.5)
    fresh.no_message(0.1)
    kafka.produce(b.topic, progress("job", 60), key=uid)
    assert resumer.recv_json(10)["data"]["progress"] == 60
    assert fresh.recv_json(10)["data"]["progress"] == 60


def test_not_ready_while_rebuilding_and_nothing_to_rebuild_is_said(bridge_factory, kafka):
    b = bridge_factory(config={"state": {"lookback_ms": 60000}})
    b.wait_log(r"nothing to rebuild task state from|rebuilt from")
    st, doc, _ = b.json("GET", "/readyz")
    assert st == 200


def test_rebuild_off(bridge_factory, kafka):
    a = bridge_factory()
    uid = unique_uid()
    kafka.produce(a.topic, progress("t", 5), key=uid)
    wait_until(lambda: a.json("GET", f"/users/{uid}/tasks")[1]["tasks"])
    a.stop()
    b = bridge_factory(config={"state": {"lookback_ms": 0}}, topic=a.topic, create_topic=False,
                       group_id=a.config["kafka"]["group_id"])
    assert b.json("GET", f"/users/{uid}/tasks")[1]["tasks"] == []
    assert "rebuil" not in b.log_text()


def test_sigterm_while_the_rebuild_waits_for_an_unreachable_broker(bridge_factory):
    """The planning thread is abandoned at a stop and frees its own struct
    when its blocking call returns; the loop must not touch the struct after
    handing it over (under ThreadSanitizer that was a race with the thread's
    free), and gives the thread a moment to end, so that its consumer's
    threads are joined before the exit (else reported leaked). The exit is
    clean; a few rounds, since the thread's call must return before the
    process ends for a race to show."""
    from pbutil import free_port
    dead = free_port()
    for _ in range(3):
        b = bridge_factory(config={"kafka": {"brokers": f"127.0.0.1:{dead}"},
                                   "state": {"lookback_ms": 60000}},
                           create_topic=False, wait_ready=False)
        # The planning thread has asked and been refused at least twice: it
        # is between attempts, and returns soon after the stop.
        b.wait_log(r"kafka rebuild: FAIL: .*identical error")
        b.wait_healthy()
        assert b.json("GET", "/readyz")[0] == 503
        rc = b.stop(timeout=15)
        report = b.new_sanitizer_report()
        assert report is None, report
        assert rc == 0, b.log_tail(4000)
        assert "exiting without it" not in b.log_text()
