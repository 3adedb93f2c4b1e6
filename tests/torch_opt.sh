#!/usr/bin/env bash
# The PyTorch optimizer (python/lopt_torch.py, ctypes over BUILD/liblopt.so) against
# the C API: tests/torch/lopt_torch_test.py trains a small torch model with it and
# replays the same initial weights and gradients through tests/torch/lopt_ref.c
# (the flat lopt_opt_step, linked with BUILD/liblopt.a); plus state_dict round
# trips, schedulers, skipped parameters and refusals (see the script).
# Needs Debian's python3-torch (scripts/deps.sh). A sanitized build (make asan)
# cannot be loaded into an unsanitized python: the test says so and is skipped.
set -u
build=${1:-build}
py=${PY:-/usr/bin/python3}
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -f "$build/liblopt.so" ] || { echo "FAIL: $build/liblopt.so missing (make all first)"; exit 1; }
if nm -D "$build/liblopt.so" 2>/dev/null | grep -q __asan_; then
  echo "skip torch_opt: $build/liblopt.so is sanitized (make test runs it unsanitized)"
  exit 0
fi
"$py" -c "import torch" 2>/dev/null || { echo "FAIL: $py cannot import torch (scripts/deps.sh)"; exit 1; }
if ! $cc -std=c11 -Wall -Wextra -Werror -Iinclude tests/torch/lopt_ref.c "$build/liblopt.a" \
       -lopenblas -lz -lm -fopenmp -o "$tmp/lopt_ref" 2>"$tmp/err"; then
  echo "FAIL: tests/torch/lopt_ref.c does not build:"; cat "$tmp/err"; exit 1
fi
LOPT_LIBRARY="$build/liblopt.so" OMP_NUM_THREADS=1 \
  "$py" tests/torch/lopt_torch_test.py "$tmp/lopt_ref" models/fmnist8-mlp.lopt
