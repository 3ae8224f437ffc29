/* Unit tests for src/modules/static.c: range parsing, entity-tag lists,
 * conditional checks, ".." detection, extensions and the uri -> path mapping
 * for root, alias and regex alias. */
#include "../../../src/modules/static.c"

#include "tap.h"

static pt_pool_t *pool;

static pt_str_t S(const char *s)
{
    pt_str_t r = { strlen(s), (char *) s };
    return r;
}

static pt_array_t ranges;

/* parse_range on v; the ranges land in `ranges`. */
static int pr(const char *v, int64_t size, int64_t max)
{
    pt_str_t s = { strlen(v), (char *) v };
    ranges.nelts = 0;
    return parse_range(&s, size, max, &ranges);
}

static int one_is(int64_t s, int64_t e)
{
    const range_t *rg = ranges.elts;
    return ranges.nelts == 1 && rg[0].start == s && rg[0].end == e;
}

static void test_ranges(void)
{
    pt_array_init(&ranges, pool, 2, sizeof(range_t));

    is_int(pr("bytes=0-9", 100, -1), RANGE_OK, "0-9");
    ok(one_is(0, 10), "0-9 is [0,10)");
    is_int(pr("bytes=90-", 100, -1), RANGE_OK, "open end");
    ok(one_is(90, 100), "90- is [90,100)");
    is_int(pr("bytes=-10", 100, -1), RANGE_OK, "suffix");
    ok(one_is(90, 100), "-10 is [90,100)");
    is_int(pr("bytes=-1000", 100, -1), RANGE_OK, "suffix longer than the file");
    ok(one_is(0, 100), "whole file");
    is_int(pr("bytes=50-5000", 100, -1), RANGE_OK, "end past size");
    ok(one_is(50, 100), "clamped");
    is_int(pr("BYTES = 1-2", 100, -1), RANGE_NONE, "unit must be exactly bytes=");
    is_int(pr("items=1-2", 100, -1), RANGE_NONE, "other unit ignored");
    is_int(pr("bytes=100-", 100, -1), RANGE_BAD, "start at size: 416");
    is_int(pr("bytes=-0", 100, -1), RANGE_BAD, "-0: 416");
    is_int(pr("bytes=5-1", 100, -1), RANGE_BAD, "reversed: 416");
    is_int(pr("bytes=a-b", 100, -1), RANGE_BAD, "garbage: 416");
    is_int(pr("bytes=-", 100, -1), RANGE_BAD, "dash alone: 416");
    is_int(pr("bytes=1-2x", 100, -1), RANGE_BAD, "trailing junk: 416");
    is_int(pr("bytes=99999999999999999999-", 100, -1), RANGE_BAD, "overflow: 416");
    is_int(pr("bytes=0-1, 5-6", 100, -1), RANGE_OK, "two ranges");
    ok(ranges.nelts == 2 && ((range_t *) ranges.elts)[1].start == 5, "both kept, in order");
    is_int(pr("bytes=0-1, 500-600", 100, -1), RANGE_OK, "one satisfiable of two");
    ok(one_is(0, 2), "the satisfiable one");
    is_int(pr("bytes=0-1,5-6", 100, 1), RANGE_NONE, "above max_ranges: whole file");
    is_int(pr("bytes=0-1,5-6", 100, 2), RANGE_OK, "at max_ranges");
    is_int(pr("bytes=0-59,40-99", 100, -1), RANGE_NONE, "overlap past the size: whole file");
    is_int(pr("bytes= 3 - 4 ", 100, -1), RANGE_OK, "spaces allowed");
    ok(one_is(3, 5), "3-4");
}

static void test_etags(void)
{
    pt_str_t tag = S("\"5f-a\"");
    pt_str_t v;

    v = S("\"5f-a\"");
    ok(etag_list_matches(&v, &tag, 1), "same tag");
    v = S("\"x\", \"5f-a\"");
    ok(etag_list_matches(&v, &tag, 1), "in a list");
    v = S("W/\"5f-a\"");
    ok(etag_list_matches(&v, &tag, 1), "weak comparison ignores W/");
    ok(!etag_list_matches(&v, &tag, 0), "strong comparison refuses W/");
    v = S("*");
    ok(etag_list_matches(&v, &tag, 0), "*");
    v = S("\"5f-b\",\"5f\"");
    ok(!etag_list_matches(&v, &tag, 1), "no match");
    v = S("");
    ok(!etag_list_matches(&v, &tag, 1), "empty");
    v = S("\"5f-a");
    ok(!etag_list_matches(&v, &tag, 1), "unterminated");
}

