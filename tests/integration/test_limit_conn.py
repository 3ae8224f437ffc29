"""limit_conn: concurrent requests per key (src/modules/limit_conn.c).

A request holds one count per limit_conn of its location from PREACCESS
until it ends; a key at its limit gets limit_conn_status (503 by default).
Counts live in a shared zone, so every worker limits as one."""

import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import conf_test, http_get, http_response, parse_responses


@pytest.fixture
def held_backend(backends):
    """A backend that holds every request until the test calls .release()
    (a fixed delay races with a loaded machine: the request meant to be in
    flight could end before the one that must see its count). Released at
    teardown, before Portico stops."""
    ev = threading.Event()

    def h(req, c, b):
        ev.wait(60)
        return http_response(200, "slow")
    b = backends(h, name="held")
    b.release = ev.set
    b.hold = ev.clear
    yield b
    ev.set()


def start_slow(url, out, key="a", headers=None):
    def run():
        try:
            out[key] = http_get(url, headers=headers, timeout=10).status
        except Exception as ex:   # noqa: BLE001 - reported by the assertion
            out[key] = repr(ex)
    t = threading.Thread(target=run)
    t.start()
    return t


def wait_backend(b, n, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(b.requests) < n:
        time.sleep(0.02)
    assert len(b.requests) >= n


def wait_log(p, pattern, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, p.error_log())
        if m:
            return m
        time.sleep(0.05)
    return None


CONF = """
    http {
        log_format st '$request_uri $status $limit_conn_status';
        access_log logs/access.log st;
        limit_conn_zone $binary_remote_addr zone=conn_limit:10m;
        limit_conn_zone $http_x_key zone=by_key:1m;
        server {
            listen 127.0.0.1:@PORT@;
            location /one/ { limit_conn conn_limit 1; proxy_pass http://127.0.0.1:@BACK@; }
            location /status/ {
                limit_conn conn_limit 1;
                limit_conn_status 429;
                limit_conn_log_level warn;
                proxy_pass http://127.0.0.1:@BACK@;
            }
            location /dry/ {
                limit_conn conn_limit 1;
                limit_conn_dry_run on;
                proxy_pass http://127.0.0.1:@BACK@;
            }
            location /key/ { limit_conn by_key 1; proxy_pass http://127.0.0.1:@BACK@; }
            location /two/ { limit_conn conn_limit 2; proxy_pass http://127.0.0.1:@BACK@; }
        }
    }"""


def test_second_concurrent_request_rejected(portico, held_backend):
    b = held_backend
    p = portico(CONF, subst={"BACK": b.port})
    out = {}
    t = start_slow(p.url(path="/one/"), out)
    wait_backend(b, 1)
    r = http_get(p.url(path="/one/"))
    assert r.status == 503
    b.release()
    t.join()
    assert out["a"] == 200
    # the count went back when the first request ended
    assert http_get(p.url(path="/one/"), timeout=5).status == 200
    m = wait_log(p, r'\[error\] .*limiting connections by zone "conn_limit", client: 127\.0\.0\.1, '
                    r'server: , request: "GET /one/ HTTP/1\.1"')
    assert m, p.error_log()[-2000:]
    lines = p.access_lines(3)
    assert "/one/ 503 REJECTED" in lines and lines.count("/one/ 200 PASSED") == 2, lines


def test_limit_conn_status_and_log_level(portico, held_backend):
    b = held_backend
    p = portico(CONF, subst={"BACK": b.port})
    out = {}
    t = start_slow(p.url(path="/status/"), out)
    wait_backend(b, 1)
    assert http_get(p.url(path="/status/")).status == 429
    b.release()
    t.join()
    assert out["a"] == 200
    assert wait_log(p, r'\[warn\] .*limiting connections by zone "conn_limit"')


def test_limit_two(portico, held_backend):
    b = held_backend
    p = portico(CONF, subst={"BACK": b.port})
    out = {}
    t1 = start_slow(p.url(path="/two/"), out, "a")
    t2 = start_slow(p.url(path="/two/"), out, "b")
    wait_backend(b, 2)
    assert http_get(p.url(path="/two/")).status == 503
    b.release()
    t1.join()
    t2.join()
    assert out == {"a": 200, "b": 200}


def test_dry_run(portico, held_backend):
    b = held_backend
    p = portico(CONF, subst={"BACK": b.port})
    out = {}
    t = start_slow(p.url(path="/dry/"), out)
    wait_backend(b, 1)
    t2 = start_slow(p.url(path="/dry/"), out, "b")    # over the limit, passes (dry run)
    wait_backend(b, 2)
    b.release()
    t.join()
    t2.join()
    assert out == {"a": 200, "b": 200}
    assert wait_log(p, r'limiting connections, dry run, by zone "conn_limit"')
    lines = p.access_lines(2)
    assert sorted(lines) == ["/dry/ 200 PASSED", "/dry/ 200 REJECTED_DRY_RUN"], lines


def test_empty_key_not_counted(portico, held_backend):
    b = held_backend
    p = portico(CONF, subst={"BACK": b.port})
    out = {}
    # no X-Key: not counted, both run at once
    t1 = start_slow(p.url(path="/key/"), out, "a")
    t2 = start_slow(p.url(path="/key/"), out, "b")
    wait_backend(b, 2)
    b.release()
    t1.join()
    t2.join()
    assert out == {"a": 200, "b": 200}
    assert p.access_lines(2) == ["/key/ 200 -", "/key/ 200 -"]
    # with a key: one at a time per key, other keys are independent
    b.hold()
    t = start_slow(p.url(path="/key/"), out, "c", headers={"X-Key": "k1"})
    wait_backend(b, 3)
    assert http_get(p.url(path="/key/"), headers={"X-Key": "k1"}).status == 503
    t2 = start_slow(p.url(path="/key/"), out, "d", headers={"X-Key": "k2"})
    wait_backend(b, 4)                   # k2 passed the limit while k1 is held
    b.release()
    t.join()
    t2.join()
    assert out["c"] == 200 and out["d"] == 200


def test_count_released_when_client_goes_away(portico, slow_backend):
    b = slow_backend(1.0)
    p = portico(CONF, subst={"BACK": b.port})
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"GET /one/ HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_backend(b, 1)
    s.close()
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        status = http_get(p.url(path="/one/"), timeout=5).status
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200, p.error_log()[-2000:]


def test_workers_share_counts(portico, held_backend):
    b = held_backend
    p = portico(CONF, workers=4, subst={"BACK": b.port})
    p.wait_workers(4)
    out = {}
    t = start_slow(p.url(path="/one/"), out)
    wait_backend(b, 1)
    # whichever worker takes them, they see the count of the first one
    results = [None] * 12

    def one(i):
        try:
            results[i] = http_get(p.url(path="/one/"), timeout=5).status
        except Exception as ex:   # noqa: BLE001
            results[i] = repr(ex)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    b.release()
    t.join()
    assert out["a"] == 200
    assert results == [503] * 12, results


def test_zone_kept_across_reload(portico, held_backend):
    # a request of an old worker still holds its count in the kept zone
    b = held_backend
    p = portico(CONF, subst={"BACK": b.port})
    out = {}
    t = start_slow(p.url(path="/one/"), out)
    wait_backend(b, 1)
    p.reload(CONF)
    assert http_get(p.url(path="/one/")).status == 503
    b.release()
    t.join()
    assert out["a"] == 200
    assert http_get(p.url(path="/one/"), timeout=5).status == 200


def test_http2_streams_count(portico, held_backend):
    # HTTP/2: each concurrent stream counts as one connection (nginx)
    b = held_backend
    p = portico(CONF.replace("listen 127.0.0.1:@PORT@;", "listen 127.0.0.1:@PORT@; http2 on;"),
                subst={"BACK": b.port})
    proc = subprocess.Popen(["nghttp", "-nv", p.url(path="/one/?a"), p.url(path="/one/?b")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_backend(b, 1)                # one stream is held at the backend
        lines = p.access_lines(1)         # the other one was answered
        b.release()
        stdout, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lines and lines[0].split()[1] == "503", lines
    text = stdout.decode("latin-1")
    codes = re.findall(r":status: (\d+)", text)
    assert sorted(codes) == ["200", "503"], text[-2000:]


def test_config_errors(tmp_path):
    cases = [
        ("limit_conn_zone $binary_remote_addr zone=a:1k;", 'zone "zone=a:1k" is too small'),
        ("limit_conn_zone $binary_remote_addr foo=1;", 'invalid parameter "foo=1"'),
        ("limit_conn_zone $binary_remote_addr zone=a:1m;"
         " limit_conn_zone $remote_addr zone=a:1m;",
         'limit_conn_zone "a" is already bound to key "$binary_remote_addr"'),
        ("server { limit_conn nope 1; }", 'zero size shared memory zone "nope"'),
        ("limit_conn_zone $binary_remote_addr zone=a:1m; server { limit_conn a 0; }",
         'invalid number of connections "0"'),
        ("limit_conn_zone $binary_remote_addr zone=a:1m; server { limit_conn a 70000; }",
         "connection limit must be less 65536"),
        ("limit_conn_zone $binary_remote_addr zone=a:1m; server { limit_conn a 1; limit_conn a 2; }",
         '"limit_conn" directive is duplicate'),
        ("server { limit_conn_status 99; }", "value must be between 400 and 599"),
    ]
    for i, (body, msg) in enumerate(cases):
        d = tmp_path / ("c%d" % i)
        rc, out, err, _ = conf_test(d, "events {} http { %s }" % body)
        assert rc != 0 and msg in err, (body, err)
    d = tmp_path / "ok"
    rc, out, err, _ = conf_test(d, """events {} http {
        limit_conn_zone $binary_remote_addr zone=conn_limit:10m;
        limit_conn conn_limit 20;
        limit_conn_status 429; limit_conn_log_level info; limit_conn_dry_run off;
        server { location /api/upload/ { limit_conn conn_limit 5; } } }""")
    assert rc == 0, err
