/* The lws transport of http.c's requests: the public listener, and the
 * internal one when it shares the public port or speaks TLS (else httpd.c
 * serves it). Fills a struct pb_http_req from what lws parsed, gathers the
 * body, hands the request to pb_http_handle and writes its answer. The
 * request lives in the connection's slot (*reqp, lws's per-session data),
 * freed when it is answered or the connection closes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/api/http_lws.h"

#include "pushbridge/api/http.h"
#include "pushbridge/core/log.h"

static int write_answer(struct lws *wsi, struct pb_http_req **reqp);

/* Counts the answer and writes it at once. Waiting for WRITEABLE does not
 * work for pipelined requests in lws 4.1: it replays BODY_COMPLETION from
 * its rx buffer until the answer is written, and never asks to write.
 * lws_write() keeps whatever the socket does not take (bounded by
 * PB_HTTP_MAX_ANSWER) and sends it later. Returns what the callback returns. */
static int finish(const struct pb_api_env *env, struct lws *wsi, struct pb_http_req **reqp)
{
    pb_http_done(env, *reqp);
    return write_answer(wsi, reqp);
}

static void req_free(struct pb_http_req **reqp);

/* Sends the answer and ends the transaction. Frees the request first:
 * lws_http_transaction_completed() may drop and free pss itself. */
static int write_answer(struct lws *wsi, struct pb_http_req **reqp)
{
    struct pb_http_req *r = *reqp;
    unsigned char hdr[LWS_PRE + 1024];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
    if (lws_add_http_common_headers(wsi, (unsigned int)r->status, r->content_type, r->answer.len,
                                    &p, end))
        return -1;
    /* lws 4.1 hands a request pipelined behind another the wrong bytes as
     * its body, and replays its callbacks: every answer ends its connection,
     * which is how RFC 7230 6.3.2 lets a server decline pipelining (clients
     * resend what was not answered). The cost is a TCP handshake per call. */
    r->close_after = 1;
    if (r->close_after && lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                                      (const unsigned char *)"close", 5, &p, end))
        return -1;
    if (r->status == 401 &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"www-authenticate:",
                                    (const unsigned char *)"Bearer", 6, &p, end))
        return -1;
    if (r->allow && lws_add_http_header_by_name(
                        wsi, (const unsigned char *)"allow:", (const unsigned char *)r->allow,
                        (int)strlen(r->allow), &p, end))
        return -1;
    /* Files of web/ are revalidated by ETag (a 304 on reload); answers of
     * the API are never cached. */
    const char *cache = r->etag ? "no-cache" : "no-store";
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)cache, (int)strlen(cache), &p, end))
        return -1;
    if (r->etag && lws_add_http_header_by_name(wsi, (const unsigned char *)"etag:",
                                               (const unsigned char *)r->etag,
                                               (int)strlen(r->etag), &p, end))
        return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    /* lws_write wants LWS_PRE writable bytes before the body. */
    unsigned char *body = malloc(LWS_PRE + r->answer.len + 1);
    if (!body)
        return -1;
    memcpy(body + LWS_PRE, r->answer.data ? r->answer.data : "", r->answer.len);
    int n = lws_write(wsi, body + LWS_PRE, r->answer.len, LWS_WRITE_HTTP_FINAL);
    free(body);
    int close_after = r->close_after || n < (int)r->answer.len;
    req_free(reqp);
    if (close_after)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void req_free(struct pb_http_req **reqp)
{
    if (!*reqp)
        return;
    pb_http_req_clear(*reqp);
    free(*reqp);
    *reqp = NULL;
}

/* What lws parsed, copied into the transport-free request: the Authorization
 * header and the query (lws splits it into decoded fragments; they are
 * joined back with '&'). Returns -1 when a copy does not fit. */
