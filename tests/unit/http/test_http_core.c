/* Unit tests for src/http/http_core.c: directive defaults and inheritance
 * (http -> server -> location -> nested), types, error_page, root/alias, the
 * phase engine layout, and the configuration errors of the core directives. */
#include "core_test.h"

/* ---- a test module registering phase handlers -------------------------- */

static int h_rewrite1(pt_http_request_t *r) { (void) r; return PT_DECLINED; }
static int h_rewrite2(pt_http_request_t *r) { (void) r; return PT_DECLINED; }
static int h_access(pt_http_request_t *r) { (void) r; return PT_DECLINED; }
static int h_content(pt_http_request_t *r) { (void) r; return PT_DECLINED; }
static int h_log(pt_http_request_t *r) { (void) r; return PT_OK; }
static int h_post_read(pt_http_request_t *r) { (void) r; return PT_DECLINED; }

static int phase_bad_rc;

static int test_postconf(pt_conf_t *cf)
{
    if (pt_http_phase_add(cf, PT_HTTP_REWRITE_PHASE, h_rewrite1) != 0
        || pt_http_phase_add(cf, PT_HTTP_REWRITE_PHASE, h_rewrite2) != 0
        || pt_http_phase_add(cf, PT_HTTP_ACCESS_PHASE, h_access) != 0
        || pt_http_phase_add(cf, PT_HTTP_CONTENT_PHASE, h_content) != 0
        || pt_http_phase_add(cf, PT_HTTP_LOG_PHASE, h_log) != 0
        || pt_http_phase_add(cf, PT_HTTP_POST_READ_PHASE, h_post_read) != 0)
        return -1;
    t_capture_begin();
    phase_bad_rc = pt_http_phase_add(cf, PT_HTTP_FIND_CONFIG_PHASE, h_log);
    t_capture_end();
    return 0;
}

/* "tif { }": a pseudo-location block like the rewrite module's `if`. */
static void **tif_loc;

static const char *tif_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    (void) cmd;
    (void) conf;
    void **loc = pt_http_core_create_noname_location(cf);
    if (loc == NULL)
        return PT_CONF_ERROR;
    tif_loc = loc;
    pt_http_conf_ctx_t ctx = *cf->http_ctx, *saved = cf->http_ctx;
    unsigned saved_ctx = cf->ctx;
    ctx.loc_conf = loc;
    cf->http_ctx = &ctx;
    cf->ctx = PT_CTX_LIF;
    const char *rv = pt_conf_parse_block(cf);
    cf->http_ctx = saved;
    cf->ctx = saved_ctx;
    return rv;
}

static const pt_command_t test_commands[] = {
    { "tif", PT_CTX_LOC, PT_CONF_BLOCK, 0, 0, tif_cmd, PT_CONF_NONE, 0, NULL },
    PT_COMMAND_END
};

static pt_module_t test_module = { .name = "test_phases", .commands = test_commands,
                                   .postconfiguration = test_postconf };

static void test_phase_engine_empty(void)
{
    int ok_;
    t_load("http { server { listen 127.0.0.1:8080; } }", &ok_);
    ok(ok_, "loads");
    if (!ok_)
        return;
    pt_http_core_main_conf_t *cmcf = t_cmcf();
    pt_http_phase_handler_t *e = cmcf->phase_engine;
    is_int(cmcf->phase_engine_n, 4, "4 built-in steps");
    is_int(e[0].phase, PT_HTTP_FIND_CONFIG_PHASE, "FIND_CONFIG");
    is_int(e[1].phase, PT_HTTP_POST_REWRITE_PHASE, "POST_REWRITE");
    is_int(e[2].phase, PT_HTTP_POST_ACCESS_PHASE, "POST_ACCESS");
    is_int(e[3].phase, PT_HTTP_CONTENT_PHASE, "final CONTENT");
    ok(!e[0].handler && !e[1].handler && !e[2].handler && !e[3].handler, "no handlers");
    is_int(cmcf->server_rewrite_index, 0, "server_rewrite_index");
    is_int(cmcf->find_config_index, 0, "find_config_index");
    is_int(cmcf->location_rewrite_index, 1, "location_rewrite_index");
    is_int(cmcf->access_index, 2, "access_index");
    is_int(cmcf->content_index, 3, "content_index");
    is_int(e[3].next, 4, "last next = n");
}

