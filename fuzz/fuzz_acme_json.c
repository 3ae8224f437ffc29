/* libFuzzer target: the minimal JSON reader of the ACME client
 * (src/tls/acme_util.c), which reads whatever an ACME server sends.
 *
 * The input is an exact-size heap copy (no terminating NUL) so ASan catches
 * any read past it. Checked: every span returned lies inside the input and
 * is a complete value (pt_json_skip ends exactly at its end); pt_json_str
 * never writes more than its size and NUL-terminates; member lookup, array
 * indexing and the nested lookups the client does (identifier.value,
 * challenges[i].token, error.detail) terminate; base64url decoding of any
 * text stays within n * 3 / 4 + 3 bytes; the helper's chunked decoder and
 * header lookup stay inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/acme_util.h"

static void check_span(pt_json_t in, pt_json_t v)
{
    if (v.len == 0)
        return;
    if (v.p < in.p || v.p + v.len > in.p + in.len)
        abort();
    if (pt_json_skip(v.p, v.p + v.len) != v.p + v.len)
        abort();
    char out[64];
    long n = pt_json_str(v, out, sizeof(out));
    if (n >= (long) sizeof(out) || (n >= 0 && out[n] != '\0'))
        abort();
}

static pt_json_t get(pt_json_t in, pt_json_t v, const char *key)
{
    pt_json_t r = pt_json_get(v, key);
    check_span(in, r);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    pt_json_t in = { buf, size };

    (void) pt_json_skip(buf, buf + size);
    static const char *const keys[] = {
        "status", "type", "detail", "token", "url", "finalize", "certificate",
        "newNonce", "newAccount", "newOrder", "meta", ""
    };
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        get(in, in, keys[k]);
    get(in, get(in, in, "identifier"), "value");
    get(in, get(in, in, "error"), "detail");
    pt_json_t list = get(in, in, "challenges");
    for (size_t i = 0; i < 4; i++) {
        pt_json_t c = pt_json_index(list, i);
        check_span(in, c);
        get(in, c, "token");
        get(in, get(in, c, "error"), "type");
        pt_json_t e = pt_json_index(in, i);
        check_span(in, e);
    }

    unsigned char *dec = malloc(size * 3 / 4 + 3);
    if (dec) {
        long n = pt_b64u_decode(dec, buf, size);
        if (n > (long) (size * 3 / 4 + 3))
            abort();
        free(dec);
    }
    /* the chunked decoder of the helper's HTTP client, on the same bytes */
    memcpy(buf, data, size);
    long d = pt_acme_dechunk(buf, size);
    if (d > (long) size)
        abort();
    size_t vn;
    const char *v = pt_acme_header(buf, size, "Replay-Nonce", &vn);
    if (v && (v < buf || v + vn > buf + size))
        abort();
    free(buf);
    return 0;
}
