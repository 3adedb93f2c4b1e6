"""lopt_torch - a torch.optim.Optimizer backed by liblopt's learned optimizer.

    from lopt_torch import LearnedOptimizer
    opt = LearnedOptimizer(model.parameters(), path="fmnist8-mlp.lopt")
    for x, y in data:
        opt.zero_grad()
        loss_fn(model(x), y).backward()     # any loss: the optimizer reads gradients
        opt.step()

The update is liblopt's own (include/lopt.h: lopt_opt_step_tensors), called through
ctypes on the tensors' memory: contiguous float32 CPU parameters and gradients are
passed as they are, without a copy; others are refused (another dtype or device) or
copied around the call (a non-contiguous parameter). Each parameter is one tensor
of the learned optimizer (it normalises its features per tensor), in the order of
param_groups, as torch.optim sees them.

Options, per param group as torch.optim's:
    lr            the step scale, a multiplier of the learned update (default
                  lr_scale = 1.0: the step the optimizer was meta-trained to take).
                  Named "lr" so torch.optim.lr_scheduler drives it.
    weight_decay  decoupled (as AdamW):  w <- w - lr * weight_decay * w + lr * update.
                  AdamW multiplies its weight_decay by its lr (about 1e-3), this one
                  by the step scale (1): AdamW's weight_decay=1e-2 is about 1e-5 here.
A parameter without a .grad is skipped in a step, as torch.optim does (not moved,
its momenta unchanged). state_dict() carries liblopt's state blob (momenta, step
count, the horizon clamp; CRC-checked) under "lopt_state"; load_state_dict()
restores it into an optimizer over the same parameters and .lopt file.
A NaN or inf in a gradient is skipped for that element (its parameter and momenta
stay as they were) and counted: .nonfinite (not part of state_dict).

Past its horizon (the number of steps it was meta-trained for, .horizon), the
optimizer feeds its time features min(t, t_max), with t_max the horizon by default:
LearnedOptimizer(..., t_max=0) turns that off (docs/design.md, "The horizon").

The library: $LOPT_LIBRARY if set, else liblopt.so installed beside this file
(PREFIX/lib for PREFIX/share/lopt/python/lopt_torch.py), else the repository's
build/liblopt.so, else the system's (ctypes.util.find_library("lopt")).
"""
import ctypes
import ctypes.util
import os

import torch

__all__ = ["LearnedOptimizer", "load_library"]


class _Info(ctypes.Structure):
    _fields_ = [("file_version", ctypes.c_int), ("form", ctypes.c_char * 16),
                ("nmom", ctypes.c_int), ("ntime", ctypes.c_int), ("nhidden", ctypes.c_int),
                ("hidden", ctypes.c_int), ("nweights", ctypes.c_size_t),
                ("horizon", ctypes.c_int64), ("task", ctypes.c_char * 64),
                ("estimator", ctypes.c_char * 64), ("outer_loss", ctypes.c_char * 64),
                ("outer_steps", ctypes.c_int64)]


class _GroupOpts(ctypes.Structure):
    _fields_ = [("step_scale", ctypes.c_float), ("weight_decay", ctypes.c_float),
                ("frozen", ctypes.c_int)]


class _ParamGroup(ctypes.Structure):
    _fields_ = [("tensor_sizes", ctypes.POINTER(ctypes.c_size_t)), ("ntensors", ctypes.c_int),
                ("opts", _GroupOpts)]


_lib = None


def _candidates():
    env = os.environ.get("LOPT_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    out = [os.path.join(here, "..", "..", "..", "lib", "liblopt.so.0"),   # installed
           os.path.join(here, "..", "build", "liblopt.so")]               # the repository
    found = ctypes.util.find_library("lopt")
    if found:
        out.append(found)
    return out


