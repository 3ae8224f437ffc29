/* The static module: the content-phase handler that serves a regular file for
 * r->uri under the location's root or alias, as nginx's static module with its
 * not-modified and range filters folded in:
 *
 *   - GET and HEAD (POST of an existing file and other methods: 405);
 *   - a directory without the trailing slash: 301 to uri/ (+ args);
 *   - Content-Type from the location's types, Content-Length, Last-Modified,
 *     ETag "mtime-size" (hex), Accept-Ranges;
 *   - If-Unmodified-Since / If-Match -> 412; If-Modified-Since (per
 *     if_modified_since) / If-None-Match -> 304;
 *   - Range: one range -> 206 + Content-Range; several -> 206
 *     multipart/byteranges; If-Range and max_ranges honoured; ranges that add
 *     up to more than the file -> the whole file; unsatisfiable -> 416;
 *   - 404 / 403 / 500 for a failed open(), logged as nginx does.
 *
 * The body (file slices and, for multipart, the part headers between them)
 * is read with pread(2) into 64 KiB I/O buffers handed to
 * pt_http_output(). When the writer says PT_AGAIN the handler stops and
 * continues from r->write_event_handler once the queue has drained, so a
 * request holds at most a buffer or two however large the file and however
 * slow the client. A fast client does not monopolise the worker: after
 * sendfile_max_chunk bytes in one go the rest continues from a posted event.
 *
 * Also: $request_filename, and the helpers of static.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../config/cycle.h"
#include "../core/log.h"
#include "../core/time.h"
#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"
#include "static.h"

#define CHUNK_SIZE   (64 * 1024)
#define ROUND_BUDGET (2 * 1024 * 1024)   /* when sendfile_max_chunk is 0 */

typedef struct {
    pt_str_t prefix;          /* the cycle's prefix: relative roots with variables */
} static_main_conf_t;

/* What the body is made of: file byte ranges and, for multipart/byteranges,
 * the part headers and the closing boundary between them. */
typedef struct {
    int64_t     start, end;  /* file bytes [start, end); text == NULL */
    const char *text;        /* bytes to send as they are (r->pool) */
} segment_t;

/* One file being sent. */
typedef struct {
    pt_http_request_t *r;
    int                fd;
    segment_t         *segs;
    unsigned           nsegs;
    unsigned           cur;      /* segment being sent */
    int64_t            offset;   /* next file byte of a file segment */
    const char        *path;     /* for messages */
    pt_event_t         resume;   /* posted: continue after a full round */
    segment_t          whole;    /* the single segment of a plain response */
} file_ctx_t;

static pt_http_core_loc_conf_t *clcf_of(pt_http_request_t *r)
{
    return pt_http_get_module_loc_conf(r, pt_http_core_module);
}

static pt_log_t *req_log(pt_http_request_t *r)
{
    return r->connection ? &r->connection->log : NULL;
}

/* ------------------------------------------------------------------------ */
/* Paths (static.h) */

int pt_http_static_root(pt_http_request_t *r, pt_str_t *root)
{
    pt_http_core_loc_conf_t *clcf = clcf_of(r);

    if (clcf->root_cv == NULL) {
        *root = clcf->root;
        return PT_OK;
    }
    pt_str_t v;
    if (pt_http_cv_eval(r, clcf->root_cv, &v) != 0)
        return PT_ERROR;
    if (v.len > 0 && v.data[0] == '/') {
        *root = v;
        return PT_OK;
    }
    /* relative: against the prefix, as a literal root is at config time */
    static_main_conf_t *smcf = pt_http_get_module_main_conf(r, pt_http_static_module);
    pt_str_t prefix = smcf ? smcf->prefix : (pt_str_t) pt_null_string;
    int slash = prefix.len > 0 && prefix.data[prefix.len - 1] != '/';
    char *p = pt_pnalloc(r->pool, prefix.len + (size_t) slash + v.len + 1);
    if (p == NULL)
        return PT_ERROR;
    if (prefix.len)
        memcpy(p, prefix.data, prefix.len);
    if (slash)
        p[prefix.len] = '/';
    if (v.len)
        memcpy(p + prefix.len + slash, v.data, v.len);
    p[prefix.len + slash + v.len] = '\0';
    root->data = p;
    root->len = prefix.len + (size_t) slash + v.len;
    return PT_OK;
}

