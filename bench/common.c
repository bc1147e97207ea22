/* Clocks, histogram and JSON writer shared by the bench tools (common.h). */
#include "common.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static uint64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t bench_realtime_us(void)
{
    return clock_us(CLOCK_REALTIME);
}

uint64_t bench_mono_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}

void bench_cpu_self(double *user_s, double *sys_s)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys_s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- histogram ---- */

static unsigned msb(uint64_t v)
{
    return 63u - (unsigned)__builtin_clzll(v);
}

static size_t bucket_of(uint64_t v)
{
    if (v < HIST_EXACT)
        return (size_t)v;
    unsigned m = msb(v);                   /* >= 7 */
    uint64_t top = v >> (m - 6);           /* 64..127: the 7 leading bits */
    return HIST_EXACT + (size_t)(m - 7) * HIST_SUB + (size_t)(top - HIST_SUB);
}

/* The largest value that falls in bucket i. */
static uint64_t bucket_top(size_t i)
{
    if (i < HIST_EXACT)
        return (uint64_t)i;
    size_t k = i - HIST_EXACT;
    unsigned m = (unsigned)(k / HIST_SUB) + 7;
    uint64_t top = (uint64_t)(k % HIST_SUB) + HIST_SUB;
    return ((top + 1) << (m - 6)) - 1;
}

void hist_add(struct hist *h, uint64_t v)
{
    const uint64_t cap = (1ull << HIST_MAX_MSB) - 1;
    if (v > cap)
        v = cap;
    h->b[bucket_of(v)]++;
    h->n++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->n += from->n;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t hist_pct(const struct hist *h, double pct)
{
    if (!h->n)
        return 0;
    uint64_t rank = (uint64_t)ceil(pct / 100.0 * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = bucket_top(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

/* ---- JSON ---- */

void jw_begin(struct jw *w, FILE *f)
{
    w->f = f;
    w->n = 0;
    fputc('{', f);
}

void jw_end(struct jw *w)
{
    fputs("}\n", w->f);
    fflush(w->f);
}

static void key(struct jw *w, const char *k)
{
    fprintf(w->f, "%s\"%s\":", w->n++ ? "," : "", k);
}

void jw_u64(struct jw *w, const char *k, uint64_t v)
{
    key(w, k);
    fprintf(w->f, "%llu", (unsigned long long)v);
}

void jw_f(struct jw *w, const char *k, double v)
{
    key(w, k);
    if (isfinite(v))
        fprintf(w->f, "%.6g", v);
    else
        fputs("null", w->f);
}

/* Values written here are our own option strings: quote and backslash are
 * escaped, control characters dropped. */
void jw_str(struct jw *w, const char *k, const char *v)
{
    key(w, k);
    fputc('"', w->f);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            fputc('\\', w->f);
        if ((unsigned char)*p >= 0x20)
            fputc(*p, w->f);
    }
    fputc('"', w->f);
}

void jw_obj(struct jw *w, const char *k)
{
    key(w, k);
    fputc('{', w->f);
    w->n = 0;
}

void jw_obj_end(struct jw *w)
{
    fputc('}', w->f);
    w->n = 1; /* the object itself was a member of the enclosing level */
}

void jw_hist(struct jw *w, const char *prefix, const struct hist *h)
{
    static const struct {
        const char *name;
        double pct;
    } pcts[] = {{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p999", 99.9}};
    char k[64];
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        snprintf(k, sizeof(k), "%s_%s_us", prefix, pcts[i].name);
        jw_u64(w, k, hist_pct(h, pcts[i].pct));
    }
    snprintf(k, sizeof(k), "%s_max_us", prefix);
    jw_u64(w, k, h->max);
    snprintf(k, sizeof(k), "%s_mean_us", prefix);
    jw_f(w, k, h->n ? h->sum / (double)h->n : 0.0);
    snprintf(k, sizeof(k), "%s_count", prefix);
    jw_u64(w, k, h->n);
}

int bench_write_file(const char *path, const char *text)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    return bad || rename(tmp, path) ? -1 : 0;
}
