/* The loader of the settings: the JSON file parser, the environment overrides, pb_config_set()
 * and the defaults, all driven by the table of config_table.c (one row per setting: its key,
 * type, place in struct pb_config, range or names, default and help). Values are stored through
 * the row, so adding a setting is adding a row there. Errors are written into (errstr, errlen)
 * and name the key; nothing here prints, logs or exits. */
#include "pushbridge/core/config.h"
#include "config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>

#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#define MAX_FILE_BYTES (1024 * 1024) /* a config file is small; refuse to slurp anything huge */
#define MAX_DEPTH      16        /* yajl_tree_free() recurses; settings nest three deep */

/* ---- errors ---- */

int pb_config_fail(char *errstr, size_t errlen, const char *fmt, ...)
{
    if (errstr && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Adds where a bad value came from (" (in FILE)") to a message a setter wrote. */
static int fail_context(char *errstr, size_t errlen, const char *fmt, const char *what)
{
    if (errstr && errlen) {
        size_t used = strnlen(errstr, errlen);
        if (used + 1 < errlen)
            snprintf(errstr + used, errlen - used, fmt, what);
    }
    return -1;
}

/* Copies s for an error message: truncated, control bytes as '?'. */
const char *pb_config_sanitize(char *buf, size_t n, const char *s)
{
    size_t o = 0;
    for (; *s && o + 4 < n; s++)
        buf[o++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    if (*s && n > 4) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

/* Quotes s for "got ..." in an error message; a secret is never echoed. */
const char *pb_config_quote(char *buf, size_t n, const char *s, unsigned flags)
{
    char inner[48];
    if (flags & F_SECRET)
        snprintf(buf, n, "a string");
    else
        snprintf(buf, n, "\"%s\"", pb_config_sanitize(inner, sizeof(inner), s));
    return buf;
}

/* Names what a JSON value is, for "expected X, got Y". */
static const char *describe(char *buf, size_t n, yajl_val v, unsigned flags)
{
    switch (v->type) {
    case yajl_t_string:
        return pb_config_quote(buf, n, v->u.string, flags);
    case yajl_t_number:
        return flags & F_SECRET ? "a number" : pb_config_sanitize(buf, n, v->u.number.r);
    case yajl_t_object:
        return "an object";
    case yajl_t_array:
        return "an array";
    case yajl_t_true:
        return "true";
    case yajl_t_false:
        return "false";
    default:
        return "null";
    }
}

/* ---- table access ---- */

static const struct setting *find_setting(const char *key)
{
    size_t n;
    const struct setting *settings = pb_config_table(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(settings[i].key, key) == 0)
            return &settings[i];
    return NULL;
}

/* True when key names a section ("ws"), i.e. some setting is "key.something". */
static int is_section(const char *key)
{
    size_t n = strlen(key), nsettings;
    const struct setting *settings = pb_config_table(&nsettings);
    for (size_t i = 0; i < nsettings; i++)
        if (strncmp(settings[i].key, key, n) == 0 && settings[i].key[n] == '.')
            return 1;
    return 0;
}

/* "ws.ping_interval_ms" -> "PUSHBRIDGE_WS_PING_INTERVAL_MS" */
void pb_config_env_name(const struct setting *s, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "PUSHBRIDGE_");
    for (const char *k = s->key; *k && o + 1 < n; k++)
        buf[o++] = *k == '.' ? '_' : (char)toupper((unsigned char)*k);
    buf[o < n ? o : n - 1] = '\0';
}

/* ---- owned lists ---- */

static void strlist_free(struct pb_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void kvlist_free(struct pb_kvlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* Appends a copy of s[0..len). */
static int strlist_add(struct pb_strlist *l, const char *s, size_t len)
{
    char **items = realloc(l->items, (l->n + 1) * sizeof(*items));
    if (!items)
        return -1;
    l->items = items;
    if (!(items[l->n] = strndup(s, len)))
        return -1;
    l->n++;
    return 0;
}

/* Sets key to value, replacing an earlier value of the same key (the later one wins, as in
 * librdkafka). */
static int kvlist_put(struct pb_kvlist *l, const char *key, size_t klen, const char *value,
                      size_t vlen)
{
    char *k = strndup(key, klen), *v = strndup(value, vlen);
    if (!k || !v)
        goto fail;
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].key, k) == 0) {
            free(k);
            free(l->items[i].value);
            l->items[i].value = v;
            return 0;
        }
    }
    struct pb_kv *items = realloc(l->items, (l->n + 1) * sizeof(*items));
    if (!items)
        goto fail;
    l->items = items;
    items[l->n].key = k;
    items[l->n].value = v;
    l->n++;
    return 0;
fail:
    free(k);
    free(v);
    return -1;
}

static int kvlist_copy(struct pb_kvlist *dst, const struct pb_kvlist *src)
{
    for (size_t i = 0; i < src->n; i++) {
        const struct pb_kv *kv = &src->items[i];
        if (kvlist_put(dst, kv->key, strlen(kv->key), kv->value, strlen(kv->value)) < 0)
            return -1;
    }
    return 0;
}

/* ---- storing typed values: shared by the JSON and the string paths ---- */

static int store_string(struct pb_config *c, const struct setting *s, const char *v,
                        const char *shown, char *errstr, size_t errlen)
{
    char **field = FIELD_PTR(c, s, char *);
    char *copy = NULL;
    if (!v || !*v) {
        /* An optional string is unset by null or ""; "" is how the environment says null. */
        if (!(s->flags & F_OPTIONAL))
            return pb_config_fail(errstr, errlen, "%s: expected a non-empty string, got %s", s->key, shown);
    } else if (!(copy = strdup(v))) {
        return pb_config_fail(errstr, errlen, "%s: out of memory", s->key);
    }
    free(*field);
    *field = copy;
    return 0;
}

static int store_int(struct pb_config *c, const struct setting *s, int ok, int64_t v,
                     const char *shown, char *errstr, size_t errlen)
{
    if (!ok || v < s->min || v > s->max)
        return pb_config_fail(errstr, errlen,
                    "%s: expected an integer between %" PRId64 " and %" PRId64 ", got %s", s->key,
                    s->min, s->max, shown);
    *FIELD_PTR(c, s, int64_t) = v;
    return 0;
}

static int store_enum(struct pb_config *c, const struct setting *s, const char *v,
                      const char *shown, char *errstr, size_t errlen)
{
    char names[128] = "";
    for (int i = 0; s->names[i]; i++) {
        if (v && strcmp(v, s->names[i]) == 0) {
            *FIELD_PTR(c, s, int) = i;
            return 0;
        }
        size_t o = strlen(names);
        snprintf(names + o, sizeof(names) - o, "%s%s", i ? ", " : "", s->names[i]);
    }
    return pb_config_fail(errstr, errlen, "%s: expected one of %s, got %s", s->key, names, shown);
}

/* Lists are built aside and swapped in, so a failed set leaves the old value intact. */
static void store_strlist(struct pb_config *c, const struct setting *s, struct pb_strlist *l)
{
    struct pb_strlist *field = FIELD_PTR(c, s, struct pb_strlist);
    strlist_free(field);
    *field = *l;
}

static void store_kvlist(struct pb_config *c, const struct setting *s, struct pb_kvlist *l)
{
    struct pb_kvlist *field = FIELD_PTR(c, s, struct pb_kvlist);
    kvlist_free(field);
    *field = *l;
}

/* ---- from the string form (environment, pb_config_set, table defaults) ---- */

static int parse_int64(const char *v, int64_t *out)
{
    char *end;
    if (!v || !(isdigit((unsigned char)*v) || *v == '-' || *v == '+'))
        return 0;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        return 0;
    *out = n;
    return 1;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"true", "1", "yes"}, *const no[] = {"false", "0", "no"};
    for (size_t i = 0; v && i < 3; i++) {
        if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
            *out = strcasecmp(v, yes[i]) == 0;
            return 1;
        }
    }
    return 0;
}

