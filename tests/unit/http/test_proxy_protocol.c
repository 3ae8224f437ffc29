/* Unit tests for src/http/proxy_protocol.c: the PROXY protocol v1/v2
 * parser. Every input is placed right before a PROT_NONE page, so reading a
 * byte past the end crashes the test; every proper prefix of a valid header
 * must answer "need more", and every accepted header must be consumed to
 * its exact length with the bytes after it left alone. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "http/proxy_protocol.h"
#include "tap.h"

#define GUARD_SPACE (64 * 1024)
static char *guard_area;

static void guard_init(void)
{
    size_t pg = (size_t) sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, GUARD_SPACE + pg, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(m + GUARD_SPACE, pg, PROT_NONE) != 0) {
        perror("guard");
        exit(2);
    }
    guard_area = m;
}

static ssize_t parse(const void *in, size_t len, pt_proxy_protocol_t *pp)
{
    char *p = guard_area + GUARD_SPACE - len;
    memcpy(p, in, len);
    memset(pp, 0xa5, sizeof(*pp));
    return pt_proxy_protocol_parse(p, len, pp);
}

/* Every proper prefix of a complete header is AGAIN. */
static int prefixes_again(const void *in, size_t hlen)
{
    pt_proxy_protocol_t pp;
    for (size_t i = 0; i < hlen; i++)
        if (parse(in, i, &pp) != PT_PROXY_PROTOCOL_AGAIN) {
            note("prefix of %zu bytes: %zd", i, parse(in, i, &pp));
            return 0;
        }
    return 1;
}

#define V1(s) s, sizeof(s) - 1

static void test_v1_valid(void)
{
    pt_proxy_protocol_t pp;
    const char tcp4[] = "PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\nGET / HTTP/1.1\r\n";
    size_t hlen = strlen("PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\n");

    is_int(parse(V1(tcp4), &pp), (int) hlen, "TCP4: consumes the line only");
    ok(pp.version == 1 && pp.has_addr, "TCP4: version 1 with addresses");
    is_str(pp.src_text, "192.0.2.10", "TCP4 source address");
    is_str(pp.dst_text, "198.51.100.7", "TCP4 destination address");
    is_int(pp.src_port, 56324, "TCP4 source port");
    is_int(pp.dst_port, 443, "TCP4 destination port");
    ok(pp.src.sin.sin_family == AF_INET && ntohs(pp.src.sin.sin_port) == 56324
       && pp.srclen == sizeof(struct sockaddr_in), "TCP4 source sockaddr");
    ok(prefixes_again(tcp4, hlen), "TCP4: every prefix needs more");

    const char tcp6[] = "PROXY TCP6 2001:DB8::1 ::1 0 65535\r\n";
    is_int(parse(V1(tcp6), &pp), (int) strlen(tcp6), "TCP6 line");
    is_str(pp.src_text, "2001:db8::1", "TCP6 source address (canonical text)");
    is_str(pp.dst_text, "::1", "TCP6 destination address");
    ok(pp.src_port == 0 && pp.dst_port == 65535, "TCP6 ports 0 and 65535");
    ok(pp.src.sin6.sin6_family == AF_INET6, "TCP6 sockaddr family");
    ok(prefixes_again(tcp6, strlen(tcp6)), "TCP6: every prefix needs more");

    const char v4mapped[] = "PROXY TCP6 ::ffff:10.1.2.3 ::ffff:10.1.2.4 1 2\r\n";
    is_int(parse(V1(v4mapped), &pp), (int) strlen(v4mapped), "TCP6 with v4-mapped addresses");

    const char unk[] = "PROXY UNKNOWN\r\nxyz";
    is_int(parse(V1(unk), &pp), 15, "UNKNOWN alone");
    ok(pp.version == 1 && !pp.has_addr, "UNKNOWN: no addresses");
    const char unk2[] = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    is_int(parse(V1(unk2), &pp), (int) strlen(unk2), "UNKNOWN with ignored rest");
    ok(!pp.has_addr, "UNKNOWN with rest: no addresses");

    /* the longest legal TCP6 line (104 bytes) */
    const char longest[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    is_int(parse(V1(longest), &pp), (int) strlen(longest), "longest TCP6 line");
}

static void test_v1_limits(void)
{
    pt_proxy_protocol_t pp;
    char line[256];

    /* UNKNOWN padded to exactly 107 bytes with the CRLF: accepted */
    memset(line, 0, sizeof(line));
    strcpy(line, "PROXY UNKNOWN ");
    size_t l = strlen(line);
    memset(line + l, 'x', 107 - 2 - l);
    memcpy(line + 105, "\r\n", 2);
    is_int(parse(line, 107, &pp), 107, "107-byte line is accepted");
    is_int(parse(line, 107 + 20, &pp), 107, "107-byte line with data after it");
    ok(prefixes_again(line, 107), "107-byte line: every prefix needs more");

    /* 108 bytes: refused, whether it is all there or not */
    memset(line + l, 'x', 108 - 2 - l);
    memcpy(line + 106, "\r\n", 2);
    is_int(parse(line, 108, &pp), PT_PROXY_PROTOCOL_ERROR, "108-byte line is refused");
    is_int(parse(line, 107, &pp), PT_PROXY_PROTOCOL_ERROR,
           "107 bytes without CRLF: refused without waiting");
    is_int(parse(line, 106, &pp), PT_PROXY_PROTOCOL_AGAIN, "106 bytes without CRLF: need more");

    /* CR at the 107th byte with the LF beyond the limit */
    memset(line + l, 'x', 107 - 1 - l);
    line[106] = '\r';
    line[107] = '\n';
    is_int(parse(line, 108, &pp), PT_PROXY_PROTOCOL_ERROR, "CR at byte 107, LF at 108: refused");
}

static void test_v1_bad(void)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\r\n\r\n",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP44 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY \r\n",
        "PROXY TCP4\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 80 99999\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 123456 80\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 80\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 +1 80\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1a 80\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 0x10 80\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8  80\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 80 \r\n",
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8.9 1 2\r\n",
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        "PROXY TCP6 ::1 ::g 1 2\r\n",
        "PROXY TCP6 1::2::3 ::1 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        "PROXY UNKNOWN\n",
        "PROXY UNKNOWN x\ny\r\n",
        "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        "\r\n\r\n\0\r\nQUIX\n",
    };
    pt_proxy_protocol_t pp;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = strlen(bad[i]);
        if (i == sizeof(bad) / sizeof(bad[0]) - 1)
            len = 12;
        ok(parse(bad[i], len, &pp) == PT_PROXY_PROTOCOL_ERROR, "refused: %.*s", (int) strcspn(bad[i], "\r\n"),
           bad[i]);
    }
    /* refused as soon as the bytes cannot start a header */
    is_int(parse("G", 1, &pp), PT_PROXY_PROTOCOL_ERROR, "'G' alone is refused at once");
    is_int(parse("PROXX", 5, &pp), PT_PROXY_PROTOCOL_ERROR, "\"PROXX\" is refused at once");
    is_int(parse("PROXY TCP7", 10, &pp), PT_PROXY_PROTOCOL_ERROR, "\"PROXY TCP7\" refused at once");
    is_int(parse("PROXY TCP4 1.2.3.4 5.6.7.8 8x", 29, &pp), PT_PROXY_PROTOCOL_ERROR,
           "a letter in a port is refused at once");
    is_int(parse("", 0, &pp), PT_PROXY_PROTOCOL_AGAIN, "nothing yet: need more");
    is_int(parse("PRO", 3, &pp), PT_PROXY_PROTOCOL_AGAIN, "\"PRO\": need more");
}

