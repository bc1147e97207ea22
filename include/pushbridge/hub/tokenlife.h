/* Token lifetime (SPEC 2): a connection logged in with a JWT that has exp
 * lives no longer than that token. Native clients are asked for a new one
 * ({"type":"refresh"}) shortly before exp; any connection still on an
 * expired token at exp + auth.jwt_leeway_s is closed with 4004. Checked by
 * the once-a-second keep-alive sweep, O(1) per connection. Loop thread only. */
#ifndef PB_TOKENLIFE_H
#define PB_TOKENLIFE_H

#include <stdint.h>

#include "pushbridge/hub/conns.h"

/* How long before exp the refresh is asked for, at most (else half the
 * token's remaining life). */
#define PB_TOKEN_REFRESH_AHEAD_MS 30000

/* Schedules c's refresh from c->ident.exp_ms, as of now_ms (wall clock):
 * after login and after every accepted refresh. */
void pb_token_schedule(struct pb_conn *c, int64_t now_ms);

/* Milliseconds until c's token expires (0 when it has), for the frames. */
int64_t pb_token_expires_in(const struct pb_conn *c, int64_t now_ms);

/* The sweep's check of one connection as of now_ms (wall clock): sends the
 * refresh request when due, closes with 4004 once the token is past exp
 * plus the leeway. Returns 1 when it closed c. */
int pb_token_check(struct pb_conns *h, struct pb_conn *c, int64_t now_ms);

#endif
