/* Module "http_upstream_resolve": `server NAME resolve` re-resolves NAME at
 * runtime (what nginx keeps for its paid edition) with our own small
 * nonblocking DNS client on the event loop: UDP, A and (ipv6=on) AAAA
 * queries, no external library.
 *
 *   resolver 127.0.0.53 [::1]:5353 [valid=30s] [ipv6=on|off];
 *   resolver_timeout 5s;
 *   (at http level, or in the upstream block where they override it)
 *   upstream app { zone app 256k; server app.internal:8080 resolve; }
 *
 * The group needs a zone: the peers a name resolves to are added to and
 * removed from the shared peer sets, so every worker sees the change at once,
 * without a reload. Requests in flight on a removed peer finish (the slot
 * stays as a tombstone). Exactly one worker resolves a group at a time (a pid
 * lease in the zone, as for health checks). A name is queried again when its
 * shortest TTL runs out, or after valid= when set. A failed resolution
 * (timeout, error, empty answer) keeps the last known addresses, logs it at
 * error level and retries within a second.
 *
 * At config time a `resolve` name that the system resolver does not know is
 * no error: the group starts empty for it and fills in at runtime. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "balancer.h"
#include "../config/cycle.h"
#include "../core/loop.h"
#include "../core/time.h"
#include "../http/core.h"
#include "../net/conn.h"

#define RS_TICK       200
#define RS_RETRY      1000
#define RS_MAX_ADDRS  32
#define RS_MAX_SERVERS 8

extern pt_module_t pt_http_core_module;
pt_module_t pt_http_upstream_resolve_module;

/* One `server NAME resolve` line. */
typedef struct {
    pt_upstream_server_t *server;
    char                  host[256];
    in_port_t             port;
    int64_t               next;          /* when to query */
    int64_t               sent;          /* 0: no query in flight */
    uint16_t              id_a, id_aaaa;
    unsigned              want;          /* answers still expected */
    unsigned              failed;        /* an answer was an error */
    uint32_t              ttl;
    pt_sockaddr_t         addrs[RS_MAX_ADDRS];
    socklen_t             lens[RS_MAX_ADDRS];
    unsigned              naddrs;
    unsigned              resolved_once:1;
} rs_name_t;

struct pt_upstream_resolve_s {
    pt_upstream_group_t *group;
    rs_name_t           *names;
    unsigned             nnames;
    pt_sockaddr_t        servers[RS_MAX_SERVERS];
    socklen_t            server_lens[RS_MAX_SERVERS];
    unsigned             nservers;
    unsigned             next_server;
    int64_t              valid;          /* ms, 0: TTL */
    int64_t              timeout;
    unsigned             ipv6:1;
    /* per worker */
    pt_cycle_t          *cycle;
    pt_io_t              io;
    pt_event_t           timer;
    unsigned             owner:1;
};

typedef struct {
    pt_array_t groups;    /* pt_upstream_resolve_t * */
} rs_main_conf_t;

/* ------------------------------------------------------------------------ */
/* DNS messages */

/* Writes a query for host/qtype; returns its length or -1. */
size_t pt__dns_query(uint8_t *buf, size_t cap, uint16_t id, const char *host, uint16_t qtype)
{
    size_t n = 0, hl = strlen(host);
    if (cap < 12 + hl + 2 + 4 || hl > 253)
        return 0;
    buf[n++] = (uint8_t) (id >> 8);
    buf[n++] = (uint8_t) id;
    buf[n++] = 0x01;               /* RD */
    buf[n++] = 0x00;
    buf[n++] = 0; buf[n++] = 1;    /* QDCOUNT */
    buf[n++] = 0; buf[n++] = 0;
    buf[n++] = 0; buf[n++] = 0;
    buf[n++] = 0; buf[n++] = 0;
    const char *p = host, *end = host + hl;
    if (hl && end[-1] == '.')
        end--;
    while (p < end) {
        const char *dot = memchr(p, '.', (size_t) (end - p));
        size_t l = (size_t) ((dot ? dot : end) - p);
        if (l == 0 || l > 63)
            return 0;
        buf[n++] = (uint8_t) l;
        memcpy(buf + n, p, l);
        n += l;
        p += l + (dot ? 1 : 0);
    }
    buf[n++] = 0;
    buf[n++] = (uint8_t) (qtype >> 8);
    buf[n++] = (uint8_t) qtype;
    buf[n++] = 0;
    buf[n++] = 1;                  /* IN */
    return n;
}

