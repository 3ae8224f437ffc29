/* The variable engine: the registry of variables (in the http core main conf),
 * built-in variables, prefix families ($http_*, $sent_http_*, $cookie_*,
 * $arg_*), per-request value cache, complex values and PCRE2 regexes.
 *
 * Config time (master): every $name a directive uses becomes an index into
 * cmcf->variables. Built-in names are instantiated from a static table the
 * first time a configuration refers to them, so a request only caches the
 * variables its configuration actually uses. Request time (workers): values
 * live in r->variables[index], allocated on first use from r->pool. */
#include "variables.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "../core/time.h"
#include "core.h"

/* Internal record flags (above the public PT_VAR_* bits). */
#define VAR_DEFINED 0x100    /* added by a module/directive, not only referenced */

/* ------------------------------------------------------------------------ */
/* Registry                                                                  */

static pt_http_core_main_conf_t *conf_cmcf(pt_conf_t *cf)
{
    if (cf->http_ctx == NULL || cf->http_ctx->main_conf == NULL)
        return NULL;
    return cf->http_ctx->main_conf[pt_http_core_module.index];
}

static pt_http_core_main_conf_t *req_cmcf(pt_http_request_t *r)
{
    if (r->main_conf == NULL)
        return NULL;
    return r->main_conf[pt_http_core_module.index];
}

static int get_not_found(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    v->value.len = 0;
    v->value.data = (char *) "";
    v->not_found = 1;
    return PT_OK;
}

/* Built-in prefix families (their getters are further down). */
static int get_http_header(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data);
static int get_sent_http_header(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data);
static int get_cookie(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data);
static int get_arg(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data);

typedef struct {
    const char        *name;
    pt_http_var_get_cb get;
    pt_http_var_set_cb set;
    uintptr_t          data;
    unsigned           flags;
} builtin_var_t;

static const builtin_var_t builtin_prefixes[] = {
    { "http_", get_http_header, NULL, 0, PT_VAR_PREFIX },
    { "sent_http_", get_sent_http_header, NULL, 0, PT_VAR_PREFIX | PT_VAR_NOCACHEABLE },
    { "cookie_", get_cookie, NULL, 0, PT_VAR_PREFIX },
    { "arg_", get_arg, NULL, 0, PT_VAR_PREFIX | PT_VAR_NOCACHEABLE },
    /* the proxy module takes this one over (weak) */
    { "upstream_http_", get_not_found, NULL, 0, PT_VAR_PREFIX | PT_VAR_WEAK | PT_VAR_NOCACHEABLE },
    { "upstream_cookie_", get_not_found, NULL, 0, PT_VAR_PREFIX | PT_VAR_WEAK | PT_VAR_NOCACHEABLE },
    { "upstream_trailer_", get_not_found, NULL, 0, PT_VAR_PREFIX | PT_VAR_WEAK | PT_VAR_NOCACHEABLE },
    { NULL, NULL, NULL, 0, 0 }
};

static const builtin_var_t builtin_vars[];

static int ensure_arrays(pt_conf_t *cf, pt_http_core_main_conf_t *cmcf)
{
    if (cmcf->variables.elts == NULL
        && pt_array_init(&cmcf->variables, cf->pool, 64, sizeof(pt_http_var_t)) != 0)
        return -1;
    if (cmcf->prefix_variables.elts == NULL
        && pt_array_init(&cmcf->prefix_variables, cf->pool, 8, sizeof(pt_http_var_t)) != 0)
        return -1;
    /* variables_data marks the built-in families as registered (the core
     * module may have made the arrays already) */
    if (cmcf->variables_data == NULL) {
        cmcf->variables_data = (void *) builtin_prefixes;
        for (const builtin_var_t *b = builtin_prefixes; b->name; b++) {
            pt_http_var_t *v = pt_array_push(&cmcf->prefix_variables);
            if (v == NULL)
                return -1;
            v->name.len = strlen(b->name);
            v->name.data = (char *) b->name;
            v->get = b->get;
            v->set = b->set;
            v->data = b->data;
            v->flags = b->flags | VAR_DEFINED;
            v->index = (unsigned) (cmcf->prefix_variables.nelts - 1);
        }
    }
    return 0;
}

static int name_lower(pt_conf_t *cf, const pt_str_t *name, pt_str_t *out)
{
    out->data = pt_pnalloc(cf->pool, name->len + 1);
    if (out->data == NULL)
        return -1;
    pt_strlow(out->data, name->data, name->len);
    out->data[name->len] = '\0';
    out->len = name->len;
    return 0;
}

static pt_http_var_t *find_var(pt_array_t *a, const pt_str_t *name)
{
    pt_http_var_t *v = a->elts;
    for (size_t i = 0; i < a->nelts; i++)
        if (pt_str_caseeq(&v[i].name, name))
            return &v[i];
    return NULL;
}

static const builtin_var_t *find_builtin(const pt_str_t *name)
{
    for (const builtin_var_t *b = builtin_vars; b->name; b++)
        if (pt_str_caseeq_lit(name, b->name))
            return b;
    return NULL;
}

/* The prefix family a name belongs to (the longest matching prefix). */
static pt_http_var_t *find_prefix(pt_array_t *a, const pt_str_t *name)
{
    pt_http_var_t *v = a->elts, *best = NULL;
    for (size_t i = 0; i < a->nelts; i++) {
        if (name->len > v[i].name.len
            && pt_strncasecmp(name->data, v[i].name.data, v[i].name.len) == 0
            && (best == NULL || v[i].name.len > best->name.len))
            best = &v[i];
    }
    return best;
}

static pt_http_var_t *push_var(pt_conf_t *cf, pt_http_core_main_conf_t *cmcf, const pt_str_t *name)
{
    pt_http_var_t *v = pt_array_push(&cmcf->variables);
    if (v == NULL)
        return NULL;
    if (name_lower(cf, name, &v->name) != 0) {
        cmcf->variables.nelts--;
        return NULL;
    }
    v->index = (unsigned) (cmcf->variables.nelts - 1);
    return v;
}