static void test_phase_engine_handlers(void)
{
    pt_module_t *mods[] = { &pt_http_core_module, &test_module };
    int ok_;
    t_load_with("http { server { listen 127.0.0.1:8080; } }", &ok_, mods, 2);
    ok(ok_, "loads");
    if (!ok_)
        return;
    pt_http_core_main_conf_t *cmcf = t_cmcf();
    pt_http_phase_handler_t *e = cmcf->phase_engine;
    /* POST_READ, FIND_CONFIG, REWRITE x2, POST_REWRITE, ACCESS, POST_ACCESS,
     * CONTENT, CONTENT(final) */
    is_int(cmcf->phase_engine_n, 9, "9 steps");
    if (cmcf->phase_engine_n != 9)
        return;
    ok(e[0].phase == PT_HTTP_POST_READ_PHASE && e[0].handler == h_post_read, "0 POST_READ");
    is_int(e[0].next, 1, "POST_READ next");
    ok(e[1].phase == PT_HTTP_FIND_CONFIG_PHASE && !e[1].handler, "1 FIND_CONFIG");
    is_int(cmcf->server_rewrite_index, 1, "no server rewrite handlers: = find_config");
    is_int(cmcf->find_config_index, 1, "find_config_index");
    ok(e[2].handler == h_rewrite1 && e[3].handler == h_rewrite2, "REWRITE in registration order");
    is_int(cmcf->location_rewrite_index, 2, "location_rewrite_index");
    is_int(e[2].next, 4, "REWRITE next = POST_REWRITE");
    is_int(e[3].next, 4, "REWRITE next = POST_REWRITE (2)");
    ok(e[4].phase == PT_HTTP_POST_REWRITE_PHASE, "4 POST_REWRITE");
    ok(e[5].phase == PT_HTTP_ACCESS_PHASE && e[5].handler == h_access, "5 ACCESS");
    is_int(cmcf->access_index, 5, "access_index");
    is_int(e[5].next, 6, "ACCESS next = POST_ACCESS");
    ok(e[6].phase == PT_HTTP_POST_ACCESS_PHASE, "6 POST_ACCESS");
    ok(e[7].phase == PT_HTTP_CONTENT_PHASE && e[7].handler == h_content, "7 CONTENT");
    ok(e[8].phase == PT_HTTP_CONTENT_PHASE && e[8].handler == NULL, "8 final CONTENT");
    is_int(cmcf->content_index, 7, "content_index");
    is_int(e[7].next, 9, "CONTENT next = n");
    is_int(cmcf->phases[PT_HTTP_LOG_PHASE].nelts, 1, "LOG handler kept in phases[LOG]");
    is_int(phase_bad_rc, -1, "handlers cannot be added to built-in phases");
}

/* ---- directives and merging -------------------------------------------- */

static pt_http_core_loc_conf_t *loc_of(pt_http_core_srv_conf_t *s, const char *uri)
{
    pt_http_request_t r;
    t_request(&r, s, uri);
    pt_http_find_location(&r);
    return t_clcf(r.loc_conf);
}