/* Skips a (possibly compressed) name at *off. Returns 0 or -1. */
static int skip_name(const uint8_t *m, size_t len, size_t *off)
{
    size_t o = *off;
    for (int guard = 0; guard < 128; guard++) {
        if (o >= len)
            return -1;
        uint8_t l = m[o];
        if ((l & 0xc0) == 0xc0) {
            if (o + 2 > len)
                return -1;
            *off = o + 2;
            return 0;
        }
        if (l & 0xc0)
            return -1;
        if (l == 0) {
            *off = o + 1;
            return 0;
        }
        o += 1 + (size_t) l;
    }
    return -1;
}

/* Parses a response: id, rcode, and the A/AAAA records of the answer
 * section (port set to `port`). Returns the number of addresses, or -1 for a
 * malformed message; *rcode and *ttl (minimum) are set. */
int pt__dns_parse(const uint8_t *m, size_t len, uint16_t *id, int *rcode, uint32_t *ttl,
                  in_port_t port, pt_sockaddr_t *out, socklen_t *outlen, unsigned max)
{
    if (len < 12)
        return -1;
    *id = (uint16_t) (m[0] << 8 | m[1]);
    if (!(m[2] & 0x80))
        return -1;                      /* not a response */
    *rcode = m[3] & 0x0f;
    unsigned qd = (unsigned) (m[4] << 8 | m[5]);
    unsigned an = (unsigned) (m[6] << 8 | m[7]);
    size_t off = 12;
    for (unsigned i = 0; i < qd; i++) {
        if (skip_name(m, len, &off) != 0 || off + 4 > len)
            return -1;
        off += 4;
    }
    unsigned n = 0;
    *ttl = UINT32_MAX;
    for (unsigned i = 0; i < an; i++) {
        if (skip_name(m, len, &off) != 0 || off + 10 > len)
            return -1;
        uint16_t type = (uint16_t) (m[off] << 8 | m[off + 1]);
        uint16_t cls = (uint16_t) (m[off + 2] << 8 | m[off + 3]);
        uint32_t t = (uint32_t) m[off + 4] << 24 | (uint32_t) m[off + 5] << 16
                     | (uint32_t) m[off + 6] << 8 | m[off + 7];
        uint16_t rdlen = (uint16_t) (m[off + 8] << 8 | m[off + 9]);
        off += 10;
        if (off + rdlen > len)
            return -1;
        if (cls == 1 && n < max && ((type == 1 && rdlen == 4) || (type == 28 && rdlen == 16))) {
            memset(&out[n], 0, sizeof(out[n]));
            if (type == 1) {
                out[n].sin.sin_family = AF_INET;
                out[n].sin.sin_port = htons(port);
                memcpy(&out[n].sin.sin_addr, m + off, 4);
                outlen[n] = sizeof(struct sockaddr_in);
            } else {
                out[n].sin6.sin6_family = AF_INET6;
                out[n].sin6.sin6_port = htons(port);
                memcpy(&out[n].sin6.sin6_addr, m + off, 16);
                outlen[n] = sizeof(struct sockaddr_in6);
            }
            /* duplicates are dropped */
            int dup = 0;
            for (unsigned k = 0; k < n; k++)
                if (outlen[k] == outlen[n] && memcmp(&out[k], &out[n], outlen[n]) == 0)
                    dup = 1;
            if (!dup) {
                n++;
                if (t < *ttl)
                    *ttl = t;
            }
        }
        off += rdlen;
    }
    if (*ttl == UINT32_MAX)
        *ttl = 0;
    return (int) n;
}

