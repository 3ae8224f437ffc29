/* Connections (client and upstream side alike). A worker preallocates
 * worker_connections records; pt_conn_get() takes one and pt_conn_close()
 * returns it. An idle (keep-alive) connection is kept on a reusable list so
 * that graceful shutdown can close it and, when records run out, the oldest
 * idle one can be reclaimed (nginx's reusable connections). */
#ifndef PT_CONN_H
#define PT_CONN_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "../core/log.h"
#include "../core/loop.h"
#include "../core/pool.h"
#include "listen.h"

struct pt_conn_s {
    pt_io_t         io;            /* fd + read/write events (data = this conn) */
    void           *data;          /* protocol object that owns the connection */
    pt_pool_t      *pool;          /* small; created by the owner when needed */
    pt_listening_t *listening;     /* NULL for upstream connections */
    pt_sockaddr_t   sockaddr;      /* peer */
    socklen_t       socklen;
    pt_str_t        addr_text;     /* peer address without port ("unix:" for a
                                    * unix socket); set on accept, points into
                                    * _addr_buf, no pool needed */
    pt_sockaddr_t   local_sockaddr;/* filled lazily by pt_conn_local_addr() */
    socklen_t       local_socklen;
    uint64_t        number;        /* $connection */
    uint64_t        requests;      /* $connection_requests */
    pt_log_t        log;           /* copy of the server log with connection id */
    void           *ssl;           /* SSL* when TLS */
    void           *proxy_protocol;/* pt_proxy_protocol_t (in pool) when a PROXY
                                    * header gave addresses (proxy_protocol.c) */
    /* I/O: plain socket functions unless TLS replaces them. recv returns bytes,
     * 0 on EOF, -1 on error, -2 (PT_IO_AGAIN) when it would block (and clears
     * ev->ready). */
    ssize_t       (*recv)(pt_conn_t *c, char *buf, size_t size);
    ssize_t       (*send)(pt_conn_t *c, const char *buf, size_t size);
    ssize_t       (*writev)(pt_conn_t *c, struct iovec *iov, int n);
    /* Called by pt_conn_close() while the fd is still open (TLS sends its
     * close_notify here); NULL for plain connections. */
    void          (*on_close)(pt_conn_t *c);
    struct pt_sendq_s *sendq;      /* staged output (sendq.c), NULL when none */
    pt_conn_t      *reusable_next, *reusable_prev;
    unsigned        reusable:1;    /* on the idle list */
    unsigned        close:1;       /* set by shutdown: owner should close at the next chance */
    unsigned        destroyed:1;
    unsigned        tcp_nodelay:1;
    unsigned        unix_socket:1;
    unsigned        upstream:1;
    unsigned        proxy_protocol_read:1; /* PROXY header read (proxy_protocol.c) */
    char            _addr_buf[48]; /* storage of addr_text (INET6_ADDRSTRLEN + "unix:") */
};

#define PT_IO_AGAIN (-2)

/* Per worker: allocates the connection table. Returns 0 or -1. */
int  pt_conn_table_init(unsigned n);
/* Takes a record for fd (nonblocking already), registers it in the loop.
 * The record is zeroed except: io.fd, io.read/write.data = c, the plain
 * recv/send/writev, number (pt_conn_next_number()), log = *log with
 * log.connection = number. No pool: the owner creates one if it needs it.
 * NULL when none is free (after trying to reclaim an idle one: its read
 * handler runs with c->close set and must close it) or on error; the caller
 * still owns fd then and closes it. */
pt_conn_t *pt_conn_get(int fd, pt_log_t *log);
/* Unregisters, closes the fd, destroys the pool, returns the record to the
 * free list (it may be handed out again within the same loop iteration; the
 * loop skips events already fetched for the old registration). Idempotent:
 * a second close of the same record is ignored until it is reused. */
