/* Presence across the nodes of cluster mode kafka (SPEC 8), through Kafka
 * alone: each node publishes who is connected to it on cluster.presence_topic
 * (heartbeats, deltas of its users' connection counts, periodic full
 * snapshots, a goodbye) and reads every other node's, so GET /users/{id} and
 * GET /cluster answer for the whole cluster on any node, and one live node
 * can be chosen to own a decision (kafka.undelivered_topic). Created and
 * owned by the Kafka module (pb_kafka_presence); loop thread only. */
#ifndef PB_PRESENCE_H
#define PB_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "pushbridge/core/buf.h"
#include "pushbridge/core/config.h"
#include "pushbridge/hub/hub.h"

struct pb_presence;

/* Every 250 ms from the loop: sends what changed (deltas), heartbeats and
 * snapshots, forgets nodes silent for cluster.node_timeout_ms. */
#define PB_PRESENCE_TICK_MS 250

void pb_presence_tick(struct pb_presence *p);

/* Connections of user on the other nodes: their sum; fn (may be NULL) is
 * called for each node holding some. */
typedef void (*pb_presence_node_fn)(void *arg, const char *node, size_t n);
size_t pb_presence_remote(const struct pb_presence *p, const char *user, size_t len,
                          pb_presence_node_fn fn, void *arg);

/* 1 when this node owns the decisions of (topic, partition) among the live
 * nodes (rendezvous hashing over the node names: every node that sees the
 * same live list picks the same owner). 0 while this node is not yet
 * known to the others, or when p is NULL. */
int pb_presence_owns(const struct pb_presence *p, const char *topic, int32_t partition);

/* 1 once the presence topic has been read up to where it stood at start
 * (or that took too long); else 0 and *why. */
int pb_presence_ready(const struct pb_presence *p, const char **why);

/* {"online":…,"connections":N,"nodes":{…}} for GET /users/{id}: this
 * node's count (local) plus the others'. p NULL: standalone, no "nodes". */
void pb_presence_user_json(const struct pb_presence *p, const char *user, size_t len,
                           size_t local, struct pb_buf *out);

/* {"mode":…,"node":…,"nodes":[{"name","version","connections","users",
 * "last_seen_ms","self",…}]} for GET /cluster; p NULL: standalone (self). */
void pb_presence_nodes_json(const struct pb_presence *p, const struct pb_config *cfg,
                            const struct pb_hub *hub, struct pb_buf *out);

#endif
