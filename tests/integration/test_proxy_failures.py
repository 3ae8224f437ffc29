"""Timeouts and failures: 502 on refused, 504 on slow, a backend dying
mid-response, a client going away, proxy_next_upstream failover."""

import socket
import threading
import time

import pytest

from conftest import (http_get, raw_request, parse_responses, http_response, free_port,
                      connection_closed, make_echo_backend, Backend, _Close)


def test_refused_is_502(portico):
    dead = free_port()
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://127.0.0.1:%d; } } }""" % dead)
    r = http_get(p.url(path="/"))
    assert r.status == 502
    assert "connect() failed (111: Connection refused) while connecting to upstream" in p.error_log()
    p.allowed_lines = getattr(p, "allowed_lines", set())


def test_slow_is_504(portico, slow_backend):
    b = slow_backend(15.0)
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; proxy_read_timeout 1s; } } }""" % b.addr)
    t0 = time.monotonic()
    r = http_get(p.url(path="/"), timeout=30)
    dt = time.monotonic() - t0
    assert r.status == 504
    assert 0.8 < dt < 12       # 1 s nominal; the backend answers after 15 s
    assert "upstream timed out" in p.error_log()
    assert "while reading response header from upstream" in p.error_log()


def test_connect_timeout_504(portico):
    # a listening socket whose backlog is full never completes the handshake;
    # 10.255.255.1 is not routed on the test host: use a blackhole instead
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    port = s.getsockname()[1]
    fillers = []
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    try:
        p = portico("""
            http { server { listen 127.0.0.1:@PORT@;
                location / { proxy_pass http://127.0.0.1:%d; proxy_connect_timeout 500ms;
                             proxy_read_timeout 500ms; } } }""" % port)
        r = http_get(p.url(path="/"), timeout=10)
        assert r.status in (502, 504)
    finally:
        for c in fillers:
            c.close()
        s.close()


def test_dying_mid_body_closes_client(portico, dying_backend):
    b = dying_backend("mid_body")
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; } } }""" % b.addr)
    data = raw_request(p.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    # headers went out, then the connection closed: 40 of 100 bytes
    assert data.startswith(b"HTTP/1.1 200")
    with pytest.raises(ValueError):
        parse_responses(data, strict=True)
    assert "upstream prematurely closed connection while reading upstream" in p.error_log()


def test_dying_mid_chunked_closes_client(portico, dying_backend):
    b = dying_backend("mid_chunked")
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; } } }""" % b.addr)
    data = raw_request(p.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    assert data.startswith(b"HTTP/1.1 200")
    assert not data.endswith(b"0\r\n\r\n")      # never a complete chunked body
    with pytest.raises(ValueError):
        parse_responses(data, strict=True)


@pytest.mark.parametrize("mode", ["mid_headers", "before_response"])
def test_dying_before_head_502(portico, dying_backend, mode):
    b = dying_backend(mode)
    p = portico("""
        http { server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://%s; } } }""" % b.addr)
    r = http_get(p.url(path="/"))
    assert r.status == 502
    assert "upstream prematurely closed connection while reading response header" in p.error_log()


def test_client_goes_away_upstream_abandoned(portico, backends):
    closed = threading.Event()

    def h(req, c, b):
        if req.path != "/abandon":
            return http_response(200, "ok")
        # no answer until the proxy gives up: it must close its side once
        # the client left (a timed answer raced with the proxy noticing,
        # and a complete answer could have kept the connection pooled)
        try:
            c.settimeout(30)
            if c.recv(1) == b"":
                closed.set()
        except OSError:
            closed.set()
        raise _Close()
    b = backends(h)
    p = portico("""
        http { upstream ka { server %s; keepalive 4; }
            server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://ka; proxy_http_version 1.1;
                         proxy_set_header Connection ""; } } }""" % b.addr)
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"GET /abandon HTTP/1.1\r\nHost: x\r\n\r\n")
    b.wait_requests(1, timeout=20)       # the proxy waits for the backend
    s.close()
    assert closed.wait(20), "the upstream connection was not closed"
    deadline = time.monotonic() + 20
    while "client prematurely closed connection" not in p.error_log() \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "client prematurely closed connection" in p.error_log()
    # the worker still serves
    assert http_get(p.url(path="/")).status == 200


def test_next_upstream_failover(portico, backends):
    good = make_echo_backend(name="good")
    backends.track(good)
    dead = free_port()
    p = portico("""
        http {
            upstream app_backend {
                server 127.0.0.1:%d;
                server %s;
            }
            log_format up '$upstream_addr $upstream_status';
            server { listen 127.0.0.1:@PORT@;
                access_log logs/up.log up;
                location / { proxy_pass http://app_backend;
                             proxy_next_upstream error timeout http_502 http_503;
                             proxy_next_upstream_tries 3; } } }""" % (dead, good.addr))
    for _ in range(4):
        r = http_get(p.url(path="/"))
        assert r.status == 200
    lines = p.access_lines(4, "logs/up.log")
    # the dead one failed once; max_fails=1 keeps it out for fail_timeout
    assert lines[0] in ("127.0.0.1:%d, %s 502, 200" % (dead, good.addr),
                        "%s 200" % good.addr)
    assert any(", " in ln for ln in lines)
    assert all(ln.endswith("200") for ln in lines)


def test_next_upstream_http_503(portico, backends, status_backend):
    bad = status_backend(503)
    good = make_echo_backend(name="good")
    backends.track(good)
    p = portico("""
        http {
            upstream g { server %s; server %s; }
            server { listen 127.0.0.1:@PORT@;
                location /retry/ { proxy_pass http://g; proxy_next_upstream error http_503; }
                location /noretry/ { proxy_pass http://g; }
            } }""" % (bad.addr, good.addr))
    # without http_503 in proxy_next_upstream the 503 is passed on
    seen = sorted(http_get(p.url(path="/noretry/")).status for _ in range(4))
    assert seen == [200, 200, 503, 503]
    for _ in range(4):
        assert http_get(p.url(path="/retry/")).status == 200


def test_no_live_upstreams(portico):
    d1, d2 = free_port(), free_port()
    p = portico("""
        http { upstream g { server 127.0.0.1:%d; server 127.0.0.1:%d; }
            server { listen 127.0.0.1:@PORT@;
                location / { proxy_pass http://g; } } }""" % (d1, d2))
    assert http_get(p.url(path="/")).status == 502
    assert http_get(p.url(path="/")).status == 502
    assert "no live upstreams" in p.error_log() or "Connection refused" in p.error_log()


def test_post_not_retried_after_send(portico, backends):
    """A non-idempotent request is not sent twice once bytes went out."""
    def h(req, c, b):
        c.close()
        from conftest import _Close
        raise _Close()
    b1 = backends(h)
    b2 = backends(h)
    p = portico("""
        http { upstream g { server %s; server %s; }
            server { listen 127.0.0.1:@PORT@;
                location / { proxy_pass http://g; } } }""" % (b1.addr, b2.addr))
    r = http_get(p.url(path="/"), method="POST", body=b"x=1")
    assert r.status == 502
    assert len(b1.requests) + len(b2.requests) == 1
