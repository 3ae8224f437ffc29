"""The rewrite module: return, rewrite (last/break/redirect/permanent, args),
set, if (=, !=, ~, ~*, !~, -f/-d/-e, variables), break, rewrite_log, and the
configuration errors nginx reports for them."""

import os
import re
import socket

from conftest import conf_test, http_get, raw_request, parse_responses


def server(body, extra=""):
    return '''
http {
    default_type text/plain;
    %s
    server {
        listen 127.0.0.1:@PORT@;
        server_name example.test;
        %s
    }
}''' % (extra, body)


def test_return_redirect_with_host_and_request_uri(portico):
    p = portico(server('location / { return 301 https://$host$request_uri; }'))
    r = http_get(p.url(path="/a/b?x=1&y=2"), headers={"Host": "site.test"})
    assert r.status == 301
    assert r.headers["Location"] == "https://site.test/a/b?x=1&y=2"
    assert b"301 Moved Permanently" in r.body


def test_return_404_is_the_error_page(portico):
    p = portico(server('location / { return 404; }'))
    r = http_get(p.url(path="/x"))
    assert r.status == 404
    assert b"<center><h1>404 Not Found</h1></center>" in r.body


def test_return_text_uses_default_type(portico):
    p = portico(server('location / { return 200 "hello $uri\\n"; }'))
    r = http_get(p.url(path="/p"))
    assert r.status == 200
    assert r.body == b"hello /p\n"
    assert r.headers["Content-Type"] == "text/plain"


def test_return_text_type_from_extension(portico):
    p = portico('''
http {
    types { text/html html; }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:@PORT@;
        location / { return 200 "<p>x</p>"; }
    }
}''')
    assert http_get(p.url(path="/a.html")).headers["Content-Type"] == "text/html"
    assert http_get(p.url(path="/a")).headers["Content-Type"] == "application/octet-stream"


def test_return_url_alone_is_302(portico):
    p = portico(server('location / { return http://other.test/path; }'))
    r = http_get(p.url())
    assert r.status == 302
    assert r.headers["Location"] == "http://other.test/path"


def test_return_other_codes(portico):
    p = portico(server('''
        location = /204 { return 204; }
        location = /418 { return 418 "teapot"; }
        location = /307 { return 307 /elsewhere; }
        location = /500 { return 500; }'''))
    r = http_get(p.url(path="/204"))
    assert r.status == 204 and r.body == b""
    r = http_get(p.url(path="/418"))
    assert r.status == 418 and r.body == b"teapot"
    r = http_get(p.url(path="/307"))
    assert r.status == 307 and r.headers["Location"].endswith("/elsewhere")
    assert http_get(p.url(path="/500")).status == 500


