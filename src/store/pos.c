/* Streams, positions and resume (SPEC 7). A pos names, for each stream a
 * user's events come from (the Kafka partitions of its own events and of
 * broadcasts), the offset up to which this node had handled that stream when
 * the frame was made. Per-partition order is the same on every node and
 * across restarts, so a pos means the same everywhere: a client that had it
 * has seen every event for it at or below those offsets, and one resuming
 * gets exactly those above them. Text: "1.T.SID~OFF.SID~OFF...", T being the
 * event's Kafka timestamp (an event from a stream the pos does not name is
 * missed when it is newer than T), SID "<8 base32 of the topic's hash>-<P>"
 * for Kafka and "h<epoch>" for this process's local HTTP pushes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "store_internal.h"

static uint64_t fnv64(const char *s, size_t n)
{
    uint64_t x = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        x ^= (unsigned char)s[i];
        x *= 1099511628211ULL;
    }
    return x;
}

static uint64_t stream_hash(const char *topic, int32_t partition)
{
    return (topic ? fnv64(topic, strlen(topic)) : 0) ^ ((uint64_t)(uint32_t)partition * 0x9e3779b97f4a7c15ULL);
}

/* Unseeded on purpose: the name must be the same on every node. */
static void kafka_sid(char *out, size_t cap, const char *topic, int32_t partition)
{
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    uint64_t h = fnv64(topic, strlen(topic));
    char name[9];
    for (int i = 0; i < 8; i++)
        name[i] = b32[(h >> (5 * i)) & 31];
    name[8] = '\0';
    snprintf(out, cap, "%s-%d", name, (int)partition);
}

static struct pb_stream *stream_new(struct pb_store *st, const char *topic, int32_t partition)
{
    if (st->nstreams >= PB_STORE_MAX_STREAMS)
        return NULL;
    if (st->nstreams == st->cap_streams) {
        uint32_t cap = st->cap_streams ? st->cap_streams * 2 : 16;
        struct pb_stream **a = realloc(st->streams, cap * sizeof(*a));
        if (!a)
            return NULL;
        st->streams = a;
        st->cap_streams = cap;
    }
    struct pb_stream *s = calloc(1, sizeof(*s));
    if (!s || (topic && !(s->topic = strdup(topic)))) {
        free(s);
        return NULL;
    }
    s->partition = partition;
    s->first = s->high = s->evicted_user = s->evicted_bcast = -1;
    s->evicted_user_ts = s->evicted_bcast_ts = INT64_MIN;
    s->hash = stream_hash(topic, partition);
    s->idx = st->nstreams;
    st->streams[st->nstreams++] = s;
    return s;
}

/* Bound: PB_STORE_MAX_STREAMS; the bucket array doubles with the streams. */
static void sbuckets_add(struct pb_store *st, struct pb_stream *s)
{
    if (st->nstreams > st->nsbuckets) {
        size_t n = st->nsbuckets * 2;
        struct pb_stream **b = calloc(n, sizeof(*b));
        if (b) {
            for (size_t i = 0; i < st->nsbuckets; i++)
                for (struct pb_stream *x = st->sbuckets[i], *next; x; x = next) {
                    next = x->hnext;
                    x->hnext = b[x->hash & (n - 1)];
                    b[x->hash & (n - 1)] = x;
                }
            free(st->sbuckets);
            st->sbuckets = b;
            st->nsbuckets = n;
        }
    }
    s->hnext = st->sbuckets[s->hash & (st->nsbuckets - 1)];
    st->sbuckets[s->hash & (st->nsbuckets - 1)] = s;
}

int pb_streams_init(struct pb_store *st)
{
    st->nsbuckets = 64;
    st->sbuckets = calloc(st->nsbuckets, sizeof(*st->sbuckets));
    if (!st->sbuckets || !(st->http = stream_new(st, NULL, 0)))
        return -1;
    /* This process's HTTP pushes are numbered from 0 under a random epoch:
     * another process (or this one restarted) does not know them. */
    uint64_t epoch;
    if (getrandom(&epoch, sizeof(epoch), GRND_NONBLOCK) != sizeof(epoch))
        epoch = (uint64_t)(uintptr_t)st ^ (uint64_t)pb_now_ms();
    snprintf(st->http->sid, sizeof(st->http->sid), "h%012llx",
             (unsigned long long)(epoch & 0xffffffffffffULL));
    return 0;
}

void pb_streams_free(struct pb_store *st)
{
    for (uint32_t i = 0; i < st->nstreams; i++) {
        free(st->streams[i]->topic);
        free(st->streams[i]);
    }
    free(st->streams);
    free(st->sbuckets);
    free(st->bcast_streams);
}

