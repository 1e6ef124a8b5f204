/* tsv.c - raw sentence pairs and the source<TAB>target reader. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int pairs_push_n(sg_text_pairs *p, const char *s, size_t ns, const char *t, size_t nt)
{
    int64_t cap = p->cap;
    if (!sg__grow((void **)&p->src, &cap, p->n + 1, sizeof *p->src))
        return SG_ENOMEM;
    cap = p->cap;
    if (!sg__grow((void **)&p->tgt, &cap, p->n + 1, sizeof *p->tgt))
        return SG_ENOMEM;
    p->cap = cap;
    char *a = dup_n(s, ns), *b = dup_n(t, nt);
    if (!a || !b) {
        free(a);
        free(b);
        return SG_ENOMEM;
    }
    p->src[p->n] = a;
    p->tgt[p->n] = b;
    p->n++;
    return SG_OK;
}

int sg_text_pairs_push(sg_text_pairs *p, const char *src, const char *tgt)
{
    if (!p || !src || !tgt)
        return sg__error(SG_EINVAL, "sg_text_pairs_push: NULL list, source or target");
    if (pairs_push_n(p, src, strlen(src), tgt, strlen(tgt)) != SG_OK)
        return sg__error(SG_ENOMEM, "sg_text_pairs_push: out of memory at pair %lld",
                         (long long)p->n);
    return SG_OK;
}

void sg_text_pairs_free(sg_text_pairs *p)
{
    if (!p)
        return;
    for (int64_t i = 0; i < p->n; i++) {
        free(p->src[i]);
        free(p->tgt[i]);
    }
    free(p->src);
    free(p->tgt);
    memset(p, 0, sizeof *p);
}

/* Reads the whole file; *data is NUL-terminated. */
static int slurp(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sg__error(SG_EIO, "sg_tsv_read: %s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *q = realloc(buf, cap * 2);
            if (!q) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = q;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf)
        return sg__error(SG_ENOMEM, "sg_tsv_read: %s: out of memory", path);
    if (err) {
        free(buf);
        return sg__error(SG_EIO, "sg_tsv_read: %s: read error", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return SG_OK;
}

/* Checks one line (without its line end) and appends its pair. */
static int parse_line(sg_text_pairs *p, const char *path, long long ln, const char *s, size_t n)
{
    const char *nul = memchr(s, '\0', n);
    if (nul)
        return sg__error(SG_EFORMAT, "sg_tsv_read: %s:%lld: NUL byte at column %lld", path, ln,
                         (long long)(nul - s) + 1);
    /* The line is NUL-free, so it can be checked as a C string in place. */
    char *line = dup_n(s, n);
    if (!line)
        return sg__error(SG_ENOMEM, "sg_tsv_read: %s:%lld: out of memory", path, ln);
    int64_t bad = sg_utf8_invalid_at(line);
    free(line);
    if (bad >= 0)
        return sg__error(SG_EFORMAT, "sg_tsv_read: %s:%lld: invalid UTF-8 at byte column %lld",
                         path, ln, (long long)bad + 1);
    const char *tab = memchr(s, '\t', n);
    if (!tab)
        return sg__error(SG_EFORMAT,
                         "sg_tsv_read: %s:%lld: no TAB (expected source<TAB>target): \"%.*s\"",
                         path, ln, n < 40 ? (int)n : 40, s);
    size_t ns = (size_t)(tab - s), nt = n - ns - 1;
    if (memchr(tab + 1, '\t', nt))
        return sg__error(SG_EFORMAT, "sg_tsv_read: %s:%lld: more than one TAB", path, ln);
    if (ns == 0 || nt == 0)
        return sg__error(SG_EFORMAT, "sg_tsv_read: %s:%lld: empty %s", path, ln,
                         ns == 0 ? "source (line starts with TAB)" : "target (line ends with TAB)");
    if (pairs_push_n(p, s, ns, tab + 1, nt) != SG_OK)
        return sg__error(SG_ENOMEM, "sg_tsv_read: %s:%lld: out of memory", path, ln);
    return SG_OK;
}

int sg_tsv_read(const char *path, sg_text_pairs *out)
{
    if (!out)
        return sg__error(SG_EINVAL, "sg_tsv_read: NULL output");
    memset(out, 0, sizeof *out);
    if (!path)
        return sg__error(SG_EINVAL, "sg_tsv_read: NULL path");
    char *data = NULL;
    size_t len = 0;
    int rc = slurp(path, &data, &len);
    if (rc != SG_OK)
        return rc;
    sg_text_pairs p = {0};
    long long ln = 0;
    for (size_t i = 0; i < len && rc == SG_OK;) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - data) : len, n = end - i;
        ln++;
        if (n > 0 && data[i + n - 1] == '\r') /* CRLF */
            n--;
        if (n > 0)
            rc = parse_line(&p, path, ln, data + i, n);
        i = end + 1;
    }
    free(data);
    if (rc == SG_OK && p.n == 0)
        rc = sg__error(SG_EFORMAT, "sg_tsv_read: %s:%lld: empty file (no source<TAB>target lines)",
                       path, ln > 0 ? ln : 1);
    if (rc != SG_OK) {
        sg_text_pairs_free(&p);
        return rc;
    }
    *out = p;
    return SG_OK;
}
