/* The HTTP API on the internal listener (push, broadcast, send, users,
 * stats, metrics, health) and the small public pages: routing and handlers
 * over a transport-free request. A request's body is gathered up to
 * push.max_body_bytes by its transport (httpd.c, or http_lws.c), the handler
 * builds the whole answer in memory, and the transport writes it. Pushes
 * enter the hub through the same pb_hub_deliver() that Kafka events use (in
 * cluster mode: push.topic, through relay.c, whose results are rendered
 * here). The handlers see the bridge through a struct pb_api_env only. */
#include <libwebsockets.h> /* LWSHUMETH_*: the method numbering of struct pb_http_req */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/event/envelope.h"
#include "pushbridge/api/http.h"
#include "pushbridge/core/log.h"
#include "pushbridge/kafka/presence.h"
#include "pushbridge/api/relay.h"
#include "pushbridge/api/web.h"
#include "pushbridge/event/frame.h"
#include "pushbridge/hub/hub.h"
#include "pushbridge/kafka/kafka.h"
#include "pushbridge/store/store.h"

void pb_http_error_json(struct pb_buf *b, const char *code, const char *msg)
{
    pb_buf_puts(b, "{\"error\":");
    pb_buf_json_string(b, code, strlen(code));
    pb_buf_puts(b, ",\"message\":");
    pb_buf_json_string(b, msg, strlen(msg));
    pb_buf_puts(b, "}");
}

void pb_http_answer_error(struct pb_http_req *r, int status, const char *code, const char *msg)
{
    r->status = status;
    r->content_type = "application/json";
    pb_buf_reset(&r->answer);
    pb_http_error_json(&r->answer, code, msg);
}

static void answer_json(struct pb_http_req *r, int status, const char *json)
{
    r->status = status;
    r->content_type = "application/json";
    pb_buf_reset(&r->answer);
    pb_buf_puts(&r->answer, json);
}

/* ---- push, broadcast, send ---- */

struct push_result {
    int status; /* 200, or the error status */
    long delivered;
    const char *code;
    char msg[200];
};

static void result_error(struct push_result *res, int status, const char *code, const char *msg)
{
    res->status = status;
    res->code = code;
    snprintf(res->msg, sizeof(res->msg), "%s", msg);
}

/* One push object (alone, or an item of a batch) -> the hub; in cluster
 * mode -> item i of the relay job instead, answered when Kafka has it. */
static void push_one(const struct pb_api_env *env, const char *json, size_t len, int broadcast,
                     struct push_result *res, struct pb_relay_job *job, long i)
{
    struct pb_event ev;
    pb_event_init(&ev);
    memset(res, 0, sizeof(*res));
    res->status = 200;
    int reason = pb_envelope_parse(json, len, PB_ENV_HTTP_ALIASES, &ev);
    if (reason == PB_DROP_NOT_OBJECT)
        result_error(res, 400, "bad_field", "each push must be a JSON object");
    else if (reason)
        result_error(res, 400, "bad_field", ev.detail);
    else if (broadcast && ev.user_id)
        result_error(res, 400, "bad_field",
                     "a broadcast goes to everyone or to a group: user_id is not accepted; "
                     "use POST /push");
    else if (broadcast) {
        ev.target_kind = ev.group ? PB_TARGET_GROUP : PB_TARGET_ALL;
        ev.target = ev.group;
        ev.target_len = ev.group ? strlen(ev.group) : 0;
    } else if (!ev.user_id)
        result_error(res, 400, "missing_field", "user_id (or userId, uid) is required");
    else if (pb_event_set_target(&ev, NULL, 0))
        result_error(res, 400, "bad_field", ev.detail);
    if (res->status == 200 && job) {
        pb_relay_send(env->kafka, job, i, &ev); /* counted when it comes back from Kafka */
    } else if (res->status == 200) {
        ev.ts_ms = pb_now_ms();
        env->metrics->src[PB_SOURCE_HTTP].consumed++;
        res->delivered = pb_hub_deliver(env->hub, &ev, PB_SOURCE_HTTP);
        if (ev.target_kind == PB_TARGET_USER) /* standalone: connected nowhere? */
            pb_kafka_undelivered_http(env->kafka, ev.target, ev.target_len, json, len);
    } else {
        pb_metrics_drop(env->metrics, PB_SOURCE_HTTP, reason ? reason : PB_DROP_NO_TARGET);
        if (job)
            pb_relay_fail(job, i, res->status, res->code, res->msg);
    }
    pb_event_clear(&ev);
}

