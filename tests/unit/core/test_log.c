/* Error log format, filtering, open files and reopen. */
#include "core/log.c"

#include <regex.h>
#include <sys/stat.h>

#include "tap.h"

static char dir[] = "/tmp/pt_test_log_XXXXXX";

static char *slurp(const char *path, size_t *len)
{
    static char buf[16384];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n < 0)
        n = 0;
    buf[n] = '\0';
    if (len)
        *len = (size_t) n;
    return buf;
}

static void truncate_fd(int fd)
{
    if (ftruncate(fd, 0) != 0)
        note("ftruncate failed");
}

static int matches(const char *text, const char *re)
{
    regex_t rx;
    if (regcomp(&rx, re, REG_EXTENDED | REG_NEWLINE) != 0)
        return 0;
    int r = regexec(&rx, text, 0, NULL, 0) == 0;
    regfree(&rx);
    return r;
}

static size_t ctx_cb(pt_log_t *log, char *buf, size_t len)
{
    int n = snprintf(buf, len, ", client: %s", (const char *) log->ctx);
    return n < 0 ? 0 : (size_t) n < len ? (size_t) n : len;
}

static void test_format(void)
{
    pt_pool_t *pool = pt_pool_create(1024);
    pt_open_file_t *files = NULL;
    char path[256];
    snprintf(path, sizeof(path), "%s/error.log", dir);
    pt_open_file_t *f = pt_open_file_get(pool, &files, path);
    ok(f && f->fd > 2, "file opened");
    ok(pt_open_file_get(pool, &files, path) == f, "same path gives the same file");
    struct stat st;
    ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644, "created with mode 0644");
    ok((fcntl(f->fd, F_GETFD) & FD_CLOEXEC) != 0, "close-on-exec");

    pt_log_t log = { .level = PT_LOG_WARN, .file = f };
    pt_log_worker_id = 3;
    pt_log_error(PT_LOG_ERR, &log, 0, "hello %d", 42);
    pt_log_error(PT_LOG_INFO, &log, 0, "filtered");
    log.connection = 17;
    log.ctx_handler = ctx_cb;
    log.ctx = "10.0.0.1";
    pt_log_error(PT_LOG_WARN, &log, ECONNREFUSED, "connect() failed");
    pt_log_error(PT_LOG_DEBUG, &log, 0, "filtered too");

    size_t len;
    char *text = slurp(path, &len);
    char re[256];
    snprintf(re, sizeof(re),
             "^[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} \\[error\\] %ld#3: hello 42$",
             (long) getpid());
    ok(matches(text, re), "plain line");
    snprintf(re, sizeof(re),
             "^[0-9/]{10} [0-9:]{8} \\[warn\\] %ld#3: \\*17 connect\\(\\) failed "
             "\\(%d: Connection refused\\), client: 10\\.0\\.0\\.1$",
             (long) getpid(), ECONNREFUSED);
    ok(matches(text, re), "connection, errno and context");
    ok(!strstr(text, "filtered"), "levels above the target's are dropped");
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    is_int(lines, 2, "two lines");
    if (lines != 2)
        note("%s", text);

    /* a long message is cut, keeps its errno text and newline */
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    truncate_fd(f->fd);
    pt_log_error(PT_LOG_ERR, &log, EPIPE, "%s", big);
    text = slurp(path, &len);
    ok(len <= LOG_LINE_MAX && len > 1500, "long line truncated (%zu bytes)", len);
    ok(len > 0 && text[len - 1] == '\n', "ends with a newline");
    ok(strstr(text, "(32: Broken pipe), client: 10.0.0.1\n") != NULL
       || strstr(text, "(32: Broken pipe)") != NULL, "errno survives truncation");

    /* several targets: each gets the lines its level admits */
    char path2[256];
    snprintf(path2, sizeof(path2), "%s/debug.log", dir);
    pt_open_file_t *f2 = pt_open_file_get(pool, &files, path2);
    pt_log_t log2 = { .level = PT_LOG_DEBUG, .file = f2 };
    log.next = &log2;
    log.connection = 0;
    log.ctx_handler = NULL;
    truncate_fd(f->fd);
    pt_log_error(PT_LOG_INFO, &log, 0, "info line");
    pt_log_error(PT_LOG_CRIT, &log, 0, "crit line");
    text = slurp(path, NULL);
    ok(!strstr(text, "info line") && strstr(text, "[crit]"), "first target: crit only");
    text = slurp(path2, NULL);
    ok(strstr(text, "[info]") && strstr(text, "[crit]"), "second target: both");

    pt_open_files_close(files);
    ok(f->fd == -1, "closed");
    pt_pool_destroy(pool);
}

