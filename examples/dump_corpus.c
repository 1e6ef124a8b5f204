/* dump_corpus - writes what the data pipeline makes of a corpus directory, in the
 * format of tools/dump_corpus_reference.py, so the two can be compared with cmp:
 * both vocabularies, the ids of every split, bench(24) of train and bench(10) of test
 * (batch 64), and the BLEU of the test targets decoded through the vocabulary.
 *
 *   dump_corpus DIR word|char MIN_FREQ MAX_SIZE OUT.txt
 *   tools/compare_data_reference.sh DIR word 2 8000   # runs both and compares
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg_data.h"

#define CHECK(x)                                                                        \
    do {                                                                                \
        if (!(x)) {                                                                     \
            fprintf(stderr, "dump_corpus: %s\n", sg_last_error());                      \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static void dump_bench(FILE *f, const sg_dataset *d, int64_t n)
{
    sg_batches b;
    CHECK(sg_batches_bench(&b, d, 64, n) == SG_OK);
    for (int64_t k = 0; k < b.n_batches; k++) {
        int64_t cnt;
        const int64_t *ix = sg_batches_get(&b, k, &cnt);
        fprintf(f, "B");
        for (int64_t i = 0; i < cnt; i++)
            fprintf(f, " %lld", (long long)ix[i]);
        fprintf(f, "\n");
    }
    sg_batches_free(&b);
}

int main(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[2], "word") && strcmp(argv[2], "char"))) {
        fprintf(stderr, "usage: dump_corpus DIR word|char MIN_FREQ MAX_SIZE OUT.txt\n");
        return 2;
    }
    sg_text_level lv = argv[2][0] == 'w' ? SG_LEVEL_WORD : SG_LEVEL_CHAR;
    sg_corpus c;
    CHECK(sg_corpus_load_dir(&c, argv[1], lv, atoll(argv[3]), atoll(argv[4])) == SG_OK);
    FILE *f = fopen(argv[5], "w");
    if (!f) {
        perror(argv[5]);
        return 1;
    }
    const sg_vocab *vs[2] = {c.src_vocab, c.tgt_vocab};
    for (int k = 0; k < 2; k++) {
        fprintf(f, "VOCAB %lld\n", (long long)sg_vocab_size(vs[k]));
        for (int64_t i = 0; i < sg_vocab_size(vs[k]); i++)
            fprintf(f, "%s\n", sg_vocab_token(vs[k], i));
    }
    for (int s = 0; s < SG_SPLIT_COUNT; s++) {
        const sg_dataset *d = &c.data[s];
        for (int64_t i = 0; i < d->n; i++) {
            for (int64_t j = d->src_off[i]; j < d->src_off[i + 1]; j++)
                fprintf(f, "%lld ", (long long)d->src_ids[j]);
            fprintf(f, "|");
            for (int64_t j = d->tgt_off[i]; j < d->tgt_off[i + 1]; j++)
                fprintf(f, " %lld", (long long)d->tgt_ids[j]);
            fprintf(f, "\n");
        }
    }
    dump_bench(f, &c.data[SG_SPLIT_TRAIN], 24);
    dump_bench(f, &c.data[SG_SPLIT_TEST], 10);
    sg_bleu_stats st = {0};
    const sg_dataset *d = &c.data[SG_SPLIT_TEST];
    int64_t *ids = malloc(sizeof *ids * (size_t)(d->tgt_off[d->n] + 1)); /* widened ids */
    CHECK(ids);
    for (int64_t k = 0; k < d->tgt_off[d->n]; k++)
        ids[k] = d->tgt_ids[k];
    for (int64_t i = 0; i < d->n; i++)
        CHECK(sg_bleu_add_ids(&st, c.tgt_vocab, lv, ids + d->tgt_off[i], sg_dataset_tgt_len(d, i),
                              c.raw[SG_SPLIT_TEST].tgt[i]) == SG_OK);
    free(ids);
    fprintf(f, "BLEU %.10f\n", sg_bleu_score(&st));
    fclose(f);
    sg_corpus_free(&c);
    return 0;
}
