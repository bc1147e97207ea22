"""Rebalance (SPEC §1, §6): two bridges share a consumer group on a topic with
four partitions; one leaves; its partitions move to the one that stays, which
resumes from the leaver's committed offsets. Clients of the bridge that stays
miss nothing: every event of its own partitions, and every event of the moved
partitions from the hand-over on, in order, without duplicates."""

from pbutil import envelope, unique_uid, wait_until

PARTITIONS = 4
USERS_PER_PARTITION = 2
ROUND = 10


def _revoked_count(bridge):
    return bridge.log_text().count("partition(s) revoked")


def test_partitions_move_to_the_bridge_that_stays(bridge_factory, kafka):
    a = bridge_factory(partitions=PARTITIONS)
    group = a.config["kafka"]["group_id"]
    wait_until(lambda: a.assigned() == set(range(PARTITIONS)), timeout=30,
               desc="bridge A owns every partition")
    b = bridge_factory(topic=a.topic, create_topic=False, group_id=group)
    # B joining makes A give up half: wait until the two split the topic.
    wait_until(lambda: a.assigned() and b.assigned() and
               a.assigned() | b.assigned() == set(range(PARTITIONS)) and
               not a.assigned() & b.assigned(), timeout=60, desc="A and B split the partitions")
    a_parts = a.assigned()
    assert 0 < len(a_parts) < PARTITIONS

    users = {p: [unique_uid() for _ in range(USERS_PER_PARTITION)] for p in range(PARTITIONS)}
    clients = {u: a.uid_client(u) for p in users for u in users[p]}

    def produce_round(first):
        for p, us in users.items():
            msgs = [(u, envelope(data=f"{u}:{s}")) for s in range(first, first + ROUND) for u in us]
            kafka.produce_many(a.topic, msgs, partition=p)

    produce_round(0)
    revoked_before = _revoked_count(a)
    b.stop()  # SIGTERM: B commits what it handed over, and leaves the group
    wait_until(lambda: _revoked_count(a) > revoked_before and
               a.assigned() == set(range(PARTITIONS)), timeout=60,
               desc="A owns every partition again")
    produce_round(ROUND)

    last = 2 * ROUND - 1
    for p, us in users.items():
        for u in us:
            c = clients[u]
            if p in a_parts:
                want = [f"{u}:{s}" for s in range(2 * ROUND)]
                assert [c.recv_text(timeout=20) for _ in want] == want, f"user on A's {p}"
            else:
                # B delivered (to nobody) and committed some prefix of the first
                # round; A delivers a gap-free suffix that includes round two.
                got = []
                while not got or got[-1] != f"{u}:{last}":
                    got.append(c.recv_text(timeout=20))
                seqs = [int(t.rsplit(":", 1)[1]) for t in got]
                assert seqs == list(range(seqs[0], last + 1)), f"user on moved {p}: {seqs}"
                assert seqs[0] <= ROUND
            c.no_message(0.2)
