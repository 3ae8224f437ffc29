"""TLS I/O paths over HTTP/1.1: OpenSSL reads ahead (several records, or a
record and part of the next, come out of one read() and wait inside OpenSSL),
so requests pipelined in one TLS write, bodies spanning many records, a
keep-alive connection that goes idle and comes back, and a proxied upload and
download through TLS on both sides must all come through intact."""

import hashlib
import re
import socket
import ssl
import time

from conftest import http_response


def conf(tls_files, backend_addr, extra=""):
    return """
        http {
            server {
                listen 127.0.0.1:@PORT@ ssl;
                ssl_certificate %s;
                ssl_certificate_key %s;
                keepalive_timeout 30s;
                client_max_body_size 0;
                location /r/ { return 200 "r=$request_uri;"; }
                location / {
                    proxy_pass http://%s;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    %s
                }
            }
        }""" % (tls_files.cert_path, tls_files.key_path, backend_addr, extra)


def tls_sock(tls_files, port):
    ctx = tls_files.client_context()
    ctx.set_alpn_protocols(["http/1.1"])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(s, server_hostname="localhost")


class Reader:
    """Reads Content-Length framed responses one after the other."""

    def __init__(self, s):
        self.s = s
        self.buf = b""

    def _recv(self, end):
        if time.monotonic() > end:
            raise AssertionError("no complete response in time")
        d = self.s.recv(1 << 20)
        if not d:
            raise AssertionError("connection closed")
        return d

    def response(self, deadline=20.0):
        end = time.monotonic() + deadline
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv(end)
        i = self.buf.index(b"\r\n\r\n")
        head = self.buf[:i].decode("latin-1")
        status = int(head.split(" ")[1])
        n = int(re.search(r"(?im)^content-length:\s*(\d+)", head).group(1))
        parts = [self.buf[i + 4:]]
        have = len(parts[0])
        while have < n:
            d = self._recv(end)
            parts.append(d)
            have += len(d)
        body = b"".join(parts)
        self.buf = body[n:]
        return status, body[:n]


def test_pipelined_requests_in_one_write(portico, backends, tls_files):
    b = backends(lambda req, c, bb: http_response(200, b"x"))
    p = portico(conf(tls_files, b.addr))
    s = tls_sock(tls_files, p.port)
    n = 40
    # one sendall: the TLS layer cuts it into records; the server's first
    # read() takes several of them at once
    s.sendall(b"".join(b"GET /r/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(n)))
    rd = Reader(s)
    for i in range(n):
        assert rd.response() == (200, b"r=/r/%d;" % i)
    # the connection is still good after the burst
    s.sendall(b"GET /r/end HTTP/1.1\r\nHost: a\r\n\r\n")
    assert rd.response() == (200, b"r=/r/end;")
    s.close()


def test_idle_keepalive_then_next_request(portico, backends, tls_files):
    """After a request the socket is drained and read.ready clears; the next
    request, sent later, must wake the connection (edge-triggered)."""
    b = backends(lambda req, c, bb: http_response(200, b"y"))
    p = portico(conf(tls_files, b.addr))
    s = tls_sock(tls_files, p.port)
    rd = Reader(s)
    for i in range(5):
        s.sendall(b"GET /r/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
        assert rd.response() == (200, b"r=/r/%d;" % i)
        time.sleep(0.2)
    # a request split across two TLS records and two TCP writes
    s.sendall(b"GET /r/split HTTP/1.1\r\nHo")
    time.sleep(0.2)
    s.sendall(b"st: a\r\n\r\n")
    assert rd.response() == (200, b"r=/r/split;")
    s.close()


def test_proxied_upload_and_download_over_tls(portico, backends, tls_files):
    size = 3 << 20
    payload = bytes(range(256)) * (size // 256)
    digest = hashlib.sha256(payload).hexdigest().encode()

    def h(req, c, bb):
        if req.method == "POST":
            return http_response(200, hashlib.sha256(req.body).hexdigest().encode())
        return http_response(200, payload)
    b = backends(h)
    p = portico(conf(tls_files, b.addr, "proxy_request_buffering off;"))
    s = tls_sock(tls_files, p.port)
    rd = Reader(s)
    for _ in range(2):
        s.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
        view = memoryview(payload)
        for off in range(0, size, 100000):       # many writes, many records
            s.sendall(view[off:off + 100000])
        assert rd.response(deadline=30.0) == (200, digest)
        s.sendall(b"GET /down HTTP/1.1\r\nHost: a\r\n\r\n")
        st, body = rd.response(deadline=30.0)
        assert st == 200 and len(body) == size
        assert hashlib.sha256(body).hexdigest().encode() == digest
    s.close()
    assert "AddressSanitizer" not in p.stderr_text()
