/* User ID -> connection count tables for presence (presence_table.h): one
 * per remote node, bounded together by one budget of entries. */
#include "presence_table.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash(const struct pb_utable *t, const char *s, size_t n)
{
    uint64_t x = 1469598103934665603ULL ^ t->seed;
    for (size_t i = 0; i < n; i++) {
        x ^= (unsigned char)s[i];
        x *= 1099511628211ULL;
    }
    return x ^ (x >> 29);
}

void pb_utable_init(struct pb_utable *t, size_t *used, size_t max, uint64_t seed)
{
    memset(t, 0, sizeof(*t));
    t->used = used;
    t->max = max;
    t->seed = seed;
}

static struct pb_ucount **find(const struct pb_utable *t, const char *id, size_t len, uint64_t h)
{
    if (!t->nb)
        return NULL;
    struct pb_ucount **pp = &t->b[h & (t->nb - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->len == len && memcmp((*pp)->id, id, len) == 0)
            return pp;
    return NULL;
}

uint32_t pb_utable_get(const struct pb_utable *t, const char *id, size_t len)
{
    struct pb_ucount **pp = find(t, id, len, hash(t, id, len));
    return pp ? (*pp)->n : 0;
}

/* Doubles the buckets when entries outnumber them; a failed grow only makes
 * chains longer. */
static void grow(struct pb_utable *t)
{
    if (t->nb && t->n < t->nb)
        return;
    size_t nb = t->nb ? t->nb * 2 : 64;
    struct pb_ucount **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < t->nb; i++)
        for (struct pb_ucount *e = t->b[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    free(t->b);
    t->b = b;
    t->nb = nb;
}

int pb_utable_set(struct pb_utable *t, const char *id, size_t len, uint32_t n)
{
    uint64_t h = hash(t, id, len);
    struct pb_ucount **pp = find(t, id, len, h);
    if (pp && n) {
        (*pp)->n = n;
        return 0;
    }
    if (pp) {
        struct pb_ucount *e = *pp;
        *pp = e->next;
        free(e);
        t->n--;
        (*t->used)--;
        return 0;
    }
    if (!n)
        return 0;
    if (*t->used >= t->max)
        return -1;
    grow(t);
    if (!t->nb)
        return -1;
    struct pb_ucount *e = malloc(sizeof(*e) + len);
    if (!e)
        return -1;
    memcpy(e->id, id, len);
    e->len = (uint32_t)len;
    e->hash = h;
    e->n = n;
    e->next = t->b[h & (t->nb - 1)];
    t->b[h & (t->nb - 1)] = e;
    t->n++;
    (*t->used)++;
    return 0;
}

void pb_utable_clear(struct pb_utable *t)
{
    for (size_t i = 0; i < t->nb; i++)
        for (struct pb_ucount *e = t->b[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    *t->used -= t->n;
    free(t->b);
    t->b = NULL;
    t->nb = 0;
    t->n = 0;
}

void pb_utable_swap_in(struct pb_utable *dst, struct pb_utable *src)
{
    pb_utable_clear(dst);
    dst->b = src->b;
    dst->nb = src->nb;
    dst->n = src->n;
    src->b = NULL;
    src->nb = 0;
    src->n = 0;
}

void pb_utable_each(const struct pb_utable *t,
                    void (*fn)(void *arg, const char *id, size_t len, uint32_t n), void *arg)
{
    for (size_t i = 0; i < t->nb; i++)
        for (const struct pb_ucount *e = t->b[i]; e; e = e->next)
            fn(arg, e->id, e->len, e->n);
}
