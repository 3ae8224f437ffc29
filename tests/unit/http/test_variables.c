/* Unit tests for src/http/variables.c: registry, built-ins, prefix families,
 * complex values, regex captures. A fake configuration context and a fake
 * request stand in for the parser and the HTTP runtime. */
#include "../../../src/http/variables.c"

#include "tap.h"

/* Weak stand-ins: the real ones win when the library provides them. */
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
static pt_http_conf_ctx_t ctx;
static void *mains[64];
static pt_http_core_main_conf_t cmcf;
static pt_conn_t conn;

static pt_str_t S(const char *s)
{
    pt_str_t r = { strlen(s), (char *) s };
    return r;
}

static void setup_conf(void)
{
    pool = pt_pool_create(4096);
    memset(&cf, 0, sizeof(cf));
    memset(&cmcf, 0, sizeof(cmcf));
    cf.pool = pool;
    cf.temp_pool = pool;
    cf.log = pt_log_default;
    ctx.main_conf = mains;
    mains[pt_http_core_module.index] = &cmcf;
    cf.http_ctx = &ctx;
}

static void add_header(pt_http_request_t *r, pt_array_t *list, const char *name, const char *value)
{
    pt_http_header_t *h = pt_array_push(list);
    h->name = S(name);
    h->value = S(value);
    h->hash = pt_hash_lower(name, strlen(name));
    (void) r;
}

static pt_http_request_t *new_request(void)
{
    pt_http_request_t *r = pt_pcalloc(pool, sizeof(*r));
    r->pool = pool;
    r->main_conf = mains;
    r->connection = &conn;
    pt_array_init(&r->headers_in.list, pool, 8, sizeof(pt_http_header_t));
    pt_array_init(&r->headers_out.list, pool, 8, sizeof(pt_http_header_t));
    r->headers_in.content_length_n = -1;
    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;
    r->request_line = S("GET /a/b?x=1&foo=bar HTTP/1.1");
    r->method_name = S("GET");
    r->unparsed_uri = S("/a/b?x=1&foo=bar");
    r->uri = S("/a/b");
    r->args = S("x=1&foo=bar");
    r->http_protocol = S("HTTP/1.1");
    r->headers_in.server = S("example.com");
    add_header(r, &r->headers_in.list, "Host", "example.com:8080");
    add_header(r, &r->headers_in.list, "X-Custom", "a");
    add_header(r, &r->headers_in.list, "Cookie", "sid=1; theme=dark");
    add_header(r, &r->headers_in.list, "x-custom", "b");
    add_header(r, &r->headers_in.list, "Cookie", "lang=en");
    add_header(r, &r->headers_in.list, "User-Agent", "curl/8");
    conn.addr_text = S("127.0.0.1");
    conn.sockaddr.sin.sin_family = AF_INET;
    conn.sockaddr.sin.sin_port = htons(54321);
    conn.sockaddr.sin.sin_addr.s_addr = htonl(0x7f000001);
    conn.number = 7;
    conn.requests = 3;
    return r;
}

/* Compiles src, evaluates it against r and compares. */
static void check_cv(pt_http_request_t *r, const char *src, const char *want)
{
    pt_http_cv_t cv;
    pt_str_t s = S(src);
    int rc = pt_http_cv_compile(&cf, &s, &cv);
    if (!ok(rc == 0, "compile %s", src))
        return;
    if (pt_http_variables_init(&cf) != 0) {
        ok(0, "init after %s", src);
        return;
    }
    pt_str_t out;
    rc = pt_http_cv_eval(r, &cv, &out);
    if (!ok(rc == 0, "eval %s", src))
        return;
    is_strn(out.data, out.len, want, src);
}

static void test_literal(void)
{
    pt_http_cv_t cv;
    pt_str_t s = S("plain text");
    ok(pt_http_cv_compile(&cf, &s, &cv) == 0 && cv.is_literal, "literal compiles as literal");
    pt_http_request_t *r = new_request();
    pt_str_t out;
    ok(pt_http_cv_eval(r, &cv, &out) == 0 && out.data == s.data && out.len == s.len,
       "literal evaluates to its source without copying");
    s = S("");
    ok(pt_http_cv_compile(&cf, &s, &cv) == 0 && cv.is_literal, "empty string is literal");
}

