/* The store's private parts: its data, and what each file offers the
 * others. Lowest first: stream.c (streams, and which offsets were handled),
 * store.c (users, tasks, history and their bounds), pos.c (positions and
 * resume). A file calls only the files before it. Not for use outside
 * src/store/. */
#ifndef PB_STORE_INTERNAL_H
#define PB_STORE_INTERNAL_H

#include <stdint.h>

#include "pushbridge/store/store.h"

/* One stream of events: a Kafka partition, or this process's local HTTP
 * pushes. Lives as long as the store. Bound: the partitions consumed (and
 * one for HTTP); PB_STORE_MAX_STREAMS at most. */
#define PB_STORE_MAX_STREAMS 65536

struct pb_stream {
    struct pb_stream *hnext;
    char *topic; /* NULL: local HTTP */
    int32_t partition;
    uint32_t idx;
    uint64_t hash;
    char sid[40];   /* its name in a pos: the same on every node */
    int64_t first;  /* first offset of the range held contiguously; -1 none */
    int64_t high;   /* highest offset handled; -1 none */
    int gap;        /* the next offset read starts a new range */
    int bcast;      /* has carried broadcasts (on the store's bcast list) */
    /* Highest offset whose history entry is gone (evicted, expired, never
     * kept), for users whose record is gone too, and for broadcasts; and
     * the newest Kafka time among them (for a pos that does not name the
     * stream). */
    int64_t evicted_user, evicted_bcast;
    int64_t evicted_user_ts, evicted_bcast_ts;
};

/* One kept event, shared (ref-counted) by a task and a history entry. The
 * strings live in blob. */
struct pb_sevent {
    uint32_t refs;
    uint32_t stream;
    int64_t offset;
    int64_t ts_ms;
    uint64_t seq;     /* arrival order in this process */
    uint64_t task_hash;
    size_t bytes;     /* what it counts against the byte bounds */
    int target_kind;
    int final;
    int data_is_string;
    char *name, *id, *task, *target, *data, *text;
    size_t data_len, text_len, target_len;
    char blob[];
};

/* The latest event of one task of one user. */
struct pb_task {
    struct pb_task *uprev, *unext; /* the user's, updated longest ago first */
    struct pb_task *gprev, *gnext; /* the store's live or final list, same order */
    struct pb_suser *user;
    struct pb_sevent *ev;
    int in_final; /* on the final list (state.final_ttl_ms) */
};

/* One history entry: a user's (or the broadcast history's) event. */
struct pb_hist {
    struct pb_hist *unext;         /* the owner's list, oldest first */
    struct pb_hist *gprev, *gnext; /* every entry, oldest first */
    struct pb_suser *user;
    struct pb_sevent *ev;
};

/* A stream one user has had events from, and the highest offset of the
 * user's history that is gone (-1 none): resume cannot cover below it; and
 * the newest Kafka time of those, for a pos that does not name the stream. */
struct pb_ustream {
    uint32_t stream;
    int64_t floor;
    int64_t floor_ts;
};

/* Everything kept for one user; freed when it holds no task and no history
 * entry. The broadcast history is a record of its own, outside the table. */
struct pb_suser {
    struct pb_suser *hnext;
    uint64_t hash;
    struct pb_task *tasks, *tasks_tail;
    uint32_t ntasks;
    struct pb_hist *hist, *hist_tail;
    uint32_t nhist;
    struct pb_ustream *streams;
    uint32_t nstreams;
    uint64_t sig; /* of the stream set, for pb_store_pos_sig */
    int busy;     /* being recorded into: not freed when empty meanwhile */
    size_t idlen;
    char id[];
};

struct pb_store {
    const struct pb_config *cfg;
    struct pb_metrics *m;
    uint64_t seed;

    struct pb_suser **buckets;
    size_t nbuckets, nusers;
    struct pb_suser *bcast; /* the broadcast history (id ""), not in buckets */
    /* The user pb_store_record last found or made: the pos of the frames that
     * event becomes asks for it again at once (pb_store_pos), and finds it
     * here without a second walk of the buckets. Cleared when it is freed. */
    struct pb_suser *last_user;

    /* Tasks by last update, oldest first: live ones and final ones, whose
     * times to live differ (state.ttl_ms, state.final_ttl_ms). */
    struct pb_task *live, *live_tail, *fin, *fin_tail;
    size_t ntasks, state_bytes;

    struct pb_hist *hist, *hist_tail; /* every history entry, oldest first */
    size_t nhist, hist_bytes;
    uint64_t next_seq;

    /* Streams (stream.c): by index, and hashed by (topic, partition). */
    struct pb_stream **streams;
    uint32_t nstreams, cap_streams;
    struct pb_stream **sbuckets;
    size_t nsbuckets;
    struct pb_stream *last;   /* the last one looked up: messages come in runs */
    struct pb_stream *http;   /* local HTTP pushes */
    uint32_t *bcast_streams;  /* streams that carried broadcasts */
    uint32_t nbcast;
};

/* stream.c */
int pb_streams_init(struct pb_store *st);
void pb_streams_free(struct pb_store *st);
/* The stream of (topic, partition), added when new; NULL on OOM or past
 * PB_STORE_MAX_STREAMS. topic NULL: the local HTTP stream. */
struct pb_stream *pb_stream_get(struct pb_store *st, const char *topic, int32_t partition);
/* Marks s as a broadcast stream. */
void pb_stream_mark_bcast(struct pb_store *st, struct pb_stream *s);

/* store.c */
struct pb_suser *pb_store_user_find(const struct pb_store *st, const char *id, size_t len);
/* An event's fields as a pb_event (borrowed: never pb_event_clear'ed). */
void pb_sevent_view(const struct pb_store *st, const struct pb_sevent *e, struct pb_event *ev);

/* A user's history and the broadcasts', merged in arrival order: the next
 * entry of the two lists *a and *b (either may be NULL), each advanced as it
 * is taken; NULL when both are done (resume, the recent notifications). */
static inline const struct pb_hist *pb_hist_next(const struct pb_hist **a,
                                                 const struct pb_hist **b)
{
    const struct pb_hist *h;
    if (*a && (!*b || (*a)->ev->seq < (*b)->ev->seq)) {
        h = *a;
        *a = h->unext;
    } else {
        h = *b;
        if (h)
            *b = h->unext;
    }
    return h;
}

#endif
