"""access_log / log_format / error_log: the default combined line, custom
formats with escape=json and the default escaping, access_log off, error_log
levels, USR1 reopening after a rename (logrotate's way)."""

import json
import os
import re
import signal
import socket
import time

import pytest

from conftest import http_get, raw_request


def wait_for(fn, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    return fn()


def log_lines(p, name="logs/access.log", n=1, timeout=20.0):
    """Wait until the log has at least n lines; return them."""
    got = wait_for(lambda: (lambda ls: ls if len(ls) >= n else None)(
        p.access_log(name).splitlines()), timeout)
    return got or p.access_log(name).splitlines()


SIMPLE = '''
http {
    %s
    server {
        listen 127.0.0.1:@PORT@;
        location / { return 200 "ok"; }
        location = /nf { return 404; }
        %s
    }
}
'''

TIME_LOCAL = r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}"


def test_default_access_log_is_combined(portico):
    """No access_log directive: PREFIX/logs/access.log in the combined format."""
    p = portico(SIMPLE % ("", ""))
    r = http_get(p.url(path="/x?y=1"), headers={"User-Agent": "tester/1.0",
                                                "Referer": "http://ref.test/"})
    assert r.status == 200
    lines = log_lines(p)
    assert len(lines) == 1, lines
    assert re.fullmatch(r'127\.0\.0\.1 - - \[%s\] "GET /x\?y=1 HTTP/1\.1" 200 2 '
                        r'"http://ref\.test/" "tester/1\.0"' % TIME_LOCAL, lines[0]), lines[0]


def test_combined_dashes_for_missing_values_and_error_status(portico):
    p = portico(SIMPLE % ("access_log logs/access.log combined;", ""))
    raw_request(p.port, b"GET /nf HTTP/1.0\r\n\r\n")
    lines = log_lines(p)
    assert re.fullmatch(r'127\.0\.0\.1 - - \[%s\] "GET /nf HTTP/1\.0" 404 \d+ "-" "-"'
                        % TIME_LOCAL, lines[0]), lines[0]
    size = int(lines[0].split('" 404 ')[1].split()[0])
    assert size > 100          # the error page body


