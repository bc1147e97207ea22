/* pb-sendref: the plain-send reference of the benchmarks (bench/run.sh,
 * docs/PERFORMANCE.md). It plays the bridge's part for pb-loadgen with
 * nothing else in the way, so that the bridge's frames per CPU-second can be
 * read against what this machine does with the same sockets and syscalls.
 *
 * One thread, one level-triggered epoll loop. It accepts, answers the RFC
 * 6455 upgrade, reads the login and sends the welcome the bridge sends a
 * native client. Once --conns are welcomed it generates the events pb-produce
 * would (same targets, rate and data, so pb-loadgen checks them unchanged)
 * and frames each once, as the bridge does: one unmasked text frame, header
 * and payload contiguous, ref-counted and shared by every connection it goes
 * to. A connection queues pointers to frames plus the offset into the first.
 * --mode send writes one send() per frame; --mode writev gathers a
 * connection's whole queue into one writev(). A short write means the
 * socket buffer is full, so the connection waits for EPOLLOUT instead of
 * trying again.
 *
 * It prints one JSON object: frames written, its own CPU (getrusage) from
 * the first event until every frame is written, and the write syscalls.
 * No Kafka, no JSON parsing, no per-event allocation but the frame: this is
 * a floor for the bridge's cost, not a second implementation of it. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_IN 4096           /* upgrade request + login frame: loadgen sends < 300 bytes */
#define MAX_TOKEN 256
#define GATHER IOV_MAX        /* iovecs per writev() */
#define MAX_EVENTS_PER_TICK 1000 /* generated before the sockets get a turn */
#define EPOLL_BATCH 512
#define DRAIN_TIMEOUT_US (10u * 1000000u)

struct opts {
    const char *host;
    int port;                 /* 0: any free port, see --port-file */
    const char *port_file;
    int writev_mode;
    uint32_t conns;           /* start events once this many are welcomed */
    uint32_t users;           /* keys u0..u(U-1) round-robin ... */
    const char *key;          /* ... or one key ("*" = every connection) */
    double rate;              /* events per second, 0 = as fast as possible */
    uint64_t count;           /* at most this many events, 0 = no bound */
    double duration_s;        /* stop generating after this long */
    double start_delay_s;     /* after the last welcome, as run.sh waits for the bridge */
    double setup_timeout_s;
    double linger_s;          /* after the report, wait this long for clients to leave */
    const char *expect_file;  /* gets the number of events, for pb-loadgen */
};

/* One frame on the wire. The generator holds one reference while it hands
 * the frame out, each queue holding it one more; the last unref frees it. */
struct frame {
    uint32_t refs;
    uint32_t len;
    uint8_t is_event;         /* counted in frames written (handshake and welcome are not) */
    unsigned char b[];        /* WebSocket header + payload, or a raw HTTP answer */
};

enum cstate { C_HANDSHAKE, C_LOGIN, C_OPEN, C_CLOSED };

/* Owned by the server from accept to exit (never freed while the loop runs,
 * so the lists below may hold closed ones: they are skipped). */
struct conn {
    int fd;
    uint8_t state;
    uint8_t dirty;            /* on the flush list */
    uint8_t want_out;         /* EPOLLOUT armed: the socket was full */
    uint32_t user;            /* k of user "u<k>", or UINT32_MAX */
    uint64_t id;
    struct frame **q;         /* ring of queued frames */
    uint32_t qhead, qlen, qcap;
    uint32_t off;             /* bytes of q[qhead] already written */
    char *in;                 /* the upgrade and login bytes, freed once open */
    uint32_t in_len;
};

struct connlist {
    struct conn **v;
    uint32_t n, cap;
};

enum phase { P_SETUP, P_WAIT, P_SEND, P_DRAIN, P_LINGER, P_DONE };

struct stats {
    uint64_t accepted, welcomed, open;
    uint64_t events, queued, frames, dropped;
    uint64_t write_calls, write_blocked, epoll_waits;
    uint32_t max_queue;
};

