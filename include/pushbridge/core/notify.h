/* The service manager's notify protocol (sd_notify(3)), spoken directly: one
 * datagram per state change to $NOTIFY_SOCKET, no libsystemd. Without
 * NOTIFY_SOCKET every call is a no-op, so the bridge runs the same way under
 * systemd (Type=notify), in a container or from a shell. Loop thread only. */
#ifndef PB_NOTIFY_H
#define PB_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Owned by the server; pb_notify_close() releases the socket. */
struct pb_notify {
    int fd;                   /* -1: NOTIFY_SOCKET not set, nothing is sent */
    struct sockaddr_un addr;  /* the manager's socket ('@' names: abstract) */
    socklen_t addrlen;
    int64_t watchdog_usec;    /* WATCHDOG_USEC for this process; 0 = no watchdog */
    int ready_sent;           /* READY=1 goes once */
    int send_failed;          /* a failed send was logged (once, until one succeeds) */
    char status[256];         /* last STATUS= sent, so only changes are sent */
};

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from envp (NULL-terminated,
 * like environ). Returns 0, or -1 with errstr naming the variable when one is set
 * but unusable (a service manager waiting for READY=1 would kill us anyway). */
int pb_notify_open(struct pb_notify *n, char *const *envp, char *errstr, size_t errlen);

/* Sends one message ("READY=1", "WATCHDOG=1", "STOPPING=1", ...) without
 * blocking. Returns 0 when sent or when there is nobody to tell, -1 otherwise
 * (logged once until a send succeeds again). */
int pb_notify_send(struct pb_notify *n, const char *msg);

/* Sends READY=1 the first time it is called; later calls do nothing. */
void pb_notify_ready(struct pb_notify *n, const char *status);

/* Sends STATUS=text if it differs from the last one sent. */
void pb_notify_status(struct pb_notify *n, const char *text);

/* Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
 * advises; 0 when the manager asked for no watchdog. */
double pb_notify_watchdog_interval(const struct pb_notify *n);

void pb_notify_close(struct pb_notify *n);

#endif
