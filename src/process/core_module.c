/* The core module: the main-context directives that shape the processes
 * (daemon, master_process, worker_processes, pid, user, error_log, limits,
 * affinity, ...) and the events { } block. Its configuration is read by the
 * master and the workers; everyone else sees the public part through
 * pt_core_conf_t (cycle.h). */
#include "core_module.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_PID_PATH   "logs/portico.pid"
#define DEFAULT_ERROR_LOG  "logs/error.log"
#define DEFAULT_USER       "nobody"
#define DEFAULT_GROUP      "nogroup"

static pt_str_t *arg(pt_conf_t *cf, size_t i)
{
    return &((pt_str_t *) cf->args->elts)[i];
}

int pt_cpu_count(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int) n : 1;
}

/* ---- main context ------------------------------------------------------ */

static const char *set_worker_processes(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_core_conf_full_t *ccf = conf;
    pt_str_t *v = arg(cf, 1);

    if (ccf->worker_processes_set)
        return "is duplicate";
    ccf->worker_processes_set = 1;
    if (pt_str_eq_lit(v, "auto")) {
        ccf->core.worker_processes = -1;
        return PT_CONF_OK;
    }
    int64_t n = pt_atoi64(v->data, v->len);
    if (n < 0)
        return "invalid value";
    if (n > PT_MAX_WORKERS) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "value must be between 0 and %d", PT_MAX_WORKERS);
        return PT_CONF_ERROR;
    }
    ccf->core.worker_processes = n;
    return PT_CONF_OK;
}

static const char *set_user(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_core_conf_full_t *ccf = conf;

    if (ccf->core.user.data)
        return "is duplicate";

    ccf->core.user = *arg(cf, 1);
    if (cf->args->nelts == 3)
        ccf->core.group = *arg(cf, 2);

    if (geteuid() != 0) {
        pt_conf_error(cf, PT_LOG_WARN, 0,
                      "the \"user\" directive makes sense only if the master process runs "
                      "with super-user privileges, ignored");
        return PT_CONF_OK;
    }

    errno = 0;
    struct passwd *pw = getpwnam(ccf->core.user.data);
    if (pw == NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, errno, "getpwnam(\"%s\") failed", ccf->core.user.data);
        return PT_CONF_ERROR;
    }
    ccf->uid = pw->pw_uid;
    ccf->gid = pw->pw_gid;

    /* "user name" alone: the group of the same name when there is one (as
     * nginx does), else the user's primary group */
    const char *group = cf->args->nelts == 3 ? ccf->core.group.data : ccf->core.user.data;
    errno = 0;
    struct group *gr = getgrnam(group);
    if (gr != NULL) {
        ccf->gid = gr->gr_gid;
        if (ccf->core.group.data == NULL)
            ccf->core.group = ccf->core.user;
    } else if (cf->args->nelts == 3) {
        pt_conf_error(cf, PT_LOG_EMERG, errno, "getgrnam(\"%s\") failed", group);
        return PT_CONF_ERROR;
    }
    ccf->user_set = 1;
    return PT_CONF_OK;
}

static const char *set_error_log(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_log_t *head = &cf->cycle->new_log;
    const char *rv = pt_conf_set_error_log(cf, &head);
    if (rv == PT_CONF_OK)
        cf->cycle->log = &cf->cycle->new_log;
    return rv;
}

static const char *set_priority(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_core_conf_full_t *ccf = conf;
    pt_str_t *v = arg(cf, 1);

    if (ccf->priority != PT_CONF_UNSET)
        return "is duplicate";
    int neg = v->len > 0 && v->data[0] == '-';
    int plus = v->len > 0 && v->data[0] == '+';
    int64_t n = pt_atoi64(v->data + (neg || plus), v->len - (neg || plus));
    if (n < 0 || n > 20)
        return "invalid number";
    ccf->priority = neg ? -n : n;
    return PT_CONF_OK;
}

/* worker_cpu_affinity auto [mask] | mask1 mask2 ...; masks are binary
 * strings, rightmost digit = CPU 0. */
