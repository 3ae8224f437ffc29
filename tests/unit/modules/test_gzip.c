/* Unit tests for src/modules/gzip.c: Accept-Encoding and q-values, the msie6
 * mask, Cache-Control directives, gzip_proxied, types, ETag weakening,
 * window sizing, and the body filter (streamed deflate that inflates back to
 * the input, sync flushes that make the output so far decodable, the end of
 * the stream, buffers given back, PT_AGAIN passed up, $gzip_ratio). */
#include "../../../src/modules/gzip.c"

#include "tap.h"

static pt_pool_t *pool;

static pt_str_t S(const char *s)
{
    pt_str_t r = { strlen(s), (char *) s };
    return r;
}

static int ae(const char *v)
{
    pt_str_t s = S(v);
    return accepts_gzip(&s);
}

static void test_accept_encoding(void)
{
    ok(ae("gzip"), "gzip");
    ok(ae("gzip, deflate, br"), "gzip first");
    ok(ae("deflate, gzip"), "gzip later");
    ok(ae("br;q=1.0, GZIP;q=0.5"), "case-insensitive, q=0.5");
    ok(ae("gzip ; q=1"), "spaces around ;");
    ok(ae("deflate,gzip;q=0.001"), "q=0.001 is above 0");
    ok(!ae("gzip;q=0"), "q=0 refuses");
    ok(!ae("gzip;q=0.000"), "q=0.000 refuses");
    ok(!ae("gzip; Q=0.0"), "Q=0.0 refuses");
    ok(!ae("deflate, br"), "no gzip");
    ok(!ae("x-gzip"), "x-gzip is not taken (nginx)");
    ok(!ae("gzipx"), "gzipx is another coding");
    ok(!ae("*"), "* is not taken (nginx)");
    ok(!ae(""), "empty");
    ok(!ae("gzip;q=abc"), "malformed q refuses");
    ok(!ae("gzip;q=1.5"), "q above 1 refuses");
    ok(ae("gzip;level=1"), "other parameters ignored");
    ok(ae("identity;q=0, gzip"), "another coding's q=0 does not matter");

    is_int(parse_qvalue("1", "1" + 1), 1000, "q 1");
    const char *h = "0.5";
    is_int(parse_qvalue(h, h + 3), 500, "q 0.5");
    h = "0.123";
    is_int(parse_qvalue(h, h + 5), 123, "q 0.123");
    h = "0.1234";
    is_int(parse_qvalue(h, h + 6), -1, "four decimals");
    h = "1.001";
    is_int(parse_qvalue(h, h + 5), -1, "1.001");
}

static int msie6(const char *v)
{
    pt_str_t s = S(v);
    return is_msie6(&s);
}

static void test_msie6(void)
{
    ok(msie6("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"), "MSIE 6.0");
    ok(msie6("Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)"), "MSIE 5.5");
    ok(msie6("Mozilla/4.0 (compatible; MSIE 4.01; Windows 95)"), "MSIE 4.01");
    ok(!msie6("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)"), "6.0 SV1 excluded");
    ok(!msie6("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)"), "MSIE 7");
    ok(!msie6("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1) Opera 8.0"), "Opera");
    ok(!msie6("curl/8.0"), "curl");
    ok(!msie6("MSIE 6."), "too short");
}

static pt_http_request_t *request(void)
{
    pt_http_request_t *r = pt_pcalloc(pool, sizeof(*r));
    r->pool = pool;
    r->ctx = pt_pcalloc(pool, sizeof(void *) * 64);
    pt_array_init(&r->headers_out.list, pool, 4, sizeof(pt_http_header_t));
    pt_array_init(&r->headers_in.list, pool, 4, sizeof(pt_http_header_t));
    r->headers_out.last_modified_time = -1;
    r->headers_out.content_length_n = -1;
    return r;
}

static void out_header(pt_http_request_t *r, const char *n, const char *v)
{
    pt_http_header_add(r, &r->headers_out.list, n, strlen(n), v, strlen(v));
}

static const char *etag_after(const char *v)
{
    pt_http_request_t *r = request();
    out_header(r, "ETag", v);
    weaken_etag(r);
    pt_http_header_t *h = find_out(r, "ETag", 4);
    return h ? h->value.data : "(none)";
}

static void test_etag(void)
{
    is_str(etag_after("\"5f-a\""), "W/\"5f-a\"", "strong becomes weak");
    is_str(etag_after("W/\"x\""), "W/\"x\"", "weak stays");
    is_str(etag_after("bogus"), "(none)", "malformed dropped");
}

