"""torch_es.py - the PyTorch peer of one es meta-training outer step of lopt on
fmnist8-mlp (DESIGN.md section 1.3, `lopt meta-train --estimator es`), batched the
way one would write it in PyTorch: all 2S trajectories (S antithetic pairs) of the
step advance together, every inner step being a handful of batched matrix products
over a leading trajectory dimension.

One outer step, as src/meta/meta.c does it:
  eps_s ~ N(0, sigma^2 I) over the 610 weights of the learned optimizer (paper
  preset: features g, w, m_1..m_5 normalised per tensor, 9 time features folded
  into the first bias, MLP 16 -> 32 -> ReLU -> 2, w <- w - 0.001 d exp(0.001 s));
  both sides of pair s start from trajectory s's state and see the same inner
  (train) and outer (valid) batches; K inner steps, each: the inner gradient by
  an explicit batched backward of the 64-32-10 MLP (no autograd: none is needed
  for es), the momenta, the learned update, and the outer loss of the new weights
  clipped at 10; L = mean over the K steps; g = mean_s (L+ - L-) eps_s / (2 sigma^2);
  Adam on theta with the gradient clipped at 0.1; the trajectory carries on from
  the + side, and restarts at its (jittered, staggered) horizon.
A trajectory whose inner loss turns non-finite or exceeds 5x its loss at
initialisation has diverged (meta.c's default diverge factor): its remaining steps
count as the clip value and it restarts after the step; lopt stops computing such
a trajectory, the batched form carries it along masked, and only the steps taken
are counted in the rate. Batches are uniform draws rather than lopt's seeded epoch
permutations (the same gather cost).

Usage: torch_es.py [--samples S] [--K K] [--steps N] [--threads T] [--check]
(--check compares the batched gradient with autograd's on one trajectory.)
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))

BETAS = (0.5, 0.9, 0.99, 0.999, 0.9999)
TAUS = (3, 10, 30, 100, 300, 1e3, 3e3, 1e4, 3e5)
# fmnist8-mlp's tensors in lopt's flat order: fc1.weight, fc1.bias, fc2.weight, fc2.bias
SHAPES = ((32, 64), (32,), (10, 32), (10,))
SIZES = tuple(math.prod(s) for s in SHAPES)
N = sum(SIZES)              # 2410
NTHETA = 32 * 16 + 32 + 2 * 32 + 2   # 610
HIDDEN, F_IN, NFEAT = 32, 16, 7


def load_data(size=8):
    """fmnist8 train (first 50,000) and valid (last 10,000) splits, as lopt's"""
    from torch_train import load  # noqa: E402  (same directory)
    (xt, yt), (xv, yv) = load(size)
    return xt.reshape(-1, 64).contiguous(), yt, xv.reshape(-1, 64).contiguous(), yv


