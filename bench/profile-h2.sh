#!/usr/bin/env bash
# Instructions (and syscalls) per request on the HTTP/2 path (the "h2" scenario
# of bench/run.sh): Portico against HAProxy and nginx.
#
#   bash bench/profile-h2.sh [portico] [haproxy] [nginx]      (default: portico haproxy)
#
# Each proxy runs as one process (Portico and nginx: -g "master_process off;
# daemon off;" on the config bench/run.sh generates; HAProxy: -db, nbthread 1),
# TLS 1.3 with an ECDSA P-256 certificate, in front of bench/backend.c.
# h2load sends GET /1k (1 KiB answer) with -c PROFILE_CONNS -m PROFILE_STREAMS.
#
# Instructions: valgrind --tool=callgrind counts the proxy's user-space
# instructions (`perf stat -e instructions` is not supported on this VM) for
# a run of PROFILE_WARM requests and one of PROFILE_WARM+PROFILE_REQS; the
# difference divided by PROFILE_REQS is the cost of a request, start-up,
# handshakes and shutdown cancel out. callgrind_annotate splits it by
# function (the same subtraction, per function).
# Syscalls: strace -c -f -p attached to the serving process (not under
# valgrind) around the same two h2load runs, subtracted the same way.
# Under valgrind the proxy runs ~50x slower, so it sees more frames per
# read than at full speed; the syscall figures are taken at native speed.
#
# Environment: PROFILE_REQS (20000), PROFILE_WARM (2000), PROFILE_CONNS (10),
# PROFILE_STREAMS (10), PROFILE_PATH (/1k), PROFILE_TOP (30), PORTICO_BIN,
# PROFILE_PORT_BASE (29170), PROFILE_NO_CALLGRIND=1 (syscalls only), PROFILE_NO_STRACE=1,
# BENCH_KEEP=1 keeps the work folder (callgrind files for callgrind_annotate).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQS="${PROFILE_REQS:-20000}"
WARM="${PROFILE_WARM:-2000}"
CONNS="${PROFILE_CONNS:-10}"
STREAMS="${PROFILE_STREAMS:-10}"
TOP="${PROFILE_TOP:-30}"
RPATH="${PROFILE_PATH:-/1k}"
PORTICO="${PORTICO_BIN:-$ROOT/build/portico}"
BASE="${PROFILE_PORT_BASE:-29170}"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(portico haproxy)

bash scripts/deps.sh --bench
for p in valgrind strace nghttp2-client; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  fi
done
TOOLS="$ROOT/build/bench"
mkdir -p "$TOOLS"
if [ ! -x "$TOOLS/backend" ] || [ bench/backend.c -nt "$TOOLS/backend" ]; then
  cc -O2 -Wall -Wextra -Werror -o "$TOOLS/backend" bench/backend.c
fi

WORK="$(mktemp -d /tmp/portico-profile-h2.XXXXXX)"
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

BPORT=$BASE
taskset -c 1 "$TOOLS/backend" "$BPORT" &
PIDS+=($!)

# TLS material and the configs bench/run.sh generates.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 2 -subj /CN=localhost >/dev/null 2>&1
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/combined.pem"
/usr/bin/python3 - "$WORK" "$BASE" <<'EOF'
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "bench"))
import harness
work, base = sys.argv[1], int(sys.argv[2])
ports = harness.Ports(base)
with open(os.path.join(work, "bench.conf"), "w") as f:
    f.write(harness.nginx_conf(ports, True))
with open(os.path.join(work, "haproxy.cfg"), "w") as f:
    f.write(harness.haproxy_cfg(ports, True, work))
EOF
URL="https://127.0.0.1:$((BASE + 2))"

# prefix for one run; prints the argv (one per line)
argv_for() {   # target prefix
  case "$1" in
    portico|nginx)
      mkdir -p "$2/logs" "$2/conf"
      cp "$WORK/bench.conf" "$WORK/cert.pem" "$WORK/key.pem" "$2/conf/"
      local bin=/usr/sbin/nginx
      [ "$1" = portico ] && bin="$PORTICO"
      printf '%s\n' "$bin" -p "$2/" -c conf/bench.conf -e logs/error.log \
        -g "master_process off; daemon off;" ;;
    haproxy)
      mkdir -p "$2"
      printf '%s\n' /usr/sbin/haproxy -f "$WORK/haproxy.cfg" -db ;;
  esac
}

