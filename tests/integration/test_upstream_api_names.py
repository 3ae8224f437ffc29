"""Servers added through the runtime API by host name (resolved when added,
every address becomes a peer named as given) and by unix: path."""

import collections
import os

from conftest import Backend, http_response
from test_upstream import Client, mk
from test_upstream_api import call, conf


def served(p, n):
    cl = Client(p.port)
    return collections.Counter(cl.get()[1] for _ in range(n))


def test_add_server_by_host_name(portico, backends):
    a, b = mk(backends, 2)
    p = portico(conf([a.addr]), workers=2)
    port = b.b.port
    st, js = call(p, "POST", "/api/upstreams/pool/servers", {"server": "localhost:%d" % port})
    assert st == 201, js
    assert js["name"] == "localhost:%d" % port
    st, js = call(p, "GET", "/api/upstreams/pool/servers")
    added = [x for x in js if x["name"] == "localhost:%d" % port]
    assert "127.0.0.1:%d" % port in [x["server"] for x in added], js
    got = collections.Counter()
    for _ in range(6):
        got.update(served(p, 4))
    assert set(got) == {"b0", "b1"}, got
    # the same name again: every address is already there
    st, js = call(p, "POST", "/api/upstreams/pool/servers", {"server": "localhost:%d" % port})
    assert st == 409, js
    # and by address: a duplicate too
    assert call(p, "POST", "/api/upstreams/pool/servers", {"server": b.addr})[0] == 409


def test_add_server_bad_names(portico, backends):
    a, = mk(backends, 1)
    p = portico(conf([a.addr]))
    for bad in ["no-such-host.invalid:80", "", "host name:80", "127.0.0.1:0", "unix:"]:
        st, js = call(p, "POST", "/api/upstreams/pool/servers", {"server": bad})
        assert st == 400, (bad, st, js)
        assert js["error"]["code"] == "UpstreamBadAddress", js
    st, js = call(p, "GET", "/api/upstreams/pool/servers")
    assert [x["server"] for x in js] == [a.addr]


def test_add_unix_socket_server(portico, backends, tmp_path):
    a, = mk(backends, 1)
    path = str(tmp_path / "u.sock")
    u = backends(lambda req, c, b: http_response(200, "unix"), name="unix", unix_path=path)
    assert os.path.exists(path)
    p = portico(conf([a.addr]), workers=2)
    st, js = call(p, "POST", "/api/upstreams/pool/servers",
                  {"server": "unix:" + path, "weight": 3})
    assert st == 201, js
    assert js["server"] == "unix:" + path and js["weight"] == 3
    got = collections.Counter()
    for _ in range(4):
        got.update(served(p, 4))
    assert got["unix"] == 12 and got["b0"] == 4, got
    st, js = call(p, "GET", "/api/upstreams/pool/servers")
    uid = [x["id"] for x in js if x["server"] == "unix:" + path][0]
    assert call(p, "DELETE", "/api/upstreams/pool/servers/%d" % uid)[0] == 200
    assert set(served(p, 6)) == {"b0"}
