"""Serving files: root, alias, index, try_files, autoindex and the static
handler (content types, validators, 304/412, ranges, HEAD, 301 for a
directory, 403/404 with nginx's log lines, large files streamed with a small
worker), next to expires / add_header / access_log off as the seed guides use
them."""

import email.utils
import hashlib
import http.client
import os
import re
import shutil
import socket
import stat
import tempfile
import time

import pytest

from conftest import REPO, http_get, raw_request

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06"
       b"\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01"
       b"\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")

FILES = {
    "www/index.html": "<h1>home</h1>\n",
    "www/style.css": "body { color: red }\n",
    "www/app.js": "console.log(1);\n",
    "www/data.json": '{"a": 1}\n',
    "www/logo.png": PNG,
    "www/notes.unknownext": "plain\n",
    "www/empty.txt": "",
    "www/sub/index.html": "<p>sub</p>\n",
    "www/noindex/file.txt": "x\n",
    "www/other/default.htm": "<p>default.htm</p>\n",
    "www/my dir/a.txt": "spaced\n",
    "static/app.css": "/* static */\n",
    "frontend/index.html": "<!doctype html><div id=app></div>\n",
    "frontend/assets/main.js": "main();\n",
    "frontend/docs/index.html": "<p>docs</p>\n",
}


def conf(server_body, http_extra=""):
    return '''
http {
    include %s;
    %s
    server {
        listen 127.0.0.1:@PORT@;
        %s
    }
}''' % (os.path.join(REPO, "conf", "mime.types"), http_extra, server_body)


def start(portico, server_body, http_extra="", files=None, **kw):
    f = dict(FILES)
    f.update(files or {})
    return portico(conf(server_body, http_extra), files=f, **kw)


def get(p, path, headers=None, method="GET"):
    return http_get(p.url(path=path), headers=headers, method=method)


def etag_of(path):
    st = os.stat(path)
    return '"%x-%x"' % (int(st.st_mtime), st.st_size)


# --------------------------------------------------------------------------
# root, content types, validators


def test_root_serves_files_with_types_length_and_validators(portico):
    p = start(portico, 'location / { root @PREFIX@/www; }')
    cases = [("/index.html", "text/html"), ("/style.css", "text/css"),
             ("/app.js", "application/javascript"), ("/data.json", "application/json"),
             ("/logo.png", "image/png"), ("/notes.unknownext", "text/plain")]
    for path, ctype in cases:
        r = get(p, path)
        want = FILES["www" + path]
        want = want if isinstance(want, bytes) else want.encode()
        assert r.status == 200, path
        assert r.body == want, path
        assert r.headers["Content-Type"] == ctype, path
        assert r.headers["Content-Length"] == str(len(want))
        fpath = os.path.join(p.prefix, "www" + path[0:])
        assert r.headers["ETag"] == etag_of(fpath)
        lm = email.utils.parsedate_to_datetime(r.headers["Last-Modified"]).timestamp()
        assert int(lm) == int(os.stat(fpath).st_mtime)
        assert r.headers["Accept-Ranges"] == "bytes"


def test_default_type_without_types_block(portico):
    # no mime.types: nginx's tiny built-in map and default_type text/plain
    p = portico('''
http {
    server {
        listen 127.0.0.1:@PORT@;
        location / { root @PREFIX@/www; }
        location /bin/ { root @PREFIX@/www; default_type application/x-custom; }
    }
}''', files={"www/a.css": "x", "www/a.html": "<b>", "www/bin/z.dat": "z"})
    assert get(p, "/a.css").headers["Content-Type"] == "text/plain"
    assert get(p, "/a.html").headers["Content-Type"] == "text/html"
    assert get(p, "/bin/z.dat").headers["Content-Type"] == "application/x-custom"


def test_empty_file_and_etag_off(portico):
    p = start(portico, 'location / { root @PREFIX@/www; etag off; }')
    r = get(p, "/empty.txt")
    assert r.status == 200 and r.body == b""
    assert r.headers["Content-Length"] == "0"
    assert r.headers.get("ETag") is None
    assert r.headers.get("Last-Modified")


