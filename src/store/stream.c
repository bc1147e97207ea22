/* Streams (SPEC 7): one per Kafka partition and one for this process's
 * local HTTP pushes, each with the range of offsets this process has handled
 * contiguously, which makes a redelivery known (pb_store_seen) and tells
 * resume (pos.c) what it can cover. A stream's name in a pos (its sid) is
 * the same on every node. The lowest piece of the store: store.c keeps
 * events per stream, pos.c names the streams in a pos. Loop thread only. */
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
