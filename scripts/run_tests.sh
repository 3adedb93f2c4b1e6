#!/usr/bin/env bash
# Runs every test binary in BUILD/tests and the CLI tests; exits non-zero if any fails.
# The closing line counts the suites: "make test: N passed, M failed".
set -u
build=${1:-build}
export LOPT_BUILD=$build
passed=0 failed=0
for t in "$build"/tests/test_*; do
  case "$t" in *.o|*.d) continue ;; esac
  [ -x "$t" ] || continue
  echo "== $(basename "$t")"
  if "$t"; then passed=$((passed + 1)); else echo "FAILED: $t"; failed=$((failed + 1)); fi
done
for t in tests/*.sh; do
  [ -f "$t" ] || continue
  echo "== $(basename "$t")"
  if bash "$t" "$build"; then passed=$((passed + 1)); else echo "FAILED: $t"; failed=$((failed + 1)); fi
done
echo "make test: $passed passed, $failed failed"
[ $failed -eq 0 ]
