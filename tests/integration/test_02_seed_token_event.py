"""Seed flow 2: {"token": "abc", "event": "e1"} (auth.mode none: the user is
the token itself); POST /push {"userId": "abc", "event": "e1", "message":
"hi"} reaches the e1 connection only. A connection that names no event
receives all of its user's events."""

import pytest

from pbutil import envelope, unique_uid


@pytest.fixture
def shared(module_bridge_factory):
    """The bridge these tests share (a fresh one after a crash)."""
    return module_bridge_factory.shared()


def test_push_useris_message_reaches_e1_connection_only(shared):
    tok = unique_uid("abc")
    e1 = shared.ws()
    e1.login_token(tok, "e1")
    e2 = shared.ws()
    e2.login_token(tok, "e2")
    st, doc = shared.json("POST", "/push", {"userId": tok, "event": "e1", "message": "hi"})[:2]
    assert st == 200
    assert doc == {"delivered": 1}
    assert e1.recv_text() == "hi"
    e2.no_message(0.3)


def test_unfiltered_token_connection_gets_every_event(shared):
    tok = unique_uid("abc")
    e1 = shared.ws()
    e1.login_token(tok, "e1")
    anyc = shared.ws()
    anyc.login_token(tok)
    for ev in ("e1", "e2"):
        st, doc = shared.json("POST", "/push", {"userId": tok, "event": ev, "message": ev})[:2]
        assert st == 200
    assert e1.recv_text() == "e1"
    assert anyc.recv_texts(2) == ["e1", "e2"]
    e1.no_message(0.3)


def test_push_without_event_is_message_event(shared):
    # event defaults to "message": a connection filtered on "message" gets it.
    tok = unique_uid("abc")
    m = shared.ws()
    m.login_token(tok, "message")
    other = shared.ws()
    other.login_token(tok, "e1")
    st, doc = shared.json("POST", "/push", {"uid": tok, "message": "plain"})[:2]
    assert (st, doc) == (200, {"delivered": 1})
    assert m.recv_text() == "plain"
    other.no_message(0.3)


def test_kafka_event_field_filters(shared, kafka):
    tok = unique_uid("abc")
    e1 = shared.ws()
    e1.login_token(tok, "e1")
    e2 = shared.ws()
    e2.login_token(tok, "e2")
    kafka.produce_many(shared.topic, [
        (tok, envelope(event="e2", data="for e2")),
        (tok, envelope(event="e1", data="for e1")),
    ])
    assert e1.recv_text(timeout=10) == "for e1"
    assert e2.recv_text(timeout=10) == "for e2"
    e1.no_message(0.2)
    e2.no_message(0.2)


def test_kafka_event_header_overrides_field(shared, kafka):
    tok = unique_uid("abc")
    e1 = shared.ws()
    e1.login_token(tok, "e1")
    e2 = shared.ws()
    e2.login_token(tok, "e2")
    kafka.produce(shared.topic, envelope(event="e1", data="header wins"), key=tok,
                  headers={"event": "e2"})
    kafka.produce(shared.topic, envelope(event="e1", data="marker"), key=tok)
    # e1 sees only the marker: the first event went to e2 by its header.
    assert e1.recv_text(timeout=10) == "marker"
    assert e2.recv_text(timeout=10) == "header wins"


def test_token_with_other_users_isolated(shared):
    tok, other = unique_uid("abc"), unique_uid("xyz")
    mine = shared.ws()
    mine.login_token(tok, "e1")
    theirs = shared.ws()
    theirs.login_token(other, "e1")
    st, doc = shared.json("POST", "/push", {"userId": tok, "event": "e1", "message": "x"})[:2]
    assert (st, doc) == (200, {"delivered": 1})
    assert mine.recv_text() == "x"
    theirs.no_message(0.3)
