/* The messages between the hub and the workers (hub.h, worker.h): what a
 * worker's inbox carries from the hub (frames for its connections, a login's
 * start, releases, shutdown) and what the hub's inbox carries back (logins,
 * closes, refreshed groups). Both sides make and free them; nothing here
 * touches either side's state. */
#ifndef PB_HUB_MESSAGE_H
#define PB_HUB_MESSAGE_H

#include <stddef.h>

#include "pushbridge/core/handoff.h"
#include "pushbridge/event/frame.h"

struct pb_conn;
struct pb_member;

/* One frame for one connection: what a worker's inbox carries. The pair
 * holds one reference to the frame, which the worker releases. */
struct pb_frame_for {
    struct pb_conn *conn;
    struct pb_frame *frame;
};

enum pb_to_worker_type {
    PB_TW_FRAMES,    /* items: events for these connections, in order */
    PB_TW_START,     /* conn's login was taken: authed, then items (welcome, snapshot) */
    PB_TW_REFUSED,   /* conn's user is at ws.max_connections_per_user */
    PB_TW_RELEASE,   /* the hub has let go of conn: it may be freed */
    PB_TW_ADOPT,     /* fd: a public connection, accepted and admitted */
    PB_TW_CLOSE_ALL, /* shutdown: close every connection with 1001 */
    PB_TW_STOP,      /* leave the loop */
};

/* A message to a worker. Made by the sender, owned by the receiving
 * worker's inbox, freed by the worker once handled. Bound: frames are staged
 * per worker (at most STAGED_MAX pairs, hub.c) and posted once per turn of
 * the main loop; a login, a release and the shutdown messages are one each. */
struct pb_to_worker {
    struct pb_handoff_item link;
    enum pb_to_worker_type type;
    struct pb_conn *conn; /* START, REFUSED, RELEASE */
    int fd;               /* ADOPT */
    size_t n, cap;
    struct pb_frame_for items[]; /* FRAMES, START */
};

enum pb_to_hub_type {
    PB_TH_LOGIN,  /* member: a verified identity asks to start */
    PB_TH_CLOSED, /* member: its connection is gone */
    PB_TH_GROUPS, /* member: a refreshed token brought these groups */
    PB_TH_CLOSING, /* member: its worker is closing it (slow, expired, shutdown) */
};

/* A message to the hub, from a worker. Made by the worker, freed by the hub. */
struct pb_to_hub {
    struct pb_handoff_item link;
    enum pb_to_hub_type type;
    struct pb_member *member;
    char *resume;       /* LOGIN: the client's last pos, or NULL (owned) */
    char **groups;      /* GROUPS (owned) */
    size_t ngroups;
};

/* A message to a worker with room for n items; NULL on OOM. */
struct pb_to_worker *pb_to_worker_new(enum pb_to_worker_type type, size_t n);
/* Appends (conn, f) to *msgp, made (with type) or grown as needed; takes a
 * reference to f. -1 when out of memory: *msgp is unchanged and the
 * connection misses the frame, which the caller reports. */
int pb_to_worker_add(struct pb_to_worker **msgp, enum pb_to_worker_type type,
                     struct pb_conn *conn, struct pb_frame *f);
/* Releases what a message holds (its frames) and frees it. */
void pb_to_worker_free(struct pb_to_worker *msg);

#endif
