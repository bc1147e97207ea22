/* pb-loadgen: plays N browsers against pushbridge for the benchmarks
 * (bench/run.sh, docs/PERFORMANCE.md).
 *
 * Each connection logs in with the native form {"type":"auth","token":"u<k>"}
 * (the bridge runs with auth.mode none, so the token is the user), waits for
 * its welcome, then reads every frame. Events carry {"s":<seq per target>,
 * "t":<µs, CLOCK_REALTIME>} in their data (pb-produce writes them): receive
 * time minus t is the latency, and s tells lost, duplicated and out-of-order
 * events apart, per connection; each must be 0 for a reader. A chosen
 * fraction of the connections stops reading after its welcome (slow
 * clients); what reached them is counted at the end and reported apart.
 *
 * The connections are spread over loopback source addresses so that N can
 * pass the ephemeral port range of one address. When N is more than one
 * process may open (RLIMIT_NOFILE), the work is split over forked workers
 * (lg_worker.c); each sends its plain-data result to the parent over a pipe,
 * and the parent prints one JSON object with the totals. Every loop is
 * bounded: by connection count, --setup-timeout, --duration, and --quiet
 * once events started and then stopped. With several --port values (the
 * nodes of a cluster) connection i goes to the (i mod K)th: one run, one
 * report, the users spread over the nodes. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loadgen.h"

#define FD_MARGIN 32 /* descriptors a worker keeps for itself */
#define MAX_PROCS 64

volatile sig_atomic_t lg_stop;
/* The parent's workers, so that a stop signal reaches them too. Reset in
 * each worker right after fork: a worker has no children. */
static pid_t g_children[MAX_PROCS];
static volatile sig_atomic_t g_nchildren;

static void on_signal(int sig)
{
    lg_stop = 1;
    for (int i = 0; i < g_nchildren; i++)
        if (g_children[i] > 0)
            kill(g_children[i], sig); /* async-signal-safe */
}

/* ---- processes ---- */

static int write_all(int fd, const void *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p = (const char *)p + k;
        n -= (size_t)k;
    }
    return 0;
}

static void write_ready_file(const char *path)
{
    if (path && bench_write_file(path, "ready\n"))
        fprintf(stderr, "pb-loadgen: cannot write %s: %s\n", path, strerror(errno));
}

struct single_ready {
    const struct opts *o;
    uint32_t conns;
};

static void ready_single(void *arg, const struct setup_msg *s)
{
    struct single_ready *sr = arg;
    fprintf(stderr, "pb-loadgen: %llu/%u connections welcomed in %.2f s\n",
            (unsigned long long)s->welcomed, sr->conns, (double)(s->end_us - s->start_us) / 1e6);
    write_ready_file(sr->o->ready_file);
}

static void ready_pipe(void *arg, const struct setup_msg *s)
{
    write_all(*(int *)arg, s, sizeof(*s));
}

static void close_merge(struct close_table *into, const struct close_table *from)
{
    for (uint32_t i = 0; i < from->len; i++) {
        uint32_t k = 0;
        while (k < into->len && into->c[k].code != from->c[i].code)
            k++;
        if (k == into->len) {
            if (into->len == MAX_CLOSE_CODES)
                continue; /* more distinct codes than we keep: not counted */
            into->c[into->len++] = (struct close_count){from->c[i].code, 0};
        }
        into->c[k].n += from->c[i].n;
    }
}

static void result_merge(struct result *a, const struct result *b)
{
    a->setup.connected += b->setup.connected;
    a->setup.welcomed += b->setup.welcomed;
    a->setup.failed += b->setup.failed;
    a->setup.login_errors += b->setup.login_errors;
    if (!a->setup.start_us || b->setup.start_us < a->setup.start_us)
        a->setup.start_us = b->setup.start_us;
    if (b->setup.end_us > a->setup.end_us)
        a->setup.end_us = b->setup.end_us;
    a->conns += b->conns;
    a->reading += b->reading;
    a->stalled += b->stalled;
    if (b->expect_total > a->expect_total)
        a->expect_total = b->expect_total;
    a->events += b->events;
    a->expected += b->expected;
    a->lost += b->lost;
    a->dups += b->dups;
    a->ooo += b->ooo;
    a->extra += b->extra;
    a->bad_events += b->bad_events;
    a->other_frames += b->other_frames;
    if (b->first_event_us && (!a->first_event_us || b->first_event_us < a->first_event_us))
        a->first_event_us = b->first_event_us;
    if (b->last_event_us > a->last_event_us)
        a->last_event_us = b->last_event_us;
    a->reading_closed += b->reading_closed;
    a->stalled_events += b->stalled_events;
    a->stalled_closed += b->stalled_closed;
    a->proto_errors += b->proto_errors;
    close_merge(&a->closes_reading, &b->closes_reading);
    close_merge(&a->closes_stalled, &b->closes_stalled);
    hist_merge(&a->lat, &b->lat);
    hist_merge(&a->handshake, &b->handshake);
    a->cpu_user_s += b->cpu_user_s;
    a->cpu_sys_s += b->cpu_sys_s;
    if (b->run_s > a->run_s)
        a->run_s = b->run_s;
}

