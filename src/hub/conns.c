/* A worker's connections and their outgoing queues (conns.h). A queue is a
 * ring of shared frames that grows with need up to ws.queue_max_messages
 * (idle connections hold no ring at all); the slow-client policy is redis's
 * output-buffer limits: a hard bound that acts at once, a soft one that acts
 * only when nothing has left the queue for a grace period. */
#include "pushbridge/hub/conns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/core/log.h"

/* Owned by its worker; lives as long as the worker. */
struct pb_conns {
    const struct pb_config *cfg;
    struct pb_metrics *m; /* the worker's counters */
    struct pb_conns_shared *shared;
    struct pb_conn_hooks hooks;
    struct pb_conn *conns; /* every connection, authed or not */
    size_t nconns;         /* PB_COUNT: read by the main loop's gauges */
    size_t queue_bytes;    /* sum of q_bytes: the pushbridge_queue_bytes gauge (PB_COUNT) */
    void (*on_closing)(void *ud, struct pb_conn *c);
    void *closing_ud;
};

struct pb_conns *pb_conns_new(const struct pb_config *cfg, struct pb_metrics *m,
                              struct pb_conns_shared *shared, const struct pb_conn_hooks *hooks)
{
    struct pb_conns *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return NULL;
    cs->cfg = cfg;
    cs->m = m;
    cs->shared = shared;
    cs->hooks = *hooks;
    return cs;
}

static void queue_clear(struct pb_conns *cs, struct pb_conn *c)
{
    while (c->q_len)
        pb_conn_pop(cs, c);
    free(c->q);
    c->q = NULL;
    c->q_cap = 0;
    c->q_head = 0;
}

void pb_conns_on_closing(struct pb_conns *cs, void (*fn)(void *ud, struct pb_conn *c), void *ud)
{
    cs->on_closing = fn;
    cs->closing_ud = ud;
}

static void closing(struct pb_conns *cs, struct pb_conn *c)
{
    if (cs->on_closing && c->member && !c->closed_sent)
        cs->on_closing(cs->closing_ud, c);
}

void pb_conns_free(struct pb_conns *cs)
{
    if (!cs)
        return;
    while (cs->conns)
        pb_conns_free_conn(cs, cs->conns);
    free(cs);
}

/* Connection IDs are unique in the process, whichever worker holds them. */
static uint64_t next_conn_id(struct pb_conns *cs)
{
    return __atomic_add_fetch(&cs->shared->next_id, 1, __ATOMIC_RELAXED);
}

