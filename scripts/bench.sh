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
# to be idle (other processes using < 15% of the CPUs over a second), and after it
# records how much CPU other processes took while it ran (the machine's busy time
# from /proc/stat minus the process's own user + system time): compare.py leaves
# processes that shared the machine with more than 10% out of the medians when
# enough clean ones remain, so a number taken while someone else compiled is
# recognised and not averaged in.
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

hz=$(getconf CLK_TCK)
ncpu=$(nproc)

# run WHAT CORETYPE CMD...: CMD with OPENBLAS_CORETYPE set to CORETYPE, or removed;
# its JSON lines to the output, then a note of the CPU others used meanwhile
run() {
  local what=$1 ct=$2; shift 2
  local a b tf
  tf=$(mktemp)
  read -r -a a < /proc/stat
  local t0; t0=$(date +%s.%N)
  if [ "$ct" = unset ]; then
    /usr/bin/env -u OPENBLAS_CORETYPE bash -c 'TIMEFORMAT="%U %S"; time "$@"' _ "$@" 2>"$tf" | tee -a "$out"
  else
    OPENBLAS_CORETYPE=$ct bash -c 'TIMEFORMAT="%U %S"; time "$@"' _ "$@" 2>"$tf" | tee -a "$out"
  fi
  local t1; t1=$(date +%s.%N)
  read -r -a b < /proc/stat
  local busy=0 i
  for i in 1 2 3 6 7 8; do busy=$(( busy + b[i] - a[i] )); done
  local own; own=$(tail -1 "$tf")
  grep -v '^[0-9.]* [0-9.]*$' "$tf" >&2 || true
  rm -f "$tf"
  /usr/bin/python3 - "$busy" "$hz" "$ncpu" "$t0" "$t1" "$own" "$what" "$ct" >>"$out" <<'PY'
import json, sys
busy, hz, ncpu, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
u, s = (float(x) for x in sys.argv[6].split())
wall = t1 - t0
others = max(0.0, busy / hz - (u + s))
print(json.dumps({"bench": "machine/others-during", "impl": "note", "what": sys.argv[7],
                  "coretype": sys.argv[8], "wall_s": round(wall, 1), "own_cpu_s": round(u + s, 1),
                  "others_pct": round(100 * others / (wall * ncpu), 1)}))
PY
}

peer=(/usr/bin/python3 bench/torch_peer.py --runs "$runs" --threads 2 "${only[@]}")
for r in $(seq "$rounds"); do
  for ct in "${coretypes[@]}"; do
    echo "bench: round $r/$rounds, OPENBLAS_CORETYPE=$ct" >&2
    wait_quiet lopt "$ct"
    run lopt "$ct" "$build/lopt" bench --runs "$runs" "${only[@]}"
    wait_quiet torch-OBT1 "$ct"
    run torch-OBT1 "$ct" env OPENBLAS_NUM_THREADS=1 "${peer[@]}"
    wait_quiet torch-OBTdefault "$ct"
    run torch-OBTdefault "$ct" env -u OPENBLAS_NUM_THREADS "${peer[@]}"
  done
done
echo "bench: uptime: $(uptime)" >&2
/usr/bin/python3 bench/compare.py "$out"
