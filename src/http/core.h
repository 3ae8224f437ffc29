/* The HTTP core module's configuration: http { }, server { }, location { }
 * and the directives every request depends on (listen, server_name, the
 * client_* limits, keep-alive, error_page, server_tokens, ...), plus the
 * routing: which server a request goes to (server_name.c), which location
 * (location.c), and the flattened phase engine the runtime walks.
 *
 * Owner: http core (http_core.c, server_name.c, location.c). */
#ifndef PT_HTTP_CORE_H
#define PT_HTTP_CORE_H

#include "../config/conf.h"
#include "../net/listen.h"
#include "request.h"
#include "variables.h"

extern pt_module_t pt_http_core_module;

/* Access to the confs of the http { } block being parsed (config time). */
#define pt_http_conf_get_module_main_conf(cf, m) ((cf)->http_ctx->main_conf[(m).index])
#define pt_http_conf_get_module_srv_conf(cf, m)  ((cf)->http_ctx->srv_conf[(m).index])
#define pt_http_conf_get_module_loc_conf(cf, m)  ((cf)->http_ctx->loc_conf[(m).index])

/* ------------------------------------------------------------------------ */
/* The phase engine.
 *
 * Built once at the end of http { } (after every module's postconfiguration)
 * into cmcf->phase_engine, an array of cmcf->phase_engine_n steps. The runtime
 * (request.c, pt_http_core_run_phases) keeps r->phase_handler as an index into
 * it and runs a "checker" chosen by step->phase. Steps are laid out phase by
 * phase in pt_http_phase_e order; within a phase handlers run in the order
 * they were added (= module order in modules.c, as nginx):
 *
 *   [POST_READ h...]
 *   [SERVER_REWRITE h...]         <- cmcf->server_rewrite_index
 *   [FIND_CONFIG   (handler NULL)] <- cmcf->find_config_index       (always present, once)
 *   [REWRITE h...]                <- cmcf->location_rewrite_index
 *   [POST_REWRITE  (handler NULL)]                                  (always present, once)
 *   [PREACCESS h...]
 *   [ACCESS h...]                 <- cmcf->access_index
 *   [POST_ACCESS   (handler NULL)]                                  (always present, once)
 *   [PRECONTENT h...]
 *   [CONTENT h...]                <- cmcf->content_index
 *   [CONTENT       (handler NULL)] last step: "nothing produced content"
 *
 * LOG handlers are NOT steps: they stay in cmcf->phases[PT_HTTP_LOG_PHASE]
 * (pt_http_handler_cb each) and pt_http_finalize_request runs them all.
 *
 * `next` of a step = index of the first step of the following phase (for the
 * last CONTENT step: phase_engine_n). Checker semantics (nginx's):
 *
 *  POST_READ, PREACCESS, PRECONTENT (generic):
 *      PT_OK -> r->phase_handler = ph->next;   PT_DECLINED -> r->phase_handler++;
 *      PT_AGAIN / PT_DONE -> stop (suspended; someone resumes run_phases);
 *      anything else (PT_ERROR, a status) -> pt_http_finalize_request(r, rc).
 *  SERVER_REWRITE, REWRITE:
 *      PT_DECLINED -> r->phase_handler++;  PT_DONE -> stop (suspended);
 *      anything else -> finalize(r, rc)  (a `return 200 ...` finalizes here).
 *  FIND_CONFIG (built-in): rc = pt_http_core_find_config(r); PT_OK ->
 *      r->phase_handler++; otherwise finalize(r, rc) (404 internal-only,
 *      413 body too large, 301 auto redirect: see pt_http_core_find_config).
 *  POST_REWRITE (built-in): if !r->uri_changed -> r->phase_handler++; else
 *      if --r->uri_changes == 0 -> log "rewrite or internal redirection
 *      cycle while processing" and finalize 500; else
 *      r->phase_handler = cmcf->find_config_index.
 *  ACCESS (satisfy, per clcf->satisfy; skipped for subrequests):
 *      PT_DECLINED -> r->phase_handler++;
 *      satisfy all: PT_OK -> r->phase_handler++; PT_AGAIN/PT_DONE -> stop;
 *                   other -> finalize(r, rc).
 *      satisfy any: PT_OK -> clear access_code, r->phase_handler = ph->next;
 *                   403/401 -> remember it as access_code (401 wins over 403)
 *                   and r->phase_handler++; PT_AGAIN/PT_DONE -> stop;
 *                   other -> finalize(r, rc).
 *  POST_ACCESS (built-in): a remembered access_code != 0 -> finalize(r, it);
 *      else r->phase_handler++.
 *  CONTENT: at the FIRST content step (index cmcf->content_index), if the
 *      location has a content handler (clcf->handler: proxy_pass, return in
 *      location, stub_status...), run it instead of every content step and
 *      finalize(r, its rc) (PT_AGAIN/PT_DONE: response in progress, do not
 *      finalize). Otherwise: handler != NULL: rc = handler(r); PT_DECLINED ->
 *      r->phase_handler++; else finalize(r, rc). The final step (handler NULL):
 *      finalize(r, uri ends with '/' ? 403 : 404), as nginx.
 */