static void test_defaults(void)
{
    int ok_;
    t_load("http { server { listen 127.0.0.1:8080; location / { } } }", &ok_);
    ok(ok_, "loads");
    if (!ok_)
        return;
    pt_http_core_srv_conf_t *s = t_server(0);
    pt_http_core_loc_conf_t *l = loc_of(s, "/");
    is_int(s->client_header_buffer_size, 1024, "client_header_buffer_size 1k");
    is_int(s->large_client_header_buffers_num, 4, "large_client_header_buffers 4");
    is_int(s->large_client_header_buffers_size, 8192, "... 8k");
    is_int(s->client_header_timeout, 60000, "client_header_timeout 60s");
    is_int(s->merge_slashes, 1, "merge_slashes on");
    is_int(s->underscores_in_headers, 0, "underscores_in_headers off");
    is_int(s->ignore_invalid_headers, 1, "ignore_invalid_headers on");
    is_int(s->http2, 0, "http2 off");
    is_int(s->request_pool_size, 4096, "request_pool_size 4k");
    is_str(s->server_name.data, "", "server_name \"\" by default");
    is_int(l->client_max_body_size, 1048576, "client_max_body_size 1m");
    is_int(l->client_body_buffer_size, 16384, "client_body_buffer_size 16k");
    is_int(l->client_body_timeout, 60000, "client_body_timeout 60s");
    is_int(l->send_timeout, 60000, "send_timeout 60s");
    is_int(l->keepalive_timeout, 75000, "keepalive_timeout 75s");
    is_int(l->keepalive_header, -1, "no Keep-Alive header timeout");
    is_int(l->keepalive_requests, 1000, "keepalive_requests 1000");
    is_int(l->keepalive_time, 3600000, "keepalive_time 1h");
    is_int(l->lingering_close, PT_HTTP_LINGERING_ON, "lingering_close on");
    is_int(l->lingering_time, 30000, "lingering_time 30s");
    is_int(l->lingering_timeout, 5000, "lingering_timeout 5s");
    is_int(l->reset_timedout_connection, 0, "reset_timedout_connection off");
    is_int(l->server_tokens, PT_HTTP_SERVER_TOKENS_ON, "server_tokens on");
    is_int(l->tcp_nodelay, 1, "tcp_nodelay on");
    is_int(l->sendfile, 0, "sendfile off");
    is_int(l->postpone_output, 1460, "postpone_output 1460");
    is_int(l->sendfile_max_chunk, 2 * 1024 * 1024, "sendfile_max_chunk 2m");
    is_int(l->output_buffers_num, 2, "output_buffers 2");
    is_int(l->output_buffers_size, 32768, "... 32k");
    is_int(l->absolute_redirect, 1, "absolute_redirect on");
    is_int(l->server_name_in_redirect, 0, "server_name_in_redirect off");
    is_int(l->port_in_redirect, 1, "port_in_redirect on");
    is_int(l->msie_padding, 1, "msie_padding on");
    is_int(l->msie_refresh, 0, "msie_refresh off");
    is_int(l->log_not_found, 1, "log_not_found on");
    is_int(l->log_subrequest, 0, "log_subrequest off");
    is_int(l->chunked_transfer_encoding, 1, "chunked_transfer_encoding on");
    is_int(l->recursive_error_pages, 0, "recursive_error_pages off");
    is_int(l->etag, 1, "etag on");
    is_int(l->if_modified_since, PT_HTTP_IMS_EXACT, "if_modified_since exact");
    is_int(l->satisfy, PT_HTTP_SATISFY_ALL, "satisfy all");
    is_int(l->max_ranges, -1, "max_ranges unlimited");
    is_int(l->internal, 0, "not internal");
    is_int(l->limit_rate, 0, "limit_rate 0");
    is_int(l->resolver_timeout, 30000, "resolver_timeout 30s");
    ok(l->resolver == NULL, "no resolver");
    is_str(l->default_type.data, "text/plain", "default_type text/plain");
    ok(l->error_pages == NULL, "no error pages");
    ok(l->error_log == &T.cycle.new_log, "error_log: the main one");
    char want[600];
    snprintf(want, sizeof(want), "%shtml", T.cycle.prefix.data);
    is_strn(l->root.data, l->root.len, want, "root html (prefix-relative)");
    is_int(l->alias, 0, "not an alias");
}

