/* test_support.c - the examples' support library: option parser, CHECK, progress line, SVG
 * writers and the learning-curve CSV log (examples/support). */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "curve.h"
#include "progress.h"
#include "sg_tensor.h"
#include "svg.h"

/* ------------------------------------------------------------ helpers */

/* A fresh path "<tmpdir>/<name>" in its own temporary directory. */
static void tmp_path(char *buf, size_t n, const char *name)
{
    char dir[] = "/tmp/sg_support_XXXXXX";
    cr_assert(mkdtemp(dir));
    snprintf(buf, n, "%s/%s", dir, name);
}

static void remove_tmp(const char *path)
{
    remove(path);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        rmdir(dir);
    }
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

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* A minimal well-formedness check: tags balance with one <svg> root, '<' never appears in
 * text or attributes, and every '&' starts a known entity. Returns NULL or what is wrong. */
static const char *xml_problem(const char *s)
{
    static char why[128];
    const char *stack[256];
    size_t len[256];
    int depth = 0, roots = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '&') {
            static const char *const ent[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
            bool ok = false;
            for (int k = 0; k < 5; k++)
                ok |= !strncmp(p, ent[k], strlen(ent[k]));
            if (!ok)
                return "bare '&'";
        }
        if (*p != '<')
            continue;
        if (p[1] == '?') {
            p = strstr(p, "?>");
            if (!p)
                return "unterminated <?";
            p++;
            continue;
        }
        const char *end = strchr(p, '>');
        if (!end)
            return "unterminated tag";
        const char *lt = strchr(p + 1, '<');
        if (lt && lt < end)
            return "'<' inside a tag";
        bool closing = p[1] == '/';
        const char *name = p + 1 + closing;
        size_t n = strcspn(name, " \t\n/>");
        if (closing) {
            if (depth == 0 || len[depth - 1] != n || strncmp(stack[depth - 1], name, n)) {
                snprintf(why, sizeof why, "unbalanced </%.*s>", (int)n, name);
                return why;
            }
            depth--;
        } else if (end[-1] != '/') {
            if (depth == 0)
                roots++;
            if (depth == 256)
                return "too deep";
            stack[depth] = name;
            len[depth++] = n;
        }
        p = end;
    }
    if (depth)
        return "unclosed element";
    return roots == 1 ? NULL : "not exactly one root element";
}

/* Number of x,y pairs in the points="..." of the k-th polyline. */
static int polyline_points(const char *svg, int k)
{
    const char *p = svg;
    for (int i = 0; i <= k; i++) {
        p = strstr(p, "<polyline");
        cr_assert(p, "polyline %d missing", k);
        p++;
    }
    p = strstr(p, "points=\"") + 8;
    int n = 0;
    for (; *p != '"'; p++)
        n += *p == ',';
    return n;
}

/* ------------------------------------------------------------ options */

typedef struct cfg {
    int hidden, layers;
    double lr, clip;
    const char *cell, *data, *save;
    bool resume, verbose;
} cfg;

/* The table points at c; keep it next to c. */
static void make_table(sgx_option *o, cfg *c)
{
    *c = (cfg){256, 1, 1e-3, 5.0, "gru", "data/dates", NULL, false, true};
    sgx_option t[] = {
        SGX_SECTION("Model"),
        SGX_INT("hidden", &c->hidden, "hidden units"),
        SGX_INT("layers", &c->layers, "stacked layers"),
        SGX_CHOICE("cell", &c->cell, "gru|lstm|rnn", "recurrent cell"),
        SGX_SECTION("Training"),
        SGX_DOUBLE("lr", &c->lr, "learning rate"),
        SGX_DOUBLE("clip", &c->clip, "gradient norm clip"),
        SGX_STRING("data", &c->data, "corpus directory"),
        SGX_STRING("save", &c->save, "checkpoint to write"),
        SGX_BOOL("resume", &c->resume, "continue from --save"),
        SGX_BOOL("verbose", &c->verbose, "print more"),
        SGX_END,
    };
    memcpy(o, t, sizeof t);
}
#define N_OPTS 12

static int parse(sgx_option *o, int argc, const char **argv)
{
    return sgx_options_parse(o, argc, (char **)argv);
}

Test(options, parse_every_type_and_keep_defaults)
{
    sgx_option o[N_OPTS];
    cfg c;
    make_table(o, &c);
    const char *argv[] = {"prog", "--hidden", "64", "--lr", "3e-4", "--cell", "lstm",
                          "--save", "m.h5", "--resume", NULL};
    cr_assert_eq(parse(o, 10, argv), 0, "%s", sgx_last_error());
    cr_assert_eq(c.hidden, 64);
    cr_assert_eq(c.lr, 3e-4);
    cr_assert_str_eq(c.cell, "lstm");
    cr_assert_str_eq(c.save, "m.h5");
    cr_assert(c.resume);
    /* untouched: the defaults */
    cr_assert_eq(c.layers, 1);
    cr_assert_eq(c.clip, 5.0);
    cr_assert_str_eq(c.data, "data/dates");
    cr_assert(c.verbose);
}

