#!/usr/bin/env python3
"""Rolling restart of the bridges under load (issue 20, item 4).

A real Kafka broker (tests/integration/kafka_harness.py) and three real
pushbridge nodes in cluster mode; N clients (2,000; --quick 300), each the real
web/pushbridge.js under Node (tests/soak/rolling_clients.mjs) logged in as a
user of its own, spread over the nodes by a round-robin balancer. A kcat
producer sends a steady flow of events keyed by those users ({"s": seq} per
user). Then each node in turn is taken out of the balancer, sent SIGTERM (its
clients get 1001 and reconnect elsewhere with `resume`), restarted on the
same name and ports once its clients are back, and put back (--balancer
blind: it stays in the balancer, so retries meet the stopped and the
starting node, and it restarts after its down time). At the end every
client must have every event of its user exactly once, in order, on the
socket (before the module's dedup) and as the app sees it; every client must
have resumed (`"resumed": true`) after each loss. Prints the time to resume
(close → welcome of the resumed connection) p50/p90/p99/max, clients
reconnected, events, lost/duplicated/out-of-order. Exit 0 only when every
check passed. Standard library only; see README.md beside this file.
"""

import argparse
import atexit
import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from bridge import BridgeFactory  # noqa: E402
from kafka_harness import KafkaBroker  # noqa: E402
from pbutil import die_with_parent, wait_until  # noqa: E402

T_START = time.monotonic()
NODES = ("n1", "n2", "n3")


def log(msg):
    print(f"[{time.monotonic() - T_START:7.1f}s] {msg}", flush=True)


