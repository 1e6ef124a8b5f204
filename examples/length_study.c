/*
 * length_study - does attention help as sequences get longer?
 *
 * Trains small models of the zoo on the built-in reverse task ("c a f" -> "f a c") with
 * sources of min-len .. max-len symbols, each for the same number of seconds, then decodes
 * held-out sentences greedily and reports exact-match and token accuracy bucketed by source
 * length: a markdown table on stdout and an SVG chart (accuracy vs length, one line per
 * model). The models:
 *
 *   seq2seq      vanilla encoder-decoder (LSTM), source fed as given
 *   seq2seq-rev  the same with reverse_source on (Sutskever et al.)
 *   bahdanau     bidirectional GRU encoder + additive attention
 *
 * On the reverse task, feeding the source as given is the FAVOURABLE order for a vanilla
 * model: the first target symbol is the last one read, like a stack. reverse_source turns
 * the task into a copy, where the first target symbol is the one read longest ago. Both
 * must squeeze the whole source into one fixed-size state; attention need not.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "progress.h"
#include "s2s.h"
#include "svg.h"

enum { MODEL_SEQ2SEQ, MODEL_SEQ2SEQ_REV, MODEL_BAHDANAU, MODEL_COUNT };

static const char *const model_names[MODEL_COUNT] = {"seq2seq", "seq2seq-rev", "bahdanau"};
static const char *const model_labels[MODEL_COUNT] = {
    "seq2seq (LSTM, source as given)",
    "seq2seq (LSTM, reverse_source on)",
    "bahdanau (attention)",
};

typedef struct args {
    const char *models, *svg;
    int min_len, max_len, symbols, n_train, n_test, bucket;
    int emb, hidden, attn_hidden, attn_dim, batch, threads, seed;
    double budget, lr, clip;
    bool quiet;
} args;

static void defaults(args *a)
{
    memset(a, 0, sizeof *a);
    a->models = "seq2seq,seq2seq-rev,bahdanau";
    a->svg = "out/length_study.svg";
    a->min_len = 6;
    a->max_len = 40;
    a->symbols = 10;
    a->n_train = 50000;
    a->n_test = 1800;
    a->bucket = 5;
    a->emb = 32;
    a->hidden = 128;
    a->attn_hidden = 64;
    a->attn_dim = 32;
    a->batch = 32;
    a->threads = 2;
    a->seed = 1;
    a->budget = 90;
    a->lr = 3e-3;
    a->clip = 1.0;
}

/* Results of one model: per bucket, sentences, exact matches, token hits and positions. */
typedef struct result {
    int model;
    int64_t params, steps;
    double train_loss, seconds;
    int64_t *n, *exact, *tok_hit, *tok_all;
} result;

/* Parses the comma-separated model list into want[]; SG_EINVAL naming a bad entry. */
static int parse_models(const char *s, bool want[MODEL_COUNT])
{
    memset(want, 0, sizeof(bool) * MODEL_COUNT);
    int count = 0;
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, ",");
        int k = 0;
        while (k < MODEL_COUNT && !(strlen(model_names[k]) == len && !strncmp(p, model_names[k], len)))
            k++;
        if (k == MODEL_COUNT)
            return sgx_error(SG_EINVAL, "--models: unknown model '%.*s' (known: seq2seq, "
                                        "seq2seq-rev, bahdanau)", (int)len, p);
        count += !want[k];
        want[k] = true;
        p += len;
        if (*p == ',')
            p++;
    }
    if (!count)
        return sgx_error(SG_EINVAL, "--models: the list is empty");
    return SG_OK;
}