Test(options, given_marks_only_explicit_options)
{
    sgx_option o[N_OPTS];
    cfg c;
    make_table(o, &c);
    /* an explicit value equal to the default still counts as given */
    const char *argv[] = {"prog", "--hidden=256", "--no-verbose", NULL};
    cr_assert_eq(parse(o, 3, argv), 0, "%s", sgx_last_error());
    cr_assert(sgx_option_given(o, "hidden"));
    cr_assert(sgx_option_given(o, "verbose"));
    cr_assert(!c.verbose);
    cr_assert(!sgx_option_given(o, "lr"));
    cr_assert(!sgx_option_given(o, "layers"));
    cr_assert(!sgx_option_given(o, "no-such-option"));
}

Test(options, equals_syntax_and_bool_values)
{
    sgx_option o[N_OPTS];
    cfg c;
    make_table(o, &c);
    const char *argv[] = {"prog", "--lr=-0.5", "--resume=yes", "--verbose=0", "--data=", NULL};
    cr_assert_eq(parse(o, 5, argv), 0, "%s", sgx_last_error());
    cr_assert_eq(c.lr, -0.5);
    cr_assert(c.resume);
    cr_assert(!c.verbose);
    cr_assert_str_eq(c.data, "");
}

Test(options, positionals_are_moved_to_the_front_in_order)
{
    sgx_option o[N_OPTS];
    cfg c;
    make_table(o, &c);
    const char *argv[] = {"prog", "in.txt", "--layers", "2", "-", "--", "--hidden", NULL};
    cr_assert_eq(parse(o, 7, argv), 3, "%s", sgx_last_error());
    cr_assert_str_eq(argv[1], "in.txt");
    cr_assert_str_eq(argv[2], "-");
    cr_assert_str_eq(argv[3], "--hidden"); /* after "--" everything is positional */
    cr_assert_eq(c.layers, 2);
    cr_assert(!sgx_option_given(o, "hidden"));
}

Test(options, unknown_option_is_named_with_a_suggestion)
{
    sgx_option o[N_OPTS];
    cfg c;
    make_table(o, &c);
    const char *argv[] = {"prog", "--hiden", "5", NULL};
    cr_assert_eq(parse(o, 3, argv), SG_EINVAL);
    cr_assert(strstr(sgx_last_error(), "unknown option '--hiden'"), "%s", sgx_last_error());
    cr_assert(strstr(sgx_last_error(), "did you mean '--hidden'"), "%s", sgx_last_error());
    const char *argv2[] = {"prog", "--zzzzzzzz", NULL};
    cr_assert_eq(parse(o, 2, argv2), SG_EINVAL);
    cr_assert(!strstr(sgx_last_error(), "did you mean"), "%s", sgx_last_error());
    const char *argv3[] = {"prog", "-x", NULL};
    cr_assert_eq(parse(o, 2, argv3), SG_EINVAL);
    cr_assert(strstr(sgx_last_error(), "'-x'"), "%s", sgx_last_error());
    const char *argv4[] = {"prog", "--no-hidden", NULL}; /* no- only for booleans */
    cr_assert_eq(parse(o, 2, argv4), SG_EINVAL);
}

