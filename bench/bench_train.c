/*
 * bench_train.c - training throughput of a named configuration, MODELS.md 10.2.
 *
 *     bench_train --config NAME [--threads N] [--data DIR] [--passes P]
 *     bench_train --config NAME --steps-check S [--threads N] [--data DIR]
 *
 * Batches: bench(24) of the training split (64 sentences each). Warm-up: one step on
 * each of the 4 longest (j = 20..23); then P (3) timed passes over the 24 batches in
 * order, each step = forward + loss (the config's label smoothing) + backward +
 * gradient clipping + Adam update (the config's betas, eps, schedule). Metric: non-pad
 * tgt_out tokens of the 24 batches / pass wall time, min and median over the passes.
 *
 * The last line of stdout is one JSON object with the keys of the PyTorch reference
 * (bench_torch.py train) plus our own: gflop_per_step (GEMM FLOPs of forward + backward
 * per step, counted by the library, averaged over the 24 batches), gflops (those FLOPs
 * / timed wall time), ms_per_step_median/min and final_loss.
 *
 * --steps-check S: memory-growth check instead: S training steps cycling through the
 * 24 batches; resident memory (/proc/self/statm) after S/10 steps (200 for S = 2000;
 * at least one cycle of 24) and after S must stay within 5%. Exit status 1 if it grew
 * more.
 *
 * --data defaults to $SEQGRAD_DATA/<data> (SEQGRAD_DATA defaults to "data"), where
 * <data> is the configuration's data set (dates, gettext-en-fr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "sg_model.h"

#define N_BENCH 24
#define N_WARM 4
#define MAX_PASSES 64

typedef struct opts {
    const char *config, *data;
    int threads, passes;
    long steps_check;
    uint64_t seed;
} opts;

static void usage(void)
{
    fprintf(stderr, "usage: bench_train --config NAME [--threads N] [--data DIR] [--passes P]\n"
                    "                   [--steps-check S] [--seed K]\n"
                    "  NAME: dates-bahdanau, enfr-bahdanau, enfr-luong, enfr-transformer\n");
    exit(2);
}

static opts parse(int argc, char **argv)
{
    opts o = {.threads = 1, .passes = 3, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            usage();
        if (!v) {
            fprintf(stderr, "bench_train: %s needs a value\n", a);
            usage();
        }
        if (!strcmp(a, "--config"))
            o.config = v;
        else if (!strcmp(a, "--data"))
            o.data = v;
        else if (!strcmp(a, "--threads"))
            o.threads = atoi(v);
        else if (!strcmp(a, "--passes"))
            o.passes = atoi(v);
        else if (!strcmp(a, "--steps-check"))
            o.steps_check = atol(v);
        else if (!strcmp(a, "--seed"))
            o.seed = (uint64_t)atoll(v);
        else {
            fprintf(stderr, "bench_train: unknown option %s\n", a);
            usage();
        }
        i++;
    }
    if (!o.config || o.threads < 1 || o.passes < 1 || o.passes > MAX_PASSES || o.steps_check < 0) {
        fprintf(stderr, "bench_train: need --config, --threads >= 1, 1 <= --passes <= %d\n",
                MAX_PASSES);
        usage();
    }
    return o;
}

/* The optimiser of a named configuration: Adam with its betas, eps, weight decay,
 * clipping and schedule (label smoothing carried along). */
static sg_optim *make_optim(sg_model *m, const sg_named_config *nc)
{
    sg_optim_config oc;
    BCHECK(sg_named_config_optim(nc, &oc) == SG_OK);
    sg_optim *opt = sg_optim_new(sg_model_params(m), &oc);
    BCHECK(opt);
    return opt;
}

/* One training step; returns the loss. */
static double train_step(sg_model *m, sg_optim *opt, sg_graph *g, const sg_batch *b, double ls)
{
    sg_graph_reset(g);
    sg_tensor *loss = sg_model_loss_backward(m, g, b, ls, NULL); /* forward + backward */
    BCHECK(loss);
    int rc = sg_optim_step_zero_grad(opt, NULL); /* update, zero the gradients */
    BCHECK(rc == SG_OK || rc == SG_ENUMERIC); /* a NaN gradient skips the update */
    return sg_tensor_get(loss, 0);
}

