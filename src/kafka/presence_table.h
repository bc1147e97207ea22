/* A table of user ID -> connection count, the unit presence.c keeps per
 * remote node (and uses as its set of users changed since the last delta).
 * Chained hash, FNV-1a with a per-process seed; the bucket array doubles
 * with the entries. Every table of one presence shares one budget (*used
 * against max): an insert past it fails, which is how
 * cluster.presence_max_users bounds the memory. Private to src/kafka. */
#ifndef PB_PRESENCE_TABLE_H
#define PB_PRESENCE_TABLE_H

#include <stddef.h>
#include <stdint.h>

struct pb_ucount {
    struct pb_ucount *next;
    uint64_t hash;
    uint32_t n;
    uint32_t len;
    char id[];
};

struct pb_utable {
    struct pb_ucount **b;
    size_t nb; /* a power of two, or 0 before the first insert */
    size_t n;
    size_t *used; /* shared budget: entries in every table of the presence */
    size_t max;
    uint64_t seed;
};

void pb_utable_init(struct pb_utable *t, size_t *used, size_t max, uint64_t seed);
/* The count kept for id, 0 when none. */
uint32_t pb_utable_get(const struct pb_utable *t, const char *id, size_t len);
/* Sets id's count; n 0 removes it. -1 when a new entry would pass the
 * budget (or on OOM): nothing is changed. */
int pb_utable_set(struct pb_utable *t, const char *id, size_t len, uint32_t n);
void pb_utable_clear(struct pb_utable *t);
/* Moves src's entries into dst (dst cleared first); src is left empty. */
void pb_utable_swap_in(struct pb_utable *dst, struct pb_utable *src);
/* Calls fn for every entry; fn may not change the table. */
void pb_utable_each(const struct pb_utable *t,
                    void (*fn)(void *arg, const char *id, size_t len, uint32_t n), void *arg);

#endif