/* ------------------------------------------------------------------------ */
/* Applying an answer to the group (owner worker) */

static int same_addr(const pt_upstream_peer_t *p, const pt_sockaddr_t *sa, socklen_t len)
{
    return p->socklen == len && memcmp(&p->sockaddr, sa, len) == 0;
}

static void apply(pt_upstream_resolve_t *rs, rs_name_t *nm)
{
    pt_upstream_group_t *g = rs->group;
    pt_upstream_server_t *s = nm->server;
    pt_log_t *log = rs->cycle->log;
    char text[160];
    unsigned added = 0, removed = 0, full = 0;

    pt__upstream_lock(g);
    pt_upstream_peers_t *ps = s->backup ? g->peers->next : g->peers;
    if (ps == NULL) {
        pt__upstream_unlock(g);
        return;
    }
    for (unsigned i = 0; i < ps->number; i++) {
        pt_upstream_peer_t *p = &ps->peer[i];
        if (p->removed || !pt_str_eq(&p->server, &s->addr))
            continue;
        int keep = 0;
        for (unsigned k = 0; k < nm->naddrs; k++)
            if (same_addr(p, &nm->addrs[k], nm->lens[k]))
                keep = 1;
        if (!keep) {
            pt__upstream_peer_remove(g, p);
            removed++;
            pt_log_error(PT_LOG_NOTICE, log, 0, "upstream \"%.*s\": %.*s removed (%s no longer resolves to it)",
                         (int) g->name.len, g->name.data, (int) p->name.len, p->name.data, nm->host);
        }
    }
    for (unsigned k = 0; k < nm->naddrs; k++) {
        int have = 0;
        for (unsigned i = 0; i < ps->number; i++) {
            pt_upstream_peer_t *p = &ps->peer[i];
            if (!p->removed && pt_str_eq(&p->server, &s->addr) && same_addr(p, &nm->addrs[k], nm->lens[k]))
                have = 1;
        }
        if (have)
            continue;
        pt_upstream_peer_t *p = pt__upstream_peer_add(g, s->backup, &nm->addrs[k], nm->lens[k], &s->addr);
        if (p == NULL) {
            full++;
            continue;
        }
        p->weight = s->weight;
        p->effective_weight = s->weight;
        p->max_fails = s->max_fails;
        p->fail_timeout = s->fail_timeout;
        p->max_conns = s->max_conns;
        p->slow_start = s->slow_start;
        p->down = s->down;
        p->resolved = 1;
        added++;
        pt_sockaddr_text(&nm->addrs[k].sa, nm->lens[k], text, sizeof(text), 1);
        pt_log_error(PT_LOG_NOTICE, log, 0, "upstream \"%.*s\": %s added (%s)",
                     (int) g->name.len, g->name.data, text, nm->host);
    }
    if (added || removed)
        pt__upstream_zone_changed(g);
    pt__upstream_unlock(g);
    if (full)
        pt_log_error(PT_LOG_ERR, log, 0, "upstream \"%.*s\": no room in zone for %u address(es) of %s",
                     (int) g->name.len, g->name.data, full, nm->host);
}

/* ------------------------------------------------------------------------ */
/* Queries */

static uint16_t new_id(void)
{
    uint16_t id = (uint16_t) (pt__lb_random() & 0xffff);
    return id ? id : 1;
}

