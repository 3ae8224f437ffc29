/* Slab allocator inside a shared-memory zone.
 *
 * Zone layout:
 *   [pt_slab_pool_t][slab_t][page descriptors x npages] .. pad .. [pages]
 *
 * The zone is cut into 4 KiB pages, each with a descriptor. A request of up
 * to half a page is served from a slab page of its power-of-two class (8 B ..
 * 2 KiB); a slab page tracks its objects with a busy bitmap (in the
 * descriptor for 64 objects or fewer, at the start of the page for the
 * smaller classes) and sits on its class's list while it has room. Larger
 * requests take a run of whole pages. Free runs are kept on lists by length
 * (1..15 pages, then "16 or more") and coalesce with free neighbours when
 * released: a free run marks its first and last page, so both neighbours are
 * found in O(1).
 *
 * Everything is plain pointers: the zone is mapped before fork, at the same
 * address in every process. Every public function but the _locked ones takes
 * pool->mutex. Bad frees (outside the zone, into a free page, misaligned,
 * double) are detected and logged, never followed. */
#include "shm.h"

#include <stdint.h>
#include <string.h>

#include "log.h"

#define PAGE_SHIFT   12
#define PAGE_SIZE    ((size_t) 1 << PAGE_SHIFT)
#define MIN_SHIFT    3                       /* 8-byte objects */
#define MAX_SHIFT    (PAGE_SHIFT - 1)        /* 2 KiB: larger takes pages */
#define NCLASSES     (MAX_SHIFT - MIN_SHIFT + 1)
#define MAP_SHIFT    6                       /* from 64-byte objects the bitmap fits a word */
#define NBUCKETS     16

enum {
    PAGE_FREE_BODY = 0,   /* inside a free run */
    PAGE_FREE,            /* first page of a free run (npages = run length) */
    PAGE_FREE_TAIL,       /* last page of a free run of 2+ pages (npages = run length) */
    PAGE_RUN,             /* first page of an allocated run (npages = run length) */
    PAGE_RUN_BODY,        /* other pages of an allocated run */
    PAGE_SLAB             /* page of small objects */
};

typedef struct slab_page_s slab_page_t;
struct slab_page_s {
    slab_page_t *next, *prev;   /* free-run bucket or class list */
    uint64_t     map;           /* busy bitmap, classes >= MAP_SHIFT */
    uint32_t     npages;
    uint16_t     inuse;         /* slab: objects taken, reserved ones included */
    uint8_t      shift;         /* slab: log2 of the object size */
    uint8_t      type;
};

typedef struct {
    slab_page_t *desc;
    char        *pages;
    size_t       npages;
    size_t       free_pages;
    size_t       small_free;            /* free bytes inside slab pages */
    slab_page_t *buckets[NBUCKETS];     /* free runs by length */
    slab_page_t *classes[NCLASSES];     /* slab pages with room */
    unsigned     nomem_logged;
} slab_t;

#define ST(pool) ((slab_t *) (pool)->_priv[0])

/* Objects per slab page and how many of them the in-page bitmap takes. */
static unsigned class_objects(unsigned shift)
{
    return (unsigned) (PAGE_SIZE >> shift);
}

static unsigned class_reserved(unsigned shift)
{
    if (shift >= MAP_SHIFT)
        return 0;
    size_t map_bytes = class_objects(shift) / 8;
    return (unsigned) ((map_bytes + ((size_t) 1 << shift) - 1) >> shift);
}

static char *page_addr(slab_t *st, slab_page_t *d)
{
    return st->pages + ((size_t) (d - st->desc) << PAGE_SHIFT);
}

/* ---- lists ---------------------------------------------------------------- */

static void list_push(slab_page_t **head, slab_page_t *d)
{
    d->prev = NULL;
    d->next = *head;
    if (*head)
        (*head)->prev = d;
    *head = d;
}

static void list_unlink(slab_page_t **head, slab_page_t *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        *head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->next = d->prev = NULL;
}

static unsigned bucket_of(size_t n)
{
    return n < NBUCKETS ? (unsigned) n : NBUCKETS - 1;
}