int pt_http_static_has_dotdot(const char *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (p[i] == '.' && p[i + 1] == '.' && (i == 0 || p[i - 1] == '/')
            && (i + 2 == len || p[i + 2] == '/'))
            return 1;
    }
    return 0;
}

int pt_http_static_map_uri(pt_http_request_t *r, const pt_str_t *uri, pt_str_t *path,
                           size_t reserve)
{
    pt_http_core_loc_conf_t *clcf = clcf_of(r);
    pt_str_t root, rest;
    size_t alias = clcf->alias;

    if (pt_http_static_root(r, &root) != PT_OK)
        return PT_ERROR;

    if (alias == 0) {
        rest = *uri;
    } else if (alias == SIZE_MAX || uri->len < alias) {
        /* a regex location's alias is the whole path (its captures carry
         * the uri); a uri shorter than the location name (exact match on a
         * name without the slash) is the alias itself */
        rest.data = uri->data;
        rest.len = 0;
    } else {
        rest.data = uri->data + alias;
        rest.len = uri->len - alias;
    }

    size_t len = root.len + rest.len;
    char *p = pt_pnalloc(r->pool, len + 1 + reserve);
    if (p == NULL)
        return PT_ERROR;
    if (root.len)
        memcpy(p, root.data, root.len);
    if (rest.len)
        memcpy(p + root.len, rest.data, rest.len);
    p[len] = '\0';
    path->data = p;
    path->len = len;
    if (memchr(p, '\0', len) != NULL)
        return PT_DECLINED;             /* open() would see a shorter name */

    if (alias != 0 && alias != SIZE_MAX && rest.len) {
        /* The uri has no ".." segment (the parser normalises it), but the
         * join can make one: "/static../x" under "location /static" with
         * "alias /srv/static/;" is "/srv/static/../x". Look at the segments
         * from the alias's last one on. */
        size_t s = root.len;
        while (s > 0 && p[s - 1] != '/')
            s--;
        if (pt_http_static_has_dotdot(p + s, len - s))
            return PT_DECLINED;
    }
    return PT_OK;
}

void pt_http_static_set_exten(pt_http_request_t *r)
{
    r->exten.len = 0;
    r->exten.data = NULL;
    for (size_t i = r->uri.len; i > 0; i--) {
        char ch = r->uri.data[i - 1];
        if (ch == '/')
            return;
        if (ch == '.') {
            r->exten.data = r->uri.data + i;
            r->exten.len = r->uri.len - i;
            return;
        }
    }
}

int pt_http_static_file_error(pt_http_request_t *r, const char *op, const char *path, int err)
{
    int level, status;

    switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        level = PT_LOG_ERR;
        status = 404;
        break;
    case EACCES:
        level = PT_LOG_ERR;
        status = 403;
        break;
    default:
        level = PT_LOG_CRIT;
        status = 500;
        break;
    }
    if (status != 404 || clcf_of(r)->log_not_found)
        pt_log_error(level, req_log(r), err, "%s() \"%s\" failed", op, path);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Conditional requests */

static pt_http_header_t *header_in(pt_http_request_t *r, const char *name, size_t len)
{
    return pt_http_header_find(&r->headers_in.list, name, len);
}

/* Does the If-Match / If-None-Match list in v match etag? weak: W/ tags
 * compare by their opaque part (If-None-Match); strong: only identical
 * strong tags match (If-Match). "*" matches any current representation. */
static int etag_list_matches(const pt_str_t *v, const pt_str_t *etag, int weak)
{
    const char *p = v->data, *end = v->data + v->len;

    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        if (p == end)
            return 0;
        if (*p == '*')
            return 1;
        int is_weak = 0;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
            is_weak = 1;
            p += 2;
        }
        const char *s = p;
        if (p < end && *p == '"') {
            p++;
            while (p < end && *p != '"')
                p++;
            if (p < end)
                p++;
        } else {
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
        }
        if ((weak || !is_weak) && (size_t) (p - s) == etag->len
            && memcmp(s, etag->data, etag->len) == 0)
            return 1;
    }
}

static time_t header_time(const pt_http_header_t *h)
{
    return pt_http_time_parse(h->value.data, h->value.len);
}

