/* Module "http_metrics": a Prometheus endpoint and the per-request counters.
 *
 *   metrics [on|off];      (server, location) this location answers with the
 *                          Prometheus text exposition format (0.0.4); off
 *                          unless configured. Guard it with allow/deny.
 *   status_zone NAME;      (server, location) count the requests of this
 *                          server / location in the status zone NAME (nginx
 *                          Plus's directive): requests, responses by status
 *                          class, bytes received and sent. A server's zone and
 *                          a location's zone both count a request (once when
 *                          they are the same zone); nested locations inherit.
 *
 * The counters live in the statistics zone (stats.h): totals across workers
 * that survive a reload. A LOG phase handler, always registered, adds each
 * finished request with one relaxed atomic add per counter: all requests,
 * the server and location zones, the limit_req outcome
 * (r->limit_req_status) and the proxy cache status ($upstream_cache_status,
 * only when a proxy_cache_path exists).
 *
 * Exported series (all counters are *_total):
 *   portico_info{version}                       1
 *   process_start_time_seconds                  master's first start
 *   portico_config_load_time_seconds, portico_config_loads_total
 *   portico_connections_accepted_total, portico_connections_handled_total
 *   portico_connections{state="active|reading|writing|waiting"}
 *   portico_http_requests_total                 every client request (stub_status's)
 *   portico_http_responses_total{code="1xx".."5xx"|"none"}
 *   portico_http_received_bytes_total, portico_http_sent_bytes_total
 *   portico_server_zone_requests_total{zone}
 *   portico_server_zone_responses_total{zone,code}
 *   portico_server_zone_received_bytes_total{zone}, _sent_bytes_total{zone}
 *   portico_limit_req_requests_total{result="passed|delayed|rejected|
 *                                            delayed_dry_run|rejected_dry_run"}
 *   portico_cache_responses_total{cache_status="miss|bypass|..|hit"}
 *   portico_upstream_peer_requests_total{upstream,peer}
 *   portico_upstream_peer_fails_total{upstream,peer}
 *   portico_upstream_peer_active{upstream,peer}
 *   portico_upstream_peer_health{upstream,peer,state}  1 up, 0 otherwise
 * Upstream peers are shared across workers only for groups with a `zone`;
 * without one they are the answering worker's (as nginx's own state).
 * Per-peer responses by code are not exported: the upstream code does not
 * count them. */
#include <stdio.h>
#include <string.h>

#include "../config/cycle.h"
#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"
#include "stats.h"

extern pt_module_t pt_http_metrics_module;
extern pt_module_t pt_http_proxy_cache_module;

#define ZONE_UNSET (-2)
#define ZONE_NONE  (-1)

typedef struct {
    int zone;                 /* status zone index, ZONE_NONE */
} metrics_srv_conf_t;

typedef struct {
    int zone;                 /* ZONE_UNSET until merged */
} metrics_loc_conf_t;

typedef struct {
    int cache_var;            /* $upstream_cache_status index, -1 without caches */
} metrics_main_conf_t;

static const char *const class_names[PT_STATS_CLASSES] = {
    "none", "1xx", "2xx", "3xx", "4xx", "5xx"
};
static const char *const limit_req_names[PT_STATS_LIMIT_REQ_N] = {
    NULL, "passed", "delayed", "rejected", "delayed_dry_run", "rejected_dry_run"
};

/* ---- counting (LOG phase) --------------------------------------------------- */

static pt_stats_counters_t *zone_counters(int idx)
{
    if (idx < 0 || pt_stats_cf == NULL || (unsigned) idx >= pt_stats_cf->n)
        return NULL;
    pt_stats_slot_t *s = pt_stats_cf->slots[idx];
    return s ? &s->c : NULL;
}

static void count_cache(pt_http_request_t *r, int index)
{
    pt_http_var_value_t *v = pt_http_var_get(r, (unsigned) index);
    if (v == NULL || v->not_found || v->value.len == 0)
        return;
    for (unsigned i = 0; i < PT_STATS_CACHE_N; i++) {
        if (pt_str_eq_lit(&v->value, pt_stats_cache_names[i])) {
            atomic_fetch_add_explicit(&pt_stats->cache[i], 1, memory_order_relaxed);
            return;
        }
    }
}

