#!/usr/bin/env bash
# Instructions (and syscalls) per request on the h1-small path: Portico vs nginx.
#
#   bash bench/profile.sh [portico] [nginx]
#
# Each proxy runs in single-process mode (-g "master_process off; daemon off;")
# on the same generated config bench/run.sh uses, in front of bench/backend.c.
# A small client (bench/client.c) sends GET /1k (1 KiB answer) requests one
# after the other on one keep-alive connection.
#
# Instruction counts are repeatable on a noisy machine, unlike time. When
# `perf stat -e instructions` works here it is used (hardware counter, whole
# process, user+kernel); otherwise valgrind --tool=callgrind counts user-space
# instructions. Either way the count is taken for PROFILE_WARM and for
# PROFILE_WARM+PROFILE_REQS requests, and the difference divided by
# PROFILE_REQS, so start-up, shutdown and connection set-up cancel out.
# strace -c gives the syscalls per request the same way.
#
# Environment: PROFILE_REQS (2000), PROFILE_WARM (200), PROFILE_PATH (/1k; /100k for
# the 100 KiB answer), PROFILE_CLOSE=1 (a new connection with "Connection: close"
# per request: the h1-conn-close path), PORTICO_BIN,
# PROFILE_TOP (25 functions listed per proxy), PROFILE_PORT_BASE (29150),
# BENCH_KEEP=1 keeps the work folder (callgrind files for callgrind_annotate).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQS="${PROFILE_REQS:-2000}"
WARM="${PROFILE_WARM:-200}"
TOP="${PROFILE_TOP:-25}"
RPATH="${PROFILE_PATH:-/1k}"
PORTICO="${PORTICO_BIN:-$ROOT/build/portico}"
BASE="${PROFILE_PORT_BASE:-29150}"
CMODE=reqs; [ -n "${PROFILE_CLOSE:-}" ] && CMODE=close
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(portico nginx)

bash scripts/deps.sh --bench
for p in valgrind strace; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  fi
done
TOOLS="$ROOT/build/bench"
mkdir -p "$TOOLS"
for t in backend client; do
  if [ ! -x "$TOOLS/$t" ] || [ "bench/$t.c" -nt "$TOOLS/$t" ]; then
    cc -O2 -Wall -Wextra -Werror -o "$TOOLS/$t" "bench/$t.c"
  fi
done

WORK="$(mktemp -d /tmp/portico-profile.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  [ -n "${BENCH_KEEP:-}" ] && echo "profile: kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BPORT=$BASE; PPORT=$((BASE + 1))
taskset -c 1 "$TOOLS/backend" "$BPORT" &
PIDS+=($!)

# The config is the one bench/run.sh generates for nginx and Portico.
/usr/bin/python3 - "$WORK" "$BASE" <<'EOF'
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "bench"))
import harness
work, base = sys.argv[1], int(sys.argv[2])
ports = harness.Ports(base)
os.makedirs(os.path.join(work, "conf"), exist_ok=True)
with open(os.path.join(work, "conf", "bench.conf"), "w") as f:
    f.write(harness.nginx_conf(ports, False))
EOF

perf_ok=0
if command -v perf >/dev/null && perf stat -x, -e instructions true 2>&1 >/dev/null | grep -qE '^[0-9]+,'; then
  perf_ok=1
  echo "profile: perf stat -e instructions works here: counting with perf (user+kernel)"
else
  echo "profile: perf stat -e instructions is not supported here (no hardware counters in this VM):" \
       "counting user-space instructions with valgrind --tool=callgrind"
fi

bin_for() { case "$1" in portico) echo "$PORTICO" ;; nginx) echo /usr/sbin/nginx ;; esac; }

wait_ready() {   # url, seconds
  for _ in $(seq $(($2 * 10))); do
    [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

# run_counted TARGET N MODE -> prints the instruction (or syscall) total file
run_once() {
  local target=$1 n=$2 mode=$3 prefix="$WORK/$1-$2-$3"
  mkdir -p "$prefix/logs" "$prefix/conf"
  cp "$WORK/conf/bench.conf" "$prefix/conf/"
  local bin; bin="$(bin_for "$target")"
  local args=(-p "$prefix/" -c conf/bench.conf -e logs/error.log -g "master_process off; daemon off;")
  local pid
  case "$mode" in
    callgrind)
      taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$prefix/callgrind.out" \
        --log-file="$prefix/valgrind.log" "$bin" "${args[@]}" &
      pid=$! ;;
    strace)
      taskset -c 0 strace -f -c -o "$prefix/strace.out" "$bin" "${args[@]}" &
      pid=$! ;;
    perf)
      taskset -c 0 perf stat -x, -e instructions -o "$prefix/perf.out" "$bin" "${args[@]}" &
      pid=$! ;;
  esac
  PIDS+=("$pid")
  if ! wait_ready "http://127.0.0.1:$PPORT/1k" 60; then
    echo "profile: $target did not answer under $mode (see $prefix/logs)" >&2
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    return 1
  fi
  taskset -c 1 "$TOOLS/client" "$CMODE" 127.0.0.1 "$PPORT" "$n" "$RPATH" >"$prefix/client.out"
  # valgrind/strace/perf pass TERM on to the proxy, which exits and lets them write.
  local child
  child="$(cat /proc/"$pid"/task/*/children 2>/dev/null | awk '{print $1}' | head -1)"
  kill -TERM "${child:-$pid}" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