class EsOuterStep:
    def __init__(self, data, S=8, K=20, sigma=0.01, horizon=1000, lr=3e-3, clip=0.1, seed=0):
        self.S, self.K, self.sigma, self.horizon, self.lr, self.clip = S, K, sigma, horizon, lr, clip
        self.gen = torch.Generator().manual_seed(seed)
        self.xt, self.yt, self.xv, self.yv = data
        g = self.gen
        self.theta = torch.cat([torch.randn(32 * 16, generator=g) / 4, torch.zeros(32),
                                torch.randn(2 * 32, generator=g) / 32 ** 0.5, torch.zeros(2)])
        self.adam_m = torch.zeros(NTHETA)
        self.adam_v = torch.zeros(NTHETA)
        self.adam_t = 0
        # per-tensor segment sums as one matrix product: (T,F,n) @ (n,4)
        self.seg = torch.zeros(N, 4)
        off = 0
        for i, sz in enumerate(SIZES):
            self.seg[off:off + sz, i] = 1.0
            off += sz
        self.inv_sizes = 1.0 / torch.tensor(SIZES, dtype=torch.float32)
        self.betas = torch.tensor(BETAS).view(1, -1, 1)
        self.taus = torch.tensor(TAUS)
        self.w = torch.stack([self.init_w() for _ in range(S)])
        self.m = torch.zeros(S, len(BETAS), N)
        self.t = torch.zeros(S)
        self.init_loss = torch.stack([self.first_loss(self.w[s]) for s in range(S)])
        self.steps_taken = 0
        # staggered first lives, then the jittered horizon
        self.h = torch.tensor([self.life() * (s + 1) // S for s in range(S)], dtype=torch.float32)

    def life(self):
        return int(round(self.horizon * (0.8 + 0.4 * torch.rand(1, generator=self.gen).item())))

    def init_w(self):
        """N(0, 2/fan_in) weights, zero biases"""
        parts = []
        for shp in SHAPES:
            if len(shp) == 2:
                parts.append(torch.randn(shp, generator=self.gen).flatten() * (2.0 / shp[1]) ** 0.5)
            else:
                parts.append(torch.zeros(shp))
        return torch.cat(parts)

    def first_loss(self, w):
        i = torch.randint(0, self.xt.shape[0], (1, 128), generator=self.gen)
        return self.loss_grad(w.unsqueeze(0), self.xt[i], self.yt[i], False)[0][0]

    @staticmethod
    def views(w):
        T = w.shape[0]
        W1 = w[:, :2048].view(T, 32, 64)
        b1 = w[:, 2048:2080]
        W2 = w[:, 2080:2400].view(T, 10, 32)
        b2 = w[:, 2400:2410]
        return W1, b1, W2, b2

    def loss_grad(self, w, x, y, need_grad):
        """mean cross-entropy per trajectory (T,) and its gradient (T, n), batched
        (bmm then a broadcast add: torch 1.13's baddbmm loops over the batch)"""
        W1, b1, W2, b2 = self.views(w)
        h = torch.bmm(x, W1.transpose(1, 2)).add_(b1.unsqueeze(1)).clamp_min_(0)  # (T,B,32)
        z = torch.bmm(h, W2.transpose(1, 2)).add_(b2.unsqueeze(1))                # (T,B,10)
        logp = torch.log_softmax(z, -1)
        yy = y.unsqueeze(-1)
        loss = -logp.gather(-1, yy).squeeze(-1).mean(1)
        if not need_grad:
            return loss, None
        B = x.shape[1]
        dz = logp.exp_().scatter_add_(-1, yy, torch.full_like(yy, -1, dtype=logp.dtype)).div_(B)
        gW2 = torch.bmm(dz.transpose(1, 2), h)
        gb2 = dz.sum(1)
        dh = torch.bmm(dz, W2).mul_(h > 0)
        gW1 = torch.bmm(dh.transpose(1, 2), x)
        gb1 = dh.sum(1)
        return loss, torch.cat([gW1.flatten(1), gb1, gW2.flatten(1), gb2], 1)

    def delta(self, th, w, g, m, t):
        """the paper preset's update for every parameter of every trajectory; features
        (T, 7, n) and hidden units (T, 32, n) feature-major, so each layer is one bmm
        (H x F) x (F x n) plus a broadcast add (torch 1.13's baddbmm loops over the
        batch; this layout measured at least as fast as the others tried)"""
        T = w.shape[0]
        feats = torch.cat([g.unsqueeze(1), w.unsqueeze(1), m], 1)                 # (T,7,n)
        ms = torch.matmul(feats * feats, self.seg) * self.inv_sizes               # (T,7,4)
        x = feats * torch.matmul(torch.rsqrt(ms + 1e-5), self.seg.t())           # (T,7,n)
        W0 = th[:, :512].view(T, 32, 16)
        b0 = th[:, 512:544]
        Wo = th[:, 544:608].view(T, 2, 32)
        bo = th[:, 608:610]
        tf = torch.tanh(t.unsqueeze(1) / self.taus - 1.0)                          # (T,9)
        bias = b0 + torch.bmm(W0[:, :, NFEAT:], tf.unsqueeze(2)).squeeze(2)        # (T,32)
        hid = torch.bmm(W0[:, :, :NFEAT], x).add_(bias.unsqueeze(2)).clamp_min_(0)  # (T,32,n)
        out = torch.bmm(Wo, hid).add_(bo.unsqueeze(2))                              # (T,2,n)
        return -0.001 * out[:, 0] * torch.exp(0.001 * out[:, 1])

    def step(self):
        S, K = self.S, self.K
        eps = torch.randn(S, NTHETA, generator=self.gen) * self.sigma
        th = torch.cat([self.theta + eps, self.theta - eps])
        w = torch.cat([self.w, self.w])
        m = torch.cat([self.m, self.m])
        t = torch.cat([self.t, self.t])
        total = torch.zeros(2 * S)
        alive = torch.ones(2 * S, dtype=torch.bool)
        limit = 5.0 * torch.cat([self.init_loss, self.init_loss])
        for _ in range(K):
            i = torch.randint(0, self.xt.shape[0], (S, 128), generator=self.gen)
            x, y = self.xt[i], self.yt[i]
            li, g = self.loss_grad(w, torch.cat([x, x]), torch.cat([y, y]), True)
            alive &= torch.isfinite(li) & (li <= limit)
            m = self.betas * m + (1 - self.betas) * g.unsqueeze(1)
            w = w + self.delta(th, w, g, m, t)
            t = t + 1
            j = torch.randint(0, self.xv.shape[0], (S, 128), generator=self.gen)
            xo, yo = self.xv[j], self.yv[j]
            lo, _ = self.loss_grad(w, torch.cat([xo, xo]), torch.cat([yo, yo]), False)
            lo = torch.where(torch.isfinite(lo), lo.clamp(max=10.0), torch.full_like(lo, 10.0))
            total += torch.where(alive, lo, torch.full_like(lo, 10.0))
            self.steps_taken += int(alive.sum())
        L = total / K
        ges = (((L[:S] - L[S:]) / (2 * self.sigma ** 2)).unsqueeze(1) * eps).mean(0)
        ges = ges.clamp(-self.clip, self.clip)
        if torch.isfinite(ges).all():
            self.adam_t += 1
            b1, b2 = 0.9, 0.999
            self.adam_m.mul_(b1).add_(ges, alpha=1 - b1)
            self.adam_v.mul_(b2).addcmul_(ges, ges, value=1 - b2)
            mh = self.adam_m / (1 - b1 ** self.adam_t)
            vh = self.adam_v / (1 - b2 ** self.adam_t)
            self.theta -= self.lr * mh / (vh.sqrt() + 1e-8)
        self.w, self.m, self.t = w[:S].clone(), m[:S].clone(), t[:S].clone()
        for s in torch.nonzero((self.t >= self.h) | ~alive[:S]).flatten().tolist():
            self.w[s] = self.init_w()
            self.m[s].zero_()
            self.t[s] = 0
            self.h[s] = self.life()
            self.init_loss[s] = self.first_loss(self.w[s])
        return L.mean().item()


def check(data):
    """the batched gradient against autograd on one trajectory"""
    es = EsOuterStep(data, S=1)
    w = es.w[:1].clone().requires_grad_(True)
    x, y = data[0][:128].unsqueeze(0), data[1][:128].unsqueeze(0)
    loss, g = es.loss_grad(w.detach(), x, y, True)
    W1, b1, W2, b2 = es.views(w)
    ref = F.cross_entropy(F.linear(F.relu(F.linear(x[0], W1[0], b1[0])), W2[0], b2[0]), y[0])
    (gref,) = torch.autograd.grad(ref, w)
    err = (g - gref).abs().max().item() / gref.abs().max().item()
    print(f"batched loss {loss.item():.6f} autograd {ref.item():.6f}; gradient max rel err {err:.2e}")
    return err < 1e-4 and abs(loss.item() - ref.item()) < 1e-5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--K", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = load_data()
    if a.check:
        sys.exit(0 if check(data) else 1)
    es = EsOuterStep(data, S=a.samples, K=a.K)
    es.step()
    taken0 = es.steps_taken
    t0 = time.perf_counter()
    for i in range(a.steps):
        L = es.step()
    dt = time.perf_counter() - t0
    print(f"{a.steps} outer steps: {1e3 * dt / a.steps:.1f} ms each, "
          f"{(es.steps_taken - taken0) / dt:,.0f} inner steps/s, last outer loss {L:.4f}")


if __name__ == "__main__":
    main()
