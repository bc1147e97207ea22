/* The hub: who is connected, and fan-out. It maps user IDs to their
 * connections, holds each connection's bounded outgoing queue, and is the one
 * place where Kafka and HTTP pushes become queued frames (pb_hub_deliver).
 * Transport-agnostic: the WebSocket module plugs in through pb_hub_hooks,
 * which keeps the hub unit-testable. Loop thread only. */
#ifndef PB_HUB_H
#define PB_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "pushbridge/hub/auth.h"
#include "pushbridge/core/config.h"
#include "pushbridge/event/envelope.h"
#include "pushbridge/event/frame.h"
#include "pushbridge/core/metrics.h"
#include "pushbridge/store/store.h"

/* WebSocket close codes (documented in README.md). */
#define PB_CLOSE_NORMAL 1000
#define PB_CLOSE_GOING_AWAY 1001
#define PB_CLOSE_UNSUPPORTED 1003
#define PB_CLOSE_BAD_DATA 1007
#define PB_CLOSE_TOO_BIG 1009
#define PB_CLOSE_TRY_AGAIN 1013
#define PB_CLOSE_AUTH_TIMEOUT 4001
#define PB_CLOSE_AUTH_FAILED 4003
#define PB_CLOSE_TOKEN_EXPIRED 4004
#define PB_CLOSE_USER_LIMIT 4008
#define PB_CLOSE_SLOW 4009

struct pb_user;
struct pb_hub_hooks;

/* One client connection (a WebSocket, or an SSE stream: sse.c). Created by
 * pb_hub_conn_new when the upgrade or the stream's request completes, owned
 * by the hub, freed by pb_hub_conn_free when lws reports the close; the
 * transport pointer (the wsi) is borrowed for that lifetime. */
struct pb_conn {
    void *transport;
    /* How the hub reaches this connection's transport: the hub's default
     * hooks (WebSocket) unless the transport set its own right after
     * pb_hub_conn_new. Static storage, never freed. */
    const struct pb_hub_hooks *hooks;
    uint64_t id;
    struct pb_identity ident; /* valid once authed */
    int authed;
    int closing;     /* a close was requested; nothing more is queued */
    int close_code;
    char close_reason[64];

    /* Outgoing queue: a ring of shared frames. Bound: ws.queue_max_messages
     * entries and ws.queue_hard_max_bytes payload bytes (0: 4 x
     * ws.queue_max_bytes); past
     * ws.queue_max_bytes only while frames keep leaving (enqueue). */
    struct pb_frame **q;
    uint32_t q_head, q_len, q_cap;
    size_t q_bytes;

    /* Keep-alive (keepalive.c): monotonic ms of the last message or pong from
     * the client, and of the last ping sent. */
    int64_t last_rx_ms;
    int64_t last_ping_ms;
    /* When a frame last left the queue, or the queue last became non-empty. */
    int64_t last_progress_ms;
    /* Token lifetime (tokenlife.c), wall-clock ms: when to ask for a new
     * token (ident.exp_ms holds when it expires); whether it was asked. */
    int64_t refresh_at_ms;
    int refresh_asked;

    struct pb_user *user;
    struct pb_conn *user_prev, *user_next; /* this user's connections */
    struct pb_conn *prev, *next;           /* every connection */
};

struct pb_hub_hooks {
    /* The queue went from empty to non-empty: ask for a writable callback. */
    void (*want_write)(struct pb_conn *c);
    /* c->close_code is set: close the connection soon (async is fine). */
    void (*kill)(struct pb_conn *c);
    /* Drop the connection now, without a close frame (a dead peer). */
    void (*cut)(struct pb_conn *c);
};

struct pb_hub;

/* store may be NULL: no task state, no history, no pos. It is borrowed. */
struct pb_hub *pb_hub_new(const struct pb_config *cfg, struct pb_metrics *m,
                          struct pb_store *store, const struct pb_hub_hooks *hooks);
/* Frees the hub and every connection still in it (without calling hooks). */
void pb_hub_free(struct pb_hub *h);

/* A new, unauthenticated connection; NULL when ws.max_connections are open
 * (the caller closes with PB_CLOSE_TRY_AGAIN) or on OOM. */
