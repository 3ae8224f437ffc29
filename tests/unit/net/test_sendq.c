/* Batched sends (src/net/sendq.c) over real sockets: staging and one flush
 * per loop iteration, order between staged and large direct writes, a
 * socket that fills up (in-flight block, PT_IO_AGAIN, write event on
 * completion), close with bytes staged (sent, then the fd closed), shutdown
 * after staged bytes, and pt_conn_sync. Skipped when io_uring is not
 * available here. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tap.h"
#include "core/loop.h"
#include "net/conn.h"
#include "net/sendq.h"

static int pair(int *peer)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    *peer = sv[1];
    return sv[0];
}

/* reads what the peer has now (nonblocking), up to cap */
static size_t drain(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n <= 0)
            return got;
        got += (size_t) n;
        if (got == cap)
            return got;
    }
}

static void turn(void)
{
    (void) pt_loop_once(0);
}

/* turns the loop while reading the peer, until EOF or buf is full */
static size_t read_until_eof(int peer, char *buf, size_t cap, int *eof)
{
    size_t got = 0;
    for (int i = 0; i < 200 && !*eof && got < cap; i++) {
        turn();
        ssize_t n = read(peer, buf + got, cap - got);
        if (n > 0)
            got += (size_t) n;
        else if (n == 0)
            *eof = 1;
        else
            (void) poll(&(struct pollfd) { peer, POLLIN, 0 }, 1, 10);
    }
    return got;
}

static int writes_seen;
static void on_write(pt_event_t *ev)
{
    (void) ev;
    writes_seen++;
}

static void test_staged_then_flushed(void)
{
    int peer;
    pt_conn_t *c = pt_conn_get(pair(&peer), NULL);
    char buf[256];

    is_int(c->send(c, "hello ", 6), 6, "small send reported written");
    struct iovec iov[2] = { { "wor", 3 }, { "ld", 2 } };
    is_int(c->writev(c, iov, 2), 5, "small writev reported written");
    is_int((int) drain(peer, buf, sizeof(buf)), 0, "nothing on the wire before the flush");
    turn();
    size_t n = drain(peer, buf, sizeof(buf));
    ok(n == 11 && memcmp(buf, "hello world", 11) == 0, "one flush sends both, in order");
    ok(c->sendq == NULL, "the block is released once sent");
    pt_conn_close(c);
    close(peer);
}

static void test_large_after_staged(void)
{
    int peer;
    pt_conn_t *c = pt_conn_get(pair(&peer), NULL);
    size_t big = 20000;
    char *data = malloc(big), *got = malloc(big + 16);
    for (size_t i = 0; i < big; i++)
        data[i] = (char) ('a' + i % 26);

    is_int(c->send(c, "HEAD", 4), 4, "staged");
    ssize_t w = c->send(c, data, big);
    ok(w > 0, "large write goes out directly (%zd)", w);
    size_t n = drain(peer, got, big + 16);
    ok(n >= 4 && memcmp(got, "HEAD", 4) == 0, "the staged bytes went first");
    ok(n == 4 + (size_t) w && memcmp(got + 4, data, (size_t) w) == 0, "then the large ones");
    pt_conn_close(c);
    close(peer);
    free(data);
    free(got);
}

