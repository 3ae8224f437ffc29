/* Upstreams: groups of backend servers (upstream { } blocks and the implicit
 * groups proxy_pass creates for "http://host:port"), the balancer interface,
 * the per-worker keep-alive pool and the per-request state machine that talks
 * HTTP/1.x to a backend (connect, send the request and its body, read and
 * parse the response head, relay the body with backpressure, tunnel).
 *
 * Ownership: groups and peers are config memory (written only by the master
 * at config time, except the per-worker balancer counters in peers, which
 * each worker owns after the fork). A pt_upstream_t lives in r->pool; the
 * upstream connection is owned by it until it is closed or given to the pool.
 *
 * Owner: proxy engineer (src/proxy/). */
#ifndef PT_PROXY_UPSTREAM_H
#define PT_PROXY_UPSTREAM_H

#include <stdint.h>
#include <sys/uio.h>
#include "../config/conf.h"
#include "../core/buf.h"
#include "../http/h1_parse.h"
#include "../http/request.h"
#include "../net/conn.h"
#include "../tls/tls.h"

typedef struct pt_upstream_s        pt_upstream_t;
typedef struct pt_upstream_group_s  pt_upstream_group_t;
typedef struct pt_upstream_peer_s   pt_upstream_peer_t;

/* One address of a server line ("server app.local:8080" may give several). */
struct pt_upstream_peer_s {
    pt_sockaddr_t       sockaddr;
    socklen_t           socklen;
    pt_str_t            name;            /* "127.0.0.1:8080", "unix:/p" ($upstream_addr) */
    pt_str_t            server;          /* the server line's address as written */
    int                 weight;
    /* balancer state (per worker after fork) */
    int                 effective_weight;
    int                 current_weight;
    unsigned            conns;
    unsigned            max_conns;       /* 0: no limit */
    unsigned            max_fails;       /* 1 default; 0: never marked failed */
    int64_t             fail_timeout;    /* ms, 10s */
    unsigned            fails;
    int64_t             accessed;        /* pt_current_msec of the last failure */
    int64_t             checked;
    unsigned            down:1;          /* "down" parameter */
    pt_upstream_peer_t *next;
    /* Issue 4 (balancers, zone, health checks, resolver, API): */
    int64_t             slow_start;      /* ms, 0: none */
    int64_t             start_time;      /* when it became usable again (slow_start) */
    unsigned            id;              /* API id, unique within the group */
    unsigned            hc_fails;        /* consecutive failed active checks */
    unsigned            hc_passes;       /* consecutive passed active checks */
    uint64_t            requests;        /* counters for the API */
    uint64_t            failures;
    unsigned            unhealthy:1;     /* failed its active health checks */
    unsigned            drain:1;         /* API: no new requests */
    unsigned            removed:1;       /* API/resolver: slot free once conns == 0 */
    unsigned            resolved:1;      /* made by a "resolve" server line */
    unsigned            checking:1;      /* health_check mandatory: no verdict yet */
};

/* A set of peers: the primary ones, and the backup ones as a second set. */
typedef struct pt_upstream_peers_s {
    pt_upstream_peer_t         *peer;    /* array */
    unsigned                    number;
    int                         total_weight;
    unsigned                    single:1;     /* one peer, no backups */
    unsigned                    weighted:1;
    struct pt_upstream_peers_s *next;    /* backup peers or NULL */
} pt_upstream_peers_t;

/* A server line as written (kept for balancers that need it). */
typedef struct {
    pt_str_t  addr;
    int       weight;
    unsigned  max_fails;
    int64_t   fail_timeout;
    unsigned  max_conns;
    unsigned  backup:1;
    unsigned  down:1;
    unsigned  resolve:1;          /* issue 4: re-resolved at runtime (resolver.c) */
    int64_t   slow_start;         /* issue 4: ms, 0 none */
} pt_upstream_server_t;

/* Free-peer states. */
enum { PT_UPSTREAM_PEER_OK = 0, PT_UPSTREAM_PEER_FAILED = 1 };

/* The balancer interface: one file per method (balancer_rr.c is the default;
 * least_conn, ip_hash, hash, random come in their own files). A method sets
 * group->balancer from its directive's setter; init_group runs once at the
 * end of the http { } block (after the peers are built).
 *   init_peer  per request: allocates its state in r->pool (u->peer_data).
 *   get_peer   picks a peer: sets u->peer, returns PT_OK, or PT_BUSY when no
 *              live peer is left ("no live upstreams").
 *   free_peer  after each try: state OK or FAILED (passive health). */
