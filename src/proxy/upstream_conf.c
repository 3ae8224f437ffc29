/* The upstream module: upstream NAME { server ...; keepalive N; ... } and the
 * implicit groups proxy_pass makes for "http://host:port". Host names are
 * resolved once at config time with getaddrinfo; every address becomes a
 * peer (as nginx). The peers and the balancer of each group are set up at the
 * end of the http { } block. */
#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>
#include <sys/un.h>

#include "balancer.h"
#include "../http/core.h"

#define UPSTREAM_DEFAULT_KEEPALIVE_REQUESTS 1000
#define UPSTREAM_DEFAULT_KEEPALIVE_TIME     3600000
#define UPSTREAM_DEFAULT_KEEPALIVE_TIMEOUT  60000

static pt_upstream_main_conf_t *umcf_of(pt_conf_t *cf)
{
    if (cf->http_ctx == NULL || cf->http_ctx->main_conf == NULL)
        return NULL;
    return cf->http_ctx->main_conf[pt_http_upstream_module.index];
}

static pt_upstream_group_t *group_new(pt_conf_t *cf, const pt_str_t *name)
{
    pt_upstream_main_conf_t *umcf = umcf_of(cf);
    if (umcf == NULL)
        return NULL;
    pt_upstream_group_t *g = pt_pcalloc(cf->pool, sizeof(*g));
    pt_upstream_group_t **slot = pt_array_push(&umcf->groups);
    if (g == NULL || slot == NULL)
        return NULL;
    if (pt_pstrdup(cf->pool, &g->name, name) != 0)
        return NULL;
    if (pt_array_init(&g->servers, cf->pool, 2, sizeof(pt_upstream_server_t)) != 0)
        return NULL;
    g->file = cf->file;
    g->line = cf->line;
    g->balancer = &pt_upstream_balancer_rr;
    g->keepalive_requests = PT_CONF_UNSET;
    g->keepalive_time = PT_CONF_UNSET_MSEC;
    g->keepalive_timeout = PT_CONF_UNSET_MSEC;
    *slot = g;
    return g;
}

/* Resolves "host[:port]", "[v6]:port" or "unix:/path" into addresses
 * (balancer.h). Returns the number of addresses written to out (<= max), or
 * -1 with *err. */
int pt__upstream_resolve_addr(const pt_str_t *addr, in_port_t default_port,
                              pt_sockaddr_t *out, socklen_t *outlen, int max, const char **err)
{
    if (addr->len >= 5 && memcmp(addr->data, "unix:", 5) == 0) {
        size_t plen = addr->len - 5;
        if (plen == 0) {
            *err = "no path in the unix domain socket";
            return -1;
        }
        if (plen >= sizeof(out[0].sun.sun_path)) {
            *err = "too long path in the unix domain socket";
            return -1;
        }
        memset(&out[0], 0, sizeof(out[0]));
        out[0].sun.sun_family = AF_UNIX;
        memcpy(out[0].sun.sun_path, addr->data + 5, plen);
        outlen[0] = (socklen_t) sizeof(struct sockaddr_un);
        return 1;
    }

    char host[256];
    const char *p = addr->data, *end = addr->data + addr->len;
    const char *hs, *he, *port = NULL;
    if (p < end && *p == '[') {
        hs = p + 1;
        he = memchr(p, ']', addr->len);
        if (he == NULL) {
            *err = "invalid host";
            return -1;
        }
        if (he + 1 < end) {
            if (he[1] != ':') {
                *err = "invalid host";
                return -1;
            }
            port = he + 2;
        }
    } else {
        hs = p;
        he = memchr(p, ':', addr->len);
        if (he) {
            port = he + 1;
        } else {
            he = end;
        }
    }
    long portn = default_port;
    if (port) {
        int64_t v = pt_atoi64(port, (size_t) (end - port));
        if (v < 1 || v > 65535) {
            *err = "invalid port";
            return -1;
        }
        portn = (long) v;
    }
    size_t hlen = (size_t) (he - hs);
    if (hlen == 0 || hlen >= sizeof(host)) {
        *err = "no host";
        return -1;
    }
    memcpy(host, hs, hlen);
    host[hlen] = '\0';

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL) {
        *err = "host not found";
        return -1;
    }
    int n = 0;
    for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        /* skip duplicates (getaddrinfo may list an address per protocol) */
        int dup = 0;
        for (int i = 0; i < n; i++)
            if (outlen[i] == ai->ai_addrlen && memcmp(&out[i], ai->ai_addr, ai->ai_addrlen) == 0)
                dup = 1;
        if (dup)
            continue;
        memset(&out[n], 0, sizeof(out[n]));
        memcpy(&out[n], ai->ai_addr, ai->ai_addrlen);
        outlen[n] = (socklen_t) ai->ai_addrlen;
        if (ai->ai_family == AF_INET)
            out[n].sin.sin_port = htons((in_port_t) portn);
        else
            out[n].sin6.sin6_port = htons((in_port_t) portn);
        n++;
    }
    freeaddrinfo(res);
    if (n == 0) {
        *err = "host not found";
        return -1;
    }
    return n;
}

