/* bench/backend.c: the benchmark origin server.
 *
 * A single-threaded epoll HTTP/1.1 server built to cost as little CPU per
 * request as possible, so that it is never the bottleneck of a proxy
 * benchmark. It answers every request with a fixed body:
 *
 *   GET /1k            1024 bytes          (also any path not listed here)
 *   GET /100k          102400 bytes
 *   GET /bytes/N       N bytes (any size: /bytes/1073741824 streams 1 GiB)
 *   POST|PUT anything  the body (Content-Length or chunked) is read and
 *                      discarded, then a 2-byte "ok" answer
 *
 * Keep-alive and pipelining are supported; "Connection: close" or HTTP/1.0
 * without keep-alive closes after the answer; "Expect: 100-continue" is
 * answered. Bodies come from one static buffer, so a 1 GiB download costs
 * no memory.
 *
 * usage: backend PORT [ADDR]        (ADDR defaults to 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define INBUF      16384
#define BODYBUF    (256 * 1024)
#define MAXEVENTS  256

enum { ST_HEAD, ST_BODY_CL, ST_CHUNK_SIZE, ST_CHUNK_DATA, ST_CHUNK_CRLF, ST_TRAILER };

typedef struct {
    int      fd;
    int      state;
    int      want_out;       /* EPOLLOUT registered */
    int      close_after;    /* close once the answer is written */
    int      pending_answer; /* a POST answer owed once the body is read */
    size_t   inlen;
    uint64_t body_left;      /* request body bytes still to discard */
    char     hdr[256];       /* response header being written */
    size_t   hdr_len, hdr_off;
    uint64_t out_left;       /* response body bytes still to write */
    char     in[INBUF];
} conn_t;

static char   body[BODYBUF];
static int    ep;
static char   ok_body[] = "ok";

static void conn_close(conn_t *c)
{
    close(c->fd);
    free(c);
}