typedef struct {
    pt_http_phase_e     phase;    /* which checker runs this step */
    pt_http_handler_cb  handler;  /* the module's handler; NULL for built-in steps */
    unsigned            next;     /* first step of the following phase */
} pt_http_phase_handler_t;

typedef struct {
    pt_array_t  servers;            /* pt_http_core_srv_conf_t *, config order */
    pt_array_t  variables;          /* pt_http_var_t (indexed); zeroed here, owned by variables.c */
    pt_array_t  prefix_variables;   /* pt_http_var_t (families); same */
    void       *variables_data;     /* variables engineer's private lookup data */
    pt_array_t  phases[PT_HTTP_PHASES_N];   /* pt_http_handler_cb per phase */

    pt_http_phase_handler_t *phase_engine;  /* built at the end of http { } */
    unsigned    phase_engine_n;
    unsigned    server_rewrite_index;   /* restart point: new server (internal redirect) */
    unsigned    find_config_index;      /* restart point: uri changed */
    unsigned    location_rewrite_index;
    unsigned    access_index;
    unsigned    content_index;

    int64_t     variables_hash_max_size, variables_hash_bucket_size;     /* 1024, 64 */
    int64_t     server_names_hash_max_size, server_names_hash_bucket_size; /* 512, 32|64 */
    unsigned    ncaptures;          /* max capture groups any regex needs */
    void       *_ports;             /* private: listen addresses while parsing */
} pt_http_core_main_conf_t;

/* One server_name entry, in config order. */
typedef struct {
    pt_str_t         name;          /* lowercased as written: "x.com", "*.x.com",
                                     * ".x.com", "x.*", "~re" (with the tilde) */
    pt_http_regex_t *regex;         /* ~regex names (compiled), else NULL */
    pt_http_core_srv_conf_t *server;
} pt_http_server_name_t;

/* One listen directive of a server. */
typedef struct {
    pt_sockaddr_t addr;
    socklen_t     socklen;
    char          addr_text[128];   /* "0.0.0.0:80", "[::]:443", "unix:/p" */
    unsigned      default_server:1;
    unsigned      set:1;            /* socket options given (need own socket) */
    unsigned      bind:1;           /* "bind" or an option that implies it */
    unsigned      wildcard:1;       /* INADDR_ANY / in6addr_any */
    unsigned      ssl:1;
    unsigned      http2:1;          /* old style "listen ... http2" */
    unsigned      quic:1;           /* accepted, flag only */
    unsigned      proxy_protocol:1;
    unsigned      reuseport:1;
    unsigned      ipv6only:1;       /* default on */
    unsigned      deferred:1;
    unsigned      so_keepalive:1;   /* accepted */
    int           backlog;          /* -1 default (511) */
    int           rcvbuf, sndbuf;   /* -1 unset */
} pt_http_listen_opt_t;

/* Per listening address: what the connection layer needs before a Host is
 * known. */
typedef struct pt_http_virtual_names_s pt_http_virtual_names_t;  /* server_name.c */

