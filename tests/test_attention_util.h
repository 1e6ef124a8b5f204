/* test_attention_util.h - fixture readers and probes shared by test_attention.c and
 * test_transformer_blocks.c (tests/fixtures/attention*.h5). Header-only, for tests. */
#ifndef TEST_ATTENTION_UTIL_H
#define TEST_ATTENTION_UTIL_H

#include <math.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Wcomment" /* fixture.h's header comment has a glob */
#include "fixture.h"
#include "sg_nn.h"
#include "test_util.h"

/* ---- helpers ---------------------------------------------------------------------- */

static inline sg_tensor *rd(hid_t f, const char *grp, const char *name, sg_dtype dt)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", grp, name);
    return fx_read(f, path, dt);
}

/* A fixture tensor as a leaf requiring grad. */
static inline sg_tensor *rd_leaf(hid_t f, const char *grp, const char *name)
{
    sg_tensor *t = rd(f, grp, name, SG_F32);
    cr_assert_eq(sg_tensor_set_requires_grad(t, true), SG_OK);
    return t;
}

/* Copies grp/p/<name> into the store's prefix.name for each name. */
static inline void load_params(hid_t f, const char *grp, sg_params *p, const char *prefix,
                        const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        char full[SG_PARAM_NAME_MAX], path[256];
        sg_param_name(full, prefix, names[i]);
        snprintf(path, sizeof path, "p/%s", names[i]);
        sg_tensor *dst = sg_params_find(p, full), *src = rd(f, grp, path, SG_F32);
        cr_assert(dst, "no parameter %s", full);
        cr_assert_eq(sg_tensor_copy_(dst, src), SG_OK, "%s: %s", full, sg_last_error());
        sg_tensor_free(src);
    }
}

static inline void assert_grad(const sg_tensor *t, const sg_tensor *ref, double atol, double rtol,
                        const char *what)
{
    cr_assert(t->grad, "%s has no gradient", what);
    sg_tensor *gt = sg_tensor_from_buffer(t->dtype, t->ndim, t->shape, t->grad);
    tu_assert_close(gt, ref, atol, rtol, what);
    sg_tensor_free(gt);
}

static inline void check_param_grads(hid_t f, const char *grp, sg_params *p, const char *prefix,
                              const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        char full[SG_PARAM_NAME_MAX], path[256];
        sg_param_name(full, prefix, names[i]);
        snprintf(path, sizeof path, "d/%s", names[i]);
        sg_tensor *ref = rd(f, grp, path, SG_F32);
        assert_grad(sg_params_find(p, full), ref, 1e-6, 1e-4, full);
        sg_tensor_free(ref);
    }
}

static inline void assert_output(hid_t f, const char *grp, const char *name, const sg_tensor *t)
{
    sg_tensor *ref = rd(f, grp, name, SG_F32);
    char what[128];
    snprintf(what, sizeof what, "%s/%s", grp, name);
    tu_assert_close(t, ref, 1e-6, 1e-5, what);
    sg_tensor_free(ref);
}

static inline sg_tensor *lengths_of(int n, const int64_t *v)
{
    return sg_tensor_from_buffer(SG_I64, 1, (int64_t[]){n}, v);
}

/* sum(a * ga) + sum(b * gb) (b may be NULL) */
static inline sg_tensor *probe_loss(sg_graph *g, sg_tensor *a, sg_tensor *ga, sg_tensor *b,
                             sg_tensor *gb)
{
    sg_tensor *l = sg_sum_all(g, sg_mul(g, a, ga));
    return b ? sg_add(g, l, sg_sum_all(g, sg_mul(g, b, gb))) : l;
}

static inline void assert_finite(const sg_tensor *t, const char *what)
{
    for (int64_t i = 0; i < sg_tensor_numel(t); i++)
        cr_assert(isfinite(sg_tensor_get(t, i)), "%s[%lld] is not finite", what, (long long)i);
}

#endif
