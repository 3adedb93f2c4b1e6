#!/usr/bin/env bash
# make demo: (1) the shipped learned optimizer for fmnist-cnn, models/fmnist-cnn.lopt,
# against the strongest tuned baseline of the full comparison, Adam with a cosine decay
# and constant-lr Adam, each with its learning rate tuned on the 3-point grid
# 3.16e-3, 1e-2, 3.16e-2 (which holds both their 7-point grid's best: 3.16e-2 and
# 3.16e-3), 2,000 steps on 2 held-out seeds: table +
# plots in demo/fmnist-cnn/; (2) the same for fmnist8-mlp (models/fmnist8-mlp.lopt,
# 1,000 steps, tuned Adam) in demo/fmnist8-mlp/. About 6 minutes on 2 cores. The full
# comparisons (7-point grids, constant and cosine baselines, 8 seeds) are in
# docs/results/.
set -euo pipefail
build=${1:-build}
mkdir -p demo
echo "== 1/2: models/fmnist-cnn.lopt against tuned cosine and constant Adam (fmnist-cnn, 2,000 steps)"
"$build/lopt" compare --task fmnist-cnn --lopt models/fmnist-cnn.lopt \
  --baselines adam:cosine,adam --warmup 100 --lr-range 3.16e-3:3.16e-2 --grid-points 3 --steps 2000 \
  --seeds 1000,1001 --out demo/fmnist-cnn
echo
echo "== 2/2: models/fmnist8-mlp.lopt against tuned Adam (fmnist8-mlp, 1,000 steps)"
"$build/lopt" compare --task fmnist8-mlp --lopt models/fmnist8-mlp.lopt \
  --baselines adam --grid-points 7 --steps 1000 --seeds 1000,1001,1002 --out demo/fmnist8-mlp
echo
echo "tables: demo/*/summary.md  plots: demo/*/valid_loss_vs_step.png, demo/*/valid_loss_vs_time.png"
