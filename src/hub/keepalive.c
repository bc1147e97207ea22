/* WebSocket keep-alive, as one sweep a second over every connection: O(n)
 * per second whatever the traffic. lws's own policy re-sorted a timer list
 * (a sorted linked list) on every message received and every ping, O(n)
 * each: at a login storm of 15,000 clients that list took two thirds of the
 * loop's CPU (docs/PERFORMANCE.md), and at 100,000 connections their pings
 * alone would have filled it. The ping is a queued frame like any other, so
 * it can never cut into a frame being written. The same sweep ends the grace
 * period of queues over ws.queue_max_bytes that get no further event, and
 * the token lifetime of every logged-in connection (tokenlife.c). */
#include "pushbridge/hub/keepalive.h"

#include "pushbridge/event/frame.h"
#include "pushbridge/core/log.h"
#include "pushbridge/core/metrics.h"
#include "pushbridge/hub/tokenlife.h"

long pb_keepalive_sweep(struct pb_conns *h, int64_t now_ms)
{
    /* One ping frame for the whole sweep, shared like an event's. Its
     * payload is not empty because lws 4.1 reports no empty pong (the
     * answer echoes the payload), and a pong is what proves the peer alive. */
    static const unsigned char ping[] = {0x89, 0x02, 'p', 'b'};
    const struct pb_config *cfg = pb_conns_config(h);
    struct pb_frame *f = NULL;
    long cut = 0;
    int64_t wall_ms = pb_now_ms(); /* token exp is a date */
    for (struct pb_conn *c = pb_conns_first(h); c; c = c->next) {
        pb_conns_police(h, c); /* the soft queue bound's grace period, while here */
        if (c->closing || pb_token_check(h, c, wall_ms))
            continue;
        int64_t quiet = now_ms - c->last_rx_ms;
        if (quiet >= cfg->ws_idle_timeout_ms) {
            pb_debug("connection %llu: nothing from the client for %lld ms: cut",
                     (unsigned long long)c->id, (long long)quiet);
            pb_conns_cut(h, c); /* unlinked only later, by the transport */
            cut++;
            continue;
        }
        if (quiet < cfg->ws_ping_interval_ms || now_ms - c->last_ping_ms < cfg->ws_ping_interval_ms)
            continue;
        if (!f && !(f = pb_frame_raw(ping, sizeof(ping))))
            break; /* out of memory: the next sweep tries again */
        if (pb_conns_send_unbounded(h, c, f))
            c->last_ping_ms = now_ms;
    }
    pb_frame_unref(f);
    return cut;
}