static int metrics_log_handler(pt_http_request_t *r)
{
    if (pt_stats == NULL)
        return PT_OK;
    /* 0: closed without a response (444, 499, errors before the header) */
    int status = r->header_sent ? r->headers_out.status : 0;
    pt_stats_count(&pt_stats->all, status, r->request_length, r->bytes_sent);

    int szone = ZONE_NONE, lzone = ZONE_NONE;
    if (r->srv_conf) {
        metrics_srv_conf_t *mscf = pt_http_get_module_srv_conf(r, pt_http_metrics_module);
        szone = mscf ? mscf->zone : ZONE_NONE;
    }
    if (r->loc_conf) {
        metrics_loc_conf_t *mlcf = pt_http_get_module_loc_conf(r, pt_http_metrics_module);
        lzone = mlcf ? mlcf->zone : ZONE_NONE;
    }
    if (szone >= 0)
        pt_stats_count(zone_counters(szone), status, r->request_length, r->bytes_sent);
    if (lzone >= 0 && lzone != szone)
        pt_stats_count(zone_counters(lzone), status, r->request_length, r->bytes_sent);

    if (r->limit_req_status && r->limit_req_status < PT_STATS_LIMIT_REQ_N)
        atomic_fetch_add_explicit(&pt_stats->limit_req[r->limit_req_status], 1,
                                  memory_order_relaxed);

    metrics_main_conf_t *mmcf = pt_http_get_module_main_conf(r, pt_http_metrics_module);
    if (mmcf != NULL && mmcf->cache_var >= 0)
        count_cache(r, mmcf->cache_var);
    return PT_OK;
}

/* ---- the exposition ---------------------------------------------------------- */

