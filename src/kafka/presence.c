/* Presence across the nodes (SPEC 8) through Kafka alone. Each node writes,
 * keyed by its name, to partition 0 of cluster.presence_topic (one partition:
 * one order for everyone) and reads all of it with a group-less consumer:
 *
 *   snap   every user it holds with its connection count, in parts of at
 *          most SNAP_USERS users (the last says "last"); at start, every
 *          SNAPSHOT_MS, and after anything went missing;
 *   delta  the users whose count changed since the last tick (250 ms), with
 *          their new count (0: gone): absolute, so applying one twice is
 *          harmless;
 *   hb     when nothing else went for a quarter of cluster.node_timeout_ms;
 *   bye    on SIGTERM: the others forget the node at once.
 *
 * Every message carries the node's incarnation (random per start), a
 * sequence number, its version, connection and user counts, and whether it
 * takes part in owning decisions. A reader applies a node's deltas only
 * while it holds a complete snapshot followed by every sequence number
 * since; a gap (a message lost to a timeout, a reader that started
 * mid-stream) waits for the next snapshot, keeping the last known counts
 * meanwhile, so nothing flaps. A new incarnation replaces the old one's
 * users at once (a restarted node does not show its dead connections).
 *
 * On start a node reads back SNAPSHOT_MS + node_timeout_ms of the topic (by
 * timestamp), which holds a snapshot of every live node, and reports ready
 * only once it has read up to where the topic stood: its first answers are
 * the cluster's. The topic is created with retention.ms RETENTION_MS
 * (delete, not compact: compaction would keep one message per node and lose
 * the deltas; a snapshot every 30 s makes older messages useless).
 *
 * Memory: the other nodes' users, PB_PRESENCE_MAX_NODES nodes and
 * cluster.presence_max_users entries in all (presence_table.c); the set of
 * users changed since the last tick, MAX_DIRTY (past it, a snapshot goes
 * instead); the producer's queue (PRODUCE_QUEUE_*). */
#include "pushbridge/kafka/presence.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "pushbridge/core/log.h"
#include "kafka_internal.h"
#include "presence_internal.h"

/* ---- the view of the other nodes ---- */

static void log_limited(struct pb_presence *p, const char *fmt, const char *arg)
{
    int64_t now = pb_monotonic_ms();
    if (now - p->last_log_ms < LOG_INTERVAL_MS)
        return;
    p->last_log_ms = now;
    pb_warn(fmt, arg);
}

static struct pnode *node_find(const struct pb_presence *p, const char *name, size_t *at)
{
    for (size_t i = 0; i < p->nnodes; i++)
        if (strcmp(p->nodes[i]->name, name) == 0) {
            if (at)
                *at = i;
            return p->nodes[i];
        }
    return NULL;
}

void pb_presence_node_reset(struct pnode *n)
{
    pb_utable_clear(&n->live);
    pb_utable_clear(&n->building);
    n->seq = -1;
    n->synced = 0;
    n->next_part = -1;
}

static struct pnode *node_add(struct pb_presence *p, const char *name)
{
    if (p->nnodes >= MAX_NODES) {
        log_limited(p, "presence: more than 256 nodes; node %s is not tracked", name);
        return NULL;
    }
    struct pnode *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    snprintf(n->name, sizeof(n->name), "%s", name);
    pb_utable_init(&n->live, &p->used, (size_t)p->cfg->cluster_presence_max_users, p->seed);
    pb_utable_init(&n->building, &p->used, (size_t)p->cfg->cluster_presence_max_users, p->seed);
    n->seq = -1;
    n->next_part = -1;
    p->nodes[p->nnodes++] = n;
    pb_info("presence: node %s joined", name);
    return n;
}

static void node_remove(struct pb_presence *p, size_t i, const char *why)
{
    struct pnode *n = p->nodes[i];
    pb_info("presence: node %s left (%s)", n->name, why);
    pb_presence_node_reset(n);
    free(n);
    p->nodes[i] = p->nodes[--p->nnodes];
}

/* Nodes not heard from for cluster.node_timeout_ms (killed, cut off). */
static void expire(struct pb_presence *p)
{
    int64_t now = pb_now_ms();
    for (size_t i = p->nnodes; i-- > 0;)
        if (now - p->nodes[i]->seen_ms > p->cfg->cluster_node_timeout_ms)
            node_remove(p, i, "not heard from within cluster.node_timeout_ms");
}

