/* Listening addresses: parsing (the listen directive's forms), formatting,
 * equality, the listening array, and binding/closing a socket. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "net/listen.h"
#include "core/pool.h"

typedef struct {
    const char *in;
    int         default_port;
    int         ok;
    int         family;
    const char *text;     /* pt_sockaddr_text with port, when ok */
    const char *err;      /* expected reason, when !ok */
} addr_case_t;

static const addr_case_t cases[] = {
    { "80",                80, 1, AF_INET,  "0.0.0.0:80", NULL },
    { "8080",              80, 1, AF_INET,  "0.0.0.0:8080", NULL },
    { "127.0.0.1:8080",    80, 1, AF_INET,  "127.0.0.1:8080", NULL },
    { "127.0.0.1",         80, 1, AF_INET,  "127.0.0.1:80", NULL },
    { "*:80",              80, 1, AF_INET,  "0.0.0.0:80", NULL },
    { "*",                 80, 1, AF_INET,  "0.0.0.0:80", NULL },
    { "[::1]:443",         80, 1, AF_INET6, "[::1]:443", NULL },
    { "[::]:8443",         80, 1, AF_INET6, "[::]:8443", NULL },
    { "[::1]",             80, 1, AF_INET6, "[::1]:80", NULL },
    { "[2001:db8::5]:1",   80, 1, AF_INET6, "[2001:db8::5]:1", NULL },
    { "unix:/tmp/x.sock",  80, 1, AF_UNIX,  "unix:/tmp/x.sock", NULL },
    { "65535",             80, 1, AF_INET,  "0.0.0.0:65535", NULL },
    { "0",                 80, 0, 0, NULL, "invalid port" },
    { "65536",             80, 0, 0, NULL, "invalid port" },
    { "99999999999",       80, 0, 0, NULL, "invalid port" },
    { "127.0.0.1:",        80, 0, 0, NULL, "invalid port" },
    { "127.0.0.1:0",       80, 0, 0, NULL, "invalid port" },
    { "127.0.0.1:abc",     80, 0, 0, NULL, "invalid port" },
    { "127.0.0.1:-1",      80, 0, 0, NULL, "invalid port" },
    { "127.0.0.1:70000",   80, 0, 0, NULL, "invalid port" },
    { "[::1]:0",           80, 0, 0, NULL, "invalid port" },
    { "[::1]:",            80, 0, 0, NULL, "invalid port" },
    { "[::1",              80, 0, 0, NULL, "invalid IPv6 address" },
    { "[zz::1]:80",        80, 0, 0, NULL, "invalid IPv6 address" },
    { "[::1]x",            80, 0, 0, NULL, "invalid host" },
    { "::1:80",            80, 0, 0, NULL, "invalid host" },
    { ":80",               80, 0, 0, NULL, "no host" },
    { "127.0.0.1",          0, 0, 0, NULL, "no port" },
    { "unix:",             80, 0, 0, NULL, "no path in the unix domain socket" },
    { "",                  80, 0, 0, NULL, "invalid address" },
};

static void test_parse_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const addr_case_t *t = &cases[i];
        pt_sockaddr_t sa;
        socklen_t len = 0;
        const char *err = NULL;
        int rc = pt_sockaddr_parse(t->in, strlen(t->in), t->default_port, &sa, &len, &err);

        if (t->ok) {
            char text[160];
            if (!ok(rc == 0, "\"%s\" parses", t->in)) {
                note("error: %s", err ? err : "(none)");
                continue;
            }
            is_int(sa.sa.sa_family, t->family, "family");
            pt_sockaddr_text(&sa.sa, len, text, sizeof(text), 1);
            is_str(text, t->text, "text with port");
        } else {
            ok(rc == -1, "\"%s\" is refused", t->in);
            is_str(err, t->err, "reason");
        }
    }
}

static void test_unix_too_long(void)
{
    char buf[300] = "unix:/";
    memset(buf + 6, 'a', 200);
    buf[206] = '\0';
    pt_sockaddr_t sa;
    socklen_t len;
    const char *err = NULL;
    ok(pt_sockaddr_parse(buf, strlen(buf), 80, &sa, &len, &err) == -1, "long unix path refused");
    is_str(err, "too long path in the unix domain socket", "reason");
}

