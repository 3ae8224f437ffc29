"""access_log / log_format beyond the basics of test_logs.py: several logs on
one level, inheritance (a level with access_log replaces its parent's),
if=, escape=none and json with missing values, buffer= with flush= and at
exit, gzip, paths with variables, and configuration errors."""

import gzip
import os
import time

from conftest import conf_test, http_get, raw_request


def wait_for(fn, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    return fn()


def conf(server_body, http_extra=""):
    return '''
http {
    log_format short '$uri $status';
    %s
    server {
        listen 127.0.0.1:@PORT@;
        %s
    }
}''' % (http_extra, server_body)


def test_several_logs_and_inheritance(portico):
    p = portico(conf('''
        access_log logs/a.log short;
        access_log logs/b.log short;
        location / { return 200 "ok"; }
        location /own { access_log logs/own.log short; return 200 "ok"; }
        location /quiet { access_log off; return 200 "ok"; }''',
                     'access_log logs/http.log short;'))
    for path in ("/x", "/own", "/quiet"):
        http_get(p.url(path=path))
    assert wait_for(lambda: "/x 200" in p.access_log("logs/b.log"))
    assert p.access_log("logs/a.log").splitlines() == ["/x 200"]
    assert p.access_log("logs/b.log").splitlines() == ["/x 200"]
    assert wait_for(lambda: p.access_log("logs/own.log").splitlines() == ["/own 200"])
    assert p.access_log("logs/http.log") == ""
    assert "/quiet" not in p.access_log("logs/a.log")
    assert not os.path.exists(os.path.join(p.prefix, "logs", "access.log")) \
        or p.access_log("logs/access.log") == ""


def test_if_condition(portico):
    p = portico(conf('''
        access_log logs/cond.log short if=$arg_log;
        location / { return 200 "ok"; }'''))
    http_get(p.url(path="/no"))
    http_get(p.url(path="/zero?log=0"))
    http_get(p.url(path="/yes?log=1"))
    assert wait_for(lambda: "/yes" in p.access_log("logs/cond.log"))
    assert p.access_log("logs/cond.log").splitlines() == ["/yes 200"]


def test_escape_modes_and_missing_values(portico):
    p = portico(conf('''
        access_log logs/def.log d;
        access_log logs/json.log j;
        access_log logs/none.log n;
        location / { return 200 "ok"; }''', '''
    log_format d '$http_x_v|$http_missing';
    log_format j escape=json '{"v":"$http_x_v","m":"$http_missing"}';
    log_format n escape=none '$http_x_v|$http_missing|';'''))
    # '"', '\\' and a byte >= 0x80 (obs-text is valid in a field value)
    raw_request(p.port, b'GET / HTTP/1.1\r\nHost: a\r\nX-V: a"b\\c\xe9\r\n'
                        b'Connection: close\r\n\r\n')
    assert wait_for(lambda: p.access_log("logs/none.log"))
    assert p.access_log("logs/def.log").splitlines() == ['a\\x22b\\x5Cc\\xE9|-']
    with open(os.path.join(p.prefix, "logs", "json.log"), "rb") as f:
        assert f.read() == b'{"v":"a\\"b\\\\c\xe9","m":""}\n'
    with open(os.path.join(p.prefix, "logs", "none.log"), "rb") as f:
        assert f.read() == b'a"b\\c\xe9||\n'


def test_json_control_characters(portico):
    p = portico(conf('''
        access_log logs/json.log j;
        location / { set $v "tab\\tnl\\n"; return 200 "ok"; }''', '''
    log_format j escape=json '$v|$arg_v';'''))
    http_get(p.url(path="/?v=%09x"))
    assert wait_for(lambda: p.access_log("logs/json.log"))
    # "\t" in a quoted config string is a tab; args are logged undecoded
    assert p.access_log("logs/json.log").splitlines() == ["tab\\tnl\\n|%09x"]


def test_buffer_flush_timer_and_exit(portico):
    p = portico(conf('''
        access_log logs/buf.log short buffer=32k flush=2s;
        access_log logs/exit.log short buffer=32k;
        location / { return 200 "ok"; }'''))
    http_get(p.url(path="/b1"))
    time.sleep(0.2)
    assert p.access_log("logs/buf.log") == ""          # still in the buffer
    assert wait_for(lambda: "/b1 200" in p.access_log("logs/buf.log"))
    assert p.access_log("logs/exit.log") == ""
    p.stop()
    assert p.access_log("logs/exit.log").splitlines() == ["/b1 200"]


def test_gzip(portico):
    p = portico(conf('''
        access_log logs/z.log.gz short gzip flush=1s;
        location / { return 200 "ok"; }'''))
    for i in range(3):
        http_get(p.url(path="/z%d" % i))
    path = os.path.join(p.prefix, "logs", "z.log.gz")
    assert wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0, timeout=20)
    p.stop()
    with gzip.open(path, "rt") as f:
        assert f.read().splitlines() == ["/z0 200", "/z1 200", "/z2 200"]


def test_variable_path(portico):
    p = portico(conf('''
        access_log logs/host-$arg_h.log short;
        location / { return 200 "ok"; }'''))
    http_get(p.url(path="/one?h=a"))
    http_get(p.url(path="/two?h=b"))
    assert wait_for(lambda: "/two" in p.access_log("logs/host-b.log"))
    assert p.access_log("logs/host-a.log").splitlines() == ["/one 200"]


def test_combined_with_status_and_bytes(portico):
    p = portico(conf('''
        access_log logs/c.log;
        location / { return 404; }'''))
    r = http_get(p.url(path="/nf"), headers={"User-Agent": 'ua "quoted"'})
    assert r.status == 404
    line = wait_for(lambda: p.access_log("logs/c.log").strip())
    assert '"GET /nf HTTP/1.1" 404 %d "-" "ua \\x22quoted\\x22"' % len(r.body) in line, line


def test_config_errors(tmp_path):
    def check(http_body, message, server_body=""):
        rc, out, err, _ = conf_test(tmp_path, '''
events { }
http { %s server { listen 127.0.0.1:1; %s } }''' % (http_body, server_body))
        assert rc != 0, err
        assert message in err, err

    check('access_log logs/x.log nosuch;', 'unknown log format "nosuch"')
    check("log_format a '$uri'; log_format a '$uri';", 'duplicate "log_format" name "a"')
    check("log_format combined '$uri';", 'duplicate "log_format" name "combined"')
    check("log_format a escape=xml '$uri';", 'unknown log format escaping "xml"')
    check("log_format a '$nosuchvar';", 'unknown "nosuchvar" variable')
    check('access_log logs/x.log combined bogus=1;', 'invalid parameter "bogus=1"')
    check('access_log logs/x.log combined flush=1s;', 'no buffer is defined for access_log')
    check('access_log logs/$uri.log combined buffer=4k;',
          'buffered logs cannot have variables in name')
    check('access_log logs/x.log combined buffer=4k; access_log logs/x.log combined buffer=8k;',
          'already defined with conflicting parameters')
    check('', '"log_format" directive is not allowed here', "log_format a '$uri';")


def test_config_accepts_cache_and_off(tmp_path):
    rc, out, err, _ = conf_test(tmp_path, '''
events { }
http {
    open_log_file_cache max=1000 inactive=20s valid=1m min_uses=2;
    access_log off;
    server { listen 127.0.0.1:1; open_log_file_cache off; }
}''')
    assert rc == 0, err
