/* The configuration language: directive tables, modules, the parse context,
 * generic setters and unit parsing. The parser knows directives only through
 * the tables of the modules it is handed; it never knows a feature.
 *
 * A setter returns PT_CONF_OK (NULL), a short reason that the parser turns into
 *   [emerg] "name" directive <reason> in FILE:LINE
 * or PT_CONF_ERROR when it already logged a full message (pt_conf_error). */
#ifndef PT_CONF_H
#define PT_CONF_H

#include <stddef.h>
#include <stdint.h>
#include "../core/array.h"
#include "../core/log.h"
#include "../core/pool.h"
#include "../core/str.h"

typedef struct pt_conf_s    pt_conf_t;
typedef struct pt_command_s pt_command_t;
typedef struct pt_module_s  pt_module_t;
typedef struct pt_cycle_s   pt_cycle_t;

/* Where a directive may appear (bit mask). */
#define PT_CTX_MAIN    0x0001
#define PT_CTX_EVENTS  0x0002
#define PT_CTX_HTTP    0x0004
#define PT_CTX_SRV     0x0008
#define PT_CTX_LOC     0x0010
#define PT_CTX_UPS     0x0020   /* upstream { } */
#define PT_CTX_SIF     0x0040   /* if { } in server */
#define PT_CTX_LIF     0x0080   /* if { } in location */
#define PT_CTX_LMT     0x0100   /* limit_except { } */
#define PT_CTX_MATCH   0x0200   /* match { } (health checks) */
#define PT_CTX_HTTP_ANY (PT_CTX_HTTP | PT_CTX_SRV | PT_CTX_LOC)

/* Command flags. */
#define PT_CONF_BLOCK  0x01     /* takes a { } block (the setter parses it) */
#define PT_CONF_FLAG   0x02     /* exactly one argument: on | off */

#define PT_ARGS_ANY    255

/* Which configuration object the setter receives as `conf`. */
enum {
    PT_CONF_NONE = 0,           /* NULL */
    PT_CONF_CORE,               /* cycle->core_conf[module->index] */
    PT_CONF_HTTP_MAIN,          /* http ctx main_conf[module->index] */
    PT_CONF_HTTP_SRV,           /* current server's srv_conf[module->index] */
    PT_CONF_HTTP_LOC,           /* current location's loc_conf[module->index] */
    PT_CONF_BLOCK_DATA          /* cf->block_data (upstream, match, ...) */
};

#define PT_CONF_OK     ((const char *) NULL)
#define PT_CONF_ERROR  ((const char *) -1)

typedef const char *(*pt_conf_set_cb)(pt_conf_t *cf, const pt_command_t *cmd, void *conf);

struct pt_command_s {
    const char     *name;
    unsigned        ctx;        /* PT_CTX_* where it may appear */
    unsigned        flags;      /* PT_CONF_BLOCK, PT_CONF_FLAG */
    unsigned char   min_args;   /* arguments after the name */
    unsigned char   max_args;   /* PT_ARGS_ANY for no limit */
    pt_conf_set_cb  set;
    unsigned        conf;       /* PT_CONF_* */
    size_t          offset;     /* field offset for generic setters */
    const void     *post;       /* setter-specific (enum table, bounds) */
};

#define PT_COMMAND_END { NULL, 0, 0, 0, 0, NULL, 0, 0, NULL }

/* HTTP configuration context: one array slot per module (module->index). */
typedef struct {
    void **main_conf;
    void **srv_conf;
    void **loc_conf;
} pt_http_conf_ctx_t;

struct pt_module_s {
    const char          *name;      /* "http_proxy": -V lists --with-http_proxy_module */
    const pt_command_t  *commands;
    int                  index;     /* set by pt_modules_init() */
    unsigned             builtin_core:1; /* not listed in -V configure arguments */

