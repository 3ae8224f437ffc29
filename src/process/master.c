/* The master process: daemonizes, writes the pid file, forks the workers and
 * then only waits for signals. It never touches client traffic.
 *
 *   HUP   reload: build a new cycle; on failure keep everything as it is; on
 *         success start workers on the new cycle, then QUIT the old ones
 *   QUIT  graceful stop: QUIT the workers, exit when all are gone
 *   TERM, INT  fast stop: TERM the workers (KILL after a grace period)
 *   USR1  reopen log files here, then in every worker
 *   CHLD  reap; respawn a worker that died unexpectedly (with a back-off when
 *         it keeps dying at once)
 *   USR2  binary upgrade: rename the pid file to <pid>.oldbin and start
 *         argv[0] again with the listening sockets in PORTICO="fd;fd;"
 *   WINCH (daemonized only, as nginx: a terminal resize sends it) stop the
 *         workers gracefully and do not respawn them; HUP starts them again
 *
 * Signals stay blocked except inside ppoll(), the loop's only wait. */
#include "process.h"
#include "core_module.h"
#include "cycle_init.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/log.h"
#include "../core/time.h"
#include "../net/conn.h"
#include "../net/listen.h"

#define KILL_GRACE_MS      3000   /* TERM -> KILL for workers that do not exit */
#define QUICK_DEATH_MS     1000   /* a worker dying sooner is "crashing at start" */
#define RESPAWN_DELAY_MIN  100
#define RESPAWN_DELAY_MAX  5000

typedef struct {
    pid_t    pid;
    int      slot;
    unsigned generation;
    int      exiting;      /* was told to stop: not respawned */
    int64_t  started;      /* pt_current_msec */
} proc_t;

typedef struct {
    int      pending;
    int64_t  due;
    int64_t  delay;        /* back-off for the next quick death */
} respawn_t;

static proc_t    *procs;
static size_t     nprocs, procs_cap;
static respawn_t  respawns[PT_MAX_WORKERS];
static unsigned   generation;
static pt_cycle_t *current;

static char     **saved_argv;
static int        started_inherited;
static int        daemonized;
static pid_t      new_binary;       /* child started by USR2, 0 when none */
static int        noaccepting;      /* WINCH: workers stopped on purpose */
static char      *oldbin_path;      /* the renamed pid file while it is renamed */

void pt_master_set_start(char **argv, int inherited)
{
    saved_argv = argv;
    started_inherited = inherited;
}

/* ---- process table ---------------------------------------------------------- */

static proc_t *proc_add(void)
{
    if (nprocs == procs_cap) {
        size_t cap = procs_cap ? procs_cap * 2 : 16;
        proc_t *p = realloc(procs, cap * sizeof(*p));
        if (p == NULL)
            return NULL;
        procs = p;
        procs_cap = cap;
    }
    memset(&procs[nprocs], 0, sizeof(proc_t));
    return &procs[nprocs++];
}

static void proc_remove(size_t i)
{
    procs[i] = procs[--nprocs];
}

static void signal_workers(int signo, int all_generations)
{
    for (size_t i = 0; i < nprocs; i++) {
        if (!all_generations && procs[i].generation != generation)
            continue;
        if (signo == SIGQUIT || signo == SIGTERM || signo == SIGKILL)
            procs[i].exiting = 1;
        if (kill(procs[i].pid, signo) != 0 && errno != ESRCH)
            pt_log_error(PT_LOG_ALERT, current->log, errno, "kill(%ld, %d) failed",
                         (long) procs[i].pid, signo);
    }
}

static void signal_old_workers(int signo)
{
    for (size_t i = 0; i < nprocs; i++) {
        if (procs[i].generation == generation)
            continue;
        procs[i].exiting = 1;
        if (kill(procs[i].pid, signo) != 0 && errno != ESRCH)
            pt_log_error(PT_LOG_ALERT, current->log, errno, "kill(%ld, %d) failed",
                         (long) procs[i].pid, signo);
    }
}

