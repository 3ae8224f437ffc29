/* Module "http_status_page": a live status page.
 *
 *   status_page;   (server, location) GET answers with a self-contained HTML
 *                  page (inline CSS and script, no external assets) that polls
 *                  the same URI with ?format=json every second and draws
 *                  connections, requests per second, the status zones by
 *                  status class and the upstream peers.
 *   status_json;   (server, location) the JSON document alone.
 *
 * Both read the statistics zone (stats.h): totals across workers. Guard the
 * location with allow/deny as any status location.
 *
 * The JSON document (every number an integer; counters only grow until the
 * zone is recreated):
 *   {
 *     "version": "0.1.0",
 *     "generation": 2,               configurations loaded (start + reloads)
 *     "start_time": 1763840000,      master's first start, unix seconds
 *     "load_time": 1763840100,       last configuration load, unix seconds
 *     "now_msec": 1763840123456,     this answer's wall clock, unix ms
 *     "pid": 1234,                   the worker that answered
 *     "connections": { "accepted", "handled", "active", "reading",
 *                      "writing", "waiting" },
 *     "requests": { "total" },      every client request (stub_status's)
 *     "responses": { "1xx", "2xx", "3xx", "4xx", "5xx", "none", "total",
 *                    "received", "sent" },         finished requests, bytes
 *     "server_zones": { "NAME": { "requests", "received", "sent",
 *                                 "responses": { "1xx" .. "5xx", "none" } } },
 *     "limit_req": { "passed", "delayed", "rejected", "delayed_dry_run",
 *                    "rejected_dry_run" },
 *     "cache": { "miss", "bypass", "expired", "stale", "updating",
 *                "revalidated", "hit" },
 *     "upstreams": { "NAME": { "shared": true|false,   (has a zone)
 *                              "peers": [ { "server", "name", "backup",
 *                                           "state", "weight", "active",
 *                                           "requests", "fails",
 *                                           "fails_total", "max_fails" } ] } }
 *   }
 * "state" is "up", "down", "draining", "unhealthy" or "unavail" (too many
 * failures within fail_timeout). Peers of a group without a zone are the
 * answering worker's own. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../core/time.h"
#include "../http/core.h"
#include "../http/request.h"
#include "stats.h"

extern pt_module_t pt_http_status_page_module;

static const char *const class_names[PT_STATS_CLASSES] = {
    "none", "1xx", "2xx", "3xx", "4xx", "5xx"
};
static const char *const limit_req_names[PT_STATS_LIMIT_REQ_N] = {
    NULL, "passed", "delayed", "rejected", "delayed_dry_run", "rejected_dry_run"
};

static void json_key(pt_stats_buf_t *b, const char *s, size_t len)
{
    pt_stats_buf_add(b, "\"", 1);
    pt_stats_buf_json_str(b, s, len);
    pt_stats_buf_add(b, "\":", 2);
}

static void json_counters(pt_stats_buf_t *b, pt_stats_counters_t *c, int with_requests)
{
    pt_stats_buf_add(b, "{", 1);
    if (with_requests)
        pt_stats_buf_printf(b, "\"requests\":%llu,",
                            (unsigned long long) pt_stats_load(&c->requests));
    pt_stats_buf_printf(b, "\"received\":%llu,\"sent\":%llu,\"responses\":{",
                        (unsigned long long) pt_stats_load(&c->received),
                        (unsigned long long) pt_stats_load(&c->sent));
    uint64_t total = 0;
    for (unsigned i = 0; i < PT_STATS_CLASSES; i++) {
        uint64_t v = pt_stats_load(&c->responses[i]);
        total += v;
        pt_stats_buf_printf(b, "\"%s\":%llu,", class_names[i], (unsigned long long) v);
    }
    pt_stats_buf_printf(b, "\"total\":%llu}}", (unsigned long long) total);
}

typedef struct {
    pt_stats_buf_t *b;
    int             any;
} peer_json_t;

static void on_peer(const pt_stats_peer_t *p, void *arg)
{
    peer_json_t *a = arg;
    pt_stats_buf_t *b = a->b;
    if (p->first) {
        if (a->any)
            pt_stats_buf_add(b, "]},", 3);
        json_key(b, p->group->data, p->group->len);
        pt_stats_buf_printf(b, "{\"shared\":%s,\"peers\":[", p->shared ? "true" : "false");
        a->any = 1;
    } else {
        pt_stats_buf_add(b, ",", 1);
    }
    pt_stats_buf_add(b, "{\"server\":\"", 11);
    pt_stats_buf_json_str(b, p->server->data, p->server->len);
    pt_stats_buf_add(b, "\",\"name\":\"", 10);
    pt_stats_buf_json_str(b, p->peer->data, p->peer->len);
    pt_stats_buf_printf(b,
                        "\",\"backup\":%s,\"state\":\"%s\",\"weight\":%u,\"active\":%u,"
                        "\"requests\":%llu,\"fails\":%u,\"fails_total\":%llu,\"max_fails\":%u}",
                        p->backup ? "true" : "false", p->state, p->weight, p->active,
                        (unsigned long long) p->requests, p->fails,
                        (unsigned long long) p->fails_total, p->max_fails);
}

/* The JSON document described at the top, into b. */
static void status_json_render(pt_stats_buf_t *b, void **main_conf)
{
    pt_stats_root_t *st = pt_stats;
    const pt_conn_stats_t *cs = &pt_conn_stats;

    pt_stats_buf_printf(b, "{\"version\":\"%s\",\"generation\":%llu,\"start_time\":%lld,"
                        "\"load_time\":%lld,\"now_msec\":%lld,\"pid\":%d,",
                        PT_VERSION,
                        st ? (unsigned long long) pt_stats_load(&st->generation) : 0ULL,
                        st ? (long long) st->start_time : 0LL,
                        st ? (long long) atomic_load(&st->load_time) : 0LL,
                        (long long) pt_time_msec, (int) getpid());
    pt_stats_buf_printf(b, "\"connections\":{\"accepted\":%llu,\"handled\":%llu,\"active\":%u,"
                        "\"reading\":%u,\"writing\":%u,\"waiting\":%u},"
                        "\"requests\":{\"total\":%llu}",
                        (unsigned long long) cs->accepted, (unsigned long long) cs->handled,
                        (unsigned) cs->active, (unsigned) cs->reading, (unsigned) cs->writing,
                        (unsigned) cs->waiting, (unsigned long long) cs->requests);
    if (st != NULL) {
        pt_stats_buf_add(b, ",\"responses\":", 13);
        /* the totals are flat here: responses by class plus total/received/sent */
        pt_stats_buf_add(b, "{", 1);
        uint64_t total = 0;
        for (unsigned i = 0; i < PT_STATS_CLASSES; i++) {
            uint64_t v = pt_stats_load(&st->all.responses[i]);
            total += v;
            pt_stats_buf_printf(b, "\"%s\":%llu,", class_names[i], (unsigned long long) v);
        }
        pt_stats_buf_printf(b, "\"total\":%llu,\"received\":%llu,\"sent\":%llu}",
                            (unsigned long long) total,
                            (unsigned long long) pt_stats_load(&st->all.received),
                            (unsigned long long) pt_stats_load(&st->all.sent));
    }

    pt_stats_buf_add(b, ",\"server_zones\":{", 17);
    pt_stats_conf_t *sc = pt_stats_cf;
    int first = 1;
    for (unsigned z = 0; sc != NULL && z < sc->n; z++) {
        if (sc->slots[z] == NULL)
            continue;
        if (!first)
            pt_stats_buf_add(b, ",", 1);
        first = 0;
        json_key(b, sc->names[z].data, sc->names[z].len);
        json_counters(b, &sc->slots[z]->c, 1);
    }
    pt_stats_buf_add(b, "}", 1);

    if (st != NULL) {
        pt_stats_buf_add(b, ",\"limit_req\":{", 14);
        for (unsigned i = 1; i < PT_STATS_LIMIT_REQ_N; i++)
            pt_stats_buf_printf(b, "%s\"%s\":%llu", i > 1 ? "," : "", limit_req_names[i],
                                (unsigned long long) pt_stats_load(&st->limit_req[i]));
        pt_stats_buf_add(b, "},\"cache\":{", 11);
        for (unsigned i = 0; i < PT_STATS_CACHE_N; i++) {
            char lower[16];
            size_t k;
            for (k = 0; pt_stats_cache_names[i][k] && k < sizeof(lower) - 1; k++)
                lower[k] = (char) (pt_stats_cache_names[i][k] | 0x20);
            lower[k] = '\0';
            pt_stats_buf_printf(b, "%s\"%s\":%llu", i ? "," : "", lower,
                                (unsigned long long) pt_stats_load(&st->cache[i]));
        }
        pt_stats_buf_add(b, "}", 1);
    }

    pt_stats_buf_add(b, ",\"upstreams\":{", 14);
    peer_json_t a = { b, 0 };
    pt_stats_each_peer(main_conf, on_peer, &a);
    if (a.any)
        pt_stats_buf_add(b, "]}", 2);
    pt_stats_buf_add(b, "}}\n", 3);
}

