/* Recent notifications (SPEC 9): the newest events of a user's history
 * that carry no task, oldest first, for a login that asks for them with
 * "recent": N, so a reloaded page shows the notifications it had shown.
 * A walk of the user's history and the broadcast history merged in arrival
 * order, keeping the last N admitted in a ring on the stack
 * (PB_STORE_MAX_RECENT pointers): no allocation, nothing kept. */
#include <stdint.h>

#include "store_internal.h"

long pb_store_recent(struct pb_store *st, const char *user, size_t len, int max,
                     int (*admit)(const struct pb_event *ev, void *ud),
                     void (*fn)(const struct pb_event *ev, void *ud), void *ud)
{
    const struct pb_sevent *ring[PB_STORE_MAX_RECENT];
    if (max <= 0 || st->cfg->history_max_events <= 0)
        return 0;
    if (max > PB_STORE_MAX_RECENT)
        max = PB_STORE_MAX_RECENT;
    const struct pb_suser *u = pb_store_user_find(st, user, len);
    const struct pb_hist *a = u ? u->hist : NULL, *b = st->bcast->hist;
    uint64_t kept = 0; /* admitted so far; the ring holds the last max */
    for (const struct pb_hist *h; (h = pb_hist_next(&a, &b));) {
        if (h->ev->task) /* progress: the snapshot's business */
            continue;
        struct pb_event ev;
        pb_sevent_view(st, h->ev, &ev);
        if (admit && !admit(&ev, ud))
            continue;
        ring[kept++ % (uint64_t)max] = h->ev;
    }
    long n = kept < (uint64_t)max ? (long)kept : max;
    for (long i = 0; i < n; i++) {
        struct pb_event ev;
        pb_sevent_view(st, ring[(kept - (uint64_t)n + (uint64_t)i) % (uint64_t)max], &ev);
        fn(&ev, ud);
    }
    return n;
}
