/* The parser over fake modules: dispatch and conf pointers, every error text
 * with its file:line, blocks, data blocks (cf->handler), include with globs
 * and relative paths, -g text, the built-in mime.types fallback, the -T dump,
 * the generic setters, error_log and shared-memory zone registration. */
#include "tap.h"
#include "conf_test.h"

#include <stddef.h>
#include <stdint.h>

/* ---- fake modules --------------------------------------------------------- */

typedef struct {
    int        flag, custom_flag;
    int64_t    num, bounded, size, msec, sec, wc;
    pt_str_t   str, path;
    unsigned   en, mask;
    pt_array_t *arr;
    char       record[512];      /* t_args / t_any: "name:a,b;" appended */
    int        events_seen;
    pt_log_t  *errlog;
} tcore_conf_t;

typedef struct {
    char     types[4096];        /* lines the types handler saw: "a|b|c;" */
    pt_str_t main_str;
    int      nservers;
} thttp_main_t;

typedef struct {
    char     listen[128];
} thttp_srv_t;

typedef struct {
    pt_str_t name;               /* location name */
    pt_str_t loc_str;            /* h_loc */
} thttp_loc_t;

typedef struct {
    char     servers[256];
} tups_t;

static pt_module_t tcore_module, thttp_module, tups_module;
static thttp_loc_t *last_loc;    /* the last location block opened */
static thttp_srv_t *last_srv;
static tups_t       last_ups;

static void *tcore_create(pt_conf_t *cf)
{
    tcore_conf_t *c = pt_pcalloc(cf->pool, sizeof(*c));
    c->flag = c->custom_flag = PT_CONF_UNSET;
    c->num = c->bounded = c->size = c->msec = c->sec = c->wc = PT_CONF_UNSET;
    c->en = c->mask = PT_CONF_UNSET_UINT;
    c->arr = PT_CONF_UNSET_PTR;
    return c;
}

static const char *record_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    tcore_conf_t *c = conf;
    pt_str_t *v = cf->args->elts;
    size_t o = strlen(c->record);
    o += snprintf(c->record + o, sizeof(c->record) - o, "%s:", v[0].data);
    for (size_t i = 1; i < cf->args->nelts; i++)
        o += snprintf(c->record + o, sizeof(c->record) - o, "%s%s", i > 1 ? "," : "", v[i].data);
    snprintf(c->record + o, sizeof(c->record) - o, ";");
    return PT_CONF_OK;
}

static const char *custom_flag_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    tcore_conf_t *c = conf;
    pt_str_t *v = cf->args->elts;
    c->custom_flag = pt_str_caseeq_lit(&v[1], "on");
    return PT_CONF_OK;
}

static const char *reason_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    return "is broken";
}

static const char *logged_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_conf_error(cf, PT_LOG_EMERG, 0, "custom failure");
    return PT_CONF_ERROR;
}

static const char *events_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    tcore_conf_t *c = conf;
    unsigned ctx = cf->ctx;
    c->events_seen++;
    cf->ctx = PT_CTX_EVENTS;
    const char *rv = pt_conf_parse_block(cf);
    cf->ctx = ctx;
    return rv;
}

static const char *error_log_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    tcore_conf_t *c = conf;
    return pt_conf_set_error_log(cf, &c->errlog);
}

static void **conf_array(pt_conf_t *cf, void *mine)
{
    void **a = pt_pcalloc(cf->pool, cf->cycle->nmodules * sizeof(void *));
    a[thttp_module.index] = mine;
    return a;
}

static const char *http_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_conf_ctx_t *ctx = pt_pcalloc(cf->pool, sizeof(*ctx));
    ctx->main_conf = conf_array(cf, pt_pcalloc(cf->pool, sizeof(thttp_main_t)));
    ctx->srv_conf = conf_array(cf, pt_pcalloc(cf->pool, sizeof(thttp_srv_t)));
    ctx->loc_conf = conf_array(cf, pt_pcalloc(cf->pool, sizeof(thttp_loc_t)));
    cf->cycle->http_ctx = ctx;

    unsigned prev_ctx = cf->ctx;
    pt_http_conf_ctx_t *prev = cf->http_ctx;
    cf->ctx = PT_CTX_HTTP;
    cf->http_ctx = ctx;
    const char *rv = pt_conf_parse_block(cf);
    cf->ctx = prev_ctx;
    cf->http_ctx = prev;
    return rv;
}

static const char *server_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_conf_ctx_t *ctx = pt_pcalloc(cf->pool, sizeof(*ctx));
    ctx->main_conf = cf->http_ctx->main_conf;
    last_srv = pt_pcalloc(cf->pool, sizeof(thttp_srv_t));
    ctx->srv_conf = conf_array(cf, last_srv);
    ctx->loc_conf = conf_array(cf, pt_pcalloc(cf->pool, sizeof(thttp_loc_t)));
    ((thttp_main_t *) ctx->main_conf[thttp_module.index])->nservers++;

    unsigned prev_ctx = cf->ctx;
    pt_http_conf_ctx_t *prev = cf->http_ctx;
    cf->ctx = PT_CTX_SRV;
    cf->http_ctx = ctx;
    const char *rv = pt_conf_parse_block(cf);
    cf->ctx = prev_ctx;
    cf->http_ctx = prev;
    return rv;
}

