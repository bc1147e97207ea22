/* The lws transport of the HTTP API and pages (http_lws.c): the public
 * listener's requests, and the internal listener's when lws serves it. The
 * server's lws protocol callback (server.c) dispatches the HTTP reasons
 * here: the one arrow that runs back up, from lws's callback table. Loop
 * thread only. */
#ifndef PB_HTTP_LWS_H
#define PB_HTTP_LWS_H

#include <libwebsockets.h>
#include <stddef.h>

struct pb_api_env;
struct pb_http_req;

/* One lws HTTP event for the listener env describes. *reqp is the
 * connection's request slot (in lws's per-session data, zeroed by lws):
 * the request being served, or NULL. Returns what the lws callback returns. */
int pb_http_callback(const struct pb_api_env *env, struct lws *wsi,
                     enum lws_callback_reasons reason, struct pb_http_req **reqp, void *in,
                     size_t len);

#endif
