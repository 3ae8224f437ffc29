/* The request object, the same for HTTP/1.1 and HTTP/2 streams: handlers and
 * filters never know which protocol the client spoke. The protocol layer
 * (h1_conn.c, later h2_conn.c) fills headers_in, runs the phases and supplies
 * the proto ops that put the response on the wire. */
#ifndef PT_HTTP_REQUEST_H
#define PT_HTTP_REQUEST_H

#include <stdint.h>
#include <time.h>
#include "../core/array.h"
#include "../core/buf.h"
#include "../core/loop.h"
#include "../core/pool.h"
#include "../core/str.h"
#include "../config/conf.h"
#include "../net/conn.h"

typedef struct pt_http_request_s pt_http_request_t;

/* Handler return codes. Any value >= 100 is an HTTP status: the request is
 * finalized with that status (special response page unless already sent). */
#define PT_OK        0
#define PT_ERROR    -1
#define PT_AGAIN    -2     /* suspended: something will resume the request */
#define PT_BUSY     -3
#define PT_DONE     -4     /* handled, nothing more to do in this phase chain */
#define PT_DECLINED -5     /* not mine: next handler */

/* Methods (bit mask, for limit_except and proxy_next_upstream). */
enum {
    PT_HTTP_UNKNOWN = 0x0001, PT_HTTP_GET = 0x0002, PT_HTTP_HEAD = 0x0004,
    PT_HTTP_POST = 0x0008, PT_HTTP_PUT = 0x0010, PT_HTTP_DELETE = 0x0020,
    PT_HTTP_OPTIONS = 0x0040, PT_HTTP_PATCH = 0x0080, PT_HTTP_CONNECT = 0x0100,
    PT_HTTP_TRACE = 0x0200
};

typedef struct {
    pt_str_t name;
    pt_str_t value;
    uint32_t hash;          /* pt_hash_lower(name) */
    unsigned deleted:1;     /* removed by a filter (skip when serialising) */
} pt_http_header_t;

typedef struct {
    pt_array_t        list;            /* pt_http_header_t, in arrival order;
                                        * built once with its final size: never
                                        * push to it (the pointers below point
                                        * into it) */
    /* Direct pointers into list for headers the core interprets. */
    pt_http_header_t *host;
    pt_http_header_t *connection;
    pt_http_header_t *content_length;
    pt_http_header_t *transfer_encoding;
    pt_http_header_t *upgrade;
    pt_http_header_t *expect;
    pt_http_header_t *user_agent;
    pt_http_header_t *referer;
    pt_http_header_t *x_forwarded_for; /* first one */
    pt_http_header_t *accept_encoding;
    pt_http_header_t *if_modified_since;
    pt_http_header_t *authorization;
    pt_str_t          server;          /* host name, lowercased, no port/dot */
    int64_t           content_length_n;/* -1 when absent */
    unsigned          chunked:1;
    unsigned          connection_close:1;
    unsigned          connection_keep_alive:1;
    unsigned          connection_upgrade:1;
    unsigned          expect_continue:1;
} pt_http_headers_in_t;

typedef struct {
    pt_array_t        list;            /* pt_http_header_t set by handlers/filters */
    int               status;
    pt_str_t          status_line;     /* optional reason override ("200 OK") */
    int64_t           content_length_n;/* -1 unknown: chunked (h1) or END_STREAM (h2) */
    pt_str_t          content_type;
    /* Standalone headers (allocated from r->pool, NOT elements of list: an
     * array moves when it grows). The writer serialises them itself. */
    pt_http_header_t *location;        /* relative values are made absolute
                                        * per absolute_redirect */
    pt_http_header_t *server;          /* from upstream; NULL: ours (server_tokens) */
    pt_http_header_t *date;            /* from upstream; NULL: ours */
    time_t            last_modified_time; /* -1 none */
} pt_http_headers_out_t;

