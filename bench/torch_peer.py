"""torch_peer.py - the PyTorch peer of `lopt bench` (DESIGN.md section 6).

Same measurements, same names, same JSON lines (impl "torch"): a warm-up, then
RUNS timed runs of ITERS repetitions, per-repetition median/min/max.
Set-up: torch.set_num_threads(THREADS) (default 2); run it with
OPENBLAS_NUM_THREADS=1, the fastest set-up of Debian's torch on this CPU.
Usage: torch_peer.py [--runs N] [--threads T] [--only S]
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "torch"))
from nets import FmnistCnn, fmnist8_mlp, he_init  # noqa: E402


def measure(name, fn, runs, iters, batch, threads, gflop=0.0):
    for _ in range(iters):
        fn()
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        ms.append(1e3 * (time.perf_counter() - t0) / iters)
    ms.sort()
    n = len(ms)
    med = ms[n // 2] if n % 2 else 0.5 * (ms[n // 2 - 1] + ms[n // 2])
    out = {"bench": name, "impl": "torch", "median_ms": round(med, 4),
           "min_ms": round(ms[0], 4), "max_ms": round(ms[-1], 4), "runs": runs,
           "iters": iters, "threads": threads,
           "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "batch": batch, "torch": torch.__version__}
    if gflop:
        out["gflop"] = gflop
        out["gflops"] = round(gflop / (med * 1e-3), 2)
    print(json.dumps(out), flush=True)


def setups(model, x, y):
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    v = [torch.randn_like(p) for p in params]

    def train_step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def forward():
        with torch.no_grad():
            F.cross_entropy(model(x), y)

    def hvp():
        loss = F.cross_entropy(model(x), y)
        g = torch.autograd.grad(loss, params, create_graph=True)
        gv = sum((gi * vi).sum() for gi, vi in zip(g, v))
        torch.autograd.grad(gv, params)

    return train_step, forward, hvp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(0)

    cnn = FmnistCnn()
    he_init(cnn, gen)
    x = torch.randn(128, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (128,), generator=gen)
    step, fwd, hvp = setups(cnn, x, y)
    # the same FLOP count as lopt's (cmd_bench.c: cnn_step_gflop)
    gflop = 0.0
    for hw, ci, co, k in ((784, 1, 16, 2), (196, 16, 32, 3), (49, 32, 32, 3)):
        gflop += k * 2.0 * co * ci * 9 * 128 * hw
    gflop = (gflop + 3 * 2.0 * 32 * 10 * 128) * 1e-9
    todo = [("fmnist-cnn/train-step", step, 10, 128, gflop), ("fmnist-cnn/forward", fwd, 10, 128, 0),
            ("fmnist-cnn/hvp", hvp, 5, 128, 0)]
    mlp = fmnist8_mlp()
    he_init(mlp, gen)
    x8 = torch.randn(128, 64, generator=gen)
    step8, _, hvp8 = setups(mlp, x8, y)
    todo += [("fmnist8-mlp/train-step", step8, 200, 128, 0), ("fmnist8-mlp/hvp", hvp8, 200, 128, 0)]
    for name, fn, iters, batch, gf in todo:
        if a.only in name:
            measure(name, fn, a.runs, iters, batch, a.threads, gf)


if __name__ == "__main__":
    main()