static void send_queries(pt_upstream_resolve_t *rs, rs_name_t *nm)
{
    uint8_t buf[512];
    const pt_sockaddr_t *to = &rs->servers[rs->next_server % rs->nservers];
    socklen_t tolen = rs->server_lens[rs->next_server % rs->nservers];
    nm->want = 0;
    nm->failed = 0;
    nm->naddrs = 0;
    nm->ttl = UINT32_MAX;
    nm->sent = pt_current_msec;
    nm->id_aaaa = 0;
    nm->id_a = new_id();
    size_t n = pt__dns_query(buf, sizeof(buf), nm->id_a, nm->host, 1);
    if (n && sendto(rs->io.fd, buf, n, 0, &to->sa, tolen) == (ssize_t) n)
        nm->want++;
    if (rs->ipv6) {
        nm->id_aaaa = new_id();
        n = pt__dns_query(buf, sizeof(buf), nm->id_aaaa, nm->host, 28);
        if (n && sendto(rs->io.fd, buf, n, 0, &to->sa, tolen) == (ssize_t) n)
            nm->want++;
    }
    if (nm->want == 0) {
        nm->sent = 0;
        nm->next = pt_current_msec + RS_RETRY;
        pt_log_error(PT_LOG_ERR, rs->cycle->log, errno, "upstream \"%.*s\": could not send a DNS query for %s",
                     (int) rs->group->name.len, rs->group->name.data, nm->host);
    }
}

static void finish_name(pt_upstream_resolve_t *rs, rs_name_t *nm, const char *why)
{
    nm->sent = 0;
    if (nm->naddrs == 0) {
        /* failure: keep what we have */
        rs->next_server++;
        nm->next = pt_current_msec + RS_RETRY;
        pt_log_error(PT_LOG_ERR, rs->cycle->log, 0,
                     "upstream \"%.*s\": could not resolve %s (%s), keeping the last known addresses",
                     (int) rs->group->name.len, rs->group->name.data, nm->host, why ? why : "no address");
        return;
    }
    int64_t wait = rs->valid ? rs->valid : (int64_t) (nm->ttl ? nm->ttl : 1) * 1000;
    nm->next = pt_current_msec + wait;
    nm->resolved_once = 1;
    apply(rs, nm);
}

static void on_dns_read(pt_event_t *ev)
{
    pt_upstream_resolve_t *rs = ev->data;
    uint8_t buf[4096];
    for (;;) {
        ssize_t n = recv(rs->io.fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ev->ready = 0;
            return;
        }
        uint16_t id;
        int rcode;
        uint32_t ttl;
        pt_sockaddr_t addrs[RS_MAX_ADDRS];
        socklen_t lens[RS_MAX_ADDRS];
        for (unsigned i = 0; i < rs->nnames; i++) {
            rs_name_t *nm = &rs->names[i];
            if (!nm->sent || n < 2)
                continue;
            uint16_t rid = (uint16_t) (buf[0] << 8 | buf[1]);
            if (rid == 0 || (rid != nm->id_a && rid != nm->id_aaaa))
                continue;
            int got = pt__dns_parse(buf, (size_t) n, &id, &rcode, &ttl, nm->port, addrs, lens,
                                    RS_MAX_ADDRS);
            if (rid == nm->id_a)
                nm->id_a = 0;            /* answered: a duplicate is ignored */
            else
                nm->id_aaaa = 0;
            if (got < 0 || rcode != 0) {
                nm->failed++;
            } else {
                for (int k = 0; k < got && nm->naddrs < RS_MAX_ADDRS; k++) {
                    nm->addrs[nm->naddrs] = addrs[k];
                    nm->lens[nm->naddrs] = lens[k];
                    nm->naddrs++;
                }
                if (got > 0 && ttl < nm->ttl)
                    nm->ttl = ttl;
            }
            if (nm->want)
                nm->want--;
            if (nm->want == 0)
                finish_name(rs, nm, nm->failed ? (rcode == 3 ? "host not found" : "server failure")
                                               : "no address");
            break;
        }
    }
}

static int take_lease(pt_upstream_resolve_t *rs)
{
    pt_upstream_shared_t *sh = rs->group->ext->shared;
    int me = (int) getpid();
    int64_t now = pt_current_msec;
    int mine = 0;
    pt__upstream_lock(rs->group);
    if (pt_conn_shutting_down) {
        if (sh->resolve_owner == me)
            sh->resolve_owner = 0;
    } else if (sh->resolve_owner == me || sh->resolve_owner == 0 || now > sh->resolve_lease
               || (kill(sh->resolve_owner, 0) != 0 && errno == ESRCH)) {
        sh->resolve_owner = me;
        sh->resolve_lease = now + 3000;
        mine = 1;
    }
    pt__upstream_unlock(rs->group);
    return mine;
}

