/* I/O buffers and chains. Buffers hold bytes in flight (socket reads, bodies);
 * they are not pool memory: take them with pt_buf_get() and give them back with
 * pt_buf_put() as soon as they are empty, so idle connections hold nothing.
 * A per-process freelist (per size class) makes get/put cheap. */
#ifndef PT_BUF_H
#define PT_BUF_H

#include <stddef.h>
#include <sys/types.h>

typedef struct pt_buf_s pt_buf_t;
typedef void (*pt_buf_free_cb)(pt_buf_t *b);

struct pt_buf_s {
    char     *start, *end;    /* storage; for a reference buffer the referenced bytes */
    char     *pos, *last;     /* unread data: [pos, last) */
    pt_buf_t *next;           /* chain link */
    void     *tag;            /* owner, so a producer can recognise its own buffers */
    pt_buf_free_cb free;      /* called by pt_buf_put() instead of the freelist (NULL: freelist) */
    void     *free_data;
    unsigned  last_buf:1;     /* end of the response/request body */
    unsigned  flush:1;        /* write out now, do not wait to coalesce */
    unsigned  ref:1;          /* points into memory owned elsewhere (start..end not ours) */
};

/* Returns a buffer with at least `size` bytes of storage, pos = last = start;
 * NULL on allocation failure. */
pt_buf_t *pt_buf_get(size_t size);
/* Returns b (and only b, not b->next) to its owner. NULL is ignored. */
void      pt_buf_put(pt_buf_t *b);
/* Returns every buffer of a chain. */
void      pt_buf_put_chain(pt_buf_t *chain);
/* A zero-storage buffer header pointing at [p, p+len) (ref = 1):
 * start = pos = p, last = end = p + len (room 0). pt_buf_put() frees only the
 * header; the bytes must outlive the buffer. NULL on allocation failure. */
pt_buf_t *pt_buf_ref(const char *p, size_t len);

static inline size_t pt_buf_size(const pt_buf_t *b) { return (size_t) (b->last - b->pos); }
static inline size_t pt_buf_room(const pt_buf_t *b) { return (size_t) (b->end - b->last); }

/* Drops cached free buffers (worker exit, tests). */
void pt_buf_freelist_drain(void);
/* Bytes currently allocated to buffers in this process (in use + cached). */
size_t pt_buf_allocated(void);

#endif
