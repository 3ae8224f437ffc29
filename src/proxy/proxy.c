/* The proxy module: proxy_pass and the proxy_* directives, the content
 * handler, building the upstream request (rebuilt, never copied), processing
 * the response head (hop-by-hop and hidden headers, proxy_redirect,
 * proxy_intercept_errors) and the $proxy_* variables. The exchange itself
 * runs in upstream.c. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "upstream.h"
#include "health.h"     /* pt_http_proxy_probe_target (issue 4: location health_check) */
#include "../http/core.h"
#include "../tls/tls.h"
#include "../http/h1_parse.h"
#include "../http/limit_rate.h"
#include "../http/variables.h"

extern pt_module_t pt_http_proxy_module;

typedef struct {
    pt_str_t      name;
    uint32_t      hash;
    pt_http_cv_t  value;
} proxy_header_t;

typedef struct {
    pt_http_cv_t     from;          /* string prefix (may have variables) */
    pt_http_regex_t *regex;         /* ~ / ~* forms */
    pt_http_cv_t     to;
} proxy_redirect_t;

enum { REDIRECT_UNSET = -1, REDIRECT_OFF = 0, REDIRECT_ON = 1 };

/* What a proxy_pass URL says (static, or evaluated per request). */
typedef struct {
    pt_upstream_group_t *group;
    pt_str_t             url;       /* as written, for proxy_redirect default */
    pt_str_t             host;      /* $proxy_host */
    pt_str_t             port;      /* $proxy_port */
    pt_str_t             uri;       /* URI part; len 0 = none */
    pt_str_t             name;      /* host without ":port" (SNI, certificate name) */
    unsigned             has_uri:1;
    unsigned             ssl:1;     /* https:// */
} proxy_target_t;

#define IGN_X_ACCEL_REDIRECT  0x01
#define IGN_X_ACCEL_EXPIRES   0x02
#define IGN_X_ACCEL_LIMIT     0x04
#define IGN_X_ACCEL_BUFFERING 0x08
#define IGN_X_ACCEL_CHARSET   0x10
#define IGN_EXPIRES           0x20
#define IGN_CACHE_CONTROL     0x40
#define IGN_SET_COOKIE        0x80
#define IGN_VARY              0x100

typedef struct {
    pt_upstream_conf_t up;
    proxy_target_t    *target;       /* static proxy_pass; NULL none */
    pt_http_cv_t      *url_cv;       /* proxy_pass with variables */
    pt_str_t           location;     /* the location's name */
    unsigned           location_regex:1;
    pt_array_t        *set_headers;  /* proxy_header_t as written; UNSET_PTR */
    pt_array_t        *headers;      /* compiled: set + defaults */
    pt_array_t        *hide_headers; /* pt_str_t */
    pt_array_t        *pass_headers;
    pt_array_t        *hidden;       /* final hidden names (pt_str_t, lowercase) */
    unsigned           ignore_headers;
    unsigned           http_version; /* 10 or 11 */
    int                pass_request_headers;
    int                pass_request_body;
    int                redirect;     /* REDIRECT_* */
    pt_array_t        *redirects;    /* proxy_redirect_t; NULL: default */
    unsigned           redirect_default:1; /* "default" among the entries */
    unsigned           url_ssl:1;    /* proxy_pass may be https: build ssl.ctx */
    pt_http_cv_t      *ssl_name;     /* proxy_ssl_name with variables; UNSET_PTR */
    pt_tls_upstream_conf_t ssl;      /* proxy_ssl_* (ssl.ctx NULL: no https) */
} proxy_loc_conf_t;

typedef struct {
    proxy_target_t    *target;
} proxy_ctx_t;

/* ------------------------------------------------------------------------ */
/* URL parsing                                                               */

/* Splits "http[s]://host[:port][/uri]" or "http[s]://unix:/path:[/uri]"
 * (default port 80, 443 for https). Returns NULL or a reason. */
static const char *parse_url(const pt_str_t *url, pt_str_t *host, in_port_t *port,
                             int *has_port, pt_str_t *uri, int *has_uri, int *is_unix,
                             int *is_ssl)
{
    const char *p = url->data, *end = url->data + url->len;
    size_t skip;
    *is_ssl = 0;
    if (url->len > 7 && pt_strncasecmp(p, "http://", 7) == 0) {
        skip = 7;
        *port = 80;
    } else if (url->len > 8 && pt_strncasecmp(p, "https://", 8) == 0) {
        skip = 8;
        *port = 443;
        *is_ssl = 1;
    } else {
        return "invalid URL prefix";
    }
    p += skip;
    *has_port = 0;
    *is_unix = 0;
    *has_uri = 0;
    uri->len = 0;
    uri->data = NULL;

    if ((size_t) (end - p) >= 5 && memcmp(p, "unix:", 5) == 0) {
        const char *colon = memchr(p + 5, ':', (size_t) (end - p - 5));
        const char *hend = colon ? colon : end;
        host->data = (char *) p;
        host->len = (size_t) (hend - p);
        *is_unix = 1;
        if (colon && colon + 1 < end) {
            uri->data = (char *) colon + 1;
            uri->len = (size_t) (end - colon - 1);
            *has_uri = 1;
        }
        if (host->len <= 5)
            return "no path in the unix domain socket";
        return NULL;
    }

    const char *slash = memchr(p, '/', (size_t) (end - p));
    const char *q = memchr(p, '?', (size_t) (end - p));
    const char *hend = slash ? slash : end;
    if (q && q < hend)
        hend = q;
    host->data = (char *) p;
    host->len = (size_t) (hend - p);
    if (host->len == 0)
        return "no host";
    if (hend < end) {
        uri->data = (char *) hend;
        uri->len = (size_t) (end - hend);
        *has_uri = 1;
    }
    /* port */
    const char *h = host->data, *he = host->data + host->len, *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', host->len);
        if (rb == NULL)
            return "invalid host";
        if (rb + 1 < he && rb[1] == ':')
            colon = rb + 1;
    } else {
        colon = memchr(h, ':', host->len);
    }
    if (colon) {
        int64_t n = pt_atoi64(colon + 1, (size_t) (he - colon - 1));
        if (n < 1 || n > 65535)
            return "invalid port";
        *port = (in_port_t) n;
        *has_port = 1;
    }
    return NULL;
}

/* Fills a target from a URL; group lookup/creation at config time (cf) or
 * among the existing groups at request time (cf == NULL, umcf given). */
/* the one target_init() error that is not an invalid URL (502, not 500) */
static const char no_resolver_err[] = "no resolver defined to resolve";

static const char *target_init(pt_pool_t *pool, pt_conf_t *cf, pt_upstream_main_conf_t *umcf,
                               const pt_str_t *url, proxy_target_t *t)
{
    pt_str_t host, uri;
    in_port_t port;
    int has_port, has_uri, is_unix, is_ssl;
    const char *err = parse_url(url, &host, &port, &has_port, &uri, &has_uri, &is_unix,
                                &is_ssl);
    if (err)
        return err;
    t->url = *url;
    t->uri = uri;
    t->has_uri = has_uri ? 1 : 0;
    t->ssl = is_ssl ? 1 : 0;

    char portbuf[8];
    int pl = snprintf(portbuf, sizeof(portbuf), "%u", (unsigned) port);
    t->port.data = pt_pstrndup(pool, portbuf, (size_t) pl);
    t->port.len = (size_t) pl;
    if (is_unix) {
        pt_str_set(&t->host, "localhost");
        t->name = t->host;
    } else {
        /* "host:port" as written; a written default port (80, 443 for
         * https) is dropped, as nginx */
        t->host = host;
        t->name = host;
        if (has_port) {
            const char *colon = host.data + host.len;
            while (colon > host.data && colon[-1] != ':')
                colon--;
            t->name.len = (size_t) (colon - 1 - host.data);
            if (port == (is_ssl ? 443 : 80))
                t->host.len = t->name.len;
        }
    }

    if (cf) {
        t->group = pt_upstream_group_add(cf, &host, port, has_port);
        if (t->group == NULL)
            return PT_CONF_ERROR;
        return NULL;
    }
    /* request time: an upstream { } or an implicit group of this name, or
     * an address literal */
    pt_upstream_group_t **gs = umcf->groups.elts;
    for (size_t i = 0; i < umcf->groups.nelts; i++) {
        if (pt_str_caseeq(&gs[i]->name, &host) && gs[i]->peers
            && (gs[i]->defined || gs[i]->port == port || is_unix)) {
            t->group = gs[i];
            return NULL;
        }
    }
    t->group = pt_upstream_group_literal(pool, &host, port);
    if (t->group)
        return NULL;
    return no_resolver_err;
}

