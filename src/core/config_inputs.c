/* kafka.inputs: the list of per-topic rules, parsed and checked at start (and
 * by --check-config). Everything a message would otherwise pay for is done
 * here once: the source of each key is decided, a JSON pointer is split into
 * its unescaped tokens, a ^regex topic is compiled. An error names the rule
 * by its position and the key ("kafka.inputs[1].target: ..."). */
#include "pushbridge/core/config_inputs.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#define MAX_ID_BYTES 256 /* as PB_MAX_ID_BYTES in event/envelope.h */

static const char *const format_names[] = {"envelope", "json", "cloudevents", NULL};

const char *pb_input_format_name(int format)
{
    return format >= 0 && format <= PB_INPUT_CLOUDEVENTS ? format_names[format] : "unknown";
}

static int fail(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *errstr, size_t errlen, const char *fmt, ...)
{
    if (errstr && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* s for an error message: cut, control bytes as '?'. */
static const char *shown(char *buf, size_t n, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = '\0';
    return buf;
}

static const char *kind_of(const yajl_val v)
{
    if (YAJL_IS_STRING(v))
        return "a string";
    if (YAJL_IS_NUMBER(v))
        return "a number";
    if (YAJL_IS_OBJECT(v))
        return "an object";
    if (YAJL_IS_ARRAY(v))
        return "an array";
    if (YAJL_IS_NULL(v))
        return "null";
    return "a boolean";
}

static void source_free(struct pb_input_source *s)
{
    free(s->spec);
    free(s->name);
    for (size_t i = 0; i < s->ntokens; i++)
        free(s->tokens[i]);
    free(s->tokens);
    free(s->token_lens);
    memset(s, 0, sizeof(*s));
}

/* Splits an RFC 6901 pointer into its tokens, "~1" -> "/" and "~0" -> "~"
 * (in that order, as section 4 says). "" is the whole value. */
static const char *split_pointer(struct pb_input_source *s, const char *p)
{
    if (*p && *p != '/')
        return "a JSON pointer must be empty or start with '/' (RFC 6901)";
    for (const char *q = p; *q; q++)
        if (*q == '~' && q[1] != '0' && q[1] != '1')
            return "'~' in a JSON pointer must be followed by 0 or 1 (RFC 6901)";
    size_t n = 0;
    for (const char *q = p; *q; q++)
        n += *q == '/';
    s->tokens = calloc(n ? n : 1, sizeof(*s->tokens));
    s->token_lens = calloc(n ? n : 1, sizeof(*s->token_lens));
    if (!s->tokens || !s->token_lens)
        return "out of memory";
    for (const char *q = p; *q;) {
        const char *start = q + 1, *end = strchr(start, '/');
        if (!end)
            end = start + strlen(start);
        char *t = malloc((size_t)(end - start) + 1);
        if (!t)
            return "out of memory";
        size_t o = 0;
        for (const char *c = start; c < end; c++) {
            if (*c == '~') {
                t[o++] = c[1] == '1' ? '/' : '~';
                c++;
            } else {
                t[o++] = *c;
            }
        }
        t[o] = '\0';
        s->tokens[s->ntokens] = t;
        s->token_lens[s->ntokens++] = o;
        q = end;
    }
    return NULL;
}

/* 1 when s starts with a lowercase word and a colon: what a source looks
 * like, so that a misspelt one ("hedaer:id") is an error, not a literal. */
static int looks_like_source(const char *s)
{
    const char *c = s;
    while (*c >= 'a' && *c <= 'z')
        c++;
    return c > s && *c == ':';
}

/* Reads one source; `what` is the rule key, for the checks a key needs. */
static const char *parse_source(struct pb_input_source *s, const char *text, const char *what,
                                int format)
{
    if (!(s->spec = strdup(text)))
        return "out of memory";
    const char *rest = NULL;
    if (strcmp(text, "key") == 0) {
        s->kind = PB_SRC_KEY;
    } else if (strncmp(text, "header:", 7) == 0) {
        s->kind = PB_SRC_HEADER;
        rest = text + 7;
        if (!*rest)
            return "header: needs a header name (header:NAME)";
    } else if (strncmp(text, "field:", 6) == 0) {
        s->kind = PB_SRC_FIELD;
        const char *err = split_pointer(s, text + 6);
        if (err)
            return err;
        rest = text + 6;
    } else if (strncmp(text, "ce:", 3) == 0) {
        s->kind = PB_SRC_CE;
        rest = text + 3;
        if (format != PB_INPUT_CLOUDEVENTS)
            return "ce: sources need \"format\": \"cloudevents\"";
        if (!*rest)
            return "ce: needs an attribute name (ce:NAME)";
        for (const char *c = rest; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')))
                return "a CloudEvents attribute name is lowercase letters and digits";
    } else if (strcmp(what, "target") == 0 && strncmp(text, "group:", 6) == 0) {
        s->kind = PB_SRC_LITERAL;
        rest = text;
        size_t n = strlen(text + 6);
        if (n == 0 || n > MAX_ID_BYTES)
            return "a group name must be 1 to 256 bytes";
    } else if (looks_like_source(text)) {
        return "unknown source (key, header:NAME, field:/json/pointer, ce:NAME, or a literal)";
    } else {
        s->kind = PB_SRC_LITERAL;
        rest = text;
        if (strcmp(what, "id") == 0)
            return "a literal would give every event the same id; name a source";
        if (strcmp(what, "final") == 0)
            return "final needs a source, not a literal";
        if (!*text || strlen(text) > MAX_ID_BYTES)
            return "a literal must be 1 to 256 bytes";
    }
    if (rest && !(s->name = strdup(rest)))
        return "out of memory";
    s->name_len = rest ? strlen(rest) : 0;
    return NULL;
}

static int parse_final(struct pb_input_rule *r, const yajl_val v, const char *at, char *errstr,
                       size_t errlen)
{
    char b[80];
    if (!YAJL_IS_OBJECT(v) || v->u.object.len != 1)
        return fail(errstr, errlen,
                    "%s.final: expected an object with one source and its values, e.g. "
                    "{\"field:/status\": [\"done\", \"failed\"]}",
                    at);
    const char *key = v->u.object.keys[0];
    const char *err = parse_source(&r->final_src, key, "final", r->format);
    if (err)
        return fail(errstr, errlen, "%s.final: '%s': %s", at, shown(b, sizeof(b), key), err);
    yajl_val list = v->u.object.values[0];
    if (!YAJL_IS_ARRAY(list) || list->u.array.len == 0 || list->u.array.len > PB_INPUTS_MAX_FINAL)
        return fail(errstr, errlen, "%s.final: the values must be a list of 1 to %d", at,
                    PB_INPUTS_MAX_FINAL);
    for (size_t i = 0; i < list->u.array.len; i++) {
        yajl_val x = list->u.array.values[i];
        struct pb_input_final_value *fv = &r->final_values[r->nfinal];
        const char *text = YAJL_IS_STRING(x)   ? x->u.string
                           : YAJL_IS_NUMBER(x) ? x->u.number.r
                           : YAJL_IS_TRUE(x)   ? "true"
                           : YAJL_IS_FALSE(x)  ? "false"
                                               : NULL;
        if (!text)
            return fail(errstr, errlen, "%s.final: value %zu: expected a string, number or "
                        "boolean, got %s", at, i, kind_of(x));
        if (!(fv->text = strdup(text)))
            return fail(errstr, errlen, "%s.final: out of memory", at);
        fv->len = strlen(text);
        fv->is_string = YAJL_IS_STRING(x);
        r->nfinal++;
    }
    return 0;
}

static int parse_topic(struct pb_input_rule *r, const yajl_val v, const char *at, char *errstr,
                       size_t errlen)
{
    if (!YAJL_IS_STRING(v) || !*v->u.string)
        return fail(errstr, errlen, "%s.topic: expected a topic name or ^regex, got %s", at,
                    YAJL_IS_STRING(v) ? "an empty string" : kind_of(v));
    if (!(r->topic = strdup(v->u.string)))
        return fail(errstr, errlen, "%s.topic: out of memory", at);
    if (r->topic[0] != '^')
        return 0;
    int rc = regcomp(&r->re, r->topic, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char why[120], b[80];
        regerror(rc, &r->re, why, sizeof(why));
        return fail(errstr, errlen, "%s.topic: '%s' is not a valid regex: %s", at,
                    shown(b, sizeof(b), r->topic), why);
    }
    r->is_regex = 1;
    return 0;
}

static int parse_rule(struct pb_input_rule *r, const yajl_val v, size_t pos, char *errstr,
                      size_t errlen)
{
    char at[40], b[80];
    snprintf(at, sizeof(at), "kafka.inputs[%zu]", pos);
    if (!YAJL_IS_OBJECT(v))
        return fail(errstr, errlen, "%s: expected an object (a rule), got %s", at, kind_of(v));
    /* The format first: which sources are allowed depends on it. */
    yajl_val topic = NULL, format = NULL, final = NULL;
    for (size_t i = 0; i < v->u.object.len; i++) {
        const char *k = v->u.object.keys[i];
        if (strcmp(k, "topic") == 0)
            topic = v->u.object.values[i];
        else if (strcmp(k, "format") == 0)
            format = v->u.object.values[i];
        else if (strcmp(k, "final") == 0)
            final = v->u.object.values[i];
        else if (strcmp(k, "target") && strcmp(k, "event") && strcmp(k, "id") && strcmp(k, "task"))
            return fail(errstr, errlen, "%s: unknown key '%s' (topic, format, target, event, id, "
                        "task, final)", at, shown(b, sizeof(b), k));
    }
    if (!topic)
        return fail(errstr, errlen, "%s: a rule needs a topic", at);
    if (parse_topic(r, topic, at, errstr, errlen))
        return -1;
    if (format) {
        int f = -1;
        for (int i = 0; YAJL_IS_STRING(format) && format_names[i]; i++)
            if (strcmp(format->u.string, format_names[i]) == 0)
                f = i;
        if (f < 0)
            return fail(errstr, errlen, "%s.format: expected one of envelope, json, cloudevents, "
                        "got %s%s%s", at, YAJL_IS_STRING(format) ? "'" : "",
                        YAJL_IS_STRING(format) ? shown(b, sizeof(b), format->u.string)
                                               : kind_of(format),
                        YAJL_IS_STRING(format) ? "'" : "");
        r->format = f;
    }
    for (size_t i = 0; i < v->u.object.len; i++) {
        const char *k = v->u.object.keys[i];
        yajl_val x = v->u.object.values[i];
        struct pb_input_source *s = strcmp(k, "target") == 0  ? &r->target
                                    : strcmp(k, "event") == 0 ? &r->event
                                    : strcmp(k, "id") == 0    ? &r->id
                                    : strcmp(k, "task") == 0  ? &r->task
                                                              : NULL;
        if (!s)
            continue;
        if (!YAJL_IS_STRING(x))
            return fail(errstr, errlen, "%s.%s: expected a source or a literal (a string), got %s",
                        at, k, kind_of(x));
        const char *err = parse_source(s, x->u.string, k, r->format);
        if (err)
            return fail(errstr, errlen, "%s.%s: '%s': %s", at, k,
                        shown(b, sizeof(b), x->u.string), err);
    }
    if (final && parse_final(r, final, at, errstr, errlen))
        return -1;
    return 0;
}

int pb_inputs_parse_json(struct pb_inputs *out, const struct yajl_val_s *cv, char *errstr,
                         size_t errlen)
{
    yajl_val v = (yajl_val)cv;
    struct pb_inputs in = {0};
    if (!YAJL_IS_ARRAY(v))
        return fail(errstr, errlen, "kafka.inputs: expected a list of rules, got %s", kind_of(v));
    if (v->u.array.len > PB_INPUTS_MAX_RULES)
        return fail(errstr, errlen, "kafka.inputs: at most %d rules", PB_INPUTS_MAX_RULES);
    if (v->u.array.len && !(in.items = calloc(v->u.array.len, sizeof(*in.items))))
        return fail(errstr, errlen, "kafka.inputs: out of memory");
    for (size_t i = 0; i < v->u.array.len; i++) {
        in.n++;
        if (parse_rule(&in.items[i], v->u.array.values[i], i, errstr, errlen)) {
            pb_inputs_free(&in);
            return -1;
        }
    }
    pb_inputs_free(out);
    *out = in;
    return 0;
}

int pb_inputs_parse_text(struct pb_inputs *out, const char *text, char *errstr, size_t errlen)
{
    const char *p = text ? text : "";
    while (isspace((unsigned char)*p))
        p++;
    if (!*p) {
        pb_inputs_free(out);
        return 0;
    }
    /* yajl_tree_parse() and its free recurse: a rule list nests five deep. */
    int depth = 0;
    for (const char *c = p; *c; c++) {
        if (*c == '"')
            while (*++c && *c != '"')
                if (*c == '\\' && c[1])
                    c++;
        if (!*c)
            break;
        if ((*c == '[' || *c == '{') && ++depth > 16)
            return fail(errstr, errlen, "kafka.inputs: JSON nested deeper than 16 levels");
        if (*c == ']' || *c == '}')
            depth--;
    }
    char yerr[200] = "";
    yajl_val v = yajl_tree_parse(p, yerr, sizeof(yerr));
    if (!v) {
        yerr[strcspn(yerr, "\n")] = '\0';
        return fail(errstr, errlen, "kafka.inputs: expected a JSON list of rules: %s",
                    *yerr ? yerr : "invalid JSON");
    }
    int rc = pb_inputs_parse_json(out, v, errstr, errlen);
    yajl_tree_free(v);
    return rc;
}

void pb_inputs_free(struct pb_inputs *in)
{
    for (size_t i = 0; i < in->n; i++) {
        struct pb_input_rule *r = &in->items[i];
        free(r->topic);
        if (r->is_regex)
            regfree(&r->re);
        source_free(&r->target);
        source_free(&r->event);
        source_free(&r->id);
        source_free(&r->task);
        source_free(&r->final_src);
        for (size_t k = 0; k < r->nfinal; k++)
            free(r->final_values[k].text);
    }
    free(in->items);
    in->items = NULL;
    in->n = 0;
}

const struct pb_input_rule *pb_inputs_match(const struct pb_inputs *in, const char *topic,
                                            size_t *index)
{
    for (size_t i = 0; i < in->n; i++) {
        const struct pb_input_rule *r = &in->items[i];
        if (r->is_regex ? regexec(&r->re, topic, 0, NULL, 0) == 0 : strcmp(r->topic, topic) == 0) {
            if (index)
                *index = i;
            return r;
        }
    }
    return NULL;
}

static void put_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

void pb_inputs_dump(const struct pb_inputs *in, FILE *out)
{
    fputc('[', out);
    for (size_t i = 0; i < in->n; i++) {
        const struct pb_input_rule *r = &in->items[i];
        fputs(i ? ", {\"topic\": " : "{\"topic\": ", out);
        put_string(out, r->topic);
        fprintf(out, ", \"format\": \"%s\"", pb_input_format_name(r->format));
        const struct pb_input_source *srcs[] = {&r->target, &r->event, &r->id, &r->task};
        const char *names[] = {"target", "event", "id", "task"};
        for (int k = 0; k < 4; k++) {
            if (!srcs[k]->kind)
                continue;
            fprintf(out, ", \"%s\": ", names[k]);
            put_string(out, srcs[k]->spec);
        }
        if (r->final_src.kind) {
            fputs(", \"final\": {", out);
            put_string(out, r->final_src.spec);
            fputs(": [", out);
            for (size_t k = 0; k < r->nfinal; k++) {
                fputs(k ? ", " : "", out);
                if (r->final_values[k].is_string)
                    put_string(out, r->final_values[k].text);
                else
                    fputs(r->final_values[k].text, out);
            }
            fputs("]}", out);
        }
        fputc('}', out);
    }
    fputc(']', out);
}
