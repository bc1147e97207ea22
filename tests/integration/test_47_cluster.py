"""Cluster mode (SPEC §3, §8): three real bridges on loopback and one real
broker. Every node reads every partition under a group of its own, HTTP
pushes go through push.topic and reach every node's connections exactly
once (answered 202 with their partition and offset), a node killed with -9
loses nothing for the others' clients and comes back without replaying, a
fourth node joins with no change to the others. In standalone mode a bridge
that shares its group with another says so."""

import json
import signal
import time

import pytest

from pbutil import unique_uid, wait_until


def ev(seq, **extra):
    env = {"event": "note", "data": {"seq": seq}}
    env.update(extra)
    return json.dumps(env)


class Cluster:
    def __init__(self, factory, kafka, n=3, partitions=3, extra=None):
        self.factory, self.kafka = factory, kafka
        self.topic = kafka.unique_topic()
        kafka.create_topic(self.topic, partitions)
        self.push_topic = kafka.unique_topic("push")
        self.group = f"g-{unique_uid('c')}"
        self.extra = extra or {}
        self.nodes = [self.start(f"n{i + 1}") for i in range(n)]

    def config(self, name):
        cfg = {"cluster": {"mode": "kafka", "node_name": name},
               "push": {"topic": self.push_topic}}
        for k, v in self.extra.items():
            cfg.setdefault(k, {}).update(v)
        return cfg

    def start(self, name, listen=None, **kw):
        cfg = self.config(name)
        if listen:  # the same ports: the same static member of its group
            cfg["listen"] = dict(listen)
        return self.factory(config=cfg, topic=self.topic, create_topic=False,
                            group_id=self.group, **kw)


@pytest.fixture(scope="module")
def cluster(module_bridge_factory, kafka):
    return Cluster(module_bridge_factory, kafka)


def recv_seqs(c, n, timeout=15):
    return [c.recv_json(timeout)["data"]["seq"] for _ in range(n)]


def test_each_node_reads_every_partition_under_its_own_group(cluster):
    for i, b in enumerate(cluster.nodes):
        b.wait_log(rf"as group {cluster.group}\.n{i + 1},")
        wait_until(lambda b=b: b.stats()["group_partitions"] == {"assigned": 4, "total": 4},
                   timeout=15, desc="the topic's 3 partitions and push.topic's one")
        assert b.stats()["group_shared"] is False


def test_a_user_on_node3_gets_events_from_every_partition(cluster, kafka):
    uid = unique_uid()
    c3, _ = cluster.nodes[2].native_client(uid)
    c1, _ = cluster.nodes[0].native_client(uid)
    for p in range(3):
        kafka.produce(cluster.topic, ev(p), key=uid, partition=p)
    assert sorted(recv_seqs(c3, 3)) == [0, 1, 2]
    assert sorted(recv_seqs(c1, 3)) == [0, 1, 2]


def test_http_push_to_node1_reaches_nodes_2_and_3_exactly_once(cluster):
    n1, n2, n3 = cluster.nodes
    uid = unique_uid()
    c2, _ = n2.native_client(uid)
    c3, _ = n3.native_client(uid)
    st, doc, _ = n1.json("POST", "/push", json.dumps({"user_id": uid, "data": {"seq": 1}}).encode())
    assert st == 202, doc
    assert set(doc) == {"partition", "offset"} and doc["offset"] >= 0
    assert recv_seqs(c2, 1) == [1] and recv_seqs(c3, 1) == [1]
    # A batch: one result per item, errors in place.
    body = json.dumps([{"user_id": uid, "data": {"seq": 2}}, {"data": 0},
                       {"uid": uid, "message": {"seq": 3}}]).encode()
    st, doc, _ = n1.json("POST", "/push", body)
    assert st == 202, doc
    res = doc["results"]
    assert "offset" in res[0] and res[1]["error"] == "missing_field" and "offset" in res[2]
    assert recv_seqs(c2, 2) == [2, 3] and recv_seqs(c3, 2) == [2, 3]
    # /send: the node cannot know where the user is connected: 202 too.
    st, doc, _ = n1.json("GET", f"/send?uid={uid}&message=hello")
    assert st == 202, doc
    assert c2.recv_json(15)["data"] == "hello" and c3.recv_json(15)["data"] == "hello"
    c2.no_message(0.5)
    c3.no_message(0.1)
    assert n1.metric("pushbridge_push_requests_total", status="202") >= 3


def test_broadcast_reaches_every_nodes_clients(cluster):
    clients = [b.native_client(unique_uid())[0] for b in cluster.nodes]
    st, doc, _ = cluster.nodes[1].json("POST", "/broadcast", b'{"event":"all","data":{"seq":7}}')
    assert st == 202, doc
    for c in clients:
        m = c.recv_json(15)
        assert (m["event"], m["data"]) == ("all", {"seq": 7})
        c.no_message(0.2)


def test_push_validation_errors_are_answered_at_once(cluster):
    st, doc, _ = cluster.nodes[0].json("POST", "/push", b'{"data":1}')
    assert (st, doc["error"]) == (400, "missing_field")
    st, doc, _ = cluster.nodes[0].json("POST", "/push", b'not json')
    assert (st, doc["error"]) == (400, "bad_json")


