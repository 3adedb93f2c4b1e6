#!/usr/bin/env bash
# The installed library, as a user gets it: `make install PREFIX=... DESTDIR=...`
# stages every file under DESTDIR with PREFIX in lopt.pc; `make install
# PREFIX=TMP` then gives a prefix from which examples/fit.c builds with
# `pkg-config --cflags --libs lopt` (shared) and with `--static`, and
# examples/own_task.c builds with `-llopt` alone, meta-trains an optimizer for its
# own task and trains with it. liblopt.so has a soname, exports exactly the
# functions of include/lopt.h, and no object in it was compiled with
# -march=native (the compiler's recorded command lines, DW_AT_producer).
set -u
build=${1:-build}
cc=${CC:-cc}
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "ok   $*"; }
bad() { echo "FAIL: $*"; fail=1; }

[ -f "$build/liblopt.a" ] || { echo "FAIL: $build/liblopt.a missing (make all first)"; exit 1; }
mkvars=(BUILD="$build")
extra=""
# the toggles the library was built with, read off its symbols, so that make install
# neither rebuilds it nor writes a lopt.pc for another build: a sanitized build (make
# asan) needs the sanitizer runtimes at link time, an OpenMP one -fopenmp in
# Libs.private (make asan builds with OpenMP on)
syms=$(nm "$build/liblopt.a" 2>/dev/null)
if grep -q __asan_ <<<"$syms"; then
  mkvars+=(SANITIZE=1)
  extra="-fsanitize=address,undefined"
fi
if grep -q GOMP_ <<<"$syms"; then mkvars+=(OMP=1); else mkvars+=(OMP=0); fi

# 1. staged: everything under DESTDIR, the real prefix in lopt.pc
if make --no-print-directory -s "${mkvars[@]}" install PREFIX=/opt/lopt DESTDIR="$tmp/stage" \
     >"$tmp/log" 2>&1; then
  missing=""
  for f in bin/lopt lib/liblopt.a lib/liblopt.so lib/liblopt.so.0 lib/pkgconfig/lopt.pc \
           include/lopt.h share/lopt/python/lopt_torch.py; do
    [ -e "$tmp/stage/opt/lopt/$f" ] || missing="$missing $f"
  done
  others=$(cd "$tmp/stage" && find . -mindepth 1 -maxdepth 1 ! -name opt)
  if [ -z "$missing" ] && [ -z "$others" ] && grep -qx 'prefix=/opt/lopt' "$tmp/stage/opt/lopt/lib/pkgconfig/lopt.pc"
  then ok "install PREFIX=/opt/lopt DESTDIR=...: all files staged, lopt.pc says prefix=/opt/lopt"
  else bad "staged install: missing [$missing], stray [$others]"; cat "$tmp/stage/opt/lopt/lib/pkgconfig/lopt.pc"; fi
else
  bad "make install DESTDIR failed"; cat "$tmp/log"
fi
if make --no-print-directory -s "${mkvars[@]}" install NATIVE=1 PREFIX="$tmp/never" >"$tmp/log" 2>&1 ||
   [ -e "$tmp/never/lib/liblopt.so" ]
then bad "make install NATIVE=1 was not refused"
else ok "make install refuses a NATIVE=1 build"; fi

# 2. a real prefix
prefix="$tmp/prefix"
if ! make --no-print-directory -s "${mkvars[@]}" install PREFIX="$prefix" >"$tmp/log" 2>&1; then
  bad "make install PREFIX=$prefix failed"; cat "$tmp/log"; exit 1
