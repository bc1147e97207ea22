/* pb-loadgen's parts: the options, what a worker process reports, and the
 * worker itself (lg_worker.c). loadgen.c splits the connections over worker
 * processes and prints the report. */
#ifndef PB_BENCH_LOADGEN_H
#define PB_BENCH_LOADGEN_H

#include <signal.h>
#include <stdint.h>

#include "common.h"

#define MAX_CLOSE_CODES 16
#define MAX_PORTS 16 /* --port P1,P2,...: one per cluster node */

/* ---- options ---- */

struct opts {
    const char *host;
    int port;                /* the first of ports[] */
    int ports[MAX_PORTS];    /* connection i goes to ports[i % nports] */
    uint32_t nports;
    const char *path;
    uint32_t conns;
    uint32_t users;
    uint32_t src_first;      /* first source address: 127.0.0.<src_first> */
    uint32_t src_addrs;
    double stall_fraction;
    int stall_rcvbuf;        /* SO_RCVBUF for stalled connections, 0 = kernel default */
    double duration_s;       /* longest run after setup */
    double setup_timeout_s;
    double quiet_s;          /* stop when events stopped arriving this long ago */
    double linger_s;         /* keep reading this long once every event arrived */
    uint64_t expect_events;  /* events the producer sends in all */
    const char *expect_file; /* ... or a file that will hold that number */
    int expect_all;          /* 1: every connection gets every event (key *) */
    uint32_t max_pending;    /* handshakes in flight at once */
    uint32_t procs;          /* 0 = as many as RLIMIT_NOFILE requires */
    const char *ready_file;
};

/* ---- results: plain data, so a worker can write it to a pipe as is ---- */

struct close_count {
    uint32_t code;  /* 0: the connection ended without a close frame */
    uint64_t n;
};

struct close_table {
    uint32_t len;
    struct close_count c[MAX_CLOSE_CODES];
};

struct setup_msg {
    uint64_t connected, welcomed, failed, login_errors;
    uint64_t start_us, end_us; /* monotonic: one clock for every process */
};

struct result {
    struct setup_msg setup;
    uint64_t conns, reading, stalled;
    uint64_t expect_total;   /* what the producer said it sent */
    uint64_t events, expected, lost, dups, ooo, extra, bad_events, other_frames;
    uint64_t first_event_us, last_event_us; /* realtime */
    uint64_t reading_closed;
    uint64_t stalled_events, stalled_closed;
    uint64_t proto_errors;
    struct close_table closes_reading, closes_stalled;
    struct hist lat, handshake;
    double cpu_user_s, cpu_sys_s;
    double run_s;
};

/* Set by SIGINT/SIGTERM: every loop ends its run early, with a report. */
extern volatile sig_atomic_t lg_stop;

/* Runs connections [lo, hi) of o->conns in this process: sets them up, calls
 * ready(arg, setup) once every one is welcomed or failed, reads until the
 * run is over, then fills r. -1 when the worker could not start. */
int lg_worker_run(const struct opts *o, uint32_t lo, uint32_t hi, struct result *r,
                  void (*ready)(void *arg, const struct setup_msg *s), void *arg);

#endif