struct server {
    const struct opts *o;
    int ep, lfd;
    enum phase phase;
    struct connlist all;      /* every welcomed connection: the broadcast target */
    struct connlist *users;   /* per user number */
    uint32_t nusers;
    struct connlist dirty;    /* connections with new frames and a writable socket */
    struct connlist every;    /* every accepted connection, to free them at exit */
    uint64_t next_id;
    uint64_t t_begin, t_start, t_send0, t_deadline; /* monotonic µs */
    double cpu0, cpu1;
    uint64_t t_end;
    double setup_s, send_s;
    int reported;
    struct stats st;
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static double cpu_now(void)
{
    double u, s;
    bench_cpu_self(&u, &s);
    return u + s;
}

static int list_push(struct connlist *l, struct conn *c)
{
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 64;
        struct conn **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = c;
    return 0;
}

/* ---- frames ---- */

static struct frame *frame_new(size_t len, int is_event)
{
    struct frame *f = malloc(sizeof(*f) + len);
    if (!f)
        return NULL;
    f->refs = 1;
    f->len = (uint32_t)len;
    f->is_event = (uint8_t)is_event;
    return f;
}

static void frame_unref(struct frame *f)
{
    if (--f->refs == 0)
        free(f);
}

/* A server text frame: FIN, opcode 1, no mask, 7/16/64-bit length. */
static struct frame *frame_text(const char *p, size_t n, int is_event)
{
    size_t h = n < 126 ? 2 : n < 65536 ? 4 : 10;
    struct frame *f = frame_new(h + n, is_event);
    if (!f)
        return NULL;
    f->b[0] = 0x81;
    if (n < 126) {
        f->b[1] = (unsigned char)n;
    } else if (n < 65536) {
        f->b[1] = 126;
        f->b[2] = (unsigned char)(n >> 8);
        f->b[3] = (unsigned char)n;
    } else {
        f->b[1] = 127;
        for (int i = 0; i < 8; i++)
            f->b[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    }
    memcpy(f->b + h, p, n);
    return f;
}

/* ---- connection queues and writing ---- */

static void ep_mod(struct server *s, struct conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0u), .data.ptr = c};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int enqueue(struct server *s, struct conn *c, struct frame *f)
{
    if (c->qlen == c->qcap) {
        uint32_t cap = c->qcap ? c->qcap * 2 : 4;
        struct frame **q = malloc(cap * sizeof(*q));
        if (!q)
            return -1;
        for (uint32_t i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen) % c->qcap] = f;
    c->qlen++;
    f->refs++;
    if (c->qlen > s->st.max_queue && f->is_event)
        s->st.max_queue = c->qlen;
    if (f->is_event)
        s->st.queued++;
    /* The first frame of an idle queue: write it this iteration. With
     * EPOLLOUT armed the socket is full and the event will come. */
    if (!c->dirty && !c->want_out) {
        c->dirty = 1;
        return list_push(&s->dirty, c);
    }
    return 0;
}

static void pop(struct server *s, struct conn *c)
{
    struct frame *f = c->q[c->qhead];
    if (f->is_event)
        s->st.frames++;
    frame_unref(f);
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    c->off = 0;
}

/* Counts n written bytes off the queue's head. */
static void consume(struct server *s, struct conn *c, size_t n)
{
    while (n) {
        struct frame *f = c->q[c->qhead];
        size_t rest = f->len - c->off;
        if (n < rest) {
            c->off += (uint32_t)n;
            return;
        }
        n -= rest;
        pop(s, c);
    }
}

/* One send() per frame. 1: queue empty, 0: socket full, -1: broken. */
static int flush_send(struct server *s, struct conn *c)
{
    while (c->qlen) {
        struct frame *f = c->q[c->qhead];
        size_t want = f->len - c->off;
        ssize_t k = send(c->fd, f->b + c->off, want, MSG_NOSIGNAL);
        s->st.write_calls++;
        if (k < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        consume(s, c, (size_t)k);
        if ((size_t)k < want)
            return 0;
    }
    return 1;
}

/* The whole queue (up to IOV_MAX frames) in one writev(). */
static int flush_writev(struct server *s, struct conn *c)
{
    struct iovec iov[GATHER];
    while (c->qlen) {
        uint32_t n = c->qlen < GATHER ? c->qlen : GATHER;
        size_t want = 0;
        for (uint32_t i = 0; i < n; i++) {
            struct frame *f = c->q[(c->qhead + i) % c->qcap];
            size_t skip = i ? 0 : c->off;
            iov[i] = (struct iovec){.iov_base = f->b + skip, .iov_len = f->len - skip};
            want += f->len - skip;
        }
        ssize_t k = writev(c->fd, iov, (int)n);
        s->st.write_calls++;
        if (k < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        consume(s, c, (size_t)k);
        if ((size_t)k < want)
            return 0;
    }
    return 1;
}

static void conn_close(struct server *s, struct conn *c)
{
    if (c->state == C_CLOSED)
        return;
    while (c->qlen) {
        struct frame *f = c->q[c->qhead];
        if (f->is_event)
            s->st.dropped++;
        frame_unref(f);
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
    }
    free(c->q);
    free(c->in);
    c->q = NULL;
    c->in = NULL;
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->state = C_CLOSED;
    s->st.open--;
}

static void conn_flush(struct server *s, struct conn *c)
{
    if (c->state == C_CLOSED)
        return;
    int rc = s->o->writev_mode ? flush_writev(s, c) : flush_send(s, c);
    if (rc < 0) {
        conn_close(s, c);
        return;
    }
    if (rc == 0)
        s->st.write_blocked++;
    if (c->want_out != (rc == 0)) {
        c->want_out = rc == 0;
        ep_mod(s, c);
    }
}

static void flush_dirty(struct server *s)
{
    for (uint32_t i = 0; i < s->dirty.n; i++) {
        struct conn *c = s->dirty.v[i];
        c->dirty = 0;
        conn_flush(s, c);
    }
    s->dirty.n = 0;
}

/* ---- upgrade and login ---- */

static void ws_accept_key(const char *key, size_t klen, char out[32])
{
    char cat[128 + sizeof(WS_GUID)];
    int n = snprintf(cat, sizeof(cat), "%.*s%s", (int)klen, key, WS_GUID);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_Digest(cat, (size_t)n, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

/* Answers a complete upgrade request. Returns the bytes it took, 0 when the
 * request is not complete yet, -1 when it is not one we can answer. */
static long take_upgrade(struct server *s, struct conn *c)
{
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return c->in_len >= MAX_IN - 1 ? -1 : 0;
    *end = '\0'; /* the head is parsed as a string; the 4 bytes are consumed anyway */
    const char *k = strcasestr(c->in, "\r\nsec-websocket-key:");
    if (!k)
        return -1;
    k += strlen("\r\nsec-websocket-key:");
    while (*k == ' ')
        k++;
    size_t klen = strcspn(k, "\r ");
    if (klen == 0 || klen > 128)
        return -1;
    char accept[32];
    ws_accept_key(k, klen, accept);
    char ans[256];
    int n = snprintf(ans, sizeof(ans),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    struct frame *f = frame_new((size_t)n, 0);
    if (!f)
        return -1;
    memcpy(f->b, ans, (size_t)n);
    int rc = enqueue(s, c, f);
    frame_unref(f);
    c->state = C_LOGIN;
    return rc ? -1 : end + 4 - c->in;
}

/* The user number of a "u<k>" token, or UINT32_MAX. */
static uint32_t user_number(const char *t, size_t n)
{
    if (n < 2 || n > 10 || t[0] != 'u')
        return UINT32_MAX;
    uint64_t k = 0;
    for (size_t i = 1; i < n; i++) {
        if (t[i] < '0' || t[i] > '9')
            return UINT32_MAX;
        k = k * 10 + (uint64_t)(t[i] - '0');
    }
    return k < UINT32_MAX ? (uint32_t)k : UINT32_MAX;
}

/* JSON string body of t (quote, backslash and control characters escaped). */
static size_t json_escape(char *out, const char *t, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)sprintf(out + o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    return o;
}

/* What the bridge answers a native login under auth.mode none: the token is
 * the user. */
static int welcome(struct server *s, struct conn *c, const char *tok, size_t n)
{
    char user[MAX_TOKEN * 6], msg[MAX_TOKEN * 6 + 96];
    size_t ulen = json_escape(user, tok, n);
    int len = snprintf(msg, sizeof(msg),
                       "{\"type\":\"welcome\",\"user\":\"%.*s\",\"conn_id\":\"%llu\"}", (int)ulen,
                       user, (unsigned long long)c->id);
    struct frame *f = frame_text(msg, (size_t)len, 0);
    if (!f)
        return -1;
    int rc = enqueue(s, c, f);
    frame_unref(f);
    c->user = user_number(tok, n);
    c->state = C_OPEN;
    free(c->in);
    c->in = NULL;
    c->in_len = 0;
    s->st.welcomed++;
    if (list_push(&s->all, c))
        rc = -1;
    if (c->user < s->nusers && list_push(&s->users[c->user], c))
        rc = -1;
    return rc;
}

/* The login: one masked text frame {"type":"auth","token":"..."}. Returns
 * the bytes it took, 0 when incomplete, -1 when it is not a login. */
static long take_login(struct server *s, struct conn *c)
{
    const unsigned char *u = (const unsigned char *)c->in;
    if (c->in_len < 2)
        return 0;
    size_t len = u[1] & 0x7f, h = 2;
    if ((u[0] & 0x0f) != 0x1 || !(u[1] & 0x80) || len == 127)
        return -1;
    if (len == 126) {
        if (c->in_len < 4)
            return 0;
        len = (size_t)u[2] << 8 | u[3];
        h = 4;
    }
    if (h + 4 + len > MAX_IN - 1) /* on_readable keeps c->in below MAX_IN */
        return -1;
    if (c->in_len < h + 4 + len)
        return 0;
    char *p = c->in + h + 4;
    for (size_t i = 0; i < len; i++)
        p[i] ^= (char)u[h + (i & 3)];
    static const char key[] = "\"token\":\"";
    const char *t = memmem(p, len, key, sizeof(key) - 1);
    if (!t)
        return -1;
    t += sizeof(key) - 1;
    const char *q = memchr(t, '"', (size_t)(p + len - t));
    if (!q || q - t > MAX_TOKEN)
        return -1;
    return welcome(s, c, t, (size_t)(q - t)) ? -1 : (long)(h + 4 + len);
}

/* Feeds what arrived before the connection is open. */
static int take_setup_bytes(struct server *s, struct conn *c)
{
    while (c->state == C_HANDSHAKE || c->state == C_LOGIN) {
        long k = c->state == C_HANDSHAKE ? take_upgrade(s, c) : take_login(s, c);
        if (k < 0)
            return -1;
        if (k == 0)
            return 0;
        if (c->state == C_OPEN)
            return 0; /* c->in is gone: pb-loadgen sends nothing unasked */
        memmove(c->in, c->in + k, c->in_len - (size_t)k);
        c->in_len -= (uint32_t)k;
    }
    return 0;
}

static void on_readable(struct server *s, struct conn *c)
{
    char sink[4096];
    int setup = c->state == C_HANDSHAKE || c->state == C_LOGIN;
    char *buf = setup ? c->in + c->in_len : sink;
    size_t cap = setup ? MAX_IN - 1 - c->in_len : sizeof(sink);
    if (cap == 0) { /* take_upgrade and take_login refuse what cannot fit */
        conn_close(s, c);
        return;
    }
    ssize_t k = read(c->fd, buf, cap);
    if (k < 0 && errno == EAGAIN)
        return;
    if (k <= 0) { /* the client left (pb-loadgen closes without a close frame) */
        conn_close(s, c);
        return;
    }
    if (!setup)
        return; /* after the login pb-loadgen sends nothing we must answer */
    c->in_len += (uint32_t)k;
    if (take_setup_bytes(s, c))
        conn_close(s, c);
}

static void accept_all(struct server *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Level-triggered: the listener would wake us forever. */
                fprintf(stderr, "pb-sendref: out of descriptors at %llu connections; "
                                "accepting no more\n", (unsigned long long)s->st.open);
                epoll_ctl(s->ep, EPOLL_CTL_DEL, s->lfd, NULL);
            }
            return;
        }
        int one = 1; /* as lws sets it on the bridge's sockets */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        char *in = malloc(MAX_IN);
        if (!c || !in || list_push(&s->every, c)) {
            close(fd);
            free(in);
            free(c);
            continue;
        }
        c->fd = fd;
        c->in = in;
        c->id = ++s->next_id;
        s->st.accepted++;
        s->st.open++;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev))
            conn_close(s, c);
    }
}

/* ---- events ---- */

/* Event i, as pb-produce makes it: its target and its seq (1, 2, ... per
 * target), data {"s":seq,"t":µs realtime now}, framed as the bridge frames
 * a native event. */
static void generate(struct server *s, uint64_t i)
{
    const struct opts *o = s->o;
    struct connlist *to;
    uint64_t seq;
    if (o->key && strcmp(o->key, "*") == 0) {
        to = &s->all;
        seq = i + 1;
    } else if (o->key) {
        uint32_t k = user_number(o->key, strlen(o->key));
        to = k < s->nusers ? &s->users[k] : NULL;
        seq = i + 1;
    } else {
        to = &s->users[i % o->users];
        seq = i / o->users + 1;
    }
    char msg[160];
    int n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"event\",\"event\":\"bench\",\"data\":{\"s\":%llu,\"t\":%llu}}",
                     (unsigned long long)seq, (unsigned long long)bench_realtime_us());
    s->st.events++;
    struct frame *f = frame_text(msg, (size_t)n, 1);
    if (!f || !to) {
        if (f)
            frame_unref(f);
        return;
    }
    for (uint32_t j = 0; j < to->n; j++) {
        struct conn *c = to->v[j];
        if (c->state == C_OPEN && enqueue(s, c, f))
            conn_close(s, c);
    }
    frame_unref(f);
}

