#!/usr/bin/env bash
# The public API from the outside (include/lopt.h): the header compiles alone
# (C11 and C++, pedantic), examples/fit.c builds against it and BUILD/liblopt.a,
# trains its own model with an untrained .lopt written by lopt_model_write_initial,
# prints finite losses and exits 0; a corrupt or missing file exits 1 with a message.
set -u
build=${1:-build}
cc=${CC:-cc}
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "ok   $*"; }
bad() { echo "FAIL: $*"; fail=1; }

lib="$build/liblopt.a"
[ -f "$lib" ] || { echo "FAIL: $lib missing (make all first)"; exit 1; }
flags="-std=c11 -Wall -Wextra -Werror -Iinclude"
libs="$lib -lopenblas -lz -lm -fopenmp"
# a sanitized liblopt (make asan) needs the sanitizer runtimes at link time
if nm "$lib" 2>/dev/null | grep -q __asan_; then libs="$libs -fsanitize=address,undefined"; fi

# the header stands alone: standard headers only, valid C11 and C++
printf '#include "lopt.h"\nint main(void) { return 0; }\n' >"$tmp/h.c"
if $cc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude -fsyntax-only "$tmp/h.c" 2>"$tmp/err"
then ok "include/lopt.h compiles alone (C11 -pedantic)"; else bad "lopt.h alone:"; cat "$tmp/err"; fi
if command -v c++ >/dev/null; then
  if c++ -x c++ -Wall -Wextra -Werror -Iinclude -fsyntax-only "$tmp/h.c" 2>"$tmp/err"
  then ok "include/lopt.h compiles as C++"; else bad "lopt.h as C++:"; cat "$tmp/err"; fi
fi

# build the example exactly as a user would
if $cc $flags examples/fit.c $libs -o "$tmp/fit" 2>"$tmp/err"; then ok "examples/fit.c builds"
else bad "examples/fit.c does not build:"; cat "$tmp/err"; exit 1; fi

# an untrained optimizer, written through the public API
cat >"$tmp/mkinit.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include "lopt.h"
int main(int argc, char **argv)
{
    char msg[256];
    if (argc != 4) return 2;
    if (lopt_model_write_initial(argv[1], argv[2], strtoull(argv[3], NULL, 10), msg,
                                 sizeof msg) != 0) {
        fprintf(stderr, "mkinit: %s\n", msg);
        return 1;
    }
    return 0;
}
C
$cc $flags "$tmp/mkinit.c" $libs -o "$tmp/mkinit" || { bad "mkinit does not build"; exit 1; }

for preset in paper lo; do
  f="$tmp/$preset.lopt"
  if ! "$tmp/mkinit" "$f" "$preset" 1 2>"$tmp/err"; then bad "write_initial $preset:"; cat "$tmp/err"; continue; fi
  "$tmp/fit" "$f" 300 >"$tmp/out" 2>"$tmp/err"
  code=$?
  first=$(sed -n 's/^initial loss \([^ ]*\).*/\1/p' "$tmp/out")
  last=$(sed -n 's/^final loss \([^ ]*\).*/\1/p' "$tmp/out")
  num='^[0-9]+\.[0-9]+$'   # printf's %f: "nan" and "inf" do not match
  if [ $code -eq 0 ] && [[ $first =~ $num ]] && [[ $last =~ $num ]]; then
    ok "fit with untrained $preset: exit 0, loss $first -> $last"
  else
    bad "fit with untrained $preset: exit $code"; cat "$tmp/out" "$tmp/err"
  fi
done
if ! "$tmp/mkinit" "$tmp/x.lopt" nope 1 2>"$tmp/err" && grep -q "unknown architecture" "$tmp/err"
then ok "write_initial refuses an unknown preset"; else bad "write_initial accepted preset 'nope'"; fi

# refusals: exit 1 and a one-line reason on stderr
expect_refusal() {
  local what=$1 file=$2 pat=$3
  "$tmp/fit" "$file" 10 >"$tmp/out" 2>"$tmp/err"
  local code=$?
  if [ $code -eq 1 ] && grep -q -- "$pat" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ]; then
    ok "fit refuses $what: $(cat "$tmp/err")"
  else
    bad "fit with $what: exit $code (want 1, message matching '$pat')"; cat "$tmp/err"
  fi
}
cp "$tmp/paper.lopt" "$tmp/corrupt.lopt"
printf '\x55' | dd of="$tmp/corrupt.lopt" bs=1 seek=1000 conv=notrunc status=none
expect_refusal "a corrupt file" "$tmp/corrupt.lopt" "checksum mismatch"
head -c 100 "$tmp/paper.lopt" >"$tmp/short.lopt"
expect_refusal "a truncated file" "$tmp/short.lopt" "truncated"
expect_refusal "a missing file" "$tmp/none.lopt" "cannot open"
expect_refusal "a foreign file" examples/fit.c "not a .lopt file"
exit $fail