static void test_core_vars(void)
{
    pt_http_request_t *r = new_request();
    check_cv(r, "$scheme://$host$request_uri", "http://example.com/a/b?x=1&foo=bar");
    check_cv(r, "${request_method}X", "GETX");
    check_cv(r, "$uri$is_args$args", "/a/b?x=1&foo=bar");
    check_cv(r, "[$remote_addr:$remote_port]", "[127.0.0.1:54321]");
    check_cv(r, "$server_protocol", "HTTP/1.1");
    check_cv(r, "$request", "GET /a/b?x=1&foo=bar HTTP/1.1");
    check_cv(r, "$connection/$connection_requests", "7/3");
    check_cv(r, "$https|", "|");
    check_cv(r, "$status", "000");
    r->headers_out.status = 404;
    check_cv(r, "$status", "404");
    r->body_bytes_sent = 12;
    r->bytes_sent = 99;
    check_cv(r, "$body_bytes_sent $bytes_sent", "12 99");
    check_cv(r, "$document_uri", "/a/b");
    check_cv(r, "$remote_user|", "|");
    check_cv(r, "$HOST", "example.com");

    pt_str_t name = S("binary_remote_addr");
    pt_http_var_value_t *v = pt_http_var_get_by_name(r, &name);
    ok(v && v->value.len == 4 && memcmp(v->value.data, "\x7f\0\0\x01", 4) == 0,
       "$binary_remote_addr is 4 bytes");

    /* $host falls back to the server name */
    r = new_request();
    r->headers_in.server.len = 0;
    pt_http_core_srv_conf_t cscf;
    memset(&cscf, 0, sizeof(cscf));
    cscf.server_name = S("srv.test");
    void *srvs[64] = { 0 };
    srvs[pt_http_core_module.index] = &cscf;
    r->srv_conf = srvs;
    check_cv(r, "$host|$server_name", "srv.test|srv.test");

    name = S("request_id");
    v = pt_http_var_get_by_name(r, &name);
    int hex = v && v->value.len == 32;
    for (size_t i = 0; hex && i < 32; i++)
        hex = (v->value.data[i] >= '0' && v->value.data[i] <= '9')
              || (v->value.data[i] >= 'a' && v->value.data[i] <= 'f');
    ok(hex, "$request_id is 32 hex digits");
    char first[33];
    memcpy(first, v->value.data, 32);
    v = pt_http_var_get_by_name(r, &name);
    ok(memcmp(first, v->value.data, 32) == 0, "$request_id stays the same within a request");
    pt_http_request_t *r2 = new_request();
    v = pt_http_var_get_by_name(r2, &name);
    ok(memcmp(first, v->value.data, 32) != 0, "$request_id differs between requests");

    r->start_msec = 1000;
    pt_time_msec = 3456;
    check_cv(r, "$request_time", "2.456");
    check_cv(r, "$msec", "3.456");
}

static void test_prefix(void)
{
    pt_http_request_t *r = new_request();
    check_cv(r, "$http_x_custom", "a, b");
    check_cv(r, "$http_cookie", "sid=1; theme=dark; lang=en");
    check_cv(r, "$http_user_agent", "curl/8");
    check_cv(r, "$http_host", "example.com:8080");
    check_cv(r, "<$http_missing>", "<>");
    check_cv(r, "$cookie_theme|$cookie_lang|$cookie_sid|$cookie_none|", "dark|en|1||");
    check_cv(r, "$arg_foo|$arg_x|$arg_FOO|$arg_nope|", "bar|1|bar||");
    r->headers_out.content_type = S("text/html");
    r->headers_out.content_length_n = 42;
    add_header(r, &r->headers_out.list, "X-Out", "1");
    check_cv(r, "$sent_http_content_type;$sent_http_content_length;$sent_http_x_out",
             "text/html;42;1");

    pt_str_t name = S("http_x_custom");
    pt_http_var_value_t *v = pt_http_var_get_by_name(r, &name);
    ok(v && v->value.len == 4, "get_by_name on an indexed prefix member");
    name = S("http_never_referenced");
    v = pt_http_var_get_by_name(r, &name);
    ok(v && v->not_found, "get_by_name on a new prefix member: not found");
    name = S("no_such_thing");
    ok(pt_http_var_get_by_name(r, &name) == NULL, "get_by_name of an unknown name: NULL");
}