/* 412, 304 or 0 (send the representation), as nginx's not-modified filter:
 * If-Unmodified-Since, If-Match, then If-Modified-Since and If-None-Match
 * (both must say "not modified" when both are present). */
static int check_conditions(pt_http_request_t *r, time_t mtime, const pt_str_t *etag)
{
    pt_http_core_loc_conf_t *clcf = clcf_of(r);
    pt_http_header_t *h;

    h = header_in(r, "If-Unmodified-Since", 19);
    if (h) {
        time_t t = header_time(h);
        if (t == (time_t) -1 || mtime > t)
            return 412;
    }
    h = header_in(r, "If-Match", 8);
    if (h && (etag == NULL || !etag_list_matches(&h->value, etag, 0)))
        return 412;

    pt_http_header_t *ims = r->headers_in.if_modified_since;
    pt_http_header_t *inm = header_in(r, "If-None-Match", 13);
    if (ims == NULL && inm == NULL)
        return 0;
    if (ims) {
        time_t t = header_time(ims);
        if (clcf->if_modified_since == PT_HTTP_IMS_OFF || t == (time_t) -1)
            return 0;
        if (clcf->if_modified_since == PT_HTTP_IMS_EXACT ? t != mtime : t < mtime)
            return 0;
    }
    if (inm && (etag == NULL || !etag_list_matches(&inm->value, etag, 1)))
        return 0;
    return 304;
}

/* ------------------------------------------------------------------------ */
/* Ranges */

enum { RANGE_NONE = 0, RANGE_OK, RANGE_BAD };

typedef struct {
    int64_t start, end;       /* [start, end) */
} range_t;

/* Parses "bytes=..." against size into ranges (range_t, in request order,
 * unsatisfiable ones left out), as nginx. RANGE_OK: at least one range;
 * RANGE_NONE: send the whole file (no "bytes=" unit, more than max_ranges,
 * or ranges that add up to more than the file: overlapping ones, a cheap
 * amplification); RANGE_BAD: 416 (malformed, or nothing satisfiable). */
static int parse_range(const pt_str_t *v, int64_t size, int64_t max_ranges, pt_array_t *ranges)
{
    const char *p = v->data, *e = v->data + v->len;
    int64_t total = 0;

    if (v->len < 6 || pt_strncasecmp(p, "bytes=", 6) != 0)
        return RANGE_NONE;
    p += 6;

    for (;;) {
        int64_t a = 0, b = 0;
        int suffix = 0, have_b = 0;

        while (p < e && *p == ' ')
            p++;
        if (p < e && *p == '-') {
            suffix = 1;
            p++;
        } else {
            if (p == e || *p < '0' || *p > '9')
                return RANGE_BAD;
            while (p < e && *p >= '0' && *p <= '9') {
                if (a > (INT64_MAX - 9) / 10)
                    return RANGE_BAD;
                a = a * 10 + (*p++ - '0');
            }
            while (p < e && *p == ' ')
                p++;
            if (p == e || *p++ != '-')
                return RANGE_BAD;
        }
        while (p < e && *p == ' ')
            p++;
        if (p < e && *p >= '0' && *p <= '9') {
            have_b = 1;
            while (p < e && *p >= '0' && *p <= '9') {
                if (b > (INT64_MAX - 9) / 10)
                    return RANGE_BAD;
                b = b * 10 + (*p++ - '0');
            }
        } else if (suffix) {
            return RANGE_BAD;                   /* "-" alone */
        }
        while (p < e && *p == ' ')
            p++;
        if (p < e && *p != ',')
            return RANGE_BAD;

        /* to [a, b) */
        if (suffix) {
            a = b < size ? size - b : 0;
            b = size;
        } else if (!have_b || b >= size) {
            b = size;
        } else {
            if (a > b)
                return RANGE_BAD;
            b++;
        }
        if (a < b) {
            if (max_ranges >= 0 && (int64_t) ranges->nelts >= max_ranges)
                return RANGE_NONE;
            total += b - a;
            if (total > size)
                return RANGE_NONE;
            range_t *rg = pt_array_push(ranges);
            if (rg == NULL)
                return RANGE_NONE;
            rg->start = a;
            rg->end = b;
        }
        if (p == e)
            break;
        p++;                                    /* ',' */
    }

    return ranges->nelts ? RANGE_OK : RANGE_BAD;
}

