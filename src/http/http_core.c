/* The HTTP core module: http { }, server { }, location { }, listen,
 * server_name and the directives every request depends on; configuration
 * merging (http -> server -> location -> nested location), the phase engine
 * and the HTTP listening sockets.
 *
 * Routing lives beside it: server_name.c (virtual servers) and location.c
 * (location trees and matching). */
#include "core.h"
#include "h1_conn.h"
#include "h2_conn.h"
#include "../tls/tls.h"
#include "../config/cycle.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Listen addresses collected while parsing (nginx's ports -> addresses). */

typedef struct {
    pt_http_listen_opt_t      opt;      /* options merged over every listen */
    pt_array_t                servers;  /* pt_http_core_srv_conf_t * */
    pt_http_core_srv_conf_t  *default_server;
} conf_addr_t;

typedef struct {
    int          family;
    in_port_t    port;         /* network order; 0 for unix */
    pt_array_t   addrs;        /* conf_addr_t */
} conf_port_t;

/* types { }: extension -> MIME type. */
typedef struct {
    pt_str_t  exten;           /* lowercased */
    pt_str_t  type;
} type_entry_t;

struct pt_http_types_s {
    pt_array_t     entries;    /* type_entry_t, config order */
    type_entry_t **hash;       /* open addressing, built after parsing */
    size_t         hash_mask;
};

static int pt_http_core_preconfiguration(pt_conf_t *cf);
static void *create_main_conf(pt_conf_t *cf);
static const char *init_main_conf(pt_conf_t *cf, void *conf);
static void *create_srv_conf(pt_conf_t *cf);
static const char *merge_srv_conf(pt_conf_t *cf, void *prev, void *conf);
static void *create_loc_conf(pt_conf_t *cf);
static const char *merge_loc_conf(pt_conf_t *cf, void *prev, void *conf);

static const char *http_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *server_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *location_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *types_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *listen_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *server_name_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *root_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *bufs_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *keepalive_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *error_page_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *error_log_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *internal_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *resolver_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *rate_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *directio_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *aio_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *disable_symlinks_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
static const char *temp_path_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf);

static const pt_conf_enum_t lingering_close_enum[] = {
    { "off", PT_HTTP_LINGERING_OFF }, { "on", PT_HTTP_LINGERING_ON },
    { "always", PT_HTTP_LINGERING_ALWAYS }, { NULL, 0 }
};
static const pt_conf_enum_t server_tokens_enum[] = {
    { "off", PT_HTTP_SERVER_TOKENS_OFF }, { "on", PT_HTTP_SERVER_TOKENS_ON },
    { "build", PT_HTTP_SERVER_TOKENS_BUILD }, { NULL, 0 }
};
static const pt_conf_enum_t ims_enum[] = {
    { "off", PT_HTTP_IMS_OFF }, { "exact", PT_HTTP_IMS_EXACT },
    { "before", PT_HTTP_IMS_BEFORE }, { NULL, 0 }
};
static const pt_conf_enum_t satisfy_enum[] = {
    { "all", PT_HTTP_SATISFY_ALL }, { "any", PT_HTTP_SATISFY_ANY }, { NULL, 0 }
};
static const pt_conf_enum_t body_file_enum[] = {
    { "off", PT_HTTP_BODY_FILE_OFF }, { "on", PT_HTTP_BODY_FILE_ON },
    { "clean", PT_HTTP_BODY_FILE_CLEAN }, { NULL, 0 }
};

static const pt_conf_bounds_t positive = { 1, -1 };

#define SRV(f) offsetof(pt_http_core_srv_conf_t, f)
#define LOC(f) offsetof(pt_http_core_loc_conf_t, f)
#define MAIN(f) offsetof(pt_http_core_main_conf_t, f)

#define CTX_HSL  PT_CTX_HTTP_ANY
#define CTX_HS   (PT_CTX_HTTP | PT_CTX_SRV)
#define CTX_HSLI (PT_CTX_HTTP_ANY | PT_CTX_LIF)

