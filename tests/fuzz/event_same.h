/* Whether two parses of one envelope agree on everything a parse sets: the
 * differential check between the envelope's fast path and its full parse,
 * shared by the unit test (test_envelope.c) and the fuzz target. */
#ifndef PB_TEST_EVENT_SAME_H
#define PB_TEST_EVENT_SAME_H

#include <string.h>

#include "pushbridge/event/envelope.h"

static int pb_test_str_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* NULL is its own value here, whatever length goes with it. */
static int pb_test_bytes_same(const char *a, size_t alen, const char *b, size_t blen)
{
    if (!a || !b)
        return !a && !b;
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* 1 when a and b (both parsed with PB_DROP_NONE) hold the same event. */
static int pb_test_event_same(const struct pb_event *a, const struct pb_event *b)
{
    return pb_test_str_same(a->event, b->event) && pb_test_str_same(a->id, b->id) &&
           pb_test_str_same(a->user_id, b->user_id) && pb_test_str_same(a->task, b->task) &&
           pb_test_str_same(a->group, b->group) && a->final == b->final &&
           pb_test_bytes_same(a->data, a->data_len, b->data, b->data_len) &&
           pb_test_bytes_same(a->data_text, a->data_text_len, b->data_text, b->data_text_len) &&
           a->data_is_string == b->data_is_string;
}

#endif
