"""Small helpers shared by the integration harness: free ports, bounded
polling, HTTP calls, Prometheus text parsing, and one thread of the bridge
stopped. Standard library only (pytest, for a skip, where it is imported)."""

import ctypes
import http.client
import json
import os
import random
import re
import signal
import socket
import time

# Ports handed out in this process: never hand the same one out twice, so a
# broker restart and a bridge started later cannot collide.
_handed_out = set()


# Ports handed out come from below Linux's ephemeral range (32768-60999 by
# default): a port the kernel picked for "bind to 0" could be taken by any
# outgoing connection (a load generator, a broker client) between this check
# and the bridge's own bind, which made listeners fail with "in use" on a
# busy machine.
_PORT_RANGE = (20000, 32767)


def free_port():
    """A TCP port that nothing listens on right now, on any address, and that
    no outgoing connection will take meanwhile."""
    low, high = _PORT_RANGE
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            high = min(high, int(f.read().split()[0]) - 1)
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(1000):
        port = random.randint(low, high)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port found in {low}-{high}")


def die_with_parent(sig=signal.SIGTERM):
    """A preexec_fn for subprocess.Popen: the child gets `sig` when the test
    process goes away, however it ends, so no broker or bridge outlives a
    killed test run and holds on to its ports."""
    def preexec():
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    return preexec


def wait_until(fn, timeout=10.0, interval=0.05, desc="condition"):
    """Poll fn() until it returns something truthy; return that value.

    Raises AssertionError naming desc (and the last value or exception seen)
    once timeout seconds have passed. This is the only way tests wait."""
    deadline = time.monotonic() + timeout
    last = None
    last_exc = None
    while True:
        try:
            last = fn()
            last_exc = None
            if last:
                return last
        except AssertionError:
            raise
        except Exception as e:  # keep polling; report the last error
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f"last error: {last_exc!r}" if last_exc else f"last value: {last!r}"
            raise AssertionError(f"timed out after {timeout}s waiting for {desc} ({detail})")
        time.sleep(interval)


def http_request(host, port, method, path, body=None, headers=None, timeout=10.0):
    """One request on a fresh connection. body may be bytes, str, or a
    JSON-able object (then sent as application/json).

    Returns (status, headers as a case-insensitive HTTPMessage, body bytes)."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, bytearray, str)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, data
    finally:
        conn.close()


_SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$')
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape_label(v):
    return v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def parse_prometheus(text):
    """Parse Prometheus text exposition into {name: [(labels dict, value)]}.

    Raises ValueError on a line that is neither a comment nor a valid sample,
    so a malformed exposition fails the test that reads it."""
    out = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise ValueError(f"metrics line {lineno} is not a valid sample: {line!r}")
        name, labels_s, value_s = m.group(1), m.group(2), m.group(3)
        labels = {}
        if labels_s:
            pos = 0
            while pos < len(labels_s):
                lm = _LABEL_RE.match(labels_s, pos)
                if not lm or lm.end() == pos:
                    raise ValueError(f"metrics line {lineno}: bad labels {labels_s!r}")
                labels[lm.group(1)] = _unescape_label(lm.group(2))
                pos = lm.end()
        try:
            value = float(value_s)
        except ValueError:
            raise ValueError(f"metrics line {lineno}: bad value {value_s!r}") from None
        out.setdefault(name, []).append((labels, value))
    return out


def metric_value(parsed, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`; None when
    the metric has no such sample at all."""
    samples = parsed.get(name)
    if not samples:
        return None
    total = None
    for lab, val in samples:
        if all(lab.get(k) == str(v) for k, v in labels.items()):
            total = (total or 0.0) + val
    return total


_uid_seq = [0]


def unique_uid(prefix="u"):
    """A user ID no other test uses."""
    import uuid as _uuid
    _uid_seq[0] += 1
    return f"{prefix}{_uid_seq[0]}-{_uuid.uuid4().hex[:6]}"


def envelope(data=None, event=None, id=None, user_id=None, **extra):
    """A Kafka event value (JSON object bytes) per schemas/event.schema.json.
    Members whose value is None are left out."""
    obj = {}
    if event is not None:
        obj["event"] = event
    if data is not None:
        obj["data"] = data
    if id is not None:
        obj["id"] = id
    if user_id is not None:
        obj["user_id"] = user_id
    obj.update(extra)
    return json.dumps(obj).encode()


def assert_data_verbatim(frame_text, data_bytes):
    """The native event frame carries the producer's data byte for byte."""
    if isinstance(data_bytes, bytes):
        data_bytes = data_bytes.decode()
    rx = r'"data"\s*:\s*' + re.escape(data_bytes) + r'\s*[,}]'
    assert re.search(rx, frame_text), (
        f"frame does not carry data {data_bytes!r} verbatim: {frame_text!r}")


def batch_results(doc):
    """The per-item results of a batch /push answer: a JSON array, or an
    object carrying the array under "results"."""
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        return doc["results"]
    assert isinstance(doc, list), f"batch answer is not a list of results: {doc!r}"
    return doc


def without_pos(frame):
    """A native event frame without its "pos" (SPEC 7), which must be there:
    a non-empty string. For tests about the rest of the frame."""
    assert isinstance(frame.get("pos"), str) and frame["pos"], f"no pos in {frame!r}"
    return {k: v for k, v in frame.items() if k != "pos"}


class FrozenThread:
    """One thread of another process stopped, the others left running:
    PTRACE_SEIZE then PTRACE_INTERRUPT put only that thread in a ptrace stop
    (SIGSTOP would stop the whole process), until thaw() detaches."""

    SEIZE, INTERRUPT, DETACH, WALL = 0x4206, 0x4207, 17, 0x40000000

    def __init__(self, tid):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                                     ctypes.c_void_p]
        self.libc.ptrace.restype = ctypes.c_long
        self.tid = tid
        if self.libc.ptrace(self.SEIZE, tid, None, None) != 0:
            import pytest
            err = ctypes.get_errno()
            pytest.skip(f"ptrace is not permitted here ({os.strerror(err)}): "
                        "cannot stop one thread of the bridge")
        if self.libc.ptrace(self.INTERRUPT, tid, None, None) != 0:
            err = ctypes.get_errno()
            self.thaw()
            raise OSError(err, f"PTRACE_INTERRUPT: {os.strerror(err)}")
        os.waitpid(tid, self.WALL)  # the stop took effect

    def thaw(self):
        self.libc.ptrace(self.DETACH, self.tid, None, None)


def thread_id(pid, name):
    """The id of the thread of process pid named name (pb-worker-1)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == name:
                return int(tid)
    raise AssertionError(f"no thread named {name} in process {pid}")
