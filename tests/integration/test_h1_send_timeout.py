"""HTTP/1.1 send_timeout while a proxied response is being relayed: the client
stops reading a big response, the timeout ends the request through the
proxy's own handler (not behind its back): the client connection closes, the
backend connection is closed and never handed to the keep-alive pool, and
the next request is served on a fresh backend connection (no sanitizer
report under the ASan build)."""

import socket
import threading
import time

import pytest

from conftest import http_get, http_response

SIZE = 64 << 20


class BigBackend:
    """/big: a 64 MiB body written until the peer goes away (records when and
    on which connection); anything else: a small keep-alive answer naming the
    connection it came on."""

    def __init__(self, backends):
        self.lock = threading.Lock()
        self.big_closed = threading.Event()
        self.big_conn = None
        self.conn_ids = {}
        self.b = backends(self.handle)

    def conn_id(self, c):
        with self.lock:
            return self.conn_ids.setdefault(id(c), len(self.conn_ids) + 1)

    def handle(self, req, c, b):
        cid = self.conn_id(c)
        if req.path.startswith("/big"):
            self.big_conn = cid
            try:
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE)
                block = b"s" * 65536
                for _ in range(SIZE // len(block)):
                    c.sendall(block)
            except OSError:
                self.big_closed.set()
                raise
            return None
        return http_response(200, b"conn %d" % cid)


def read_until_closed(s, deadline):
    """Reads (and drops) until EOF or a reset; returns bytes read, or None
    when the connection is still open at the deadline."""
    got = 0
    s.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            d = s.recv(1 << 20)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return got
        if not d:
            return got
        got += len(d)
    return None


@pytest.mark.parametrize("buffering", ["off", "on"])
def test_send_timeout_ends_relay_and_drops_backend_conn(portico, backends, buffering):
    be = BigBackend(backends)
    p = portico('''
        http {
            upstream app { server %s; keepalive 8; }
            server {
                listen 127.0.0.1:@PORT@;
                send_timeout 1s;
                location / {
                    proxy_pass http://app;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_buffering %s;
                    proxy_max_temp_file_size 0;
                    proxy_read_timeout 30s;
                }
            }
        }''' % (be.b.addr, buffering))

    # the keep-alive pool works: two small requests share one backend connection
    assert http_get(p.url(path="/a")).body == b"conn 1"
    assert http_get(p.url(path="/b")).body == b"conn 1"

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)   # never read: TCP stalls
    s.connect(("127.0.0.1", p.port))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")

    # the backend connection of the stalled response is closed by the proxy
    assert be.big_closed.wait(20), "backend connection still open after send_timeout"
    assert be.big_conn == 1
    # the client connection is closed too (what was queued drains first)
    got = read_until_closed(s, time.monotonic() + 20)
    s.close()
    assert got is not None, "client connection still open after send_timeout"
    assert got < SIZE

    # the next request goes on a new backend connection, never the cut one
    r = http_get(p.url(path="/c"))
    assert r.status == 200 and r.body == b"conn 2"
    assert http_get(p.url(path="/d")).body == b"conn 2"

    log = p.error_log()
    assert "client timed out" in log
    assert "AddressSanitizer" not in log and "AddressSanitizer" not in p.stderr_text()
