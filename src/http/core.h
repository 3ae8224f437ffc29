/* The HTTP core module's configuration: http { }, server { }, location { }
 * and the directives every request depends on (listen, server_name, the
 * client_* limits, keep-alive, error_page, server_tokens, ...). */
#ifndef PT_HTTP_CORE_H
#define PT_HTTP_CORE_H

#include "../config/conf.h"
#include "../net/listen.h"
#include "request.h"
#include "variables.h"

extern pt_module_t pt_http_core_module;

typedef struct {
    pt_array_t  servers;            /* pt_http_core_srv_conf_t * */
    pt_array_t  variables;          /* pt_http_var_t (indexed) */
    pt_array_t  prefix_variables;   /* pt_http_var_t (families) */
    pt_array_t  phases[PT_HTTP_PHASES_N];   /* pt_http_handler_cb per phase */
    pt_http_handler_cb *phase_engine;      /* flattened, built at init */
    unsigned    phase_engine_n;
    int64_t     variables_hash_max_size, variables_hash_bucket_size;
    int64_t     server_names_hash_max_size, server_names_hash_bucket_size;
    unsigned    ncaptures;          /* max capture pairs any regex needs */
} pt_http_core_main_conf_t;

/* One server_name entry. */
typedef struct {
    pt_str_t         name;          /* lowercased; "*.x.com" / "x.*" forms kept */
    pt_http_regex_t *regex;         /* ~regex names */
    pt_http_core_srv_conf_t *server;
} pt_http_server_name_t;

/* One listen directive of a server. */
typedef struct {
    pt_sockaddr_t addr;
    socklen_t     socklen;
    char          addr_text[128];
    unsigned      default_server:1;
    unsigned      ssl:1;
    unsigned      http2:1;
    unsigned      reuseport:1;
    unsigned      ipv6only:1;
    unsigned      deferred:1;
    unsigned      quic:1;
    int           backlog;
    int           rcvbuf, sndbuf;
} pt_http_listen_opt_t;

struct pt_http_core_srv_conf_s {
    pt_array_t              server_names;  /* pt_http_server_name_t */
    pt_http_conf_ctx_t     *ctx;           /* this server's confs */
    const char             *file;          /* where server { } starts (errors) */
    unsigned                line;
    pt_str_t                server_name;   /* first name ($server_name) */
    int64_t                 client_header_buffer_size;
    int64_t                 large_client_header_buffers_num;
    int64_t                 large_client_header_buffers_size;
    int64_t                 client_header_timeout;   /* ms */
    int                     merge_slashes;
    int                     underscores_in_headers;
    int                     ignore_invalid_headers;
    int                     http2;         /* "http2 on" */
    pt_array_t              listens;       /* pt_http_listen_opt_t */
    unsigned                listen:1;      /* had a listen directive */
};

/* A location { } (or the server-level one). */
struct pt_http_core_loc_conf_s {
    pt_str_t                name;          /* as written */
    pt_http_regex_t        *regex;         /* ~ and ~* */
    unsigned                exact_match:1; /* = */
    unsigned                noregex:1;     /* ^~ */
    unsigned                named:1;       /* @name */
    unsigned                noname:1;      /* if { } / limit_except pseudo-locations */
    unsigned                auto_redirect:1; /* proxy_pass in a prefix loc ending with '/' */
    void                  **loc_conf;      /* this location's confs (all modules) */
    pt_array_t             *locations;     /* nested: pt_http_core_loc_conf_t * */
    void                   *static_tree;   /* prefix/exact lookup tree (built at init) */
    pt_http_core_loc_conf_t **regex_locations; /* NULL-terminated, in config order */
    pt_http_handler_cb      handler;       /* content handler set by proxy_pass, return, ... */

    /* Directives of the core module (UNSET until merged). */
    pt_str_t                root;          /* root / alias */
    unsigned                alias:1;
    int64_t                 client_max_body_size;     /* 1m */
    int64_t                 client_body_buffer_size;  /* 16k */
    int64_t                 client_body_timeout;      /* 60s, ms */
    int64_t                 send_timeout;             /* 60s, ms */
    int64_t                 keepalive_timeout;        /* 75s, ms */
    int64_t                 keepalive_header;         /* s, -1 none */
    int64_t                 keepalive_requests;       /* 1000 */
    int64_t                 keepalive_time;           /* 1h, ms */
    int64_t                 lingering_time, lingering_timeout; /* ms */
    int64_t                 send_lowat, postpone_output;
    int                     server_tokens;            /* 0 off, 1 on, 2 build */
    int                     tcp_nodelay;
    int                     sendfile, tcp_nopush;     /* accepted */
    int                     absolute_redirect, server_name_in_redirect, port_in_redirect;
    int                     log_not_found, log_subrequest;
    int                     msie_padding, chunked_transfer_encoding;
    int                     recursive_error_pages;
    pt_array_t             *error_pages;   /* pt_http_error_page_t */
    pt_array_t             *types;         /* mime types (types { }) */
    pt_str_t                default_type;
    pt_log_t               *error_log;     /* error_log at this level */
    int64_t                 limit_rate, limit_rate_after;
    unsigned                if_modified_since;
    pt_str_t                internal_flag_dummy;
    int                     internal;      /* "internal" */
};

typedef struct {
    int          status;
    int          overwrite;     /* =code, -1 none, 0 "=" (upstream status) */
    pt_http_cv_t uri;
} pt_http_error_page_t;

/* Matching (server_name.c, location.c). */
pt_http_core_srv_conf_t *pt_http_find_server(pt_array_t *servers_of_addr,
                                             pt_http_core_srv_conf_t *default_server,
                                             const pt_str_t *host, pt_http_request_t *r);
/* Finds the location for r->uri in a server's location tree; sets r->loc_conf.
 * Returns PT_OK, or a status (e.g. 301 for auto_redirect is handled later). */
int pt_http_find_location(pt_http_request_t *r);

/* MIME type for an extension from the location's types (default_type else). */
void pt_http_set_content_type(pt_http_request_t *r);

#endif