static const pt_command_t core_commands[] = {
    /* blocks */
    { "http", PT_CTX_MAIN, PT_CONF_BLOCK, 0, 0, http_block, PT_CONF_NONE, 0, NULL },
    { "server", PT_CTX_HTTP, PT_CONF_BLOCK, 0, 0, server_block, PT_CONF_NONE, 0, NULL },
    { "location", PT_CTX_SRV | PT_CTX_LOC, PT_CONF_BLOCK, 1, 2, location_block,
      PT_CONF_NONE, 0, NULL },
    { "types", CTX_HSL, PT_CONF_BLOCK, 0, 0, types_block, PT_CONF_HTTP_LOC, 0, NULL },

    /* main */
    { "variables_hash_max_size", PT_CTX_HTTP, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_MAIN,
      MAIN(variables_hash_max_size), NULL },
    { "variables_hash_bucket_size", PT_CTX_HTTP, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_MAIN,
      MAIN(variables_hash_bucket_size), NULL },
    { "server_names_hash_max_size", PT_CTX_HTTP, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_MAIN,
      MAIN(server_names_hash_max_size), NULL },
    { "server_names_hash_bucket_size", PT_CTX_HTTP, 0, 1, 1, pt_conf_set_num,
      PT_CONF_HTTP_MAIN, MAIN(server_names_hash_bucket_size), NULL },

    /* server */
    { "listen", PT_CTX_SRV, 0, 1, PT_ARGS_ANY, listen_cmd, PT_CONF_HTTP_SRV, 0, NULL },
    { "server_name", PT_CTX_SRV, 0, 1, PT_ARGS_ANY, server_name_cmd, PT_CONF_HTTP_SRV, 0, NULL },
    { "http2", CTX_HS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_SRV, SRV(http2), NULL },
    { "client_header_buffer_size", CTX_HS, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_SRV,
      SRV(client_header_buffer_size), NULL },
    { "large_client_header_buffers", CTX_HS, 0, 2, 2, bufs_cmd, PT_CONF_HTTP_SRV,
      SRV(large_client_header_buffers_num), NULL },
    { "client_header_timeout", CTX_HS, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_SRV,
      SRV(client_header_timeout), NULL },
    { "connection_pool_size", CTX_HS, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_SRV,
      SRV(connection_pool_size), NULL },
    { "request_pool_size", CTX_HS, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_SRV,
      SRV(request_pool_size), NULL },
    { "merge_slashes", CTX_HS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_SRV,
      SRV(merge_slashes), NULL },
    { "underscores_in_headers", CTX_HS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_SRV,
      SRV(underscores_in_headers), NULL },
    { "ignore_invalid_headers", CTX_HS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_SRV,
      SRV(ignore_invalid_headers), NULL },

    /* location */
    { "root", CTX_HSLI, 0, 1, 1, root_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "alias", PT_CTX_LOC, 0, 1, 1, root_cmd, PT_CONF_HTTP_LOC, 1, NULL },
    { "internal", PT_CTX_LOC, 0, 0, 0, internal_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "client_max_body_size", CTX_HSL, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_LOC,
      LOC(client_max_body_size), NULL },
    { "client_body_buffer_size", CTX_HSL, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_LOC,
      LOC(client_body_buffer_size), NULL },
    { "client_body_timeout", CTX_HSL, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      LOC(client_body_timeout), NULL },
    { "client_body_temp_path", CTX_HSL, 0, 1, 4, temp_path_cmd, PT_CONF_HTTP_LOC,
      LOC(client_body_temp_path), NULL },
    { "client_body_in_file_only", CTX_HSL, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_LOC,
      LOC(client_body_in_file_only), body_file_enum },
    { "client_body_in_single_buffer", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, LOC(client_body_in_single_buffer), NULL },
    { "keepalive_timeout", CTX_HSL, 0, 1, 2, keepalive_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "keepalive_requests", CTX_HSL, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_LOC,
      LOC(keepalive_requests), NULL },
    { "keepalive_time", CTX_HSL, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      LOC(keepalive_time), NULL },
    { "send_timeout", CTX_HSL, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      LOC(send_timeout), NULL },
    { "lingering_close", CTX_HSL, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_LOC,
      LOC(lingering_close), lingering_close_enum },
    { "lingering_time", CTX_HSL, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      LOC(lingering_time), NULL },
    { "lingering_timeout", CTX_HSL, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      LOC(lingering_timeout), NULL },
    { "reset_timedout_connection", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, LOC(reset_timedout_connection), NULL },
    { "server_tokens", CTX_HSL, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_LOC,
      LOC(server_tokens), server_tokens_enum },
    { "tcp_nodelay", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      LOC(tcp_nodelay), NULL },
    { "tcp_nopush", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      LOC(tcp_nopush), NULL },
    { "sendfile", CTX_HSLI, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      LOC(sendfile), NULL },
    { "sendfile_max_chunk", CTX_HSL, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_LOC,
      LOC(sendfile_max_chunk), NULL },
    { "aio", CTX_HSL, 0, 1, 1, aio_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "aio_write", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_ignored, PT_CONF_HTTP_LOC, 0, NULL },
    { "directio", CTX_HSL, 0, 1, 1, directio_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "directio_alignment", CTX_HSL, 0, 1, 1, pt_conf_set_ignored, PT_CONF_HTTP_LOC, 0, NULL },
    { "output_buffers", CTX_HSL, 0, 2, 2, bufs_cmd, PT_CONF_HTTP_LOC,
      LOC(output_buffers_num), NULL },
    { "postpone_output", CTX_HSL, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_LOC,
      LOC(postpone_output), NULL },
    { "send_lowat", CTX_HSL, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_LOC,
      LOC(send_lowat), NULL },
    { "absolute_redirect", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      LOC(absolute_redirect), NULL },
    { "server_name_in_redirect", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, LOC(server_name_in_redirect), NULL },
    { "port_in_redirect", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      LOC(port_in_redirect), NULL },
    { "msie_padding", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      LOC(msie_padding), NULL },
    { "msie_refresh", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      LOC(msie_refresh), NULL },
    { "log_not_found", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      LOC(log_not_found), NULL },
    { "log_subrequest", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC,
      LOC(log_subrequest), NULL },
    { "chunked_transfer_encoding", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, LOC(chunked_transfer_encoding), NULL },
    { "recursive_error_pages", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag,
      PT_CONF_HTTP_LOC, LOC(recursive_error_pages), NULL },
    { "etag", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_HTTP_LOC, LOC(etag), NULL },
    { "if_modified_since", CTX_HSL, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_LOC,
      LOC(if_modified_since), ims_enum },
    { "error_page", CTX_HSLI, 0, 2, PT_ARGS_ANY, error_page_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "default_type", CTX_HSL, 0, 1, 1, pt_conf_set_str, PT_CONF_HTTP_LOC,
      LOC(default_type), NULL },
    { "types_hash_max_size", CTX_HSL, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_LOC,
      LOC(types_hash_max_size), &positive },
    { "types_hash_bucket_size", CTX_HSL, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_LOC,
      LOC(types_hash_bucket_size), &positive },
    { "error_log", CTX_HSL, 0, 1, PT_ARGS_ANY, error_log_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "resolver", CTX_HSL, 0, 1, PT_ARGS_ANY, resolver_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    { "resolver_timeout", CTX_HSL, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC,
      LOC(resolver_timeout), NULL },
    { "limit_rate", CTX_HSLI, 0, 1, 1, rate_cmd, PT_CONF_HTTP_LOC, LOC(limit_rate), NULL },
    { "limit_rate_after", CTX_HSLI, 0, 1, 1, rate_cmd, PT_CONF_HTTP_LOC,
      LOC(limit_rate_after), NULL },
    { "open_file_cache", CTX_HSL, 0, 1, 2, pt_conf_set_ignored, PT_CONF_HTTP_LOC, 0, NULL },
    { "open_file_cache_valid", CTX_HSL, 0, 1, 1, pt_conf_set_ignored, PT_CONF_HTTP_LOC, 0, NULL },
    { "open_file_cache_min_uses", CTX_HSL, 0, 1, 1, pt_conf_set_ignored, PT_CONF_HTTP_LOC, 0,
      NULL },
    { "open_file_cache_errors", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_ignored,
      PT_CONF_HTTP_LOC, 0, NULL },
    { "open_file_cache_events", CTX_HSL, PT_CONF_FLAG, 1, 1, pt_conf_set_ignored,
      PT_CONF_HTTP_LOC, 0, NULL },
    { "satisfy", CTX_HSL, 0, 1, 1, pt_conf_set_enum, PT_CONF_HTTP_LOC, LOC(satisfy),
      satisfy_enum },
    { "auth_delay", CTX_HSL, 0, 1, 1, pt_conf_set_msec, PT_CONF_HTTP_LOC, LOC(auth_delay), NULL },
    { "max_ranges", CTX_HSL, 0, 1, 1, pt_conf_set_num, PT_CONF_HTTP_LOC, LOC(max_ranges), NULL },
    { "subrequest_output_buffer_size", CTX_HSL, 0, 1, 1, pt_conf_set_size, PT_CONF_HTTP_LOC,
      LOC(subrequest_output_buffer_size), NULL },
    { "disable_symlinks", CTX_HSL, 0, 1, 2, disable_symlinks_cmd, PT_CONF_HTTP_LOC, 0, NULL },
    PT_COMMAND_END
};

pt_module_t pt_http_core_module = {
    .name = "http_core",
    .commands = core_commands,
    .builtin_core = 1,
    .create_main_conf = create_main_conf,
    .init_main_conf = init_main_conf,
    .create_srv_conf = create_srv_conf,
    .merge_srv_conf = merge_srv_conf,
    .create_loc_conf = create_loc_conf,
    .merge_loc_conf = merge_loc_conf,
    .preconfiguration = pt_http_core_preconfiguration,
};

/* ------------------------------------------------------------------------ */
/* Small helpers. */

static pt_str_t *args(pt_conf_t *cf)
{
    return cf->args->elts;
}

static int arg_has_vars(pt_conf_t *cf, unsigned i)
{
    return i < 64 && (cf->args_have_vars >> i) & 1;
}

static pt_http_core_main_conf_t *core_main(pt_http_conf_ctx_t *ctx)
{
    return ctx->main_conf[pt_http_core_module.index];
}

static pt_http_core_srv_conf_t *core_srv(pt_http_conf_ctx_t *ctx)
{
    return ctx->srv_conf[pt_http_core_module.index];
}

static pt_http_core_loc_conf_t *core_loc(void **loc_conf)
{
    return loc_conf[pt_http_core_module.index];
}

static int has_prefix(const pt_str_t *s, const char *lit)
{
    size_t n = strlen(lit);
    return s->len >= n && memcmp(s->data, lit, n) == 0;
}

/* Creates every module's loc conf; NULL on failure (logged). */
static void **create_loc_confs(pt_conf_t *cf)
{
    pt_cycle_t *cycle = cf->cycle;
    void **loc = pt_pcalloc(cf->pool, sizeof(void *) * cycle->nmodules);
    if (loc == NULL)
        return NULL;
    for (size_t i = 0; i < cycle->nmodules; i++) {
        pt_module_t *m = cycle->modules[i];
        if (m->create_loc_conf == NULL)
            continue;
        loc[m->index] = m->create_loc_conf(cf);
        if (loc[m->index] == NULL)
            return NULL;
    }
    pt_http_core_loc_conf_t *clcf = core_loc(loc);
    clcf->loc_conf = loc;
    return loc;
}

/* Links clcf under the current location (cf->http_ctx->loc_conf). */
static int add_location(pt_conf_t *cf, pt_http_core_loc_conf_t *clcf)
{
    pt_http_core_loc_conf_t *pclcf = core_loc(cf->http_ctx->loc_conf);
    if (pclcf->locations == NULL) {
        pclcf->locations = pt_array_create(cf->pool, 4, sizeof(pt_http_core_loc_conf_t *));
        if (pclcf->locations == NULL)
            return -1;
    }
    pt_http_core_loc_conf_t **slot = pt_array_push(pclcf->locations);
    if (slot == NULL)
        return -1;
    *slot = clcf;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Phases. */

int pt_http_phase_add(pt_conf_t *cf, pt_http_phase_e phase, pt_http_handler_cb h)
{
    if (cf->http_ctx == NULL || (unsigned) phase >= PT_HTTP_PHASES_N
        || phase == PT_HTTP_FIND_CONFIG_PHASE || phase == PT_HTTP_POST_REWRITE_PHASE
        || phase == PT_HTTP_POST_ACCESS_PHASE || h == NULL) {
        pt_log_error(PT_LOG_EMERG, cf->log, 0, "invalid phase handler registration (phase %d)",
                     (int) phase);
        return -1;
    }
    pt_http_core_main_conf_t *cmcf = core_main(cf->http_ctx);
    pt_http_handler_cb *slot = pt_array_push(&cmcf->phases[phase]);
    if (slot == NULL)
        return -1;
    *slot = h;
    return 0;
}

/* Flattens cmcf->phases into cmcf->phase_engine (layout: see core.h). */
static int build_phase_engine(pt_conf_t *cf, pt_http_core_main_conf_t *cmcf)
{
    unsigned n = 4;   /* FIND_CONFIG, POST_REWRITE, POST_ACCESS, final CONTENT */
    for (int p = 0; p < PT_HTTP_PHASES_N; p++) {
        if (p != PT_HTTP_LOG_PHASE)
            n += (unsigned) cmcf->phases[p].nelts;
    }

    pt_http_phase_handler_t *engine = pt_pcalloc(cf->pool, sizeof(*engine) * n);
    if (engine == NULL)
        return -1;

    unsigned i = 0;
    for (int p = 0; p < PT_HTTP_PHASES_N; p++) {
        if (p == PT_HTTP_LOG_PHASE)
            continue;
        unsigned start = i;
        switch (p) {
        case PT_HTTP_SERVER_REWRITE_PHASE: cmcf->server_rewrite_index = i; break;
        case PT_HTTP_FIND_CONFIG_PHASE:    cmcf->find_config_index = i; break;
        case PT_HTTP_REWRITE_PHASE:        cmcf->location_rewrite_index = i; break;
        case PT_HTTP_ACCESS_PHASE:         cmcf->access_index = i; break;
        case PT_HTTP_CONTENT_PHASE:        cmcf->content_index = i; break;
        default: break;
        }
        if (p == PT_HTTP_FIND_CONFIG_PHASE || p == PT_HTTP_POST_REWRITE_PHASE
            || p == PT_HTTP_POST_ACCESS_PHASE) {
            engine[i].phase = (pt_http_phase_e) p;
            engine[i].handler = NULL;
            i++;
        } else {
            pt_http_handler_cb *h = cmcf->phases[p].elts;
            for (size_t j = 0; j < cmcf->phases[p].nelts; j++) {
                engine[i].phase = (pt_http_phase_e) p;
                engine[i].handler = h[j];
                i++;
            }
            if (p == PT_HTTP_CONTENT_PHASE) {
                engine[i].phase = PT_HTTP_CONTENT_PHASE;
                engine[i].handler = NULL;
                i++;
            }
        }
        for (unsigned k = start; k < i; k++)
            engine[k].next = i;
    }

    cmcf->phase_engine = engine;
    cmcf->phase_engine_n = i;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Module hooks. */

static int pt_http_core_preconfiguration(pt_conf_t *cf)
{
    return 0;
}

static void *create_main_conf(pt_conf_t *cf)
{
    pt_http_core_main_conf_t *cmcf = pt_pcalloc(cf->pool, sizeof(*cmcf));
    if (cmcf == NULL)
        return NULL;
    /* variables / prefix_variables stay zeroed: variables.c fills them on
     * first use (with the built-in prefix families) */
    if (pt_array_init(&cmcf->servers, cf->pool, 4, sizeof(pt_http_core_srv_conf_t *)) != 0)
        return NULL;
    for (int p = 0; p < PT_HTTP_PHASES_N; p++) {
        if (pt_array_init(&cmcf->phases[p], cf->pool, 2, sizeof(pt_http_handler_cb)) != 0)
            return NULL;
    }
    pt_array_t *ports = pt_array_create(cf->pool, 2, sizeof(conf_port_t));
    if (ports == NULL)
        return NULL;
    cmcf->_ports = ports;
    cmcf->variables_hash_max_size = PT_CONF_UNSET;
    cmcf->variables_hash_bucket_size = PT_CONF_UNSET;
    cmcf->server_names_hash_max_size = PT_CONF_UNSET;
    cmcf->server_names_hash_bucket_size = PT_CONF_UNSET;
    return cmcf;
}

static const char *init_main_conf(pt_conf_t *cf, void *conf)
{
    pt_http_core_main_conf_t *cmcf = conf;
    pt_conf_init(cmcf->server_names_hash_max_size, 512);
    pt_conf_init(cmcf->server_names_hash_bucket_size, 64);
    pt_conf_init(cmcf->variables_hash_max_size, 1024);
    pt_conf_init(cmcf->variables_hash_bucket_size, 64);
    return PT_CONF_OK;
}

static void *create_srv_conf(pt_conf_t *cf)
{
    pt_http_core_srv_conf_t *cscf = pt_pcalloc(cf->pool, sizeof(*cscf));
    if (cscf == NULL)
        return NULL;
    if (pt_array_init(&cscf->server_names, cf->pool, 4, sizeof(pt_http_server_name_t)) != 0
        || pt_array_init(&cscf->listens, cf->pool, 2, sizeof(pt_http_listen_opt_t)) != 0)
        return NULL;
    cscf->client_header_buffer_size = PT_CONF_UNSET_SIZE;
    cscf->large_client_header_buffers_num = PT_CONF_UNSET;
    cscf->large_client_header_buffers_size = PT_CONF_UNSET_SIZE;
    cscf->client_header_timeout = PT_CONF_UNSET_MSEC;
    cscf->connection_pool_size = PT_CONF_UNSET_SIZE;
    cscf->request_pool_size = PT_CONF_UNSET_SIZE;
    cscf->merge_slashes = PT_CONF_UNSET;
    cscf->underscores_in_headers = PT_CONF_UNSET;
    cscf->ignore_invalid_headers = PT_CONF_UNSET;
    cscf->http2 = PT_CONF_UNSET;
    cscf->file = cf->file;
    cscf->line = cf->line;
    return cscf;
}

static const char *merge_srv_conf(pt_conf_t *cf, void *parent, void *child)
{
    pt_http_core_srv_conf_t *prev = parent, *conf = child;

    pt_conf_merge(conf->client_header_buffer_size, prev->client_header_buffer_size, 1024);
    pt_conf_merge(conf->large_client_header_buffers_num,
                  prev->large_client_header_buffers_num, 4);
    pt_conf_merge(conf->large_client_header_buffers_size,
                  prev->large_client_header_buffers_size, 8192);
    pt_conf_merge(conf->client_header_timeout, prev->client_header_timeout, 60000);
    pt_conf_merge(conf->connection_pool_size, prev->connection_pool_size,
                  sizeof(void *) == 8 ? 512 : 256);
    pt_conf_merge(conf->request_pool_size, prev->request_pool_size, 4096);
    pt_conf_merge(conf->merge_slashes, prev->merge_slashes, 1);
    pt_conf_merge(conf->underscores_in_headers, prev->underscores_in_headers, 0);
    pt_conf_merge(conf->ignore_invalid_headers, prev->ignore_invalid_headers, 1);
    pt_conf_merge(conf->http2, prev->http2, 0);

    if (conf->large_client_header_buffers_size < conf->connection_pool_size) {
        pt_log_error(PT_LOG_EMERG, cf->log, 0,
                     "the \"large_client_header_buffers\" size must be equal to or greater "
                     "than \"connection_pool_size\" in %s:%u",
                     conf->file ? conf->file : "-", conf->line);
        return PT_CONF_ERROR;
    }

    /* the http-level srv conf is merged too but is never a server */
    if (conf->ctx == NULL)
        return PT_CONF_OK;

    if (conf->server_names.nelts == 0) {
        pt_http_server_name_t *sn = pt_array_push(&conf->server_names);
        if (sn == NULL)
            return PT_CONF_ERROR;
        sn->name.len = 0;
        sn->name.data = (char *) "";
        sn->regex = NULL;
        sn->server = conf;
    }

    /* $server_name: the first name, without a leading "." */
    pt_http_server_name_t *first = conf->server_names.elts;
    pt_str_t name = first->name;
    if (first->regex == NULL && name.len && name.data[0] == '.') {
        name.len--;
        name.data++;
    }
    conf->server_name = name;
    return PT_CONF_OK;
}

static void *create_loc_conf(pt_conf_t *cf)
{
    pt_http_core_loc_conf_t *clcf = pt_pcalloc(cf->pool, sizeof(*clcf));
    if (clcf == NULL)
        return NULL;
    clcf->alias = 0;
    clcf->client_max_body_size = PT_CONF_UNSET_SIZE;
    clcf->client_body_buffer_size = PT_CONF_UNSET_SIZE;
    clcf->client_body_timeout = PT_CONF_UNSET_MSEC;
    clcf->client_body_in_file_only = PT_CONF_UNSET;
    clcf->client_body_in_single_buffer = PT_CONF_UNSET;
    clcf->send_timeout = PT_CONF_UNSET_MSEC;
    clcf->keepalive_timeout = PT_CONF_UNSET_MSEC;
    clcf->keepalive_header = PT_CONF_UNSET;
    clcf->keepalive_requests = PT_CONF_UNSET;
    clcf->keepalive_time = PT_CONF_UNSET_MSEC;
    clcf->lingering_close = PT_CONF_UNSET;
    clcf->lingering_time = PT_CONF_UNSET_MSEC;
    clcf->lingering_timeout = PT_CONF_UNSET_MSEC;
    clcf->reset_timedout_connection = PT_CONF_UNSET;
    clcf->send_lowat = PT_CONF_UNSET_SIZE;
    clcf->postpone_output = PT_CONF_UNSET_SIZE;
    clcf->sendfile_max_chunk = PT_CONF_UNSET_SIZE;
    clcf->output_buffers_num = PT_CONF_UNSET;
    clcf->output_buffers_size = PT_CONF_UNSET_SIZE;
    clcf->directio = PT_CONF_UNSET;
    clcf->aio = PT_CONF_UNSET;
    clcf->server_tokens = PT_CONF_UNSET;
    clcf->tcp_nodelay = PT_CONF_UNSET;
    clcf->sendfile = PT_CONF_UNSET;
    clcf->tcp_nopush = PT_CONF_UNSET;
    clcf->absolute_redirect = PT_CONF_UNSET;
    clcf->server_name_in_redirect = PT_CONF_UNSET;
    clcf->port_in_redirect = PT_CONF_UNSET;
    clcf->msie_padding = PT_CONF_UNSET;
    clcf->msie_refresh = PT_CONF_UNSET;
    clcf->log_not_found = PT_CONF_UNSET;
    clcf->log_subrequest = PT_CONF_UNSET;
    clcf->chunked_transfer_encoding = PT_CONF_UNSET;
    clcf->recursive_error_pages = PT_CONF_UNSET;
    clcf->etag = PT_CONF_UNSET;
    clcf->if_modified_since = PT_CONF_UNSET;
    clcf->satisfy = PT_CONF_UNSET;
    clcf->auth_delay = PT_CONF_UNSET_MSEC;
    clcf->max_ranges = PT_CONF_UNSET;
    clcf->subrequest_output_buffer_size = PT_CONF_UNSET_SIZE;
    clcf->disable_symlinks = PT_CONF_UNSET;
    clcf->internal = PT_CONF_UNSET;
    clcf->types_hash_max_size = PT_CONF_UNSET;
    clcf->types_hash_bucket_size = PT_CONF_UNSET;
    clcf->limit_rate = PT_CONF_UNSET_SIZE;
    clcf->limit_rate_after = PT_CONF_UNSET_SIZE;
    clcf->resolver = PT_CONF_UNSET_PTR;
    clcf->resolver_timeout = PT_CONF_UNSET_MSEC;
    clcf->file = cf->file;
    clcf->line = cf->line;
    return clcf;
}

static int types_build_hash(pt_pool_t *pool, pt_http_types_t *t);
static pt_http_types_t *default_types(pt_conf_t *cf);

static const char *merge_loc_conf(pt_conf_t *cf, void *parent, void *child)
{
    pt_http_core_loc_conf_t *prev = parent, *conf = child;

    if (conf->root.data == NULL) {
        conf->alias = prev->alias;
        conf->root = prev->root;
        conf->root_cv = prev->root_cv;
        if (prev->root.data == NULL) {
            pt_str_t html = pt_string("html");
            if (pt_conf_full_name(cf->cycle, &html, 0) != 0)
                return PT_CONF_ERROR;
            conf->root = html;
            conf->alias = 0;
            conf->root_cv = NULL;
        }
    }

    if (conf->types == NULL) {
        conf->types = prev->types;
        if (conf->types == NULL) {
            conf->types = default_types(cf);
            if (conf->types == NULL)
                return PT_CONF_ERROR;
            prev->types = conf->types;   /* share one default map per level above */
        }
    }
    if (conf->types->hash == NULL && types_build_hash(cf->pool, conf->types) != 0)
        return PT_CONF_ERROR;
    pt_conf_merge_str(conf->default_type, prev->default_type, "text/plain");
    pt_conf_merge(conf->types_hash_max_size, prev->types_hash_max_size, 1024);
    pt_conf_merge(conf->types_hash_bucket_size, prev->types_hash_bucket_size, 64);

    if (conf->error_pages == NULL)
        conf->error_pages = prev->error_pages;
    if (conf->error_log == NULL)
        conf->error_log = prev->error_log ? prev->error_log : &cf->cycle->new_log;

    pt_conf_merge(conf->client_max_body_size, prev->client_max_body_size, 1024 * 1024);
    pt_conf_merge(conf->client_body_buffer_size, prev->client_body_buffer_size,
                  (int64_t) (2 * 8192));
    pt_conf_merge(conf->client_body_timeout, prev->client_body_timeout, 60000);
    pt_conf_merge(conf->client_body_in_file_only, prev->client_body_in_file_only,
                  PT_HTTP_BODY_FILE_OFF);
    pt_conf_merge(conf->client_body_in_single_buffer, prev->client_body_in_single_buffer, 0);
    if (conf->client_body_temp_path.data == NULL) {
        if (prev->client_body_temp_path.data) {
            conf->client_body_temp_path = prev->client_body_temp_path;
        } else {
            pt_str_t p = pt_string("client_body_temp");
            if (pt_conf_full_name(cf->cycle, &p, 0) != 0)
                return PT_CONF_ERROR;
            conf->client_body_temp_path = p;
            prev->client_body_temp_path = p;
        }
    }
    pt_conf_merge(conf->send_timeout, prev->send_timeout, 60000);
    if (conf->keepalive_timeout == PT_CONF_UNSET_MSEC) {
        conf->keepalive_timeout = prev->keepalive_timeout;
        conf->keepalive_header = prev->keepalive_header;
    }
    pt_conf_init(conf->keepalive_timeout, 75000);
    pt_conf_init(conf->keepalive_header, -1);
    pt_conf_merge(conf->keepalive_requests, prev->keepalive_requests, 1000);
    pt_conf_merge(conf->keepalive_time, prev->keepalive_time, 3600000);
    pt_conf_merge(conf->lingering_close, prev->lingering_close, PT_HTTP_LINGERING_ON);
    pt_conf_merge(conf->lingering_time, prev->lingering_time, 30000);
    pt_conf_merge(conf->lingering_timeout, prev->lingering_timeout, 5000);
    pt_conf_merge(conf->reset_timedout_connection, prev->reset_timedout_connection, 0);
    pt_conf_merge(conf->send_lowat, prev->send_lowat, 0);
    pt_conf_merge(conf->postpone_output, prev->postpone_output, 1460);
    pt_conf_merge(conf->sendfile_max_chunk, prev->sendfile_max_chunk, 2 * 1024 * 1024);
    if (conf->output_buffers_num == PT_CONF_UNSET) {
        conf->output_buffers_num = prev->output_buffers_num;
        conf->output_buffers_size = prev->output_buffers_size;
    }
    pt_conf_init(conf->output_buffers_num, 2);
    pt_conf_init(conf->output_buffers_size, 32768);
    pt_conf_merge(conf->directio, prev->directio, INT64_MAX);
    pt_conf_merge(conf->aio, prev->aio, 0);
    pt_conf_merge(conf->server_tokens, prev->server_tokens, PT_HTTP_SERVER_TOKENS_ON);
    pt_conf_merge(conf->tcp_nodelay, prev->tcp_nodelay, 1);
    pt_conf_merge(conf->sendfile, prev->sendfile, 0);
    pt_conf_merge(conf->tcp_nopush, prev->tcp_nopush, 0);
    pt_conf_merge(conf->absolute_redirect, prev->absolute_redirect, 1);
    pt_conf_merge(conf->server_name_in_redirect, prev->server_name_in_redirect, 0);
    pt_conf_merge(conf->port_in_redirect, prev->port_in_redirect, 1);
    pt_conf_merge(conf->msie_padding, prev->msie_padding, 1);
    pt_conf_merge(conf->msie_refresh, prev->msie_refresh, 0);
    pt_conf_merge(conf->log_not_found, prev->log_not_found, 1);
    pt_conf_merge(conf->log_subrequest, prev->log_subrequest, 0);
    pt_conf_merge(conf->chunked_transfer_encoding, prev->chunked_transfer_encoding, 1);
    pt_conf_merge(conf->recursive_error_pages, prev->recursive_error_pages, 0);
    pt_conf_merge(conf->etag, prev->etag, 1);
    pt_conf_merge(conf->if_modified_since, prev->if_modified_since, PT_HTTP_IMS_EXACT);
    pt_conf_merge(conf->satisfy, prev->satisfy, PT_HTTP_SATISFY_ALL);
    pt_conf_merge(conf->auth_delay, prev->auth_delay, 0);
    /* max_ranges has no default: unset stays -1 = unlimited */
    pt_conf_merge(conf->max_ranges, prev->max_ranges, -1);
    pt_conf_merge(conf->subrequest_output_buffer_size, prev->subrequest_output_buffer_size,
                  4096);
    pt_conf_merge(conf->disable_symlinks, prev->disable_symlinks, 0);
    /* internal is not inherited (nginx) */
    pt_conf_init(conf->internal, 0);
    if (conf->limit_rate == PT_CONF_UNSET_SIZE && conf->limit_rate_cv == NULL) {
        conf->limit_rate = prev->limit_rate;
        conf->limit_rate_cv = prev->limit_rate_cv;
    }
    pt_conf_init(conf->limit_rate, 0);
    if (conf->limit_rate_after == PT_CONF_UNSET_SIZE && conf->limit_rate_after_cv == NULL) {
        conf->limit_rate_after = prev->limit_rate_after;
        conf->limit_rate_after_cv = prev->limit_rate_after_cv;
    }
    pt_conf_init(conf->limit_rate_after, 0);
    pt_conf_merge_ptr(conf->resolver, prev->resolver, NULL);
    pt_conf_merge(conf->resolver_timeout, prev->resolver_timeout, 30000);
    return PT_CONF_OK;
}

/* ------------------------------------------------------------------------ */
/* MIME types. */

static uint32_t exten_hash(const char *p, size_t len)
{
    return pt_hash(p, len);
}

static int types_build_hash(pt_pool_t *pool, pt_http_types_t *t)
{
    size_t n = t->entries.nelts, size = 8;
    while (size < n * 2)
        size <<= 1;
    type_entry_t **h = pt_pcalloc(pool, sizeof(*h) * size);
    if (h == NULL)
        return -1;
    type_entry_t *e = t->entries.elts;
    for (size_t i = 0; i < n; i++) {
        size_t k = exten_hash(e[i].exten.data, e[i].exten.len) & (size - 1);
        while (h[k] && !pt_str_eq(&h[k]->exten, &e[i].exten))
            k = (k + 1) & (size - 1);
        h[k] = &e[i];   /* a later duplicate replaces (it was warned about) */
    }
    t->hash = h;
    t->hash_mask = size - 1;
    return 0;
}

static const type_entry_t *types_find(const pt_http_types_t *t, const char *p, size_t len)
{
    if (t == NULL || t->hash == NULL)
        return NULL;
    size_t k = exten_hash(p, len) & t->hash_mask;
    while (t->hash[k]) {
        if (t->hash[k]->exten.len == len && memcmp(t->hash[k]->exten.data, p, len) == 0)
            return t->hash[k];
        k = (k + 1) & t->hash_mask;
    }
    return NULL;
}

static pt_http_types_t *types_create(pt_pool_t *pool)
{
    pt_http_types_t *t = pt_pcalloc(pool, sizeof(*t));
    if (t == NULL || pt_array_init(&t->entries, pool, 32, sizeof(type_entry_t)) != 0)
        return NULL;
    return t;
}

/* nginx's map when no types { } is configured anywhere. */
static pt_http_types_t *default_types(pt_conf_t *cf)
{
    static const char *const map[][2] = {
        { "html", "text/html" }, { "gif", "image/gif" }, { "jpg", "image/jpeg" }
    };
    pt_http_types_t *t = types_create(cf->pool);
    if (t == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        type_entry_t *e = pt_array_push(&t->entries);
        if (e == NULL)
            return NULL;
        e->exten.data = (char *) map[i][0];
        e->exten.len = strlen(map[i][0]);
        e->type.data = (char *) map[i][1];
        e->type.len = strlen(map[i][1]);
    }
    return t;
}

/* One line of types { }: "mime/type ext ext ...;". */
static const char *types_line(pt_conf_t *cf, void *data)
{
    pt_http_types_t *t = data;
    pt_str_t *v = args(cf);
    size_t n = cf->args->nelts;

    if (n < 2) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid number of arguments in \"types\" directive");
        return PT_CONF_ERROR;
    }
    pt_str_t type = v[0];
    for (size_t i = 1; i < n; i++) {
        char *low = pt_pnalloc(cf->pool, v[i].len + 1);
        if (low == NULL)
            return PT_CONF_ERROR;
        pt_strlow(low, v[i].data, v[i].len);
        low[v[i].len] = '\0';
        pt_str_t ext = { v[i].len, low };

        type_entry_t *e = t->entries.elts, *found = NULL;
        for (size_t j = 0; j < t->entries.nelts; j++) {
            if (pt_str_eq(&e[j].exten, &ext)) {
                found = &e[j];
                break;
            }
        }
        if (found) {
            pt_conf_error(cf, PT_LOG_WARN, 0,
                          "duplicate extension \"%s\", content type: \"%.*s\", "
                          "previous content type: \"%.*s\"", low, (int) type.len, type.data,
                          (int) found->type.len, found->type.data);
            found->type = type;
            continue;
        }
        e = pt_array_push(&t->entries);
        if (e == NULL)
            return PT_CONF_ERROR;
        e->exten = ext;
        e->type = type;
    }
    return PT_CONF_OK;
}

static const char *types_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    if (clcf->types == NULL) {
        clcf->types = types_create(cf->pool);
        if (clcf->types == NULL)
            return PT_CONF_ERROR;
    }
    pt_conf_handler_cb save_handler = cf->handler;
    void *save_data = cf->handler_data;
    cf->handler = types_line;
    cf->handler_data = clcf->types;
    const char *rv = pt_conf_parse_block(cf);
    cf->handler = save_handler;
    cf->handler_data = save_data;
    return rv;
}

