/* A listening TCP socket on the loop, with the accept discipline both
 * listeners need under a descriptor flood (libuv's uv__emfile_trick, nginx's
 * accept pause): a bounded batch per wake-up; out of descriptors, a spare
 * descriptor accepts and closes the waiting connection and accepting pauses
 * for 100 ms instead of spinning on a listener that stays readable; failures
 * are logged once per 10 s with a count. Loop thread only. */
#ifndef PB_LISTENER_H
#define PB_LISTENER_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

/* Called with each accepted socket (non-blocking, close-on-exec), which it
 * now owns, and the peer's address. */
typedef void (*pb_accept_fn)(void *ud, int fd, const struct sockaddr_storage *peer);

/* Owned by whoever made it; freed by pb_listener_free. */
struct pb_listener;

/* Listens on addr ("HOST:PORT", an IP literal; port 0 = any). name is the
 * setting, for messages ("listen.public"). NULL with errstr on failure. */
struct pb_listener *pb_listener_new(struct ev_loop *loop, const char *name, const char *addr,
                                    pb_accept_fn fn, void *ud, char *errstr, size_t errlen);
int pb_listener_port(const struct pb_listener *l);
/* Accept failures (EMFILE and the like) so far. */
uint64_t pb_listener_failures(const struct pb_listener *l);
void pb_listener_free(struct pb_listener *l);

#endif
