/* The connection table: free list, exhaustion, reclaiming idle connections,
 * graceful close of idle ones, and the plain socket I/O functions. */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tap.h"
#include "core/loop.h"
#include "net/conn.h"

static int closed_by_handler;

static void on_read_close(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    if (c->close) {
        closed_by_handler++;
        pt_conn_close(c);
    }
}

/* a nonblocking socketpair; returns our end, *peer the other */
static int pair(int *peer)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    *peer = sv[1];
    return sv[0];
}

static void count_cb(pt_conn_t *c, void *arg)
{
    (void) c;
    (*(int *) arg)++;
}

static void test_table(void)
{
    int peers[4];
    pt_conn_t *c[3];

    ok(pt_conn_table_init(2) == 0, "table of 2");
    is_int(pt_conn_active_count(), 0, "none active");

    for (int i = 0; i < 2; i++) {
        int fd = pair(&peers[i]);
        c[i] = pt_conn_get(fd, NULL);
        ok(c[i] != NULL, "got connection %d", i);
        c[i]->io.read.handler = on_read_close;
    }
    ok(c[1]->number > c[0]->number, "numbers increase");
    is_int(c[0]->log.connection, c[0]->number, "log carries the number");
    ok(c[0]->recv == pt_conn_recv && c[0]->send == pt_conn_send, "plain I/O");
    is_int(pt_conn_active_count(), 2, "two active");
    int n = 0;
    pt_conn_each(count_cb, &n);
    is_int(n, 2, "each visits two");

    int fd3 = pair(&peers[2]);
    ok(pt_conn_get(fd3, NULL) == NULL, "table full, nothing idle: NULL");

    /* an idle one is reclaimed through its owner */
    pt_conn_reusable(c[0], 1);
    ok(c[0]->reusable, "marked idle");
    closed_by_handler = 0;
    c[2] = pt_conn_get(fd3, NULL);
    ok(c[2] != NULL, "reclaimed the idle connection");
    is_int(closed_by_handler, 1, "its owner closed it");
    is_int(pt_conn_active_count(), 2, "still two active");

    pt_conn_close(c[1]);
    pt_conn_close(c[1]);   /* ignored */
    is_int(pt_conn_active_count(), 1, "close is idempotent");
    pt_conn_close(c[2]);
    is_int(pt_conn_active_count(), 0, "all closed");
    for (int i = 0; i < 3; i++)
        close(peers[i]);
}

static void test_close_idle(void)
{
    int peers[3];
    pt_conn_t *c[3];

    pt_conn_table_init(8);
    for (int i = 0; i < 3; i++) {
        c[i] = pt_conn_get(pair(&peers[i]), NULL);
        c[i]->io.read.handler = on_read_close;
    }
    c[0]->requests = 1;
    c[2]->requests = 3;
    pt_conn_reusable(c[0], 1);
    pt_conn_reusable(c[2], 1);
    pt_conn_reusable(c[2], 0);
    pt_conn_reusable(c[2], 1);
    pt_conn_reusable(c[1], 1);   /* fresh: waiting for its first request */
    closed_by_handler = 0;
    pt_conn_close_idle();
    ok(c[0]->close && c[2]->close, "idle keep-alive ones flagged");
    ok(!c[1]->close, "a fresh connection is left to send its request");
    pt_loop_once(0);
    is_int(closed_by_handler, 2, "owners closed them in the next iteration");
    is_int(pt_conn_active_count(), 1, "the fresh one stays");
    pt_conn_close(c[1]);
    for (int i = 0; i < 3; i++)
        close(peers[i]);
}

static void test_io(void)
{
    int peer;
    char buf[64];

    pt_conn_table_init(4);
    pt_conn_t *c = pt_conn_get(pair(&peer), NULL);
    ok(c != NULL, "connection");

    c->io.read.ready = 1;
    is_int(c->recv(c, buf, sizeof(buf)), PT_IO_AGAIN, "nothing to read: AGAIN");
    ok(!c->io.read.ready, "ready cleared");

    is_int(write(peer, "hello", 5), 5, "peer writes");
    c->io.read.ready = 1;
    is_int(c->recv(c, buf, sizeof(buf)), 5, "read 5");
    ok(!c->io.read.ready, "short read clears ready");

    is_int(c->send(c, "pong", 4), 4, "send");
    is_int(read(peer, buf, sizeof(buf)), 4, "peer got it");

    struct iovec iov[2] = { { "ab", 2 }, { "cde", 3 } };
    is_int(c->writev(c, iov, 2), 5, "writev");
    is_int(read(peer, buf, sizeof(buf)), 5, "peer got both parts");

    close(peer);
    c->io.read.ready = 1;
    is_int(c->recv(c, buf, sizeof(buf)), 0, "peer closed: 0");
    ok(c->io.read.eof, "eof set");
    ssize_t n = c->send(c, "x", 1);
    ok(n == -1 && c->io.write.error, "send to a closed peer fails without SIGPIPE");
    pt_conn_close(c);
}

/* An accepted connection: no EPOLLOUT until a write blocks; the wrapped
 * send/writev arm it and hand over to the plain functions. */
static void test_accepted_lazy_write(void)
{
    int peer;
    static char junk[65536];
    char buf[64];

    pt_conn_table_init(4);
    pt_conn_t *c = pt_conn_get_accepted(pair(&peer), NULL);
    ok(c != NULL, "connection");
    ok(c->io.write.lazy && !c->io.write.active && c->io.write.ready, "write not armed, ready");

    is_int(c->send(c, "pong", 4), 4, "send");
    struct iovec iov[2] = { { "ab", 2 }, { "cde", 3 } };
    is_int(c->writev(c, iov, 2), 5, "writev");
    is_int(read(peer, buf, sizeof(buf)), 9, "peer got both");
    ok(c->io.write.lazy && c->io.write.ready && c->send != pt_conn_send,
       "writes that went out leave it unarmed");

    struct iovec big = { junk, sizeof(junk) };
    ssize_t w;
    int calls = 0;
    while ((w = c->writev(c, &big, 1)) > 0 && calls < 10000)
        calls++;
    is_int(w, PT_IO_AGAIN, "writev blocks at last");
    ok(!c->io.write.lazy && c->io.write.active, "blocking write armed EPOLLOUT");
    ok(c->send == pt_conn_send && c->writev == pt_conn_writev, "plain functions back");
    pt_conn_want_write(c);
    ok(c->io.write.active, "arming again is a no-op");
    pt_conn_close(c);
    close(peer);

    /* send() blocking arms too */
    c = pt_conn_get_accepted(pair(&peer), NULL);
    ok(c != NULL, "second connection");
    calls = 0;
    while ((w = c->send(c, junk, sizeof(junk))) > 0 && calls < 10000)
        calls++;
    is_int(w, PT_IO_AGAIN, "send blocks at last");
    ok(!c->io.write.lazy && c->io.write.active && c->send == pt_conn_send, "armed by send");
    pt_conn_close(c);
    close(peer);

    /* an upstream-style connection is registered for both directions */
    c = pt_conn_get(pair(&peer), NULL);
    ok(c != NULL && !c->io.write.lazy && c->io.write.active, "pt_conn_get: EPOLLOUT at once");
    pt_conn_close(c);
    close(peer);
}

int main(void)
{
    if (pt_loop_init(64) != 0) {
        printf("Bail out! loop\n");
        return 1;
    }
    subtest("table", test_table);
    subtest("close idle", test_close_idle);
    subtest("io", test_io);
    subtest("accepted lazy write", test_accepted_lazy_write);
    pt_loop_done();
    return done_testing();
}
