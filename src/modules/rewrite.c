/* The rewrite module: return, rewrite, set, if, break, rewrite_log,
 * uninitialized_variable_warn.
 *
 * As nginx, the directives of one level (server, or one location) are compiled
 * at config time into a small script: an array of ops run in order by a phase
 * handler (SERVER_REWRITE for the server level, REWRITE for locations). An
 * `if` block is inlined in the script of its level: its op jumps past the
 * block when the condition is false, and otherwise makes the block's
 * pseudo-location (noname) the request's location configuration, so that
 * directives such as proxy_pass or add_header inside it take effect. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"

extern pt_module_t pt_http_rewrite_module;

enum {
    OP_RETURN,
    OP_REWRITE,
    OP_SET,
    OP_IF,
    OP_BREAK
};

enum {
    COND_VAR,       /* ($var): not empty and not "0" */
    COND_EQ,        /* = */
    COND_NE,        /* != */
    COND_REGEX,     /* ~ ~* (negate for !~ !~*) */
    COND_FILE,      /* -f: regular file */
    COND_DIR,       /* -d */
    COND_EXISTS,    /* -e */
    COND_EXEC       /* -x */
};

enum {
    FLAG_NONE = 0,  /* continue with the next op; the location is searched again */
    FLAG_LAST,
    FLAG_BREAK,
    FLAG_REDIRECT,
    FLAG_PERMANENT
};

typedef struct {
    int              type;
    int              negate;
    pt_http_cv_t     left;      /* the variable (or the file name) */
    pt_http_cv_t     right;     /* = and != */
    pt_http_regex_t *regex;     /* ~ forms */
} rw_cond_t;

typedef struct {
    int      type;
    unsigned line;              /* for messages */
    union {
        struct {
            int          status;
            pt_http_cv_t text;  /* URL for redirects, body otherwise */
            unsigned     has_text:1;
        } ret;
        struct {
            pt_http_regex_t *regex;
            pt_http_cv_t     uri;       /* replacement up to its first '?' */
            pt_http_cv_t     args;      /* after '?' (without a trailing '?') */
            int              flag;
            int              status;    /* redirects: 301 or 302 */
            unsigned         redirect:1;    /* absolute URL or redirect flag */
            unsigned         has_args:1;    /* the replacement had a '?' */
            unsigned         add_args:1;    /* keep the request's args (no trailing '?') */
        } rw;
        struct {
            unsigned     index;
            pt_http_cv_t value;
        } set;
        struct {
            rw_cond_t    cond;
            size_t       jump;         /* op index after the block */
            void       **loc_conf;     /* the block's pseudo-location */
        } cond;
    } u;
} rw_op_t;

typedef struct {
    pt_array_t  ifs;            /* pt_http_core_loc_conf_t * of location-level if blocks */
} rw_main_conf_t;

typedef struct {
    pt_array_t *codes;          /* rw_op_t; NULL when the level has none */
    int         log;            /* rewrite_log */
    int         uninit_warn;    /* uninitialized_variable_warn */
} rw_loc_conf_t;

/* ------------------------------------------------------------------------ */
/* Request time                                                              */

static pt_log_t *req_log(pt_http_request_t *r)
{
    return r->connection ? &r->connection->log : NULL;
}

static int cond_true(pt_http_request_t *r, const rw_cond_t *c, rw_loc_conf_t *rlcf)
{
    pt_str_t a, b;
    if (pt_http_cv_eval(r, &c->left, &a) != 0)
        return -1;

    int res;
    switch (c->type) {
    case COND_VAR:
        res = !(a.len == 0 || (a.len == 1 && a.data[0] == '0'));
        break;
    case COND_EQ:
    case COND_NE:
        if (pt_http_cv_eval(r, &c->right, &b) != 0)
            return -1;
        res = pt_str_eq(&a, &b);
        if (c->type == COND_NE)
            res = !res;
        break;
    case COND_REGEX: {
        /* the subject must outlive the captures: a.data is request memory or
         * config memory, both live long enough */
        int rc = pt_http_regex_exec(r, c->regex, &a);
        if (rc < 0)
            return -1;
        res = rc;
        if (rlcf->log)
            pt_log_error(PT_LOG_NOTICE, req_log(r), 0, "\"%.*s\" %s \"%.*s\"",
                         (int) c->regex->pattern.len, c->regex->pattern.data,
                         rc ? "matches" : "does not match", (int) a.len, a.data);
        break;
    }
    default: {
        char *path = pt_pstrndup(r->pool, a.data, a.len);
        if (path == NULL)
            return -1;
        struct stat st;
        int found = stat(path, &st) == 0;
        switch (c->type) {
        case COND_FILE:
            res = found && S_ISREG(st.st_mode);
            break;
        case COND_DIR:
            res = found && S_ISDIR(st.st_mode);
            break;
        case COND_EXISTS:
            res = found;
            break;
        default:
            res = found && !S_ISDIR(st.st_mode) && (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH));
            break;
        }
        break;
    }
    }
    return c->negate ? !res : res;
}

