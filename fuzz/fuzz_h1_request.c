/* libFuzzer target: the HTTP/1.x request-head parser and URI normalisation.
 *
 * Input: 3 control bytes, then the request bytes.
 *   c[0] bit 0 allow_underscores, bit 1 merge_slashes, bits 2-3 max_line,
 *        bit 4 small header capacity
 *   c[1..2] where to cut the input for the split check
 * Checks: every result field lies inside the parsed head and obeys the
 * grammar; parsing a prefix gives AGAIN before the end of the head and the
 * same result after it; normalisation output is well formed and a second
 * normalisation of it changes nothing. Buffers are exact-size heap copies so
 * ASan catches any read past the end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parse.h"

#define CAP 64

typedef struct {
    int             rc, status;
    unsigned        too_large;
    const char     *base;
    pt_h1_request_t r;
    pt_h1_header_t  h[CAP];
} result_t;

static void parse(const char *buf, size_t len, size_t max_line, int us, size_t cap,
                  result_t *o)
{
    memset(&o->r, 0, sizeof(o->r));
    o->r.headers = o->h;
    o->r.nheaders = cap;
    o->status = 0;
    o->base = buf;
    o->rc = pt_h1_parse_request(buf, len, &o->r, max_line, us, &o->status);
    o->too_large = o->r.too_large;
}

static int inside(const pt_str_t *s, const char *b, size_t n)
{
    return s->len == 0 || (s->data >= b && s->data + s->len <= b + n);
}

static int same(const pt_str_t *a, const pt_str_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void check_request(const result_t *o, size_t max_line)
{
    const pt_h1_request_t *r = &o->r;
    size_t n = (size_t) o->rc;

    if (!inside(&r->method, o->base, n) || !inside(&r->target, o->base, n)
        || !inside(&r->protocol, o->base, n) || !inside(&r->host, o->base, n)
        || !inside(&r->schema, o->base, n))
        abort();
    if (o->base[n - 1] != '\n')
        abort();
    if (!pt_h1_is_token(r->method.data, r->method.len) || r->target.len == 0
        || (r->version != 10 && r->version != 11) || r->protocol.len != 8
        || r->request_line_len > max_line || r->nheaders > CAP)
        abort();
    for (size_t i = 0; i < r->target.len; i++) {
        unsigned char c = (unsigned char) r->target.data[i];
        if (c <= 0x20 || c == 0x7f)
            abort();
    }
    if (r->path.len && r->path.data[0] != '/' && r->path.data[0] != '*')
        abort();
    for (size_t i = 0; i < r->nheaders; i++) {
        const pt_h1_header_t *h = &r->headers[i];
        if (!inside(&h->name, o->base, n) || !inside(&h->value, o->base, n))
            abort();
        if (!pt_h1_is_token(h->name.data, h->name.len)
            || !pt_h1_is_field_value(h->value.data, h->value.len))
            abort();
        if (h->value.len && (h->value.data[0] == ' ' || h->value.data[0] == '\t'
                             || h->value.data[h->value.len - 1] == ' '
                             || h->value.data[h->value.len - 1] == '\t'))
            abort();
        if ((size_t) (h->value.data + h->value.len - h->name.data) > max_line)
            abort();
    }
}

static void compare(const result_t *a, const result_t *b)
{
    if (a->rc != b->rc)
        abort();
    if (a->rc < 0)
        return;
    if (!same(&a->r.method, &b->r.method) || !same(&a->r.target, &b->r.target)
        || !same(&a->r.protocol, &b->r.protocol) || a->r.version != b->r.version
        || !same(&a->r.schema, &b->r.schema) || !same(&a->r.host, &b->r.host)
        || !same(&a->r.path, &b->r.path) || a->r.nheaders != b->r.nheaders
        || a->r.request_line_len != b->r.request_line_len)
        abort();
    for (size_t i = 0; i < a->r.nheaders; i++) {
        if (!same(&a->h[i].name, &b->h[i].name) || !same(&a->h[i].value, &b->h[i].value)
            || a->h[i].invalid_name != b->h[i].invalid_name)
            abort();
    }
}

/* The head ends at the first empty line after the request line: no other
 * reading of where it ends is possible (what smuggling needs). */
static void check_boundary(const result_t *o)
{
    const char *p = o->r.method.data, *end = o->base + o->rc, *e = NULL;
    for (; p < end; p++) {
        if (*p != '\n')
            continue;
        if (p + 1 < end && p[1] == '\n') {
            e = p + 2;
            break;
        }
        if (p + 2 < end && p[1] == '\r' && p[2] == '\n') {
            e = p + 3;
            break;
        }
    }
    if (e != end)
        abort();
}

/* Serialises the parsed head canonically and parses that again: the same
 * fields must come back. */
