"""Shared harness for Portico's integration tests.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest tests/integration

Everything runs on loopback with ports from free_port(); nothing is fixed, so
several engineers can run the suite at the same time.

Quick reference
---------------
    def test_x(portico, echo_backend):
        p = portico('''
            http {
                server {
                    listen 127.0.0.1:@PORT@;
                    location / { return 200 "hi"; }
                }
            }''')
        r = http_get(p.url())            # p.url() == http://127.0.0.1:<PORT>/
        assert r.status == 200 and r.body == b"hi"

Placeholders in config text: @PORT@, @PORT2@, @PORT_ANYTHING@ ... each get a
fresh free port (p.port is @PORT@, p.ports["PORT2"] the others), @PREFIX@ is
the prefix directory (ends without "/"), and any @NAME@ passed as a keyword in
subst={"NAME": value}.

portico(conf, workers=1, prelude=True, wait=True, allow_emerg=False,
        allow_alert=False, extra_ports=(), files=None, subst=None, args=())
  * prelude: prepends `daemon off; master_process on; error_log logs/error.log
    info; pid logs/portico.pid;` (each only if the text does not set it),
    `user root;` when the suite runs as root (workers keep access to the 0700
    temp prefix), and
    `worker_processes N;` (unless set) and `events { worker_connections 1024; }`
    (unless present).
  * files={"conf/extra.conf": "text"} writes extra files relative to the prefix
    (placeholders substituted too).
Methods: url(port=None, path="/"), pid, prefix, error_log(), access_log(name),
access_lines(n, name) (waits until the log has n lines),
reload(conf, expect_ok=True), signal(sig), workers(), stop(), kill().

Backends: echo_backend, slow_backend(delay), chunked_backend(chunks),
dying_backend(mode), status_backend(code), unix_echo_backend,
ws_echo_backend; each has .port/.url (or .path), .requests (every request
received: .method .target .path .version .headers .body .raw bytes).

short_tmp: a short dir under /tmp for unix sockets; list it BEFORE portico in
the test's arguments so it is removed after portico stops.

TLS: tls_files (session): trustme CA + server cert (.cert_path .key_path
.ca_path, .client_context()).

Helpers: free_port(), run_portico(args), conf_test(tmp_path, text, files),
raw_request(port, data, timeout), http_get(url, headers), parse_responses().
"""

import asyncio
import errno
import http.client
import json
import os
import re
import shutil
import signal
import signal as _signal_mod
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
PORTICO_BIN = os.environ.get("PORTICO_BIN") or os.path.join(REPO, "build", "portico")
if not os.path.isabs(PORTICO_BIN):
    PORTICO_BIN = os.path.join(REPO, PORTICO_BIN)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
DEFAULT_TEST_TIMEOUT = 60

SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "ThreadSanitizer",
    "MemorySanitizer",
)

__all__ = [
    "free_port", "run_portico", "conf_test", "raw_request", "http_get",
    "parse_responses", "Portico", "PORTICO_BIN", "HttpResponse", "RawResponse",
    "connection_closed", "wait_server_read", "write_files", "Backend", "http_response", "echo_payload",
    "make_echo_backend", "make_slow_backend", "make_chunked_backend",
    "make_dying_backend", "make_status_backend", "WsEchoBackend", "REPO",
]


# --------------------------------------------------------------------------
# pytest settings: per-test time limit (signal.alarm), markers
# --------------------------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "timeout(seconds): per-test time limit (default %d s)" % DEFAULT_TEST_TIMEOUT)


class _TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _time_limit(request):
    """Fail a test that runs longer than its limit (signal.alarm based, main thread)."""
    marker = request.node.get_closest_marker("timeout")
    seconds = int(marker.args[0]) if marker and marker.args else DEFAULT_TEST_TIMEOUT
    seconds = int(os.environ.get("PORTICO_TEST_TIMEOUT", seconds))

    def on_alarm(signum, frame):
        raise _TestTimeout("test exceeded its time limit of %d s" % seconds)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

_port_lock = threading.Lock()
_recent_ports = set()


