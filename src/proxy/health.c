/* Module "http_upstream_hc": active health checks (what nginx keeps for its
 * paid edition), in the upstream block or, as nginx Plus, in the location
 * whose proxy_pass names the group:
 *
 *   health_check [interval=5s] [fails=1] [passes=1] [uri=/] [match=NAME] [port=N]
 *                [mandatory [persistent]];
 *   match NAME { status 200-399; header Name = value; header Name ~ re; body ~ "re"; }
 *
 * The group needs a `zone`: health state lives with the peers in shared
 * memory, and exactly one worker probes a group at a time. That worker holds
 * a lease in the group's shared state (its pid and a deadline of three
 * intervals, renewed every interval); when it exits (or dies) the lease runs
 * out or its pid is gone and the next worker to tick takes over. So a backend
 * is probed once per interval, not once per worker.
 *
 * In a location, the probes use that location's proxy settings: TLS when its
 * proxy_pass is https:// (its proxy_ssl_*: SNI name, verify, trusted
 * certificates, client certificate) and the Host header the proxy sends when
 * it is fixed (a literal proxy_set_header Host, else the proxy_pass host). In
 * the upstream block the probes are plain HTTP with the peer's address as
 * Host. A group has at most one health check (exactly one prober).
 *
 * A probe is a fresh connection to the peer (or to port=), a
 * "GET uri HTTP/1.1" with Connection: close, and the response read up to
 * 16 KB or the close; the timeout is the interval (at least 1 s). Without a
 * match block a 2xx or 3xx status passes. `fails` consecutive failures make
 * the peer unhealthy (no traffic), `passes` consecutive passes bring it back
 * (with its slow_start ramp). `mandatory`: a new peer (startup, API,
 * resolver, a group rebuilt by a reload) is `checking` (no traffic) until its
 * first verdict; `persistent`: a peer healthy before such a reload is not.
 * Every change is logged: warn when a peer goes
 * unhealthy, notice when it recovers. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "balancer.h"
#include "health.h"
#include "../config/cycle.h"
#include "../core/loop.h"
#include "../core/time.h"
#include "../net/conn.h"

#define HC_MAX_RESPONSE  16384

pt_module_t pt_http_upstream_hc_module;

/* match { } conditions */
enum { M_STATUS, M_HEADER, M_BODY };
enum { OP_PRESENT, OP_ABSENT, OP_EQ, OP_NE, OP_RE, OP_NRE };

typedef struct {
    unsigned        type;
    unsigned        op;
    int             negate;          /* status ! ... */
    int             ranges[16][2];   /* status ranges */
    unsigned        nranges;
    pt_str_t        name;            /* header name */
    pt_str_t        value;
    pt_http_regex_t re;
} hc_cond_t;

typedef struct {
    pt_str_t   name;
    pt_array_t conds;                /* hc_cond_t */
    const char *file;
    unsigned   line;
} hc_match_t;

typedef struct {
    pt_array_t matches;              /* hc_match_t * */
    pt_array_t checks;               /* pt_upstream_hc_t * */
} hc_main_conf_t;

typedef struct hc_probe_s hc_probe_t;

struct pt_upstream_hc_s {
    pt_upstream_group_t *group;
    int64_t              interval;
    unsigned             fails;
    unsigned             passes;
    pt_str_t             uri;
    pt_str_t             match_name;
    hc_match_t          *match;
    in_port_t            port;       /* 0: the peer's */
    unsigned             flags;      /* PT_HC_MANDATORY, PT_HC_PERSISTENT */
    const char          *file;
    unsigned             line;
    void               **loc_conf;   /* in a location: its confs; NULL in upstream */
    pt_tls_upstream_conf_t *tls;     /* https probes (location with https://) */
    pt_str_t             host;       /* Host header; empty: the peer's address */
    pt_str_t             sni;        /* TLS name */
    /* per worker */
    pt_event_t           timer;
    pt_cycle_t          *cycle;
    hc_probe_t          *probes;     /* in flight (freed at exit) */
    unsigned             inflight;
    unsigned             owner:1;
};

struct hc_probe_s {
    pt_conn_t         *c;            /* NULL until connected / after the end */
    hc_probe_t        *next, **prevp;
    pt_upstream_hc_t  *hc;
    pt_upstream_peer_t *peer;
    unsigned           id;           /* peer->id at launch: a reused slot is not judged */
    char              *req;
    size_t             req_len, sent;
    char               buf[HC_MAX_RESPONSE];
    size_t             len;
    unsigned           connected:1;
    unsigned           done:1;
};