static int relayed(const struct pb_api_env *env)
{
    return env->cfg->cluster_mode == PB_CLUSTER_KAFKA;
}

static void result_json(struct pb_buf *b, const struct push_result *res)
{
    if (res->status == 200) {
        pb_buf_printf(b, "{\"delivered\":%ld}", res->delivered);
        return;
    }
    pb_http_error_json(b, res->code, res->msg);
}

struct batch {
    const struct pb_api_env *env;
    struct pb_buf *out;
    long n;
    struct pb_relay_job *job; /* cluster mode */
};

static int batch_item(const char *el, size_t len, void *ud)
{
    struct batch *b = ud;
    struct push_result res;
    push_one(b->env, el, len, 0, &res, b->job, b->n);
    if (b->n++ && !b->job)
        pb_buf_puts(b->out, ",");
    if (!b->job)
        result_json(b->out, &res);
    return 0;
}

static int body_is_json(struct pb_http_req *r)
{
    char detail[160];
    if (r->body.len == 0) {
        pb_http_answer_error(r, 400, "bad_json", "the request body is empty; a JSON object is expected");
        return 0;
    }
    if (pb_json_validate(r->body.data, r->body.len, detail, sizeof(detail))) {
        pb_http_answer_error(r, 400, "bad_json", detail);
        return 0;
    }
    return 1;
}

/* ---- cluster mode: the relay's results rendered ---- */

static void relay_item_json(struct pb_buf *b, const struct pb_relay_result *it)
{
    if (it->status == 202) {
        pb_buf_printf(b, "{\"partition\":%d,\"offset\":%lld}", (int)it->partition,
                      (long long)it->offset);
        return;
    }
    pb_http_error_json(b, it->code, it->msg);
}

/* A single push answers as its item; a batch 202 with every item's result,
 * unless none was taken: then with the first item's error status. */
static void relay_render(struct pb_http_req *r, const struct pb_relay_job *job)
{
    long n = pb_relay_items(job);
    const struct pb_relay_result *first = pb_relay_result(job, 0);
    if (!pb_relay_is_batch(job) && first->status != 202) {
        pb_http_answer_error(r, first->status, first->code, first->msg);
        return;
    }
    int status = n ? first->status : 202;
    for (long i = 0; i < n; i++)
        if (pb_relay_result(job, i)->status == 202)
            status = 202;
    r->status = status;
    r->content_type = "application/json";
    pb_buf_reset(&r->answer);
    if (!pb_relay_is_batch(job)) {
        relay_item_json(&r->answer, first);
        return;
    }
    pb_buf_puts(&r->answer, "{\"results\":[");
    for (long i = 0; i < n; i++) {
        if (i)
            pb_buf_puts(&r->answer, ",");
        relay_item_json(&r->answer, pb_relay_result(job, i));
    }
    pb_buf_puts(&r->answer, "]}");
}

/* The relay has every item's result: the answer is built, and the transport
 * (r->resume) writes it. */
static void relay_answered(void *owner, const struct pb_relay_job *job)
{
    struct pb_http_req *r = owner;
    r->relay = NULL;
    relay_render(r, job);
    if (r->resume)
        r->resume(r); /* the transport writes it now */
}

/* A relay job for r's n items; r->relay points at it until it answers or r
 * goes away. NULL on OOM, with r answered 500. */
static struct pb_relay_job *relay_begin(struct pb_http_req *r, long n, int batch)
{
    struct pb_relay_job *job = pb_relay_begin(n, batch, relay_answered, r);
    if (!job) {
        pb_http_answer_error(r, 500, "internal", "out of memory");
        return NULL;
    }
    r->relay = job;
    return job;
}