void pt_conn_close(pt_conn_t *c);
/* pt_conn_get() for an accepted socket: registered without EPOLLOUT
 * (pt_loop_add_io_lazy(): a fresh socket is writable, and the EPOLLOUT edge
 * registration would report costs a loop iteration per connection) with
 * write.ready = 1. c->send and c->writev are the plain functions wrapped so
 * that a write that blocks (clears write.ready) arms EPOLLOUT; any other
 * code that clears write.ready to wait for the write event (TLS) must call
 * pt_conn_want_write(). */
pt_conn_t *pt_conn_get_accepted(int fd, pt_log_t *log);
/* Arms EPOLLOUT on a connection from pt_conn_get_accepted() (once; nothing
 * for any other) and puts the unwrapped plain send/writev back. */
void pt_conn_want_write(pt_conn_t *c);
void pt_conn_reusable(pt_conn_t *c, int reusable);
/* Graceful shutdown: sets `close` on every idle keep-alive connection (on
 * the reusable list with requests > 0) and posts its read event. Connections
 * still waiting for their first request are left to finish (or time out). */
void pt_conn_close_idle(void);
unsigned pt_conn_active_count(void);
/* Connection numbers are unique across workers when the master called
 * pt_conn_number_shared_init() before forking (a shared counter page);
 * otherwise per process. */
uint64_t pt_conn_next_number(void);
int  pt_conn_number_shared_init(void);
/* The records in use (for a forced close at worker_shutdown_timeout):
 * calls fn for each. fn may close the connection. */
void pt_conn_each(void (*fn)(pt_conn_t *c, void *arg), void *arg);
/* Fills local_sockaddr once (from the listener when it is bound to one IP
 * address, else getsockname()); returns 0 or -1. */
int  pt_conn_local_addr(pt_conn_t *c);
/* Sets TCP_NODELAY once (c->tcp_nodelay remembers it; nothing for a unix
 * socket). Accepted connections start without it (one system call less per
 * connection, as nginx): a protocol calls this when the connection stays
 * open after a response is written (keep-alive), for HTTP/2 and TLS, and for
 * tunnels. Returns 0, or -1 when setsockopt failed (logged at info). */
int  pt_conn_nodelay(pt_conn_t *c);

/* Before writing to c->io.fd directly (sendfile, splice): 0 when no bytes
 * written through c->writev/c->send are still staged (sendq.c), PT_IO_AGAIN
 * when they are (the write event is posted when they are out), -1 on error. */
int  pt_conn_sync(pt_conn_t *c);
/* shutdown(SHUT_WR) after the staged bytes. Returns 0 or -1. */
int  pt_conn_shutdown_wr(pt_conn_t *c);

/* The peer went away (reset, broken pipe, ...): an I/O error the owner
 * reports in its own words, not logged by the I/O layer. */
int  pt_conn_quiet_error(int err);

/* Plain socket I/O used by default. */
ssize_t pt_conn_recv(pt_conn_t *c, char *buf, size_t size);
ssize_t pt_conn_send(pt_conn_t *c, const char *buf, size_t size);
ssize_t pt_conn_writev(pt_conn_t *c, struct iovec *iov, int n);

/* Set in a worker when a graceful shutdown starts: protocols stop keep-alive
 * and close idle connections. */
extern int pt_conn_shutting_down;

/* Counters for stub_status and metrics, totals across workers. The record
 * lives in the statistics zone (src/modules/stats.c), which points
 * pt_conn_stats_ptr at it in every worker (init_worker), so all workers add
 * to one record and it survives a reload; before that (master, unit tests)
 * it points at a process-local record. The fields are atomics: `x++` and
 * `x--` on them are atomic adds, a read is an atomic load. `active` counts
 * client connections only (accepted ones, as nginx), waiting included. */
typedef struct {
    _Atomic uint64_t accepted, handled, requests;
    _Atomic unsigned active, reading, writing, waiting;
} pt_conn_stats_t;
extern pt_conn_stats_t *pt_conn_stats_ptr;
#define pt_conn_stats (*pt_conn_stats_ptr)

#endif
