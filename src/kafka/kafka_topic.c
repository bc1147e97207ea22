/* pb_kafka_ensure_topic (kafka_topic.h): one CreateTopics request and what
 * its answer means, shared by cluster pushes (kafka_push.c) and presence
 * (presence_setup.c), so a refusal reads and counts the same for both. */
#include "kafka_topic.h"

#include <stdio.h>

#include "pushbridge/core/log.h"
#include "pushbridge/kafka/kafka_refusal.h"

/* Waiting at start for the answer to "create the topic". */
#define CREATE_TOPIC_MS 5000

static rd_kafka_NewTopic_t *new_topic(const struct pb_kafka_topic_spec *s, char *errstr,
                                      size_t errlen)
{
    char err[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(s->topic, s->partitions, -1, err, sizeof(err));
    if (!nt) {
        snprintf(errstr, errlen, "%s %s: %s", s->setting, s->topic, err);
        return NULL;
    }
    for (const char *const *c = s->conf; c && c[0] && c[1]; c += 2) {
        rd_kafka_resp_err_t e = rd_kafka_NewTopic_set_config(nt, c[0], c[1]);
        if (e) {
            snprintf(errstr, errlen, "%s %s: %s: %s", s->setting, s->topic, c[0],
                     rd_kafka_err2str(e));
            rd_kafka_NewTopic_destroy(nt);
            return NULL;
        }
    }
    return nt;
}

int pb_kafka_ensure_topic(rd_kafka_t *rk, const struct pb_kafka_topic_spec *s, char *errstr,
                          size_t errlen)
{
    rd_kafka_NewTopic_t *nt = new_topic(s, errstr, errlen);
    if (!nt)
        return -1;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, CREATE_TOPIC_MS);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    size_t n = 0;
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
    rd_kafka_resp_err_t e = ev ? rd_kafka_event_error(ev) : RD_KAFKA_RESP_ERR__TIMED_OUT;
    if (!e && n == 1)
        e = rd_kafka_topic_result_error(tr[0]);
    int rc = 0;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        pb_info("%s: created %s %s", s->who, s->setting, s->topic);
    else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        ;
    else if (pb_refusal_classify(e, "") != PB_REFUSAL_NONE)
        /* Clusters with ACLs seldom let an application create topics, and
         * SPEC 1: a refusal never stops the process. The topic is most
         * likely there; if it is not, or writing is refused too, what
         * writes it says so (a push's 503, /readyz for presence). */
        pb_warn("%s: not allowed to make sure %s %s exists (%s): assuming it does", s->who,
                s->setting, s->topic, rd_kafka_err2str(e));
    else if (e == RD_KAFKA_RESP_ERR__TIMED_OUT || e == RD_KAFKA_RESP_ERR__TRANSPORT)
        pb_warn("%s: cannot make sure %s %s exists (%s)%s", s->who, s->setting, s->topic,
                rd_kafka_err2str(e), s->unanswered ? s->unanswered : "");
    else {
        snprintf(errstr, errlen, "%s %s does not exist and cannot be created: %s", s->setting,
                 s->topic,
                 n == 1 && rd_kafka_topic_result_error_string(tr[0])
                     ? rd_kafka_topic_result_error_string(tr[0])
                     : rd_kafka_err2str(e));
        rc = -1;
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}