    void       *(*create_core_conf)(pt_conf_t *cf);              /* main context */
    const char *(*init_core_conf)(pt_conf_t *cf, void *conf);    /* after parsing */
    void       *(*create_main_conf)(pt_conf_t *cf);              /* http { } */
    const char *(*init_main_conf)(pt_conf_t *cf, void *conf);
    void       *(*create_srv_conf)(pt_conf_t *cf);
    const char *(*merge_srv_conf)(pt_conf_t *cf, void *prev, void *conf);
    void       *(*create_loc_conf)(pt_conf_t *cf);
    const char *(*merge_loc_conf)(pt_conf_t *cf, void *prev, void *conf);
    int         (*preconfiguration)(pt_conf_t *cf);   /* before http { } body: variables */
    int         (*postconfiguration)(pt_conf_t *cf);  /* after http { }: phases, filters */
    int         (*init_cycle)(pt_cycle_t *cycle);     /* master, after zones are mapped */
    int         (*init_worker)(pt_cycle_t *cycle);    /* each worker, before the loop */
    void        (*exit_worker)(pt_cycle_t *cycle);
    void        (*init_master)(pt_cycle_t *cycle);    /* master, after a cycle is committed
                                                       * and its workers started */
    void        (*exit_master)(pt_cycle_t *cycle);    /* master, before it exits */
};

/* Raw directive handler for blocks whose content is data, not directives
 * (map, types, geo, split_clients): gets each line's tokens in cf->args. */
typedef const char *(*pt_conf_handler_cb)(pt_conf_t *cf, void *data);

struct pt_conf_s {
    pt_cycle_t        *cycle;
    pt_pool_t         *pool;        /* = cycle->pool: lives as long as the config */
    pt_pool_t         *temp_pool;   /* freed after parsing */
    pt_array_t        *args;        /* pt_str_t tokens of the current directive; [0] = name.
                                     * Each token is NUL-terminated and lives in cf->pool, so a
                                     * setter may keep it without copying. A block setter that
                                     * calls pt_conf_parse_block() must read its own arguments
                                     * first: the block's directives reuse this array. */
    pt_array_t        *arg_lines;   /* unsigned: line each token of args started on */
    const char        *file;        /* current file (absolute path); NULL outside parsing */
    unsigned           line;        /* line where the current directive ended (its ";" or
                                     * "{"), which is the line nginx reports in messages */
    unsigned           ctx;         /* current PT_CTX_* */
    pt_http_conf_ctx_t *http_ctx;   /* current http/server/location confs */
    void              *block_data;  /* PT_CONF_BLOCK_DATA target */
    pt_conf_handler_cb handler;     /* when set, every directive goes to it */
    void              *handler_data;
    pt_log_t          *log;
    unsigned           depth;       /* include nesting (limit 64) */
    /* args[i] carries variables ('$' seen outside single quotes)? bit i */
    uint64_t           args_have_vars;
    struct pt_conf_src_s *_src;     /* private to the parser: the text being read */
};

/* Parses a whole file at the current context. Returns PT_CONF_OK or
 * PT_CONF_ERROR (message logged). */
const char *pt_conf_parse_file(pt_conf_t *cf, const char *path);
/* Parses the inside of a block whose "{" was just read, up to its "}".
 * The caller sets cf->ctx / http_ctx / block_data / handler first and restores
 * them afterwards. */
const char *pt_conf_parse_block(pt_conf_t *cf);
/* Parses directives from a string at the current context.
 * name == NULL: -g mode, as nginx's command line parameters: messages end with
 *   "in command line", block directives are refused, nothing is dumped.
 * name != NULL: the text is treated as the file `name` (built-in default
 *   configuration): messages say "in NAME:LINE", -T dumps it. */
const char *pt_conf_parse_string(pt_conf_t *cf, const char *text, const char *name);

/* Logs "[level] message in FILE:LINE" for the current directive (err != 0
 * adds " (err: description)" before " in"); "in command line" for -g text, no
 * location at all when called outside parsing (cf->file == NULL). Goes to
 * cf->log, which echoes warn and worse to stderr as "portico: [emerg] ...". */
