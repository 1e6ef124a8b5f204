/* test_util.h - helpers shared by the Criterion tests. */
#ifndef SG_TEST_UTIL_H
#define SG_TEST_UTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>

#include "sg_autograd.h"

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
/* Whether a malloc block of `bytes`, written, is a mapping of its own (glibc's threshold,
 * which sg_malloc_keep_freed raises) rather than a piece of the heap. */
static inline bool tu_malloc_maps(size_t bytes)
{
    size_t before = mallinfo2().hblks;
    void *p = malloc(bytes);
    cr_assert(p);
    memset(p, 1, bytes);
    bool mapped = mallinfo2().hblks != before;
    free(p);
    return mapped;
}
#endif

/* A heap f64 tensor of U(lo, hi) values that requires grad; freed by the caller. */
static inline sg_tensor *tu_rand64(sg_rng *r, double lo, double hi, int ndim, ...)
{
    int64_t shape[SG_MAX_DIMS];
    va_list ap;
    va_start(ap, ndim);
    for (int d = 0; d < ndim; d++)
        shape[d] = va_arg(ap, int64_t);
    va_end(ap);
    sg_tensor *t = sg_tensor_new(SG_F64, ndim, shape);
    cr_assert(t, "%s", sg_last_error());
    sg_tensor_uniform_(t, r, lo, hi);
    cr_assert_eq(sg_tensor_set_requires_grad(t, true), SG_OK);
    return t;
}

/* Runs sg_gradcheck and fails the test with the report on mismatch. */
#define TU_GRADCHECK(fn, user, n, inputs)                                                   \
    do {                                                                                    \
        sg_gradcheck_result res_;                                                           \
        int rc_ = sg_gradcheck((fn), (user), (n), (inputs), NULL, &res_);                   \
        cr_assert_eq(rc_, SG_OK, "gradcheck failed (%s): %s", sg_strerror(rc_),              \
                     sg_last_error());                                                      \
        cr_assert_gt(res_.checked, 0, "gradcheck compared nothing");                         \
    } while (0)

/* |a - b| <= atol + rtol |b| elementwise over two same-shape tensors (views ok). */
static inline void tu_assert_close(const sg_tensor *a, const sg_tensor *b, double atol,
                                   double rtol, const char *what)
{
    cr_assert(a && b, "%s: missing tensor (%s)", what, sg_last_error());
    cr_assert(sg_tensor_same_shape(a, b), "%s: shapes differ", what);
    int64_t n = sg_tensor_numel(a), worst = -1;
    double maxd = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = sg_tensor_get(a, i), y = sg_tensor_get(b, i), d = fabs(x - y);
        if (!(d <= atol + rtol * fabs(y)) && (worst < 0 || d > maxd)) {
            worst = i;
            maxd = d;
        }
    }
    cr_assert(worst < 0, "%s: element %lld differs: %.9g vs %.9g (|diff| %.3g)", what,
              (long long)worst, sg_tensor_get(a, worst), sg_tensor_get(b, worst), maxd);
}

#endif