def test_relative_root_and_root_with_variables(portico):
    p = start(portico, '''
        location /rel/ { root www/sub; }
        location / { set $dir www; root @PREFIX@/$dir; }
        location /varrel/ { set $d sub; root www/$d; }''',
              files={"www/sub/rel/r.txt": "rel\n", "www/sub/varrel/v.txt": "varrel\n"})
    assert get(p, "/rel/r.txt").body == b"rel\n"
    assert get(p, "/style.css").body == FILES["www/style.css"].encode()
    assert get(p, "/varrel/v.txt").body == b"varrel\n"


def test_request_filename_variable(portico):
    p = start(portico, '''
        location / { root @PREFIX@/www; add_header X-File $request_filename; }
        location /static/ { alias @PREFIX@/static/; add_header X-File $request_filename; }''')
    assert get(p, "/style.css").headers["X-File"] == os.path.join(p.prefix, "www/style.css")
    assert get(p, "/static/app.css").headers["X-File"] == os.path.join(p.prefix, "static/app.css")


# --------------------------------------------------------------------------
# errors


def test_missing_file_404_logged_as_nginx(portico):
    p = start(portico, '''
        location / { root @PREFIX@/www; }
        location /quiet/ { root @PREFIX@/www; log_not_found off; }''')
    r = get(p, "/nope.html")
    assert r.status == 404
    path = os.path.join(p.prefix, "www/nope.html")
    assert ('[error]' in p.error_log() and
            'open() "%s" failed (2: No such file or directory)' % path in p.error_log())
    assert get(p, "/quiet/nope.html").status == 404
    assert "quiet/nope.html" not in p.error_log()
    # a file used as a directory
    assert get(p, "/style.css/x").status == 404


def test_permission_denied_403(portico):
    # workers run as nobody so the permission check is real even as root
    d = tempfile.mkdtemp(prefix="pt-static-")
    try:
        os.chmod(d, 0o755)
        with open(os.path.join(d, "ok.txt"), "w") as f:
            f.write("ok\n")
        secret = os.path.join(d, "secret.txt")
        with open(secret, "w") as f:
            f.write("no\n")
        os.chmod(secret, 0)
        os.chmod(os.path.join(d, "ok.txt"), 0o644)
        user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
        p = portico(user + conf('location / { root %s; }' % d))
        assert get(p, "/ok.txt").body == b"ok\n"
        r = get(p, "/secret.txt")
        assert r.status == 403
        assert 'open() "%s" failed (13: Permission denied)' % secret in p.error_log()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_error_page_served_from_file(portico):
    p = start(portico, '''
        error_page 404 /404.html;
        location / { root @PREFIX@/www; }''', files={"www/404.html": "<p>custom 404</p>\n"})
    r = get(p, "/missing")
    assert r.status == 404 and r.body == b"<p>custom 404</p>\n"
    assert r.headers["Content-Type"] == "text/html"
    # validators and ranges do not turn the error page into a 304 or a 206
    et = get(p, "/404.html").headers["ETag"]
    r = get(p, "/missing", {"If-None-Match": et, "Range": "bytes=0-2"})
    assert r.status == 404 and r.body == b"<p>custom 404</p>\n"
    assert r.headers.get("Accept-Ranges") is None


def test_methods(portico):
    p = start(portico, 'location / { root @PREFIX@/www; }')
    assert get(p, "/style.css", method="POST").status == 405
    assert get(p, "/nope.css", method="POST").status == 404
    assert get(p, "/style.css", method="PUT").status == 405
    assert get(p, "/style.css", method="DELETE").status == 405


def test_directory_without_slash_301(portico):
    p = start(portico, 'location / { root @PREFIX@/www; }')
    r = get(p, "/sub")
    assert r.status == 301
    assert r.headers["Location"] == "http://127.0.0.1:%d/sub/" % p.port
    r = get(p, "/sub?a=1&b=2")
    assert r.headers["Location"] == "http://127.0.0.1:%d/sub/?a=1&b=2" % p.port
    r = get(p, "/my%20dir")
    assert r.status == 301
    assert r.headers["Location"] == "http://127.0.0.1:%d/my%%20dir/" % p.port
    assert get(p, "/my%20dir/a.txt").body == b"spaced\n"