static uint64_t due_of(const struct server *s, uint64_t i)
{
    return s->o->rate > 0 ? s->t_send0 + (uint64_t)((double)i * 1e6 / s->o->rate) : s->t_send0;
}

static int more_events(const struct server *s, uint64_t now)
{
    const struct opts *o = s->o;
    if (o->count && s->st.events >= o->count)
        return 0;
    return o->duration_s <= 0 || now - s->t_send0 < (uint64_t)(o->duration_s * 1e6);
}

/* pb-loadgen polls for these files. */
static void write_number_file(const char *path, unsigned long long v)
{
    char text[32];
    snprintf(text, sizeof(text), "%llu\n", v);
    if (path && bench_write_file(path, text))
        fprintf(stderr, "pb-sendref: cannot write %s: %s\n", path, strerror(errno));
}

/* ---- phases ---- */

static void report(struct server *s)
{
    if (s->reported++)
        return;
    if (s->phase >= P_SEND && s->phase <= P_DRAIN) { /* cut short: end the window now */
        s->cpu1 = cpu_now();
        s->t_end = bench_mono_us();
    }
    const struct opts *o = s->o;
    double cpu = s->cpu1 - s->cpu0;
    double win = s->t_end > s->t_send0 ? (double)(s->t_end - s->t_send0) / 1e6 : 0;
    struct jw w;
    jw_begin(&w, stdout);
    jw_str(&w, "mode", o->writev_mode ? "writev" : "send");
    jw_str(&w, "target", o->key ? o->key : "users");
    jw_u64(&w, "users", o->key ? 1 : o->users);
    jw_f(&w, "requested_rate", o->rate);
    jw_u64(&w, "conns", o->conns);
    jw_u64(&w, "accepted", s->st.accepted);
    jw_u64(&w, "welcomed", s->st.welcomed);
    jw_f(&w, "setup_s", s->setup_s);
    jw_u64(&w, "events", s->st.events);
    jw_f(&w, "send_s", s->send_s);
    jw_f(&w, "event_rate", s->send_s > 0 ? (double)s->st.events / s->send_s : 0);
    jw_u64(&w, "frames_queued", s->st.queued);
    jw_u64(&w, "frames", s->st.frames);
    jw_u64(&w, "frames_dropped", s->st.dropped);
    jw_u64(&w, "unflushed", s->st.queued - s->st.frames - s->st.dropped);
    jw_u64(&w, "max_queue", s->st.max_queue);
    jw_f(&w, "window_s", win);
    jw_f(&w, "cpu_s", cpu);
    jw_f(&w, "cpu_share", win > 0 ? cpu / win : 0);
    jw_f(&w, "frames_per_cpu_s", cpu > 0 ? (double)s->st.frames / cpu : 0);
    jw_u64(&w, "write_calls", s->st.write_calls);
    jw_f(&w, "frames_per_write_call",
         s->st.write_calls ? (double)s->st.frames / (double)s->st.write_calls : 0);
    jw_u64(&w, "write_blocked", s->st.write_blocked);
    jw_u64(&w, "epoll_waits", s->st.epoll_waits);
    jw_end(&w);
}

