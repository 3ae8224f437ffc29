/* Module "http_proxy_cache": response caching for proxied locations, as
 * nginx's proxy_cache family:
 *
 *   proxy_cache_path PATH [levels=1:2] keys_zone=NAME:SIZE [inactive=10m]
 *                    [max_size=SIZE] [use_temp_path=off] ...;        (http)
 *   proxy_cache NAME|off;  proxy_cache_key STRING;
 *   proxy_cache_valid [code ...|any] TIME;
 *   proxy_cache_use_stale error timeout invalid_header updating http_500 ...;
 *   proxy_cache_lock on; proxy_cache_lock_timeout 5s; proxy_cache_lock_age 5s;
 *   proxy_cache_bypass STRING...; proxy_no_cache STRING...;
 *   proxy_cache_methods GET HEAD POST; proxy_cache_min_uses N;
 *   proxy_cache_revalidate on; proxy_cache_convert_head on;
 *   proxy_cache_background_update on (accepted, see below);
 *   proxy_cache_max_range_offset N;
 *   $upstream_cache_status: MISS BYPASS EXPIRED STALE UPDATING REVALIDATED HIT
 *
 * It hooks in without the proxy knowing:
 *
 *  1. A PRECONTENT handler looks the key up for a location that proxies
 *     (clcf->handler set) and caches this method. A fresh entry (HIT) or a
 *     stale one that another request is refreshing (UPDATING, with
 *     use_stale updating) is served from the file here: pread(2) into I/O
 *     buffers, resumed from r->write_event_handler when the writer is backed
 *     up, as the static module does. A key another request is filling
 *     (proxy_cache_lock) makes this one wait on a timer, polling the index,
 *     up to proxy_cache_lock_timeout, then look again. Otherwise the handler
 *     declines and proxy_pass runs: MISS / EXPIRED / BYPASS.
 *  2. The header filter (the top of the chain: it sees the response as the
 *     proxy made it, before add_header or gzip) decides whether the response
 *     is stored: X-Accel-Expires, then Cache-Control (no-store, no-cache,
 *     private; s-maxage, max-age), then Expires, then proxy_cache_valid; no
 *     Set-Cookie, no "Vary: *", proxy_no_cache false. If so it writes the
 *     file's header and head to a temporary file in the entry's directory.
 *     The body filter writes every buffer to it (write(2), on the loop, as
 *     nginx) before passing the buffer on untouched, and at last_buf
 *     renames it into place and updates the index. A response that ends any
 *     other way leaves nothing (the request pool's cleanup unlinks it).
 *  3. When the proxy fails (its 502/504 special response: error, timeout,
 *     invalid_header) or the backend answers a status listed in use_stale
 *     (http_500 ...), and a stale entry exists, the header filter swaps the
 *     response for the stored one (STALE); a backend's 304 to our
 *     revalidation swaps in the stored entry too (REVALIDATED). The error's
 *     own body is dropped by the body filter, which sends the stored body
 *     instead. That happens inside the proxy's (or the special response's)
 *     call chain, which finalizes the request when it returns, so the
 *     stored body is sent at once: from an mmap(2) of the file, as reference
 *     buffers (no copy, page cache memory, unmapped with the request).
 *     An error that error_page redirects (which clears r->ctx) is still
 *     caught: requests that could use a stale entry are kept on a per-worker
 *     list and found again when the error page's header goes out; the stale
 *     entry is then answered as the cached location's (its r->loc_conf).
 *
 * Cache-Control stale-while-revalidate=N / stale-if-error=N permit UPDATING
 * and STALE answers within N seconds of expiry, as the use_stale parameters
 * do (nginx 1.11.10).
 *
 * A HIT answers If-None-Match / If-Modified-Since (304) and one byte range
 * (206, If-Range; several ranges get the whole entry). A response with Vary
 * is stored with the values of the request headers it names: a request with
 * other values is a MISS that replaces the entry (nginx keeps one file per
 * variant); "Vary: *" is not stored.
 *
 * Not done (nginx has them): a file per Vary variant, multipart ranges,
 * proxy_cache_background_update (accepted; the refreshing request waits for
 * the backend as with it off), the purger, min_free, loader/manager
 * thresholds (accepted); the loader walks the directory in one go in the
 * worker that holds the manager lease, at its first tick. proxy_ignore_headers is the proxy's directive: its
 * setting reaches the cache when the proxy exports pt_proxy_ignore_headers()
 * (a weak reference here), else nothing is ignored. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "upstream.h"
#include "../config/cycle.h"
#include "../core/log.h"
#include "../core/time.h"
#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"

extern pt_module_t pt_http_proxy_cache_module;
extern pt_module_t pt_core_module;           /* its conf: pt_core_conf_t (cycle.h) */

/* proxy_ignore_headers of the proxy module, when it exports it (bits as its
 * table: X-Accel-Expires 0x02, Expires 0x20, Cache-Control 0x40,
 * Set-Cookie 0x80, Vary 0x100). */
unsigned pt_proxy_ignore_headers(pt_http_request_t *r) __attribute__((weak));
#define IGN_X_ACCEL_EXPIRES 0x02
#define IGN_EXPIRES         0x20
#define IGN_CACHE_CONTROL   0x40
#define IGN_SET_COOKIE      0x80
#define IGN_VARY            0x100

#define CHUNK_SIZE   (64 * 1024)
#define ROUND_BUDGET (2 * 1024 * 1024)
#define LOCK_POLL_MS 20
#define MANAGER_TICK 1000

/* proxy_cache_use_stale bits */
#define STALE_ERROR          0x0001
#define STALE_TIMEOUT        0x0002
#define STALE_INVALID_HEADER 0x0004
#define STALE_UPDATING       0x0008
#define STALE_HTTP_500       0x0010
#define STALE_HTTP_502       0x0020
#define STALE_HTTP_503       0x0040
#define STALE_HTTP_504       0x0080
#define STALE_HTTP_403       0x0100
#define STALE_HTTP_404       0x0200
#define STALE_HTTP_429       0x0400
#define STALE_OFF            0x8000

enum { CS_NONE = 0, CS_MISS, CS_BYPASS, CS_EXPIRED, CS_STALE, CS_UPDATING, CS_REVALIDATED,
       CS_HIT };
static const pt_str_t cs_names[] = {
    pt_null_string, pt_string("MISS"), pt_string("BYPASS"), pt_string("EXPIRED"),
    pt_string("STALE"), pt_string("UPDATING"), pt_string("REVALIDATED"), pt_string("HIT")
};

typedef struct {
    int     status;             /* 0: any */
    int64_t valid;              /* seconds */
} cache_valid_t;

typedef struct {
    pt_array_t   caches;        /* pt_cache_t * */
    pt_http_cv_t *default_key;  /* $scheme$proxy_host$request_uri */
} cache_main_conf_t;

typedef struct {
    pt_shm_zone_t *zone;        /* UNSET_PTR; NULL: off */
    pt_http_cv_t  *zone_cv;     /* proxy_cache $variable */
    pt_http_cv_t  *key;         /* UNSET_PTR: default */
    pt_array_t    *valid;       /* cache_valid_t; UNSET_PTR */
    pt_array_t    *bypass;      /* pt_http_cv_t; UNSET_PTR */
    pt_array_t    *no_cache;    /* pt_http_cv_t; UNSET_PTR */
    unsigned       use_stale;   /* STALE_*; 0 unset */
    unsigned       methods;     /* PT_HTTP_*; 0 unset */
    int            lock;
    int64_t        lock_timeout, lock_age;   /* ms */
    int64_t        min_uses;
    int            revalidate, background_update, convert_head;
    int64_t        max_range_offset;         /* -1 off */
} cache_conf_t;

typedef struct cache_ctx_s {
    pt_http_request_t *r;
    pt_cache_t        *cache;
    cache_conf_t      *conf;
    unsigned char      md5[PT_CACHE_KEY_LEN];
    pt_str_t           key;
    int                status;          /* CS_* */
    uint32_t           lock_id;
    char              *file_name;       /* the entry's file */
    size_t             dir_len;

    /* waiting for a filler (proxy_cache_lock) */
    pt_event_t         wait_ev;
    int64_t            wait_start;
    pt_http_event_cb   saved_read, saved_write;

    /* filling */
    int                tmp_fd;
    char              *tmp_name;
    int64_t            body_len;
    int64_t            expect_len;      /* Content-Length, -1 unknown */
    int64_t            head_size;       /* header + key + head bytes */
    pt_cache_file_header_t fh;

    /* serving a file (HIT, UPDATING): pread chunks */
    int                fd;
    int64_t            offset, end;
    pt_event_t         resume;

    /* serving a swapped-in entry (STALE, REVALIDATED): the mapped body */
    void              *map;
    size_t             map_len;
    const char        *map_body;
    int64_t            map_body_len;

    unsigned           locked:1;        /* we hold the fill lock */
    unsigned           fill:1;          /* store the response if it allows */
    unsigned           stale_ok:1;      /* a stale entry exists (use_stale) */
    unsigned           stale_error:1;   /* within its stale-if-error time */
    unsigned           revalidating:1;  /* conditional headers were added */
    unsigned           was_head:1;      /* HEAD sent upstream as GET */
    unsigned           serving:1;       /* the response is ours (from the file) */
    unsigned           swapped:1;       /* the error/304 response was replaced */
    unsigned           body_sent:1;     /* the swapped-in body went out */
    unsigned           waiting:1;
    unsigned           other_variant:1; /* the entry is another Vary variant */
    unsigned           listed:1;        /* on the stale list */
    unsigned           redirected:1;    /* found again after error_page */
    void             **loc_conf;        /* the cached location's confs */

    /* requests that may swap in a stale entry or asked the backend with GET
     * for a HEAD, so that one whose error went through error_page (an
     * internal redirect clears r->ctx) is found again */
    struct cache_ctx_s *snext, *sprev;
} cache_ctx_t;

static cache_ctx_t *stale_list;

static void stale_list_add(cache_ctx_t *ctx)
{
    if (ctx->listed)
        return;
    ctx->listed = 1;
    ctx->sprev = NULL;
    ctx->snext = stale_list;
    if (stale_list)
        stale_list->sprev = ctx;
    stale_list = ctx;
}

static void stale_list_remove(cache_ctx_t *ctx)
{
    if (!ctx->listed)
        return;
    ctx->listed = 0;
    if (ctx->sprev)
        ctx->sprev->snext = ctx->snext;
    else
        stale_list = ctx->snext;
    if (ctx->snext)
        ctx->snext->sprev = ctx->sprev;
    ctx->snext = ctx->sprev = NULL;
}

static cache_ctx_t *stale_list_find(pt_http_request_t *r)
{
    for (cache_ctx_t *c = stale_list; c; c = c->snext)
        if (c->r == r)
            return c;
    return NULL;
}

static pt_http_header_filter_cb next_header_filter;
static pt_http_body_filter_cb   next_body_filter;

