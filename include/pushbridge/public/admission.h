/* Admission control on the public listener: which accepted connections the
 * bridge takes on before they have logged in. A connection is *pending*
 * from accept until its login succeeds (or it closes); pending connections
 * are bounded in total (ws.max_pending) and per client address
 * (ws.max_pending_per_ip), and no connection is taken once the descriptors
 * left would not cover the rest of the process (the internal listener,
 * Kafka, logs). Over a bound the socket is closed at once: a flood of
 * half-open upgrades costs an accept and a close each, never the process.
 * Accepts come from the main loop, releases from any worker: thread-safe
 * (one lock, held for a few pointer updates). */
#ifndef PB_ADMISSION_H
#define PB_ADMISSION_H

#include <stddef.h>
#include <sys/socket.h>

#include "pushbridge/core/config.h"
#include "pushbridge/core/metrics.h"

struct pb_admission;

/* Sized from the open-file limit now in force. NULL on OOM. */
struct pb_admission *pb_admission_new(const struct pb_config *cfg, struct pb_metrics *m);
void pb_admission_free(struct pb_admission *a);

/* A connection was accepted on fd from peer: 0 to take it (it is now
 * pending), or -1 to close it at once (counted, logged once per 10 s). */
int pb_admission_accept(struct pb_admission *a, int fd, const struct sockaddr_storage *peer);
/* fd logged in, or closed: it is no longer pending (no-op when it was not). */
void pb_admission_release(struct pb_admission *a, int fd);
size_t pb_admission_pending(struct pb_admission *a);

#endif
