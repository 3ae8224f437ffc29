/* Serving files: helpers the static, index, try_files and autoindex modules
 * share (static.c owns them). Every path is built from the location's root or
 * alias as nginx does (src/http/core.h: clcf->root, clcf->alias, root_cv).
 *
 * Owner: static files (static.c, index.c, try_files.c, autoindex.c). */
#ifndef PT_MODULES_STATIC_H
#define PT_MODULES_STATIC_H

#include <stddef.h>
#include "../http/request.h"

extern pt_module_t pt_http_static_module;

/* The location's root (or alias) as a full path: evaluated when it has
 * variables, and then made absolute against the prefix when it is relative
 * (literal roots were resolved at config time). Not NUL-terminated. Returns
 * PT_OK or PT_ERROR (evaluation failed, logged). */
int pt_http_static_root(pt_http_request_t *r, pt_str_t *root);

/* Maps uri to a file system path under the location's root or alias, as
 * nginx: root + uri; alias + the part of uri after the location's name (a
 * regex location's alias is the whole path). path->data is NUL-terminated
 * and has `reserve` spare bytes after the NUL for the caller (an index name).
 * Returns PT_OK, PT_ERROR (allocation or evaluation failure), or PT_DECLINED
 * when an alias joined with the rest of the uri would make a ".." segment
 * ("location /static { alias /srv/static/; }" and "/static../x") or the
 * path has a NUL byte: the caller answers as for a missing file. */
int pt_http_static_map_uri(pt_http_request_t *r, const pt_str_t *uri, pt_str_t *path,
                           size_t reserve);

/* Sets r->exten from r->uri (after r->uri was changed in place). */
void pt_http_static_set_exten(pt_http_request_t *r);

/* nginx's answer to a failed open()/stat() of a request's file: 404 for
 * ENOENT, ENOTDIR, ENAMETOOLONG (logged at error level only when
 * log_not_found is on), 403 for EACCES (error), 500 otherwise (crit). The
 * message is  <op>() "<path>" failed (<errno>: <text>). Returns the status. */
int pt_http_static_file_error(pt_http_request_t *r, const char *op, const char *path, int err);

/* 1 when the NUL-terminated path has a ".." segment ("/a/../b", "/a/.."). */
int pt_http_static_has_dotdot(const char *p, size_t len);

#endif