/* Counters from here on describe the traffic window only. */
static void begin_sending(struct server *s, uint64_t now)
{
    s->st.write_calls = s->st.write_blocked = s->st.epoll_waits = 0;
    s->cpu0 = cpu_now();
    s->t_send0 = now;
    s->phase = P_SEND;
}

static void end_window(struct server *s, uint64_t now)
{
    s->cpu1 = cpu_now();
    s->t_end = now;
    report(s);
    s->phase = P_LINGER;
    s->t_deadline = now + (uint64_t)(s->o->linger_s * 1e6);
}

static void tick_setup(struct server *s, uint64_t now)
{
    const struct opts *o = s->o;
    int all_in = s->st.welcomed >= o->conns;
    if (!all_in && now - s->t_begin < (uint64_t)(o->setup_timeout_s * 1e6))
        return;
    s->setup_s = (double)(now - s->t_begin) / 1e6;
    if (!all_in)
        fprintf(stderr, "pb-sendref: %llu/%u connections welcomed in %.1f s; going on\n",
                (unsigned long long)s->st.welcomed, o->conns, o->setup_timeout_s);
    s->phase = P_WAIT;
    s->t_start = now + (uint64_t)(o->start_delay_s * 1e6);
}

static void tick_send(struct server *s, uint64_t now)
{
    for (int k = 0; k < MAX_EVENTS_PER_TICK && more_events(s, now); k++) {
        if (due_of(s, s->st.events) > now)
            return;
        generate(s, s->st.events);
    }
    if (more_events(s, now))
        return;
    s->send_s = (double)(now - s->t_send0) / 1e6;
    write_number_file(s->o->expect_file, (unsigned long long)s->st.events);
    s->phase = P_DRAIN;
    s->t_deadline = now + DRAIN_TIMEOUT_US;
}

