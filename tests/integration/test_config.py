"""The nginx command line and configuration language, checked through -t/-T
and friends: exact nginx-style messages with file:line, include rules,
-g/-p/-e/-q/-v/-V/-h/-s."""

import os
import re
import signal
import time

import pytest

from conftest import conf_test, run_portico, http_get, write_files

OK_SERVER = """
http {
    server {
        listen 127.0.0.1:8080;
        location / { return 200 "ok"; }
    }
}
"""


def ok_lines(path):
    return ("portico: the configuration file %s syntax is ok\n"
            "portico: configuration file %s test is successful\n" % (path, path))


def lines(*ls):
    """Join config lines with '\\n' (line i of the result is ls[i-1])."""
    return "\n".join(ls) + "\n"


def emerg(err, msg, where):
    """Assert stderr carries `portico: [emerg] <msg> in <where>` and the
    closing `test failed` line."""
    expected = "portico: [emerg] %s in %s" % (msg, where)
    assert expected in err.splitlines(), "want %r in stderr:\n%s" % (expected, err)


def failed(err, path):
    assert "portico: configuration file %s test failed" % path in err.splitlines(), err


# --------------------------------------------------------------------------
# -t success
# --------------------------------------------------------------------------

def test_t_success_exact_output(tmp_path):
    rc, out, err, path = conf_test(tmp_path, "events { }\n" + OK_SERVER)
    assert rc == 0, err
    assert err == ok_lines(path)
    assert out == ""


def test_t_q_quiet_on_success(tmp_path):
    rc, out, err, path = conf_test(tmp_path, "events { }\n" + OK_SERVER, args=("-t", "-q"))
    assert rc == 0, err
    assert err == "" and out == ""


def test_t_q_still_reports_errors(tmp_path):
    rc, out, err, path = conf_test(tmp_path, lines("events { }", "bogus_directive 1;"),
                                   args=("-t", "-q"))
    assert rc == 1
    emerg(err, 'unknown directive "bogus_directive"', path + ":2")


# --------------------------------------------------------------------------
# syntax errors with file:line
# --------------------------------------------------------------------------

def test_unknown_directive(tmp_path):
    text = lines("worker_processes 1;",      # 1
                 "events {",                 # 2
                 "    worker_connections 64;",
                 "}",
                 "http {",                   # 5
                 "    server {",
                 "        listen 127.0.0.1:8080;",
                 "        location / {",
                 "            return 200 ok;",
                 "        }",               # 10
                 "    }",
                 "    x on;",                # 12
                 "}")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'unknown directive "x"', path + ":12")
    failed(err, path)
    assert "syntax is ok" not in err


def test_directive_not_allowed_here(tmp_path):
    text = lines("events { }",
                 "listen 8080;")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, '"listen" directive is not allowed here', path + ":2")


def test_location_not_allowed_in_http(tmp_path):
    text = lines("events { }",
                 "http {",
                 "    location / { return 200; }",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, '"location" directive is not allowed here', path + ":3")


def test_worker_processes_not_allowed_in_http(tmp_path):
    text = lines("events { }",
                 "http {",
                 "    worker_processes 2;",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, '"worker_processes" directive is not allowed here', path + ":3")


def test_invalid_number_of_arguments(tmp_path):
    text = lines("worker_processes 1 2;",
                 "events { }")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'invalid number of arguments in "worker_processes" directive', path + ":1")


def test_invalid_number_of_arguments_zero(tmp_path):
    text = lines("events { }",
                 "http {",
                 "    server {",
                 "        listen;",
                 "    }",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'invalid number of arguments in "listen" directive', path + ":4")


def test_unexpected_close_brace(tmp_path):
    text = lines("events { }",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'unexpected "}"', path + ":2")


def test_unexpected_end_of_file(tmp_path):
    # no trailing newline: the last line is line 3 whichever way EOF is counted
    text = "events { }\nhttp {\n    server_tokens on;"
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'unexpected end of file, expecting "}"', path + ":3")


def test_no_opening_brace(tmp_path):
    text = lines("events { }",
                 "http;")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'directive "http" has no opening "{"', path + ":2")


def test_block_directive_without_block_is_not_terminated(tmp_path):
    # a simple directive followed by "{" : nginx says it is not terminated by ";"
    text = lines("events { }",
                 "worker_processes 1 {",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'directive "worker_processes" is not terminated by ";"', path + ":2")


def test_missing_semicolon_at_eof(tmp_path):
    text = "events { }\nworker_processes 1"
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'unexpected end of file, expecting ";" or "}"', path + ":2")


