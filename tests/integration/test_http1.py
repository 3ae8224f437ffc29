"""The HTTP/1.1 runtime (src/http/h1_conn.c, request.c, special_response.c)
seen from raw sockets: keep-alive and pipelining, strict request validation,
head limits, Expect: 100-continue, HEAD, body discard, timeouts, error_page,
redirect Location, server_tokens, and what idle connections cost.

Ports come from 21000-21999 (this suite's range)."""

import os
import random
import re
import socket
import threading
import time

import pytest

from conftest import http_get, parse_responses, raw_request

_lock = threading.Lock()
_used = set()


def my_port():
    """A free loopback port in 21000-21999."""
    with _lock:
        start = random.randint(0, 999)
        for i in range(1000):
            port = 21000 + (start + i) % 1000
            if port in _used:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            finally:
                s.close()
            _used.add(port)
            return port
    raise RuntimeError("no free port in 21000-21999")


CONF = r'''
http {
    access_log off;
    client_header_timeout 2s;
    keepalive_timeout 3s;
    server {
        listen 127.0.0.1:@P@;
        server_name h1.test;
        location / { return 200 "root"; }
        location = /a { return 200 "a"; }
        location = /b { return 200 "b"; }
        location = /nf { return 404; }
        location = /gone { return 410; }
        location = /rel { return 302 /target; }
        location = /ep { error_page 404 /ep-page; return 404; }
        location = /ep-page { return 200 "custom page"; }
        location = /ep-code { error_page 404 =200 /ep-page; return 404; }
        location = /ep-url { error_page 404 http://example.com/x; return 404; }
        location = /ep-url301 { error_page 404 =301 http://example.com/y; return 404; }
        location = /ep-named { error_page 403 @fallback; return 403; }
        location @fallback { return 200 "named"; }
        location = /ep-loop { error_page 404 /ep-loop; return 404; }
        location = /ep-chain { error_page 404 /ep-chain2; return 404; }
        location = /ep-chain2 { error_page 500 /ep-page; return 500; }
    }
    server {
        listen 127.0.0.1:@P@;
        server_name other.test;
        location / { return 200 "other"; }
    }
    server {
        listen 127.0.0.1:@P2@;
        server_tokens off;
        absolute_redirect off;
        keepalive_timeout 0;
        location / { return 404; }
        location = /rel { return 301 /elsewhere; }
    }
    server {
        listen 127.0.0.1:@P3@;
        keepalive_requests 2;
        recursive_error_pages on;
        location / { return 200 "k"; }
        location = /ep-chain { error_page 404 /ep-chain2; return 404; }
        location = /ep-chain2 { error_page 500 /ok; return 500; }
        location = /ok { return 200 "recursive"; }
    }
}
'''


@pytest.fixture
def srv(portico):
    ports = {"P": my_port(), "P2": my_port(), "P3": my_port()}
    p = portico(CONF, subst={k: str(v) for k, v in ports.items()})
    p.h1 = ports
    return p