/* ------------------------------------------------------------------------ */
/* Request building                                                          */

static const char *const hop_by_hop[] = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "content-length", "expect", NULL
};
static uint32_t hop_hash[16];
static int hop_init_done;

static void hop_init(void)
{
    if (hop_init_done)
        return;
    for (int i = 0; hop_by_hop[i]; i++)
        hop_hash[i] = pt_hash_lower(hop_by_hop[i], strlen(hop_by_hop[i]));
    hop_init_done = 1;
}

static int is_hop_by_hop(const pt_http_header_t *h, uint32_t hash)
{
    for (int i = 0; hop_by_hop[i]; i++)
        if (hop_hash[i] == hash && pt_str_caseeq_lit(&h->name, hop_by_hop[i]))
            return 1;
    return 0;
}

/* Is name listed as a token of the client's Connection header? */
static int in_connection_tokens(const pt_str_t *conn, const pt_str_t *name)
{
    const char *p = conn->data, *end = conn->data + conn->len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t) (e - s) == name->len && pt_strncasecmp(s, name->data, name->len) == 0)
            return 1;
    }
    return 0;
}

static int has_token(const pt_str_t *v, const char *tok)
{
    pt_str_t t = { strlen(tok), (char *) tok };
    return in_connection_tokens(v, &t);
}

/* Bytes escaped in a URI sent upstream. Full (nginx's rule when the client's
 * path had %-escapes or after an internal redirect): controls, space, '#',
 * '%', '?', DEL and bytes >= 0x80. Otherwise the client's raw bytes (UTF-8,
 * quotes) go as received; only what would break the request line is escaped. */
static int needs_escape(unsigned char ch, int full)
{
    if (ch <= 0x20 || ch == 0x7f || ch == '#' || ch == '?')
        return 1;
    return full && (ch >= 0x80 || ch == '%');
}

static size_t escape_len(const char *p, size_t n, int full)
{
    size_t extra = 0;
    for (size_t i = 0; i < n; i++)
        if (needs_escape((unsigned char) p[i], full))
            extra += 2;
    return n + extra;
}

static char *escape_copy(char *out, const char *p, size_t n, int full)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) p[i];
        if (needs_escape(ch, full)) {
            *out++ = '%';
            *out++ = hex[ch >> 4];
            *out++ = hex[ch & 15];
        } else {
            *out++ = (char) ch;
        }
    }
    return out;
}

/* Is r->unparsed_uri still what r->uri and r->args say (nginx's
 * valid_unparsed_uri)? False after a rewrite or an internal redirect. */
static int unparsed_uri_valid(pt_http_request_t *r)
{
    /* no r->internal shortcut: a named location keeps the URI (and nginx
     * sends the unparsed one), an internal redirect changes it */
    if (r->unparsed_uri.len == 0 || r->unparsed_uri.data[0] != '/')
        return 0;
    const char *u = r->unparsed_uri.data;
    size_t n = r->unparsed_uri.len;
    const char *q = memchr(u, '?', n);
    size_t plen = q ? (size_t) (q - u) : n;
    /* the args must be the request's own */
    if (q) {
        size_t alen = n - plen - 1;
        if (r->args.len != alen || (alen && memcmp(r->args.data, q + 1, alen) != 0))
            return 0;
    } else if (r->args.len) {
        return 0;
    }
    if (plen == r->uri.len && memcmp(u, r->uri.data, plen) == 0)
        return 1;
    /* escapes, dot segments, merged slashes: normalise and compare */
    pt_http_core_srv_conf_t *cscf = pt_http_get_module_srv_conf(r, pt_http_core_module);
    char *buf = pt_pnalloc(r->pool, plen + 1);
    if (buf == NULL)
        return 0;
    pt_str_t target = { plen, (char *) u }, nuri, nargs, nexten;
    if (pt_h1_normalize_uri(&target, buf, &nuri, &nargs, &nexten, cscf->merge_slashes) != 0)
        return 0;
    return pt_str_eq(&nuri, &r->uri);
}

/* The URI sent upstream (nginx's rules). */
static int build_uri(pt_http_request_t *r, proxy_loc_conf_t *plcf, proxy_target_t *t,
                     int from_vars, pt_str_t *out)
{
    if (from_vars && t->has_uri) {
        *out = t->uri;        /* with variables, a URI part is used as is */
        return 0;
    }
    if (!t->has_uri && unparsed_uri_valid(r)) {
        *out = r->unparsed_uri;
        return 0;
    }
    /* after `rewrite ... break` in this location the changed URI goes whole,
     * without the proxy_pass URI part */
    int with_uri = t->has_uri && !r->uri_rewritten_here;
    size_t loc_len = 0;
    if (with_uri && !plcf->location_regex && plcf->location.len <= r->uri.len
        && memcmp(r->uri.data, plcf->location.data, plcf->location.len) == 0)
        loc_len = plcf->location.len;
    const char *rest = r->uri.data + loc_len;
    size_t rest_len = r->uri.len - loc_len;
    size_t prefix_len = with_uri ? t->uri.len : 0;
    /* nginx escapes only when the client's path had %-escapes or the URI
     * was changed internally */
    const char *raw = r->unparsed_uri.data;
    size_t raw_len = r->unparsed_uri.len;
    const char *qm = raw_len ? memchr(raw, '?', raw_len) : NULL;
    if (qm)
        raw_len = (size_t) (qm - raw);
    int full = r->internal || (raw_len && memchr(raw, '%', raw_len) != NULL);
    size_t len = prefix_len + escape_len(rest, rest_len, full)
                 + (r->args.len ? r->args.len + 1 : 0);
    char *p = pt_pnalloc(r->pool, len ? len : 1), *q = p;
    if (p == NULL)
        return -1;
    if (prefix_len) {
        memcpy(q, t->uri.data, prefix_len);
        q += prefix_len;
    }
    q = escape_copy(q, rest, rest_len, full);
    if (r->args.len) {
        *q++ = '?';
        memcpy(q, r->args.data, r->args.len);
        q += r->args.len;
    }
    out->data = p;
    out->len = (size_t) (q - p);
    if (out->len == 0) {
        pt_str_set(out, "/");
    }
    return 0;
}

