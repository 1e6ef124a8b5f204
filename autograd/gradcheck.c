/*
 * gradcheck.c - analytic vs numerical Jacobian, as torch.autograd.gradcheck.
 *
 * Analytic: one backward per output element with a one-hot output gradient.
 * Numeric: central differences (f(x+eps) - f(x-eps)) / 2eps per input element.
 * Every Jacobian entry must satisfy |a - n| <= atol + rtol |n|.
 */
#include "autograd_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sg_gradcheck_fn f;
    void *user;
    int n;
    sg_tensor *const *in;
} problem;

/* Runs f in g (reset first); copies its output to a fresh double buffer. */
static int eval(sg_graph *g, const problem *p, double **out, int64_t *n_out, sg_tensor **y)
{
    sg_graph_reset(g);
    sg_tensor *t = p->f(g, p->in, p->user);
    if (!t || sg_graph_status(g) != SG_OK)
        return sg_graph_status(g) != SG_OK ? sg_graph_status(g) : SG_EINVAL;
    int64_t n = sg_tensor_numel(t);
    if (out) {
        *out = malloc(sizeof(double) * (size_t)(n ? n : 1));
        if (!*out)
            return sg__error(SG_ENOMEM, "sg_gradcheck: out of memory");
        for (int64_t i = 0; i < n; i++)
            (*out)[i] = sg_tensor_get(t, i);
    }
    *n_out = n;
    if (y)
        *y = t;
    return SG_OK;
}

int sg_gradcheck(sg_gradcheck_fn f, void *user, int n_inputs, sg_tensor *const *inputs,
                 const sg_gradcheck_opts *opts, sg_gradcheck_result *res)
{
    sg_gradcheck_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    if (!f || (n_inputs > 0 && !inputs))
        return sg__error(SG_EINVAL, "sg_gradcheck: function or inputs is NULL");
    for (int k = 0; k < n_inputs; k++) {
        const sg_tensor *x = inputs[k];
        if (!x || x->dtype != SG_F64 || !x->requires_grad || !x->grad || !x->owns_data ||
            !sg_tensor_is_contiguous(x))
            return sg__error(SG_EINVAL, "sg_gradcheck: input %d must be a contiguous f64 heap "
                                        "tensor with requires_grad", k);
    }
    double eps = opts && opts->eps > 0 ? opts->eps : 1e-6;
    double atol = opts && opts->atol > 0 ? opts->atol : 1e-5;
    double rtol = opts && opts->rtol > 0 ? opts->rtol : 1e-3;
    problem p = {f, user, n_inputs, inputs};
    sg_graph *g = sg_graph_new();
    if (!g)
        return SG_ENOMEM;
    int rc;
    int64_t n_out = 0;
    sg_tensor *y = NULL;
    rc = eval(g, &p, NULL, &n_out, &y);
    if (rc != SG_OK)
        goto done;
    if (y->dtype != SG_F64) {
        rc = sg__error(SG_EINVAL, "sg_gradcheck: the function's output must be f64");
        goto done;
    }
    int64_t total_in = 0;
    for (int k = 0; k < n_inputs; k++)
        total_in += sg_tensor_numel(inputs[k]);
    /* analytic Jacobian, row o = gradient of output element o */
    double *ja = calloc((size_t)(n_out * total_in) + 1, sizeof(double));
    if (!ja) {
        rc = sg__error(SG_ENOMEM, "sg_gradcheck: Jacobian too large");
        goto done;
    }
    for (int64_t o = 0; o < n_out; o++) {
        for (int k = 0; k < n_inputs; k++)
            sg_tensor_zero_grad(inputs[k]);
        int64_t dummy;
        rc = eval(g, &p, NULL, &dummy, &y);
        if (rc != SG_OK)
            break;
        if (!y->requires_grad)
            continue; /* output independent of every input: zero row */
        sg_tensor *seed = sg_zeros(g, SG_F64, y->ndim, y->shape);
        if (!seed) {
            rc = SG_ENOMEM;
            break;
        }
        ((double *)seed->data)[o] = 1.0;
        rc = sg_backward_ex(g, y, seed);
        if (rc != SG_OK)
            break;
        int64_t col = 0;
        for (int k = 0; k < n_inputs; k++) {
            int64_t m = sg_tensor_numel(inputs[k]);
            for (int64_t i = 0; i < m; i++)
                ja[o * total_in + col + i] = ((double *)inputs[k]->grad)[i];
            col += m;
        }
    }
    for (int k = 0; k < n_inputs; k++)
        sg_tensor_zero_grad(inputs[k]);
    /* numeric Jacobian column by column, compared on the fly */
    int64_t col = 0;
    res->max_abs_err = 0;
    bool ok = rc == SG_OK;
    double worst_excess = -INFINITY;
    for (int k = 0; k < n_inputs && rc == SG_OK; k++) {
        double *x = inputs[k]->data;
        int64_t m = sg_tensor_numel(inputs[k]);
        for (int64_t i = 0; i < m && rc == SG_OK; i++) {
            double x0 = x[i], *fp = NULL, *fm = NULL;
            int64_t d1, d2;
            x[i] = x0 + eps;
            rc = eval(g, &p, &fp, &d1, NULL);
            x[i] = x0 - eps;
            if (rc == SG_OK)
                rc = eval(g, &p, &fm, &d2, NULL);
            x[i] = x0;
            for (int64_t o = 0; rc == SG_OK && o < n_out; o++) {
                double num = (fp[o] - fm[o]) / (2 * eps);
                double ana = ja[o * total_in + col + i];
                double err = fabs(ana - num);
                double excess = err - (atol + rtol * fabs(num));
                res->checked++;
                if (!(excess <= 0) || err > res->max_abs_err || excess > worst_excess) {
                    if (excess > worst_excess || !(excess <= 0)) {
                        worst_excess = excess;
                        res->worst_input = k;
                        res->worst_index = i;
                        res->worst_output = o;
                        res->worst_analytic = ana;
                        res->worst_numeric = num;
                    }
                    if (err > res->max_abs_err || isnan(err))
                        res->max_abs_err = err;
                }
                if (!(excess <= 0))
                    ok = false;
            }
            free(fp);
            free(fm);
        }
        col += m;
    }
    free(ja);
    snprintf(res->report, sizeof res->report,
             "worst: input %d element %lld, output %lld: analytic %.10g numeric %.10g "
             "(max |diff| %.3g over %lld entries)",
             res->worst_input, (long long)res->worst_index, (long long)res->worst_output,
             res->worst_analytic, res->worst_numeric, res->max_abs_err, (long long)res->checked);
    if (rc == SG_OK && !ok)
        rc = sg__error(SG_ENUMERIC, "sg_gradcheck: Jacobian mismatch; %s", res->report);
done:
    sg_graph_free(g);
    return rc;
}