static pt_log_t *req_log(pt_http_request_t *r)
{
    return r->connection ? &r->connection->log : NULL;
}

/* ------------------------------------------------------------------------ */
/* Request context and cleanup */

static void release_fill(cache_ctx_t *ctx)
{
    if (ctx->tmp_fd >= 0) {
        close(ctx->tmp_fd);
        ctx->tmp_fd = -1;
    }
    if (ctx->tmp_name) {
        (void) unlink(ctx->tmp_name);
        ctx->tmp_name = NULL;
    }
    if (ctx->locked) {
        pt_cache_unlock(ctx->cache, ctx->md5, ctx->lock_id);
        ctx->locked = 0;
    }
    ctx->fill = 0;
}

static void ctx_cleanup(void *data)
{
    cache_ctx_t *ctx = data;
    stale_list_remove(ctx);
    if (ctx->wait_ev.timer_set)
        pt_timer_del(&ctx->wait_ev);
    if (ctx->resume.posted)
        pt_event_unpost(&ctx->resume);
    release_fill(ctx);
    if (ctx->fd >= 0) {
        close(ctx->fd);
        ctx->fd = -1;
    }
    if (ctx->map) {
        munmap(ctx->map, ctx->map_len);
        ctx->map = NULL;
    }
}

static void on_resume(pt_event_t *ev);

static cache_ctx_t *ctx_create(pt_http_request_t *r)
{
    cache_ctx_t *ctx = pt_pcalloc(r->pool, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->r = r;
    ctx->loc_conf = r->loc_conf;
    ctx->tmp_fd = -1;
    ctx->fd = -1;
    ctx->expect_len = -1;
    ctx->wait_ev.timer_index = SIZE_MAX;
    ctx->resume.timer_index = SIZE_MAX;
    ctx->resume.handler = on_resume;
    ctx->resume.data = ctx;
    if (pt_pool_cleanup_add(r->pool, ctx_cleanup, ctx) != 0)
        return NULL;
    pt_http_set_ctx(r, ctx, pt_http_proxy_cache_module);
    return ctx;
}

/* ------------------------------------------------------------------------ */
/* Stored heads: one record per line,
 *   S<status line>   T<content type>   L<location>   V<server>   D<date>
 *   H<name>: <value>
 * (values never hold CR, LF or NUL: the response parser refuses them). */

static size_t head_line_len(const pt_str_t *a, const pt_str_t *b)
{
    return 1 + a->len + (b ? 2 + b->len : 0) + 1;
}

static char *head_line(char *p, char tag, const pt_str_t *a, const pt_str_t *b)
{
    *p++ = tag;
    if (a->len)
        memcpy(p, a->data, a->len);
    p += a->len;
    if (b) {
        *p++ = ':';
        *p++ = ' ';
        if (b->len)
            memcpy(p, b->data, b->len);
        p += b->len;
    }
    *p++ = '\n';
    return p;
}

/* Calls fn for each header name listed in the Vary headers of vary_list
 * (the backend's response headers). */
static void each_vary_name(pt_array_t *vary_list, void (*fn)(void *, const pt_str_t *),
                           void *data)
{
    pt_http_header_t *h = vary_list->elts;
    for (size_t i = 0; i < vary_list->nelts; i++) {
        if (!pt_str_caseeq_lit(&h[i].name, "vary"))
            continue;
        const char *p = h[i].value.data, *end = p + h[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *st = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p > st) {
                pt_str_t name = { (size_t) (p - st), (char *) st };
                fn(data, &name);
            }
        }
    }
}

typedef struct {
    pt_http_request_t *r;
    size_t             len;
    char              *q;
} vary_out_t;

static pt_str_t request_value(pt_http_request_t *r, const pt_str_t *name)
{
    pt_http_header_t *h = pt_http_header_find(&r->headers_in.list, name->data, name->len);
    pt_str_t v = pt_null_string;
    if (h)
        v = h->value;
    return v;
}

static void vary_len(void *data, const pt_str_t *name)
{
    vary_out_t *vo = data;
    pt_str_t v = request_value(vo->r, name);
    vo->len += head_line_len(name, &v);
}

static void vary_write(void *data, const pt_str_t *name)
{
    vary_out_t *vo = data;
    pt_str_t v = request_value(vo->r, name);
    vo->q = head_line(vo->q, 'R', name, &v);
}

/* The head to store; with "R" records for the request headers the response
 * varies by (their values now), so a request with other values is not
 * answered with this variant. */
static int serialize_head(pt_http_request_t *r, pt_array_t *vary_list, pt_str_t *out)
{
    pt_http_headers_out_t *ho = &r->headers_out;
    pt_http_header_t *h = ho->list.elts;
    size_t len = 0;
    vary_out_t vo = { r, 0, NULL };

    if (vary_list)
        each_vary_name(vary_list, vary_len, &vo);
    len += vo.len;

    len += head_line_len(&ho->status_line, NULL);
    len += head_line_len(&ho->content_type, NULL);
    if (ho->location)
        len += head_line_len(&ho->location->value, NULL);
    if (ho->server)
        len += head_line_len(&ho->server->value, NULL);
    if (ho->date)
        len += head_line_len(&ho->date->value, NULL);
    for (size_t i = 0; i < ho->list.nelts; i++)
        if (!h[i].deleted)
            len += head_line_len(&h[i].name, &h[i].value);

    char *p = pt_pnalloc(r->pool, len), *q = p;
    if (p == NULL)
        return -1;
    q = head_line(q, 'S', &ho->status_line, NULL);
    q = head_line(q, 'T', &ho->content_type, NULL);
    if (ho->location)
        q = head_line(q, 'L', &ho->location->value, NULL);
    if (ho->server)
        q = head_line(q, 'V', &ho->server->value, NULL);
    if (ho->date)
        q = head_line(q, 'D', &ho->date->value, NULL);
    for (size_t i = 0; i < ho->list.nelts; i++)
        if (!h[i].deleted)
            q = head_line(q, 'H', &h[i].name, &h[i].value);
    if (vary_list) {
        vo.q = q;
        each_vary_name(vary_list, vary_write, &vo);
        q = vo.q;
    }
    out->data = p;
    out->len = (size_t) (q - p);
    return 0;
}

static pt_http_header_t *standalone(pt_http_request_t *r, const char *name, const char *v,
                                    size_t vlen)
{
    pt_http_header_t *x = pt_pcalloc(r->pool, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->name.data = (char *) name;
    x->name.len = strlen(name);
    x->value.data = (char *) v;
    x->value.len = vlen;
    x->hash = pt_hash_lower(name, x->name.len);
    return x;
}

/* Replaces r->headers_out with the stored head (head lives in r->pool). */
static int apply_head(pt_http_request_t *r, int status, char *head, size_t len, int64_t body_len)
{
    pt_http_headers_out_t *ho = &r->headers_out;
    size_t n = 0;

    for (size_t i = 0; i < len; i++)
        if (head[i] == '\n')
            n++;
    if (pt_array_init(&ho->list, r->pool, n ? n : 1, sizeof(pt_http_header_t)) != 0)
        return -1;
    ho->status = status;
    ho->status_line.len = 0;
    ho->content_type.len = 0;
    ho->content_type.data = NULL;
    ho->location = NULL;
    ho->server = NULL;
    ho->date = NULL;
    ho->last_modified_time = -1;
    ho->content_length_n = body_len;

    char *p = head, *end = head + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t) (end - p));
        if (nl == NULL)
            return -1;
        char tag = *p;
        char *v = p + 1;
        size_t vlen = (size_t) (nl - v);
        switch (tag) {
        case 'S':
            ho->status_line.data = v;
            ho->status_line.len = vlen;
            break;
        case 'T':
            ho->content_type.data = v;
            ho->content_type.len = vlen;
            break;
        case 'L':
            if ((ho->location = standalone(r, "Location", v, vlen)) == NULL)
                return -1;
            break;
        case 'V':
            if ((ho->server = standalone(r, "Server", v, vlen)) == NULL)
                return -1;
            break;
        case 'D':
            if ((ho->date = standalone(r, "Date", v, vlen)) == NULL)
                return -1;
            break;
        case 'R':
            break;
        case 'H': {
            char *colon = memchr(v, ':', vlen);
            if (colon == NULL || colon + 2 > nl)
                return -1;
            pt_http_header_t *h = pt_array_push(&ho->list);
            if (h == NULL)
                return -1;
            h->name.data = v;
            h->name.len = (size_t) (colon - v);
            h->value.data = colon + 2;
            h->value.len = (size_t) (nl - colon - 2);
            h->hash = pt_hash_lower(h->name.data, h->name.len);
            h->deleted = 0;
            break;
        }
        default:
            return -1;
        }
        p = nl + 1;
    }
    return 0;
}

/* A value of a header in the stored head ("H" records), or NULL. */
static const char *head_find(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = head, *end = head + len;
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t) (end - p));
        if (e == NULL)
            return NULL;
        if (*p == 'H' && (size_t) (e - p) > nl + 2 && p[1 + nl] == ':'
            && pt_strncasecmp(p + 1, name, nl) == 0) {
            *vlen = (size_t) (e - p - nl - 3);
            return p + nl + 3;
        }
        p = e + 1;
    }
    return NULL;
}

/* Do the request's headers match the variant stored ("R" records)? */
static int variant_matches(pt_http_request_t *r, const char *head, size_t len)
{
    const char *p = head, *end = head + len;
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t) (end - p));
        if (e == NULL)
            return 0;
        if (*p == 'R') {
            const char *colon = memchr(p, ':', (size_t) (e - p));
            if (colon == NULL || colon + 2 > e)
                return 0;
            pt_str_t name = { (size_t) (colon - p - 1), (char *) p + 1 };
            pt_str_t want = { (size_t) (e - colon - 2), (char *) colon + 2 };
            pt_str_t have = request_value(r, &name);
            if (!pt_str_eq(&have, &want))
                return 0;
        }
        p = e + 1;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Opening a stored entry */

typedef struct {
    int                    fd;
    pt_cache_file_header_t h;
    char                  *head;        /* r->pool */
    int64_t                body_off;
} entry_t;

/* Opens ctx->file_name and checks it is the entry of ctx->key. 0, or -1
 * (the caller forgets the entry: the index was wrong about the file). */