/* Bounds of the next comma-separated piece of *p, trimmed; advances *p past it. Returns 1 while
 * a comma follows, so "a," yields "a" and then an empty piece. */
int pb_config_next_piece(const char **p, const char **start, size_t *len)
{
    const char *b = *p, *comma = strchr(b, ','), *e = comma ? comma : b + strlen(b);
    *p = comma ? comma + 1 : e;
    while (b < e && isspace((unsigned char)*b))
        b++;
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    *start = b;
    *len = (size_t)(e - b);
    return comma != NULL;
}

int pb_config_is_blank(const char *v)
{
    while (*v && isspace((unsigned char)*v))
        v++;
    return !*v;
}

/* "a,b" -> two items; "" -> the empty list; an empty item is an error, not silently dropped. */
static int set_strlist_str(struct pb_config *c, const struct setting *s, const char *v,
                           char *errstr, size_t errlen)
{
    struct pb_strlist l = {0};
    const char *p = v, *item;
    size_t len;
    for (int more = !pb_config_is_blank(v); more;) {
        more = pb_config_next_piece(&p, &item, &len);
        if (!len) {
            strlist_free(&l);
            return pb_config_fail(errstr, errlen, "%s: empty item in comma-separated list", s->key);
        }
        if (strlist_add(&l, item, len) < 0) {
            strlist_free(&l);
            return pb_config_fail(errstr, errlen, "%s: out of memory", s->key);
        }
    }
    store_strlist(c, s, &l);
    return 0;
}