static void test_localhost(void)
{
    pt_sockaddr_t sa;
    socklen_t len;
    const char *err = NULL;
    int rc = pt_sockaddr_parse("localhost:8080", 14, 80, &sa, &len, &err);
    ok(rc == 0, "localhost resolves");
    if (rc == 0) {
        ok(sa.sa.sa_family == AF_INET || sa.sa.sa_family == AF_INET6, "to an IP address");
        is_int(ntohs(sa.sa.sa_family == AF_INET ? sa.sin.sin_port : sa.sin6.sin6_port), 8080,
               "port kept");
    }
}

static void test_text_without_port(void)
{
    pt_sockaddr_t sa;
    socklen_t len;
    char text[160];

    pt_sockaddr_parse("10.1.2.3:99", 11, 80, &sa, &len, NULL);
    pt_sockaddr_text(&sa.sa, len, text, sizeof(text), 0);
    is_str(text, "10.1.2.3", "ipv4 without port");
    pt_sockaddr_parse("[::1]:99", 8, 80, &sa, &len, NULL);
    pt_sockaddr_text(&sa.sa, len, text, sizeof(text), 0);
    is_str(text, "::1", "ipv6 without port, no brackets");

    /* an unnamed unix peer (what accept() returns for a client) */
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    pt_sockaddr_text((struct sockaddr *) &sun, sizeof(sa_family_t), text, sizeof(text), 0);
    is_str(text, "unix:", "unnamed unix peer");

    /* truncation keeps a NUL */
    char small[6];
    pt_sockaddr_parse("127.0.0.1:80", 12, 80, &sa, &len, NULL);
    size_t n = pt_sockaddr_text(&sa.sa, len, small, sizeof(small), 1);
    is_int(n, 5, "truncated length");
    is_str(small, "127.0", "truncated text");
}

static void test_text_ipv4_matches_inet_ntop(void)
{
    static const char *addrs[] = { "0.0.0.0", "1.2.3.4", "9.10.99.100", "127.0.0.1",
                                   "192.168.255.254", "255.255.255.255", "10.0.100.7" };
    static const unsigned ports[] = { 1, 9, 10, 80, 443, 8080, 65535 };
    int same = 1;

    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        for (size_t k = 0; k < sizeof(ports) / sizeof(ports[0]); k++) {
            struct sockaddr_in sin;
            char want[64], host[INET_ADDRSTRLEN], got[64], bare[64];
            memset(&sin, 0, sizeof(sin));
            sin.sin_family = AF_INET;
            sin.sin_port = htons((uint16_t) ports[k]);
            inet_pton(AF_INET, addrs[i], &sin.sin_addr);
            inet_ntop(AF_INET, &sin.sin_addr, host, sizeof(host));
            snprintf(want, sizeof(want), "%s:%u", host, ports[k]);
            size_t n = pt_sockaddr_text((struct sockaddr *) &sin, sizeof(sin), got,
                                        sizeof(got), 1);
            size_t m = pt_sockaddr_text((struct sockaddr *) &sin, sizeof(sin), bare,
                                        sizeof(bare), 0);
            if (strcmp(got, want) != 0 || n != strlen(want) || strcmp(bare, host) != 0
                || m != strlen(host)) {
                note("%s: got \"%s\" / \"%s\"", want, got, bare);
                same = 0;
            }
        }
    }
    ok(same, "ipv4 text as inet_ntop writes it, with and without port");
}

