/* Logins that resume while the rebuild at start is still filling the
 * history (SPEC 7, 8): the public listener serves before the rebuild is
 * done, and such a resume would be answered "resumed": false by a history
 * that covers it a moment later. The hub holds them here, in arrival order,
 * until the rebuild ends or their wait is over. Owned by the hub; main loop
 * only. Bound: one entry per connection that logged in meanwhile (at most
 * ws.max_connections), each for at most the wait the hub gives it. */
#ifndef PB_HELD_H
#define PB_HELD_H

#include <stddef.h>
#include <stdint.h>

struct pb_member;

/* One held login; the list owns it and its resume string. */
struct pb_held {
    struct pb_held *next;
    struct pb_member *mb;
    char *resume;
    int64_t until_ms; /* monotonic: answered by then at the latest */
};

struct pb_held_list {
    struct pb_held *head;
    struct pb_held **tail; /* NULL while empty */
    size_t n;
};

/* Holds mb's login until until_ms; takes resume. -1 (nothing taken) on OOM. */
int pb_held_add(struct pb_held_list *l, struct pb_member *mb, char *resume, int64_t until_ms);
/* Forgets mb's held login, if any (its connection closed). */
void pb_held_drop(struct pb_held_list *l, const struct pb_member *mb);
/* The oldest held login when all is set or its wait is over at now_ms, taken
 * off the list (the caller frees it with pb_held_free); else NULL. Entries
 * are added with waits of one length, so the oldest is due first. */
struct pb_held *pb_held_take(struct pb_held_list *l, int64_t now_ms, int all);
void pb_held_free(struct pb_held *e);

#endif
