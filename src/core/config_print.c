/* Everything the settings table prints: the effective configuration as JSON
 * (--check-config, secrets masked), the Markdown table in the README
 * (--print-settings) and the man page pushbridge(8) (--print-man). Each walks
 * the table in config.c, so a new row shows up in all three without an edit here. */
#include "pushbridge/core/config.h"
#include "config_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void put_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", out);
        else if (ch == '\t')
            fputs("\\t", out);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

/* librdkafka properties that hold credentials (sasl.password, ssl.key.password, ...). */
static int is_secret_property(const char *key)
{
    return strstr(key, "password") || strstr(key, "secret") || strstr(key, "ssl.key.pem") ||
           strstr(key, "oauthbearer.config");
}

static void put_value(FILE *out, const struct pb_config *c, const struct setting *s)
{
    switch (s->type) {
    case T_STRING: {
        const char *v = *FIELD_PTR(c, s, char *);
        if (!v)
            fputs("null", out);
        else
            put_json_string(out, (s->flags & F_SECRET) ? "***" : v);
        break;
    }
    case T_INT:
        fprintf(out, "%" PRId64, *FIELD_PTR(c, s, int64_t));
        break;
    case T_BOOL:
        fputs(*FIELD_PTR(c, s, int) ? "true" : "false", out);
        break;
    case T_ENUM: {
        int v = *FIELD_PTR(c, s, int), n = 0;
        while (s->names[n])
            n++;
        if (v >= 0 && v < n)
            put_json_string(out, s->names[v]);
        else
            fprintf(out, "%d", v);
        break;
    }
    case T_STRLIST: {
        const struct pb_strlist *l = FIELD_PTR(c, s, struct pb_strlist);
        fputc('[', out);
        for (size_t i = 0; i < l->n; i++) {
            fputs(i ? ", " : "", out);
            put_json_string(out, (s->flags & F_SECRET) ? "***" : l->items[i]);
        }
        fputc(']', out);
        break;
    }
    case T_KVLIST: {
        const struct pb_kvlist *l = FIELD_PTR(c, s, struct pb_kvlist);
        fputc('{', out);
        for (size_t i = 0; i < l->n; i++) {
            fputs(i ? ", " : "", out);
            put_json_string(out, l->items[i].key);
            fputs(": ", out);
            put_json_string(out, is_secret_property(l->items[i].key) ? "***" : l->items[i].value);
        }
        fputc('}', out);
        break;
    }
    case T_INPUTS:
        pb_inputs_dump(FIELD_PTR(c, s, struct pb_inputs), out);
        break;
    }
}

void pb_config_dump(const struct pb_config *c, FILE *out)
{
    const char *section = NULL;
    size_t seclen = 0;
    int top = 0, inner = 0;

    fputc('{', out);
    size_t nsettings;
    const struct setting *settings = pb_config_table(&nsettings);
    for (size_t i = 0; i < nsettings; i++) {
        const struct setting *s = &settings[i];
        const char *dot = strchr(s->key, '.');
        size_t len = dot ? (size_t)(dot - s->key) : 0;
        if (section && (len != seclen || strncmp(s->key, section, len) != 0)) {
            fputs("\n  }", out);
            section = NULL;
        }
        if (dot && !section) {
            fprintf(out, "%s\n  \"%.*s\": {", top++ ? "," : "", (int)len, s->key);
            section = s->key;
            seclen = len;
            inner = 0;
        }
        if (section)
            fprintf(out, "%s\n    \"%s\": ", inner++ ? "," : "", dot + 1);
        else
            fprintf(out, "%s\n  \"%s\": ", top++ ? "," : "", s->key);
        put_value(out, c, s);
    }
    if (section)
        fputs("\n  }", out);
    fputs("\n}\n", out);
}

static void put_type(FILE *out, const struct setting *s, int markdown);

