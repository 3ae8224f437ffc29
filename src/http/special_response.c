/* Special responses: the HTML pages sent for error and redirect statuses,
 * error_page handling, and the status-line reason table.
 *
 * The page layout follows nginx's (clients and monitoring scripts match on
 * it) with our product name in the signature line. */
#include <string.h>

#include "core.h"
#include "request.h"

#define CRLF "\r\n"

/* ------------------------------------------------------------------------ */
/* Status lines                                                              */

#define SL(s) { sizeof(s) - 1, (char *) (s) }
#define SL_NONE { 0, NULL }

static const pt_str_t status_1xx[] = {
    SL("100 Continue"), SL("101 Switching Protocols"), SL_NONE, SL("103 Early Hints"),
};

static const pt_str_t status_2xx[] = {
    SL("200 OK"), SL("201 Created"), SL("202 Accepted"), SL_NONE,
    SL("204 No Content"), SL_NONE, SL("206 Partial Content"),
};

static const pt_str_t status_3xx[] = {
    SL_NONE, SL("301 Moved Permanently"), SL("302 Moved Temporarily"),
    SL("303 See Other"), SL("304 Not Modified"), SL_NONE, SL_NONE,
    SL("307 Temporary Redirect"), SL("308 Permanent Redirect"),
};

static const pt_str_t status_4xx[] = {
    SL("400 Bad Request"), SL("401 Unauthorized"), SL("402 Payment Required"),
    SL("403 Forbidden"), SL("404 Not Found"), SL("405 Not Allowed"),
    SL("406 Not Acceptable"), SL_NONE, SL("408 Request Time-out"),
    SL("409 Conflict"), SL("410 Gone"), SL("411 Length Required"),
    SL("412 Precondition Failed"), SL("413 Request Entity Too Large"),
    SL("414 Request-URI Too Large"), SL("415 Unsupported Media Type"),
    SL("416 Requested Range Not Satisfiable"), SL_NONE, SL_NONE, SL_NONE, SL_NONE,
    SL("421 Misdirected Request"), SL("422 Unprocessable Entity"), SL("423 Locked"),
    SL("424 Failed Dependency"), SL_NONE, SL_NONE, SL_NONE, SL_NONE,
    SL("429 Too Many Requests"),
};

static const pt_str_t status_5xx[] = {
    SL("500 Internal Server Error"), SL("501 Not Implemented"), SL("502 Bad Gateway"),
    SL("503 Service Temporarily Unavailable"), SL("504 Gateway Time-out"),
    SL("505 HTTP Version Not Supported"), SL_NONE, SL("507 Insufficient Storage"),
};

#define NELTS(a) (sizeof(a) / sizeof((a)[0]))

const pt_str_t *pt_http_status_line(int status)
{
    const pt_str_t *t;
    size_t n;
    unsigned i;

    switch (status / 100) {
    case 1: t = status_1xx; n = NELTS(status_1xx); break;
    case 2: t = status_2xx; n = NELTS(status_2xx); break;
    case 3: t = status_3xx; n = NELTS(status_3xx); break;
    case 4: t = status_4xx; n = NELTS(status_4xx); break;
    case 5: t = status_5xx; n = NELTS(status_5xx); break;
    default: return NULL;
    }
    i = (unsigned) (status % 100);
    if (i >= n || t[i].len == 0)
        return NULL;
    return &t[i];
}

/* ------------------------------------------------------------------------ */
/* Pages                                                                     */

#define PAGE(title) \
    "<html>" CRLF "<head><title>" title "</title></head>" CRLF "<body>" CRLF \
    "<center><h1>" title "</h1></center>" CRLF
#define PAGE400(detail) \
    "<html>" CRLF "<head><title>400 " detail "</title></head>" CRLF "<body>" CRLF \
    "<center><h1>400 Bad Request</h1></center>" CRLF "<center>" detail "</center>" CRLF