static hc_main_conf_t *hmcf_of(pt_conf_t *cf)
{
    return cf->http_ctx->main_conf[pt_http_upstream_hc_module.index];
}

/* ------------------------------------------------------------------------ */
/* Evaluation of a response */

typedef struct {
    int      status;
    pt_str_t head;       /* header lines */
    pt_str_t body;
} hc_response_t;

static int parse_response(const char *buf, size_t len, hc_response_t *res)
{
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
        return -1;
    if (buf[8] != ' ' || buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9'
        || buf[11] < '0' || buf[11] > '9')
        return -1;
    res->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL)
        return -1;
    const char *hs = memchr(buf, '\n', len);
    res->head.data = (char *) hs + 1;
    res->head.len = (size_t) (end + 2 - (hs + 1));
    res->body.data = (char *) end + 4;
    res->body.len = len - (size_t) (end + 4 - buf);
    return 0;
}

/* Finds header `name`; returns 1 and its value, or 0. */
static int find_header(const pt_str_t *head, const pt_str_t *name, pt_str_t *value)
{
    const char *p = head->data, *end = head->data + head->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t) (end - p));
        if (eol == NULL)
            eol = end;
        const char *colon = memchr(p, ':', (size_t) (eol - p));
        if (colon && (size_t) (colon - p) == name->len && strncasecmp(p, name->data, name->len) == 0) {
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            value->data = (char *) v;
            value->len = (size_t) (ve - v);
            return 1;
        }
        p = eol + 1;
    }
    return 0;
}