/* If-Range: the range applies only while the validator still matches. */
static int if_range_matches(pt_http_request_t *r, time_t mtime, const pt_str_t *etag)
{
    pt_http_header_t *h = header_in(r, "If-Range", 8);
    if (h == NULL)
        return 1;
    const pt_str_t *v = &h->value;
    if (v->len >= 2 && (v->data[0] == '"' || (v->data[0] == 'W' && v->data[1] == '/')))
        return etag && v->len == etag->len && memcmp(v->data, etag->data, v->len) == 0;
    return header_time(h) == mtime;
}

/* ------------------------------------------------------------------------ */
/* Sending the body */

static void file_cleanup(void *data)
{
    file_ctx_t *ctx = data;
    if (ctx->resume.posted)
        pt_event_unpost(&ctx->resume);
    if (ctx->fd >= 0) {
        close(ctx->fd);
        ctx->fd = -1;
    }
}

static void on_write_ready(pt_http_request_t *r);

/* Queues the body segment after segment, reading the file in chunks, until
 * it is all queued (PT_OK: the last buffer went out with last_buf), the
 * writer is backed up (PT_AGAIN: resumed from r->write_event_handler), a
 * round's budget is used up (PT_AGAIN: resumed from a posted event), or an
 * error (PT_ERROR: client gone, read failure). */
static int send_chunks(file_ctx_t *ctx)
{
    pt_http_request_t *r = ctx->r;
    int64_t budget = clcf_of(r)->sendfile_max_chunk;
    int64_t sent = 0;

    if (budget <= 0)
        budget = ROUND_BUDGET;

    while (ctx->cur < ctx->nsegs) {
        segment_t *sg = &ctx->segs[ctx->cur];
        pt_buf_t *b;

        if (sg->text) {
            b = pt_buf_ref(sg->text, (size_t) sg->end);
            if (b == NULL)
                return PT_ERROR;
            ctx->cur++;
            if (ctx->cur < ctx->nsegs && ctx->segs[ctx->cur].text == NULL)
                ctx->offset = ctx->segs[ctx->cur].start;
        } else {
            int64_t left = sg->end - ctx->offset;
            size_t want = left > CHUNK_SIZE ? CHUNK_SIZE : (size_t) left;
            ssize_t n;

            b = pt_buf_get(CHUNK_SIZE);
            if (b == NULL)
                return PT_ERROR;
            do {
                n = pread(ctx->fd, b->last, want, (off_t) ctx->offset);
            } while (n < 0 && errno == EINTR);
            if (n <= 0) {
                if (n < 0)
                    pt_log_error(PT_LOG_CRIT, req_log(r), errno, "pread() \"%s\" failed",
                                 ctx->path);
                else
                    pt_log_error(PT_LOG_CRIT, req_log(r), 0, "file \"%s\" has been truncated",
                                 ctx->path);
                pt_buf_put(b);
                return PT_ERROR;
            }
            b->last += n;
            ctx->offset += n;
            sent += n;
            if (ctx->offset >= sg->end) {
                ctx->cur++;
                if (ctx->cur < ctx->nsegs && ctx->segs[ctx->cur].text == NULL)
                    ctx->offset = ctx->segs[ctx->cur].start;
            }
        }

        int last = ctx->cur == ctx->nsegs;
        if (last)
            b->last_buf = 1;
        int rc = pt_http_output(r, b);
        if (rc == PT_ERROR)
            return PT_ERROR;
        if (last)
            break;
        if (rc == PT_AGAIN) {
            r->write_event_handler = on_write_ready;
            return PT_AGAIN;
        }
        if (sent >= budget) {
            r->write_event_handler = NULL;
            pt_event_post(&ctx->resume);
            return PT_AGAIN;
        }
    }
    r->write_event_handler = NULL;
    return PT_OK;
}

static void resume(file_ctx_t *ctx)
{
    int rc = send_chunks(ctx);
    if (rc != PT_AGAIN)
        pt_http_finalize_request(ctx->r, rc);
}

