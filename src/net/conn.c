/* The per-worker connection table: worker_connections records allocated
 * once, a free list threaded through `data`, and a doubly linked list of idle
 * (reusable) connections, most recently idle first, so the oldest one can be
 * reclaimed when the table runs out and all of them can be closed at a
 * graceful shutdown. */
#include "conn.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "../core/time.h"
#include "sendq.h"

int pt_conn_shutting_down;
static pt_conn_stats_t local_stats;
pt_conn_stats_t *pt_conn_stats_ptr = &local_stats;

static pt_conn_t *table;
static unsigned   table_n;
static pt_conn_t *free_list;     /* linked through c->data */
static unsigned   free_n;
static pt_conn_t *idle_head;     /* most recently idle */
static pt_conn_t *idle_tail;     /* oldest idle */

static _Atomic uint64_t *shared_number;
static uint64_t          local_number;

int pt_conn_number_shared_init(void)
{
    if (shared_number != NULL)
        return 0;
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    shared_number = p;
    atomic_store(shared_number, local_number);
    return 0;
}

uint64_t pt_conn_next_number(void)
{
    if (shared_number != NULL)
        return atomic_fetch_add(shared_number, 1) + 1;
    return ++local_number;
}

int pt_conn_table_init(unsigned n)
{
    if (n == 0)
        n = 1;
    pt_conn_t *t = calloc(n, sizeof(pt_conn_t));
    if (t == NULL)
        return -1;
    free(table);
    table = t;
    table_n = n;
    free_list = NULL;
    for (unsigned i = n; i-- > 0;) {
        table[i].destroyed = 1;
        table[i].io.fd = -1;
        table[i].data = free_list;
        free_list = &table[i];
    }
    free_n = n;
    idle_head = idle_tail = NULL;
    return 0;
}

static void idle_unlink(pt_conn_t *c)
{
    if (c->reusable_prev)
        c->reusable_prev->reusable_next = c->reusable_next;
    else
        idle_head = c->reusable_next;
    if (c->reusable_next)
        c->reusable_next->reusable_prev = c->reusable_prev;
    else
        idle_tail = c->reusable_prev;
    c->reusable_next = c->reusable_prev = NULL;
    c->reusable = 0;
}

void pt_conn_reusable(pt_conn_t *c, int reusable)
{
    if (c->reusable)
        idle_unlink(c);
    if (!reusable)
        return;
    c->reusable = 1;
    c->reusable_prev = NULL;
    c->reusable_next = idle_head;
    if (idle_head)
        idle_head->reusable_prev = c;
    else
        idle_tail = c;
    idle_head = c;
}

/* Closes up to a few of the oldest idle connections through their owners
 * (nginx's "reusable connections"). */
static void reclaim_idle(pt_log_t *log)
{
    unsigned tries = 0;

    while (free_list == NULL && idle_tail != NULL && tries++ < 32) {
        pt_conn_t *c = idle_tail;
        idle_unlink(c);   /* so an owner that does not close cannot loop us */
        c->close = 1;
        if (c->io.read.handler)
            c->io.read.handler(&c->io.read);
        else
            pt_conn_close(c);
    }
    static time_t last_warned;
    if (tries > 0 && free_list != NULL && pt_time_sec != last_warned) {
        last_warned = pt_time_sec;   /* once a second at most */
        pt_log_error(PT_LOG_WARN, log, 0, "%u worker_connections are not enough, "
                     "reusing connections", table_n);
    }
}

static ssize_t lazy_send(pt_conn_t *c, const char *buf, size_t size);
static ssize_t lazy_writev(pt_conn_t *c, struct iovec *iov, int n);

static pt_conn_t *conn_take(int fd, pt_log_t *log, int lazy)
{
    if (log == NULL)
        log = pt_log_default;
    if (free_list == NULL)
        reclaim_idle(log);
    if (free_list == NULL) {
        pt_log_error(PT_LOG_ALERT, log, 0, "%u worker_connections are not enough", table_n);
        return NULL;
    }

    pt_conn_t *c = free_list;
    free_list = c->data;
    free_n--;

    memset(c, 0, sizeof(*c));
    c->io.fd = fd;
    c->io.read.data = c;
    c->io.write.data = c;
    c->io.write.write = 1;
    c->io.read.timer_index = SIZE_MAX;
    c->io.write.timer_index = SIZE_MAX;
    c->recv = pt_conn_recv;
    c->send = lazy ? lazy_send : pt_conn_send;
    c->writev = lazy ? lazy_writev : pt_conn_writev;
    c->number = pt_conn_next_number();
    c->log = *log;
    c->log.connection = c->number;

    if ((lazy ? pt_loop_add_io_lazy(&c->io) : pt_loop_add_io(&c->io)) != 0) {
        pt_log_error(PT_LOG_ALERT, log, errno, "epoll_ctl(EPOLL_CTL_ADD, %d) failed", fd);
        c->destroyed = 1;
        c->io.fd = -1;
        c->data = free_list;
        free_list = c;
        free_n++;
        return NULL;
    }
    c->io.write.write = 1;
    return c;
}