/* "k=v,k2=v2" merged over the current pairs, so the environment can add one secret property
 * without repeating the file's. A piece without '=' continues the previous value, which keeps
 * "debug=broker,topic" whole. */
static int set_kvlist_str(struct pb_config *c, const struct setting *s, const char *v, char *errstr,
                          size_t errlen)
{
    struct pb_kvlist l = {0};
    const char *p = v, *piece, *key = NULL, *val = NULL, *vend = NULL;
    size_t len, klen = 0;
    if (kvlist_copy(&l, FIELD_PTR(c, s, struct pb_kvlist)) < 0)
        goto oom;
    for (int more = !pb_config_is_blank(v); more;) {
        more = pb_config_next_piece(&p, &piece, &len);
        const char *eq = memchr(piece, '=', len);
        if (!eq) {
            if (!key) {
                kvlist_free(&l);
                return pb_config_fail(errstr, errlen, "%s: expected key=value pairs, comma-separated",
                            s->key);
            }
            vend = piece + len; /* continues the previous value, commas included */
            continue;
        }
        if (key && kvlist_put(&l, key, klen, val, (size_t)(vend - val)) < 0)
            goto oom;
        key = piece;
        for (klen = (size_t)(eq - piece); klen && isspace((unsigned char)key[klen - 1]);)
            klen--;
        if (!klen) {
            kvlist_free(&l);
            return pb_config_fail(errstr, errlen, "%s: empty property name", s->key);
        }
        for (val = eq + 1; isspace((unsigned char)*val);)
            val++;
        vend = piece + len > val ? piece + len : val;
    }
    if (key && kvlist_put(&l, key, klen, val, (size_t)(vend - val)) < 0)
        goto oom;
    store_kvlist(c, s, &l);
    return 0;
oom:
    kvlist_free(&l);
    return pb_config_fail(errstr, errlen, "%s: out of memory", s->key);
}

static int set_from_string(struct pb_config *c, const struct setting *s, const char *v,
                           char *errstr, size_t errlen)
{
    char shown[64];
    int64_t n = 0;
    int b = 0, ok;
    if (v)
        pb_config_quote(shown, sizeof(shown), v, s->flags);
    else
        snprintf(shown, sizeof(shown), "null");

    switch (s->type) {
    case T_STRING:
        return store_string(c, s, v, shown, errstr, errlen);
    case T_INT:
        ok = parse_int64(v, &n);
        return store_int(c, s, ok, n, shown, errstr, errlen);
    case T_BOOL:
        if (!parse_bool(v, &b))
            return pb_config_fail(errstr, errlen, "%s: expected true or false, got %s", s->key, shown);
        *FIELD_PTR(c, s, int) = b;
        return 0;
    case T_ENUM:
        return store_enum(c, s, v, shown, errstr, errlen);
    case T_STRLIST:
        return set_strlist_str(c, s, v ? v : "", errstr, errlen);
    case T_KVLIST:
        return set_kvlist_str(c, s, v ? v : "", errstr, errlen);
    case T_INPUTS:
        return pb_inputs_parse_text(FIELD_PTR(c, s, struct pb_inputs), v, errstr, errlen);
    }
    return pb_config_fail(errstr, errlen, "%s: unsupported type", s->key);
}

/* ---- from JSON (the config file) ---- */

