/* The log file swapped (SIGHUP's pb_log_reopen) while other threads log, as
 * workers and librdkafka's callbacks do: no line lost, none torn, and no
 * write to a FILE being swapped (run under ThreadSanitizer too, tests/run.sh
 * --tsan, which reports such a write as a race). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pushbridge/core/log.h"

#define WRITERS 2
#define LINES 2000
#define ROTATIONS 50

static char dir[] = "/tmp/pb-test-log-XXXXXX";
static char path[64];
static atomic_int writers_done;

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < LINES; i++)
        pb_info("writer %d line %d end", id, i);
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

/* Lines of the file, each whole ("... end"), counted per writer. */
static void count_lines(const char *file, int *per_writer)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return; /* a rotation that found nothing written yet */
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        int id = -1, n = -1;
        const char *w = strstr(line, "writer ");
        assert_non_null(w);
        assert_int_equal(sscanf(w, "writer %d line %d", &id, &n), 2);
        assert_non_null(strstr(w, " end\n"));
        assert_true(id >= 0 && id < WRITERS);
        per_writer[id]++;
    }
    fclose(f);
}

static void test_reopen_while_threads_log(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/pb.log", dir);
    char err[256];
    assert_int_equal(pb_log_init(PB_LOG_INFO, PB_LOG_TEXT, path, err, sizeof(err)), 0);

    pthread_t t[WRITERS];
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
    /* Rotate as logrotate does: rename, then SIGHUP (pb_log_reopen). */
    int rotated = 0;
    while (rotated < ROTATIONS && atomic_load(&writers_done) < WRITERS) {
        char old[96];
        snprintf(old, sizeof(old), "%s/pb.log.%d", dir, rotated);
        if (rename(path, old) == 0)
            rotated++;
        pb_log_reopen();
    }
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    pb_log_close();

    int per_writer[WRITERS] = {0};
    for (int r = 0; r < rotated; r++) {
        char old[96];
        snprintf(old, sizeof(old), "%s/pb.log.%d", dir, r);
        count_lines(old, per_writer);
        unlink(old);
    }
    count_lines(path, per_writer);
    unlink(path);
    rmdir(dir);
    assert_true(rotated > 0);
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(per_writer[i], LINES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reopen_while_threads_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