/* Phases, nginx's names and order. */
typedef enum {
    PT_HTTP_POST_READ_PHASE = 0,
    PT_HTTP_SERVER_REWRITE_PHASE,
    PT_HTTP_FIND_CONFIG_PHASE,
    PT_HTTP_REWRITE_PHASE,
    PT_HTTP_POST_REWRITE_PHASE,
    PT_HTTP_PREACCESS_PHASE,
    PT_HTTP_ACCESS_PHASE,
    PT_HTTP_POST_ACCESS_PHASE,
    PT_HTTP_PRECONTENT_PHASE,
    PT_HTTP_CONTENT_PHASE,
    PT_HTTP_LOG_PHASE,
    PT_HTTP_PHASES_N
} pt_http_phase_e;

typedef int (*pt_http_handler_cb)(pt_http_request_t *r);
typedef void (*pt_http_event_cb)(pt_http_request_t *r);

/* Protocol operations supplied by h1_conn.c / h2_conn.c. */
typedef struct {
    /* Serialises r->headers_out (status line or HEADERS frame). PT_OK/PT_ERROR. */
    int  (*send_header)(pt_http_request_t *r);
    /* Queues a chain of body buffers (ownership passes to the writer, which
     * pt_buf_put()s each buffer once written). Returns PT_OK when everything
     * was written, PT_AGAIN when some is still queued (r->write_event_handler
     * runs when the queue drains below the low-water mark), PT_ERROR when the
     * client is gone. A buffer with last_buf ends the response. */
    int  (*send_body)(pt_http_request_t *r, pt_buf_t *chain);
    /* Bytes queued but not yet written (backpressure for producers). */
    size_t (*pending)(pt_http_request_t *r);
    /* Reads request body bytes into b: >0 bytes, 0 at end of body, PT_AGAIN,
     * PT_ERROR (client gone / bad framing, status in *status). */
    ssize_t (*read_body)(pt_http_request_t *r, char *buf, size_t size, int *status);
    /* The handler will not read the body: read and drop it (in the
     * background, bounded) so the connection can be kept alive. PT_OK, or a
     * status to answer with (400: the body already received is malformed). */
    int  (*discard_body)(pt_http_request_t *r);
    /* Request is done (after LOG phase): keep-alive or close. */
    void (*finalize)(pt_http_request_t *r);
    /* For Upgrade tunnels: hands the raw client connection to the caller
     * (h1 only; NULL for h2). Unread bytes already buffered are returned. */
    pt_conn_t *(*detach)(pt_http_request_t *r, pt_buf_t **preread);
} pt_http_proto_t;

typedef struct pt_http_core_srv_conf_s pt_http_core_srv_conf_t;
typedef struct pt_http_core_loc_conf_s pt_http_core_loc_conf_t;

struct pt_http_request_s {
    pt_pool_t              *pool;
    pt_conn_t              *connection;
    const pt_http_proto_t  *proto;
    void                   *proto_data;   /* h1 conn / h2 stream */

    void                  **main_conf;    /* http ctx arrays, indexed by module */
    void                  **srv_conf;
    void                  **loc_conf;

    /* Request line. All pt_str_t below point into request memory that lives
     * as long as the request. */
    pt_str_t                request_line;
    pt_str_t                method_name;
    unsigned                method;        /* PT_HTTP_* */
    unsigned                http_version;  /* 9, 10, 11, 20 (x10) */
    pt_str_t                http_protocol; /* "HTTP/1.1" */
    pt_str_t                unparsed_uri;  /* raw target as sent ($request_uri) */
    pt_str_t                uri;           /* decoded, normalised path ($uri) */
    pt_str_t                args;          /* after '?' ($args) */
    pt_str_t                exten;         /* extension of uri */
    pt_str_t                schema;        /* absolute-form target's scheme */
    pt_str_t                host_in_target;/* absolute-form target's host */

    pt_http_headers_in_t    headers_in;
    pt_http_headers_out_t   headers_out;

    /* Phase engine. */
    int                     phase_handler; /* index into the flattened handler list */
    pt_http_event_cb        read_event_handler;   /* client readable (body, eof) */
    pt_http_event_cb        write_event_handler;  /* client writable again */

    /* Variables: values cached per request (indexed variables, set, map). */
    void                   *variables;     /* pt_http_var_value_t[nvars] */
    /* Regex captures of the last successful match ($1..$9, named). */
    int                    *captures;      /* ovector pairs */
    int                     ncaptures;     /* number of pairs */
    const char             *captures_data; /* subject the offsets refer to */