def test_directory_redirect_relative(portico):
    p = start(portico, 'absolute_redirect off; location / { root @PREFIX@/www; }')
    r = get(p, "/sub")
    assert r.status == 301 and r.headers["Location"] == "/sub/"


# --------------------------------------------------------------------------
# index


def test_index_default_and_list(portico):
    p = start(portico, '''
        location / { root @PREFIX@/www; }
        location /other/ { root @PREFIX@/www; index index.html default.htm; }''')
    r = get(p, "/")
    assert r.status == 200 and r.body == b"<h1>home</h1>\n"
    assert r.headers["Content-Type"] == "text/html"
    assert get(p, "/sub/").body == b"<p>sub</p>\n"
    assert get(p, "/other/").body == b"<p>default.htm</p>\n"


def test_index_missing_dir_404_and_no_index_403(portico):
    p = start(portico, 'location / { root @PREFIX@/www; }')
    r = get(p, "/absent/")
    assert r.status == 404
    path = os.path.join(p.prefix, "www/absent/index.html")
    assert '"%s" is not found (2: No such file or directory)' % path in p.error_log()
    r = get(p, "/noindex/")
    assert r.status == 403
    assert ('directory index of "%s/" is forbidden' % os.path.join(p.prefix, "www/noindex")
            in p.error_log())


def test_index_redirect_goes_through_locations(portico):
    # nginx's documented example: "/" is served by the second location
    p = start(portico, '''
        location = / { root @PREFIX@/www; index index.html; }
        location / { root @PREFIX@/www; add_header X-Loc second; }''')
    r = get(p, "/")
    assert r.status == 200 and r.headers["X-Loc"] == "second"


def test_index_with_variable_and_absolute_last(portico):
    p = start(portico, '''
        location / { root @PREFIX@/www; set $n default; index $n.htm /index.html; }''')
    assert get(p, "/other/").body == b"<p>default.htm</p>\n"
    # no default.htm in /sub/: the absolute index is used as it is
    assert get(p, "/sub/").body == b"<h1>home</h1>\n"


def test_index_seed_snippet(portico):
    # seed guide: location / { root /var/www/static; index index.html; }
    p = start(portico, 'location / { root @PREFIX@/www; index index.html; }')
    assert get(p, "/").body == b"<h1>home</h1>\n"


# --------------------------------------------------------------------------
# alias


def test_alias_with_expires_add_header_and_access_log_off(portico):
    # seed guide: location /static/ { alias /opt/myapp/static/; expires 1y;
    #   add_header Cache-Control "public, immutable"; access_log off; }
    p = start(portico, '''
        access_log logs/access.log;
        location / { root @PREFIX@/www; }
        location /static/ {
            alias @PREFIX@/static/;
            expires 1y;
            add_header Cache-Control "public, immutable";
            access_log off;
        }''')
    r = get(p, "/static/app.css")
    assert r.status == 200 and r.body == b"/* static */\n"
    assert r.headers["Content-Type"] == "text/css"
    ccs = r.headers.get_all("Cache-Control")
    assert "max-age=31536000" in ccs and "public, immutable" in ccs
    exp = email.utils.parsedate_to_datetime(r.headers["Expires"]).timestamp()
    assert abs(exp - (time.time() + 31536000)) < 120
    # a 304 carries them too
    r2 = get(p, "/static/app.css", headers={"If-None-Match": r.headers["ETag"]})
    assert r2.status == 304 and "public, immutable" in r2.headers.get_all("Cache-Control")
    assert get(p, "/static/nope.css").status == 404
    assert get(p, "/style.css").status == 200
    log = "\n".join(p.access_lines(1))
    assert "/style.css" in log
    assert "/static/" not in log


