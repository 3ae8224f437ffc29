/* Listening sockets: address parsing and formatting, binding in the master,
 * and the accept handler each worker registers in its loop.
 *
 * Listening sockets are level-triggered with EPOLLEXCLUSIVE (pt_loop_add_listen):
 * one worker is woken per incoming connection, and a connection left in the
 * backlog wakes someone again on the next iteration, so "one accept per
 * wakeup" (multi_accept off) is safe and spreads connections across workers. */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"

int pt_listening_multi_accept;

/* ---- addresses ----------------------------------------------------------- */

static int parse_port(const char *p, size_t len)
{
    if (len == 0 || len > 5)
        return -1;
    int64_t v = pt_atoi64(p, len);
    if (v < 1 || v > 65535)
        return -1;
    return (int) v;
}

static int all_digits(const char *p, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
    }
    return 1;
}

/* Fills out from host (not NUL-terminated; "*" or empty = any IPv4 address)
 * and port. ipv6 = the host was written in brackets. */
static int set_host(const char *host, size_t hlen, int ipv6, int port,
                    pt_sockaddr_t *out, socklen_t *outlen, const char **err)
{
    char name[256];

    if (hlen >= sizeof(name)) {
        *err = "invalid host";
        return -1;
    }
    memcpy(name, host, hlen);
    name[hlen] = '\0';

    if (ipv6) {
        if (inet_pton(AF_INET6, name, &out->sin6.sin6_addr) != 1) {
            *err = "invalid IPv6 address";
            return -1;
        }
        out->sin6.sin6_family = AF_INET6;
        out->sin6.sin6_port = htons((uint16_t) port);
        *outlen = sizeof(struct sockaddr_in6);
        return 0;
    }

    out->sin.sin_family = AF_INET;
    out->sin.sin_port = htons((uint16_t) port);
    *outlen = sizeof(struct sockaddr_in);

    if (hlen == 0 || (hlen == 1 && name[0] == '*')) {
        out->sin.sin_addr.s_addr = htonl(INADDR_ANY);
        return 0;
    }
    if (inet_pton(AF_INET, name, &out->sin.sin_addr) == 1)
        return 0;

    /* a name: the first address the resolver gives (IPv4 preferred by
     * getaddrinfo's default ordering on a loopback-only host) */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(name, NULL, &hints, &res) != 0 || res == NULL) {
        *err = "host not found";
        return -1;
    }
    int rc = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET && ai->ai_addrlen <= sizeof(*out)) {
            memcpy(&out->sin, ai->ai_addr, sizeof(struct sockaddr_in));
            out->sin.sin_port = htons((uint16_t) port);
            *outlen = sizeof(struct sockaddr_in);
            rc = 0;
            break;
        }
        if (ai->ai_family == AF_INET6 && ai->ai_addrlen <= sizeof(*out)) {
            memcpy(&out->sin6, ai->ai_addr, sizeof(struct sockaddr_in6));
            out->sin6.sin6_port = htons((uint16_t) port);
            *outlen = sizeof(struct sockaddr_in6);
            rc = 0;
            break;
        }
    }
    freeaddrinfo(res);
    if (rc != 0)
        *err = "host not found";
    return rc;
}