typedef struct {
    pt_sockaddr_t            addr;      /* the address this conf is for */
    socklen_t                socklen;
    char                     addr_text[128];
    pt_http_core_srv_conf_t *default_server;
    pt_http_virtual_names_t *names;     /* NULL: every host goes to default_server */
    unsigned                 ssl:1;
    unsigned                 http2:1;   /* listen ... http2 (h2c prior knowledge / ALPN) */
    unsigned                 quic:1;
    unsigned                 proxy_protocol:1;
} pt_http_addr_conf_t;

/* What ls->servers points at for an HTTP listening socket. When a wildcard
 * socket (*:80) also serves specific addresses of the same port (127.0.0.1:80
 * without `bind`), addrs has one entry per specific address and the wildcard
 * entry last; the connection's local address picks one
 * (pt_http_addr_conf_get). Otherwise naddrs == 1. */
typedef struct {
    pt_http_addr_conf_t *addrs;
    unsigned             naddrs;
} pt_http_port_t;

struct pt_http_core_srv_conf_s {
    pt_array_t              server_names;  /* pt_http_server_name_t */
    pt_http_conf_ctx_t     *ctx;           /* this server's confs */
    const char             *file;          /* where server { } starts (errors) */
    unsigned                line;
    pt_str_t                server_name;   /* first name ($server_name) */
    int64_t                 client_header_buffer_size;      /* 1k */
    int64_t                 large_client_header_buffers_num;  /* 4 */
    int64_t                 large_client_header_buffers_size; /* 8k */
    int64_t                 client_header_timeout;   /* ms, 60s */
    int64_t                 connection_pool_size;    /* 256|512 */
    int64_t                 request_pool_size;       /* 4k */
    int                     merge_slashes;           /* on */
    int                     underscores_in_headers;  /* off */
    int                     ignore_invalid_headers;  /* on */
    int                     http2;                   /* "http2 on" (off). The runtime
                                                      * speaks h2 on a connection when
                                                      * the address's default server has
                                                      * it or addr->http2 (listen ... http2),
                                                      * as nginx */
    pt_array_t              listens;       /* pt_http_listen_opt_t */
    pt_http_core_loc_conf_t **named_locations; /* NULL-terminated, sorted by name; or NULL */
    unsigned                listen:1;      /* had a listen directive */
    unsigned                captures:1;    /* has regex server names with captures */
};

/* types { } and default MIME map, shared by every location that inherits it. */
typedef struct pt_http_types_s pt_http_types_t;

/* Error page: error_page code... [=[response]] uri. */
typedef struct {
    int          status;
    int          overwrite;     /* -1 no "=": keep status (302 for an absolute
                                 * URL); 0 "=" alone: the status of the page;
                                 * >0 "=code" */
    pt_http_cv_t uri;           /* may contain "?args"; "@name"; "http://..." */
} pt_http_error_page_t;

enum { PT_HTTP_LINGERING_OFF = 0, PT_HTTP_LINGERING_ON, PT_HTTP_LINGERING_ALWAYS };
enum { PT_HTTP_IMS_OFF = 0, PT_HTTP_IMS_EXACT, PT_HTTP_IMS_BEFORE };
enum { PT_HTTP_SATISFY_ALL = 0, PT_HTTP_SATISFY_ANY };
enum { PT_HTTP_SERVER_TOKENS_OFF = 0, PT_HTTP_SERVER_TOKENS_ON, PT_HTTP_SERVER_TOKENS_BUILD };
enum { PT_HTTP_BODY_FILE_OFF = 0, PT_HTTP_BODY_FILE_ON, PT_HTTP_BODY_FILE_CLEAN };

