/* I/O buffers: one malloc holds the header and the storage; sizes round up to
 * a class (4, 8, 16, 32, 64, 128, 256 KiB) and freed buffers wait on a per-class LIFO
 * freelist, so a get/put pair is a few pointer moves and the most recently
 * used (cache-warm) buffer is handed out first. The freelists are capped
 * (count per class and bytes overall); beyond the caps buffers go back to
 * malloc, so a burst does not pin memory for the life of the worker. Larger
 * buffers are allocated and freed directly. Reference headers (pt_buf_ref)
 * have their own small freelist.
 *
 * Per process, not thread-safe: a worker is one thread. Under ASan the
 * storage of a cached buffer is poisoned, so a use after put is caught. */
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n)   ((void) (p), (void) (n))
#define UNPOISON(p, n) ((void) (p), (void) (n))
#endif

#define NCLASSES        7                 /* 4k .. 256k (the relay's large reads) */
#define CLASS_MIN_SHIFT 12
#define CLASS_REF       NCLASSES          /* header only */
#define CLASS_LARGE     (NCLASSES + 1)    /* unpooled */
#define CACHE_MAX_COUNT 256               /* per class */
#define CACHE_MAX_BYTES (8u << 20)        /* all classes together */

#define STATE_USED 0x55
#define STATE_FREE 0xAA

typedef struct {
    pt_buf_t b;
    size_t   alloc;      /* bytes of this malloc */
    uint8_t  cls;
    uint8_t  state;
} block_t;

#define HDR_SIZE ((sizeof(block_t) + 15) & ~(size_t) 15)

typedef struct {
    block_t *head;
    size_t   count;
} freelist_t;

static freelist_t lists[NCLASSES + 1];    /* + the reference headers */
static size_t cached_bytes;
static size_t allocated_bytes;

static int size_class(size_t size)
{
    if (size <= (1u << CLASS_MIN_SHIFT))
        return 0;
    if (size > (1u << (CLASS_MIN_SHIFT + NCLASSES - 1)))
        return CLASS_LARGE;
    /* ceil(log2(size)) - 12 */
    int bits = 64 - __builtin_clzll((unsigned long long) (size - 1));
    return bits - CLASS_MIN_SHIFT;
}

static void init_header(pt_buf_t *b)
{
    b->next = NULL;
    b->tag = NULL;
    b->free = NULL;
    b->free_data = NULL;
    b->last_buf = 0;
    b->flush = 0;
    b->ref = 0;
}

static block_t *block_new(int cls, size_t storage)
{
    if (storage > SIZE_MAX - HDR_SIZE)
        return NULL;
    size_t alloc = HDR_SIZE + storage;
    block_t *k = malloc(alloc);
    if (k == NULL)
        return NULL;
    k->alloc = alloc;
    k->cls = (uint8_t) cls;
    allocated_bytes += alloc;
    return k;
}

static block_t *take(int idx)
{
    freelist_t *l = &lists[idx];
    block_t *k = l->head;
    if (k == NULL)
        return NULL;
    l->head = (block_t *) k->b.next;
    l->count--;
    cached_bytes -= k->alloc;
    return k;
}

pt_buf_t *pt_buf_get(size_t size)
{
    int cls = size_class(size);
    block_t *k = NULL;
    size_t storage;

    if (cls == CLASS_LARGE) {
        storage = (size + 4095) & ~(size_t) 4095;
        if (storage < size)
            return NULL;
    } else {
        storage = (size_t) 1 << (CLASS_MIN_SHIFT + cls);
        k = take(cls);
    }
    if (k == NULL) {
        k = block_new(cls, storage);
        if (k == NULL)
            return NULL;
    }
    UNPOISON((char *) k + HDR_SIZE, storage);
    k->state = STATE_USED;
    pt_buf_t *b = &k->b;
    init_header(b);
    b->start = b->pos = b->last = (char *) k + HDR_SIZE;
    b->end = b->start + storage;
    return b;
}

pt_buf_t *pt_buf_ref(const char *p, size_t len)
{
    block_t *k = take(CLASS_REF);
    if (k == NULL) {
        k = block_new(CLASS_REF, 0);
        if (k == NULL)
            return NULL;
    }
    k->state = STATE_USED;
    pt_buf_t *b = &k->b;
    init_header(b);
    b->ref = 1;
    b->start = b->pos = (char *) p;
    b->end = b->last = (char *) p + len;
    return b;
}

static void release(block_t *k)
{
    allocated_bytes -= k->alloc;
    free(k);
}

void pt_buf_put(pt_buf_t *b)
{
    if (b == NULL)
        return;
    if (b->free) {
        b->free(b);
        return;
    }
    block_t *k = (block_t *) b;
    if (k->state != STATE_USED) {
        pt_log_error(PT_LOG_ALERT, NULL, 0, "pt_buf_put(): buffer %p put twice", (void *) b);
        return;
    }
    k->state = STATE_FREE;
    if (k->cls == CLASS_LARGE) {
        release(k);
        return;
    }
    freelist_t *l = &lists[k->cls];
    if (l->count >= CACHE_MAX_COUNT || cached_bytes + k->alloc > CACHE_MAX_BYTES) {
        release(k);
        return;
    }
    if (k->cls != CLASS_REF)
        POISON((char *) k + HDR_SIZE, k->alloc - HDR_SIZE);
    k->b.next = (pt_buf_t *) l->head;
    l->head = k;
    l->count++;
    cached_bytes += k->alloc;
}

void pt_buf_put_chain(pt_buf_t *chain)
{
    while (chain) {
        pt_buf_t *n = chain->next;
        pt_buf_put(chain);
        chain = n;
    }
}

void pt_buf_freelist_drain(void)
{
    for (int i = 0; i <= NCLASSES; i++) {
        block_t *k;
        while ((k = take(i)) != NULL) {
            if (i != CLASS_REF)
                UNPOISON((char *) k + HDR_SIZE, k->alloc - HDR_SIZE);
            release(k);
        }
    }
}

size_t pt_buf_allocated(void)
{
    return allocated_bytes;
}
