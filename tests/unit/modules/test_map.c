/* Unit tests for src/modules/map.c: feeds map lines to the block handler the
 * way the parser would, then evaluates the variable against fake requests. */
#include "../../../src/modules/map.c"

#include "../../../src/core/time.h"
#include "tap.h"

__attribute__((weak)) pt_module_t pt_http_core_module = { .name = "http_core" };

__attribute__((weak)) void pt_conf_error(pt_conf_t *cf, int level, int err, const char *fmt, ...)
{
    (void) cf;
    (void) level;
    (void) err;
    (void) fmt;
}

__attribute__((weak)) int pt_conn_local_addr(pt_conn_t *c)
{
    (void) c;
    return -1;
}

__attribute__((weak)) size_t pt_sockaddr_text(const struct sockaddr *sa, socklen_t len, char *buf,
                                              size_t size, int with_port)
{
    (void) sa;
    (void) len;
    (void) with_port;
    if (size)
        buf[0] = '\0';
    return 0;
}

static pt_pool_t *pool;
static pt_conf_t cf;
static pt_http_conf_ctx_t hctx;
static void *mains[64];
static pt_http_core_main_conf_t cmcf;
static pt_array_t args;

static pt_str_t S(const char *s)
{
    pt_str_t r = { strlen(s), (char *) s };
    return r;
}

/* One map line as the parser hands it over (tokens NUL-terminated, in pool). */
static const char *line(map_ctx_t *ctx, const char *a, const char *b)
{
    args.nelts = 0;
    pt_str_t *t = pt_array_push(&args);
    t->data = pt_pstrndup(pool, a, strlen(a));
    t->len = strlen(a);
    if (b) {
        t = pt_array_push(&args);
        t->data = pt_pstrndup(pool, b, strlen(b));
        t->len = strlen(b);
    }
    return map_line(&cf, ctx);
}

/* Builds `map $src $name { lines }`; returns the variable index. */
static int build(const char *src, const char *name, const char *const *lines, map_ctx_t *ctx)
{
    map_t *map = pt_pcalloc(pool, sizeof(*map));
    pt_str_t s = S(src);
    if (pt_http_cv_compile(&cf, &s, &map->source) != 0)
        return -1;
    pt_str_t n = S(name);
    pt_http_var_t *var = pt_http_var_add(&cf, &n, PT_VAR_CHANGEABLE);
    if (var == NULL)
        return -1;
    var->get = map_get;
    var->data = (uintptr_t) map;
    int index = (int) var->index;
    map_ctx_init(&cf, ctx, map);
    for (size_t i = 0; lines[i]; i += 2)
        if (line(ctx, lines[i], lines[i + 1]) != PT_CONF_OK)
            return -1;
    if (map_finish(&cf, ctx) != 0)
        return -1;
    return pt_http_variables_init(&cf) == 0 ? index : -1;
}

static pt_http_request_t *request_with(const char *header, const char *value)
{
    pt_http_request_t *r = pt_pcalloc(pool, sizeof(*r));
    r->pool = pool;
    r->main_conf = mains;
    pt_array_init(&r->headers_in.list, pool, 4, sizeof(pt_http_header_t));
    if (header) {
        pt_http_header_t *h = pt_array_push(&r->headers_in.list);
        h->name = S(header);
        h->value = S(value);
    }
    r->uri = S("/");
    return r;
}

static void is_var(pt_http_request_t *r, int index, const char *want, const char *name)
{
    pt_http_var_value_t *v = pt_http_var_get(r, (unsigned) index);
    if (!ok(v != NULL, "%s: evaluates", name))
        return;
    is_strn(v->value.data, v->value.len, want, name);
}

static void test_connection_upgrade(void)
{
    static const char *const lines[] = { "default", "upgrade", "", "close", NULL };
    map_ctx_t ctx;
    int idx = build("$http_upgrade", "connection_upgrade", lines, &ctx);
    ok(idx >= 0, "the guides' connection_upgrade map builds");
    is_var(request_with("Upgrade", "websocket"), idx, "upgrade", "Upgrade: websocket");
    is_var(request_with(NULL, NULL), idx, "close", "no Upgrade header");
}