static void tick(struct server *s)
{
    uint64_t now = bench_mono_us();
    switch (s->phase) {
    case P_SETUP: tick_setup(s, now); break;
    case P_WAIT:
        if (now >= s->t_start)
            begin_sending(s, now);
        break;
    case P_SEND: tick_send(s, now); break;
    case P_DRAIN:
        /* A frame counts as written once its last byte is in the socket. */
        if (s->st.queued == s->st.frames + s->st.dropped || now >= s->t_deadline)
            end_window(s, now);
        break;
    case P_LINGER:
        if (!s->st.open || now >= s->t_deadline)
            s->phase = P_DONE;
        break;
    case P_DONE: break;
    }
}

/* epoll_wait's timeout: until the next event is due while sending (at
 * least 1 ms unless it is due now: a busy wait would count as CPU). The
 * other phases only check deadlines, or wait for sockets. */
static int wait_ms(const struct server *s)
{
    uint64_t due, now = bench_mono_us();
    if (s->phase == P_SEND)
        due = due_of(s, s->st.events);
    else if (s->phase == P_WAIT)
        due = s->t_start;
    else
        return 50;
    return due <= now ? 0 : (int)((due - now + 999) / 1000);
}

static void run(struct server *s)
{
    struct epoll_event evs[EPOLL_BATCH];
    while (s->phase != P_DONE && !g_stop) {
        int n = epoll_wait(s->ep, evs, EPOLL_BATCH, wait_ms(s));
        s->st.epoll_waits++;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                accept_all(s);
                continue;
            }
            if (evs[i].events & EPOLLOUT)
                conn_flush(s, c);
            if (c->state != C_CLOSED && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_readable(s, c);
        }
        tick(s);
        flush_dirty(s);
        if (s->phase == P_DRAIN)
            tick(s); /* the last writes may have emptied every queue */
    }
}

