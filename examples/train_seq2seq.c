/*
 * train_seq2seq - train a model of the zoo and show what it learned.
 *
 * With no arguments: a Bahdanau model learns the built-in dates task (human-readable
 * dates -> ISO dates, generated in C), validates every epoch, keeps the best checkpoint,
 * then prints a few translations and writes an attention heatmap. Everything else is an
 * option (--help); `--config NAME` picks a named configuration of MODELS.md 10.1 which
 * explicit options override.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "curve.h"
#include "progress.h"
#include "s2s.h"

typedef struct args {
    const char *config, *data, *train, *valid, *test, *task;
    const char *model, *attn, *local, *cell, *tokens, *optim, *schedule;
    const char *save, *resume, *log, *attention;
    int layers, hidden, emb, attn_dim, window, heads, d_model, ff, enc_layers, dec_layers;
    int epochs, batch, threads, warmup, show, min_freq, max_size, keep_mb;
    double lr, clip, label_smoothing, dropout, time_budget, target;
    int seed;
    bool reverse_source, feed_context, input_feed, norm_first, tie, quiet;
} args;

static sgx_option *options(args *a)
{
    static sgx_option o[64];
    sgx_option t[] = {
        SGX_SECTION("Task and data"),
        SGX_STRING("config", &a->config, "named configuration (MODELS.md 10.1): dates-bahdanau, "
                                         "enfr-bahdanau, enfr-luong, enfr-transformer"),
        SGX_STRING("data", &a->data, "folder with train.tsv, valid.tsv (and test.tsv)"),
        SGX_STRING("train", &a->train, "training pairs (TSV source<TAB>target)"),
        SGX_STRING("valid", &a->valid, "validation pairs (TSV)"),
        SGX_STRING("test", &a->test, "test pairs (TSV) for a final report"),
        SGX_CHOICE("task", &a->task, "dates|reverse|copy|sort",
                   "built-in task when no data is given"),
        SGX_CHOICE("tokens", &a->tokens, "word|char", "tokenisation level"),
        SGX_INT("min-freq", &a->min_freq, "vocabulary: minimum count (0: level default)"),
        SGX_INT("max-size", &a->max_size, "vocabulary: maximum size, specials included"),
        SGX_SECTION("Model"),
        SGX_CHOICE("model", &a->model, "seq2seq|bahdanau|luong|transformer", "architecture"),
        SGX_CHOICE("cell", &a->cell, "lstm|gru", "seq2seq: recurrent cell"),
        SGX_INT("layers", &a->layers, "seq2seq/luong: layers"),
        SGX_INT("emb", &a->emb, "embedding size"),
        SGX_INT("hidden", &a->hidden, "hidden units (per direction for the encoder)"),
        SGX_INT("attn-dim", &a->attn_dim, "bahdanau/luong concat/local-p: attention size"),
        SGX_CHOICE("attn", &a->attn, "dot|general|concat", "luong: score"),
        SGX_CHOICE("local", &a->local, "none|m|p", "luong: local attention (none: global)"),
        SGX_INT("window", &a->window, "luong local: window half-width D"),
        SGX_BOOL("input-feed", &a->input_feed, "luong: input feeding"),
        SGX_BOOL("reverse-source", &a->reverse_source, "seq2seq: reverse the source"),
        SGX_BOOL("feed-context", &a->feed_context, "seq2seq: Cho's context to every step"),
        SGX_INT("d-model", &a->d_model, "transformer: model width"),
        SGX_INT("heads", &a->heads, "transformer: attention heads"),
        SGX_INT("ff", &a->ff, "transformer: feed-forward width"),
        SGX_INT("enc-layers", &a->enc_layers, "transformer: encoder layers"),
        SGX_INT("dec-layers", &a->dec_layers, "transformer: decoder layers"),
        SGX_BOOL("pre-ln", &a->norm_first, "transformer: pre-LayerNorm"),
        SGX_BOOL("tie", &a->tie, "transformer: tie generator and target embedding"),
        SGX_DOUBLE("dropout", &a->dropout, "dropout probability"),
        SGX_SECTION("Training"),
        SGX_INT("epochs", &a->epochs, "maximum epochs"),
        SGX_DOUBLE("time-budget", &a->time_budget, "stop training after this many seconds "
                                                   "(0: none); the best checkpoint is kept"),
        SGX_DOUBLE("target", &a->target, "stop when the validation score reaches this "
                                         "(exact match % for char level, BLEU for word; 0: off)"),
        SGX_INT("batch", &a->batch, "sentences per batch"),
        SGX_CHOICE("optim", &a->optim, "adam|adamw|sgd", "optimiser"),
        SGX_DOUBLE("lr", &a->lr, "learning rate"),
        SGX_CHOICE("schedule", &a->schedule, "constant|inverse_sqrt", "learning-rate schedule"),
        SGX_INT("warmup", &a->warmup, "inverse_sqrt warm-up steps"),
        SGX_DOUBLE("clip", &a->clip, "gradient-norm clipping (0: off)"),
        SGX_DOUBLE("label-smoothing", &a->label_smoothing, "label smoothing"),
        SGX_INT("seed", &a->seed, "seed of initialisation, shuffling and dropout"),
        SGX_INT("threads", &a->threads, "compute threads (0: SG_NUM_THREADS, else one per core)"),
        SGX_INT("keep-mb", &a->keep_mb, "MiB of activations a step keeps for backward rather "
                                        "than making them again (transformer feed-forward "
                                        "layers; 0: the least memory)"),
        SGX_SECTION("Output"),
        SGX_STRING("save", &a->save, "best checkpoint (HDF5)"),
        SGX_STRING("resume", &a->resume, "continue training from a checkpoint saved by --save"),
        SGX_STRING("log", &a->log, "learning curve CSV (an SVG plot is written beside it)"),
        SGX_STRING("attention", &a->attention, "attention heatmap SVG of a few examples"),
        SGX_INT("show", &a->show, "translations to print at the end"),
        SGX_BOOL("quiet", &a->quiet, "no progress line"),
        SGX_END,
    };
    memcpy(o, t, sizeof t);
    return o;
}

static void defaults(args *a)
{
    memset(a, 0, sizeof *a);
    a->task = "dates";
    a->tokens = "char";
    a->model = "bahdanau";
    a->cell = "lstm";
    a->attn = "general";
    a->local = "none";
    a->optim = "adam";
    a->schedule = "constant";
    a->layers = 2;
    a->emb = 64;
    a->hidden = 128;
    a->attn_dim = 128;
    a->window = 10;
    a->input_feed = true;
    a->reverse_source = true;
    a->d_model = 256;
    a->heads = 4;
    a->ff = 1024;
    a->enc_layers = 3;
    a->dec_layers = 3;
    a->epochs = 40;
    a->time_budget = 0;
    a->batch = 64;
    a->lr = 1e-3;
    a->warmup = 1000;
    a->clip = 1.0;
    a->seed = 1;
    a->threads = 0;
    a->keep_mb = (int)(SG_GRAPH_KEEP_DEFAULT >> 20);
    a->save = "out/model.h5";
    a->attention = "out/attention.svg";
    a->log = "out/curve.csv";
    a->show = 5;
}

/* Applies a named configuration to the options the user did not give. */
static void apply_named(args *a, sgx_option *o, const sg_named_config *nc)
{
#define UNLESS(name, stmt)                                                                  \
    do {                                                                                    \
        if (!sgx_option_given(o, name))                                                     \
            stmt;                                                                           \
    } while (0)
    const sg_model_config *m = &nc->model;
    UNLESS("tokens", a->tokens = nc->level);
    UNLESS("min-freq", a->min_freq = (int)nc->min_freq);
    UNLESS("max-size", a->max_size = (int)nc->max_size);
    UNLESS("batch", a->batch = (int)nc->batch_size);
    UNLESS("lr", a->lr = nc->lr);
    UNLESS("clip", a->clip = nc->clip_norm);
    UNLESS("label-smoothing", a->label_smoothing = nc->label_smoothing);
    UNLESS("schedule", a->schedule = nc->schedule);
    UNLESS("warmup", a->warmup = (int)nc->warmup_steps);
    UNLESS("model", a->model = sg_arch_name(m->arch));
    UNLESS("emb", a->emb = (int)m->emb_dim);
    UNLESS("hidden", a->hidden = (int)m->hidden_dim);
    UNLESS("attn-dim", a->attn_dim = (int)m->attn_dim);
    UNLESS("layers", a->layers = (int)m->num_layers);
    UNLESS("attn", a->attn = m->score);
    UNLESS("d-model", a->d_model = (int)m->d_model);
    UNLESS("heads", a->heads = (int)m->nhead);
    UNLESS("ff", a->ff = (int)m->dim_feedforward);
    UNLESS("enc-layers", a->enc_layers = (int)m->num_encoder_layers);
    UNLESS("dec-layers", a->dec_layers = (int)m->num_decoder_layers);
    UNLESS("dropout", a->dropout = m->dropout);
#undef UNLESS
}