static int entry_open(cache_ctx_t *ctx, entry_t *e)
{
    pt_http_request_t *r = ctx->r;
    struct stat st;

    e->fd = open(ctx->file_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (e->fd < 0) {
        if (errno != ENOENT)
            pt_log_error(PT_LOG_CRIT, req_log(r), errno, "open() \"%s\" failed", ctx->file_name);
        return -1;
    }
    ssize_t n = pread(e->fd, &e->h, sizeof(e->h), 0);
    if (n != (ssize_t) sizeof(e->h) || fstat(e->fd, &st) != 0
        || memcmp(e->h.magic, PT_CACHE_MAGIC, 8) != 0
        || memcmp(e->h.md5, ctx->md5, PT_CACHE_KEY_LEN) != 0
        || e->h.key_len > 65536 || e->h.head_len > 1024 * 1024 || e->h.body_len < 0
        || (int64_t) sizeof(e->h) + e->h.key_len + e->h.head_len + e->h.body_len
           != (int64_t) st.st_size)
        goto bad;
    size_t meta = (size_t) e->h.key_len + e->h.head_len;
    char *buf = pt_pnalloc(r->pool, meta + 1);
    if (buf == NULL)
        goto fail;
    if (meta && pread(e->fd, buf, meta, sizeof(e->h)) != (ssize_t) meta)
        goto bad;
    if (e->h.key_len != ctx->key.len || memcmp(buf, ctx->key.data, ctx->key.len) != 0) {
        pt_log_error(PT_LOG_CRIT, req_log(r), 0, "cache file \"%s\" has md5 collision",
                     ctx->file_name);
        goto fail;
    }
    e->head = buf + e->h.key_len;
    e->body_off = (int64_t) sizeof(e->h) + (int64_t) meta;
    return 0;
bad:
    pt_log_error(PT_LOG_CRIT, req_log(r), 0, "cache file \"%s\" is invalid", ctx->file_name);
fail:
    close(e->fd);
    e->fd = -1;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Serving from the file (HIT, UPDATING), as the static module */

static pt_http_core_loc_conf_t *clcf_of(pt_http_request_t *r)
{
    return pt_http_get_module_loc_conf(r, pt_http_core_module);
}

static void on_write_ready(pt_http_request_t *r);

static int send_chunks(cache_ctx_t *ctx)
{
    pt_http_request_t *r = ctx->r;
    int64_t budget = clcf_of(r)->sendfile_max_chunk, sent = 0;

    if (budget <= 0)
        budget = ROUND_BUDGET;
    while (ctx->offset < ctx->end) {
        int64_t left = ctx->end - ctx->offset;
        size_t want = left > CHUNK_SIZE ? CHUNK_SIZE : (size_t) left;
        pt_buf_t *b = pt_buf_get(CHUNK_SIZE);
        ssize_t n;

        if (b == NULL)
            return PT_ERROR;
        do {
            n = pread(ctx->fd, b->last, want, (off_t) ctx->offset);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) {
            pt_log_error(PT_LOG_CRIT, req_log(r), n < 0 ? errno : 0,
                         n < 0 ? "pread() \"%s\" failed" : "cache file \"%s\" has been truncated",
                         ctx->file_name);
            pt_buf_put(b);
            return PT_ERROR;
        }
        b->last += n;
        ctx->offset += n;
        sent += n;
        int last = ctx->offset >= ctx->end;
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
    close(ctx->fd);
    ctx->fd = -1;
    return PT_OK;
}

static void resume_send(cache_ctx_t *ctx)
{
    int rc = send_chunks(ctx);
    if (rc != PT_AGAIN)
        pt_http_finalize_request(ctx->r, rc);
}

static void on_write_ready(pt_http_request_t *r)
{
    cache_ctx_t *ctx = pt_http_get_module_ctx(r, pt_http_proxy_cache_module);
    if (ctx == NULL || ctx->fd < 0) {
        pt_http_finalize_request(r, PT_ERROR);
        return;
    }
    resume_send(ctx);
}

static void on_resume(pt_event_t *ev)
{
    resume_send(ev->data);
}

static int send_empty_last(pt_http_request_t *r)
{
    pt_buf_t *b = pt_buf_ref("", 0);
    if (b == NULL)
        return PT_ERROR;
    b->last_buf = 1;
    return pt_http_output(r, b) == PT_ERROR ? PT_ERROR : PT_OK;
}

/* Conditional GET against the stored validators: 304 or 0. */
static int not_modified(pt_http_request_t *r)
{
    pt_http_headers_out_t *ho = &r->headers_out;
    pt_http_header_t *inm = pt_http_header_find(&r->headers_in.list, "If-None-Match", 13);
    pt_http_header_t *ims = pt_http_header_find(&r->headers_in.list, "If-Modified-Since", 17);

    if (ho->status != 200 || (inm == NULL && ims == NULL))
        return 0;
    if (inm) {
        pt_http_header_t *etag = pt_http_header_find(&ho->list, "ETag", 4);
        if (etag == NULL)
            return 0;
        const char *p = inm->value.data, *end = p + inm->value.len;
        const char *ev = etag->value.data;
        size_t el = etag->value.len;
        if (el > 2 && ev[0] == 'W' && ev[1] == '/') {
            ev += 2;
            el -= 2;
        }
        int match = 0;
        while (p < end && !match) {
            while (p < end && (*p == ' ' || *p == ','))
                p++;
            const char *s = p;
            while (p < end && *p != ',')
                p++;
            const char *e = p;
            while (e > s && e[-1] == ' ')
                e--;
            if (e - s == 1 && *s == '*')
                match = 1;
            if (e - s > 2 && s[0] == 'W' && s[1] == '/')
                s += 2;
            if ((size_t) (e - s) == el && memcmp(s, ev, el) == 0)
                match = 1;
        }
        if (!match)
            return 0;
        return 304;
    }
    pt_http_header_t *lm = pt_http_header_find(&ho->list, "Last-Modified", 13);
    if (lm == NULL)
        return 0;
    time_t t = pt_http_time_parse(ims->value.data, ims->value.len);
    time_t m = pt_http_time_parse(lm->value.data, lm->value.len);
    if (t == (time_t) -1 || m == (time_t) -1 || t != m)
        return 0;
    return 304;
}

/* One byte range of a stored 200 ("bytes=a-b", "bytes=a-", "bytes=-n"),
 * honouring If-Range and max_ranges: sets 206, Content-Range and the slice
 * [*from, *to). Returns 0 (the whole entry, or the range set up), or 416
 * (Content-Range "bytes * /size" set). Several ranges get the whole entry. */
static int byte_range(pt_http_request_t *r, int64_t size, int64_t *from, int64_t *to)
{
    pt_http_headers_out_t *ho = &r->headers_out;
    pt_http_header_t *h = pt_http_header_find(&r->headers_in.list, "Range", 5);
    char buf[80];

    if (h == NULL || ho->status != 200 || clcf_of(r)->max_ranges == 0 || size == 0)
        return 0;
    const char *p = h->value.data, *end = p + h->value.len;
    if (h->value.len < 7 || pt_strncasecmp(p, "bytes=", 6) != 0 || memchr(p, ',', h->value.len))
        return 0;
    pt_http_header_t *ir = pt_http_header_find(&r->headers_in.list, "If-Range", 8);
    if (ir) {
        pt_http_header_t *v = pt_http_header_find(&ho->list, ir->value.len && (ir->value.data[0] == '"'
                                                  || ir->value.data[0] == 'W')
                                                  ? "ETag" : "Last-Modified",
                                                  ir->value.len && (ir->value.data[0] == '"'
                                                  || ir->value.data[0] == 'W') ? 4 : 13);
        if (v == NULL || !pt_str_eq(&v->value, &ir->value))
            return 0;
    }
    p += 6;
    int64_t a = -1, b = -1;
    while (p < end && *p == ' ')
        p++;
    if (p < end && *p >= '0' && *p <= '9') {
        a = 0;
        while (p < end && *p >= '0' && *p <= '9' && a < INT64_MAX / 10 - 10)
            a = a * 10 + (*p++ - '0');
    }
    if (p == end || *p++ != '-')
        return 416;
    if (p < end && *p >= '0' && *p <= '9') {
        b = 0;
        while (p < end && *p >= '0' && *p <= '9' && b < INT64_MAX / 10 - 10)
            b = b * 10 + (*p++ - '0');
    }
    while (p < end && *p == ' ')
        p++;
    if (p != end || (a < 0 && b < 0))
        return 416;
    if (a < 0) {                        /* the last b bytes */
        a = b >= size ? 0 : size - b;
        b = size;
    } else {
        if (a > b && b >= 0)
            return 416;
        b = (b < 0 || b >= size) ? size : b + 1;
    }
    if (a >= size || a >= b) {
        int n = snprintf(buf, sizeof(buf), "bytes */%lld", (long long) size);
        pt_http_header_add(r, &ho->list, "Content-Range", 13, buf, (size_t) n);
        return 416;
    }
    int n = snprintf(buf, sizeof(buf), "bytes %lld-%lld/%lld", (long long) a,
                     (long long) (b - 1), (long long) size);
    if (pt_http_header_add(r, &ho->list, "Content-Range", 13, buf, (size_t) n) == NULL)
        return 0;
    ho->status = 206;
    ho->status_line.len = 0;
    ho->content_length_n = b - a;
    *from = a;
    *to = b;
    return 0;
}

/* Serves the entry from the file. Returns what the PRECONTENT handler
 * returns: PT_DONE (sent or in progress), PT_DECLINED (the file is unusable:
 * go to the backend), or an error to finalize with. */
static int serve_entry(cache_ctx_t *ctx)
{
    pt_http_request_t *r = ctx->r;
    entry_t e;
    int rc;

    if (entry_open(ctx, &e) != 0) {
        pt_cache_invalidate(ctx->cache, ctx->md5);
        return PT_DECLINED;
    }
    if (!variant_matches(r, e.head, e.h.head_len)) {
        close(e.fd);
        ctx->other_variant = 1;
        return PT_DECLINED;             /* fetched and stored as this variant */
    }
    ctx->fd = e.fd;
    ctx->serving = 1;
    if (apply_head(r, e.h.status, e.head, e.h.head_len, e.h.body_len) != 0) {
        /* nothing of the bad head may leak into the backend's response */
        pt_http_headers_out_t *ho = &r->headers_out;
        ho->list.nelts = 0;
        ho->status = 0;
        ho->status_line.len = 0;
        ho->content_type.len = 0;
        ho->content_type.data = NULL;
        ho->location = ho->server = ho->date = NULL;
        ho->content_length_n = -1;
        close(ctx->fd);
        ctx->fd = -1;
        ctx->serving = 0;
        pt_cache_invalidate(ctx->cache, ctx->md5);
        pt_log_error(PT_LOG_CRIT, req_log(r), 0, "cache file \"%s\" has a bad head",
                     ctx->file_name);
        return PT_DECLINED;
    }
    rc = pt_http_discard_request_body(r);
    if (rc != PT_OK)
        return rc;

    if (not_modified(r) == 304) {
        r->headers_out.status = 304;
        r->headers_out.status_line.len = 0;
        r->headers_out.content_type.len = 0;
        r->headers_out.content_length_n = -1;
        if (pt_http_send_header(r) == PT_ERROR)
            return PT_ERROR;
        rc = send_empty_last(r);
        pt_http_finalize_request(r, rc);
        return PT_DONE;
    }

    int64_t from = 0, to = e.h.body_len;
    rc = byte_range(r, e.h.body_len, &from, &to);
    if (rc == 416) {
        close(ctx->fd);
        ctx->fd = -1;
        ctx->serving = 0;
        r->headers_out.content_length_n = -1;
        return 416;
    }
    if (pt_http_send_header(r) == PT_ERROR)
        return PT_ERROR;
    if (r->header_only || to == from) {
        rc = send_empty_last(r);
        pt_http_finalize_request(r, rc);
        return PT_DONE;
    }
    ctx->offset = e.body_off + from;
    ctx->end = e.body_off + to;
    rc = send_chunks(ctx);
    if (rc != PT_AGAIN)
        pt_http_finalize_request(r, rc);
    return PT_DONE;
}

/* ------------------------------------------------------------------------ */
/* The lookup (PRECONTENT) */

static int cv_true(pt_http_request_t *r, pt_array_t *list)
{
    if (list == NULL)
        return 0;
    pt_http_cv_t *cv = list->elts;
    for (size_t i = 0; i < list->nelts; i++) {
        pt_str_t v;
        if (pt_http_cv_eval(r, &cv[i], &v) != 0)
            return -1;
        if (v.len && !(v.len == 1 && v.data[0] == '0'))
            return 1;
    }
    return 0;
}

static pt_cache_t *cache_by_name(pt_http_request_t *r, const pt_str_t *name)
{
    cache_main_conf_t *mcf = pt_http_get_module_main_conf(r, pt_http_proxy_cache_module);
    pt_cache_t **c = mcf->caches.elts;
    for (size_t i = 0; i < mcf->caches.nelts; i++)
        if (pt_str_eq(&c[i]->shm->name, name))
            return c[i];
    return NULL;
}

/* Headers that must not reach the backend when the response may be stored
 * or may come from the store: conditionals and ranges (nginx clears them
 * too). */
static void hide_conditionals(pt_http_request_t *r)
{
    static const char *const names[] = {
        "If-Modified-Since", "If-Unmodified-Since", "If-None-Match", "If-Match", "Range",
        "If-Range", NULL
    };
    pt_http_header_t *h = r->headers_in.list.elts;
    for (size_t i = 0; i < r->headers_in.list.nelts; i++)
        for (int k = 0; names[k]; k++)
            if (h[i].name.len == strlen(names[k])
                && pt_strncasecmp(h[i].name.data, names[k], h[i].name.len) == 0)
                h[i].deleted = 1;
}

/* proxy_cache_revalidate: If-Modified-Since / If-None-Match from the stored
 * entry, added to a copy of the request's header list (the list itself is
 * never grown in place: pointers into it must stay valid). */
static void add_revalidation(cache_ctx_t *ctx)
{
    pt_http_request_t *r = ctx->r;
    entry_t e;
    size_t lml = 0, etl = 0;

    if (entry_open(ctx, &e) != 0)
        return;
    close(e.fd);
    if (!variant_matches(r, e.head, e.h.head_len))
        return;
    const char *lm = head_find(e.head, e.h.head_len, "Last-Modified", &lml);
    const char *et = head_find(e.head, e.h.head_len, "ETag", &etl);
    if (lm == NULL && et == NULL)
        return;

    pt_array_t list;
    size_t n = r->headers_in.list.nelts;
    if (pt_array_init(&list, r->pool, n + 2, sizeof(pt_http_header_t)) != 0)
        return;
    if (n) {
        memcpy(pt_array_push_n(&list, n), r->headers_in.list.elts, n * sizeof(pt_http_header_t));
    }
    if (lm && pt_http_header_add(r, &list, "If-Modified-Since", 17, lm, lml) == NULL)
        return;
    if (et && pt_http_header_add(r, &list, "If-None-Match", 13, et, etl) == NULL)
        return;
    r->headers_in.list = list;
    ctx->revalidating = 1;
}

/* The request goes to the backend: what it must not carry, what it must. */
static void to_backend(cache_ctx_t *ctx)
{
    pt_http_request_t *r = ctx->r;

    hide_conditionals(r);
    if (r->method == PT_HTTP_HEAD && ctx->conf->convert_head) {
        r->method = PT_HTTP_GET;
        pt_str_set(&r->method_name, "GET");
        ctx->was_head = 1;
        stale_list_add(ctx);            /* found again if error_page redirects */
    }
}

static void wait_cleanup_handlers(cache_ctx_t *ctx)
{
    pt_http_request_t *r = ctx->r;
    if (ctx->wait_ev.timer_set)
        pt_timer_del(&ctx->wait_ev);
    if (ctx->waiting) {
        r->read_event_handler = ctx->saved_read;
        r->write_event_handler = ctx->saved_write;
        ctx->waiting = 0;
    }
}

static void on_wait_timer(pt_event_t *ev)
{
    cache_ctx_t *ctx = ev->data;
    pt_http_request_t *r = ctx->r;

    wait_cleanup_handlers(ctx);
    if (r->done)
        return;
    pt_http_core_run_phases(r);         /* the handler looks again */
}

static void on_wait_read(pt_http_request_t *r)
{
    cache_ctx_t *ctx = pt_http_get_module_ctx(r, pt_http_proxy_cache_module);
    pt_conn_t *c = r->connection;
    int gone = r->aborted;

    if (!gone && c != NULL) {
        if (c->io.read.eof || c->io.read.error) {
            gone = 1;
        } else {
            char ch;
            ssize_t n = recv(c->io.fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                gone = 1;
        }
    }
    if (!gone)
        return;
    if (ctx)
        wait_cleanup_handlers(ctx);
    pt_log_error(PT_LOG_INFO, req_log(r), 0,
                 "client prematurely closed connection while waiting for cache lock");
    pt_http_finalize_request(r, 499);
}

static void on_wait_write(pt_http_request_t *r)
{
    (void) r;
}

static int wait_for_filler(cache_ctx_t *ctx)
{
    pt_http_request_t *r = ctx->r;

    if (ctx->wait_start == 0)
        ctx->wait_start = pt_current_msec;
    ctx->wait_ev.handler = on_wait_timer;
    ctx->wait_ev.data = ctx;
    ctx->saved_read = r->read_event_handler;
    ctx->saved_write = r->write_event_handler;
    r->read_event_handler = on_wait_read;
    r->write_event_handler = on_wait_write;
    ctx->waiting = 1;
    pt_timer_add(&ctx->wait_ev, LOCK_POLL_MS);
    return PT_DONE;
}

/* Decides what happens to the request; returns the PRECONTENT result. */
static int route(cache_ctx_t *ctx)
{
    cache_conf_t *conf = ctx->conf;
    pt_cache_lookup_t lk;
    int64_t now_ms = pt_time_msec;

    if (ctx->wait_start) {
        /* back from a wait: still filling? */
        int64_t waited = pt_current_msec - ctx->wait_start;
        if (waited < conf->lock_timeout
            && pt_cache_is_filling(ctx->cache, ctx->md5, now_ms, conf->lock_age))
            return wait_for_filler(ctx);
    }

    if (pt_cache_lookup(ctx->cache, ctx->md5, now_ms, 1, conf->lock_age,
                        (unsigned) conf->min_uses, &lk) != 0) {
        ctx->status = CS_MISS;
        to_backend(ctx);
        return PT_DECLINED;             /* zone full: uncached */
    }
    ctx->locked = lk.locked;
    ctx->lock_id = lk.lock_id;

    if (lk.fresh) {
        ctx->status = CS_HIT;
        int rc = serve_entry(ctx);
        if (rc != PT_DECLINED)
            return rc;
        /* the file was bad (forgotten now: the lookup may lock it) or is
         * another variant (fetched and stored as this one): a miss */
        if (!ctx->other_variant && !ctx->locked
            && pt_cache_lookup(ctx->cache, ctx->md5, now_ms, 1, conf->lock_age, 1, &lk) == 0) {
            ctx->locked = lk.locked;
            ctx->lock_id = lk.lock_id;
        }
        lk.exists = 0;
        lk.fresh = 0;
        lk.others_fill = lk.others_fill && !ctx->other_variant;
    }

    if (lk.exists && lk.others_fill
        && ((conf->use_stale & STALE_UPDATING) || lk.stale_updating)) {
        ctx->status = CS_UPDATING;
        int rc = serve_entry(ctx);
        if (rc != PT_DECLINED)
            return rc;
        lk.exists = 0;
    }

    if (lk.others_fill && conf->lock) {
        int64_t waited = ctx->wait_start ? pt_current_msec - ctx->wait_start : 0;
        if (waited < conf->lock_timeout)
            return wait_for_filler(ctx);
        /* waited long enough: to the backend, and nothing is stored */
        ctx->status = lk.exists ? CS_EXPIRED : CS_MISS;
        ctx->stale_ok = lk.exists;
        ctx->stale_error = lk.stale_error;
        if (lk.exists && ((conf->use_stale & ~(STALE_UPDATING | STALE_OFF)) || lk.stale_error))
            stale_list_add(ctx);
        to_backend(ctx);
        return PT_DECLINED;
    }

    ctx->status = lk.exists ? CS_EXPIRED : CS_MISS;
    ctx->stale_ok = lk.exists;
    ctx->stale_error = lk.stale_error;
    if (lk.exists && ((conf->use_stale & ~(STALE_UPDATING | STALE_OFF)) || lk.stale_error))
        stale_list_add(ctx);
    ctx->fill = lk.min_uses_ok && (ctx->locked || !lk.others_fill);
    to_backend(ctx);
    if (lk.exists && conf->revalidate)
        add_revalidation(ctx);
    return PT_DECLINED;
}

static int range_beyond(pt_http_request_t *r, int64_t max)
{
    pt_http_header_t *h = pt_http_header_find(&r->headers_in.list, "Range", 5);
    if (h == NULL || h->value.len < 7 || pt_strncasecmp(h->value.data, "bytes=", 6) != 0)
        return 0;
    const char *p = h->value.data + 6, *end = h->value.data + h->value.len;
    int64_t start = 0;
    if (p < end && *p == '-')
        return 1;                       /* a suffix: from the end */
    while (p < end && *p >= '0' && *p <= '9') {
        if (start > INT64_MAX / 10 - 10)
            return 1;
        start = start * 10 + (*p++ - '0');
    }
    return start > max;
}

static int cache_handler(pt_http_request_t *r)
{
    cache_ctx_t *ctx = pt_http_get_module_ctx(r, pt_http_proxy_cache_module);

    if (ctx != NULL) {
        if (ctx->waiting || ctx->wait_start)
            return route(ctx);
        return PT_DECLINED;             /* looked up already */
    }

    cache_conf_t *conf = pt_http_get_module_loc_conf(r, pt_http_proxy_cache_module);
    if (conf == NULL || (conf->zone == NULL && conf->zone_cv == NULL))
        return PT_DECLINED;
    if (clcf_of(r)->handler == NULL)
        return PT_DECLINED;             /* nothing proxied here */
    if (!(r->method & conf->methods))
        return PT_DECLINED;
    if (conf->max_range_offset >= 0 && range_beyond(r, conf->max_range_offset))
        return PT_DECLINED;

    pt_cache_t *cache;
    if (conf->zone_cv) {
        pt_str_t name;
        if (pt_http_cv_eval(r, conf->zone_cv, &name) != 0)
            return 500;
        if (name.len == 0 || pt_str_eq_lit(&name, "off"))
            return PT_DECLINED;
        cache = cache_by_name(r, &name);
        if (cache == NULL) {
            pt_log_error(PT_LOG_ERR, req_log(r), 0, "cache \"%.*s\" not found",
                         (int) name.len, name.data);
            return 500;
        }
    } else {
        cache = conf->zone->data;
    }
    if (cache == NULL || cache->sh == NULL)
        return PT_DECLINED;

    ctx = ctx_create(r);
    if (ctx == NULL)
        return 500;
    ctx->cache = cache;
    ctx->conf = conf;

    if (pt_http_cv_eval(r, conf->key, &ctx->key) != 0)
        return 500;
    pt_cache_key_hash(ctx->key.data, ctx->key.len, ctx->md5);
    char name[4096];
    size_t n = pt_cache_file_name(cache, ctx->md5, name, sizeof(name), &ctx->dir_len);
    if (n == 0 || (ctx->file_name = pt_pstrndup(r->pool, name, n)) == NULL)
        return 500;

    int bypass = cv_true(r, conf->bypass);
    if (bypass < 0)
        return 500;
    if (bypass) {
        ctx->status = CS_BYPASS;
        ctx->fill = r->method != PT_HTTP_HEAD || conf->convert_head;
        to_backend(ctx);
        return PT_DECLINED;
    }
    return route(ctx);
}

/* ------------------------------------------------------------------------ */
/* Is the response stored, and for how long? */

static pt_http_header_t *uheader(pt_upstream_t *u, const char *name, size_t len)
{
    return pt_http_header_find(&u->headers_in.headers, name, len);
}

static int64_t parse_int(const char *p, size_t len, int *ok)
{
    int64_t v = 0;
    *ok = len > 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9' || v > INT64_MAX / 10 - 10) {
            *ok = 0;
            return 0;
        }
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* Cache-Control: -1 when it says nothing about caching, 0 when the response
 * must not be stored, else the seconds (s-maxage over max-age). */
static int64_t cache_control(pt_upstream_t *u)
{
    pt_http_header_t *h = u->headers_in.headers.elts;
    int64_t max_age = -1, s_maxage = -1;

    for (size_t i = 0; i < u->headers_in.headers.nelts; i++) {
        if (!pt_str_caseeq_lit(&h[i].name, "cache-control"))
            continue;
        const char *p = h[i].value.data, *end = p + h[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *s = p;
            while (p < end && *p != ',')
                p++;
            const char *e = p;
            while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            size_t l = (size_t) (e - s);
            if ((l == 8 && pt_strncasecmp(s, "no-cache", 8) == 0)
                || (l == 8 && pt_strncasecmp(s, "no-store", 8) == 0)
                || (l == 7 && pt_strncasecmp(s, "private", 7) == 0))
                return 0;
            int ok;
            if (l > 8 && pt_strncasecmp(s, "max-age=", 8) == 0) {
                int64_t v = parse_int(s + 8, l - 8, &ok);
                if (!ok)
                    return 0;
                max_age = v;
            } else if (l > 9 && pt_strncasecmp(s, "s-maxage=", 9) == 0) {
                int64_t v = parse_int(s + 9, l - 9, &ok);
                if (!ok)
                    return 0;
                s_maxage = v;
            }
        }
    }
    return s_maxage >= 0 ? s_maxage : max_age;
}

/* stale-while-revalidate=N and stale-if-error=N of Cache-Control. */
static void stale_extensions(pt_http_request_t *r, pt_upstream_t *u, uint32_t *upd, uint32_t *err)
{
    unsigned ign = pt_proxy_ignore_headers ? pt_proxy_ignore_headers(r) : 0;
    pt_http_header_t *h = u->headers_in.headers.elts;

    *upd = *err = 0;
    if (ign & IGN_CACHE_CONTROL)
        return;
    for (size_t i = 0; i < u->headers_in.headers.nelts; i++) {
        if (!pt_str_caseeq_lit(&h[i].name, "cache-control"))
            continue;
        const char *p = h[i].value.data, *end = p + h[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *st = p;
            while (p < end && *p != ',')
                p++;
            const char *e = p;
            while (e > st && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            size_t l = (size_t) (e - st);
            int ok;
            if (l > 23 && pt_strncasecmp(st, "stale-while-revalidate=", 23) == 0) {
                int64_t v = parse_int(st + 23, l - 23, &ok);
                if (ok)
                    *upd = v > UINT32_MAX ? UINT32_MAX : (uint32_t) v;
            } else if (l > 15 && pt_strncasecmp(st, "stale-if-error=", 15) == 0) {
                int64_t v = parse_int(st + 15, l - 15, &ok);
                if (ok)
                    *err = v > UINT32_MAX ? UINT32_MAX : (uint32_t) v;
            }
        }
    }
}

static int64_t valid_of(cache_conf_t *conf, int status)
{
    if (conf->valid == NULL)
        return 0;
    cache_valid_t *v = conf->valid->elts;
    for (size_t i = 0; i < conf->valid->nelts; i++)
        if (v[i].status == status)
            return v[i].valid;
    for (size_t i = 0; i < conf->valid->nelts; i++)
        if (v[i].status == 0)
            return v[i].valid;
    return 0;
}

/* Seconds the response stays fresh; 0: do not store it. status is the
 * status the entry would have (the stored one for a 304). */
static int64_t response_validity(pt_http_request_t *r, cache_conf_t *conf, pt_upstream_t *u,
                                 int status)
{
    unsigned ign = pt_proxy_ignore_headers ? pt_proxy_ignore_headers(r) : 0;
    pt_http_header_t *h;
    int64_t now = pt_time_sec;

    if (!(ign & IGN_SET_COOKIE) && uheader(u, "Set-Cookie", 10))
        return 0;
    if (!(ign & IGN_VARY) && (h = uheader(u, "Vary", 4)) != NULL) {
        for (size_t i = 0; i < h->value.len; i++)
            if (h->value.data[i] == '*')
                return 0;
    }
    if (!(ign & IGN_X_ACCEL_EXPIRES) && (h = uheader(u, "X-Accel-Expires", 15)) != NULL) {
        int ok;
        if (h->value.len > 1 && h->value.data[0] == '@') {
            int64_t t = parse_int(h->value.data + 1, h->value.len - 1, &ok);
            if (ok)
                return t > now ? t - now : 0;
        } else {
            int64_t v = parse_int(h->value.data, h->value.len, &ok);
            if (ok)
                return v;
        }
    }
    if (!(ign & IGN_CACHE_CONTROL)) {
        int64_t cc = cache_control(u);
        if (cc >= 0)
            return cc;
    }
    if (!(ign & IGN_EXPIRES) && (h = uheader(u, "Expires", 7)) != NULL) {
        time_t t = pt_http_time_parse(h->value.data, h->value.len);
        if (t == (time_t) -1 || t <= now)
            return 0;
        return (int64_t) t - now;
    }
    return valid_of(conf, status);
}

/* ------------------------------------------------------------------------ */
/* Filling: the temporary file */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t) w;
    }
    return 0;
}

static int start_file(cache_ctx_t *ctx, int64_t valid)
{
    pt_http_request_t *r = ctx->r;
    static unsigned counter;
    pt_str_t head;
    char hex[33];

    pt_upstream_t *u = r->upstream;
    unsigned ign = pt_proxy_ignore_headers ? pt_proxy_ignore_headers(r) : 0;
    if (serialize_head(r, (ign & IGN_VARY) ? NULL : &u->headers_in.headers, &head) != 0)
        return -1;
    if (pt_cache_mkdirs(ctx->file_name, ctx->dir_len) != 0) {
        pt_log_error(PT_LOG_CRIT, req_log(r), errno, "mkdir() \"%.*s\" failed",
                     (int) ctx->dir_len, ctx->file_name);
        return -1;
    }
    pt_cache_key_hex(ctx->md5, hex);
    ctx->tmp_name = pt_psprintf(r->pool, "%.*s/.%s.%d.%u.tmp", (int) ctx->dir_len,
                                ctx->file_name, hex, (int) getpid(), ++counter);
    if (ctx->tmp_name == NULL)
        return -1;
    ctx->tmp_fd = open(ctx->tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (ctx->tmp_fd < 0) {
        pt_log_error(PT_LOG_CRIT, req_log(r), errno, "open() \"%s\" failed", ctx->tmp_name);
        ctx->tmp_name = NULL;
        return -1;
    }
    pt_cache_file_header_t *fh = &ctx->fh;
    memset(fh, 0, sizeof(*fh));
    memcpy(fh->magic, PT_CACHE_MAGIC, 8);
    fh->key_len = (uint32_t) ctx->key.len;
    fh->head_len = (uint32_t) head.len;
    fh->valid_sec = pt_time_sec + valid;
    fh->date = pt_time_sec;
    fh->body_len = 0;
    fh->status = r->headers_out.status;
    stale_extensions(r, u, &fh->updating_sec, &fh->error_sec);
    memcpy(fh->md5, ctx->md5, PT_CACHE_KEY_LEN);
    if (write_all(ctx->tmp_fd, (const char *) fh, sizeof(*fh)) != 0
        || write_all(ctx->tmp_fd, ctx->key.data, ctx->key.len) != 0
        || write_all(ctx->tmp_fd, head.data, head.len) != 0) {
        pt_log_error(PT_LOG_CRIT, req_log(r), errno, "write() \"%s\" failed", ctx->tmp_name);
        return -1;
    }
    ctx->head_size = (int64_t) sizeof(*fh) + (int64_t) ctx->key.len + (int64_t) head.len;
    ctx->body_len = 0;
    return 0;
}

static void commit_file(cache_ctx_t *ctx)
{
    pt_http_request_t *r = ctx->r;

    if (ctx->expect_len >= 0 && ctx->body_len != ctx->expect_len) {
        release_fill(ctx);
        return;
    }
    ctx->fh.body_len = ctx->body_len;
    if (pwrite(ctx->tmp_fd, &ctx->fh, sizeof(ctx->fh), 0) != (ssize_t) sizeof(ctx->fh)) {
        pt_log_error(PT_LOG_CRIT, req_log(r), errno, "pwrite() \"%s\" failed", ctx->tmp_name);
        release_fill(ctx);
        return;
    }
    close(ctx->tmp_fd);
    ctx->tmp_fd = -1;
    if (rename(ctx->tmp_name, ctx->file_name) != 0) {
        pt_log_error(PT_LOG_CRIT, req_log(r), errno, "rename() \"%s\" to \"%s\" failed",
                     ctx->tmp_name, ctx->file_name);
        release_fill(ctx);
        return;
    }
    ctx->tmp_name = NULL;
    (void) pt_cache_commit(ctx->cache, ctx->md5, ctx->locked ? ctx->lock_id : 0,
                           ctx->fh.valid_sec, ctx->head_size + ctx->body_len);
    pt_cache_set_stale(ctx->cache, ctx->md5, ctx->fh.updating_sec, ctx->fh.error_sec);
    ctx->locked = 0;
    ctx->fill = 0;
}

/* ------------------------------------------------------------------------ */
/* Swapping in the stored entry (STALE, REVALIDATED) */

static int swap_in_entry(cache_ctx_t *ctx, int new_status, int64_t revalid)
{
    pt_http_request_t *r = ctx->r;
    entry_t e;

    if (entry_open(ctx, &e) != 0)
        return -1;
    if (!variant_matches(r, e.head, e.h.head_len)) {
        close(e.fd);
        return -1;
    }
    if (e.h.body_len > 0) {
        /* the mapping starts at a page boundary */
        long pg = sysconf(_SC_PAGESIZE);
        int64_t off = e.body_off - e.body_off % pg;
        size_t len = (size_t) (e.body_off + e.h.body_len - off);
        void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, e.fd, (off_t) off);
        if (m == MAP_FAILED) {
            pt_log_error(PT_LOG_CRIT, req_log(r), errno, "mmap() \"%s\" failed",
                         ctx->file_name);
            close(e.fd);
            return -1;
        }
        ctx->map = m;
        ctx->map_len = len;
        ctx->map_body = (const char *) m + (e.body_off - off);
        ctx->map_body_len = e.h.body_len;
    }
    if (revalid > 0) {
        /* REVALIDATED: fresh again, in the file and in the index */
        int wfd = open(ctx->file_name, O_WRONLY | O_CLOEXEC);
        int64_t until = pt_time_sec + revalid;
        if (wfd >= 0) {
            e.h.valid_sec = until;
            if (pwrite(wfd, &e.h, sizeof(e.h), 0) != (ssize_t) sizeof(e.h))
                pt_log_error(PT_LOG_CRIT, req_log(r), errno, "pwrite() \"%s\" failed",
                             ctx->file_name);
            close(wfd);
        }
        pt_cache_refresh(ctx->cache, ctx->md5, ctx->locked ? ctx->lock_id : 0, until);
        ctx->locked = 0;
    }
    close(e.fd);
    if (apply_head(r, e.h.status, e.head, e.h.head_len, e.h.body_len) != 0)
        return -1;
    r->err_status = 0;
    ctx->status = new_status;
    ctx->swapped = 1;
    ctx->serving = 1;
    return 0;
}

static unsigned stale_reason(pt_http_request_t *r, pt_upstream_t *u)
{
    int status = r->headers_out.status;

    if (r->err_status) {
        if (u != NULL && u->header_done) {
            /* intercepted (proxy_intercept_errors): the backend's status */
            status = u->headers_in.status;
            goto http;
        }
        if (u == NULL)
            return 0;
        if (status == 504)
            return STALE_TIMEOUT;
        if (status == 502)
            return STALE_ERROR | STALE_INVALID_HEADER;
        return 0;
    }
    if (u == NULL || !u->header_done)
        return 0;
http:
    switch (status) {
    case 500: return STALE_HTTP_500;
    case 502: return STALE_HTTP_502;
    case 503: return STALE_HTTP_503;
    case 504: return STALE_HTTP_504;
    case 403: return STALE_HTTP_403;
    case 404: return STALE_HTTP_404;
    case 429: return STALE_HTTP_429;
    default:  return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Filters */

static int cache_header_filter(pt_http_request_t *r)
{
    cache_ctx_t *ctx = r->ctx ? pt_http_get_module_ctx(r, pt_http_proxy_cache_module) : NULL;

    if (ctx == NULL && r->internal && stale_list && r->ctx
        && (ctx = stale_list_find(r)) != NULL) {
        /* the proxy's error went through error_page: nginx would have used
         * the stale entry before that, so it still may (the error page's
         * own body is dropped) */
        if (ctx->serving)
            return next_header_filter(r);
        pt_http_set_ctx(r, ctx, pt_http_proxy_cache_module);
        ctx->redirected = 1;
    }

    if (ctx == NULL || ctx->serving)
        return next_header_filter(r);
    if (ctx->was_head) {
        /* the backend was asked with GET; the client gets a HEAD answer */
        r->method = PT_HTTP_HEAD;
        pt_str_set(&r->method_name, "HEAD");
        r->header_only = 1;
    }
    pt_upstream_t *u = r->upstream;

    if (ctx->stale_ok) {
        unsigned why = stale_reason(r, u);
        unsigned errorish = STALE_ERROR | STALE_TIMEOUT | STALE_INVALID_HEADER | STALE_HTTP_500
                            | STALE_HTTP_502 | STALE_HTTP_503 | STALE_HTTP_504;
        if (why && ((ctx->conf->use_stale & why) || (ctx->stale_error && (why & errorish)))) {
            release_fill(ctx);
            stale_list_remove(ctx);
            if (swap_in_entry(ctx, CS_STALE, 0) == 0) {
                /* the response is the cached location's again (its
                 * add_header, expires, gzip settings apply) */
                if (ctx->redirected)
                    r->loc_conf = ctx->loc_conf;
                return next_header_filter(r);
            }
        }
        if (ctx->revalidating && !r->err_status && u && u->header_done
            && r->headers_out.status == 304) {
            entry_t e;
            int st = 200;
            if (entry_open(ctx, &e) == 0) {
                st = e.h.status;
                close(e.fd);
            }
            int64_t valid = response_validity(r, ctx->conf, u, st);
            if (swap_in_entry(ctx, CS_REVALIDATED, valid > 0 ? valid : 1) == 0) {
                release_fill(ctx);
                return next_header_filter(r);
            }
        }
    }

    if (!ctx->fill)
        return next_header_filter(r);

    int64_t valid = 0;
    if (!r->err_status && u != NULL && u->header_done && !u->upgrade && u->buffering
        && r->headers_out.status != 206 && r->headers_out.status != 304
        && !(r->method & PT_HTTP_HEAD && !ctx->was_head)) {
        valid = response_validity(r, ctx->conf, u, r->headers_out.status);
        if (valid > 0) {
            int nc = cv_true(r, ctx->conf->no_cache);
            if (nc != 0)
                valid = 0;
        }
    }
    if (valid <= 0 || start_file(ctx, valid) != 0) {
        release_fill(ctx);
        return next_header_filter(r);
    }
    ctx->expect_len = u->headers_in.chunked ? -1 : u->headers_in.content_length_n;
    if (u->no_body || r->headers_out.status == 204)
        ctx->expect_len = 0;
    return next_header_filter(r);
}

static int cache_body_filter(pt_http_request_t *r, pt_buf_t *in)
{
    cache_ctx_t *ctx = r->ctx ? pt_http_get_module_ctx(r, pt_http_proxy_cache_module) : NULL;

    if (ctx == NULL || (!ctx->swapped && ctx->tmp_fd < 0))
        return next_body_filter(r, in);

    if (ctx->swapped) {
        /* the failed (or 304) response's own body is dropped; the stored one
         * goes out once, whole, from the mapping */
        pt_buf_put_chain(in);
        if (ctx->body_sent)
            return PT_OK;
        ctx->body_sent = 1;
        pt_buf_t *head = NULL, **tail = &head;
        const char *p = ctx->map_body;
        int64_t left = ctx->map_body_len;
        while (left > 0) {
            size_t n = left > CHUNK_SIZE * 4 ? CHUNK_SIZE * 4 : (size_t) left;
            pt_buf_t *b = pt_buf_ref(p, n);
            if (b == NULL) {
                pt_buf_put_chain(head);
                return PT_ERROR;
            }
            *tail = b;
            tail = &b->next;
            p += n;
            left -= (int64_t) n;
        }
        if (head == NULL && (head = pt_buf_ref("", 0)) == NULL)
            return PT_ERROR;
        pt_buf_t *last = head;
        while (last->next)
            last = last->next;
        last->last_buf = 1;
        last->flush = 1;
        return next_body_filter(r, head);
    }

    int last = 0;
    for (pt_buf_t *b = in; b; b = b->next) {
        size_t n = pt_buf_size(b);
        if (n && ctx->tmp_fd >= 0) {
            if (write_all(ctx->tmp_fd, b->pos, n) != 0) {
                pt_log_error(PT_LOG_CRIT, req_log(r), errno, "write() \"%s\" failed",
                             ctx->tmp_name);
                release_fill(ctx);
            } else {
                ctx->body_len += (int64_t) n;
            }
        }
        if (b->last_buf)
            last = 1;
    }
    if (last && ctx->tmp_fd >= 0)
        commit_file(ctx);
    return next_body_filter(r, in);
}

/* ------------------------------------------------------------------------ */
/* $upstream_cache_status */

static int get_cache_status(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    (void) data;
    cache_ctx_t *ctx = r->ctx ? pt_http_get_module_ctx(r, pt_http_proxy_cache_module) : NULL;
    if (ctx == NULL || ctx->status == CS_NONE) {
        v->not_found = 1;
        v->value.len = 0;
        v->value.data = (char *) "";
        return PT_OK;
    }
    v->value = cs_names[ctx->status];
    v->valid = 1;
    v->no_cacheable = 1;
    return PT_OK;
}

static int cache_preconf(pt_conf_t *cf)
{
    pt_str_t name = pt_string("upstream_cache_status");
    pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_NOCACHEABLE);
    if (v == NULL)
        return -1;
    v->get = get_cache_status;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Configuration */

/* A master running as root hands the directory to the workers' user. */
static void chown_path(pt_cache_t *c)
{
    if (geteuid() != 0 || c->cycle->core_conf == NULL)
        return;
    pt_core_conf_t *ccf = c->cycle->core_conf[pt_core_module.index];
    if (ccf == NULL || ccf->user.data == NULL)
        return;
    struct passwd *pw = getpwnam(ccf->user.data);
    if (pw == NULL || pw->pw_uid == 0)
        return;
    struct stat st;
    if (stat(c->path.data, &st) == 0 && st.st_uid != pw->pw_uid
        && chown(c->path.data, pw->pw_uid, (gid_t) -1) != 0)
        pt_log_error(PT_LOG_EMERG, c->cycle->log, errno, "chown(\"%s\", %d) failed",
                     c->path.data, (int) pw->pw_uid);
}

static int zone_init(pt_shm_zone_t *shm, void *old_data)
{
    pt_cache_t *c = shm->data;
    pt_slab_pool_t *sp = shm->addr;
    pt_cache_t *oc = old_data;

    if (oc != NULL && !pt_str_eq(&oc->path, &c->path)) {
        pt_log_error(PT_LOG_EMERG, c->cycle->log, 0,
                     "cache \"%.*s\" uses the \"%.*s\" cache path while previously it used "
                     "the \"%.*s\" cache path", (int) shm->name.len, shm->name.data,
                     (int) c->path.len, c->path.data, (int) oc->path.len, oc->path.data);
        return -1;
    }
    snprintf(sp->log_ctx, sizeof(sp->log_ctx), " in cache keys zone \"%.*s\"",
             (int) shm->name.len, shm->name.data);
    if (pt_cache_mkdirs(c->path.data, c->path.len) != 0) {
        pt_log_error(PT_LOG_EMERG, c->cycle->log, errno, "mkdir() \"%s\" failed", c->path.data);
        return -1;
    }
    chown_path(c);
    return pt_cache_zone_init(c, sp, oc ? sp->data : NULL);
}

static const char *cache_path_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    cache_main_conf_t *mcf = conf;
    pt_str_t *value = cf->args->elts;
    pt_str_t zname = pt_null_string;
    int64_t zsize = 0;

    pt_cache_t *c = pt_pcalloc(cf->pool, sizeof(*c));
    if (c == NULL)
        return "failed (out of memory)";
    c->path = value[1];
    while (c->path.len > 1 && c->path.data[c->path.len - 1] == '/')
        c->path.len--;
    if (pt_conf_full_name(cf->cycle, &c->path, 0) != 0)
        return PT_CONF_ERROR;
    c->inactive = 600;
    c->manager_files = 100;
    c->manager_sleep = 50;
    c->cycle = cf->cycle;
    c->file = cf->file;
    c->line = cf->line;

    for (size_t i = 2; i < cf->args->nelts; i++) {
        pt_str_t *v = &value[i];
        const char *eq = memchr(v->data, '=', v->len);
        pt_str_t arg = pt_null_string;
        if (eq) {
            arg.data = (char *) eq + 1;
            arg.len = v->len - (size_t) (eq + 1 - v->data);
        }
#define PARAM(lit) (eq && (size_t) (eq - v->data) == sizeof(lit) - 1 \
                    && memcmp(v->data, lit, sizeof(lit) - 1) == 0)
        if (PARAM("levels")) {
            if (pt_cache_parse_levels(arg.data, arg.len, c->levels, &c->nlevels) != 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid \"levels\" \"%s\"", v->data);
                return PT_CONF_ERROR;
            }
        } else if (PARAM("use_temp_path")) {
            if (!pt_str_eq_lit(&arg, "on") && !pt_str_eq_lit(&arg, "off")) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid use_temp_path value \"%s\", "
                              "it must be \"on\" or \"off\"", arg.data);
                return PT_CONF_ERROR;
            }
            /* temporary files live beside the entries either way */
        } else if (PARAM("keys_zone")) {
            char *colon = memchr(arg.data, ':', arg.len);
            if (colon == NULL || colon == arg.data) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid keys zone size \"%s\"", v->data);
                return PT_CONF_ERROR;
            }
            zname.data = arg.data;
            zname.len = (size_t) (colon - arg.data);
            pt_str_t sz = { arg.len - zname.len - 1, colon + 1 };
            zsize = pt_conf_parse_size(&sz);
            if (zsize < 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid keys zone size \"%s\"", v->data);
                return PT_CONF_ERROR;
            }
            if (zsize < 16 * 1024) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "cache zone \"%.*s\" is too small",
                              (int) zname.len, zname.data);
                return PT_CONF_ERROR;
            }
        } else if (PARAM("inactive")) {
            c->inactive = pt_conf_parse_sec(&arg);
            if (c->inactive < 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid inactive value \"%s\"", v->data);
                return PT_CONF_ERROR;
            }
        } else if (PARAM("max_size") || PARAM("min_free")) {
            int64_t s = pt_conf_parse_size(&arg);
            if (s < 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid %.*s value \"%s\"",
                              (int) (eq - v->data), v->data, v->data);
                return PT_CONF_ERROR;
            }
            if (v->data[1] == 'a')
                c->max_size = s;
            else
                c->min_free = s;
        } else if (PARAM("manager_files") || PARAM("loader_files") || PARAM("purger_files")) {
            int64_t nf = pt_atoi64(arg.data, arg.len);
            if (nf <= 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid %.*s value \"%s\"",
                              (int) (eq - v->data), v->data, v->data);
                return PT_CONF_ERROR;
            }
            if (v->data[0] == 'm')
                c->manager_files = (unsigned) (nf > 100000 ? 100000 : nf);
        } else if (PARAM("manager_sleep") || PARAM("manager_threshold")
                   || PARAM("loader_sleep") || PARAM("loader_threshold")
                   || PARAM("purger_sleep") || PARAM("purger_threshold")) {
            int64_t ms = pt_conf_parse_msec(&arg);
            if (ms < 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid %.*s value \"%s\"",
                              (int) (eq - v->data), v->data, v->data);
                return PT_CONF_ERROR;
            }
            if (PARAM("manager_sleep"))
                c->manager_sleep = ms;
        } else if (PARAM("purger")) {
            if (!pt_str_eq_lit(&arg, "on") && !pt_str_eq_lit(&arg, "off")) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid purger value \"%s\"", v->data);
                return PT_CONF_ERROR;
            }
        } else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", v->data);
            return PT_CONF_ERROR;
        }
