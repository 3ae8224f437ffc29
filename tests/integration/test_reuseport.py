"""`listen ... reuseport`: one listening socket per worker (SO_REUSEPORT), so
the kernel spreads new connections over the workers by hashing them.

What is checked with real sockets, and why it is deterministic:
  * 200 new connections (200 source ports, hashed by the kernel over the
    workers' sockets) reach every worker: the chance that one of 4 workers
    gets none of 200 uniformly hashed connections is 4 * (3/4)^200 ~ 1e-25;
  * which sockets exist is read from /proc (the listening sockets of the
    port in /proc/net/tcp, and which of them each process holds), so
    "kept across a reload", "worker i keeps socket i after a respawn" and
    "the socket of a removed worker is gone" are facts, not timings.
"""

import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import PORTICO_BIN, free_port, http_get, write_files

N = 200


def conf(extra_listen=" reuseport", body="$pid", port="@PORT@"):
    return """
        http {
            server {
                listen 127.0.0.1:%s%s;
                location / { return 200 "%s"; }
            }
        }""" % (port, extra_listen, body)


def wait_for(cond, timeout=15.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def pids_serving(port, n=N):
    """The $pid of each of n requests, each on a new connection."""
    seen = []
    for _ in range(n):
        r = http_get("http://127.0.0.1:%d/" % port, timeout=10)
        assert r.status == 200
        seen.append(int(r.body))
    return seen


def listen_inodes(port):
    """Inodes of every TCP socket listening on 127.0.0.1:port (system-wide)."""
    out = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            local, state, inode = p[1], p[3], p[9]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                out.add(int(inode))
    return out


def held_sockets(pid):
    """Socket inodes a process holds."""
    out = set()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(int(t[8:-1]))
    return out


def held_listeners(pid, port):
    return held_sockets(pid) & listen_inodes(port)


def check_one_socket_each(p, workers):
    """The master holds one listening socket per worker; each worker holds
    exactly one of them, all different."""
    # a worker closes its copies of the other workers' sockets as it starts:
    # wait for that instead of racing it
    deadline = time.monotonic() + 20
    while True:
        master = held_listeners(p.proc.pid, p.port)
        own = [held_listeners(w, p.port) for w in workers]
        if all(len(s) == 1 for s in own) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(master) == len(workers)
    assert all(len(s) == 1 for s in own), own
    assert set().union(*own) == master
    return master, dict(zip(workers, own))


def test_reuseport_spreads_new_connections_over_workers(portico):
    p = portico(conf(), workers=4)
    workers = p.wait_workers(4)
    check_one_socket_each(p, workers)
    seen = pids_serving(p.port)
    assert set(seen) == set(workers), {w: seen.count(w) for w in set(seen)}


def test_without_reuseport_one_shared_socket(portico):
    p = portico(conf(extra_listen=""), workers=2)
    workers = p.wait_workers(2)
    (ls,) = listen_inodes(p.port)
    assert all(held_listeners(w, p.port) == {ls} for w in workers)
    assert pids_serving(p.port, 5)


def test_reuseport_reload_keeps_sockets_and_follows_worker_count(portico):
    p = portico(conf(), workers=4)
    before, _ = check_one_socket_each(p, p.wait_workers(4))

    # same addresses and options: the very same sockets serve on
    p.reload(conf(body="v2 $pid"), workers=4)
    new = wait_for(lambda: len(p.workers()) == 4 and p.workers())
    assert new, p.workers()
    after, _ = check_one_socket_each(p, new)
    assert after == before
    seen = set()
    for _ in range(N):
        r = http_get(p.url(), timeout=10)
        assert r.status == 200 and r.body.startswith(b"v2 ")
        seen.add(int(r.body[3:]))
    assert seen == set(new)

    # fewer workers: the removed workers' sockets close everywhere, so no
    # connection is hashed to a socket nobody accepts from
    p.reload(conf(), workers=2)
    two = wait_for(lambda: len(p.workers()) == 2 and p.workers())
    assert two, p.workers()
    kept, _ = check_one_socket_each(p, two)
    assert kept < before
    assert wait_for(lambda: listen_inodes(p.port) == kept), (listen_inodes(p.port), kept)
    t0 = time.monotonic()
    seen = pids_serving(p.port)
    assert set(seen) == set(two)
    # 200 answers from local workers: nothing waited for a connect timeout
    assert time.monotonic() - t0 < 60

    # more workers again: new sockets join the group, the two stay
    p.reload(conf(), workers=3)
    three = wait_for(lambda: len(p.workers()) == 3 and p.workers())
    assert three, p.workers()
    grown, _ = check_one_socket_each(p, three)
    assert kept < grown and len(grown) == 3
    assert set(pids_serving(p.port)) == set(three)


def test_reuseport_added_and_removed_on_reload(portico):
    p = portico(conf(extra_listen=""), workers=2)
    (shared,) = listen_inodes(p.port)

    # the shared socket becomes worker 0's and gets a sibling
    p.reload(conf(), workers=2)
    w = wait_for(lambda: len(p.workers()) == 2 and p.workers())
    assert w
    sockets, _ = check_one_socket_each(p, w)
    assert shared in sockets
    assert set(pids_serving(p.port)) == set(w)

    # and back: the one socket kept is served by both workers
    p.reload(conf(extra_listen=""), workers=2)
    w2 = wait_for(lambda: len(p.workers()) == 2 and p.workers())
    assert w2
    assert wait_for(lambda: listen_inodes(p.port) == {shared}), listen_inodes(p.port)
    assert all(held_listeners(x, p.port) == {shared} for x in w2)
    assert set(pids_serving(p.port, 20)) <= set(w2)


def test_reuseport_respawned_worker_takes_its_socket(portico):
    p = portico(conf(), workers=4, allow_alert=True)
    workers = p.wait_workers(4)
    _, own = check_one_socket_each(p, workers)
    victim = workers[2]
    os.kill(victim, signal.SIGKILL)
    now = wait_for(lambda: victim not in p.workers() and len(p.workers()) == 4 and p.workers())
    assert now, p.workers()
    (fresh,) = set(now) - set(workers)
    assert wait_for(lambda: held_listeners(fresh, p.port) == own[victim])
    _, own2 = check_one_socket_each(p, now)
    assert set(pids_serving(p.port)) == set(now)


def test_reuseport_graceful_quit_serves_request_in_flight(portico):
    p = portico(conf(), workers=2)
    p.wait_workers(2)
    # a request half sent when QUIT arrives is still answered
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    # accepted already, or still queued on the worker's own socket (then
    # the worker takes it before it closes the socket): served either way
    p.signal(signal.SIGQUIT)
    time.sleep(0.3)
    s.sendall(b"Connection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 200"), data
    p.proc.wait(15)
    assert listen_inodes(p.port) == set()


def test_reuseport_binary_upgrade_inherits_every_socket(tmp_path):
    port = free_port()
    prefix = str(tmp_path)
    pidfile = os.path.join(prefix, "logs", "portico.pid")
    text = ("error_log logs/error.log info;\nworker_processes 3;\nevents { }\n"
            + conf(port=str(port)))
    write_files(prefix, {"conf/portico.conf": text})
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)

    def read_pid(path):
        try:
            with open(path) as f:
                v = f.read().strip()
            return int(v) if v.isdigit() else None
        except OSError:
            return None

    from conftest import _pids_children as children
    seen = set()
    try:
        rc = subprocess.run([PORTICO_BIN, "-p", prefix + "/", "-c", "conf/portico.conf"],
                            timeout=15).returncode
        assert rc == 0
        old = wait_for(lambda: read_pid(pidfile))
        assert old
        seen.add(old)
        assert wait_for(lambda: len(children(old)) == 3)
        sockets = wait_for(lambda: len(listen_inodes(port)) == 3 and listen_inodes(port))
        assert sockets and held_listeners(old, port) == sockets

        os.kill(old, signal.SIGUSR2)
        new = wait_for(lambda: read_pid(pidfile) not in (None, old) and read_pid(pidfile))
        assert new
        seen.add(new)
        assert wait_for(lambda: len(children(new)) == 3)
        # the new master took all three sockets, and bound none of its own
        assert held_listeners(new, port) == sockets
        assert listen_inodes(port) == sockets

        # the old generation goes; the new workers serve every socket
        os.kill(old, signal.SIGQUIT)
        assert wait_for(lambda: not os.path.exists("/proc/%d" % old)
                        or open("/proc/%d/stat" % old).read().split(") ")[1][0] == "Z")
        new_workers = children(new)
        assert all(len(held_listeners(w, port)) == 1 for w in new_workers)
        assert set(pids_serving(port)) == set(new_workers)
    finally:
        for pid in seen:
            for k in children(pid):
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
