/* The configuration parser: reads directives with the lexer and hands each one
 * to the setter its module's table names, after checking what every directive
 * shares (context, ";" or "{", argument count, on|off). It also owns
 * `include`, the -T dump and the file:line error messages.
 *
 * Directive lookup goes through one hash table built per module list: name ->
 * chain of (module, command) in module order, since the same name may live in
 * several modules for different contexts (`server` in http and upstream). */
#include "conf.h"
#include "cycle.h"
#include "lexer.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_INCLUDE_DEPTH 64
#define CONF_MSG_MAX      2048

/* ---- directive index --------------------------------------------------- */

typedef struct {
    const pt_command_t *cmd;
    pt_module_t        *module;
    size_t              len;
    uint32_t            hash;
    int                 next;     /* next entry with the same name, -1 */
} cmd_entry_t;

static struct {
    pt_module_t **modules;        /* the list the index was built for */
    size_t        nmodules;
    cmd_entry_t  *entries;
    int          *slots;          /* open addressing: first entry of a name, -1 */
    size_t        mask;
} dir_index;

static void index_free(void)
{
    free(dir_index.entries);
    free(dir_index.slots);
    memset(&dir_index, 0, sizeof(dir_index));
}

/* Builds the table for a module list; process lifetime (malloc, boot code).
 * Returns 0 or -1 when out of memory. */
static int index_build(pt_module_t **modules, size_t n)
{
    size_t count = 0;

    index_free();
    for (size_t m = 0; m < n; m++) {
        for (const pt_command_t *c = modules[m]->commands; c && c->name; c++)
            count++;
    }
    size_t size = 16;
    while (size < count * 2)
        size <<= 1;
    dir_index.entries = malloc((count ? count : 1) * sizeof(cmd_entry_t));
    dir_index.slots = malloc(size * sizeof(int));
    if (dir_index.entries == NULL || dir_index.slots == NULL) {
        index_free();
        return -1;
    }
    for (size_t i = 0; i < size; i++)
        dir_index.slots[i] = -1;
    dir_index.mask = size - 1;

    int e = 0;
    for (size_t m = 0; m < n; m++) {
        for (const pt_command_t *c = modules[m]->commands; c && c->name; c++, e++) {
            cmd_entry_t *ent = &dir_index.entries[e];
            size_t len = strlen(c->name);
            ent->cmd = c;
            ent->module = modules[m];
            ent->len = len;
            ent->hash = pt_hash(c->name, len);
            ent->next = -1;
            for (size_t s = ent->hash & dir_index.mask;; s = (s + 1) & dir_index.mask) {
                int head = dir_index.slots[s];
                if (head < 0) {
                    dir_index.slots[s] = e;
                    break;
                }
                cmd_entry_t *h = &dir_index.entries[head];
                if (h->hash == ent->hash && strcmp(h->cmd->name, c->name) == 0) {
                    while (h->next >= 0)     /* keep module order along the chain */
                        h = &dir_index.entries[h->next];
                    h->next = e;
                    break;
                }
            }
        }
    }
    dir_index.modules = modules;
    dir_index.nmodules = n;
    return 0;
}

/* First entry named name (NUL-terminated, len bytes), or -1. */
static int index_find(const char *name, size_t len)
{
    if (dir_index.slots == NULL)
        return -1;
    uint32_t h = pt_hash(name, len);
    for (size_t s = h & dir_index.mask;; s = (s + 1) & dir_index.mask) {
        int i = dir_index.slots[s];
        if (i < 0)
            return -1;
        const cmd_entry_t *ent = &dir_index.entries[i];
        if (ent->hash == h && ent->len == len && memcmp(ent->cmd->name, name, len) == 0)
            return i;
    }
}

void pt_modules_init(pt_module_t **modules, size_t n)
{
    for (size_t i = 0; i < n; i++)
        modules[i]->index = (int) i;
    (void) index_build(modules, n);   /* on failure the parser retries */
}

/* ---- messages ---------------------------------------------------------- */

static void conf_vlog(pt_conf_t *cf, int level, int err, int with_location,
                      const char *fmt, va_list ap)
{
    char msg[CONF_MSG_MAX];
    size_t n = 0;
    int r = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (r > 0)
        n = (size_t) r < sizeof(msg) ? (size_t) r : sizeof(msg) - 1;
    if (err) {
        const char *desc = strerrordesc_np(err);
        r = snprintf(msg + n, sizeof(msg) - n, " (%d: %s)", err, desc ? desc : "Unknown error");
        if (r > 0)
            n += (size_t) r < sizeof(msg) - n ? (size_t) r : sizeof(msg) - n - 1;
    }
    if (with_location && cf->_src && cf->_src->cmdline)
        r = snprintf(msg + n, sizeof(msg) - n, " in command line");
    else if (with_location && cf->file)
        r = snprintf(msg + n, sizeof(msg) - n, " in %s:%u", cf->file, cf->line);
    pt_log_error(level, cf->log, 0, "%s", msg);
}

