/* Unit tests of admission control on the public listener (admission.c): the
 * bound on pending connections in total (ws.max_pending) and per address
 * (ws.max_pending_per_ip, IPv4 and its IPv6-mapped form being one address),
 * the descriptors kept back for the rest of the process, and the release of
 * a descriptor lws closed without a word when the kernel hands it out again.
 * Admission keeps books by descriptor number only, so plain numbers stand in
 * for sockets; the open-file limit is lowered first to size the books. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "pushbridge/public/admission.h"

/* The open-file limit the tests run under: 32 descriptors (the minimum)
 * are kept back, so public connections may use 0..223. */
#define NOFILE 256
#define CEILING (NOFILE - 32)

struct fixture {
    struct pb_config cfg;
    struct pb_metrics m;
    struct pb_admission *a;
};

static int setup(void **state)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur != NOFILE) {
        rl.rlim_cur = NOFILE;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(pb_config_init(&fx->cfg), 0);
    fx->cfg.ws_max_pending = 4;
    fx->cfg.ws_max_pending_per_ip = 2;
    pb_metrics_init(&fx->m);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    pb_admission_free(fx->a);
    pb_config_free(&fx->cfg);
    free(fx);
    return 0;
}

/* Made after the test has set its bounds (the books read cfg as they go). */
static struct pb_admission *adm(struct fixture *fx)
{
    if (!fx->a)
        assert_non_null(fx->a = pb_admission_new(&fx->cfg, &fx->m));
    return fx->a;
}

static struct sockaddr_storage v4(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    return ss;
}

static int accept_from(struct fixture *fx, int fd, struct sockaddr_storage peer)
{
    return pb_admission_accept(adm(fx), fd, &peer);
}

/* ws.max_pending in total: past it every address is refused, counted by
 * reason, until a pending connection logs in (or closes). */
static void test_max_pending(void **state)
{
    struct fixture *fx = *state;
    fx->cfg.ws_max_pending_per_ip = 10;
    assert_int_equal(accept_from(fx, 10, v4("10.0.0.1")), 0);
    assert_int_equal(accept_from(fx, 11, v4("10.0.0.2")), 0);
    assert_int_equal(accept_from(fx, 12, v4("10.0.0.3")), 0);
    assert_int_equal(accept_from(fx, 13, v4("10.0.0.3")), 0);
    assert_int_equal(pb_admission_pending(fx->a), 4);
    assert_int_equal(accept_from(fx, 14, v4("10.0.0.4")), -1);
    assert_int_equal(fx->m.accept_refused[PB_REFUSED_PENDING], 1);
    pb_admission_release(fx->a, 11); /* logged in */
    assert_int_equal(pb_admission_pending(fx->a), 3);
    assert_int_equal(accept_from(fx, 14, v4("10.0.0.4")), 0);
    assert_int_equal(fx->m.accept_refused[PB_REFUSED_PENDING], 1);
    assert_int_equal(fx->m.accept_refused[PB_REFUSED_PER_IP], 0);
}

/* ws.max_pending_per_ip: one address cannot take every pending slot; an
 * IPv4 peer and its IPv6-mapped form are the same address. */
static void test_max_pending_per_ip(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(accept_from(fx, 10, v4("192.0.2.7")), 0);
    assert_int_equal(accept_from(fx, 11, v6("::ffff:192.0.2.7")), 0);
    assert_int_equal(accept_from(fx, 12, v4("192.0.2.7")), -1);
    assert_int_equal(fx->m.accept_refused[PB_REFUSED_PER_IP], 1);
    assert_int_equal(accept_from(fx, 12, v6("2001:db8::1")), 0); /* another address */
    assert_int_equal(pb_admission_pending(fx->a), 3);
    pb_admission_release(fx->a, 10);
    assert_int_equal(accept_from(fx, 13, v4("192.0.2.7")), 0);
    assert_int_equal(fx->m.accept_refused[PB_REFUSED_PER_IP], 1);
}

/* Descriptors past the ceiling are refused: the rest of the process
 * (internal listener, Kafka, logs) keeps what it needs. */
static void test_descriptor_ceiling(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(accept_from(fx, CEILING - 1, v4("10.0.0.1")), 0);
    assert_int_equal(accept_from(fx, CEILING, v4("10.0.0.2")), -1);
    assert_int_equal(accept_from(fx, NOFILE + 5, v4("10.0.0.3")), -1);
    assert_int_equal(accept_from(fx, -1, v4("10.0.0.4")), -1);
    assert_int_equal(fx->m.accept_refused[PB_REFUSED_DESCRIPTORS], 3);
    assert_int_equal(pb_admission_pending(fx->a), 1);
}

/* A descriptor accepted again was closed without a word from lws: its old
 * slot (and its address's count) is released first. */
static void test_reused_descriptor_releases_the_old_one(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(accept_from(fx, 20, v4("10.0.0.1")), 0);
    assert_int_equal(accept_from(fx, 21, v4("10.0.0.1")), 0);
    assert_int_equal(accept_from(fx, 20, v4("10.0.0.9")), 0); /* 20 again, another peer */
    assert_int_equal(pb_admission_pending(fx->a), 2);
    assert_int_equal(accept_from(fx, 22, v4("10.0.0.1")), 0); /* 10.0.0.1 has one again */
    assert_int_equal(pb_admission_pending(fx->a), 3);
    assert_int_equal(fx->m.accept_refused[PB_REFUSED_PER_IP], 0);
}

/* Releasing what is not pending (logged in already, never accepted, out of
 * range) changes nothing, so the transports may release on every close. */
static void test_release_is_idempotent(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(accept_from(fx, 30, v4("10.0.0.1")), 0);
    pb_admission_release(fx->a, 30);
    pb_admission_release(fx->a, 30);
    pb_admission_release(fx->a, 31);
    pb_admission_release(fx->a, -1);
    pb_admission_release(fx->a, NOFILE * 4);
    pb_admission_release(NULL, 30);
    assert_int_equal(pb_admission_pending(fx->a), 0);
    assert_int_equal(pb_admission_pending(fx->a), 0);
    /* The address's entry is gone with its last connection: it starts afresh. */
    assert_int_equal(accept_from(fx, 30, v4("10.0.0.1")), 0);
    assert_int_equal(accept_from(fx, 31, v4("10.0.0.1")), 0);
    assert_int_equal(accept_from(fx, 32, v4("10.0.0.1")), -1);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_max_pending),
        T(test_max_pending_per_ip),
        T(test_descriptor_ceiling),
        T(test_reused_descriptor_releases_the_old_one),
        T(test_release_is_idempotent),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
