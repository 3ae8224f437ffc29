/* upstream.c: the in-place chunked relay (dechunk) in every split of its
 * input, the framing checks of a response head (scan_framing), the size of
 * a body read (relay_read_size). */
#include "../../../src/proxy/upstream.c"

#include "tap.h"

static const char *chunked_input =
    "5\r\nhello\r\n1;ext=v\r\n \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n";

/* Feeds `in` split at `cut` into two buffers, decoding each in place. */
static int relay(const char *in, size_t len, size_t cut, char *out, size_t *outlen, int *ka)
{
    pt_upstream_t u;
    memset(&u, 0, sizeof(u));
    u.keepalive = 1;
    size_t o = 0;
    int rc = PT_H1_OK;
    size_t parts[2][2] = { { 0, cut }, { cut, len } };
    for (int i = 0; i < 2 && rc != PT_H1_DONE; i++) {
        size_t n = parts[i][1] - parts[i][0];
        pt_buf_t *b = pt_buf_get(n ? n : 1);
        memcpy(b->last, in + parts[i][0], n);
        b->last += n;
        rc = dechunk(&u, b);
        if (rc == PT_H1_ERROR) {
            pt_buf_put(b);
            return rc;
        }
        memcpy(out + o, b->pos, pt_buf_size(b));
        o += pt_buf_size(b);
        pt_buf_put(b);
    }
    *outlen = o;
    *ka = u.keepalive;
    return rc;
}

static void test_dechunk_splits(void)
{
    size_t len = strlen(chunked_input);
    int all = 1;
    for (size_t cut = 0; cut <= len; cut++) {
        char out[128];
        size_t olen = 0;
        int ka = 0;
        int rc = relay(chunked_input, len, cut, out, &olen, &ka);
        if (rc != PT_H1_DONE || olen != 19 || memcmp(out, "hello chunked world", 19) != 0 || !ka) {
            all = 0;
            note("cut %zu: rc %d, \"%.*s\"", cut, rc, (int) olen, out);
        }
    }
    ok(all, "every split decodes to the same body and ends");
}

static void test_dechunk_errors(void)
{
    char out[64];
    size_t olen;
    int ka;
    const char *bad = "zz\r\nabc\r\n0\r\n\r\n";
    is_int(relay(bad, strlen(bad), 2, out, &olen, &ka), PT_H1_ERROR, "bad size is an error");
    const char *nocrlf = "3\r\nabcX0\r\n\r\n";
    is_int(relay(nocrlf, strlen(nocrlf), 5, out, &olen, &ka), PT_H1_ERROR, "missing CRLF after data");
    const char *extra = "3\r\nabc\r\n0\r\n\r\nEXTRA";
    is_int(relay(extra, strlen(extra), 0, out, &olen, &ka), PT_H1_DONE, "done with bytes after");
    ok(!ka, "bytes after the last chunk: connection not reused");
    is_strn(out, olen, "abc", "data before them relayed");
}

static const char *framing(const char *head, pt_upstream_t *u)
{
    static pt_h1_header_t hdrs[32];
    static pt_h1_response_t res;
    memset(&res, 0, sizeof(res));
    res.headers = hdrs;
    res.nheaders = 32;
    if (pt_h1_parse_response(head, strlen(head), &res) < 0)
        return "parse";
    memset(u, 0, sizeof(*u));
    u->res = &res;
    return scan_framing(u);
}

static void test_framing(void)
{
    pt_upstream_t u;
    ok(framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", &u) == NULL
       && u.headers_in.content_length_n == 5 && !u.headers_in.connection_close, "plain CL");
    ok(framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &u) == NULL,
       "repeated equal CL accepted");
    ok(framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", &u) != NULL,
       "different CLs rejected");
    ok(framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", &u) != NULL,
       "CL + TE rejected");
    ok(framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &u) != NULL,
       "TE other than chunked rejected");
    ok(framing("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", &u) != NULL, "negative CL rejected");
    ok(framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &u) == NULL
       && u.headers_in.chunked, "chunked");
    ok(framing("HTTP/1.0 200 OK\r\n\r\n", &u) == NULL && u.headers_in.connection_close,
       "HTTP/1.0: no keep-alive");
    ok(framing("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", &u) == NULL
       && !u.headers_in.connection_close, "HTTP/1.0 with keep-alive");
    ok(framing("HTTP/1.1 200 OK\r\nConnection: x, Close\r\n\r\n", &u) == NULL
       && u.headers_in.connection_close, "Connection: close token");
}

/* The body read size: proxy_buffers' room beside what the writer holds, at
 * least one buffer, at most RELAY_READ_MAX (or one buffer if larger); while
 * the writer holds nothing, RELAY_READ_BIG (or one buffer if larger). */
static void test_relay_read_size(void)
{
    is_int(relay_read_size(8 * 4096, 4096, 0), RELAY_READ_BIG, "8 x 4k, writer empty: a big read");
    is_int(relay_read_size(8 * 4096, 4096, 1), 8 * 4096 - 1, "one byte pending: the bound again");
    is_int(relay_read_size(8 * 4096, 4096, 10000), 8 * 4096 - 10000, "the writer's bytes count");
    is_int(relay_read_size(8 * 4096, 4096, 8 * 4096 - 100), 4096, "at least one buffer");
    is_int(relay_read_size(8 * 4096, 4096, 1 << 20), 4096, "writer over the limit: one buffer");
    is_int(relay_read_size(64 * 8192, 8192, 100), RELAY_READ_MAX, "capped at RELAY_READ_MAX");
    is_int(relay_read_size(64 * 8192, 8192, 0), RELAY_READ_BIG, "writer empty: RELAY_READ_BIG");
    is_int(relay_read_size(2 * (1 << 20), 1 << 20, 0), 1 << 20, "one buffer larger than the cap");
    is_int(relay_read_size(2 * (1 << 20), 1 << 20, 5), 1 << 20, "the same with bytes pending");
}

int main(void)
{
    subtest("relay read size", test_relay_read_size);
    subtest("dechunk splits", test_dechunk_splits);
    subtest("dechunk errors", test_dechunk_errors);
    subtest("framing", test_framing);
    pt_buf_freelist_drain();
    return done_testing();
}
