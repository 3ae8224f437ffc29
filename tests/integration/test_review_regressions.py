"""Regressions found in code review (lifetime on error paths)."""
import socket
import time

import h2.config
import h2.connection

from conftest import http_get


def _h2_open_stream(port, path="/"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", "http"),
                          (":authority", "localhost")], end_stream=True)
    s.sendall(conn.data_to_send())
    return s


def test_h2_client_closes_while_proxying(portico, slow_backend):
    """An HTTP/2 connection closed while a stream waits for its backend: the
    upstream side (connection, timers, peer) must end with the request, not
    fire later on the freed request pool."""
    b = slow_backend(0.6)
    p = portico('''
        http {
            server {
                listen 127.0.0.1:@PORT@ http2;
                location / { proxy_pass http://127.0.0.1:@BPORT@; proxy_read_timeout 1500ms; }
            }
        }''', subst={"BPORT": b.port})
    for i in range(3):
        s = _h2_open_stream(p.port)
        b.wait_requests(i + 1, timeout=20)   # the stream is waiting for the backend
        s.close()
    time.sleep(1.0)              # the backend answers on the orphaned connections
    s = _h2_open_stream(p.port)
    b.wait_requests(4, timeout=20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()                    # reset: EOF with an error
    time.sleep(2.0)              # past proxy_read_timeout
    r = http_get(p.url())
    assert r.status == 200
    log = p.error_log()
    assert "AddressSanitizer" not in log and "AddressSanitizer" not in p.stderr_text()


def test_h2_reset_of_held_stream_closes_upstream(portico, backends):
    """proxy_buffering off, the client stops reading (its socket fills) and then
    resets the stream: the upstream connection must close at once, not when
    the backend finishes (the read timer is off while the writer is full, so
    that could be never)."""
    state = {"closed_at": None}
    size = 16 << 20

    def h(req, c, bb):
        try:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            block = b"r" * 65536
            for _ in range(size // len(block)):
                c.sendall(block)
        except OSError:
            state["closed_at"] = time.monotonic()
        return None
    b = backends(h)
    p = portico('''
        http { server { listen 127.0.0.1:@PORT@ http2;
            location / { proxy_pass http://%s; proxy_buffering off; } } }''' % b.addr)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)   # never read: TCP stalls
    s.connect(("127.0.0.1", p.port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                          (":authority", "localhost")], end_stream=True)
    s.sendall(conn.data_to_send())
    b.wait_requests(1, timeout=20)  # the proxy is relaying (or about to)
    time.sleep(0.5)
    conn.reset_stream(1)
    s.sendall(conn.data_to_send())
    # "at once": the backend's writes fail within moments; the deadline is
    # only generous for a loaded machine running the sanitizer build
    deadline = time.monotonic() + 15.0
    while state["closed_at"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    s.close()
    assert state["closed_at"] is not None, "upstream still open 15 s after RST_STREAM"


def test_h1_send_timeout_while_relaying_closes_upstream(portico, backends):
    """HTTP/1.1 send_timeout fires while the proxy relays an unbuffered body
    to a client that does not read: the request ends at once (408 path) and
    the upstream connection with it, not later on a recycled request pool."""
    state = {"closed_at": None}
    size = 64 << 20

    def h(req, c, bb):
        try:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            block = b"t" * 65536
            for _ in range(size // len(block)):
                c.sendall(block)
        except OSError:
            state["closed_at"] = time.monotonic()
        return None
    b = backends(h)
    p = portico('''
        http { server { listen 127.0.0.1:@PORT@; send_timeout 1s;
            location / { proxy_pass http://%s; proxy_buffering off; }
            location /ok { return 200 "ok"; } } }''' % b.addr)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect(("127.0.0.1", p.port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    # send_timeout is 1 s; a generous margin for a loaded machine
    deadline = time.monotonic() + 20.0
    while state["closed_at"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    s.close()
    assert state["closed_at"] is not None, "upstream still open after send_timeout"
    r = http_get(p.url(path="/ok"))
    assert r.status == 200
    assert "AddressSanitizer" not in p.stderr_text()