static int create_request(pt_upstream_t *u)
{
    pt_http_request_t *r = u->r;
    proxy_loc_conf_t *plcf = pt_http_get_module_loc_conf(r, pt_http_proxy_module);
    proxy_ctx_t *ctx = pt_http_get_module_ctx(r, pt_http_proxy_module);
    proxy_target_t *t = ctx->target;
    pt_str_t uri;

    hop_init();
    if (build_uri(r, plcf, t, plcf->url_cv != NULL, &uri) != 0)
        return PT_ERROR;

    size_t nset = plcf->headers ? plcf->headers->nelts : 0;
    proxy_header_t *sh = plcf->headers ? plcf->headers->elts : NULL;
    pt_str_t vals_stack[32];
    pt_str_t *vals = nset <= 32 ? vals_stack : pt_palloc(r->pool, nset * sizeof(pt_str_t));
    if (vals == NULL)
        return PT_ERROR;

    /* 1. lengths */
    size_t len = r->method_name.len + 1 + uri.len + sizeof(" HTTP/1.x\r\n") - 1;
    int conn_close = 0, conn_set = 0, upgrade_set = 0, conn_upgrade = 0;
    for (size_t i = 0; i < nset; i++) {
        if (pt_http_cv_eval(r, &sh[i].value, &vals[i]) != 0)
            return PT_ERROR;
        if (vals[i].len == 0)
            continue;
        len += sh[i].name.len + 2 + vals[i].len + 2;
        if (pt_str_caseeq_lit(&sh[i].name, "connection")) {
            conn_set = 1;
            if (has_token(&vals[i], "close"))
                conn_close = 1;
            if (has_token(&vals[i], "upgrade"))
                conn_upgrade = 1;
        } else if (pt_str_caseeq_lit(&sh[i].name, "upgrade")) {
            upgrade_set = 1;
        }
    }
    (void) conn_set;
    u->ka_request = plcf->http_version == 11 && !conn_close;
    u->upgrade_request = upgrade_set && conn_upgrade && plcf->http_version == 11;

    char clbuf[32];
    int cl_len = 0;
    if (u->body_mode == PT_UPSTREAM_BODY_BUFFERED) {
        cl_len = snprintf(clbuf, sizeof(clbuf), "%lld", (long long) u->body_len);
        len += sizeof("Content-Length: \r\n") - 1 + (size_t) cl_len;
    } else if (u->body_mode == PT_UPSTREAM_BODY_STREAM) {
        if (u->chunked_out) {
            len += sizeof("Transfer-Encoding: chunked\r\n") - 1;
        } else {
            cl_len = snprintf(clbuf, sizeof(clbuf), "%lld",
                              (long long) r->headers_in.content_length_n);
            len += sizeof("Content-Length: \r\n") - 1 + (size_t) cl_len;
        }
    }
    /* a client's "Content-Length: 0" goes on (a PUT/POST without it may get 411) */
    int cl_zero = u->body_mode == PT_UPSTREAM_BODY_NONE && plcf->pass_request_body
                  && r->headers_in.content_length && r->headers_in.content_length_n == 0;
    if (cl_zero)
        len += sizeof("Content-Length: 0\r\n") - 1;

    pt_http_header_t *hin = r->headers_in.list.elts;
    size_t nin = plcf->pass_request_headers ? r->headers_in.list.nelts : 0;
    const pt_str_t *conn_hdr = r->headers_in.connection ? &r->headers_in.connection->value : NULL;
    /* a small skip mask avoids deciding twice */
    unsigned char skip_stack[64];
    unsigned char *skip = nin <= 64 ? skip_stack : pt_palloc(r->pool, nin);
    if (skip == NULL && nin)
        return PT_ERROR;
    for (size_t i = 0; i < nin; i++) {
        pt_http_header_t *h = &hin[i];
        uint32_t hash = h->hash ? h->hash : pt_hash_lower(h->name.data, h->name.len);
        int s = h->deleted || is_hop_by_hop(h, hash);
        for (size_t k = 0; !s && k < nset; k++)
            if (sh[k].hash == hash && pt_str_caseeq(&sh[k].name, &h->name))
                s = 1;
        if (!s && conn_hdr && in_connection_tokens(conn_hdr, &h->name))
            s = 1;
        skip[i] = (unsigned char) s;
        if (!s)
            len += h->name.len + 2 + h->value.len + 2;
    }
    len += 2;

    /* 2. one buffer, one pass */
    char *p = pt_pnalloc(r->pool, len), *q = p;
    if (p == NULL)
        return PT_ERROR;
    memcpy(q, r->method_name.data, r->method_name.len);
    q += r->method_name.len;
    *q++ = ' ';
    memcpy(q, uri.data, uri.len);
    q += uri.len;
    memcpy(q, plcf->http_version == 11 ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n", 11);
    q += 11;
    for (size_t i = 0; i < nset; i++) {
        if (vals[i].len == 0)
            continue;
        memcpy(q, sh[i].name.data, sh[i].name.len);
        q += sh[i].name.len;
        *q++ = ':';
        *q++ = ' ';
        memcpy(q, vals[i].data, vals[i].len);
        q += vals[i].len;
        *q++ = '\r';
        *q++ = '\n';
    }
    if (u->body_mode != PT_UPSTREAM_BODY_NONE) {
        if (cl_len) {
            memcpy(q, "Content-Length: ", 16);
            q += 16;
            memcpy(q, clbuf, (size_t) cl_len);
            q += cl_len;
            *q++ = '\r';
            *q++ = '\n';
        } else {
            memcpy(q, "Transfer-Encoding: chunked\r\n", 28);
            q += 28;
        }
    } else if (cl_zero) {
        memcpy(q, "Content-Length: 0\r\n", 19);
        q += 19;
    }
    for (size_t i = 0; i < nin; i++) {
        if (skip[i])
            continue;
        pt_http_header_t *h = &hin[i];
        memcpy(q, h->name.data, h->name.len);
        q += h->name.len;
        *q++ = ':';
        *q++ = ' ';
        memcpy(q, h->value.data, h->value.len);
        q += h->value.len;
        *q++ = '\r';
        *q++ = '\n';
    }
    *q++ = '\r';
    *q++ = '\n';
    u->request_head.data = p;
    u->request_head.len = (size_t) (q - p);
    return PT_OK;
}

/* ------------------------------------------------------------------------ */
/* Response head                                                             */

static int rewrite_redirect(pt_http_request_t *r, proxy_loc_conf_t *plcf, proxy_target_t *t,
                            const pt_str_t *value, size_t offset, pt_str_t *out)
{
    if (plcf->redirect == REDIRECT_OFF)
        return 0;
    pt_str_t v = { value->len - offset, value->data + offset };

    if (plcf->redirects == NULL || plcf->redirect_default) {
        /* default: the proxy_pass URL (with "/" when it has no URI) becomes
         * the location name (or "/") */
        pt_str_t from = t->url, to = plcf->location;
        char tmp[1024];
        if (!t->has_uri) {
            if (t->url.len + 1 < sizeof(tmp)) {
                memcpy(tmp, t->url.data, t->url.len);
                tmp[t->url.len] = '/';
                from.data = tmp;
                from.len = t->url.len + 1;
            }
            pt_str_set(&to, "/");
        }
        if (plcf->url_cv == NULL && v.len >= from.len && memcmp(v.data, from.data, from.len) == 0) {
            size_t n = offset + to.len + v.len - from.len;
            char *p = pt_pnalloc(r->pool, n);
            if (p == NULL)
                return -1;
            memcpy(p, value->data, offset);
            memcpy(p + offset, to.data, to.len);
            memcpy(p + offset + to.len, v.data + from.len, v.len - from.len);
            out->data = p;
            out->len = n;
            return 1;
        }
    }
    if (plcf->redirects == NULL)
        return 0;
    proxy_redirect_t *pr = plcf->redirects->elts;
    for (size_t i = 0; i < plcf->redirects->nelts; i++) {
        pt_str_t to;
        size_t match_len;
        if (pr[i].regex) {
            if (pt_http_regex_exec(r, pr[i].regex, &v) != 1)
                continue;
            match_len = v.len;         /* the replacement may use captures */
        } else {
            pt_str_t from;
            if (pt_http_cv_eval(r, &pr[i].from, &from) != 0)
                return -1;
            if (v.len < from.len || memcmp(v.data, from.data, from.len) != 0)
                continue;
            match_len = from.len;
        }
        if (pt_http_cv_eval(r, &pr[i].to, &to) != 0)
            return -1;
        size_t n = offset + to.len + v.len - match_len;
        char *p = pt_pnalloc(r->pool, n ? n : 1);
        if (p == NULL)
            return -1;
        memcpy(p, value->data, offset);
        memcpy(p + offset, to.data, to.len);
        memcpy(p + offset + to.len, v.data + match_len, v.len - match_len);
        out->data = p;
        out->len = n;
        return 1;
    }
    return 0;
}

static int is_hidden(proxy_loc_conf_t *plcf, const pt_str_t *name)
{
    if (plcf->hidden == NULL)
        return 0;
    pt_str_t *h = plcf->hidden->elts;
    for (size_t i = 0; i < plcf->hidden->nelts; i++)
        if (pt_str_caseeq(&h[i], name))
            return 1;
    return 0;
}

static int intercepted(pt_http_request_t *r, int status)
{
    pt_http_core_loc_conf_t *clcf = pt_http_get_module_loc_conf(r, pt_http_core_module);
    if (clcf->error_pages == NULL)
        return 0;
    pt_http_error_page_t *ep = clcf->error_pages->elts;
    for (size_t i = 0; i < clcf->error_pages->nelts; i++)
        if (ep[i].status == status)
            return 1;
    return 0;
}

static int process_header(pt_upstream_t *u)
{
    pt_http_request_t *r = u->r;
    proxy_loc_conf_t *plcf = pt_http_get_module_loc_conf(r, pt_http_proxy_module);
    proxy_ctx_t *ctx = pt_http_get_module_ctx(r, pt_http_proxy_module);
    pt_h1_response_t *res = u->res;
    int status = res->status;

    if (plcf->up.intercept_errors && status >= 300 && intercepted(r, status))
        return status;

    pt_http_headers_out_t *ho = &r->headers_out;
    ho->status = status;
    if (res->reason.len) {
        char *p = pt_pnalloc(r->pool, res->reason.len + 4);
        if (p == NULL)
            return 500;
        if (status >= 100 && status <= 999) {
            /* by hand: snprintf here cost hundreds of instructions per request */
            p[0] = (char) ('0' + status / 100);
            p[1] = (char) ('0' + status / 10 % 10);
            p[2] = (char) ('0' + status % 10);
            p[3] = ' ';
        } else {
            snprintf(p, 5, "%03d ", status);
        }
        memcpy(p + 4, res->reason.data, res->reason.len);
        ho->status_line.data = p;
        ho->status_line.len = res->reason.len + 4;
    }
    ho->content_length_n = u->headers_in.chunked ? -1 : u->headers_in.content_length_n;

    pt_http_header_t *hs = u->headers_in.headers.elts;
    const pt_str_t *conn = NULL;
    for (size_t i = 0; i < u->headers_in.headers.nelts; i++)
        if (pt_str_caseeq_lit(&hs[i].name, "connection"))
            conn = &hs[i].value;
    for (size_t i = 0; i < u->headers_in.headers.nelts; i++) {
        pt_http_header_t *h = &hs[i];
        const pt_str_t *n = &h->name;
        uint32_t hash = pt_hash_lower(n->data, n->len);
        h->hash = hash;

        if (status == 101 && pt_str_caseeq_lit(n, "upgrade")) {
            if (!pt_http_header_add(r, &ho->list, "Upgrade", 7, h->value.data, h->value.len))
                return 500;
            continue;
        }
        if (conn && in_connection_tokens(conn, n))
            continue;            /* named in Connection: hop-by-hop */
        if (is_hop_by_hop(h, hash))
            continue;
        /* read before the hide list: X-Accel-Buffering is hidden by default
         * yet still switches buffering, as nginx */
        if (pt_str_caseeq_lit(n, "x-accel-buffering")
            && !(plcf->ignore_headers & IGN_X_ACCEL_BUFFERING)) {
            if (pt_str_caseeq_lit(&h->value, "no"))
                u->buffering = 0;
            else if (pt_str_caseeq_lit(&h->value, "yes"))
                u->buffering = 1;
        }
        /* limit_rate hook: X-Accel-Limit-Rate paces the response (nginx) */
        if (pt_str_caseeq_lit(n, "x-accel-limit-rate") && !(plcf->ignore_headers & IGN_X_ACCEL_LIMIT))
            pt_http_limit_rate_header(r, &h->value);
        if (is_hidden(plcf, n))
            continue;
        if (pt_str_caseeq_lit(n, "content-type")) {
            ho->content_type = h->value;
            continue;
        }
        if (pt_str_caseeq_lit(n, "location")) {
            pt_str_t nv;
            int rc = h->value.len ? rewrite_redirect(r, plcf, ctx->target, &h->value, 0, &nv) : 0;
            if (rc < 0)
                return 500;
            if (rc == 1 || (h->value.len && h->value.data[0] != '/')) {
                pt_http_header_t *loc = pt_pcalloc(r->pool, sizeof(*loc));
                if (loc == NULL)
                    return 500;
                loc->name = *n;
                loc->value = rc == 1 ? nv : h->value;
                loc->hash = hash;
                ho->location = loc;
                continue;
            }
            /* a relative Location from the backend is passed as is */
        } else if (pt_str_caseeq_lit(n, "refresh")) {
            const char *url = pt_strnstr(h->value.data, h->value.len, "url=", 4);
            if (url) {
                pt_str_t nv;
                int rc = rewrite_redirect(r, plcf, ctx->target, &h->value,
                                          (size_t) (url + 4 - h->value.data), &nv);
                if (rc < 0)
                    return 500;
                if (rc == 1) {
                    if (!pt_http_header_add(r, &ho->list, n->data, n->len, nv.data, nv.len))
                        return 500;
                    continue;
                }
            }
        } else if (pt_str_caseeq_lit(n, "date") || pt_str_caseeq_lit(n, "server")) {
            pt_http_header_t *x = pt_pcalloc(r->pool, sizeof(*x));
            if (x == NULL)
                return 500;
            *x = *h;
            if (n->len == 4)
                ho->date = x;
            else
                ho->server = x;
            continue;
        }
        pt_http_header_t *out = pt_array_push(&ho->list);
        if (out == NULL)
            return 500;
        *out = *h;
    }
    /* for a 101 the writer adds "Connection: upgrade" itself */
    return PT_OK;
}

/* proxy_ignore_headers of the request's location (IGN_* bits), for the
 * cache: src/proxy/cache.c calls it through a weak reference and reads the
 * bits with the same values (X-Accel-Expires, Expires, Cache-Control,
 * Set-Cookie, Vary decide what is stored and for how long). */
unsigned pt_proxy_ignore_headers(pt_http_request_t *r);
unsigned pt_proxy_ignore_headers(pt_http_request_t *r)
{
    proxy_loc_conf_t *plcf = pt_http_get_module_loc_conf(r, pt_http_proxy_module);
    if (plcf == NULL || plcf->ignore_headers == PT_CONF_UNSET_UINT)
        return 0;
    return plcf->ignore_headers;
}

/* ------------------------------------------------------------------------ */
/* The content handler                                                       */

/* The request's pool is going away: if the upstream side was never ended
 * (an HTTP/2 connection closed with streams waiting on their backends, a
 * forced close), end it now. Its connection's events and timers point to u,
 * which lives in this pool, and the peer, the spool and body files are held.
 * The request itself is over: r->done makes the finalize inside a no-op. */
static void upstream_cleanup(void *data)
{
    pt_upstream_t *u = data;
    if (u->finished)
        return;
    u->r->done = 1;
    pt__upstream_finalize(u, PT_ERROR);
}

static int proxy_handler(pt_http_request_t *r)
{
    proxy_loc_conf_t *plcf = pt_http_get_module_loc_conf(r, pt_http_proxy_module);
    proxy_ctx_t *ctx = pt_pcalloc(r->pool, sizeof(*ctx));
    if (ctx == NULL)
        return 500;
    pt_http_set_ctx(r, ctx, pt_http_proxy_module);

    if (plcf->url_cv) {
        pt_str_t url;
        if (pt_http_cv_eval(r, plcf->url_cv, &url) != 0)
            return 500;
        proxy_target_t *t = pt_pcalloc(r->pool, sizeof(*t));
        if (t == NULL)
            return 500;
        pt_upstream_main_conf_t *umcf = pt_http_get_module_main_conf(r, pt_http_upstream_module);
        const char *err = target_init(r->pool, NULL, umcf, &url, t);
        if (err) {
            pt_log_error(PT_LOG_ERR, &r->connection->log, 0, "%s \"%.*s\"", err,
                         (int) url.len, url.data);
            return err == no_resolver_err ? 502 : 500;   /* an invalid URL is 500 (nginx) */
        }
        ctx->target = t;
    } else {
        ctx->target = plcf->target;
    }

    pt_upstream_t *u = pt_upstream_create(r, &plcf->up, ctx->target->group);
    if (u == NULL || pt_pool_cleanup_add(r->pool, upstream_cleanup, u) != 0)
        return 500;
    if (ctx->target->ssl) {
        if (plcf->ssl.ctx == NULL) {
            pt_log_error(PT_LOG_ERR, &r->connection->log, 0,
                         "https protocol requires SSL support");
            return 500;
        }
        u->ssl = &plcf->ssl;
        u->ssl_host = ctx->target->name;
        if (plcf->ssl_name && pt_http_cv_eval(r, plcf->ssl_name, &u->ssl_host) != 0)
            return 500;
    }
    u->create_request = create_request;
    u->process_header = process_header;
    if (u->group->balancer->init_peer(r, u) != PT_OK)
        return 500;

    int has_body = r->headers_in.chunked || r->headers_in.content_length_n > 0;
    if (!has_body || !plcf->pass_request_body) {
        u->body_mode = PT_UPSTREAM_BODY_NONE;
    } else if (plcf->up.request_buffering
               || (r->headers_in.chunked && plcf->http_version != 11)) {
        u->body_mode = PT_UPSTREAM_BODY_BUFFERED;
    } else {
        u->body_mode = PT_UPSTREAM_BODY_STREAM;
        u->chunked_out = r->headers_in.chunked ? 1 : 0;
        u->body_left = r->headers_in.chunked ? -1 : r->headers_in.content_length_n;
    }
    return pt_upstream_start(u);
}

/* ------------------------------------------------------------------------ */
/* Variables                                                                 */

enum { PV_HOST, PV_PORT };

static int get_proxy_var(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    proxy_ctx_t *ctx = r->ctx ? pt_http_get_module_ctx(r, pt_http_proxy_module) : NULL;
    if (ctx == NULL || ctx->target == NULL) {
        v->not_found = 1;
        v->value.len = 0;
        v->value.data = (char *) "";
        return PT_OK;
    }
    v->value = data == PV_HOST ? ctx->target->host : ctx->target->port;
    v->valid = 1;
    v->not_found = 0;
    return PT_OK;
}

static int get_add_xff(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    (void) data;
    pt_str_t addr = r->connection->addr_text;
    size_t len = 0;
    pt_http_header_t *h = r->headers_in.list.elts;
    for (size_t i = 0; i < r->headers_in.list.nelts; i++)
        if (!h[i].deleted && pt_str_caseeq_lit(&h[i].name, "x-forwarded-for"))
            len += h[i].value.len + 2;
    if (len == 0) {
        v->value = addr;
        v->valid = 1;
        v->not_found = 0;
        return PT_OK;
    }
    char *p = pt_pnalloc(r->pool, len + addr.len), *q = p;
    if (p == NULL)
        return PT_ERROR;
    for (size_t i = 0; i < r->headers_in.list.nelts; i++) {
        if (h[i].deleted || !pt_str_caseeq_lit(&h[i].name, "x-forwarded-for"))
            continue;
        memcpy(q, h[i].value.data, h[i].value.len);
        q += h[i].value.len;
        *q++ = ',';
        *q++ = ' ';
    }
    memcpy(q, addr.data, addr.len);
    q += addr.len;
    v->value.data = p;
    v->value.len = (size_t) (q - p);
    v->valid = 1;
    v->not_found = 0;
    return PT_OK;
}

static int proxy_preconfiguration(pt_conf_t *cf)
{
    static const struct {
        const char *name;
        pt_http_var_get_cb get;
        uintptr_t data;
    } vars[] = {
        { "proxy_host", get_proxy_var, PV_HOST },
        { "proxy_port", get_proxy_var, PV_PORT },
        { "proxy_add_x_forwarded_for", get_add_xff, 0 },
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        pt_str_t name = { strlen(vars[i].name), (char *) vars[i].name };
        pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_NOCACHEABLE);
        if (v == NULL)
            return -1;
        v->get = vars[i].get;
        v->data = vars[i].data;
    }
    return pt_upstream_add_variables(cf);
}

