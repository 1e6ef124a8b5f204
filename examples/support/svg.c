/* svg.c - heatmaps and charts as plain SVG text. Coordinates in px, y grows downwards. */
#include "svg.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define FONT "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
#define LABEL_MAX 20 /* code points shown of a label before it is cut with an ellipsis */

/* ------------------------------------------------------------- text */

/* Length of the valid UTF-8 sequence at s, or 0 if invalid. Sets *cp to the code point. */
static int utf8_seq(const unsigned char *s, uint32_t *cp)
{
    int n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3
          : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0)
        return 0;
    uint32_t c = n == 1 ? s[0] : (uint32_t)(s[0] & (0x7F >> n));
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min_cp[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

/* Writes s escaped for XML text and attributes, at most `max_cp` code points (then "…"). */
static void put_esc(FILE *f, const char *s, int max_cp)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    for (int k = 0; *p; k++) {
        if (k == max_cp) {
            fputs("\u2026", f);
            return;
        }
        uint32_t cp;
        int n = utf8_seq(p, &cp);
        if (n == 0 || (cp < 0x20 && cp != '\t') || cp == 0x7F) {
            fputc('?', f); /* not representable in XML 1.0 */
            p += n ? n : 1;
            continue;
        }
        switch (cp) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fwrite(p, 1, (size_t)n, f);
        }
        p += n;
    }
}

/* Estimated width in px of s (cut like put_esc) at font size `px`: wide scripts count double. */
static double text_width(const char *s, double px, int max_cp)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    double w = 0;
    for (int k = 0; *p; k++) {
        if (k == max_cp)
            return w + px;
        uint32_t cp = '?';
        int n = utf8_seq(p, &cp);
        p += n ? n : 1;
        bool wide = cp >= 0x1100 && (cp <= 0x115F || (cp >= 0x2E80 && cp <= 0xA4CF) ||
                                     (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
                                     (cp >= 0xFF00 && cp <= 0xFF60) || cp >= 0x1F300);
        w += (wide ? 1.0 : cp == ' ' || cp == 'i' || cp == 'l' || cp == '.' ? 0.33 : 0.62) * px;
    }
    return w;
}

static void put_text(FILE *f, double x, double y, const char *anchor, double px, const char *extra,
                     const char *s, int max_cp)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%g\" text-anchor=\"%s\"%s%s>", x, y, px,
            anchor, extra ? " " : "", extra ? extra : "");
    put_esc(f, s, max_cp);
    fputs("</text>\n", f);
}

static FILE *open_svg(const char *path, const char *fn, double W, double H)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        sgx_error(SG_EIO, "%s: cannot create '%s': %s", fn, path, strerror(errno));
        return NULL;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" " FONT ">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    return f;
}

static int close_svg(FILE *f, const char *path, const char *fn)
{
    fputs("</svg>\n", f);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad)
        return sgx_error(SG_EIO, "%s: cannot write '%s': %s", fn, path, strerror(errno));
    return SG_OK;
}

/* ---------------------------------------------------------- heatmaps */

/* Sequential white -> dark blue ramp; the legend's gradient uses the same stops. */
static const unsigned char ramp[5][3] = {
    {247, 251, 255}, {198, 219, 239}, {107, 174, 214}, {33, 113, 181}, {8, 48, 107}};

static void ramp_colour(double v, char out[8])
{
    if (isnan(v)) {
        snprintf(out, 8, "#bbbbbb");
        return;
    }
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    double t = v * 4;
    int i = t >= 4 ? 3 : (int)t;
    double a = t - i;
    int c[3];
    for (int k = 0; k < 3; k++)
        c[k] = (int)lround(ramp[i][k] + a * (ramp[i + 1][k] - ramp[i][k]));
    snprintf(out, 8, "#%02x%02x%02x", c[0], c[1], c[2]);
}

enum { HM_LABEL_PX = 12, HM_GAP = 28, HM_MARGIN = 12, HM_LEGEND_W = 70 };
#define HM_SIN45 0.70710678

/* Geometry of one heatmap panel. */
typedef struct hm_layout {
    double cell, left, top, right, width, height;
} hm_layout;