static void on_write_ready(pt_http_request_t *r)
{
    file_ctx_t *ctx = pt_http_get_module_ctx(r, pt_http_static_module);
    if (ctx == NULL) {
        pt_http_finalize_request(r, PT_ERROR);
        return;
    }
    resume(ctx);
}

static void on_resume(pt_event_t *ev)
{
    resume(ev->data);
}

/* ------------------------------------------------------------------------ */
/* The handler */

static pt_http_header_t *header_out(pt_http_request_t *r, const char *name, size_t nlen,
                                    const char *value, size_t vlen)
{
    return pt_http_header_add(r, &r->headers_out.list, name, nlen, value, vlen);
}

/* 301 to the directory: "Location: <uri>/[?args]", with the bytes that
 * cannot appear in a header or would change the meaning of the uri
 * percent-encoded (r->uri is decoded). */
static int redirect_to_dir(pt_http_request_t *r)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = 0;

    for (size_t i = 0; i < r->uri.len; i++) {
        unsigned char ch = (unsigned char) r->uri.data[i];
        len += (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '#' || ch == '%' || ch == '?')
               ? 3 : 1;
    }
    len += 1 + (r->args.len ? 1 + r->args.len : 0);

    char *p = pt_pnalloc(r->pool, len), *q = p;
    pt_http_header_t *loc = pt_pcalloc(r->pool, sizeof(*loc));
    if (p == NULL || loc == NULL)
        return 500;
    for (size_t i = 0; i < r->uri.len; i++) {
        unsigned char ch = (unsigned char) r->uri.data[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '#' || ch == '%' || ch == '?') {
            *q++ = '%';
            *q++ = hex[ch >> 4];
            *q++ = hex[ch & 0xf];
        } else {
            *q++ = (char) ch;
        }
    }
    *q++ = '/';
    if (r->args.len) {
        *q++ = '?';
        memcpy(q, r->args.data, r->args.len);
        q += r->args.len;
    }
    pt_str_set(&loc->name, "Location");
    loc->value.data = p;
    loc->value.len = (size_t) (q - p);
    loc->hash = pt_hash_lower("location", 8);
    r->headers_out.location = loc;
    return 301;
}

static int send_empty_last(pt_http_request_t *r)
{
    pt_buf_t *b = pt_buf_ref("", 0);
    if (b == NULL)
        return PT_ERROR;
    b->last_buf = 1;
    return pt_http_output(r, b) == PT_ERROR ? PT_ERROR : PT_OK;
}

static int open_failed(pt_http_request_t *r, const char *path, int err)
{
    return pt_http_static_file_error(r, "open", path, err);
}

/* 206 with one range: Content-Range, and the body is that slice. */
static int single_range(pt_http_request_t *r, file_ctx_t *ctx, const range_t *rg, int64_t size)
{
    char buf[80];
    int n = snprintf(buf, sizeof(buf), "bytes %lld-%lld/%lld", (long long) rg->start,
                     (long long) (rg->end - 1), (long long) size);
    if (header_out(r, "Content-Range", 13, buf, (size_t) n) == NULL)
        return 500;
    r->headers_out.status = 206;
    r->headers_out.content_length_n = rg->end - rg->start;
    ctx->whole.start = rg->start;
    ctx->whole.end = rg->end;
    return PT_OK;
}

/* 206 multipart/byteranges: each range as a part with its own
 * Content-Type and Content-Range, in the order asked (as nginx). */