pt_conn_t *pt_conn_get(int fd, pt_log_t *log)
{
    return conn_take(fd, log, 0);
}

pt_conn_t *pt_conn_get_accepted(int fd, pt_log_t *log)
{
    return conn_take(fd, log, 1);
}

void pt_conn_want_write(pt_conn_t *c)
{
    if (c->send == lazy_send)
        c->send = pt_conn_send;
    if (c->writev == lazy_writev)
        c->writev = pt_conn_writev;
    if (!c->io.write.lazy)
        return;
    if (pt_loop_want_write(&c->io) != 0) {
        /* the write waits for send_timeout at worst */
        pt_log_error(PT_LOG_ALERT, &c->log, errno, "epoll_ctl(EPOLL_CTL_MOD, %d) failed",
                     c->io.fd);
    }
}

/* The plain functions of an accepted connection until its first write
 * blocks: then EPOLLOUT is armed and the plain functions take over. */
static ssize_t lazy_send(pt_conn_t *c, const char *buf, size_t size)
{
    ssize_t n = pt_conn_send(c, buf, size);
    if (!c->io.write.ready && !c->io.write.error)
        pt_conn_want_write(c);
    return n;
}

static ssize_t lazy_writev(pt_conn_t *c, struct iovec *iov, int n)
{
    ssize_t w = pt_conn_writev(c, iov, n);
    if (!c->io.write.ready && !c->io.write.error)
        pt_conn_want_write(c);
    return w;
}

void pt_conn_close(pt_conn_t *c)
{
    if (c == NULL || c->destroyed)
        return;
    if (c->reusable)
        idle_unlink(c);
    if (c->on_close) {
        void (*fn)(pt_conn_t *) = c->on_close;
        c->on_close = NULL;
        fn(c);
    }
    if (c->sendq != NULL && pt_sendq_close(c)) {
        /* staged bytes go first; the block closes the fd after them */
    } else if (c->io.fd >= 0) {
        /* close() takes the fd out of the epoll set (every socket is opened
         * with CLOEXEC and never dup'ed, so this is its only reference): no
         * EPOLL_CTL_DEL; the loop forgets the io's events and timers */
        pt_loop_close_io(&c->io);
    }
    if (c->pool) {
        pt_pool_destroy(c->pool);
        c->pool = NULL;
    }
    c->destroyed = 1;
    c->data = free_list;
    free_list = c;
    free_n++;
    /* counted by the accept path (listen.c) for client connections only */
    if (c->listening != NULL && pt_conn_stats.active)
        pt_conn_stats.active--;
}

void pt_conn_close_idle(void)
{
    pt_conn_t *c = idle_head;

    while (c != NULL) {
        pt_conn_t *next = c->reusable_next;
        /* a connection still waiting for its first request may have one in
         * flight that was sent before the client could know we stop (it was
         * accepted from the shared queue): it is served, or ends with its
         * header timeout, as nginx does */
        if (c->requests == 0) {
            c = next;
            continue;
        }
        c->close = 1;
        if (c->io.read.handler)
            pt_event_post(&c->io.read);
        else
            pt_conn_close(c);
        c = next;
    }
}

unsigned pt_conn_active_count(void)
{
    return table_n - free_n;
}

void pt_conn_each(void (*fn)(pt_conn_t *c, void *arg), void *arg)
{
    for (unsigned i = 0; i < table_n; i++) {
        if (!table[i].destroyed)
            fn(&table[i], arg);
    }
}

/* A listener bound to one IP address accepts only connections to it: the
 * local address is the listener's, no getsockname() needed. */
static int listener_is_specific(const pt_listening_t *ls)
{
    if (ls->addr.sa.sa_family == AF_INET)
        return ls->addr.sin.sin_addr.s_addr != htonl(INADDR_ANY);
    if (ls->addr.sa.sa_family == AF_INET6)
        return !IN6_IS_ADDR_UNSPECIFIED(&ls->addr.sin6.sin6_addr);
    return 0;
}

