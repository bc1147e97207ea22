/* A worker's connections and their outgoing queues: each connection's
 * bounded ring of shared frames and the slow-client policy that guards it
 * (close, drop_oldest, coalesce). Transport-agnostic: the WebSocket and SSE
 * modules plug in through pb_conn_hooks. One pb_conns per worker, touched by
 * that worker's thread only; what the hub (the main loop) decides for a
 * connection reaches it as a message (worker.h). */
#ifndef PB_CONNS_H
#define PB_CONNS_H

#include <stddef.h>
#include <stdint.h>

#include "pushbridge/core/config.h"
#include "pushbridge/core/metrics.h"
#include "pushbridge/event/frame.h"
#include "pushbridge/hub/auth.h"

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

struct pb_conn_hooks;
struct pb_member;

/* One client connection (a WebSocket, or an SSE stream: sse.c). Created by
 * pb_conns_new_conn when the upgrade or the stream's request completes,
 * owned by its worker's pb_conns, freed by pb_conns_free_conn: at once when
 * it closes before asking to log in, else once the hub has let go of it
 * (its release, worker.c), since frames the hub handed over before it
 * learnt of the close still name it. The transport pointer (the wsi) is
 * borrowed until the transport reports the close, then NULL. */
/* What the worker keeps of a connection's identity (the hub's member holds
 * the whole pb_identity: groups, event filter, recent): the user (logs,
 * refresh checks the same sub), the form and the token's exp (tokenlife.c).
 * 24 bytes, not pb_identity's 56: one per connection (docs/PERFORMANCE.md,
 * "Memory per idle connection"). user is owned (freed with the connection). */
struct pb_conn_ident {
    char *user;
    int64_t exp_ms; /* the JWT's exp, wall-clock ms since the epoch; 0 = none */
    int form;       /* enum pb_login_form */
};

/* One client connection (a WebSocket, or an SSE stream: sse.c). Created by
 * pb_conns_new_conn when the upgrade or the stream's request completes,
 * owned by its worker's pb_conns, freed by pb_conns_free_conn: at once when
 * it closes before asking to log in, else once the hub has let go of it
 * (its release, worker.c), since frames the hub handed over before it
 * learnt of the close still name it. The transport pointer (the wsi) is
 * borrowed until the transport reports the close, then NULL.
 * Every idle connection holds one (152 bytes): fields are ordered to leave
 * no padding, flags are bytes, and what only a closing connection needs is
 * a pointer (close_reason), so that RSS per idle connection stays within
 * issue 19's 2.5 KiB (docs/PERFORMANCE.md). */
struct pb_conn {
    void *transport;
    /* How the queue reaches this connection's transport: the default hooks
     * (WebSocket) unless the transport set its own right after
     * pb_conns_new_conn. Static storage, never freed. */
    const struct pb_conn_hooks *hooks;
    uint64_t id;
    struct pb_conn_ident ident;
    /* The hub's record of this connection, made by the worker when it asks
     * to log in and handed to the hub with that request; the worker only
     * passes the pointer back (close, refresh), never reads it. */
    struct pb_member *member;
    /* The close's reason text: a string in static storage (a literal or an
     * auth error code), never freed; NULL until a close is asked for. */
    const char *close_reason;

    /* Outgoing queue: a ring of shared frames. Bound: ws.queue_max_messages
     * entries and ws.queue_hard_max_bytes payload bytes (0: 4 x
     * ws.queue_max_bytes); past ws.queue_max_bytes only while frames keep
     * leaving (enqueue). Allocated with the first frame (the welcome) and
     * kept: 80 bytes of an idle connection's heap (docs/PERFORMANCE.md). */
    struct pb_frame **q;
    size_t q_bytes;
    uint32_t q_head, q_len, q_cap;

    uint16_t close_code;  /* a WebSocket close code (1000..4999) */
    uint8_t closed_sent;  /* the hub was told of the close: wait for its release */
    uint8_t detached;     /* the transport is gone: no longer counted as open */
    uint8_t authed;       /* the hub's start arrived: frames may flow */
    uint8_t closing;      /* a close was requested; nothing more is queued */
    uint8_t refresh_asked; /* the token's refresh was asked for (tokenlife.c) */

    /* Keep-alive (keepalive.c): monotonic ms of the last message or pong from
     * the client, and of the last ping sent. */
    int64_t last_rx_ms;
    int64_t last_ping_ms;
    /* When a frame last left the queue, or the queue last became non-empty. */
    int64_t last_progress_ms;
    /* Token lifetime (tokenlife.c), wall-clock ms: when to ask for a new
     * token (ident.exp_ms holds when it expires). */
    int64_t refresh_at_ms;

