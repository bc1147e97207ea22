"""Per-user order: events for one user reach each of its connections in the
order of their Kafka partition, also when other users' events interleave and
the topic has several partitions."""

import json

import pytest

from pbutil import batch_results, unique_uid

N = 1000


@pytest.fixture
def shared(module_bridge_factory):
    """The bridge these tests share (a fresh one after a crash)."""
    return module_bridge_factory.shared(partitions=3)


def test_1000_events_in_order_on_every_connection(shared, kafka):
    uid = unique_uid()
    native, _ = shared.native_client(uid)
    seed = shared.uid_client(uid)
    kafka.produce_many(shared.topic, [(uid, '{"event":"n","data":%d}' % i) for i in range(N)])
    got_native = [native.recv_json(timeout=20)["data"] for _ in range(N)]
    assert got_native == list(range(N))
    got_seed = [int(t) for t in seed.recv_texts(N, timeout=20)]
    assert got_seed == list(range(N))
    native.no_message(0.2)


def test_interleaved_users_across_partitions_keep_their_order(shared, kafka):
    users = [unique_uid() for _ in range(4)]
    conns = {u: shared.native_client(u)[0] for u in users}
    msgs = []
    for i in range(250):
        for u in users:
            msgs.append((u, json.dumps({"event": "n", "data": {"u": u, "i": i}})))
    kafka.produce_many(shared.topic, msgs)
    for u in users:
        got = [conns[u].recv_json(timeout=20)["data"] for _ in range(250)]
        assert [d["u"] for d in got] == [u] * 250
        assert [d["i"] for d in got] == list(range(250))


def test_explicit_partitions_each_in_order(shared, kafka):
    # The same user written to two partitions: order holds within each.
    uid = unique_uid()
    c, _ = shared.native_client(uid)
    kafka.produce_many(shared.topic, [(uid, '{"data":{"p":0,"i":%d}}' % i) for i in range(100)],
                       partition=0)
    kafka.produce_many(shared.topic, [(uid, '{"data":{"p":2,"i":%d}}' % i) for i in range(100)],
                       partition=2)
    got = [c.recv_json(timeout=20)["data"] for _ in range(200)]
    for p in (0, 2):
        assert [d["i"] for d in got if d["p"] == p] == list(range(100))


def test_http_pushes_in_call_order(shared):
    uid = unique_uid()
    c = shared.uid_client(uid)
    for i in range(200):
        st, doc = shared.push(uid, i)
        assert (st, doc) == (200, {"delivered": 1})
    assert [int(t) for t in c.recv_texts(200, timeout=20)] == list(range(200))


def test_batch_push_in_array_order(shared):
    uid = unique_uid()
    c = shared.uid_client(uid)
    st, doc = shared.json("POST", "/push", [{"user_id": uid, "data": i} for i in range(100)])[:2]
    assert st == 200
    assert batch_results(doc) == [{"delivered": 1}] * 100
    assert [int(t) for t in c.recv_texts(100, timeout=20)] == list(range(100))
