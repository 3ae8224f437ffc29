/* Unit tests for src/http/server_name.c and the listen side of http_core.c:
 * nginx's virtual server precedence, default servers, conflicts and listen
 * errors, through the real parser. */
#include "core_test.h"

/* The addr conf serving text on listening socket ls_text. */
static pt_http_addr_conf_t *addr_conf(const char *ls_text, const char *addr_text)
{
    pt_listening_t *ls = t_listening(ls_text);
    if (ls == NULL)
        return NULL;
    pt_http_port_t *port = ls->servers;
    for (unsigned i = 0; i < port->naddrs; i++) {
        if (strcmp(port->addrs[i].addr_text, addr_text) == 0)
            return &port->addrs[i];
    }
    return NULL;
}

/* $server_name of the server host goes to. */
static const char *who(pt_http_addr_conf_t *ac, const char *host)
{
    static char buf[4][128];
    static int n;
    char *b = buf[n++ % 4];
    pt_str_t h = S(host);
    pt_http_request_t r;
    memset(&r, 0, sizeof(r));
    r.pool = T.pool;
    r.main_conf = T.cycle.http_ctx->main_conf;
    pt_http_core_srv_conf_t *cscf = pt_http_find_server(ac, &h, &r);
    snprintf(b, sizeof(buf[0]), "%.*s", (int) cscf->server_name.len, cscf->server_name.data);
    return b;
}

static void test_precedence(void)
{
    int ok_;
    const char *err = t_load(
        "http {\n"
        " server { listen 127.0.0.1:8080; server_name first; }\n"
        " server { listen 127.0.0.1:8080; server_name Example.COM www.example.com; }\n"
        " server { listen 127.0.0.1:8080; server_name *.example.com; }\n"
        " server { listen 127.0.0.1:8080; server_name *.a.example.com; }\n"
        " server { listen 127.0.0.1:8080; server_name www.example.*; }\n"
        " server { listen 127.0.0.1:8080; server_name www.*; }\n"
        " server { listen 127.0.0.1:8080; server_name ~^(\\w+)\\.example\\.org$ ~^www\\.; }\n"
        " server { listen 127.0.0.1:8080 default_server; server_name dflt; }\n"
        " server { listen 127.0.0.1:8080; server_name .dot.net; }\n"
        " server { listen 127.0.0.1:8080; server_name \"\"; }\n"
        " server { listen 127.0.0.1:8080; server_name ~^.*\\.example\\.com$; }\n"
        "}\n", &ok_);
    ok(ok_, "config loads");
    if (!ok_) {
        note("%s", err);
        return;
    }
    pt_http_addr_conf_t *ac = addr_conf("127.0.0.1:8080", "127.0.0.1:8080");
    ok(ac != NULL && ac->names != NULL, "address conf with names");
    if (ac == NULL)
        return;
    is_str(ac->default_server->server_name.data, "dflt", "default_server is the default");

    is_str(who(ac, "example.com"), "example.com", "exact (names are lowercased)");
    is_str(who(ac, "www.example.com"), "example.com", "exact beats both wildcards");
    is_str(who(ac, "foo.example.com"), "*.example.com", "leading wildcard beats the regex");
    is_str(who(ac, "x.a.example.com"), "*.a.example.com", "longest leading wildcard");
    is_str(who(ac, "a.example.com"), "*.example.com", "*.a.example.com needs a subdomain");
    is_str(who(ac, "www.example.org"), "www.example.*", "trailing wildcard beats regex");
    is_str(who(ac, "www.example.co.uk"), "www.example.*", "longest trailing wildcard");
    is_str(who(ac, "www.foo.org"), "www.*", "shorter trailing wildcard");
    is_str(who(ac, "foo.example.org"), "~^(\\w+)\\.example\\.org$", "regex");
    is_str(who(ac, "nothing.test"), "dflt", "no match: default server");
    is_str(who(ac, "dot.net"), "dot.net", ".dot.net matches the bare name ($server_name without dot)");
    is_str(who(ac, "a.b.dot.net"), "dot.net", ".dot.net matches subdomains");
    is_str(who(ac, "xdot.net"), "dflt", "but not other names ending the same");
    is_str(who(ac, ""), "", "empty Host: server_name \"\"");
    is_str(who(ac, "first"), "first", "first server by name");

    /* captures of a regex server name */
    pt_str_t h = S("bob.example.org");
    pt_http_request_t r;
    memset(&r, 0, sizeof(r));
    r.pool = T.pool;
    r.main_conf = T.cycle.http_ctx->main_conf;
    pt_http_find_server(ac, &h, &r);
    ok(r.captures && r.ncaptures >= 2, "regex captures stored");
    if (r.captures && r.ncaptures >= 2)
        is_strn(h.data + r.captures[2], (size_t) (r.captures[3] - r.captures[2]), "bob", "$1");
    ok(pt_http_find_server(ac, &h, NULL) != NULL, "no request (SNI): still found");
}

