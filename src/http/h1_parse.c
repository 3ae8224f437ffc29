/* HTTP/1.x head parsers, chunked decoder and URI normalisation.
 *
 * The head parsers are re-entrant in the picohttpparser sense: they keep no
 * state between calls; a caller that got PT_H1_AGAIN calls again with the
 * whole, grown buffer. They never read past buf + len (the unit tests place
 * input against a PROT_NONE guard page to prove it).
 *
 * Hot loops classify bytes through 256-entry tables and, on x86-64, scan runs
 * of "ordinary" bytes (request target, field values) 16 at a time with SSE2;
 * no function is called per byte. */
#include "h1_parse.h"

#include <limits.h>
#include <string.h>

#include "request.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_EMPTY_LINES 8        /* CRLFs tolerated before a request line */
#define MAX_CHUNK_EXT   4096     /* chunk-extension bytes per size line */
#define MAX_TRAILERS    8192     /* trailer-section bytes per message */
#define MAX_SIZE_DIGITS 16

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Token classes (RFC 9110 tchar). Non-zero means "is a tchar"; the bits
 * record how nginx would judge the byte inside a header name:
 *   T_OK  letters, digits, '-'   always valid
 *   T_US  '_'                    valid only with underscores_in_headers
 *   T_ODD any other tchar        ("!#$%&'*+.^`|~") valid token, but nginx
 *                                ignores a header whose name has one */
#define T_OK  1
#define T_US  2
#define T_ODD 4

static const unsigned char tchar[256] = {
    ['0'] = T_OK, ['1'] = T_OK, ['2'] = T_OK, ['3'] = T_OK, ['4'] = T_OK,
    ['5'] = T_OK, ['6'] = T_OK, ['7'] = T_OK, ['8'] = T_OK, ['9'] = T_OK,
    ['A'] = T_OK, ['B'] = T_OK, ['C'] = T_OK, ['D'] = T_OK, ['E'] = T_OK,
    ['F'] = T_OK, ['G'] = T_OK, ['H'] = T_OK, ['I'] = T_OK, ['J'] = T_OK,
    ['K'] = T_OK, ['L'] = T_OK, ['M'] = T_OK, ['N'] = T_OK, ['O'] = T_OK,
    ['P'] = T_OK, ['Q'] = T_OK, ['R'] = T_OK, ['S'] = T_OK, ['T'] = T_OK,
    ['U'] = T_OK, ['V'] = T_OK, ['W'] = T_OK, ['X'] = T_OK, ['Y'] = T_OK,
    ['Z'] = T_OK,
    ['a'] = T_OK, ['b'] = T_OK, ['c'] = T_OK, ['d'] = T_OK, ['e'] = T_OK,
    ['f'] = T_OK, ['g'] = T_OK, ['h'] = T_OK, ['i'] = T_OK, ['j'] = T_OK,
    ['k'] = T_OK, ['l'] = T_OK, ['m'] = T_OK, ['n'] = T_OK, ['o'] = T_OK,
    ['p'] = T_OK, ['q'] = T_OK, ['r'] = T_OK, ['s'] = T_OK, ['t'] = T_OK,
    ['u'] = T_OK, ['v'] = T_OK, ['w'] = T_OK, ['x'] = T_OK, ['y'] = T_OK,
    ['z'] = T_OK,
    ['-'] = T_OK, ['_'] = T_US,
    ['!'] = T_ODD, ['#'] = T_ODD, ['$'] = T_ODD, ['%'] = T_ODD, ['&'] = T_ODD,
    ['\''] = T_ODD, ['*'] = T_ODD, ['+'] = T_ODD, ['.'] = T_ODD, ['^'] = T_ODD,
    ['`'] = T_ODD, ['|'] = T_ODD, ['~'] = T_ODD,
};

/* Returns the first byte in [p, end) that is <= lim or DEL (0x7f), or end.
 * lim 0x1f finds field-value stoppers (CTLs, including HTAB, CR, LF, NUL);
 * lim 0x20 finds request-target stoppers (also SP). Bytes >= 0x80 pass. */
