/* The protocol-neutral request runtime: the phase engine walker, finalization,
 * internal redirects, the output entry points and the filter chain bottoms,
 * header list helpers and the Host validation shared by HTTP/1.x and HTTP/2.
 *
 * Lifetime rule: nothing here frees a request or closes a connection. The
 * protocol layer does that from its own event (after the response is written),
 * so code still on the stack after pt_http_finalize_request() never touches
 * freed memory within the current loop iteration. */
#include <string.h>

#include "core.h"
#include "request.h"
#include "../core/log.h"

/* ------------------------------------------------------------------------ */
/* Filter chains: the bottoms are the protocol writer. */

static int write_header(pt_http_request_t *r)
{
    return r->proto->send_header(r);
}

static int write_body(pt_http_request_t *r, pt_buf_t *chain)
{
    return r->proto->send_body(r, chain);
}

pt_http_header_filter_cb pt_http_top_header_filter = write_header;
pt_http_body_filter_cb   pt_http_top_body_filter = write_body;

void pt_http_filters_reset(void)
{
    pt_http_top_header_filter = write_header;
    pt_http_top_body_filter = write_body;
}

/* ------------------------------------------------------------------------ */
/* Headers */

pt_http_header_t *pt_http_header_find(pt_array_t *list, const char *name, size_t len)
{
    pt_http_header_t *h = list->elts;
    for (size_t i = 0; i < list->nelts; i++) {
        if (!h[i].deleted && h[i].name.len == len
            && pt_strncasecmp(h[i].name.data, name, len) == 0)
            return &h[i];
    }
    return NULL;
}

pt_http_header_t *pt_http_header_add(pt_http_request_t *r, pt_array_t *list,
                                     const char *name, size_t nlen,
                                     const char *value, size_t vlen)
{
    char *p = pt_pnalloc(r->pool, nlen + vlen + 2);
    if (p == NULL)
        return NULL;
    pt_http_header_t *h = pt_array_push(list);
    if (h == NULL)
        return NULL;
    memcpy(p, name, nlen);
    p[nlen] = '\0';
    memcpy(p + nlen + 1, value, vlen);
    p[nlen + 1 + vlen] = '\0';
    h->name.data = p;
    h->name.len = nlen;
    h->value.data = p + nlen + 1;
    h->value.len = vlen;
    h->hash = pt_hash_lower(name, nlen);
    h->deleted = 0;
    return h;
}

