/* A worker process: one event loop over the cycle's listening sockets.
 *
 * Stopping: QUIT is graceful (stop accepting, close idle keep-alive
 * connections, let in-flight requests finish, bounded by
 * worker_shutdown_timeout); TERM/INT is fast (exit now). USR1 reopens the
 * log files. Signals only set flags; a byte written to the wake-up pipe makes
 * sure epoll_wait returns to look at them. */
#include "process.h"
#include "core_module.h"

#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../core/buf.h"
#include "../core/log.h"
#include "../core/loop.h"
#include "../core/time.h"
#include "../net/conn.h"
#include "../net/sendq.h"
#include "../net/listen.h"

#define WORKER_MAX_EVENTS 512
#define FATAL_EXIT        2   /* the master does not respawn a worker exiting with it */

static pt_io_t wake_io;

static void on_wake(pt_event_t *ev)
{
    pt_signals_drain(wake_io.fd);
    ev->ready = 0;
}

/* env directives: the worker keeps only the variables named there (and TZ),
 * as nginx; "NAME=value" sets one. Without env directives nothing changes. */
static void apply_env(pt_core_conf_full_t *ccf)
{
    if (ccf->env == NULL || ccf->env->nelts == 0)
        return;

    pt_str_t *vars = ccf->env->elts;
    size_t n = ccf->env->nelts;

    /* collect NAME=value strings before clearing the environment */
    char **vals = calloc(n + 1, sizeof(char *));
    if (vals == NULL)
        return;
    size_t nv = 0;
    const char *tz = getenv("TZ");
    if (tz) {
        size_t len = strlen(tz);
        char *s = malloc(len + 4);
        if (s) {
            memcpy(s, "TZ=", 3);
            memcpy(s + 3, tz, len + 1);
            vals[nv++] = s;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (memchr(vars[i].data, '=', vars[i].len) != NULL) {
            vals[nv++] = strdup(vars[i].data);
            continue;
        }
        const char *v = getenv(vars[i].data);
        if (v == NULL)
            continue;
        size_t vlen = strlen(v);
        char *s = malloc(vars[i].len + vlen + 2);
        if (s == NULL)
            continue;
        memcpy(s, vars[i].data, vars[i].len);
        s[vars[i].len] = '=';
        memcpy(s + vars[i].len + 1, v, vlen + 1);
        vals[nv++] = s;
    }

    clearenv();
    for (size_t i = 0; i < nv; i++) {
        if (vals[i])
            putenv(vals[i]);   /* the strings become part of the environment */
    }
    free(vals);
}

static void set_limits(pt_core_conf_full_t *ccf, pt_log_t *log)
{
    if (ccf->core.worker_rlimit_nofile != PT_CONF_UNSET) {
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t) ccf->core.worker_rlimit_nofile;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            pt_log_error(PT_LOG_ALERT, log, errno, "setrlimit(RLIMIT_NOFILE, %lld) failed",
                         (long long) ccf->core.worker_rlimit_nofile);
    }
    if (ccf->rlimit_core != PT_CONF_UNSET_SIZE) {
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t) ccf->rlimit_core;
        if (setrlimit(RLIMIT_CORE, &rl) != 0)
            pt_log_error(PT_LOG_ALERT, log, errno, "setrlimit(RLIMIT_CORE, %lld) failed",
                         (long long) ccf->rlimit_core);
    }
    if (ccf->priority != PT_CONF_UNSET
        && setpriority(PRIO_PROCESS, 0, (int) ccf->priority) != 0)
        pt_log_error(PT_LOG_ALERT, log, errno, "setpriority(%d) failed", (int) ccf->priority);
}

static void drop_privileges(pt_core_conf_full_t *ccf, pt_log_t *log)
{
    if (geteuid() != 0 || !ccf->user_set)
        return;
    if (setgid(ccf->gid) != 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "setgid(%d) failed", (int) ccf->gid);
        exit(FATAL_EXIT);
    }
    if (initgroups(ccf->core.user.data, ccf->gid) != 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "initgroups(%s, %d) failed",
                     ccf->core.user.data, (int) ccf->gid);
        exit(FATAL_EXIT);
    }
    if (setuid(ccf->uid) != 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "setuid(%d) failed", (int) ccf->uid);
        exit(FATAL_EXIT);
    }
}