/* ------------------------------------------------------------------------ */

static const unsigned char sig[12] = { '\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n' };

static size_t v2(unsigned char *out, unsigned vc, unsigned ft, const void *body, size_t blen)
{
    memcpy(out, sig, 12);
    out[12] = (unsigned char) vc;
    out[13] = (unsigned char) ft;
    out[14] = (unsigned char) (blen >> 8);
    out[15] = (unsigned char) blen;
    if (blen)
        memcpy(out + 16, body, blen);
    return 16 + blen;
}

static void test_v2(void)
{
    unsigned char buf[8192], body[8192];
    pt_proxy_protocol_t pp;
    size_t n;

    /* INET over stream, with two TLVs (ALPN, authority) that are skipped */
    unsigned char in4[12] = { 192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb };
    memcpy(body, in4, 12);
    memcpy(body + 12, "\x01\x00\x02h2\x02\x00\x07example", 15);
    n = v2(buf, 0x21, 0x11, body, 27);
    memcpy(buf + n, "GET", 3);
    is_int(parse(buf, n + 3, &pp), (int) n, "v2 INET: consumes header and TLVs only");
    ok(pp.version == 2 && pp.has_addr, "v2 INET: addresses");
    is_str(pp.src_text, "192.0.2.1", "v2 source address");
    is_str(pp.dst_text, "198.51.100.2", "v2 destination address");
    ok(pp.src_port == 56324 && pp.dst_port == 443, "v2 ports");
    ok(prefixes_again(buf, n), "v2 INET: every prefix needs more (truncated input)");

    /* INET6 */
    memset(body, 0, 36);
    body[0] = 0x20; body[1] = 0x01; body[2] = 0x0d; body[3] = 0xb8; body[15] = 5;
    body[31] = 1;
    body[32] = 0x30; body[33] = 0x39; body[34] = 0; body[35] = 80;
    n = v2(buf, 0x21, 0x21, body, 36);
    is_int(parse(buf, n, &pp), (int) n, "v2 INET6");
    is_str(pp.src_text, "2001:db8::5", "v2 INET6 source");
    is_str(pp.dst_text, "::1", "v2 INET6 destination");
    ok(pp.src_port == 12345 && pp.dst_port == 80 && pp.src.sin6.sin6_family == AF_INET6,
       "v2 INET6 ports and family");

    /* LOCAL: accepted whatever the family says, no addresses */
    n = v2(buf, 0x20, 0x00, NULL, 0);
    is_int(parse(buf, n, &pp), 16, "v2 LOCAL without payload");
    ok(pp.version == 2 && !pp.has_addr, "v2 LOCAL: no addresses");
    n = v2(buf, 0x20, 0x11, in4, 12);
    is_int(parse(buf, n, &pp), 28, "v2 LOCAL with an INET block (ignored)");
    ok(!pp.has_addr, "v2 LOCAL with INET block: no addresses");

    /* PROXY with UNSPEC family, UNIX family, DGRAM transport: accepted,
     * addresses unchanged */
    n = v2(buf, 0x21, 0x00, NULL, 0);
    ok(parse(buf, n, &pp) == 16 && !pp.has_addr, "v2 PROXY UNSPEC: accepted without addresses");
    memset(body, 'u', 216);
    n = v2(buf, 0x21, 0x31, body, 216);
    ok(parse(buf, n, &pp) == (ssize_t) n && !pp.has_addr, "v2 PROXY UNIX: accepted without addresses");
    n = v2(buf, 0x21, 0x12, in4, 12);
    ok(parse(buf, n, &pp) == (ssize_t) n && !pp.has_addr, "v2 PROXY INET DGRAM: no addresses");

    /* refused */
    n = v2(buf, 0x11, 0x11, in4, 12);
    is_int(parse(buf, n, &pp), PT_PROXY_PROTOCOL_ERROR, "v2 version 1 nibble refused");
    is_int(parse(buf, 13, &pp), PT_PROXY_PROTOCOL_ERROR, "bad version refused from byte 13");
    n = v2(buf, 0x22, 0x11, in4, 12);
    is_int(parse(buf, n, &pp), PT_PROXY_PROTOCOL_ERROR, "v2 command 2 refused");
    n = v2(buf, 0x21, 0x11, in4, 11);
    is_int(parse(buf, n, &pp), PT_PROXY_PROTOCOL_ERROR, "v2 INET with 11 address bytes refused");
    memset(body, 0, 36);
    n = v2(buf, 0x21, 0x21, body, 35);
    is_int(parse(buf, n, &pp), PT_PROXY_PROTOCOL_ERROR, "v2 INET6 with 35 address bytes refused");
    memcpy(buf, sig, 12);
    buf[11] = 'X';
    is_int(parse(buf, 12, &pp), PT_PROXY_PROTOCOL_ERROR, "v2 bad signature refused");

    /* size limit: 4096 bytes in all is the most */
    memset(body, 0, sizeof(body));
    memcpy(body, in4, 12);
    n = v2(buf, 0x21, 0x11, body, PT_PROXY_PROTOCOL_MAX - 16);
    is_int(parse(buf, n, &pp), PT_PROXY_PROTOCOL_MAX, "v2 header of exactly 4096 bytes accepted");
    v2(buf, 0x21, 0x11, NULL, 0);
    buf[14] = (PT_PROXY_PROTOCOL_MAX - 15) >> 8;
    buf[15] = (PT_PROXY_PROTOCOL_MAX - 15) & 0xff;
    is_int(parse(buf, 16, &pp), PT_PROXY_PROTOCOL_ERROR,
           "v2 length past the limit refused from the preamble alone");
    buf[14] = buf[15] = 0xff;
    is_int(parse(buf, 16, &pp), PT_PROXY_PROTOCOL_ERROR, "v2 length 65535 refused");
}

/* Random bytes never crash and never claim more than they were given. */
static void test_random(void)
{
    unsigned char buf[600];
    pt_proxy_protocol_t pp;
    unsigned seed = 12345;
    int good = 1;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t) (rand_r(&seed) % sizeof(buf));
        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char) rand_r(&seed);
        if (iter % 3 == 0 && len >= 6)
            memcpy(buf, "PROXY ", 6);
        else if (iter % 3 == 1 && len >= 16) {
            memcpy(buf, sig, 12);
            buf[12] = 0x21;
            buf[14] = 0;
        }
        ssize_t rc = parse(buf, len, &pp);
        if (rc > (ssize_t) len || rc == 0 || rc < -2)
            good = 0;
    }
    ok(good, "random inputs: result within the input");
}

int main(void)
{
    guard_init();
    subtest("v1 valid", test_v1_valid);
    subtest("v1 limits", test_v1_limits);
    subtest("v1 refused", test_v1_bad);
    subtest("v2", test_v2);
    subtest("random", test_random);
    return done_testing();
}
