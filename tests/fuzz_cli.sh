#!/usr/bin/env bash
# A bounded, seeded fuzz of the command line: random values (numbers at and past
# every limit, NaN, blanks, garbage, endless and special files as inputs, FIFOs,
# links and folders as outputs) for random flags of every command, on runs kept
# tiny. Passing means every run ended with exit 0, 1 or 2 - no signal, no hang
# (timeout), no temp file left, no more on stderr than a reason and a usage line
# (besides a run's own progress and warnings) - and the counts are printed.
# LOPT_FUZZ_SEED (default 11) and LOPT_FUZZ_RUNS (default 150) vary it: a fixed
# count, so a seed tries the same commands on a fast machine and a slow one;
# LOPT_FUZZ_SECONDS (default 60) only caps a very slow machine (a sanitized build).
set -u
build=${1:-build}
lopt=$(realpath "$build/lopt")
v1=$(realpath tests/data/v1-fmnist8-mlp.lopt)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
RANDOM=${LOPT_FUZZ_SEED:-11}
runs=${LOPT_FUZZ_RUNS:-150}
seconds=${LOPT_FUZZ_SECONDS:-60}

"$lopt" init-lopt --out "$tmp/ok.lopt" >/dev/null
mkfifo "$tmp/fifo"; mkdir "$tmp/dir"; ln -s ok.lopt "$tmp/link"; : >"$tmp/empty"; mkdir "$tmp/cwd"
long=$(printf 'x%.0s' $(seq 300))
values=(0 1 -1 2 3 7 -0 1e39 -1e39 1e-50 1e-45 3.4e38 nan inf -inf " 5" "5 " "" abc 0x10 1e3 \
        999999999999999999999 9223372036854775807 -9223372036854775808 2147483648 65537 \
        1,2,,3 1000,1001 1:2 1e-3:1e39 0:1 mean end tail:0.5 tail:2 sign rank none all \
        schedule paper lo nominal rp es merged pes nres fulles train valid cosine linear const \
        adam sgd adam:cosine "$long")
inputs=(/dev/zero /dev/null "$tmp/ok.lopt" "$tmp/empty" "$tmp/dir" "$tmp/missing" "$tmp/link"
        "$v1")
outputs=("$tmp/out.lopt" "$tmp/fifo" "$tmp/dir" "$tmp/link" "$tmp/ok.lopt" "$tmp/no/such/x"
         "" "$tmp/$long" "$tmp/o.csv")