/* A token that is one space (character-level models) is shown as the open-box symbol. */
static const char *visible(const char *tok) { return strcmp(tok, " ") ? tok : "\u2423"; }

static const char *row_label(const sgx_heatmap *h, int t, char *buf)
{
    if (h->tgt && h->tgt[t])
        return visible(h->tgt[t]);
    snprintf(buf, 16, "%d", t);
    return buf;
}

static const char *col_label(const sgx_heatmap *h, int s, char *buf)
{
    if (h->src && h->src[s])
        return visible(h->src[s]);
    snprintf(buf, 16, "%d", s);
    return buf;
}

static hm_layout hm_measure(const sgx_heatmap *h)
{
    hm_layout L;
    int m = h->T > h->S ? h->T : h->S;
    L.cell = m > 0 ? 520.0 / m : 20;
    L.cell = L.cell < 12 ? 12 : L.cell > 30 ? 30 : L.cell;
    char buf[16];
    double rw = 0, up = 0, over = 0; /* row label width, column label rise, overhang right */
    for (int t = 0; t < h->T; t++) {
        double w = text_width(row_label(h, t, buf), HM_LABEL_PX, LABEL_MAX);
        rw = w > rw ? w : rw;
    }
    for (int s = 0; s < (h->T > 0 ? h->S : 0); s++) {
        /* rotated -45 degrees about the column centre: rises and runs by w*sin45 */
        double w = text_width(col_label(h, s, buf), HM_LABEL_PX, LABEL_MAX) * HM_SIN45;
        up = w > up ? w : up;
        double o = (s + 0.5) * L.cell + w - h->S * L.cell;
        over = o > over ? o : over;
    }
    double title_w = h->title ? text_width(h->title, 14, 200) : 0;
    L.left = HM_MARGIN + rw + 8;
    L.top = (h->title ? 26 : 6) + up + 20; /* + the rotated glyphs' own height */
    L.right = (over > HM_LEGEND_W ? over : HM_LEGEND_W) + HM_MARGIN;
    L.width = L.left + h->S * L.cell + L.right;
    if (title_w + 2 * HM_MARGIN > L.width)
        L.width = title_w + 2 * HM_MARGIN;
    L.height = L.top + (h->T > 0 ? h->T * L.cell : 40) + HM_MARGIN;
    if (h->T > 0 && h->S > 0 && L.height < L.top + 120) /* room for the legend */
        L.height = L.top + 120;
    return L;
}

static void hm_draw(FILE *f, const sgx_heatmap *h, const hm_layout *L, double y0)
{
    char buf[16], col[8];
    const double c = L->cell, x0 = L->left, top = y0 + L->top;
    if (h->title)
        put_text(f, HM_MARGIN, y0 + 20, "start", 14, "font-weight=\"bold\"", h->title, 200);
    if (h->T == 0 || h->S == 0) {
        put_text(f, x0, top + 24, "start", 12, "fill=\"#777\"", "(empty)", 50);
        return;
    }
    fprintf(f, "<g shape-rendering=\"crispEdges\">\n");
    for (int t = 0; t < h->T; t++) {
        for (int s = 0; s < h->S; s++) {
            double v = h->w[(size_t)t * (size_t)h->S + (size_t)s];
            ramp_colour(v, col);
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                       "<title>",
                    x0 + s * c, top + t * c, c, c, col);
            put_esc(f, row_label(h, t, buf), 200);
            fputs(" \u2190 ", f);
            put_esc(f, col_label(h, s, buf), 200);
            fprintf(f, ": %.3f</title></rect>\n", v);
        }
    }
    fprintf(f, "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#444\" stroke-width=\"0.8\"/>\n",
            x0, top, h->S * c, h->T * c);
    for (int t = 0; t < h->T; t++)
        put_text(f, x0 - 6, top + (t + 0.5) * c + 4, "end", HM_LABEL_PX, NULL,
                 row_label(h, t, buf), LABEL_MAX);
    for (int s = 0; s < h->S; s++) {
        double cx = x0 + (s + 0.5) * c, cy = top - 6;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%d\" transform=\"rotate(-45 %.1f %.1f)\">",
                cx, cy, HM_LABEL_PX, cx, cy);
        put_esc(f, col_label(h, s, buf), LABEL_MAX);
        fputs("</text>\n", f);
    }
    /* colour scale: a vertical bar, 1 at the top */
    double lx = x0 + h->S * c + 24, ly = top, lh = 100;
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"%.1f\" fill=\"url(#sgx-ramp)\" "
               "stroke=\"#444\" stroke-width=\"0.8\"/>\n",
            lx, ly, lh);
    for (int k = 0; k <= 2; k++) {
        double yy = ly + lh * (1 - k / 2.0);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n",
                lx + 12, yy, lx + 15, yy);
        snprintf(buf, sizeof buf, "%.1f", k / 2.0);
        put_text(f, lx + 18, yy + 4, "start", 11, NULL, buf, 10);
    }
}