    void                  **ctx;           /* per module request context */
    void                   *upstream;      /* pt_upstream_t when proxying */

    int64_t                 start_msec;    /* pt_time_msec at the first byte */
    int64_t                 request_length;/* header + body bytes received */
    int64_t                 bytes_sent;    /* all bytes written to the client */
    int64_t                 body_bytes_sent;
    int64_t                 header_size;   /* bytes of the response header sent */
    int                     err_status;    /* status being sent by a special response */
    int                     access_code;   /* satisfy any: 401/403 remembered by ACCESS */
    unsigned                uri_changes;   /* rewrite cycles left (10) */
    unsigned                count;         /* references (suspended subsystems) */
    char                    request_id[33];/* $request_id, lazily filled */

    unsigned                internal:1;    /* after an internal redirect */
    unsigned                uri_changed:1; /* rewrite changed uri: find config again */
    unsigned                uri_rewritten_here:1; /* `rewrite ... break` changed uri in this
                                                   * location: proxy_pass drops its URI part */
    unsigned                header_sent:1;
    unsigned                header_only:1; /* HEAD, 204, 304 */
    unsigned                keepalive:1;
    unsigned                lingering_close:1;
    unsigned                discard_body:1;
    unsigned                body_read:1;   /* request body fully consumed */
    unsigned                error_page:1;  /* inside error_page handling */
    unsigned                done:1;
    unsigned                logged:1;
    unsigned                plain_http:1;  /* plain HTTP on a TLS port */
    unsigned                tunnel:1;      /* upgraded (WebSocket) */
    unsigned                expect_tested:1; /* 100-continue decided (sent or not) */
    unsigned                aborted:1;     /* terminated: close at once, queued output dropped */
    /* Outcome of limit_req / limit_conn (0: not checked yet; the values are
     * the modules' own). Kept across internal redirects (not in ctx), so a
     * request is limited once, as nginx's r->main->limit_*_status. */
    unsigned                limit_req_status:3;
    unsigned                limit_conn_status:2;
    /* limit_rate (src/http/limit_rate.c): response bytes per second, 0 no
     * limit; taken from the location at the first write unless `set
     * $limit_rate` or X-Accel-Limit-Rate set it first (limit_rate_set). */
    unsigned                limit_rate_set:1;
    unsigned                limit_rate_after_set:1;
    unsigned                limit_rate_started:1;
    int64_t                 limit_rate;
    int64_t                 limit_rate_after;
    int64_t                 limit_rate_start;  /* pt_current_msec of the first write */
};

/* Request helpers (request.c). */
pt_http_header_t *pt_http_header_find(pt_array_t *list, const char *name, size_t len);
/* Adds a header to r->headers_out.list (name/value copied into r->pool).
 * Returns the header or NULL on allocation failure. */
pt_http_header_t *pt_http_header_add(pt_http_request_t *r, pt_array_t *list,
                                     const char *name, size_t nlen,
                                     const char *value, size_t vlen);

/* Runs the phase handlers from r->phase_handler on. Called by the protocol
 * layer once headers are complete and by anything resuming a request that
 * returned PT_AGAIN. */
void pt_http_core_run_phases(pt_http_request_t *r);
/* Ends the request with rc:
 *   PT_OK                the response is complete (the last buffer was
 *                        passed to pt_http_output, or header_only);
 *   PT_AGAIN, PT_DONE    nothing now: someone else (an async handler, an
 *                        internal redirect that already ran) finalizes later;
 *   PT_ERROR, 408, 444, 499  terminate: close the connection, no response
 *                        (nginx's behaviour for these);
 *   a status >= 100      special response (error page, error_page, redirect
 *                        page) unless the header was sent; a status >= 300
 *                        after the header was sent closes the connection.
 * Calls r->proto->finalize exactly once. The LOG phase runs once, when the
 * response has been written out (pt_http_log_request, from the protocol
 * layer). After this call r may be freed at the end of the current loop
 * iteration: the caller must not use r from another event. */
void pt_http_finalize_request(pt_http_request_t *r, int rc);
/* Runs the LOG phase handlers once (idempotent); sets body_bytes_sent.
 * Called by the protocol layer when the response is over. */
