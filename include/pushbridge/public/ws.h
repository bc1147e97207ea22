/* The WebSocket transport (ws.c): the upgrade's checks, login, the incoming
 * message limits, and writing a connection's queue to its socket. Runs on
 * the worker whose lws context holds the connection. */
#ifndef PB_WS_H
#define PB_WS_H

#include <libwebsockets.h>

#include "pushbridge/core/config.h"
#include "pushbridge/hub/conns.h"

struct pb_worker;
struct pb_pss;

int pb_ws_callback(struct pb_worker *w, struct lws *wsi, enum lws_callback_reasons reason,
                   struct pb_pss *pss, void *in, size_t len);
/* How the queue reaches a WebSocket (want_write, kill, cut, started,
 * refused): every connection's default hooks. */
extern const struct pb_conn_hooks pb_ws_conn_hooks;
/* ws.allowed_origins admits this request's Origin (also used by sse.c). */
int pb_ws_origin_allowed(const struct pb_config *cfg, struct lws *wsi);
/* Writes the frames queued since the loop last slept, straight to the
 * sockets that take them (called before the worker's loop sleeps). */
void pb_ws_flush_pending(struct pb_worker *w);

#endif