struct pb_conn *pb_hub_conn_new(struct pb_hub *h, void *transport);
/* Takes the identity (moved, id is zeroed). -1 when the user is at
 * ws.max_connections_per_user (the identity is then freed). */
int pb_hub_login(struct pb_hub *h, struct pb_conn *c, struct pb_identity *id);
/* Removes every association of c and frees it and its queue. */
void pb_hub_conn_free(struct pb_hub *h, struct pb_conn *c);

/* Keeps the event in the store (task state, history), then queues it to
 * every connection it targets (ev->target_kind) whose filter admits it.
 * Returns the number of connections it was queued to (0 too when it was an
 * outdated task update, counted as dropped). */
long pb_hub_deliver(struct pb_hub *h, struct pb_event *ev, uint32_t source);

/* Keeps the event in the store only (the rebuild at start). */
void pb_hub_keep(struct pb_hub *h, struct pb_event *ev);

/* What a connection gets once logged in: the welcome (native clients),
 * then, when resume names a pos the history covers, every event missed
 * since, else the task snapshot. resume NULL: a first login. */
void pb_hub_start(struct pb_hub *h, struct pb_conn *c, const char *resume, size_t resume_len);
struct pb_store *pb_hub_store(const struct pb_hub *h);

/* Queues a control frame (welcome, error, pong) to one connection. */
int pb_hub_send(struct pb_hub *h, struct pb_conn *c, struct pb_frame *f);
/* Queues a frame outside the queue's byte bound and slow-client policy (a
 * WebSocket ping: two bytes, one per ws.ping_interval_ms at most, so it
 * never makes room by dropping an event). 0 when the ring is full. */
int pb_hub_send_unbounded(struct pb_hub *h, struct pb_conn *c, struct pb_frame *f);
/* Applies ws.slow_client to c if its queue has stayed over
 * ws.queue_max_bytes with nothing leaving for ws.slow_client_grace_ms (the
 * once-a-second sweep: a stalled client may get no further event). */
void pb_hub_police(struct pb_hub *h, struct pb_conn *c);
/* Drops c at once, without a close frame (hooks.cut). */
void pb_hub_cut(struct pb_hub *h, struct pb_conn *c);
/* Every connection, authed or not: the first, then c->next. */
struct pb_conn *pb_hub_first(const struct pb_hub *h);
const struct pb_config *pb_hub_config(const struct pb_hub *h);

/* Asks for c to be closed with code; drops its queue at once (memory). */
void pb_hub_close(struct pb_hub *h, struct pb_conn *c, int code, const char *reason);
/* Closes every connection (shutdown). */
void pb_hub_close_all(struct pb_hub *h, int code, const char *reason);

/* Head of c's queue, or NULL; pop releases the hub's reference. */
struct pb_frame *pb_conn_peek(const struct pb_conn *c);
/* The head frame went to the transport: pop it, and note the progress
 * (ws.slow_client_grace_ms counts from the last one). */
void pb_conn_sent(struct pb_hub *h, struct pb_conn *c);
/* The i-th queued frame (0 = head), or NULL past the end. */
struct pb_frame *pb_conn_at(const struct pb_conn *c, uint32_t i);
void pb_conn_pop(struct pb_hub *h, struct pb_conn *c);

/* A user's connection count changed to n (0: the user is gone); called
 * on the loop thread, right after the change. */
typedef void (*pb_hub_watch_fn)(void *arg, const char *user, size_t len, size_t n);
/* One watcher at most (presence.c); NULL stops watching. */
void pb_hub_set_watch(struct pb_hub *h, pb_hub_watch_fn fn, void *arg);
/* Calls fn for every user with a connection (a presence snapshot). */
void pb_hub_each_user(const struct pb_hub *h, pb_hub_watch_fn fn, void *arg);

size_t pb_hub_user_connections(const struct pb_hub *h, const char *user, size_t len);
size_t pb_hub_connections(const struct pb_hub *h);
size_t pb_hub_users(const struct pb_hub *h);
size_t pb_hub_queue_bytes(const struct pb_hub *h);

#endif
