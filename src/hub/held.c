/* Resuming logins held while the rebuild at start fills the history
 * (held.h): a singly linked FIFO. The list is short and short-lived (the
 * logins of the first seconds after a restart), so dropping a closed one is
 * a walk, not an index. */
#include "pushbridge/hub/held.h"

#include <stdlib.h>

int pb_held_add(struct pb_held_list *l, struct pb_member *mb, char *resume, int64_t until_ms)
{
    struct pb_held *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    e->mb = mb;
    e->resume = resume;
    e->until_ms = until_ms;
    if (l->tail)
        *l->tail = e;
    else
        l->head = e;
    l->tail = &e->next;
    l->n++;
    return 0;
}

static void unlink_at(struct pb_held_list *l, struct pb_held **pp)
{
    struct pb_held *e = *pp;
    *pp = e->next;
    if (l->tail == &e->next)
        l->tail = l->head ? pp : NULL;
    l->n--;
}

void pb_held_drop(struct pb_held_list *l, const struct pb_member *mb)
{
    for (struct pb_held **pp = &l->head; *pp; pp = &(*pp)->next) {
        if ((*pp)->mb == mb) {
            struct pb_held *e = *pp;
            unlink_at(l, pp);
            pb_held_free(e);
            return;
        }
    }
}

struct pb_held *pb_held_take(struct pb_held_list *l, int64_t now_ms, int all)
{
    struct pb_held *e = l->head;
    if (!e || (!all && e->until_ms > now_ms))
        return NULL;
    unlink_at(l, &l->head);
    e->next = NULL;
    return e;
}

void pb_held_free(struct pb_held *e)
{
    if (!e)
        return;
    free(e->resume);
    free(e);
}