static int steps_check(const opts *o, sg_model *m, sg_optim *opt, sg_graph *g, sg_batch *bs,
                       double ls)
{
    /* the early reading comes after at least one full cycle, when the graph arena has
     * met the longest batch */
    long early = o->steps_check / 10 > N_BENCH ? o->steps_check / 10 : N_BENCH;
    early = early < o->steps_check ? early : o->steps_check;
    double rss_early = -1, t0 = bench_now(), loss = 0;
    for (long s = 1; s <= o->steps_check; s++) {
        loss = train_step(m, opt, g, &bs[(s - 1) % N_BENCH], ls);
        if (s == early)
            rss_early = bench_rss_mb();
    }
    double rss_end = bench_rss_mb(), growth = 100.0 * (rss_end - rss_early) / rss_early;
    bool ok = growth <= 5.0;
    fprintf(stderr, "bench_train: RSS %.1f MB after %ld steps, %.1f MB after %ld (%+.2f%%): %s\n",
            rss_early, early, rss_end, o->steps_check, growth, ok ? "ok" : "GREW");
    bench_json j = {stdout, 0};
    fputc('{', stdout);
    bench_json_str(&j, "mode", "steps-check");
    bench_json_str(&j, "config", o->config);
    bench_json_int(&j, "threads", o->threads);
    bench_json_int(&j, "steps", o->steps_check);
    bench_json_int(&j, "early_step", early);
    bench_json_num(&j, "rss_early_mb", rss_early, 1);
    bench_json_num(&j, "rss_end_mb", rss_end, 1);
    bench_json_num(&j, "growth_pct", growth, 2);
    bench_json_num(&j, "peak_rss_mb", bench_peak_rss_mb(), 1);
    bench_json_num(&j, "seconds", bench_now() - t0, 1);
    bench_json_num(&j, "final_loss", loss, 4);
    bench_json_bool(&j, "ok", ok);
    fputs("}\n", stdout);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    bench_prog = "bench_train";
    bench_reexec_passive(argv);
    opts o = parse(argc, argv);
    const sg_named_config *nc = sg_named_config_find(o.config);
    if (!nc) {
        fprintf(stderr, "bench_train: %s\n", sg_last_error());
        return 2;
    }
    BCHECK(sg_set_num_threads(o.threads) == SG_OK);
    char dir[4096];
    if (o.data)
        snprintf(dir, sizeof dir, "%s", o.data);
    else
        snprintf(dir, sizeof dir, "%s/%s", getenv("SEQGRAD_DATA") ? getenv("SEQGRAD_DATA") : "data",
                 nc->data);

    /* data: the corpus (vocabularies from the training split) and the 24 batches */
    sg_corpus c;
    sg_text_level level = !strcmp(nc->level, "word") ? SG_LEVEL_WORD : SG_LEVEL_CHAR;
    BCHECK(sg_corpus_load_dir(&c, dir, level, nc->min_freq, nc->max_size) == SG_OK);
    for (int s = 0; s < SG_SPLIT_COUNT; s++) /* only the training ids are read */
        sg_corpus_drop_text(&c, (sg_data_split)s);
    const sg_dataset *train = &c.data[SG_SPLIT_TRAIN];
    sg_batches idx;
    BCHECK(sg_batches_bench(&idx, train, nc->batch_size, N_BENCH) == SG_OK);
    sg_batch bs[N_BENCH];
    int64_t n_tok = 0, n_src = 0, n_slots = 0;
    for (int k = 0; k < N_BENCH; k++) {
        BCHECK(sg_batch_make_at(&bs[k], train, &idx, k) == SG_OK);
        n_tok += bs[k].n_tgt_tokens;
        n_slots += bs[k].B * bs[k].T;
        const int64_t *len = bs[k].src_len->data;
        for (int64_t b = 0; b < bs[k].B; b++)
            n_src += len[b];
    }
    double rss_data = bench_peak_rss_mb();

    /* model (training mode: dropout on) and optimiser */
    sg_model_config mc = nc->model;
    mc.src_vocab_size = sg_vocab_size(c.src_vocab);
    mc.tgt_vocab_size = sg_vocab_size(c.tgt_vocab);
    sg_model *m = sg_model_new(&mc, SG_F32, o.seed);
    BCHECK(m);
    (void)sg_model_tune_malloc(m); /* only a speed-up (train_seq2seq does the same) */
    sg_model_set_training(m, true);
    sg_optim *opt = make_optim(m, nc);
    sg_graph *g = sg_graph_new();
    BCHECK(g);
    double ls = nc->label_smoothing;

    int rc = 0;
    if (o.steps_check > 0) {
        rc = steps_check(&o, m, opt, g, bs, ls);
    } else {
        for (int k = N_BENCH - N_WARM; k < N_BENCH; k++)
            train_step(m, opt, g, &bs[k], ls);
        double secs[MAX_PASSES], tps[MAX_PASSES], loss = 0;
        uint64_t f0 = sg_gemm_flops();
        long faults0 = bench_minor_faults();
        for (int p = 0; p < o.passes; p++) {
            double t0 = bench_now();
            for (int k = 0; k < N_BENCH; k++)
                loss = train_step(m, opt, g, &bs[k], ls);
            secs[p] = bench_now() - t0;
            tps[p] = (double)n_tok / secs[p];
        }
        double flops = (double)(sg_gemm_flops() - f0), total = 0;
        double faults = (double)(bench_minor_faults() - faults0) / (o.passes * N_BENCH);
        for (int p = 0; p < o.passes; p++)
            total += secs[p];
        double med = bench_median(secs, o.passes);
        bench_json j = {stdout, 0};
        fputc('{', stdout);
        bench_json_str(&j, "mode", "train");
        bench_json_str(&j, "config", o.config);
        bench_json_int(&j, "threads", o.threads);
        bench_json_int(&j, "blas_threads", sg_get_num_threads());
        bench_json_int(&j, "batches", N_BENCH);
        bench_json_int(&j, "tgt_tokens_per_pass", n_tok);
        bench_json_int(&j, "src_tokens_per_pass", n_src);
        bench_json_int(&j, "tgt_positions_per_pass", n_slots); /* with padding */
        bench_json_nums(&j, "pass_seconds", secs, o.passes, 3);
        bench_json_num(&j, "tok_per_s_min", bench_min(tps, o.passes), 1);
        bench_json_num(&j, "tok_per_s_median", bench_median(tps, o.passes), 1);
        bench_json_num(&j, "tok_per_s_max", bench_max(tps, o.passes), 1);
        bench_json_num(&j, "ms_per_batch_median", 1000 * med / N_BENCH, 1);
        bench_json_num(&j, "peak_rss_mb", bench_peak_rss_mb(), 1);
        bench_json_num(&j, "rss_after_data_mb", rss_data, 1);
        bench_json_int(&j, "parameters", sg_params_numel(sg_model_params(m)));
        /* our extras */
        bench_json_num(&j, "ms_per_step_median", 1000 * med / N_BENCH, 2);
        bench_json_num(&j, "ms_per_step_min", 1000 * bench_min(secs, o.passes) / N_BENCH, 2);
        bench_json_num(&j, "page_faults_per_step", faults, 0); /* fresh memory touched */
        bench_json_num(&j, "gflop_per_step", flops / (1e9 * o.passes * N_BENCH), 4);
        bench_json_num(&j, "gflops", flops / (1e9 * total), 2);
        bench_json_num(&j, "final_loss", loss, 4);
        fputs("}\n", stdout);
    }

    sg_graph_free(g);
    sg_optim_free(opt);
    sg_model_free(m);
    for (int k = 0; k < N_BENCH; k++)
        sg_batch_free(&bs[k]);
    sg_batches_free(&idx);
    sg_corpus_free(&c);
    return rc;
}
