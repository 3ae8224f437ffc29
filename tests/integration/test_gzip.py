"""The gzip module: negotiation (Accept-Encoding and q=0, types, min length,
status, HEAD, Via + gzip_proxied, gzip_disable, gzip_http_version), the
response header (Content-Encoding, no Content-Length, weak ETag, Vary),
streamed compression of static and proxied bodies with bounded worker memory,
flushes for server-sent events, HTTP/2, $gzip_ratio, gzip_static, and the
configuration errors nginx gives."""

import gzip
import json
import os
import random
import socket
import subprocess
import threading
import time
import zlib

import pytest

from conftest import conf_test, http_get, parse_responses, raw_request

# The guides' block.
GUIDE = """
    gzip on;
    gzip_types text/plain text/css application/json application/javascript text/xml application/xml;
    gzip_comp_level 5;
    gzip_min_length 256;
    gzip_vary on;
"""

TYPES = """
    types { text/html html; text/plain txt; application/json json; image/png png;
            application/javascript js; text/css css; }
"""

BIG_JSON = json.dumps({"items": [{"id": i, "name": "item number %d" % i, "tags": ["a", "b"]}
                                 for i in range(200)]})

AE = {"Accept-Encoding": "gzip, deflate, br"}


def conf(server_body, http_extra=GUIDE):
    return """
http {
    %s
    %s
    server {
        listen 127.0.0.1:@PORT@;
        root @PREFIX@/html;
        %s
    }
}""" % (TYPES, http_extra, server_body)


def static_files(**extra):
    f = {
        "html/data.json": BIG_JSON,
        "html/small.json": '{"ok": true}',
        "html/image.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000,
        "html/page.html": "<html><body>" + "hello world " * 200 + "</body></html>",
        "html/style.css": "body { color: red; }\n" * 100,
    }
    f.update(extra)
    return f


def gunzip(body):
    return gzip.decompress(body)


# --------------------------------------------------------------------------
# negotiation and the response header
# --------------------------------------------------------------------------

def test_json_over_min_length_is_compressed(portico):
    p = portico(conf("location / { }"), files=static_files())
    r = http_get(p.url(path="/data.json"), headers=AE)
    assert r.status == 200
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers.get("Content-Length") is None
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert r.headers["Vary"] == "Accept-Encoding"
    assert r.headers.get("Accept-Ranges") is None
    assert r.headers["Content-Type"] == "application/json"
    assert gunzip(r.body) == BIG_JSON.encode()
    assert len(r.body) < len(BIG_JSON) / 3


def test_return_body_is_compressed(portico):
    body = "x" * 1000
    p = portico(conf('location / { default_type text/plain; return 200 "%s"; }' % body))
    r = http_get(p.url(), headers=AE)
    assert r.headers["Content-Encoding"] == "gzip"
    assert gunzip(r.body) == body.encode()


def test_small_body_not_compressed(portico):
    p = portico(conf("location / { }"), files=static_files())
    r = http_get(p.url(path="/small.json"), headers=AE)
    assert r.status == 200
    assert r.headers.get("Content-Encoding") is None
    assert r.headers["Content-Length"] == str(len('{"ok": true}'))
    # below gzip_min_length the response is not a candidate at all: no Vary (nginx)
    assert r.headers.get("Vary") is None
    assert r.body == b'{"ok": true}'


def test_png_not_compressed(portico):
    p = portico(conf("location / { }"), files=static_files())
    r = http_get(p.url(path="/image.png"), headers=AE)
    assert r.headers.get("Content-Encoding") is None
    assert r.headers["Content-Length"] == "4008"
    assert r.headers.get("Vary") is None


def test_no_accept_encoding_identity_with_vary(portico):
    p = portico(conf("location / { }"), files=static_files())
    r = http_get(p.url(path="/data.json"))
    assert r.headers.get("Content-Encoding") is None
    assert r.headers["Content-Length"] == str(len(BIG_JSON))
    assert r.headers["Vary"] == "Accept-Encoding"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.body == BIG_JSON.encode()


