"""One identity per user (issue 14 item 4; README "WebSocket clients",
error code bad_user): a login's user (JWT sub, uid, token in none mode)
follows the rule the Kafka key and HTTP user_id follow: 1-256 bytes of
strict UTF-8 without NUL. yajl decodes a lone high surrogate escape
("bob\\ud800") to "?", so "bob\\ud800", "bob\\udbff" and "bob?" used to be
one user, and "eve\\udc00" became bytes no browser accepts (1007). The raw
escapes are checked, so they are refused instead."""

import json

import pytest

from jwtutil import hs256
from pbutil import envelope, unique_uid

SECRET = "pushbridge-test-secret-0123456789abcdef"


@pytest.fixture
def none(module_bridge_factory):
    return module_bridge_factory.shared()


@pytest.fixture
def jwt(module_bridge_factory):
    return module_bridge_factory.shared(config={"auth": {"mode": "jwt", "jwt_secret": SECRET}})


def _refused(c, code):
    m = c.recv_json()
    assert m.get("type") == "error" and m.get("code") == code, m
    assert c.expect_close()[0] == 4003


# Raw JSON text: json.dumps(ensure_ascii=True) writes lone surrogates as
# \\uXXXX escapes, which is exactly the input under test.
@pytest.mark.parametrize("suffix", ["\ud800", "\udbff", "\udc00", "\ud800\u0041"],
                         ids=["high", "high_last", "low", "high_then_A"])
@pytest.mark.parametrize("form", ["uid", "token", "native"])
def test_unpaired_surrogate_user_refused_in_none_mode(none, form, suffix):
    base = unique_uid("sur")
    user = base + suffix
    msg = {"uid": {"uid": user}, "token": {"token": user, "event": "x"},
           "native": {"type": "auth", "token": user}}[form]
    c = none.ws()
    c.send_text(json.dumps(msg))  # ensure_ascii: \\udXXX escapes
    _refused(c, "bad_user")
    assert none.user_connections(base + "?") == 0


def test_question_mark_user_is_its_own_user(none):
    base = unique_uid("sur")
    q = none.uid_client(base + "?")
    c = none.ws()
    c.send_text(json.dumps({"uid": base + "\ud800"}))
    _refused(c, "bad_user")
    assert none.user_connections(base + "?") == 1
    st, doc = none.send(base + "?", "only mine")
    assert st == 200, (st, doc)
    assert q.recv_text() == "only mine"


@pytest.mark.parametrize("suffix", ["\ud800", "\udc00"])
def test_jwt_sub_with_unpaired_surrogate_refused(jwt, suffix):
    import time
    base = unique_uid("sur")
    payload = json.dumps({"sub": base + suffix, "exp": int(time.time()) + 300}).encode()
    c = jwt.ws()
    c.send_json({"type": "auth", "token": hs256(payload, SECRET)})
    _refused(c, "invalid_token")
    assert jwt.user_connections(base + "?") == 0


def test_paired_surrogates_are_one_character(none):
    user = unique_uid("sur") + "\U0001F600"
    c = none.ws()
    c.send_text(json.dumps({"type": "auth", "token": user}))  # \\ud83d\\ude00
    welcome = c.recv_json()
    assert welcome["type"] == "welcome" and welcome["user"] == user, welcome


def test_kafka_and_http_user_id_with_unpaired_surrogate_refused(none, kafka):
    base = unique_uid("sur")
    q = none.uid_client(base + "?")
    value = '{"user_id":"%s\\ud800","event":"x","data":1}' % base
    kafka.produce(none.topic, value)
    none.wait_metric("pushbridge_events_dropped_total", 1, topic=none.topic, reason="bad_field")
    st, doc = none.json("POST", "/push", body=value.encode())[:2]
    assert st == 400 and doc["error"] == "bad_field" and "user_id" in doc["message"], (st, doc)
    q.no_message(0.3)
