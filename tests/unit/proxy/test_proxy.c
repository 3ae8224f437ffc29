/* proxy.c: the URI sent upstream (nginx's proxy_pass rules) and the rebuilt
 * request head (set headers, defaults, hop-by-hop and Connection-listed
 * headers dropped, body framing). Requests are built by hand. */
#include "../../../src/proxy/proxy.c"

#include "tap.h"

static pt_pool_t *pool;
static void *loc_confs[8], *srv_confs[8], *ctxs[8];
static pt_http_core_srv_conf_t cscf;
static proxy_loc_conf_t plcf;
static pt_conn_t conn;

static pt_str_t S(const char *s)
{
    pt_str_t v = { strlen(s), (char *) s };
    return v;
}

static void init_request(pt_http_request_t *r, const char *method, const char *unparsed,
                         const char *uri, const char *args)
{
    memset(r, 0, sizeof(*r));
    r->pool = pool;
    r->connection = &conn;
    r->loc_conf = loc_confs;
    r->srv_conf = srv_confs;
    r->ctx = ctxs;
    r->method_name = S(method);
    r->method = pt_str_eq_lit(&r->method_name, "POST") ? PT_HTTP_POST : PT_HTTP_GET;
    r->unparsed_uri = S(unparsed);
    r->uri = S(uri);
    r->args = S(args);
    if (args[0] == '\0')
        r->args.data = NULL;
    pt_array_init(&r->headers_in.list, pool, 8, sizeof(pt_http_header_t));
    r->headers_in.content_length_n = -1;
}

static void add_in(pt_http_request_t *r, const char *name, const char *value)
{
    pt_http_header_t *h = pt_array_push(&r->headers_in.list);
    h->name = S(name);
    h->value = S(value);
    h->hash = pt_hash_lower(h->name.data, h->name.len);
    if (pt_str_caseeq_lit(&h->name, "connection"))
        r->headers_in.connection = h;
}

typedef struct {
    const char *location;
    int         regex;
    const char *pass_uri;   /* NULL: no URI part */
    const char *unparsed;
    const char *uri;        /* decoded, possibly rewritten */
    const char *args;
    int         internal;
    const char *expect;
} uri_case_t;

static const uri_case_t uri_cases[] = {
    { "/api/", 0, "/", "/api/login", "/api/login", "", 0, "/login" },
    { "/api/", 0, "/", "/api/login?a=1", "/api/login", "a=1", 0, "/login?a=1" },
    { "/api/", 0, NULL, "/api/login?a=1", "/api/login", "a=1", 0, "/api/login?a=1" },
    { "/app/", 0, "/v2/", "/app/x", "/app/x", "", 0, "/v2/x" },
    { "/app", 0, "/v2", "/app/x", "/app/x", "", 0, "/v2/x" },
    { "/", 0, "/base/", "/a%20b", "/a b", "", 0, "/base/a%20b" },
    { "/", 0, NULL, "/a%20b", "/a b", "", 0, "/a%20b" },                /* unparsed kept */
    { "/", 0, NULL, "/a/./b//c", "/a/b/c", "", 0, "/a/./b//c" },        /* still the same */
    { "/", 0, NULL, "/orig", "/rewritten", "", 0, "/rewritten" },       /* rewrite break */
    { "/", 0, NULL, "/x?a=1", "/x", "b=2", 0, "/x?b=2" },               /* args changed */
    { "/", 0, NULL, "/x?q", "/moved/", "q", 1, "/moved/?q" },           /* internal redirect */
    { "/", 0, NULL, "/a%41?q", "/aA", "q", 1, "/a%41?q" },              /* named location */
    { "/name/", 0, "/u/", "/name/bob", "/users", "name=bob", 0, "/u//users?name=bob" },
    { "~ ^/re", 1, NULL, "/re/x?y=1", "/re/x", "y=1", 0, "/re/x?y=1" },
    { "/", 0, "/", "/%3F%23", "/?#", "", 0, "/%3F%23" },                /* re-escaped */
};

static void test_uris(void)
{
    for (size_t i = 0; i < sizeof(uri_cases) / sizeof(uri_cases[0]); i++) {
        const uri_case_t *c = &uri_cases[i];
        pt_http_request_t r;
        init_request(&r, "GET", c->unparsed, c->uri, c->args);
        r.internal = c->internal ? 1 : 0;
        memset(&plcf, 0, sizeof(plcf));
        plcf.location = S(c->location);
        plcf.location_regex = c->regex ? 1 : 0;
        proxy_target_t t;
        memset(&t, 0, sizeof(t));
        if (c->pass_uri) {
            t.uri = S(c->pass_uri);
            t.has_uri = 1;
        }
        pt_str_t out = { 0, NULL };
        int rc = build_uri(&r, &plcf, &t, 0, &out);
        ok(rc == 0 && out.len == strlen(c->expect) && memcmp(out.data, c->expect, out.len) == 0,
           "%s + %s: %s -> %s", c->location, c->pass_uri ? c->pass_uri : "(none)", c->uri, c->expect);
        if (rc != 0 || out.len != strlen(c->expect) || memcmp(out.data, c->expect, out.len) != 0)
            note("got \"%.*s\"", (int) out.len, out.data ? out.data : "");
    }
}