/* The table's default as the JSON a user would write in the file. */
static void put_default(FILE *out, const struct setting *s)
{
    const char *p = s->def, *item;
    size_t len;
    switch (s->type) {
    case T_STRING:
    case T_ENUM:
        if (s->def)
            fprintf(out, "\"%s\"", s->def);
        else
            fputs("null", out);
        break;
    case T_INT:
    case T_BOOL:
        fputs(s->def, out);
        break;
    case T_STRLIST:
        fputc('[', out);
        for (int more = !pb_config_is_blank(p), first = 1; more; first = 0) {
            more = pb_config_next_piece(&p, &item, &len);
            fprintf(out, "%s\"%.*s\"", first ? "" : ", ", (int)len, item);
        }
        fputc(']', out);
        break;
    case T_KVLIST:
        fputs("{}", out);
        break;
    case T_INPUTS:
        fputs("[]", out);
        break;
    }
}

void pb_config_print_table(FILE *out)
{
    fputs("| key | env | type | default | description |\n|---|---|---|---|---|\n", out);
    size_t nsettings;
    const struct setting *settings = pb_config_table(&nsettings);
    for (size_t i = 0; i < nsettings; i++) {
        const struct setting *s = &settings[i];
        char name[96];
        pb_config_env_name(s, name, sizeof(name));
        fprintf(out, "| `%s` | `%s` | ", s->key, name);
        put_type(out, s, 1);
        fputs(" | `", out);
        put_default(out, s);
        fputs("` | ", out);
        for (const char *h = s->help; *h; h++) /* a '|' would end the cell */
            fputs(*h == '|' ? "\\|" : (char[2]){*h, '\0'}, out);
        fputs(" |\n", out);
    }
}

/* ---- man page ---- */

/* Text for a roff paragraph: a backslash is \e, and a line may not start with
 * a '.' or a '\'' (roff would take it for a request). */
static void put_roff(FILE *out, const char *s)
{
    if (*s == '.' || *s == '\'')
        fputs("\\&", out);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
    }
}

static void put_type(FILE *out, const struct setting *s, int markdown)
{
    const char *q = markdown ? "`" : "";
    switch (s->type) {
    case T_STRING:
        fputs((s->flags & F_OPTIONAL) ? "string or null" : "string", out);
        break;
    case T_INT:
        fprintf(out, "integer, %" PRId64 " to %" PRId64, s->min, s->max);
        break;
    case T_BOOL:
        fputs("boolean", out);
        break;
    case T_ENUM:
        for (int n = 0; s->names[n]; n++)
            fprintf(out, "%s%s%s%s", n ? ", " : "one of ", q, s->names[n], q);
        break;
    case T_STRLIST:
        fputs("list of strings", out);
        break;
    case T_KVLIST:
        fputs("object of strings", out);
        break;
    case T_INPUTS:
        fputs("list of rules", out);
        break;
    }
}

/* One setting's entry in SETTINGS: key, variable, help, type and default. */
static void man_setting(FILE *out, const struct setting *s)
{
    char name[96];
    pb_config_env_name(s, name, sizeof(name));
    fprintf(out, ".TP\n\\fB%s\\fR (\\fB", s->key);
    put_roff(out, name);
    fputs("\\fR)\n", out);
    put_roff(out, s->help);
    fputs(".\n.br\n", out);
    put_type(out, s, 0);
    fputs("; default \\fB", out);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (mem) {
        put_default(mem, s);
        fclose(mem);
        put_roff(out, buf);
    }
    free(buf);
    fputs("\\fR.\n", out);
}