/* 1 when the response passes; *why is set when it does not. */
static int evaluate(const pt_upstream_hc_t *hc, const hc_response_t *res, const char **why)
{
    if (hc->match == NULL) {
        if (res->status >= 200 && res->status < 400)
            return 1;
        *why = "bad status";
        return 0;
    }
    hc_cond_t *c = hc->match->conds.elts;
    for (size_t i = 0; i < hc->match->conds.nelts; i++) {
        if (c[i].type == M_STATUS) {
            int in = 0;
            for (unsigned k = 0; k < c[i].nranges; k++)
                if (res->status >= c[i].ranges[k][0] && res->status <= c[i].ranges[k][1])
                    in = 1;
            if (in == c[i].negate) {
                *why = "status does not match";
                return 0;
            }
        } else if (c[i].type == M_HEADER) {
            pt_str_t v;
            int has = find_header(&res->head, &c[i].name, &v);
            int okc = 0;
            switch (c[i].op) {
            case OP_PRESENT: okc = has; break;
            case OP_ABSENT:  okc = !has; break;
            case OP_EQ:      okc = has && pt_str_eq(&v, &c[i].value); break;
            case OP_NE:      okc = !has || !pt_str_eq(&v, &c[i].value); break;
            case OP_RE:      okc = has && pt_http_regex_exec(NULL, &c[i].re, &v) == 1; break;
            case OP_NRE:     okc = !has || pt_http_regex_exec(NULL, &c[i].re, &v) == 0; break;
            }
            if (!okc) {
                *why = "header does not match";
                return 0;
            }
        } else {
            int m = pt_http_regex_exec(NULL, &c[i].re, &res->body) == 1;
            if (m != (c[i].op == OP_RE)) {
                *why = "body does not match";
                return 0;
            }
        }
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Applying a result (shared state, under the group's lock) */

static void report(pt_upstream_hc_t *hc, pt_upstream_peer_t *peer, unsigned id, int pass,
                   const char *why)
{
    pt_upstream_group_t *g = hc->group;
    int change = 0, now_unhealthy = 0;
    char name[160];

    pt__upstream_lock(g);
    if (peer->id != id || peer->removed) {
        pt__upstream_unlock(g);
        return;
    }
    snprintf(name, sizeof(name), "%.*s", (int) peer->name.len, peer->name.data);
    if (peer->checking) {
        /* mandatory: the first verdict decides */
        peer->checking = 0;
        if (pass) {
            peer->hc_fails = 0;
            peer->hc_passes = hc->passes;
            peer->unhealthy = 0;
            peer->start_time = pt_current_msec;
        } else {
            peer->hc_passes = 0;
            peer->hc_fails = hc->fails;
        }
        pt__upstream_unlock(g);
        pt_log_error(pass ? PT_LOG_INFO : PT_LOG_WARN, hc->cycle->log, 0,
                     "peer %s in upstream \"%.*s\" is %s after its first health check%s%s%s",
                     name, (int) g->name.len, g->name.data, pass ? "healthy" : "unhealthy",
                     pass ? "" : " (", pass ? "" : (why ? why : "error"), pass ? "" : ")");
        return;
    }
    if (pass) {
        peer->hc_fails = 0;
        peer->hc_passes++;
        if (peer->unhealthy && peer->hc_passes >= hc->passes) {
            peer->unhealthy = 0;
            peer->fails = 0;
            peer->effective_weight = peer->weight;
            peer->start_time = pt_current_msec;
            change = 1;
        }
    } else {
        peer->hc_passes = 0;
        peer->hc_fails++;
        if (!peer->unhealthy && peer->hc_fails >= hc->fails) {
            peer->unhealthy = 1;
            change = 1;
            now_unhealthy = 1;
        }
    }
    pt__upstream_unlock(g);

    if (change && now_unhealthy)
        pt_log_error(PT_LOG_WARN, hc->cycle->log, 0,
                     "peer %s in upstream \"%.*s\" is unhealthy: health check failed (%s)", name,
                     (int) g->name.len, g->name.data, why ? why : "error");
    else if (change)
        pt_log_error(PT_LOG_NOTICE, hc->cycle->log, 0,
                     "peer %s in upstream \"%.*s\" is healthy again", name,
                     (int) g->name.len, g->name.data);
    else if (!pass)
        pt_log_error(PT_LOG_INFO, hc->cycle->log, 0,
                     "health check of peer %s in upstream \"%.*s\" failed (%s)", name,
                     (int) g->name.len, g->name.data, why ? why : "error");
}

/* ------------------------------------------------------------------------ */
/* Probes */

static void probe_free(void *p)
{
    hc_probe_t *pr = p;
    free(pr->req);
    free(pr);
}

static void probe_close(hc_probe_t *pr)
{
    pt_conn_t *c = pr->c;
    if (c == NULL)
        return;
    pr->c = NULL;
    pt_timer_del(&c->io.read);
    pt_timer_del(&c->io.write);
    c->data = NULL;
    pt_conn_close(c);
}

static void probe_finish(hc_probe_t *pr, int pass, const char *why)
{
    if (pr->done)
        return;
    pr->done = 1;
    probe_close(pr);
    pr->hc->inflight--;
    *pr->prevp = pr->next;
    if (pr->next)
        pr->next->prevp = pr->prevp;
    report(pr->hc, pr->peer, pr->id, pass, why);
    pt_loop_defer_free(probe_free, pr);
}

static void probe_judge(hc_probe_t *pr)
{
    hc_response_t res;
    const char *why = NULL;
    if (parse_response(pr->buf, pr->len, &res) != 0) {
        probe_finish(pr, 0, "invalid response");
        return;
    }
    int pass = evaluate(pr->hc, &res, &why);
    probe_finish(pr, pass, why);
}

static hc_probe_t *probe_of(pt_event_t *ev)
{
    pt_conn_t *c = ev->data;
    hc_probe_t *pr = c ? c->data : NULL;
    return pr == NULL || pr->done || pr->c != c ? NULL : pr;
}

static void on_probe_read(pt_event_t *ev)
{
    hc_probe_t *pr = probe_of(ev);
    if (pr == NULL)
        return;
    if (ev->timedout) {
        probe_finish(pr, 0, "timed out");
        return;
    }
    if (!pr->connected || pr->sent < pr->req_len)
        return;          /* the write side is still busy */
    for (;;) {
        if (pr->len == sizeof(pr->buf)) {
            probe_judge(pr);
            return;
        }
        ssize_t n = pr->c->recv(pr->c, pr->buf + pr->len, sizeof(pr->buf) - pr->len);
        if (n > 0) {
            pr->len += (size_t) n;
            continue;
        }
        if (n == 0) {
            probe_judge(pr);
            return;
        }
        if (n == PT_IO_AGAIN)
            return;
        /* a peer that answered in full and then reset still answered */
        if (pr->len && memmem(pr->buf, pr->len, "\r\n\r\n", 4) != NULL) {
            probe_judge(pr);
            return;
        }
        probe_finish(pr, 0, pr->len ? "read error" : "connection refused or reset");
        return;
    }
}

static void probe_send(hc_probe_t *pr)
{
    pt_conn_t *c = pr->c;
    while (pr->sent < pr->req_len) {
        ssize_t n = c->send(c, pr->req + pr->sent, pr->req_len - pr->sent);
        if (n > 0) {
            pr->sent += (size_t) n;
            continue;
        }
        if (n == PT_IO_AGAIN)
            return;
        probe_finish(pr, 0, "send() failed");
        return;
    }
    pt_timer_del(&c->io.write);
    on_probe_read(&c->io.read);
}

static void on_probe_write(pt_event_t *ev);

static void on_probe_tls_done(pt_conn_t *c, int rc)
{
    hc_probe_t *pr = c->data;
    int timedout = c->io.write.timedout || c->io.read.timedout;
    c->io.read.timedout = c->io.write.timedout = 0;
    c->io.read.handler = on_probe_read;
    c->io.write.handler = on_probe_write;
    if (pr == NULL || pr->done || pr->c != c)
        return;
    if (rc != 0) {
        probe_finish(pr, 0, timedout ? "timed out" : "TLS handshake failed");
        return;
    }
    pr->connected = 1;
    probe_send(pr);
}

static void on_probe_write(pt_event_t *ev)
{
    hc_probe_t *pr = probe_of(ev);
    if (pr == NULL)
        return;
    if (ev->timedout) {
        probe_finish(pr, 0, "timed out");
        return;
    }
    if (!pr->connected) {
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(pr->c->io.fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0 || err != 0) {
            probe_finish(pr, 0, "connect() failed");
            return;
        }
        if (pr->hc->tls != NULL) {
            /* the handshake runs under the same timers; the TLS code owns
             * the handlers until it calls back */
            pt_tls_upstream_connect(pr->c, pr->hc->tls, &pr->hc->sni, on_probe_tls_done);
            return;
        }
        pr->connected = 1;
    }
    probe_send(pr);
}

static void probe_start(pt_upstream_hc_t *hc, pt_upstream_peer_t *peer, unsigned id,
                        const pt_sockaddr_t *sa, socklen_t len)
{
    hc_probe_t *pr = calloc(1, sizeof(*pr));
    if (pr == NULL)
        return;
    pr->hc = hc;
    pr->peer = peer;
    pr->id = id;
    hc->inflight++;
    pr->next = hc->probes;
    pr->prevp = &hc->probes;
    if (hc->probes)
        hc->probes->prevp = &pr->next;
    hc->probes = pr;

    pt_sockaddr_t addr = *sa;
    char host[160];
    size_t hl = pt_sockaddr_text(&addr.sa, len, host, sizeof(host), 1);
    if (hc->port) {
        if (addr.sa.sa_family == AF_INET)
            addr.sin.sin_port = htons(hc->port);
        else if (addr.sa.sa_family == AF_INET6)
            addr.sin6.sin6_port = htons(hc->port);
    }
    const char *hv = host;
    size_t hvl = hl;
    if (hc->host.len) {
        hv = hc->host.data;
        hvl = hc->host.len;
    } else if (addr.sa.sa_family == AF_UNIX) {
        hv = "localhost";
        hvl = 9;
    }
    size_t cap = hc->uri.len + hvl + 160;
    pr->req = malloc(cap);
    if (pr->req == NULL) {
        probe_finish(pr, 0, "out of memory");
        return;
    }
    int n = snprintf(pr->req, cap,
                     "GET %.*s HTTP/1.1\r\nHost: %.*s\r\nUser-Agent: portico-health-check\r\n"
                     "Connection: close\r\n\r\n", (int) hc->uri.len, hc->uri.data,
                     (int) hvl, hv);
    pr->req_len = n > 0 ? (size_t) n : 0;

    int fd = socket(addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        probe_finish(pr, 0, "socket() failed");
        return;
    }
    int rc = connect(fd, &addr.sa, len);
    if (rc != 0 && errno != EINPROGRESS) {
        close(fd);
        probe_finish(pr, 0, "connect() failed");
        return;
    }
    pt_conn_t *c = pt_conn_get(fd, hc->cycle->log);
    if (c == NULL) {
        close(fd);
        probe_finish(pr, 0, "no free connection");
        return;
    }
    c->upstream = 1;
    c->unix_socket = addr.sa.sa_family == AF_UNIX;
    c->data = pr;
    c->io.read.handler = on_probe_read;
    c->io.write.handler = on_probe_write;
    pr->c = c;
    int64_t timeout = hc->interval < 1000 ? 1000 : hc->interval;
    pt_timer_add(&c->io.read, timeout);
    pt_timer_add(&c->io.write, timeout);
    /* the write event reports the connect's outcome */
}

/* ------------------------------------------------------------------------ */
/* The per-group tick */

static int take_lease(pt_upstream_hc_t *hc)
{
    pt_upstream_shared_t *sh = hc->group->ext->shared;
    int me = (int) getpid();
    int64_t now = pt_current_msec;
    int mine = 0;

    pt__upstream_lock(hc->group);
    if (pt_conn_shutting_down) {
        if (sh->hc_owner == me) {
            sh->hc_owner = 0;
            sh->hc_lease = 0;
        }
    } else if (sh->hc_owner == me || sh->hc_owner == 0 || now > sh->hc_lease
               || (kill(sh->hc_owner, 0) != 0 && errno == ESRCH)) {
        sh->hc_owner = me;
        sh->hc_lease = now + 3 * hc->interval + 1000;
        mine = 1;
    }
    pt__upstream_unlock(hc->group);
    return mine;
}

typedef struct {
    pt_upstream_peer_t *peer;
    unsigned            id;
    pt_sockaddr_t       sa;
    socklen_t           len;
} hc_target_t;

static void on_tick(pt_event_t *ev)
{
    pt_upstream_hc_t *hc = ev->data;
    int mine = take_lease(hc);

    if (mine && !hc->owner)
        pt_log_error(PT_LOG_INFO, hc->cycle->log, 0,
                     "worker %d probes upstream \"%.*s\"", (int) getpid(),
                     (int) hc->group->name.len, hc->group->name.data);
    hc->owner = mine ? 1 : 0;

    if (mine && hc->inflight == 0) {
        /* copy the targets under the lock, connect outside it */
        hc_target_t targets[256];
        unsigned n = 0;
        pt__upstream_lock(hc->group);
        for (pt_upstream_peers_t *ps = hc->group->peers; ps; ps = ps->next) {
            for (unsigned i = 0; i < ps->number && n < 256; i++) {
                pt_upstream_peer_t *p = &ps->peer[i];
                if (p->removed || p->down)
                    continue;
                targets[n].peer = p;
                targets[n].id = p->id;
                targets[n].sa = p->sockaddr;
                targets[n].len = p->socklen;
                n++;
            }
        }
        pt__upstream_unlock(hc->group);
        for (unsigned i = 0; i < n; i++)
            probe_start(hc, targets[i].peer, targets[i].id, &targets[i].sa, targets[i].len);
    }
    if (!pt_conn_shutting_down)
        pt_timer_add(&hc->timer, hc->interval);
}

/* ------------------------------------------------------------------------ */
/* Directives */

static const char *health_check_cmd(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *value = cf->args->elts;
    pt_upstream_group_t *g = NULL;
    pt_upstream_ext_t *ext = NULL;
    (void) cmd;

    if (cf->ctx == PT_CTX_UPS) {
        g = conf;
        ext = pt__upstream_ext(cf, g);
        if (ext == NULL)
            return "failed (out of memory)";
        if (ext->hc)
            return "is duplicate";
    }
    pt_upstream_hc_t *hc = pt_pcalloc(cf->pool, sizeof(*hc));
    if (hc == NULL)
        return "failed (out of memory)";
    hc->group = g;        /* in a location: set once proxy_pass is known */
    if (g == NULL)
        hc->loc_conf = cf->http_ctx->loc_conf;
    hc->interval = 5000;
    hc->fails = 1;
    hc->passes = 1;
    pt_str_set(&hc->uri, "/");
    hc->file = cf->file;
    hc->line = cf->line;

    const char *bad = NULL;
    for (size_t i = 1; i < cf->args->nelts; i++) {
        pt_str_t *v = &value[i];
        bad = v->data;
        if (v->len > 9 && memcmp(v->data, "interval=", 9) == 0) {
            pt_str_t t = { v->len - 9, v->data + 9 };
            hc->interval = pt_conf_parse_msec(&t);
            if (hc->interval <= 0)
                goto invalid;
        } else if (v->len > 6 && memcmp(v->data, "fails=", 6) == 0) {
            int64_t n = pt_atoi64(v->data + 6, v->len - 6);
            if (n < 1)
                goto invalid;
            hc->fails = (unsigned) n;
        } else if (v->len > 7 && memcmp(v->data, "passes=", 7) == 0) {
            int64_t n = pt_atoi64(v->data + 7, v->len - 7);
            if (n < 1)
                goto invalid;
            hc->passes = (unsigned) n;
        } else if (v->len > 4 && memcmp(v->data, "uri=", 4) == 0) {
            if (v->data[4] != '/')
                goto invalid;
            hc->uri.data = v->data + 4;
            hc->uri.len = v->len - 4;
        } else if (v->len > 6 && memcmp(v->data, "match=", 6) == 0) {
            hc->match_name.data = v->data + 6;
            hc->match_name.len = v->len - 6;
        } else if (pt_str_eq_lit(v, "mandatory")) {
            hc->flags |= PT_HC_MANDATORY;
        } else if (pt_str_eq_lit(v, "persistent")) {
            hc->flags |= PT_HC_PERSISTENT;
        } else if (v->len > 5 && memcmp(v->data, "port=", 5) == 0) {
            int64_t n = pt_atoi64(v->data + 5, v->len - 5);
            if (n < 1 || n > 65535)
                goto invalid;
            hc->port = (in_port_t) n;
        } else {
            goto invalid;
        }
    }
    if ((hc->flags & PT_HC_PERSISTENT) && !(hc->flags & PT_HC_MANDATORY)) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"persistent\" requires \"mandatory\"");
        return PT_CONF_ERROR;
    }
    if (ext != NULL)
        ext->hc = hc;
    hc_main_conf_t *hmcf = hmcf_of(cf);
    if (g == NULL) {
        /* one per location */
        pt_upstream_hc_t **all = hmcf->checks.elts;
        for (size_t i = 0; i < hmcf->checks.nelts; i++)
            if (all[i]->loc_conf == hc->loc_conf)
                return "is duplicate";
    }
    pt_upstream_hc_t **slot = pt_array_push(&hmcf->checks);
    if (slot == NULL)
        return "failed (out of memory)";
    *slot = hc;
    return PT_CONF_OK;

invalid:
    pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid parameter \"%s\"", bad ? bad : "");
    return PT_CONF_ERROR;
}

