"""Status across workers: stub_status totals in shared memory, the Prometheus
endpoint (`metrics`), status zones (`status_zone`), the live status page
(`status_page`, `status_json`) and counters that survive a reload."""

import json
import re
import socket
import time

from conftest import conf_test, http_get

STUB_RE = re.compile(
    rb"Active connections: (\d+) \n"
    rb"server accepts handled requests\n"
    rb" (\d+) (\d+) (\d+) \n"
    rb"Reading: (\d+) Writing: (\d+) Waiting: (\d+) \n\Z")


def stub(p, path="/nginx_status"):
    r = http_get(p.url(path=path))
    assert r.status == 200, r
    m = STUB_RE.match(r.body)
    assert m, r.body
    keys = ("active", "accepts", "handled", "requests", "reading", "writing", "waiting")
    return dict(zip(keys, (int(x) for x in m.groups())))


# ---- a tiny Prometheus text-format parser -------------------------------------

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL_RE.match(text, pos)
        assert m, "bad labels: %r" % text
        labels[m.group(1)] = re.sub(r'\\(.)', lambda x: "\n" if x.group(1) == "n" else x.group(1),
                                    m.group(2))
        pos = m.end()
    return labels


def parse_prometheus(text):
    """Returns ({(name, frozenset(labels.items())): value}, {name: type}).
    Checks the exposition rules we rely on: every sample's family has one
    TYPE line before its samples, HELP/TYPE appear once, values are numbers,
    no sample appears twice."""
    samples, types, helps = {}, {}, set()
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helps, "HELP twice: " + name
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert name not in types, "TYPE twice: " + name
            assert typ in ("counter", "gauge", "untyped", "histogram", "summary")
            types[name] = typ
            continue
        assert not line.startswith("#"), line
        m = SAMPLE_RE.match(line)
        assert m, "bad sample line: %r" % line
        name, labels = m.group(1), parse_labels(m.group(3) or "")
        assert name in types, "sample before its TYPE: " + line
        value = float(m.group(4))
        key = (name, frozenset(labels.items()))
        assert key not in samples, "duplicate sample: " + line
        samples[key] = value
    return samples, types


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def scrape(p, path="/metrics", port=None):
    r = http_get(p.url(port=port, path=path))
    assert r.status == 200, r
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
    return parse_prometheus(r.body.decode())