static int set_out(conn_t *c, int on)
{
    if (c->want_out == on)
        return 0;
    /* While an answer is blocked, stop reading: pipelined requests wait. */
    struct epoll_event ev = { .events = on ? EPOLLOUT : EPOLLIN, .data.ptr = c };
    c->want_out = on;
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what is pending. Returns 1 when everything is written, 0 when the
 * socket is full, -1 on error. */
static int flush_out(conn_t *c)
{
    while (c->hdr_off < c->hdr_len || c->out_left > 0) {
        struct iovec iov[2];
        int n = 0;
        if (c->hdr_off < c->hdr_len) {
            iov[n].iov_base = c->hdr + c->hdr_off;
            iov[n].iov_len = c->hdr_len - c->hdr_off;
            n++;
        }
        if (c->out_left > 0) {
            if (c->pending_answer) {
                iov[n].iov_base = ok_body + (sizeof(ok_body) - 1 - c->out_left);
                iov[n].iov_len = c->out_left;
            } else {
                iov[n].iov_base = body;
                iov[n].iov_len = c->out_left < BODYBUF ? c->out_left : BODYBUF;
            }
            n++;
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -1;
        }
        size_t left = (size_t)w;
        size_t h = c->hdr_len - c->hdr_off;
        if (left >= h) {
            c->hdr_off = c->hdr_len;
            left -= h;
        } else {
            c->hdr_off += left;
            left = 0;
        }
        c->out_left -= left;
    }
    c->pending_answer = 0;
    return 1;
}

static void start_answer(conn_t *c, uint64_t len, int is_ok)
{
    c->hdr_len = (size_t)snprintf(c->hdr, sizeof(c->hdr),
        "HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: application/octet-stream\r\n"
        "Content-Length: %llu\r\n%s\r\n", (unsigned long long)len,
        c->close_after ? "Connection: close\r\n" : "");
    c->hdr_off = 0;
    c->out_left = len;
    c->pending_answer = is_ok;
}

static const char *find_hdr_end(const char *p, size_t n)
{
    for (size_t i = 3; i < n; i++)
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r')
            return p + i + 1;
    return NULL;
}

static int hdr_is(const char *line, size_t len, const char *name, const char **val, size_t *vlen)
{
    size_t nl = strlen(name);
    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return 0;
    const char *v = line + nl + 1, *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *val = v;
    *vlen = (size_t)(e - v);
    return 1;
}

/* Parses one request head of length n; sets up the body state and, for a
 * request without a body, the answer. Returns -1 on a malformed request. */
static int parse_head(conn_t *c, const char *p, size_t n)
{
    const char *eol = memchr(p, '\r', n);
    if (!eol)
        return -1;
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (!sp1)
        return -1;
    const char *path = sp1 + 1;
    const char *sp2 = memchr(path, ' ', (size_t)(eol - path));
    if (!sp2)
        return -1;
    size_t mlen = (size_t)(sp1 - p), plen = (size_t)(sp2 - path);
    int http10 = (eol - sp2 >= 9 && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0);
    int is_get = (mlen == 3 && memcmp(p, "GET", 3) == 0) || (mlen == 4 && memcmp(p, "HEAD", 4) == 0);
    int ka = !http10, chunked = 0, expect = 0;
    uint64_t cl = 0;

    const char *line = eol + 2, *end = p + n - 2;
    while (line < end) {
        const char *le = memchr(line, '\r', (size_t)(end - line));
        if (!le)
            le = end;
        const char *v;
        size_t vl;
        size_t ll = (size_t)(le - line);
        if (hdr_is(line, ll, "content-length", &v, &vl)) {
            cl = strtoull(v, NULL, 10);
        } else if (hdr_is(line, ll, "transfer-encoding", &v, &vl)) {
            chunked = (vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0);
        } else if (hdr_is(line, ll, "connection", &v, &vl)) {
            if (vl == 5 && strncasecmp(v, "close", 5) == 0)
                ka = 0;
            else if (vl == 10 && strncasecmp(v, "keep-alive", 10) == 0)
                ka = 1;
        } else if (hdr_is(line, ll, "expect", &v, &vl)) {
            expect = (vl == 12 && strncasecmp(v, "100-continue", 12) == 0);
        }
        line = le + 2;
    }
    c->close_after = !ka;

    if (chunked || cl > 0 || !is_get) {
        if (expect && (chunked || cl > 0)) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            if (write(c->fd, cont, sizeof(cont) - 1) < 0) { /* the body read will notice */ }
        }
        c->body_left = cl;
        c->state = chunked ? ST_CHUNK_SIZE : ST_BODY_CL;
        return 0;
    }

    uint64_t len = 1024;
    if (plen == 5 && memcmp(path, "/100k", 5) == 0)
        len = 102400;
    else if (plen > 7 && memcmp(path, "/bytes/", 7) == 0)
        len = strtoull(path + 7, NULL, 10);
    start_answer(c, len, 0);
    if (p[0] == 'H')            /* HEAD: header only */
        c->out_left = 0;
    return 0;
}

