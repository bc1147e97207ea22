/* The settings table as the config module's files share it: the table
 * (config_table.c), the loader (config.c), the checks (config_check.c) and
 * the printers (config_print.c): the row type, its flags, and the helpers
 * they need. Private to src/core/config*.c; everything else goes through
 * pushbridge/core/config.h. */
#ifndef PB_CONFIG_INTERNAL_H
#define PB_CONFIG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pushbridge/core/config.h"

enum setting_type { T_STRING, T_INT, T_BOOL, T_ENUM, T_STRLIST, T_KVLIST, T_INPUTS };

#define F_OPTIONAL 0x1 /* string may be unset (JSON null, or "" anywhere) */
#define F_SECRET   0x2 /* never echoed: masked in the dump and in error messages */

struct setting {
    const char *key; /* "section.name", or "name" at the top level */
    enum setting_type type;
    size_t offset;            /* into struct pb_config */
    int64_t min, max;         /* T_INT only */
    const char *def;          /* string form, as the environment would give it; NULL = unset */
    const char *const *names; /* T_ENUM: NULL-terminated, indexed by the enum's value */
    unsigned flags;
    const char *help;
};

#define FIELD_PTR(c, s, T) ((T *)(void *)((char *)(c) + (s)->offset))

/* The table, in its order (sections contiguous); *n gets its length. */
const struct setting *pb_config_table(size_t *n);

/* "ws.ping_interval_ms" -> "PUSHBRIDGE_WS_PING_INTERVAL_MS" */
void pb_config_env_name(const struct setting *s, char *buf, size_t n);

/* Bounds of the next comma-separated piece of *p, trimmed; advances *p past it. Returns 1 while
 * a comma follows, so "a," yields "a" and then an empty piece. */
int pb_config_next_piece(const char **p, const char **start, size_t *len);

/* Writes the message into errstr; returns -1 (config.c's error path). */
int pb_config_fail(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* s for an error message: quoted, truncated, control bytes as '?', masked
 * when flags has F_SECRET. */
const char *pb_config_quote(char *buf, size_t n, const char *s, unsigned flags);

/* s copied for an error message: truncated, control bytes as '?'. */
const char *pb_config_sanitize(char *buf, size_t n, const char *s);

/* 1 when v holds only white space. */
int pb_config_is_blank(const char *v);

#endif