/* A kafka.properties value: librdkafka takes strings, so numbers keep their JSON text. */
static const char *property_text(yajl_val v)
{
    if (YAJL_IS_STRING(v))
        return v->u.string;
    if (YAJL_IS_NUMBER(v))
        return v->u.number.r;
    if (YAJL_IS_TRUE(v))
        return "true";
    if (YAJL_IS_FALSE(v))
        return "false";
    return NULL;
}

static int set_from_json(struct pb_config *c, const struct setting *s, yajl_val v, char *errstr,
                         size_t errlen)
{
    char shown[64];
    const char *got = describe(shown, sizeof(shown), v, s->flags);

    switch (s->type) {
    case T_STRING:
        if (YAJL_IS_NULL(v) || YAJL_IS_STRING(v))
            return store_string(c, s, YAJL_GET_STRING(v), got, errstr, errlen);
        return pb_config_fail(errstr, errlen, "%s: expected a string%s, got %s", s->key,
                    (s->flags & F_OPTIONAL) ? " or null" : "", got);
    case T_INT:
        return store_int(c, s, YAJL_IS_INTEGER(v), YAJL_IS_INTEGER(v) ? YAJL_GET_INTEGER(v) : 0,
                         got, errstr, errlen);
    case T_BOOL:
        if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v))
            return pb_config_fail(errstr, errlen, "%s: expected true or false, got %s", s->key, got);
        *FIELD_PTR(c, s, int) = YAJL_IS_TRUE(v);
        return 0;
    case T_ENUM:
        return store_enum(c, s, YAJL_GET_STRING(v), got, errstr, errlen);
    case T_STRLIST: {
        struct pb_strlist l = {0};
        if (!YAJL_IS_ARRAY(v))
            return pb_config_fail(errstr, errlen, "%s: expected an array of strings, got %s", s->key, got);
        for (size_t i = 0; i < v->u.array.len; i++) {
            yajl_val item = v->u.array.values[i];
            if (!YAJL_IS_STRING(item) || !*item->u.string) {
                strlist_free(&l);
                return pb_config_fail(errstr, errlen, "%s[%zu]: expected a non-empty string, got %s", s->key,
                            i, describe(shown, sizeof(shown), item, s->flags));
            }
            if (strlist_add(&l, item->u.string, strlen(item->u.string)) < 0) {
                strlist_free(&l);
                return pb_config_fail(errstr, errlen, "%s: out of memory", s->key);
            }
        }
        store_strlist(c, s, &l);
        return 0;
    }
    case T_KVLIST: {
        struct pb_kvlist l = {0};
        if (!YAJL_IS_OBJECT(v))
            return pb_config_fail(errstr, errlen, "%s: expected an object, got %s", s->key, got);
        for (size_t i = 0; i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i], *text = property_text(v->u.object.values[i]);
            char name[64];
            if (!*k || !text) {
                kvlist_free(&l);
                if (!*k)
                    return pb_config_fail(errstr, errlen, "%s: empty property name", s->key);
                return pb_config_fail(errstr, errlen, "%s.%s: expected a string, number or boolean, got %s",
                            s->key, pb_config_sanitize(name, sizeof(name), k),
                            describe(shown, sizeof(shown), v->u.object.values[i], 0));
            }
            if (kvlist_put(&l, k, strlen(k), text, strlen(text)) < 0) {
                kvlist_free(&l);
                return pb_config_fail(errstr, errlen, "%s: out of memory", s->key);
            }
        }
        store_kvlist(c, s, &l);
        return 0;
    }
    case T_INPUTS:
        return pb_inputs_parse_json(FIELD_PTR(c, s, struct pb_inputs), v, errstr, errlen);
    }
    return pb_config_fail(errstr, errlen, "%s: unsupported type", s->key);
}

/* Walks {"section": {"name": value}} and top-level {"name": value}; every member must be a
 * setting or a section, so a typo is an error rather than a silently ignored key. */