static sg_model_config model_config(const args *a, const sg_corpus *c)
{
    sg_model_config m;
    int arch = sg_arch_parse(a->model);
    sg_model_config_defaults(&m, (sg_arch)arch);
    m.src_vocab_size = sg_vocab_size(c->src_vocab);
    m.tgt_vocab_size = sg_vocab_size(c->tgt_vocab);
    m.emb_dim = a->emb;
    m.hidden_dim = a->hidden;
    m.attn_dim = a->attn_dim;
    m.num_layers = arch == SG_ARCH_BAHDANAU ? 1 : a->layers;
    snprintf(m.cell, sizeof m.cell, "%s", a->cell);
    m.reverse_source = a->reverse_source;
    m.feed_context = a->feed_context;
    snprintf(m.score, sizeof m.score, "%s", a->attn);
    snprintf(m.attn_type, sizeof m.attn_type, "%s",
             !strcmp(a->local, "m") ? "local-m" : !strcmp(a->local, "p") ? "local-p" : "global");
    m.local_window = a->window;
    m.input_feed = a->input_feed;
    m.d_model = a->d_model;
    m.nhead = a->heads;
    m.dim_feedforward = a->ff;
    m.num_encoder_layers = a->enc_layers;
    m.num_decoder_layers = a->dec_layers;
    m.norm_first = a->norm_first;
    m.tie_embeddings = a->tie;
    m.dropout = a->dropout;
    return m;
}

