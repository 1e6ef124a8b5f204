/*
 * svg.h - self-contained SVG files a browser opens: attention heatmaps and line/bar charts.
 * No dependencies; labels are UTF-8, escaped for XML (bytes that are not valid UTF-8 and
 * control characters become '?').
 *
 *     const char *src[] = {"le", "chat", "</s>"}, *tgt[] = {"the", "cat", "</s>"};
 *     float w[3 * 3] = {...};                          // [T=3 target rows, S=3 source cols]
 *     sgx_heatmap h = {"beam 1 (score -1.25)", 3, 3, w, src, tgt};
 *     CHECK(sgx_svg_heatmaps("attn.svg", &h, 1) == SG_OK);
 *
 *     sgx_series s[2] = {{"train", xs, train_loss, n}, {"valid", xe, valid_loss, ne}};
 *     sgx_chart c = {.title = "loss", .xlabel = "step", .ylabel = "nats/token",
 *                    .series = s, .n_series = 2, .log_y = true};
 *     CHECK(sgx_svg_charts("curve.svg", &c, 1) == SG_OK);
 *
 * Errors (negative SG_E* codes, message in sgx_last_error()): SG_EINVAL for NULL arguments,
 * n < 1 or negative sizes; SG_EIO when the file cannot be created or written.
 */
#ifndef SGX_SVG_H
#define SGX_SVG_H

#include <stdbool.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One attention matrix: row t (a target token) holds the weights over the S source tokens. */
typedef struct sgx_heatmap {
    const char *title;      /* may be NULL */
    int T, S;               /* rows, columns; 0 draws an "(empty)" panel */
    const float *w;         /* [T, S] row-major; values clamped to [0, 1], NaN drawn grey */
    const char *const *src; /* S column labels, or NULL for 0..S-1 */
    const char *const *tgt; /* T row labels, or NULL for 0..T-1 */
} sgx_heatmap;

/* Writes n heatmaps stacked vertically (one shared colour scale) to `path`. */
int sgx_svg_heatmaps(const char *path, const sgx_heatmap *maps, int n);

/* One named series of n points. NaN/Inf points are skipped and break the line; so are
 * y <= 0 on a log axis. A series with n == 0 is listed in the legend as "(no data)". */
typedef struct sgx_series {
    const char *label;
    const double *x; /* [n]; NULL means 0, 1, ..., n-1 (line charts only) */
    const double *y; /* [n] */
    int n;
} sgx_series;

typedef enum sgx_chart_kind {
    SGX_CHART_LINES = 0, /* polyline per series; dots at the points when a series has <= 60 */
    SGX_CHART_BARS,      /* grouped bars: category i gets one bar per series, from y[i] */
    SGX_CHART_KIND_COUNT
} sgx_chart_kind;

typedef struct sgx_chart {
    const char *title, *xlabel, *ylabel; /* each may be NULL */
    const sgx_series *series;
    int n_series;
    sgx_chart_kind kind;
    bool log_y;                    /* lines only */
    double x_min, x_max;           /* lines: fixed x range when x_min < x_max, else fitted */
    double y_min, y_max;           /* fixed y range when y_min < y_max, else fitted */
    const char *const *categories; /* bars: n_categories labels (series[k].n must be >= it) */
    int n_categories;
} sgx_chart;

/* Writes n charts stacked vertically to `path`. */
int sgx_svg_charts(const char *path, const sgx_chart *charts, int n);

#ifdef __cplusplus
}
#endif
#endif
