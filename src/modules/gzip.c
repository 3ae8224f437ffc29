/* The gzip module: on-the-fly gzip compression of responses (nginx's gzip
 * filter) and precompressed FILE.gz files served in place of FILE (nginx's
 * gzip_static), with the directives of both and the gzip_* directives nginx
 * keeps in its core module (gzip_vary, gzip_http_version, gzip_proxied,
 * gzip_disable), and $gzip_ratio.
 *
 * Header filter. A response is a candidate when gzip is on, its status is
 * 200, 403 or 404, it has no Content-Encoding yet, its Content-Length (when
 * known) is at least gzip_min_length and its Content-Type (without
 * parameters) is one of gzip_types (text/html always; "*" for any). A
 * candidate gets "Vary: Accept-Encoding" (gzip_vary on) whether or not this
 * client takes gzip, as nginx. It is compressed when the request allows it
 * (request_accepts_gzip): Accept-Encoding has a "gzip" coding whose q is not
 * 0, the User-Agent is not refused by gzip_disable, the HTTP version is at
 * least gzip_http_version and, for a request that came through a proxy (a
 * Via header), gzip_proxied allows it. The response then gets
 * "Content-Encoding: gzip", loses Content-Length (chunked on HTTP/1.1,
 * END_STREAM on HTTP/2) and Accept-Ranges, and a strong ETag becomes weak.
 * HEAD requests get the same header as GET.
 *
 * Body filter. A zlib deflate stream (gzip wrapper: windowBits 15 + 16) is
 * set up at the first body buffer, with a smaller window and hash for a
 * response whose length is known to be small (as nginx, to spend less
 * memory). Each input buffer is compressed as it arrives and given back at
 * once; output goes into gzip_buffers-sized I/O buffers that are passed to
 * the next filter as they fill. A buffer marked `flush` ends with
 * Z_SYNC_FLUSH so what was produced so far reaches the client (streamed
 * events); `last_buf` ends the stream with Z_FINISH. The filter keeps at most
 * one partly filled output buffer; everything else goes down at once and the
 * next filter's answer (PT_AGAIN when the client is slow) is returned to the
 * producer, which stops: memory per request is bounded by what the producer
 * holds plus the zlib state. The zlib state is released at the end of the
 * stream, or by a pool cleanup when the request ends early (client abort).
 *
 * Filter order: nginx runs add_header (its headers filter) before its gzip
 * filter, so gzip sees and weakens an ETag set by add_header, and a Vary
 * from add_header is kept beside gzip's own. Here later modules' filters run
 * first, so this module sits before the headers module in modules.c.
 *
 * gzip_static. nginx answers from its own content handler. Ours runs in the
 * content phase before the static module and, when FILE.gz exists and may be
 * sent, points r->uri at "URI.gz" (r->exten unchanged, so the Content-Type
 * stays the original file's) and declines: the static module then serves
 * FILE.gz with its usual conditional and range handling, ETag and
 * Last-Modified of the .gz file, as nginx. The header filter restores r->uri
 * (logs show the request's URI) and adds Content-Encoding: gzip. A regex
 * location with alias (whose path does not follow the uri) is not served
 * this way: the original file is sent.
 *
 * Ranges. nginx compresses before its range filter looks at a response, so
 * a range request whose response is gzipped gets the whole body (200). The
 * static module answers ranges itself, so the same content-phase step hides
 * the Range header from it when the file's response will be compressed
 * (hide_range). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "../core/log.h"
#include "../core/time.h"
#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"
#include "static.h"

extern pt_module_t pt_http_gzip_module;

/* gzip_proxied */
#define PROXIED_OFF      0x0002
#define PROXIED_EXPIRED  0x0004
#define PROXIED_NO_CACHE 0x0008
#define PROXIED_NO_STORE 0x0010
#define PROXIED_PRIVATE  0x0020
#define PROXIED_NO_LM    0x0040
#define PROXIED_NO_ETAG  0x0080
#define PROXIED_AUTH     0x0100
#define PROXIED_ANY      0x0200

enum { STATIC_OFF = 0, STATIC_ON, STATIC_ALWAYS };

typedef struct {
    int         enable;          /* gzip */
    int         vary;            /* gzip_vary */
    unsigned    http_version;    /* gzip_http_version: 10 | 11 */
    unsigned    proxied;         /* gzip_proxied bits; 0 or UNSET_UINT: unset */
    unsigned    static_mode;     /* gzip_static: STATIC_* */
    int64_t     level;           /* gzip_comp_level */
    int64_t     min_length;      /* gzip_min_length */
    int64_t     bufs_num;        /* gzip_buffers (number accepted, see below) */
    int64_t     bufs_size;
    int64_t     window;          /* gzip_window: bytes (512 .. 32k) */
    int64_t     hash;            /* gzip_hash: bytes (512 .. 128k) */
    int64_t     postpone;        /* postpone_gzipping: accepted */
    pt_array_t *types;           /* pt_str_t, lowercase; UNSET_PTR: inherit */
    int         types_any;       /* gzip_types * (with types set at this level) */
    pt_array_t *disable;         /* pt_http_regex_t; UNSET_PTR: inherit */
    int         disable_msie6;   /* gzip_disable msie6 */
} gzip_conf_t;