static void test_reopen(void)
{
    pt_pool_t *pool = pt_pool_create(1024);
    pt_open_file_t *files = NULL;
    char path[256], moved[256];
    snprintf(path, sizeof(path), "%s/access.log", dir);
    snprintf(moved, sizeof(moved), "%s/access.log.1", dir);
    pt_open_file_t *f = pt_open_file_get(pool, &files, path);
    pt_open_file_t *se = pt_open_file_get(pool, &files, "stderr");
    ok(se && se->fd == 2, "stderr maps to fd 2");
    pt_log_t log = { .level = PT_LOG_NOTICE, .file = f };
    int fd_before = f->fd;
    pt_log_error(PT_LOG_NOTICE, &log, 0, "before rotation");
    ok(rename(path, moved) == 0, "rotated");
    pt_log_error(PT_LOG_NOTICE, &log, 0, "still old file");
    pt_open_files_reopen(files, &log);
    ok(f->fd == fd_before, "same descriptor number after reopen");
    ok((fcntl(f->fd, F_GETFD) & FD_CLOEXEC) != 0, "still close-on-exec");
    ok(se->fd == 2, "stderr untouched");
    pt_log_error(PT_LOG_NOTICE, &log, 0, "after rotation");
    char *text = slurp(moved, NULL);
    ok(strstr(text, "before rotation") && strstr(text, "still old file")
       && !strstr(text, "after rotation"), "old file has the old lines");
    text = slurp(path, NULL);
    ok(strstr(text, "after rotation") && !strstr(text, "before"), "new file gets the next line");
    pt_open_files_close(files);
    ok(fcntl(2, F_GETFD) >= 0, "stderr not closed");

    errno = 0;
    ok(pt_open_file_get(pool, &files, "/nonexistent-dir/x.log") == NULL && errno == ENOENT,
       "unopenable path: NULL and errno");
    pt_pool_destroy(pool);
}

/* Runs fn with fd 2 redirected to a file; returns what was written. */
static char *capture_stderr(void (*fn)(void))
{
    char path[256];
    snprintf(path, sizeof(path), "%s/stderr.txt", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    int saved = dup(2);
    dup2(fd, 2);
    close(fd);
    fn();
    dup2(saved, 2);
    close(saved);
    return slurp(path, NULL);
}

static pt_log_t *file_log;
static void emit_stderr(void) { pt_log_stderr(0, "unknown directive \"%s\" in %s:%d", "foo", "/x.conf", 3); }
static void emit_stderr_err(void) { pt_log_stderr(ENOENT, "open() \"%s\" failed", "/x"); }
static void emit_default(void) { pt_log_error(PT_LOG_ERR, NULL, 0, "default target"); pt_log_error(PT_LOG_WARN, NULL, 0, "not at error level"); }
static void emit_use_stderr(void) { pt_log_error(PT_LOG_EMERG, file_log, 0, "to file and console"); pt_log_error(PT_LOG_NOTICE, file_log, 0, "file only"); }

static void test_stderr(void)
{
    char *text = capture_stderr(emit_stderr);
    is_str(text, "portico: [emerg] unknown directive \"foo\" in /x.conf:3\n", "pt_log_stderr shape");
    text = capture_stderr(emit_stderr_err);
    is_str(text, "portico: [emerg] open() \"/x\" failed (2: No such file or directory)\n",
           "pt_log_stderr with errno");

    pt_log_use_stderr = 0;
    text = capture_stderr(emit_default);
    ok(strstr(text, "[error]") && strstr(text, "default target") && !strstr(text, "not at error"),
       "default log: stderr at level error");

    pt_pool_t *pool = pt_pool_create(1024);
    pt_open_file_t *files = NULL;
    char path[256];
    snprintf(path, sizeof(path), "%s/main.log", dir);
    pt_open_file_t *f = pt_open_file_get(pool, &files, path);
    pt_log_t log = { .level = PT_LOG_NOTICE, .file = f };
    file_log = &log;
    pt_log_use_stderr = 1;
    text = capture_stderr(emit_use_stderr);
    is_str(text, "portico: [emerg] to file and console\n", "startup echo to the console");
    text = slurp(path, NULL);
    ok(strstr(text, "[emerg]") && strstr(text, "file only"), "file got both");

    /* stderr redirected into the log file (as the master does): no echo */
    int saved2 = dup(2);
    dup2(f->fd, 2);
    truncate_fd(f->fd);
    pt_log_error(PT_LOG_ERR, &log, 0, "redirected");
    dup2(saved2, 2);
    close(saved2);
    text = slurp(path, NULL);
    ok(strstr(text, "redirected") && !strstr(text, "portico: [error]"),
       "no duplicate line when stderr is the log file");

    /* pt_log_stderr also reaches the default log when it is a file */
    pt_log_t *saved = pt_log_default;
    pt_log_default = &log;
    truncate_fd(f->fd);
    text = capture_stderr(emit_stderr);
    ok(strstr(text, "portico: [emerg] unknown directive") != NULL, "console");
    text = slurp(path, NULL);
    ok(matches(text, "^[0-9/]{10} [0-9:]{8} \\[emerg\\] [0-9]+#[0-9]+: unknown directive \"foo\" in /x.conf:3$"),
       "and the error log file");
    pt_log_default = saved;
    pt_log_use_stderr = 0;
    pt_open_files_close(files);
    pt_pool_destroy(pool);
}

static void test_levels(void)
{
    pt_str_t s;
    const char *names[] = { "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug" };
    for (int i = 0; i < 8; i++) {
        s.data = (char *) names[i];
        s.len = strlen(names[i]);
        is_int(pt_log_level_parse(&s), PT_LOG_EMERG + i, names[i]);
    }
    pt_str_set(&s, "err");
    is_int(pt_log_level_parse(&s), -1, "unknown name");
    pt_str_set(&s, "");
    is_int(pt_log_level_parse(&s), -1, "empty");
}

int main(void)
{
    if (mkdtemp(dir) == NULL)
        return 1;
    pt_log_use_stderr = 0;
    pt_time_init();
    subtest("format", test_format);
    subtest("reopen", test_reopen);
    subtest("stderr", test_stderr);
    subtest("levels", test_levels);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        note("cleanup failed");
    return done_testing();
}