/* Replaces any Location with value (request memory). */
static int set_location(pt_http_request_t *r, const pt_str_t *value)
{
    pt_http_header_t *h = r->headers_out.location;
    if (h)
        h->deleted = 1;
    h = pt_http_header_add(r, &r->headers_out.list, "Location", 8, value->data, value->len);
    if (h == NULL)
        return -1;
    r->headers_out.location = h;
    return 0;
}

static int is_redirect_status(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static int do_return(pt_http_request_t *r, const rw_op_t *op)
{
    int status = op->u.ret.status;

    if (status == 444) {
        /* nginx's "close the connection without a response" */
        r->keepalive = 0;
        return 444;   /* the runtime closes without a response, logs 444 */
    }

    pt_str_t text = { 0, (char *) "" };
    if (op->u.ret.has_text && pt_http_cv_eval(r, &op->u.ret.text, &text) != 0)
        return 500;

    if (is_redirect_status(status)) {
        if (op->u.ret.has_text && set_location(r, &text) != 0)
            return 500;
        return status;
    }
    if (status >= 400 && !op->u.ret.has_text)
        return status;   /* the special response page (or error_page) */

    r->headers_out.status = status;
    pt_http_set_content_type(r);
    pt_str_t ctype = r->headers_out.content_type;
    return pt_http_send_response(r, status, &ctype, &text);
}

/* The extension of the last path segment, as the runtime computes it. */
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

/* Returns PT_DECLINED to go on with the next op, 1 to stop (break/last), or a
 * handler result (status, PT_ERROR). */
static int do_rewrite(pt_http_request_t *r, const rw_op_t *op, rw_loc_conf_t *rlcf)
{
    int rc = pt_http_regex_exec(r, op->u.rw.regex, &r->uri);
    if (rc < 0)
        return 500;
    if (rlcf->log)
        pt_log_error(PT_LOG_NOTICE, req_log(r), 0, "\"%.*s\" %s \"%.*s\"",
                     (int) op->u.rw.regex->pattern.len, op->u.rw.regex->pattern.data,
                     rc ? "matches" : "does not match", (int) r->uri.len, r->uri.data);
    if (rc == 0)
        return PT_DECLINED;

    /* nginx escapes captures going into args, and into a redirect, when the
     * request's URI was sent with escapes ('%') or a '+' */
    int quoted = 0;
    for (size_t i = 0; i < r->unparsed_uri.len && r->unparsed_uri.data[i] != '?'; i++)
        if (r->unparsed_uri.data[i] == '%' || r->unparsed_uri.data[i] == '+') {
            quoted = 1;
            break;
        }
    pt_str_t uri, nargs = { 0, NULL };
    int rc_uri = quoted && op->u.rw.redirect
                 ? pt_http_cv_eval_escape_captures(r, &op->u.rw.uri, &uri)
                 : pt_http_cv_eval(r, &op->u.rw.uri, &uri);
    if (rc_uri != 0)
        return 500;
    if (op->u.rw.has_args) {
        int rc_args = quoted ? pt_http_cv_eval_escape_captures(r, &op->u.rw.args, &nargs)
                             : pt_http_cv_eval(r, &op->u.rw.args, &nargs);
        if (rc_args != 0)
            return 500;
    }

    /* the resulting args: the replacement's, then the request's unless the
     * replacement ended with '?' */
    pt_str_t args = r->args;
    if (op->u.rw.has_args) {
        if (op->u.rw.add_args && r->args.len) {
            size_t n = nargs.len + (nargs.len ? 1 : 0) + r->args.len;
            char *p = pt_pnalloc(r->pool, n);
            if (p == NULL)
                return 500;
            args.data = p;
            args.len = n;
            memcpy(p, nargs.data, nargs.len);
            p += nargs.len;
            if (nargs.len)
                *p++ = '&';
            memcpy(p, r->args.data, r->args.len);
        } else {
            args = nargs;
        }
    }

    if (op->u.rw.redirect) {
        pt_str_t loc = uri;
        if (args.len) {
            char *p = pt_pnalloc(r->pool, uri.len + 1 + args.len);
            if (p == NULL)
                return 500;
            memcpy(p, uri.data, uri.len);
            p[uri.len] = '?';
            memcpy(p + uri.len + 1, args.data, args.len);
            loc.data = p;
            loc.len = uri.len + 1 + args.len;
        }
        if (rlcf->log)
            pt_log_error(PT_LOG_NOTICE, req_log(r), 0, "rewritten redirect: \"%.*s\"",
                         (int) loc.len, loc.data);
        if (set_location(r, &loc) != 0)
            return 500;
        return op->u.rw.status;
    }

    if (uri.len == 0) {
        pt_log_error(PT_LOG_ERR, req_log(r), 0, "the rewritten URI has a zero length");
        return 500;
    }
    if (rlcf->log)
        pt_log_error(PT_LOG_NOTICE, req_log(r), 0, "rewritten data: \"%.*s\", args: \"%.*s\"",
                     (int) uri.len, uri.data, (int) args.len, args.data ? args.data : "");

    r->uri = uri;
    r->args = args.data ? args : (pt_str_t) { 0, NULL };
    r->internal = 1;
    set_exten(r);
    if (op->u.rw.flag == FLAG_BREAK) {
        r->uri_changed = 0;
        r->uri_rewritten_here = 1;
        return 1;
    }
    r->uri_changed = 1;
    return op->u.rw.flag == FLAG_LAST ? 1 : PT_DECLINED;
}

static int run_script(pt_http_request_t *r, rw_loc_conf_t *rlcf)
{
    if (rlcf == NULL || rlcf->codes == NULL)
        return PT_DECLINED;
    const rw_op_t *ops = rlcf->codes->elts;
    size_t n = rlcf->codes->nelts;
    size_t pc = 0;

    while (pc < n) {
        const rw_op_t *op = &ops[pc];
        switch (op->type) {
        case OP_RETURN:
            return do_return(r, op);
        case OP_BREAK:
            return PT_DECLINED;
        case OP_SET: {
            pt_str_t v;
            if (pt_http_cv_eval(r, &op->u.set.value, &v) != 0
                || pt_http_var_set(r, op->u.set.index, &v) != 0)
                return 500;
            pc++;
            break;
        }
        case OP_IF: {
            int t = cond_true(r, &op->u.cond.cond, rlcf);
            if (t < 0)
                return 500;
            if (t) {
                /* a server-level if has no pseudo-location to switch to */
                if (op->u.cond.loc_conf)
                    r->loc_conf = op->u.cond.loc_conf;
                pc++;
            } else {
                pc = op->u.cond.jump;
            }
            break;
        }
        case OP_REWRITE: {
            int rc = do_rewrite(r, op, rlcf);
            if (rc == 1)
                return PT_DECLINED;
            if (rc != PT_DECLINED)
                return rc;
            pc++;
            break;
        }
        default:
            return 500;
        }
    }
    return PT_DECLINED;
}

static pt_http_core_srv_conf_t *req_cscf(pt_http_request_t *r)
{
    return r->srv_conf ? r->srv_conf[pt_http_core_module.index] : NULL;
}

static int server_rewrite_handler(pt_http_request_t *r)
{
    pt_http_core_srv_conf_t *cscf = req_cscf(r);
    void **lc = cscf && cscf->ctx ? cscf->ctx->loc_conf : r->loc_conf;
    if (lc == NULL)
        return PT_DECLINED;
    return run_script(r, lc[pt_http_rewrite_module.index]);
}

static int rewrite_handler(pt_http_request_t *r)
{
    pt_http_core_srv_conf_t *cscf = req_cscf(r);
    if (r->loc_conf == NULL)
        return PT_DECLINED;
    /* no location matched: the server-level script already ran */
    if (cscf && cscf->ctx && r->loc_conf == cscf->ctx->loc_conf)
        return PT_DECLINED;
    return run_script(r, pt_http_get_module_loc_conf(r, pt_http_rewrite_module));
}

/* Getter of variables made by `set`: not found until assigned. */
static int get_unset_var(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_str_t *name = (const pt_str_t *) data;
    rw_loc_conf_t *rlcf = r->loc_conf ? pt_http_get_module_loc_conf(r, pt_http_rewrite_module) : NULL;
    if (rlcf == NULL || rlcf->uninit_warn)
        pt_log_error(PT_LOG_WARN, req_log(r), 0, "using uninitialized \"%.*s\" variable",
                     (int) name->len, name->data);
    v->value.len = 0;
    v->value.data = (char *) "";
    v->not_found = 1;
    return PT_OK;
}

/* ------------------------------------------------------------------------ */
/* Config time                                                               */

static rw_op_t *push_op(pt_conf_t *cf, rw_loc_conf_t *rlcf, int type)
{
    if (rlcf->codes == NULL) {
        rlcf->codes = pt_array_create(cf->pool, 8, sizeof(rw_op_t));
        if (rlcf->codes == NULL)
            return NULL;
    }
    rw_op_t *op = pt_array_push(rlcf->codes);
    if (op) {
        op->type = type;
        op->line = cf->line;
    }
    return op;
}

static pt_str_t *args_of(pt_conf_t *cf)
{
    return cf->args->elts;
}

static int starts_with(const pt_str_t *s, const char *p)
{
    size_t n = strlen(p);
    return s->len >= n && memcmp(s->data, p, n) == 0;
}

static int is_url(const pt_str_t *s)
{
    return starts_with(s, "http://") || starts_with(s, "https://") || starts_with(s, "$scheme");
}

static const char *return_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    rw_loc_conf_t *rlcf = conf;
    pt_str_t *value = args_of(cf);
    size_t nargs = cf->args->nelts - 1;

    /* validate before pushing, so a failure leaves no half-made op */
    int status;
    pt_str_t text = { 0, NULL };
    int has_text = 0;
    int64_t n = pt_atoi64(value[1].data, value[1].len);
    if (n < 0) {
        if (nargs == 1 && is_url(&value[1])) {
            status = 302;
            text = value[1];
            has_text = 1;
        } else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid return code \"%s\"", value[1].data);
            return PT_CONF_ERROR;
        }
    } else {
        if (n > 999) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid return code \"%s\"", value[1].data);
            return PT_CONF_ERROR;
        }
        status = (int) n;
        if (nargs == 2) {
            text = value[2];
            has_text = 1;
        }
    }

    rw_op_t *op = push_op(cf, rlcf, OP_RETURN);
    if (op == NULL)
        return "failed (out of memory)";
    op->u.ret.status = status;
    op->u.ret.has_text = has_text;
    if (has_text && pt_http_cv_compile(cf, &text, &op->u.ret.text) != 0)
        return PT_CONF_ERROR;
    return PT_CONF_OK;
}