wait_ready() {   # seconds
  for _ in $(seq $(($1 * 10))); do
    [ "$(curl -sk -o /dev/null -m 2 -w '%{http_code}' "$URL/1k")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

load() {   # requests outfile
  taskset -c 1 h2load -t1 -n "$1" -c "$CONNS" -m "$STREAMS" "$URL$RPATH" >"$2" 2>&1
  if ! grep -q "succeeded, 0 failed, 0 errored" "$2" || grep -q "status codes: 0 2xx" "$2"; then
    echo "profile: h2load reported failures:" >&2
    grep -E "requests:|status codes:" "$2" >&2 || tail -5 "$2" >&2
    return 1
  fi
}

stop() {   # pid
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

callgrind_run() {   # target requests -> $WORK/T-N-cg/callgrind.out
  local prefix="$WORK/$1-$2-cg" pid
  mkdir -p "$prefix"
  mapfile -t argv < <(argv_for "$1" "$prefix")
  (cd "$prefix" && exec taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$prefix/callgrind.out" \
     --log-file="$prefix/valgrind.log" "${argv[@]}") &
  pid=$!
  PIDS+=("$pid")
  wait_ready 120 || { echo "profile: $1 did not answer under valgrind" >&2; stop "$pid"; return 1; }
  load "$2" "$prefix/h2load.out" || { stop "$pid"; return 1; }
  # valgrind passes TERM on; the proxy exits and callgrind writes its file
  stop "$pid"
  [ -s "$prefix/callgrind.out" ]
}

# One native process, strace attached around each of the two loads.
strace_runs() {   # target -> $WORK/T-{WARM,WARM+REQS}-st/strace.out
  local prefix="$WORK/$1-st" pid sp n
  mkdir -p "$prefix"
  mapfile -t argv < <(argv_for "$1" "$prefix")
  (cd "$prefix" && exec taskset -c 0 "${argv[@]}" >"$prefix/stderr.log" 2>&1) &
  pid=$!
  PIDS+=("$pid")
  wait_ready 30 || { echo "profile: $1 did not answer" >&2; stop "$pid"; return 1; }
  for n in "$WARM" $((WARM + REQS)); do
    mkdir -p "$WORK/$1-$n-st"
    strace -c -f -p "$pid" -o "$WORK/$1-$n-st/strace.out" 2>/dev/null &
    sp=$!
    sleep 1
    load "$n" "$WORK/$1-$n-st/h2load.out" || { kill -INT "$sp"; wait "$sp" || true; stop "$pid"; return 1; }
    kill -INT "$sp"
    wait "$sp" || true
  done
  stop "$pid"
}

total_of() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }

echo
echo "GET $RPATH over TLS 1.3 + HTTP/2: h2load -n $REQS -c $CONNS -m $STREAMS ($WARM-request run subtracted)"
echo
echo "| proxy | instructions/request | syscalls/request | top syscalls per request |"
echo "|---|---:|---:|---|"
report=()
for t in "${targets[@]}"; do
  case "$t" in
    portico) [ -x "$PORTICO" ] || { echo "| $t | not built | | |"; continue; } ;;
    nginx) [ -x /usr/sbin/nginx ] || { echo "| $t | not available | | |"; continue; } ;;
    haproxy) [ -x /usr/sbin/haproxy ] || { echo "| $t | not available | | |"; continue; } ;;
    *) echo "| $t | unknown target | | |"; continue ;;
  esac
  ipr="-"
  if [ -z "${PROFILE_NO_CALLGRIND:-}" ]; then
    if callgrind_run "$t" "$WARM" && callgrind_run "$t" $((WARM + REQS)); then
      a="$(total_of "$WORK/$t-$WARM-cg/callgrind.out")"
      b="$(total_of "$WORK/$t-$((WARM + REQS))-cg/callgrind.out")"
      ipr="$(awk -v a="$a" -v b="$b" -v n="$REQS" 'BEGIN {printf "%.0f", (b - a) / n}')"
      report+=("$t")
    else
      ipr="failed"
    fi
  fi
  sys="-|"
  if [ -z "${PROFILE_NO_STRACE:-}" ] && strace_runs "$t"; then
    sys="$(/usr/bin/python3 - "$WORK/$t-$WARM-st/strace.out" "$WORK/$t-$((WARM + REQS))-st/strace.out" "$REQS" <<'EOF'
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
top = sorted(((v, k) for k, v in diff.items() if v >= 0.005), reverse=True)[:6]
print(f"{tot:.3f}|" + ", ".join(f"{k} {v:.3f}" for v, k in top))
EOF
)"
  fi
  echo "| $t | $ipr | ${sys%%|*} | ${sys#*|} |"
done

for t in "${report[@]}"; do
  echo
  echo "## $t: top $TOP functions, instructions per request (self cost; the $WARM-request run subtracted)"
  echo
  /usr/bin/python3 - "$WORK/$t-$WARM-cg/callgrind.out" "$WORK/$t-$((WARM + REQS))-cg/callgrind.out" \
      "$REQS" "$TOP" <<'EOF'
import re, subprocess, sys
objs = [{}, {}]
def funcs(path, k):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", path],
                         capture_output=True, text=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.+?)\s*$", line)
        if m and "PROGRAM TOTALS" not in line:
            raw = m.group(2)
            obj = re.search(r"\[(?:.*/)?([^/\]]+)\]$", raw)
            name = re.sub(r"\s*\[[^\]]*\]$", "", raw)
            name = re.sub(r"^.*/(?=[^/]+:)", "", name)
            if name.startswith("???:") and obj:     # no symbols: name the library
                name = obj.group(1).split(".so")[0] + ":" + name[4:]
            d[name] = d.get(name, 0) + int(m.group(1).replace(",", ""))
            o = obj.group(1).split(".so")[0] if obj else "?"
            objs[k][o] = objs[k].get(o, 0) + int(m.group(1).replace(",", ""))
    return d
a, b = funcs(sys.argv[1], 0), funcs(sys.argv[2], 1)
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
print()
print("By object: " + ", ".join(f"{k} {v:,.0f}" for v, k in sorted(
    (((objs[1][k] - objs[0].get(k, 0)) / n, k) for k in objs[1]), reverse=True) if v >= 1))
EOF
done
