"""The access module: allow/deny in order, CIDR, IPv6, all, inheritance
(a level with rules replaces the parent's), the seeds' status location."""

import socket

import pytest

from conftest import conf_test, http_get


# Content must come from a handler that runs after the ACCESS phase
# (stub_status here): `return` answers in the REWRITE phase, before it.
def conf(server_body, http_extra=""):
    return '''
http {
    %s
    server {
        listen 127.0.0.1:@PORT@;
        %s
    }
}''' % (http_extra, server_body)


def test_allow_localhost_deny_all(portico):
    p = portico(conf('''
        location /status { allow 127.0.0.1; deny all; stub_status; }
        location /other { deny 127.0.0.1; allow all; stub_status; }'''))
    assert http_get(p.url(path="/status")).status == 200
    r = http_get(p.url(path="/other"))
    assert r.status == 403
    assert "access forbidden by rule" in p.error_log()


def test_first_match_wins_and_cidr(portico):
    p = portico(conf('''
        location /a { deny 127.0.0.0/8; allow 127.0.0.1; stub_status; }
        location /b { allow 10.0.0.0/8; deny 127.0.0.2; stub_status; }
        location /c { allow 127.0.0.0/30; deny all; stub_status; }'''))
    assert http_get(p.url(path="/a")).status == 403
    assert http_get(p.url(path="/b")).status == 200      # no rule matched
    assert http_get(p.url(path="/c")).status == 200


def test_inheritance(portico):
    p = portico(conf('''
        deny all;
        location / { stub_status; }
        location /open { allow 127.0.0.1; stub_status; }'''))
    assert http_get(p.url()).status == 403
    assert http_get(p.url(path="/open")).status == 200


def test_access_runs_after_rewrite_return(portico):
    """return answers in the rewrite phase, before access is checked (nginx)."""
    p = portico(conf('location / { deny all; return 200 "early"; }'))
    assert http_get(p.url()).status == 200


def test_ipv6(portico):
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    p = portico('''
http {
    server {
        listen [::1]:@PORT@;
        location /v6 { allow ::1; deny all; stub_status; }
        location /net { allow 2001:db8::/32; deny all; stub_status; }
        location /v4 { allow 127.0.0.1; deny all; stub_status; }
    }
}''')
    url = "http://[::1]:%d" % p.port
    assert http_get(url + "/v6").status == 200
    assert http_get(url + "/net").status == 403
    assert http_get(url + "/v4").status == 403


def test_config_errors(tmp_path):
    def check(body, message, rc_ok=False):
        rc, out, err, _ = conf_test(tmp_path, '''
events { }
http { server { listen 127.0.0.1:1; location / { %s } } }''' % body)
        assert (rc == 0) == rc_ok, err
        assert message in err, err

    check('allow 1.2.3.4/33;', 'invalid parameter "1.2.3.4/33"')
    check('deny nothing;', 'invalid parameter "nothing"')
    check('allow 10.1.2.3/8;', 'low address bits of 10.1.2.3/8 are meaningless', rc_ok=True)