struct counts_ctx {
    struct pb_presence *p;
    struct pb_utable *t;
};

static void set_count(struct counts_ctx *c, const char *id, size_t len, long long n)
{
    if (n < 0 || n > UINT32_MAX || !len)
        return;
    if (pb_utable_set(c->t, id, len, (uint32_t)n)) {
        c->p->k->m->presence_overflow++;
        log_limited(c->p,
                    "presence: more users on the other nodes than cluster.presence_max_users%s; "
                    "some are not known here (pushbridge_presence_overflow_total)",
                    "");
    }
}

static void apply_counts(struct counts_ctx *c, yajl_val counts)
{
    if (!YAJL_IS_OBJECT(counts))
        return;
    for (size_t i = 0; i < counts->u.object.len; i++) {
        yajl_val v = counts->u.object.values[i];
        if (YAJL_IS_INTEGER(v))
            set_count(c, counts->u.object.keys[i], strlen(counts->u.object.keys[i]),
                      YAJL_GET_INTEGER(v));
    }
}

static const char *str_at(yajl_val v, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val s = yajl_tree_get(v, path, yajl_t_string);
    return s ? YAJL_GET_STRING(s) : NULL;
}

static long long int_at(yajl_val v, const char *key, long long dflt)
{
    const char *path[] = {key, NULL};
    yajl_val n = yajl_tree_get(v, path, yajl_t_number);
    return n && YAJL_IS_INTEGER(n) ? YAJL_GET_INTEGER(n) : dflt;
}

static int true_at(yajl_val v, const char *key)
{
    const char *path[] = {key, NULL};
    return YAJL_IS_TRUE(yajl_tree_get(v, path, yajl_t_true));
}

/* One snapshot part, or a delta, onto n's tables. */
static void apply_users(struct pb_presence *p, struct pnode *n, yajl_val v, int snap)
{
    const char *path[] = {"counts", NULL};
    yajl_val counts = yajl_tree_get(v, path, yajl_t_object);
    if (!snap) {
        if (n->synced) {
            struct counts_ctx c = {p, &n->live};
            apply_counts(&c, counts);
        }
        return;
    }
    long long part = int_at(v, "part", -1);
    if (part == 0) {
        pb_utable_clear(&n->building);
        n->next_part = 0;
    }
    if (part != n->next_part || part < 0) {
        pb_utable_clear(&n->building);
        n->next_part = -1;
        return;
    }
    struct counts_ctx c = {p, &n->building};
    apply_counts(&c, counts);
    n->next_part++;
    if (true_at(v, "last")) {
        pb_utable_swap_in(&n->live, &n->building);
        n->synced = 1;
        n->next_part = -1;
    }
}

/* One message of another node (or this one's, read back). */
static void apply(struct pb_presence *p, yajl_val v, int64_t seen_ms)
{
    const char *type = str_at(v, "type"), *name = str_at(v, "node"), *inc_s = str_at(v, "inc");
    long long seq = int_at(v, "seq", -1);
    if (!type || !name || !*name || !inc_s || seq < 0 || strlen(name) >= sizeof(p->node))
        return; /* not ours, or from a future version: ignored */
    uint64_t inc = strtoull(inc_s, NULL, 16);
    if (strcmp(name, p->node) == 0) {
        if (inc == p->inc) {
            p->self_seen = 1;
            if (true_at(v, "owner") && !p->owner) {
                p->owner = 1;
                pb_info("presence: this node now takes part in owning decisions");
            }
        }
        return; /* a former incarnation of this node: its connections are gone */
    }
    size_t at = 0;
    struct pnode *n = node_find(p, name, &at);
    if (!n && strcmp(type, "bye") == 0)
        return;
    if (!n && !(n = node_add(p, name)))
        return;
    if (n->inc != inc) { /* restarted: its former connections are gone */
        pb_presence_node_reset(n);
        n->inc = inc;
    }
    n->seen_ms = seen_ms;
    snprintf(n->version, sizeof(n->version), "%s", str_at(v, "version") ? str_at(v, "version") : "");
    n->connections = int_at(v, "connections", 0);
    n->users = int_at(v, "users", 0);
    n->owner = true_at(v, "owner");
    if (strcmp(type, "bye") == 0) {
        node_remove(p, at, "it said goodbye");
        return;
    }
    if (n->seq >= 0 && seq <= n->seq)
        return; /* read again */
    if (n->seq >= 0 && seq != n->seq + 1) { /* a gap: wait for the next snapshot */
        n->synced = 0;
        pb_utable_clear(&n->building);
        n->next_part = -1;
    }
    n->seq = seq;
    if (strcmp(type, "snap") == 0 || strcmp(type, "delta") == 0)
        apply_users(p, n, v, type[0] == 's');
}

