"""limit_req: leaky-bucket request rate limiting (src/modules/limit_req.c).

The figures below come from the algorithm (nginx's): per key the zone keeps
an excess in milli-requests; a request sees
    excess' = max(0, excess - rate_milli * elapsed_ms / 1000 + 1000)
and is rejected when excess' > burst * 1000, else stored; it waits
(excess' - delay * 1000) / rate seconds when above the delay threshold
(0 by default, unlimited with nodelay).

Content is served by static files (root html): `return` runs in the rewrite
phase, before PREACCESS, so it is never limited (as nginx)."""

import re
import socket
import threading
import time

import pytest

from conftest import http_get, parse_responses, wait_server_read

HTML = {"html/index.html": "ok\n"}


def pipelined(port, n, path="/", headers=b""):
    """Send n requests at once on one connection; return their statuses.
    Pipelining puts every request in front of the server within a few ms,
    so no leak of the bucket falls between them."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    req = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n"
    t0 = time.monotonic()
    s.sendall(req * n)
    data = b""
    try:
        while len(parse_responses(data)) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return [r.status for r in parse_responses(data)], time.monotonic() - t0


def timed_get(url, out, i, headers=None):
    t0 = time.monotonic()
    try:
        r = http_get(url, headers=headers, timeout=10)
        out[i] = (r.status, time.monotonic() - t0)
    except Exception as ex:   # noqa: BLE001 - reported by the assertion
        out[i] = (repr(ex), time.monotonic() - t0)


def concurrent(url, n, headers=None, stagger=0.0):
    out = [None] * n
    ts = []
    for i in range(n):
        t = threading.Thread(target=timed_get, args=(url, out, i, headers))
        t.start()
        ts.append(t)
        if stagger:
            time.sleep(stagger)
    for t in ts:
        t.join(15)
    return out


def wait_log(p, pattern, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, p.error_log())
        if m:
            return m
        time.sleep(0.05)
    return None


def test_guide_burst_nodelay_429(portico):
    # The guide (seed 000): rate=10r/s burst=20 nodelay, limit_req_status 429,
    # "send 25 rapid requests: the first 20 pass". The algorithm's figure is
    # 21: the first request finds no node (excess 0) and passes; requests 2..21
    # raise the excess by 1000 each to 20000 = burst * 1000, still allowed
    # (only excess > burst is rejected); the 22nd would make it 21000 > 20000.
    # At 10r/s one request leaks per 100 ms, and the 25 pipelined requests
    # arrive within a few ms, so exactly 21 x 200, then 4 x 429.
    p = portico("""
        http {
            limit_req_zone $binary_remote_addr zone=api_limit:10m rate=10r/s;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                location / {
                    limit_req zone=api_limit burst=20 nodelay;
                    limit_req_status 429;
                }
            }
        }""", files=HTML)
    statuses, elapsed = pipelined(p.port, 25)
    assert elapsed < 0.1 or statuses.count(200) <= 21 + int(elapsed * 10), statuses
    if elapsed < 0.1:
        assert statuses == [200] * 21 + [429] * 4, statuses
    m = wait_log(p, r'\[error\] .*limiting requests, excess: (\d+)\.(\d{3}) by zone "api_limit", '
                    r'client: 127\.0\.0\.1, server: , request: "GET / HTTP/1\.1"')
    assert m, p.error_log()[-2000:]
    assert 20000 < int(m.group(1)) * 1000 + int(m.group(2)) <= 21000


def test_default_status_503_and_no_burst(portico):
    p = portico("""
        http {
            limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                location / { limit_req zone=one; }
            }
        }""", files=HTML)
    statuses, _ = pipelined(p.port, 3)
    assert statuses == [200, 503, 503]


def concurrent_from_origin(url, n, stagger=0.01):
    """n requests from n threads; (status, completion time measured from one
    origin taken before the first request left) for each."""
    origin = time.monotonic()
    out = [None] * n

    def one(i):
        try:
            st = http_get(url, timeout=20).status
        except Exception as ex:   # noqa: BLE001 - reported by the assertion
            st = repr(ex)
        out[i] = (st, time.monotonic() - origin)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
        time.sleep(stagger)
    for t in ts:
        t.join(30)
    return out


def test_delay_without_nodelay(portico):
    # rate=1r/s burst=2: requests at once wait 0, 1 and 2 s (excess 0,
    # 1000, 2000 at 1000 milli-requests/s); the 4th (excess 3000 > 2000) is
    # rejected at once. The delayed ones end 1 s and 2 s after the first one
    # arrived, whenever the others arrived (the bucket accounts for that), so
    # completion times from a common origin have firm lower bounds; how late
    # a loaded machine finishes them is not the point (loose upper bounds),
    # and which ones were not delayed is what the server logs.
    p = portico("""
        http {
            log_format st '$limit_req_status $status';
            access_log logs/access.log st;
            limit_req_zone $binary_remote_addr zone=two:1m rate=1r/s;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                location / { limit_req zone=two burst=2; }
            }
        }""", files=HTML)
    done = concurrent_from_origin(p.url(), 4)
    statuses = sorted(o[0] for o in done)
    assert statuses == [200, 200, 200, 503], done
    times = sorted(o[1] for o in done if o[0] == 200)
    assert times[1] > 0.95 and times[2] > 1.95, done
    assert times[2] < 10, done
    assert sorted(p.access_lines(4)) == ["DELAYED 200", "DELAYED 200", "PASSED 200",
                                         "REJECTED 503"]
    assert wait_log(p, r'\[warn\] .*delaying request, excess: [01]\.\d{3}, by zone "two"'), \
        p.error_log()[-2000:]


def test_delay_parameter_two_stage(portico):
    # burst=4 delay=2: the first request and 2 excess ones pass at once, the
    # next 2 wait (excess 3000 -> (3000-2000)/1000 = 1 s, 4000 -> 2 s), the
    # 6th is rejected (see test_delay_without_nodelay for the bounds).
    p = portico("""
        http {
            log_format st '$limit_req_status $status';
            access_log logs/access.log st;
            limit_req_zone $binary_remote_addr zone=d:1m rate=1r/s;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                location / { limit_req zone=d burst=4 delay=2; }
            }
        }""", files=HTML)
    done = concurrent_from_origin(p.url(), 6)
    assert sorted(o[0] for o in done) == [200] * 5 + [503], done
    times = sorted(o[1] for o in done if o[0] == 200)
    assert times[3] > 0.95 and times[4] > 1.95, done
    assert times[4] < 10, done
    assert sorted(p.access_lines(6)) == ["DELAYED 200"] * 2 + ["PASSED 200"] * 3 + \
        ["REJECTED 503"]


def test_dry_run_and_status_variable(portico):
    p = portico("""
        http {
            log_format st '$request_uri $status $limit_req_status';
            access_log logs/access.log st;
            limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
            limit_req_zone $binary_remote_addr zone=two:1m rate=1r/m;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                location /dry/ { alias html/; limit_req zone=one; limit_req_dry_run on; }
                location /real/ { alias html/; limit_req zone=two burst=1 nodelay; }
                location /free/ { alias html/; }
            }
        }""", files=HTML)
    statuses, _ = pipelined(p.port, 3, "/dry/")
    assert statuses == [200, 200, 200]
    statuses, _ = pipelined(p.port, 3, "/real/")
    assert statuses == [200, 200, 503]
    assert http_get(p.url(path="/free/")).status == 200
    lines = p.access_lines(7)
    assert lines == [
        "/dry/ 200 PASSED", "/dry/ 200 REJECTED_DRY_RUN", "/dry/ 200 REJECTED_DRY_RUN",
        "/real/ 200 PASSED", "/real/ 200 PASSED", "/real/ 503 REJECTED",
        "/free/ 200 -",
    ], lines
    assert wait_log(p, r'limiting requests, dry run, excess: 1\.\d{3} by zone "one"')


def test_delayed_status_and_log_level(portico):
    p = portico("""
        http {
            log_format st '$status $limit_req_status';
            access_log logs/access.log st;
            limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                limit_req_log_level notice;
                location / { limit_req zone=one burst=3; }
            }
        }""", files=HTML)
    out = concurrent(p.url(), 2, stagger=0.01)
    assert sorted(o[0] for o in out) == [200, 200], out
    assert sorted(p.access_lines(2)) == ["200 DELAYED", "200 PASSED"]
    # delayed requests are logged one level below limit_req_log_level
    assert wait_log(p, r'\[info\] .*delaying request, excess: [01]\.\d{3}, by zone "one"')


def test_dry_run_delay(portico):
    p = portico("""
        http {
            log_format st '$status $limit_req_status';
            access_log logs/access.log st;
            limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                limit_req_dry_run on;
                location / { limit_req zone=one burst=3; }
            }
        }""", files=HTML)
    statuses, elapsed = pipelined(p.port, 2)
    # a real delay would be 60 s (1r/m): any bound well below tells them apart
    assert statuses == [200, 200] and elapsed < 10.0, elapsed
    assert p.access_lines(2) == ["200 PASSED", "200 DELAYED_DRY_RUN"]
    assert wait_log(p, r'delaying request, dry run, excess: 1\.000, by zone "one"')


def test_several_limits_and_inheritance(portico):
    p = portico("""
        http {
            limit_req_zone $binary_remote_addr zone=a:1m rate=1r/m;
            limit_req_zone $binary_remote_addr zone=b:1m rate=1r/m;
            limit_req_zone $binary_remote_addr zone=c:1m rate=1r/m;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                limit_req zone=a burst=1 nodelay;
                location / { }
                location /own/ { alias html/; limit_req zone=b burst=3 nodelay; }
                location /both/ {
                    alias html/;
                    limit_req zone=c burst=5 nodelay;
                    limit_req zone=b burst=9 nodelay;
                }
            }
        }""", files=HTML)
    # / inherits the server's zone a (burst 1): 2 pass
    assert pipelined(p.port, 3, "/")[0] == [200, 200, 503]
    # /own/ has its own limit (b, burst 3), the server's one is not inherited
    assert pipelined(p.port, 5, "/own/")[0] == [200] * 4 + [503]
    # /both/: b already holds 4 requests (excess 3000): 6 more fit burst 9;
    # c (burst 5) allows 6; both apply, so 6 pass and b is charged for them
    assert pipelined(p.port, 8, "/both/")[0] == [200] * 6 + [503] * 2
    # a rejected request is not charged to the other zones: c (excess 5000)
    # rejected the last two, b got exactly 6 more: 4 + 6 = 10 = burst 9 + 1
    assert pipelined(p.port, 1, "/own/")[0] == [503]


def test_empty_key_not_limited(portico):
    p = portico("""
        http {
            limit_req_zone $http_x_key zone=k:1m rate=1r/m;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                location / { limit_req zone=k; }
            }
        }""", files=HTML)
    assert pipelined(p.port, 5)[0] == [200] * 5
    assert pipelined(p.port, 3, headers=b"X-Key: a\r\n")[0] == [200, 503, 503]
    assert pipelined(p.port, 2, headers=b"X-Key: b\r\n")[0] == [200, 503]


def _one_request(port, out, i):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        out[i] = parse_responses(data)[0].status
    except Exception as ex:   # noqa: BLE001 - reported by the assertion
        out[i] = repr(ex)


def test_several_workers_share_the_zone(portico):
    # rate=1r/m: nothing leaks during the test, so the count is exact
    # whatever the timing: 1 + burst (5) requests pass in total, whichever
    # worker serves them (a per-worker state would pass 6 per worker).
    p = portico("""
        http {
            log_format w '$pid $status';
            access_log logs/access.log w;
            limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
            server {
                listen 127.0.0.1:@PORT@ reuseport;   # spread over the workers by hash
                root html;
                location / { limit_req zone=one burst=5 nodelay; }
            }
        }""", workers=4, files=HTML)
    p.wait_workers(4)
    n = 60
    out = [None] * n
    ts = [threading.Thread(target=_one_request, args=(p.port, out, i)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    assert out.count(200) == 6, out
    assert out.count(503) == n - 6, out
    served = {}
    for ln in p.access_lines(n):
        pid, status = ln.split()
        served.setdefault(pid, []).append(status)
    if len(served) < 2:
        pytest.skip("the kernel gave every connection to one worker (%s)" % served.keys())


def test_zone_survives_reload(portico):
    conf = """
        http {
            limit_req_zone $binary_remote_addr zone=one:%s rate=1r/m;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                location / { limit_req zone=one burst=2 nodelay; }
            }
        }"""
    p = portico(conf % "1m", files=HTML)
    assert pipelined(p.port, 4)[0] == [200, 200, 200, 503]
    p.reload(conf % "1m")
    # same name and size: the bucket is full still
    assert pipelined(p.port, 1)[0] == [503]
    # another size: a new zone, empty
    p.reload(conf % "2m")
    assert pipelined(p.port, 4)[0] == [200, 200, 200, 503]


def test_reload_with_another_key_fails(portico):
    conf = """
        http {
            limit_req_zone %s zone=one:1m rate=1r/m;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                location / { limit_req zone=one; }
            }
        }"""
    p = portico(conf % "$binary_remote_addr", files=HTML)
    assert pipelined(p.port, 2)[0] == [200, 503]
    fresh = p.reload(conf % "$remote_addr", expect_ok=False)
    assert ('limit_req "one" uses the "$remote_addr" key while previously it used the '
            '"$binary_remote_addr" key') in fresh
    # the old configuration keeps running, with its state
    assert pipelined(p.port, 1)[0] == [503]


def test_client_closes_while_delayed(portico):
    p = portico("""
        http {
            log_format st '$status $limit_req_status';
            access_log logs/access.log st;
            limit_req_zone $binary_remote_addr zone=one:1m rate=30r/m;
            server {
                listen 127.0.0.1:@PORT@;
                root html;
                location / { limit_req zone=one burst=5; }
            }
        }""", files=HTML)
    assert http_get(p.url()).status == 200
    # the second request within 2 s (30r/m) of the first is delayed 2 s
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_server_read(s)
    s.close()
    assert wait_log(p, r"\[info\] .*client prematurely closed connection"), \
        p.error_log()[-2000:]
    time.sleep(2.5)   # past the delay: the timer must be gone with the request
    assert "499 DELAYED" in p.access_lines(2)
    assert http_get(p.url()).status == 200


def test_config_errors(tmp_path):
    from conftest import conf_test
    cases = [
        ("limit_req_zone $binary_remote_addr zone=one:10m rate=10r/h;",
         'invalid rate "rate=10r/h"'),
        ("limit_req_zone $binary_remote_addr zone=one:1k rate=1r/s;",
         'zone "zone=one:1k" is too small'),
        ("limit_req_zone $binary_remote_addr rate=1r/s foo=bar;",
         'invalid parameter "foo=bar"'),
        ("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s;"
         " limit_req_zone $remote_addr zone=one:1m rate=1r/s;",
         'limit_req_zone "one" is already bound to key "$binary_remote_addr"'),
        ("server { location / { limit_req zone=nope; } }",
         'zero size shared memory zone "nope"'),
        ("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s;"
         " server { location / { limit_req zone=one burst=0; } }",
         'invalid burst value "burst=0"'),
        ("limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s;"
         " server { location / { limit_req zone=one; limit_req zone=one; } }",
         '"limit_req" directive is duplicate'),
        ("server { limit_req_status 600; }", "value must be between 400 and 599"),
        ("server { limit_req_log_level debug; }", 'invalid value "debug"'),
    ]
    for i, (body, msg) in enumerate(cases):
        d = tmp_path / ("c%d" % i)
        rc, out, err, _ = conf_test(d, "events {} http { %s }" % body)
        assert rc != 0 and msg in err, (body, err)
    d = tmp_path / "ok"
    rc, out, err, _ = conf_test(d, """events {} http {
        limit_req_zone $binary_remote_addr zone=one:10m rate=30r/m sync;
        limit_req zone=one burst=10 nodelay;
        limit_req_status 429; limit_req_log_level warn; limit_req_dry_run off;
        server { location / { limit_req zone=one burst=5 delay=2; } } }""")
    assert rc == 0, err


def test_http2_streams_delayed_and_zone_declared_later(portico):
    # limit_req may name a zone declared further down (nginx); over HTTP/2
    # each stream is a request: the second one waits 0.5 s (rate 2r/s).
    import subprocess
    p = portico("""
        http {
            server {
                listen 127.0.0.1:@PORT@;
                http2 on;
                root html;
                location / { limit_req zone=late burst=1; }
            }
            limit_req_zone $binary_remote_addr zone=late:1m rate=2r/s;
        }""", files=HTML)
    t0 = time.monotonic()
    cp = subprocess.run(["nghttp", "-nv", p.url(path="/?a"), p.url(path="/?b")],
                        capture_output=True, timeout=15)
    elapsed = time.monotonic() - t0
    text = cp.stdout.decode("latin-1")
    assert sorted(re.findall(r":status: (\d+)", text)) == ["200", "200"], text[-2000:]
    assert 0.35 < elapsed < 10.0, elapsed
    assert wait_log(p, r'delaying request, excess: [01]\.\d{3}, by zone "late"')


def test_http2_connection_closed_while_delayed(portico):
    # the client drops the h2 connection while a stream waits: the request
    # ends with the connection and its timer goes with it
    import subprocess
    p = portico("""
        http {
            log_format st '$status $limit_req_status';
            access_log logs/access.log st;
            limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s;
            server {
                listen 127.0.0.1:@PORT@;
                http2 on;
                root html;
                location / { limit_req zone=one burst=5; }
            }
        }""", files=HTML)
    proc = subprocess.Popen(["nghttp", "-n", p.url(path="/?a"), p.url(path="/?b")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_log(p, r'delaying request, excess: [01]\.\d{3}, by zone "one"')
    proc.kill()
    proc.wait(5)
    time.sleep(1.5)   # past the delay
    assert http_get(p.url()).status in (200, 503)
    lines = p.access_lines(3)
    assert "200 PASSED" in lines and any(ln.endswith(" DELAYED") and not ln.startswith("200")
                                         for ln in lines), lines