def test_alias_without_trailing_slash_cannot_escape(portico):
    # the classic off-by-slash: "/static../x" would be "<alias>/../x"
    p = start(portico, 'location /static { alias @PREFIX@/static/; }',
              files={"secret.txt": "secret\n"})
    assert get(p, "/static/app.css").status == 200
    assert get(p, "/static../secret.txt").status == 404
    assert "the uri would leave the \"alias\" directory" in p.error_log()


def test_alias_regex_location(portico):
    p = start(portico, r'location ~ ^/files/(.+\.css)$ { alias @PREFIX@/static/$1; }')
    r = get(p, "/files/app.css")
    assert r.status == 200 and r.body == b"/* static */\n"
    assert get(p, "/files/nope.css").status == 404


def test_alias_directory_index(portico):
    p = start(portico, 'location /docs/ { alias @PREFIX@/frontend/docs/; }')
    assert get(p, "/docs/").body == b"<p>docs</p>\n"


# --------------------------------------------------------------------------
# try_files


SPA = '''
        location / {
            root @PREFIX@/frontend;
            index index.html;
            try_files $uri $uri/ /index.html;
        }'''


def test_try_files_spa_fallback(portico):
    # seed guide: root .../frontend; index index.html; try_files $uri $uri/ /index.html;
    p = start(portico, SPA)
    home = FILES["frontend/index.html"].encode()
    assert get(p, "/").body == home
    r = get(p, "/assets/main.js")
    assert r.body == b"main();\n" and r.headers["Content-Type"] == "application/javascript"
    r = get(p, "/dashboard/settings")
    assert r.status == 200 and r.body == home and r.headers["Content-Type"] == "text/html"
    assert get(p, "/docs/").body == b"<p>docs</p>\n"
    # "$uri/" finds the directory; the URI stays "/docs" (the '/' only asks
    # for a directory), so the static module redirects to "/docs/" (nginx)
    r = get(p, "/docs")
    assert r.status == 301 and r.headers["Location"].endswith("/docs/")
    assert get(p, "/assets/missing.js").body == home
    assert "No such file" not in p.error_log()


def test_try_files_code_and_named_location(portico):
    p = start(portico, '''
        location /a/ { root @PREFIX@/www; try_files $uri =404; }
        location /b/ { root @PREFIX@/www; try_files $uri $uri.html @back; }
        location /c/ { root @PREFIX@/www; try_files /missing /c/x.txt?from=c; }
        location = /c/x.txt { return 200 "x args=$args"; }
        location @back { return 200 "named $uri"; }''',
              files={"www/a/f.txt": "af\n", "www/b/page.html": "page\n"})
    assert get(p, "/a/f.txt").body == b"af\n"
    assert get(p, "/a/g.txt").status == 404
    assert get(p, "/b/page").body == b"page\n"
    assert get(p, "/b/zzz").body == b"named /b/zzz"
    assert get(p, "/c/anything").body == b"x args=from=c"


def test_try_files_with_alias(portico):
    p = start(portico, '''
        location /static/ { alias @PREFIX@/static/; try_files $uri /static/app.css; }''')
    assert get(p, "/static/app.css").body == b"/* static */\n"
    assert get(p, "/static/other.css").body == b"/* static */\n"


def test_try_files_checks_dirs_and_files_apart(portico):
    p = start(portico, '''
        location / { root @PREFIX@/www; try_files $uri /index.html; }
        location /d/ { root @PREFIX@/www; try_files $uri/ =418; }
        location /e/ { root @PREFIX@/www; try_files $uri/ $uri =418; }''',
              files={"www/d/x/index.html": "dx\n", "www/d/file": "f\n",
                     "www/e/x/index.html": "ex\n"})
    # "/sub" is a directory: $uri (a file test) does not match it
    assert get(p, "/sub").body == b"<h1>home</h1>\n"
    # "$uri/" matches only a directory, and leaves the URI without the '/':
    # "/d/x" gets the directory redirect; "/d/x/" finds the directory, its
    # index comes back through try_files, where only a file test can match
    # it (all as nginx 1.22, checked in test_vs_nginx.py)
    assert get(p, "/d/file").status == 418
    r = get(p, "/d/x")
    assert r.status == 301 and r.headers["Location"].endswith("/d/x/")
    assert get(p, "/d/x/").status == 418
    assert get(p, "/e/x").status == 301
    assert get(p, "/e/x/").body == b"ex\n"
    assert get(p, "/e/nothing").status == 418


