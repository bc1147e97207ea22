"""Offsets that fell off the log are counted and logged, not lost silently
(issue 15 item 6; SPEC §5 metrics, §6, README "failure modes").

When retention deletes what the bridge has not read, librdkafka's
auto.offset.reset moves the position to the log's start. pushbridge counts
the offsets skipped in pushbridge_events_lost_total{reason="out_of_range"}
and /stats "events_lost", and warns once per interval with the number.
DeleteRecords moves the log start offset at once, as retention would later."""

import signal

from pbutil import envelope, unique_uid, wait_until


def test_offsets_deleted_while_the_bridge_was_stopped_are_counted(bridge_factory, kafka):
    first = bridge_factory()
    group = first.config["kafka"]["group_id"]
    uid = unique_uid()
    c = first.uid_client(uid)
    kafka.produce(first.topic, envelope(data="e0"), key=uid)
    assert c.recv_text(timeout=15) == "e0"
    assert first.stop(signal.SIGTERM) == 0  # commits offset 1

    kafka.produce_many(first.topic, [(uid, envelope(data=f"e{i}")) for i in range(1, 11)])
    assert kafka.delete_records(first.topic, 0, 7) == 7  # e1..e6 are gone unread

    # No rebuild: what is left is then delivered live (with a rebuild it
    # would be read into the history, for clients that resume).
    second = bridge_factory(topic=first.topic, create_topic=False, group_id=group,
                            config={"state": {"lookback_ms": 0}})
    c = second.uid_client(uid)
    # What is left is delivered (e7..e10), then the count is final.
    kafka.produce(first.topic, envelope(data="marker"), key=uid)
    got = c.recv_texts(5, timeout=20)
    assert got[-1] == "marker"
    second.wait_metric("pushbridge_events_lost_total", 6, reason="out_of_range", timeout=10)
    assert second.stats()["events_lost"] == {"out_of_range": 6}
    warnings = [line for line in second.log_text().splitlines()
                if " warn " in line and "deleted" in line]
    assert len(warnings) == 1, warnings
    assert "6 offset(s)" in warnings[0] and first.topic in warnings[0], warnings[0]