/* ------------------------------------------------------------------------ */
/* Directives                                                                */

static const char *proxy_pass_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    proxy_loc_conf_t *plcf = conf;
    pt_str_t *value = cf->args->elts;
    pt_http_core_loc_conf_t *clcf = pt_http_conf_get_module_loc_conf(cf, pt_http_core_module);
    (void) cmd;

    if (plcf->target || plcf->url_cv)
        return "is duplicate";

    clcf->handler = proxy_handler;
    if (clcf->name.len && clcf->name.data[clcf->name.len - 1] == '/' && !clcf->regex
        && !clcf->named && !clcf->noname)
        clcf->auto_redirect = 1;

    plcf->location = clcf->name;
    plcf->location_regex = clcf->regex != NULL;

    pt_str_t url = value[1];
    if (memchr(url.data, '$', url.len)) {
        plcf->url_cv = pt_pcalloc(cf->pool, sizeof(pt_http_cv_t));
        if (plcf->url_cv == NULL || pt_http_cv_compile(cf, &url, plcf->url_cv) != 0)
            return PT_CONF_ERROR;
        if (!plcf->url_cv->is_literal) {
            /* https written, or a scheme that comes from a variable */
            plcf->url_ssl = url.data[0] == '$'
                            || (url.len > 8 && pt_strncasecmp(url.data, "https://", 8) == 0);
            return PT_CONF_OK;
        }
        plcf->url_cv = NULL;
    }

    proxy_target_t *t = pt_pcalloc(cf->pool, sizeof(*t));
    if (t == NULL)
        return "failed (out of memory)";
    const char *err = target_init(cf->pool, cf, NULL, &url, t);
    if (err == PT_CONF_ERROR)
        return PT_CONF_ERROR;
    if (err) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "%s in \"%s\"", err, url.data);
        return PT_CONF_ERROR;
    }
    if (t->has_uri && (clcf->regex || clcf->named || clcf->noname)) {
        pt_conf_error(cf, PT_LOG_EMERG, 0,
                      "\"proxy_pass\" cannot have URI part in location given by regular "
                      "expression, or inside named location, or inside \"if\" statement, "
                      "or inside \"limit_except\" block");
        return PT_CONF_ERROR;
    }
    plcf->target = t;
    plcf->url_ssl = t->ssl;
    return PT_CONF_OK;
}