/* ---- page runs ------------------------------------------------------------ */

/* Marks [d, d+n) as one free run (interior pages must already be FREE_BODY)
 * and files it. */
static void run_file_free(slab_t *st, slab_page_t *d, size_t n)
{
    d->type = PAGE_FREE;
    d->npages = (uint32_t) n;
    if (n > 1) {
        d[n - 1].type = PAGE_FREE_TAIL;
        d[n - 1].npages = (uint32_t) n;
    }
    list_push(&st->buckets[bucket_of(n)], d);
}

static slab_page_t *pages_alloc(slab_t *st, size_t n)
{
    slab_page_t *run = NULL;
    for (unsigned b = bucket_of(n); b < NBUCKETS && run == NULL; b++) {
        for (slab_page_t *d = st->buckets[b]; d; d = d->next) {
            if (d->npages >= n) {
                run = d;
                break;
            }
        }
    }
    if (run == NULL)
        return NULL;
    size_t len = run->npages;
    list_unlink(&st->buckets[bucket_of(len)], run);
    if (len > n) {
        slab_page_t *rest = run + n;
        /* rest's interior is FREE_BODY already; its tail mark (if any) stays */
        run_file_free(st, rest, len - n);
    }
    run->type = PAGE_RUN;
    run->npages = (uint32_t) n;
    for (size_t i = 1; i < n; i++) {
        run[i].type = PAGE_RUN_BODY;
        run[i].npages = 0;
    }
    st->free_pages -= n;
    return run;
}

static void pages_free(slab_t *st, slab_page_t *d, size_t n)
{
    size_t idx = (size_t) (d - st->desc);
    for (size_t i = 0; i < n; i++) {
        d[i].type = PAGE_FREE_BODY;
        d[i].npages = 0;
        d[i].map = 0;
        d[i].inuse = 0;
        d[i].shift = 0;
    }
    st->free_pages += n;

    /* the run before, if free, ends right at idx - 1 */
    if (idx > 0 && (d[-1].type == PAGE_FREE || d[-1].type == PAGE_FREE_TAIL)) {
        size_t len = d[-1].npages;
        slab_page_t *head = d - len;
        list_unlink(&st->buckets[bucket_of(len)], head);
        d[-1].type = PAGE_FREE_BODY;   /* old tail (or head) becomes interior */
        head->type = PAGE_FREE_BODY;
        d = head;
        n += len;
        idx -= len;
    }
    /* the run after, if free, starts right at idx + n */
    if (idx + n < st->npages && d[n].type == PAGE_FREE) {
        size_t len = d[n].npages;
        list_unlink(&st->buckets[bucket_of(len)], &d[n]);
        d[n].type = PAGE_FREE_BODY;
        if (len > 1)
            d[n + len - 1].type = PAGE_FREE_BODY;
        n += len;
    }
    run_file_free(st, d, n);
}

/* ---- small objects -------------------------------------------------------- */

static uint64_t *page_map(slab_t *st, slab_page_t *d)
{
    return d->shift >= MAP_SHIFT ? &d->map : (uint64_t *) page_addr(st, d);
}

static unsigned map_words(unsigned shift)
{
    return shift >= MAP_SHIFT ? 1 : class_objects(shift) / 64;
}

static slab_page_t *slab_new(slab_t *st, unsigned shift)
{
    slab_page_t *d = pages_alloc(st, 1);
    if (d == NULL)
        return NULL;
    d->type = PAGE_SLAB;
    d->shift = (uint8_t) shift;
    unsigned objs = class_objects(shift), res = class_reserved(shift);
    if (shift >= MAP_SHIFT) {
        /* bits past the last object read as busy so "full" is all ones */
        d->map = objs >= 64 ? 0 : ~(uint64_t) 0 << objs;
    } else {
        uint64_t *m = page_map(st, d);
        memset(m, 0, (size_t) map_words(shift) * 8);
        for (unsigned i = 0; i < res; i++)
            m[i / 64] |= (uint64_t) 1 << (i % 64);
    }
    d->inuse = (uint16_t) res;
    st->small_free += (size_t) (objs - res) << shift;
    list_push(&st->classes[shift - MIN_SHIFT], d);
    return d;
}

