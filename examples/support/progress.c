/* progress.c - the in-place (TTY) or periodic (log) progress line. */
#include "progress.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double sgx_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void sgx_format_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0) || !isfinite(s) || s > 1e9) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

/* 950 -> "950", 12345 -> "12.3k", 4.2e6 -> "4.2M" */
static void format_rate(char *buf, size_t n, double r)
{
    if (r >= 1e6)
        snprintf(buf, n, "%.1fM", r / 1e6);
    else if (r >= 1e4)
        snprintf(buf, n, "%.1fk", r / 1e3);
    else
        snprintf(buf, n, "%.0f", r);
}

void sgx_progress_begin(sgx_progress *p, FILE *out, int epoch, int n_epochs, int64_t total)
{
    double (*clock)(void) = p->clock ? p->clock : sgx_now;
    memset(p, 0, sizeof *p);
    p->out = out;
    int fd = out ? fileno(out) : -1;
    p->tty = fd >= 0 && isatty(fd);
    p->redraw_hz = 10;
    p->plain_every = 10;
    p->bar_width = 24;
    p->clock = clock;
    p->epoch = epoch;
    p->n_epochs = n_epochs;
    p->total = total;
    p->t_begin = clock();
}

int sgx_progress_format(const sgx_progress *p, char *buf, size_t n)
{
    char ep[48], bar[136], el[32], eta[32], rate[32], loss[32];
    double elapsed = p->clock() - p->t_begin;
    if (p->n_epochs > 0)
        snprintf(ep, sizeof ep, "epoch %d/%d", p->epoch, p->n_epochs);
    else
        snprintf(ep, sizeof ep, "epoch %d", p->epoch);
    bar[0] = '\0';
    eta[0] = '\0';
    if (p->total > 0) {
        int w = p->bar_width < 1 ? 1 : p->bar_width > 128 ? 128 : p->bar_width;
        double frac = (double)p->step / (double)p->total;
        frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
        int full = (int)(frac * w);
        bar[0] = '[';
        for (int i = 0; i < w; i++)
            bar[1 + i] = i < full ? '#' : '.';
        snprintf(bar + 1 + w, sizeof bar - 1 - (size_t)w, "] %3d%%", (int)(100 * frac));
        if (p->step > 0 && p->step < p->total) {
            char d[24];
            sgx_format_duration(d, sizeof d, elapsed * (double)(p->total - p->step) / (double)p->step);
            snprintf(eta, sizeof eta, " < %s", d);
        }
    }
    sgx_format_duration(el, sizeof el, elapsed);
    if (p->loss_n > 0)
        snprintf(loss, sizeof loss, "  loss %.4f", p->loss_sum / (double)p->loss_n);
    else
        loss[0] = '\0';
    rate[0] = '\0';
    if (elapsed > 0 && p->tokens > 0) {
        char r[24];
        format_rate(r, sizeof r, p->tokens / elapsed);
        snprintf(rate, sizeof rate, "  %s tok/s", r);
    }
    char steps[64];
    if (p->total > 0)
        snprintf(steps, sizeof steps, "%lld/%lld", (long long)p->step, (long long)p->total);
    else
        snprintf(steps, sizeof steps, "step %lld", (long long)p->step);
    int len = snprintf(buf, n, "%s  %s%s%s%s%s  %s%s", ep, steps, bar[0] ? " " : "", bar, loss,
                       rate, el, eta);
    if (len < 0)
        return 0;
    return n == 0 ? 0 : (size_t)len >= n ? (int)n - 1 : len;
}

static void draw(sgx_progress *p, bool final)
{
    char line[512];
    int len = sgx_progress_format(p, line, sizeof line);
    if (p->tty) {
        /* pad with blanks so a shorter line fully covers the previous one */
        int pad = p->last_len > len ? p->last_len - len : 0;
        fprintf(p->out, "\r%s%*s%s", line, pad, "", final ? "\n" : "");
        p->last_len = len;
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
    p->t_drawn = p->clock();
    p->drawn = true;
}

void sgx_progress_update(sgx_progress *p, int64_t step, double loss, int64_t tokens)
{
    p->step = step;
    if (!isnan(loss)) {
        p->loss_sum += loss;
        p->loss_n++;
    }
    p->tokens += (double)tokens;
    if (!p->out)
        return;
    double now = p->clock();
    double gap = p->tty ? (p->redraw_hz > 0 ? 1.0 / p->redraw_hz : 0) : p->plain_every;
    /* the first plain line waits a full period: short loops print only the final line */
    double since = p->drawn ? now - p->t_drawn : (p->tty ? gap : now - p->t_begin);
    if (since >= gap)
        draw(p, false);
}

void sgx_progress_finish(sgx_progress *p)
{
    if (p->out)
        draw(p, true);
}
