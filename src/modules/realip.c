/* The realip module: set_real_ip_from, real_ip_header, real_ip_recursive.
 * When the peer is trusted, the client address (and port, when the header
 * carries one) becomes the one sent in the header: $remote_addr, access
 * rules and logs all see it. The connection's original address is restored
 * when the request ends (pool cleanup), so the next request on a keep-alive
 * connection starts from the real peer again, as nginx.
 *
 * With `real_ip_header proxy_protocol` the address (and port) is the client
 * of the connection's PROXY protocol header (src/http/proxy_protocol.c).
 *
 * Runs in POST_READ with the server's configuration and again in PREACCESS
 * with the location's, unless the address was already changed. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "../http/core.h"
#include "../http/proxy_protocol.h"
#include "../http/request.h"
#include "../http/variables.h"
#include "cidr.h"

extern pt_module_t pt_http_realip_module;

enum { RIP_XREALIP = 0, RIP_XFWD, RIP_HEADER, RIP_PROXY };

typedef struct {
    pt_array_t *from;       /* pt_cidr_t; UNSET_PTR inherit */
    int         type;       /* RIP_*; -1 unset */
    pt_str_t    header;     /* RIP_HEADER */
    int         recursive;
} realip_conf_t;

/* Per request: the connection's original address, kept for the cleanup and
 * $realip_remote_addr / $realip_remote_port. */
typedef struct {
    pt_conn_t    *c;
    pt_sockaddr_t sockaddr;
    socklen_t     socklen;
    pt_str_t      addr_text;
} realip_ctx_t;

static void restore_addr(void *data)
{
    realip_ctx_t *ctx = data;
    ctx->c->sockaddr = ctx->sockaddr;
    ctx->c->socklen = ctx->socklen;
    ctx->c->addr_text = ctx->addr_text;
}

/* Parses "addr", "addr:port", "[v6]", "[v6]:port". Returns 0 or -1. */
static int parse_addr_port(const char *p, size_t len, pt_sockaddr_t *sa, socklen_t *slen)
{
    char buf[INET6_ADDRSTRLEN + 16];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, p, len);
    buf[len] = '\0';

    char *host = buf, *port = NULL;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (close == NULL)
            return -1;
        *close = '\0';
        host = buf + 1;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return -1;
    }
    memset(sa, 0, sizeof(*sa));
    int pn = 0;
    if (inet_pton(AF_INET6, host, &sa->sin6.sin6_addr) == 1) {
        sa->sin6.sin6_family = AF_INET6;
        *slen = sizeof(struct sockaddr_in6);
    } else {
        if (port == NULL && host == buf) {
            char *colon = strrchr(buf, ':');
            if (colon) {
                *colon = '\0';
                port = colon + 1;
            }
        }
        if (inet_pton(AF_INET, host, &sa->sin.sin_addr) != 1)
            return -1;
        sa->sin.sin_family = AF_INET;
        *slen = sizeof(struct sockaddr_in);
    }
    if (port) {
        int64_t v = pt_atoi64(port, strlen(port));
        if (v < 1 || v > 65535)
            return -1;
        pn = (int) v;
    }
    if (sa->sa.sa_family == AF_INET)
        sa->sin.sin_port = htons((uint16_t) pn);
    else
        sa->sin6.sin6_port = htons((uint16_t) pn);
    return 0;
}

static int is_trusted(const pt_array_t *from, const struct sockaddr *sa)
{
    const pt_cidr_t *c = from->elts;
    for (size_t i = 0; i < from->nelts; i++)
        if (pt_cidr_match(&c[i], sa))
            return 1;
    return 0;
}

/* Walks the comma-separated addresses of value from the right: the last one,
 * or with recursion the last one that is not trusted (the leftmost when all
 * are). Returns 1 with *out set, 0 when nothing usable was found. */
