/* Connection registry and fan-out. Users live in a chained hash table keyed
 * by a seeded FNV-1a hash (the seed makes bucket collisions hard to aim at
 * from outside); each user holds a list of its connections. An event is
 * framed at most once per format and the same frame is queued everywhere. */
#include "pushbridge/hub/hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/core/log.h"

struct pb_user {
    struct pb_user *hnext;
    struct pb_conn *conns;
    size_t nconns;
    uint64_t hash;
    size_t idlen;
    char id[];
};

struct pb_hub {
    const struct pb_config *cfg;
    struct pb_metrics *m;
    struct pb_store *store; /* borrowed; NULL: no state, history or pos */
    struct pb_hub_hooks hooks;

    /* Bound: at most ws.max_connections users (a user exists only while it
     * has a connection); the bucket array doubles with them. */
    struct pb_user **buckets;
    size_t nbuckets;
    size_t nusers;

    struct pb_conn *conns; /* every connection, authed or not */
    size_t nconns;
    size_t queue_bytes; /* sum of q_bytes: the pushbridge_queue_bytes gauge */
    uint64_t next_id;
    uint64_t seed;

    /* Told of every change of a user's connection count (presence.c). */
    pb_hub_watch_fn watch;
    void *watch_arg;
};

static uint64_t hash_id(const struct pb_hub *h, const char *s, size_t n)
{
    uint64_t x = 1469598103934665603ULL ^ h->seed;
    for (size_t i = 0; i < n; i++) {
        x ^= (unsigned char)s[i];
        x *= 1099511628211ULL;
    }
    return x ^ (x >> 29);
}

struct pb_hub *pb_hub_new(const struct pb_config *cfg, struct pb_metrics *m,
                          struct pb_store *store, const struct pb_hub_hooks *hooks)
{
    struct pb_hub *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->cfg = cfg;
    h->m = m;
    h->store = store;
    h->hooks = *hooks;
    h->nbuckets = 64;
    h->buckets = calloc(h->nbuckets, sizeof(*h->buckets));
    if (!h->buckets) {
        free(h);
        return NULL;
    }
    if (getrandom(&h->seed, sizeof(h->seed), GRND_NONBLOCK) != sizeof(h->seed))
        h->seed = (uint64_t)(uintptr_t)h ^ (uint64_t)pb_monotonic_ms();
    h->next_id = 1;
    return h;
}

static void queue_clear(struct pb_hub *h, struct pb_conn *c)
{
    while (c->q_len)
        pb_conn_pop(h, c);
    free(c->q);
    c->q = NULL;
    c->q_cap = 0;
    c->q_head = 0;
}

void pb_hub_free(struct pb_hub *h)
{
    if (!h)
        return;
    while (h->conns)
        pb_hub_conn_free(h, h->conns);
    free(h->buckets);
    free(h);
}

static struct pb_user *user_find(const struct pb_hub *h, const char *id, size_t len,
                                 uint64_t hash)
{
    for (struct pb_user *u = h->buckets[hash & (h->nbuckets - 1)]; u; u = u->hnext)
        if (u->hash == hash && u->idlen == len && memcmp(u->id, id, len) == 0)
            return u;
    return NULL;
}

/* Doubles the bucket array when users outnumber buckets; a failed grow only
 * makes chains longer, so it is not an error. */
static void maybe_grow(struct pb_hub *h)
{
    if (h->nusers < h->nbuckets)
        return;
    size_t n = h->nbuckets * 2;
    struct pb_user **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < h->nbuckets; i++) {
        struct pb_user *u = h->buckets[i];
        while (u) {
            struct pb_user *next = u->hnext;
            u->hnext = b[u->hash & (n - 1)];
            b[u->hash & (n - 1)] = u;
            u = next;
        }
    }
    free(h->buckets);
    h->buckets = b;
    h->nbuckets = n;
}

struct pb_conn *pb_hub_conn_new(struct pb_hub *h, void *transport)
{
    if ((int64_t)h->nconns >= h->cfg->ws_max_connections) {
        h->m->connections_refused++;
        return NULL;
    }
    struct pb_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->transport = transport;
    c->hooks = &h->hooks;
    c->id = h->next_id++;
    c->last_rx_ms = c->last_ping_ms = pb_monotonic_ms();
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    return c;
}

