"""A real Apache Kafka broker (KRaft, one node acting as broker and
controller) for the integration tests, plus the producer/consumer/admin calls
the tests need.

- The broker runs from the jars in tests/kafka/lib (fetched by Maven, see
  tests/kafka/pom.xml) on free loopback ports, with its data in a temp dir.
  stop()/start() keep the ports and the data, so outage tests can take the
  broker away and bring it back.
- Producing and consuming go through kcat (a real librdkafka client). Every
  message is written to a file first, so values and keys are exact bytes
  (newlines, NULs, invalid UTF-8 and all).
- Topics are created with the Kafka wire protocol (CreateTopics v4) straight
  from Python: the kafka_2.13 3.9.1 jar carries no TopicCommand (it moved to
  the separate kafka-tools artifact), and a JVM start per topic would cost
  seconds per test anyway.
"""

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid

from pbutil import die_with_parent, free_port, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KAFKA_LIB = os.path.join(REPO, "tests", "kafka", "lib")
KAFKA_JAR = os.path.join(KAFKA_LIB, "kafka_2.13-3.9.1.jar")

# JVM flags: small heap, quick start-up (C1 only), one GC thread set. The
# broker is a test fixture, not a benchmark.
JVM_FLAGS = ["-Xmx512m", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Djava.awt.headless=true"]


class KafkaError(Exception):
    pass


def _kstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">h", len(b)) + b