static int spawn_worker(pt_cycle_t *cycle, int slot)
{
    proc_t *p = proc_add();
    if (p == NULL) {
        pt_log_error(PT_LOG_ALERT, cycle->log, 0, "out of memory for the process table");
        return -1;
    }
    nprocs--;   /* added for real once forked */

    pid_t pid = fork();
    if (pid < 0) {
        pt_log_error(PT_LOG_ALERT, cycle->log, errno, "fork() failed while spawning "
                     "\"worker process\"");
        return -1;
    }
    if (pid == 0) {
        free(procs);
        procs = NULL;
        nprocs = procs_cap = 0;
        pt_worker_run(cycle, slot);   /* never returns */
    }

    nprocs++;
    p->pid = pid;
    p->slot = slot;
    p->generation = generation;
    p->exiting = 0;
    p->started = pt_current_msec;
    pt_log_error(PT_LOG_NOTICE, cycle->log, 0, "start worker process %ld", (long) pid);
    return 0;
}

static void start_workers(pt_cycle_t *cycle)
{
    pt_core_conf_t *ccf = pt_core_conf(cycle);
    int n = (int) ccf->worker_processes;

    for (int i = 0; i < n && i < PT_MAX_WORKERS; i++) {
        respawns[i].pending = 0;
        respawns[i].delay = 0;
        if (spawn_worker(cycle, i) != 0) {
            /* try again shortly rather than run short of workers */
            respawns[i].pending = 1;
            respawns[i].due = pt_current_msec + RESPAWN_DELAY_MAX;
        }
    }
    for (int i = n; i < PT_MAX_WORKERS; i++)
        respawns[i].pending = 0;
}

static size_t live_workers(void)
{
    return nprocs;
}

static void start_workers(pt_cycle_t *cycle);

/* The new binary is gone (it failed to start, or it was stopped): this
 * master is the one in charge again. */
static void new_binary_exited(pid_t pid, int status)
{
    pt_core_conf_t *ccf = pt_core_conf(current);

    if (WIFSIGNALED(status))
        pt_log_error(PT_LOG_ALERT, current->log, 0, "new binary process %ld exited on signal %d",
                     (long) pid, WTERMSIG(status));
    else
        pt_log_error(WEXITSTATUS(status) ? PT_LOG_ALERT : PT_LOG_NOTICE, current->log, 0,
                     "new binary process %ld exited with code %d", (long) pid,
                     WEXITSTATUS(status));
    new_binary = 0;
    if (oldbin_path != NULL) {
        if (rename(oldbin_path, ccf->pid_path.data) != 0)
            pt_log_error(PT_LOG_ALERT, current->log, errno,
                         "rename() %s back to %s failed", oldbin_path, ccf->pid_path.data);
        free(oldbin_path);
        oldbin_path = NULL;
    }
    if (noaccepting) {
        noaccepting = 0;
        generation++;
        start_workers(current);
    }
}

/* Reaps every exited child; schedules respawns. */
static void reap(int stopping)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == new_binary) {
            new_binary_exited(pid, status);
            continue;
        }
        size_t i;
        for (i = 0; i < nprocs; i++) {
            if (procs[i].pid == pid)
                break;
        }
        if (i == nprocs) {
            /* a module's child (the acme helper): say how it ended */
            if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM)
                pt_log_error(PT_LOG_ALERT, current->log, 0, "helper process %ld exited on "
                             "signal %d%s", (long) pid, WTERMSIG(status),
                             WCOREDUMP(status) ? " (core dumped)" : "");
            else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
                pt_log_error(PT_LOG_ALERT, current->log, 0, "helper process %ld exited with "
                             "code %d", (long) pid, WEXITSTATUS(status));
            continue;
        }

        proc_t p = procs[i];
        proc_remove(i);

        int fatal = 0;
        if (WIFSIGNALED(status)) {
            pt_log_error(PT_LOG_ALERT, current->log, 0, "worker process %ld exited on signal %d%s",
                         (long) pid, WTERMSIG(status),
                         WCOREDUMP(status) ? " (core dumped)" : "");
        } else {
            int code = WEXITSTATUS(status);
            if (code == 2 && !p.exiting) {
                pt_log_error(PT_LOG_ALERT, current->log, 0, "worker process %ld exited with "
                             "fatal code %d and cannot be respawned", (long) pid, code);
                fatal = 1;
            } else {
                pt_log_error(code ? PT_LOG_ALERT : PT_LOG_NOTICE, current->log, 0,
                             "worker process %ld exited with code %d", (long) pid, code);
            }
        }

        if (stopping || p.exiting || fatal || p.generation != generation)
            continue;
        if (p.slot < 0 || p.slot >= PT_MAX_WORKERS)
            continue;

        respawn_t *r = &respawns[p.slot];
        int64_t lived = pt_current_msec - p.started;
        if (lived < QUICK_DEATH_MS) {
            r->delay = r->delay ? r->delay * 2 : RESPAWN_DELAY_MIN;
            if (r->delay > RESPAWN_DELAY_MAX)
                r->delay = RESPAWN_DELAY_MAX;
        } else {
            r->delay = 0;
        }
        r->pending = 1;
        r->due = pt_current_msec + r->delay;
    }
}