/* Fills v from a prefix family: data points at a copy of the suffix. */
static int bind_prefix(pt_conf_t *cf, pt_http_var_t *v, const pt_http_var_t *prefix)
{
    pt_str_t *suffix = pt_palloc(cf->pool, sizeof(*suffix));
    if (suffix == NULL)
        return -1;
    suffix->len = v->name.len - prefix->name.len;
    suffix->data = v->name.data + prefix->name.len;
    v->get = prefix->get;
    v->set = prefix->set;
    v->data = (uintptr_t) suffix;
    v->flags = (prefix->flags & ~(unsigned) (PT_VAR_PREFIX | PT_VAR_WEAK)) | VAR_DEFINED;
    return 0;
}

static void bind_builtin(pt_http_var_t *v, const builtin_var_t *b)
{
    v->get = b->get;
    v->set = b->set;
    v->data = b->data;
    v->flags = b->flags | VAR_DEFINED;
}

static void log_duplicate(pt_conf_t *cf, const pt_str_t *name)
{
    pt_conf_error(cf, PT_LOG_EMERG, 0, "the duplicate \"%.*s\" variable", (int) name->len, name->data);
}

pt_http_var_t *pt_http_var_add(pt_conf_t *cf, const pt_str_t *name, unsigned flags)
{
    pt_http_core_main_conf_t *cmcf = conf_cmcf(cf);
    if (cmcf == NULL || name->len == 0 || ensure_arrays(cf, cmcf) != 0)
        return NULL;

    if (flags & PT_VAR_PREFIX) {
        pt_http_var_t *v = find_var(&cmcf->prefix_variables, name);
        if (v) {
            if (v->flags & PT_VAR_WEAK) {
                v->flags = flags | VAR_DEFINED;
                return v;
            }
            if (!(v->flags & PT_VAR_CHANGEABLE) || !(flags & PT_VAR_CHANGEABLE)) {
                log_duplicate(cf, name);
                return NULL;
            }
            return v;
        }
        v = pt_array_push(&cmcf->prefix_variables);
        if (v == NULL || name_lower(cf, name, &v->name) != 0)
            return NULL;
        v->flags = flags | VAR_DEFINED;
        v->index = (unsigned) (cmcf->prefix_variables.nelts - 1);
        return v;
    }

    pt_http_var_t *v = find_var(&cmcf->variables, name);
    if (v == NULL) {
        const builtin_var_t *b = find_builtin(name);
        if (b) {
            /* a built-in (e.g. `set $args`): instantiate, then apply the
             * duplicate rules below */
            v = push_var(cf, cmcf, name);
            if (v == NULL)
                return NULL;
            bind_builtin(v, b);
        }
    }
    if (v) {
        if (!(v->flags & VAR_DEFINED)) {
            /* referenced earlier ($x used before `set $x` / map) */
            v->flags = flags | VAR_DEFINED;
            return v;
        }
        if (v->flags & PT_VAR_WEAK) {
            v->flags = (flags & ~(unsigned) PT_VAR_WEAK) | VAR_DEFINED;
            return v;
        }
        if (!(v->flags & PT_VAR_CHANGEABLE) || !(flags & PT_VAR_CHANGEABLE)) {
            log_duplicate(cf, name);
            return NULL;
        }
        if (!(flags & PT_VAR_WEAK))
            v->flags &= ~(unsigned) PT_VAR_WEAK;
        return v;
    }

    v = push_var(cf, cmcf, name);
    if (v == NULL)
        return NULL;
    v->flags = flags | VAR_DEFINED;
    return v;
}

int pt_http_var_index(pt_conf_t *cf, const pt_str_t *name)
{
    pt_http_core_main_conf_t *cmcf = conf_cmcf(cf);
    if (cmcf == NULL || name->len == 0 || ensure_arrays(cf, cmcf) != 0)
        return -1;

    pt_http_var_t *v = find_var(&cmcf->variables, name);
    if (v)
        return (int) v->index;

    v = push_var(cf, cmcf, name);
    if (v == NULL)
        return -1;
    const builtin_var_t *b = find_builtin(name);
    if (b) {
        bind_builtin(v, b);
        return (int) v->index;
    }
    pt_http_var_t *prefix = find_prefix(&cmcf->prefix_variables, name);
    if (prefix) {
        unsigned idx = v->index;
        if (bind_prefix(cf, v, prefix) != 0)
            return -1;
        return (int) idx;
    }
    /* pending: map/set may define it later; checked at init */
    return (int) v->index;
}