typedef struct {
    const char *name;
    int  (*init_group)(pt_conf_t *cf, pt_upstream_group_t *g);
    int  (*init_peer)(pt_http_request_t *r, pt_upstream_t *u);
    int  (*get_peer)(pt_upstream_t *u);
    void (*free_peer)(pt_upstream_t *u, int state);
} pt_upstream_balancer_t;

extern const pt_upstream_balancer_t pt_upstream_balancer_rr;

struct pt_upstream_group_s {
    pt_str_t                      name;        /* "backend" or "127.0.0.1:3000" */
    const char                   *file;
    unsigned                      line;
    in_port_t                     port;        /* implicit groups: the port */
    pt_array_t                    servers;     /* pt_upstream_server_t */
    pt_upstream_peers_t          *peers;
    const pt_upstream_balancer_t *balancer;
    void                         *balancer_conf;
    /* keepalive (0: no pool) */
    unsigned                      keepalive;
    int64_t                       keepalive_requests;  /* 1000 */
    int64_t                       keepalive_time;      /* 1h, ms */
    int64_t                       keepalive_timeout;   /* 60s, ms */
    void                         *pool;        /* per worker: connpool.c */
    struct pt_upstream_ext_s     *ext;         /* issue 4: zone, health check, resolver
                                                * (src/proxy/balancer.h), NULL when none */
    unsigned                      implicit:1;  /* made by proxy_pass */
    unsigned                      defined:1;   /* upstream { } seen */
    unsigned                      unix_socket:1;
};

/* The upstream module's main conf. */
typedef struct {
    pt_array_t groups;                          /* pt_upstream_group_t * */
} pt_upstream_main_conf_t;

extern pt_module_t pt_http_upstream_module;

/* Config time: finds or creates the group for proxy_pass's host part
 * ("backend", "127.0.0.1:3000", "unix:/p.sock"). A name with an explicit port
 * or a unix path is an implicit group (resolved now, with getaddrinfo);
 * a bare name may refer to an upstream { } defined later; at the end of
 * http { } a name that is no upstream block is resolved as a host with
 * default_port. Returns NULL (logged) on error. */
pt_upstream_group_t *pt_upstream_group_add(pt_conf_t *cf, const pt_str_t *host,
                                           in_port_t default_port, int has_port);

/* Request time (proxy_pass with variables): a one-peer group in pool for an
 * address literal ("127.0.0.1:8080", "[::1]:80", "unix:/p"); NULL when host
 * is a name (that would need a resolver). */
pt_upstream_group_t *pt_upstream_group_literal(pt_pool_t *pool, const pt_str_t *host,
                                               in_port_t default_port);

/* proxy_next_upstream bits. */
#define PT_UPSTREAM_FT_ERROR          0x0002
#define PT_UPSTREAM_FT_TIMEOUT        0x0004
#define PT_UPSTREAM_FT_INVALID_HEADER 0x0008
#define PT_UPSTREAM_FT_HTTP_500       0x0010
#define PT_UPSTREAM_FT_HTTP_502       0x0020
#define PT_UPSTREAM_FT_HTTP_503       0x0040
#define PT_UPSTREAM_FT_HTTP_504       0x0080
#define PT_UPSTREAM_FT_HTTP_403       0x0100
#define PT_UPSTREAM_FT_HTTP_404       0x0200
#define PT_UPSTREAM_FT_HTTP_429       0x0400
#define PT_UPSTREAM_FT_NON_IDEMPOTENT 0x1000
#define PT_UPSTREAM_FT_OFF            0x8000

/* The request-independent settings the state machine needs (filled by the
 * proxy module's loc conf). */
typedef struct {
    int64_t  connect_timeout;     /* ms */
    int64_t  send_timeout;
    int64_t  read_timeout;
    int64_t  buffer_size;         /* response head buffer */
    int64_t  bufs_num;            /* proxy_buffers */
    int64_t  bufs_size;
    int64_t  busy_buffers_size;
    int64_t  max_temp_file_size;
    int      buffering;
    int      request_buffering;
    int      intercept_errors;
    unsigned next_upstream;       /* PT_UPSTREAM_FT_* */
    int64_t  next_upstream_tries; /* 0: unlimited */
    int64_t  next_upstream_timeout;
    int      ignore_client_abort;  /* proxy_ignore_client_abort */
} pt_upstream_conf_t;