static const char *location_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_conf_ctx_t *ctx = pt_pcalloc(cf->pool, sizeof(*ctx));
    pt_str_t *v = cf->args->elts;
    thttp_loc_t *loc = pt_pcalloc(cf->pool, sizeof(*loc));
    loc->name = v[cf->args->nelts - 1];   /* read before the block reuses args */
    ctx->main_conf = cf->http_ctx->main_conf;
    ctx->srv_conf = cf->http_ctx->srv_conf;
    ctx->loc_conf = conf_array(cf, loc);
    last_loc = loc;

    unsigned prev_ctx = cf->ctx;
    pt_http_conf_ctx_t *prev = cf->http_ctx;
    cf->ctx = PT_CTX_LOC;
    cf->http_ctx = ctx;
    const char *rv = pt_conf_parse_block(cf);
    cf->ctx = prev_ctx;
    cf->http_ctx = prev;
    return rv;
}

static const char *listen_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    thttp_srv_t *s = conf;
    pt_str_t *v = cf->args->elts;
    snprintf(s->listen, sizeof(s->listen), "%s", v[1].data);
    return PT_CONF_OK;
}

static const char *types_handler(pt_conf_t *cf, void *data)
{
    thttp_main_t *m = data;
    pt_str_t *v = cf->args->elts;
    if (cf->args->nelts == 1)
        return "bad type line";
    size_t o = strlen(m->types);
    for (size_t i = 0; i < cf->args->nelts; i++)
        o += snprintf(m->types + o, sizeof(m->types) - o, "%s%s", i ? "|" : "", v[i].data);
    snprintf(m->types + o, sizeof(m->types) - o, ";");
    return PT_CONF_OK;
}

static const char *types_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_conf_handler_cb prev = cf->handler;
    void *prev_data = cf->handler_data;
    cf->handler = types_handler;
    cf->handler_data = conf;
    const char *rv = pt_conf_parse_block(cf);
    cf->handler = prev;
    cf->handler_data = prev_data;
    return rv;
}

static const char *upstream_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    unsigned prev_ctx = cf->ctx;
    void *prev = cf->block_data;
    memset(&last_ups, 0, sizeof(last_ups));
    cf->ctx = PT_CTX_UPS;
    cf->block_data = &last_ups;
    const char *rv = pt_conf_parse_block(cf);
    cf->ctx = prev_ctx;
    cf->block_data = prev;
    return rv;
}

static const char *ups_server_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    tups_t *u = conf;
    pt_str_t *v = cf->args->elts;
    size_t o = strlen(u->servers);
    snprintf(u->servers + o, sizeof(u->servers) - o, "%s;", v[1].data);
    return PT_CONF_OK;
}

static const pt_conf_enum_t colors[] = { { "red", 1 }, { "green", 2 }, { "blue", 4 }, { NULL, 0 } };
static const pt_conf_bounds_t one_to_100 = { 1, 100 };
static const pt_conf_bounds_t at_least_2 = { 2, -1 };

#define CORE(field) PT_CONF_CORE, offsetof(tcore_conf_t, field)

static const pt_command_t tcore_commands[] = {
    { "t_flag", PT_CTX_MAIN, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, CORE(flag), NULL },
    { "t_custom_flag", PT_CTX_MAIN, PT_CONF_FLAG, 1, 1, custom_flag_cmd, CORE(custom_flag), NULL },
    { "t_num", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_num, CORE(num), NULL },
    { "t_bounded", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_num, CORE(bounded), &one_to_100 },
    { "t_size", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_size, CORE(size), &at_least_2 },
    { "t_msec", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_msec, CORE(msec), NULL },
    { "t_sec", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_sec, CORE(sec), NULL },
    { "t_str", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_str, CORE(str), NULL },
    { "t_path", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_path, CORE(path), NULL },
    { "t_enum", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_enum, CORE(en), colors },
    { "t_mask", PT_CTX_MAIN, 0, 1, PT_ARGS_ANY, pt_conf_set_bitmask, CORE(mask), colors },
    { "t_arr", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_str_array, CORE(arr), NULL },
    { "t_ignored", PT_CTX_MAIN, 0, 0, PT_ARGS_ANY, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "t_args", PT_CTX_MAIN, 0, 2, 3, record_cmd, CORE(record), NULL },
    { "t_any", PT_CTX_MAIN | PT_CTX_EVENTS, 0, 0, PT_ARGS_ANY, record_cmd, CORE(record), NULL },
    { "t_reason", PT_CTX_MAIN, 0, 0, PT_ARGS_ANY, reason_cmd, PT_CONF_NONE, 0, NULL },
    { "t_logged", PT_CTX_MAIN, 0, 0, 0, logged_cmd, PT_CONF_NONE, 0, NULL },
    { "events", PT_CTX_MAIN, PT_CONF_BLOCK, 0, 0, events_cmd, CORE(events_seen), NULL },
    { "worker_connections", PT_CTX_EVENTS, 0, 1, 1, pt_conf_set_num, CORE(wc), NULL },
    { "http", PT_CTX_MAIN, PT_CONF_BLOCK, 0, 0, http_cmd, PT_CONF_NONE, 0, NULL },
    { "error_log", PT_CTX_MAIN, 0, 1, PT_ARGS_ANY, error_log_cmd, CORE(errlog), NULL },
    PT_COMMAND_END
};

