/* Cluster mode's HTTP pushes, from the request to its 202: one job per
 * request, one slot per item; each slot is the opaque of its Kafka message,
 * so the report finds it, and the job is freed with its last report, whether
 * its owner (the request) is still there to answer or not. The job keeps
 * results; rendering them is the API's. */
#include "pushbridge/api/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/core/log.h"

/* Bound on one item's Kafka value: the envelope of an event the API took
 * (push.max_body_bytes at most, plus names); as the API's answer bound. */
#define MAX_VALUE_BYTES (4u << 20)

struct relay_item {
    struct pb_relay_job *job;
    struct pb_relay_result res;
};

/* Owned by itself: freed by finish() once submitted and no item waits. */
struct pb_relay_job {
    pb_relay_answer answer;
    void *owner; /* NULL once the owner went away */
    int batch;
    int submitted;
    long n, waiting;
    struct relay_item items[];
};

struct pb_relay_job *pb_relay_begin(long n, int batch, pb_relay_answer answer, void *owner)
{
    struct pb_relay_job *job = calloc(1, sizeof(*job) + (size_t)n * sizeof(job->items[0]));
    if (!job)
        return NULL;
    job->answer = answer;
    job->owner = owner;
    job->batch = batch;
    job->n = n;
    for (long i = 0; i < n; i++)
        job->items[i].job = job;
    return job;
}

void pb_relay_fail(struct pb_relay_job *job, long i, int status, const char *code,
                   const char *msg)
{
    struct pb_relay_result *res = &job->items[i].res;
    res->status = status;
    res->code = code;
    snprintf(res->msg, sizeof(res->msg), "%s", msg);
}

void pb_relay_send(struct pb_kafka *k, struct pb_relay_job *job, long i, const struct pb_event *ev)
{
    struct pb_buf value;
    pb_buf_init(&value, MAX_VALUE_BYTES);
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

/* Reports (when the owner is still there) and frees a job that is done. */
static void finish(struct pb_relay_job *job)
{
    if (!job->submitted || job->waiting)
        return;
    if (job->owner)
        job->answer(job->owner, job);
    free(job);
}

void pb_relay_submitted(struct pb_relay_job *job)
{
    job->submitted = 1;
    finish(job);
}

void pb_relay_detach(struct pb_relay_job *job)
{
    if (job)
        job->owner = NULL;
}

void pb_relay_done(void *opaque, int32_t partition, int64_t offset, const char *error)
{
    struct relay_item *it = opaque;
    struct pb_relay_job *job = it->job;
    if (error) {
        pb_relay_fail(job, it - job->items, 503, "kafka_unavailable", error);
    } else {
        it->res.status = 202;
        it->res.partition = partition;
        it->res.offset = offset;
    }
    job->waiting--;
    finish(job);
}

long pb_relay_items(const struct pb_relay_job *job)
{
    return job->n;
}

int pb_relay_is_batch(const struct pb_relay_job *job)
{
    return job->batch;
}

const struct pb_relay_result *pb_relay_result(const struct pb_relay_job *job, long i)
{
    return &job->items[i].res;
}
