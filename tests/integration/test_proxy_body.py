"""Bodies both ways, streamed with backpressure: Content-Length and chunked
requests (proxy_request_buffering on|off), Expect: 100-continue, 413, large
uploads and downloads with bounded worker memory, server-sent events with
proxy_buffering off."""

import hashlib
import os
import socket
import threading
import time

import pytest

from conftest import (http_get, raw_request, parse_responses, http_response, free_port,
                      make_echo_backend)

BIG = int(os.environ.get("PORTICO_BIG_BYTES", 256 << 20))


def echo(body_backend_req):
    return body_backend_req


def test_content_length_body(portico, echo_backend):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location /on/ { proxy_pass http://%(a)s; }
            location /off/ { proxy_pass http://%(a)s; proxy_request_buffering off; }
        } }""" % {"a": echo_backend.addr})
    body = b"a=1&b=" + b"x" * 100000
    for loc in ("/on/", "/off/"):
        r = http_get(p.url(path=loc), method="POST", body=body)
        assert r.status == 200
        last = echo_backend.last
        assert last.body == body
        assert last.header("content-length") == str(len(body))
        assert last.header("transfer-encoding") is None


@pytest.mark.parametrize("buffering,version,expect_te", [
    ("on", "1.0", False), ("off", "1.1", True), ("on", "1.1", False), ("off", "1.0", False)])
def test_chunked_request_body(portico, echo_backend, buffering, version, expect_te):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; proxy_request_buffering %s;
                         proxy_http_version %s; } } }""" % (echo_backend.addr, buffering, version))
    req = (b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n")
    r = parse_responses(raw_request(p.port, req))[0]
    assert r.status == 200
    got = echo_backend.last
    assert got.body == b"hello, world"
    if expect_te:
        assert got.header("transfer-encoding") == "chunked"
        assert got.header("content-length") is None
    else:
        assert got.header("content-length") == "12"
        assert got.header("transfer-encoding") is None


def test_expect_100_continue(portico, echo_backend):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; } } }""" % echo_backend.addr)
    s = socket.create_connection(("127.0.0.1", p.port))
    s.settimeout(5)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    first = s.recv(100)
    assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(b"hello")
    data = first[25:]
    while b"}" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    assert b"HTTP/1.1 200" in data
    assert echo_backend.last.body == b"hello"
    assert echo_backend.last.header("expect") is None


def test_413(portico, echo_backend):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            client_max_body_size 1k;
            location / { proxy_pass http://%(a)s; }
            location /off/ { proxy_pass http://%(a)s; proxy_request_buffering off; }
        } }""" % {"a": echo_backend.addr})
    r = http_get(p.url(path="/"), method="POST", body=b"x" * 2000)
    assert r.status == 413
    req = (b"POST /off/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"800\r\n" + b"y" * 2048 + b"\r\n0\r\n\r\n")
    data = raw_request(p.port, req)
    assert data.startswith(b"HTTP/1.1 413")
    assert len(echo_backend.requests) == 0 or all(len(q.body) < 2048 for q in echo_backend.requests)


def test_bad_framing_never_reaches_backend(portico, echo_backend):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; } } }""" % echo_backend.addr)
    bad = [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
    ]
    for req in bad:
        data = raw_request(p.port, req)
        assert data[9:10] == b"4", data[:80]
    time.sleep(0.2)
    assert len(echo_backend.requests) == 0


# ---------------------------------------------------------------------------
# big transfers: a raw backend hashing what it gets / streaming what it sends

class HashBackend:
    """POST: reads the body (Content-Length or chunked), answers its sha256.
    GET /big?n=N: sends N bytes of a pattern with Content-Length."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def conn(self, c):
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            method, target = lines[0].split(" ")[:2]
            hdrs = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            if method == "GET":
                n = int(target.split("n=")[1])
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % n)
                block = pattern_block()
                left = n
                while left:
                    k = min(left, len(block))
                    c.sendall(block[:k])
                    left -= k
                return
            h = hashlib.sha256()
            total = 0
            if "content-length" in hdrs:
                left = int(hdrs["content-length"])
                h.update(rest[:left])
                total += len(rest[:left])
                left -= len(rest[:left])
                while left:
                    d = c.recv(min(left, 1 << 20))
                    if not d:
                        break
                    h.update(d)
                    total += len(d)
                    left -= len(d)
            out = ("%s %d" % (h.hexdigest(), total)).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                      % (len(out), out))
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()


_BLOCK = None


def pattern_block():
    global _BLOCK
    if _BLOCK is None:
        _BLOCK = bytes(range(256)) * 4096      # 1 MiB
    return _BLOCK


def pattern_sha(n):
    h = hashlib.sha256()
    block = pattern_block()
    left = n
    while left:
        k = min(left, len(block))
        h.update(block[:k])
        left -= k
    return h.hexdigest()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


class RssSampler:
    def __init__(self, pid):
        self.pid = pid
        self.base = rss_kib(pid)
        self.peak = self.base
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return
            time.sleep(0.05)

    def done(self):
        self.stop = True
        self.t.join(1)
        return self.base, self.peak


@pytest.fixture
def hash_backend():
    b = HashBackend()
    yield b
    b.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("buffering", ["off", "on"])
