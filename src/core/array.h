/* Growable arrays allocated from a pool. Elements move when the array grows:
 * never keep pointers into an array that may still grow. */
#ifndef PT_ARRAY_H
#define PT_ARRAY_H

#include <stddef.h>
#include "pool.h"

typedef struct {
    void      *elts;
    size_t     nelts;
    size_t     size;     /* element size */
    size_t     nalloc;
    pt_pool_t *pool;
} pt_array_t;

/* Returns 0 or -1 on allocation failure. */
int   pt_array_init(pt_array_t *a, pt_pool_t *pool, size_t n, size_t size);
pt_array_t *pt_array_create(pt_pool_t *pool, size_t n, size_t size);
/* Returns a pointer to a new zeroed element, NULL on failure. */
void *pt_array_push(pt_array_t *a);
void *pt_array_push_n(pt_array_t *a, size_t n);

#define pt_array_at(a, type, i) (((type *) (a)->elts)[i])

#endif