void pt_conf_error(pt_conf_t *cf, int level, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conf_vlog(cf, level, err, 1, fmt, ap);
    va_end(ap);
}

void pt__conf_log(pt_conf_t *cf, int level, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conf_vlog(cf, level, err, 0, fmt, ap);
    va_end(ap);
}

/* ---- paths ------------------------------------------------------------- */

int pt_conf_full_name(pt_cycle_t *cycle, pt_str_t *name, int conf_prefix)
{
    const pt_str_t *prefix = conf_prefix ? &cycle->conf_prefix : &cycle->prefix;
    size_t plen = 0, slash = 0;

    if (!(name->len > 0 && name->data[0] == '/') && prefix->len > 0) {
        plen = prefix->len;
        slash = prefix->data[plen - 1] != '/';
    }
    char *p = pt_pnalloc(cycle->pool, plen + slash + name->len + 1);
    if (p == NULL)
        return -1;
    if (plen)
        memcpy(p, prefix->data, plen);
    if (slash)
        p[plen] = '/';
    if (name->len)
        memcpy(p + plen + slash, name->data, name->len);
    p[plen + slash + name->len] = '\0';
    name->data = p;
    name->len = plen + slash + name->len;
    return 0;
}

/* ---- the parse loop ---------------------------------------------------- */

enum { PARSE_FILE, PARSE_BLOCK, PARSE_PARAM };

static const char *parse(pt_conf_t *cf, int type);

static int ensure_arrays(pt_conf_t *cf)
{
    if (cf->args == NULL)
        cf->args = pt_array_create(cf->pool, 8, sizeof(pt_str_t));
    if (cf->arg_lines == NULL)
        cf->arg_lines = pt_array_create(cf->pool, 8, sizeof(unsigned));
    if (cf->cycle->modules != dir_index.modules || cf->cycle->nmodules != dir_index.nmodules
        || dir_index.slots == NULL) {
        if (index_build(cf->cycle->modules, cf->cycle->nmodules) != 0)
            return -1;
    }
    return cf->args && cf->arg_lines ? 0 : -1;
}

/* -T: remembers a parsed text once per name. */
static int dump_add(pt_conf_t *cf, const char *name, const char *text, size_t len)
{
    pt_cycle_t *cycle = cf->cycle;
    if (!cycle->dump_config)
        return 0;
    if (cycle->config_dump.size == 0
        && pt_array_init(&cycle->config_dump, cycle->pool, 4, sizeof(pt_conf_dump_t)) != 0)
        return -1;
    size_t nlen = strlen(name);
    for (size_t i = 0; i < cycle->config_dump.nelts; i++) {
        pt_conf_dump_t *d = &pt_array_at(&cycle->config_dump, pt_conf_dump_t, i);
        if (d->name.len == nlen && memcmp(d->name.data, name, nlen) == 0)
            return 0;
    }
    pt_conf_dump_t *d = pt_array_push(&cycle->config_dump);
    if (d == NULL)
        return -1;
    d->name.data = pt_pstrndup(cycle->pool, name, nlen);
    d->text.data = pt_pstrndup(cycle->pool, text, len);
    if (d->name.data == NULL || d->text.data == NULL)
        return -1;
    d->name.len = nlen;
    d->text.len = len;
    return 0;
}

/* Parses text as a whole file (or -g parameter when name is NULL): makes it
 * the current source and restores the previous one after. */
static const char *parse_text(pt_conf_t *cf, const char *text, size_t len, const char *name)
{
    pt_conf_src_t src = { text, text, text + len, 1, name == NULL };
    pt_conf_src_t *prev_src = cf->_src;
    const char *prev_file = cf->file;
    unsigned prev_line = cf->line;

    if (cf->depth >= MAX_INCLUDE_DEPTH) {
        pt_conf_error(cf, PT_LOG_EMERG, 0,
                      "\"include\" directive nesting exceeds %d levels", MAX_INCLUDE_DEPTH);
        return PT_CONF_ERROR;
    }
    if (ensure_arrays(cf) != 0)
        goto nomem;
    if (name) {
        if (dump_add(cf, name, text, len) != 0)
            goto nomem;
        cf->file = pt_pstrndup(cf->pool, name, strlen(name));
        if (cf->file == NULL)
            goto nomem;
    }
    cf->_src = &src;
    cf->line = 1;
    cf->depth++;
    const char *rv = parse(cf, name ? PARSE_FILE : PARSE_PARAM);
    cf->depth--;
    cf->_src = prev_src;
    cf->file = prev_file;
    cf->line = prev_line;
    return rv;

nomem:
    pt_conf_error(cf, PT_LOG_EMERG, 0, "out of memory while reading the configuration");
    return PT_CONF_ERROR;
}

