/* Unit tests for src/modules/limit_req_redis.c: the RESP encoder and parser
 * (every type, every split of the input, malformed input), the directive's
 * argument parser, and the client on the real event loop against a scripted
 * server on a Unix socket (pipelining, NOSCRIPT -> EVAL, error replies,
 * timeout, protocol errors, back-off, cancel). */
#include "../../../src/modules/limit_req_redis.c"

#include <poll.h>
#include <sys/un.h>

#include "tap.h"

static pt_str_t S(const char *s)
{
    pt_str_t v = { strlen(s), (char *) s };
    return v;
}

static void test_encode(void)
{
    pt_str_t argv[3] = { S("SET"), S("k"), { 4, "a\r\nb" } };
    char buf[64];
    size_t n = pt_redis_encode(buf, sizeof(buf), 3, argv);
    const char *want = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n";
    is_strn(buf, n, want, "array of bulk strings, binary safe");

    char small[8];
    memset(small, 'x', sizeof(small));
    size_t need = pt_redis_encode(small, 4, 3, argv);
    is_int(need, strlen(want), "too small: the length needed");
    ok(small[4] == 'x' && small[7] == 'x', "nothing written past cap");

    pt_str_t empty[1] = { { 0, NULL } };
    n = pt_redis_encode(buf, sizeof(buf), 1, empty);
    is_strn(buf, n, "*1\r\n$0\r\n\r\n", "empty string");
}

/* Every proper prefix of a complete reply is incomplete (-2), never an
 * error or a shorter reply; the whole parses to its length. */
static void all_splits(const char *text, const char *name)
{
    size_t len = strlen(text);
    pt_redis_reply_t rep;
    int bad = 0;
    for (size_t i = 0; i < len; i++) {
        char *copy = malloc(i ? i : 1);     /* exact size: an over-read is caught */
        memcpy(copy, text, i);
        if (pt_redis_parse(copy, i, &rep) != -2)
            bad++;
        free(copy);
    }
    ok(bad == 0, "%s: every prefix is incomplete", name);
    is_int(pt_redis_parse(text, len, &rep), (long long) len, name);
}