void pt_http_set_content_type(pt_http_request_t *r)
{
    if (r->headers_out.content_type.len)
        return;
    pt_http_core_loc_conf_t *clcf = core_loc(r->loc_conf);
    pt_str_t *ex = &r->exten;
    if (ex->len) {
        char low[32];
        const char *p = ex->data;
        if (ex->len <= sizeof(low)) {
            for (size_t i = 0; i < ex->len; i++) {
                if (ex->data[i] >= 'A' && ex->data[i] <= 'Z') {
                    pt_strlow(low, ex->data, ex->len);
                    p = low;
                    break;
                }
            }
            const type_entry_t *e = types_find(clcf->types, p, ex->len);
            if (e) {
                r->headers_out.content_type = e->type;
                return;
            }
        }
    }
    r->headers_out.content_type = clcf->default_type;
}

/* ------------------------------------------------------------------------ */
/* http { } */

/* Merges the locations of one level with their parent confs, recursively,
 * for module m. */
static const char *merge_locations(pt_conf_t *cf, pt_array_t *locations, void **parent_loc,
                                   pt_module_t *m)
{
    if (locations == NULL)
        return PT_CONF_OK;
    pt_http_conf_ctx_t *ctx = cf->http_ctx;
    void **saved = ctx->loc_conf;
    pt_http_core_loc_conf_t **lp = locations->elts;
    for (size_t i = 0; i < locations->nelts; i++) {
        pt_http_core_loc_conf_t *clcf = lp[i];
        ctx->loc_conf = clcf->loc_conf;
        const char *rv = m->merge_loc_conf(cf, parent_loc[m->index], clcf->loc_conf[m->index]);
        if (rv != PT_CONF_OK)
            return rv;
        rv = merge_locations(cf, clcf->locations, clcf->loc_conf, m);
        if (rv != PT_CONF_OK)
            return rv;
    }
    ctx->loc_conf = saved;
    return PT_CONF_OK;
}

