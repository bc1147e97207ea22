/* Task state and history: what is kept per user, and the bounds that hold it.
 * An event is copied once into a ref-counted record shared by its task and
 * its history entry. Tasks and history entries are on global lists in the
 * order they were updated, so the one to evict under a byte bound, or at the
 * end of its time to live, is always at a list's head: O(1) per eviction.
 * Streams, positions and resume are in pos.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "pushbridge/core/log.h"
#include "store_internal.h"

/* Evictions per tick for times to live: a backlog of expiries is cleared
 * over a few seconds instead of stalling the loop once. */
#define TTL_EVICTIONS_PER_TICK 100000

static uint64_t hash_bytes(uint64_t seed, const char *s, size_t n)
{
    uint64_t x = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        x ^= (unsigned char)s[i];
        x *= 1099511628211ULL;
    }
    return x ^ (x >> 29);
}

struct pb_store *pb_store_new(const struct pb_config *cfg, struct pb_metrics *m)
{
    struct pb_store *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->cfg = cfg;
    st->m = m;
    if (getrandom(&st->seed, sizeof(st->seed), GRND_NONBLOCK) != sizeof(st->seed))
        st->seed = (uint64_t)(uintptr_t)st ^ (uint64_t)pb_monotonic_ms();
    st->nbuckets = 64;
    st->buckets = calloc(st->nbuckets, sizeof(*st->buckets));
    st->bcast = calloc(1, sizeof(*st->bcast) + 1);
    if (!st->buckets || !st->bcast || pb_streams_init(st)) {
        pb_store_free(st);
        return NULL;
    }
    return st;
}

static void sevent_unref(struct pb_sevent *e)
{
    if (e && --e->refs == 0)
        free(e);
}

void pb_store_free(struct pb_store *st)
{
    if (!st)
        return;
    for (struct pb_task *t = st->live, *n; t; t = n) {
        n = t->gnext;
        sevent_unref(t->ev);
        free(t);
    }
    for (struct pb_task *t = st->fin, *n; t; t = n) {
        n = t->gnext;
        sevent_unref(t->ev);
        free(t);
    }
    for (struct pb_hist *h = st->hist, *n; h; h = n) {
        n = h->gnext;
        sevent_unref(h->ev);
        free(h);
    }
    for (size_t i = 0; st->buckets && i < st->nbuckets; i++)
        for (struct pb_suser *u = st->buckets[i], *n; u; u = n) {
            n = u->hnext;
            free(u->streams);
            free(u);
        }
    if (st->bcast)
        free(st->bcast->streams);
    free(st->bcast);
    free(st->buckets);
    pb_streams_free(st);
    free(st);
}

/* a + b, held at INT64_MAX: a producer's timestamp is outside input. */
static int64_t add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* ---- users ---------------------------------------------------------------- */

static size_t user_bytes(const struct pb_suser *u)
{
    return sizeof(*u) + u->idlen + 1 + u->nstreams * sizeof(*u->streams);
}

struct pb_suser *pb_store_user_find(const struct pb_store *st, const char *id, size_t len)
{
    const struct pb_suser *last = st->last_user;
    if (last && last->idlen == len && memcmp(last->id, id, len) == 0)
        return st->last_user;
    uint64_t hash = hash_bytes(st->seed, id, len);
    for (struct pb_suser *u = st->buckets[hash & (st->nbuckets - 1)]; u; u = u->hnext)
        if (u->hash == hash && u->idlen == len && memcmp(u->id, id, len) == 0)
            return u;
    return NULL;
}

/* Bound: users exist only while they hold a task or a history entry, so
 * state.max_bytes and history.max_bytes bound them; the table doubles. */
static void users_grow(struct pb_store *st)
{
    if (st->nusers < st->nbuckets)
        return;
    size_t n = st->nbuckets * 2;
    struct pb_suser **b = calloc(n, sizeof(*b));
    if (!b)
        return; /* longer chains, not an error */
    for (size_t i = 0; i < st->nbuckets; i++)
        for (struct pb_suser *u = st->buckets[i], *next; u; u = next) {
            next = u->hnext;
            u->hnext = b[u->hash & (n - 1)];
            b[u->hash & (n - 1)] = u;
        }
    free(st->buckets);
    st->buckets = b;
    st->nbuckets = n;
}