static int parse_status_arg(hc_cond_t *c, const pt_str_t *v)
{
    const char *dash = memchr(v->data, '-', v->len);
    int64_t lo, hi;
    if (dash) {
        lo = pt_atoi64(v->data, (size_t) (dash - v->data));
        hi = pt_atoi64(dash + 1, v->len - (size_t) (dash - v->data) - 1);
    } else {
        lo = hi = pt_atoi64(v->data, v->len);
    }
    if (lo < 100 || hi > 599 || lo > hi || c->nranges == 16)
        return -1;
    c->ranges[c->nranges][0] = (int) lo;
    c->ranges[c->nranges][1] = (int) hi;
    c->nranges++;
    return 0;
}

static const char *match_status(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    hc_match_t *m = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    hc_cond_t *c = pt_array_push(&m->conds);
    if (c == NULL)
        return "failed (out of memory)";
    memset(c, 0, sizeof(*c));
    c->type = M_STATUS;
    size_t i = 1;
    if (pt_str_eq_lit(&value[1], "!")) {
        c->negate = 1;
        i++;
    }
    if (i >= cf->args->nelts)
        return "has no status";
    for (; i < cf->args->nelts; i++) {
        if (parse_status_arg(c, &value[i]) != 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid status \"%s\"", value[i].data);
            return PT_CONF_ERROR;
        }
    }
    return PT_CONF_OK;
}

