#!/bin/sh
# Runs each libFuzzer target for a bounded time on its seed corpus; a crash,
# leak or timeout fails the target. Counts go to build/test-results/fuzz.counts.
secs=$1; shift
pass=0; fail=0
for f in "$@"; do
  name=$(basename "$f")
  corpus=fuzz/corpus/${name#fuzz_}
  work=build/fuzz/work-$name
  mkdir -p "$work" "$corpus"
  dict=""
  [ -f fuzz/http.dict ] && case $name in *h1*|*chunked*|*http*) dict="-dict=fuzz/http.dict";; esac
  echo "fuzz: $name for ${secs}s"
  if ! "$f" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 $dict "$work" "$corpus" \
       > build/fuzz/$name.log 2>&1; then
    echo "fuzz: $name FAILED"; tail -60 build/fuzz/$name.log; fail=$((fail + 1))
  else
    pass=$((pass + 1)); grep -E "^#[0-9]+.*(DONE|pulse)" build/fuzz/$name.log | tail -1
  fi
done
mkdir -p build/test-results
echo "$pass $fail" > build/test-results/fuzz.counts
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
