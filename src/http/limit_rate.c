/* The pace of responses: limit_rate, limit_rate_after, $limit_rate,
 * X-Accel-Limit-Rate. See limit_rate.h for the budget. */
#include "limit_rate.h"

#include <stdio.h>
#include <string.h>

#include "../core/time.h"
#include "core.h"
#include "variables.h"

#define BURST_MS  100    /* head start once the limit applies */
#define SLICE_MS  10     /* do not wake up for less than this much */
#define SLICE_MIN 512    /* ... or this many bytes */
#define SLICE_MAX (64 * 1024)

/* A size from the location: the literal, or the complex value evaluated for
 * r ("invalid" values count as 0, i.e. no limit). */
static int64_t conf_size(pt_http_request_t *r, int64_t value, const pt_http_cv_t *cv)
{
    if (cv == NULL)
        return value > 0 ? value : 0;
    pt_str_t s;
    if (pt_http_cv_eval(r, cv, &s) != 0)
        return 0;
    int64_t n = pt_conf_parse_size(&s);
    if (n < 0) {
        pt_log_error(PT_LOG_ERR, &r->connection->log, 0, "invalid size \"%.*s\"", (int) s.len,
                     s.data);
        return 0;
    }
    return n;
}

static pt_http_core_loc_conf_t *clcf_of(pt_http_request_t *r)
{
    return r->loc_conf ? r->loc_conf[pt_http_core_module.index] : NULL;
}

size_t pt_http_limit_rate_allow(pt_http_request_t *r, size_t want, int64_t *delay_ms)
{
    pt_http_core_loc_conf_t *clcf;

    if (!r->limit_rate_set) {
        clcf = clcf_of(r);
        r->limit_rate = clcf ? conf_size(r, clcf->limit_rate, clcf->limit_rate_cv) : 0;
        r->limit_rate_set = 1;
    }
    if (r->limit_rate <= 0 || want == 0)
        return want;
    if (!r->limit_rate_after_set) {
        clcf = clcf_of(r);
        r->limit_rate_after = clcf ? conf_size(r, clcf->limit_rate_after,
                                               clcf->limit_rate_after_cv) : 0;
        r->limit_rate_after_set = 1;
    }
    if (!r->limit_rate_started) {
        r->limit_rate_started = 1;
        r->limit_rate_start = pt_current_msec;
    }

    double rate = (double) r->limit_rate;
    double elapsed = (double) (pt_current_msec - r->limit_rate_start);
    double allowed = (double) r->limit_rate_after + rate * (elapsed + BURST_MS) / 1000.0;
    double budget = allowed - (double) r->bytes_sent;
    if (budget >= (double) want)
        return want;

    double slice = rate * SLICE_MS / 1000.0;
    if (slice < SLICE_MIN)
        slice = rate < SLICE_MIN ? rate : SLICE_MIN;
    if (slice > SLICE_MAX)
        slice = SLICE_MAX;
    if (slice > (double) want)
        slice = (double) want;
    if (budget >= slice)
        return (size_t) budget;

    double wait = (slice - budget) * 1000.0 / rate;
    *delay_ms = wait < 1.0 ? 1 : wait > 3600e3 ? 3600000 : (int64_t) wait + 1;
    return 0;
}

size_t pt_http_limit_rate_iov(pt_http_request_t *r, struct iovec *iov, int *n, size_t total,
                              int64_t *delay_ms)
{
    size_t allow = pt_http_limit_rate_allow(r, total, delay_ms);
    if (allow == 0 || allow == total)
        return allow;
    size_t left = allow;
    for (int i = 0; i < *n; i++) {
        if (iov[i].iov_len >= left) {
            iov[i].iov_len = left;
            *n = i + 1;
            break;
        }
        left -= iov[i].iov_len;
    }
    return allow;
}

/* Digits only, as nginx reads the header. */
static int64_t parse_digits(const pt_str_t *v)
{
    int64_t n = 0;
    if (v->len == 0 || v->len > 18)
        return -1;
    for (size_t i = 0; i < v->len; i++) {
        if (v->data[i] < '0' || v->data[i] > '9')
            return -1;
        n = n * 10 + (v->data[i] - '0');
    }
    return n;
}

void pt_http_limit_rate_header(pt_http_request_t *r, const pt_str_t *value)
{
    int64_t n = parse_digits(value);
    if (n < 0)
        return;
    r->limit_rate = n;
    r->limit_rate_set = 1;
}

/* ------------------------------------------------------------------------ */
/* $limit_rate: the request's rate once set (by `set`, the header, or the
 * first write), else the location's; `set $limit_rate 100k` assigns it.      */

static int get_limit_rate(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    int64_t rate = 0;
    if (r->limit_rate_set) {
        rate = r->limit_rate;
    } else {
        pt_http_core_loc_conf_t *clcf = clcf_of(r);
        if (clcf)
            rate = conf_size(r, clcf->limit_rate, clcf->limit_rate_cv);
    }
    char *p = pt_pnalloc(r->pool, 24);
    if (p == NULL)
        return PT_ERROR;
    v->value.len = (size_t) snprintf(p, 24, "%lld", (long long) rate);
    v->value.data = p;
    v->no_cacheable = 1;
    return PT_OK;
}

static void set_limit_rate(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    int64_t n = pt_conf_parse_size(&v->value);
    if (n < 0) {
        pt_log_error(PT_LOG_ERR, &r->connection->log, 0, "invalid size \"%.*s\"",
                     (int) v->value.len, v->value.data);
        return;
    }
    r->limit_rate = n;
    r->limit_rate_set = 1;
}

static int limit_rate_preconf(pt_conf_t *cf)
{
    /* takes over the core's read-only $limit_rate (both are changeable) */
    pt_str_t name = pt_string("limit_rate");
    pt_http_var_t *v = pt_http_var_add(cf, &name, PT_VAR_CHANGEABLE | PT_VAR_NOCACHEABLE);
    if (v == NULL)
        return -1;
    v->get = get_limit_rate;
    v->set = set_limit_rate;
    v->data = 0;
    return 0;
}

/* The directives are http_core's; part of nginx's core, so not in -V. */
pt_module_t pt_http_limit_rate_module = {
    .name = "http_limit_rate",
    .builtin_core = 1,
    .preconfiguration = limit_rate_preconf,
};
