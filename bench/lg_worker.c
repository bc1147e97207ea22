/* One pb-loadgen worker: an epoll loop over its share of the connections.
 *
 * Per connection: a non-blocking connect from 127.0.0.(2 + i % K), bound
 * with IP_BIND_ADDRESS_NO_PORT so that the port is chosen per destination;
 * the RFC 6455 upgrade, whose Sec-WebSocket-Accept is checked; the native
 * login; then frames. Server frames may use 7, 16 or 64-bit lengths and may
 * be fragmented; pings are answered, a close is echoed and its code counted.
 * Client frames are masked, as RFC 6455 5.3 requires.
 *
 * Event frames are checked as they arrive: receive time minus the "t" in
 * their data goes into the latency histogram, and their "s" is checked
 * against what this connection saw before. Stalled connections are left
 * alone after their welcome and drained, unmeasured, at the end. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define READ_CHUNK (256u * 1024u)
#define MAX_FRAME_BYTES (16u << 20)  /* a server frame larger than this is a protocol error */
#define MAX_HANDSHAKE_BYTES 8192
#define DRAIN_DEADLINE_US (3u * 1000000u)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- one connection ---- */

struct bytes {
    char *p;
    size_t len, cap;
};

enum cstate { C_NEW, C_CONNECTING, C_HANDSHAKE, C_WELCOME, C_OPEN, C_STALLED, C_DONE };

/* Owned by its worker (conns array); fd and buffers freed by conn_end. */
struct conn {
    int fd;
    uint32_t idx;             /* global index: user, source address, stall */
    uint8_t state;
    uint8_t stalled;          /* stops reading after the welcome */
    uint8_t welcomed;         /* logged in: counts toward expected and lost */
    uint64_t t0_us;           /* connect() started (monotonic) */
    uint64_t expected;
    uint64_t events, dups, ooo;
    uint64_t max_seq;
    uint64_t window;          /* bit k set: max_seq - k arrived */
    char accept[32];          /* the Sec-WebSocket-Accept the server must send */
    struct bytes in;          /* bytes of an incomplete frame (or handshake) */
    struct bytes msg;         /* a fragmented message being reassembled */
    struct bytes out;         /* bytes the socket did not take yet */
};

struct worker {
    const struct opts *o;
    uint32_t lo, hi;          /* global indexes [lo, hi) */
    struct conn *c;
    int ep;
    uint32_t next;            /* next index to connect */
    uint32_t pending;         /* handshakes in flight */
    uint32_t settled;         /* connections welcomed or failed */
    uint64_t unfinished;      /* readers still owed events */
    uint64_t expect;          /* events the producer sent, once known */
    int expect_known;
    uint64_t expect_checked;  /* when --expect-file was last looked at */
    uint64_t last_event_mono;
    uint64_t rng;
    int finished;             /* the run is over: we close what is left */
    char *rbuf;
    struct result *r;
};

