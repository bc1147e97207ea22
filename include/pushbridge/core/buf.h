/* A byte buffer that grows up to a cap, for building HTTP bodies, frames and
 * metric pages. Owned by whoever declared it; pb_buf_free releases heap
 * storage. A buffer that hits its cap sets `truncated` and stops growing, so
 * callers never need to check each append: they check once at the end. */
#ifndef PB_BUF_H
#define PB_BUF_H

#include <stddef.h>

struct pb_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;     /* growth limit; 0 = fixed storage (static buffer) */
    int owned;      /* data is heap storage */
    int truncated;  /* an append did not fit (cap reached or OOM) */
};

/* A heap buffer that may grow to max bytes. */
void pb_buf_init(struct pb_buf *b, size_t max);
/* A buffer over caller storage that never grows. */
void pb_buf_init_static(struct pb_buf *b, char *storage, size_t size);
void pb_buf_free(struct pb_buf *b);
void pb_buf_reset(struct pb_buf *b);

/* Makes room for n more bytes; 0 or -1 (cap or OOM, sets truncated). */
int pb_buf_reserve(struct pb_buf *b, size_t n);
void pb_buf_append(struct pb_buf *b, const void *p, size_t n);
void pb_buf_puts(struct pb_buf *b, const char *s);
void pb_buf_printf(struct pb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a quoted JSON string, escaping what RFC 8259 requires. */
void pb_buf_json_string(struct pb_buf *b, const char *s, size_t n);

/* The value of one hex digit, or -1 (%-escapes, chunk sizes). */
int pb_hex_digit(char c);

/* Bytes pb_buf_json_string would write for s (quotes included). */
size_t pb_json_string_len(const char *s, size_t n);
/* Writes the quoted JSON string into out (pb_json_string_len bytes). */
void pb_json_string_write(char *out, const char *s, size_t n);

#endif
