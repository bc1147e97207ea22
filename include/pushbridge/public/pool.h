/* The worker pool (SPEC 11): how many event-loop workers there are, each
 * one's loop, lws context and public vhost, the lws protocol callback that
 * every context shares, the acceptor that hands each admitted socket to the
 * least-loaded worker, and the two directions of messages (hub -> worker,
 * worker -> hub). Part of the server (server.h owns the struct); server.c
 * calls it, never the other way round. Main loop only, but for what the
 * workers call back on their own threads (to_hub, posted messages). */
#ifndef PB_POOL_H
#define PB_POOL_H

#include <ev.h>
#include <libwebsockets.h>
#include <stddef.h>

#include "pushbridge/core/config.h"
#include "pushbridge/core/metrics.h"
#include "pushbridge/hub/hub.h"

struct pb_server;

/* The number of workers `workers` asks for on this machine: 0 means one
 * per online CPU, at most PB_MAX_WORKERS; 1 when the public and internal
 * listeners share an address (the HTTP API stays on the main loop). */
int pb_pool_size(const struct pb_config *cfg);
/* An lws context on loop (lent to lws as a foreign loop): the main loop's,
 * or a worker's. NULL when lws cannot make one. */
struct lws_context *pb_pool_context(const struct pb_config *cfg, struct ev_loop *loop,
                                    int loop_is_main);
/* How the hub reaches the workers (call before pb_hub_new). */
struct pb_hub_out pb_pool_hub_out(struct pb_server *s);

/* The workers, their contexts and public vhosts, the public listener, and
 * the internal listener when lws serves it (vh_internal). s->ctx, s->hub,
 * s->auth and s->admission exist. 0, or -1 with errstr naming the cause. */
int pb_pool_init(struct pb_server *s, char *errstr, size_t errlen);
/* Starts the workers' threads. */
int pb_pool_start(struct pb_server *s, char *errstr, size_t errlen);
/* Shutdown: every worker closes its connections with 1001. */
void pb_pool_close_all(struct pb_server *s);
/* Messages waiting in the fullest worker's inbox (threaded workers). */
size_t pb_pool_backlog(struct pb_server *s);
/* Open connections on every worker. */
size_t pb_pool_connections(const struct pb_server *s);
/* The first threaded worker whose loop has not turned (its 1 s tick) for
 * limit_ms, or -1; *idle_ms says for how long. */
int pb_pool_stalled(const struct pb_server *s, int64_t now, int64_t limit_ms, int64_t *idle_ms);
/* Per-worker gauges, and the workers' counters added to merged (a copy of
 * the server's own, made by the caller). */
void pb_pool_gauges(const struct pb_server *s, struct pb_gauges *g, struct pb_metrics *merged);
/* Stops and frees the workers (joining their threads), closing every
 * connection, then lets the hub hear of every close. Main loop, after it ran. */
void pb_pool_free(struct pb_server *s);

#endif
