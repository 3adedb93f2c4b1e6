#!/usr/bin/env bash
# make fuzz: runs each libFuzzer harness for SECONDS from a copy of its seed corpus
# (tests/fuzz/corpus/NAME, left unchanged); a crash leaves BUILD/crash-* and fails.
set -u
build=${1:-build-fuzz}
seconds=${2:-30}
fail=0
for t in lopt ckpt idx; do
  corpus="$build/corpus-$t"
  mkdir -p "$corpus"
  cp tests/fuzz/corpus/$t/* "$corpus"/
  echo "== fuzz_$t (${seconds} s)"
  if LOPT_FUZZ_TMP="$build" "$build/fuzz_$t" "$corpus" -max_total_time="$seconds" -seed=1 -timeout=10 \
       -rss_limit_mb=4096 -artifact_prefix="$build/crash-$t-" -print_final_stats=1 \
       >"$build/fuzz_$t.log" 2>&1; then
    echo "ok   fuzz_$t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/fuzz_$t.log" | grep -o '[0-9]*$') inputs, no crash"
  else
    echo "FAILED: fuzz_$t (see $build/fuzz_$t.log and $build/crash-$t-*)"; tail -30 "$build/fuzz_$t.log"; fail=1
  fi
  rm -f "$build"/lopt_fuzz_$t.*
done
if [ $fail -ne 0 ]; then echo "make fuzz: FAILED"; exit 1; fi
echo "make fuzz: all passed"
