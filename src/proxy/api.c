/* Module "http_api": a runtime API for upstream groups that have a `zone`
 * (what nginx keeps for its paid edition). Off by default; only the
 * locations that say `api` serve it, and allow/deny protect it as any other
 * location. Reading is always allowed there; changes need `api write=on`.
 *
 *   GET    .../upstreams                       every zone group with its peers
 *   GET    .../upstreams/NAME                  one group
 *   GET    .../upstreams/NAME/servers          its peers
 *   GET    .../upstreams/NAME/servers/ID       one peer
 *   POST   .../upstreams/NAME/servers          add {"server":"10.0.0.1:80",
 *                                               "weight":2, "max_fails":1,
 *                                               "fail_timeout":"10s", "max_conns":0,
 *                                               "slow_start":"0s", "backup":false,
 *                                               "down":false}
 *   PATCH  .../upstreams/NAME/servers/ID       {"weight":N, "down":bool, "drain":bool,
 *                                               "max_fails":N, "fail_timeout":"T", ...}
 *   DELETE .../upstreams/NAME/servers/ID       remove (in-flight requests finish)
 *
 * The path may carry any prefix (/api/, /api/9/http/): the part from the
 * "upstreams" segment on is what counts. Peers live in shared memory, so a
 * change is seen by every worker at once. Errors are JSON too:
 * {"error":{"status":404,"code":"UpstreamNotFound","text":"..."}}. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer.h"
#include "../core/time.h"
#include "../http/core.h"
#include "../http/request.h"

#define API_MAX_BODY 4096

extern pt_module_t pt_http_upstream_module;
pt_module_t pt_http_api_module;

typedef struct {
    int write;          /* PT_CONF_UNSET until merged */
    int enabled;
} api_loc_conf_t;

typedef struct {
    char   body[API_MAX_BODY];
    size_t len;
} api_ctx_t;

/* ------------------------------------------------------------------------ */
/* Output */

typedef struct {
    char  *data;
    size_t len, cap;
    pt_pool_t *pool;
    int    oom;
} out_t;

static void out_grow(out_t *o, size_t need)
{
    if (o->oom || o->len + need <= o->cap)
        return;
    size_t cap = o->cap ? o->cap * 2 : 1024;
    while (cap < o->len + need)
        cap *= 2;
    char *d = pt_palloc(o->pool, cap);
    if (d == NULL) {
        o->oom = 1;
        return;
    }
    if (o->len)
        memcpy(d, o->data, o->len);
    o->data = d;
    o->cap = cap;
}

static void outf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(out_t *o, const char *fmt, ...)
{
    va_list ap;
    for (int pass = 0; pass < 2 && !o->oom; pass++) {
        va_start(ap, fmt);
        int n = vsnprintf(o->data ? o->data + o->len : NULL, o->data ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if (o->data && (size_t) n < o->cap - o->len) {
            o->len += (size_t) n;
            return;
        }
        out_grow(o, (size_t) n + 1);
    }
}

static void out_json_str(out_t *o, const char *s, size_t len)
{
    outf(o, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char) s[i];
        if (ch == '"' || ch == '\\')
            outf(o, "\\%c", ch);
        else if (ch < 0x20)
            outf(o, "\\u%04x", ch);
        else
            outf(o, "%c", ch);
    }
    outf(o, "\"");
}

static int send_json(pt_http_request_t *r, int status, out_t *o)
{
    if (o->oom)
        return 500;
    pt_str_t ctype = pt_string("application/json");
    pt_str_t body = { o->len, o->data ? o->data : "" };
    return pt_http_send_response(r, status, &ctype, &body);
}

static int api_error(pt_http_request_t *r, int status, const char *code, const char *text)
{
    out_t o = { .pool = r->pool };
    outf(&o, "{\"error\":{\"status\":%d,\"code\":\"%s\",\"text\":", status, code);
    out_json_str(&o, text, strlen(text));
    outf(&o, "}}\n");
    return send_json(r, status, &o);
}

static const char *peer_state(const pt_upstream_peer_t *p, int64_t now)
{
    if (p->down)
        return "down";
    if (p->drain)
        return "draining";
    if (p->checking)
        return "checking";
    if (p->unhealthy)
        return "unhealthy";
    if (p->max_fails && p->fails >= p->max_fails && now - p->checked <= p->fail_timeout)
        return "unavail";
    return "up";
}

