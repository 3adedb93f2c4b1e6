"""optim_ref.py - PyTorch reference trajectories for tests/test_optim.c.

Usage: /usr/bin/python3 tests/torch/optim_ref.py OUT.bin   (Debian's python3-torch)

For each configuration below, torch.optim (1.13) runs T steps on one float32 tensor of
N parameters from fixed initial values, fed a fixed, seeded sequence of gradients
(per-element scales spread over 1e-3..10, some exact zeros, so eps and the bias
corrections matter). Records, per configuration <c>:
    <c>/hp   [lr, momentum, dampening, weight_decay, alpha, beta1, beta2, eps, nesterov]
    <c>/w0   (N)    initial parameters
    <c>/g    (T,N)  the gradient fed at each step
    <c>/w    (T,N)  the parameters after each step
plus meta = [N, T] and defaults/<name> = torch's constructor defaults in the hp layout
(for sgd, which has no default lr in torch, lopt's 0.01).
"""
import sys

import numpy as np
import torch

from refio import RefWriter

N, T = 53, 20
HP_KEYS = ["lr", "momentum", "dampening", "weight_decay", "alpha", "beta1", "beta2",
           "eps", "nesterov"]

# name -> (torch class, constructor kwargs); names are read back by test_optim.c
CONFIGS = {
    "sgd": (torch.optim.SGD, dict(lr=0.1)),
    "sgd_wd": (torch.optim.SGD, dict(lr=0.1, weight_decay=0.05)),
    "momentum": (torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    "momentum_damp": (torch.optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3,
                                            weight_decay=0.01)),
    "nesterov": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "rmsprop": (torch.optim.RMSprop, dict(lr=0.01)),
    "rmsprop_mom": (torch.optim.RMSprop, dict(lr=0.01, momentum=0.9, alpha=0.9,
                                              weight_decay=0.01)),
    "adam": (torch.optim.Adam, dict(lr=0.01)),
    "adam_wd": (torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                       weight_decay=0.1)),
    "adam_default": (torch.optim.Adam, dict()),
}


def hp_row(defaults):
    """torch's param-group dict -> the lopt_hparams layout."""
    betas = defaults.get("betas", (0.0, 0.0))
    d = dict(defaults, beta1=betas[0], beta2=betas[1])
    d.setdefault("lr", 0.01)  # torch's SGD has no default lr; ours
    return [float(d.get(k, 0.0)) for k in HP_KEYS]


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    rng = np.random.default_rng(20190609)
    w0 = rng.standard_normal(N).astype(np.float32)
    scale = np.exp(rng.uniform(np.log(1e-3), np.log(10.0), N))
    grads = (rng.standard_normal((T, N)) * scale).astype(np.float32)
    grads[:, 7] = 0.0   # an element that never sees a gradient
    grads[3, :] = 0.0   # a step with no gradient at all

    w = RefWriter(out)
    w.add("meta", [N, T])
    for cname, (cls, kw) in CONFIGS.items():
        p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float32))
        opt = cls([p], **kw)
        traj = np.zeros((T, N), dtype=np.float32)
        for t in range(T):
            p.grad = torch.tensor(grads[t], dtype=torch.float32)
            opt.step()
            traj[t] = p.detach().numpy()
        w.add(cname + "/hp", hp_row(opt.param_groups[0]))
        w.add(cname + "/w0", w0)
        w.add(cname + "/g", grads)
        w.add(cname + "/w", traj)

    p = torch.nn.Parameter(torch.zeros(1))
    w.add("defaults/sgd", hp_row(torch.optim.SGD([p], lr=0.01).defaults))
    w.add("defaults/momentum", hp_row(torch.optim.SGD([p], lr=0.01, momentum=0.9).defaults))
    w.add("defaults/nesterov", hp_row(torch.optim.SGD([p], lr=0.01, momentum=0.9,
                                                      nesterov=True).defaults))
    w.add("defaults/rmsprop", hp_row(torch.optim.RMSprop([p]).defaults))
    w.add("defaults/adam", hp_row(torch.optim.Adam([p]).defaults))
    w.close()


if __name__ == "__main__":
    main()
