#!/usr/bin/env bash
# Runs every test binary in BUILD/tests and the CLI tests; exits non-zero if any fails.
set -u
build=${1:-build}
export LOPT_BUILD=$build
fail=0
for t in "$build"/tests/test_*; do
  case "$t" in *.o|*.d) continue ;; esac
  [ -x "$t" ] || continue
  echo "== $(basename "$t")"
  if ! "$t"; then echo "FAILED: $t"; fail=1; fi
done
for t in tests/*.sh; do
  [ -f "$t" ] || continue
  echo "== $(basename "$t")"
  if ! bash "$t" "$build"; then echo "FAILED: $t"; fail=1; fi
done
if [ $fail -ne 0 ]; then echo "make test: FAILED"; exit 1; fi
echo "make test: all passed"