/* The page. Plain DOM, no libraries; it survives a failed poll (shows the
 * error, keeps the last numbers) and computes rates from consecutive
 * samples (now_msec). */
static const char status_html[] =
"<!DOCTYPE html>\n"
"<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
"<title>Portico status</title>\n"
"<style>\n"
"body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d232b}\n"
"header{background:#1d3557;color:#fff;padding:12px 20px;display:flex;align-items:baseline;gap:16px;flex-wrap:wrap}\n"
"header h1{font-size:18px;margin:0}header span{opacity:.8;font-size:12px}\n"
"main{padding:16px 20px;max-width:1200px}\n"
".cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin-bottom:18px}\n"
".card{background:#fff;border-radius:6px;padding:10px 12px;box-shadow:0 1px 2px rgba(0,0,0,.08)}\n"
".card b{display:block;font-size:22px;font-variant-numeric:tabular-nums}.card small{color:#5b6675}\n"
"h2{font-size:15px;margin:18px 0 8px}\n"
"table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px rgba(0,0,0,.08);border-radius:6px;overflow:hidden}\n"
"th,td{padding:6px 10px;text-align:right;border-bottom:1px solid #e8ebef;font-variant-numeric:tabular-nums;white-space:nowrap}\n"
"th:first-child,td:first-child{text-align:left}th{background:#eef1f5;font-weight:600}\n"
".st{padding:1px 8px;border-radius:10px;font-size:12px;color:#fff}\n"
".up{background:#2a9d5c}.down,.unhealthy,.unavail{background:#c0392b}.draining{background:#d68910}\n"
".c4{color:#b9770e}.c5{color:#c0392b}#err{color:#c0392b;font-weight:600}\n"
".empty{color:#5b6675;font-style:italic}\n"
"</style></head><body>\n"
"<header><h1>Portico status</h1><span id=\"meta\">loading&hellip;</span><span id=\"err\"></span></header>\n"
"<main>\n"
"<div class=\"cards\" id=\"cards\"></div>\n"
"<h2>Server zones</h2><div id=\"zones\"></div>\n"
"<h2>Upstreams</h2><div id=\"ups\"></div>\n"
"</main>\n"
"<script>\n"
"(function(){\n"
"'use strict';\n"
"var url=location.pathname+'?format=json',prev=null,zprev={};\n"
"function el(t,c,x){var e=document.createElement(t);if(c)e.className=c;if(x!==undefined)e.textContent=x;return e}\n"
"function fmt(n){return n>=1e9?(n/1e9).toFixed(1)+'G':n>=1e6?(n/1e6).toFixed(1)+'M':n>=1e4?(n/1e3).toFixed(1)+'k':String(n)}\n"
"function bytes(n){var u=['B','KiB','MiB','GiB','TiB'],i=0;while(n>=1024&&i<4){n/=1024;i++}return (i?n.toFixed(1):n)+' '+u[i]}\n"
"function rate(cur,old,dt){return old===undefined||dt<=0?'-':((cur-old)/dt).toFixed(1)}\n"
"function card(p,label,val){var d=el('div','card');d.appendChild(el('b',null,val));d.appendChild(el('small',null,label));p.appendChild(d)}\n"
"function table(head,rows){var t=el('table'),tr=el('tr');head.forEach(function(h){tr.appendChild(el('th',null,h))});t.appendChild(tr);\n"
" rows.forEach(function(r){var row=el('tr');r.forEach(function(c){var td=el('td');if(c&&c.nodeType)td.appendChild(c);else td.textContent=c;row.appendChild(td)});t.appendChild(row)});return t}\n"
"function draw(s){\n"
" var dt=prev?(s.now_msec-prev.now_msec)/1000:0,c=s.connections;\n"
" document.getElementById('meta').textContent='version '+s.version+' \\u00b7 up since '+new Date(s.start_time*1000).toLocaleString()+\n"
"  ' \\u00b7 config loads '+s.generation+' \\u00b7 worker '+s.pid+' \\u00b7 '+new Date(s.now_msec).toLocaleTimeString();\n"
" var cards=document.getElementById('cards');cards.textContent='';\n"
" card(cards,'active connections',fmt(c.active));card(cards,'reading',fmt(c.reading));card(cards,'writing',fmt(c.writing));\n"
" card(cards,'waiting',fmt(c.waiting));card(cards,'accepted',fmt(c.accepted));card(cards,'handled',fmt(c.handled));\n"
" card(cards,'requests',fmt(s.requests.total));card(cards,'requests/s',rate(s.requests.total,prev&&prev.requests.total,dt));\n"
" if(s.responses){card(cards,'4xx',fmt(s.responses['4xx']));card(cards,'5xx',fmt(s.responses['5xx']));\n"
"  card(cards,'received',bytes(s.responses.received));card(cards,'sent',bytes(s.responses.sent))}\n"
" var zr=[],zn=Object.keys(s.server_zones||{});\n"
" zn.forEach(function(n){var z=s.server_zones[n],r=z.responses,p=prev&&prev.server_zones&&prev.server_zones[n];\n"
"  var c4=el('span','c4',fmt(r['4xx'])),c5=el('span','c5',fmt(r['5xx']));\n"
"  zr.push([n,fmt(z.requests),rate(z.requests,p&&p.requests,dt),fmt(r['1xx']),fmt(r['2xx']),fmt(r['3xx']),c4,c5,fmt(r.none),bytes(z.received),bytes(z.sent)])});\n"
" var zd=document.getElementById('zones');zd.textContent='';\n"
" zd.appendChild(zn.length?table(['zone','requests','req/s','1xx','2xx','3xx','4xx','5xx','no response','received','sent'],zr):el('p','empty','no status_zone configured'));\n"
" var ud=document.getElementById('ups'),un=Object.keys(s.upstreams||{});ud.textContent='';\n"
" un.forEach(function(n){var g=s.upstreams[n];ud.appendChild(el('h3',null,n+(g.shared?'':' (this worker)')));\n"
"  ud.appendChild(table(['peer','state','weight','active','requests','fails','fails total','backup'],g.peers.map(function(p){\n"
"   return [p.server===p.name?p.name:p.server+' ('+p.name+')',el('span','st '+p.state,p.state),p.weight,p.active,fmt(p.requests),p.fails+'/'+p.max_fails,fmt(p.fails_total),p.backup?'yes':'']})))});\n"
" if(!un.length)ud.appendChild(el('p','empty','no upstreams'));\n"
" prev=s}\n"
"function poll(){var x=new XMLHttpRequest();x.open('GET',url);x.timeout=3000;\n"
" x.onload=function(){if(x.status===200){try{draw(JSON.parse(x.responseText));document.getElementById('err').textContent=''}catch(e){document.getElementById('err').textContent='bad data: '+e.message}}\n"
"  else document.getElementById('err').textContent='HTTP '+x.status};\n"
" x.onerror=x.ontimeout=function(){document.getElementById('err').textContent='connection lost'};x.send()}\n"
"poll();setInterval(poll,1000);\n"
"})();\n"
"</script></body></html>\n";