static void test_default_server(void)
{
    int ok_;
    const char *err = t_load(
        "http {\n"
        " server { listen 127.0.0.1:8081; server_name x; }\n"
        " server { listen 127.0.0.1:8081; server_name y; }\n"
        " server { listen 127.0.0.1:8082; server_name y; }\n"
        " server { listen 127.0.0.1:8082 default_server; server_name z; }\n"
        " server { listen 127.0.0.1:8083; server_name only; }\n"
        "}\n", &ok_);
    ok(ok_, "config loads");
    if (!ok_) {
        note("%s", err);
        return;
    }
    pt_http_addr_conf_t *a1 = addr_conf("127.0.0.1:8081", "127.0.0.1:8081");
    pt_http_addr_conf_t *a2 = addr_conf("127.0.0.1:8082", "127.0.0.1:8082");
    pt_http_addr_conf_t *a3 = addr_conf("127.0.0.1:8083", "127.0.0.1:8083");
    ok(a1 && a2 && a3, "three addresses");
    if (!(a1 && a2 && a3))
        return;
    is_str(who(a1, "unknown"), "x", "no default_server: the first server of the address");
    is_str(who(a1, "y"), "y", "name on 8081");
    is_str(who(a2, "x"), "z", "x does not listen on 8082: default_server");
    is_str(who(a2, "y"), "y", "same name on another address: no conflict");
    ok(a3->names == NULL, "single server: no lookup structure");
    is_str(who(a3, "anything"), "only", "single server takes everything");
}

static void test_listen_grouping(void)
{
    int ok_;
    const char *err = t_load(
        "http {\n"
        " server { listen 8090; server_name wild; }\n"
        " server { listen 127.0.0.1:8090; server_name spec; }\n"
        " server { listen 127.0.0.2:8090 bind; server_name bound; }\n"
        " server { listen [::1]:8090 ipv6only=on; server_name six; }\n"
        " server { listen unix:/tmp/pt-test.sock; server_name unix; }\n"
        " server { server_name nolisten; }\n"
        " server { listen 8091 ssl http2 reuseport backlog=100 rcvbuf=64k sndbuf=32k deferred; }\n"
        "}\n", &ok_);
    ok(ok_, "config loads");
    if (!ok_) {
        note("%s", err);
        return;
    }
    ok(t_contains(err, "the \"listen ... http2\" directive is deprecated"), "http2 warning");
    pt_listening_t *w = t_listening("0.0.0.0:8090");
    ok(w != NULL, "wildcard socket");
    ok(t_listening("127.0.0.1:8090") == NULL, "specific address folded into the wildcard socket");
    ok(t_listening("127.0.0.2:8090") != NULL, "bind: own socket");
    ok(t_listening("[::1]:8090") != NULL, "IPv6 own socket (other family)");
    ok(t_listening("unix:/tmp/pt-test.sock") != NULL, "unix socket");
    if (w) {
        pt_http_port_t *port = w->servers;
        is_int(port->naddrs, 2, "wildcard socket serves 2 addresses");
        is_str(port->addrs[0].addr_text, "127.0.0.1:8090", "specific first");
        is_str(port->addrs[1].addr_text, "0.0.0.0:8090", "wildcard last");
        is_str(port->addrs[0].default_server->server_name.data, "spec", "its own default");
        ok(w->handler == pt_http_init_connection, "handler is the http connection handler");
    }
    const char *dflt = getuid() == 0 ? "0.0.0.0:80" : "0.0.0.0:8000";
    pt_listening_t *d = t_listening(dflt);
    ok(d != NULL, "server without listen: %s", dflt);
    if (d) {
        pt_http_port_t *port = d->servers;
        is_str(port->addrs[0].default_server->server_name.data, "nolisten", "its server");
    }
    pt_listening_t *o = t_listening("0.0.0.0:8091");
    ok(o != NULL, "8091");
    if (o) {
        is_int(o->backlog, 100, "backlog");
        is_int(o->rcvbuf, 65536, "rcvbuf");
        is_int(o->sndbuf, 32768, "sndbuf");
        ok(o->ssl && o->http2 && o->reuseport && o->deferred, "ssl http2 reuseport deferred");
    }
    if (w)
        is_int(w->backlog, 511, "default backlog");
}

