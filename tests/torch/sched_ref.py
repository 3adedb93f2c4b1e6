"""sched_ref.py - PyTorch reference learning-rate schedules for tests/test_optim.c.

Usage: /usr/bin/python3 tests/torch/sched_ref.py OUT.bin   (Debian's python3-torch)

lopt's schedules (src/optim/optim.h) are built here from torch.optim.lr_scheduler (1.13)
exactly as that header defines them, for N total steps and W warm-up steps:
    warm-up (W > 0)  LinearLR(start_factor=1/(W+1), end_factor=1, total_iters=W)
    const            nothing after the warm-up (LinearLR stays at 1)
    cosine           CosineAnnealingLR(T_max=N-W, eta_min=0)
    linear           LinearLR(start_factor=1, end_factor=0, total_iters=N-W)
joined by SequentialLR(milestones=[W]) when there is a warm-up. The loop is the usual
one: optimizer.step(), then scheduler.step(); the lr recorded for step t (1-based, as
lopt counts) is param_groups[0]["lr"] when the t-th optimizer.step() runs.

Records, per schedule configuration <c> (names read back by test_optim.c):
    sched/<c>/cfg  [N, W, base_lr]
    sched/<c>/lr   (N)  the lr of every step
and per optimizer trajectory <c> (an optimizer driven by a schedule):
    traj/<c>/cfg   [N, W, lr]
    traj/<c>/w0    (P)     initial parameters
    traj/<c>/g     (N,P)   the gradient fed at each step
    traj/<c>/w     (N,P)   the parameters after each step
"""
import sys
import warnings

import numpy as np
import torch
from torch.optim import lr_scheduler as S

from refio import RefWriter

P = 37
# SequentialLR steps its next scheduler with scheduler.step(0) at the milestone (the
# closed form, as intended); torch 1.13 warns about the epoch argument each time
warnings.filterwarnings("ignore", message="The epoch parameter", category=UserWarning)


def make_scheduler(opt, kind, n, warmup):
    """lopt's schedule `kind` over n steps with `warmup` warm-up steps, on opt."""
    rest = n - warmup
    if kind == "const":
        main = None
    elif kind == "cosine":
        main = S.CosineAnnealingLR(opt, T_max=rest, eta_min=0.0)
    elif kind == "linear":
        main = S.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=rest)
    else:
        raise ValueError(kind)
    if warmup == 0:
        return main
    warm = S.LinearLR(opt, start_factor=1.0 / (warmup + 1), end_factor=1.0,
                      total_iters=warmup)
    if main is None:
        return warm
    return S.SequentialLR(opt, schedulers=[warm, main], milestones=[warmup])


# name -> (kind, N, W, base lr)
SCHEDULES = {
    "const_n30_w0": ("const", 30, 0, 0.1),
    "const_n30_w5": ("const", 30, 5, 0.1),
    "cosine_n50_w0": ("cosine", 50, 0, 0.1),
    "cosine_n50_w10": ("cosine", 50, 10, 0.1),
    "cosine_n7_w6": ("cosine", 7, 6, 0.01),      # one step after the warm-up
    "cosine_n1_w0": ("cosine", 1, 0, 0.01),
    "linear_n40_w0": ("linear", 40, 0, 0.03),
    "linear_n40_w7": ("linear", 40, 7, 0.03),
    "linear_n2_w1": ("linear", 2, 1, 1.0),
}

# name -> (optimizer class, kwargs, kind, N, W)
TRAJECTORIES = {
    "adam_cosine_w4": (torch.optim.Adam, dict(lr=0.01), "cosine", 20, 4),
    "adam_cosine_w0": (torch.optim.Adam, dict(lr=0.01), "cosine", 20, 0),
    "momentum_linear_w3": (torch.optim.SGD, dict(lr=0.1, momentum=0.9), "linear", 20, 3),
    "rmsprop_const_w5": (torch.optim.RMSprop, dict(lr=0.01), "const", 20, 5),
}


def lr_sequence(kind, n, warmup, base_lr):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_scheduler(opt, kind, n, warmup)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.zeros(1)
        opt.step()
        if sched is not None:
            sched.step()
    return lrs


def main():
    out = sys.argv[1]
    w = RefWriter(out)
    for name, (kind, n, warmup, base_lr) in SCHEDULES.items():
        w.add("sched/%s/cfg" % name, [n, warmup, base_lr])
        w.add("sched/%s/lr" % name, lr_sequence(kind, n, warmup, base_lr))

    rng = np.random.default_rng(20190610)
    for name, (cls, kw, kind, n, warmup) in TRAJECTORIES.items():
        w0 = rng.standard_normal(P).astype(np.float32)
        scale = np.exp(rng.uniform(np.log(1e-3), np.log(10.0), P))
        grads = (rng.standard_normal((n, P)) * scale).astype(np.float32)
        p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float32))
        opt = cls([p], **kw)
        sched = make_scheduler(opt, kind, n, warmup)
        traj = np.zeros((n, P), dtype=np.float32)
        for t in range(n):
            p.grad = torch.tensor(grads[t], dtype=torch.float32)
            opt.step()
            sched.step()
            traj[t] = p.detach().numpy()
        w.add("traj/%s/cfg" % name, [n, warmup, kw["lr"]])
        w.add("traj/%s/w0" % name, w0)
        w.add("traj/%s/g" % name, grads)
        w.add("traj/%s/w" % name, traj)
    w.close()


if __name__ == "__main__":
    main()
