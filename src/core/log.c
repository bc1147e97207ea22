/* Logging: text lines for people, JSON lines for collectors. Lines are
 * built in a stack buffer and written with one fwrite so that a line is never
 * interleaved with librdkafka's or lws's own output. Any thread logs (the
 * workers, librdkafka's callbacks); the file is swapped on SIGHUP by the loop,
 * so the write and the swap hold one mutex (the line is built outside it). */
#include "pushbridge/core/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pushbridge/core/buf.h"

static int log_level = PB_LOG_INFO;
static int log_format = PB_LOG_TEXT;
/* log_fp and log_path are read and changed under log_lock only: a writer
 * never holds a FILE that the swap has closed. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_fp;
static char *log_path;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int pb_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

int pb_log_init(int level, int format, const char *file, char *errstr, size_t errlen)
{
    log_level = level;
    log_format = format;
    if (!file)
        return 0;
    FILE *fp = fopen(file, "a");
    if (!fp) {
        snprintf(errstr, errlen, "log.file: cannot open %s: %s", file, strerror(errno));
        return -1;
    }
    char *copy = strdup(file);
    if (!copy) {
        fclose(fp);
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    pb_log_close();
    setvbuf(fp, NULL, _IOLBF, 0);
    pthread_mutex_lock(&log_lock);
    log_fp = fp;
    log_path = copy;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void pb_log_reopen(void)
{
    pthread_mutex_lock(&log_lock);
    if (!log_path) {
        pthread_mutex_unlock(&log_lock);
        return;
    }
    /* After a failed reopen log_fp is NULL: open afresh then. */
    FILE *fp = log_fp ? freopen(log_path, "a", log_fp) : fopen(log_path, "a");
    int err = errno;
    if (fp)
        setvbuf(fp, NULL, _IOLBF, 0);
    /* A failed freopen closed the old stream: stderr rather than lose lines. */
    log_fp = fp;
    pthread_mutex_unlock(&log_lock);
    if (!fp) /* log_path stays: only the loop changes it, and it is here */
        pb_error("cannot reopen log file %s: %s; logging to stderr", log_path, strerror(err));
}

void pb_log_close(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_fp)
        fclose(log_fp);
    log_fp = NULL;
    free(log_path);
    log_path = NULL;
    pthread_mutex_unlock(&log_lock);
}

int pb_log_enabled(int level)
{
    return level >= log_level;
}

void pb_log(int level, const char *fmt, ...)
{
    if (level < log_level || level < 0 || level > PB_LOG_ERROR)
        return;

    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    /* Worst case every byte of msg becomes a 6-byte \u00XX escape. */
    char line[sizeof(msg) * 6 + 128];
    struct pb_buf b;
    pb_buf_init_static(&b, line, sizeof(line));
    if (log_format == PB_LOG_JSON) {
        pb_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", when, level_names[level]);
        pb_buf_json_string(&b, msg, strlen(msg));
        pb_buf_append(&b, "}\n", 2);
    } else {
        pb_buf_printf(&b, "%s %-5s %s\n", when, level_names[level], msg);
    }
    pthread_mutex_lock(&log_lock);
    FILE *out = log_fp ? log_fp : stderr;
    fwrite(b.data, 1, b.len, out);
    fflush(out);
    pthread_mutex_unlock(&log_lock);
}