@pytest.mark.parametrize("ae,compressed", [
    ("gzip", True), ("GZIP", True), ("deflate, gzip;q=0.5", True), ("gzip;q=0", False),
    ("gzip; q=0.000", False), ("br", False), ("x-gzip", False), ("*", False),
    ("identity", False)])
def test_accept_encoding_forms(portico, ae, compressed):
    p = portico(conf("location / { }"), files=static_files())
    r = http_get(p.url(path="/data.json"), headers={"Accept-Encoding": ae})
    assert (r.headers.get("Content-Encoding") == "gzip") == compressed
    body = gunzip(r.body) if compressed else r.body
    assert body == BIG_JSON.encode()


def test_text_html_always_and_star(portico):
    p = portico(conf("""
        location / { }
        location /any/ { gzip_types *; alias @PREFIX@/html/; }"""), files=static_files())
    r = http_get(p.url(path="/page.html"), headers=AE)
    assert r.headers["Content-Encoding"] == "gzip"
    r = http_get(p.url(path="/any/image.png"), headers=AE)
    assert r.headers["Content-Encoding"] == "gzip"
    assert gunzip(r.body) == b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000


def test_default_types_only_text_html(portico):
    p = portico(conf("location / { }", "gzip on;"), files=static_files())
    assert http_get(p.url(path="/page.html"), headers=AE).headers["Content-Encoding"] == "gzip"
    r = http_get(p.url(path="/style.css"), headers=AE)
    assert r.headers.get("Content-Encoding") is None
    assert r.headers.get("Vary") is None          # gzip_vary off by default


def test_gzip_off_in_location(portico):
    p = portico(conf("location / { } location /off/ { gzip off; alias @PREFIX@/html/; }"),
                files=static_files())
    r = http_get(p.url(path="/off/data.json"), headers=AE)
    assert r.headers.get("Content-Encoding") is None
    assert r.headers.get("Vary") is None


def test_head_has_the_get_header(portico):
    p = portico(conf("location / { }"), files=static_files())
    raw = raw_request(p.port, b"HEAD /data.json HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n"
                               b"Connection: close\r\n\r\n")
    r = parse_responses(raw, head=True)[0]
    assert r.status == 200
    assert r.header("Content-Encoding") == "gzip"
    assert r.header("Content-Length") is None
    assert r.header("Vary") == "Accept-Encoding"
    assert raw.endswith(b"\r\n\r\n")           # no body at all


def test_etag_weakened_only_when_compressed(portico):
    p = portico(conf("location / { }"), files=static_files())
    plain = http_get(p.url(path="/data.json"))
    comp = http_get(p.url(path="/data.json"), headers=AE)
    strong = plain.headers["ETag"]
    assert strong.startswith('"')
    assert comp.headers["ETag"] == "W/" + strong
    # the conditional request still works with the weak tag
    r = http_get(p.url(path="/data.json"), headers=dict(AE, **{"If-None-Match": comp.headers["ETag"]}))
    assert r.status == 304


def test_range_request_gets_whole_compressed_body(portico):
    """nginx compresses before its range filter: a range request whose
    response is gzipped gets the whole body, 200, compressed."""
    p = portico(conf("location / { }"), files=static_files())
    r = http_get(p.url(path="/data.json"), headers=dict(AE, Range="bytes=0-9"))
    assert r.status == 200
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers.get("Content-Range") is None
    assert gunzip(r.body) == BIG_JSON.encode()
    # without gzip the range is served
    r = http_get(p.url(path="/data.json"), headers={"Range": "bytes=0-9"})
    assert r.status == 206 and r.body == BIG_JSON.encode()[:10]
    # a type that is not compressed keeps its ranges with gzip accepted
    r = http_get(p.url(path="/image.png"), headers=dict(AE, Range="bytes=0-3"))
    assert r.status == 206 and r.body == b"\x89PNG"
    # a small file (below gzip_min_length) too
    r = http_get(p.url(path="/small.json"), headers=dict(AE, Range="bytes=0-1"))
    assert r.status == 206 and r.body == b'{"'


