/* The access module: allow / deny by address (IPv4 and IPv6 CIDR, unix:,
 * all), checked in the ACCESS phase in config order; the first matching rule
 * decides, a deny answers 403. Rules are inherited from the enclosing level
 * only when a level has none of its own (nginx). */
#include <stdlib.h>
#include <string.h>

#include "../http/core.h"
#include "../http/request.h"
#include "cidr.h"

extern pt_module_t pt_http_access_module;

typedef struct {
    pt_cidr_t cidr;
    int       deny;
} access_rule_t;

typedef struct {
    pt_array_t *rules;      /* access_rule_t; UNSET_PTR inherit */
} access_conf_t;

static int access_handler(pt_http_request_t *r)
{
    access_conf_t *conf = r->loc_conf ? pt_http_get_module_loc_conf(r, pt_http_access_module) : NULL;
    if (conf == NULL || conf->rules == NULL || conf->rules == PT_CONF_UNSET_PTR
        || r->connection == NULL)
        return PT_DECLINED;
    const struct sockaddr *sa = &r->connection->sockaddr.sa;
    const access_rule_t *rule = conf->rules->elts;
    for (size_t i = 0; i < conf->rules->nelts; i++) {
        if (!pt_cidr_match(&rule[i].cidr, sa))
            continue;
        if (rule[i].deny) {
            pt_log_error(PT_LOG_ERR, &r->connection->log, 0, "access forbidden by rule");
            return 403;
        }
        return PT_OK;
    }
    return PT_DECLINED;
}

static const char *rule_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    access_conf_t *acf = conf;
    pt_str_t *value = cf->args->elts;
    access_rule_t rule;
    memset(&rule, 0, sizeof(rule));
    rule.deny = value[0].len == 4;   /* "deny" vs "allow" */

    if (pt_str_eq_lit(&value[1], "all")) {
        rule.cidr.family = 0;
    } else if (pt_str_eq_lit(&value[1], "unix:")) {
        rule.cidr.family = AF_UNIX;
    } else {
        int rc = pt_cidr_parse(&value[1], &rule.cidr);
        if (rc < 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", value[1].data);
            return PT_CONF_ERROR;
        }
        if (rc == 1)
            pt_conf_error(cf, PT_LOG_WARN, 0, "low address bits of %s are meaningless", value[1].data);
    }
    if (acf->rules == PT_CONF_UNSET_PTR || acf->rules == NULL) {
        acf->rules = pt_array_create(cf->pool, 4, sizeof(access_rule_t));
        if (acf->rules == NULL)
            return "failed (out of memory)";
    }
    access_rule_t *nr = pt_array_push(acf->rules);
    if (nr == NULL)
        return "failed (out of memory)";
    *nr = rule;
    return PT_CONF_OK;
}

static void *create_loc_conf(pt_conf_t *cf)
{
    access_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf)
        conf->rules = PT_CONF_UNSET_PTR;
    return conf;
}

static const char *merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    access_conf_t *prev = parent, *conf = child;
    pt_conf_merge_ptr(conf->rules, prev->rules, NULL);
    return PT_CONF_OK;
}

static int access_init(pt_conf_t *cf)
{
    return pt_http_phase_add(cf, PT_HTTP_ACCESS_PHASE, access_handler);
}

#define ACCESS_CTX (PT_CTX_HTTP_ANY | PT_CTX_LMT)

static const pt_command_t access_commands[] = {
    { "allow", ACCESS_CTX, 0, 1, 1, rule_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "deny", ACCESS_CTX, 0, 1, 1, rule_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_access_module = {
    .name = "http_access",
    .commands = access_commands,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
    .postconfiguration = access_init,
};