static void *small_alloc(slab_t *st, unsigned shift)
{
    slab_page_t **list = &st->classes[shift - MIN_SHIFT];
    slab_page_t *d = *list;
    if (d == NULL && (d = slab_new(st, shift)) == NULL)
        return NULL;
    uint64_t *m = page_map(st, d);
    unsigned words = map_words(shift);
    for (unsigned w = 0; w < words; w++) {
        if (m[w] == ~(uint64_t) 0)
            continue;
        unsigned bit = (unsigned) __builtin_ctzll(~m[w]);
        m[w] |= (uint64_t) 1 << bit;
        d->inuse++;
        if (d->inuse == class_objects(shift))
            list_unlink(list, d);
        st->small_free -= (size_t) 1 << shift;
        return page_addr(st, d) + ((size_t) (w * 64 + bit) << shift);
    }
    /* a page on the list always has room */
    pt_log_error(PT_LOG_ALERT, NULL, 0, "pt_slab_alloc(): corrupted slab page %p", (void *) d);
    list_unlink(list, d);
    return NULL;
}

static void small_free(pt_slab_pool_t *pool, slab_t *st, slab_page_t *d, char *p)
{
    unsigned shift = d->shift;
    size_t off = (size_t) (p - page_addr(st, d));
    if (off & (((size_t) 1 << shift) - 1)) {
        pt_log_error(PT_LOG_ALERT, NULL, 0, "pt_slab_free(): pointer to wrong chunk%s",
                     pool->log_ctx);
        return;
    }
    unsigned i = (unsigned) (off >> shift);
    uint64_t *m = page_map(st, d);
    uint64_t bit = (uint64_t) 1 << (i % 64);
    if (i < class_reserved(shift)) {
        pt_log_error(PT_LOG_ALERT, NULL, 0, "pt_slab_free(): pointer to wrong chunk%s",
                     pool->log_ctx);
        return;
    }
    if (!(m[i / 64] & bit)) {
        pt_log_error(PT_LOG_ALERT, NULL, 0, "pt_slab_free(): chunk is already free%s",
                     pool->log_ctx);
        return;
    }
    m[i / 64] &= ~bit;
    slab_page_t **list = &st->classes[shift - MIN_SHIFT];
    if (d->inuse == class_objects(shift))
        list_push(list, d);   /* was full: has room again */
    d->inuse--;
    st->small_free += (size_t) 1 << shift;
    if (d->inuse == class_reserved(shift)) {
        /* empty: the page goes back to the free runs */
        list_unlink(list, d);
        st->small_free -= (size_t) (class_objects(shift) - class_reserved(shift)) << shift;
        pages_free(st, d, 1);
    }
}

/* ---- public --------------------------------------------------------------- */

int pt_slab_init(pt_slab_pool_t *pool, size_t size)
{
    _Static_assert(sizeof(((pt_slab_pool_t *) 0)->_priv) >= sizeof(void *), "priv");
    char *base = (char *) pool, *end = base + size;
    size_t hdr = (sizeof(pt_slab_pool_t) + 15) & ~(size_t) 15;
    size_t st_size = (sizeof(slab_t) + 15) & ~(size_t) 15;
    if (size < hdr + st_size + PAGE_SIZE)
        return -1;

    slab_t *st = (slab_t *) (base + hdr);
    slab_page_t *desc = (slab_page_t *) ((char *) st + st_size);
    /* as many pages as fit with their descriptors and the alignment pad */
    size_t avail = (size_t) (end - (char *) desc);
    size_t n = avail / (PAGE_SIZE + sizeof(slab_page_t));
    char *pages;
    for (;;) {
        if (n == 0)
            return -1;
        uintptr_t a = (uintptr_t) (desc + n);
        pages = (char *) ((a + PAGE_SIZE - 1) & ~(uintptr_t) (PAGE_SIZE - 1));
        if (pages + n * PAGE_SIZE <= end)
            break;
        n--;
    }

    if (pt_shmtx_init(&pool->mutex) != 0)
        return -1;
    pool->size = size;
    pool->data = NULL;
    pool->log_ctx[0] = '\0';
    pool->log_nomem = 1;
    memset(pool->_priv, 0, sizeof(pool->_priv));
    pool->_priv[0] = st;

    memset(st, 0, sizeof(*st));
    st->desc = desc;
    st->pages = pages;
    st->npages = n;
    st->free_pages = n;
    memset(desc, 0, n * sizeof(*desc));   /* all PAGE_FREE_BODY */
    run_file_free(st, desc, n);
    return 0;
}