def test_range_header_still_logged(portico):
    p = portico(conf("""
        location / { access_log logs/range.log rg; }""",
                     GUIDE + "log_format rg '$http_range';"), files=static_files())
    r = http_get(p.url(path="/data.json"), headers=dict(AE, Range="bytes=0-9"))
    assert r.status == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not p.access_log("logs/range.log").strip():
        time.sleep(0.05)
    assert p.access_log("logs/range.log").strip() == "bytes=0-9"


def test_add_header_vary_and_etag_survive(portico):
    p = portico(conf("""
        location / {
            add_header Vary Origin;
            add_header ETag '"custom"';
        }"""), files=static_files())
    r = http_get(p.url(path="/data.json"), headers=AE)
    assert r.headers["Content-Encoding"] == "gzip"
    assert sorted(r.headers.get_all("Vary")) == ["Accept-Encoding", "Origin"]
    # add_header's ETag replaced the file's, and gzip (after it, as nginx) weakened it
    assert r.headers.get_all("ETag") == ['W/"custom"']
    r = http_get(p.url(path="/data.json"))
    assert r.headers.get_all("ETag") == ['"custom"']


def test_error_pages_compressed(portico):
    p = portico(conf("location / { }", "gzip on; gzip_min_length 10;"), files=static_files())
    r = http_get(p.url(path="/missing.html"), headers=AE)
    assert r.status == 404
    assert r.headers["Content-Encoding"] == "gzip"
    assert b"404 Not Found" in gunzip(r.body)


def test_other_statuses_not_compressed(portico):
    body = "y" * 1000
    p = portico(conf('location / { default_type text/plain; return 500 "%s"; }' % body))
    r = http_get(p.url(), headers=AE)
    assert r.status == 500
    assert r.headers.get("Content-Encoding") is None


