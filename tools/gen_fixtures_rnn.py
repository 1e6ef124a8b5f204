#!/usr/bin/python3
"""Writes tests/fixtures/rnn.h5: torch.nn.GRU / torch.nn.LSTM references for
tests/test_rnn.c (batch_first, 2 layers, bidirectional, unequal lengths through
pack_padded_sequence(enforce_sorted=False), non-zero initial states).

Per cell ("gru", "lstm"): the parameters under their state_dict names, the input x,
lengths, h0 (c0), the outputs (padded with zeros), h_n (c_n), and the gradients of
    loss = sum(out * wy) + sum(h_n * wh) [+ sum(c_n * wc)]
w.r.t. every parameter ("grad/<name>"), x, h0 (c0). Computed in float64.

    /usr/bin/python3 tools/gen_fixtures_rnn.py
"""
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fixture_util import open_fixture, put

B, T, I, H, L = 4, 6, 5, 4, 2
LENGTHS = [4, 6, 1, 3]  # unsorted on purpose; the longest equals T


def make(h5, cell):
    torch.manual_seed(7 if cell == "gru" else 11)
    mod = (torch.nn.GRU if cell == "gru" else torch.nn.LSTM)(
        I, H, num_layers=L, bidirectional=True, batch_first=True).double()
    x = (torch.rand(B, T, I, dtype=torch.float64) - 0.5).requires_grad_()
    h0 = (torch.rand(L * 2, B, H, dtype=torch.float64) - 0.5).requires_grad_()
    c0 = (torch.rand(L * 2, B, H, dtype=torch.float64) - 0.5).requires_grad_()
    lengths = torch.tensor(LENGTHS, dtype=torch.int64)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    if cell == "gru":
        out_p, hn = mod(packed, h0)
    else:
        out_p, (hn, cn) = mod(packed, (h0, c0))
    out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=T)
    wy = torch.rand(out.shape, dtype=torch.float64) - 0.5
    wh = torch.rand(hn.shape, dtype=torch.float64) - 0.5
    loss = (out * wy).sum() + (hn * wh).sum()
    g = h5.create_group(cell)
    if cell == "lstm":
        wc = torch.rand(cn.shape, dtype=torch.float64) - 0.5
        loss = loss + (cn * wc).sum()
        put(g, "c0", c0)
        put(g, "c_n", cn)
        put(g, "wc", wc)
    loss.backward()
    for name, p in mod.named_parameters():
        put(g, "param/" + name, p)
        put(g, "grad/" + name, p.grad)
    put(g, "x", x)
    put(g, "lengths", lengths)
    put(g, "h0", h0)
    put(g, "out", out)
    put(g, "h_n", hn)
    put(g, "wy", wy)
    put(g, "wh", wh)
    put(g, "grad/x", x.grad)
    put(g, "grad/h0", h0.grad)
    if cell == "lstm":
        put(g, "grad/c0", c0.grad)


def main():
    with open_fixture("rnn.h5") as h5:
        for cell in ("gru", "lstm"):
            make(h5, cell)


if __name__ == "__main__":
    main()