/* Reads the corpus: --data DIR, --train/--valid(/--test), or a built-in task. With
 * vocabularies (resuming) they are reused instead of built. */
static int load_corpus(const args *a, sg_corpus *c, const sg_vocab *sv, const sg_vocab *tv)
{
    sg_text_level level = !strcmp(a->tokens, "word") ? SG_LEVEL_WORD : SG_LEVEL_CHAR;
    int64_t min_freq = a->min_freq > 0 ? a->min_freq : level == SG_LEVEL_WORD ? 2 : 1;
    int64_t max_size = a->max_size > 0 ? a->max_size : 8000;
    sg_text_pairs sp[SG_SPLIT_COUNT] = {{0}};
    int rc = SG_OK;
    if (a->data || a->train) {
        char paths[SG_SPLIT_COUNT][4096];
        const char *names[SG_SPLIT_COUNT] = {"train", "valid", "test"};
        const char *given[SG_SPLIT_COUNT] = {a->train, a->valid, a->test};
        for (int s = 0; s < SG_SPLIT_COUNT; s++) {
            if (given[s])
                snprintf(paths[s], sizeof paths[s], "%s", given[s]);
            else if (a->data)
                snprintf(paths[s], sizeof paths[s], "%s/%s.tsv", a->data, names[s]);
            else
                paths[s][0] = 0;
            struct stat st;
            bool optional = s == SG_SPLIT_TEST;
            if (!paths[s][0] || (optional && !given[s] && stat(paths[s], &st) != 0)) {
                if (s == SG_SPLIT_VALID)
                    return sgx_error(SG_EINVAL, "no validation data: give --valid or --data");
                continue;
            }
            if ((rc = sg_tsv_read(paths[s], &sp[s])) != SG_OK)
                break;
        }
    } else if (!strcmp(a->task, "dates")) {
        rc = sg_task_dates(sp, (uint64_t)a->seed, 20000, 1000, 1000);
    } else {
        sg_seq_task t = !strcmp(a->task, "reverse") ? SG_SEQ_REVERSE
                        : !strcmp(a->task, "copy")  ? SG_SEQ_COPY
                                                    : SG_SEQ_SORT;
        rc = sg_task_sequences(sp, t, (uint64_t)a->seed, 20000, 1000, 1000, 5, 25, 20);
    }
    if (rc == SG_OK)
        rc = sg_corpus_from_pairs(c, sp, level, min_freq, max_size, sv, tv);
    for (int s = 0; s < SG_SPLIT_COUNT; s++)
        sg_text_pairs_free(&sp[s]);
    return rc;
}