Test(options, bad_values_name_the_option_and_the_value)
{
    static const struct {
        const char *arg, *val, *want;
    } cases[] = {
        {"--hidden", "12x", "'--hidden' expects an integer, got '12x'"},
        {"--hidden", "99999999999", "'--hidden' expects an integer"},
        {"--hidden", "", "'--hidden' expects an integer"},
        {"--lr", "fast", "'--lr' expects a number, got 'fast'"},
        {"--lr", "inf", "'--lr' expects a number"},
        {"--cell", "gruu", "'--cell' expects one of gru|lstm|rnn, got 'gruu'"},
        {"--cell", "gr", "expects one of"},
        {"--resume=maybe", NULL, "'--resume' expects true or false, got 'maybe'"},
        {"--no-resume=1", NULL, "'--no-resume' takes no value"},
        {"--layers", NULL, "'--layers' needs a value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sgx_option o[N_OPTS];
        cfg c;
        make_table(o, &c);
        const char *argv[] = {"prog", cases[i].arg, cases[i].val, NULL};
        cr_assert_eq(parse(o, cases[i].val ? 3 : 2, argv), SG_EINVAL, "case %zu", i);
        cr_assert(strstr(sgx_last_error(), cases[i].want), "case %zu: %s", i, sgx_last_error());
    }
}

Test(options, help_is_reported_not_parsed)
{
    sgx_option o[N_OPTS];
    cfg c;
    make_table(o, &c);
    const char *argv[] = {"prog", "--layers", "3", "--help", "--bogus", NULL};
    cr_assert_eq(parse(o, 5, argv), SGX_OPTIONS_HELP);
}

Test(options, usage_lists_sections_options_and_defaults)
{
    sgx_option o[N_OPTS];
    cfg c;
    make_table(o, &c);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    sgx_options_usage(f, o, "prog [options] FILE", "Trains a model.");
    fclose(f);
    static const char *const want[] = {
        "usage: prog [options] FILE\n", "\nTrains a model.\n", "\nModel:\n", "\nTraining:\n",
        "  --hidden N", "hidden units (default 256)", "--cell gru|lstm|rnn",
        "recurrent cell (default gru)", "learning rate (default 0.001)",
        "corpus directory (default data/dates)", "--resume ", "--[no-]verbose",
        "print more (default on)", "-h, --help"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert(strstr(buf, want[i]), "missing '%s' in:\n%s", want[i], buf);
    cr_assert(!strstr(buf, "(default (null))"));
    /* descriptions line up in one column */
    const char *h = strstr(buf, "hidden units"), *l = strstr(buf, "learning rate");
    const char *line_h = memrchr(buf, '\n', (size_t)(h - buf));
    const char *line_l = memrchr(buf, '\n', (size_t)(l - buf));
    size_t col_h = (size_t)(h - line_h), col_l = (size_t)(l - line_l);
    cr_assert_eq(col_h, col_l);
    free(buf);
}

Test(options, parse_or_exit_exits_2_on_a_bad_option, .exit_code = 2, .init = cr_redirect_stderr)
{
    sgx_option o[N_OPTS];
    cfg c;
    make_table(o, &c);
    const char *argv[] = {"/usr/bin/prog", "--lr", "x", NULL};
    sgx_options_parse_or_exit(o, 3, (char **)argv, "prog", NULL);
}

Test(options, parse_or_exit_prints_help_and_exits_0, .exit_code = 0, .init = cr_redirect_stdout)
{
    sgx_option o[N_OPTS];
    cfg c;
    make_table(o, &c);
    const char *argv[] = {"prog", "-h", NULL};
    sgx_options_parse_or_exit(o, 2, (char **)argv, "prog", NULL);
}

/* ------------------------------------------------------------ errors / CHECK */

Test(errors, newest_message_wins)
{
    sg_clear_error();
    cr_assert_eq(sgx_error(SG_EIO, "support says %d", 7), SG_EIO);
    cr_assert_str_eq(sgx_last_error(), "support says 7");
    /* a later library failure takes over */
    cr_assert_null(sg_tensor_new(SG_F32, -1, NULL));
    cr_assert_str_eq(sgx_last_error(), sg_last_error());
    cr_assert_neq(sg_last_error()[0], '\0');
    /* and a later support failure takes over again */
    sgx_error(SG_EINVAL, "support again");
    cr_assert_str_eq(sgx_last_error(), "support again");
}

Test(errors, check_prints_message_and_hint_then_exits_1)
{
    int fd[2];
    cr_assert_eq(pipe(fd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fd[1], 2);
        sgx_error(SG_EIO, "cannot open 'x.h5'");
        CHECK_HINT(0, "run train_seq2seq first");
        _exit(99);
    }
    close(fd[1]);
    char out[256] = "";
    ssize_t got = 0, r; /* stderr is unbuffered: one write per line, read until EOF */
    while ((r = read(fd[0], out + got, sizeof out - 1 - (size_t)got)) > 0)
        got += r;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    cr_assert(got > 0);
    /* a prefix: sanitizer builds may add their own lines when the child exits */
    const char *want = "error: cannot open 'x.h5'\nhint: run train_seq2seq first\n";
    cr_assert(strncmp(out, want, strlen(want)) == 0, "stderr was: %s", out);
}

Test(errors, check_passes_on_true)
{
    CHECK(1);
    CHECK_HINT(2 > 1, "never shown");
}

/* ------------------------------------------------------------ progress */

static double fake_t;
static double fake_clock(void) { return fake_t; }

static sgx_progress progress_in(FILE *f, int epoch, int n_epochs, int64_t total)
{
    sgx_progress p = {.clock = fake_clock};
    fake_t = 100;
    sgx_progress_begin(&p, f, epoch, n_epochs, total);
    return p;
}

Test(progress, plain_mode_writes_periodic_lines_and_a_final_one)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    sgx_progress p = progress_in(f, 2, 5, 100);
    cr_assert(!p.tty, "a memory stream is not a terminal");
    for (int s = 1; s <= 100; s++) {
        fake_t = 100 + 0.25 * s; /* 25 s in all: lines at 10 s and 20 s */
        sgx_progress_update(&p, s, s <= 50 ? 2.0 : 3.0, 400);
    }
    sgx_progress_finish(&p);
    fclose(f);
    cr_assert_eq(count(buf, "\n"), 3, "%s", buf);
    cr_assert_eq(count(buf, "\r"), 0);
    const char *want_first = "epoch 2/5  40/100 [#########...............]  40%  loss 2.0000  "
                             "1600 tok/s  0:10 < 0:15\n";
    cr_assert(!strncmp(buf, want_first, strlen(want_first)), "got: %s", buf);
    const char *want_last = "epoch 2/5  100/100 [########################] 100%  loss 2.5000  "
                            "1600 tok/s  0:25\n";
    cr_assert(n > strlen(want_last));
    cr_assert_str_eq(buf + n - strlen(want_last), want_last);
    free(buf);
}

Test(progress, terminal_mode_redraws_in_place_at_most_10_per_second)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    sgx_progress p = progress_in(f, 1, 0, 0);
    p.tty = true;
    for (int s = 1; s <= 1000; s++) {
        fake_t = 100 + 0.001 * s; /* 1000 updates in 1 s */
        sgx_progress_update(&p, s, NAN, 0);
    }
    sgx_progress_finish(&p);
    fclose(f);
    int redraws = count(buf, "\r");
    cr_assert(redraws >= 10 && redraws <= 12, "%d redraws", redraws);
    cr_assert_eq(count(buf, "\n"), 1);
    cr_assert_eq(buf[n - 1], '\n');
    /* unknown total and no losses: no bar, no ETA, no loss */
    cr_assert(strstr(buf, "epoch 1  step 1000  0:01\n"), "%s", buf);
    cr_assert(!strstr(buf, "["));
    free(buf);
}