const char *pt_conf_parse_file(pt_conf_t *cf, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pt_conf_error(cf, PT_LOG_EMERG, errno, "open() \"%s\" failed", path);
        return PT_CONF_ERROR;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        pt_conf_error(cf, PT_LOG_EMERG, errno, "fstat() \"%s\" failed", path);
        close(fd);
        return PT_CONF_ERROR;
    }

    /* the whole file in memory (tokens are copied out to cf->pool) */
    size_t cap = st.st_size > 0 ? (size_t) st.st_size + 1 : 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        pt_conf_error(cf, PT_LOG_EMERG, 0, "out of memory while reading \"%s\"", path);
        return PT_CONF_ERROR;
    }
    for (;;) {
        if (len == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                close(fd);
                pt_conf_error(cf, PT_LOG_EMERG, 0, "out of memory while reading \"%s\"", path);
                return PT_CONF_ERROR;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = pread(fd, buf + len, cap - len, (off_t) len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            free(buf);
            close(fd);
            /* nginx's wording and level, e.g. for a directory ("21: Is a
             * directory"), without a location */
            pt__conf_log(cf, PT_LOG_CRIT, err, "pread() \"%s\" failed", path);
            return PT_CONF_ERROR;
        }
        if (n == 0)
            break;
        len += (size_t) n;
    }
    close(fd);

    const char *rv = parse_text(cf, buf, len, path);
    free(buf);
    return rv;
}

const char *pt_conf_parse_string(pt_conf_t *cf, const char *text, const char *name)
{
    return parse_text(cf, text, strlen(text), name);
}

const char *pt_conf_parse_block(pt_conf_t *cf)
{
    if (cf->_src == NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "block parsed outside of a configuration text");
        return PT_CONF_ERROR;
    }
    return parse(cf, PARSE_BLOCK);
}

static int has_glob_chars(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

static int is_mime_types(const pt_str_t *path)
{
    static const char base[] = "mime.types";
    size_t n = sizeof(base) - 1;
    return path->len >= n && memcmp(path->data + path->len - n, base, n) == 0
           && (path->len == n || path->data[path->len - n - 1] == '/');
}

/* include FILE|GLOB: relative to the configuration's directory; files parse
 * at the current context (and through cf->handler when one is set). */
static const char *include_cmd(pt_conf_t *cf)
{
    pt_str_t *value = cf->args->elts;
    pt_str_t file = value[1];

    if (pt_conf_full_name(cf->cycle, &file, 1) != 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "out of memory while reading the configuration");
        return PT_CONF_ERROR;
    }

    if (!has_glob_chars(file.data)) {
        struct stat st;
        if (cf->cycle->builtin_conf && is_mime_types(&file) && stat(file.data, &st) != 0
            && errno == ENOENT)
            return parse_text(cf, pt_default_mime_types, pt_default_mime_types_len, file.data);
        return pt_conf_parse_file(cf, file.data);
    }

    glob_t gl;
    memset(&gl, 0, sizeof(gl));
    int r = glob(file.data, 0, NULL, &gl);
    if (r == GLOB_NOMATCH) {
        globfree(&gl);
        return PT_CONF_OK;
    }
    if (r != 0) {
        int err = errno;
        globfree(&gl);
        pt_conf_error(cf, PT_LOG_EMERG, r == GLOB_NOSPACE ? ENOMEM : err,
                      "glob() \"%s\" failed", file.data);
        return PT_CONF_ERROR;
    }
    const char *rv = PT_CONF_OK;
    for (size_t i = 0; i < gl.gl_pathc && rv == PT_CONF_OK; i++)
        rv = pt_conf_parse_file(cf, gl.gl_pathv[i]);
    globfree(&gl);
    return rv;
}

/* Checks and runs one directive whose tokens are in cf->args; last is what
 * ended it (PT_TOKEN_END or PT_TOKEN_BLOCK_START). */
