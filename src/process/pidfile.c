/* The pid file: written by the master once every listener is bound (after
 * the daemon fork), removed when it exits, read by `-s signal`. */
#include "process.h"
#include "cycle_init.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../core/log.h"

static int under_prefix(pt_cycle_t *cycle, const char *path)
{
    return cycle->prefix.len > 0 && strncmp(path, cycle->prefix.data, cycle->prefix.len) == 0;
}

int pt_pidfile_write(pt_cycle_t *cycle, const pt_str_t *path, pid_t pid, pt_log_t *log)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long) pid);

    if (under_prefix(cycle, path->data) && pt_mkdir_parents(path->data) != 0)
        pt_log_error(PT_LOG_WARN, log, errno, "could not create the directory of \"%s\"",
                     path->data);

    int fd = open(path->data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        pt_log_error(PT_LOG_EMERG, log, errno, "open() \"%s\" failed", path->data);
        return -1;
    }
    ssize_t w = write(fd, buf, (size_t) n);
    int err = errno;
    close(fd);
    if (w != n) {
        pt_log_error(PT_LOG_EMERG, log, w < 0 ? err : 0, "write() to \"%s\" failed", path->data);
        return -1;
    }
    return 0;
}

void pt_pidfile_remove(const pt_str_t *path, pt_log_t *log)
{
    if (path->data == NULL)
        return;
    if (unlink(path->data) != 0 && errno != ENOENT)
        pt_log_error(PT_LOG_ALERT, log, errno, "unlink() \"%s\" failed", path->data);
}

pid_t pt_pidfile_read(const pt_str_t *path, pt_log_t *log)
{
    char buf[64];

    int fd = open(path->data, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pt_log_error(PT_LOG_ERR, log, errno, "open() \"%s\" failed", path->data);
        return -1;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int err = errno;
    close(fd);
    if (n < 0) {
        pt_log_error(PT_LOG_ERR, log, err, "read() \"%s\" failed", path->data);
        return -1;
    }
    size_t len = (size_t) n;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    int64_t pid = pt_atoi64(buf, len);
    if (pid <= 0 || pid > 0x7fffffff) {
        pt_log_error(PT_LOG_ERR, log, 0, "invalid PID number \"%.*s\" in \"%s\"",
                     (int) len, buf, path->data);
        return -1;
    }
    return (pid_t) pid;
}