def test_return_444_closes_without_response(portico):
    p = portico(server('location / { return 444; }'))
    data = raw_request(p.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data == b""
    # still serving afterwards
    data = raw_request(p.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data == b""


def test_server_level_return_runs_before_locations(portico):
    p = portico(server('''
        return 301 https://$host$request_uri;
        location / { return 200 "location"; }'''))
    r = http_get(p.url(path="/z?q=1"), headers={"Host": "h.test"})
    assert r.status == 301 and r.headers["Location"] == "https://h.test/z?q=1"


def test_rewrite_last_searches_locations_again(portico):
    p = portico(server('''
        location /old/ { rewrite ^/old/(.*)$ /new/$1 last; return 500; }
        location /new/ { return 200 "new $uri $args"; }'''))
    r = http_get(p.url(path="/old/page?a=1"))
    assert r.status == 200 and r.body == b"new /new/page a=1"


def test_rewrite_break_stays_in_location(portico):
    p = portico(server('''
        location /b/ { rewrite ^/b/(.*)$ /moved/$1 break; return 200 "after break $uri"; }
        location /moved/ { return 200 "moved location"; }'''))
    # break stops the rewrite script: the return after it does not run, and
    # no other location is searched; with nothing to produce content, the
    # location answers 404 for the new uri (nginx does the same without root)
    r = http_get(p.url(path="/b/x"))
    assert r.status == 404


def test_rewrite_without_flag_continues_then_searches(portico):
    p = portico(server('''
        location /a/ {
            rewrite ^/a/(.*)$ /b/$1;
            rewrite ^/b/(.*)$ /c/$1;
        }
        location /c/ { return 200 "c:$uri"; }'''))
    assert http_get(p.url(path="/a/x")).body == b"c:/c/x"


def test_rewrite_redirect_and_permanent(portico):
    p = portico(server('''
        location /r/ { rewrite ^/r/(.*)$ /target/$1 redirect; }
        location /p/ { rewrite ^/p/(.*)$ /target/$1 permanent; }
        location /abs/ { rewrite ^ http://other.test$uri; }'''))
    r = http_get(p.url(path="/r/x?k=v"))
    assert r.status == 302 and r.headers["Location"].endswith("/target/x?k=v")
    r = http_get(p.url(path="/p/y"))
    assert r.status == 301 and r.headers["Location"].endswith("/target/y")
    r = http_get(p.url(path="/abs/z"))
    assert r.status == 302 and r.headers["Location"] == "http://other.test/abs/z"


def test_rewrite_args(portico):
    p = portico(server('''
        location /add/ { rewrite ^/add/(.*)$ /show?user=$1 last; }
        location /only/ { rewrite ^/only/(.*)$ /show?user=$1? last; }
        location /keep/ { rewrite ^/keep/(.*)$ /show last; }
        location = /show { return 200 "args=$args"; }'''))
    assert http_get(p.url(path="/add/bob?x=1")).body == b"args=user=bob&x=1"
    assert http_get(p.url(path="/only/bob?x=1")).body == b"args=user=bob"
    assert http_get(p.url(path="/keep/bob?x=1")).body == b"args=x=1"


def test_rewrite_cycle_is_500(portico):
    p = portico(server('location / { rewrite ^(.*)$ $1 last; }'))
    assert http_get(p.url(path="/loop")).status == 500
    assert "rewrite or internal redirection cycle" in p.error_log()


def test_set_and_variables(portico):
    p = portico(server('''
        location / {
            set $a "one";
            set $b "$a-two";
            set $args "changed=1";
            return 200 "$a|$b|$args|$arg_changed|${a}x";
        }'''))
    assert http_get(p.url(path="/?orig=1")).body == b"one|one-two|changed=1|1|onex"


def test_uninitialized_variable_warns(portico):
    p = portico(server('''
        location /set { set $never $uri; return 200 "set"; }
        location / { return 200 "[$never]"; }'''))
    assert http_get(p.url(path="/x")).body == b"[]"
    assert 'using uninitialized "never" variable' in p.error_log()


def test_uninitialized_variable_warn_off(portico):
    p = portico(server('''
        uninitialized_variable_warn off;
        location /set { set $never $uri; return 200 "set"; }
        location / { return 200 "[$never]"; }'''))
    assert http_get(p.url(path="/x")).body == b"[]"
    assert "uninitialized" not in p.error_log()


def test_if_conditions(portico):
    p = portico(server('''
        location /eq { if ($arg_a = "yes") { return 200 "eq"; } return 200 "neq"; }
        location /ne { if ($arg_a != yes) { return 200 "ne"; } return 200 "same"; }
        location /var { if ($arg_v) { return 200 "true"; } return 200 "false"; }
        location /re {
            if ($http_user_agent ~ "^Mozilla/(\\d+)") { return 200 "moz $1"; }
            if ($http_user_agent ~* curl) { return 200 "curl"; }
            if ($http_user_agent !~ "x") { return 200 "no x"; }
            return 200 "other";
        }'''))
    assert http_get(p.url(path="/eq?a=yes")).body == b"eq"
    assert http_get(p.url(path="/eq?a=no")).body == b"neq"
    assert http_get(p.url(path="/ne?a=no")).body == b"ne"
    assert http_get(p.url(path="/ne?a=yes")).body == b"same"
    assert http_get(p.url(path="/var?v=1")).body == b"true"
    assert http_get(p.url(path="/var?v=0")).body == b"false"
    assert http_get(p.url(path="/var")).body == b"false"
    assert http_get(p.url(path="/re"), headers={"User-Agent": "Mozilla/5.0"}).body == b"moz 5"
    assert http_get(p.url(path="/re"), headers={"User-Agent": "CURL/8"}).body == b"curl"
    assert http_get(p.url(path="/re"), headers={"User-Agent": "abc"}).body == b"no x"
    assert http_get(p.url(path="/re"), headers={"User-Agent": "xyz"}).body == b"other"


def test_if_named_capture(portico):
    p = portico(server('''
        location / {
            if ($uri ~ "^/users/(?<id>\\d+)$") { return 200 "user $id"; }
            return 404;
        }'''))
    assert http_get(p.url(path="/users/42")).body == b"user 42"
    assert http_get(p.url(path="/users/x")).status == 404


def test_if_file_tests(portico, tmp_path):
    d = tmp_path / "www"
    (d / "dir").mkdir(parents=True)
    (d / "file.txt").write_text("x")
    p = portico(server('''
        location / {
            if (-f @WWW@$uri) { return 200 "file"; }
            if (-d @WWW@$uri) { return 200 "dir"; }
            if (!-e @WWW@$uri) { return 200 "missing"; }
            return 200 "other";
        }''') , subst={"WWW": str(d)})
    assert http_get(p.url(path="/file.txt")).body == b"file"
    assert http_get(p.url(path="/dir")).body == b"dir"
    assert http_get(p.url(path="/nope")).body == b"missing"


def test_if_block_applies_its_directives(portico):
    """The if block is a pseudo-location: add_header inside it applies."""
    p = portico(server('''
        location / {
            if ($arg_h) { add_header X-From-If yes; }
            return 200 "ok";
        }'''))
    assert http_get(p.url(path="/?h=1")).headers.get("X-From-If") == "yes"
    assert http_get(p.url(path="/")).headers.get("X-From-If") is None


def test_if_then_script_continues(portico):
    """Directives after an if block still run when the condition held."""
    p = portico(server('''
        location / {
            set $x "a";
            if ($arg_q) { set $x "${x}b"; }
            set $x "${x}c";
            return 200 $x;
        }'''))
    assert http_get(p.url(path="/?q=1")).body == b"abc"
    assert http_get(p.url(path="/")).body == b"ac"


def test_break_stops_the_script(portico):
    p = portico(server('''
        location / {
            set $x "before";
            if ($arg_stop) { break; }
            set $x "after";
            return 200 $x;
        }
        location = /b { set $y 1; break; return 500; }'''), files={"html/.keep": ""})
    assert http_get(p.url(path="/")).body == b"after"
    # break in the if: the return after it does not run; nothing else
    # produces content: the index module finds no index.html in the existing
    # html/ directory, so 403 "directory index is forbidden", as nginx
    assert http_get(p.url(path="/?stop=1")).status == 403
    assert http_get(p.url(path="/b")).status == 404


def test_server_if_with_return(portico):
    p = portico(server('''
        if ($http_x_block) { return 403; }
        location / { return 200 "ok"; }'''))
    assert http_get(p.url(), headers={"X-Block": "1"}).status == 403
    assert http_get(p.url()).status == 200


def test_rewrite_log(portico):
    p = portico(server('''
        rewrite_log on;
        location /a { rewrite ^/a(.*)$ /b$1 last; }
        location /b { return 200 "b"; }'''))
    assert http_get(p.url(path="/a1")).body == b"b"
    log = p.error_log()
    assert '[notice]' in log and '"^/a(.*)$" matches "/a1"' in log
    assert 'rewritten data: "/b1"' in log


def test_config_errors(tmp_path):
    def check(text, message):
        rc, out, err, _ = conf_test(tmp_path, '''
events { }
http { server { listen 127.0.0.1:1; %s } }''' % text)
        assert rc != 0, err
        assert message in err, err

    check('location / { return abc; }', 'invalid return code "abc"')
    check('location / { return 1000; }', 'invalid return code "1000"')
    check('location / { rewrite ^ /x bogus; }', 'invalid parameter "bogus"')
    check('location / { rewrite "(" /x; }', 'pcre2_compile() failed')
    check('location / { set x 1; }', 'invalid variable name "x"')
    check('location / { set $host 1; }', 'the duplicate "host" variable')
    check('location / { return 200 "$no_such_var"; }', 'unknown "no_such_var" variable')
    check('location / { if ($a) { if ($b) { } } }', '"if" directive is not allowed here')
    check('location / { if $a { } }', 'invalid condition')
    check('location / { return 200 "a$"; }', 'invalid variable name')


def test_config_ok(tmp_path):
    rc, out, err, _ = conf_test(tmp_path, '''
events { }
http {
    rewrite_log on;
    server {
        listen 127.0.0.1:1;
        set $s 1;
        if ($request_method = POST ) { return 405; }
        if ( $http_x ) { set $s 2; }
        location / {
            if ($http_user_agent ~* "(iPhone|Android)") { rewrite ^ /m$uri break; }
            if (!-f $request_filename_free) { }
            return 200;
        }
    }
}''')
    # $request_filename_free is not a variable: the only error expected
    assert 'unknown "request_filename_free" variable' in err


def test_config_if_syntax_variants(tmp_path):
    rc, out, err, _ = conf_test(tmp_path, '''
events { }
http {
    server {
        listen 127.0.0.1:1;
        if ($request_method = POST ) { return 405; }
        if ( $http_x ) { set $s 2; }
        location / {
            if ($http_user_agent ~* "(iPhone|Android)") { rewrite ^ /m$uri break; }
            if (-d $document_root) { }
            return 200;
        }
    }
}''')
    assert rc == 0, err


def test_if_keeps_the_location_content_handler(portico):
    """An if block without a content directive keeps its location's one."""
    p = portico(server('''
        location /s {
            stub_status;
            if ($arg_h) { add_header X-If 1; }
        }'''))
    r = http_get(p.url(path="/s?h=1"))
    assert r.status == 200 and r.body.startswith(b"Active connections:")
    assert r.headers.get("X-If") == "1"
    assert http_get(p.url(path="/s")).body.startswith(b"Active connections:")


def test_redirect_escapes_captures_of_escaped_uris(portico):
    """A capture from a decoded URI is escaped again in a redirect and in
    args when the request URI had escapes (nginx)."""
    p = portico(server('''
        location /r/ { rewrite ^/r/(.*)$ /to?q=$1 redirect; }
        location /i/ { rewrite ^/i/(.*)$ /show?q=$1 last; }
        location = /show { return 200 "$args"; }'''))
    r = http_get(p.url(path="/r/a%20b"))
    assert r.status == 302 and r.headers["Location"].endswith("/to?q=a%20b")
    assert http_get(p.url(path="/i/x%26y")).body == b"q=x%26y"
    assert http_get(p.url(path="/i/plain")).body == b"q=plain"


def test_core_variables(portico):
    p = portico(server('''
        root /srv/www/;
        location / {
            return 200 "m=$request_method p=$server_protocol s=$scheme h=[$https]
ru=$request_uri u=$uri ia=$is_args a=$args dr=$document_root
sa=$server_addr sp=$server_port sn=$server_name host=$host
id=$request_id ms=$msec pid=$pid v=$nginx_version
x=$http_x_multi c=$cookie_b cl=$content_length ct=$content_type
iso=$time_iso8601 tl=$time_local rt=$request_time ru=[$remote_user]
";
        }'''))
    r = http_get(p.url(path="/a/b?k=v"), headers={
        "X-Multi": "1", "Cookie": "a=1; b=two", "Content-Type": "text/x",
        "Host": "Example.TEST:8080"}, method="POST", body=b"abc")
    t = r.text
    assert "m=POST p=HTTP/1.1 s=http h=[]" in t
    assert "ru=/a/b?k=v u=/a/b ia=? a=k=v dr=/srv/www" in t
    assert "sa=127.0.0.1 sp=%d sn=example.test host=example.test" % p.port in t
    assert re.search(r"id=[0-9a-f]{32} ms=\d+\.\d{3} pid=\d+ v=\d+\.\d+\.\d+", t), t
    assert "x=1 c=two cl=3 ct=text/x" in t
    assert re.search(r"iso=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d "
                     r"tl=\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4} rt=\d+\.\d{3} ru=\[\]", t), t


def test_request_id_unique_and_connection_counters(portico):
    import http.client
    p = portico(server('location / { return 200 "$request_id $connection $connection_requests"; }'))
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    try:
        out = []
        for _ in range(3):
            c.request("GET", "/")
            out.append(c.getresponse().read().decode().split())
    finally:
        c.close()
    assert len({o[0] for o in out}) == 3
    assert len({o[1] for o in out}) == 1
    assert [o[2] for o in out] == ["1", "2", "3"]