#define MAX_ADDRS 32

/* Builds the peer sets of g from its server lines. */
static int build_peers(pt_conf_t *cf, pt_upstream_group_t *g)
{
    pt_upstream_server_t *s = g->servers.elts;
    pt_sockaddr_t addrs[MAX_ADDRS];
    socklen_t lens[MAX_ADDRS];
    pt_upstream_peer_t *tmp[2] = { NULL, NULL };
    unsigned counts[2] = { 0, 0 };
    size_t cap = g->servers.nelts * MAX_ADDRS;

    for (int b = 0; b < 2; b++) {
        tmp[b] = pt_pcalloc(cf->pool, cap * sizeof(pt_upstream_peer_t));
        if (tmp[b] == NULL)
            return -1;
    }

    for (size_t i = 0; i < g->servers.nelts; i++) {
        const char *err = NULL;
        int n = pt__upstream_resolve_addr(&s[i].addr, g->port ? g->port : 80, addrs, lens, MAX_ADDRS, &err);
        if (n < 0 && s[i].resolve) {
            /* issue 4: resolver.c fills it in at runtime */
            continue;
        }
        if (n < 0) {
            if (g->implicit)
                pt_log_error(PT_LOG_EMERG, cf->log, 0, "%s in upstream \"%.*s\" in %s:%u", err,
                             (int) s[i].addr.len, s[i].addr.data, g->file ? g->file : "-", g->line);
            else
                pt_log_error(PT_LOG_EMERG, cf->log, 0, "%s in upstream \"%.*s\" in %s:%u", err,
                             (int) s[i].addr.len, s[i].addr.data, g->file ? g->file : "-", g->line);
            return -1;
        }
        int set = s[i].backup ? 1 : 0;
        for (int k = 0; k < n; k++) {
            pt_upstream_peer_t *p = &tmp[set][counts[set]++];
            p->sockaddr = addrs[k];
            p->socklen = lens[k];
            char text[160];
            size_t tl = pt_sockaddr_text(&addrs[k].sa, lens[k], text, sizeof(text), 1);
            p->name.data = pt_pstrndup(cf->pool, text, tl);
            if (p->name.data == NULL)
                return -1;
            p->name.len = tl;
            p->server = s[i].addr;
            p->weight = s[i].weight;
            p->max_fails = s[i].max_fails;
            p->fail_timeout = s[i].fail_timeout;
            p->max_conns = s[i].max_conns;
            p->down = s[i].down;
            p->slow_start = s[i].slow_start;
            p->resolved = s[i].resolve;
            if (addrs[k].sa.sa_family == AF_UNIX)
                g->unix_socket = 1;
        }
    }

    int any_resolve = 0;
    for (size_t i = 0; i < g->servers.nelts; i++)
        any_resolve |= s[i].resolve && !s[i].backup;
    if (counts[0] == 0 && any_resolve) {
        /* every primary server is a name resolved at runtime: start empty */
        pt_upstream_peers_t *p0 = pt_pcalloc(cf->pool, sizeof(pt_upstream_peers_t));
        if (p0 == NULL)
            return -1;
        p0->peer = tmp[0];
        p0->number = 0;
        if (counts[1]) {
            p0->next = pt_pcalloc(cf->pool, sizeof(pt_upstream_peers_t));
            if (p0->next == NULL)
                return -1;
            p0->next->peer = tmp[1];
            p0->next->number = counts[1];
        }
        g->peers = p0;
        return 0;
    }
    if (counts[0] == 0) {
        pt_log_error(PT_LOG_EMERG, cf->log, 0, "no servers in upstream \"%.*s\" in %s:%u",
                     (int) g->name.len, g->name.data, g->file ? g->file : "-", g->line);
        return -1;
    }
    pt_upstream_peers_t *ps[2] = { NULL, NULL };
    for (int b = 0; b < 2; b++) {
        if (counts[b] == 0)
            continue;
        ps[b] = pt_pcalloc(cf->pool, sizeof(pt_upstream_peers_t));
        if (ps[b] == NULL)
            return -1;
        ps[b]->peer = tmp[b];
        ps[b]->number = counts[b];
    }
    ps[0]->next = ps[1];
    ps[0]->single = counts[0] == 1 && counts[1] == 0;
    g->peers = ps[0];
    return 0;
}

