/* Active health checks (health.c): the one entry point other files call.
 *
 * `health_check` in a location probes the group that location's proxy_pass
 * names, with that location's settings: https when the proxy_pass is
 * https:// (proxy_ssl_* of the location: SNI name, verify, trusted
 * certificates, client certificate), and the Host header the proxy would
 * send when it is a fixed value. proxy.c owns those settings and answers
 * through the hook below. */
#ifndef PT_PROXY_HEALTH_H
#define PT_PROXY_HEALTH_H

#include "upstream.h"
#include "../tls/tls.h"

/* What a location's proxy_pass points at, for its health probes. */
typedef struct {
    pt_upstream_group_t    *group;  /* the upstream group */
    pt_tls_upstream_conf_t *tls;    /* https:// with its proxy_ssl_*; NULL: plain */
    pt_str_t                host;   /* Host header: a literal proxy_set_header Host,
                                     * else $proxy_host */
    pt_str_t                sni;    /* name for SNI and verification (proxy_ssl_name
                                     * when literal, else the proxy_pass host) */
} pt_http_proxy_probe_t;

/* Implemented in proxy.c (after its merge): 0 and *out filled when the
 * location (its loc_conf array) has a static proxy_pass to an upstream group,
 * -1 otherwise. */
int pt_http_proxy_probe_target(void **loc_conf, pt_http_proxy_probe_t *out);

#endif
