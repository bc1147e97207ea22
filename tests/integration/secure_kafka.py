"""Kafka as companies run it, for the integration tests: a KRaft broker with
TLS, SASL and ACLs (SecureKafka), and a 3-node replicated KRaft cluster
(KafkaCluster).

SecureKafka listeners (all on 127.0.0.1, free ports):
- PLAINTEXT (.bootstrap): the harness's own, unauthenticated, so its
  principal is User:ANONYMOUS, a super user: topics, produce and consume
  through kafka_harness.KafkaBroker's helpers, and ACLs (CreateAcls on the
  wire). Never given to a bridge.
- SASL_SSL (.sasl_bootstrap): SCRAM-SHA-512; the users are made at format
  time (kafka-storage format --add-scram), see USERS.
- SSL (.mtls_bootstrap): mutual TLS, ssl.client.auth=required; the principal
  is the client certificate's CN (ssl.principal.mapping.rules).
- OAUTH (.oauth_bootstrap): SASL_SSL with OAUTHBEARER and Kafka's unsecured
  JWT validator (test only): the principal is the token's sub.
- OIDC (.oidc_bootstrap): SASL_SSL with OAUTHBEARER and Kafka's secured
  validator (OAuthBearerValidatorCallbackHandler): RS256 JWTs checked
  against the JWKS of .idp (oidc_idp.IdentityProvider, HTTPS with the test
  CA, which the broker's JVM trusts through a PKCS12 truststore), audience
  "kafka", 1 s of clock skew; sessions end with their token
  (connections.max.reauth.ms), so a client that did not refresh its token
  cannot reconnect. The principal is the token's sub (the client id).
The StandardAuthorizer refuses what no ACL allows
(allow.everyone.if.no.acl.found=false).

Certificates come from a CA made with openssl at fixture time (.pki): the
broker's (SAN 127.0.0.1, localhost), a client certificate (CN MTLS_USER) for
mutual TLS, and a foreign CA with a client certificate of its own, for the
untrusted cases.
"""

import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import time
import uuid

from kafka_harness import KafkaBroker, KafkaError, _kstr
from oidc_idp import AUDIENCE, IdentityProvider
from pbutil import die_with_parent, free_port, wait_until

USERS = {"bridge": "bridge-secret-1", "admin": "admin-secret-1"}
MTLS_USER = "bridge-mtls"
# The identity provider's clients: id -> (secret, token lifetime in s). The
# "-chunked" one is answered in chunked transfer coding.
OIDC_CLIENTS = {"oidc-bridge": ("oidc-secret-1", 300),
                "oidc-short-chunked": ("oidc-secret-2", 8),
                "oidc-rotated": ("oidc-secret-3", 8)}

# Kafka's ACL enums (org.apache.kafka.common.acl / resource).
RESOURCE = {"topic": 2, "group": 3, "cluster": 4}
PATTERN = {"literal": 3, "prefixed": 4}
OPERATION = {"all": 2, "read": 3, "write": 4, "create": 5, "describe": 8,
             "idempotent_write": 12}
ALLOW = 3


