"""net_ref.py OUT - PyTorch reference for lopt's network tasks.

For fmnist8-mlp and fmnist-cnn: random weights (biases non-zero too, so their
gradients are exercised), a random input batch and labels, a random direction v;
writes the weights, batch, v, and PyTorch's loss, gradient and Hessian-vector
product (double backward, computed in float64 from the same float32 values).
tests/test_tasks.c runs lopt on the same inputs and bounds the relative error.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from nets import FmnistCnn, fmnist8_mlp  # noqa: E402
from refio import RefWriter  # noqa: E402


TRAIN_STEPS = 20


def reference(w, name, model, x, y, gen):
    params = list(model.parameters())
    with torch.no_grad():
        for p in params:
            p.normal_(0.0, 0.3, generator=gen)
        # round to float32 first: lopt computes in float32 from these exact values
        for p in params:
            p.copy_(p.float())
    model = model.double()
    params = list(model.parameters())
    x = x.double()
    v = [torch.randn(p.shape, generator=gen, dtype=torch.float32).double() for p in params]
    loss = F.cross_entropy(model(x), y)
    g = torch.autograd.grad(loss, params, create_graph=True)
    gv = sum((gi * vi).sum() for gi, vi in zip(g, v))
    hv = torch.autograd.grad(gv, params)
    flat = lambda ts: torch.cat([t.detach().reshape(-1) for t in ts])  # noqa: E731
    w.add(name + "/w", flat(params))
    w.add(name + "/x", x.reshape(x.shape[0], -1))
    w.add(name + "/y", y)
    w.add(name + "/v", flat(v))
    w.add(name + "/loss", [loss.item()])
    w.add(name + "/grad", flat(g))
    w.add(name + "/hv", flat(hv))

    # a short training run from the same weights on the same batch: Adam (torch's
    # defaults, lr 1e-3), in float32 as lopt trains; the loss before every step and
    # the weights after the last
    model = model.float()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    losses = []
    for _ in range(TRAIN_STEPS):
        opt.zero_grad()
        loss = F.cross_entropy(model(x.float()), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    w.add(name + "/train_losses", losses)
    w.add(name + "/train_w", flat(params))


def main():
    gen = torch.Generator().manual_seed(1234)
    w = RefWriter(sys.argv[1])
    B = 128
    x = torch.randn(B, 64, generator=gen)
    y = torch.randint(0, 10, (B,), generator=gen)
    reference(w, "fmnist8-mlp", fmnist8_mlp(), x, y, gen)
    B = 32
    x = torch.randn(B, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (B,), generator=gen)
    reference(w, "fmnist-cnn", FmnistCnn(), x, y, gen)
    w.close()


if __name__ == "__main__":
    main()
