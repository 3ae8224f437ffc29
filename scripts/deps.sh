#!/usr/bin/env bash
# Installs the Debian packages Portico needs to build, test and run.
# Idempotent: when everything is present it prints nothing and exits 0.
set -euo pipefail

PKGS=(
  build-essential pkg-config
  libssl-dev libnghttp2-dev zlib1g-dev libpcre2-dev liburing-dev
  clang libclang-rt-14-dev
  curl openssl nghttp2-client
  python3 python3-pytest python3-httpx python3-h2 python3-websockets python3-trustme
  python3-pytest-rerunfailures
  redis-server
  pebble
)
if [ "${1:-}" = "--bench" ]; then
  PKGS+=(wrk nginx-light haproxy valgrind)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
