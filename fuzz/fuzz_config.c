/* libFuzzer target: arbitrary bytes through the configuration parser, over
 * fake modules that exercise every generic setter, nested blocks with all the
 * conf pointer kinds, a data block (cf->handler) and include.
 *
 * The first byte picks the mode: bit 0 = -g text (name NULL) or a file,
 * bit 1 = the built-in configuration (a missing mime.types falls back to the
 * compiled-in copy), bit 2 = -T dump. Includes resolve against a scratch
 * directory holding a few small files; inputs that could name a path outside
 * it ("include" together with a '/') are skipped, since escapes can never
 * produce either. Each run allocates from one pool destroyed at its end. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/conf.h"
#include "config/cycle.h"

typedef struct {
    int          flag;
    int64_t      num, size, msec, sec;
    pt_str_t     str, path;
    unsigned     en, mask;
    pt_array_t  *arr;
    unsigned     depth;        /* block nesting below this conf */
} fz_conf_t;

static pt_module_t fz_core_module, fz_http_module;

static void *fz_create(pt_conf_t *cf)
{
    fz_conf_t *c = pt_pcalloc(cf->pool, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->flag = PT_CONF_UNSET;
    c->num = c->size = c->msec = c->sec = PT_CONF_UNSET;
    c->en = c->mask = PT_CONF_UNSET_UINT;
    c->arr = PT_CONF_UNSET_PTR;
    return c;
}

#define MAX_NEST 64

static unsigned nesting;

/* Enters a block at ctx with the given http confs; restores everything. */
static const char *nest(pt_conf_t *cf, unsigned ctx, pt_http_conf_ctx_t *hc, void *block_data)
{
    if (nesting >= MAX_NEST)
        return "is nested too deeply";
    unsigned prev_ctx = cf->ctx;
    pt_http_conf_ctx_t *prev_hc = cf->http_ctx;
    void *prev_bd = cf->block_data;
    cf->ctx = ctx;
    if (hc)
        cf->http_ctx = hc;
    if (block_data)
        cf->block_data = block_data;
    nesting++;
    const char *rv = pt_conf_parse_block(cf);
    nesting--;
    cf->ctx = prev_ctx;
    cf->http_ctx = prev_hc;
    cf->block_data = prev_bd;
    return rv;
}

static void **one_slot(pt_conf_t *cf, void *conf)
{
    void **a = pt_pcalloc(cf->pool, cf->cycle->nmodules * sizeof(void *));
    if (a)
        a[fz_http_module.index] = conf;
    return a;
}

static pt_http_conf_ctx_t *new_ctx(pt_conf_t *cf, int level)
{
    pt_http_conf_ctx_t *hc = pt_pcalloc(cf->pool, sizeof(*hc));
    if (hc == NULL)
        return NULL;
    pt_http_conf_ctx_t *up = cf->http_ctx;
    hc->main_conf = level == 0 ? one_slot(cf, fz_create(cf)) : up->main_conf;
    hc->srv_conf = level <= 1 ? one_slot(cf, fz_create(cf)) : up->srv_conf;
    hc->loc_conf = one_slot(cf, fz_create(cf));
    if (!hc->main_conf || !hc->srv_conf || !hc->loc_conf)
        return NULL;
    return hc;
}

static const char *events_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    return nest(cf, PT_CTX_EVENTS, NULL, NULL);
}

static const char *http_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_conf_ctx_t *hc = new_ctx(cf, 0);
    if (hc == NULL)
        return PT_CONF_ERROR;
    cf->cycle->http_ctx = hc;
    return nest(cf, PT_CTX_HTTP, hc, NULL);
}

static const char *server_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_conf_ctx_t *hc = new_ctx(cf, 1);
    return hc ? nest(cf, PT_CTX_SRV, hc, NULL) : PT_CONF_ERROR;
}

static const char *location_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_conf_ctx_t *hc = new_ctx(cf, 2);
    return hc ? nest(cf, PT_CTX_LOC, hc, NULL) : PT_CONF_ERROR;
}

static const char *if_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_conf_ctx_t *hc = new_ctx(cf, 2);
    if (hc == NULL)
        return PT_CONF_ERROR;
    return nest(cf, cf->ctx == PT_CTX_SRV ? PT_CTX_SIF : PT_CTX_LIF, hc, NULL);
}

static const char *upstream_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    fz_conf_t *u = fz_create(cf);
    return u ? nest(cf, PT_CTX_UPS, NULL, u) : PT_CONF_ERROR;
}

static const char *types_handler(pt_conf_t *cf, void *data)
{
    if (cf->args->nelts < 2)
        return "invalid type line";
    return PT_CONF_OK;
}

static const char *types_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_conf_handler_cb prev = cf->handler;
    void *prev_data = cf->handler_data;
    cf->handler = types_handler;
    cf->handler_data = conf;
    const char *rv = nest(cf, cf->ctx, NULL, NULL);
    cf->handler = prev;
    cf->handler_data = prev_data;
    return rv;
}

