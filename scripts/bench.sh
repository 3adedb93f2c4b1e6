#!/usr/bin/env bash
# make bench: lopt and its PyTorch peer side by side in one run, interleaved
# (lopt, torch, torch, lopt, torch, torch, ...) so both see the same machine state,
# ROUNDS rounds, under each OpenBLAS kernel choice: the machine's own detection
# (OPENBLAS_CORETYPE unset) and, when the environment sets one, that one. Prints
# every JSON line, then the tables of bench/compare.py (medians, min-max, ratios
# against targets); the JSON lines are kept in $BENCH_OUT (default BUILD/bench.jsonl).
#
# Set-ups: lopt with its defaults (OpenMP over all cores, OpenBLAS single-threaded
# inside). torch with torch.set_num_threads(2), once with OPENBLAS_NUM_THREADS=1
# (DESIGN.md section 6's fastest set-up) and once with OpenBLAS's default; each
# row is compared with whichever was faster in this run.
# OPENBLAS_CORETYPE is changed only for the commands below, never exported.
#
# Before each process the script waits (up to BENCH_WAIT seconds) for the machine
# to be idle (other processes using < 15% of the CPUs over a second), and records
# the busy fraction it saw in the output, so a number taken while someone else
# compiled can be recognised.
set -euo pipefail
build=${1:-build}
rounds=${ROUNDS:-3}
runs=${RUNS:-7}
wait_max=${BENCH_WAIT:-20}
out=${BENCH_OUT:-$build/bench.jsonl}
only=()
[ -n "${ONLY:-}" ] && only=(--only "$ONLY")
: >"$out"

coretypes=(unset)
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then coretypes+=("$OPENBLAS_CORETYPE"); fi

# busy fraction of all CPUs over one second (from /proc/stat)
busy() {
  local a b
  read -r -a a < /proc/stat
  sleep 1
  read -r -a b < /proc/stat
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) ))
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

wait_quiet() {
  local t=0 b
  b=$(busy)
  while [ "$b" -ge 15 ] && [ "$t" -lt "$wait_max" ]; do
    sleep 4; t=$((t + 5)); b=$(busy)
  done
  echo "{\"bench\": \"machine/busy-before\", \"impl\": \"note\", \"busy_pct\": $b, \"waited_s\": $t, \"what\": \"$1\", \"coretype\": \"$2\"}" >>"$out"
  [ "$b" -lt 15 ] || echo "bench: machine still ${b}% busy after ${t}s (before $1)" >&2
}

# run CORETYPE CMD...: CMD with OPENBLAS_CORETYPE set to CORETYPE, or removed
run() {
  local ct=$1; shift
  if [ "$ct" = unset ]; then env -u OPENBLAS_CORETYPE "$@"; else OPENBLAS_CORETYPE=$ct "$@"; fi
}

peer=(/usr/bin/python3 bench/torch_peer.py --runs "$runs" --threads 2 "${only[@]}")
for r in $(seq "$rounds"); do
  for ct in "${coretypes[@]}"; do
    echo "bench: round $r/$rounds, OPENBLAS_CORETYPE=$ct" >&2
    wait_quiet lopt "$ct"
    run "$ct" "$build/lopt" bench --runs "$runs" "${only[@]}" | tee -a "$out"
    wait_quiet torch-OBT1 "$ct"
    run "$ct" env OPENBLAS_NUM_THREADS=1 "${peer[@]}" | tee -a "$out"
    wait_quiet torch-OBTdefault "$ct"
    run "$ct" env -u OPENBLAS_NUM_THREADS "${peer[@]}" | tee -a "$out"
  done
done
echo "bench: uptime: $(uptime)" >&2
/usr/bin/python3 bench/compare.py "$out"