static void test_cache_control_and_proxied(void)
{
    pt_http_request_t *r = request();
    out_header(r, "Cache-Control", "max-age=0, No-Cache=\"a,b\", private");
    ok(has_cc_directive(r, "no-cache", 8), "no-cache with a quoted value");
    ok(has_cc_directive(r, "private", 7), "private after a quoted comma");
    ok(!has_cc_directive(r, "no-store", 8), "no-store absent");
    ok(!has_cc_directive(r, "max-age=0", 9), "names only");

    ok(proxied_allows(r, PROXIED_NO_CACHE), "no-cache allows");
    ok(proxied_allows(r, PROXIED_PRIVATE), "private allows");
    ok(!proxied_allows(r, PROXIED_NO_STORE), "no-store does not");
    ok(!proxied_allows(r, PROXIED_OFF | PROXIED_ANY), "off wins");
    ok(proxied_allows(r, PROXIED_ANY), "any");

    r = request();
    out_header(r, "Expires", "Thu, 01 Jan 1970 00:00:01 GMT");
    ok(proxied_allows(r, PROXIED_EXPIRED), "expired Expires allows");
    ok(!proxied_allows(r, PROXIED_NO_CACHE), "Expires without expired refuses");
    r = request();
    out_header(r, "Expires", "Thu, 31 Dec 2037 23:55:55 GMT");
    ok(!proxied_allows(r, PROXIED_EXPIRED), "future Expires refuses");

    r = request();
    out_header(r, "ETag", "\"x\"");
    ok(!proxied_allows(r, PROXIED_NO_ETAG), "no_etag with an ETag refuses");
    ok(proxied_allows(r, PROXIED_NO_LM), "no_last_modified without Last-Modified allows");
    r->headers_out.last_modified_time = 1000;
    ok(!proxied_allows(r, PROXIED_NO_LM), "no_last_modified with Last-Modified refuses");
    ok(proxied_allows(r, PROXIED_EXPIRED), "no Expires, no Cache-Control: allows (nginx)");
}

static void test_types(void)
{
    gzip_conf_t c;
    memset(&c, 0, sizeof(c));
    c.types = pt_array_create(pool, 2, sizeof(pt_str_t));
    pt_str_t *t = pt_array_push(c.types);
    *t = S("text/html");
    t = pt_array_push(c.types);
    *t = S("application/json");

    pt_str_t ct = S("application/json; charset=utf-8");
    ok(type_matches(&c, &ct), "parameters ignored");
    ct = S("Application/JSON");
    ok(type_matches(&c, &ct), "case-insensitive");
    ct = S("application/jsonx");
    ok(!type_matches(&c, &ct), "exact type");
    ct = S("image/png");
    ok(!type_matches(&c, &ct), "png");
    c.types_any = 1;
    ok(type_matches(&c, &ct), "* takes any type");
    ct = S("");
    ok(!type_matches(&c, &ct), "but not a missing one");
    c.types = PT_CONF_UNSET_PTR;
    ct = S("text/html");
    ok(type_matches(&c, &ct), "default text/html");
}

static void test_sizing(void)
{
    gzip_conf_t c;
    gzip_ctx_t x;
    memset(&c, 0, sizeof(c));
    c.window = 32768;
    c.hash = 65536;
    c.level = 5;
    c.bufs_size = 4096;
    size_stream(&x, &c, -1);
    ok(x.wbits == 15 && x.memlevel == 8, "unknown length: 15/8");
    size_stream(&x, &c, 1 << 20);
    ok(x.wbits == 15 && x.memlevel == 8, "large: 15/8");
    size_stream(&x, &c, 300);
    ok(x.wbits == 10 && x.memlevel == 3, "300 bytes: 10/3 (got %d/%d)", x.wbits, x.memlevel);
    size_stream(&x, &c, 10);
    ok(x.wbits == 9 && x.memlevel == 2, "tiny: window floor 9 (got %d/%d)", x.wbits, x.memlevel);
    c.window = 4096;
    c.hash = 1024;
    size_stream(&x, &c, -1);
    ok(x.wbits == 12 && x.memlevel == 2, "gzip_window 4k, gzip_hash 1k");
}

/* ------------------------------------------------------------------------ */
/* The body filter against a capturing next filter. */

static pt_buf_t *captured;
static int captured_calls, captured_last, captured_flushes, next_rc;

