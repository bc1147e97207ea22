/* OAUTHBEARER tokens the bridge fetches itself (kafka_oidc.h says why): the
 * OAuth 2.0 client-credentials grant (RFC 6749 §4.4) as librdkafka's own
 * OIDC does it, a POST with the client id and secret in HTTP Basic auth,
 * over HTTPS with OpenSSL, verified against ssl.ca.location or the system
 * store. Runs on librdkafka's background thread (one per client), blocking,
 * every step bounded by PB_OIDC_TIMEOUT_MS; the response by
 * PB_OIDC_RESPONSE_MAX. A failure goes to rd_kafka_oauthbearer_set_token_
 * failure, which librdkafka raises as an authentication error: the refusal
 * reporting (kafka_refusal.c) puts it on /readyz and in the log. */
#include "pushbridge/kafka/kafka_oidc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define P_METHOD "sasl.oauthbearer.method"
#define P_CLIENT_ID "sasl.oauthbearer.client.id"
#define P_SECRET "sasl.oauthbearer.client.secret"
#define P_URL "sasl.oauthbearer.token.endpoint.url"
#define P_SCOPE "sasl.oauthbearer.scope"
#define P_EXTENSIONS "sasl.oauthbearer.extensions"
/* At most this many SASL extensions (key=value pairs) are passed on. */
#define EXTENSIONS_MAX 16

/* The configuration the refresh callbacks read: set before each client is
 * made, always to the process's one configuration, read on librdkafka's
 * background threads (atomic: written on the loop thread, read there). */
static _Atomic(const struct pb_config *) oidc_cfg;

/* Why the last refresh failed, as librdkafka reports it; "" after a token
 * came. Every client asks the same IdP with the same credentials, so one
 * state serves them all. Written on librdkafka's background threads, read
 * on the loop (pb_oidc_failure): under the lock. */
#define FAILURE_PREFIX "Failed to acquire SASL OAUTHBEARER token: "
static pthread_mutex_t failure_lock = PTHREAD_MUTEX_INITIALIZER;
static char failure[1024];

static void set_failure(const char *msg)
{
    pthread_mutex_lock(&failure_lock);
    snprintf(failure, sizeof(failure), "%s%s", msg ? FAILURE_PREFIX : "", msg ? msg : "");
    pthread_mutex_unlock(&failure_lock);
}

int pb_oidc_failure(char *buf, size_t len)
{
    pthread_mutex_lock(&failure_lock);
    int failed = failure[0] != '\0';
    snprintf(buf, len, "%s", failure);
    pthread_mutex_unlock(&failure_lock);
    return failed;
}

static const char *property(const struct pb_config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->kafka_properties.n; i++)
        if (strcmp(cfg->kafka_properties.items[i].key, key) == 0)
            return cfg->kafka_properties.items[i].value;
    return NULL;
}

int pb_oidc_enabled(const struct pb_config *cfg)
{
    const char *m = property(cfg, P_METHOD);
    return m && strcmp(m, "oidc") == 0;
}

int pb_oidc_own_property(const char *key)
{
    static const char *const own[] = {P_METHOD, P_CLIENT_ID, P_SECRET, P_URL, P_SCOPE,
                                      P_EXTENSIONS, NULL};
    for (int i = 0; own[i]; i++)
        if (strcmp(key, own[i]) == 0)
            return 1;
    return 0;
}

/* https://host[:port][/path] split; -1 when it is not such a URL. */
struct url {
    char host[256];
    char port[8];
    const char *path;
};

static int parse_url(const char *s, struct url *u)
{
    if (strncmp(s, "https://", 8) != 0)
        return -1;
    s += 8;
    size_t n = strcspn(s, ":/?#@");
    if (!n || n >= sizeof(u->host) || s[n] == '@' || s[n] == '?' || s[n] == '#')
        return -1;
    memcpy(u->host, s, n);
    u->host[n] = '\0';
    s += n;
    snprintf(u->port, sizeof(u->port), "443");
    if (*s == ':') {
        size_t d = strspn(s + 1, "0123456789");
        if (!d || d > 5 || (s[1 + d] && s[1 + d] != '/'))
            return -1;
        memcpy(u->port, s + 1, d);
        u->port[d] = '\0';
        s += 1 + d;
    }
    u->path = *s ? s : "/";
    return 0;
}