/* Per request. */
typedef struct {
    pt_http_request_t *r;
    z_stream           zs;
    pt_buf_t          *out;       /* output buffer being filled */
    size_t             bufsize;
    int                level, wbits, memlevel;
    uint64_t           zin, zout; /* totals at the end of the stream */
    pt_str_t           orig_uri;  /* gzip_static: the request's own uri */
    pt_http_header_t  *range;     /* Range hidden from the static module */
    unsigned           compress:1;   /* the body filter compresses */
    unsigned           zinit:1;      /* zs is initialised (deflateEnd owed) */
    unsigned           done:1;       /* Z_FINISH done */
    unsigned           failed:1;
    unsigned           unflushed:1;  /* input given to deflate since the last flush */
    unsigned           vary:1;       /* gzip_static found FILE.gz: Vary applies */
    unsigned           static_gz:1;  /* r->uri points at the .gz (until the header) */
} gzip_ctx_t;

static pt_http_header_filter_cb next_header_filter;
static pt_http_body_filter_cb   next_body_filter;

static pt_log_t *req_log(pt_http_request_t *r)
{
    return r->connection ? &r->connection->log : NULL;
}

static gzip_conf_t *conf_of(pt_http_request_t *r)
{
    return r->loc_conf ? pt_http_get_module_loc_conf(r, pt_http_gzip_module) : NULL;
}

static gzip_ctx_t *ctx_of(pt_http_request_t *r)
{
    return r->ctx ? pt_http_get_module_ctx(r, pt_http_gzip_module) : NULL;
}