/* The validation score that selects the best checkpoint: exact match for char level,
 * BLEU for word level. */
static double score_of(const sgx_eval *e, sg_text_level level)
{
    return level == SG_LEVEL_CHAR ? e->exact : e->bleu;
}

static int save(const char *path, sg_model *m, const sg_corpus *c, const sg_optim *opt,
                int64_t epoch, int64_t step, double best, double seconds, const char *config)
{
    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    const char *level = sg_text_level_name(c->level);
    int rc = SG_OK;
    const sg_vocab *v[2] = {c->src_vocab, c->tgt_vocab};
    for (int k = 0; k < 2 && rc == SG_OK; k++) {
        rc = sg_ckpt_vocab_set(&ck.vocab[k], sg_vocab_size(v[k]), sg_vocab_strings(v[k]));
        if (rc == SG_OK)
            rc = sg_attrs_set_str(&ck.vocab[k].attrs, "level", level);
        if (rc == SG_OK)
            rc = sg_attrs_set_int(&ck.vocab[k].attrs, "min_freq", c->min_freq);
        if (rc == SG_OK)
            rc = sg_attrs_set_int(&ck.vocab[k].attrs, "max_size", c->max_size);
    }
    ck.has_train = true;
    ck.has_train_state = true;
    ck.epoch = epoch;
    ck.step = step;
    ck.best_valid = best;
    ck.rng = *sg_model_rng(m);
    if (rc == SG_OK)
        rc = sg_attrs_set_str(&ck.train, "config", config ? config : "custom");
    if (rc == SG_OK)
        rc = sg_attrs_set_int(&ck.train, "steps", step);
    if (rc == SG_OK)
        rc = sg_attrs_set_real(&ck.train, "train_seconds", seconds);
    if (rc == SG_OK)
        rc = sg_model_save(path, m, &ck, opt);
    sg_checkpoint_clear(&ck);
    return rc;
}

