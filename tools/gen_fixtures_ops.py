"""PyTorch references for the core ops (tests/test_ops_torch.c).

Each case is a group with float32 inputs x0, x1, ..., optional int64 idx / mask, the output
`out`, fixed random weights `w` of out's shape and the gradients dx0, dx1, ... of
sum(out * w) with respect to the inputs.

    /usr/bin/python3 tools/gen_fixtures_ops.py   # writes tests/fixtures/ops.h5
"""
import torch
import torch.nn.functional as F

from fixture_util import open_fixture, put

torch.manual_seed(1234)


def rnd(*shape, lo=-1.0, hi=1.0):
    return (torch.rand(*shape, dtype=torch.float64) * (hi - lo) + lo).float()


def case(h5, name, inputs, fn, extra=None):
    xs = [x.clone().requires_grad_(True) for x in inputs]
    out = fn(*xs)
    w = rnd(*out.shape)
    (out * w).sum().backward()
    g = h5.create_group(name)
    for i, x in enumerate(xs):
        put(g, "x%d" % i, x)
        put(g, "dx%d" % i, x.grad if x.grad is not None else torch.zeros_like(x))
    put(g, "out", out)
    put(g, "w", w)
    for k, v in (extra or {}).items():
        put(g, k, v)


def main():
    with open_fixture("ops.h5") as h5:
        # elementwise with broadcasting: [3,4] with [4] and [3,1]
        case(h5, "arith", [rnd(3, 4), rnd(4), rnd(3, 1, lo=0.5, hi=2.0)],
             lambda a, b, c: (a + b) * (a - c) / c + a * b)
        case(h5, "unary", [rnd(2, 5, lo=0.1, hi=2.0)],
             lambda x: torch.tanh(x) + torch.sigmoid(x) * torch.exp(-x) + torch.log(x))
        # batched matmul with a transposed operand: [2,3,4] @ [2,5,4]^T
        case(h5, "matmul_bt", [rnd(2, 3, 4), rnd(2, 5, 4)],
             lambda a, b: torch.matmul(a, b.transpose(1, 2)))
        case(h5, "linear", [rnd(2, 3, 4), rnd(5, 4), rnd(5)], F.linear)
        mask = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.bool)
        case(h5, "softmax_mask", [rnd(3, 5, lo=-3, hi=3)],
             lambda x: torch.softmax(x.masked_fill(~mask, float("-inf")), dim=1),
             {"mask": mask})
        # log-softmax is -inf at masked positions: compare where(mask, out, 0)
        case(h5, "log_softmax_mask", [rnd(3, 5, lo=-3, hi=3)],
             lambda x: torch.where(mask, torch.log_softmax(
                 x.masked_fill(~mask, float("-inf")), dim=1), torch.zeros(())),
             {"mask": mask})
        case(h5, "logsumexp", [rnd(3, 5, lo=-3, hi=3) * 10], lambda x: torch.logsumexp(x, dim=1))
        x = rnd(4, 5)
        case(h5, "max", [x], lambda x: torch.max(x, dim=1).values,
             {"indices": torch.max(x, dim=1).indices})
        case(h5, "sum_dims", [rnd(2, 3, 4)], lambda x: x.sum(dim=(0, 2), keepdim=True))
        case(h5, "mean_dim", [rnd(2, 3, 4)], lambda x: x.mean(dim=1))
        case(h5, "concat", [rnd(2, 3), rnd(2, 2)], lambda a, b: torch.cat([a, b], dim=1))
        idx = torch.tensor([[4, 0, 4], [2, 2, 1]])
        case(h5, "index_select", [rnd(5, 3)],
             lambda x: torch.index_select(x, 0, idx.reshape(-1)).reshape(2, 3, 3), {"idx": idx})
        gidx = torch.tensor([[3, 0], [1, 1], [2, 3]])
        case(h5, "gather", [rnd(3, 4)], lambda x: torch.gather(x, 1, gidx), {"idx": gidx})


if __name__ == "__main__":
    main()