static void test_set_and_registry(void)
{
    pt_str_t name = S("myvar");
    pt_http_var_t *var = pt_http_var_add(&cf, &name, PT_VAR_CHANGEABLE);
    ok(var != NULL, "add a changeable variable");
    unsigned idx = var->index;
    ok(pt_http_var_add(&cf, &name, PT_VAR_CHANGEABLE) != NULL, "re-adding changeable: same record");
    ok(pt_http_var_index(&cf, &name) == (int) idx, "index of a defined variable");
    pt_str_t host = S("host");
    ok(pt_http_var_add(&cf, &host, PT_VAR_CHANGEABLE) == NULL, "set $host is a duplicate");
    ok(pt_http_variables_init(&cf) == 0, "init with defined variables");

    pt_http_request_t *r = new_request();
    pt_http_var_value_t *v = pt_http_var_get(r, idx);
    ok(v && v->not_found, "unset variable is not found");
    pt_str_t val = S("hello");
    ok(pt_http_var_set(r, idx, &val) == 0, "set");
    check_cv(r, "<$myvar>", "<hello>");

    /* set $args goes through the setter and $args is not cached */
    pt_str_t args = S("args");
    var = pt_http_var_add(&cf, &args, PT_VAR_CHANGEABLE);
    ok(var && var->set != NULL, "$args is changeable with a setter");
    unsigned aidx = var->index;
    check_cv(r, "$args", "x=1&foo=bar");
    val = S("q=2");
    pt_http_var_set(r, aidx, &val);
    ok(r->args.len == 3, "set $args changes r->args");
    check_cv(r, "$args|$query_string|$arg_q", "q=2|q=2|2");

    /* a forward reference resolved by a later definition */
    pt_str_t later = S("later");
    int li = pt_http_var_index(&cf, &later);
    ok(li >= 0, "forward reference gets an index");
    ok(pt_http_var_add(&cf, &later, PT_VAR_CHANGEABLE) != NULL
       && pt_http_var_index(&cf, &later) == li, "definition fills the referenced record");
    ok(pt_http_variables_init(&cf) == 0, "init after the forward reference is defined");

    /* weak prefix taken over */
    pt_str_t up = S("upstream_http_");
    var = pt_http_var_add(&cf, &up, PT_VAR_PREFIX);
    ok(var != NULL, "upstream_http_ prefix can be taken over");
    ok(pt_http_var_add(&cf, &up, PT_VAR_PREFIX) == NULL, "but only once");

    pt_str_t unknown = S("nosuchvar");
    ok(pt_http_var_index(&cf, &unknown) >= 0, "unknown name gets a pending index");
    ok(pt_http_variables_init(&cf) == -1, "init reports the unknown variable");
    /* define it so later subtests can init again */
    pt_http_var_add(&cf, &unknown, PT_VAR_CHANGEABLE);
}

static void test_errors(void)
{
    pt_http_cv_t cv;
    pt_str_t s = S("cost $");
    ok(pt_http_cv_compile(&cf, &s, &cv) == -1, "trailing $ is an error");
    s = S("${host");
    ok(pt_http_cv_compile(&cf, &s, &cv) == -1, "missing closing bracket");
    s = S("a$/b");
    ok(pt_http_cv_compile(&cf, &s, &cv) == -1, "$ followed by a non-name char");
    pt_http_regex_t re;
    s = S("(unclosed");
    ok(pt_http_regex_compile(&cf, &re, &s, 0) == -1, "bad regex");
}

