/*
 * curve.h - the learning-curve log: one CSV row per logging point, and the SVG drawn from it.
 *
 *     step,epoch,seconds,train_loss,valid_loss,valid_acc,lr,tokens_per_s
 *     200,1,12.503,4.1234,,,0.001,8150.2
 *     450,1,28.115,3.2210,3.4012,0.1875,0.001,8203.9
 *
 * Values that were not measured at a row (NaN) are written as empty fields and read back as
 * NaN. The file is flushed after every row, so it can be plotted while training runs.
 *
 *     sgx_curve_log log;
 *     CHECK(sgx_curve_log_open(&log, "run.csv", resuming) == SG_OK);
 *     CHECK(sgx_curve_log_write(&log, &(sgx_curve_row){.step = s, .train_loss = l, ...}) == 0);
 *     CHECK(sgx_curve_log_close(&log) == SG_OK);
 *     CHECK(sgx_curve_svg("run.csv", "run.svg", "bahdanau on dates", true) == SG_OK);
 *
 * Errors (negative SG_E* codes, message in sgx_last_error()): SG_EINVAL (NULL arguments),
 * SG_EIO (cannot open/write), SG_EFORMAT (not a curve CSV: bad header or bad number, with the
 * line number), SG_ENOMEM.
 */
#ifndef SGX_CURVE_H
#define SGX_CURVE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sgx_curve_row {
    int64_t step;   /* optimiser steps so far */
    int epoch;      /* 1-based */
    double seconds; /* wall time since the run started */
    double train_loss, valid_loss, valid_acc, lr, tokens_per_s; /* NaN when not measured */
} sgx_curve_row;

/* A row with every measurement NaN (step, epoch, seconds 0): fill in what you have. */
sgx_curve_row sgx_curve_row_empty(void);

typedef struct sgx_curve_log {
    FILE *f;
} sgx_curve_log;

/* Creates `path` with the header, or with append=true adds to an existing log (header
 * written only if the file is empty; an existing header must match). */
int sgx_curve_log_open(sgx_curve_log *log, const char *path, bool append);

/* Appends one row and flushes. */
int sgx_curve_log_write(sgx_curve_log *log, const sgx_curve_row *row);

/* Closes the file (NULL-safe; reports a failed final write). */
int sgx_curve_log_close(sgx_curve_log *log);

/* Reads a curve CSV. On success *rows (malloc'd, caller frees) holds *n rows; on failure
 * *rows = NULL, *n = 0. Columns are found by name from the header, so order may differ and
 * unknown columns are ignored; missing columns read as NaN (step, epoch: 0). */
int sgx_curve_read(const char *path, sgx_curve_row **rows, int64_t *n);

/* Reads `csv_path` and writes `svg_path`: a loss chart (train and valid loss vs step, log-y if
 * `log_y`), then validation accuracy vs step when the log has any. `title` may be NULL. */
int sgx_curve_svg(const char *csv_path, const char *svg_path, const char *title, bool log_y);

/* Writes `path` with its extension (after the last '.' of the last path component) replaced
 * by `ext` (".svg"), or appended when there is none, into buf. Returns SG_EINVAL if too long. */
int sgx_path_with_ext(char *buf, size_t n, const char *path, const char *ext);

#ifdef __cplusplus
}
#endif
#endif