int sgx_svg_heatmaps(const char *path, const sgx_heatmap *maps, int n)
{
    const char *fn = "sgx_svg_heatmaps";
    if (!path || !maps || n < 1)
        return sgx_error(SG_EINVAL, "%s: %s", fn, !path ? "path is NULL"
                                                  : !maps ? "maps is NULL" : "no heatmaps (n < 1)");
    for (int i = 0; i < n; i++)
        if (maps[i].T < 0 || maps[i].S < 0 || (maps[i].T > 0 && maps[i].S > 0 && !maps[i].w))
            return sgx_error(SG_EINVAL, "%s: heatmap %d has T=%d S=%d and weights %p", fn, i,
                             maps[i].T, maps[i].S, (const void *)maps[i].w);
    double W = 0, H = 0;
    for (int i = 0; i < n; i++) {
        hm_layout L = hm_measure(&maps[i]);
        W = L.width > W ? L.width : W;
        H += L.height + (i ? HM_GAP : 0);
    }
    FILE *f = open_svg(path, fn, W, H);
    if (!f)
        return SG_EIO;
    fputs("<defs><linearGradient id=\"sgx-ramp\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">", f);
    for (int k = 0; k < 5; k++)
        fprintf(f, "<stop offset=\"%g\" stop-color=\"#%02x%02x%02x\"/>", k / 4.0, ramp[k][0],
                ramp[k][1], ramp[k][2]);
    fputs("</linearGradient></defs>\n", f);
    double y = 0;
    for (int i = 0; i < n; i++) {
        hm_layout L = hm_measure(&maps[i]);
        if (i)
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                    HM_MARGIN, y + HM_GAP / 2.0, W - HM_MARGIN, y + HM_GAP / 2.0);
        y += i ? HM_GAP : 0;
        hm_draw(f, &maps[i], &L, y);
        y += L.height;
    }
    return close_svg(f, path, fn);
}

/* ------------------------------------------------------------ charts */

enum { CH_W = 720, CH_H = 380, CH_LEFT = 72, CH_RIGHT = 24, CH_TOP = 40, CH_BOTTOM = 52 };

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define N_PALETTE (int)(sizeof palette / sizeof palette[0])

/* An axis: data range [lo, hi] mapped onto pixels, with its tick values. */
typedef struct axis {
    double lo, hi; /* in data units, or log10 of them when log */
    bool log;
    double ticks[32];
    int n_ticks;
    int decimals; /* for linear tick labels */
} axis;