static const char *match_header(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    hc_match_t *m = conf;
    pt_str_t *value = cf->args->elts;
    size_t n = cf->args->nelts;
    (void) cmd;
    hc_cond_t *c = pt_array_push(&m->conds);
    if (c == NULL)
        return "failed (out of memory)";
    memset(c, 0, sizeof(*c));
    c->type = M_HEADER;
    if (n == 2) {
        c->op = OP_PRESENT;
        c->name = value[1];
    } else if (n == 3 && pt_str_eq_lit(&value[1], "!")) {
        c->op = OP_ABSENT;
        c->name = value[2];
    } else if (n == 4) {
        c->name = value[1];
        c->value = value[3];
        if (pt_str_eq_lit(&value[2], "="))
            c->op = OP_EQ;
        else if (pt_str_eq_lit(&value[2], "!="))
            c->op = OP_NE;
        else if (pt_str_eq_lit(&value[2], "~"))
            c->op = OP_RE;
        else if (pt_str_eq_lit(&value[2], "!~"))
            c->op = OP_NRE;
        else
            goto invalid;
        if ((c->op == OP_RE || c->op == OP_NRE) && pt_http_regex_compile(cf, &c->re, &value[3], 0) != 0)
            return PT_CONF_ERROR;
    } else {
        goto invalid;
    }
    return PT_CONF_OK;
invalid:
    pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid header condition in \"match\"");
    return PT_CONF_ERROR;
}