static void respawn_due(void)
{
    for (int i = 0; i < PT_MAX_WORKERS; i++) {
        respawn_t *r = &respawns[i];
        if (!r->pending || r->due > pt_current_msec)
            continue;
        r->pending = 0;
        if (spawn_worker(current, i) != 0) {
            r->pending = 1;
            r->due = pt_current_msec + RESPAWN_DELAY_MAX;
        }
    }
}

static int64_t next_respawn_wait(void)
{
    int64_t wait = -1;
    for (int i = 0; i < PT_MAX_WORKERS; i++) {
        if (!respawns[i].pending)
            continue;
        int64_t w = respawns[i].due - pt_current_msec;
        if (w < 0)
            w = 0;
        if (wait < 0 || w < wait)
            wait = w;
    }
    return wait;
}

/* ---- files -------------------------------------------------------------------- */

/* Sends stray stderr output (libraries, sanitizers) to the main error log
 * file, as nginx does; nothing to do when the log is stderr itself. */
static void redirect_stderr(pt_cycle_t *cycle)
{
    for (pt_log_t *l = cycle->log; l; l = l->next) {
        if (l->file && l->file->fd > STDERR_FILENO) {
            if (dup2(l->file->fd, STDERR_FILENO) < 0)
                pt_log_error(PT_LOG_ALERT, cycle->log, errno, "dup2(STDERR) failed");
            return;
        }
    }
}

/* Files the master (re)opened as root must stay writable by the workers. */
static void chown_files(pt_cycle_t *cycle)
{
    pt_core_conf_full_t *ccf = pt_core_conf_full(cycle);

    if (geteuid() != 0 || !ccf->user_set)
        return;
    for (pt_open_file_t *f = cycle->open_files; f; f = f->next) {
        struct stat st;
        if (f->fd <= STDERR_FILENO || fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (st.st_uid != ccf->uid && fchown(f->fd, ccf->uid, (gid_t) -1) != 0)
            pt_log_error(PT_LOG_ALERT, cycle->log, errno, "chown(\"%s\", %d) failed",
                         f->path, (int) ccf->uid);
    }
}

static int daemonize(pt_log_t *log)
{
    pid_t pid = fork();
    if (pid < 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "fork() failed");
        return -1;
    }
    if (pid > 0)
        _exit(0);

    if (setsid() < 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "setsid() failed");
        return -1;
    }
    umask(0);

    int fd = open("/dev/null", O_RDWR);
    if (fd < 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "open(\"/dev/null\") failed");
        return -1;
    }
    if (dup2(fd, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "dup2() failed");
        return -1;
    }
    if (fd > STDERR_FILENO)
        close(fd);
    return 0;
}

