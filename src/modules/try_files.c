/* try_files file ... uri;   try_files file ... =code;
 *
 * A core directive in nginx, here its own module with a PRECONTENT phase
 * handler. Each `file` (variables allowed) is looked up under the location's
 * root or alias; one ending with '/' must be a directory, any other must not
 * be one. The first that exists becomes r->uri (the request stays in this
 * location: the content phase serves it, "$uri/" goes on to the index
 * module; the trailing '/' is not part of the name, as nginx, so "/dir"
 * found by "$uri/" gets the directory 301). None: the last parameter decides: "=code" finalizes with code,
 * "@name" goes to that named location, anything else is an internal redirect
 * (a "?args" part replaces the arguments).
 *
 * Not inherited by nested locations (as nginx: a server-level try_files
 * applies only to requests that match no location). */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/log.h"
#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"
#include "static.h"

extern pt_module_t pt_http_try_files_module;

typedef struct {
    pt_http_cv_t name;
    unsigned     test_dir:1;   /* written with a trailing '/' */
} try_file_t;

typedef struct {
    try_file_t *files;         /* nfiles tries, then the fallback */
    unsigned    nfiles;
    int         code;          /* "=code" fallback, else 0 */
} try_files_conf_t;

static pt_log_t *req_log(pt_http_request_t *r)
{
    return r->connection ? &r->connection->log : NULL;
}

static int eval(pt_http_request_t *r, const pt_http_cv_t *cv, pt_str_t *out)
{
    if (cv->is_literal) {
        *out = cv->source;
        return 0;
    }
    return pt_http_cv_eval(r, cv, out);
}

/* Tries one name. 1: found, r->uri updated; 0: not there; -1: error. */
static int try_one(pt_http_request_t *r, const try_file_t *tf, const pt_str_t *root)
{
    pt_http_core_loc_conf_t *clcf = pt_http_get_module_loc_conf(r, pt_http_core_module);
    size_t alias = clcf->alias;
    pt_str_t name, rel;
    struct stat st;

    if (eval(r, &tf->name, &name) != 0)
        return -1;
    if (name.len == 0)
        return 0;
    /* a name made from variables ($arg_x, $http_*) could climb out of the
     * root; $uri itself never has ".." (the parser normalises it) */
    if (pt_http_static_has_dotdot(name.data, name.len) || memchr(name.data, '\0', name.len))
        return 0;

    rel = name;
    if (alias && alias != SIZE_MAX && name.len >= alias && r->uri.len >= alias
        && memcmp(name.data, r->uri.data, alias) == 0) {
        /* under an alias, the location's part of the name is replaced */
        rel.data += alias;
        rel.len -= alias;
    }

    size_t len = root->len + rel.len;
    char *path = pt_pnalloc(r->pool, len + 1);
    if (path == NULL)
        return -1;
    memcpy(path, root->data, root->len);
    if (rel.len)
        memcpy(path + root->len, rel.data, rel.len);
    path[len] = '\0';
    if (alias && alias != SIZE_MAX && rel.len) {
        size_t s = root->len;
        while (s > 0 && path[s - 1] != '/')
            s--;
        if (pt_http_static_has_dotdot(path + s, len - s))
            return 0;
    }

    if (stat(path, &st) != 0) {
        int err = errno;
        if (err != ENOENT && err != ENOTDIR && err != ENAMETOOLONG)
            pt_log_error(PT_LOG_CRIT, req_log(r), err, "stat() \"%s\" failed", path);
        return 0;
    }
    if ((S_ISDIR(st.st_mode) != 0) != tf->test_dir)
        return 0;

    /* found: the request goes on with this uri, in this location */
    if (alias != SIZE_MAX || tf->test_dir) {
        char *u = pt_pnalloc(r->pool, name.len);
        if (u == NULL)
            return -1;
        memcpy(u, name.data, name.len);
        r->uri.data = u;
        r->uri.len = name.len;
        pt_http_static_set_exten(r);
    }
    return 1;
}

