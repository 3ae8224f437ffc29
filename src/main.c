/* Portico's command line, which is nginx's: init scripts, systemd units and
 * certbot's `nginx -t && nginx -s reload` drive it unchanged.
 *
 *   -c file  -p prefix  -g "directives;"  -e file|stderr
 *   -t  -T  -q  -s stop|quit|reopen|reload  -v  -V  -h/-?
 *
 * Options may be grouped ("-tq") and take their value attached or as the
 * next argument ("-cfile", "-c file"). Relative -c and -e paths are relative
 * to the prefix, as nginx. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/opensslv.h>

#include "config/conf.h"
#include "config/cycle.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/time.h"
#include "modules/modules.h"
#include "process/cycle_init.h"
#include "process/process.h"

#ifndef PT_PREFIX
#define PT_PREFIX "/usr/local/portico/"
#endif
#ifndef PT_CONF_PATH
#define PT_CONF_PATH "conf/portico.conf"
#endif
#define PT_ERROR_LOG_PATH "logs/error.log"
#define PT_PID_PATH       "logs/portico.pid"

typedef struct {
    unsigned    show_version:1, show_help:1, show_configure:1;
    unsigned    test:1, dump:1, quiet:1;
    const char *prefix;
    const char *conf_file;
    const char *conf_param;
    const char *error_log;
    const char *signal;
} cli_t;

static void put(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return;
        }
        s += w;
        n -= (size_t) w;
    }
}

static int write_stdout(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t) w;
    }
    return 0;
}

static int parse_args(int argc, char **argv, cli_t *cli)
{
    for (int i = 1; i < argc; i++) {
        const char *p = argv[i];

        if (*p++ != '-' || *p == '\0') {
            pt_cli_message("invalid option: \"%s\"", argv[i]);
            return -1;
        }

        while (*p) {
            char opt = *p++;
            const char **target = NULL;
            const char *what = NULL;

            switch (opt) {
            case '?':
            case 'h':
                cli->show_version = 1;
                cli->show_help = 1;
                continue;
            case 'v':
                cli->show_version = 1;
                continue;
            case 'V':
                cli->show_version = 1;
                cli->show_configure = 1;
                continue;
            case 't':
                cli->test = 1;
                continue;
            case 'T':
                cli->test = 1;
                cli->dump = 1;
                continue;
            case 'q':
                cli->quiet = 1;
                continue;
            case 'p':
                target = &cli->prefix;
                what = "directory name";
                break;
            case 'c':
                target = &cli->conf_file;
                what = "file name";
                break;
            case 'e':
                target = &cli->error_log;
                what = "file name";
                break;
            case 'g':
                target = &cli->conf_param;
                what = "parameter";
                break;
            case 's':
                target = &cli->signal;
                what = "parameter";
                break;
            default:
                pt_cli_message("invalid option: \"%c\"", opt);
                return -1;
            }

            /* the value: the rest of this argument, or the next one */
            if (*p) {
                *target = p;
            } else if (i + 1 < argc) {
                *target = argv[++i];
            } else {
                pt_cli_message("option \"-%c\" requires %s", opt, what);
                return -1;
            }
            if (opt == 's' && pt_signal_by_command(*target) == 0) {
                pt_cli_message("invalid option: \"-s %s\"", *target);
                return -1;
            }
            break;   /* the value ended this argument */
        }
    }
    return 0;
}

static void show_version(void)
{
    put("portico version: portico/" PT_VERSION "\n");
}

static void show_help(void)
{
    put("Usage: portico [-?hvVtTq] [-s signal] [-p prefix]\n"
        "               [-e filename] [-c filename] [-g directives]\n"
        "\n"
        "Options:\n"
        "  -?,-h         : print this help\n"
        "  -v            : print the version and exit\n"
        "  -V            : print the version and build options, then exit\n"
        "  -t            : check the configuration and exit\n"
        "  -T            : check the configuration, print it to stdout and exit\n"
        "  -q            : with -t/-T, print errors only\n"
        "  -s signal     : signal the master process: stop, quit, reopen, reload\n"
        "  -p prefix     : prefix path (default: " PT_PREFIX ")\n"
        "  -e filename   : error log file (default: " PT_ERROR_LOG_PATH ")\n"
        "  -c filename   : configuration file (default: " PT_CONF_PATH ")\n"
        "  -g directives : main-context directives added to the configuration\n"
        "\n");
}

