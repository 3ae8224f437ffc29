/* PROXY protocol v1/v2: the parser, and reading the header off a fresh
 * connection before the protocol layers see it. See proxy_protocol.h. */
#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core.h"
#include "../core/pool.h"
#include "../core/time.h"

#define AGAIN PT_PROXY_PROTOCOL_AGAIN
#define ERROR PT_PROXY_PROTOCOL_ERROR

static const char v1_sig[6] = { 'P', 'R', 'O', 'X', 'Y', ' ' };
static const char v2_sig[12] = { '\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n' };

/* ------------------------------------------------------------------------ */
/* Version 1: "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n"                       */

/* 1 when the n bytes at p could still begin word (prefix or all of it). */
static int prefix_of(const char *p, size_t n, const char *word)
{
    size_t wl = strlen(word);
    return n <= wl && memcmp(p, word, n) == 0;
}

/* Reads one field starting at *p that ends with term: bytes of the kind
 * accepted by ok(), at most max of them. Returns 1 (*p after the
 * terminator, *start and *flen the field), AGAIN when the input ends inside
 * the field (and the line may still fit), ERROR otherwise. n is the number
 * of bytes available, already capped at the line limit; full says whether
 * the cap was reached (then running out is an error, not "need more"). */
static int field(const char *b, size_t n, int full, size_t *p, int (*ok)(char), size_t max,
                 char term, size_t *start, size_t *flen)
{
    size_t s = *p, i = *p;
    while (i < n && b[i] != term) {
        if (!ok(b[i]) || i - s >= max)
            return ERROR;
        i++;
    }
    if (i == n)
        return full ? ERROR : AGAIN;
    if (i == s)
        return ERROR;            /* empty field */
    *start = s;
    *flen = i - s;
    *p = i + 1;
    return 1;
}

static int addr_char(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')
           || ch == '.' || ch == ':';
}

static int digit_char(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* "0".."65535", digits only (field() checked the characters). */
static int parse_port(const char *s, size_t len, uint16_t *out)
{
    unsigned v = 0;
    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++)
        v = v * 10 + (unsigned) (s[i] - '0');
    if (v > 65535)
        return -1;
    *out = (uint16_t) v;
    return 0;
}

/* Converts "1.2.3.4" / "2001:db8::1" of the given family into sa + text. */
static int parse_ip(const char *s, size_t len, int family, uint16_t port, pt_sockaddr_t *sa,
                    socklen_t *slen, char *text)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    if (len >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    memset(sa, 0, sizeof(*sa));
    if (family == AF_INET) {
        if (inet_pton(AF_INET, tmp, &sa->sin.sin_addr) != 1)
            return -1;
        sa->sin.sin_family = AF_INET;
        sa->sin.sin_port = htons(port);
        *slen = sizeof(struct sockaddr_in);
        inet_ntop(AF_INET, &sa->sin.sin_addr, text, INET6_ADDRSTRLEN);
    } else {
        if (inet_pton(AF_INET6, tmp, &sa->sin6.sin6_addr) != 1)
            return -1;
        sa->sin6.sin6_family = AF_INET6;
        sa->sin6.sin6_port = htons(port);
        *slen = sizeof(struct sockaddr_in6);
        inet_ntop(AF_INET6, &sa->sin6.sin6_addr, text, INET6_ADDRSTRLEN);
    }
    return 0;
}

