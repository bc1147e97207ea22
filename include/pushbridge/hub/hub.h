/* The hub: who is connected where, and what each event becomes. It keeps
 * the directory of logged-in connections (users, their connections, each
 * one's worker, groups and event filter), the store behind it, and is the
 * one place where Kafka and HTTP pushes become frames (pb_hub_deliver): it
 * frames an event once, then hands each worker that holds one of its
 * connections the (connection, frame) pairs for it, in one message. Logins
 * are decided here too (the per-user limit, then the welcome, snapshot or
 * resume, taken from the store at that instant), so per-user order and
 * "no gap, no repeat" hold across workers without a lock: the main loop is
 * the one sequencer. Main loop only; the workers reach it by messages. */
#ifndef PB_HUB_H
#define PB_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "pushbridge/core/config.h"
#include "pushbridge/core/handoff.h"
#include "pushbridge/core/metrics.h"
#include "pushbridge/event/envelope.h"
#include "pushbridge/event/frame.h"
#include "pushbridge/hub/auth.h"
#include "pushbridge/hub/conns.h"
#include "pushbridge/hub/message.h"
#include "pushbridge/store/store.h"

struct pb_user;

/* The hub's record of one connection. Made by the worker that holds the
 * connection when it asks to log in (pb_hub_login_request), owned by the
 * hub from then on, freed by the hub when the worker reports the close. */
struct pb_member {
    struct pb_conn *conn; /* the worker's: passed back in messages, never read here */
    uint64_t conn_id;
    struct pb_identity ident; /* user, groups, event filter, form */
    struct pb_user *user;
    struct pb_member *user_prev, *user_next; /* this user's connections */
    struct pb_member *prev, *next;           /* every linked connection */
    /* Last, and flags as bytes: 120 bytes, not 128, one per logged-in
     * connection (docs/PERFORMANCE.md, memory per idle connection). */
    int worker;
    uint8_t linked;  /* in the directory: the login was taken */
    uint8_t closing; /* the worker is closing it: nothing more is handed over */
};

/* How the hub reaches the workers: posts a message to worker k's inbox
 * (any thread may call it), or hands it to worker 0 at once. The hub's
 * delivered counts are the frames handed over, on every worker alike
 * (pb_hub_deliver). Set by the server. */
struct pb_hub_out {
    void (*post)(void *ud, int worker, struct pb_to_worker *msg);
    void *ud;
    int nworkers; /* 1..PB_MAX_WORKERS */
};

struct pb_hub;

/* store may be NULL: no task state, no history, no pos. It is borrowed. */
struct pb_hub *pb_hub_new(const struct pb_config *cfg, struct pb_metrics *m,
                          struct pb_store *store, const struct pb_hub_out *out);
/* Frees the hub and every member still in it. */
void pb_hub_free(struct pb_hub *h);

/* Keeps the event in the store (task state, history), then hands it to
 * every connection it targets (ev->target_kind) whose filter admits it, on
 * whichever worker. Returns the number of connections it was handed to,
 * that is the frames handed over to the workers' queues, whichever worker
 * and however many workers (0 too when it was an outdated task update,
 * counted as dropped). What a worker then writes is not waited for.
 * The frames are staged per worker and posted by pb_hub_flush(), which
 * the main loop calls before it sleeps (or by any other message the hub
 * sends that worker, or past a bound): a batch of events, one hand-off. */
long pb_hub_deliver(struct pb_hub *h, struct pb_event *ev, uint32_t source);

/* Posts the frames pb_hub_deliver() staged to their workers, in order. */
void pb_hub_flush(struct pb_hub *h);

/* A turn is what the Kafka drain hands over between two looks at the
 * workers' inboxes: pb_hub_turn_begin() starts counting the frames staged
 * for each worker, pb_hub_turn_most() is the most any one worker got since.
 * Worker 0 counts too, though it has no inbox: it writes its frames before
 * the loop serves its sockets, so a turn that big has done enough. */
void pb_hub_turn_begin(struct pb_hub *h);
size_t pb_hub_turn_most(const struct pb_hub *h);

/* The rebuild at start: keeps the event in the store, and when it changes
 * its task's kept state, stages it as that task's snapshot frame for the
 * user's logged-in connections (their snapshot, taken during the rebuild,
 * lacked it). */
void pb_hub_keep(struct pb_hub *h, struct pb_event *ev);

/* A message from a worker (login, closing, closed, groups): handled at once.
 * A login gets the welcome (native clients), then, when resume names a pos
 * the history covers, every event missed since, else the task snapshot and,
 * when the login asked for them (ident.recent), the recent notifications
 * (SPEC 9). */
void pb_hub_receive(struct pb_hub *h, struct pb_to_hub *msg);

struct pb_store *pb_hub_store(const struct pb_hub *h);

/* The tick that answers held logins: the wait given to one is half of
 * ws.auth_timeout_ms when that is over twice this, else none. */
#define PB_HUB_TICK_MS 1000
/* on: the rebuild at start is filling the history, so a login that resumes
 * waits (held.h) rather than be answered "resumed": false; off (the rebuild
 * is done): every held login is answered now, in arrival order. */
void pb_hub_hold_resumes(struct pb_hub *h, int on);
/* Once a second (PB_HUB_TICK_MS): answers held logins whose wait is over. */
void pb_hub_tick(struct pb_hub *h);

/* A user's connection count changed to n (0: the user is gone); called
 * on the main loop, right after the change. */
typedef void (*pb_hub_watch_fn)(void *arg, const char *user, size_t len, size_t n);
/* One watcher at most (presence.c); NULL stops watching. */
void pb_hub_set_watch(struct pb_hub *h, pb_hub_watch_fn fn, void *arg);
/* Calls fn for every user with a connection (a presence snapshot). */
void pb_hub_each_user(const struct pb_hub *h, pb_hub_watch_fn fn, void *arg);

/* Logged-in connections of one user, in the whole process. */
size_t pb_hub_user_connections(const struct pb_hub *h, const char *user, size_t len);
/* Logged-in connections, on every worker. */
size_t pb_hub_connections(const struct pb_hub *h);
/* Users with at least one logged-in connection. */
size_t pb_hub_users(const struct pb_hub *h);

#endif