void pb_config_print_man(FILE *out, const char *version)
{
    fprintf(out,
            ".\\\" Generated by pushbridge --print-man from the settings table; do not edit.\n"
            ".TH PUSHBRIDGE 8 \"\" \"pushbridge %s\" \"System Administration\"\n"
            ".SH NAME\n"
            "pushbridge \\- Kafka to WebSocket push bridge\n"
            ".SH SYNOPSIS\n"
            ".B pushbridge\n"
            "[\\fB\\-c\\fR \\fIFILE\\fR] [\\fB\\-\\-dev\\fR] [\\fB\\-\\-check\\-config\\fR] "
            "[\\fB\\-\\-log\\-level\\fR \\fILEVEL\\fR]\n"
            ".br\n"
            ".B pushbridge\n"
            "\\fB\\-\\-version\\fR | \\fB\\-\\-print\\-settings\\fR | \\fB\\-\\-print\\-man\\fR "
            "| \\fB\\-\\-help\\fR\n"
            ".SH DESCRIPTION\n"
            "\\fBpushbridge\\fR consumes Kafka topics whose messages are keyed by user ID and "
            "writes each event to every WebSocket connection that user has open. Systems "
            "without Kafka push through an HTTP API on the internal listener, which also "
            "serves \\fB/healthz\\fR, \\fB/readyz\\fR, \\fB/stats\\fR and \\fB/metrics\\fR "
            "(Prometheus).\n"
            ".SH OPTIONS\n"
            ".TP\n\\fB\\-c\\fR, \\fB\\-\\-config\\fR \\fIFILE\\fR\nJSON configuration file.\n"
            ".TP\n\\fB\\-\\-dev\\fR\nEmbedded Kafka (librdkafka's mock cluster), "
            "\\fBauth.mode\\fR none, any origin.\n"
            ".TP\n\\fB\\-\\-check\\-config\\fR\nValidate the configuration, print it with "
            "secrets masked, exit 0 (or 2 naming the bad setting).\n"
            ".TP\n\\fB\\-\\-log\\-level\\fR \\fILEVEL\\fR\ndebug, info, warn or error.\n"
            ".TP\n\\fB\\-\\-print\\-settings\\fR\nPrint the settings table (Markdown) and exit.\n"
            ".TP\n\\fB\\-\\-print\\-man\\fR\nPrint this manual page (roff) and exit.\n"
            ".TP\n\\fB\\-\\-version\\fR\nPrint the version and exit.\n"
            ".SH SETTINGS\n"
            "Every setting is a key of the JSON file (\\fIsection\\fR.\\fIname\\fR is "
            "\\fIname\\fR inside the object \\fIsection\\fR) and can also be set by the "
            "environment variable shown, which wins over the file. Lists are comma-separated "
            "in the environment.\n",
            version);
    size_t nsettings;
    const struct setting *settings = pb_config_table(&nsettings);
    for (size_t i = 0; i < nsettings; i++)
        man_setting(out, &settings[i]);
    fputs(".SH ENVIRONMENT\n"
          ".TP\n\\fBPUSHBRIDGE_\\fR\\fISECTION\\fR\\fB_\\fR\\fIKEY\\fR\n"
          "The settings above. An unknown \\fBPUSHBRIDGE_\\fR variable is an error.\n"
          ".TP\n\\fBNOTIFY_SOCKET\\fR\n"
          "Set by systemd for \\fBType=notify\\fR: the bridge sends READY=1 once its "
          "listeners are up and Kafka partitions are assigned (as \\fB/readyz\\fR answers "
          "200), STATUS= lines, and STOPPING=1 when it starts shutting down.\n"
          ".TP\n\\fBWATCHDOG_USEC\\fR, \\fBWATCHDOG_PID\\fR\n"
          "Set by systemd for \\fBWatchdogSec=\\fR: WATCHDOG=1 is sent from the event loop "
          "at half that interval.\n"
          ".SH SIGNALS\n"
          ".TP\n\\fBSIGTERM\\fR, \\fBSIGINT\\fR\n"
          "Stop accepting, close WebSockets with 1001, commit offsets, exit 0 within "
          "\\fBshutdown_timeout_ms\\fR.\n"
          ".TP\n\\fBSIGHUP\\fR\nReopen \\fBlog.file\\fR.\n"
          ".SH EXIT STATUS\n"
          "0 on a clean stop, 1 when start-up fails (a listener, Kafka, the notify socket), "
          "2 for a configuration error.\n"
          ".SH FILES\n"
          ".TP\n\\fI/etc/pushbridge/pushbridge.json\\fR\nThe configuration the packaged "
          "systemd unit passes.\n"
          ".TP\n\\fI/etc/pushbridge/env\\fR\nOptional environment file of the unit "
          "(secrets as \\fBPUSHBRIDGE_\\fR variables).\n"
          ".SH SEE ALSO\n"
          "\\fBsystemd.service\\fR(5), \\fBsd_notify\\fR(3), \\fBkcat\\fR(1)\n",
          out);
}
