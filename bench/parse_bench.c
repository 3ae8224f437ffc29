/* Micro-benchmark for src/http/h1_parse.c (not run in CI).
 *   cc -std=c17 -O2 -D_GNU_SOURCE -Isrc bench/parse_bench.c src/http/h1_parse.c \
 *      src/core/str.c -o build/parse_bench && build/parse_bench
 * Prints ns per call for a typical ~400-byte browser request (parsed whole,
 * and re-parsed from the start as it grows in 4 reads, the way the
 * connection layer calls it), a response head, URI normalisation and a
 * chunked body. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/h1_parse.h"

static const char browser_req[] =
    "GET /wp-content/uploads/2024/05/photo-1234.jpg?w=640&q=80 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n"
    "Accept: image/avif,image/webp,*/*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/blog/\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: sid=4f3c2b1a0e9d8c7b; theme=dark\r\n"
    "Sec-Fetch-Dest: image\r\n"
    "\r\n";

static const char response[] =
    "HTTP/1.1 200 OK\r\n"
    "Server: backend\r\n"
    "Date: Mon, 06 May 2024 10:00:00 GMT\r\n"
    "Content-Type: image/jpeg\r\n"
    "Content-Length: 48213\r\n"
    "Last-Modified: Sun, 05 May 2024 09:00:00 GMT\r\n"
    "ETag: \"5c2-61a0b3c4d5e6f\"\r\n"
    "Cache-Control: public, max-age=86400\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static volatile unsigned sink;   /* keeps results alive; wraps freely */

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 5000000;
    size_t len = sizeof(browser_req) - 1;
    pt_h1_header_t h[64];
    pt_h1_request_t r;
    pt_h1_response_t res;
    double t0, t;
    int st, rc = 0;

    /* whole request */
    t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        r.headers = h;
        r.nheaders = 64;
        rc = pt_h1_parse_request(browser_req, len, &r, 8192, 0, &st);
        sink += (unsigned) rc;
    }
    t = (now_ns() - t0) / (double) iters;
    if (rc != (int) len || r.nheaders != 9)
        return 1;
    printf("request  %zu bytes, %zu headers: %6.1f ns/parse  (%.2f GB/s)\n",
           len, r.nheaders, t, (double) len / t);

    /* the same request arriving in 4 reads, parsed from the start each time */
    t0 = now_ns();
    for (long i = 0; i < iters / 4; i++) {
        for (int k = 1; k <= 4; k++) {
            r.headers = h;
            r.nheaders = 64;
            sink += (unsigned) pt_h1_parse_request(browser_req, len * (size_t) k / 4, &r, 8192, 0, &st);
        }
    }
    t = (now_ns() - t0) / (double) (iters / 4);
    printf("request  in 4 reads (re-parse):  %6.1f ns/request\n", t);

    /* response head */
    t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        res.headers = h;
        res.nheaders = 64;
        sink += (unsigned) pt_h1_parse_response(response, sizeof(response) - 1, &res);
    }
    t = (now_ns() - t0) / (double) iters;
    printf("response %zu bytes, %zu headers: %6.1f ns/parse\n", sizeof(response) - 1,
           res.nheaders, t);

    /* URI normalisation of the request's path */
    {
        static const char p1[] = "/wp-content/uploads/2024/05/photo-1234.jpg?w=640&q=80";
        static const char p2[] = "/a/b/../c/./d%20e//f.html?x=1";
        pt_str_t in, uri, args, exten;
        char out[128];
        in.data = (char *) p1;
        in.len = sizeof(p1) - 1;
        t0 = now_ns();
        for (long i = 0; i < iters; i++)
            sink += (unsigned) pt_h1_normalize_uri(&in, out, &uri, &args, &exten, 1);
        t = (now_ns() - t0) / (double) iters;
        printf("normalize plain path (%zu bytes):  %6.1f ns\n", in.len, t);
        in.data = (char *) p2;
        in.len = sizeof(p2) - 1;
        t0 = now_ns();
        for (long i = 0; i < iters; i++)
            sink += (unsigned) pt_h1_normalize_uri(&in, out, &uri, &args, &exten, 1);
        t = (now_ns() - t0) / (double) iters;
        printf("normalize complex path (%zu bytes): %6.1f ns\n", in.len, t);
    }

    /* chunked: 64 KB body in 4 KB chunks, framing cost per MB */
    {
        size_t cap = 70000, n = 0;
        char *body = malloc(cap);
        for (int k = 0; k < 16; k++) {
            n += (size_t) sprintf(body + n, "1000\r\n");
            memset(body + n, 'x', 4096);
            n += 4096;
            n += (size_t) sprintf(body + n, "\r\n");
        }
        n += (size_t) sprintf(body + n, "0\r\n\r\n");
        long reps = iters / 1000 + 1;
        t0 = now_ns();
        for (long i = 0; i < reps; i++) {
            pt_h1_chunked_t ctx;
            size_t off = 0, used, dl;
            const char *d;
            int crc;
            memset(&ctx, 0, sizeof(ctx));
            do {
                crc = pt_h1_parse_chunked(&ctx, body + off, n - off, &used, &d, &dl);
                off += used;
            } while (crc == PT_H1_OK);
            sink += (unsigned) crc;
        }
        t = (now_ns() - t0) / (double) reps;
        printf("chunked  %zu-byte body, 16 chunks: %6.1f ns/body\n", n, t);
        free(body);
    }
    return 0;
}