def test_duplicate_directive(tmp_path):
    text = lines("worker_processes 1;",
                 "worker_processes 2;",
                 "events { }")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, '"worker_processes" directive is duplicate', path + ":2")


def test_duplicate_flag_directive_in_same_block(tmp_path):
    text = lines("events { }",
                 "http {",
                 "    server_tokens on;",
                 "    server_tokens off;",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, '"server_tokens" directive is duplicate', path + ":4")


def test_invalid_on_off_value(tmp_path):
    text = lines("master_process maybe;",
                 "events { }")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'invalid value "maybe" in "master_process" directive, it must be "on" or "off"',
          path + ":1")


def test_invalid_server_tokens_value(tmp_path):
    """server_tokens is an enum in nginx (on|off|build): the plain message."""
    text = lines("events { }",
                 "http {",
                 "    server_tokens maybe;",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'invalid value "maybe"', path + ":3")


def test_daemon_invalid_value(tmp_path):
    text = lines("daemon yes;",
                 "events { }")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'invalid value "yes" in "daemon" directive, it must be "on" or "off"',
          path + ":1")


def test_events_block_required(tmp_path):
    rc, out, err, path = conf_test(tmp_path, OK_SERVER)
    assert rc == 1
    assert 'portico: [emerg] no "events" section in configuration' in err.splitlines(), err


def test_invalid_worker_processes_value(tmp_path):
    text = lines("worker_processes lots;",
                 "events { }")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, '"worker_processes" directive invalid value', path + ":1")


def test_worker_processes_auto_ok(tmp_path):
    rc, out, err, path = conf_test(tmp_path, "worker_processes auto;\nevents { }\n" + OK_SERVER)
    assert rc == 0, err


def test_main_directives_accepted(tmp_path):
    text = lines("worker_processes 2;",
                 "daemon off;",
                 "master_process on;",
                 "pid logs/x.pid;",
                 "error_log logs/error.log warn;",
                 "worker_shutdown_timeout 10s;",
                 "events { worker_connections 512; }") + OK_SERVER
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 0, err


def test_unknown_directive_reported_in_included_file(tmp_path):
    text = lines("events { }",
                 "http {",
                 "    include sites/*.conf;",
                 "}")
    site = lines("server {",
                 "    listen 127.0.0.1:8080;",
                 "    nonsense 1;",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text, files={"conf/sites/a.conf": site})
    assert rc == 1
    emerg(err, 'unknown directive "nonsense"', str(tmp_path / "conf/sites/a.conf") + ":3")