static void test_reuseport_sockets(void)
{
    pt_listening_t ls;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* a plain socket first: reconfigure adds SO_REUSEPORT, then siblings bind */
    memset(&ls, 0, sizeof(ls));
    memcpy(&ls.addr, &sin, sizeof(sin));
    ls.socklen = sizeof(sin);
    ls.backlog = 511;
    ls.rcvbuf = ls.sndbuf = -1;
    strcpy(ls.addr_text, "127.0.0.1:ephemeral");
    ok(pt_listening_open(&ls, NULL) == 0, "plain listener");
    socklen_t sl = sizeof(sin);
    getsockname(ls.fd, (struct sockaddr *) &ls.addr, &sl);
    ls.reuseport = 1;
    ok(pt_listening_open_fd(&ls, NULL) == -1, "no sibling while the first lacks SO_REUSEPORT");
    ok(pt_listening_reconfigure(&ls, NULL, ls.fd, 1, NULL) == 0, "SO_REUSEPORT added");
    int fds[3] = { ls.fd, -1, -1 };
    fds[1] = pt_listening_open_fd(&ls, NULL);
    fds[2] = pt_listening_open_fd(&ls, NULL);
    ok(fds[1] >= 0 && fds[2] >= 0, "two siblings bound to the same port");
    ls.worker_fds = fds;
    ls.nworker_fds = 3;

    /* worker 1's view: its own socket only */
    pt_pool_t *pool = pt_pool_create(4096);
    pt_array_t arr;
    pt_array_init(&arr, pool, 1, sizeof(pt_listening_t));
    pt_listening_t *w = pt_array_push(&arr);
    *w = ls;
    int mine = fds[1];
    pt_listening_select_worker(&arr, 1);
    is_int(w->fd, mine, "worker 1 keeps socket 1");
    ok(w->worker_fds == NULL && w->nworker_fds == 0, "and forgets the others");
    ok(fcntl(fds[0], F_GETFD) == -1 && fcntl(fds[2], F_GETFD) == -1, "whose copies it closed");
    ok(fcntl(mine, F_GETFD) != -1, "its own stays open");
    close(mine);
    pt_pool_destroy(pool);
}

static void test_eq(void)
{
    pt_sockaddr_t a, b;
    socklen_t al, bl;

    pt_sockaddr_parse("127.0.0.1:80", 12, 80, &a, &al, NULL);
    pt_sockaddr_parse("127.0.0.1", 9, 80, &b, &bl, NULL);
    ok(pt_sockaddr_eq(&a.sa, al, &b.sa, bl), "same address, port defaulted");
    pt_sockaddr_parse("127.0.0.1:81", 12, 80, &b, &bl, NULL);
    ok(!pt_sockaddr_eq(&a.sa, al, &b.sa, bl), "other port");
    pt_sockaddr_parse("127.0.0.2:80", 12, 80, &b, &bl, NULL);
    ok(!pt_sockaddr_eq(&a.sa, al, &b.sa, bl), "other address");
    pt_sockaddr_parse("[::1]:80", 8, 80, &b, &bl, NULL);
    ok(!pt_sockaddr_eq(&a.sa, al, &b.sa, bl), "other family");
    pt_sockaddr_parse("[::1]:80", 8, 80, &a, &al, NULL);
    ok(pt_sockaddr_eq(&a.sa, al, &b.sa, bl), "same ipv6");
    pt_sockaddr_parse("unix:/tmp/a", 11, 80, &a, &al, NULL);
    pt_sockaddr_parse("unix:/tmp/a", 11, 80, &b, &bl, NULL);
    ok(pt_sockaddr_eq(&a.sa, al, &b.sa, bl), "same unix path");
    pt_sockaddr_parse("unix:/tmp/b", 11, 80, &b, &bl, NULL);
    ok(!pt_sockaddr_eq(&a.sa, al, &b.sa, bl), "other unix path");
}

