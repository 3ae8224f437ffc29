/* Arenas: a list of blocks bumped from the front, plus a list of large
 * allocations, plus cleanups. Everything is released by pt_pool_destroy(). */
#include "pool.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define PT_POOL_ALIGN 16

typedef struct pt_pool_block_s {
    struct pt_pool_block_s *next;
    char                   *last;   /* first free byte */
    char                   *end;
    unsigned                failed; /* times an allocation did not fit */
} pt_pool_block_t;

typedef struct pt_pool_large_s {
    struct pt_pool_large_s *next;
    struct pt_pool_large_s *prev;
    size_t                  size;
    /* the allocation follows, aligned */
} pt_pool_large_t;

typedef struct pt_pool_cleanup_s {
    struct pt_pool_cleanup_s *next;
    pt_pool_cleanup_cb        fn;
    void                     *data;
} pt_pool_cleanup_t;

struct pt_pool_s {
    pt_pool_block_t   *first;
    pt_pool_block_t   *current;  /* first block worth trying */
    pt_pool_large_t   *large;
    pt_pool_cleanup_t *cleanups;
    size_t             block_size;
    size_t             max_small;
    size_t             total;
};

#define LARGE_HDR ((sizeof(pt_pool_large_t) + PT_POOL_ALIGN - 1) & ~(size_t) (PT_POOL_ALIGN - 1))
#define BLOCK_HDR ((sizeof(pt_pool_block_t) + PT_POOL_ALIGN - 1) & ~(size_t) (PT_POOL_ALIGN - 1))

static pt_pool_block_t *block_new(size_t size)
{
    pt_pool_block_t *b = malloc(size);
    if (b == NULL)
        return NULL;
    b->next = NULL;
    b->last = (char *) b + BLOCK_HDR;
    b->end = (char *) b + size;
    b->failed = 0;
    return b;
}

pt_pool_t *pt_pool_create(size_t block_size)
{
    if (block_size < 256)
        block_size = 256;
    pt_pool_block_t *b = block_new(block_size);
    if (b == NULL)
        return NULL;
    /* the pool header lives in its own first block */
    pt_pool_t *p = (pt_pool_t *) b->last;
    b->last += (sizeof(pt_pool_t) + PT_POOL_ALIGN - 1) & ~(size_t) (PT_POOL_ALIGN - 1);
    p->first = p->current = b;
    p->large = NULL;
    p->cleanups = NULL;
    p->block_size = block_size;
    p->max_small = (block_size - BLOCK_HDR) / 2;
    p->total = block_size;
    return p;
}

static void run_cleanups(pt_pool_t *pool)
{
    /* a cleanup may register another one (closing a stream that owns a
     * sub-object): keep going until none is left */
    pt_pool_cleanup_t *c;
    while ((c = pool->cleanups) != NULL) {
        pool->cleanups = NULL;
        for (; c; c = c->next)
            c->fn(c->data);
    }
}

static void free_large(pt_pool_t *pool)
{
    pt_pool_large_t *l = pool->large, *n;
    for (; l; l = n) {
        n = l->next;
        free(l);
    }
    pool->large = NULL;
}

void pt_pool_destroy(pt_pool_t *pool)
{
    if (pool == NULL)
        return;
    run_cleanups(pool);
    free_large(pool);
    pt_pool_block_t *b = pool->first->next, *n;
    for (; b; b = n) {
        n = b->next;
        free(b);
    }
    free(pool->first);
}

void pt_pool_reset(pt_pool_t *pool)
{
    run_cleanups(pool);
    free_large(pool);
    pt_pool_block_t *b = pool->first->next, *n;
    for (; b; b = n) {
        n = b->next;
        free(b);
    }
    pt_pool_block_t *f = pool->first;
    f->next = NULL;
    f->failed = 0;
    f->last = (char *) f + BLOCK_HDR
              + ((sizeof(pt_pool_t) + PT_POOL_ALIGN - 1) & ~(size_t) (PT_POOL_ALIGN - 1));
    pool->current = f;
    pool->total = pool->block_size;
}

static void *alloc_large(pt_pool_t *pool, size_t size)
{
    if (size > SIZE_MAX - LARGE_HDR)
        return NULL;
    pt_pool_large_t *l = malloc(LARGE_HDR + size);
    if (l == NULL)
        return NULL;
    l->size = size;
    l->prev = NULL;
    l->next = pool->large;
    if (pool->large)
        pool->large->prev = l;
    pool->large = l;
    pool->total += LARGE_HDR + size;
    return (char *) l + LARGE_HDR;
}

