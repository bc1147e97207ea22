"""Broadcast: POST /broadcast and Kafka key "*" reach every connection, each
in its own form, respecting event filters."""

import json

from pbutil import envelope, unique_uid


def _population(bridge):
    u1, u2, u3 = unique_uid(), unique_uid(), unique_uid()
    natives = [bridge.native_client(u1)[0], bridge.native_client(u2)[0]]
    seeds = [bridge.uid_client(u1), bridge.uid_client(u3)]
    tok = bridge.ws()
    tok.login_token(u2)
    seeds.append(tok)
    return natives, seeds


def test_http_broadcast_reaches_everyone(bridge):
    natives, seeds = _population(bridge)
    st, doc = bridge.json("POST", "/broadcast", {"event": "news", "data": {"v": 1}})[:2]
    assert (st, doc) == (200, {"delivered": 5})
    for c in natives:
        m = c.recv_json()
        assert (m["type"], m["event"], m["data"]) == ("event", "news", {"v": 1})
    for c in seeds:
        assert json.loads(c.recv_text()) == {"v": 1}


def test_http_broadcast_string_data_to_seed_clients(bridge):
    _, seeds = _population(bridge)
    st, doc = bridge.json("POST", "/broadcast", {"event": "news", "data": "to all"})[:2]
    assert (st, doc) == (200, {"delivered": 3 + 2})
    for c in seeds:
        assert c.recv_text() == "to all"


def test_kafka_star_key_reaches_everyone(bridge, kafka):
    natives, seeds = _population(bridge)
    kafka.produce(bridge.topic, envelope(event="news", data="star"), key="*")
    for c in natives:
        assert c.recv_json(10)["data"] == "star"
    for c in seeds:
        assert c.recv_text(10) == "star"


def test_broadcast_respects_event_filters(bridge):
    uid = unique_uid()
    want, _ = bridge.native_client(uid, events=["news"])
    skip, _ = bridge.native_client(uid, events=["other"])
    tok = bridge.ws()
    tok.login_token(unique_uid(), "other")
    st, doc = bridge.json("POST", "/broadcast", {"event": "news", "data": 1})[:2]
    assert (st, doc) == (200, {"delivered": 1})
    assert want.recv_json()["event"] == "news"
    skip.no_message(0.2)
    tok.no_message(0.1)


def test_broadcast_with_no_connections_delivers_zero(bridge):
    st, doc = bridge.json("POST", "/broadcast", {"event": "news", "data": 1})[:2]
    assert (st, doc) == (200, {"delivered": 0})


def test_group_broadcast_skips_identities_without_groups(bridge):
    # Logins of auth.mode none carry no groups: a group broadcast reaches none.
    natives, seeds = _population(bridge)
    st, doc = bridge.json("POST", "/broadcast", {"event": "news", "data": 1,
                                                 "group": "admins"})[:2]
    assert (st, doc) == (200, {"delivered": 0})
    for c in natives + seeds:
        c.no_message(0.1)


def test_broadcast_then_unicast_still_work(bridge):
    uid = unique_uid()
    c = bridge.uid_client(uid)
    assert bridge.json("POST", "/broadcast", {"data": "b"})[0] == 200
    assert bridge.push(uid, "u") == (200, {"delivered": 1})
    assert c.recv_texts(2) == ["b", "u"]
