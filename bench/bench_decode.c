/*
 * bench_decode.c - decoding throughput of a trained checkpoint, MODELS.md 10.2.
 *
 *     bench_decode --config NAME --checkpoint M.h5 [--threads N] [--data DIR] [--passes P]
 *                  [--search greedy|beam5|both]
 *
 * Batches: bench(10) of the test split (640 sentences, 64 per batch), numericalised
 * with the checkpoint's vocabularies. For greedy, then beam 5 (alpha 0.7, "avg"): one
 * warm-up decode of the longest batch, then P (3) timed passes over the 10 batches.
 * Wall time includes the encoder and excludes file reading, tokenisation and
 * detokenisation (nothing is detokenised). Metric: sentences / second, min and median.
 *
 * The last line of stdout is one JSON object with the keys of the PyTorch reference
 * (bench_torch.py decode): per search output_tokens (hypothesis lengths, </s>
 * excluded) and sha1_of_ids, the SHA-1 of the JSON list of the last pass's id lists
 * written as Python's json.dumps writes it ("[[5, 9], [7]]"), first 12 hex digits.
 * Equal digests mean both implementations decoded exactly the same ids. Our own keys:
 * gflop_per_pass (the GEMM FLOPs of a pass, counted by the library) and gflops (those
 * FLOPs over the passes' time: how near decoding runs to the hardware's products).
 *
 * --data defaults to $SEQGRAD_DATA/<data> (SEQGRAD_DATA defaults to "data").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "sg_model.h"

#define N_BENCH 10
#define MAX_PASSES 64

/* ---- SHA-1 (FIPS 180-4), just enough for one digest of a byte stream ------------- */

typedef struct sha1 {
    uint32_t h[5];
    uint8_t buf[64];
    uint64_t len; /* bytes so far */
} sha1;

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(sha1 *s, const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)
            f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40)
            f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60)
            f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else
            f = b ^ c ^ d, k = 0xCA62C1D6;
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e;
}

static void sha1_init(sha1 *s)
{
    *s = (sha1){{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, {0}, 0};
}

static void sha1_add(sha1 *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        s->buf[s->len++ % 64] = p[i];
        if (s->len % 64 == 0)
            sha1_block(s, s->buf);
    }
}

static void sha1_hex(sha1 *s, char hex[41])
{
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80, zero = 0, lenb[8];
    sha1_add(s, &pad, 1);
    while (s->len % 64 != 56)
        sha1_add(s, &zero, 1);
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_add(s, lenb, 8);
    for (int i = 0; i < 20; i++)
        sprintf(hex + 2 * i, "%02x", (unsigned)(s->h[i / 4] >> (24 - 8 * (i % 4))) & 0xffu);
}

static void sha1_str(sha1 *s, const char *str)
{
    sha1_add(s, str, strlen(str));
}

/* ---- the benchmark -------------------------------------------------------------- */

typedef struct opts {
    const char *config, *data, *checkpoint, *search;
    int threads, passes;
} opts;

static void usage(void)
{
    fprintf(stderr, "usage: bench_decode --config NAME --checkpoint M.h5 [--threads N] "
                    "[--data DIR] [--passes P] [--search greedy|beam5|both]\n");
    exit(2);
}

static opts parse(int argc, char **argv)
{
    opts o = {.threads = 1, .passes = 3, .search = "both"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h") || !v)
            usage();
        if (!strcmp(a, "--config"))
            o.config = v;
        else if (!strcmp(a, "--data"))
            o.data = v;
        else if (!strcmp(a, "--checkpoint") || !strcmp(a, "--ckpt"))
            o.checkpoint = v;
        else if (!strcmp(a, "--threads"))
            o.threads = atoi(v);
        else if (!strcmp(a, "--passes"))
            o.passes = atoi(v);
        else if (!strcmp(a, "--search"))
            o.search = v; /* one search alone: for profiling */
        else {
            fprintf(stderr, "bench_decode: unknown option %s\n", a);
            usage();
        }
        i++;
    }
    bool search_ok = !strcmp(o.search, "greedy") || !strcmp(o.search, "beam5") ||
                     !strcmp(o.search, "both");
    if (!o.config || !o.checkpoint || o.threads < 1 || o.passes < 1 || o.passes > MAX_PASSES ||
        !search_ok)
        usage();
    return o;
}

