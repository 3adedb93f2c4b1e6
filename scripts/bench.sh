#!/usr/bin/env bash
# make bench: lopt and its PyTorch peer side by side in one run, interleaved
# (lopt, torch, lopt, torch, ...) so both see the same machine state; prints every
# JSON line, then a table of medians and the ratio lopt/torch.
# Set-ups: lopt with its default threads (OpenBLAS over all cores). torch with
# torch.set_num_threads(2), once with OPENBLAS_NUM_THREADS=1 (docs/design.md's fastest
# set-up) and once with OpenBLAS's default: its time varies a lot from run to run on
# this machine, so each measurement is compared with whichever set-up was faster.
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
  /usr/bin/python3 bench/torch_peer.py --runs "$runs" --threads 2 | tee -a "$out"
done
/usr/bin/python3 bench/compare.py "$out"