static const char *set_header_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    proxy_loc_conf_t *plcf = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    if (plcf->set_headers == PT_CONF_UNSET_PTR) {
        plcf->set_headers = pt_array_create(cf->pool, 4, sizeof(proxy_header_t));
        if (plcf->set_headers == NULL)
            return "failed (out of memory)";
    }
    if (!pt_h1_is_token(value[1].data, value[1].len)) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid header name \"%s\"", value[1].data);
        return PT_CONF_ERROR;
    }
    proxy_header_t *h = pt_array_push(plcf->set_headers);
    if (h == NULL)
        return "failed (out of memory)";
    h->name = value[1];
    h->hash = pt_hash_lower(value[1].data, value[1].len);
    if (pt_http_cv_compile(cf, &value[2], &h->value) != 0)
        return PT_CONF_ERROR;
    return PT_CONF_OK;
}

static const char *http_version_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    proxy_loc_conf_t *plcf = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    if (plcf->http_version != PT_CONF_UNSET_UINT)
        return "is duplicate";
    if (pt_str_eq_lit(&value[1], "1.0"))
        plcf->http_version = 10;
    else if (pt_str_eq_lit(&value[1], "1.1"))
        plcf->http_version = 11;
    else {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\" in \"%s\" directive",
                      value[1].data, value[0].data);
        return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

