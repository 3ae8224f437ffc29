/* HTTP/1.x message parsing: request heads, response heads, chunked bodies and
 * URI normalisation. The parsers neither allocate nor copy: results point into
 * the caller's buffer. Like picohttpparser, a head parser is called again with
 * the whole (grown) buffer when it returned PT_H1_AGAIN.
 *
 * Strict by design (a proxy must never guess): bare CR, obs-fold, control
 * bytes, whitespace before ':' or in names, NUL anywhere, a bad HTTP version
 * are errors. */
#ifndef PT_H1_PARSE_H
#define PT_H1_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include "../core/str.h"

#define PT_H1_OK      0
#define PT_H1_ERROR  -1
#define PT_H1_AGAIN  -2
#define PT_H1_DONE   -3

typedef struct {
    pt_str_t name;
    pt_str_t value;          /* leading/trailing SP/HTAB trimmed */
    unsigned invalid_name:1; /* name has bytes nginx treats as invalid (e.g. '_'
                              * when underscores are not allowed, '.'): the
                              * caller ignores (logs) such headers */
} pt_h1_header_t;

typedef struct {
    pt_str_t  method;
    pt_str_t  target;        /* request-target as sent */
    pt_str_t  protocol;      /* "HTTP/1.1"; empty for HTTP/0.9 (rejected) */
    unsigned  version;       /* 10 or 11 */
    /* absolute-form targets ("http://host:port/path?q") are split: */
    pt_str_t  schema;        /* "http"/"https" as sent (empty otherwise) */
    pt_str_t  host;          /* host[:port] of an absolute-form target, or
                              * the whole authority-form target (CONNECT) */
    pt_str_t  path;          /* "/path?q" part (origin-form and "*": ==
                              * target; absolute-form without a path: a
                              * static "/"; CONNECT: empty) */
    pt_h1_header_t *headers; /* caller's array */
    size_t    nheaders;      /* in: capacity; out: count (written only when
                              * the head is complete, so a caller may call
                              * again after PT_H1_AGAIN without resetting) */
    size_t    request_line_len; /* bytes of the request line without CRLF */
    unsigned  too_large:1;   /* with PT_H1_ERROR/400: a header line longer
                              * than max_line or more headers than capacity
                              * ("Request Header Or Cookie Too Large") */
} pt_h1_request_t;

typedef struct {
    unsigned  version;       /* 10 or 11 */
    int       status;        /* 100..999 */
    pt_str_t  reason;
    pt_h1_header_t *headers;
    size_t    nheaders;      /* in: capacity; out: count (only on success) */
} pt_h1_response_t;

/* Parses a request head in buf[0, len). Up to 8 empty lines before the
 * request line are skipped (RFC 9112 §2.2). Returns the number of bytes of
 * the head (through the empty line, leading empty lines included),
 * PT_H1_AGAIN when incomplete, or PT_H1_ERROR with *status set:
 *   400 malformed; also too many headers or a header line longer than
 *       max_line, with req->too_large set;
 *   414 request line longer than max_line;
 *   505 "HTTP/d.d" with a major version other than 1.
 * Errors are reported as soon as the bytes seen prove them, including a
 * line that is already longer than max_line before its end arrives.
 * Line ends are CRLF or a bare LF; a CR not followed by LF is an error.
 * Request line: token SP target SP "HTTP/1." DIGIT, single spaces. Target:
 * bytes 0x21-0x7e and >= 0x80; origin-form ('/'), "*" (OPTIONS only),
 * authority-form host:port (CONNECT, which accepts nothing else), or
 * absolute-form http(s)://host[:port][/path] (scheme case-insensitive; no
 * userinfo, no '?' straight after the authority). HTTP/1.2-1.9 give
 * version 11. Field lines: token ':' OWS value OWS; whitespace before ':',
 * obs-fold, NUL, CTLs other than HTAB and DEL are errors. Names with
 * token characters nginx rejects get invalid_name ('_' unless
 * allow_underscores, i.e. underscores_in_headers on). */