static void on_tick(pt_event_t *ev)
{
    pt_upstream_resolve_t *rs = ev->data;
    int mine = take_lease(rs);
    if (mine && !rs->owner) {
        /* a new owner resolves at once */
        for (unsigned i = 0; i < rs->nnames; i++) {
            rs->names[i].next = 0;
            rs->names[i].sent = 0;
        }
    }
    rs->owner = mine ? 1 : 0;
    if (mine) {
        int64_t now = pt_current_msec;
        for (unsigned i = 0; i < rs->nnames; i++) {
            rs_name_t *nm = &rs->names[i];
            if (nm->sent && now - nm->sent >= rs->timeout) {
                /* one answer (say A) may have come: use it, else fail */
                nm->want = 0;
                finish_name(rs, nm, "timed out");
            }
            if (!nm->sent && now >= nm->next)
                send_queries(rs, nm);
        }
    }
    if (!pt_conn_shutting_down)
        pt_timer_add(&rs->timer, RS_TICK);
}

/* ------------------------------------------------------------------------ */
/* Configuration */

static int parse_server_addr(const pt_str_t *v, pt_sockaddr_t *sa, socklen_t *len)
{
    char host[128];
    const char *p = v->data, *end = v->data + v->len, *hs, *he, *port = NULL;
    if (p < end && *p == '[') {
        hs = p + 1;
        he = memchr(p, ']', v->len);
        if (he == NULL)
            return -1;
        if (he + 1 < end) {
            if (he[1] != ':')
                return -1;
            port = he + 2;
        }
    } else {
        hs = p;
        he = memchr(p, ':', v->len);
        if (he)
            port = he + 1;
        else
            he = end;
    }
    size_t hl = (size_t) (he - hs);
    if (hl == 0 || hl >= sizeof(host))
        return -1;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    int64_t pn = 53;
    if (port) {
        pn = pt_atoi64(port, (size_t) (end - port));
        if (pn < 1 || pn > 65535)
            return -1;
    }
    memset(sa, 0, sizeof(*sa));
    if (inet_pton(AF_INET, host, &sa->sin.sin_addr) == 1) {
        sa->sin.sin_family = AF_INET;
        sa->sin.sin_port = htons((in_port_t) pn);
        *len = sizeof(struct sockaddr_in);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sa->sin6.sin6_addr) == 1) {
        sa->sin6.sin6_family = AF_INET6;
        sa->sin6.sin6_port = htons((in_port_t) pn);
        *len = sizeof(struct sockaddr_in6);
        return 0;
    }
    return -1;
}

static int split_host_port(const pt_str_t *addr, char *host, size_t cap, in_port_t *port)
{
    const char *p = addr->data, *end = p + addr->len;
    const char *colon = memchr(p, ':', addr->len);
    size_t hl = (size_t) ((colon ? colon : end) - p);
    if (hl == 0 || hl >= cap)
        return -1;
    memcpy(host, p, hl);
    host[hl] = '\0';
    *port = 80;
    if (colon) {
        int64_t v = pt_atoi64(colon + 1, (size_t) (end - colon - 1));
        if (v < 1 || v > 65535)
            return -1;
        *port = (in_port_t) v;
    }
    return 0;
}

const char *pt__upstream_resolver_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_upstream_ext_t *ext = pt__upstream_ext(cf, conf);
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    if (ext == NULL)
        return "failed (out of memory)";
    if (ext->resolver)
        return "is duplicate";
    ext->resolver = pt_array_create(cf->pool, cf->args->nelts, sizeof(pt_str_t));
    if (ext->resolver == NULL)
        return "failed (out of memory)";
    for (size_t i = 1; i < cf->args->nelts; i++) {
        pt_str_t *s = pt_array_push(ext->resolver);
        if (s == NULL)
            return "failed (out of memory)";
        *s = value[i];
    }
    return PT_CONF_OK;
}