static void head(pt_stats_buf_t *b, const char *name, const char *type, const char *help)
{
    pt_stats_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void zone_series(pt_stats_buf_t *b, const char *metric, const pt_str_t *zone,
                        const char *extra, uint64_t v)
{
    pt_stats_buf_printf(b, "%s{zone=\"", metric);
    pt_stats_buf_label(b, zone->data, zone->len);
    pt_stats_buf_printf(b, "\"%s} %llu\n", extra, (unsigned long long) v);
}

typedef struct {
    pt_stats_buf_t *b;
    int             which;
} peer_arg_t;

static void peer_labels(pt_stats_buf_t *b, const pt_stats_peer_t *p)
{
    pt_stats_buf_add(b, "{upstream=\"", 11);
    pt_stats_buf_label(b, p->group->data, p->group->len);
    pt_stats_buf_add(b, "\",peer=\"", 8);
    pt_stats_buf_label(b, p->peer->data, p->peer->len);
    pt_stats_buf_add(b, "\"", 1);
}

static void on_peer(const pt_stats_peer_t *p, void *arg)
{
    peer_arg_t *a = arg;
    static const char *const names[] = {
        "portico_upstream_peer_requests_total", "portico_upstream_peer_fails_total",
        "portico_upstream_peer_active", "portico_upstream_peer_health"
    };
    pt_stats_buf_add(a->b, names[a->which], strlen(names[a->which]));
    peer_labels(a->b, p);
    unsigned long long v = 0;
    switch (a->which) {
    case 0: v = p->requests; break;
    case 1: v = p->fails_total; break;
    case 2: v = p->active; break;
    default:
        pt_stats_buf_printf(a->b, ",state=\"%s\"", p->state);
        v = strcmp(p->state, "up") == 0;
        break;
    }
    pt_stats_buf_printf(a->b, "} %llu\n", v);
}

/* Writes the whole exposition for this worker's view into b. */
static void metrics_render(pt_stats_buf_t *b, void **main_conf)
{
    pt_stats_root_t *st = pt_stats;
    const pt_conn_stats_t *cs = &pt_conn_stats;

    head(b, "portico_info", "gauge", "Portico version.");
    pt_stats_buf_printf(b, "portico_info{version=\"%s\"} 1\n", PT_VERSION);
    if (st != NULL) {
        head(b, "process_start_time_seconds", "gauge",
             "Start time of the master process since the epoch, in seconds.");
        pt_stats_buf_printf(b, "process_start_time_seconds %lld\n", (long long) st->start_time);
        head(b, "portico_config_load_time_seconds", "gauge",
             "When the running configuration was loaded, since the epoch, in seconds.");
        pt_stats_buf_printf(b, "portico_config_load_time_seconds %lld\n",
                            (long long) atomic_load(&st->load_time));
        head(b, "portico_config_loads_total", "counter",
             "Configurations loaded (start and successful reloads).");
        pt_stats_buf_printf(b, "portico_config_loads_total %llu\n",
                            (unsigned long long) pt_stats_load(&st->generation));
    }

    head(b, "portico_connections_accepted_total", "counter", "Client connections accepted.");
    pt_stats_buf_printf(b, "portico_connections_accepted_total %llu\n",
                        (unsigned long long) cs->accepted);
    head(b, "portico_connections_handled_total", "counter", "Client connections handled.");
    pt_stats_buf_printf(b, "portico_connections_handled_total %llu\n",
                        (unsigned long long) cs->handled);
    head(b, "portico_connections", "gauge", "Client connections by state.");
    pt_stats_buf_printf(b,
                        "portico_connections{state=\"active\"} %u\n"
                        "portico_connections{state=\"reading\"} %u\n"
                        "portico_connections{state=\"writing\"} %u\n"
                        "portico_connections{state=\"waiting\"} %u\n",
                        (unsigned) cs->active, (unsigned) cs->reading,
                        (unsigned) cs->writing, (unsigned) cs->waiting);
    head(b, "portico_http_requests_total", "counter", "Client requests.");
    pt_stats_buf_printf(b, "portico_http_requests_total %llu\n", (unsigned long long) cs->requests);

    if (st == NULL)
        return;

    head(b, "portico_http_responses_total", "counter",
         "Finished requests by response status class (none: closed without a response).");
    for (unsigned i = 0; i < PT_STATS_CLASSES; i++)
        pt_stats_buf_printf(b, "portico_http_responses_total{code=\"%s\"} %llu\n", class_names[i],
                            (unsigned long long) pt_stats_load(&st->all.responses[i]));
    head(b, "portico_http_received_bytes_total", "counter", "Bytes received from clients.");
    pt_stats_buf_printf(b, "portico_http_received_bytes_total %llu\n",
                        (unsigned long long) pt_stats_load(&st->all.received));
    head(b, "portico_http_sent_bytes_total", "counter", "Bytes sent to clients.");
    pt_stats_buf_printf(b, "portico_http_sent_bytes_total %llu\n",
                        (unsigned long long) pt_stats_load(&st->all.sent));

    pt_stats_conf_t *sc = pt_stats_cf;
    if (sc != NULL && sc->n > 0) {
        head(b, "portico_server_zone_requests_total", "counter", "Requests per status zone.");
        for (unsigned z = 0; z < sc->n; z++)
            if (sc->slots[z])
                zone_series(b, "portico_server_zone_requests_total", &sc->names[z], "",
                            pt_stats_load(&sc->slots[z]->c.requests));
        head(b, "portico_server_zone_responses_total", "counter",
             "Responses per status zone and status class.");
        for (unsigned z = 0; z < sc->n; z++) {
            if (sc->slots[z] == NULL)
                continue;
            for (unsigned i = 0; i < PT_STATS_CLASSES; i++) {
                char extra[32];
                snprintf(extra, sizeof(extra), ",code=\"%s\"", class_names[i]);
                zone_series(b, "portico_server_zone_responses_total", &sc->names[z], extra,
                            pt_stats_load(&sc->slots[z]->c.responses[i]));
            }
        }
        head(b, "portico_server_zone_received_bytes_total", "counter",
             "Bytes received per status zone.");
        for (unsigned z = 0; z < sc->n; z++)
            if (sc->slots[z])
                zone_series(b, "portico_server_zone_received_bytes_total", &sc->names[z], "",
                            pt_stats_load(&sc->slots[z]->c.received));
        head(b, "portico_server_zone_sent_bytes_total", "counter", "Bytes sent per status zone.");
        for (unsigned z = 0; z < sc->n; z++)
            if (sc->slots[z])
                zone_series(b, "portico_server_zone_sent_bytes_total", &sc->names[z], "",
                            pt_stats_load(&sc->slots[z]->c.sent));
    }

    head(b, "portico_limit_req_requests_total", "counter", "limit_req outcomes.");
    for (unsigned i = 1; i < PT_STATS_LIMIT_REQ_N; i++)
        pt_stats_buf_printf(b, "portico_limit_req_requests_total{result=\"%s\"} %llu\n",
                            limit_req_names[i],
                            (unsigned long long) pt_stats_load(&st->limit_req[i]));

    head(b, "portico_cache_responses_total", "counter", "Proxy cache statuses.");
    for (unsigned i = 0; i < PT_STATS_CACHE_N; i++) {
        char lower[16];
        size_t k;
        for (k = 0; pt_stats_cache_names[i][k] && k < sizeof(lower) - 1; k++)
            lower[k] = (char) (pt_stats_cache_names[i][k] | 0x20);
        lower[k] = '\0';
        pt_stats_buf_printf(b, "portico_cache_responses_total{cache_status=\"%s\"} %llu\n", lower,
                            (unsigned long long) pt_stats_load(&st->cache[i]));
    }

    static const struct { const char *name, *type, *help; } peer_heads[] = {
        { "portico_upstream_peer_requests_total", "counter", "Requests sent to an upstream peer." },
        { "portico_upstream_peer_fails_total", "counter", "Failed attempts of an upstream peer." },
        { "portico_upstream_peer_active", "gauge", "Connections to an upstream peer now." },
        { "portico_upstream_peer_health", "gauge",
          "1 when the upstream peer takes requests (state up), else 0." },
    };
    for (int w = 0; w < 4; w++) {
        head(b, peer_heads[w].name, peer_heads[w].type, peer_heads[w].help);
        peer_arg_t a = { b, w };
        pt_stats_each_peer(main_conf, on_peer, &a);
    }
}

static int metrics_handler(pt_http_request_t *r)
{
    if (!(r->method & (PT_HTTP_GET | PT_HTTP_HEAD)))
        return 405;
    int rc = pt_http_discard_request_body(r);
    if (rc != PT_OK)
        return rc;
    pt_stats_buf_t b;
    pt_stats_buf_init(&b, r->pool, 8192);
    metrics_render(&b, r->main_conf);
    if (b.failed)
        return 500;
    pt_str_t text = { b.len, b.data };
    pt_str_t ctype = pt_string("text/plain; version=0.0.4; charset=utf-8");
    return pt_http_send_response(r, 200, &ctype, &text);
}

/* ---- configuration ------------------------------------------------------------ */

static const char *metrics_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *value = cf->args->elts;
    if (cf->args->nelts == 2) {
        if (pt_str_eq_lit(&value[1], "off"))
            return PT_CONF_OK;
        if (!pt_str_eq_lit(&value[1], "on")) {
            pt_conf_error(cf, PT_LOG_EMERG, 0,
                          "invalid value \"%s\" in \"metrics\" directive, it must be \"on\" or \"off\"",
                          value[1].data);
            return PT_CONF_ERROR;
        }
    }
    pt_http_core_loc_conf_t *clcf = pt_http_conf_get_module_loc_conf(cf, pt_http_core_module);
    clcf->handler = metrics_handler;
    return PT_CONF_OK;
}

