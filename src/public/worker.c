/* Event-loop workers (worker.h): the thread, the inbox and what each message
 * does, and the requests a worker's transports make of the hub. The
 * transports (ws.c, sse.c) stay as they were on one loop; what changed is
 * that a login and a close are decided by the hub, which may be on another
 * thread, so both are messages here. */
#include "pushbridge/public/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pushbridge/core/log.h"
#include "pushbridge/hub/keepalive.h"
#include "pushbridge/public/admission.h"

#define TICK_S 1.0

static void handle(struct pb_worker *w, struct pb_to_worker *msg);

static void inbox_run(struct pb_handoff_item *it, size_t n, void *ud)
{
    (void)n;
    struct pb_worker *w = ud;
    while (it) {
        struct pb_handoff_item *next = it->next;
        handle(w, (struct pb_to_worker *)it);
        it = next;
    }
}

/* The frames of a message go to c's queue unless c is gone meanwhile. A
 * frame the queue refuses is the slow-client policy's to act on (conns.c):
 * nothing more to do here, and the hub counted the frames when it handed
 * them over. */
static void enqueue_items(struct pb_worker *w, struct pb_to_worker *msg)
{
    for (size_t i = 0; i < msg->n; i++) {
        struct pb_conn *c = msg->items[i].conn;
        if (!c->closing && c->authed)
            (void)pb_conns_send(w->conns, c, msg->items[i].frame);
    }
}

static void adopt(struct pb_worker *w, int fd)
{
    if (!lws_adopt_socket_vhost(w->vh_public, fd)) { /* lws closed fd */
        pb_admission_release(w->env.admission, fd);
        PB_COUNT(w->sockets_gone);
    }
}

static void handle(struct pb_worker *w, struct pb_to_worker *msg)
{
    struct pb_conn *c = msg->conn;
    switch (msg->type) {
    case PB_TW_FRAMES:
        enqueue_items(w, msg);
        break;
    case PB_TW_START:
        /* A connection that closed meanwhile gets nothing: its release
         * follows. */
        if (c->closing)
            break;
        c->authed = 1;
        if (c->hooks->started)
            c->hooks->started(c);
        enqueue_items(w, msg);
        break;
    case PB_TW_REFUSED:
        if (!c->closing && c->hooks->refused)
            c->hooks->refused(c);
        break;
    case PB_TW_RELEASE:
        pb_conns_free_conn(w->conns, c);
        break;
    case PB_TW_ADOPT:
        adopt(w, msg->fd);
        break;
    case PB_TW_CLOSE_ALL:
        pb_conns_close_all(w->conns, PB_CLOSE_GOING_AWAY, "server shutting down");
        /* Outside an lws callback: let lws look at its writable sockets. */
        lws_cancel_service(w->ctx);
        break;
    case PB_TW_STOP:
        ev_break(w->loop, EVBREAK_ALL);
        break;
    }
    pb_to_worker_free(msg);
}

void pb_worker_post(struct pb_worker *w, struct pb_to_worker *msg)
{
    if (w->threaded) {
        /* Weighed by its frames: the backlog bound counts frames. */
        pb_handoff_push_weighted(&w->inbox, &msg->link, msg->n);
        return;
    }
    if (msg->type == PB_TW_ADOPT) {
        /* The acceptor is this loop: no message needed. */
        adopt(w, msg->fd);
        pb_to_worker_free(msg);
        return;
    }
    handle(w, msg);
}

static struct pb_to_hub *to_hub_new(enum pb_to_hub_type type, struct pb_member *mb);

/* A logged-in connection is closing: the hub hands it nothing more. Lost
 * on OOM, which costs only frames queued to nobody until the close. */
static void tell_closing(void *ud, struct pb_conn *c)
{
    struct pb_worker *w = ud;
    struct pb_to_hub *msg = to_hub_new(PB_TH_CLOSING, c->member);
    if (msg)
        w->env.to_hub(w->env.ud, w, msg);
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_worker *w = t->data;
    int64_t now = pb_monotonic_ms();
    __atomic_store_n(&w->turned_ms, now, __ATOMIC_RELAXED);
    pb_keepalive_sweep(w->conns, now);
    /* lws's evlib_ev plugin (4.1) re-arms its timer with ev_timer_set on an
     * active watcher, which libev ignores: waking lws once a second bounds
     * the delay of its timeouts to a second (see server.c). */
    lws_cancel_service(w->ctx);
}