/* ---- small helpers ---- */

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: masks and keys need no cryptographic strength. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int bytes_append(struct bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static void bytes_consume(struct bytes *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

static void bytes_free(struct bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static void close_count(struct close_table *t, uint32_t code)
{
    for (uint32_t i = 0; i < t->len; i++)
        if (t->c[i].code == code) {
            t->c[i].n++;
            return;
        }
    if (t->len < MAX_CLOSE_CODES)
        t->c[t->len++] = (struct close_count){code, 1};
}

/* Reads an unsigned decimal right after key (e.g. "\"s\":") within [p, end). */
static int scan_u64(const char *p, const char *end, const char *key, uint64_t *v)
{
    size_t klen = strlen(key);
    const char *k = memmem(p, (size_t)(end - p), key, klen);
    if (!k)
        return -1;
    const char *d = k + klen;
    if (d >= end || *d < '0' || *d > '9')
        return -1;
    uint64_t x = 0;
    while (d < end && *d >= '0' && *d <= '9')
        x = x * 10 + (uint64_t)(*d++ - '0');
    *v = x;
    return 0;
}

/* ---- who each connection is ---- */

static uint32_t user_of(const struct opts *o, uint32_t idx)
{
    return idx % o->users;
}

/* Events the producer sends to this connection: round-robin over the users
 * (event i goes to user i % U), or all of them for a broadcast. */
static uint64_t expected_of(const struct opts *o, uint64_t total, uint32_t idx)
{
    if (o->expect_all)
        return total;
    uint32_t u = idx % o->users;
    return total / o->users + (u < total % o->users ? 1 : 0);
}

/* floor(conns * fraction) stalled connections (give or take rounding),
 * spread over the index space by a fixed permutation so that they are not
 * all one user's. */
static int is_stalled(const struct opts *o, uint32_t idx)
{
    if (o->stall_fraction <= 0)
        return 0;
    uint64_t a = 7919; /* prime: a permutation unless it divides conns */
    if (o->conns % a == 0)
        a = 1;
    uint64_t p = (uint64_t)idx * a % o->conns;
    double f = o->stall_fraction;
    return (uint64_t)((double)(p + 1) * f) != (uint64_t)((double)p * f);
}

/* ---- sending ---- */

static void ep_set(struct worker *w, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_end(struct worker *w, struct conn *c, int have_code, uint32_t code);

/* Writes what the socket takes now and keeps the rest for EPOLLOUT. */
static void conn_send(struct worker *w, struct conn *c, const void *p, size_t n)
{
    if (c->out.len == 0) {
        ssize_t k = write(c->fd, p, n);
        if (k < 0 && errno != EAGAIN) {
            conn_end(w, c, 0, 0);
            return;
        }
        if (k > 0) {
            p = (const char *)p + k;
            n -= (size_t)k;
        }
        if (n == 0)
            return;
    }
    if (bytes_append(&c->out, p, n)) {
        conn_end(w, c, 0, 0);
        return;
    }
    ep_set(w, c, EPOLLIN | EPOLLOUT);
}

static void flush_out(struct worker *w, struct conn *c)
{
    ssize_t k = write(c->fd, c->out.p, c->out.len);
    if (k < 0) {
        if (errno != EAGAIN)
            conn_end(w, c, 0, 0);
        return;
    }
    bytes_consume(&c->out, (size_t)k);
    if (c->out.len == 0)
        ep_set(w, c, EPOLLIN);
}

#define MAX_CLIENT_PAYLOAD 1024 /* auth, pong and close payloads are small */

/* A client frame into f: FIN set, masked (RFC 6455 5.3). Returns its size. */
static size_t build_frame(struct worker *w, unsigned char *f, int op, const void *p, size_t n)
{
    size_t h = 0;
    f[h++] = (unsigned char)(0x80 | op);
    if (n < 126) {
        f[h++] = (unsigned char)(0x80 | n);
    } else {
        f[h++] = 0x80 | 126;
        f[h++] = (unsigned char)(n >> 8);
        f[h++] = (unsigned char)n;
    }
    uint32_t mask = (uint32_t)rng_next(&w->rng);
    memcpy(f + h, &mask, 4);
    const unsigned char *m = f + h;
    h += 4;
    for (size_t i = 0; i < n; i++)
        f[h + i] = ((const unsigned char *)p)[i] ^ m[i & 3];
    return h + n;
}

static void send_frame(struct worker *w, struct conn *c, int op, const void *p, size_t n)
{
    unsigned char f[14 + MAX_CLIENT_PAYLOAD];
    if (n <= MAX_CLIENT_PAYLOAD)
        conn_send(w, c, f, build_frame(w, f, op, p, n));
}

/* ---- connection life ---- */

static void setup_done_one(struct worker *w, struct conn *c, int ok)
{
    w->pending--;
    w->settled++;
    if (ok) {
        w->r->setup.welcomed++;
        hist_add(&w->r->handshake, bench_mono_us() - c->t0_us);
    } else {
        w->r->setup.failed++;
    }
}

/* Counts an end we did not ask for, by what the connection was doing. */
static void count_end(struct worker *w, struct conn *c, int have_code, uint32_t code)
{
    if (c->state < C_OPEN && c->state > C_NEW) {
        setup_done_one(w, c, 0);
    } else if (c->state == C_OPEN) {
        w->r->reading_closed++;
        close_count(&w->r->closes_reading, have_code ? code : 0);
        if (c->expected && c->events - c->dups < c->expected)
            w->unfinished--;
    } else if (c->state == C_STALLED) {
        w->r->stalled_closed++;
        close_count(&w->r->closes_stalled, have_code ? code : 0);
    }
}

/* The connection is over: the server closed it (with code when have_code),
 * it broke, or the run is finished and we close it. */
static void conn_end(struct worker *w, struct conn *c, int have_code, uint32_t code)
{
    if (c->state == C_DONE)
        return;
    if (!w->finished)
        count_end(w, c, have_code, code);
    c->state = C_DONE;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    bytes_free(&c->in);
    bytes_free(&c->msg);
    bytes_free(&c->out);
}

static void base64(const unsigned char *in, int n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, n);
}

static void send_upgrade(struct worker *w, struct conn *c)
{
    unsigned char raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t x = rng_next(&w->rng);
        memcpy(raw + i, &x, 8);
    }
    char key[32];
    base64(raw, 16, key);
    /* The answer must carry base64(SHA-1(key + GUID)) (RFC 6455 4.2.2). */
    char cat[64 + sizeof(WS_GUID)];
    int catlen = snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_Digest(cat, (size_t)catlen, md, &mdlen, EVP_sha1(), NULL);
    base64(md, (int)mdlen, c->accept);

    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     w->o->path, w->o->host, w->o->ports[c->idx % w->o->nports], key);
    c->state = C_HANDSHAKE;
    ep_set(w, c, EPOLLIN);
    conn_send(w, c, req, (size_t)n);
}

static void conn_start(struct worker *w, struct conn *c)
{
    const struct opts *o = w->o;
    c->t0_us = bench_mono_us();
    c->state = C_CONNECTING;
    w->pending++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_end(w, c, 0, 0);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c->stalled && o->stall_rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &o->stall_rcvbuf, sizeof(o->stall_rcvbuf));

    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000000u | (o->src_first + c->idx % o->src_addrs));
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->ports[c->idx % o->nports])};
    inet_pton(AF_INET, o->host, &dst.sin_addr);
    if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) ||
        (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) && errno != EINPROGRESS)) {
        conn_end(w, c, 0, 0);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev)) {
        conn_end(w, c, 0, 0);
        return;
    }
}