/* One push or broadcast object -> the hub -> {"delivered":N} or an error. */
static void answer_one(const struct pb_api_env *env, struct pb_http_req *r, int broadcast)
{
    struct push_result res;
    if (relayed(env)) {
        struct pb_relay_job *job = relay_begin(r, 1, 0);
        if (job) {
            push_one(env, r->body.data, r->body.len, broadcast, &res, job, 0);
            pb_relay_submitted(job);
        }
        return;
    }
    push_one(env, r->body.data, r->body.len, broadcast, &res, NULL, 0);
    if (res.status != 200) {
        pb_http_answer_error(r, res.status, res.code, res.msg);
        return;
    }
    r->status = 200;
    r->content_type = "application/json";
    pb_buf_reset(&r->answer);
    result_json(&r->answer, &res);
}

static void h_push(const struct pb_api_env *env, struct pb_http_req *r)
{
    if (!body_is_json(r))
        return;
    if (pb_json_is_array(r->body.data, r->body.len)) {
        long n = pb_json_array_each(r->body.data, r->body.len, NULL, NULL);
        if (n > env->cfg->push_max_batch) {
            char msg[128];
            snprintf(msg, sizeof(msg), "a batch of %ld items is over push.max_batch (%lld)", n,
                     (long long)env->cfg->push_max_batch);
            pb_http_answer_error(r, 400, "batch_too_large", msg);
            return;
        }
        struct batch b = {.env = env, .out = &r->answer};
        if (relayed(env)) {
            if (!(b.job = relay_begin(r, n, 1)))
                return;
            pb_json_array_each(r->body.data, r->body.len, batch_item, &b);
            pb_relay_submitted(b.job);
            return;
        }
        r->status = 200;
        r->content_type = "application/json";
        pb_buf_reset(&r->answer);
        pb_buf_puts(&r->answer, "[");
        pb_json_array_each(r->body.data, r->body.len, batch_item, &b);
        pb_buf_puts(&r->answer, "]");
        return;
    }
    answer_one(env, r, 0);
}

static void h_broadcast(const struct pb_api_env *env, struct pb_http_req *r)
{
    if (body_is_json(r))
        answer_one(env, r, 1);
}

/* Decodes %XX (and '+' in a form) in place; returns the new length, or -1
 * when a % escape is broken. */
static long url_decode(char *s, size_t n, int form)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+' && form) {
            s[o++] = ' ';
        } else if (s[i] == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = pb_hex_digit(s[i + 1]), lo = pb_hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            s[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            s[o++] = s[i];
        }
    }
    return (long)o;
}

long pb_http_path_decode(char *s, size_t n)
{
    return url_decode(s, n, 0);
}

static int find_value(const char *form, size_t len, const char *name, int decode, char **out,
                      size_t *outlen)
{
    size_t nlen = strlen(name);
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(form + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - form) : len;
        if (end - i > nlen && memcmp(form + i, name, nlen) == 0 && form[i + nlen] == '=') {
            size_t vlen = end - i - nlen - 1;
            char *v = malloc(vlen + 1);
            if (!v)
                return -1;
            memcpy(v, form + i + nlen + 1, vlen);
            long d = decode ? url_decode(v, vlen, 1) : (long)vlen;
            if (d < 0) {
                free(v);
                return -1;
            }
            v[d] = '\0';
            *out = v;
            *outlen = (size_t)d;
            return 0;
        }
        i = end + 1;
    }
    return 1;
}

int pb_http_form_value(const char *form, size_t len, const char *name, char **out, size_t *outlen)
{
    return find_value(form, len, name, 1, out, outlen);
}

int pb_http_query_value(const char *query, size_t len, const char *name, char **out, size_t *outlen)
{
    return find_value(query, len, name, 0, out, outlen);
}

/* /send's two fields. Owned by h_send, which frees what is left in them. */
struct send_fields {
    char *uid, *message;
    size_t uidlen, msglen;
};

/* Reads uid and message from a POST form body or the query, and checks
 * them. 0, or -1 with r answered. */
