/* Task state and history (SPEC 7): per user, the latest event of each task
 * and the recent events, kept so that a dashboard that logs in sees every
 * running job at once (the snapshot) and a client that reconnects with its
 * last `pos` gets exactly what it missed (resume). It also knows, per Kafka
 * partition, which offsets this process has handled, so that a redelivery
 * (a rebalance, the rebuild at start) is never delivered twice. Behind the
 * hub: Kafka and HTTP events reach it through pb_hub_deliver only. Every
 * bound is a setting (state.*, history.*). Loop thread only. */
#ifndef PB_STORE_H
#define PB_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "pushbridge/core/config.h"
#include "pushbridge/event/envelope.h"
#include "pushbridge/core/metrics.h"

/* Longest pos string (see pos.c): a pos names at most PB_POS_MAX_STREAMS
 * streams; a user's events from more streams get a pos that cannot resume. */
#define PB_POS_MAX_STREAMS 32
#define PB_POS_MAX_LEN 1600

enum pb_record_result {
    PB_RECORD_DELIVER = 0,
    PB_RECORD_OUTDATED, /* older than the kept state of its task: not delivered */
    PB_RECORD_TASK,     /* delivered, and it changed its task's kept state */
};

struct pb_store;

struct pb_store *pb_store_new(const struct pb_config *cfg, struct pb_metrics *m);
void pb_store_free(struct pb_store *st);

/* Was this Kafka offset handled already? 1 for a redelivery (after a
 * rebalance, or one the rebuild at start read), which nobody gets twice;
 * else 0, and the offset now counts as handled. */
int pb_store_seen(struct pb_store *st, const char *topic, int32_t partition, int64_t offset);
/* The partition was (re)assigned, or its position jumped: what this process
 * holds of it is no longer contiguous with what comes next. */
void pb_store_gap(struct pb_store *st, const char *topic, int32_t partition);

/* Keeps a valid, targeted event: its task's state and the history. A local
 * HTTP push (ev->topic NULL) gets its offset here. PB_RECORD_OUTDATED when
 * an update older than the kept one must not be delivered; PB_RECORD_TASK
 * when it is delivered and changed its task's kept state: it is now that
 * state (unless state.max_bytes evicts it at once), or, already past its
 * time to live, it ended the task kept before it. */
int pb_store_record(struct pb_store *st, struct pb_event *ev);

/* The pos a native frame to `user` carries now (ts: the event's time, or
 * now for a welcome), NUL-terminated in out (PB_POS_MAX_LEN). */
void pb_store_pos(struct pb_store *st, const char *user, size_t len, int64_t ts, char *out);
/* Users with the same signature get the same pos for one event. */
uint64_t pb_store_pos_sig(struct pb_store *st, const char *user, size_t len);

/* Calls fn with each live task's latest event of `user`, the one updated
 * longest ago first. Returns the number of tasks. */
long pb_store_each_task(struct pb_store *st, const char *user, size_t len,
                        void (*fn)(const struct pb_event *ev, void *ud), void *ud);

/* A client asks to resume from pos: returns 1 when the history covers the
 * gap, after calling fn, in order, with every event after pos addressed to
 * `user` or broadcast (fn filters groups and events) and the pos its frame
 * carries; 0 when it cannot (malformed or foreign pos, evicted, too old),
 * and fn was not called. */
int pb_store_resume(struct pb_store *st, const char *user, size_t len, const char *pos,
                    size_t poslen,
                    void (*fn)(const struct pb_event *ev, const char *pos, void *ud), void *ud);

/* Recent notifications (SPEC 9, recent.c): calls fn, oldest first, with
 * the last `max` (at most PB_STORE_MAX_RECENT) events of the user's history
 * and the broadcast history that carry no task and that admit (NULL: all)
 * accepts. Returns how many. */
#define PB_STORE_MAX_RECENT 100
long pb_store_recent(struct pb_store *st, const char *user, size_t len, int max,
                     int (*admit)(const struct pb_event *ev, void *ud),
                     void (*fn)(const struct pb_event *ev, void *ud), void *ud);

/* Once a second: drops what outlived state.ttl_ms / history.ttl_ms. */
void pb_store_tick(struct pb_store *st);

struct pb_store_stats {
    uint64_t users, tasks, state_bytes, history_events, history_bytes;
};
void pb_store_stats(const struct pb_store *st, struct pb_store_stats *out);

#endif
