/* fuzz_checkpoint.c - libFuzzer harness for the checkpoint loader.
 *
 * Each input is written to a temporary file (HDF5 reads files) and given to all three
 * loaders: sg_checkpoint_read_meta, sg_checkpoint_load_params (into a store with the
 * seed's layout, so valid-looking inputs reach the tensor checks) and
 * sg_checkpoint_load_optim. Invariants checked beyond "no crash, no ASan report":
 * a failed load leaves the store and the moments unchanged, and no HDF5 id stays open.
 *
 * Build and run: tools/fuzz_checkpoint.sh [seconds]. With SG_FUZZ_WRITE_SEED=file set,
 * the binary writes a valid seed checkpoint to file and exits.
 */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg_nn.h"

/* HDF5 1.10.8 leaks an object header whose checksum fails (see tests/test_checkpoint.c);
 * allocations inside libhdf5 are exempt from leak detection, ours are not. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5_serial.so\n"; }

static char path[64];

static sg_params *make_params(void)
{
    sg_params *p = sg_params_new(SG_F32);
    sg_params_add(p, "src_embed.weight", 2, (int64_t[]){7, 4});
    sg_params_add(p, "tgt_embed.weight", 2, (int64_t[]){6, 4});
    sg_params_add(p, "encoder.weight_ih_l0", 2, (int64_t[]){12, 4});
    sg_params_add(p, "encoder.bias_ih_l0", 1, (int64_t[]){12});
    sg_params_alias(p, "generator.weight", "tgt_embed.weight");
    sg_params_add(p, "generator.bias", 1, (int64_t[]){6});
    sg_rng r;
    sg_rng_seed(&r, 1);
    sg_params_uniform_(p, &r, -1, 1);
    return p;
}

static int make_moments(const sg_params *p, sg_tensor **m, sg_tensor **v)
{
    int k = 0;
    for (int i = 0; i < sg_params_count(p); i++) {
        const sg_param *e = sg_params_at(p, i);
        if (e->alias_of >= 0)
            continue;
        m[k] = sg_tensor_new(SG_F32, e->value->ndim, e->value->shape);
        v[k] = sg_tensor_new(SG_F32, e->value->ndim, e->value->shape);
        sg_tensor_fill_(m[k], 0.5);
        sg_tensor_fill_(v[k], 0.25);
        k++;
    }
    return k;
}

static void write_seed(const char *to)
{
    static const char *src[] = {"<pad>", "<unk>", "<s>", "</s>", "the", "été", "ß"};
    static const char *tgt[] = {"<pad>", "<unk>", "<s>", "</s>", "le", "l'"};
    sg_params *p = make_params();
    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    sg_attrs_set_str(&ck.model, "arch", "tiny");
    sg_attrs_set_int(&ck.model, "src_vocab_size", 7);
    sg_attrs_set_int(&ck.model, "tgt_vocab_size", 6);
    sg_attrs_set_real(&ck.model, "dropout", 0.1);
    sg_ckpt_vocab_set(&ck.vocab[0], 7, src);
    sg_ckpt_vocab_set(&ck.vocab[1], 6, tgt);
    for (int s = 0; s < 2; s++) {
        sg_attrs_set_str(&ck.vocab[s].attrs, "level", "word");
        sg_attrs_set_int(&ck.vocab[s].attrs, "min_freq", 2);
        sg_attrs_set_int(&ck.vocab[s].attrs, "max_size", 8000);
    }
    ck.has_optim = true;
    sg_attrs_set_real(&ck.optim, "lr", 1e-3);
    ck.optim_step = 10;
    ck.has_train_state = true;
    ck.epoch = 2;
    sg_rng_seed(&ck.rng, 3);
    sg_tensor *m[8], *v[8];
    int n = make_moments(p, m, v);
    if (sg_checkpoint_save(to, &ck, p, m, v, n) != SG_OK) {
        fprintf(stderr, "%s\n", sg_last_error());
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        sg_tensor_free(m[i]);
        sg_tensor_free(v[i]);
    }
    sg_checkpoint_clear(&ck);
    sg_params_free(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *seed = getenv("SG_FUZZ_WRITE_SEED");
    if (seed) {
        write_seed(seed);
        exit(0);
    }
    strcpy(path, "/tmp/sg_fuzz_ckpt_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    close(fd);
    return 0;
}

static bool same(const sg_tensor *a, const sg_tensor *b)
{
    return memcmp(a->data, b->data, sizeof(float) * (size_t)sg_tensor_numel(a)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();

    sg_checkpoint ck;
    sg_checkpoint_init(&ck);
    if (sg_checkpoint_read_meta(path, &ck) == SG_OK)
        sg_checkpoint_clear(&ck);
    if (ck.model.n != 0)
        abort(); /* a failed read_meta must leave ck empty */

    sg_params *p = make_params(), *ref = make_params();
    if (sg_checkpoint_load_params(path, p) != SG_OK)
        for (int i = 0; i < sg_params_count(p); i++)
            if (!same(sg_params_at(p, i)->value, sg_params_at(ref, i)->value))
                abort(); /* a failed load changed the store */

    sg_tensor *m[8], *v[8], *m0[8], *v0[8];
    int n = make_moments(p, m, v);
    make_moments(p, m0, v0);
    int64_t step = -7;
    if (sg_checkpoint_load_optim(path, p, m, v, n, &step) != SG_OK) {
        if (step != -7)
            abort();
        for (int k = 0; k < n; k++)
            if (!same(m[k], m0[k]) || !same(v[k], v0[k]))
                abort();
    }
    for (int k = 0; k < n; k++) {
        sg_tensor_free(m[k]);
        sg_tensor_free(v[k]);
        sg_tensor_free(m0[k]);
        sg_tensor_free(v0[k]);
    }
    sg_params_free(p);
    sg_params_free(ref);
    if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0)
        abort(); /* the loader left an HDF5 file or object open */
    return 0;
}
