/* WebSocket keep-alive: a ping to every connection quiet for
 * ws.ping_interval_ms, a cut for one silent for ws.idle_timeout_ms, and the
 * slow-client check of queues held over their soft bound. One sweep a second
 * over the hub's connections. Loop thread only. */
#ifndef PB_KEEPALIVE_H
#define PB_KEEPALIVE_H

#include <stdint.h>

#include "pushbridge/hub/conns.h"

/* Pings the quiet connections and cuts the silent ones, as of now_ms
 * (monotonic). Returns the number cut. */
long pb_keepalive_sweep(struct pb_conns *h, int64_t now_ms);

#endif
