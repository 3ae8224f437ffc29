/* Listening sockets. The config creates pt_listening_t records (one per
 * distinct address); the master binds them before forking and keeps the fds
 * of unchanged addresses across reloads. Workers accept on them.
 *
 * `listen ... reuseport` (TCP, with worker processes): the master binds one
 * socket per worker to the same address, all with SO_REUSEPORT, so the
 * kernel spreads new connections over the workers by hashing the
 * connection's addresses. Worker i keeps socket i and closes its copies of
 * the others (pt_listening_select_worker), so a socket whose worker is gone
 * and that the master dropped on reload leaves the kernel's group at once. */
#ifndef PT_LISTEN_H
#define PT_LISTEN_H

#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/un.h>
#include "../core/array.h"
#include "../core/log.h"
#include "../core/loop.h"

typedef struct pt_listening_s pt_listening_t;
typedef struct pt_conn_s pt_conn_t;
/* Takes over a freshly accepted connection (e.g. the HTTP module's). */
typedef void (*pt_conn_handler_cb)(pt_conn_t *c);

typedef union {
    struct sockaddr         sa;
    struct sockaddr_in      sin;
    struct sockaddr_in6     sin6;
    struct sockaddr_un      sun;
    struct sockaddr_storage ss;
} pt_sockaddr_t;

struct pt_listening_s {
    pt_sockaddr_t      addr;
    socklen_t          socklen;
    char               addr_text[128];  /* "127.0.0.1:8080", "[::1]:80", "unix:/p" */
    int                fd;              /* -1 until bound; in the master the socket of
                                         * worker 0 (= worker_fds[0] when there are
                                         * several), in a worker its own socket */
    int               *worker_fds;      /* reuseport with N > 1 workers (master): N
                                         * sockets, [i] for worker i; NULL otherwise */
    unsigned           nworker_fds;
    int                backlog;         /* default 511 (nginx); -1 on Linux = somaxconn */
    int                rcvbuf, sndbuf;  /* -1 unset */
    unsigned           reuseport:1;
    unsigned           ipv6only:1;      /* default on, as nginx */
    unsigned           deferred:1;
    unsigned           ssl:1;
    unsigned           http2:1;
    unsigned           inherited:1;     /* fd kept from the previous cycle */
    pt_io_t            io;              /* per worker: registration in the loop */
    pt_conn_handler_cb handler;         /* set by the protocol module */
    void              *servers;         /* protocol module's per-address data */
    pt_log_t          *log;
};

/* Parses "80", "8080", "127.0.0.1:80", "[::]:443", "*:80", "localhost:80"
 * (resolved, first address), "unix:/path". Returns 0, or -1 with *err set to a
 * short reason ("invalid port", "host not found"). */
int pt_sockaddr_parse(const char *text, size_t len, int default_port,
                      pt_sockaddr_t *out, socklen_t *outlen, const char **err);
/* Formats an address; returns the length written (NUL-terminated). */
size_t pt_sockaddr_text(const struct sockaddr *sa, socklen_t len, char *buf,
                        size_t size, int with_port);
int pt_sockaddr_eq(const struct sockaddr *a, socklen_t alen,
                   const struct sockaddr *b, socklen_t blen);

/* Opens, configures, binds and listens one socket (SO_REUSEADDR, REUSEPORT,
 * IPV6_V6ONLY, nonblocking, close-on-exec) into ls->fd. For unix: removes a
 * stale socket file first. Returns 0 or -1 with the reason logged to log
 * (emerg). */
int pt_listening_open(pt_listening_t *ls, pt_log_t *log);
/* The same for one more socket of a reuseport listener (never unix): returns
 * the fd or -1 (logged); ls is not changed. */
int pt_listening_open_fd(const pt_listening_t *ls, pt_log_t *log);
/* A socket kept from the previous cycle (or binary) for ls: sets
 * SO_REUSEPORT when ls wants it and the socket lacks it (want_reuseport),
 * and applies the options that may change without a new socket: backlog
 * (listen() again), rcvbuf, sndbuf, deferred, compared with old (NULL:
 * apply what ls sets). Failures are logged (alert) and ignored, except a
 * failed SO_REUSEPORT: -1. */
int pt_listening_reconfigure(const pt_listening_t *ls, const pt_listening_t *old, int fd,
                             int want_reuseport, pt_log_t *log);
/* Master only: closes the fd and the other workers' sockets (-1 afterwards)
 * and removes a unix socket file this record bound. */
void pt_listening_close(pt_listening_t *ls);

/* In a worker, before pt_listening_start(): for each reuseport listener
 * with one socket per worker, keeps socket `slot` as ls->fd and closes this
 * process's copies of the others (as nginx, so that a socket the master
 * dropped on reload is closed as soon as its own old worker stops). */
void pt_listening_select_worker(pt_array_t *listening, int slot);

/* Adds a listening record for sa to the array (created by the caller with
 * element size sizeof(pt_listening_t)), or returns the record already there
 * for the same address. A new record is zeroed with fd -1, backlog 511,
 * rcvbuf/sndbuf -1, ipv6only 1 and addr_text filled; the caller sets the
 * options, handler and servers. The array grows: never keep the returned
 * pointer across another pt_listening_add() (store the index, or look the
 * address up again when the http { } block ends). NULL on allocation failure
 * or an address that is too long. */
pt_listening_t *pt_listening_add(pt_array_t *listening, const struct sockaddr *sa,
                                 socklen_t len);

/* Per worker: 1 = accept until EAGAIN on each wakeup (multi_accept on),
 * 0 = one connection per wakeup (the listening socket is level-triggered, so
 * the next iteration takes the next one). Set by the worker before
 * pt_listening_start(). */
extern int pt_listening_multi_accept;

/* In a worker: registers every listener in the loop; accept handler takes
 * up to `multi` connections per wakeup, gets a pt_conn_t for each and calls
 * ls->handler. Returns 0 or -1. */
int  pt_listening_start(pt_array_t *listening /* of pt_listening_t */);
/* Stops accepting (graceful shutdown): unregisters, does not close fds
 * shared with the master. */
void pt_listening_stop(pt_array_t *listening);
/* Graceful shutdown, before pt_listening_stop(): takes the connections
 * already queued on this worker's own reuseport sockets (nobody else
 * accepts from them; closing the last copy of such a socket would reset
 * them). At most `max` connections in all. */
void pt_listening_drain(pt_array_t *listening, unsigned max);

#endif
