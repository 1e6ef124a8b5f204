"""PyTorch references for tests/test_attention.c -> tests/fixtures/attention.h5 and
tests/fixtures/attention_layers.h5 (transformer encoder/decoder layers).

Run with Debian's python: /usr/bin/python3 tools/gen_fixtures_attention.py

Every group stores the inputs, the parameters under their state_dict names (relative
to the attention module), the outputs, random output gradients (`g_*`) and the
gradients (`d_*`) of loss = sum(out * g_out) [+ sum(alpha * g_alpha)] with respect to
the inputs and every parameter. Bahdanau and Luong are written from MODELS.md 5-6 with
PyTorch ops (local attention has no PyTorch module); MHA and LayerNorm are
torch.nn.MultiheadAttention(batch_first=True) and torch.nn.LayerNorm.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from fixture_util import open_fixture, put

torch.manual_seed(7)


def rnd(*shape, scale=1.0):
    return (torch.rand(*shape) * 2 - 1) * scale


def lengths_mask(lengths, S):
    return torch.arange(S).unsqueeze(0) < lengths.unsqueeze(1)


def masked_softmax(e, mask):
    return torch.softmax(e.masked_fill(~mask, float("-inf")), dim=-1)


def store_grads(grp, named):
    for name, t in named.items():
        put(grp, "d_" + name, t.grad)


def bahdanau(h5):
    B, S, Hq, Hk, A = 3, 5, 4, 6, 5
    g = h5.create_group("bahdanau")
    lengths = torch.tensor([5, 3, 1])
    s = rnd(B, Hq).requires_grad_()
    h = rnd(B, S, Hk).requires_grad_()
    params = {"query_proj.weight": rnd(A, Hq, scale=0.5), "key_proj.weight": rnd(A, Hk, scale=0.5),
              "key_proj.bias": rnd(A, scale=0.5), "energy.weight": rnd(1, A)}
    for t in params.values():
        t.requires_grad_()
    # MODELS.md 5: K = W_h h + b_a once; e_j = v . tanh(W_s s + K_j); alpha = softmax_{j<n_b}
    K = F.linear(h, params["key_proj.weight"], params["key_proj.bias"])
    e = F.linear(torch.tanh(K + F.linear(s, params["query_proj.weight"]).unsqueeze(1)),
                 params["energy.weight"]).squeeze(-1)
    alpha = masked_softmax(e, lengths_mask(lengths, S))
    ctx = torch.bmm(alpha.unsqueeze(1), h).squeeze(1)
    g_ctx, g_alpha = rnd(B, Hk), rnd(B, S)
    ((ctx * g_ctx).sum() + (alpha * g_alpha).sum()).backward()
    for k, v in {"s": s, "h": h, "lengths": lengths, "ctx": ctx, "alpha": alpha,
                 "g_ctx": g_ctx, "g_alpha": g_alpha}.items():
        put(g, k, v)
    for k, v in params.items():
        put(g, "p/" + k, v)
    store_grads(g, {"s": s, "h": h})
    for k, v in params.items():
        put(g, "d/" + k, v.grad)


def luong(h5, score, align):
    B, S, H, A, D, t = 3, 8, 4, 5, 2, 3
    g = h5.create_group(f"luong_{score}_{align}")
    lengths = torch.tensor([8, 5, 2])
    ht = rnd(B, H).requires_grad_()
    hbar = rnd(B, S, H).requires_grad_()
    params = {}
    if score == "general":
        params["W_a.weight"] = rnd(H, H, scale=0.5)
    if score == "concat":
        params["W_a.weight"] = rnd(A, 2 * H, scale=0.5)
        params["v.weight"] = rnd(1, A)
    if align == "local-p":
        params["W_p.weight"] = rnd(A, H)
        params["v_p.weight"] = rnd(1, A)
    for p in params.values():
        p.requires_grad_()
    # MODELS.md 6
    if score == "dot":
        scores = torch.bmm(hbar, ht.unsqueeze(2)).squeeze(2)
    elif score == "general":
        scores = torch.bmm(F.linear(hbar, params["W_a.weight"]), ht.unsqueeze(2)).squeeze(2)
    else:
        Wa = params["W_a.weight"]
        scores = F.linear(torch.tanh(F.linear(ht, Wa[:, :H]).unsqueeze(1) + F.linear(hbar, Wa[:, H:])),
                          params["v.weight"]).squeeze(-1)
    mask = lengths_mask(lengths, S)
    pos = torch.arange(S, dtype=torch.float32).unsqueeze(0)
    if align != "global":
        if align == "local-m":
            p = torch.clamp((lengths - 1).float(), max=float(t))
        else:
            p = lengths.float() * torch.sigmoid(
                F.linear(torch.tanh(F.linear(ht, params["W_p.weight"])), params["v_p.weight"])).squeeze(-1)
        dist = pos - p.unsqueeze(1)
        mask = mask & (dist.abs() <= D)
        put(g, "p_t", p)
    alpha = masked_softmax(scores, mask)
    if align == "local-p":
        sigma = D / 2.0
        alpha = alpha * torch.exp(-(dist * dist) / (2.0 * sigma * sigma))
    ctx = torch.bmm(alpha.unsqueeze(1), hbar).squeeze(1)
    g_ctx, g_alpha = rnd(B, H), rnd(B, S)
    ((ctx * g_ctx).sum() + (alpha * g_alpha).sum()).backward()
    for k, v in {"h_t": ht, "hbar": hbar, "lengths": lengths, "ctx": ctx, "alpha": alpha,
                 "g_ctx": g_ctx, "g_alpha": g_alpha}.items():
        put(g, k, v)
    g.attrs["t"] = t
    g.attrs["D"] = D
    g.attrs["A"] = A
    for k, v in params.items():
        put(g, "p/" + k, v)
        put(g, "d/" + k, v.grad)
    store_grads(g, {"h_t": ht, "hbar": hbar})


def mha(h5, name, causal, self_attn):
    B, d, heads = 2, 8, 2
    Lq, Lk = (4, 4) if self_attn else (3, 5)
    g = h5.create_group(name)
    m = torch.nn.MultiheadAttention(d, heads, batch_first=True)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(rnd(*p.shape, scale=0.6))
    m.eval()
    q = rnd(B, Lq, d).requires_grad_()
    kv = q if self_attn else rnd(B, Lk, d).requires_grad_()
    lengths = torch.tensor([Lk, Lk - 2])
    kpm = ~lengths_mask(lengths, Lk)  # PyTorch: True = ignore
    attn_mask = torch.triu(torch.ones(Lq, Lk, dtype=torch.bool), 1) if causal else None
    out, w = m(q, kv, kv, key_padding_mask=kpm, attn_mask=attn_mask, need_weights=True,
               average_attn_weights=False)
    g_out = rnd(B, Lq, d)
    (out * g_out).sum().backward()
    put(g, "query", q)
    put(g, "lengths", lengths)
    put(g, "out", out)
    put(g, "weights", w)
    put(g, "g_out", g_out)
    put(g, "d_query", q.grad)
    if not self_attn:
        put(g, "key_value", kv)
        put(g, "d_key_value", kv.grad)
    for k, p in m.named_parameters():
        put(g, "p/" + k, p)
        put(g, "d/" + k, p.grad)
    g.attrs["heads"] = heads
    g.attrs["causal"] = int(causal)


def layernorm(h5):
    g = h5.create_group("layernorm")
    ln = torch.nn.LayerNorm(6)
    with torch.no_grad():
        ln.weight.copy_(rnd(6) + 1)
        ln.bias.copy_(rnd(6))
    x = (rnd(3, 4, 6) * 3 + 0.5).requires_grad_()
    y = ln(x)
    g_y = rnd(3, 4, 6)
    (y * g_y).sum().backward()
    for k, v in {"x": x, "y": y, "g_y": g_y, "d_x": x.grad, "p/weight": ln.weight,
                 "p/bias": ln.bias, "d/weight": ln.weight.grad, "d/bias": ln.bias.grad}.items():
        put(g, k, v)


def positions_and_gelu(h5):
    g = h5.create_group("misc")
    for d in (8, 7):  # MODELS.md 7.2 in double, rounded to float32
        pos = np.arange(12, dtype=np.float64)[:, None]
        two_i = np.arange(0, d, 2, dtype=np.float64)[None, :]
        ang = pos / np.power(10000.0, two_i / d)
        pe = np.zeros((12, d))
        pe[:, 0::2] = np.sin(ang)
        pe[:, 1::2] = np.cos(ang[:, : d // 2])
        put(g, f"pe{d}", pe.astype(np.float32))
    x = rnd(20, scale=4).requires_grad_()
    y = F.gelu(x)
    y.sum().backward()
    put(g, "gelu_x", x)
    put(g, "gelu_y", y)
    put(g, "gelu_dx", x.grad)


def main():
    with open_fixture("attention.h5") as h5:
        bahdanau(h5)
        for score in ("dot", "general", "concat"):
            for align in ("global", "local-m", "local-p"):
                luong(h5, score, align)
        mha(h5, "mha_cross", causal=False, self_attn=False)
        mha(h5, "mha_self_causal", causal=True, self_attn=True)
        layernorm(h5)
        positions_and_gelu(h5)



def transformer_layer(h5, name, decoder, norm_first):
    """torch.nn.Transformer{Encoder,Decoder}Layer(batch_first=True, dropout=0)."""
    B, T, S, d, heads, dff = 2, 4, 5, 8, 2, 12
    g = h5.create_group(name)
    cls = torch.nn.TransformerDecoderLayer if decoder else torch.nn.TransformerEncoderLayer
    m = cls(d, heads, dff, dropout=0.0, batch_first=True, norm_first=norm_first)
    with torch.no_grad():
        for k, p in m.named_parameters():
            p.copy_(rnd(*p.shape, scale=0.5) + (1.0 if k.startswith("norm") and k.endswith("weight") else 0.0))
    m.eval()
    x = rnd(B, T if decoder else S, d).requires_grad_()
    lengths = torch.tensor([S, S - 2])
    kpm = ~lengths_mask(lengths, S)
    if decoder:
        mem = rnd(B, S, d).requires_grad_()
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        y = m(x, mem, tgt_mask=causal, memory_key_padding_mask=kpm)
    else:
        y = m(x, src_key_padding_mask=kpm)
    g_y = rnd(*y.shape)
    (y * g_y).sum().backward()
    put(g, "x", x)
    put(g, "y", y)
    put(g, "g_y", g_y)
    put(g, "d_x", x.grad)
    put(g, "lengths", lengths)
    if decoder:
        put(g, "memory", mem)
        put(g, "d_memory", mem.grad)
    for k, p in m.named_parameters():
        put(g, "p/" + k, p)
        put(g, "d/" + k, p.grad)
    g.attrs["heads"] = heads
    g.attrs["dff"] = dff


def layers_main():
    """Transformer layers go to their own file to keep each fixture under 200 KB."""
    with open_fixture("attention_layers.h5") as h5:
        for decoder in (False, True):
            for norm_first in (False, True):
                transformer_layer(h5, f"{'decoder' if decoder else 'encoder'}_{'pre' if norm_first else 'post'}",
                                  decoder, norm_first)


if __name__ == "__main__":
    main()
    layers_main()
