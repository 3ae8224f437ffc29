/* libFuzzer target: a server-side HTTP/2 connection (src/http/h2_conn.c over
 * libnghttp2) fed arbitrary frames after a valid client preface.
 *
 * The harness is the same as tests/unit/http/test_h1_conn.c: a real
 * configuration (http core + http_v2 + a small content module parsed by the
 * real parser), the real event loop and connection table, and a socketpair
 * whose other end plays the client. Per input:
 *   1. open a connection and hand it to pt_http2_init_connection() (as after
 *      ALPN "h2"),
 *   2. send "PRI * HTTP/2.0..." + an empty SETTINGS frame, then the input
 *      bytes, running the loop and draining what the server writes,
 *   3. optionally (first input byte, bit 0) keep reading a while so stream
 *      handlers finish, then close the client end and run the loop until the
 *      server released the connection (any leak is reported by LeakSanitizer
 *      at the end of the input).
 * The content module answers "ok" (/q...), echoes the request body (/e...,
 * client_max_body_size 4k) or streams a 256 KiB body (/b...) under flow
 * control, so HEADERS/DATA/WINDOW_UPDATE/RST_STREAM sequences all reach
 * request code. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../tests/unit/config/conf_test.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/time.h"
#include "http/core.h"
#include "http/h2_conn.h"
#include "net/conn.h"

/* ------------------------------------------------------------------------ */
/* content module */

static pt_module_t fz_module;

typedef struct {
    char   *data;
    size_t  len, cap;
    size_t  sent;
} fz_body_t;

static const pt_str_t text_plain = pt_string("text/plain");

static int quick_handler(pt_http_request_t *r)
{
    pt_str_t body = pt_string("ok");
    return pt_http_send_response(r, 200, &text_plain, &body);
}