static void log_startup(pt_cycle_t *cycle)
{
    struct utsname u;
    pt_log_error(PT_LOG_NOTICE, cycle->log, 0, "using the \"epoll\" event method");
    pt_log_error(PT_LOG_NOTICE, cycle->log, 0, "portico/%s", PT_VERSION);
    if (uname(&u) == 0)
        pt_log_error(PT_LOG_NOTICE, cycle->log, 0, "OS: %s %s", u.sysname, u.release);
}

static void master_hooks(pt_cycle_t *cycle, int exiting);

/* ---- reload / reopen ---------------------------------------------------------- */

static void reload(void)
{
    pt_cycle_t *old = current;
    pt_core_conf_t *occf = pt_core_conf(old);

    pt_cycle_t *cycle = pt_cycle_create(old, NULL);
    if (cycle == NULL) {
        pt_log_error(PT_LOG_NOTICE, old->log, 0,
                     "reload failed, the previous configuration stays in service");
        return;
    }

    pt_core_conf_t *ccf = pt_core_conf(cycle);
    int pid_moved = !pt_str_eq(&ccf->pid_path, &occf->pid_path);
    if (pid_moved && pt_pidfile_write(cycle, &ccf->pid_path, getpid(), old->log) != 0) {
        pt_cycle_destroy(cycle);
        pt_log_error(PT_LOG_NOTICE, old->log, 0,
                     "reload failed, the previous configuration stays in service");
        return;
    }

    pt_cycle_commit(cycle);
    current = cycle;
    pt_log_default = cycle->log;
    redirect_stderr(cycle);
    chown_files(cycle);
    if (pid_moved)
        pt_pidfile_remove(&occf->pid_path, cycle->log);

    /* what only the old cycle had (removed listeners, zones, files) goes
     * before forking, so new workers do not inherit it */
    pt_cycle_destroy(old);

    generation++;
    pt_log_error(PT_LOG_NOTICE, cycle->log, 0, "start worker processes");
    start_workers(cycle);
    signal_old_workers(SIGQUIT);
    master_hooks(cycle, 0);
}

static void reopen(void)
{
    pt_open_files_reopen(current->open_files, current->log);
    chown_files(current);
    redirect_stderr(current);
    signal_workers(SIGUSR1, 1);
}

/* ---- binary upgrade ------------------------------------------------------------- */

static void exec_new_binary(void)
{
    pt_core_conf_t *ccf = pt_core_conf(current);

    if (new_binary != 0) {
        pt_log_error(PT_LOG_ALERT, current->log, 0, "the changing binary signal is ignored: "
                     "stop either the old or the new binary's master first");
        return;
    }
    if (saved_argv == NULL || saved_argv[0] == NULL)
        return;

    /* PORTICO=fd;fd;... of every listening socket (a reuseport listener's
     * one per worker, in worker order) */
    size_t n = current->listening.nelts;
    pt_listening_t *all = current->listening.elts;
    size_t nfds = 0;
    for (size_t i = 0; i < n; i++)
        nfds += all[i].nworker_fds > 1 ? all[i].nworker_fds : 1;
    char *env = malloc(nfds * 12 + 1);
    size_t oldlen = ccf->pid_path.len + sizeof(".oldbin");
    char *oldbin = malloc(oldlen);
    if (env == NULL || oldbin == NULL) {
        free(env);
        free(oldbin);
        pt_log_error(PT_LOG_ALERT, current->log, 0, "out of memory starting a new binary");
        return;
    }
    size_t off = 0;
    env[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (all[i].fd >= 0)
            off += (size_t) snprintf(env + off, 13, "%d;", all[i].fd);
        for (unsigned k = 1; k < all[i].nworker_fds; k++) {
            if (all[i].worker_fds[k] >= 0)
                off += (size_t) snprintf(env + off, 13, "%d;", all[i].worker_fds[k]);
        }
    }
    snprintf(oldbin, oldlen, "%s.oldbin", ccf->pid_path.data);

    if (rename(ccf->pid_path.data, oldbin) != 0) {
        pt_log_error(PT_LOG_ALERT, current->log, errno,
                     "rename() %s to %s failed before executing new binary process \"%s\"",
                     ccf->pid_path.data, oldbin, saved_argv[0]);
        free(env);
        free(oldbin);
        return;
    }

    pid_t pid = fork();
    if (pid < 0) {
        pt_log_error(PT_LOG_ALERT, current->log, errno, "fork() failed while executing new "
                     "binary process \"%s\"", saved_argv[0]);
        if (rename(oldbin, ccf->pid_path.data) != 0)
            pt_log_error(PT_LOG_ALERT, current->log, errno, "rename() %s back to %s failed",
                         oldbin, ccf->pid_path.data);
        free(env);
        free(oldbin);
        return;
    }
    if (pid == 0) {
        for (size_t i = 0; i < n; i++) {
            if (all[i].fd >= 0)
                fcntl(all[i].fd, F_SETFD, 0);
            for (unsigned k = 1; k < all[i].nworker_fds; k++) {
                if (all[i].worker_fds[k] >= 0)
                    fcntl(all[i].worker_fds[k], F_SETFD, 0);
            }
        }
        setenv(PT_INHERIT_ENV, env, 1);
        pt_signals_default();
        execvp(saved_argv[0], saved_argv);
        pt_log_error(PT_LOG_ALERT, current->log, errno, "execve() failed while executing "
                     "new binary process \"%s\"", saved_argv[0]);
        _exit(1);
    }

    free(env);
    new_binary = pid;
    oldbin_path = oldbin;
    pt_log_error(PT_LOG_NOTICE, current->log, 0, "start new binary process %ld", (long) pid);
}

