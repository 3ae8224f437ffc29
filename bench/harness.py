#!/usr/bin/python3
"""Portico side-by-side benchmark harness (driven by bench/run.sh).

Runs each scenario against the direct backend, Portico, nginx and HAProxy,
one proxy process at a time on the same ports, interleaved (A B C A B C ...),
and reports medians. The proxy is pinned to CPU 0, the backend and the load
generator to CPU 1. For every run it records requests/s, p50/p99 latency,
errors and the proxy's own CPU time per request (utime+stime of the proxy's
processes from /proc/PID/stat, before and after the run).

Environment (set by bench/run.sh):
  BENCH_ROOT       repository root
  BENCH_TOOLS      folder holding the built backend and client
  BENCH_SECONDS    seconds per load run (default 6)
  BENCH_REPS       repetitions of each pair (default 3)
  BENCH_BIG_MB     size of the big download/upload in MiB (default 1024)
  BENCH_IDLE_CONNS idle connections for "idle" (default 10000)
  BENCH_PORT_BASE  first port tried (default 29100)
  BENCH_MODE       "full", "smoke" or "subset" (where the results go)
  BENCH_COMMAND    the command line, recorded in the results
"""
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.environ.get("BENCH_ROOT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.environ.get("BENCH_TOOLS", os.path.join(ROOT, "build", "bench"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "6"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
BIG_MB = int(os.environ.get("BENCH_BIG_MB", "1024"))
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS", "10000"))
PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "29100"))
# nginx/Portico `keepalive N` in the upstream block.  HAProxy's idle pool has
# no such bound, so N is sized to the largest concurrency a scenario puts on
# the backend (h2: 50 connections x 10 streams = 500), as a tuned nginx config
# would be; with 64, nginx and Portico close and reopen most backend
# connections in h2 while HAProxy reuses all of them.
UPSTREAM_KEEPALIVE = int(os.environ.get("BENCH_UPSTREAM_KEEPALIVE", "512"))
MODE = os.environ.get("BENCH_MODE", "subset")
COMMAND = os.environ.get("BENCH_COMMAND", "bash bench/run.sh")

# The fd hard limit bounds the idle scenario: HAProxy wants 2 fds per maxconn
# and refuses to start otherwise; every target gets the same connection count.
FD_HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if FD_HARD == resource.RLIM_INFINITY or FD_HARD > 65536:
    FD_HARD = 65536
HAPROXY_MAXCONN = min(IDLE_CONNS + 200, (FD_HARD - 100) // 2)
IDLE_CONNS = min(IDLE_CONNS, HAPROXY_MAXCONN - 150)

PORTICO = os.environ.get("PORTICO_BIN", os.path.join(ROOT, "build", "portico"))
# An A/B run: target "portico-base" runs this binary with Portico's config
# (e.g. a build of main), interleaved with "portico" in the same run.
PORTICO_BASE = os.environ.get("PORTICO_BASE_BIN", "")
NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"
TLS_ISSUE = 5          # TLS termination and HTTP/2
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROXY_CPU = "0"
LOAD_CPU = "1"

# name: kind, tls, path, connections, extra
SCENARIOS = {
    "h1-small":      dict(kind="wrk", tls=False, path="/1k", conns=50),
    "h1-100k":       dict(kind="wrk", tls=False, path="/100k", conns=50),
    "h1-conn-close": dict(kind="wrk", tls=False, path="/1k", conns=50, close=True),
    "post-1m":       dict(kind="wrk", tls=False, path="/upload", conns=10, post=True),
    "tls-h1":        dict(kind="wrk", tls=True, path="/1k", conns=50),
    "tls-handshake": dict(kind="stime", tls=True, path="/1k", procs=4, stime="-new"),
    "tls-resume":    dict(kind="wrk", tls=True, path="/1k", conns=50, close=True),
    "h2":            dict(kind="h2load", tls=True, path="/1k", conns=50, streams=10),
    "big":           dict(kind="big", tls=False),
    "idle":          dict(kind="idle", tls=False),
}
ORDER = ["h1-small", "h1-100k", "h1-conn-close", "post-1m", "tls-h1", "tls-handshake",
         "tls-resume", "h2", "big", "idle"]
GROUPS = {"all": ORDER, "smoke": ORDER, "h1": ORDER[:4], "tls": ["tls-h1", "tls-handshake", "tls-resume", "h2"]}
TARGETS = ["direct", "portico", "portico-base", "nginx", "haproxy"]

started = []           # Popen objects this harness started (ended by PID at exit)
WORK = None


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- processes

def spawn(argv, cpu=None, **kw):
    if cpu is not None:
        argv = ["taskset", "-c", cpu] + argv
    p = subprocess.Popen(argv, **kw)
    started.append(p)
    return p


def end(p, grace=5.0):
    """Ends one process this harness started: TERM, then KILL after grace."""
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    if p in started:
        started.remove(p)


def cleanup(*_):
    for p in list(started):
        try:
            end(p, grace=3.0)
        except Exception:
            pass
    if WORK and os.path.isdir(WORK) and not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(WORK, ignore_errors=True)


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])      # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return total