struct pb_conn *pb_conns_new_conn(struct pb_conns *cs, void *transport)
{
    /* ws.max_connections counts every worker's connections. */
    long open = __atomic_add_fetch(&cs->shared->open, 1, __ATOMIC_RELAXED);
    if (open > cs->cfg->ws_max_connections) {
        __atomic_sub_fetch(&cs->shared->open, 1, __ATOMIC_RELAXED);
        PB_COUNT(cs->m->connections_refused);
        return NULL;
    }
    struct pb_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        __atomic_sub_fetch(&cs->shared->open, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    c->transport = transport;
    c->hooks = &cs->hooks;
    c->id = next_conn_id(cs);
    c->last_rx_ms = c->last_ping_ms = pb_monotonic_ms();
    c->next = cs->conns;
    if (cs->conns)
        cs->conns->prev = c;
    cs->conns = c;
    PB_COUNT(cs->nconns);
    return c;
}

/* c's socket is gone: it no longer counts as open (nor against
 * ws.max_connections), though the connection may wait for the hub's
 * release. */
static void uncount(struct pb_conns *cs, struct pb_conn *c)
{
    if (c->detached)
        return;
    c->detached = 1;
    PB_COUNT_ADD(cs->nconns, (size_t)-1);
    __atomic_sub_fetch(&cs->shared->open, 1, __ATOMIC_RELAXED);
}

void pb_conns_free_conn(struct pb_conns *cs, struct pb_conn *c)
{
    if (!c)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uncount(cs, c);
    queue_clear(cs, c);
    free(c->ident.user);
    free(c);
}

void pb_conns_detach(struct pb_conns *cs, struct pb_conn *c)
{
    c->closing = 1;
    c->transport = NULL;
    queue_clear(cs, c);
    uncount(cs, c);
}

struct pb_frame *pb_conn_peek(const struct pb_conn *c)
{
    return c->q_len ? c->q[c->q_head] : NULL;
}

void pb_conn_sent(struct pb_conns *cs, struct pb_conn *c)
{
    c->last_progress_ms = pb_monotonic_ms();
    pb_conn_pop(cs, c);
}

struct pb_frame *pb_conn_at(const struct pb_conn *c, uint32_t i)
{
    return i < c->q_len ? c->q[(c->q_head + i) % c->q_cap] : NULL;
}

void pb_conn_pop(struct pb_conns *cs, struct pb_conn *c)
{
    if (!c->q_len)
        return;
    struct pb_frame *f = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    c->q_bytes -= f->len;
    PB_COUNT_ADD(cs->queue_bytes, -f->len);
    pb_frame_unref(f);
}

/* Grows the ring up to ws.queue_max_messages slots; idle connections hold
 * no ring at all, which keeps per-connection memory small. */
static int queue_grow(struct pb_conn *c, uint32_t max)
{
    uint32_t cap = c->q_cap ? c->q_cap * 2 : 8;
    if (cap > max)
        cap = max;
    if (cap <= c->q_cap)
        return -1;
    struct pb_frame **q = malloc(cap * sizeof(*q));
    if (!q)
        return -1;
    for (uint32_t i = 0; i < c->q_len; i++)
        q[i] = c->q[(c->q_head + i) % c->q_cap];
    free(c->q);
    c->q = q;
    c->q_cap = cap;
    c->q_head = 0;
    return 0;
}

void pb_conns_close(struct pb_conns *cs, struct pb_conn *c, int code, const char *reason)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_code = (uint16_t)code;
    c->close_reason = reason; /* static storage (conns.h) */
    queue_clear(cs, c);
    closing(cs, c);
    if (c->hooks->kill)
        c->hooks->kill(c);
}

void pb_conns_close_all(struct pb_conns *cs, int code, const char *reason)
{
    for (struct pb_conn *c = cs->conns; c; c = c->next)
        pb_conns_close(cs, c, code, reason);
}

/* Appends f to c's ring (room is there) and asks for a write on the
 * empty -> non-empty edge. */
static void push_frame(struct pb_conns *cs, struct pb_conn *c, struct pb_frame *f)
{
    if (c->q_len == 0)
        c->last_progress_ms = pb_monotonic_ms(); /* the grace period starts now */
    c->q[(c->q_head + c->q_len) % c->q_cap] = f;
    pb_frame_ref(f);
    c->q_len++;
    c->q_bytes += f->len;
    PB_COUNT_ADD(cs->queue_bytes, f->len);
    if (c->q_len == 1 && c->hooks->want_write)
        c->hooks->want_write(c);
}

/* Would adding `add` bytes make c a slow consumer? Bounds (redis's output
 * buffer limits): ws.queue_max_messages and ws.queue_hard_max_bytes at once;
 * ws.queue_max_bytes only when nothing has left the queue for
 * ws.slow_client_grace_ms, so a client that reads a burst larger than the
 * soft bound is not taken for one that stopped reading. */
static int is_slow(struct pb_conns *cs, const struct pb_conn *c, size_t add)
{
    const struct pb_config *cfg = cs->cfg;
    size_t hard = cfg->ws_queue_hard_max_bytes ? (size_t)cfg->ws_queue_hard_max_bytes
                                               : 4 * (size_t)cfg->ws_queue_max_bytes;
    if (c->q_len + 1 > (uint32_t)cfg->ws_queue_max_messages || c->q_bytes + add > hard)
        return 1;
    if (c->q_bytes + add <= (size_t)cfg->ws_queue_max_bytes)
        return 0;
    return pb_monotonic_ms() - c->last_progress_ms >= cfg->ws_slow_client_grace_ms;
}