static void set_headers(proxy_loc_conf_t *c, const char *const *kv, size_t n)
{
    c->headers = pt_array_create(pool, n ? n : 1, sizeof(proxy_header_t));
    for (size_t i = 0; i < n; i++) {
        proxy_header_t *h = pt_array_push(c->headers);
        h->name = S(kv[2 * i]);
        h->hash = pt_hash_lower(h->name.data, h->name.len);
        memset(&h->value, 0, sizeof(h->value));
        h->value.source = S(kv[2 * i + 1]);
        h->value.is_literal = 1;
    }
}

static pt_str_t build(pt_http_request_t *r, unsigned mode, int chunked_out, int64_t body_len)
{
    static proxy_target_t t;
    static proxy_ctx_t ctx;
    memset(&t, 0, sizeof(t));
    ctx.target = &t;
    ctxs[pt_http_proxy_module.index] = &ctx;
    pt_upstream_t u;
    memset(&u, 0, sizeof(u));
    u.r = r;
    u.body_mode = mode;
    u.chunked_out = chunked_out ? 1 : 0;
    u.body_len = body_len;
    pt_str_t empty = { 0, NULL };
    if (create_request(&u) != PT_OK)
        return empty;
    return u.request_head;
}

static void test_head(void)
{
    memset(&plcf, 0, sizeof(plcf));
    plcf.http_version = 10;
    plcf.pass_request_headers = 1;
    static const char *const kv[] = { "X-Real-IP", "127.0.0.1", "Host", "backend",
                                      "Connection", "close", "X-Empty", "" };
    set_headers(&plcf, kv, 4);

    pt_http_request_t r;
    init_request(&r, "GET", "/p?q=1", "/p", "q=1");
    add_in(&r, "Host", "front");
    add_in(&r, "Connection", "keep-alive, X-Hop");
    add_in(&r, "X-Hop", "1");
    add_in(&r, "Keep-Alive", "300");
    add_in(&r, "TE", "trailers");
    add_in(&r, "Upgrade", "h2c");
    add_in(&r, "Proxy-Connection", "x");
    add_in(&r, "X-Empty", "client");
    add_in(&r, "Accept", "*/*");
    pt_str_t h = build(&r, PT_UPSTREAM_BODY_NONE, 0, 0);
    is_strn(h.data, h.len,
            "GET /p?q=1 HTTP/1.0\r\nX-Real-IP: 127.0.0.1\r\nHost: backend\r\n"
            "Connection: close\r\nAccept: */*\r\n\r\n",
            "set headers first, hop-by-hop and overridden ones dropped, empty removes");

    init_request(&r, "POST", "/p", "/p", "");
    add_in(&r, "Content-Length", "5");
    add_in(&r, "Expect", "100-continue");
    r.headers_in.content_length_n = 5;
    h = build(&r, PT_UPSTREAM_BODY_STREAM, 0, 0);
    ok(pt_strnstr(h.data, h.len, "Content-Length: 5\r\n", 19) != NULL
       && pt_strnstr(h.data, h.len, "Expect", 6) == NULL, "streamed CL body: Content-Length, no Expect");

    init_request(&r, "POST", "/p", "/p", "");
    add_in(&r, "Transfer-Encoding", "chunked");
    r.headers_in.chunked = 1;
    h = build(&r, PT_UPSTREAM_BODY_BUFFERED, 0, 12);
    ok(pt_strnstr(h.data, h.len, "Content-Length: 12\r\n", 20) != NULL
       && pt_strnstr(h.data, h.len, "Transfer-Encoding", 17) == NULL,
       "buffered chunked body: Content-Length of what was read");
    plcf.http_version = 11;
    h = build(&r, PT_UPSTREAM_BODY_STREAM, 1, 0);
    ok(pt_strnstr(h.data, h.len, "Transfer-Encoding: chunked\r\n", 28) != NULL
       && pt_strnstr(h.data, h.len, "Content-Length", 14) == NULL
       && pt_strnstr(h.data, h.len, " HTTP/1.1\r\n", 11) != NULL,
       "streamed chunked body over HTTP/1.1: re-chunked");

    plcf.pass_request_headers = 0;
    init_request(&r, "GET", "/", "/", "");
    add_in(&r, "Cookie", "a=b");
    h = build(&r, PT_UPSTREAM_BODY_NONE, 0, 0);
    ok(pt_strnstr(h.data, h.len, "Cookie", 6) == NULL, "proxy_pass_request_headers off");
}

