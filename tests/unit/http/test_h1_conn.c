/* HTTP/1.x connections end to end inside one process: a real configuration
 * (parsed with the http core module and a test module), the real event loop
 * and connection table, and a socketpair whose other end plays the client.
 * The test module's content handlers exercise what production handlers do
 * not yet: reading request bodies (Content-Length, chunked, 100-continue,
 * limits, timeouts), streaming chunked responses and large responses under
 * backpressure. */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/conf_test.h"
#include "http/core.h"
#include "http/h1_conn.h"
#include "tap.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/time.h"
#include "net/conn.h"

/* ------------------------------------------------------------------------ */
/* Test module: content handlers set by directives */

static pt_module_t t_module;

typedef struct {
    char   *data;
    size_t  len, cap;
    size_t  sent;            /* big: bytes produced */
} t_body_t;

static const pt_str_t text_plain = pt_string("text/plain");

static void echo_read(pt_http_request_t *r)
{
    t_body_t *b = pt_http_get_module_ctx(r, t_module);
    for (;;) {
        int status = 0;
        if (b->len == b->cap) {
            size_t ncap = b->cap ? b->cap * 2 : 64;
            char *n = pt_palloc(r->pool, ncap);
            if (n == NULL) {
                pt_http_finalize_request(r, 500);
                return;
            }
            if (b->len)
                memcpy(n, b->data, b->len);
            b->data = n;
            b->cap = ncap;
        }
        /* small reads so the decoder is fed in odd pieces */
        size_t want = b->cap - b->len < 7 ? b->cap - b->len : 7;
        ssize_t n = r->proto->read_body(r, b->data + b->len, want, &status);
        if (n > 0) {
            b->len += (size_t) n;
            continue;
        }
        if (n == 0) {
            pt_str_t body = { b->len, b->data };
            r->read_event_handler = NULL;
            pt_http_finalize_request(r, pt_http_send_response(r, 200, &text_plain, &body));
            return;
        }
        if (n == PT_AGAIN) {
            r->read_event_handler = echo_read;
            return;
        }
        pt_http_finalize_request(r, status ? status : PT_ERROR);
        return;
    }
}

static int echo_handler(pt_http_request_t *r)
{
    t_body_t *b = pt_pcalloc(r->pool, sizeof(*b));
    if (b == NULL)
        return 500;
    pt_http_set_ctx(r, b, t_module);
    echo_read(r);
    return PT_DONE;
}

static pt_buf_t *text_buf(pt_http_request_t *r, const char *s)
{
    size_t n = strlen(s);
    pt_buf_t *b = pt_buf_get(n ? n : 1);
    memcpy(b->last, s, n);
    b->last += n;
    return b;
}

/* Three body calls of unknown total length: chunked for HTTP/1.1. */
static int stream_handler(pt_http_request_t *r)
{
    r->headers_out.status = 200;
    r->headers_out.content_type = text_plain;
    if (pt_http_send_header(r) != PT_OK)
        return PT_ERROR;
    if (pt_http_output(r, text_buf(r, "abc")) == PT_ERROR)
        return PT_ERROR;
    pt_buf_t *b1 = text_buf(r, "defgh"), *b2 = text_buf(r, "ij");
    b1->next = b2;
    if (pt_http_output(r, b1) == PT_ERROR)
        return PT_ERROR;
    pt_buf_t *last = text_buf(r, "");
    last->last_buf = 1;
    return pt_http_output(r, last) == PT_ERROR ? PT_ERROR : PT_OK;
}

#define BIG_TOTAL (4u << 20)
#define BIG_CHUNK (64u << 10)

/* 4 MiB with Content-Length, produced under backpressure. */
static void big_write(pt_http_request_t *r)
{
    t_body_t *st = pt_http_get_module_ctx(r, t_module);
    while (st->sent < BIG_TOTAL) {
        if (r->proto->pending(r) > 2 * BIG_CHUNK) {
            r->write_event_handler = big_write;
            return;
        }
        pt_buf_t *b = pt_buf_get(BIG_CHUNK);
        for (size_t i = 0; i < BIG_CHUNK; i++)
            b->last[i] = (char) ('a' + (st->sent + i) % 26);
        b->last += BIG_CHUNK;
        st->sent += BIG_CHUNK;
        if (st->sent == BIG_TOTAL)
            b->last_buf = 1;
        if (pt_http_output(r, b) == PT_ERROR) {
            pt_http_finalize_request(r, PT_ERROR);
            return;
        }
    }
    r->write_event_handler = NULL;
    pt_http_finalize_request(r, PT_OK);
}