static void flush_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    struct pb_worker *w = p->data;
    w->env.flush(w);
}

int pb_worker_init(struct pb_worker *w, int index, const struct pb_worker_env *env,
                   struct ev_loop *loop, struct lws_context *ctx, char *errstr, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    w->env = *env;
    w->cfg = env->cfg;
    w->loop = loop;
    w->ctx = ctx;
    w->threaded = index > 0;
    w->vhd.w = w;
    w->vhd.is_public = 1;
    if (w->threaded) {
        w->metrics = calloc(1, sizeof(*w->metrics));
        if (!w->metrics) {
            snprintf(errstr, errlen, "worker %d: out of memory", index);
            return -1;
        }
        pb_metrics_init(w->metrics);
        w->own_metrics = 1;
        if (pb_handoff_init(&w->inbox, loop, inbox_run, w, errstr, errlen))
            return -1;
    } else {
        w->metrics = env->metrics; /* the main loop's own: no copy to merge */
    }
    w->conns = pb_conns_new(env->cfg, w->metrics, env->shared, env->hooks);
    if (!w->conns) {
        snprintf(errstr, errlen, "worker %d: out of memory", index);
        return -1;
    }
    pb_conns_on_closing(w->conns, tell_closing, w);
    w->turned_ms = pb_monotonic_ms();
    ev_timer_init(&w->tick_w, tick_cb, TICK_S, TICK_S);
    ev_prepare_init(&w->flush_w, flush_cb);
    w->tick_w.data = w->flush_w.data = w;
    ev_timer_start(loop, &w->tick_w);
    ev_prepare_start(loop, &w->flush_w);
    return 0;
}

static void *run(void *arg)
{
    struct pb_worker *w = arg;
    char name[16]; /* the kernel's limit; bench/run.sh reads each worker's CPU by it */
    snprintf(name, sizeof name, "pb-worker-%d", w->index);
    (void)pthread_setname_np(pthread_self(), name); /* a label for top/perf: failing is harmless */
    /* The watchdog counts from here: the main thread's set-up between this
     * worker's init and its start (Kafka, OIDC) is not this loop stalling. */
    __atomic_store_n(&w->turned_ms, pb_monotonic_ms(), __ATOMIC_RELAXED);
    ev_run(w->loop, 0);
    /* The context goes on the thread that served it, while its loop is
     * still there: lws frees a TLS vhost's state only when its own loop
     * finishes closing it (one more turn). Every close it reports reaches
     * the hub through its inbox. */
    lws_context_destroy(w->ctx);
    w->ctx = NULL;
    ev_run(w->loop, EVRUN_NOWAIT);
    return NULL;
}

int pb_worker_start(struct pb_worker *w, char *errstr, size_t errlen)
{
    if (!w->threaded)
        return 0;
    int rc = pthread_create(&w->thread, NULL, run, w);
    if (rc) {
        snprintf(errstr, errlen, "worker %d: cannot start its thread: %s", w->index,
                 strerror(rc));
        w->thread = 0; /* nothing to join; its loop and context are still freed */
        return -1;
    }
    return 0;
}

/* The hub is told of every close it has not heard of (a connection that
 * logged in but was still open when its loop stopped). */
static void tell_hub_of_open(struct pb_worker *w)
{
    struct pb_conn *next;
    for (struct pb_conn *c = pb_conns_first(w->conns); c; c = next) {
        next = c->next; /* worker 0: the hub's release frees c at once */
        if (c->member && !c->closed_sent)
            pb_worker_closed(w, c);
    }
}