static const char *rewrite_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    rw_loc_conf_t *rlcf = conf;
    pt_str_t *value = args_of(cf);
    size_t nargs = cf->args->nelts - 1;

    int flag = FLAG_NONE;
    if (nargs == 3) {
        if (pt_str_eq_lit(&value[3], "last"))
            flag = FLAG_LAST;
        else if (pt_str_eq_lit(&value[3], "break"))
            flag = FLAG_BREAK;
        else if (pt_str_eq_lit(&value[3], "redirect"))
            flag = FLAG_REDIRECT;
        else if (pt_str_eq_lit(&value[3], "permanent"))
            flag = FLAG_PERMANENT;
        else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", value[3].data);
            return PT_CONF_ERROR;
        }
    }

    pt_http_regex_t *re = pt_pcalloc(cf->pool, sizeof(*re));
    if (re == NULL)
        return "failed (out of memory)";
    if (pt_http_regex_compile(cf, re, &value[1], 0) != 0)
        return PT_CONF_ERROR;

    rw_op_t *op = push_op(cf, rlcf, OP_REWRITE);
    if (op == NULL)
        return "failed (out of memory)";
    op->u.rw.regex = re;
    op->u.rw.flag = flag;

    pt_str_t repl = value[2];
    if (is_url(&repl)) {
        op->u.rw.redirect = 1;
        op->u.rw.status = flag == FLAG_PERMANENT ? 301 : 302;
    } else if (flag == FLAG_REDIRECT || flag == FLAG_PERMANENT) {
        op->u.rw.redirect = 1;
        op->u.rw.status = flag == FLAG_PERMANENT ? 301 : 302;
    }

    pt_str_t uri = repl, args = { 0, NULL };
    char *q = memchr(repl.data, '?', repl.len);
    op->u.rw.add_args = 1;
    if (q) {
        uri.len = (size_t) (q - repl.data);
        args.data = q + 1;
        args.len = repl.len - uri.len - 1;
        op->u.rw.has_args = 1;
        if (args.len && args.data[args.len - 1] == '?') {
            args.len--;
            op->u.rw.add_args = 0;
        } else if (args.len == 0) {
            op->u.rw.add_args = 0;
        }
    }
    if (pt_http_cv_compile(cf, &uri, &op->u.rw.uri) != 0)
        return PT_CONF_ERROR;
    if (pt_http_cv_compile(cf, &args, &op->u.rw.args) != 0)
        return PT_CONF_ERROR;
    /* ops may move when the array grows: nothing keeps op past here */
    return PT_CONF_OK;
}

