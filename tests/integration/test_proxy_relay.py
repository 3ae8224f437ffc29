"""The body relay's bounds and integrity: large reads are allowed only while
the other side keeps up, so a client that stops reading holds the worker to
proxy_buffers plus one large read, and 64 MiB bodies cross the proxy intact
both ways (Content-Length and chunked, buffering on and off)."""

import hashlib
import os
import socket
import threading
import time

import pytest

ASAN = "asan" in os.environ.get("PORTICO_BIN", "")

_BLOCK = bytes(range(256)) * 4096 + b"\x07"    # 1 MiB + 1: chunk edges move


def pattern(n):
    """Yields n bytes of a fixed pattern in pieces of up to 1 MiB."""
    left = n
    while left:
        k = min(left, len(_BLOCK))
        yield _BLOCK[:k]
        left -= k


def pattern_sha(n):
    h = hashlib.sha256()
    for piece in pattern(n):
        h.update(piece)
    return h.hexdigest()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


class Reader:
    """Buffered socket reader: lines, exact counts, chunked bodies."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def head(self):
        lines = []
        while True:
            ln = self.line()
            if not ln:
                break
            lines.append(ln.decode("latin-1"))
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return lines[0], hdrs

    def exact(self, n, h):
        """Feeds n body bytes to hash h; returns how many came."""
        got = 0
        while got < n:
            if not self.buf:
                try:
                    self.fill()
                except EOFError:
                    return got
            k = min(n - got, len(self.buf))
            h.update(self.buf[:k])
            self.buf = self.buf[k:]
            got += k
        return got

    def chunked(self, h):
        total = 0
        while True:
            size = int(self.line().split(b";")[0], 16)
            if size == 0:
                while self.line():          # trailers
                    pass
                return total
            if self.exact(size, h) != size:
                raise EOFError("chunk cut short")
            total += size
            if self.line() != b"":
                raise ValueError("no CRLF after chunk data")

    def body(self, hdrs, h):
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            return self.chunked(h)
        if "content-length" in hdrs:
            return self.exact(int(hdrs["content-length"]), h)
        got = 0                              # until close
        while True:
            got += len(self.buf)
            h.update(self.buf)
            self.buf = b""
            try:
                self.fill()
            except EOFError:
                return got


class Collect:
    """Stands in for a hash: keeps what it is fed."""

    def __init__(self):
        self.data = bytearray()

    def update(self, b):
        self.data += b


def send_body(sock, n, chunked):
    """Sends n pattern bytes, as uneven chunks when chunked."""
    if not chunked:
        for piece in pattern(n):
            sock.sendall(piece)
        return
    sizes = (1, 4095, 65536, 300000, 1 << 20)
    i = 0
    for piece in pattern(n):
        off = 0
        while off < len(piece):
            k = min(sizes[i % len(sizes)], len(piece) - off)
            i += 1
            sock.sendall(b"%x\r\n" % k + piece[off:off + k] + b"\r\n")
            off += k
    sock.sendall(b"0\r\n\r\n")


class Backend:
    """GET /n/N[/chunked]: N pattern bytes (Content-Length or chunked).
    POST: answers "<sha256> <bytes>" of the body it got. `sent` counts the
    body bytes handed to the kernel for GETs, by N."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sent = {}               # N -> body bytes sent for GET /n/N
        self.finished = set()        # the N fully sent
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def conn(self, c):
        try:
            rd = Reader(c)
            line, hdrs = rd.head()
            method, target = line.split(" ")[:2]
            if method == "GET":
                parts = target.split("/")
                n = int(parts[2])
                chunked = len(parts) > 3 and parts[3] == "chunked"
                if chunked:
                    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                              b"Connection: close\r\n\r\n")
                else:
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                              b"Connection: close\r\n\r\n" % n)
                for piece in pattern(n):
                    if chunked:
                        c.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    else:
                        c.sendall(piece)
                    self.sent[n] = self.sent.get(n, 0) + len(piece)
                if chunked:
                    c.sendall(b"0\r\n\r\n")
                self.finished.add(n)
                return
            h = hashlib.sha256()
            total = rd.body(hdrs, h)
            out = ("%s %d" % (h.hexdigest(), total)).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                      % (len(out), out))
        except (OSError, EOFError, ValueError):
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()