/* ---- set-up ---- */

static int listen_on(struct server *s)
{
    const struct opts *o = s->o;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &a.sin_addr) != 1) {
        fprintf(stderr, "pb-sendref: --host wants an IPv4 address\n");
        return -1;
    }
    int one = 1;
    socklen_t alen = sizeof(a);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(s->lfd, 65535) ||
        getsockname(s->lfd, (struct sockaddr *)&a, &alen)) {
        fprintf(stderr, "pb-sendref: cannot listen on %s:%d: %s\n", o->host, o->port,
                strerror(errno));
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev))
        return -1;
    write_number_file(o->port_file, ntohs(a.sin_port));
    return 0;
}

static int server_init(struct server *s, const struct opts *o)
{
    memset(s, 0, sizeof(*s));
    s->o = o;
    s->lfd = -1;
    s->nusers = o->users;
    if (o->key && strcmp(o->key, "*") != 0) {
        uint32_t k = user_number(o->key, strlen(o->key));
        if (k != UINT32_MAX && k >= s->nusers)
            s->nusers = k + 1;
    }
    s->users = calloc(s->nusers, sizeof(*s->users));
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!s->users || s->ep < 0)
        return -1;
    s->t_begin = bench_mono_us();
    return listen_on(s);
}

static void server_free(struct server *s)
{
    for (uint32_t i = 0; i < s->every.n; i++) {
        conn_close(s, s->every.v[i]);
        free(s->every.v[i]);
    }
    for (uint32_t i = 0; i < s->nusers; i++)
        free(s->users[i].v);
    free(s->users);
    free(s->all.v);
    free(s->dirty.v);
    free(s->every.v);
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->ep >= 0)
        close(s->ep);
}

