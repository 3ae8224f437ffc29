/* Process-shared robust mutex. The kernel marks a robust mutex whose owner
 * died; the next locker gets EOWNERDEAD, declares the state consistent and
 * carries on, so a crashed worker never wedges the others. The data the lock
 * protected may be half-updated: zone users keep their updates small and
 * ordered so that a half-done one is harmless (a counter, a list link). */
#include "shm.h"

#include <errno.h>

#include "log.h"

int pt_shmtx_init(pt_shmtx_t *mtx)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc != 0)
        goto fail;
    if ((rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) != 0
        || (rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) != 0
        || (rc = pthread_mutex_init(&mtx->m, &a)) != 0) {
        pthread_mutexattr_destroy(&a);
        goto fail;
    }
    pthread_mutexattr_destroy(&a);
    return 0;
fail:
    errno = rc;
    return -1;
}

static void recover(pt_shmtx_t *mtx)
{
    pt_log_error(PT_LOG_ALERT, NULL, 0,
                 "shared mutex %p: owner died while holding it, recovered", (void *) mtx);
    pthread_mutex_consistent(&mtx->m);
}

void pt_shmtx_lock(pt_shmtx_t *mtx)
{
    int rc = pthread_mutex_lock(&mtx->m);
    if (rc == 0)
        return;
    if (rc == EOWNERDEAD) {
        recover(mtx);
        return;
    }
    /* ENOTRECOVERABLE or EDEADLK: a bug; nothing sane to do but say so */
    pt_log_error(PT_LOG_ALERT, NULL, rc, "pthread_mutex_lock() failed");
}

int pt_shmtx_trylock(pt_shmtx_t *mtx)
{
    int rc = pthread_mutex_trylock(&mtx->m);
    if (rc == 0)
        return 1;
    if (rc == EOWNERDEAD) {
        recover(mtx);
        return 1;
    }
    return 0;
}

void pt_shmtx_unlock(pt_shmtx_t *mtx)
{
    int rc = pthread_mutex_unlock(&mtx->m);
    if (rc != 0)
        pt_log_error(PT_LOG_ALERT, NULL, rc, "pthread_mutex_unlock() failed");
}
