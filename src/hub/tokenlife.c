/* Token lifetime (SPEC 2, "Token lifetime"). Times are wall clock because
 * exp is: a token is valid until a date, not for a duration. The refresh is
 * asked PB_TOKEN_REFRESH_AHEAD_MS before exp, or at half the remaining life
 * when that is shorter, so a short-lived token still leaves the client time
 * to answer. Seed-form clients receive each event's data alone and could not
 * tell a refresh request from data, so they are never asked: they are closed
 * with 4004 at exp + leeway and reconnect with a new token (they may still
 * send a refresh message of their own before that). */
#include "pushbridge/hub/tokenlife.h"

#include <stdio.h>

#include "pushbridge/event/frame.h"
#include "pushbridge/core/log.h"

void pb_token_schedule(struct pb_conn *c, int64_t now_ms)
{
    c->refresh_asked = 0;
    if (!c->ident.exp_ms)
        return;
    int64_t left = c->ident.exp_ms > now_ms ? c->ident.exp_ms - now_ms : 0;
    int64_t ahead = left / 2 < PB_TOKEN_REFRESH_AHEAD_MS ? left / 2 : PB_TOKEN_REFRESH_AHEAD_MS;
    c->refresh_at_ms = c->ident.exp_ms - ahead;
}

int64_t pb_token_expires_in(const struct pb_conn *c, int64_t now_ms)
{
    return c->ident.exp_ms > now_ms ? c->ident.exp_ms - now_ms : 0;
}

static void ask_refresh(struct pb_conns *h, struct pb_conn *c, int64_t now_ms)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "{\"type\":\"refresh\",\"expires_in_ms\":%lld}",
                     (long long)pb_token_expires_in(c, now_ms));
    struct pb_frame *f = pb_frame_from(text, (size_t)n);
    if (!f)
        return; /* out of memory: the next sweep asks again */
    /* Outside the byte bound, like a ping: the request must not be what
     * makes a busy client slow, and it must not evict an event. */
    if (pb_conns_send_unbounded(h, c, f))
        c->refresh_asked = 1;
    pb_frame_unref(f);
}

int pb_token_check(struct pb_conns *h, struct pb_conn *c, int64_t now_ms)
{
    if (!c->authed || c->closing || !c->ident.exp_ms)
        return 0;
    int64_t leeway_ms = pb_conns_config(h)->auth_jwt_leeway_s * 1000;
    if (now_ms >= c->ident.exp_ms + leeway_ms) {
        pb_info("connection %llu of user %s: token expired %lld ms ago: closing with 4004",
                (unsigned long long)c->id, c->ident.user,
                (long long)(now_ms - c->ident.exp_ms));
        pb_conns_close(h, c, PB_CLOSE_TOKEN_EXPIRED, "token expired");
        return 1;
    }
    if (!c->refresh_asked && now_ms >= c->refresh_at_ms && c->ident.form == PB_FORM_NATIVE)
        ask_refresh(h, c, now_ms);
    return 0;
}
