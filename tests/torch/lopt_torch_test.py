"""lopt_torch_test.py - python/lopt_torch.py against the C API (tests/torch_opt.sh).

  usage: lopt_torch_test.py LOPT_REF_EXE MODEL.lopt

1. A small CNN (conv, ReLU, max-pool, dense, and a non-contiguous parameter) in
   two param groups (the second with lr 0.5 and weight decay 1e-3) trains 8 steps
   with LearnedOptimizer; the initial weights and every step's gradients are
   replayed through the C API (lopt_ref: the flat lopt_opt_step over the same
   groups): the parameters after every step must agree to 1e-6 relative.
2. state_dict() / load_state_dict() through torch.save: a resumed optimizer
   continues bit-identically.
3. torch.optim.lr_scheduler drives the step scale (lr 0: nothing moves); a
   parameter without a gradient is not moved; the horizon and info of the file.
4. Any loss: an MLP on synthetic data learns with it (loss falls by half).
5. Refusals: a missing .lopt, float64 parameters.
Prints "ok ..." lines; exits 1 on the first failure.
"""
import copy
import io
import os
import struct
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from lopt_torch import LearnedOptimizer  # noqa: E402

ref_exe, lopt_file = sys.argv[1], sys.argv[2]
failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL: ") + what)
    if not cond:
        failures += 1


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 10)
        self.extra = nn.Parameter(torch.randn(10, 3).t())   # (3, 10), not contiguous

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(h.flatten(1)) + self.extra.sum(0)


def batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))
            for _ in range(n)]


def make_opt(net, **kw):
    groups = [{"params": list(net.conv.parameters())},
              {"params": list(net.fc.parameters()) + [net.extra], "lr": 0.5,
               "weight_decay": 1e-3}]
    return LearnedOptimizer(groups, path=lopt_file, **kw)


def flat(ts):
    return torch.cat([t.detach().reshape(-1) for t in ts])


torch.manual_seed(0)
net = Net()
check(not net.extra.is_contiguous(), "the model has a non-contiguous parameter")
opt = make_opt(net)
params = [p for g in opt.param_groups for p in g["params"]]
w0 = flat(params).clone()
grads, after = [], []
for x, y in batches(8, 1):
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    grads.append(flat([p.grad for p in params]).clone())
    opt.step()
    after.append(flat(params).clone())

# 1. the same steps through the C API
with tempfile.TemporaryDirectory() as tmp:
    inp, outp = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    with open(inp, "wb") as f:
        f.write(struct.pack("<i", len(opt.param_groups)))
        for g in opt.param_groups:
            f.write(struct.pack("<iff", len(g["params"]), g["lr"], g["weight_decay"]))
            for p in g["params"]:
                f.write(struct.pack("<q", p.numel()))
        f.write(struct.pack("<i", len(grads)))
        f.write(w0.numpy().astype("<f4").tobytes())
        for g in grads:
            f.write(g.numpy().astype("<f4").tobytes())
    r = subprocess.run([ref_exe, lopt_file, inp, outp], capture_output=True, text=True)
    check(r.returncode == 0, "lopt_ref ran: " + r.stderr.strip())
    if r.returncode == 0:
        c = torch.frombuffer(bytearray(open(outp, "rb").read()), dtype=torch.float32)
        c = c.reshape(len(grads), -1)
        worst = 0.0
        for s in range(len(grads)):
            rel = ((after[s] - c[s]).abs() / (c[s].abs() + 1e-12)).max().item()
            worst = max(worst, rel)
        moved = (after[-1] - w0).abs().max().item()
        check(worst <= 1e-6 and moved > 1e-4,
              "LearnedOptimizer == the C API over %d steps, %d params in 2 groups "
              "(max rel diff %.3g, moved up to %.3g)" % (len(grads), w0.numel(), worst, moved))

# 2. state_dict round trip through torch.save
torch.manual_seed(1)
a = Net()
oa = make_opt(a)
data = batches(6, 2)
for x, y in data[:3]:
    oa.zero_grad()
    F.cross_entropy(a(x), y).backward()
    oa.step()
