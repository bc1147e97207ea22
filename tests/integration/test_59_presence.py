"""Presence across the cluster and the offline fallback (SPEC §8), with three
real bridges in cluster mode against one real broker: GET /users/{id} on any
node answers for every node within 2 s of a login or close anywhere, GET
/cluster lists the live nodes, a node that says goodbye (SIGTERM) or is
killed -9 leaves the list and every answer within cluster.node_timeout_ms, a
restarted node does not flap; an event for a user connected nowhere lands on
kafka.undelivered_topic exactly once (not once per node), keyed by the user,
unchanged, with pushbridge-reason: offline, never for broadcasts or groups;
in standalone mode too, for Kafka events and HTTP pushes."""

import json
import signal
import time

import pytest

from pbutil import unique_uid, wait_until

NODE_TIMEOUT_MS = 3000


class Cluster:
    def __init__(self, factory, kafka, n=3, partitions=3):
        self.factory, self.kafka = factory, kafka
        self.topic = kafka.unique_topic()
        kafka.create_topic(self.topic, partitions)
        self.push_topic = kafka.unique_topic("push")
        self.presence_topic = kafka.unique_topic("presence")
        self.undelivered = kafka.unique_topic("offline")
        kafka.create_topic(self.undelivered, 1)
        self.group = f"g-{unique_uid('p')}"
        self.nodes = {f"n{i + 1}": self.start(f"n{i + 1}") for i in range(n)}
        for b in self.nodes.values():
            self.wait_nodes(b, set(self.nodes))

    def start(self, name, listen=None):
        cfg = {"cluster": {"mode": "kafka", "node_name": name,
                           "node_timeout_ms": NODE_TIMEOUT_MS,
                           "presence_topic": self.presence_topic},
               "kafka": {"undelivered_topic": self.undelivered},
               "push": {"topic": self.push_topic}}
        if listen:
            cfg["listen"] = dict(listen)
        return self.factory(config=cfg, topic=self.topic, create_topic=False,
                            group_id=self.group)

    @staticmethod
    def names(b):
        return {n["name"] for n in b.json("GET", "/cluster")[1]["nodes"]}

    def wait_nodes(self, b, want, timeout=10):
        """b lists exactly want, each taking part in owning decisions."""
        def listed():
            rows = b.json("GET", "/cluster")[1]["nodes"]
            return {n["name"] for n in rows} == set(want) and all(n["owner"] for n in rows)
        return wait_until(listed, timeout=timeout, desc=f"GET /cluster listing {sorted(want)}")

    def offline(self, count):
        """The undelivered topic's messages so far (at most count+5)."""
        return self.kafka.consume(self.undelivered, count + 5, timeout=20)


@pytest.fixture(scope="module")
def cluster(module_bridge_factory, kafka):
    return Cluster(module_bridge_factory, kafka)


def user(b, uid):
    st, doc, _ = b.json("GET", f"/users/{uid}")
    assert st == 200, doc
    return doc


def close(c):
    c.send_close(1000)
    c.sock.close()


def test_cluster_lists_every_live_node_with_its_load(cluster):
    n1 = cluster.nodes["n1"]
    uid = unique_uid()
    c, _ = cluster.nodes["n2"].native_client(uid)
    def n2_seen():
        doc = n1.json("GET", "/cluster")[1]
        row = {n["name"]: n for n in doc["nodes"]}["n2"]
        return doc if row["connections"] >= 1 and row["users"] >= 1 else None
    doc = wait_until(n2_seen, timeout=5, desc="n2's connection counted on n1")
    assert doc["mode"] == "kafka" and doc["node"] == "n1"
    rows = {n["name"]: n for n in doc["nodes"]}
    assert rows["n1"]["self"] is True and rows["n2"]["self"] is False
    for r in rows.values():
        assert r["version"] and 0 <= r["last_seen_ms"] < NODE_TIMEOUT_MS, r
        assert r["owner"] is True, r   # every node takes part in owning decisions
    close(c)


def test_users_answer_for_the_whole_cluster_within_two_seconds(cluster):
    n1, n2, n3 = (cluster.nodes[k] for k in ("n1", "n2", "n3"))
    uid = unique_uid()
    assert user(n1, uid) == {"online": False, "connections": 0, "nodes": {}}
    a, _ = n2.native_client(uid)
    b, _ = n2.native_client(uid)
    c, _ = n3.native_client(uid)
    want = {"online": True, "connections": 3, "nodes": {"n2": 2, "n3": 1}}
    for node in (n1, n2, n3):
        wait_until(lambda node=node: user(node, uid) == want, timeout=2,
                   desc="the whole cluster's answer within 2 s of the logins")
    close(b)
    want = {"online": True, "connections": 2, "nodes": {"n2": 1, "n3": 1}}
    wait_until(lambda: user(n1, uid) == want, timeout=2, desc="a close seen within 2 s")
    close(a)
    close(c)
    wait_until(lambda: user(n1, uid) == {"online": False, "connections": 0, "nodes": {}},
               timeout=2, desc="offline everywhere within 2 s")


