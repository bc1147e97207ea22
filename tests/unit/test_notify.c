/* Unit tests of the notify module: which environments make a notifier, which are refused
 * (naming the variable), that messages reach a bound datagram socket (path and abstract
 * name) exactly as given, that STATUS is sent only on change and READY only once, and the
 * watchdog interval (half of WATCHDOG_USEC, only for our own pid). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "pushbridge/core/log.h"
#include "pushbridge/core/notify.h"

/* A bound datagram socket standing in for the service manager; name is what
 * NOTIFY_SOCKET would hold. */
struct manager {
    int fd;
    char name[108];
};

static void manager_open(struct manager *m, int abstract)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    socklen_t len;
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(m->fd >= 0);
    if (abstract) {
        snprintf(m->name, sizeof(m->name), "@pb-test-notify-%d", (int)getpid());
        memcpy(a.sun_path, m->name, strlen(m->name));
        a.sun_path[0] = '\0';
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(m->name));
    } else {
        snprintf(m->name, sizeof(m->name), "/tmp/pb-test-notify-%d.sock", (int)getpid());
        unlink(m->name);
        strcpy(a.sun_path, m->name);
        len = sizeof(a);
    }
    assert_int_equal(bind(m->fd, (struct sockaddr *)&a, len), 0);
}

static void manager_close(struct manager *m)
{
    close(m->fd);
    if (m->name[0] == '/')
        unlink(m->name);
}

/* The next datagram, or "" when none is waiting. */
static const char *manager_recv(struct manager *m)
{
    static char buf[512];
    ssize_t n = recv(m->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void test_no_socket_is_a_quiet_no_op(void **state)
{
    (void)state;
    char *envp[] = {"PATH=/bin", NULL};
    char err[256] = "";
    struct pb_notify n;
    assert_int_equal(pb_notify_open(&n, envp, err, sizeof(err)), 0);
    assert_int_equal(n.fd, -1);
    assert_int_equal(pb_notify_send(&n, "READY=1"), 0);
    assert_true(pb_notify_watchdog_interval(&n) == 0.);
    pb_notify_close(&n);
}

static void test_bad_environment_names_the_variable(void **state)
{
    (void)state;
    char longpath[160];
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    char buf[200];
    snprintf(buf, sizeof(buf), "NOTIFY_SOCKET=%s", longpath);
    char *cases[][3] = {
        {"NOTIFY_SOCKET=relative", NULL, "NOTIFY_SOCKET"},
        {buf, NULL, "NOTIFY_SOCKET"},
        {"NOTIFY_SOCKET=@x", "WATCHDOG_USEC=soon", "WATCHDOG_USEC"},
        {"NOTIFY_SOCKET=@x", "WATCHDOG_USEC=0", "WATCHDOG_USEC"},
        {"NOTIFY_SOCKET=@x", "WATCHDOG_USEC=-5", "WATCHDOG_USEC"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *envp[] = {cases[i][0], cases[i][1], NULL};
        char err[256] = "";
        struct pb_notify n;
        assert_int_equal(pb_notify_open(&n, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, cases[i][2]));
        pb_notify_close(&n);
    }
}

static void roundtrip(int abstract)
{
    struct manager m;
    manager_open(&m, abstract);
    char env[160];
    snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", m.name);
    char *envp[] = {env, "WATCHDOG_USEC=3000000", NULL};
    char err[256] = "";
    struct pb_notify n;
    assert_int_equal(pb_notify_open(&n, envp, err, sizeof(err)), 0);
    assert_true(pb_notify_watchdog_interval(&n) == 1.5);

    pb_notify_status(&n, "Not ready: waiting");
    assert_string_equal(manager_recv(&m), "STATUS=Not ready: waiting");
    pb_notify_status(&n, "Not ready: waiting"); /* unchanged: nothing sent */
    assert_string_equal(manager_recv(&m), "");
    pb_notify_ready(&n, "Ready: 0 connections, 0 users");
    assert_string_equal(manager_recv(&m), "READY=1\nSTATUS=Ready: 0 connections, 0 users");
    pb_notify_ready(&n, "Ready: again");
    assert_string_equal(manager_recv(&m), "");
    pb_notify_status(&n, "Ready: 0 connections, 0 users"); /* what READY carried */
    assert_string_equal(manager_recv(&m), "");
    assert_int_equal(pb_notify_send(&n, "WATCHDOG=1"), 0);
    assert_string_equal(manager_recv(&m), "WATCHDOG=1");
    assert_int_equal(pb_notify_send(&n, "STOPPING=1"), 0);
    assert_string_equal(manager_recv(&m), "STOPPING=1");
    pb_notify_close(&n);
    manager_close(&m);
}

static void test_path_socket_roundtrip(void **state)
{
    (void)state;
    roundtrip(0);
}

static void test_abstract_socket_roundtrip(void **state)
{
    (void)state;
    roundtrip(1);
}

static void test_watchdog_of_another_pid_is_not_ours(void **state)
{
    (void)state;
    char pid[64];
    snprintf(pid, sizeof(pid), "WATCHDOG_PID=%d", (int)getpid() + 1);
    char *envp[] = {"NOTIFY_SOCKET=@pb-none", "WATCHDOG_USEC=1000000", pid, NULL};
    char err[256] = "";
    struct pb_notify n;
    assert_int_equal(pb_notify_open(&n, envp, err, sizeof(err)), 0);
    assert_true(pb_notify_watchdog_interval(&n) == 0.);
    pb_notify_close(&n);

    snprintf(pid, sizeof(pid), "WATCHDOG_PID=%d", (int)getpid());
    assert_int_equal(pb_notify_open(&n, envp, err, sizeof(err)), 0);
    assert_true(pb_notify_watchdog_interval(&n) == 0.5);
    pb_notify_close(&n);
}

static void test_unreachable_socket_fails_without_blocking(void **state)
{
    (void)state;
    char *envp[] = {"NOTIFY_SOCKET=/nonexistent/pb-notify.sock", NULL};
    char err[256] = "";
    struct pb_notify n;
    assert_int_equal(pb_notify_open(&n, envp, err, sizeof(err)), 0);
    assert_int_equal(pb_notify_send(&n, "READY=1"), -1);
    pb_notify_ready(&n, "Ready");
    assert_int_equal(n.ready_sent, 0); /* tried again at the next tick */
    pb_notify_close(&n);
}

int main(void)
{
    char err[128];
    pb_log_init(PB_LOG_ERROR, PB_LOG_TEXT, NULL, err, sizeof(err));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_socket_is_a_quiet_no_op),
        cmocka_unit_test(test_bad_environment_names_the_variable),
        cmocka_unit_test(test_path_socket_roundtrip),
        cmocka_unit_test(test_abstract_socket_roundtrip),
        cmocka_unit_test(test_watchdog_of_another_pid_is_not_ours),
        cmocka_unit_test(test_unreachable_socket_fails_without_blocking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
