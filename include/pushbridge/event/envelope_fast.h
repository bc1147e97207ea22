/* The envelope's fast path: one pass over an envelope written the usual way
 * (no escapes in the fields the bridge reads, each field once), with no
 * allocation but the copied field strings. Anything else is left to the
 * full parse in envelope.c, which gives every refusal its message. */
#ifndef PB_ENVELOPE_FAST_H
#define PB_ENVELOPE_FAST_H

#include <stddef.h>

struct pb_event;

/* Returned when the fast path does not decide: ev is untouched and the
 * full parse must run. */
#define PB_ENVELOPE_SLOW (-1)

/* Deepest nesting the fast path follows in a member's value (the root object
 * aside): its bracket stack's size, on the C stack. Deeper text takes the
 * full parse, which has no limit of its own. */
#define PB_ENVELOPE_FAST_MAX_DEPTH 64

/* buf must already be known to be valid UTF-8. Returns PB_DROP_NONE with
 * ev's parsed members set exactly as the full parse would set them, or
 * PB_ENVELOPE_SLOW. flags: PB_ENV_* as for pb_envelope_parse. */
int pb_envelope_parse_fast(const char *buf, size_t len, int flags, struct pb_event *ev);

#endif
