/* test_tools.c - the command-line tools: their shared support code (examples/support/
 * tools.h) in process, and the built programs (translate, evaluate, ckpt_info,
 * ckpt_average, compose_model) end to end on a tiny random bahdanau checkpoint. The
 * programs' folder comes from SG_EXAMPLES_DIR (set by tests/meson.build). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "s2s.h"
#include "tools.h"

/* ------------------------------------------------------------ helpers */

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/sg_tools_XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(tools, .init = make_dir, .fini = remove_dir);

/* dir/name */
static const char *tmp(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_file(const char *path, const char *text, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot create %s", path);
    cr_assert_eq(fwrite(text, 1, n, f), n);
    fclose(f);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* Runs "$SG_EXAMPLES_DIR/<command>" through the shell; stdout and stderr go to
 * malloc'ed strings (free them). Returns the exit status (-1 if killed). */
static int run(char **out, char **err, const char *fmt, ...)
{
    const char *exe = getenv("SG_EXAMPLES_DIR");
    cr_assert(exe, "SG_EXAMPLES_DIR is not set (tests/meson.build sets it)");
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s/%s > '%s' 2> '%s'", exe, args, tmp("stdout"), tmp("stderr"));
    int st = system(cmd);
    *out = slurp(tmp("stdout"));
    *err = slurp(tmp("stderr"));
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Splits text into lines in place (the last "\n" ends the last line). */
static int split_lines(char *text, char **lines, int max)
{
    int n = 0;
    for (char *p = text; *p && n < max;) {
        char *nl = strchr(p, '\n');
        lines[n++] = p;
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    return n;
}

static const char *const SRC[] = {"<pad>", "<unk>", "<s>", "</s>", "a", "b", "c", "d", "e", "f"};
static const char *const TGT[] = {"<pad>", "<unk>", "<s>", "</s>", "w", "x", "y", "z"};

/* A tiny random word-level bahdanau checkpoint (weights from seed), with vocabularies,
 * the level attribute and a training state. */
static void make_checkpoint(const char *path, int64_t hidden, uint64_t seed, bool vocab,
                            bool level)
{
    sg_model_config c;
    sg_model_config_defaults(&c, SG_ARCH_BAHDANAU);
    c.src_vocab_size = 10;
    c.tgt_vocab_size = 8;
    c.emb_dim = 6;
    c.hidden_dim = hidden;
    c.attn_dim = 5;
    sg_model *m = sg_model_new(&c, SG_F32, seed);
    cr_assert(m, "%s", sg_last_error());
    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    for (int k = 0; vocab && k < 2; k++) {
        cr_assert_eq(sg_ckpt_vocab_set(&ck.vocab[k], k ? 8 : 10, k ? TGT : SRC), SG_OK);
        if (level)
            cr_assert_eq(sg_attrs_set_str(&ck.vocab[k].attrs, "level", "word"), SG_OK);
        cr_assert_eq(sg_attrs_set_int(&ck.vocab[k].attrs, "min_freq", 1), SG_OK);
    }
    ck.has_train = ck.has_train_state = true;
    ck.epoch = 3;
    ck.step = 42;
    ck.best_valid = 12.5;
    cr_assert_eq(sg_attrs_set_str(&ck.train, "config", "unit-test"), SG_OK);
    cr_assert_eq(sg_model_save(path, m, &ck, NULL), SG_OK, "%s", sg_last_error());
    sg_checkpoint_clear(&ck);
    sg_model_free(m);
}

static const char *model(void)
{
    const char *p = tmp("m.h5");
    if (access(p, F_OK) != 0)
        make_checkpoint(p, 7, 11, true, true);
    return p;
}

/* ------------------------------------------------------------ in process */

Test(tools, line_reader_strips_line_ends_and_keeps_empty_lines)
{
    const char *p = tmp("lines.txt");
    write_file(p, "a b\r\n\nc\u00e9\nlast", strlen("a b\r\n\nc\u00e9\nlast"));
    sgx_line_reader r;
    cr_assert_eq(sgx_lines_open(&r, p), SG_OK);
    const char *want[] = {"a b", "", "c\u00e9", "last"}, *line;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(sgx_lines_next(&r, &line), 1);
        cr_assert_str_eq(line, want[i]);
        cr_assert_eq(r.line, i + 1);
    }
    cr_assert_eq(sgx_lines_next(&r, &line), 0);
    sgx_lines_close(&r);
}

Test(tools, line_reader_names_file_and_line_of_bad_text)
{
    const char *p = tmp("bad.txt");
    write_file(p, "ok\nbad \xff\n", 8);
    sgx_line_reader r;
    const char *line;
    cr_assert_eq(sgx_lines_open(&r, p), SG_OK);
    cr_assert_eq(sgx_lines_next(&r, &line), 1);
    cr_assert_eq(sgx_lines_next(&r, &line), SG_EFORMAT);
    cr_assert(strstr(sgx_last_error(), "bad.txt:2: invalid UTF-8"), "%s", sgx_last_error());
    sgx_lines_close(&r);

    write_file(p, "x\0y\n", 4);
    cr_assert_eq(sgx_lines_open(&r, p), SG_OK);
    cr_assert_eq(sgx_lines_next(&r, &line), SG_EFORMAT);
    cr_assert(strstr(sgx_last_error(), "bad.txt:1: NUL byte"), "%s", sgx_last_error());
    sgx_lines_close(&r);

    cr_assert_eq(sgx_lines_open(&r, tmp("missing.txt")), SG_EIO);
    cr_assert(strstr(sgx_last_error(), "missing.txt"), "%s", sgx_last_error());
}

Test(tools, translator_reads_model_vocab_and_level)
{
    sgx_translator t;
    cr_assert_eq(sgx_translator_load(&t, model(), NULL), SG_OK, "%s", sgx_last_error());
    cr_assert_eq(t.level, SG_LEVEL_WORD);
    cr_assert_eq(sg_vocab_size(t.src_vocab), 10);
    cr_assert_eq(sg_vocab_size(t.tgt_vocab), 8);
    cr_assert_eq(sg_model_get_config(t.model)->arch, SG_ARCH_BAHDANAU);
    sgx_translator_free(&t);
    cr_assert_eq(sgx_translator_load(&t, model(), "char"), SG_OK);
    cr_assert_eq(t.level, SG_LEVEL_CHAR, "--level overrides the file");
    sgx_translator_free(&t);
}

Test(tools, translator_rejects_checkpoints_it_cannot_use)
{
    sgx_translator t;
    make_checkpoint(tmp("novocab.h5"), 7, 1, false, false);
    cr_assert_eq(sgx_translator_load(&t, tmp("novocab.h5"), NULL), SG_EFORMAT);
    cr_assert(strstr(sgx_last_error(), "no /vocab/src"), "%s", sgx_last_error());
    cr_assert_null(t.model);
    make_checkpoint(tmp("nolevel.h5"), 7, 1, true, false);
    cr_assert_eq(sgx_translator_load(&t, tmp("nolevel.h5"), NULL), SG_EFORMAT);
    cr_assert(strstr(sgx_last_error(), "--level"), "%s", sgx_last_error());
    cr_assert_eq(sgx_translator_load(&t, tmp("nolevel.h5"), "word"), SG_OK);
    sgx_translator_free(&t);
    cr_assert_neq(sgx_translator_load(&t, tmp("absent.h5"), NULL), SG_OK);
    cr_assert(strstr(sgx_last_error(), "absent.h5"), "%s", sgx_last_error());
}

/* ------------------------------------------------------------ programs */

Test(tools, ckpt_info_prints_the_summary)
{
    char *out, *err;
    cr_assert_eq(run(&out, &err, "ckpt_info --params '%s'", model()), 0, "%s", err);
    sgx_translator t;
    cr_assert_eq(sgx_translator_load(&t, model(), NULL), SG_OK);
    char want[128];
    int64_t numel = sg_params_numel(sg_model_params(t.model));   /* 1,742: < 1e6 here */
    if (numel >= 1000)
        snprintf(want, sizeof want, "parameters: %lld,%03lld in ", (long long)(numel / 1000),
                 (long long)(numel % 1000));
    else
        snprintf(want, sizeof want, "parameters: %lld in ", (long long)numel);
    sgx_translator_free(&t);
    const char *needles[] = {"model: bahdanau", "hidden_dim             7", want,
                             "(weights load)",
                             "src: 10 tokens, level word", "tgt: 8 tokens",
                             "epoch 3, step 42, best validation score 12.50", "unit-test",
                             "encoder.weight_ih_l0", "optimiser: (none)"};
    for (size_t i = 0; i < sizeof needles / sizeof *needles; i++)
        cr_assert(strstr(out, needles[i]), "'%s' missing from:\n%s", needles[i], out);
    free(out);
    free(err);
    cr_assert_eq(run(&out, &err, "ckpt_info '%s'", tmp("absent.h5")), 1);
    cr_assert(strstr(err, "absent.h5"), "%s", err);
    free(out);
    free(err);
}

static void assert_same_params(const char *a, const char *b)
{
    sg_model *ma = sg_model_load(a, SG_F32, NULL), *mb = sg_model_load(b, SG_F32, NULL);
    cr_assert(ma && mb, "%s", sg_last_error());
    sg_params *pa = sg_model_params(ma), *pb = sg_model_params(mb);
    cr_assert_eq(sg_params_count(pa), sg_params_count(pb));
    for (int i = 0; i < sg_params_count(pa); i++) {
        const sg_tensor *x = sg_params_at(pa, i)->value, *y = sg_params_at(pb, i)->value;
        cr_assert(sg_tensor_same_shape(x, y));
        cr_assert_arr_eq(x->data, y->data, (size_t)sg_tensor_numel(x) * sizeof(float),
                         "%s differs", sg_params_at(pa, i)->name);
    }
    sg_model_free(ma);
    sg_model_free(mb);
}

Test(tools, ckpt_average_of_one_checkpoint_twice_is_itself)
{
    char *out, *err;
    cr_assert_eq(run(&out, &err, "ckpt_average --output '%s' '%s' '%s'", tmp("avg.h5"), model(),
                     model()), 0, "%s", err);
    free(out);
    free(err);
    assert_same_params(tmp("avg.h5"), model());
    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    cr_assert_eq(sg_checkpoint_read_meta(tmp("avg.h5"), &ck), SG_OK);
    cr_assert_eq(ck.vocab[1].n, 8, "vocabularies kept");
    cr_assert(!ck.has_optim && !ck.has_train_state);
    int64_t n;
    cr_assert_eq(sg_attrs_get_int(&ck.train, "averaged_n", &n), SG_OK);
    cr_assert_eq(n, 2);
    sg_checkpoint_clear(&ck);
}

Test(tools, ckpt_average_is_the_mean_of_the_parameters)
{
    make_checkpoint(tmp("a.h5"), 7, 1, true, true);
    make_checkpoint(tmp("b.h5"), 7, 2, true, true);
    char *out, *err;
    cr_assert_eq(run(&out, &err, "ckpt_average --output '%s' '%s' '%s'", tmp("ab.h5"),
                     tmp("a.h5"), tmp("b.h5")), 0, "%s", err);
    free(out);
    free(err);
    sg_model *a = sg_model_load(tmp("a.h5"), SG_F64, NULL);
    sg_model *b = sg_model_load(tmp("b.h5"), SG_F64, NULL);
    sg_model *ab = sg_model_load(tmp("ab.h5"), SG_F64, NULL);
    cr_assert(a && b && ab);
    for (int i = 0; i < sg_params_count(sg_model_params(a)); i++) {
        const sg_tensor *x = sg_params_at(sg_model_params(a), i)->value;
        const sg_tensor *y = sg_params_at(sg_model_params(b), i)->value;
        const sg_tensor *z = sg_params_at(sg_model_params(ab), i)->value;
        for (int64_t j = 0; j < sg_tensor_numel(x); j++) {
            double want = (double)(float)((sg_tensor_get(x, j) + sg_tensor_get(y, j)) / 2);
            cr_assert_eq(sg_tensor_get(z, j), want);
        }
    }
    sg_model_free(a);
    sg_model_free(b);
    sg_model_free(ab);
}

Test(tools, ckpt_average_names_the_mismatch)
{
    make_checkpoint(tmp("h9.h5"), 9, 1, true, true);
    char *out, *err;
    cr_assert_eq(run(&out, &err, "ckpt_average --output '%s' '%s' '%s'", tmp("x.h5"), model(),
                     tmp("h9.h5")), 1);
    cr_assert(strstr(err, "h9.h5: hyperparameter hidden_dim = 9"), "%s", err);
    cr_assert_neq(access(tmp("x.h5"), F_OK), 0, "no output on error");
    free(out);
    free(err);
    cr_assert_eq(run(&out, &err, "ckpt_average '%s'", model()), 2, "no --output");
    free(out);
    free(err);
}

Test(tools, translate_score_equals_sg_model_score)
{
    const char *tsv = "a b c\tx y\n\tw\nf e d c b a\t\nb\tz z z z\n";
    write_file(tmp("pairs.tsv"), tsv, strlen(tsv));
    char *out, *err;
    cr_assert_eq(run(&out, &err, "translate --checkpoint '%s' --score --input '%s' --batch 3",
                     model(), tmp("pairs.tsv")), 0, "%s", err);
    char *lines[8];
    cr_assert_eq(split_lines(out, lines, 8), 4, "%s", out);

    sgx_translator t;
    cr_assert_eq(sgx_translator_load(&t, model(), NULL), SG_OK);
    const char *src[] = {"a b c", "", "f e d c b a", "b"}, *tgt[] = {"x y", "w", "", "z z z z"};
    sg_batch b;
    cr_assert_eq(sgx_make_batch(&b, t.src_vocab, t.tgt_vocab, t.level, src, tgt, 4), SG_OK);
    double want[4];
    cr_assert_eq(sg_model_score(t.model, &b, want), SG_OK);
    for (int i = 0; i < 4; i++) {
        double got = strtod(lines[i], NULL);
        cr_assert(fabs(got - want[i]) <= 5.1e-7, "line %d: printed %s, sg_model_score %.9f", i,
                  lines[i], want[i]);
        cr_assert(want[i] < 0);
    }
    sg_batch_free(&b);
    sgx_translator_free(&t);
    free(out);
    free(err);
}

Test(tools, translate_beam_1_equals_greedy_equals_library)
{
    const char *in = "a b c\n\nf e d c b a\nb\nd d d d d d d d\nq unknown\n";
    write_file(tmp("in.txt"), in, strlen(in));
    char *greedy, *beam1, *err;
    cr_assert_eq(run(&greedy, &err, "translate --checkpoint '%s' --input '%s' --batch 2", model(),
                     tmp("in.txt")), 0, "%s", err);
    free(err);
    cr_assert_eq(run(&beam1, &err, "translate --checkpoint '%s' --beam 1 < '%s'", model(),
                     tmp("in.txt")), 0, "%s", err);
    free(err);
    cr_assert_str_eq(beam1, greedy);

    /* the library's greedy decode of the same lines, detokenised with spaces */
    sgx_translator t;
    cr_assert_eq(sgx_translator_load(&t, model(), NULL), SG_OK);
    const char *src[] = {"a b c", "", "f e d c b a", "b", "d d d d d d d d", "q unknown"};
    char **want;
    cr_assert_eq(sgx_translate(t.model, t.src_vocab, t.tgt_vocab, t.level, src, 6, 64, NULL, 1,
                               &want, NULL), SG_OK);
    char *lines[8];
    cr_assert_eq(split_lines(greedy, lines, 8), 6);
    for (int i = 0; i < 6; i++)
        cr_assert_str_eq(lines[i], want[i], "line %d", i + 1);
    sgx_strings_free(want, 6);
    sgx_translator_free(&t);
    free(greedy);
    free(beam1);
}

Test(tools, translate_nbest_and_max_len)
{
    const char *in = "a b c\nf e d c b a\n";
    write_file(tmp("in.txt"), in, strlen(in));
    char *out, *err;
    cr_assert_eq(run(&out, &err, "translate --checkpoint '%s' --input '%s' --beam 3 --nbest 3 "
                     "--penalty gnmt --alpha 1", model(), tmp("in.txt")), 0, "%s", err);
    char *lines[8];
    cr_assert_eq(split_lines(out, lines, 8), 6, "%s", out);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            char *tab = strchr(lines[i * 3 + j], '\t');
            cr_assert(tab, "'%s' has no TAB", lines[i * 3 + j]);
            if (j > 0)
                cr_assert_geq(strtod(lines[i * 3 + j - 1], NULL), strtod(lines[i * 3 + j], NULL),
                              "best first");
        }
    free(out);
    free(err);

    cr_assert_eq(run(&out, &err, "translate --checkpoint '%s' --input '%s' --max-len 2", model(),
                     tmp("in.txt")), 0, "%s", err);
    cr_assert_eq(split_lines(out, lines, 8), 2);
    for (int i = 0; i < 2; i++) {
        int words = lines[i][0] ? 1 : 0;
        for (const char *p = lines[i]; *p; p++)
            words += *p == ' ';
        cr_assert_leq(words, 2, "'%s' is longer than --max-len", lines[i]);
    }
    free(out);
    free(err);
}

Test(tools, translate_attention_writes_an_svg)
{
    const char *in = "a b c\nf e\n";
    write_file(tmp("in.txt"), in, strlen(in));
    char *out, *err;
    cr_assert_eq(run(&out, &err, "translate --checkpoint '%s' --input '%s' --attention '%s'",
                     model(), tmp("in.txt"), tmp("a.svg")), 0, "%s", err);
    char *svg = slurp(tmp("a.svg"));
    cr_assert(strstr(svg, "<svg") && strstr(svg, "&lt;/s&gt;"), "labels include </s>");
    free(svg);
    free(out);
    free(err);
}

Test(tools, translate_reports_bad_input_with_file_and_line)
{
    char *out, *err;
    cr_assert_eq(run(&out, &err, "translate --checkpoint '%s' < /dev/null", tmp("none.h5")), 1);
    cr_assert(strstr(err, "none.h5"), "%s", err);
    free(out);
    free(err);

    write_file(tmp("junk.h5"), "not hdf5 at all\n", 16);
    cr_assert_eq(run(&out, &err, "translate --checkpoint '%s' < /dev/null", tmp("junk.h5")), 1);
    cr_assert(strstr(err, "junk.h5"), "%s", err);
    free(out);
    free(err);

    write_file(tmp("p.tsv"), "a\tx\nno tab\n", 11);
    cr_assert_eq(run(&out, &err, "translate --checkpoint '%s' --score --input '%s'", model(),
                     tmp("p.tsv")), 1);
    cr_assert(strstr(err, "p.tsv:2: no TAB"), "%s", err);
    free(out);
    free(err);

    write_file(tmp("u.txt"), "a\nb\nc \xc3\n", 8);
    cr_assert_eq(run(&out, &err, "translate --checkpoint '%s' --input '%s'", model(),
                     tmp("u.txt")), 1);
    cr_assert(strstr(err, "u.txt:3: invalid UTF-8"), "%s", err);
    free(out);
    free(err);

    const char *bad_options[] = {"--beam -1", "--nbest 2", "--penalty x", "--bogus",
                                 "--score --beam 2", "--batch 0"};
    for (size_t i = 0; i < sizeof bad_options / sizeof *bad_options; i++) {
        cr_assert_eq(run(&out, &err, "translate --checkpoint '%s' %s < /dev/null", model(),
                         bad_options[i]), 2, "%s", bad_options[i]);
        free(out);
        free(err);
    }
    cr_assert_eq(run(&out, &err, "translate < /dev/null"), 2, "no --checkpoint");
    free(out);
    free(err);
}

Test(tools, evaluate_scores_files_and_checkpoints)
{
    write_file(tmp("h.txt"), "the cat sat on the mat\nx\n", 25);
    write_file(tmp("r.txt"), "the cat sat on the mat\ny\n", 25);
    char *out, *err;
    cr_assert_eq(run(&out, &err, "evaluate --hyp '%s' --ref '%s'", tmp("h.txt"), tmp("r.txt")), 0,
                 "%s", err);
    sg_bleu_stats st = {0};
    sg_bleu_add_text(&st, "the cat sat on the mat", "the cat sat on the mat");
    sg_bleu_add_text(&st, "x", "y");
    char want[128];
    snprintf(want, sizeof want, "sentences 2\nBLEU %.2f\nexact_match 50.00\n", sg_bleu_score(&st));
    cr_assert_str_eq(out, want);
    free(out);
    free(err);

    write_file(tmp("r1.txt"), "one line\n", 9);
    cr_assert_eq(run(&out, &err, "evaluate --hyp '%s' --ref '%s'", tmp("h.txt"), tmp("r1.txt")), 1);
    cr_assert(strstr(err, "has 2 lines but"), "%s", err);
    free(out);
    free(err);

    /* on a checkpoint: the decodes written with --output match translate's */
    const char *tsv = "a b c\tx y\nf e d\tw\nb\tz\n";
    write_file(tmp("t.tsv"), tsv, strlen(tsv));
    write_file(tmp("s.txt"), "a b c\nf e d\nb\n", 14);
    cr_assert_eq(run(&out, &err, "evaluate --checkpoint '%s' --data '%s' --output '%s'", model(),
                     tmp("t.tsv"), tmp("hyps.txt")), 0, "%s", err);
    cr_assert(strstr(out, "sentences 3\nBLEU ") && strstr(out, "exact_match ") &&
              strstr(out, "loss "), "%s", out);
    free(out);
    free(err);
    cr_assert_eq(run(&out, &err, "translate --checkpoint '%s' --input '%s'", model(), tmp("s.txt")),
                 0);
    char *hyps = slurp(tmp("hyps.txt"));
    cr_assert_str_eq(hyps, out);
    free(hyps);
    free(out);
    free(err);
    cr_assert_eq(run(&out, &err, "evaluate --hyp '%s'", tmp("h.txt")), 2);
    free(out);
    free(err);
}

Test(tools, compose_model_reloads_to_the_same_loss)
{
    char *out, *err;
    cr_assert_eq(run(&out, &err, "compose_model --steps 20 --save '%s'", tmp("c.h5")), 0,
                 "%s%s", out, err);
    cr_assert(strstr(out, "identical"), "%s", out);
    free(out);
    free(err);
}

/* train_seq2seq --keep-mb: a transformer trained keeping nothing for backward (0) and
 * keeping its feed-forward layers (the default) prints the same losses (the same values
 * either way); a negative budget is refused, naming the option. */
Test(tools, train_keep_budget_leaves_the_losses_alone)
{
    char pairs[4096] = "", valid[1024] = "";
    const char *words[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    for (int i = 0; i < 96; i++) {
        char s[64] = "";
        for (int j = 0; j < 2 + i % 5; j++)
            snprintf(s + strlen(s), sizeof s - strlen(s), "%s%s", j ? " " : "",
                     words[(i * 7 + j * 3) % 8]);
        char *to = i < 80 ? pairs : valid;
        size_t cap = i < 80 ? sizeof pairs : sizeof valid;
        snprintf(to + strlen(to), cap - strlen(to), "%s\t%s\n", s, s);
    }
    write_file(tmp("k_train.tsv"), pairs, strlen(pairs));
    write_file(tmp("k_valid.tsv"), valid, strlen(valid));
    char *losses[2];
    for (int keep = 0; keep < 2; keep++) {
        char *out, *err;
        int rc = run(&out, &err,
                     "train_seq2seq --train '%s' --valid '%s' --tokens word --model transformer "
                     "--d-model 16 --heads 2 --ff 32 --enc-layers 1 --dec-layers 1 --epochs 2 "
                     "--batch 16 --seed 1 --quiet --show 0 --attention '' --log '' "
                     "--save '%s'%s",
                     tmp("k_train.tsv"), tmp("k_valid.tsv"), tmp("k.h5"),
                     keep ? "" : " --keep-mb 0");
        cr_assert_eq(rc, 0, "%s%s", out, err);
        /* "epoch N: train loss X, valid loss Y, ..." without the speed that follows */
        char *lines[16], *kept = calloc(1, strlen(out) + 1);
        int n = split_lines(out, lines, 16);
        for (int i = 0; i < n; i++)
            if (!strncmp(lines[i], "epoch ", 6)) {
                char *comma = strstr(lines[i], ", valid ");
                cr_assert(comma, "%s", lines[i]);
                strncat(kept, lines[i], (size_t)(strchr(comma + 1, ',') - lines[i]));
                strcat(kept, "\n");
            }
        cr_assert(strstr(kept, "epoch 2: train loss"), "%s", kept);
        losses[keep] = kept;
        free(out);
        free(err);
    }
    cr_assert_str_eq(losses[0], losses[1]);
    free(losses[0]);
    free(losses[1]);
    char *out, *err;
    cr_assert_eq(run(&out, &err, "train_seq2seq --keep-mb -1"), 2, "%s%s", out, err);
    cr_assert(strstr(err, "--keep-mb -1"), "%s", err);
    free(out);
    free(err);
}

/* also: the summary line after training (steps, epochs, training seconds, tokens/s) */
Test(tools, train_saves_into_folders_it_makes)
{
    char pairs[2048] = "";
    for (int i = 0; i < 40; i++)
        snprintf(pairs + strlen(pairs), sizeof pairs - strlen(pairs), "%c %c\t%c %c\n",
                 'a' + i % 5, 'a' + i % 3, 'a' + i % 3, 'a' + i % 5);
    write_file(tmp("n_train.tsv"), pairs, strlen(pairs));
    char *out, *err;
    /* two folder levels that do not exist yet, for the checkpoint and for the log */
    int rc = run(&out, &err,
                 "train_seq2seq --train '%s' --valid '%s' --tokens word --model seq2seq "
                 "--emb 8 --hidden 8 --epochs 1 --batch 8 --quiet --show 0 --attention '' "
                 "--log '%s' --save '%s'",
                 tmp("n_train.tsv"), tmp("n_train.tsv"), tmp("logs/run1/log.csv"),
                 tmp("runs/a/b/m.h5"));
    cr_assert_eq(rc, 0, "%s%s", out, err);
    cr_assert_eq(access(tmp("runs/a/b/m.h5"), R_OK), 0, "no checkpoint: %s%s", out, err);
    cr_assert_eq(access(tmp("logs/run1/log.csv"), R_OK), 0, "no log: %s%s", out, err);
    /* the summary of the run: 40 pairs in batches of 8, one epoch */
    cr_assert(strstr(out, "\ntrained 5 steps (1.00 epochs) in "), "%s", out);
    cr_assert(strstr(out, " target tok/s\n"), "%s", out);
    free(out);
    free(err);
}
