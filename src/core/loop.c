/* The event loop (epoll). One per worker process.
 *
 * Connections are registered once, edge-triggered, for both directions; the
 * loop never calls epoll_ctl again for them until they go. Dispatch is a walk
 * over the epoll batch that sets flags and calls handlers: no allocation and
 * no system call besides epoll_wait itself.
 *
 * Stale events: a handler may unregister (and even free or reuse) an io whose
 * event is still waiting further down the current batch. pt_loop_del_io()
 * clears such entries from the batch, so nothing is ever dispatched to an io
 * after it was deleted, whatever the owner does with its memory. */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "time.h"
#include "timer.h"

typedef struct {
    void (*fn)(void *);
    void *p;
} deferred_t;

static int ep = -1;
static struct epoll_event *batch;
static int batch_cap;
static int batch_n;        /* entries of the batch being dispatched (0 outside) */
static int batch_i;        /* index being dispatched */
static pt_io_t *cur_io;    /* io of batch[batch_i] */
static int cur_deleted;    /* cur_io was deleted by one of its handlers */

/* Posted events: new posts go to `posted`; each iteration takes the whole
 * queue into `running`, so an event posting itself runs once per iteration. */
static pt_event_t *posted, **posted_tail = &posted;
static pt_event_t *running;

static deferred_t *deferred;
static size_t deferred_len, deferred_cap;

/* Run at the start of every iteration, before epoll_wait (batched sends). */
static void (*flush_hook)(void);
/* Replaces epoll_wait (io_uring's EPOLL_WAIT with the batched sends, one
 * system call for both); see pt_loop_set_waiter(). */
static pt_loop_waiter_t waiter;
/* Set while the waiter has an epoll wait in flight that may fill `batch`
 * before the loop reads it: forget() then clears the whole batch. */
static int batch_armed;

int pt_loop_init(int max_events)
{
    if (ep >= 0)
        pt_loop_done();
    if (max_events < 1)
        max_events = 512;
    batch = malloc((size_t) max_events * sizeof(*batch));
    if (batch == NULL)
        return -1;
    batch_cap = max_events;
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        int e = errno;
        free(batch);
        batch = NULL;
        errno = e;
        return -1;
    }
    posted = running = NULL;
    posted_tail = &posted;
    deferred_len = 0;
    batch_n = 0;
    if (pt__timer_init(1024) != 0) {
        pt_loop_done();
        errno = ENOMEM;
        return -1;
    }
    pt_time_update();
    return 0;
}

void pt_loop_done(void)
{
    flush_hook = NULL;
    waiter = NULL;
    batch_armed = 0;
    if (ep >= 0)
        close(ep);
    ep = -1;
    free(batch);
    batch = NULL;
    batch_cap = batch_n = 0;
    pt__timer_done();
    for (pt_event_t *ev = posted, *n; ev; ev = n) {
        n = ev->posted_next;
        ev->posted = 0;
        ev->posted_next = NULL;
    }
    posted = running = NULL;
    posted_tail = &posted;
    /* pending deferred frees still run: they own memory */
    for (size_t i = 0; i < deferred_len; i++)
        deferred[i].fn(deferred[i].p);
    free(deferred);
    deferred = NULL;
    deferred_len = deferred_cap = 0;
}

static void event_reset(pt_event_t *ev, unsigned write)
{
    ev->ready = 0;
    ev->eof = 0;
    ev->error = 0;
    ev->timedout = 0;
    ev->write = write;
    ev->active = 1;
    if (!ev->timer_set)
        ev->timer_index = SIZE_MAX;
    if (!ev->posted)
        ev->posted_next = NULL;
}

static int add(pt_io_t *io, uint32_t flags)
{
    struct epoll_event ee;
    ee.events = flags;
    ee.data.ptr = io;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, io->fd, &ee) != 0)
        return -1;
    event_reset(&io->read, 0);
    event_reset(&io->write, 1);
    return 0;
}

int pt_loop_add_io(pt_io_t *io)
{
    io->write.lazy = 0;
    return add(io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

int pt_loop_add_io_lazy(pt_io_t *io)
{
    if (add(io, EPOLLIN | EPOLLRDHUP | EPOLLET) != 0)
        return -1;
    io->write.active = 0;
    io->write.lazy = 1;
    io->write.ready = 1;
    return 0;
}

int pt_loop_want_write(pt_io_t *io)
{
    if (!io->write.lazy || io->fd < 0 || !io->read.active)
        return 0;
    struct epoll_event ee;
    ee.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ee.data.ptr = io;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, io->fd, &ee) != 0)
        return -1;
    io->write.lazy = 0;
    io->write.active = 1;
    return 0;
}

int pt_loop_add_listen(pt_io_t *io)
{
    io->write.lazy = 0;
    int rc = add(io, EPOLLIN | EPOLLEXCLUSIVE);
    io->write.active = 0;
    return rc;
}

/* Forgets io: timers, posted entries, and its entries in the batch being
 * dispatched. */