int pt_h1_parse_request(const char *buf, size_t len, pt_h1_request_t *req,
                        size_t max_line, int allow_underscores, int *status);

/* Parses a response head: "HTTP/1." DIGIT SP 3DIGIT [SP reason] line end
 * (status 100..999; the SP may be missing when the reason is empty), then
 * field lines as for requests with '_' valid. No leading empty lines, no
 * line-length limit (the caller's buffer bounds it). Returns bytes of the
 * head, PT_H1_AGAIN or PT_H1_ERROR (malformed: the proxy answers 502). */
int pt_h1_parse_response(const char *buf, size_t len, pt_h1_response_t *res);

/* Method token to PT_HTTP_* bit (request.h); PT_HTTP_UNKNOWN for other valid tokens. */
unsigned pt_h1_method_id(const pt_str_t *method);

/* Normalises the path part of a request target (it must start with '/')
 * into out (capacity >= target->len): splits off "?args" at the first '?'
 * (args point into the ORIGINAL input, undecoded; args->data is NULL when
 * there is no '?'), drops a "#fragment", percent-decodes, merges slashes
 * when merge_slashes and resolves "." and ".." segments. As in nginx, a
 * decoded '/' or '.' counts as a separator or dot ("/a/..%2F" is "/"); every
 * other decoded byte is plain data ("%3F" is a '?' in the uri, "%25" a '%').
 * uri points into out; exten (into out) is what follows the last '.' of the
 * last segment when that segment has a non-dot byte before it ("a.tar.gz":
 * "gz"; ".htaccess": none). Returns 0, or -1 (400) on a bad or truncated
 * escape, a NUL byte (raw or %00), a ".." above the root, or a path not
 * starting with '/'. */
int pt_h1_normalize_uri(const pt_str_t *target, char *out, pt_str_t *uri,
                        pt_str_t *args, pt_str_t *exten, int merge_slashes);

/* Incremental chunked-body decoder. Init with memset 0. */
typedef struct {
    int      state;
    int64_t  size;           /* bytes left in the current chunk */
    size_t   ext_len;        /* extension bytes on this size line (<= 4096) */
    size_t   trailer_len;    /* trailer-section bytes seen (<= 8192) */
    int64_t  body_size;      /* data bytes decoded so far */
    unsigned size_digits;    /* hex digits of the current chunk-size line */
} pt_h1_chunked_t;

/* Decodes from buf[0, len): sets *consumed (input bytes used) and *data /
 * *data_len to a slice of buf (never more than one chunk's worth per call;
 * NULL/0 when there is none). Returns PT_H1_OK (a data slice, data_len > 0;
 * call again with the rest), PT_H1_AGAIN (all input consumed, need more),
 * PT_H1_DONE (last chunk and trailers consumed; *consumed bytes used, the
 * rest belongs to the next message; later calls return DONE consuming 0),
 * PT_H1_ERROR (sticky: bad size, more than 16 hex digits, size or total
 * overflow, missing CRLF after data, bare CR, bad extension syntax, more
 * than 4096 extension bytes on one size line, more than 8192 trailer
 * bytes, malformed trailer line). Line ends are CRLF or a bare LF.
 * Extensions: *(BWS ";" BWS token [BWS "=" BWS (token / quoted-string)])
 * then BWS; trailers are checked as field lines and ignored. Feeding the
 * input in any split gives the same data, result and total consumed. */
int pt_h1_parse_chunked(pt_h1_chunked_t *ctx, const char *buf, size_t len,
                        size_t *consumed, const char **data, size_t *data_len);

/* Validation helpers shared with HTTP/2 and proxy code. */
int pt_h1_is_token(const char *p, size_t len);          /* RFC 9110 token */
int pt_h1_is_field_value(const char *p, size_t len);    /* no CTL except HTAB, no NUL/CR/LF */

#endif