def load_library(path=None):
    """Loads liblopt.so (path, or the search described above) once and returns it."""
    global _lib
    if _lib is not None and path is None:
        return _lib
    tried = [path] if path else _candidates()
    lib = None
    for p in tried:
        if p and (os.path.exists(p) or "/" not in p):
            try:
                lib = ctypes.CDLL(p)
                break
            except OSError:
                continue
    if lib is None:
        raise OSError("liblopt.so not found (tried %s); set LOPT_LIBRARY" % ", ".join(map(str, tried)))
    c = ctypes
    P = c.c_void_p
    sig = {
        "lopt_model_load": (P, [c.c_char_p, c.c_char_p, c.c_size_t]),
        "lopt_model_free": (None, [P]),
        "lopt_model_info": (c.c_int, [P, c.POINTER(_Info)]),
        "lopt_model_describe": (c.c_char_p, [P, c.c_char_p, c.c_size_t]),
        "lopt_opt_new_groups": (P, [P, c.POINTER(_ParamGroup), c.c_int, c.c_char_p, c.c_size_t]),
        "lopt_opt_free": (None, [P]),
        "lopt_opt_set_group": (c.c_int, [P, c.c_int, c.POINTER(_GroupOpts), c.c_char_p, c.c_size_t]),
        "lopt_opt_step_tensors": (None, [P, c.POINTER(P), c.POINTER(P)]),
        "lopt_opt_steps": (c.c_int64, [P]),
        "lopt_opt_set_t_max": (None, [P, c.c_int64]),
        "lopt_opt_t_max": (c.c_int64, [P]),
        "lopt_opt_horizon": (c.c_int64, [P]),
        "lopt_opt_past_horizon": (c.c_int, [P]),
        "lopt_opt_nonfinite": (c.c_uint64, [P]),
        "lopt_opt_state_size": (c.c_size_t, [P]),
        "lopt_opt_save_state": (c.c_size_t, [P, c.c_char_p, c.c_size_t, c.c_char_p, c.c_size_t]),
        "lopt_opt_load_state": (c.c_int, [P, c.c_char_p, c.c_size_t, c.c_char_p, c.c_size_t]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    if path is None:
        _lib = lib
    return lib


def _err():
    return ctypes.create_string_buffer(512)


class LearnedOptimizer(torch.optim.Optimizer):
    """A learned optimizer (a .lopt file) over the parameters of any torch module.

    params     parameters or param groups, as for any torch.optim.Optimizer; float32
               CPU tensors.
    path       the .lopt file (lopt meta-train, lopt init-lopt, or shipped).
    lr_scale   the default step scale (group key "lr").
    weight_decay  the default decoupled weight decay (group key "weight_decay").
    t_max      the horizon clamp: None = the file's horizon (if it records one),
               0 = off, N = clamp the time features at step N.
    library    a path to liblopt.so (default: see the module's docstring).
    """

    def __init__(self, params, path, lr_scale=1.0, weight_decay=0.0, t_max=None, library=None):
        if not lr_scale >= 0:
            raise ValueError("lr_scale must be >= 0, got %r" % (lr_scale,))
        if not weight_decay >= 0:
            raise ValueError("weight_decay must be >= 0, got %r" % (weight_decay,))
        self._lib = load_library(library)
        self._opt = None
        self._model = None
        self.path = os.fspath(path)
        self._t_max = t_max
        super().__init__(params, dict(lr=lr_scale, weight_decay=weight_decay))
        err = _err()
        self._model = self._lib.lopt_model_load(self.path.encode(), err, len(err))
        if not self._model:
            raise ValueError(err.value.decode(errors="replace"))
        self._build()

    # ---- the C optimizer over the current param_groups ----
    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def _build(self):
        keep = []
        groups = (_ParamGroup * len(self.param_groups))()
        for i, g in enumerate(self.param_groups):
            for p in g["params"]:
                if p.dtype != torch.float32 or p.device.type != "cpu" or p.is_sparse:
                    raise TypeError("LearnedOptimizer needs float32 CPU tensors, got %s on %s"
                                    % (p.dtype, p.device))
                if p.numel() == 0:
                    raise ValueError("LearnedOptimizer: an empty parameter")
            sizes = (ctypes.c_size_t * max(1, len(g["params"])))(*[p.numel() for p in g["params"]])
            keep.append(sizes)
            groups[i].tensor_sizes = sizes
            groups[i].ntensors = len(g["params"])
            groups[i].opts = _GroupOpts(float(g["lr"]), float(g["weight_decay"]), 0)
        err = _err()
        opt = self._lib.lopt_opt_new_groups(self._model, groups, len(self.param_groups), err, len(err))
        if not opt:
            raise ValueError(err.value.decode(errors="replace"))
        if self._opt:
            self._lib.lopt_opt_free(self._opt)
        self._opt = opt
        if self._t_max is not None:
            self._lib.lopt_opt_set_t_max(self._opt, int(self._t_max))
        n = len(self._params())
        self._pbuf = (ctypes.c_void_p * max(1, n))()
        self._gbuf = (ctypes.c_void_p * max(1, n))()

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        if getattr(self, "_model", None):
            if self._lib.lopt_opt_steps(self._opt) > 0:
                raise RuntimeError("LearnedOptimizer: add param groups before the first step")
            self._build()

    def __del__(self):
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        if getattr(self, "_opt", None):
            lib.lopt_opt_free(self._opt)
            self._opt = None
        if getattr(self, "_model", None):
            lib.lopt_model_free(self._model)
            self._model = None

    # ---- torch.optim's interface ----
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        err = _err()
        for i, g in enumerate(self.param_groups):
            o = _GroupOpts(float(g["lr"]), float(g["weight_decay"]), 0)
            if self._lib.lopt_opt_set_group(self._opt, i, ctypes.byref(o), err, len(err)) != 0:
                raise ValueError(err.value.decode(errors="replace"))
        params = self._params()
        if len(params) != len(self._pbuf):
            raise RuntimeError("LearnedOptimizer: param_groups changed after construction")
        keep, back = [], []
        for k, p in enumerate(params):
            g = p.grad
            if g is None:
                self._pbuf[k] = p.data_ptr()
                self._gbuf[k] = None
                continue
            if g.is_sparse:
                raise TypeError("LearnedOptimizer does not take sparse gradients")
            if g.dtype != torch.float32 or g.device.type != "cpu":
                raise TypeError("LearnedOptimizer needs float32 CPU gradients, got %s" % g.dtype)
            if not g.is_contiguous():
                g = g.contiguous()
                keep.append(g)
            w = p
            if not p.is_contiguous():
                w = p.contiguous()
                back.append((p, w))
            self._pbuf[k] = w.data_ptr()
            self._gbuf[k] = g.data_ptr()
        self._lib.lopt_opt_step_tensors(self._opt, self._pbuf, self._gbuf)
        for p, w in back:
            p.copy_(w)
        return loss

    def state_dict(self):
        sd = super().state_dict()
        n = self._lib.lopt_opt_state_size(self._opt)
        buf = ctypes.create_string_buffer(n)
        err = _err()
        if self._lib.lopt_opt_save_state(self._opt, buf, n, err, len(err)) != n:
            raise RuntimeError(err.value.decode(errors="replace"))
        sd["lopt_state"] = buf.raw
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        blob = state_dict.pop("lopt_state", None)
        super().load_state_dict(state_dict)
        if blob is None:
            return
        blob = bytes(blob)
        err = _err()
        if self._lib.lopt_opt_load_state(self._opt, blob, len(blob), err, len(err)) != 0:
            raise ValueError("LearnedOptimizer.load_state_dict: " + err.value.decode(errors="replace"))

    # ---- what the .lopt file says, and the step count ----
    @property
    def info(self):
        i = _Info()
        self._lib.lopt_model_info(self._model, ctypes.byref(i))
        out = {}
        for name, _ in _Info._fields_:
            v = getattr(i, name)
            out[name] = v.decode() if isinstance(v, bytes) else v
        return out

    @property
    def horizon(self):
        """Inner steps the optimizer was meta-trained for (0: unknown)."""
        return self._lib.lopt_opt_horizon(self._opt)

    @property
    def steps(self):
        return self._lib.lopt_opt_steps(self._opt)

    @property
    def t_max(self):
        return self._lib.lopt_opt_t_max(self._opt)

    @property
    def past_horizon(self):
        return bool(self._lib.lopt_opt_past_horizon(self._opt))

    @property
    def nonfinite(self):
        """Gradient elements skipped as NaN/inf (or whose update was) since creation."""
        return self._lib.lopt_opt_nonfinite(self._opt)

    def describe(self):
        buf = ctypes.create_string_buffer(512)
        return self._lib.lopt_model_describe(self._model, buf, len(buf)).decode()
