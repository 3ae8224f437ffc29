/* Unit tests for src/proxy/health.c: parsing a probe's response and judging
 * it against the default rule (2xx/3xx) and match { } conditions. */
#include "../../../src/proxy/health.c"

#include "tap.h"

static pt_pool_t *pool;

static int judge(pt_upstream_hc_t *hc, const char *raw, const char **why)
{
    hc_response_t res;
    *why = NULL;
    if (parse_response(raw, strlen(raw), &res) != 0) {
        *why = "invalid response";
        return 0;
    }
    return evaluate(hc, &res, why);
}

static hc_cond_t *cond(hc_match_t *m, unsigned type)
{
    hc_cond_t *c = pt_array_push(&m->conds);
    memset(c, 0, sizeof(*c));
    c->type = type;
    return c;
}

static void test_parse(void)
{
    hc_response_t res;
    const char *r = "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n";
    is_int(parse_response(r, strlen(r), &res), 0, "parsed");
    is_int(res.status, 204, "status");
    is_int(res.body.len, 0, "empty body");
    r = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello";
    parse_response(r, strlen(r), &res);
    is_strn(res.body.data, res.body.len, "hello", "body");
    pt_str_t name = pt_string("content-type"), v;
    ok(find_header(&res.head, &name, &v) == 1, "header found case-insensitively");
    is_strn(v.data, v.len, "text/plain", "header value trimmed");
    pt_str_t missing = pt_string("X-None");
    ok(find_header(&res.head, &missing, &v) == 0, "absent header");
    const char *bad[] = { "", "HTTP/1.1 20", "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 999 X\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nX: y\r\n", "SSH-2.0-OpenSSH\r\n\r\n" };
    int rejected = 1;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        rejected &= parse_response(bad[i], strlen(bad[i]), &res) != 0;
    ok(rejected, "malformed or truncated heads are rejected");
}

static void test_default_rule(void)
{
    pt_upstream_hc_t hc;
    memset(&hc, 0, sizeof(hc));
    const char *why;
    ok(judge(&hc, "HTTP/1.1 200 OK\r\n\r\n", &why), "200 passes");
    ok(judge(&hc, "HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", &why), "302 passes");
    ok(!judge(&hc, "HTTP/1.1 404 Not Found\r\n\r\n", &why), "404 fails");
    ok(!judge(&hc, "HTTP/1.1 503 Unavailable\r\n\r\n", &why) && strcmp(why, "bad status") == 0,
       "503 fails with a reason");
}

static void test_match(void)
{
    hc_match_t m;
    memset(&m, 0, sizeof(m));
    pt_array_init(&m.conds, pool, 4, sizeof(hc_cond_t));
    pt_upstream_hc_t hc;
    memset(&hc, 0, sizeof(hc));
    hc.match = &m;
    const char *why;

    hc_cond_t *c = cond(&m, M_STATUS);
    pt_str_t r1 = pt_string("200"), r2 = pt_string("300-399");
    parse_status_arg(c, &r1);
    parse_status_arg(c, &r2);
    ok(judge(&hc, "HTTP/1.1 200 OK\r\n\r\n", &why), "status 200 in list");
    ok(judge(&hc, "HTTP/1.1 301 Moved\r\n\r\n", &why), "status in range");
    ok(!judge(&hc, "HTTP/1.1 204 No Content\r\n\r\n", &why), "status outside");
    c->negate = 1;
    ok(judge(&hc, "HTTP/1.1 204 No Content\r\n\r\n", &why), "status ! inverts");
    c->negate = 0;

    c = cond(&m, M_HEADER);
    c->op = OP_EQ;
    c->name = (pt_str_t) pt_string("X-Status");
    c->value = (pt_str_t) pt_string("up");
    ok(judge(&hc, "HTTP/1.1 200 OK\r\nX-Status: up\r\n\r\n", &why), "header = value");
    ok(!judge(&hc, "HTTP/1.1 200 OK\r\nX-Status: down\r\n\r\n", &why)
       && strcmp(why, "header does not match") == 0, "header = other value fails");
    ok(!judge(&hc, "HTTP/1.1 200 OK\r\n\r\n", &why), "missing header fails");
    c->op = OP_NE;
    ok(judge(&hc, "HTTP/1.1 200 OK\r\n\r\n", &why), "header != passes when absent");
    c->op = OP_ABSENT;
    ok(!judge(&hc, "HTTP/1.1 200 OK\r\nX-Status: up\r\n\r\n", &why), "! header fails when present");
    c->op = OP_PRESENT;
    ok(judge(&hc, "HTTP/1.1 200 OK\r\nx-status: whatever\r\n\r\n", &why), "header present");
}

int main(void)
{
    pool = pt_pool_create(4096);
    subtest("parse", test_parse);
    subtest("default", test_default_rule);
    subtest("match", test_match);
    return done_testing();
}
