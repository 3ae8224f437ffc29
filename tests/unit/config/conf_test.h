/* Shared helpers for the config layer's unit tests: a minimal cycle and parse
 * context around fake modules, files in a scratch directory, and capture of
 * what the parser prints on stderr ("portico: [emerg] ..."). */
#ifndef PT_TEST_CONF_TEST_H
#define PT_TEST_CONF_TEST_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/conf.h"
#include "config/cycle.h"

#define T_UNUSED __attribute__((unused))

static char t_dir[256];             /* scratch directory, no trailing '/' */
static char t_errbuf[8192];         /* last captured stderr */
static int  t_saved_stderr = -1;
static char t_capture_path[300];

typedef struct {
    pt_pool_t      *pool;
    pt_cycle_t      cycle;
    pt_conf_t       cf;
    pt_log_t        log;
    pt_open_file_t  sink;
} t_ctx_t;

T_UNUSED static void t_make_dir(void)
{
    snprintf(t_dir, sizeof(t_dir), "/tmp/pt-conf-test-XXXXXX");
    if (mkdtemp(t_dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(t_capture_path, sizeof(t_capture_path), "%s/.stderr", t_dir);
}

T_UNUSED static void t_remove_dir(void)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", t_dir);
}

/* Returns the absolute path of name inside the scratch directory (static
 * rotating buffers, good for a few at a time). */
T_UNUSED static const char *t_path(const char *name)
{
    static char bufs[8][512];
    static int n;
    char *b = bufs[n++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", t_dir, name);
    return b;
}

T_UNUSED static void t_write(const char *name, const char *text)
{
    const char *p = t_path(name);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", p);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
        if (system(cmd) != 0)
            exit(2);
    }
    FILE *f = fopen(p, "w");
    if (f == NULL) {
        perror(p);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

T_UNUSED static void t_capture_begin(void)
{
    fflush(stderr);
    int fd = open(t_capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        exit(2);
    t_saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* Ends the capture; the text is in t_errbuf. */
T_UNUSED static const char *t_capture_end(void)
{
    fflush(stderr);
    dup2(t_saved_stderr, 2);
    close(t_saved_stderr);
    t_errbuf[0] = '\0';
    int fd = open(t_capture_path, O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, t_errbuf, sizeof(t_errbuf) - 1);
        t_errbuf[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    return t_errbuf;
}

/* A fresh cycle and parse context over the given modules, prefix and conf
 * prefix both the scratch directory, main context. */
T_UNUSED static void t_setup(t_ctx_t *t, pt_module_t **modules, size_t n)
{
    static char prefix[300];
    memset(t, 0, sizeof(*t));
    t->pool = pt_pool_create(4096);
    if (t->pool == NULL)
        exit(2);
    snprintf(prefix, sizeof(prefix), "%s/", t_dir);

    t->cycle.pool = t->pool;
    t->cycle.modules = modules;
    t->cycle.nmodules = n;
    t->cycle.prefix.data = prefix;
    t->cycle.prefix.len = strlen(prefix);
    t->cycle.conf_prefix = t->cycle.prefix;
    pt_modules_init(modules, n);

    t->sink.path = "/dev/null";
    t->sink.fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    t->log.level = PT_LOG_DEBUG;
    t->log.file = &t->sink;

    t->cf.cycle = &t->cycle;
    t->cf.pool = t->pool;
    t->cf.temp_pool = t->pool;
    t->cf.ctx = PT_CTX_MAIN;
    t->cf.log = &t->log;
    t->cycle.log = &t->log;

    t->cycle.core_conf = pt_pcalloc(t->pool, n * sizeof(void *));
    for (size_t i = 0; i < n; i++) {
        if (modules[i]->create_core_conf)
            t->cycle.core_conf[i] = modules[i]->create_core_conf(&t->cf);
    }
}

T_UNUSED static void t_teardown(t_ctx_t *t)
{
    pt_open_files_close(t->cycle.open_files);
    if (t->sink.fd >= 0)
        close(t->sink.fd);
    pt_pool_destroy(t->pool);
}

/* Writes text to name, parses it as the main file; returns the captured
 * stderr and stores the parse result in *rv. */
T_UNUSED static const char *t_parse_file(t_ctx_t *t, const char *name, const char *text, const char **rv)
{
    if (text)
        t_write(name, text);
    t_capture_begin();
    *rv = pt_conf_parse_file(&t->cf, t_path(name));
    return t_capture_end();
}

/* The expected emerg line for a message at name:line. */
T_UNUSED static const char *t_emerg(const char *msg, const char *name, unsigned line)
{
    static char buf[4][1024];
    static int n;
    char *b = buf[n++ % 4];
    if (name)
        snprintf(b, sizeof(buf[0]), "portico: [emerg] %s in %s:%u\n", msg, t_path(name), line);
    else
        snprintf(b, sizeof(buf[0]), "portico: [emerg] %s\n", msg);
    return b;
}

#endif