def test_kill_9_loses_nothing_for_the_others_and_the_node_comes_back_without_replay(
        bridge_factory, kafka):
    cl = Cluster(bridge_factory, kafka)
    n1, n2, n3 = cl.nodes
    uid = unique_uid()
    c2, _ = n2.native_client(uid)
    c3, _ = n3.native_client(uid)
    for chunk in range(4):
        kafka.produce_many(cl.topic, [(uid, ev(chunk * 50 + i)) for i in range(50)])
        if chunk == 1:
            n1.stop(signal.SIGKILL)
    want = list(range(200))
    assert recv_seqs(c2, 200) == want
    assert recv_seqs(c3, 200) == want
    # Back under its name: its group's offsets say where it was; what it
    # missed is history (for clients that resume), not live events.
    n1b = cl.start("n1", listen=n1.config["listen"])
    fresh, _ = n1b.native_client(uid)
    fresh.no_message(1.0)
    kafka.produce(cl.topic, ev(200), key=uid)
    for c in (fresh, c2, c3):
        assert recv_seqs(c, 1) == [200]


def test_a_fourth_node_needs_no_change_to_the_others(bridge_factory, kafka):
    cl = Cluster(bridge_factory, kafka, n=2)
    n4 = cl.start("n4")
    uid = unique_uid()
    c4, _ = n4.native_client(uid)
    st, doc, _ = cl.nodes[0].json("POST", "/push", json.dumps({"user_id": uid,
                                                              "data": {"seq": 1}}).encode())
    assert st == 202
    kafka.produce(cl.topic, ev(2), key=uid)
    assert sorted(recv_seqs(c4, 2)) == [1, 2]


def test_push_answers_503_when_kafka_is_gone(bridge_factory, kafka):
    cl = Cluster(bridge_factory, kafka, n=1)
    b = cl.nodes[0]
    kafka.stop()
    try:
        t0 = time.monotonic()
        st, doc, _ = b.json("POST", "/push", b'{"user_id":"x","data":1}')
        elapsed = time.monotonic() - t0
    finally:
        kafka.start()
    assert (st, doc["error"]) == (503, "kafka_unavailable"), doc
    assert elapsed < 8, elapsed
    b.assert_alive()


def test_keys_of_users_not_here_are_skipped_unparsed(bridge_factory, kafka):
    cl = Cluster(bridge_factory, kafka, n=1,
                 extra={"state": {"max_tasks_per_user": 0}, "history": {"max_events": 0}})
    b = cl.nodes[0]
    uid = unique_uid()
    c, _ = b.native_client(uid)
    before = b.metric("pushbridge_events_skipped_total") or 0
    # Malformed, but for nobody here: never even parsed.
    kafka.produce_many(cl.topic, [("nobody-here", "not json"), ("nobody-here", ev(1)),
                                  ("*", ev(2)), (uid, ev(3))])
    assert sorted(recv_seqs(c, 2)) == [2, 3]   # two partitions: either order
    b.wait_metric("pushbridge_events_skipped_total", before + 2)
    assert (b.metric("pushbridge_events_dropped_total", topic=cl.topic, reason="not_json") or 0) == 0


def test_cluster_mode_needs_the_internal_listener_on_its_own_port(run_cli):
    r = run_cli(["--check-config"], config={
        "listen": {"public": "127.0.0.1:9700", "internal": "127.0.0.1:9700"},
        "auth": {"mode": "none"}, "cluster": {"mode": "kafka"}})
    assert r.returncode == 2
    assert "cluster.mode kafka needs the internal listener on a port of its own" in r.stderr


def test_standalone_bridges_sharing_a_group_say_so(bridge_factory, kafka):
    a = bridge_factory(partitions=2)
    b = bridge_factory(topic=a.topic, create_topic=False, group_id=a.config["kafka"]["group_id"])
    for x in (a, b):
        wait_until(lambda x=x: x.stats()["group_shared"], timeout=30,
                   desc="the shared group noticed")
        st = x.stats()
        assert st["group_partitions"] == {"assigned": 1, "total": 2}, st
        assert "another consumer shares kafka.group_id" in st["group_warning"]
        code, doc, _ = x.json("GET", "/readyz")
        assert code == 200 and "another consumer shares kafka.group_id" in doc["warning"]
        assert x.metric("pushbridge_kafka_group_shared") == 1
        x.wait_log(r"warn .*assigned 1 of 2 partitions: another consumer shares kafka\.group_id")
    a.stop()
    wait_until(lambda: not b.stats()["group_shared"], timeout=60, desc="b alone again")


def test_a_client_of_a_killed_node_resumes_on_another_with_nothing_lost(bridge_factory, kafka):
    cl = Cluster(bridge_factory, kafka, n=2)
    n1, n2 = cl.nodes
    uid = unique_uid()
    c, _ = n1.native_client(uid)
    kafka.produce_many(cl.topic, [(uid, ev(i)) for i in range(10)])
    got = [c.recv_json(15) for _ in range(10)]
    n1.stop(signal.SIGKILL)
    # While the client finds another node, the job goes on: events and an
    # HTTP push taken by the surviving node.
    kafka.produce_many(cl.topic, [(uid, ev(i)) for i in range(10, 20)])
    st, _, _ = n2.json("POST", "/push", json.dumps({"user_id": uid, "data": {"seq": 20}}).encode())
    assert st == 202
    wait_until(lambda: (n2.metric("pushbridge_events_consumed_total", topic=cl.topic) or 0) >= 20)
    c2 = n2.ws()
    c2.send_json({"type": "auth", "token": uid, "resume": got[-1]["pos"]})
    welcome = c2.recv_json(10)
    assert welcome["resumed"] is True, welcome
    assert sorted(recv_seqs(c2, 11)) == list(range(10, 21))
    c2.no_message(0.5)