int main(int argc, char **argv)
{
    sgx_openmp_env(argv);
    args a;
    defaults(&a);
    sgx_option *o = options(&a);
    sgx_options_parse_or_exit(o, argc, argv, "train_seq2seq [options]",
                              "Trains a sequence-to-sequence model. With no options: a Bahdanau "
                              "model on the built-in dates task.");
    const sg_named_config *nc = NULL;
    if (a.config) {
        nc = sg_named_config_find(a.config);
        if (!nc) {
            fprintf(stderr, "train_seq2seq: %s\n", sg_last_error());
            return 2;
        }
        apply_named(&a, o, nc);
    }
    if (!a.data && !a.train && !sgx_option_given(o, "time-budget") && !sgx_option_given(o, "target")) {
        a.time_budget = 270; /* the built-in demo stays within 5 minutes */
        a.target = 99.9;
    }
    CHECK(sgx_set_threads(a.threads) == SG_OK);
    if (a.keep_mb < 0) {
        fprintf(stderr, "train_seq2seq: --keep-mb %d is negative\n", a.keep_mb);
        return 2;
    }
    sg_text_level level = !strcmp(a.tokens, "word") ? SG_LEVEL_WORD : SG_LEVEL_CHAR;

    /* model and data (vocabularies from the checkpoint when resuming) */
    sg_model *m = NULL;
    sg_checkpoint meta;
    sg_checkpoint_init(&meta);
    sg_vocab *ck_sv = NULL, *ck_tv = NULL;
    if (a.resume) {
        m = sg_model_load(a.resume, SG_F32, &meta);
        CHECK_HINT(m, "--resume needs a checkpoint written by train_seq2seq --save");
        CHECK(ck_sv = sg_vocab_from_strings((const char *const *)meta.vocab[0].tokens, meta.vocab[0].n));
        CHECK(ck_tv = sg_vocab_from_strings((const char *const *)meta.vocab[1].tokens, meta.vocab[1].n));
    }
    sg_corpus corpus;
    CHECK_HINT(load_corpus(&a, &corpus, ck_sv, ck_tv) == SG_OK,
               "the data files are TSV: source<TAB>target per line, UTF-8");
    sg_vocab_free(ck_sv);
    sg_vocab_free(ck_tv);
    sg_corpus_drop_text(&corpus, SG_SPLIT_TRAIN); /* training reads its ids only */
    level = corpus.level;
    if (!m) {
        sg_model_config mc = model_config(&a, &corpus);
        CHECK(sg_model_config_validate(&mc) == SG_OK);
        CHECK(m = sg_model_new(&mc, SG_F32, (uint64_t)a.seed));
        sg_rng_seed(sg_model_rng(m), (uint64_t)a.seed * 7919u + 1);
    }
    const sg_model_config *mc = sg_model_get_config(m);
    (void)sg_model_tune_malloc(m); /* only a speed-up: no check */

    sg_optim_kind kind;
    CHECK(sg_optim_kind_parse(a.optim, &kind) == SG_OK);
    sg_optim_config oc = sg_optim_config_default(kind);
    if (nc && kind == SG_OPTIM_ADAM) /* the configuration's betas, eps, weight decay */
        CHECK(sg_named_config_optim(nc, &oc) == SG_OK);
    oc.lr = a.lr; /* these hold the configuration's values unless given */
    oc.clip_norm = a.clip;
    oc.label_smoothing = a.label_smoothing;
    CHECK(sg_lr_schedule_parse(a.schedule, &oc.schedule.kind) == SG_OK);
    oc.schedule.warmup_steps = a.warmup > 0 ? a.warmup : 1;
    sg_optim *opt = sg_optim_new(sg_model_params(m), &oc);
    CHECK(opt);
    int64_t epoch0 = 0, step = 0;
    double best = -1;
    if (a.resume) {
        CHECK(sg_model_load_optim(a.resume, m, opt) == SG_OK);
        if (meta.has_train_state) {
            epoch0 = meta.epoch;
            step = meta.step;
            best = meta.best_valid;
            *sg_model_rng(m) = meta.rng;
        }
    }
    sg_checkpoint_clear(&meta);

    const sg_dataset *train = &corpus.data[SG_SPLIT_TRAIN], *valid = &corpus.data[SG_SPLIT_VALID];
    printf("model %s: %lld parameters; vocab %lld -> %lld (%s); %lld training pairs, %lld "
           "validation; %d thread(s)\n",
           sg_arch_name(mc->arch), (long long)sg_params_numel(sg_model_params(m)),
           (long long)sg_vocab_size(corpus.src_vocab), (long long)sg_vocab_size(corpus.tgt_vocab),
           sg_text_level_name(level), (long long)train->n, (long long)valid->n,
           sg_get_num_threads());
    CHECK_HINT(train->n > 0 && valid->n > 0, "training and validation data must not be empty");

    sgx_mkdir_parent(a.save);
    sgx_curve_log curve;
    bool logging = a.log && *a.log;
    if (logging) {
        sgx_mkdir_parent(a.log);
        CHECK(sgx_curve_log_open(&curve, a.log, a.resume != NULL) == SG_OK);
    }
    sg_batches bs;
    CHECK(sg_batches_length_sorted(&bs, train, a.batch, false) == SG_OK);
    sg_graph *g = sg_graph_new();
    CHECK(g);
    sg_graph_set_keep_budget(g, (size_t)a.keep_mb << 20);
    double t0 = sgx_now(), train_time = 0;
    int64_t step0 = step, run_tokens = 0; /* this run's steps and tokens: the summary */
    bool stop = false;
    sgx_progress pr = {0};
    for (int64_t epoch = epoch0 + 1; epoch <= a.epochs && !stop; epoch++) {
        CHECK(sg_batches_shuffle(&bs, sg_model_rng(m)) == SG_OK);
        if (!a.quiet) {
            memset(&pr, 0, sizeof pr);
            sgx_progress_begin(&pr, stdout, (int)epoch, a.epochs, bs.n_batches);
        }
        sg_model_set_training(m, true);
        double t_epoch = sgx_now(), loss_sum = 0;
        int64_t tok_sum = 0;
        for (int64_t k = 0; k < bs.n_batches; k++) {
            sg_batch b;
            CHECK(sg_batch_make_at(&b, train, &bs, k) == SG_OK);
            sg_graph_reset(g);
            int64_t ntok = 0;
            sg_tensor *loss = sg_model_loss_backward(m, g, &b, a.label_smoothing, &ntok);
            CHECK(loss); /* forward and backward */
            double norm;
            int rc = sg_optim_step_zero_grad(opt, &norm); /* update, zero the gradients */
            CHECK(rc == SG_OK || rc == SG_ENUMERIC); /* a NaN gradient skips the update */
            double l = sg_tensor_get(loss, 0);
            loss_sum += l * (double)ntok;
            tok_sum += ntok;
            step++;
            if (!a.quiet)
                sgx_progress_update(&pr, k + 1, l, ntok);
            sg_batch_free(&b);
            if (a.time_budget > 0 && train_time + (sgx_now() - t_epoch) >= a.time_budget) {
                stop = true;
                break;
            }
        }
        /* tokens/s of the training steps alone: validation and saving come after */
        double epoch_s = sgx_now() - t_epoch;
        train_time += epoch_s;
        run_tokens += tok_sum;
        if (!a.quiet)
            sgx_progress_finish(&pr);
        sgx_eval ev;
        CHECK(sgx_evaluate(m, valid, &corpus.raw[SG_SPLIT_VALID], corpus.tgt_vocab, level, 128,
                           true, NULL, false, &ev) == SG_OK);
        double sc = score_of(&ev, level);
        bool improved = sc > best;
        if (improved) {
            best = sc;
            CHECK(save(a.save, m, &corpus, opt, epoch, step, best, train_time, a.config) == SG_OK);
        }
        printf("epoch %lld: train loss %.4f, valid loss %.4f, valid %s %.2f%s, %.0f tok/s, %.0fs\n",
               (long long)epoch, tok_sum ? loss_sum / (double)tok_sum : 0.0, ev.loss,
               level == SG_LEVEL_CHAR ? "exact match %" : "BLEU", sc,
               improved ? " (best, saved)" : "", epoch_s > 0 ? (double)tok_sum / epoch_s : 0.0,
               sgx_now() - t0);
        fflush(stdout);
        if (logging) {
            sgx_curve_row row = sgx_curve_row_empty();
            row.step = step;
            row.epoch = (int)epoch;
            row.seconds = sgx_now() - t0;
            row.train_loss = tok_sum ? loss_sum / (double)tok_sum : NAN;
            row.valid_loss = ev.loss;
            row.valid_acc = sc;
            row.lr = sg_optim_current_lr(opt);
            row.tokens_per_s = epoch_s > 0 ? (double)tok_sum / epoch_s : 0.0;
            CHECK(sgx_curve_log_write(&curve, &row) == SG_OK);
        }
        if (a.target > 0 && sc >= a.target)
            stop = true;
    }
    /* training time only (the protocol's budget): validation and saving not counted */
    printf("trained %lld steps (%.2f epochs) in %.1f s: %.0f target tok/s\n",
           (long long)(step - step0),
           (double)(step - step0) / (double)(bs.n_batches ? bs.n_batches : 1),
           train_time, train_time > 0 ? (double)run_tokens / train_time : 0.0);
    sg_graph_free(g);
    sg_batches_free(&bs);
    if (logging) {
        CHECK(sgx_curve_log_close(&curve) == SG_OK);
        char svg[4096];
        CHECK(sgx_path_with_ext(svg, sizeof svg, a.log, ".svg") == SG_OK);
        CHECK(sgx_curve_svg(a.log, svg, "learning curve", false) == SG_OK);
        printf("learning curve: %s, %s\n", a.log, svg);
    }

    /* the best checkpoint, as a user would load it */
    sg_model_free(m);
    sg_optim_free(opt);
    CHECK_HINT(m = sg_model_load(a.save, SG_F32, NULL), "no checkpoint was saved");
    mc = sg_model_get_config(m); /* the old model's config went with it */
    printf("best checkpoint: %s (validation %s %.2f)\n", a.save,
           level == SG_LEVEL_CHAR ? "exact match %" : "BLEU", best);
    const sg_text_pairs *vr = &corpus.raw[SG_SPLIT_VALID];
    int n_show = a.show < vr->n ? a.show : (int)vr->n;
    if (n_show > 0) {
        char **out = NULL;
        CHECK(sgx_translate(m, corpus.src_vocab, corpus.tgt_vocab, level,
                            (const char *const *)vr->src, n_show, 64, NULL, 1, &out, NULL) == SG_OK);
        for (int i = 0; i < n_show; i++)
            printf("  %-36s -> %-24s %s\n", vr->src[i], out[i],
                   strcmp(out[i], vr->tgt[i]) ? "(reference: different)" : "(correct)");
        if (a.attention && *a.attention && mc->arch != SG_ARCH_SEQ2SEQ) {
            sgx_mkdir_parent(a.attention);
            int n_att = n_show < 3 ? n_show : 3;
            CHECK(sgx_attention_svg(a.attention, m, corpus.src_vocab, corpus.tgt_vocab, level,
                                    (const char *const *)vr->src, (const char *const *)out,
                                    n_att) == SG_OK);
            printf("attention heatmap: %s\n", a.attention);
        }
        sgx_strings_free(out, n_show);
    }
    const sg_dataset *test = &corpus.data[SG_SPLIT_TEST];
    if (test->n > 0) { /* MODELS.md 10.2's quality anchor: greedy and beam 5 (alpha 0.7) */
        sg_decode_opts beam = sg_decode_opts_default();
        for (int k = 0; k < 2; k++) {
            sgx_eval ev;
            CHECK(sgx_evaluate(m, test, &corpus.raw[SG_SPLIT_TEST], corpus.tgt_vocab, level, 64,
                               true, k ? &beam : NULL, false, &ev) == SG_OK);
            printf("test (%lld pairs, %s): loss %.4f, BLEU %.2f, exact match %.2f%%\n",
                   (long long)test->n, k ? "beam 5" : "greedy", ev.loss, ev.bleu, ev.exact);
        }
    }
    sg_model_free(m);
    sg_corpus_free(&corpus);
    return 0;
}