int pb_hub_login(struct pb_hub *h, struct pb_conn *c, struct pb_identity *id)
{
    size_t len = strlen(id->user);
    uint64_t hash = hash_id(h, id->user, len);
    struct pb_user *u = user_find(h, id->user, len, hash);
    if (u && (int64_t)u->nconns >= h->cfg->ws_max_connections_per_user) {
        pb_identity_clear(id);
        return -1;
    }
    if (!u) {
        u = calloc(1, sizeof(*u) + len + 1);
        if (!u) {
            pb_identity_clear(id);
            return -1;
        }
        memcpy(u->id, id->user, len);
        u->idlen = len;
        u->hash = hash;
        maybe_grow(h);
        u->hnext = h->buckets[hash & (h->nbuckets - 1)];
        h->buckets[hash & (h->nbuckets - 1)] = u;
        h->nusers++;
    }
    c->ident = *id;
    memset(id, 0, sizeof(*id));
    c->authed = 1;
    c->user = u;
    c->user_next = u->conns;
    if (u->conns)
        u->conns->user_prev = c;
    u->conns = c;
    u->nconns++;
    if (h->watch)
        h->watch(h->watch_arg, u->id, u->idlen, u->nconns);
    return 0;
}

static void user_remove_conn(struct pb_hub *h, struct pb_conn *c)
{
    struct pb_user *u = c->user;
    if (!u)
        return;
    if (c->user_prev)
        c->user_prev->user_next = c->user_next;
    else
        u->conns = c->user_next;
    if (c->user_next)
        c->user_next->user_prev = c->user_prev;
    c->user = NULL;
    --u->nconns;
    if (h->watch)
        h->watch(h->watch_arg, u->id, u->idlen, u->nconns);
    if (u->nconns > 0)
        return;
    struct pb_user **pp = &h->buckets[u->hash & (h->nbuckets - 1)];
    while (*pp != u)
        pp = &(*pp)->hnext;
    *pp = u->hnext;
    h->nusers--;
    free(u);
}

void pb_hub_conn_free(struct pb_hub *h, struct pb_conn *c)
{
    if (!c)
        return;
    user_remove_conn(h, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->nconns--;
    queue_clear(h, c);
    pb_identity_clear(&c->ident);
    free(c);
}

struct pb_frame *pb_conn_peek(const struct pb_conn *c)
{
    return c->q_len ? c->q[c->q_head] : NULL;
}

void pb_conn_sent(struct pb_hub *h, struct pb_conn *c)
{
    c->last_progress_ms = pb_monotonic_ms();
    pb_conn_pop(h, c);
}

struct pb_frame *pb_conn_at(const struct pb_conn *c, uint32_t i)
{
    return i < c->q_len ? c->q[(c->q_head + i) % c->q_cap] : NULL;
}

void pb_conn_pop(struct pb_hub *h, struct pb_conn *c)
{
    if (!c->q_len)
        return;
    struct pb_frame *f = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    c->q_bytes -= f->len;
    h->queue_bytes -= f->len;
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

void pb_hub_close(struct pb_hub *h, struct pb_conn *c, int code, const char *reason)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_code = code;
    snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason);
    queue_clear(h, c);
    if (c->hooks->kill)
        c->hooks->kill(c);
}

void pb_hub_close_all(struct pb_hub *h, int code, const char *reason)
{
    for (struct pb_conn *c = h->conns; c; c = c->next)
        pb_hub_close(h, c, code, reason);
}

/* Appends f to c's ring (room is there) and asks for a write on the
 * empty -> non-empty edge. */
static void push_frame(struct pb_hub *h, struct pb_conn *c, struct pb_frame *f)
{
    if (c->q_len == 0)
        c->last_progress_ms = pb_monotonic_ms(); /* the grace period starts now */
    c->q[(c->q_head + c->q_len) % c->q_cap] = f;
    pb_frame_ref(f);
    c->q_len++;
    c->q_bytes += f->len;
    h->queue_bytes += f->len;
    if (c->q_len == 1 && c->hooks->want_write)
        c->hooks->want_write(c);
}

/* Would adding `add` bytes make c a slow consumer? Bounds (redis's output
 * buffer limits): ws.queue_max_messages and ws.queue_hard_max_bytes at once;
 * ws.queue_max_bytes only when nothing has left the queue for
 * ws.slow_client_grace_ms, so a client that reads a burst larger than the
 * soft bound is not taken for one that stopped reading. */