static struct pb_suser *user_get(struct pb_store *st, const char *id, size_t len)
{
    struct pb_suser *u = pb_store_user_find(st, id, len);
    if (u)
        return st->last_user = u;
    u = calloc(1, sizeof(*u) + len + 1);
    if (!u)
        return NULL;
    st->last_user = u;
    memcpy(u->id, id, len);
    u->idlen = len;
    u->hash = hash_bytes(st->seed, id, len);
    users_grow(st);
    u->hnext = st->buckets[u->hash & (st->nbuckets - 1)];
    st->buckets[u->hash & (st->nbuckets - 1)] = u;
    st->nusers++;
    st->state_bytes += user_bytes(u);
    return u;
}

/* A user that holds nothing any more goes; what its history had lost goes
 * to its streams, so that a resume for it stays as cautious. */
static void user_maybe_free(struct pb_store *st, struct pb_suser *u)
{
    if (u == st->bcast || u->busy || u->ntasks || u->nhist)
        return;
    for (uint32_t i = 0; i < u->nstreams; i++) {
        struct pb_stream *s = st->streams[u->streams[i].stream];
        if (u->streams[i].floor > s->evicted_user)
            s->evicted_user = u->streams[i].floor;
        if (u->streams[i].floor_ts > s->evicted_user_ts)
            s->evicted_user_ts = u->streams[i].floor_ts;
    }
    struct pb_suser **pp = &st->buckets[u->hash & (st->nbuckets - 1)];
    while (*pp != u)
        pp = &(*pp)->hnext;
    *pp = u->hnext;
    st->nusers--;
    st->state_bytes -= user_bytes(u);
    if (st->last_user == u)
        st->last_user = NULL;
    free(u->streams);
    free(u);
}

static struct pb_ustream *user_stream(struct pb_suser *u, uint32_t stream)
{
    for (uint32_t i = 0; i < u->nstreams; i++)
        if (u->streams[i].stream == stream)
            return &u->streams[i];
    return NULL;
}

/* Notes that u has events from stream (for its pos). Bound: the streams
 * that exist. */
static void user_add_stream(struct pb_store *st, struct pb_suser *u, uint32_t stream)
{
    if (user_stream(u, stream))
        return;
    struct pb_ustream *s = realloc(u->streams, (u->nstreams + 1) * sizeof(*s));
    if (!s)
        return; /* its pos will not name this stream: a resume then falls back on time */
    u->streams = s;
    /* A record made anew may have had entries from this stream before it
     * went: what was gone then stays gone. */
    s[u->nstreams++] = (struct pb_ustream){stream, st->streams[stream]->evicted_user,
                                           st->streams[stream]->evicted_user_ts};
    if (u != st->bcast)
        st->state_bytes += sizeof(*s);
    u->sig = (u->sig ^ (stream + 0x9e3779b97f4a7c15ULL)) * 1099511628211ULL;
}

/* ---- kept events ------------------------------------------------------------ */

static char *blob_put(char **p, const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *at = *p;
    memcpy(at, s, n);
    at[n] = '\0';
    *p += n + 1;
    return at;
}

static struct pb_sevent *sevent_new(struct pb_store *st, const struct pb_event *ev, uint32_t stream)
{
    size_t name_len = ev->event ? strlen(ev->event) : 0, id_len = ev->id ? strlen(ev->id) : 0;
    size_t task_len = ev->task ? strlen(ev->task) : 0;
    size_t text_len = ev->data_is_string ? ev->data_text_len : 0;
    size_t blob = name_len + id_len + task_len + ev->target_len + ev->data_len + text_len + 6;
    struct pb_sevent *e = malloc(sizeof(*e) + blob);
    if (!e)
        return NULL;
    memset(e, 0, sizeof(*e));
    char *p = e->blob;
    e->name = blob_put(&p, ev->event, name_len);
    e->id = blob_put(&p, ev->id, id_len);
    e->task = blob_put(&p, ev->task, task_len);
    e->target = blob_put(&p, ev->target, ev->target_len);
    e->target_len = ev->target_len;
    e->data = blob_put(&p, ev->data, ev->data_len);
    e->data_len = ev->data_len;
    if (ev->data_is_string) {
        e->text = blob_put(&p, ev->data_text, text_len);
        e->text_len = text_len;
        e->data_is_string = 1;
    }
    e->refs = 1;
    e->stream = stream;
    e->offset = ev->offset;
    e->ts_ms = ev->ts_ms;
    e->seq = ++st->next_seq;
    e->task_hash = ev->task ? hash_bytes(0, ev->task, task_len) : 0;
    e->target_kind = ev->target_kind;
    e->final = ev->final;
    e->bytes = sizeof(*e) + blob;
    return e;
}