static int big_handler(pt_http_request_t *r)
{
    t_body_t *st = pt_pcalloc(r->pool, sizeof(*st));
    pt_http_set_ctx(r, st, t_module);
    r->headers_out.status = 200;
    r->headers_out.content_length_n = BIG_TOTAL;
    if (pt_http_send_header(r) != PT_OK)
        return PT_ERROR;
    big_write(r);
    return PT_DONE;
}

/* Answers at once, leaving any body unread (discard path). */
static int quick_handler(pt_http_request_t *r)
{
    pt_str_t body = pt_string("quick");
    return pt_http_send_response(r, 200, &text_plain, &body);
}

/* A status set by the handler; the body comes from the special response. */
static int status_handler(pt_http_request_t *r)
{
    const char *q = r->args.data;
    int st = 0;
    for (size_t i = 0; i < r->args.len && q[i] >= '0' && q[i] <= '9'; i++)
        st = st * 10 + (q[i] - '0');
    if (st == 304 || st == 204) {
        r->headers_out.status = st;
        r->headers_out.content_length_n = 0;
        if (pt_http_send_header(r) != PT_OK)
            return PT_ERROR;
        pt_buf_t *b = text_buf(r, "");
        b->last_buf = 1;
        return pt_http_output(r, b) == PT_ERROR ? PT_ERROR : PT_OK;
    }
    if (st == 301) {
        pt_str_t loc = pt_string("/elsewhere");
        return pt_http_send_response(r, 301, NULL, &loc);
    }
    return st;
}

static const char *set_handler(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = pt_http_conf_get_module_loc_conf(cf, pt_http_core_module);
    clcf->handler = (pt_http_handler_cb) (uintptr_t) cmd->post;
    return PT_CONF_OK;
}

static const pt_command_t t_commands[] = {
    { "t_echo", PT_CTX_LOC, 0, 0, 0, set_handler, PT_CONF_NONE, 0, (const void *) (uintptr_t) echo_handler },
    { "t_stream", PT_CTX_LOC, 0, 0, 0, set_handler, PT_CONF_NONE, 0, (const void *) (uintptr_t) stream_handler },
    { "t_big", PT_CTX_LOC, 0, 0, 0, set_handler, PT_CONF_NONE, 0, (const void *) (uintptr_t) big_handler },
    { "t_quick", PT_CTX_LOC, 0, 0, 0, set_handler, PT_CONF_NONE, 0, (const void *) (uintptr_t) quick_handler },
    { "t_status", PT_CTX_LOC, 0, 0, 0, set_handler, PT_CONF_NONE, 0, (const void *) (uintptr_t) status_handler },
    PT_COMMAND_END
};

static pt_module_t t_module = { .name = "t_http1", .commands = t_commands };
static pt_module_t *mods[] = { &pt_http_core_module, &t_module };

/* (core_test.h's helpers, without its stub of pt_http_init_connection) */
static t_ctx_t T;

static const char *t_load_with(const char *text, int *okp, pt_module_t **m, size_t n)
{
    t_setup(&T, m, n);
    t_capture_begin();
    const char *rv = pt_conf_parse_string(&T.cf, text, t_path("test.conf"));
    const char *err = t_capture_end();
    *okp = rv == PT_CONF_OK;
    return err;
}