    struct pb_conn *prev, *next; /* every connection of the worker */
};

struct pb_conn_hooks {
    /* The queue went from empty to non-empty: ask for a writable callback. */
    void (*want_write)(struct pb_conn *c);
    /* c->close_code is set: close the connection soon (async is fine). */
    void (*kill)(struct pb_conn *c);
    /* Drop the connection now, without a close frame (a dead peer). */
    void (*cut)(struct pb_conn *c);
    /* The hub took the login: c is authed and its first frames follow. */
    void (*started)(struct pb_conn *c);
    /* The hub refused the login (the user's ws.max_connections_per_user). */
    void (*refused)(struct pb_conn *c);
};

/* What the workers share (atomics): the process-wide count of open
 * connections that ws.max_connections bounds, and the last connection ID
 * given. Owned by the server. */
struct pb_conns_shared {
    long open;
    uint64_t next_id;
};

struct pb_conns;

/* m: the worker's own counters (single writer: this worker). */
struct pb_conns *pb_conns_new(const struct pb_config *cfg, struct pb_metrics *m,
                              struct pb_conns_shared *shared, const struct pb_conn_hooks *hooks);
/* Frees every connection still there (without calling hooks). */
void pb_conns_free(struct pb_conns *cs);
/* fn(ud, c) runs when a logged-in connection starts closing (a policy, a
 * token, a shutdown: pb_conns_close or pb_conns_cut), so that the hub stops
 * handing it frames before the transport reports the close. */
void pb_conns_on_closing(struct pb_conns *cs, void (*fn)(void *ud, struct pb_conn *c), void *ud);

/* A new, unauthenticated connection; NULL when ws.max_connections are open
 * in the whole process (the caller closes with PB_CLOSE_TRY_AGAIN) or OOM. */
struct pb_conn *pb_conns_new_conn(struct pb_conns *cs, void *transport);
/* Unlinks c and frees it and its queue. */
void pb_conns_free_conn(struct pb_conns *cs, struct pb_conn *c);

/* Queues a frame (an event, a welcome, an error, a pong), applying
 * ws.slow_client when c is slow. 1 when queued. */
int pb_conns_send(struct pb_conns *cs, struct pb_conn *c, struct pb_frame *f);
/* Queues a frame outside the queue's byte bound and slow-client policy (a
 * WebSocket ping: two bytes, one per ws.ping_interval_ms at most, so it
 * never makes room by dropping an event). 0 when the ring is full. */
int pb_conns_send_unbounded(struct pb_conns *cs, struct pb_conn *c, struct pb_frame *f);
/* Applies ws.slow_client to c if its queue has stayed over
 * ws.queue_max_bytes with nothing leaving for ws.slow_client_grace_ms (the
 * once-a-second sweep: a stalled client may get no further event). */
void pb_conns_police(struct pb_conns *cs, struct pb_conn *c);
/* Drops c at once, without a close frame (hooks.cut). */
void pb_conns_cut(struct pb_conns *cs, struct pb_conn *c);
/* Asks for c to be closed with code; drops its queue at once (memory).
 * reason must be in static storage (a literal): c keeps the pointer. */
void pb_conns_close(struct pb_conns *cs, struct pb_conn *c, int code, const char *reason);
/* Closes every connection (shutdown). */
void pb_conns_close_all(struct pb_conns *cs, int code, const char *reason);
/* The transport is gone: nothing is queued or written any more; c waits
 * for pb_conns_free_conn. */
void pb_conns_detach(struct pb_conns *cs, struct pb_conn *c);

/* Every connection, authed or not: the first, then c->next. */
struct pb_conn *pb_conns_first(const struct pb_conns *cs);
const struct pb_config *pb_conns_config(const struct pb_conns *cs);
struct pb_metrics *pb_conns_metrics(const struct pb_conns *cs);

/* Head of c's queue, or NULL. */
struct pb_frame *pb_conn_peek(const struct pb_conn *c);
/* The head frame went to the transport: pop it, and note the progress
 * (ws.slow_client_grace_ms counts from the last one). */
void pb_conn_sent(struct pb_conns *cs, struct pb_conn *c);
/* The i-th queued frame (0 = head), or NULL past the end. */
struct pb_frame *pb_conn_at(const struct pb_conn *c, uint32_t i);
void pb_conn_pop(struct pb_conns *cs, struct pb_conn *c);

/* This worker's gauges; any thread may read them (relaxed atomics). The
 * count is of open connections: one whose transport is gone (waiting for
 * the hub's release) no longer counts. */
size_t pb_conns_count(const struct pb_conns *cs);
size_t pb_conns_queue_bytes(const struct pb_conns *cs);

#endif