def test_try_files_cycle_is_500(portico):
    p = start(portico, 'location / { root @PREFIX@/www; try_files $uri /nope; }')
    assert get(p, "/zzz").status == 500
    assert "rewrite or internal redirection cycle" in p.error_log()


# --------------------------------------------------------------------------
# conditional requests, HEAD, ranges


def test_if_modified_since_and_if_none_match(portico):
    p = start(portico, '''
        location / { root @PREFIX@/www; }
        location /before/ { alias @PREFIX@/www/; if_modified_since before; }
        location /off/ { alias @PREFIX@/www/; if_modified_since off; }''')
    r = get(p, "/style.css")
    lm, et = r.headers["Last-Modified"], r.headers["ETag"]

    r = get(p, "/style.css", {"If-Modified-Since": lm})
    assert r.status == 304 and r.body == b""
    assert r.headers["ETag"] == et and r.headers["Last-Modified"] == lm
    assert r.headers.get("Content-Length") is None
    assert r.headers.get("Content-Type") is None

    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    assert get(p, "/style.css", {"If-Modified-Since": later}).status == 200   # exact
    assert get(p, "/before/style.css", {"If-Modified-Since": later}).status == 304
    assert get(p, "/off/style.css", {"If-Modified-Since": lm}).status == 200
    old = "Thu, 01 Jan 1970 00:00:01 GMT"
    assert get(p, "/before/style.css", {"If-Modified-Since": old}).status == 200
    assert get(p, "/style.css", {"If-Modified-Since": "garbage"}).status == 200

    assert get(p, "/style.css", {"If-None-Match": et}).status == 304
    assert get(p, "/style.css", {"If-None-Match": '"x", ' + et}).status == 304
    assert get(p, "/style.css", {"If-None-Match": "W/" + et}).status == 304
    assert get(p, "/style.css", {"If-None-Match": "*"}).status == 304
    assert get(p, "/style.css", {"If-None-Match": '"other"'}).status == 200
    # both present: both must say "not modified"
    assert get(p, "/style.css", {"If-None-Match": '"other"', "If-Modified-Since": lm}).status == 200
    assert get(p, "/style.css", {"If-None-Match": et, "If-Modified-Since": lm}).status == 304


def test_if_match_and_if_unmodified_since_412(portico):
    p = start(portico, 'location / { root @PREFIX@/www; }')
    r = get(p, "/style.css")
    et, lm = r.headers["ETag"], r.headers["Last-Modified"]
    assert get(p, "/style.css", {"If-Match": et}).status == 200
    assert get(p, "/style.css", {"If-Match": '"nope"'}).status == 412
    assert get(p, "/style.css", {"If-Match": "W/" + et}).status == 412
    assert get(p, "/style.css", {"If-Unmodified-Since": lm}).status == 200
    old = "Thu, 01 Jan 1970 00:00:01 GMT"
    assert get(p, "/style.css", {"If-Unmodified-Since": old}).status == 412