def test_big_upload(portico, hash_backend, buffering, tmp_path):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            client_max_body_size 0;
            client_body_temp_path %s;
            location / { proxy_pass http://%s; proxy_request_buffering %s; } } }"""
                % (tmp_path, hash_backend.addr, buffering))
    worker = p.wait_workers(1)[0]
    sampler = RssSampler(worker)
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % BIG)
    block = pattern_block()
    left = BIG
    while left:
        k = min(left, len(block))
        s.sendall(block[:k])
        left -= k
    s.settimeout(60)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
        try:
            if parse_responses(data, strict=True):
                break
        except ValueError:
            pass
    s.close()
    base, peak = sampler.done()
    r = parse_responses(data)[0]
    assert r.status == 200, data[:300]
    digest, total = r.body.decode().split()
    assert int(total) == BIG
    assert digest == pattern_sha(BIG)
    print("upload %s: worker RSS base %d KiB, peak %d KiB" % (buffering, base, peak))
    assert peak - base < 8 * 1024, (base, peak)


@pytest.mark.timeout(240)
def test_big_download(portico, hash_backend):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; } } }""" % hash_backend.addr)
    worker = p.wait_workers(1)[0]
    sampler = RssSampler(worker)
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % BIG)
    s.settimeout(60)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: %d" % BIG in head
    h = hashlib.sha256()
    h.update(rest)
    total = len(rest)
    # read slowly at first: backpressure must hold memory down
    for _ in range(20):
        d = s.recv(65536)
        h.update(d)
        total += len(d)
        time.sleep(0.02)
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        h.update(d)
        total += len(d)
    s.close()
    base, peak = sampler.done()
    assert total == BIG
    assert h.hexdigest() == pattern_sha(BIG)
    print("download: worker RSS base %d KiB, peak %d KiB" % (base, peak))
    assert peak - base < 8 * 1024, (base, peak)


def test_sse_streaming_buffering_off(portico, backends):
    gate = threading.Event()
    sent_second = threading.Event()

    def h(req, c, b):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        ev = b"data: one\n\n"
        c.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
        # the next event only after the client saw the first one
        if not gate.wait(5):
            return None
        ev = b"data: two\n\n"
        c.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
        sent_second.set()
        c.sendall(b"0\r\n\r\n")
        return None
    b = backends(h)
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location /events { proxy_pass http://%s; proxy_buffering off;
                               proxy_http_version 1.1; proxy_set_header Connection "";
                               proxy_read_timeout 3600s; } } }""" % b.addr)
    s = socket.create_connection(("127.0.0.1", p.port))
    s.settimeout(5)
    s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"data: one" not in data:
        d = s.recv(4096)
        assert d, data
        data += d
    assert not sent_second.is_set()
    assert b"text/event-stream" in data
    gate.set()
    while b"data: two" not in data:
        d = s.recv(4096)
        assert d
        data += d
    s.close()


def test_x_accel_buffering_no(portico, backends):
    gate = threading.Event()

    def h(req, c, b):
        c.sendall(b"HTTP/1.1 200 OK\r\nX-Accel-Buffering: no\r\nContent-Length: 10\r\n\r\nfirst")
        gate.wait(5)
        c.sendall(b"secnd")
        return None
    b = backends(h)
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; } } }""" % b.addr)
    s = socket.create_connection(("127.0.0.1", p.port))
    s.settimeout(5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"first" not in data:
        d = s.recv(4096)
        assert d
        data += d
    assert b"X-Accel-Buffering" not in data
    gate.set()
    while b"secnd" not in data:
        data += s.recv(4096)
    s.close()


@pytest.mark.parametrize("buffering", ["on", "off"])
def test_client_body_timeout(portico, echo_backend, buffering):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            client_body_timeout 1s;
            location / { proxy_pass http://%s; proxy_request_buffering %s; } } }"""
                % (echo_backend.addr, buffering))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    t0 = time.monotonic()
    s.settimeout(20)
    data = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
    except (ConnectionResetError, socket.timeout):
        pass
    dt = time.monotonic() - t0
    s.close()
    assert 0.8 < dt < 15       # 1 s nominal, late on a loaded machine
    assert b"200 OK" not in data
    # a backend never sees a truncated body as a complete request
    assert all(len(q.body) != 3 for q in echo_backend.requests)


def test_expect_100_continue_streaming(portico, echo_backend):
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; proxy_request_buffering off;
                         proxy_http_version 1.1; } } }""" % echo_backend.addr)
    s = socket.create_connection(("127.0.0.1", p.port))
    s.settimeout(5)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
    first = s.recv(100)
    assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(b"4\r\nabcd\r\n0\r\n\r\n")
    data = first
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    assert b"HTTP/1.1 200" in data
    assert echo_backend.last.body == b"abcd"
    assert echo_backend.last.header("expect") is None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("max_temp,released", [("1024m", True), ("0", False)])
def test_slow_client_spool_releases_backend(portico, backends, max_temp, released, tmp_path):
    """proxy_buffering on: what a slow client cannot take yet goes to a temp
    file, so the backend finishes at once (nginx); proxy_max_temp_file_size 0
    keeps it waiting (backpressure all the way)."""
    size = 32 << 20
    done = threading.Event()

    def h(req, c, b):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = pattern_block()
        left = size
        while left:
            k = min(left, len(block))
            c.sendall(block[:k])
            left -= k
        done.set()
        return None
    b = backends(h)
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            client_body_temp_path %s;
            location / { proxy_pass http://%s; proxy_max_temp_file_size %s; } } }"""
                % (tmp_path, b.addr, max_temp))
    worker = p.wait_workers(1)[0]
    sampler = RssSampler(worker)
    s = socket.create_connection(("127.0.0.1", p.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert done.wait(3) == released
    s.settimeout(30)
    h_ = hashlib.sha256()
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    h_.update(rest)
    total = len(rest)
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        h_.update(d)
        total += len(d)
    s.close()
    base, peak = sampler.done()
    assert total == size
    assert h_.hexdigest() == pattern_sha(size)
    assert done.wait(5)
    assert peak - base < 8 * 1024, (base, peak)