static void test_inheritance(void)
{
    int ok_;
    const char *err = t_load(
        "http {\n"
        " keepalive_timeout 10s 5;\n"
        " client_max_body_size 2m;\n"
        " server_tokens off;\n"
        " root /srv/http;\n"
        " error_page 404 /404.html;\n"
        " large_client_header_buffers 8 16k;\n"
        " merge_slashes off;\n"
        " server {\n"
        "  listen 127.0.0.1:8080;\n"
        "  client_max_body_size 3m;\n"
        "  underscores_in_headers on;\n"
        "  location /a/ {\n"
        "   keepalive_timeout 0;\n"
        "   error_page 500 502 =200 /50x.html;\n"
        "   location /a/b/ { root /srv/b/; }\n"
        "  }\n"
        "  location /c/ { alias /data/c/; internal; }\n"
        "  location ~ ^/re/(.*)$ { alias /data/$1; }\n"
        " }\n"
        "}\n", &ok_);
    ok(ok_, "loads");
    if (!ok_) {
        note("%s", err);
        return;
    }
    pt_http_core_srv_conf_t *s = t_server(0);
    is_int(s->large_client_header_buffers_num, 8, "server inherits large_client_header_buffers");
    is_int(s->large_client_header_buffers_size, 16384, "... size");
    is_int(s->merge_slashes, 0, "merge_slashes from http");
    is_int(s->underscores_in_headers, 1, "server's own");

    pt_http_core_loc_conf_t *srv = t_clcf(s->ctx->loc_conf);
    is_int(srv->client_max_body_size, 3 * 1024 * 1024, "server overrides http");
    is_int(srv->keepalive_timeout, 10000, "server inherits keepalive_timeout");
    is_int(srv->keepalive_header, 5, "... and its header timeout");

    pt_http_core_loc_conf_t *a = loc_of(s, "/a/x");
    is_int(a->keepalive_timeout, 0, "location overrides keepalive_timeout");
    is_int(a->keepalive_header, -1, "... header timeout not inherited separately");
    is_int(a->client_max_body_size, 3 * 1024 * 1024, "location inherits from server");
    is_int(a->server_tokens, PT_HTTP_SERVER_TOKENS_OFF, "location inherits from http");
    is_strn(a->root.data, a->root.len, "/srv/http", "root inherited");
    ok(a->error_pages && a->error_pages->nelts == 2, "own error_page replaces the inherited ones");
    if (a->error_pages && a->error_pages->nelts == 2) {
        pt_http_error_page_t *ep = a->error_pages->elts;
        is_int(ep[0].status, 500, "500");
        is_int(ep[1].status, 502, "502");
        is_int(ep[0].overwrite, 200, "=200");
        is_str(ep[0].uri.source.data, "/50x.html", "uri");
    }
    ok(srv->error_pages && srv->error_pages->nelts == 1, "server inherits http error_page");

    pt_http_core_loc_conf_t *b = loc_of(s, "/a/b/x");
    is_strn(b->root.data, b->root.len, "/srv/b", "nested root (trailing slash removed)");
    is_int(b->keepalive_timeout, 0, "nested inherits from its parent location");
    ok(b->error_pages == a->error_pages, "nested inherits error pages of its parent");

    pt_http_core_loc_conf_t *c = loc_of(s, "/c/x");
    is_strn(c->root.data, c->root.len, "/data/c/", "alias keeps its trailing slash");
    is_int(c->alias, 3, "alias replaces the location name (3 bytes)");
    is_int(c->internal, 1, "internal");

    pt_http_core_loc_conf_t *re = loc_of(s, "/re/x");
    ok(re->alias == SIZE_MAX, "alias in a regex location replaces the whole uri");
    ok(re->root_cv != NULL, "alias with captures is a complex value");
}

