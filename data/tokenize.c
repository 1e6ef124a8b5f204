/* tokenize.c - token lists and the word/char tokenisers (MODELS.md 2.1, 2.2). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "data_internal.h"

const char *sg_text_level_name(sg_text_level level)
{
    return level == SG_LEVEL_WORD ? "word" : level == SG_LEVEL_CHAR ? "char" : "?";
}

const char *sg_split_name(sg_data_split s)
{
    static const char *names[SG_SPLIT_COUNT] = {"train", "valid", "test"};
    return (unsigned)s < SG_SPLIT_COUNT ? names[s] : "?";
}

/* ---- token lists: a token is built by appending bytes then finishing it. */

static int tok_append(sg_tokens *t, const char *s, int64_t len)
{
    if (!sg__grow((void **)&t->buf, &t->buf_cap, t->buf_len + len + 1, 1))
        return SG_ENOMEM;
    memcpy(t->buf + t->buf_len, s, (size_t)len);
    t->buf_len += len;
    return SG_OK;
}

/* Ends the token whose bytes start at buf offset start. */
static int tok_finish(sg_tokens *t, int64_t start)
{
    if (!sg__grow((void **)&t->off, &t->cap, t->n + 1, sizeof *t->off) ||
        !sg__grow((void **)&t->buf, &t->buf_cap, t->buf_len + 1, 1))
        return SG_ENOMEM;
    t->buf[t->buf_len++] = '\0';
    t->off[t->n++] = start;
    return SG_OK;
}

int sg_tokens_push(sg_tokens *t, const char *s, int64_t len)
{
    if (!t || (!s && len > 0) || len < 0)
        return sg__error(SG_EINVAL, "sg_tokens_push: NULL list/string or negative length");
    int64_t start = t->buf_len;
    int rc = tok_append(t, s, len);
    if (rc == SG_OK)
        rc = tok_finish(t, start);
    if (rc != SG_OK) {
        t->buf_len = start;
        return sg__error(rc, "sg_tokens_push: out of memory");
    }
    return SG_OK;
}

void sg_tokens_clear(sg_tokens *t)
{
    if (t)
        t->n = t->buf_len = 0;
}

void sg_tokens_free(sg_tokens *t)
{
    if (!t)
        return;
    free(t->off);
    free(t->buf);
    memset(t, 0, sizeof *t);
}

/* ---- UTF-8 */

/* Decodes one code point at s (n bytes left); returns its byte length or < 0. */
static int64_t utf8_next(const char *s, int64_t n, int32_t *cp)
{
    if ((unsigned char)s[0] < 0x80) {
        *cp = (unsigned char)s[0];
        return 1;
    }
    return utf8proc_iterate((const utf8proc_uint8_t *)s, n, cp);
}

int64_t sg_utf8_invalid_at(const char *text)
{
    if (!text)
        return -1;
    int64_t n = (int64_t)strlen(text);
    int32_t cp;
    for (int64_t i = 0; i < n;) {
        int64_t k = utf8_next(text + i, n - i, &cp);
        if (k <= 0)
            return i;
        i += k;
    }
    return -1;
}

/* MODELS.md 2.1 classes. */
enum { C_SPACE, C_WORD, C_DEL, C_PUNCT };

static int char_class(int32_t cp)
{
    if ((cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F) || cp == 0x85)
        return C_SPACE;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
        return C_SPACE;
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
    case UTF8PROC_CATEGORY_PC:
        return C_WORD;
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
        return C_DEL;
    default:
        return C_PUNCT;
    }
}

/* Shared scan; on any failure the list is restored to its state on entry. */
static int tokenize_impl(const char *fn, int words, const char *text, sg_tokens *out)
{
    if (!text || !out)
        return sg__error(SG_EINVAL, "%s: NULL text or token list", fn);
    int64_t n0 = out->n, len0 = out->buf_len;
    int64_t n = (int64_t)strlen(text);
    int64_t run = -1; /* buf offset of the word being built, -1 if none */
    int rc = SG_OK;
    int32_t cp;
    for (int64_t i = 0; i < n && rc == SG_OK;) {
        int64_t k = utf8_next(text + i, n - i, &cp);
        if (k <= 0) {
            out->n = n0;
            out->buf_len = len0;
            return sg__error(SG_EFORMAT, "%s: invalid UTF-8 at byte %lld of \"%.40s\"", fn,
                             (long long)i, text);
        }
        if (!words) {
            rc = sg_tokens_push(out, text + i, k);
            i += k;
            continue;
        }
        int c = char_class(cp);
        if (c == C_WORD) {
            if (run < 0)
                run = out->buf_len;
            rc = tok_append(out, text + i, k);
        } else if (c != C_DEL) {
            if (run >= 0) {
                rc = tok_finish(out, run);
                run = -1;
            }
            if (rc == SG_OK && c == C_PUNCT)
                rc = sg_tokens_push(out, text + i, k);
        }
        i += k;
    }
    if (rc == SG_OK && run >= 0)
        rc = tok_finish(out, run);
    if (rc != SG_OK) {
        out->n = n0;
        out->buf_len = len0;
        return sg__error(rc, "%s: out of memory", fn);
    }
    return SG_OK;
}

int sg_tokenize_words(const char *text, sg_tokens *out)
{
    return tokenize_impl("sg_tokenize_words", 1, text, out);
}

int sg_tokenize_chars(const char *text, sg_tokens *out)
{
    return tokenize_impl("sg_tokenize_chars", 0, text, out);
}

int sg_tokenize(sg_text_level level, const char *text, sg_tokens *out)
{
    if (level == SG_LEVEL_WORD)
        return sg_tokenize_words(text, out);
    if (level == SG_LEVEL_CHAR)
        return sg_tokenize_chars(text, out);
    return sg__error(SG_EINVAL, "sg_tokenize: level %d is neither word nor char", (int)level);
}