/* One try, for $upstream_* (several tries are joined with ", "). */
typedef struct {
    pt_str_t addr;
    int      status;              /* 0 until a head arrived (502/504 set on failure) */
    int64_t  connect_time;        /* ms, -1 unknown */
    int64_t  header_time;
    int64_t  response_time;
    int64_t  bytes_received;
    int64_t  start;               /* pt_current_msec at the start of the try */
} pt_upstream_state_t;

typedef struct {
    pt_array_t headers;           /* pt_http_header_t of the response head */
    int        status;
    int64_t    content_length_n;  /* -1 none */
    unsigned   chunked:1;
    unsigned   connection_close:1;
    unsigned   keep_alive:1;
} pt_upstream_headers_in_t;

/* Per-request state. Allocated by pt_upstream_create in r->pool. */
struct pt_upstream_s {
    pt_http_request_t        *r;
    const pt_upstream_conf_t *conf;
    pt_upstream_group_t      *group;
    void                     *peer_data;       /* balancer state */
    pt_upstream_peer_t       *peer;            /* chosen by get_peer */
    unsigned                  tries;           /* balancer: tries left */
    pt_conn_t                *c;               /* upstream connection */
    int64_t                   conn_created;    /* for keepalive_time */

    /* The request head, built once by the protocol module (proxy.c). */
    pt_str_t                  request_head;
    size_t                    head_sent;       /* bytes of it written this try */
    /* Request body. */
    unsigned                  body_mode;       /* PT_UPSTREAM_BODY_* */
    pt_buf_t                 *body;            /* buffered (replayable) body chain */
    pt_buf_t                 *body_out;        /* next buffer of body to write */
    int                       body_fd;         /* buffered body spilled to a file, -1 */
    int64_t                   body_file_size;
    int64_t                   body_file_sent;
    pt_buf_t                 *stream_buf;      /* streaming: bytes read from the
                                                * client not yet written */
    int64_t                   body_left;       /* streaming CL: bytes still to read */
    unsigned                  chunked_out:1;   /* re-chunk the body upstream */
    unsigned                  stream_slow:1;   /* streaming: the last write to the
                                                * backend did not take it all */

    /* Response. */
    pt_buf_t                 *head_buf;        /* proxy_buffer_size */
    pt_upstream_headers_in_t  headers_in;
    pt_h1_chunked_t           chunked;
    int64_t                   length;          /* body bytes left (CL), -1 until close */
    unsigned                  out_bufs;        /* buffers handed to the writer
                                                * still not released */
    pt_upstream_state_t      *state;           /* current try */
    pt_array_t                states;          /* pt_upstream_state_t */
    int64_t                   start_msec;      /* first try (next_upstream_timeout) */

    /* The parsed head (valid during process_header only; the strings of
     * headers_in.headers are copies in r->pool and live on). */
    pt_h1_response_t         *res;
    int64_t                   body_len;        /* buffered body: total bytes */
    /* proxy_buffering on: what the client cannot take yet is spooled to an
     * unlinked temp file (up to proxy_max_temp_file_size), so a slow client
     * does not hold the backend. */
    int                       spool_fd;        /* -1 none */
    int64_t                   spool_w, spool_r;/* write / read offsets */

    /* Hooks supplied by the protocol module. */
    /* Builds u->request_head (called once, when the body mode is known and a
     * buffered body is complete). PT_OK or PT_ERROR. */
    int  (*create_request)(pt_upstream_t *u);
    /* Copies the parsed head into r->headers_out. Returns PT_OK, or a status
     * to finalize with (502 malformed; an intercepted error status). */
    int  (*process_header)(pt_upstream_t *u);

    void                     *tunnel;          /* tunnel.c state */

    /* TLS to the backend (proxy_pass https://): set by the protocol module
     * before pt_upstream_start. ssl: the location's proxy_ssl_* settings,
     * NULL for plain HTTP;
     * ssl_host: the name for SNI and certificate checks when proxy_ssl_name
     * is not set (proxy_pass's host, a ":port" is ignored). */
    pt_tls_upstream_conf_t   *ssl;
    pt_str_t                  ssl_host;