static void show_configure(void)
{
    char line[4096];
    size_t n = 0;
    int w;

#if defined(__clang__)
    w = snprintf(line, sizeof(line), "built by clang %s\n", __clang_version__);
#elif defined(__GNUC__)
    w = snprintf(line, sizeof(line), "built by gcc %s\n", __VERSION__);
#else
    w = snprintf(line, sizeof(line), "built by an unknown compiler\n");
#endif
    if (w > 0)
        put(line);

    const char *running = OpenSSL_version(OPENSSL_VERSION);
    if (strcmp(running, OPENSSL_VERSION_TEXT) == 0)
        w = snprintf(line, sizeof(line), "built with %s\n", running);
    else
        w = snprintf(line, sizeof(line), "built with %s (running with %s)\n",
                     OPENSSL_VERSION_TEXT, running);
    if (w > 0)
        put(line);
    put("TLS SNI support enabled\n");

    /* the prefix without its trailing slash, as configure takes it */
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof(prefix), "%s", PT_PREFIX);
    size_t plen = strlen(prefix);
    if (plen > 1 && prefix[plen - 1] == '/')
        prefix[plen - 1] = '\0';

    w = snprintf(line, sizeof(line),
                 "configure arguments: --prefix=%s --conf-path=%s%s "
                 "--error-log-path=%s%s --pid-path=%s%s",
                 prefix, PT_CONF_PATH[0] == '/' ? "" : PT_PREFIX, PT_CONF_PATH,
                 PT_PREFIX, PT_ERROR_LOG_PATH, PT_PREFIX, PT_PID_PATH);
    if (w < 0)
        return;
    n = (size_t) w < sizeof(line) ? (size_t) w : sizeof(line) - 1;
    for (size_t i = 0; i < pt_modules_n; i++) {
        const pt_module_t *m = pt_modules[i];
        if (m->builtin_core)
            continue;
        w = snprintf(line + n, sizeof(line) - n, " --with-%s_module", m->name);
        if (w < 0 || (size_t) w >= sizeof(line) - n)
            break;
        n += (size_t) w;
    }
    put(line);
    put("\n");
}

/* Joins a relative path to base (which ends with '/'); malloc'd. */
static char *full_path(const char *base, const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    size_t bl = strlen(base), pl = strlen(path);
    char *s = malloc(bl + pl + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, base, bl);
    memcpy(s + bl, path, pl + 1);
    return s;
}

/* The prefix, absolute and ending with '/'; malloc'd. */
static char *make_prefix(const char *p)
{
    char cwd[PATH_MAX];
    const char *base = "";
    size_t len = strlen(p);

    if (p[0] != '/') {
        if (getcwd(cwd, sizeof(cwd) - 1) == NULL) {
            pt_cli_message("[emerg] getcwd() failed (%d: %s)", errno, strerror(errno));
            return NULL;
        }
        strcat(cwd, "/");
        base = cwd;
    }
    /* "-p ." / "-p ./x": drop the leading "./" segments */
    while (p[0] == '.' && (p[1] == '/' || p[1] == '\0') && base[0]) {
        p += p[1] ? 2 : 1;
        len = strlen(p);
    }
    size_t bl = strlen(base);
    int slash = len > 0 && p[len - 1] != '/';
    char *s = malloc(bl + len + 2);
    if (s == NULL)
        return NULL;
    memcpy(s, base, bl);
    memcpy(s + bl, p, len);
    if (slash)
        s[bl + len++] = '/';
    s[bl + len] = '\0';
    return s;
}

static void make_logs_dir(const char *pfx)
{
    struct stat st;
    char logs[PATH_MAX];

    if (stat(pfx, &st) != 0 || !S_ISDIR(st.st_mode))
        return;   /* a mistyped -p should fail, not grow a tree */
    if (snprintf(logs, sizeof(logs), "%slogs", pfx) >= (int) sizeof(logs))
        return;
    if (mkdir(logs, 0755) != 0 && errno != EEXIST)
        pt_cli_message("[warn] mkdir() \"%s\" failed (%d: %s)", logs, errno, strerror(errno));
}

/* The log used until the configuration names one: -e (a file, or stderr),
 * else prefix/logs/error.log when it can be opened. Serious messages are
 * echoed to the terminal as "portico: [emerg] ..." in any case (a target
 * that is stderr itself prints them in the full log format instead, as
 * nginx's -e stderr). */
