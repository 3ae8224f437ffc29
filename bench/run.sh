#!/usr/bin/env bash
# Side-by-side benchmark: Portico vs nginx vs HAProxy (and the direct backend).
#
#   bash bench/run.sh SCENARIO [TARGET...]
#
# SCENARIO: all | smoke | h1 | tls | h1-small | h1-100k | h1-conn-close | post-1m |
#           tls-h1 | tls-handshake | tls-resume | h2 | big | idle
# TARGET:   direct portico nginx haproxy (default: all four); portico-base runs
#           $PORTICO_BASE_BIN (another build) with the same config, for an A/B run
#
# Environment: BENCH_SECONDS (6), BENCH_REPS (3), BENCH_BIG_MB (1024),
# BENCH_IDLE_CONNS (10000), BENCH_PORT_BASE (29100), PORTICO_BIN (build/portico),
# BENCH_UPSTREAM_KEEPALIVE (512: `keepalive N` of the nginx/Portico upstream, sized to the h2 scenario's 500 streams),
# BENCH_KEEP=1 keeps the temporary prefixes (configs, error logs).
#
# `make bench` = `bash bench/run.sh all` (writes bench/RESULTS.md);
# `make bench-smoke` = `BENCH_SECONDS=2 bash bench/run.sh smoke` (every scenario once, 2 s each,
# a 64 MiB big transfer, no thresholds; exits 0 unless the harness itself breaks).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SCENARIO="${1:-all}"
command_line="bash bench/run.sh $*"
[ -n "${BENCH_SECONDS:-}" ] && command_line="BENCH_SECONDS=$BENCH_SECONDS $command_line"

# Tools from Debian: scripts/deps.sh --bench, plus the few the harness uses itself.
bash scripts/deps.sh --bench
need=()
for p in wrk nginx haproxy nghttp2-client curl openssl util-linux valgrind; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The backend and the small clients, built with cc -O2.
TOOLS="$ROOT/build/bench"
mkdir -p "$TOOLS"
for t in backend client; do
  if [ ! -x "$TOOLS/$t" ] || [ "bench/$t.c" -nt "$TOOLS/$t" ]; then
    cc -O2 -Wall -Wextra -Werror -o "$TOOLS/$t" "bench/$t.c"
  fi
done

# 10,000 idle connections need file descriptors (as many as the hard limit allows).
hard="$(ulimit -Hn)"
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi

mode=subset
case "$SCENARIO" in
  all) mode=full ;;
  smoke)
    mode=smoke
    export BENCH_SECONDS="${BENCH_SECONDS:-2}" BENCH_REPS="${BENCH_REPS:-1}" BENCH_BIG_MB="${BENCH_BIG_MB:-64}"
    ;;
esac
# A full run with other than the default settings is not "the" result.
if [ "$mode" = full ] && [ $# -gt 1 ]; then mode=subset; fi

export BENCH_ROOT="$ROOT" BENCH_TOOLS="$TOOLS" BENCH_MODE="$mode" BENCH_COMMAND="$command_line"
exec /usr/bin/python3 "$ROOT/bench/harness.py" "$@"