static int try_files_handler(pt_http_request_t *r)
{
    try_files_conf_t *conf = pt_http_get_module_loc_conf(r, pt_http_try_files_module);
    pt_str_t root;

    if (conf == NULL || conf->files == NULL)
        return PT_DECLINED;
    if (pt_http_static_root(r, &root) != PT_OK)
        return 500;

    for (unsigned i = 0; i < conf->nfiles; i++) {
        int rc = try_one(r, &conf->files[i], &root);
        if (rc < 0)
            return 500;
        if (rc > 0)
            return PT_DECLINED;
    }

    if (conf->code)
        return conf->code;

    pt_str_t uri, args = pt_null_string;
    if (eval(r, &conf->files[conf->nfiles].name, &uri) != 0)
        return 500;
    if (uri.len > 0 && uri.data[0] == '@')
        return pt_http_named_location(r, &uri);
    char *q = memchr(uri.data, '?', uri.len);
    if (q) {
        args.data = q + 1;
        args.len = uri.len - (size_t) (q + 1 - uri.data);
        uri.len = (size_t) (q - uri.data);
    }
    if (uri.len == 0) {
        pt_log_error(PT_LOG_ERR, req_log(r), 0, "empty URI in \"try_files\" fallback");
        return 500;
    }
    return pt_http_internal_redirect(r, &uri, &args);
}

static const char *try_files_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *data)
{
    try_files_conf_t *conf = data;
    pt_str_t *v = cf->args->elts;
    size_t n = cf->args->nelts - 1;          /* parameters */

    if (conf->files)
        return "is duplicate";
    conf->files = pt_pcalloc(cf->pool, n * sizeof(try_file_t));
    if (conf->files == NULL)
        return "failed (out of memory)";
    conf->nfiles = (unsigned) (n - 1);

    for (size_t i = 0; i < n; i++) {
        pt_str_t *a = &v[i + 1];
        try_file_t *tf = &conf->files[i];

        if (i == n - 1 && a->len > 1 && a->data[0] == '=') {
            int64_t code = pt_atoi64(a->data + 1, a->len - 1);
            if (code < 0 || code > 999) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid code \"%s\"", a->data);
                return PT_CONF_ERROR;
            }
            conf->code = (int) code;
        }
        tf->test_dir = i < n - 1 && a->len > 1 && a->data[a->len - 1] == '/';
        /* as nginx, the '/' only says "a directory": it is not part of the
         * name, so "$uri/" found for "/dir" leaves r->uri "/dir" and the
         * static module answers 301 to "/dir/" */
        pt_str_t name = *a;
        if (tf->test_dir)
            name.len--;
        if (i + 1 < 64 && ((cf->args_have_vars >> (i + 1)) & 1)) {
            if (pt_http_cv_compile(cf, &name, &tf->name) != 0)
                return PT_CONF_ERROR;
        } else {
            tf->name.source = name;
            tf->name.is_literal = 1;
        }
    }
    return PT_CONF_OK;
}

static void *try_files_create_loc_conf(pt_conf_t *cf)
{
    return pt_pcalloc(cf->pool, sizeof(try_files_conf_t));
}

static int try_files_init(pt_conf_t *cf)
{
    return pt_http_phase_add(cf, PT_HTTP_PRECONTENT_PHASE, try_files_handler);
}

static const pt_command_t try_files_commands[] = {
    { "try_files", PT_CTX_SRV | PT_CTX_LOC, 0, 2, PT_ARGS_ANY, try_files_cmd, PT_CONF_HTTP_LOC, 0,
      NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_try_files_module = {
    .name = "http_try_files",
    .commands = try_files_commands,
    .builtin_core = 1,      /* part of nginx's core module */
    .create_loc_conf = try_files_create_loc_conf,
    .postconfiguration = try_files_init,
};