def exchange(port, data, timeout=3.0, head=False):
    """Sends data; returns (responses, raw, closed_by_server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out, closed = b"", False
    try:
        s.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    finally:
        s.close()
    return parse_responses(out, head=head), out, closed


def req(path, host="h1.test", extra=b"", version=b"HTTP/1.1"):
    return b"GET " + path + b" " + version + b"\r\nHost: " + host.encode() + b"\r\n" + extra + b"\r\n"


# --------------------------------------------------------------------------
# keep-alive and pipelining
# --------------------------------------------------------------------------

def test_pipelined_requests_answered_in_order(srv):
    port = srv.h1["P"]
    rs, raw, closed = exchange(port, req(b"/a") + req(b"/b") + req(b"/") +
                               req(b"/a", extra=b"Connection: close\r\n"))
    assert [r.body for r in rs] == [b"a", b"b", b"root", b"a"], raw
    assert [r.header("Connection") for r in rs] == ["keep-alive"] * 3 + ["close"]
    assert closed


def test_pipelined_requests_split_across_writes(srv):
    s = socket.create_connection(("127.0.0.1", srv.h1["P"]), timeout=3)
    data = req(b"/a") + req(b"/b") + req(b"/nf", extra=b"Connection: close\r\n")
    for i in range(0, len(data), 7):
        s.sendall(data[i:i + 7])
        time.sleep(0.002)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    rs = parse_responses(out)
    assert [r.status for r in rs] == [200, 200, 404], out


def test_keepalive_connection_is_reused(srv):
    s = socket.create_connection(("127.0.0.1", srv.h1["P"]), timeout=3)
    for i in range(20):
        s.sendall(req(b"/a"))
        buf = b""
        while b"\r\n\r\na" not in buf:
            chunk = s.recv(4096)
            assert chunk, "closed after %d requests" % i
            buf += chunk
        assert buf.startswith(b"HTTP/1.1 200 OK\r\n")
    s.close()


def test_http10_keepalive_only_when_asked(srv):
    rs, raw, closed = exchange(srv.h1["P"], b"GET /a HTTP/1.0\r\n\r\n")
    assert rs[0].status == 200 and rs[0].header("Connection") == "close" and closed
    assert rs[0].version == "HTTP/1.1"          # as nginx
    rs, raw, closed = exchange(srv.h1["P"], b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                               b"GET /b HTTP/1.0\r\n\r\n")
    assert [r.body for r in rs] == [b"a", b"b"], raw
    assert rs[0].header("Connection") == "keep-alive"


def test_keepalive_timeout_zero_closes(srv):
    rs, raw, closed = exchange(srv.h1["P2"], req(b"/") + req(b"/"))
    assert len(rs) == 1 and rs[0].header("Connection") == "close" and closed


def test_keepalive_requests_limit(srv):
    rs, raw, closed = exchange(srv.h1["P3"], req(b"/") * 3)
    assert len(rs) == 2, raw
    assert [r.header("Connection") for r in rs] == ["keep-alive", "close"]
    assert closed


def test_keepalive_timeout_closes_idle(srv):
    s = socket.create_connection(("127.0.0.1", srv.h1["P"]), timeout=20)
    s.sendall(req(b"/a"))
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    t0 = time.monotonic()
    assert s.recv(4096) == b""
    # keepalive_timeout 3s: never early; late only by a loaded machine's delay
    assert 2.0 < time.monotonic() - t0 < 15.0
    s.close()


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------

BAD = {
    "two_transfer_encodings": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunked_twice": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "chunked_not_last": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "host_backslash": b"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n",
    "host_empty": b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
    "host_bad_port": b"GET / HTTP/1.1\r\nHost: a:8/x\r\n\r\n",  # a:8x is accepted (nginx)
    "host_space": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "content_length_plus": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    "content_length_list": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
    "content_length_overflow": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "duplicate_authorization": b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
    "absolute_form_bad_host": b"GET http://a..b/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "options_star": b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_request_400_and_close(srv, name):
    rs, raw, closed = exchange(srv.h1["P"], BAD[name] + req(b"/a"))
    assert rs and rs[0].status == 400, raw
    assert rs[0].header("Connection") == "close"
    assert len(rs) == 1 and closed, raw


def test_single_unknown_transfer_coding_501(srv):
    rs, raw, closed = exchange(srv.h1["P"], b"POST / HTTP/1.1\r\nHost: a\r\n"
                               b"Transfer-Encoding: gzip\r\n\r\n")
    assert rs[0].status == 501 and closed


def test_connect_405(srv):
    rs, raw, closed = exchange(srv.h1["P"], b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert rs[0].status == 405 and closed


def test_identical_content_lengths_accepted(srv):
    rs, raw, closed = exchange(srv.h1["P"], b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                               b"Content-Length: 2\r\n\r\nxy" + req(b"/b"))
    assert [r.body for r in rs] == [b"a", b"b"], raw


def test_host_is_normalised_for_server_selection(srv):
    for host in ("OTHER.test", "other.test.", "other.test:80", "Other.Test.:1234"):
        rs, raw, _ = exchange(srv.h1["P"], req(b"/", host=host, extra=b"Connection: close\r\n"))
        assert rs[0].body == b"other", (host, raw)


def test_absolute_form_target_overrides_host(srv):
    rs, raw, _ = exchange(srv.h1["P"], b"GET http://other.test/x HTTP/1.1\r\nHost: h1.test\r\n"
                          b"Connection: close\r\n\r\n")
    assert rs[0].body == b"other", raw


def test_http10_without_host_uses_default_server(srv):
    rs, raw, _ = exchange(srv.h1["P"], b"GET /a HTTP/1.0\r\n\r\n")
    assert rs[0].body == b"a"


def test_invalid_header_names_ignored(srv):
    rs, raw, _ = exchange(srv.h1["P"], req(b"/a", extra=b"X_Under: 1\r\nX.Dot: 2\r\nConnection: close\r\n"))
    assert rs[0].status == 200, raw


# --------------------------------------------------------------------------
# head limits (client_header_buffer_size 1k, large_client_header_buffers 4 8k)
# --------------------------------------------------------------------------

def test_long_request_line_moves_to_large_buffer(srv):
    rs, raw, _ = exchange(srv.h1["P"], req(b"/?" + b"x" * 6000, extra=b"Connection: close\r\n"))
    assert rs[0].status == 200, raw[:200]


def test_request_line_over_large_buffer_is_414(srv):
    rs, raw, closed = exchange(srv.h1["P"], req(b"/?" + b"x" * 9000))
    assert rs[0].status == 414 and closed
    assert b"<title>414 Request-URI Too Large</title>" in rs[0].body


def test_header_line_over_large_buffer_is_400_too_large(srv):
    rs, raw, closed = exchange(srv.h1["P"], req(b"/", extra=b"Cookie: " + b"c" * 9000 + b"\r\n"))
    assert rs[0].status == 400 and closed
    assert b"<title>400 Request Header Or Cookie Too Large</title>" in rs[0].body
    assert b"<center>Request Header Or Cookie Too Large</center>" in rs[0].body


def test_many_large_headers(srv):
    ok_head = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 6000) for i in range(4))
    rs, raw, _ = exchange(srv.h1["P"], req(b"/a", extra=ok_head + b"Connection: close\r\n"))
    assert rs[0].status == 200, raw[:200]
    too_big = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 6000) for i in range(6))
    rs, raw, _ = exchange(srv.h1["P"], req(b"/a", extra=too_big))
    assert rs[0].status == 400 and b"Too Large" in rs[0].body


# --------------------------------------------------------------------------
# bodies, 100-continue, HEAD
# --------------------------------------------------------------------------

def test_unread_body_is_discarded_not_parsed(srv):
    smuggled = b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
    body = smuggled + b"z" * 10
    rs, raw, _ = exchange(srv.h1["P"], b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"
                          % len(body) + body + req(b"/", extra=b"Connection: close\r\n"))
    assert [r.body for r in rs] == [b"a", b"root"], raw


def test_chunked_body_discarded_then_next_request(srv):
    part = b"/b HTTP/1.1\r\nHost: a\r\n\r\n"
    rs, raw, _ = exchange(srv.h1["P"], b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"4\r\nGET \r\n%x\r\n%s\r\n0\r\n\r\n" % (len(part), part)
                          + req(b"/", extra=b"Connection: close\r\n"))
    assert [r.body for r in rs] == [b"a", b"root"], raw


def test_malformed_preread_chunked_body_is_400(srv):
    rs, raw, closed = exchange(srv.h1["P"], b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"xyz\r\nhello\r\n0\r\n\r\n")
    assert rs[0].status == 400 and closed, raw


def test_expect_continue_not_sent_when_answering_without_body(srv):
    s = socket.create_connection(("127.0.0.1", srv.h1["P"]), timeout=3)
    s.sendall(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    out = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        out += chunk
    s.close()
    assert b"100 Continue" not in out
    rs = parse_responses(out)
    assert rs[0].status == 200 and rs[0].header("Connection") == "close"


def test_head_has_no_body(srv):
    rs, raw, _ = exchange(srv.h1["P"], b"HEAD /a HTTP/1.1\r\nHost: a\r\n\r\n"
                          b"HEAD /nf HTTP/1.1\r\nHost: a\r\n\r\n" + req(b"/b", extra=b"Connection: close\r\n"),
                          head=[True, True, False])
    assert [r.status for r in rs] == [200, 404, 200], raw
    assert rs[0].header("Content-Length") == "1" and rs[0].body == b""
    assert rs[1].header("Content-Length") and rs[1].body == b""
    assert rs[2].body == b"b"


# --------------------------------------------------------------------------
# response head
# --------------------------------------------------------------------------

def test_response_head_fields(srv):
    rs, raw, _ = exchange(srv.h1["P"], req(b"/a", extra=b"Connection: close\r\n"))
    r = rs[0]
    assert raw.startswith(b"HTTP/1.1 200 OK\r\nServer: portico/")
    assert re.match(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$", r.header("Date"))
    assert r.header("Content-Type") == "text/plain"
    assert r.header("Content-Length") == "1"


def test_error_page_layout(srv):
    rs, raw, _ = exchange(srv.h1["P"], req(b"/gone", extra=b"Connection: close\r\n"))
    assert rs[0].status == 410 and rs[0].header("Content-Type") == "text/html"
    assert rs[0].body.startswith(b"<html>\r\n<head><title>410 Gone</title></head>\r\n<body>\r\n"
                                 b"<center><h1>410 Gone</h1></center>\r\n<hr><center>portico/")
    assert rs[0].body.endswith(b"</center>\r\n</body>\r\n</html>\r\n")
    assert int(rs[0].header("Content-Length")) == len(rs[0].body)


def test_server_tokens_off(srv):
    rs, raw, _ = exchange(srv.h1["P2"], req(b"/"))
    assert rs[0].header("Server") == "portico"
    assert b"<hr><center>portico</center>" in rs[0].body


def test_relative_redirect_made_absolute(srv):
    port = srv.h1["P"]
    rs, raw, _ = exchange(port, req(b"/rel", extra=b"Connection: close\r\n"))
    assert rs[0].status == 302
    assert rs[0].header_all("Location") == ["http://h1.test:%d/target" % port]
    assert b"<title>302 Found</title>" in rs[0].body


def test_absolute_redirect_off(srv):
    rs, raw, _ = exchange(srv.h1["P2"], req(b"/rel"))
    assert rs[0].status == 301 and rs[0].header_all("Location") == ["/elsewhere"]


# --------------------------------------------------------------------------
# error_page
# --------------------------------------------------------------------------

def get(srv, path, port="P"):
    rs, raw, _ = exchange(srv.h1[port], req(path, extra=b"Connection: close\r\n"))
    assert rs, raw
    return rs[0]


def test_error_page_internal_redirect_keeps_status(srv):
    r = get(srv, b"/ep")
    assert r.status == 404 and r.body == b"custom page"


def test_error_page_overrides_status(srv):
    r = get(srv, b"/ep-code")
    assert r.status == 200 and r.body == b"custom page"


def test_error_page_url_redirects(srv):
    r = get(srv, b"/ep-url")
    assert r.status == 302 and r.header("Location") == "http://example.com/x"
    r = get(srv, b"/ep-url301")
    assert r.status == 301 and r.header("Location") == "http://example.com/y"


def test_error_page_named_location(srv):
    r = get(srv, b"/ep-named")
    assert r.status == 403 and r.body == b"named"


def test_error_page_not_recursive_by_default(srv):
    r = get(srv, b"/ep-chain")
    assert r.status == 500 and b"500 Internal Server Error" in r.body


def test_recursive_error_pages(srv):
    r = get(srv, b"/ep-chain", port="P3")
    assert r.status == 500 and r.body == b"recursive"


def test_error_page_loop_ends(srv):
    r = get(srv, b"/ep-loop")
    assert r.status == 404


# --------------------------------------------------------------------------
# timeouts and idle cost
# --------------------------------------------------------------------------

def test_slow_client_within_header_timeout_is_served(srv):
    s = socket.create_connection(("127.0.0.1", srv.h1["P"]), timeout=5)
    for ch in req(b"/a", extra=b"Connection: close\r\n"):
        s.sendall(bytes([ch]))
        time.sleep(0.01)
    assert s.recv(4096).startswith(b"HTTP/1.1 200 OK")
    s.close()


def test_slowloris_closed_after_header_timeout(srv):
    s = socket.create_connection(("127.0.0.1", srv.h1["P"]), timeout=6)
    t0 = time.monotonic()
    s.sendall(b"GET / HTTP/1.1\r\n")
    closed = False
    # a timer restarted by each read would never fire while this trickles:
    # trickle far longer than the 2 s, so the bound below is not a race
    while time.monotonic() - t0 < 15:
        try:
            s.sendall(b"X: y\r\n")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        s.settimeout(0.3)
        try:
            if s.recv(4096) == b"":
                closed = True
                break
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed = True
            break
    s.close()
    assert closed
    assert time.monotonic() - t0 < 12      # client_header_timeout 2s, from the first byte


def _worker_rss_kib(srv):
    w = srv.workers()[0]
    with open("/proc/%d/status" % w) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.skipif("asan" in os.environ.get("PORTICO_BIN", ""),
                    reason="sanitizer allocations distort RSS")
def test_idle_connections_cost_little(srv):
    port = srv.h1["P"]
    http_get("http://127.0.0.1:%d/a" % port)          # warm up
    before = _worker_rss_kib(srv)
    socks = []
    try:
        for i in range(1000):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:
                s.sendall(req(b"/a"))                   # half of them idle after keep-alive
                s.recv(4096)
            socks.append(s)
        time.sleep(0.3)
        after = _worker_rss_kib(srv)
    finally:
        for s in socks:
            s.close()
    per_conn = (after - before) * 1024 / 1000
    assert per_conn < 1024, "idle connections cost %.0f bytes each" % per_conn
