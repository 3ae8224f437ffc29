/* Cycles: one parsed configuration and what the master made from it
 * (listening sockets, shared-memory zones, open files). See cycle_init.h for
 * the create / commit / destroy protocol a reload follows. */
#include "cycle_init.h"
#include "core_module.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/log.h"
#include "../net/listen.h"

#define CYCLE_POOL_SIZE (16 * 1024)

/* The cycle and what only this file needs to know about it. */
typedef struct {
    pt_cycle_t cycle;               /* first: the public view */
    unsigned   committed:1;         /* owns every fd / zone it holds */
} cycle_full_t;

static pt_cycle_opts_t saved_opts;  /* the first call's, reused by reloads */

void pt_cli_message(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    int n = snprintf(buf, sizeof(buf), "portico: ");
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof(buf) - (size_t) n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t len = (size_t) n + ((size_t) m < sizeof(buf) - (size_t) n - 1
                               ? (size_t) m : sizeof(buf) - (size_t) n - 2);
    buf[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, len);
    (void) w;
}

int pt_mkdir_parents(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    char *slash = strrchr(buf, '/');
    if (slash == NULL || slash == buf)
        return 0;
    *slash = '\0';

    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return 0;
}

static int str_set(pt_pool_t *pool, pt_str_t *dst, const char *s)
{
    if (s == NULL) {
        dst->data = NULL;
        dst->len = 0;
        return 0;
    }
    dst->len = strlen(s);
    dst->data = pt_pstrndup(pool, s, dst->len);
    return dst->data ? 0 : -1;
}