static int zone_tag;

static const char *zone_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *v = cf->args->elts;
    int64_t size = pt_conf_parse_size(&v[2]);
    if (size < 0)
        return "invalid zone size";
    return pt_shm_zone_add(cf, &v[1], (size_t) size, &zone_tag) ? PT_CONF_OK : PT_CONF_ERROR;
}

static const pt_conf_enum_t fz_enum[] = {
    { "one", 1 }, { "two", 2 }, { "four", 4 }, { "eight", 8 }, { NULL, 0 }
};
static const pt_conf_bounds_t fz_bounds = { 1, 1000 };

#define ANYWHERE (PT_CTX_MAIN | PT_CTX_EVENTS)
#define HTTP_ALL (PT_CTX_HTTP_ANY | PT_CTX_SIF | PT_CTX_LIF)
#define OFF(f)   offsetof(fz_conf_t, f)

static const pt_command_t fz_core_commands[] = {
    { "flag", ANYWHERE, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_CORE, OFF(flag), NULL },
    { "num", ANYWHERE, 0, 1, 1, pt_conf_set_num, PT_CONF_CORE, OFF(num), &fz_bounds },
    { "size", ANYWHERE, 0, 1, 1, pt_conf_set_size, PT_CONF_CORE, OFF(size), NULL },
    { "msec", ANYWHERE, 0, 1, 1, pt_conf_set_msec, PT_CONF_CORE, OFF(msec), NULL },
    { "sec", ANYWHERE, 0, 1, 1, pt_conf_set_sec, PT_CONF_CORE, OFF(sec), NULL },
    { "str", ANYWHERE, 0, 1, 1, pt_conf_set_str, PT_CONF_CORE, OFF(str), NULL },
    { "path", ANYWHERE, 0, 1, 1, pt_conf_set_path, PT_CONF_CORE, OFF(path), NULL },
    { "enum", ANYWHERE, 0, 1, 1, pt_conf_set_enum, PT_CONF_CORE, OFF(en), fz_enum },
    { "mask", ANYWHERE, 0, 1, PT_ARGS_ANY, pt_conf_set_bitmask, PT_CONF_CORE, OFF(mask), fz_enum },
    { "arr", ANYWHERE, 0, 1, 1, pt_conf_set_str_array, PT_CONF_CORE, OFF(arr), NULL },
    { "ignored", ANYWHERE | HTTP_ALL, 0, 0, PT_ARGS_ANY, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    /* the vocabulary of conf/portico.conf, so real configs go deep */
    { "worker_processes", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_str, PT_CONF_CORE, OFF(str), NULL },
    { "pid", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_path, PT_CONF_CORE, OFF(path), NULL },
    { "error_log", PT_CTX_MAIN | HTTP_ALL, 0, 1, PT_ARGS_ANY, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "worker_connections", PT_CTX_EVENTS, 0, 1, 1, pt_conf_set_num, PT_CONF_CORE, OFF(num), NULL },
    { "events", PT_CTX_MAIN, PT_CONF_BLOCK, 0, 0, events_cmd, PT_CONF_NONE, 0, NULL },
    { "http", PT_CTX_MAIN, PT_CONF_BLOCK, 0, 0, http_cmd, PT_CONF_NONE, 0, NULL },
    PT_COMMAND_END
};

static const pt_command_t fz_http_commands[] = {
    { "server", PT_CTX_HTTP, PT_CONF_BLOCK, 0, 0, server_cmd, PT_CONF_NONE, 0, NULL },
    { "server", PT_CTX_UPS, 0, 1, PT_ARGS_ANY, pt_conf_set_str_array, PT_CONF_BLOCK_DATA, OFF(arr), NULL },
    { "location", PT_CTX_SRV | PT_CTX_LOC, PT_CONF_BLOCK, 1, 2, location_cmd, PT_CONF_NONE, 0, NULL },
    { "if", PT_CTX_SRV | PT_CTX_LOC, PT_CONF_BLOCK, 1, PT_ARGS_ANY, if_cmd, PT_CONF_NONE, 0, NULL },
    { "upstream", PT_CTX_HTTP, PT_CONF_BLOCK, 1, 1, upstream_cmd, PT_CONF_NONE, 0, NULL },
    { "types", PT_CTX_HTTP_ANY, PT_CONF_BLOCK, 0, 0, types_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "zone", PT_CTX_HTTP | PT_CTX_UPS, 0, 2, 2, zone_cmd, PT_CONF_NONE, 0, NULL },
    { "h_flag", HTTP_ALL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC, OFF(flag), NULL },
    { "h_num", PT_CTX_HTTP | PT_CTX_SRV, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_SRV, OFF(num), NULL },
    { "h_size", PT_CTX_HTTP, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_MAIN, OFF(size), NULL },
    { "h_msec", HTTP_ALL, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC, OFF(msec), NULL },
    { "h_str", HTTP_ALL, 0, 1, 1, pt_conf_set_str, PT_CONF_HTTP_LOC, OFF(str), NULL },
    { "h_enum", HTTP_ALL, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_LOC, OFF(en), fz_enum },
    { "h_arr", HTTP_ALL, 0, 1, 1, pt_conf_set_str_array, PT_CONF_HTTP_LOC, OFF(arr), NULL },
    { "default_type", HTTP_ALL, 0, 1, 1, pt_conf_set_str, PT_CONF_HTTP_LOC, OFF(str), NULL },
    { "log_format", PT_CTX_HTTP, 0, 2, PT_ARGS_ANY, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "access_log", HTTP_ALL, 0, 1, PT_ARGS_ANY, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "keepalive_timeout", HTTP_ALL, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC, OFF(msec), NULL },
    { "listen", PT_CTX_SRV, 0, 1, PT_ARGS_ANY, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "server_name", PT_CTX_SRV, 0, 1, PT_ARGS_ANY, pt_conf_set_ignored, PT_CONF_NONE, 0, NULL },
    { "return", PT_CTX_SRV | PT_CTX_LOC | PT_CTX_SIF | PT_CTX_LIF, 0, 1, 2, pt_conf_set_ignored,
      PT_CONF_NONE, 0, NULL },
    { "proxy_pass", PT_CTX_LOC | PT_CTX_LIF, 0, 1, 1, pt_conf_set_str, PT_CONF_HTTP_LOC, OFF(path), NULL },
    { "weight", PT_CTX_UPS, 0, 1, 1, pt_conf_set_num, PT_CONF_BLOCK_DATA, OFF(num), NULL },
    PT_COMMAND_END
};

static pt_module_t fz_core_module = { .name = "fz_core", .commands = fz_core_commands,
                                      .create_core_conf = fz_create };
static pt_module_t fz_http_module = { .name = "fz_http", .commands = fz_http_commands };
static pt_module_t *fz_modules[] = { &fz_core_module, &fz_http_module };
#define FZ_NMODULES (sizeof(fz_modules) / sizeof(fz_modules[0]))

static char scratch[64];
static char prefix[80];
static pt_log_t silent_log = { .level = PT_LOG_STDERR };   /* admits nothing above 0 */

static void put_file(const char *name, const char *text)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", scratch, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void remove_scratch(void)
{
    const char *names[] = { "a.conf", "b.conf", "loop.conf", "x.types", "bad.conf" };
    char path[160];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", scratch, names[i]);
        unlink(path);
    }
    rmdir(scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    snprintf(scratch, sizeof(scratch), "/tmp/pt-fuzz-config-XXXXXX");
    if (mkdtemp(scratch) == NULL)
        abort();
    snprintf(prefix, sizeof(prefix), "%s/", scratch);
    put_file("a.conf", "num 5;\nstr 'a';\n");
    put_file("b.conf", "events { flag on; }\n");
    put_file("loop.conf", "include loop.conf;\n");
    put_file("x.types", "text/x x;\nserver a;\n");
    put_file("bad.conf", "bad {\n");
    atexit(remove_scratch);
    pt_log_use_stderr = 0;
    pt_modules_init(fz_modules, FZ_NMODULES);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (memmem(data, size, "include", 7) && memchr(data, '/', size))
        return 0;

    uint8_t mode = data[0];
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    pt_cycle_t cycle;
    pt_conf_t cf;
    memset(&cycle, 0, sizeof(cycle));
    memset(&cf, 0, sizeof(cf));
    cycle.pool = pt_pool_create(4096);
    if (cycle.pool == NULL) {
        free(text);
        return 0;
    }
    cycle.modules = fz_modules;
    cycle.nmodules = FZ_NMODULES;
    cycle.prefix.data = prefix;
    cycle.prefix.len = strlen(prefix);
    cycle.conf_prefix = cycle.prefix;
    cycle.log = &silent_log;
    cycle.builtin_conf = (mode & 2) != 0;
    cycle.dump_config = (mode & 4) != 0;
    cycle.test_only = 1;

    cf.cycle = &cycle;
    cf.pool = cycle.pool;
    cf.temp_pool = cycle.pool;
    cf.ctx = PT_CTX_MAIN;
    cf.log = &silent_log;

    void *core_conf[FZ_NMODULES] = { NULL };
    cycle.core_conf = core_conf;
    core_conf[fz_core_module.index] = fz_create(&cf);

    nesting = 0;
    char name[120];
    snprintf(name, sizeof(name), "%sfuzz.conf", prefix);
    (void) pt_conf_parse_string(&cf, text, (mode & 1) ? NULL : name);

    /* the parser must leave the context as it found it */
    if (cf.ctx != PT_CTX_MAIN || cf._src != NULL || cf.depth != 0 || cf.handler != NULL
        || cf.file != NULL || nesting != 0)
        abort();

    pt_pool_destroy(cycle.pool);
    free(text);
    return 0;
}