static const char *match_body(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    hc_match_t *m = conf;
    pt_str_t *value = cf->args->elts;
    (void) cmd;
    hc_cond_t *c = pt_array_push(&m->conds);
    if (c == NULL)
        return "failed (out of memory)";
    memset(c, 0, sizeof(*c));
    c->type = M_BODY;
    if (pt_str_eq_lit(&value[1], "~"))
        c->op = OP_RE;
    else if (pt_str_eq_lit(&value[1], "!~"))
        c->op = OP_NRE;
    else {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid body condition \"%s\" in \"match\"", value[1].data);
        return PT_CONF_ERROR;
    }
    if (pt_http_regex_compile(cf, &c->re, &value[2], 0) != 0)
        return PT_CONF_ERROR;
    return PT_CONF_OK;
}

static const char *match_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    hc_main_conf_t *hmcf = conf;
    pt_str_t name = ((pt_str_t *) cf->args->elts)[1];
    (void) cmd;

    hc_match_t **ms = hmcf->matches.elts;
    for (size_t i = 0; i < hmcf->matches.nelts; i++) {
        if (pt_str_eq(&ms[i]->name, &name)) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "duplicate match \"%s\"", name.data);
            return PT_CONF_ERROR;
        }
    }
    hc_match_t *m = pt_pcalloc(cf->pool, sizeof(*m));
    hc_match_t **slot = pt_array_push(&hmcf->matches);
    if (m == NULL || slot == NULL || pt_array_init(&m->conds, cf->pool, 4, sizeof(hc_cond_t)) != 0)
        return "failed (out of memory)";
    m->name = name;
    m->file = cf->file;
    m->line = cf->line;
    *slot = m;

    unsigned save_ctx = cf->ctx;
    void *save_data = cf->block_data;
    cf->ctx = PT_CTX_MATCH;
    cf->block_data = m;
    const char *rv = pt_conf_parse_block(cf);
    cf->ctx = save_ctx;
    cf->block_data = save_data;
    return rv;
}