static void startup_log(const char *prefix, const char *elog, pt_pool_t *pool)
{
    static pt_log_t log;
    static pt_open_file_t *files;

    memset(&log, 0, sizeof(log));
    log.level = PT_LOG_NOTICE;

    if (elog != NULL && strcmp(elog, "stderr") == 0) {
        log.file = NULL;   /* stderr, full format */
        pt_log_default = &log;
        return;
    }

    char *path = full_path(prefix, elog ? elog : PT_ERROR_LOG_PATH);
    if (path == NULL)
        return;
    pt_open_file_t *f = pt_open_file_get(pool, &files, path);
    if (f == NULL) {
        /* nginx's warning, and it goes on with the terminal only */
        pt_cli_message("[alert] could not open error log file: open() \"%s\" failed (%d: %s)",
                       path, errno, strerror(errno));
        /* terminal only: nothing written to fd 2 in full format */
        log.level = PT_LOG_STDERR;
        log.file = NULL;
    } else {
        log.file = f;
    }
    free(path);
    pt_log_default = &log;
}

static int dump_config(pt_cycle_t *cycle)
{
    static const char head[] = "# configuration file ";
    pt_conf_dump_t *d = cycle->config_dump.elts;

    for (size_t i = 0; i < cycle->config_dump.nelts; i++) {
        if (write_stdout(head, sizeof(head) - 1) != 0
            || write_stdout(d[i].name.data, d[i].name.len) != 0
            || write_stdout(":\n", 2) != 0
            || write_stdout(d[i].text.data, d[i].text.len) != 0
            || write_stdout("\n", 1) != 0)
            return -1;
    }
    return 0;
}

/* Process lifetime; released by done() on the paths that return. */
static char      *prefix;
static char      *conf_file;
static pt_pool_t *pool;

static int done(int rc)
{
    if (pool)
        pt_pool_destroy(pool);
    free(prefix);
    free(conf_file);
    pool = NULL;
    prefix = conf_file = NULL;
    return rc;
}

int main(int argc, char **argv)
{
    cli_t cli;
    memset(&cli, 0, sizeof(cli));

    if (parse_args(argc, argv, &cli) != 0)
        return 1;

    if (cli.show_version) {
        show_version();
        if (cli.show_help)
            show_help();
        if (cli.show_configure)
            show_configure();
        if (!cli.test)
            return 0;
    }

    pt_time_init();
    pt_modules_init(pt_modules, pt_modules_n);

    prefix = make_prefix(cli.prefix ? cli.prefix : PT_PREFIX);
    conf_file = prefix ? full_path(prefix, cli.conf_file ? cli.conf_file : PT_CONF_PATH) : NULL;
    pool = pt_pool_create(1024);
    if (prefix == NULL || conf_file == NULL || pool == NULL) {
        pt_cli_message("[emerg] out of memory");
        return done(1);
    }

    /* a server start in a fresh prefix gets its logs directory (nginx's -t
     * and -s do not create it; neither do ours) */
    if (!cli.test && cli.signal == NULL)
        make_logs_dir(prefix);
    startup_log(prefix, cli.error_log, pool);

    pt_cycle_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.modules = pt_modules;
    opts.nmodules = pt_modules_n;
    opts.prefix = prefix;
    opts.conf_file = conf_file;
    opts.conf_param = cli.conf_param;
    opts.error_log = cli.error_log;
    opts.conf_default = cli.conf_file == NULL;
    opts.test_only = cli.test;
    opts.quiet = cli.quiet;
    opts.dump_config = cli.dump;
    opts.signaller = cli.signal != NULL && !cli.test;

    int inherited = 0;
    if (!cli.test && cli.signal == NULL)
        inherited = pt_cycle_inherit(pt_log_default) > 0;

    pt_cycle_t *cycle = pt_cycle_create(NULL, &opts);
    if (cycle == NULL) {
        if (cli.test)
            pt_cli_message("configuration file %s test failed", conf_file);
        return done(1);
    }

    if (cli.test) {
        if (!cli.quiet)
            pt_cli_message("configuration file %s test is successful", conf_file);
        int rc = 0;
        if (cli.dump && dump_config(cycle) != 0)
            rc = 1;
        pt_cycle_destroy(cycle);
        return done(rc);
    }

    if (cli.signal) {
        int rc = pt_signal_process(cycle, cli.signal);
        pt_cycle_destroy(cycle);
        return done(rc);
    }

    pt_master_set_start(argv, inherited);
    return pt_master_run(cycle);
}