pt_upstream_group_t *pt_upstream_group_add(pt_conf_t *cf, const pt_str_t *host,
                                           in_port_t default_port, int has_port)
{
    pt_upstream_main_conf_t *umcf = umcf_of(cf);
    if (umcf == NULL)
        return NULL;
    int is_unix = host->len >= 5 && memcmp(host->data, "unix:", 5) == 0;

    pt_upstream_group_t **gs = umcf->groups.elts;
    for (size_t i = 0; i < umcf->groups.nelts; i++) {
        pt_upstream_group_t *g = gs[i];
        if (!pt_str_caseeq(&g->name, host))
            continue;
        if (g->defined || (g->implicit && g->port == default_port))
            return g;
    }

    pt_upstream_group_t *g = group_new(cf, host);
    if (g == NULL)
        return NULL;
    g->implicit = 1;
    g->port = default_port;
    pt_upstream_server_t *s = pt_array_push(&g->servers);
    if (s == NULL)
        return NULL;
    s->addr = g->name;
    s->weight = 1;
    s->max_fails = 1;
    s->fail_timeout = 10000;

    if (has_port || is_unix) {
        /* cannot be an upstream { } name: resolve now, as nginx */
        if (build_peers(cf, g) != 0)
            return NULL;
        if (g->balancer->init_group(cf, g) != 0)
            return NULL;
    }
    return g;
}

pt_upstream_group_t *pt_upstream_group_literal(pt_pool_t *pool, const pt_str_t *host,
                                               in_port_t default_port)
{
    pt_sockaddr_t sa;
    socklen_t len;
    memset(&sa, 0, sizeof(sa));
    if (host->len >= 5 && memcmp(host->data, "unix:", 5) == 0) {
        size_t plen = host->len - 5;
        if (plen == 0 || plen >= sizeof(sa.sun.sun_path))
            return NULL;
        sa.sun.sun_family = AF_UNIX;
        memcpy(sa.sun.sun_path, host->data + 5, plen);
        len = sizeof(struct sockaddr_un);
    } else {
        char buf[64];
        const char *p = host->data, *end = host->data + host->len, *port = NULL;
        size_t hl;
        if (p < end && *p == '[') {
            const char *rb = memchr(p, ']', host->len);
            if (rb == NULL)
                return NULL;
            hl = (size_t) (rb - p - 1);
            if (hl >= sizeof(buf))
                return NULL;
            memcpy(buf, p + 1, hl);
            if (rb + 1 < end && rb[1] == ':')
                port = rb + 2;
        } else {
            const char *colon = memchr(p, ':', host->len);
            hl = (size_t) ((colon ? colon : end) - p);
            if (hl >= sizeof(buf))
                return NULL;
            memcpy(buf, p, hl);
            if (colon)
                port = colon + 1;
        }
        buf[hl] = '\0';
        int64_t pn = default_port;
        if (port) {
            pn = pt_atoi64(port, (size_t) (end - port));
            if (pn < 1 || pn > 65535)
                return NULL;
        }
        if (inet_pton(AF_INET, buf, &sa.sin.sin_addr) == 1) {
            sa.sin.sin_family = AF_INET;
            sa.sin.sin_port = htons((in_port_t) pn);
            len = sizeof(struct sockaddr_in);
        } else if (inet_pton(AF_INET6, buf, &sa.sin6.sin6_addr) == 1) {
            sa.sin6.sin6_family = AF_INET6;
            sa.sin6.sin6_port = htons((in_port_t) pn);
            len = sizeof(struct sockaddr_in6);
        } else {
            return NULL;
        }
    }
    pt_upstream_group_t *g = pt_pcalloc(pool, sizeof(*g));
    pt_upstream_peers_t *ps = pt_pcalloc(pool, sizeof(*ps));
    pt_upstream_peer_t *peer = pt_pcalloc(pool, sizeof(*peer));
    char *text = pt_pnalloc(pool, 160);
    if (g == NULL || ps == NULL || peer == NULL || text == NULL)
        return NULL;
    peer->sockaddr = sa;
    peer->socklen = len;
    peer->name.data = text;
    peer->name.len = pt_sockaddr_text(&sa.sa, len, text, 160, 1);
    peer->server = *host;
    peer->weight = 1;
    peer->effective_weight = 1;
    peer->max_fails = 1;
    peer->fail_timeout = 10000;
    ps->peer = peer;
    ps->number = 1;
    ps->single = 1;
    ps->total_weight = 1;
    g->name = *host;
    g->peers = ps;
    g->implicit = 1;
    g->balancer = &pt_upstream_balancer_rr;
    g->keepalive_requests = 1000;
    g->keepalive_time = 3600000;
    g->keepalive_timeout = 60000;
    return g;
}