void pb_sevent_view(const struct pb_store *st, const struct pb_sevent *e, struct pb_event *ev)
{
    pb_event_init(ev);
    ev->event = e->name;
    ev->id = e->id;
    ev->task = e->task;
    ev->final = e->final;
    ev->data = e->data;
    ev->data_len = e->data_len;
    ev->data_text = e->text;
    ev->data_text_len = e->text_len;
    ev->data_is_string = e->data_is_string;
    ev->target_kind = e->target_kind;
    ev->target = e->target;
    ev->target_len = e->target_len;
    ev->ts_ms = e->ts_ms;
    const struct pb_stream *s = st->streams[e->stream];
    ev->topic = s->topic;
    ev->partition = s->partition;
    ev->offset = e->offset;
}

/* ---- tasks ------------------------------------------------------------------ */

static size_t task_bytes(const struct pb_task *t)
{
    return sizeof(*t) + t->ev->bytes;
}

static void glist_unlink(struct pb_store *st, struct pb_task *t)
{
    struct pb_task **head = t->in_final ? &st->fin : &st->live;
    struct pb_task **tail = t->in_final ? &st->fin_tail : &st->live_tail;
    if (t->gprev)
        t->gprev->gnext = t->gnext;
    else
        *head = t->gnext;
    if (t->gnext)
        t->gnext->gprev = t->gprev;
    else
        *tail = t->gprev;
    t->gprev = t->gnext = NULL;
}

static void glist_append(struct pb_store *st, struct pb_task *t)
{
    struct pb_task **head = t->in_final ? &st->fin : &st->live;
    struct pb_task **tail = t->in_final ? &st->fin_tail : &st->live_tail;
    t->gprev = *tail;
    t->gnext = NULL;
    if (*tail)
        (*tail)->gnext = t;
    else
        *head = t;
    *tail = t;
}

static void ulist_unlink(struct pb_task *t)
{
    struct pb_suser *u = t->user;
    if (t->uprev)
        t->uprev->unext = t->unext;
    else
        u->tasks = t->unext;
    if (t->unext)
        t->unext->uprev = t->uprev;
    else
        u->tasks_tail = t->uprev;
    t->uprev = t->unext = NULL;
}

static void ulist_append(struct pb_task *t)
{
    struct pb_suser *u = t->user;
    t->uprev = u->tasks_tail;
    t->unext = NULL;
    if (u->tasks_tail)
        u->tasks_tail->unext = t;
    else
        u->tasks = t;
    u->tasks_tail = t;
}

enum state_evict { STATE_EVICT_PER_USER, STATE_EVICT_BYTES, STATE_EVICT_TTL };

static void task_free(struct pb_store *st, struct pb_task *t, int reason)
{
    struct pb_suser *u = t->user;
    if (reason >= 0)
        st->m->state_evicted[reason]++;
    glist_unlink(st, t);
    ulist_unlink(t);
    st->state_bytes -= task_bytes(t);
    st->ntasks--;
    u->ntasks--;
    sevent_unref(t->ev);
    free(t);
    user_maybe_free(st, u);
}

static struct pb_task *task_find(struct pb_suser *u, const struct pb_sevent *e)
{
    for (struct pb_task *t = u->tasks; t; t = t->unext)
        if (t->ev->task_hash == e->task_hash && strcmp(t->ev->task, e->task) == 0)
            return t;
    return NULL;
}

static int task_expired(const struct pb_store *st, const struct pb_sevent *e, int64_t now)
{
    int64_t ttl = e->final ? st->cfg->state_final_ttl_ms : st->cfg->state_ttl_ms;
    return add_sat(e->ts_ms, ttl) <= now;
}

/* The task's state becomes e (PB_RECORD_TASK). PB_RECORD_OUTDATED when the
 * kept state is newer by Kafka timestamp. e already past its time to live
 * is not kept: PB_RECORD_TASK when it ends the task kept before it (a
 * client shown that state must learn it ended), else PB_RECORD_DELIVER, as
 * when there is no memory. */
