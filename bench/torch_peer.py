"""torch_peer.py - the PyTorch peer of `lopt bench` (DESIGN.md section 6).

Same measurements, same names, same JSON lines (impl "torch"): a warm-up, then
RUNS timed runs of ITERS repetitions, per-repetition median/min/max. Every line
carries its set-up: torch's threads, OPENBLAS_NUM_THREADS, OPENBLAS_CORETYPE and the
kernel set OpenBLAS chose (asked from the libblas.so.3 torch is linked with).
Set-up: torch.set_num_threads(THREADS) (default 2); rows ending in -1t run with one
thread. scripts/bench.sh runs it with and without OPENBLAS_NUM_THREADS=1.
Usage: torch_peer.py [--runs N] [--threads T] [--only S]
"""
import argparse
import ctypes
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "torch"))
sys.path.insert(0, os.path.dirname(__file__))
from nets import FmnistCnn, fmnist8_mlp, he_init  # noqa: E402


def openblas_core():
    """the kernel set of the OpenBLAS torch runs on (libblas.so.3 is OpenBLAS here)"""
    try:
        lib = ctypes.CDLL("libblas.so.3")
        f = lib.openblas_get_corename
        f.restype = ctypes.c_char_p
        return f().decode()
    except (OSError, AttributeError):
        return "unknown"


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def emit(name, ms, runs, iters, batch, extra):
    ms = sorted(ms)
    med = median(ms)
    out = {"bench": name, "impl": "torch", "median_ms": round(med, 4),
           "min_ms": round(ms[0], 4), "max_ms": round(ms[-1], 4), "runs": runs,
           "iters": iters, "threads": torch.get_num_threads(),
           "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
           "coretype": os.environ.get("OPENBLAS_CORETYPE") or "unset",
           "openblas_core": openblas_core(),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "batch": batch, "torch": torch.__version__}
    out.update(extra)
    print(json.dumps(out), flush=True)
    return med


def measure(name, fn, runs, iters, batch, gflop=0.0):
    for _ in range(iters):
        fn()
    ms, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(iters):
            fn()
        ms.append(1e3 * (time.perf_counter() - t0) / iters)
        cpu.append(1e3 * (time.process_time() - c0) / iters)
    med = median(ms)
    extra = {"steps_per_s": round(1e3 / med, 1), "cpu_ms": round(median(cpu), 4)}
    if gflop:
        extra["gflop"] = round(gflop, 4)
        extra["gflops"] = round(gflop / (med * 1e-3), 2)
    emit(name, ms, runs, iters, batch, extra)


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


def cnn_gflop(units, dense_units, B=128):
    """the FLOP count lopt uses (cmd_bench.c: cnn_gflop), in forward-product units
    per conv layer"""
    f = 0.0
    for u, (hw, ci, co) in zip(units, ((784, 1, 16), (196, 16, 32), (49, 32, 32))):
        f += u * 2.0 * co * ci * 9 * B * hw
    return (f + dense_units * 2.0 * 32 * 10 * B) * 1e-9


BETAS = (0.5, 0.9, 0.99, 0.999, 0.9999)
TAUS = (3, 10, 30, 100, 300, 1e3, 3e3, 1e4, 3e5)


def lopt_unroll(theta, params, moms, t0, K, xs, ys, xo, yo, create_graph):
    """K steps of the paper-preset mlp-lopt on fmnist8-mlp, in PyTorch: per-tensor
    normalised features, momenta, time features, the 16-32-2 MLP, all parameters in
    one batched MLP call; outer loss (valid batches) clipped at 10, mean over K."""
    W0, b0, W1, b1 = theta
    total = 0.0
    for k in range(K):
        loss = F.cross_entropy(F.linear(F.relu(F.linear(xs[k], params[0], params[1])),
                                        params[2], params[3]), ys[k])
        grads = torch.autograd.grad(loss, params, create_graph=create_graph)
        moms = [[b * m + (1 - b) * g for b, m in zip(BETAS, ms)] for g, ms in zip(grads, moms)]
        feats = []
        for p, g, ms in zip(params, grads, moms):
            cols = [f.reshape(-1) for f in [g, p] + ms]
            feats.append(torch.stack([c / torch.sqrt(1e-5 + (c * c).mean()) for c in cols], 1))
        x = torch.cat(feats, 0)
        tf = torch.tanh(torch.tensor([(t0 + k) / tau - 1.0 for tau in TAUS]))
        x = torch.cat([x, tf.expand(x.shape[0], len(TAUS))], 1)
        out = F.linear(F.relu(F.linear(x, W0, b0)), W1, b1)
        delta = -0.001 * out[:, 0] * torch.exp(0.001 * out[:, 1])
        new, off = [], 0
        for p in params:
            new.append(p + delta[off:off + p.numel()].reshape(p.shape))
            off += p.numel()
        params = new
        lo = F.cross_entropy(F.linear(F.relu(F.linear(xo[k], params[0], params[1])),
                                      params[2], params[3]), yo[k])
        total = total + torch.clamp(lo, max=10.0)
    return total / K