static const pt_command_t hc_commands[] = {
    { "health_check", PT_CTX_UPS | PT_CTX_LOC, 0, 0, PT_ARGS_ANY, health_check_cmd,
      PT_CONF_BLOCK_DATA, 0, NULL },
    { "match", PT_CTX_HTTP, PT_CONF_BLOCK, 1, 1, match_block, PT_CONF_HTTP_MAIN, 0, NULL },
    { "status", PT_CTX_MATCH, 0, 1, PT_ARGS_ANY, match_status, PT_CONF_BLOCK_DATA, 0, NULL },
    { "header", PT_CTX_MATCH, 0, 1, 3, match_header, PT_CONF_BLOCK_DATA, 0, NULL },
    { "body", PT_CTX_MATCH, 0, 2, 2, match_body, PT_CONF_BLOCK_DATA, 0, NULL },
    PT_COMMAND_END
};

static void *create_main_conf(pt_conf_t *cf)
{
    hc_main_conf_t *h = pt_pcalloc(cf->pool, sizeof(*h));
    if (h == NULL || pt_array_init(&h->matches, cf->pool, 2, sizeof(hc_match_t *)) != 0
        || pt_array_init(&h->checks, cf->pool, 2, sizeof(pt_upstream_hc_t *)) != 0)
        return NULL;
    return h;
}

unsigned pt__upstream_hc_flags(const pt_upstream_group_t *g)
{
    return g->ext && g->ext->hc ? g->ext->hc->flags : 0;
}

/* After http { } is merged (postconfiguration, so that the proxy's TLS
 * settings are built): a location's check finds its group through the
 * location's proxy_pass; match names resolve; a zone is required. */
