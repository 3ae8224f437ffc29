/* A small nonblocking Redis client for the cluster-wide limit_req backend:
 * one connection per worker on Portico's event loop, commands pipelined in
 * order, one Lua script run with EVALSHA (EVAL when Redis answers NOSCRIPT).
 *
 * Failure model: a connection that fails (refused, reset, closed, a protocol
 * error, AUTH refused) or a command that waits longer than `timeout` closes
 * the connection and fails every pending command (their callbacks get NULL:
 * the caller falls back to something local). Reconnection is lazy: the next
 * command after a back-off (100 ms doubling to 2 s) tries again; until then
 * pt_redis_eval() returns NULL at once. Problems are logged once per change
 * of state (an [error] line when Redis stops answering or answers errors, a
 * [notice] line when it answers again), not once per request.
 *
 * The RESP encoder and parser are separate pure functions (unit tested). */
#ifndef PT_LIMIT_REQ_REDIS_H
#define PT_LIMIT_REQ_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../core/log.h"
#include "../core/loop.h"
#include "../core/str.h"
#include "../net/listen.h"

/* Reply types. */
enum {
    PT_REDIS_STATUS = 1,    /* +OK */
    PT_REDIS_ERROR,         /* -ERR ... */
    PT_REDIS_INTEGER,       /* :42 */
    PT_REDIS_BULK,          /* $3 abc */
    PT_REDIS_NIL,           /* $-1 or *-1 */
    PT_REDIS_ARRAY          /* *N ... */
};

#define PT_REDIS_MAX_ELEMS  32      /* array elements kept (scalars, top level) */
#define PT_REDIS_MAX_DEPTH  8       /* nesting accepted by the parser */
#define PT_REDIS_MAX_INPUT  (1 << 20) /* a reply larger than this is a protocol error */

typedef struct {
    int         type;
    int64_t     integer;    /* INTEGER */
    const char *str;        /* STATUS, ERROR, BULK: points into the input */
    size_t      len;
} pt_redis_value_t;

typedef struct {
    pt_redis_value_t v;                         /* the reply itself */
    size_t           nelem;                     /* ARRAY: number of elements */
    size_t           nkept;                     /* elements in elem[] (<= MAX_ELEMS) */
    pt_redis_value_t elem[PT_REDIS_MAX_ELEMS];  /* top-level elements; a nested
                                                   array shows as type ARRAY */
} pt_redis_reply_t;

/* Parses one reply at buf[0..len). Returns the bytes it takes, -2 when the
 * reply is incomplete, -1 on a protocol error. Neither allocates nor copies:
 * string values point into buf. */
ssize_t pt_redis_parse(const char *buf, size_t len, pt_redis_reply_t *reply);

/* Encodes a command (an array of bulk strings) into out (cap bytes). Returns
 * the length of the encoding; when it is more than cap, nothing useful was
 * written and the caller retries with a larger buffer. */
size_t pt_redis_encode(char *out, size_t cap, size_t argc, const pt_str_t *argv);

/* limit_req_redis ADDRESS [timeout=T] [prefix=STR] [password=STR] [db=N] */
typedef struct {
    pt_sockaddr_t addr;
    socklen_t     socklen;
    char          addr_text[128];  /* for messages */
    int64_t       timeout;         /* ms: connect and each reply (default 200) */
    pt_str_t      prefix;          /* key prefix (default "portico:limit_req:") */
    pt_str_t      password;        /* AUTH when set */
    int64_t       db;              /* SELECT when > 0 */
} pt_redis_conf_t;

/* Parses the directive's arguments (args[0] is the address). Returns NULL or
 * a message naming the bad argument (static or in a static buffer). */
const char *pt_redis_conf_parse(pt_redis_conf_t *rc, const pt_str_t *args, size_t n);

typedef struct pt_redis_s     pt_redis_t;
typedef struct pt_redis_cmd_s pt_redis_cmd_t;

/* reply: a non-error reply (valid during the call only), or NULL when the
 * command failed (Redis down, slow, or answering an error). */
typedef void (*pt_redis_cb)(void *data, const pt_redis_reply_t *reply);

/* Creates a worker's client (no connection yet) for one script. conf and
 * script must outlive it. Returns NULL on allocation failure. */
pt_redis_t *pt_redis_create(const pt_redis_conf_t *conf, const char *script, pt_log_t *log);
/* Closes the connection and frees pending commands without calling back. */
void pt_redis_destroy(pt_redis_t *rd);
/* Queues EVALSHA sha argv... (argv[0] is numkeys, then keys, then args) and
 * sends it after the current loop iteration, pipelined with the others.
 * Returns the command, or NULL when Redis is known down (back-off) or the
 * connection could not start: the caller decides locally, at once. cb is
 * never called from inside this function. */
pt_redis_cmd_t *pt_redis_eval(pt_redis_t *rd, size_t argc, const pt_str_t *argv,
                              pt_redis_cb cb, void *data);
/* The caller is gone: its callback will not run (the reply is dropped). */
void pt_redis_cancel(pt_redis_cmd_t *cmd);

#endif