static gzip_ctx_t *ctx_get(pt_http_request_t *r)
{
    gzip_ctx_t *ctx = ctx_of(r);
    if (ctx || r->ctx == NULL)
        return ctx;
    ctx = pt_pcalloc(r->pool, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->r = r;
    pt_http_set_ctx(r, ctx, pt_http_gzip_module);
    return ctx;
}

/* ------------------------------------------------------------------------ */
/* Negotiation                                                               */

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* A qvalue (RFC 9110 12.4.2): "0" ["." 0*3DIGIT] / "1" ["." 0*3("0")].
 * Returns the value in thousandths, or -1 when malformed. */
static int parse_qvalue(const char *p, const char *end)
{
    if (p == end || (*p != '0' && *p != '1'))
        return -1;
    int v = (*p++ - '0') * 1000, scale = 100;
    if (p < end && *p == '.') {
        p++;
        for (int i = 0; i < 3 && p < end && *p >= '0' && *p <= '9'; i++, p++) {
            v += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (p != end || v > 1000)
        return -1;
    return v;
}

/* Does an Accept-Encoding value list the "gzip" coding with a q above 0?
 * Each comma separated element is `coding *( OWS ";" OWS param )`; a
 * malformed q refuses, as nginx ("*" and "x-gzip" are not taken, as nginx). */
static int accepts_gzip(const pt_str_t *v)
{
    const char *p = v->data, *end = v->data + v->len;

    while (p < end) {
        const char *e = memchr(p, ',', (size_t) (end - p));
        if (e == NULL)
            e = end;
        const char *s = p, *t;
        p = e < end ? e + 1 : end;
        while (s < e && is_ows(*s))
            s++;
        t = s;
        while (t < e && *t != ';' && !is_ows(*t))
            t++;
        if (t - s != 4 || pt_strncasecmp(s, "gzip", 4) != 0)
            continue;
        /* parameters */
        int q = 1000;
        while (t < e) {
            while (t < e && is_ows(*t))
                t++;
            if (t == e)
                break;
            if (*t != ';')
                return 0;
            t++;
            while (t < e && is_ows(*t))
                t++;
            const char *ps = t;
            while (t < e && *t != ';')
                t++;
            const char *pe = t;
            while (pe > ps && is_ows(pe[-1]))
                pe--;
            if (pe - ps >= 2 && (ps[0] == 'q' || ps[0] == 'Q') && ps[1] == '=') {
                q = parse_qvalue(ps + 2, pe);
                if (q < 0)
                    return 0;
            }
        }
        return q > 0;
    }
    return 0;
}

/* nginx's "msie6" mask: "MSIE 4.", "MSIE 5." or "MSIE 6." (not "SV1" after
 * it) in a User-Agent that is not Opera's. */
static int is_msie6(const pt_str_t *ua)
{
    const char *p = pt_strnstr(ua->data, ua->len, "MSIE ", 5);
    const char *end = ua->data + ua->len;

    if (p == NULL || p + 7 >= end)
        return 0;
    if (pt_strnstr(ua->data, ua->len, "Opera", 5))
        return 0;
    if (p[6] != '.')
        return 0;
    if (p[5] == '4' || p[5] == '5')
        return 1;
    if (p[5] == '6')
        return pt_strnstr(p + 8, (size_t) (end - (p + 8)), "SV1", 3) == NULL;
    return 0;
}

static pt_http_header_t *find_in(pt_http_request_t *r, const char *name, size_t len)
{
    return pt_http_header_find(&r->headers_in.list, name, len);
}

static pt_http_header_t *find_out(pt_http_request_t *r, const char *name, size_t len)
{
    return pt_http_header_find(&r->headers_out.list, name, len);
}

/* Does a Cache-Control value list the directive `name` (its own token,
 * with or without "=value")? */
static int has_cc_directive(pt_http_request_t *r, const char *name, size_t nlen)
{
    pt_http_header_t *h = r->headers_out.list.elts;
    for (size_t i = 0; i < r->headers_out.list.nelts; i++) {
        if (h[i].deleted || !pt_str_caseeq_lit(&h[i].name, "Cache-Control"))
            continue;
        const char *p = h[i].value.data, *end = p + h[i].value.len;
        while (p < end) {
            while (p < end && (is_ows(*p) || *p == ','))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != '=' && !is_ows(*p))
                p++;
            if ((size_t) (p - s) == nlen && pt_strncasecmp(s, name, nlen) == 0)
                return 1;
            /* skip the rest of this directive (a quoted value may hold commas) */
            int quoted = 0;
            while (p < end && (quoted || *p != ',')) {
                if (*p == '"')
                    quoted = !quoted;
                p++;
            }
        }
    }
    return 0;
}

/* gzip_proxied for a request with a Via header: 1 = may compress. The
 * response's headers decide, in nginx's order. */
static int proxied_allows(pt_http_request_t *r, unsigned p)
{
    if (p & PROXIED_OFF)
        return 0;
    if (p & PROXIED_ANY)
        return 1;
    if ((p & PROXIED_AUTH) && r->headers_in.authorization)
        return 1;

    pt_http_header_t *e = find_out(r, "Expires", 7);
    if (e) {
        if (!(p & PROXIED_EXPIRED))
            return 0;
        time_t expires = pt_http_time_parse(e->value.data, e->value.len);
        if (expires == (time_t) -1)
            return 0;
        time_t date;
        if (r->headers_out.date) {
            date = pt_http_time_parse(r->headers_out.date->value.data,
                                      r->headers_out.date->value.len);
            if (date == (time_t) -1)
                return 0;
        } else {
            date = pt_time_sec ? pt_time_sec : time(NULL);
        }
        return expires < date;
    }

    if (find_out(r, "Cache-Control", 13)) {
        if ((p & PROXIED_NO_CACHE) && has_cc_directive(r, "no-cache", 8))
            return 1;
        if ((p & PROXIED_NO_STORE) && has_cc_directive(r, "no-store", 8))
            return 1;
        if ((p & PROXIED_PRIVATE) && has_cc_directive(r, "private", 7))
            return 1;
        return 0;
    }

    if ((p & PROXIED_NO_LM)
        && (r->headers_out.last_modified_time != -1 || find_out(r, "Last-Modified", 13)))
        return 0;
    if ((p & PROXIED_NO_ETAG) && find_out(r, "ETag", 4))
        return 0;
    return 1;
}

/* Whether this request may get a gzip response (nginx's gzip_ok): the
 * client, its User-Agent, HTTP version and proxies. */
static int request_accepts_gzip(pt_http_request_t *r, const gzip_conf_t *conf)
{
    pt_http_header_t *ae = r->headers_in.accept_encoding;
    if (ae == NULL || !accepts_gzip(&ae->value))
        return 0;

    pt_http_header_t *ua = r->headers_in.user_agent;
    if (conf->disable_msie6 == 1 && ua && is_msie6(&ua->value))
        return 0;
    if (r->http_version < conf->http_version)
        return 0;
    if (find_in(r, "Via", 3) && !proxied_allows(r, conf->proxied))
        return 0;

    if (conf->disable && conf->disable != PT_CONF_UNSET_PTR && ua) {
        const pt_http_regex_t *re = conf->disable->elts;
        for (size_t i = 0; i < conf->disable->nelts; i++)
            if (pt_http_regex_exec(NULL, &re[i], &ua->value) == 1)
                return 0;
    }
    return 1;
}

/* Is the response's type (without parameters) one of gzip_types? */
static int type_matches(const gzip_conf_t *conf, const pt_str_t *ct)
{
    size_t len = 0;
    while (len < ct->len && ct->data[len] != ';')
        len++;
    while (len > 0 && is_ows(ct->data[len - 1]))
        len--;
    if (len == 0)
        return 0;
    if (conf->types == NULL || conf->types == PT_CONF_UNSET_PTR)
        return len == 9 && pt_strncasecmp(ct->data, "text/html", 9) == 0;
    if (conf->types_any)
        return 1;
    const pt_str_t *t = conf->types->elts;
    for (size_t i = 0; i < conf->types->nelts; i++)
        if (t[i].len == len && pt_strncasecmp(t[i].data, ct->data, len) == 0)
            return 1;
    return 0;
}

static void delete_out(pt_http_request_t *r, const char *name, size_t len)
{
    pt_http_header_t *h = r->headers_out.list.elts;
    for (size_t i = 0; i < r->headers_out.list.nelts; i++)
        if (!h[i].deleted && h[i].name.len == len && pt_strncasecmp(h[i].name.data, name, len) == 0)
            h[i].deleted = 1;
}

/* A strong entity tag no longer names these bytes: W/"x" for "x", and a
 * malformed one is dropped (nginx). */
static int weaken_etag(pt_http_request_t *r)
{
    pt_http_header_t *h = find_out(r, "ETag", 4);
    if (h == NULL)
        return 0;
    pt_str_t *v = &h->value;
    if (v->len > 2 && v->data[0] == 'W' && v->data[1] == '/')
        return 0;
    if (v->len < 1 || v->data[0] != '"') {
        delete_out(r, "ETag", 4);
        return 0;
    }
    char *p = pt_pnalloc(r->pool, v->len + 3);
    if (p == NULL)
        return -1;
    p[0] = 'W';
    p[1] = '/';
    memcpy(p + 2, v->data, v->len);
    p[v->len + 2] = '\0';
    v->data = p;
    v->len += 2;
    return 0;
}

static int add_vary(pt_http_request_t *r)
{
    return pt_http_header_add(r, &r->headers_out.list, "Vary", 4, "Accept-Encoding", 15)
           ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Header filter                                                             */

static void stream_cleanup(void *data)
{
    gzip_ctx_t *ctx = data;
    if (ctx->zinit) {
        deflateEnd(&ctx->zs);
        ctx->zinit = 0;
    }
    if (ctx->out) {
        pt_buf_put(ctx->out);
        ctx->out = NULL;
    }
}

/* nginx's sizing: for a response known to be small, halve the window (and
 * the hash) while the body still fits in half of it (zlib uses 262 bytes of
 * the window for lookahead). */
static void size_stream(gzip_ctx_t *ctx, const gzip_conf_t *conf, int64_t length)
{
    int wbits = 15, memlevel = 8;

    if (conf->window > 0)
        for (wbits = 0; ((int64_t) 1 << (wbits + 1)) <= conf->window; wbits++)
            ;
    if (conf->hash > 0) {
        int bits = 0;
        while (((int64_t) 1 << (bits + 1)) <= conf->hash)
            bits++;
        memlevel = bits - 8;        /* 512 -> 1 ... 128k -> 9 */
    }
    if (length > 0) {
        while (wbits > 9 && length < ((int64_t) 1 << (wbits - 1)) - 262) {
            wbits--;
            memlevel--;
        }
    }
    if (memlevel < 1)
        memlevel = 1;
    if (memlevel > 9)
        memlevel = 9;
    ctx->wbits = wbits;
    ctx->memlevel = memlevel;
    ctx->level = (int) conf->level;
    ctx->bufsize = (size_t) conf->bufs_size;
}

static int status_is_compressible(int status)
{
    return status == 200 || status == 403 || status == 404;
}

static int gzip_header_filter(pt_http_request_t *r)
{
    gzip_conf_t *conf = conf_of(r);
    gzip_ctx_t *ctx = ctx_of(r);
    pt_http_headers_out_t *ho = &r->headers_out;
    int status = ho->status;
    int vary = 0;

    if (conf == NULL)
        return next_header_filter(r);

    if (ctx && ctx->range) {
        ctx->range->deleted = 0;        /* the static module has decided */
        ctx->range = NULL;
    }
    if (ctx && ctx->static_gz) {
        /* gzip_static: the static module has answered for FILE.gz */
        r->uri = ctx->orig_uri;
        ctx->static_gz = 0;
        if (status == 200 || status == 206 || status == 304) {
            if (!pt_http_header_add(r, &ho->list, "Content-Encoding", 16, "gzip", 4))
                return PT_ERROR;
            if (conf->vary == 1 && add_vary(r) != 0)
                return PT_ERROR;
            return next_header_filter(r);
        }
    }
    if (ctx && ctx->vary)
        vary = 1;                       /* FILE.gz exists, the plain file went */

    pt_http_header_t *ce = find_out(r, "Content-Encoding", 16);
    int candidate = conf->enable == 1
                    && status_is_compressible(status)
                    && !(ce && ce->value.len)
                    && !(ho->content_length_n != -1 && ho->content_length_n < conf->min_length)
                    && type_matches(conf, &ho->content_type)
                    && !r->header_only;
    if (candidate)
        vary = 1;
    if (vary && conf->vary == 1 && add_vary(r) != 0)
        return PT_ERROR;
    if (!candidate || !request_accepts_gzip(r, conf))
        return next_header_filter(r);

    ctx = ctx_get(r);
    if (ctx == NULL)
        return PT_ERROR;
    if (pt_pool_cleanup_add(r->pool, stream_cleanup, ctx) != 0)
        return PT_ERROR;
    size_stream(ctx, conf, ho->content_length_n);
    ctx->compress = 1;

    if (!pt_http_header_add(r, &ho->list, "Content-Encoding", 16, "gzip", 4))
        return PT_ERROR;
    ho->content_length_n = -1;
    delete_out(r, "Content-Length", 14);
    delete_out(r, "Accept-Ranges", 13);
    if (weaken_etag(r) != 0)
        return PT_ERROR;
    return next_header_filter(r);
}

/* ------------------------------------------------------------------------ */
/* Body filter                                                               */

static int stream_init(gzip_ctx_t *ctx)
{
    memset(&ctx->zs, 0, sizeof(ctx->zs));
    int rc = deflateInit2(&ctx->zs, ctx->level, Z_DEFLATED, ctx->wbits + 16, ctx->memlevel,
                          Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) {
        pt_log_error(PT_LOG_ALERT, req_log(ctx->r), 0, "deflateInit2() failed: %d", rc);
        return -1;
    }
    ctx->zinit = 1;
    return 0;
}

/* Compresses b's bytes with `mode` (Z_NO_FLUSH, Z_SYNC_FLUSH, Z_FINISH),
 * appending the output buffers that are ready to *tail. Returns 0 or -1. */
static int deflate_buf(gzip_ctx_t *ctx, pt_buf_t *b, int mode, pt_buf_t ***tail)
{
    z_stream *zs = &ctx->zs;
    size_t size = pt_buf_size(b);

    if (mode == Z_SYNC_FLUSH && size == 0 && !ctx->unflushed)
        mode = Z_NO_FLUSH;              /* nothing new to push out */
    zs->next_in = (Bytef *) b->pos;
    zs->avail_in = (uInt) size;         /* I/O buffers are far below 4 GiB */
    if (size)
        ctx->unflushed = 1;

    for (;;) {
        if (ctx->out == NULL) {
            ctx->out = pt_buf_get(ctx->bufsize);
            if (ctx->out == NULL)
                return -1;
        }
        pt_buf_t *o = ctx->out;
        size_t room = pt_buf_room(o);
        zs->next_out = (Bytef *) o->last;
        zs->avail_out = room > UINT_MAX ? UINT_MAX : (uInt) room;

        int rc = deflate(zs, mode);
        o->last = (char *) zs->next_out;
        if (rc == Z_STREAM_ERROR) {
            pt_log_error(PT_LOG_ALERT, req_log(ctx->r), 0, "deflate() failed: %d", rc);
            return -1;
        }
        int full = pt_buf_room(o) == 0;
        if (full) {
            **tail = o;
            *tail = &o->next;
            ctx->out = NULL;
        }
        if (rc == Z_STREAM_END)
            break;
        /* input consumed and deflate stopped with room to spare: the flush
         * (if any) is complete; Z_BUF_ERROR without a full buffer means there
         * is nothing more to do either */
        if (!full && (zs->avail_in == 0 || rc == Z_BUF_ERROR))
            break;
    }
    b->pos = b->last;

    if (mode != Z_NO_FLUSH) {
        ctx->unflushed = 0;
        if (ctx->out && pt_buf_size(ctx->out)) {
            **tail = ctx->out;
            *tail = &ctx->out->next;
            ctx->out->flush = 1;
            ctx->out = NULL;
        }
    }
    if (mode == Z_FINISH) {
        ctx->zin = (uint64_t) zs->total_in;
        ctx->zout = (uint64_t) zs->total_out;
        deflateEnd(zs);
        ctx->zinit = 0;
        ctx->done = 1;
        if (ctx->out) {                 /* an empty buffer left over */
            pt_buf_put(ctx->out);
            ctx->out = NULL;
        }
    }
    return 0;
}

static int gzip_body_filter(pt_http_request_t *r, pt_buf_t *in)
{
    gzip_ctx_t *ctx = ctx_of(r);

    if (ctx == NULL || !ctx->compress || r->header_only)
        return next_body_filter(r, in);
    if (ctx->done) {
        pt_buf_put_chain(in);           /* nothing may follow the end */
        return next_body_filter(r, NULL);
    }
    if (ctx->failed) {
        pt_buf_put_chain(in);
        return PT_ERROR;
    }
    if (!ctx->zinit && stream_init(ctx) != 0) {
        ctx->failed = 1;
        pt_buf_put_chain(in);
        return PT_ERROR;
    }

    pt_buf_t *out = NULL, **tail = &out, *b, *next;
    pt_buf_t *last = NULL;
    for (b = in; b; b = next) {
        next = b->next;
        b->next = NULL;
        int mode = b->last_buf ? Z_FINISH : b->flush ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        int rc = deflate_buf(ctx, b, mode, &tail);
        pt_buf_put(b);
        if (rc != 0) {
            ctx->failed = 1;
            pt_buf_put_chain(next);
            pt_buf_put_chain(out);
            return PT_ERROR;
        }
        if (ctx->done) {
            pt_buf_put_chain(next);
            break;
        }
    }
    if (ctx->done) {
        /* the last output buffer carries the end of the response */
        for (b = out; b; b = b->next)
            last = b;
        if (last == NULL) {
            last = pt_buf_ref("", 0);
            if (last == NULL) {
                ctx->failed = 1;
                return PT_ERROR;
            }
            out = last;
        }
        last->last_buf = 1;
        last->flush = 1;
    }
    /* with nothing to pass, the next filter still tells whether the client
     * keeps up (PT_AGAIN) */
    return next_body_filter(r, out);
}

/* ------------------------------------------------------------------------ */
/* gzip_static                                                               */

/* nginx compresses before its range filter sees the response, so a range
 * request whose response gets gzipped is answered with the whole body (200),
 * compressed. The static module answers ranges itself, before any filter
 * runs: when the file's response is sure to be compressed, the Range header
 * is hidden from it (and put back by the header filter, so logs see it).
 * A proxied request (Via) is left alone unless gzip_proxied is "any": the
 * other gzip_proxied rules depend on response headers not known yet. */
static int hide_range(pt_http_request_t *r, gzip_conf_t *conf, gzip_ctx_t **pctx)
{
    if (conf->enable != 1 || (r->err_status && r->err_status != 200)
        || !(r->method & (PT_HTTP_GET | PT_HTTP_HEAD)))
        return PT_OK;
    pt_http_header_t *range = find_in(r, "Range", 5);
    if (range == NULL || !request_accepts_gzip(r, conf))
        return PT_OK;
    if (find_in(r, "Via", 3) && !(conf->proxied & PROXIED_ANY))
        return PT_OK;

    pt_str_t saved = r->headers_out.content_type;
    r->headers_out.content_type.len = 0;
    pt_http_set_content_type(r);
    int match = type_matches(conf, &r->headers_out.content_type);
    r->headers_out.content_type = saved;
    if (!match)
        return PT_OK;

    pt_str_t path;
    struct stat st;
    int rc = pt_http_static_map_uri(r, &r->uri, &path, 0);
    if (rc == PT_ERROR)
        return 500;
    if (rc != PT_OK || stat(path.data, &st) != 0 || !S_ISREG(st.st_mode)
        || (int64_t) st.st_size < conf->min_length)
        return PT_OK;

    gzip_ctx_t *ctx = *pctx ? *pctx : ctx_get(r);
    if (ctx == NULL)
        return 500;
    *pctx = ctx;
    ctx->range = range;
    range->deleted = 1;
    return PT_OK;
}

/* The content-phase step, before the static module's: gzip_static, then
 * the range rule above. Always declines (the static module answers). */
static int gzip_content_handler(pt_http_request_t *r)
{
    gzip_conf_t *conf = conf_of(r);
    gzip_ctx_t *ctx = NULL;
    pt_str_t path, gz_uri, check;
    struct stat st;
    int ok, rc;

    if (conf == NULL)
        return PT_DECLINED;
    if (r->uri.len == 0 || r->uri.data[r->uri.len - 1] == '/')
        return PT_DECLINED;
    if (conf->static_mode == STATIC_OFF || conf->static_mode == PT_CONF_UNSET_UINT
        || !(r->method & (PT_HTTP_GET | PT_HTTP_HEAD)))
        goto plain;

    ok = conf->static_mode == STATIC_ALWAYS || request_accepts_gzip(r, conf);
    if (!ok && conf->vary != 1)
        goto plain;                     /* nothing to learn from the file */

    rc = pt_http_static_map_uri(r, &r->uri, &path, 3);
    if (rc == PT_ERROR)
        return 500;
    if (rc != PT_OK)
        return PT_DECLINED;
    memcpy(path.data + path.len, ".gz", 4);
    path.len += 3;

    if (stat(path.data, &st) != 0) {
        int err = errno;
        if (err != ENOENT && err != ENOTDIR && err != ENAMETOOLONG)
            pt_log_error(err == EACCES ? PT_LOG_ERR : PT_LOG_CRIT, req_log(r), err,
                         "stat() \"%s\" failed", path.data);
        goto plain;
    }

    ctx = ctx_get(r);
    if (ctx == NULL)
        return 500;
    ctx->vary = 1;
    if (!ok || !S_ISREG(st.st_mode))
        goto plain;

    /* the static module serves "URI.gz": it must map to this very file
     * (not so for a regex location's alias, which ignores the uri) */
    gz_uri.len = r->uri.len + 3;
    gz_uri.data = pt_pnalloc(r->pool, gz_uri.len + 1);
    if (gz_uri.data == NULL)
        return 500;
    memcpy(gz_uri.data, r->uri.data, r->uri.len);
    memcpy(gz_uri.data + r->uri.len, ".gz", 4);
    rc = pt_http_static_map_uri(r, &gz_uri, &check, 0);
    if (rc == PT_ERROR)
        return 500;
    if (rc != PT_OK || !pt_str_eq(&check, &path))
        goto plain;

    ctx->orig_uri = r->uri;
    ctx->static_gz = 1;
    r->uri = gz_uri;                    /* r->exten stays: the type of FILE */
    return PT_DECLINED;

plain:
    rc = hide_range(r, conf, &ctx);
    return rc == PT_OK ? PT_DECLINED : rc;
}

/* ------------------------------------------------------------------------ */
/* $gzip_ratio                                                               */

static int get_gzip_ratio(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    gzip_ctx_t *ctx = ctx_of(r);
    (void) data;
    if (ctx == NULL || ctx->zout == 0) {
        v->not_found = 1;
        return PT_OK;
    }
    /* original / compressed, rounded to hundredths */
    uint64_t hundredths = (ctx->zin * 1000 / ctx->zout + 5) / 10;
    char *p = pt_pnalloc(r->pool, 48);
    if (p == NULL)
        return PT_ERROR;
    int n = snprintf(p, 48, "%llu.%02llu", (unsigned long long) (hundredths / 100),
                     (unsigned long long) (hundredths % 100));
    v->value.data = p;
    v->value.len = (size_t) n;
    v->valid = 1;
    return PT_OK;
}

/* ------------------------------------------------------------------------ */
/* Config time                                                               */

static const char *types_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    gzip_conf_t *gcf = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;

    if (gcf->types == NULL || gcf->types == PT_CONF_UNSET_PTR) {
        gcf->types = pt_array_create(cf->pool, 8, sizeof(pt_str_t));
        if (gcf->types == NULL)
            return "failed (out of memory)";
        pt_str_t *t = pt_array_push(gcf->types);
        if (t == NULL)
            return "failed (out of memory)";
        pt_str_set(t, "text/html");
    }
    for (size_t i = 1; i < cf->args->nelts; i++) {
        if (pt_str_eq_lit(&value[i], "*")) {
            gcf->types_any = 1;
            continue;
        }
        pt_str_t *t = gcf->types->elts;
        size_t k;
        for (k = 0; k < gcf->types->nelts; k++)
            if (pt_str_caseeq(&t[k], &value[i]))
                break;
        if (k < gcf->types->nelts) {
            pt_conf_error(cf, PT_LOG_WARN, 0, "duplicate MIME type \"%s\"", value[i].data);
            continue;
        }
        pt_str_t *nt = pt_array_push(gcf->types);
        if (nt == NULL)
            return "failed (out of memory)";
        nt->len = value[i].len;
        nt->data = pt_pnalloc(cf->pool, value[i].len + 1);
        if (nt->data == NULL)
            return "failed (out of memory)";
        pt_strlow(nt->data, value[i].data, value[i].len);
        nt->data[nt->len] = '\0';
    }
    return PT_CONF_OK;
}

static const char *disable_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    gzip_conf_t *gcf = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;

    for (size_t i = 1; i < cf->args->nelts; i++) {
        if (pt_str_eq_lit(&value[i], "msie6")) {
            gcf->disable_msie6 = 1;
            continue;
        }
        if (gcf->disable == NULL || gcf->disable == PT_CONF_UNSET_PTR) {
            gcf->disable = pt_array_create(cf->pool, 2, sizeof(pt_http_regex_t));
            if (gcf->disable == NULL)
                return "failed (out of memory)";
        }
        pt_http_regex_t *re = pt_array_push(gcf->disable);
        if (re == NULL)
            return "failed (out of memory)";
        memset(re, 0, sizeof(*re));
        /* nginx matches the User-Agent without regard to case */
        if (pt_http_regex_compile(cf, re, &value[i], 1) != 0)
            return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

static const char *buffers_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    gzip_conf_t *gcf = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;

    if (gcf->bufs_num != PT_CONF_UNSET)
        return "is duplicate";
    int64_t n = pt_atoi64(value[1].data, value[1].len);
    int64_t size = pt_conf_parse_size(&value[2]);
    if (n <= 0 || size <= 0)
        return "invalid value";
    gcf->bufs_num = n;
    gcf->bufs_size = size;
    return PT_CONF_OK;
}

/* gzip_window / gzip_hash: a power of two between 512 and max. */
static const char *pow2_size_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    const char *rv = pt_conf_set_size(cf, cmd, conf);
    if (rv != PT_CONF_OK)
        return rv;
    int64_t v = *(int64_t *) ((char *) conf + cmd->offset);
    int64_t max = cmd->offset == offsetof(gzip_conf_t, window) ? 32768 : 131072;
    if (v < 512 || v > max || (v & (v - 1)) != 0)
        return max == 32768 ? "must be 512, 1k, 2k, 4k, 8k, 16k, or 32k"
                            : "must be 512, 1k, 2k, 4k, 8k, 16k, 32k, 64k, or 128k";
    return PT_CONF_OK;
}

static void *create_loc_conf(pt_conf_t *cf)
{
    gzip_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf == NULL)
        return NULL;
    conf->enable = PT_CONF_UNSET;
    conf->vary = PT_CONF_UNSET;
    conf->http_version = PT_CONF_UNSET_UINT;
    conf->proxied = 0;
    conf->static_mode = PT_CONF_UNSET_UINT;
    conf->level = PT_CONF_UNSET;
    conf->min_length = PT_CONF_UNSET_SIZE;
    conf->bufs_num = PT_CONF_UNSET;
    conf->bufs_size = PT_CONF_UNSET;
    conf->window = PT_CONF_UNSET_SIZE;
    conf->hash = PT_CONF_UNSET_SIZE;
    conf->postpone = PT_CONF_UNSET_SIZE;
    conf->types = PT_CONF_UNSET_PTR;
    conf->disable = PT_CONF_UNSET_PTR;
    conf->disable_msie6 = PT_CONF_UNSET;
    return conf;
}