static void caught_up(struct pb_presence *p, const char *how)
{
    p->caught_up = 1;
    expire(p);
    pb_info("presence: %s; %zu other node(s) live", how, p->nnodes);
}

static void handle(struct pb_presence *p, const rd_kafka_message_t *msg)
{
    if (msg->err || !msg->payload || msg->len > MSG_MAX)
        return;
    p->k->m->presence_in++;
    char *text = malloc(msg->len + 1);
    if (!text)
        return;
    memcpy(text, msg->payload, msg->len);
    text[msg->len] = '\0';
    yajl_val v = yajl_tree_parse(text, NULL, 0);
    free(text);
    int64_t now = pb_now_ms();
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(msg, &tstype);
    if (v && YAJL_IS_OBJECT(v))
        apply(p, v, p->caught_up || ts <= 0 || ts > now ? now : ts);
    yajl_tree_free(v);
    if (!p->caught_up && msg->offset + 1 >= p->catchup_end)
        caught_up(p, "read the cluster's presence");
}

int pb_presence_drain(struct pb_presence *p, int budget)
{
    for (int i = 0; i < budget; i++) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(p->cons, 0);
        if (!msg)
            return 0;
        handle(p, msg);
        rd_kafka_message_destroy(msg);
    }
    return 1;
}

/* ---- what this node says ---- */

void pb_presence_on_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    (void)opaque;
    struct pb_presence *p = msg->_private;
    if (!msg->err || !p)
        return;
    p->need_snapshot = 1; /* the others saw a gap: they wait for one */
    p->k->m->presence_failures++;
    log_limited(p, "presence: cannot write to cluster.presence_topic: %s",
                rd_kafka_err2str(msg->err));
}

static void begin(struct pb_presence *p, struct pb_buf *b, const char *type)
{
    pb_buf_reset(b);
    pb_buf_printf(b, "{\"v\":1,\"type\":\"%s\",\"node\":", type);
    pb_buf_json_string(b, p->node, strlen(p->node));
    pb_buf_printf(b,
                  ",\"inc\":\"%016" PRIx64 "\",\"seq\":%" PRId64 ",\"version\":\"%s\","
                  "\"connections\":%zu,\"users\":%zu,\"owner\":%s",
                  p->inc, ++p->seq, PB_VERSION, pb_hub_connections(p->k->hub),
                  pb_hub_users(p->k->hub), p->announced ? "true" : "false");
}

