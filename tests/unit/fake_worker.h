/* The worker side of the hub for unit tests: one pb_conns, and the hub's
 * messages applied to it at once (as worker 0 takes them on the main loop:
 * worker.c), so a test logs in, delivers and looks at the queues straight
 * away. Include once per test file. */
#ifndef PB_TEST_FAKE_WORKER_H
#define PB_TEST_FAKE_WORKER_H

#include <stdlib.h>
#include <string.h>

#include "pushbridge/hub/conns.h"
#include "pushbridge/hub/hub.h"

static struct pb_conn *fake_last_refused;
/* 0: a START's frames (the welcome, the snapshot) are dropped, for tests of
 * what comes after them. */
static int fake_start_frames = 1;
/* Messages of frames (PB_TW_FRAMES) posted so far: the hand-offs a
 * threaded worker would be woken for. */
static int fake_frame_posts;

static void fake_post(void *ud, int worker, struct pb_to_worker *msg)
{
    struct pb_conns *cs = ud;
    (void)worker;
    struct pb_conn *c = msg->conn;
    switch (msg->type) {
    case PB_TW_START:
        if (!c->closing) {
            c->authed = 1;
            if (c->hooks->started)
                c->hooks->started(c);
        }
        if (!fake_start_frames)
            break;
        /* its frames follow */
        __attribute__((fallthrough));
    case PB_TW_FRAMES:
        if (msg->type == PB_TW_FRAMES)
            fake_frame_posts++;
        for (size_t i = 0; i < msg->n; i++)
            if (!msg->items[i].conn->closing && msg->items[i].conn->authed)
                (void)pb_conns_send(cs, msg->items[i].conn, msg->items[i].frame);
        break;
    case PB_TW_REFUSED:
        fake_last_refused = c;
        break;
    case PB_TW_RELEASE:
        pb_conns_free_conn(cs, c);
        break;
    default:
        break;
    }
    pb_to_worker_free(msg);
}

static inline struct pb_hub_out fake_out(struct pb_conns *cs)
{
    return (struct pb_hub_out){.post = fake_post, .ud = cs, .nworkers = 1};
}

/* A logged-in connection is closing (a slow client, a token that expired):
 * the hub hears it at once, as from worker 0 (worker.c's tell_closing), and
 * hands it nothing more. Set with pb_conns_on_closing(cs, fake_tell_closing,
 * hub). */
static inline void fake_tell_closing(void *ud, struct pb_conn *c)
{
    struct pb_to_hub *msg = calloc(1, sizeof(*msg));
    if (!msg)
        abort();
    msg->type = PB_TH_CLOSING;
    msg->member = c->member;
    pb_hub_receive(ud, msg);
}

/* Asks the hub to start c as id (moved) with resume (or NULL), as
 * pb_worker_login does: 0 when it started, -1 when the hub refused. */
static inline int fake_login(struct pb_hub *h, struct pb_conn *c, struct pb_identity *id,
                      const char *resume)
{
    struct pb_member *mb = calloc(1, sizeof(*mb));
    struct pb_to_hub *msg = calloc(1, sizeof(*msg));
    if (!mb || !msg)
        abort();
    c->ident.user = strdup(id->user);
    c->ident.form = id->form;
    c->ident.exp_ms = id->exp_ms;
    mb->conn = c;
    mb->conn_id = c->id;
    mb->ident = *id;
    memset(id, 0, sizeof(*id));
    c->member = mb;
    msg->type = PB_TH_LOGIN;
    msg->member = mb;
    msg->resume = resume ? strdup(resume) : NULL;
    fake_last_refused = NULL;
    pb_hub_receive(h, msg);
    return fake_last_refused == c ? -1 : 0;
}

/* The transport closed c: the hub forgets it and releases it (freed). */
static inline void fake_close(struct pb_hub *h, struct pb_conns *cs, struct pb_conn *c)
{
    if (!c)
        return;
    if (!c->member) {
        pb_conns_free_conn(cs, c);
        return;
    }
    struct pb_to_hub *msg = calloc(1, sizeof(*msg));
    if (!msg)
        abort();
    c->closed_sent = 1;
    pb_conns_detach(cs, c);
    msg->type = PB_TH_CLOSED;
    msg->member = c->member;
    pb_hub_receive(h, msg);
}

#endif