static const pt_command_t thttp_commands[] = {
    { "server", PT_CTX_HTTP, PT_CONF_BLOCK, 0, 0, server_cmd, PT_CONF_NONE, 0, NULL },
    { "location", PT_CTX_SRV | PT_CTX_LOC, PT_CONF_BLOCK, 1, 2, location_cmd, PT_CONF_NONE, 0, NULL },
    { "listen", PT_CTX_SRV, 0, 1, 3, listen_cmd, PT_CONF_HTTP_SRV, 0, NULL },
    { "h_main", PT_CTX_HTTP, 0, 1, 1, pt_conf_set_str, PT_CONF_HTTP_MAIN,
      offsetof(thttp_main_t, main_str), NULL },
    { "h_loc", PT_CTX_HTTP_ANY, 0, 1, 1, pt_conf_set_str, PT_CONF_HTTP_LOC,
      offsetof(thttp_loc_t, loc_str), NULL },
    { "types", PT_CTX_HTTP_ANY, PT_CONF_BLOCK, 0, 0, types_cmd, PT_CONF_HTTP_MAIN, 0, NULL },
    { "upstream", PT_CTX_HTTP, PT_CONF_BLOCK, 1, 1, upstream_cmd, PT_CONF_NONE, 0, NULL },
    PT_COMMAND_END
};

static const pt_command_t tups_commands[] = {
    /* same name as the http block: told apart by context */
    { "server", PT_CTX_UPS, 0, 1, PT_ARGS_ANY, ups_server_cmd, PT_CONF_BLOCK_DATA, 0, NULL },
    PT_COMMAND_END
};

static pt_module_t tcore_module = { .name = "tcore", .commands = tcore_commands,
                                    .create_core_conf = tcore_create };
static pt_module_t thttp_module = { .name = "thttp", .commands = thttp_commands };
static pt_module_t tups_module = { .name = "tups", .commands = tups_commands };
static pt_module_t *modules[] = { &tcore_module, &thttp_module, &tups_module };

/* ---- helpers ---------------------------------------------------------------- */

static t_ctx_t T;

static tcore_conf_t *core(void)
{
    return T.cycle.core_conf[tcore_module.index];
}

static thttp_main_t *http_main(void)
{
    return T.cycle.http_ctx ? T.cycle.http_ctx->main_conf[thttp_module.index] : NULL;
}

static void start(void)
{
    t_setup(&T, modules, sizeof(modules) / sizeof(modules[0]));
    last_loc = NULL;
    last_srv = NULL;
}

/* Parses text as "main.conf" in a fresh cycle; returns captured stderr. */
static const char *run(const char *text, const char **rv)
{
    start();
    return t_parse_file(&T, "main.conf", text, rv);
}

