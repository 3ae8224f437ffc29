/* bench/client.c: small load clients that wrk and h2load do not provide.
 *
 *   client idle HOST PORT N PATH HOLD_SECONDS
 *       Opens N keep-alive connections, sends one GET PATH on each and reads
 *       the whole answer, so that each connection is an idle keep-alive
 *       connection in the proxy. 16 connections at a time: more in flight
 *       would leave the proxy holding buffers for a burst, counted as
 *       per-connection memory. Prints "ready OPEN FAILED" once all are
 *       open, then holds them until stdin closes, SIGTERM or HOLD_SECONDS.
 *
 *   client reqs HOST PORT N PATH
 *       Sends N GET PATH requests one after the other on one keep-alive
 *       connection (reconnecting if the server closes it) and prints
 *       "done N_OK N_FAILED SECONDS". Used by bench/profile.sh.
 *
 *   client close HOST PORT N PATH
 *       As reqs, but each request on a new connection with "Connection:
 *       close" (read until the server closes). bench/profile.sh with
 *       PROFILE_CLOSE=1 (the h1-conn-close path).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in addr;
static char req[512];
static size_t req_len;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads one whole answer (Content-Length framing). Returns the status code,
 * 0 when the server closed first, -1 on error. */
static int read_answer(int fd)
{
    char buf[65536];
    size_t have = 0;
    long long body_left = -1;
    int status = -1;
    for (;;) {
        ssize_t r = read(fd, buf + have, sizeof(buf) - have);
        if (r <= 0)
            return r == 0 ? 0 : -1;
        have += (size_t)r;
        if (body_left < 0) {
            char *e = memmem(buf, have, "\r\n\r\n", 4);
            if (!e) {
                if (have == sizeof(buf))
                    return -1;
                continue;
            }
            if (have < 12)
                return -1;
            status = atoi(buf + 9);
            body_left = 0;
            for (char *p = buf; p < e; p++) {
                if ((p == buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
                    body_left = atoll(p + 15);
            }
            size_t hl = (size_t)(e + 4 - buf);
            body_left -= (long long)(have - hl);
        } else {
            body_left -= r;
        }
        have = 0;
        if (body_left <= 0)
            return status;
    }
}

/* Sends the request and reads its answer. */
static int exchange(int fd)
{
    if (write(fd, req, req_len) != (ssize_t)req_len)
        return -1;
    return read_answer(fd);
}

static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }

int main(int argc, char **argv)
{
    if (argc < 6 || (strcmp(argv[1], "idle") && strcmp(argv[1], "reqs") && strcmp(argv[1], "close"))) {
        fprintf(stderr, "usage: %s idle HOST PORT N PATH HOLD_SECONDS | reqs|close HOST PORT N PATH\n",
                argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "client: bad address %s\n", argv[2]);
        return 2;
    }
    long n = atol(argv[4]);
    int close_mode = strcmp(argv[1], "close") == 0;
    req_len = (size_t)snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: bench-client\r\n%s\r\n",
                               argv[5], argv[2], close_mode ? "Connection: close\r\n" : "");

    if (close_mode) {
        long ok = 0, failed = 0;
        double t0 = now();
        for (long i = 0; i < n; i++) {
            int fd = dial();
            int st = fd < 0 ? -1 : exchange(fd);
            if (st >= 200 && st < 300) {
                char b[256];
                while (read(fd, b, sizeof(b)) > 0)   /* until the server's FIN */
                    ;
                ok++;
            } else {
                failed++;
            }
            if (fd >= 0)
                close(fd);
        }
        printf("done %ld %ld %.3f\n", ok, failed, now() - t0);
        return failed ? 1 : 0;
    }

    if (strcmp(argv[1], "reqs") == 0) {
        long ok = 0, failed = 0;
        int fd = -1;
        double t0 = now();
        for (long i = 0; i < n; i++) {
            if (fd < 0 && (fd = dial()) < 0) {
                failed++;
                continue;
            }
            int st = exchange(fd);
            if (st == 0) {              /* closed by the server: retry once */
                close(fd);
                fd = dial();
                st = fd < 0 ? -1 : exchange(fd);
            }
            if (st >= 200 && st < 300) {
                ok++;
            } else {
                failed++;
                if (fd >= 0)
                    close(fd);
                fd = -1;
            }
        }
        printf("done %ld %ld %.3f\n", ok, failed, now() - t0);
        return failed ? 1 : 0;
    }

    struct rlimit rl = { .rlim_cur = (rlim_t)n + 64, .rlim_max = (rlim_t)n + 64 };
    struct rlimit cur;
    getrlimit(RLIMIT_NOFILE, &cur);
    if (cur.rlim_max > rl.rlim_max)
        rl.rlim_max = cur.rlim_max;
    if (cur.rlim_cur < rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &rl) < 0)
        perror("client: setrlimit");
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    int hold = atoi(argv[6]);
    long open_ok = 0, failed = 0;
    /* In batches: connect and send on BATCH connections, then read the
     * BATCH answers, so that requests overlap without outgrowing a backlog. */
    enum { BATCH = 16 };
    int fds[BATCH];
    for (long i = 0; i < n && !stop; i += BATCH) {
        int k = (int)(n - i < BATCH ? n - i : BATCH);
        for (int j = 0; j < k; j++) {
            fds[j] = dial();
            if (fds[j] >= 0 && write(fds[j], req, req_len) != (ssize_t)req_len) {
                close(fds[j]);
                fds[j] = -1;
            }
        }
        for (int j = 0; j < k; j++) {
            if (fds[j] < 0) {
                failed++;
                continue;
            }
            int st = read_answer(fds[j]);
            if (st >= 200 && st < 300) {
                open_ok++;          /* keep fd open: it is the idle connection */
            } else {
                failed++;
                close(fds[j]);
            }
        }
    }
    printf("ready %ld %ld\n", open_ok, failed);
    fflush(stdout);
    double end = now() + hold;
    while (!stop && now() < end) {
        struct pollfd p = { .fd = 0, .events = POLLIN };
        int r = poll(&p, 1, 200);
        if (r > 0) {
            char b[64];
            if (read(0, b, sizeof(b)) <= 0)
                break;
        }
    }
    return 0;
}
