/* The HTTP API (internal listener) and the public pages, served from the
 * lws loop. Pushes join Kafka events at pb_hub_deliver(). */
#ifndef PB_HTTP_H
#define PB_HTTP_H

#include <stddef.h>

/* Finds name=value in an application/x-www-form-urlencoded string (a query
 * or a form body) and decodes %XX and '+' into a new buffer (*out, owned by
 * the caller). Returns 0 found, 1 absent, -1 badly escaped or OOM. */
int pb_http_form_value(const char *form, size_t len, const char *name, char **out,
                       size_t *outlen);

/* The same for a query string that lws has already %-decoded: values are
 * copied as they are. */
int pb_http_query_value(const char *query, size_t len, const char *name, char **out,
                        size_t *outlen);

#endif
