/* ACME building blocks: base64url, a minimal JSON reader, ES256 JWS, JWK
 * thumbprint and CSRs. See acme_util.h. */
#include "acme_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* ---- base64url ---------------------------------------------------------- */

static const char b64u_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t pt_b64u_encode(char *out, const unsigned char *in, size_t n)
{
    char *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        *o++ = b64u_alphabet[v >> 18 & 63];
        *o++ = b64u_alphabet[v >> 12 & 63];
        *o++ = b64u_alphabet[v >> 6 & 63];
        *o++ = b64u_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t) in[i] << 16;
        *o++ = b64u_alphabet[v >> 18 & 63];
        *o++ = b64u_alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
        *o++ = b64u_alphabet[v >> 18 & 63];
        *o++ = b64u_alphabet[v >> 12 & 63];
        *o++ = b64u_alphabet[v >> 6 & 63];
    }
    *o = '\0';
    return (size_t) (o - out);
}

static int b64u_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

long pt_b64u_decode(unsigned char *out, const char *in, size_t n)
{
    while (n && in[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64u_value(in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t) v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char) (acc >> bits);
        }
    }
    return (long) o;
}

/* ---- JSON ----------------------------------------------------------------- */

static const char *ws(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++;
    return s;
}

static const char *skip_string(const char *s, const char *end)
{
    /* s at the opening quote */
    for (s++; s < end; s++) {
        if (*s == '\\') {
            s++;
            continue;
        }
        if (*s == '"')
            return s + 1;
        if ((unsigned char) *s < 0x20)
            return NULL;
    }
    return NULL;
}

static const char *skip_value(const char *s, const char *end, int depth)
{
    s = ws(s, end);
    if (s >= end || depth > 32)
        return NULL;
    if (*s == '"')
        return skip_string(s, end);
    if (*s == '{' || *s == '[') {
        char close = *s == '{' ? '}' : ']';
        int object = *s == '{';
        s = ws(s + 1, end);
        if (s < end && *s == close)
            return s + 1;
        for (;;) {
            if (object) {
                s = ws(s, end);
                if (s >= end || *s != '"')
                    return NULL;
                s = skip_string(s, end);
                if (s == NULL)
                    return NULL;
                s = ws(s, end);
                if (s >= end || *s != ':')
                    return NULL;
                s++;
            }
            s = skip_value(s, end, depth + 1);
            if (s == NULL)
                return NULL;
            s = ws(s, end);
            if (s >= end)
                return NULL;
            if (*s == close)
                return s + 1;
            if (*s != ',')
                return NULL;
            s++;
        }
    }
    /* number, true, false, null */
    const char *b = s;
    while (s < end && ((*s != '\0' && strchr("+-.eE", *s)) || (*s >= '0' && *s <= '9')
                       || (*s >= 'a' && *s <= 'z')))
        s++;
    return s > b ? s : NULL;
}

const char *pt_json_skip(const char *s, const char *end)
{
    return skip_value(s, end, 0);
}

pt_json_t pt_json_get(pt_json_t v, const char *key)
{
    pt_json_t none = { NULL, 0 };
    const char *end = v.p + v.len;
    const char *s = ws(v.p, end);
    size_t klen = strlen(key);

    if (v.len == 0 || s >= end || *s != '{')
        return none;
    s = ws(s + 1, end);
    if (s < end && *s == '}')
        return none;
    for (;;) {
        s = ws(s, end);
        if (s >= end || *s != '"')
            return none;
        const char *k = s + 1;
        s = skip_string(s, end);
        if (s == NULL)
            return none;
        int match = (size_t) (s - 1 - k) == klen && memcmp(k, key, klen) == 0;
        s = ws(s, end);
        if (s >= end || *s != ':')
            return none;
        const char *vb = ws(s + 1, end);
        s = skip_value(vb, end, 1);
        if (s == NULL)
            return none;
        if (match) {
            pt_json_t r = { vb, (size_t) (s - vb) };
            return r;
        }
        s = ws(s, end);
        if (s >= end || *s != ',')
            return none;
        s++;
    }
}