static int parse_cpumask(const pt_str_t *v, cpu_set_t *set)
{
    CPU_ZERO(set);
    if (v->len == 0 || v->len > CPU_SETSIZE)
        return -1;
    for (size_t i = 0; i < v->len; i++) {
        char ch = v->data[v->len - 1 - i];
        if (ch == '1')
            CPU_SET(i, set);
        else if (ch != '0')
            return -1;
    }
    return 0;
}

static const char *set_cpu_affinity(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_core_conf_full_t *ccf = conf;
    size_t nargs = cf->args->nelts - 1;

    if (ccf->cpu_affinity_auto || ccf->cpu_affinity)
        return "is duplicate";

    if (pt_str_eq_lit(arg(cf, 1), "auto")) {
        if (nargs > 2)
            return "invalid number of arguments";
        if (nargs == 2) {
            if (parse_cpumask(arg(cf, 2), &ccf->cpu_affinity_auto_mask) != 0) {
                pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid character \"%s\" in "
                              "\"worker_cpu_affinity\"", arg(cf, 2)->data);
                return PT_CONF_ERROR;
            }
        } else {
            CPU_ZERO(&ccf->cpu_affinity_auto_mask);
            for (int i = 0; i < CPU_SETSIZE; i++)
                CPU_SET(i, &ccf->cpu_affinity_auto_mask);
        }
        ccf->cpu_affinity_auto = 1;
        return PT_CONF_OK;
    }

    ccf->cpu_affinity = pt_palloc(cf->pool, nargs * sizeof(cpu_set_t));
    if (ccf->cpu_affinity == NULL)
        return PT_CONF_ERROR;
    for (size_t i = 0; i < nargs; i++) {
        if (parse_cpumask(arg(cf, i + 1), &ccf->cpu_affinity[i]) != 0) {
            pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid character \"%s\" in "
                          "\"worker_cpu_affinity\"", arg(cf, i + 1)->data);
            return PT_CONF_ERROR;
        }
    }
    ccf->cpu_affinity_n = (unsigned) nargs;
    return PT_CONF_OK;
}

static const char *set_env(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_core_conf_full_t *ccf = conf;

    if (ccf->env == NULL) {
        ccf->env = pt_array_create(cf->pool, 4, sizeof(pt_str_t));
        if (ccf->env == NULL)
            return PT_CONF_ERROR;
    }
    pt_str_t *s = pt_array_push(ccf->env);
    if (s == NULL)
        return PT_CONF_ERROR;
    *s = *arg(cf, 1);
    return PT_CONF_OK;
}

/* ---- events { } -------------------------------------------------------- */

static const char *events_block(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_core_conf_full_t *ccf = conf;

    if (ccf->events)
        return "is duplicate";
    ccf->events = 1;

    unsigned ctx = cf->ctx;
    cf->ctx = PT_CTX_EVENTS;
    const char *rv = pt_conf_parse_block(cf);
    cf->ctx = ctx;
    return rv;
}

static const char *set_use(pt_conf_t *cf, const pt_command_t *cmd, void *conf)
{
    pt_str_t *v = arg(cf, 1);

    if (pt_str_eq_lit(v, "epoll"))
        return PT_CONF_OK;
    pt_conf_error(cf, PT_LOG_EMERG, 0, "invalid event type \"%s\"", v->data);
    return PT_CONF_ERROR;
}

static const pt_conf_bounds_t connections_bounds = { 1, -1 };

#define CCF(f) offsetof(pt_core_conf_full_t, f)

