"""A reading client is not a stalled one (issue 15 item 4; SPEC §2, §6): a
burst of 600 events of 4 KB (2.4 MB, over ws.queue_max_bytes) for one user
reaches a client that reads as fast as it can, all of it, in order; a client
of the same user that does not read is closed 4009 once its queue has stayed
over the bound with nothing leaving for ws.slow_client_grace_ms; and
ws.queue_hard_max_bytes closes at once."""
import json

from pbutil import unique_uid

PAD = "b" * 4000


def _burst(kafka, topic, uid, n=600):
    kafka.produce_many(topic, [(uid, json.dumps({"event": "burst", "data": {"i": i, "pad": PAD}}))
                               for i in range(n)])


def test_reader_gets_a_burst_whole_and_a_stalled_client_is_closed(bridge_factory, kafka):
    b = bridge_factory(config={"ws": {"slow_client": "close", "slow_client_grace_ms": 2000}})
    uid = unique_uid()
    reader, _ = b.native_client(uid)
    stalled = b.ws(rcvbuf=4096)
    stalled.login_native(uid)
    b.wait_user_connections(uid, 2)
    _burst(kafka, b.topic, uid)
    got = [reader.recv_json(timeout=20)["data"]["i"] for _ in range(600)]
    assert got == list(range(600))
    # The stalled client gets no further event; the sweep ends its grace.
    b.wait_metric("pushbridge_slow_client_closes_total", 1, timeout=15)
    b.wait_user_connections(uid, 1)
    assert reader.is_open()


def test_hard_bound_closes_at_once(bridge_factory, kafka):
    b = bridge_factory(config={"ws": {"slow_client": "close", "slow_client_grace_ms": 600000,
                                      "queue_max_bytes": 256 * 1024,
                                      "queue_hard_max_bytes": 512 * 1024}})
    uid = unique_uid()
    stalled = b.ws(rcvbuf=4096)
    stalled.login_native(uid)
    b.wait_user_connections(uid, 1)
    _burst(kafka, b.topic, uid)  # 2.4 MB: past the hard bound long before any grace
    b.wait_metric("pushbridge_slow_client_closes_total", 1, timeout=15)
    b.wait_user_connections(uid, 0)


def test_queue_hard_below_soft_is_a_config_error(run_cli):
    r = run_cli(["--check-config"], config={"auth": {"mode": "none"},
                                            "ws": {"queue_max_bytes": 65536,
                                                   "queue_hard_max_bytes": 4096}})
    assert r.returncode == 2
    assert "ws.queue_hard_max_bytes" in r.stderr