void pt_http_log_request(pt_http_request_t *r);
/* Internal redirect to uri (+args) restarting at SERVER_REWRITE (uri) or the
 * location's REWRITE (named); the phases run again at once (nested). Returns
 * PT_DONE (the caller stops and returns PT_DONE) or an error status to
 * finalize with (500: redirection cycle or unknown named location). */
int  pt_http_internal_redirect(pt_http_request_t *r, const pt_str_t *uri, const pt_str_t *args);
int  pt_http_named_location(pt_http_request_t *r, const pt_str_t *name);

/* Called by handlers that answer without reading the request body (the
 * return and special responses do it themselves, as nginx): returns PT_OK or
 * a status to finalize with (400 malformed body). */
int  pt_http_discard_request_body(pt_http_request_t *r);

/* Response output, through the filter chains. */
int  pt_http_send_header(pt_http_request_t *r);
int  pt_http_output(pt_http_request_t *r, pt_buf_t *chain);
/* Sends a complete small response (status, content type, body copied).
 * ctype NULL: the type of r->exten or default_type (as nginx's `return`).
 * A redirect status (301..308 but 304) takes body as the Location and returns
 * the status (finalize with it to send the redirect page). Returns PT_OK
 * when the whole response is queued (finalize with PT_OK), PT_ERROR, or the
 * redirect status. */
int  pt_http_send_response(pt_http_request_t *r, int status, const pt_str_t *ctype,
                           const pt_str_t *body);
/* Builds nginx's HTML error page for status (or uses error_page). Returns
 * what to finalize with: PT_OK (page queued), PT_DONE (error_page redirected
 * internally), PT_ERROR, or a status (500 on a redirection cycle). */
int  pt_http_special_response(pt_http_request_t *r, int status);
/* "404 Not Found" for a status line; NULL when there is no reason phrase. */
const pt_str_t *pt_http_status_line(int status);

/* Validates a Host value (header or absolute-form target) as nginx does and
 * normalises it in place: lowercase (copied into pool only when needed), no
 * ":port", no trailing dot. Rejects empty names, "..", '/', '\\', NUL, CTLs,
 * whitespace and malformed "[ipv6]" literals. Returns 0 or -1 (400). */
int  pt_http_validate_host(pt_str_t *host, pt_pool_t *pool);
/* Checks a request's Transfer-Encoding value (RFC 9112 §6.1): 0 = exactly
 * "chunked" (any case); 400 = chunked is not the final coding or is applied
 * twice ("chunked, chunked", "chunked, gzip", empty elements); 501 = a coding
 * we do not implement ("gzip", "gzip, chunked"), as nginx. */
int  pt_http_check_transfer_encoding(const pt_str_t *te);

/* Filters: nginx's pattern. A filter module saves the current top in a static
 * `next` pointer in its postconfiguration and installs itself as the top. The
 * bottom filters are the protocol writer (r->proto). */
typedef int (*pt_http_header_filter_cb)(pt_http_request_t *r);
typedef int (*pt_http_body_filter_cb)(pt_http_request_t *r, pt_buf_t *chain);
extern pt_http_header_filter_cb pt_http_top_header_filter;
extern pt_http_body_filter_cb   pt_http_top_body_filter;
/* Resets both tops to the protocol writer. The http block calls it before
 * the modules' postconfiguration (each config load, so a reload does not
 * chain filters onto the previous cycle's). */
void pt_http_filters_reset(void);

/* Registers a phase handler (postconfiguration). Returns 0 or -1. */
int pt_http_phase_add(pt_conf_t *cf, pt_http_phase_e phase, pt_http_handler_cb h);

/* Per-module conf/ctx access. */
#define pt_http_get_module_main_conf(r, m) ((r)->main_conf[(m).index])
#define pt_http_get_module_srv_conf(r, m)  ((r)->srv_conf[(m).index])
#define pt_http_get_module_loc_conf(r, m)  ((r)->loc_conf[(m).index])
#define pt_http_get_module_ctx(r, m)       ((r)->ctx[(m).index])
#define pt_http_set_ctx(r, c, m)           ((r)->ctx[(m).index] = (c))

#endif