static void test_dotdot(void)
{
    ok(pt_http_static_has_dotdot("/a/../b", 7), "/a/../b");
    ok(pt_http_static_has_dotdot("/a/..", 5), "/a/..");
    ok(pt_http_static_has_dotdot("..", 2), "..");
    ok(pt_http_static_has_dotdot("../x", 4), "../x");
    ok(!pt_http_static_has_dotdot("/a/..b", 6), "..b is a name");
    ok(!pt_http_static_has_dotdot("/a../b", 6), "a.. is a name");
    ok(!pt_http_static_has_dotdot("/a/./b", 6), ". is harmless");
    ok(!pt_http_static_has_dotdot("/a/b", 4), "plain");
}

static void test_exten(void)
{
    pt_http_request_t r;
    memset(&r, 0, sizeof(r));
    r.uri = S("/a.b/c.tar.gz");
    pt_http_static_set_exten(&r);
    is_strn(r.exten.data, r.exten.len, "gz", "last dot of the last segment");
    r.uri = S("/a.b/c");
    pt_http_static_set_exten(&r);
    ok(r.exten.len == 0, "no dot in the last segment");
    r.uri = S("/x/");
    pt_http_static_set_exten(&r);
    ok(r.exten.len == 0, "directory");
}

/* A request with just enough to map paths: core loc conf at index 0. */
static pt_http_core_loc_conf_t clcf;
static void *loc_confs[64];
static void *main_confs[64];
static static_main_conf_t smcf;

static pt_http_request_t *request(const char *uri)
{
    pt_http_request_t *r = pt_pcalloc(pool, sizeof(*r));
    r->pool = pool;
    r->loc_conf = loc_confs;
    r->main_conf = main_confs;
    r->uri = S(uri);
    return r;
}

static void test_map(void)
{
    pt_str_t path;
    pt_http_request_t *r;

    pt_http_core_module.index = 0;
    pt_http_static_module.index = 1;
    loc_confs[0] = &clcf;
    main_confs[1] = &smcf;
    smcf.prefix = S("/prefix/");

    clcf.root = S("/srv/www");
    clcf.alias = 0;
    r = request("/a/b.css");
    is_int(pt_http_static_map_uri(r, &r->uri, &path, 0), PT_OK, "root");
    is_str(path.data, "/srv/www/a/b.css", "root + uri");

    r = request("/dir/");
    is_int(pt_http_static_map_uri(r, &r->uri, &path, 10), PT_OK, "with reserve");
    is_str(path.data, "/srv/www/dir/", "keeps the slash");
    memcpy(path.data + path.len, "index.html", 11);
    is_str(path.data, "/srv/www/dir/index.html", "room for the index name");

    clcf.root = S("/opt/static/");
    clcf.alias = 8;                           /* location /static/ */
    r = request("/static/x/y.js");
    is_int(pt_http_static_map_uri(r, &r->uri, &path, 0), PT_OK, "alias");
    is_str(path.data, "/opt/static/x/y.js", "alias replaces the location name");

    clcf.alias = 7;                           /* location /static (no slash) */
    r = request("/static../etc/passwd");
    is_int(pt_http_static_map_uri(r, &r->uri, &path, 0), PT_DECLINED, "alias traversal refused");
    r = request("/static..");
    is_int(pt_http_static_map_uri(r, &r->uri, &path, 0), PT_DECLINED, "alias .. at the end");
    r = request("/static/ok.txt");
    is_int(pt_http_static_map_uri(r, &r->uri, &path, 0), PT_OK, "alias without slash, normal uri");
    is_str(path.data, "/opt/static//ok.txt", "joined as written (nginx)");
    r = request("/static..x");
    is_int(pt_http_static_map_uri(r, &r->uri, &path, 0), PT_OK, "..x is a name");

    clcf.root = S("/opt/file.css");
    clcf.alias = SIZE_MAX;                    /* regex location */
    r = request("/anything/at/all");
    is_int(pt_http_static_map_uri(r, &r->uri, &path, 0), PT_OK, "regex alias");
    is_str(path.data, "/opt/file.css", "the alias is the whole path");

    clcf.root = S("/srv/www");
    clcf.alias = 0;
}

int main(void)
{
    pool = pt_pool_create(4096);
    subtest("ranges", test_ranges);
    subtest("etags", test_etags);
    subtest("dotdot", test_dotdot);
    subtest("exten", test_exten);
    subtest("map", test_map);
    pt_pool_destroy(pool);
    return done_testing();
}