/* Checks option values a parser cannot: ranges and their relations. */
static int check_args(const args *a)
{
#define NEED(cond, ...)                                                                     \
    do {                                                                                    \
        if (!(cond))                                                                        \
            return sgx_error(SG_EINVAL, __VA_ARGS__);                                       \
    } while (0)
    NEED(a->min_len >= 1, "--min-len must be >= 1 (got %d)", a->min_len);
    NEED(a->max_len >= a->min_len && a->max_len <= 200,
         "--max-len must be in [--min-len, 200] (got %d, min-len %d)", a->max_len, a->min_len);
    NEED(a->symbols >= 2 && a->symbols <= 62, "--symbols must be in [2, 62] (got %d)", a->symbols);
    NEED(a->n_train >= 1, "--train must be >= 1 (got %d)", a->n_train);
    NEED(a->n_test >= 1, "--test must be >= 1 (got %d)", a->n_test);
    NEED(a->bucket >= 1, "--bucket must be >= 1 (got %d)", a->bucket);
    NEED(a->emb >= 1 && a->hidden >= 1 && a->attn_hidden >= 1 && a->attn_dim >= 1,
         "--emb, --hidden, --attn-hidden and --attn-dim must be >= 1 (got %d, %d, %d, %d)",
         a->emb, a->hidden, a->attn_hidden, a->attn_dim);
    NEED(a->batch >= 1, "--batch must be >= 1 (got %d)", a->batch);
    NEED(a->threads >= 0, "--threads must be >= 0 (got %d)", a->threads);
    NEED(a->budget > 0, "--budget must be > 0 seconds (got %g)", a->budget);
    NEED(a->lr > 0, "--lr must be > 0 (got %g)", a->lr);
    NEED(a->clip >= 0, "--clip must be >= 0 (got %g)", a->clip);
    NEED(a->svg && *a->svg, "--svg must name a file");
#undef NEED
    return SG_OK;
}

static int n_buckets(const args *a)
{
    return (a->max_len - a->min_len) / a->bucket + 1;
}

/* Symbols of a space-separated line (the task's sources and targets have no other spaces). */
static int count_tokens(const char *s)
{
    int n = 0;
    for (bool in = false; *s; s++) {
        if (*s != ' ' && !in)
            n++;
        in = *s != ' ';
    }
    return n;
}

/* Positions where hyp and ref hold the same symbol; *all gets the longer length, so missing
 * and extra symbols both count as errors. */
static int64_t token_hits(const char *hyp, const char *ref, int64_t *all)
{
    int64_t hit = 0, nh = 0, nr = 0;
    const char *h = hyp, *r = ref;
    for (;;) {
        h += strspn(h, " ");
        r += strspn(r, " ");
        size_t lh = strcspn(h, " "), lr = strcspn(r, " ");
        if (!lh && !lr)
            break;
        nh += lh > 0;
        nr += lr > 0;
        hit += lh && lr && lh == lr && !strncmp(h, r, lh);
        h += lh;
        r += lr;
    }
    *all = nh > nr ? nh : nr;
    return hit;
}

static sg_model_config model_config(const args *a, int model, const sg_corpus *c)
{
    sg_model_config m;
    sg_model_config_defaults(&m, model == MODEL_BAHDANAU ? SG_ARCH_BAHDANAU : SG_ARCH_SEQ2SEQ);
    m.src_vocab_size = sg_vocab_size(c->src_vocab);
    m.tgt_vocab_size = sg_vocab_size(c->tgt_vocab);
    m.emb_dim = a->emb;
    m.hidden_dim = model == MODEL_BAHDANAU ? a->attn_hidden : a->hidden;
    m.attn_dim = a->attn_dim;
    m.num_layers = 1;
    snprintf(m.cell, sizeof m.cell, "lstm");
    m.reverse_source = model == MODEL_SEQ2SEQ_REV;
    m.feed_context = 0;
    m.dropout = 0;
    return m;
}