static int send_fields_read(struct pb_http_req *r, const char *query, size_t qlen,
                            struct send_fields *f)
{
    /* A POST form body wins over the query; either may carry the fields. */
    int rc_uid = 1, rc_msg = 1;
    if (r->body.len) {
        rc_uid = pb_http_form_value(r->body.data, r->body.len, "uid", &f->uid, &f->uidlen);
        rc_msg = pb_http_form_value(r->body.data, r->body.len, "message", &f->message, &f->msglen);
    }
    /* httpd hands over the raw query, split before decoding; lws has
     * already decoded it, so its values are copied as they are. */
    int (*value)(const char *, size_t, const char *, char **, size_t *) =
        r->query_decoded ? pb_http_query_value : pb_http_form_value;
    if (rc_uid == 1)
        rc_uid = value(query, qlen, "uid", &f->uid, &f->uidlen);
    if (rc_msg == 1)
        rc_msg = value(query, qlen, "message", &f->message, &f->msglen);

    if (rc_uid < 0 || rc_msg < 0) {
        pb_http_answer_error(r, 400, "bad_field", "a form value has a broken %-escape");
        return -1;
    }
    if (rc_uid || f->uidlen == 0) {
        pb_http_answer_error(r, 400, "missing_field", "uid is required");
        return -1;
    }
    if (!f->message && !(f->message = strdup(""))) {
        pb_http_answer_error(r, 500, "internal", "out of memory");
        return -1;
    }
    /* Both end up in C strings and WebSocket text frames. */
    if (pb_id_problem(f->uid, f->uidlen)) {
        pb_http_answer_error(r, 400, "bad_field",
                             "uid must be 1 to 256 bytes of UTF-8 without NUL");
        return -1;
    }
    if (!pb_utf8_valid(f->message, f->msglen)) {
        pb_http_answer_error(r, 400, "bad_field", "message must be UTF-8 text");
        return -1;
    }
    /* Seed clients get the message as the raw text of a frame: a NUL there
     * is what no JSON path lets through (\u0000 is refused everywhere). */
    if (memchr(f->message, '\0', f->msglen)) {
        pb_http_answer_error(r, 400, "bad_field", "message must not contain NUL characters");
        return -1;
    }
    return 0;
}

/* The event of a /send: the message becomes its data, a JSON string for
 * native clients (written into *data_json, the caller's to free), its text
 * for seed clients; both must be valid UTF-8. Takes f's strings into ev.
 * 0, or -1 with r answered. */
static int send_event(struct pb_http_req *r, struct send_fields *f, struct pb_event *ev,
                      char **data_json)
{
    char detail[160];
    *data_json = malloc(pb_json_string_len(f->message, f->msglen) + 1);
    if (!*data_json) {
        pb_http_answer_error(r, 500, "internal", "out of memory");
        return -1;
    }
    pb_json_string_write(*data_json, f->message, f->msglen);
    ev->data = *data_json;
    ev->data_len = pb_json_string_len(f->message, f->msglen);
    if (pb_json_validate(ev->data, ev->data_len, detail, sizeof(detail))) {
        pb_http_answer_error(r, 400, "bad_field", "message must be UTF-8 text");
        return -1;
    }
    ev->data_text = f->message;
    ev->data_text_len = f->msglen;
    ev->data_is_string = 1;
    f->message = NULL;
    ev->user_id = f->uid;
    f->uid = NULL;
    if (pb_event_set_target(ev, NULL, 0)) {
        pb_http_answer_error(r, 400, "bad_field", ev->detail);
        return -1;
    }
    ev->ts_ms = pb_now_ms();
    return 0;
}

/* The event to its user's connections here ({"delivered":N}; none is a
 * 400), or in cluster mode to push.topic through the relay (202). */