int pt_sockaddr_parse(const char *text, size_t len, int default_port,
                      pt_sockaddr_t *out, socklen_t *outlen, const char **err)
{
    const char *dummy;
    if (err == NULL)
        err = &dummy;
    memset(out, 0, sizeof(*out));
    *outlen = 0;

    if (len >= 5 && memcmp(text, "unix:", 5) == 0) {
        const char *path = text + 5;
        size_t plen = len - 5;
        if (plen == 0) {
            *err = "no path in the unix domain socket";
            return -1;
        }
        if (plen >= sizeof(out->sun.sun_path)) {
            *err = "too long path in the unix domain socket";
            return -1;
        }
        if (memchr(path, '\0', plen) != NULL) {
            *err = "invalid path in the unix domain socket";
            return -1;
        }
        out->sun.sun_family = AF_UNIX;
        memcpy(out->sun.sun_path, path, plen);
        *outlen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + plen + 1);
        return 0;
    }

    if (len == 0) {
        *err = "invalid address";
        return -1;
    }

    const char *host = text, *port_text = NULL;
    size_t hlen = 0, plen = 0;
    int ipv6 = 0;

    if (text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (close == NULL) {
            *err = "invalid IPv6 address";
            return -1;
        }
        host = text + 1;
        hlen = (size_t) (close - host);
        ipv6 = 1;
        size_t rest = len - (size_t) (close + 1 - text);
        if (rest > 0) {
            if (close[1] != ':') {
                *err = "invalid host";
                return -1;
            }
            port_text = close + 2;
            plen = rest - 1;
            if (plen == 0) {
                *err = "invalid port";
                return -1;
            }
        }
    } else {
        const char *colon = memchr(text, ':', len);
        if (colon != NULL) {
            if (memchr(colon + 1, ':', len - (size_t) (colon + 1 - text)) != NULL) {
                /* an IPv6 address must be written in brackets */
                *err = "invalid host";
                return -1;
            }
            hlen = (size_t) (colon - text);
            port_text = colon + 1;
            plen = len - hlen - 1;
            if (plen == 0) {
                *err = "invalid port";
                return -1;
            }
            if (hlen == 0) {
                *err = "no host";
                return -1;
            }
        } else if (all_digits(text, len)) {
            /* "8080": a port on every address */
            hlen = 0;
            port_text = text;
            plen = len;
        } else {
            hlen = len;
        }
    }

    int port;
    if (port_text != NULL) {
        port = parse_port(port_text, plen);
        if (port < 0) {
            *err = "invalid port";
            return -1;
        }
    } else {
        if (default_port <= 0 || default_port > 65535) {
            *err = "no port";
            return -1;
        }
        port = default_port;
    }

    return set_host(host, hlen, ipv6, port, out, outlen, err);
}

/* Decimal digits of v at p; returns the end. */
static char *put_uint(char *p, unsigned v)
{
    char tmp[10];
    size_t n = 0;

    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

size_t pt_sockaddr_text(const struct sockaddr *sa, socklen_t len, char *buf,
                        size_t size, int with_port)
{
    char host[INET6_ADDRSTRLEN];
    int n = 0;

    if (size == 0)
        return 0;
    buf[0] = '\0';

    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *) sa;
        /* by hand: inet_ntop + snprintf cost ~1,900 instructions, a good
         * tenth of a whole proxied request, on every accepted connection */
        if (size >= sizeof("255.255.255.255:65535")) {
            const unsigned char *a = (const unsigned char *) &sin->sin_addr;
            char *p = buf;
            for (int i = 0; i < 4; i++) {
                if (i > 0)
                    *p++ = '.';
                p = put_uint(p, a[i]);
            }
            if (with_port) {
                *p++ = ':';
                p = put_uint(p, ntohs(sin->sin_port));
            }
            *p = '\0';
            return (size_t) (p - buf);
        }
        if (inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)) == NULL)
            return 0;
        n = with_port ? snprintf(buf, size, "%s:%u", host, (unsigned) ntohs(sin->sin_port))
                      : snprintf(buf, size, "%s", host);
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *) sa;
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)) == NULL)
            return 0;
        n = with_port ? snprintf(buf, size, "[%s]:%u", host, (unsigned) ntohs(sin6->sin6_port))
                      : snprintf(buf, size, "%s", host);
        break;
    }
    case AF_UNIX: {
        const struct sockaddr_un *sun = (const struct sockaddr_un *) sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t plen = 0;
        if (len > off && sun->sun_path[0] != '\0')
            plen = strnlen(sun->sun_path, (size_t) len - off);
        n = snprintf(buf, size, "unix:%.*s", (int) plen, sun->sun_path);
        break;
    }
    default:
        return 0;
    }

    if (n < 0)
        return 0;
    return (size_t) n < size ? (size_t) n : size - 1;
}

int pt_sockaddr_eq(const struct sockaddr *a, socklen_t alen,
                   const struct sockaddr *b, socklen_t blen)
{
    if (a->sa_family != b->sa_family)
        return 0;

    switch (a->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *x = (const void *) a, *y = (const void *) b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *x = (const void *) a, *y = (const void *) b;
        return x->sin6_port == y->sin6_port
               && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0
               && x->sin6_scope_id == y->sin6_scope_id;
    }
    case AF_UNIX: {
        const struct sockaddr_un *x = (const void *) a, *y = (const void *) b;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t xl = alen > off ? strnlen(x->sun_path, (size_t) alen - off) : 0;
        size_t yl = blen > off ? strnlen(y->sun_path, (size_t) blen - off) : 0;
        return xl == yl && memcmp(x->sun_path, y->sun_path, xl) == 0;
    }
    default:
        return alen == blen && memcmp(a, b, alen) == 0;
    }
}

