/* The directory of logged-in connections and the fan-out decision (hub.h).
 * Users live in a chained hash table keyed by a seeded FNV-1a hash (the seed
 * makes bucket collisions hard to aim at from outside); each user holds a
 * list of its members. An event is framed at most once per format and pos
 * signature, and the (connection, frame) pairs for each worker are staged in
 * one message across events until pb_hub_flush() posts it. */
#include "pushbridge/hub/hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/core/log.h"
#include "pushbridge/hub/held.h"

struct pb_user {
    struct pb_user *hnext;
    struct pb_member *members;
    size_t nmembers;
    uint64_t hash;
    size_t idlen;
    char id[];
};

/* Owned by the server; lives as long as the process. */
struct pb_hub {
    const struct pb_config *cfg;
    struct pb_metrics *m;
    struct pb_store *store; /* borrowed; NULL: no state, history or pos */
    struct pb_hub_out out;

    /* Bound: at most ws.max_connections users (a user exists only while it
     * has a logged-in connection); the bucket array doubles with them. */
    struct pb_user **buckets;
    size_t nbuckets;
    size_t nusers;

    struct pb_member *members; /* every linked member */
    size_t nmembers;
    uint64_t seed;

    /* Told of every change of a user's connection count (presence.c). */
    pb_hub_watch_fn watch;
    void *watch_arg;

    /* Resuming logins wait here while the rebuild at start runs (held.h),
     * each at most hold_ms: half of ws.auth_timeout_ms, so that with the
     * one-second tick that answers them they are answered before the
     * worker's auth timer closes them (0: too short to hold at all). */
    int holding;
    int64_t hold_ms;
    struct pb_held_list held;

    /* Frames for each worker gathered since the last pb_hub_flush(), in
     * event order: one message, one hand-off and at most one wake-up per
     * worker per main-loop iteration instead of one per event. Bound:
     * STAGED_MAX frames per worker, past which they are posted at once. */
    struct pb_to_worker *staged[PB_MAX_WORKERS];

    /* Frames staged for each worker since pb_hub_turn_begin(), and the most
     * for any one: what the Kafka drain weighs against the room left in the
     * fullest worker's inbox (server.c, WORKER_BACKLOG_MAX). */
    size_t turn_frames[PB_MAX_WORKERS];
    size_t turn_most;
};

/* 4,096 (connection, frame) pairs: 64 KiB of message per worker. Enough for
 * a whole Kafka batch of unicast events; a broadcast to more connections is
 * posted in slices of this, in order. */
#define STAGED_MAX 4096

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
                          struct pb_store *store, const struct pb_hub_out *out)
{
    struct pb_hub *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->cfg = cfg;
    h->m = m;
    h->store = store;
    h->out = *out;
    h->hold_ms = cfg->ws_auth_timeout_ms > 2 * PB_HUB_TICK_MS ? cfg->ws_auth_timeout_ms / 2 : 0;
    h->nbuckets = 64;
    h->buckets = calloc(h->nbuckets, sizeof(*h->buckets));
    if (!h->buckets) {
        free(h);
        return NULL;
    }
    if (getrandom(&h->seed, sizeof(h->seed), GRND_NONBLOCK) != sizeof(h->seed))
        h->seed = (uint64_t)(uintptr_t)h ^ (uint64_t)pb_monotonic_ms();
    return h;
}

static void member_free(struct pb_member *mb)
{
    pb_identity_clear(&mb->ident);
    free(mb);
}

static void unlink_member(struct pb_hub *h, struct pb_member *mb);