/* nginx's host validation, our way: one pass, lowercase on demand. */
int pt_http_validate_host(pt_str_t *host, pt_pool_t *pool)
{
    enum { S_NAME, S_LITERAL, S_PORT } state = S_NAME;
    const unsigned char *h = (const unsigned char *) host->data;
    size_t len = host->len, host_len = len, i;
    size_t dot_pos = (size_t) -1, lit_digits = 0;
    int upper = 0;

    if (len == 0)
        return -1;

    for (i = 0; i < len; i++) {
        unsigned char ch = h[i];

        switch (state) {
        case S_NAME:
            if (ch == '.') {
                if (dot_pos == i - 1)
                    return -1;          /* ".." (or a leading ".") */
                dot_pos = i;
            } else if (ch == ':') {
                host_len = i;
                state = S_PORT;
            } else if (ch == '[') {
                if (i != 0)
                    return -1;
                state = S_LITERAL;
            } else if (ch >= 'A' && ch <= 'Z') {
                upper = 1;
            } else if (ch <= 0x20 || ch == 0x7f || ch == '/' || ch == '\\'
                       || ch == '"' || ch == '<' || ch == '>' || ch == '@'
                       || ch == '#' || ch == '?' || ch == '^' || ch == '`'
                       || ch == '{' || ch == '|' || ch == '}' || ch == ']') {
                return -1;
            }
            break;

        case S_LITERAL:
            if (ch == ']') {
                if (lit_digits < 2)
                    return -1;          /* "[]", "[1]" */
                state = S_NAME;
                /* only ":port" may follow */
                if (i + 1 < len && h[i + 1] != ':')
                    return -1;
                dot_pos = i;            /* no dot stripping inside */
            } else if ((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
                       || ch == ':' || ch == '.') {
                if (ch >= 'A' && ch <= 'F')
                    upper = 1;
                lit_digits++;
            } else {
                return -1;
            }
            break;

        case S_PORT:
            /* nginx takes any text after ':' (only the name part is used:
             * $host, server_name); still no byte that could split or
             * confuse a header, a path or a log line */
            if (ch <= 0x20 || ch == 0x7f || ch == '/' || ch == '\\' || ch == '"'
                || ch == '<' || ch == '>' || ch == '@' || ch == '#' || ch == '?'
                || ch == '^' || ch == '`' || ch == '{' || ch == '|' || ch == '}'
                || ch == '[' || ch == ']')
                return -1;
            break;
        }
    }

    if (state == S_LITERAL)
        return -1;
    if (host_len > 0 && dot_pos == host_len - 1 && h[host_len - 1] == '.')
        host_len--;                     /* trailing dot */
    if (host_len == 0)
        return -1;

    if (upper) {
        char *p = pt_pnalloc(pool, host_len);
        if (p == NULL)
            return -1;
        pt_strlow(p, host->data, host_len);
        host->data = p;
    }
    host->len = host_len;
    return 0;
}

int pt_http_check_transfer_encoding(const pt_str_t *te)
{
    const char *p = te->data, *end = te->data + te->len;
    unsigned codings = 0, chunked = 0, last_chunked = 0;

    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e == s)
            return 400;                 /* empty element: "chunked,", ", x", "" */
        codings++;
        last_chunked = (e - s == 7 && pt_strncasecmp(s, "chunked", 7) == 0);
        chunked += last_chunked;
        if (p == end)
            break;
        p++;                            /* the comma: another element follows */
    }
    if (codings == 0 || !last_chunked) {
        /* one unknown coding: we cannot decode it (501); a list whose last
         * coding is not chunked has no reliable length (400) */
        return codings == 1 ? 501 : 400;
    }
    if (chunked > 1)
        return 400;
    return codings == 1 ? 0 : 501;
}

/* ------------------------------------------------------------------------ */
/* The phase engine */

static pt_http_core_main_conf_t *core_main_conf(pt_http_request_t *r)
{
    return pt_http_get_module_main_conf(r, pt_http_core_module);
}

static pt_http_core_loc_conf_t *core_loc_conf(pt_http_request_t *r)
{
    return pt_http_get_module_loc_conf(r, pt_http_core_module);
}

/* Auto redirect of FIND_CONFIG: "Location: <uri>/[?args]". */
static int auto_redirect(pt_http_request_t *r)
{
    size_t len = r->uri.len + 1 + (r->args.len ? r->args.len + 1 : 0);
    char *p = pt_pnalloc(r->pool, len);
    pt_http_header_t *loc = pt_pcalloc(r->pool, sizeof(*loc));
    if (p == NULL || loc == NULL)
        return 500;
    memcpy(p, r->uri.data, r->uri.len);
    p[r->uri.len] = '/';
    if (r->args.len) {
        p[r->uri.len + 1] = '?';
        memcpy(p + r->uri.len + 2, r->args.data, r->args.len);
    }
    pt_str_set(&loc->name, "Location");
    loc->value.data = p;
    loc->value.len = len;
    loc->hash = pt_hash_lower("location", 8);
    r->headers_out.location = loc;
    return 301;
}