static const char *merge_servers(pt_conf_t *cf, pt_http_conf_ctx_t *http, pt_module_t *m)
{
    pt_http_core_main_conf_t *cmcf = core_main(http);
    pt_http_core_srv_conf_t **servers = cmcf->servers.elts;
    pt_http_conf_ctx_t ctx = *http;
    pt_http_conf_ctx_t *saved = cf->http_ctx;
    const char *rv = PT_CONF_OK;

    cf->http_ctx = &ctx;
    for (size_t s = 0; s < cmcf->servers.nelts; s++) {
        pt_http_core_srv_conf_t *cscf = servers[s];
        ctx.srv_conf = cscf->ctx->srv_conf;
        ctx.loc_conf = cscf->ctx->loc_conf;
        if (m->merge_srv_conf) {
            rv = m->merge_srv_conf(cf, http->srv_conf[m->index], cscf->ctx->srv_conf[m->index]);
            if (rv != PT_CONF_OK)
                break;
        }
        if (m->merge_loc_conf) {
            rv = m->merge_loc_conf(cf, http->loc_conf[m->index], cscf->ctx->loc_conf[m->index]);
            if (rv != PT_CONF_OK)
                break;
            pt_http_core_loc_conf_t *clcf = core_loc(cscf->ctx->loc_conf);
            rv = merge_locations(cf, clcf->locations, cscf->ctx->loc_conf, m);
            if (rv != PT_CONF_OK)
                break;
        }
    }
    cf->http_ctx = saved;
    return rv;
}

static int build_listening(pt_conf_t *cf, pt_http_core_main_conf_t *cmcf);