static void set_affinity(pt_core_conf_full_t *ccf, int slot, pt_log_t *log)
{
    cpu_set_t set;

    if (ccf->cpu_affinity_auto) {
        /* worker N on the Nth allowed CPU, wrapping around */
        int cpus[CPU_SETSIZE], n = 0;
        cpu_set_t online;
        CPU_ZERO(&online);
        if (sched_getaffinity(0, sizeof(online), &online) != 0)
            return;
        for (int i = 0; i < CPU_SETSIZE; i++) {
            if (CPU_ISSET(i, &online) && CPU_ISSET(i, &ccf->cpu_affinity_auto_mask))
                cpus[n++] = i;
        }
        if (n == 0)
            return;
        CPU_ZERO(&set);
        CPU_SET(cpus[slot % n], &set);
    } else if (ccf->cpu_affinity_n > 0) {
        set = ccf->cpu_affinity[(unsigned) slot % ccf->cpu_affinity_n];
    } else {
        return;
    }
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        pt_log_error(PT_LOG_ALERT, log, errno, "sched_setaffinity() failed");
}

/* Common to a worker process and the single-process mode. Returns 0 or -1. */
static int worker_init(pt_cycle_t *cycle, int slot, int fork_worker)
{
    pt_core_conf_full_t *ccf = pt_core_conf_full(cycle);
    pt_log_t *log = cycle->log;

    pt_log_worker_id = slot;

    int wake_fd = pt_signals_worker();
    if (wake_fd < 0)
        return -1;

    if (fork_worker) {
        /* a worker outliving its master (killed -9) would keep the ports:
         * stop gracefully instead */
        prctl(PR_SET_PDEATHSIG, SIGQUIT);
        apply_env(ccf);
        set_limits(ccf, log);
        drop_privileges(ccf, log);
        set_affinity(ccf, slot, log);
        if (ccf->core.working_directory.data) {
            if (chdir(ccf->core.working_directory.data) != 0) {
                pt_log_error(PT_LOG_ALERT, log, errno, "chdir(\"%s\") failed",
                             ccf->core.working_directory.data);
                exit(FATAL_EXIT);
            }
            /* setuid() cleared it; core dumps need it */
            prctl(PR_SET_DUMPABLE, 1);
        }
    } else {
        set_limits(ccf, log);
    }

    if (pt_loop_init(WORKER_MAX_EVENTS) != 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "could not create the event loop");
        return -1;
    }
    if (pt_conn_table_init((unsigned) ccf->core.worker_connections) != 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "could not allocate %lld connections",
                     (long long) ccf->core.worker_connections);
        return -1;
    }

    memset(&wake_io, 0, sizeof(wake_io));
    wake_io.fd = wake_fd;
    wake_io.read.handler = on_wake;
    wake_io.read.timer_index = SIZE_MAX;
    wake_io.write.timer_index = SIZE_MAX;
    if (pt_loop_add_io(&wake_io) != 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "could not watch the signal pipe");
        return -1;
    }

    pt_listening_multi_accept = ccf->core.multi_accept == 1;
    if (ccf->core.io_uring_send == 1)
        (void) pt_sendq_init(256);
    pt_conn_shutting_down = 0;

    for (size_t i = 0; i < cycle->nmodules; i++) {
        pt_module_t *m = cycle->modules[i];
        if (m->init_worker && m->init_worker(cycle) != 0) {
            pt_log_error(PT_LOG_EMERG, log, 0, "module \"%s\" failed to start in a worker",
                         m->name);
            return -1;
        }
    }

    /* a reuseport listener: this worker's own socket only */
    pt_listening_select_worker(&cycle->listening, slot);
    if (pt_listening_start(&cycle->listening) != 0)
        return -1;
    return 0;
}

static void exit_worker_hooks(pt_cycle_t *cycle)
{
    for (size_t i = cycle->nmodules; i-- > 0;) {
        pt_module_t *m = cycle->modules[i];
        if (m->exit_worker)
            m->exit_worker(cycle);
    }
}

static void force_close(pt_conn_t *c, void *arg)
{
    (void) arg;
    c->close = 1;
    if (c->io.read.handler)
        pt_event_post(&c->io.read);
    else
        pt_conn_close(c);
}