/* Reads exactly n bytes from fd before the monotonic deadline. */
static int read_full(int fd, void *p, size_t n, uint64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        uint64_t now = bench_mono_us();
        if (now >= deadline)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int rc = poll(&pfd, 1, (int)((deadline - now) / 1000 + 1));
        if (rc < 0 && errno == EINTR)
            continue; /* a stop signal: forwarded to the workers, who answer */
        if (rc <= 0)
            continue;
        ssize_t k = read(fd, (char *)p + got, n - got);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

/* Forks procs workers over the connection range; the parent gathers their
 * setup reports (then writes the ready file) and their results. */
static int run_forked(const struct opts *o, uint32_t procs, struct result *total)
{
    int fds[MAX_PROCS];
    int short_of_workers = 0;
    struct result *r = malloc(sizeof(*r));
    if (!r)
        return -1;
    for (uint32_t k = 0; k < procs; k++) {
        uint32_t lo = (uint32_t)((uint64_t)o->conns * k / procs);
        uint32_t hi = (uint32_t)((uint64_t)o->conns * (k + 1) / procs);
        int p[2];
        pid_t pid = -1;
        if (pipe2(p, O_CLOEXEC) == 0 && (pid = fork()) < 0) {
            close(p[0]);
            close(p[1]);
        }
        if (pid < 0) {
            /* Run with the workers we have: their ranges are reported as
             * they are, the missing ones count as never connected. */
            fprintf(stderr, "pb-loadgen: cannot start worker %u: %s\n", k, strerror(errno));
            short_of_workers = 1;
            procs = k;
            break;
        }
        if (pid == 0) {
            g_nchildren = 0;
            close(p[0]);
            int rc = lg_worker_run(o, lo, hi, r, ready_pipe, &p[1]);
            if (rc == 0)
                write_all(p[1], r, sizeof(*r));
            _exit(rc ? 1 : 0);
        }
        close(p[1]);
        fds[k] = p[0];
        g_children[k] = pid;
        g_nchildren = (sig_atomic_t)(k + 1);
    }

    uint64_t deadline = bench_mono_us() + (uint64_t)(o->setup_timeout_s * 1e6) + 10000000u;
    struct setup_msg s, all = {0};
    int rc = short_of_workers ? -1 : 0;
    for (uint32_t k = 0; k < procs; k++) {
        if (read_full(fds[k], &s, sizeof(s), deadline)) {
            fprintf(stderr, "pb-loadgen: worker %u did not report its setup\n", k);
            rc = -1;
            continue;
        }
        all.welcomed += s.welcomed;
        if (!all.start_us || s.start_us < all.start_us)
            all.start_us = s.start_us;
        if (s.end_us > all.end_us)
            all.end_us = s.end_us;
    }
    fprintf(stderr, "pb-loadgen: %llu/%u connections welcomed in %.2f s over %u processes\n",
            (unsigned long long)all.welcomed, o->conns, (double)(all.end_us - all.start_us) / 1e6,
            procs);
    write_ready_file(o->ready_file);

    /* Workers end by themselves within --duration (plus the drain). */
    deadline = bench_mono_us() + (uint64_t)((o->duration_s + 15) * 1e6);
    for (uint32_t k = 0; k < procs; k++) {
        if (read_full(fds[k], r, sizeof(*r), deadline)) {
            fprintf(stderr, "pb-loadgen: worker %u sent no result\n", k);
            kill(g_children[k], SIGKILL); /* a pid > 0: only workers are listed */
            rc = -1;
            continue;
        }
        result_merge(total, r);
    }
    for (uint32_t k = 0; k < procs; k++) {
        close(fds[k]);
        waitpid(g_children[k], NULL, 0);
    }
    free(r);
    return rc;
}

/* ---- the report ---- */

static void json_closes(struct jw *w, const char *key, const struct close_table *t)
{
    jw_obj(w, key);
    for (uint32_t i = 0; i < t->len; i++) {
        char k[16];
        snprintf(k, sizeof(k), "%u", t->c[i].code);
        jw_u64(w, k, t->c[i].n);
    }
    jw_obj_end(w);
}

static void report(const struct opts *o, const struct result *r, uint32_t procs, double wall_s)
{
    struct jw w;
    double setup_s = (double)(r->setup.end_us - r->setup.start_us) / 1e6;
    double recv_s = r->last_event_us > r->first_event_us
                        ? (double)(r->last_event_us - r->first_event_us) / 1e6
                        : 0;
    double cpu = r->cpu_user_s + r->cpu_sys_s;
    jw_begin(&w, stdout);
    jw_u64(&w, "conns", o->conns);
    jw_u64(&w, "ports", o->nports);
    jw_u64(&w, "users", o->users);
    jw_u64(&w, "procs", procs);
    jw_u64(&w, "src_addrs", o->src_addrs);
    jw_u64(&w, "connected", r->setup.connected);
    jw_u64(&w, "welcomed", r->setup.welcomed);
    jw_u64(&w, "failed", r->setup.failed);
    jw_u64(&w, "login_errors", r->setup.login_errors);
    jw_f(&w, "setup_s", setup_s);
    jw_f(&w, "setup_rate", setup_s > 0 ? (double)r->setup.welcomed / setup_s : 0);
    jw_hist(&w, "handshake", &r->handshake);
    jw_u64(&w, "reading", r->reading);
    jw_u64(&w, "stalled", r->stalled);
    jw_u64(&w, "expect_total", r->expect_total);
    jw_u64(&w, "events", r->events);
    jw_u64(&w, "expected", r->expected);
    jw_u64(&w, "lost", r->lost);
    jw_u64(&w, "dup", r->dups);
    jw_u64(&w, "ooo", r->ooo);
    jw_u64(&w, "extra", r->extra);
    jw_u64(&w, "bad_events", r->bad_events);
    jw_u64(&w, "other_frames", r->other_frames);
    jw_u64(&w, "proto_errors", r->proto_errors);
    jw_hist(&w, "lat", &r->lat);
    jw_f(&w, "recv_window_s", recv_s);
    jw_f(&w, "frames_per_s", recv_s > 0 ? (double)r->events / recv_s : 0);
    jw_u64(&w, "reading_closed", r->reading_closed);
    json_closes(&w, "reading_close_codes", &r->closes_reading);
    jw_u64(&w, "stalled_events", r->stalled_events);
    jw_u64(&w, "stalled_closed", r->stalled_closed);
    json_closes(&w, "stalled_close_codes", &r->closes_stalled);
    jw_f(&w, "run_s", r->run_s);
    jw_f(&w, "loadgen_cpu_user_s", r->cpu_user_s);
    jw_f(&w, "loadgen_cpu_sys_s", r->cpu_sys_s);
    jw_f(&w, "loadgen_wall_s", wall_s);
    jw_f(&w, "loadgen_cpu_share", wall_s > 0 ? cpu / wall_s : 0);
    jw_end(&w);
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fputs("Usage: pb-loadgen [options]\n"
          "  --url-host IP        bridge address (IPv4, default 127.0.0.1)\n"
          "  --port P[,P2,...]    public listener port (required); with several (the nodes\n"
          "                       of a cluster), connection i goes to the (i mod K)th\n"
          "  --path PATH          WebSocket path (default /ws)\n"
          "  --conns N            connections (default 100)\n"
          "  --users U            users u0..u(U-1); connection i is user i % U (default N)\n"
          "  --src-addrs K        spread over 127.0.0.2 .. 127.0.0.(K+1) (default 4)\n"
          "  --stall-fraction F   fraction of connections that stop reading (default 0)\n"
          "  --stall-rcvbuf B     SO_RCVBUF of stalled connections (default: kernel's)\n"
          "  --expect-events E    events the producer sends in all (default 0: none)\n"
          "  --expect-file F      ... or read that number from F once F appears\n"
          "  --expect-all         every connection gets every event (broadcast)\n"
          "  --duration S         longest run after setup, seconds (default 30)\n"
          "  --setup-timeout S    longest connection setup, seconds (default 60)\n"
          "  --quiet S            stop once events stopped for S seconds (default 5)\n"
          "  --linger S           read on for S seconds after the last expected event (0.2)\n"
          "  --max-pending K      handshakes in flight at once (default 256)\n"
          "  --procs K            worker processes (default: as the open-file limit needs)\n"
          "  --ready-file F       create F once every connection is welcomed (or failed)\n"
          "Prints one JSON object. SIGINT/SIGTERM end the run early, with the report.\n",
          f);
}

/* "P" or "P1,P2,...": sets ports[], nports and port (the first). */
static int parse_ports(const char *arg, struct opts *o)
{
    o->nports = 0;
    const char *p = arg;
    for (;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > 65535 || o->nports == MAX_PORTS)
            return -1;
        o->ports[o->nports++] = (int)v;
        if (*end == '\0')
            break;
        if (*end != ',')
            return -1;
        p = end + 1;
    }
    o->port = o->ports[0];
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    enum {
        OPT_HOST = 256, OPT_PORT, OPT_PATH, OPT_CONNS, OPT_USERS, OPT_SRC, OPT_STALL, OPT_RCVBUF,
        OPT_EXPECT, OPT_ALL, OPT_EFILE, OPT_DUR, OPT_SETUP, OPT_QUIET, OPT_LINGER, OPT_PENDING,
        OPT_PROCS, OPT_READY
    };
    static const struct option lo[] = {
        {"url-host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"path", required_argument, NULL, OPT_PATH},
        {"conns", required_argument, NULL, OPT_CONNS},
        {"users", required_argument, NULL, OPT_USERS},
        {"src-addrs", required_argument, NULL, OPT_SRC},
        {"stall-fraction", required_argument, NULL, OPT_STALL},
        {"stall-rcvbuf", required_argument, NULL, OPT_RCVBUF},
        {"expect-events", required_argument, NULL, OPT_EXPECT},
        {"expect-all", no_argument, NULL, OPT_ALL},
        {"expect-file", required_argument, NULL, OPT_EFILE},
        {"duration", required_argument, NULL, OPT_DUR},
        {"setup-timeout", required_argument, NULL, OPT_SETUP},
        {"quiet", required_argument, NULL, OPT_QUIET},
        {"linger", required_argument, NULL, OPT_LINGER},
        {"max-pending", required_argument, NULL, OPT_PENDING},
        {"procs", required_argument, NULL, OPT_PROCS},
        {"ready-file", required_argument, NULL, OPT_READY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.host = "127.0.0.1", .path = "/ws", .conns = 100, .src_first = 2,
                       .src_addrs = 4, .duration_s = 30, .setup_timeout_s = 60, .quiet_s = 5,
                       .linger_s = 0.2, .max_pending = 256};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case OPT_HOST: o->host = optarg; break;
        case OPT_PORT:
            if (parse_ports(optarg, o))
                o->nports = 0;
            break;
        case OPT_PATH: o->path = optarg; break;
        case OPT_CONNS: o->conns = (uint32_t)strtoul(optarg, NULL, 10); break;
        case OPT_USERS: o->users = (uint32_t)strtoul(optarg, NULL, 10); break;
        case OPT_SRC: o->src_addrs = (uint32_t)strtoul(optarg, NULL, 10); break;
        case OPT_STALL: o->stall_fraction = atof(optarg); break;
        case OPT_RCVBUF: o->stall_rcvbuf = atoi(optarg); break;
        case OPT_EXPECT: o->expect_events = strtoull(optarg, NULL, 10); break;
        case OPT_ALL: o->expect_all = 1; break;
        case OPT_EFILE: o->expect_file = optarg; break;
        case OPT_DUR: o->duration_s = atof(optarg); break;
        case OPT_SETUP: o->setup_timeout_s = atof(optarg); break;
        case OPT_QUIET: o->quiet_s = atof(optarg); break;
        case OPT_LINGER: o->linger_s = atof(optarg); break;
        case OPT_PENDING: o->max_pending = (uint32_t)strtoul(optarg, NULL, 10); break;
        case OPT_PROCS: o->procs = (uint32_t)strtoul(optarg, NULL, 10); break;
        case OPT_READY: o->ready_file = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    struct in_addr a;
    if (o->nports == 0 || o->conns == 0 || inet_pton(AF_INET, o->host, &a) != 1 ||
        o->src_addrs == 0 || o->src_first + o->src_addrs > 255 || o->stall_fraction < 0 ||
        o->stall_fraction > 1 || o->max_pending == 0) {
        fprintf(stderr, "pb-loadgen: bad options (see --help)\n");
        return -1;
    }
    if (o->users == 0 || o->users > o->conns)
        o->users = o->conns;
    return 0;
}

/* Raises the soft open-file limit to the hard one and says how many
 * processes the connections need. */
static uint32_t procs_needed(const struct opts *o)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    uint64_t per = rl.rlim_cur > FD_MARGIN * 2 ? rl.rlim_cur - FD_MARGIN : FD_MARGIN;
    uint64_t n = o->procs ? o->procs : (o->conns + per - 1) / per;
    return (uint32_t)(n > MAX_PROCS ? MAX_PROCS : n);
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

    uint64_t t0 = bench_mono_us();
    uint32_t procs = procs_needed(&o);
    struct result *total = calloc(1, sizeof(*total));
    if (!total)
        return 1;
    int rc;
    if (procs <= 1) {
        procs = 1;
        struct single_ready sr = {.o = &o, .conns = o.conns};
        rc = lg_worker_run(&o, 0, o.conns, total, ready_single, &sr);
    } else {
        rc = run_forked(&o, procs, total);
        double u, s;
        bench_cpu_self(&u, &s); /* the parent's own share; workers reported theirs */
        total->cpu_user_s += u;
        total->cpu_sys_s += s;
    }
    report(&o, total, procs, (double)(bench_mono_us() - t0) / 1e6);
    free(total);
    return rc ? 1 : 0;
}