static const char *merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    gzip_conf_t *prev = parent, *conf = child;

    pt_conf_merge(conf->enable, prev->enable, 0);
    pt_conf_merge(conf->vary, prev->vary, 0);
    pt_conf_merge_uint(conf->http_version, prev->http_version, 11);
    pt_conf_merge_uint(conf->static_mode, prev->static_mode, STATIC_OFF);
    if (conf->proxied == 0 || conf->proxied == PT_CONF_UNSET_UINT)
        conf->proxied = (prev->proxied == 0 || prev->proxied == PT_CONF_UNSET_UINT)
                        ? PROXIED_OFF : prev->proxied;
    pt_conf_merge(conf->level, prev->level, 1);
    pt_conf_merge(conf->min_length, prev->min_length, 20);
    if (conf->bufs_num == PT_CONF_UNSET) {
        conf->bufs_num = prev->bufs_num == PT_CONF_UNSET ? 32 : prev->bufs_num;
        conf->bufs_size = prev->bufs_size == PT_CONF_UNSET ? 4096 : prev->bufs_size;
    }
    pt_conf_merge(conf->window, prev->window, 32768);
    pt_conf_merge(conf->hash, prev->hash, 65536);
    pt_conf_merge(conf->postpone, prev->postpone, 0);
    if (conf->types == PT_CONF_UNSET_PTR) {
        if (prev->types != PT_CONF_UNSET_PTR && prev->types != NULL) {
            conf->types = prev->types;
            conf->types_any = prev->types_any;
        } else {
            conf->types = pt_array_create(cf->pool, 1, sizeof(pt_str_t));
            pt_str_t *t = conf->types ? pt_array_push(conf->types) : NULL;
            if (t == NULL)
                return "failed (out of memory)";
            pt_str_set(t, "text/html");
            conf->types_any = 0;
        }
    }
    pt_conf_merge_ptr(conf->disable, prev->disable, NULL);
    pt_conf_merge(conf->disable_msie6, prev->disable_msie6, 0);
    return PT_CONF_OK;
}