static int is_slow(struct pb_hub *h, const struct pb_conn *c, size_t add)
{
    const struct pb_config *cfg = h->cfg;
    size_t hard = cfg->ws_queue_hard_max_bytes ? (size_t)cfg->ws_queue_hard_max_bytes
                                               : 4 * (size_t)cfg->ws_queue_max_bytes;
    if (c->q_len + 1 > (uint32_t)cfg->ws_queue_max_messages || c->q_bytes + add > hard)
        return 1;
    if (c->q_bytes + add <= (size_t)cfg->ws_queue_max_bytes)
        return 0;
    return pb_monotonic_ms() - c->last_progress_ms >= cfg->ws_slow_client_grace_ms;
}

/* ws.slow_client coalesce: the newest queued update of f's task gives way
 * (unless it is final), so that f can be queued. Returns 1 when it did. */
static int coalesce_into(struct pb_hub *h, struct pb_conn *c, struct pb_frame *f)
{
    if (!f || !f->task_key)
        return 0;
    for (uint32_t i = c->q_len; i-- > 0;) {
        struct pb_frame *old = c->q[(c->q_head + i) % c->q_cap];
        if (old->task_key != f->task_key)
            continue;
        if (old->final)
            return 0; /* an update past it would overtake the final one */
        /* The older update leaves its place and f goes to the tail: the
         * frames queued after it keep their order, and so the client's
         * last pos never claims a frame it has not read. */
        for (uint32_t j = i; j + 1 < c->q_len; j++)
            c->q[(c->q_head + j) % c->q_cap] = c->q[(c->q_head + j + 1) % c->q_cap];
        c->q_len--;
        c->q_bytes -= old->len;
        h->queue_bytes -= old->len;
        pb_frame_unref(old);
        h->m->coalesced++;
        return 1;
    }
    return 0;
}

/* ws.slow_client coalesce, when f could not replace anything: drops every
 * queued update that a later queued one of the same task supersedes (final
 * updates and task-less events stay). Cost O(queue), only for a slow
 * client; the key set is bounded by ws.queue_max_messages. */
static void coalesce_queue(struct pb_hub *h, struct pb_conn *c)
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
            h->queue_bytes -= f->len;
            pb_frame_unref(f);
            h->m->coalesced++;
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
static int slow_policy(struct pb_hub *h, struct pb_conn *c, struct pb_frame *f, size_t add)
{
    int policy = h->cfg->ws_slow_client;
    if (policy == PB_SLOW_COALESCE) {
        if (coalesce_into(h, c, f) && !is_slow(h, c, add))
            return 0;
        coalesce_queue(h, c);
        if (!(f ? is_slow(h, c, add) : c->q_bytes > (size_t)h->cfg->ws_queue_max_bytes))
            return 0;
        /* Final updates and task-less events alone: as under close. */
    }
    if (policy != PB_SLOW_DROP_OLDEST) {
        h->m->slow_client_closes++;
        pb_info("closing connection %llu of user %s: outgoing queue full (%u messages, %zu "
                "bytes)",
                (unsigned long long)c->id, c->ident.user ? c->ident.user : "-", c->q_len,
                c->q_bytes);
        pb_hub_close(h, c, PB_CLOSE_SLOW, "slow consumer: outgoing queue full");
        return 1;
    }
    /* drop_oldest: back under the soft bound. */
    uint32_t max_msgs = (uint32_t)h->cfg->ws_queue_max_messages;
    size_t soft = (size_t)h->cfg->ws_queue_max_bytes;
    while (c->q_len && (c->q_len + (add ? 1 : 0) > max_msgs || c->q_bytes + add > soft)) {
        pb_conn_pop(h, c);
        h->m->queue_drops++;
    }
    return 0;
}

/* Puts f on c's queue, applying ws.slow_client when c is slow (is_slow).
 * Returns 1 when queued. */
static int enqueue(struct pb_hub *h, struct pb_conn *c, struct pb_frame *f)
{
    if (c->closing)
        return 0;
    /* An empty queue always takes one frame, so a reading client never
     * loses an event bigger than the byte bounds (kafka.max_event_bytes caps it). */
    if (c->q_len && is_slow(h, c, f->len) && slow_policy(h, c, f, f->len))
        return 0;
    if (c->q_len == c->q_cap && queue_grow(c, (uint32_t)h->cfg->ws_queue_max_messages))
        return 0;
    push_frame(h, c, f);
    return 1;
}

