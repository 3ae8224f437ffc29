"""The runtime API (api location): list, add, change (weight, down, drain)
and remove the servers of an upstream group with a zone, without a reload,
seen by every worker at once; read-only unless write=on; allow/deny."""

import collections
import json
import time

import pytest

from conftest import conf_test, http_get
from test_upstream import Client, Named, mk


def conf(servers, api="api write=on;", access="allow 127.0.0.1; deny all;", zone="zone pool 256k;"):
    return '''
http {
    upstream pool {
        %s
        %s
    }
    upstream nozone { server 127.0.0.1:1; }
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_pass http://pool; }
        location /api/ { %s %s }
        location /other/ { return 200 "no api here"; }
    }
}''' % (zone, "".join("server %s; " % s for s in servers), access, api)


def call(p, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = http_get(p.url(path=path), method=method, body=data,
                 headers={"Content-Type": "application/json"} if data else None)
    try:
        return r.status, json.loads(r.body) if r.body else None
    except ValueError:
        return r.status, r.body


def served(p, n):
    cl = Client(p.port)
    return collections.Counter(cl.get()[1] for _ in range(n))


def test_list(portico, backends):
    a, b = mk(backends, 2)
    p = portico(conf([a.addr, "%s weight=2" % b.addr]))
    st, js = call(p, "GET", "/api/upstreams")
    assert st == 200
    assert list(js) == ["pool"]                     # only groups with a zone
    peers = js["pool"]["peers"]
    assert [x["server"] for x in peers] == [a.addr, b.addr]
    assert [x["weight"] for x in peers] == [1, 2]
    assert all(x["state"] == "up" for x in peers)
    served(p, 6)
    st, js = call(p, "GET", "/api/upstreams/pool/servers")
    assert sum(x["requests"] for x in js) == 6
    st, js = call(p, "GET", "/api/upstreams/pool/servers/%d" % peers[1]["id"])
    assert st == 200 and js["server"] == b.addr
    assert call(p, "GET", "/api/upstreams/nozone")[0] == 404
    assert call(p, "GET", "/api/upstreams/pool/servers/999")[0] == 404
    assert http_get(p.url(path="/other/x")).body == b"no api here"


def test_add_server_seen_by_all_workers(portico, backends):
    a, b = mk(backends, 2)
    p = portico(conf([a.addr]), workers=2)
    assert set(served(p, 4)) == {"b0"}
    st, js = call(p, "POST", "/api/upstreams/pool/servers", {"server": b.addr, "weight": 3})
    assert st == 201, js
    assert js["server"] == b.addr and js["weight"] == 3
    # every worker sees it at once: many fresh connections
    got = collections.Counter()
    for i in range(16):
        got.update(served(p, 4))
    assert got["b1"] == 48 and got["b0"] == 16, got
    # duplicate
    assert call(p, "POST", "/api/upstreams/pool/servers", {"server": b.addr})[0] == 409
    assert call(p, "POST", "/api/upstreams/pool/servers", {"server": "nohost"})[0] == 400
    assert call(p, "POST", "/api/upstreams/pool/servers", "not json")[0] == 400


def test_patch_down_drain_weight_and_delete(portico, backends):
    a, b, c = mk(backends, 3)
    p = portico(conf([a.addr, b.addr, c.addr]), workers=2)
    st, js = call(p, "GET", "/api/upstreams/pool/servers")
    ids = {x["server"]: x["id"] for x in js}
    st, js = call(p, "PATCH", "/api/upstreams/pool/servers/%d" % ids[b.addr], {"down": True})
    assert st == 200 and js["state"] == "down"
    assert set(served(p, 12)) == {"b0", "b2"}
    call(p, "PATCH", "/api/upstreams/pool/servers/%d" % ids[b.addr], {"down": False})
    st, js = call(p, "PATCH", "/api/upstreams/pool/servers/%d" % ids[c.addr], {"drain": True})
    assert js["state"] == "draining"
    assert set(served(p, 12)) == {"b0", "b1"}
    call(p, "PATCH", "/api/upstreams/pool/servers/%d" % ids[c.addr], {"drain": False})
    st, js = call(p, "PATCH", "/api/upstreams/pool/servers/%d" % ids[a.addr], {"weight": 4})
    assert js["weight"] == 4
    got = served(p, 60)
    assert got == {"b0": 40, "b1": 10, "b2": 10}, got
    assert call(p, "PATCH", "/api/upstreams/pool/servers/%d" % ids[a.addr], {"weight": 0})[0] == 400
    assert call(p, "PATCH", "/api/upstreams/pool/servers/%d" % ids[a.addr], {"bogus": 1})[0] == 400
    st, js = call(p, "DELETE", "/api/upstreams/pool/servers/%d" % ids[a.addr])
    assert st == 200
    assert set(served(p, 10)) == {"b1", "b2"}
    st, js = call(p, "GET", "/api/upstreams/pool/servers")
    assert sorted(x["server"] for x in js) == sorted([b.addr, c.addr])
    assert "api: server %s removed" % a.addr in p.error_log()


def test_read_only_by_default(portico, backends):
    a, = mk(backends, 1)
    p = portico(conf([a.addr], api="api;"))
    assert call(p, "GET", "/api/upstreams")[0] == 200
    st, js = call(p, "POST", "/api/upstreams/pool/servers", {"server": "127.0.0.1:9"})
    assert st == 405


def test_access_control(portico, backends):
    a, = mk(backends, 1)
    p = portico(conf([a.addr], access="deny all;"))
    assert call(p, "GET", "/api/upstreams")[0] == 403


def test_api_off_by_default(portico, backends):
    a, = mk(backends, 1)
    p = portico(conf([a.addr], api="return 404;"))
    assert call(p, "GET", "/api/upstreams")[0] == 404


def test_consistent_hash_ring_follows_added_server(portico, backends):
    bs = mk(backends, 5)
    text = conf([b.addr for b in bs[:4]], zone="zone pool 256k; hash $arg_k consistent;")
    p = portico(text, workers=2)
    cl = Client(p.port)
    before = {k: cl.get("/?k=key%d" % k)[1] for k in range(600)}
    st, js = call(p, "POST", "/api/upstreams/pool/servers", {"server": bs[4].addr})
    assert st == 201
    cl = Client(p.port)
    after = {k: cl.get("/?k=key%d" % k)[1] for k in range(600)}
    moved = [k for k in before if before[k] != after[k]]
    assert all(after[k] == "b4" for k in moved)
    assert 0.1 < len(moved) / 600.0 < 0.3, len(moved)