const char *pt__upstream_resolver_timeout_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_upstream_ext_t *ext = pt__upstream_ext(cf, conf);
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    if (ext == NULL)
        return "failed (out of memory)";
    if (ext->resolver_timeout != -1)
        return "is duplicate";
    ext->resolver_timeout = pt_conf_parse_msec(&value[1]);
    if (ext->resolver_timeout <= 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\"", value[1].data);
        return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

static void *create_main_conf(pt_conf_t *cf)
{
    rs_main_conf_t *m = pt_pcalloc(cf->pool, sizeof(*m));
    if (m == NULL || pt_array_init(&m->groups, cf->pool, 2, sizeof(pt_upstream_resolve_t *)) != 0)
        return NULL;
    return m;
}

static const char *init_main_conf(pt_conf_t *cf, void *conf)
{
    rs_main_conf_t *m = conf;
    extern pt_module_t pt_http_upstream_module;
    pt_upstream_main_conf_t *umcf = cf->http_ctx->main_conf[pt_http_upstream_module.index];
    pt_http_core_loc_conf_t *clcf = cf->http_ctx->loc_conf[pt_http_core_module.index];
    if (umcf == NULL)
        return PT_CONF_OK;

    pt_upstream_group_t **gs = umcf->groups.elts;
    for (size_t i = 0; i < umcf->groups.nelts; i++) {
        pt_upstream_group_t *g = gs[i];
        pt_upstream_server_t *s = g->servers.elts;
        unsigned n = 0;
        for (size_t k = 0; k < g->servers.nelts; k++)
            n += s[k].resolve;
        if (n == 0)
            continue;
        if (g->ext == NULL || g->ext->zone == NULL) {
            pt_log_error(PT_LOG_EMERG, cf->log, 0,
                         "resolving names at runtime requires a \"zone\" in upstream \"%.*s\" in %s:%u",
                         (int) g->name.len, g->name.data, g->file, g->line);
            return PT_CONF_ERROR;
        }
        pt_array_t *resolver = g->ext->resolver;
        int64_t timeout = g->ext->resolver_timeout;
        if (resolver == NULL && clcf && clcf->resolver != PT_CONF_UNSET_PTR)
            resolver = clcf->resolver;
        if (timeout <= 0 && clcf)
            timeout = clcf->resolver_timeout;
        if (resolver == NULL) {
            pt_log_error(PT_LOG_EMERG, cf->log, 0,
                         "no resolver defined to resolve names in upstream \"%.*s\" in %s:%u",
                         (int) g->name.len, g->name.data, g->file, g->line);
            return PT_CONF_ERROR;
        }
        pt_upstream_resolve_t *rs = pt_pcalloc(cf->pool, sizeof(*rs));
        if (rs == NULL)
            return "failed (out of memory)";
        rs->group = g;
        rs->ipv6 = 1;
        rs->timeout = timeout > 0 ? timeout : 30000;
        pt_str_t *args = resolver->elts;
        for (size_t k = 0; k < resolver->nelts; k++) {
            pt_str_t *v = &args[k];
            if (v->len > 6 && memcmp(v->data, "valid=", 6) == 0) {
                pt_str_t t = { v->len - 6, v->data + 6 };
                rs->valid = pt_conf_parse_msec(&t);
                if (rs->valid <= 0)
                    goto invalid;
            } else if (pt_str_eq_lit(v, "ipv6=on")) {
                rs->ipv6 = 1;
            } else if (pt_str_eq_lit(v, "ipv6=off")) {
                rs->ipv6 = 0;
            } else if (v->len > 4 && memcmp(v->data, "ipv4=", 5) == 0) {
                /* accepted */
            } else if (v->len > 12 && memcmp(v->data, "status_zone=", 12) == 0) {
                /* accepted */
            } else {
                if (rs->nservers == RS_MAX_SERVERS
                    || parse_server_addr(v, &rs->servers[rs->nservers], &rs->server_lens[rs->nservers]) != 0)
                    goto invalid;
                rs->nservers++;
                continue;
            invalid:
                pt_log_error(PT_LOG_EMERG, cf->log, 0,
                             "invalid resolver parameter \"%.*s\" for upstream \"%.*s\" in %s:%u",
                             (int) v->len, v->data, (int) g->name.len, g->name.data, g->file, g->line);
                return PT_CONF_ERROR;
            }
        }
        if (rs->nservers == 0) {
            pt_log_error(PT_LOG_EMERG, cf->log, 0, "no resolver address for upstream \"%.*s\"",
                         (int) g->name.len, g->name.data);
            return PT_CONF_ERROR;
        }
        rs->names = pt_pcalloc(cf->pool, n * sizeof(rs_name_t));
        if (rs->names == NULL)
            return "failed (out of memory)";
        for (size_t k = 0; k < g->servers.nelts; k++) {
            if (!s[k].resolve)
                continue;
            rs_name_t *nm = &rs->names[rs->nnames++];
            nm->server = &s[k];
            if (split_host_port(&s[k].addr, nm->host, sizeof(nm->host), &nm->port) != 0) {
                pt_log_error(PT_LOG_EMERG, cf->log, 0, "invalid server \"%.*s\" in upstream \"%.*s\"",
                             (int) s[k].addr.len, s[k].addr.data, (int) g->name.len, g->name.data);
                return PT_CONF_ERROR;
            }
        }
        g->ext->resolve = rs;
        pt_upstream_resolve_t **slot = pt_array_push(&m->groups);
        if (slot == NULL)
            return "failed (out of memory)";
        *slot = rs;
    }
    return PT_CONF_OK;
}