static int gzip_preconf(pt_conf_t *cf)
{
    pt_str_t name = pt_string("gzip_ratio");
    pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_NOCACHEABLE);
    if (v == NULL)
        return -1;
    v->get = get_gzip_ratio;
    return 0;
}

static int gzip_init(pt_conf_t *cf)
{
    next_header_filter = pt_http_top_header_filter;
    pt_http_top_header_filter = gzip_header_filter;
    next_body_filter = pt_http_top_body_filter;
    pt_http_top_body_filter = gzip_body_filter;
    return pt_http_phase_add(cf, PT_HTTP_CONTENT_PHASE, gzip_content_handler);
}

static const pt_conf_enum_t http_versions[] = {
    { "1.0", 10 },
    { "1.1", 11 },
    { NULL, 0 }
};

static const pt_conf_enum_t proxied_masks[] = {
    { "off", PROXIED_OFF },
    { "expired", PROXIED_EXPIRED },
    { "no-cache", PROXIED_NO_CACHE },
    { "no-store", PROXIED_NO_STORE },
    { "private", PROXIED_PRIVATE },
    { "no_last_modified", PROXIED_NO_LM },
    { "no_etag", PROXIED_NO_ETAG },
    { "auth", PROXIED_AUTH },
    { "any", PROXIED_ANY },
    { NULL, 0 }
};