void pb_hub_police(struct pb_hub *h, struct pb_conn *c)
{
    /* Only the grace period can have run out since the last enqueue. */
    if (!c->closing && c->q_len && c->q_bytes > (size_t)h->cfg->ws_queue_max_bytes &&
        pb_monotonic_ms() - c->last_progress_ms >= h->cfg->ws_slow_client_grace_ms)
        slow_policy(h, c, NULL, 0);
}

int pb_hub_send(struct pb_hub *h, struct pb_conn *c, struct pb_frame *f)
{
    return enqueue(h, c, f);
}

int pb_hub_send_unbounded(struct pb_hub *h, struct pb_conn *c, struct pb_frame *f)
{
    if (c->closing ||
        (c->q_len == c->q_cap && queue_grow(c, (uint32_t)h->cfg->ws_queue_max_messages)))
        return 0;
    push_frame(h, c, f);
    return 1;
}

void pb_hub_cut(struct pb_hub *h, struct pb_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    queue_clear(h, c);
    if (c->hooks->cut)
        c->hooks->cut(c);
}

struct pb_conn *pb_hub_first(const struct pb_hub *h)
{
    return h->conns;
}

const struct pb_config *pb_hub_config(const struct pb_hub *h)
{
    return h->cfg;
}

struct pb_store *pb_hub_store(const struct pb_hub *h)
{
    return h->store;
}

static int wants_event(const struct pb_conn *c, const char *name)
{
    if (!c->ident.nevents)
        return 1;
    for (size_t i = 0; i < c->ident.nevents; i++)
        if (strcmp(c->ident.events[i], name) == 0)
            return 1;
    return 0;
}

static int in_group(const struct pb_conn *c, const char *g, size_t len)
{
    for (size_t i = 0; i < c->ident.ngroups; i++)
        if (strlen(c->ident.groups[i]) == len && memcmp(c->ident.groups[i], g, len) == 0)
            return 1;
    return 0;
}

/* The frames an event may need, each built on first use: the data alone
 * for seed-form clients, and for native ones a frame per pos (users with the
 * same pos signature share one: those whose events come from the same
 * partitions). A small open-addressed table by signature; when it is full
 * (more distinct signatures than NATIVE_FRAMES: users spread over that many
 * partitions), a user gets a frame of its own. */
#define NATIVE_FRAMES 64

struct frames {
    const struct pb_event *ev;
    uint32_t source;
    struct pb_frame *plain;
    struct {
        uint64_t sig;
        struct pb_frame *f; /* NULL: a free slot */
    } native[NATIVE_FRAMES];
    int nnative;
    int oom;
};

static struct pb_frame *native_frame(struct pb_hub *h, const struct pb_conn *c,
                                     const struct pb_event *ev, int snapshot, const char *pos)
{
    char buf[PB_POS_MAX_LEN];
    if (!pos && !snapshot && h->store) {
        pb_store_pos(h->store, c->user->id, c->user->idlen, ev->ts_ms, buf);
        pos = buf;
    }
    return pb_frame_event_native(ev, snapshot, pos);
}

/* The frame c gets for fr->ev; *owned when the caller must release it (the
 * table was full). */
static struct pb_frame *frame_for(struct pb_hub *h, const struct pb_conn *c, struct frames *fr,
                                  int *owned)
{
    *owned = 0;
    if (c->ident.form != PB_FORM_NATIVE) {
        if (!fr->plain && (fr->plain = pb_frame_event_plain(fr->ev)))
            fr->plain->source = fr->source;
        return fr->plain;
    }
    /* A user-targeted event goes to one user: one signature. */
    uint64_t sig = 0;
    if (h->store && fr->ev->target_kind != PB_TARGET_USER)
        sig = pb_store_pos_sig(h->store, c->user->id, c->user->idlen);
    uint32_t slot = (uint32_t)(sig ^ (sig >> 32)) & (NATIVE_FRAMES - 1);
    for (int probes = 0; probes < NATIVE_FRAMES && fr->native[slot].f; probes++) {
        if (fr->native[slot].sig == sig)
            return fr->native[slot].f;
        slot = (slot + 1) & (NATIVE_FRAMES - 1);
    }
    struct pb_frame *f = native_frame(h, c, fr->ev, 0, NULL);
    if (!f)
        return NULL;
    f->source = fr->source;
    if (fr->nnative < NATIVE_FRAMES * 3 / 4 && !fr->native[slot].f) {
        fr->native[slot].sig = sig;
        fr->native[slot].f = f;
        fr->nnative++;
    } else {
        *owned = 1;
    }
    return f;
}