static const char *dispatch(pt_conf_t *cf, int last)
{
    pt_str_t *name = cf->args->elts;
    size_t nargs = cf->args->nelts - 1;
    int found = 0;

    for (int i = index_find(name->data, name->len); i >= 0; i = dir_index.entries[i].next) {
        const pt_command_t *cmd = dir_index.entries[i].cmd;
        pt_module_t *module = dir_index.entries[i].module;
        found = 1;

        if (!(cmd->ctx & cf->ctx))
            continue;

        if (!(cmd->flags & PT_CONF_BLOCK) && last != PT_TOKEN_END) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "directive \"%s\" is not terminated by \";\"",
                          name->data);
            return PT_CONF_ERROR;
        }
        if ((cmd->flags & PT_CONF_BLOCK) && last != PT_TOKEN_BLOCK_START) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "directive \"%s\" has no opening \"{\"",
                          name->data);
            return PT_CONF_ERROR;
        }

        int bad_count;
        if (cmd->flags & PT_CONF_FLAG)
            bad_count = nargs != 1;
        else
            bad_count = nargs < cmd->min_args
                        || (cmd->max_args != PT_ARGS_ANY && nargs > cmd->max_args);
        if (bad_count) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid number of arguments in \"%s\" directive",
                          name->data);
            return PT_CONF_ERROR;
        }

        /* pt_conf_set_flag checks the value itself, after "is duplicate", as
         * nginx orders the two; other on|off setters get a checked value */
        if ((cmd->flags & PT_CONF_FLAG) && cmd->set != pt_conf_set_flag) {
            pt_str_t *v = &name[1];
            if (!pt_str_caseeq_lit(v, "on") && !pt_str_caseeq_lit(v, "off")) {
                pt_conf_error(cf, PT_LOG_EMERG, 0,
                              "invalid value \"%s\" in \"%s\" directive, it must be \"on\" or \"off\"",
                              v->data, name->data);
                return PT_CONF_ERROR;
            }
        }

        void *conf = NULL;
        int idx = module->index;
        pt_http_conf_ctx_t *hc = cf->http_ctx;
        switch (cmd->conf) {
        case PT_CONF_CORE:
            conf = cf->cycle->core_conf ? cf->cycle->core_conf[idx] : NULL;
            break;
        case PT_CONF_HTTP_MAIN:
            conf = hc && hc->main_conf ? hc->main_conf[idx] : NULL;
            break;
        case PT_CONF_HTTP_SRV:
            conf = hc && hc->srv_conf ? hc->srv_conf[idx] : NULL;
            break;
        case PT_CONF_HTTP_LOC:
            conf = hc && hc->loc_conf ? hc->loc_conf[idx] : NULL;
            break;
        case PT_CONF_BLOCK_DATA:
            conf = cf->block_data;
            break;
        default:
            break;
        }

        const char *rv = cmd->set ? cmd->set(cf, cmd, conf) : PT_CONF_OK;
        if (rv == PT_CONF_OK || rv == PT_CONF_ERROR)
            return rv;
        /* the setter may have parsed a block and reused cf->args: print the
         * command's own name */
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"%s\" directive %s", cmd->name, rv);
        return PT_CONF_ERROR;
    }

    if (found)
        pt_conf_error(cf, PT_LOG_EMERG, 0, "\"%s\" directive is not allowed here", name->data);
    else
        pt_conf_error(cf, PT_LOG_EMERG, 0, "unknown directive \"%s\"", name->data);
    return PT_CONF_ERROR;
}

static const char *parse(pt_conf_t *cf, int type)
{
    for (;;) {
        int rc = pt__conf_read_token(cf);

        switch (rc) {
        case PT_TOKEN_ERROR:
            return PT_CONF_ERROR;
        case PT_TOKEN_BLOCK_DONE:
            if (type != PARSE_BLOCK) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "unexpected \"}\"");
                return PT_CONF_ERROR;
            }
            return PT_CONF_OK;
        case PT_TOKEN_EOF:
            if (type == PARSE_BLOCK) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "unexpected end of file, expecting \"}\"");
                return PT_CONF_ERROR;
            }
            return PT_CONF_OK;
        case PT_TOKEN_BLOCK_START:
            if (cf->_src->cmdline) {
                pt_conf_error(cf, PT_LOG_EMERG, 0,
                              "block directives are not supported in -g option");
                return PT_CONF_ERROR;
            }
            break;
        default:
            break;
        }

        pt_str_t *name = cf->args->elts;
        const char *rv;

        if (pt_str_eq_lit(name, "include")) {
            if (rc != PT_TOKEN_END) {
                pt_conf_error(cf, PT_LOG_EMERG, 0,
                              "directive \"include\" is not terminated by \";\"");
                return PT_CONF_ERROR;
            }
            if (cf->args->nelts != 2) {
                pt_conf_error(cf, PT_LOG_EMERG, 0,
                              "invalid number of arguments in \"include\" directive");
                return PT_CONF_ERROR;
            }
            rv = include_cmd(cf);
        } else if (cf->handler) {
            /* data blocks (types, map): every line is the handler's */
            if (rc == PT_TOKEN_BLOCK_START) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "unexpected \"{\"");
                return PT_CONF_ERROR;
            }
            rv = cf->handler(cf, cf->handler_data);
            if (rv != PT_CONF_OK && rv != PT_CONF_ERROR) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "%s", rv);
                rv = PT_CONF_ERROR;
            }
        } else {
            rv = dispatch(cf, rc);
        }
        if (rv != PT_CONF_OK)
            return PT_CONF_ERROR;
    }
}