/* A one-shot check: text gives exactly msg at main.conf:line. */
static void fails(const char *text, const char *msg, unsigned line)
{
    const char *rv;
    const char *err = run(text, &rv);
    ok(rv == PT_CONF_ERROR, "fails: %s", msg);
    is_str(err, t_emerg(msg, "main.conf", line), msg);
    t_teardown(&T);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_setters(void)
{
    const char *rv;
    t_write("logs/.keep", "");
    const char *err = run("t_flag ON;\n"
                          "t_custom_flag on;\n"
                          "t_num 42;\n"
                          "t_bounded 100;\n"
                          "t_size 16k;\n"
                          "t_msec '1h 30m';\n"
                          "t_sec 2m;\n"
                          "t_str \"hello world\";\n"
                          "t_path logs/x.pid;\n"
                          "t_enum GREEN;\n"
                          "t_mask red blue;\n"
                          "t_arr a;\nt_arr b;\n"
                          "t_ignored whatever 1 2;\n"
                          "t_args x y;\nt_args p q r;\n"
                          "t_any;\n"
                          "events {\n    worker_connections 512;\n    t_any in-events;\n}\n",
                          &rv);
    ok(rv == PT_CONF_OK, "parses");
    is_str(err, "", "no messages");
    tcore_conf_t *c = core();
    is_int(c->flag, 1, "flag (case-insensitive on)");
    is_int(c->custom_flag, 1, "custom flag setter");
    is_int(c->num, 42, "num");
    is_int(c->bounded, 100, "bounded num at the upper bound");
    is_int(c->size, 16384, "size");
    is_int(c->msec, 5400000, "msec");
    is_int(c->sec, 120, "sec");
    is_strn(c->str.data, c->str.len, "hello world", "str");
    is_str(c->path.data, t_path("logs/x.pid"), "path resolved against the prefix");
    is_int(c->en, 2, "enum (case-insensitive)");
    is_int(c->mask, 5, "bitmask");
    ok(c->arr != NULL && c->arr != PT_CONF_UNSET_PTR && c->arr->nelts == 2, "str_array has two");
    if (c->arr && c->arr != PT_CONF_UNSET_PTR && c->arr->nelts == 2) {
        is_str(pt_array_at(c->arr, pt_str_t, 0).data, "a", "str_array[0]");
        is_str(pt_array_at(c->arr, pt_str_t, 1).data, "b", "str_array[1]");
    }
    is_str(c->record, "t_args:x,y;t_args:p,q,r;t_any:;t_any:in-events;", "records");
    is_int(c->events_seen, 1, "events block");
    is_int(c->wc, 512, "directive inside events");
    t_teardown(&T);

    /* absolute path stays */
    err = run("t_path /var/run/x.pid;\n", &rv);
    is_str(core()->path.data, "/var/run/x.pid", "absolute path kept");
    t_teardown(&T);
}

static void test_setter_errors(void)
{
    fails("t_flag on;\nt_flag off;\n", "\"t_flag\" directive is duplicate", 2);
    fails("t_flag maybe;\n",
          "invalid value \"maybe\" in \"t_flag\" directive, it must be \"on\" or \"off\"", 1);
    fails("\nt_custom_flag yes;\n",
          "invalid value \"yes\" in \"t_custom_flag\" directive, it must be \"on\" or \"off\"", 2);
    fails("t_flag on off;\n", "invalid number of arguments in \"t_flag\" directive", 1);
    fails("t_flag;\n", "invalid number of arguments in \"t_flag\" directive", 1);
    fails("t_num 1;\nt_num 2;\n", "\"t_num\" directive is duplicate", 2);
    fails("t_num abc;\n", "\"t_num\" directive invalid number", 1);
    fails("t_num -3;\n", "\"t_num\" directive invalid number", 1);
    fails("t_bounded 0;\n", "value must be between 1 and 100", 1);
    fails("t_bounded 101;\n", "value must be between 1 and 100", 1);
    fails("t_size 1;\n", "value must be equal to or greater than 2", 1);
    fails("t_size 10q;\n", "\"t_size\" directive invalid value", 1);
    fails("t_msec 10x;\n", "\"t_msec\" directive invalid value", 1);
    fails("t_msec 1s;\nt_msec 2s;\n", "\"t_msec\" directive is duplicate", 2);
    fails("t_sec 500ms;\n", "\"t_sec\" directive invalid value", 1);
    fails("t_str a;\n\n\nt_str b;\n", "\"t_str\" directive is duplicate", 4);
    fails("t_path a;\nt_path b;\n", "\"t_path\" directive is duplicate", 2);
    fails("t_enum purple;\n", "invalid value \"purple\"", 1);
    fails("t_enum red;\nt_enum red;\n", "\"t_enum\" directive is duplicate", 2);
    fails("t_mask red pink;\n", "invalid value \"pink\"", 1);
    fails("t_mask red;\nt_mask blue;\n", "\"t_mask\" directive is duplicate", 2);
}

static void test_dispatch_errors(void)
{
    fails("\n\nfoo bar;\n", "unknown directive \"foo\"", 3);
    fails("listen 80;\n", "\"listen\" directive is not allowed here", 1);
    fails("worker_connections 10;\n", "\"worker_connections\" directive is not allowed here", 1);
    fails("events {\n  t_flag on;\n}\n", "\"t_flag\" directive is not allowed here", 2);
    fails("t_args a;\n", "invalid number of arguments in \"t_args\" directive", 1);
    fails("t_args a b c d;\n", "invalid number of arguments in \"t_args\" directive", 1);
    fails("events;\n", "directive \"events\" has no opening \"{\"", 1);
    fails("events\n\n;\n", "directive \"events\" has no opening \"{\"", 3);
    fails("t_str a {\n}\n", "directive \"t_str\" is not terminated by \";\"", 1);
    fails("t_reason x;\n", "\"t_reason\" directive is broken", 1);
    fails("t_reason\n  x\n  ;\n", "\"t_reason\" directive is broken", 3);
    fails("t_logged;\n", "custom failure", 1);
    fails("}\n", "unexpected \"}\"", 1);
    fails("events {\n    worker_connections 1;\n", "unexpected end of file, expecting \"}\"", 3);
    fails("events {\n    worker_connections 1;\n}\n}\n", "unexpected \"}\"", 4);
    fails("t_str a", "unexpected end of file, expecting \";\" or \"}\"", 1);
    fails("  ;", "unexpected \";\"", 1);
    fails("t_str \"a\"b;", "unexpected \"b\"", 1);
    fails("events { worker_connections 1 }", "unexpected \"}\"", 1);
    /* the same name in two modules, told apart by context */
    fails("http {\n server x;\n}\n", "directive \"server\" has no opening \"{\"", 2);
    fails("http {\n upstream u {\n  server a {\n", "directive \"server\" is not terminated by \";\"", 3);
    fails("http {\n server {\n  h_main x;\n }\n}\n", "\"h_main\" directive is not allowed here", 3);

    /* the first error stops the parse: nothing after it runs */
    const char *rv;
    run("t_num 1;\nbogus;\nt_str after;\n", &rv);
    ok(rv == PT_CONF_ERROR && core()->num == 1 && core()->str.data == NULL, "stops at first error");
    t_teardown(&T);
}

static void test_http_blocks(void)
{
    const char *rv;
    const char *err = run("http {\n"
                          "    h_main m;\n"
                          "    h_loc at-http;\n"
                          "    upstream be {\n"
                          "        server 127.0.0.1:1 weight=2;\n"
                          "        server 127.0.0.1:2;\n"
                          "    }\n"
                          "    server {\n"
                          "        listen 8080;\n"
                          "        location /a {\n"
                          "            h_loc in-a;\n"
                          "            location /a/b {\n"
                          "                h_loc in-b;\n"
                          "            }\n"
                          "        }\n"
                          "    }\n"
                          "    server { listen 9090 default_server; }\n"
                          "}\n", &rv);
    ok(rv == PT_CONF_OK, "parses");
    is_str(err, "", "no messages");
    thttp_main_t *m = http_main();
    ok(m != NULL, "http main conf");
    if (m) {
        is_strn(m->main_str.data, m->main_str.len, "m", "HTTP_MAIN conf");
        is_int(m->nservers, 2, "two servers");
    }
    thttp_loc_t *hl = T.cycle.http_ctx->loc_conf[thttp_module.index];
    is_str(hl->loc_str.data, "at-http", "HTTP_LOC at http level");
    ok(last_loc && strcmp(last_loc->name.data, "/a/b") == 0, "nested location");
    if (last_loc)
        is_str(last_loc->loc_str.data, "in-b", "HTTP_LOC in the nested location");
    ok(last_srv && strcmp(last_srv->listen, "9090") == 0, "HTTP_SRV conf of the last server");
    is_str(last_ups.servers, "127.0.0.1:1;127.0.0.1:2;", "BLOCK_DATA conf (upstream servers)");
    ok(T.cf.ctx == PT_CTX_MAIN && T.cf.http_ctx == NULL, "context restored by the setters");
    t_teardown(&T);
}

static void test_handler_blocks(void)
{
    const char *rv;
    t_write("more.types", "image/png png;\nlisten 80;\n");
    const char *err = run("http {\n"
                          "    types {\n"
                          "        text/html html htm;\n"
                          "        listen 80;\n"          /* a known directive: still data */
                          "        'quoted type' \"x y\";\n"
                          "        include more.types;\n"
                          "    }\n"
                          "    h_main after;\n"
                          "}\n", &rv);
    ok(rv == PT_CONF_OK, "parses");
    is_str(err, "", "no messages");
    thttp_main_t *m = http_main();
    if (m) {
        is_str(m->types, "text/html|html|htm;listen|80;quoted type|x y;image/png|png;listen|80;",
               "every line went to the handler, include too");
        is_str(m->main_str.data, "after", "directives resume after the data block");
    }
    t_teardown(&T);

    fails("http {\n types {\n  a b {\n", "unexpected \"{\"", 3);
    fails("http {\n types {\n  a b;\n  lonely;\n }\n}\n", "bad type line", 4);
    fails("http {\n types {\n  a b;\n", "unexpected end of file, expecting \"}\"", 4);
}

static void test_include(void)
{
    const char *rv;

    /* relative to the configuration's directory, globs sorted, no match ok */
    t_write("conf.d/b.conf", "t_args b 2;\n");
    t_write("conf.d/a.conf", "t_args a 1;\n");
    t_write("conf.d/c.txt", "bogus;\n");
    t_write("sub/one.conf", "t_num 1;\ninclude sub/two.conf;\n");
    t_write("sub/two.conf", "t_str two;\n");
    t_write("ev.conf", "worker_connections 7;\n");
    const char *err = run("include conf.d/*.conf;\n"
                          "include nothing/*.conf;\n"
                          "include sub/one.conf;\n"
                          "events {\n include ev.conf;\n}\n", &rv);
    ok(rv == PT_CONF_OK, "parses");
    is_str(err, "", "no messages");
    is_str(core()->record, "t_args:a,1;t_args:b,2;", "glob results in sorted order");
    is_int(core()->num, 1, "nested include");
    is_str(core()->str.data, "two", "include in an included file, relative to conf prefix");
    is_int(core()->wc, 7, "include inside a block parses at the block's context");
    t_teardown(&T);

    /* absolute include */
    char text[600];
    snprintf(text, sizeof(text), "include %s;\n", t_path("sub/two.conf"));
    err = run(text, &rv);
    ok(rv == PT_CONF_OK && core()->str.data && strcmp(core()->str.data, "two") == 0,
       "absolute include");
    t_teardown(&T);

    /* missing file */
    char msg[600];
    snprintf(msg, sizeof(msg), "open() \"%s\" failed (2: No such file or directory)",
             t_path("missing.conf"));
    fails("t_num 1;\n\ninclude missing.conf;\n", msg, 3);

    /* errors inside an included file name that file */
    t_write("bad.conf", "t_num 1;\n\nnope;\n");
    start();
    err = t_parse_file(&T, "main.conf", "include bad.conf;\n", &rv);
    is_str(err, t_emerg("unknown directive \"nope\"", "bad.conf", 3), "error located in the include");
    t_teardown(&T);

    /* an included file cannot close its parent's block */
    t_write("closer.conf", "worker_connections 1;\n}\n");
    start();
    err = t_parse_file(&T, "main.conf", "events {\n include closer.conf;\n}\n", &rv);
    is_str(err, t_emerg("unexpected \"}\"", "closer.conf", 2), "} in included file");
    t_teardown(&T);

    /* an included file ending inside its own block */
    t_write("open.conf", "events {\n");
    start();
    err = t_parse_file(&T, "main.conf", "include open.conf;\n", &rv);
    is_str(err, t_emerg("unexpected end of file, expecting \"}\"", "open.conf", 2),
           "unterminated block in include");
    t_teardown(&T);

    /* a directory: nginx's pread() failure, at crit, without a location */
    t_write("adir/x.conf", "");
    start();
    err = t_parse_file(&T, "main.conf", "include adir;\n", &rv);
    snprintf(msg, sizeof(msg), "portico: [crit] pread() \"%s\" failed (21: Is a directory)\n",
             t_path("adir"));
    ok(rv == PT_CONF_ERROR, "including a directory fails");
    is_str(err, msg, "directory message");
    t_teardown(&T);

    fails("include;\n", "invalid number of arguments in \"include\" directive", 1);
    fails("include a b;\n", "invalid number of arguments in \"include\" directive", 1);
    fails("include a {\n}\n", "directive \"include\" is not terminated by \";\"", 1);

    /* include loop: stopped at 64 levels */
    t_write("loop.conf", "\ninclude loop.conf;\n");
    start();
    err = t_parse_file(&T, "loop.conf", NULL, &rv);
    ok(rv == PT_CONF_ERROR, "include loop fails");
    is_str(err, t_emerg("\"include\" directive nesting exceeds 64 levels", "loop.conf", 2),
           "include loop message");
    t_teardown(&T);

    /* the main file itself missing: no location */
    start();
    t_capture_begin();
    rv = pt_conf_parse_file(&T.cf, t_path("nope.conf"));
    err = t_capture_end();
    snprintf(msg, sizeof(msg), "open() \"%s\" failed (2: No such file or directory)",
             t_path("nope.conf"));
    is_str(err, t_emerg(msg, NULL, 0), "missing main file has no location");
    ok(T.cf.file == NULL && T.cf._src == NULL && T.cf.depth == 0, "cf restored after parse");
    t_teardown(&T);
}

static void test_cmdline(void)
{
    const char *rv;
    start();
    t_write("main.conf", "t_num 5;\n");
    t_capture_begin();
    rv = pt_conf_parse_string(&T.cf, "t_str from-g; t_flag off;", NULL);
    const char *err = t_capture_end();
    ok(rv == PT_CONF_OK, "-g parses");
    is_str(err, "", "no messages");
    is_str(core()->str.data, "from-g", "-g value");
    err = t_parse_file(&T, "main.conf", NULL, &rv);
    ok(rv == PT_CONF_OK && core()->num == 5, "then the file");
    t_teardown(&T);

    static const struct { const char *text, *msg; } cases[] = {
        { "t_str x", "unexpected end of parameter, expecting \";\"" },
        { "events { }", "block directives are not supported in -g option" },
        { "zz 1;", "unknown directive \"zz\"" },
        { "t_flag on; t_flag on;", "\"t_flag\" directive is duplicate" },
        { "}", "unexpected \"}\"" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        start();
        t_capture_begin();
        rv = pt_conf_parse_string(&T.cf, cases[i].text, NULL);
        err = t_capture_end();
        char want[300];
        snprintf(want, sizeof(want), "portico: [emerg] %s in command line\n", cases[i].msg);
        ok(rv == PT_CONF_ERROR, "-g error %zu", i);
        is_str(err, want, cases[i].msg);
        t_teardown(&T);
    }
}

static void test_builtin(void)
{
    const char *rv;
    /* the default config names mime.types; without the file the built-in
     * copy is used, only for the built-in configuration */
    start();
    T.cycle.builtin_conf = 1;
    t_capture_begin();
    rv = pt_conf_parse_string(&T.cf, "http {\n    include mime.types;\n}\n", t_path("portico.conf"));
    const char *err = t_capture_end();
    ok(rv == PT_CONF_OK, "built-in config with built-in mime.types");
    is_str(err, "", "no messages");
    thttp_main_t *m = http_main();
    ok(m && strstr(m->types, "text/html|html|htm|shtml;") != NULL, "built-in types reached the handler");
    ok(m && strstr(m->types, "image/png|png;") != NULL, "png type");
    t_teardown(&T);

    start();
    t_capture_begin();
    rv = pt_conf_parse_string(&T.cf, "http {\n    include mime.types;\n}\n", t_path("portico.conf"));
    err = t_capture_end();
    char msg[600];
    snprintf(msg, sizeof(msg), "open() \"%s\" failed (2: No such file or directory)",
             t_path("mime.types"));
    is_str(err, t_emerg(msg, "portico.conf", 2), "a user's config needs the file");
    t_teardown(&T);

    /* a real file wins over the built-in text */
    t_write("mime.types", "types { x/y z; }\n");
    start();
    T.cycle.builtin_conf = 1;
    t_capture_begin();
    rv = pt_conf_parse_string(&T.cf, "http { include mime.types; }", t_path("portico.conf"));
    t_capture_end();
    m = http_main();
    ok(rv == PT_CONF_OK && m && strcmp(m->types, "x/y|z;") == 0, "file on disk preferred");
    t_teardown(&T);
    unlink(t_path("mime.types"));

}

static void test_dump(void)
{
    const char *rv;
    t_write("d/one.conf", "t_any 1;\n");
    t_write("d/two.conf", "# two\n");
    const char *main_text = "include d/*.conf;\ninclude d/one.conf;\nt_str x;\n";
    start();
    T.cycle.dump_config = 1;
    const char *err = t_parse_file(&T, "main.conf", main_text, &rv);
    ok(rv == PT_CONF_OK, "parses");
    is_str(err, "", "no messages");
    pt_array_t *d = &T.cycle.config_dump;
    is_int(d->nelts, 3, "three files, each once");
    if (d->nelts == 3) {
        pt_conf_dump_t *e = d->elts;
        is_str(e[0].name.data, t_path("main.conf"), "main first");
        is_strn(e[0].text.data, e[0].text.len, main_text, "main text");
        is_str(e[1].name.data, t_path("d/one.conf"), "then includes in order");
        is_strn(e[1].text.data, e[1].text.len, "t_any 1;\n", "include text");
        is_str(e[2].name.data, t_path("d/two.conf"), "two");
    }
    /* -g text is not dumped */
    t_capture_begin();
    pt_conf_parse_string(&T.cf, "t_flag on;", NULL);
    t_capture_end();
    is_int(d->nelts, 3, "-g not dumped");
    t_teardown(&T);

    start();
    t_parse_file(&T, "main.conf", main_text, &rv);
    is_int(T.cycle.config_dump.nelts, 0, "nothing recorded without dump_config");
    t_teardown(&T);
}

static void test_error_log(void)
{
    const char *rv;
    t_write("logs/.keep", "");
    const char *err = run("error_log logs/error.log warn;\n"
                          "error_log stderr;\n"
                          "error_log logs/debug.log debug;\n", &rv);
    ok(rv == PT_CONF_OK, "parses");
    is_str(err, "", "no messages");
    pt_log_t *l = core()->errlog;
    ok(l && l->level == PT_LOG_WARN && l->file && strcmp(l->file->path, t_path("logs/error.log")) == 0,
       "first target: prefix-relative file at warn");
    ok(l && l->next && l->next->level == PT_LOG_ERR && l->next->file->fd == 2,
       "stderr at the default level error");
    ok(l && l->next && l->next->next && l->next->next->level == PT_LOG_DEBUG,
       "third target debug");
    struct stat st;
    ok(stat(t_path("logs/error.log"), &st) == 0, "file created");
    t_teardown(&T);

    /* a zeroed placeholder head is filled in place */
    start();
    pt_log_t placeholder;
    memset(&placeholder, 0, sizeof(placeholder));
    core()->errlog = &placeholder;
    t_parse_file(&T, "main.conf", "error_log logs/e2.log info;\n", &rv);
    ok(rv == PT_CONF_OK && core()->errlog == &placeholder && placeholder.level == PT_LOG_INFO
       && placeholder.next == NULL, "placeholder filled");
    t_teardown(&T);

    fails("error_log x.log bogus;\n", "invalid log level \"bogus\"", 1);
    fails("error_log x.log warn error;\n", "duplicate log level \"error\"", 1);

    /* open failure: nginx prints it without a location */
    start();
    err = t_parse_file(&T, "main.conf", "error_log /nonexistent-dir/e.log;\n", &rv);
    ok(rv == PT_CONF_ERROR, "open failure fails");
    is_str(err, "portico: [emerg] open() \"/nonexistent-dir/e.log\" failed (2: No such file or directory)\n",
           "open failure message");
    t_teardown(&T);
}

static int tag_a, tag_b;

static void test_zones(void)
{
    start();
    T.cf.file = "/z.conf";
    T.cf.line = 9;
    pt_str_t one = pt_string("one"), two = pt_string("two");
    t_capture_begin();
    pt_shm_zone_t *z1 = pt_shm_zone_add(&T.cf, &one, 1 << 20, &tag_a);
    pt_shm_zone_t *z2 = pt_shm_zone_add(&T.cf, &two, 0, &tag_a);
    pt_shm_zone_t *z1b = pt_shm_zone_add(&T.cf, &one, 1 << 20, &tag_a);
    pt_shm_zone_t *z1c = pt_shm_zone_add(&T.cf, &one, 0, &tag_a);
    pt_shm_zone_t *z2b = pt_shm_zone_add(&T.cf, &two, 4096, &tag_a);
    const char *err = t_capture_end();
    is_str(err, "", "no messages");
    ok(z1 && z2 && z1 != z2, "two zones");
    ok(z1b == z1 && z1c == z1, "same name, same zone");
    ok(z2b == z2 && z2->size == 4096, "a referenced zone takes the size when declared");
    ok(T.cycle.shm_zones == z1 && z1->next == z2 && z2->next == NULL, "list in declaration order");
    ok(z1->tag == &tag_a && z1->name.len == 3, "fields");

    t_capture_begin();
    pt_shm_zone_t *bad = pt_shm_zone_add(&T.cf, &one, 2 << 20, &tag_a);
    err = t_capture_end();
    ok(bad == NULL, "size conflict");
    is_str(err, "portico: [emerg] the size 2097152 of shared memory zone \"one\" conflicts with "
                "already declared size 1048576 in /z.conf:9\n", "size conflict message");
    t_capture_begin();
    bad = pt_shm_zone_add(&T.cf, &one, 1 << 20, &tag_b);
    err = t_capture_end();
    ok(bad == NULL, "tag conflict");
    is_str(err, "portico: [emerg] the shared memory zone \"one\" is already declared for a "
                "different use in /z.conf:9\n", "tag conflict message");
    T.cf.file = NULL;
    t_teardown(&T);
}

static void test_index(void)
{
    /* a different module list is indexed anew */
    static const pt_command_t other_cmds[] = {
        { "only_here", PT_CTX_MAIN, 0, 0, 0, NULL, PT_CONF_NONE, 0, NULL },
        PT_COMMAND_END
    };
    static pt_module_t other = { .name = "other", .commands = other_cmds };
    static pt_module_t *other_list[] = { &other };
    const char *rv;

    t_setup(&T, other_list, 1);
    const char *err = t_parse_file(&T, "main.conf", "only_here;\n", &rv);
    ok(rv == PT_CONF_OK && *err == '\0', "directive of the other list");
    t_teardown(&T);

    fails("only_here;\n", "unknown directive \"only_here\"", 1);

    /* many directives: every one found */
    enum { N = 400 };
    static pt_command_t many[N + 1];
    static char names[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "d%d", i);
        many[i] = (pt_command_t) { names[i], PT_CTX_MAIN, 0, 0, 0, NULL, PT_CONF_NONE, 0, NULL };
    }
    static pt_module_t big = { .name = "big", .commands = many };
    static pt_module_t *big_list[] = { &big };
    static char text[N * 8];
    size_t o = 0;
    for (int i = N - 1; i >= 0; i--)
        o += snprintf(text + o, sizeof(text) - o, "d%d;", i);
    t_setup(&T, big_list, 1);
    err = t_parse_file(&T, "main.conf", text, &rv);
    ok(rv == PT_CONF_OK && *err == '\0', "400 directives found");
    t_teardown(&T);
}

static void test_ignored(void)
{
    const char *rv;
    start();
    T.cycle.test_only = 1;
    t_write("info.log", "");
    pt_open_file_t f = { .path = (char *) t_path("info.log"), .next = NULL };
    f.fd = open(f.path, O_WRONLY | O_APPEND);
    pt_log_t log = { .level = PT_LOG_INFO, .file = &f };
    T.cf.log = &log;
    const char *err = t_parse_file(&T, "main.conf", "t_ignored 1;\n", &rv);
    close(f.fd);
    ok(rv == PT_CONF_OK, "ignored directive accepted");
    is_str(err, "", "nothing on stderr (info)");
    char buf[512] = "";
    FILE *fp = fopen(t_path("info.log"), "r");
    if (fp) {
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        buf[n] = '\0';
        fclose(fp);
    }
    ok(strstr(buf, "[info]") && strstr(buf, "\"t_ignored\" directive has no effect in Portico, ignored in ")
       && strstr(buf, "main.conf:1"), "logged at info with -t");
    t_teardown(&T);
}

int main(void)
{
    t_make_dir();
    subtest("setters", test_setters);
    subtest("setter errors", test_setter_errors);
    subtest("dispatch errors", test_dispatch_errors);
    subtest("http blocks", test_http_blocks);
    subtest("handler blocks", test_handler_blocks);
    subtest("include", test_include);
    subtest("command line", test_cmdline);
    subtest("built-in", test_builtin);
    subtest("dump", test_dump);
    subtest("error_log", test_error_log);
    subtest("zones", test_zones);
    subtest("index", test_index);
    subtest("ignored", test_ignored);
    t_remove_dir();
    return done_testing();
}