/* Trains one model for a->budget seconds, then evaluates it on the test split by bucket. */
static void run_model(const args *a, int model, const sg_corpus *corpus, result *r)
{
    sg_model_config mc = model_config(a, model, corpus);
    CHECK(sg_model_config_validate(&mc) == SG_OK);
    sg_model *m = sg_model_new(&mc, SG_F32, (uint64_t)a->seed);
    CHECK(m);
    sg_rng_seed(sg_model_rng(m), (uint64_t)a->seed * 7919u + 1);
    sg_optim_config oc = sg_optim_config_default(SG_OPTIM_ADAM);
    oc.lr = a->lr;
    oc.clip_norm = a->clip;
    sg_optim *opt = sg_optim_new(sg_model_params(m), &oc);
    CHECK(opt);
    r->model = model;
    r->params = sg_params_numel(sg_model_params(m));
    printf("== %s: %lld parameters, %.0f s of training\n", model_labels[model],
           (long long)r->params, a->budget);
    fflush(stdout);

    const sg_dataset *train = &corpus->data[SG_SPLIT_TRAIN];
    sg_batches bs;
    CHECK(sg_batches_length_sorted(&bs, train, a->batch, false) == SG_OK);
    sg_graph *g = sg_graph_new();
    CHECK(g);
    sg_model_set_training(m, true);
    double t0 = sgx_now(), loss_sum = 0;
    int64_t tok_sum = 0, epoch = 0;
    bool stop = false;
    sgx_progress pr = {0};
    while (!stop) {
        epoch++;
        CHECK(sg_batches_shuffle(&bs, sg_model_rng(m)) == SG_OK);
        if (!a->quiet) {
            memset(&pr, 0, sizeof pr);
            sgx_progress_begin(&pr, stderr, (int)epoch, 0, bs.n_batches);
        }
        loss_sum = 0;
        tok_sum = 0;
        for (int64_t k = 0; k < bs.n_batches; k++) {
            sg_batch b;
            CHECK(sg_batch_make_at(&b, train, &bs, k) == SG_OK);
            sg_graph_reset(g);
            int64_t ntok = 0;
            sg_tensor *loss = sg_model_loss_backward(m, g, &b, 0.0, &ntok);
            CHECK(loss); /* forward and backward */
            int rc = sg_optim_step_zero_grad(opt, NULL); /* update, zero the gradients */
            CHECK(rc == SG_OK || rc == SG_ENUMERIC); /* a NaN gradient skips the update */
            double l = sg_tensor_get(loss, 0);
            loss_sum += l * (double)ntok;
            tok_sum += ntok;
            r->steps++;
            if (!a->quiet)
                sgx_progress_update(&pr, k + 1, l, ntok);
            sg_batch_free(&b);
            if (sgx_now() - t0 >= a->budget) {
                stop = true;
                break;
            }
        }
        if (!a->quiet)
            sgx_progress_finish(&pr);
    }
    r->seconds = sgx_now() - t0;
    r->train_loss = tok_sum ? loss_sum / (double)tok_sum : NAN;
    sg_graph_free(g);
    sg_batches_free(&bs);

    double t_eval = sgx_now();
    sgx_eval ev;
    const sg_text_pairs *raw = &corpus->raw[SG_SPLIT_TEST];
    CHECK(sgx_evaluate(m, &corpus->data[SG_SPLIT_TEST], raw, corpus->tgt_vocab, SG_LEVEL_WORD,
                       128, true, NULL, true, &ev) == SG_OK);
    int nb = n_buckets(a);
    r->n = calloc((size_t)nb, sizeof *r->n);
    r->exact = calloc((size_t)nb, sizeof *r->exact);
    r->tok_hit = calloc((size_t)nb, sizeof *r->tok_hit);
    r->tok_all = calloc((size_t)nb, sizeof *r->tok_all);
    CHECK_HINT(r->n && r->exact && r->tok_hit && r->tok_all, "out of memory");
    for (int64_t i = 0; i < raw->n; i++) {
        int k = (count_tokens(raw->src[i]) - a->min_len) / a->bucket;
        if (k < 0 || k >= nb)
            continue;
        int64_t all;
        r->n[k]++;
        r->exact[k] += !strcmp(ev.hyps[i], raw->tgt[i]);
        r->tok_hit[k] += token_hits(ev.hyps[i], raw->tgt[i], &all);
        r->tok_all[k] += all;
    }
    printf("   %lld steps in %.0f s (%lld epochs begun), last-epoch train loss %.4f; test: loss "
           "%.4f, exact match %.1f%% (evaluated in %.0f s)\n",
           (long long)r->steps, r->seconds, (long long)epoch, r->train_loss, ev.loss, ev.exact,
           sgx_now() - t_eval);
    fflush(stdout);
    sgx_eval_free(&ev);
    sg_optim_free(opt);
    sg_model_free(m);
}

static double pct(int64_t a, int64_t b)
{
    return b ? 100.0 * (double)a / (double)b : NAN;
}