static void test_listening_add(void)
{
    pt_pool_t *pool = pt_pool_create(4096);
    pt_array_t ls;
    pt_array_init(&ls, pool, 1, sizeof(pt_listening_t));
    pt_sockaddr_t sa;
    socklen_t len;

    pt_sockaddr_parse("127.0.0.1:20101", 15, 80, &sa, &len, NULL);
    pt_listening_t *a = pt_listening_add(&ls, &sa.sa, len);
    ok(a != NULL, "added");
    is_int(a->fd, -1, "fd -1");
    is_int(a->backlog, 511, "backlog 511");
    is_int(a->rcvbuf, -1, "rcvbuf unset");
    ok(a->ipv6only, "ipv6only on");
    is_str(a->addr_text, "127.0.0.1:20101", "addr_text");

    pt_sockaddr_parse("[::1]:20101", 11, 80, &sa, &len, NULL);
    pt_listening_add(&ls, &sa.sa, len);
    pt_sockaddr_parse("127.0.0.1:20101", 15, 80, &sa, &len, NULL);
    pt_listening_t *again = pt_listening_add(&ls, &sa.sa, len);
    is_int(ls.nelts, 2, "same address not added twice");
    ok(again == &pt_array_at(&ls, pt_listening_t, 0), "returns the existing record");
    pt_pool_destroy(pool);
}

static void test_open_close(void)
{
    pt_pool_t *pool = pt_pool_create(4096);
    pt_array_t arr;
    pt_array_init(&arr, pool, 2, sizeof(pt_listening_t));

    /* TCP on an ephemeral port */
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    pt_listening_t *ls = pt_listening_add(&arr, (struct sockaddr *) &sin, sizeof(sin));
    ok(pt_listening_open(ls, NULL) == 0, "tcp listener opens");
    ok(ls->fd >= 0, "fd set");
    int fl = fcntl(ls->fd, F_GETFL);
    ok(fl >= 0 && (fl & O_NONBLOCK), "nonblocking");
    ok((fcntl(ls->fd, F_GETFD) & FD_CLOEXEC) != 0, "close-on-exec");
    pt_listening_close(ls);
    is_int(ls->fd, -1, "closed");

    /* unix: a stale socket file left by a crash is replaced */
    char path[64];
    snprintf(path, sizeof(path), "/tmp/pt-test-listen-%d.sock", (int) getpid());
    char spec[80];
    snprintf(spec, sizeof(spec), "unix:%s", path);
    pt_sockaddr_t sa;
    socklen_t len;
    pt_sockaddr_parse(spec, strlen(spec), 0, &sa, &len, NULL);
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    ok(bind(stale, &sa.sa, len) == 0, "stale socket file created");
    close(stale);
    ls = pt_listening_add(&arr, &sa.sa, len);
    ok(pt_listening_open(ls, NULL) == 0, "unix listener opens over a stale file");
    struct stat st;
    ok(stat(path, &st) == 0 && S_ISSOCK(st.st_mode), "socket file exists");
    pt_listening_close(ls);
    ok(stat(path, &st) != 0 && errno == ENOENT, "socket file removed on close");

    /* a regular file in the way is not removed */
    FILE *f = fopen(path, "w");
    fclose(f);
    ls->fd = -1;
    ok(pt_listening_open(ls, NULL) == -1, "bind over a regular file fails");
    ok(stat(path, &st) == 0 && S_ISREG(st.st_mode), "the regular file is left alone");
    unlink(path);

    /* address in use */
    pt_listening_t a, b;
    memset(&a, 0, sizeof(a));
    memcpy(&a.addr, &sin, sizeof(sin));
    a.socklen = sizeof(sin);
    a.backlog = 511;
    a.rcvbuf = a.sndbuf = -1;
    strcpy(a.addr_text, "127.0.0.1:ephemeral");
    ok(pt_listening_open(&a, NULL) == 0, "first bind");
    socklen_t sl = sizeof(sin);
    getsockname(a.fd, (struct sockaddr *) &a.addr, &sl);
    b = a;
    b.fd = -1;
    ok(pt_listening_open(&b, NULL) == -1, "second bind to the same port fails");
    pt_listening_close(&a);
    pt_pool_destroy(pool);
}

int main(void)
{
    subtest("parse table", test_parse_table);
    subtest("unix path length", test_unix_too_long);
    subtest("localhost", test_localhost);
    subtest("text", test_text_without_port);
    subtest("text ipv4", test_text_ipv4_matches_inet_ntop);
    subtest("reuseport sockets", test_reuseport_sockets);
    subtest("eq", test_eq);
    subtest("listening_add", test_listening_add);
    subtest("open/close", test_open_close);
    return done_testing();
}
