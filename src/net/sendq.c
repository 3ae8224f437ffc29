/* Batched sends through io_uring (see sendq.h for the contract).
 *
 * A block is a connection's staging buffer: data[0, len) holds bytes the
 * owner was told are written; [0, done) went to the kernel; [done,
 * done + inflight) is the one send request in flight. Blocks with work to do
 * sit on the dirty list; flush() (the loop's hook, before epoll_wait) turns
 * each into requests and submits them all with one io_uring_enter(), then
 * reaps the completions, most of which (loopback, socket buffer not full)
 * are already there. A send that could not finish at once completes later:
 * the ring's fd is in the epoll set, and its completion re-dirties the
 * block or posts the owner's write event.
 *
 * A block whose connection was closed is an orphan: it owns the fd until its
 * bytes are sent (or a minute has passed), then closes it; its fd was taken
 * out of the epoll set at once, because the record behind the old epoll
 * registration may already serve another connection. */
#include "sendq.h"

#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "../core/log.h"
#include "../core/loop.h"

#define BLOCK_CAP      16384u   /* bytes one block holds */
#define SMALL_MAX      8192u    /* writes up to this size are staged */
#define FREE_MAX       64u      /* blocks kept for reuse */
#define ORPHAN_MSEC    60000    /* an orphan's bytes get this long (send_timeout's default) */
#define TAG_NONE       ((uint64_t) 1)   /* user_data of requests without a block */
#define TAG_EPOLL      ((uint64_t) 2)   /* the loop's epoll wait */
/* IORING_OP_EPOLL_WAIT (Linux 6.15; the enum is ABI), newer than liburing 2.3 */
#define OP_EPOLL_WAIT  59

struct pt_sendq_s {
    struct pt_sendq_s *next;    /* dirty list or free list */
    pt_conn_t  *c;              /* NULL for an orphan */
    int         fd;
    uint32_t    len, done, inflight;
    unsigned    dirty:1;
    unsigned    want_write:1;   /* the owner got PT_IO_AGAIN: post its write event */
    unsigned    shut_wr:1, shut_sent:1;
    unsigned    orphan:1, del_sent:1, close_sent:1, cancel_sent:1;
    unsigned    shut_pending:1; /* the shutdown request has not completed: it
                                 * holds the file, so the fd must not be closed
                                 * by anyone but this block until then */
    pt_event_t  timer;          /* an orphan's deadline */
    char        data[BLOCK_CAP];
};
typedef struct pt_sendq_s sendq_t;

static struct io_uring ring;
static int      enabled;
static pt_io_t  ring_io;
static sendq_t *dirty;
static sendq_t *free_blocks;
static unsigned free_n;
static unsigned live;           /* blocks allocated (staged, in flight or orphaned) */

/* Waiter mode: the loop's epoll wait is an io_uring request submitted with
 * the sends, so a busy iteration costs one system call, not two. The ring
 * is DEFER_TASKRUN: completions (and the epoll wait filling the loop's
 * batch) happen only inside our own io_uring_enter(GETEVENTS) calls. */
static int waiter_mode;
static int epw_pending;         /* the epoll wait is in flight */
static int epw_result = -1;     /* its result, not yet handed to the loop */
static int epw_broken;          /* it failed: plain epoll_wait from now on */

int pt_sendq_enabled(void)
{
    return enabled ? 1 + waiter_mode : 0;
}

static sendq_t *block_get(void)
{
    sendq_t *b = free_blocks;
    if (b != NULL) {
        free_blocks = b->next;
        free_n--;
    } else {
        b = malloc(sizeof(*b));
        if (b == NULL)
            return NULL;
    }
    memset(b, 0, offsetof(sendq_t, data));
    b->fd = -1;
    b->timer.timer_index = SIZE_MAX;
    live++;
    return b;
}

static void block_free(sendq_t *b)
{
    pt_timer_del(&b->timer);
    live--;
    if (free_n < FREE_MAX) {
        b->next = free_blocks;
        free_blocks = b;
        free_n++;
    } else {
        free(b);
    }
}

static void mark_dirty(sendq_t *b)
{
    if (b->dirty)
        return;
    b->dirty = 1;
    b->next = dirty;
    dirty = b;
}

static void wake_writer(pt_conn_t *c)
{
    c->io.write.ready = 1;
    /* not only when EPOLLOUT is armed: an accepted connection registers
     * without it until a write blocks (pt_conn_want_write) */
    if (c->io.write.handler)
        pt_event_post(&c->io.write);
}