/* ---- records ------------------------------------------------------------- */

pt_listening_t *pt_listening_add(pt_array_t *listening, const struct sockaddr *sa,
                                 socklen_t len)
{
    pt_listening_t *all = listening->elts;

    if (len == 0 || len > sizeof(pt_sockaddr_t))
        return NULL;

    for (size_t i = 0; i < listening->nelts; i++) {
        if (pt_sockaddr_eq(&all[i].addr.sa, all[i].socklen, sa, len))
            return &all[i];
    }

    pt_listening_t *ls = pt_array_push(listening);
    if (ls == NULL)
        return NULL;
    memset(ls, 0, sizeof(*ls));
    memcpy(&ls->addr, sa, len);
    ls->socklen = len;
    pt_sockaddr_text(sa, len, ls->addr_text, sizeof(ls->addr_text), 1);
    ls->fd = -1;
    ls->backlog = 511;
    ls->rcvbuf = -1;
    ls->sndbuf = -1;
    ls->ipv6only = 1;
    ls->io.fd = -1;
    return ls;
}

/* ---- binding (master) ---------------------------------------------------- */

static void remove_stale_unix_socket(const pt_listening_t *ls, pt_log_t *log)
{
    struct stat st;
    const char *path = ls->addr.sun.sun_path;

    if (path[0] == '\0')
        return;   /* abstract namespace */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        if (unlink(path) != 0)
            pt_log_error(PT_LOG_EMERG, log, errno, "unlink() \"%s\" failed", path);
    }
}

static int open_socket(const pt_listening_t *ls, pt_log_t *log)
{
    int family = ls->addr.sa.sa_family;
    int one = 1;

    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "socket() %s failed", ls->addr_text);
        return -1;
    }

    if (family != AF_UNIX) {
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
            pt_log_error(PT_LOG_EMERG, log, errno,
                         "setsockopt(SO_REUSEADDR) %s failed", ls->addr_text);
            goto failed;
        }
    }
    if (ls->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        pt_log_error(PT_LOG_EMERG, log, errno,
                     "setsockopt(SO_REUSEPORT) %s failed", ls->addr_text);
        goto failed;
    }
    if (family == AF_INET6) {
        int v6only = ls->ipv6only ? 1 : 0;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) != 0) {
            pt_log_error(PT_LOG_EMERG, log, errno,
                         "setsockopt(IPV6_V6ONLY) %s failed, ignored", ls->addr_text);
        }
    }
    if (ls->rcvbuf > 0
        && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &ls->rcvbuf, sizeof(ls->rcvbuf)) != 0) {
        pt_log_error(PT_LOG_ALERT, log, errno,
                     "setsockopt(SO_RCVBUF, %d) %s failed, ignored", ls->rcvbuf, ls->addr_text);
    }
    if (ls->sndbuf > 0
        && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &ls->sndbuf, sizeof(ls->sndbuf)) != 0) {
        pt_log_error(PT_LOG_ALERT, log, errno,
                     "setsockopt(SO_SNDBUF, %d) %s failed, ignored", ls->sndbuf, ls->addr_text);
    }

    if (family == AF_UNIX)
        remove_stale_unix_socket(ls, log);

    if (bind(fd, &ls->addr.sa, ls->socklen) != 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "bind() to %s failed", ls->addr_text);
        goto failed;
    }

    int backlog = ls->backlog == 0 ? 511 : ls->backlog;
    if (listen(fd, backlog) != 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "listen() to %s, backlog %d failed",
                     ls->addr_text, backlog);
        if (family == AF_UNIX)
            unlink(ls->addr.sun.sun_path);
        goto failed;
    }

    if (ls->deferred && family != AF_UNIX) {
        int secs = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs)) != 0) {
            pt_log_error(PT_LOG_ALERT, log, errno,
                         "setsockopt(TCP_DEFER_ACCEPT) for %s failed, ignored", ls->addr_text);
        }
    }

    return fd;

failed:
    close(fd);
    return -1;
}

int pt_listening_open(pt_listening_t *ls, pt_log_t *log)
{
    int fd = open_socket(ls, log);
    if (fd < 0)
        return -1;
    ls->fd = fd;
    ls->inherited = 0;
    return 0;
}

int pt_listening_open_fd(const pt_listening_t *ls, pt_log_t *log)
{
    if (ls->addr.sa.sa_family == AF_UNIX)
        return -1;   /* one socket per path */
    return open_socket(ls, log);
}

