"""ws.slow_client "coalesce" (SPEC §7): under back-pressure a newer update of a
task replaces the older one still queued for that connection, so a stalled
dashboard catches up with each task's latest state instead of being closed;
final updates and task-less events are never coalesced away, and when they
alone fill the queue the connection is closed as under "close"."""

import json

import pytest

from pbutil import unique_uid

PAD = "x" * 16000
CHUNK = 8


def update(task, i, final=False, pad=PAD):
    env = {"event": "task.progress", "data": {"i": i, "pad": pad}}
    if task:
        env["task"] = task
    if final:
        env["final"] = True
    return json.dumps(env)


def feed(kafka, topic, uid, reader, events):
    """Produces events CHUNK at a time; reader reads each chunk first, so the
    only connection that falls behind is the one that does not read."""
    for start in range(0, len(events), CHUNK):
        chunk = events[start:start + CHUNK]
        kafka.produce_many(topic, [(uid, e) for e in chunk])
        for e in chunk:
            assert reader.recv_json(timeout=20)["data"]["i"] == json.loads(e)["data"]["i"]


@pytest.fixture
def coalescing(bridge_factory):
    return bridge_factory(config={"ws": {"queue_max_messages": 32, "slow_client": "coalesce"}})


def test_stalled_reader_gets_each_tasks_latest_and_every_final(coalescing, kafka):
    b = coalescing
    uid = unique_uid()
    slow = b.ws(rcvbuf=4096)
    slow.login_native(uid)
    fast, _ = b.native_client(uid)
    events = []
    for i in range(240):
        task = f"job-{i % 3}"
        events.append(update(task, i, final=(task == "job-1" and i == 121)))
    feed(kafka, b.topic, uid, fast, events)
    # The fast reader has every event: the slow one's queue has taken them all.
    assert b.metric("pushbridge_coalesced_total") > 100
    kafka.produce(b.topic, update(None, 1000, pad="end"), key=uid)
    assert fast.recv_json(20)["data"]["i"] == 1000

    got = []
    while True:                              # the stalled client reads at last
        m = slow.recv_json(timeout=20)
        got.append(m)
        if m["data"]["i"] == 1000:
            break
    assert len(got) < len(events) + 1        # updates were coalesced away ...
    # ... and what arrives still comes in stream order: a client that drops
    # and resumes from the last pos it read has read everything before it.
    offsets = [int(m["pos"].split(".")[2].split("~")[1]) for m in got]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), offsets
    last = {}
    for m in got[:-1]:
        t, i = m["task"], m["data"]["i"]
        assert i > last.get(t, -1), f"{t} went back from {last.get(t)} to {i}"
        last[t] = i
    # ... but each task ends at its latest value, and the final one arrived.
    assert last == {"job-0": 237, "job-1": 238, "job-2": 239}
    assert [m["data"]["i"] for m in got if m.get("final")] == [121]
    assert b.metric("pushbridge_slow_client_closes_total") == 0
    slow.no_message(0.2)


def test_taskless_events_alone_filling_the_queue_close_it(coalescing, kafka):
    b = coalescing
    uid = unique_uid()
    slow = b.ws(rcvbuf=4096)
    slow.login_native(uid)
    fast, _ = b.native_client(uid)
    feed(kafka, b.topic, uid, fast, [update(None, i) for i in range(300)])
    b.wait_metric("pushbridge_slow_client_closes_total", 1, timeout=20)
    assert slow.expect_close(timeout=30)[0] == 4009
    assert b.metric("pushbridge_coalesced_total") == 0
    assert b.push(uid, "after") == (200, {"delivered": 1})
    assert fast.recv_json()["data"] == "after"
