#!/usr/bin/python3
"""The reference side of examples/dump_corpus.c: the same dump made with the reference
peer's seqdata.py (vocabularies, ids, bench batches, BLEU of the decoded test targets).
Usage: /usr/bin/python3 tools/dump_corpus_reference.py DIR word|char MIN_FREQ MAX_SIZE OUT
"""
import os
import sys
sys.path.insert(0, os.environ.get('SG_PEER', '/work/shared/reference/peer'))
import seqdata as sd
d, lv, mf, ms, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
c = sd.Corpus(d, level=lv, min_freq=mf, max_size=ms)
with open(out, 'w', encoding='utf-8') as f:
    for v in (c.src_vocab, c.tgt_vocab):
        f.write(f"VOCAB {len(v)}\n")
        for t in v.itos: f.write(t + "\n")
    for s in ("train", "valid", "test"):
        for a, b in c.ids[s]:
            f.write("".join(f"{x} " for x in a) + "|" + "".join(f" {x}" for x in b) + "\n")
    for split, n in (("train", 24), ("test", 10)):
        for bt in sd.bench_batches(c.ids[split], 64, n):
            f.write("B" + "".join(f" {x}" for x in bt) + "\n")
    hyps = [c.tgt_vocab.decode(t) for _, t in c.ids["test"]]
    if lv == "char":
        hyps = [sd.tokenize_words("".join(h)) for h in hyps]
    refs = [sd.tokenize_words(t) for _, t in c.raw["test"]]
    f.write("BLEU %.10f\n" % sd.corpus_bleu(hyps, refs)[0])