static const pt_conf_enum_t static_modes[] = {
    { "off", STATIC_OFF },
    { "on", STATIC_ON },
    { "always", STATIC_ALWAYS },
    { NULL, 0 }
};

static const pt_conf_bounds_t level_bounds = { 1, 9 };

#define CTX PT_CTX_HTTP_ANY
#define GZ(f) offsetof(gzip_conf_t, f)

static const pt_command_t gzip_commands[] = {
    { "gzip", CTX | PT_CTX_LIF, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      GZ(enable), NULL },
    { "gzip_buffers", CTX, 0, 2, 2, buffers_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "gzip_types", CTX, 0, 1, PT_ARGS_ANY, types_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "gzip_comp_level", CTX, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_LOC, GZ(level),
      &level_bounds },
    { "gzip_min_length", CTX, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_LOC, GZ(min_length),
      NULL },
    { "gzip_window", CTX, 0, 1, 1, pow2_size_cmd, PT_CONF_HTTP_LOC, GZ(window), NULL },
    { "gzip_hash", CTX, 0, 1, 1, pow2_size_cmd, PT_CONF_HTTP_LOC, GZ(hash), NULL },
    /* accepted: responses are compressed as they come, never held back */
    { "postpone_gzipping", CTX, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_LOC, GZ(postpone),
      NULL },
    { "gzip_vary", CTX, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC, GZ(vary), NULL },
    { "gzip_http_version", CTX, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_LOC, GZ(http_version),
      http_versions },
    { "gzip_proxied", CTX, 0, 1, PT_ARGS_ANY, pt_conf_set_bitmask, PT_CONF_HTTP_LOC,
      GZ(proxied), proxied_masks },
    { "gzip_disable", CTX, 0, 1, PT_ARGS_ANY, disable_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "gzip_static", CTX, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_LOC, GZ(static_mode),
      static_modes },
    PT_COMMAND_END
};

pt_module_t pt_http_gzip_module = {
    .name = "http_gzip",
    .commands = gzip_commands,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
    .preconfiguration = gzip_preconf,
    .postconfiguration = gzip_init,
};