static void test_exact_regex_default(void)
{
    static const char *const lines[] = {
        "default", "other",
        "/Exact", "exact:$uri",
        "~^/api/(?<ver>v\\d+)/(.*)$", "api $ver $2",
        "~*\\.JPG$", "image",
        "\\default", "literal-default",
        NULL
    };
    map_ctx_t ctx;
    int idx = build("$uri", "kind", lines, &ctx);
    ok(idx >= 0, "map with exact, regex and default builds");
    pt_http_request_t *r = request_with(NULL, NULL);
    r->uri = S("/exact");
    is_var(r, idx, "exact:/exact", "exact keys ignore case; value has variables");
    r = request_with(NULL, NULL);
    r->uri = S("/api/v2/users/1");
    is_var(r, idx, "api v2 users/1", "regex with named and positional captures");
    r = request_with(NULL, NULL);
    r->uri = S("/a/photo.jpg");
    is_var(r, idx, "image", "caseless regex");
    r = request_with(NULL, NULL);
    r->uri = S("/API/v2/x");
    is_var(r, idx, "other", "case-sensitive regex does not match; default");
    r = request_with(NULL, NULL);
    r->uri = S("default");
    is_var(r, idx, "literal-default", "escaped special name is a key");
}

static void test_hostnames(void)
{
    static const char *const lines[] = {
        "hostnames", NULL,
        "default", "0",
        "example.com", "1",
        "*.example.com", "2",
        ".example.net", "3",
        "wap.*", "4",
        "*.deep.example.com", "5",
        NULL
    };
    map_ctx_t ctx;
    int idx = build("$http_host", "name", lines, &ctx);
    ok(idx >= 0, "hostnames map builds");
    is_var(request_with("Host", "Example.COM"), idx, "1", "exact");
    is_var(request_with("Host", "www.example.com"), idx, "2", "*.example.com");
    is_var(request_with("Host", "a.deep.example.com"), idx, "5", "longest wildcard wins");
    is_var(request_with("Host", "example.net"), idx, "3", ".example.net matches the bare name");
    is_var(request_with("Host", "x.example.net."), idx, "3", ".example.net with a trailing dot");
    is_var(request_with("Host", "wap.example.org"), idx, "4", "wap.*");
    is_var(request_with("Host", "example.org"), idx, "0", "default");
}

static void test_errors(void)
{
    map_t map;
    map_ctx_t ctx;
    memset(&map, 0, sizeof(map));
    map_ctx_init(&cf, &ctx, &map);
    ok(line(&ctx, "default", "a") == PT_CONF_OK, "default");
    ok(line(&ctx, "default", "b") == PT_CONF_ERROR, "duplicate default");
    ok(line(&ctx, "k", "a") == PT_CONF_OK, "key");
    ok(line(&ctx, "K", "b") == PT_CONF_ERROR, "conflicting key (case-insensitive)");
    ok(line(&ctx, "~(bad", "x") == PT_CONF_ERROR, "bad regex");
    ok(line(&ctx, "justone", NULL) == PT_CONF_ERROR, "one parameter");
    ok(line(&ctx, "volatile", NULL) == PT_CONF_OK && ctx.no_cacheable, "volatile");
}

static void test_volatile(void)
{
    static const char *const lines[] = { "volatile", NULL, "default", "$uri", NULL };
    map_ctx_t ctx;
    int idx = build("$uri", "vol", lines, &ctx);
    ok(idx >= 0, "volatile map builds");
    ((pt_http_var_t *) cmcf.variables.elts)[idx].flags |= PT_VAR_NOCACHEABLE;
    pt_http_request_t *r = request_with(NULL, NULL);
    r->uri = S("/one");
    is_var(r, idx, "/one", "first value");
    r->uri = S("/two");
    is_var(r, idx, "/two", "volatile: evaluated again");
}

int main(void)
{
    pt_time_init();
    pool = pt_pool_create(4096);
    cf.pool = pool;
    cf.temp_pool = pool;
    cf.log = pt_log_default;
    hctx.main_conf = mains;
    mains[pt_http_core_module.index] = &cmcf;
    cf.http_ctx = &hctx;
    pt_array_init(&args, pool, 4, sizeof(pt_str_t));
    cf.args = &args;

    subtest("connection_upgrade", test_connection_upgrade);
    subtest("exact, regex, default", test_exact_regex_default);
    subtest("hostnames", test_hostnames);
    subtest("errors", test_errors);
    subtest("volatile", test_volatile);
    pt_pool_destroy(pool);
    return done_testing();
}
