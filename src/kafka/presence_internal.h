/* Presence's private parts, shared by presence.c (the protocol: what a node
 * says, what it makes of the others', the answers) and presence_setup.c (its
 * Kafka clients, the topic, where reading starts, the goodbye). Not for use
 * outside src/kafka. */
#ifndef PB_PRESENCE_INTERNAL_H
#define PB_PRESENCE_INTERNAL_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "pushbridge/core/config.h"
#include "presence_table.h"

struct pb_kafka;

#define MAX_NODES 256
#define SNAPSHOT_MS 30000
#define SNAP_USERS 2000
#define SNAP_BYTES (256 * 1024) /* a part is sent once it passes this */
#define MSG_MAX (SNAP_BYTES + 8192)
#define MAX_DIRTY 65536
#define CATCHUP_MAX_MS 15000 /* ready anyway after this long (logged) */
#define START_TIMEOUT_MS 5000
#define RETENTION_MS "600000"
#define SEGMENT_MS "60000"
#define PRODUCE_QUEUE_MESSAGES "10000"
#define PRODUCE_QUEUE_KBYTES "65536"
#define LOG_INTERVAL_MS 10000

struct pnode {
    char name[256];
    char version[32];
    uint64_t inc;
    int64_t seq;     /* last sequence number applied; -1 none */
    int64_t seen_ms; /* wall clock: last message (its timestamp while catching up) */
    int64_t connections, users;
    int synced;    /* live holds a snapshot and every delta since */
    int owner;     /* takes part in owning decisions */
    int next_part; /* the snapshot part expected next; -1 none under way */
    struct pb_utable live, building;
};

struct pb_presence {
    struct pb_kafka *k;
    const struct pb_config *cfg;
    char node[256];
    uint64_t inc;
    int64_t seq;
    rd_kafka_t *prod, *cons;
    rd_kafka_queue_t *q;

    struct pnode *nodes[MAX_NODES];
    size_t nnodes;
    size_t used; /* entries in every node's tables: <= cluster.presence_max_users */
    uint64_t seed;

    struct pb_utable dirty; /* users whose count changed since the last tick */
    size_t dirty_used;
    int need_snapshot;
    int64_t last_snap_ms, last_sent_ms; /* monotonic */

    int caught_up;
    int64_t catchup_end; /* the topic's end at start; -1 unknown */
    int64_t started_ms;  /* monotonic */
    int self_seen;       /* a message of this incarnation was read back */
    int announced;       /* owner:true has been sent */
    int owner;           /* ... and read back: this node owns decisions */
    int64_t last_log_ms;
    char why[160];
};

/* presence.c: the hub's watcher (a user's count changed) */
void pb_presence_watch(void *arg, const char *user, size_t len, size_t n);
/* presence.c: sends a message with no users ("hb", "bye") */
void pb_presence_send_plain(struct pb_presence *p, const char *type);
/* presence.c: the producer's delivery report */
void pb_presence_on_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque);
/* presence.c: forgets a node's users (its tables) */
void pb_presence_node_reset(struct pnode *n);

#endif