static void send_deliver(const struct pb_api_env *env, struct pb_http_req *r, struct pb_event *ev)
{
    if (relayed(env)) {
        /* Whether the user is connected somewhere is known to no one node. */
        struct pb_relay_job *job = relay_begin(r, 1, 0);
        if (job) {
            pb_relay_send(env->kafka, job, 0, ev);
            pb_relay_submitted(job);
        }
        return;
    }
    env->metrics->src[PB_SOURCE_HTTP].consumed++;
    long n = pb_hub_deliver(env->hub, ev, PB_SOURCE_HTTP);
    if (n == 0 && !pb_hub_user_connections(env->hub, ev->target, ev->target_len)) {
        struct pb_buf value; /* what the caller sent, as a push object */
        pb_buf_init(&value, PB_HTTP_MAX_ANSWER);
        pb_event_envelope(ev, &value);
        if (!value.truncated)
            pb_kafka_undelivered_http(env->kafka, ev->target, ev->target_len, value.data, value.len);
        pb_buf_free(&value);
    }
    if (n == 0) {
        char msg[400];
        snprintf(msg, sizeof(msg), "user %s has no open connection", ev->user_id);
        pb_http_answer_error(r, 400, "no_connection", msg);
        return;
    }
    char ok[64];
    snprintf(ok, sizeof(ok), "{\"delivered\":%ld}", n);
    answer_json(r, 200, ok);
}

/* GET or POST /send?uid=U&message=M: a text message to one user's
 * connections (clients of the simple login forms get the text alone). */
static void h_send(const struct pb_api_env *env, struct pb_http_req *r, const char *query,
                   size_t qlen)
{
    struct send_fields f = {0};
    struct pb_event ev;
    pb_event_init(&ev);
    char *data_json = NULL;
    if (!send_fields_read(r, query, qlen, &f) && !send_event(r, &f, &ev, &data_json))
        send_deliver(env, r, &ev);
    ev.data = "null";
    pb_event_clear(&ev);
    free(data_json);
    free(f.uid);
    free(f.message);
}

/* ---- operator endpoints ---- */

/* One task's latest event, as the snapshot frame a native client gets. */
static void add_task_json(const struct pb_event *ev, void *ud)
{
    struct pb_buf *b = ud;
    struct pb_frame *f = pb_frame_event_native(ev, 1, NULL);
    if (!f) {
        b->truncated = 1; /* answered 500 by pb_http_done */
        return;
    }
    if (b->len && b->data[b->len - 1] != '[')
        pb_buf_puts(b, ",");
    pb_buf_append(b, pb_frame_payload(f), f->len);
    pb_frame_unref(f);
}

/* GET /users/{id}/tasks: {"user":ID,"tasks":[snapshot frames]} (SPEC 7). */
static void answer_tasks(const struct pb_api_env *env, struct pb_http_req *r, const char *id,
                         size_t n)
{
    r->status = 200;
    r->content_type = "application/json";
    pb_buf_reset(&r->answer);
    pb_buf_puts(&r->answer, "{\"user\":");
    pb_buf_json_string(&r->answer, id, n);
    pb_buf_puts(&r->answer, ",\"tasks\":[");
    pb_store_each_task(env->store, id, n, add_task_json, &r->answer);
    pb_buf_puts(&r->answer, "]}");
}

static void h_user(const struct pb_api_env *env, struct pb_http_req *r)
{
    /* lws has already %-decoded the path; httpd has not. A user ID with a
     * '/' in it comes %-encoded, so "/tasks" at the end is the endpoint's. */
    char *id = r->path + strlen("/users/");
    long n = (long)strlen(id);
    int tasks = n > 6 && strcmp(id + n - 6, "/tasks") == 0;
    if (tasks)
        n -= 6;
    if (!r->path_decoded && (n = pb_http_path_decode(id, (size_t)n)) < 0) {
        pb_http_answer_error(r, 400, "bad_field", "the user ID in the path has a broken %-escape");
        return;
    }
    id[n] = '\0';
    if (memchr(id, '\0', (size_t)n) || !pb_utf8_valid(id, (size_t)n)) {
        pb_http_answer_error(r, 400, "bad_field", "the user ID must be UTF-8 without NUL");
        return;
    }
    if (n == 0) {
        pb_http_answer_error(r, 400, "missing_field", "the user ID is missing from the path");
        return;
    }
    if (tasks) {
        answer_tasks(env, r, id, (size_t)n);
        return;
    }
    /* In cluster mode, the whole cluster's answer (presence.c). */
    size_t conns = pb_hub_user_connections(env->hub, id, (size_t)n);
    r->status = 200;
    r->content_type = "application/json";
    pb_buf_reset(&r->answer);
    pb_presence_user_json(pb_kafka_presence(env->kafka), id, (size_t)n, conns, &r->answer);
}

