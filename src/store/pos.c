/* Positions and resume (SPEC 7). A pos names, for each stream a
 * user's events come from (the Kafka partitions of its own events and of
 * broadcasts), the offset up to which this node had handled that stream when
 * the frame was made. Per-partition order is the same on every node and
 * across restarts, so a pos means the same everywhere: a client that had it
 * has seen every event for it at or below those offsets, and one resuming
 * gets exactly those above them. Text: "1.T.SID~OFF.SID~OFF...", T being the
 * event's Kafka timestamp (an event from a stream the pos does not name is
 * missed when it is newer than T), SID "<8 base32 of the topic's hash>-<P>"
 * for Kafka and "h<epoch>" for this process's local HTTP pushes.
 *
 * On top of the store: the streams are stream.c's, the users' records and
 * their history store.c's; neither calls back into this file. */
#include <stdio.h>
#include <string.h>

#include "store_internal.h"

/* ---- pos ------------------------------------------------------------------- */

uint64_t pb_store_pos_sig(struct pb_store *st, const char *user, size_t len)
{
    const struct pb_suser *u = pb_store_user_find(st, user, len);
    return u ? u->sig ^ u->nstreams : 0;
}

/* A pos is written for every native frame: by hand, not snprintf, which
 * took an eighth of the main loop's instructions per unicast event
 * (callgrind, docs/PERFORMANCE.md). Each appends, NUL-terminated, and
 * returns the new end, or NULL when it does not fit before end. */
static char *put_str(char *p, const char *end, const char *s, size_t n)
{
    if (!p || (size_t)(end - p) <= n)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p + n;
}

static char *put_int(char *p, const char *end, int64_t v)
{
    char digits[24];
    size_t n = sizeof(digits);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[--n] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        digits[--n] = '-';
    return put_str(p, end, digits + n, sizeof(digits) - n);
}

static char *put_entry(char *p, const char *end, const struct pb_stream *s)
{
    p = put_str(p, end, ".", 1);
    p = put_str(p, end, s->sid, strlen(s->sid));
    p = put_str(p, end, "~", 1);
    return put_int(p, end, s->high);
}

void pb_store_pos(struct pb_store *st, const char *user, size_t len, int64_t ts, char *out)
{
    const struct pb_suser *u = pb_store_user_find(st, user, len);
    char *p = out, *end = out + PB_POS_MAX_LEN;
    p = put_int(put_str(p, end, "1.", 2), end, ts);
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
    for (const struct pb_hist *h; (h = pb_hist_next(&a, &b));) {
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
