"""A replicated Kafka cluster losing brokers under a steady flow (SPEC §1:
"on replicated topics the loss of a partition leader, and a rolling restart
of the brokers, lose and repeat nothing for a connected reader"; issue 20).

Three KRaft nodes (secure_kafka.KafkaCluster: replication factor 3,
min.insync.replicas 2), one topic, one user's events at 50 a second from an
idempotent acks=all producer, and two bridges in cluster mode (a consumer
group each), a client on each. First the partition's leader is killed with
-9 and brought back, then every broker is restarted in turn (SIGTERM):
each client must end with every event once, in order. The longest delay
from produce to the client's socket is printed (README "Failure modes").

Marked `cluster` (three JVMs: about 50 s); deselect with -m 'not cluster'."""

import json
import signal
import subprocess
import threading
import time

import pytest

from bridge import BridgeFactory
from pbutil import die_with_parent, unique_uid, wait_until
from secure_kafka import KafkaCluster

pytestmark = pytest.mark.cluster

RATE_INTERVAL = 0.02  # one event every 20 ms


class SteadyProducer:
    """kcat fed one event per interval by a thread: {"seq": n, "t": wall
    time} under one key. Idempotent with acks=all, so its retries through a
    leader change neither reorder nor repeat."""

    def __init__(self, bootstrap, topic, key):
        self.proc = subprocess.Popen(
            # -E: kcat would otherwise exit on librdkafka's "all brokers
            # down", which 2.0.2 reports for a moment when the one broker it
            # uses goes; a message it could not deliver is still an error.
            ["kcat", "-P", "-E", "-b", bootstrap, "-t", topic, "-k", key, "-D", "\n",
             "-X", "acks=all", "-X", "enable.idempotence=true",
             "-X", "message.timeout.ms=120000", "-X", "linger.ms=0"],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=die_with_parent(signal.SIGKILL))
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        nxt = time.monotonic()
        while not self._stop.is_set():
            doc = {"event": "tick", "data": {"seq": self.sent, "t": time.time()}}
            try:
                self.proc.stdin.write(json.dumps(doc).encode() + b"\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                return  # kcat exited: finish() reports how
            self.sent += 1
            nxt += RATE_INTERVAL
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def finish(self, timeout=150):
        """Stops feeding; waits until kcat delivered everything (exit 0)."""
        self._stop.set()
        self._thread.join()
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # kcat is gone: its exit status and stderr say why
        rc = self.proc.wait(timeout=timeout)
        err = self.proc.stderr.read().decode(errors="replace")
        assert rc == 0 and "delivery failed" not in err.lower(), \
            f"producer failed ({rc}): {err[-2000:]}"
        return self.sent


class Reader:
    """Reads a client's frames on a thread: [(seq, delay s)]."""

    def __init__(self, client):
        self.client = client
        self.got = []
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                text = self.client.recv_text(timeout=0.5)
            except TimeoutError:
                continue
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.error = e
                return
            d = json.loads(text)
            self.got.append((d["seq"], time.time() - d["t"]))

    def wait_for(self, n, timeout=90):
        wait_until(lambda: len(self.got) >= n or self.error, timeout=timeout,
                   desc=f"{n} events at the client (have {len(self.got)})")
        self._stop.set()
        self._thread.join()
        assert self.error is None, self.error
        return self.got


class PlainReader:
    """A plain librdkafka consumer (kcat -C, no group) on the same topic,
    its lines timed on arrival: the control that says how much of a delay
    is the cluster's and the producer's, not the bridge's."""

    def __init__(self, bootstrap, topic):
        self.proc = subprocess.Popen(
            ["kcat", "-C", "-u", "-q", "-b", bootstrap, "-t", topic, "-o", "beginning",
             "-f", "%s\n"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGKILL))
        self.got = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        for line in self.proc.stdout:
            d = json.loads(line)["data"]
            self.got.append((d["seq"], time.time() - d["t"]))

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self._thread.join()
        return self.got


class ReadySampler:
    """GET /readyz on each bridge every 200 ms on a thread: the answers
    that were not 200, with when."""

    def __init__(self, nodes):
        self.nodes, self.not_ready = nodes, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.2):
            for b in self.nodes:
                try:
                    st, doc, _ = b.json("GET", "/readyz")
                except OSError as e:
                    st, doc = None, str(e)
                if st != 200:
                    self.not_ready.append((time.time(), b.name, st, doc))

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.not_ready


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = KafkaCluster(str(tmp_path_factory.mktemp("cluster")))
    c.start()
    yield c
    c.stop()