/* ------------------------------------------------------------------------ */
/* Directives */

static const char *upstream_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t name = ((pt_str_t *) cf->args->elts)[1];
    pt_upstream_main_conf_t *umcf = conf;
    (void) cmd;

    pt_upstream_group_t **gs = umcf->groups.elts;
    pt_upstream_group_t *g = NULL;
    for (size_t i = 0; i < umcf->groups.nelts; i++) {
        if (!pt_str_caseeq(&gs[i]->name, &name))
            continue;
        if (gs[i]->defined) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "duplicate upstream \"%.*s\"",
                          (int) name.len, name.data);
            return PT_CONF_ERROR;
        }
        if (gs[i]->implicit && gs[i]->peers == NULL)
            g = gs[i];       /* referred to by proxy_pass before: take it over */
    }
    if (g == NULL) {
        g = group_new(cf, &name);
        if (g == NULL)
            return "failed (out of memory)";
    }
    g->implicit = 0;
    g->defined = 1;
    g->port = 0;
    g->file = cf->file;
    g->line = cf->line;

    unsigned save_ctx = cf->ctx;
    void *save_data = cf->block_data;
    cf->ctx = PT_CTX_UPS;
    cf->block_data = g;
    const char *rv = pt_conf_parse_block(cf);
    cf->ctx = save_ctx;
    cf->block_data = save_data;
    if (rv != PT_CONF_OK)
        return rv;

    if (g->servers.nelts == 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "no servers are inside upstream");
        return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

static int param(const pt_str_t *v, const char *name, pt_str_t *out)
{
    size_t n = strlen(name);
    if (v->len > n && memcmp(v->data, name, n) == 0) {
        out->data = v->data + n;
        out->len = v->len - n;
        return 1;
    }
    return 0;
}

static const char *server_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_upstream_group_t *g = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;

    pt_upstream_server_t *s = pt_array_push(&g->servers);
    size_t bad = 1;
    if (s == NULL)
        return "failed (out of memory)";
    memset(s, 0, sizeof(*s));
    s->addr = value[1];
    s->weight = 1;
    s->max_fails = 1;
    s->fail_timeout = 10000;

    for (size_t i = 2; i < cf->args->nelts; i++) {
        pt_str_t v;
        bad = i;
        if (param(&value[i], "weight=", &v)) {
            int64_t n = pt_atoi64(v.data, v.len);
            if (n <= 0 || n > 1000000)
                goto invalid;
            s->weight = (int) n;
        } else if (param(&value[i], "max_fails=", &v)) {
            int64_t n = pt_atoi64(v.data, v.len);
            if (n < 0)
                goto invalid;
            s->max_fails = (unsigned) n;
        } else if (param(&value[i], "max_conns=", &v)) {
            int64_t n = pt_atoi64(v.data, v.len);
            if (n < 0)
                goto invalid;
            s->max_conns = (unsigned) n;
        } else if (param(&value[i], "fail_timeout=", &v)) {
            int64_t ms = pt_conf_parse_msec(&v);
            if (ms < 0)
                goto invalid;
            s->fail_timeout = ms;
        } else if (pt_str_eq_lit(&value[i], "backup")) {
            s->backup = 1;
        } else if (pt_str_eq_lit(&value[i], "down")) {
            s->down = 1;
        } else if (pt_str_eq_lit(&value[i], "resolve")) {
            s->resolve = 1;          /* issue 4: resolver.c */
        } else if (param(&value[i], "slow_start=", &v)) {
            int64_t ms = pt_conf_parse_msec(&v);
            if (ms < 0)
                goto invalid;
            s->slow_start = ms;
        } else if (param(&value[i], "service=", &v)
                   || param(&value[i], "route=", &v)) {
            /* accepted: re-resolution and slow start come with the upstream issue */
        } else {
            goto invalid;
        }
    }
    if (s->addr.len >= 5 && memcmp(s->addr.data, "unix:", 5) != 0 && s->addr.len == 0)
        goto invalid;
    return PT_CONF_OK;