static int postconfiguration(pt_conf_t *cf)
{
    if (cf->cycle->http_ctx == NULL)
        return 0;
    hc_main_conf_t *h = cf->cycle->http_ctx->main_conf[pt_http_upstream_hc_module.index];
    pt_upstream_hc_t **hcs = h->checks.elts;
    for (size_t i = 0; i < h->checks.nelts; i++) {
        pt_upstream_hc_t *hc = hcs[i];
        if (hc->loc_conf != NULL) {
            pt_http_proxy_probe_t t;
            if (pt_http_proxy_probe_target(hc->loc_conf, &t) != 0) {
                pt_log_error(PT_LOG_EMERG, cf->log, 0,
                             "\"health_check\" requires \"proxy_pass\" to an upstream group "
                             "in the same location in %s:%u", hc->file, hc->line);
                return -1;
            }
            pt_upstream_ext_t *ext = pt__upstream_ext(cf, t.group);
            if (ext == NULL)
                return -1;
            if (ext->hc != NULL) {
                pt_log_error(PT_LOG_EMERG, cf->log, 0,
                             "upstream \"%.*s\" has a health check already (%s:%u), "
                             "another one in %s:%u", (int) t.group->name.len,
                             t.group->name.data, ext->hc->file, ext->hc->line, hc->file, hc->line);
                return -1;
            }
            ext->hc = hc;
            hc->group = t.group;
            hc->tls = t.tls;
            hc->host = t.host;
            hc->sni = t.sni;
        }
        pt_upstream_group_t *g = hc->group;
        if (g->ext->zone == NULL) {
            pt_log_error(PT_LOG_EMERG, cf->log, 0,
                         "health check requires a \"zone\" in upstream \"%.*s\" in %s:%u",
                         (int) g->name.len, g->name.data, hc->file, hc->line);
            return -1;
        }
        if (hc->match_name.len) {
            hc_match_t **ms = h->matches.elts;
            for (size_t k = 0; k < h->matches.nelts; k++)
                if (pt_str_eq(&ms[k]->name, &hc->match_name))
                    hc->match = ms[k];
            if (hc->match == NULL) {
                pt_log_error(PT_LOG_EMERG, cf->log, 0, "match \"%.*s\" not found in %s:%u",
                             (int) hc->match_name.len, hc->match_name.data, hc->file, hc->line);
                return -1;
            }
        }
    }
    return 0;
}

static int init_worker(pt_cycle_t *cycle)
{
    if (cycle->http_ctx == NULL)
        return 0;
    hc_main_conf_t *h = cycle->http_ctx->main_conf[pt_http_upstream_hc_module.index];
    if (h == NULL)
        return 0;
    pt_upstream_hc_t **hcs = h->checks.elts;
    for (size_t i = 0; i < h->checks.nelts; i++) {
        pt_upstream_hc_t *hc = hcs[i];
        hc->cycle = cycle;
        hc->timer.handler = on_tick;
        hc->timer.data = hc;
        hc->timer.timer_index = (size_t) -1;
        /* first tick soon, slightly spread so workers do not race */
        pt_timer_add(&hc->timer, 50 + (getpid() % 50));
    }
    return 0;
}

static void exit_worker(pt_cycle_t *cycle)
{
    if (cycle->http_ctx == NULL)
        return;
    hc_main_conf_t *h = cycle->http_ctx->main_conf[pt_http_upstream_hc_module.index];
    if (h == NULL)
        return;
    pt_upstream_hc_t **hcs = h->checks.elts;
    for (size_t i = 0; i < h->checks.nelts; i++) {
        pt_upstream_hc_t *hc = hcs[i];
        pt_upstream_shared_t *sh = hc->group->ext->shared;
        pt_timer_del(&hc->timer);
        while (hc->probes) {
            hc_probe_t *pr = hc->probes;
            hc->probes = pr->next;
            probe_close(pr);
            probe_free(pr);
        }
        if (sh == NULL)
            continue;
        pt__upstream_lock(hc->group);
        if (sh->hc_owner == (int) getpid()) {
            sh->hc_owner = 0;
            sh->hc_lease = 0;
        }
        pt__upstream_unlock(hc->group);
    }
}

pt_module_t pt_http_upstream_hc_module = {
    .name = "http_upstream_hc",
    .commands = hc_commands,
    .create_main_conf = create_main_conf,
    .postconfiguration = postconfiguration,
    .init_worker = init_worker,
    .exit_worker = exit_worker,
};
