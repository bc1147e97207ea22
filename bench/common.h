/* What the bench tools (pb-loadgen, pb-produce, pb-sendref) share: clocks, a
 * log-linear latency histogram and a small JSON writer for their one-object
 * reports. Not part of pushbridge; nothing here is installed. */
#ifndef PB_BENCH_COMMON_H
#define PB_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>

/* Wall clock in µs (CLOCK_REALTIME): what event timestamps carry, so that a
 * producer and a load generator in different processes agree. */
uint64_t bench_realtime_us(void);
/* Monotonic µs, for durations and deadlines. */
uint64_t bench_mono_us(void);
/* Process CPU (user, system) in seconds, from getrusage(RUSAGE_SELF). */
void bench_cpu_self(double *user_s, double *sys_s);

/* Log-linear histogram: values below 128 are exact, larger ones fall in one
 * of 64 sub-buckets per power of two (error < 1.6 %). Values are clamped at
 * 2^40 µs. Fixed size and plain data, so a worker process can send it to its
 * parent over a pipe as is. */
#define HIST_EXACT 128
#define HIST_SUB 64
#define HIST_MAX_MSB 40
#define HIST_BUCKETS (HIST_EXACT + (HIST_MAX_MSB - 6) * HIST_SUB)

struct hist {
    uint64_t n;
    uint64_t max;
    double sum;
    uint64_t b[HIST_BUCKETS];
};

void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *into, const struct hist *from);
/* The value at percentile pct (0-100): the upper edge of its bucket, never
 * above the largest value seen. 0 when empty. */
uint64_t hist_pct(const struct hist *h, double pct);

/* Writes text to path through path.tmp and a rename, so that a script
 * polling for the file never reads half of it. 0, or -1 (errno set). */
int bench_write_file(const char *path, const char *text);

/* Writes one flat JSON object: jw_begin, then keys, then jw_end. Keys are
 * chosen unique across a report so that shell scripts can pick values out
 * with grep, without a JSON parser. */
struct jw {
    FILE *f;
    int n;      /* members written at the current level */
};

void jw_begin(struct jw *w, FILE *f);
void jw_end(struct jw *w);
void jw_u64(struct jw *w, const char *key, uint64_t v);
void jw_f(struct jw *w, const char *key, double v);
void jw_str(struct jw *w, const char *key, const char *v);
/* A nested object member: jw_obj(w, key) ... jw_obj_end(w). */
void jw_obj(struct jw *w, const char *key);
void jw_obj_end(struct jw *w);
/* p50, p90, p99, p99.9, max and mean of h as <prefix>_p50_us etc. */
void jw_hist(struct jw *w, const char *prefix, const struct hist *h);

#endif