Test(progress, shorter_line_blanks_the_rest_of_the_longer_one)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    sgx_progress p = progress_in(f, 1, 1, 10);
    p.tty = true;
    fake_t = 101;
    sgx_progress_update(&p, 5, 1.0, 1000000);
    cr_assert_eq(p.last_len, (int)strlen("epoch 1/1  5/10 [############............]  50%  "
                                         "loss 1.0000  1.0M tok/s  0:01 < 0:01"));
    p.last_len = 120; /* pretend the previous line was longer */
    fake_t = 102;
    sgx_progress_update(&p, 6, NAN, 0);
    fclose(f);
    const char *second = strrchr(buf, '\r') + 1;
    cr_assert_eq(strlen(second), 120, "'%s'", second);
    cr_assert_eq(second[119], ' ');
    free(buf);
}

Test(progress, durations)
{
    char b[32];
    static const struct {
        double s;
        const char *want;
    } cases[] = {{0, "0:00"}, {59.4, "0:59"}, {61, "1:01"}, {3599.6, "1:00:00"},
                 {7384, "2:03:04"}, {-1, "--:--"}, {INFINITY, "--:--"}, {NAN, "--:--"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sgx_format_duration(b, sizeof b, cases[i].s);
        cr_assert_str_eq(b, cases[i].want, "%g", cases[i].s);
    }
}

/* ------------------------------------------------------------ svg */

static const char *const src_tokens[] = {"l'homme", "<b>", "a&b", "\"q\"", "北京", "</s>"};
static const char *const tgt_tokens[] = {"the", "man", "x<y", "</s>"};

Test(svg, heatmap_is_well_formed_with_escaped_labels)
{
    enum { T = 4, S = 6 };
    float w[T * S];
    for (int i = 0; i < T * S; i++)
        w[i] = (float)i / (T * S);
    w[5] = NAN;
    sgx_heatmap h[2] = {{"n-best 1 <score -0.5>", T, S, w, (const char **)src_tokens,
                         (const char **)tgt_tokens},
                        {NULL, 2, S, w, NULL, NULL}};
    char path[256];
    tmp_path(path, sizeof path, "attn.svg");
    cr_assert_eq(sgx_svg_heatmaps(path, h, 2), SG_OK, "%s", sgx_last_error());
    char *svg = slurp(path);
    const char *why = xml_problem(svg);
    cr_assert_null(why, "%s", why);
    cr_assert_eq(count(svg, "<title>"), T * S + 2 * S, "one tooltip per cell");
    static const char *const want[] = {"l&apos;homme", "&lt;b&gt;", "a&amp;b", "&quot;q&quot;",
                                       "北京", "&lt;/s&gt;", "x&lt;y", "n-best 1 &lt;score -0.5&gt;",
                                       "#bbbbbb" /* NaN cell */, "url(#sgx-ramp)"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert(strstr(svg, want[i]), "missing %s", want[i]);
    cr_assert(!strstr(svg, "<b>"));
    free(svg);
    remove_tmp(path);
}

Test(svg, bad_utf8_and_control_bytes_become_question_marks)
{
    const char *src[] = {"ok\xff", "a\x01z", "\xe2\x82"}, *tgt[] = {"caf\xc3\xa9"};
    float w[3] = {0.1f, 0.5f, 0.9f};
    sgx_heatmap h = {"t", 1, 3, w, src, tgt};
    char path[256];
    tmp_path(path, sizeof path, "u.svg");
    cr_assert_eq(sgx_svg_heatmaps(path, &h, 1), SG_OK, "%s", sgx_last_error());
    char *svg = slurp(path);
    cr_assert(strstr(svg, ">ok?<"));
    cr_assert(strstr(svg, ">a?z<"));
    cr_assert(strstr(svg, ">?" "?<"));
    cr_assert(strstr(svg, ">café<"));
    cr_assert_null(xml_problem(svg));
    free(svg);
    remove_tmp(path);
}

Test(svg, empty_heatmap_is_drawn_as_empty)
{
    sgx_heatmap h = {"nothing", 0, 3, NULL, NULL, NULL};
    char path[256];
    tmp_path(path, sizeof path, "e.svg");
    cr_assert_eq(sgx_svg_heatmaps(path, &h, 1), SG_OK, "%s", sgx_last_error());
    char *svg = slurp(path);
    cr_assert(strstr(svg, "(empty)"));
    cr_assert_null(xml_problem(svg));
    free(svg);
    remove_tmp(path);
}

Test(svg, lines_skip_nan_and_break_the_line)
{
    double x[6] = {0, 100, 200, 300, 400, 500}, y[6] = {5, 4, NAN, 2, 1.5, 1};
    double vx[2] = {250, 500}, vy[2] = {3, 1.2};
    sgx_series s[3] = {{"train & <loss>", x, y, 6}, {"valid", vx, vy, 2}, {"test", NULL, NULL, 0}};
    sgx_chart c = {.title = "curve", .xlabel = "step", .ylabel = "loss", .series = s, .n_series = 3};
    char path[256];
    tmp_path(path, sizeof path, "c.svg");
    cr_assert_eq(sgx_svg_charts(path, &c, 1), SG_OK, "%s", sgx_last_error());
    char *svg = slurp(path);
    cr_assert_null(xml_problem(svg));
    cr_assert_eq(count(svg, "<polyline"), 3);
    cr_assert_eq(polyline_points(svg, 0), 2);
    cr_assert_eq(polyline_points(svg, 1), 3);
    cr_assert_eq(polyline_points(svg, 2), 2);
    cr_assert_eq(count(svg, "<circle"), 7, "markers at finite points of short series");
    cr_assert(strstr(svg, "train &amp; &lt;loss&gt;"));
    cr_assert(strstr(svg, "test (no data)"));
    /* nice round ticks */
    for (int t = 0; t <= 500; t += 100) {
        char tick[16];
        snprintf(tick, sizeof tick, ">%d</text>", t);
        cr_assert(strstr(svg, tick), "x tick %d", t);
    }
    cr_assert(strstr(svg, ">5</text>") && strstr(svg, ">1</text>"));
    free(svg);
    remove_tmp(path);
}

Test(svg, log_axis_drops_nonpositive_values)
{
    double y[5] = {10, 1, 0, -1, 0.1};
    sgx_series s = {"loss", NULL, y, 5};
    sgx_chart c = {.series = &s, .n_series = 1, .log_y = true};
    char path[256];
    tmp_path(path, sizeof path, "l.svg");
    cr_assert_eq(sgx_svg_charts(path, &c, 1), SG_OK, "%s", sgx_last_error());
    char *svg = slurp(path);
    cr_assert_null(xml_problem(svg));
    cr_assert_eq(count(svg, "<polyline"), 2);
    cr_assert_eq(polyline_points(svg, 0) + polyline_points(svg, 1), 3);
    cr_assert(strstr(svg, ">0.1</text>") && strstr(svg, ">1</text>") && strstr(svg, ">10</text>"));
    free(svg);
    remove_tmp(path);
}

Test(svg, all_empty_series_say_no_data)
{
    double nan[2] = {NAN, NAN};
    sgx_series s[2] = {{"a", NULL, NULL, 0}, {"b", NULL, nan, 2}};
    sgx_chart c = {.title = "x", .series = s, .n_series = 2};
    char path[256];
    tmp_path(path, sizeof path, "n.svg");
    cr_assert_eq(sgx_svg_charts(path, &c, 1), SG_OK, "%s", sgx_last_error());
    char *svg = slurp(path);
    cr_assert_null(xml_problem(svg));
    cr_assert(strstr(svg, ">no data</text>"));
    cr_assert_eq(count(svg, "<polyline"), 0);
    free(svg);
    remove_tmp(path);
}

Test(svg, grouped_bars_one_rect_per_value)
{
    const char *cats[3] = {"1-10", "11-20", "21-30"};
    double a[3] = {0.9, 0.6, 0.3}, b[3] = {0.95, NAN, 0.8};
    sgx_series s[2] = {{"vanilla", NULL, a, 3}, {"attention", NULL, b, 3}};
    sgx_chart c = {.title = "accuracy vs length", .series = s, .n_series = 2,
                   .kind = SGX_CHART_BARS, .categories = cats, .n_categories = 3};
    char path[256];
    tmp_path(path, sizeof path, "b.svg");
    cr_assert_eq(sgx_svg_charts(path, &c, 1), SG_OK, "%s", sgx_last_error());
    char *svg = slurp(path);
    cr_assert_null(xml_problem(svg));
    cr_assert_eq(count(svg, "<title>"), 5, "NaN values draw no bar");
    cr_assert(strstr(svg, ">11-20</text>"));
    free(svg);
    remove_tmp(path);
}

Test(svg, errors_are_codes_with_messages)
{
    float w[1] = {0};
    sgx_heatmap h = {"t", 1, 1, w, NULL, NULL};
    cr_assert_eq(sgx_svg_heatmaps("/tmp/x.svg", &h, 0), SG_EINVAL);
    cr_assert(strstr(sgx_last_error(), "no heatmaps"), "%s", sgx_last_error());
    sgx_heatmap bad = {"t", 2, 2, NULL, NULL, NULL};
    cr_assert_eq(sgx_svg_heatmaps("/tmp/x.svg", &bad, 1), SG_EINVAL);
    cr_assert(strstr(sgx_last_error(), "T=2 S=2"), "%s", sgx_last_error());
    cr_assert_eq(sgx_svg_heatmaps("/nonexistent-dir/a.svg", &h, 1), SG_EIO);
    cr_assert(strstr(sgx_last_error(), "'/nonexistent-dir/a.svg'"), "%s", sgx_last_error());
    double y[1] = {1};
    sgx_series s = {"s", NULL, y, 1};
    sgx_chart c = {.series = &s, .n_series = 1};
    cr_assert_eq(sgx_svg_charts(NULL, &c, 1), SG_EINVAL);
    cr_assert_eq(sgx_svg_charts("/nonexistent-dir/c.svg", &c, 1), SG_EIO);
    const char *cats[2] = {"a", "b"};
    sgx_chart bars = {.series = &s, .n_series = 1, .kind = SGX_CHART_BARS, .categories = cats,
                      .n_categories = 2};
    cr_assert_eq(sgx_svg_charts("/tmp/x.svg", &bars, 1), SG_EINVAL);
    cr_assert(strstr(sgx_last_error(), "series 0 ('s') has n=1 (needs 2)"), "%s", sgx_last_error());
}

/* ------------------------------------------------------------ curve log */

static sgx_curve_row row(int64_t step, int epoch, double loss, double valid, double acc)
{
    sgx_curve_row r = sgx_curve_row_empty();
    r.step = step, r.epoch = epoch, r.seconds = step * 0.125, r.train_loss = loss;
    r.valid_loss = valid, r.valid_acc = acc, r.lr = 1e-3 / (double)epoch, r.tokens_per_s = 8123.5;
    return r;
}

static void assert_same(double a, double b, const char *what, int i)
{
    if (isnan(b))
        cr_assert(isnan(a), "row %d %s: %g, expected NaN", i, what, a);
    else
        cr_assert(fabs(a - b) <= 1e-8 * fabs(b), "row %d %s: %.17g vs %.17g", i, what, a, b);
}

Test(curve, csv_round_trip_keeps_values_and_nans)
{
    sgx_curve_row rows[4] = {row(100, 1, 4.25, NAN, NAN), row(200, 1, 3.1234567891, 3.5, 0.125),
                             row(300, 2, NAN, NAN, NAN), row(400, 2, 1e-7, 2.0, 1.0)};
    char path[256];
    tmp_path(path, sizeof path, "run.csv");
    sgx_curve_log log;
    cr_assert_eq(sgx_curve_log_open(&log, path, false), SG_OK, "%s", sgx_last_error());
    for (int i = 0; i < 4; i++)
        cr_assert_eq(sgx_curve_log_write(&log, &rows[i]), SG_OK);
    cr_assert_eq(sgx_curve_log_close(&log), SG_OK);
    cr_assert_eq(sgx_curve_log_close(&log), SG_OK, "closing twice is harmless");
    char *text = slurp(path);
    const char *head = "step,epoch,seconds,train_loss,valid_loss,valid_acc,lr,tokens_per_s\n"
                       "100,1,12.5,4.25,,,0.001,8123.5\n";
    cr_assert(!strncmp(text, head, strlen(head)), "%s", text);
    free(text);
    sgx_curve_row *got;
    int64_t n;
    cr_assert_eq(sgx_curve_read(path, &got, &n), SG_OK, "%s", sgx_last_error());
    cr_assert_eq(n, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(got[i].step, rows[i].step);
        cr_assert_eq(got[i].epoch, rows[i].epoch);
        assert_same(got[i].seconds, rows[i].seconds, "seconds", i);
        assert_same(got[i].train_loss, rows[i].train_loss, "train_loss", i);
        assert_same(got[i].valid_loss, rows[i].valid_loss, "valid_loss", i);
        assert_same(got[i].valid_acc, rows[i].valid_acc, "valid_acc", i);
        assert_same(got[i].lr, rows[i].lr, "lr", i);
        assert_same(got[i].tokens_per_s, rows[i].tokens_per_s, "tokens_per_s", i);
    }
    free(got);
    remove_tmp(path);
}

Test(curve, append_writes_the_header_once)
{
    char path[256];
    tmp_path(path, sizeof path, "run.csv");
    sgx_curve_log log;
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(sgx_curve_log_open(&log, path, true), SG_OK, "%s", sgx_last_error());
        sgx_curve_row r = row(100 * (k + 1), 1, 2.0, NAN, NAN);
        cr_assert_eq(sgx_curve_log_write(&log, &r), SG_OK);
        cr_assert_eq(sgx_curve_log_close(&log), SG_OK);
    }
    char *text = slurp(path);
    cr_assert_eq(count(text, "step,epoch"), 1);
    free(text);
    sgx_curve_row *got;
    int64_t n;
    cr_assert_eq(sgx_curve_read(path, &got, &n), SG_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(got[1].step, 200);
    free(got);
    /* appending to something that is not a curve log is refused, and the file is untouched */
    FILE *f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    cr_assert_eq(sgx_curve_log_open(&log, path, true), SG_EFORMAT);
    cr_assert(strstr(sgx_last_error(), "not a learning-curve log"), "%s", sgx_last_error());
    cr_assert_null(log.f);
    text = slurp(path);
    cr_assert_str_eq(text, "hello\n");
    free(text);
    remove_tmp(path);
}

Test(curve, reader_maps_columns_by_name)
{
    char path[256];
    tmp_path(path, sizeof path, "r.csv");
    FILE *f = fopen(path, "w");
    fputs("epoch,extra,step,valid_acc\r\n2,zzz,50,0.5\r\n\r\n3,,60,\r\n", f);
    fclose(f);
    sgx_curve_row *got;
    int64_t n;
    cr_assert_eq(sgx_curve_read(path, &got, &n), SG_OK, "%s", sgx_last_error());
    cr_assert_eq(n, 2);
    cr_assert_eq(got[0].step, 50);
    cr_assert_eq(got[0].epoch, 2);
    cr_assert_eq(got[0].valid_acc, 0.5);
    cr_assert(isnan(got[0].train_loss) && isnan(got[1].valid_acc));
    free(got);
    remove_tmp(path);
}

Test(curve, reader_errors_name_file_and_line)
{
    sgx_curve_row *got = (sgx_curve_row *)1;
    int64_t n = 7;
    cr_assert_eq(sgx_curve_read("/nonexistent/run.csv", &got, &n), SG_EIO);
    cr_assert_null(got);
    cr_assert_eq(n, 0);
    cr_assert(strstr(sgx_last_error(), "'/nonexistent/run.csv'"), "%s", sgx_last_error());
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"", "is empty"},
        {"a,b,c\n1,2,3\n", "line 1 is not a learning-curve header"},
        {"step,train_loss\n1,2\n2,abc\n", "line 3: train_loss is 'abc', not a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        tmp_path(path, sizeof path, "bad.csv");
        FILE *f = fopen(path, "w");
        fputs(cases[i].text, f);
        fclose(f);
        cr_assert_eq(sgx_curve_read(path, &got, &n), SG_EFORMAT, "case %zu", i);
        cr_assert(strstr(sgx_last_error(), cases[i].want), "case %zu: %s", i, sgx_last_error());
        cr_assert_null(got);
        remove_tmp(path);
    }
}

Test(curve, svg_from_csv_has_loss_and_accuracy_charts)
{
    char csv[256], svg_path[256];
    tmp_path(csv, sizeof csv, "run.csv");
    cr_assert_eq(sgx_path_with_ext(svg_path, sizeof svg_path, csv, ".svg"), SG_OK);
    sgx_curve_log log;
    cr_assert_eq(sgx_curve_log_open(&log, csv, false), SG_OK);
    for (int i = 1; i <= 30; i++) {
        sgx_curve_row r = row(i * 10, 1 + i / 10, 5.0 / i, i % 10 ? NAN : 6.0 / i,
                              i % 10 ? NAN : 0.3 * i / 10);
        cr_assert_eq(sgx_curve_log_write(&log, &r), SG_OK);
    }
    cr_assert_eq(sgx_curve_log_close(&log), SG_OK);
    cr_assert_eq(sgx_curve_svg(csv, svg_path, "dates <bahdanau>", true), SG_OK, "%s",
                 sgx_last_error());
    char *svg = slurp(svg_path);
    cr_assert_null(xml_problem(svg));
    cr_assert_eq(count(svg, "<polyline"), 3);
    cr_assert_eq(polyline_points(svg, 0), 30, "train loss");
    cr_assert_eq(polyline_points(svg, 1), 3, "valid loss, one line through the epochs");
    cr_assert_eq(polyline_points(svg, 2), 3, "valid accuracy");
    cr_assert(strstr(svg, "dates &lt;bahdanau&gt;") && strstr(svg, "validation accuracy"));
    free(svg);
    remove(svg_path);
    remove_tmp(csv);
}

Test(curve, path_with_ext)
{
    char b[32];
    cr_assert_eq(sgx_path_with_ext(b, sizeof b, "runs/a.csv", ".svg"), SG_OK);
    cr_assert_str_eq(b, "runs/a.svg");
    cr_assert_eq(sgx_path_with_ext(b, sizeof b, "runs.d/log", ".svg"), SG_OK);
    cr_assert_str_eq(b, "runs.d/log.svg");
    cr_assert_eq(sgx_path_with_ext(b, sizeof b, "a.b.csv", ".svg"), SG_OK);
    cr_assert_str_eq(b, "a.b.svg");
    cr_assert_eq(sgx_path_with_ext(b, 8, "long_name.csv", ".svg"), SG_EINVAL);
}

/* true when every CPU of set is alone in its SMT sibling list (sysfs) */
static bool no_smt(const cpu_set_t *set)
{
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, set))
            continue;
        char path[96], list[64] = "";
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list",
                 c);
        FILE *f = fopen(path, "r");
        bool alone = f && fgets(list, sizeof list, f) && !strpbrk(list, ",-");
        if (f)
            fclose(f);
        if (!alone)
            return false;
    }
    return true;
}

