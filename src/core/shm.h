/* Shared memory for state that every worker sees: zones created by the master
 * before fork (mmap MAP_SHARED|MAP_ANONYMOUS), a slab allocator inside each
 * zone and a process-shared robust mutex. A zone survives a reload when its
 * name and size match (its init callback gets the old data). */
#ifndef PT_SHM_H
#define PT_SHM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "str.h"

/* Process-shared mutex; robust: a worker dying while holding it does not
 * wedge the others (the next locker recovers it). */
typedef struct {
    pthread_mutex_t m;
} pt_shmtx_t;

int  pt_shmtx_init(pt_shmtx_t *mtx);
void pt_shmtx_lock(pt_shmtx_t *mtx);
int  pt_shmtx_trylock(pt_shmtx_t *mtx);   /* 1 when taken */
void pt_shmtx_unlock(pt_shmtx_t *mtx);

/* A slab pool occupies a whole zone; its header sits at the zone's start. */
typedef struct pt_slab_pool_s pt_slab_pool_t;
struct pt_slab_pool_s {
    pt_shmtx_t  mutex;
    size_t      size;        /* of the zone */
    void       *data;        /* the owner's root object (kept across reload) */
    char        log_ctx[64]; /* " in zone \"name\"" for no-memory messages */
    unsigned    log_nomem:1;
    /* allocator internals follow (private to slab.c) */
    void       *_priv[16];
};

int   pt_slab_init(pt_slab_pool_t *pool, size_t size);   /* 0 or -1 if too small */
void *pt_slab_alloc(pt_slab_pool_t *pool, size_t size);  /* takes the mutex */
void *pt_slab_calloc(pt_slab_pool_t *pool, size_t size);
void *pt_slab_alloc_locked(pt_slab_pool_t *pool, size_t size);
void *pt_slab_calloc_locked(pt_slab_pool_t *pool, size_t size);
void  pt_slab_free(pt_slab_pool_t *pool, void *p);
void  pt_slab_free_locked(pt_slab_pool_t *pool, void *p);
size_t pt_slab_free_bytes(pt_slab_pool_t *pool);        /* approximate, for status */

typedef struct pt_shm_zone_s pt_shm_zone_t;
/* Called in the master after the zone is mapped. old_data is the previous
 * cycle's `data` when the zone was kept across a reload, else NULL. Returns 0
 * or -1 (startup/reload fails). */
typedef int (*pt_shm_zone_init_cb)(pt_shm_zone_t *zone, void *old_data);
/* Two-phase reload: an init that got old_data (a zone the running workers
 * use) must change nothing those workers see, because the new cycle may still
 * fail; it stages its changes and this callback, called by pt_cycle_commit()
 * in the master for every zone of the committed cycle, applies them. An init
 * with old_data == NULL owns a fresh mapping and may write at once. */
typedef void (*pt_shm_zone_commit_cb)(pt_shm_zone_t *zone);

struct pt_shm_zone_s {
    pt_str_t            name;
    size_t              size;
    void               *addr;     /* mapping; a pt_slab_pool_t sits at its start */
    void               *tag;      /* owning module: two modules cannot share a name */
    void               *data;     /* owner's per-zone config data */
    pt_shm_zone_init_cb init;
    pt_shm_zone_commit_cb commit; /* NULL: nothing staged */
    unsigned            noreuse:1;
    pt_shm_zone_t      *next;
};

/* Maps size bytes (rounded to pages) and initialises a slab pool in it.
 * Returns 0 or -1. */
int  pt_shm_alloc(pt_shm_zone_t *zone);
void pt_shm_free(pt_shm_zone_t *zone);

#endif