/* A location { } (or the server-level one, whose name is empty). */
struct pt_http_core_loc_conf_s {
    pt_str_t                name;          /* as written, without the modifier */
    pt_http_regex_t        *regex;         /* ~ and ~* */
    unsigned                exact_match:1; /* = */
    unsigned                noregex:1;     /* ^~ */
    unsigned                named:1;       /* @name */
    unsigned                noname:1;      /* if { } / limit_except pseudo-locations */
    unsigned                auto_redirect:1; /* proxy_pass in a location ending with '/' */
    void                  **loc_conf;      /* this location's confs (all modules) */
    pt_array_t             *locations;     /* nested (incl. noname): pt_http_core_loc_conf_t * */
    void                   *static_tree;   /* exact/prefix lookup (location.c, built at init) */
    pt_http_core_loc_conf_t **regex_locations; /* NULL-terminated, config order; or NULL */
    pt_http_handler_cb      handler;       /* content handler set by proxy_pass, return, ... */
    pt_http_core_loc_conf_t *parent;       /* enclosing location, NULL at server level */
    const char             *file;          /* where the location starts */
    unsigned                line;

    /* Directives of the core module (UNSET until merged). */
    pt_str_t                root;          /* root / alias (full path when no vars) */
    size_t                  alias;         /* 0: root holds a root. Else an alias
                                            * replacing the first `alias` bytes of
                                            * the uri (the name length of the
                                            * location that set it, inherited as is
                                            * by nested ones, as nginx); SIZE_MAX in
                                            * a regex location: the whole uri */
    pt_http_cv_t           *root_cv;       /* root / alias with variables, else NULL */
    int64_t                 client_max_body_size;     /* 1m; 0 = no limit */
    int64_t                 client_body_buffer_size;  /* 16k */
    int64_t                 client_body_timeout;      /* 60s, ms */
    int                     client_body_in_file_only; /* PT_HTTP_BODY_FILE_* */
    int                     client_body_in_single_buffer;
    pt_str_t                client_body_temp_path;    /* client_body_temp */
    int64_t                 send_timeout;             /* 60s, ms */
    int64_t                 keepalive_timeout;        /* 75s, ms; 0 disables */
    int64_t                 keepalive_header;         /* s for "Keep-Alive: timeout=", -1 none */
    int64_t                 keepalive_requests;       /* 1000 */
    int64_t                 keepalive_time;           /* 1h, ms */
    int                     lingering_close;          /* PT_HTTP_LINGERING_*, on */
    int64_t                 lingering_time;           /* 30s, ms */
    int64_t                 lingering_timeout;        /* 5s, ms */
    int                     reset_timedout_connection;/* off */
    int64_t                 send_lowat;               /* 0 */
    int64_t                 postpone_output;          /* 1460 */
    int64_t                 sendfile_max_chunk;       /* 2m */
    int64_t                 output_buffers_num;       /* 2 */
    int64_t                 output_buffers_size;      /* 32k */
    int64_t                 directio;                 /* off = INT64_MAX */
    int                     aio;                      /* off (accepted) */
    int                     server_tokens;            /* PT_HTTP_SERVER_TOKENS_*, on */
    int                     tcp_nodelay;              /* on */
    int                     sendfile, tcp_nopush;     /* off, off (accepted) */
    int                     absolute_redirect;        /* on */
    int                     server_name_in_redirect;  /* off */
    int                     port_in_redirect;         /* on */
    int                     msie_padding, msie_refresh; /* on, off */
    int                     log_not_found, log_subrequest; /* on, off */
    int                     chunked_transfer_encoding;/* on */
    int                     recursive_error_pages;    /* off */
    int                     etag;                     /* on */
    int                     if_modified_since;        /* PT_HTTP_IMS_*, exact */
    int                     satisfy;                  /* PT_HTTP_SATISFY_*, all */
    int64_t                 auth_delay;               /* 0, ms */
    int64_t                 max_ranges;               /* -1 = unlimited (UNSET merges to it) */
    int64_t                 subrequest_output_buffer_size; /* 4k|8k */
    int                     disable_symlinks;         /* off (accepted) */
    int                     internal;                 /* "internal" */
    pt_array_t             *error_pages;   /* pt_http_error_page_t; NULL none */
    pt_http_types_t        *types;         /* types { } (inherited as a whole) */
    pt_str_t                default_type;  /* text/plain */
    int64_t                 types_hash_max_size, types_hash_bucket_size; /* 1024, 64 */
    pt_log_t               *error_log;     /* error_log at this level (inherited) */
    int64_t                 limit_rate, limit_rate_after;  /* 0, 0 */
    pt_http_cv_t           *limit_rate_cv, *limit_rate_after_cv; /* when given with variables */
    pt_array_t             *resolver;      /* pt_str_t arguments of "resolver", NULL none */
    int64_t                 resolver_timeout; /* 30s, ms */
};

