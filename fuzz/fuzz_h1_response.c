/* libFuzzer target: the HTTP/1.x response-head parser.
 *
 * Input: 2 control bytes (where to cut for the split check), then the
 * response bytes. Checks: fields inside the head and well formed; a prefix
 * gives AGAIN before the end of the head and the same result after it.
 * Buffers are exact-size heap copies so ASan catches over-reads. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parse.h"

#define CAP 64

typedef struct {
    int              rc;
    pt_h1_response_t r;
    pt_h1_header_t   h[CAP];
} result_t;

static void parse(const char *buf, size_t len, result_t *o)
{
    memset(&o->r, 0, sizeof(o->r));
    o->r.headers = o->h;
    o->r.nheaders = CAP;
    o->rc = pt_h1_parse_response(buf, len, &o->r);
}

static int same(const pt_str_t *a, const pt_str_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static int inside(const pt_str_t *s, const char *b, size_t n)
{
    return s->len == 0 || (s->data >= b && s->data + s->len <= b + n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len, cut;
    char *full, *part;
    result_t *a, *b;

    if (size < 2)
        return 0;
    len = size - 2;
    cut = len ? ((size_t) data[0] << 8 | data[1]) % (len + 1) : 0;
    full = malloc(len ? len : 1);
    memcpy(full, data + 2, len);
    part = malloc(cut ? cut : 1);
    memcpy(part, data + 2, cut);
    a = malloc(sizeof(*a));
    b = malloc(sizeof(*b));

    parse(full, len, a);
    parse(part, cut, b);

    if (a->rc > 0) {
        size_t n = (size_t) a->rc;
        if (full[n - 1] != '\n' || a->r.status < 100 || a->r.status > 999
            || (a->r.version != 10 && a->r.version != 11) || a->r.nheaders > CAP
            || !inside(&a->r.reason, full, n)
            || !pt_h1_is_field_value(a->r.reason.data, a->r.reason.len))
            abort();
        for (size_t i = 0; i < a->r.nheaders; i++) {
            if (!inside(&a->h[i].name, full, n) || !inside(&a->h[i].value, full, n)
                || !pt_h1_is_token(a->h[i].name.data, a->h[i].name.len)
                || !pt_h1_is_field_value(a->h[i].value.data, a->h[i].value.len))
                abort();
        }
        if (cut < n) {
            if (b->rc != PT_H1_AGAIN)
                abort();
        } else {
            if (b->rc != a->rc || b->r.status != a->r.status || b->r.version != a->r.version
                || !same(&a->r.reason, &b->r.reason) || a->r.nheaders != b->r.nheaders)
                abort();
            for (size_t i = 0; i < a->r.nheaders; i++) {
                if (!same(&a->h[i].name, &b->h[i].name) || !same(&a->h[i].value, &b->h[i].value)
                    || a->h[i].invalid_name != b->h[i].invalid_name)
                    abort();
            }
        }
    } else if (a->rc == PT_H1_AGAIN) {
        if (b->rc != PT_H1_AGAIN)
            abort();
    } else if (a->rc != PT_H1_ERROR || (b->rc != PT_H1_AGAIN && b->rc != PT_H1_ERROR)) {
        abort();
    }

    free(a);
    free(b);
    free(full);
    free(part);
    return 0;
}
