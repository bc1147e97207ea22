"""Logs (SPEC §4): text or JSON lines, level filter, auth mode none warned
about at start, log.file with SIGHUP reopening it."""

import json
import os
import re
import signal

from pbutil import unique_uid, wait_until


def test_json_log_lines_parse(bridge_factory):
    b = bridge_factory(config={"log": {"format": "json", "level": "debug"}})
    uid = unique_uid()
    c = b.uid_client(uid)
    assert b.push(uid, "x")[0] == 200
    assert c.recv_text() == "x"
    c.close()
    b.wait_user_connections(uid, 0)
    lines = [ln for ln in b.log_text().splitlines() if ln.strip()]
    assert lines
    for ln in lines:
        obj = json.loads(ln)
        assert isinstance(obj, dict), ln


def test_auth_mode_none_is_warned_about(bridge):
    lines = bridge.log_text().splitlines()
    assert any(re.search(r"warn", ln, re.I) and re.search(r"auth", ln, re.I) for ln in lines), \
        "no warning about auth.mode none at start"


def test_log_file_and_sighup_reopen(bridge_factory, tmp_path):
    path = tmp_path / "pb.log"
    b = bridge_factory(config={"log": {"file": str(path), "level": "debug"}})
    wait_until(lambda: path.exists() and path.stat().st_size > 0, timeout=10,
               desc="log.file written")
    rotated = tmp_path / "pb.log.1"
    os.rename(path, rotated)
    b.proc.send_signal(signal.SIGHUP)
    # Keep causing log lines until the reopened file has some.
    def reopened():
        uid = unique_uid()
        c = b.uid_client(uid)
        c.close()
        return path.exists() and path.stat().st_size > 0
    wait_until(reopened, timeout=10, interval=0.2, desc="log.file reopened after SIGHUP")
    assert b.alive
    assert rotated.stat().st_size > 0