def mem_kb(pids, key):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def port_free(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def http_status(url, timeout=3):
    try:
        r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-m", str(timeout), "-w", "%{http_code}", url],
                           capture_output=True, text=True, timeout=timeout + 2)
        return r.stdout.strip() or "000"
    except subprocess.TimeoutExpired:
        return "000"


def first_line(argv, stderr=False):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (r.stderr if stderr else r.stdout) or r.stdout or r.stderr
        return text.strip().splitlines()[0] if text.strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not available"


# ---------------------------------------------------------------- configs

class Ports:
    def __init__(self, base):
        self.backend, self.http, self.https = base, base + 1, base + 2


def nginx_conf(ports, tls, drop=()):
    """The one config file run by both nginx and Portico. `drop` lists
    directives left out (only for Portico, when it does not know them yet)."""
    up = "upstream" not in drop and "keepalive" not in drop
    L = []

    def d(name, text, indent=0):
        if name not in drop:
            L.append("    " * indent + text)
    d("worker_processes", "worker_processes 1;")
    d("worker_rlimit_nofile", "worker_rlimit_nofile 20000;")
    d("pid", "pid logs/bench.pid;")
    d("error_log", "error_log logs/error.log warn;")
    L.append("events {")
    d("worker_connections", "worker_connections 16384;", 1)
    L.append("}")
    L.append("http {")
    d("access_log", "access_log off;", 1)
    d("keepalive_timeout", "keepalive_timeout 300s;", 1)
    d("keepalive_requests", "keepalive_requests 100000000;", 1)
    d("client_max_body_size", "client_max_body_size 0;", 1)
    d("proxy_http_version", "proxy_http_version 1.1;", 1)
    d("proxy_set_header", 'proxy_set_header Connection "";', 1)
    d("proxy_request_buffering", "proxy_request_buffering off;", 1)
    d("proxy_max_temp_file_size", "proxy_max_temp_file_size 0;", 1)
    if up:
        L.append("    upstream backend {")
        L.append(f"        server 127.0.0.1:{ports.backend};")
        L.append(f"        keepalive {UPSTREAM_KEEPALIVE};")
        L.append("    }")
    L.append("    server {")
    if tls:
        L.append(f"        listen 127.0.0.1:{ports.https} ssl http2;")
        d("ssl_certificate", "ssl_certificate cert.pem;", 2)
        d("ssl_certificate_key", "ssl_certificate_key key.pem;", 2)
        d("ssl_protocols", "ssl_protocols TLSv1.3;", 2)
        d("ssl_session_cache", "ssl_session_cache shared:BENCHTLS:10m;", 2)
        d("ssl_session_timeout", "ssl_session_timeout 1h;", 2)
    else:
        L.append(f"        listen 127.0.0.1:{ports.http} backlog=4096;")
    L.append("        location / {")
    target = "backend" if up else f"127.0.0.1:{ports.backend}"
    L.append(f"            proxy_pass http://{target};")
    L.append("        }")
    L.append("    }")
    L.append("}")
    return "\n".join(L) + "\n"


def haproxy_cfg(ports, tls, certdir):
    bind = (f"bind 127.0.0.1:{ports.https} ssl crt {certdir}/combined.pem alpn h2,http/1.1 ssl-min-ver TLSv1.3"
            if tls else f"bind 127.0.0.1:{ports.http}")
    return f"""global
    nbthread 1
    maxconn {HAPROXY_MAXCONN}
    ssl-server-verify none

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    timeout http-request 300s

frontend fe
    {bind}
    default_backend be

backend be
    server s1 127.0.0.1:{ports.backend}
"""


# ---------------------------------------------------------------- proxies