static void connected(struct worker *w, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
        conn_end(w, c, 0, 0);
        return;
    }
    w->r->setup.connected++;
    send_upgrade(w, c);
}

/* ---- what arrives ---- */

static void login(struct worker *w, struct conn *c)
{
    char msg[128];
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"auth\",\"token\":\"u%u\"}",
                     user_of(w->o, c->idx));
    c->state = C_WELCOME;
    send_frame(w, c, 0x1, msg, (size_t)n);
}

/* Parses the 101 answer when complete. Returns the bytes it took, 0 when it
 * needs more, -1 on a refusal or a wrong Accept. */
static long handshake(struct conn *c, const char *p, size_t n)
{
    const char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end)
        return n > MAX_HANDSHAKE_BYTES ? -1 : 0;
    size_t hlen = (size_t)(end - p) + 4;
    char head[MAX_HANDSHAKE_BYTES + 1];
    if (hlen > MAX_HANDSHAKE_BYTES)
        return -1;
    memcpy(head, p, hlen);
    head[hlen] = '\0';
    if (strncmp(head, "HTTP/1.1 101", 12) != 0)
        return -1;
    const char *a = strcasestr(head, "\r\nsec-websocket-accept:");
    if (!a)
        return -1;
    a += strlen("\r\nsec-websocket-accept:");
    while (*a == ' ')
        a++;
    size_t alen = strlen(c->accept);
    if (strncmp(a, c->accept, alen) != 0)
        return -1;
    return (long)hlen;
}

/* Per-connection order check over a 64-wide window behind the highest seq. */
static void check_seq(struct worker *w, struct conn *c, uint64_t s)
{
    if (s > c->max_seq) {
        uint64_t shift = s - c->max_seq;
        c->window = shift >= 64 ? 1 : (c->window << shift) | 1;
        c->max_seq = s;
    } else if (c->max_seq - s < 64) {
        uint64_t bit = 1ull << (c->max_seq - s);
        if (c->window & bit) {
            c->dups++;
            w->r->dups++;
            return;
        }
        c->window |= bit;
        c->ooo++;
        w->r->ooo++;
    } else {
        c->ooo++; /* too old to tell apart from a duplicate: counted late */
        w->r->ooo++;
    }
    if (c->expected && c->events - c->dups == c->expected && w->expect_known) {
        w->unfinished--;
        if (!w->unfinished)
            w->last_event_mono = bench_mono_us();
    }
}