def wait_for(fn, timeout=20.0):
    """fn() until it returns a true value (counters of the LOG phase are
    added just after the response went out, possibly by another worker)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


# ---- stub_status: totals across workers ----------------------------------------

def test_stub_status_totals_across_two_workers(portico):
    p = portico('''
http {
    server {
        listen 127.0.0.1:@PORT@ reuseport;  # one socket per worker: connections spread by hash
        location /nginx_status { stub_status; }
        location /json { status_json; }
        location / { return 200 "ok"; }
    }
}''', workers=2)
    # the start-up readiness probes connect too; with reuseport one may wait
    # in the backlog of a worker that starts polling a moment later: settle
    # until a status request is the only new connection between two reads
    p.wait_workers(2)
    before = stub(p)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        again = stub(p)
        settled = again["accepts"] == before["accepts"] + 1
        before = again
        if settled:
            break
        time.sleep(0.05)
    n = 25
    for _ in range(n):
        assert http_get(p.url(path="/x")).status == 200
    after = stub(p)
    # nginx counts every client request, the status request itself included
    assert after["requests"] == before["requests"] + n + 1, (before, after)
    # + the start-up readiness probe if the worker whose reuseport socket
    # holds it had not taken it yet when `before` was read
    assert before["accepts"] + n + 1 <= after["accepts"] <= before["accepts"] + n + 2, \
        (before, after)
    assert after["handled"] == after["accepts"]
    assert after["writing"] >= 1 and after["active"] >= 1

    # bursts of new connections end up on both workers (reuseport spreads
    # them by the client's port); each answers with the totals, which count every
    # request exactly once whichever worker took it
    def burst(n):
        socks = [socket.create_connection(("127.0.0.1", p.port), timeout=5) for _ in range(n)]
        for s in socks:
            s.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = []
        for s in socks:
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
            answers.append(json.loads(data.split(b"\r\n\r\n", 1)[1]))
        return answers
    pids, sent, totals = set(), 0, []
    for _ in range(30):
        answers = burst(40)
        sent += len(answers)
        pids |= {a["pid"] for a in answers}
        totals += [a["requests"]["total"] for a in answers]
        if len(pids) == 2:
            break
    assert len(pids) == 2, pids
    assert min(totals) >= after["requests"] + 1 and max(totals) <= after["requests"] + sent
    final = stub(p)
    assert final["requests"] == after["requests"] + sent + 1, (after, final, sent)
    assert final["accepts"] == after["accepts"] + sent + 1


def test_guides_nginx_status_location(portico):
    p = portico('''
http {
    server {
        listen 127.0.0.1:@PORT@;
        location /nginx_status {
            stub_status;
            allow 127.0.0.1;
            deny all;
        }
        location /closed {
            stub_status;
            allow 10.1.2.3;
            deny all;
        }
    }
}''', workers=2)
    r = http_get(p.url(path="/nginx_status"))
    assert r.status == 200 and r.headers["Content-Type"] == "text/plain"
    assert STUB_RE.match(r.body), r.body
    assert http_get(p.url(path="/closed")).status == 403


def test_stub_status_counters_survive_reload(portico):
    conf = '''
http {
    server {
        listen 127.0.0.1:@PORT@;
        location /nginx_status { stub_status; }
        location /metrics { metrics; }
        location / { return 204; }
    }
}'''
    p = portico(conf, workers=2)
    for _ in range(5):
        http_get(p.url(path="/a"))
    before = stub(p)
    s0, _ = scrape(p)
    p.reload(conf)
    after = stub(p)
    assert after["requests"] >= before["requests"] + 1
    assert after["accepts"] >= before["accepts"] + 1
    s1, _ = scrape(p)
    assert metric(s1, "portico_config_loads_total") == metric(s0, "portico_config_loads_total") + 1
    assert metric(s1, "process_start_time_seconds") == metric(s0, "process_start_time_seconds")
    assert metric(s1, "portico_http_responses_total", code="2xx") >= 6


# ---- metrics ------------------------------------------------------------------

def test_metrics_prometheus_text(portico):
    p = portico('''
http {
    server {
        listen 127.0.0.1:@PORT@;
        location /metrics { metrics; }
        location /off { metrics off; return 200 "plain"; }
        location / { return 200 "hello"; }
        location /missing { return 404; }
    }
}''', workers=2)
    s0, types = scrape(p)
    assert metric(s0, "portico_info", version="0.1.0") == 1 or \
        any(k[0] == "portico_info" for k in s0)
    assert types["portico_connections_accepted_total"] == "counter"
    assert types["portico_connections"] == "gauge"
    assert types["portico_http_requests_total"] == "counter"
    for state in ("active", "reading", "writing", "waiting"):
        assert metric(s0, "portico_connections", state=state) is not None
    assert metric(s0, "portico_connections", state="writing") >= 1
    start = metric(s0, "process_start_time_seconds")
    assert abs(start - time.time()) < 300

    for _ in range(4):
        http_get(p.url(path="/"))
    http_get(p.url(path="/missing"))
    assert http_get(p.url(path="/off")).body == b"plain"

    scrapes = [0]

    def check():
        # every scrape is a request too; the counters of a request move after
        # its response was sent, so a scrape may see the previous one or not
        s1, _ = scrape(p)
        scrapes[0] += 1
        moved = (metric(s1, "portico_http_requests_total")
                 - metric(s0, "portico_http_requests_total"))
        ok = (6 + 1 <= moved <= 6 + scrapes[0]
              and metric(s1, "portico_http_responses_total", code="2xx")
              >= metric(s0, "portico_http_responses_total", code="2xx") + 5
              and metric(s1, "portico_http_responses_total", code="4xx")
              == metric(s0, "portico_http_responses_total", code="4xx") + 1)
        return s1 if ok else None
    s1 = wait_for(check)
    assert s1, "counters did not move as expected"
    for name in ("portico_connections_accepted_total", "portico_connections_handled_total",
                 "portico_http_received_bytes_total", "portico_http_sent_bytes_total"):
        assert metric(s1, name) > metric(s0, name), name


def test_metrics_status_zones_by_class(portico, status_backend):
    ok, nf, err = status_backend(200), status_backend(404), status_backend(503)
    p = portico('''
http {
    server {
        listen 127.0.0.1:@PORT@;
        status_zone site;
        location /ok { proxy_pass http://127.0.0.1:@OK@; }
        location /nf { proxy_pass http://127.0.0.1:@NF@; }
        location /err { status_zone errors; proxy_pass http://127.0.0.1:@ERR@; }
        location /api {
            status_zone site;
            location /api/inner { return 200 "inner"; }
        }
    }
    server {
        listen 127.0.0.1:@PORT2@;
        location /metrics { metrics; }
        location /status { status_page; }
    }
}''', workers=2, subst={"OK": ok.port, "NF": nf.port, "ERR": err.port})
    port2 = p.ports["PORT2"]
    for _ in range(3):
        assert http_get(p.url(path="/ok")).status == 200
    for _ in range(2):
        assert http_get(p.url(path="/nf")).status == 404
    assert http_get(p.url(path="/err")).status == 503
    assert http_get(p.url(path="/api/inner")).status == 200

    def check():
        s, _ = scrape(p, port=port2)
        z = lambda name, code: metric(s, "portico_server_zone_responses_total", zone=name, code=code)
        good = (z("site", "2xx") == 4 and z("site", "4xx") == 2 and z("site", "5xx") == 1
                and z("errors", "5xx") == 1 and z("errors", "2xx") == 0)
        return s if good else None
    s = wait_for(check)
    assert s, scrape(p, port=port2)[0]
    assert metric(s, "portico_server_zone_requests_total", zone="site") == 7
    assert metric(s, "portico_server_zone_requests_total", zone="errors") == 1
    assert metric(s, "portico_server_zone_received_bytes_total", zone="site") > 0
    assert metric(s, "portico_server_zone_sent_bytes_total", zone="errors") > 0

    # the same numbers in the JSON document
    j = http_get(p.url(port=port2, path="/status?format=json")).json()
    site = j["server_zones"]["site"]
    assert site["requests"] == 7
    assert site["responses"]["2xx"] == 4 and site["responses"]["4xx"] == 2
    assert site["responses"]["5xx"] == 1 and site["responses"]["total"] == 7
    assert j["server_zones"]["errors"]["responses"]["5xx"] == 1
    # implicit proxy_pass groups are listed too, one peer each
    names = {peer["name"] for g in j["upstreams"].values() for peer in g["peers"]}
    assert "127.0.0.1:%d" % ok.port in names


def test_metrics_upstream_peers_and_limit_req(portico, echo_backend):
    p = portico('''
http {
    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
    upstream app {
        zone app 64k;
        server 127.0.0.1:@BE@;
        server 127.0.0.1:@DEAD@ backup;
    }
    server {
        listen 127.0.0.1:@PORT@;
        location /app { proxy_pass http://app; }
        location /limited { limit_req zone=one; proxy_pass http://127.0.0.1:@BE@; }
        location /metrics { metrics; }
    }
}''', workers=2, subst={"BE": echo_backend.port, "DEAD": 1})
    for _ in range(3):
        assert http_get(p.url(path="/app")).status == 200
    assert http_get(p.url(path="/limited")).status == 200
    assert http_get(p.url(path="/limited")).status == 503

    def check():
        s, _ = scrape(p)
        peer = "127.0.0.1:%d" % echo_backend.port
        good = (metric(s, "portico_upstream_peer_requests_total", upstream="app", peer=peer) == 3
                and metric(s, "portico_limit_req_requests_total", result="rejected") == 1
                and metric(s, "portico_limit_req_requests_total", result="passed") == 1)
        return s if good else None
    s = wait_for(check)
    assert s, scrape(p)[0]
    peer = "127.0.0.1:%d" % echo_backend.port
    assert metric(s, "portico_upstream_peer_health", upstream="app", peer=peer, state="up") == 1
    assert metric(s, "portico_upstream_peer_fails_total", upstream="app", peer=peer) == 0
    assert metric(s, "portico_upstream_peer_active", upstream="app", peer=peer) == 0
    assert metric(s, "portico_upstream_peer_requests_total", upstream="app",
                  peer="127.0.0.1:1") == 0


def test_metrics_cache_statuses(portico, echo_backend):
    p = portico('''
http {
    proxy_cache_path @PREFIX@/cache keys_zone=c:1m;
    server {
        listen 127.0.0.1:@PORT@;
        location /c {
            proxy_cache c;
            proxy_cache_valid 200 1m;
            proxy_pass http://127.0.0.1:@BE@;
        }
        location /metrics { metrics; }
    }
}''', subst={"BE": echo_backend.port})
    assert http_get(p.url(path="/c")).status == 200
    assert http_get(p.url(path="/c")).status == 200

    def check():
        s, _ = scrape(p)
        return s if (metric(s, "portico_cache_responses_total", cache_status="miss") == 1
                     and metric(s, "portico_cache_responses_total", cache_status="hit") == 1) else None
    s = wait_for(check)
    assert s, [(k, v) for k, v in scrape(p)[0].items() if k[0].startswith("portico_cache")]


# ---- status page and JSON --------------------------------------------------------

STATUS_CONF = '''
http {
    upstream pool {
        zone pool 64k;
        server 127.0.0.1:@BE@ weight=3;
    }
    server {
        listen 127.0.0.1:@PORT@;
        status_zone front;
        location /status { status_page; allow 127.0.0.1; deny all; }
        location /status.json { status_json; }
        location /app { proxy_pass http://pool; }
    }
}'''


def test_status_json_fields(portico, echo_backend):
    p = portico(STATUS_CONF, workers=2, subst={"BE": echo_backend.port})
    assert http_get(p.url(path="/app")).status == 200
    r = http_get(p.url(path="/status.json"))
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    j = r.json()
    for key in ("version", "generation", "start_time", "load_time", "now_msec", "pid",
                "connections", "requests", "responses", "server_zones", "limit_req", "cache",
                "upstreams"):
        assert key in j, key
    assert set(j["connections"]) == {"accepted", "handled", "active", "reading", "writing",
                                     "waiting"}
    assert j["connections"]["handled"] == j["connections"]["accepted"] >= 2
    assert j["requests"]["total"] >= 2
    assert abs(j["now_msec"] / 1000 - time.time()) < 60
    assert set(j["responses"]) >= {"1xx", "2xx", "3xx", "4xx", "5xx", "none", "total",
                                   "received", "sent"}
    assert "front" in j["server_zones"]
    pool = j["upstreams"]["pool"]
    assert pool["shared"] is True
    (peer,) = pool["peers"]
    assert peer["name"] == "127.0.0.1:%d" % echo_backend.port
    assert peer["state"] == "up" and peer["weight"] == 3 and peer["backup"] is False
    assert peer["requests"] == 1 and peer["fails"] == 0 and peer["active"] == 0

    # the page's own location answers JSON with ?format=json
    j2 = http_get(p.url(path="/status?format=json")).json()
    assert j2["requests"]["total"] > j["requests"]["total"]
    assert http_get(p.url(path="/status?x=1&format=json")).headers["Content-Type"] == \
        "application/json"
    assert http_get(p.url(path="/status.json"), method="POST", body=b"").status == 405


def test_status_page_html(portico, echo_backend):
    p = portico(STATUS_CONF, subst={"BE": echo_backend.port})
    r = http_get(p.url(path="/status"))
    assert r.status == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    html = r.body.decode()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script>" in html and "format=json" in html and "setInterval" in html
    # self-contained: no external scripts, styles, fonts or images
    assert not re.search(r'(src|href)\s*=', html), "external asset referenced"
    assert "http://" not in html and "https://" not in html
    assert http_get(p.url(path="/status"), method="HEAD").status == 200


def test_status_config_errors(tmp_path):
    rc, _, err, _ = conf_test(tmp_path, '''
events { }
http { metrics; }''')
    assert rc != 0 and '"metrics" directive is not allowed here' in err, err
    rc, _, err, _ = conf_test(tmp_path, '''
events { }
http { server { listen 127.0.0.1:1; status_zone %s; } }''' % ("z" * 80))
    assert rc != 0 and "invalid status zone name" in err, err
    rc, _, err, _ = conf_test(tmp_path, '''
events { }
http { server { listen 127.0.0.1:1; status_zone a; status_zone b; } }''')
    assert rc != 0 and '"status_zone" directive is duplicate' in err, err
    rc, _, err, _ = conf_test(tmp_path, '''
events { }
http { server { listen 127.0.0.1:1; location / { metrics bogus; } } }''')
    assert rc != 0 and "it must be" in err, err
    rc, _, err, _ = conf_test(tmp_path, '''
events { }
http { server { listen 127.0.0.1:1; status_zone a;
       location / { status_zone a; status_page; }
       location /m { metrics; } location /j { status_json; } } }''')
    assert rc == 0, err
