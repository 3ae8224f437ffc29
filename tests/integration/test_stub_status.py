"""stub_status: nginx's exact page format, counters that move, the
$connections_* variables, methods other than GET/HEAD refused."""

import re

from conftest import conf_test, http_get

STATUS_RE = re.compile(
    rb"Active connections: (\d+) \n"
    rb"server accepts handled requests\n"
    rb" (\d+) (\d+) (\d+) \n"
    rb"Reading: (\d+) Writing: (\d+) Waiting: (\d+) \n\Z")


def test_status_page_format_and_counters(portico):
    p = portico('''
http {
    server {
        listen 127.0.0.1:@PORT@;
        location /nginx_status {
            stub_status;
            allow 127.0.0.1;
            deny all;
        }
        location / { return 200 "active=$connections_active writing=$connections_writing"; }
    }
}''')
    r = http_get(p.url(path="/nginx_status"))
    assert r.status == 200
    assert r.headers["Content-Type"] == "text/plain"
    m = STATUS_RE.match(r.body)
    assert m, r.body
    active, accepts, handled, requests = (int(x) for x in m.groups()[:4])
    assert active >= 1 and accepts >= 1 and handled == accepts and requests >= 1
    assert int(m.group(6)) >= 1       # this request is being written
    for _ in range(3):
        http_get(p.url(path="/x"))
    m2 = STATUS_RE.match(http_get(p.url(path="/nginx_status")).body)
    assert int(m2.group(4)) >= requests + 4
    assert int(m2.group(2)) >= accepts + 4
    body = http_get(p.url()).body
    assert re.fullmatch(rb"active=\d+ writing=\d+", body), body


def test_status_method_not_allowed(portico):
    p = portico('''
http {
    server {
        listen 127.0.0.1:@PORT@;
        location = /s { stub_status on; }
    }
}''')
    assert http_get(p.url(path="/s"), method="POST", body=b"").status == 405
    assert http_get(p.url(path="/s"), method="HEAD").status == 200


def test_status_config(tmp_path):
    rc, out, err, _ = conf_test(tmp_path, '''
events { }
http { stub_status; server { listen 127.0.0.1:1; } }''')
    assert rc != 0 and '"stub_status" directive is not allowed here' in err, err