static void test_socket_full(void)
{
    int peer;
    int fd = pair(&peer);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    pt_conn_t *c = pt_conn_get(fd, NULL);
    c->io.write.handler = on_write;

    /* fill the socket with direct writes */
    char chunk[8192];
    memset(chunk, 'x', sizeof(chunk));
    size_t direct = 0;
    for (int i = 0; i < 1000; i++) {
        ssize_t w = send(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (w <= 0)
            break;
        direct += (size_t) w;
    }
    ok(direct > 0, "socket filled with %zu bytes", direct);

    /* staged bytes now cannot leave: the send stays in flight */
    is_int(c->send(c, "tail-1", 6), 6, "staged behind a full socket");
    turn();
    ok(c->sendq != NULL, "block in flight");
    is_int(c->send(c, "tail-2", 6), 6, "a small write queues behind the in-flight one");
    static char large[10000];     /* above the staging limit (8 KiB) */
    ssize_t w = c->send(c, large, sizeof(large));
    is_int((int) w, PT_IO_AGAIN, "a large write waits (no reordering)");
    ok(!c->io.write.ready, "write.ready cleared");
    writes_seen = 0;

    /* the peer reads everything: the in-flight send completes, the queued
     * one follows, and the owner's write event is posted */
    size_t cap = direct + 64, got = 0;
    char *all = malloc(cap);
    for (int i = 0; i < 2000 && got < direct + 12; i++) {
        struct pollfd p = { peer, POLLIN, 0 };
        (void) poll(&p, 1, 10);
        got += drain(peer, all + got, cap - got);
        turn();
    }
    is_int((int) got, (int) (direct + 12), "every byte arrived");
    ok(got >= direct + 12 && memcmp(all + direct, "tail-1tail-2", 12) == 0,
       "staged bytes after the direct ones, in order");
    for (int i = 0; i < 100 && writes_seen == 0; i++)
        turn();
    ok(writes_seen > 0, "write event posted when the block drained");
    ok(c->io.write.ready, "write.ready set again");
    free(all);
    pt_conn_close(c);
    close(peer);
}

static void test_close_with_staged_bytes(void)
{
    int peer;
    pt_conn_t *c = pt_conn_get(pair(&peer), NULL);
    is_int(c->send(c, "last words", 10), 10, "staged");
    pt_conn_close(c);
    ok(c->destroyed, "record released at once");
    char buf[64];
    int eof = 0;
    size_t got = read_until_eof(peer, buf, sizeof(buf), &eof);
    ok(got == 10 && memcmp(buf, "last words", 10) == 0, "the bytes arrived");
    ok(eof, "then the fd was closed");
    close(peer);
}

static void test_shutdown_after_staged(void)
{
    int peer;
    pt_conn_t *c = pt_conn_get(pair(&peer), NULL);
    is_int(c->send(c, "bye", 3), 3, "staged");
    is_int(pt_conn_shutdown_wr(c), 0, "shutdown queued behind it");
    char buf[16];
    int eof = 0;
    size_t got = read_until_eof(peer, buf, sizeof(buf), &eof);
    ok(got == 3 && memcmp(buf, "bye", 3) == 0 && eof, "data, then FIN");
    /* the connection still reads (lingering close) */
    is_int((int) write(peer, "z", 1), 1, "peer writes after our FIN");
    c->io.read.ready = 1;
    for (int i = 0; i < 100 && c->sendq; i++)
        turn();
    ssize_t n = c->recv(c, buf, sizeof(buf));
    ok(n == 1 && buf[0] == 'z', "and we read it");
    pt_conn_close(c);
    close(peer);
}

static void test_sync(void)
{
    int peer;
    pt_conn_t *c = pt_conn_get(pair(&peer), NULL);
    is_int(pt_conn_sync(c), 0, "nothing staged: sync is 0");
    is_int(c->send(c, "head", 4), 4, "staged");
    is_int(pt_conn_sync(c), 0, "sync writes it now");
    char buf[16];
    ok(drain(peer, buf, sizeof(buf)) == 4 && memcmp(buf, "head", 4) == 0,
       "on the wire before any direct write");
    is_int((int) write(c->io.fd, "body", 4), 4, "direct write after sync");
    ok(drain(peer, buf, sizeof(buf)) == 4 && memcmp(buf, "body", 4) == 0, "in order");
    turn();
    pt_conn_close(c);
    close(peer);
}

static void test_fd_reuse_after_close(void)
{
    /* a block whose owner closed its fd must not touch the fd number again
     * (the next connection may get it) */
    int peer1, peer2;
    pt_conn_t *a = pt_conn_get(pair(&peer1), NULL);
    is_int(a->send(a, "x", 1), 1, "staged");
    turn();                                   /* sent, block released */
    is_int(a->send(a, "y", 1), 1, "staged again");
    is_int(pt_conn_sync(a), 0, "written directly");
    is_int(pt_conn_shutdown_wr(a), 0, "shutdown (nothing staged: direct)");
    int fd_a = a->io.fd;
    pt_conn_close(a);
    int fd_b = pair(&peer2);
    ok(fd_b == fd_a || fd_b != fd_a, "new socket (fd %d, old %d)", fd_b, fd_a);
    pt_conn_t *b = pt_conn_get(fd_b, NULL);
    is_int(b->send(b, "second", 6), 6, "staged on the new connection");
    for (int i = 0; i < 5; i++)
        turn();
    char buf[16];
    size_t n = drain(peer2, buf, sizeof(buf));
    ok(n == 6 && memcmp(buf, "second", 6) == 0, "the new connection is untouched");
    is_int((int) write(peer2, "q", 1), 1, "and still open both ways");
    b->io.read.ready = 1;
    ok(b->recv(b, buf, sizeof(buf)) == 1, "read on it");
    pt_conn_close(b);
    close(peer1);
    close(peer2);
}

int main(void)
{
    if (pt_loop_init(64) != 0 || pt_conn_table_init(16) != 0) {
        printf("Bail out! loop\n");
        return 1;
    }
    for (int waiter = 1; waiter >= 0; waiter--) {
        if (!pt_sendq_init_mode(64, waiter)) {
            note("io_uring is not available here: batched sends stay off");
            ok(!pt_sendq_enabled(), "off");
            break;
        }
        note("mode %d (%s)", pt_sendq_enabled(),
             pt_sendq_enabled() == 2 ? "sends and the epoll wait in one submission"
                                     : "sends only, ring fd in the epoll set");
        subtest("staged then flushed", test_staged_then_flushed);
        subtest("large after staged", test_large_after_staged);
        subtest("socket full", test_socket_full);
        subtest("close with staged bytes", test_close_with_staged_bytes);
        subtest("shutdown after staged bytes", test_shutdown_after_staged);
        subtest("sync", test_sync);
        subtest("fd reuse after close", test_fd_reuse_after_close);
        pt_sendq_done();
        ok(!pt_sendq_enabled(), "off after done");
    }
    pt_loop_done();
    return done_testing();
}
