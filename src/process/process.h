/* The process layer: master, workers, signals and the pid file (nginx's
 * process model). main.c builds the first cycle and hands it to
 * pt_master_run(), which never returns to the caller except with the exit
 * status. */
#ifndef PT_PROCESS_H
#define PT_PROCESS_H

#include <signal.h>
#include <sys/types.h>

#include "../config/cycle.h"

/* ---- master.c ---- */

/* Runs the server on cycle (already built, listeners bound): daemonizes when
 * `daemon on`, writes the pid file, then either runs the master loop with
 * worker processes or, with `master_process off`, the worker loop itself.
 * Returns the exit status for main(). */
int pt_master_run(pt_cycle_t *cycle);
/* Before pt_master_run(): the command line, kept to start a new binary on
 * USR2 (argv[0] is run, searched in PATH when it has no '/'), and whether
 * this process was started by an old master (it then does not daemonize:
 * it already is in the background, and the old master tracks its pid). */
void pt_master_set_start(char **argv, int inherited);

/* ---- worker.c ---- */

/* A worker process's life: privileges, limits, its event loop on cycle's
 * listeners until QUIT (graceful) or TERM (fast); then exit(0). slot is the
 * worker number (log lines, CPU affinity). Never returns. */
void pt_worker_run(pt_cycle_t *cycle, int slot) __attribute__((noreturn));
/* The same loop inside the calling process (master_process off); returns
 * when stopped. SIGHUP in this mode is logged and ignored. */
int  pt_single_process_run(pt_cycle_t *cycle);

/* ---- signals.c ---- */

/* Set by the handlers; the loops act on them and clear them. */
extern volatile sig_atomic_t pt_sig_reconfigure;  /* HUP */
extern volatile sig_atomic_t pt_sig_quit;         /* QUIT: graceful stop */
extern volatile sig_atomic_t pt_sig_terminate;    /* TERM, INT: fast stop (the signal) */
extern volatile sig_atomic_t pt_sig_reopen;       /* USR1 */
extern volatile sig_atomic_t pt_sig_child;        /* CHLD */
extern volatile sig_atomic_t pt_sig_change_binary;/* USR2: start a new binary */
extern volatile sig_atomic_t pt_sig_noaccept;     /* WINCH: stop the workers */
/* Who sent the last signal of each number (0 when unknown). */
pid_t pt_signal_sender(int signo);

/* Master: installs the handlers and blocks the signals; *waitmask gets the
 * mask to wait with (ppoll), which lets them in. Returns 0 or -1. */
int  pt_signals_master(sigset_t *waitmask);
/* Worker / single process: installs the handlers, creates the wake-up pipe
 * (each signal writes a byte to it so a loop blocked in epoll_wait wakes
 * even when the signal arrives just before the wait) and unblocks
 * everything. Returns the pipe's read end (nonblocking) or -1. */
int  pt_signals_worker(void);
/* Default dispositions and an empty mask (before exec'ing a new binary). */
void pt_signals_default(void);
/* Empties the wake-up pipe. */
void pt_signals_drain(int fd);
/* "SIGHUP" for 1, ... */
const char *pt_signal_name(int signo);

/* -s: maps stop|quit|reopen|reload to a signal (0 when unknown). */
int  pt_signal_by_command(const char *name);
/* -s: reads the pid file named by cycle's `pid` and signals that process.
 * Returns 0, or 1 with the reason logged. */
int  pt_signal_process(pt_cycle_t *cycle, const char *command);

/* ---- pidfile.c ---- */

/* Writes "<pid>\n" (creating the directory when it lies under the prefix).
 * Returns 0 or -1 (logged at emerg). */
int   pt_pidfile_write(pt_cycle_t *cycle, const pt_str_t *path, pid_t pid, pt_log_t *log);
/* Removes it; a missing file is not an error. */
void  pt_pidfile_remove(const pt_str_t *path, pt_log_t *log);
/* Reads a pid; -1 with the reason logged (level error, as nginx's -s). */
pid_t pt_pidfile_read(const pt_str_t *path, pt_log_t *log);

#endif
