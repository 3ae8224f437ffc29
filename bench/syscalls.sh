#!/usr/bin/env bash
# System calls (and context switches, CPU) per request of one proxy's worker
# under load, counted with perf tracepoints on the worker process.
#
#   bash bench/syscalls.sh TARGET [MODE]
#
# TARGET: portico | nginx (the config bench/run.sh generates for both)
# MODE:   close (default: wrk -c50 with "Connection: close", a new connection
#         per request: the h1-conn-close scenario) | keepalive (wrk -c50, the
#         h1-small scenario) | tls-new (openssl s_time -new: a full TLS 1.3
#         handshake per connection, tls-handshake) | tls-resume (wrk over TLS
#         with "Connection: close", resumed handshakes, tls-resume)
#
# The proxy runs on CPU 0 (master_process on, one worker), bench/backend.c and
# the client on CPU 1, for SYSCALLS_SECONDS (3) after a 1 s warm-up; the
# counts are divided by the requests (connections for tls-new) completed.
# Environment: PORTICO_BIN (build/portico), SYSCALLS_PORT_BASE (29600).
# Needs perf with the syscalls:* tracepoints (root or perf_event_paranoid <= 1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
T="${1:?usage: bench/syscalls.sh portico|nginx [close|keepalive|tls-new|tls-resume]}"
MODE="${2:-close}"
SECS="${SYSCALLS_SECONDS:-3}"
BASE="${SYSCALLS_PORT_BASE:-29600}"
case "$T" in
  portico) BIN="${PORTICO_BIN:-$ROOT/build/portico}" ;;
  nginx) BIN=/usr/sbin/nginx ;;
  *) echo "syscalls: unknown target $T" >&2; exit 2 ;;
esac
TLS=False; case "$MODE" in tls-*) TLS=True ;; esac

mkdir -p build/bench
for t in backend; do
  if [ ! -x "build/bench/$t" ] || [ "bench/$t.c" -nt "build/bench/$t" ]; then
    cc -O2 -Wall -Wextra -Werror -o "build/bench/$t" "bench/$t.c"
  fi
done

WORK="$(mktemp -d /tmp/portico-syscalls.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/logs" "$WORK/conf"
if [ "$TLS" = True ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -keyout "$WORK/conf/key.pem" -out "$WORK/conf/cert.pem" 2>/dev/null
fi
/usr/bin/python3 - "$WORK" "$BASE" "$TLS" <<'EOF'
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "bench"))
import harness
work, base, tls = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "True"
with open(os.path.join(work, "conf", "bench.conf"), "w") as f:
    f.write(harness.nginx_conf(harness.Ports(base), tls))
EOF

taskset -c 1 build/bench/backend "$BASE" & PIDS+=($!)
taskset -c 0 "$BIN" -p "$WORK/" -c conf/bench.conf -e logs/error.log \
  -g "daemon off; master_process on;" 2>"$WORK/logs/stderr.log" & PP=$!; PIDS+=($PP)
if [ "$TLS" = True ]; then URL="https://127.0.0.1:$((BASE + 2))/1k"; else URL="http://127.0.0.1:$((BASE + 1))/1k"; fi
for _ in $(seq 100); do
  [ "$(curl -sk -o /dev/null -m 2 -w '%{http_code}' "$URL")" = 200 ] && break
  sleep 0.1
done
WP="$(pgrep -P "$PP" | head -1)"
[ -n "$WP" ] || { echo "syscalls: no worker" >&2; exit 1; }

case "$MODE" in
  close|tls-resume) LOAD=(wrk -t1 -c50 -H 'Connection: close') ;;
  keepalive) LOAD=(wrk -t1 -c50) ;;
  tls-new) LOAD=() ;;
  *) echo "syscalls: unknown mode $MODE" >&2; exit 2 ;;
esac
EV="task-clock,context-switches"
for s in epoll_wait epoll_ctl accept4 recvfrom read readv sendmsg sendto write writev close \
         shutdown setsockopt getsockopt getsockname connect socket ioctl fcntl getpid io_uring_enter; do
  EV="$EV,syscalls:sys_enter_$s"
done
if [ "$MODE" = tls-new ]; then
  taskset -c 1 openssl s_time -connect "127.0.0.1:$((BASE + 2))" -www /1k -new -time 1 >/dev/null 2>&1 || true
  perf stat -e "$EV" -p "$WP" -o "$WORK/stat.txt" -- \
    taskset -c 1 openssl s_time -connect "127.0.0.1:$((BASE + 2))" -www /1k -new -time "$SECS" >"$WORK/load.out" 2>&1
  n="$(awk '/connections in/ {print $1; exit}' "$WORK/load.out")"
  unit=conn
else
  taskset -c 1 "${LOAD[@]}" -d1s "$URL" >/dev/null
  perf stat -e "$EV" -p "$WP" -o "$WORK/stat.txt" -- \
    taskset -c 1 "${LOAD[@]}" -d"${SECS}s" "$URL" >"$WORK/load.out" 2>&1
  n="$(awk '/requests in/ {print $1}' "$WORK/load.out")"
  unit=req
fi
[ -n "$n" ] && [ "$n" -gt 0 ] || { echo "syscalls: no requests completed" >&2; cat "$WORK/load.out" >&2; exit 1; }
echo "$T $MODE: $n ${unit}s in ${SECS} s"
awk -v n="$n" -v u="$unit" '
  /task-clock/ { v = $1; gsub(",", "", v); printf "  %-28s %8.2f us/%s\n", "cpu (task-clock)", v * 1000 / n, u }
  /context-switches/ { v = $1; gsub(",", "", v); printf "  %-28s %8.3f /%s\n", "context switches", v / n, u }
  /syscalls:sys_enter_/ { v = $1; gsub(",", "", v); if (v > 0) { name = $2; sub("syscalls:sys_enter_", "", name);
                          printf "  %-28s %8.3f /%s\n", name, v / n, u; tot += v / n } }
  END { printf "  %-28s %8.3f /%s\n", "total system calls", tot, u }' "$WORK/stat.txt"