static void test_parse(void)
{
    pt_redis_reply_t rep;

    is_int(pt_redis_parse("+OK\r\n", 5, &rep), 5, "status");
    ok(rep.v.type == PT_REDIS_STATUS && rep.v.len == 2 && memcmp(rep.v.str, "OK", 2) == 0,
       "status value");
    is_int(pt_redis_parse("-NOSCRIPT x\r\n", 13, &rep), 13, "error");
    ok(rep.v.type == PT_REDIS_ERROR && rep.v.len == 10, "error value");
    is_int(pt_redis_parse(":-42\r\n", 6, &rep), 6, "integer");
    ok(rep.v.type == PT_REDIS_INTEGER && rep.v.integer == -42, "negative integer");
    is_int(pt_redis_parse("$-1\r\n", 5, &rep), 5, "nil bulk");
    ok(rep.v.type == PT_REDIS_NIL, "nil type");
    is_int(pt_redis_parse("*-1\r\n", 5, &rep), 5, "nil array");
    ok(rep.v.type == PT_REDIS_NIL, "nil array type");
    is_int(pt_redis_parse("$4\r\na\r\nb\r\n", 10, &rep), 10, "bulk with CRLF inside");
    ok(rep.v.type == PT_REDIS_BULK && rep.v.len == 4 && memcmp(rep.v.str, "a\r\nb", 4) == 0,
       "bulk value");
    is_int(pt_redis_parse("*0\r\n", 4, &rep), 4, "empty array");
    ok(rep.v.type == PT_REDIS_ARRAY && rep.nelem == 0, "empty array value");

    const char *arr = "*3\r\n:0\r\n:1500\r\n$2\r\nhi\r\n";
    is_int(pt_redis_parse(arr, strlen(arr), &rep), (long long) strlen(arr), "array");
    ok(rep.nelem == 3 && rep.nkept == 3 && rep.elem[0].integer == 0
       && rep.elem[1].integer == 1500 && rep.elem[2].type == PT_REDIS_BULK, "array elements");

    const char *nested = "*2\r\n*2\r\n:1\r\n$1\r\nx\r\n:7\r\n";
    is_int(pt_redis_parse(nested, strlen(nested), &rep), (long long) strlen(nested), "nested");
    ok(rep.nelem == 2 && rep.elem[0].type == PT_REDIS_ARRAY && rep.elem[1].integer == 7,
       "a nested array shows as ARRAY, the next element follows it");

    /* two replies back to back: the first one's length */
    is_int(pt_redis_parse(":1\r\n:2\r\n", 8, &rep), 4, "one reply at a time");

    /* more elements than kept */
    char big[1024];
    size_t n = (size_t) snprintf(big, sizeof(big), "*40\r\n");
    for (int i = 0; i < 40; i++)
        n += (size_t) snprintf(big + n, sizeof(big) - n, ":%d\r\n", i);
    is_int(pt_redis_parse(big, n, &rep), (long long) n, "40 elements");
    ok(rep.nelem == 40 && rep.nkept == PT_REDIS_MAX_ELEMS
       && rep.elem[PT_REDIS_MAX_ELEMS - 1].integer == PT_REDIS_MAX_ELEMS - 1, "32 kept");

    all_splits("+OK\r\n", "status split");
    all_splits("$5\r\nhello\r\n", "bulk split");
    all_splits(arr, "array split");
    all_splits(nested, "nested split");

    /* malformed */
    is_int(pt_redis_parse("?x\r\n", 4, &rep), -1, "unknown type");
    is_int(pt_redis_parse(":12a\r\n", 6, &rep), -1, "bad integer");
    is_int(pt_redis_parse(":\r\n", 3, &rep), -1, "empty integer");
    is_int(pt_redis_parse(":99999999999999999999\r\n", 23, &rep), -1, "integer overflow");
    is_int(pt_redis_parse("+OK\n", 4, &rep), -1, "bare LF");
    is_int(pt_redis_parse("+O\rK\r\n", 6, &rep), -1, "bare CR");
    is_int(pt_redis_parse("$2\r\nabc\r\n", 9, &rep), -1, "bulk longer than said");
    is_int(pt_redis_parse("$-2\r\n", 5, &rep), -1, "negative bulk length");
    is_int(pt_redis_parse("$999999999\r\n", 12, &rep), -1, "bulk too large");
    is_int(pt_redis_parse("*2\r\n:1\r\n?\r\n", 11, &rep), -1, "bad element");
    char deep[64];
    memset(deep, 0, sizeof(deep));
    for (int i = 0; i < 12; i++)
        memcpy(deep + 4 * i, "*1\r\n", 4);
    is_int(pt_redis_parse(deep, 48, &rep), -1, "nesting too deep");
}

static void test_conf(void)
{
    pt_redis_conf_t rc;
    pt_str_t a1[] = { S("127.0.0.1") };
    ok(pt_redis_conf_parse(&rc, a1, 1) == NULL, "address alone");
    is_str(rc.addr_text, "127.0.0.1:6379", "default port 6379");
    is_int(rc.timeout, 200, "default timeout");
    is_strn(rc.prefix.data, rc.prefix.len, "portico:limit_req:", "default prefix");

    pt_str_t a2[] = { S("unix:/run/r.sock"), S("timeout=1s"), S("prefix=p:"),
                      S("password=pw"), S("db=4") };
    ok(pt_redis_conf_parse(&rc, a2, 5) == NULL, "every parameter");
    is_str(rc.addr_text, "unix:/run/r.sock", "unix socket");
    is_int(rc.timeout, 1000, "timeout=1s");
    is_strn(rc.prefix.data, rc.prefix.len, "p:", "prefix");
    is_strn(rc.password.data, rc.password.len, "pw", "password");
    is_int(rc.db, 4, "db");

    pt_str_t a3[] = { S("127.0.0.1"), S("nope=1") };
    const char *err = pt_redis_conf_parse(&rc, a3, 2);
    ok(err && strstr(err, "invalid parameter \"nope=1\""), "unknown parameter");
    pt_str_t a4[] = { S("127.0.0.1:99999") };
    ok(pt_redis_conf_parse(&rc, a4, 1) != NULL, "bad port");
    pt_str_t a5[] = { S("127.0.0.1"), S("timeout=0") };
    ok(pt_redis_conf_parse(&rc, a5, 2) != NULL, "zero timeout");
}