static const char *http_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_cycle_t *cycle = cf->cycle;
    if (cycle->http_ctx)
        return "is duplicate";

    pt_http_conf_ctx_t *ctx = pt_pcalloc(cf->pool, sizeof(*ctx));
    if (ctx == NULL)
        return PT_CONF_ERROR;
    size_t nm = cycle->nmodules;
    ctx->main_conf = pt_pcalloc(cf->pool, sizeof(void *) * nm);
    ctx->srv_conf = pt_pcalloc(cf->pool, sizeof(void *) * nm);
    ctx->loc_conf = pt_pcalloc(cf->pool, sizeof(void *) * nm);
    if (ctx->main_conf == NULL || ctx->srv_conf == NULL || ctx->loc_conf == NULL)
        return PT_CONF_ERROR;

    for (size_t i = 0; i < nm; i++) {
        pt_module_t *m = cycle->modules[i];
        int idx = m->index;
        if (m->create_main_conf && (ctx->main_conf[idx] = m->create_main_conf(cf)) == NULL)
            return PT_CONF_ERROR;
        if (m->create_srv_conf && (ctx->srv_conf[idx] = m->create_srv_conf(cf)) == NULL)
            return PT_CONF_ERROR;
        if (m->create_loc_conf && (ctx->loc_conf[idx] = m->create_loc_conf(cf)) == NULL)
            return PT_CONF_ERROR;
    }
    core_loc(ctx->loc_conf)->loc_conf = ctx->loc_conf;

    unsigned save_ctx = cf->ctx;
    pt_http_conf_ctx_t *save_http = cf->http_ctx;
    cf->ctx = PT_CTX_HTTP;
    cf->http_ctx = ctx;
    /* modules reaching the http confs through the cycle during parsing */
    cycle->http_ctx = ctx;

    const char *rv = PT_CONF_ERROR;
    pt_http_header_filter_cb saved_header_filter = NULL;
    pt_http_body_filter_cb saved_body_filter = NULL;
    int filters_reset = 0;
    for (size_t i = 0; i < nm; i++) {
        pt_module_t *m = cycle->modules[i];
        if (m->preconfiguration && m->preconfiguration(cf) != 0)
            goto done;
    }

    rv = pt_conf_parse_block(cf);
    if (rv != PT_CONF_OK)
        goto done;
    rv = PT_CONF_ERROR;

    /* everything below reports with its own file:line where it matters */
    pt_http_core_main_conf_t *cmcf = core_main(ctx);

    for (size_t i = 0; i < nm; i++) {
        pt_module_t *m = cycle->modules[i];
        const char *r;
        if (m->init_main_conf && (r = m->init_main_conf(cf, ctx->main_conf[m->index])) != PT_CONF_OK) {
            if (r != PT_CONF_ERROR)
                pt_log_error(PT_LOG_EMERG, cf->log, 0, "%s", r);
            goto done;
        }
        const char *mr = merge_servers(cf, ctx, m);
        if (mr != PT_CONF_OK) {
            if (mr != PT_CONF_ERROR)
                pt_log_error(PT_LOG_EMERG, cf->log, 0, "%s", mr);
            goto done;
        }
    }

    pt_http_core_srv_conf_t **servers = cmcf->servers.elts;
    for (size_t s = 0; s < cmcf->servers.nelts; s++) {
        pt_http_core_loc_conf_t *clcf = core_loc(servers[s]->ctx->loc_conf);
        if (pt_http_locations_init(cf, servers[s], clcf) != 0)
            goto done;
    }

    if (pt_http_variables_init(cf) != 0)
        goto done;

    /* Filter modules chain themselves in postconfiguration; a reload parses
     * again in the same (master) process, so start from the bare writer or a
     * filter would find itself at the top and call itself forever. A reload
     * that fails from here on puts the running configuration's tops back
     * (the chain below them is rebuilt identically: same modules, same
     * order), or a worker the master respawns later would run with a
     * partial chain (no add_header, gzip or cache store). */
    saved_header_filter = pt_http_top_header_filter;
    saved_body_filter = pt_http_top_body_filter;
    filters_reset = 1;
    pt_http_filters_reset();

    for (size_t i = 0; i < nm; i++) {
        pt_module_t *m = cycle->modules[i];
        if (m->postconfiguration && m->postconfiguration(cf) != 0)
            goto done;
    }

    /* postconfiguration may refer to variables too (idempotent) */
    if (pt_http_variables_init(cf) != 0)
        goto done;

    if (build_phase_engine(cf, cmcf) != 0)
        goto done;
    if (build_listening(cf, cmcf) != 0)
        goto done;

    rv = PT_CONF_OK;

done:
    cf->ctx = save_ctx;
    cf->http_ctx = save_http;
    if (rv != PT_CONF_OK) {
        cycle->http_ctx = NULL;
        if (filters_reset) {
            pt_http_top_header_filter = saved_header_filter;
            pt_http_top_body_filter = saved_body_filter;
        }
    }
    return rv;
}

/* ------------------------------------------------------------------------ */
/* server { } */

static int add_listen(pt_conf_t *cf, pt_http_core_srv_conf_t *cscf,
                      const pt_http_listen_opt_t *lo);

static const char *server_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_cycle_t *cycle = cf->cycle;
    pt_http_conf_ctx_t *http = cf->http_ctx;
    pt_http_conf_ctx_t *ctx = pt_pcalloc(cf->pool, sizeof(*ctx));
    if (ctx == NULL)
        return PT_CONF_ERROR;
    ctx->main_conf = http->main_conf;
    ctx->srv_conf = pt_pcalloc(cf->pool, sizeof(void *) * cycle->nmodules);
    ctx->loc_conf = pt_pcalloc(cf->pool, sizeof(void *) * cycle->nmodules);
    if (ctx->srv_conf == NULL || ctx->loc_conf == NULL)
        return PT_CONF_ERROR;
    for (size_t i = 0; i < cycle->nmodules; i++) {
        pt_module_t *m = cycle->modules[i];
        if (m->create_srv_conf && (ctx->srv_conf[m->index] = m->create_srv_conf(cf)) == NULL)
            return PT_CONF_ERROR;
        if (m->create_loc_conf && (ctx->loc_conf[m->index] = m->create_loc_conf(cf)) == NULL)
            return PT_CONF_ERROR;
    }

    pt_http_core_srv_conf_t *cscf = core_srv(ctx);
    cscf->ctx = ctx;
    cscf->file = cf->file ? pt_pstrndup(cf->pool, cf->file, strlen(cf->file)) : NULL;
    cscf->line = cf->line;
    core_loc(ctx->loc_conf)->loc_conf = ctx->loc_conf;

    pt_http_core_main_conf_t *cmcf = core_main(http);
    pt_http_core_srv_conf_t **slot = pt_array_push(&cmcf->servers);
    if (slot == NULL)
        return PT_CONF_ERROR;
    *slot = cscf;

    unsigned save_ctx = cf->ctx;
    cf->ctx = PT_CTX_SRV;
    cf->http_ctx = ctx;
    const char *rv = pt_conf_parse_block(cf);
    cf->ctx = save_ctx;
    cf->http_ctx = http;
    if (rv != PT_CONF_OK)
        return rv;

    if (!cscf->listen) {
        /* nginx: *:80 when running as root, else *:8000 */
        pt_http_listen_opt_t lo;
        memset(&lo, 0, sizeof(lo));
        lo.addr.sin.sin_family = AF_INET;
        lo.addr.sin.sin_addr.s_addr = htonl(INADDR_ANY);
        lo.addr.sin.sin_port = htons(getuid() == 0 ? 80 : 8000);
        lo.socklen = sizeof(struct sockaddr_in);
        lo.wildcard = 1;
        lo.ipv6only = 1;
        lo.backlog = -1;
        lo.rcvbuf = lo.sndbuf = -1;
        pt_sockaddr_text(&lo.addr.sa, lo.socklen, lo.addr_text, sizeof(lo.addr_text), 1);
        pt_http_listen_opt_t *l = pt_array_push(&cscf->listens);
        if (l == NULL)
            return PT_CONF_ERROR;
        *l = lo;
        if (add_listen(cf, cscf, &lo) != 0)
            return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

/* ------------------------------------------------------------------------ */
/* location { } */

static const char *location_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_conf_ctx_t *pctx = cf->http_ctx;
    pt_http_core_loc_conf_t *pclcf = core_loc(pctx->loc_conf);
    pt_str_t *v = args(cf);
    size_t n = cf->args->nelts;

    /* read the arguments before parsing the block reuses cf->args */
    pt_str_t mod = pt_null_string, name;
    if (n == 3) {
        mod = v[1];
        name = v[2];
    } else {
        name = v[1];
    }
    int regex = 0, caseless = 0, exact = 0, noregex = 0, named = 0;
    if (n == 3) {
        if (pt_str_eq_lit(&mod, "=")) {
            exact = 1;
        } else if (pt_str_eq_lit(&mod, "^~")) {
            noregex = 1;
        } else if (pt_str_eq_lit(&mod, "~")) {
            regex = 1;
        } else if (pt_str_eq_lit(&mod, "~*")) {
            regex = 1;
            caseless = 1;
        } else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid location modifier \"%s\"", mod.data);
            return PT_CONF_ERROR;
        }
    } else if (name.len && name.data[0] == '=') {
        exact = 1;
        name.data++;
        name.len--;
    } else if (name.len >= 2 && name.data[0] == '^' && name.data[1] == '~') {
        noregex = 1;
        name.data += 2;
        name.len -= 2;
    } else if (name.len && name.data[0] == '~') {
        regex = 1;
        name.data++;
        name.len--;
        if (name.len && name.data[0] == '*') {
            caseless = 1;
            name.data++;
            name.len--;
        }
    } else if (name.len && name.data[0] == '@') {
        named = 1;
    }

    void **loc = create_loc_confs(cf);
    if (loc == NULL)
        return PT_CONF_ERROR;
    pt_http_core_loc_conf_t *clcf = core_loc(loc);
    clcf->name = name;
    clcf->exact_match = exact;
    clcf->noregex = noregex;
    clcf->named = named;
    clcf->file = cf->file ? pt_pstrndup(cf->pool, cf->file, strlen(cf->file)) : NULL;
    clcf->line = cf->line;

    if (regex) {
        clcf->regex = pt_pcalloc(cf->pool, sizeof(pt_http_regex_t));
        if (clcf->regex == NULL || pt_http_regex_compile(cf, clcf->regex, &name, caseless) != 0)
            return PT_CONF_ERROR;
    }

    /* nesting rules (pclcf->name is empty at the server level) */
    int nested = cf->ctx == PT_CTX_LOC;
    if (nested) {
        if (pclcf->exact_match) {
            pt_conf_error(cf, PT_LOG_EMERG, 0,
                          "location \"%.*s\" cannot be inside the exact location \"%.*s\"",
                          (int) name.len, name.data, (int) pclcf->name.len, pclcf->name.data);
            return PT_CONF_ERROR;
        }
        if (pclcf->named) {
            pt_conf_error(cf, PT_LOG_EMERG, 0,
                          "location \"%.*s\" cannot be inside the named location \"%.*s\"",
                          (int) name.len, name.data, (int) pclcf->name.len, pclcf->name.data);
            return PT_CONF_ERROR;
        }
        if (named) {
            pt_conf_error(cf, PT_LOG_EMERG, 0,
                          "named location \"%.*s\" can be on the server level only",
                          (int) name.len, name.data);
            return PT_CONF_ERROR;
        }
        if (!regex && (name.len < pclcf->name.len
                       || memcmp(name.data, pclcf->name.data, pclcf->name.len) != 0)) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "location \"%.*s\" is outside location \"%.*s\"",
                          (int) name.len, name.data, (int) pclcf->name.len, pclcf->name.data);
            return PT_CONF_ERROR;
        }
    }

    if (add_location(cf, clcf) != 0)
        return PT_CONF_ERROR;
    clcf->parent = nested ? pclcf : NULL;

    pt_http_conf_ctx_t *ctx = pt_pcalloc(cf->pool, sizeof(*ctx));
    if (ctx == NULL)
        return PT_CONF_ERROR;
    ctx->main_conf = pctx->main_conf;
    ctx->srv_conf = pctx->srv_conf;
    ctx->loc_conf = loc;

    unsigned save_ctx = cf->ctx;
    cf->ctx = PT_CTX_LOC;
    cf->http_ctx = ctx;
    const char *rv = pt_conf_parse_block(cf);
    cf->ctx = save_ctx;
    cf->http_ctx = pctx;
    return rv;
}