static int task_update(struct pb_store *st, struct pb_suser *u, struct pb_sevent *e)
{
    struct pb_task *t = task_find(u, e);
    if (t && e->ts_ms < t->ev->ts_ms)
        return PB_RECORD_OUTDATED;
    if (task_expired(st, e, pb_now_ms())) {
        /* Already past its time to live (a rebuild reading old events, a
         * final update of a task long done): not kept, never brought back. */
        if (!t)
            return PB_RECORD_DELIVER;
        task_free(st, t, STATE_EVICT_TTL);
        return PB_RECORD_TASK;
    }
    if (t) {
        st->state_bytes -= task_bytes(t);
        sevent_unref(t->ev);
        glist_unlink(st, t);
        ulist_unlink(t);
    } else {
        if (u->ntasks >= (uint64_t)st->cfg->state_max_tasks_per_user && u->tasks)
            task_free(st, u->tasks, STATE_EVICT_PER_USER);
        if (!(t = calloc(1, sizeof(*t))))
            return PB_RECORD_DELIVER; /* kept nowhere; still delivered */
        t->user = u;
        u->ntasks++;
        st->ntasks++;
    }
    e->refs++;
    t->ev = e;
    t->in_final = e->final;
    glist_append(st, t);
    ulist_append(t);
    st->state_bytes += task_bytes(t);
    return PB_RECORD_TASK;
}

/* ---- history ------------------------------------------------------------------ */

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* An event of u (NULL: a user without a record; st->bcast: a broadcast)
 * that the history does not hold, evicted or never kept: a resume from
 * before it cannot be covered (pos.c covered, unnamed_covered). */
static void note_lost(struct pb_store *st, struct pb_suser *u, uint32_t stream, int64_t offset,
                      int64_t ts)
{
    struct pb_stream *s = st->streams[stream];
    struct pb_ustream *us = u && u != st->bcast ? user_stream(u, stream) : NULL;
    if (u == st->bcast) {
        s->evicted_bcast = max64(s->evicted_bcast, offset);
        s->evicted_bcast_ts = max64(s->evicted_bcast_ts, ts);
    } else if (us) {
        us->floor = max64(us->floor, offset);
        us->floor_ts = max64(us->floor_ts, ts);
    } else {
        s->evicted_user = max64(s->evicted_user, offset);
        s->evicted_user_ts = max64(s->evicted_user_ts, ts);
    }
}


enum hist_evict { HIST_EVICT_PER_USER, HIST_EVICT_BYTES, HIST_EVICT_TTL };

static size_t hist_bytes(const struct pb_hist *h)
{
    return sizeof(*h) + h->ev->bytes;
}

/* Removes the oldest entry of u (always its list's head), noting what the
 * history can no longer cover. */
static void hist_pop(struct pb_store *st, struct pb_suser *u, int reason)
{
    struct pb_hist *h = u->hist;
    st->m->history_evicted[reason]++;
    u->hist = h->unext;
    if (!u->hist)
        u->hist_tail = NULL;
    u->nhist--;
    if (h->gprev)
        h->gprev->gnext = h->gnext;
    else
        st->hist = h->gnext;
    if (h->gnext)
        h->gnext->gprev = h->gprev;
    else
        st->hist_tail = h->gprev;
    st->nhist--;
    st->hist_bytes -= hist_bytes(h);

    note_lost(st, u, h->ev->stream, h->ev->offset, h->ev->ts_ms);
    sevent_unref(h->ev);
    free(h);
    user_maybe_free(st, u);
}

static void hist_append(struct pb_store *st, struct pb_suser *u, struct pb_sevent *e)
{
    if (add_sat(e->ts_ms, st->cfg->history_ttl_ms) <= pb_now_ms()) {
        note_lost(st, u, e->stream, e->offset, e->ts_ms); /* too old to keep */
        return;
    }
    if (u->nhist >= (uint64_t)st->cfg->history_max_events && u->hist)
        hist_pop(st, u, HIST_EVICT_PER_USER);
    struct pb_hist *h = calloc(1, sizeof(*h));
    if (!h) {
        note_lost(st, u, e->stream, e->offset, e->ts_ms);
        return;
    }
    e->refs++;
    h->ev = e;
    h->user = u;
    if (u->hist_tail)
        u->hist_tail->unext = h;
    else
        u->hist = h;
    u->hist_tail = h;
    u->nhist++;
    h->gprev = st->hist_tail;
    if (st->hist_tail)
        st->hist_tail->gnext = h;
    else
        st->hist = h;
    st->hist_tail = h;
    st->nhist++;
    st->hist_bytes += hist_bytes(h);
}

/* ---- bounds ------------------------------------------------------------------- */

/* The task updated longest ago, live or final. */
static struct pb_task *oldest_task(const struct pb_store *st)
{
    if (!st->live || !st->fin)
        return st->live ? st->live : st->fin;
    return st->live->ev->seq < st->fin->ev->seq ? st->live : st->fin;
}

/* Bounds: history.max_bytes holds the history entries; state.max_bytes the
 * tasks and the per-user records (a user's record goes with its last task
 * or history entry, so when no task is left the history gives way). */