/* GET /cluster: the live nodes (SPEC 8). */
static void h_cluster(const struct pb_api_env *env, struct pb_http_req *r)
{
    r->status = 200;
    r->content_type = "application/json";
    pb_buf_reset(&r->answer);
    pb_presence_nodes_json(pb_kafka_presence(env->kafka), env->cfg, env->hub, &r->answer);
}

static void h_stats(const struct pb_api_env *env, struct pb_http_req *r)
{
    struct pb_gauges g;
    env->gauges(env->owner, &g);
    r->status = 200;
    r->content_type = "application/json";
    pb_metrics_render_stats(env->metrics, &g, &r->answer);
}

static void h_metrics(const struct pb_api_env *env, struct pb_http_req *r)
{
    struct pb_gauges g;
    env->gauges(env->owner, &g);
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4";
    pb_metrics_render_prometheus(env->metrics, &g, &r->answer);
}

static void h_healthz(const struct pb_api_env *env, struct pb_http_req *r)
{
    (void)env;
    answer_json(r, 200, "{\"status\":\"ok\"}");
}

static void h_readyz(const struct pb_api_env *env, struct pb_http_req *r)
{
    const char *why = NULL;
    if (!env->ready(env->owner, &why)) {
        pb_http_answer_error(r, 503, "not_ready", why);
        return;
    }
    /* A refused write, the offline topic refusing, a shared group: said. */
    const char *warning = pb_kafka_warning(env->kafka);
    if (!warning) {
        answer_json(r, 200, "{\"ready\":true}");
        return;
    }
    /* Ready (taking it out of a load balancer would not help), but said. */
    r->status = 200;
    r->content_type = "application/json";
    pb_buf_reset(&r->answer);
    pb_buf_puts(&r->answer, "{\"ready\":true,\"warning\":");
    pb_buf_json_string(&r->answer, warning, strlen(warning));
    pb_buf_puts(&r->answer, "}");
}

/* ---- routing ---- */

#define M_GET  (1 << LWSHUMETH_GET)
#define M_POST (1 << LWSHUMETH_POST)

struct route {
    const char *path;
    int prefix;
    int methods;
    const char *allow;
    int push;     /* needs push.api_keys; counted as a push request */
    int internal; /* 1: internal listener, 0: public */
};

static const struct route routes[] = {
    {"/push", 0, M_POST, "POST", 1, 1},
    {"/broadcast", 0, M_POST, "POST", 1, 1},
    {"/send", 0, M_GET | M_POST, "GET, POST", 1, 1},
    {"/users/", 1, M_GET, "GET", 0, 1},
    {"/stats", 0, M_GET, "GET", 0, 1},
    {"/cluster", 0, M_GET, "GET", 0, 1},
    {"/metrics", 0, M_GET, "GET", 0, 1},
    {"/healthz", 0, M_GET, "GET", 0, 1},
    {"/readyz", 0, M_GET, "GET", 0, 1},
    {"/", 0, M_GET, "GET", 0, 0},
};

static const struct route *route_find(const struct pb_api_env *env, const char *path)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *rt = &routes[i];
        if (rt->internal ? !env->is_internal : !env->is_public)
            continue;
        if (rt->prefix ? strncmp(path, rt->path, strlen(rt->path)) == 0
                       : strcmp(path, rt->path) == 0)
            return rt;
    }
    return NULL;
}

/* push.api_keys: any configured key, compared in constant time. */
static int authorized(const struct pb_api_env *env, const struct pb_http_req *r)
{
    if (!env->cfg->push_api_keys.n)
        return 1;
    if (!r->auth || strncmp(r->auth, "Bearer ", 7) != 0)
        return 0;
    const char *key = r->auth + 7;
    size_t klen = strlen(key);
    int ok = 0;
    for (size_t i = 0; i < env->cfg->push_api_keys.n; i++) {
        const char *want = env->cfg->push_api_keys.items[i];
        if (strlen(want) == klen && CRYPTO_memcmp(want, key, klen) == 0)
            ok = 1;
    }
    return ok;
}