void **pt_http_core_create_noname_location(pt_conf_t *cf)
{
    void **loc = create_loc_confs(cf);
    if (loc == NULL)
        return NULL;
    pt_http_core_loc_conf_t *clcf = core_loc(loc);
    pt_http_core_loc_conf_t *pclcf = core_loc(cf->http_ctx->loc_conf);
    clcf->noname = 1;
    clcf->name = pclcf->name;   /* nginx: a pseudo-location carries its parent's name */
    clcf->file = cf->file ? pt_pstrndup(cf->pool, cf->file, strlen(cf->file)) : NULL;
    clcf->line = cf->line;
    if (add_location(cf, clcf) != 0)
        return NULL;
    clcf->parent = pclcf;
    return loc;
}

/* ------------------------------------------------------------------------ */
/* listen */

static int addr_is_wildcard(const pt_sockaddr_t *a)
{
    if (a->sa.sa_family == AF_INET)
        return a->sin.sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->sa.sa_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&a->sin6.sin6_addr);
    return 0;
}

static in_port_t addr_port(const pt_sockaddr_t *a)
{
    if (a->sa.sa_family == AF_INET)
        return a->sin.sin_port;
    if (a->sa.sa_family == AF_INET6)
        return a->sin6.sin6_port;
    return 0;
}

/* Records that cscf listens on lo (nginx's add_listen / add_address /
 * add_server), with its errors reported at the listen directive. */
static int add_listen(pt_conf_t *cf, pt_http_core_srv_conf_t *cscf,
                      const pt_http_listen_opt_t *lo)
{
    pt_http_core_main_conf_t *cmcf = core_main(cf->http_ctx);
    pt_array_t *ports = cmcf->_ports;
    int family = lo->addr.sa.sa_family;
    in_port_t port = addr_port(&lo->addr);

    conf_port_t *pt = ports->elts, *cp = NULL;
    for (size_t i = 0; i < ports->nelts; i++) {
        if (pt[i].family != family || pt[i].port != port)
            continue;
        if (family == AF_UNIX) {   /* one group per path */
            conf_addr_t *a0 = pt[i].addrs.elts;
            if (!pt_sockaddr_eq(&a0->opt.addr.sa, a0->opt.socklen, &lo->addr.sa, lo->socklen))
                continue;
        }
        cp = &pt[i];
        break;
    }
    if (cp == NULL) {
        cp = pt_array_push(ports);
        if (cp == NULL)
            return -1;
        cp->family = family;
        cp->port = port;
        if (pt_array_init(&cp->addrs, cf->pool, 2, sizeof(conf_addr_t)) != 0)
            return -1;
    }

    conf_addr_t *ad = cp->addrs.elts, *ca = NULL;
    for (size_t i = 0; i < cp->addrs.nelts; i++) {
        if (pt_sockaddr_eq(&ad[i].opt.addr.sa, ad[i].opt.socklen, &lo->addr.sa, lo->socklen)) {
            ca = &ad[i];
            break;
        }
    }

    if (ca == NULL) {
        ca = pt_array_push(&cp->addrs);
        if (ca == NULL)
            return -1;
        ca->opt = *lo;
        if (pt_array_init(&ca->servers, cf->pool, 2, sizeof(pt_http_core_srv_conf_t *)) != 0)
            return -1;
        ca->default_server = lo->default_server ? cscf : NULL;
    } else {
        pt_http_core_srv_conf_t **sv = ca->servers.elts;
        for (size_t i = 0; i < ca->servers.nelts; i++) {
            if (sv[i] == cscf) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "a duplicate listen %s", lo->addr_text);
                return -1;
            }
        }
        if (lo->set) {
            if (ca->opt.set) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "duplicate listen options for %s",
                              lo->addr_text);
                return -1;
            }
            pt_http_listen_opt_t keep = ca->opt;
            ca->opt = *lo;
            ca->opt.default_server = keep.default_server;
            ca->opt.ssl |= keep.ssl;
            ca->opt.http2 |= keep.http2;
            ca->opt.proxy_protocol |= keep.proxy_protocol;
        }
        if (lo->default_server) {
            if (ca->default_server) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "a duplicate default server for %s",
                              lo->addr_text);
                return -1;
            }
            ca->default_server = cscf;
            ca->opt.default_server = 1;
        }
        ca->opt.ssl |= lo->ssl;
        ca->opt.http2 |= lo->http2;
        ca->opt.proxy_protocol |= lo->proxy_protocol;
    }

    pt_http_core_srv_conf_t **slot = pt_array_push(&ca->servers);
    if (slot == NULL)
        return -1;
    *slot = cscf;
    return 0;
}

static int parse_int_param(const pt_str_t *v, size_t skip, int64_t *out)
{
    if (v->len <= skip)
        return -1;
    int64_t n = pt_atoi64(v->data + skip, v->len - skip);
    if (n < 0 || n > INT_MAX)
        return -1;
    *out = n;
    return 0;
}

/* so_keepalive=on|off|[keepidle]:[keepintvl]:[keepcnt] */
static int so_keepalive_valid(const pt_str_t *v)
{
    pt_str_t s = { v->len - 13, v->data + 13 };
    if (pt_str_eq_lit(&s, "on") || pt_str_eq_lit(&s, "off"))
        return 1;
    int parts = 0, any = 0;
    const char *p = s.data, *end = s.data + s.len;
    while (parts < 3) {
        const char *q = p;
        while (q < end && *q != ':')
            q++;
        if (q > p) {
            pt_str_t t = { (size_t) (q - p), (char *) p };
            if (parts < 2 ? pt_conf_parse_sec(&t) <= 0 : pt_atoi64(t.data, t.len) <= 0)
                return 0;
            any = 1;
        }
        parts++;
        if (q == end)
            break;
        p = q + 1;
        if (parts == 3)
            return 0;
    }
    return any;
}

static const char *listen_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_srv_conf_t *cscf = conf;
    pt_str_t *v = args(cf);
    size_t n = cf->args->nelts;
    pt_http_listen_opt_t lo;
    const char *err = NULL;

    cscf->listen = 1;
    memset(&lo, 0, sizeof(lo));
    if (pt_sockaddr_parse(v[1].data, v[1].len, 80, &lo.addr, &lo.socklen, &err) != 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "%s in \"%s\" of the \"listen\" directive",
                      err ? err : "invalid address", v[1].data);
        return PT_CONF_ERROR;
    }
    lo.backlog = -1;
    lo.rcvbuf = lo.sndbuf = -1;
    lo.ipv6only = 1;
    lo.wildcard = addr_is_wildcard(&lo.addr);
    pt_sockaddr_text(&lo.addr.sa, lo.socklen, lo.addr_text, sizeof(lo.addr_text), 1);

    for (size_t i = 2; i < n; i++) {
        pt_str_t *p = &v[i];
        int64_t num;

        if (pt_str_eq_lit(p, "default_server") || pt_str_eq_lit(p, "default")) {
            lo.default_server = 1;
        } else if (pt_str_eq_lit(p, "bind")) {
            lo.set = lo.bind = 1;
        } else if (has_prefix(p, "fastopen=")) {
            if (parse_int_param(p, 9, &num) != 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid fastopen \"%s\"", p->data);
                return PT_CONF_ERROR;
            }
            lo.set = lo.bind = 1;
        } else if (has_prefix(p, "backlog=")) {
            if (parse_int_param(p, 8, &num) != 0 || num == 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid backlog \"%s\"", p->data);
                return PT_CONF_ERROR;
            }
            lo.backlog = (int) num;
            lo.set = lo.bind = 1;
        } else if (has_prefix(p, "rcvbuf=") || has_prefix(p, "sndbuf=")) {
            pt_str_t s = { p->len - 7, p->data + 7 };
            int64_t size = pt_conf_parse_size(&s);
            int rcv = p->data[0] == 'r';
            if (size < 0 || size > INT_MAX) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid %s \"%s\"",
                              rcv ? "rcvbuf" : "sndbuf", p->data);
                return PT_CONF_ERROR;
            }
            if (rcv)
                lo.rcvbuf = (int) size;
            else
                lo.sndbuf = (int) size;
            lo.set = lo.bind = 1;
        } else if (pt_str_eq_lit(p, "deferred")) {
            lo.deferred = 1;
            lo.set = lo.bind = 1;
        } else if (has_prefix(p, "ipv6only=o")) {
            if (pt_str_eq_lit(p, "ipv6only=on")) {
                lo.ipv6only = 1;
            } else if (pt_str_eq_lit(p, "ipv6only=off")) {
                lo.ipv6only = 0;
            } else {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid ipv6only flags \"%s\"", p->data + 9);
                return PT_CONF_ERROR;
            }
            lo.set = lo.bind = 1;
        } else if (pt_str_eq_lit(p, "reuseport")) {
            lo.reuseport = 1;
            lo.set = lo.bind = 1;
        } else if (pt_str_eq_lit(p, "ssl")) {
            lo.ssl = 1;
        } else if (pt_str_eq_lit(p, "http2")) {
            lo.http2 = 1;
            pt_conf_error(cf, PT_LOG_WARN, 0, "the \"listen ... http2\" directive is deprecated, "
                          "use the \"http2\" directive instead");
        } else if (pt_str_eq_lit(p, "quic")) {
            lo.quic = 1;
        } else if (pt_str_eq_lit(p, "proxy_protocol")) {
            lo.proxy_protocol = 1;
        } else if (has_prefix(p, "so_keepalive=")) {
            if (!so_keepalive_valid(p)) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid so_keepalive value: \"%s\"",
                              p->data + 13);
                return PT_CONF_ERROR;
            }
            lo.so_keepalive = 1;
            lo.set = lo.bind = 1;
        } else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", p->data);
            return PT_CONF_ERROR;
        }
    }

    if (lo.quic) {
        if (lo.ssl)
            return "\"ssl\" parameter is incompatible with \"quic\"";
        if (lo.http2)
            return "\"http2\" parameter is incompatible with \"quic\"";
        if (lo.proxy_protocol)
            return "\"proxy_protocol\" parameter is incompatible with \"quic\"";
    }

    pt_http_listen_opt_t *l = pt_array_push(&cscf->listens);
    if (l == NULL)
        return PT_CONF_ERROR;
    *l = lo;

    /* QUIC (UDP) sockets are accepted in the configuration only */
    if (lo.quic)
        return PT_CONF_OK;
    return add_listen(cf, cscf, &lo) == 0 ? PT_CONF_OK : PT_CONF_ERROR;
}

