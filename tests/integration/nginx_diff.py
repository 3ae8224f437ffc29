"""Differential harness: the same configuration text served by real nginx
(Debian's /usr/sbin/nginx) and by Portico, the same raw request sent to both,
the answers compared (tests/integration/test_vs_nginx.py).

Both servers proxy to one shared echo backend, whose body is a JSON record of
what it received (request line, header fields, body, framing), so what the
proxy sent upstream is compared as part of the body.

Both servers serve the same document root (made once per test module), so
Last-Modified, ETag and Content-Length of static files are comparable.

What is NOT compared, and why (IGNORED_HEADERS and normalise()):
  * Date         - the clock; the two answers are sent at different instants.
  * Server       - the product token differs by design ("nginx/1.22.1" vs
                   "portico/VERSION"); the same token in the signature of
                   built-in error pages is replaced by "SERVER".
  * the listening port numbers: each server listens on its own free port;
    that number (as a whole word: in a Location, $server_port, a Host the
    backend echoes) becomes "@PORT@" in header values and bodies.
  * nothing else: status line (version, code, reason), every other header
    field and value, the body, the number of answers and whether each is
    complete are compared as they are.
  * Content-Length of a built-in error page: recomputed for the normalised
    body (the signatures differ in length); on a HEAD answer, a length equal
    to a built-in page's is replaced by that page's normalised length.
  * a gzip body (Case gunzip=True) is compared decompressed, without its
    Content-Length (two zlib settings may give different bytes).
  * per Case, `ignore=(...)` names more fields not compared, with the reason
    at the Case (e.g. Expires, which depends on the clock).
  * the order of header fields: HTTP gives no meaning to the order of fields
    with different names (RFC 9110 5.3), so fields are compared as a list
    sorted by lower-cased name, keeping the order of same-named fields. The
    echo backend sorts what it received the same way.
  * the case of header field names (RFC 9110 5.1: case-insensitive).
"""

import gzip
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import Backend, Portico, free_port, _can_connect, _Close as _CloseConn

NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")

IGNORED_HEADERS = {"date", "server"}

# nginx-only lines inside http { }: temp paths and the access log live in the
# test prefix instead of Debian's /var/lib/nginx and /var/log/nginx. They do
# not change how a request is answered.
NGINX_HTTP_ONLY = """\
    client_body_temp_path @PREFIX@/tmp/body;
    proxy_temp_path @PREFIX@/tmp/proxy;
    fastcgi_temp_path @PREFIX@/tmp/fastcgi;
    uwsgi_temp_path @PREFIX@/tmp/uwsgi;
    scgi_temp_path @PREFIX@/tmp/scgi;
"""

# lines both servers get at the top of http { } (what every distribution's
# nginx.conf has; without it nginx's built-in type map is three types)
HTTP_COMMON = """\
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log @PREFIX@/logs/access.log;
"""


def nginx_available():
    return os.access(NGINX_BIN, os.X_OK)


# --------------------------------------------------------------------------
# the echo backend
# --------------------------------------------------------------------------

def _sorted_fields(fields):
    return sorted(([k, v] for k, v in fields), key=lambda kv: kv[0].lower())


