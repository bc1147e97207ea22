"""On disconnect every association of the connection is removed at once:
user counts, /users, /stats, metrics, per-user slots, delivery counts; however
the connection ended (close handshake, FIN, RST, mid-frame, before login)."""

import pytest

from pbutil import unique_uid, wait_until


@pytest.fixture
def shared(module_bridge_factory):
    """The bridge these tests share (a fresh one after a crash)."""
    return module_bridge_factory.shared(config={"ws": {"max_connections_per_user": 3}})


@pytest.mark.parametrize("how", ["close_handshake", "fin", "rst", "mid_frame"])
def test_each_way_of_leaving_removes_the_connection(shared, how):
    uid = unique_uid()
    stay = shared.uid_client(uid)
    leave, _ = shared.native_client(uid)
    assert shared.user_connections(uid) == 2
    if how == "close_handshake":
        leave.close()
    elif how == "fin":
        leave.abort()
    elif how == "rst":
        leave.abort(reset=True)
    else:
        leave.send_raw(b"\x81\xfe\x10\x00\x00\x00\x00\x00abc")  # 4096-byte frame cut short
        leave.abort()
    shared.wait_user_connections(uid, 1)
    assert shared.push(uid, "one left") == (200, {"delivered": 1})
    assert stay.recv_text() == "one left"


def test_last_connection_gone_user_offline(shared):
    uid = unique_uid()
    conns = [shared.uid_client(uid) for _ in range(3)]
    st, doc, _ = shared.json("GET", f"/users/{uid}")
    assert (st, doc) == (200, {"online": True, "connections": 3})
    for c in conns:
        c.abort()
    wait_until(lambda: shared.json("GET", f"/users/{uid}")[:2] ==
               (200, {"online": False, "connections": 0}), timeout=10,
               desc="user offline after all connections left")
    st, doc = shared.send(uid, "anyone?")
    assert st == 400 and doc["error"] == "no_connection"
    assert shared.push(uid, "anyone?") == (200, {"delivered": 0})


def test_slots_freed_for_reconnect(shared):
    uid = unique_uid()
    for round_ in range(5):
        conns = [shared.uid_client(uid) for _ in range(3)]
        for c in conns:
            c.abort(reset=True)
        shared.wait_user_connections(uid, 0)
    last = shared.uid_client(uid)
    assert shared.send(uid, "fresh")[0] == 200
    assert last.recv_text() == "fresh"


def test_counts_return_to_baseline(shared):
    def counts():
        s = shared.stats()
        return s["connections"], s["users"]

    wait_until(lambda: shared.metric("pushbridge_connections") == counts()[0], timeout=10,
               desc="metrics and stats agree")
    base_conn, base_users = counts()
    users = [unique_uid() for _ in range(4)]
    conns = [shared.uid_client(u) for u in users for _ in range(2)]
    unauth = [shared.ws() for _ in range(2)]
    wait_until(lambda: counts()[1] == base_users + 4, timeout=10, desc="users counted")
    assert shared.metric("pushbridge_users") == base_users + 4
    for c in conns + unauth:
        c.abort()
    wait_until(lambda: counts() == (base_conn, base_users), timeout=10,
               desc="connections and users back to baseline")
    assert shared.metric("pushbridge_connections") == base_conn
    assert shared.metric("pushbridge_users") == base_users


def test_filtered_connection_gone_unfiltered_one_remains(shared):
    uid = unique_uid()
    filtered, _ = shared.native_client(uid, events=["a"])
    plain, _ = shared.native_client(uid)
    filtered.close()
    shared.wait_user_connections(uid, 1)
    st, doc = shared.push(uid, 1, event="a")
    assert (st, doc) == (200, {"delivered": 1})
    assert plain.recv_json()["event"] == "a"


def test_unauthenticated_disconnect_leaves_nothing(bridge_factory):
    # A bridge of its own: on the shared one, the previous test's clients may
    # still be closing when the count is taken (they are dropped at teardown).
    b = bridge_factory()
    before = b.stats()["connections"]
    assert before == 0
    cs = [b.ws() for _ in range(5)]
    wait_until(lambda: b.stats()["connections"] == 5, timeout=10,
               desc="unauthenticated connections counted")
    for c in cs:
        c.abort(reset=True)
    wait_until(lambda: b.stats()["connections"] == 0, timeout=10,
               desc="unauthenticated connections removed")
