#!/usr/bin/python3
"""Writes tests/fixtures/checkpoint_ref.h5: a checkpoint written by the PyTorch reference's own
save_checkpoint (h5py, HDF5's earliest file format, tied transformer, Adam state after two
steps), so the C tests check that files written by the reference load.

Extra group /expect (ignored by checkpoint readers, MODELS.md 11.1):
  names   state_dict entries as "name|d0,d1,..." or "name=target" for a tied second name
  sums    float64 sum of each distinct parameter, in the order of `names` without ties
  exp_avg_sums  float64 sum of each exp_avg, same order

Run: /usr/bin/python3 tools/gen_fixtures_checkpoint.py [path/to/reference/peer]
"""
import os
import sys

import h5py
import numpy as np
import torch

peer = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/reference/peer"
sys.path.insert(0, peer)
import torch_models as tm  # noqa: E402
from seqdata import Vocab  # noqa: E402

torch.manual_seed(0)
cfg = tm.full_config(dict(arch="transformer", src_vocab_size=7, tgt_vocab_size=6, d_model=4,
                          nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                          dim_feedforward=6, dropout=0.0, tie_embeddings=1))
model = tm.ARCHS["transformer"](cfg)
o = dict(lr=1e-2, beta1=0.9, beta2=0.98, eps=1e-9, weight_decay=0.0, clip_norm=1.0,
         schedule="constant", warmup_steps=1, label_smoothing=0.0)
opt = tm.make_optimizer(model, o)
src = torch.tensor([[4, 5, 6, 3], [5, 3, 0, 0]])
src_len = torch.tensor([4, 2])
tin = torch.tensor([[2, 4, 5], [2, 5, 0]])
tout = torch.tensor([[4, 5, 3], [5, 3, 0]])
for step in (1, 2):
    tm.train_step(model, opt, (src, src_len, tin, tout), o, step)

src_vocab = Vocab(["<pad>", "<unk>", "<s>", "</s>", "the", "été", "ß"])
tgt_vocab = Vocab(["<pad>", "<unk>", "<s>", "</s>", "le", "l'"])
out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "checkpoint_ref.h5")
tm.save_checkpoint(out, model, src_vocab, tgt_vocab, dict(level="word", min_freq=1, max_size=8000),
                   optimizer=opt, optim_cfg=o, train_attrs=dict(config="fixture", seed=0))

names, sums, m_sums, first = [], [], [], {}
for key, t in model.state_dict().items():
    ident = t.data_ptr()
    if ident in first:
        names.append(f"{key}={first[ident]}")
        continue
    first[ident] = key
    names.append(key + "|" + ",".join(str(d) for d in t.shape))
    sums.append(float(t.double().sum()))
params = dict(model.named_parameters())
for key in first.values():
    m_sums.append(float(opt.state[params[key]]["exp_avg"].double().sum()))
with h5py.File(out, "a") as f:
    g = f.create_group("expect")
    g.create_dataset("names", data=np.array(names, dtype=object), dtype=h5py.string_dtype("utf-8"))
    g.create_dataset("sums", data=np.array(sums))
    g.create_dataset("exp_avg_sums", data=np.array(m_sums))
print(out, os.path.getsize(out), "bytes,", len(names), "names")