def test_head(portico):
    p = start(portico, 'location / { root @PREFIX@/www; }')
    data = raw_request(p.port, b"HEAD /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: %d" % len(FILES["www/style.css"]) in head
    assert b"Content-Type: text/css" in head
    assert body == b""
    # keep-alive: HEAD then GET on one connection
    data = raw_request(p.port, b"HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"GET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.count(b"HTTP/1.1 200") == 2
    assert data.endswith(b"console.log(1);\n")


def test_ranges(portico):
    body = bytes(range(256)) * 4     # 1024 bytes
    p = start(portico, '''
        location / { root @PREFIX@/www; }
        location /one/ { alias @PREFIX@/www/; max_ranges 1; }
        location /none/ { alias @PREFIX@/www/; max_ranges 0; }''',
              files={"www/r.bin": body})
    r = get(p, "/r.bin", {"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == body[10:20]
    assert r.headers["Content-Range"] == "bytes 10-19/1024"
    assert r.headers["Content-Length"] == "10"
    r = get(p, "/r.bin", {"Range": "bytes=1000-"})
    assert r.status == 206 and r.body == body[1000:]
    r = get(p, "/r.bin", {"Range": "bytes=-24"})
    assert r.status == 206 and r.body == body[-24:]
    assert r.headers["Content-Range"] == "bytes 1000-1023/1024"
    r = get(p, "/r.bin", {"Range": "bytes=1000-5000"})
    assert r.status == 206 and r.headers["Content-Range"] == "bytes 1000-1023/1024"
    r = get(p, "/r.bin", {"Range": "bytes=2000-3000"})
    assert r.status == 416 and r.headers["Content-Range"] == "bytes */1024"
    assert get(p, "/r.bin", {"Range": "bytes=5-1"}).status == 416
    assert get(p, "/r.bin", {"Range": "bytes=x"}).status == 416
    # another unit: ignored
    r = get(p, "/r.bin", {"Range": "items=1-2"})
    assert r.status == 200 and r.body == body
    # several ranges: multipart/byteranges, in the order asked
    r = get(p, "/r.bin", {"Range": "bytes=0-1,-2,5-6"})
    assert r.status == 206
    m = re.fullmatch(r"multipart/byteranges; boundary=(\d{20})", r.headers["Content-Type"])
    assert m, r.headers["Content-Type"]
    bd = m.group(1).encode()
    want = b"".join(b"\r\n--" + bd + b"\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Range: bytes %d-%d/1024\r\n\r\n" % (a, z) + body[a:z + 1]
                    for a, z in ((0, 1), (1022, 1023), (5, 6)))
    want += b"\r\n--" + bd + b"--\r\n"
    assert r.body == want
    assert int(r.headers["Content-Length"]) == len(want)
    assert r.headers.get("Content-Range") is None
    # above max_ranges, or overlapping past the size: the whole file
    r = get(p, "/one/r.bin", {"Range": "bytes=0-1,5-6"})
    assert r.status == 200 and r.body == body
    r = get(p, "/r.bin", {"Range": "bytes=0-599,500-1023"})
    assert r.status == 200 and r.body == body
    r = get(p, "/none/r.bin", {"Range": "bytes=0-1"})
    assert r.status == 200 and r.body == body and r.headers.get("Accept-Ranges") is None
    # If-Range
    full = get(p, "/r.bin")
    r = get(p, "/r.bin", {"Range": "bytes=0-3", "If-Range": full.headers["ETag"]})
    assert r.status == 206 and r.body == body[:4]
    r = get(p, "/r.bin", {"Range": "bytes=0-3", "If-Range": '"old"'})
    assert r.status == 200 and r.body == body
    r = get(p, "/r.bin", {"Range": "bytes=0-3", "If-Range": full.headers["Last-Modified"]})
    assert r.status == 206
    # HEAD gets the range's head
    data = raw_request(p.port, b"HEAD /r.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n"
                               b"Connection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 206") and b"Content-Range: bytes 0-9/1024" in data
    assert data.endswith(b"\r\n\r\n")


# --------------------------------------------------------------------------
# large files


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


@pytest.mark.timeout(120)
def test_large_file_intact_and_worker_stays_small(portico, tmp_path):
    size = 50 * 1024 * 1024
    p = start(portico, 'location / { root @PREFIX@/www; }')
    path = os.path.join(p.prefix, "www/big.bin")
    h = hashlib.sha256()
    chunk = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        for i in range(size // len(chunk)):
            block = bytes([i & 0xff]) + chunk[1:]
            f.write(block)
            h.update(block)
    want = h.hexdigest()
    worker = p.wait_workers()[0]
    rss_before = _rss_kb(worker)

    # a fast client
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
    conn.request("GET", "/big.bin")
    r = conn.getresponse()
    assert r.status == 200 and int(r.headers["Content-Length"]) == size
    got = hashlib.sha256()
    n = 0
    peak = 0
    while True:
        data = r.read(1 << 20)
        if not data:
            break
        got.update(data)
        n += len(data)
        peak = max(peak, _rss_kb(worker))
    conn.close()
    assert n == size and got.hexdigest() == want

    # a slow client: the worker must not buffer the file for it
    s = socket.create_connection(("127.0.0.1", p.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    received = 0
    for _ in range(20):
        received += len(s.recv(16384))
        time.sleep(0.02)
    peak = max(peak, _rss_kb(worker))
    s.close()
    assert received > 0
    assert peak - rss_before < 16 * 1024, (rss_before, peak)

    # still serving
    assert get(p, "/style.css").status == 200


def test_large_file_range_and_keepalive(portico):
    size = 3 * 1024 * 1024 + 123
    data = os.urandom(size)
    p = start(portico, 'location / { root @PREFIX@/www; }', files={"www/mid.bin": data})
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    for _ in range(3):
        conn.request("GET", "/mid.bin")
        r = conn.getresponse()
        assert r.read() == data
    conn.request("GET", "/mid.bin", headers={"Range": "bytes=1000000-2999999"})
    r = conn.getresponse()
    assert r.status == 206 and r.read() == data[1000000:3000000]
    # multipart across chunk boundaries, then the connection is still usable
    conn.request("GET", "/mid.bin", headers={"Range": "bytes=70000-200000,-100000"})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 206 and int(r.headers["Content-Length"]) == len(body)
    assert data[70000:200001] in body and body.count(data[-100000:]) == 1
    conn.request("GET", "/style.css")
    assert conn.getresponse().read() == FILES["www/style.css"].encode()
    conn.close()


# --------------------------------------------------------------------------
# autoindex


def test_autoindex_html_and_json(portico):
    p = start(portico, '''
        location / { root @PREFIX@/www; }
        location /noindex/ { root @PREFIX@/www; autoindex on; }
        location /j/ { alias @PREFIX@/www/noindex/; autoindex on; autoindex_format json; }''',
              files={"www/noindex/sub dir/x": "x", "www/noindex/.hidden": "h",
                     "www/noindex/a&b.txt": "ab"})
    r = get(p, "/noindex/")
    assert r.status == 200 and r.headers["Content-Type"] == "text/html"
    t = r.text
    assert "<title>Index of /noindex/</title>" in t
    assert '<a href="../">../</a>' in t
    assert '<a href="file.txt">file.txt</a>' in t
    assert '<a href="sub%20dir/">sub dir/</a>' in t
    assert "a&amp;b.txt" in t
    assert ".hidden" not in t
    assert t.index("sub%20dir/") < t.index("file.txt")      # directories first
    r = get(p, "/j/")
    assert r.headers["Content-Type"] == "application/json"
    items = r.json()
    names = [i["name"] for i in items]
    assert names == ["sub dir", "a&b.txt", "file.txt"]
    assert items[2]["type"] == "file" and items[2]["size"] == 2
    # without autoindex: 403
    assert get(p, "/sub/").status == 200
    r = get(p, "/noindex/file.txt")
    assert r.status == 200


def test_config_errors(portico, tmp_path):
    from conftest import conf_test
    rc, out, err, _ = conf_test(tmp_path, '''
events {}
http { server { location / { try_files $uri; } } }''')
    assert rc != 0 and 'invalid number of arguments in "try_files" directive' in err
    rc, out, err, _ = conf_test(tmp_path, '''
events {}
http { server { location / { try_files $uri =2000; } } }''')
    assert rc != 0 and 'invalid code "=2000"' in err
    rc, out, err, _ = conf_test(tmp_path, '''
events {}
http { server { location / { autoindex maybe; } } }''')
    assert rc != 0 and "it must be \"on\" or \"off\"" in err
    rc, out, err, _ = conf_test(tmp_path, '''
events {}
http { index a.html; server { index /abs.html b.html; autoindex_format json;
  location / { index x; autoindex_exact_size off; autoindex_localtime on; } } }''')
    assert rc == 0, err
    assert 'only the last index in "index" directive should be absolute' in err