def lopt_setups(gen, K=20):
    theta = [torch.randn(32, 16, generator=gen) / 4, torch.zeros(32),
             torch.randn(2, 32, generator=gen) / 32 ** 0.5, torch.zeros(2)]
    for t in theta:
        t.requires_grad_(True)
    mlp = fmnist8_mlp()
    he_init(mlp, gen)
    params = [p.detach().clone().requires_grad_(True) for p in mlp.parameters()]
    moms = [[torch.zeros_like(p) for _ in BETAS] for p in params]
    xs = [torch.randn(128, 64, generator=gen) for _ in range(K)]
    ys = [torch.randint(0, 10, (128,), generator=gen) for _ in range(K)]
    xo = [torch.randn(128, 64, generator=gen) for _ in range(K)]
    yo = [torch.randint(0, 10, (128,), generator=gen) for _ in range(K)]

    def rp_truncation():
        L = lopt_unroll(theta, params, moms, 10, K, xs, ys, xo, yo, True)
        torch.autograd.grad(L, theta)

    def es_pair():
        for _ in range(2):
            th = [t.detach() for t in theta]
            ps = [p.detach().requires_grad_(True) for p in params]
            lopt_unroll(th, ps, moms, 10, K, xs, ys, xo, yo, False)

    return rp_truncation, es_pair


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
    todo = [("fmnist-cnn/train-step", step, 10, 128, cnn_gflop((2, 3, 3), 3)),
            ("fmnist-cnn/train-step-1t", step, 5, 128, cnn_gflop((2, 3, 3), 3)),
            ("fmnist-cnn/forward", fwd, 10, 128, cnn_gflop((1, 1, 1), 1)),
            ("fmnist-cnn/hvp", hvp, 5, 128, cnn_gflop((4, 9, 9), 9)),
            ("fmnist-cnn/hvp-1t", hvp, 3, 128, cnn_gflop((4, 9, 9), 9))]
    mlp = fmnist8_mlp()
    he_init(mlp, gen)
    x8 = torch.randn(128, 64, generator=gen)
    step8, _, hvp8 = setups(mlp, x8, y)
    todo += [("fmnist8-mlp/train-step", step8, 200, 128, 0),
             ("fmnist8-mlp/train-step-1t", step8, 200, 128, 0),
             ("fmnist8-mlp/hvp", hvp8, 200, 128, 0)]
    rp, es = lopt_setups(gen)
    todo += [("fmnist8-mlp/rp-truncation", rp, 2, 128, 0), ("fmnist8-mlp/es-pair", es, 2, 128, 0)]
    for name, fn, iters, batch, gf in todo:
        if a.only in name:
            torch.set_num_threads(1 if name.endswith("-1t") else a.threads)
            measure(name, fn, a.runs, iters, batch, gf)
    torch.set_num_threads(a.threads)
    for S, K, threads in ES_ROWS:
        name = "fmnist8-mlp/es-outer-step" + ("-1t" if threads == 1 else "")
        if a.only in name:
            torch.set_num_threads(threads or a.threads)
            es_outer(name, S, K, a.runs)
    torch.set_num_threads(a.threads)


# the es outer steps lopt bench times (cmd_bench.c meta_rows, es on fmnist8-mlp);
# threads 0: the peer's --threads
ES_ROWS = ((8, 20, 0), (8, 20, 1))


ES_DATA = None


def es_outer(name, S, K, runs):
    """bench/torch_es.py's batched es outer step, as inner steps per second"""
    import torch_es
    global ES_DATA
    if ES_DATA is None:
        ES_DATA = torch_es.load_data()
    es = torch_es.EsOuterStep(ES_DATA, S=S, K=K)
    es.step()
    ms, rate, cpu = [], [], []
    for _ in range(runs):
        n0 = es.steps_taken
        t0, c0 = time.perf_counter(), time.process_time()
        es.step()
        dt = time.perf_counter() - t0
        ms.append(1e3 * dt)
        cpu.append(1e3 * (time.process_time() - c0))
        rate.append((es.steps_taken - n0) / dt)
    emit(name, ms, runs, 1, 128, {"task": "fmnist8-mlp", "estimator": "es", "samples": S, "K": K,
                                 "cpu_ms": round(median(cpu), 4),
                                 "inner_steps_per_s": round(median(rate), 1),
                                 "inner_steps_per_s_min": round(min(rate), 1),
                                 "inner_steps_per_s_max": round(max(rate), 1)})


if __name__ == "__main__":
    main()