int pt_listening_reconfigure(const pt_listening_t *ls, const pt_listening_t *old, int fd,
                             int want_reuseport, pt_log_t *log)
{
    int one = 1;
    int tcp = ls->addr.sa.sa_family != AF_UNIX;

    if (want_reuseport && tcp
        && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        pt_log_error(PT_LOG_EMERG, log, errno,
                     "setsockopt(SO_REUSEPORT) %s failed", ls->addr_text);
        return -1;
    }

    int backlog = ls->backlog == 0 ? 511 : ls->backlog;
    int old_backlog = old ? (old->backlog == 0 ? 511 : old->backlog) : -2;
    if (old != NULL && backlog != old_backlog && listen(fd, backlog) != 0)
        pt_log_error(PT_LOG_ALERT, log, errno, "listen() to %s, backlog %d failed, ignored",
                     ls->addr_text, backlog);
    if (ls->rcvbuf > 0 && (old == NULL || old->rcvbuf != ls->rcvbuf)
        && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &ls->rcvbuf, sizeof(ls->rcvbuf)) != 0)
        pt_log_error(PT_LOG_ALERT, log, errno,
                     "setsockopt(SO_RCVBUF, %d) %s failed, ignored", ls->rcvbuf, ls->addr_text);
    if (ls->sndbuf > 0 && (old == NULL || old->sndbuf != ls->sndbuf)
        && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &ls->sndbuf, sizeof(ls->sndbuf)) != 0)
        pt_log_error(PT_LOG_ALERT, log, errno,
                     "setsockopt(SO_SNDBUF, %d) %s failed, ignored", ls->sndbuf, ls->addr_text);
    if (tcp && (old == NULL ? ls->deferred : old->deferred != ls->deferred)) {
        int secs = ls->deferred ? 1 : 0;
        if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs)) != 0)
            pt_log_error(PT_LOG_ALERT, log, errno,
                         "setsockopt(TCP_DEFER_ACCEPT) for %s failed, ignored", ls->addr_text);
    }
    return 0;
}

void pt_listening_close(pt_listening_t *ls)
{
    for (unsigned i = 1; i < ls->nworker_fds; i++) {
        if (ls->worker_fds[i] >= 0)
            close(ls->worker_fds[i]);
        ls->worker_fds[i] = -1;
    }
    if (ls->nworker_fds > 0)
        ls->worker_fds[0] = -1;
    if (ls->fd < 0)
        return;
    close(ls->fd);
    ls->fd = -1;
    if (ls->addr.sa.sa_family == AF_UNIX && ls->addr.sun.sun_path[0] != '\0')
        unlink(ls->addr.sun.sun_path);
}

/* ---- accepting (worker) -------------------------------------------------- */

void pt_listening_select_worker(pt_array_t *listening, int slot)
{
    pt_listening_t *all = listening->elts;

    for (size_t i = 0; i < listening->nelts; i++) {
        pt_listening_t *ls = &all[i];
        if (ls->nworker_fds == 0)
            continue;
        unsigned mine = slot >= 0 ? (unsigned) slot % ls->nworker_fds : 0;
        for (unsigned k = 0; k < ls->nworker_fds; k++) {
            if (k != mine && ls->worker_fds[k] >= 0)
                close(ls->worker_fds[k]);
        }
        ls->fd = ls->worker_fds[mine];
        /* this process's copy of the array (copy-on-write after fork) */
        ls->worker_fds = NULL;
        ls->nworker_fds = 0;
    }
}

static pt_array_t *started;        /* the listeners registered in this worker */
static int         accept_paused;  /* unregistered for a while (EMFILE, table full) */
static pt_event_t  resume_ev;

static void on_accept(pt_event_t *ev);

static int register_all(pt_array_t *listening)
{
    pt_listening_t *all = listening->elts;
    int rc = 0;

    for (size_t i = 0; i < listening->nelts; i++) {
        pt_listening_t *ls = &all[i];
        if (ls->fd < 0 || ls->handler == NULL) {
            ls->io.fd = -1;
            continue;
        }
        ls->io.fd = ls->fd;
        ls->io.read.handler = on_accept;
        ls->io.read.data = ls;
        ls->io.write.handler = NULL;
        ls->io.write.data = ls;
        ls->io.read.timer_index = SIZE_MAX;
        ls->io.write.timer_index = SIZE_MAX;
        if (pt_loop_add_listen(&ls->io) != 0) {
            pt_log_error(PT_LOG_ALERT, ls->log, errno,
                         "cannot watch listening socket %s", ls->addr_text);
            ls->io.fd = -1;
            rc = -1;
        }
    }
    return rc;
}