static void bucket_label(const args *a, int k, char *buf, size_t n)
{
    int lo = a->min_len + k * a->bucket, hi = lo + a->bucket - 1;
    if (hi > a->max_len)
        hi = a->max_len;
    if (lo == hi)
        snprintf(buf, n, "%d", lo);
    else
        snprintf(buf, n, "%d-%d", lo, hi);
}

static void print_table(const args *a, const result *rs, int nr)
{
    int nb = n_buckets(a);
    printf("\nExact match %% (token accuracy %%) by source length, greedy decoding:\n\n");
    printf("| source length | sentences |");
    for (int j = 0; j < nr; j++)
        printf(" %s |", model_labels[rs[j].model]);
    printf("\n|---|---|");
    for (int j = 0; j < nr; j++)
        printf("---|");
    printf("\n");
    for (int k = 0; k < nb; k++) {
        char lab[32];
        bucket_label(a, k, lab, sizeof lab);
        printf("| %s | %lld |", lab, (long long)rs[0].n[k]);
        for (int j = 0; j < nr; j++)
            printf(" %.1f (%.1f) |", pct(rs[j].exact[k], rs[j].n[k]),
                   pct(rs[j].tok_hit[k], rs[j].tok_all[k]));
        printf("\n");
    }
    printf("| parameters | |");
    for (int j = 0; j < nr; j++)
        printf(" %lld |", (long long)rs[j].params);
    printf("\n| training steps | |");
    for (int j = 0; j < nr; j++)
        printf(" %lld |", (long long)rs[j].steps);
    printf("\n");
}

/* Two line charts: exact match and token accuracy against the bucket's mean length. */
static void write_svg(const args *a, const result *rs, int nr)
{
    int nb = n_buckets(a);
    double *x = malloc(sizeof *x * (size_t)nb);
    double *ys = malloc(sizeof *ys * (size_t)(2 * nr * nb));
    sgx_series *se = malloc(sizeof *se * (size_t)(2 * nr));
    CHECK_HINT(x && ys && se, "out of memory");
    for (int k = 0; k < nb; k++) {
        int lo = a->min_len + k * a->bucket, hi = lo + a->bucket - 1;
        x[k] = 0.5 * (lo + (hi > a->max_len ? a->max_len : hi));
    }
    for (int c = 0; c < 2; c++)
        for (int j = 0; j < nr; j++) {
            double *y = ys + (size_t)(c * nr + j) * (size_t)nb;
            for (int k = 0; k < nb; k++)
                y[k] = c == 0 ? pct(rs[j].exact[k], rs[j].n[k])
                              : pct(rs[j].tok_hit[k], rs[j].tok_all[k]);
            se[c * nr + j] = (sgx_series){model_labels[rs[j].model], x, y, nb};
        }
    char t0[160], t1[160];
    snprintf(t0, sizeof t0, "reverse task: exact match vs source length (%.0f s of training each)",
             a->budget);
    snprintf(t1, sizeof t1, "reverse task: token accuracy vs source length");
    sgx_chart ch[2] = {
        {.title = t0, .xlabel = "source length (symbols, bucket middle)",
         .ylabel = "exact match %", .series = se, .n_series = nr, .y_min = 0, .y_max = 100},
        {.title = t1, .xlabel = "source length (symbols, bucket middle)",
         .ylabel = "token accuracy %", .series = se + nr, .n_series = nr, .y_min = 0,
         .y_max = 100},
    };
    sgx_mkdir_parent(a->svg);
    CHECK(sgx_svg_charts(a->svg, ch, 2) == SG_OK);
    free(x);
    free(ys);
    free(se);
}

