#!/usr/bin/python3
"""Convert between a PyTorch state_dict (.pt) and a seqgrad HDF5 checkpoint (MODELS.md 11).

Not used by the tests. Run with /usr/bin/python3 (torch, h5py, numpy).

  to-ckpt IN.pt OUT.h5 [--config cfg.json] [--set key=value ...]
          [--src-vocab src.txt] [--tgt-vocab tgt.txt] [--level word] [--min-freq 2] [--max-size 8000]
      IN.pt is a state_dict, or a dict with "state_dict" (and optionally "config",
      "src_vocab", "tgt_vocab" lists) as written by to-torch. Hyperparameters come from
      "config", then cfg.json, then --set (ints, floats, or strings). Vocabulary files
      hold one token per line (id = line number). Tied parameters (tensors sharing
      storage) become HDF5 hard links.

  to-torch IN.h5 OUT.pt
      Writes {"state_dict", "config", "src_vocab", "tgt_vocab", "vocab_attrs"}; every
      name of a tied parameter is present (both point to the same tensor).
"""
import argparse
import json
import sys

import h5py
import numpy as np
import torch

FORMAT, VERSION = "seqgrad-checkpoint", 1


def attr_value(v):
    """Python value -> the attribute type of MODELS.md 11.1."""
    if isinstance(v, bool):
        return np.int64(int(v))
    if isinstance(v, (int, np.integer)):
        return np.int64(v)
    if isinstance(v, (float, np.floating)):
        return np.float64(v)
    if isinstance(v, str):
        return v
    raise TypeError(f"unsupported attribute value {v!r}")


def parse_set(s):
    k, _, v = s.partition("=")
    for conv in (int, float):
        try:
            return k, conv(v)
        except ValueError:
            pass
    return k, v


def read_vocab(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def to_ckpt(a):
    obj = torch.load(a.input, map_location="cpu")
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    cfg = dict(obj.get("config", {})) if isinstance(obj, dict) and "state_dict" in obj else {}
    if a.config:
        with open(a.config) as f:
            cfg.update(json.load(f))
    cfg.update(dict(parse_set(s) for s in a.set))
    vocabs = {"src": obj.get("src_vocab") if "state_dict" in obj else None,
              "tgt": obj.get("tgt_vocab") if "state_dict" in obj else None}
    if a.src_vocab:
        vocabs["src"] = read_vocab(a.src_vocab)
    if a.tgt_vocab:
        vocabs["tgt"] = read_vocab(a.tgt_vocab)
    with h5py.File(a.output, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = np.int64(VERSION)
        g = f.create_group("model")
        for k, v in cfg.items():
            g.attrs[k] = attr_value(v)
        first = {}
        for key, t in sd.items():
            p = key.replace(".", "/")
            ident = (t.data_ptr(), tuple(t.shape), tuple(t.stride()))
            if ident in first:
                g[p] = g[first[ident]]  # tied: hard link (11.3)
            else:
                first[ident] = p
                g.create_dataset(p, data=t.detach().cpu().float().numpy().astype("<f4"))
        for side, toks in vocabs.items():
            if toks is None:
                continue
            ds = f.create_dataset(f"vocab/{side}", data=np.array(toks, dtype=object),
                                  dtype=h5py.string_dtype("utf-8"))
            ds.attrs["level"] = a.level
            ds.attrs["min_freq"] = np.int64(a.min_freq)
            ds.attrs["max_size"] = np.int64(a.max_size)
            for k in ("src_vocab_size", "tgt_vocab_size"):
                if k.startswith(side) and k not in cfg:
                    g.attrs[k] = np.int64(len(toks))


def plain(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    return v


def to_torch(a):
    with h5py.File(a.input, "r") as f:
        if plain(f.attrs.get("format")) != FORMAT or int(f.attrs.get("version", -1)) != VERSION:
            sys.exit(f"{a.input}: not a {FORMAT} version {VERSION} file")
        m = f["model"]
        sd, by_addr = {}, {}
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                addr = h5py.h5o.get_info(obj.id).addr
                if addr not in by_addr:
                    by_addr[addr] = torch.from_numpy(np.asarray(obj[()], dtype=np.float32))
                sd[name.replace("/", ".")] = by_addr[addr]
        # visititems sees a hard-linked dataset once: walk links instead
        def walk(g, prefix):
            for k in g:
                o = g[k]
                if isinstance(o, h5py.Group):
                    walk(o, prefix + k + "/")
                else:
                    visit(prefix + k, o)
        walk(m, "")
        out = {"state_dict": sd, "config": {k: plain(v) for k, v in m.attrs.items()}}
        for side in ("src", "tgt"):
            if f"vocab/{side}" in f:
                out[f"{side}_vocab"] = [plain(s) for s in f[f"vocab/{side}"][()]]
                out["vocab_attrs"] = {k: plain(v) for k, v in f[f"vocab/{side}"].attrs.items()}
    torch.save(out, a.output)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("to-ckpt")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--config")
    c.add_argument("--set", action="append", default=[])
    c.add_argument("--src-vocab")
    c.add_argument("--tgt-vocab")
    c.add_argument("--level", default="word")
    c.add_argument("--min-freq", type=int, default=2)
    c.add_argument("--max-size", type=int, default=8000)
    t = sub.add_parser("to-torch")
    t.add_argument("input")
    t.add_argument("output")
    a = ap.parse_args()
    to_ckpt(a) if a.cmd == "to-ckpt" else to_torch(a)


if __name__ == "__main__":
    main()