static void test_captures(void)
{
    pt_http_regex_t re;
    pt_str_t pat = S("^/(\\w+)/(?<id>\\d+)(/x)?$");
    ok(pt_http_regex_compile(&cf, &re, &pat, 0) == 0, "regex compiles");
    is_int(re.ncaptures, 3, "three groups");
    ok(re.name_index && re.name_index[2] >= 0 && re.name_index[1] == -1, "named group mapped");
    ok(cmcf.ncaptures >= 3, "main conf tracks the largest capture count");
    pt_http_cv_t cv;
    pt_str_t src = S("$1-$2-$id-$3-$9");
    ok(pt_http_cv_compile(&cf, &src, &cv) == 0 && cv.has_captures && cv.max_capture == 9,
       "captures compile");
    ok(pt_http_variables_init(&cf) == 0, "init with a named capture variable");

    pt_http_request_t *r = new_request();
    pt_str_t subj = S("/users/42");
    is_int(pt_http_regex_exec(r, &re, &subj), 1, "match");
    pt_str_t out;
    ok(pt_http_cv_eval(r, &cv, &out) == 0, "eval");
    is_strn(out.data, out.len, "users-42-42--", "captures and named capture");
    pt_str_t nomatch = S("/users/x");
    is_int(pt_http_regex_exec(r, &re, &nomatch), 0, "no match");
    ok(pt_http_cv_eval(r, &cv, &out) == 0, "eval after failed match");
    is_strn(out.data, out.len, "users-42-42--", "failed match keeps previous captures");

    pt_http_regex_t ci;
    pat = S("^/ABC");
    ok(pt_http_regex_compile(&cf, &ci, &pat, 1) == 0, "caseless compiles");
    pt_str_t low = S("/abcdef");
    is_int(pt_http_regex_exec(NULL, &ci, &low), 1, "caseless matches without a request");
    ok(pt_http_regex_compile(&cf, &ci, &pat, 0) == 0, "case-sensitive compiles");
    is_int(pt_http_regex_exec(NULL, &ci, &low), 0, "case-sensitive does not match");

    /* a regex with many groups grows the shared match data */
    pt_http_regex_t big;
    pat = S("(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)");
    ok(pt_http_regex_compile(&cf, &big, &pat, 0) == 0, "12 groups compile");
    pt_str_t abc = S("abcdefghijkl");
    r = new_request();
    is_int(pt_http_regex_exec(r, &big, &abc), 1, "12 groups match");
    is_int(r->ncaptures, 13, "13 pairs stored");
    pt_str_t s9 = S("$1$9");
    ok(pt_http_cv_compile(&cf, &s9, &cv) == 0 && pt_http_cv_eval(r, &cv, &out) == 0, "$1$9");
    is_strn(out.data, out.len, "ai", "$1$9 from 12 groups");
}

static void test_escaped_captures(void)
{
    pt_http_regex_t re;
    pt_str_t pat = S("^/(.*)$");
    ok(pt_http_regex_compile(&cf, &re, &pat, 0) == 0, "compile");
    pt_http_request_t *r = new_request();
    pt_str_t subj = S("/a b&c?d%e+f#g;h\x01/i");
    is_int(pt_http_regex_exec(r, &re, &subj), 1, "match");
    pt_http_cv_t cv;
    pt_str_t src = S("x=$1&u=$uri");
    ok(pt_http_cv_compile(&cf, &src, &cv) == 0, "compile cv");
    pt_str_t out;
    ok(pt_http_cv_eval_escape_captures(r, &cv, &out) == 0, "eval escaped");
    is_strn(out.data, out.len, "x=a%20b%26c%3Fd%25e%2Bf%23g%3Bh%01/i&u=/a/b",
            "captures escaped, variables and literals not");
    ok(pt_http_cv_eval(r, &cv, &out) == 0, "eval plain");
    is_strn(out.data, out.len, "x=a b&c?d%e+f#g;h\x01/i&u=/a/b", "plain eval leaves captures");
}

static void test_many_segments(void)
{
    /* more than 16 segments takes the heap path of eval */
    pt_http_request_t *r = new_request();
    check_cv(r, "$uri-$uri-$uri-$uri-$uri-$uri-$uri-$uri-$uri-$uri",
             "/a/b-/a/b-/a/b-/a/b-/a/b-/a/b-/a/b-/a/b-/a/b-/a/b");
}

int main(void)
{
    pt_time_init();
    setup_conf();
    subtest("literal", test_literal);
    subtest("core variables", test_core_vars);
    subtest("prefix families", test_prefix);
    subtest("set and registry", test_set_and_registry);
    subtest("errors", test_errors);
    subtest("captures", test_captures);
    subtest("escaped captures", test_escaped_captures);
    subtest("many segments", test_many_segments);
    pt_pool_destroy(pool);
    return done_testing();
}