/* the peer went away, or our own cancel: the owner reports it in its words */
static int quiet_error(int err)
{
    return err == ECANCELED || pt_conn_quiet_error(err);
}

/* A block that is not dirty and has nothing in flight: free it when its
 * work is over. Returns 1 when freed. */
static int settle(sendq_t *b)
{
    if (b->dirty || b->inflight || b->shut_pending)
        return 0;
    if (b->done == b->len)
        b->done = b->len = 0;          /* compact: the whole block is free again */
    if (b->orphan) {
        if (!b->close_sent)
            return 0;
        block_free(b);
        return 1;
    }
    if (b->len || (b->shut_wr && !b->shut_sent))
        return 0;
    pt_conn_t *c = b->c;
    int ww = b->want_write;
    c->sendq = NULL;
    block_free(b);
    if (ww)
        wake_writer(c);
    return 1;
}

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (sqe == NULL) {
        (void) io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void orphan_timeout(pt_event_t *ev)
{
    sendq_t *b = ev->data;
    if (b->inflight && !b->cancel_sent) {
        struct io_uring_sqe *sqe = sqe_get();
        if (sqe == NULL)
            return;
        io_uring_prep_cancel64(sqe, (uint64_t) (uintptr_t) b, 0);
        io_uring_sqe_set_data64(sqe, TAG_NONE);
        b->cancel_sent = 1;
        (void) io_uring_submit(&ring);
    }
}

/* Turns a dirty block into requests: [epoll DEL] [send] [shutdown] [close],
 * the last three hard-linked so that each runs after the one before has
 * finished, whatever its result. */
static void prepare(sendq_t *b)
{
    b->dirty = 0;
    if (io_uring_sq_space_left(&ring) < 4) {
        (void) io_uring_submit(&ring);
        if (io_uring_sq_space_left(&ring) < 4) {
            mark_dirty(b);              /* a chain is never split: next turn */
            return;
        }
    }
    struct io_uring_sqe *sqe;

    if (b->orphan && !b->del_sent) {
        sqe = sqe_get();
        if (sqe == NULL)
            goto retry;
        io_uring_prep_epoll_ctl(sqe, pt_loop_epfd(), b->fd, EPOLL_CTL_DEL, NULL);
        io_uring_sqe_set_data64(sqe, TAG_NONE);
        b->del_sent = 1;
    }
    if (b->inflight) {
        if (b->orphan && !b->timer.timer_set) {
            b->timer.handler = orphan_timeout;
            b->timer.data = b;
            pt_timer_add(&b->timer, ORPHAN_MSEC);
        }
        return;                         /* its completion re-dirties it */
    }
    if (b->done == b->len)
        b->done = b->len = 0;
    int more = (b->shut_wr && !b->shut_sent) || (b->orphan && !b->close_sent);
    if (b->len > b->done) {
        sqe = sqe_get();
        if (sqe == NULL)
            goto retry;
        io_uring_prep_send(sqe, b->fd, b->data + b->done, b->len - b->done,
                           MSG_NOSIGNAL | MSG_WAITALL);
        io_uring_sqe_set_data64(sqe, (uint64_t) (uintptr_t) b);
        if (more)
            sqe->flags |= IOSQE_IO_HARDLINK;
        b->inflight = b->len - b->done;
        if (b->orphan) {
            b->timer.handler = orphan_timeout;
            b->timer.data = b;
            pt_timer_add(&b->timer, ORPHAN_MSEC);
        }
    }
    if (b->shut_wr && !b->shut_sent) {
        sqe = sqe_get();
        if (sqe == NULL)
            goto retry;
        io_uring_prep_shutdown(sqe, b->fd, SHUT_WR);
        io_uring_sqe_set_data64(sqe, (uint64_t) (uintptr_t) b | 1);
        b->shut_pending = 1;
        if (b->orphan && !b->close_sent)
            sqe->flags |= IOSQE_IO_HARDLINK;
        b->shut_sent = 1;
    }
    if (b->orphan && !b->close_sent) {
        sqe = sqe_get();
        if (sqe == NULL)
            goto retry;
        io_uring_prep_close(sqe, b->fd);
        io_uring_sqe_set_data64(sqe, TAG_NONE);
        b->close_sent = 1;
    }
    (void) settle(b);
    return;

retry:
    /* no submission entry even after a submit: try again next turn */
    mark_dirty(b);
}

static void completion(sendq_t *b, int res)
{
    uint32_t want = b->inflight;
    b->inflight = 0;
    if (res >= 0 && (uint32_t) res == want) {
        b->done += want;
    } else {
        b->done = b->len;               /* the rest cannot follow a gap */
        if (b->c != NULL) {
            pt_conn_t *c = b->c;
            int err = res < 0 ? -res : EPIPE;
            c->io.write.error = 1;
            if (!quiet_error(err))
                pt_log_error(PT_LOG_INFO, &c->log, err, "send() failed");
            b->want_write = 1;          /* let a waiting owner see the error */
        }
    }
    if (b->orphan && b->close_sent && b->done == b->len) {
        if (!b->dirty && !b->shut_pending)
            block_free(b);
        return;
    }
    if (b->done < b->len || (b->shut_wr && !b->shut_sent) || (b->orphan && !b->close_sent)) {
        mark_dirty(b);
        return;
    }
    (void) settle(b);
}

static void reap(void)
{
    struct io_uring_cqe *cqe;
    unsigned head, count = 0;

    io_uring_for_each_cqe(&ring, head, cqe) {
        count++;
        if (cqe->user_data == TAG_EPOLL) {
            epw_pending = 0;
            if (cqe->res >= 0) {
                epw_result = cqe->res;
            } else {
                epw_result = 0;
                if (cqe->res != -EINTR && cqe->res != -EAGAIN && cqe->res != -ECANCELED) {
                    epw_broken = 1;
                    pt_log_error(PT_LOG_ALERT, pt_log_default, -cqe->res,
                                 "io_uring epoll wait failed, using epoll_wait()");
                }
            }
            continue;
        }
        if (cqe->user_data == LIBURING_UDATA_TIMEOUT)
            continue;
        if ((cqe->user_data & 1) && cqe->user_data != TAG_NONE) {
            /* a block's shutdown */
            sendq_t *b = (sendq_t *) (uintptr_t) (cqe->user_data & ~(uint64_t) 1);
            b->shut_pending = 0;
            if (b->orphan && b->close_sent && !b->inflight && b->done == b->len) {
                if (!b->dirty)
                    block_free(b);
            } else {
                (void) settle(b);
            }
            continue;
        }
        if (cqe->user_data == TAG_NONE) {
            if (cqe->res < 0 && cqe->res != -ENOENT
                && !quiet_error(-cqe->res))
                pt_log_error(PT_LOG_INFO, pt_log_default, -cqe->res,
                             "io_uring request failed");
            continue;
        }
        completion((sendq_t *) (uintptr_t) cqe->user_data, cqe->res);
    }
    io_uring_cq_advance(&ring, count);
}

static void flush_rounds(int submit)
{
    for (int round = 0; round < 4 && dirty != NULL; round++) {
        sendq_t *list = dirty;
        dirty = NULL;
        while (list != NULL) {
            sendq_t *b = list;
            list = b->next;
            prepare(b);
        }
        if (!submit)
            return;          /* the waiter submits them with its epoll wait */
        if (io_uring_sq_ready(&ring)) {
            (void) io_uring_submit(&ring);
        }
        reap();
    }
}

static void flush(void)
{
    flush_rounds(!waiter_mode);
}

static int uring_wait(struct epoll_event *batch, int cap, int timeout_ms)
{
    if (epw_broken) {
        if (io_uring_sq_ready(&ring) || dirty != NULL) {
            (void) io_uring_submit_and_get_events(&ring);
            reap();
        }
        return epoll_wait(pt_loop_epfd(), batch, cap, timeout_ms);
    }
    if (!epw_pending && epw_result < 0) {
        struct io_uring_sqe *sqe = sqe_get();
        if (sqe != NULL) {
            io_uring_prep_rw(OP_EPOLL_WAIT, sqe, pt_loop_epfd(), batch, (unsigned) cap, 0);
            io_uring_sqe_set_data64(sqe, TAG_EPOLL);
            epw_pending = 1;
        }
    }
    if (epw_result < 0) {
        struct io_uring_cqe *cqe;
        if (timeout_ms == 0) {
            (void) io_uring_submit_and_get_events(&ring);
        } else {
            /* an endless wait is cut at 5 s: a signal always interrupts
             * io_uring_enter() in the kernel, but not under valgrind (the
             * profile script's callgrind run), which holds it until the
             * call returns */
            if (timeout_ms < 0 || timeout_ms > 5000)
                timeout_ms = 5000;
            struct __kernel_timespec ts = { timeout_ms / 1000, (timeout_ms % 1000) * 1000000L };
            (void) io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
        }
        reap();
    }
    int n = epw_result;
    epw_result = -1;
    /* still in flight: the kernel may fill the batch before we read it */
    pt_loop_batch_armed(epw_pending);
    return n < 0 ? 0 : n;
}

/* IORING_OP_EPOLL_WAIT exists and does what its number says: an epoll set
 * with one ready eventfd must come back as that one event. */
static int epoll_wait_works(void)
{
    int ok = 0;
    int ep2 = epoll_create1(EPOLL_CLOEXEC);
    int efd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event e, out[2];
    memset(&e, 0, sizeof(e));
    memset(out, 0, sizeof(out));
    e.events = EPOLLIN;
    e.data.u64 = 0x5054;
    if (ep2 >= 0 && efd >= 0 && epoll_ctl(ep2, EPOLL_CTL_ADD, efd, &e) == 0) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        struct io_uring_cqe *cqe = NULL;
        if (sqe != NULL) {
            io_uring_prep_rw(OP_EPOLL_WAIT, sqe, ep2, out, 2, 0);
            io_uring_sqe_set_data64(sqe, 3);
            struct __kernel_timespec ts = { 1, 0 };
            if (io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL) >= 0 && cqe != NULL) {
                ok = cqe->user_data == 3 && cqe->res == 1 && out[0].data.u64 == 0x5054;
                io_uring_cqe_seen(&ring, cqe);
            }
        }
    }
    if (ep2 >= 0)
        close(ep2);
    if (efd >= 0)
        close(efd);
    return ok;
}

