"""Writes tests/fixtures/decode.h5: greedy and beam-search outputs of the reference
(shared/reference/peer/torch_models.py, MODELS.md 8.3) on a tiny recurrent mock model.

Mock (all float64): h_0 given per sentence; step t with previous token y:
    h = tanh(emb[y] + h U^T + t c),   logits = h O^T + bo        (V = 9, H = 6)
The C test implements the same recurrence behind sg_decoder_ops.
Run: /usr/bin/python3 tools/gen_fixtures_decode.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, "/work/shared/reference/peer")
from fixture_util import open_fixture, put  # noqa: E402
import torch_models as tm  # noqa: E402

V, H, B = 9, 6, 6
SRC_LEN = [1, 2, 3, 4, 2, 6]
CASES = [  # (name, beam or 0 for greedy, alpha, penalty)
    ("greedy", 0, 0.0, "avg"),
    ("beam1", 1, 0.7, "avg"),
    ("beam2", 2, 0.7, "avg"),
    ("beam3", 3, 0.7, "avg"),
    ("beam5", 5, 0.7, "avg"),
    ("beam3_gnmt", 3, 0.7, "gnmt"),
    ("beam4_alpha0", 4, 0.0, "avg"),
    ("beam4_alpha15", 4, 1.5, "avg"),
]


class Mock:
    def __init__(self, g):
        self.emb = torch.randn(V, H, generator=g, dtype=torch.float64)
        self.U = 0.8 * torch.randn(H, H, generator=g, dtype=torch.float64)
        self.c = 0.3 * torch.randn(H, generator=g, dtype=torch.float64)
        self.O = 2.0 * torch.randn(V, H, generator=g, dtype=torch.float64)
        self.bo = torch.randn(V, generator=g, dtype=torch.float64)
        self.bo[tm.EOS] -= 3.0  # long enough outputs
        self.h0 = torch.randn(B, H, generator=g, dtype=torch.float64)

    def encode(self, src, src_len):
        return {"h": self.h0[: src.size(0)].clone()}

    def decode_step(self, st, y, t):
        h = torch.tanh(self.emb[y] + st["h"] @ self.U.T + t * self.c)
        return h @ self.O.T + self.bo, {"h": h}


def main():
    g = torch.Generator().manual_seed(20261122)
    m = Mock(g)
    src_len = torch.tensor(SRC_LEN)
    src = torch.ones(B, max(SRC_LEN), dtype=torch.long)  # unused by the mock
    with open_fixture("decode.h5") as f:
        for n in ("emb", "U", "c", "O", "bo", "h0"):
            put(f, "model/" + n, getattr(m, n))
        put(f, "src_len", src_len)
        for name, k, alpha, pen in CASES:
            if k == 0:
                out = tm.greedy_decode(m, src, src_len)
            else:
                out = tm.beam_search(m, src, src_len, beam=k, alpha=alpha, penalty=pen)
            L = max(tm.max_decode_len(src_len)).item()
            toks = torch.full((B, L), -1, dtype=torch.long)
            for b, seq in enumerate(out):
                toks[b, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            grp = f.create_group(name)
            put(grp, "tokens", toks)
            put(grp, "lengths", torch.tensor([len(s) for s in out]))
            put(grp, "beam", k)
            put(grp, "alpha", torch.tensor(alpha, dtype=torch.float64))
            put(grp, "gnmt", int(pen == "gnmt"))
            print(name, [len(s) for s in out])


if __name__ == "__main__":
    main()