def test_http_version(portico):
    p = portico(conf("location / { } location /v10/ { gzip_http_version 1.0; alias @PREFIX@/html/; }"),
                files=static_files())
    raw = raw_request(p.port, b"GET /data.json HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
    r = parse_responses(raw)[0]
    assert r.header("Content-Encoding") is None
    assert r.header("Vary") == "Accept-Encoding"
    raw = raw_request(p.port, b"GET /v10/data.json HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
    r = parse_responses(raw)[0]
    assert r.header("Content-Encoding") == "gzip"
    assert r.header("Content-Length") is None          # the end is the close
    assert gunzip(r.body) == BIG_JSON.encode()


def test_gzip_disable(portico):
    p = portico(conf("""
        location / { gzip_disable msie6 "^Bad(Bot|Crawler)"; }"""), files=static_files())

    def enc(ua):
        return http_get(p.url(path="/data.json"),
                        headers={"Accept-Encoding": "gzip", "User-Agent": ua}).headers.get("Content-Encoding")
    assert enc("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)") is None
    assert enc("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)") == "gzip"
    assert enc("Mozilla/4.0 (compatible; MSIE 8.0)") == "gzip"
    assert enc("badcrawler/1.0") is None                # caseless, as nginx
    assert enc("curl/8") == "gzip"


def test_gzip_proxied(portico):
    p = portico(conf("""
        location / { }
        location /any/ { gzip_proxied any; alias @PREFIX@/html/; }
        location /nc/ { gzip_proxied no-cache; alias @PREFIX@/html/; add_header Cache-Control no-cache; }
        location /auth/ { gzip_proxied auth; alias @PREFIX@/html/; add_header Cache-Control private; }
        location /authnocc/ { gzip_proxied auth; alias @PREFIX@/html/; }
        location /etag/ { gzip_proxied no_etag; alias @PREFIX@/html/; }
        location /etagoff/ { gzip_proxied no_etag; etag off; alias @PREFIX@/html/; }"""),
                files=static_files())

    def enc(path, **h):
        hd = {"Accept-Encoding": "gzip", "Via": "1.1 cache"}
        hd.update(h)
        return http_get(p.url(path=path), headers=hd).headers.get("Content-Encoding")
    assert enc("/data.json") is None                    # gzip_proxied off (default)
    assert http_get(p.url(path="/data.json"), headers=AE).headers["Content-Encoding"] == "gzip"
    assert enc("/any/data.json") == "gzip"
    assert enc("/nc/data.json") == "gzip"
    assert enc("/auth/data.json") is None
    assert enc("/auth/data.json", Authorization="Basic eDp5") == "gzip"
    # no Expires, no Cache-Control and neither no_last_modified nor no_etag
    # given: nginx lets it through
    assert enc("/authnocc/data.json") == "gzip"
    assert enc("/etag/data.json") is None               # the file has an ETag
    assert enc("/etagoff/data.json") == "gzip"


def test_min_length_uses_content_length_only(portico, chunked_backend):
    """A chunked (unknown length) response is compressed whatever its size."""
    b = chunked_backend(chunks=(b"tiny",))
    p = portico(conf("location / { proxy_pass http://%s; }" % b.addr))
    r = http_get(p.url(), headers=AE)
    assert r.headers["Content-Encoding"] == "gzip"
    assert gunzip(r.body) == b"tiny"


def test_upstream_content_encoding_kept(portico, backends):
    from conftest import http_response
    payload = b"z" * 2000
    b = backends(lambda req, c, bk: http_response(
        200, payload, headers={"Content-Encoding": "br"}, content_type="text/plain"))
    p = portico(conf("location / { proxy_pass http://%s; }" % b.addr))
    r = http_get(p.url(), headers=AE)
    assert r.headers["Content-Encoding"] == "br"
    assert r.body == payload


def test_proxied_response(portico, echo_backend):
    p = portico(conf("location / { proxy_pass http://%s; }" % echo_backend.addr,
                     GUIDE.replace("gzip_min_length 256", "gzip_min_length 20")))
    r = http_get(p.url(path="/some/path"), headers=AE)
    assert r.headers["Content-Encoding"] == "gzip"
    doc = json.loads(gunzip(r.body))
    assert doc["path"] == "/some/path"


def test_curl_compressed(portico):
    p = portico(conf("location / { }"), files=static_files())
    out = subprocess.run(["curl", "-sS", "--compressed", "-D", "-", p.url(path="/data.json")],
                         capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head
    assert body == BIG_JSON.encode()


def test_http2(portico):
    p = portico("""
http {
    %s
    %s
    server {
        listen 127.0.0.1:@PORT@ http2;
        root @PREFIX@/html;
        location / { }
    }
}""" % (TYPES, GUIDE), files=static_files())
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--compressed", "-D", "-",
                          p.url(path="/data.json")], capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200")
    assert b"content-encoding: gzip" in head.lower()
    assert b"content-length" not in head.lower()
    assert body == BIG_JSON.encode()


def test_gzip_ratio_logged(portico):
    p = portico(conf("""
        access_log logs/ratio.log ratio;
        location / { }""", GUIDE + "log_format ratio '$uri [$gzip_ratio]';"), files=static_files())
    r = http_get(p.url(path="/data.json"), headers=AE)
    ratio_expected = len(BIG_JSON) / len(r.body)
    http_get(p.url(path="/data.json"))
    deadline = time.monotonic() + 20
    lines = []
    while time.monotonic() < deadline:
        lines = p.access_log("logs/ratio.log").splitlines()
        if len(lines) >= 2:
            break
        time.sleep(0.05)
    assert lines[0].startswith("/data.json [")
    got = float(lines[0].split("[")[1].rstrip("]"))
    assert abs(got - ratio_expected) < 0.02, (got, ratio_expected)
    assert lines[1] == "/data.json [-]"                # not compressed: not found


# --------------------------------------------------------------------------
# large and streamed bodies
# --------------------------------------------------------------------------

BIG = 20 << 20


def big_body():
    """20 MiB, half incompressible: the compressed stream is still ~10 MiB,
    enough to fill the socket and exercise backpressure."""
    rnd = random.Random(7)
    blocks = []
    for i in range(BIG // 65536):
        blocks.append(rnd.randbytes(32768))
        blocks.append((b"line %08d of some repetitive text\n" % i) * (32768 // 36)
                      + b"." * (32768 % 36))
    return b"".join(blocks)


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
            time.sleep(0.02)

    def done(self):
        self.stop = True
        self.t.join(1)
        return self.base, self.peak


class Dechunker:
    """Incremental chunked decoder: feed() bytes, get data bytes back. A
    chunk's data counts as soon as it has arrived (its CRLF may come with the
    next chunk, as the writer frames it)."""

    def __init__(self):
        self.buf = b""
        self.need = None        # data bytes left in the current chunk
        self.crlf = False       # a chunk's CRLF is due before the next size line
        self.done = False

    def feed(self, data):
        self.buf += data
        out = b""
        while not self.done:
            if self.need:
                take = self.buf[:self.need]
                out += take
                self.buf = self.buf[len(take):]
                self.need -= len(take)
                if self.need:
                    break
                self.crlf = True
            if self.crlf:
                if len(self.buf) < 2:
                    break
                assert self.buf[:2] == b"\r\n", self.buf[:20]
                self.buf = self.buf[2:]
                self.crlf = False
            le = self.buf.find(b"\r\n")
            if le < 0:
                break
            size = int(self.buf[:le].split(b";")[0], 16)
            self.buf = self.buf[le + 2:]
            if size == 0:
                self.done = True
                break
            self.need = size
        return out


def read_head(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        assert d, buf
        buf += d
    return buf.split(b"\r\n\r\n", 1)


def read_chunked_gzip(sock, slow_reads=30):
    """Reads a chunked gzip response to its end; returns (head, inflated)."""
    sock.settimeout(60)
    head, rest = read_head(sock)
    assert b"Transfer-Encoding: chunked" in head, head
    z = zlib.decompressobj(31)
    dc = Dechunker()
    out = [z.decompress(dc.feed(rest))]
    reads = 0
    while not dc.done:
        d = sock.recv(65536 if reads < slow_reads else 1 << 20)
        reads += 1
        if reads < slow_reads:
            time.sleep(0.02)            # a slow reader first: the writer backs up
        assert d, "connection closed mid-response"
        out.append(z.decompress(dc.feed(d)))
    out.append(z.flush())
    assert z.eof, "gzip stream not finished"
    return head, b"".join(out)


@pytest.fixture(scope="module")
def big():
    return big_body()


@pytest.mark.timeout(120)
def test_big_static_file_bounded_memory(portico, big):
    p = portico(conf("location / { }"), files=static_files(**{"html/big.txt": big}))
    worker = p.wait_workers(1)[0]
    sampler = RssSampler(worker)
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"GET /big.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
    head, body = read_chunked_gzip(s)
    s.close()
    base, peak = sampler.done()
    assert b"Content-Encoding: gzip" in head
    assert body == big
    print("gzip static 20 MiB: worker RSS base %d KiB, peak %d KiB" % (base, peak))
    assert peak - base < 8 * 1024, (base, peak)


@pytest.mark.timeout(120)
def test_big_proxied_body_bounded_memory(portico, backends, big):
    def handler(req, c, b):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(big))
        view = memoryview(big)
        for i in range(0, len(big), 1 << 20):
            c.sendall(view[i:i + (1 << 20)])
        return None
    b = backends(handler)
    p = portico(conf("location / { proxy_pass http://%s; }" % b.addr))
    worker = p.wait_workers(1)[0]
    sampler = RssSampler(worker)
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
    head, body = read_chunked_gzip(s)
    s.close()
    base, peak = sampler.done()
    assert b"Content-Encoding: gzip" in head
    assert b"Content-Length" not in head
    assert body == big
    print("gzip proxied 20 MiB: worker RSS base %d KiB, peak %d KiB" % (base, peak))
    assert peak - base < 8 * 1024, (base, peak)


@pytest.mark.timeout(60)
def test_client_abort_mid_stream(portico, big):
    """A client that leaves mid-response: the worker stays up and serves on."""
    p = portico(conf("location / { }"), files=static_files(**{"html/big.txt": big}))
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", p.port))
        s.sendall(b"GET /big.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        s.recv(1000)
        s.close()
    r = http_get(p.url(path="/data.json"), headers=AE)
    assert gunzip(r.body) == BIG_JSON.encode()


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.timeout(60)
def test_chunked_upstream_sse_flush(portico, backends):
    """proxy_buffering off: each upstream read is flushed through gzip
    (Z_SYNC_FLUSH), so an event reaches the client while the backend waits."""
    go = threading.Event()
    ev1 = b"data: first event " + b"a" * 300 + b"\n\n"
    ev2 = b"data: second event " + b"b" * 300 + b"\n\n"

    def handler(req, c, b):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        c.sendall(chunk(ev1))
        go.wait(20)
        c.sendall(chunk(ev2) + b"0\r\n\r\n")
        return None
    b = backends(handler)
    p = portico(conf("""
        location / { proxy_pass http://%s; proxy_buffering off; }""" % b.addr,
                     GUIDE + "gzip_types text/event-stream;"))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
    s.settimeout(5)
    head, rest = read_head(s)
    assert b"Content-Encoding: gzip" in head
    z = zlib.decompressobj(31)
    dc = Dechunker()
    got = z.decompress(dc.feed(rest))
    while ev1 not in got:
        d = s.recv(65536)        # times out (fails) if the event is held back
        assert d
        got += z.decompress(dc.feed(d))
    assert got == ev1
    go.set()
    s.settimeout(10)
    while not dc.done:
        d = s.recv(65536)
        assert d
        got += z.decompress(dc.feed(d))
    got += z.flush()
    s.close()
    assert z.eof
    assert got == ev1 + ev2


def test_chunked_upstream_buffered(portico, chunked_backend):
    b = chunked_backend(chunks=[b"part %d " % i * 50 for i in range(20)])
    p = portico(conf("location / { proxy_pass http://%s; }" % b.addr))
    r = http_get(p.url(), headers=AE)
    assert r.headers["Content-Encoding"] == "gzip"
    assert gunzip(r.body) == b"".join(b"part %d " % i * 50 for i in range(20))


def test_keepalive_after_compressed_response(portico):
    p = portico(conf("location / { }"), files=static_files())
    req = b"GET /data.json HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"
    raw = raw_request(p.port, req + req + req.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    rs = parse_responses(raw)
    assert len(rs) == 3
    for r in rs:
        assert r.header("Content-Encoding") == "gzip"
        assert gunzip(r.body) == BIG_JSON.encode()


# --------------------------------------------------------------------------
# gzip_static
# --------------------------------------------------------------------------

JS = b"console.log('plain');\n" * 50
JS_GZ = gzip.compress(b"console.log('from the .gz');\n" * 50)


def gz_files():
    return static_files(**{"html/app.js": JS, "html/app.js.gz": JS_GZ,
                           "html/only.css": "a{}\n" * 100})


def test_gzip_static_on(portico):
    p = portico(conf("""
        access_log logs/u.log u;
        location / { gzip_static on; }""", "gzip_vary on; log_format u '$uri';"), files=gz_files())
    r = http_get(p.url(path="/app.js"), headers=AE)
    assert r.status == 200
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers["Content-Type"] == "application/javascript"
    assert r.headers["Content-Length"] == str(len(JS_GZ))
    assert r.headers["Vary"] == "Accept-Encoding"
    assert r.body == JS_GZ
    etag = r.headers["ETag"]
    assert etag.startswith('"')                          # the .gz file's own, strong
    r2 = http_get(p.url(path="/app.js"), headers=dict(AE, **{"If-None-Match": etag}))
    assert r2.status == 304
    assert r2.headers["Content-Encoding"] == "gzip"
    r3 = http_get(p.url(path="/app.js"), headers=dict(AE, Range="bytes=0-9"))
    assert r3.status == 206 and r3.body == JS_GZ[:10]
    # a client without gzip gets the plain file, with Vary
    r = http_get(p.url(path="/app.js"))
    assert r.headers.get("Content-Encoding") is None
    assert r.headers["Vary"] == "Accept-Encoding"
    assert r.body == JS
    # no .gz: the plain file, no Vary
    r = http_get(p.url(path="/only.css"), headers=AE)
    assert r.headers.get("Content-Encoding") is None and r.headers.get("Vary") is None
    assert p.access_lines(5, "logs/u.log") == ["/app.js"] * 4 + ["/only.css"]


def test_gzip_static_always_and_off(portico):
    p = portico(conf("""
        location / { gzip_static always; }
        location /off/ { alias @PREFIX@/html/; }""", ""), files=gz_files())
    r = http_get(p.url(path="/app.js"))
    assert r.headers["Content-Encoding"] == "gzip" and r.body == JS_GZ
    r = http_get(p.url(path="/off/app.js"), headers=AE)
    assert r.headers.get("Content-Encoding") is None and r.body == JS


def test_gzip_static_with_gzip_filter(portico):
    """gzip_static and gzip together: the .gz is never compressed again, and
    a file without .gz is compressed on the fly."""
    p = portico(conf("location / { gzip_static on; }"), files=gz_files())
    r = http_get(p.url(path="/app.js"), headers=AE)
    assert r.headers.get_all("Content-Encoding") == ["gzip"]
    assert r.body == JS_GZ
    assert r.headers.get_all("Vary") == ["Accept-Encoding"]
    r = http_get(p.url(path="/data.json"), headers=AE)
    assert r.headers["Content-Encoding"] == "gzip" and gunzip(r.body) == BIG_JSON.encode()


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------

@pytest.mark.parametrize("line,msg", [
    ("gzip_comp_level 10;", '[emerg] value must be between 1 and 9'),
    ("gzip_comp_level 0;", '[emerg] value must be between 1 and 9'),
    ("gzip_http_version 2.0;", 'invalid value "2.0"'),
    ("gzip_proxied sometimes;", 'invalid value "sometimes"'),
    ("gzip_static maybe;", 'invalid value "maybe"'),
    ("gzip_buffers 0 4k;", '"gzip_buffers" directive invalid value'),
    ("gzip maybe;", '"gzip"'),
    ("gzip_window 3k;", '"gzip_window" directive must be 512, 1k, 2k, 4k, 8k, 16k, or 32k'),
    ("gzip_disable \"(\";", "pcre2_compile() failed"),
    ("gzip on; gzip on;", '"gzip" directive is duplicate'),
])
def test_config_errors(tmp_path, line, msg):
    rc, out, err, _ = conf_test(tmp_path, "events {} http { %s server { listen 127.0.0.1:1; } }" % line)
    assert rc != 0
    assert msg in err, err


def test_config_accepts_nginx_forms(tmp_path):
    rc, out, err, _ = conf_test(tmp_path, """
events {}
http {
    gzip on;
    gzip_buffers 16 8k;
    gzip_types text/plain text/css;
    gzip_types application/json;
    gzip_http_version 1.0;
    gzip_proxied expired no-cache no-store private auth;
    gzip_disable "msie6";
    gzip_vary on;
    gzip_static on;
    gzip_min_length 1k;
    gzip_window 16k;
    gzip_hash 32k;
    postpone_gzipping 0;
    server {
        listen 127.0.0.1:1;
        location / { if ($arg_x) { gzip off; } }
    }
}""")
    assert rc == 0, err


def test_duplicate_type_warns(tmp_path):
    rc, out, err, _ = conf_test(tmp_path, "events {} http { gzip_types text/html text/css; "
                                          "server { listen 127.0.0.1:1; } }")
    assert rc == 0
    assert 'duplicate MIME type "text/html"' in err