static void test_types(void)
{
    int ok_;
    const char *err = t_load(
        "http {\n"
        " types { text/html html htm; image/png PNG; application/x-a a; }\n"
        " default_type application/octet-stream;\n"
        " server {\n"
        "  listen 127.0.0.1:8080;\n"
        "  location /t/ { types { text/x-t t; application/x-b a; application/x-c a; } }\n"
        " }\n"
        "}\n", &ok_);
    ok(ok_, "loads");
    if (!ok_) {
        note("%s", err);
        return;
    }
    ok(t_contains(err, "[warn] duplicate extension \"a\", content type: \"application/x-c\", "
                       "previous content type: \"application/x-b\""), "duplicate extension warned");
    pt_http_core_srv_conf_t *s = t_server(0);
    static const struct { const char *uri, *exten, *type; } cases[] = {
        { "/x.html", "html", "text/html" },
        { "/x.HTM", "HTM", "text/html" },
        { "/x.png", "png", "image/png" },
        { "/x.bin", "bin", "application/octet-stream" },
        { "/x", "", "application/octet-stream" },
        { "/t/x.t", "t", "text/x-t" },
        { "/t/x.html", "html", "application/octet-stream" },
        { "/t/x.a", "a", "application/x-c" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pt_http_request_t r;
        t_request(&r, s, cases[i].uri);
        pt_http_find_location(&r);
        r.exten = S(cases[i].exten);
        pt_http_set_content_type(&r);
        is_strn(r.headers_out.content_type.data, r.headers_out.content_type.len, cases[i].type,
                cases[i].uri);
    }

    t_load("http { server { listen 127.0.0.1:8080; } }", &ok_);
    pt_http_request_t r;
    t_request(&r, t_server(0), "/x.gif");
    r.exten = S("gif");
    pt_http_set_content_type(&r);
    is_strn(r.headers_out.content_type.data, r.headers_out.content_type.len, "image/gif",
            "no types { }: nginx's built-in map");
    t_request(&r, t_server(0), "/x.css");
    r.exten = S("css");
    pt_http_set_content_type(&r);
    is_strn(r.headers_out.content_type.data, r.headers_out.content_type.len, "text/plain",
            "default default_type");
}

static void test_values(void)
{
    int ok_;
    const char *err = t_load(
        "http {\n"
        " server_names_hash_bucket_size 128;\n"
        " server {\n"
        "  listen 127.0.0.1:8080;\n"
        "  http2 on;\n"
        "  server_name Www.Example.COM .example.org;\n"
        "  lingering_close always;\n"
        "  server_tokens build;\n"
        "  if_modified_since before;\n"
        "  satisfy any;\n"
        "  client_body_in_file_only clean;\n"
        "  directio 4m;\n"
        "  aio threads;\n"
        "  output_buffers 1 64k;\n"
        "  resolver 127.0.0.1 valid=30s;\n"
        "  limit_rate 100k;\n"
        "  limit_rate_after 1m;\n"
        "  max_ranges 1;\n"
        "  open_file_cache max=1000 inactive=20s;\n"
        "  disable_symlinks if_not_owner from=$document_root;\n"
        "  client_body_temp_path /tmp/body 1 2;\n"
        "  error_page 404 = @fb;\n"
        "  error_page 403 http://example.com/forbidden;\n"
        "  location @fb { }\n"
        " }\n"
        "}\n", &ok_);
    ok(ok_, "loads");
    if (!ok_) {
        note("%s", err);
        return;
    }
    pt_http_core_main_conf_t *cmcf = t_cmcf();
    is_int(cmcf->server_names_hash_bucket_size, 128, "server_names_hash_bucket_size");
    is_int(cmcf->server_names_hash_max_size, 512, "server_names_hash_max_size default");
    pt_http_core_srv_conf_t *s = t_server(0);
    is_int(s->http2, 1, "http2 on");
    is_str(s->server_name.data, "www.example.com", "first name, lowercased");
    pt_http_core_loc_conf_t *l = t_clcf(s->ctx->loc_conf);
    is_int(l->lingering_close, PT_HTTP_LINGERING_ALWAYS, "lingering_close always");
    is_int(l->server_tokens, PT_HTTP_SERVER_TOKENS_BUILD, "server_tokens build");
    is_int(l->if_modified_since, PT_HTTP_IMS_BEFORE, "if_modified_since before");
    is_int(l->satisfy, PT_HTTP_SATISFY_ANY, "satisfy any");
    is_int(l->client_body_in_file_only, PT_HTTP_BODY_FILE_CLEAN, "client_body_in_file_only clean");
    is_int(l->directio, 4 * 1024 * 1024, "directio 4m");
    is_int(l->output_buffers_num, 1, "output_buffers 1");
    is_int(l->output_buffers_size, 65536, "... 64k");
    ok(l->resolver && l->resolver->nelts == 2, "resolver args kept");
    is_int(l->limit_rate, 102400, "limit_rate");
    is_int(l->limit_rate_after, 1048576, "limit_rate_after");
    is_int(l->max_ranges, 1, "max_ranges");
    is_strn(l->client_body_temp_path.data, l->client_body_temp_path.len, "/tmp/body",
            "client_body_temp_path");
    ok(l->error_pages && l->error_pages->nelts == 2, "two error pages");
    if (l->error_pages && l->error_pages->nelts == 2) {
        pt_http_error_page_t *ep = l->error_pages->elts;
        is_int(ep[0].overwrite, 0, "\"=\" alone");
        is_str(ep[0].uri.source.data, "@fb", "named");
        is_int(ep[1].overwrite, -1, "no \"=\"");
    }

    t_load("http { server { listen 127.0.0.1:8080; server_name .example.org; } }", &ok_);
    is_str(t_server(0)->server_name.data, "example.org", "$server_name drops the leading dot");
}

static void test_errors(void)
{
    static const struct {
        const char *conf;
        const char *msg;
    } cases[] = {
        { "http { } http { }", "\"http\" directive is duplicate" },
        { "http { server { location / { root /a; alias /b; } } }",
          "\"alias\" directive is duplicate, \"root\" directive was specified earlier" },
        { "http { server { location / { alias /a; root /b; } } }",
          "\"root\" directive is duplicate, \"alias\" directive was specified earlier" },
        { "http { server { root /a; root /b; } }", "\"root\" directive is duplicate" },
        { "http { server { alias /a; } }", "\"alias\" directive is not allowed here" },
        { "http { server { location @x { alias /a; } } }",
          "the \"alias\" directive cannot be used inside the named location" },
        { "http { root $document_root/x; }",
          "the $document_root variable cannot be used in the \"root\" directive" },
        { "http { keepalive_timeout x; }", "\"keepalive_timeout\" directive invalid value" },
        { "http { keepalive_timeout 10 20 30; }",
          "invalid number of arguments in \"keepalive_timeout\" directive" },
        { "http { keepalive_timeout 5; keepalive_timeout 6; }",
          "\"keepalive_timeout\" directive is duplicate" },
        { "http { error_page 404; }", "invalid number of arguments in \"error_page\" directive" },
        { "http { error_page 200 /x; }", "value \"200\" must be between 300 and 599" },
        { "http { error_page abc /x; }", "invalid value \"abc\"" },
        { "http { error_page 404 =xx /x; }", "invalid value \"=xx\"" },
        { "http { lingering_close sometimes; }", "invalid value \"sometimes\"" },
        { "http { server_tokens maybe; }", "invalid value \"maybe\"" },
        { "http { large_client_header_buffers 0 8k; }", "invalid value \"0\"" },
        { "http { large_client_header_buffers 4 x; }", "invalid value \"x\"" },
        { "http { client_max_body_size lots; }", "\"client_max_body_size\" directive invalid value" },
        { "http { sendfile maybe; }",
          "invalid value \"maybe\" in \"sendfile\" directive, it must be \"on\" or \"off\"" },
        { "http { internal; }", "\"internal\" directive is not allowed here" },
        { "http { server { location / { internal; internal; } } }",
          "\"internal\" directive is duplicate" },
        { "http { listen 80; }", "\"listen\" directive is not allowed here" },
        { "http { server { http2 on; http2 off; } }", "\"http2\" directive is duplicate" },
        { "http { server { server_names_hash_max_size 10; } }",
          "\"server_names_hash_max_size\" directive is not allowed here" },
        { "http { types_hash_max_size 0; }", "value must be equal to or greater than 1" },
        { "http { aio sometimes; }", "invalid value \"sometimes\" in \"aio\" directive" },
        { "http { client_body_temp_path /x 3; }", "\"client_body_temp_path\" directive invalid value" },
        { "http { server { large_client_header_buffers 4 100; connection_pool_size 512; } }",
          "the \"large_client_header_buffers\" size must be equal to or greater than "
          "\"connection_pool_size\"" },
        { "server { }", "\"server\" directive is not allowed here" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int ok_;
        const char *err = t_load(cases[i].conf, &ok_);
        ok(!ok_ && t_contains(err, cases[i].msg), "%s", cases[i].conf);
        if (ok_ || !t_contains(err, cases[i].msg))
            note("got: %s", err);
    }

    int ok_;
    t_load("http { error_log stderr warn; server { error_log stderr info;"
           " location / { error_log stderr debug; } } }", &ok_);
    ok(ok_, "error_log at http, server and location");
    if (ok_) {
        pt_http_core_loc_conf_t *l = loc_of(t_server(0), "/");
        ok(l->error_log && l->error_log->level == PT_LOG_DEBUG, "location's own error_log");
        pt_http_core_loc_conf_t *srv = t_clcf(t_server(0)->ctx->loc_conf);
        ok(srv->error_log && srv->error_log->level == PT_LOG_INFO, "server's");
    }
}

static void test_noname(void)
{
    /* what the rewrite module's `if` does with the helper */
    pt_module_t *mods[] = { &pt_http_core_module, &test_module };
    int ok_;
    const char *err = t_load_with(
        "http { server { listen 127.0.0.1:8080; root /r;\n"
        " location /a/ { keepalive_timeout 7; tif { root /if; sendfile on; } }\n"
        " location / { } } }", &ok_, mods, 2);
    ok(ok_, "loads");
    if (!ok_) {
        note("%s", err);
        return;
    }
    pt_http_core_loc_conf_t *n = tif_loc ? t_clcf(tif_loc) : NULL;
    ok(n && n->noname, "pseudo-location created");
    if (n == NULL)
        return;
    is_strn(n->name.data, n->name.len, "/a/", "carries its parent's name");
    is_strn(n->root.data, n->root.len, "/if", "its own root");
    is_int(n->sendfile, 1, "its own sendfile");
    is_int(n->keepalive_timeout, 7000, "merged with its parent location");
    is_str(t_match(t_server(0), "/a/x", NULL), "/a/", "never matched itself");

    err = t_load_with("http { server { listen 127.0.0.1:8080;\n"
                      " location /a/ { tif { keepalive_timeout 5; } } } }", &ok_, mods, 2);
    ok(!ok_ && t_contains(err, "\"keepalive_timeout\" directive is not allowed here"),
       "location-only directives are refused inside it");
}

int main(void)
{
    t_make_dir();
    subtest("phase engine, no modules", test_phase_engine_empty);
    subtest("phase engine, handlers", test_phase_engine_handlers);
    subtest("defaults", test_defaults);
    subtest("inheritance", test_inheritance);
    subtest("types", test_types);
    subtest("values", test_values);
    subtest("errors", test_errors);
    subtest("noname", test_noname);
    if (t_loaded)
        t_teardown(&T);
    t_remove_dir();
    return done_testing();
}