fi
so=$(readlink -f "$prefix/lib/liblopt.so")
soname=$(readelf -d "$so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = liblopt.so.0 ] && ok "soname $soname" || bad "soname '$soname', want liblopt.so.0"

# exported functions == the functions declared in include/lopt.h
exported=$(nm -D --defined-only "$so" | awk '$2 == "T" {sub(/@.*/, "", $3); print $3}' | sort)
declared=$($cc -E -P include/lopt.h | grep -oE '\blopt_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u)
if [ "$exported" = "$declared" ]; then ok "liblopt.so exports exactly lopt.h's $(echo "$declared" | wc -l) functions"
else bad "exports differ from lopt.h:"; diff <(echo "$declared") <(echo "$exported") | head; fi

if readelf --debug-dump=info "$so" 2>/dev/null | grep DW_AT_producer >"$tmp/producers"; then
  n=$(grep -c . "$tmp/producers")
  if [ "$n" -gt 0 ] && ! grep -q -- '-march=native' "$tmp/producers"
  then ok "no -march=native in the $n compilation units of liblopt.so"
  else bad "liblopt.so was compiled with -march=native ($n units)"; fi
else bad "no debug info to check the compile flags of liblopt.so"; fi

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
export LD_LIBRARY_PATH="$prefix/lib"
libs=$(pkg-config --libs lopt) && cflags=$(pkg-config --cflags lopt) || bad "pkg-config lopt failed"
ok "pkg-config --cflags --libs lopt: $cflags $libs"
printf '%s\n' '#include <stdio.h>' '#include <stdlib.h>' '#include "lopt.h"' \
  'int main(int c, char **v) { char m[256]; (void)c;' \
  ' return lopt_model_write_initial(v[1], "paper", 1, m, sizeof m) ? (puts(m), 1) : 0; }' >"$tmp/mk.c"
if $cc -std=c11 -Wall -Werror "$tmp/mk.c" $cflags $libs $extra -o "$tmp/mk" 2>"$tmp/err" &&
   "$tmp/mk" "$tmp/untrained.lopt"
then ok "a program built with pkg-config writes an untrained optimizer"
else bad "mkinit via pkg-config"; cat "$tmp/err"; fi

# examples/fit.c, shared and static
if $cc -std=c11 -Wall -Wextra -Werror examples/fit.c $cflags $libs $extra -o "$tmp/fit" 2>"$tmp/err"
then
  if "$tmp/fit" "$tmp/untrained.lopt" 50 >"$tmp/out" 2>&1 && ldd "$tmp/fit" | grep -q "$prefix/lib/liblopt.so.0"
  then ok "examples/fit.c via pkg-config runs against the installed liblopt.so: $(tail -1 "$tmp/out")"
  else bad "fit (shared) did not run or did not use the installed library"; cat "$tmp/out"; ldd "$tmp/fit"; fi
else bad "examples/fit.c does not build with pkg-config:"; cat "$tmp/err"; fi
static_libs=$(pkg-config --static --libs lopt | sed 's/-llopt//')
if $cc -std=c11 -Wall -Wextra -Werror examples/fit.c $cflags "$prefix/lib/liblopt.a" $static_libs $extra \
     -o "$tmp/fit-static" 2>"$tmp/err" && ! ldd "$tmp/fit-static" | grep -q liblopt &&
   "$tmp/fit-static" "$tmp/untrained.lopt" 50 >/dev/null 2>&1
then ok "examples/fit.c links liblopt.a with pkg-config --static's libraries"
else bad "static link with pkg-config --static"; cat "$tmp/err"; fi

# examples/own_task.c: -llopt alone
if $cc -std=c11 -Wall -Wextra -Werror -I"$prefix/include" examples/own_task.c -L"$prefix/lib" -llopt \
     $extra -o "$tmp/own" 2>"$tmp/err"
then ok "examples/own_task.c builds with -llopt alone"
  if "$tmp/own" "$tmp/own.lopt" 60 >"$tmp/out" 2>"$tmp/err"; then
    learned=$(sed -n 's/^learned: valid loss \([0-9.]*\) -> \([0-9.]*\).*/\1 \2/p' "$tmp/out")
    set -- $learned
    if [ $# -eq 2 ] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(b < 0.2 * a) }' &&
       "$prefix/bin/lopt" info "$tmp/own.lopt" >"$tmp/info" 2>&1 &&
       grep -q "horizon *300" "$tmp/info" && grep -q "bump-regression" "$tmp/info"
    then ok "own_task meta-trains and trains with its optimizer (valid $1 -> $2); lopt info: horizon 300, task bump-regression"
    else bad "own_task's results:"; cat "$tmp/out" "$tmp/info"; fi
  else bad "own_task failed:"; cat "$tmp/out" "$tmp/err"; fi
else bad "examples/own_task.c does not build with -llopt:"; cat "$tmp/err"; fi
exit $fail