#undef PARAM
    }
    if (zname.len == 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"%s\" must have \"keys_zone\" parameter",
                      cmd->name);
        return PT_CONF_ERROR;
    }

    pt_cache_t **cp = mcf->caches.elts;
    for (size_t i = 0; i < mcf->caches.nelts; i++) {
        if (pt_str_eq(&cp[i]->path, &c->path)) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "duplicate cache path \"%s\", previous "
                          "definition is in %s:%u", c->path.data, cp[i]->file, cp[i]->line);
            return PT_CONF_ERROR;
        }
    }

    pt_shm_zone_t *shm = pt_shm_zone_add(cf, &zname, (size_t) zsize, &pt_http_proxy_cache_module);
    if (shm == NULL)
        return PT_CONF_ERROR;
    if (shm->data != NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "duplicate zone \"%.*s\"", (int) zname.len,
                      zname.data);
        return PT_CONF_ERROR;
    }
    c->shm = shm;
    shm->data = c;
    shm->init = zone_init;
    pt_cache_t **slot = pt_array_push(&mcf->caches);
    if (slot == NULL)
        return "failed (out of memory)";
    *slot = c;
    return PT_CONF_OK;
}

static const char *cache_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    cache_conf_t *cc = conf;
    pt_str_t *value = cf->args->elts;

    if (cc->zone != PT_CONF_UNSET_PTR || cc->zone_cv != NULL)
        return "is duplicate";
    if (pt_str_eq_lit(&value[1], "off")) {
        cc->zone = NULL;
        return PT_CONF_OK;
    }
    if (cf->args_have_vars & (1u << 1)) {
        cc->zone_cv = pt_pcalloc(cf->pool, sizeof(pt_http_cv_t));
        if (cc->zone_cv == NULL || pt_http_cv_compile(cf, &value[1], cc->zone_cv) != 0)
            return PT_CONF_ERROR;
        cc->zone = NULL;
        return PT_CONF_OK;
    }
    cc->zone = pt_shm_zone_add(cf, &value[1], 0, &pt_http_proxy_cache_module);
    return cc->zone ? PT_CONF_OK : PT_CONF_ERROR;
}