void pt_http_core_run_phases(pt_http_request_t *r)
{
    pt_http_core_main_conf_t *cmcf = core_main_conf(r);
    const pt_http_phase_handler_t *engine = cmcf->phase_engine;
    int rc;

    while ((unsigned) r->phase_handler < cmcf->phase_engine_n) {
        const pt_http_phase_handler_t *ph = &engine[r->phase_handler];

        switch (ph->phase) {
        case PT_HTTP_SERVER_REWRITE_PHASE:
        case PT_HTTP_REWRITE_PHASE:
            rc = ph->handler(r);
            if (rc == PT_DECLINED) {
                r->phase_handler++;
                continue;
            }
            if (rc == PT_DONE || rc == PT_AGAIN)
                return;
            pt_http_finalize_request(r, rc);
            return;

        case PT_HTTP_FIND_CONFIG_PHASE:
            r->uri_changed = 0;
            rc = pt_http_core_find_config(r);
            if (rc == PT_OK) {
                r->phase_handler++;
                continue;
            }
            if (rc == 301)
                rc = auto_redirect(r);
            pt_http_finalize_request(r, rc);
            return;

        case PT_HTTP_POST_REWRITE_PHASE:
            if (!r->uri_changed) {
                r->phase_handler++;
                continue;
            }
            if (--r->uri_changes == 0) {
                pt_log_error(PT_LOG_ERR, &r->connection->log, 0,
                             "rewrite or internal redirection cycle "
                             "while processing \"%.*s\"",
                             (int) r->uri.len, r->uri.data);
                pt_http_finalize_request(r, 500);
                return;
            }
            r->phase_handler = (int) cmcf->find_config_index;
            continue;

        case PT_HTTP_ACCESS_PHASE: {
            pt_http_core_loc_conf_t *clcf = core_loc_conf(r);
            rc = ph->handler(r);
            if (rc == PT_DECLINED) {
                r->phase_handler++;
                continue;
            }
            if (rc == PT_AGAIN || rc == PT_DONE)
                return;
            if (clcf->satisfy == PT_HTTP_SATISFY_ALL) {
                if (rc == PT_OK) {
                    r->phase_handler++;
                    continue;
                }
            } else {
                if (rc == PT_OK) {
                    r->access_code = 0;
                    r->phase_handler = (int) ph->next;
                    continue;
                }
                if (rc == 403 || rc == 401) {
                    if (r->access_code != 401)
                        r->access_code = rc;
                    r->phase_handler++;
                    continue;
                }
            }
            pt_http_finalize_request(r, rc);
            return;
        }

        case PT_HTTP_POST_ACCESS_PHASE:
            if (r->access_code) {
                rc = r->access_code;
                r->access_code = 0;
                pt_http_finalize_request(r, rc);
                return;
            }
            r->phase_handler++;
            continue;

        case PT_HTTP_CONTENT_PHASE: {
            if ((unsigned) r->phase_handler == cmcf->content_index) {
                pt_http_core_loc_conf_t *clcf = core_loc_conf(r);
                if (clcf->handler) {
                    rc = clcf->handler(r);
                    pt_http_finalize_request(r, rc);
                    return;
                }
            }
            if (ph->handler == NULL) {
                /* every content handler declined: nginx's answer is 403 for
                 * a directory (the index module already answered 404 when
                 * the directory does not exist), else 404 */
                if (r->uri.len && r->uri.data[r->uri.len - 1] == '/') {
                    pt_http_core_loc_conf_t *clcf = core_loc_conf(r);
                    pt_log_error(PT_LOG_ERR, &r->connection->log, 0,
                                 "directory index of \"%.*s%.*s\" is forbidden",
                                 clcf->root_cv ? 0 : (int) clcf->root.len,
                                 clcf->root.data ? clcf->root.data : "",
                                 (int) r->uri.len, r->uri.data);
                    pt_http_finalize_request(r, 403);
                    return;
                }
                pt_http_finalize_request(r, 404);
                return;
            }
            rc = ph->handler(r);
            if (rc == PT_DECLINED) {
                r->phase_handler++;
                continue;
            }
            pt_http_finalize_request(r, rc);
            return;
        }

        default:  /* POST_READ, PREACCESS, PRECONTENT: the generic checker */
            rc = ph->handler(r);
            if (rc == PT_OK) {
                r->phase_handler = (int) ph->next;
                continue;
            }
            if (rc == PT_DECLINED) {
                r->phase_handler++;
                continue;
            }
            if (rc == PT_AGAIN || rc == PT_DONE)
                return;
            pt_http_finalize_request(r, rc);
            return;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Finalization */

void pt_http_log_request(pt_http_request_t *r)
{
    if (r->logged)
        return;
    r->logged = 1;
    r->body_bytes_sent = r->bytes_sent - r->header_size;
    if (r->body_bytes_sent < 0)
        r->body_bytes_sent = 0;

    pt_http_core_main_conf_t *cmcf = core_main_conf(r);
    pt_http_handler_cb *h = cmcf->phases[PT_HTTP_LOG_PHASE].elts;
    for (size_t i = 0; i < cmcf->phases[PT_HTTP_LOG_PHASE].nelts; i++)
        (void) h[i](r);
}

static void terminate(pt_http_request_t *r, int rc)
{
    if (rc > 0 && (r->headers_out.status == 0 || !r->header_sent))
        r->headers_out.status = rc;
    r->keepalive = 0;
    r->aborted = 1;
    r->done = 1;
    r->proto->finalize(r);
}

void pt_http_finalize_request(pt_http_request_t *r, int rc)
{
    for (;;) {
        if (r->done)
            return;
        if (rc == PT_AGAIN || rc == PT_DONE)
            return;

        if (rc == PT_ERROR || rc == 408 || rc == 444 || rc == 499) {
            terminate(r, rc);
            return;
        }

        if (rc >= 100) {
            if (!r->header_sent) {
                rc = pt_http_special_response(r, rc);
                continue;
            }
            if (rc >= 300) {
                /* the response is already on its way: all we can do is cut
                 * it short so the client sees it is incomplete */
                terminate(r, rc);
                return;
            }
            rc = PT_OK;
        }

        /* PT_OK (or an unknown negative code: treated as complete) */
        if (!r->header_sent) {
            pt_log_error(PT_LOG_ALERT, &r->connection->log, 0,
                         "request finished without a response");
            rc = 500;
            continue;
        }
        r->done = 1;
        r->proto->finalize(r);
        return;
    }
}

/* ------------------------------------------------------------------------ */
/* Internal redirects */

static void set_exten(pt_http_request_t *r)
{
    r->exten.len = 0;
    r->exten.data = NULL;
    for (size_t i = r->uri.len; i > 0; i--) {
        char ch = r->uri.data[i - 1];
        if (ch == '/')
            return;
        if (ch == '.') {
            r->exten.data = r->uri.data + i;
            r->exten.len = r->uri.len - i;
            return;
        }
    }
}

static void clear_ctx(pt_http_request_t *r)
{
    /* the per-module contexts belong to the previous location */
    if (r->ctx) {
        extern const size_t pt_modules_n;
        memset(r->ctx, 0, sizeof(void *) * pt_modules_n);
    }
}

int pt_http_internal_redirect(pt_http_request_t *r, const pt_str_t *uri, const pt_str_t *args)
{
    if (--r->uri_changes == 0) {
        pt_log_error(PT_LOG_ERR, &r->connection->log, 0,
                     "rewrite or internal redirection cycle "
                     "while internally redirecting to \"%.*s\"",
                     (int) uri->len, uri->data);
        return 500;
    }

    if (pt_pstrdup(r->pool, &r->uri, uri) != 0)
        return 500;
    if (args && args->len) {
        if (pt_pstrdup(r->pool, &r->args, args) != 0)
            return 500;
    } else {
        r->args.len = 0;
        r->args.data = NULL;
    }
    set_exten(r);
    clear_ctx(r);

    /* back to the server level; FIND_CONFIG picks the new location */
    pt_http_core_srv_conf_t *cscf = pt_http_get_module_srv_conf(r, pt_http_core_module);
    r->loc_conf = cscf->ctx->loc_conf;
    r->internal = 1;
    r->uri_changed = 0;
    r->uri_rewritten_here = 0;
    r->phase_handler = (int) core_main_conf(r)->server_rewrite_index;

    pt_http_core_run_phases(r);
    return PT_DONE;
}

int pt_http_named_location(pt_http_request_t *r, const pt_str_t *name)
{
    pt_http_core_srv_conf_t *cscf = pt_http_get_module_srv_conf(r, pt_http_core_module);
    pt_http_core_loc_conf_t *clcf;

    if (--r->uri_changes == 0) {
        pt_log_error(PT_LOG_ERR, &r->connection->log, 0,
                     "rewrite or internal redirection cycle "
                     "while redirect to named location \"%.*s\"",
                     (int) name->len, name->data);
        return 500;
    }

    clcf = pt_http_find_named_location(cscf, name);
    if (clcf == NULL) {
        pt_log_error(PT_LOG_ERR, &r->connection->log, 0,
                     "could not find named location \"%.*s\"",
                     (int) name->len, name->data);
        return 500;
    }

    clear_ctx(r);
    r->loc_conf = clcf->loc_conf;
    if (clcf->keepalive_timeout == 0)
        r->keepalive = 0;
    r->internal = 1;
    r->uri_changed = 0;
    r->uri_rewritten_here = 0;
    r->phase_handler = (int) core_main_conf(r)->location_rewrite_index;

    pt_http_core_run_phases(r);
    return PT_DONE;
}

/* ------------------------------------------------------------------------ */
/* Output */

int pt_http_send_header(pt_http_request_t *r)
{
    if (r->header_sent) {
        pt_log_error(PT_LOG_ALERT, &r->connection->log, 0, "header already sent");
        return PT_ERROR;
    }
    if (r->err_status) {
        r->headers_out.status = r->err_status;
        r->headers_out.status_line.len = 0;
    }
    if (r->headers_out.status == 0)
        r->headers_out.status = 200;
    r->header_sent = 1;
    return pt_http_top_header_filter(r);
}

int pt_http_output(pt_http_request_t *r, pt_buf_t *chain)
{
    if (r->aborted) {
        pt_buf_put_chain(chain);
        return PT_ERROR;
    }
    return pt_http_top_body_filter(r, chain);
}

int pt_http_discard_request_body(pt_http_request_t *r)
{
    if (r->discard_body || r->proto->discard_body == NULL)
        return PT_OK;
    return r->proto->discard_body(r);
}

int pt_http_send_response(pt_http_request_t *r, int status, const pt_str_t *ctype,
                          const pt_str_t *body)
{
    static const pt_str_t empty = pt_null_string;
    int rc;

    if (body == NULL)
        body = &empty;

    rc = pt_http_discard_request_body(r);
    if (rc != PT_OK)
        return rc;

    if (status >= 301 && status <= 308 && status != 304) {
        pt_http_header_t *loc = pt_pcalloc(r->pool, sizeof(*loc));
        if (loc == NULL)
            return PT_ERROR;
        pt_str_set(&loc->name, "Location");
        if (pt_pstrdup(r->pool, &loc->value, body) != 0)
            return PT_ERROR;
        loc->hash = pt_hash_lower("location", 8);
        r->headers_out.location = loc;
        return status;
    }

    r->headers_out.status = status;
    if (ctype && ctype->len) {
        r->headers_out.content_type = *ctype;
    } else if (ctype == NULL) {
        pt_http_set_content_type(r);
    }
    r->headers_out.content_length_n = (int64_t) body->len;

    rc = pt_http_send_header(r);
    if (rc == PT_ERROR)
        return PT_ERROR;

    pt_buf_t *b;
    if (r->header_only || body->len == 0) {
        b = pt_buf_ref("", 0);
    } else {
        char *p = pt_pnalloc(r->pool, body->len);
        if (p == NULL)
            return PT_ERROR;
        memcpy(p, body->data, body->len);
        b = pt_buf_ref(p, body->len);
    }
    if (b == NULL)
        return PT_ERROR;
    b->last_buf = 1;
    rc = pt_http_output(r, b);
    return rc == PT_ERROR ? PT_ERROR : PT_OK;
}
