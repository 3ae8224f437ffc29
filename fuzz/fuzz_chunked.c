/* libFuzzer target: the incremental chunked decoder.
 *
 * Input: 2 control bytes (seed for random piece sizes), then the body bytes.
 * The input is decoded three ways: in one piece, one byte at a time, and in
 * random pieces; the decoded data, the final return code and the number of
 * input bytes used must be identical. Each piece is an exact-size heap copy
 * so ASan catches over-reads. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parse.h"

typedef struct {
    int     rc;
    size_t  consumed;
    size_t  body_len;
    char   *body;
} result_t;

/* mode 0: one piece; 1: one byte at a time; 2: random sizes from seed */
static void decode(const uint8_t *in, size_t len, int mode, unsigned seed, result_t *o)
{
    pt_h1_chunked_t ctx;
    size_t off = 0;

    memset(&ctx, 0, sizeof(ctx));
    o->rc = PT_H1_AGAIN;
    o->body_len = 0;
    o->consumed = len;
    while (off < len) {
        size_t n = mode == 0 ? len - off : mode == 1 ? 1 : 1 + (seed = seed * 1103515245u + 12345u) % 37;
        size_t pos = 0;
        char *piece;
        if (n > len - off)
            n = len - off;
        piece = malloc(n);
        memcpy(piece, in + off, n);
        for (;;) {
            const char *d;
            size_t dl, used;
            int rc = pt_h1_parse_chunked(&ctx, piece + pos, n - pos, &used, &d, &dl);
            if (used > n - pos || (rc == PT_H1_OK) != (dl != 0))
                abort();
            if (dl) {
                if (d < piece + pos || d + dl > piece + pos + used)
                    abort();
                memcpy(o->body + o->body_len, d, dl);
                o->body_len += dl;
                if ((int64_t) o->body_len != ctx.body_size)
                    abort();
            }
            pos += used;
            if (rc == PT_H1_OK)
                continue;
            if (rc == PT_H1_AGAIN) {
                if (pos != n)
                    abort();
                break;
            }
            if (rc != PT_H1_DONE && rc != PT_H1_ERROR)
                abort();
            o->rc = rc;
            o->consumed = off + pos;
            free(piece);
            return;
        }
        free(piece);
        off += n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    result_t r[3];
    unsigned seed;

    if (size < 2)
        return 0;
    seed = (unsigned) data[0] << 8 | data[1];
    data += 2;
    size -= 2;
    for (int m = 0; m < 3; m++) {
        r[m].body = malloc(size ? size : 1);
        decode(data, size, m, seed, &r[m]);
    }
    for (int m = 1; m < 3; m++) {
        if (r[m].rc != r[0].rc || r[m].consumed != r[0].consumed
            || r[m].body_len != r[0].body_len
            || memcmp(r[m].body, r[0].body, r[0].body_len) != 0)
            abort();
    }
    for (int m = 0; m < 3; m++)
        free(r[m].body);
    return 0;
}