/* ------------------------------------------------------------------------ */
/* server_name */

static const char *server_name_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_srv_conf_t *cscf = conf;
    pt_str_t *v = args(cf);

    for (size_t i = 1; i < cf->args->nelts; i++) {
        pt_str_t name = v[i];
        char ch = name.len ? name.data[0] : '\0';

        if ((ch == '*' && (name.len < 3 || name.data[1] != '.'))
            || (ch == '.' && name.len < 2)) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "server name \"%s\" is invalid", name.data);
            return PT_CONF_ERROR;
        }
        if (memchr(name.data, '/', name.len))
            pt_conf_error(cf, PT_LOG_WARN, 0, "server name \"%s\" has suspicious symbols",
                          name.data);

        if (pt_str_caseeq_lit(&name, "$hostname")) {
            char host[256];
            if (gethostname(host, sizeof(host)) != 0) {
                pt_conf_error(cf, PT_LOG_EMERG, errno, "gethostname() failed");
                return PT_CONF_ERROR;
            }
            host[sizeof(host) - 1] = '\0';
            name.len = strlen(host);
            name.data = pt_pstrndup(cf->pool, host, name.len);
            if (name.data == NULL)
                return PT_CONF_ERROR;
        }

        pt_http_server_name_t *sn = pt_array_push(&cscf->server_names);
        if (sn == NULL)
            return PT_CONF_ERROR;
        sn->server = cscf;
        sn->regex = NULL;

        if (name.len == 0 || name.data[0] != '~') {
            char *low = pt_pnalloc(cf->pool, name.len + 1);
            if (low == NULL)
                return PT_CONF_ERROR;
            pt_strlow(low, name.data, name.len);
            low[name.len] = '\0';
            sn->name.data = low;
            sn->name.len = name.len;
            continue;
        }

        /* ~regex: caseless when the pattern has an uppercase letter (nginx) */
        pt_str_t pattern = { name.len - 1, name.data + 1 };
        int caseless = 0;
        for (size_t k = 0; k < pattern.len; k++) {
            if (pattern.data[k] >= 'A' && pattern.data[k] <= 'Z') {
                caseless = 1;
                break;
            }
        }
        sn->name = name;
        pt_http_regex_t *re = pt_pcalloc(cf->pool, sizeof(*re));
        if (re == NULL)
            return PT_CONF_ERROR;
        /* the array may have moved: take the slot again after compiling */
        size_t idx = cscf->server_names.nelts - 1;
        if (pt_http_regex_compile(cf, re, &pattern, caseless) != 0)
            return PT_CONF_ERROR;
        pt_array_at(&cscf->server_names, pt_http_server_name_t, idx).regex = re;
        if (re->ncaptures)
            cscf->captures = 1;
    }
    return PT_CONF_OK;
}

/* ------------------------------------------------------------------------ */
/* Other directives. */

static const char *root_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    int alias = cmd->offset == 1;
    pt_str_t v = args(cf)[1];

    if (clcf->root.data) {
        if ((clcf->alias != 0) == alias)
            return "is duplicate";
        pt_conf_error(cf, PT_LOG_EMERG, 0,
                      "\"%s\" directive is duplicate, \"%s\" directive was specified earlier",
                      cmd->name, clcf->alias ? "alias" : "root");
        return PT_CONF_ERROR;
    }
    if (clcf->named && alias) {
        pt_conf_error(cf, PT_LOG_EMERG, 0,
                      "the \"alias\" directive cannot be used inside the named location");
        return PT_CONF_ERROR;
    }
    if (pt_strnstr(v.data, v.len, "$document_root", 14)
        || pt_strnstr(v.data, v.len, "$realpath_root", 14)) {
        pt_conf_error(cf, PT_LOG_EMERG, 0,
                      "the $document_root variable cannot be used in the \"%s\" directive",
                      cmd->name);
        return PT_CONF_ERROR;
    }

    if (alias)
        clcf->alias = clcf->regex ? SIZE_MAX : (clcf->name.len ? clcf->name.len : 1);
    else
        clcf->alias = 0;
    if (!alias && v.len > 0 && v.data[v.len - 1] == '/')
        v.len--;

    if (arg_has_vars(cf, 1)) {
        clcf->root_cv = pt_pcalloc(cf->pool, sizeof(pt_http_cv_t));
        if (clcf->root_cv == NULL || pt_http_cv_compile(cf, &v, clcf->root_cv) != 0)
            return PT_CONF_ERROR;
        clcf->root = v;
        if (clcf->root_cv->is_literal)
            clcf->root_cv = NULL;
        else
            return PT_CONF_OK;
    }
    if (pt_conf_full_name(cf->cycle, &v, 0) != 0)
        return PT_CONF_ERROR;
    clcf->root = v;
    return PT_CONF_OK;
}

/* "N size" pairs: large_client_header_buffers, output_buffers. The field at
 * cmd->offset is the count (int64_t), the size follows it. */
static const char *bufs_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    int64_t *num = (int64_t *) ((char *) conf + cmd->offset);
    int64_t *size = num + 1;
    pt_str_t *v = args(cf);

    if (*num != PT_CONF_UNSET)
        return "is duplicate";
    int64_t n = pt_atoi64(v[1].data, v[1].len);
    if (n <= 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\"", v[1].data);
        return PT_CONF_ERROR;
    }
    int64_t s = pt_conf_parse_size(&v[2]);
    if (s <= 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\"", v[2].data);
        return PT_CONF_ERROR;
    }
    *num = n;
    *size = s;
    return PT_CONF_OK;
}

static const char *keepalive_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    pt_str_t *v = args(cf);

    if (clcf->keepalive_timeout != PT_CONF_UNSET_MSEC)
        return "is duplicate";
    int64_t t = pt_conf_parse_msec(&v[1]);
    if (t < 0)
        return "invalid value";
    int64_t h = -1;
    if (cf->args->nelts == 3) {
        h = pt_conf_parse_sec(&v[2]);
        if (h < 0)
            return "invalid value";
    }
    clcf->keepalive_timeout = t;
    clcf->keepalive_header = h;
    return PT_CONF_OK;
}

static const char *error_page_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    pt_str_t *v = args(cf);
    size_t n = cf->args->nelts;
    int overwrite = -1;
    size_t last_code = n - 2;   /* index of the last status code */

    pt_str_t uri = v[n - 1];
    pt_str_t *eq = &v[n - 2];
    if (eq->len && eq->data[0] == '=') {
        if (n < 4) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid number of arguments in \"error_page\" directive");
            return PT_CONF_ERROR;
        }
        if (eq->len > 1) {
            int64_t o = pt_atoi64(eq->data + 1, eq->len - 1);
            if (o < 0 || o > 999) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\"", eq->data);
                return PT_CONF_ERROR;
            }
            overwrite = (int) o;
        } else {
            overwrite = 0;
        }
        last_code = n - 3;
    }

    pt_http_cv_t cv;
    memset(&cv, 0, sizeof(cv));
    if (pt_http_cv_compile(cf, &uri, &cv) != 0)
        return PT_CONF_ERROR;

    if (clcf->error_pages == NULL) {
        clcf->error_pages = pt_array_create(cf->pool, 4, sizeof(pt_http_error_page_t));
        if (clcf->error_pages == NULL)
            return PT_CONF_ERROR;
    }
    for (size_t i = 1; i <= last_code; i++) {
        int64_t code = pt_atoi64(v[i].data, v[i].len);
        if (code < 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid value \"%s\"", v[i].data);
            return PT_CONF_ERROR;
        }
        if (code < 300 || code > 599) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "value \"%s\" must be between 300 and 599",
                          v[i].data);
            return PT_CONF_ERROR;
        }
        pt_http_error_page_t *ep = pt_array_push(clcf->error_pages);
        if (ep == NULL)
            return PT_CONF_ERROR;
        ep->status = (int) code;
        ep->overwrite = overwrite;
        ep->uri = cv;
    }
    return PT_CONF_OK;
}

static const char *error_log_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    return pt_conf_set_error_log(cf, &clcf->error_log);
}

static const char *internal_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    if (clcf->internal != PT_CONF_UNSET)
        return "is duplicate";
    clcf->internal = 1;
    return PT_CONF_OK;
}

static const char *resolver_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    pt_str_t *v = args(cf);
    if (clcf->resolver != PT_CONF_UNSET_PTR)
        return "is duplicate";
    if (pt_str_eq_lit(&v[1], "off")) {
        clcf->resolver = NULL;
        return PT_CONF_OK;
    }
    pt_array_t *a = pt_array_create(cf->pool, cf->args->nelts, sizeof(pt_str_t));
    if (a == NULL)
        return PT_CONF_ERROR;
    for (size_t i = 1; i < cf->args->nelts; i++) {
        pt_str_t *s = pt_array_push(a);
        if (s == NULL)
            return PT_CONF_ERROR;
        *s = v[i];
    }
    clcf->resolver = a;
    return PT_CONF_OK;
}

/* limit_rate / limit_rate_after: a size, or a complex value with variables. */
static const char *rate_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    int64_t *field = (int64_t *) ((char *) conf + cmd->offset);
    pt_http_cv_t **cvp = cmd->offset == LOC(limit_rate) ? &clcf->limit_rate_cv
                                                         : &clcf->limit_rate_after_cv;
    pt_str_t *v = args(cf);

    if (*field != PT_CONF_UNSET_SIZE || *cvp)
        return "is duplicate";
    if (arg_has_vars(cf, 1)) {
        pt_http_cv_t *cv = pt_pcalloc(cf->pool, sizeof(*cv));
        if (cv == NULL || pt_http_cv_compile(cf, &v[1], cv) != 0)
            return PT_CONF_ERROR;
        if (!cv->is_literal) {
            *cvp = cv;
            return PT_CONF_OK;
        }
    }
    int64_t s = pt_conf_parse_size(&v[1]);
    if (s < 0)
        return "invalid value";
    *field = s;
    return PT_CONF_OK;
}

