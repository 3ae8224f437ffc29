/* The headers module: add_header, add_trailer, expires. A header filter (nginx's
 * pattern: the previous top of the chain is saved in `next`) adds the
 * configured fields to responses whose status is one of 200 201 204 206 301
 * 302 303 304 307 308, or to any response for `always` headers.
 *
 * Inheritance as nginx: a level with any add_header (add_trailer) replaces the
 * parent's list as a whole; expires is inherited as one setting. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../core/time.h"
#include "../http/core.h"
#include "../http/request.h"
#include "../http/variables.h"

extern pt_module_t pt_http_headers_module;

enum {
    EXP_OFF = 0,
    EXP_EPOCH,
    EXP_MAX,
    EXP_ACCESS,      /* now + time */
    EXP_MODIFIED,    /* Last-Modified + time */
    EXP_DAILY,       /* next @time of day */
    EXP_UNSET = -1
};

typedef struct {
    pt_str_t     name;
    pt_http_cv_t value;
    unsigned     always:1;
} hdr_t;

typedef struct {
    pt_array_t   *headers;       /* hdr_t; UNSET_PTR inherit; NULL none */
    pt_array_t   *trailers;      /* hdr_t; accepted (see add_trailer) */
    int           expires;       /* EXP_* */
    int64_t       expires_time;  /* seconds (may be negative) */
    pt_http_cv_t *expires_cv;    /* expires with variables */
    int           expires_modified;  /* "modified" given with a variable */
} headers_conf_t;

static pt_http_header_filter_cb next_header_filter;

static int status_is_cacheable(int status)
{
    switch (status) {
    case 200: case 201: case 204: case 206:
    case 301: case 302: case 303: case 304: case 307: case 308:
        return 1;
    default:
        return 0;
    }
}

/* Marks every not yet deleted header named name as deleted. */
static void delete_headers(pt_http_request_t *r, const char *name, size_t len)
{
    pt_http_header_t *h = r->headers_out.list.elts;
    for (size_t i = 0; i < r->headers_out.list.nelts; i++)
        if (!h[i].deleted && h[i].name.len == len && pt_strncasecmp(h[i].name.data, name, len) == 0)
            h[i].deleted = 1;
}

/* Parses an expires value: epoch | max | off | @time | [+-]time. Returns 0 or
 * -1. */
static int parse_expires(const pt_str_t *in, int modified, int *type, int64_t *t)
{
    pt_str_t v = *in;
    if (pt_str_eq_lit(&v, "epoch")) {
        *type = EXP_EPOCH;
        return 0;
    }
    if (pt_str_eq_lit(&v, "max")) {
        *type = EXP_MAX;
        return 0;
    }
    if (pt_str_eq_lit(&v, "off")) {
        *type = EXP_OFF;
        return 0;
    }
    *type = modified ? EXP_MODIFIED : EXP_ACCESS;
    int minus = 0;
    if (v.len && v.data[0] == '@') {
        if (modified)
            return -1;
        *type = EXP_DAILY;
        v.data++;
        v.len--;
    } else if (v.len && v.data[0] == '+') {
        v.data++;
        v.len--;
    } else if (v.len && v.data[0] == '-') {
        minus = 1;
        v.data++;
        v.len--;
    }
    int64_t sec = pt_conf_parse_sec(&v);
    if (sec < 0)
        return -1;
    if (*type == EXP_DAILY && sec >= 24 * 60 * 60)
        return -1;
    *t = minus ? -sec : sec;
    return 0;
}

/* The next moment (from now) whose local time of day is `tod` seconds. */
static time_t next_daily(time_t now, int64_t tod)
{
    struct tm tm;
    localtime_r(&now, &tm);
    tm.tm_hour = (int) (tod / 3600);
    tm.tm_min = (int) (tod / 60 % 60);
    tm.tm_sec = (int) (tod % 60);
    tm.tm_isdst = -1;
    time_t next = mktime(&tm);
    if (next == (time_t) -1)
        return now;
    if (next <= now) {
        tm.tm_mday++;
        tm.tm_isdst = -1;
        next = mktime(&tm);
    }
    return next;
}

static int set_cache_headers(pt_http_request_t *r, const char *expires, size_t elen,
                             const char *cc, size_t cclen)
{
    delete_headers(r, "Expires", 7);
    delete_headers(r, "Cache-Control", 13);
    if (pt_http_header_add(r, &r->headers_out.list, "Expires", 7, expires, elen) == NULL)
        return -1;
    if (pt_http_header_add(r, &r->headers_out.list, "Cache-Control", 13, cc, cclen) == NULL)
        return -1;
    return 0;
}