static void produce(struct pb_presence *p, struct pb_buf *b)
{
    if (b->truncated) {
        p->need_snapshot = 1;
        return;
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->prod, RD_KAFKA_V_TOPIC(p->cfg->cluster_presence_topic), RD_KAFKA_V_PARTITION(0),
        RD_KAFKA_V_KEY(p->node, strlen(p->node)), RD_KAFKA_V_VALUE(b->data, b->len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
    p->last_sent_ms = pb_monotonic_ms();
    if (err) {
        rd_kafka_message_t failed = {.err = err, ._private = p};
        pb_presence_on_report(p->prod, &failed, NULL);
        return;
    }
    p->k->m->presence_out++;
    p->k->m->presence_out_bytes += b->len;
}

/* Builds parts of at most SNAP_USERS users / SNAP_BYTES, sending each full
 * one; the caller sends the last. */
struct parts {
    struct pb_presence *p;
    struct pb_buf b;
    const char *type;
    size_t in_part, part;
    size_t left; /* users still to come (snapshots: says which part is last) */
};

static void part_open(struct parts *s)
{
    begin(s->p, &s->b, s->type);
    if (s->type[0] == 's')
        pb_buf_printf(&s->b, ",\"part\":%zu", s->part);
    pb_buf_puts(&s->b, ",\"counts\":{");
    s->in_part = 0;
}

static void part_close(struct parts *s, int last)
{
    pb_buf_printf(&s->b, "}%s}", s->type[0] == 's' && last ? ",\"last\":true" : "");
    produce(s->p, &s->b);
    s->part++;
}

static void part_add(struct parts *s, const char *id, size_t len, size_t n)
{
    if (s->in_part)
        pb_buf_puts(&s->b, ",");
    pb_buf_json_string(&s->b, id, len);
    pb_buf_printf(&s->b, ":%zu", n);
    s->in_part++;
    if (s->left)
        s->left--;
    if ((s->in_part >= SNAP_USERS || s->b.len >= SNAP_BYTES) && s->left) {
        part_close(s, 0);
        part_open(s);
    }
}

static void snap_user(void *arg, const char *id, size_t len, size_t n)
{
    part_add(arg, id, len, n);
}

static void send_snapshot(struct pb_presence *p)
{
    struct parts s = {.p = p, .type = "snap", .left = pb_hub_users(p->k->hub)};
    pb_buf_init(&s.b, MSG_MAX);
    part_open(&s);
    pb_hub_each_user(p->k->hub, snap_user, &s);
    part_close(&s, 1);
    pb_buf_free(&s.b);
    pb_utable_clear(&p->dirty); /* the snapshot says it all */
    p->need_snapshot = 0;
    p->last_snap_ms = pb_monotonic_ms();
}

static void delta_user(void *arg, const char *id, size_t len, uint32_t n)
{
    (void)n;
    struct parts *s = arg;
    part_add(s, id, len, pb_hub_user_connections(s->p->k->hub, id, len));
}

static void send_delta(struct pb_presence *p)
{
    struct parts s = {.p = p, .type = "delta", .left = p->dirty.n};
    pb_buf_init(&s.b, MSG_MAX);
    part_open(&s);
    pb_utable_each(&p->dirty, delta_user, &s);
    part_close(&s, 1);
    pb_buf_free(&s.b);
    pb_utable_clear(&p->dirty);
}

void pb_presence_send_plain(struct pb_presence *p, const char *type)
{
    struct pb_buf b;
    pb_buf_init(&b, 4096);
    begin(p, &b, type);
    pb_buf_puts(&b, "}");
    produce(p, &b);
    pb_buf_free(&b);
}

/* The hub's watcher: user's count changed; sent with the next tick. */
void pb_presence_watch(void *arg, const char *user, size_t len, size_t n)
{
    (void)n;
    struct pb_presence *p = arg;
    if (p->need_snapshot)
        return;
    if (pb_utable_set(&p->dirty, user, len, 1)) { /* MAX_DIRTY: one snapshot instead */
        pb_utable_clear(&p->dirty);
        p->need_snapshot = 1;
    }
}

void pb_presence_tick(struct pb_presence *p)
{
    if (!p)
        return;
    int64_t mono = pb_monotonic_ms();
    int64_t hb = p->cfg->cluster_node_timeout_ms / 4;
    if (!p->caught_up && mono - p->started_ms > CATCHUP_MAX_MS)
        caught_up(p, "stopped reading the cluster's presence back after 15 s (the topic is "
                     "slow or unreachable)");
    int announce = !p->announced && p->caught_up && p->self_seen;
    if (announce)
        p->announced = 1;
    if (p->need_snapshot || mono - p->last_snap_ms >= SNAPSHOT_MS)
        send_snapshot(p);
    else if (p->dirty.n)
        send_delta(p);
    else if (announce || mono - p->last_sent_ms >= hb)
        pb_presence_send_plain(p, "hb");
    if (p->caught_up)
        expire(p);
    rd_kafka_poll(p->prod, 0);
}

/* ---- answers ---- */

size_t pb_presence_remote(const struct pb_presence *p, const char *user, size_t len,
                          pb_presence_node_fn fn, void *arg)
{
    size_t sum = 0;
    for (size_t i = 0; p && i < p->nnodes; i++) {
        uint32_t n = pb_utable_get(&p->nodes[i]->live, user, len);
        if (n && fn)
            fn(arg, p->nodes[i]->name, n);
        sum += n;
    }
    return sum;
}

/* The same on every node: splitmix64 over FNV-1a, no per-process seed. */
static uint64_t score(const char *node, const char *topic, int32_t partition)
{
    uint64_t x = 1469598103934665603ULL;
    for (const char *s = node; *s; s++)
        x = (x ^ (unsigned char)*s) * 1099511628211ULL;
    x = (x ^ 0xff) * 1099511628211ULL;
    for (const char *s = topic; *s; s++)
        x = (x ^ (unsigned char)*s) * 1099511628211ULL;
    x ^= (uint64_t)(uint32_t)partition * 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int pb_presence_owns(const struct pb_presence *p, const char *topic, int32_t partition)
{
    if (!p || !p->owner)
        return 0;
    uint64_t mine = score(p->node, topic, partition);
    for (size_t i = 0; i < p->nnodes; i++) {
        if (!p->nodes[i]->owner)
            continue;
        uint64_t theirs = score(p->nodes[i]->name, topic, partition);
        if (theirs > mine || (theirs == mine && strcmp(p->nodes[i]->name, p->node) > 0))
            return 0;
    }
    return 1;
}

int pb_presence_ready(const struct pb_presence *p, const char **why)
{
    if (!p || p->caught_up)
        return 1;
    *why = "reading the cluster's presence (cluster.presence_topic)";
    return 0;
}

struct nodes_ctx {
    struct pb_buf *out;
    int any;
};

static void user_node(void *arg, const char *node, size_t n)
{
    struct nodes_ctx *c = arg;
    pb_buf_puts(c->out, c->any++ ? "," : "");
    pb_buf_json_string(c->out, node, strlen(node));
    pb_buf_printf(c->out, ":%zu", n);
}

void pb_presence_user_json(const struct pb_presence *p, const char *user, size_t len,
                           size_t local, struct pb_buf *out)
{
    size_t remote = pb_presence_remote(p, user, len, NULL, NULL);
    pb_buf_printf(out, "{\"online\":%s,\"connections\":%zu", local + remote ? "true" : "false",
                  local + remote);
    if (!p) {
        pb_buf_puts(out, "}");
        return;
    }
    struct nodes_ctx c = {out, 0};
    pb_buf_puts(out, ",\"nodes\":{");
    if (local)
        user_node(&c, p->node, local);
    pb_presence_remote(p, user, len, user_node, &c);
    pb_buf_puts(out, "}}");
}

static void node_json(struct pb_buf *out, const char *name, const char *version, int64_t conns,
                      int64_t users, int64_t age, int self, int owner, int synced)
{
    pb_buf_puts(out, "{\"name\":");
    pb_buf_json_string(out, name, strlen(name));
    pb_buf_puts(out, ",\"version\":");
    pb_buf_json_string(out, version, strlen(version));
    pb_buf_printf(out,
                  ",\"connections\":%" PRId64 ",\"users\":%" PRId64 ",\"last_seen_ms\":%" PRId64
                  ",\"self\":%s,\"owner\":%s,\"synced\":%s}",
                  conns, users, age < 0 ? 0 : age, self ? "true" : "false",
                  owner ? "true" : "false", synced ? "true" : "false");
}

void pb_presence_nodes_json(const struct pb_presence *p, const struct pb_config *cfg,
                            const struct pb_hub *hub, struct pb_buf *out)
{
    char name[256] = "", err[200];
    if (p)
        snprintf(name, sizeof(name), "%s", p->node);
    else if (pb_kafka_node_name(cfg, name, sizeof(name), err, sizeof(err)))
        snprintf(name, sizeof(name), "unknown");
    pb_buf_printf(out, "{\"mode\":\"%s\",\"node\":", p ? "kafka" : "standalone");
    pb_buf_json_string(out, name, strlen(name));
    pb_buf_printf(out, ",\"node_timeout_ms\":%" PRId64 ",\"nodes\":[",
                  cfg->cluster_node_timeout_ms);
    node_json(out, name, PB_VERSION, (int64_t)pb_hub_connections(hub),
              (int64_t)pb_hub_users(hub), 0, 1, p ? p->owner : 1, 1);
    int64_t now = pb_now_ms();
    for (size_t i = 0; p && i < p->nnodes; i++) {
        const struct pnode *n = p->nodes[i];
        pb_buf_puts(out, ",");
        node_json(out, n->name, n->version, n->connections, n->users, now - n->seen_ms, 0,
                  n->owner, n->synced);
    }
    pb_buf_puts(out, "]}");
}