static void on_ring(pt_event_t *ev)
{
    (void) ev;
    reap();
}

int pt_sendq_init(unsigned entries)
{
    /* valgrind holds signals while io_uring_enter() waits (a TERM would
     * wait for the next 5 s timeout, over and over): under it the loop
     * keeps epoll_wait, which valgrind knows how to interrupt */
    const char *pre = getenv("LD_PRELOAD");
    int valgrind = pre != NULL && strstr(pre, "vgpreload") != NULL;
    return pt_sendq_init_mode(entries, !valgrind);
}

int pt_sendq_init_mode(unsigned entries, int allow_waiter)
{
    if (enabled)
        return 1;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    if (allow_waiter && io_uring_queue_init_params(entries, &ring, &p) == 0) {
        if (epoll_wait_works()) {
            waiter_mode = 1;
            epw_pending = epw_broken = 0;
            epw_result = -1;
            enabled = 1;
            pt_loop_set_flush_hook(flush);
            pt_loop_set_waiter(uring_wait);
            return 1;
        }
        io_uring_queue_exit(&ring);
    }
    waiter_mode = 0;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_COOP_TASKRUN;
    int rc = io_uring_queue_init_params(entries, &ring, &p);
    if (rc < 0) {
        memset(&p, 0, sizeof(p));
        rc = io_uring_queue_init_params(entries, &ring, &p);
    }
    if (rc < 0) {
        pt_log_error(PT_LOG_INFO, pt_log_default, -rc,
                     "io_uring is not available, sends are not batched");
        return 0;
    }
    memset(&ring_io, 0, sizeof(ring_io));
    ring_io.fd = ring.ring_fd;
    ring_io.read.timer_index = SIZE_MAX;
    ring_io.write.timer_index = SIZE_MAX;
    if (pt_loop_add_io(&ring_io) != 0) {
        pt_log_error(PT_LOG_INFO, pt_log_default, errno,
                     "epoll_ctl(io_uring) failed, sends are not batched");
        io_uring_queue_exit(&ring);
        return 0;
    }
    ring_io.read.handler = on_ring;
    ring_io.write.active = 0;
    enabled = 1;
    pt_loop_set_flush_hook(flush);
    return 1;
}

