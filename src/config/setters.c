/* Generic directive setters: each stores the directive's argument into the
 * field at cmd->offset of the configuration object the parser picked. Their
 * reasons ("is duplicate", "invalid value") read as nginx's after the parser
 * prefixes them: `"keepalive_timeout" directive invalid value in F:L`. */
#include "conf.h"
#include "cycle.h"
#include "lexer.h"

#include <errno.h>
#include <string.h>

#define FIELD(conf, cmd, type) ((type *) ((char *) (conf) + (cmd)->offset))

static pt_str_t *arg(pt_conf_t *cf, size_t i)
{
    return &((pt_str_t *) cf->args->elts)[i];
}

/* Applies cmd->post bounds (pt_conf_bounds_t) to a parsed number. */
static const char *check_bounds(pt_conf_t *cf, const pt_command_t *cmd, int64_t v)
{
    const pt_conf_bounds_t *b = cmd->post;
    if (b == NULL)
        return PT_CONF_OK;
    if (b->max < 0) {
        if (v >= b->min)
            return PT_CONF_OK;
        pt_conf_error(cf, PT_LOG_EMERG, 0, "value must be equal to or greater than %lld",
                      (long long) b->min);
        return PT_CONF_ERROR;
    }
    if (v >= b->min && v <= b->max)
        return PT_CONF_OK;
    pt_conf_error(cf, PT_LOG_EMERG, 0, "value must be between %lld and %lld",
                  (long long) b->min, (long long) b->max);
    return PT_CONF_ERROR;
}

const char *pt_conf_set_flag(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    int *fp = FIELD(conf, cmd, int);
    pt_str_t *v = arg(cf, 1);

    if (*fp != PT_CONF_UNSET)
        return "is duplicate";
    if (pt_str_caseeq_lit(v, "on")) {
        *fp = 1;
    } else if (pt_str_caseeq_lit(v, "off")) {
        *fp = 0;
    } else {
        pt_conf_error(cf, PT_LOG_EMERG, 0,
                      "invalid value \"%s\" in \"%s\" directive, it must be \"on\" or \"off\"",
                      v->data, cmd->name);
        return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

const char *pt_conf_set_num(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    int64_t *np = FIELD(conf, cmd, int64_t);
    pt_str_t *v = arg(cf, 1);

    if (*np != PT_CONF_UNSET)
        return "is duplicate";
    int64_t n = pt_atoi64(v->data, v->len);
    if (n < 0)
        return "invalid number";
    *np = n;
    return check_bounds(cf, cmd, n);
}

/* Shared by size, msec and sec: parse with fn, store, check bounds. */
static const char *set_unit(pt_conf_t *cf, const pt_command_t *cmd, void *conf,
                            int64_t (*fn)(const pt_str_t *))
{
    int64_t *np = FIELD(conf, cmd, int64_t);

    if (*np != PT_CONF_UNSET)
        return "is duplicate";
    int64_t n = fn(arg(cf, 1));
    if (n < 0)
        return "invalid value";
    *np = n;
    return check_bounds(cf, cmd, n);
}

const char *pt_conf_set_size(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    return set_unit(cf, cmd, conf, pt_conf_parse_size);
}

const char *pt_conf_set_msec(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    return set_unit(cf, cmd, conf, pt_conf_parse_msec);
}

const char *pt_conf_set_sec(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    return set_unit(cf, cmd, conf, pt_conf_parse_sec);
}

const char *pt_conf_set_str(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *field = FIELD(conf, cmd, pt_str_t);

    if (field->data)
        return "is duplicate";
    *field = *arg(cf, 1);   /* tokens live in cf->pool */
    return PT_CONF_OK;
}

const char *pt_conf_set_enum(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    unsigned *up = FIELD(conf, cmd, unsigned);
    const pt_conf_enum_t *e = cmd->post;
    pt_str_t *v = arg(cf, 1);

    if (*up != PT_CONF_UNSET_UINT)
        return "is duplicate";
    for (; e && e->name; e++) {
        if (pt_str_caseeq_lit(v, e->name)) {
            *up = e->value;
            return PT_CONF_OK;
        }
    }
    pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\"", v->data);
    return PT_CONF_ERROR;
}

const char *pt_conf_set_bitmask(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    unsigned *up = FIELD(conf, cmd, unsigned);

    /* unset is PT_CONF_UNSET_UINT, or 0 for a zeroed config */
    if (*up == PT_CONF_UNSET_UINT)
        *up = 0;
    else if (*up != 0)
        return "is duplicate";

    for (size_t i = 1; i < cf->args->nelts; i++) {
        pt_str_t *v = arg(cf, i);
        const pt_conf_enum_t *e = cmd->post;
        for (; e && e->name; e++) {
            if (pt_str_caseeq_lit(v, e->name))
                break;
        }
        if (e == NULL || e->name == NULL) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\"", v->data);
            return PT_CONF_ERROR;
        }
        if (*up & e->value)
            pt_conf_error(cf, PT_LOG_WARN, 0, "duplicate value \"%s\"", v->data);
        *up |= e->value;
    }
    return PT_CONF_OK;
}

