/* Logging: one line per event of note, as text or JSON, to stderr or to
 * log.file, which SIGHUP reopens (pb_log_reopen from the loop, not from the
 * signal handler). pb_log may be called from any thread; init, reopen and
 * close from the loop thread. */
#ifndef PB_LOG_H
#define PB_LOG_H

#include <stddef.h>

#include "pushbridge/core/config.h"

/* Sets level, format and destination (file NULL = stderr). Returns 0, or -1
 * with errstr naming the file that cannot be opened. */
int pb_log_init(int level, int format, const char *file, char *errstr, size_t errlen);

/* Reopens the log file after rotation; a no-op when logging to stderr. */
void pb_log_reopen(void);

/* True when a message at this level would be written. */
int pb_log_enabled(int level);

/* Writes one line: a timestamp, the level and the formatted message. */
void pb_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pb_debug(...) pb_log(PB_LOG_DEBUG, __VA_ARGS__)
#define pb_info(...)  pb_log(PB_LOG_INFO, __VA_ARGS__)
#define pb_warn(...)  pb_log(PB_LOG_WARN, __VA_ARGS__)
#define pb_error(...) pb_log(PB_LOG_ERROR, __VA_ARGS__)

/* "debug"/"info"/"warn"/"error" -> level; -1 when unknown. */
int pb_log_level_parse(const char *s);

void pb_log_close(void);

#endif