static const char *buffers_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    proxy_loc_conf_t *plcf = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    if (plcf->up.bufs_num != PT_CONF_UNSET)
        return "is duplicate";
    int64_t n = pt_atoi64(value[1].data, value[1].len);
    int64_t s = pt_conf_parse_size(&value[2]);
    if (n <= 0 || s <= 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\"", n <= 0 ? value[1].data : value[2].data);
        return PT_CONF_ERROR;
    }
    plcf->up.bufs_num = n;
    plcf->up.bufs_size = s;
    return PT_CONF_OK;
}

static const char *redirect_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    proxy_loc_conf_t *plcf = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;

    if (plcf->redirect == REDIRECT_OFF)
        return "is duplicate";
    if (cf->args->nelts == 2) {
        if (pt_str_eq_lit(&value[1], "off") || pt_str_eq_lit(&value[1], "false")) {
            if (plcf->redirect == REDIRECT_ON)
                return "is duplicate";
            plcf->redirect = REDIRECT_OFF;
            plcf->redirects = NULL;
            return PT_CONF_OK;
        }
        if (!pt_str_eq_lit(&value[1], "default")) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", value[1].data);
            return PT_CONF_ERROR;
        }
        plcf->redirect = REDIRECT_ON;
        plcf->redirect_default = 1;
        if (plcf->redirects == NULL || plcf->redirects == PT_CONF_UNSET_PTR)
            plcf->redirects = pt_array_create(cf->pool, 2, sizeof(proxy_redirect_t));
        return plcf->redirects ? PT_CONF_OK : "failed (out of memory)";
    }
    plcf->redirect = REDIRECT_ON;
    if (plcf->redirects == NULL || plcf->redirects == PT_CONF_UNSET_PTR) {
        plcf->redirects = pt_array_create(cf->pool, 2, sizeof(proxy_redirect_t));
        if (plcf->redirects == NULL)
            return "failed (out of memory)";
    }
    proxy_redirect_t *pr = pt_array_push(plcf->redirects);
    if (pr == NULL)
        return "failed (out of memory)";
    memset(pr, 0, sizeof(*pr));
    pt_str_t from = value[1];
    if (from.len > 1 && from.data[0] == '~') {
        int caseless = from.len > 2 && from.data[1] == '*';
        pt_str_t pat = { from.len - (caseless ? 2 : 1), from.data + (caseless ? 2 : 1) };
        pr->regex = pt_pcalloc(cf->pool, sizeof(pt_http_regex_t));
        if (pr->regex == NULL || pt_http_regex_compile(cf, pr->regex, &pat, caseless) != 0)
            return PT_CONF_ERROR;
    } else if (pt_http_cv_compile(cf, &from, &pr->from) != 0) {
        return PT_CONF_ERROR;
    }
    if (pt_http_cv_compile(cf, &value[2], &pr->to) != 0)
        return PT_CONF_ERROR;
    return PT_CONF_OK;
}

/* proxy_ssl_name: a literal goes to the TLS conf; with variables it is
 * evaluated per request and passed as the host (ssl.name stays empty). */
static const char *ssl_name_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    proxy_loc_conf_t *plcf = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    if (plcf->ssl.name.data || plcf->ssl_name != PT_CONF_UNSET_PTR)
        return "is duplicate";
    pt_http_cv_t *cv = pt_pcalloc(cf->pool, sizeof(*cv));
    if (cv == NULL || pt_http_cv_compile(cf, &value[1], cv) != 0)
        return PT_CONF_ERROR;
    if (cv->is_literal) {
        plcf->ssl.name = value[1];
        plcf->ssl_name = NULL;
    } else {
        plcf->ssl_name = cv;
        pt_str_set(&plcf->ssl.name, "");    /* set: no literal inherited */
    }
    return PT_CONF_OK;
}

static const pt_conf_enum_t next_upstream_masks[] = {
    { "error", PT_UPSTREAM_FT_ERROR },
    { "timeout", PT_UPSTREAM_FT_TIMEOUT },
    { "invalid_header", PT_UPSTREAM_FT_INVALID_HEADER },
    { "http_500", PT_UPSTREAM_FT_HTTP_500 },
    { "http_502", PT_UPSTREAM_FT_HTTP_502 },
    { "http_503", PT_UPSTREAM_FT_HTTP_503 },
    { "http_504", PT_UPSTREAM_FT_HTTP_504 },
    { "http_403", PT_UPSTREAM_FT_HTTP_403 },
    { "http_404", PT_UPSTREAM_FT_HTTP_404 },
    { "http_429", PT_UPSTREAM_FT_HTTP_429 },
    { "non_idempotent", PT_UPSTREAM_FT_NON_IDEMPOTENT },
    { "updating", 0x10000 },
    { "off", PT_UPSTREAM_FT_OFF },
    { NULL, 0 }
};

static const pt_conf_enum_t ignore_headers_masks[] = {
    { "X-Accel-Redirect", IGN_X_ACCEL_REDIRECT },
    { "X-Accel-Expires", IGN_X_ACCEL_EXPIRES },
    { "X-Accel-Limit-Rate", IGN_X_ACCEL_LIMIT },
    { "X-Accel-Buffering", IGN_X_ACCEL_BUFFERING },
    { "X-Accel-Charset", IGN_X_ACCEL_CHARSET },
    { "Expires", IGN_EXPIRES },
    { "Cache-Control", IGN_CACHE_CONTROL },
    { "Set-Cookie", IGN_SET_COOKIE },
    { "Vary", IGN_VARY },
    { NULL, 0 }
};

static const pt_conf_bounds_t tries_bounds = { 0, -1 };

#define CTX_L (PT_CTX_HTTP | PT_CTX_SRV | PT_CTX_LOC)
#define PL(f) offsetof(proxy_loc_conf_t, f)
#define UP(f) (offsetof(proxy_loc_conf_t, up) + offsetof(pt_upstream_conf_t, f))
#define UPSSL(f) (offsetof(proxy_loc_conf_t, ssl) + offsetof(pt_tls_upstream_conf_t, f))

static const pt_conf_bounds_t ssl_depth_bounds = { 0, 100 };

