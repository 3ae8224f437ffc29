/* ACME building blocks (src/tls/acme_util.c): base64url against RFC 4648's
 * vectors, the minimal JSON reader and quoting, the JWK and its RFC 7638
 * thumbprint for a fixed P-256 key (expected values computed independently
 * with python3-cryptography), ES256 JWS made and checked (header fields,
 * payload, a 64-byte r||s signature, tampering detected), a CSR parsed
 * back with OpenSSL, and the helper's HTTP pieces (URL split, response
 * header lookup, chunked decoding). */
#include "tls/acme_util.c"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tap.h"

static const char fixed_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVv/jjyw2RgnMEOHX\n"
    "qs648tbk5oabznWkQhEVmfIzBj6hRANCAARL30SHY3hi5G8sXpxArFGgqIVkvcpc\n"
    "ob4PmTlkvr4RD6qMGNCwQN4kpB5L6JWcP5lAoAk6bPQ1wJIWLArYfjsM\n"
    "-----END PRIVATE KEY-----\n";
static const char fixed_jwk[] =
    "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"S99Eh2N4YuRvLF6cQKxRoKiFZL3KXKG-D5k5ZL6-EQ8\","
    "\"y\":\"qowY0LBA3iSkHkvolZw_mUCgCTps9DXAkhYsCth-Oww\"}";
static const char fixed_thumb[] = "lbSmivZz1YPJEjYp8S-AhFOTYBDpwqtQQoXLaaCH-mU";

static EVP_PKEY *fixed_key(void)
{
    BIO *b = BIO_new_mem_buf(fixed_key_pem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    return k;
}

static pt_json_t J(const char *s)
{
    pt_json_t v = { s, strlen(s) };
    return v;
}

static void test_base64url(void)
{
    static const struct { const char *in, *out; } v[] = {
        { "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" }, { "foobar", "Zm9vYmFy" },
    };
    char out[64];
    unsigned char back[64];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t n = pt_b64u_encode(out, (const unsigned char *) v[i].in, strlen(v[i].in));
        is_str(out, v[i].out, "encode \"%s\"");
        is_int(n, strlen(v[i].out), "encoded length");
        is_int(n, pt_b64u_len(strlen(v[i].in)), "pt_b64u_len");
        long d = pt_b64u_decode(back, out, n);
        ok(d == (long) strlen(v[i].in) && memcmp(back, v[i].in, (size_t) d) == 0, "round trip %zu", i);
    }
    const unsigned char url[] = { 0xfb, 0xff, 0xbf };
    pt_b64u_encode(out, url, 3);
    is_str(out, "-_-_", "URL alphabet: - and _, no + or /");
    is_int(pt_b64u_decode(back, "Zm9vYg==", 8), 4, "padding tolerated");
    is_int(pt_b64u_decode(back, "Zm9v+g", 6), -1, "'+' refused");
    is_int(pt_b64u_decode(back, "Zm9vY", 5), -1, "impossible length refused");
}

