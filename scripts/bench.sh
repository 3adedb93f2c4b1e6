#!/usr/bin/env bash
# make bench: lopt and its PyTorch peer side by side in one run, interleaved
# (lopt, torch, lopt, torch, ...) so both see the same machine state; prints every
# JSON line, then a table of medians and the ratio lopt/torch.
# Set-ups: lopt with its default threads (OpenBLAS and OpenMP over all cores);
# torch with torch.set_num_threads(2) and OPENBLAS_NUM_THREADS=1 (its fastest here).
set -euo pipefail
build=${1:-build}
rounds=${ROUNDS:-3}
runs=${RUNS:-7}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$rounds"); do
  echo "bench: round $r/$rounds" >&2
  "$build/lopt" bench --runs "$runs" | tee -a "$out"
  OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_peer.py --runs "$runs" --threads 2 | tee -a "$out"
done
/usr/bin/python3 bench/compare.py "$out"