static int pick_addr(const pt_str_t *value, const pt_array_t *from, int recursive,
                     pt_sockaddr_t *out, socklen_t *outlen)
{
    const char *start = value->data;
    const char *p = value->data + value->len;
    int found = 0;
    while (p > start) {
        while (p > start && (p[-1] == ' ' || p[-1] == ',' || p[-1] == '\t'))
            p--;
        if (p == start)
            break;
        const char *e = p;
        while (p > start && p[-1] != ' ' && p[-1] != ',' && p[-1] != '\t')
            p--;
        pt_sockaddr_t sa;
        socklen_t slen;
        if (parse_addr_port(p, (size_t) (e - p), &sa, &slen) != 0)
            return found;
        *out = sa;
        *outlen = slen;
        found = 1;
        if (!recursive || !is_trusted(from, &sa.sa))
            return 1;
    }
    return found;
}

static int set_addr(pt_http_request_t *r, pt_conn_t *c, const pt_sockaddr_t *sap, socklen_t slen);

static int realip_run(pt_http_request_t *r, realip_conf_t *conf)
{
    pt_conn_t *c = r->connection;
    if (conf == NULL || c == NULL || conf->from == NULL || conf->from == PT_CONF_UNSET_PTR)
        return PT_DECLINED;
    if (r->ctx && pt_http_get_module_ctx(r, pt_http_realip_module))
        return PT_DECLINED;
    if (!is_trusted(conf->from, &c->sockaddr.sa))
        return PT_DECLINED;

    pt_sockaddr_t sa;
    socklen_t slen;
    if (conf->type == RIP_PROXY) {
        /* the client of the PROXY header (listen ... proxy_protocol), port
         * included; nothing when the header carried no addresses */
        const pt_proxy_protocol_t *pp = c->proxy_protocol;
        if (pp == NULL || !pp->has_addr)
            return PT_DECLINED;
        sa = pp->src;
        slen = pp->srclen;
        return set_addr(r, c, &sa, slen);
    }

    const char *name;
    size_t nlen;
    switch (conf->type) {
    case RIP_XFWD:
        name = "X-Forwarded-For";
        nlen = 15;
        break;
    case RIP_HEADER:
        name = conf->header.data;
        nlen = conf->header.len;
        break;
    default:
        name = "X-Real-IP";
        nlen = 9;
        break;
    }

    /* every header of that name, last field last (RFC 9110 5.3) */
    pt_http_header_t *h = r->headers_in.list.elts;
    size_t total = 0, count = 0;
    for (size_t i = 0; i < r->headers_in.list.nelts; i++) {
        if (h[i].deleted || h[i].name.len != nlen || pt_strncasecmp(h[i].name.data, name, nlen) != 0)
            continue;
        total += h[i].value.len + 1;
        count++;
    }
    if (count == 0)
        return PT_DECLINED;
    char *buf = pt_pnalloc(r->pool, total);
    if (buf == NULL)
        return PT_ERROR;
    pt_str_t value = { 0, buf };
    for (size_t i = 0; i < r->headers_in.list.nelts; i++) {
        if (h[i].deleted || h[i].name.len != nlen || pt_strncasecmp(h[i].name.data, name, nlen) != 0)
            continue;
        if (value.len)
            buf[value.len++] = ',';
        memcpy(buf + value.len, h[i].value.data, h[i].value.len);
        value.len += h[i].value.len;
    }

    if (!pick_addr(&value, conf->from, conf->recursive, &sa, &slen))
        return PT_DECLINED;
    return set_addr(r, c, &sa, slen);
}

/* Makes sa the connection's address for the rest of the request (restored
 * by a pool cleanup). */