static void test_json(void)
{
    const char *doc =
        "{ \"status\" : \"pending\", \"n\": -1.5e3, \"ok\": true, \"nil\": null,\n"
        "  \"identifier\": {\"type\":\"dns\",\"value\":\"a.test\"},\n"
        "  \"inner\": {\"status\":\"not-me\"},\n"
        "  \"challenges\": [ {\"type\":\"tls-alpn-01\",\"token\":\"x\"},\n"
        "                   {\"type\":\"http-01\",\"url\":\"https://h/c/1\",\"token\":\"t_-9\"} ],\n"
        "  \"esc\": \"a\\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00\" }";
    char s[128];
    pt_json_t v = J(doc);

    ok(pt_json_skip(doc, doc + strlen(doc)) == doc + strlen(doc), "skip the whole document");
    ok(pt_json_str(pt_json_get(v, "status"), s, sizeof(s)) == 7 && strcmp(s, "pending") == 0,
       "top-level member, not the nested \"status\"");
    pt_json_t n = pt_json_get(v, "n");
    ok(n.len == 6 && memcmp(n.p, "-1.5e3", 6) == 0, "number span");
    ok(pt_json_get(v, "ok").len == 4 && pt_json_get(v, "nil").len == 4, "true / null spans");
    ok(pt_json_get(v, "missing").len == 0, "absent member");
    pt_json_str(pt_json_get(pt_json_get(v, "identifier"), "value"), s, sizeof(s));
    is_str(s, "a.test", "nested object member");

    pt_json_t list = pt_json_get(v, "challenges");
    pt_json_t c1 = pt_json_index(list, 1);
    pt_json_str(pt_json_get(c1, "type"), s, sizeof(s));
    is_str(s, "http-01", "array element 1");
    pt_json_str(pt_json_get(c1, "token"), s, sizeof(s));
    is_str(s, "t_-9", "its token");
    ok(pt_json_index(list, 2).len == 0, "past the end");
    ok(pt_json_index(pt_json_get(v, "status"), 0).len == 0, "index of a non-array");
    ok(pt_json_index(J("[]"), 0).len == 0 && pt_json_get(J("{}"), "a").len == 0, "empty containers");

    long len = pt_json_str(pt_json_get(v, "esc"), s, sizeof(s));
    is_str(s, "a\"b\\c/d\n\xc3\xa9\xf0\x9f\x98\x80", "escapes, \\u and a surrogate pair as UTF-8");
    is_int(len, 14, "unescaped length");
    ok(pt_json_str(pt_json_get(v, "esc"), s, 5) == -1, "too small an output refused");
    ok(pt_json_str(pt_json_get(v, "n"), s, sizeof(s)) == -1, "a number is not a string");

    /* malformed input never reads past the end or returns a value */
    const char *bad[] = { "{\"a\":\"unterminated}", "{\"a\" 1}", "{\"a\":1,}", "[1,,2]",
                          "{\"a\":\"\x01\"}", "{\"a\":[1,2}", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pt_json_t b = J(bad[i]);
        ok(pt_json_get(b, "a").len == 0 || i == 2, "malformed %zu: no value", i);
        ok(pt_json_skip(bad[i], bad[i] + strlen(bad[i])) == NULL, "malformed %zu: skip fails", i);
    }
    char deep[80];
    memset(deep, '[', 40);
    memset(deep + 40, ']', 40);
    ok(pt_json_skip(deep, deep + 80) == NULL, "nesting deeper than 32 refused");

    ok(pt_json_quote(s, sizeof(s), "a\"b\\c\n") > 0 && strcmp(s, "\"a\\\"b\\\\c\\u000a\"") == 0,
       "quote escapes");
    ok(pt_json_quote(s, 4, "abcdef") == -1, "quote refuses to overflow");
}

static void test_jwk(void)
{
    EVP_PKEY *k = fixed_key();
    char jwk[200], thumb[44];
    ok(k != NULL, "fixed key loads");
    ok(pt_acme_jwk(k, jwk, sizeof(jwk)) == (long) strlen(fixed_jwk), "jwk length");
    is_str(jwk, fixed_jwk, "jwk members in RFC 7638 order");
    ok(pt_acme_thumbprint(k, thumb) == 0, "thumbprint");
    is_str(thumb, fixed_thumb, "thumbprint matches an independent computation");
    ok(pt_acme_jwk(k, jwk, 20) == -1, "jwk refuses a short buffer");
    EVP_PKEY_free(k);
}

static void field(pt_json_t hdr, const char *key, char *out, size_t size)
{
    out[0] = '\0';
    pt_json_str(pt_json_get(hdr, key), out, size);
}

