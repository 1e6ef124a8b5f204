/* bench_util.h - what the MODELS.md 10.2 benchmark programs share: clocks, memory
 * readings, the OMP_WAIT_POLICY re-exec, statistics and a tiny JSON writer. Header-only
 * (static functions) so every bench program stays one file plus this. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "sg_error.h"

#define BCHECK(x)                                                                           \
    do {                                                                                    \
        if (!(x)) {                                                                         \
            fprintf(stderr, "%s: %s failed: %s\n", bench_prog, #x, sg_last_error());        \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

static const char *bench_prog = "bench";

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* libgomp (BLIS's threads) reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it is
 * loaded, so they have to be in the environment before the process starts: re-run
 * ourselves with them set (idle threads then sleep after a short spin instead of spinning
 * on; the PyTorch reference sets PASSIVE too). Without a spin count PASSIVE means sleeping
 * at once, and every parallel region pays a futex wake-up (dates-bahdanau at 2 threads:
 * 12k instead of 31k tok/s). */
static inline void bench_reexec_passive(char **argv)
{
    const char *v = getenv("OMP_WAIT_POLICY");
    if (v && *v)
        return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    setenv("GOMP_SPINCOUNT", "10000", 0);
    execv("/proc/self/exe", argv);
    /* exec failed: go on, the numbers may suffer with more than one thread */
}

/* Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux). */
static inline double bench_peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* Minor page faults of this process so far (fresh memory being touched). */
static inline long bench_minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* Current resident set size in MiB (/proc/self/statm), -1 if unreadable. */
static inline double bench_rss_mb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res < 0 ? -1 : (double)res * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) like Python's statistics.median (mean of the middle two). */
static inline double bench_median(const double *v, int n)
{
    double s[64];
    if (n < 1 || n > 64)
        return 0;
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, bench_cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static inline double bench_min(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

static inline double bench_max(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

/* Python's round(x, d) for reporting (half away from zero is close enough here). */
static inline double bench_round(double x, int d)
{
    double p = 1;
    for (int i = 0; i < d; i++)
        p *= 10;
    return (double)llround(x * p) / p;
}

/* ---- a one-line JSON object writer ---------------------------------------------- */

typedef struct bench_json {
    FILE *f;
    int n; /* members written at the current nesting level (0: no comma yet) */
} bench_json;

static inline void bench_json_key(bench_json *j, const char *key)
{
    fprintf(j->f, "%s\"%s\": ", j->n++ ? ", " : "", key);
}

static inline void bench_json_str(bench_json *j, const char *key, const char *v)
{
    bench_json_key(j, key);
    fputc('"', j->f);
    for (const char *c = v; *c; c++) {
        if (*c == '"' || *c == '\\')
            fputc('\\', j->f);
        fputc(*c, j->f);
    }
    fputc('"', j->f);
}

static inline void bench_json_int(bench_json *j, const char *key, long long v)
{
    bench_json_key(j, key);
    fprintf(j->f, "%lld", v);
}

/* Numbers rounded to d decimals, printed without trailing noise. */
static inline void bench_json_num(bench_json *j, const char *key, double v, int d)
{
    bench_json_key(j, key);
    fprintf(j->f, "%.*f", d, bench_round(v, d));
}

static inline void bench_json_nums(bench_json *j, const char *key, const double *v, int n, int d)
{
    bench_json_key(j, key);
    fputc('[', j->f);
    for (int i = 0; i < n; i++)
        fprintf(j->f, "%s%.*f", i ? ", " : "", d, bench_round(v[i], d));
    fputc(']', j->f);
}

static inline void bench_json_bool(bench_json *j, const char *key, bool v)
{
    bench_json_key(j, key);
    fputs(v ? "true" : "false", j->f);
}

/* Opens a nested object as the value of key; close it with bench_json_close. Returns
 * the member count of the outer level, to restore. */
static inline int bench_json_open(bench_json *j, const char *key)
{
    bench_json_key(j, key);
    fputc('{', j->f);
    int outer = j->n;
    j->n = 0;
    return outer;
}

static inline void bench_json_close(bench_json *j, int outer)
{
    fputc('}', j->f);
    j->n = outer;
}

#endif