static const char *break_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    if (push_op(cf, conf, OP_BREAK) == NULL)
        return "failed (out of memory)";
    return PT_CONF_OK;
}

static const char *set_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    rw_loc_conf_t *rlcf = conf;
    pt_str_t *value = args_of(cf);
    if (value[1].len < 2 || value[1].data[0] != '$') {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid variable name \"%s\"", value[1].data);
        return PT_CONF_ERROR;
    }
    pt_str_t name = { value[1].len - 1, value[1].data + 1 };
    pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_CHANGEABLE);
    if (v == NULL)
        return PT_CONF_ERROR;
    unsigned index = v->index;
    if (v->get == NULL && v->set == NULL) {
        pt_str_t *copy = pt_palloc(cf->pool, sizeof(*copy));
        if (copy == NULL)
            return "failed (out of memory)";
        copy->len = name.len;
        copy->data = pt_pstrndup(cf->pool, name.data, name.len);
        if (copy->data == NULL)
            return "failed (out of memory)";
        v->get = get_unset_var;
        v->data = (uintptr_t) copy;
    }
    pt_http_cv_t val;
    if (pt_http_cv_compile(cf, &value[2], &val) != 0)
        return PT_CONF_ERROR;
    rw_op_t *op = push_op(cf, rlcf, OP_SET);
    if (op == NULL)
        return "failed (out of memory)";
    op->u.set.index = index;
    op->u.set.value = val;
    return PT_CONF_OK;
}