/* A step of 1, 2 or 5 times a power of ten, close to span / target. */
static double nice_step(double span, int target)
{
    double raw = span / target, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

/* Fits a linear axis to [lo, hi], widened to whole ticks. */
static void axis_linear(axis *a, double lo, double hi, bool exact)
{
    if (!(hi > lo)) { /* one value or nothing: centre it in a unit-wide range */
        double c = isfinite(lo) ? lo : 0, d = fabs(c) > 0 ? fabs(c) * 0.1 : 1;
        lo = c - d;
        hi = c + d;
    }
    double step = nice_step(hi - lo, 5);
    a->log = false;
    a->lo = exact ? lo : floor(lo / step + 1e-9) * step;
    a->hi = exact ? hi : ceil(hi / step - 1e-9) * step;
    a->n_ticks = 0;
    for (double t = ceil(a->lo / step - 1e-9) * step; t <= a->hi + step * 1e-9 && a->n_ticks < 32;
         t += step)
        a->ticks[a->n_ticks++] = fabs(t) < step * 1e-9 ? 0 : t;
    a->decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
}

/* Fits a log10 axis to the positive range [lo, hi]: ticks 1-2-5 per decade, or whole decades
 * when the range spans many. */
static void axis_log(axis *a, double lo, double hi)
{
    if (!(lo > 0) || !(hi >= lo)) {
        lo = 1;
        hi = 10;
    }
    double l0 = log10(lo), l1 = log10(hi);
    if (l1 - l0 < 0.3) { /* a narrow range: pad it to a third of a decade */
        double m = (l0 + l1) / 2;
        l0 = m - 0.15;
        l1 = m + 0.15;
    }
    a->log = true;
    a->lo = l0 - 0.03 * (l1 - l0);
    a->hi = l1 + 0.03 * (l1 - l0);
    a->n_ticks = 0;
    /* tick mantissas per decade: denser when the axis spans fewer decades */
    static const double m_all[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, m_some[] = {1, 2, 3, 5},
                        m_few[] = {1, 2, 5}, m_one[] = {1};
    double span = a->hi - a->lo;
    const double *mult = span < 1 ? m_all : span < 2 ? m_some : span <= 3.5 ? m_few : m_one;
    int nm = span < 1 ? 9 : span < 2 ? 4 : span <= 3.5 ? 3 : 1;
    for (int d = (int)floor(a->lo); d <= (int)ceil(a->hi) && a->n_ticks < 32; d++)
        for (int k = 0; k < nm && a->n_ticks < 32; k++) {
            double v = mult[k] * pow(10, d), lv = log10(v);
            if (lv >= a->lo - 1e-9 && lv <= a->hi + 1e-9)
                a->ticks[a->n_ticks++] = v;
        }
}

static double axis_frac(const axis *a, double v)
{
    double u = a->log ? log10(v) : v;
    return (u - a->lo) / (a->hi - a->lo);
}

static void tick_label(const axis *a, double v, char *buf, size_t n)
{
    if (a->log)
        snprintf(buf, n, "%g", v);
    else if (fabs(v) >= 1e6)
        snprintf(buf, n, "%.3g", v);
    else
        snprintf(buf, n, "%.*f", a->decimals, v);
}

static bool point_ok(const sgx_chart *c, double x, double y)
{
    return isfinite(x) && isfinite(y) && (!c->log_y || y > 0);
}

static double series_x(const sgx_series *s, int i) { return s->x ? s->x[i] : (double)i; }

static int chart_check(const sgx_chart *c, int i, const char *fn)
{
    if (c->n_series < 0 || (c->n_series > 0 && !c->series))
        return sgx_error(SG_EINVAL, "%s: chart %d has n_series=%d and series %p", fn, i,
                         c->n_series, (const void *)c->series);
    if ((unsigned)c->kind >= SGX_CHART_KIND_COUNT)
        return sgx_error(SG_EINVAL, "%s: chart %d has unknown kind %d", fn, i, (int)c->kind);
    if (c->kind == SGX_CHART_BARS && (c->n_categories < 0 || (c->n_categories > 0 && !c->categories)))
        return sgx_error(SG_EINVAL, "%s: bar chart %d has n_categories=%d and categories %p", fn,
                         i, c->n_categories, (const void *)c->categories);
    for (int k = 0; k < c->n_series; k++) {
        const sgx_series *s = &c->series[k];
        int need = c->kind == SGX_CHART_BARS ? c->n_categories : 0;
        if (s->n < 0 || (s->n > 0 && !s->y) || s->n < need)
            return sgx_error(SG_EINVAL, "%s: chart %d series %d ('%s') has n=%d (needs %d) and y %p",
                             fn, i, k, s->label ? s->label : "", s->n, need, (const void *)s->y);
    }
    return SG_OK;
}

/* The legend: one row of swatches under the title, wrapped when wide, so it never hides
 * data. Returns the height it takes (draw=false only measures). */
static double legend(FILE *f, const sgx_chart *c, double px0, double px1, double y, bool draw)
{
    const bool bars = c->kind == SGX_CHART_BARS;
    double x = px0, rows = c->n_series > 0;
    for (int k = 0; k < c->n_series; k++) {
        const sgx_series *s = &c->series[k];
        double w = 26 + text_width(s->label ? s->label : "", 12, 40) + (s->n == 0 ? 66 : 0) + 18;
        if (x > px0 && x + w > px1) {
            x = px0;
            rows++;
        }
        double yy = y + 18 * (rows - 1) + 9;
        if (draw) {
            if (bars)
                fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"10\" fill=\"%s\"/>\n",
                        x, yy - 5, palette[k % N_PALETTE]);
            else
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                           "stroke-width=\"2\"/>\n",
                        x, yy, x + 18, yy, palette[k % N_PALETTE]);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", x + 24, yy + 4);
            put_esc(f, s->label ? s->label : "", 40);
            fputs(s->n == 0 ? " (no data)</text>\n" : "</text>\n", f);
        }
        x += w;
    }
    return 18 * rows;
}

