"""The internal HTTP API (SPEC §3) as a business system and an operator
use it."""

import http.client
import json
import urllib.parse

import pytest

from pbutil import batch_results, unique_uid


@pytest.fixture
def shared(module_bridge_factory):
    """The bridge these tests share (a fresh one after a crash)."""
    return module_bridge_factory.shared()


def test_healthz_and_readyz(shared):
    assert shared.http("GET", "/healthz")[0] == 200
    assert shared.http("GET", "/readyz")[0] == 200


def test_responses_are_json(shared):
    for path in ("/stats", "/users/x", "/nope"):
        st, hdrs, body = shared.http("GET", path)
        assert "application/json" in hdrs.get("Content-Type", ""), (path, hdrs)
        json.loads(body)


def test_push_single_and_aliases(shared):
    uid = unique_uid()
    c = shared.uid_client(uid)
    for body in ({"user_id": uid, "event": "e", "data": "a"},
                 {"userId": uid, "event": "e", "message": "b"},
                 {"uid": uid, "data": "c"}):
        st, doc, _ = shared.json("POST", "/push", body)
        assert (st, doc) == (200, {"delivered": 1}), body
    assert c.recv_texts(3) == ["a", "b", "c"]


def test_push_to_offline_user_is_200_zero(shared):
    st, doc, _ = shared.json("POST", "/push", {"user_id": unique_uid(), "data": 1})
    assert (st, doc) == (200, {"delivered": 0})


def test_push_batch_one_result_per_item(shared):
    u1, u2, off = unique_uid(), unique_uid(), unique_uid()
    c1 = shared.uid_client(u1)
    c2a, c2b = shared.uid_client(u2), shared.uid_client(u2)
    st, doc, _ = shared.json("POST", "/push", [
        {"user_id": u1, "data": "x1"},
        {"user_id": u2, "data": "x2"},
        {"user_id": off, "data": "x3"},
    ])
    assert st == 200
    assert batch_results(doc) == [{"delivered": 1}, {"delivered": 2}, {"delivered": 0}]
    assert c1.recv_text() == "x1"
    assert c2a.recv_text() == "x2" and c2b.recv_text() == "x2"


def test_push_content_type_not_required(shared):
    uid = unique_uid()
    c = shared.uid_client(uid)
    st, _, _ = shared.http("POST", "/push", json.dumps({"user_id": uid, "data": "t"}),
                           headers={"Content-Type": "text/plain"})
    assert st == 200
    assert c.recv_text() == "t"


def test_send_get_and_post(shared):
    uid = unique_uid()
    c = shared.uid_client(uid)
    assert shared.send(uid, "g", method="GET")[0] == 200
    assert shared.send(uid, "p", method="POST")[0] == 200
    assert c.recv_texts(2) == ["g", "p"]


def test_send_missing_uid_and_offline(shared):
    st, doc = shared.json("POST", "/send", b"message=hi",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})[:2]
    assert st == 400 and doc["error"] == "missing_field" and "uid" in doc["message"]
    st, doc = shared.send(unique_uid(), "x")
    assert st == 400 and doc["error"] == "no_connection"


def test_users_endpoint(shared):
    uid = unique_uid()
    st, doc, _ = shared.json("GET", f"/users/{uid}")
    assert (st, doc) == (200, {"online": False, "connections": 0})
    shared.uid_client(uid), shared.native_client(uid)
    st, doc, _ = shared.json("GET", f"/users/{uid}")
    assert (st, doc) == (200, {"online": True, "connections": 2})
    quoted = "we ird\u00e9+%"
    shared.uid_client(quoted)
    st, doc, _ = shared.json("GET", "/users/" + urllib.parse.quote(quoted, safe=""))
    assert (st, doc) == (200, {"online": True, "connections": 1})


def test_stats_shape(shared, kafka):
    uid = unique_uid()
    c = shared.uid_client(uid)
    kafka.produce(shared.topic, b'{"data":"s"}', key=uid)
    assert c.recv_text(10) == "s"
    s = shared.stats()
    for key in ("connections", "users", "uptime_s", "topics"):
        assert key in s, f"/stats lacks {key}: {s}"
    assert s["connections"] >= 1 and s["users"] >= 1
    assert isinstance(s["uptime_s"], (int, float)) and s["uptime_s"] >= 0
    t = s["topics"][shared.topic]
    assert t["consumed"] >= 1 and t["delivered"] >= 1 and t["dropped"] >= 0


def test_keep_alive_connection_serves_several_requests(shared):
    conn = http.client.HTTPConnection("127.0.0.1", shared.internal_port, timeout=5)
    try:
        for path in ("/healthz", "/stats", "/healthz"):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
    finally:
        conn.close()


def test_public_listener_does_not_serve_push(shared):
    uid = unique_uid()
    shared.uid_client(uid)
    st, _, _ = shared.http("POST", "/push", {"user_id": uid, "data": 1}, public=True)
    assert st in (403, 404), st


def test_query_string_on_get_endpoints(shared):
    assert shared.http("GET", "/healthz?x=1")[0] == 200
    assert shared.http("GET", "/stats?pretty=1")[0] == 200


def test_one_port_serves_everything(bridge_factory):
    from pbutil import free_port
    port = free_port()
    b = bridge_factory(config={"listen": {"public": f"127.0.0.1:{port}",
                                          "internal": f"127.0.0.1:{port}"}})
    assert b.public_port == b.internal_port == port
    uid = unique_uid()
    c = b.uid_client(uid)
    assert b.push(uid, "same port") == (200, {"delivered": 1})
    assert c.recv_text() == "same port"


def test_readyz_503_while_kafka_unreachable(bridge_factory):
    from pbutil import free_port
    dead = free_port()
    b = bridge_factory(config={"kafka": {"brokers": f"127.0.0.1:{dead}"}},
                       create_topic=False, wait_ready=False)
    b.wait_healthy()
    st, doc, _ = b.json("GET", "/readyz")
    assert st == 503
    assert doc["error"] == "not_ready" and doc["message"]
    # WebSockets and pushes are still served.
    uid = unique_uid()
    c = b.uid_client(uid)
    assert b.push(uid, "no kafka needed") == (200, {"delivered": 1})
    assert c.recv_text() == "no kafka needed"
    assert b.json("GET", "/readyz")[0] == 503
