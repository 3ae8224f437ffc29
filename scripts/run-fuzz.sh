#!/bin/sh
# Runs each libFuzzer target for a bounded time on its seed corpus.
secs=$1; shift
status=0
for f in "$@"; do
  name=$(basename "$f")
  corpus=fuzz/corpus/${name#fuzz_}
  work=build/fuzz/work-$name
  mkdir -p "$work" "$corpus"
  dict=""
  [ -f fuzz/http.dict ] && case $name in *h1*|*http*) dict="-dict=fuzz/http.dict";; esac
  echo "fuzz: $name for ${secs}s"
  if ! "$f" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 $dict "$work" "$corpus" \
       > build/fuzz/$name.log 2>&1; then
    echo "fuzz: $name FAILED"; tail -60 build/fuzz/$name.log; status=1
  else
    tail -1 build/fuzz/$name.log
  fi
done
exit $status