def test_line_numbers_count_comments_and_blank_lines(tmp_path):
    text = lines("# comment line 1",
                 "",
                 "events {  # trailing comment",
                 "",
                 "}",
                 "# {  unbalanced braces in a comment are ignored }",
                 "http {",
                 "   'quoted' 1;",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    emerg(err, 'unknown directive "quoted"', path + ":8")


def test_unbalanced_quote(tmp_path):
    text = 'events { }\nhttp {\n  server_tokens "on;\n}\n'
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    assert "[emerg]" in err and path in err, err
    failed(err, path)


# --------------------------------------------------------------------------
# include
# --------------------------------------------------------------------------

def test_include_missing_file(tmp_path):
    text = lines("events { }",
                 "http {",
                 "    include missing.conf;",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    missing = str(tmp_path / "conf" / "missing.conf")
    emerg(err, 'open() "%s" failed (2: No such file or directory)' % missing, path + ":3")


def test_include_glob_matching_nothing_is_fine(tmp_path):
    os.makedirs(tmp_path / "conf" / "conf.d", exist_ok=True)
    text = "events { }\nhttp {\n    include conf.d/*.conf;\n    include nowhere/*.conf;\n" \
           "    server { listen 127.0.0.1:8080; }\n}\n"
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 0, err
    assert err == ok_lines(path)


def test_include_relative_to_config_directory(tmp_path):
    """A relative include is resolved against the directory of the main
    configuration file, not the current directory nor the prefix."""
    confdir = tmp_path / "elsewhere" / "etc"
    main = lines("events { }",
                 "http {",
                 "    include sites/*.conf;",
                 "    include snippets/one.conf;",
                 "}")
    write_files(tmp_path, {
        "elsewhere/etc/main.conf": main,
        "elsewhere/etc/sites/a.conf": "server { listen 127.0.0.1:8080; include snippets/two.conf; }\n",
        "elsewhere/etc/snippets/one.conf": "server_tokens off;\n",
        "elsewhere/etc/snippets/two.conf": "location / { return 204; }\n",
    })
    os.makedirs(tmp_path / "logs", exist_ok=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cpath = str(confdir / "main.conf")
    rc, out, err = run_portico(["-p", str(tmp_path) + "/", "-c", cpath, "-t"], cwd=str(cwd))
    assert rc == 0, err
    assert err == ok_lines(cpath)


def test_include_glob_order_and_contexts(tmp_path):
    """Files of a glob are included in sorted order; a second server_tokens in
    a later file of the same block is a duplicate reported at that file."""
    text = lines("events { }",
                 "http {",
                 "    include parts/*.conf;",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text, files={
        "conf/parts/10-first.conf": "server_tokens on;\n",
        "conf/parts/20-second.conf": "\n\nserver_tokens off;\n",
    })
    assert rc == 1
    emerg(err, '"server_tokens" directive is duplicate',
          str(tmp_path / "conf/parts/20-second.conf") + ":3")


def test_include_absolute_path(tmp_path):
    extra = tmp_path / "abs" / "server.conf"
    write_files(tmp_path, {"abs/server.conf": "server { listen 127.0.0.1:8080; }\n"})
    rc, out, err, path = conf_test(tmp_path, "events { }\nhttp { include %s; }\n" % extra)
    assert rc == 0, err


def test_include_wrong_arguments(tmp_path):
    rc, out, err, path = conf_test(tmp_path, "events { }\ninclude a b;\n")
    assert rc == 1
    emerg(err, 'invalid number of arguments in "include" directive', path + ":2")


# --------------------------------------------------------------------------
# quoting, escapes, comments, ${var}
# --------------------------------------------------------------------------

QUOTING = r'''
events { }
http {
    log_format  q  '$remote_addr "$request" ${status}x # not a comment';
    server {
        listen 127.0.0.1:8080;
        server_name "quoted.example" 'single.example' plain.example;
        location = /a { return 200 "a \"quoted\" ;{} # not a comment"; }
        location = /b { return 200 'it\'s ${request_method}x'; }
        location = /c { return 200 "tab\there"; }   # a trailing comment
        location = /d {
            return
                200
                "multi-line directive";
        }
        location = /e { return 200 "${scheme}://${host}${request_uri}"; }
        location = "/f g" { return 204; }
    }
}
'''


def test_quotes_escapes_comments_vars_accepted(tmp_path):
    rc, out, err, path = conf_test(tmp_path, QUOTING)
    assert rc == 0, err
    assert err == ok_lines(path)


def test_quotes_escapes_vars_runtime(portico):
    p = portico(QUOTING.replace("events { }", "").replace("127.0.0.1:8080", "127.0.0.1:@PORT@"))
    assert http_get(p.url(path="/a")).body == b'a "quoted" ;{} # not a comment'
    assert http_get(p.url(path="/b")).body == b"it's GETx"
    assert http_get(p.url(path="/c")).body == b"tab\there"
    assert http_get(p.url(path="/d")).body == b"multi-line directive"
    r = http_get(p.url(path="/e?x=1"), headers={"Host": "h.example"})
    assert r.body == b"http://h.example/e?x=1"
    assert http_get(p.url(path="/f%20g")).status == 204


def test_unknown_variable_is_an_error(tmp_path):
    text = lines("events { }",
                 "http {",
                 "    server {",
                 "        listen 127.0.0.1:8080;",
                 '        location / { return 200 "$no_such_variable_here"; }',
                 "    }",
                 "}")
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    # nginx resolves variables after parsing: the message has no file:line
    assert any(ln.startswith('portico: [emerg] unknown "no_such_variable_here" variable')
               for ln in err.splitlines()), err


# --------------------------------------------------------------------------
# -T, -g, -p, -e, -c
# --------------------------------------------------------------------------

def test_T_dumps_every_included_file(tmp_path):
    main = "events { }\nhttp {\n    include sites/*.conf;\n}\n"
    a = "server { listen 127.0.0.1:8080; include snippets/x.conf; }\n"
    x = "location / { return 200 \"from x\"; }\n"
    rc, out, err, path = conf_test(tmp_path, main, files={
        "conf/sites/a.conf": a, "conf/snippets/x.conf": x}, args=("-T",))
    assert rc == 0, err
    assert err == ok_lines(path)
    for fpath, content in ((path, main), (str(tmp_path / "conf/sites/a.conf"), a),
                           (str(tmp_path / "conf/snippets/x.conf"), x)):
        header = "# configuration file %s:\n" % fpath
        assert header in out, out
        i = out.index(header) + len(header)
        assert out[i:i + len(content)] == content, out
    assert out.index("sites/a.conf:") < out.index("snippets/x.conf:")


def test_T_on_broken_config_fails_without_dump(tmp_path):
    rc, out, err, path = conf_test(tmp_path, "events { }\nbogus;\n", args=("-T",))
    assert rc == 1
    emerg(err, 'unknown directive "bogus"', path + ":2")


def test_g_directives(tmp_path):
    rc, out, err, path = conf_test(tmp_path, "events { }\n" + OK_SERVER,
                                   args=("-g", "worker_processes 3; daemon off;", "-t"))
    assert rc == 0, err
    assert err == ok_lines(path)


def test_g_duplicate_with_config(tmp_path):
    rc, out, err, path = conf_test(tmp_path, "worker_processes 2;\nevents { }\n" + OK_SERVER,
                                   args=("-g", "worker_processes 3;", "-t"))
    assert rc == 1
    emerg(err, '"worker_processes" directive is duplicate', path + ":1")


def test_g_error_in_command_line(tmp_path):
    rc, out, err, path = conf_test(tmp_path, "events { }\n" + OK_SERVER,
                                   args=("-g", "bogus_g 1;", "-t"))
    assert rc == 1
    assert 'portico: [emerg] unknown directive "bogus_g" in command line' in err.splitlines(), err


def test_g_is_applied_at_runtime(portico):
    p = portico('http { server { listen 127.0.0.1:@PORT@; location / { return 200 "ok"; } } }',
                workers=1, args=("-g", "worker_shutdown_timeout 5s;"))
    assert http_get(p.url()).body == b"ok"


def test_p_prefix_resolves_relative_c_and_logs(tmp_path):
    prefix = tmp_path / "pfx"
    write_files(prefix, {"conf/site.conf": "error_log logs/custom-error.log info;\nevents { }\n"
                         + OK_SERVER})
    os.makedirs(prefix / "logs", exist_ok=True)
    other = tmp_path / "cwd"
    other.mkdir()
    rc, out, err = run_portico(["-p", str(prefix) + "/", "-c", "conf/site.conf", "-t"],
                               cwd=str(other))
    full = str(prefix / "conf" / "site.conf")
    assert rc == 0, err
    assert err == ok_lines(full)
    # -t opens the log files of the configuration, relative to the prefix
    assert (prefix / "logs" / "custom-error.log").exists()


def test_p_without_trailing_slash(tmp_path):
    prefix = tmp_path / "pfx2"
    write_files(prefix, {"conf/portico.conf": "events { }\n" + OK_SERVER})
    os.makedirs(prefix / "logs", exist_ok=True)
    rc, out, err = run_portico(["-p", str(prefix), "-c", "conf/portico.conf", "-t"])
    assert rc == 0, err
    assert err == ok_lines(str(prefix / "conf" / "portico.conf"))


def test_default_config_path_under_prefix(tmp_path):
    """Without -c, the configuration is PREFIX/conf/portico.conf."""
    write_files(tmp_path, {"conf/portico.conf": "events { }\n" + OK_SERVER})
    os.makedirs(tmp_path / "logs", exist_ok=True)
    rc, out, err = run_portico(["-p", str(tmp_path) + "/", "-t"])
    assert rc == 0, err
    assert err == ok_lines(str(tmp_path / "conf" / "portico.conf"))


def test_missing_config_file(tmp_path):
    os.makedirs(tmp_path / "logs", exist_ok=True)
    missing = str(tmp_path / "conf" / "nope.conf")
    rc, out, err = run_portico(["-p", str(tmp_path) + "/", "-c", missing, "-t"])
    assert rc == 1
    assert ('portico: [emerg] open() "%s" failed (2: No such file or directory)' % missing
            in err.splitlines()), err
    failed(err, missing)


def test_e_error_log_file(tmp_path):
    os.makedirs(tmp_path / "elog", exist_ok=True)
    early = tmp_path / "elog" / "early.log"
    rc, out, err, path = conf_test(tmp_path, "events { }\nbogus_e;\n",
                                   args=("-e", str(early), "-t"))
    assert rc == 1
    emerg(err, 'unknown directive "bogus_e"', path + ":2")
    text = early.read_text()
    assert '[emerg]' in text and 'unknown directive "bogus_e" in %s:2' % path in text, text
    # nginx's error-log line: "YYYY/MM/DD HH:MM:SS [emerg] PID#TID: message"
    assert re.search(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[emerg\] \d+#\d+: unknown directive",
                     text, re.M), text


def test_e_stderr_needs_no_log_directory(tmp_path):
    """-e stderr: no default error log file is opened, so a prefix without
    logs/ gives no 'could not open error log file' alert."""
    write_files(tmp_path, {"conf/portico.conf": "events { }\n" + OK_SERVER.replace(
        "http {", "http {\n    access_log off;")})
    rc, out, err = run_portico(["-p", str(tmp_path) + "/", "-e", "stderr", "-t",
                                "-c", str(tmp_path / "conf" / "portico.conf"),
                                "-g", "error_log stderr;"])
    assert rc == 0, err
    assert "could not open error log" not in err
    assert not (tmp_path / "logs" / "error.log").exists()


def test_missing_log_directory_alert(tmp_path):
    """Without -e, the default error log PREFIX/logs/error.log is opened first;
    nginx reports `[alert] could not open error log file` and goes on."""
    write_files(tmp_path, {"conf/portico.conf": "error_log stderr;\nevents { }\n" + OK_SERVER
                           .replace("http {", "http {\n    access_log off;")})
    rc, out, err = run_portico(["-p", str(tmp_path) + "/", "-t",
                                "-c", str(tmp_path / "conf" / "portico.conf")])
    assert rc == 0, err
    assert "could not open error log file" in err


# --------------------------------------------------------------------------
# -v -V -h, bad options, -s
# --------------------------------------------------------------------------

def test_v_version():
    rc, out, err = run_portico(["-v"])
    assert rc == 0
    assert re.fullmatch(r"portico version: portico/\d+\.\d+\.\d+\S*\n", err), err
    assert out == ""


def test_V_version_and_build_info():
    rc, out, err = run_portico(["-V"])
    assert rc == 0
    first = err.splitlines()[0]
    assert re.fullmatch(r"portico version: portico/\d+\.\d+\.\d+\S*", first), err
    assert len(err.splitlines()) > 1, "-V should add build details (compiler, OpenSSL, modules)"


def test_h_help():
    rc, out, err = run_portico(["-h"])
    assert rc == 0
    text = out + err
    assert "Usage: portico" in text
    for flag in ("-?,-h", "-v", "-V", "-t", "-T", "-q", "-s signal", "-p prefix", "-e filename",
                 "-c filename", "-g directives"):
        assert flag in text, (flag, text)


def test_invalid_option():
    rc, out, err = run_portico(["-Z"])
    assert rc == 1
    assert 'portico: invalid option: "Z"' in err, err


def test_option_missing_argument():
    rc, out, err = run_portico(["-c"])
    assert rc == 1
    assert 'portico: option "-c" requires file name' in err, err


def test_s_invalid_signal():
    rc, out, err = run_portico(["-s", "bogus"])
    assert rc == 1
    assert 'portico: invalid option: "-s bogus"' in err, err


def test_s_without_running_master(tmp_path):
    write_files(tmp_path, {"conf/portico.conf": "pid logs/portico.pid;\nevents { }\n" + OK_SERVER})
    os.makedirs(tmp_path / "logs", exist_ok=True)
    rc, out, err = run_portico(["-p", str(tmp_path) + "/", "-s", "reload",
                                "-c", str(tmp_path / "conf" / "portico.conf")])
    assert rc == 1
    pidf = str(tmp_path / "logs" / "portico.pid")
    assert 'open() "%s" failed (2: No such file or directory)' % pidf in err, err


def test_s_reload_and_quit_through_pid_file(portico):
    conf = 'http { server { listen 127.0.0.1:@PORT@; location / { return 200 "%s"; } } }'
    p = portico(conf % "one")
    assert http_get(p.url()).body == b"one"
    old = set(p.workers())
    with open(p.conf_path, "w") as f:
        f.write(p.build_conf(conf % "two"))
    rc, out, err = run_portico(["-p", p.prefix + "/", "-c", "conf/portico.conf", "-s", "reload"])
    assert rc == 0, err
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if http_get(p.url()).body == b"two":
            break
        time.sleep(0.1)
    assert http_get(p.url()).body == b"two"
    assert set(p.workers()) != old
    rc, out, err = run_portico(["-p", p.prefix + "/", "-c", "conf/portico.conf", "-s", "quit"])
    assert rc == 0, err
    p.proc.wait(10)
    assert p.proc.returncode == 0
    assert not os.path.exists(os.path.join(p.prefix, "logs", "portico.pid"))


def test_pid_file_holds_master_pid(portico):
    p = portico('http { server { listen 127.0.0.1:@PORT@; } }')
    with open(os.path.join(p.prefix, "logs", "portico.pid")) as f:
        content = f.read()
    assert content == "%d\n" % p.proc.pid