def echo_handler(req, conn, backend):
    """JSON of what was received. Special paths (anywhere in the path):
    /__status/NNN answers NNN; /__redirect answers 302 with a Location on the
    backend's own address; /__text answers text/html (for gzip/sub tests)."""
    rec = {
        "line": "%s %s %s" % (req.method, req.target, req.version),
        "headers": _sorted_fields(req.headers),
        "body": req.body.decode("latin-1"),
        "chunked": "chunked" in (req.header("transfer-encoding") or "").lower(),
    }
    body = json.dumps(rec, sort_keys=True).encode()
    status, extra = 200, [("X-Echo", "1")]
    ctype = "application/json"
    if "/__ws" in req.path:
        # a WebSocket-style switch: what was received rides in a header
        # (the tunnel that follows is not compared)
        return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nX-Received: %s\r\n\r\n" % json.dumps(
                    {"line": rec["line"], "headers": rec["headers"]}, sort_keys=True)
                ).encode("latin-1")
    if "/__chunked" in req.path:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n7\r\n chunks\r\n0\r\n\r\n")
        return None
    if "/__hdrs" in req.path:
        return (b"HTTP/1.1 200 OK\r\nServer: backend/9\r\nDate: Thu, 01 Jan 2015 00:00:00 GMT\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\nSet-Cookie: a=1\r\n"
                b"Set-Cookie: b=2; HttpOnly\r\nX-Accel-Expires: 10\r\nX-Pad: avoid\r\n"
                b"X-Empty:\r\nX-Powered-By: app\r\nCache-Control: no-cache\r\n"
                b"Vary: Accept\r\nLink: </a>; rel=preload\r\nContent-Length: 3\r\n\r\nhdr")
    if "/__noreason" in req.path:
        return b"HTTP/1.1 200\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nnr"
    if "/__oddreason" in req.path:
        return (b"HTTP/1.1 299 Custom Thing\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 2\r\n\r\nod")
    if "/__http10close" in req.path:
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
        raise _CloseConn()
    m = re.search(r"/__status/(\d{3})", req.path)
    if m:
        status = int(m.group(1))
    if "/__redirect" in req.path:
        status = 302
        extra.append(("Location", "http://127.0.0.1:%d/moved/there" % backend.port))
    if "/__relredirect" in req.path:
        status = 302
        extra.append(("Location", "/rel/path?x=1"))
    if "/__text" in req.path:
        ctype = "text/html"
        body = (b"<html>" + b"portable text " * 200 + b"</html>")
    if "/__cookie" in req.path:
        extra.append(("Set-Cookie", "a=1; Path=/"))
    reasons = {200: "OK", 302: "Found", 404: "Not Found", 500: "Internal Server Error",
               503: "Service Unavailable", 403: "Forbidden", 204: "No Content"}
    head = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n" % (status, reasons.get(status, "X"), ctype)
    for k, v in extra:
        head += "%s: %s\r\n" % (k, v)
    if status in (204, 304):
        return head.encode() + b"\r\n"
    head += "Content-Length: %d\r\n\r\n" % len(body)
    return head.encode("latin-1") + body


def make_diff_backend():
    return Backend(echo_handler, name="diff-echo")


# --------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------

def _subst(text, mapping):
    def rep(m):
        name = m.group(1)
        if name not in mapping:
            if name.startswith("PORT"):
                mapping[name] = free_port()
            else:
                return m.group(0)
        return str(mapping[name])
    return re.sub(r"@([A-Z][A-Z0-9_]*)@", rep, text)