static int multipart(pt_http_request_t *r, file_ctx_t *ctx, const pt_array_t *ranges,
                     int64_t size)
{
    static uint32_t counter;
    const range_t *rg = ranges->elts;
    pt_http_headers_out_t *ho = &r->headers_out;
    char boundary[24];
    /* nginx's boundary: a counter, zero-padded to 20 digits */
    snprintf(boundary, sizeof(boundary), "%020u", (unsigned) ++counter);
    size_t nsegs = ranges->nelts * 2 + 1;
    segment_t *segs = pt_palloc(r->pool, nsegs * sizeof(segment_t));
    int64_t total = 0;

    if (segs == NULL)
        return 500;
    for (size_t i = 0; i < ranges->nelts; i++) {
        char *h = pt_psprintf(r->pool, "\r\n--%s\r\n%s%.*s%sContent-Range: bytes %lld-%lld/%lld"
                              "\r\n\r\n", boundary,
                              ho->content_type.len ? "Content-Type: " : "",
                              (int) ho->content_type.len,
                              ho->content_type.len ? ho->content_type.data : "",
                              ho->content_type.len ? "\r\n" : "",
                              (long long) rg[i].start, (long long) (rg[i].end - 1),
                              (long long) size);
        if (h == NULL)
            return 500;
        segs[2 * i].text = h;
        segs[2 * i].start = 0;
        segs[2 * i].end = (int64_t) strlen(h);
        segs[2 * i + 1].text = NULL;
        segs[2 * i + 1].start = rg[i].start;
        segs[2 * i + 1].end = rg[i].end;
        total += segs[2 * i].end + rg[i].end - rg[i].start;
    }
    char *tail = pt_psprintf(r->pool, "\r\n--%s--\r\n", boundary);
    char *ctype = pt_psprintf(r->pool, "multipart/byteranges; boundary=%s", boundary);
    if (tail == NULL || ctype == NULL)
        return 500;
    segs[nsegs - 1].text = tail;
    segs[nsegs - 1].start = 0;
    segs[nsegs - 1].end = (int64_t) strlen(tail);
    total += segs[nsegs - 1].end;

    ho->status = 206;
    ho->content_length_n = total;
    ho->content_type.data = ctype;
    ho->content_type.len = strlen(ctype);
    ctx->segs = segs;
    ctx->nsegs = (unsigned) nsegs;
    return PT_OK;
}