def consumed(b, topic):
    return b.metric("pushbridge_events_consumed_total", topic=topic) or 0


def undelivered_total(nodes):
    return sum(b.metric("pushbridge_undelivered_total") or 0 for b in nodes)


def settle(cluster, nodes, before_consumed, n_events, want_total):
    """Every node has read the events, and the undelivered counters add up."""
    for b in nodes:
        wait_until(lambda b=b: consumed(b, cluster.topic) >= before_consumed[b] + n_events,
                   timeout=15, desc="every node read the events")
    wait_until(lambda: undelivered_total(nodes) == want_total, timeout=10,
               desc=f"{want_total} events written to the undelivered topic in all")


def test_an_event_for_a_user_connected_nowhere_is_written_once(cluster, kafka):
    nodes = list(cluster.nodes.values())
    offline, online = unique_uid("off"), unique_uid("on")
    c, _ = cluster.nodes["n3"].native_client(online)
    wait_until(lambda: user(nodes[0], online)["online"], timeout=2, desc="presence")
    before = {b: consumed(b, cluster.topic) for b in nodes}
    start = undelivered_total(nodes)
    start_msgs = len(cluster.offline(500))
    # One event per partition for the offline user (so each partition's owner
    # decides once), one for the online user, a broadcast and a group event.
    for p in range(3):
        kafka.produce(cluster.topic, json.dumps({"event": "note", "data": {"p": p}}),
                      key=offline, partition=p, headers={"trace": f"t{p}"})
    kafka.produce(cluster.topic, '{"data":1}', key=online)
    kafka.produce(cluster.topic, '{"data":2}', key="*")
    kafka.produce(cluster.topic, '{"data":3}', key="group:ops")
    assert c.recv_json(10)["data"] == 1
    settle(cluster, nodes, before, 6, start + 3)
    msgs = cluster.offline(500)[start_msgs:]
    assert len(msgs) == 3, msgs
    assert {m["key"] for m in msgs} == {offline.encode()}
    assert sorted(json.loads(m["value"])["data"]["p"] for m in msgs) == [0, 1, 2]
    for m in msgs:
        p = json.loads(m["value"])["data"]["p"]
        assert m["value"] == json.dumps({"event": "note", "data": {"p": p}}).encode()
        assert f"trace=t{p}" in m["headers"] and "pushbridge-reason=offline" in m["headers"]
    close(c)


def test_an_http_push_for_a_user_connected_nowhere_is_written_once(cluster):
    nodes = list(cluster.nodes.values())
    uid = unique_uid("off")
    start = undelivered_total(nodes)
    start_msgs = len(cluster.offline(500))
    st, doc, _ = cluster.nodes["n2"].json(
        "POST", "/push", json.dumps({"user_id": uid, "event": "mail", "data": {"x": 1}}).encode())
    assert st == 202, doc
    wait_until(lambda: undelivered_total(nodes) == start + 1, timeout=10,
               desc="the push written to the undelivered topic")
    msgs = cluster.offline(500)[start_msgs:]
    assert len(msgs) == 1 and msgs[0]["key"] == uid.encode(), msgs
    assert json.loads(msgs[0]["value"])["data"] == {"x": 1}
    assert "pushbridge-reason=offline" in msgs[0]["headers"]


def test_sigterm_says_goodbye_and_the_node_leaves_at_once(bridge_factory, kafka):
    cl = Cluster(bridge_factory, kafka, n=2)
    n1, n2 = cl.nodes["n1"], cl.nodes["n2"]
    uid = unique_uid()
    n2.native_client(uid)
    wait_until(lambda: user(n1, uid)["connections"] == 1, timeout=2, desc="presence")
    n2.stop(signal.SIGTERM)
    t0 = time.monotonic()
    cl.wait_nodes(n1, {"n1"}, timeout=NODE_TIMEOUT_MS / 1000)
    assert time.monotonic() - t0 < NODE_TIMEOUT_MS / 1000 / 2, "left by goodbye, not timeout"
    assert user(n1, uid) == {"online": False, "connections": 0, "nodes": {}}
    n1.wait_log(r"presence: node n2 left \(it said goodbye\)")


def test_kill_9_a_users_only_node_then_its_events_go_offline_once(bridge_factory, kafka):
    cl = Cluster(bridge_factory, kafka)
    n1, n2, n3 = (cl.nodes[k] for k in ("n1", "n2", "n3"))
    uid, other = unique_uid("only3"), unique_uid("on2")
    n3.native_client(uid)
    n2.native_client(other)
    for b in (n1, n2):
        wait_until(lambda b=b: user(b, uid)["nodes"] == {"n3": 1}, timeout=2, desc="presence")
    n3.stop(signal.SIGKILL)
    t0 = time.monotonic()
    for b in (n1, n2):
        cl.wait_nodes(b, {"n1", "n2"}, timeout=NODE_TIMEOUT_MS / 1000 + 2)
        assert user(b, uid) == {"online": False, "connections": 0, "nodes": {}}
    assert time.monotonic() - t0 <= NODE_TIMEOUT_MS / 1000 + 2
    # The user's connection is gone with its node: events go offline, once,
    # whoever owned the partition before (ownership moved to the survivors).
    nodes = [n1, n2]
    before = {b: consumed(b, cl.topic) for b in nodes}
    start = undelivered_total(nodes)
    for p in range(3):
        kafka.produce(cl.topic, json.dumps({"data": {"p": p}}), key=uid, partition=p)
    kafka.produce(cl.topic, '{"data":"x"}', key=other)
    settle(cl, nodes, before, 4, start + 3)
    msgs = [m for m in cl.offline(50) if m["key"] == uid.encode()]
    assert sorted(json.loads(m["value"])["data"]["p"] for m in msgs) == [0, 1, 2], msgs