static const char *status_zone_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *value = cf->args->elts;
    int idx = pt_stats_zone_index(cf, &value[1]);
    if (idx < 0)
        return PT_CONF_ERROR;
    if (cf->ctx & PT_CTX_SRV) {
        metrics_srv_conf_t *mscf = pt_http_conf_get_module_srv_conf(cf, pt_http_metrics_module);
        if (mscf->zone != ZONE_NONE)
            return "is duplicate";
        mscf->zone = idx;
    } else {
        metrics_loc_conf_t *mlcf = conf;
        if (mlcf->zone != ZONE_UNSET)
            return "is duplicate";
        mlcf->zone = idx;
    }
    return PT_CONF_OK;
}

static void *metrics_create_main_conf(pt_conf_t *cf)
{
    metrics_main_conf_t *c = pt_pcalloc(cf->pool, sizeof(*c));
    if (c)
        c->cache_var = -1;
    return c;
}

static void *metrics_create_srv_conf(pt_conf_t *cf)
{
    metrics_srv_conf_t *c = pt_pcalloc(cf->pool, sizeof(*c));
    if (c)
        c->zone = ZONE_NONE;
    return c;
}

static void *metrics_create_loc_conf(pt_conf_t *cf)
{
    metrics_loc_conf_t *c = pt_pcalloc(cf->pool, sizeof(*c));
    if (c)
        c->zone = ZONE_UNSET;
    return c;
}

static const char *metrics_merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    metrics_loc_conf_t *prev = parent, *conf = child;
    if (conf->zone == ZONE_UNSET)
        conf->zone = prev->zone == ZONE_UNSET ? ZONE_NONE : prev->zone;
    return PT_CONF_OK;
}

static int metrics_postconf(pt_conf_t *cf)
{
    if (pt_stats_conf(cf) == NULL)
        return -1;
    metrics_main_conf_t *mmcf = pt_http_conf_get_module_main_conf(cf, pt_http_metrics_module);
    for (pt_shm_zone_t *z = cf->cycle->shm_zones; z; z = z->next) {
        if (z->tag == &pt_http_proxy_cache_module) {
            pt_str_t name = pt_string("upstream_cache_status");
            mmcf->cache_var = pt_http_var_index(cf, &name);
            break;
        }
    }
    return pt_http_phase_add(cf, PT_HTTP_LOG_PHASE, metrics_log_handler);
}

static const pt_command_t metrics_commands[] = {
    { "metrics", PT_CTX_SRV | PT_CTX_LOC, 0, 0, 1, metrics_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "status_zone", PT_CTX_SRV | PT_CTX_LOC, 0, 1, 1, status_zone_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_metrics_module = {
    .name = "http_metrics",
    .commands = metrics_commands,
    .create_main_conf = metrics_create_main_conf,
    .create_srv_conf = metrics_create_srv_conf,
    .create_loc_conf = metrics_create_loc_conf,
    .merge_loc_conf = metrics_merge_loc_conf,
    .postconfiguration = metrics_postconf,
    .init_worker = pt_stats_worker_init,
};