pt_json_t pt_json_index(pt_json_t v, size_t i)
{
    pt_json_t none = { NULL, 0 };
    const char *end = v.p + v.len;
    const char *s = ws(v.p, end);

    if (v.len == 0 || s >= end || *s != '[')
        return none;
    s = ws(s + 1, end);
    if (s < end && *s == ']')
        return none;
    for (size_t n = 0;; n++) {
        const char *vb = ws(s, end);
        s = skip_value(vb, end, 1);
        if (s == NULL)
            return none;
        if (n == i) {
            pt_json_t r = { vb, (size_t) (s - vb) };
            return r;
        }
        s = ws(s, end);
        if (s >= end || *s != ',')
            return none;
        s++;
    }
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned) (c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned) (c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned) (c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

long pt_json_str(pt_json_t v, char *out, size_t size)
{
    size_t o = 0;
    if (v.len < 2 || v.p[0] != '"' || v.p[v.len - 1] != '"' || size == 0)
        return -1;
    const char *s = v.p + 1, *end = v.p + v.len - 1;
    while (s < end) {
        char buf[4];
        size_t n = 1;
        if (*s != '\\') {
            buf[0] = *s++;
        } else {
            if (++s >= end)
                return -1;
            char e = *s++;
            switch (e) {
            case '"': case '\\': case '/': buf[0] = e; break;
            case 'b': buf[0] = '\b'; break;
            case 'f': buf[0] = '\f'; break;
            case 'n': buf[0] = '\n'; break;
            case 'r': buf[0] = '\r'; break;
            case 't': buf[0] = '\t'; break;
            case 'u': {
                unsigned cp;
                if (end - s < 4 || hex4(s, &cp) != 0)
                    return -1;
                s += 4;
                if (cp >= 0xd800 && cp < 0xdc00 && end - s >= 6 && s[0] == '\\' && s[1] == 'u') {
                    unsigned lo;
                    if (hex4(s + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        s += 6;
                    }
                }
                if (cp < 0x80) {
                    buf[0] = (char) cp;
                } else if (cp < 0x800) {
                    buf[0] = (char) (0xc0 | cp >> 6);
                    buf[1] = (char) (0x80 | (cp & 0x3f));
                    n = 2;
                } else if (cp < 0x10000) {
                    buf[0] = (char) (0xe0 | cp >> 12);
                    buf[1] = (char) (0x80 | (cp >> 6 & 0x3f));
                    buf[2] = (char) (0x80 | (cp & 0x3f));
                    n = 3;
                } else {
                    buf[0] = (char) (0xf0 | cp >> 18);
                    buf[1] = (char) (0x80 | (cp >> 12 & 0x3f));
                    buf[2] = (char) (0x80 | (cp >> 6 & 0x3f));
                    buf[3] = (char) (0x80 | (cp & 0x3f));
                    n = 4;
                }
                break;
            }
            default:
                return -1;
            }
        }
        if (o + n >= size)
            return -1;
        memcpy(out + o, buf, n);
        o += n;
    }
    out[o] = '\0';
    return (long) o;
}

long pt_json_quote(char *out, size_t size, const char *s)
{
    size_t o = 0;
#define PUT(c) do { if (o + 1 >= size) return -1; out[o++] = (c); } while (0)
    PUT('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char) *s;
        if (c == '"' || c == '\\') {
            PUT('\\');
            PUT((char) c);
        } else if (c < 0x20) {
            if (o + 7 >= size)
                return -1;
            o += (size_t) snprintf(out + o, size - o, "\\u%04x", c);
        } else {
            PUT((char) c);
        }
    }
    PUT('"');
#undef PUT
    out[o] = '\0';
    return (long) o;
}

/* ---- keys, JWK, JWS --------------------------------------------------------- */

EVP_PKEY *pt_acme_key_generate(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static int coord(EVP_PKEY *key, const char *name, char out[44])
{
    BIGNUM *bn = NULL;
    unsigned char raw[32];
    if (EVP_PKEY_get_bn_param(key, name, &bn) != 1)
        return -1;
    int ok = BN_bn2binpad(bn, raw, 32) == 32;
    BN_free(bn);
    if (!ok)
        return -1;
    pt_b64u_encode(out, raw, 32);
    return 0;
}

long pt_acme_jwk(EVP_PKEY *key, char *out, size_t size)
{
    char x[44], y[44];
    if (coord(key, OSSL_PKEY_PARAM_EC_PUB_X, x) != 0 || coord(key, OSSL_PKEY_PARAM_EC_PUB_Y, y) != 0)
        return -1;
    int n = snprintf(out, size, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
    return n < 0 || (size_t) n >= size ? -1 : n;
}

int pt_acme_thumbprint(EVP_PKEY *key, char out[44])
{
    char jwk[160];
    unsigned char md[32];
    unsigned int mdlen = 0;
    long n = pt_acme_jwk(key, jwk, sizeof(jwk));
    if (n < 0 || EVP_Digest(jwk, (size_t) n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -1;
    pt_b64u_encode(out, md, 32);
    return 0;
}

/* ES256 signature over data as JWS wants it: r || s, 32 bytes each. */
static int es256_sign(EVP_PKEY *key, const char *data, size_t n, unsigned char sig[64])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[80];
    size_t derlen = sizeof(der);
    int ok = 0;

    if (md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1
        && EVP_DigestSign(md, der, &derlen, (const unsigned char *) data, n) == 1) {
        const unsigned char *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long) derlen);
        if (es) {
            const BIGNUM *r, *s;
            ECDSA_SIG_get0(es, &r, &s);
            ok = BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32;
            ECDSA_SIG_free(es);
        }
    }
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

char *pt_acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                  const char *payload)
{
    char jwk[160], qnonce[256], qurl[1024], qkid[1024];
    size_t plen = payload ? strlen(payload) : 0;

    if (pt_json_quote(qnonce, sizeof(qnonce), nonce) < 0
        || pt_json_quote(qurl, sizeof(qurl), url) < 0)
        return NULL;
    if (kid) {
        if (pt_json_quote(qkid, sizeof(qkid), kid) < 0)
            return NULL;
    } else if (pt_acme_jwk(key, jwk, sizeof(jwk)) < 0) {
        return NULL;
    }
    char prot[1600];
    int pn = snprintf(prot, sizeof(prot), "{\"alg\":\"ES256\",\"%s\":%s,\"nonce\":%s,\"url\":%s}",
                      kid ? "kid" : "jwk", kid ? qkid : jwk, qnonce, qurl);
    if (pn < 0 || (size_t) pn >= sizeof(prot))
        return NULL;

    size_t b64p = pt_b64u_len((size_t) pn), b64l = pt_b64u_len(plen);
    /* signing input: b64(protected) "." b64(payload) */
    char *input = malloc(b64p + 1 + b64l + 1);
    if (input == NULL)
        return NULL;
    size_t a = pt_b64u_encode(input, (const unsigned char *) prot, (size_t) pn);
    input[a] = '.';
    size_t b = pt_b64u_encode(input + a + 1, (const unsigned char *) (payload ? payload : ""), plen);

    unsigned char sig[64];
    char sig64[90];
    if (es256_sign(key, input, a + 1 + b, sig) != 0) {
        free(input);
        return NULL;
    }
    pt_b64u_encode(sig64, sig, 64);

    size_t cap = a + b + 120 + 90;
    char *out = malloc(cap);
    if (out == NULL) {
        free(input);
        return NULL;
    }
    input[a] = '\0';
    snprintf(out, cap, "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}",
             input, input + a + 1, sig64);
    free(input);
    return out;
}

int pt_acme_jws_verify(EVP_PKEY *key, const char *jws)
{
    pt_json_t v = { jws, strlen(jws) };
    pt_json_t jp = pt_json_get(v, "protected"), jl = pt_json_get(v, "payload"),
              js = pt_json_get(v, "signature");
    if (jp.len < 2 || jl.len < 2 || js.len < 2)
        return 0;
    size_t n = jp.len - 2 + 1 + jl.len - 2;
    char *input = malloc(n + 1);
    unsigned char sig[80];
    int ok = 0;
    if (input == NULL)
        return 0;
    memcpy(input, jp.p + 1, jp.len - 2);
    input[jp.len - 2] = '.';
    memcpy(input + jp.len - 1, jl.p + 1, jl.len - 2);
    if (js.len - 2 <= 88 && pt_b64u_decode(sig, js.p + 1, js.len - 2) == 64) {
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        unsigned char *der = NULL;
        int derlen;
        if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
            r = s = NULL;
            derlen = i2d_ECDSA_SIG(es, &der);
            EVP_MD_CTX *md = EVP_MD_CTX_new();
            if (derlen > 0 && md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1)
                ok = EVP_DigestVerify(md, der, (size_t) derlen, (unsigned char *) input, n) == 1;
            EVP_MD_CTX_free(md);
            OPENSSL_free(der);
        }
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
    }
    free(input);
    return ok;
}

/* ---- CSR -------------------------------------------------------------------- */

char *pt_acme_csr(EVP_PKEY *key, const char *const *names, size_t n)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *subj = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    unsigned char *der = NULL;
    char *out = NULL;
    int len;

    if (req == NULL || subj == NULL || exts == NULL || gens == NULL || n == 0)
        goto done;
    if (X509_REQ_set_version(req, 0) != 1
        || X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *) names[0],
                                      -1, -1, 0) != 1
        || X509_REQ_set_subject_name(req, subj) != 1
        || X509_REQ_set_pubkey(req, key) != 1)
        goto done;
    for (size_t i = 0; i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (g == NULL || s == NULL || ASN1_STRING_set(s, names[i], -1) != 1) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
            goto done;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        if (sk_GENERAL_NAME_push(gens, g) <= 0) {
            GENERAL_NAME_free(g);
            goto done;
        }
    }
    X509_EXTENSION *ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
    if (ext == NULL || sk_X509_EXTENSION_push(exts, ext) <= 0) {
        X509_EXTENSION_free(ext);
        goto done;
    }
    if (X509_REQ_add_extensions(req, exts) != 1 || X509_REQ_sign(req, key, EVP_sha256()) <= 0)
        goto done;
    len = i2d_X509_REQ(req, &der);
    if (len <= 0)
        goto done;
    out = malloc(pt_b64u_len((size_t) len) + 1);
    if (out)
        pt_b64u_encode(out, der, (size_t) len);