void pt_conf_error(pt_conf_t *cf, int level, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Resolves a relative path against the prefix (conf_prefix = 0) or the
 * configuration prefix (conf_prefix = 1), as nginx; result in cf->pool,
 * NUL-terminated. Returns 0 or -1. */
int pt_conf_full_name(pt_cycle_t *cycle, pt_str_t *name, int conf_prefix);

/* Units. Sizes: "1024", "16k", "10m", "1g" (K/M/G too). Times: "30", "10s",
 * "500ms", "1h", "1d", "1y", "1m 30s" combos as nginx. -1 when invalid. */
int64_t pt_conf_parse_size(const pt_str_t *s);
int64_t pt_conf_parse_msec(const pt_str_t *s);   /* milliseconds */
int64_t pt_conf_parse_sec(const pt_str_t *s);    /* seconds (rounded) */

/* Generic setters: each writes the field at cmd->offset of conf.
 *  flag: int (on/off)       num: int64_t         size: int64_t (bytes)
 *  msec: int64_t (ms)       sec: int64_t (s)     str: pt_str_t
 *  enum: unsigned (post = const pt_conf_enum_t[] ending with {NULL,0})
 *  bitmask: unsigned, ORs several args (post = pt_conf_enum_t[])
 *  str_array: pt_array_t * of pt_str_t, created on first use, one per directive
 *  path: pt_str_t resolved against the prefix
 * All report "is duplicate" when the field is already set (not UNSET),
 * except str_array. */
typedef struct {
    const char *name;
    unsigned    value;
} pt_conf_enum_t;

const char *pt_conf_set_flag(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
const char *pt_conf_set_num(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
const char *pt_conf_set_size(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
const char *pt_conf_set_msec(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
const char *pt_conf_set_sec(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
const char *pt_conf_set_str(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
const char *pt_conf_set_enum(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
const char *pt_conf_set_bitmask(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
const char *pt_conf_set_str_array(pt_conf_t *cf, const pt_command_t *cmd, void *conf);
const char *pt_conf_set_path(pt_conf_t *cf, const pt_command_t *cmd, void *conf);

/* Accepted silently (logged at info with -t): directives of nginx that have no
 * effect in Portico. */
const char *pt_conf_set_ignored(pt_conf_t *cf, const pt_command_t *cmd, void *conf);

/* cmd->post of num, size, msec and sec setters may point to bounds checked
 * after parsing: "value must be between MIN and MAX" (max < 0: no upper bound,
 * "value must be equal to or greater than MIN"). */
typedef struct {
    int64_t min;
    int64_t max;
} pt_conf_bounds_t;

/* Parses the current directive as `error_log FILE [LEVEL...]` (FILE may be
 * "stderr"; relative paths resolve against the prefix; level defaults to
 * "error"), opens the file in cf->cycle->open_files and appends a target to
 * the chain *head. A NULL *head gets a new target; a head whose level is 0
 * (a zeroed placeholder such as cycle->new_log) is filled in place. Returns
 * PT_CONF_OK or PT_CONF_ERROR (logged). */
const char *pt_conf_set_error_log(pt_conf_t *cf, pt_log_t **head);

/* "Not set yet" markers; merge with one default (nginx style). */
#define PT_CONF_UNSET       (-1)
#define PT_CONF_UNSET_UINT  ((unsigned) -1)
#define PT_CONF_UNSET_PTR   ((void *) -1)
#define PT_CONF_UNSET_SIZE  ((int64_t) -1)
#define PT_CONF_UNSET_MSEC  ((int64_t) -1)

#define pt_conf_init(v, d)       do { if ((v) == PT_CONF_UNSET) (v) = (d); } while (0)
#define pt_conf_merge(v, p, d) \
    do { if ((v) == PT_CONF_UNSET) (v) = ((p) == PT_CONF_UNSET) ? (d) : (p); } while (0)
#define pt_conf_merge_uint(v, p, d) \
    do { if ((v) == PT_CONF_UNSET_UINT) (v) = ((p) == PT_CONF_UNSET_UINT) ? (d) : (p); } while (0)
#define pt_conf_merge_ptr(v, p, d) \
    do { if ((v) == PT_CONF_UNSET_PTR) (v) = ((p) == PT_CONF_UNSET_PTR) ? (d) : (p); } while (0)
#define pt_conf_merge_str(v, p, d) \
    do { if ((v).data == NULL) { if ((p).data) (v) = (p); else { (v).len = sizeof(d) - 1; (v).data = (char *) (d); } } } while (0)

/* Module registry: main.c hands the ordered list to the cycle. Sets each
 * module's index and builds the directive lookup table for that list (the
 * parser rebuilds it by itself if it meets a different cycle->modules). */
void pt_modules_init(pt_module_t **modules, size_t n);

#endif
