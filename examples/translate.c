/*
 * translate - decode text with a trained checkpoint, or score given translations.
 *
 *   translate --checkpoint m.h5 [--beam K --alpha A --penalty avg|gnmt --nbest N
 *             --max-len L] [--input FILE] [--attention out.svg]
 *
 * Reads one source sentence per line (stdin or --input, UTF-8) and writes one line per
 * input: the best translation, decoded as MODELS.md 8.3 says (greedy unless --beam),
 * detokenised by the checkpoint's level (word level: tokens joined by single spaces;
 * char level: characters concatenated). An empty line is an empty source (only </s>).
 *
 *   --nbest N   (needs --beam K) N lines per input, best first: "<score>\t<text>", the
 *               score being the beam's normalised score (log-prob sum / lp(n)) printed
 *               with %.6f; when fewer than N hypotheses finished the line is "-inf\t".
 *   --score     reads "source<TAB>target" lines and prints per line the sum of the
 *               target tokens' log-probabilities under teacher forcing, </s> included
 *               (%.6f): for rescoring and for comparing implementations.
 *
 * Input is processed in batches of --batch lines; each batch's output is written (and
 * flushed) before the next is read (interactive use: --batch 1). Exit status: 0, 1 for bad input (checkpoint, file,
 * line: the message names them), 2 for bad options.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "s2s.h"
#include "tools.h"

typedef struct args {
    const char *checkpoint, *input, *penalty, *attention, *level;
    int beam, nbest, max_len, batch, threads, attention_n;
    double alpha;
    bool score;
} args;

static _Noreturn void usage_error(const char *msg)
{
    fprintf(stderr, "translate: %s\ntry 'translate --help'\n", msg);
    exit(2);
}

static _Noreturn void input_error(const char *what)
{
    fprintf(stderr, "error: %s\n", what);
    exit(1);
}

/* One batch of input lines (copies), with the targets in --score mode. */
typedef struct chunk {
    int64_t n, first_line;
    char **src, **tgt;
} chunk;

static void chunk_clear(chunk *c)
{
    for (int64_t i = 0; i < c->n; i++) {
        free(c->src[i]);
        free(c->tgt[i]);
        c->src[i] = c->tgt[i] = NULL;
    }
    c->n = 0;
}

/* Reads up to cap lines; in score mode splits them at their one TAB. */
static int64_t read_chunk(sgx_line_reader *r, chunk *c, int64_t cap, bool score)
{
    const char *line;
    int rc = 1;
    while (c->n < cap && (rc = sgx_lines_next(r, &line)) > 0) {
        if (c->n == 0)
            c->first_line = r->line;
        char *s = strdup(line), *t = NULL;
        CHECK(s);
        if (score) {
            char *tab = strchr(s, '\t');
            char msg[512];
            if (!tab || strchr(tab + 1, '\t')) {
                snprintf(msg, sizeof msg, "%s:%lld: %s (--score reads source<TAB>target lines)",
                         r->name, (long long)r->line, tab ? "more than one TAB" : "no TAB");
                input_error(msg);
            }
            *tab = '\0';
            CHECK(t = strdup(tab + 1));
        }
        c->src[c->n] = s;
        c->tgt[c->n] = t;
        c->n++;
    }
    CHECK(rc >= 0);
    return c->n;
}

/* Exits with the message of a failed batch, naming its lines. */
static void check_batch(int rc, const sgx_line_reader *r, const chunk *c)
{
    if (rc == SG_OK)
        return;
    fprintf(stderr, "error: %s:%lld-%lld: %s\n", r->name, (long long)c->first_line,
            (long long)(c->first_line + c->n - 1), sgx_last_error());
    exit(1);
}

