/* The messages between the hub and the workers (message.h): made and grown
 * by the sender, freed by the receiver with the frame references they hold. */
#include "pushbridge/hub/message.h"

#include <stdlib.h>
#include <string.h>

struct pb_to_worker *pb_to_worker_new(enum pb_to_worker_type type, size_t n)
{
    struct pb_to_worker *msg = malloc(sizeof(*msg) + n * sizeof(msg->items[0]));
    if (!msg)
        return NULL;
    memset(msg, 0, sizeof(*msg));
    msg->type = type;
    msg->cap = n;
    return msg;
}

void pb_to_worker_free(struct pb_to_worker *msg)
{
    if (!msg)
        return;
    for (size_t i = 0; i < msg->n; i++)
        pb_frame_unref(msg->items[i].frame);
    free(msg);
}

int pb_to_worker_add(struct pb_to_worker **msgp, enum pb_to_worker_type type,
                     struct pb_conn *conn, struct pb_frame *f)
{
    struct pb_to_worker *msg = *msgp;
    if (!msg || msg->n == msg->cap) {
        size_t cap = msg ? msg->cap * 2 : 4;
        struct pb_to_worker *grown = realloc(msg, sizeof(*msg) + cap * sizeof(msg->items[0]));
        if (!grown)
            return -1;
        if (!msg) {
            memset(grown, 0, sizeof(*grown));
            grown->type = type;
        }
        grown->cap = cap;
        *msgp = msg = grown;
    }
    pb_frame_ref(f);
    msg->items[msg->n].conn = conn;
    msg->items[msg->n].frame = f;
    msg->n++;
    return 0;
}