int pb_oidc_check(const struct pb_config *cfg, char *errstr, size_t errlen)
{
    struct url u;
    const char *url = property(cfg, P_URL), *id = property(cfg, P_CLIENT_ID),
               *secret = property(cfg, P_SECRET);
    if (!url || parse_url(url, &u)) {
        snprintf(errstr, errlen,
                 "kafka.properties: " P_URL " must be an https:// URL of the identity "
                 "provider's token endpoint (sasl.oauthbearer.method is oidc)");
        return -1;
    }
    if (!id || !*id || !secret || !*secret) {
        snprintf(errstr, errlen,
                 "kafka.properties: sasl.oauthbearer.method oidc needs " P_CLIENT_ID
                 " and " P_SECRET);
        return -1;
    }
    return 0;
}

/* ---- HTTPS ------------------------------------------------------------ */

static int wait_fd(int fd, short ev)
{
    struct pollfd p = {.fd = fd, .events = ev};
    int rc;
    while ((rc = poll(&p, 1, PB_OIDC_TIMEOUT_MS)) < 0 && errno == EINTR)
        ;
    return rc > 0 ? 0 : (rc == 0 ? (errno = ETIMEDOUT, -1) : -1);
}

/* A TCP connection to one of host's addresses within the timeout, with
 * read and write timeouts set; -1 with err. */