struct pb_stream *pb_stream_get(struct pb_store *st, const char *topic, int32_t partition)
{
    if (!topic)
        return st->http;
    struct pb_stream *s = st->last;
    if (s && s->partition == partition && s->topic && strcmp(s->topic, topic) == 0)
        return s;
    uint64_t hash = stream_hash(topic, partition);
    for (s = st->sbuckets[hash & (st->nsbuckets - 1)]; s; s = s->hnext)
        if (s->hash == hash && s->partition == partition && s->topic &&
            strcmp(s->topic, topic) == 0)
            return st->last = s;
    if (!(s = stream_new(st, topic, partition)))
        return NULL;
    kafka_sid(s->sid, sizeof(s->sid), topic, partition);
    sbuckets_add(st, s);
    return st->last = s;
}

void pb_stream_mark_bcast(struct pb_store *st, struct pb_stream *s)
{
    if (s->bcast)
        return;
    uint32_t *a = realloc(st->bcast_streams, (st->nbcast + 1) * sizeof(*a));
    if (!a)
        return; /* pos will not name it: resume falls back on time for it */
    st->bcast_streams = a;
    a[st->nbcast++] = s->idx;
    s->bcast = 1;
}

int pb_store_seen(struct pb_store *st, const char *topic, int32_t partition, int64_t offset)
{
    struct pb_stream *s = st ? pb_stream_get(st, topic, partition) : NULL;
    if (!s)
        return 0;
    if ((s->gap || s->first < 0) && offset > s->high) {
        /* Unless it follows on from what is held, a new range starts: a
         * resume from before it cannot be covered (another member had the
         * partition meanwhile, or the log moved on). */
        if (s->first < 0 || offset != s->high + 1)
            s->first = offset;
        s->gap = 0;
    }
    if (offset <= s->high && offset >= s->first)
        return 1;
    if (offset > s->high)
        s->high = offset;
    return 0;
}

void pb_store_gap(struct pb_store *st, const char *topic, int32_t partition)
{
    struct pb_stream *s = st ? pb_stream_get(st, topic, partition) : NULL;
    if (s)
        s->gap = 1;
}

/* ---- pos ------------------------------------------------------------------- */

uint64_t pb_store_pos_sig(struct pb_store *st, const char *user, size_t len)
{
    const struct pb_suser *u = pb_store_user_find(st, user, len);
    return u ? u->sig ^ u->nstreams : 0;
}

static char *put_entry(char *p, const char *end, const struct pb_stream *s)
{
    int n = snprintf(p, (size_t)(end - p), ".%s~%lld", s->sid, (long long)s->high);
    return n > 0 && p + n < end ? p + n : NULL;
}

void pb_store_pos(struct pb_store *st, const char *user, size_t len, int64_t ts, char *out)
{
    const struct pb_suser *u = pb_store_user_find(st, user, len);
    char *p = out, *end = out + PB_POS_MAX_LEN;
    p += snprintf(p, 32, "1.%lld", (long long)ts);
    uint32_t named = 0;
    for (uint32_t i = 0; u && i < u->nstreams && p; i++, named++) {
        const struct pb_stream *s = st->streams[u->streams[i].stream];
        p = named < PB_POS_MAX_STREAMS ? put_entry(p, end, s) : NULL;
    }
    for (uint32_t i = 0; i < st->nbcast && p; i++) {
        const struct pb_stream *s = st->streams[st->bcast_streams[i]];
        int dup = 0; /* a user's own stream may carry broadcasts too */
        for (uint32_t j = 0; u && j < u->nstreams && !dup; j++)
            dup = u->streams[j].stream == s->idx;
        if (dup)
            continue;
        p = named++ < PB_POS_MAX_STREAMS ? put_entry(p, end, s) : NULL;
    }
    if (!p) /* too many streams to name: a pos that never resumes */
        snprintf(out, 32, "0.%lld", (long long)ts);
}

/* ---- resume ----------------------------------------------------------------- */

struct pos_entry {
    const struct pb_stream *s;
    int64_t offset;
};

struct parsed_pos {
    int64_t ts;
    struct pos_entry e[PB_POS_MAX_STREAMS];
    uint32_t n;
};