static void unregister_all(pt_array_t *listening)
{
    pt_listening_t *all = listening->elts;

    /* io.fd is this worker's "registered" mark; ls->fd stays open */
    for (size_t i = 0; i < listening->nelts; i++) {
        if (all[i].io.fd >= 0) {
            pt_loop_del_io(&all[i].io);
            all[i].io.fd = -1;
        }
    }
}

static void on_resume(pt_event_t *ev)
{
    (void) ev;
    if (!accept_paused || started == NULL)
        return;
    accept_paused = 0;
    register_all(started);
}

/* Stops accepting for msec: the listening sockets are level-triggered, so
 * leaving them registered while we cannot take a connection would spin. */
static void pause_accept(int64_t msec)
{
    if (accept_paused || started == NULL)
        return;
    accept_paused = 1;
    unregister_all(started);
    resume_ev.handler = on_resume;
    resume_ev.data = NULL;
    pt_timer_add(&resume_ev, msec);
}

/* Accepts one connection on ls and hands it to ls->handler. Returns 1 when
 * one was taken, 0 when the queue is empty or accepting must pause. */
static int accept_one(pt_listening_t *ls, pt_event_t *ev)
{
    pt_log_t *log = ls->log ? ls->log : pt_log_default;
    pt_sockaddr_t sa;
    socklen_t len;
    int fd;

    for (;;) {
        len = sizeof(sa);
        fd = accept4(ls->fd, &sa.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            break;
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            ev->ready = 0;
            return 0;
        }
        if (err == EINTR || err == ECONNABORTED || err == EPROTO)
            continue;
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
            pt_log_error(PT_LOG_CRIT, log, err, "accept4() failed");
            pause_accept(500);
            return 0;
        }
        pt_log_error(PT_LOG_ALERT, log, err, "accept4() failed");
        return 0;
    }

    pt_conn_stats.accepted++;

    /* no TCP_NODELAY here: a response followed by close() is pushed out by
     * the FIN whatever Nagle says; the protocols call pt_conn_nodelay() when
     * a connection stays open after a response (keep-alive), for HTTP/2,
     * TLS and tunnels (as nginx's tcp_nodelay) */
    pt_conn_t *c = pt_conn_get_accepted(fd, log);
    if (c == NULL) {
        close(fd);
        pause_accept(100);
        return 0;
    }
    pt_conn_stats.handled++;
    pt_conn_stats.active++;         /* pt_conn_close() takes it back */

    c->listening = ls;
    memcpy(&c->sockaddr, &sa, len <= sizeof(sa) ? len : sizeof(sa));
    c->socklen = len;
    if (sa.sa.sa_family == AF_UNIX)
        c->unix_socket = 1;
    size_t n = pt_sockaddr_text(&sa.sa, len, c->_addr_buf, sizeof(c->_addr_buf), 0);
    c->addr_text.data = c->_addr_buf;
    c->addr_text.len = n;

    ls->handler(c);
    return 1;
}

static void on_accept(pt_event_t *ev)
{
    pt_listening_t *ls = ev->data;

    while (accept_one(ls, ev)) {
        if (!pt_listening_multi_accept || accept_paused)
            return;
        /* the handler may have stopped this listener (shutdown) */
        if (ls->io.fd < 0)
            return;
    }
}

void pt_listening_drain(pt_array_t *listening, unsigned max)
{
    pt_listening_t *all = listening->elts;

    for (size_t i = 0; i < listening->nelts && max > 0; i++) {
        pt_listening_t *ls = &all[i];
        if (!ls->reuseport || ls->io.fd < 0 || ls->addr.sa.sa_family == AF_UNIX)
            continue;
        while (max > 0 && !accept_paused && ls->io.fd >= 0 && accept_one(ls, &ls->io.read))
            max--;
    }
}

int pt_listening_start(pt_array_t *listening)
{
    started = listening;
    accept_paused = 0;
    resume_ev.timer_index = SIZE_MAX;
    return register_all(listening);
}

void pt_listening_stop(pt_array_t *listening)
{
    if (resume_ev.timer_set)
        pt_timer_del(&resume_ev);
    accept_paused = 0;
    unregister_all(listening);
    if (listening == started)
        started = NULL;
}
