/* Cluster mode's HTTP pushes, from the request to its 202: one job per
 * request, one slot per item; each slot is the opaque of its Kafka message,
 * so the report finds it, and the job is freed with its last report, whether
 * the request is still there to answer or not. */
#include "pushbridge/api/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/core/log.h"

struct relay_item {
    struct pb_relay_job *job;
    int status; /* 0 waiting for Kafka, 202, or the error status */
    int32_t partition;
    int64_t offset;
    const char *code;
    char msg[200];
};

/* Owned by itself: freed by finish() once submitted and no item waits. */
struct pb_relay_job {
    struct pb_http_req *req; /* NULL once the request went away */
    int batch;
    int submitted;
    long n, waiting;
    struct relay_item items[];
};

struct pb_relay_job *pb_relay_begin(struct pb_http_req *r, long n, int batch)
{
    struct pb_relay_job *job = calloc(1, sizeof(*job) + (size_t)n * sizeof(job->items[0]));
    if (!job) {
        pb_http_answer_error(r, 500, "internal", "out of memory");
        return NULL;
    }
    job->req = r;
    job->batch = batch;
    job->n = n;
    for (long i = 0; i < n; i++)
        job->items[i].job = job;
    r->relay = job;
    return job;
}

void pb_relay_fail(struct pb_relay_job *job, long i, int status, const char *code,
                   const char *msg)
{
    struct relay_item *it = &job->items[i];
    it->status = status;
    it->code = code;
    snprintf(it->msg, sizeof(it->msg), "%s", msg);
}

void pb_relay_send(struct pb_kafka *k, struct pb_relay_job *job, long i, const struct pb_event *ev)
{
    struct pb_buf value;
    pb_buf_init(&value, PB_HTTP_MAX_ANSWER); /* bounded by push.max_body_bytes, plus names */
    pb_event_envelope(ev, &value);
    const char *key = ev->target_kind == PB_TARGET_ALL ? "*" : ev->target;
    char gkey[PB_MAX_ID_BYTES + 8];
    size_t keylen = ev->target_kind == PB_TARGET_ALL ? 1 : ev->target_len;
    if (ev->target_kind == PB_TARGET_GROUP) {
        keylen = (size_t)snprintf(gkey, sizeof(gkey), "group:%.*s", (int)ev->target_len,
                                  ev->target);
        key = gkey;
    }
    char err[200];
    if (value.truncated)
        pb_relay_fail(job, i, 500, "internal", "out of memory");
    else if (pb_kafka_push(k, key, keylen, value.data, value.len, &job->items[i], err,
                           sizeof(err)))
        pb_relay_fail(job, i, 503, "kafka_unavailable", err);
    else
        job->waiting++;
    pb_buf_free(&value);
}

static void item_json(struct pb_buf *b, const struct relay_item *it)
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
static void answer(struct pb_relay_job *job)
{
    struct pb_http_req *r = job->req;
    const struct relay_item *first = &job->items[0];
    if (!job->batch && first->status != 202) {
        pb_http_answer_error(r, first->status, first->code, first->msg);
        return;
    }
    int status = job->n ? first->status : 202;
    for (long i = 0; i < job->n; i++)
        if (job->items[i].status == 202)
            status = 202;
    r->status = status;
    r->content_type = "application/json";
    pb_buf_reset(&r->answer);
    if (!job->batch) {
        item_json(&r->answer, first);
        return;
    }
    pb_buf_puts(&r->answer, "{\"results\":[");
    for (long i = 0; i < job->n; i++) {
        if (i)
            pb_buf_puts(&r->answer, ",");
        item_json(&r->answer, &job->items[i]);
    }
    pb_buf_puts(&r->answer, "]}");
}

/* Answers (when the request is still there) and frees a job that is done. */
static void finish(struct pb_relay_job *job)
{
    if (!job->submitted || job->waiting)
        return;
    struct pb_http_req *r = job->req;
    if (r) {
        r->relay = NULL;
        answer(job);
        if (r->resume)
            r->resume(r); /* the transport writes it now */
    }
    free(job);
}

void pb_relay_submitted(struct pb_relay_job *job)
{
    job->submitted = 1;
    finish(job);
}

void pb_relay_detach(struct pb_http_req *r)
{
    if (r->relay)
        r->relay->req = NULL;
    r->relay = NULL;
}

void pb_relay_done(void *opaque, int32_t partition, int64_t offset, const char *error)
{
    struct relay_item *it = opaque;
    struct pb_relay_job *job = it->job;
    if (error) {
        pb_relay_fail(job, it - job->items, 503, "kafka_unavailable", error);
    } else {
        it->status = 202;
        it->partition = partition;
        it->offset = offset;
    }
    job->waiting--;
    finish(job);
}