static int parse_int(const char *p, const char *end, int64_t *out)
{
    if (p == end || end - p > 18)
        return -1;
    int64_t v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

static const struct pb_stream *stream_by_sid(const struct pb_store *st, const char *sid, size_t n)
{
    for (uint32_t i = 0; i < st->nstreams; i++)
        if (strlen(st->streams[i]->sid) == n && memcmp(st->streams[i]->sid, sid, n) == 0)
            return st->streams[i];
    return NULL;
}

static int named(const struct parsed_pos *pp, uint32_t stream)
{
    for (uint32_t i = 0; i < pp->n; i++)
        if (pp->e[i].s->idx == stream)
            return 1;
    return 0;
}

/* -1 for a pos that is malformed, not resumable, or names a stream this
 * node does not know (another node's HTTP pushes, a partition never read). */
static int parse_pos(const struct pb_store *st, const char *pos, size_t len, struct parsed_pos *pp)
{
    const char *p = pos, *end = pos + len;
    if (len < 3 || len > PB_POS_MAX_LEN || memcmp(p, "1.", 2) != 0)
        return -1;
    p += 2;
    const char *dot = memchr(p, '.', (size_t)(end - p));
    if (parse_int(p, dot ? dot : end, &pp->ts))
        return -1;
    pp->n = 0;
    while (dot) {
        p = dot + 1;
        dot = memchr(p, '.', (size_t)(end - p));
        const char *stop = dot ? dot : end;
        const char *tilde = memchr(p, '~', (size_t)(stop - p));
        if (!tilde || pp->n == PB_POS_MAX_STREAMS)
            return -1;
        struct pos_entry *e = &pp->e[pp->n++];
        if (!(e->s = stream_by_sid(st, p, (size_t)(tilde - p))) ||
            parse_int(tilde + 1, stop, &e->offset))
            return -1;
    }
    return 0;
}

/* 1 when this node holds every event of the user (or broadcast) after e. */
static int covered(const struct pb_suser *u, const struct pos_entry *e)
{
    const struct pb_stream *s = e->s;
    if (s->first < 0 || s->first > e->offset + 1 || s->high < e->offset)
        return 0; /* read from later on, or not yet this far (a lagging node) */
    int64_t floor = s->evicted_user;
    for (uint32_t i = 0; u && i < u->nstreams; i++)
        if (u->streams[i].stream == s->idx)
            floor = u->streams[i].floor;
    return floor <= e->offset && s->evicted_bcast <= e->offset;
}

/* Streams the pos does not name: what counts as missed there is what is
 * newer than its time, so nothing newer may be gone. A user without a
 * record may have lost entries on any stream. */
static int unnamed_covered(const struct pb_store *st, const struct pb_suser *u,
                           const struct parsed_pos *pp)
{
    for (uint32_t i = 0; u && i < u->nstreams; i++)
        if (!named(pp, u->streams[i].stream) && u->streams[i].floor_ts > pp->ts)
            return 0;
    for (uint32_t i = 0; i < st->nstreams; i++) {
        const struct pb_stream *s = st->streams[i];
        if (named(pp, s->idx))
            continue;
        if (s->evicted_bcast_ts > pp->ts || (!u && s->evicted_user_ts > pp->ts))
            return 0;
    }
    return 1;
}

static struct pos_entry *entry_of(struct parsed_pos *pp, uint32_t stream)
{
    for (uint32_t i = 0; i < pp->n; i++)
        if (pp->e[i].s->idx == stream)
            return &pp->e[i];
    return NULL;
}

static void write_pos(const struct parsed_pos *pp, char *out)
{
    char *p = out, *end = out + PB_POS_MAX_LEN;
    p += snprintf(p, 32, "1.%lld", (long long)pp->ts);
    for (uint32_t i = 0; i < pp->n && p; i++) {
        int n = snprintf(p, (size_t)(end - p), ".%s~%lld", pp->e[i].s->sid,
                         (long long)pp->e[i].offset);
        p = n > 0 && p + n < end ? p + n : NULL;
    }
    if (!p)
        snprintf(out, 32, "0.%lld", (long long)pp->ts);
}

/* Is ev after pp? If so, pp moves past it: the pos of a replayed event is
 * the resume pos with that event's stream advanced to it. Between it and
 * the next event replayed from that stream, the stream carried nothing for
 * this user, so a second resume from it is exact too. */
static int advance(struct pb_store *st, struct parsed_pos *pp, const struct pb_sevent *ev)
{
    struct pos_entry *e = entry_of(pp, ev->stream);
    if (e ? ev->offset <= e->offset : ev->ts_ms <= pp->ts)
        return 0;
    if (!e && pp->n < PB_POS_MAX_STREAMS) {
        e = &pp->e[pp->n++];
        e->s = st->streams[ev->stream];
    }
    if (e)
        e->offset = ev->offset;
    return 1;
}

int pb_store_resume(struct pb_store *st, const char *user, size_t len, const char *pos,
                    size_t poslen,
                    void (*fn)(const struct pb_event *ev, const char *pos, void *ud), void *ud)
{
    struct parsed_pos pp;
    if (st->cfg->history_max_events <= 0 || parse_pos(st, pos, poslen, &pp))
        return 0;
    const struct pb_suser *u = pb_store_user_find(st, user, len);
    for (uint32_t i = 0; i < pp.n; i++)
        if (!covered(u, &pp.e[i]))
            return 0;
    if (!unnamed_covered(st, u, &pp))
        return 0;
    /* The user's entries and the broadcasts, merged in arrival order. */
    const struct pb_hist *a = u ? u->hist : NULL, *b = st->bcast->hist;
    while (a || b) {
        const struct pb_hist *h;
        if (a && (!b || a->ev->seq < b->ev->seq)) {
            h = a;
            a = a->unext;
        } else {
            h = b;
            b = b->unext;
        }
        if (!advance(st, &pp, h->ev))
            continue;
        struct pb_event ev;
        char at[PB_POS_MAX_LEN];
        pb_sevent_view(st, h->ev, &ev);
        write_pos(&pp, at);
        fn(&ev, at, ud);
    }
    return 1;
}
