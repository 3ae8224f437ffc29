/* The stub_status module: `stub_status` in a location answers with nginx's
 * basic status page, and $connections_active / _reading / _writing /
 * _waiting read the same counters.
 *
 * The counters (pt_conn_stats) are totals across workers: they live in the
 * statistics zone (stats.c), registered here whenever there is an http { }
 * block, and every worker points pt_conn_stats into it at init_worker. They
 * survive a reload, as nginx's. */
#include <stdio.h>
#include <string.h>

#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"
#include "stats.h"

extern pt_module_t pt_http_stub_status_module;

static int stub_status_handler(pt_http_request_t *r)
{
    if (!(r->method & (PT_HTTP_GET | PT_HTTP_HEAD)))
        return 405;
    int rc = pt_http_discard_request_body(r);
    if (rc != PT_OK)
        return rc;

    const pt_conn_stats_t *s = &pt_conn_stats;
    char *body = pt_pnalloc(r->pool, 256);
    if (body == NULL)
        return 500;
    int n = snprintf(body, 256,
                     "Active connections: %u \n"
                     "server accepts handled requests\n"
                     " %llu %llu %llu \n"
                     "Reading: %u Writing: %u Waiting: %u \n",
                     s->active, (unsigned long long) s->accepted, (unsigned long long) s->handled,
                     (unsigned long long) s->requests, s->reading, s->writing, s->waiting);
    if (n < 0 || n >= 256)
        return 500;
    pt_str_t text = { (size_t) n, body };
    pt_str_t ctype = pt_string("text/plain");
    return pt_http_send_response(r, 200, &ctype, &text);
}

static int get_counter(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_conn_stats_t *s = &pt_conn_stats;
    unsigned n;
    switch (data) {
    case 0: n = s->active; break;
    case 1: n = s->reading; break;
    case 2: n = s->writing; break;
    default: n = s->waiting; break;
    }
    char *p = pt_pnalloc(r->pool, 16);
    if (p == NULL)
        return PT_ERROR;
    v->value.len = (size_t) snprintf(p, 16, "%u", n);
    v->value.data = p;
    v->no_cacheable = 1;
    return PT_OK;
}

static const char *stub_status_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = pt_http_conf_get_module_loc_conf(cf, pt_http_core_module);
    clcf->handler = stub_status_handler;
    return PT_CONF_OK;
}

static int stub_status_preconf(pt_conf_t *cf)
{
    if (pt_stats_conf(cf) == NULL)
        return -1;
    static const char *const names[] = {
        "connections_active", "connections_reading", "connections_writing", "connections_waiting"
    };
    for (uintptr_t i = 0; i < 4; i++) {
        pt_str_t name = { strlen(names[i]), (char *) names[i] };
        pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_NOCACHEABLE);
        if (v == NULL)
            return -1;
        v->get = get_counter;
        v->data = i;
    }
    return 0;
}

static const pt_command_t stub_status_commands[] = {
    /* "stub_status on" is the old form, still accepted by nginx */
    { "stub_status", PT_CTX_SRV | PT_CTX_LOC, 0, 0, 1, stub_status_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_stub_status_module = {
    .name = "http_stub_status",
    .commands = stub_status_commands,
    .preconfiguration = stub_status_preconf,
    .init_worker = pt_stats_worker_init,
};
