"""Runs the real pushbridge binary for a test: a JSON config on free
loopback ports, stderr captured to a file, readiness by polling /readyz,
SIGTERM at the end (and a failure if a sanitizer build exited badly)."""

import copy
import json
import os
import re
import signal
import subprocess
import urllib.parse
import uuid

from pbutil import die_with_parent, free_port, http_request, metric_value, parse_prometheus, wait_until
from wsclient import WsClient, WsHandshakeError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_BINARY = os.path.join(REPO, "build", "pushbridge")

SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: |"
                          r"SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer)|"
                          r"WARNING: ThreadSanitizer")

_asan_cache = {}

# Every client made through Bridge.ws(); conftest drops them after each test
# so bridges shared by a module do not pile up connections.
OPEN_CLIENTS = []


def binary_path():
    return os.environ.get("PB_BINARY", DEFAULT_BINARY)


def is_sanitized(path):
    """True when the binary was built with ASan (PB_ASAN=1 says so too, as
    tests/run.sh --tsan does for its ThreadSanitizer binary)."""
    if os.environ.get("PB_ASAN") == "1":
        return True
    if path not in _asan_cache:
        try:
            with open(path, "rb") as f:
                _asan_cache[path] = b"__asan_init" in f.read()
        except OSError:
            _asan_cache[path] = False
    return _asan_cache[path]