int pt_http_variables_init(pt_conf_t *cf)
{
    pt_http_core_main_conf_t *cmcf = conf_cmcf(cf);
    if (cmcf == NULL)
        return 0;
    if (ensure_arrays(cf, cmcf) != 0)
        return -1;
    pt_http_var_t *v = cmcf->variables.elts;
    for (size_t i = 0; i < cmcf->variables.nelts; i++) {
        if (v[i].get)
            continue;
        if (v[i].flags & VAR_DEFINED) {
            if (v[i].set == NULL)
                v[i].get = get_not_found;
            continue;
        }
        pt_http_var_t *prefix = find_prefix(&cmcf->prefix_variables, &v[i].name);
        if (prefix && prefix->get) {
            if (bind_prefix(cf, &v[i], prefix) != 0)
                return -1;
            continue;
        }
        pt_log_error(PT_LOG_EMERG, cf->log, 0, "unknown \"%.*s\" variable",
                     (int) v[i].name.len, v[i].name.data);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Request time                                                              */

/* r->variables: a count followed by the values. The count guards against a
 * configuration that gained variables after the array was made (tests, and
 * any request that outlives nothing but its own config: cheap insurance). */
typedef struct {
    size_t              n;
    pt_http_var_value_t v[];
} var_values_t;

static pt_http_var_value_t *values_of(pt_http_request_t *r, pt_http_core_main_conf_t *cmcf)
{
    var_values_t *vv = r->variables;
    size_t n = cmcf->variables.nelts ? cmcf->variables.nelts : 1;
    if (vv == NULL || vv->n < n) {
        var_values_t *nv = pt_pcalloc(r->pool, sizeof(*nv) + n * sizeof(pt_http_var_value_t));
        if (nv == NULL)
            return NULL;
        nv->n = n;
        if (vv)
            memcpy(nv->v, vv->v, vv->n * sizeof(pt_http_var_value_t));
        r->variables = vv = nv;
    }
    return vv->v;
}

static int run_getter(pt_http_request_t *r, const pt_http_var_t *var, pt_http_var_value_t *v)
{
    v->value.len = 0;
    v->value.data = (char *) "";
    v->valid = 0;
    v->not_found = 0;
    v->no_cacheable = 0;
    if (var->get == NULL || var->get(r, v, var->data) != PT_OK) {
        if (var->get == NULL) {
            v->not_found = 1;
            return 0;
        }
        return -1;
    }
    if (!v->not_found)
        v->valid = 1;
    else
        v->value.len = 0;
    if (var->flags & PT_VAR_NOCACHEABLE)
        v->no_cacheable = 1;
    return 0;
}

pt_http_var_value_t *pt_http_var_get(pt_http_request_t *r, unsigned index)
{
    pt_http_core_main_conf_t *cmcf = req_cmcf(r);
    if (cmcf == NULL || index >= cmcf->variables.nelts)
        return NULL;
    pt_http_var_value_t *vals = values_of(r, cmcf);
    if (vals == NULL)
        return NULL;
    pt_http_var_value_t *v = &vals[index];
    if ((v->valid || v->not_found) && !v->no_cacheable)
        return v;
    const pt_http_var_t *var = &((pt_http_var_t *) cmcf->variables.elts)[index];
    if (run_getter(r, var, v) != 0)
        return NULL;
    return v;
}

pt_http_var_value_t *pt_http_var_get_by_name(pt_http_request_t *r, const pt_str_t *name)
{
    pt_http_core_main_conf_t *cmcf = req_cmcf(r);
    if (cmcf == NULL)
        return NULL;
    pt_http_var_t *var = find_var(&cmcf->variables, name);
    if (var)
        return pt_http_var_get(r, var->index);

    pt_http_var_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    const builtin_var_t *b = find_builtin(name);
    if (b) {
        tmp.get = b->get;
        tmp.data = b->data;
        tmp.flags = b->flags;
    } else {
        pt_http_var_t *prefix = find_prefix(&cmcf->prefix_variables, name);
        if (prefix == NULL)
            return NULL;
        pt_str_t *suffix = pt_palloc(r->pool, sizeof(*suffix));
        if (suffix == NULL)
            return NULL;
        suffix->len = name->len - prefix->name.len;
        suffix->data = pt_pnalloc(r->pool, suffix->len + 1);
        if (suffix->data == NULL)
            return NULL;
        pt_strlow(suffix->data, name->data + prefix->name.len, suffix->len);
        tmp.get = prefix->get;
        tmp.data = (uintptr_t) suffix;
        tmp.flags = prefix->flags;
    }
    pt_http_var_value_t *v = pt_pcalloc(r->pool, sizeof(*v));
    if (v == NULL || run_getter(r, &tmp, v) != 0)
        return NULL;
    return v;
}

int pt_http_var_set(pt_http_request_t *r, unsigned index, const pt_str_t *value)
{
    pt_http_core_main_conf_t *cmcf = req_cmcf(r);
    if (cmcf == NULL || index >= cmcf->variables.nelts)
        return -1;
    const pt_http_var_t *var = &((pt_http_var_t *) cmcf->variables.elts)[index];
    pt_http_var_value_t *vals = values_of(r, cmcf);
    if (vals == NULL)
        return -1;
    pt_http_var_value_t tmp = { .value = *value, .valid = 1 };
    if (var->set) {
        var->set(r, &tmp, var->data);
        /* the getter reads the new state next time */
        vals[index].valid = 0;
        vals[index].not_found = 0;
        return 0;
    }
    vals[index] = tmp;
    return 0;
}

size_t pt_http_var_msec_text(char *buf, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    int n = sprintf(buf, "%lld.%03lld", (long long) (ms / 1000), (long long) (ms % 1000));
    return n > 0 ? (size_t) n : 0;
}

/* ------------------------------------------------------------------------ */
/* Built-in getters                                                          */

static int set_str(pt_http_var_value_t *v, const pt_str_t *s)
{
    v->value = *s;
    if (v->value.data == NULL)
        v->value.data = (char *) "";
    return PT_OK;
}

static int set_lit(pt_http_var_value_t *v, const char *s)
{
    v->value.len = strlen(s);
    v->value.data = (char *) s;
    return PT_OK;
}

/* Formats into r->pool. */
static int set_printf(pt_http_request_t *r, pt_http_var_value_t *v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_printf(pt_http_request_t *r, pt_http_var_value_t *v, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return PT_ERROR;
    if ((size_t) n >= sizeof(tmp))
        n = sizeof(tmp) - 1;
    v->value.data = pt_pnalloc(r->pool, (size_t) n);
    if (v->value.data == NULL)
        return PT_ERROR;
    memcpy(v->value.data, tmp, (size_t) n);
    v->value.len = (size_t) n;
    return PT_OK;
}

static int set_copy(pt_http_request_t *r, pt_http_var_value_t *v, const char *p, size_t n)
{
    v->value.data = pt_pnalloc(r->pool, n ? n : 1);
    if (v->value.data == NULL)
        return PT_ERROR;
    memcpy(v->value.data, p, n);
    v->value.len = n;
    return PT_OK;
}

/* Generic pt_str_t field of the request at offset `data`. */
static int get_request_str(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_str_t *s = (const pt_str_t *) ((const char *) r + data);
    if (s->data == NULL) {
        v->not_found = 1;
        return PT_OK;
    }
    return set_str(v, s);
}

static int get_request_str_nonempty(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_str_t *s = (const pt_str_t *) ((const char *) r + data);
    if (s->data == NULL || s->len == 0) {
        v->not_found = 1;
        return PT_OK;
    }
    return set_str(v, s);
}

static pt_http_core_srv_conf_t *req_cscf(pt_http_request_t *r)
{
    return r->srv_conf ? r->srv_conf[pt_http_core_module.index] : NULL;
}

static pt_http_core_loc_conf_t *req_clcf(pt_http_request_t *r)
{
    return r->loc_conf ? r->loc_conf[pt_http_core_module.index] : NULL;
}

static int get_host(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    if (r->headers_in.server.len)
        return set_str(v, &r->headers_in.server);
    pt_http_core_srv_conf_t *cscf = req_cscf(r);
    if (cscf && cscf->server_name.data)
        return set_str(v, &cscf->server_name);
    return set_lit(v, "");
}

static int get_server_name(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_http_core_srv_conf_t *cscf = req_cscf(r);
    if (cscf && cscf->server_name.data)
        return set_str(v, &cscf->server_name);
    return set_lit(v, "");
}

static int get_hostname(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    static char host[HOST_NAME_MAX + 1];
    if (host[0] == '\0' && gethostname(host, sizeof(host) - 1) != 0)
        strcpy(host, "localhost");
    return set_lit(v, host);
}

static int get_scheme(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    return set_lit(v, r->connection && r->connection->ssl ? "https" : "http");
}

static int get_https(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    return set_lit(v, r->connection && r->connection->ssl ? "on" : "");
}

static int get_is_args(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    return set_lit(v, r->args.len ? "?" : "");
}

static void set_args(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    r->args = v->value;
}

static int sockaddr_port(const pt_sockaddr_t *sa)
{
    switch (sa->sa.sa_family) {
    case AF_INET:
        return ntohs(sa->sin.sin_port);
    case AF_INET6:
        return ntohs(sa->sin6.sin6_port);
    default:
        return -1;
    }
}

static int get_remote_addr(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_conn_t *c = r->connection;
    if (c == NULL)
        return set_lit(v, "");
    if (c->addr_text.data)
        return set_str(v, &c->addr_text);
    char buf[INET6_ADDRSTRLEN + 8];
    size_t n = pt_sockaddr_text(&c->sockaddr.sa, c->socklen, buf, sizeof(buf), 0);
    return set_copy(r, v, buf, n);
}

static int get_remote_port(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    int port = r->connection ? sockaddr_port(&r->connection->sockaddr) : -1;
    if (port <= 0)   /* unix socket, or an address from realip without a port */
        return set_lit(v, "");
    return set_printf(r, v, "%d", port);
}

static int get_binary_remote_addr(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_conn_t *c = r->connection;
    if (c == NULL)
        return set_lit(v, "");
    switch (c->sockaddr.sa.sa_family) {
    case AF_INET:
        return set_copy(r, v, (const char *) &c->sockaddr.sin.sin_addr, 4);
    case AF_INET6:
        return set_copy(r, v, (const char *) &c->sockaddr.sin6.sin6_addr, 16);
    default:
        return set_lit(v, "");
    }
}

static int get_server_addr(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_conn_t *c = r->connection;
    if (c == NULL || pt_conn_local_addr(c) != 0)
        return set_lit(v, "");
    if (c->local_sockaddr.sa.sa_family == AF_UNIX)
        return set_lit(v, "unix:");
    char buf[INET6_ADDRSTRLEN + 8];
    size_t n = pt_sockaddr_text(&c->local_sockaddr.sa, c->local_socklen, buf, sizeof(buf), 0);
    return set_copy(r, v, buf, n);
}

static int get_server_port(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_conn_t *c = r->connection;
    if (c == NULL || pt_conn_local_addr(c) != 0)
        return set_lit(v, "");
    int port = sockaddr_port(&c->local_sockaddr);
    if (port < 0)
        return set_lit(v, "");
    return set_printf(r, v, "%d", port);
}

/* xoshiro256** per process, seeded from getrandom(2); reseeded after fork. */
static uint64_t rng_s[4];
static pid_t rng_pid;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
    pid_t pid = getpid();
    if (pid != rng_pid) {
        ssize_t n = getrandom(rng_s, sizeof(rng_s), GRND_NONBLOCK);
        if (n != (ssize_t) sizeof(rng_s)) {
            /* not fatal: the id only needs to be unlikely to repeat */
            rng_s[0] = (uint64_t) pid * 0x9E3779B97F4A7C15ULL ^ (uint64_t) pt_time_msec;
            rng_s[1] = (uint64_t) (uintptr_t) &n ^ 0xD1B54A32D192ED03ULL;
            rng_s[2] = 0x94D049BB133111EBULL;
            rng_s[3] = (uint64_t) pt_current_msec | 1;
        }
        if ((rng_s[0] | rng_s[1] | rng_s[2] | rng_s[3]) == 0)
            rng_s[0] = 1;
        rng_pid = pid;
    }
    uint64_t result = rotl(rng_s[1] * 5, 7) * 9;
    uint64_t t = rng_s[1] << 17;
    rng_s[2] ^= rng_s[0];
    rng_s[3] ^= rng_s[1];
    rng_s[1] ^= rng_s[2];
    rng_s[0] ^= rng_s[3];
    rng_s[2] ^= t;
    rng_s[3] = rotl(rng_s[3], 45);
    return result;
}

static int get_request_id(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    if (r->request_id[0] == '\0') {
        static const char hex[] = "0123456789abcdef";
        uint64_t a = rng_next(), b = rng_next();
        for (int i = 0; i < 16; i++) {
            r->request_id[i] = hex[(a >> (60 - 4 * i)) & 0xf];
            r->request_id[16 + i] = hex[(b >> (60 - 4 * i)) & 0xf];
        }
        r->request_id[32] = '\0';
    }
    v->value.data = r->request_id;
    v->value.len = 32;
    return PT_OK;
}

static int get_request_length(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    return set_printf(r, v, "%lld", (long long) r->request_length);
}

static int get_request_time(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    char buf[32];
    size_t n = pt_http_var_msec_text(buf, pt_time_msec - r->start_msec);
    return set_copy(r, v, buf, n);
}

static int get_msec(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    char buf[32];
    size_t n = pt_http_var_msec_text(buf, pt_time_msec);
    return set_copy(r, v, buf, n);
}

static int get_status(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    int status = r->err_status ? r->err_status : r->headers_out.status;
    if (status < 0)
        status = 0;
    return set_printf(r, v, "%03d", status);
}

static int get_int64_field(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    int64_t n = *(const int64_t *) ((const char *) r + data);
    return set_printf(r, v, "%lld", (long long) (n < 0 ? 0 : n));
}

static int get_connection(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    return set_printf(r, v, "%llu", r->connection ? (unsigned long long) r->connection->number : 0ULL);
}

static int get_connection_requests(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    return set_printf(r, v, "%llu", r->connection ? (unsigned long long) r->connection->requests : 0ULL);
}

/* Cached time strings: copied, they are rewritten every second. */
static int get_time_str(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_str_t *s = (const pt_str_t *) data;
    if (s->len == 0)
        pt_time_update();
    return set_copy(r, v, s->data, s->len);
}

static int get_version(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
#ifdef PT_VERSION
    return set_lit(v, PT_VERSION);
#else
    return set_lit(v, "0.0.0");
#endif
}

static int get_pid(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    return set_printf(r, v, "%ld", (long) getpid());
}

static pt_http_header_t *find_in(pt_array_t *list, const char *name, size_t len)
{
    pt_http_header_t *h = list->elts;
    for (size_t i = 0; i < list->nelts; i++) {
        if (!h[i].deleted && h[i].name.len == len && pt_strncasecmp(h[i].name.data, name, len) == 0)
            return &h[i];
    }
    return NULL;
}

static int get_content_length(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_http_header_t *h = r->headers_in.content_length;
    if (h == NULL && r->headers_in.list.elts)
        h = find_in(&r->headers_in.list, "Content-Length", 14);
    if (h)
        return set_str(v, &h->value);
    v->not_found = 1;
    return PT_OK;
}

static int get_content_type(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_http_header_t *h = r->headers_in.list.elts ? find_in(&r->headers_in.list, "Content-Type", 12) : NULL;
    if (h)
        return set_str(v, &h->value);
    v->not_found = 1;
    return PT_OK;
}

static int get_limit_rate(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_http_core_loc_conf_t *clcf = req_clcf(r);
    long long rate = clcf && clcf->limit_rate > 0 ? (long long) clcf->limit_rate : 0;
    return set_printf(r, v, "%lld", rate);
}

/* The location's root (or alias), evaluated when it has variables. */
static int loc_root(pt_http_request_t *r, pt_str_t *root)
{
    pt_http_core_loc_conf_t *clcf = req_clcf(r);
    if (clcf == NULL)
        return 0;
    if (clcf->root_cv) {
        /* guard against a root that refers to $document_root itself */
        static int depth;
        if (depth)
            return 0;
        depth++;
        int rc = pt_http_cv_eval(r, clcf->root_cv, root);
        depth--;
        return rc == 0 ? 1 : -1;
    }
    if (clcf->root.data == NULL)
        return 0;
    *root = clcf->root;
    return 1;
}

static int get_document_root(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_str_t root;
    int rc = loc_root(r, &root);
    if (rc < 0)
        return PT_ERROR;
    if (rc == 0) {
        v->not_found = 1;
        return PT_OK;
    }
    /* nginx strips a trailing slash of the root */
    if (root.len > 1 && root.data[root.len - 1] == '/')
        root.len--;
    return set_str(v, &root);
}

static int get_realpath_root(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    pt_str_t root;
    int rc = loc_root(r, &root);
    if (rc < 0)
        return PT_ERROR;
    if (rc == 0) {
        v->not_found = 1;
        return PT_OK;
    }
    char path[PATH_MAX], real[PATH_MAX];
    size_t n = root.len < sizeof(path) - 1 ? root.len : sizeof(path) - 1;
    memcpy(path, root.data, n);
    path[n] = '\0';
    if (realpath(path, real) == NULL) {
        pt_log_error(PT_LOG_CRIT, r->connection ? &r->connection->log : NULL, errno,
                     "realpath() \"%s\" failed", path);
        return PT_ERROR;
    }
    return set_copy(r, v, real, strlen(real));
}

/* ---- prefix families ---- */

/* Header name equals the variable suffix: case-insensitive, '_' matches '-'. */
static int header_name_is(const pt_str_t *hname, const pt_str_t *suffix)
{
    if (hname->len != suffix->len)
        return 0;
    for (size_t i = 0; i < suffix->len; i++) {
        unsigned char a = pt_tolower((unsigned char) hname->data[i]);
        unsigned char b = pt_tolower((unsigned char) suffix->data[i]);
        if (a == '-')
            a = '_';
        if (b == '-')
            b = '_';
        if (a != b)
            return 0;
    }
    return 1;
}

/* All headers of list named like suffix, joined with sep ("; " for Cookie). */
static int join_headers(pt_http_request_t *r, pt_http_var_value_t *v, pt_array_t *list,
                        const pt_str_t *suffix, const char *sep)
{
    if (list->elts == NULL) {
        v->not_found = 1;
        return PT_OK;
    }
    pt_http_header_t *h = list->elts;
    pt_http_header_t *first = NULL;
    size_t total = 0, count = 0, seplen = strlen(sep);
    for (size_t i = 0; i < list->nelts; i++) {
        if (h[i].deleted || !header_name_is(&h[i].name, suffix))
            continue;
        if (first == NULL)
            first = &h[i];
        total += h[i].value.len + (count ? seplen : 0);
        count++;
    }
    if (first == NULL) {
        v->not_found = 1;
        return PT_OK;
    }
    if (count == 1)
        return set_str(v, &first->value);
    char *p = pt_pnalloc(r->pool, total);
    if (p == NULL)
        return PT_ERROR;
    v->value.data = p;
    v->value.len = total;
    count = 0;
    for (size_t i = 0; i < list->nelts; i++) {
        if (h[i].deleted || !header_name_is(&h[i].name, suffix))
            continue;
        if (count++) {
            memcpy(p, sep, seplen);
            p += seplen;
        }
        memcpy(p, h[i].value.data, h[i].value.len);
        p += h[i].value.len;
    }
    return PT_OK;
}

static int get_http_header(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_str_t *suffix = (const pt_str_t *) data;
    const char *sep = pt_str_caseeq_lit(suffix, "cookie") ? "; " : ", ";
    return join_headers(r, v, &r->headers_in.list, suffix, sep);
}

static int get_sent_http_header(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_str_t *suffix = (const pt_str_t *) data;
    pt_http_headers_out_t *ho = &r->headers_out;
    if (pt_str_caseeq_lit(suffix, "content_type")) {
        if (ho->content_type.len == 0) {
            v->not_found = 1;
            return PT_OK;
        }
        return set_str(v, &ho->content_type);
    }
    if (pt_str_caseeq_lit(suffix, "content_length")) {
        if (ho->content_length_n < 0) {
            /* a header set by a handler, if any */
            return join_headers(r, v, &ho->list, suffix, ", ");
        }
        return set_printf(r, v, "%lld", (long long) ho->content_length_n);
    }
    if (pt_str_caseeq_lit(suffix, "location") && ho->location && !ho->location->deleted)
        return set_str(v, &ho->location->value);
    if (pt_str_caseeq_lit(suffix, "last_modified") && ho->last_modified_time >= 0
        && (ho->list.elts == NULL || find_in(&ho->list, "Last-Modified", 13) == NULL)) {
        char buf[64];
        size_t n = pt_http_time(buf, ho->last_modified_time);
        return set_copy(r, v, buf, n);
    }
    return join_headers(r, v, &ho->list, suffix, ", ");
}

/* Finds name=value in a list of items separated by sep (args: '&', cookies:
 * ';' with optional spaces). Names compare case-insensitively, as nginx. */
static int find_item(const pt_str_t *s, const pt_str_t *name, char sep, pt_str_t *out)
{
    const char *p = s->data, *end = s->data + s->len;
    while (p < end) {
        while (sep == ';' && p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *item_end = memchr(p, sep, (size_t) (end - p));
        if (item_end == NULL)
            item_end = end;
        if ((size_t) (item_end - p) > name->len && p[name->len] == '='
            && pt_strncasecmp(p, name->data, name->len) == 0) {
            out->data = (char *) p + name->len + 1;
            out->len = (size_t) (item_end - out->data);
            if (sep == ';')
                while (out->len && (out->data[out->len - 1] == ' ' || out->data[out->len - 1] == '\t'))
                    out->len--;
            return 1;
        }
        p = item_end + 1;
    }
    return 0;
}

static int get_cookie(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_str_t *name = (const pt_str_t *) data;
    pt_http_header_t *h = r->headers_in.list.elts;
    for (size_t i = 0; i < r->headers_in.list.nelts; i++) {
        if (h[i].deleted || !pt_str_caseeq_lit(&h[i].name, "cookie"))
            continue;
        pt_str_t val;
        if (find_item(&h[i].value, name, ';', &val))
            return set_str(v, &val);
    }
    v->not_found = 1;
    return PT_OK;
}

static int get_arg(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_str_t *name = (const pt_str_t *) data;
    pt_str_t val;
    if (r->args.len && find_item(&r->args, name, '&', &val))
        return set_str(v, &val);
    v->not_found = 1;
    return PT_OK;
}

static int get_request_body(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    /* the request body is not kept in memory yet */
    v->not_found = 1;
    return PT_OK;
}

#define RSTR(f) offsetof(pt_http_request_t, f)

static const builtin_var_t builtin_vars[] = {
    { "host", get_host, NULL, 0, 0 },
    { "hostname", get_hostname, NULL, 0, 0 },
    { "remote_addr", get_remote_addr, NULL, 0, PT_VAR_NOCACHEABLE },
    { "remote_port", get_remote_port, NULL, 0, PT_VAR_NOCACHEABLE },
    { "binary_remote_addr", get_binary_remote_addr, NULL, 0, PT_VAR_NOCACHEABLE },
    { "server_addr", get_server_addr, NULL, 0, 0 },
    { "server_port", get_server_port, NULL, 0, 0 },
    { "server_name", get_server_name, NULL, 0, 0 },
    { "server_protocol", get_request_str, NULL, RSTR(http_protocol), 0 },
    { "scheme", get_scheme, NULL, 0, 0 },
    { "https", get_https, NULL, 0, 0 },
    { "request", get_request_str, NULL, RSTR(request_line), 0 },
    { "request_method", get_request_str, NULL, RSTR(method_name), 0 },
    { "request_uri", get_request_str, NULL, RSTR(unparsed_uri), 0 },
    { "uri", get_request_str, NULL, RSTR(uri), PT_VAR_NOCACHEABLE },
    { "document_uri", get_request_str, NULL, RSTR(uri), PT_VAR_NOCACHEABLE },
    { "args", get_request_str_nonempty, set_args, RSTR(args), PT_VAR_CHANGEABLE | PT_VAR_NOCACHEABLE },
    { "query_string", get_request_str_nonempty, set_args, RSTR(args), PT_VAR_CHANGEABLE | PT_VAR_NOCACHEABLE },
    { "is_args", get_is_args, NULL, 0, PT_VAR_NOCACHEABLE },
    { "request_id", get_request_id, NULL, 0, 0 },
    { "request_length", get_request_length, NULL, 0, PT_VAR_NOCACHEABLE },
    { "request_time", get_request_time, NULL, 0, PT_VAR_NOCACHEABLE },
    { "status", get_status, NULL, 0, PT_VAR_NOCACHEABLE },
    { "body_bytes_sent", get_int64_field, NULL, RSTR(body_bytes_sent), PT_VAR_NOCACHEABLE },
    { "bytes_sent", get_int64_field, NULL, RSTR(bytes_sent), PT_VAR_NOCACHEABLE },
    { "connection", get_connection, NULL, 0, 0 },
    { "connection_requests", get_connection_requests, NULL, 0, 0 },
    { "msec", get_msec, NULL, 0, PT_VAR_NOCACHEABLE },
    { "time_local", get_time_str, NULL, (uintptr_t) &pt_cached_http_log_time, PT_VAR_NOCACHEABLE },
    { "time_iso8601", get_time_str, NULL, (uintptr_t) &pt_cached_iso8601, PT_VAR_NOCACHEABLE },
    { "nginx_version", get_version, NULL, 0, 0 },
    { "portico_version", get_version, NULL, 0, 0 },
    { "pid", get_pid, NULL, 0, 0 },
    { "content_length", get_content_length, NULL, 0, 0 },
    { "content_type", get_content_type, NULL, 0, 0 },
    { "remote_user", get_not_found, NULL, 0, 0 },
    { "request_body", get_request_body, NULL, 0, PT_VAR_NOCACHEABLE },
    { "limit_rate", get_limit_rate, NULL, 0, PT_VAR_CHANGEABLE | PT_VAR_NOCACHEABLE },
    { "document_root", get_document_root, NULL, 0, PT_VAR_NOCACHEABLE },
    { "realpath_root", get_realpath_root, NULL, 0, PT_VAR_NOCACHEABLE },
    { NULL, NULL, NULL, 0, 0 }
};

/* ------------------------------------------------------------------------ */
/* Complex values                                                            */

enum { SEG_LITERAL, SEG_VAR, SEG_CAPTURE };

typedef struct {
    unsigned type;
    unsigned n;          /* variable index or capture number */
    pt_str_t text;       /* literal */
} cv_seg_t;

static int is_name_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

int pt_http_cv_compile(pt_conf_t *cf, const pt_str_t *src, pt_http_cv_t *cv)
{
    memset(cv, 0, sizeof(*cv));
    cv->source = *src;
    if (src->len == 0 || memchr(src->data, '$', src->len) == NULL) {
        cv->is_literal = 1;
        return 0;
    }

    /* at most one segment per '$' plus literals between: 2 * dollars + 1 */
    size_t cap = 1;
    for (size_t i = 0; i < src->len; i++)
        if (src->data[i] == '$')
            cap += 2;
    cv_seg_t *segs = pt_palloc(cf->pool, cap * sizeof(cv_seg_t));
    if (segs == NULL)
        return -1;

    unsigned n = 0;
    size_t i = 0;
    while (i < src->len) {
        if (src->data[i] != '$') {
            size_t start = i;
            while (i < src->len && src->data[i] != '$')
                i++;
            segs[n].type = SEG_LITERAL;
            segs[n].n = 0;
            segs[n].text.data = src->data + start;
            segs[n].text.len = i - start;
            n++;
            continue;
        }
        i++;   /* '$' */
        if (i < src->len && src->data[i] >= '1' && src->data[i] <= '9') {
            segs[n].type = SEG_CAPTURE;
            segs[n].n = (unsigned) (src->data[i] - '0');
            segs[n].text.len = 0;
            segs[n].text.data = NULL;
            cv->has_captures = 1;
            if (segs[n].n > cv->max_capture)
                cv->max_capture = segs[n].n;
            n++;
            i++;
            continue;
        }
        int bracket = 0;
        if (i < src->len && src->data[i] == '{') {
            bracket = 1;
            i++;
        }
        size_t start = i;
        while (i < src->len && is_name_char((unsigned char) src->data[i]))
            i++;
        pt_str_t name = { i - start, src->data + start };
        if (bracket) {
            if (i >= src->len || src->data[i] != '}') {
                pt_conf_error(cf, PT_LOG_EMERG, 0,
                              "the closing bracket in \"%.*s\" variable is missing",
                              (int) name.len, name.data);
                return -1;
            }
            i++;
        }
        if (name.len == 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid variable name in \"%.*s\"",
                          (int) src->len, src->data);
            return -1;
        }
        int idx = pt_http_var_index(cf, &name);
        if (idx < 0)
            return -1;
        segs[n].type = SEG_VAR;
        segs[n].n = (unsigned) idx;
        segs[n].text.len = 0;
        segs[n].text.data = NULL;
        n++;
    }
    cv->segments = segs;
    cv->nsegments = n;
    return 0;
}

static void capture_of(pt_http_request_t *r, unsigned k, pt_str_t *out)
{
    out->len = 0;
    out->data = (char *) "";
    if (r->captures == NULL || (int) k >= r->ncaptures || r->captures_data == NULL)
        return;
    int s = r->captures[2 * k], e = r->captures[2 * k + 1];
    if (s < 0 || e < s)
        return;
    out->data = (char *) r->captures_data + s;
    out->len = (size_t) (e - s);
}

/* nginx's "args" escaping: space # % & + ; ? and bytes outside 0x21..0x7e. */
static int args_escape_needed(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || c == '#' || c == '%' || c == '&' || c == '+' || c == ';'
           || c == '?';
}

static int escape_args(pt_http_request_t *r, pt_str_t *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->len; i++)
        if (args_escape_needed((unsigned char) s->data[i]))
            n++;
    if (n == 0)
        return 0;
    static const char hex[] = "0123456789ABCDEF";
    char *p = pt_pnalloc(r->pool, s->len + 2 * n);
    if (p == NULL)
        return -1;
    char *q = p;
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char) s->data[i];
        if (args_escape_needed(c)) {
            *q++ = '%';
            *q++ = hex[c >> 4];
            *q++ = hex[c & 0xf];
        } else {
            *q++ = (char) c;
        }
    }
    s->data = p;
    s->len = (size_t) (q - p);
    return 0;
}

