"""Accepted connections are registered for reading only (no EPOLLOUT: a fresh
socket is writable, and the edge registration would report costs a loop
iteration per connection); the first write that blocks arms EPOLLOUT. These
tests make the server's writes block on a client that does not read for a
while, then read: the whole response must come through (a write event that
was never armed would stall the response until send_timeout, 120 s here,
far beyond the clients' 30 s deadline). Plain HTTP/1.1 with a static file and
keep-alive after it, the same over TLS (OpenSSL's WANT_WRITE), a sequence of
Connection: close requests, and HTTP/2 (h2c and over TLS) through curl
--limit-rate."""

import hashlib
import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import http_get

SIZE = 8 << 20
BLOB = hashlib.sha256(b"seed").digest() * (SIZE // 32)


def conf(tls_files=None):
    tls = ""
    if tls_files is not None:
        tls = """
        server {
            listen 127.0.0.1:@PORT1@ ssl http2;
            ssl_certificate %s;
            ssl_certificate_key %s;
            send_timeout 120s;
            keepalive_timeout 60s;
            root @PREFIX@/www;
        }""" % (tls_files.cert_path, tls_files.key_path)
    return """
    http {
        server {
            listen 127.0.0.1:@PORT@;
            send_timeout 120s;
            keepalive_timeout 60s;
            root @PREFIX@/www;
        }
        server {
            listen 127.0.0.1:@PORT2@ http2;
            send_timeout 120s;
            root @PREFIX@/www;
        }
        %s
    }""" % tls


def start(portico, tls_files=None):
    return portico(conf(tls_files),
                   files={"www/big.bin": BLOB, "www/small.txt": "small\n"})


def read_response(s, deadline):
    """One Content-Length framed response from s: (head, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            raise AssertionError("no response head in time")
        d = s.recv(65536)
        assert d, "connection closed before the head"
        buf += d
    i = buf.index(b"\r\n\r\n")
    head = buf[:i].decode("latin-1")
    n = None
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            n = int(v.strip())
    assert n is not None, head
    parts, have = [buf[i + 4:]], len(buf) - i - 4
    while have < n:
        if time.monotonic() > deadline:
            raise AssertionError("response stalled at %d of %d bytes" % (have, n))
        d = s.recv(1 << 20)
        assert d, "connection closed at %d of %d bytes" % (have, n)
        parts.append(d)
        have += len(d)
    body = b"".join(parts)
    assert len(body) == n, "%d bytes past the body" % (len(body) - n)
    return head, body


def stall_then_read(s, path, deadline=30.0):
    """Requests path, reads nothing until the server's send must have
    blocked (8 MiB against a 64 KiB receive buffer cannot fit in the socket
    buffers), then reads the response."""
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
    time.sleep(0.5)
    return read_response(s, time.monotonic() + deadline)


def small_sock(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    return s


def test_blocked_write_resumes_then_keepalive(portico):
    p = start(portico)
    s = small_sock(p.port)
    head, body = stall_then_read(s, b"/big.bin")
    assert head.startswith("HTTP/1.1 200"), head
    assert body == BLOB
    # the connection goes on (EPOLLOUT armed now), a second big one too
    head, body = stall_then_read(s, b"/big.bin")
    assert head.startswith("HTTP/1.1 200"), head
    assert body == BLOB
    s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = read_response(s, time.monotonic() + 30)
    assert body == b"small\n"
    s.close()


def test_blocked_write_over_tls(portico, tls_files):
    p = start(portico, tls_files)
    ctx = tls_files.client_context()
    ctx.set_alpn_protocols(["http/1.1"])
    s = ctx.wrap_socket(small_sock(p.ports["PORT1"]), server_hostname="localhost")
    head, body = stall_then_read(s, b"/big.bin")
    assert head.startswith("HTTP/1.1 200"), head
    assert body == BLOB
    s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = read_response(s, time.monotonic() + 30)
    assert body == b"small\n"
    s.close()


def test_connection_close_sequence(portico):
    """New connections one after the other, each answered and closed by the
    server (the request is read at its EPOLLIN, the answer written without
    EPOLLOUT ever being armed)."""
    p = start(portico)
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=30)
        s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        assert data.startswith(b"HTTP/1.1 200"), (i, data[:200])
        assert data.endswith(b"\r\n\r\nsmall\n"), (i, data[-200:])
    r = http_get(p.url(path="/small.txt"))
    assert r.status == 200 and r.body == b"small\n"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize("tls", [False, True])
def test_http2_slow_reader(portico, tls_files, tmp_path, tls):
    p = start(portico, tls_files)
    out = str(tmp_path / "out.bin")
    if tls:
        url = "https://localhost:%d/big.bin" % p.ports["PORT1"]
        args = ["--http2", "--cacert", tls_files.ca_path,
                "--resolve", "localhost:%d:127.0.0.1" % p.ports["PORT1"]]
    else:
        url = "http://127.0.0.1:%d/big.bin" % p.ports["PORT2"]
        args = ["--http2-prior-knowledge"]
    # 8 MiB at 4 MiB/s: the server's writes block again and again
    r = subprocess.run(["curl", "-sS", "-o", out, "-w", "%{http_code} %{http_version}",
                        "--limit-rate", "4M", "--max-time", "60"] + args + [url],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["200", "2"], r.stdout
    with open(out, "rb") as f:
        assert f.read() == BLOB
    os.unlink(out)