invalid:
    pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", value[bad].data);
    return PT_CONF_ERROR;
}

static const char *keepalive_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_upstream_group_t *g = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    if (g->keepalive)
        return "is duplicate";
    int64_t n = pt_atoi64(value[1].data, value[1].len);
    if (n <= 0 || n > 1000000) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\" in \"%s\" directive",
                      value[1].data, value[0].data);
        return PT_CONF_ERROR;
    }
    g->keepalive = (unsigned) n;
    return PT_CONF_OK;
}

static const char *ups_num_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_upstream_group_t *g = conf;
    pt_str_t *value = cf->args->elts;
    int64_t *field = (int64_t *) ((char *) g + cmd->offset);
    if (*field != PT_CONF_UNSET)
        return "is duplicate";
    int64_t v = cmd->post ? pt_conf_parse_msec(&value[1]) : pt_atoi64(value[1].data, value[1].len);
    if (v < 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\" in \"%s\" directive",
                      value[1].data, value[0].data);
        return PT_CONF_ERROR;
    }
    *field = v;
    return PT_CONF_OK;
}

static const int is_msec = 1;

static const pt_command_t upstream_commands[] = {
    { "upstream", PT_CTX_HTTP, PT_CONF_BLOCK, 1, 1, upstream_block, PT_CONF_HTTP_MAIN, 0, NULL },
    { "server", PT_CTX_UPS, 0, 1, PT_ARGS_ANY, server_cmd, PT_CONF_BLOCK_DATA, 0, NULL },
    { "keepalive", PT_CTX_UPS, 0, 1, 1, keepalive_cmd, PT_CONF_BLOCK_DATA, 0, NULL },
    { "keepalive_requests", PT_CTX_UPS, 0, 1, 1, ups_num_cmd, PT_CONF_BLOCK_DATA,
      offsetof(pt_upstream_group_t, keepalive_requests), NULL },
    { "keepalive_time", PT_CTX_UPS, 0, 1, 1, ups_num_cmd, PT_CONF_BLOCK_DATA,
      offsetof(pt_upstream_group_t, keepalive_time), &is_msec },
    { "keepalive_timeout", PT_CTX_UPS, 0, 1, 1, ups_num_cmd, PT_CONF_BLOCK_DATA,
      offsetof(pt_upstream_group_t, keepalive_timeout), &is_msec },
    /* issue 4: resolver.c keeps them for the group's `resolve` servers */
    { "resolver", PT_CTX_UPS, 0, 1, PT_ARGS_ANY, pt__upstream_resolver_cmd, PT_CONF_BLOCK_DATA,
      0, NULL },
    { "resolver_timeout", PT_CTX_UPS, 0, 1, 1, pt__upstream_resolver_timeout_cmd,
      PT_CONF_BLOCK_DATA, 0, NULL },
    PT_COMMAND_END
};

static void *create_main_conf(pt_conf_t *cf)
{
    pt_upstream_main_conf_t *umcf = pt_pcalloc(cf->pool, sizeof(*umcf));
    if (umcf == NULL || pt_array_init(&umcf->groups, cf->pool, 4, sizeof(pt_upstream_group_t *)) != 0)
        return NULL;
    return umcf;
}

/* End of http { }: groups named by proxy_pass without a port and without an
 * upstream block are host names; every group gets its peers and balancer. */
static const char *init_main_conf(pt_conf_t *cf, void *conf)
{
    pt_upstream_main_conf_t *umcf = conf;
    pt_upstream_group_t **gs = umcf->groups.elts;
    for (size_t i = 0; i < umcf->groups.nelts; i++) {
        pt_upstream_group_t *g = gs[i];
        pt_conf_init(g->keepalive_requests, UPSTREAM_DEFAULT_KEEPALIVE_REQUESTS);
        pt_conf_init(g->keepalive_time, UPSTREAM_DEFAULT_KEEPALIVE_TIME);
        pt_conf_init(g->keepalive_timeout, UPSTREAM_DEFAULT_KEEPALIVE_TIMEOUT);
        if (g->peers)
            continue;
        if (build_peers(cf, g) != 0)
            return PT_CONF_ERROR;
        if (g->balancer->init_group(cf, g) != 0)
            return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

static void exit_worker(pt_cycle_t *cycle)
{
    (void) cycle;
    pt_upstream_keepalive_close_all();
}

pt_module_t pt_http_upstream_module = {
    .name = "http_upstream",
    .commands = upstream_commands,
    .create_main_conf = create_main_conf,
    .init_main_conf = init_main_conf,
    .exit_worker = exit_worker,
};