typedef struct {
    int      status;
    pt_str_t page;
} page_t;

static const page_t pages[] = {
    { 301, SL(PAGE("301 Moved Permanently")) },
    { 302, SL(PAGE("302 Found")) },
    { 303, SL(PAGE("303 See Other")) },
    { 307, SL(PAGE("307 Temporary Redirect")) },
    { 308, SL(PAGE("308 Permanent Redirect")) },
    { 400, SL(PAGE("400 Bad Request")) },
    { 401, SL(PAGE("401 Authorization Required")) },
    { 402, SL(PAGE("402 Payment Required")) },
    { 403, SL(PAGE("403 Forbidden")) },
    { 404, SL(PAGE("404 Not Found")) },
    { 405, SL(PAGE("405 Not Allowed")) },
    { 406, SL(PAGE("406 Not Acceptable")) },
    { 408, SL(PAGE("408 Request Time-out")) },
    { 409, SL(PAGE("409 Conflict")) },
    { 410, SL(PAGE("410 Gone")) },
    { 411, SL(PAGE("411 Length Required")) },
    { 412, SL(PAGE("412 Precondition Failed")) },
    { 413, SL(PAGE("413 Request Entity Too Large")) },
    { 414, SL(PAGE("414 Request-URI Too Large")) },
    { 415, SL(PAGE("415 Unsupported Media Type")) },
    { 416, SL(PAGE("416 Requested Range Not Satisfiable")) },
    { 421, SL(PAGE("421 Misdirected Request")) },
    { 429, SL(PAGE("429 Too Many Requests")) },
    { 494, SL(PAGE400("Request Header Or Cookie Too Large")) },
    { 495, SL(PAGE400("The SSL certificate error")) },
    { 496, SL(PAGE400("No required SSL certificate was sent")) },
    { 497, SL(PAGE400("The plain HTTP request was sent to HTTPS port")) },
    { 500, SL(PAGE("500 Internal Server Error")) },
    { 501, SL(PAGE("501 Not Implemented")) },
    { 502, SL(PAGE("502 Bad Gateway")) },
    { 503, SL(PAGE("503 Service Temporarily Unavailable")) },
    { 504, SL(PAGE("504 Gateway Time-out")) },
    { 505, SL(PAGE("505 HTTP Version Not Supported")) },
    { 507, SL(PAGE("507 Insufficient Storage")) },
};

static const pt_str_t tail_tokens =
    SL("<hr><center>portico/" PT_VERSION "</center>" CRLF "</body>" CRLF "</html>" CRLF);
static const pt_str_t tail_plain =
    SL("<hr><center>portico</center>" CRLF "</body>" CRLF "</html>" CRLF);

static const pt_str_t *find_page(int status)
{
    for (size_t i = 0; i < NELTS(pages); i++)
        if (pages[i].status == status)
            return &pages[i].page;
    return NULL;
}

const pt_str_t *pt_http_error_page_text(int status)
{
    return find_page(status);
}

/* nginx closes the connection after these (the request may be garbage or
 * the client is misbehaving). */
static int status_kills_keepalive(int status)
{
    switch (status) {
    case 400: case 408: case 413: case 414: case 494: case 495: case 496:
    case 497: case 500: case 501:
        return 1;
    default:
        return 0;
    }
}