class Nginx:
    """nginx in the foreground, single process, in its own prefix."""

    def __init__(self, prefix):
        self.prefix = str(prefix)
        self.proc = None
        self.ports = {}
        for d in ("logs", "conf", "tmp"):
            os.makedirs(os.path.join(self.prefix, d), exist_ok=True)

    @property
    def port(self):
        return self.ports["PORT"]

    def start(self, text, subst):
        mapping = dict(subst)
        mapping["PREFIX"] = self.prefix
        mapping.update(self.ports)
        conf = _subst(text, mapping)
        self.ports = {k: v for k, v in mapping.items() if k.startswith("PORT")}
        head = ("daemon off;\nmaster_process off;\nerror_log %s/logs/error.log info;\n"
                "pid %s/logs/nginx.pid;\n" % (self.prefix, self.prefix))
        if os.geteuid() == 0:
            head += "user root;\n"
        self.conf_text = head + conf
        path = os.path.join(self.prefix, "conf", "nginx.conf")
        with open(path, "w") as f:
            f.write(self.conf_text)
        self._err = open(os.path.join(self.prefix, "logs", "stderr.log"), "ab")
        self.proc = subprocess.Popen([NGINX_BIN, "-p", self.prefix + "/", "-c", path,
                                      "-e", os.path.join(self.prefix, "logs", "error.log")],
                                     stdout=self._err, stderr=self._err,
                                     stdin=subprocess.DEVNULL, cwd=self.prefix)
        deadline = time.monotonic() + 10
        targets = [("v4", ("127.0.0.1", p)) for p in self.ports.values()
                   if re.search(r":%d\b" % p, self.conf_text)]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("nginx exited during startup:\n%s\n%s" %
                            (self.log("error.log")[-3000:], self.log("stderr.log")[-3000:]))
            if all(_can_connect(t) for t in targets):
                return self
            time.sleep(0.02)
        self.stop()
        pytest.fail("nginx not ready:\n%s" % self.log("error.log")[-3000:])

    def log(self, name):
        try:
            with open(os.path.join(self.prefix, "logs", name), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_err", None):
            self._err.close()
            self._err = None


# --------------------------------------------------------------------------
# a pair of servers on one config
# --------------------------------------------------------------------------

def wrap_http(body):
    """A corpus config is the inside of http { }; make a whole file."""
    return ("events { worker_connections 256; }\nhttp {\n" + HTTP_COMMON +
            "@NGINX_ONLY@" + body + "\n}\n")


class Pair:
    def __init__(self, base_dir, conf, backend, docroot, extra_subst=None, prepare=None):
        self.base = str(base_dir)
        subst = {"BACKEND": backend.addr, "BACKEND_PORT": backend.port, "DOCROOT": docroot}
        subst.update(extra_subst or {})
        shutil.rmtree(self.base, ignore_errors=True)
        os.makedirs(self.base)
        # one set of ports per server; both read the same text
        self.nginx = Nginx(os.path.join(self.base, "nginx"))
        self.portico = Portico(os.path.join(self.base, "portico"))
        self.portico.subst.update({k: v for k, v in subst.items()})
        if prepare:
            prepare(self.nginx.prefix, conf)
            prepare(self.portico.prefix, conf)
        ntext = conf.replace("@NGINX_ONLY@", NGINX_HTTP_ONLY)
        ptext = conf.replace("@NGINX_ONLY@", "")
        self.nginx.start(ntext, subst)
        try:
            self.portico.start(ptext, workers=1)
        except BaseException:
            self.nginx.stop()
            self.portico.kill()
            raise

    def stop(self):
        problems = []
        self.nginx.stop()
        try:
            self.portico.stop()
        except pytest.fail.Exception as ex:
            problems.append(str(ex))
        problems += self.portico.check_logs()
        return problems


# --------------------------------------------------------------------------
# requests and answers
# --------------------------------------------------------------------------

def build_request(path="/", method="GET", host="example.com", headers=(), body=None,
                  version="HTTP/1.1", close=True, raw=None):
    """Raw bytes of one request. host=None sends no Host field."""
    if raw is not None:
        return raw if isinstance(raw, bytes) else raw.encode("latin-1")
    lines = ["%s %s %s" % (method, path, version) if version else "%s %s" % (method, path)]
    if host is not None:
        lines.append("Host: %s" % host)
    lines += ["%s: %s" % kv for kv in headers]
    if close and version == "HTTP/1.1" and not any(k.lower() == "connection"
                                                    for k, _ in headers):
        lines.append("Connection: close")
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                    for k, _ in headers):
        lines.append("Content-Length: %d" % len(body))
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        out += body if isinstance(body, bytes) else body.encode("latin-1")
    return out


class Answer:
    def __init__(self, version, status, reason, headers, body, complete):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body, self.complete = headers, body, complete

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


def _parse(data, heads, closed):
    """Split bytes into answers; returns (answers, all_complete)."""
    out = []
    pos = 0
    i = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            return out, False
        lines = data[pos:end].decode("latin-1").split("\r\n")
        m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            out.append(Answer("?", 0, lines[0], [], data[pos:], True))
            return out, True
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers.append((k, v.strip()))
        status = int(m.group(2))
        hmap = {k.lower(): v for k, v in headers}
        p = end + 4
        is_head = heads[i] if i < len(heads) else False
        if 100 <= status < 200 and status != 101:
            # an interim answer: keep it, it does not consume a request
            out.append(Answer(m.group(1), status, m.group(3) or "", headers, b"", True))
            pos = p
            continue
        if is_head or status in (101, 204, 304):
            body, nxt, ok = b"", p, True
        elif "chunked" in hmap.get("transfer-encoding", "").lower():
            body, q, ok = b"", p, False
            while True:
                le = data.find(b"\r\n", q)
                if le < 0:
                    break
                try:
                    size = int(data[q:le].split(b";")[0], 16)
                except ValueError:
                    break
                q = le + 2
                if size == 0:
                    te = data.find(b"\r\n\r\n", q - 2)
                    if te >= 0:
                        q, ok = te + 4, True
                    break
                if len(data) < q + size + 2:
                    break
                body += data[q:q + size]
                q += size + 2
            nxt = q if ok else len(data)
        elif "content-length" in hmap:
            n = int(hmap["content-length"])
            body = data[p:p + n]
            ok = len(data) - p >= n
            nxt = p + n
        else:
            body, nxt, ok = data[p:], len(data), closed
        out.append(Answer(m.group(1), status, m.group(3) or "", headers, body, ok))
        if not ok:
            return out, False
        pos = nxt
        i += 1
    return out, True


