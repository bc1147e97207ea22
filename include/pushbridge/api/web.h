/* The browser-facing files: /pushbridge.js (with the modules it imports,
 * /pushbridge-connection.js and /pushbridge-share.js) and /pushbridge.d.ts
 * and the dashboard (public listener, the dashboard when dashboard.enabled),
 * and the operator page (internal listener). Served from memory (assets.h)
 * with an ETag, so a reload costs a 304. Loop thread only. */
#ifndef PB_WEB_H
#define PB_WEB_H

struct pb_api_env;
struct pb_http_req;

/* Answers r when it asks for one of the files this listener serves: 1 when
 * answered, 0 when the request is someone else's (the API routes). */
int pb_web_handle(const struct pb_api_env *env, struct pb_http_req *r);

#endif