static int wants_json(pt_http_request_t *r)
{
    const char *p = r->args.data, *end = r->args.data + r->args.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t) (end - p));
        const char *e = amp ? amp : end;
        if ((size_t) (e - p) == 11 && memcmp(p, "format=json", 11) == 0)
            return 1;
        p = amp ? amp + 1 : end;
    }
    return 0;
}

static int respond(pt_http_request_t *r, int json)
{
    if (!(r->method & (PT_HTTP_GET | PT_HTTP_HEAD)))
        return 405;
    int rc = pt_http_discard_request_body(r);
    if (rc != PT_OK)
        return rc;
    if (!json) {
        pt_str_t body = { sizeof(status_html) - 1, (char *) status_html };
        pt_str_t ctype = pt_string("text/html; charset=utf-8");
        return pt_http_send_response(r, 200, &ctype, &body);
    }
    pt_stats_buf_t b;
    pt_stats_buf_init(&b, r->pool, 4096);
    status_json_render(&b, r->main_conf);
    if (b.failed)
        return 500;
    pt_str_t body = { b.len, b.data };
    pt_str_t ctype = pt_string("application/json");
    return pt_http_send_response(r, 200, &ctype, &body);
}

static int status_page_handler(pt_http_request_t *r)
{
    return respond(r, wants_json(r));
}

static int status_json_handler(pt_http_request_t *r)
{
    return respond(r, 1);
}

static const char *status_page_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = pt_http_conf_get_module_loc_conf(cf, pt_http_core_module);
    pt_str_t *value = cf->args->elts;
    clcf->handler = pt_str_eq_lit(&value[0], "status_json") ? status_json_handler
                                                             : status_page_handler;
    return pt_stats_conf(cf) ? PT_CONF_OK : PT_CONF_ERROR;
}

static const pt_command_t status_page_commands[] = {
    { "status_page", PT_CTX_SRV | PT_CTX_LOC, 0, 0, 0, status_page_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "status_json", PT_CTX_SRV | PT_CTX_LOC, 0, 0, 0, status_page_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_status_page_module = {
    .name = "http_status_page",
    .commands = status_page_commands,
    .init_worker = pt_stats_worker_init,
};
