/* The internal listener's HTTP/1.1 server: accept, read, frame (httpparse.c),
 * hand the request to http.c, write the answer, keep the connection for the
 * next one. Requests are answered strictly in order: the next pipelined one
 * is read from the buffer only once the previous answer has left, so one
 * answer per connection is the most ever buffered. Bounds, per connection:
 * the head PB_HTTP_MAX_HEAD, the body push.max_body_bytes, the answer
 * MAX_ANSWER_BYTES (http.c); connections: push.max_connections. */
#include "pushbridge/api/httpd.h"

#include <errno.h>
#include <libwebsockets.h> /* LWSHUMETH_*: the method numbering of struct pb_http_req */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pushbridge/api/http.h"
#include "pushbridge/api/httpparse.h"
#include "pushbridge/core/listener.h"
#include "pushbridge/core/log.h"

#define READ_CHUNK 16384
/* A connection must send a whole request within this time of its first
 * byte (slow senders hold buffers), and may sit idle this long between
 * requests. */
#define REQUEST_TIMEOUT_S 20.
#define IDLE_TIMEOUT_S 60.

/* One HTTP connection: owned by the httpd's list, freed by conn_free. */
struct hconn {
    struct pb_httpd *d;
    int fd;
    ev_io rw, ww;
    ev_timer timer;
    char *in;        /* received, not yet consumed; bound: PB_HTTP_MAX_HEAD + READ_CHUNK */
    size_t in_len, in_cap;
    struct pb_buf out; /* answer bytes not yet written */
    size_t out_off;
    struct pb_http_req req; /* the request being read, once its head is parsed */
    struct pb_http_head head;
    struct pb_chunked ck;
    int in_request;  /* head parsed, body being read */
    int keep_alive;  /* for the request in progress */
    int closing;     /* close once out is written */
    int request_started; /* bytes of a request arrived: the request timer runs */
    int waiting;     /* the answer waits for Kafka (cluster mode, relay.c): reading pauses */
    struct hconn *prev, *next;
};

/* Owned by the server; freed by pb_httpd_free. */
struct pb_httpd {
    struct ev_loop *loop;
    const struct pb_api_env *env; /* the server's, outlives the httpd */
    struct pb_listener *listener; /* accept, with the descriptor-flood discipline */
    struct hconn *conns;
    size_t nconns;
};