def _openssl(*args):
    r = subprocess.run(["openssl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if r.returncode != 0:
        raise KafkaError(f"openssl {args[0]} failed: {r.stderr.decode(errors='replace')}")


class Pki:
    """A CA and the certificates signed by it, as PEM files in a directory:
    ca.pem, broker.pem (key + chain, Kafka's PEM keystore), client.crt /
    client.key (CN MTLS_USER), and foreign-ca.pem with foreign-client.crt /
    .key signed by it. EC P-256 keys: quick to make."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca = self._ca("ca", "pushbridge test CA")
        self.foreign_ca = self._ca("foreign-ca", "some other CA")
        crt, key = self._leaf("broker", "localhost", "ca",
                              "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                              "extendedKeyUsage=serverAuth,clientAuth\n")
        self.broker_keystore = self.path("broker-keystore.pem")
        with open(self.broker_keystore, "w") as out:
            for p in (key, crt, self.ca):
                with open(p) as f:
                    out.write(f.read())
        self.client_crt, self.client_key = self._leaf(
            "client", MTLS_USER, "ca", "extendedKeyUsage=clientAuth\n")
        self.foreign_client_crt, self.foreign_client_key = self._leaf(
            "foreign-client", MTLS_USER, "foreign-ca", "extendedKeyUsage=clientAuth\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        key = self.path(name + ".key")
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", key)
        return key

    def _ca(self, name, cn):
        key = self._key(name)
        crt = self.path(name + ".pem")
        _openssl("req", "-x509", "-new", "-key", key, "-subj", f"/CN={cn}", "-days", "2",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", crt)
        return crt

    def _leaf(self, name, cn, ca, ext):
        key = self._key(name)
        csr, crt, extfile = self.path(name + ".csr"), self.path(name + ".crt"), \
            self.path(name + ".ext")
        with open(extfile, "w") as f:
            f.write(ext)
        _openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", self.path(ca + ".pem"),
                 "-CAkey", self.path(ca + ".key"), "-CAcreateserial", "-days", "2",
                 "-extfile", extfile, "-out", crt)
        return crt, key


class SecureKafka(KafkaBroker):
    """One KRaft broker with the PLAINTEXT (harness), SASL_SSL, SSL (mutual
    TLS) and OAUTH listeners described above."""

    def __init__(self, workdir):
        self.pki = Pki(os.path.join(workdir, "pki"))
        self.sasl_port, self.mtls_port, self.oauth_port = free_port(), free_port(), free_port()
        self.sasl_bootstrap = f"127.0.0.1:{self.sasl_port}"
        self.mtls_bootstrap = f"127.0.0.1:{self.mtls_port}"
        self.oauth_bootstrap = f"127.0.0.1:{self.oauth_port}"
        self.oidc_port = free_port()
        self.oidc_bootstrap = f"127.0.0.1:{self.oidc_port}"
        self.idp = IdentityProvider(self.pki.path("broker.crt"), self.pki.path("broker.key"),
                                    OIDC_CLIENTS)
        self.truststore = self.pki.path("truststore.p12")
        r = subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "test-ca",
                            "-file", self.pki.ca, "-keystore", self.truststore,
                            "-storetype", "PKCS12", "-storepass", "changeit"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise KafkaError(f"keytool failed: {r.stdout.decode(errors='replace')}")
        super().__init__(workdir=workdir)

    def _java(self, *args, **kw):
        # The secured validator fetches the JWKS over HTTPS from the test IdP:
        # the JVM trusts the test CA. The allowed-URLs property (3.9.1,
        # CVE-2025-27817) allows all URLs by default in 3.9.x but none from
        # 4.0 on, so it is set: the broker may move up without breaking this.
        cmd = super()._java(*args, **kw)
        return [cmd[0], f"-Djavax.net.ssl.trustStore={self.truststore}",
                "-Djavax.net.ssl.trustStorePassword=changeit",
                "-Djavax.net.ssl.trustStoreType=PKCS12",
                f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={self.idp.jwks_url}",
                *cmd[1:]]

    def _write_properties(self):
        super()._write_properties()
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        oauth = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
                 "required unsecuredLoginStringClaim_sub=\"admin\";")
        props = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                         f"SASL_SSL://127.0.0.1:{self.sasl_port},"
                         f"SSL://127.0.0.1:{self.mtls_port},"
                         f"OAUTH://127.0.0.1:{self.oauth_port},"
                         f"OIDC://127.0.0.1:{self.oidc_port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                                    f"SASL_SSL://127.0.0.1:{self.sasl_port},"
                                    f"SSL://127.0.0.1:{self.mtls_port},"
                                    f"OAUTH://127.0.0.1:{self.oauth_port},"
                                    f"OIDC://127.0.0.1:{self.oidc_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                                              "SASL_SSL:SASL_SSL,SSL:SSL,OAUTH:SASL_SSL,"
                                              "OIDC:SASL_SSL",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": self.pki.broker_keystore,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": self.pki.ca,
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            "listener.name.oauth.sasl.enabled.mechanisms": "OAUTHBEARER",
            "listener.name.oauth.oauthbearer.sasl.jaas.config": oauth,
            "listener.name.oidc.sasl.enabled.mechanisms": "OAUTHBEARER",
            "listener.name.oidc.oauthbearer.sasl.jaas.config":
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
            "listener.name.oidc.oauthbearer.sasl.server.callback.handler.class":
                "org.apache.kafka.common.security.oauthbearer."
                "OAuthBearerValidatorCallbackHandler",
            "listener.name.oidc.oauthbearer.connections.max.reauth.ms": "600000",
            "sasl.oauthbearer.jwks.endpoint.url": self.idp.jwks_url,
            "sasl.oauthbearer.expected.audience": AUDIENCE,
            "sasl.oauthbearer.clock.skew.seconds": "1",
            "listener.name.ssl.ssl.client.auth": "required",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]*).*$/$1/,DEFAULT",
            "authorizer.class.name":
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            # The harness (PLAINTEXT, the controller listener) is ANONYMOUS.
            "super.users": "User:ANONYMOUS;User:admin",
            "auto.create.topics.enable": "false",
        }
        with open(self.props_path, "a") as f:
            for k, v in props.items():
                f.write(f"{k}={v}\n")

    def _format(self):
        out = ""
        for _attempt in range(2):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            # --cluster-id=ID: an id that starts with "-" (base64) is not taken
            # for an option.
            args = ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                    "-c", self.props_path]
            for name, pw in USERS.items():
                args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={pw}]"]
            r = subprocess.run(self._java(*args), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=120)
            out = r.stdout.decode(errors="replace")
            if r.returncode == 0:
                self._formatted = True
                return
        raise KafkaError(f"kafka StorageTool format failed:\n{out}")

    # ---- client settings (kafka.properties) --------------------------------

    def sasl_properties(self, user="bridge", password=None, ca=None):
        return {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": user,
                "sasl.password": password if password is not None else USERS[user],
                "ssl.ca.location": ca or self.pki.ca}

    def oidc_properties(self, client="oidc-bridge", secret=None):
        """kafka.properties for the OIDC listener: the bridge fetches its
        tokens from .idp with the client-credentials grant."""
        return {"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER",
                "sasl.oauthbearer.method": "oidc",
                "sasl.oauthbearer.client.id": client,
                "sasl.oauthbearer.client.secret":
                    secret if secret is not None else OIDC_CLIENTS[client][0],
                "sasl.oauthbearer.token.endpoint.url": self.idp.token_url,
                "sasl.oauthbearer.scope": "kafka events",
                "ssl.ca.location": self.pki.ca}

    def mtls_properties(self, foreign=False):
        return {"security.protocol": "SSL", "ssl.ca.location": self.pki.ca,
                "ssl.certificate.location":
                    self.pki.foreign_client_crt if foreign else self.pki.client_crt,
                "ssl.key.location":
                    self.pki.foreign_client_key if foreign else self.pki.client_key}

    # ---- ACLs ---------------------------------------------------------------

    def allow(self, principal, *rules):
        """Adds ALLOW ACLs for principal ("User:bridge") from any host, with
        one CreateAcls (v1) request: rules are (resource, name, operation)
        or (resource, name, operation, pattern), e.g. ("topic", "events",
        "read"), ("group", "g-", "read", "prefixed"). Waits until the broker
        has them (one node: its own metadata log)."""
        body = struct.pack(">i", len(rules))
        for rule in rules:
            res, name, op = rule[:3]
            pat = rule[3] if len(rule) > 3 else "literal"
            body += struct.pack(">b", RESOURCE[res]) + _kstr(name)
            body += struct.pack(">b", PATTERN[pat]) + _kstr(principal) + _kstr("*")
            body += struct.pack(">bb", OPERATION[op], ALLOW)
        resp = self._request(30, 1, body)
        # v1 response: throttle_time_ms, [error_code, error_message]
        pos = 4
        (n,) = struct.unpack_from(">i", resp, pos)
        pos += 4
        for _ in range(n):
            (err,) = struct.unpack_from(">h", resp, pos)
            pos += 2
            (ml,) = struct.unpack_from(">h", resp, pos)
            msg = resp[pos + 2:pos + 2 + ml].decode() if ml >= 0 else ""
            pos += 2 + max(ml, 0)
            if err:
                raise KafkaError(f"CreateAcls: error {err} {msg}")
        # The authorizer applies ACLs from the metadata log right after the
        # controller commits them; a short settle is all a single node needs,
        # so poll the broker's own view (DescribeAcls) instead of sleeping.
        wait_until(lambda: self.acl_count(principal) >= len(rules), timeout=10,
                   desc=f"ACLs of {principal} in force")

    def acl_count(self, principal):
        """ACLs of principal the broker knows (DescribeAcls v1, any resource)."""
        body = struct.pack(">b", 1) + struct.pack(">h", -1)  # ANY type, null name
        body += struct.pack(">b", 1) + _kstr(principal) + struct.pack(">h", -1)
        body += struct.pack(">bb", 1, 1)  # ANY operation, ANY permission
        resp = self._request(29, 1, body)
        # throttle, error_code, error_message, [resources: type, name, pattern, [acls]]
        pos = 4
        (err,) = struct.unpack_from(">h", resp, pos)
        pos += 2
        (ml,) = struct.unpack_from(">h", resp, pos)
        pos += 2 + max(ml, 0)
        if err:
            raise KafkaError(f"DescribeAcls: error {err}")
        (nres,) = struct.unpack_from(">i", resp, pos)
        pos += 4
        total = 0
        for _ in range(nres):
            pos += 1
            (ln,) = struct.unpack_from(">h", resp, pos)
            pos += 2 + ln + 1
            (nacl,) = struct.unpack_from(">i", resp, pos)
            pos += 4
            total += nacl
            for _ in range(nacl):
                for _s in range(2):  # principal, host
                    (ln,) = struct.unpack_from(">h", resp, pos)
                    pos += 2 + ln
                pos += 2  # operation, permission
        return total

    def consumer_acls(self, principal, topics, group):
        """What a bridge consuming topics in group needs: READ on each topic
        (DESCRIBE comes with it) and READ on the group."""
        self.allow(principal, *[("topic", t, "read") for t in topics],
                   ("group", group, "read"))


class KafkaCluster:
    """Three KRaft nodes, each broker and controller (a quorum of three), on
    PLAINTEXT: replication factor 3 and min.insync.replicas 2 by default.
    .brokers[i] are KafkaBroker objects (stop/start/kill each);
    .bootstrap lists all three."""

    def __init__(self, workdir, size=3):
        self.workdir = workdir
        self.size = size
        self.brokers = []
        ports = [(free_port(), free_port()) for _ in range(size)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        for i, (port, cport) in enumerate(ports):
            b = _ClusterNode(os.path.join(workdir, f"node{i + 1}"), i + 1, port, cport, voters,
                             size)
            self.brokers.append(b)
        self.bootstrap = ",".join(b.bootstrap for b in self.brokers)
        self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")

    def start(self, timeout=90.0):
        for b in self.brokers:
            b.cluster_id = self.cluster_id
            b.launch()
        for b in self.brokers:
            b.wait_up(timeout)
        # A first topic create waits for all three to be registered.
        wait_until(lambda: len(self.brokers[0].registered()) == self.size, timeout=timeout,
                   desc="all brokers registered")

    def stop(self):
        """At teardown: SIGKILL all at once. A controlled shutdown of the
        last nodes waits for a quorum that is gone (30 s each), and the data
        is thrown away anyway."""
        for b in self.brokers:
            b.kill()

    @property
    def any(self):
        """A running node, for admin calls and producing."""
        for b in self.brokers:
            if b.running:
                return b
        raise KafkaError("no broker of the cluster is running")

    def by_id(self, node_id):
        return self.brokers[node_id - 1]

    def leader(self, topic, partition=0):
        md = self.any.metadata(topic)
        for p in md.get("partitions", []):
            if p["partition"] == partition:
                return p.get("leader", -1)
        return -1

    def isr(self, topic, partition=0):
        md = self.any.metadata(topic)
        for p in md.get("partitions", []):
            if p["partition"] == partition:
                return sorted(r["id"] for r in p.get("isrs", []))
        return []


class _ClusterNode(KafkaBroker):
    def __init__(self, workdir, node_id, port, cport, voters, size):
        os.makedirs(workdir, exist_ok=True)
        self._node_id, self._fixed_port, self._fixed_cport = node_id, port, cport
        self._voters, self._size = voters, size
        self.cluster_id = None
        super().__init__(workdir=workdir)

    def _write_properties(self):
        self.port, self.controller_port = self._fixed_port, self._fixed_cport
        self.bootstrap = f"127.0.0.1:{self.port}"
        super()._write_properties()
        props = {
            "node.id": str(self._node_id),
            "controller.quorum.voters": self._voters,
            "offsets.topic.replication.factor": str(self._size),
            "transaction.state.log.replication.factor": str(self._size),
            "transaction.state.log.min.isr": "2",
            "default.replication.factor": str(self._size),
            "min.insync.replicas": "2",
            # Leaders move back after a restart: the test sees every broker
            # lead again, as a cluster that rebalances leadership would.
            "auto.leader.rebalance.enable": "true",
            "leader.imbalance.check.interval.seconds": "5",
            # A dead broker is noticed within a few seconds, not 9+.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "500",
            "replica.lag.time.max.ms": "5000",
            "controlled.shutdown.enable": "true",
        }
        with open(self.props_path, "a") as f:
            for k, v in props.items():
                f.write(f"{k}={v}\n")

    def _format(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)
        r = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}",
                       "-c", self.props_path),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if r.returncode != 0:
            raise KafkaError(f"format node {self._node_id}: {r.stdout.decode(errors='replace')}")
        self._formatted = True

    def launch(self):
        """Starts the JVM without waiting (a quorum needs its peers up)."""
        if not self._formatted:
            self._format()
        log = open(self.log_path, "ab")
        log.write(f"\n==== broker start {time.strftime('%H:%M:%S')} ====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self._java("kafka.Kafka", self.props_path), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL))
        log.close()

    def wait_up(self, timeout=60.0):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"kafka node {self._node_id} exited:\n{self.log_tail()}")
            return self._node_id in self.registered()
        wait_until(up, timeout=timeout, interval=0.25, desc=f"kafka node {self._node_id} up")

    def start(self, timeout=60.0):
        if self.running:
            return
        self.launch()
        self.wait_up(timeout)

    def registered(self):
        """Node ids in this node's metadata (kcat -L), or [] when it does not answer."""
        try:
            r = subprocess.run(["kcat", "-b", self.bootstrap, "-L", "-J", "-m", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
            md = json.loads(r.stdout) if r.returncode == 0 else {}
        except (subprocess.TimeoutExpired, ValueError):
            return []
        return [b.get("id") for b in md.get("brokers", [])]

    def create_topic(self, name, partitions=1, config=None, timeout=30.0):
        """CreateTopics with replication factor 3 (the broker default here)."""
        return super().create_topic(name, partitions, config=config, timeout=timeout,
                                    replication=self._size)