static int cv_eval(pt_http_request_t *r, const pt_http_cv_t *cv, pt_str_t *out, int esc);

int pt_http_cv_eval(pt_http_request_t *r, const pt_http_cv_t *cv, pt_str_t *out)
{
    return cv_eval(r, cv, out, 0);
}

int pt_http_cv_eval_escape_captures(pt_http_request_t *r, const pt_http_cv_t *cv, pt_str_t *out)
{
    return cv_eval(r, cv, out, 1);
}

static int cv_eval(pt_http_request_t *r, const pt_http_cv_t *cv, pt_str_t *out, int esc)
{
    if (cv->is_literal) {
        *out = cv->source;
        if (out->data == NULL)
            out->data = (char *) "";
        return 0;
    }
    const cv_seg_t *segs = cv->segments;
    pt_str_t local[16];
    pt_str_t *parts = local;
    if (cv->nsegments > 16) {
        parts = pt_palloc(r->pool, cv->nsegments * sizeof(pt_str_t));
        if (parts == NULL)
            return -1;
    }

    /* length pass: each value is fetched once, so a no-cacheable variable
     * cannot change length between the passes */
    size_t len = 0;
    for (unsigned i = 0; i < cv->nsegments; i++) {
        switch (segs[i].type) {
        case SEG_LITERAL:
            parts[i] = segs[i].text;
            break;
        case SEG_CAPTURE:
            capture_of(r, segs[i].n, &parts[i]);
            if (esc && escape_args(r, &parts[i]) != 0)
                return -1;
            break;
        default: {
            pt_http_var_value_t *v = pt_http_var_get(r, segs[i].n);
            if (v == NULL)
                return -1;
            parts[i] = v->value;
            break;
        }
        }
        len += parts[i].len;
    }
    if (cv->nsegments == 1) {
        *out = parts[0];
        return 0;
    }
    char *p = pt_pnalloc(r->pool, len ? len : 1);
    if (p == NULL)
        return -1;
    out->data = p;
    out->len = len;
    for (unsigned i = 0; i < cv->nsegments; i++) {
        if (parts[i].len)
            memcpy(p, parts[i].data, parts[i].len);
        p += parts[i].len;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Regexes                                                                   */

static void regex_cleanup(void *data)
{
    pcre2_code_free((pcre2_code *) data);
}

int pt_http_regex_compile(pt_conf_t *cf, pt_http_regex_t *re, const pt_str_t *pattern, int caseless)
{
    memset(re, 0, sizeof(*re));
    re->pattern = *pattern;
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR) pattern->data, pattern->len,
                                     caseless ? PCRE2_CASELESS : 0, &errcode, &erroff, NULL);
    if (code == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        size_t off = erroff <= pattern->len ? erroff : pattern->len;
        pt_conf_error(cf, PT_LOG_EMERG, 0, "pcre2_compile() failed: %s in \"%.*s\" at \"%.*s\"",
                      (const char *) msg, (int) pattern->len, pattern->data,
                      (int) (pattern->len - off), pattern->data + off);
        return -1;
    }
    if (pt_pool_cleanup_add(cf->pool, regex_cleanup, code) != 0) {
        pcre2_code_free(code);
        return -1;
    }
    /* JIT when available; failing that, the interpreter still works */
    (void) pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    re->code = code;

    uint32_t ncap = 0;
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &ncap);
    re->ncaptures = ncap;

    pt_http_core_main_conf_t *cmcf = conf_cmcf(cf);
    if (cmcf && cmcf->ncaptures < ncap)
        cmcf->ncaptures = ncap;

    uint32_t namecount = 0;
    pcre2_pattern_info(code, PCRE2_INFO_NAMECOUNT, &namecount);
    if (namecount == 0)
        return 0;
    uint32_t entry_size = 0;
    PCRE2_SPTR table = NULL;
    pcre2_pattern_info(code, PCRE2_INFO_NAMEENTRYSIZE, &entry_size);
    pcre2_pattern_info(code, PCRE2_INFO_NAMETABLE, &table);
    re->name_index = pt_palloc(cf->pool, (ncap + 1) * sizeof(int));
    if (re->name_index == NULL)
        return -1;
    for (uint32_t i = 0; i <= ncap; i++)
        re->name_index[i] = -1;
    for (uint32_t i = 0; i < namecount; i++) {
        const unsigned char *e = table + (size_t) i * entry_size;
        unsigned group = ((unsigned) e[0] << 8) | e[1];
        pt_str_t name = { strlen((const char *) e + 2), (char *) e + 2 };
        pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_CHANGEABLE);
        if (v == NULL)
            return -1;
        if (group <= ncap)
            re->name_index[group] = (int) v->index;
    }
    return 0;
}