static void enforce_bytes(struct pb_store *st)
{
    while (st->hist && st->hist_bytes > (size_t)st->cfg->history_max_bytes)
        hist_pop(st, st->hist->user, HIST_EVICT_BYTES);
    while (st->state_bytes > (size_t)st->cfg->state_max_bytes) {
        struct pb_task *t = oldest_task(st);
        if (t)
            task_free(st, t, STATE_EVICT_BYTES);
        else if (st->hist)
            hist_pop(st, st->hist->user, HIST_EVICT_BYTES);
        else
            break;
    }
}

void pb_store_tick(struct pb_store *st)
{
    int64_t now = pb_now_ms();
    int budget = TTL_EVICTIONS_PER_TICK;
    /* The lists are in arrival order, which is nearly Kafka-timestamp order:
     * an entry behind a younger head waits for it (the byte bounds still
     * hold), and what is read (snapshots, resume) checks times itself. */
    while (budget-- > 0 && st->hist && add_sat(st->hist->ev->ts_ms, st->cfg->history_ttl_ms) <= now)
        hist_pop(st, st->hist->user, HIST_EVICT_TTL);
    while (budget-- > 0 && st->live && task_expired(st, st->live->ev, now))
        task_free(st, st->live, STATE_EVICT_TTL);
    while (budget-- > 0 && st->fin && task_expired(st, st->fin->ev, now))
        task_free(st, st->fin, STATE_EVICT_TTL);
}

/* ---- recording ----------------------------------------------------------------- */

static int keeps_anything(const struct pb_config *cfg)
{
    return cfg->state_max_tasks_per_user > 0 || cfg->history_max_events > 0;
}

int pb_store_record(struct pb_store *st, struct pb_event *ev)
{
    struct pb_stream *s = pb_stream_get(st, ev->topic, ev->partition);
    if (!s)
        return PB_RECORD_DELIVER; /* no position: the frame's pos cannot resume */
    if (!ev->topic) {
        ev->offset = ++s->high;
        if (s->first < 0)
            s->first = ev->offset;
    }
    if (ev->target_kind != PB_TARGET_USER) {
        pb_stream_mark_bcast(st, s);
        if (st->cfg->history_max_events <= 0)
            return PB_RECORD_DELIVER;
        struct pb_sevent *e = sevent_new(st, ev, s->idx);
        if (!e) {
            note_lost(st, st->bcast, s->idx, ev->offset, ev->ts_ms);
            return PB_RECORD_DELIVER;
        }
        hist_append(st, st->bcast, e);
        sevent_unref(e);
        enforce_bytes(st);
        return PB_RECORD_DELIVER;
    }
    if (!keeps_anything(st->cfg))
        return PB_RECORD_DELIVER;
    struct pb_suser *u = user_get(st, ev->target, ev->target_len);
    if (!u) {
        note_lost(st, NULL, s->idx, ev->offset, ev->ts_ms);
        return PB_RECORD_DELIVER;
    }
    user_add_stream(st, u, s->idx);
    struct pb_sevent *e = sevent_new(st, ev, s->idx);
    int rc = PB_RECORD_DELIVER;
    u->busy = 1; /* an eviction of its own last task or entry must not free it */
    if (e && ev->task && st->cfg->state_max_tasks_per_user > 0)
        rc = task_update(st, u, e);
    if (e && rc != PB_RECORD_OUTDATED && st->cfg->history_max_events > 0)
        hist_append(st, u, e);
    else if (!e && st->cfg->history_max_events > 0)
        note_lost(st, u, s->idx, ev->offset, ev->ts_ms);
    u->busy = 0;
    sevent_unref(e);
    user_maybe_free(st, u);
    enforce_bytes(st);
    return rc;
}

long pb_store_each_task(struct pb_store *st, const char *user, size_t len,
                        void (*fn)(const struct pb_event *ev, void *ud), void *ud)
{
    struct pb_suser *u = pb_store_user_find(st, user, len);
    int64_t now = pb_now_ms();
    long n = 0;
    for (struct pb_task *t = u ? u->tasks : NULL; t; t = t->unext) {
        if (task_expired(st, t->ev, now))
            continue; /* the tick's sweep frees it */
        struct pb_event ev;
        pb_sevent_view(st, t->ev, &ev);
        fn(&ev, ud);
        n++;
    }
    return n;
}

void pb_store_stats(const struct pb_store *st, struct pb_store_stats *out)
{
    out->users = st->nusers;
    out->tasks = st->ntasks;
    out->state_bytes = st->state_bytes;
    out->history_events = st->nhist;
    out->history_bytes = st->hist_bytes;
}