static int read_request(struct lws *wsi, struct pb_http_req *r)
{
    char *uri;
    int urilen;
    r->method = lws_http_get_uri_and_method(wsi, &uri, &urilen);
    if (r->method < 0 || r->method > 30)
        r->method = 30; /* unknown: matches no route's methods */
    snprintf(r->path, sizeof(r->path), "%.*s", urilen, uri);
    char *q = strchr(r->path, '?');
    if (q)
        *q = '\0';
    r->path_decoded = r->query_decoded = 1;
    /* Sized for the header, so that a long key can match at all. */
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (total > 0 && total <= 8192) {
        r->auth = malloc((size_t)total + 1);
        if (!r->auth || lws_hdr_copy(wsi, r->auth, total + 1, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
            return -1;
    }
    if (lws_hdr_copy(wsi, r->if_none_match, sizeof(r->if_none_match),
                     WSI_TOKEN_HTTP_IF_NONE_MATCH) < 0)
        r->if_none_match[0] = '\0'; /* too long to be one of ours */
    char frag[PB_HTTP_MAX_QUERY + 1];
    for (int i = 0; lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i) > 0; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, (int)sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            return -1;
        if (i)
            pb_buf_append(&r->query, "&", 1);
        pb_buf_append(&r->query, frag, (size_t)n);
    }
    return r->query.truncated ? -1 : 0;
}

static int begin(const struct pb_api_env *env, struct lws *wsi, struct pb_http_req **reqp)
{
    req_free(reqp);
    struct pb_http_req *r = malloc(sizeof(*r));
    if (!r)
        return -1;
    pb_http_req_init(r, env->cfg);
    *reqp = r;
    if (read_request(wsi, r)) {
        pb_http_answer_error(r, 414, "uri_too_long",
                             "the query or a header is too long; POST a form body for long "
                             "messages");
        return finish(env, wsi, reqp);
    }

    if (r->method == LWSHUMETH_POST || r->method == LWSHUMETH_PUT || r->method == LWSHUMETH_PATCH) {
        /* lws 4.1 frames bodies by Content-Length only; anything else could
         * make it read a body where the client meant a next request. */
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
            pb_http_answer_error(r, 411, "length_required",
                                 "send the body with a Content-Length (Transfer-Encoding is "
                                 "not accepted on this listener)");
            r->close_after = 1;
            return finish(env, wsi, reqp);
        }
        if (pb_http_check_early(env, r)) {
            r->close_after = 1;
            return finish(env, wsi, reqp);
        }
        char cl[32];
        int cln = lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH);
        if (cln == 0 && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) == 0) {
            pb_http_answer_error(r, 411, "length_required", "a request body needs a Content-Length");
            r->close_after = 1;
            return finish(env, wsi, reqp);
        }
        if (cln != 0 && (cln < 0 || strspn(cl, "0123456789") != (size_t)cln || cln > 19)) {
            pb_http_answer_error(r, 400, "bad_request", "Content-Length must be one decimal number");
            r->close_after = 1;
            return finish(env, wsi, reqp);
        }
        if (cln > 0 && strtoll(cl, NULL, 10) > env->cfg->push_max_body_bytes) {
            pb_http_answer_error(r, 413, "payload_too_large", "the body is over push.max_body_bytes");
            r->close_after = 1;
            return finish(env, wsi, reqp);
        }
        return 0; /* wait for the body */
    }
    pb_http_handle(env, r);
    return finish(env, wsi, reqp);
}

int pb_http_callback(const struct pb_api_env *env, struct lws *wsi,
                     enum lws_callback_reasons reason, struct pb_http_req **reqp, void *in,
                     size_t len)
{
    struct pb_http_req *r = *reqp;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return begin(env, wsi, reqp);
    case LWS_CALLBACK_HTTP_BODY:
        if (!r || r->status)
            return 0; /* already answered (413): discard */
        pb_buf_append(&r->body, in, len);
        if (r->body.truncated) {
            pb_http_answer_error(r, 413, "payload_too_large", "the body is over push.max_body_bytes");
            r->close_after = 1;
            return finish(env, wsi, reqp);
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (!r || r->status)
            return 0;
        pb_http_handle(env, r);
        return finish(env, wsi, reqp);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        req_free(reqp);
        return 0;
    default:
        return 0;
    }
}