static void conn_free(struct hconn *c)
{
    struct pb_httpd *d = c->d;
    struct ev_loop *loop = d->loop;
    ev_io_stop(loop, &c->rw);
    ev_io_stop(loop, &c->ww);
    ev_timer_stop(loop, &c->timer);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        d->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    d->nconns--;
    pb_http_req_clear(&c->req);
    pb_buf_free(&c->out);
    free(c->in);
    free(c);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Writes what out holds; the write watcher takes over when the socket is
 * full. Returns -1 when the connection is gone (c is freed). */
static int flush(struct hconn *c)
{
    struct ev_loop *loop = c->d->loop;
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            ev_io_stop(loop, &c->rw); /* no new request until this answer is out */
            ev_io_start(loop, &c->ww);
            return 0;
        }
        if (n <= 0) {
            conn_free(c);
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out.len = c->out_off = 0;
    ev_io_stop(loop, &c->ww);
    if (c->closing) {
        conn_free(c);
        return -1;
    }
    if (!c->waiting) /* reading pauses while an answer waits for Kafka */
        ev_io_start(loop, &c->rw);
    return 0;
}

/* Serialises the answer in req onto out. */
static void put_answer(struct hconn *c, struct pb_http_req *r)
{
    pb_http_done(c->d->env, r);
    int keep = c->keep_alive && !r->close_after && !c->closing;
    if (!keep)
        c->closing = 1;
    pb_buf_printf(&c->out,
                  "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
                  "cache-control: no-store\r\n",
                  r->status, reason_phrase(r->status),
                  r->content_type ? r->content_type : "application/json", r->answer.len);
    if (r->status == 401)
        pb_buf_puts(&c->out, "www-authenticate: Bearer\r\n");
    if (r->allow)
        pb_buf_printf(&c->out, "allow: %s\r\n", r->allow);
    if (!keep)
        pb_buf_puts(&c->out, "connection: close\r\n");
    else if (c->head.minor == 0)
        pb_buf_puts(&c->out, "connection: keep-alive\r\n");
    pb_buf_puts(&c->out, "\r\n");
    if (r->method != LWSHUMETH_HEAD) /* RFC 9110 9.3.2: the head alone */
        pb_buf_append(&c->out, r->answer.data, r->answer.len);
}

/* An answer to a request whose framing is broken: the rest of the input
 * cannot be trusted, so the connection ends after it. It counts as a push
 * request when the head named a push route (c->req, once begin_request
 * filled it; head_parsed says so). */
static void refuse_counted(struct hconn *c, int status, const char *code, const char *why,
                           int is_push)
{
    struct pb_http_req r;
    pb_http_req_init(&r, c->d->env->cfg);
    r.is_push = is_push;
    pb_http_answer_error(&r, status, code, why);
    r.close_after = 1;
    put_answer(c, &r);
    pb_http_req_clear(&r);
    c->closing = 1;
}

static void refuse(struct hconn *c, int status, const char *code, const char *why)
{
    refuse_counted(c, status, code, why, 0);
}

/* The same, for a request whose route is known (its head was parsed). */
static void refuse_request(struct hconn *c, int status, const char *code, const char *why)
{
    refuse_counted(c, status, code, why, c->req.is_push);
}

static void consume(struct hconn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* The head is in: fill the request, check what can be checked before the
 * body. Returns 0 to go on reading the body, 1 when answered. */
static int begin_request(struct hconn *c)
{
    struct pb_httpd *d = c->d;
    struct pb_http_head *h = &c->head;
    struct pb_http_req *r = &c->req;
    pb_http_req_clear(r);
    pb_http_req_init(r, d->env->cfg);
    c->keep_alive = h->keep_alive;
    r->method = h->method < 0 ? 30 : h->method;
    const char *q = memchr(h->target, '?', h->target_len);
    size_t plen = q ? (size_t)(q - h->target) : h->target_len;
    if (plen >= sizeof(r->path)) {
        refuse(c, 414, "uri_too_long", "the path is over 511 bytes");
        return 1;
    }
    memcpy(r->path, h->target, plen);
    r->path[plen] = '\0';
    if (q) {
        size_t qlen = h->target_len - plen - 1;
        if (qlen > PB_HTTP_MAX_QUERY) {
            refuse(c, 414, "uri_too_long",
                   "the query is over 4 KiB; POST a form body for long messages");
            return 1;
        }
        pb_buf_append(&r->query, q + 1, qlen);
    }
    if (h->auth && !(r->auth = strndup(h->auth, h->auth_len))) {
        refuse(c, 500, "internal", "out of memory");
        return 1;
    }
    if (h->method == -1) {
        refuse(c, 501, "not_implemented", "unknown method");
        return 1;
    }
    int has_body = h->chunked || h->content_length > 0;
    if (has_body && pb_http_check_early(d->env, r)) {
        r->close_after = 1; /* the body is not read */
        put_answer(c, r);
        return 1;
    }
    if (h->content_length > d->env->cfg->push_max_body_bytes) {
        refuse_request(c, 413, "payload_too_large", "the body is over push.max_body_bytes");
        return 1;
    }
    if (has_body && h->expect_continue)
        pb_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    memset(&c->ck, 0, sizeof(c->ck));
    c->in_request = 1;
    return 0;
}

/* Reads the body from the buffer. 1 when complete, 0 for more, -1 answered
 * (broken framing or too big). */
static int read_body(struct hconn *c)
{
    struct pb_http_req *r = &c->req;
    size_t max = (size_t)c->d->env->cfg->push_max_body_bytes;
    if (!c->head.chunked) {
        size_t want = c->head.content_length > 0 ? (size_t)c->head.content_length : 0;
        size_t take = want - r->body.len < c->in_len ? want - r->body.len : c->in_len;
        pb_buf_append(&r->body, c->in, take);
        consume(c, take);
        return r->body.len == want;
    }
    size_t used;
    int rc = pb_chunked_feed(&c->ck, c->in, c->in_len, &used, &r->body, max);
    consume(c, used);
    if (rc == -1)
        refuse_request(c, 400, "bad_request", "the chunked body is malformed");
    else if (rc == -2)
        refuse_request(c, 413, "payload_too_large", "the body is over push.max_body_bytes");
    return rc < 0 ? -1 : rc;
}

/* Serves every complete request in the buffer, in order, while answers
 * leave at once. Returns -1 when c was freed. */
static void resume_answer(struct pb_http_req *r);
static void arm_timer(struct hconn *c);

static int serve(struct hconn *c)
{
    struct pb_httpd *d = c->d;
    while (!c->closing && c->out.len == 0 && !c->waiting) {
        if (!c->in_request) {
            const char *why = "";
            int rc = pb_http_head_parse(c->in, c->in_len, &c->head, &why);
            if (rc == 0)
                break;
            if (rc != 1) {
                refuse(c, rc, rc == 431 ? "header_too_large"
                              : rc == 505 ? "version_not_supported"
                              : rc == 501 ? "not_implemented"
                              : rc == 417 ? "expectation_failed"
                                          : "bad_request",
                       why);
                break;
            }
            /* The head's fields point into the buffer: use them first. */
            int answered = begin_request(c);
            consume(c, c->head.head_len);
            if (answered)
                break;
        }
        int rc = read_body(c);
        if (rc < 0)
            break;
        if (rc == 0) {
            if (c->out.len && flush(c)) /* 100 Continue */
                return -1;
            break;
        }
        c->in_request = 0;
        c->request_started = 0;
        pb_http_handle(d->env, &c->req);
        if (c->req.relay) {
            /* Answered once Kafka has the push (within its 5 s timeout);
             * the next pipelined request waits in the kernel meanwhile. */
            c->waiting = 1;
            c->req.resume = resume_answer;
            c->req.transport = c;
            ev_io_stop(d->loop, &c->rw);
            break;
        }
        put_answer(c, &c->req);
        if (flush(c))
            return -1;
    }
    if (c->out.len)
        return flush(c);
    return 0;
}

/* The relay has set the answer (relay.c finish): out it goes, and the
 * connection reads on. */
static void resume_answer(struct pb_http_req *r)
{
    struct hconn *c = r->transport;
    c->waiting = 0;
    r->resume = NULL;
    put_answer(c, r);
    if (flush(c))
        return;
    if (c->out.len) /* the rest goes from write_cb, which serves on */
        return;
    ev_io_start(c->d->loop, &c->rw);
    if (serve(c))
        return;
    arm_timer(c);
}

static void arm_timer(struct hconn *c)
{
    struct ev_loop *loop = c->d->loop;
    int busy = c->in_len > 0 || c->in_request || c->out.len > 0;
    if (busy && c->request_started)
        return; /* the request's deadline stands: trickling bytes does not move it */
    c->request_started = busy;
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, busy ? REQUEST_TIMEOUT_S : IDLE_TIMEOUT_S, 0.);
    ev_timer_start(loop, &c->timer);
}

/* Idle too long, or a request (or its answer) stuck: a request still
 * arriving gets a 408; the connection then has a few seconds to take it. */
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct hconn *c = w->data;
    if (c->waiting) { /* Kafka answers within 5 s: cannot happen, but never a 408 */
        ev_timer_set(&c->timer, 5., 0.);
        ev_timer_start(loop, &c->timer);
        return;
    }
    if (!c->request_started || c->closing || c->out.len) {
        conn_free(c);
        return;
    }
    (c->in_request ? refuse_request : refuse)(c, 408, "request_timeout",
                                              "the request did not arrive whole within 20 s");
    if (flush(c) == 0) {
        ev_timer_set(&c->timer, 5., 0.);
        ev_timer_start(loop, &c->timer);
    }
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hconn *c = w->data;
    if (c->in_cap - c->in_len < READ_CHUNK) {
        /* Bound: an unfinished head is at most PB_HTTP_MAX_HEAD (the parser
         * answers 431 past it); bodies are moved out as they arrive. */
        size_t cap = c->in_len + READ_CHUNK;
        char *p = realloc(c->in, cap);
        if (!p) {
            conn_free(c);
            return;
        }
        c->in = p;
        c->in_cap = cap;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_free(c);
        return;
    }
    c->in_len += (size_t)n;
    if (serve(c))
        return;
    arm_timer(c);
    /* An idle connection gives its buffer back. */
    if (c->in_len == 0 && !c->in_request && c->in_cap > READ_CHUNK) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hconn *c = w->data;
    if (flush(c) == 0 && c->out.len == 0 && serve(c) == 0)
        arm_timer(c);
}