static char *dup_opt(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- listening sockets ----------------------------------------------------- */

/* Sockets handed over by the previous binary (USR2), until the first cycle
 * takes them. A reuseport listener's sockets come one per worker, in worker
 * order, all with the same address. */
typedef struct {
    pt_sockaddr_t addr;
    socklen_t     socklen;
    int           fd;
    int           reuseport;        /* SO_REUSEPORT is set on it */
    int           taken;
} inherited_t;

static inherited_t *inherited;
static size_t       ninherited;

int pt_cycle_inherit(pt_log_t *log)
{
    const char *v = getenv(PT_INHERIT_ENV);
    if (v == NULL)
        return 0;

    pt_log_error(PT_LOG_NOTICE, log, 0, "using inherited sockets from \"%s\"", v);
    size_t n = 1;
    for (const char *p = v; *p; p++)
        n += *p == ';';
    inherited = calloc(n, sizeof(*inherited));
    if (inherited == NULL)
        return -1;

    const char *p = v;
    while (*p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t) (end - p) : strlen(p);
        int64_t fd = pt_atoi64(p, len);
        if (fd < 0 || fd > 65535) {
            pt_log_error(PT_LOG_EMERG, log, 0, "invalid socket number \"%.*s\" in "
                         PT_INHERIT_ENV " environment variable, ignoring the rest of the "
                         "variable", (int) len, p);
            break;
        }
        inherited_t *in = &inherited[ninherited];
        in->socklen = sizeof(in->addr);
        if (getsockname((int) fd, &in->addr.sa, &in->socklen) != 0) {
            pt_log_error(PT_LOG_CRIT, log, errno, "getsockname() of the inherited socket #%d "
                         "failed", (int) fd);
        } else {
            int rp = 0;
            socklen_t rplen = sizeof(rp);
            if (in->addr.sa.sa_family != AF_UNIX
                && getsockopt((int) fd, SOL_SOCKET, SO_REUSEPORT, &rp, &rplen) != 0)
                rp = 0;
            in->reuseport = rp != 0;
            in->fd = (int) fd;
            ninherited++;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    unsetenv(PT_INHERIT_ENV);   /* not for our own children */
    return (int) ninherited;
}

/* The next inherited socket bound to ls's address (in the order the old
 * binary listed them), or -1. */
static int take_inherited(pt_listening_t *ls, int *reuseport)
{
    for (size_t i = 0; i < ninherited; i++) {
        inherited_t *in = &inherited[i];
        if (in->taken
            || !pt_sockaddr_eq(&in->addr.sa, in->socklen, &ls->addr.sa, ls->socklen))
            continue;
        in->taken = 1;
        /* exec cleared close-on-exec; accept needs nonblocking */
        fcntl(in->fd, F_SETFD, FD_CLOEXEC);
        fcntl(in->fd, F_SETFL, fcntl(in->fd, F_GETFL) | O_NONBLOCK);
        *reuseport = in->reuseport;
        return in->fd;
    }
    return -1;
}

/* The first cycle is in service: what it did not take is closed. */
static void inherited_done(void)
{
    for (size_t i = 0; i < ninherited; i++) {
        if (!inherited[i].taken)
            close(inherited[i].fd);
    }
    free(inherited);
    inherited = NULL;
    ninherited = 0;
}

static pt_listening_t *find_old_listener(pt_cycle_t *old, const pt_listening_t *ls)
{
    if (old == NULL)
        return NULL;
    pt_listening_t *all = old->listening.elts;
    for (size_t i = 0; i < old->listening.nelts; i++) {
        if (all[i].fd >= 0
            && pt_sockaddr_eq(&all[i].addr.sa, all[i].socklen, &ls->addr.sa, ls->socklen))
            return &all[i];
    }
    return NULL;
}

/* Whether old holds fd (any listener, any worker's socket); with forget,
 * old lets go of it (so destroying old leaves it open). */
static int old_has_fd(pt_cycle_t *old, int fd, int forget)
{
    int found = 0;

    if (old == NULL || fd < 0)
        return 0;
    pt_listening_t *all = old->listening.elts;
    for (size_t i = 0; i < old->listening.nelts; i++) {
        if (all[i].fd == fd) {
            found = 1;
            if (forget)
                all[i].fd = -1;
        }
        for (unsigned k = 0; k < all[i].nworker_fds; k++) {
            if (all[i].worker_fds[k] == fd) {
                found = 1;
                if (forget)
                    all[i].worker_fds[k] = -1;
            }
        }
    }
    return found;
}

/* How many sockets ls gets: one per worker for reuseport over TCP when
 * there are worker processes, else one. */
static unsigned sockets_wanted(pt_cycle_t *cycle, const pt_listening_t *ls)
{
    if (!ls->reuseport || ls->addr.sa.sa_family == AF_UNIX)
        return 1;
    if (pt_core_module.index < 0 || (size_t) pt_core_module.index >= cycle->nmodules
        || cycle->core_conf[pt_core_module.index] == NULL)
        return 1;
    pt_core_conf_t *ccf = pt_core_conf(cycle);
    if (!ccf->master || ccf->worker_processes <= 1)
        return 1;
    return (unsigned) (ccf->worker_processes < PT_MAX_WORKERS ? ccf->worker_processes
                                                              : PT_MAX_WORKERS);
}

/* Socket k of ls (k = 0 is ls->fd). */
static void set_socket(pt_listening_t *ls, unsigned k, int fd)
{
    if (k == 0)
        ls->fd = fd;
    if (ls->nworker_fds > 0)
        ls->worker_fds[k] = fd;
}

static int open_listening(pt_cycle_t *cycle, pt_cycle_t *old, pt_log_t *log)
{
    pt_listening_t *all = cycle->listening.elts;

    for (size_t i = 0; i < cycle->listening.nelts; i++) {
        pt_listening_t *ls = &all[i];
        if (ls->log == NULL)
            ls->log = cycle->log;
        ls->fd = -1;
        ls->inherited = 0;
        ls->worker_fds = NULL;
        ls->nworker_fds = 0;

        unsigned n = sockets_wanted(cycle, ls), have = 0;
        if (n > 1) {
            ls->worker_fds = pt_palloc(cycle->pool, n * sizeof(int));
            if (ls->worker_fds == NULL) {
                pt_log_error(PT_LOG_EMERG, log, 0, "out of memory");
                return -1;
            }
            for (unsigned k = 0; k < n; k++)
                ls->worker_fds[k] = -1;
            ls->nworker_fds = n;
        }

        /* the sockets the running cycle (or the old binary) has for this
         * address: worker k keeps socket k; SO_REUSEPORT is added to a
         * socket that lacks it (set after listen(), it still joins the new
         * sockets' group) */
        pt_listening_t *o = find_old_listener(old, ls);
        if (o != NULL) {
            if (pt_listening_reconfigure(ls, o, o->fd, ls->reuseport && !o->reuseport, log) != 0)
                return -1;
            set_socket(ls, 0, o->fd);
            ls->inherited = 1;
            have = 1;
            while (have < n && have < o->nworker_fds && o->worker_fds[have] >= 0) {
                pt_listening_reconfigure(ls, o, o->worker_fds[have], 0, log);
                set_socket(ls, have, o->worker_fds[have]);
                have++;
            }
        } else if (old == NULL && ninherited > 0) {
            int fd, rp = 0;
            while (have < n && (fd = take_inherited(ls, &rp)) >= 0) {
                set_socket(ls, have, fd);
                if (have == 0)
                    ls->inherited = 1;
                have++;
                if (pt_listening_reconfigure(ls, NULL, fd, ls->reuseport && !rp, log) != 0)
                    return -1;
            }
        }

        if (have == 0) {
            if (pt_listening_open(ls, log) != 0)
                return -1;
            set_socket(ls, 0, ls->fd);
            have = 1;
        }
        for (; have < n; have++) {
            int fd = pt_listening_open_fd(ls, log);
            if (fd < 0)
                return -1;
            set_socket(ls, have, fd);
        }
    }
    return 0;
}

/* Closes what this cycle opened itself (not what it shares with old). */
static void close_own_listening(pt_cycle_t *cycle, int committed)
{
    pt_listening_t *all = cycle->listening.elts;

    for (size_t i = 0; i < cycle->listening.nelts; i++) {
        pt_listening_t *ls = &all[i];
        if (!committed && cycle->old_cycle != NULL) {
            /* old's stay open */
            for (unsigned k = 0; k < ls->nworker_fds; k++) {
                if (old_has_fd(cycle->old_cycle, ls->worker_fds[k], 0))
                    ls->worker_fds[k] = -1;
            }
            if (old_has_fd(cycle->old_cycle, ls->fd, 0))
                ls->fd = -1;
        }
        pt_listening_close(ls);
    }
}

/* ---- shared memory ----------------------------------------------------------- */

static pt_shm_zone_t *find_old_zone(pt_cycle_t *old, const pt_shm_zone_t *z)
{
    if (old == NULL || z->noreuse)
        return NULL;
    for (pt_shm_zone_t *o = old->shm_zones; o; o = o->next) {
        if (o->addr != NULL && !o->noreuse && o->size == z->size && o->tag == z->tag
            && pt_str_eq(&o->name, &z->name))
            return o;
    }
    return NULL;
}

static int zone_is_old(pt_cycle_t *old, const pt_shm_zone_t *z)
{
    if (old == NULL || z->addr == NULL)
        return 0;
    for (pt_shm_zone_t *o = old->shm_zones; o; o = o->next) {
        if (o->addr == z->addr)
            return 1;
    }
    return 0;
}

static int map_zones(pt_cycle_t *cycle, pt_cycle_t *old, pt_log_t *log)
{
    for (pt_shm_zone_t *z = cycle->shm_zones; z; z = z->next) {
        if (z->size == 0) {
            pt_log_error(PT_LOG_EMERG, log, 0, "zero size shared memory zone \"%.*s\"",
                         (int) z->name.len, z->name.data);
            return -1;
        }
        pt_shm_zone_t *o = find_old_zone(old, z);
        if (o != NULL) {
            z->addr = o->addr;
        } else if (pt_shm_alloc(z) != 0) {
            z->addr = NULL;
            pt_log_error(PT_LOG_EMERG, log, errno,
                         "could not allocate shared memory zone \"%.*s\" (%zu bytes)",
                         (int) z->name.len, z->name.data, z->size);
            return -1;
        }
        if (z->init && z->init(z, o ? o->data : NULL) != 0) {
            pt_log_error(PT_LOG_EMERG, log, 0, "could not initialize shared memory zone \"%.*s\"",
                         (int) z->name.len, z->name.data);
            return -1;
        }
    }
    return 0;
}

static void free_own_zones(pt_cycle_t *cycle, pt_cycle_t *old, int committed)
{
    for (pt_shm_zone_t *z = cycle->shm_zones; z; z = z->next) {
        if (z->addr == NULL)
            continue;
        if (!committed && zone_is_old(old, z)) {
            z->addr = NULL;
            continue;
        }
        pt_shm_free(z);
        z->addr = NULL;
    }
}

/* ---- create / commit / destroy ------------------------------------------------- */

static void release(cycle_full_t *full)
{
    pt_cycle_t *cycle = &full->cycle;

    close_own_listening(cycle, full->committed);
    free_own_zones(cycle, cycle->old_cycle, full->committed);
    pt_open_files_close(cycle->open_files);
    cycle->open_files = NULL;
    pt_pool_destroy(cycle->pool);
}

pt_cycle_t *pt_cycle_create(pt_cycle_t *old, const pt_cycle_opts_t *opts)
{
    pt_cycle_opts_t o;

    if (opts != NULL) {
        saved_opts = *opts;
        saved_opts.prefix = dup_opt(opts->prefix);
        saved_opts.conf_file = dup_opt(opts->conf_file);
        saved_opts.conf_param = dup_opt(opts->conf_param);
        saved_opts.error_log = dup_opt(opts->error_log);
        o = saved_opts;
    } else {
        o = saved_opts;
        o.test_only = 0;
        o.dump_config = 0;
        o.signaller = 0;
        o.quiet = 0;
    }

    pt_log_t *log = old ? old->log : pt_log_default;

    pt_pool_t *pool = pt_pool_create(CYCLE_POOL_SIZE);
    if (pool == NULL) {
        pt_log_error(PT_LOG_EMERG, log, errno, "could not allocate the configuration pool");
        return NULL;
    }
    cycle_full_t *full = pt_pcalloc(pool, sizeof(*full));
    if (full == NULL) {
        pt_pool_destroy(pool);
        pt_log_error(PT_LOG_EMERG, log, 0, "out of memory");
        return NULL;
    }
    pt_cycle_t *cycle = &full->cycle;
    cycle->pool = pool;
    cycle->log = log;
    cycle->modules = o.modules;
    cycle->nmodules = o.nmodules;
    cycle->old_cycle = old;
    cycle->test_only = o.test_only;
    cycle->quiet = o.quiet;
    cycle->dump_config = o.dump_config;

    const char *slash = strrchr(o.conf_file, '/');
    size_t dirlen = slash ? (size_t) (slash - o.conf_file) + 1 : 0;
    if (str_set(pool, &cycle->prefix, o.prefix) != 0
        || str_set(pool, &cycle->conf_file, o.conf_file) != 0
        || str_set(pool, &cycle->conf_param, o.conf_param) != 0
        || str_set(pool, &cycle->error_log_path, o.error_log) != 0
        || (cycle->conf_prefix.data = pt_pstrndup(pool, o.conf_file, dirlen)) == NULL
        || pt_array_init(&cycle->listening, pool, 4, sizeof(pt_listening_t)) != 0
        || (cycle->core_conf = pt_pcalloc(pool, (o.nmodules + 1) * sizeof(void *))) == NULL) {
        pt_log_error(PT_LOG_EMERG, log, 0, "out of memory");
        pt_pool_destroy(pool);
        return NULL;
    }
    cycle->conf_prefix.len = dirlen;

    /* no -c and nothing at the default path: the compiled-in configuration */
    if (o.conf_default && access(o.conf_file, F_OK) != 0 && errno == ENOENT)
        cycle->builtin_conf = 1;

    /* prefix/logs is where the default error log and pid file live; a
     * server start creates it (main.c) so a fresh prefix runs as is, and the
     * same configuration must then pass -t: create it here too. Only when
     * the prefix itself exists: a mistyped -p should fail, not grow a tree.
     * (-s parses the configuration too, and its error_log files open.) */
    {
        struct stat st;
        char logs[4096];
        if (stat(o.prefix, &st) == 0 && S_ISDIR(st.st_mode)
            && snprintf(logs, sizeof(logs), "%slogs", o.prefix) < (int) sizeof(logs)
            && mkdir(logs, 0755) != 0 && errno != EEXIST) {
            pt_log_error(PT_LOG_WARN, log, errno, "mkdir() \"%s\" failed", logs);
        }
    }

    pt_conf_t cf;
    memset(&cf, 0, sizeof(cf));
    cf.cycle = cycle;
    cf.pool = pool;
    cf.temp_pool = pt_pool_create(CYCLE_POOL_SIZE);
    cf.ctx = PT_CTX_MAIN;
    cf.log = log;
    if (cf.temp_pool == NULL) {
        pt_log_error(PT_LOG_EMERG, log, 0, "out of memory");
        pt_pool_destroy(pool);
        return NULL;
    }

    for (size_t i = 0; i < o.nmodules; i++) {
        pt_module_t *m = o.modules[i];
        if (m->create_core_conf == NULL)
            continue;
        void *conf = m->create_core_conf(&cf);
        if (conf == NULL) {
            pt_log_error(PT_LOG_EMERG, log, 0, "could not create the \"%s\" configuration",
                         m->name);
            goto failed;
        }
        cycle->core_conf[m->index] = conf;
    }

    /* -g first, as nginx: a directive given there and again in the file is
     * a duplicate reported at the file's line */
    if (o.conf_param && pt_conf_parse_string(&cf, o.conf_param, NULL) != PT_CONF_OK)
        goto failed;

    const char *rv = cycle->builtin_conf
                     ? pt_conf_parse_string(&cf, pt_default_conf, o.conf_file)
                     : pt_conf_parse_file(&cf, o.conf_file);
    if (rv != PT_CONF_OK)
        goto failed;

    if (o.test_only && !o.quiet)
        pt_cli_message("the configuration file %s syntax is ok", o.conf_file);

    for (size_t i = 0; i < o.nmodules; i++) {
        pt_module_t *m = o.modules[i];
        if (m->init_core_conf == NULL)
            continue;
        rv = m->init_core_conf(&cf, cycle->core_conf[m->index]);
        if (rv == PT_CONF_OK)
            continue;
        if (rv != PT_CONF_ERROR)
            pt_log_error(PT_LOG_EMERG, log, 0, "%s", rv);
        goto failed;
    }

    if (o.signaller || o.test_only)
        goto done;

    /* the new cycle's own log takes over at startup; during a reload the
     * running cycle's log reports until the new one is in service */
    pt_log_t *elog = old ? old->log : cycle->log;

    if (open_listening(cycle, old, elog) != 0)
        goto failed;
    if (map_zones(cycle, old, elog) != 0)
        goto failed;

    for (size_t i = 0; i < o.nmodules; i++) {
        pt_module_t *m = o.modules[i];
        if (m->init_cycle && m->init_cycle(cycle) != 0) {
            pt_log_error(PT_LOG_EMERG, elog, 0, "module \"%s\" could not start", m->name);
            goto failed;
        }
    }

    if (old == NULL)
        inherited_done();

    if (cycle->builtin_conf)
        pt_log_error(PT_LOG_NOTICE, cycle->log, 0,
                     "no configuration file at %s, using the built-in default configuration",
                     o.conf_file);

done:
    pt_pool_destroy(cf.temp_pool);
    if (old == NULL)
        full->committed = 1;
    return cycle;

failed:
    pt_pool_destroy(cf.temp_pool);
    release(full);
    return NULL;
}

void pt_cycle_commit(pt_cycle_t *cycle)
{
    cycle_full_t *full = (cycle_full_t *) cycle;
    pt_cycle_t *old = cycle->old_cycle;

    if (old != NULL) {
        /* old forgets what new took over, so destroying old keeps it open
         * (and closes only the sockets new has no use for: removed
         * addresses, and the sockets of workers a smaller worker_processes
         * dropped) */
        pt_listening_t *all = cycle->listening.elts;
        for (size_t i = 0; i < cycle->listening.nelts; i++) {
            (void) old_has_fd(old, all[i].fd, 1);
            for (unsigned k = 1; k < all[i].nworker_fds; k++)
                (void) old_has_fd(old, all[i].worker_fds[k], 1);
        }
        for (pt_shm_zone_t *z = cycle->shm_zones; z; z = z->next) {
            for (pt_shm_zone_t *oz = old->shm_zones; oz; oz = oz->next) {
                if (z->addr != NULL && oz->addr == z->addr)
                    oz->addr = NULL;
            }
        }
        /* zones kept across the reload apply what their init staged */
        for (pt_shm_zone_t *z = cycle->shm_zones; z; z = z->next) {
            if (z->addr != NULL && z->commit != NULL)
                z->commit(z);
        }
    }
    cycle->old_cycle = NULL;
    full->committed = 1;
}

void pt_cycle_destroy(pt_cycle_t *cycle)
{
    if (cycle == NULL)
        return;
    release((cycle_full_t *) cycle);
}
