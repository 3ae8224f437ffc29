/* The one ordered list of modules. Its order is the order of configuration
 * hooks, of phase handlers within a phase, of filters (later modules' filters
 * run first, as nginx), and of the `-V` module list. Adding a feature = one
 * file and one line here. */
#include <stddef.h>
#include "modules.h"

extern pt_module_t pt_core_module;        /* src/process/core_module.c: main + events */
extern pt_module_t pt_http_core_module;   /* src/http/http_core.c */
extern pt_module_t pt_http_realip_module;    /* src/modules/realip.c */
extern pt_module_t pt_http_proxy_protocol_module; /* src/http/proxy_protocol.c */
extern pt_module_t pt_http_limit_rate_module; /* src/http/limit_rate.c */
extern pt_module_t pt_http_access_module;    /* src/modules/access.c */
extern pt_module_t pt_http_limit_req_module; /* src/modules/limit_req.c */
extern pt_module_t pt_http_limit_conn_module; /* src/modules/limit_conn.c */
extern pt_module_t pt_http_ssl_module;       /* src/tls/tls.c */
extern pt_module_t pt_http_acme_module;      /* src/tls/acme.c */
extern pt_module_t pt_http_v2_module;        /* src/http/h2_conn.c */
extern pt_module_t pt_http_stub_status_module; /* src/modules/stub_status.c */
extern pt_module_t pt_http_metrics_module;   /* src/modules/metrics.c */
extern pt_module_t pt_http_status_page_module; /* src/modules/status_page.c */
extern pt_module_t pt_http_rewrite_module;   /* src/modules/rewrite.c */
extern pt_module_t pt_http_map_module;       /* src/modules/map.c */
extern pt_module_t pt_http_log_module;       /* src/modules/access_log.c */
extern pt_module_t pt_http_gzip_module;      /* src/modules/gzip.c */
extern pt_module_t pt_http_headers_module;   /* src/modules/headers.c */
extern pt_module_t pt_http_try_files_module; /* src/modules/try_files.c */
extern pt_module_t pt_http_index_module;     /* src/modules/index.c */
extern pt_module_t pt_http_autoindex_module; /* src/modules/autoindex.c */
extern pt_module_t pt_http_static_module;    /* src/modules/static.c */
extern pt_module_t pt_http_upstream_module;  /* src/proxy/upstream_conf.c */
extern pt_module_t pt_http_upstream_lb_module; /* src/proxy/upstream_lb.c */
extern pt_module_t pt_http_upstream_zone_module; /* src/proxy/upstream_zone.c */
extern pt_module_t pt_http_upstream_hc_module; /* src/proxy/health.c */
extern pt_module_t pt_http_upstream_resolve_module; /* src/proxy/resolver.c */
extern pt_module_t pt_http_api_module;       /* src/proxy/api.c */
extern pt_module_t pt_http_proxy_module;     /* src/proxy/proxy.c */
extern pt_module_t pt_http_proxy_cache_module; /* src/proxy/cache.c */

pt_module_t *pt_modules[] = {
    &pt_core_module,
    &pt_http_core_module,
    &pt_http_realip_module,
    &pt_http_proxy_protocol_module, /* $proxy_protocol_* */
    &pt_http_limit_rate_module, /* $limit_rate; the writers ask it before each write */
    &pt_http_access_module,
    &pt_http_limit_req_module,  /* preaccess: limit_req before limit_conn (nginx) */
    &pt_http_limit_conn_module,
    &pt_http_ssl_module,
    &pt_http_acme_module,       /* http-01 answers in POST_READ, before any rewrite */
    &pt_http_v2_module,
    &pt_http_stub_status_module,
    &pt_http_metrics_module,
    &pt_http_status_page_module,
    &pt_http_rewrite_module,
    &pt_http_map_module,
    &pt_http_log_module,
    &pt_http_gzip_module,       /* before headers: add_header runs first (nginx) */
    &pt_http_headers_module,
    &pt_http_try_files_module,
    &pt_http_index_module,      /* content: index, then autoindex, then static */
    &pt_http_autoindex_module,
    &pt_http_static_module,
    &pt_http_upstream_module,
    &pt_http_upstream_lb_module,
    &pt_http_upstream_zone_module,
    &pt_http_upstream_hc_module,
    &pt_http_upstream_resolve_module,
    &pt_http_api_module,
    &pt_http_proxy_module,
    &pt_http_proxy_cache_module, /* after proxy: its filters see the response first */
};

const size_t pt_modules_n = sizeof(pt_modules) / sizeof(pt_modules[0]);