/* ------------------------------------------------------------------------ */
/* Matching. */

/* The per-address conf of an accepted connection (looks at the local address
 * only when the listening socket serves several addresses). Never NULL for a
 * connection accepted on an HTTP listener. */
pt_http_addr_conf_t *pt_http_addr_conf_get(pt_conn_t *c);

/* Finds the server for host (lowercased, no port, no trailing dot; empty when
 * the request had no Host) among the servers of addr, in nginx's order: exact
 * name, longest "*.x" wildcard, longest "x.*" wildcard, first matching regex
 * (config order), else addr->default_server. A regex match stores its captures
 * in r when r != NULL (r == NULL from the TLS SNI callback). Never NULL. */
pt_http_core_srv_conf_t *pt_http_find_server(const pt_http_addr_conf_t *addr,
                                             const pt_str_t *host, pt_http_request_t *r);

/* Finds the location for r->uri in the server's tree (r->srv_conf must be
 * set) and sets r->loc_conf (the server-level confs when nothing matches).
 * Allocates nothing. Returns PT_OK; PT_ERROR (regex failure); or 301 when the
 * matching location has auto_redirect and r->uri is its name without the
 * trailing slash: the caller answers 301 with
 *   Location: <r->uri>/   (+ "?" r->args when r->args.len)
 * (relative or absolute per absolute_redirect, like any redirect). */
int pt_http_find_location(pt_http_request_t *r);

/* The FIND_CONFIG step: pt_http_find_location, then nginx's checks: an
 * `internal` location on a non-internal request -> 404; Content-Length above
 * client_max_body_size -> 413 (logged "client intended to send too large
 * body"); keepalive_timeout 0 -> r->keepalive = 0; the connection log takes the
 * location's error_log. Returns PT_OK (continue with the next step), 301
 * (auto redirect, see above), 404, 413 or 500 (finalize with it). */
int pt_http_core_find_config(pt_http_request_t *r);

/* Named location "@name" of r's server, or NULL. */
pt_http_core_loc_conf_t *pt_http_find_named_location(pt_http_core_srv_conf_t *cscf,
                                                     const pt_str_t *name);

/* Sets r->headers_out.content_type from r->exten via the location's types
 * (case-insensitive), default_type otherwise. */
void pt_http_set_content_type(pt_http_request_t *r);

/* ------------------------------------------------------------------------ */
/* Config-time helpers for other modules. */

/* For pseudo-locations (if { } in the rewrite module, limit_except): creates
 * every module's loc conf, marks the core one noname, links it under the
 * current location (it is merged with it but never matched) and returns it;
 * the caller sets cf->http_ctx->loc_conf / cf->ctx and parses the block.
 * Returns the new confs array (loc_conf) or NULL (logged). */
void **pt_http_core_create_noname_location(pt_conf_t *cf);

/* Server names (server_name.c). Builds the lookup structure for the servers
 * of one address (pt_http_core_srv_conf_t * each); logs nginx's warnings
 * ("conflicting server name ... ignored") and errors. Returns 0 or -1;
 * *out is NULL when no lookup is needed. */
int pt_http_server_names_build(pt_conf_t *cf, pt_http_core_srv_conf_t **servers,
                               unsigned nservers, const char *addr_text,
                               pt_http_virtual_names_t **out);

/* Location trees (location.c): checks and sorts the locations of a server (and
 * recursively of nested ones), fills static_tree / regex_locations /
 * named_locations. Returns 0 or -1 (logged). */
int pt_http_locations_init(pt_conf_t *cf, pt_http_core_srv_conf_t *cscf,
                           pt_http_core_loc_conf_t *clcf);

#endif