static void check_roundtrip(const result_t *o, size_t max_line, int us)
{
    const pt_h1_request_t *r = &o->r;
    size_t cap = r->method.len + r->target.len + 16, n = 0;
    result_t *b;
    char *buf;

    for (size_t i = 0; i < r->nheaders; i++)
        cap += r->headers[i].name.len + r->headers[i].value.len + 4;
    buf = malloc(cap);
    b = malloc(sizeof(*b));
#define PUT(d, l) do { memcpy(buf + n, (d), (l)); n += (l); } while (0)
    PUT(r->method.data, r->method.len);
    PUT(" ", 1);
    PUT(r->target.data, r->target.len);
    PUT(" ", 1);
    PUT(r->protocol.data, r->protocol.len);
    PUT("\r\n", 2);
    for (size_t i = 0; i < r->nheaders; i++) {
        PUT(r->headers[i].name.data, r->headers[i].name.len);
        PUT(": ", 2);
        if (r->headers[i].value.len)
            PUT(r->headers[i].value.data, r->headers[i].value.len);
        PUT("\r\n", 2);
    }
    PUT("\r\n", 2);
#undef PUT
    /* ": " may lengthen a line past max_line: allow for it */
    parse(buf, n, max_line + 1, us, CAP, b);
    if (b->rc != (int) n)
        abort();
    b->rc = o->rc;
    compare(o, b);
    free(b);
    free(buf);
}

/* Normalises t; checks the result; normalises the result again when that is
 * meaningful (no '%', '?', '#' left to reinterpret) and expects no change. */
static void normalize(const char *t, size_t len, int merge)
{
    char *in = malloc(len ? len : 1), *out = malloc(len ? len : 1), *out2;
    pt_str_t target, uri, args, exten, uri2, args2, exten2;

    memcpy(in, t, len);
    target.data = in;
    target.len = len;
    if (pt_h1_normalize_uri(&target, out, &uri, &args, &exten, merge) == 0) {
        if (uri.len == 0 || uri.len > len || uri.data != out || out[0] != '/')
            abort();
        if (!inside(&args, in, len) || (args.len && args.data[-1] != '?'))
            abort();
        if (exten.len && (exten.data < out || exten.data + exten.len != out + uri.len
                          || exten.data[-1] != '.'))
            abort();
        for (size_t i = 0; i < uri.len; i++) {
            if (out[i] == '\0')
                abort();
            if (out[i] == '/' && i + 1 < uri.len && out[i + 1] == '/' && merge)
                abort();
            if (out[i] == '/' && i + 1 < uri.len && out[i + 1] == '.'
                && (i + 2 == uri.len || out[i + 2] == '/'
                    || (out[i + 2] == '.' && (i + 3 == uri.len || out[i + 3] == '/'))))
                abort();     /* a "." or ".." segment survived */
        }
        if (!memchr(out, '%', uri.len) && !memchr(out, '?', uri.len)
            && !memchr(out, '#', uri.len)) {
            out2 = malloc(uri.len);
            if (pt_h1_normalize_uri(&uri, out2, &uri2, &args2, &exten2, merge) != 0
                || uri2.len != uri.len || memcmp(out2, out, uri.len) != 0
                || exten2.len != exten.len)
                abort();
            free(out2);
        }
    }
    free(in);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t max_lines[4] = { 8192, 64, 16, 4096 };
    size_t max_line, cap, cut, len;
    int us, merge;
    char *full, *part;
    result_t *a, *b;

    if (size < 3)
        return 0;
    us = data[0] & 1;
    merge = (data[0] >> 1) & 1;
    max_line = max_lines[(data[0] >> 2) & 3];
    cap = (data[0] & 0x10) ? 3 : CAP;
    len = size - 3;
    cut = len ? ((size_t) data[1] << 8 | data[2]) % (len + 1) : 0;

    full = malloc(len ? len : 1);
    memcpy(full, data + 3, len);
    part = malloc(cut ? cut : 1);
    memcpy(part, data + 3, cut);
    a = malloc(sizeof(*a));
    b = malloc(sizeof(*b));

    parse(full, len, max_line, us, cap, a);
    parse(part, cut, max_line, us, cap, b);

    if (a->rc > 0) {
        check_request(a, max_line);
        check_boundary(a);
        check_roundtrip(a, max_line, us);
        if (cut < (size_t) a->rc) {
            if (b->rc != PT_H1_AGAIN)
                abort();
        } else {
            compare(a, b);
        }
        if (a->r.path.len)
            normalize(a->r.path.data, a->r.path.len, merge);
    } else if (a->rc == PT_H1_AGAIN) {
        if (b->rc != PT_H1_AGAIN)
            abort();
    } else {
        if (a->rc != PT_H1_ERROR || (a->status != 400 && a->status != 414 && a->status != 505))
            abort();
        if (b->rc != PT_H1_AGAIN && b->rc != PT_H1_ERROR)
            abort();
    }

    /* the raw input as a target too: reaches escapes and dots directly */
    normalize(full, len, merge);

    free(a);
    free(b);
    free(full);
    free(part);
    return 0;
}