static void on_event(struct worker *w, struct conn *c, const char *p, size_t n, uint64_t now)
{
    const char *end = p + n;
    const char *data = memmem(p, n, "\"data\":", 7);
    uint64_t s = 0, t = 0;
    if (!data || scan_u64(data, end, "\"s\":", &s) || scan_u64(data, end, "\"t\":", &t) || !s) {
        w->r->bad_events++;
        return;
    }
    if (c->state == C_STALLED) {
        w->r->stalled_events++;
        return;
    }
    c->events++;
    w->r->events++;
    hist_add(&w->r->lat, now > t ? now - t : 0);
    if (!w->r->first_event_us || now < w->r->first_event_us)
        w->r->first_event_us = now;
    if (now > w->r->last_event_us)
        w->r->last_event_us = now;
    w->last_event_mono = bench_mono_us();
    check_seq(w, c, s);
}

static void on_message(struct worker *w, struct conn *c, const char *p, size_t n, uint64_t now)
{
    static const char ev[] = "{\"type\":\"event\"";
    static const char welcome[] = "{\"type\":\"welcome\"";
    if (n >= sizeof(ev) - 1 && memcmp(p, ev, sizeof(ev) - 1) == 0) {
        on_event(w, c, p, n, now);
        return;
    }
    if (c->state == C_WELCOME) {
        int ok = n >= sizeof(welcome) - 1 && memcmp(p, welcome, sizeof(welcome) - 1) == 0;
        if (!ok) {
            w->r->setup.login_errors++;
            conn_end(w, c, 0, 0);
            return;
        }
        setup_done_one(w, c, 1);
        c->welcomed = 1;
        c->expected = w->expect_known ? expected_of(w->o, w->expect, c->idx) : 0;
        if (c->stalled) {
            /* A slow client: the socket stays open, nothing is read. */
            c->state = C_STALLED;
            epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
        } else {
            c->state = C_OPEN;
            if (c->expected)
                w->unfinished++;
        }
        return;
    }
    w->r->other_frames++;
}

static void on_control(struct worker *w, struct conn *c, int op, const char *p, size_t n)
{
    if (op == 0x9) { /* ping: answer with the same payload */
        send_frame(w, c, 0xA, p, n);
    } else if (op == 0x8) {
        uint32_t code = n >= 2 ? (uint32_t)((unsigned char)p[0] << 8 | (unsigned char)p[1]) : 1005;
        /* Echo the code, best effort: the connection ends here either way,
         * and its close code must be counted even if the echo fails. */
        unsigned char f[16];
        ssize_t k = write(c->fd, f, build_frame(w, f, 0x8, p, n >= 2 ? 2 : 0));
        (void)k;
        conn_end(w, c, 1, code);
    }
}

/* One frame: 1 when handled, 0 when more bytes are needed, -1 on a
 * protocol error. *used is the frame's length in bytes. */
static int parse_frame(struct worker *w, struct conn *c, const char *p, size_t n, uint64_t now,
                       size_t *used)
{
    if (n < 2)
        return 0;
    const unsigned char *u = (const unsigned char *)p;
    int fin = u[0] & 0x80, op = u[0] & 0x0f, masked = u[1] & 0x80;
    uint64_t len = u[1] & 0x7f;
    size_t h = 2;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)u[2] << 8 | u[3];
        h = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | u[2 + i];
        h = 10;
    }
    if (len > MAX_FRAME_BYTES)
        return -1;
    size_t mh = masked ? 4 : 0;
    if (n < h + mh + len)
        return 0;
    *used = h + mh + (size_t)len;
    char *pl = (char *)p + h + mh;
    if (masked) /* servers must not mask, but tolerate it */
        for (uint64_t i = 0; i < len; i++)
            pl[i] ^= (char)u[h + (i & 3)];
    if (op & 0x8) {
        on_control(w, c, op, pl, (size_t)len);
        return 1;
    }
    if (fin && op != 0 && c->msg.len == 0) {
        on_message(w, c, pl, (size_t)len, now);
        return 1;
    }
    if (bytes_append(&c->msg, pl, (size_t)len))
        return -1;
    if (fin) {
        on_message(w, c, c->msg.p, c->msg.len, now);
        if (c->state != C_DONE)
            c->msg.len = 0;
    }
    return 1;
}

