/* RFC 6901 JSON Pointer over raw JSON text: the value a pointer names is
 * found by scanning the bytes, without building a tree, and returned as the
 * span of the text it occupies, so that a caller forwards it unchanged or
 * decodes only the one string it needs. */
#ifndef PB_JSON_POINTER_H
#define PB_JSON_POINTER_H

#include <stddef.h>

/* Finds the value named by the pointer's reference tokens (already
 * unescaped: "~1" is "/") in json, which must be valid JSON text. Returns 1
 * with *span / *spanlen set to the value's raw text, 0 when the pointer
 * names nothing (a missing member, an index past the end, "-", a scalar on
 * the way). No tokens names the whole text (whitespace trimmed). Of
 * duplicate member names the last counts, as in the envelope. */
int pb_json_pointer_find(const char *json, size_t len, char *const *tokens,
                         const size_t *token_lens, size_t ntokens, const char **span,
                         size_t *spanlen);

/* Decodes the JSON string at span (quotes included, valid JSON) into out,
 * NUL-terminated. An unpaired surrogate escape becomes U+FFFD, as in the
 * envelope's data text. Returns the decoded length, or -1 when it (and its
 * NUL) does not fit in cap bytes. */
long pb_json_string_decode(const char *span, size_t n, char *out, size_t cap);

/* One member of a JSON object: its name as written (between the quotes,
 * escapes not decoded) and its value's raw text. */
struct pb_json_member {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Lists the members of the top-level object of json (valid JSON text) in
 * one pass, at most max of them. Returns how many there are in all (more
 * than max: only the first max were listed), or -1 when json is not an
 * object. */
long pb_json_members(const char *json, size_t len, struct pb_json_member *out, size_t max);

/* The span trimmed of JSON whitespace. */
const char *pb_json_trim(const char *s, size_t n, size_t *outlen);

#endif