def _recvn(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise KafkaError("broker closed the connection")
        buf += chunk
    return bytes(buf)


def _crc32c(data):
    """CRC-32C (Castagnoli), which a record batch carries."""
    table = _crc32c.table
    if table is None:
        table = _crc32c.table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            table.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


_crc32c.table = None


def _varint(n):
    """Zig-zag varint, as records encode their fields."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _record_batch(messages, timestamp_ms):
    """A v2 record batch of [(key, value)], every record at timestamp_ms."""
    records = b""
    for i, (k, v) in enumerate(messages):
        body = b"\x00" + _varint(0) + _varint(i)
        body += _varint(-1) if k is None else _varint(len(k)) + k
        body += _varint(-1) if v is None else _varint(len(v)) + v
        body += _varint(0)  # headers
        records += _varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(messages) - 1, timestamp_ms, timestamp_ms,
                            -1, -1, -1, len(messages)) + records
    head = struct.pack(">ib", 0, 2)  # partition leader epoch, magic
    crc = struct.pack(">I", _crc32c(after_crc))
    batch = head + crc + after_crc
    return struct.pack(">qi", 0, len(batch)) + batch


def kcat_produce(bootstrap, topic, messages, headers=None, partition=None):
    """Produce [(key bytes|None, value bytes|None)] in order with one kcat call."""
    # Messages go through a file that kcat splits with -D/-K delimiters
    # chosen so that they occur in no key and no value. kcat's -Z turns an
    # empty key or value into NULL, so None is written as empty; an empty
    # (non-null) key or value therefore cannot be sent.
    for _ in range(100):
        mdelim = "PBmsg" + uuid.uuid4().hex[:12]
        kdelim = "PBkey" + uuid.uuid4().hex[:12]
        mb, kb = mdelim.encode(), kdelim.encode()
        if not any((k and (mb in k or kb in k)) or (v and (mb in v or kb in v))
                   for k, v in messages):
            break
    else:
        raise KafkaError("no delimiter found")
    if any(k is not None and len(k) == 0 for k, v in messages):
        raise KafkaError("kcat -Z cannot produce an empty (non-null) key; use None")
    if any(v is not None and len(v) == 0 for k, v in messages):
        raise KafkaError("kcat -Z cannot produce an empty (non-null) value; use None")
    fd, path = tempfile.mkstemp(prefix="pb-msgs-")
    try:
        with os.fdopen(fd, "wb") as f:
            for i, (k, v) in enumerate(messages):
                if i:
                    f.write(mb)
                f.write(k or b"")
                f.write(kb)
                f.write(v or b"")
        args = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-m", "10",
                "-D", mdelim, "-K", kdelim, "-Z", "-l",
                "-X", "linger.ms=5", "-X", "message.timeout.ms=20000"]
        if partition is not None:
            args += ["-p", str(partition)]
        for hk, hv in (headers or {}).items():
            if isinstance(hv, bytes):
                hv = hv.decode()
            args += ["-H", f"{hk}={hv}"]
        args.append(path)
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        err = r.stderr.decode(errors="replace")
        if r.returncode != 0 or "ERROR" in err or "Failed" in err:
            raise KafkaError(f"kcat produce failed (rc {r.returncode}): {err}")
    finally:
        os.unlink(path)


def new_cluster_id():
    """A KRaft cluster ID as Kafka makes one (Uuid.randomUuid): URL-safe base64
    of 16 random bytes, never starting with "-", which the storage tool's
    argument parser would take for an option (1 in 64 IDs did: "argument
    --cluster-id/-t: expected one argument")."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker:
    """One KRaft broker. Attributes: bootstrap ("127.0.0.1:PORT"), port,
    controller_port, workdir, log_path, proc (None while stopped)."""

    def __init__(self, workdir=None):
        if not os.path.exists(KAFKA_JAR):
            raise KafkaError(f"{KAFKA_JAR} is missing: run tests/run.sh (or "
                             "cd tests/kafka && mvn -q -B dependency:copy-dependencies "
                             "-DoutputDirectory=lib)")
        for tool in ("java", "kcat"):
            if shutil.which(tool) is None:
                raise KafkaError(f"{tool} not found on PATH")
        self.workdir = workdir or tempfile.mkdtemp(prefix="pb-kafka-")
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.data_dir = os.path.join(self.workdir, "data")
        self.props_path = os.path.join(self.workdir, "server.properties")
        self.log_path = os.path.join(self.workdir, "broker.log")
        self.proc = None
        self._formatted = False
        self._topic_seq = 0
        self._write_properties()

    # ---- lifecycle -------------------------------------------------------

    def _write_properties(self):
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.data_dir,
            "offsets.topic.replication.factor": "1",
            # One partition for __consumer_offsets: the first consumer group
            # is coordinated in well under a second instead of ~10 s.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            "default.replication.factor": "1",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.retention.check.interval.ms": "3600000",
        }
        with open(self.props_path, "w") as f:
            for k, v in props.items():
                f.write(f"{k}={v}\n")

    def _java(self, *args, **kw):
        return ["java", *JVM_FLAGS, "-cp", os.path.join(KAFKA_LIB, "*"), *args]

    def _format(self):
        # Two attempts: a JVM that dies on a busy machine should not cost the
        # whole session.
        out = ""
        for _attempt in range(2):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            cluster_id = new_cluster_id()
            r = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id,
                           "-c", self.props_path),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            out = r.stdout.decode(errors="replace")
            if r.returncode == 0:
                self._formatted = True
                return
        raise KafkaError(f"kafka StorageTool format failed (exit {r.returncode}):\n{out}")

    def start(self, timeout=60.0):
        """Start the broker (formatting its storage the first time) and wait
        until kcat sees it. Same ports and data as before a stop()."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if not self._formatted:
            self._format()
        log = open(self.log_path, "ab")
        log.write(f"\n==== broker start {time.strftime('%H:%M:%S')} ====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self._java("kafka.Kafka", self.props_path),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent(signal.SIGKILL))
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"kafka broker exited with {self.proc.returncode}:\n{self.log_tail()}")
            return self.is_up()

        try:
            wait_until(up, timeout=timeout, interval=0.25, desc="kafka broker to answer kcat -L")
        except AssertionError:
            self.stop()
            raise

    def is_up(self):
        """True when kcat gets metadata listing this broker."""
        try:
            r = subprocess.run(["kcat", "-b", self.bootstrap, "-L", "-J", "-m", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        except subprocess.TimeoutExpired:
            return False
        if r.returncode != 0:
            return False
        try:
            md = json.loads(r.stdout)
        except ValueError:
            return False
        return any(b.get("id") == 1 for b in md.get("brokers", []))

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Stop the broker: sig (SIGTERM = controlled shutdown), then SIGKILL
        after timeout. Data and ports are kept for start()."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
        self.proc = None

    def kill(self):
        """Hard stop (SIGKILL), as a crashed broker."""
        self.stop(sig=signal.SIGKILL)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, nbytes=8000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - nbytes))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # ---- admin -----------------------------------------------------------

    def unique_topic(self, prefix="pbt"):
        """A topic name never used before in this session (not created)."""
        self._topic_seq += 1
        return f"{prefix}-{self._topic_seq}-{uuid.uuid4().hex[:8]}"

    def _request(self, api_key, api_version, body, timeout=15.0):
        host, port = self.bootstrap.rsplit(":", 1)
        corr = int.from_bytes(os.urandom(3), "big")
        header = struct.pack(">hhi", api_key, api_version, corr) + _kstr("pb-tests")
        msg = header + body
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(msg)) + msg)
            size = struct.unpack(">i", _recvn(s, 4))[0]
            resp = _recvn(s, size)
        (rcorr,) = struct.unpack(">i", resp[:4])
        if rcorr != corr:
            raise KafkaError("correlation id mismatch")
        return resp[4:]

    def create_topic(self, name, partitions=1, config=None, timeout=15.0, replication=1):
        """Create a topic (CreateTopics v4 on the wire) and wait until every
        partition has a leader. config: optional {topic config: value};
        replication: the replication factor (-1: the broker's default)."""
        config = config or {}
        body = struct.pack(">i", 1)
        body += _kstr(name) + struct.pack(">ih", partitions, replication)
        body += struct.pack(">i", 0)  # no manual assignments
        body += struct.pack(">i", len(config))
        for k, v in config.items():
            body += _kstr(k) + _kstr(str(v))
        body += struct.pack(">ib", int(timeout * 1000), 0)
        resp = self._request(19, 4, body, timeout=timeout + 5)
        # v4 response: throttle_time_ms, [name, error_code, error_message]
        pos = 4
        (n,) = struct.unpack_from(">i", resp, pos)
        pos += 4
        for _ in range(n):
            (ln,) = struct.unpack_from(">h", resp, pos)
            pos += 2
            tname = resp[pos:pos + ln].decode()
            pos += ln
            (err,) = struct.unpack_from(">h", resp, pos)
            pos += 2
            (ml,) = struct.unpack_from(">h", resp, pos)
            pos += 2
            emsg = resp[pos:pos + ml].decode() if ml >= 0 else ""
            pos += max(ml, 0)
            if tname == name and err not in (0, 36):  # 36 TOPIC_ALREADY_EXISTS
                raise KafkaError(f"CreateTopics {name}: error {err} {emsg}")

        def ready():
            md = self.metadata(name)
            parts = md.get("partitions") or []
            return len(parts) == partitions and all(p.get("leader", -1) >= 0 for p in parts)

        wait_until(ready, timeout=timeout, interval=0.1, desc=f"topic {name} leaders")
        return name

    def delete_records(self, topic, partition, before_offset, timeout=15.0):
        """Delete every record of topic/partition below before_offset
        (DeleteRecords v1 on the wire): the log start offset moves there at
        once, as retention would move it, later. Returns the new low
        watermark."""
        body = struct.pack(">i", 1) + _kstr(topic)
        body += struct.pack(">iiq", 1, partition, before_offset)
        body += struct.pack(">i", int(timeout * 1000))
        resp = self._request(21, 1, body, timeout=timeout + 5)
        # v1 response: throttle_time_ms, [name, [partition, low_watermark, error_code]]
        pos = 4
        (nt,) = struct.unpack_from(">i", resp, pos)
        pos += 4
        for _ in range(nt):
            (ln,) = struct.unpack_from(">h", resp, pos)
            pos += 2 + ln
            (np_,) = struct.unpack_from(">i", resp, pos)
            pos += 4
            for _ in range(np_):
                p, low, err = struct.unpack_from(">iqh", resp, pos)
                pos += 14
                if p == partition:
                    if err:
                        raise KafkaError(f"DeleteRecords {topic}[{partition}]: error {err}")
                    return low
        raise KafkaError(f"DeleteRecords {topic}[{partition}]: no answer for the partition")

    def produce_at(self, topic, messages, timestamp_ms, partition=0, timeout=15.0):
        """Produce [(key, value)] (str or bytes; None = null) with an explicit
        CreateTime timestamp (Produce v3 on the wire; kcat cannot set one).
        Returns the base offset."""
        enc = [(k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
               for k, v in messages]
        batch = _record_batch(enc, int(timestamp_ms))
        body = struct.pack(">hhi", -1, -1, int(timeout * 1000))  # no txn id, acks=all
        body += struct.pack(">i", 1) + _kstr(topic)
        body += struct.pack(">ii", 1, partition) + struct.pack(">i", len(batch)) + batch
        resp = self._request(0, 3, body, timeout=timeout + 5)
        # v3 response: [name, [partition, error_code, base_offset, log_append_time]], throttle
        pos = 4
        (ln,) = struct.unpack_from(">h", resp, pos)
        pos += 2 + ln + 4
        p, err, base = struct.unpack_from(">ihq", resp, pos)
        if err:
            raise KafkaError(f"Produce {topic}[{partition}]: error {err}")
        return base

    def buffering_producer(self, topic, values, key=None, partition=None):
        """A kcat producer that keeps its messages through a broker outage
        (-E: errors are not fatal; a 2 minute message timeout) and delivers
        them when the broker is back, as a business system's client would.
        Each value is stamped with the time it is handed over, now. Returns
        the Popen; wait() for it after the broker is back (exit 0 = all
        delivered)."""
        # Idempotence keeps the order through the retries of an outage: without
        # it a first message that failed can be retried after the ones behind it.
        args = ["kcat", "-P", "-E", "-b", self.bootstrap, "-t", topic, "-D", "\n",
                "-X", "message.timeout.ms=120000", "-X", "enable.idempotence=true"]
        if key is not None:
            args += ["-k", key]
        if partition is not None:
            args += ["-p", str(partition)]
        producer = subprocess.Popen(args, stdin=subprocess.PIPE,
                                    preexec_fn=die_with_parent(signal.SIGKILL))
        data = [v.encode() if isinstance(v, str) else v for v in values]
        if any(b"\n" in v for v in data):
            raise KafkaError("buffering_producer: values must not contain newlines")
        producer.stdin.write(b"\n".join(data) + b"\n")
        producer.stdin.close()
        return producer

    def metadata(self, topic):
        """kcat's JSON metadata for one topic: {"topic", "partitions": [...]}."""
        r = subprocess.run(["kcat", "-b", self.bootstrap, "-L", "-J", "-m", "5", "-t", topic],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        if r.returncode != 0:
            raise KafkaError(f"kcat -L failed: {r.stderr.decode(errors='replace')}")
        md = json.loads(r.stdout)
        for t in md.get("topics", []):
            if t.get("topic") == topic:
                if t.get("error"):
                    return {"topic": topic, "partitions": [], "error": t["error"]}
                return t
        return {"topic": topic, "partitions": []}

    def end_offsets(self, topic):
        """{partition: high watermark} via kcat -Q (timestamp -1 = end)."""
        md = self.metadata(topic)
        args = ["kcat", "-b", self.bootstrap, "-Q", "-m", "5"]
        for p in md["partitions"]:
            args += ["-t", f"{topic}:{p['partition']}:-1"]
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        if r.returncode != 0:
            raise KafkaError(f"kcat -Q failed: {r.stderr.decode(errors='replace')}")
        out = {}
        for line in r.stdout.decode().splitlines():
            # "topic [0] offset 12"
            parts = line.split()
            if len(parts) >= 4 and parts[2] == "offset":
                out[int(parts[1].strip("[]"))] = int(parts[3])
        return out

    # ---- produce / consume -----------------------------------------------

    def produce(self, topic, value, key=None, headers=None, partition=None):
        """Produce one message with exact bytes. value None = a null value
        (tombstone), key None = no key. headers: {name: str|bytes}."""
        if isinstance(value, str):
            value = value.encode()
        if isinstance(key, str):
            key = key.encode()
        self._produce_batch(topic, [(key, value)], headers=headers, partition=partition)

    def produce_many(self, topic, messages, headers=None, partition=None):
        """Produce [(key, value), ...] in order in one kcat call (values may
        be str or bytes; a key of None means no key)."""
        enc = []
        for k, v in messages:
            enc.append((k.encode() if isinstance(k, str) else k,
                        v.encode() if isinstance(v, str) else v))
        if enc:
            self._produce_batch(topic, enc, headers=headers, partition=partition)

    def _produce_batch(self, topic, messages, headers=None, partition=None):
        kcat_produce(self.bootstrap, topic, messages, headers=headers, partition=partition)

    def consume(self, topic, count, timeout=20.0, partition=None, offset="beginning"):
        """Read `count` messages with kcat from `offset`. Returns a list of
        dicts: partition, offset, timestamp, key (bytes|None), value
        (bytes|None), headers (str as kcat prints them, "" when none)."""
        # One header line per message with the exact key and value lengths
        # (-1 = NULL), then the raw key and value bytes.
        fmt = "%p %o %T %K %S %h\\n%k%s"
        args = ["kcat", "-C", "-b", self.bootstrap, "-t", topic, "-o", str(offset),
                "-c", str(count), "-e", "-q", "-m", "10", "-f", fmt]
        if partition is not None:
            args += ["-p", str(partition)]
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        if r.returncode != 0:
            raise KafkaError(f"kcat consume failed: {r.stderr.decode(errors='replace')}")
        data = r.stdout
        out = []
        pos = 0
        while pos < len(data):
            nl = data.index(b"\n", pos)
            head = data[pos:nl].decode(errors="replace").split(" ", 5)
            pos = nl + 1
            p, o, ts, kl, vl = (int(x) for x in head[:5])
            hdrs = head[5] if len(head) > 5 else ""
            key = None if kl < 0 else data[pos:pos + kl]
            pos += max(kl, 0)
            val = None if vl < 0 else data[pos:pos + vl]
            pos += max(vl, 0)
            out.append({"partition": p, "offset": o, "timestamp": ts, "key": key,
                        "value": val, "headers": hdrs})
        return out
