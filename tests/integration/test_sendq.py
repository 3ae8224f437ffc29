"""Batched sends (src/net/sendq.c): small writes are staged and submitted
through io_uring once per loop iteration. What a client and a backend see
must not change: bytes in order, nothing lost when a connection closes right
after its last write, large writes never overtaking staged ones. Each test
runs with batching on (the default) and off (`events { io_uring_send off; }`)
and compares."""
import hashlib
import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import parse_responses, raw_request, wait_server_read

EVENTS = {"on": "events { worker_connections 1024; }",
          "off": "events { worker_connections 1024; io_uring_send off; }"}


def _files(tmp_path):
    d = tmp_path / "www"
    d.mkdir(exist_ok=True)
    for i in range(20):
        (d / ("s%d.txt" % i)).write_bytes(("small %d " % i).encode() * (i + 1))
    big = os.urandom(1 << 20)
    (d / "big.bin").write_bytes(big)
    return d, big


@pytest.mark.parametrize("mode", ["on", "off"])
def test_pipelined_small_and_large_responses_keep_their_order(portico, tmp_path, mode):
    d, big = _files(tmp_path)
    p = portico("""
        %s
        http { access_log off; server { listen 127.0.0.1:@PORT@; root %s; } }""" % (EVENTS[mode], d))
    # small, large, small... pipelined on one connection: the large file
    # goes out with a direct write while the small answers before it may
    # still be staged; the order must hold
    order = []
    req = b""
    for i in range(20):
        order.append("s%d.txt" % i)
        if i % 5 == 4:
            order.append("big.bin")
    for name in order:
        req += b"GET /" + name.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    req += b"GET /s0.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    order.append("s0.txt")
    data = raw_request(p.port, req, timeout=20)
    resps = parse_responses(data)
    assert len(resps) == len(order)
    for name, r in zip(order, resps):
        assert r.status == 200
        expect = big if name == "big.bin" else (d / name).read_bytes()
        assert hashlib.sha256(r.body).digest() == hashlib.sha256(expect).digest(), name


@pytest.mark.parametrize("mode", ["on", "off"])
def test_close_right_after_the_last_write_loses_nothing(portico, tmp_path, mode):
    d, _ = _files(tmp_path)
    p = portico("""
        %s
        http { access_log off; server { listen 127.0.0.1:@PORT@; root %s;
            location /r { return 200 "returned body\\n"; } } }""" % (EVENTS[mode], d))
    for i in range(50):
        name = "/s%d.txt" % (i % 20) if i % 2 else "/r"
        data = raw_request(p.port, b"GET " + name.encode()
                           + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        resps = parse_responses(data)
        assert len(resps) == 1 and resps[0].status == 200
        expect = b"returned body\n" if name == "/r" else (d / name[1:]).read_bytes()
        assert resps[0].body == expect


@pytest.mark.parametrize("mode", ["on", "off"])
def test_proxied_keepalive_requests_reach_the_backend_whole(portico, echo_backend, mode):
    p = portico("""
        %s
        http { access_log off;
          upstream b { server %s; keepalive 4; }
          server { listen 127.0.0.1:@PORT@;
            location / { proxy_pass http://b; proxy_http_version 1.1;
                         proxy_set_header Connection ""; } } }""" % (EVENTS[mode], echo_backend.addr))
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    try:
        for i in range(100):
            body = (b"%d-" % i) * (1 + i * 7)
            s.sendall(b"POST /n%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (i, len(body))
                      + body)
            data = b""
            while True:
                got = parse_responses(data)
                if got:
                    break
                chunk = s.recv(65536)
                assert chunk, "connection closed after %d requests" % i
                data += chunk
            assert got[0].status == 200
        bodies = [q.body for q in echo_backend.requests]
        assert bodies == [(b"%d-" % i) * (1 + i * 7) for i in range(100)]
        assert [q.target for q in echo_backend.requests] == ["/n%d" % i for i in range(100)]
    finally:
        s.close()


def test_a_slow_reader_gets_every_byte_in_order(portico, tmp_path):
    """Many small responses to a client that does not read for a while: the
    socket fills, a staged block waits in flight, later writes queue behind
    it or get 'again' and resume from the completion."""
    d, _ = _files(tmp_path)
    p = portico("""
        http { access_log off; server { listen 127.0.0.1:@PORT@; root %s; } }""" % d)
    n = 900      # below keepalive_requests (1000)
    names = ["s%d.txt" % (i % 20) for i in range(n)]
    req = b"".join(b"GET /" + x.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n" for x in names)
    s = socket.create_connection(("127.0.0.1", p.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.sendall(req)
        # wait until the server has read everything it will read before the
        # socket to us is full, then read slowly
        wait_server_read(s)
        time.sleep(0.5)
        data = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            if len(parse_responses(data)) == n:
                break
        resps = parse_responses(data)
        assert len(resps) == n
        for x, r in zip(names, resps):
            assert r.status == 200 and r.body == (d / x).read_bytes()
    finally:
        s.close()


def _strace_counts(pid, fn):
    """Runs fn() with strace attached to pid; returns {syscall: calls}."""
    out = subprocess.Popen(["strace", "-f", "-c", "-p", str(pid), "-e",
                            "trace=sendmsg,sendto,writev,io_uring_enter"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)      # attached
    try:
        fn()
    finally:
        time.sleep(0.3)
        out.terminate()
        err = out.communicate(timeout=20)[1]
    counts = {}
    for line in err.splitlines():
        f = line.split()
        if len(f) >= 5 and f[-1] in ("sendmsg", "sendto", "writev", "io_uring_enter"):
            try:
                counts[f[-1]] = int(f[3])
            except ValueError:
                pass
    return counts


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("mode", ["on", "off"])
def test_responses_leave_through_io_uring_when_on(portico, tmp_path, mode):
    d, _ = _files(tmp_path)
    p = portico("""
        %s
        http { access_log off; server { listen 127.0.0.1:@PORT@; root %s; } }""" % (EVENTS[mode], d))
    worker = p.wait_workers(1)[0]     # the worker may still be starting
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)

    def load():
        for i in range(200):
            s.sendall(b"GET /s1.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not parse_responses(data):
                data += s.recv(65536)

    try:
        counts = _strace_counts(worker, load)
    finally:
        s.close()
    sends = counts.get("sendmsg", 0) + counts.get("sendto", 0) + counts.get("writev", 0)
    if mode == "on":
        if counts.get("io_uring_enter", 0) == 0 and sends >= 200:
            pytest.skip("io_uring is not available here (the error log says why)")
        assert counts.get("io_uring_enter", 0) >= 150, counts
        assert sends < 20, counts
    else:
        assert counts.get("io_uring_enter", 0) == 0, counts
        assert sends >= 200, counts
