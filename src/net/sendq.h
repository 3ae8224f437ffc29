/* Batched sends (io_uring). A small write to a connection is copied into a
 * per-connection staging block and reported as written; at the start of the
 * next loop iteration (before epoll_wait) every staged block goes to the
 * kernel in one io_uring_enter() instead of one sendmsg() per write. On this
 * kind of machine a system call costs about 1 µs, a third of the proxy's
 * user+system time for a small keep-alive request; the copy of a few KiB
 * costs a few tens of ns.
 *
 * Ordering: bytes written later never overtake staged ones. A large write
 * on a connection with staged bytes sends both in one sendmsg(); while a
 * block is in flight (the socket was full) further writes are staged behind
 * it or answered PT_IO_AGAIN, and the completion posts the write event.
 * Closing a connection with staged bytes hands the block over: the fd is
 * removed from the epoll set, the bytes are sent, then the fd is closed, all
 * as linked io_uring requests. Anything that writes to the fd directly
 * (sendfile, splice, shutdown) calls pt_conn_sync() or
 * pt_conn_shutdown_wr() first.
 *
 * Off (the plain sendmsg() path) when io_uring is unavailable (old kernel,
 * seccomp, io_uring_disabled) or `io_uring_send off` is set in events{}. */
#ifndef PT_SENDQ_H
#define PT_SENDQ_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct pt_conn_s pt_conn_t;

/* Per worker, after pt_loop_init(). Returns 1 when batching is on, 0 when it
 * stays off (the reason is logged at info). */
int  pt_sendq_init(unsigned entries);
/* allow_waiter 0: never the epoll-wait mode (the unit test covers both). */
int  pt_sendq_init_mode(unsigned entries, int allow_waiter);
/* Sends what is staged and waits (bounded) for what is in flight, then
 * frees the ring. Before pt_loop_done(). */
void pt_sendq_done(void);
/* 0 off, 1 sends batched (ring fd in the epoll set), 2 sends and the epoll
 * wait in one submission. */
int  pt_sendq_enabled(void);

/* For src/net/conn.c. pt_sendq_writev() returns PT_SENDQ_DIRECT when the
 * caller should write with sendmsg() itself (nothing staged, large write). */
#define PT_SENDQ_DIRECT (-3)
ssize_t pt_sendq_writev(pt_conn_t *c, const struct iovec *iov, int n, size_t total);
int     pt_sendq_sync(pt_conn_t *c);
/* Returns 1 when the block took the fd over (sent, then closed by it), 0
 * when nothing was pending and the caller closes the fd. */
int     pt_sendq_close(pt_conn_t *c);
int     pt_sendq_shutdown_wr(pt_conn_t *c);

#endif
