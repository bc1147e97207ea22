/* Listening sockets and their accept loop (see listener.h for the why).
 * The spare descriptor is the point: without it a listener whose backlog
 * holds connections while the process is out of descriptors stays readable
 * for ever, and the loop spins at 100% CPU logging the same error. */
#include "pushbridge/core/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pushbridge/core/config.h"
#include "pushbridge/core/log.h"
#include "pushbridge/core/metrics.h"

/* Accept failures (EMFILE, ENFILE, ENOBUFS) are logged once per this. */
#define ACCEPT_LOG_INTERVAL_MS 10000
/* How long accepting pauses once out of descriptors. */
#define PAUSE_S 0.1
/* Connections accepted per wake-up, so one listener cannot starve the loop. */
#define ACCEPT_BATCH 64

struct pb_listener {
    struct ev_loop *loop;
    const char *name;
    int fd, port;
    int spare_fd; /* kept to accept-and-close with when out of descriptors */
    ev_io accept_w;
    ev_timer pause_w; /* accepting paused after EMFILE */
    pb_accept_fn fn;
    void *ud;
    int64_t log_ms;
    uint64_t failures;
};

static void accept_failed(struct pb_listener *l, int err)
{
    l->failures++;
    int64_t now = pb_monotonic_ms();
    if (now - l->log_ms < ACCEPT_LOG_INTERVAL_MS)
        return;
    l->log_ms = now;
    pb_warn("%s: accept failed (%s); %llu failure(s) so far", l->name, strerror(err),
            (unsigned long long)l->failures);
}

/* Out of descriptors: give back the spare, accept and close the waiting
 * connection with it, take the spare again. */
static void shed_one(struct pb_listener *l)
{
    if (l->spare_fd < 0)
        return;
    close(l->spare_fd);
    int fd = accept(l->fd, NULL, NULL);
    if (fd >= 0)
        close(fd);
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void resume_accepting(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct pb_listener *l = w->data;
    ev_io_start(loop, &l->accept_w);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct pb_listener *l = w->data;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            /* No Nagle on either listener: a frame or an answer is one small
             * write, and one sent while the last is unacknowledged would wait
             * for that ACK (a round trip, or the client's delayed ACK: 40 ms
             * on Linux, 200 ms on Windows). lws sets it only on sockets it
             * accepts itself, and the public ones are adopted. */
            int one = 1;
            if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
                pb_debug("%s: TCP_NODELAY: %s", l->name, strerror(errno));
            l->fn(l->ud, fd, &peer);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EAGAIN)
            return;
        int err = errno;
        accept_failed(l, err);
        if (err == EMFILE || err == ENFILE) {
            shed_one(l);
            /* Still readable: pause instead of spinning on it. */
            ev_io_stop(loop, &l->accept_w);
            ev_timer_start(loop, &l->pause_w);
        }
        return;
    }
}

static int listen_socket(const char *name, const char *addr, int *port, char *errstr,
                         size_t errlen)
{
    char host[256];
    if (pb_config_split_hostport(addr, host, sizeof(host), port)) {
        snprintf(errstr, errlen, "%s: cannot parse address %s", name, addr);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)*port);
        sl = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)*port);
        sl = sizeof(*v6);
    } else {
        snprintf(errstr, errlen, "%s: %s is not an IP address", name, host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 1024)) {
        snprintf(errstr, errlen, "%s: cannot listen on %s: %s", name, addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *port = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    return fd;
}

struct pb_listener *pb_listener_new(struct ev_loop *loop, const char *name, const char *addr,
                                    pb_accept_fn fn, void *ud, char *errstr, size_t errlen)
{
    struct pb_listener *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    l->loop = loop;
    l->name = name;
    l->fn = fn;
    l->ud = ud;
    l->log_ms = -ACCEPT_LOG_INTERVAL_MS;
    l->fd = listen_socket(name, addr, &l->port, errstr, errlen);
    if (l->fd < 0) {
        free(l);
        return NULL;
    }
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ev_io_init(&l->accept_w, accept_cb, l->fd, EV_READ);
    l->accept_w.data = l;
    ev_timer_init(&l->pause_w, resume_accepting, PAUSE_S, 0.);
    l->pause_w.data = l;
    ev_io_start(loop, &l->accept_w);
    return l;
}

int pb_listener_port(const struct pb_listener *l)
{
    return l->port;
}

uint64_t pb_listener_failures(const struct pb_listener *l)
{
    return l->failures;
}

void pb_listener_free(struct pb_listener *l)
{
    if (!l)
        return;
    ev_io_stop(l->loop, &l->accept_w);
    ev_timer_stop(l->loop, &l->pause_w);
    close(l->fd);
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    free(l);
}