def conf(backend, tmp_path, buffering, extra=""):
    return """
        http { server { listen 127.0.0.1:@PORT@;
            client_max_body_size 0;
            client_body_temp_path %s/body;
            proxy_temp_path %s/proxy;
            location / { proxy_pass http://%s; proxy_http_version 1.1;
                         proxy_buffering %s; proxy_request_buffering %s; %s } } }""" % (
        tmp_path, tmp_path, backend.addr, buffering, buffering, extra)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("buffering", ["on", "off"])
def test_stalled_reader_holds_proxy_buffers_not_the_body(portico, backend, buffering, tmp_path):
    """A client that stops reading: the backend is stopped by backpressure
    (no temp file: proxy_max_temp_file_size 0) and the worker's memory stays
    within proxy_buffers plus one large read, while 200 MiB wait behind."""
    size = 200 << 20
    p = portico(conf(backend, tmp_path, buffering, "proxy_max_temp_file_size 0;"))
    worker = p.wait_workers(1)[0]
    s = socket.create_connection(("127.0.0.1", p.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(60)
    # warm the worker (allocator, buffers) with one full transfer
    s2 = socket.create_connection(("127.0.0.1", p.port))
    s2.settimeout(60)
    s2.sendall(b"GET /n/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (8 << 20))
    rd2 = Reader(s2)
    rd2.head()
    h2 = hashlib.sha256()
    assert rd2.body({"content-length": str(8 << 20)}, h2) == 8 << 20
    s2.close()
    time.sleep(0.3)
    before = rss_kib(worker)

    s.sendall(b"GET /n/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % size)
    # the client reads nothing; wait until the backend cannot send more
    last, still_since = -1, time.monotonic()
    deadline = time.monotonic() + 60
    peak = before
    while time.monotonic() < deadline:
        peak = max(peak, rss_kib(worker))
        sent = backend.sent.get(size, 0)
        if sent != last:
            last, still_since = sent, time.monotonic()
        elif last > 0 and time.monotonic() - still_since > 1.5:
            break
        time.sleep(0.1)
    stalled_at = backend.sent.get(size, 0)
    peak = max(peak, rss_kib(worker))
    assert size not in backend.finished, "backend sent all of it to a client that reads nothing"
    assert stalled_at < size // 2, "backend sent %d bytes to a stalled client" % stalled_at

    rd = Reader(s)
    status, hdrs = rd.head()
    assert status.startswith("HTTP/1.1 200"), status
    h = hashlib.sha256()
    got = rd.body(hdrs, h)
    s.close()
    growth = peak - before
    print("\nstalled reader, proxy_buffering %s: backend stopped after %d KiB; worker RSS "
          "%d -> peak %d KiB (+%d KiB)" % (buffering, stalled_at >> 10, before, peak, growth))
    assert got == size
    assert h.hexdigest() == pattern_sha(size)
    if not ASAN:                        # sanitizer allocations distort RSS
        assert growth < 4 * 1024, "worker grew %d KiB under a stalled reader" % growth


SIZE = 64 << 20


@pytest.mark.timeout(180)
@pytest.mark.parametrize("buffering", ["on", "off"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_64m_download_byte_identical(portico, backend, buffering, framing, tmp_path):
    p = portico(conf(backend, tmp_path, buffering))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.settimeout(60)
    path = "/n/%d%s" % (SIZE, "/chunked" if framing == "chunked" else "")
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
    rd = Reader(s)
    status, hdrs = rd.head()
    assert status.startswith("HTTP/1.1 200"), status
    if framing == "chunked":
        assert "chunked" in hdrs.get("transfer-encoding", ""), hdrs
    else:
        assert hdrs.get("content-length") == str(SIZE), hdrs
    h = hashlib.sha256()
    got = rd.body(hdrs, h)
    s.close()
    assert got == SIZE
    assert h.hexdigest() == pattern_sha(SIZE)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("buffering", ["on", "off"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_64m_upload_byte_identical(portico, backend, buffering, framing, tmp_path):
    p = portico(conf(backend, tmp_path, buffering))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.settimeout(60)
    if framing == "chunked":
        s.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    else:
        s.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % SIZE)
    send_body(s, SIZE, framing == "chunked")
    rd = Reader(s)
    status, hdrs = rd.head()
    assert status.startswith("HTTP/1.1 200"), status
    answer = Collect()
    rd.body(hdrs, answer)
    s.close()
    digest, total = bytes(answer.data).decode().split()
    assert int(total) == SIZE
    assert digest == pattern_sha(SIZE)