/* Per-process match data, grown when a regex needs more pairs. */
static pcre2_match_data *match_data;
static uint32_t match_pairs;

int pt_http_regex_exec(pt_http_request_t *r, const pt_http_regex_t *re, const pt_str_t *s)
{
    uint32_t need = re->ncaptures + 1;
    if (match_data == NULL || match_pairs < need) {
        uint32_t pairs = need < 10 ? 10 : need;
        pcre2_match_data *md = pcre2_match_data_create(pairs, NULL);
        if (md == NULL)
            return -1;
        if (match_data)
            pcre2_match_data_free(match_data);
        match_data = md;
        match_pairs = pairs;
    }
    int rc = pcre2_match((const pcre2_code *) re->code, (PCRE2_SPTR) (s->data ? s->data : ""),
                         s->len, 0, 0, match_data, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0) {
        if (r && r->connection)
            pt_log_error(PT_LOG_ALERT, &r->connection->log, 0,
                         "pcre2_match() failed: %d on \"%.*s\" using \"%.*s\"", rc,
                         (int) s->len, s->data, (int) re->pattern.len, re->pattern.data);
        return -1;
    }
    if (r == NULL)
        return 1;
    if (rc == 0 || (uint32_t) rc > need)
        rc = (int) need;

    /* r->captures has room for every pair any regex of the configuration
     * can produce, so one allocation per request is enough */
    pt_http_core_main_conf_t *cmcf = req_cmcf(r);
    if (cmcf && cmcf->ncaptures + 1 >= need) {
        if (r->captures == NULL) {
            r->captures = pt_palloc(r->pool, 2 * (cmcf->ncaptures + 1) * sizeof(int));
            if (r->captures == NULL)
                return -1;
        }
    } else {
        /* a regex compiled outside this configuration (tests); never
         * smaller than what the branch above assumes it can reuse */
        size_t pairs_n = need;
        if (cmcf && cmcf->ncaptures + 1 > pairs_n)
            pairs_n = cmcf->ncaptures + 1;
        int *c = pt_palloc(r->pool, 2 * pairs_n * sizeof(int));
        if (c == NULL)
            return -1;
        r->captures = c;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(match_data);
    for (int i = 0; i < rc; i++) {
        r->captures[2 * i] = ov[2 * i] == PCRE2_UNSET ? -1 : (int) ov[2 * i];
        r->captures[2 * i + 1] = ov[2 * i + 1] == PCRE2_UNSET ? -1 : (int) ov[2 * i + 1];
    }
    r->ncaptures = rc;
    r->captures_data = s->data;

    if (re->name_index) {
        for (unsigned g = 1; g <= re->ncaptures; g++) {
            if (re->name_index[g] < 0)
                continue;
            pt_str_t val = { 0, (char *) "" };
            if ((int) g < rc && ov[2 * g] != PCRE2_UNSET) {
                val.data = s->data + ov[2 * g];
                val.len = ov[2 * g + 1] - ov[2 * g];
            }
            if (pt_http_var_set(r, (unsigned) re->name_index[g], &val) != 0)
                return -1;
        }
    }
    return 1;
}