class Proxy:
    """One proxy process tree for one run."""

    def __init__(self, target, ports, tls, work):
        self.target, self.ports, self.tls, self.work = target, ports, tls, work
        self.proc = None
        self.note = ""

    def url(self, path):
        if self.target == "direct":
            return f"http://127.0.0.1:{self.ports.backend}{path}"
        if self.tls:
            return f"https://127.0.0.1:{self.ports.https}{path}"
        return f"http://127.0.0.1:{self.ports.http}{path}"

    def hostport(self):
        if self.target == "direct":
            return self.ports.backend
        return self.ports.https if self.tls else self.ports.http

    def start(self):
        """Returns None when serving, or a reason string."""
        if self.target == "direct":
            return None
        prefix = os.path.join(self.work, f"{self.target}-{'tls' if self.tls else 'plain'}")
        os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
        os.makedirs(os.path.join(prefix, "conf"), exist_ok=True)
        errlog = open(os.path.join(prefix, "logs", "stderr.log"), "ab")
        if self.target == "haproxy":
            cfg = os.path.join(prefix, "conf", "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write(haproxy_cfg(self.ports, self.tls, self.work))
            argv = [HAPROXY, "-f", cfg, "-db"]
        else:
            binary = {"nginx": NGINX, "portico-base": PORTICO_BASE}.get(self.target, PORTICO)
            conf = conf_for(self.target, self.ports, self.tls)
            if isinstance(conf, Unsupported):
                return str(conf)
            shutil.copy(os.path.join(self.work, "cert.pem"), os.path.join(prefix, "conf", "cert.pem"))
            shutil.copy(os.path.join(self.work, "key.pem"), os.path.join(prefix, "conf", "key.pem"))
            with open(os.path.join(prefix, "conf", "bench.conf"), "w") as f:
                f.write(conf)
            argv = [binary, "-p", prefix + "/", "-c", "conf/bench.conf", "-e", "logs/error.log",
                    "-g", "daemon off; master_process on;"]
        self.proc = spawn(argv, cpu=PROXY_CPU, stdout=errlog, stderr=errlog, cwd=prefix)
        deadline = time.time() + 10
        status = "000"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return f"exited at start-up (status {self.proc.returncode}): {last_error(prefix)}"
            status = http_status(self.url("/1k"), timeout=2)
            if status == "200":
                # nginx and Portico: wait for the worker to exist.
                if self.target == "haproxy" or len(tree(self.proc.pid)) > 1:
                    return None
            time.sleep(0.1)
        end(self.proc)
        if self.tls and self.target == "portico" and status == "000":
            return f"not supported yet (needs issue {TLS_ISSUE})"
        return f"not serving: GET /1k answered {status}"

    def pids(self):
        if self.target == "direct":
            return tree(BACKEND.pid)
        return tree(self.proc.pid)

    def stop(self):
        if self.proc:
            end(self.proc)
            self.proc = None


def last_error(prefix):
    lines = []
    for name in ("error.log", "stderr.log"):
        try:
            with open(os.path.join(prefix, "logs", name), errors="replace") as f:
                lines += [l.strip() for l in f if re.search(r"emerg|alert|crit|ALERT|error", l)]
        except OSError:
            pass
    return lines[-1][:200] if lines else "no error logged"


class Unsupported(str):
    pass


_conf_cache = {}


def conf_for(target, ports, tls):
    """nginx runs the generated config as is. Portico runs the same file;
    when `portico -t` rejects a directive, that directive is dropped (and the
    drop is reported), so the run still happens and the difference is visible."""
    if target == "portico-base":
        target = "portico"
    key = (target, tls)
    if key in _conf_cache:
        return _conf_cache[key]
    conf = nginx_conf(ports, tls)
    if target == "nginx":
        _conf_cache[key] = conf
        return conf
    if not os.access(PORTICO, os.X_OK):
        res = Unsupported("not built (make build/portico)")
        _conf_cache[key] = res
        return res
    drop = []
    tdir = tempfile.mkdtemp(dir=WORK)
    os.makedirs(os.path.join(tdir, "logs"))
    os.makedirs(os.path.join(tdir, "conf"))
    shutil.copy(os.path.join(WORK, "cert.pem"), os.path.join(tdir, "conf"))
    shutil.copy(os.path.join(WORK, "key.pem"), os.path.join(tdir, "conf"))
    res = None
    for _ in range(12):
        with open(os.path.join(tdir, "conf", "bench.conf"), "w") as f:
            f.write(conf)
        r = subprocess.run([PORTICO, "-t", "-p", tdir + "/", "-c", "conf/bench.conf", "-e", "logs/error.log"],
                           capture_output=True, text=True, timeout=20)
        if r.returncode == 0:
            res = conf
            break
        msg = (r.stderr + r.stdout).strip()
        m = re.search(r'unknown directive "([^"]+)"', msg)
        if tls and re.search(r"ssl|http2|certificate|tls", msg, re.I):
            res = Unsupported(f"not supported yet (needs issue {TLS_ISSUE}): {msg.splitlines()[0]}")
            break
        if m and m.group(1) not in drop:
            drop.append(m.group(1))
            conf = nginx_conf(ports, tls, drop)
            continue
        res = Unsupported("config rejected: " + (msg.splitlines()[0] if msg else f"exit {r.returncode}"))
        break
    if res is None:
        res = Unsupported("config rejected")
    if drop and not isinstance(res, Unsupported):
        DROPPED.setdefault(target, set()).update(drop)
    _conf_cache[key] = res
    return res


DROPPED = {}

# ---------------------------------------------------------------- load tools

LAT_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def run_wrk(proxy, sc, secs):
    argv = ["wrk", "-t1", f"-c{sc['conns']}", f"-d{secs}s", "--latency", "--timeout", "10s"]
    if sc.get("close"):
        argv += ["-H", "Connection: close"]
    if sc.get("post"):
        argv += ["-s", os.path.join(WORK, "post1m.lua")]
    argv.append(proxy.url(sc["path"]))
    p = spawn(argv, cpu=LOAD_CPU, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=secs + 30)
    except subprocess.TimeoutExpired:
        end(p)
        return {"error": "wrk timed out"}
    started.remove(p)
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if not m:
        return {"error": "wrk: " + " ".join(out.split())[:200]}
    r["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else 0.0
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        r[key] = float(m.group(1)) * LAT_UNITS[m.group(2)] if m else None
    errs = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errs += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errs += sum(int(x) for x in m.groups())
    r["errors"] = errs
    return r


def run_h2load(proxy, sc, secs):
    logf = os.path.join(WORK, "h2load.log")
    argv = ["h2load", "-t1", f"-c{sc['conns']}", f"-m{sc['streams']}", "-D", str(secs),
            "--log-file", logf, proxy.url(sc["path"])]
    p = spawn(argv, cpu=LOAD_CPU, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=secs + 30)
    except subprocess.TimeoutExpired:
        end(p)
        return {"error": "h2load timed out"}
    started.remove(p)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    m2 = re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s", out)
    if not m or not m2:
        return {"error": "h2load: " + " ".join(out.split())[:200]}
    if "No protocol negotiated" in out or re.search(r"status codes: 0 2xx", out) and int(m.group(4)) == 0:
        return {"error": "h2load: no successful request (h2 not negotiated?)"}
    r = {"requests": int(m.group(3)), "rps": float(m2.group(3))}
    sc_m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    r["errors"] = int(m.group(5)) + int(m.group(6)) + int(m.group(7)) + (
        int(sc_m.group(3)) + int(sc_m.group(4)) if sc_m else 0)
    durs = []
    try:
        with open(logf) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    durs.append(float(parts[2]))
        os.unlink(logf)
    except OSError:
        pass
    if durs:
        durs.sort()
        r["p50"] = durs[len(durs) // 2]
        r["p99"] = durs[min(len(durs) - 1, int(len(durs) * 0.99))]
    else:
        r["p50"] = r["p99"] = None
    return r


def run_stime(proxy, sc, secs):
    """Full TLS handshakes: `openssl s_time -new` (one connection at a time,
    one HTTP/1.0 GET each, no session reuse), several processes in parallel.
    wrk cannot do this: it resumes the session on each reconnect."""
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{proxy.hostport()}", "-www", sc["path"],
            sc["stime"], "-time", str(secs)]
    procs = [spawn(argv, cpu=LOAD_CPU, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(sc["procs"])]
    n, t, errs = 0, 0.0, []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=secs + 30)
        except subprocess.TimeoutExpired:
            end(p)
            errs.append("s_time timed out")
            continue
        started.remove(p)
        m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
        if not m:
            errs.append("s_time: " + " ".join(out.split())[:200])
            continue
        n += int(m.group(1))
        t = max(t, float(m.group(2)))
    if errs:
        return {"error": errs[0]}
    return {"requests": n, "rps": n / t if t else 0.0, "p50": None, "p99": None, "errors": 0,
            "note": f"tls-handshake: {sc['procs']} x openssl s_time {sc['stime']} in parallel "
                    "(full handshake per connection; no latency percentiles)"}


def run_load(proxy, sc, secs):
    pids = proxy.pids()
    t0 = cpu_ticks(pids)
    if sc["kind"] == "wrk":
        r = run_wrk(proxy, sc, secs)
    elif sc["kind"] == "h2load":
        r = run_h2load(proxy, sc, secs)
    else:
        r = run_stime(proxy, sc, secs)
    t1 = cpu_ticks(pids)
    if "error" not in r and r.get("requests"):
        r["cpu_us"] = (t1 - t0) / CLK_TCK * 1e6 / r["requests"]
        if proxy.target == "direct":
            r["note"] = "CPU is the backend's own"
    return r


def run_big(proxy, secs):
    pids = proxy.pids()
    size = BIG_MB * 1024 * 1024
    r = {"rss_before_kb": mem_kb(pids, "VmRSS")}
    t0 = cpu_ticks(pids)
    cmd = ["curl", "-s", "-o", "/dev/null", "-m", "600", "-w", "%{http_code} %{size_download} %{speed_download}",
           proxy.url(f"/bytes/{size}")]
    p = spawn(cmd, cpu=LOAD_CPU, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate()
    started.remove(p)
    t1 = cpu_ticks(pids)
    f = out.split()
    if len(f) < 3 or f[0] != "200" or int(f[1]) != size:
        return {"error": f"download: {out.strip()}"}
    r["down_mbs"] = float(f[2]) / 1e6
    r["down_cpu_s"] = (t1 - t0) / CLK_TCK
    cmd = ["curl", "-s", "-o", "/dev/null", "-m", "600", "-H", "Expect:", "-X", "POST", "-T",
           os.path.join(WORK, "big.bin"), "-w", "%{http_code} %{size_upload} %{speed_upload}",
           proxy.url("/upload")]
    p = spawn(cmd, cpu=LOAD_CPU, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate()
    started.remove(p)
    t2 = cpu_ticks(pids)
    f = out.split()
    if len(f) < 3 or f[0] != "200" or int(f[1]) != size:
        return {"error": f"upload: {out.strip()}", **r}
    r["up_mbs"] = float(f[2]) / 1e6
    r["up_cpu_s"] = (t2 - t1) / CLK_TCK
    r["peak_rss_kb"] = mem_kb(pids, "VmHWM")
    r["rss_after_kb"] = mem_kb(pids, "VmRSS")
    return r


def run_idle(proxy, secs):
    pids = proxy.pids()
    before = mem_kb(pids, "VmRSS")
    client = os.path.join(TOOLS, "client")
    p = spawn([client, "idle", "127.0.0.1", str(proxy.hostport()), str(IDLE_CONNS), "/1k", "120"],
              cpu=LOAD_CPU, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = None
    deadline = time.time() + 90
    while time.time() < deadline:
        rl, _, _ = select.select([p.stdout], [], [], 1.0)
        if rl:
            line = p.stdout.readline()
            if line.startswith("ready"):
                ready = line.split()
            break
        if p.poll() is not None:
            break
    if not ready:
        end(p)
        return {"error": "idle client did not get ready"}
    time.sleep(0.5)
    pids = proxy.pids()
    after = mem_kb(pids, "VmRSS")
    opened, failed = int(ready[1]), int(ready[2])
    try:
        p.stdin.close()
    except OSError:
        pass
    end(p)
    r = {"rss_before_kb": before, "rss_after_kb": after, "opened": opened, "errors": failed}
    if opened:
        r["bytes_per_conn"] = (after - before) * 1024 / opened
    return r


# ---------------------------------------------------------------- running

BACKEND = None


def run_one(name, target, ports):
    sc = SCENARIOS[name]
    if target == "direct" and (sc["tls"] or sc["kind"] == "idle"):
        return None         # the backend speaks no TLS; its idle RSS says nothing of a proxy
    proxy = Proxy(target, ports, sc["tls"], WORK)
    t0 = time.time()
    why = proxy.start()
    if why and "exited at start-up" in why:
        time.sleep(1)                # a port still held, a binary being relinked: once more
        why = proxy.start()
    if why:
        return {"skip": why}
    t1 = time.time()
    try:
        if sc["kind"] == "big":
            return run_big(proxy, SECONDS)
        if sc["kind"] == "idle":
            return run_idle(proxy, SECONDS)
        r = run_load(proxy, sc, SECONDS)
        if target == "portico" and "not negotiated" in r.get("error", ""):
            return {"skip": f"not supported yet (needs issue {TLS_ISSUE}): no h2 over ALPN"}
        return r
    finally:
        t2 = time.time()
        proxy.stop()
        if os.environ.get("BENCH_TIMING"):
            log(f"    timing {target}: start {t1 - t0:.2f} s, load {t2 - t1:.2f} s, stop {time.time() - t2:.2f} s")


def fmt_lat(us):
    if us is None:
        return "-"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def fmt(v, spec="{:.1f}"):
    return "-" if v is None else spec.format(v)


def median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def describe(name, target, r):
    if r is None:
        return None
    if "skip" in r:
        return f"{target}: {r['skip']}"
    if "error" in r:
        return f"{target}: ERROR {r['error']}"
    kind = SCENARIOS[name]["kind"]
    if kind == "big":
        return (f"{target}: down {fmt(r.get('down_mbs'), '{:.0f}')} MB/s, up {fmt(r.get('up_mbs'), '{:.0f}')} MB/s, "
                f"peak RSS {fmt((r.get('peak_rss_kb') or 0) / 1024)} MiB, "
                f"CPU {fmt(r.get('down_cpu_s'), '{:.2f}')} s down / {fmt(r.get('up_cpu_s'), '{:.2f}')} s up")
    if kind == "idle":
        return (f"{target}: {r['opened']} idle conns, RSS {r['rss_before_kb'] / 1024:.1f} -> "
                f"{r['rss_after_kb'] / 1024:.1f} MiB, {fmt(r.get('bytes_per_conn'), '{:.0f}')} B/conn")
    return (f"{target}: {r['rps']:.0f} req/s, p50 {fmt_lat(r.get('p50'))}, p99 {fmt_lat(r.get('p99'))}, "
            f"errors {r['errors']}, CPU {fmt(r.get('cpu_us'))} µs/req")


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def table(name, results):
    """results: target -> list of run dicts. Returns markdown lines."""
    kind = SCENARIOS[name]["kind"]
    L = [f"### {name}", ""]
    meds = {}
    if kind == "big":
        L += ["| target | download MB/s | upload MB/s | RSS at start MiB | peak RSS MiB | CPU s (down) | CPU s (up) | runs |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    elif kind == "idle":
        L += [f"| target | idle conns | RSS before MiB | RSS after MiB | bytes/conn | runs |",
              "|---|---:|---:|---:|---:|---:|"]
    else:
        L += ["| target | req/s | p50 | p99 | errors | CPU µs/req | runs |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for t in TARGETS:
        runs = results.get(t)
        if not runs:
            continue
        ok = [r for r in runs if r and "skip" not in r and "error" not in r]
        if not ok:
            bad = next((r for r in runs if r), {})
            why = bad.get("skip") or ("ERROR " + bad.get("error", "?"))
            cols = {"idle": 5, "big": 7}.get(kind, 6)
            L.append(f"| {t} | {why} |" + " |" * (cols - 1))
            continue
        if kind == "big":
            m = {k: median(ok, k) for k in ("down_mbs", "up_mbs", "rss_before_kb", "peak_rss_kb", "down_cpu_s",
                                            "up_cpu_s")}
            L.append(f"| {t} | {fmt(m['down_mbs'], '{:.0f}')} | {fmt(m['up_mbs'], '{:.0f}')} | "
                     f"{fmt((m['rss_before_kb'] or 0) / 1024) if t != 'direct' else '-'} | "
                     f"{fmt((m['peak_rss_kb'] or 0) / 1024) if t != 'direct' else '-'} | "
                     f"{fmt(m['down_cpu_s'], '{:.2f}')} | {fmt(m['up_cpu_s'], '{:.2f}')} | {len(ok)} |")
        elif kind == "idle":
            m = {k: median(ok, k) for k in ("opened", "rss_before_kb", "rss_after_kb", "bytes_per_conn")}
            L.append(f"| {t} | {fmt(m['opened'], '{:.0f}')} | {fmt(m['rss_before_kb'] / 1024)} | "
                     f"{fmt(m['rss_after_kb'] / 1024)} | {fmt(m['bytes_per_conn'], '{:.0f}')} | {len(ok)} |")
        else:
            m = {k: median(ok, k) for k in ("rps", "p50", "p99", "errors", "cpu_us")}
            cpu = fmt(m["cpu_us"]) + (" (backend)" if t == "direct" else "")
            L.append(f"| {t} | {m['rps']:.0f} | {fmt_lat(m['p50'])} | {fmt_lat(m['p99'])} | "
                     f"{fmt(m['errors'], '{:.0f}')} | {cpu} | {len(ok)} |")
        meds[t] = m
    L.append("")
    if "portico" in meds:
        pm = meds["portico"]
        for peer in ("portico-base", "nginx", "haproxy"):
            if peer not in meds:
                continue
            q = meds[peer]
            if kind == "big":
                L.append(f"- portico/{peer}: download {ratio(pm['down_mbs'], q['down_mbs'])}, upload "
                         f"{ratio(pm['up_mbs'], q['up_mbs'])}, peak RSS {ratio(pm['peak_rss_kb'], q['peak_rss_kb'])}, "
                         f"CPU down {ratio(pm['down_cpu_s'], q['down_cpu_s'])}, CPU up {ratio(pm['up_cpu_s'], q['up_cpu_s'])}")
            elif kind == "idle":
                L.append(f"- portico/{peer}: bytes/conn {ratio(pm['bytes_per_conn'], q['bytes_per_conn'])}")
            else:
                L.append(f"- portico/{peer}: req/s {ratio(pm['rps'], q['rps'])}, p50 {ratio(pm['p50'], q['p50'])}, "
                         f"p99 {ratio(pm['p99'], q['p99'])}, CPU/req {ratio(pm['cpu_us'], q['cpu_us'])}")
        if kind == "big" and "direct" in meds:
            d = meds["direct"]
            L.append(f"- portico/direct: download {ratio(pm['down_mbs'], d['down_mbs'])}, "
                     f"upload {ratio(pm['up_mbs'], d['up_mbs'])}")
        L.append("")
    notes = sorted({r["note"] for rs in results.values() for r in rs if r and r.get("note") and "CPU is" not in r["note"]})
    for n in notes:
        L.append(f"- note: {n}")
    if notes:
        L.append("")
    SUMMARY[name] = meds
    return L


SUMMARY = {}
CPU_TARGET = 0.75           # issue 6: CPU/request <= 0.75 x the better peer


def summary_lines():
    """One line per scenario: Portico against the better of nginx and HAProxy,
    with the issue's targets. Informative only: nothing fails on it."""
    L = ["| scenario | Portico | better peer | ratio | target | met |", "|---|---:|---:|---:|---|---|"]
    for name, meds in SUMMARY.items():
        kind = SCENARIOS[name]["kind"]
        pm = meds.get("portico")
        peers = {t: meds[t] for t in ("nginx", "haproxy") if t in meds}
        if not pm:
            L.append(f"| {name} | not run | | | | |")
            continue
        if kind == "big":
            d = meds.get("direct")
            for key, label in (("down_mbs", "download MB/s"), ("up_mbs", "upload MB/s")):
                r = pm[key] / d[key] if d and d.get(key) and pm.get(key) else None
                L.append(f"| {name} {label} | {fmt(pm.get(key), '{:.0f}')} | direct {fmt(d and d.get(key), '{:.0f}')} | "
                         f"{fmt(r, '{:.2f}')} | ≥ 0.90 of direct | {'yes' if r and r >= 0.9 else 'no'} |")
            grow = ((pm.get("peak_rss_kb") or 0) - (pm.get("rss_before_kb") or 0)) / 1024
            L.append(f"| {name} peak RSS MiB | {fmt((pm.get('peak_rss_kb') or 0) / 1024)} | | | flat with size | "
                     f"+{grow:.1f} MiB over start |")
            continue
        if kind == "idle":
            b = pm.get("bytes_per_conn")
            best = min((q.get("bytes_per_conn") for q in peers.values() if q.get("bytes_per_conn")), default=None)
            L.append(f"| {name} bytes/conn | {fmt(b, '{:.0f}')} | {fmt(best, '{:.0f}')} | {ratio(b, best)} | ≤ 1024 B | "
                     f"{'yes' if b is not None and b <= 1024 else 'no'} |")
            continue
        cpus = [q["cpu_us"] for q in peers.values() if q.get("cpu_us")]
        if cpus and pm.get("cpu_us"):
            best = min(cpus)
            r = pm["cpu_us"] / best
            if name == "tls-handshake":
                tgt, met = "≥ nginx (CPU/req ≤ nginx)", (peers.get("nginx") and pm["cpu_us"] <= peers["nginx"]["cpu_us"])
            elif name in ("h1-small", "h1-100k", "h1-conn-close", "tls-h1"):
                tgt, met = f"≤ {CPU_TARGET}", r <= CPU_TARGET
            else:
                tgt, met = "-", None
            L.append(f"| {name} CPU µs/req | {pm['cpu_us']:.1f} | {best:.1f} | {r:.2f} | {tgt} | "
                     f"{'-' if met is None else ('yes' if met else 'no')} |")
        rps = [q["rps"] for q in peers.values() if q.get("rps")]
        if rps and pm.get("rps"):
            L.append(f"| {name} req/s | {pm['rps']:.0f} | {max(rps):.0f} | {pm['rps'] / max(rps):.2f} | "
                     f"≥ 1 where the proxy is the bottleneck | - |")
        p99 = [q["p99"] for q in peers.values() if q.get("p99")]
        if p99 and pm.get("p99"):
            L.append(f"| {name} p99 | {fmt_lat(pm['p99'])} | {fmt_lat(min(p99))} | {pm['p99'] / min(p99):.2f} | ≤ 1 | "
                     f"{'yes' if pm['p99'] <= min(p99) else 'no'} |")
    return L


def machine_lines():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = ["?"]
    return [f"- machine: {os.cpu_count()} CPUs (nproc), {model}, load average at start {' '.join(load)}",
            f"- kernel: {os.uname().release}"]


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" + uncommitted changes under src/" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def versions():
    return [
        f"- portico source: commit {git_rev()} (build/portico as built at the start of the run)",
        f"- portico: {first_line([PORTICO, '-v'], stderr=True) if os.access(PORTICO, os.X_OK) else 'not built'}",
        f"- nginx: {first_line([NGINX, '-v'], stderr=True)}",
        f"- haproxy: {first_line([HAPROXY, '-v'])}",
        f"- wrk: {first_line(['wrk', '-v'])}",
        f"- h2load: {first_line(['h2load', '--version'])}",
        f"- openssl: {first_line(['openssl', 'version'])}",
        f"- curl: {first_line(['curl', '--version'])}",
    ]


def settings():
    return [
        f"- {SECONDS} s per load run, {REPS} repetition(s) of each target, interleaved "
        f"(direct portico nginx haproxy, repeated); medians reported",
        "- proxy pinned to CPU 0 (taskset -c 0); backend (bench/backend.c, cc -O2, epoll) and load generator "
        "pinned to CPU 1; each proxy started fresh for each run on the same ports",
        "- nginx and Portico run the same generated config file: worker_processes 1, master_process on, "
        f"access_log off, upstream keepalive {UPSTREAM_KEEPALIVE}, proxy_http_version 1.1, Connection \"\", "
        "keepalive_requests 100000000, proxy_request_buffering off, proxy_max_temp_file_size 0, "
        "client_max_body_size 0; TLS: TLSv1.3 only, ECDSA P-256 certificate, shared session cache",
        "- HAProxy: nbthread 1, http-reuse always, no logs, same timeouts; TLS: ssl-min-ver TLSv1.3, "
        "alpn h2,http/1.1",
        "- CPU µs/req = (utime+stime of the proxy's master and worker processes from /proc/PID/stat "
        f"after − before the run) / requests completed; clock tick {1e3 / CLK_TCK:.0f} ms",
        "- h1-small: wrk -t1 -c50 GET 1 KiB; h1-100k: 100 KiB; h1-conn-close: wrk -H 'Connection: close' "
        "(a new client connection per request); post-1m: wrk -c10 POST 1 MiB bodies (Lua script); "
        "tls-h1: wrk over TLS 1.3 keep-alive; tls-handshake: 4 x openssl s_time -new in parallel "
        "(a full ECDSA P-256 handshake per connection, one GET each); tls-resume: wrk over TLS with "
        "'Connection: close' (wrk resumes the TLS 1.3 session on every reconnect); h2: h2load -c50 -m10 over TLS (p50/p99 from its per-request log); "
        f"big: one {BIG_MB} MiB download and one {BIG_MB} MiB upload with curl (peak RSS = VmHWM); "
        f"idle: {IDLE_CONNS} keep-alive connections after one request each (RSS = VmRSS sum of the "
        "proxy's processes)",
    ]


def main(argv):
    global WORK, BACKEND
    what = argv[1:] or ["all"]
    names = []
    for w in what[:1]:
        names += GROUPS.get(w, [w])
    for n in names:
        if n not in SCENARIOS:
            log(f"bench: unknown scenario {n!r}; known: {', '.join(ORDER)}, all, smoke, h1, tls")
            return 2
    global TARGETS
    if len(what) > 1:
        TARGETS = [t for t in TARGETS if t in what[1:]]
        unknown = [t for t in what[1:] if t not in ("direct", "portico", "portico-base", "nginx", "haproxy")]
        if unknown:
            log(f"bench: unknown target(s) {unknown}; known: direct portico portico-base nginx haproxy")
            return 2
    else:
        TARGETS = [t for t in TARGETS if t != "portico-base"]
    if "portico-base" in TARGETS and not os.access(PORTICO_BASE, os.X_OK):
        log("bench: target portico-base needs PORTICO_BASE_BIN (an executable)")
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    try:
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    except OSError:
        pass
    WORK = tempfile.mkdtemp(prefix="portico-bench.")
    try:
        return run_all(names)
    finally:
        cleanup()


def run_all(names):
    global BACKEND
    base = PORT_BASE
    while not all(port_free(base + i) for i in range(3)):
        base += 10
        if base > PORT_BASE + 500:
            log("bench: no free ports")
            return 1
    ports = Ports(base)

    # TLS material (ECDSA P-256), HAProxy's combined PEM, the Lua script, the upload file.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", os.path.join(WORK, "key.pem"), "-out", os.path.join(WORK, "cert.pem"),
                    "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    with open(os.path.join(WORK, "combined.pem"), "w") as f:
        f.write(open(os.path.join(WORK, "cert.pem")).read() + open(os.path.join(WORK, "key.pem")).read())
    with open(os.path.join(WORK, "post1m.lua"), "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = string.rep("x", 1048576)\n'
                'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    with open(os.path.join(WORK, "big.bin"), "wb") as f:
        f.truncate(BIG_MB * 1024 * 1024)     # sparse: reading it costs no disk

    # Others rebuild build/portico while a run goes on: run a snapshot of it.
    global PORTICO
    if os.access(PORTICO, os.X_OK):
        snap = os.path.join(WORK, "portico")
        shutil.copy2(PORTICO, snap)
        PORTICO = snap
    global PORTICO_BASE
    if PORTICO_BASE and os.access(PORTICO_BASE, os.X_OK):
        snap = os.path.join(WORK, "portico-base")
        shutil.copy2(PORTICO_BASE, snap)
        PORTICO_BASE = snap

    BACKEND = spawn([os.path.join(TOOLS, "backend"), str(ports.backend)], cpu=LOAD_CPU)
    for _ in range(50):
        if http_status(f"http://127.0.0.1:{ports.backend}/1k", 1) == "200":
            break
        time.sleep(0.1)
    else:
        log("bench: the backend does not answer")
        return 1

    t_start = time.time()
    log(f"bench: scenarios {' '.join(names)}; targets {' '.join(TARGETS)}; {SECONDS} s x {REPS} rep(s); "
        f"ports {ports.backend}-{ports.https}")
    out = ["# Portico benchmark results", "",
           f"Command: `{COMMAND}`", "",
           f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    out += ["## Machine", ""] + machine_lines() + [""]
    out += ["## Versions", ""] + versions() + [""]
    out += ["## Settings", ""] + settings() + [""]
    results_at = len(out)
    out += ["## Results (medians)", ""]
    log("")
    for name in names:
        results = {t: [] for t in TARGETS}
        skip = {}
        for rep in range(REPS):
            for t in TARGETS:
                if t in skip:
                    continue
                r = run_one(name, t, ports)
                if r is None:
                    continue
                results[t].append(r)
                log(f"  {name} [{rep + 1}/{REPS}] {describe(name, t, r)}")
                if "skip" in r and re.search(r"not supported|not built|config rejected", r["skip"]):
                    skip[t] = r
        tab = table(name, results)
        log("")
        for line in tab:
            log(line)
        out += tab
    summ = ["## Summary: Portico against the better of nginx and HAProxy (medians; informative, no test)", ""]
    summ += summary_lines() + [""]
    out[results_at:results_at] = summ
    log("")
    for line in summ:
        log(line)
    if DROPPED:
        out.append("## Config differences")
        out.append("")
        for t, ds in DROPPED.items():
            out.append(f"- {t} ran the nginx config without: {', '.join(sorted(ds))} (rejected by `{t} -t`)")
        out.append("")
        for line in out[-3:]:
            log(line)
    else:
        out.append("Portico ran the very config file nginx ran (no directive dropped).")
        out.append("")
    out.append(f"Total time: {time.time() - t_start:.0f} s")
    text = "\n".join(out) + "\n"
    if MODE == "full":
        dest = os.path.join(ROOT, "bench", "RESULTS.md")
    else:
        dest = os.path.join(ROOT, "build", "bench", f"RESULTS-{MODE}.md")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "w") as f:
        f.write(text)
    log(f"bench: results written to {os.path.relpath(dest, ROOT)} ({time.time() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