static int load_object(struct pb_config *c, yajl_val obj, const char *section, const char *path,
                       char *errstr, size_t errlen)
{
    for (size_t i = 0; i < obj->u.object.len; i++) {
        yajl_val v = obj->u.object.values[i];
        char key[128], shown[64];
        int n = section ? snprintf(key, sizeof(key), "%s.%s", section, obj->u.object.keys[i])
                        : snprintf(key, sizeof(key), "%s", obj->u.object.keys[i]);
        const struct setting *s = n < (int)sizeof(key) ? find_setting(key) : NULL;

        if (s) {
            if (set_from_json(c, s, v, errstr, errlen) < 0)
                return fail_context(errstr, errlen, " (in %s)", path);
        } else if (!section && n < (int)sizeof(key) && is_section(key)) {
            if (!YAJL_IS_OBJECT(v))
                return pb_config_fail(errstr, errlen, "%s: expected an object (a section), got %s (in %s)",
                            key, describe(shown, sizeof(shown), v, 0), path);
            if (load_object(c, v, key, path, errstr, errlen) < 0)
                return -1;
        } else {
            return pb_config_fail(errstr, errlen, "unknown setting '%s' in %s",
                        pb_config_sanitize(shown, sizeof(shown), key), path);
        }
    }
    return 0;
}

static int on_open(void *ctx)
{
    return ++*(int *)ctx <= MAX_DEPTH;
}

static int on_close(void *ctx)
{
    --*(int *)ctx;
    return 1;
}

/* A first pass with yajl's event parser, because yajl_tree_parse() reports neither the
 * position of a syntax error nor guards its recursive free against deep nesting. */
static int check_syntax(const char *buf, size_t len, const char *path, char *errstr, size_t errlen)
{
    static const yajl_callbacks cb = {.yajl_start_map = on_open,
                                      .yajl_end_map = on_close,
                                      .yajl_start_array = on_open,
                                      .yajl_end_array = on_close};
    int depth = 0, rc = 0;
    yajl_handle h = yajl_alloc(&cb, NULL, &depth);
    if (!h)
        return pb_config_fail(errstr, errlen, "%s: out of memory", path);
    yajl_config(h, yajl_allow_comments, 1); /* as yajl_tree_parse() allows them */

    yajl_status st = yajl_parse(h, (const unsigned char *)buf, len);
    /* bytes consumed include the offending byte; point at it */
    size_t at = st == yajl_status_ok ? len : yajl_get_bytes_consumed(h);
    if (st != yajl_status_ok && at)
        at--;
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (st != yajl_status_ok) {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < at && i < len; i++, col++) {
            if (buf[i] == '\n') {
                line++;
                col = 0;
            }
        }
        if (st == yajl_status_client_canceled) {
            rc = pb_config_fail(errstr, errlen, "%s:%zu:%zu: JSON nested deeper than %d levels", path, line,
                      col, MAX_DEPTH);
        } else {
            unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
            char text[128];
            snprintf(text, sizeof(text), "%s", msg ? (const char *)msg : "syntax error");
            text[strcspn(text, "\n")] = '\0';
            rc = pb_config_fail(errstr, errlen, "%s:%zu:%zu: invalid JSON: %s", path, line, col, text);
            if (msg)
                yajl_free_error(h, msg);
        }
    }
    yajl_free(h);
    return rc;
}

