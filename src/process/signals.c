/* Signals: handlers only set flags (and wake the worker's loop through a
 * pipe); the master and worker loops act on the flags. The master keeps its
 * signals blocked except while it waits in ppoll(), so none can slip in
 * between a check and the wait. */
#include "process.h"
#include "core_module.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "../core/log.h"

volatile sig_atomic_t pt_sig_reconfigure;
volatile sig_atomic_t pt_sig_quit;
volatile sig_atomic_t pt_sig_terminate;
volatile sig_atomic_t pt_sig_reopen;
volatile sig_atomic_t pt_sig_child;
volatile sig_atomic_t pt_sig_change_binary;
volatile sig_atomic_t pt_sig_noaccept;

static volatile sig_atomic_t senders[NSIG];
static int wake_pipe[2] = { -1, -1 };

static const int handled[] = { SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGWINCH,
                               SIGCHLD };

const char *pt_signal_name(int signo)
{
    switch (signo) {
    case SIGHUP:  return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    case SIGTERM: return "SIGTERM";
    case SIGINT:  return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGWINCH: return "SIGWINCH";
    case SIGCHLD: return "SIGCHLD";
    case SIGKILL: return "SIGKILL";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS:  return "SIGBUS";
    default:      return "?";
    }
}

pid_t pt_signal_sender(int signo)
{
    return signo > 0 && signo < NSIG ? (pid_t) senders[signo] : 0;
}

static void on_signal(int signo, siginfo_t *si, void *uc)
{
    int saved = errno;
    (void) uc;

    if (signo > 0 && signo < NSIG)
        senders[signo] = si && si->si_code == SI_USER ? si->si_pid : 0;

    switch (signo) {
    case SIGHUP:  pt_sig_reconfigure = 1; break;
    case SIGQUIT: pt_sig_quit = 1; break;
    case SIGTERM:
    case SIGINT:  pt_sig_terminate = signo; break;
    case SIGUSR1: pt_sig_reopen = 1; break;
    case SIGCHLD: pt_sig_child = 1; break;
    case SIGUSR2: pt_sig_change_binary = 1; break;
    case SIGWINCH: pt_sig_noaccept = 1; break;
    default: break;
    }

    if (wake_pipe[1] >= 0) {
        ssize_t w = write(wake_pipe[1], "", 1);   /* full pipe: already awake */
        (void) w;
    }
    errno = saved;
}

static int install(int signo, int ignore)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    if (ignore) {
        sa.sa_handler = SIG_IGN;
    } else {
        sa.sa_sigaction = on_signal;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
    }
    if (sigaction(signo, &sa, NULL) != 0) {
        pt_log_error(PT_LOG_EMERG, pt_log_default, errno, "sigaction(%s) failed",
                     pt_signal_name(signo));
        return -1;
    }
    return 0;
}

int pt_signals_master(sigset_t *waitmask)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++) {
        if (install(handled[i], 0) != 0)
            return -1;
        sigaddset(&set, handled[i]);
    }
    if (install(SIGPIPE, 1) != 0)
        return -1;
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        pt_log_error(PT_LOG_EMERG, pt_log_default, errno, "sigprocmask() failed");
        return -1;
    }
    sigemptyset(waitmask);
    return 0;
}

int pt_signals_worker(void)
{
    if (wake_pipe[0] < 0 && pipe2(wake_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        pt_log_error(PT_LOG_EMERG, pt_log_default, errno, "pipe2() failed");
        return -1;
    }
    pt_sig_reconfigure = pt_sig_quit = pt_sig_terminate = pt_sig_reopen = pt_sig_child = 0;
    pt_sig_change_binary = pt_sig_noaccept = 0;

    if (install(SIGQUIT, 0) != 0 || install(SIGTERM, 0) != 0 || install(SIGINT, 0) != 0
        || install(SIGUSR1, 0) != 0 || install(SIGHUP, 0) != 0
        || install(SIGPIPE, 1) != 0 || install(SIGUSR2, 1) != 0 || install(SIGWINCH, 1) != 0)
        return -1;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);

    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) {
        pt_log_error(PT_LOG_EMERG, pt_log_default, errno, "sigprocmask() failed");
        return -1;
    }
    return wake_pipe[0];
}

void pt_signals_default(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++)
        sigaction(handled[i], &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

void pt_signals_drain(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

int pt_signal_by_command(const char *name)
{
    if (strcmp(name, "stop") == 0)
        return SIGTERM;
    if (strcmp(name, "quit") == 0)
        return SIGQUIT;
    if (strcmp(name, "reopen") == 0)
        return SIGUSR1;
    if (strcmp(name, "reload") == 0)
        return SIGHUP;
    return 0;
}

int pt_signal_process(pt_cycle_t *cycle, const char *command)
{
    pt_core_conf_t *ccf = pt_core_conf(cycle);
    int signo = pt_signal_by_command(command);

    if (signo == 0) {
        pt_log_error(PT_LOG_ERR, cycle->log, 0, "invalid signal \"%s\"", command);
        return 1;
    }
    pid_t pid = pt_pidfile_read(&ccf->pid_path, cycle->log);
    if (pid < 0)
        return 1;
    if (kill(pid, signo) != 0) {
        pt_log_error(PT_LOG_ALERT, cycle->log, errno, "kill(%ld, %d) failed", (long) pid, signo);
        return 1;
    }
    return 0;
}