/* Parses the tokens of `if (...)` into c; nginx's rules: "(" and ")" may be
 * tokens of their own or stuck to the first/last argument. */
static const char *parse_condition(pt_conf_t *cf, rw_cond_t *c)
{
    pt_str_t *value = args_of(cf);
    size_t last = cf->args->nelts - 1, cur = 1;

    if (value[1].len < 1 || value[1].data[0] != '(')
        goto invalid;
    if (value[1].len == 1) {
        cur = 2;
    } else {
        cur = 1;
        value[1].len--;
        value[1].data++;
    }
    if (value[last].len < 1 || value[last].data[value[last].len - 1] != ')')
        goto invalid;
    if (value[last].len == 1) {
        last--;
    } else {
        value[last].len--;
        value[last].data[value[last].len] = '\0';
    }
    if (cur > last)
        goto invalid;

    if (value[cur].len > 1 && value[cur].data[0] == '$') {
        if (pt_http_cv_compile(cf, &value[cur], &c->left) != 0)
            return PT_CONF_ERROR;
        if (cur == last) {
            c->type = COND_VAR;
            return PT_CONF_OK;
        }
        cur++;
        pt_str_t *o = &value[cur];
        if (cur + 1 != last)
            goto invalid;
        pt_str_t *arg = &value[cur + 1];
        if (pt_str_eq_lit(o, "=") || pt_str_eq_lit(o, "!=")) {
            c->type = o->len == 1 ? COND_EQ : COND_NE;
            if (pt_http_cv_compile(cf, arg, &c->right) != 0)
                return PT_CONF_ERROR;
            return PT_CONF_OK;
        }
        int caseless = 0;
        if (pt_str_eq_lit(o, "~")) {
        } else if (pt_str_eq_lit(o, "~*")) {
            caseless = 1;
        } else if (pt_str_eq_lit(o, "!~")) {
            c->negate = 1;
        } else if (pt_str_eq_lit(o, "!~*")) {
            c->negate = 1;
            caseless = 1;
        } else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "unexpected \"%.*s\" in condition", (int) o->len, o->data);
            return PT_CONF_ERROR;
        }
        c->type = COND_REGEX;
        c->regex = pt_pcalloc(cf->pool, sizeof(*c->regex));
        if (c->regex == NULL)
            return "failed (out of memory)";
        if (pt_http_regex_compile(cf, c->regex, arg, caseless) != 0)
            return PT_CONF_ERROR;
        return PT_CONF_OK;
    }

    if (value[cur].len > 1 && (value[cur].data[0] == '-' || value[cur].data[0] == '!')) {
        if (cur + 1 != last)
            goto invalid;
        pt_str_t *o = &value[cur];
        static const struct { const char *op; int type; int negate; } ops[] = {
            { "-f", COND_FILE, 0 }, { "!-f", COND_FILE, 1 },
            { "-d", COND_DIR, 0 }, { "!-d", COND_DIR, 1 },
            { "-e", COND_EXISTS, 0 }, { "!-e", COND_EXISTS, 1 },
            { "-x", COND_EXEC, 0 }, { "!-x", COND_EXEC, 1 },
        };
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
            if (pt_str_eq_lit(o, ops[i].op)) {
                c->type = ops[i].type;
                c->negate = ops[i].negate;
                if (pt_http_cv_compile(cf, &value[last], &c->left) != 0)
                    return PT_CONF_ERROR;
                return PT_CONF_OK;
            }
        }
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid condition \"%.*s\"", (int) o->len, o->data);
        return PT_CONF_ERROR;
    }