static int set_addr(pt_http_request_t *r, pt_conn_t *c, const pt_sockaddr_t *sap, socklen_t slen)
{
    pt_sockaddr_t sa = *sap;
    char text[INET6_ADDRSTRLEN + 8];
    size_t tlen = pt_sockaddr_text(&sa.sa, slen, text, sizeof(text), 0);
    char *copy = pt_pstrndup(r->pool, text, tlen);
    realip_ctx_t *ctx = pt_palloc(r->pool, sizeof(*ctx));
    if (copy == NULL || ctx == NULL)
        return PT_ERROR;
    ctx->c = c;
    ctx->sockaddr = c->sockaddr;
    ctx->socklen = c->socklen;
    ctx->addr_text = c->addr_text;
    if (pt_pool_cleanup_add(r->pool, restore_addr, ctx) != 0)
        return PT_ERROR;
    if (r->ctx)
        pt_http_set_ctx(r, ctx, pt_http_realip_module);

    c->sockaddr = sa;
    c->socklen = slen;
    c->addr_text.data = copy;
    c->addr_text.len = tlen;
    return PT_DECLINED;
}

static int realip_post_read(pt_http_request_t *r)
{
    /* before the location is known: the server's configuration */
    pt_http_core_srv_conf_t *cscf = r->srv_conf ? r->srv_conf[pt_http_core_module.index] : NULL;
    void **lc = cscf && cscf->ctx ? cscf->ctx->loc_conf : r->loc_conf;
    if (lc == NULL)
        return PT_DECLINED;
    return realip_run(r, lc[pt_http_realip_module.index]);
}

static int realip_preaccess(pt_http_request_t *r)
{
    if (r->loc_conf == NULL)
        return PT_DECLINED;
    return realip_run(r, pt_http_get_module_loc_conf(r, pt_http_realip_module));
}

static int get_realip_addr(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    realip_ctx_t *ctx = r->ctx ? pt_http_get_module_ctx(r, pt_http_realip_module) : NULL;
    pt_conn_t *c = r->connection;
    const pt_sockaddr_t *sa = ctx ? &ctx->sockaddr : c ? &c->sockaddr : NULL;
    if (sa == NULL) {
        v->not_found = 1;
        return PT_OK;
    }
    if (data == 0) {
        if (ctx) {
            v->value = ctx->addr_text;
            return PT_OK;
        }
        v->value = c->addr_text;
        if (v->value.data == NULL)
            pt_str_set(&v->value, "");
        return PT_OK;
    }
    int port = sa->sa.sa_family == AF_INET ? ntohs(sa->sin.sin_port)
             : sa->sa.sa_family == AF_INET6 ? ntohs(sa->sin6.sin6_port) : 0;
    if (port <= 0) {
        pt_str_set(&v->value, "");
        return PT_OK;
    }
    char *p = pt_pnalloc(r->pool, 8);
    if (p == NULL)
        return PT_ERROR;
    v->value.len = (size_t) snprintf(p, 8, "%d", port);
    v->value.data = p;
    return PT_OK;
}

/* ------------------------------------------------------------------------ */
/* Config time                                                               */

