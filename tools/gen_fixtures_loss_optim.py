"""Writes tests/fixtures/loss_optim.h5: PyTorch references for nn/loss.c, nn/optim.c,
nn/clip.c and nn/schedule.c (run with /usr/bin/python3).

ce/<case>/{logits, targets, loss, grad}   F.cross_entropy(ignore_index=0, ...) and d/dlogits
optim/init/<p>, optim/grad/<k>/<p>        a small model and fixed per-step gradients
optim/<cfg>/{final/<p>, exp_avg/<p>, exp_avg_sq/<p>, norms, lrs}
sched/<kind>/lrs                          torch lr_scheduler values for lr = 1, steps 1..12
"""
import math

import torch
import torch.nn.functional as F

from fixture_util import open_fixture, put

torch.manual_seed(1234)
h5 = open_fixture("loss_optim.h5")

# ---- cross entropy ---------------------------------------------------------------
def ce_case(name, logits, targets, **kw):
    x = logits.clone().requires_grad_(True)
    loss = F.cross_entropy(x.reshape(-1, x.shape[-1]), targets.reshape(-1), ignore_index=0, **kw)
    loss.backward()
    put(h5, f"ce/{name}/logits", logits)
    put(h5, f"ce/{name}/targets", targets)
    put(h5, f"ce/{name}/loss", loss)
    put(h5, f"ce/{name}/grad", x.grad)


B, T, V = 3, 5, 11
logits = torch.randn(B, T, V) * 3
targets = torch.randint(1, V, (B, T))
targets[0, 3:] = 0          # right padding, as in a batch
targets[2, 1:] = 0
targets[1, 2] = 0           # a pad id in the middle too (still ignored)
ce_case("smooth", logits, targets, label_smoothing=0.1)
ce_case("plain", logits, targets)
ce_case("sum", logits, targets, label_smoothing=0.1, reduction="sum")
big = torch.randn(4, 2000) * 8 + 20  # large vocabulary, large logits: stability
bt = torch.tensor([5, 0, 1999, 1234])
ce_case("big", big, bt, label_smoothing=0.1)

# ---- optimisers ------------------------------------------------------------------
SHAPES = {"fc1.weight": (4, 3), "fc1.bias": (4,), "fc2.weight": (2, 4)}
STEPS = 5
init = {n: torch.randn(*s) * 0.5 for n, s in SHAPES.items()}
# step gradients: norms alternate above and below clip_norm = 1
grads = []
for k in range(STEPS):
    scale = 1.5 if k % 2 == 0 else 0.15
    grads.append({n: torch.randn(*s) * scale for n, s in SHAPES.items()})
for n, v in init.items():
    put(h5, f"optim/init/{n}", v)
for k, gs in enumerate(grads, 1):
    for n, v in gs.items():
        put(h5, f"optim/grad/{k}/{n}", v)


def run(cfg, make_opt, make_sched=None, clip=1.0):
    params = {n: v.clone().requires_grad_(True) for n, v in init.items()}
    plist = list(params.values())
    opt = make_opt(plist)
    sched = make_sched(opt) if make_sched else None
    norms, lrs = [], []
    for k in range(STEPS):
        for n, p in params.items():
            p.grad = grads[k][n].clone()
        norms.append(float(torch.nn.utils.clip_grad_norm_(plist, clip)) if clip > 0 else 0.0)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched:
            sched.step()
    for n, p in params.items():
        put(h5, f"optim/{cfg}/final/{n}", p)
        st = opt.state[p]
        for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
            if key in st and st[key] is not None:
                put(h5, f"optim/{cfg}/{key}/{n}", st[key])
    put(h5, f"optim/{cfg}/norms", torch.tensor(norms, dtype=torch.float64))
    put(h5, f"optim/{cfg}/lrs", torch.tensor(lrs, dtype=torch.float64))


W = 3
noam = lambda e: min((e + 1) / W, math.sqrt(W / (e + 1)))  # LambdaLR epoch e = update k - 1
run("adam", lambda p: torch.optim.Adam(p, lr=0.01))
run("adam_wd_noam", lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.8, 0.95), eps=1e-6,
                                               weight_decay=0.1),
    lambda o: torch.optim.lr_scheduler.LambdaLR(o, noam))
run("adamw", lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1))
run("sgd_momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5))
run("sgd_nesterov", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.7), clip=0.5)
run("sgd_dampening", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.3), clip=0)

# ---- schedules on their own --------------------------------------------------------
def lrs_of(make):
    p = torch.zeros(1, requires_grad=True)
    o = torch.optim.SGD([p], lr=1.0)
    s = make(o)
    out = []
    for _ in range(12):
        out.append(o.param_groups[0]["lr"])
        o.step()
        s.step()
    return torch.tensor(out, dtype=torch.float64)


put(h5, "sched/step/lrs", lrs_of(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5)))
put(h5, "sched/exponential/lrs",
    lrs_of(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)))
W4 = 4
put(h5, "sched/inverse_sqrt/lrs", lrs_of(lambda o: torch.optim.lr_scheduler.LambdaLR(
    o, lambda e: min((e + 1) / W4, math.sqrt(W4 / (e + 1))))))
h5.close()