int pt_conn_local_addr(pt_conn_t *c)
{
    if (c->local_socklen)
        return 0;
    if (c->listening != NULL && c->listening->socklen <= sizeof(c->local_sockaddr)
        && c->sockaddr.sa.sa_family == c->listening->addr.sa.sa_family   /* accepted there */
        && listener_is_specific(c->listening)) {
        memcpy(&c->local_sockaddr, &c->listening->addr, c->listening->socklen);
        c->local_socklen = c->listening->socklen;
        return 0;
    }
    socklen_t len = sizeof(c->local_sockaddr);
    if (getsockname(c->io.fd, &c->local_sockaddr.sa, &len) != 0) {
        pt_log_error(PT_LOG_CRIT, &c->log, errno, "getsockname() failed");
        return -1;
    }
    c->local_socklen = len;
    return 0;
}

int pt_conn_nodelay(pt_conn_t *c)
{
    int one = 1;

    if (c->tcp_nodelay || c->unix_socket || c->io.fd < 0)
        return 0;
    if (setsockopt(c->io.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
        pt_log_error(PT_LOG_INFO, &c->log, errno, "setsockopt(TCP_NODELAY) failed");
        return -1;
    }
    c->tcp_nodelay = 1;
    return 0;
}

/* ---- plain socket I/O ---------------------------------------------------- */

int pt_conn_quiet_error(int err)
{
    /* the peer went away: the owner reports it in its own words */
    return err == ECONNRESET || err == EPIPE || err == ENOTCONN || err == ETIMEDOUT;
}

ssize_t pt_conn_recv(pt_conn_t *c, char *buf, size_t size)
{
    for (;;) {
        ssize_t n = recv(c->io.fd, buf, size, 0);
        if (n > 0) {
            /* a short read drained the socket; with edge triggering the
             * next arrival is reported again (unless the peer's FIN is
             * pending: then the owner must read once more to see 0) */
            if ((size_t) n < size && !c->io.read.eof)
                c->io.read.ready = 0;
            return n;
        }
        if (n == 0) {
            c->io.read.eof = 1;
            c->io.read.ready = 0;
            return 0;
        }
        int err = errno;
        if (err == EINTR)
            continue;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            c->io.read.ready = 0;
            return PT_IO_AGAIN;
        }
        c->io.read.error = 1;
        c->io.read.ready = 0;
        if (!pt_conn_quiet_error(err))
            pt_log_error(PT_LOG_INFO, &c->log, err, "recv() failed");
        errno = err;
        return -1;
    }
}

int pt_conn_sync(pt_conn_t *c)
{
    return c->sendq ? pt_sendq_sync(c) : 0;
}

int pt_conn_shutdown_wr(pt_conn_t *c)
{
    if (c->sendq)
        return pt_sendq_shutdown_wr(c);
    return shutdown(c->io.fd, SHUT_WR);
}

ssize_t pt_conn_send(pt_conn_t *c, const char *buf, size_t size)
{
    if (pt_sendq_enabled() && size > 0) {
        struct iovec v = { (void *) buf, size };
        ssize_t r = pt_sendq_writev(c, &v, 1, size);
        if (r != PT_SENDQ_DIRECT)
            return r;
    }
    for (;;) {
        ssize_t n = send(c->io.fd, buf, size, MSG_NOSIGNAL);
        if (n >= 0) {
            if ((size_t) n < size)
                c->io.write.ready = 0;
            return n;
        }
        int err = errno;
        if (err == EINTR)
            continue;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            c->io.write.ready = 0;
            return PT_IO_AGAIN;
        }
        c->io.write.error = 1;
        c->io.write.ready = 0;
        if (!pt_conn_quiet_error(err))
            pt_log_error(PT_LOG_INFO, &c->log, err, "send() failed");
        errno = err;
        return -1;
    }
}

ssize_t pt_conn_writev(pt_conn_t *c, struct iovec *iov, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (pt_sendq_enabled() && total > 0) {
        ssize_t r = pt_sendq_writev(c, iov, n, total);
        if (r != PT_SENDQ_DIRECT)
            return r;
    }

    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t) n;

    for (;;) {
        ssize_t w = sendmsg(c->io.fd, &msg, MSG_NOSIGNAL);
        if (w >= 0) {
            if ((size_t) w < total)
                c->io.write.ready = 0;
            return w;
        }
        int err = errno;
        if (err == EINTR)
            continue;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            c->io.write.ready = 0;
            return PT_IO_AGAIN;
        }
        c->io.write.error = 1;
        c->io.write.ready = 0;
        if (!pt_conn_quiet_error(err))
            pt_log_error(PT_LOG_INFO, &c->log, err, "writev() failed");
        errno = err;
        return -1;
    }
}