static int tcp_connect(const struct url *u, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, saved = 0;
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if ((connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) ||
            wait_fd(fd, POLLOUT) || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
            saved = soerr ? soerr : errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect: %s", strerror(saved));
        return -1;
    }
    struct timeval tv = {.tv_sec = PB_OIDC_TIMEOUT_MS / 1000};
    if (fcntl(fd, F_SETFL, 0) || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv))) {
        snprintf(err, errlen, "socket setup: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void tls_error(const char *what, char *err, size_t errlen)
{
    char e[256] = "";
    unsigned long code = ERR_get_error();
    if (code)
        ERR_error_string_n(code, e, sizeof(e));
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, code ? e : strerror(errno ? errno : EIO));
}

/* A client context verifying the peer against ca (a file or directory,
 * kafka.properties' ssl.ca.location) or the system store. */
static SSL_CTX *tls_context(const char *ca, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct stat st;
    int ok = ctx && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (ok && ca && *ca)
        ok = stat(ca, &st) == 0 && S_ISDIR(st.st_mode)
                 ? SSL_CTX_load_verify_locations(ctx, NULL, ca)
                 : SSL_CTX_load_verify_locations(ctx, ca, NULL);
    else if (ok)
        ok = SSL_CTX_set_default_verify_paths(ctx);
    if (!ok) {
        tls_error(ca && *ca ? "cannot load ssl.ca.location" : "TLS setup", err, errlen);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

/* TLS over fd, the certificate checked for host (name or IP address). */
static SSL *tls_open(SSL_CTX *ctx, int fd, const char *host, char *err, size_t errlen)
{
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    SSL *ssl = SSL_new(ctx);
    int ok = ssl && SSL_set_fd(ssl, fd) &&
             (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
                    : SSL_set1_host(ssl, host) && SSL_set_tlsext_host_name(ssl, host));
    if (!ok || SSL_connect(ssl) != 1) {
        long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
        if (v != X509_V_OK) {
            ERR_clear_error();
            snprintf(err, errlen, "TLS: certificate verify failed: %s (check ssl.ca.location)",
                     X509_verify_cert_error_string(v));
        } else {
            tls_error("TLS handshake", err, errlen);
        }
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

/* Reads the response into buf until it is complete, the peer closes, or
 * PB_OIDC_RESPONSE_MAX is reached (then it is refused). */
static int read_response(SSL *ssl, char *buf, int *status, char **body, size_t *blen, char *err,
                         size_t errlen)
{
    size_t len = 0;
    for (;;) {
        int n = SSL_read(ssl, buf + len, (int)(PB_OIDC_RESPONSE_MAX - len));
        int eof = n <= 0;
        if (n > 0)
            len += (size_t)n;
        else if (SSL_get_error(ssl, n) != SSL_ERROR_ZERO_RETURN && errno == EAGAIN) {
            snprintf(err, errlen, "no complete answer within %d ms", PB_OIDC_TIMEOUT_MS);
            return -1;
        }
        int rc = pb_oidc_parse_http(buf, len, eof, status, body, blen, err, errlen);
        if (rc <= 0)
            return rc;
        if (len == PB_OIDC_RESPONSE_MAX) {
            snprintf(err, errlen, "the response is longer than %d bytes", PB_OIDC_RESPONSE_MAX);
            return -1;
        }
    }
}

/* Appends s to out (cap bytes, n used) form-urlencoded (RFC 3986
 * unreserved characters as they are, the rest %XX); the new length, or cap
 * when it does not fit. */
static size_t form_escape(char *out, size_t cap, size_t n, const char *s)
{
    for (; *s && n < cap; s++) {
        unsigned char c = (unsigned char)*s;
        int w = isalnum(c) || strchr("-._~", c) ? snprintf(out + n, cap - n, "%c", c)
                                                 : snprintf(out + n, cap - n, "%%%02X", c);
        n = w < 0 || (size_t)w >= cap - n ? cap : n + (size_t)w;
    }
    return n;
}

/* The grant's request: the form body (grant type, scope), the client id
 * and secret in HTTP Basic auth as librdkafka sends them. malloc'd; NULL
 * when the scope does not fit the form buffer or memory is short. */
static char *request(const struct url *u, const char *id, const char *secret, const char *scope)
{
    char form[1024], *req = NULL;
    size_t n = (size_t)snprintf(form, sizeof(form), "grant_type=client_credentials");
    if (scope && *scope) {
        n += (size_t)snprintf(form + n, sizeof(form) - n, "&scope=");
        n = form_escape(form, sizeof(form), n, scope);
    }
    size_t cl = strlen(id) + strlen(secret) + 1;
    char *cred = malloc(cl + 1), *b64 = calloc(1, 4 * ((cl + 2) / 3) + 1);
    if (n < sizeof(form) && cred && b64) {
        snprintf(cred, cl + 1, "%s:%s", id, secret);
        EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)cred, (int)cl);
        size_t rl = strlen(u->path) + strlen(u->host) + strlen(b64) + n + 256;
        if ((req = malloc(rl)))
            snprintf(req, rl,
                     "POST %s HTTP/1.1\r\nHost: %s:%s\r\nAuthorization: Basic %s\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n"
                     "Accept: application/json\r\nUser-Agent: pushbridge\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     u->path, u->host, u->port, b64, n, form);
    }
    /* The secret is not left in freed memory. */
    if (cred)
        OPENSSL_cleanse(cred, cl);
    if (b64)
        OPENSSL_cleanse(b64, strlen(b64));
    free(cred);
    free(b64);
    return req;
}

/* One exchange with the token endpoint: 0 with status and body, -1 with
 * err (connection, TLS, a malformed or oversized answer). */
static int exchange(const struct url *u, const char *ca, const char *req, int *status,
                    char **body, size_t *blen, char *err, size_t errlen)
{
    int rc = -1, fd = -1;
    SSL *ssl = NULL;
    char *buf = malloc(PB_OIDC_RESPONSE_MAX);
    SSL_CTX *ctx = buf ? tls_context(ca, err, errlen) : NULL;
    if (!buf)
        snprintf(err, errlen, "out of memory");
    if (!ctx || (fd = tcp_connect(u, err, errlen)) < 0 ||
        !(ssl = tls_open(ctx, fd, u->host, err, errlen)))
        goto out;
    size_t n = strlen(req);
    if (SSL_write(ssl, req, (int)n) != (int)n) {
        tls_error("cannot send the request", err, errlen);
        goto out;
    }
    rc = read_response(ssl, buf, status, body, blen, err, errlen);
out:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    free(buf);
    return rc;
}

/* sasl.oauthbearer.extensions "k=v,k=v" into the flat array librdkafka
 * takes; returns the number of strings (2 per pair), -1 when malformed. */
static int extensions(const char *spec, char *copy, size_t cap, const char **out)
{
    int n = 0;
    if (!spec || !*spec)
        return 0;
    if (snprintf(copy, cap, "%s", spec) >= (int)cap)
        return -1;
    for (char *save = NULL, *kv = strtok_r(copy, ",", &save); kv;
         kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq || eq == kv || n >= 2 * EXTENSIONS_MAX)
            return -1;
        *eq = '\0';
        out[n++] = kv;
        out[n++] = eq + 1;
    }
    return n;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Fetches a token and hands it to librdkafka; -1 with err. */
static int refresh(rd_kafka_t *rk, const struct pb_config *cfg, char *err, size_t errlen)
{
    struct url u;
    const char *id = property(cfg, P_CLIENT_ID), *url = property(cfg, P_URL);
    if (parse_url(url, &u)) /* checked at start: cannot happen */
        return snprintf(err, errlen, "bad URL"), -1;
    char *req = request(&u, id, property(cfg, P_SECRET), property(cfg, P_SCOPE));
    char *body = NULL, ext_copy[1024], rd_err[256];
    const char *ext[2 * EXTENSIONS_MAX];
    size_t blen = 0;
    int status = 0, rc = -1, next = extensions(property(cfg, P_EXTENSIONS), ext_copy,
                                               sizeof(ext_copy), ext);
    struct pb_oidc_token tok = {0};
    if (!req)
        snprintf(err, errlen, "the request would be too long (scope?)");
    else if (next < 0)
        snprintf(err, errlen, P_EXTENSIONS " is not key=value,...");
    else if (exchange(&u, property(cfg, "ssl.ca.location"), req, &status, &body, &blen, err,
                      errlen) == 0 &&
             pb_oidc_parse_token(status, body, blen, wall_ms(), &tok, err, errlen) == 0) {
        const char *principal = tok.principal[0] ? tok.principal : id;
        if (rd_kafka_oauthbearer_set_token(rk, tok.access_token, wall_ms() + tok.expires_in_ms,
                                           principal, ext, (size_t)next, rd_err,
                                           sizeof(rd_err)))
            snprintf(err, errlen, "librdkafka refused the token: %s", rd_err);
        else
            rc = 0;
    }
    if (req) {
        OPENSSL_cleanse(req, strlen(req));
        free(req);
    }
    free(body);
    pb_oidc_token_free(&tok);
    return rc;
}

/* librdkafka's refresh callback: at start and at 80 % of the token's life. */
static void on_token_refresh(rd_kafka_t *rk, const char *oauthbearer_config, void *opaque)
{
    (void)oauthbearer_config;
    (void)opaque;
    const struct pb_config *cfg = atomic_load(&oidc_cfg);
    char err[512], msg[900];
    if (refresh(rk, cfg, err, sizeof(err)) == 0) {
        set_failure(NULL);
        return;
    }
    snprintf(msg, sizeof(msg), "the token endpoint %s (client id '%s') gave no token: %s",
             property(cfg, P_URL), property(cfg, P_CLIENT_ID), err);
    set_failure(msg);
    rd_kafka_oauthbearer_set_token_failure(rk, msg);
}

void pb_oidc_conf(const struct pb_config *cfg, rd_kafka_conf_t *conf)
{
    atomic_store(&oidc_cfg, cfg);
    rd_kafka_conf_set_oauthbearer_token_refresh_cb(conf, on_token_refresh);
    rd_kafka_conf_enable_sasl_queue(conf, 1);
}

int pb_oidc_client_started(const struct pb_config *cfg, rd_kafka_t *rk, char *errstr,
                           size_t errlen)
{
    if (!pb_oidc_enabled(cfg))
        return 0;
    rd_kafka_error_t *e = rd_kafka_sasl_background_callbacks_enable(rk);
    if (!e)
        return 0;
    snprintf(errstr, errlen, "kafka: cannot fetch OIDC tokens in the background: %s",
             rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return -1;
}