void pt_sendq_done(void)
{
    if (!enabled)
        return;
    flush_rounds(1);
    /* what is still in flight gets a second at most: the process is going */
    for (int i = 0; i < 100 && live > 0; i++) {
        struct __kernel_timespec ts = { 0, 10 * 1000 * 1000 };
        struct io_uring_cqe *cqe;
        (void) io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
        reap();
        flush_rounds(1);
    }
    pt_loop_set_flush_hook(NULL);
    if (waiter_mode)
        pt_loop_set_waiter(NULL);
    else
        pt_loop_forget_io(&ring_io);
    waiter_mode = epw_pending = 0;
    epw_result = -1;
    io_uring_queue_exit(&ring);   /* cancels the rest */
    enabled = 0;
    dirty = NULL;
    while (free_blocks != NULL) {
        sendq_t *b = free_blocks;
        free_blocks = b->next;
        free(b);
    }
    free_n = 0;
}

/* The staged bytes and the owner's in one sendmsg(). */
static ssize_t send_combined(pt_conn_t *c, sendq_t *b, const struct iovec *iov, int n,
                             size_t total)
{
    struct iovec v[65];
    size_t staged = b->len - b->done;
    int k = 0;
    v[k++] = (struct iovec) { b->data + b->done, staged };
    for (int i = 0; i < n && k < 65; i++)
        v[k++] = iov[i];

    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = v;
    msg.msg_iovlen = (size_t) k;
    ssize_t w;
    do
        w = sendmsg(c->io.fd, &msg, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);

    if (w < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            c->io.write.ready = 0;
            b->want_write = 1;
            return PT_IO_AGAIN;
        }
        b->done = b->len;
        (void) settle(b);
        c->io.write.error = 1;
        c->io.write.ready = 0;
        if (!quiet_error(err))
            pt_log_error(PT_LOG_INFO, &c->log, err, "writev() failed");
        errno = err;
        return -1;
    }
    if ((size_t) w < staged) {
        b->done += (uint32_t) w;
        c->io.write.ready = 0;
        b->want_write = 1;
        return PT_IO_AGAIN;
    }
    b->done = b->len;
    w -= (ssize_t) staged;
    (void) settle(b);                   /* freed unless still on the dirty list */
    if ((size_t) w < total)
        c->io.write.ready = 0;
    return w;
}

