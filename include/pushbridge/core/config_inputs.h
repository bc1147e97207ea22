/* kafka.inputs (SPEC 12): per-topic rules that say how to read the topics a
 * company already has. Parsed and checked once, from the config file or a
 * JSON environment variable, into this form, so that the reader
 * (event/input.c) only follows what was resolved here: which source, the
 * pointer already split into tokens, the regex already compiled. */
#ifndef PB_CONFIG_INPUTS_H
#define PB_CONFIG_INPUTS_H

#include <regex.h>
#include <stddef.h>
#include <stdio.h>

/* Bound: rules in kafka.inputs, and the values listed for one `final`. */
#define PB_INPUTS_MAX_RULES 64
#define PB_INPUTS_MAX_FINAL 16

enum pb_input_format { PB_INPUT_ENVELOPE = 0, PB_INPUT_JSON, PB_INPUT_CLOUDEVENTS };

enum pb_source_kind {
    PB_SRC_UNSET = 0, /* the format's default */
    PB_SRC_KEY,       /* the Kafka key */
    PB_SRC_HEADER,    /* header:NAME */
    PB_SRC_FIELD,     /* field:/json/pointer (RFC 6901) */
    PB_SRC_CE,        /* ce:NAME, a CloudEvents attribute or extension */
    PB_SRC_LITERAL,   /* the text itself */
};

/* One source, resolved: `name` is the header name, the attribute name or
 * the literal; a pointer is kept split into its unescaped tokens. */
struct pb_input_source {
    int kind;    /* enum pb_source_kind */
    char *spec;  /* as written in the config ("field:/customer/id"), for messages */
    char *name;  /* header / attribute name, or the literal */
    size_t name_len;
    char **tokens; /* PB_SRC_FIELD: the reference tokens, "~1" already "/" */
    size_t *token_lens;
    size_t ntokens;
};

/* A value `final` compares against: a string (decoded) or the JSON text of
 * a number or boolean. */
struct pb_input_final_value {
    char *text;
    size_t len;
    int is_string;
};

/* One rule. Owned by the config; read-only once the loop starts, so any
 * thread may read it. */
struct pb_input_rule {
    char *topic;  /* a name, or ^regex */
    int is_regex;
    regex_t re;   /* compiled when is_regex */
    int format;   /* enum pb_input_format */
    struct pb_input_source target, event, id, task, final_src;
    struct pb_input_final_value final_values[PB_INPUTS_MAX_FINAL];
    size_t nfinal;
};

struct pb_inputs {
    struct pb_input_rule *items;
    size_t n;
};

/* "envelope", "json", "cloudevents". */
const char *pb_input_format_name(int format);

/* Parses a JSON text (a list of rule objects; "" or blank = no rules) into
 * out, checking every rule. Returns 0, or -1 with errstr naming the rule by
 * its position and key ("kafka.inputs[1].target: ..."). */
int pb_inputs_parse_text(struct pb_inputs *out, const char *text, char *errstr, size_t errlen);

/* The same from a parsed yajl value (the config file). */
struct yajl_val_s;
int pb_inputs_parse_json(struct pb_inputs *out, const struct yajl_val_s *v, char *errstr,
                         size_t errlen);

void pb_inputs_free(struct pb_inputs *in);

/* The first rule whose topic matches, or NULL (the envelope of SPEC 1). */
const struct pb_input_rule *pb_inputs_match(const struct pb_inputs *in, const char *topic,
                                            size_t *index);

/* Writes the rules back as JSON (for --check-config). */
void pb_inputs_dump(const struct pb_inputs *in, FILE *out);

#endif