static int deliver_one(struct pb_hub *h, struct pb_conn *c, struct frames *fr, const char *name)
{
    if (!c->authed || !wants_event(c, name))
        return 0;
    int owned;
    struct pb_frame *f = frame_for(h, c, fr, &owned);
    if (!f) {
        fr->oom = 1;
        return 0;
    }
    int n = enqueue(h, c, f);
    if (owned)
        pb_frame_unref(f);
    return n;
}

long pb_hub_deliver(struct pb_hub *h, struct pb_event *ev, uint32_t source)
{
    if (h->store && pb_store_record(h->store, ev) == PB_RECORD_OUTDATED) {
        pb_metrics_drop(h->m, source, PB_DROP_OUTDATED);
        return 0;
    }
    struct frames fr = {.ev = ev, .source = source};
    const char *name = pb_event_name(ev);
    long n = 0;

    if (ev->target_kind == PB_TARGET_USER) {
        uint64_t hash = hash_id(h, ev->target, ev->target_len);
        struct pb_user *u = user_find(h, ev->target, ev->target_len, hash);
        /* deliver_one may close (and so unlink) c; the list is only changed
         * at pb_hub_conn_free, which runs from lws later, so next is safe. */
        for (struct pb_conn *c = u ? u->conns : NULL; c; c = c->user_next)
            n += deliver_one(h, c, &fr, name);
    } else if (ev->target_kind == PB_TARGET_ALL || ev->target_kind == PB_TARGET_GROUP) {
        for (struct pb_conn *c = h->conns; c; c = c->next) {
            if (ev->target_kind == PB_TARGET_GROUP && !in_group(c, ev->target, ev->target_len))
                continue;
            n += deliver_one(h, c, &fr, name);
        }
    }
    /* The queues hold their own references now. */
    pb_frame_unref(fr.plain);
    for (int i = 0; fr.nnative && i < NATIVE_FRAMES; i++)
        pb_frame_unref(fr.native[i].f);
    if (fr.oom)
        pb_error("out of memory framing an event for %s; some connections missed it",
                 ev->target_kind == PB_TARGET_USER ? "a user" : "a broadcast");
    if (source < PB_METRICS_MAX_SOURCES)
        h->m->src[source].delivered += (uint64_t)n;
    return n;
}

void pb_hub_keep(struct pb_hub *h, struct pb_event *ev)
{
    if (h->store)
        pb_store_record(h->store, ev);
}

/* ---- login: welcome, snapshot, resume ------------------------------------- */

/* Frames gathered for a connection before its welcome is queued (whether it
 * resumed is known only once the history has been walked). Bound: the
 * user's history.max_events plus the broadcast history's, or its tasks. */
struct start_batch {
    struct pb_hub *h;
    struct pb_conn *c;
    struct pb_frame **f;
    size_t n, cap;
};

static void batch_add(struct start_batch *b, struct pb_frame *f)
{
    if (!f)
        return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        struct pb_frame **a = realloc(b->f, cap * sizeof(*a));
        if (!a) {
            pb_frame_unref(f);
            return;
        }
        b->f = a;
        b->cap = cap;
    }
    b->f[b->n++] = f;
}

static void batch_clear(struct start_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        pb_frame_unref(b->f[i]);
    b->n = 0;
}

/* The welcome and the batch within ws.queue_max_messages and the hard byte
 * bound of an empty queue. */
static int batch_fits(const struct pb_hub *h, const struct start_batch *b)
{
    const struct pb_config *cfg = h->cfg;
    size_t hard = cfg->ws_queue_hard_max_bytes ? (size_t)cfg->ws_queue_hard_max_bytes
                                               : 4 * (size_t)cfg->ws_queue_max_bytes;
    size_t bytes = 0;
    for (size_t i = 0; i < b->n; i++)
        bytes += b->f[i]->len;
    return b->n + 1 <= (size_t)cfg->ws_queue_max_messages && bytes <= hard;
}