static void new_conn(struct pb_httpd *d, int fd)
{
    if ((int64_t)d->nconns >= d->env->cfg->push_max_connections) {
        static const char busy[] =
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            "content-length: 84\r\nconnection: close\r\n\r\n"
            "{\"error\":\"not_ready\",\"message\":\"the internal API is at push.max_connections\"}";
        if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL) < 0)
            pb_debug("internal listener: 503 not sent: %s", strerror(errno));
        close(fd);
        return;
    }
    struct hconn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->d = d;
    c->fd = fd;
    pb_buf_init(&c->out, PB_HTTP_MAX_ANSWER + 1024);
    pb_http_req_init(&c->req, d->env->cfg);
    ev_io_init(&c->rw, read_cb, fd, EV_READ);
    ev_io_init(&c->ww, write_cb, fd, EV_WRITE);
    ev_timer_init(&c->timer, timer_cb, IDLE_TIMEOUT_S, 0.);
    c->rw.data = c->ww.data = c->timer.data = c;
    c->next = d->conns;
    if (d->conns)
        d->conns->prev = c;
    d->conns = c;
    d->nconns++;
    ev_io_start(d->loop, &c->rw);
    ev_timer_start(d->loop, &c->timer);
}

/* A connection accepted by the listener (listener.c). */
static void accepted(void *ud, int fd, const struct sockaddr_storage *peer)
{
    (void)peer;
    new_conn(ud, fd);
}

struct pb_httpd *pb_httpd_new(struct ev_loop *loop, const struct pb_api_env *env,
                              const char *addr, char *errstr, size_t errlen)
{
    struct pb_httpd *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    d->loop = loop;
    d->env = env;
    d->listener = pb_listener_new(loop, "listen.internal", addr, accepted, d, errstr, errlen);
    if (!d->listener) {
        free(d);
        return NULL;
    }
    return d;
}

int pb_httpd_port(const struct pb_httpd *d)
{
    return pb_listener_port(d->listener);
}

size_t pb_httpd_connections(const struct pb_httpd *d)
{
    return d->nconns;
}

void pb_httpd_free(struct pb_httpd *d)
{
    if (!d)
        return;
    while (d->conns)
        conn_free(d->conns);
    pb_listener_free(d->listener);
    free(d);
}
