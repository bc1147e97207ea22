/* ThreadSanitizer builds only: librdkafka starts its threads with C11's
 * thrd_create, which glibc 2.34+ implements without going through
 * pthread_create, so TSan never learns of those threads and crashes in
 * them (its per-thread state is missing). Defining thrd_create here, in the
 * executable, interposes on the library's call and starts the thread through
 * pthread_create, which TSan intercepts. thrd_t is pthread_t in glibc, so
 * thrd_join and thrd_detach keep working on what this returns. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

struct trampoline {
    thrd_start_t fn;
    void *arg;
};

static void *run(void *p)
{
    struct trampoline t = *(struct trampoline *)p;
    free(p);
    return (void *)(intptr_t)t.fn(t.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
    struct trampoline *t = malloc(sizeof(*t));
    if (!t)
        return thrd_nomem;
    t->fn = fn;
    t->arg = arg;
    int rc = pthread_create((pthread_t *)thr, NULL, run, t);
    if (rc) {
        free(t);
        return rc == ENOMEM ? thrd_nomem : thrd_error;
    }
    return thrd_success;
}

/* The same threads are joined and detached through these: TSan must see
 * both ends, or it reports every librdkafka thread as leaked. */
int thrd_join(thrd_t thr, int *res)
{
    void *ret;
    if (pthread_join((pthread_t)thr, &ret))
        return thrd_error;
    if (res)
        *res = (int)(intptr_t)ret;
    return thrd_success;
}

int thrd_detach(thrd_t thr)
{
    return pthread_detach((pthread_t)thr) ? thrd_error : thrd_success;
}