static void test_jws(void)
{
    EVP_PKEY *k = fixed_key();
    char *jws = pt_acme_jws(k, NULL, "nonce-1", "https://ca.test/new-acct",
                            "{\"termsOfServiceAgreed\":true}");
    ok(jws != NULL, "jws with jwk");
    ok(pt_acme_jws_verify(k, jws), "signature verifies");

    pt_json_t v = J(jws);
    char b64[1024], s[1024];
    unsigned char raw[1024];
    field(v, "protected", b64, sizeof(b64));
    long n = pt_b64u_decode(raw, b64, strlen(b64));
    raw[n > 0 ? n : 0] = '\0';
    pt_json_t hdr = { (char *) raw, (size_t) (n > 0 ? n : 0) };
    field(hdr, "alg", s, sizeof(s));
    is_str(s, "ES256", "alg");
    field(hdr, "nonce", s, sizeof(s));
    is_str(s, "nonce-1", "nonce");
    field(hdr, "url", s, sizeof(s));
    is_str(s, "https://ca.test/new-acct", "url");
    pt_json_t jwk = pt_json_get(hdr, "jwk");
    ok(jwk.len == strlen(fixed_jwk) && memcmp(jwk.p, fixed_jwk, jwk.len) == 0, "jwk in the header");
    ok(pt_json_get(hdr, "kid").len == 0, "no kid with jwk");

    field(v, "payload", b64, sizeof(b64));
    n = pt_b64u_decode(raw, b64, strlen(b64));
    ok(n == 29 && memcmp(raw, "{\"termsOfServiceAgreed\":true}", 29) == 0, "payload");
    field(v, "signature", b64, sizeof(b64));
    is_int(strlen(b64), 86, "signature is 64 raw bytes (r||s), not DER");

    /* tampering: another payload under the same signature */
    char *forged = strdup(jws);
    char *p = strstr(forged, "\"payload\":\"") + 11;
    *p = *p == 'A' ? 'B' : 'A';
    ok(!pt_acme_jws_verify(k, forged), "changed payload does not verify");
    free(forged);
    EVP_PKEY *other = pt_acme_key_generate();
    ok(!pt_acme_jws_verify(other, jws), "another key does not verify");
    EVP_PKEY_free(other);
    free(jws);

    /* POST-as-GET with kid */
    jws = pt_acme_jws(k, "https://ca.test/acct/1", "n2", "https://ca.test/order/1", NULL);
    ok(jws && pt_acme_jws_verify(k, jws), "POST-as-GET verifies");
    v = J(jws);
    field(v, "payload", s, sizeof(s));
    is_str(s, "", "empty payload");
    field(v, "protected", b64, sizeof(b64));
    n = pt_b64u_decode(raw, b64, strlen(b64));
    hdr.p = (char *) raw;
    hdr.len = (size_t) n;
    field(hdr, "kid", s, sizeof(s));
    is_str(s, "https://ca.test/acct/1", "kid");
    ok(pt_json_get(hdr, "jwk").len == 0, "no jwk with kid");
    free(jws);

    jws = pt_acme_jws(k, NULL, "n\"3", "https://ca.test/\"x", "{}");
    ok(jws && pt_acme_jws_verify(k, jws), "quotes in nonce and url are escaped");
    free(jws);
    EVP_PKEY_free(k);
}

static void test_csr(void)
{
    EVP_PKEY *k = pt_acme_key_generate();
    const char *names[] = { "a.test", "www.a.test" };
    char *csr = pt_acme_csr(k, names, 2);
    ok(csr != NULL, "csr made");
    unsigned char *der = malloc(strlen(csr));
    long n = pt_b64u_decode(der, csr, strlen(csr));
    const unsigned char *p = der;
    X509_REQ *req = n > 0 ? d2i_X509_REQ(NULL, &p, n) : NULL;
    ok(req != NULL, "DER parses");
    ok(req && X509_REQ_verify(req, k) == 1, "self-signature verifies with the key");
    STACK_OF(X509_EXTENSION) *exts = req ? X509_REQ_get_extensions(req) : NULL;
    GENERAL_NAMES *gens = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL) : NULL;
    ok(gens && sk_GENERAL_NAME_num(gens) == 2, "two SANs");
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && i < 2; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        ok(g->type == GEN_DNS && strcmp((const char *) ASN1_STRING_get0_data(g->d.dNSName),
                                        names[i]) == 0, "SAN %d is %s", i, names[i]);
    }
    char cn[64] = "";
    if (req)
        X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof(cn));
    is_str(cn, "a.test", "CN is the first name");
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    free(der);
    free(csr);
    ok(pt_acme_csr(k, names, 0) == NULL, "no names, no CSR");
    EVP_PKEY_free(k);
}