static int capture(pt_http_request_t *r, pt_buf_t *chain)
{
    (void) r;
    captured_calls++;
    pt_buf_t **tail = &captured;
    while (*tail)
        tail = &(*tail)->next;
    for (pt_buf_t *b = chain; b; b = b->next) {
        if (b->last_buf)
            captured_last++;
        if (b->flush)
            captured_flushes++;
    }
    *tail = chain;
    return next_rc;
}

/* Inflates the captured bytes (gzip wrapper); returns the length or -1. */
static long inflate_captured(unsigned char *dst, size_t cap, int *ended)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 31) != Z_OK)
        return -1;
    zs.next_out = dst;
    zs.avail_out = (uInt) cap;
    int rc = Z_OK;
    for (pt_buf_t *b = captured; b && rc != Z_STREAM_END; b = b->next) {
        zs.next_in = (Bytef *) b->pos;
        zs.avail_in = (uInt) pt_buf_size(b);
        rc = inflate(&zs, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
            inflateEnd(&zs);
            return -1;
        }
    }
    *ended = rc == Z_STREAM_END;
    long n = (long) zs.total_out;
    inflateEnd(&zs);
    return n;
}

static pt_buf_t *data_buf(const unsigned char *p, size_t n)
{
    pt_buf_t *b = pt_buf_get(n ? n : 1);
    memcpy(b->last, p, n);
    b->last += n;
    return b;
}

static void test_body_filter(void)
{
    enum { N = 300000 };
    static unsigned char in[N], back[N + 16];
    unsigned seed = 12345;
    /* compressible but not trivial: words from a small alphabet */
    for (size_t i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        in[i] = (unsigned char) ("abcdefgh ,.\n"[(seed >> 16) % 12]);
    }

    pt_pool_t *rp = pt_pool_create(4096);
    pt_http_request_t *r = pt_pcalloc(rp, sizeof(*r));
    r->pool = rp;
    r->ctx = pt_pcalloc(rp, sizeof(void *) * 64);
    gzip_conf_t c;
    memset(&c, 0, sizeof(c));
    c.window = 32768;
    c.hash = 65536;
    c.level = 1;
    c.bufs_size = 4096;
    gzip_ctx_t *ctx = ctx_get(r);
    size_stream(ctx, &c, -1);
    ctx->compress = 1;
    pt_pool_cleanup_add(rp, stream_cleanup, ctx);

    next_body_filter = capture;
    captured = NULL;
    captured_calls = captured_last = captured_flushes = 0;
    next_rc = PT_OK;

    /* first 1000 bytes, flushed: decodable at once */
    pt_buf_t *b = data_buf(in, 1000);
    b->flush = 1;
    is_int(gzip_body_filter(r, b), PT_OK, "first buffer");
    int ended = 0;
    long n = inflate_captured(back, sizeof(back), &ended);
    ok(n == 1000 && memcmp(back, in, 1000) == 0, "a sync flush makes the first 1000 bytes "
       "decodable (got %ld)", n);
    ok(!ended, "stream not ended yet");
    ok(captured_flushes >= 1, "the output is marked flush");

    /* the rest in 64 KiB pieces, the writer backed up on one of them */
    size_t off = 1000;
    int again_seen = 0;
    while (off < N) {
        size_t k = N - off < 65536 ? N - off : 65536;
        b = data_buf(in + off, k);
        /* a chain of two: the piece split in halves */
        pt_buf_t *b2 = data_buf(in + off + k / 2, k - k / 2);
        b->last = b->pos + k / 2;
        b->next = b2;
        off += k;
        next_rc = off > 100000 && !again_seen ? PT_AGAIN : PT_OK;
        int rc = gzip_body_filter(r, b);
        if (next_rc == PT_AGAIN) {
            again_seen = 1;
            is_int(rc, PT_AGAIN, "the writer's PT_AGAIN goes up to the producer");
        }
    }
    next_rc = PT_OK;
    b = pt_buf_ref("", 0);
    b->last_buf = 1;
    is_int(gzip_body_filter(r, b), PT_OK, "last buffer");
    ok(ctx->done && !ctx->zinit, "stream ended and zlib state released");
    is_int(captured_last, 1, "exactly one last_buf passed down");

    n = inflate_captured(back, sizeof(back), &ended);
    ok(ended, "gzip stream complete");
    ok(n == N && memcmp(back, in, N) == 0, "inflates back to the input (%ld bytes)", n);

    size_t total = 0, maxb = 0;
    for (pt_buf_t *x = captured; x; x = x->next) {
        total += pt_buf_size(x);
        if (pt_buf_size(x) > maxb)
            maxb = pt_buf_size(x);
    }
    ok(total < N * 6 / 10, "compressed (%zu of %d)", total, N);
    ok(maxb <= 4096, "output buffers of gzip_buffers size");
    is_int((long long) ctx->zin, N, "zin");
    is_int((long long) ctx->zout, (long long) total, "zout");

    pt_http_var_value_t v;
    memset(&v, 0, sizeof(v));
    is_int(get_gzip_ratio(r, &v, 0), PT_OK, "$gzip_ratio");
    char want[32];
    uint64_t h = ((uint64_t) N * 1000 / total + 5) / 10;
    snprintf(want, sizeof(want), "%llu.%02llu", (unsigned long long) (h / 100),
             (unsigned long long) (h % 100));
    ok(v.valid && v.value.len == strlen(want) && memcmp(v.value.data, want, v.value.len) == 0,
       "$gzip_ratio %s", want);

    /* after the end, more buffers are dropped */
    b = data_buf(in, 10);
    gzip_body_filter(r, b);
    is_int(captured_last, 1, "nothing after the end");

    pt_buf_put_chain(captured);
    captured = NULL;
    pt_pool_destroy(rp);
}