pick() { local -n a=$1; REPLY=${a[RANDOM % ${#a[@]}]}; }   # no subshell: one RANDOM stream

declare -A codes
n=0; t0=$SECONDS
while [ "$n" -lt "$runs" ] && [ $((SECONDS - t0)) -lt "$seconds" ]; do
  case $((RANDOM % 6)) in
    0) cmd=(train --task quadratic --opt sgd --steps 3); flags=(lr steps batch seed eval-every warmup schedule)
       io=(log); in=(opt) ;;
    1) cmd=(meta-train --task quadratic --estimator es --K 2 --samples 2 --horizon 6 --outer-steps 1 --threads 1)
       flags=(K K-max samples sigma outer-lr grad-clip outer-steps horizon seed loss-clip diverge
              outer-batches pool shape outer-weight train eval-points estimator arch outer-loss)
       io=(out log); in=(init) ;;
    2) cmd=(init-lopt); flags=(arch like lr beta noise seed nominal-step nominal-mom); io=(out); in=() ;;
    3) cmd=(compare --task quadratic --steps 3 --baselines sgd --seeds 1 --grid-points 2 --jobs 1)
       flags=(steps grid-points tune-seeds lr-range warmup seeds baselines eval-every); io=(out); in=(lopt) ;;
    4) cmd=(info); flags=(); io=(); in=(FILE) ;;
    *) pick inputs; cmd=(train --task quadratic --opt "learned:$REPLY" --steps 2); flags=(steps seed); io=(log); in=() ;;
  esac
  args=("${cmd[@]}")
  nflags=$((1 + RANDOM % 3))   # not inside $(...): a subshell reseeds RANDOM
  for ((k = 0; k < nflags; k++)); do
    [ ${#flags[@]} -gt 0 ] && { pick flags; f=$REPLY; pick values; args+=("--$f" "$REPLY"); }
  done
  if [ ${#io[@]} -gt 0 ] && [ $((RANDOM % 2)) -eq 0 ]; then pick io; f=$REPLY; pick outputs; args+=("--$f" "$REPLY"); fi
  if [ ${#in[@]} -gt 0 ] && [ $((RANDOM % 2)) -eq 0 ]; then
    pick in; f=$REPLY; pick inputs; v=$REPLY
    if [ "$f" = FILE ]; then args+=("$v"); elif [ "$f" = opt ]; then args+=(--opt "learned:$v"); else args+=("--$f" "$v"); fi
  fi
  [ $((RANDOM % 4)) -eq 0 ] && args+=(--force)
  [ "${args[0]}" = info ] && [ ${#args[@]} -eq 1 ] && args+=("$tmp/ok.lopt")
  # in a folder of its own, emptied after every run: outputs left to their defaults
  # (lopt-TASK.lopt, compare-TASK/) neither land in the repository nor change the
  # next run's outcome
  (cd "$tmp/cwd" && timeout 20 "$lopt" "${args[@]}" >/dev/null 2>"$tmp/err" </dev/null)
  code=$?
  n=$((n + 1))
  codes[$code]=$((${codes[$code]:-0} + 1))
  if [ $code -gt 2 ]; then
    echo "FAIL: exit $code (124: hang, >128: a signal): lopt ${args[*]}"; head -3 "$tmp/err"; fail=1
  elif [ $code -ne 0 ] && [ "$(grep -cvE '^[a-z-]+( [0-9]+/[0-9]+ |: warning: )' "$tmp/err")" -gt 2 ]; then
    echo "FAIL: more than a reason and a usage line: lopt ${args[*]}"; head -4 "$tmp/err"; fail=1
  elif [ $code -eq 1 ] && ! tail -1 "$tmp/err" | grep -q "^lopt [a-z-]*: "; then
    # a runtime failure may follow progress lines and warnings; its last line is the reason
    echo "FAIL: a runtime failure without a one-line reason last: lopt ${args[*]}"; tail -3 "$tmp/err"; fail=1
  fi
  [ -p "$tmp/fifo" ] && [ -d "$tmp/dir" ] && [ -L "$tmp/link" ] || { echo "FAIL: a special file was replaced: lopt ${args[*]}"; fail=1
    rm -rf "$tmp/fifo" "$tmp/dir" "$tmp/link"; mkfifo "$tmp/fifo"; mkdir "$tmp/dir"; ln -s ok.lopt "$tmp/link"; }
  "$lopt" info "$tmp/ok.lopt" >/dev/null 2>&1 || "$lopt" init-lopt --out "$tmp/ok.lopt" --force >/dev/null
  rm -rf "$tmp/out.lopt"* "$tmp/o.csv" "$tmp/o-"* "$tmp/ok.lopt."* "$tmp/cwd" 2>/dev/null
  mkdir "$tmp/cwd"
done
if ls -a "$tmp" "$tmp/dir" | grep -q '\.tmp\.'; then echo "FAIL: temp files left"; fail=1; fi
summary=""; for c in "${!codes[@]}"; do summary+=" exit $c: ${codes[$c]},"; done
[ "$n" -lt "$runs" ] && echo "note: stopped after $n of $runs runs ($seconds s)"
echo "ok   fuzz the command line: $n runs (seed ${LOPT_FUZZ_SEED:-11}, $((SECONDS - t0)) s):${summary%,}"
exit $fail
