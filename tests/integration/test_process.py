"""Processes and the command line: -v/-V/-h/-t/-T output and exit codes, the
pid file, -s reload/quit/reopen/stop through it, reloads (good and broken),
worker respawn, graceful stop with a request in flight, USR1 log reopening,
worker_processes, daemon mode, master_process off.

Ports come from 20000-20999 (this suite's range), picked by bind tests."""

import os
import random
import re
import shutil
import signal
import socket
import tempfile
import threading
import time

import pytest

from conftest import (Portico, conf_test, http_get, run_portico, wait_server_read,
                      write_files)

VERSION = "0.1.0"

_used_ports = set()
_port_lock = threading.Lock()


def my_port():
    """A free loopback port in 20000-20999."""
    with _port_lock:
        start = random.randint(0, 999)
        for i in range(1000):
            port = 20000 + (start + i) % 1000
            if port in _used_ports:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            finally:
                s.close()
            _used_ports.add(port)
            return port
    pytest.fail("no free port in 20000-20999")


def can_connect(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(cond, timeout=20.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def read_pid(path):
    try:
        with open(path) as f:
            s = f.read()
    except OSError:
        return None
    return int(s) if s.strip().isdigit() else None


def serve(text, *ports):
    """An http block answering `text` on each port (one server per port)."""
    servers = "".join("""
    server {
        listen 127.0.0.1:%d;
        location / { return 200 "%s"; }
    }""" % (port, text) for port in ports)
    return "\nhttp {%s\n}\n" % servers


NO_HTTP = ""   # a configuration with no listeners at all: processes only


# --------------------------------------------------------------------------
# -v -V -h, options
# --------------------------------------------------------------------------

def test_v():
    rc, out, err = run_portico(["-v"])
    assert rc == 0
    assert out == ""
    assert err == "portico version: portico/%s\n" % VERSION


def test_V():
    rc, out, err = run_portico(["-V"])
    assert rc == 0 and out == ""
    lines = err.splitlines()
    assert lines[0] == "portico version: portico/%s" % VERSION
    assert re.match(r"^built by (gcc|clang) \S+", lines[1]), lines
    assert lines[2].startswith("built with OpenSSL "), lines
    assert lines[3] == "TLS SNI support enabled"
    assert lines[4].startswith("configure arguments: --prefix=/"), lines
    assert "--conf-path=/" in lines[4]
    mods = re.findall(r"--with-(\S+)_module", lines[4])
    assert mods, lines[4]
    assert "core" not in mods   # builtin_core modules are not listed


@pytest.mark.parametrize("opt", ["-h", "-?"])
def test_help(opt):
    rc, out, err = run_portico([opt])
    assert rc == 0 and out == ""
    assert err.startswith("portico version: portico/%s\nUsage: portico [-?hvVtTq]" % VERSION)
    for o in ("-c filename", "-p prefix", "-g directives", "-e filename", "-s signal",
              "-t ", "-T ", "-q "):
        assert o in err, o


@pytest.mark.parametrize("args,msg", [
    (["-x"], 'portico: invalid option: "x"'),
    (["foo"], 'portico: invalid option: "foo"'),
    (["-c"], 'portico: option "-c" requires file name'),
    (["-p"], 'portico: option "-p" requires directory name'),
    (["-g"], 'portico: option "-g" requires parameter'),
    (["-s"], 'portico: option "-s" requires parameter'),
    (["-s", "restart"], 'portico: invalid option: "-s restart"'),
])
def test_bad_options(args, msg):
    rc, out, err = run_portico(args)
    assert rc == 1
    assert msg in err.splitlines(), err


# --------------------------------------------------------------------------
# -t / -T
# --------------------------------------------------------------------------

def test_t_ok_and_grouped_flags(tmp_path):
    rc, out, err, path = conf_test(tmp_path, "events { }\n")
    assert rc == 0, err
    assert err == ("portico: the configuration file %s syntax is ok\n"
                   "portico: configuration file %s test is successful\n" % (path, path))
    assert out == ""
    rc, out, err, path = conf_test(tmp_path, "events { }\n", args=("-tq",))
    assert rc == 0 and err == "" and out == ""


def test_t_unknown_directive(tmp_path):
    rc, out, err, path = conf_test(tmp_path, "events { }\nbogus_directive on;\n")
    assert rc == 1
    assert 'portico: [emerg] unknown directive "bogus_directive" in %s:2' % path \
        in err.splitlines(), err
    assert err.splitlines()[-1] == "portico: configuration file %s test failed" % path
    assert "syntax is ok" not in err


def test_t_no_events(tmp_path):
    rc, out, err, path = conf_test(tmp_path, "worker_processes 1;\n")
    assert rc == 1
    assert 'portico: [emerg] no "events" section in configuration' in err.splitlines(), err


def test_t_core_directives(tmp_path):
    text = """
daemon off;
master_process on;
worker_processes auto;
pid run/x.pid;
error_log logs/e.log warn;
error_log logs/e2.log;
worker_rlimit_nofile 4096;
worker_rlimit_core 10m;
worker_shutdown_timeout 10s;
worker_priority -5;
worker_cpu_affinity auto;
working_directory /tmp;
pcre_jit on;
env TZ;
env FOO=bar;
lock_file logs/portico.lock;
timer_resolution 100ms;
thread_pool default threads=4 max_queue=1024;
events {
    worker_connections 100;
    multi_accept on;
    use epoll;
    accept_mutex off;
    accept_mutex_delay 100ms;
}
"""
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 0, err


@pytest.mark.parametrize("text,msg,line", [
    ("events { use kqueue; }\n", 'invalid event type "kqueue"', 1),
    ("events { }\nworker_processes x;\n", '"worker_processes" directive invalid value', 2),
    ("events { }\nevents { }\n", '"events" directive is duplicate', 2),
    ("events { worker_connections 0; }\n", "value must be equal to or greater than 1", 1),
    ("events { }\ndaemon maybe;\n",
     'invalid value "maybe" in "daemon" directive, it must be "on" or "off"', 2),
    ("events { }\nworker_cpu_affinity 01x;\n", 'invalid character "01x" in "worker_cpu_affinity"', 2),
])
def test_t_core_errors(tmp_path, text, msg, line):
    rc, out, err, path = conf_test(tmp_path, text)
    assert rc == 1
    assert "portico: [emerg] %s in %s:%d" % (msg, path, line) in err.splitlines(), err


def test_T_dumps_every_file(tmp_path):
    main = "events { }\ninclude extra/*.conf;\n"
    extra = "worker_processes 2;\n"
    rc, out, err, path = conf_test(tmp_path, main, files={"conf/extra/a.conf": extra},
                                   args=("-T",))
    assert rc == 0, err
    inc = os.path.join(os.path.dirname(path), "extra", "a.conf")
    assert out == ("# configuration file %s:\n%s\n# configuration file %s:\n%s\n"
                   % (path, main, inc, extra)), out
    assert "test is successful" in err


def test_c_relative_to_prefix_and_g(tmp_path):
    prefix = str(tmp_path)
    write_files(prefix, {"other/my.conf": "events { }\n"})
    rc, out, err = run_portico(["-p", prefix, "-c", "other/my.conf", "-t"], cwd="/")
    assert rc == 0, err
    assert "%s/other/my.conf syntax is ok" % prefix in err
    # -g is read before the file, so the file's copy is the duplicate
    write_files(prefix, {"other/w.conf": "events { }\nworker_processes 2;\n"})
    rc, out, err = run_portico(["-p", prefix + "/", "-c", "other/w.conf", "-g",
                                "worker_processes 3;", "-t"])
    assert rc == 1
    assert ('portico: [emerg] "worker_processes" directive is duplicate in %s/other/w.conf:2'
            % prefix) in err.splitlines(), err
    rc, out, err = run_portico(["-p", prefix + "/", "-c", "other/my.conf", "-g",
                                "bogus 1;", "-t"])
    assert rc == 1
    assert 'portico: [emerg] unknown directive "bogus" in command line' in err.splitlines(), err


def test_missing_conf_file(tmp_path):
    rc, out, err = run_portico(["-p", str(tmp_path) + "/", "-c", "nope.conf", "-t"])
    assert rc == 1
    assert ('portico: [emerg] open() "%s/nope.conf" failed (2: No such file or directory)'
            % tmp_path) in err, err


def test_builtin_default_config(tmp_path):
    """No -c and nothing at the default path: the compiled-in configuration."""
    prefix = str(tmp_path) + "/"
    rc, out, err = run_portico(["-p", prefix, "-T"])
    assert rc == 0, err
    assert "syntax is ok" in err
    assert out.startswith("# configuration file %sconf/portico.conf:\n" % prefix)
    assert "listen       8080;" in out
    assert os.path.isdir(os.path.join(prefix, "logs"))   # created for a fresh prefix


def test_s_without_pid_file(tmp_path):
    write_files(tmp_path, {"conf/portico.conf": "events { }\n"})
    rc, out, err = run_portico(["-p", str(tmp_path) + "/", "-c", "conf/portico.conf",
                                "-s", "reload"])
    assert rc == 1
    assert ('portico: [error] open() "%s/logs/portico.pid" failed '
            '(2: No such file or directory)' % tmp_path) in err.splitlines(), err


def test_s_with_broken_config(tmp_path):
    """Like nginx, -s parses the configuration (to find `pid`); a broken one
    is reported and nothing is signalled."""
    write_files(tmp_path, {"conf/portico.conf": "events { }\nbogus;\n"})
    rc, out, err = run_portico(["-p", str(tmp_path) + "/", "-c", "conf/portico.conf",
                                "-s", "quit"])
    assert rc == 1
    assert 'unknown directive "bogus"' in err


# --------------------------------------------------------------------------
# the running server
# --------------------------------------------------------------------------

def test_pid_file_written_and_removed(portico):
    p = portico(NO_HTTP)
    pidfile = os.path.join(p.prefix, "logs", "portico.pid")
    assert read_pid(pidfile) == p.proc.pid
    with open(pidfile) as f:
        assert f.read() == "%d\n" % p.proc.pid
    p.wait_workers(1)
    p.stop()
    assert p.proc.returncode == 0
    assert not os.path.exists(pidfile)
    log = p.error_log()
    assert "signal 3 (SIGQUIT) received" in log
    assert re.search(r"\[notice\] %d#\d+: exit" % p.proc.pid, log), log


def test_pid_directory_created_under_prefix(portico):
    p = portico("pid run/sub/portico.pid;\n")
    path = os.path.join(p.prefix, "run", "sub", "portico.pid")
    assert wait_for(lambda: read_pid(path) == p.proc.pid)


def test_worker_processes_two(portico):
    p = portico(NO_HTTP, workers=2)
    w = p.wait_workers(2)
    time.sleep(0.3)
    assert len(p.workers()) == 2, p.workers()
    log = p.error_log()
    for pid in w:
        assert "start worker process %d" % pid in log


def test_workers_drop_privileges(portico):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    import pwd
    nobody = pwd.getpwnam("nobody").pw_uid
    p = portico("user nobody;\n")
    (w,) = p.wait_workers(1)

    def uid():
        with open("/proc/%d/status" % w) as f:
            return int(re.search(r"(?m)^Uid:\s+(\d+)", f.read()).group(1))
    assert wait_for(lambda: uid() == nobody), uid()
    with open("/proc/%d/status" % p.proc.pid) as f:
        assert re.search(r"(?m)^Uid:\s+0\s", f.read())


def test_s_reload_quit_through_pid_file(portico):
    p = portico(NO_HTTP, workers=1)
    (old,) = p.wait_workers(1)
    args = ["-p", p.prefix + "/", "-c", "conf/portico.conf"]
    rc, out, err = run_portico(args + ["-s", "reload"])
    assert rc == 0, err
    assert out == "" and err == ""
    new = wait_for(lambda: [w for w in p.workers() if w != old])
    assert new, p.diagnostics()
    assert wait_for(lambda: not pid_alive(old)), "old worker still running"
    log = p.error_log()
    assert "signal 1 (SIGHUP) received" in log and "reconfiguring" in log

    rc, out, err = run_portico(args + ["-s", "quit"])
    assert rc == 0, err
    p.proc.wait(10)
    assert p.proc.returncode == 0
    assert not os.path.exists(os.path.join(p.prefix, "logs", "portico.pid"))


def test_s_stop_is_fast(portico):
    p = portico(NO_HTTP, workers=2)
    p.wait_workers(2)
    rc, out, err = run_portico(["-p", p.prefix + "/", "-c", "conf/portico.conf", "-s", "stop"])
    assert rc == 0, err
    p.proc.wait(5)
    assert p.proc.returncode == 0
    assert "signal 15 (SIGTERM) received" in p.error_log()
    assert p.workers() == []


def test_reload_changes_worker_count(portico):
    p = portico(NO_HTTP, workers=1)
    before = p.wait_workers(1)
    p.reload(NO_HTTP, workers=3)
    now = p.wait_workers(3, exclude=before)
    assert len(now) == 3
    assert wait_for(lambda: all(not pid_alive(w) for w in before))


def test_broken_reload_keeps_old_config(portico):
    port = my_port()
    p = portico(serve("one", port), workers=1)
    (w,) = p.wait_workers(1)
    assert http_get("http://127.0.0.1:%d/" % port).body == b"one"
    log = p.reload(serve("two", port) + "\nbogus_directive;\n", expect_ok=False)
    assert 'unknown directive "bogus_directive"' in log
    time.sleep(0.3)
    assert p.workers() == [w], "workers must not change on a failed reload"
    assert http_get("http://127.0.0.1:%d/" % port).body == b"one"
    # a later good reload works
    p.reload(serve("three", port))
    assert wait_for(lambda: http_get("http://127.0.0.1:%d/" % port).body == b"three")


def test_reload_bind_failure_keeps_old_config(portico):
    port, busy = my_port(), my_port()
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", busy))
    blocker.listen(1)
    try:
        p = portico(serve("one", port))
        (w,) = p.wait_workers(1)
        conf = serve("one", port, busy)
        log = p.reload(conf, expect_ok=False)
        assert "bind() to 127.0.0.1:%d failed (98: Address already in use)" % busy in log
        assert p.workers() == [w]
        assert http_get("http://127.0.0.1:%d/" % port).body == b"one"
    finally:
        blocker.close()


def test_reload_changes_listeners(portico):
    a, b = my_port(), my_port()
    p = portico(serve("a", a))
    assert can_connect(a)
    p.reload(serve("b", b))
    assert wait_for(lambda: can_connect(b))
    assert wait_for(lambda: not can_connect(a)), "removed listener still accepts"
    assert http_get("http://127.0.0.1:%d/" % b).body == b"b"


def test_reload_keeps_serving(portico):
    """Requests run back to back while the master reloads several times:
    none may fail (the listening socket is never closed)."""
    port = my_port()
    p = portico(serve("v0", port), workers=2)
    failures, count = [], [0]
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                r = http_get("http://127.0.0.1:%d/" % port, timeout=5)
                if r.status != 200:
                    failures.append(r.status)
                count[0] += 1
            except Exception as ex:  # noqa: BLE001 - any failure counts
                failures.append(repr(ex))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 4):
            p.reload(serve("v%d" % i, port), workers=2)
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert count[0] > 20
    assert failures == [], failures[:5]
    assert http_get("http://127.0.0.1:%d/" % port).body == b"v3"


def test_worker_crash_is_respawned(portico):
    port = my_port()
    # under ASan, let SIGSEGV kill the worker as it would without it
    p = portico(serve("alive", port), workers=1, allow_alert=True,
                env={"ASAN_OPTIONS": "handle_segv=0:detect_leaks=1"})
    (w,) = p.wait_workers(1)
    time.sleep(1.1)   # past the quick-death window: respawn at once
    os.kill(w, signal.SIGSEGV)
    new = wait_for(lambda: [x for x in p.workers() if x != w], timeout=20)
    assert new, p.diagnostics()
    log = p.error_log()
    assert re.search(r"\[alert\] %d#\d+: worker process %d exited on signal 11"
                     % (p.proc.pid, w), log), log
    assert "start worker process %d" % new[0] in log
    assert wait_for(lambda: http_get("http://127.0.0.1:%d/" % port).body == b"alive")


def test_fast_crash_loop_is_throttled(portico):
    """A worker that keeps dying at once is respawned with a growing delay,
    not in a tight loop."""
    p = portico(NO_HTTP, workers=1, allow_alert=True)
    kills = 0
    deadline = time.monotonic() + 2.5
    seen = set()
    while time.monotonic() < deadline:
        for w in p.workers():
            if w not in seen:
                seen.add(w)
                try:
                    os.kill(w, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
        time.sleep(0.01)
    assert 3 <= kills <= 15, kills
    # and it recovers
    assert wait_for(lambda: [x for x in p.workers() if x not in seen], timeout=8)


def test_quit_waits_for_request_in_flight(portico, slow_backend):
    port = my_port()
    b = slow_backend(3.0, body=b"finished")
    conf = """
http {
    server {
        listen 127.0.0.1:%d;
        location / { proxy_pass http://127.0.0.1:%d; }
    }
}
""" % (port, b.port)
    p = portico(conf)
    result = {}

    def client():
        try:
            result["r"] = http_get("http://127.0.0.1:%d/slow" % port, timeout=30)
        except Exception as ex:  # noqa: BLE001
            result["err"] = ex

    t = threading.Thread(target=client)
    t.start()
    assert wait_for(lambda: b.requests, timeout=20), "request never reached the backend"
    t0 = time.monotonic()
    p.signal(signal.SIGQUIT)
    # the listener closes soon after QUIT, while the request (3 s) is running
    assert wait_for(lambda: not can_connect(port)), "still accepting after QUIT"
    t.join(30)
    assert "err" not in result, result
    assert result["r"].status == 200 and result["r"].body == b"finished"
    p.proc.wait(20)
    assert p.proc.returncode == 0
    assert time.monotonic() - t0 >= 1.0


def test_quit_waits_for_request_being_received(portico):
    """A request whose head is still arriving when QUIT comes is served (no
    backend needed): the worker stops accepting but keeps the connection."""
    port = my_port()
    p = portico(serve("served", port))
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    wait_server_read(s)      # accepted and the partial head read: in flight
    p.signal(signal.SIGQUIT)
    assert wait_for(lambda: not can_connect(port)), "still accepting after QUIT"
    time.sleep(0.3)
    assert p.proc.poll() is None, "master exited with a request in flight"
    s.sendall(b"\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 200"), data
    assert data.endswith(b"served"), data
    p.proc.wait(5)
    assert p.proc.returncode == 0


def test_worker_shutdown_timeout(portico, slow_backend):
    port = my_port()
    b = slow_backend(30, body=b"never")
    conf = """
worker_shutdown_timeout 1s;
http {
    server {
        listen 127.0.0.1:%d;
        location / { proxy_pass http://127.0.0.1:%d; }
    }
}
""" % (port, b.port)
    p = portico(conf)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_for(lambda: b.requests, timeout=5)
    t0 = time.monotonic()
    p.signal(signal.SIGQUIT)
    p.proc.wait(25)
    took = time.monotonic() - t0
    s.close()
    # 1 s nominal; the backend would hold it 30 s
    assert 0.8 <= took < 20, took


def test_term_with_idle_keepalive_connection(portico):
    port = my_port()
    p = portico(serve("k", port))
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(4096)
    t0 = time.monotonic()
    p.signal(signal.SIGQUIT)   # an idle keep-alive connection does not hold QUIT
    p.proc.wait(30)
    assert time.monotonic() - t0 < 30      # not keepalive_timeout (75 s)
    s.close()


def _traversable_prefix():
    """A prefix whose path the unprivileged workers can walk (pytest's tmp is
    0700 root-only), for tests where workers open files themselves."""
    d = tempfile.mkdtemp(prefix="portico-proc-", dir="/tmp")
    os.chmod(d, 0o755)
    return d


def test_usr1_reopens_logs():
    prefix = _traversable_prefix()
    p = Portico(prefix)
    try:
        p.start("user nobody;\n" if os.geteuid() == 0 else NO_HTTP, workers=2)
        workers = p.wait_workers(2)
        log = os.path.join(prefix, "logs", "error.log")
        os.rename(log, log + ".1")
        rc, out, err = run_portico(["-p", prefix + "/", "-c", "conf/portico.conf",
                                    "-s", "reopen"])
        assert rc == 0, err
        assert wait_for(lambda: os.path.exists(log)), "error log not recreated"
        old = lambda: open(log + ".1").read()
        assert "signal 10 (SIGUSR1) received" in old()
        # each worker logs "reopening logs" (still to the old file) just
        # before it reopens
        assert wait_for(lambda: all(re.search(r"\] %d#\d+: reopening logs" % w, old())
                                    for w in workers)), old()
        if os.geteuid() == 0:
            import pwd
            nobody = pwd.getpwnam("nobody").pw_uid
            assert wait_for(lambda: os.stat(log).st_uid == nobody), \
                "reopened file must stay writable by the workers"
        p.stop()
        new = open(log).read()
        # the master and every worker write to the new file after reopening
        assert re.search(r"\] %d#\d+: exit" % p.proc.pid, new), new
        for w in workers:
            assert re.search(r"\] %d#\d+: (gracefully shutting down|exiting)" % w, new), new
        assert "[alert]" not in new and "[alert]" not in open(log + ".1").read()
    finally:
        p.kill()
        shutil.rmtree(prefix, ignore_errors=True)


def test_daemon_on(tmp_path):
    prefix = str(tmp_path)
    port = my_port()
    write_files(prefix, {"conf/portico.conf": "error_log logs/error.log info;\n"
                         "events { }\n" + serve("daemon", port)})
    rc, out, err = run_portico(["-p", prefix + "/", "-c", "conf/portico.conf"], timeout=10)
    pidfile = os.path.join(prefix, "logs", "portico.pid")
    try:
        assert rc == 0, err
        assert out == "" and err == ""
        pid = wait_for(lambda: read_pid(pidfile))
        assert pid and pid_alive(pid)
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().split(") ", 1)[1].split()
        assert int(fields[3]) == pid, "the master leads its own session (setsid)"
        assert wait_for(lambda: can_connect(port))
        assert http_get("http://127.0.0.1:%d/" % port).body == b"daemon"
        rc, out, err = run_portico(["-p", prefix + "/", "-c", "conf/portico.conf", "-s", "quit"])
        assert rc == 0, err
        assert wait_for(lambda: not pid_alive(pid)), "daemon did not exit"
        assert not os.path.exists(pidfile)
    finally:
        pid = read_pid(pidfile)
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_master_process_off(portico):
    port = my_port()
    p = portico("master_process off;\n" + serve("single", port))
    assert http_get("http://127.0.0.1:%d/" % port).body == b"single"
    assert p.workers() == []
    assert read_pid(os.path.join(p.prefix, "logs", "portico.pid")) == p.proc.pid
    p.stop()
    assert p.proc.returncode == 0


def test_startup_bind_failure(tmp_path):
    busy = my_port()
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", busy))
    blocker.listen(1)
    try:
        write_files(tmp_path, {"conf/portico.conf": "daemon off;\nevents { }\n" + serve("x", busy)})
        rc, out, err = run_portico(["-p", str(tmp_path) + "/", "-c", "conf/portico.conf"])
        assert rc == 1
        assert ("portico: [emerg] bind() to 127.0.0.1:%d failed (98: Address already in use)"
                % busy) in err.splitlines(), err
        assert not os.path.exists(os.path.join(str(tmp_path), "logs", "portico.pid"))
    finally:
        blocker.close()


def test_unix_and_ipv6_listeners(portico, request):
    port = my_port()
    sockdir = tempfile.mkdtemp(prefix="pt-unix-", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(sockdir, ignore_errors=True))
    sock = os.path.join(sockdir, "s.sock")
    conf = """
http {
    server {
        listen [::1]:%d;
        listen unix:%s;
        location / { return 200 "multi"; }
    }
}
""" % (port, sock)
    p = portico(conf)
    s6 = socket.create_connection(("::1", port), timeout=3)
    s6.close()
    su = socket.socket(socket.AF_UNIX)
    su.connect(sock)
    su.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        chunk = su.recv(4096)
        if not chunk:
            break
        data += chunk
    su.close()
    assert data.startswith(b"HTTP/1.") and data.endswith(b"multi"), data
    p.stop()
    assert not os.path.exists(sock), "unix socket file removed at exit"


# --------------------------------------------------------------------------
# binary upgrade: USR2, WINCH, QUIT of the old master (and rolling back)
# --------------------------------------------------------------------------

def _children(pid):
    from conftest import _pids_children
    return _pids_children(pid)


class _Daemon:
    """A daemonized Portico (daemon on) in a prefix; kills what is left at the end."""

    def __init__(self, prefix, port, workers=1):
        self.prefix = str(prefix)
        self.port = port
        self.pidfile = os.path.join(self.prefix, "logs", "portico.pid")
        self.conf = "conf/portico.conf"
        self.write(serve("v1", port), workers)
        rc, out, err = run_portico(["-p", self.prefix + "/", "-c", self.conf], timeout=10)
        assert rc == 0, err
        self.master = wait_for(lambda: read_pid(self.pidfile))
        assert self.master, "no pid file"
        self.seen = {self.master}
        assert wait_for(lambda: len(_children(self.master)) >= workers)
        assert wait_for(lambda: can_connect(port))

    def write(self, http, workers=1, extra=""):
        write_files(self.prefix, {self.conf: "error_log logs/error.log info;\n"
                                  "worker_processes %d;\n%sevents { }\n%s" % (workers, extra, http)})

    def get(self):
        return http_get("http://127.0.0.1:%d/" % self.port, timeout=5).body

    def log(self):
        with open(os.path.join(self.prefix, "logs", "error.log")) as f:
            return f.read()

    def cleanup(self):
        for pid in list(self.seen):
            for k in _children(pid):
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_binary_upgrade(tmp_path):
    d = _Daemon(tmp_path, my_port(), workers=2)
    try:
        old = d.master
        old_workers = _children(old)
        assert d.get() == b"v1"

        os.kill(old, signal.SIGUSR2)
        oldbin = d.pidfile + ".oldbin"
        assert wait_for(lambda: read_pid(oldbin) == old), d.log()
        new = wait_for(lambda: read_pid(d.pidfile))
        assert new and new != old, d.log()
        d.seen.add(new)
        assert new in _children(old), "the new master is the old one's child"
        assert wait_for(lambda: len(_children(new)) == 2), d.log()
        assert "using inherited sockets from" in d.log()
        assert d.get() == b"v1"

        # WINCH: the old workers stop, the new ones serve alone
        os.kill(old, signal.SIGWINCH)
        assert wait_for(lambda: all(not pid_alive(w) for w in old_workers)), d.log()
        time.sleep(0.3)
        assert [k for k in _children(old) if k != new] == [], "old workers were respawned"
        for _ in range(5):
            assert d.get() == b"v1"

        # QUIT the old master: the new one stays, with its pid file
        os.kill(old, signal.SIGQUIT)
        assert wait_for(lambda: not pid_alive(old)), d.log()
        assert not os.path.exists(oldbin)
        assert read_pid(d.pidfile) == new
        assert d.get() == b"v1"

        # and the new master answers -s like the old one did
        d.write(serve("v2", d.port), 2)
        rc, out, err = run_portico(["-p", d.prefix + "/", "-c", d.conf, "-s", "reload"])
        assert rc == 0, err
        assert wait_for(lambda: d.get() == b"v2"), d.log()
        rc, out, err = run_portico(["-p", d.prefix + "/", "-c", d.conf, "-s", "quit"])
        assert rc == 0, err
        assert wait_for(lambda: not pid_alive(new)), d.log()
        assert not os.path.exists(d.pidfile)
        assert "[emerg]" not in d.log()
    finally:
        d.cleanup()


def test_binary_upgrade_failure_keeps_old_master(tmp_path):
    d = _Daemon(tmp_path, my_port())
    try:
        old = d.master
        workers = _children(old)
        d.write(serve("v1", d.port) + "bogus_directive;\n")
        os.kill(old, signal.SIGUSR2)
        assert wait_for(lambda: "new binary process" in d.log() and "exited with code 1" in d.log()), \
            d.log()
        assert wait_for(lambda: not os.path.exists(d.pidfile + ".oldbin"))
        assert read_pid(d.pidfile) == old
        assert _children(old) == workers
        assert d.get() == b"v1"
    finally:
        d.cleanup()


def test_binary_upgrade_rollback(tmp_path):
    """USR2 + WINCH, then the new binary is found wanting: HUP brings the old
    workers back, QUIT of the new master hands everything back."""
    d = _Daemon(tmp_path, my_port())
    try:
        old = d.master
        os.kill(old, signal.SIGUSR2)
        new = wait_for(lambda: read_pid(d.pidfile) if read_pid(d.pidfile) != old else None)
        assert new, d.log()
        d.seen.add(new)
        assert wait_for(lambda: len(_children(new)) == 1)
        old_workers = [k for k in _children(old) if k != new]
        os.kill(old, signal.SIGWINCH)
        assert wait_for(lambda: all(not pid_alive(w) for w in old_workers))
        os.kill(old, signal.SIGHUP)
        assert wait_for(lambda: len([k for k in _children(old) if k != new]) == 1), d.log()
        os.kill(new, signal.SIGQUIT)
        assert wait_for(lambda: not pid_alive(new)), d.log()
        assert wait_for(lambda: read_pid(d.pidfile) == old), d.log()
        assert not os.path.exists(d.pidfile + ".oldbin")
        assert d.get() == b"v1"
        rc, out, err = run_portico(["-p", d.prefix + "/", "-c", d.conf, "-s", "quit"])
        assert rc == 0, err
        assert wait_for(lambda: not pid_alive(old))
    finally:
        d.cleanup()