void pb_worker_destroy(struct pb_worker *w)
{
    if (!w->conns && !w->metrics)
        return;
    if (w->thread) {
        struct pb_to_worker *stop = pb_to_worker_new(PB_TW_STOP, 0);
        if (stop)
            pb_handoff_push(&w->inbox, &stop->link);
        int rc = pthread_join(w->thread, NULL);
        if (rc)
            pb_error("worker %d: pthread_join: %s", w->index, strerror(rc));
        w->thread = 0;
    }
    if (w->threaded) {
        ev_timer_stop(w->loop, &w->tick_w);
        ev_prepare_stop(w->loop, &w->flush_w);
        if (w->ctx)
            lws_context_destroy(w->ctx); /* closes every wsi: the hub hears of each */
        w->ctx = NULL;
        if (w->conns)
            tell_hub_of_open(w);
        for (struct pb_handoff_item *it = pb_handoff_close(&w->inbox); it;) {
            struct pb_handoff_item *next = it->next;
            struct pb_to_worker *msg = (struct pb_to_worker *)it;
            if (msg->type == PB_TW_ADOPT)
                close(msg->fd);
            pb_to_worker_free(msg);
            it = next;
        }
        ev_loop_destroy(w->loop);
    } else if (w->loop) {
        ev_timer_stop(w->loop, &w->tick_w);
        ev_prepare_stop(w->loop, &w->flush_w);
        if (w->conns)
            tell_hub_of_open(w);
    }
    pb_conns_free(w->conns);
    w->conns = NULL;
    if (w->own_metrics)
        free(w->metrics);
    w->metrics = NULL;
}

/* ---- requests to the hub ------------------------------------------------- */

static struct pb_to_hub *to_hub_new(enum pb_to_hub_type type, struct pb_member *mb)
{
    struct pb_to_hub *msg = calloc(1, sizeof(*msg));
    if (msg) {
        msg->type = type;
        msg->member = mb;
    }
    return msg;
}

int pb_worker_login(struct pb_worker *w, struct pb_conn *c, struct pb_identity *id,
                    const char *resume)
{
    struct pb_member *mb = calloc(1, sizeof(*mb));
    struct pb_to_hub *msg = to_hub_new(PB_TH_LOGIN, mb);
    char *user = strdup(id->user);
    char *res = resume ? strdup(resume) : NULL;
    if (!mb || !msg || !user || (resume && !res)) {
        free(mb);
        free(msg);
        free(user);
        free(res);
        pb_identity_clear(id);
        return -1;
    }
    /* The worker keeps who the connection is (logs, refresh, exp); the
     * hub keeps the identity itself (groups, filter) in the member. */
    c->ident.user = user;
    c->ident.form = id->form;
    c->ident.exp_ms = id->exp_ms;
    mb->conn = c;
    mb->worker = w->index;
    mb->conn_id = c->id;
    mb->ident = *id;
    memset(id, 0, sizeof(*id));
    c->member = mb;
    msg->resume = res;
    /* Authenticated: ws.max_pending bounds sockets that have not logged in,
     * so this one stops counting now, not when the hub answers, which a
     * resume during the rebuild at start waits for (hub/held.h). */
    pb_admission_release(w->env.admission, lws_get_socket_fd(c->transport));
    w->env.to_hub(w->env.ud, w, msg);
    return 0;
}

void pb_worker_closed(struct pb_worker *w, struct pb_conn *c)
{
    if (!c->member) {
        pb_conns_free_conn(w->conns, c);
        return;
    }
    if (c->closed_sent)
        return;
    struct pb_to_hub *msg = to_hub_new(PB_TH_CLOSED, c->member);
    if (!msg) {
        /* The hub keeps a member it will not hear of again: it is freed
         * with the hub. The connection stays too: a frame may name it. */
        pb_error("out of memory reporting the close of connection %llu",
                 (unsigned long long)c->id);
        pb_conns_detach(w->conns, c);
        return;
    }
    c->closed_sent = 1;
    pb_conns_detach(w->conns, c);
    w->env.to_hub(w->env.ud, w, msg); /* worker 0: the release frees c at once */
}

void pb_worker_groups(struct pb_worker *w, struct pb_conn *c, char **groups, size_t ngroups)
{
    struct pb_to_hub *msg = c->member ? to_hub_new(PB_TH_GROUPS, c->member) : NULL;
    if (!msg) {
        for (size_t i = 0; i < ngroups; i++)
            free(groups[i]);
        free(groups);
        return;
    }
    msg->groups = groups;
    msg->ngroups = ngroups;
    w->env.to_hub(w->env.ud, w, msg);
}