static void h_page(const struct pb_api_env *env, struct pb_http_req *r)
{
    (void)env;
    r->status = 200;
    r->content_type = "text/html; charset=utf-8";
    pb_buf_reset(&r->answer);
    pb_buf_puts(&r->answer, "<!doctype html><meta charset=utf-8><title>pushbridge</title>"
                            "<p>pushbridge is running. WebSocket endpoint: <code>");
    pb_buf_puts(&r->answer, env->cfg->ws_path);
    pb_buf_puts(&r->answer, "</code></p>\n");
}

void pb_http_handle(const struct pb_api_env *env, struct pb_http_req *r)
{
    if (pb_web_handle(env, r)) /* the module and the pages (web.c) */
        return;
    const struct route *rt = route_find(env, r->path);
    if (!rt) {
        pb_http_answer_error(r, 404, "not_found", "no such path");
        return;
    }
    if (!(rt->methods & (1 << r->method))) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s accepts %s", rt->path, rt->allow);
        pb_http_answer_error(r, 405, "method_not_allowed", msg);
        r->allow = rt->allow;
        return;
    }
    r->is_push = rt->push;
    if (rt->push && !authorized(env, r)) {
        pb_http_answer_error(r, 401, "unauthorized",
                             "a valid Authorization: Bearer <key> is required");
        return;
    }
    if (strcmp(rt->path, "/push") == 0)
        h_push(env, r);
    else if (strcmp(rt->path, "/broadcast") == 0)
        h_broadcast(env, r);
    else if (strcmp(rt->path, "/send") == 0)
        h_send(env, r, r->query.data ? r->query.data : "", r->query.len);
    else if (strcmp(rt->path, "/users/") == 0)
        h_user(env, r);
    else if (strcmp(rt->path, "/stats") == 0)
        h_stats(env, r);
    else if (strcmp(rt->path, "/cluster") == 0)
        h_cluster(env, r);
    else if (strcmp(rt->path, "/metrics") == 0)
        h_metrics(env, r);
    else if (strcmp(rt->path, "/healthz") == 0)
        h_healthz(env, r);
    else if (strcmp(rt->path, "/readyz") == 0)
        h_readyz(env, r);
    else
        h_page(env, r);
}

int pb_http_check_early(const struct pb_api_env *env, struct pb_http_req *r)
{
    /* Refuse before buffering up to push.max_body_bytes for a caller
     * without a key. */
    const struct route *rt = route_find(env, r->path);
    if (rt && rt->push && (rt->methods & (1 << r->method)) && !authorized(env, r)) {
        r->is_push = 1;
        pb_http_answer_error(r, 401, "unauthorized",
                             "a valid Authorization: Bearer <key> is required");
        return 1;
    }
    r->is_push = rt && rt->push;
    return 0;
}

void pb_http_done(const struct pb_api_env *env, struct pb_http_req *r)
{
    if (r->answer.truncated)
        pb_http_answer_error(r, 500, "internal", "the answer did not fit in memory");
    if (r->is_push)
        pb_metrics_push_status(env->metrics, r->status);
}

void pb_http_req_init(struct pb_http_req *r, const struct pb_config *cfg)
{
    memset(r, 0, sizeof(*r));
    pb_buf_init(&r->body, (size_t)cfg->push_max_body_bytes + 1);
    pb_buf_init(&r->answer, PB_HTTP_MAX_ANSWER);
    pb_buf_init(&r->query, PB_HTTP_MAX_QUERY + 1);
}

void pb_http_req_clear(struct pb_http_req *r)
{
    pb_buf_free(&r->body);
    pb_buf_free(&r->answer);
    pb_buf_free(&r->query);
    free(r->auth);
    r->auth = NULL;
    pb_relay_detach(r->relay); /* its answer, if it comes, goes nowhere */
    r->relay = NULL;
}