static inline const char *scan_ctl(const char *p, const char *end, unsigned char lim)
{
#if defined(__SSE2__)
    const __m128i vlim = _mm_set1_epi8((char) lim);
    const __m128i vdel = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *) (const void *) p);
        /* unsigned v <= lim  <=>  min(v, lim) == v */
        __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(v, vlim), v);
        __m128i del = _mm_cmpeq_epi8(v, vdel);
        int m = _mm_movemask_epi8(_mm_or_si128(low, del));
        if (m)
            return p + __builtin_ctz((unsigned) m);
        p += 16;
    }
#endif
    for (; p < end; p++) {
        unsigned char c = (unsigned char) *p;
        if (c <= lim || c == 0x7f)
            break;
    }
    return p;
}

/* Called when a line is cut by the end of the buffer: is what we already have
 * of it longer than max? (A trailing CR may still become the line end.) */
static inline int partial_too_long(const char *line, const char *end, size_t max)
{
    size_t n = (size_t) (end - line);
    if (n && end[-1] == '\r')
        n--;
    return n > max;
}

int pt_h1_is_token(const char *p, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!tchar[(unsigned char) p[i]])
            return 0;
    }
    return 1;
}

int pt_h1_is_field_value(const char *p, size_t len)
{
    const char *end = p + len;
    for (;;) {
        p = scan_ctl(p, end, 0x1f);
        if (p == end)
            return 1;
        if (*p != '\t')
            return 0;
        p++;
    }
}

unsigned pt_h1_method_id(const pt_str_t *m)
{
    const char *s = m->data;
    switch (m->len) {
    case 3:
        if (memcmp(s, "GET", 3) == 0) return PT_HTTP_GET;
        if (memcmp(s, "PUT", 3) == 0) return PT_HTTP_PUT;
        break;
    case 4:
        if (memcmp(s, "POST", 4) == 0) return PT_HTTP_POST;
        if (memcmp(s, "HEAD", 4) == 0) return PT_HTTP_HEAD;
        break;
    case 5:
        if (memcmp(s, "PATCH", 5) == 0) return PT_HTTP_PATCH;
        if (memcmp(s, "TRACE", 5) == 0) return PT_HTTP_TRACE;
        break;
    case 6:
        if (memcmp(s, "DELETE", 6) == 0) return PT_HTTP_DELETE;
        break;
    case 7:
        if (memcmp(s, "OPTIONS", 7) == 0) return PT_HTTP_OPTIONS;
        if (memcmp(s, "CONNECT", 7) == 0) return PT_HTTP_CONNECT;
        break;
    }
    return PT_HTTP_UNKNOWN;
}

/* ------------------------------------------------------------------------ */
/* Header section (shared by requests and responses)                         */

/* Parses field lines from p through the empty line that ends the head.
 * Returns the position after that empty line, or NULL with *rc set to
 * PT_H1_AGAIN or PT_H1_ERROR (*too_large set when the error is a bound).
 * An incomplete line already longer than max_line is an error at once, so a
 * client cannot make the caller buffer forever. */
