# lib.bash - shared by the CLI test scripts (sourced; needs $lopt, $tmp and $fail set).

# expect CODE PATTERN -- ARGS...: runs lopt, checks the exit code and that stderr
# (or stdout for code 0) matches PATTERN
expect() {
  local code=$1 pat=$2; shift 3
  "$lopt" "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  local text
  if [ "$code" -eq 0 ]; then text=$(cat "$tmp/out"); else text=$(cat "$tmp/err"); fi
  if [ "$got" -ne "$code" ] || ! grep -qE -- "$pat" <<<"$text"; then
    echo "FAIL: lopt $* -> exit $got (want $code), output:"; cat "$tmp/err" "$tmp/out" | head -5
    fail=1
  else
    echo "ok   lopt $* -> $got"
  fi
}