/* ws.slow_client coalesce: the newest queued update of f's task gives way
 * (unless it is final), so that f can be queued; with rebuilt_only, only a
 * rebuilt snapshot frame gives way to one (enqueue). Returns 1 when it did. */
static int coalesce_into(struct pb_conns *cs, struct pb_conn *c, struct pb_frame *f,
                         int rebuilt_only)
{
    if (!f || !f->task_key)
        return 0;
    for (uint32_t i = c->q_len; i-- > 0;) {
        struct pb_frame *old = c->q[(c->q_head + i) % c->q_cap];
        if (old->task_key != f->task_key)
            continue;
        /* An update past a final one would overtake it; a live frame is not
         * the rebuild's to replace. */
        if (old->final || (rebuilt_only && !old->rebuilt))
            return 0;
        /* The older update leaves its place and f goes to the tail: the
         * frames queued after it keep their order, and so the client's
         * last pos never claims a frame it has not read. */
        for (uint32_t j = i; j + 1 < c->q_len; j++)
            c->q[(c->q_head + j) % c->q_cap] = c->q[(c->q_head + j + 1) % c->q_cap];
        c->q_len--;
        c->q_bytes -= old->len;
        PB_COUNT_ADD(cs->queue_bytes, -old->len);
        pb_frame_unref(old);
        PB_COUNT(cs->m->coalesced);
        return 1;
    }
    return 0;
}

/* ws.slow_client coalesce, when f could not replace anything: drops every
 * queued update that a later queued one of the same task supersedes (final
 * updates and task-less events stay). Cost O(queue), only for a slow
 * client; the key set is bounded by ws.queue_max_messages. */
static void coalesce_queue(struct pb_conns *cs, struct pb_conn *c)
{
    uint32_t cap = 16;
    while (cap < 2 * c->q_len)
        cap *= 2;
    uint64_t *seen = calloc(cap, sizeof(*seen));
    if (!seen)
        return; /* the bound still holds: the connection is closed instead */
    uint32_t kept = 0; /* compacted towards the tail, newest first */
    for (uint32_t i = c->q_len; i-- > 0;) {
        struct pb_frame *f = c->q[(c->q_head + i) % c->q_cap];
        int drop = 0;
        if (f->task_key) {
            uint32_t j = (uint32_t)f->task_key & (cap - 1);
            while (seen[j] && seen[j] != f->task_key)
                j = (j + 1) & (cap - 1);
            drop = seen[j] != 0 && !f->final;
            seen[j] = f->task_key;
        }
        if (drop) {
            c->q_bytes -= f->len;
            PB_COUNT_ADD(cs->queue_bytes, -f->len);
            pb_frame_unref(f);
            PB_COUNT(cs->m->coalesced);
            continue;
        }
        kept++;
        c->q[(c->q_head + c->q_len - kept) % c->q_cap] = f;
    }
    c->q_head = (c->q_head + c->q_len - kept) % c->q_cap;
    c->q_len = kept;
    free(seen);
}

/* c is slow (f, of `add` bytes, is what would be queued; NULL from the
 * sweep): ws.slow_client. Returns 0 when f may now be queued, 1 when c is
 * closing. */