static const char *parse_headers(const char *p, const char *end,
                                 pt_h1_header_t *h, size_t cap, size_t *count,
                                 size_t max_line, int allow_us, int *rc,
                                 int *too_large)
{
    const char *line;
    size_t n = 0;

    for (;;) {
        const char *name_end, *vstart, *vend;
        unsigned cls = 0, k;

        line = p;
        if (unlikely(p == end))
            goto again;

        /* the empty line */
        if (*p == '\r') {
            if (p + 1 == end)
                goto again;
            if (p[1] != '\n')
                goto error;
            *count = n;
            return p + 2;
        }
        if (*p == '\n') {
            *count = n;
            return p + 1;
        }

        /* name: 1*tchar, then ':' at once (no whitespace before ':'). A line
         * starting with SP/HTAB (obs-fold, or whitespace after the start
         * line) fails here too. */
        while (p < end && (k = tchar[(unsigned char) *p]) != 0) {
            cls |= k;
            p++;
        }
        if (unlikely(p == end))
            goto again;
        if (unlikely(*p != ':' || p == line))
            goto error;
        if (unlikely(n == cap)) {
            *too_large = 1;
            goto error;
        }
        name_end = p++;

        /* OWS, value, OWS */
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        vstart = p;
        for (;;) {
            p = scan_ctl(p, end, 0x1f);
            if (unlikely(p == end))
                goto again;
            if (*p != '\t')
                break;
            p++;
        }
        vend = p;
        if (*p == '\r') {
            if (p + 1 == end)
                goto again;
            if (p[1] != '\n')
                goto error;          /* bare CR */
            p += 2;
        } else if (*p == '\n') {
            p++;
        } else {
            goto error;              /* NUL, other CTL, DEL */
        }
        if (unlikely((size_t) (vend - line) > max_line)) {
            *too_large = 1;
            goto error;
        }
        while (vend > vstart && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;

        h[n].name.data = (char *) line;
        h[n].name.len = (size_t) (name_end - line);
        h[n].value.data = (char *) vstart;
        h[n].value.len = (size_t) (vend - vstart);
        h[n].invalid_name = (cls & T_ODD) || ((cls & T_US) && !allow_us);
        n++;
    }

again:
    if (partial_too_long(line, end, max_line)) {
        *too_large = 1;
        goto error;
    }
    *rc = PT_H1_AGAIN;
    return NULL;
error:
    *rc = PT_H1_ERROR;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Request head                                                              */

/* Host characters accepted in absolute-form and authority-form targets: a
 * registered name of unreserved characters (RFC 3986 ALPHA DIGIT - . _ ~).
 * Userinfo, percent-encoding and sub-delims are refused: no client needs
 * them and each is a way to make two parsers disagree about the host. */
static const unsigned char hostchar[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1,
};

/* Parses host [":" port] at p; returns the position after it or NULL.
 * host is a reg-name or an IPv6 literal "[...]"; port is 1..5 digits and at
 * most 65535. need_port: authority-form (CONNECT) requires one. */
static const char *parse_authority(const char *p, const char *end, int need_port)
{
    const char *start = p;

    if (p < end && *p == '[') {
        for (p++; p < end && *p != ']'; p++) {
            unsigned char c = (unsigned char) *p;
            if (!((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
                  || c == ':' || c == '.'))
                return NULL;
        }
        if (p == end || p - start < 3)      /* "[" + at least "::" */
            return NULL;
        p++;
    } else {
        while (p < end && hostchar[(unsigned char) *p])
            p++;
        if (p == start)
            return NULL;
    }
    if (p < end && *p == ':') {
        unsigned port = 0;
        const char *d = ++p;
        while (p < end && *p >= '0' && *p <= '9' && p - d < 5)
            port = port * 10 + (unsigned) (*p++ - '0');
        if (p == d || port > 65535)
            return NULL;
    } else if (need_port) {
        return NULL;
    }
    return p;
}

/* Splits the request target into schema/host/path by its form (RFC 9112
 * §3.2). Returns 0 or -1 (400). */
static int parse_target(pt_h1_request_t *req, unsigned method)
{
    static char root[] = "/";
    const char *t = req->target.data, *end = t + req->target.len, *p;

    req->schema.len = 0;
    req->schema.data = NULL;
    req->host.len = 0;
    req->host.data = NULL;

    if (method == PT_HTTP_CONNECT) {
        /* authority-form only */
        if (parse_authority(t, end, 1) != end)
            return -1;
        req->host = req->target;
        req->path.len = 0;
        req->path.data = NULL;
        return 0;
    }
    if (*t == '/') {
        req->path = req->target;
        return 0;
    }
    if (*t == '*') {
        if (req->target.len != 1 || method != PT_HTTP_OPTIONS)
            return -1;
        req->path = req->target;
        return 0;
    }

    /* absolute-form: "http" ["s"] "://" authority [path-abempty ["?" query]] */
    p = t;
    if (end - p >= 7 && pt_strncasecmp(p, "http://", 7) == 0) {
        p += 4;
    } else if (end - p >= 8 && pt_strncasecmp(p, "https://", 8) == 0) {
        p += 5;
    } else {
        return -1;
    }
    req->schema.data = (char *) t;
    req->schema.len = (size_t) (p - t);
    p += 3;
    req->host.data = (char *) p;
    p = parse_authority(p, end, 0);
    if (p == NULL)
        return -1;
    req->host.len = (size_t) (p - req->host.data);
    if (p == end) {
        req->path.data = root;
        req->path.len = 1;
        return 0;
    }
    if (*p != '/')
        return -1;      /* '?' right after the authority, '@' (userinfo), ... */
    req->path.data = (char *) p;
    req->path.len = (size_t) (end - p);
    return 0;
}

int pt_h1_parse_request(const char *buf, size_t len, pt_h1_request_t *req,
                        size_t max_line, int allow_underscores, int *status)
{
    static const char http[] = "HTTP/";
    const char *p = buf, *end = buf + len, *line, *lend, *v;
    unsigned method, empty = 0;
    size_t avail, i, nh;
    int rc, too_large = 0, st = 400;

    req->too_large = 0;
    if (len > INT_MAX)           /* a head is never that large: keep the */
        len = INT_MAX;           /* byte count representable as int */
    end = buf + len;

    /* RFC 9112 §2.2: ignore a few empty lines before the request line */
    for (;;) {
        if (p == end)
            return PT_H1_AGAIN;
        if (*p == '\r') {
            if (p + 1 == end)
                return PT_H1_AGAIN;
            if (p[1] != '\n')
                goto error;
            p += 2;
        } else if (*p == '\n') {
            p++;
        } else {
            break;
        }
        if (++empty > MAX_EMPTY_LINES)
            goto error;
    }
    line = p;

    /* method SP */
    /* nginx's method alphabet: upper-case letters, '_' and '-' ("get" is 400) */
    while (p < end && ((*p >= 'A' && *p <= 'Z') || *p == '_' || *p == '-'))
        p++;
    if (p == end)
        goto again_line;
    if (p == line || *p != ' ')
        goto error;
    req->method.data = (char *) line;
    req->method.len = (size_t) (p - line);
    p++;

    /* request-target SP: visible ASCII and bytes >= 0x80 */
    req->target.data = (char *) p;
    p = scan_ctl(p, end, 0x20);
    if (p == end)
        goto again_line;
    if (*p != ' ' || p == req->target.data)
        goto error;
    req->target.len = (size_t) (p - req->target.data);
    p++;

    /* "HTTP/" DIGIT "." DIGIT, checked as far as we have it */
    v = p;
    avail = (size_t) (end - p);
    if (avail > 8)
        avail = 8;
    for (i = 0; i < avail; i++) {
        char c = p[i];
        if (i < 5 ? c != http[i] : i == 6 ? c != '.' : (c < '0' || c > '9'))
            goto error;
    }
    if (avail < 8)
        goto again_line;
    p += 8;

    /* CRLF (or a bare LF); never a lone CR */
    if (p == end)
        goto again_line;
    if (*p == '\r') {
        if (p + 1 == end)
            goto again_line;
        if (p[1] != '\n')
            goto error;
        lend = p;
        p += 2;
    } else if (*p == '\n') {
        lend = p;
        p++;
    } else {
        goto error;              /* "HTTP/1.10", trailing SP, ... */
    }

    if ((size_t) (lend - line) > max_line) {
        st = 414;
        goto error;
    }
    /* The target is checked before the version, so the HTTP/2 preface
     * ("PRI * HTTP/2.0") on a plain HTTP/1 port is a 400, as nginx answers. */
    method = pt_h1_method_id(&req->method);
    if (parse_target(req, method) != 0)
        goto error;
    if (v[5] != '1') {
        st = 505;                /* HTTP/0.x, HTTP/2.0 and up */
        goto error;
    }
    req->protocol.data = (char *) v;
    req->protocol.len = 8;
    req->version = v[7] == '0' ? 10 : 11;    /* HTTP/1.2..1.9 behave as 1.1 */
    req->request_line_len = (size_t) (lend - line);

    p = parse_headers(p, end, req->headers, req->nheaders, &nh, max_line,
                      allow_underscores, &rc, &too_large);
    if (p == NULL) {
        if (rc == PT_H1_AGAIN)
            return PT_H1_AGAIN;
        req->too_large = (unsigned) too_large;
        goto error;
    }
    req->nheaders = nh;
    return (int) (p - buf);

again_line:
    if (partial_too_long(line, end, max_line)) {
        st = 414;
        goto error;
    }
    return PT_H1_AGAIN;

error:
    if (status)
        *status = st;
    return PT_H1_ERROR;
}

/* ------------------------------------------------------------------------ */
/* Response head                                                             */

int pt_h1_parse_response(const char *buf, size_t len, pt_h1_response_t *res)
{
    static const char pat[] = "HTTP/1.";
    const char *p = buf, *end, *r;
    size_t avail, i, nh;
    int rc, too_large = 0;

    if (len > INT_MAX)
        len = INT_MAX;
    end = buf + len;
    avail = len;

    /* "HTTP/1." DIGIT SP 3DIGIT */
    if (avail > 12)
        avail = 12;
    for (i = 0; i < avail; i++) {
        char c = p[i];
        if (i < 7 ? c != pat[i]
            : i == 8 ? c != ' '
            : i == 9 ? (c < '1' || c > '9')
            : (c < '0' || c > '9'))
            return PT_H1_ERROR;
    }
    if (avail < 12)
        return PT_H1_AGAIN;
    res->version = p[7] == '0' ? 10 : 11;
    res->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    p += 12;

    /* [SP reason] CRLF; the SP may be missing when the reason is empty */
    if (p == end)
        return PT_H1_AGAIN;
    if (*p == ' ') {
        p++;
        r = p;
        for (;;) {
            p = scan_ctl(p, end, 0x1f);
            if (p == end)
                return PT_H1_AGAIN;
            if (*p != '\t')
                break;
            p++;
        }
    } else {
        r = p;
    }
    res->reason.data = (char *) r;
    res->reason.len = (size_t) (p - r);
    if (*p == '\r') {
        if (p + 1 == end)
            return PT_H1_AGAIN;
        if (p[1] != '\n')
            return PT_H1_ERROR;
        p += 2;
    } else if (*p == '\n') {
        p++;
    } else {
        return PT_H1_ERROR;
    }

    p = parse_headers(p, end, res->headers, res->nheaders, &nh, SIZE_MAX, 1,
                      &rc, &too_large);
    if (p == NULL)
        return rc;
    res->nheaders = nh;
    return (int) (p - buf);
}

/* ------------------------------------------------------------------------ */
/* URI normalisation                                                         */

static const signed char hexval[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7,
    ['7'] = 8, ['8'] = 9, ['9'] = 10,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
    ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};  /* value + 1; 0 = not a hex digit */

/* Closes the segment out[*seg, *u) at a '/' or at the end of the path:
 * "." disappears, ".." also takes the segment before it. The '/' before the
 * segment stays, so "/a/b/.." is "/a/". Returns -1 for a ".." at the root. */
static inline int close_segment(char *out, char **u, char **seg)
{
    size_t n = (size_t) (*u - *seg);

    if (n == 1 && (*seg)[0] == '.') {
        *u = *seg;
        return 1;
    }
    if (n == 2 && (*seg)[0] == '.' && (*seg)[1] == '.') {
        char *s = *seg - 1;      /* the '/' before ".." */
        if (s == out)
            return -1;
        do
            s--;
        while (*s != '/');       /* out[0] is '/', so this stops */
        *u = *seg = s + 1;
        return 1;
    }
    return 0;
}

int pt_h1_normalize_uri(const pt_str_t *target, char *out, pt_str_t *uri,
                        pt_str_t *args, pt_str_t *exten, int merge_slashes)
{
    const char *p = target->data, *end = p + target->len, *q;
    char *u = out, *seg, *dot;
    int rc;

    /* args: after the first '?' up to a '#' (the fragment is dropped, as
     * nginx), undecoded */
    q = target->len ? memchr(p, '?', target->len) : NULL;
    if (q) {
        const char *hash = memchr(q + 1, '#', (size_t) (end - q - 1));
        args->data = (char *) q + 1;
        args->len = (size_t) ((hash ? hash : end) - q - 1);
        end = q;
    } else {
        args->data = NULL;
        args->len = 0;
    }
    /* a fragment never reaches the path */
    q = end > p ? memchr(p, '#', (size_t) (end - p)) : NULL;
    if (q)
        end = q;

    if (p == end || *p != '/')
        return -1;
    *u++ = '/';
    seg = u;
    p++;

    while (p < end) {
        unsigned char c = (unsigned char) *p++;

        if (c == '%') {
            int hi, lo;
            if (end - p < 2)
                return -1;
            hi = hexval[(unsigned char) p[0]];
            lo = hexval[(unsigned char) p[1]];
            if (!hi || !lo)
                return -1;
            c = (unsigned char) (((hi - 1) << 4) | (lo - 1));
            p += 2;
            /* A decoded '/' or '.' counts as a separator or dot, exactly as
             * if sent plain: "/a/..%2f" must not escape a location. Every
             * other decoded byte is plain data ("%3F" is a '?' in the path,
             * "%25" is a '%' that is not decoded again). */
        }
        if (unlikely(c == '\0'))
            return -1;
        if (c != '/') {
            *u++ = (char) c;
            continue;
        }
        rc = close_segment(out, &u, &seg);
        if (rc < 0)
            return -1;
        if (rc > 0)
            continue;            /* the '/' before the segment is reused */
        if (merge_slashes && u[-1] == '/')
            continue;
        *u++ = '/';
        seg = u;
    }
    if (close_segment(out, &u, &seg) < 0)
        return -1;

    uri->data = out;
    uri->len = (size_t) (u - out);

    /* extension: after the last '.' of the last segment, if that '.' has a
     * byte other than '.' before it in the segment (".htaccess" has none) */
    exten->data = NULL;
    exten->len = 0;
    for (dot = u; dot > seg && dot[-1] != '.'; dot--)
        ;
    if (dot > seg) {
        const char *b;
        for (b = seg; b < dot - 1 && *b == '.'; b++)
            ;
        if (b < dot - 1) {
            exten->data = dot;
            exten->len = (size_t) (u - dot);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Chunked transfer coding (RFC 9112 §7.1)                                   */

enum {
    CH_SIZE_START = 0,   /* first hex digit of chunk-size */
    CH_SIZE,             /* more hex digits */
    CH_EXT_BWS,          /* after size or an extension: BWS, ';' or line end */
    CH_EXT_NAME_START,   /* after ';': BWS, then a token */
    CH_EXT_NAME,
    CH_EXT_AFTER_NAME,   /* BWS, then '=', ';' or line end */
    CH_EXT_VAL_START,    /* after '=': BWS, then token or quoted-string */
    CH_EXT_VAL_TOKEN,
    CH_EXT_QUOTED,
    CH_EXT_QUOTED_ESC,
    CH_SIZE_LF,          /* CR seen at the end of the size line */
    CH_DATA,
    CH_DATA_CR,          /* CRLF (or LF) after chunk-data */
    CH_DATA_LF,
    CH_TRAILER_START,    /* start of a trailer line or the final empty line */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF,           /* CR of the final empty line seen */
    CH_DONE,
    CH_ERROR
};

/* qdtext and quoted-pair bytes (RFC 9110 §5.6.4): HTAB, SP, VCHAR except
 * '"' and '\' (which the state machine handles), obs-text */
static inline int is_qdtext(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

int pt_h1_parse_chunked(pt_h1_chunked_t *ctx, const char *buf, size_t len,
                        size_t *consumed, const char **data, size_t *data_len)
{
    const char *p = buf, *end = buf + len;
    int state = ctx->state;

    *data = NULL;
    *data_len = 0;

    if (state == CH_DONE) {
        *consumed = 0;
        return PT_H1_DONE;
    }
    if (state == CH_ERROR)
        goto error;

    while (p < end) {
        unsigned char c;

        if (state == CH_DATA) {
            size_t n = (size_t) (end - p);
            if ((uint64_t) n > (uint64_t) ctx->size)
                n = (size_t) ctx->size;
            *data = p;
            *data_len = n;
            ctx->size -= (int64_t) n;
            ctx->body_size += (int64_t) n;
            if (ctx->size == 0)
                state = CH_DATA_CR;
            p += n;
            ctx->state = state;
            *consumed = (size_t) (p - buf);
            return PT_H1_OK;
        }

        c = (unsigned char) *p++;

        /* extension bytes (BWS included, the line end not) are bounded per
         * chunk-size line; trailer bytes per message */
        if (state >= CH_EXT_BWS && state <= CH_EXT_QUOTED_ESC) {
            if (c != '\r' && c != '\n' && ++ctx->ext_len > MAX_CHUNK_EXT)
                goto error;
        } else if (state >= CH_TRAILER_START && state <= CH_END_LF) {
            if (++ctx->trailer_len > MAX_TRAILERS)
                goto error;
        }

        switch (state) {
        case CH_SIZE_START:
        case CH_SIZE: {
            int d = hexval[c];
            if (d) {
                if (++ctx->size_digits > MAX_SIZE_DIGITS
                    || ctx->size > (INT64_MAX >> 4))
                    goto error;
                ctx->size = (ctx->size << 4) | (d - 1);
                state = CH_SIZE;
                break;
            }
            if (state == CH_SIZE_START)
                goto error;
            ctx->ext_len = 1;    /* the byte after the digits, if ext */
            if (c == ' ' || c == '\t')
                state = CH_EXT_BWS;
            else if (c == ';')
                state = CH_EXT_NAME_START;
            else if (c == '\r')
                state = CH_SIZE_LF;
            else if (c == '\n')
                goto size_line_done;
            else
                goto error;
            break;
        }

        case CH_EXT_BWS:
            if (c == ' ' || c == '\t')
                break;
            if (c == ';')
                state = CH_EXT_NAME_START;
            else if (c == '\r')
                state = CH_SIZE_LF;
            else if (c == '\n')
                goto size_line_done;
            else
                goto error;
            break;

        case CH_EXT_NAME_START:
            if (c == ' ' || c == '\t')
                break;
            if (!tchar[c])
                goto error;
            state = CH_EXT_NAME;
            break;

        case CH_EXT_NAME:
            if (tchar[c])
                break;
            /* fall through */
        case CH_EXT_AFTER_NAME:
            if (c == ' ' || c == '\t')
                state = CH_EXT_AFTER_NAME;
            else if (c == '=')
                state = CH_EXT_VAL_START;
            else if (c == ';')
                state = CH_EXT_NAME_START;
            else if (c == '\r')
                state = CH_SIZE_LF;
            else if (c == '\n')
                goto size_line_done;
            else
                goto error;
            break;

        case CH_EXT_VAL_START:
            if (c == ' ' || c == '\t')
                break;
            if (c == '"')
                state = CH_EXT_QUOTED;
            else if (tchar[c])
                state = CH_EXT_VAL_TOKEN;
            else
                goto error;
            break;

        case CH_EXT_VAL_TOKEN:
            if (tchar[c])
                break;
            if (c == ' ' || c == '\t')
                state = CH_EXT_BWS;
            else if (c == ';')
                state = CH_EXT_NAME_START;
            else if (c == '\r')
                state = CH_SIZE_LF;
            else if (c == '\n')
                goto size_line_done;
            else
                goto error;
            break;

        case CH_EXT_QUOTED:
            if (c == '"')
                state = CH_EXT_BWS;
            else if (c == '\\')
                state = CH_EXT_QUOTED_ESC;
            else if (!is_qdtext(c))
                goto error;
            break;

        case CH_EXT_QUOTED_ESC:
            if (!is_qdtext(c))
                goto error;
            state = CH_EXT_QUOTED;
            break;

        case CH_SIZE_LF:
            if (c != '\n')
                goto error;
        size_line_done:
            ctx->size_digits = 0;
            ctx->ext_len = 0;
            if (ctx->size == 0) {
                state = CH_TRAILER_START;
                break;
            }
            if (ctx->size > INT64_MAX - ctx->body_size)
                goto error;
            state = CH_DATA;
            break;

        case CH_DATA_CR:
            if (c == '\r')
                state = CH_DATA_LF;
            else if (c == '\n')
                state = CH_SIZE_START;
            else
                goto error;
            break;

        case CH_DATA_LF:
            if (c != '\n')
                goto error;
            state = CH_SIZE_START;
            break;

        case CH_TRAILER_START:
            if (c == '\r') {
                state = CH_END_LF;
            } else if (c == '\n') {
                goto done;
            } else if (tchar[c]) {
                state = CH_TRAILER_NAME;
            } else {
                goto error;      /* obs-fold, whitespace, junk */
            }
            break;

        case CH_TRAILER_NAME:
            if (c == ':')
                state = CH_TRAILER_VALUE;
            else if (!tchar[c])
                goto error;
            break;

        case CH_TRAILER_VALUE:
            if (c == '\r')
                state = CH_TRAILER_LF;
            else if (c == '\n')
                state = CH_TRAILER_START;
            else if (c < 0x20 ? c != '\t' : c == 0x7f)
                goto error;
            break;

        case CH_TRAILER_LF:
            if (c != '\n')
                goto error;
            state = CH_TRAILER_START;
            break;

        case CH_END_LF:
            if (c != '\n')
                goto error;
            goto done;

        default:
            goto error;
        }
    }

    ctx->state = state;
    *consumed = len;
    return PT_H1_AGAIN;

done:
    ctx->state = CH_DONE;
    *consumed = (size_t) (p - buf);
    return PT_H1_DONE;

error:
    ctx->state = CH_ERROR;
    *consumed = (size_t) (p - buf);
    return PT_H1_ERROR;
}