def exchange(port, data, n=1, heads=(), timeout=5.0, shut_write=False, interim=False,
             tls=False):
    """Send raw bytes; read until `n` final answers are complete (with
    interim, until the first answer of any kind) or the peer closes.
    Returns (answers, closed, raw)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        s = ctx.wrap_socket(s)
    raw = b""
    closed = False
    try:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ans, ok = _parse(raw, heads, False)
            if interim and ans and ok:
                break
            finals = [a for a in ans if a.status >= 200 or a.status in (0, 101)]
            if ok and len(finals) >= n and n > 0:
                break
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, ssl.SSLError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            raw += chunk
    finally:
        s.close()
    answers, _ = _parse(raw, heads, closed)
    return answers, closed, raw


# --------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------

_SIG_RE = re.compile(rb"<hr><center>(?:nginx|portico)(?:/[0-9A-Za-z.\-+~]+)?</center>")


def normalise_bytes(b, port):
    b = _SIG_RE.sub(b"<hr><center>SERVER</center>", b)
    if port:
        b = re.sub(rb"\b%d\b" % port, b"@PORT@", b)
    return b


def normalise_value(v, port):
    if port:
        v = re.sub(r"\b%d\b" % port, "@PORT@", v)
    return v


_sigs = {}


def signatures(binary):
    """The product tokens a built-in error page may be signed with:
    ("nginx/1.22.1", "nginx") from `nginx -v` (server_tokens on/off)."""
    if binary not in _sigs:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True)
        m = re.search(r"(nginx|portico)/(\S+)", out.stdout + out.stderr)
        _sigs[binary] = (m.group(0), m.group(1)) if m else ()
    return _sigs[binary]


def builtin_page_len(status, reason, sig):
    title = "%d %s" % (status, reason)
    return len("<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1>"
               "</center>\r\n<hr><center>%s</center>\r\n</body>\r\n</html>\r\n" % (title, title, sig))


def summary(ans, port, ignore=(), gunzip=False, sigs=(), head=False):
    """A comparable picture of one answer. With gunzip, a gzip body is
    compared decompressed and its Content-Length is not compared (two zlib
    settings may give different bytes for the same text)."""
    skip = IGNORED_HEADERS | {h.lower() for h in ignore}
    zipped = gunzip and (ans.header("content-encoding") or "").lower() == "gzip"
    if zipped:
        skip = skip | {"content-length"}
    hdrs = [(k.lower(), normalise_value(v, port)) for k, v in ans.headers
            if k.lower() not in skip]
    hdrs.sort(key=lambda kv: kv[0])
    body = ans.body
    if zipped:
        try:
            body = b"GUNZIPPED:" + gzip.decompress(body)
        except (OSError, EOFError) as ex:
            body = b"BAD GZIP %r" % ex
    nbody = normalise_bytes(body, port)
    if nbody != body and not zipped:
        # the error-page signature and port numbers differ in length: a
        # Content-Length that counted the raw body counts the normalised one
        hdrs = [(k, str(len(nbody)) if k == "content-length" and v == str(len(body)) else v)
                for k, v in hdrs]
    if head and ans.status >= 300 and (ans.header("content-type") or "") == "text/html":
        # a HEAD answer has no body to normalise: a Content-Length that is
        # a built-in page's becomes that page's length signed "SERVER"
        lens = {str(builtin_page_len(ans.status, ans.reason, sg)) for sg in sigs}
        norm = str(builtin_page_len(ans.status, ans.reason, "SERVER"))
        hdrs = [(k, norm if k == "content-length" and v in lens else v) for k, v in hdrs]
    body = nbody
    echo = None
    if ans.header("x-echo") == "1":
        try:
            echo = json.loads(body)
        except ValueError:
            echo = None
    return {
        "status_line": "%s %d %s" % (ans.version, ans.status, ans.reason),
        "headers": hdrs,
        "body": echo if echo is not None else body,
        "complete": ans.complete,
    }


def _head_flags(answers, heads):
    out, i = [], 0
    for a in answers:
        if 100 <= a.status < 200:
            out.append(False)
            continue
        out.append(heads[i] if i < len(heads) else False)
        i += 1
    return out


def compare(case, pair):
    """Send case.request to both servers; return (n_summary, p_summary, diffs)."""
    port_n = pair.nginx.ports[case.port]
    port_p = pair.portico.ports[case.port]
    data_n = case.data.replace(b"@PORT@", str(port_n).encode())
    data_p = case.data.replace(b"@PORT@", str(port_p).encode())
    ans_n, closed_n, raw_n = exchange(port_n, data_n, case.n, case.heads,
                                      shut_write=case.shut_write, interim=case.interim,
                                      tls=case.tls)
    ans_p, closed_p, raw_p = exchange(port_p, data_p, case.n, case.heads,
                                      shut_write=case.shut_write, interim=case.interim,
                                      tls=case.tls)
    sig_n = signatures(NGINX_BIN)
    sig_p = signatures(pair.portico.binary)
    heads_n = _head_flags(ans_n, case.heads)
    heads_p = _head_flags(ans_p, case.heads)
    sn = [summary(a, port_n, case.ignore, case.gunzip, sig_n, h) for a, h in zip(ans_n, heads_n)]
    sp = [summary(a, port_p, case.ignore, case.gunzip, sig_p, h) for a, h in zip(ans_p, heads_p)]
    diffs = []
    if len(sn) != len(sp):
        diffs.append("number of answers: nginx %d, portico %d" % (len(sn), len(sp)))
    for i, (a, b) in enumerate(zip(sn, sp)):
        for key in ("status_line", "complete"):
            if a[key] != b[key]:
                diffs.append("answer %d %s: nginx %r, portico %r" % (i, key, a[key], b[key]))
        ha, hb = a["headers"], b["headers"]
        if ha != hb:
            only_n = [h for h in ha if h not in hb]
            only_p = [h for h in hb if h not in ha]
            diffs.append("answer %d headers: only nginx %r, only portico %r" % (i, only_n, only_p))
        if case.compare_body and a["body"] != b["body"]:
            diffs.append("answer %d body:\n  nginx   %r\n  portico %r" %
                         (i, a["body"] if isinstance(a["body"], dict) else a["body"][:600],
                          b["body"] if isinstance(b["body"], dict) else b["body"][:600]))
    if case.compare_close and closed_n != closed_p:
        diffs.append("connection closed after the answers: nginx %s, portico %s" %
                     (closed_n, closed_p))
    return sn, sp, diffs, (raw_n, raw_p)


class Case:
    """One request (or a pipelined series) sent to both servers."""

    def __init__(self, name, data=None, n=1, heads=None, ignore=(), compare_body=True,
                 compare_close=True, shut_write=False, xfail=None, port="PORT",
                 gunzip=False, expect_silence=False, interim=False, tls=False, **req):
        self.name = name
        self.data = data if data is not None else build_request(**req)
        if isinstance(self.data, str):
            self.data = self.data.encode("latin-1")
        self.n = n
        method = req.get("method", "GET")
        self.heads = heads if heads is not None else [method == "HEAD"] * max(n, 1)
        self.ignore = ignore
        self.compare_body = compare_body
        self.compare_close = compare_close
        self.shut_write = shut_write
        self.xfail = xfail
        self.port = port
        self.gunzip = gunzip
        self.interim = interim     # stop at the first answer, 100 Continue included
        self.tls = tls
        self.expect_silence = expect_silence   # nginx closes without an answer