static const pt_command_t proxy_commands[] = {
    { "proxy_pass", PT_CTX_LOC | PT_CTX_LIF | PT_CTX_LMT, 0, 1, 1, proxy_pass_cmd,
      PT_CONF_HTTP_LOC, 0, NULL },
    { "proxy_set_header", CTX_L, 0, 2, 2, set_header_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "proxy_http_version", CTX_L, 0, 1, 1, http_version_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "proxy_pass_request_headers", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, PL(pass_request_headers), NULL },
    { "proxy_pass_request_body", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, PL(pass_request_body), NULL },
    { "proxy_hide_header", CTX_L, 0, 1, 1, pt_conf_set_str_array, PT_CONF_HTTP_LOC,
      PL(hide_headers), NULL },
    { "proxy_pass_header", CTX_L, 0, 1, 1, pt_conf_set_str_array, PT_CONF_HTTP_LOC,
      PL(pass_headers), NULL },
    { "proxy_ignore_headers", CTX_L, 0, 1, PT_ARGS_ANY, pt_conf_set_bitmask, PT_CONF_HTTP_LOC,
      PL(ignore_headers), ignore_headers_masks },
    { "proxy_redirect", CTX_L, 0, 1, 2, redirect_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "proxy_intercept_errors", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      UP(intercept_errors), NULL },
    { "proxy_connect_timeout", CTX_L, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      UP(connect_timeout), NULL },
    { "proxy_send_timeout", CTX_L, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      UP(send_timeout), NULL },
    { "proxy_read_timeout", CTX_L, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      UP(read_timeout), NULL },
    { "proxy_buffer_size", CTX_L, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_LOC,
      UP(buffer_size), NULL },
    { "proxy_buffers", CTX_L, 0, 2, 2, buffers_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "proxy_busy_buffers_size", CTX_L, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_LOC,
      UP(busy_buffers_size), NULL },
    { "proxy_max_temp_file_size", CTX_L, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_LOC,
      UP(max_temp_file_size), NULL },
    { "proxy_temp_file_write_size", CTX_L, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "proxy_temp_path", PT_CTX_HTTP | PT_CTX_SRV | PT_CTX_LOC, 0, 1, 4, pt_conf_set_ignored,
      PT_CONF_NONE, 0, NULL },
    { "proxy_buffering", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      UP(buffering), NULL },
    { "proxy_request_buffering", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      UP(request_buffering), NULL },
    { "proxy_next_upstream", CTX_L, 0, 1, PT_ARGS_ANY, pt_conf_set_bitmask, PT_CONF_HTTP_LOC,
      UP(next_upstream), next_upstream_masks },
    { "proxy_next_upstream_tries", CTX_L, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_LOC,
      UP(next_upstream_tries), &tries_bounds },
    { "proxy_next_upstream_timeout", CTX_L, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      UP(next_upstream_timeout), NULL },
    { "proxy_ignore_client_abort", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      UP(ignore_client_abort), NULL },
    { "proxy_socket_keepalive", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "proxy_headers_hash_max_size", CTX_L, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "proxy_headers_hash_bucket_size", CTX_L, 0, 1, 1, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    /* TLS to upstreams (src/tls/tls.c builds the context) */
    { "proxy_ssl_server_name", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      UPSSL(server_name), NULL },
    { "proxy_ssl_name", CTX_L, 0, 1, 1, ssl_name_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "proxy_ssl_verify", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      UPSSL(verify), NULL },
    { "proxy_ssl_verify_depth", CTX_L, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_LOC,
      UPSSL(verify_depth), &ssl_depth_bounds },
    { "proxy_ssl_trusted_certificate", CTX_L, 0, 1, 1, pt_conf_set_path, PT_CONF_HTTP_LOC,
      UPSSL(trusted_certificate), NULL },
    { "proxy_ssl_certificate", CTX_L, 0, 1, 1, pt_conf_set_path, PT_CONF_HTTP_LOC,
      UPSSL(certificate), NULL },
    { "proxy_ssl_certificate_key", CTX_L, 0, 1, 1, pt_conf_set_path, PT_CONF_HTTP_LOC,
      UPSSL(certificate_key), NULL },
    { "proxy_ssl_password_file", CTX_L, 0, 1, 1, pt_tls_conf_set_password_file,
      PT_CONF_HTTP_LOC, UPSSL(passwords), NULL },
    { "proxy_ssl_protocols", CTX_L, 0, 1, PT_ARGS_ANY, pt_conf_set_bitmask, PT_CONF_HTTP_LOC,
      UPSSL(protocols), pt_tls_protocols },
    { "proxy_ssl_ciphers", CTX_L, 0, 1, 1, pt_conf_set_str, PT_CONF_HTTP_LOC, UPSSL(ciphers), NULL },
    { "proxy_ssl_session_reuse", CTX_L, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      UPSSL(session_reuse), NULL },
    PT_COMMAND_END
};

static void *create_loc_conf(pt_conf_t *cf)
{
    proxy_loc_conf_t *c = pt_pcalloc(cf->pool, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->up.connect_timeout = PT_CONF_UNSET_MSEC;
    c->up.send_timeout = PT_CONF_UNSET_MSEC;
    c->up.read_timeout = PT_CONF_UNSET_MSEC;
    c->up.buffer_size = PT_CONF_UNSET_SIZE;
    c->up.bufs_num = PT_CONF_UNSET;
    c->up.bufs_size = PT_CONF_UNSET;
    c->up.busy_buffers_size = PT_CONF_UNSET_SIZE;
    c->up.max_temp_file_size = PT_CONF_UNSET_SIZE;
    c->up.buffering = PT_CONF_UNSET;
    c->up.request_buffering = PT_CONF_UNSET;
    c->up.intercept_errors = PT_CONF_UNSET;
    c->up.next_upstream = 0;
    c->up.next_upstream_tries = PT_CONF_UNSET;
    c->up.next_upstream_timeout = PT_CONF_UNSET_MSEC;
    c->set_headers = PT_CONF_UNSET_PTR;
    c->hide_headers = NULL;
    c->pass_headers = NULL;
    c->http_version = PT_CONF_UNSET_UINT;
    c->pass_request_headers = PT_CONF_UNSET;
    c->pass_request_body = PT_CONF_UNSET;
    c->up.ignore_client_abort = PT_CONF_UNSET;
    c->redirect = REDIRECT_UNSET;
    c->redirects = PT_CONF_UNSET_PTR;
    pt_tls_upstream_conf_create(&c->ssl);
    c->ssl_name = PT_CONF_UNSET_PTR;
    return c;
}

static int compile_headers(pt_conf_t *cf, proxy_loc_conf_t *c)
{
    static const char *const defaults[][2] = {
        { "Host", "$proxy_host" },
        { "Connection", "close" },
    };
    size_t nset = c->set_headers ? c->set_headers->nelts : 0;
    c->headers = pt_array_create(cf->pool, nset + 2, sizeof(proxy_header_t));
    if (c->headers == NULL)
        return -1;
    proxy_header_t *sh = c->set_headers ? c->set_headers->elts : NULL;
    for (size_t i = 0; i < nset; i++) {
        proxy_header_t *h = pt_array_push(c->headers);
        *h = sh[i];
    }
    for (size_t d = 0; d < 2; d++) {
        pt_str_t name = { strlen(defaults[d][0]), (char *) defaults[d][0] };
        int found = 0;
        for (size_t i = 0; i < nset; i++)
            if (pt_str_caseeq(&sh[i].name, &name))
                found = 1;
        if (found)
            continue;
        proxy_header_t *h = pt_array_push(c->headers);
        h->name = name;
        h->hash = pt_hash_lower(name.data, name.len);
        pt_str_t v = { strlen(defaults[d][1]), (char *) defaults[d][1] };
        if (pt_http_cv_compile(cf, &v, &h->value) != 0)
            return -1;
    }
    return 0;
}

static const char *merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    proxy_loc_conf_t *prev = parent, *c = child;
    pt_http_core_loc_conf_t *clcf = pt_http_conf_get_module_loc_conf(cf, pt_http_core_module);

    pt_conf_merge(c->up.connect_timeout, prev->up.connect_timeout, 60000);
    pt_conf_merge(c->up.send_timeout, prev->up.send_timeout, 60000);
    pt_conf_merge(c->up.read_timeout, prev->up.read_timeout, 60000);
    pt_conf_merge(c->up.buffer_size, prev->up.buffer_size, 4096);
    if (c->up.bufs_num == PT_CONF_UNSET) {
        c->up.bufs_num = prev->up.bufs_num != PT_CONF_UNSET ? prev->up.bufs_num : 8;
        c->up.bufs_size = prev->up.bufs_num != PT_CONF_UNSET ? prev->up.bufs_size : 4096;
    }
    pt_conf_merge(c->up.busy_buffers_size, prev->up.busy_buffers_size, 2 * c->up.buffer_size);
    pt_conf_merge(c->up.max_temp_file_size, prev->up.max_temp_file_size, 1024LL * 1024 * 1024);
    pt_conf_merge(c->up.buffering, prev->up.buffering, 1);
    pt_conf_merge(c->up.request_buffering, prev->up.request_buffering, 1);
    pt_conf_merge(c->up.intercept_errors, prev->up.intercept_errors, 0);
    if (c->up.next_upstream == 0)
        c->up.next_upstream = prev->up.next_upstream ? prev->up.next_upstream
                                                     : (PT_UPSTREAM_FT_ERROR | PT_UPSTREAM_FT_TIMEOUT);
    pt_conf_merge(c->up.next_upstream_tries, prev->up.next_upstream_tries, 0);
    pt_conf_merge(c->up.next_upstream_timeout, prev->up.next_upstream_timeout, 0);
    pt_conf_merge_uint(c->http_version, prev->http_version, 10);
    pt_conf_merge(c->pass_request_headers, prev->pass_request_headers, 1);
    pt_conf_merge(c->pass_request_body, prev->pass_request_body, 1);
    pt_conf_merge(c->up.ignore_client_abort, prev->up.ignore_client_abort, 0);
    if (c->ignore_headers == 0 || c->ignore_headers == PT_CONF_UNSET_UINT)
        c->ignore_headers = prev->ignore_headers == PT_CONF_UNSET_UINT ? 0 : prev->ignore_headers;

    if (c->up.busy_buffers_size > (c->up.bufs_num - 1) * c->up.bufs_size
        && c->target) {
        pt_conf_error(cf, PT_LOG_EMERG, 0,
                      "\"proxy_busy_buffers_size\" must be less than the size of all "
                      "\"proxy_buffers\" minus one buffer");
        return PT_CONF_ERROR;
    }

    if (c->redirect == REDIRECT_UNSET) {
        c->redirect = prev->redirect == REDIRECT_UNSET ? REDIRECT_ON : prev->redirect;
        if (c->redirects == PT_CONF_UNSET_PTR) {
            c->redirects = prev->redirects == PT_CONF_UNSET_PTR ? NULL : prev->redirects;
            c->redirect_default = prev->redirect_default;
        }
    }
    if (c->redirects == PT_CONF_UNSET_PTR)
        c->redirects = NULL;

    if (c->set_headers == PT_CONF_UNSET_PTR) {
        c->set_headers = prev->set_headers;
        if (c->set_headers == PT_CONF_UNSET_PTR)
            c->set_headers = NULL;
        c->headers = prev->headers;
    }
    if (c->headers == NULL && compile_headers(cf, c) != 0)
        return PT_CONF_ERROR;

    if (c->hide_headers == NULL)
        c->hide_headers = prev->hide_headers;
    if (c->pass_headers == NULL)
        c->pass_headers = prev->pass_headers;
    if (c->hide_headers == prev->hide_headers && c->pass_headers == prev->pass_headers
        && prev->hidden) {
        c->hidden = prev->hidden;
    } else {
        static const char *const def_hidden[] = {
            "Date", "Server", "X-Pad", "X-Accel-Expires", "X-Accel-Redirect",
            "X-Accel-Limit-Rate", "X-Accel-Buffering", "X-Accel-Charset", NULL
        };
        c->hidden = pt_array_create(cf->pool, 12, sizeof(pt_str_t));
        if (c->hidden == NULL)
            return PT_CONF_ERROR;
        for (int i = 0; def_hidden[i]; i++) {
            pt_str_t n = { strlen(def_hidden[i]), (char *) def_hidden[i] };
            int passed = 0;
            if (c->pass_headers) {
                pt_str_t *ph = c->pass_headers->elts;
                for (size_t k = 0; k < c->pass_headers->nelts; k++)
                    if (pt_str_caseeq(&ph[k], &n))
                        passed = 1;
            }
            if (!passed)
                *(pt_str_t *) pt_array_push(c->hidden) = n;
        }
        if (c->hide_headers) {
            pt_str_t *hh = c->hide_headers->elts;
            for (size_t k = 0; k < c->hide_headers->nelts; k++)
                *(pt_str_t *) pt_array_push(c->hidden) = hh[k];
        }
    }

    /* if { } and limit_except { } inherit the proxying of their location */
    if (clcf && clcf->noname && c->target == NULL && c->url_cv == NULL
        && (prev->target || prev->url_cv)) {
        c->target = prev->target;
        c->url_cv = prev->url_cv;
        c->location = prev->location;
        c->location_regex = prev->location_regex;
        c->url_ssl = prev->url_ssl;
        if (clcf->handler == NULL)
            clcf->handler = proxy_handler;
    }

    if (c->ssl_name == PT_CONF_UNSET_PTR)          /* a literal comes with ssl.name */
        c->ssl_name = prev->ssl_name == PT_CONF_UNSET_PTR ? NULL : prev->ssl_name;
    pt_tls_upstream_conf_merge(&c->ssl, &prev->ssl);
    if (c->url_ssl && c->ssl.verify && c->ssl.session_reuse
        && (c->ssl_name || (c->url_cv && c->ssl.name.len == 0))) {
        /* the name to verify changes per request, but the TLS code keeps
         * one session per location and a resumed session skips the name
         * check: no resumption here (keep-alive still saves handshakes) */
        c->ssl.session_reuse = 0;
    }
    if (c->url_ssl && pt_tls_upstream_conf_init(cf, &c->ssl) != 0)
        return PT_CONF_ERROR;
    return PT_CONF_OK;
}

/* ---- hook for health.c (issue 4: health_check in a location) -------------
 * Read-only view of a merged location's proxy_pass target for the health
 * probes; see health.h. Owner of this block: upstream engineer. */
int pt_http_proxy_probe_target(void **loc_conf, pt_http_proxy_probe_t *out)
{
    proxy_loc_conf_t *c = loc_conf[pt_http_proxy_module.index];
    if (c == NULL || c->target == NULL || c->target->group == NULL)
        return -1;
    memset(out, 0, sizeof(*out));
    out->group = c->target->group;
    out->host = c->target->host;
    out->sni = c->target->name;
    if (c->target->ssl)
        out->tls = c->ssl.ctx ? &c->ssl : NULL;
    if (c->ssl_name && c->ssl_name != PT_CONF_UNSET_PTR && c->ssl_name->is_literal)
        out->sni = c->ssl_name->source;
    if (c->set_headers && c->set_headers != PT_CONF_UNSET_PTR) {
        proxy_header_t *h = c->set_headers->elts;
        for (size_t i = 0; i < c->set_headers->nelts; i++)
            if (pt_str_caseeq_lit(&h[i].name, "Host") && h[i].value.is_literal)
                out->host = h[i].value.source;
    }
    return c->target->ssl && out->tls == NULL ? -1 : 0;
}

pt_module_t pt_http_proxy_module = {
    .name = "http_proxy",
    .commands = proxy_commands,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
    .preconfiguration = proxy_preconfiguration,
};