static int init_worker(pt_cycle_t *cycle)
{
    if (cycle->http_ctx == NULL)
        return 0;
    rs_main_conf_t *m = cycle->http_ctx->main_conf[pt_http_upstream_resolve_module.index];
    if (m == NULL)
        return 0;
    pt_upstream_resolve_t **rss = m->groups.elts;
    for (size_t i = 0; i < m->groups.nelts; i++) {
        pt_upstream_resolve_t *rs = rss[i];
        rs->cycle = cycle;
        int fam = rs->servers[0].sa.sa_family;
        int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            pt_log_error(PT_LOG_ALERT, cycle->log, errno, "socket() for the resolver failed");
            continue;
        }
        rs->io.fd = fd;
        rs->io.read.handler = on_dns_read;
        rs->io.read.data = rs;
        rs->io.write.handler = NULL;
        rs->io.write.data = rs;
        if (pt_loop_add_io(&rs->io) != 0) {
            close(fd);
            rs->io.fd = -1;
            continue;
        }
        rs->timer.handler = on_tick;
        rs->timer.data = rs;
        rs->timer.timer_index = (size_t) -1;
        pt_timer_add(&rs->timer, 10 + getpid() % 20);
    }
    return 0;
}

static void exit_worker(pt_cycle_t *cycle)
{
    if (cycle->http_ctx == NULL)
        return;
    rs_main_conf_t *m = cycle->http_ctx->main_conf[pt_http_upstream_resolve_module.index];
    if (m == NULL)
        return;
    pt_upstream_resolve_t **rss = m->groups.elts;
    for (size_t i = 0; i < m->groups.nelts; i++) {
        pt_upstream_resolve_t *rs = rss[i];
        pt_timer_del(&rs->timer);
        pt_upstream_shared_t *sh = rs->group->ext->shared;
        if (sh == NULL)
            continue;
        pt__upstream_lock(rs->group);
        if (sh->resolve_owner == (int) getpid())
            sh->resolve_owner = 0;
        pt__upstream_unlock(rs->group);
    }
}

pt_module_t pt_http_upstream_resolve_module = {
    .name = "http_upstream_resolve",
    .create_main_conf = create_main_conf,
    .init_main_conf = init_main_conf,
    .init_worker = init_worker,
    .exit_worker = exit_worker,
};