total_of() {   # mode prefix -> number
  case "$1" in
    callgrind) awk '/^(summary|totals):/ {print $2; exit}' "$2/callgrind.out" ;;
    perf) awk -F, '/instructions/ {print $1; exit}' "$2/perf.out" ;;
  esac
}

echo
if [ "$CMODE" = close ]; then
  echo "GET $RPATH, $REQS requests, each on a new connection (Connection: close)"
else
  echo "GET $RPATH, $REQS requests on one keep-alive connection"
fi
echo
echo "| proxy | instructions/request | syscalls/request | top syscalls per request |"
echo "|---|---:|---:|---|"
report=()
for t in "${targets[@]}"; do
  bin="$(bin_for "$t")"
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "| $t | not available | | |"
    continue
  fi
  mode=callgrind; [ $perf_ok = 1 ] && mode=perf
  run_once "$t" "$WARM" "$mode" || { echo "| $t | failed | | |"; continue; }
  run_once "$t" $((WARM + REQS)) "$mode" || { echo "| $t | failed | | |"; continue; }
  a="$(total_of $mode "$WORK/$t-$WARM-$mode")"
  b="$(total_of $mode "$WORK/$t-$((WARM + REQS))-$mode")"
  ipr="$(awk -v a="$a" -v b="$b" -v n="$REQS" 'BEGIN {printf "%.0f", (b - a) / n}')"

  run_once "$t" "$WARM" strace || true
  run_once "$t" $((WARM + REQS)) strace || true
  sys="$(/usr/bin/python3 - "$WORK/$t-$WARM-strace/strace.out" "$WORK/$t-$((WARM + REQS))-strace/strace.out" "$REQS" <<'EOF'
import re, sys
def calls(path):
    d = {}
    try:
        for line in open(path):
            f = line.split()
            if len(f) >= 5 and re.match(r"^[\d.]+$", f[0]) and f[-1] != "total":
                d[f[-1]] = int(f[3])
    except OSError:
        pass
    return d
a, b, n = calls(sys.argv[1]), calls(sys.argv[2]), int(sys.argv[3])
diff = {k: (b.get(k, 0) - a.get(k, 0)) / n for k in b}
tot = sum(v for v in diff.values() if v > 0)
top = sorted(((v, k) for k, v in diff.items() if v >= 0.01), reverse=True)[:6]
print(f"{tot:.2f}|" + ", ".join(f"{k} {v:.2f}" for v, k in top))
EOF
)"
  echo "| $t | $ipr | ${sys%%|*} | ${sys#*|} |"
  if [ $mode = callgrind ]; then
    report+=("$t")
  fi
done

for t in "${report[@]}"; do
  echo
  echo "## $t: top $TOP functions, instructions per request (the $WARM-request run subtracted)"
  echo
  /usr/bin/python3 - "$WORK/$t-$WARM-callgrind/callgrind.out" "$WORK/$t-$((WARM + REQS))-callgrind/callgrind.out" \
      "$REQS" "$TOP" <<'EOF'
import re, subprocess, sys
def funcs(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", path],
                         capture_output=True, text=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.+?)\s*$", line)
        if m and "PROGRAM TOTALS" not in line:
            name = re.sub(r"\s*\[[^\]]*\]$", "", m.group(2))
            name = re.sub(r"^.*/(?=[^/]+:)", "", name)       # keep file:function, drop folders
            d[name] = d.get(name, 0) + int(m.group(1).replace(",", ""))
    return d
a, b = funcs(sys.argv[1]), funcs(sys.argv[2])
n, top = int(sys.argv[3]), int(sys.argv[4])
diff = sorted(((b[k] - a.get(k, 0)) / n, k) for k in b)
diff.reverse()
tot = sum(v for v, _ in diff if v > 0)
print("| instructions/request | share | function |")
print("|---:|---:|---|")
for v, k in diff[:top]:
    if v <= 0:
        break
    print(f"| {v:,.0f} | {100 * v / tot:.1f}% | {k} |")
EOF
done
