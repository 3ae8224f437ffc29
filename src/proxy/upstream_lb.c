/* Module "http_upstream_lb": the load balancing methods of an upstream block
 * other than the default round robin: least_conn, ip_hash, hash KEY
 * [consistent], random [two [least_conn]]. Each directive points the group at
 * its balancer (balancer_lc.c, balancer_hash.c, balancer_random.c); the
 * upstream module calls its init_group once the peers exist. */
#include <string.h>

#include "balancer.h"

static const char *set_method(pt_conf_t *cf, pt_upstream_group_t *g,
                              const pt_upstream_balancer_t *b, void *conf)
{
    if (g->balancer != &pt_upstream_balancer_rr && g->balancer != NULL)
        pt_conf_error(cf, PT_LOG_WARN, 0, "load balancing method redefined");
    g->balancer = b;
    g->balancer_conf = conf;
    return PT_CONF_OK;
}

static const char *least_conn_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    (void) cmd;
    return set_method(cf, conf, &pt_upstream_balancer_lc, NULL);
}

static const char *ip_hash_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    (void) cmd;
    return set_method(cf, conf, &pt_upstream_balancer_ip_hash, NULL);
}

static const char *hash_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    pt_lb_hash_conf_t *hc = pt_pcalloc(cf->pool, sizeof(*hc));
    if (hc == NULL)
        return "failed (out of memory)";
    if (pt_http_cv_compile(cf, &value[1], &hc->key) != 0)
        return PT_CONF_ERROR;
    if (cf->args->nelts == 3) {
        if (!pt_str_eq_lit(&value[2], "consistent")) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", value[2].data);
            return PT_CONF_ERROR;
        }
        hc->consistent = 1;
    }
    return set_method(cf, conf, &pt_upstream_balancer_hash, hc);
}

static const char *random_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    pt_lb_random_conf_t *rc = pt_pcalloc(cf->pool, sizeof(*rc));
    if (rc == NULL)
        return "failed (out of memory)";
    for (size_t i = 1; i < cf->args->nelts; i++) {
        if (i == 1 && pt_str_eq_lit(&value[i], "two")) {
            rc->two = 1;
        } else if (i == 2 && rc->two && pt_str_eq_lit(&value[i], "least_conn")) {
            /* the only method for two, and the default */
        } else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", value[i].data);
            return PT_CONF_ERROR;
        }
    }
    return set_method(cf, conf, &pt_upstream_balancer_random, rc);
}

static const pt_command_t lb_commands[] = {
    { "least_conn", PT_CTX_UPS, 0, 0, 0, least_conn_cmd, PT_CONF_BLOCK_DATA, 0, NULL },
    { "ip_hash", PT_CTX_UPS, 0, 0, 0, ip_hash_cmd, PT_CONF_BLOCK_DATA, 0, NULL },
    { "hash", PT_CTX_UPS, 0, 1, 2, hash_cmd, PT_CONF_BLOCK_DATA, 0, NULL },
    { "random", PT_CTX_UPS, 0, 0, 2, random_cmd, PT_CONF_BLOCK_DATA, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_upstream_lb_module = {
    .name = "http_upstream_lb",
    .commands = lb_commands,
};
