/* The internal listener's own HTTP/1.1 server, on the same libev loop as
 * everything else. Business systems push over keep-alive connections, so
 * this is a hot path: a request is parsed once from the connection's input
 * buffer, handled by http.c (pb_http_handle), and answered with one write;
 * pipelined requests are answered in order, chunked bodies are decoded, and
 * anything ambiguous in the framing is refused with 400 and a close.
 * Loop thread only. */
#ifndef PB_HTTPD_H
#define PB_HTTPD_H

#include <ev.h>
#include <stddef.h>

struct pb_api_env;
struct pb_httpd;

/* Listens on addr (HOST:PORT), on loop, for the routes env serves (env
 * must outlive the httpd). NULL on failure, with errstr naming the cause. */
struct pb_httpd *pb_httpd_new(struct ev_loop *loop, const struct pb_api_env *env,
                              const char *addr, char *errstr, size_t errlen);
/* The port it listens on (useful when addr asked for port 0). */
int pb_httpd_port(const struct pb_httpd *d);
/* Open connections. */
size_t pb_httpd_connections(const struct pb_httpd *d);
/* Closes the listener and every connection. */
void pb_httpd_free(struct pb_httpd *d);

#endif
