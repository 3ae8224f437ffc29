/* The event loop: epoll, edge-triggered for connections, one loop per worker
 * (one thread). Timers are a min-heap keyed by pt_current_msec deadlines.
 * Posted events run after the I/O batch of the same iteration.
 *
 * Contract for edge triggering: when an event fires, `ready` is set; the
 * consumer reads/writes until EAGAIN and then clears `ready`. A connection is
 * registered once (pt_loop_add_io) for both directions and never modified
 * again with epoll_ctl while it lives. */
#ifndef PT_LOOP_H
#define PT_LOOP_H

#include <stddef.h>
#include <stdint.h>

typedef struct pt_event_s pt_event_t;
typedef void (*pt_event_cb)(pt_event_t *ev);

struct pt_event_s {
    pt_event_cb handler;
    void       *data;          /* owner (connection, peer, ...) */
    int64_t     timer_key;     /* deadline in pt_current_msec */
    size_t      timer_index;   /* position in the heap; SIZE_MAX when not set */
    pt_event_t *posted_next;
    unsigned    ready:1;       /* I/O possible (set by the loop, cleared on EAGAIN) */
    unsigned    eof:1;         /* peer closed (EPOLLRDHUP/EPOLLHUP) */
    unsigned    error:1;       /* EPOLLERR */
    unsigned    timedout:1;    /* set before handler when the timer fired */
    unsigned    timer_set:1;
    unsigned    posted:1;
    unsigned    write:1;       /* this is the write event */
    unsigned    active:1;      /* registered with epoll */
    unsigned    lazy:1;        /* write event of an io registered by
                                * pt_loop_add_io_lazy() and not armed yet */
};

/* An fd with its two events; embed it in the owner (libuv style). The events'
 * `data` fields are the owner's business. */
typedef struct pt_io_s {
    int        fd;
    pt_event_t read;
    pt_event_t write;
} pt_io_t;

/* max_events: epoll_wait batch size. Returns 0 or -1 (errno set). */
int  pt_loop_init(int max_events);
void pt_loop_done(void);

/* Registers io->fd for EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET. Initialises the
 * events' flags (not handler/data). Returns 0 or -1. */
int  pt_loop_add_io(pt_io_t *io);
/* As pt_loop_add_io(), but without EPOLLOUT until pt_loop_want_write():
 * for accepted sockets, which are writable from the start, so the EPOLLOUT
 * edge that registration reports at once would only cost a loop iteration
 * (an epoll_wait) per connection. write.ready starts at 1 (assumed
 * writable), write.active at 0 (no EPOLLOUT, EPOLLHUP/EPOLLERR go to the read
 * handler only). Whoever clears write.ready to wait for EPOLLOUT must call
 * pt_loop_want_write() (pt_conn_want_write() for a connection). */
int  pt_loop_add_io_lazy(pt_io_t *io);
/* Arms EPOLLOUT on an io registered by pt_loop_add_io_lazy() (one
 * EPOLL_CTL_MOD, once; the socket's current state is reported, so a socket
 * that became writable in between is not missed). Nothing for any other io
 * or one already armed. Returns 0 or -1 (errno set). */
int  pt_loop_want_write(pt_io_t *io);
/* Level-triggered EPOLLIN with EPOLLEXCLUSIVE (listening sockets). */
int  pt_loop_add_listen(pt_io_t *io);
/* Unregisters, deletes timers and posted entries of both events. Must be
 * called before closing the fd. The io memory must stay valid until the end of
 * the current iteration: free owners with pt_loop_defer_free(). Events already
 * fetched for this io in the current batch are skipped (even if the owner
 * reuses the io for a new fd at once). io->fd is left alone for the caller to
 * close. Returns 0, or -1 if epoll_ctl failed (bookkeeping is done anyway). */
int  pt_loop_del_io(pt_io_t *io);
/* pt_loop_del_io() + close(io->fd) in one system call (close removes the fd
 * from epoll), then io->fd = -1. Only for fds never duplicated into another
 * process or descriptor (accepted and connected sockets in a worker); use
 * del_io + close for anything else. Returns close()'s result. */
int  pt_loop_close_io(pt_io_t *io);
/* Runs fn(p) at the end of the current loop iteration. Returns 0 or -1. */
/* Forgets io (timers, posted events, entries of the batch being
 * dispatched) without closing its fd or touching the epoll set. */
void pt_loop_forget_io(pt_io_t *io);
int  pt_loop_epfd(void);
/* fn runs at the start of every pt_loop_once(), before epoll_wait: the
 * batched-send flush (src/net/sendq.c). Cleared by pt_loop_done(). */
void pt_loop_set_flush_hook(void (*fn)(void));
/* fn(batch, cap, timeout_ms) replaces epoll_wait(): returns the number of
 * events it put in batch, 0 (timeout, interrupted, or nothing yet), or -1
 * with errno. A waiter that leaves an epoll wait in flight when it returns
 * (the kernel may fill batch later) calls pt_loop_batch_armed(1) so that
 * deleted ios are cleared from the whole batch. NULL: epoll_wait(). */
struct epoll_event;
typedef int (*pt_loop_waiter_t)(struct epoll_event *batch, int cap, int timeout_ms);
void pt_loop_set_waiter(pt_loop_waiter_t fn);
void pt_loop_batch_armed(int armed);
int  pt_loop_defer_free(void (*fn)(void *), void *p);

/* A re-arm that moves an armed timer's deadline by less than this keeps the
 * current deadline (no heap work): timers may fire up to this much early or
 * late when re-armed, never otherwise. */
#define PT_TIMER_LAZY_MS 5

void pt_timer_add(pt_event_t *ev, int64_t msec);   /* (re)arms: fires after msec */
void pt_timer_del(pt_event_t *ev);
void pt_event_post(pt_event_t *ev);                /* run handler after this batch */
void pt_event_unpost(pt_event_t *ev);

/* One iteration: waits at most max_wait_ms (or until the nearest timer; -1 =
 * no limit), updates the cached time, runs I/O handlers, expired timers and
 * posted events, then deferred frees. Returns 0, or -1 on epoll failure other
 * than EINTR. */
int  pt_loop_once(int64_t max_wait_ms);
/* Number of armed timers (graceful shutdown checks). */
size_t pt_timer_count(void);

#endif