static void draw_chart(FILE *f, const sgx_chart *c, double y0)
{
    const double px0 = CH_LEFT, px1 = CH_W - CH_RIGHT, py1 = y0 + CH_H - CH_BOTTOM;
    const double py0 = y0 + CH_TOP + legend(f, c, px0, px1, 0, false) + 4;
    const bool bars = c->kind == SGX_CHART_BARS;
    char buf[64];
    /* data ranges */
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    int n_points = 0;
    for (int k = 0; k < c->n_series; k++) {
        const sgx_series *s = &c->series[k];
        int n = bars ? c->n_categories : s->n;
        for (int i = 0; i < n; i++) {
            double x = bars ? i : series_x(s, i), y = s->y[i];
            if (!point_ok(c, x, y))
                continue;
            n_points++;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
        }
    }
    axis ax, ay;
    if (bars) {
        ax.lo = -0.5, ax.hi = c->n_categories - 0.5, ax.log = false, ax.n_ticks = 0;
        if (ylo > 0)
            ylo = 0; /* bars start at zero */
    } else {
        bool xfixed = c->x_min < c->x_max;
        axis_linear(&ax, xfixed ? c->x_min : n_points ? xlo : 0, xfixed ? c->x_max : n_points ? xhi : 1,
                    xfixed);
    }
    bool fixed = c->y_min < c->y_max;
    if (c->log_y && !bars)
        axis_log(&ay, fixed ? c->y_min : n_points ? ylo : 1, fixed ? c->y_max : n_points ? yhi : 10);
    else
        axis_linear(&ay, fixed ? c->y_min : n_points ? ylo : 0, fixed ? c->y_max : n_points ? yhi : 1,
                    fixed);
#define PX(v) (px0 + axis_frac(&ax, (v)) * (px1 - px0))
#define PY(v) (py1 - axis_frac(&ay, (v)) * (py1 - py0))
    if (c->title)
        put_text(f, (px0 + px1) / 2, y0 + 24, "middle", 15, "font-weight=\"bold\"", c->title, 200);
    /* grid and y ticks */
    for (int i = 0; i < ay.n_ticks; i++) {
        double y = PY(ay.ticks[i]);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n",
                px0, y, px1, y);
        tick_label(&ay, ay.ticks[i], buf, sizeof buf);
        put_text(f, px0 - 6, y + 4, "end", 11, NULL, buf, 20);
    }
    for (int i = 0; i < ax.n_ticks; i++) {
        double x = PX(ax.ticks[i]);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n",
                x, py0, x, py1);
        tick_label(&ax, ax.ticks[i], buf, sizeof buf);
        put_text(f, x, py1 + 16, "middle", 11, NULL, buf, 20);
    }
    if (bars) {
        /* category labels: skip some when they would overlap */
        double slot = (px1 - px0) / (c->n_categories > 0 ? c->n_categories : 1), widest = 1;
        for (int i = 0; i < c->n_categories; i++)
            widest = fmax(widest, text_width(c->categories[i], 11, LABEL_MAX) + 6);
        int every = (int)ceil(widest / slot);
        for (int i = 0; i < c->n_categories; i += every > 1 ? every : 1)
            put_text(f, PX(i), py1 + 16, "middle", 11, NULL, c->categories[i] ? c->categories[i] : "",
                     LABEL_MAX);
        double bw = slot * 0.8 / (c->n_series > 0 ? c->n_series : 1);
        double base = PY(fmax(ay.lo, 0));
        for (int k = 0; k < c->n_series; k++) {
            fprintf(f, "<g fill=\"%s\">\n", palette[k % N_PALETTE]);
            for (int i = 0; i < c->n_categories; i++) {
                double y = c->series[k].y[i];
                if (!isfinite(y))
                    continue;
                double x = PX(i) - slot * 0.4 + k * bw, top = PY(y);
                fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>",
                        x, fmin(top, base), bw * 0.92, fabs(base - top));
                put_esc(f, c->series[k].label, 200);
                fprintf(f, ": %g</title></rect>\n", y);
            }
            fputs("</g>\n", f);
        }
    } else {
        fprintf(f, "<g fill=\"none\" stroke-width=\"1.6\" stroke-linejoin=\"round\">\n");
        for (int k = 0; k < c->n_series; k++) {
            const sgx_series *s = &c->series[k];
            const char *col = palette[k % N_PALETTE];
            bool open = false; /* a polyline is being written; NaN closes it */
            for (int i = 0; i < s->n; i++) {
                double x = series_x(s, i), y = s->y[i];
                if (!point_ok(c, x, y)) {
                    if (open)
                        fputs("\"/>\n", f);
                    open = false;
                    continue;
                }
                if (!open)
                    fprintf(f, "<polyline stroke=\"%s\" points=\"", col);
                fprintf(f, "%s%.1f,%.1f", open ? " " : "", PX(x), PY(y));
                open = true;
            }
            if (open)
                fputs("\"/>\n", f);
            if (s->n <= 60) {
                fprintf(f, "<g fill=\"%s\" stroke=\"none\">", col);
                for (int i = 0; i < s->n; i++)
                    if (point_ok(c, series_x(s, i), s->y[i]))
                        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.8\"/>",
                                PX(series_x(s, i)), PY(s->y[i]));
                fputs("</g>\n", f);
            }
        }
        fputs("</g>\n", f);
    }
    if (n_points == 0)
        put_text(f, (px0 + px1) / 2, (py0 + py1) / 2, "middle", 13, "fill=\"#777\"", "no data", 20);
    /* frame, axis titles, legend */
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#444\"/>\n",
            px0, py0, px1 - px0, py1 - py0);
    if (c->xlabel)
        put_text(f, (px0 + px1) / 2, py1 + 38, "middle", 12, NULL, c->xlabel, 80);
    if (c->ylabel) {
        double cx = 18, cy = (py0 + py1) / 2;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
                   "transform=\"rotate(-90 %.1f %.1f)\">",
                cx, cy, cx, cy);
        put_esc(f, c->ylabel, 80);
        fputs("</text>\n", f);
    }
    legend(f, c, px0, px1, y0 + CH_TOP - 4, true);
#undef PX
#undef PY
}

int sgx_svg_charts(const char *path, const sgx_chart *charts, int n)
{
    const char *fn = "sgx_svg_charts";
    if (!path || !charts || n < 1)
        return sgx_error(SG_EINVAL, "%s: %s", fn, !path ? "path is NULL"
                                                  : !charts ? "charts is NULL" : "no charts (n < 1)");
    for (int i = 0; i < n; i++)
        if (chart_check(&charts[i], i, fn) < 0)
            return SG_EINVAL;
    FILE *f = open_svg(path, fn, CH_W, (double)CH_H * n);
    if (!f)
        return SG_EIO;
    for (int i = 0; i < n; i++)
        draw_chart(f, &charts[i], (double)CH_H * i);
    return close_svg(f, path, fn);
}