/* The tools' --threads 0: SG_NUM_THREADS when it is set, else one thread per core the
 * process may run on (one, once the process is held to one CPU). */
Test(threads, default_is_the_env_or_the_cores_allowed)
{
    cr_assert_eq(sgx_set_threads(3), SG_OK);
    cr_assert_eq(sg_get_num_threads(), 3, "given");
    setenv("SG_NUM_THREADS", "1", 1);
    cr_assert_eq(sgx_set_threads(0), SG_OK);
    cr_assert_eq(sg_get_num_threads(), 3, "SG_NUM_THREADS set: left to the library");
    unsetenv("SG_NUM_THREADS");
    cpu_set_t all, one;
    cr_assert_eq(sched_getaffinity(0, sizeof all, &all), 0);
    cr_assert_eq(sgx_set_threads(0), SG_OK);
    int n = sg_get_num_threads();
    cr_assert(n >= 1 && n <= CPU_COUNT(&all), "%d threads for %d CPUs", n, CPU_COUNT(&all));
    if (no_smt(&all)) /* every allowed CPU a core of its own: all of them */
        cr_assert_eq(n, CPU_COUNT(&all));
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all)) {
            CPU_SET(c, &one);
            break;
        }
    cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);
    cr_assert_eq(sgx_set_threads(0), SG_OK);
    cr_assert_eq(sg_get_num_threads(), 1, "held to one CPU");
    cr_assert_eq(sched_setaffinity(0, sizeof all, &all), 0);
}
