"""torch_train.py - the PyTorch peer of `lopt train` for the recipe check:
trains fmnist-cnn (or fmnist8-mlp) with torch.optim.Adam on the same splits and
normalisation as lopt (docs/design.md section 3), N(0, 2/fan_in) init, shuffled epochs,
and prints the final full-validation loss and accuracy as one JSON line.
Usage: torch_train.py --task fmnist-cnn --lr 1e-3 --steps 2000 --batch 128 --seed S
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "torch"))
from nets import FmnistCnn, fmnist8_mlp, he_init  # noqa: E402

DIR = os.environ.get("LOPT_FMNIST_DIR", "/usr/share/datasets/fashion-mnist")


def idx(name):
    with gzip.open(os.path.join(DIR, name)) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(size):
    x = (idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255 - 0.2860) / 0.3530
    y = idx("train-labels-idx1-ubyte.gz").astype(np.int64)
    x = torch.from_numpy(x).unsqueeze(1)
    if size != 28:
        # exact area averaging 28 -> 8: upsample by 2 (nearest) then 7x7 mean pools
        x = F.avg_pool2d(F.interpolate(x, scale_factor=2, mode="nearest"), 7)
    y = torch.from_numpy(y)
    return (x[:50000], y[:50000]), (x[50000:], y[50000:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="fmnist-cnn")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    cnn = a.task == "fmnist-cnn"
    (xt, yt), (xv, yv) = load(28 if cnn else 8)
    if not cnn:
        xt, xv = xt.reshape(-1, 64), xv.reshape(-1, 64)
    model = FmnistCnn() if cnn else fmnist8_mlp()
    he_init(model, gen)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    perm, pos = torch.randperm(50000, generator=gen), 0
    t0 = time.perf_counter()
    for _ in range(a.steps):
        if pos + a.batch > 50000:
            perm, pos = torch.randperm(50000, generator=gen), 0
        i = perm[pos:pos + a.batch]
        pos += a.batch
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xt[i]), yt[i]).backward()
        opt.step()
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        loss, correct = 0.0, 0
        for s in range(0, 10000, 1000):
            z = model(xv[s:s + 1000])
            loss += F.cross_entropy(z, yv[s:s + 1000], reduction="sum").item()
            correct += (z.argmax(1) == yv[s:s + 1000]).sum().item()
    print(json.dumps({"impl": "torch", "task": a.task, "lr": a.lr, "steps": a.steps,
                      "seed": a.seed, "valid_loss": loss / 10000, "valid_acc": correct / 10000,
                      "train_s": round(train_s, 2)}))


if __name__ == "__main__":
    main()
