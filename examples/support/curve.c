/* curve.c - the learning-curve CSV log, its reader and its SVG. */
#include "curve.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "svg.h"

enum { COL_STEP, COL_EPOCH, COL_SECONDS, COL_TRAIN, COL_VALID, COL_ACC, COL_LR, COL_TOKS, N_COLS };
static const char *const col_names[N_COLS] = {"step", "epoch", "seconds", "train_loss",
                                              "valid_loss", "valid_acc", "lr", "tokens_per_s"};
#define HEADER "step,epoch,seconds,train_loss,valid_loss,valid_acc,lr,tokens_per_s"

sgx_curve_row sgx_curve_row_empty(void)
{
    return (sgx_curve_row){0, 0, 0, NAN, NAN, NAN, NAN, NAN};
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

int sgx_curve_log_open(sgx_curve_log *log, const char *path, bool append)
{
    const char *fn = "sgx_curve_log_open";
    if (!log || !path)
        return sgx_error(SG_EINVAL, "%s: %s is NULL", fn, !log ? "log" : "path");
    log->f = NULL;
    bool need_header = true;
    if (append) {
        FILE *r = fopen(path, "r");
        if (r) {
            char line[256] = "";
            bool empty = !fgets(line, sizeof line, r);
            fclose(r);
            chomp(line);
            if (!empty && strcmp(line, HEADER))
                return sgx_error(SG_EFORMAT, "%s: '%s' is not a learning-curve log (first line "
                                 "'%.60s', expected '%s')", fn, path, line, HEADER);
            need_header = empty;
        }
    }
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f)
        return sgx_error(SG_EIO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    if (need_header)
        fputs(HEADER "\n", f);
    if (fflush(f) != 0) {
        fclose(f);
        return sgx_error(SG_EIO, "%s: cannot write '%s': %s", fn, path, strerror(errno));
    }
    log->f = f;
    return SG_OK;
}

/* A float field: empty when NaN, so "not measured" survives the round trip. */
static void put_num(FILE *f, double v, bool comma)
{
    if (comma)
        fputc(',', f);
    if (!isnan(v))
        fprintf(f, "%.9g", v);
}

int sgx_curve_log_write(sgx_curve_log *log, const sgx_curve_row *r)
{
    if (!log || !log->f || !r)
        return sgx_error(SG_EINVAL, "sgx_curve_log_write: %s", !r ? "row is NULL" : "log is not open");
    fprintf(log->f, "%lld,%d", (long long)r->step, r->epoch);
    put_num(log->f, r->seconds, true);
    put_num(log->f, r->train_loss, true);
    put_num(log->f, r->valid_loss, true);
    put_num(log->f, r->valid_acc, true);
    put_num(log->f, r->lr, true);
    put_num(log->f, r->tokens_per_s, true);
    fputc('\n', log->f);
    if (fflush(log->f) != 0 || ferror(log->f))
        return sgx_error(SG_EIO, "sgx_curve_log_write: write failed: %s", strerror(errno));
    return SG_OK;
}

int sgx_curve_log_close(sgx_curve_log *log)
{
    if (!log || !log->f)
        return SG_OK;
    bool bad = ferror(log->f) != 0;
    int rc = fclose(log->f);
    log->f = NULL;
    if (rc != 0 || bad)
        return sgx_error(SG_EIO, "sgx_curve_log_close: write failed: %s", strerror(errno));
    return SG_OK;
}

/* Splits line at commas in place; returns the number of fields (at most max). */
static int split(char *line, char **field, int max)
{
    int n = 0;
    for (char *p = line;;) {
        if (n < max)
            field[n] = p;
        n++;
        char *c = strchr(p, ',');
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
    return n < max ? n : max;
}

static int parse_field(const char *s, double *out)
{
    if (!*s) {
        *out = NAN;
        return 0;
    }
    char *end;
    *out = strtod(s, &end);
    return end != s && *end == '\0' ? 0 : -1;
}

int sgx_curve_read(const char *path, sgx_curve_row **rows_out, int64_t *n_out)
{
    const char *fn = "sgx_curve_read";
    if (!path || !rows_out || !n_out)
        return sgx_error(SG_EINVAL, "%s: NULL argument", fn);
    *rows_out = NULL;
    *n_out = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return sgx_error(SG_EIO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    char *line = NULL, *field[64];
    size_t cap = 0;
    int where[64]; /* column index of each CSV field, or -1 to ignore it */
    int n_fields = 0, rc = SG_OK;
    sgx_curve_row *rows = NULL;
    int64_t n = 0, n_cap = 0, lineno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        chomp(line);
        if (!line[0])
            continue;
        if (n_fields == 0) { /* header */
            n_fields = split(line, field, 64);
            bool has_step = false;
            for (int i = 0; i < n_fields; i++) {
                where[i] = -1;
                for (int c = 0; c < N_COLS; c++)
                    if (!strcmp(field[i], col_names[c]))
                        where[i] = c;
                has_step |= where[i] == COL_STEP;
            }
            if (!has_step) {
                rc = sgx_error(SG_EFORMAT, "%s: '%s' line 1 is not a learning-curve header "
                               "(expected '%s')", fn, path, HEADER);
                break;
            }
            continue;
        }
        if (n == n_cap) {
            int64_t c2 = n_cap ? 2 * n_cap : 256;
            sgx_curve_row *r2 = realloc(rows, (size_t)c2 * sizeof *rows);
            if (!r2) {
                rc = sgx_error(SG_ENOMEM, "%s: out of memory after %lld rows", fn, (long long)n);
                break;
            }
            rows = r2, n_cap = c2;
        }
        int nf = split(line, field, 64);
        double v[N_COLS] = {0, 0, NAN, NAN, NAN, NAN, NAN, NAN};
        for (int i = 0; i < nf && i < n_fields && rc == SG_OK; i++)
            if (where[i] >= 0 && parse_field(field[i], &v[where[i]]) < 0)
                rc = sgx_error(SG_EFORMAT, "%s: '%s' line %lld: %s is '%.40s', not a number", fn,
                               path, (long long)lineno, col_names[where[i]], field[i]);
        if (rc != SG_OK)
            break;
        rows[n++] = (sgx_curve_row){isnan(v[COL_STEP]) ? 0 : (int64_t)v[COL_STEP],
                                    isnan(v[COL_EPOCH]) ? 0 : (int)v[COL_EPOCH],
                                    v[COL_SECONDS], v[COL_TRAIN], v[COL_VALID], v[COL_ACC],
                                    v[COL_LR], v[COL_TOKS]};
    }
    free(line);
    fclose(f);
    if (rc == SG_OK && n_fields == 0)
        rc = sgx_error(SG_EFORMAT, "%s: '%s' is empty (no header)", fn, path);
    if (rc != SG_OK) {
        free(rows);
        return rc;
    }
    *rows_out = rows;
    *n_out = n;
    return SG_OK;
}

/* The finite (step, value) pairs of one column, into x and y ([n] each); returns the count. */
static int pick(const sgx_curve_row *rows, int64_t n, int col, double *x, double *y)
{
    int k = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = col == COL_TRAIN ? rows[i].train_loss : col == COL_VALID ? rows[i].valid_loss
                                                                            : rows[i].valid_acc;
        if (isfinite(v)) {
            x[k] = (double)rows[i].step;
            y[k++] = v;
        }
    }
    return k;
}

int sgx_curve_svg(const char *csv_path, const char *svg_path, const char *title, bool log_y)
{
    if (!csv_path || !svg_path)
        return sgx_error(SG_EINVAL, "sgx_curve_svg: %s is NULL", !csv_path ? "csv_path" : "svg_path");
    sgx_curve_row *rows;
    int64_t n;
    int rc = sgx_curve_read(csv_path, &rows, &n);
    if (rc != SG_OK)
        return rc;
    if (n > 100000000)
        n = 100000000; /* keeps the int counts of sgx_series safe */
    double *buf = malloc(6 * (size_t)(n ? n : 1) * sizeof *buf);
    if (!buf) {
        free(rows);
        return sgx_error(SG_ENOMEM, "sgx_curve_svg: out of memory for %lld rows", (long long)n);
    }
    double *tx = buf, *ty = buf + n, *vx = buf + 2 * n, *vy = buf + 3 * n, *ax = buf + 4 * n,
           *ay = buf + 5 * n;
    int nt = pick(rows, n, COL_TRAIN, tx, ty), nv = pick(rows, n, COL_VALID, vx, vy),
        na = pick(rows, n, COL_ACC, ax, ay);
    sgx_series loss[2] = {{"train loss", tx, ty, nt}, {"valid loss", vx, vy, nv}};
    sgx_series acc[1] = {{"valid accuracy", ax, ay, na}};
    double last = 0; /* both charts share the step axis */
    for (int64_t i = 0; i < n; i++)
        last = fmax(last, (double)rows[i].step);
    sgx_chart charts[2] = {
        {.title = title ? title : "learning curve", .xlabel = "step", .ylabel = "loss (nats/token)",
         .series = loss, .n_series = 2, .log_y = log_y, .x_max = last},
        {.title = "validation accuracy", .xlabel = "step", .ylabel = "accuracy", .series = acc,
         .n_series = 1, .x_max = last},
    };
    rc = sgx_svg_charts(svg_path, charts, na > 0 ? 2 : 1);
    free(buf);
    free(rows);
    return rc;
}

int sgx_path_with_ext(char *buf, size_t n, const char *path, const char *ext)
{
    if (!buf || !path || !ext)
        return sgx_error(SG_EINVAL, "sgx_path_with_ext: NULL argument");
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t stem = dot && dot > base ? (size_t)(dot - path) : strlen(path); /* ".bashrc": none */
    if (stem + strlen(ext) + 1 > n)
        return sgx_error(SG_EINVAL, "sgx_path_with_ext: '%s' + '%s' does not fit in %zu bytes",
                         path, ext, n);
    memcpy(buf, path, stem);
    strcpy(buf + stem, ext);
    return SG_OK;
}