const char *pt_conf_set_str_array(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_array_t **ap = FIELD(conf, cmd, pt_array_t *);

    if (*ap == NULL || *ap == PT_CONF_UNSET_PTR) {
        *ap = pt_array_create(cf->pool, 4, sizeof(pt_str_t));
        if (*ap == NULL)
            return PT_CONF_ERROR;
    }
    pt_str_t *s = pt_array_push(*ap);
    if (s == NULL)
        return PT_CONF_ERROR;
    *s = *arg(cf, 1);
    return PT_CONF_OK;
}

const char *pt_conf_set_path(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *field = FIELD(conf, cmd, pt_str_t);

    if (field->data)
        return "is duplicate";
    pt_str_t v = *arg(cf, 1);
    if (pt_conf_full_name(cf->cycle, &v, 0) != 0)
        return PT_CONF_ERROR;
    *field = v;
    return PT_CONF_OK;
}

const char *pt_conf_set_ignored(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    if (cf->cycle->test_only)
        pt_conf_error(cf, PT_LOG_INFO, 0, "\"%s\" directive has no effect in Portico, ignored",
                      cmd->name);
    return PT_CONF_OK;
}

/* ---- error_log --------------------------------------------------------- */

static int has_prefix(const pt_str_t *s, const char *lit)
{
    size_t n = strlen(lit);
    return s->len >= n && memcmp(s->data, lit, n) == 0;
}

/* nginx opens log files after parsing, so its open() failure carries no
 * file:line; the same text is printed here, at parse time. */
const char *pt_conf_set_error_log(pt_conf_t *cf, pt_log_t **head)
{
    pt_str_t *name = arg(cf, 0);
    size_t nelts = cf->args->nelts;

    if (nelts < 2) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid number of arguments in \"%s\" directive",
                      name->data);
        return PT_CONF_ERROR;
    }

    pt_str_t file = *arg(cf, 1);
    if (has_prefix(&file, "syslog:") || has_prefix(&file, "memory:")) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"%.*s\" logging is not supported",
                      (int) (strchr(file.data, ':') - file.data + 1), file.data);
        return PT_CONF_ERROR;
    }

    int level = 0;
    for (size_t i = 2; i < nelts; i++) {
        pt_str_t *v = arg(cf, i);
        int l = pt_log_level_parse(v);
        if (l < 0 && has_prefix(v, "debug_")) {
            /* nginx's debug subsystems: all of debug here */
            level = PT_LOG_DEBUG;
            continue;
        }
        if (l < 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid log level \"%s\"", v->data);
            return PT_CONF_ERROR;
        }
        if (level != 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "duplicate log level \"%s\"", v->data);
            return PT_CONF_ERROR;
        }
        level = l;
    }
    if (level == 0)
        level = PT_LOG_ERR;

    const char *path = "stderr";
    if (!pt_str_eq_lit(&file, "stderr")) {
        if (pt_conf_full_name(cf->cycle, &file, 0) != 0)
            return PT_CONF_ERROR;
        path = file.data;
    }
    pt_open_file_t *of = pt_open_file_get(cf->pool, &cf->cycle->open_files, path);
    if (of == NULL) {
        pt__conf_log(cf, PT_LOG_EMERG, errno, "open() \"%s\" failed", path);
        return PT_CONF_ERROR;
    }

    pt_log_t *log;
    if (*head != NULL && (*head)->level == 0) {
        log = *head;               /* a zeroed placeholder: fill it */
    } else {
        log = pt_pcalloc(cf->pool, sizeof(pt_log_t));
        if (log == NULL)
            return PT_CONF_ERROR;
        if (*head == NULL) {
            *head = log;
        } else {
            pt_log_t *t = *head;
            while (t->next)
                t = t->next;
            t->next = log;
        }
    }
    log->level = level;
    log->file = of;
    return PT_CONF_OK;
}
