/* Shared helpers for the http core's unit tests (test_location.c,
 * test_server_name.c, test_http_core.c): configurations go through the real
 * parser with the http core module (plus any test modules), then fake
 * requests are matched against the result. */
#ifndef PT_TEST_HTTP_CORE_TEST_H
#define PT_TEST_HTTP_CORE_TEST_H

#include "config/conf_test.h"
#include "http/core.h"
#include "http/h1_conn.h"
#include "tap.h"

/* The HTTP runtime may not be linked into the library yet. */
__attribute__((weak)) void pt_http_init_connection(pt_conn_t *c)
{
    (void) c;
}

static t_ctx_t T;
static int t_loaded;

static pt_str_t S(const char *s)
{
    pt_str_t r = { strlen(s), (char *) s };
    return r;
}

/* Parses text as the file "test.conf" with the given modules (the core module
 * first). Returns the captured stderr; *ok is 1 when parsing succeeded. */
T_UNUSED static const char *t_load_with(const char *text, int *ok, pt_module_t **mods, size_t n)
{
    if (t_loaded)
        t_teardown(&T);
    t_setup(&T, mods, n);
    t_loaded = 1;
    t_capture_begin();
    const char *rv = pt_conf_parse_string(&T.cf, text, t_path("test.conf"));
    const char *err = t_capture_end();
    *ok = rv == PT_CONF_OK;
    return err;
}

static pt_module_t *t_core_only[] = { &pt_http_core_module };

T_UNUSED static const char *t_load(const char *text, int *ok)
{
    return t_load_with(text, ok, t_core_only, 1);
}

T_UNUSED static pt_http_core_main_conf_t *t_cmcf(void)
{
    return T.cycle.http_ctx->main_conf[pt_http_core_module.index];
}

/* The i-th server { } of the configuration. */
T_UNUSED static pt_http_core_srv_conf_t *t_server(size_t i)
{
    pt_http_core_main_conf_t *cmcf = t_cmcf();
    if (i >= cmcf->servers.nelts)
        return NULL;
    return ((pt_http_core_srv_conf_t **) cmcf->servers.elts)[i];
}

/* The listening record for text ("127.0.0.1:8080"), or NULL. */
T_UNUSED static pt_listening_t *t_listening(const char *text)
{
    pt_listening_t *ls = T.cycle.listening.elts;
    for (size_t i = 0; i < T.cycle.listening.nelts; i++) {
        if (strcmp(ls[i].addr_text, text) == 0)
            return &ls[i];
    }
    return NULL;
}

T_UNUSED static pt_http_core_loc_conf_t *t_clcf(void **loc_conf)
{
    return loc_conf[pt_http_core_module.index];
}

/* A zeroed request on server cscf for uri. */
T_UNUSED static void t_request(pt_http_request_t *r, pt_http_core_srv_conf_t *cscf, const char *uri)
{
    memset(r, 0, sizeof(*r));
    r->pool = T.pool;
    r->main_conf = T.cycle.http_ctx->main_conf;
    r->srv_conf = cscf->ctx->srv_conf;
    r->loc_conf = cscf->ctx->loc_conf;
    r->uri = S(uri);
    r->headers_in.content_length_n = -1;
}

/* "= /x", "^~ /x", "~ re", "@x", "/x" or "" (server level) for a location. */
T_UNUSED static const char *t_loc_desc(const pt_http_core_loc_conf_t *clcf)
{
    static char buf[4][256];
    static int n;
    char *b = buf[n++ % 4];
    const char *mod = clcf->exact_match ? "= " : clcf->noregex ? "^~ " : clcf->regex ? "~ " : "";
    snprintf(b, sizeof(buf[0]), "%s%.*s", mod, (int) clcf->name.len, clcf->name.data);
    return b;
}

/* Matches uri on server cscf; returns the description, *rc the result. */
T_UNUSED static const char *t_match(pt_http_core_srv_conf_t *cscf, const char *uri, int *rc)
{
    pt_http_request_t r;
    t_request(&r, cscf, uri);
    int res = pt_http_find_location(&r);
    if (rc)
        *rc = res;
    return t_loc_desc(t_clcf(r.loc_conf));
}

T_UNUSED static int t_contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

#endif