static void out_peer(out_t *o, const pt_upstream_peer_t *p, int backup, int64_t now)
{
    outf(o, "{\"id\":%u,\"server\":", p->id);
    out_json_str(o, p->name.data, p->name.len);
    outf(o, ",\"name\":");
    out_json_str(o, p->server.data, p->server.len);
    outf(o, ",\"backup\":%s,\"weight\":%d,\"state\":\"%s\",\"active\":%u,\"requests\":%llu,"
         "\"fails\":%llu,\"max_fails\":%u,\"fail_timeout\":\"%llds\",\"max_conns\":%u,"
         "\"slow_start\":\"%llds\",\"health_checks\":{\"fails\":%u,\"passes\":%u,"
         "\"unhealthy\":%s},\"resolved\":%s}",
         backup ? "true" : "false", p->weight, peer_state(p, now), p->conns,
         (unsigned long long) p->requests, (unsigned long long) p->failures, p->max_fails,
         (long long) (p->fail_timeout / 1000), p->max_conns, (long long) (p->slow_start / 1000),
         p->hc_fails, p->hc_passes, p->unhealthy ? "true" : "false", p->resolved ? "true" : "false");
}

/* Peers of g as a JSON array (lock held). */
static void out_peers(out_t *o, pt_upstream_group_t *g, int64_t now)
{
    outf(o, "[");
    int first = 1, backup = 0;
    for (pt_upstream_peers_t *ps = g->peers; ps; ps = ps->next, backup = 1) {
        for (unsigned i = 0; i < ps->number; i++) {
            if (ps->peer[i].removed)
                continue;
            if (!first)
                outf(o, ",");
            first = 0;
            out_peer(o, &ps->peer[i], backup, now);
        }
    }
    outf(o, "]");
}

static void out_group(out_t *o, pt_upstream_group_t *g, int64_t now)
{
    outf(o, "{\"peers\":");
    pt__upstream_lock(g);
    out_peers(o, g, now);
    unsigned gen = g->ext->shared->generation;
    pt__upstream_unlock(g);
    outf(o, ",\"zone\":");
    out_json_str(o, g->ext->zone_name.data, g->ext->zone_name.len);
    outf(o, ",\"balancer\":\"%s\",\"generation\":%u}", g->balancer->name, gen);
}

/* ------------------------------------------------------------------------ */
/* A flat JSON object reader: {"key": "str" | number | true | false, ...} */

typedef struct {
    char     key[32];
    int      type;        /* 's', 'n', 'b' */
    char     str[256];
    int64_t  num;
} json_kv_t;

static const char *ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

static const char *json_string(const char *p, const char *e, char *out, size_t cap)
{
    if (p >= e || *p != '"')
        return NULL;
    p++;
    size_t n = 0;
    while (p < e && *p != '"') {
        char ch = *p++;
        if (ch == '\\') {
            if (p >= e)
                return NULL;
            ch = *p++;
            if (ch == 'n')
                ch = '\n';
            else if (ch == 't')
                ch = '\t';
            else if (ch != '"' && ch != '\\' && ch != '/')
                return NULL;
        }
        if (n + 1 >= cap)
            return NULL;
        out[n++] = ch;
    }
    if (p >= e)
        return NULL;
    out[n] = '\0';
    return p + 1;
}

/* Returns the number of pairs, -1 when malformed. */
static int json_parse(const char *p, size_t len, json_kv_t *kv, int max)
{
    const char *e = p + len;
    int n = 0;
    p = ws(p, e);
    if (p >= e || *p != '{')
        return -1;
    p = ws(p + 1, e);
    if (p < e && *p == '}')
        return ws(p + 1, e) == e ? 0 : -1;
    for (;;) {
        if (n == max)
            return -1;
        json_kv_t *x = &kv[n];
        memset(x, 0, sizeof(*x));
        p = json_string(ws(p, e), e, x->key, sizeof(x->key));
        if (p == NULL)
            return -1;
        p = ws(p, e);
        if (p >= e || *p != ':')
            return -1;
        p = ws(p + 1, e);
        if (p < e && *p == '"') {
            x->type = 's';
            p = json_string(p, e, x->str, sizeof(x->str));
            if (p == NULL)
                return -1;
        } else if (e - p >= 4 && memcmp(p, "true", 4) == 0) {
            x->type = 'b';
            x->num = 1;
            p += 4;
        } else if (e - p >= 5 && memcmp(p, "false", 5) == 0) {
            x->type = 'b';
            x->num = 0;
            p += 5;
        } else if (p < e && (*p == '-' || (*p >= '0' && *p <= '9'))) {
            char *end;
            char tmp[32];
            size_t l = 0;
            while (p + l < e && l < sizeof(tmp) - 1 && (p[l] == '-' || (p[l] >= '0' && p[l] <= '9')))
                l++;
            memcpy(tmp, p, l);
            tmp[l] = '\0';
            x->num = strtoll(tmp, &end, 10);
            if (*end != '\0')
                return -1;
            x->type = 'n';
            p += l;
        } else {
            return -1;
        }
        n++;
        p = ws(p, e);
        if (p < e && *p == ',') {
            p = ws(p + 1, e);
            continue;
        }
        if (p < e && *p == '}')
            return ws(p + 1, e) == e ? n : -1;
        return -1;
    }
}