def deep_merge(base, over):
    """base updated by over, recursively for dicts; a value None in over
    deletes the key."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def run_cli(args, config=None, env=None, tmpdir=None, timeout=30.0, binary=None):
    """Run the binary to completion (for --check-config, --version, config
    errors). config: dict written as JSON (or str written verbatim) and
    passed as -c FILE. Returns CompletedProcess with str stdout/stderr."""
    binary = binary or binary_path()
    argv = [binary]
    if config is not None:
        path = os.path.join(tmpdir, f"cfg-{uuid.uuid4().hex[:8]}.json")
        with open(path, "w") as f:
            f.write(config if isinstance(config, str) else json.dumps(config, indent=2))
        argv += ["-c", path]
    argv += list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=full_env, timeout=timeout)
    r.stdout = r.stdout.decode(errors="replace")
    r.stderr = r.stderr.decode(errors="replace")
    return r


class Bridge:
    """One running pushbridge. Made by BridgeFactory.start()."""

    def __init__(self, factory, config, env, args, tmpdir, binary, topic, use_config=True):
        self.factory = factory
        self.config = config
        self.topic = topic
        self.tmpdir = tmpdir
        self.binary = binary
        self.public_port = int(config["listen"]["public"].rsplit(":", 1)[1])
        self.internal_port = int(config["listen"]["internal"].rsplit(":", 1)[1])
        self.name = f"bridge-{uuid.uuid4().hex[:6]}"
        self.config_path = os.path.join(tmpdir, f"{self.name}.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=2)
        self.log_path = os.path.join(tmpdir, f"{self.name}.stderr")
        self.argv = [binary] + (["-c", self.config_path] if use_config else []) + list(args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proc = None
        self.returncode = None
        self.expected_exit = False  # set when a test stops it on purpose
        self.clients = []
        self._san_offset = 0  # log position up to which sanitizer reports were judged
        self.sanitizer_reported = False  # a test already failed on a report of this bridge

    # ---- process ----------------------------------------------------------

    def _launch(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=self.env,
                                     preexec_fn=die_with_parent())
        log.close()

    def wait_ready(self, timeout=30.0):
        """Poll GET /readyz every 50 ms until 200 (fails early if the
        process exits)."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"pushbridge exited with {self.proc.returncode} "
                                     f"before ready:\n{self.log_tail()}")
            try:
                st, _, _ = self.http("GET", "/readyz", timeout=2.0)
            except OSError:
                return False
            return st == 200
        wait_until(ready, timeout=timeout, interval=0.05, desc="GET /readyz == 200")

    def wait_healthy(self, timeout=30.0):
        """Poll GET /healthz until 200 (listeners up, Kafka not needed)."""
        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"pushbridge exited with {self.proc.returncode}:\n"
                                     f"{self.log_tail()}")
            try:
                st, _, _ = self.http("GET", "/healthz", timeout=2.0)
            except OSError:
                return False
            return st == 200
        wait_until(healthy, timeout=timeout, interval=0.05, desc="GET /healthz == 200")

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        """Send sig and wait for the exit; returns the exit code (negative
        for death by signal). The exit is then expected: teardown does not
        judge it except for sanitizer reports."""
        self.expected_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(f"pushbridge did not exit within {timeout}s of {sig!r}")
        self.returncode = self.proc.returncode
        return self.returncode

    def wait_exit(self, timeout=20.0):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pushbridge still running after {timeout}s") from None

    def assert_alive(self):
        """Fail with the exit status and the log tail if the process ended."""
        if not self.alive:
            raise AssertionError(f"pushbridge died (exit status {self.proc.returncode}, "
                                 f"negative = signal):\n{self.log_tail(4000)}")

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def assigned(self):
        """Partitions of the bridge's topic in its last 'assigned ... in all' log line
        (the eager protocol's assignments are complete)."""
        lines = re.findall(r"partition\(s\) assigned, (\d+) in all: (.*)$", self.log_text(),
                           re.MULTILINE)
        if not lines:
            return set()
        m = re.search(re.escape(self.topic) + r"\[([\d,]+)\]", lines[-1][1])
        return {int(p) for p in m.group(1).split(",")} if m else set()

    def log_tail(self, nbytes=20000):
        t = self.log_text()
        return t[-nbytes:]

    def wait_log(self, regex, timeout=10.0, flags=re.MULTILINE):
        """Wait until the log matches regex; returns the match."""
        rx = re.compile(regex, flags)
        return wait_until(lambda: rx.search(self.log_text()), timeout=timeout,
                          desc=f"log line matching {regex!r}")

    def new_sanitizer_report(self):
        """The log text of a sanitizer report that appeared since the last
        call (None if none): lets the test that caused it fail, not a later
        one sharing the bridge."""
        log = self.log_text()
        m = SANITIZER_RE.search(log, self._san_offset)
        self._san_offset = len(log)
        if not m:
            return None
        self.sanitizer_reported = True
        start = log.rfind("\n", 0, max(0, m.start() - 2000)) + 1
        return log[start:start + 20000]

    def _teardown(self):
        """SIGTERM, wait; returns an error string when the run must fail."""
        for c in self.clients:
            c.abort()
        problems = []
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                problems.append("did not exit within 20 s of SIGTERM (killed)")
        rc = self.proc.returncode
        log = self.log_text()
        report = self.new_sanitizer_report()
        if report:
            problems.append("sanitizer report in the log")
        if (is_sanitized(self.binary) and rc != 0 and not self.expected_exit
                and not self.sanitizer_reported):
            # (A report already blamed on a test explains a bad exit status.)
            problems.append(f"sanitizer build exited with {rc}")
        if report or (problems and is_sanitized(self.binary)):
            return (f"{self.name}: " + "; ".join(problems) + "\n--- log ---\n"
                    + (report or log[-20000:]))
        return None

    # ---- HTTP -------------------------------------------------------------

    def http(self, method, path, body=None, headers=None, public=False, timeout=10.0):
        """(status, headers, body bytes) from the internal listener (public=True:
        the public one). body: bytes, str, or an object sent as JSON."""
        port = self.public_port if public else self.internal_port
        return http_request("127.0.0.1", port, method, path, body=body, headers=headers,
                            timeout=timeout)

    def json(self, method, path, body=None, headers=None, public=False):
        """(status, decoded JSON body or None if the body is not JSON, headers)."""
        st, hdrs, data = self.http(method, path, body=body, headers=headers, public=public)
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        return st, doc, hdrs

    def push(self, user_id, data, event=None, **extra):
        """POST /push one event; returns (status, JSON body)."""
        body = {"user_id": user_id, "data": data}
        if event is not None:
            body["event"] = event
        body.update(extra)
        st, doc, _ = self.json("POST", "/push", body)
        return st, doc

    def send(self, uid, message, method="GET"):
        q = urllib.parse.urlencode({"uid": uid, "message": message})
        if method == "GET":
            return self.json("GET", "/send?" + q)[:2]
        return self.json("POST", "/send", q.encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})[:2]

    def user_connections(self, uid):
        """Connection count from GET /users/{uid} (None if not answered)."""
        st, doc, _ = self.json("GET", "/users/" + urllib.parse.quote(uid, safe=""))
        if st != 200 or not isinstance(doc, dict):
            raise AssertionError(f"GET /users/{uid} answered {st} {doc!r}")
        return doc.get("connections")

    def wait_user_connections(self, uid, n, timeout=10.0):
        wait_until(lambda: self.user_connections(uid) == n, timeout=timeout,
                   desc=f"GET /users/{uid} connections == {n}")

    def stats(self):
        st, doc, _ = self.json("GET", "/stats")
        assert st == 200, f"GET /stats answered {st}"
        return doc

    def metrics_text(self):
        st, _, data = self.http("GET", "/metrics")
        assert st == 200, f"GET /metrics answered {st}"
        return data.decode()

    def metrics(self):
        return parse_prometheus(self.metrics_text())

    def metric(self, name, **labels):
        """Value of one metric (summed over unnamed labels); None if absent."""
        return metric_value(self.metrics(), name, **labels)

    def wait_metric(self, name, value, timeout=10.0, **labels):
        """Wait until metric(name, **labels) == value (absent counts as 0)."""
        def check():
            v = self.metric(name, **labels)
            return (v or 0) == value
        wait_until(check, timeout=timeout,
                   desc=f"{name}{labels} == {value} (now {self.metric(name, **labels)})")

    # ---- WebSocket ----------------------------------------------------------

    def ws(self, path="/ws", origin=None, headers=None, port=None, rcvbuf=None, timeout=10.0):
        """A connected WsClient on the public listener (raises
        WsHandshakeError with .status if the upgrade is refused)."""
        c = WsClient.connect("127.0.0.1", port or self.public_port, path=path, origin=origin,
                             headers=headers, rcvbuf=rcvbuf, timeout=timeout)
        c.user_probe = self._probe
        self.clients.append(c)
        OPEN_CLIENTS.append(c)
        return c

    def ws_status(self, path="/ws", origin=None, headers=None):
        """HTTP status of an upgrade attempt (101 when accepted)."""
        try:
            c = self.ws(path=path, origin=origin, headers=headers)
        except WsHandshakeError as e:
            return e.status
        c.close()
        return 101

    def _probe(self, uid):
        return self.user_connections(uid)

    def uid_client(self, uid):
        """A connection logged in with {"uid": uid}, registered server-side."""
        c = self.ws()
        c.login_uid(uid)
        return c

    def native_client(self, token, events=None):
        """(client, welcome) for a native login."""
        c = self.ws()
        return c, c.login_native(token, events=events)