    unsigned                  body_sent:1;     /* whole request body written */
    unsigned                  request_sent:1;  /* every request byte written */
    unsigned                  any_sent:1;      /* some byte written this try */
    unsigned                  header_done:1;   /* response head processed */
    unsigned                  body_done:1;     /* response complete */
    unsigned                  no_body:1;       /* HEAD / 204 / 304 */
    unsigned                  until_close:1;   /* close-delimited body */
    unsigned                  keepalive:1;     /* connection may be pooled */
    unsigned                  reused:1;        /* connection came from the pool */
    unsigned                  upgrade:1;       /* 101: tunnel */
    unsigned                  client_wait:1;   /* waiting for the client writer */
    unsigned                  body_wait:1;     /* waiting for client body bytes */
    unsigned                  finished:1;      /* finalized, only logging left */
    unsigned                  buffering:1;     /* proxy_buffering for this request */
    unsigned                  connected:1;
    unsigned                  interim:1;       /* skipping a 1xx head */
    unsigned                  ka_request:1;    /* the request allows keep-alive
                                                * (HTTP/1.1, no Connection: close) */
    unsigned                  no_pool:1;       /* next connect: a fresh connection */
    unsigned                  upgrade_request:1; /* Upgrade was sent upstream */
    unsigned                  abort_reported:1;
    unsigned                  failed:1;        /* the peer failed (passive health) */
    unsigned                  stream_started:1;/* body bytes taken from the client */
    unsigned                  stream_eof:1;    /* the client's body has ended */
    unsigned                  tunnel_wait:1;   /* 101 head queued, waiting to flush */
    unsigned                  spooling:1;      /* new body bytes go to the spool */
    unsigned                  spool_full:1;    /* spool at its limit: backend not read */
    unsigned                  upstream_done:1; /* backend side released (peer, connection) */
};

enum {
    PT_UPSTREAM_BODY_NONE = 0,    /* no request body */
    PT_UPSTREAM_BODY_BUFFERED,    /* read whole before connecting (replayable) */
    PT_UPSTREAM_BODY_STREAM       /* read from the client while sending */
};

/* Creates u for r (r->upstream = u). NULL on allocation failure. */
pt_upstream_t *pt_upstream_create(pt_http_request_t *r, const pt_upstream_conf_t *conf,
                                  pt_upstream_group_t *group);
/* Starts the exchange: reads a buffered body first when needed, then
 * connects. Returns what the content handler returns (PT_DONE: in progress;
 * or a status/PT_ERROR to finalize with). */
int  pt_upstream_start(pt_upstream_t *u);
/* Registers $upstream_* variables (preconfiguration of the proxy module). */
int  pt_upstream_add_variables(pt_conf_t *cf);

/* Keep-alive pool (connpool.c). get: an idle connection to peer, or NULL;
 * the connection's handlers are reset to the caller's (no epoll_ctl). put:
 * keeps c if the pool has room (else closes the oldest). */
pt_conn_t *pt_upstream_keepalive_get(pt_upstream_group_t *g, pt_upstream_peer_t *peer,
                                     int64_t *created, uint64_t *requests);
void pt_upstream_keepalive_put(pt_upstream_group_t *g, pt_upstream_peer_t *peer,
                               pt_conn_t *c, int64_t created);
/* Closes every idle connection of this worker (exit). */
void pt_upstream_keepalive_close_all(void);

/* Tunnel (tunnel.c): after a 101, moves bytes both ways until one side
 * closes or an idle timeout. Takes over the upstream connection uc (no longer
 * in u->c) and the detached client connection; when the tunnel ends it
 * closes both and finalizes the request (pt__upstream_finalize, PT_OK), so
 * the access log line carries the tunnel's duration and bytes. Returns PT_OK,
 * or PT_ERROR when nothing started (the caller closes and finalizes). */
int  pt_upstream_tunnel_start(pt_upstream_t *u, pt_conn_t *uc, pt_conn_t *client,
                              pt_buf_t *client_preread, pt_buf_t *upstream_preread);

/* Internal (upstream.c <-> proxy.c / tunnel.c). */
void pt__upstream_finalize(pt_upstream_t *u, int rc);

#endif