/* Sends the built-in page (or an empty body) for status. */
static int send_special(pt_http_request_t *r, int status)
{
    pt_http_core_loc_conf_t *clcf = pt_http_get_module_loc_conf(r, pt_http_core_module);
    const pt_str_t *page = find_page(status);
    const pt_str_t *tail = clcf->server_tokens ? &tail_tokens : &tail_plain;
    int wire = status, rc;
    pt_buf_t *b1, *b2;

    if (status >= 494 && status <= 497)
        wire = 400;                 /* nginx's internal codes go out as 400 */
    r->err_status = wire;
    r->headers_out.status = wire;
    r->headers_out.status_line.len = 0;
    r->headers_out.last_modified_time = -1;

    if (page != NULL) {
        pt_str_set(&r->headers_out.content_type, "text/html");
        r->headers_out.content_length_n = (int64_t) (page->len + tail->len);
    } else {
        r->headers_out.content_type.len = 0;
        r->headers_out.content_type.data = NULL;
        r->headers_out.content_length_n = 0;
    }

    rc = pt_http_send_header(r);
    if (rc == PT_ERROR)
        return PT_ERROR;
    if (r->header_only || page == NULL) {
        pt_buf_t *b = pt_buf_ref("", 0);
        if (b == NULL)
            return PT_ERROR;
        b->last_buf = 1;
        rc = pt_http_output(r, b);
        return rc == PT_ERROR ? PT_ERROR : PT_OK;
    }

    b1 = pt_buf_ref(page->data, page->len);
    b2 = pt_buf_ref(tail->data, tail->len);
    if (b1 == NULL || b2 == NULL) {
        pt_buf_put(b1);
        pt_buf_put(b2);
        return PT_ERROR;
    }
    b1->next = b2;
    b2->last_buf = 1;
    rc = pt_http_output(r, b1);
    return rc == PT_ERROR ? PT_ERROR : PT_OK;
}

static int send_error_page(pt_http_request_t *r, const pt_http_error_page_t *ep)
{
    pt_str_t uri, args;
    int overwrite = ep->overwrite;

    if (overwrite >= 0)
        r->err_status = overwrite;
    if (pt_http_cv_eval(r, &ep->uri, &uri) != 0)
        return PT_ERROR;

    if (uri.len > 0 && uri.data[0] == '/') {
        char *q = memchr(uri.data, '?', uri.len);
        args.len = 0;
        args.data = NULL;
        if (q != NULL) {
            args.data = q + 1;
            args.len = uri.len - (size_t) (q + 1 - uri.data);
            uri.len = (size_t) (q - uri.data);
        }
        if (r->method != PT_HTTP_HEAD) {
            r->method = PT_HTTP_GET;
            pt_str_set(&r->method_name, "GET");
        }
        return pt_http_internal_redirect(r, &uri, &args);
    }

    if (uri.len > 0 && uri.data[0] == '@')
        return pt_http_named_location(r, &uri);

    /* an absolute URL: redirect the client */
    r->expect_tested = 1;
    pt_http_header_t *loc = pt_pcalloc(r->pool, sizeof(*loc));
    if (loc == NULL)
        return PT_ERROR;
    pt_str_set(&loc->name, "Location");
    loc->value = uri;
    loc->hash = pt_hash_lower("location", 8);
    r->headers_out.location = loc;

    int status = (overwrite >= 301 && overwrite <= 308) ? overwrite : 302;
    r->err_status = status;
    return send_special(r, status);
}

int pt_http_special_response(pt_http_request_t *r, int status)
{
    pt_http_core_loc_conf_t *clcf = pt_http_get_module_loc_conf(r, pt_http_core_module);

    r->err_status = status;
    if (status_kills_keepalive(status))
        r->keepalive = 0;

    if (!r->error_page && clcf->error_pages && r->uri_changes != 0) {
        if (!clcf->recursive_error_pages)
            r->error_page = 1;
        const pt_http_error_page_t *ep = clcf->error_pages->elts;
        for (size_t i = 0; i < clcf->error_pages->nelts; i++)
            if (ep[i].status == status)
                return send_error_page(r, &ep[i]);
    }

    /* the client must not start sending a body for a request that failed */
    r->expect_tested = 1;
    if (!r->header_sent && pt_http_discard_request_body(r) != PT_OK)
        r->keepalive = 0;

    /* a redirect keeps its Location; anything else must not carry one */
    if (status < 300 || status > 308)
        r->headers_out.location = NULL;

    return send_special(r, status);
}