/* The whole file, NUL-terminated for yajl_tree_parse(). */
static char *read_file(const char *path, size_t *len, char *errstr, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        pb_config_fail(errstr, errlen, "cannot open config file %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(f);
        pb_config_fail(errstr, errlen, "%s: out of memory", path);
        return NULL;
    }
    size_t n = fread(buf, 1, MAX_FILE_BYTES + 1, f);
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err || n > MAX_FILE_BYTES || memchr(buf, '\0', n)) {
        if (err)
            pb_config_fail(errstr, errlen, "cannot read config file %s: %s", path, strerror(err));
        else if (n > MAX_FILE_BYTES)
            pb_config_fail(errstr, errlen, "config file %s is larger than %d bytes", path, MAX_FILE_BYTES);
        else
            pb_config_fail(errstr, errlen, "config file %s contains a NUL byte", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int pb_config_load_file(struct pb_config *c, const char *path, char *errstr, size_t errlen)
{
    size_t len;
    char *buf = read_file(path, &len, errstr, errlen);
    if (!buf)
        return -1;
    if (check_syntax(buf, len, path, errstr, errlen) < 0) {
        free(buf);
        return -1;
    }

    char yerr[256] = "";
    yajl_val root = yajl_tree_parse(buf, yerr, sizeof(yerr));
    free(buf);
    if (!root) {
        yerr[strcspn(yerr, "\n")] = '\0';
        return pb_config_fail(errstr, errlen, "%s: invalid JSON: %s", path, *yerr ? yerr : "syntax error");
    }
    int rc;
    if (!YAJL_IS_OBJECT(root)) {
        char shown[64];
        rc = pb_config_fail(errstr, errlen, "%s: expected a JSON object at the top level, got %s", path,
                  describe(shown, sizeof(shown), root, 0));
    } else {
        rc = load_object(c, root, NULL, path, errstr, errlen);
    }
    yajl_tree_free(root);
    return rc;
}

/* ---- environment and single settings ---- */

int pb_config_apply_env(struct pb_config *c, char *const *envp, char *errstr, size_t errlen)
{
    static const char prefix[] = "PUSHBRIDGE_";
    size_t nsettings;
    const struct setting *settings = pb_config_table(&nsettings);
    for (; envp && *envp; envp++) {
        const char *var = *envp, *eq = strchr(var, '=');
        size_t nlen = eq ? (size_t)(eq - var) : strlen(var);
        const struct setting *s = NULL;
        char name[96];
        if (strncmp(var, prefix, sizeof(prefix) - 1) != 0)
            continue;
        for (size_t i = 0; i < nsettings && !s; i++) {
            pb_config_env_name(&settings[i], name, sizeof(name));
            if (strlen(name) == nlen && strncmp(name, var, nlen) == 0)
                s = &settings[i];
        }
        if (!s) {
            char shown[64];
            snprintf(name, sizeof(name), "%.*s", (int)(nlen < 64 ? nlen : 64), var);
            return pb_config_fail(errstr, errlen, "unknown environment variable %s",
                        pb_config_sanitize(shown, sizeof(shown), name));
        }
        if (set_from_string(c, s, eq ? eq + 1 : "", errstr, errlen) < 0)
            return fail_context(errstr, errlen, " (from %s)", name);
    }
    return 0;
}

int pb_config_set(struct pb_config *c, const char *key, const char *value, char *errstr,
                  size_t errlen)
{
    const struct setting *s = key ? find_setting(key) : NULL;
    char shown[64];
    if (!s)
        return pb_config_fail(errstr, errlen, "unknown setting '%s'",
                    key ? pb_config_sanitize(shown, sizeof(shown), key) : "(null)");
    return set_from_string(c, s, value, errstr, errlen);
}

int pb_config_add_input_topics(struct pb_config *c, char *errstr, size_t errlen)
{
    for (size_t i = 0; i < c->kafka_inputs.n; i++) {
        const char *t = c->kafka_inputs.items[i].topic;
        size_t k = 0;
        while (k < c->kafka_topics.n && strcmp(c->kafka_topics.items[k], t) != 0)
            k++;
        if (k == c->kafka_topics.n && strlist_add(&c->kafka_topics, t, strlen(t)) < 0)
            return pb_config_fail(errstr, errlen, "kafka.inputs: out of memory");
    }
    return 0;
}

/* ---- lifecycle ---- */

int pb_config_init(struct pb_config *c)
{
    size_t n;
    const struct setting *settings = pb_config_table(&n);
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        if (set_from_string(c, &settings[i], settings[i].def, NULL, 0) < 0) {
            pb_config_free(c);
            return -1;
        }
    }
    return 0;
}

void pb_config_apply_dev(struct pb_config *c)
{
    /* Only defaults: the file and the environment, applied afterwards, still win. */
    c->auth_mode = PB_AUTH_NONE;
    c->dashboard_enabled = 1;
    c->dev = 1;
}

void pb_config_free(struct pb_config *c)
{
    if (!c)
        return;
    size_t n;
    const struct setting *settings = pb_config_table(&n);
    for (size_t i = 0; i < n; i++) {
        const struct setting *s = &settings[i];
        if (s->type == T_STRING) {
            free(*FIELD_PTR(c, s, char *));
            *FIELD_PTR(c, s, char *) = NULL;
        } else if (s->type == T_STRLIST) {
            strlist_free(FIELD_PTR(c, s, struct pb_strlist));
        } else if (s->type == T_KVLIST) {
            kvlist_free(FIELD_PTR(c, s, struct pb_kvlist));
        } else if (s->type == T_INPUTS) {
            pb_inputs_free(FIELD_PTR(c, s, struct pb_inputs));
        }
    }
}