invalid:
    if (cur >= cf->args->nelts)
        cur = 1;
    pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid condition \"%.*s\"",
                  (int) value[cur].len, value[cur].data);
    return PT_CONF_ERROR;
}

static const char *if_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    rw_loc_conf_t *rlcf = conf;
    rw_cond_t cond;
    memset(&cond, 0, sizeof(cond));
    const char *rv = parse_condition(cf, &cond);
    if (rv != PT_CONF_OK)
        return rv;

    void **loc_conf = pt_http_core_create_noname_location(cf);
    if (loc_conf == NULL)
        return PT_CONF_ERROR;

    unsigned saved = cf->ctx;
    rw_op_t *op = push_op(cf, rlcf, OP_IF);
    if (op == NULL)
        return "failed (out of memory)";
    op->u.cond.cond = cond;
    /* as nginx: only an if in a location makes the request use its
     * pseudo-location; one at server level just guards its directives */
    op->u.cond.loc_conf = saved == PT_CTX_SRV ? NULL : loc_conf;
    size_t at = rlcf->codes->nelts - 1;
    if (saved != PT_CTX_SRV) {
        rw_main_conf_t *rmcf = pt_http_conf_get_module_main_conf(cf, pt_http_rewrite_module);
        pt_http_core_loc_conf_t **slot = pt_array_push(&rmcf->ifs);
        if (slot == NULL)
            return "failed (out of memory)";
        *slot = loc_conf[pt_http_core_module.index];
    }

    /* the block's rewrite directives are inlined in this level's script */
    rw_loc_conf_t *nested = loc_conf[pt_http_rewrite_module.index];
    nested->codes = rlcf->codes;

    pt_http_conf_ctx_t *saved_ctx = cf->http_ctx;
    pt_http_conf_ctx_t *ctx = pt_palloc(cf->pool, sizeof(*ctx));
    if (ctx == NULL)
        return "failed (out of memory)";
    ctx->main_conf = saved_ctx->main_conf;
    ctx->srv_conf = saved_ctx->srv_conf;
    ctx->loc_conf = loc_conf;
    cf->http_ctx = ctx;
    cf->ctx = saved == PT_CTX_SRV ? PT_CTX_SIF : PT_CTX_LIF;
    rv = pt_conf_parse_block(cf);
    cf->http_ctx = saved_ctx;
    cf->ctx = saved;
    if (rv != PT_CONF_OK)
        return PT_CONF_ERROR;

    ((rw_op_t *) rlcf->codes->elts)[at].u.cond.jump = rlcf->codes->nelts;
    return PT_CONF_OK;
}

