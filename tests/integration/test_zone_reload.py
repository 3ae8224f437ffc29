"""Shared-memory zones across reloads are two-phase: a reload that fails after
the zones were initialised (here: the new pid file cannot be written, which
happens after every zone's init) changes nothing the running workers see, and
a later good reload still finds the running state.

Upstream zones: a group whose server list did not change keeps everything
(servers added through the API, down flags, failures, health); a changed group
is rebuilt from the configuration (servers added at runtime are dropped).
Statistics zone: a failed reload renames no status_zone slot."""

import collections

from conftest import http_get
from test_status import metric, scrape, wait_for
from test_upstream import Client, mk
from test_upstream_api import call

BROKEN_PID = "pid @PREFIX@/conf/portico.conf/not-a-dir.pid;\n"


def upstream_conf(servers, pid=""):
    return pid + '''
http {
    upstream pool {
        zone pool 256k;
        %s
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_pass http://pool; }
        location /api/ { api write=on; }
    }
}''' % "".join("server %s; " % s for s in servers)


def served(p, n):
    cl = Client(p.port)
    return collections.Counter(cl.get()[1] for _ in range(n))


def state(p):
    st, js = call(p, "GET", "/api/upstreams/pool/servers")
    assert st == 200, js
    return {x["server"]: x["state"] for x in js}


def test_failed_reload_keeps_upstream_zone_state(portico, backends):
    a, b, c = mk(backends, 3)
    p = portico(upstream_conf([a.addr]), workers=2)
    st, js = call(p, "POST", "/api/upstreams/pool/servers", {"server": b.addr})
    assert st == 201, js
    ids = {x["server"]: x["id"] for x in call(p, "GET", "/api/upstreams/pool/servers")[1]}
    st, js = call(p, "PATCH", "/api/upstreams/pool/servers/%d" % ids[a.addr], {"down": True})
    assert st == 200 and js["state"] == "down"
    running = {a.addr: "down", b.addr: "up"}
    assert state(p) == running
    assert set(served(p, 8)) == {"b1"}

    # a broken reload whose group changed: zones initialised, then it fails
    log = p.reload(BROKEN_PID + upstream_conf([a.addr, c.addr]), expect_ok=False)
    assert "not-a-dir.pid" in log
    assert state(p) == running
    assert set(served(p, 8)) == {"b1"}

    # again, to check that what the failed reloads staged does not pile up
    p.reload(BROKEN_PID + upstream_conf([a.addr, c.addr]), expect_ok=False)

    # a good reload with the group unchanged: the running state carries over
    p.reload(upstream_conf([a.addr]))
    assert state(p) == running
    got = collections.Counter()
    for _ in range(4):
        got.update(served(p, 4))
    assert set(got) == {"b1"}, got

    # a good reload that changes the group: rebuilt from the configuration,
    # the server added through the API is gone (docs/upstream.md)
    p.reload(upstream_conf([a.addr, c.addr]))
    assert state(p) == {a.addr: "up", c.addr: "up"}
    assert set(served(p, 8)) == {"b0", "b2"}


def test_failed_reload_with_unchanged_group_then_good_one(portico, backends):
    a, b = mk(backends, 2)
    conf = upstream_conf([a.addr])
    p = portico(conf, workers=1)
    assert call(p, "POST", "/api/upstreams/pool/servers", {"server": b.addr})[0] == 201
    p.reload(BROKEN_PID + conf, expect_ok=False)
    assert state(p) == {a.addr: "up", b.addr: "up"}
    p.reload(conf)
    assert state(p) == {a.addr: "up", b.addr: "up"}
    assert set(served(p, 8)) == {"b0", "b1"}


def stats_conf(prefix, pid=""):
    locs = "".join('        location = /%s%d { status_zone %s%d; return 204; }\n'
                   % (prefix, i, prefix, i) for i in range(256))
    return pid + '''
http {
    server {
        listen 127.0.0.1:@PORT@;
%s    }
    server {
        listen 127.0.0.1:@PORT2@;
        location /metrics { metrics; }
    }
}''' % locs


def test_failed_reload_renames_no_status_zone_slot(portico):
    conf = stats_conf("z")
    p = portico(conf, workers=2)
    port2 = p.ports["PORT2"]
    for _ in range(3):
        assert http_get(p.url(path="/z0")).status == 204
    assert http_get(p.url(path="/z255")).status == 204

    def counted():
        s, _ = scrape(p, port=port2)
        ok = (metric(s, "portico_server_zone_requests_total", zone="z0") == 3
              and metric(s, "portico_server_zone_requests_total", zone="z255") == 1)
        return s if ok else None
    assert wait_for(counted, timeout=10.0), scrape(p, port=port2)[0]
    loads = metric(scrape(p, port=port2)[0], "portico_config_loads_total")

    # every slot is in use: 256 new names would take them all over
    p.reload(BROKEN_PID + stats_conf("n"), expect_ok=False)
    s, _ = scrape(p, port=port2)
    assert metric(s, "portico_server_zone_requests_total", zone="z0") == 3
    assert metric(s, "portico_server_zone_requests_total", zone="z255") == 1
    assert metric(s, "portico_config_loads_total") == loads
    assert http_get(p.url(path="/z0")).status == 204
    assert wait_for(lambda: metric(scrape(p, port=port2)[0], "portico_server_zone_requests_total",
                                   zone="z0") == 4, timeout=10.0)

    # the same names again: the counters go on
    p.reload(conf)
    s, _ = scrape(p, port=port2)
    assert metric(s, "portico_server_zone_requests_total", zone="z0") == 4
    assert metric(s, "portico_config_loads_total") == loads + 1

    # new names do take the slots over, with fresh counters
    p.reload(stats_conf("n"))
    s, _ = scrape(p, port=port2)
    assert metric(s, "portico_server_zone_requests_total", zone="n0") == 0
    assert metric(s, "portico_config_loads_total") == loads + 2