static const char *cache_key_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    cache_conf_t *cc = conf;
    pt_str_t *value = cf->args->elts;

    if (cc->key != PT_CONF_UNSET_PTR)
        return "is duplicate";
    cc->key = pt_pcalloc(cf->pool, sizeof(pt_http_cv_t));
    if (cc->key == NULL || pt_http_cv_compile(cf, &value[1], cc->key) != 0)
        return PT_CONF_ERROR;
    return PT_CONF_OK;
}

static const char *cache_valid_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    cache_conf_t *cc = conf;
    pt_str_t *value = cf->args->elts;
    size_t n = cf->args->nelts;

    if (cc->valid == PT_CONF_UNSET_PTR) {
        cc->valid = pt_array_create(cf->pool, 4, sizeof(cache_valid_t));
        if (cc->valid == NULL)
            return "failed (out of memory)";
    }
    int64_t t = pt_conf_parse_sec(&value[n - 1]);
    if (t < 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid time value \"%s\"", value[n - 1].data);
        return PT_CONF_ERROR;
    }
    if (n == 2) {
        static const int defaults[] = { 200, 301, 302 };
        for (int i = 0; i < 3; i++) {
            cache_valid_t *v = pt_array_push(cc->valid);
            if (v == NULL)
                return "failed (out of memory)";
            v->status = defaults[i];
            v->valid = t;
        }
        return PT_CONF_OK;
    }
    for (size_t i = 1; i < n - 1; i++) {
        int status;
        if (pt_str_eq_lit(&value[i], "any")) {
            status = 0;
        } else {
            int64_t s = pt_atoi64(value[i].data, value[i].len);
            if (s < 100 || s > 599) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid status \"%s\"", value[i].data);
                return PT_CONF_ERROR;
            }
            status = (int) s;
        }
        cache_valid_t *v = pt_array_push(cc->valid);
        if (v == NULL)
            return "failed (out of memory)";
        v->status = status;
        v->valid = t;
    }
    return PT_CONF_OK;
}