void *pt_slab_alloc_locked(pt_slab_pool_t *pool, size_t size)
{
    slab_t *st = ST(pool);
    void *p;

    if (size <= ((size_t) 1 << MAX_SHIFT)) {
        unsigned shift = MIN_SHIFT;
        while (((size_t) 1 << shift) < size)
            shift++;
        p = small_alloc(st, shift);
    } else {
        size_t n = size / PAGE_SIZE + (size % PAGE_SIZE != 0);
        slab_page_t *d = n <= st->npages ? pages_alloc(st, n) : NULL;
        p = d ? page_addr(st, d) : NULL;
    }
    if (p == NULL) {
        /* once per shortage: a zone under pressure fails many times */
        if (pool->log_nomem && !st->nomem_logged)
            pt_log_error(PT_LOG_CRIT, NULL, 0, "pt_slab_alloc() failed: no memory%s",
                         pool->log_ctx);
        st->nomem_logged = 1;
    }
    return p;
}

void *pt_slab_calloc_locked(pt_slab_pool_t *pool, size_t size)
{
    void *p = pt_slab_alloc_locked(pool, size);
    if (p)
        memset(p, 0, size);
    return p;
}

void *pt_slab_alloc(pt_slab_pool_t *pool, size_t size)
{
    pt_shmtx_lock(&pool->mutex);
    void *p = pt_slab_alloc_locked(pool, size);
    pt_shmtx_unlock(&pool->mutex);
    return p;
}

void *pt_slab_calloc(pt_slab_pool_t *pool, size_t size)
{
    pt_shmtx_lock(&pool->mutex);
    void *p = pt_slab_calloc_locked(pool, size);
    pt_shmtx_unlock(&pool->mutex);
    return p;
}

void pt_slab_free_locked(pt_slab_pool_t *pool, void *ptr)
{
    slab_t *st = ST(pool);
    char *p = ptr;
    if (p == NULL)
        return;
    if (p < st->pages || p >= st->pages + (st->npages << PAGE_SHIFT)) {
        pt_log_error(PT_LOG_ALERT, NULL, 0, "pt_slab_free(): outside of pool%s", pool->log_ctx);
        return;
    }
    slab_page_t *d = &st->desc[(size_t) (p - st->pages) >> PAGE_SHIFT];
    switch (d->type) {
    case PAGE_SLAB:
        small_free(pool, st, d, p);
        break;
    case PAGE_RUN:
        if (p != page_addr(st, d)) {
            pt_log_error(PT_LOG_ALERT, NULL, 0, "pt_slab_free(): pointer to wrong page%s",
                         pool->log_ctx);
            return;
        }
        pages_free(st, d, d->npages);
        break;
    case PAGE_RUN_BODY:
        pt_log_error(PT_LOG_ALERT, NULL, 0, "pt_slab_free(): pointer to wrong page%s",
                     pool->log_ctx);
        return;
    default:
        pt_log_error(PT_LOG_ALERT, NULL, 0, "pt_slab_free(): page is already free%s",
                     pool->log_ctx);
        return;
    }
    st->nomem_logged = 0;
}

void pt_slab_free(pt_slab_pool_t *pool, void *p)
{
    pt_shmtx_lock(&pool->mutex);
    pt_slab_free_locked(pool, p);
    pt_shmtx_unlock(&pool->mutex);
}

size_t pt_slab_free_bytes(pt_slab_pool_t *pool)
{
    slab_t *st = ST(pool);
    return (st->free_pages << PAGE_SHIFT) + st->small_free;
}