/* Consumes what it can of p; returns the bytes taken, or -1 when the
 * connection must end. Stops at the welcome of a stalled connection. */
static long parse(struct worker *w, struct conn *c, char *p, size_t n, uint64_t now)
{
    size_t off = 0;
    if (c->state == C_HANDSHAKE) {
        long k = handshake(c, p, n);
        if (k <= 0)
            return k;
        off = (size_t)k;
        login(w, c);
    }
    while (off < n && c->state != C_DONE) {
        uint8_t before = c->state;
        size_t used = 0;
        int rc = parse_frame(w, c, p + off, n - off, now, &used);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        off += used;
        if (before == C_WELCOME && c->state == C_STALLED)
            break; /* what follows is read only at the end, by drain() */
    }
    return (long)off;
}

/* Feeds fresh bytes to the parser, keeping an incomplete tail in c->in. */
static void feed(struct worker *w, struct conn *c, char *p, size_t n, uint64_t now)
{
    if (c->in.len) {
        if (bytes_append(&c->in, p, n)) {
            conn_end(w, c, 0, 0);
            return;
        }
        p = c->in.p;
        n = c->in.len;
    }
    long used = parse(w, c, p, n, now);
    if (c->state == C_DONE)
        return;
    if (used < 0) {
        w->r->proto_errors++;
        conn_end(w, c, 0, 0);
        return;
    }
    if (c->in.len) {
        bytes_consume(&c->in, (size_t)used);
    } else if ((size_t)used < n && bytes_append(&c->in, p + used, n - (size_t)used)) {
        conn_end(w, c, 0, 0);
    }
}

/* One read per wake-up: epoll is level-triggered, so a busy connection
 * comes back without starving the others. Returns bytes read, 0 at EOF or
 * error (the connection is then over), -1 when nothing was there. */
static ssize_t read_once(struct worker *w, struct conn *c)
{
    ssize_t n = read(c->fd, w->rbuf, READ_CHUNK);
    if (n > 0) {
        feed(w, c, w->rbuf, (size_t)n, bench_realtime_us());
        return n;
    }
    if (n < 0 && errno == EAGAIN)
        return -1;
    conn_end(w, c, 0, 0);
    return 0;
}