static void *alloc_small(pt_pool_t *pool, size_t size, int align)
{
    pt_pool_block_t *b;
    for (b = pool->current; b; b = b->next) {
        uintptr_t m0 = (uintptr_t) b->last;
        if (align)
            m0 = (m0 + PT_POOL_ALIGN - 1) & ~(uintptr_t) (PT_POOL_ALIGN - 1);
        /* compare as integers: an aligned m0 may lie past the end */
        if (m0 <= (uintptr_t) b->end && (uintptr_t) b->end - m0 >= size) {
            char *m = (char *) m0;
            b->last = m + size;
            return m;
        }
    }
    /* no room: new block; blocks that failed often stop being tried */
    b = block_new(pool->block_size);
    if (b == NULL)
        return NULL;
    pool->total += pool->block_size;
    pt_pool_block_t *t = pool->current;
    for (; t->next; t = t->next) {
        if (t->failed++ > 4)
            pool->current = t->next;
    }
    t->next = b;
    char *m = b->last;
    if (align)
        m = (char *) (((uintptr_t) m + PT_POOL_ALIGN - 1) & ~(uintptr_t) (PT_POOL_ALIGN - 1));
    b->last = m + size;
    return m;
}

void *pt_palloc(pt_pool_t *pool, size_t size)
{
    if (size <= pool->max_small)
        return alloc_small(pool, size, 1);
    return alloc_large(pool, size);
}

void *pt_pnalloc(pt_pool_t *pool, size_t size)
{
    if (size <= pool->max_small)
        return alloc_small(pool, size, 0);
    return alloc_large(pool, size);
}

void *pt_pcalloc(pt_pool_t *pool, size_t size)
{
    void *p = pt_palloc(pool, size);
    if (p)
        memset(p, 0, size);
    return p;
}

void pt_pfree(pt_pool_t *pool, void *p)
{
    for (pt_pool_large_t *l = pool->large; l; l = l->next) {
        if ((char *) l + LARGE_HDR == p) {
            if (l->prev)
                l->prev->next = l->next;
            else
                pool->large = l->next;
            if (l->next)
                l->next->prev = l->prev;
            pool->total -= LARGE_HDR + l->size;
            free(l);
            return;
        }
    }
}

char *pt_pstrndup(pt_pool_t *pool, const char *s, size_t len)
{
    char *d = pt_pnalloc(pool, len + 1);
    if (d == NULL)
        return NULL;
    if (len)
        memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

int pt_pstrdup(pt_pool_t *pool, pt_str_t *dst, const pt_str_t *src)
{
    char *d = pt_pstrndup(pool, src->data ? src->data : "", src->len);
    if (d == NULL)
        return -1;
    dst->data = d;
    dst->len = src->len;
    return 0;
}

char *pt_psprintf(pt_pool_t *pool, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *d = pt_pnalloc(pool, (size_t) n + 1);
    if (d == NULL)
        return NULL;
    if ((size_t) n < sizeof(small)) {
        memcpy(d, small, (size_t) n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(d, (size_t) n + 1, fmt, ap);
        va_end(ap);
    }
    return d;
}

int pt_pool_cleanup_add(pt_pool_t *pool, pt_pool_cleanup_cb fn, void *data)
{
    pt_pool_cleanup_t *c = pt_palloc(pool, sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->data = data;
    c->next = pool->cleanups;   /* reverse order of registration */
    pool->cleanups = c;
    return 0;
}

size_t pt_pool_size(const pt_pool_t *pool)
{
    return pool->total;
}

#if defined(__SANITIZE_ADDRESS__)
#define POOL_CACHE_N 0
#else
#define POOL_CACHE_N 32
#endif

static struct {
    pt_pool_t *pool;
    size_t     size;
} pool_cache[POOL_CACHE_N + 1];
static unsigned pool_cache_n;

pt_pool_t *pt_pool_get(size_t block_size)
{
    for (unsigned i = pool_cache_n; i > 0; i--) {
        if (pool_cache[i - 1].size == block_size) {
            pt_pool_t *p = pool_cache[i - 1].pool;
            pool_cache[i - 1] = pool_cache[--pool_cache_n];
            return p;
        }
    }
    return pt_pool_create(block_size);
}

void pt_pool_put(pt_pool_t *pool, size_t block_size)
{
    if (pool_cache_n + 1 <= POOL_CACHE_N) {     /* (not "<": 0 under ASan) */
        pt_pool_reset(pool);
        pool_cache[pool_cache_n].pool = pool;
        pool_cache[pool_cache_n].size = block_size;
        pool_cache_n++;
        return;
    }
    pt_pool_destroy(pool);
}