static const char *set_real_ip_from_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    realip_conf_t *rcf = conf;
    pt_str_t *value = cf->args->elts;
    if (rcf->from == PT_CONF_UNSET_PTR || rcf->from == NULL) {
        rcf->from = pt_array_create(cf->pool, 4, sizeof(pt_cidr_t));
        if (rcf->from == NULL)
            return "failed (out of memory)";
    }
    if (pt_str_eq_lit(&value[1], "unix:")) {
        pt_cidr_t *c = pt_array_push(rcf->from);
        if (c == NULL)
            return "failed (out of memory)";
        c->family = AF_UNIX;
        return PT_CONF_OK;
    }
    pt_cidr_t cidr;
    int rc = pt_cidr_parse(&value[1], &cidr);
    if (rc == 1)
        pt_conf_error(cf, PT_LOG_WARN, 0, "low address bits of %s are meaningless", value[1].data);
    if (rc >= 0) {
        pt_cidr_t *c = pt_array_push(rcf->from);
        if (c == NULL)
            return "failed (out of memory)";
        *c = cidr;
        return PT_CONF_OK;
    }
    /* a host name: every address it resolves to (at config time, as nginx) */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    if (memchr(value[1].data, '/', value[1].len) || getaddrinfo(value[1].data, NULL, &hints, &res) != 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", value[1].data);
        return PT_CONF_ERROR;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        pt_cidr_t *c = pt_array_push(rcf->from);
        if (c == NULL) {
            freeaddrinfo(res);
            return "failed (out of memory)";
        }
        memset(c, 0, sizeof(*c));
        if (ai->ai_family == AF_INET) {
            c->family = AF_INET;
            memcpy(c->addr, &((struct sockaddr_in *) ai->ai_addr)->sin_addr, 4);
            memset(c->mask, 0xff, 4);
        } else if (ai->ai_family == AF_INET6) {
            c->family = AF_INET6;
            memcpy(c->addr, &((struct sockaddr_in6 *) ai->ai_addr)->sin6_addr, 16);
            memset(c->mask, 0xff, 16);
        } else {
            rcf->from->nelts--;
        }
    }
    freeaddrinfo(res);
    return PT_CONF_OK;
}

static const char *real_ip_header_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    realip_conf_t *rcf = conf;
    pt_str_t *value = cf->args->elts;
    if (rcf->type != -1)
        return "is duplicate";
    if (pt_str_caseeq_lit(&value[1], "X-Real-IP")) {
        rcf->type = RIP_XREALIP;
    } else if (pt_str_caseeq_lit(&value[1], "X-Forwarded-For")) {
        rcf->type = RIP_XFWD;
    } else if (pt_str_eq_lit(&value[1], "proxy_protocol")) {
        rcf->type = RIP_PROXY;
    } else {
        rcf->type = RIP_HEADER;
        rcf->header = value[1];
    }
    return PT_CONF_OK;
}

static void *create_loc_conf(pt_conf_t *cf)
{
    realip_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf == NULL)
        return NULL;
    conf->from = PT_CONF_UNSET_PTR;
    conf->type = -1;
    conf->recursive = PT_CONF_UNSET;
    return conf;
}

static const char *merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    realip_conf_t *prev = parent, *conf = child;
    pt_conf_merge_ptr(conf->from, prev->from, NULL);
    pt_conf_merge(conf->recursive, prev->recursive, 0);
    if (conf->type == -1) {
        conf->type = prev->type == -1 ? RIP_XREALIP : prev->type;
        conf->header = prev->header;
    }
    return PT_CONF_OK;
}

static int realip_preconf(pt_conf_t *cf)
{
    pt_str_t addr = pt_string("realip_remote_addr"), port = pt_string("realip_remote_port");
    pt_http_var_t *v = pt_http_var_add(cf, &addr, 0);
    if (v == NULL)
        return -1;
    v->get = get_realip_addr;
    v->data = 0;
    v = pt_http_var_add(cf, &port, 0);
    if (v == NULL)
        return -1;
    v->get = get_realip_addr;
    v->data = 1;
    return 0;
}

static int realip_init(pt_conf_t *cf)
{
    if (pt_http_phase_add(cf, PT_HTTP_POST_READ_PHASE, realip_post_read) != 0)
        return -1;
    return pt_http_phase_add(cf, PT_HTTP_PREACCESS_PHASE, realip_preaccess);
}

static const pt_command_t realip_commands[] = {
    { "set_real_ip_from", PT_CTX_HTTP_ANY, 0, 1, 1, set_real_ip_from_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "real_ip_header", PT_CTX_HTTP_ANY, 0, 1, 1, real_ip_header_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "real_ip_recursive", PT_CTX_HTTP_ANY, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      offsetof(realip_conf_t, recursive), NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_realip_module = {
    .name = "http_realip",
    .commands = realip_commands,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
    .preconfiguration = realip_preconf,
    .postconfiguration = realip_init,
};
