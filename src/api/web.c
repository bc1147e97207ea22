/* Which listener serves which file of web/ (compiled in: assets.h). The
 * module (its three files) and its types are always public, so an app can
 * import them from the bridge it talks to; the dashboard only when
 * dashboard.enabled (it is a sign-in page, which a production deployment
 * may not want to expose); the operator page only on the internal listener,
 * beside /stats it reads. When one port serves both roles, / is the
 * dashboard if it is on, and the operator page is also at /operator. */
#include "pushbridge/api/web.h"

#include <libwebsockets.h> /* LWSHUMETH_GET */
#include <string.h>

#include "pushbridge/api/assets.h"
#include "pushbridge/api/http.h"

const struct pb_asset *pb_asset_find(const char *path)
{
    for (const struct pb_asset *a = pb_assets; a->path; a++)
        if (strcmp(a->path, path) == 0)
            return a;
    return NULL;
}

/* The client module's files. The entry imports the other two by relative
 * URL, in pages and in the SharedWorker that runs it: without any one of
 * them every page importing /pushbridge.js breaks. */
static const char *const module_files[] = {"/pushbridge.js", "/pushbridge-connection.js",
                                           "/pushbridge-share.js", "/pushbridge.d.ts"};

/* The asset path a request path maps to on this listener, or NULL. */
static const char *asset_for(const struct pb_api_env *env, const char *path)
{
    int dash = env->is_public && env->cfg->dashboard_enabled;
    for (size_t i = 0; env->is_public && i < sizeof module_files / sizeof module_files[0]; i++)
        if (strcmp(path, module_files[i]) == 0)
            return path;
    if (dash && strcmp(path, "/") == 0)
        return "/index.html";
    if (dash && (strcmp(path, "/dashboard.js") == 0 || strcmp(path, "/dashboard.css") == 0))
        return path;
    if (env->is_internal && (strcmp(path, "/") == 0 || strcmp(path, "/operator") == 0))
        return "/operator.html";
    if (env->is_internal && strcmp(path, "/operator.js") == 0)
        return path;
    return NULL;
}

int pb_web_handle(const struct pb_api_env *env, struct pb_http_req *r)
{
    if (r->method != LWSHUMETH_GET)
        return 0; /* the route table answers 405 with Allow */
    const char *name = asset_for(env, r->path);
    const struct pb_asset *a = name ? pb_asset_find(name) : NULL;
    if (!a)
        return 0;
    r->content_type = a->content_type;
    r->etag = a->etag;
    pb_buf_reset(&r->answer);
    if (strcmp(r->if_none_match, a->etag) == 0) {
        r->status = 304; /* the browser's copy is this one */
        return 1;
    }
    r->status = 200;
    pb_buf_append(&r->answer, (const char *)a->data, a->len);
    return 1;
}