/* This worker's copies of the listening fds: once every process that holds
 * a socket has closed it, the kernel stops completing handshakes on it (a
 * socket kept by new workers after a reload stays open in them). Unix socket
 * files are the master's to remove. */
static void close_listening_copies(pt_cycle_t *cycle)
{
    pt_listening_t *all = cycle->listening.elts;
    for (size_t i = 0; i < cycle->listening.nelts; i++) {
        if (all[i].fd >= 0) {
            close(all[i].fd);
            all[i].fd = -1;
        }
    }
}

/* Runs the loop until stopped. Returns when it is time to exit. */
static void worker_loop(pt_cycle_t *cycle, int single)
{
    pt_core_conf_t *ccf = pt_core_conf(cycle);
    int exiting = 0;
    int64_t deadline = -1;
    int forced = 0;

    for (;;) {
        if (pt_sig_terminate) {
            pt_log_error(PT_LOG_NOTICE, cycle->log, 0, "exiting");
            return;
        }

        if (pt_sig_quit && !exiting) {
            pt_sig_quit = 0;
            exiting = 1;
            pt_log_error(PT_LOG_NOTICE, cycle->log, 0, "gracefully shutting down");
            /* connections already queued on our own reuseport socket: ours
             * to serve (closing the socket's last copy would reset them) */
            pt_listening_drain(&cycle->listening, 1024);
            pt_listening_stop(&cycle->listening);
            close_listening_copies(cycle);
            pt_conn_shutting_down = 1;
            pt_conn_close_idle();
            if (ccf->worker_shutdown_timeout != PT_CONF_UNSET_MSEC)
                deadline = pt_current_msec + ccf->worker_shutdown_timeout;
        }

        if (pt_sig_reopen) {
            pt_sig_reopen = 0;
            pt_log_error(PT_LOG_NOTICE, cycle->log, 0, "reopening logs");
            pt_open_files_reopen(cycle->open_files, cycle->log);
        }

        if (pt_sig_reconfigure) {
            pt_sig_reconfigure = 0;
            if (single)
                pt_log_error(PT_LOG_NOTICE, cycle->log, 0,
                             "reload is not supported with \"master_process off\", ignored");
        }

        if (exiting) {
            if (pt_conn_active_count() == 0) {
                /* one last non-blocking turn: requests freed by posted
                 * events and deferred frees of the last close run now */
                (void) pt_loop_once(0);
                pt_log_error(PT_LOG_NOTICE, cycle->log, 0, "exiting");
                return;
            }
            if (deadline >= 0 && pt_current_msec >= deadline) {
                if (forced++ >= 2) {
                    /* owners had two iterations to close; exiting closes the rest */
                    pt_log_error(PT_LOG_NOTICE, cycle->log, 0,
                                 "exiting with %u open connections",
                                 pt_conn_active_count());
                    return;
                }
                if (forced == 1)
                    pt_log_error(PT_LOG_NOTICE, cycle->log, 0,
                                 "worker_shutdown_timeout: closing %u connections",
                                 pt_conn_active_count());
                pt_conn_each(force_close, NULL);
            }
        }

        int64_t wait = -1;
        if (exiting)
            wait = deadline >= 0 ? (deadline > pt_current_msec ? deadline - pt_current_msec : 0)
                                 : 1000;
        if (wait > 1000)
            wait = 1000;
        if (pt_loop_once(wait) != 0) {
            pt_log_error(PT_LOG_ALERT, cycle->log, errno, "epoll_wait() failed");
            return;
        }
    }
}

void pt_worker_run(pt_cycle_t *cycle, int slot)
{
    if (worker_init(cycle, slot, 1) != 0)
        exit(FATAL_EXIT);
    worker_loop(cycle, 0);
    exit_worker_hooks(cycle);
    pt_listening_stop(&cycle->listening);
    pt_sendq_done();
    pt_loop_done();
    pt_buf_freelist_drain();
    exit(0);
}

int pt_single_process_run(pt_cycle_t *cycle)
{
    if (worker_init(cycle, 0, 0) != 0)
        return 1;
    worker_loop(cycle, 1);
    exit_worker_hooks(cycle);
    pt_listening_stop(&cycle->listening);
    pt_sendq_done();
    pt_loop_done();
    pt_buf_freelist_drain();
    return 0;
}