ssize_t pt_sendq_writev(pt_conn_t *c, const struct iovec *iov, int n, size_t total)
{
    sendq_t *b = c->sendq;

    if (total == 0)
        return 0;
    if (total <= SMALL_MAX && (b == NULL || b->len + total <= BLOCK_CAP)) {
        if (b == NULL) {
            b = block_get();
            if (b == NULL)
                return PT_SENDQ_DIRECT;
            b->c = c;
            b->fd = c->io.fd;
            c->sendq = b;
        }
        char *p = b->data + b->len;
        for (int i = 0; i < n; i++) {
            memcpy(p, iov[i].iov_base, iov[i].iov_len);
            p += iov[i].iov_len;
        }
        b->len += (uint32_t) total;
        mark_dirty(b);
        return (ssize_t) total;
    }
    if (b == NULL)
        return PT_SENDQ_DIRECT;
    if (b->inflight || b->shut_wr) {
        b->want_write = 1;
        c->io.write.ready = 0;
        return PT_IO_AGAIN;
    }
    if (b->len == b->done) {
        (void) settle(b);
        return PT_SENDQ_DIRECT;
    }
    return send_combined(c, b, iov, n, total);
}

int pt_sendq_sync(pt_conn_t *c)
{
    sendq_t *b = c->sendq;
    if (b == NULL)
        return 0;
    if (b->inflight || (b->shut_wr && !b->shut_sent)) {
        b->want_write = 1;
        c->io.write.ready = 0;
        return PT_IO_AGAIN;
    }
    if (b->len > b->done) {
        struct iovec none = { NULL, 0 };
        ssize_t w = send_combined(c, b, &none, 0, 0);
        if (w < 0)
            return (int) w;
    }
    if (c->sendq != NULL && c->sendq->len > c->sendq->done)
        return PT_IO_AGAIN;
    return 0;
}

int pt_sendq_shutdown_wr(pt_conn_t *c)
{
    sendq_t *b = c->sendq;
    if (b == NULL || (!b->inflight && b->len == b->done))
        return shutdown(c->io.fd, SHUT_WR);
    b->shut_wr = 1;
    mark_dirty(b);
    return 0;
}

int pt_sendq_close(pt_conn_t *c)
{
    sendq_t *b = c->sendq;
    c->sendq = NULL;
    b->c = NULL;
    b->want_write = 0;
    b->orphan = 1;
    if (!b->inflight && b->len == b->done && !b->shut_pending) {
        /* nothing left to send: the caller closes the fd itself, and the
         * block must never name that fd again (its number is reused at
         * once), not even for a shutdown still to be queued */
        b->shut_wr = 0;
        b->fd = -1;
        b->del_sent = b->close_sent = 1;
        if (!b->dirty)
            block_free(b);
        return 0;
    }
    b->fd = c->io.fd;
    if (epw_pending) {
        /* an epoll wait in flight could report the fd before a queued
         * DEL runs, for a record that may serve another connection then */
        struct epoll_event none;
        memset(&none, 0, sizeof(none));
        (void) epoll_ctl(pt_loop_epfd(), EPOLL_CTL_DEL, b->fd, &none);
        b->del_sent = 1;
    }
    pt_loop_forget_io(&c->io);
    c->io.fd = -1;
    mark_dirty(b);
    return 1;
}