/* proxy_cache_bypass / proxy_no_cache: every argument a complex value. */
static const char *cv_list_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_array_t **slot = (pt_array_t **) ((char *) conf + cmd->offset);
    pt_str_t *value = cf->args->elts;

    if (*slot == PT_CONF_UNSET_PTR) {
        *slot = pt_array_create(cf->pool, cf->args->nelts, sizeof(pt_http_cv_t));
        if (*slot == NULL)
            return "failed (out of memory)";
    }
    for (size_t i = 1; i < cf->args->nelts; i++) {
        pt_http_cv_t *cv = pt_array_push(*slot);
        if (cv == NULL)
            return "failed (out of memory)";
        if (pt_http_cv_compile(cf, &value[i], cv) != 0)
            return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

static const char *max_range_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    cache_conf_t *cc = conf;
    pt_str_t *value = cf->args->elts;

    if (cc->max_range_offset != PT_CONF_UNSET)
        return "is duplicate";
    if (pt_str_eq_lit(&value[1], "off")) {
        cc->max_range_offset = -2;
        return PT_CONF_OK;
    }
    int64_t v = pt_atoi64(value[1].data, value[1].len);
    if (v < 0)
        return "invalid value";
    cc->max_range_offset = v;
    return PT_CONF_OK;
}

