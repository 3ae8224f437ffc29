/* Building blocks of the ACME client (acme.c), kept free of any process or
 * configuration state so the unit tests can drive them directly:
 * base64url, a minimal JSON reader and string writer, ES256 JWS (RFC 7515)
 * with a P-256 account key, the JWK thumbprint (RFC 7638), and CSR making.
 * Owner: tls (acme). */
#ifndef PT_ACME_UTIL_H
#define PT_ACME_UTIL_H

#include <stddef.h>

#include <openssl/evp.h>

/* base64url without padding. Returns the output length; out must hold
 * pt_b64u_len(n) + 1 bytes (NUL-terminated). */
#define pt_b64u_len(n) (((n) * 4 + 2) / 3)
size_t pt_b64u_encode(char *out, const unsigned char *in, size_t n);
/* Decodes base64url (padding tolerated). Returns the length or -1. out must
 * hold n * 3 / 4 + 3 bytes. */
long   pt_b64u_decode(unsigned char *out, const char *in, size_t n);

/* --- minimal JSON ---------------------------------------------------------- */
/* A span of the input: a whole JSON value as written (strings keep their
 * quotes). len == 0 means "absent". */
typedef struct {
    const char *p;
    size_t      len;
} pt_json_t;

/* Skips one value at s (after leading white space); returns the end or NULL
 * on malformed input. Nesting is limited to 32. */
const char *pt_json_skip(const char *s, const char *end);
/* The value of member `key` of the object v (top level only). */
pt_json_t   pt_json_get(pt_json_t v, const char *key);
/* The i-th element of the array v. */
pt_json_t   pt_json_index(pt_json_t v, size_t i);
/* Copies the string value v unescaped into out (NUL-terminated, \uXXXX as
 * UTF-8). Returns the length, or -1 when v is not a string or does not fit. */
long        pt_json_str(pt_json_t v, char *out, size_t size);
/* Appends s as a JSON string (with quotes, escaped) at out; returns the
 * number of bytes written, or -1 when it does not fit in size. */
long        pt_json_quote(char *out, size_t size, const char *s);

/* --- keys and JWS ---------------------------------------------------------- */
EVP_PKEY *pt_acme_key_generate(void);                 /* ECDSA P-256 */
/* The public JWK, members in RFC 7638 order ({"crv","kty","x","y"}), which
 * is also the input of the thumbprint. Returns the length or -1. */
long pt_acme_jwk(EVP_PKEY *key, char *out, size_t size);
/* base64url(SHA-256(jwk)), 43 characters + NUL in out[44]. */
int  pt_acme_thumbprint(EVP_PKEY *key, char out[44]);
/* A flattened JWS in JSON. kid == NULL: the protected header carries the
 * jwk. payload == NULL: POST-as-GET (empty payload). Returns a malloc'd,
 * NUL-terminated string, or NULL. */
char *pt_acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                  const char *payload);
/* Verifies a JWS made by pt_acme_jws with key (tests). Returns 1 if valid. */
int  pt_acme_jws_verify(EVP_PKEY *key, const char *jws);

/* A CSR (DER, base64url) for names[0..n) as subjectAltName dNSName entries
 * (names[0] is also the common name), signed with key. Returns a malloc'd
 * string or NULL. */
char *pt_acme_csr(EVP_PKEY *key, const char *const *names, size_t n);

/* --- the helper's HTTP/1.1 client ------------------------------------------- */
typedef struct {
    int         tls;          /* https */
    char        host[256];    /* without brackets for IPv6 */
    char        port[8];      /* default 443 / 80 */
    const char *path;         /* into the URL; "/" when it has none */
} pt_acme_url_t;

/* Splits an http:// or https:// URL. Returns 0 or -1. */
int         pt_acme_parse_url(const char *s, pt_acme_url_t *u);
/* The value of header `name` (case-insensitive) in a response head of hlen
 * bytes (lines end with CRLF or LF), surrounding blanks trimmed; NULL when
 * absent. */
const char *pt_acme_header(const char *head, size_t hlen, const char *name, size_t *vlen);
/* Decodes a chunked body of n bytes in place; returns the decoded length, or
 * -1 when it is malformed or cut short. */
long        pt_acme_dechunk(char *b, size_t n);

#endif