int main(int argc, char **argv)
{
    sgx_openmp_env(argv);
    args a = {.penalty = "avg", .alpha = 0.7, .nbest = 1, .batch = 64, .attention_n = 8};
    sgx_option o[] = {
        SGX_STRING("checkpoint", &a.checkpoint, "model checkpoint (HDF5, with /vocab)"),
        SGX_STRING("input", &a.input, "input lines (default: stdin)"),
        SGX_CHOICE("level", &a.level, "word|char", "override the checkpoint's level"),
        SGX_SECTION("Decoding (MODELS.md 8.3)"),
        SGX_INT("beam", &a.beam, "beam width (0: greedy)"),
        SGX_DOUBLE("alpha", &a.alpha, "beam: length-penalty exponent"),
        SGX_CHOICE("penalty", &a.penalty, "avg|gnmt", "beam: length penalty"),
        SGX_INT("nbest", &a.nbest, "beam: hypotheses per input (\"score<TAB>text\" lines)"),
        SGX_INT("max-len", &a.max_len, "output tokens allowed, </s> included "
                                        "(0: 2*(source tokens)+10)"),
        SGX_BOOL("score", &a.score, "score source<TAB>target lines instead (sum of log-probs)"),
        SGX_SECTION("Other"),
        SGX_STRING("attention", &a.attention, "write attention heatmaps (SVG) of the first inputs"),
        SGX_INT("attention-n", &a.attention_n, "inputs drawn by --attention"),
        SGX_INT("batch", &a.batch, "sentences per batch"),
        SGX_INT("threads", &a.threads, "compute threads (0: SG_NUM_THREADS, else one per core)"),
        SGX_END,
    };
    int npos = sgx_options_parse_or_exit(
        o, argc, argv, "translate --checkpoint model.h5 [options] < input",
        "Translates one sentence per line (greedy unless --beam), or with --score prints "
        "the log-probability of given source<TAB>target pairs.");
    if (npos > 0)
        usage_error("unexpected argument (the input is --input FILE or stdin)");
    if (!a.checkpoint)
        usage_error("--checkpoint is required");
    if (a.beam < 0 || a.nbest < 1 || a.max_len < 0 || a.batch < 1 || a.threads < 0 ||
        a.attention_n < 1 || a.alpha < 0)
        usage_error("--beam, --max-len, --threads and --alpha must be >= 0; --nbest, --batch "
                    "and --attention-n >= 1");
    if (a.nbest > 1 && a.beam < 1)
        usage_error("--nbest needs beam search (--beam K)");
    if (a.score && (a.beam || a.nbest > 1 || a.max_len))
        usage_error("--score uses teacher forcing: no --beam, --nbest or --max-len");
    CHECK(sgx_set_threads(a.threads) == SG_OK);

    sgx_translator t;
    CHECK_HINT(sgx_translator_load(&t, a.checkpoint, a.level) == SG_OK,
               "give a checkpoint written by train_seq2seq --save (or a converted one)");
    if (a.attention && sg_model_get_config(t.model)->arch == SG_ARCH_SEQ2SEQ)
        input_error("--attention: the seq2seq architecture has no attention");

    sg_decode_opts dec = sg_decode_opts_default();
    dec.beam = a.beam;
    dec.alpha = a.alpha;
    dec.penalty = !strcmp(a.penalty, "gnmt") ? SG_LP_GNMT : SG_LP_AVG;
    dec.n_best = a.nbest;
    dec.max_len = a.max_len;
    sg_graph *work[2] = {sg_graph_new(), sg_graph_new()}; /* reused by every batch */
    CHECK(work[0] && work[1]);
    dec.work[0] = work[0];
    dec.work[1] = work[1];

    sgx_line_reader r;
    CHECK(sgx_lines_open(&r, a.input) == SG_OK);
    chunk c = {0};
    CHECK(c.src = calloc((size_t)a.batch, sizeof *c.src));
    CHECK(c.tgt = calloc((size_t)a.batch, sizeof *c.tgt));
    double *scores = malloc(sizeof *scores * (size_t)a.batch * (size_t)a.nbest);
    CHECK(scores);
    /* the first --attention-n (source, target) pairs, for the heatmaps */
    char **att_src = calloc((size_t)a.attention_n, sizeof *att_src);
    char **att_tgt = calloc((size_t)a.attention_n, sizeof *att_tgt);
    CHECK(att_src && att_tgt);
    int n_att = 0;

    while (read_chunk(&r, &c, a.batch, a.score) > 0) {
        const char *const *src = (const char *const *)c.src;
        char **out = NULL;
        if (a.score) {
            sg_batch b;
            check_batch(sgx_make_batch(&b, t.src_vocab, t.tgt_vocab, t.level, src,
                                       (const char *const *)c.tgt, c.n), &r, &c);
            check_batch(sg_model_score(t.model, &b, scores), &r, &c);
            sg_batch_free(&b);
            for (int64_t i = 0; i < c.n; i++)
                printf("%.6f\n", scores[i]);
        } else {
            check_batch(sgx_translate(t.model, t.src_vocab, t.tgt_vocab, t.level, src, c.n,
                                      a.batch, &dec, a.nbest, &out, scores), &r, &c);
            for (int64_t i = 0; i < c.n; i++)
                for (int64_t j = 0; j < a.nbest; j++) {
                    int64_t at = i * a.nbest + j;
                    if (a.nbest == 1)
                        printf("%s\n", out[at]);
                    else if (isinf(scores[at]))
                        printf("-inf\t%s\n", out[at]);
                    else
                        printf("%.6f\t%s\n", scores[at], out[at]);
                }
        }
        for (int64_t i = 0; a.attention && i < c.n && n_att < a.attention_n; i++, n_att++) {
            CHECK(att_src[n_att] = strdup(c.src[i]));
            CHECK(att_tgt[n_att] = strdup(a.score ? c.tgt[i] : out[i * a.nbest]));
        }
        sgx_strings_free(out, c.n * a.nbest);
        chunk_clear(&c);
        fflush(stdout);
    }
    if (a.attention && n_att > 0)
        CHECK(sgx_attention_svg(a.attention, t.model, t.src_vocab, t.tgt_vocab, t.level,
                                (const char *const *)att_src, (const char *const *)att_tgt,
                                n_att) == SG_OK);
    else if (a.attention)
        fprintf(stderr, "translate: no input, %s not written\n", a.attention);

    sgx_strings_free(att_src, n_att);
    sgx_strings_free(att_tgt, n_att);
    free(c.src);
    free(c.tgt);
    free(scores);
    sgx_lines_close(&r);
    sg_graph_free(work[0]);
    sg_graph_free(work[1]);
    sgx_translator_free(&t);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "error: cannot write the output\n");
        return 1;
    }
    return 0;
}
