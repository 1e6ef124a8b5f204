/* tasks.c - built-in generated tasks: dates -> ISO dates, copy/reverse/sort sequences.
 * They let programs and tests run without data files; like make_dates.py (the
 * reference generator of shared/data/dates) they are seeded and keep sources unique
 * across splits so train/valid/test never overlap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

static const char *const months[12] = {"january", "february", "march",     "april",
                                       "may",     "june",     "july",      "august",
                                       "september", "october", "november", "december"};
static const char *const days[7] = {"monday", "tuesday",  "wednesday", "thursday",
                                    "friday", "saturday", "sunday"};

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (H. Hinnant's
 * civil-calendar algorithms: 400-year eras of 146097 days). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static const char *ordinal_suffix(int n)
{
    if (n % 100 >= 11 && n % 100 <= 13)
        return "th";
    switch (n % 10) {
    case 1: return "st";
    case 2: return "nd";
    case 3: return "rd";
    default: return "th";
    }
}

/* Copies s with its first letter upper-cased (ASCII names only). */
static const char *cap(const char *s, char *buf, size_t n)
{
    snprintf(buf, n, "%s", s);
    if (buf[0] >= 'a' && buf[0] <= 'z')
        buf[0] = (char)(buf[0] - 'a' + 'A');
    return buf;
}

#define N_DATE_FORMATS 14

/* Writes date (y, m, d, weekday wd with monday = 0) in format f. */
static void format_date(char *out, size_t n, int f, int y, int m, int d, int wd)
{
    const char *mon = months[m - 1], *day = days[wd], *suf = ordinal_suffix(d);
    char cm[16], cd[16];
    switch (f) {
    case 0: snprintf(out, n, "%s %d %s %d", day, d, mon, y); break;         /* saturday 9 may 2018 */
    case 1: snprintf(out, n, "%d %s %d", d, mon, y); break;                 /* 9 may 2018 */
    case 2: snprintf(out, n, "%s %d, %d", cap(mon, cm, 16), d, y); break;   /* May 9, 2018 */
    case 3: snprintf(out, n, "%s, %s %d%s, %d", cap(day, cd, 16), cap(mon, cm, 16), d, suf, y);
        break;                                                              /* Saturday, May 9th, 2018 */
    case 4: snprintf(out, n, "%d %.3s %d", d, mon, y); break;               /* 9 may 2018 */
    case 5: snprintf(out, n, "%.3s %02d %d", cap(mon, cm, 16), d, y); break; /* May 09 2018 */
    case 6: snprintf(out, n, "%02d.%02d.%d", d, m, y); break;               /* 09.05.2018 */
    case 7: snprintf(out, n, "the %d%s of %s %d", d, suf, mon, y); break;   /* the 9th of may 2018 */
    case 8: snprintf(out, n, "%.3s %d %.3s %d", day, d, mon, y); break;     /* sat 9 may 2018 */
    case 9: snprintf(out, n, "%d/%02d/%02d", y, m, d); break;               /* 2018/05/09 */
    /* dd/mm/yy: the years 1950..2049 map one-to-one to yy (50..99 -> 19yy, 00..49 -> 20yy). */
    case 10: snprintf(out, n, "%02d/%02d/%02d", d, m, y % 100); break;      /* 09/05/18 */
    case 11: snprintf(out, n, "%d %s %d", d, cap(mon, cm, 16), y); break;   /* 9 May 2018 */
    case 12: snprintf(out, n, "%s %d%s %d", cap(mon, cm, 16), d, suf, y); break; /* May 9th 2018 */
    default: snprintf(out, n, "%02d-%.3s-%d", d, mon, y); break;            /* 09-may-2018 */
    }
}

/* Shared driver: draw(rng, src, tgt) makes one candidate pair; duplicates of an
 * earlier source are redrawn. Pairs go to the splits in order train, valid, test. */
typedef void (*draw_fn)(sg_rng *r, char *src, char *tgt, size_t n, const void *user);

static int generate(const char *fn, sg_text_pairs splits[SG_SPLIT_COUNT], uint64_t seed,
                    const int64_t counts[SG_SPLIT_COUNT], draw_fn draw, const void *user,
                    size_t bufsize)
{
    sg_text_pairs sp[SG_SPLIT_COUNT] = {{0}};
    sg__strmap seen = {0};
    sg_rng rng;
    sg_rng_seed(&rng, seed);
    char *src = malloc(bufsize), *tgt = malloc(bufsize);
    int rc = src && tgt ? SG_OK : SG_ENOMEM;
    for (int s = 0; s < SG_SPLIT_COUNT && rc == SG_OK; s++) {
        while (sp[s].n < counts[s] && rc == SG_OK) {
            draw(&rng, src, tgt, bufsize, user);
            int added;
            if (sg__strmap_insert(&seen, src, (int64_t)strlen(src), 0, &added) < 0)
                rc = SG_ENOMEM;
            else if (added)
                rc = sg_text_pairs_push(&sp[s], src, tgt);
        }
    }
    free(src);
    free(tgt);
    sg__strmap_free(&seen);
    if (rc != SG_OK) {
        for (int s = 0; s < SG_SPLIT_COUNT; s++)
            sg_text_pairs_free(&sp[s]);
        return sg__error(SG_ENOMEM, "%s: out of memory", fn);
    }
    for (int s = 0; s < SG_SPLIT_COUNT; s++)
        splits[s] = sp[s];
    return SG_OK;
}