static ssize_t parse_v1(const char *b, size_t len, pt_proxy_protocol_t *pp)
{
    size_t n = len < PT_PROXY_PROTOCOL_V1_MAX ? len : PT_PROXY_PROTOCOL_V1_MAX;
    int full = len >= PT_PROXY_PROTOCOL_V1_MAX;
    size_t p = sizeof(v1_sig), s, l;

    /* the protocol word */
    s = p;
    while (p < n && b[p] != ' ' && b[p] != '\r')
        p++;
    if (p == n) {
        if (full)
            return ERROR;
        return prefix_of(b + s, p - s, "TCP4") || prefix_of(b + s, p - s, "TCP6")
               || prefix_of(b + s, p - s, "UNKNOWN") ? AGAIN : ERROR;
    }
    l = p - s;
    if (l == 7 && memcmp(b + s, "UNKNOWN", 7) == 0) {
        /* anything up to the CRLF is ignored; the addresses stay the
         * socket's */
        while (p < n && b[p] != '\r') {
            if (b[p] == '\n')
                return ERROR;
            p++;
        }
        if (p + 1 >= n)
            return full ? ERROR : AGAIN;
        if (b[p + 1] != '\n')
            return ERROR;
        memset(pp, 0, sizeof(*pp));
        pp->version = 1;
        return (ssize_t) (p + 2);
    }
    if (l != 4 || (memcmp(b + s, "TCP4", 4) != 0 && memcmp(b + s, "TCP6", 4) != 0)
        || b[p] != ' ')
        return ERROR;
    int family = b[s + 3] == '4' ? AF_INET : AF_INET6;
    p++;

    size_t src, srcl, dst, dstl, sp, spl, dp, dpl;
    int rc;
    if ((rc = field(b, n, full, &p, addr_char, INET6_ADDRSTRLEN - 1, ' ', &src, &srcl)) != 1)
        return rc;
    if ((rc = field(b, n, full, &p, addr_char, INET6_ADDRSTRLEN - 1, ' ', &dst, &dstl)) != 1)
        return rc;
    if ((rc = field(b, n, full, &p, digit_char, 5, ' ', &sp, &spl)) != 1)
        return rc;
    if ((rc = field(b, n, full, &p, digit_char, 5, '\r', &dp, &dpl)) != 1)
        return rc;
    if (p >= n)
        return full ? ERROR : AGAIN;
    if (b[p] != '\n')
        return ERROR;
    p++;

    pt_proxy_protocol_t out;
    memset(&out, 0, sizeof(out));
    if (parse_port(b + sp, spl, &out.src_port) != 0 || parse_port(b + dp, dpl, &out.dst_port) != 0
        || parse_ip(b + src, srcl, family, out.src_port, &out.src, &out.srclen, out.src_text) != 0
        || parse_ip(b + dst, dstl, family, out.dst_port, &out.dst, &out.dstlen, out.dst_text) != 0)
        return ERROR;
    out.version = 1;
    out.has_addr = 1;
    *pp = out;
    return (ssize_t) p;
}

/* ------------------------------------------------------------------------ */
/* Version 2: 12-byte signature, version/command, family/transport, length,
 * addresses, then TLVs (skipped: nothing here uses them).                    */

static ssize_t parse_v2(const unsigned char *b, size_t len, pt_proxy_protocol_t *pp)
{
    if (len < 13)
        return AGAIN;
    unsigned ver = b[12] >> 4, cmd = b[12] & 0x0f;
    if (ver != 2 || cmd > 1)
        return ERROR;
    if (len < 16)
        return AGAIN;
    size_t plen = ((size_t) b[14] << 8) | b[15];
    size_t total = 16 + plen;
    if (total > PT_PROXY_PROTOCOL_MAX)
        return ERROR;
    if (len < total)
        return AGAIN;

    pt_proxy_protocol_t out;
    memset(&out, 0, sizeof(out));
    out.version = 2;
    unsigned fam = b[13] >> 4, trans = b[13] & 0x0f;
    const unsigned char *a = b + 16;

    /* LOCAL (health checks from the balancer itself), a transport other
     * than stream, or an unspecified/unix/unknown family: accepted, the
     * socket's addresses stay */
    if (cmd == 0 || trans != 1 || (fam != 1 && fam != 2)) {
        *pp = out;
        return (ssize_t) total;
    }
    /* addresses: source then destination (4 or 16 bytes each), then the
     * two ports */
    size_t alen = fam == 1 ? 4 : 16;
    if (plen < 2 * alen + 4)
        return ERROR;
    int af = fam == 1 ? AF_INET : AF_INET6;
    out.src_port = (uint16_t) ((a[2 * alen] << 8) | a[2 * alen + 1]);
    out.dst_port = (uint16_t) ((a[2 * alen + 2] << 8) | a[2 * alen + 3]);
    if (fam == 1) {
        out.src.sin.sin_family = out.dst.sin.sin_family = AF_INET;
        memcpy(&out.src.sin.sin_addr, a, 4);
        memcpy(&out.dst.sin.sin_addr, a + 4, 4);
        out.src.sin.sin_port = htons(out.src_port);
        out.dst.sin.sin_port = htons(out.dst_port);
        out.srclen = out.dstlen = sizeof(struct sockaddr_in);
    } else {
        out.src.sin6.sin6_family = out.dst.sin6.sin6_family = AF_INET6;
        memcpy(&out.src.sin6.sin6_addr, a, 16);
        memcpy(&out.dst.sin6.sin6_addr, a + 16, 16);
        out.src.sin6.sin6_port = htons(out.src_port);
        out.dst.sin6.sin6_port = htons(out.dst_port);
        out.srclen = out.dstlen = sizeof(struct sockaddr_in6);
    }
    inet_ntop(af, a, out.src_text, sizeof(out.src_text));
    inet_ntop(af, a + alen, out.dst_text, sizeof(out.dst_text));
    out.has_addr = 1;
    *pp = out;
    return (ssize_t) total;
}