done:
    OPENSSL_free(der);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(subj);
    X509_REQ_free(req);
    return out;
}

/* ---- HTTP/1.1 client pieces ---------------------------------------------------- */

int pt_acme_parse_url(const char *s, pt_acme_url_t *u)
{
    const char *p;
    memset(u, 0, sizeof(*u));
    if (strncmp(s, "https://", 8) == 0) {
        u->tls = 1;
        p = s + 8;
        strcpy(u->port, "443");
    } else if (strncmp(s, "http://", 7) == 0) {
        p = s + 7;
        strcpy(u->port, "80");
    } else {
        return -1;
    }
    const char *hend, *pstart = strchr(p, '/');
    if (pstart == NULL)
        pstart = p + strlen(p);
    u->path = *pstart ? pstart : "/";
    const char *colon = NULL;
    if (*p == '[') {
        hend = memchr(p, ']', (size_t) (pstart - p));
        if (hend == NULL)
            return -1;
        p++;
        if (hend[1] == ':')
            colon = hend + 1;
    } else {
        colon = memchr(p, ':', (size_t) (pstart - p));
        hend = colon ? colon : pstart;
    }
    if (hend - p <= 0 || (size_t) (hend - p) >= sizeof(u->host))
        return -1;
    memcpy(u->host, p, (size_t) (hend - p));
    if (colon) {
        size_t n = (size_t) (pstart - colon - 1);
        if (n == 0 || n >= sizeof(u->port))
            return -1;
        memcpy(u->port, colon + 1, n);
        u->port[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if (u->port[i] < '0' || u->port[i] > '9')
                return -1;
        long port = strtol(u->port, NULL, 10);
        if (port < 1 || port > 65535)
            return -1;
    }
    return 0;
}

const char *pt_acme_header(const char *head, size_t hlen, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = head, *end = head + hlen;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t) (end - p));
        if (eol == NULL)
            eol = end;
        if ((size_t) (eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *vlen = (size_t) (ve - v);
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

long pt_acme_dechunk(char *b, size_t n)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *eol = memchr(b + in, '\n', n - in);
        if (eol == NULL)
            return -1;
        /* chunk size: hex digits, then optional extensions up to the LF */
        size_t sz = 0, digits = 0;
        for (const char *h = b + in; h < eol; h++, digits++) {
            int v = *h >= '0' && *h <= '9' ? *h - '0'
                  : *h >= 'a' && *h <= 'f' ? *h - 'a' + 10
                  : *h >= 'A' && *h <= 'F' ? *h - 'A' + 10 : -1;
            if (v < 0)
                break;
            if (sz > (SIZE_MAX >> 4))
                return -1;
            sz = sz << 4 | (size_t) v;
        }
        if (digits == 0)
            return -1;
        in = (size_t) (eol - b) + 1;
        if (sz == 0)
            return (long) out;
        if (sz > n - in)
            return -1;
        memmove(b + out, b + in, sz);
        out += sz;
        in += sz;
        if (in < n && b[in] == '\r')
            in++;
        if (in < n && b[in] == '\n')
            in++;
    }
}

