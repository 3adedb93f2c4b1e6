#!/usr/bin/env bash
# make demo: (1) the shipped learned optimizer for fmnist8-mlp against tuned Adam,
# RMSProp and SGD+momentum on held-out seeds (table + plots in demo/fmnist8-mlp/);
# (2) fmnist-cnn trained with Adam (lr 1e-3, 2,000 steps, batch 128), its curve in
# demo/fmnist-cnn-adam.csv. A few minutes on 2 cores.
set -euo pipefail
build=${1:-build}
mkdir -p demo
echo "== 1/2: models/fmnist8-mlp.lopt against tuned baselines (fmnist8-mlp, 1,000 steps)"
"$build/lopt" compare --task fmnist8-mlp --lopt models/fmnist8-mlp.lopt \
  --baselines adam,rmsprop,momentum --steps 1000 --grid-points 7 \
  --seeds 1000,1001,1002 --out demo/fmnist8-mlp
echo
echo "== 2/2: fmnist-cnn with Adam (lr 1e-3, 2,000 steps, batch 128)"
"$build/lopt" train --task fmnist-cnn --opt adam --lr 1e-3 --steps 2000 --batch 128 \
  --seed 0 --log demo/fmnist-cnn-adam.csv
echo "plots: demo/fmnist8-mlp/*.png  curve: demo/fmnist-cnn-adam.csv"
