/* The files of web/ (the browser module, its types, the dashboard and the
 * operator page), compiled into the binary by cmake/embed_web.cmake so one
 * binary is the whole product. Read-only static data; any thread. */
#ifndef PB_ASSETS_H
#define PB_ASSETS_H

#include <stddef.h>

struct pb_asset {
    const char *path;         /* "/pushbridge.js" */
    const char *content_type; /* from the file name's extension */
    const unsigned char *data;
    size_t len;
    const char *etag;         /* quoted, strong: "\"0123456789abcdef\"" */
};

/* The generated table, ended by an entry with path NULL. */
extern const struct pb_asset pb_assets[];

/* The asset served at this path, or NULL. */
const struct pb_asset *pb_asset_find(const char *path);

#endif