static void echo_read(pt_http_request_t *r)
{
    fz_body_t *b = pt_http_get_module_ctx(r, fz_module);
    for (;;) {
        int status = 0;
        if (b->len == b->cap) {
            size_t ncap = b->cap ? b->cap * 2 : 256;
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
        ssize_t n = r->proto->read_body(r, b->data + b->len, b->cap - b->len, &status);
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
        r->read_event_handler = NULL;
        pt_http_finalize_request(r, status ? status : PT_ERROR);
        return;
    }
}

static int echo_handler(pt_http_request_t *r)
{
    fz_body_t *b = pt_pcalloc(r->pool, sizeof(*b));
    if (b == NULL)
        return 500;
    pt_http_set_ctx(r, b, fz_module);
    echo_read(r);
    return PT_DONE;
}

#define BIG_TOTAL (256u << 10)
#define BIG_CHUNK (16u << 10)

static void big_write(pt_http_request_t *r)
{
    fz_body_t *st = pt_http_get_module_ctx(r, fz_module);
    while (st->sent < BIG_TOTAL) {
        if (r->proto->pending(r) > 2 * BIG_CHUNK) {
            r->write_event_handler = big_write;
            return;
        }
        pt_buf_t *b = pt_buf_get(BIG_CHUNK);
        memset(b->last, 'x', BIG_CHUNK);
        b->last += BIG_CHUNK;
        st->sent += BIG_CHUNK;
        if (st->sent == BIG_TOTAL)
            b->last_buf = 1;
        if (pt_http_output(r, b) == PT_ERROR) {
            r->write_event_handler = NULL;
            pt_http_finalize_request(r, PT_ERROR);
            return;
        }
    }
    r->write_event_handler = NULL;
    pt_http_finalize_request(r, PT_OK);
}

static int big_handler(pt_http_request_t *r)
{
    fz_body_t *st = pt_pcalloc(r->pool, sizeof(*st));
    if (st == NULL)
        return 500;
    pt_http_set_ctx(r, st, fz_module);
    r->headers_out.status = 200;
    r->headers_out.content_length_n = BIG_TOTAL;
    if (pt_http_send_header(r) != PT_OK)
        return PT_ERROR;
    big_write(r);
    return PT_DONE;
}

static const char *set_handler(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_http_core_loc_conf_t *clcf = pt_http_conf_get_module_loc_conf(cf, pt_http_core_module);
    clcf->handler = (pt_http_handler_cb) (uintptr_t) cmd->post;
    return PT_CONF_OK;
}

static const pt_command_t fz_commands[] = {
    { "fz_quick", PT_CTX_LOC, 0, 0, 0, set_handler, PT_CONF_NONE, 0, (const void *) (uintptr_t) quick_handler },
    { "fz_echo", PT_CTX_LOC, 0, 0, 0, set_handler, PT_CONF_NONE, 0, (const void *) (uintptr_t) echo_handler },
    { "fz_big", PT_CTX_LOC, 0, 0, 0, set_handler, PT_CONF_NONE, 0, (const void *) (uintptr_t) big_handler },
    PT_COMMAND_END
};

static pt_module_t fz_module = { .name = "fz_h2", .commands = fz_commands };
static pt_module_t *mods[] = { &pt_http_core_module, &pt_http_v2_module, &fz_module };

static const char *CONF =
    "http {\n"
    "  client_header_timeout 5s;\n"
    "  keepalive_timeout 5s;\n"
    "  server {\n"
    "    listen 127.0.0.1:21997 http2;\n"
    "    server_name h2.fuzz;\n"
    "    large_client_header_buffers 4 4k;\n"
    "    location / { fz_quick; }\n"
    "    location /e { fz_echo; client_max_body_size 4k; }\n"
    "    location /b { fz_big; }\n"
    "  }\n"
    "}\n";

/* ------------------------------------------------------------------------ */
/* harness */

static t_ctx_t T;
static pt_listening_t *ls;
static pt_log_t tlog;
static char sink[1 << 16];
static size_t received;          /* bytes the server wrote (FUZZ_H2_DEBUG) */

static pt_listening_t *find_listening(const char *text)
{
    pt_listening_t *l = T.cycle.listening.elts;
    for (size_t i = 0; i < T.cycle.listening.nelts; i++) {
        if (strcmp(l[i].addr_text, text) == 0)
            return &l[i];
    }
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    t_make_dir();
    pt_time_init();
    if (pt_loop_init(64) != 0 || pt_conn_table_init(64) != 0)
        abort();
    t_setup(&T, mods, sizeof(mods) / sizeof(mods[0]));
    t_capture_begin();
    const char *rv = pt_conf_parse_string(&T.cf, CONF, t_path("fuzz.conf"));
    const char *err = t_capture_end();
    if (rv != PT_CONF_OK) {
        fprintf(stderr, "fuzz_h2_frames: configuration failed: %s\n", err);
        abort();
    }
    ls = find_listening("127.0.0.1:21997");
    if (ls == NULL)
        abort();
    tlog.level = PT_LOG_CRIT;
    tlog.file = NULL;
    pt_log_use_stderr = 0;
    t_remove_dir();
    return 0;
}

/* Reads what the server wrote; returns the byte count, -1 at EOF. */
static ssize_t drain(int fd)
{
    ssize_t total = 0;
    for (;;) {
        ssize_t n = recv(fd, sink, sizeof(sink), 0);
        if (n > 0) {
            total += n;
            received += (size_t) n;
            continue;
        }
        if (n == 0)
            return -1;
        return total;
    }
}

static const uint8_t preface[] =
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    "\x00\x00\x00\x04\x00\x00\x00\x00\x00";         /* empty SETTINGS */

/* Sends all of p (the loop runs while the socket buffer is full); returns
 * -1 when the server went away. */
static int send_all(int fd, const uint8_t *p, size_t n)
{
    int spins = 0;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN)
                return -1;
            pt_loop_once(0);
            if (drain(fd) < 0 || ++spins > 2000)
                return -1;
            continue;
        }
        p += w;
        n -= (size_t) w;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    unsigned mode = size ? data[0] : 0;
    unsigned before = pt_conn_active_count();

    received = 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    pt_conn_t *c = pt_conn_get(sv[0], &tlog);
    if (c == NULL)
        abort();
    c->listening = ls;
    c->addr_text.data = (char *) "127.0.0.1";
    c->addr_text.len = 9;
    pt_http2_init_connection(c);

    int fd = sv[1];
    int gone = send_all(fd, preface, sizeof(preface) - 1) < 0;
    if (!gone && size > 1) {
        /* the frames in two writes, split where byte 0 says, so the
         * server also sees a frame cut across reads */
        size_t cut = 1 + (size_t) (mode >> 1) * (size - 1) / 128;
        if (cut > size)
            cut = size;
        gone = send_all(fd, data + 1, cut - 1) < 0;
        pt_loop_once(0);
        if (!gone && drain(fd) < 0)
            gone = 1;
        if (!gone)
            gone = send_all(fd, data + cut, size - cut) < 0;
    }
    /* let the server answer; with bit 0 set, read everything it writes
     * (big responses finish under flow control only if the input opened
     * the windows) */
    int rounds = (mode & 1) ? 200 : 8;
    for (int i = 0; i < rounds && !gone; i++) {
        pt_loop_once(0);
        ssize_t n = drain(fd);
        if (n < 0)
            gone = 1;
        else if (n == 0 && i > 4 && !(mode & 1))
            break;
    }
    close(fd);
    for (int i = 0; i < 1000 && pt_conn_active_count() > before; i++)
        pt_loop_once(1);
    if (pt_conn_active_count() > before) {
        fprintf(stderr, "fuzz_h2_frames: connection not released after client close\n");
        abort();
    }
    pt_loop_once(0);             /* deferred frees */
    if (getenv("FUZZ_H2_DEBUG"))
        fprintf(stderr, "fuzz_h2_frames: %zu input bytes, server wrote %zu\n", size, received);
    return 0;
}
