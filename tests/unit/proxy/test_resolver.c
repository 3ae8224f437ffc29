/* Unit tests for the DNS messages of src/proxy/resolver.c: query encoding,
 * response parsing (compression pointers, A and AAAA, TTL minimum, rcode,
 * truncated and malformed messages). */
#include <arpa/inet.h>
#include <string.h>

#include "../../../src/proxy/balancer.h"
#include "tap.h"

static size_t put16(uint8_t *b, size_t o, unsigned v)
{
    b[o] = (uint8_t) (v >> 8);
    b[o + 1] = (uint8_t) v;
    return o + 2;
}

static size_t put32(uint8_t *b, size_t o, uint32_t v)
{
    o = put16(b, o, v >> 16);
    return put16(b, o, v & 0xffff);
}

/* A response to `q` (the query of qlen bytes) with the given records. */
static size_t response(uint8_t *b, const uint8_t *q, size_t qlen, int rcode,
                       const char *const *ips, const uint32_t *ttls, int n)
{
    memcpy(b, q, qlen);
    b[2] = 0x81;
    b[3] = (uint8_t) (0x80 | rcode);
    put16(b, 6, (unsigned) n);
    size_t o = qlen;
    for (int i = 0; i < n; i++) {
        int v6 = strchr(ips[i], ':') != NULL;
        o = put16(b, o, 0xc00c);          /* pointer to the question name */
        o = put16(b, o, v6 ? 28 : 1);
        o = put16(b, o, 1);
        o = put32(b, o, ttls[i]);
        o = put16(b, o, v6 ? 16 : 4);
        inet_pton(v6 ? AF_INET6 : AF_INET, ips[i], b + o);
        o += v6 ? 16 : 4;
    }
    return o;
}

static void test_query(void)
{
    uint8_t b[512];
    size_t n = pt__dns_query(b, sizeof(b), 0x1234, "app.example.test", 1);
    is_int(n, 12 + 18 + 4, "query length");
    ok(b[0] == 0x12 && b[1] == 0x34, "id");
    ok(b[2] == 0x01 && b[5] == 1, "RD set, one question");
    ok(memcmp(b + 12, "\3app\7example\4test\0", 18) == 0, "labels");
    ok(b[30] == 0 && b[31] == 1 && b[33] == 1, "type A class IN");
    n = pt__dns_query(b, sizeof(b), 1, "trailing.dot.", 28);
    ok(n > 0 && b[n - 3] == 28, "AAAA, trailing dot accepted");
    is_int(pt__dns_query(b, sizeof(b), 1, "bad..label", 1), 0, "empty label refused");
    char longl[80];
    memset(longl, 'a', 70);
    longl[70] = '\0';
    is_int(pt__dns_query(b, sizeof(b), 1, longl, 1), 0, "label over 63 refused");
}

static void test_parse(void)
{
    uint8_t q[512], r[1024];
    size_t ql = pt__dns_query(q, sizeof(q), 0xbeef, "app.test", 1);
    const char *ips[] = { "10.0.0.1", "10.0.0.2", "10.0.0.1", "2001:db8::5" };
    uint32_t ttls[] = { 30, 7, 30, 60 };
    size_t rl = response(r, q, ql, 0, ips, ttls, 4);

    pt_sockaddr_t out[8];
    socklen_t lens[8];
    uint16_t id;
    int rcode;
    uint32_t ttl;
    int n = pt__dns_parse(r, rl, &id, &rcode, &ttl, 8080, out, lens, 8);
    is_int(n, 3, "three distinct addresses (duplicate dropped)");
    is_int(id, 0xbeef, "id");
    is_int(rcode, 0, "rcode");
    is_int(ttl, 7, "minimum TTL");
    ok(out[0].sa.sa_family == AF_INET && ntohs(out[0].sin.sin_port) == 8080, "port applied");
    ok(out[2].sa.sa_family == AF_INET6 && lens[2] == sizeof(struct sockaddr_in6), "AAAA record");

    rl = response(r, q, ql, 3, NULL, NULL, 0);
    n = pt__dns_parse(r, rl, &id, &rcode, &ttl, 80, out, lens, 8);
    ok(n == 0 && rcode == 3, "NXDOMAIN: no address, rcode 3");

    rl = response(r, q, ql, 0, ips, ttls, 2);
    int bad = 0;
    for (size_t cut = 0; cut < rl; cut++)
        bad += pt__dns_parse(r, cut, &id, &rcode, &ttl, 80, out, lens, 8) >= 0 && cut < ql;
    is_int(bad, 0, "every truncation inside the question is malformed");
    is_int(pt__dns_parse(r, rl - 1, &id, &rcode, &ttl, 80, out, lens, 8), -1,
           "truncated record is malformed");
    is_int(pt__dns_parse(q, ql, &id, &rcode, &ttl, 80, out, lens, 8), -1, "a query is not a response");
    /* a pointer loop */
    uint8_t loop[64];
    memcpy(loop, r, 12);
    put16(loop, 4, 1);
    put16(loop, 6, 0);
    loop[12] = 0xc0;
    loop[13] = 12;
    is_int(pt__dns_parse(loop, 15, &id, &rcode, &ttl, 80, out, lens, 8), -1,
           "truncated question after a pointer is malformed");
    n = pt__dns_parse(r, rl, &id, &rcode, &ttl, 80, out, lens, 1);
    is_int(n, 1, "at most `max` addresses");
}

int main(void)
{
    subtest("query", test_query);
    subtest("parse", test_parse);
    return done_testing();
}
