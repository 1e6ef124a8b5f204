/*
 * evaluate - BLEU (MODELS.md 9) and exact match of a model on a test file, or of given
 * hypotheses against references.
 *
 *   evaluate --checkpoint m.h5 --data test.tsv [--beam K --alpha A --penalty avg|gnmt
 *            --max-len L] [--output hyps.txt]
 *       decodes the sources (greedy unless --beam) and compares them with the targets;
 *       also prints the teacher-forced validation loss (8.1, no label smoothing).
 *   evaluate --hyp hyps.txt --ref refs.txt
 *       one hypothesis and one reference per line (plain UTF-8 text, both word-tokenised).
 *
 * Output, one "name value" per line:
 *   sentences 1000
 *   BLEU 90.51              (100 * corpus BLEU-4, two decimals)
 *   exact_match 80.20       (% of hypotheses equal to their reference string)
 *   loss 0.1183             (checkpoint mode only)
 * Exit status: 0, 1 for bad input (the message names the file and line), 2 for bad options.
 */
#include <stdlib.h>
#include <string.h>

#include "s2s.h"
#include "tools.h"

typedef struct args {
    const char *checkpoint, *data, *hyp, *ref, *output, *penalty, *level;
    int beam, max_len, batch, threads;
    double alpha;
} args;

static _Noreturn void usage_error(const char *msg)
{
    fprintf(stderr, "evaluate: %s\ntry 'evaluate --help'\n", msg);
    exit(2);
}

/* Every line of path (copies) into *out; returns the count. Exits 1 on a bad file. */
static int64_t read_lines(const char *path, char ***out)
{
    sgx_line_reader r;
    CHECK(sgx_lines_open(&r, path) == SG_OK);
    int64_t n = 0, cap = 0;
    char **v = NULL;
    const char *line;
    int rc;
    while ((rc = sgx_lines_next(&r, &line)) > 0) {
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            CHECK(v = realloc(v, sizeof *v * (size_t)cap));
        }
        CHECK(v[n++] = strdup(line));
    }
    CHECK(rc == 0);
    sgx_lines_close(&r);
    *out = v;
    return n;
}

static void print_scores(int64_t n, double bleu, double exact)
{
    printf("sentences %lld\nBLEU %.2f\nexact_match %.2f\n", (long long)n, bleu, exact);
}

/* BLEU of given texts: both sides word-tokenised (sg_bleu_add_text). */
static int eval_files(const args *a)
{
    char **hyp, **ref;
    int64_t nh = read_lines(a->hyp, &hyp), nr = read_lines(a->ref, &ref);
    if (nh != nr) {
        fprintf(stderr, "error: %s has %lld lines but %s has %lld\n", a->hyp, (long long)nh,
                a->ref, (long long)nr);
        sgx_strings_free(hyp, nh);
        sgx_strings_free(ref, nr);
        return 1;
    }
    sg_bleu_stats st = {0};
    for (int64_t i = 0; i < nh; i++)
        CHECK(sg_bleu_add_text(&st, hyp[i], ref[i]) == SG_OK);
    print_scores(nh, sg_bleu_score(&st),
                 sg_exact_match((const char *const *)hyp, (const char *const *)ref, nh));
    sgx_strings_free(hyp, nh);
    sgx_strings_free(ref, nr);
    return 0;
}

/* Decodes a TSV file's sources with a checkpoint and scores them against its targets. */
static int eval_model(const args *a)
{
    sgx_translator t;
    CHECK_HINT(sgx_translator_load(&t, a->checkpoint, a->level) == SG_OK,
               "give a checkpoint written by train_seq2seq --save (or a converted one)");
    sg_text_pairs pairs = {0};
    CHECK_HINT(sg_tsv_read(a->data, &pairs) == SG_OK,
               "--data is a TSV file: source<TAB>target per line, UTF-8");
    sg_dataset d = {0};
    CHECK(sg_dataset_build(&d, &pairs, t.level, t.src_vocab, t.tgt_vocab) == SG_OK);

    sg_decode_opts dec = sg_decode_opts_default();
    dec.beam = a->beam;
    dec.alpha = a->alpha;
    dec.penalty = !strcmp(a->penalty, "gnmt") ? SG_LP_GNMT : SG_LP_AVG;
    dec.max_len = a->max_len;
    sgx_eval ev;
    CHECK(sgx_evaluate(t.model, &d, &pairs, t.tgt_vocab, t.level, a->batch, true, &dec,
                       a->output != NULL, &ev) == SG_OK);
    print_scores(ev.sentences, ev.bleu, ev.exact);
    printf("loss %.4f\n", ev.loss);
    if (a->output) {
        FILE *f = fopen(a->output, "w");
        CHECK_HINT(f, "cannot create the --output file");
        for (int64_t i = 0; i < ev.sentences; i++)
            fprintf(f, "%s\n", ev.hyps[i]);
        if (fclose(f) != 0) {
            fprintf(stderr, "error: cannot write %s\n", a->output);
            return 1;
        }
    }
    sgx_eval_free(&ev);
    sg_dataset_free(&d);
    sg_text_pairs_free(&pairs);
    sgx_translator_free(&t);
    return 0;
}

int main(int argc, char **argv)
{
    sgx_openmp_env(argv);
    args a = {.penalty = "avg", .alpha = 0.7, .batch = 64};
    sgx_option o[] = {
        SGX_SECTION("Model on a test file"),
        SGX_STRING("checkpoint", &a.checkpoint, "model checkpoint (HDF5, with /vocab)"),
        SGX_STRING("data", &a.data, "test pairs: TSV source<TAB>target"),
        SGX_CHOICE("level", &a.level, "word|char", "override the checkpoint's level"),
        SGX_INT("beam", &a.beam, "beam width (0: greedy)"),
        SGX_DOUBLE("alpha", &a.alpha, "beam: length-penalty exponent"),
        SGX_CHOICE("penalty", &a.penalty, "avg|gnmt", "beam: length penalty"),
        SGX_INT("max-len", &a.max_len, "output tokens allowed (0: MODELS.md 8.3's rule)"),
        SGX_INT("batch", &a.batch, "sentences per batch"),
        SGX_INT("threads", &a.threads, "compute threads (0: SG_NUM_THREADS, else one per core)"),
        SGX_STRING("output", &a.output, "also write the decoded lines to this file"),
        SGX_SECTION("Given texts"),
        SGX_STRING("hyp", &a.hyp, "hypotheses, one per line"),
        SGX_STRING("ref", &a.ref, "references, one per line"),
        SGX_END,
    };
    int npos = sgx_options_parse_or_exit(
        o, argc, argv, "evaluate --checkpoint m.h5 --data test.tsv | --hyp h.txt --ref r.txt",
        "Prints corpus BLEU-4 (MODELS.md 9) and exact match.");
    if (npos > 0)
        usage_error("unexpected argument");
    bool model = a.checkpoint || a.data, files = a.hyp || a.ref;
    if (model == files)
        usage_error("give either --checkpoint and --data, or --hyp and --ref");
    if (model && (!a.checkpoint || !a.data))
        usage_error("--checkpoint and --data go together");
    if (files && (!a.hyp || !a.ref))
        usage_error("--hyp and --ref go together");
    if (a.beam < 0 || a.max_len < 0 || a.batch < 1 || a.threads < 0 || a.alpha < 0)
        usage_error("--beam, --max-len, --threads and --alpha must be >= 0, --batch >= 1");
    CHECK(sgx_set_threads(a.threads) == SG_OK);
    return model ? eval_model(&a) : eval_files(&a);
}