static void stop_accepting(void)
{
    noaccepting = 1;
    for (int i = 0; i < PT_MAX_WORKERS; i++)
        respawns[i].pending = 0;
    signal_workers(SIGQUIT, 1);
}

/* ---- the loop ------------------------------------------------------------------ */

static void master_exit(pt_cycle_t *cycle, int code)
{
    static pt_log_t exit_log = { .level = PT_LOG_ERR };
    pt_core_conf_t *ccf = pt_core_conf(cycle);

    if (oldbin_path != NULL) {
        /* upgraded: the pid file at the usual path is the new master's */
        pt_str_t oldbin = { strlen(oldbin_path), oldbin_path };
        pt_pidfile_remove(&oldbin, cycle->log);
    } else {
        pt_pidfile_remove(&ccf->pid_path, cycle->log);
    }

    master_hooks(cycle, 1);
    pt_log_error(PT_LOG_NOTICE, cycle->log, 0, "exit");
    pt_log_default = &exit_log;   /* the cycle's log goes with it */
    pt_cycle_destroy(cycle);
    free(procs);
    procs = NULL;
    exit(code);
}

static void close_listening(pt_cycle_t *cycle)
{
    pt_listening_t *all = cycle->listening.elts;
    for (size_t i = 0; i < cycle->listening.nelts; i++)
        pt_listening_close(&all[i]);
}

/* init_master / exit_master hooks of the modules (the acme helper). */
static void master_hooks(pt_cycle_t *cycle, int exiting)
{
    for (size_t i = 0; i < cycle->nmodules; i++) {
        pt_module_t *m = cycle->modules[i];
        if (exiting && m->exit_master)
            m->exit_master(cycle);
        else if (!exiting && m->init_master)
            m->init_master(cycle);
    }
}

static void log_signal(int signo, const char *action)
{
    pid_t from = pt_signal_sender(signo);
    if (from > 0)
        pt_log_error(PT_LOG_NOTICE, current->log, 0, "signal %d (%s) received from %ld, %s",
                     signo, pt_signal_name(signo), (long) from, action);
    else
        pt_log_error(PT_LOG_NOTICE, current->log, 0, "signal %d (%s) received, %s",
                     signo, pt_signal_name(signo), action);
}