/* ------------------------------------------------------------------------ */
/* The client against a scripted server                                      */

static char sock_path[108];
static int lfd = -1, sfd = -1;
static pt_redis_conf_t conf;

typedef struct {
    int calls;
    int got_null;
    int64_t integer;
    int order;
} result_t;

static int order_counter;

static void on_reply(void *data, const pt_redis_reply_t *rep)
{
    result_t *res = data;
    res->calls++;
    res->order = ++order_counter;
    if (rep == NULL)
        res->got_null = 1;
    else if (rep->v.type == PT_REDIS_INTEGER)
        res->integer = rep->v.integer;
}

static void spin(int ms)
{
    int64_t end = pt_current_msec + ms;
    while (pt_current_msec < end)
        pt_loop_once(5);
}

static int server_accept(void)
{
    for (int i = 0; i < 200 && sfd < 0; i++) {
        pt_loop_once(5);
        sfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
    }
    return sfd;
}

/* Reads what the client sent until it contains `want` times "\r\n" lines
 * starting with '*' (commands), running the loop meanwhile. */
static size_t server_read(char *buf, size_t cap, int commands)
{
    size_t len = 0;
    for (int i = 0; i < 400; i++) {
        pt_loop_once(5);
        ssize_t n = recv(sfd, buf + len, cap - 1 - len, 0);
        if (n > 0)
            len += (size_t) n;
        buf[len] = '\0';
        int count = 0;
        size_t pos = 0;
        pt_redis_reply_t rep;
        ssize_t used;
        while ((used = pt_redis_parse(buf + pos, len - pos, &rep)) > 0) {
            pos += (size_t) used;
            count++;
        }
        if (count >= commands)
            break;
    }
    return len;
}

static void server_send(const char *text)
{
    ssize_t n = send(sfd, text, strlen(text), MSG_NOSIGNAL);
    (void) n;
}

static void server_close(void)
{
    if (sfd >= 0)
        close(sfd);
    sfd = -1;
}