/* Each connection is a descriptor. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fputs("Usage: pb-sendref --conns N [options]\n"
          "  --host IP            listen address (default 127.0.0.1)\n"
          "  --port P             listen port (default 0: any free one)\n"
          "  --port-file F        write the port to F once listening\n"
          "  --mode send|writev   one send() per frame, or a writev() per queue (send)\n"
          "  --conns N            start the events once N connections are welcomed\n"
          "  --users U            targets u0..u(U-1), round-robin (default 1)\n"
          "  --key K              one target instead: a user, or \"*\" = every connection\n"
          "  --rate R             events per second, 0 = as fast as possible (default 1000)\n"
          "  --count N            at most N events (default 0 = no bound)\n"
          "  --duration S         stop generating after S seconds (default 10)\n"
          "  --start-delay S      wait S seconds after the last welcome (default 0.2)\n"
          "  --setup-timeout S    start anyway S seconds after listening (default 120)\n"
          "  --linger S           after the report, wait for the clients to leave (30)\n"
          "  --expect-file F      write the number of events to F once generated\n"
          "Prints one JSON object. Ends by itself, or on SIGINT/SIGTERM.\n",
          f);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    enum {
        OPT_HOST = 256, OPT_PORT, OPT_PFILE, OPT_MODE, OPT_CONNS, OPT_USERS, OPT_KEY, OPT_RATE,
        OPT_COUNT, OPT_DUR, OPT_DELAY, OPT_SETUP, OPT_LINGER, OPT_EFILE
    };
    static const struct option lo[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"port-file", required_argument, NULL, OPT_PFILE},
        {"mode", required_argument, NULL, OPT_MODE},
        {"conns", required_argument, NULL, OPT_CONNS},
        {"users", required_argument, NULL, OPT_USERS},
        {"key", required_argument, NULL, OPT_KEY},
        {"rate", required_argument, NULL, OPT_RATE},
        {"count", required_argument, NULL, OPT_COUNT},
        {"duration", required_argument, NULL, OPT_DUR},
        {"start-delay", required_argument, NULL, OPT_DELAY},
        {"setup-timeout", required_argument, NULL, OPT_SETUP},
        {"linger", required_argument, NULL, OPT_LINGER},
        {"expect-file", required_argument, NULL, OPT_EFILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.host = "127.0.0.1", .users = 1, .rate = 1000, .duration_s = 10,
                       .start_delay_s = 0.2, .setup_timeout_s = 120, .linger_s = 30};
    const char *mode = "send";
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case OPT_HOST: o->host = optarg; break;
        case OPT_PORT: o->port = atoi(optarg); break;
        case OPT_PFILE: o->port_file = optarg; break;
        case OPT_MODE: mode = optarg; break;
        case OPT_CONNS: o->conns = (uint32_t)strtoul(optarg, NULL, 10); break;
        case OPT_USERS: o->users = (uint32_t)strtoul(optarg, NULL, 10); break;
        case OPT_KEY: o->key = optarg; break;
        case OPT_RATE: o->rate = atof(optarg); break;
        case OPT_COUNT: o->count = strtoull(optarg, NULL, 10); break;
        case OPT_DUR: o->duration_s = atof(optarg); break;
        case OPT_DELAY: o->start_delay_s = atof(optarg); break;
        case OPT_SETUP: o->setup_timeout_s = atof(optarg); break;
        case OPT_LINGER: o->linger_s = atof(optarg); break;
        case OPT_EFILE: o->expect_file = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    o->writev_mode = strcmp(mode, "writev") == 0;
    if ((!o->writev_mode && strcmp(mode, "send") != 0) || o->conns == 0 || o->users == 0 ||
        o->port < 0 || o->port > 65535 || o->rate < 0 || (!o->count && o->duration_s <= 0) ||
        (o->key && (!*o->key || strlen(o->key) > MAX_TOKEN))) {
        fprintf(stderr, "pb-sendref: bad options (see --help)\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o))
        return 2;
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: wake epoll_wait */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    struct server *s = malloc(sizeof(*s));
    if (!s)
        return 1;
    int rc = server_init(s, &o);
    if (rc == 0) {
        run(s);
        report(s);
        /* Complete: every connection came, every event was generated and
         * every frame written. */
        rc = s->phase >= P_LINGER && s->st.welcomed >= o.conns && s->st.queued == s->st.frames
                 ? 0
                 : 1;
    }
    server_free(s);
    free(s);
    return rc;
}