void pb_hub_free(struct pb_hub *h)
{
    if (!h)
        return;
    while (h->members) {
        struct pb_member *mb = h->members;
        unlink_member(h, mb);
        member_free(mb);
    }
    for (struct pb_held *e; (e = pb_held_take(&h->held, 0, 1));) {
        member_free(e->mb);
        pb_held_free(e);
    }
    for (int w = 0; w < h->out.nworkers; w++)
        pb_to_worker_free(h->staged[w]);
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

/* ---- messages to the workers -------------------------------------------- */

static void post_staged(struct pb_hub *h, int worker)
{
    struct pb_to_worker *msg = h->staged[worker];
    if (!msg)
        return;
    h->staged[worker] = NULL;
    h->out.post(h->out.ud, worker, msg);
}

void pb_hub_flush(struct pb_hub *h)
{
    for (int w = 0; w < h->out.nworkers; w++)
        post_staged(h, w);
}

void pb_hub_turn_begin(struct pb_hub *h)
{
    memset(h->turn_frames, 0, (size_t)h->out.nworkers * sizeof(h->turn_frames[0]));
    h->turn_most = 0;
}

size_t pb_hub_turn_most(const struct pb_hub *h)
{
    return h->turn_most;
}

/* Every other message to a worker follows the frames staged before it: a
 * connection's frames before its release, a welcome after the frames of
 * the events before it. */
static void post(struct pb_hub *h, int worker, struct pb_to_worker *msg)
{
    post_staged(h, worker);
    h->out.post(h->out.ud, worker, msg);
}

/* ---- delivery --------------------------------------------------------- */

static int wants_event(const struct pb_member *c, const char *name)
{
    if (!c->ident.nevents)
        return 1;
    for (size_t i = 0; i < c->ident.nevents; i++)
        if (strcmp(c->ident.events[i], name) == 0)
            return 1;
    return 0;
}

static int in_group(const struct pb_member *c, const char *g, size_t len)
{
    for (size_t i = 0; i < c->ident.ngroups; i++)
        if (strlen(c->ident.groups[i]) == len && memcmp(c->ident.groups[i], g, len) == 0)
            return 1;
    return 0;
}

static int admits(const struct pb_member *c, const struct pb_event *ev)
{
    if (ev->target_kind == PB_TARGET_GROUP && !in_group(c, ev->target, ev->target_len))
        return 0;
    return wants_event(c, pb_event_name(ev));
}

/* The frames an event may need, each built on first use: the data alone
 * for seed-form clients, and for native ones a frame per pos (users with the
 * same pos signature share one: those whose events come from the same
 * partitions). A small open-addressed table by signature; when it is full
 * (more distinct signatures than NATIVE_FRAMES: users spread over that many
 * partitions), a user gets a frame of its own. */
#define NATIVE_FRAMES 64
_Static_assert(NATIVE_FRAMES <= 64, "frames.used has one bit per slot");

struct frames {
    const struct pb_event *ev;
    uint32_t source;
    long handed; /* frames staged for the workers by this event */
    struct pb_frame *plain;
    /* Slots in use, one bit each: the table itself is not cleared per
     * event (1 KiB, most of it never touched by a unicast event). */
    uint64_t used;
    struct {
        uint64_t sig;
        struct pb_frame *f;
    } native[NATIVE_FRAMES];
    int nnative;
    int oom;
};

static struct pb_frame *native_frame(struct pb_hub *h, const struct pb_member *c,
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
static struct pb_frame *frame_for(struct pb_hub *h, const struct pb_member *c, struct frames *fr,
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
    for (int probes = 0; probes < NATIVE_FRAMES && (fr->used >> slot & 1); probes++) {
        if (fr->native[slot].sig == sig)
            return fr->native[slot].f;
        slot = (slot + 1) & (NATIVE_FRAMES - 1);
    }
    struct pb_frame *f = native_frame(h, c, fr->ev, 0, NULL);
    if (!f)
        return NULL;
    f->source = fr->source;
    if (fr->nnative < NATIVE_FRAMES * 3 / 4 && !(fr->used >> slot & 1)) {
        fr->native[slot].sig = sig;
        fr->native[slot].f = f;
        fr->used |= UINT64_C(1) << slot;
        fr->nnative++;
    } else {
        *owned = 1;
    }
    return f;
}

/* Stages f for c's worker; -1 when out of memory. */
static int stage(struct pb_hub *h, const struct pb_member *c, struct pb_frame *f)
{
    if (pb_to_worker_add(&h->staged[c->worker], PB_TW_FRAMES, c->conn, f))
        return -1;
    if (++h->turn_frames[c->worker] > h->turn_most)
        h->turn_most = h->turn_frames[c->worker];
    /* Posting here, inside the walk of the members, runs worker 0's handler
     * now: a slow client it closes calls back into the hub (CLOSING only
     * marks the member). That is safe only because every transport's kill
     * and cut hooks close later, never in the call; one that freed its
     * connection at once would free a member this walk still holds. */
    if (h->staged[c->worker]->n >= STAGED_MAX)
        post_staged(h, c->worker);
    return 0;
}

static void deliver_one(struct pb_hub *h, const struct pb_member *c, struct frames *fr,
                        const char *name)
{
    if (c->closing || !wants_event(c, name))
        return;
    int owned;
    struct pb_frame *f = frame_for(h, c, fr, &owned);
    if (!f) {
        fr->oom = 1;
        return;
    }
    if (stage(h, c, f))
        fr->oom = 1;
    else
        fr->handed++;
    if (owned)
        pb_frame_unref(f);
}

long pb_hub_deliver(struct pb_hub *h, struct pb_event *ev, uint32_t source)
{
    if (h->store && pb_store_record(h->store, ev) == PB_RECORD_OUTDATED) {
        pb_metrics_drop(h->m, source, PB_DROP_OUTDATED);
        return 0;
    }
    struct frames fr;
    fr.ev = ev;
    fr.source = source;
    fr.handed = 0;
    fr.plain = NULL;
    fr.used = 0;
    fr.nnative = 0;
    fr.oom = 0;
    const char *name = pb_event_name(ev);

    if (ev->target_kind == PB_TARGET_USER) {
        uint64_t hash = hash_id(h, ev->target, ev->target_len);
        struct pb_user *u = user_find(h, ev->target, ev->target_len, hash);
        for (struct pb_member *c = u ? u->members : NULL; c; c = c->user_next)
            deliver_one(h, c, &fr, name);
    } else if (ev->target_kind == PB_TARGET_ALL || ev->target_kind == PB_TARGET_GROUP) {
        for (struct pb_member *c = h->members; c; c = c->next) {
            if (ev->target_kind == PB_TARGET_GROUP && !in_group(c, ev->target, ev->target_len))
                continue;
            deliver_one(h, c, &fr, name);
        }
    }
    /* The frames wait in h->staged until the loop is about to sleep
     * (pb_hub_flush): a worker's inbox wakes it only when it was empty, so
     * a batch of events costs it one wake-up. The count is the frames
     * handed over, on every worker alike (SPEC 11: a user's connections
     * count the same whichever worker holds them): a threaded worker queues
     * them later on its own thread, and waiting for it would block the
     * loop. A connection its frame overflows (closed as a slow client) is
     * counted, as it would be on any other worker. */
    long n = fr.handed;
    /* The messages hold their own references now. */
    pb_frame_unref(fr.plain);
    for (uint64_t used = fr.used; used; used &= used - 1)
        pb_frame_unref(fr.native[__builtin_ctzll(used)].f);
    if (fr.oom)
        pb_error("out of memory framing an event for %s; some connections missed it",
                 ev->target_kind == PB_TARGET_USER ? "a user" : "a broadcast");
    if (source < PB_METRICS_MAX_SOURCES)
        h->m->src[source].delivered += (uint64_t)n;
    return n;
}

/* The rebuild at start keeps what it reads and delivers none of it: those
 * offsets were produced before this process started, and the live consumer
 * then skips them as read (pb_store_seen). A connection already in the
 * directory logged in during the rebuild, with a snapshot that lacks them,
 * so an update that changes its task's kept state goes to the user's
 * connections as a snapshot frame, marked rebuilt: a queue then holds only
 * each task's latest (conns.c), and the client's view ends as a later
 * login's snapshot would show it, a task ended by an expired final update
 * shown ended. Updates that change nothing, and events without a task (in
 * no snapshot), go to nobody. */
void pb_hub_keep(struct pb_hub *h, struct pb_event *ev)
{
    if (!h->store || pb_store_record(h->store, ev) != PB_RECORD_TASK)
        return;
    struct pb_user *u = user_find(h, ev->target, ev->target_len,
                                  hash_id(h, ev->target, ev->target_len));
    /* One frame per form: a snapshot frame has no pos. */
    struct pb_frame *native = NULL, *plain = NULL;
    int oom = 0;
    for (struct pb_member *c = u ? u->members : NULL; c; c = c->user_next) {
        if (c->closing || !admits(c, ev))
            continue;
        int is_native = c->ident.form == PB_FORM_NATIVE;
        struct pb_frame **f = is_native ? &native : &plain;
        if (!*f) {
            *f = is_native ? native_frame(h, c, ev, 1, NULL) : pb_frame_event_plain(ev);
            if (!*f) {
                oom = 1;
                break;
            }
            (*f)->rebuilt = 1;
        }
        if (stage(h, c, *f))
            oom = 1;
    }
    if (oom)
        pb_error("out of memory framing a rebuilt task update; connections of a user miss it "
                 "until that task's next event");
    pb_frame_unref(native);
    pb_frame_unref(plain);
}

/* ---- login: welcome, snapshot, resume ------------------------------------- */

/* Frames gathered for a connection before its welcome is queued (whether it
 * resumed is known only once the history has been walked). Bound: the
 * user's history.max_events plus the broadcast history's, or its tasks. */
struct start_batch {
    struct pb_hub *h;
    struct pb_member *c;
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

static int admit_recent(const struct pb_event *ev, void *ud)
{
    return admits(((struct start_batch *)ud)->c, ev);
}

static void add_recent(const struct pb_event *ev, void *ud)
{
    struct start_batch *b = ud;
    batch_add(b, pb_frame_event_native(ev, PB_FRAME_RECENT, NULL));
}

/* {"type":"welcome","user":U,"conn_id":"N","pos":P[,"resumed":R]} */
static struct pb_frame *welcome_frame(struct pb_hub *h, const struct pb_member *c, int resumed)
{
    struct pb_buf b;
    pb_buf_init(&b, 4096 + PB_POS_MAX_LEN); /* a user ID is 1536 bytes at most once escaped */
    pb_buf_puts(&b, "{\"type\":\"welcome\",\"user\":");
    pb_buf_json_string(&b, c->user->id, c->user->idlen);
    pb_buf_printf(&b, ",\"conn_id\":\"%llu\"", (unsigned long long)c->conn_id);
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

/* The welcome (native clients), then, when resume names a pos the history
 * covers, every event missed since, else the task snapshot: one START
 * message, ahead of any event this hub hands over later. */
static void start(struct pb_hub *h, struct pb_member *c, const char *resume, size_t resume_len)
{
    struct start_batch b = {.h = h, .c = c};
    int native = c->ident.form == PB_FORM_NATIVE;
    int resumed = -1;
    if (resume && native) {
        /* While the rebuild at start runs (h->holding), the history may reach
         * past the pos and still lack events the rebuild reads later: those
         * are then seen by the live consumer as read already and handed to
         * nobody. A replay from it would have a hole the client cannot see,
         * so a resume answered before the rebuild ends (its wait over, or no
         * wait at all) is "resumed": false, and the client takes the
         * snapshot. */
        resumed = h->store && !h->holding &&
                  pb_store_resume(h->store, c->user->id, c->user->idlen, resume, resume_len,
                                  add_missed, &b);
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
    /* Recent notifications after the snapshot (SPEC 9), as many as the queue
     * takes beside it; a resumed client has them already. */
    long room = (long)h->cfg->ws_queue_max_messages - 1 - (long)b.n;
    if (resumed != 1 && native && h->store && c->ident.recent > 0 && room > 0)
        pb_store_recent(h->store, c->user->id, c->user->idlen,
                        c->ident.recent < room ? c->ident.recent : (int)room, admit_recent,
                        add_recent, &b);
    struct pb_to_worker *msg = pb_to_worker_new(PB_TW_START, b.n + 1);
    if (msg) {
        msg->conn = c->conn;
        struct pb_frame *w = native ? welcome_frame(h, c, resumed) : NULL;
        if (w) {
            pb_to_worker_add(&msg, PB_TW_START, c->conn, w); /* room was made: cannot fail */
            pb_frame_unref(w);
        }
        for (size_t i = 0; i < b.n; i++)
            pb_to_worker_add(&msg, PB_TW_START, c->conn, b.f[i]);
    } else {
        /* Out of memory: the connection starts with nothing queued. */
        msg = pb_to_worker_new(PB_TW_START, 0);
    }
    batch_clear(&b);
    free(b.f);
    if (msg) {
        msg->conn = c->conn;
        post(h, c->worker, msg);
    }
}

/* ---- what the workers say --------------------------------------------- */

static void refuse_login(struct pb_hub *h, struct pb_member *mb)
{
    struct pb_to_worker *msg = pb_to_worker_new(PB_TW_REFUSED, 0);
    if (!msg) {
        pb_error("out of memory refusing a login; the connection waits for its auth timeout");
        return;
    }
    msg->conn = mb->conn;
    post(h, mb->worker, msg);
}

/* Puts mb in the directory under its user; -1 when the user is at
 * ws.max_connections_per_user (or out of memory). */
static int link_member(struct pb_hub *h, struct pb_member *mb)
{
    size_t len = strlen(mb->ident.user);
    uint64_t hash = hash_id(h, mb->ident.user, len);
    struct pb_user *u = user_find(h, mb->ident.user, len, hash);
    if (u && (int64_t)u->nmembers >= h->cfg->ws_max_connections_per_user)
        return -1;
    if (!u) {
        u = calloc(1, sizeof(*u) + len + 1);
        if (!u)
            return -1;
        memcpy(u->id, mb->ident.user, len);
        u->idlen = len;
        u->hash = hash;
        maybe_grow(h);
        u->hnext = h->buckets[hash & (h->nbuckets - 1)];
        h->buckets[hash & (h->nbuckets - 1)] = u;
        h->nusers++;
    }
    mb->user = u;
    mb->user_next = u->members;
    if (u->members)
        u->members->user_prev = mb;
    u->members = mb;
    u->nmembers++;
    if (h->watch)
        h->watch(h->watch_arg, u->id, u->idlen, u->nmembers);
    mb->next = h->members;
    if (h->members)
        h->members->prev = mb;
    h->members = mb;
    h->nmembers++;
    mb->linked = 1;
    return 0;
}

static void unlink_member(struct pb_hub *h, struct pb_member *mb)
{
    if (!mb->linked)
        return;
    mb->linked = 0;
    h->nmembers--;
    if (mb->prev)
        mb->prev->next = mb->next;
    else
        h->members = mb->next;
    if (mb->next)
        mb->next->prev = mb->prev;
    struct pb_user *u = mb->user;
    mb->user = NULL;
    if (mb->user_prev)
        mb->user_prev->user_next = mb->user_next;
    else
        u->members = mb->user_next;
    if (mb->user_next)
        mb->user_next->user_prev = mb->user_prev;
    --u->nmembers;
    if (h->watch)
        h->watch(h->watch_arg, u->id, u->idlen, u->nmembers);
    if (u->nmembers > 0)
        return;
    struct pb_user **pp = &h->buckets[u->hash & (h->nbuckets - 1)];
    while (*pp != u)
        pp = &(*pp)->hnext;
    *pp = u->hnext;
    h->nusers--;
    free(u);
}

static void closed(struct pb_hub *h, struct pb_member *mb)
{
    pb_held_drop(&h->held, mb);
    unlink_member(h, mb);
    /* Every frame for mb's connection was posted before this release, and
     * the worker's inbox keeps that order: after it, nothing names it. */
    struct pb_to_worker *msg = pb_to_worker_new(PB_TW_RELEASE, 0);
    if (msg) {
        msg->conn = mb->conn;
        post(h, mb->worker, msg);
    } else {
        pb_error("out of memory releasing connection %llu; it stays allocated",
                 (unsigned long long)mb->conn_id);
    }
    member_free(mb);
}

static void login(struct pb_hub *h, struct pb_member *mb, const char *resume)
{
    if (link_member(h, mb))
        refuse_login(h, mb); /* mb stays out of the directory until its close */
    else
        start(h, mb, resume, resume ? strlen(resume) : 0);
}

/* Answers the held logins that are due (all of them with all). */
static size_t release_held(struct pb_hub *h, int all)
{
    size_t n = 0;
    int64_t now = pb_monotonic_ms();
    for (struct pb_held *e; (e = pb_held_take(&h->held, now, all)); n++) {
        login(h, e->mb, e->resume);
        pb_held_free(e);
    }
    return n;
}

void pb_hub_hold_resumes(struct pb_hub *h, int on)
{
    h->holding = on;
    if (on)
        return;
    size_t n = release_held(h, 1);
    if (n)
        pb_info("%zu resuming login(s) held during the rebuild answered", n);
}

void pb_hub_tick(struct pb_hub *h)
{
    size_t n = release_held(h, 0);
    if (n)
        pb_info("%zu resuming login(s) held during the rebuild answered at the end of their "
                "wait (%lld ms)", n, (long long)h->hold_ms);
}

void pb_hub_receive(struct pb_hub *h, struct pb_to_hub *msg)
{
    struct pb_member *mb = msg->member;
    switch (msg->type) {
    case PB_TH_LOGIN:
        /* Held out of the directory: no event is handed to it before its
         * start, which then replays them from the history. */
        if (h->holding && h->hold_ms > 0 && msg->resume &&
            !pb_held_add(&h->held, mb, msg->resume, pb_monotonic_ms() + h->hold_ms))
            msg->resume = NULL; /* the list owns it now */
        else
            login(h, mb, msg->resume);
        break;
    case PB_TH_CLOSED:
        closed(h, mb);
        break;
    case PB_TH_CLOSING:
        mb->closing = 1;
        break;
    case PB_TH_GROUPS: {
        char **old = mb->ident.groups;
        size_t nold = mb->ident.ngroups;
        mb->ident.groups = msg->groups;
        mb->ident.ngroups = msg->ngroups;
        msg->groups = old;
        msg->ngroups = nold;
        break;
    }
    }
    free(msg->resume);
    for (size_t i = 0; i < msg->ngroups; i++)
        free(msg->groups[i]);
    free(msg->groups);
    free(msg);
}

struct pb_store *pb_hub_store(const struct pb_hub *h)
{
    return h->store;
}

size_t pb_hub_user_connections(const struct pb_hub *h, const char *user, size_t len)
{
    const struct pb_user *u = user_find(h, user, len, hash_id(h, user, len));
    return u ? u->nmembers : 0;
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
            fn(arg, u->id, u->idlen, u->nmembers);
}

size_t pb_hub_connections(const struct pb_hub *h)
{
    return h->nmembers;
}

size_t pb_hub_users(const struct pb_hub *h)
{
    return h->nusers;
}
