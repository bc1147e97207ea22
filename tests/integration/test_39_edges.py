"""Smaller edges of issue 14 item 7 (README "Errors and close codes"):
a long client message does not keep its reassembly buffer for the
connection's life; /send refuses a message holding NUL (form or query)
with a 400 instead of delivering the raw byte to data-only clients."""

import os

import pytest

from bridge import binary_path, is_sanitized
from pbutil import unique_uid
from wsclient import OP_TEXT


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(is_sanitized(binary_path()), reason="ASan's allocator keeps freed memory")
def test_long_message_gives_its_reassembly_buffer_back(bridge_factory):
    """300 connections each send one fragmented 15 KiB message; kept, the
    buffers would hold 300 x 16 KiB = 4.7 MiB; given back, one is reused."""
    b = bridge_factory(config={"ws": {"max_message_bytes": 16384}})
    clients = []
    for i in range(300):
        c = b.ws()
        c.login_uid(unique_uid("rx"), sync=False)
        clients.append(c)
    # Every login is in before the baseline.
    for c in clients:
        c.send_json({"type": "ping"})
        assert c.recv_json() == {"type": "pong"}
    before = _rss_kib(b.proc.pid)
    chunk = "x" * 5000
    for c in clients:
        c.send_fragmented(OP_TEXT, ['{"type":"ping","pad":"' + chunk, chunk, chunk + '"}'])
        assert c.recv_json() == {"type": "pong"}
    grown = _rss_kib(b.proc.pid) - before
    assert grown < 1500, f"RSS grew by {grown} KiB after 300 long messages"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_send_refuses_a_message_holding_nul(bridge, method):
    uid = unique_uid("nul")
    c = bridge.uid_client(uid)
    st, doc = bridge.send(uid, "a\x00b", method=method)
    assert st == 400 and doc["error"] == "bad_field" and "NUL" in doc["message"], (st, doc)
    st, doc = bridge.json("GET", f"/send?uid={uid}&message=%00")[:2]
    assert st == 400 and doc["error"] == "bad_field", (st, doc)
    c.no_message(0.3)
    st, doc = bridge.send(uid, "fine", method=method)
    assert st == 200, (st, doc)
    assert c.recv_text() == "fine"