/* One search (greedy: beam 0) over the benchmark batches; writes its JSON member. */
static void run(bench_json *j, const char *name, sg_model *m, const sg_batch *bs, int64_t n_sent,
                int64_t beam, int passes)
{
    sg_decode_opts d = sg_decode_opts_default(); /* alpha 0.7, avg */
    d.beam = beam;
    sg_graph *work[2] = {sg_graph_new(), sg_graph_new()};
    BCHECK(work[0] && work[1]);
    d.work[0] = work[0];
    d.work[1] = work[1];
    /* the weights do not change between the calls: their W^T copies are made once, as a
     * serving loop would keep them (sg_decode_opts.weights) */
    sg_graph *weights = sg_graph_new();
    BCHECK(weights);
    d.weights = weights;
    sg_decode_result r[N_BENCH];
    BCHECK(sg_model_decode(m, bs[N_BENCH - 1].src, bs[N_BENCH - 1].src_len, &d, &r[0]) == SG_OK);
    sg_decode_result_free(&r[0]);
    double secs[MAX_PASSES], sps[MAX_PASSES], total = 0;
    uint64_t flops0 = sg_gemm_flops();
    for (int p = 0; p < passes; p++) {
        double t0 = bench_now();
        for (int k = 0; k < N_BENCH; k++)
            BCHECK(sg_model_decode(m, bs[k].src, bs[k].src_len, &d, &r[k]) == SG_OK);
        secs[p] = bench_now() - t0;
        sps[p] = (double)n_sent / secs[p];
        total += secs[p];
        if (p + 1 < passes)
            for (int k = 0; k < N_BENCH; k++)
                sg_decode_result_free(&r[k]);
    }
    /* the last pass's hypotheses: token count and the digest of their JSON */
    double flops = (double)(sg_gemm_flops() - flops0);
    sha1 h;
    sha1_init(&h);
    int64_t n_out = 0;
    bool first = true;
    sha1_str(&h, "[");
    for (int k = 0; k < N_BENCH; k++) {
        for (int64_t b = 0; b < r[k].batch; b++) {
            const sg_hypothesis *hy = sg_decode_best(&r[k], b);
            n_out += hy->len;
            sha1_str(&h, first ? "[" : ", [");
            first = false;
            for (int64_t t = 0; t < hy->len; t++) {
                char num[32];
                snprintf(num, sizeof num, t ? ", %lld" : "%lld", (long long)hy->tokens[t]);
                sha1_str(&h, num);
            }
            sha1_str(&h, "]");
        }
        sg_decode_result_free(&r[k]);
    }
    sha1_str(&h, "]");
    char hex[41];
    sha1_hex(&h, hex);
    hex[12] = 0;
    int outer = bench_json_open(j, name);
    bench_json_nums(j, "pass_seconds", secs, passes, 3);
    bench_json_num(j, "sent_per_s_min", bench_min(sps, passes), 2);
    bench_json_num(j, "sent_per_s_median", bench_median(sps, passes), 2);
    bench_json_int(j, "output_tokens", n_out);
    bench_json_str(j, "sha1_of_ids", hex);
    bench_json_num(j, "gflop_per_pass", flops / (1e9 * passes), 4);
    bench_json_num(j, "gflops", flops / (1e9 * total), 2);
    bench_json_close(j, outer);
    sg_graph_free(weights);
    sg_graph_free(work[0]);
    sg_graph_free(work[1]);
}

