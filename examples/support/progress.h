/*
 * progress.h - a progress line for long loops (training epochs, evaluation).
 *
 * On a terminal one line is redrawn in place with '\r' at most `redraw_hz` times a second;
 * otherwise (a log file, a pipe) a plain line is written every `plain_every` seconds. Either
 * way the last state is written, followed by a newline, by sgx_progress_finish().
 *
 *   epoch 3/10  1200/5000 [######..................]  24%  loss 2.3456  8.1k tok/s  0:42 < 2:13
 *
 *     sgx_progress pb;
 *     sgx_progress_begin(&pb, stderr, 3, 10, n_batches);
 *     for (...) { ...; sgx_progress_update(&pb, step + 1, loss, batch_tokens); }
 *     sgx_progress_finish(&pb);
 *
 * The loss shown is the mean of every loss passed since begin; tokens/s is the tokens passed
 * since begin over the elapsed wall time; the ETA scales the elapsed time by the steps left.
 */
#ifndef SGX_PROGRESS_H
#define SGX_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sgx_progress {
    FILE *out;
    bool tty;           /* redraw in place; set by begin from isatty(out), may be overridden */
    double redraw_hz;   /* TTY: at most this many redraws per second (10) */
    double plain_every; /* non-TTY: seconds between lines (10) */
    int bar_width;      /* characters inside [ ] (24) */
    double (*clock)(void); /* seconds, monotonic; tests may substitute a fake clock */

    int epoch, n_epochs; /* n_epochs <= 0: shown as "epoch E" */
    int64_t step, total; /* total <= 0: unknown, no bar or ETA */
    double loss_sum;
    int64_t loss_n;
    double tokens;
    double t_begin, t_drawn;
    int last_len; /* TTY: length of the previous line, to blank what is left of it */
    bool drawn;
} sgx_progress;

/* Starts a new progress line for `total` steps (<= 0 if unknown) of epoch `epoch` of
 * `n_epochs`. Resets loss mean, token count and clock. `out` is not owned. */
void sgx_progress_begin(sgx_progress *p, FILE *out, int epoch, int n_epochs, int64_t total);

/* Records that `step` steps are done (absolute, not an increment), adding one loss value
 * (NaN: not counted) and `tokens` processed tokens; redraws if due. */
void sgx_progress_update(sgx_progress *p, int64_t step, double loss, int64_t tokens);

/* Draws the final state and ends the line with '\n'. */
void sgx_progress_finish(sgx_progress *p);

/* Formats the current state (without '\r' or '\n') into buf; returns the length written
 * (truncated to n - 1 if the buffer is short). */
int sgx_progress_format(const sgx_progress *p, char *buf, size_t n);

/* "m:ss" or "h:mm:ss" for a duration in seconds; "--:--" if negative or not finite. */
void sgx_format_duration(char *buf, size_t n, double seconds);

/* Seconds on the monotonic clock. */
double sgx_now(void);

#ifdef __cplusplus
}
#endif
#endif