@pytest.fixture
def factory(cluster, tmp_path):
    f = BridgeFactory(cluster.brokers[0], str(tmp_path))
    yield f
    errors = f.teardown()
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


def bridges(factory, cluster, topic, n=2):
    group = f"g-{unique_uid('r')}"
    push = cluster.brokers[0].unique_topic("push")
    out = []
    for i in range(n):
        cfg = {"kafka": {"brokers": cluster.bootstrap},
               "cluster": {"mode": "kafka", "node_name": f"n{i + 1}"},
               "push": {"topic": push}}
        out.append(factory(config=cfg, topic=topic, create_topic=False, group_id=group))
    return out


def judge(got, sent, name):
    seqs = [s for s, _ in got]
    dups = len(seqs) - len(set(seqs))
    missing = sorted(set(range(sent)) - set(seqs))
    assert not missing and not dups, f"{name}: {len(missing)} missing (first {missing[:5]}), " \
                                     f"{dups} repeated"
    assert seqs == list(range(sent)), f"{name}: out of order"
    return max(d for _, d in got)


def isr_full(cluster, topic):
    try:
        return len(cluster.isr(topic)) == 3
    except Exception:  # noqa: BLE001 - a broker between states
        return False


def test_leader_killed_then_rolling_restart_lose_and_repeat_nothing(factory, cluster):
    topic = cluster.brokers[0].unique_topic("repl")
    cluster.any.create_topic(topic, 1)
    nodes = bridges(factory, cluster, topic)
    uid = unique_uid()
    readers = [Reader(b.uid_client(uid)) for b in nodes]
    plain = PlainReader(cluster.bootstrap, topic)
    producer = SteadyProducer(cluster.bootstrap, topic, uid)
    sampler = ReadySampler(nodes)
    wait_until(lambda: all(len(r.got) >= 50 for r in readers), timeout=30,
               desc="the flow reaching both clients")

    # 1. The partition's leader dies (-9) while events flow.
    leader = cluster.leader(topic)
    killed_at = time.time()
    cluster.by_id(leader).kill()
    wait_until(lambda: cluster.leader(topic) not in (-1, leader), timeout=30,
               desc="a new leader elected")
    t_new_leader = time.time() - killed_at
    seen = producer.sent
    wait_until(lambda: all(len(r.got) >= seen for r in readers), timeout=60,
               desc="the flow going on after the leader's death")
    cluster.by_id(leader).start()
    wait_until(lambda: isr_full(cluster, topic), timeout=60, desc="the old leader back in sync")
    n_after_kill = producer.sent

    # 2. Every broker restarted in turn (controlled shutdown), under the flow.
    for b in cluster.brokers:
        b.stop()
        b.start()
        wait_until(lambda: isr_full(cluster, topic), timeout=60,
                   desc=f"node {b._node_id} back in sync")

    sent = producer.finish()
    not_ready = sampler.stop()
    delays = []
    for i, r in enumerate(readers):
        got = r.wait_for(sent)
        judge(got, sent, f"bridge n{i + 1}")
        delays.append((max(d for s, d in got if s < n_after_kill),
                       max(d for s, d in got if s >= n_after_kill)))
    control = plain.stop()
    ctl_kill = max((d for s, d in control if s < n_after_kill), default=-1)
    ctl_roll = max((d for s, d in control if s >= n_after_kill), default=-1)
    for b in nodes:
        b.wait_ready(timeout=30)
        st, doc, _ = b.json("GET", "/readyz")
        assert st == 200, doc
    print(f"\n[failure modes] {sent} events; new leader after {t_new_leader:.1f} s; "
          f"longest delay: leader killed {max(d[0] for d in delays):.2f} s, "
          f"rolling restart {max(d[1] for d in delays):.2f} s (a plain kcat consumer: "
          f"{ctl_kill:.2f} s, {ctl_roll:.2f} s); /readyz not 200 "
          f"{len(not_ready)} time(s) of {len(nodes)} bridges sampled every 200 ms: "
          f"{not_ready[:3]}")
