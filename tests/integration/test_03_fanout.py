"""One user, many tabs and devices: every connection of the user gets each
event, in its own form (native envelope or seed data), and nobody else does."""

import json

import pytest

from pbutil import assert_data_verbatim, envelope, unique_uid, without_pos


@pytest.fixture
def shared(module_bridge_factory):
    """The bridge these tests share (a fresh one after a crash)."""
    return module_bridge_factory.shared()


def _clients(bridge, uid, n_native, n_uid, n_token):
    natives = []
    for _ in range(n_native):
        c, welcome = bridge.native_client(uid)
        assert welcome["user"] == uid
        natives.append(c)
    seeds = [bridge.uid_client(uid) for _ in range(n_uid)]
    for _ in range(n_token):
        c = bridge.ws()
        c.login_token(uid)
        seeds.append(c)
    return natives, seeds


def test_kafka_event_reaches_all_connections_of_user_only(shared, kafka):
    uid, other = unique_uid(), unique_uid()
    natives, seeds = _clients(shared, uid, 8, 8, 4)
    bystanders = [shared.uid_client(other), shared.native_client(other)[0]]
    assert shared.user_connections(uid) == 20
    kafka.produce(shared.topic, b'{"event":"e","id":"ev-1","data":{"k": [1, 2]}}', key=uid)
    for c in natives:
        raw = c.recv_text(timeout=10)
        assert without_pos(json.loads(raw)) == {"type": "event", "event": "e", "id": "ev-1",
                                   "data": {"k": [1, 2]}}
        assert_data_verbatim(raw, '{"k": [1, 2]}')
    for c in seeds:
        assert c.recv_text(timeout=10) == '{"k": [1, 2]}'
    for c in bystanders:
        c.no_message(0.3)


def test_push_counts_every_connection(shared):
    uid, other = unique_uid(), unique_uid()
    natives, seeds = _clients(shared, uid, 3, 3, 0)
    o = shared.uid_client(other)
    st, doc = shared.push(uid, "fan", event="e")
    assert (st, doc) == (200, {"delivered": 6})
    for c in natives:
        assert c.recv_json()["data"] == "fan"
    for c in seeds:
        assert c.recv_text() == "fan"
    o.no_message(0.3)


def test_push_to_offline_user_delivers_zero(shared):
    st, doc = shared.push(unique_uid(), "void")
    assert (st, doc) == (200, {"delivered": 0})


def test_many_users_each_get_their_own(shared, kafka):
    users = [unique_uid() for _ in range(10)]
    conns = {u: [shared.uid_client(u) for _ in range(2)] for u in users}
    kafka.produce_many(shared.topic, [(u, envelope(data=f"for {u}")) for u in users])
    for u in users:
        for c in conns[u]:
            assert c.recv_text(timeout=10) == f"for {u}"
            c.no_message(0.05)


def test_event_filter_applies_per_connection(shared, kafka):
    uid = unique_uid()
    all_c, _ = shared.native_client(uid)
    a_c, _ = shared.native_client(uid, events=["a"])
    b_c, _ = shared.native_client(uid, events=["b", "c"])
    kafka.produce_many(shared.topic, [(uid, envelope(event=e, data=e)) for e in "abcd"])
    assert [all_c.recv_json(10)["event"] for _ in range(4)] == list("abcd")
    assert a_c.recv_json(10)["event"] == "a"
    assert [b_c.recv_json(10)["event"] for _ in range(2)] == ["b", "c"]
    a_c.no_message(0.2)
    b_c.no_message(0.1)
