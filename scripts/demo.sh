#!/usr/bin/env bash
# make demo: trains fmnist-cnn with Adam (lr 1e-3, 2,000 steps, batch 128) and
# prints the result; the curve goes to demo/adam.csv.
set -euo pipefail
build=${1:-build}
mkdir -p demo
"$build/lopt" train --task fmnist-cnn --opt adam --lr 1e-3 --steps 2000 --batch 128 \
  --seed 0 --log demo/adam.csv
echo "curve: demo/adam.csv"