static void draw_date(sg_rng *r, char *src, char *tgt, size_t n, const void *user)
{
    (void)user;
    int64_t lo = days_from_civil(1950, 1, 1), hi = days_from_civil(2049, 12, 31);
    int64_t z = lo + (int64_t)sg_rng_below(r, (uint64_t)(hi - lo + 1));
    int f = (int)sg_rng_below(r, N_DATE_FORMATS);
    int y, m, d;
    civil_from_days(z, &y, &m, &d);
    int wd = (int)(((z % 7) + 7 + 3) % 7); /* 1970-01-01 was a Thursday (3) */
    format_date(src, n, f, y, m, d, wd);
    snprintf(tgt, n, "%04d-%02d-%02d", y, m, d);
}

int sg_task_dates(sg_text_pairs splits[SG_SPLIT_COUNT], uint64_t seed, int64_t n_train,
                  int64_t n_valid, int64_t n_test)
{
    if (!splits || n_train < 0 || n_valid < 0 || n_test < 0 ||
        n_train + n_valid + n_test > 200000)
        return sg__error(SG_EINVAL,
                         "sg_task_dates: NULL splits or bad counts %lld/%lld/%lld (each >= 0, "
                         "total <= 200000)",
                         (long long)n_train, (long long)n_valid, (long long)n_test);
    const int64_t counts[SG_SPLIT_COUNT] = {n_train, n_valid, n_test};
    return generate("sg_task_dates", splits, seed, counts, draw_date, NULL, 64);
}

static const char symbols[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

typedef struct {
    sg_seq_task task;
    int64_t min_len, max_len;
    int n_symbols;
} seq_opts;

static int cmp_char(const void *a, const void *b)
{
    return *(const char *)a - *(const char *)b;
}

/* "a b c" from the L symbols (out holds 2L bytes). */
static void join_symbols(char *out, const char *sym, int64_t L)
{
    for (int64_t i = 0; i < L; i++) {
        if (i > 0)
            *out++ = ' ';
        *out++ = sym[i];
    }
    *out = '\0';
}

static void draw_seq(sg_rng *r, char *src, char *tgt, size_t n, const void *user)
{
    (void)n;
    const seq_opts *o = user;
    int64_t L = o->min_len + (int64_t)sg_rng_below(r, (uint64_t)(o->max_len - o->min_len + 1));
    char sym[1024];
    for (int64_t i = 0; i < L; i++)
        sym[i] = symbols[sg_rng_below(r, (uint64_t)o->n_symbols)];
    join_symbols(src, sym, L);
    if (o->task == SG_SEQ_REVERSE)
        for (int64_t i = 0; i < L / 2; i++) {
            char t = sym[i];
            sym[i] = sym[L - 1 - i];
            sym[L - 1 - i] = t;
        }
    else if (o->task == SG_SEQ_SORT)
        qsort(sym, (size_t)L, 1, cmp_char);
    join_symbols(tgt, sym, L);
}

int sg_task_sequences(sg_text_pairs splits[SG_SPLIT_COUNT], sg_seq_task task, uint64_t seed,
                      int64_t n_train, int64_t n_valid, int64_t n_test, int64_t min_len,
                      int64_t max_len, int n_symbols)
{
    if (!splits || (unsigned)task >= SG_SEQ_TASK_COUNT || n_train < 0 || n_valid < 0 ||
        n_test < 0 || min_len < 1 || max_len < min_len || max_len > 1000 || n_symbols < 2 ||
        n_symbols > 62)
        return sg__error(SG_EINVAL,
                         "sg_task_sequences: bad arguments (task %d, counts %lld/%lld/%lld >= 0, "
                         "1 <= min_len %lld <= max_len %lld <= 1000, 2 <= n_symbols %d <= 62)",
                         (int)task, (long long)n_train, (long long)n_valid, (long long)n_test,
                         (long long)min_len, (long long)max_len, n_symbols);
    /* Distinct sources available: sum over L of n_symbols^L (saturating). */
    int64_t want = n_train + n_valid + n_test, avail = 0;
    for (int64_t L = min_len; L <= max_len && avail < 4 * want + 1; L++) {
        int64_t p = 1;
        for (int64_t i = 0; i < L && p <= 4 * want + 1; i++)
            p *= n_symbols;
        avail += p;
    }
    if (want > avail / 2)
        return sg__error(SG_EINVAL,
                         "sg_task_sequences: %lld distinct sources requested but only %lld exist "
                         "for lengths %lld..%lld over %d symbols (at most half can be drawn)",
                         (long long)want, (long long)avail, (long long)min_len,
                         (long long)max_len, n_symbols);
    const int64_t counts[SG_SPLIT_COUNT] = {n_train, n_valid, n_test};
    seq_opts o = {task, min_len, max_len, n_symbols};
    return generate("sg_task_sequences", splits, seed, counts, draw_seq, &o,
                    (size_t)(2 * max_len + 1));
}