ssize_t pt_proxy_protocol_parse(const char *buf, size_t len, pt_proxy_protocol_t *pp)
{
    if (len == 0)
        return AGAIN;
    if (buf[0] == 'P') {
        size_t k = len < sizeof(v1_sig) ? len : sizeof(v1_sig);
        if (memcmp(buf, v1_sig, k) != 0)
            return ERROR;
        return k < sizeof(v1_sig) ? AGAIN : parse_v1(buf, len, pp);
    }
    if (buf[0] == '\r') {
        size_t k = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
        if (memcmp(buf, v2_sig, k) != 0)
            return ERROR;
        return parse_v2((const unsigned char *) buf, len, pp);
    }
    return ERROR;
}

/* ------------------------------------------------------------------------ */
/* Reading the header off the connection                                     */

typedef struct {
    void (*next)(pt_conn_t *c);
} pp_wait_t;

/* The first bytes, printable, for the "broken header" message. */
static void log_broken(pt_conn_t *c, const char *b, ssize_t n)
{
    char text[64];
    size_t k = 0;
    for (ssize_t i = 0; i < n && k + 4 < sizeof(text); i++) {
        unsigned char ch = (unsigned char) b[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
            text[k++] = (char) ch;
        } else {
            k += (size_t) snprintf(text + k, sizeof(text) - k, "\\x%02X", ch);
        }
    }
    text[k] = '\0';
    pt_log_error(PT_LOG_ERR, &c->log, 0,
                 "broken header: \"%s\" while reading PROXY protocol, client: %.*s", text,
                 (int) c->addr_text.len, c->addr_text.data ? c->addr_text.data : "");
}

static void on_pp_read(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    pp_wait_t *w = c->data;
    char buf[PT_PROXY_PROTOCOL_MAX];
    pt_proxy_protocol_t pp;
    ssize_t n, rc;

    if (ev->timedout) {
        pt_log_error(PT_LOG_INFO, &c->log, ETIMEDOUT,
                     "client timed out while reading PROXY protocol");
        pt_conn_close(c);
        return;
    }
    if (c->close) {                  /* reclaimed, or shutting down */
        pt_conn_close(c);
        return;
    }
    /* peek: the bytes after the header stay in the socket for the next
     * layer (TLS reads its ClientHello from the socket itself) */
    do {
        n = recv(c->io.fd, buf, sizeof(buf), MSG_PEEK);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            ev->ready = 0;
            return;
        }
        pt_log_error(PT_LOG_INFO, &c->log, errno, "recv() failed while reading PROXY protocol");
        pt_conn_close(c);
        return;
    }
    if (n == 0) {
        pt_log_error(PT_LOG_INFO, &c->log, 0,
                     "client closed connection while reading PROXY protocol");
        pt_conn_close(c);
        return;
    }
    rc = pt_proxy_protocol_parse(buf, (size_t) n, &pp);
    if (rc == PT_PROXY_PROTOCOL_AGAIN) {
        if (ev->eof) {               /* the rest will never come */
            log_broken(c, buf, n);
            pt_conn_close(c);
        }
        /* the data stays unread: the next arrival is a new edge */
        return;
    }
    if (rc < 0) {
        log_broken(c, buf, n);
        pt_conn_close(c);
        return;
    }
    /* consume exactly the header */
    size_t left = (size_t) rc;
    while (left) {
        ssize_t k = recv(c->io.fd, buf, left, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            pt_conn_close(c);
            return;
        }
        left -= (size_t) k;
    }
    if (pp.has_addr) {
        pt_proxy_protocol_t *keep = pt_palloc(c->pool, sizeof(*keep));
        if (keep == NULL) {
            pt_conn_close(c);
            return;
        }
        *keep = pp;
        c->proxy_protocol = keep;
    }
    c->proxy_protocol_read = 1;
    if (ev->timer_set)
        pt_timer_del(ev);
    c->data = NULL;
    c->io.read.handler = NULL;
    c->io.write.handler = NULL;
    pt_conn_reusable(c, 0);
    /* more bytes may already be waiting: no new edge will announce them */
    ev->ready = 1;
    w->next(c);
}