def test_bad_request_is_logged(portico):
    p = portico(SIMPLE % ("access_log logs/access.log;", ""))
    raw_request(p.port, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n")
    lines = log_lines(p)
    assert re.fullmatch(r'127\.0\.0\.1 - - \[%s\] "GET / HTTP/1\.1" 400 \d+ "-" "-"'
                        % TIME_LOCAL, lines[0]), lines


def test_default_escaping_in_log(portico):
    p = portico(SIMPLE % ("access_log logs/access.log;", ""))
    http_get(p.url(), headers={"User-Agent": 'a"b\\c\td\xe9'})
    line = log_lines(p)[0]
    # nginx's default escaping: ", \ and bytes < 0x20 or >= 0x7f as \xHH
    assert line.endswith('"a\\x22b\\x5Cc\\x09d\\xE9"'), line


JSON_FMT = r'''
    log_format j escape=json '{"uri":"$request_uri","ua":"$http_user_agent",'
                             '"status":$status,"method":"$request_method",'
                             '"missing":"$http_x_missing","bytes":$body_bytes_sent}';
    access_log logs/json.log j;
'''


def test_log_format_escape_json(portico):
    p = portico(SIMPLE % (JSON_FMT, ""))
    ua = 'q"uote\\back\tslash\u00e9end'
    # UTF-8 bytes pass through escape=json unchanged (http.client sends latin-1)
    http_get(p.url(path="/p?a=%22b"),
             headers={"User-Agent": ua.encode("utf-8").decode("latin-1")})
    lines = log_lines(p, "logs/json.log")
    assert len(lines) == 1, lines
    rec = json.loads(lines[0])
    assert rec == {"uri": "/p?a=%22b", "ua": ua, "status": 200, "method": "GET",
                   "missing": "", "bytes": 2}
    assert '\\"uote' in lines[0] and "\\t" in lines[0]
    # with a custom access_log at http level, there is no default access.log line
    assert p.access_log("logs/access.log") == ""


def test_several_access_logs_and_location_override(portico):
    p = portico(SIMPLE % (
        "log_format short '$request_method $uri $status';\n"
        "    access_log logs/a.log combined;\n"
        "    access_log logs/b.log short;",
        "location = /quiet { access_log off; return 200 \"q\"; }\n"
        "        location = /own { access_log logs/own.log short; return 200 \"o\"; }"))
    http_get(p.url(path="/one"))
    http_get(p.url(path="/quiet"))
    http_get(p.url(path="/own"))
    http_get(p.url(path="/two"))
    a = log_lines(p, "logs/a.log", 2)
    b = log_lines(p, "logs/b.log", 2)
    own = log_lines(p, "logs/own.log", 1)
    assert [ln.split('"')[1] for ln in a] == ["GET /one HTTP/1.1", "GET /two HTTP/1.1"]
    assert b == ["GET /one 200", "GET /two 200"]
    assert own == ["GET /own 200"]


def test_access_log_off(portico):
    p = portico(SIMPLE % ("access_log off;", ""))
    for _ in range(3):
        assert http_get(p.url()).status == 200
    time.sleep(0.3)
    assert not os.path.exists(os.path.join(p.prefix, "logs", "access.log")) or \
        p.access_log() == ""


def test_unknown_log_format_is_an_error(tmp_path):
    from conftest import conf_test
    rc, out, err, path = conf_test(tmp_path, "events { }\nhttp {\n    access_log logs/x.log nosuch;\n}\n")
    assert rc == 1
    assert 'portico: [emerg] unknown log format "nosuch" in %s:3' % path in err.splitlines(), err


def test_log_format_variables(portico):
    p = portico(SIMPLE % (
        "log_format v '$request|$request_uri|$uri|$args|$status|$host|$server_port|"
        "$remote_addr|$request_method|$server_protocol|$http_x_test|$scheme|$request_length|"
        "$bytes_sent|$body_bytes_sent';\n    access_log logs/v.log v;", ""))
    http_get(p.url(path="/a%20b/c?q=1"), headers={"Host": "Vhost.Test", "X-Test": "xt"})
    line = log_lines(p, "logs/v.log")[0]
    f = line.split("|")
    assert f[:12] == ["GET /a%20b/c?q=1 HTTP/1.1", "/a%20b/c?q=1", "/a b/c", "q=1", "200",
                      "vhost.test", str(p.port), "127.0.0.1", "GET", "HTTP/1.1", "xt", "http"], f
    assert int(f[12]) > 30 and int(f[13]) > int(f[14]) == 2


def test_request_time_format(portico):
    p = portico(SIMPLE % ("log_format t '$request_time $msec $time_iso8601';\n"
                          "    access_log logs/t.log t;", ""))
    http_get(p.url())
    line = log_lines(p, "logs/t.log")[0]
    assert re.fullmatch(r"\d+\.\d{3} \d{10}\.\d{3} \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d",
                        line), line


# --------------------------------------------------------------------------
# error_log levels
# --------------------------------------------------------------------------

LEVELS = '''
error_log logs/error.log info;
error_log logs/info.log info;
error_log logs/warn.log warn;
error_log logs/notice.log notice;
http {
    server {
        listen 127.0.0.1:@PORT@;
        location / { return 200 "ok"; }
    }
}
'''

LOG_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(debug|info|notice|warn|error|crit|"
                      r"alert|emerg)\] \d+#\d+: ")


def test_error_log_levels(portico):
    p = portico(LEVELS)
    # a malformed request is logged at info level by nginx ("client sent ...")
    raw_request(p.port, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n")
    info = wait_for(lambda: (lambda t: t if "[info]" in t else None)(p.error_log("logs/info.log")))
    assert info, p.error_log("logs/info.log")
    lines = [ln for ln in info.splitlines() if "[info]" in ln and "client sent" in ln]
    assert lines, info
    assert re.search(r"\[info\] \d+#\d+: \*\d+ client sent", lines[0]), lines[0]
    assert "client: 127.0.0.1" in lines[0]
    for ln in info.splitlines():
        assert LOG_LINE.match(ln), ln
    # startup is logged at notice; warn.log gets neither notice nor info
    notice = p.error_log("logs/notice.log")
    assert "[notice]" in notice and "[info]" not in notice, notice
    warn = p.error_log("logs/warn.log")
    assert "[info]" not in warn and "[notice]" not in warn, warn


def test_invalid_error_log_level(tmp_path):
    from conftest import conf_test
    rc, out, err, path = conf_test(tmp_path, "error_log logs/e.log loud;\nevents { }\n")
    assert rc == 1
    assert 'portico: [emerg] invalid log level "loud" in %s:1' % path in err.splitlines(), err


def test_error_log_in_server_context(portico):
    p = portico('''
    http {
        server {
            listen 127.0.0.1:@PORT@;
            error_log logs/server-error.log info;
            location / { return 200 "ok"; }
        }
    }''')
    raw_request(p.port, b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n")
    raw_request(p.port, b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n")
    # the only (so default) server's error_log is the connection's log, so the
    # parse errors, logged at info, land there
    text = wait_for(lambda: (lambda t: t if "client sent" in t else None)(
        p.error_log("logs/server-error.log")))
    assert text and "[info]" in text, p.error_log("logs/server-error.log")


# --------------------------------------------------------------------------
# USR1: reopen after rename
# --------------------------------------------------------------------------

def test_usr1_reopens_logs_after_rename(portico):
    p = portico(SIMPLE % ("access_log logs/access.log;", ""), workers=2)
    logs = os.path.join(p.prefix, "logs")
    http_get(p.url(path="/before"))
    assert "/before" in log_lines(p)[0]
    os.rename(os.path.join(logs, "access.log"), os.path.join(logs, "access.log.1"))
    os.rename(os.path.join(logs, "error.log"), os.path.join(logs, "error.log.1"))
    # still written to the renamed file until USR1
    http_get(p.url(path="/renamed"))
    assert wait_for(lambda: "/renamed" in p.access_log("logs/access.log.1"))
    p.signal(signal.SIGUSR1)
    assert wait_for(lambda: os.path.exists(os.path.join(logs, "access.log"))), \
        "access.log not re-created by USR1"
    assert wait_for(lambda: os.path.exists(os.path.join(logs, "error.log"))), \
        "error.log not re-created by USR1"
    # workers reopen after the master; each logs "reopening logs" (to the
    # old file) just before it reopens, then handles no request first
    workers = p.wait_workers(2)
    assert len(workers) == 2, workers
    assert wait_for(lambda: all(re.search(r"\] %d#\d+: reopening logs" % w,
                                          p.error_log("logs/error.log.1"))
                                for w in workers)), p.error_log("logs/error.log.1")
    for i in range(6):    # several requests so every worker is likely hit
        http_get(p.url(path="/after%d" % i))
    new = log_lines(p, "logs/access.log", 6)
    assert len(new) == 6 and all("/after" in ln for ln in new), new
    old = p.access_log("logs/access.log.1")
    assert "/after" not in old
    assert "/before" in old and "/renamed" in old
    # nginx logs "reopening logs" (notice) just before reopening: in the old file
    assert wait_for(lambda: "reopening logs" in p.error_log("logs/error.log.1")), \
        p.error_log("logs/error.log.1")
    # and the new error log is in use: a malformed request is logged there (info)
    raw_request(p.port, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n")
    assert wait_for(lambda: "client sent" in p.error_log()), p.error_log()


def test_usr1_keeps_serving(portico):
    p = portico(SIMPLE % ("", ""))
    # ready means the master listens: its worker may still be forking
    workers = p.wait_workers(1)
    for _ in range(3):
        p.signal(signal.SIGUSR1)
        time.sleep(0.2)
        assert http_get(p.url()).body == b"ok"
    assert p.workers() == workers      # USR1 does not restart workers