static int admits(const struct pb_conn *c, const struct pb_event *ev)
{
    if (ev->target_kind == PB_TARGET_GROUP && !in_group(c, ev->target, ev->target_len))
        return 0;
    return wants_event(c, pb_event_name(ev));
}

static void add_missed(const struct pb_event *ev, const char *pos, void *ud)
{
    struct start_batch *b = ud;
    if (admits(b->c, ev))
        batch_add(b, native_frame(b->h, b->c, ev, 0, pos));
}

static void add_task(const struct pb_event *ev, void *ud)
{
    struct start_batch *b = ud;
    if (admits(b->c, ev))
        batch_add(b, b->c->ident.form == PB_FORM_NATIVE ? native_frame(b->h, b->c, ev, 1, NULL)
                                                        : pb_frame_event_plain(ev));
}

/* {"type":"welcome","user":U,"conn_id":"N","pos":P[,"resumed":R]} */
static struct pb_frame *welcome_frame(struct pb_hub *h, const struct pb_conn *c, int resumed)
{
    struct pb_buf b;
    pb_buf_init(&b, 4096 + PB_POS_MAX_LEN); /* a user ID is 1536 bytes at most once escaped */
    pb_buf_puts(&b, "{\"type\":\"welcome\",\"user\":");
    pb_buf_json_string(&b, c->user->id, c->user->idlen);
    pb_buf_printf(&b, ",\"conn_id\":\"%llu\"", (unsigned long long)c->id);
    if (h->store) {
        char pos[PB_POS_MAX_LEN];
        pb_store_pos(h->store, c->user->id, c->user->idlen, pb_now_ms(), pos);
        pb_buf_printf(&b, ",\"pos\":\"%s\"", pos);
    }
    if (resumed >= 0)
        pb_buf_printf(&b, ",\"resumed\":%s", resumed ? "true" : "false");
    pb_buf_puts(&b, "}");
    struct pb_frame *f = b.truncated ? NULL : pb_frame_from(b.data, b.len);
    pb_buf_free(&b);
    return f;
}

void pb_hub_start(struct pb_hub *h, struct pb_conn *c, const char *resume, size_t resume_len)
{
    struct start_batch b = {.h = h, .c = c};
    int native = c->ident.form == PB_FORM_NATIVE;
    int resumed = -1;
    if (resume && native) {
        resumed = h->store && pb_store_resume(h->store, c->user->id, c->user->idlen, resume,
                                               resume_len, add_missed, &b);
        /* A replay the queue's bounds would not take whole is no replay:
         * the client reloads from the snapshot rather than lose its middle
         * (drop_oldest) or be closed and come back for it again (close). */
        if (resumed && !batch_fits(h, &b)) {
            batch_clear(&b);
            resumed = 0;
        }
        h->m->resumes[resumed]++;
    }
    /* A resumed client has every event since its pos and needs no snapshot
     * (its progress would jump back, then forward again). */
    if (resumed != 1 && h->store)
        pb_store_each_task(h->store, c->user->id, c->user->idlen, add_task, &b);
    if (native) {
        struct pb_frame *w = welcome_frame(h, c, resumed);
        if (w) {
            pb_hub_send(h, c, w);
            pb_frame_unref(w);
        }
    }
    for (size_t i = 0; i < b.n; i++) {
        enqueue(h, c, b.f[i]);
        pb_frame_unref(b.f[i]);
    }
    free(b.f);
}

size_t pb_hub_user_connections(const struct pb_hub *h, const char *user, size_t len)
{
    const struct pb_user *u = user_find(h, user, len, hash_id(h, user, len));
    return u ? u->nconns : 0;
}

void pb_hub_set_watch(struct pb_hub *h, pb_hub_watch_fn fn, void *arg)
{
    h->watch = fn;
    h->watch_arg = arg;
}

void pb_hub_each_user(const struct pb_hub *h, pb_hub_watch_fn fn, void *arg)
{
    for (size_t i = 0; i < h->nbuckets; i++)
        for (const struct pb_user *u = h->buckets[i]; u; u = u->hnext)
            fn(arg, u->id, u->idlen, u->nconns);
}

size_t pb_hub_connections(const struct pb_hub *h)
{
    return h->nconns;
}

size_t pb_hub_users(const struct pb_hub *h)
{
    return h->nusers;
}

size_t pb_hub_queue_bytes(const struct pb_hub *h)
{
    return h->queue_bytes;
}