static const pt_command_t core_commands[] = {
    { "daemon", PT_CTX_MAIN, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_CORE,
      CCF(core.daemon), NULL },
    { "master_process", PT_CTX_MAIN, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_CORE,
      CCF(core.master), NULL },
    { "worker_processes", PT_CTX_MAIN, 0, 1, 1, set_worker_processes, PT_CONF_CORE, 0, NULL },
    { "pid", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_path, PT_CONF_CORE, CCF(core.pid_path), NULL },
    { "user", PT_CTX_MAIN, 0, 1, 2, set_user, PT_CONF_CORE, 0, NULL },
    { "error_log", PT_CTX_MAIN, 0, 1, PT_ARGS_ANY, set_error_log, PT_CONF_CORE, 0, NULL },
    { "worker_rlimit_nofile", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_num, PT_CONF_CORE,
      CCF(core.worker_rlimit_nofile), NULL },
    { "worker_rlimit_core", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_size, PT_CONF_CORE,
      CCF(rlimit_core), NULL },
    { "worker_shutdown_timeout", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_msec, PT_CONF_CORE,
      CCF(core.worker_shutdown_timeout), NULL },
    { "worker_priority", PT_CTX_MAIN, 0, 1, 1, set_priority, PT_CONF_CORE, 0, NULL },
    { "worker_cpu_affinity", PT_CTX_MAIN, 0, 1, PT_ARGS_ANY, set_cpu_affinity, PT_CONF_CORE,
      0, NULL },
    { "working_directory", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_path, PT_CONF_CORE,
      CCF(core.working_directory), NULL },
    { "pcre_jit", PT_CTX_MAIN, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_CORE,
      CCF(pcre_jit), NULL },
    { "env", PT_CTX_MAIN, 0, 1, 1, set_env, PT_CONF_CORE, 0, NULL },
    { "lock_file", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_ignored, PT_CONF_CORE, 0, NULL },
    { "timer_resolution", PT_CTX_MAIN, 0, 1, 1, pt_conf_set_msec, PT_CONF_CORE,
      CCF(timer_resolution), NULL },
    { "thread_pool", PT_CTX_MAIN, 0, 1, 3, pt_conf_set_ignored, PT_CONF_CORE, 0, NULL },
    { "worker_aio_requests", PT_CTX_EVENTS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_CORE, 0,
      NULL },
    { "debug_connection", PT_CTX_EVENTS, 0, 1, 1, pt_conf_set_ignored, PT_CONF_CORE, 0, NULL },

    { "events", PT_CTX_MAIN, PT_CONF_BLOCK, 0, 0, events_block, PT_CONF_CORE, 0, NULL },
    { "worker_connections", PT_CTX_EVENTS, 0, 1, 1, pt_conf_set_num, PT_CONF_CORE,
      CCF(core.worker_connections), &connections_bounds },
    { "multi_accept", PT_CTX_EVENTS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_CORE,
      CCF(core.multi_accept), NULL },
    { "io_uring_send", PT_CTX_EVENTS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_CORE,
      CCF(core.io_uring_send), NULL },
    { "use", PT_CTX_EVENTS, 0, 1, 1, set_use, PT_CONF_CORE, 0, NULL },
    { "accept_mutex", PT_CTX_EVENTS, PT_CONF_FLAG, 1, 1, pt_conf_set_flag, PT_CONF_CORE,
      CCF(accept_mutex), NULL },
    { "accept_mutex_delay", PT_CTX_EVENTS, 0, 1, 1, pt_conf_set_msec, PT_CONF_CORE,
      CCF(accept_mutex_delay), NULL },
    PT_COMMAND_END
};

/* ---- create / init ----------------------------------------------------- */

static void *core_create_conf(pt_conf_t *cf)
{
    pt_core_conf_full_t *ccf = pt_pcalloc(cf->pool, sizeof(*ccf));
    if (ccf == NULL)
        return NULL;
    ccf->core.daemon = PT_CONF_UNSET;
    ccf->core.master = PT_CONF_UNSET;
    ccf->core.worker_processes = PT_CONF_UNSET;
    ccf->core.worker_rlimit_nofile = PT_CONF_UNSET;
    ccf->core.worker_shutdown_timeout = PT_CONF_UNSET_MSEC;
    ccf->core.worker_connections = PT_CONF_UNSET;
    ccf->core.multi_accept = PT_CONF_UNSET;
    ccf->core.io_uring_send = PT_CONF_UNSET;
    ccf->priority = PT_CONF_UNSET;
    ccf->rlimit_core = PT_CONF_UNSET_SIZE;
    ccf->pcre_jit = PT_CONF_UNSET;
    ccf->timer_resolution = PT_CONF_UNSET_MSEC;
    ccf->accept_mutex = PT_CONF_UNSET;
    ccf->accept_mutex_delay = PT_CONF_UNSET_MSEC;
    return ccf;
}