static int static_handler(pt_http_request_t *r)
{
    pt_http_core_loc_conf_t *clcf = clcf_of(r);
    pt_str_t path;
    struct stat st;
    int fd, rc;

    if (!(r->method & (PT_HTTP_GET | PT_HTTP_HEAD | PT_HTTP_POST)))
        return 405;

    rc = pt_http_static_map_uri(r, &r->uri, &path, 0);
    if (rc == PT_ERROR)
        return 500;

    if (r->uri.len == 0 || r->uri.data[r->uri.len - 1] == '/') {
        /* the index and autoindex modules did not answer (nginx's content
         * phase says this for a directory request nobody served) */
        if (rc == PT_OK)
            pt_log_error(PT_LOG_ERR, req_log(r), 0, "directory index of \"%s\" is forbidden",
                         path.data);
        return 403;
    }
    if (rc == PT_DECLINED) {
        if (clcf->log_not_found)
            pt_log_error(PT_LOG_ERR, req_log(r), 0,
                         "refused \"%s\": the uri would leave the \"alias\" directory",
                         path.data);
        return 404;
    }

    /* O_NONBLOCK: opening a FIFO must not block the worker */
    fd = open(path.data, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return open_failed(r, path.data, errno);
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        pt_log_error(PT_LOG_CRIT, req_log(r), err, "fstat() \"%s\" failed", path.data);
        return 500;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return redirect_to_dir(r);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        pt_log_error(PT_LOG_CRIT, req_log(r), 0, "\"%s\" is not a regular file", path.data);
        return 404;
    }
    if (r->method == PT_HTTP_POST) {
        close(fd);
        return 405;
    }

    file_ctx_t *ctx = pt_pcalloc(r->pool, sizeof(*ctx));
    if (ctx == NULL) {
        close(fd);
        return 500;
    }
    ctx->r = r;
    ctx->fd = fd;
    ctx->path = path.data;
    ctx->resume.handler = on_resume;
    ctx->resume.data = ctx;
    ctx->resume.timer_index = SIZE_MAX;
    if (pt_pool_cleanup_add(r->pool, file_cleanup, ctx) != 0) {
        close(fd);
        return 500;
    }

    rc = pt_http_discard_request_body(r);
    if (rc != PT_OK)
        return rc;

    int64_t size = (int64_t) st.st_size;
    time_t mtime = st.st_mtime;
    pt_http_headers_out_t *ho = &r->headers_out;
    pt_str_t etag = pt_null_string;
    pt_http_header_t *etag_h = NULL, *ranges_h = NULL;

    ho->status = 200;
    ho->content_length_n = size;
    ho->last_modified_time = mtime;
    pt_http_set_content_type(r);

    if (clcf->etag) {
        char buf[48];
        int n = snprintf(buf, sizeof(buf), "\"%llx-%llx\"", (unsigned long long) mtime,
                         (unsigned long long) size);
        etag_h = header_out(r, "ETag", 4, buf, (size_t) n);
        if (etag_h == NULL)
            return 500;
        etag = etag_h->value;
    }

    /* an error page (error_page 404 /404.html) goes out with the error's
     * status: no 304/412 and no ranges for it (nginx's filters see that
     * status, not 200); one turned into 200 (error_page 404 =200 /x) is
     * a plain 200 for them */
    int plain = r->err_status == 0 || r->err_status == 200;
    if (plain)
        r->err_status = 0;      /* a 304 or 206 chosen below must not become 200 */

    rc = plain ? check_conditions(r, mtime, etag.len ? &etag : NULL) : 0;
    if (rc == 412) {
        if (etag_h)
            etag_h->deleted = 1;
        return 412;
    }
    if (rc == 304) {
        ho->status = 304;
        ho->content_type.len = 0;
        ho->content_length_n = -1;
        if (pt_http_send_header(r) == PT_ERROR)
            return PT_ERROR;
        return send_empty_last(r);
    }

    ctx->whole.start = 0;
    ctx->whole.end = size;
    ctx->segs = &ctx->whole;
    ctx->nsegs = 1;

    pt_http_header_t *range = header_in(r, "Range", 5);
    if (plain && clcf->max_ranges != 0 && range && size > 0
        && if_range_matches(r, mtime, etag.len ? &etag : NULL)) {
        pt_array_t ranges;
        if (pt_array_init(&ranges, r->pool, 1, sizeof(range_t)) != 0)
            return 500;
        int kind = parse_range(&range->value, size, clcf->max_ranges, &ranges);
        if (kind == RANGE_BAD) {
            char buf[48];
            int n = snprintf(buf, sizeof(buf), "bytes */%lld", (long long) size);
            if (header_out(r, "Content-Range", 13, buf, (size_t) n) == NULL)
                return 500;
            if (etag_h)
                etag_h->deleted = 1;
            return 416;
        }
        if (kind == RANGE_OK) {
            rc = ranges.nelts == 1 ? single_range(r, ctx, ranges.elts, size)
                                   : multipart(r, ctx, &ranges, size);
            if (rc != PT_OK)
                return rc;
        }
    }
    if (plain && ho->status == 200 && clcf->max_ranges != 0) {
        ranges_h = header_out(r, "Accept-Ranges", 13, "bytes", 5);
        if (ranges_h == NULL)
            return 500;
    }

    if (pt_http_send_header(r) == PT_ERROR)
        return PT_ERROR;
    if (r->header_only || size == 0)
        return send_empty_last(r);

    ctx->cur = 0;
    ctx->offset = ctx->segs[0].text ? 0 : ctx->segs[0].start;
    pt_http_set_ctx(r, ctx, pt_http_static_module);
    return send_chunks(ctx);
}

/* ------------------------------------------------------------------------ */
/* $request_filename */

static int get_request_filename(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_str_t path;
    (void) data;
    if (r->loc_conf == NULL) {
        v->not_found = 1;
        return PT_OK;
    }
    int rc = pt_http_static_map_uri(r, &r->uri, &path, 0);
    if (rc == PT_ERROR)
        return PT_ERROR;
    v->value = path;
    v->valid = 1;
    v->no_cacheable = 1;
    return PT_OK;
}

static int static_preconf(pt_conf_t *cf)
{
    pt_str_t name = pt_string("request_filename");
    pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_NOCACHEABLE);
    if (v == NULL)
        return -1;
    v->get = get_request_filename;
    return 0;
}

static void *static_create_main_conf(pt_conf_t *cf)
{
    static_main_conf_t *smcf = pt_pcalloc(cf->pool, sizeof(*smcf));
    if (smcf && cf->cycle)
        smcf->prefix = cf->cycle->prefix;
    return smcf;
}

static int static_init(pt_conf_t *cf)
{
    return pt_http_phase_add(cf, PT_HTTP_CONTENT_PHASE, static_handler);
}

pt_module_t pt_http_static_module = {
    .name = "http_static",
    .create_main_conf = static_create_main_conf,
    .preconfiguration = static_preconf,
    .postconfiguration = static_init,
};