static void on_pp_write(pt_event_t *ev)
{
    (void) ev;
}

int pt_proxy_protocol_start(pt_conn_t *c, void *addr_conf, void (*next)(pt_conn_t *c))
{
    pt_http_addr_conf_t *addr = addr_conf;
    if (!addr->proxy_protocol || c->proxy_protocol_read)
        return 0;

    pt_http_core_srv_conf_t *cscf = addr->default_server;
    if (c->pool == NULL)
        c->pool = pt_pool_create((size_t) cscf->connection_pool_size);
    pp_wait_t *w = c->pool ? pt_palloc(c->pool, sizeof(*w)) : NULL;
    if (w == NULL) {
        pt_log_error(PT_LOG_ALERT, &c->log, 0, "out of memory for a PROXY protocol header");
        pt_conn_close(c);
        return 1;
    }
    w->next = next;
    c->data = w;
    c->io.read.handler = on_pp_read;
    c->io.write.handler = on_pp_write;
    pt_conn_reusable(c, 1);
    pt_timer_add(&c->io.read, cscf->client_header_timeout);
    if (c->io.read.ready)
        on_pp_read(&c->io.read);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* $proxy_protocol_addr, $proxy_protocol_port, $proxy_protocol_server_addr,
 * $proxy_protocol_server_port: from the header, not found without one (or
 * when it carried no addresses: v1 UNKNOWN, v2 LOCAL).                      */

#include "variables.h"

enum { VAR_ADDR, VAR_PORT, VAR_SERVER_ADDR, VAR_SERVER_PORT };

static int get_pp_var(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data)
{
    const pt_proxy_protocol_t *pp = r->connection ? r->connection->proxy_protocol : NULL;
    if (pp == NULL || !pp->has_addr) {
        v->not_found = 1;
        pt_str_set(&v->value, "");
        return PT_OK;
    }
    if (data == VAR_ADDR || data == VAR_SERVER_ADDR) {
        const char *t = data == VAR_ADDR ? pp->src_text : pp->dst_text;
        v->value.data = (char *) t;
        v->value.len = strlen(t);
        return PT_OK;
    }
    char *p = pt_pnalloc(r->pool, 8);
    if (p == NULL)
        return PT_ERROR;
    v->value.len = (size_t) snprintf(p, 8, "%u",
                                     (unsigned) (data == VAR_PORT ? pp->src_port : pp->dst_port));
    v->value.data = p;
    return PT_OK;
}

static int pp_preconf(pt_conf_t *cf)
{
    static const char *names[] = { "proxy_protocol_addr", "proxy_protocol_port",
                                   "proxy_protocol_server_addr", "proxy_protocol_server_port" };
    for (uintptr_t i = 0; i < 4; i++) {
        pt_str_t name = { strlen(names[i]), (char *) names[i] };
        pt_http_var_t *v = pt_http_var_add(cf, &name, 0);
        if (v == NULL)
            return -1;
        v->get = get_pp_var;
        v->data = i;
    }
    return 0;
}

/* Variables only; part of nginx's core module, so not listed by -V. */
pt_module_t pt_http_proxy_protocol_module = {
    .name = "http_proxy_protocol",
    .builtin_core = 1,
    .preconfiguration = pp_preconf,
};