static void on_ready(struct worker *w, struct conn *c, uint32_t events)
{
    if (c->state == C_CONNECTING) {
        connected(w, c);
        return;
    }
    if ((events & EPOLLOUT) && c->out.len)
        flush_out(w, c);
    if (c->state != C_DONE && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        read_once(w, c);
}

/* ---- the worker's loop ---- */

static void start_more(struct worker *w)
{
    while (w->next < w->hi && w->pending < w->o->max_pending && !lg_stop)
        conn_start(w, &w->c[w->next++ - w->lo]);
}

static void poll_once(struct worker *w, int timeout_ms)
{
    struct epoll_event evs[512];
    int n = epoll_wait(w->ep, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++)
        on_ready(w, evs[i].data.ptr, evs[i].events);
}

static void setup_phase(struct worker *w)
{
    uint64_t deadline = bench_mono_us() + (uint64_t)(w->o->setup_timeout_s * 1e6);
    w->r->setup.start_us = bench_mono_us();
    while (w->settled < w->hi - w->lo && !lg_stop && bench_mono_us() < deadline) {
        start_more(w);
        poll_once(w, 20);
    }
    w->r->setup.end_us = bench_mono_us();
}

static int run_over(struct worker *w, uint64_t start, uint64_t done_at)
{
    const struct opts *o = w->o;
    uint64_t now = bench_mono_us();
    if (lg_stop || now - start >= (uint64_t)(o->duration_s * 1e6))
        return 1;
    if (w->expect_known && !w->unfinished)
        return now - done_at >= (uint64_t)(o->linger_s * 1e6);
    /* Events started, then stopped: some will not come. */
    return w->last_event_mono && now - w->last_event_mono >= (uint64_t)(o->quiet_s * 1e6);
}

/* The producer's count becomes known: from then on every reader is owed
 * its share, and the run can end once all of it arrived. */
static void set_expect(struct worker *w, uint64_t total)
{
    w->expect = total;
    w->expect_known = 1;
    for (uint32_t i = 0; i < w->hi - w->lo; i++) {
        struct conn *c = &w->c[i];
        if (!c->welcomed || c->stalled)
            continue;
        c->expected = expected_of(w->o, total, c->idx);
        if (c->state == C_OPEN && c->events - c->dups < c->expected)
            w->unfinished++;
    }
}

/* Reads the count pb-produce sent from --expect-file, every 100 ms until
 * the file appears (run.sh writes it, atomically, once the producer ends). */
static void check_expect_file(struct worker *w)
{
    uint64_t now = bench_mono_us();
    if (w->expect_known || !w->o->expect_file || now - w->expect_checked < 100000)
        return;
    w->expect_checked = now;
    FILE *f = fopen(w->o->expect_file, "r");
    if (!f)
        return;
    unsigned long long n;
    if (fscanf(f, "%llu", &n) == 1)
        set_expect(w, n);
    fclose(f);
}

static void run_phase(struct worker *w)
{
    uint64_t start = bench_mono_us();
    if (!w->o->expect_file && w->o->expect_events)
        set_expect(w, w->o->expect_events);
    while (!run_over(w, start, w->last_event_mono)) {
        poll_once(w, 20);
        check_expect_file(w);
    }
    w->r->run_s = (double)(bench_mono_us() - start) / 1e6;
}

/* Reads whatever reached the stalled connections, without measuring it: how
 * much the bridge pushed to them, and whether it closed them. */
static void drain_stalled(struct worker *w)
{
    uint64_t deadline = bench_mono_us() + DRAIN_DEADLINE_US;
    for (uint32_t i = 0; i < w->hi - w->lo && bench_mono_us() < deadline; i++) {
        struct conn *c = &w->c[i];
        if (c->state != C_STALLED)
            continue;
        /* Bytes read with the welcome but not parsed yet come first. */
        if (c->in.len) {
            struct bytes pending = c->in;
            memset(&c->in, 0, sizeof(c->in));
            feed(w, c, pending.p, pending.len, bench_realtime_us());
            free(pending.p);
        }
        while (c->state == C_STALLED && bench_mono_us() < deadline)
            if (read_once(w, c) < 0)
                break;
    }
}

static void tally(struct worker *w)
{
    struct result *r = w->r;
    r->expect_total = w->expect;
    for (uint32_t i = 0; i < w->hi - w->lo; i++) {
        struct conn *c = &w->c[i];
        if (!c->welcomed)
            continue; /* counted in failed */
        if (c->stalled) {
            r->stalled++;
            continue;
        }
        r->reading++;
        uint64_t exp = expected_of(w->o, w->expect, c->idx);
        uint64_t unique = c->events - c->dups;
        r->expected += exp;
        if (unique < exp)
            r->lost += exp - unique;
        else
            r->extra += unique - exp;
    }
}

/* Runs connections [lo, hi): set up, report through ready(), read until the
 * run is over, then fill r. */
int lg_worker_run(const struct opts *o, uint32_t lo, uint32_t hi, struct result *r,
                      void (*ready)(void *, const struct setup_msg *), void *arg)
{
    struct worker w = {.o = o, .lo = lo, .hi = hi, .r = r, .next = lo};
    memset(r, 0, sizeof(*r));
    r->conns = hi - lo;
    w.rng = bench_realtime_us() ^ ((uint64_t)getpid() << 32) ^ lo;
    w.ep = epoll_create1(EPOLL_CLOEXEC);
    w.c = calloc(hi - lo, sizeof(*w.c));
    w.rbuf = malloc(READ_CHUNK);
    if (w.ep < 0 || !w.c || !w.rbuf) {
        fprintf(stderr, "pb-loadgen: out of memory or descriptors\n");
        return -1;
    }
    for (uint32_t i = lo; i < hi; i++)
        w.c[i - lo] = (struct conn){.fd = -1, .idx = i, .stalled = (uint8_t)is_stalled(o, i)};

    setup_phase(&w);
    ready(arg, &r->setup);
    run_phase(&w);
    drain_stalled(&w);
    tally(&w);
    w.finished = 1;
    for (uint32_t i = 0; i < hi - lo; i++)
        conn_end(&w, &w.c[i], 0, 0);
    bench_cpu_self(&r->cpu_user_s, &r->cpu_sys_s);
    free(w.c);
    free(w.rbuf);
    close(w.ep);
    return 0;
}
