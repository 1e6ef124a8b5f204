/*
 * tools.h - what the command-line tools (translate, evaluate, ckpt_info, ckpt_average)
 * share: a line reader whose errors name "file:line", and loading a checkpoint together
 * with its vocabularies and tokenisation level.
 *
 *     sgx_line_reader r;
 *     CHECK(sgx_lines_open(&r, path) == SG_OK);          // NULL or "-": stdin
 *     const char *line;
 *     int rc;
 *     while ((rc = sgx_lines_next(&r, &line)) > 0)  ... line (no "\n", no trailing "\r") ...
 *     CHECK(rc == 0);                                    // "in.txt:7: invalid UTF-8 ..."
 *     sgx_lines_close(&r);
 *
 *     sgx_translator t;
 *     CHECK(sgx_translator_load(&t, "m.h5", NULL) == SG_OK);   // model + vocab + level
 *     ... t.model, t.src_vocab, t.tgt_vocab, t.level ...
 *     sgx_translator_free(&t);
 *
 * Errors: negative SG_E* codes with the message in sgx_last_error().
 */
#ifndef SGX_TOOLS_H
#define SGX_TOOLS_H

#include <stdio.h>

#include "common.h"
#include "sg_model.h"

/* ------------------------------------------------------------------ lines */

typedef struct sgx_line_reader {
    FILE *f;
    const char *name; /* "file" or "<stdin>", used in messages */
    bool owned;       /* f is closed by sgx_lines_close */
    int64_t line;     /* number of the line last returned (1-based) */
    char *buf;
    size_t cap;
} sgx_line_reader;

/* Opens path for reading (NULL or "-": stdin). SG_EIO naming the file. */
int sgx_lines_open(sgx_line_reader *r, const char *path);
/* Reads the next line into *line (owned by r, valid until the next call), without its
 * "\n" and a "\r" before it. Returns 1, 0 at the end of the input, or SG_EFORMAT
 * naming "file:line" (invalid UTF-8 with its byte column, a NUL byte) / SG_EIO. */
int sgx_lines_next(sgx_line_reader *r, const char **line);
/* Closes the file (not stdin) and frees the buffer. Accepts a zeroed reader. */
void sgx_lines_close(sgx_line_reader *r);

/* -------------------------------------------------------------- translator */

/* A model loaded for inference with what is needed to read and write text. */
typedef struct sgx_translator {
    sg_model *model;
    sg_vocab *src_vocab, *tgt_vocab;
    sg_text_level level;
    sg_checkpoint meta; /* every attribute of the file (/model, /vocab, /train, /optim) */
} sgx_translator;

/* Loads the checkpoint at path (float32) with its /vocab/src and /vocab/tgt. The level
 * comes from the vocabularies' "level" attribute unless level_override ("word" or
 * "char") is given. Errors: those of sg_model_load (missing, corrupt or mismatching
 * file), SG_EFORMAT for a checkpoint without vocabularies or without a level. */
int sgx_translator_load(sgx_translator *t, const char *path, const char *level_override);
/* Frees everything; accepts a zeroed translator. */
void sgx_translator_free(sgx_translator *t);

/* "word" -> SG_LEVEL_WORD, "char" -> SG_LEVEL_CHAR, else -1. */
int sgx_level_parse(const char *s);

#endif
