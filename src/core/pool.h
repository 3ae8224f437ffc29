/* Arenas (pools). Allocate from the owner's pool and free everything at once
 * when the owner (config cycle, connection, request) ends. Cleanups run in
 * reverse order of registration before the memory is released.
 *
 * Large allocations (> the pool's block size / 2) get their own malloc'd block
 * that is still freed with the pool; pt_pfree() may release such a block early. */
#ifndef PT_POOL_H
#define PT_POOL_H

#include <stddef.h>
#include "str.h"

typedef struct pt_pool_s pt_pool_t;
typedef void (*pt_pool_cleanup_cb)(void *data);

/* Returns NULL on allocation failure. block_size is rounded to >= 256. */
pt_pool_t *pt_pool_create(size_t block_size);
void       pt_pool_destroy(pt_pool_t *pool);
/* Frees everything but the first block, keeping the pool usable (keep-alive). */
void       pt_pool_reset(pt_pool_t *pool);

/* Per-request pools: pt_pool_get() hands out a reset pool of block_size
 * from a small per-process cache (else a new one), pt_pool_put() resets the
 * pool and keeps it for the next request (else destroys it).  HTTP/1
 * requests and HTTP/2 streams share the cache.  Under ASan the cache is
 * off: a reused pool would hide a use after the end of a request. */
pt_pool_t *pt_pool_get(size_t block_size);
void       pt_pool_put(pt_pool_t *pool, size_t block_size);

/* 16-byte aligned; NULL on failure. */
void *pt_palloc(pt_pool_t *pool, size_t size);
void *pt_pcalloc(pt_pool_t *pool, size_t size);
/* Unaligned, for strings. */
void *pt_pnalloc(pt_pool_t *pool, size_t size);
/* Releases a large block early; no-op for small allocations. */
void  pt_pfree(pt_pool_t *pool, void *p);

/* Copies and NUL-terminates; the result's len excludes the NUL. */
char *pt_pstrndup(pt_pool_t *pool, const char *s, size_t len);
int   pt_pstrdup(pt_pool_t *pool, pt_str_t *dst, const pt_str_t *src);
/* printf into the pool; NUL-terminated; NULL on failure. */
char *pt_psprintf(pt_pool_t *pool, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns 0, or -1 if the cleanup record could not be allocated. */
int pt_pool_cleanup_add(pt_pool_t *pool, pt_pool_cleanup_cb fn, void *data);

/* Bytes currently held by the pool (blocks + large), for tests and status. */
size_t pt_pool_size(const pt_pool_t *pool);

#endif