def free_port(host="127.0.0.1"):
    """Ask the kernel for a free TCP port on loopback and return its number."""
    with _port_lock:
        for _ in range(50):
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            try:
                s.bind((host, 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _recent_ports:
                _recent_ports.add(port)
                return port
        return port


def run_portico(args, cwd=None, timeout=15, env=None, input=None, binary=None):
    """Run the binary with CLI arguments; return (rc, stdout, stderr) as text."""
    cmd = [binary or PORTICO_BIN] + [str(a) for a in args]
    e = dict(os.environ)
    if env:
        e.update(env)
    try:
        cp = subprocess.run(cmd, cwd=cwd, env=e, input=input, capture_output=True,
                            timeout=timeout)
    except FileNotFoundError:
        pytest.fail("portico binary not found at %s (run `make`)" % cmd[0])
    except subprocess.TimeoutExpired as ex:
        pytest.fail("%s timed out after %s s; stderr: %r" % (cmd, timeout, ex.stderr))
    return (cp.returncode, cp.stdout.decode("utf-8", "replace"),
            cp.stderr.decode("utf-8", "replace"))


def write_files(base, files):
    for rel, text in (files or {}).items():
        path = os.path.join(str(base), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        mode = "wb" if isinstance(text, bytes) else "w"
        with open(path, mode) as f:
            f.write(text)


def conf_test(tmp_path, text, files=None, args=("-t",), name="conf/portico.conf",
              env=None):
    """Write `text` to PREFIX/conf/portico.conf (plus extra `files`), create
    PREFIX/logs, run `portico -p PREFIX/ -c PREFIX/conf/portico.conf -t`.
    Returns (rc, stdout, stderr, conf_path). Placeholder @PREFIX@ is replaced."""
    prefix = str(tmp_path)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    os.makedirs(os.path.join(prefix, "conf"), exist_ok=True)
    sub = lambda t: t.replace("@PREFIX@", prefix) if isinstance(t, str) else t
    write_files(prefix, {k: sub(v) for k, v in (files or {}).items()})
    conf_path = os.path.join(prefix, name)
    write_files(prefix, {name: sub(text)})
    rc, out, err = run_portico(["-p", prefix + "/", "-c", conf_path] + list(args), env=env)
    return rc, out, err, conf_path


class HttpResponse:
    def __init__(self, status, reason, headers, body, version=11):
        self.status = status
        self.reason = reason
        self.headers = headers      # http.client.HTTPMessage (case-insensitive get)
        self.body = body
        self.version = version

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<HttpResponse %d %r %r>" % (self.status, dict(self.headers.items()), self.body[:200])


def http_get(url, headers=None, method="GET", body=None, timeout=5.0):
    """One request with http.client (no redirects followed). Returns HttpResponse."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    target = u.path or "/"
    if u.query:
        target += "?" + u.query
    hdrs = dict(headers or {})
    skip_host = any(k.lower() == "host" for k in hdrs)
    try:
        conn.putrequest(method, target, skip_host=skip_host, skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        if body is not None:
            if not any(k.lower() == "content-length" for k in hdrs):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if isinstance(body, bytes) else body.encode())
        else:
            conn.endheaders()
        r = conn.getresponse()
        data = r.read()
        return HttpResponse(r.status, r.reason, r.headers, data, r.version)
    finally:
        conn.close()


def raw_request(port, data, timeout=5.0, host="127.0.0.1", until_close=True,
                shut_write=False):
    """Send raw bytes, return every byte received until the peer closes (or
    until `timeout` passes with nothing new). With until_close=False, return
    after the first response that parse_responses() sees complete."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    out = b""
    try:
        if data:
            s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
            if not until_close:
                try:
                    if parse_responses(out, strict=True):
                        break
                except ValueError:
                    pass
    finally:
        s.close()
    return out


def _tcp_server_side(sock):
    """(inode, rx_queue) of the server's end of `sock`, a connected IPv4
    loopback client socket, from /proc/net/tcp; None when not listed. The
    inode is 0 while the connection waits in the listen backlog (nobody
    accepted it yet); rx_queue is what the server has not read yet."""
    cport = sock.getsockname()[1]
    sport = sock.getpeername()[1]
    try:
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return None
    for row in rows:
        col = row.split()
        if len(col) < 10:
            continue
        if int(col[1].split(":")[1], 16) == sport and int(col[2].split(":")[1], 16) == cport:
            return int(col[9]), int(col[4].split(":")[1], 16)
    return None


def wait_server_read(sock, timeout=20.0):
    """Wait until the server has accepted the connection of client socket
    `sock` and read every byte sent on it so far (instead of sleeping and
    hoping). Fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = _tcp_server_side(sock)
        if st and st[0] != 0 and st[1] == 0:
            return
        time.sleep(0.02)
    pytest.fail("server did not accept and read the connection within %.0f s (%r)"
                % (timeout, st))


def connection_closed(sock, timeout=3.0):
    """True when the peer closes `sock` (EOF or reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class RawResponse:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # list of (name, value), order kept
        self.body = body
        self.raw = raw

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "<RawResponse %s %d %r>" % (self.version, self.status, self.raw[:300])


def parse_responses(data, head=False, strict=False):
    """Split raw bytes into HTTP/1.x responses (Content-Length, chunked, or
    read-to-close for the last one). `head` may be a bool or a list of bools
    (one per response) telling which answered a HEAD. With strict=True a
    truncated last response raises ValueError instead of being returned."""
    res = []
    pos = 0
    i = 0
    while pos < len(data):
        is_head = head[i] if isinstance(head, (list, tuple)) else head
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            if strict:
                raise ValueError("truncated header")
            break
        head_blob = data[pos:end].decode("latin-1")
        lines = head_blob.split("\r\n")
        m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise ValueError("bad status line %r" % lines[0])
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers.append((k, v.strip()))
        status = int(m.group(2))
        body_start = end + 4
        hmap = {k.lower(): v for k, v in headers}
        if is_head or status in (204, 304) or 100 <= status < 200:
            body = b""
            nxt = body_start
        elif "chunked" in hmap.get("transfer-encoding", "").lower():
            body = b""
            p = body_start
            while True:
                le = data.find(b"\r\n", p)
                if le < 0:
                    if strict:
                        raise ValueError("truncated chunk")
                    p = len(data)
                    break
                size = int(data[p:le].split(b";")[0], 16)
                p = le + 2
                if size == 0:
                    te = data.find(b"\r\n\r\n", p - 2)
                    p = (te + 4) if te >= 0 else len(data)
                    break
                body += data[p:p + size]
                p += size + 2
            nxt = p
        elif "content-length" in hmap:
            n = int(hmap["content-length"])
            if strict and len(data) - body_start < n:
                raise ValueError("truncated body")
            body = data[body_start:body_start + n]
            nxt = body_start + n
        else:
            body = data[body_start:]
            nxt = len(data)
        res.append(RawResponse(m.group(1), status, m.group(3) or "", headers, body,
                               data[pos:nxt]))
        pos = nxt
        i += 1
    return res


def _pids_children(ppid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...
        rest = st[st.rfind(")") + 2:].split()
        if len(rest) > 1 and int(rest[1]) == ppid and rest[0] != "Z":
            kids.append(int(d))
    return sorted(kids)


def _can_connect(target, timeout=0.5):
    kind, addr = target
    fam = {"unix": socket.AF_UNIX, "v6": socket.AF_INET6, "v4": socket.AF_INET}[kind]
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


_LISTEN_RE = re.compile(r"(?m)^[ \t]*listen[ \t]+([^;\s]+)")


def listen_targets(conf_text):
    """Addresses a config's `listen` directives should accept on."""
    out = []
    for spec in _LISTEN_RE.findall(conf_text):
        spec = spec.strip("'\"")
        if spec.startswith("unix:"):
            out.append(("unix", spec[5:]))
            continue
        m = re.match(r"^\[([^\]]+)\](?::(\d+))?$", spec)
        if m:
            host = m.group(1)
            if host == "::":
                host = "::1"
            out.append(("v6", (host, int(m.group(2) or 80))))
            continue
        if spec.isdigit():
            out.append(("v4", ("127.0.0.1", int(spec))))
            continue
        host, _, port = spec.rpartition(":")
        if not host:
            continue
        if not port.isdigit():
            continue
        if host in ("*", "0.0.0.0", "localhost"):
            host = "127.0.0.1"
        out.append(("v4", (host, int(port))))
    return out


_DIRECTIVE_SET_RE = lambda name: re.compile(r"(?m)^[ \t]*%s[ \t;]" % re.escape(name))


def _sets(text, name):
    return bool(_DIRECTIVE_SET_RE(name).search(text))


def _sanitizer_lines(text):
    return [ln for ln in text.splitlines() if any(p in ln for p in SANITIZER_PATTERNS)]


# --------------------------------------------------------------------------
# the Portico process
# --------------------------------------------------------------------------

class Portico:
    """One Portico master running in the foreground in a temp prefix."""

    def __init__(self, prefix, binary=None):
        self.prefix = str(prefix)
        self.binary = binary or PORTICO_BIN
        self.proc = None
        self.conf_text = ""
        self.ports = {}
        self.port = None
        self.allow_emerg = False
        self.allow_alert = False
        self.allowed_lines = set()
        self.workers_expected = 1
        self.extra_ports = []
        self._stderr_f = None
        self._stopped = False
        self.subst = {}
        os.makedirs(os.path.join(self.prefix, "logs"), exist_ok=True)
        os.makedirs(os.path.join(self.prefix, "conf"), exist_ok=True)

    # ---- config text ----
    def _substitute(self, text):
        def rep(m):
            name = m.group(1)
            if name == "PREFIX":
                return self.prefix
            if name in self.subst:
                return str(self.subst[name])
            if name.startswith("PORT"):
                if name not in self.ports:
                    self.ports[name] = free_port()
                return str(self.ports[name])
            return m.group(0)
        out = re.sub(r"@([A-Z][A-Z0-9_]*)@", rep, text)
        self.port = self.ports.get("PORT", self.port)
        return out

    def build_conf(self, text, workers=1, prelude=True):
        text = self._substitute(text)
        if not prelude:
            return text
        head = []
        if not _sets(text, "daemon"):
            head.append("daemon off;")
        if not _sets(text, "master_process"):
            head.append("master_process on;")
        if not re.search(r"(?m)^\s*error_log[ \t]", _main_context(text)):
            head.append("error_log logs/error.log info;")
        if not _sets(text, "pid"):
            head.append("pid logs/portico.pid;")
        if os.geteuid() == 0 and not _sets(_main_context(text), "user"):
            # as root, workers would switch to nobody and lose access to the
            # private temp prefix (pytest makes it 0700)
            head.append("user root;")
        if not _sets(text, "worker_processes"):
            head.append("worker_processes %s;" % workers)
        tail = ""
        if not re.search(r"(?m)^\s*events\s*\{", text):
            tail = "\nevents { worker_connections 1024; }\n"
        return "\n".join(head) + "\n" + text + tail

    @property
    def conf_path(self):
        return os.path.join(self.prefix, "conf", "portico.conf")

    def url(self, port=None, path="/", host="127.0.0.1"):
        if port is None:
            port = self.port
        elif isinstance(port, str):
            port = self.ports[port]
        if not path.startswith("/"):
            path = "/" + path
        return "http://%s:%d%s" % (host, port, path)

    # ---- process ----
    def start(self, conf, workers=1, prelude=True, wait=True, extra_ports=(), files=None,
              args=(), env=None, subst=None):
        self.subst.update(subst or {})
        self.workers_expected = _workers_number(workers)
        if files:
            write_files(self.prefix, {k: self._substitute(v) if isinstance(v, str) else v
                                      for k, v in files.items()})
        self.conf_text = self.build_conf(conf, workers, prelude)
        m = re.search(r"(?m)^\s*worker_processes\s+(\S+?);", self.conf_text)
        if m:
            self.workers_expected = _workers_number(m.group(1))
        self.extra_ports = list(extra_ports)
        with open(self.conf_path, "w") as f:
            f.write(self.conf_text)
        self._stderr_f = open(os.path.join(self.prefix, "logs", "stderr.log"), "ab")
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        if env:
            e.update(env)
        cmd = [self.binary, "-p", self.prefix + "/", "-c", "conf/portico.conf"] + list(args)
        try:
            self.proc = subprocess.Popen(cmd, stdout=self._stderr_f, stderr=self._stderr_f,
                                         stdin=subprocess.DEVNULL, env=e, cwd=self.prefix)
        except FileNotFoundError:
            pytest.fail("portico binary not found at %s (run `make`)" % self.binary)
        if wait:
            self.wait_ready()
        return self

    def _targets(self):
        t = listen_targets(self.conf_text)
        for p in self.extra_ports:
            t.append(p if isinstance(p, tuple) else ("v4", ("127.0.0.1", int(p))))
        return t

    def diagnostics(self):
        return ("\n--- error.log ---\n%s\n--- stderr ---\n%s" %
                (self.error_log()[-6000:], self.stderr_text()[-4000:]))

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        pidfile = self.pid_file()
        targets = self._targets()
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                pytest.fail("portico exited with status %s during startup%s" %
                            (rc, self.diagnostics()))
            if (pidfile is None or _read_pid(pidfile)) and \
                    all(_can_connect(t) for t in targets):
                return
            time.sleep(0.05)
        pending = [t for t in targets if not _can_connect(t)]
        self.kill()
        pytest.fail("portico not ready within %.0f s (pid file %s: %s, not accepting: %s)%s" %
                    (timeout, pidfile, bool(pidfile and _read_pid(pidfile)), pending,
                     self.diagnostics()))

    def pid_file(self):
        m = re.search(r"(?m)^\s*pid\s+([^;\s]+)\s*;", self.conf_text)
        if not m:
            return None
        p = m.group(1).strip("'\"")
        if p == "off":
            return None
        return p if os.path.isabs(p) else os.path.join(self.prefix, p)

    @property
    def pid(self):
        pf = self.pid_file()
        if pf:
            v = _read_pid(pf)
            if v:
                return v
        return self.proc.pid if self.proc else None

    def workers(self):
        """Pids of the master's children (workers)."""
        return _pids_children(self.proc.pid) if self.proc else []

    def wait_workers(self, n=None, timeout=START_TIMEOUT, exclude=()):
        n = self.workers_expected if n is None else n
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            w = [p for p in self.workers() if p not in exclude]
            if len(w) >= n:
                return w
            time.sleep(0.05)
        pytest.fail("expected %d workers, have %s%s" % (n, self.workers(), self.diagnostics()))

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def reload(self, conf, expect_ok=True, workers=None, prelude=True, timeout=START_TIMEOUT,
               files=None):
        """Rewrite the config, HUP the master. expect_ok: wait until new workers
        (pids not seen before) are up and every listen port accepts. Otherwise
        wait until a new [emerg] line is logged and keep that line allowed.
        Returns the error-log text written during the reload."""
        before = set(self.workers())
        log_off = len(self.error_log())
        if files:
            write_files(self.prefix, {k: self._substitute(v) if isinstance(v, str) else v
                                      for k, v in files.items()})
        wk = workers if workers is not None else self.workers_expected
        new_text = self.build_conf(conf, wk, prelude)
        with open(self.conf_path, "w") as f:
            f.write(new_text)
        self.signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        if expect_ok:
            self.conf_text = new_text
            m = re.search(r"(?m)^\s*worker_processes\s+(\S+?);", new_text)
            self.workers_expected = _workers_number(m.group(1)) if m else _workers_number(wk)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail("master exited during reload%s" % self.diagnostics())
                new = [p for p in self.workers() if p not in before]
                if len(new) >= self.workers_expected and all(_can_connect(t) for t in self._targets()):
                    return self.error_log()[log_off:]
                fresh = self.error_log()[log_off:]
                if "[emerg]" in fresh:
                    pytest.fail("reload failed:%s" % self.diagnostics())
                time.sleep(0.05)
            pytest.fail("reload: new workers not up within %.0f s (before %s, now %s)%s" %
                        (timeout, sorted(before), self.workers(), self.diagnostics()))
        else:
            while time.monotonic() < deadline:
                fresh = self.error_log()[log_off:]
                lines = [ln for ln in fresh.splitlines() if "[emerg]" in ln]
                if lines:
                    self.allowed_lines.update(lines)
                    time.sleep(0.2)   # let the master settle
                    return fresh
                time.sleep(0.05)
            pytest.fail("reload of a broken config logged no [emerg]%s" % self.diagnostics())

    def stop(self, sig=None, timeout=STOP_TIMEOUT, check=True):
        """Graceful stop (QUIT by default); KILL and fail after `timeout`."""
        sig = _signal_mod.SIGQUIT if sig is None else sig
        if self.proc is None or self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kids = self.workers()
                self.kill()
                if check:
                    pytest.fail("portico did not exit within %.0f s after %s (workers %s)%s" %
                                (timeout, signal.Signals(sig).name, kids, self.diagnostics()))
        if self._stderr_f:
            self._stderr_f.close()
            self._stderr_f = None

    def kill(self):
        if self.proc is None:
            return
        kids = _pids_children(self.proc.pid)
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._stopped = True

    # ---- logs ----
    def _read(self, rel):
        path = rel if os.path.isabs(rel) else os.path.join(self.prefix, rel)
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def error_log(self, name="logs/error.log"):
        return self._read(name)

    def access_log(self, name="logs/access.log"):
        return self._read(name)

    def access_lines(self, n, name="logs/access.log", timeout=20.0):
        """The access log's lines once it has at least `n` (a worker writes a
        request's line just after the response went out, so a client can see
        the response first). Returns what is there after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.access_log(name).splitlines()
            if len(lines) >= n or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def stderr_text(self):
        return self._read("logs/stderr.log")

    def check_logs(self):
        """Problems to report at teardown (empty list when clean)."""
        problems = []
        text = self.error_log()
        for ln in text.splitlines():
            if ln in self.allowed_lines:
                continue
            if "[alert]" in ln and not self.allow_alert:
                problems.append(ln)
            elif "[emerg]" in ln and not self.allow_emerg:
                problems.append(ln)
        problems += _sanitizer_lines(text)
        err = self.stderr_text()
        san = _sanitizer_lines(err)
        if san or "Sanitizer" in err:
            problems.append("sanitizer output on stderr:\n" + err[-4000:])
        return problems


def _main_context(text):
    """Text of the main context only (block contents removed)."""
    out, depth = [], 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _workers_number(w):
    if str(w) == "auto":
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:
            return os.cpu_count() or 1
    try:
        return int(w)
    except ValueError:
        return 1


def _read_pid(path):
    try:
        with open(path) as f:
            s = f.read().strip()
        return int(s) if s.isdigit() else None
    except OSError:
        return None


@pytest.fixture
def portico(tmp_path):
    """Factory: p = portico(conf_text, workers=1, ...) -> started Portico."""
    instances = []

    def start(conf, workers=1, prelude=True, wait=True, allow_emerg=False, allow_alert=False,
              extra_ports=(), files=None, subst=None, args=(), env=None, binary=None):
        prefix = tmp_path / ("portico%d" % len(instances) if instances else "portico")
        prefix.mkdir(parents=True, exist_ok=True)
        p = Portico(prefix, binary=binary)
        p.allow_emerg = allow_emerg
        p.allow_alert = allow_alert
        instances.append(p)
        return p.start(conf, workers=workers, prelude=prelude, wait=wait,
                       extra_ports=extra_ports, files=files, args=args, env=env, subst=subst)

    yield start

    problems = []
    for p in instances:
        try:
            p.stop()
        except pytest.fail.Exception as ex:
            problems.append(str(ex))
        for pr in p.check_logs():
            problems.append("%s: %s" % (p.prefix, pr))
    if problems:
        pytest.fail("portico teardown found problems:\n" + "\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------

class ReceivedRequest:
    def __init__(self, raw, method, target, version, headers, body):
        self.raw = raw              # every byte of this request as received
        self.method = method
        self.target = target
        self.path = target.split("?", 1)[0]
        self.version = version
        self.headers = headers      # list of (name, value), as received
        self.body = body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "<ReceivedRequest %r>" % self.raw[:300]


class _ConnReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def read_until(self, delim, limit=1 << 20):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out, self.buf = self.buf[:i + len(delim)], self.buf[i + len(delim):]
                return out
            if len(self.buf) > limit:
                raise ValueError("too long")
            self._fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def read_request(reader):
    """Read one HTTP/1.x request; returns ReceivedRequest (raises EOFError on close)."""
    head = reader.read_until(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, target, version = (parts + ["", "", ""])[:3]
    headers = []
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers.append((k, v.strip()))
    raw = head
    body = b""
    hmap = {}
    for k, v in headers:
        hmap.setdefault(k.lower(), v)
    if "chunked" in hmap.get("transfer-encoding", "").lower():
        while True:
            line = reader.read_until(b"\r\n")
            raw += line
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    t = reader.read_until(b"\r\n")
                    raw += t
                    if t == b"\r\n":
                        break
                break
            data = reader.read_exact(size + 2)
            raw += data
            body += data[:-2]
    elif "content-length" in hmap:
        body = reader.read_exact(int(hmap["content-length"]))
        raw += body
    return ReceivedRequest(raw, method, target, version, headers, body)


def http_response(status=200, body=b"", headers=None, reason=None, content_type="text/plain"):
    reasons = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
               302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
               403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
               500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
               504: "Gateway Timeout"}
    if isinstance(body, str):
        body = body.encode()
    h = [("Content-Type", content_type)] if content_type else []
    h += list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in h) \
            and status not in (204, 304):
        h.append(("Content-Length", str(len(body))))
    out = "HTTP/1.1 %d %s\r\n" % (status, reason or reasons.get(status, "Status"))
    out += "".join("%s: %s\r\n" % kv for kv in h) + "\r\n"
    return out.encode("latin-1") + body


def echo_payload(req, backend=None):
    merged = {}
    for k, v in req.headers:
        merged[k] = merged[k] + ", " + v if k in merged else v
    return json.dumps({
        "method": req.method, "path": req.path, "target": req.target,
        "version": req.version, "headers": merged,
        "header_list": [[k, v] for k, v in req.headers],
        "body": req.body.decode("utf-8", "replace"),
        "backend": backend.name if backend else None,
    }).encode()


class Backend:
    """A threaded HTTP/1.1 server on loopback (or a unix socket).

    handler(req, conn, backend) -> bytes to send (a full response), or None
    when it wrote to `conn` itself; raise _Close to close the connection.
    Every request is recorded in .requests (and raw bytes of each connection
    in .connections_raw)."""

    def __init__(self, handler, name="backend", unix_path=None, host="127.0.0.1"):
        self.handler = handler
        self.name = name
        self.requests = []
        self.connections = 0
        self.unix_path = unix_path
        self.host = host
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks = []
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.port = None
            self.path = unix_path
        else:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(fam, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, 0))
            self.port = self.sock.getsockname()[1]
            self.path = None
        self.sock.listen(256)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        """host:port (or unix:path) for proxy_pass / upstream server lines."""
        if self.unix_path:
            return "unix:" + self.unix_path
        return "%s:%d" % (self.host if ":" not in self.host else "[%s]" % self.host, self.port)

    @property
    def url(self):
        return "http://" + self.addr

    def _serve(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self._lock:
                if self._stop.is_set():
                    # close() already ran (or is running): it will not see
                    # this socket in _socks, so drop it here
                    c.close()
                    break
                self.connections += 1
                self._socks.append(c)
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        # close() may shut this socket down at any moment (a test stopping a
        # backend while connections are open): every call on it, this first
        # one included, can raise OSError, and that just ends the connection
        try:
            c.settimeout(30)
        except OSError:
            return
        reader = _ConnReader(c)
        try:
            while not self._stop.is_set():
                try:
                    req = read_request(reader)
                except (EOFError, ConnectionError, socket.timeout, ValueError, OSError):
                    break
                with self._lock:
                    self.requests.append(req)
                try:
                    out = self.handler(req, c, self)
                except _Close:
                    break
                if out:
                    if req.method == "HEAD":      # a HEAD response has no body
                        out = out[:out.find(b"\r\n\r\n") + 4]
                    c.sendall(out)
                if (req.header("connection") or "").lower() == "close" or req.version == "HTTP/1.0":
                    break
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def wait_requests(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= n:
                return self.requests
            time.sleep(0.02)
        raise AssertionError("backend got %d requests, expected %d" % (len(self.requests), n))

    @property
    def last(self):
        return self.requests[-1] if self.requests else None

    def close(self):
        with self._lock:
            # under the lock: the accept loop either registered its socket
            # before this (closed below) or sees _stop and closes it itself
            self._stop.set()
            socks, self._socks = self._socks, []
        try:
            self.sock.close()
        except OSError:
            pass
        for c in socks:
            try:
                # shutdown wakes a handler thread blocked in recv on it
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        self.thread.join(2)
        if self.unix_path:
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass


class _Close(Exception):
    pass


def make_echo_backend(name="echo", **kw):
    return Backend(lambda req, c, b: http_response(200, echo_payload(req, b),
                                                   content_type="application/json"),
                   name=name, **kw)


def make_slow_backend(delay, body=b"slow", name="slow", body_delay=0.0):
    def h(req, c, b):
        time.sleep(delay)
        if body_delay:
            c.sendall(http_response(200, b"", headers={"Content-Length": str(len(body))}))
            time.sleep(body_delay)
            c.sendall(body)
            return None
        return http_response(200, body)
    return Backend(h, name=name)


def make_chunked_backend(chunks=(b"hello ", b"chunked ", b"world"), delay=0.0, trailers=None,
                         name="chunked"):
    def h(req, c, b):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for ch in chunks:
            ch = ch.encode() if isinstance(ch, str) else ch
            c.sendall(b"%x\r\n%s\r\n" % (len(ch), ch))
            if delay:
                time.sleep(delay)
        tr = "".join("%s: %s\r\n" % kv for kv in (trailers or {}).items()).encode()
        c.sendall(b"0\r\n" + tr + b"\r\n")
        return None
    return Backend(h, name=name)


def make_dying_backend(mode="mid_body", name="dying"):
    """Closes mid-response. mode: 'mid_body' (headers + half of the announced
    body), 'mid_headers' (part of the header block), 'before_response'
    (reads the request, closes without a byte), 'mid_chunked'."""
    def h(req, c, b):
        if mode == "mid_body":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
                      + b"x" * 40)
        elif mode == "mid_headers":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl")
        elif mode == "mid_chunked":
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabcd")
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Close()
    return Backend(h, name=name)


def make_status_backend(code, body=None, headers=None, name="status"):
    def h(req, c, b):
        return http_response(code, body if body is not None else "status %d\n" % code,
                             headers=headers)
    return Backend(h, name=name)


class WsEchoBackend:
    """WebSocket echo server (python3-websockets) in its own thread.
    .requests keeps the handshake request headers of each connection."""

    def __init__(self, host="127.0.0.1"):
        import websockets  # Debian python3-websockets
        self.host = host
        self.port = free_port(host)
        self.requests = []
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error = None
        self._websockets = websockets
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("websocket backend did not start")
        if self._error:
            raise self._error

    async def _echo(self, ws, path=None):
        hdrs = getattr(ws, "request_headers", None)
        if hdrs is None and getattr(ws, "request", None) is not None:
            hdrs = ws.request.headers
        self.requests.append({"path": path if path is not None else getattr(ws, "path", None),
                              "headers": list(hdrs.raw_items()) if hdrs is not None else []})
        try:
            async for msg in ws:
                await ws.send(msg)
        except Exception:
            pass

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def main():
            self._stop_fut = self.loop.create_future()
            try:
                async with self._websockets.serve(self._echo, self.host, self.port):
                    self._ready.set()
                    await self._stop_fut
            except Exception as ex:  # pragma: no cover
                self._error = ex
                self._ready.set()
        self.loop.run_until_complete(main())

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    @property
    def url(self):
        return "ws://%s:%d" % (self.host, self.port)

    def close(self):
        def done():
            if not self._stop_fut.done():
                self._stop_fut.set_result(None)
        try:
            self.loop.call_soon_threadsafe(done)
        except RuntimeError:
            pass
        self.thread.join(5)


@pytest.fixture
def backends():
    """Factory for any backend: backends(handler) -> Backend; closed at teardown."""
    made = []

    def mk(handler, **kw):
        b = Backend(handler, **kw)
        made.append(b)
        return b
    mk.track = made.append
    yield mk
    for b in made:
        b.close()


@pytest.fixture
def echo_backend(backends):
    b = make_echo_backend()
    backends.track(b)
    return b


@pytest.fixture
def slow_backend(backends):
    def mk(delay, **kw):
        b = make_slow_backend(delay, **kw)
        backends.track(b)
        return b
    return mk


@pytest.fixture
def chunked_backend(backends):
    def mk(chunks=(b"hello ", b"chunked ", b"world"), **kw):
        b = make_chunked_backend(chunks, **kw)
        backends.track(b)
        return b
    return mk


@pytest.fixture
def dying_backend(backends):
    def mk(mode="mid_body", **kw):
        b = make_dying_backend(mode, **kw)
        backends.track(b)
        return b
    return mk


@pytest.fixture
def status_backend(backends):
    def mk(code, **kw):
        b = make_status_backend(code, **kw)
        backends.track(b)
        return b
    return mk


@pytest.fixture
def short_tmp():
    """A short directory under /tmp (unix socket paths must stay < 108 bytes)."""
    d = tempfile.mkdtemp(prefix="pt-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def unix_echo_backend(backends, short_tmp):
    b = make_echo_backend(name="unix-echo", unix_path=os.path.join(short_tmp, "echo.sock"))
    backends.track(b)
    return b


@pytest.fixture
def ws_echo_backend():
    b = WsEchoBackend()
    yield b
    b.close()


class TlsFiles:
    def __init__(self, ca, d):
        self.ca = ca                                  # trustme.CA
        self.ca_path = str(d / "ca.pem")
        self.cert_path = str(d / "server.crt")        # leaf + chain
        self.key_path = str(d / "server.key")

    def client_context(self):
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca_path)
        return ctx


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A throwaway CA (python3-trustme) and a server certificate for
    localhost, 127.0.0.1, ::1 and *.test: .cert_path .key_path .ca_path."""
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1", "*.test", "test")
    d = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.private_key_pem.write_to_path(str(d / "server.key"))
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(d / "server.crt"), append=i > 0)
    return TlsFiles(ca, d)
