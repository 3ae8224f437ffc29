/* TLS to upstreams (pt_tls_upstream_connect, src/tls/tls.c) against a real
 * `openssl s_server`: handshake on the event loop, certificate verification
 * with proxy_ssl_trusted_certificate and the expected name, a wrong name
 * refused, verification off accepting it, session reuse on the second
 * connection, I/O through c->send / c->recv afterwards. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/conf.h"
#include "core/loop.h"
#include "core/time.h"
#include "net/conn.h"
#include "tls/tls.h"

#include <openssl/ssl.h>

#include "tap.h"

static int done_rc = 99;
static char dir[] = "/tmp/pt_tls_up_XXXXXX";
static int port;
static pid_t server;

static void on_done(pt_conn_t *c, int rc)
{
    done_rc = rc;
}

static pt_conn_t *dial(void)
{
    struct sockaddr_in sin;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t) port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) != 0 && errno != EINPROGRESS)
        return NULL;
    pt_conn_t *c = pt_conn_get(fd, pt_log_default);
    if (c) {
        /* wait for the TCP connect */
        for (int i = 0; i < 100 && !c->io.write.ready; i++)
            pt_loop_once(20);
    }
    return c;
}

static int run(pt_tls_upstream_conf_t *uc, const char *host, pt_conn_t **out)
{
    pt_str_t h = { strlen(host), (char *) host };
    pt_conn_t *c = dial();
    if (c == NULL)
        return 98;
    done_rc = 99;
    pt_tls_upstream_connect(c, uc, &h, on_done);
    for (int i = 0; i < 200 && done_rc == 99; i++)
        pt_loop_once(20);
    if (out && done_rc == 0)
        *out = c;
    else
        pt_conn_close(c);
    return done_rc;
}

static void conf_for(pt_conf_t *cf, pt_tls_upstream_conf_t *uc, int verify, const char *name)
{
    static pt_tls_upstream_conf_t prev;
    static char ca[256];
    pt_tls_upstream_conf_create(&prev);
    pt_tls_upstream_conf_create(uc);
    uc->verify = verify;
    if (verify) {
        snprintf(ca, sizeof(ca), "%s/c.pem", dir);
        uc->trusted_certificate.data = ca;
        uc->trusted_certificate.len = strlen(ca);
    }
    if (name) {
        uc->name.data = (char *) name;
        uc->name.len = strlen(name);
    }
    uc->server_name = 1;
    pt_tls_upstream_conf_merge(uc, &prev);
    if (pt_tls_upstream_conf_init(cf, uc) != 0)
        printf("# conf init failed\n");
}

int main(void)
{
    char cmd[1024];
    pt_conf_t cf;
    pt_tls_upstream_conf_t uc;
    pt_conn_t *c = NULL;

    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -keyout %s/k.pem -out %s/c.pem -days 2 -subj /CN=backend.test "
             "-addext subjectAltName=DNS:backend.test >/dev/null 2>&1", dir, dir);
    if (system(cmd) != 0) {
        printf("1..0 # SKIP openssl CLI not available\n");
        return 0;
    }
    port = 20000 + (int) (getpid() % 20000);
    server = fork();
    if (server == 0) {
        char p[16], cert[256], key[256];
        snprintf(p, sizeof(p), "%d", port);
        snprintf(cert, sizeof(cert), "%s/c.pem", dir);
        snprintf(key, sizeof(key), "%s/k.pem", dir);
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execlp("openssl", "openssl", "s_server", "-quiet", "-accept", p, "-cert", cert,
               "-key", key, "-www", (char *) NULL);
        _exit(127);
    }
    usleep(400000);

    pt_time_init();
    pt_loop_init(64);
    pt_conn_table_init(64);
    memset(&cf, 0, sizeof(cf));
    cf.pool = pt_pool_create(4096);
    cf.log = pt_log_default;

    conf_for(&cf, &uc, 1, NULL);
    is_int(run(&uc, "backend.test", &c), 0, "verify on, right name: handshake done");
    if (c) {
        const char req[] = "GET / HTTP/1.0\r\n\r\n";
        char buf[4096];
        ssize_t n = c->send(c, req, sizeof(req) - 1), got = 0;
        ok(n == (ssize_t) sizeof(req) - 1, "request written through TLS");
        for (int i = 0; i < 100 && got <= 0; i++) {
            c->io.read.ready = 1;
            got = c->recv(c, buf, sizeof(buf) - 1);
            if (got == PT_IO_AGAIN)
                pt_loop_once(20);
        }
        ok(got > 0 && memcmp(buf, "HTTP/1.0 200", 12) == 0, "response read through TLS");
        pt_conn_close(c);
        c = NULL;
    }
    ok(uc.session != NULL, "session kept for reuse");
    is_int(run(&uc, "backend.test", &c), 0, "second connection");
    if (c) {
        ok(SSL_session_reused(c->ssl), "resumed the saved session");
        pt_conn_close(c);
        c = NULL;
    }
    is_int(run(&uc, "wrong.test", NULL), -1, "verify on, wrong name: refused");

    pt_tls_upstream_conf_t uc2;
    conf_for(&cf, &uc2, 1, "backend.test");
    is_int(run(&uc2, "10.0.0.1:8443", NULL), 0, "proxy_ssl_name overrides the host");

    pt_tls_upstream_conf_t uc3;
    conf_for(&cf, &uc3, 0, NULL);
    is_int(run(&uc3, "wrong.test", NULL), 0, "verify off: any name accepted");

    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void) system(cmd);
    pt_pool_destroy(cf.pool);
    return done_testing();
}