/* Consumes request bytes in c->in. Returns the number of bytes used, or -1. */
static ssize_t consume(conn_t *c)
{
    size_t off = 0;
    while (off < c->inlen) {
        /* An answer still being written: leave the rest (pipelined) queued. */
        if (c->hdr_off < c->hdr_len || c->out_left > 0)
            break;
        char *p = c->in + off;
        size_t n = c->inlen - off;
        switch (c->state) {
        case ST_HEAD: {
            const char *e = find_hdr_end(p, n);
            if (!e) {
                if (n >= INBUF)
                    return -1;
                return (ssize_t)off;
            }
            size_t hl = (size_t)(e - p);
            if (parse_head(c, p, hl) < 0)
                return -1;
            off += hl;
            if (c->state == ST_BODY_CL && c->body_left == 0) {
                c->state = ST_HEAD;
                start_answer(c, 2, 1);
            }
            break;
        }
        case ST_BODY_CL: {
            size_t take = n < c->body_left ? n : (size_t)c->body_left;
            c->body_left -= take;
            off += take;
            if (c->body_left == 0) {
                c->state = ST_HEAD;
                start_answer(c, 2, 1);
            }
            break;
        }
        case ST_CHUNK_SIZE: {
            char *nl = memchr(p, '\n', n);
            if (!nl) {
                if (n > 1024)
                    return -1;
                return (ssize_t)off;
            }
            uint64_t sz = strtoull(p, NULL, 16);
            off += (size_t)(nl - p) + 1;
            if (sz == 0) {
                c->state = ST_TRAILER;
            } else {
                c->body_left = sz;
                c->state = ST_CHUNK_DATA;
            }
            break;
        }
        case ST_CHUNK_DATA: {
            size_t take = n < c->body_left ? n : (size_t)c->body_left;
            c->body_left -= take;
            off += take;
            if (c->body_left == 0)
                c->state = ST_CHUNK_CRLF;
            break;
        }
        case ST_CHUNK_CRLF: {
            char *nl = memchr(p, '\n', n);
            if (!nl)
                return (ssize_t)off;
            off += (size_t)(nl - p) + 1;
            c->state = ST_CHUNK_SIZE;
            break;
        }
        case ST_TRAILER: {
            char *nl = memchr(p, '\n', n);
            if (!nl)
                return (ssize_t)off;
            size_t ll = (size_t)(nl - p) + 1;
            off += ll;
            if (ll <= 2) {       /* empty line: end of the chunked body */
                c->state = ST_HEAD;
                start_answer(c, 2, 1);
            }
            break;
        }
        }
    }
    return (ssize_t)off;
}

/* Runs the connection as far as it can go. Returns -1 to close it. */
static int drive(conn_t *c, int readable)
{
    for (;;) {
        if (c->hdr_off < c->hdr_len || c->out_left > 0) {
            int r = flush_out(c);
            if (r < 0)
                return -1;
            if (r == 0)
                return set_out(c, 1);
            if (c->close_after)
                return -1;
        }
        if (c->inlen > 0) {
            ssize_t used = consume(c);
            if (used < 0)
                return -1;
            if (used > 0) {
                memmove(c->in, c->in + used, c->inlen - (size_t)used);
                c->inlen -= (size_t)used;
            }
            if (c->hdr_off < c->hdr_len || c->out_left > 0)
                continue;
        }
        if (!readable)
            break;
        if (c->state == ST_BODY_CL && c->inlen == 0 && c->body_left > INBUF) {
            /* Bulk of a large body: read it straight into the scratch buffer. */
            static char scratch[BODYBUF];
            size_t want = c->body_left < BODYBUF ? (size_t)c->body_left : BODYBUF;
            ssize_t r = read(c->fd, scratch, want);
            if (r == 0)
                return -1;
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                if (errno == EINTR)
                    continue;
                return -1;
            }
            c->body_left -= (uint64_t)r;
            readable = ((size_t)r == want);
            if (c->body_left == 0) {
                c->state = ST_HEAD;
                start_answer(c, 2, 1);
            }
            continue;
        }
        ssize_t r = read(c->fd, c->in + c->inlen, INBUF - c->inlen);
        if (r == 0)
            return -1;
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            return -1;
        }
        /* A read that did not fill the buffer emptied the socket: skip the
         * read that would only say EAGAIN (level-triggered epoll calls back). */
        readable = (c->inlen + (size_t)r == INBUF);
        c->inlen += (size_t)r;
    }
    return set_out(c, 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [ADDR]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    memset(body, 'x', sizeof(body));

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
    inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &sa.sin_addr);
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 4096) < 0) {
        perror("backend: bind/listen");
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);

    struct epoll_event evs[MAXEVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAXEVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("backend: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    conn_t *nc = calloc(1, sizeof(*nc));
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = nc };
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        conn_close(nc);
                        continue;
                    }
                    /* The first request usually arrives with the connection. */
                    if (drive(nc, 1) < 0)
                        conn_close(nc);
                }
                continue;
            }
            int rd = (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0;
            if (drive(c, rd) < 0)
                conn_close(c);
        }
    }
}