static int apply_expires(pt_http_request_t *r, int type, int64_t t)
{
    if (type == EXP_OFF)
        return 0;
    if (type == EXP_EPOCH)
        return set_cache_headers(r, "Thu, 01 Jan 1970 00:00:01 GMT", 29, "no-cache", 8);
    if (type == EXP_MAX)
        return set_cache_headers(r, "Thu, 31 Dec 2037 23:55:55 GMT", 29, "max-age=315360000", 17);

    time_t now = pt_time_sec ? pt_time_sec : time(NULL);
    time_t when;
    int64_t max_age;
    if (type == EXP_DAILY) {
        when = next_daily(now, t);
        max_age = (int64_t) (when - now);
    } else if (type == EXP_ACCESS || r->headers_out.last_modified_time == -1) {
        when = now + (time_t) t;
        max_age = t;
    } else {
        when = r->headers_out.last_modified_time + (time_t) t;
        max_age = (int64_t) (when - now);
    }
    char date[64];
    size_t dlen = pt_http_time(date, when);
    if (t < 0 || max_age < 0)
        return set_cache_headers(r, date, dlen, "no-cache", 8);
    char cc[48];
    int n = snprintf(cc, sizeof(cc), "max-age=%lld", (long long) max_age);
    return set_cache_headers(r, date, dlen, cc, (size_t) n);
}

static int add_one(pt_http_request_t *r, const hdr_t *h)
{
    pt_str_t v;
    if (pt_http_cv_eval(r, &h->value, &v) != 0)
        return -1;
    if (pt_str_caseeq_lit(&h->name, "Last-Modified")) {
        /* replaces the response's own */
        delete_headers(r, "Last-Modified", 13);
        r->headers_out.last_modified_time = -1;
    } else if (pt_str_caseeq_lit(&h->name, "ETag")) {
        delete_headers(r, "ETag", 4);
    }
    /* an empty value adds nothing (nginx) */
    if (v.len == 0)
        return 0;
    return pt_http_header_add(r, &r->headers_out.list, h->name.data, h->name.len, v.data, v.len)
           ? 0 : -1;
}

static int headers_filter(pt_http_request_t *r)
{
    headers_conf_t *conf = r->loc_conf ? pt_http_get_module_loc_conf(r, pt_http_headers_module) : NULL;
    if (conf == NULL)
        return next_header_filter(r);
    int has_headers = conf->headers && conf->headers != PT_CONF_UNSET_PTR;
    if (!has_headers && conf->expires == EXP_OFF && conf->expires_cv == NULL)
        return next_header_filter(r);

    int status = r->headers_out.status;
    int ok = status_is_cacheable(status);

    if (ok && conf->expires_cv) {
        pt_str_t v;
        int type;
        int64_t t = 0;
        if (pt_http_cv_eval(r, conf->expires_cv, &v) == 0) {
            if (parse_expires(&v, conf->expires_modified, &type, &t) == 0) {
                if (apply_expires(r, type, t) != 0)
                    return PT_ERROR;
            } else {
                pt_log_error(PT_LOG_ERR, r->connection ? &r->connection->log : NULL, 0,
                             "invalid \"expires\" value \"%.*s\"", (int) v.len, v.data);
            }
        }
    } else if (ok && conf->expires != EXP_OFF) {
        if (apply_expires(r, conf->expires, conf->expires_time) != 0)
            return PT_ERROR;
    }

    if (has_headers) {
        const hdr_t *h = conf->headers->elts;
        for (size_t i = 0; i < conf->headers->nelts; i++) {
            if (!ok && !h[i].always)
                continue;
            if (add_one(r, &h[i]) != 0)
                return PT_ERROR;
        }
    }
    return next_header_filter(r);
}

/* ------------------------------------------------------------------------ */
/* Config time                                                               */