static const pt_conf_enum_t use_stale_masks[] = {
    { "error", STALE_ERROR }, { "timeout", STALE_TIMEOUT },
    { "invalid_header", STALE_INVALID_HEADER }, { "updating", STALE_UPDATING },
    { "http_500", STALE_HTTP_500 }, { "http_502", STALE_HTTP_502 },
    { "http_503", STALE_HTTP_503 }, { "http_504", STALE_HTTP_504 },
    { "http_403", STALE_HTTP_403 }, { "http_404", STALE_HTTP_404 },
    { "http_429", STALE_HTTP_429 }, { "off", STALE_OFF },
    { NULL, 0 }
};

static const pt_conf_enum_t methods_masks[] = {
    { "GET", PT_HTTP_GET }, { "HEAD", PT_HTTP_HEAD }, { "POST", PT_HTTP_POST },
    { NULL, 0 }
};

static const pt_conf_bounds_t min_uses_bounds = { 1, -1 };

#define CTX_L (PT_CTX_HTTP | PT_CTX_SRV | PT_CTX_LOC)
#define CC(f) offsetof(cache_conf_t, f)

static const pt_command_t cache_commands[] = {
    { "proxy_cache_path", PT_CTX_HTTP, 0, 2, PT_ARGS_ANY, cache_path_cmd, PT_CONF_HTTP_MAIN, 0,
      NULL },
    { "proxy_cache", CTX_L, 0, 1, 1, cache_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "proxy_cache_key", CTX_L, 0, 1, 1, cache_key_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "proxy_cache_valid", CTX_L, 0, 1, PT_ARGS_ANY, cache_valid_cmd, PT_CONF_HTTP_LOC, 0,
      NULL },
    { "proxy_cache_use_stale", CTX_L, 0, 1, PT_ARGS_ANY, pt_conf_set_bitmask, PT_CONF_HTTP_LOC,
      CC(use_stale), use_stale_masks },
    { "proxy_cache_methods", CTX_L, 0, 1, PT_ARGS_ANY, pt_conf_set_bitmask, PT_CONF_HTTP_LOC,
      CC(methods), methods_masks },
    { "proxy_cache_lock", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      CC(lock), NULL },
    { "proxy_cache_lock_timeout", CTX_L, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      CC(lock_timeout), NULL },
    { "proxy_cache_lock_age", CTX_L, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      CC(lock_age), NULL },
    { "proxy_cache_bypass", CTX_L, 0, 1, PT_ARGS_ANY, cv_list_cmd, PT_CONF_HTTP_LOC,
      CC(bypass), NULL },
    { "proxy_no_cache", CTX_L, 0, 1, PT_ARGS_ANY, cv_list_cmd, PT_CONF_HTTP_LOC,
      CC(no_cache), NULL },
    { "proxy_cache_min_uses", CTX_L, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_LOC,
      CC(min_uses), &min_uses_bounds },
    { "proxy_cache_revalidate", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      CC(revalidate), NULL },
    { "proxy_cache_background_update", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, CC(background_update), NULL },
    { "proxy_cache_convert_head", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      CC(convert_head), NULL },
    { "proxy_cache_max_range_offset", CTX_L, 0, 1, 1, max_range_cmd, PT_CONF_HTTP_LOC, 0,
      NULL },
    PT_COMMAND_END
};