int main(int argc, char **argv)
{
    bench_prog = "bench_decode";
    bench_reexec_passive(argv);
    opts o = parse(argc, argv);
    const sg_named_config *nc = sg_named_config_find(o.config);
    if (!nc) {
        fprintf(stderr, "bench_decode: %s\n", sg_last_error());
        return 2;
    }
    BCHECK(sg_set_num_threads(o.threads) == SG_OK);
    char dir[4096], path[4200];
    if (o.data)
        snprintf(dir, sizeof dir, "%s", o.data);
    else
        snprintf(dir, sizeof dir, "%s/%s", getenv("SEQGRAD_DATA") ? getenv("SEQGRAD_DATA") : "data",
                 nc->data);

    /* checkpoint (evaluation mode) and its vocabularies */
    sg_checkpoint meta;
    sg_checkpoint_init(&meta);
    sg_model *m = sg_model_load(o.checkpoint, SG_F32, &meta);
    BCHECK(m);
    sg_model_set_training(m, false);
    BCHECK(meta.vocab[0].n > 0 && meta.vocab[1].n > 0);
    sg_vocab *sv = sg_vocab_from_strings((const char *const *)meta.vocab[0].tokens, meta.vocab[0].n);
    sg_vocab *tv = sg_vocab_from_strings((const char *const *)meta.vocab[1].tokens, meta.vocab[1].n);
    BCHECK(sv && tv);
    sg_text_level level = !strcmp(nc->level, "word") ? SG_LEVEL_WORD : SG_LEVEL_CHAR;
    const char *lv = NULL;
    if (sg_attrs_get_str(&meta.vocab[0].attrs, "level", &lv) == SG_OK && lv &&
        strcmp(lv, nc->level))
        fprintf(stderr, "bench_decode: warning: checkpoint vocabulary level %s, config %s\n", lv,
                nc->level);
    sg_checkpoint_clear(&meta);

    /* the test split, numericalised; the 10 batches */
    sg_text_pairs pairs = {0};
    snprintf(path, sizeof path, "%s/test.tsv", dir);
    BCHECK(sg_tsv_read(path, &pairs) == SG_OK);
    sg_dataset test;
    BCHECK(sg_dataset_build(&test, &pairs, level, sv, tv) == SG_OK);
    sg_text_pairs_free(&pairs);
    sg_batches idx;
    BCHECK(sg_batches_bench(&idx, &test, 64, N_BENCH) == SG_OK);
    sg_batch bs[N_BENCH];
    int64_t n_sent = 0;
    for (int k = 0; k < N_BENCH; k++) {
        BCHECK(sg_batch_make_at(&bs[k], &test, &idx, k) == SG_OK);
        n_sent += bs[k].B;
    }

    bench_json j = {stdout, 0};
    const char *base = strrchr(o.checkpoint, '/');
    fputc('{', stdout);
    bench_json_str(&j, "mode", "decode");
    bench_json_str(&j, "config", o.config);
    bench_json_int(&j, "threads", o.threads);
    bench_json_int(&j, "blas_threads", sg_get_num_threads());
    bench_json_int(&j, "sentences", n_sent);
    bench_json_str(&j, "ckpt", base ? base + 1 : o.checkpoint);
    if (strcmp(o.search, "beam5"))
        run(&j, "greedy", m, bs, n_sent, 0, o.passes);
    if (strcmp(o.search, "greedy"))
        run(&j, "beam5", m, bs, n_sent, 5, o.passes);
    bench_json_num(&j, "peak_rss_mb", bench_peak_rss_mb(), 1);
    fputs("}\n", stdout);

    for (int k = 0; k < N_BENCH; k++)
        sg_batch_free(&bs[k]);
    sg_batches_free(&idx);
    sg_dataset_free(&test);
    sg_vocab_free(sv);
    sg_vocab_free(tv);
    sg_model_free(m);
    return 0;
}