class Producer:
    """kcat -P fed by a thread at a fixed rate: event n goes to user
    n % users with {"s": n // users, "t": wall time in ms}, so each user's
    events are numbered 0, 1, 2, ... and what every user must have follows
    from the total."""

    def __init__(self, bootstrap, topic, users, prefix, rate):
        self.users, self.prefix, self.rate = users, prefix, rate
        self.proc = subprocess.Popen(
            ["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-D", "\n",
             "-X", "linger.ms=5", "-X", "message.timeout.ms=60000"],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=die_with_parent(signal.SIGKILL))
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        t0 = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - t0) * self.rate)
            lines = []
            t_ms = int(time.time() * 1000)
            while self.sent < due:
                n = self.sent
                doc = {"event": "tick", "data": {"s": n // self.users, "t": t_ms}}
                lines.append(f"{self.prefix}{n % self.users}\t{json.dumps(doc)}\n")
                self.sent += 1
            try:
                if lines:
                    self.proc.stdin.write("".join(lines).encode())
                    self.proc.stdin.flush()
            except BrokenPipeError:
                return  # kcat exited: finish() says how
            self._stop.wait(0.01)

    def finish(self, timeout=90):
        """Stop feeding; wait until kcat delivered all (exit 0)."""
        self._stop.set()
        self._thread.join()
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self.proc.wait(timeout=timeout)
        err = self.proc.stderr.read().decode(errors="replace")
        return rc == 0 and "failed" not in err.lower(), err

    def expected(self):
        """{user: events produced for it}."""
        q, r = divmod(self.sent, self.users)
        return {f"{self.prefix}{i}": q + (1 if i < r else 0) for i in range(self.users)}


class Clients:
    """The Node process holding the clients; one JSON line per command."""

    def __init__(self, n, nodes, prefix, workdir):
        self.err_path = os.path.join(workdir, "clients.stderr")
        err = open(self.err_path, "wb")
        urls = ",".join(f"{name}=ws://127.0.0.1:{b.public_port}/ws" for name, b in nodes.items())
        self.proc = subprocess.Popen(
            ["node", os.path.join(HERE, "rolling_clients.mjs"), "--clients", str(n),
             "--nodes", urls, "--prefix", prefix],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            preexec_fn=die_with_parent(signal.SIGKILL))
        err.close()
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def cmd(self, timeout=30, **msg):
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the clients did not answer {msg['cmd']} within {timeout}s")
        if line is None:
            with open(self.err_path, errors="replace") as f:
                raise AssertionError(f"the clients' process ended:\n{f.read()[-4000:]}")
        doc = json.loads(line)
        if "error" in doc:
            raise AssertionError(f"clients: {doc['error']}")
        return doc

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.cmd(cmd="quit", timeout=10)
            except (AssertionError, OSError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Checks:
    def __init__(self):
        self.items = []

    def add(self, name, ok, detail=""):
        self.items.append((name, bool(ok), detail))
        log(f"{'PASS' if ok else 'FAIL'} {name}{' — ' + detail if detail else ''}")
        return ok


def start_cluster(factory, kafka, partitions):
    topic = kafka.unique_topic("rolling")
    kafka.create_topic(topic, partitions)
    common = {"push": {"topic": kafka.unique_topic("push")},
              "log": {"level": "info"}}
    presence = kafka.unique_topic("presence")
    group = f"g-rolling-{os.getpid()}"
    bridges = {}
    for name in NODES:
        cfg = dict(common, cluster={"mode": "kafka", "node_name": name,
                                    "presence_topic": presence})
        bridges[name] = factory(config=cfg, topic=topic, create_topic=False,
                                group_id=group, wait_ready=False)
    for b in bridges.values():
        b.wait_ready(timeout=90)
    return topic, bridges


def wait_all_open(a, checks, clients, name, held, t0, elsewhere):
    """Every client open again (elsewhere: none on the stopped node)."""
    def back():
        st = clients.cmd(cmd="status")
        ok = st["open"] == a.clients and not (elsewhere and st["per_node"].get(name))
        return st if ok else None
    what = f"{name}: its {held} clients reconnected" + (" elsewhere" if elsewhere else "")
    try:
        st = wait_until(back, timeout=a.reconnect_timeout, interval=0.1, desc=what)
    except AssertionError as e:
        checks.add(what, False, str(e)[:300])
        return None
    t_back = time.monotonic() - t0
    checks.add(what, True, f"all {a.clients} open {t_back:.1f}s after SIGTERM: {st['per_node']}")
    return t_back


def restart_each(a, checks, bridges, clients, restarts):
    """SIGTERM each node in turn under the flow and restart it. Behind the
    health-checked balancer the node leaves it first, its clients are all
    back elsewhere before it restarts, and it returns once ready; behind the
    blind one it restarts after the down time and its clients come back
    wherever their retries land."""
    health = a.balancer == "health"
    for name, b in bridges.items():
        if health:
            clients.cmd(cmd="down", node=name)
        held = clients.cmd(cmd="status")["per_node"].get(name, 0)
        t0 = time.monotonic()
        rc = b.stop(signal.SIGTERM, timeout=30)
        t_exit = time.monotonic() - t0
        checks.add(f"{name}: SIGTERM exits 0", rc == 0, f"exit {rc} after {t_exit:.1f}s")
        t_back = wait_all_open(a, checks, clients, name, held, t0, True) if health else None
        time.sleep(a.down_time)  # the node stays down under the flow (the scenario's, not a wait)
        t1 = time.monotonic()
        b._launch()  # same config: same node name, ports, group
        b.wait_ready(timeout=90)
        t_ready = time.monotonic() - t1
        if health:
            clients.cmd(cmd="up", node=name)
        else:
            t_back = wait_all_open(a, checks, clients, name, held, t0, False)
        restarts.append((name, held, t_exit, t_back, t_ready))
        log(f"{name} restarted: ready in {t_ready:.1f}s")
        time.sleep(a.settle)  # the flow goes on between restarts (not a synchronisation)


def verify(a, checks, producer, clients):
    ok, err = producer.finish()
    checks.add("producer delivered every event", ok, err[-300:] if not ok else
               f"{producer.sent} events")
    expect = producer.expected()

    def complete():
        doc = clients.cmd(cmd="check", expect=expect)
        return doc if doc["complete"] == doc["of"] else None
    try:
        wait_until(complete, timeout=a.drain_timeout, interval=0.2,
                   desc="every client has every event of its user")
    except AssertionError as e:
        log(str(e)[:500])
    return clients.cmd(cmd="report", expect=expect, timeout=60)


def judge(checks, rep, restarts):
    raw, app = rep["raw"], rep["app"]
    checks.add("every event once, in order, on the socket",
               not (raw["lost"] or raw["dup"] or raw["ooo"] or raw["beyond"]),
               f"lost {raw['lost']}, duplicated {raw['dup']}, out of order {raw['ooo']}, "
               f"unknown {raw['beyond']}")
    checks.add("every event once, in order, to the app (module)",
               not (app["lost"] or app["dup"] or app["ooo"]),
               f"lost {app['lost']}, duplicated {app['dup']}, out of order {app['ooo']}")
    held = sum(r[1] for r in restarts)
    checks.add("every lost connection resumed (resumed: true)",
               rep["resumes"] >= held and rep["resumed_false"] == 0,
               f"{rep['resumes']} resumes for {held} connections closed by SIGTERM, "
               f"{rep['resumed_false']} resumed:false")
    checks.add("every client open at the end", rep["not_open"] == 0,
               f"{rep['not_open']} not open")
    for b in rep["bad"]:
        log(f"  bad client: {json.dumps(b)}")


def stop_all(checks, bridges):
    """SIGTERM at the end: each node exits 0, with no sanitizer report in
    its log (an ASan build as PB_BINARY)."""
    for name, b in bridges.items():
        rc = b.stop(signal.SIGTERM, timeout=30)
        report = b.new_sanitizer_report()
        checks.add(f"{name}: exits 0 at the end, no sanitizer report", rc == 0 and not report,
                   f"exit {rc}" + (f"; {report[:300]}" if report else ""))


def summary(a, checks, rep, restarts, producer, total, flow_s):
    mode = "quick" if a.quick else "full"
    print("\n" + "=" * 78)
    print(f"pushbridge rolling restart ({mode}, real Kafka) in {total:.0f}s")
    if rep:
        r = rep["resume_ms"]
        fmt = lambda v: "-" if v is None else f"{v:.0f} ms"  # noqa: E731
        print(f"  3 nodes in cluster mode, {a.balancer} balancer, {a.clients} clients "
              f"(web/pushbridge.js), {a.rate} events/s for {flow_s:.0f}s: {producer.sent} events")
        for name, held, t_exit, t_back, t_ready in restarts:
            print(f"  {name}: SIGTERM exit {t_exit:.1f}s, its {held} clients all back in "
                  f"{'-' if t_back is None else f'{t_back:.1f}s'}, restarted ready in {t_ready:.1f}s")
        print(f"  clients reconnected: {rep['reconnected']} ({rep['resumes']} resumes, "
              f"{rep['resumed_false']} resumed:false, {rep['failed_opens']} failed opens; "
              f"close codes {rep['close_codes']})")
        print(f"  caught up by resume: {rep['caught_up']} events produced before the welcome of "
              f"a resumed connection arrived on it, on {rep['caught_up_resumes']} of the resumes")
        print(f"  time to resume (close → welcome): p50 {fmt(r['p50'])}, p90 {fmt(r['p90'])}, "
              f"p99 {fmt(r['p99'])}, max {fmt(r['max'])}")
        raw, app = rep["raw"], rep["app"]
        print(f"  events: expected {rep['expected']}, on the sockets {rep['frames']} "
              f"(lost {raw['lost']}, dup {raw['dup']}, out of order {raw['ooo']}), "
              f"to the app {rep['delivered']} (lost {app['lost']}, dup {app['dup']}, "
              f"out of order {app['ooo']})")
    print("-" * 78)
    for name, ok, detail in checks.items:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}" + (f" — {detail[:200]}" if detail else ""))
    failed = sum(1 for c in checks.items if not c[1])
    print(f"rolling: {len(checks.items) - failed} passed, {failed} failed")
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 clients, a short flow (CI)")
    ap.add_argument("--clients", type=int, help="clients (default 2000, quick 300)")
    ap.add_argument("--rate", type=int, help="events/s in all (default 1000, quick 300)")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=None, help="flow before the first restart (s)")
    ap.add_argument("--settle", type=float, default=None, help="flow between restarts (s)")
    ap.add_argument("--down-time", type=float, default=None,
                    help="how long a node stays down once its clients are back (s)")
    ap.add_argument("--balancer", choices=("health", "blind"), default="health",
                    help="health: a node leaves the balancer before its SIGTERM and returns once "
                         "ready; blind: never (clients meet the stopped and the starting node)")
    ap.add_argument("--reconnect-timeout", type=float, default=None,
                    help="bound for a node's clients to be back (s; default 60, blind 150)")
    ap.add_argument("--drain-timeout", type=float, default=60.0)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    a = ap.parse_args()
    a.clients = a.clients or (300 if a.quick else 2000)
    a.rate = a.rate or (300 if a.quick else 1000)
    a.warmup = a.warmup if a.warmup is not None else (2.0 if a.quick else 5.0)
    a.down_time = a.down_time if a.down_time is not None else (1.0 if a.quick else 3.0)
    a.reconnect_timeout = a.reconnect_timeout or (150.0 if a.balancer == "blind" else 60.0)
    a.settle = a.settle if a.settle is not None else (1.0 if a.quick else 3.0)
    binary = os.path.abspath(os.environ.get("PB_BINARY", os.path.join(REPO, "build", "pushbridge")))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.clients + 1024  # each node may hold every client; Node holds them all
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))

    workdir = tempfile.mkdtemp(prefix="pb-rolling-")
    checks, kafka, factory, clients, producer = Checks(), None, None, None, None
    rep, restarts, flow_s = None, [], 0.0

    def cleanup():
        if clients is not None:
            clients.stop()
        if factory is not None:
            for b in factory.bridges:
                if b.proc is not None and b.proc.poll() is None:
                    b.proc.kill()
                    b.proc.wait(10)
        if kafka is not None:
            kafka.stop()
    atexit.register(cleanup)
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    t0 = time.monotonic()
    try:
        for tool in ("kcat", "java", "node"):
            if shutil.which(tool) is None:
                raise AssertionError(f"{tool} not found on PATH (run tests/soak/run.sh)")
        if not os.path.exists(os.path.join(HERE, "node_modules", "ws")):
            raise AssertionError("tests/soak/node_modules/ws missing (tests/soak/run.sh runs npm ci)")
        if not os.path.exists(binary):
            raise AssertionError(f"{binary} missing (cmake --build build)")
        log("starting the Kafka broker (KRaft) ...")
        os.makedirs(os.path.join(workdir, "kafka"))
        kafka = KafkaBroker(workdir=os.path.join(workdir, "kafka"))
        kafka.start(timeout=120)
        factory = BridgeFactory(kafka, os.path.join(workdir, "bridges"))
        os.makedirs(factory.tmpdir)
        topic, bridges = start_cluster(factory, kafka, a.partitions)
        log(f"3 nodes ready on {topic}; connecting {a.clients} clients")
        prefix = f"r{os.getpid()}-"
        clients = Clients(a.clients, bridges, prefix, workdir)
        st = clients.cmd(cmd="start", timeout=150)
        if not checks.add(f"{a.clients} clients logged in", st["ok"],
                          f"{st['open']} open: {st['per_node']}"):
            raise AssertionError("not every client logged in")
        log(f"flow of {a.rate} events/s starts")
        t_flow = time.monotonic()
        producer = Producer(kafka.bootstrap, topic, a.clients, prefix, a.rate)
        time.sleep(a.warmup)  # the flow runs before the first restart (not a synchronisation)
        restart_each(a, checks, bridges, clients, restarts)
        flow_s = time.monotonic() - t_flow
        log(f"stopping the flow after {producer.sent} events; waiting for every client's")
        rep = verify(a, checks, producer, clients)
        judge(checks, rep, restarts)
        stop_all(checks, bridges)
    except KeyboardInterrupt as e:
        checks.add("run", False, f"interrupted ({e})")
    except Exception as e:  # noqa: BLE001
        import traceback
        checks.add("run", False, f"{e!r}\n{traceback.format_exc()}")
    finally:
        cleanup()
    failed = summary(a, checks, rep, restarts, producer, time.monotonic() - t0, flow_s)
    if failed or a.keep:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed or not checks.items else 0


if __name__ == "__main__":
    sys.exit(main())