static void *create_main_conf(pt_conf_t *cf)
{
    cache_main_conf_t *mcf = pt_pcalloc(cf->pool, sizeof(*mcf));
    if (mcf == NULL || pt_array_init(&mcf->caches, cf->pool, 2, sizeof(pt_cache_t *)) != 0)
        return NULL;
    return mcf;
}

static void *create_loc_conf(pt_conf_t *cf)
{
    cache_conf_t *cc = pt_pcalloc(cf->pool, sizeof(*cc));
    if (cc == NULL)
        return NULL;
    cc->zone = PT_CONF_UNSET_PTR;
    cc->key = PT_CONF_UNSET_PTR;
    cc->valid = PT_CONF_UNSET_PTR;
    cc->bypass = PT_CONF_UNSET_PTR;
    cc->no_cache = PT_CONF_UNSET_PTR;
    cc->lock = PT_CONF_UNSET;
    cc->lock_timeout = PT_CONF_UNSET_MSEC;
    cc->lock_age = PT_CONF_UNSET_MSEC;
    cc->min_uses = PT_CONF_UNSET;
    cc->revalidate = PT_CONF_UNSET;
    cc->background_update = PT_CONF_UNSET;
    cc->convert_head = PT_CONF_UNSET;
    cc->max_range_offset = PT_CONF_UNSET;
    return cc;
}

static const char *merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    cache_conf_t *prev = parent, *cc = child;
    cache_main_conf_t *mcf = pt_http_conf_get_module_main_conf(cf, pt_http_proxy_cache_module);

    if (cc->zone == PT_CONF_UNSET_PTR && cc->zone_cv == NULL) {
        cc->zone = prev->zone == PT_CONF_UNSET_PTR ? NULL : prev->zone;
        cc->zone_cv = prev->zone_cv;
    }
    if (cc->zone == PT_CONF_UNSET_PTR)
        cc->zone = NULL;
    if (cc->zone && cc->zone->data == NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"proxy_cache\" zone \"%.*s\" is unknown",
                      (int) cc->zone->name.len, cc->zone->name.data);
        return PT_CONF_ERROR;
    }
    if (cc->key == PT_CONF_UNSET_PTR) {
        if (prev->key != PT_CONF_UNSET_PTR) {
            cc->key = prev->key;
        } else {
            if (mcf->default_key == NULL) {
                pt_str_t def = pt_string("$scheme$proxy_host$request_uri");
                mcf->default_key = pt_pcalloc(cf->pool, sizeof(pt_http_cv_t));
                if (mcf->default_key == NULL
                    || pt_http_cv_compile(cf, &def, mcf->default_key) != 0)
                    return PT_CONF_ERROR;
            }
            cc->key = mcf->default_key;
        }
    }
    pt_conf_merge_ptr(cc->valid, prev->valid, NULL);
    pt_conf_merge_ptr(cc->bypass, prev->bypass, NULL);
    pt_conf_merge_ptr(cc->no_cache, prev->no_cache, NULL);
    if (cc->use_stale == 0)
        cc->use_stale = prev->use_stale ? prev->use_stale : STALE_OFF;
    if (cc->use_stale & STALE_OFF)
        cc->use_stale = STALE_OFF;
    if (cc->methods == 0)
        cc->methods = prev->methods ? prev->methods : (PT_HTTP_GET | PT_HTTP_HEAD);
    cc->methods |= PT_HTTP_GET | PT_HTTP_HEAD;
    pt_conf_merge(cc->lock, prev->lock, 0);
    pt_conf_merge(cc->lock_timeout, prev->lock_timeout, 5000);
    pt_conf_merge(cc->lock_age, prev->lock_age, 5000);
    pt_conf_merge(cc->min_uses, prev->min_uses, 1);
    pt_conf_merge(cc->revalidate, prev->revalidate, 0);
    pt_conf_merge(cc->background_update, prev->background_update, 0);
    pt_conf_merge(cc->convert_head, prev->convert_head, 1);
    pt_conf_merge(cc->max_range_offset, prev->max_range_offset, -2);
    if (cc->max_range_offset == -2)
        cc->max_range_offset = -1;
    return PT_CONF_OK;
}

static int cache_postconf(pt_conf_t *cf)
{
    next_header_filter = pt_http_top_header_filter;
    pt_http_top_header_filter = cache_header_filter;
    next_body_filter = pt_http_top_body_filter;
    pt_http_top_body_filter = cache_body_filter;
    return pt_http_phase_add(cf, PT_HTTP_PRECONTENT_PHASE, cache_handler);
}

/* ------------------------------------------------------------------------ */
/* Manager and loader: one worker at a time (a lease in each zone) */

typedef struct {
    pt_event_t  ev;
    pt_cache_t *cache;
    unsigned    owner:1;
} manager_t;

static manager_t *managers;
static size_t     nmanagers;

static void on_manager_tick(pt_event_t *ev)
{
    manager_t *m = ev->data;
    pt_cache_t *c = m->cache;
    int64_t now = pt_time_msec;

    if (pt_conn_shutting_down) {
        (void) pt_cache_take_lease(c, now, MANAGER_TICK, 1);
        return;
    }
    if (pt_cache_take_lease(c, now, MANAGER_TICK, 0)) {
        m->owner = 1;
        if (!c->sh->loaded) {
            pt_shmtx_lock(&c->sp->mutex);
            int go = !c->sh->loaded && !c->sh->loading;
            if (go)
                c->sh->loading = 1;
            pt_shmtx_unlock(&c->sp->mutex);
            if (go) {
                unsigned n = pt_cache_load(c, now);
                pt_shmtx_lock(&c->sp->mutex);
                c->sh->loaded = 1;
                c->sh->loading = 0;
                pt_shmtx_unlock(&c->sp->mutex);
                pt_log_error(PT_LOG_NOTICE, c->cycle->log, 0,
                             "cache \"%.*s\": %u entries loaded from \"%s\"",
                             (int) c->shm->name.len, c->shm->name.data, n, c->path.data);
            }
        }
        /* a full pass (manager_files removed) goes on after manager_sleep */
        unsigned want = c->manager_files > 64 ? 64 : c->manager_files;
        if (pt_cache_manage(c, now, want) >= want) {
            pt_timer_add(&m->ev, c->manager_sleep > 0 ? c->manager_sleep : 1);
            return;
        }
    } else {
        m->owner = 0;
    }
    pt_timer_add(&m->ev, MANAGER_TICK);
}

static int cache_init_worker(pt_cycle_t *cycle)
{
    if (cycle->http_ctx == NULL)
        return 0;
    cache_main_conf_t *mcf = cycle->http_ctx->main_conf[pt_http_proxy_cache_module.index];
    if (mcf == NULL || mcf->caches.nelts == 0)
        return 0;
    managers = pt_pcalloc(cycle->pool, mcf->caches.nelts * sizeof(manager_t));
    if (managers == NULL)
        return -1;
    nmanagers = mcf->caches.nelts;
    pt_cache_t **c = mcf->caches.elts;
    for (size_t i = 0; i < nmanagers; i++) {
        managers[i].cache = c[i];
        managers[i].ev.handler = on_manager_tick;
        managers[i].ev.data = &managers[i];
        managers[i].ev.timer_index = SIZE_MAX;
        if (c[i]->sh != NULL)
            pt_timer_add(&managers[i].ev, 10);
    }
    return 0;
}

static void cache_exit_worker(pt_cycle_t *cycle)
{
    (void) cycle;
    for (size_t i = 0; i < nmanagers; i++) {
        if (managers[i].ev.timer_set)
            pt_timer_del(&managers[i].ev);
        if (managers[i].cache->sh)
            (void) pt_cache_take_lease(managers[i].cache, pt_time_msec, MANAGER_TICK, 1);
    }
    nmanagers = 0;
    managers = NULL;
}

pt_module_t pt_http_proxy_cache_module = {
    .name = "http_proxy_cache",
    .commands = cache_commands,
    .create_main_conf = create_main_conf,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
    .preconfiguration = cache_preconf,
    .postconfiguration = cache_postconf,
    .init_worker = cache_init_worker,
    .exit_worker = cache_exit_worker,
};
