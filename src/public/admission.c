/* Admission control on the public listener (admission.h). Bookkeeping is
 * by descriptor: lws tells us when a connection closes (CLOSED, CLOSED_HTTP)
 * with its descriptor still set, and a descriptor lws closed without a word
 * is released when the kernel hands the same number out again, which it
 * does first (the lowest free descriptor), so a missed close cannot hold a
 * slot for long. Per-address counts live in a small seeded hash table with
 * at most ws.max_pending entries (an address exists only while it has a
 * pending connection). */
#include "pushbridge/public/admission.h"

#include <pthread.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>

#include "pushbridge/core/log.h"

#define NBUCKETS 4096 /* a power of two */
/* Refusals are logged once per this, with a count. */
#define REFUSED_LOG_INTERVAL_MS 10000
/* Descriptors kept for everything but new public connections: a sixteenth
 * of the limit, at least this many. */
#define MIN_RESERVED_FDS 32

struct peer {
    struct peer *next;
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    uint32_t pending;
};

/* Owned by the server. Accepts come from the main loop, releases from the
 * worker that holds the connection (its login, its close): everything below
 * is under lock, held for a few pointer updates per accept or release. */
struct pb_admission {
    pthread_mutex_t lock;
    const struct pb_config *cfg;
    struct pb_metrics *m;
    struct peer **of_fd; /* per descriptor: its peer while pending, else NULL */
    size_t nfds;
    size_t fd_ceiling; /* descriptors at or above are refused */
    struct peer *buckets[NBUCKETS];
    size_t pending;
    uint64_t seed;
    int64_t log_ms;
    uint64_t logged_refusals; /* refusals already reported */
};

struct pb_admission *pb_admission_new(const struct pb_config *cfg, struct pb_metrics *m)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 24))
        rl.rlim_cur = 1u << 20;
    struct pb_admission *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->nfds = (size_t)rl.rlim_cur;
    /* Untouched pages of this array are never made resident. */
    a->of_fd = calloc(a->nfds, sizeof(*a->of_fd));
    if (!a->of_fd) {
        free(a);
        return NULL;
    }
    size_t reserve = a->nfds / 16 > MIN_RESERVED_FDS ? a->nfds / 16 : MIN_RESERVED_FDS;
    a->fd_ceiling = a->nfds > 2 * reserve ? a->nfds - reserve : a->nfds / 2;
    if (pthread_mutex_init(&a->lock, NULL)) {
        free(a->of_fd);
        free(a);
        return NULL;
    }
    a->cfg = cfg;
    a->m = m;
    a->log_ms = -REFUSED_LOG_INTERVAL_MS;
    if (getrandom(&a->seed, sizeof(a->seed), GRND_NONBLOCK) != sizeof(a->seed))
        a->seed = (uint64_t)(uintptr_t)a;
    return a;
}

void pb_admission_free(struct pb_admission *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < NBUCKETS; i++)
        while (a->buckets[i]) {
            struct peer *p = a->buckets[i];
            a->buckets[i] = p->next;
            free(p);
        }
    pthread_mutex_destroy(&a->lock);
    free(a->of_fd);
    free(a);
}

static void peer_key(const struct sockaddr_storage *ss, uint8_t key[16])
{
    memset(key, 0, 16);
    if (ss->ss_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    } else if (ss->ss_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    }
}

static struct peer **bucket_of(struct pb_admission *a, const uint8_t key[16])
{
    uint64_t x = 1469598103934665603ULL ^ a->seed;
    for (int i = 0; i < 16; i++) {
        x ^= key[i];
        x *= 1099511628211ULL;
    }
    return &a->buckets[(x ^ (x >> 29)) & (NBUCKETS - 1)];
}

static struct peer *peer_get(struct pb_admission *a, const uint8_t key[16])
{
    struct peer **b = bucket_of(a, key);
    for (struct peer *p = *b; p; p = p->next)
        if (memcmp(p->addr, key, 16) == 0)
            return p;
    struct peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    memcpy(p->addr, key, 16);
    p->next = *b;
    *b = p;
    return p;
}

static void release_locked(struct pb_admission *a, int fd)
{
    if (fd < 0 || (size_t)fd >= a->nfds || !a->of_fd[fd])
        return;
    struct peer *p = a->of_fd[fd];
    a->of_fd[fd] = NULL;
    a->pending--;
    if (--p->pending)
        return;
    struct peer **pp = bucket_of(a, p->addr);
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    free(p);
}

void pb_admission_release(struct pb_admission *a, int fd)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    release_locked(a, fd);
    pthread_mutex_unlock(&a->lock);
}

static int refuse(struct pb_admission *a, int reason)
{
    a->m->accept_refused[reason]++;
    int64_t now = pb_monotonic_ms();
    if (now - a->log_ms < REFUSED_LOG_INTERVAL_MS)
        return -1;
    uint64_t total = 0;
    for (int r = 0; r < PB_REFUSED__COUNT; r++)
        total += a->m->accept_refused[r];
    a->log_ms = now;
    pb_warn("listen.public: closing new connections at once (%s; %zu pending, %zu descriptors "
            "usable): %llu refused since the last report",
            reason == PB_REFUSED_PENDING   ? "ws.max_pending reached"
            : reason == PB_REFUSED_PER_IP ? "ws.max_pending_per_ip reached for an address"
                                          : "out of descriptors for new connections",
            a->pending, a->fd_ceiling, (unsigned long long)(total - a->logged_refusals));
    a->logged_refusals = total;
    return -1;
}

static int accept_locked(struct pb_admission *a, int fd, const struct sockaddr_storage *peer)
{
    if (fd < 0 || (size_t)fd >= a->nfds)
        return refuse(a, PB_REFUSED_DESCRIPTORS);
    release_locked(a, fd); /* a close lws did not report */
    if ((size_t)fd >= a->fd_ceiling)
        return refuse(a, PB_REFUSED_DESCRIPTORS);
    if ((int64_t)a->pending >= a->cfg->ws_max_pending)
        return refuse(a, PB_REFUSED_PENDING);
    uint8_t key[16];
    peer_key(peer, key);
    struct peer *p = peer_get(a, key);
    if (!p)
        return refuse(a, PB_REFUSED_PENDING); /* out of memory: take nothing new */
    /* ws.max_pending_per_ip is at least 1, so a peer just made is under it. */
    if ((int64_t)p->pending >= a->cfg->ws_max_pending_per_ip)
        return refuse(a, PB_REFUSED_PER_IP);
    p->pending++;
    a->of_fd[fd] = p;
    a->pending++;
    return 0;
}

int pb_admission_accept(struct pb_admission *a, int fd, const struct sockaddr_storage *peer)
{
    pthread_mutex_lock(&a->lock);
    int rc = accept_locked(a, fd, peer);
    pthread_mutex_unlock(&a->lock);
    return rc;
}

size_t pb_admission_pending(struct pb_admission *a)
{
    pthread_mutex_lock(&a->lock);
    size_t n = a->pending;
    pthread_mutex_unlock(&a->lock);
    return n;
}