buf = io.BytesIO()
torch.save({"model": a.state_dict(), "opt": oa.state_dict()}, buf)
buf.seek(0)
saved = torch.load(buf)
b = Net()
b.load_state_dict(saved["model"])
ob = make_opt(b)
ob.load_state_dict(saved["opt"])
check(ob.steps == 3, "load_state_dict restores the step count (%d)" % ob.steps)
for x, y in data[3:]:
    for m, o in ((a, oa), (b, ob)):
        o.zero_grad()
        F.cross_entropy(m(x), y).backward()
        o.step()
same = all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
check(same, "a run resumed from state_dict() continues bit-identically")
bad = dict(saved["opt"])
blob = bytearray(bad["lopt_state"])
blob[len(blob) // 2] ^= 1
bad["lopt_state"] = bytes(blob)
try:
    make_opt(Net()).load_state_dict(bad)
    check(False, "a corrupt state was accepted")
except ValueError as e:
    check("checksum" in str(e), "a corrupt state is refused: %s" % e)

# 3. schedulers, parameters without gradients, the horizon
c = Net()
oc = make_opt(c)
sched = torch.optim.lr_scheduler.LambdaLR(oc, lambda e: 0.0)
before = flat(c.parameters()).clone()
x, y = data[0]
oc.zero_grad()
F.cross_entropy(c(x), y).backward()
oc.step()
sched.step()
check(torch.equal(before, flat(c.parameters())), "LambdaLR to 0 drives the step scale: nothing moves")
d = Net()
d.conv.weight.requires_grad_(False)
od = make_opt(d)
w_conv = d.conv.weight.clone()
w_fc = d.fc.weight.clone()
od.zero_grad()
F.cross_entropy(d(x), y).backward()
od.step()
check(torch.equal(w_conv, d.conv.weight) and not torch.equal(w_fc, d.fc.weight),
      "a parameter without a gradient is skipped, the others move")
e = Net()
oe = make_opt(e)
oe.zero_grad()
F.cross_entropy(e(x), y).backward()
e.fc.weight.grad[0, 0] = float("nan")
w_fc = e.fc.weight.clone()
oe.step()
moved = e.fc.weight != w_fc
check(not moved[0, 0] and moved.sum().item() == moved.numel() - 1 and oe.nonfinite == 1 and
      all(torch.isfinite(p).all() for p in e.parameters()),
      "a NaN gradient element is skipped and counted (nonfinite %d); the rest of its "
      "tensor moves" % oe.nonfinite)
info = oc.info
check(oc.horizon > 0 and oc.horizon == info["horizon"] and oc.t_max == oc.horizon and
      info["nweights"] > 0,
      "horizon %d (clamp at %d), %s form, %d weights, meta-trained on %s" %
      (oc.horizon, oc.t_max, info["form"], info["nweights"], info["task"] or "?"))
off = LearnedOptimizer(Net().parameters(), path=lopt_file, t_max=0)
check(off.t_max == 0, "t_max=0 turns the clamp off")

# 4. any loss: regression with an MLP on synthetic data
torch.manual_seed(3)
mlp = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
om = LearnedOptimizer(mlp.parameters(), path=lopt_file)
X = torch.randn(256, 8)
Y = (X[:, :1] * 2 - X[:, 1:2]).sin()
first = None
for step in range(300):
    om.zero_grad()
    loss = F.smooth_l1_loss(mlp(X), Y)
    loss.backward()
    om.step()
    first = loss.item() if first is None else first
final = F.smooth_l1_loss(mlp(X), Y).item()
check(final < 0.5 * first, "an MLP with smooth-L1 loss learns: %.4f -> %.4f in 300 steps" % (first, final))

# 5. refusals
try:
    LearnedOptimizer(Net().parameters(), path="/nonexistent.lopt")
    check(False, "a missing .lopt was accepted")
except ValueError as e:
    check("cannot open" in str(e), "a missing file is refused: %s" % e)
try:
    LearnedOptimizer(Net().double().parameters(), path=lopt_file)
    check(False, "float64 parameters were accepted")
except TypeError as e:
    check("float32" in str(e), "float64 parameters are refused: %s" % e)

sys.exit(1 if failures else 0)