static int master_loop(void)
{
    sigset_t waitmask;
    int quitting = 0, terminating = 0;
    int64_t kill_at = -1;

    if (pt_signals_master(&waitmask) != 0)
        return 1;

    pt_log_error(PT_LOG_NOTICE, current->log, 0, "start worker processes");
    start_workers(current);
    master_hooks(current, 0);

    for (;;) {
        int64_t wait = (quitting || terminating) ? -1 : next_respawn_wait();
        if (kill_at >= 0) {
            int64_t w = kill_at - pt_current_msec;
            if (w < 0)
                w = 0;
            if (wait < 0 || w < wait)
                wait = w;
        }
        struct timespec ts, *tsp = NULL;
        if (wait >= 0) {
            ts.tv_sec = (time_t) (wait / 1000);
            ts.tv_nsec = (long) (wait % 1000) * 1000000L;
            tsp = &ts;
        }
        if (!pt_sig_child && !pt_sig_quit && !pt_sig_terminate && !pt_sig_reconfigure
            && !pt_sig_reopen && !pt_sig_change_binary && !pt_sig_noaccept)
            ppoll(NULL, 0, tsp, &waitmask);
        pt_time_update();

        if (pt_sig_child) {
            pt_sig_child = 0;
            reap(quitting || terminating);
        }

        if (pt_sig_terminate) {
            int signo = pt_sig_terminate;
            pt_sig_terminate = 0;
            if (!terminating) {
                log_signal(signo, "exiting");
                terminating = 1;
                signal_workers(SIGTERM, 1);
                kill_at = pt_current_msec + KILL_GRACE_MS;
            }
        }

        if (pt_sig_quit) {
            pt_sig_quit = 0;
            if (!quitting && !terminating) {
                log_signal(SIGQUIT, "shutting down");
                quitting = 1;
                signal_workers(SIGQUIT, 1);
                close_listening(current);
            }
        }

        if ((quitting || terminating) && live_workers() == 0)
            master_exit(current, 0);

        if (terminating && kill_at >= 0 && pt_current_msec >= kill_at) {
            signal_workers(SIGKILL, 1);
            kill_at = -1;
        }

        if (quitting || terminating) {
            pt_sig_reconfigure = 0;
            pt_sig_reopen = 0;
            pt_sig_change_binary = 0;
            pt_sig_noaccept = 0;
            continue;
        }

        if (pt_sig_reconfigure) {
            pt_sig_reconfigure = 0;
            if (noaccepting) {
                /* after WINCH: the workers come back on the running cycle */
                log_signal(SIGHUP, "starting the workers again");
                noaccepting = 0;
                generation++;
                start_workers(current);
            } else {
                log_signal(SIGHUP, "reconfiguring");
                reload();
            }
        }

        if (pt_sig_change_binary) {
            pt_sig_change_binary = 0;
            log_signal(SIGUSR2, "changing binary");
            exec_new_binary();
        }

        if (pt_sig_noaccept) {
            pt_sig_noaccept = 0;
            if (daemonized && !noaccepting) {
                log_signal(SIGWINCH, "stop accepting connections");
                stop_accepting();
            }
        }

        if (pt_sig_reopen) {
            pt_sig_reopen = 0;
            log_signal(SIGUSR1, "reopening logs");
            reopen();
        }

        if (!noaccepting)
            respawn_due();
    }
}

int pt_master_run(pt_cycle_t *cycle)
{
    pt_core_conf_t *ccf = pt_core_conf(cycle);

    current = cycle;
    pt_log_default = cycle->log;

    if (started_inherited) {
        daemonized = 1;   /* already in the background, under the old master */
    } else if (ccf->daemon) {
        if (daemonize(cycle->log) != 0)
            return 1;
        daemonized = 1;
    }

    if (pt_pidfile_write(cycle, &ccf->pid_path, getpid(), cycle->log) != 0)
        return 1;

    chown_files(cycle);
    redirect_stderr(cycle);
    pt_log_use_stderr = 0;

    if (pt_conn_number_shared_init() != 0)
        pt_log_error(PT_LOG_WARN, cycle->log, errno,
                     "no shared connection counter, $connection is per worker");

    log_startup(cycle);

    if (!ccf->master) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int rc = pt_single_process_run(cycle);
        master_exit(cycle, rc);
    }

    return master_loop();
}