static int slow_policy(struct pb_conns *cs, struct pb_conn *c, struct pb_frame *f, size_t add)
{
    int policy = cs->cfg->ws_slow_client;
    if (policy == PB_SLOW_COALESCE) {
        if (coalesce_into(cs, c, f, 0) && !is_slow(cs, c, add))
            return 0;
        coalesce_queue(cs, c);
        if (!(f ? is_slow(cs, c, add) : c->q_bytes > (size_t)cs->cfg->ws_queue_max_bytes))
            return 0;
        /* Final updates and task-less events alone: as under close. */
    }
    if (policy != PB_SLOW_DROP_OLDEST) {
        PB_COUNT(cs->m->slow_client_closes);
        pb_info("closing connection %llu of user %s: outgoing queue full (%u messages, %zu "
                "bytes)",
                (unsigned long long)c->id, c->ident.user ? c->ident.user : "-", c->q_len,
                c->q_bytes);
        pb_conns_close(cs, c, PB_CLOSE_SLOW, "slow consumer: outgoing queue full");
        return 1;
    }
    /* drop_oldest: back under the soft bound. */
    uint32_t max_msgs = (uint32_t)cs->cfg->ws_queue_max_messages;
    size_t soft = (size_t)cs->cfg->ws_queue_max_bytes;
    while (c->q_len && (c->q_len + (add ? 1 : 0) > max_msgs || c->q_bytes + add > soft)) {
        pb_conn_pop(cs, c);
        PB_COUNT(cs->m->queue_drops);
    }
    return 0;
}

/* Puts f on c's queue, applying ws.slow_client when c is slow (is_slow).
 * Returns 1 when queued. */
static int enqueue(struct pb_conns *cs, struct pb_conn *c, struct pb_frame *f)
{
    if (c->closing)
        return 0;
    /* Whatever ws.slow_client says: a rebuilt snapshot frame stands for
     * the task's state, so a newer one makes a queued one pointless. A
     * client that logged in during the rebuild gets each task's latest
     * state, not every update of ten minutes read at the broker's speed. */
    if (f->rebuilt && c->q_len)
        coalesce_into(cs, c, f, 1);
    /* An empty queue always takes one frame, so a reading client never
     * loses an event bigger than the byte bounds (kafka.max_event_bytes caps it). */
    if (c->q_len && is_slow(cs, c, f->len) && slow_policy(cs, c, f, f->len))
        return 0;
    if (c->q_len == c->q_cap && queue_grow(c, (uint32_t)cs->cfg->ws_queue_max_messages))
        return 0;
    push_frame(cs, c, f);
    return 1;
}

void pb_conns_police(struct pb_conns *cs, struct pb_conn *c)
{
    /* Only the grace period can have run out since the last enqueue. */
    if (!c->closing && c->q_len && c->q_bytes > (size_t)cs->cfg->ws_queue_max_bytes &&
        pb_monotonic_ms() - c->last_progress_ms >= cs->cfg->ws_slow_client_grace_ms)
        slow_policy(cs, c, NULL, 0);
}

int pb_conns_send(struct pb_conns *cs, struct pb_conn *c, struct pb_frame *f)
{
    return enqueue(cs, c, f);
}

int pb_conns_send_unbounded(struct pb_conns *cs, struct pb_conn *c, struct pb_frame *f)
{
    if (c->closing ||
        (c->q_len == c->q_cap && queue_grow(c, (uint32_t)cs->cfg->ws_queue_max_messages)))
        return 0;
    push_frame(cs, c, f);
    return 1;
}

void pb_conns_cut(struct pb_conns *cs, struct pb_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    queue_clear(cs, c);
    closing(cs, c);
    if (c->hooks->cut)
        c->hooks->cut(c);
}

struct pb_conn *pb_conns_first(const struct pb_conns *cs)
{
    return cs->conns;
}

const struct pb_config *pb_conns_config(const struct pb_conns *cs)
{
    return cs->cfg;
}

struct pb_metrics *pb_conns_metrics(const struct pb_conns *cs)
{
    return cs->m;
}

size_t pb_conns_count(const struct pb_conns *cs)
{
    return PB_READ(cs->nconns);
}

size_t pb_conns_queue_bytes(const struct pb_conns *cs)
{
    return PB_READ(cs->queue_bytes);
}