int main(int argc, char **argv)
{
    sgx_openmp_env(argv);
    args a;
    defaults(&a);
    sgx_option o[] = {
        SGX_SECTION("Task"),
        SGX_INT("min-len", &a.min_len, "shortest source (symbols)"),
        SGX_INT("max-len", &a.max_len, "longest source (symbols)"),
        SGX_INT("symbols", &a.symbols, "alphabet size (2..62)"),
        SGX_INT("train", &a.n_train, "training pairs"),
        SGX_INT("test", &a.n_test, "held-out test pairs"),
        SGX_INT("bucket", &a.bucket, "width of a length bucket in the report"),
        SGX_SECTION("Models"),
        SGX_STRING("models", &a.models, "comma-separated: seq2seq, seq2seq-rev, bahdanau"),
        SGX_INT("emb", &a.emb, "embedding size"),
        SGX_INT("hidden", &a.hidden, "seq2seq: hidden units"),
        SGX_INT("attn-hidden", &a.attn_hidden, "bahdanau: hidden units (per encoder direction)"),
        SGX_INT("attn-dim", &a.attn_dim, "bahdanau: attention size"),
        SGX_SECTION("Training"),
        SGX_DOUBLE("budget", &a.budget, "training seconds per model"),
        SGX_INT("batch", &a.batch, "sentences per batch"),
        SGX_DOUBLE("lr", &a.lr, "Adam learning rate"),
        SGX_DOUBLE("clip", &a.clip, "gradient-norm clipping (0: off)"),
        SGX_INT("seed", &a.seed, "seed of data, initialisation and shuffling"),
        SGX_INT("threads", &a.threads, "compute threads (0: library default)"),
        SGX_SECTION("Output"),
        SGX_STRING("svg", &a.svg, "chart of accuracy vs length"),
        SGX_BOOL("quiet", &a.quiet, "no progress line"),
        SGX_END,
    };
    int npos = sgx_options_parse_or_exit(
        o, argc, argv, "length_study [options]",
        "Trains vanilla seq2seq (source as given and reversed) and Bahdanau attention on the "
        "built-in reverse task for the same number of seconds each, then reports accuracy "
        "by source length (markdown table) and writes an SVG chart.");
    bool want[MODEL_COUNT];
    int rc = npos > 0 ? sgx_error(SG_EINVAL, "unexpected argument '%s'", argv[1]) : check_args(&a);
    if (rc == SG_OK)
        rc = parse_models(a.models, want);
    if (rc != SG_OK) {
        fprintf(stderr, "length_study: %s\ntry 'length_study --help'\n", sgx_last_error());
        return 2;
    }
    if (a.threads > 0)
        CHECK(sg_set_num_threads(a.threads) == SG_OK);

    sg_text_pairs sp[SG_SPLIT_COUNT] = {{0}};
    CHECK_HINT(sg_task_sequences(sp, SG_SEQ_REVERSE, (uint64_t)a.seed, a.n_train, 1, a.n_test,
                                 a.min_len, a.max_len, a.symbols) == SG_OK,
               "ask for fewer pairs, longer sequences or more symbols");
    sg_corpus corpus;
    CHECK(sg_corpus_from_pairs(&corpus, sp, SG_LEVEL_WORD, 1, 8000, NULL, NULL) == SG_OK);

    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("length study, %s: reverse task, %d..%d symbols from an alphabet of %d, %lld training "
           "/ %lld test pairs; emb %d, seq2seq hidden %d, bahdanau hidden %d attn %d, batch %d, Adam lr %g, %.0f s per "
           "model, %d thread(s)\n",
           date, a.min_len, a.max_len, a.symbols, (long long)corpus.data[SG_SPLIT_TRAIN].n,
           (long long)corpus.data[SG_SPLIT_TEST].n, a.emb, a.hidden, a.attn_hidden, a.attn_dim, a.batch, a.lr,
           a.budget, sg_get_num_threads());
    printf("note: for the reverse task the source as given is the easy order for a vanilla "
           "model (the first output is the last symbol read); reverse_source turns it into a "
           "copy (the first output is the symbol read longest ago).\n");

    result rs[MODEL_COUNT];
    memset(rs, 0, sizeof rs);
    int nr = 0;
    for (int k = 0; k < MODEL_COUNT; k++)
        if (want[k])
            run_model(&a, k, &corpus, &rs[nr++]);
    print_table(&a, rs, nr);
    write_svg(&a, rs, nr);
    printf("\nchart: %s\n", a.svg);
    for (int j = 0; j < nr; j++) {
        free(rs[j].n);
        free(rs[j].exact);
        free(rs[j].tok_hit);
        free(rs[j].tok_all);
    }
    sg_corpus_free(&corpus);
    return 0;
}
