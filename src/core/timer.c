/* Timers: a binary min-heap of (deadline, event) pairs.
 *
 * The deadline is stored in the heap node next to the event pointer, so
 * sifting compares keys in one contiguous array and touches an event only to
 * update its timer_index (the events themselves are scattered over the
 * connection table). Add, delete and re-arm are O(log n); a re-arm that moves
 * the deadline by less than PT_TIMER_LAZY_MS keeps the node where it is, which
 * makes the per-request "extend the idle timeout" pattern nearly free. */
#include "timer.h"

#include <stdlib.h>

#include "log.h"
#include "time.h"

typedef struct {
    int64_t     key;
    pt_event_t *ev;
} heap_node_t;

static heap_node_t *heap;
static size_t heap_len, heap_cap;

static int heap_reserve(size_t want)
{
    if (want <= heap_cap)
        return 0;
    size_t cap = heap_cap ? heap_cap * 2 : 1024;
    while (cap < want)
        cap *= 2;
    heap_node_t *n = realloc(heap, cap * sizeof(*n));
    if (n == NULL)
        return -1;
    heap = n;
    heap_cap = cap;
    return 0;
}

int pt__timer_init(size_t hint)
{
    for (size_t i = 0; i < heap_len; i++) {
        heap[i].ev->timer_set = 0;
        heap[i].ev->timer_index = SIZE_MAX;
    }
    heap_len = 0;
    return heap_reserve(hint);
}

void pt__timer_done(void)
{
    pt__timer_init(0);
    free(heap);
    heap = NULL;
    heap_cap = 0;
}

static void sift_up(size_t i, heap_node_t n)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (heap[parent].key <= n.key)
            break;
        heap[i] = heap[parent];
        heap[i].ev->timer_index = i;
        i = parent;
    }
    heap[i] = n;
    n.ev->timer_index = i;
}

static void sift_down(size_t i, heap_node_t n)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= heap_len)
            break;
        if (c + 1 < heap_len && heap[c + 1].key < heap[c].key)
            c++;
        if (n.key <= heap[c].key)
            break;
        heap[i] = heap[c];
        heap[i].ev->timer_index = i;
        i = c;
    }
    heap[i] = n;
    n.ev->timer_index = i;
}

/* Puts n at position i (a hole) and restores the heap property. */
static void place(size_t i, heap_node_t n)
{
    if (i > 0 && n.key < heap[(i - 1) / 2].key)
        sift_up(i, n);
    else
        sift_down(i, n);
}

static void heap_remove(size_t i)
{
    heap_node_t last = heap[--heap_len];
    if (i < heap_len)
        place(i, last);
}

void pt_timer_add(pt_event_t *ev, int64_t msec)
{
    int64_t key = pt_current_msec + (msec > 0 ? msec : 0);

    if (ev->timer_set) {
        int64_t diff = key - ev->timer_key;
        if (diff > -PT_TIMER_LAZY_MS && diff < PT_TIMER_LAZY_MS)
            return;
        ev->timer_key = key;
        heap_node_t n = { key, ev };
        place(ev->timer_index, n);
        return;
    }

    if (heap_len == heap_cap && heap_reserve(heap_len + 1) != 0) {
        /* cannot happen in practice (the heap is sized for every connection
         * at start); the event simply stays without a timer */
        pt_log_error(PT_LOG_ALERT, NULL, 0, "timer heap: no memory for %zu timers", heap_len + 1);
        return;
    }
    ev->timer_key = key;
    ev->timer_set = 1;
    heap_len++;
    heap_node_t n = { key, ev };
    sift_up(heap_len - 1, n);
}

void pt_timer_del(pt_event_t *ev)
{
    if (!ev->timer_set)
        return;
    heap_remove(ev->timer_index);
    ev->timer_set = 0;
    ev->timer_index = SIZE_MAX;
}

size_t pt_timer_count(void)
{
    return heap_len;
}

int64_t pt__timer_wait(void)
{
    if (heap_len == 0)
        return -1;
    int64_t d = heap[0].key - pt_current_msec;
    return d > 0 ? d : 0;
}

void pt__timer_expire(void)
{
    int64_t now = pt_current_msec;
    /* bounded by the count on entry: a handler re-arming its timer with 0
     * gets it back next iteration instead of spinning here */
    size_t budget = heap_len;

    while (budget-- > 0 && heap_len > 0 && heap[0].key <= now) {
        pt_event_t *ev = heap[0].ev;
        heap_remove(0);
        ev->timer_set = 0;
        ev->timer_index = SIZE_MAX;
        ev->timedout = 1;
        if (ev->handler)
            ev->handler(ev);
    }
}
