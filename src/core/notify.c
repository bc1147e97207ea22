/* sd_notify(3)'s protocol without libsystemd: the manager passes a datagram
 * socket's path in NOTIFY_SOCKET ('@' first: a Linux abstract name) and reads
 * newline-separated KEY=VALUE lines from it. Sends never block the loop
 * (MSG_DONTWAIT): a manager that does not read loses a STATUS line, never the
 * loop's time; the watchdog ping it would miss is the manager's own doing. */
#include "pushbridge/core/notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pushbridge/core/log.h"

static const char *env_get(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return *envp + n + 1;
    return NULL;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

/* WATCHDOG_USEC applies to us only if WATCHDOG_PID is unset or names us: a
 * variable inherited from a parent service is not our watchdog. */
static int watchdog_init(struct pb_notify *n, char *const *envp, char *errstr, size_t errlen)
{
    const char *usec = env_get(envp, "WATCHDOG_USEC");
    const char *pid = env_get(envp, "WATCHDOG_PID");
    uint64_t v, p;
    if (!usec)
        return 0;
    if (parse_u64(usec, &v) || v == 0) {
        snprintf(errstr, errlen, "WATCHDOG_USEC: expected a positive number of microseconds, "
                 "got \"%.32s\"", usec);
        return -1;
    }
    if (pid && (parse_u64(pid, &p) || p == 0)) {
        snprintf(errstr, errlen, "WATCHDOG_PID: expected a process id, got \"%.32s\"", pid);
        return -1;
    }
    if (pid && p != (uint64_t)getpid())
        return 0;
    n->watchdog_usec = (int64_t)(v > INT64_MAX ? INT64_MAX : v);
    return 0;
}

int pb_notify_open(struct pb_notify *n, char *const *envp, char *errstr, size_t errlen)
{
    memset(n, 0, sizeof(*n));
    n->fd = -1;
    const char *path = env_get(envp, "NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    if (path[0] != '/' && path[0] != '@') {
        snprintf(errstr, errlen,
                 "NOTIFY_SOCKET: expected an absolute path or an @abstract name, got \"%.64s\"",
                 path);
        return -1;
    }
    size_t len = strlen(path);
    if (len >= sizeof(n->addr.sun_path)) {
        snprintf(errstr, errlen, "NOTIFY_SOCKET: %zu bytes is longer than a socket path (%zu)",
                 len, sizeof(n->addr.sun_path) - 1);
        return -1;
    }
    if (watchdog_init(n, envp, errstr, errlen))
        return -1;
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, path, len);
    /* An abstract name is the bytes after a leading NUL, exactly len of them:
     * the address length counts no terminator. A path keeps its NUL. */
    if (path[0] == '@') {
        n->addr.sun_path[0] = '\0';
        n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (n->fd < 0) {
        snprintf(errstr, errlen, "NOTIFY_SOCKET: cannot create a datagram socket: %s",
                 strerror(errno));
        return -1;
    }
    return 0;
}

int pb_notify_send(struct pb_notify *n, const char *msg)
{
    if (n->fd < 0)
        return 0;
    ssize_t w = sendto(n->fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL,
                       (const struct sockaddr *)&n->addr, n->addrlen);
    if (w < 0) {
        if (!n->send_failed)
            pb_warn("notify: cannot send \"%.40s\" to NOTIFY_SOCKET %s%s: %s", msg,
                    n->addr.sun_path[0] ? "" : "@", n->addr.sun_path + !n->addr.sun_path[0],
                    strerror(errno));
        n->send_failed = 1;
        return -1;
    }
    n->send_failed = 0;
    return 0;
}

void pb_notify_ready(struct pb_notify *n, const char *status)
{
    if (n->ready_sent)
        return;
    /* READY=1 and its STATUS in one datagram: the manager sees them together. */
    char msg[sizeof(n->status) + 32];
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
    if (pb_notify_send(n, msg) == 0) {
        n->ready_sent = 1;
        snprintf(n->status, sizeof(n->status), "%s", status);
        if (n->fd >= 0)
            pb_info("notify: READY=1 sent to the service manager");
    }
}

void pb_notify_status(struct pb_notify *n, const char *text)
{
    if (n->fd < 0 || strncmp(n->status, text, sizeof(n->status) - 1) == 0)
        return;
    char msg[sizeof(n->status) + 16];
    snprintf(msg, sizeof(msg), "STATUS=%s", text);
    if (pb_notify_send(n, msg) == 0)
        snprintf(n->status, sizeof(n->status), "%s", text);
}

double pb_notify_watchdog_interval(const struct pb_notify *n)
{
    return n->fd >= 0 && n->watchdog_usec ? (double)n->watchdog_usec / 2e6 : 0.;
}

void pb_notify_close(struct pb_notify *n)
{
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}