static void test_listen_errors(void)
{
    static const struct {
        const char *conf;
        const char *msg;
    } cases[] = {
        { " server { listen 127.0.0.1:99999; }\n",
          "[emerg] invalid port in \"127.0.0.1:99999\" of the \"listen\" directive in " },
        { " server { listen 80 foo; }\n", "[emerg] invalid parameter \"foo\" in " },
        { " server { listen 80 backlog=x; }\n", "[emerg] invalid backlog \"backlog=x\"" },
        { " server { listen 80 rcvbuf=zz; }\n", "[emerg] invalid rcvbuf \"rcvbuf=zz\"" },
        { " server { listen [::]:80 ipv6only=oops; }\n", "[emerg] invalid ipv6only flags \"oops\"" },
        { " server { listen [::]:80 ipv6only=maybe; }\n", "[emerg] invalid parameter \"ipv6only=maybe\"" },
        { " server { listen 80 so_keepalive=x:y; }\n", "[emerg] invalid so_keepalive value: \"x:y\"" },
        { " server { listen 443 quic ssl; }\n",
          "\"listen\" directive \"ssl\" parameter is incompatible with \"quic\"" },
        { " server { listen 127.0.0.1:80 default_server; }\n"
          " server { listen 127.0.0.1:80 default_server; }\n",
          "[emerg] a duplicate default server for 127.0.0.1:80 in " },
        { " server { listen 127.0.0.1:80; listen 127.0.0.1:80; }\n",
          "[emerg] a duplicate listen 127.0.0.1:80 in " },
        { " server { listen 127.0.0.1:80 backlog=5; }\n"
          " server { listen 127.0.0.1:80 rcvbuf=8k; }\n",
          "[emerg] duplicate listen options for 127.0.0.1:80 in " },
        { " server { server_name *; }\n", "[emerg] server name \"*\" is invalid" },
        { " server { listen 81; }\n server { listen 81; server_name www.*.example.com; }\n",
          "[emerg] invalid server name or wildcard \"www.*.example.com\" on 0.0.0.0:81" },
        { " server { listen 81; server_name a; }\n server { listen 81; server_name a..b; }\n",
          "[emerg] invalid server name or wildcard \"a..b\" on 0.0.0.0:81" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text), "http {\n%s}\n", cases[i].conf);
        int ok_;
        const char *err = t_load(text, &ok_);
        ok(!ok_ && t_contains(err, cases[i].msg), "error: %s", cases[i].msg);
        if (!t_contains(err, cases[i].msg))
            note("got: %s", err);
    }

    /* accepted forms */
    static const char *const good[] = {
        " server { listen 8080 default bind fastopen=10; }\n",
        " server { listen [::]:8080 ipv6only=off so_keepalive=30m::10; }\n",
        " server { listen *:8080 proxy_protocol so_keepalive=on; }\n",
        " server { listen 443 quic reuseport; listen 443 ssl; }\n",
        " server { listen localhost:8080; server_name $hostname; }\n",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text), "http {\n%s}\n", good[i]);
        int ok_;
        const char *err = t_load(text, &ok_);
        ok(ok_, "accepted: %.*s", (int) strlen(good[i]) - 1, good[i]);
        if (!ok_)
            note("got: %s", err);
    }
}

static void test_conflicts(void)
{
    int ok_;
    const char *err = t_load(
        "http {\n"
        " server { listen 127.0.0.1:8080; server_name a.com; }\n"
        " server { listen 127.0.0.1:8080; server_name a.com b.com; }\n"
        " server { listen 127.0.0.1:8080; server_name *.c.com; }\n"
        " server { listen 127.0.0.1:8080; server_name .c.com; }\n"
        " server { listen 127.0.0.1:8080; server_name d.com; }\n"
        " server { listen 127.0.0.1:8080; server_name .d.com; }\n"
        "}\n", &ok_);
    ok(ok_, "conflicts are warnings");
    ok(t_contains(err, "[warn] conflicting server name \"a.com\" on 127.0.0.1:8080, ignored"),
       "exact conflict warned");
    ok(t_contains(err, "[warn] conflicting server name \".c.com\" on 127.0.0.1:8080, ignored"),
       ".c.com conflicts with *.c.com");
    ok(t_contains(err, "[warn] conflicting server name \".d.com\" on 127.0.0.1:8080, ignored"),
       ".d.com conflicts with d.com");
    if (!ok_)
        return;
    pt_http_addr_conf_t *ac = addr_conf("127.0.0.1:8080", "127.0.0.1:8080");
    is_str(who(ac, "a.com"), "a.com", "the first server keeps the name");
    is_str(who(ac, "b.com"), "a.com", "the second server's other names still work");
    is_str(who(ac, "c.com"), "a.com", "ignored .c.com does not match c.com (default)");
    is_str(who(ac, "x.c.com"), "*.c.com", "*.c.com kept");
}

int main(void)
{
    t_make_dir();
    subtest("precedence", test_precedence);
    subtest("default server", test_default_server);
    subtest("listen grouping", test_listen_grouping);
    subtest("listen errors", test_listen_errors);
    subtest("conflicts", test_conflicts);
    if (t_loaded)
        t_teardown(&T);
    t_remove_dir();
    return done_testing();
}