static void forget(pt_io_t *io)
{
    pt_timer_del(&io->read);
    pt_timer_del(&io->write);
    pt_event_unpost(&io->read);
    pt_event_unpost(&io->write);
    io->read.active = 0;
    io->write.active = 0;
    io->read.ready = 0;
    io->write.ready = 0;
    io->write.lazy = 0;
    if (io == cur_io)
        cur_deleted = 1;
    if (batch_armed) {
        for (int i = 0; i < batch_cap; i++) {
            if (batch[i].data.ptr == io)
                batch[i].data.ptr = NULL;
        }
        return;
    }
    for (int i = batch_i + 1; i < batch_n; i++) {
        if (batch[i].data.ptr == io)
            batch[i].data.ptr = NULL;
    }
}

int pt_loop_del_io(pt_io_t *io)
{
    int rc = 0;
    if (io->read.active || io->write.active) {
        struct epoll_event ee = { 0 };   /* pre-2.6.9 kernels wanted non-NULL */
        rc = epoll_ctl(ep, EPOLL_CTL_DEL, io->fd, &ee);
    }
    forget(io);
    return rc;
}

void pt_loop_forget_io(pt_io_t *io)
{
    forget(io);
}

int pt_loop_epfd(void)
{
    return ep;
}

void pt_loop_set_flush_hook(void (*fn)(void))
{
    flush_hook = fn;
}

void pt_loop_set_waiter(pt_loop_waiter_t fn)
{
    waiter = fn;
    batch_armed = 0;
}

void pt_loop_batch_armed(int armed)
{
    batch_armed = armed;
}

int pt_loop_close_io(pt_io_t *io)
{
    forget(io);
    int rc = 0;
    if (io->fd >= 0)
        rc = close(io->fd);
    io->fd = -1;
    return rc;
}

int pt_loop_defer_free(void (*fn)(void *), void *p)
{
    if (deferred_len == deferred_cap) {
        size_t cap = deferred_cap ? deferred_cap * 2 : 256;
        deferred_t *d = realloc(deferred, cap * sizeof(*d));
        if (d == NULL)
            return -1;
        deferred = d;
        deferred_cap = cap;
    }
    deferred[deferred_len].fn = fn;
    deferred[deferred_len].p = p;
    deferred_len++;
    return 0;
}

void pt_event_post(pt_event_t *ev)
{
    if (ev->posted)
        return;
    ev->posted = 1;
    ev->posted_next = NULL;
    *posted_tail = ev;
    posted_tail = &ev->posted_next;
}

void pt_event_unpost(pt_event_t *ev)
{
    if (!ev->posted)
        return;
    ev->posted = 0;
    for (pt_event_t **pp = &running; *pp; pp = &(*pp)->posted_next) {
        if (*pp == ev) {
            *pp = ev->posted_next;
            ev->posted_next = NULL;
            return;
        }
    }
    for (pt_event_t **pp = &posted; *pp; pp = &(*pp)->posted_next) {
        if (*pp == ev) {
            *pp = ev->posted_next;
            if (posted_tail == &ev->posted_next)
                posted_tail = pp;
            ev->posted_next = NULL;
            return;
        }
    }
}

static void dispatch(int n)
{
    batch_n = n;
    for (batch_i = 0; batch_i < n; batch_i++) {
        pt_io_t *io = batch[batch_i].data.ptr;
        if (io == NULL)
            continue;   /* deleted by an earlier handler of this batch */
        uint32_t re = batch[batch_i].events;
        cur_io = io;
        cur_deleted = 0;

        if (re & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            pt_event_t *ev = &io->read;
            ev->ready = 1;
            if (re & (EPOLLRDHUP | EPOLLHUP))
                ev->eof = 1;
            if (re & EPOLLERR)
                ev->error = 1;
            if (ev->handler)
                ev->handler(ev);
            if (cur_deleted)
                continue;
        }
        if ((re & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && io->write.active) {
            pt_event_t *ev = &io->write;
            ev->ready = 1;
            if (re & EPOLLHUP)
                ev->eof = 1;
            if (re & EPOLLERR)
                ev->error = 1;
            if (ev->handler)
                ev->handler(ev);
        }
    }
    cur_io = NULL;
    batch_n = 0;
    batch_i = 0;
}

static void run_posted(void)
{
    running = posted;
    posted = NULL;
    posted_tail = &posted;
    pt_event_t *ev;
    while ((ev = running) != NULL) {
        running = ev->posted_next;
        ev->posted = 0;
        ev->posted_next = NULL;
        if (ev->handler)
            ev->handler(ev);
    }
}

static void run_deferred(void)
{
    /* a free function may defer more; those run in this pass too */
    for (size_t i = 0; i < deferred_len; i++)
        deferred[i].fn(deferred[i].p);
    deferred_len = 0;
}

int pt_loop_once(int64_t max_wait_ms)
{
    if (flush_hook)
        flush_hook();   /* may post events: computed before the wait below */
    int64_t wait = pt__timer_wait();
    if (posted != NULL)
        wait = 0;
    else if (max_wait_ms >= 0 && (wait < 0 || max_wait_ms < wait))
        wait = max_wait_ms;
    if (wait > INT_MAX)
        wait = INT_MAX;

    int n = waiter ? waiter(batch, batch_cap, (int) wait)
                   : epoll_wait(ep, batch, batch_cap, (int) wait);
    int err = errno;
    pt_time_update();

    if (n < 0) {
        if (err != EINTR) {
            errno = err;
            return -1;
        }
        n = 0;
    }
    if (n > 0)
        dispatch(n);
    pt__timer_expire();
    if (posted != NULL)
        run_posted();
    if (deferred_len)
        run_deferred();
    return 0;
}