static int64_t kv_msec(const json_kv_t *x)
{
    if (x->type == 'n')
        return x->num * 1000;
    if (x->type != 's')
        return -1;
    pt_str_t t = { strlen(x->str), (char *) x->str };
    return pt_conf_parse_msec(&t);
}

/* Applies the settable fields of kv to p. Returns NULL or an error text. */
static const char *apply_fields(pt_upstream_peer_t *p, json_kv_t *kv, int n, int adding)
{
    for (int i = 0; i < n; i++) {
        json_kv_t *x = &kv[i];
        if (strcmp(x->key, "weight") == 0) {
            if (x->type != 'n' || x->num < 1 || x->num > 1000000)
                return "invalid \"weight\"";
            p->weight = (int) x->num;
            p->effective_weight = (int) x->num;
            p->current_weight = 0;
        } else if (strcmp(x->key, "max_fails") == 0) {
            if (x->type != 'n' || x->num < 0)
                return "invalid \"max_fails\"";
            p->max_fails = (unsigned) x->num;
        } else if (strcmp(x->key, "max_conns") == 0) {
            if (x->type != 'n' || x->num < 0)
                return "invalid \"max_conns\"";
            p->max_conns = (unsigned) x->num;
        } else if (strcmp(x->key, "fail_timeout") == 0) {
            int64_t ms = kv_msec(x);
            if (ms < 0)
                return "invalid \"fail_timeout\"";
            p->fail_timeout = ms;
        } else if (strcmp(x->key, "slow_start") == 0) {
            int64_t ms = kv_msec(x);
            if (ms < 0)
                return "invalid \"slow_start\"";
            p->slow_start = ms;
        } else if (strcmp(x->key, "down") == 0) {
            if (x->type != 'b')
                return "invalid \"down\"";
            if (p->down && !x->num)
                p->start_time = pt_current_msec;
            p->down = x->num ? 1 : 0;
        } else if (strcmp(x->key, "drain") == 0) {
            if (x->type != 'b')
                return "invalid \"drain\"";
            p->drain = x->num ? 1 : 0;
        } else if (strcmp(x->key, "server") == 0 || strcmp(x->key, "backup") == 0
                   || strcmp(x->key, "id") == 0) {
            if (!adding && strcmp(x->key, "id") != 0)
                return "\"server\" and \"backup\" cannot be changed";
        } else {
            return "unknown field";
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Routing */

static pt_upstream_group_t *find_group(pt_http_request_t *r, const char *name, size_t len)
{
    pt_upstream_main_conf_t *umcf = r->main_conf[pt_http_upstream_module.index];
    if (umcf == NULL)
        return NULL;
    pt_upstream_group_t **gs = umcf->groups.elts;
    for (size_t i = 0; i < umcf->groups.nelts; i++) {
        pt_upstream_group_t *g = gs[i];
        if (g->name.len == len && memcmp(g->name.data, name, len) == 0 && g->ext && g->ext->shared)
            return g;
    }
    return NULL;
}

static pt_upstream_peer_t *find_peer(pt_upstream_group_t *g, unsigned id, int *backup)
{
    int b = 0;
    for (pt_upstream_peers_t *ps = g->peers; ps; ps = ps->next, b = 1)
        for (unsigned i = 0; i < ps->number; i++)
            if (ps->peer[i].id == id && !ps->peer[i].removed) {
                if (backup)
                    *backup = b;
                return &ps->peer[i];
            }
    return NULL;
}

#define API_MAX_ADDRS 16

/* "ip:port", "[v6]:port", "name[:port]" (resolved now, every address is
 * added; no re-resolution) or "unix:/path". Returns the count or -1. */
static int parse_peer_addrs(const char *s, pt_sockaddr_t *sa, socklen_t *len, const char **err)
{
    pt_str_t v = { strlen(s), (char *) s };
    if (v.len == 0 || v.len > 255) {
        *err = "\"server\" must be an address";
        return -1;
    }
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c <= ' ' || c == 0x7f) {
            *err = "\"server\" must be an address";
            return -1;
        }
    }
    return pt__upstream_resolve_addr(&v, 80, sa, len, API_MAX_ADDRS, err);
}

/* Serves the request once any body is read. */
static int api_process(pt_http_request_t *r, api_ctx_t *ctx)
{
    api_loc_conf_t *alcf = r->loc_conf[pt_http_api_module.index];
    int64_t now = pt_current_msec;
    const char *uri = r->uri.data;
    size_t ulen = r->uri.len;

    /* segments from "upstreams" on */
    const char *seg[4];
    size_t seglen[4];
    unsigned nseg = 0;
    const char *p = uri, *e = uri + ulen;
    int found = 0;
    while (p < e) {
        while (p < e && *p == '/')
            p++;
        if (p >= e)
            break;
        const char *s = p;
        while (p < e && *p != '/')
            p++;
        if (!found) {
            if ((size_t) (p - s) == 9 && memcmp(s, "upstreams", 9) == 0)
                found = 1;
            continue;
        }
        if (nseg == 4)
            return api_error(r, 404, "PathNotFound", "path not found");
        seg[nseg] = s;
        seglen[nseg] = (size_t) (p - s);
        nseg++;
    }
    if (!found)
        return api_error(r, 404, "PathNotFound", "path not found");

    unsigned m = r->method;
    int reading = (m & (PT_HTTP_GET | PT_HTTP_HEAD)) != 0;
    if (!reading && alcf->write != 1)
        return api_error(r, 405, "MethodDisabled", "the API is read-only here (api write=on)");

    out_t o = { .pool = r->pool };

    if (nseg == 0) {
        if (!reading)
            return api_error(r, 405, "MethodNotSupported", "method not supported");
        pt_upstream_main_conf_t *umcf = r->main_conf[pt_http_upstream_module.index];
        outf(&o, "{");
        int first = 1;
        pt_upstream_group_t **gs = umcf ? umcf->groups.elts : NULL;
        for (size_t i = 0; umcf && i < umcf->groups.nelts; i++) {
            pt_upstream_group_t *g = gs[i];
            if (g->ext == NULL || g->ext->shared == NULL)
                continue;
            if (!first)
                outf(&o, ",");
            first = 0;
            out_json_str(&o, g->name.data, g->name.len);
            outf(&o, ":");
            out_group(&o, g, now);
        }
        outf(&o, "}\n");
        return send_json(r, 200, &o);
    }

    pt_upstream_group_t *g = find_group(r, seg[0], seglen[0]);
    if (g == NULL)
        return api_error(r, 404, "UpstreamNotFound", "upstream not found or has no zone");

    if (nseg == 1) {
        if (!reading)
            return api_error(r, 405, "MethodNotSupported", "method not supported");
        out_group(&o, g, now);
        outf(&o, "\n");
        return send_json(r, 200, &o);
    }
    if (seglen[1] != 7 || memcmp(seg[1], "servers", 7) != 0 || nseg > 3)
        return api_error(r, 404, "PathNotFound", "path not found");

    json_kv_t kv[16];
    int nkv = 0;
    if (m & (PT_HTTP_POST | PT_HTTP_PATCH)) {
        nkv = json_parse(ctx->body, ctx->len, kv, 16);
        if (nkv < 0)
            return api_error(r, 400, "JsonError", "invalid JSON body");
    }

    if (nseg == 2) {
        if (reading) {
            pt__upstream_lock(g);
            out_peers(&o, g, now);
            pt__upstream_unlock(g);
            outf(&o, "\n");
            return send_json(r, 200, &o);
        }
        if (!(m & PT_HTTP_POST))
            return api_error(r, 405, "MethodNotSupported", "method not supported");
        const char *server = NULL;
        int backup = 0;
        for (int i = 0; i < nkv; i++) {
            if (strcmp(kv[i].key, "server") == 0 && kv[i].type == 's')
                server = kv[i].str;
            if (strcmp(kv[i].key, "backup") == 0 && kv[i].type == 'b')
                backup = (int) kv[i].num;
        }
        if (server == NULL)
            return api_error(r, 400, "UpstreamBadAddress", "\"server\" is required");
        pt_sockaddr_t sa[API_MAX_ADDRS];
        socklen_t len[API_MAX_ADDRS];
        const char *err = NULL;
        int naddr = parse_peer_addrs(server, sa, len, &err);
        if (naddr <= 0) {
            char text[160];
            snprintf(text, sizeof(text), "\"server\": %s", err ? err : "invalid address");
            return api_error(r, 400, "UpstreamBadAddress", text);
        }
        pt_str_t srv = { strlen(server), (char *) server };
        pt__upstream_lock(g);
        /* the addresses not in the group yet; none left: a duplicate */
        int fresh[API_MAX_ADDRS], nfresh = 0;
        for (int k = 0; k < naddr; k++) {
            int exists = 0;
            for (pt_upstream_peers_t *ps = g->peers; ps && !exists; ps = ps->next)
                for (unsigned i = 0; i < ps->number; i++)
                    if (!ps->peer[i].removed && ps->peer[i].socklen == len[k]
                        && memcmp(&ps->peer[i].sockaddr, &sa[k], len[k]) == 0) {
                        exists = 1;
                        break;
                    }
            if (!exists)
                fresh[nfresh++] = k;
        }
        if (nfresh == 0) {
            pt__upstream_unlock(g);
            return api_error(r, 409, "UpstreamServerExists", "the server already exists");
        }
        pt_upstream_peer_t *added[API_MAX_ADDRS];
        int nadded = 0;
        const char *bad = NULL;
        for (int k = 0; k < nfresh && bad == NULL; k++) {
            pt_upstream_peer_t *np = pt__upstream_peer_add(g, backup, &sa[fresh[k]], len[fresh[k]],
                                                           &srv);
            if (np == NULL)
                break;
            added[nadded++] = np;
            bad = apply_fields(np, kv, nkv, 1);
        }
        if (bad != NULL || nadded < nfresh) {
            for (int k = 0; k < nadded; k++)
                pt__upstream_peer_remove(g, added[k]);
            pt__upstream_zone_changed(g);
            pt__upstream_unlock(g);
            if (bad)
                return api_error(r, 400, "UpstreamConfFormatError", bad);
            return api_error(r, 507, "UpstreamOutOfMemory", "no room for another server in the zone");
        }
        pt__upstream_zone_changed(g);
        out_peer(&o, added[0], backup, now);
        char names[API_MAX_ADDRS][160];
        for (int k = 0; k < nadded; k++)
            pt_sockaddr_text(&added[k]->sockaddr.sa, added[k]->socklen, names[k],
                             sizeof(names[k]), 1);
        pt__upstream_unlock(g);
        outf(&o, "\n");
        for (int k = 0; k < nadded; k++)
            pt_log_error(PT_LOG_NOTICE, &r->connection->log, 0,
                         "api: server %s (%s) added to upstream \"%.*s\"", server, names[k],
                         (int) g->name.len, g->name.data);
        return send_json(r, 201, &o);
    }

    /* nseg == 3: one peer */
    int64_t id = pt_atoi64(seg[2], seglen[2]);
    if (id < 0)
        return api_error(r, 404, "UpstreamServerNotFound", "server not found");
    pt__upstream_lock(g);
    int backup = 0;
    pt_upstream_peer_t *peer = find_peer(g, (unsigned) id, &backup);
    if (peer == NULL) {
        pt__upstream_unlock(g);
        return api_error(r, 404, "UpstreamServerNotFound", "server not found");
    }
    if (reading) {
        out_peer(&o, peer, backup, now);
        pt__upstream_unlock(g);
        outf(&o, "\n");
        return send_json(r, 200, &o);
    }
    if (m & PT_HTTP_PATCH) {
        /* validate on a copy first: a bad field changes nothing */
        pt_upstream_peer_t copy = *peer;
        const char *bad = apply_fields(&copy, kv, nkv, 0);
        if (bad) {
            pt__upstream_unlock(g);
            return api_error(r, 400, "UpstreamConfFormatError", bad);
        }
        apply_fields(peer, kv, nkv, 0);
        pt__upstream_zone_changed(g);
        out_peer(&o, peer, backup, now);
        pt__upstream_unlock(g);
        outf(&o, "\n");
        return send_json(r, 200, &o);
    }
    if (m & PT_HTTP_DELETE) {
        char name[160];
        snprintf(name, sizeof(name), "%.*s", (int) peer->name.len, peer->name.data);
        pt__upstream_peer_remove(g, peer);
        pt__upstream_zone_changed(g);
        pt__upstream_unlock(g);
        pt_log_error(PT_LOG_NOTICE, &r->connection->log, 0,
                     "api: server %s removed from upstream \"%.*s\"", name,
                     (int) g->name.len, g->name.data);
        outf(&o, "{}\n");
        return send_json(r, 200, &o);
    }
    pt__upstream_unlock(g);
    return api_error(r, 405, "MethodNotSupported", "method not supported");
}

/* ------------------------------------------------------------------------ */
/* Body reading */

static void on_body(pt_http_request_t *r)
{
    api_ctx_t *ctx = r->ctx[pt_http_api_module.index];
    for (;;) {
        int status = 0;
        if (ctx->len >= sizeof(ctx->body)) {
            r->read_event_handler = NULL;
            pt_http_finalize_request(r, api_error(r, 413, "BodyTooLarge", "request body too large"));
            return;
        }
        ssize_t n = r->proto->read_body(r, ctx->body + ctx->len, sizeof(ctx->body) - ctx->len, &status);
        if (n > 0) {
            ctx->len += (size_t) n;
            continue;
        }
        if (n == PT_AGAIN)
            return;
        r->read_event_handler = NULL;
        if (n == 0) {
            pt_http_finalize_request(r, api_process(r, ctx));
            return;
        }
        pt_http_finalize_request(r, status >= 400 ? status : PT_ERROR);
        return;
    }
}

static int api_handler(pt_http_request_t *r)
{
    api_ctx_t *ctx = pt_pcalloc(r->pool, sizeof(*ctx));
    if (ctx == NULL)
        return 500;
    r->ctx[pt_http_api_module.index] = ctx;
    if (r->method & (PT_HTTP_POST | PT_HTTP_PATCH)) {
        r->read_event_handler = on_body;
        for (;;) {
            int status = 0;
            if (ctx->len >= sizeof(ctx->body))
                return api_error(r, 413, "BodyTooLarge", "request body too large");
            ssize_t n = r->proto->read_body(r, ctx->body + ctx->len, sizeof(ctx->body) - ctx->len,
                                            &status);
            if (n > 0) {
                ctx->len += (size_t) n;
                continue;
            }
            if (n == PT_AGAIN)
                return PT_DONE;
            r->read_event_handler = NULL;
            if (n == 0)
                break;
            return status >= 400 ? status : PT_ERROR;
        }
    } else {
        int rc = pt_http_discard_request_body(r);
        if (rc != PT_OK)
            return rc;
    }
    return api_process(r, ctx);
}

/* ------------------------------------------------------------------------ */
/* Configuration */

static const char *api_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    api_loc_conf_t *alcf = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    if (alcf->enabled)
        return "is duplicate";
    alcf->enabled = 1;
    alcf->write = 0;
    for (size_t i = 1; i < cf->args->nelts; i++) {
        if (pt_str_eq_lit(&value[i], "write=on"))
            alcf->write = 1;
        else if (pt_str_eq_lit(&value[i], "write=off"))
            alcf->write = 0;
        else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", value[i].data);
            return PT_CONF_ERROR;
        }
    }
    pt_http_core_loc_conf_t *clcf = pt_http_conf_get_module_loc_conf(cf, pt_http_core_module);
    clcf->handler = api_handler;
    return PT_CONF_OK;
}

static void *create_loc_conf(pt_conf_t *cf)
{
    api_loc_conf_t *c = pt_pcalloc(cf->pool, sizeof(*c));
    if (c)
        c->write = PT_CONF_UNSET;
    return c;
}

static const char *merge_loc_conf(pt_conf_t *cf, void *prev, void *conf)
{
    api_loc_conf_t *p = prev, *c = conf;
    (void) cf;
    pt_conf_merge(c->write, p->write, 0);
    return PT_CONF_OK;
}

static const pt_command_t api_commands[] = {
    { "api", PT_CTX_LOC, 0, 0, 1, api_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_api_module = {
    .name = "http_api",
    .commands = api_commands,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
};
