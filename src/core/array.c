/* Pool-backed growable arrays. */
#include "array.h"

#include <stdint.h>
#include <string.h>

int pt_array_init(pt_array_t *a, pt_pool_t *pool, size_t n, size_t size)
{
    if (n == 0)
        n = 1;
    if (size == 0 || n > SIZE_MAX / size) {
        a->elts = NULL;
        return -1;
    }
    a->nelts = 0;
    a->size = size;
    a->nalloc = n;
    a->pool = pool;
    a->elts = pt_palloc(pool, n * size);
    return a->elts ? 0 : -1;
}

pt_array_t *pt_array_create(pt_pool_t *pool, size_t n, size_t size)
{
    pt_array_t *a = pt_palloc(pool, sizeof(*a));
    if (a == NULL || pt_array_init(a, pool, n, size) != 0)
        return NULL;
    return a;
}

void *pt_array_push_n(pt_array_t *a, size_t n)
{
    if (n > SIZE_MAX - a->nelts)
        return NULL;
    if (a->nelts + n > a->nalloc) {
        size_t want = a->nalloc <= SIZE_MAX / 2 ? a->nalloc * 2 : SIZE_MAX;
        if (want < a->nelts + n)
            want = a->nelts + n;
        if (want > SIZE_MAX / a->size)
            return NULL;
        void *ne = pt_palloc(a->pool, want * a->size);
        if (ne == NULL)
            return NULL;
        memcpy(ne, a->elts, a->nelts * a->size);
        pt_pfree(a->pool, a->elts);
        a->elts = ne;
        a->nalloc = want;
    }
    void *e = (char *) a->elts + a->nelts * a->size;
    memset(e, 0, n * a->size);
    a->nelts += n;
    return e;
}

void *pt_array_push(pt_array_t *a)
{
    return pt_array_push_n(a, 1);
}