static pt_listening_t *t_listening(const char *text)
{
    pt_listening_t *l = T.cycle.listening.elts;
    for (size_t i = 0; i < T.cycle.listening.nelts; i++) {
        if (strcmp(l[i].addr_text, text) == 0)
            return &l[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Harness */

static const char *CONF =
    "http {\n"
    "  client_header_timeout 300ms;\n"
    "  keepalive_timeout 400ms;\n"
    "  server {\n"
    "    listen 127.0.0.1:21990;\n"
    "    server_name h1.test;\n"
    "    client_header_buffer_size 1k;\n"
    "    large_client_header_buffers 2 2k;\n"
    "    location /echo { t_echo; client_max_body_size 100; client_body_timeout 200ms; }\n"
    "    location /stream { t_stream; }\n"
    "    location /big { t_big; }\n"
    "    location /quick { t_quick; lingering_timeout 200ms; }\n"
    "    location /status { t_status; }\n"
    "    location /ka3 { t_quick; keepalive_requests 3; }\n"
    "  }\n"
    "}\n";

static pt_listening_t *ls;
static pt_log_t tlog;

typedef struct {
    int     fd;               /* the client end */
    char    in[8 << 20];
    size_t  len;
    int     eof;
} client_t;

static client_t cl;

static void client_open(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        exit(2);
    cl.fd = sv[1];
    cl.len = 0;
    cl.eof = 0;
    pt_conn_t *c = pt_conn_get(sv[0], &tlog);
    if (c == NULL)
        exit(2);
    c->listening = ls;
    c->addr_text.data = (char *) "127.0.0.1";
    c->addr_text.len = 9;
    pt_http_init_connection(c);
}

static void client_send(const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(cl.fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) {
                pt_loop_once(1);
                continue;
            }
            return;
        }
        p += w;
        n -= (size_t) w;
    }
}

static void client_sends(const char *s)
{
    client_send(s, strlen(s));
}

static void client_pump(void)
{
    for (;;) {
        ssize_t n = recv(cl.fd, cl.in + cl.len, sizeof(cl.in) - cl.len - 1, 0);
        if (n > 0) {
            cl.len += (size_t) n;
            cl.in[cl.len] = '\0';
            continue;
        }
        if (n == 0)
            cl.eof = 1;
        return;
    }
}

/* Runs the loop for up to ms, until the server closed (want_eof) or the
 * input contains `until`. */
static void run(int ms, const char *until, int want_eof)
{
    int64_t end = pt_current_msec + ms;
    while (pt_current_msec < end) {
        pt_loop_once(5);
        client_pump();
        if (want_eof && cl.eof)
            return;
        if (until && strstr(cl.in, until))
            return;
    }
}

static void client_close(void)
{
    close(cl.fd);
    run(20, NULL, 0);   /* let the server notice */
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static int contains(const char *needle)
{
    return strstr(cl.in, needle) != NULL;
}

/* ------------------------------------------------------------------------ */
/* Tests */

static void test_content_length_body(void)
{
    client_open();
    client_sends("POST /echo HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 11\r\n\r\nhello");
    run(50, NULL, 0);
    ok(!contains("HTTP/1.1"), "no response before the body is complete");
    client_sends(" world");
    run(500, "hello world", 0);
    ok(contains("HTTP/1.1 200 OK\r\n"), "200");
    ok(contains("Content-Length: 11\r\n"), "length");
    ok(contains("\r\n\r\nhello world"), "body echoed");
    ok(contains("Connection: keep-alive"), "kept alive");
    client_close();
}

static void test_chunked_body_bytewise(void)
{
    const char *req = "POST /echo HTTP/1.1\r\nHost: h1.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
                      "GET /quick HTTP/1.1\r\nHost: h1.test\r\n\r\n";
    client_open();
    for (const char *p = req; *p; p++) {
        client_send(p, 1);
        pt_loop_once(0);
    }
    run(500, "quick", 0);
    ok(contains("\r\n\r\nhello world"), "chunked body decoded from single bytes");
    ok(count(cl.in, "HTTP/1.1 200 OK") == 2, "pipelined request after the body answered");
    client_close();
}

static void test_chunked_body_with_pipelined_rest(void)
{
    /* everything in one write: the body's end and the next request share reads */
    client_open();
    client_sends("POST /echo HTTP/1.1\r\nHost: h1.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 3\r\n\r\nxyz"
                 "GET /stream HTTP/1.1\r\nHost: h1.test\r\nConnection: close\r\n\r\n");
    run(500, NULL, 1);
    ok(contains("\r\n\r\nabc"), "first body");
    ok(contains("\r\n\r\nxyz"), "second body");
    ok(contains("3\r\nabc\r\n7\r\ndefghij\r\n0\r\n\r\n"), "third response chunked");
    ok(count(cl.in, "HTTP/1.1 200 OK") == 3 && cl.eof, "three responses, then close");
    client_close();
}

static void test_expect_continue(void)
{
    client_open();
    client_sends("POST /echo HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    run(300, "100 Continue", 0);
    ok(strncmp(cl.in, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0, "100 Continue sent when the body is read");
    client_sends("data");
    run(300, "data", 0);
    ok(contains("HTTP/1.1 200 OK") && contains("\r\n\r\ndata"), "then the response");
    client_close();

    /* rejected before the body is read: no 100, and the connection closes */
    client_open();
    client_sends("POST /echo HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n");
    run(300, NULL, 1);
    ok(!contains("100 Continue"), "no 100 for a rejected request");
    ok(contains("HTTP/1.1 413 Request Entity Too Large"), "413 from Content-Length");
    ok(contains("Connection: close") && cl.eof, "closed");
    client_close();

    /* answered without reading: no 100, the client must not keep the connection */
    client_open();
    client_sends("POST /quick HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
    run(300, NULL, 1);
    ok(!contains("100 Continue") && contains("200 OK") && contains("Connection: close"),
       "quick answer, connection closed");
    client_close();
}

static void test_body_limits(void)
{
    client_open();
    client_sends("POST /echo HTTP/1.1\r\nHost: h1.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n"
                 "40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n");
    run(300, NULL, 1);
    ok(contains("HTTP/1.1 413"), "chunked body over client_max_body_size: 413");
    ok(contains("Connection: close"), "and close");
    client_close();

    client_open();
    client_sends("POST /echo HTTP/1.1\r\nHost: h1.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX");
    run(300, NULL, 1);
    ok(contains("HTTP/1.1 400"), "bad chunk framing while reading: 400");
    client_close();
}

static void test_body_timeout(void)
{
    client_open();
    client_sends("POST /echo HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 10\r\n\r\nabc");
    int64_t t0 = pt_current_msec;
    run(1000, NULL, 1);
    ok(cl.eof, "closed after client_body_timeout");
    ok(cl.len == 0, "without a response (nginx closes on 408)");
    ok(pt_current_msec - t0 >= 150 && pt_current_msec - t0 < 800, "after about 200ms");
    client_close();
}

static void test_header_timeout(void)
{
    client_open();
    client_sends("GET / HTTP/1.1\r\nHost: h1");
    int64_t t0 = pt_current_msec;
    run(1000, NULL, 1);
    ok(cl.eof && cl.len == 0, "partial head: closed without a response");
    ok(pt_current_msec - t0 >= 250, "after client_header_timeout");
    client_close();

    client_open();
    client_sends("GET /quick HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    run(200, "quick", 0);
    t0 = pt_current_msec;
    run(1000, NULL, 1);
    ok(cl.eof && count(cl.in, "HTTP/1.1") == 1, "keep-alive connection closed silently");
    ok(pt_current_msec - t0 >= 300, "after keepalive_timeout");
    client_close();
}

static void test_discard(void)
{
    client_open();
    client_sends("POST /quick HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 20\r\n\r\n0123456789");
    run(100, "quick", 0);
    ok(contains("Connection: keep-alive"), "answered before the body: keep-alive");
    client_sends("GET /x\r\n\r\n");    /* the 10 remaining body bytes */
    run(300, NULL, 0);
    ok(count(cl.in, "HTTP/1.1") == 1, "body bytes never parsed as a request");
    client_sends("GET /stream HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    run(300, "0\r\n\r\n", 0);
    ok(count(cl.in, "HTTP/1.1") == 2 && contains("defgh"), "the request after the body is served");
    client_close();

    /* chunked body discarded across reads */
    client_open();
    client_sends("POST /quick HTTP/1.1\r\nHost: h1.test\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab");
    run(100, "quick", 0);
    client_sends("cd\r\n0\r\n\r\nGET /quick HTTP/1.1\r\nHost: h1.test\r\nConnection: close\r\n\r\n");
    run(300, NULL, 1);
    ok(count(cl.in, "quick") == 2 && cl.eof, "chunked discard then next request");
    client_close();

    /* client stops sending the body: closed after lingering_timeout */
    client_open();
    client_sends("POST /quick HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 20\r\n\r\n0123");
    run(1000, NULL, 1);
    ok(count(cl.in, "quick") == 1 && cl.eof, "stalled body: closed");
    client_close();
}

static void test_stream_and_head(void)
{
    client_open();
    client_sends("GET /stream HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    run(200, "0\r\n\r\n", 0);
    ok(contains("Transfer-Encoding: chunked\r\n"), "chunked");
    ok(contains("\r\n\r\n3\r\nabc\r\n7\r\ndefghij\r\n0\r\n\r\n"), "one chunk per output call");
    ok(!contains("Content-Length"), "no length");
    client_close();

    client_open();
    client_sends("GET /stream HTTP/1.0\r\n\r\n");
    run(300, NULL, 1);
    ok(contains("HTTP/1.1 200 OK") && contains("Connection: close"), "HTTP/1.0: status line 1.1, close");
    ok(contains("\r\n\r\nabcdefghij") && !contains("Transfer-Encoding"), "close-delimited body");
    ok(cl.eof, "closed");
    client_close();

    client_open();
    client_sends("HEAD /stream HTTP/1.1\r\nHost: h1.test\r\n\r\nHEAD /quick HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    run(200, "Content-Length: 5", 0);
    run(50, NULL, 0);
    ok(count(cl.in, "HTTP/1.1 200") == 2, "two HEAD responses");
    ok(!contains("abc") && !contains("quick"), "no bodies");
    ok(!contains("Transfer-Encoding"), "HEAD is not chunked");
    client_close();
}

static void test_status_headers(void)
{
    client_open();
    client_sends("GET /status?204 HTTP/1.1\r\nHost: h1.test\r\n\r\n"
                 "GET /status?304 HTTP/1.1\r\nHost: h1.test\r\n\r\n"
                 "GET /status?301 HTTP/1.1\r\nHost: h1.test\r\n\r\n"
                 "GET /status?418 HTTP/1.1\r\nHost: h1.test\r\n\r\n"
                 "GET /status?500 HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    run(500, NULL, 1);
    ok(contains("HTTP/1.1 204 No Content\r\n"), "204");
    ok(contains("HTTP/1.1 304 Not Modified\r\n"), "304");
    const char *r204 = strstr(cl.in, "HTTP/1.1 204"), *r304 = strstr(cl.in, "HTTP/1.1 304");
    const char *r301 = strstr(cl.in, "HTTP/1.1 301");
    ok(r204 && r304 && r301 && r204 < r304 && r304 < r301, "in order");
    ok(r204 && r304 && r301 && !memmem(r204, (size_t) (r301 - r204), "Content-Length", 14)
       && !memmem(r204, (size_t) (r301 - r204), "Transfer-Encoding", 17), "no framing headers on 204/304");
    ok(contains("HTTP/1.1 301 Moved Permanently\r\n"), "301");
    ok(contains("Location: http://h1.test/elsewhere\r\n"), "absolute Location from Host");
    ok(contains("<title>301 Moved Permanently</title>"), "301 page");
    ok(contains("HTTP/1.1 418 \r\n") && contains("Content-Length: 0\r\n"), "unknown status: empty reason, empty body");
    ok(contains("HTTP/1.1 500 Internal Server Error") && contains("Connection: close"), "500 closes");
    ok(cl.eof, "closed after 500");
    client_close();
}

static void test_big_backpressure(void)
{
    size_t before = pt_buf_allocated();
    client_open();
    client_sends("GET /big HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    /* read slowly at first: the writer must stop producing */
    run(50, NULL, 0);
    ok(pt_buf_allocated() - before < 1u << 20, "buffered output bounded while the client does not read");
    int64_t end = pt_current_msec + 5000;
    while (pt_current_msec < end && !cl.eof) {
        pt_loop_once(5);
        client_pump();
        const char *hb = strstr(cl.in, "\r\n\r\n");
        if (hb && cl.len - (size_t) (hb + 4 - cl.in) >= BIG_TOTAL)
            break;
    }
    const char *body = strstr(cl.in, "\r\n\r\n");
    size_t blen = body ? cl.len - (size_t) (body + 4 - cl.in) : 0;
    is_int(blen, BIG_TOTAL, "whole body received");
    int good = body != NULL;
    for (size_t i = 0; good && i < blen; i += 4099)
        good = body[4 + i] == (char) ('a' + i % 26);
    ok(good, "bytes in order");
    client_sends("GET /quick HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    run(200, "quick", 0);
    if (!ok(contains("quick"), "connection reused after the big response"))
        note("eof %d, len %zu, head: %.200s", cl.eof, cl.len, cl.in);
    client_close();
}

static void test_keepalive_requests(void)
{
    client_open();
    client_sends("GET /ka3 HTTP/1.1\r\nHost: h1.test\r\n\r\n"
                 "GET /ka3 HTTP/1.1\r\nHost: h1.test\r\n\r\n"
                 "GET /ka3 HTTP/1.1\r\nHost: h1.test\r\n\r\n"
                 "GET /ka3 HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    run(500, NULL, 1);
    is_int(count(cl.in, "HTTP/1.1 200"), 3, "three responses");
    is_int(count(cl.in, "Connection: close"), 1, "the third one closes");
    ok(cl.eof, "closed");
    client_close();
}

static void test_large_head(void)
{
    char req[8192];
    /* 1.5k request line: moves from the 1k buffer to a 2k one */
    memset(req, 0, sizeof(req));
    strcpy(req, "GET /quick?");
    memset(req + strlen(req), 'a', 1500);
    strcat(req, " HTTP/1.1\r\nHost: h1.test\r\nConnection: close\r\n\r\n");
    client_open();
    client_sends(req);
    run(300, NULL, 1);
    ok(contains("200 OK"), "long request line in a large buffer");
    client_close();

    memset(req, 0, sizeof(req));
    strcpy(req, "GET /quick?");
    memset(req + strlen(req), 'a', 2100);
    strcat(req, " HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    client_open();
    client_sends(req);
    run(300, NULL, 1);
    ok(contains("HTTP/1.1 414 Request-URI Too Large"), "request line over one large buffer: 414");
    client_close();

    /* two 1.5k headers fit 2 x 2k; three do not */
    char h[1600];
    memset(h, 'b', sizeof(h) - 1);
    h[sizeof(h) - 1] = '\0';
    snprintf(req, sizeof(req), "GET /quick HTTP/1.1\r\nHost: h1.test\r\nX-1: %.1500s\r\nX-2: %.1500s\r\n"
             "Connection: close\r\n\r\n", h, h);
    client_open();
    client_sends(req);
    run(300, NULL, 1);
    ok(contains("200 OK"), "large headers spread over the buffers");
    client_close();

    snprintf(req, sizeof(req), "GET /quick HTTP/1.1\r\nHost: h1.test\r\nX-1: %.1500s\r\nX-2: %.1500s\r\n"
             "X-3: %.1500s\r\n\r\n", h, h, h);
    client_open();
    client_sends(req);
    run(300, NULL, 1);
    ok(contains("400 Request Header Or Cookie Too Large"), "too large head: 494 page");
    ok(contains("HTTP/1.1 400 Bad Request"), "sent as 400");
    client_close();
}

static void test_idle_memory(void)
{
    size_t before = pt_buf_allocated();
    unsigned stats_waiting = pt_conn_stats.waiting;
    client_open();
    run(20, NULL, 0);
    ok(pt_buf_allocated() == before, "a new idle connection holds no buffer");
    ok(pt_conn_stats.waiting == stats_waiting + 1, "counted as waiting");
    client_sends("GET /quick HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    run(200, "quick", 0);
    run(20, NULL, 0);
    ok(pt_buf_allocated() == before, "an idle keep-alive connection holds no buffer");
    ok(pt_conn_stats.waiting == stats_waiting + 1 && pt_conn_stats.reading == 0
       && pt_conn_stats.writing == 0, "back to waiting");
    client_close();
    ok(pt_conn_stats.waiting == stats_waiting, "closed: no longer counted");
}

int main(void)
{
    int okc;
    t_make_dir();
    pt_time_init();
    if (pt_loop_init(64) != 0 || pt_conn_table_init(64) != 0)
        return 2;

    const char *err = t_load_with(CONF, &okc, mods, 2);
    if (!ok(okc, "configuration loads")) {
        note("%s", err);
        return done_testing();
    }
    ls = t_listening("127.0.0.1:21990");
    if (!ok(ls != NULL, "listening record"))
        return done_testing();
    tlog.level = PT_LOG_CRIT;
    pt_log_use_stderr = 0;
    tlog.file = NULL;

    subtest("content-length body", test_content_length_body);
    subtest("chunked body bytewise", test_chunked_body_bytewise);
    subtest("chunked body + pipelined", test_chunked_body_with_pipelined_rest);
    subtest("100-continue", test_expect_continue);
    subtest("body limits", test_body_limits);
    subtest("body timeout", test_body_timeout);
    subtest("header timeout", test_header_timeout);
    subtest("discard", test_discard);
    subtest("stream and HEAD", test_stream_and_head);
    subtest("status headers", test_status_headers);
    subtest("big response", test_big_backpressure);
    subtest("keepalive_requests", test_keepalive_requests);
    subtest("large head", test_large_head);
    subtest("idle memory", test_idle_memory);

    t_teardown(&T);
    t_remove_dir();
    return done_testing();
}