static void *create_loc_conf(pt_conf_t *cf)
{
    rw_loc_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf == NULL)
        return NULL;
    conf->log = PT_CONF_UNSET;
    conf->uninit_warn = PT_CONF_UNSET;
    return conf;
}

static const char *merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    rw_loc_conf_t *prev = parent, *conf = child;
    pt_conf_merge(conf->log, prev->log, 0);
    pt_conf_merge(conf->uninit_warn, prev->uninit_warn, 1);
    /* scripts are not inherited: each level runs its own */
    return PT_CONF_OK;
}

static void *create_main_conf(pt_conf_t *cf)
{
    rw_main_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf == NULL || pt_array_init(&conf->ifs, cf->pool, 4, sizeof(pt_http_core_loc_conf_t *)) != 0)
        return NULL;
    return conf;
}

static int rewrite_init(pt_conf_t *cf)
{
    /* The content handler of a location (proxy_pass, stub_status...) stays in
     * force when an if block of it matches, unless the block sets its own:
     * nginx keeps the request's content handler when the if switches the
     * location configuration. The runtime reads the handler from the
     * current location configuration, so the if's takes its parent's. */
    rw_main_conf_t *rmcf = pt_http_conf_get_module_main_conf(cf, pt_http_rewrite_module);
    pt_http_core_loc_conf_t **ifs = rmcf->ifs.elts;
    for (size_t i = 0; i < rmcf->ifs.nelts; i++)
        if (ifs[i]->handler == NULL && ifs[i]->parent)
            ifs[i]->handler = ifs[i]->parent->handler;

    if (pt_http_phase_add(cf, PT_HTTP_SERVER_REWRITE_PHASE, server_rewrite_handler) != 0)
        return -1;
    if (pt_http_phase_add(cf, PT_HTTP_REWRITE_PHASE, rewrite_handler) != 0)
        return -1;
    return 0;
}

#define RW_CTX (PT_CTX_SRV | PT_CTX_LOC | PT_CTX_SIF | PT_CTX_LIF)

static const pt_command_t rewrite_commands[] = {
    { "return", RW_CTX, 0, 1, 2, return_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "rewrite", RW_CTX, 0, 2, 3, rewrite_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "break", RW_CTX, 0, 0, 0, break_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "set", RW_CTX, 0, 2, 2, set_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "if", PT_CTX_SRV | PT_CTX_LOC, PT_CONF_BLOCK, 1, PT_ARGS_ANY, if_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "rewrite_log", PT_CTX_HTTP | RW_CTX, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      offsetof(rw_loc_conf_t, log), NULL },
    { "uninitialized_variable_warn", PT_CTX_HTTP | RW_CTX, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, offsetof(rw_loc_conf_t, uninit_warn), NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_rewrite_module = {
    .name = "http_rewrite",
    .commands = rewrite_commands,
    .create_main_conf = create_main_conf,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
    .postconfiguration = rewrite_init,
};