static const char *add_header_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    headers_conf_t *hcf = conf;
    pt_str_t *value = cf->args->elts;
    size_t n = cf->args->nelts;
    pt_array_t **list = cmd->offset == offsetof(headers_conf_t, trailers) ? &hcf->trailers
                                                                          : &hcf->headers;
    if (*list == NULL || *list == PT_CONF_UNSET_PTR) {
        *list = pt_array_create(cf->pool, 4, sizeof(hdr_t));
        if (*list == NULL)
            return "failed (out of memory)";
    }
    int always = 0;
    if (n == 4) {
        if (!pt_str_eq_lit(&value[3], "always")) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", value[3].data);
            return PT_CONF_ERROR;
        }
        always = 1;
    }
    hdr_t h;
    memset(&h, 0, sizeof(h));
    h.name = value[1];
    h.always = always;
    if (pt_http_cv_compile(cf, &value[2], &h.value) != 0)
        return PT_CONF_ERROR;
    hdr_t *nh = pt_array_push(*list);
    if (nh == NULL)
        return "failed (out of memory)";
    *nh = h;
    return PT_CONF_OK;
}

static const char *expires_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    headers_conf_t *hcf = conf;
    pt_str_t *value = cf->args->elts;
    size_t n = cf->args->nelts;

    if (hcf->expires != EXP_UNSET || hcf->expires_cv)
        return "is duplicate";

    int modified = 0;
    pt_str_t *v = &value[1];
    if (n == 3) {
        if (!pt_str_eq_lit(&value[1], "modified")) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\"", value[1].data);
            return PT_CONF_ERROR;
        }
        modified = 1;
        v = &value[2];
    }

    if (memchr(v->data, '$', v->len)) {
        hcf->expires_cv = pt_palloc(cf->pool, sizeof(pt_http_cv_t));
        if (hcf->expires_cv == NULL || pt_http_cv_compile(cf, v, hcf->expires_cv) != 0)
            return PT_CONF_ERROR;
        hcf->expires_modified = modified;
        hcf->expires = EXP_OFF;
        return PT_CONF_OK;
    }

    if (modified && (pt_str_eq_lit(v, "epoch") || pt_str_eq_lit(v, "max") || pt_str_eq_lit(v, "off"))) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\"", v->data);
        return PT_CONF_ERROR;
    }
    if (v->len && v->data[0] == '@' && modified) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "daily time cannot be used with \"modified\" parameter");
        return PT_CONF_ERROR;
    }
    int type;
    int64_t t = 0;
    if (parse_expires(v, modified, &type, &t) != 0) {
        if (v->len && v->data[0] == '@') {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "daily time value must be less than 24 hours");
            return PT_CONF_ERROR;
        }
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\"", v->data);
        return PT_CONF_ERROR;
    }
    hcf->expires = type;
    hcf->expires_time = t;
    return PT_CONF_OK;
}

static void *create_loc_conf(pt_conf_t *cf)
{
    headers_conf_t *conf = pt_pcalloc(cf->pool, sizeof(*conf));
    if (conf == NULL)
        return NULL;
    conf->headers = PT_CONF_UNSET_PTR;
    conf->trailers = PT_CONF_UNSET_PTR;
    conf->expires = EXP_UNSET;
    return conf;
}

static const char *merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    headers_conf_t *prev = parent, *conf = child;
    if (conf->expires == EXP_UNSET && conf->expires_cv == NULL) {
        conf->expires = prev->expires;
        conf->expires_time = prev->expires_time;
        conf->expires_cv = prev->expires_cv;
        conf->expires_modified = prev->expires_modified;
        if (conf->expires == EXP_UNSET)
            conf->expires = EXP_OFF;
    }
    pt_conf_merge_ptr(conf->headers, prev->headers, NULL);
    pt_conf_merge_ptr(conf->trailers, prev->trailers, NULL);
    return PT_CONF_OK;
}

static int headers_init(pt_conf_t *cf)
{
    next_header_filter = pt_http_top_header_filter;
    pt_http_top_header_filter = headers_filter;
    return 0;
}

#define HDR_CTX (PT_CTX_HTTP_ANY | PT_CTX_LIF)

static const pt_command_t headers_commands[] = {
    { "add_header", HDR_CTX, 0, 2, 3, add_header_cmd, PT_CONF_HTTP_LOC,
      offsetof(headers_conf_t, headers), NULL },
    /* accepted; trailers need chunked/h2 trailer support in the writer and
     * are not sent yet */
    { "add_trailer", HDR_CTX, 0, 2, 3, add_header_cmd, PT_CONF_HTTP_LOC,
      offsetof(headers_conf_t, trailers), NULL },
    { "expires", HDR_CTX, 0, 1, 2, expires_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_headers_module = {
    .name = "http_headers",
    .commands = headers_commands,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
    .postconfiguration = headers_init,
};