def test_a_restarted_node_does_not_flap_anyones_users(bridge_factory, kafka):
    cl = Cluster(bridge_factory, kafka)
    n1, n2, n3 = (cl.nodes[k] for k in ("n1", "n2", "n3"))
    on1, on3 = unique_uid("on1"), unique_uid("on3")
    n1.native_client(on1)
    n3.native_client(on3)
    wait_until(lambda: user(n2, on1)["online"] and user(n2, on3)["online"], timeout=2,
               desc="presence")
    listen = n2.config["listen"]
    n2.stop(signal.SIGTERM)
    # While n2 restarts, n1 keeps seeing n3's user; the new n2's very first
    # answers (it is ready only once it has read the cluster's presence) are
    # the cluster's, not "offline".
    n2b = cl.factory(config={"cluster": {"mode": "kafka", "node_name": "n2",
                                         "node_timeout_ms": NODE_TIMEOUT_MS,
                                         "presence_topic": cl.presence_topic},
                             "kafka": {"undelivered_topic": cl.undelivered},
                             "push": {"topic": cl.push_topic}, "listen": dict(listen)},
                     topic=cl.topic, create_topic=False, group_id=cl.group, wait_ready=False)
    seen = []
    def ready_and_answer():
        assert user(n1, on3)["nodes"] == {"n3": 1}, "n1 flapped n3's user"
        if n2b.http("GET", "/readyz")[0] != 200:
            return False
        seen.append((user(n2b, on1), user(n2b, on3)))
        return True
    wait_until(ready_and_answer, timeout=30, interval=0.05, desc="the new n2 ready")
    assert seen[0] == ({"online": True, "connections": 1, "nodes": {"n1": 1}},
                       {"online": True, "connections": 1, "nodes": {"n3": 1}}), seen
    cl.wait_nodes(n1, {"n1", "n2", "n3"}, timeout=5)


def test_standalone_writes_offline_events_from_kafka_and_http(bridge_factory, kafka):
    undelivered = kafka.unique_topic("offline")
    kafka.create_topic(undelivered, 1)
    b = bridge_factory(config={"kafka": {"undelivered_topic": undelivered}})
    st, doc, _ = b.json("GET", "/cluster")
    assert st == 200 and doc["mode"] == "standalone" and len(doc["nodes"]) == 1, doc
    off, on = unique_uid("off"), unique_uid("on")
    c, _ = b.native_client(on)
    kafka.produce(b.topic, '{"data":{"k":1}}', key=off)
    kafka.produce(b.topic, '{"data":{"k":2}}', key="*")
    item = {"user_id": off, "data": {"h": 1}}
    st, doc, _ = b.json("POST", "/push", json.dumps(item).encode())
    assert (st, doc) == (200, {"delivered": 0})
    st, _, _ = b.json("POST", "/push", json.dumps({"user_id": on, "data": 3}).encode())
    assert st == 200
    b.wait_metric("pushbridge_undelivered_total", 2)
    msgs = kafka.consume(undelivered, 10)
    assert [m["key"] for m in msgs] == [off.encode()] * 2, msgs
    values = sorted(m["value"] for m in msgs)
    assert values == sorted([b'{"data":{"k":1}}', json.dumps(item).encode()])
    assert all("pushbridge-reason=offline" in m["headers"] for m in msgs)
    assert user(b, off) == {"online": False, "connections": 0}


def test_refused_offline_writes_are_counted_and_said_in_readyz(bridge_factory, kafka):
    """SPEC §1: a write to the undelivered topic that Kafka refuses leaves delivery
    going: /readyz stays 200 with a warning naming the topic, and a metric counts it."""
    b = bridge_factory(config={"kafka": {"undelivered_topic": "not a topic!"}})
    on = unique_uid("on")
    c, _ = b.native_client(on)
    kafka.produce(b.topic, '{"data":1}', key=unique_uid("off"))
    kafka.produce(b.topic, '{"data":2}', key=on)
    assert c.recv_json(10)["data"] == 2
    wait_until(lambda: (b.metric("pushbridge_undelivered_failures_total") or 0) >= 1,
               timeout=35, desc="the refused write counted")
    st, doc, _ = b.json("GET", "/readyz")
    assert st == 200 and doc["ready"] is True, doc
    assert "kafka.undelivered_topic not a topic!" in doc["warning"], doc
    b.wait_log(r"cannot produce to kafka.undelivered_topic not a topic!")