/* A request that ends mid-stream: the pool cleanup releases zlib and the
 * partial output buffer (LeakSanitizer checks). */
static void test_abort(void)
{
    static unsigned char in[10000];
    memset(in, 'x', sizeof(in));
    pt_pool_t *rp = pt_pool_create(4096);
    pt_http_request_t *r = pt_pcalloc(rp, sizeof(*r));
    r->pool = rp;
    r->ctx = pt_pcalloc(rp, sizeof(void *) * 64);
    gzip_conf_t c;
    memset(&c, 0, sizeof(c));
    c.window = 32768;
    c.hash = 65536;
    c.level = 9;
    c.bufs_size = 4096;
    gzip_ctx_t *ctx = ctx_get(r);
    size_stream(ctx, &c, 1000000);
    ctx->compress = 1;
    pt_pool_cleanup_add(rp, stream_cleanup, ctx);
    next_body_filter = capture;
    captured = NULL;
    next_rc = PT_OK;
    is_int(gzip_body_filter(r, data_buf(in, sizeof(in))), PT_OK, "some input");
    ok(ctx->zinit, "stream open");
    pt_buf_put_chain(captured);
    captured = NULL;
    pt_pool_destroy(rp);
    ok(1, "pool destroyed mid-stream");
}

/* Empty body: a complete (empty) gzip stream. */
static void test_empty(void)
{
    pt_pool_t *rp = pt_pool_create(4096);
    pt_http_request_t *r = pt_pcalloc(rp, sizeof(*r));
    r->pool = rp;
    r->ctx = pt_pcalloc(rp, sizeof(void *) * 64);
    gzip_conf_t c;
    memset(&c, 0, sizeof(c));
    c.window = 32768;
    c.hash = 65536;
    c.level = 1;
    c.bufs_size = 4096;
    gzip_ctx_t *ctx = ctx_get(r);
    size_stream(ctx, &c, -1);
    ctx->compress = 1;
    pt_pool_cleanup_add(rp, stream_cleanup, ctx);
    next_body_filter = capture;
    captured = NULL;
    captured_last = 0;
    pt_buf_t *b = pt_buf_ref("", 0);
    b->last_buf = 1;
    is_int(gzip_body_filter(r, b), PT_OK, "only last_buf");
    unsigned char back[16];
    int ended = 0;
    is_int(inflate_captured(back, sizeof(back), &ended), 0, "inflates to nothing");
    ok(ended && captured_last == 1, "complete stream, one last_buf");
    pt_buf_put_chain(captured);
    captured = NULL;
    pt_pool_destroy(rp);
}

int main(void)
{
    pool = pt_pool_create(4096);
    subtest("accept-encoding", test_accept_encoding);
    subtest("msie6", test_msie6);
    subtest("etag", test_etag);
    subtest("proxied", test_cache_control_and_proxied);
    subtest("types", test_types);
    subtest("sizing", test_sizing);
    subtest("body", test_body_filter);
    subtest("abort", test_abort);
    subtest("empty", test_empty);
    pt_pool_destroy(pool);
    pt_buf_freelist_drain();
    return done_testing();
}