static void test_client(void)
{
    snprintf(sock_path, sizeof(sock_path), "/tmp/pt-redis-unit-%d.sock", (int) getpid());
    unlink(sock_path);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    memcpy(sun.sun_path, sock_path, strlen(sock_path) + 1);
    if (bind(lfd, (struct sockaddr *) &sun, sizeof(sun)) != 0 || listen(lfd, 8) != 0) {
        ok(0, "listen on %s", sock_path);
        return;
    }
    char addr[128];
    snprintf(addr, sizeof(addr), "unix:%s", sock_path);
    pt_str_t args[] = { S(addr), S("timeout=300ms"), S("db=2") };
    ok(pt_redis_conf_parse(&conf, args, 3) == NULL, "conf");

    pt_redis_t *rd = pt_redis_create(&conf, "return 1", pt_log_default);
    ok(rd != NULL, "client created");
    /* sha1("return 1") */
    is_str(rd->sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "script SHA1");

    /* two commands in one iteration: one connection, pipelined behind the
     * prelude (SELECT, SCRIPT LOAD) */
    result_t r1 = { 0 }, r2 = { 0 };
    pt_str_t ev[] = { S("1"), S("key"), S("10") };
    ok(pt_redis_eval(rd, 3, ev, on_reply, &r1) != NULL, "first command queued");
    ok(pt_redis_eval(rd, 3, ev, on_reply, &r2) != NULL, "second command queued");
    ok(r1.calls == 0 && r2.calls == 0, "no callback from inside pt_redis_eval");
    ok(server_accept() >= 0, "connected");
    char buf[4096];
    size_t len = server_read(buf, sizeof(buf), 4);
    const char *want =
        "*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"
        "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$8\r\nreturn 1\r\n"
        "*5\r\n$7\r\nEVALSHA\r\n$40\r\ne0e1f9fabfc9d4800c877a703b823ac0578ff8db\r\n"
        "$1\r\n1\r\n$3\r\nkey\r\n$2\r\n10\r\n";
    ok(len > strlen(want) && memcmp(buf, want, strlen(want)) == 0, "prelude then EVALSHA");

    /* NOSCRIPT for the first: it is sent again as EVAL and answered after the
     * second, whose reply arrives in between */
    server_send("+OK\r\n$40\r\ne0e1f9fabfc9d4800c877a703b823ac0578ff8db\r\n"
                "-NOSCRIPT No matching script\r\n:22\r\n");
    len = server_read(buf, sizeof(buf), 1);
    const char *eval = "*5\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n1\r\n$3\r\nkey\r\n$2\r\n10\r\n";
    is_strn(buf, len, eval, "NOSCRIPT: the same command as EVAL");
    ok(r2.calls == 1 && r2.integer == 22 && r1.calls == 0, "second answered first");
    server_send(":11\r\n");
    for (int i = 0; i < 100 && r1.calls == 0; i++)
        pt_loop_once(5);
    ok(r1.calls == 1 && r1.integer == 11 && r1.order > r2.order, "first answered after EVAL");

    /* an error reply: NULL to the caller, the connection stays */
    result_t r3 = { 0 };
    pt_redis_eval(rd, 3, ev, on_reply, &r3);
    server_read(buf, sizeof(buf), 1);
    server_send("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    for (int i = 0; i < 100 && r3.calls == 0; i++)
        pt_loop_once(5);
    ok(r3.calls == 1 && r3.got_null, "error reply: NULL");
    ok(rd->state == RD_UP && rd->bad, "still connected, problem noted");

    /* a cancelled command's reply is dropped; the next one gets its own */
    result_t r4 = { 0 }, r5 = { 0 };
    pt_redis_cancel(pt_redis_eval(rd, 3, ev, on_reply, &r4));
    pt_redis_eval(rd, 3, ev, on_reply, &r5);
    server_read(buf, sizeof(buf), 2);
    server_send(":4\r\n:5\r\n");
    for (int i = 0; i < 100 && r5.calls == 0; i++)
        pt_loop_once(5);
    ok(r4.calls == 0 && r5.calls == 1 && r5.integer == 5, "cancelled reply dropped");
    ok(!rd->bad, "a good reply clears the problem");

    /* no reply within the timeout: NULL, connection closed, back-off */
    result_t r6 = { 0 };
    pt_redis_eval(rd, 3, ev, on_reply, &r6);
    server_read(buf, sizeof(buf), 1);
    int64_t t0 = pt_current_msec;
    for (int i = 0; i < 400 && r6.calls == 0; i++)
        pt_loop_once(5);
    ok(r6.calls == 1 && r6.got_null, "timeout: NULL");
    ok(pt_current_msec - t0 >= 300 - PT_TIMER_LAZY_MS, "not before the timeout");
    ok(rd->state == RD_DOWN && rd->io.fd < 0, "connection closed");
    result_t r7 = { 0 };
    ok(pt_redis_eval(rd, 3, ev, on_reply, &r7) == NULL, "back-off: NULL at once");
    server_close();

    /* after the back-off: a new connection; garbage fails it */
    spin(rd->backoff + 20);
    result_t r8 = { 0 };
    ok(pt_redis_eval(rd, 3, ev, on_reply, &r8) != NULL, "reconnects after the back-off");
    ok(server_accept() >= 0, "accepted again");
    server_read(buf, sizeof(buf), 3);
    server_send("+OK\r\n+sha\r\n!garbage\r\n");
    for (int i = 0; i < 100 && r8.calls == 0; i++)
        pt_loop_once(5);
    ok(r8.calls == 1 && r8.got_null && rd->state == RD_DOWN, "protocol error: NULL, closed");
    server_close();

    /* refused (nobody listening): NULL at once, no callback */
    close(lfd);
    unlink(sock_path);
    spin(rd->backoff + 20);
    result_t r9 = { 0 };
    ok(pt_redis_eval(rd, 3, ev, on_reply, &r9) == NULL && r9.calls == 0, "refused: NULL");

    pt_redis_destroy(rd);
}

int main(void)
{
    if (pt_loop_init(64) != 0) {
        printf("Bail out! pt_loop_init failed\n");
        return 1;
    }
    subtest("encode", test_encode);
    subtest("parse", test_parse);
    subtest("conf", test_conf);
    subtest("client", test_client);
    pt_loop_done();
    return done_testing();
}