static void test_url(void)
{
    pt_acme_url_t u;
    ok(pt_acme_parse_url("https://acme.test/directory", &u) == 0 && u.tls
       && strcmp(u.host, "acme.test") == 0 && strcmp(u.port, "443") == 0
       && strcmp(u.path, "/directory") == 0, "https, default port");
    ok(pt_acme_parse_url("http://127.0.0.1:14000", &u) == 0 && !u.tls
       && strcmp(u.host, "127.0.0.1") == 0 && strcmp(u.port, "14000") == 0
       && strcmp(u.path, "/") == 0, "http, port, no path");
    ok(pt_acme_parse_url("https://[::1]:8443/dir?x=1", &u) == 0 && strcmp(u.host, "::1") == 0
       && strcmp(u.port, "8443") == 0 && strcmp(u.path, "/dir?x=1") == 0, "IPv6 literal");
    ok(pt_acme_parse_url("https://[::1]/d", &u) == 0 && strcmp(u.port, "443") == 0, "IPv6, default port");
    ok(pt_acme_parse_url("ftp://x/", &u) == -1, "other scheme refused");
    ok(pt_acme_parse_url("https:///x", &u) == -1, "empty host refused");
    ok(pt_acme_parse_url("https://x:/", &u) == -1, "empty port refused");
    ok(pt_acme_parse_url("https://x:44a/", &u) == -1, "non-numeric port refused");
    ok(pt_acme_parse_url("https://x:1234567/", &u) == -1, "long port refused");
    ok(pt_acme_parse_url("https://[::1/", &u) == -1, "unclosed bracket refused");
}

static void test_header(void)
{
    const char head[] = "HTTP/1.1 201 Created\r\nReplay-Nonce:  abc-123 \r\n"
                        "location: https://x/acct/1\r\nRetry-After:5\r\nX-Empty:\r\n";
    size_t n = 0;
    const char *v = pt_acme_header(head, sizeof(head) - 1, "Replay-Nonce", &n);
    ok(v && n == 7 && memcmp(v, "abc-123", 7) == 0, "value trimmed");
    v = pt_acme_header(head, sizeof(head) - 1, "Location", &n);
    ok(v && n == 16 && memcmp(v, "https://x/acct/1", 16) == 0, "case-insensitive name");
    v = pt_acme_header(head, sizeof(head) - 1, "retry-after", &n);
    ok(v && n == 1 && *v == '5', "no blank after the colon");
    v = pt_acme_header(head, sizeof(head) - 1, "X-Empty", &n);
    ok(v && n == 0, "empty value");
    ok(pt_acme_header(head, sizeof(head) - 1, "Replay", &n) == NULL, "a prefix is not a name");
    ok(pt_acme_header(head, sizeof(head) - 1, "Link", &n) == NULL, "absent");
    ok(pt_acme_header(head, 30, "Location", &n) == NULL, "only within hlen");
}

static void test_dechunk(void)
{
    char a[] = "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
    long n = pt_acme_dechunk(a, sizeof(a) - 1);
    ok(n == 12 && memcmp(a, "hello, world", 12) == 0, "two chunks, an extension, the last chunk");
    char b[] = "A\n0123456789\n0\n";
    n = pt_acme_dechunk(b, sizeof(b) - 1);
    ok(n == 10 && memcmp(b, "0123456789", 10) == 0, "bare LF, hex size");
    char c[] = "10\r\nshort\r\n";
    ok(pt_acme_dechunk(c, sizeof(c) - 1) == -1, "chunk longer than the data");
    char d[] = "5\r\nhello\r\n";
    ok(pt_acme_dechunk(d, sizeof(d) - 1) == -1, "no last chunk");
    char e[] = "\r\n5\r\nhello\r\n0\r\n";
    ok(pt_acme_dechunk(e, sizeof(e) - 1) == -1, "empty size line");
    char f[] = "fffffffffffffffffffff\r\nx";
    ok(pt_acme_dechunk(f, sizeof(f) - 1) == -1, "size overflow");
    /* exactly-sized heap copy: no reading past it */
    const char g[] = "3\r\nabc";
    char *h = malloc(sizeof(g) - 1);
    memcpy(h, g, sizeof(g) - 1);
    ok(pt_acme_dechunk(h, sizeof(g) - 1) == -1, "cut short, no over-read");
    free(h);
}

int main(void)
{
    subtest("url", test_url);
    subtest("header", test_header);
    subtest("dechunk", test_dechunk);
    subtest("base64url", test_base64url);
    subtest("json", test_json);
    subtest("jwk", test_jwk);
    subtest("jws", test_jws);
    subtest("csr", test_csr);
    return done_testing();
}