static void test_keepalive_flags(void)
{
    memset(&plcf, 0, sizeof(plcf));
    plcf.http_version = 11;
    plcf.pass_request_headers = 1;
    static const char *const kv1[] = { "Host", "b", "Connection", "" };
    set_headers(&plcf, kv1, 2);
    pt_http_request_t r;
    init_request(&r, "GET", "/", "/", "");
    static proxy_target_t t;
    static proxy_ctx_t ctx;
    ctx.target = &t;
    ctxs[pt_http_proxy_module.index] = &ctx;
    pt_upstream_t u;
    memset(&u, 0, sizeof(u));
    u.r = &r;
    create_request(&u);
    ok(u.ka_request && !u.upgrade_request, "1.1 + Connection \"\": keep-alive allowed");
    ok(pt_strnstr(u.request_head.data, u.request_head.len, "Connection", 10) == NULL,
       "no Connection header sent");

    static const char *const kv2[] = { "Host", "b", "Upgrade", "websocket", "Connection", "upgrade" };
    set_headers(&plcf, kv2, 3);
    memset(&u, 0, sizeof(u));
    u.r = &r;
    create_request(&u);
    ok(u.ka_request && u.upgrade_request, "Upgrade + Connection: upgrade");
}

static void test_targets(void)
{
    static const struct { const char *url, *host, *port, *uri; int has_uri; const char *name;
                          int ssl; } cases[] = {
        { "http://127.0.0.1:8080", "127.0.0.1:8080", "8080", "", 0, "127.0.0.1", 0 },
        { "http://127.0.0.1:80/x/", "127.0.0.1", "80", "/x/", 1, "127.0.0.1", 0 },
        { "http://[::1]:81/", "[::1]:81", "81", "/", 1, "[::1]", 0 },
        { "http://unix:/tmp/a.sock:/u", "localhost", "80", "/u", 1, "localhost", 0 },
        { "http://unix:/tmp/a.sock", "localhost", "80", "", 0, "localhost", 0 },
        { "https://127.0.0.1:8443/", "127.0.0.1:8443", "8443", "/", 1, "127.0.0.1", 1 },
        { "HTTPS://127.0.0.1:443", "127.0.0.1", "443", "", 0, "127.0.0.1", 1 },
        { "https://127.0.0.1:80", "127.0.0.1:80", "80", "", 0, "127.0.0.1", 1 },
        { "https://[::1]/a", "[::1]", "443", "/a", 1, "[::1]", 1 },
        { "https://unix:/tmp/a.sock:/u", "localhost", "443", "/u", 1, "localhost", 1 },
    };
    pt_upstream_main_conf_t umcf;
    memset(&umcf, 0, sizeof(umcf));
    pt_array_init(&umcf.groups, pool, 1, sizeof(pt_upstream_group_t *));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        proxy_target_t t;
        memset(&t, 0, sizeof(t));
        pt_str_t url = S(cases[i].url);
        const char *err = target_init(pool, NULL, &umcf, &url, &t);
        ok(err == NULL && t.group != NULL, "%s: literal group", cases[i].url);
        is_strn(t.host.data, t.host.len, cases[i].host, "$proxy_host");
        is_strn(t.port.data, t.port.len, cases[i].port, "$proxy_port");
        is_int(t.has_uri, cases[i].has_uri, "has URI part");
        if (cases[i].has_uri)
            is_strn(t.uri.data, t.uri.len, cases[i].uri, "URI part");
        is_strn(t.name.data, t.name.len, cases[i].name, "name for SNI and verification");
        is_int(t.ssl, cases[i].ssl, "https");
    }
    proxy_target_t t;
    pt_str_t url = S("http://backend.invalid");
    ok(target_init(pool, NULL, &umcf, &url, &t) != NULL, "a name needs a resolver at request time");
    url = S("https://backend.invalid");
    ok(target_init(pool, NULL, &umcf, &url, &t) != NULL, "https: a name needs a resolver too");
    url = S("ftp://x");
    ok(target_init(pool, NULL, &umcf, &url, &t) != NULL, "other schemes are refused");
}

int main(void)
{
    pool = pt_pool_create(16384);
    pt_http_core_module.index = 0;
    pt_http_proxy_module.index = 1;
    srv_confs[0] = &cscf;
    cscf.merge_slashes = 1;
    loc_confs[1] = &plcf;
    conn.addr_text = S("127.0.0.1");
    subtest("uri", test_uris);
    subtest("head", test_head);
    subtest("keepalive", test_keepalive_flags);
    subtest("targets", test_targets);
    pt_pool_destroy(pool);
    return done_testing();
}
