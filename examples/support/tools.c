/* tools.c - line reading with file:line errors and checkpoint loading for the tools. */
#include "tools.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int sgx_lines_open(sgx_line_reader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    if (!path || !strcmp(path, "-")) {
        r->f = stdin;
        r->name = "<stdin>";
        return SG_OK;
    }
    r->f = fopen(path, "rb");
    if (!r->f)
        return sgx_error(SG_EIO, "cannot open %s: %s", path, strerror(errno));
    r->name = path;
    r->owned = true;
    return SG_OK;
}

int sgx_lines_next(sgx_line_reader *r, const char **line)
{
    errno = 0;
    ssize_t n = getline(&r->buf, &r->cap, r->f);
    if (n < 0) {
        if (ferror(r->f))
            return sgx_error(SG_EIO, "%s: read error after line %lld: %s", r->name,
                             (long long)r->line, strerror(errno ? errno : EIO));
        return 0;
    }
    r->line++;
    if (n > 0 && r->buf[n - 1] == '\n')
        r->buf[--n] = '\0';
    if (n > 0 && r->buf[n - 1] == '\r')
        r->buf[--n] = '\0';
    if ((ssize_t)strlen(r->buf) != n)
        return sgx_error(SG_EFORMAT, "%s:%lld: NUL byte at column %zu", r->name,
                         (long long)r->line, strlen(r->buf) + 1);
    int64_t bad = sg_utf8_invalid_at(r->buf);
    if (bad >= 0)
        return sgx_error(SG_EFORMAT, "%s:%lld: invalid UTF-8 at byte %lld", r->name,
                         (long long)r->line, (long long)bad + 1);
    *line = r->buf;
    return 1;
}

void sgx_lines_close(sgx_line_reader *r)
{
    if (r->owned && r->f)
        fclose(r->f);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

int sgx_level_parse(const char *s)
{
    if (s && !strcmp(s, "word"))
        return SG_LEVEL_WORD;
    if (s && !strcmp(s, "char"))
        return SG_LEVEL_CHAR;
    return -1;
}

int sgx_translator_load(sgx_translator *t, const char *path, const char *level_override)
{
    memset(t, 0, sizeof *t);
    sg_checkpoint_init(&t->meta);
    t->model = sg_model_load(path, SG_F32, &t->meta);
    if (!t->model)
        return sg_last_error()[0] ? SG_EFORMAT : sgx_error(SG_EIO, "cannot load %s", path);
    int rc = SG_OK;
    static const char *const side[2] = {"src", "tgt"};
    for (int k = 0; k < 2 && rc == SG_OK; k++)
        if (t->meta.vocab[k].n == 0)
            rc = sgx_error(SG_EFORMAT, "%s has no /vocab/%s: the tools need the vocabularies "
                           "(train_seq2seq --save writes them)", path, side[k]);
    if (rc == SG_OK) {
        t->src_vocab = sg_vocab_from_strings((const char *const *)t->meta.vocab[0].tokens,
                                             t->meta.vocab[0].n);
        t->tgt_vocab = sg_vocab_from_strings((const char *const *)t->meta.vocab[1].tokens,
                                             t->meta.vocab[1].n);
        if (!t->src_vocab || !t->tgt_vocab)
            rc = SG_EFORMAT;
    }
    if (rc == SG_OK) {
        int level = -1;
        const char *name = level_override;
        if (!name) {   /* the target side decides how output is written; src as fallback */
            const sg_attr *a = sg_attrs_find(&t->meta.vocab[1].attrs, "level");
            if (!a || a->type != SG_ATTR_STR)
                a = sg_attrs_find(&t->meta.vocab[0].attrs, "level");
            name = a && a->type == SG_ATTR_STR ? a->s : NULL;
        }
        level = sgx_level_parse(name);
        if (level < 0)
            rc = name ? sgx_error(SG_EFORMAT, "%s: unknown tokenisation level '%s' (word|char)",
                                  path, name)
                      : sgx_error(SG_EFORMAT, "%s: /vocab has no 'level' attribute: give "
                                  "--level word|char", path);
        t->level = (sg_text_level)(level < 0 ? 0 : level);
    }
    if (rc != SG_OK)
        sgx_translator_free(t);
    return rc;
}

void sgx_translator_free(sgx_translator *t)
{
    sg_model_free(t->model);
    sg_vocab_free(t->src_vocab);
    sg_vocab_free(t->tgt_vocab);
    sg_checkpoint_clear(&t->meta);
    memset(t, 0, sizeof *t);
}
