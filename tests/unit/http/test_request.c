/* Protocol-neutral request helpers: Host validation, Transfer-Encoding rules,
 * status lines, header lists, integer formatting. */
#include <string.h>

#include "tap.h"
#include "core/pool.h"
#include "http/h1_conn.h"
#include "http/request.h"

static pt_pool_t *pool;

/* Returns the normalised host, or "<invalid>". */
static const char *host(const char *in)
{
    static char out[256];
    pt_str_t h = { strlen(in), (char *) in };
    if (pt_http_validate_host(&h, pool) != 0)
        return "<invalid>";
    snprintf(out, sizeof(out), "%.*s", (int) h.len, h.data);
    return out;
}

static void test_host(void)
{
    is_str(host("example.com"), "example.com", "plain");
    is_str(host("Example.COM"), "example.com", "lowercased");
    is_str(host("example.com."), "example.com", "trailing dot stripped");
    is_str(host("example.com:8080"), "example.com", "port stripped");
    is_str(host("example.com.:80"), "example.com", "dot and port");
    is_str(host("a-b_c.x"), "a-b_c.x", "dash and underscore");
    is_str(host("127.0.0.1"), "127.0.0.1", "ipv4");
    is_str(host("[::1]"), "[::1]", "ipv6 literal");
    is_str(host("[::1]:443"), "[::1]", "ipv6 literal with port");
    is_str(host("[2001:DB8::1]"), "[2001:db8::1]", "ipv6 lowercased");
    is_str(host(""), "<invalid>", "empty");
    is_str(host("."), "<invalid>", "lone dot");
    is_str(host(".."), "<invalid>", "two dots");
    is_str(host("a..b"), "<invalid>", "empty label");
    is_str(host(".a"), "<invalid>", "leading dot");
    is_str(host("a/b"), "<invalid>", "slash");
    is_str(host("a\\b"), "<invalid>", "backslash");
    is_str(host("a b"), "<invalid>", "space");
    is_str(host("a\tb"), "<invalid>", "tab");
    is_str(host("a@b"), "<invalid>", "userinfo");
    is_str(host("a?b"), "<invalid>", "query char");
    is_str(host(":80"), "<invalid>", "port only");
    is_str(host("a:8x"), "a", "any port text (nginx)");
    is_str(host("example.com:abc"), "example.com", "alphabetic port text");
    is_str(host("a:8/x"), "<invalid>", "slash after port");
    is_str(host("a:8 x"), "<invalid>", "space after port");
    is_str(host("a:8@b"), "<invalid>", "@ after port");
    is_str(host("[]"), "<invalid>", "empty literal");
    is_str(host("[::1"), "<invalid>", "unterminated literal");
    is_str(host("[::1]x"), "<invalid>", "junk after literal");
    is_str(host("[12g::1]"), "<invalid>", "non-hex literal");
    is_str(host("a[b]"), "<invalid>", "bracket inside");
    pt_str_t nul = { 3, (char *) "a\0b" };
    ok(pt_http_validate_host(&nul, pool) != 0, "NUL");
    pt_str_t del = { 3, (char *) "a\x7f" "b" };
    ok(pt_http_validate_host(&del, pool) != 0, "DEL");

    /* lowercase input is not copied */
    char buf[] = "keep.me:1";
    pt_str_t k = { strlen(buf), buf };
    ok(pt_http_validate_host(&k, pool) == 0 && k.data == buf && k.len == 7, "no copy when lowercase");
}

static int te(const char *v)
{
    pt_str_t s = { strlen(v), (char *) v };
    return pt_http_check_transfer_encoding(&s);
}

static void test_transfer_encoding(void)
{
    is_int(te("chunked"), 0, "chunked");
    is_int(te("Chunked"), 0, "case-insensitive");
    is_int(te("CHUNKED"), 0, "upper case");
    is_int(te("gzip"), 501, "single unknown coding");
    is_int(te("identity"), 501, "identity");
    is_int(te("gzip, chunked"), 501, "unsupported coding before chunked");
    is_int(te("chunked, chunked"), 400, "chunked twice");
    is_int(te("chunked, gzip"), 400, "chunked not last");
    is_int(te("chunked,"), 400, "trailing comma");
    is_int(te(", chunked"), 400, "leading comma");
    is_int(te(""), 400, "empty");
    is_int(te("chunked , chunked"), 400, "spaces around comma");
    is_int(te("chunkedx"), 501, "not chunked");
}

static void test_status_line(void)
{
    const pt_str_t *s;
    s = pt_http_status_line(200);
    ok(s && s->len == 6 && memcmp(s->data, "200 OK", 6) == 0, "200");
    s = pt_http_status_line(302);
    ok(s && s->len == 21 && memcmp(s->data, "302 Moved Temporarily", 21) == 0, "302 as nginx");
    s = pt_http_status_line(404);
    ok(s && memcmp(s->data, "404 Not Found", 13) == 0, "404");
    s = pt_http_status_line(503);
    ok(s && memcmp(s->data, "503 Service Temporarily Unavailable", 35) == 0, "503 as nginx");
    ok(pt_http_status_line(299) == NULL, "no reason for 299");
    ok(pt_http_status_line(418) == NULL, "no reason for 418");
    ok(pt_http_status_line(99) == NULL, "below range");
    ok(pt_http_status_line(600) == NULL, "above range");
    ok(pt_http_status_line(599) == NULL, "599");
    s = pt_http_status_line(101);
    ok(s && memcmp(s->data, "101 Switching Protocols", 23) == 0, "101");
}

static void test_headers(void)
{
    pt_http_request_t r;
    memset(&r, 0, sizeof(r));
    r.pool = pool;
    pt_array_t list;
    ok(pt_array_init(&list, pool, 1, sizeof(pt_http_header_t)) == 0, "init");
    pt_http_header_t *h = pt_http_header_add(&r, &list, "X-One", 5, "1", 1);
    ok(h != NULL && h->hash == pt_hash_lower("x-one", 5), "add hashes lowercase");
    ok(pt_http_header_add(&r, &list, "Set-Cookie", 10, "a=b", 3) != NULL, "add second (grows)");
    h = pt_http_header_find(&list, "x-ONE", 5);
    ok(h && h->value.len == 1 && h->value.data[0] == '1', "find is case-insensitive");
    ok(h && h->name.data[5] == '\0' && h->value.data[1] == '\0', "copies are NUL-terminated");
    h->deleted = 1;
    ok(pt_http_header_find(&list, "x-one", 5) == NULL, "deleted headers are not found");
    ok(pt_http_header_find(&list, "set-cookie", 10) != NULL, "other header still there");
    ok(pt_http_header_find(&list, "set-cooki", 9) == NULL, "no prefix match");
}

static void test_format_int(void)
{
    char buf[32];
    char *e = pt_http_format_int(buf, 0);
    is_strn(buf, (size_t) (e - buf), "0", "zero");
    e = pt_http_format_int(buf, 1234567890123LL);
    is_strn(buf, (size_t) (e - buf), "1234567890123", "large");
    e = pt_http_format_int(buf, -42);
    is_strn(buf, (size_t) (e - buf), "-42", "negative");
    e = pt_http_format_int(buf, INT64_MAX);
    is_strn(buf, (size_t) (e - buf), "9223372036854775807", "INT64_MAX");
}

int main(void)
{
    pool = pt_pool_create(4096);
    subtest("host", test_host);
    subtest("transfer-encoding", test_transfer_encoding);
    subtest("status line", test_status_line);
    subtest("headers", test_headers);
    subtest("format int", test_format_int);
    pt_pool_destroy(pool);
    return done_testing();
}