/* The main error log when no error_log directive named one: -e, else
 * logs/error.log, at level error (nginx's default). */
static const char *default_error_log(pt_conf_t *cf)
{
    pt_cycle_t *cycle = cf->cycle;
    pt_str_t path;

    if (cycle->error_log_path.len) {
        path = cycle->error_log_path;
    } else {
        pt_str_set(&path, DEFAULT_ERROR_LOG);
    }
    const char *name = "stderr";
    if (!pt_str_eq_lit(&path, "stderr")) {
        if (pt_conf_full_name(cycle, &path, 0) != 0)
            return PT_CONF_ERROR;
        name = path.data;
    }
    pt_open_file_t *f = pt_open_file_get(cycle->pool, &cycle->open_files, name);
    if (f == NULL) {
        pt_conf_error(cf, PT_LOG_EMERG, errno, "open() \"%s\" failed", name);
        return PT_CONF_ERROR;
    }
    memset(&cycle->new_log, 0, sizeof(cycle->new_log));
    cycle->new_log.level = PT_LOG_ERR;
    cycle->new_log.file = f;
    cycle->log = &cycle->new_log;
    return PT_CONF_OK;
}

static const char *core_init_conf(pt_conf_t *cf, void *conf)
{
    pt_core_conf_full_t *ccf = conf;
    pt_cycle_t *cycle = cf->cycle;

    if (!ccf->events) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "no \"events\" section in configuration");
        return PT_CONF_ERROR;
    }

    pt_conf_init(ccf->core.daemon, 1);
    pt_conf_init(ccf->core.master, 1);
    if (!ccf->worker_processes_set)
        ccf->core.worker_processes = 1;
    if (ccf->core.worker_processes == -1)
        ccf->core.worker_processes = pt_cpu_count();
    if (ccf->core.worker_processes > PT_MAX_WORKERS)
        ccf->core.worker_processes = PT_MAX_WORKERS;
    pt_conf_init(ccf->core.worker_connections, 512);
    pt_conf_init(ccf->core.multi_accept, 0);
    pt_conf_init(ccf->core.io_uring_send, 1);
    pt_conf_init(ccf->pcre_jit, 0);
    pt_conf_init(ccf->accept_mutex, 0);
    pt_conf_init(ccf->accept_mutex_delay, 500);

    if (ccf->core.pid_path.data == NULL) {
        pt_str_set(&ccf->core.pid_path, DEFAULT_PID_PATH);
        if (pt_conf_full_name(cycle, &ccf->core.pid_path, 0) != 0)
            return PT_CONF_ERROR;
    }

    if (ccf->core.user.data == NULL) {
        pt_str_set(&ccf->core.user, DEFAULT_USER);
        if (geteuid() == 0) {
            errno = 0;
            struct passwd *pw = getpwnam(DEFAULT_USER);
            if (pw == NULL) {
                pt_conf_error(cf, PT_LOG_EMERG, errno, "getpwnam(\"" DEFAULT_USER "\") failed");
                return PT_CONF_ERROR;
            }
            ccf->uid = pw->pw_uid;
            ccf->gid = pw->pw_gid;
            struct group *gr = getgrnam(DEFAULT_GROUP);
            if (gr != NULL) {
                ccf->gid = gr->gr_gid;
                pt_str_set(&ccf->core.group, DEFAULT_GROUP);
            }
            ccf->user_set = 1;
        }
    }

    if (cycle->new_log.level == 0) {
        const char *rv = default_error_log(cf);
        if (rv != PT_CONF_OK)
            return rv;
    }
    return PT_CONF_OK;
}

pt_module_t pt_core_module = {
    .name = "core",
    .commands = core_commands,
    .builtin_core = 1,
    .create_core_conf = core_create_conf,
    .init_core_conf = core_init_conf,
};
