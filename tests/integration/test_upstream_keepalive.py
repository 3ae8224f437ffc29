"""Upstream keep-alive: `keepalive N` in an upstream block with
proxy_http_version 1.1 and Connection "": connections reused across
requests (visible at the backend), never after an error or an incomplete
response; keepalive_requests / keepalive_timeout; a pooled connection the
backend closed is replaced transparently for a safe request."""

import socket
import threading
import time

import pytest

from conftest import http_get, http_response, raw_request, parse_responses, echo_payload

def wait(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


KA_CONF = """
    http {
        upstream ka {
            server %s;
            keepalive 8;
            %s
        }
        server {
            listen 127.0.0.1:@PORT@;
            location / {
                proxy_pass http://ka;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
            }
            location /noka/ { proxy_pass http://ka; }
        }
    }"""


class PortBackend:
    """Answers each request with the client port it came from; counts
    connections. behaviour(path) may return 'close' (answer with
    Connection: close), 'truncate' (half a body then close)."""

    def __init__(self, behaviour=None):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.behaviour = behaviour or (lambda path: None)
        self.connections = 0
        self.eofs = 0           # connections the proxy closed (EOF read)
        self.requests = []
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, peer = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.append(c)
            threading.Thread(target=self.conn, args=(c, peer), daemon=True).start()

    def conn(self, c, peer):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        with self.lock:
                            self.eofs += 1
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                line = head.split(b"\r\n")[0].decode()
                path = line.split(" ")[1]
                self.requests.append((path, peer[1], head))
                mode = self.behaviour(path)
                body = str(peer[1]).encode()
                if mode == "truncate":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + body)
                    return
                if mode == "close":
                    c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                              % (len(body), body))
                    return
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        finally:
            c.close()

    def proxy_close_waits(self):
        """Connections to this backend the proxy has not closed yet although
        the backend did (CLOSE_WAIT on the proxy's side, /proc/net/tcp)."""
        n = 0
        with open("/proc/net/tcp") as f:
            for row in f.read().splitlines()[1:]:
                col = row.split()
                if int(col[2].split(":")[1], 16) == self.port and col[3] == "08":
                    n += 1
        return n

    def close_all_idle(self):
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


@pytest.fixture
def port_backend():
    made = []

    def mk(behaviour=None):
        b = PortBackend(behaviour)
        made.append(b)
        return b
    yield mk
    for b in made:
        b.close()


def test_reuse_visible_at_backend(portico, port_backend):
    b = port_backend()
    p = portico(KA_CONF % (b.addr, ""))
    ports = [http_get(p.url(path="/x")).body for _ in range(10)]
    assert len(set(ports)) == 1, ports
    assert b.connections == 1
    # the request had no Connection header at all
    assert b"connection:" not in b.requests[-1][2].lower()
    assert b" HTTP/1.1" in b.requests[-1][2].split(b"\r\n")[0]


def test_no_reuse_without_keepalive_headers(portico, port_backend):
    b = port_backend()
    p = portico(KA_CONF % (b.addr, ""))
    for _ in range(3):
        assert http_get(p.url(path="/noka/")).status == 200
    assert b.connections == 3


def test_not_reused_after_incomplete_response(portico, port_backend):
    b = port_backend(lambda path: "truncate" if path == "/bad" else None)
    p = portico(KA_CONF % (b.addr, ""))
    assert http_get(p.url(path="/ok")).status == 200
    data = raw_request(p.port, b"GET /bad HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    with pytest.raises(ValueError):
        parse_responses(data, strict=True)
    assert http_get(p.url(path="/ok")).status == 200
    # the truncated exchange's connection was not reused
    ports = [r[1] for r in b.requests]
    assert ports[1] == ports[0]        # /bad reused the pooled one
    assert ports[2] != ports[1]        # then a fresh connection
    assert b.connections == 2


def test_backend_connection_close_not_pooled(portico, port_backend):
    b = port_backend(lambda path: "close")
    p = portico(KA_CONF % (b.addr, ""))
    for _ in range(3):
        assert http_get(p.url(path="/")).status == 200
    assert b.connections == 3


def test_keepalive_requests_limit(portico, port_backend):
    b = port_backend()
    p = portico(KA_CONF % (b.addr, "keepalive_requests 3;"))
    for _ in range(7):
        assert http_get(p.url(path="/")).status == 200
    assert b.connections == 3


def test_keepalive_timeout(portico, port_backend):
    b = port_backend()
    p = portico(KA_CONF % (b.addr, "keepalive_timeout 300ms;"))
    assert http_get(p.url(path="/")).status == 200
    # the proxy closes the idle connection after 300 ms (late on a loaded box)
    assert wait(lambda: b.eofs >= 1), "idle upstream connection never closed"
    assert http_get(p.url(path="/")).status == 200
    assert b.connections == 2


def test_pooled_connection_closed_by_backend_is_replaced(portico, port_backend):
    b = port_backend()
    p = portico(KA_CONF % (b.addr, ""))
    assert http_get(p.url(path="/")).status == 200
    b.close_all_idle()          # the backend drops its idle keep-alive connection
    # the proxy notices while the connection idles in its pool (no request
    # in flight on it, which is another test's subject)
    time.sleep(0.1)
    assert wait(lambda: b.proxy_close_waits() == 0)
    for _ in range(3):
        r = http_get(p.url(path="/"))
        assert r.status == 200
    assert b.connections == 2
    assert "[error]" not in p.error_log()


def test_keepalive_with_bodies_and_chunked(portico, backends):
    def h(req, c, b):
        if req.path == "/chunked":
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\r\nabc\r\n0\r\n\r\n")
            return None
        return http_response(200, echo_payload(req, b), content_type="application/json")
    b = backends(h)
    p = portico(KA_CONF % (b.addr, ""))
    for i in range(5):
        r = http_get(p.url(path="/post"), method="POST", body=b"x" * (1000 * i + 1))
        assert r.status == 200
        r = http_get(p.url(path="/chunked"))
        assert r.body == b"abc"
    assert b.connections == 1