class BridgeFactory:
    """Starts bridges against one Kafka broker; stops them all at teardown."""

    def __init__(self, kafka, tmpdir):
        self.kafka = kafka
        self.tmpdir = tmpdir
        self.bridges = []
        self._shared = {}

    def shared(self, **kwargs):
        """A bridge shared by several tests (started on first use with
        these arguments). If a test killed it (a crash is a bug the test
        reports), the next test gets a fresh one instead of a dead one."""
        key = json.dumps(kwargs, sort_keys=True, default=str)
        b = self._shared.get(key)
        if b is None or not b.alive:
            b = self(**kwargs)
            self._shared[key] = b
        return b

    def base_config(self, topic, group_id):
        return {
            "listen": {"public": f"127.0.0.1:{free_port()}",
                       "internal": f"127.0.0.1:{free_port()}"},
            "kafka": {"brokers": self.kafka.bootstrap if self.kafka else "127.0.0.1:1",
                      "topics": [topic], "group_id": group_id,
                      # Topics are fresh per test: start at their beginning so
                      # an event produced right after readiness is never
                      # skipped by a "latest" offset lookup racing it.
                      "properties": {"auto.offset.reset": "earliest"}},
            "auth": {"mode": "none"},
            "log": {"level": "debug"},
            # SPEC 11: the suite runs on two event-loop workers (PB_TEST_WORKERS=1:
            # the single loop, as tests/run.sh --asan runs it).
            "workers": int(os.environ.get("PB_TEST_WORKERS", "2")),
        }

    def __call__(self, config=None, env=None, args=(), wait_ready=True, partitions=1,
                 topic=None, create_topic=True, group_id=None, binary=None, timeout=30.0):
        """Start a bridge. config: overrides deep-merged into the base config
        (None values delete keys). topic: the topic to consume (default: a
        new unique one, created with `partitions` partitions)."""
        binary = binary or binary_path()
        if not os.path.exists(binary):
            raise AssertionError(f"pushbridge binary not found at {binary} (set PB_BINARY "
                                 "or build into build/)")
        if topic is None:
            topic = self.kafka.unique_topic() if self.kafka else f"t-{uuid.uuid4().hex[:8]}"
        if create_topic and self.kafka:
            self.kafka.create_topic(topic, partitions)
        group_id = group_id or f"g-{uuid.uuid4().hex[:10]}"
        cfg = deep_merge(self.base_config(topic, group_id), config or {})
        b = Bridge(self, cfg, env, args, self.tmpdir, binary, topic)
        self.bridges.append(b)
        b._launch()
        if wait_ready:
            b.wait_ready(timeout=timeout)
        return b

    def dev(self, env=None, args=(), wait_ready=True, binary=None, timeout=30.0):
        """Start `pushbridge --dev` (embedded Kafka, no config file) with the
        listeners moved to free ports through the environment."""
        binary = binary or binary_path()
        pub, internal = free_port(), free_port()
        full_env = {"PUSHBRIDGE_LISTEN_PUBLIC": f"127.0.0.1:{pub}",
                    "PUSHBRIDGE_LISTEN_INTERNAL": f"127.0.0.1:{internal}"}
        full_env.update(env or {})
        cfg = {"listen": {"public": full_env["PUSHBRIDGE_LISTEN_PUBLIC"],
                          "internal": full_env["PUSHBRIDGE_LISTEN_INTERNAL"]}}
        b = Bridge(self, cfg, full_env, ["--dev"] + list(args), self.tmpdir, binary,
                   "pushbridge.events", use_config=False)
        self.bridges.append(b)
        b._launch()
        if wait_ready:
            b.wait_ready(timeout=timeout)
        return b

    def teardown(self):
        errors = []
        for b in self.bridges:
            err = b._teardown()
            if err:
                errors.append(err)
        return errors
