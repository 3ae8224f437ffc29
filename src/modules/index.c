/* The index module: `index file ...;` (default "index.html"). A request whose
 * uri ends with '/' is redirected internally to uri + the first index file
 * that exists in the directory the uri maps to (so it may be served by
 * another location, as nginx). Names may carry variables; a name starting
 * with '/' (allowed last) is redirected to as it is, without a check. Nothing
 * found: the next content handler (autoindex, then the 403 of the static
 * module). A directory that does not exist: 404, logged as nginx
 * ("\"/srv/www/x/index.html\" is not found (2: No such file or directory)").
 *
 * Several `index` directives at one level add up; a level without any
 * inherits the enclosing level's list. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/log.h"
#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"
#include "static.h"

extern pt_module_t pt_http_index_module;

typedef struct {
    pt_array_t *indices;    /* pt_http_cv_t; UNSET_PTR: inherit */
} index_conf_t;

static pt_log_t *req_log(pt_http_request_t *r)
{
    return r->connection ? &r->connection->log : NULL;
}

/* The directory itself is missing (or not a directory): 404 / 403 / 500. */
static int dir_error(pt_http_request_t *r, const char *file, int err)
{
    pt_http_core_loc_conf_t *clcf = pt_http_get_module_loc_conf(r, pt_http_core_module);

    if (err == ENOENT || err == ENOTDIR || err == ENAMETOOLONG) {
        if (clcf->log_not_found)
            pt_log_error(PT_LOG_ERR, req_log(r), err, "\"%s\" is not found", file);
        return 404;
    }
    return pt_http_static_file_error(r, "stat", file, err);
}

static int index_handler(pt_http_request_t *r)
{
    index_conf_t *conf = pt_http_get_module_loc_conf(r, pt_http_index_module);
    int dir_tested = 0;

    if (r->uri.len == 0 || r->uri.data[r->uri.len - 1] != '/')
        return PT_DECLINED;
    if (!(r->method & (PT_HTTP_GET | PT_HTTP_HEAD | PT_HTTP_POST)))
        return PT_DECLINED;
    if (conf == NULL || conf->indices == NULL || conf->indices == PT_CONF_UNSET_PTR)
        return PT_DECLINED;

    const pt_http_cv_t *idx = conf->indices->elts;
    for (size_t i = 0; i < conf->indices->nelts; i++) {
        pt_str_t name, path;
        struct stat st;

        if (idx[i].is_literal) {
            name = idx[i].source;
        } else if (pt_http_cv_eval(r, &idx[i], &name) != 0) {
            return 500;
        }
        if (name.len == 0)
            continue;

        if (name.data[0] == '/')
            return pt_http_internal_redirect(r, &name, &r->args);

        int rc = pt_http_static_map_uri(r, &r->uri, &path, name.len);
        if (rc == PT_ERROR)
            return 500;
        if (rc == PT_DECLINED)
            return 404;
        memcpy(path.data + path.len, name.data, name.len);
        path.data[path.len + name.len] = '\0';

        if (stat(path.data, &st) != 0) {
            int err = errno;
            if (err == ENOENT && !dir_tested) {
                /* is it only this index that is missing, or the directory? */
                path.data[path.len] = '\0';
                int derr = 0;
                if (stat(path.data, &st) != 0)
                    derr = errno;
                else if (!S_ISDIR(st.st_mode))
                    derr = ENOTDIR;
                path.data[path.len] = name.data[0];
                if (derr)
                    return dir_error(r, path.data, derr);
                dir_tested = 1;
                continue;
            }
            if (err == ENOENT)
                continue;
            if (err == ENOTDIR || err == ENAMETOOLONG)
                return dir_error(r, path.data, err);
            return pt_http_static_file_error(r, "open", path.data, err);
        }

        /* found: uri + name, in the request's pool (the redirect copies it) */
        pt_str_t uri;
        uri.len = r->uri.len + name.len;
        uri.data = pt_pnalloc(r->pool, uri.len);
        if (uri.data == NULL)
            return 500;
        memcpy(uri.data, r->uri.data, r->uri.len);
        memcpy(uri.data + r->uri.len, name.data, name.len);
        return pt_http_internal_redirect(r, &uri, &r->args);
    }
    return PT_DECLINED;
}

static const char *index_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *data)
{
    index_conf_t *conf = data;
    pt_str_t *v = cf->args->elts;
    size_t n = cf->args->nelts;

    if (conf->indices == PT_CONF_UNSET_PTR || conf->indices == NULL) {
        conf->indices = pt_array_create(cf->pool, 4, sizeof(pt_http_cv_t));
        if (conf->indices == NULL)
            return "failed (out of memory)";
    }
    for (size_t i = 1; i < n; i++) {
        if (v[i].len == 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "index \"%s\" in \"index\" directive is invalid",
                          v[i].data);
            return PT_CONF_ERROR;
        }
        if (v[i].data[0] == '/' && i != n - 1)
            pt_conf_error(cf, PT_LOG_WARN, 0,
                          "only the last index in \"index\" directive should be absolute");
        pt_http_cv_t *cv = pt_array_push(conf->indices);
        if (cv == NULL)
            return "failed (out of memory)";
        if (i < 64 && ((cf->args_have_vars >> i) & 1)) {
            if (pt_http_cv_compile(cf, &v[i], cv) != 0)
                return PT_CONF_ERROR;
        } else {
            memset(cv, 0, sizeof(*cv));
            cv->source = v[i];
            cv->is_literal = 1;
        }
    }
    return PT_CONF_OK;
}

static void *index_create_loc_conf(pt_conf_t *cf)
{
    index_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf)
        conf->indices = PT_CONF_UNSET_PTR;
    return conf;
}

static const char *index_merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    index_conf_t *prev = parent, *conf = child;

    if (conf->indices != PT_CONF_UNSET_PTR)
        return PT_CONF_OK;
    if (prev->indices == PT_CONF_UNSET_PTR) {
        /* nginx's default: index.html (shared by every level that inherits) */
        prev->indices = pt_array_create(cf->pool, 1, sizeof(pt_http_cv_t));
        if (prev->indices == NULL)
            return PT_CONF_ERROR;
        pt_http_cv_t *cv = pt_array_push(prev->indices);
        if (cv == NULL)
            return PT_CONF_ERROR;
        memset(cv, 0, sizeof(*cv));
        pt_str_set(&cv->source, "index.html");
        cv->is_literal = 1;
    }
    conf->indices = prev->indices;
    return PT_CONF_OK;
}

static int index_init(pt_conf_t *cf)
{
    return pt_http_phase_add(cf, PT_HTTP_CONTENT_PHASE, index_handler);
}

static const pt_command_t index_commands[] = {
    { "index", PT_CTX_HTTP_ANY, 0, 1, PT_ARGS_ANY, index_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_index_module = {
    .name = "http_index",
    .commands = index_commands,
    .create_loc_conf = index_create_loc_conf,
    .merge_loc_conf = index_merge_loc_conf,
    .postconfiguration = index_init,
};