static const char *directio_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    pt_str_t *v = args(cf);
    if (clcf->directio != PT_CONF_UNSET)
        return "is duplicate";
    if (pt_str_eq_lit(&v[1], "off")) {
        clcf->directio = INT64_MAX;
        return PT_CONF_OK;
    }
    int64_t s = pt_conf_parse_size(&v[1]);
    if (s < 0)
        return "invalid value";
    clcf->directio = s;
    return PT_CONF_OK;
}

static const char *aio_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    pt_str_t *v = args(cf);
    if (clcf->aio != PT_CONF_UNSET)
        return "is duplicate";
    if (pt_str_eq_lit(&v[1], "off")) {
        clcf->aio = 0;
    } else if (pt_str_eq_lit(&v[1], "on")) {
        clcf->aio = 1;
    } else if (pt_str_eq_lit(&v[1], "threads") || has_prefix(&v[1], "threads=")) {
        clcf->aio = 2;
    } else {
        pt_conf_error(cf, PT_LOG_EMERG, 0,
                      "invalid value \"%s\" in \"aio\" directive, it must be \"on\", \"off\" or "
                      "\"threads\"", v[1].data);
        return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

static const char *disable_symlinks_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    pt_str_t *v = args(cf);
    if (clcf->disable_symlinks != PT_CONF_UNSET)
        return "is duplicate";
    for (size_t i = 1; i < cf->args->nelts; i++) {
        if (pt_str_eq_lit(&v[i], "off")) {
            clcf->disable_symlinks = 0;
        } else if (pt_str_eq_lit(&v[i], "on")) {
            clcf->disable_symlinks = 1;
        } else if (pt_str_eq_lit(&v[i], "if_not_owner")) {
            clcf->disable_symlinks = 2;
        } else if (has_prefix(&v[i], "from=") && i == 2) {
            continue;
        } else {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", v[i].data);
            return PT_CONF_ERROR;
        }
        if (i == 2) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", v[i].data);
            return PT_CONF_ERROR;
        }
    }
    if (cf->args->nelts == 3 && clcf->disable_symlinks == 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"from=\" cannot be used with \"off\" parameter");
        return PT_CONF_ERROR;
    }
    return PT_CONF_OK;
}

/* client_body_temp_path path [level1 [level2 [level3]]] */
static const char *temp_path_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = conf;
    pt_str_t *v = args(cf);
    if (clcf->client_body_temp_path.data)
        return "is duplicate";
    for (size_t i = 2; i < cf->args->nelts; i++) {
        int64_t l = pt_atoi64(v[i].data, v[i].len);
        if (l < 1 || l > 2)
            return "invalid value";
    }
    pt_str_t p = v[1];
    if (pt_conf_full_name(cf->cycle, &p, 0) != 0)
        return PT_CONF_ERROR;
    clcf->client_body_temp_path = p;
    return PT_CONF_OK;
}

/* ------------------------------------------------------------------------ */
/* Listening sockets. */

static void addr_conf_init(pt_http_addr_conf_t *ac, const conf_addr_t *ca)
{
    memcpy(&ac->addr, &ca->opt.addr, sizeof(ac->addr));
    ac->socklen = ca->opt.socklen;
    memcpy(ac->addr_text, ca->opt.addr_text, sizeof(ac->addr_text));
    ac->default_server = ca->default_server
                         ? ca->default_server
                         : ((pt_http_core_srv_conf_t **) ca->servers.elts)[0];
    ac->ssl = ca->opt.ssl;
    ac->http2 = ca->opt.http2;
    ac->quic = ca->opt.quic;
    ac->proxy_protocol = ca->opt.proxy_protocol;
}

static int addr_conf_names(pt_conf_t *cf, pt_http_addr_conf_t *ac, const conf_addr_t *ca)
{
    pt_http_core_srv_conf_t **sv = ca->servers.elts;
    ac->names = NULL;
    if (ca->servers.nelts > 1 || sv[0]->captures)
        return pt_http_server_names_build(cf, sv, (unsigned) ca->servers.nelts,
                                          ca->opt.addr_text, &ac->names);
    return 0;
}

/* Adds one listening socket for opt serving the addresses in port. */
static int add_listening(pt_conf_t *cf, const pt_http_listen_opt_t *opt, pt_http_port_t *port)
{
    pt_cycle_t *cycle = cf->cycle;
    if (cycle->listening.elts == NULL
        && pt_array_init(&cycle->listening, cycle->pool, 4, sizeof(pt_listening_t)) != 0)
        return -1;
    pt_listening_t *ls = pt_listening_add(&cycle->listening, &opt->addr.sa, opt->socklen);
    if (ls == NULL) {
        pt_log_error(PT_LOG_EMERG, cf->log, 0, "cannot add listening socket %s", opt->addr_text);
        return -1;
    }
    if (opt->backlog > 0)
        ls->backlog = opt->backlog;
    ls->rcvbuf = opt->rcvbuf;
    ls->sndbuf = opt->sndbuf;
    ls->reuseport = opt->reuseport;
    ls->ipv6only = opt->ipv6only;
    ls->deferred = opt->deferred;
    ls->ssl = port->addrs[port->naddrs - 1].ssl;
    ls->http2 = port->addrs[port->naddrs - 1].http2;
    for (unsigned i = 0; i < port->naddrs; i++) {
        ls->ssl |= port->addrs[i].ssl;
        ls->http2 |= port->addrs[i].http2;
    }
    /* TLS listeners start with the handshake (then ALPN picks h1 or h2);
     * plain ones with h2c enabled look for the HTTP/2 preface first */
    int h2c = 0;
    for (unsigned i = 0; i < port->naddrs; i++)
        h2c |= port->addrs[i].http2 || port->addrs[i].default_server->http2;
    if (ls->ssl)
        ls->handler = pt_tls_init_connection;
    else if (h2c)
        ls->handler = pt_http2_detect_connection;
    else
        ls->handler = pt_http_init_connection;
    ls->servers = port;
    if (ls->log == NULL)
        ls->log = cycle->log;
    return 0;
}

static int build_listening(pt_conf_t *cf, pt_http_core_main_conf_t *cmcf)
{
    pt_array_t *ports = cmcf->_ports;
    conf_port_t *cp = ports->elts;

    for (size_t p = 0; p < ports->nelts; p++) {
        conf_addr_t *ca = cp[p].addrs.elts;
        size_t na = cp[p].addrs.nelts;
        conf_addr_t *wild = NULL;
        for (size_t a = 0; a < na; a++) {
            if (ca[a].opt.wildcard)
                wild = &ca[a];
        }

        /* specific addresses with their own socket: bind (or an option that
         * implies it), or any when no wildcard shares the port */
        size_t shared = 0;
        for (size_t a = 0; a < na; a++) {
            if (&ca[a] == wild)
                continue;
            if (wild && !ca[a].opt.bind) {
                shared++;
                continue;
            }
            pt_http_port_t *port = pt_pcalloc(cf->pool, sizeof(*port));
            pt_http_addr_conf_t *ac = pt_pcalloc(cf->pool, sizeof(*ac));
            if (port == NULL || ac == NULL)
                return -1;
            addr_conf_init(ac, &ca[a]);
            if (addr_conf_names(cf, ac, &ca[a]) != 0)
                return -1;
            port->addrs = ac;
            port->naddrs = 1;
            if (add_listening(cf, &ca[a].opt, port) != 0)
                return -1;
        }
        if (wild == NULL)
            continue;

        /* the wildcard socket serves the remaining addresses (looked up by
         * the connection's local address) and itself, last */
        pt_http_port_t *port = pt_pcalloc(cf->pool, sizeof(*port));
        pt_http_addr_conf_t *ac = pt_pcalloc(cf->pool, sizeof(*ac) * (shared + 1));
        if (port == NULL || ac == NULL)
            return -1;
        unsigned k = 0;
        for (size_t a = 0; a < na; a++) {
            if (&ca[a] == wild || ca[a].opt.bind)
                continue;
            addr_conf_init(&ac[k], &ca[a]);
            if (addr_conf_names(cf, &ac[k], &ca[a]) != 0)
                return -1;
            k++;
        }
        addr_conf_init(&ac[k], wild);
        if (addr_conf_names(cf, &ac[k], wild) != 0)
            return -1;
        port->addrs = ac;
        port->naddrs = k + 1;
        if (add_listening(cf, &wild->opt, port) != 0)
            return -1;
    }
    return 0;
}

pt_http_addr_conf_t *pt_http_addr_conf_get(pt_conn_t *c)
{
    pt_http_port_t *port = c->listening->servers;
    if (port->naddrs == 1)
        return &port->addrs[0];
    if (pt_conn_local_addr(c) != 0)
        return &port->addrs[port->naddrs - 1];
    const pt_sockaddr_t *la = &c->local_sockaddr;
    for (unsigned i = 0; i + 1 < port->naddrs; i++) {
        const pt_sockaddr_t *a = &port->addrs[i].addr;
        if (a->sa.sa_family != la->sa.sa_family)
            continue;
        if (a->sa.sa_family == AF_INET && a->sin.sin_addr.s_addr == la->sin.sin_addr.s_addr)
            return &port->addrs[i];
        if (a->sa.sa_family == AF_INET6
            && memcmp(&a->sin6.sin6_addr, &la->sin6.sin6_addr, sizeof(struct in6_addr)) == 0)
            return &port->addrs[i];
    }
    return &port->addrs[port->naddrs - 1];
}

/* ------------------------------------------------------------------------ */
/* FIND_CONFIG */

int pt_http_core_find_config(pt_http_request_t *r)
{
    r->uri_changed = 0;
    r->uri_rewritten_here = 0;
    int rc = pt_http_find_location(r);
    if (rc == PT_ERROR)
        return 500;

    pt_http_core_loc_conf_t *clcf = core_loc(r->loc_conf);
    pt_conn_t *c = r->connection;

    if (!r->internal && clcf->internal)
        return 404;

    if (c && clcf->error_log && clcf->error_log->level) {
        c->log.file = clcf->error_log->file;
        c->log.level = clcf->error_log->level;
        c->log.next = clcf->error_log->next;
    }
    if (clcf->keepalive_timeout == 0)
        r->keepalive = 0;

    if (r->headers_in.content_length_n != -1 && !r->discard_body
        && clcf->client_max_body_size
        && clcf->client_max_body_size < r->headers_in.content_length_n) {
        pt_log_error(PT_LOG_ERR, c ? &c->log : pt_log_default, 0,
                     "client intended to send too large body: %lld bytes",
                     (long long) r->headers_in.content_length_n);
        r->expect_tested = 1;
        return 413;
    }

    if (rc == 301)
        return 301;
    return PT_OK;
}
