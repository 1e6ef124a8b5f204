/* test_optim.c - SGD/Adam/AdamW, clipping and schedules against torch.optim (fixture
 * tests/fixtures/loss_optim.h5, optim/ and sched/), state save/restore, error paths. */
#include <stdlib.h>
#include <string.h>

/* fixture.h line 1 has a nested comment opener; silence -Wcomment for it */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcomment"
#include "fixture.h"
#pragma GCC diagnostic pop
#include "sg_nn.h"
#include "test_util.h"

#define STEPS 5
static const char *const NAMES[] = {"fc1.weight", "fc1.bias", "fc2.weight"};
#define NP 3

/* A store with the fixture's initial parameters, in dtype dt. */
static sg_params *load_model(hid_t f, sg_dtype dt)
{
    sg_params *p = sg_params_new(dt);
    char path[128];
    for (int i = 0; i < NP; i++) {
        snprintf(path, sizeof path, "optim/init/%s", NAMES[i]);
        sg_tensor *v = fx_read(f, path, dt);
        sg_tensor *t = sg_params_add(p, NAMES[i], v->ndim, v->shape);
        cr_assert(t, "%s", sg_last_error());
        cr_assert_eq(sg_tensor_copy_(t, v), SG_OK);
        sg_tensor_free(v);
    }
    return p;
}

/* Puts the fixture gradients of update k (1-based) into the store. */
static void load_grads(hid_t f, sg_params *p, int k)
{
    char path[128];
    for (int i = 0; i < NP; i++) {
        snprintf(path, sizeof path, "optim/grad/%d/%s", k, NAMES[i]);
        sg_tensor *gk = fx_read(f, path, sg_params_dtype(p));
        sg_tensor *t = sg_params_find(p, NAMES[i]);
        memcpy(t->grad, gk->data, (size_t)sg_tensor_numel(t) * sg_dtype_size(t->dtype));
        sg_tensor_free(gk);
    }
}

static bool has_dataset(hid_t f, const char *path)
{
    bool ok;
    H5E_BEGIN_TRY { ok = H5Lexists(f, path, H5P_DEFAULT) > 0; }
    H5E_END_TRY;
    return ok;
}

/* Runs STEPS updates of config c over the fixture and compares with optim/<cfg>/. */
static void check_against_torch(const char *cfg, const sg_optim_config *c, sg_dtype dt)
{
    hid_t f = fx_open("loss_optim.h5");
    sg_params *p = load_model(f, dt);
    sg_optim *o = sg_optim_new(p, c);
    cr_assert(o, "%s", sg_last_error());
    char path[160];
    snprintf(path, sizeof path, "optim/%s/norms", cfg);
    sg_tensor *norms = fx_read(f, path, SG_F64);
    snprintf(path, sizeof path, "optim/%s/lrs", cfg);
    sg_tensor *lrs = fx_read(f, path, SG_F64);
    for (int k = 1; k <= STEPS; k++) {
        load_grads(f, p, k);
        double lr = sg_optim_current_lr(o), want_lr = sg_tensor_get(lrs, k - 1);
        cr_assert(fabs(lr - want_lr) <= 1e-12 * want_lr, "%s step %d: lr %.17g vs %.17g", cfg, k,
                  lr, want_lr);
        double norm = -1;
        cr_assert_eq(sg_optim_step(o, &norm), SG_OK, "%s", sg_last_error());
        double want = sg_tensor_get(norms, k - 1);
        cr_assert(fabs(norm - want) <= 1e-5 * want, "%s step %d: norm %.9g vs torch %.9g", cfg,
                  k, norm, want);
    }
    cr_assert_eq(sg_optim_step_count(o), STEPS);
    static const char *const state[] = {"final", "exp_avg", "exp_avg_sq", "momentum_buffer"};
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < NP; i++) {
            snprintf(path, sizeof path, "optim/%s/%s/%s", cfg, state[s], NAMES[i]);
            if (!has_dataset(f, path))
                continue;
            sg_tensor *want = fx_read(f, path, dt);
            sg_tensor *got = s == 0 ? sg_params_find(p, NAMES[i])
                             : s == 2 ? sg_optim_exp_avg_sq(o, i)
                                      : sg_optim_exp_avg(o, i);
            char what[200];
            snprintf(what, sizeof what, "%s %s", cfg, path);
            tu_assert_close(got, want, 1e-7, 1e-4, what);
            sg_tensor_free(want);
        }
    sg_tensor_free(norms);
    sg_tensor_free(lrs);
    sg_optim_free(o);
    sg_params_free(p);
    H5Fclose(f);
}

static sg_optim_config adam_cfg(void)
{
    sg_optim_config c = sg_optim_config_default(SG_OPTIM_ADAM);
    c.lr = 0.01;
    c.clip_norm = 1.0;
    return c;
}

Test(optim, adam_with_clipping_matches_torch)
{
    sg_optim_config c = adam_cfg();
    check_against_torch("adam", &c, SG_F32);
}

Test(optim, adam_f64_matches_torch)
{
    sg_optim_config c = adam_cfg();
    check_against_torch("adam", &c, SG_F64);
}

Test(optim, adam_weight_decay_inverse_sqrt_matches_torch)
{
    sg_optim_config c = {.kind = SG_OPTIM_ADAM, .lr = 0.05, .beta1 = 0.8, .beta2 = 0.95,
                         .eps = 1e-6, .weight_decay = 0.1, .clip_norm = 1.0,
                         .schedule = {.kind = SG_LR_INVERSE_SQRT, .warmup_steps = 3}};
    check_against_torch("adam_wd_noam", &c, SG_F32);
}

Test(optim, adamw_decoupled_decay_matches_torch)
{
    sg_optim_config c = sg_optim_config_default(SG_OPTIM_ADAMW);
    cr_assert_eq(c.weight_decay, 1e-2); /* torch default */
    c.lr = 0.01;
    c.weight_decay = 0.1;
    c.clip_norm = 1.0;
    check_against_torch("adamw", &c, SG_F32);
}

Test(optim, sgd_momentum_step_decay_matches_torch)
{
    sg_optim_config c = {.kind = SG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9,
                         .weight_decay = 0.01, .clip_norm = 1.0,
                         .schedule = {.kind = SG_LR_STEP, .step_size = 2, .gamma = 0.5}};
    check_against_torch("sgd_momentum", &c, SG_F32);
}

Test(optim, sgd_nesterov_exponential_decay_matches_torch)
{
    sg_optim_config c = {.kind = SG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .nesterov = true,
                         .clip_norm = 0.5,
                         .schedule = {.kind = SG_LR_EXPONENTIAL, .gamma = 0.7}};
    check_against_torch("sgd_nesterov", &c, SG_F32);
}

Test(optim, sgd_dampening_without_clipping_matches_torch)
{
    sg_optim_config c = {.kind = SG_OPTIM_SGD, .lr = 0.1, .momentum = 0.5, .dampening = 0.3};
    check_against_torch("sgd_dampening", &c, SG_F32);
}

/* ---- schedules ------------------------------------------------------------------------- */

static void check_schedule(const char *kind, const sg_lr_schedule *s)
{
    hid_t f = fx_open("loss_optim.h5");
    char path[64];
    snprintf(path, sizeof path, "sched/%s/lrs", kind);
    sg_tensor *lrs = fx_read(f, path, SG_F64);
    cr_assert_eq(sg_lr_schedule_check(s), SG_OK, "%s", sg_last_error());
    for (int64_t k = 1; k <= sg_tensor_numel(lrs); k++) {
        double got = sg_lr_schedule_at(s, 1.0, k), want = sg_tensor_get(lrs, k - 1);
        cr_assert(fabs(got - want) <= 1e-12 * want, "%s k=%lld: %.17g vs torch %.17g", kind,
                  (long long)k, got, want);
    }
    sg_tensor_free(lrs);
    H5Fclose(f);
}

Test(schedule, step_decay_matches_torch_steplr)
{
    check_schedule("step", &(sg_lr_schedule){.kind = SG_LR_STEP, .step_size = 3, .gamma = 0.5});
}

Test(schedule, exponential_matches_torch_exponentiallr)
{
    check_schedule("exponential", &(sg_lr_schedule){.kind = SG_LR_EXPONENTIAL, .gamma = 0.9});
}

Test(schedule, inverse_sqrt_warms_up_then_decays)
{
    sg_lr_schedule s = {.kind = SG_LR_INVERSE_SQRT, .warmup_steps = 4};
    check_schedule("inverse_sqrt", &s);
    cr_assert_eq(sg_lr_schedule_at(&s, 2.0, 4), 2.0);               /* peak at k = w */
    cr_assert(fabs(sg_lr_schedule_at(&s, 2.0, 16) - 1.0) < 1e-15); /* 2 sqrt(4/16) */
    cr_assert_eq(sg_lr_schedule_at(&(sg_lr_schedule){0}, 0.3, 99), 0.3);
}

Test(schedule, names_round_trip_and_bad_settings_are_rejected)
{
    for (int k = 0; k < SG_LR_SCHEDULE_COUNT; k++) {
        sg_lr_schedule_kind got;
        cr_assert_eq(sg_lr_schedule_parse(sg_lr_schedule_name(k), &got), SG_OK);
        cr_assert_eq((int)got, k);
    }
    cr_assert_str_eq(sg_lr_schedule_name(SG_LR_INVERSE_SQRT), "inverse_sqrt");
    cr_assert_eq(sg_lr_schedule_parse("cosine", NULL), SG_EINVAL);
    cr_assert_eq(sg_lr_schedule_check(&(sg_lr_schedule){.kind = SG_LR_INVERSE_SQRT}), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "warmup_steps"), "%s", sg_last_error());
    cr_assert_eq(sg_lr_schedule_check(&(sg_lr_schedule){.kind = SG_LR_STEP, .gamma = 0.5}),
                 SG_EINVAL);
    cr_assert_eq(sg_lr_schedule_check(&(sg_lr_schedule){.kind = SG_LR_EXPONENTIAL, .gamma = -1}),
                 SG_EINVAL);
    cr_assert_eq(sg_lr_schedule_check(&(sg_lr_schedule){.kind = 17}), SG_EINVAL);
}

/* ---- clipping ------------------------------------------------------------------------------- */

Test(clip, tied_parameter_counted_once_and_scaled_once)
{
    sg_params *p = sg_params_new(SG_F32);
    sg_tensor *a = sg_params_add(p, "tgt_embed.weight", 2, (int64_t[]){2, 2});
    sg_tensor *b = sg_params_add(p, "bias", 1, (int64_t[]){1});
    cr_assert_eq(sg_params_alias(p, "generator.weight", "tgt_embed.weight"), SG_OK);
    float *ga = a->grad, *gb = b->grad;
    ga[0] = 3; ga[3] = 4; gb[0] = 12; /* norm 13 */
    double n = 0;
    cr_assert_eq(sg_clip_grad_norm(p, 1.0, &n), SG_OK);
    cr_assert(fabs(n - 13) < 1e-12, "norm %g", n);
    double coef = 1.0 / (13 + 1e-6);
    cr_assert(fabs(ga[3] - 4 * coef) < 1e-7 && fabs(gb[0] - 12 * coef) < 1e-6);
    cr_assert(fabs(sg_grad_norm(p) - 1.0) < 1e-6);
    /* below the threshold nothing changes */
    cr_assert_eq(sg_clip_grad_norm(p, 5.0, &n), SG_OK);
    cr_assert_eq(ga[3], (float)(4 * coef));
    sg_params_free(p);
}

Test(clip, nan_norm_leaves_gradients_and_parameters_unchanged)
{
    sg_params *p = sg_params_new(SG_F32);
    sg_tensor *a = sg_params_add(p, "w", 1, (int64_t[]){3});
    float *g = a->grad, *w = a->data;
    w[0] = 1; w[1] = 2; w[2] = 3;
    g[0] = 5; g[1] = NAN; g[2] = 1;
    double n = 0;
    cr_assert_eq(sg_clip_grad_norm(p, 1.0, &n), SG_ENUMERIC);
    cr_assert(isnan(n));
    cr_assert(strstr(sg_last_error(), "norm"), "%s", sg_last_error());
    cr_assert_eq(g[0], 5.0f); /* not scaled */
    sg_optim_config c = adam_cfg();
    sg_optim *o = sg_optim_new(p, &c);
    cr_assert_eq(sg_optim_step(o, &n), SG_ENUMERIC);
    cr_assert_eq(sg_optim_step_count(o), 0);
    cr_assert(w[0] == 1 && w[1] == 2 && w[2] == 3);
    cr_assert_eq(sg_tensor_get(sg_optim_exp_avg(o, 0), 0), 0.0);
    g[1] = INFINITY;
    cr_assert_eq(sg_optim_step(o, &n), SG_ENUMERIC);
    cr_assert(isinf(n));
    sg_params_zero_grad(p); /* the documented way on */
    cr_assert_eq(sg_optim_step(o, &n), SG_OK);
    cr_assert_eq(sg_optim_step_count(o), 1);
    sg_optim_free(o);
    sg_params_free(p);
}

Test(clip, rejects_non_positive_max_norm)
{
    sg_params *p = sg_params_new(SG_F64);
    cr_assert_eq(sg_clip_grad_norm(p, 0.0, NULL), SG_EINVAL);
    cr_assert_eq(sg_clip_grad_norm(p, NAN, NULL), SG_EINVAL);
    cr_assert_eq(sg_clip_grad_norm(NULL, 1.0, NULL), SG_EINVAL);
    sg_params_free(p);
}

/* ---- state -------------------------------------------------------------------------------- */

Test(optim, state_restored_through_accessors_continues_bit_exactly)
{
    hid_t f = fx_open("loss_optim.h5");
    sg_optim_config c = {.kind = SG_OPTIM_ADAM, .lr = 0.05, .beta1 = 0.8, .beta2 = 0.95,
                         .eps = 1e-6, .clip_norm = 1.0, .label_smoothing = 0.1,
                         .schedule = {.kind = SG_LR_INVERSE_SQRT, .warmup_steps = 3}};
    sg_params *p1 = load_model(f, SG_F32), *p2 = load_model(f, SG_F32);
    sg_optim *o1 = sg_optim_new(p1, &c);
    for (int k = 1; k <= 2; k++) {
        load_grads(f, p1, k);
        cr_assert_eq(sg_optim_step(o1, NULL), SG_OK);
    }
    /* "checkpoint": what 11.5 stores, through the public accessors only */
    sg_optim_config saved = *sg_optim_get_config(o1);
    sg_optim *o2 = sg_optim_new(p2, &(sg_optim_config){.kind = SG_OPTIM_ADAM, .lr = 1,
                                                       .beta1 = 0.5, .beta2 = 0.5});
    cr_assert(o2, "%s", sg_last_error());
    cr_assert_eq(sg_optim_set_config(o2, &saved), SG_OK);
    cr_assert_eq(sg_optim_set_step_count(o2, sg_optim_step_count(o1)), SG_OK);
    cr_assert_eq(sg_params_copy_values(p2, p1), SG_OK);
    for (int i = 0; i < NP; i++) {
        cr_assert_eq(sg_tensor_copy_(sg_optim_exp_avg(o2, i), sg_optim_exp_avg(o1, i)), SG_OK);
        cr_assert_eq(sg_tensor_copy_(sg_optim_exp_avg_sq(o2, i), sg_optim_exp_avg_sq(o1, i)),
                     SG_OK);
    }
    cr_assert_eq(sg_optim_get_config(o2)->label_smoothing, 0.1);
    cr_assert_eq(sg_optim_current_lr(o2), sg_optim_current_lr(o1));
    for (int k = 3; k <= STEPS; k++) {
        load_grads(f, p1, k);
        load_grads(f, p2, k);
        double n1, n2;
        cr_assert_eq(sg_optim_step(o1, &n1), SG_OK);
        cr_assert_eq(sg_optim_step(o2, &n2), SG_OK);
        cr_assert_eq(n1, n2);
    }
    for (int i = 0; i < NP; i++) {
        const sg_tensor *a = sg_params_at(p1, i)->value, *b = sg_params_at(p2, i)->value;
        cr_assert_eq(memcmp(a->data, b->data, (size_t)sg_tensor_numel(a) * 4), 0, "%s", NAMES[i]);
        cr_assert_eq(memcmp(sg_optim_exp_avg_sq(o1, i)->data, sg_optim_exp_avg_sq(o2, i)->data,
                            (size_t)sg_tensor_numel(a) * 4), 0);
    }
    sg_optim_free(o1);
    sg_optim_free(o2);
    sg_params_free(p1);
    sg_params_free(p2);
    H5Fclose(f);
}

Test(optim, alias_entries_have_no_state_and_are_updated_once)
{
    sg_params *p = sg_params_new(SG_F64);
    sg_tensor *w = sg_params_add(p, "tgt_embed.weight", 1, (int64_t[]){2});
    cr_assert_eq(sg_params_alias(p, "generator.weight", "tgt_embed.weight"), SG_OK);
    sg_optim *o = sg_optim_new(p, &(sg_optim_config){.kind = SG_OPTIM_SGD, .lr = 0.5});
    cr_assert(o, "%s", sg_last_error());
    cr_assert_null(sg_optim_exp_avg(o, 0)); /* SGD without momentum keeps no state */
    ((double *)w->grad)[0] = 1;
    cr_assert_eq(sg_optim_step(o, NULL), SG_OK);
    cr_assert_eq(sg_tensor_get(w, 0), -0.5); /* once, not twice */
    sg_optim_free(o);
    sg_optim_config c = sg_optim_config_default(SG_OPTIM_ADAM);
    o = sg_optim_new(p, &c);
    cr_assert(sg_optim_exp_avg(o, 0) && sg_optim_exp_avg_sq(o, 0));
    cr_assert_null(sg_optim_exp_avg(o, 1));
    cr_assert_null(sg_optim_exp_avg_sq(o, 1));
    cr_assert_null(sg_optim_exp_avg(o, 2));
    cr_assert_eq(sg_optim_params(o), p);
    sg_optim_free(o);
    sg_params_free(p);
}

/* ---- error paths --------------------------------------------------------------------------- */

static void expect_bad(sg_optim_config c, const char *needle)
{
    sg_params *p = sg_params_new(SG_F32);
    sg_params_add(p, "w", 1, (int64_t[]){2});
    cr_assert_null(sg_optim_new(p, &c));
    cr_assert(strstr(sg_last_error(), needle), "expected '%s' in: %s", needle, sg_last_error());
    cr_assert_eq(sg_optim_config_check(&c), SG_EINVAL);
    sg_params_free(p);
}

Test(optim, rejects_negative_lr_and_invalid_betas)
{
    sg_optim_config c = sg_optim_config_default(SG_OPTIM_ADAM);
    c.lr = -1e-3;
    expect_bad(c, "lr");
    c = sg_optim_config_default(SG_OPTIM_ADAM);
    c.beta1 = 1.0;
    expect_bad(c, "betas");
    c = sg_optim_config_default(SG_OPTIM_ADAMW);
    c.beta2 = -0.1;
    expect_bad(c, "betas");
    c = sg_optim_config_default(SG_OPTIM_ADAM);
    c.lr = NAN;
    expect_bad(c, "lr");
    c = sg_optim_config_default(SG_OPTIM_ADAM);
    c.eps = -1;
    expect_bad(c, "eps");
    c = sg_optim_config_default(SG_OPTIM_ADAM);
    c.weight_decay = -0.1;
    expect_bad(c, "weight_decay");
    c = sg_optim_config_default(SG_OPTIM_ADAM);
    c.clip_norm = -1;
    expect_bad(c, "clip_norm");
    c = sg_optim_config_default(SG_OPTIM_ADAM);
    c.schedule.kind = SG_LR_INVERSE_SQRT;
    expect_bad(c, "warmup_steps");
}

Test(optim, rejects_bad_sgd_settings_and_unknown_kind)
{
    sg_optim_config c = sg_optim_config_default(SG_OPTIM_SGD);
    c.nesterov = true;
    expect_bad(c, "nesterov");
    c.momentum = 0.9;
    c.dampening = 0.1;
    expect_bad(c, "nesterov");
    c = sg_optim_config_default(SG_OPTIM_SGD);
    c.momentum = -0.5;
    expect_bad(c, "momentum");
    c = sg_optim_config_default(SG_OPTIM_KIND_COUNT);
    expect_bad(c, "kind");
    cr_assert_null(sg_optim_new(NULL, &c));
    sg_params *p = sg_params_new(SG_F32);
    cr_assert_null(sg_optim_new(p, NULL));
    sg_params_free(p);
}

Test(optim, set_config_keeps_state_on_rejection)
{
    sg_params *p = sg_params_new(SG_F32);
    sg_params_add(p, "w", 1, (int64_t[]){2});
    sg_optim_config c = sg_optim_config_default(SG_OPTIM_ADAM);
    sg_optim *o = sg_optim_new(p, &c);
    sg_optim_config bad = c;
    bad.lr = -1;
    cr_assert_eq(sg_optim_set_config(o, &bad), SG_EINVAL);
    bad = sg_optim_config_default(SG_OPTIM_SGD);
    cr_assert_eq(sg_optim_set_config(o, &bad), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "adam"), "%s", sg_last_error());
    cr_assert_eq(sg_optim_get_config(o)->lr, 1e-3);
    cr_assert_eq(sg_optim_set_step_count(o, -1), SG_EINVAL);
    cr_assert_eq(sg_optim_step_count(o), 0);
    /* the store gained an entry after the optimiser was made */
    sg_params_add(p, "late", 1, (int64_t[]){1});
    cr_assert_eq(sg_optim_step(o, NULL), SG_ESTATE);
    cr_assert_eq(sg_optim_step(NULL, NULL), SG_EINVAL);
    sg_optim_free(o);
    sg_params_free(p);
}

Test(optim, names_round_trip)
{
    for (int k = 0; k < SG_OPTIM_KIND_COUNT; k++) {
        sg_optim_kind got;
        cr_assert_eq(sg_optim_kind_parse(sg_optim_kind_name(k), &got), SG_OK);
        cr_assert_eq((int)got, k);
    }
    cr_assert_str_eq(sg_optim_kind_name(SG_OPTIM_ADAM), "adam");
    cr_assert_eq(sg_optim_kind_parse("rmsprop", NULL), SG_EINVAL);
}

Test(optim, large_parameters_same_with_any_thread_count_and_zero_grad_rows_stay)
{
    /* 300000 elements: above the size where updates are split over threads */
    float *res[2];
    for (int run = 0; run < 2; run++) {
        sg_set_num_threads(run ? 2 : 1);
        sg_params *p = sg_params_new(SG_F32);
        sg_tensor *w = sg_params_add(p, "w", 2, (int64_t[]){1000, 300});
        sg_rng r;
        sg_rng_seed(&r, 3);
        sg_tensor_uniform_(w, &r, -1, 1);
        sg_optim_config c = sg_optim_config_default(SG_OPTIM_ADAM);
        c.clip_norm = 1.0;
        sg_optim *o = sg_optim_new(p, &c);
        float *g = w->grad, *v = w->data;
        float row0[300];
        memcpy(row0, v, sizeof row0);
        for (int k = 0; k < 2; k++) {
            for (int64_t i = 300; i < 300000; i++) /* row 0 (the pad embedding) gets 0 */
                g[i] = (float)sg_rng_uniform(&r) - 0.5f;
            cr_assert_eq(sg_optim_step(o, NULL), SG_OK, "%s", sg_last_error());
        }
        cr_assert_eq(memcmp(row0, v, sizeof row0), 0, "a zero-gradient row moved");
        res[run] = malloc(300000 * sizeof(float));
        memcpy(res[run], v, 300000 * sizeof(float));
        sg_optim_free(o);
        sg_params_free(p);
    }
    sg_set_num_threads(1);
    cr_assert_eq(memcmp(res[0], res[1], 300000 * sizeof(float)), 0);
    free(res[0]);
    free(res[1]);
}

/* Two stores with the same values, a large parameter (several spans of the Adam pass, some
 * threads) and a small one, filled with the same random gradients. */
static sg_params *twin_store(uint64_t seed, sg_dtype dt)
{
    sg_params *p = sg_params_new(dt);
    sg_tensor *w = sg_params_add(p, "w", 2, (int64_t[]){700, 431});
    sg_tensor *b = sg_params_add(p, "b", 1, (int64_t[]){37});
    sg_rng r;
    sg_rng_seed(&r, seed);
    sg_tensor_uniform_(w, &r, -1, 1);
    sg_tensor_uniform_(b, &r, -1, 1);
    return p;
}

static void fill_grads(sg_params *p, uint64_t seed)
{
    sg_rng r;
    sg_rng_seed(&r, seed);
    for (int i = 0; i < sg_params_count(p); i++) {
        sg_tensor *t = sg_params_at(p, i)->value;
        for (int64_t j = 0; j < sg_tensor_numel(t); j++) {
            double x = sg_rng_uniform(&r) - 0.5;
            if (t->dtype == SG_F32)
                ((float *)t->grad)[j] = (float)x;
            else
                ((double *)t->grad)[j] = x;
        }
    }
}

static size_t bytes_of(const sg_tensor *t)
{
    return (size_t)sg_tensor_numel(t) * sg_dtype_size(t->dtype);
}

/* step_zero_grad updates exactly as step (bit for bit), and leaves every gradient zero;
 * step leaves them clipped in place (g * f32 coef, as torch), or as they were. */
static void check_step_zero_grad(sg_optim_config c, sg_dtype dt)
{
    sg_params *p1 = twin_store(5, dt), *p2 = twin_store(5, dt);
    sg_optim *o1 = sg_optim_new(p1, &c), *o2 = sg_optim_new(p2, &c);
    cr_assert(o1 && o2, "%s", sg_last_error());
    for (int k = 1; k <= 3; k++) {
        fill_grads(p1, 100 + k);
        fill_grads(p2, 100 + k);
        sg_params *g0 = twin_store(5, dt); /* the gradients before the step, as values */
        fill_grads(g0, 100 + k);
        double n1 = -1, n2 = -2;
        cr_assert_eq(sg_optim_step(o1, &n1), SG_OK, "%s", sg_last_error());
        cr_assert_eq(sg_optim_step_zero_grad(o2, &n2), SG_OK, "%s", sg_last_error());
        cr_assert_eq(n1, n2);
        double coef = c.clip_norm > 0 && c.clip_norm / (n1 + 1e-6) < 1
                          ? c.clip_norm / (n1 + 1e-6) : 1;
        cr_assert(k > 1 || c.clip_norm == 0 || coef < 1, "the test means to clip");
        for (int i = 0; i < sg_params_count(p1); i++) {
            sg_tensor *a = sg_params_at(p1, i)->value, *b = sg_params_at(p2, i)->value;
            sg_tensor *g = sg_params_at(g0, i)->value;
            cr_assert_eq(memcmp(a->data, b->data, bytes_of(a)), 0, "step %d: values", k);
            if (sg_optim_exp_avg(o1, i))
                cr_assert_eq(memcmp(sg_optim_exp_avg(o1, i)->data,
                                    sg_optim_exp_avg(o2, i)->data, bytes_of(a)), 0);
            for (int64_t j = 0; j < sg_tensor_numel(a); j++) {
                double zero = dt == SG_F32 ? ((float *)b->grad)[j] : ((double *)b->grad)[j];
                cr_assert_eq(zero, 0.0, "step %d: gradient %lld not zeroed", k, (long long)j);
                double got, want;
                if (dt == SG_F32) {
                    got = ((float *)a->grad)[j];
                    want = ((float *)g->grad)[j] * (float)coef;
                } else {
                    got = ((double *)a->grad)[j];
                    want = ((double *)g->grad)[j] * coef;
                }
                cr_assert_eq(got, want, "step %d: clipped gradient %lld", k, (long long)j);
            }
        }
        sg_params_free(g0);
    }
    sg_optim_free(o1);
    sg_optim_free(o2);
    sg_params_free(p1);
    sg_params_free(p2);
}

Test(optim, step_zero_grad_updates_as_step_and_zeroes_the_gradients)
{
    sg_optim_config adam = sg_optim_config_default(SG_OPTIM_ADAM);
    adam.clip_norm = 1.0;
    check_step_zero_grad(adam, SG_F32);
    check_step_zero_grad(adam, SG_F64);
    adam.clip_norm = 0;
    check_step_zero_grad(adam, SG_F32);
    sg_optim_config adamw = sg_optim_config_default(SG_OPTIM_ADAMW);
    adamw.clip_norm = 0.5;
    sg_set_num_threads(2);
    check_step_zero_grad(adamw, SG_F32);
    sg_set_num_threads(1);
    sg_optim_config sgd = {.kind = SG_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .clip_norm = 1.0};
    check_step_zero_grad(sgd, SG_F32);
}

Test(optim, step_zero_grad_zeroes_when_the_step_is_skipped)
{
    sg_params *p = twin_store(7, SG_F32);
    sg_tensor *w = sg_params_find(p, "w");
    float before = ((float *)w->data)[0];
    sg_optim_config c = sg_optim_config_default(SG_OPTIM_ADAM);
    c.clip_norm = 1.0;
    sg_optim *o = sg_optim_new(p, &c);
    fill_grads(p, 1);
    ((float *)w->grad)[5] = NAN;
    double n = 0;
    cr_assert_eq(sg_optim_step_zero_grad(o, &n), SG_ENUMERIC);
    cr_assert(isnan(n));
    cr_assert_eq(sg_optim_step_count(o), 0);
    cr_assert_eq(((float *)w->data)[0], before, "a skipped step moved a parameter");
    cr_assert_eq(sg_grad_norm(p), 0.0, "gradients left after a skipped step");
    cr_assert_eq(sg_optim_step_zero_grad(NULL, &n), SG_EINVAL);
    cr_assert(strstr(sg_last_error(), "sg_optim_step_zero_grad"), "%s", sg_last_error());
    sg_optim_free(o);
    sg_params_free(p);
}

/* ---- sparse gradients ----------------------------------------------------------
 * An embedding table's gradient is marked sparse_grad: zeroing it after an update gives
 * its pages back (only the rows of the batch's words are written again), and the norm
 * and the update read only the pages written since (sg__nonzero_spans). Two stores with
 * the same 8192 x 64 table (a 2 MiB gradient), one of them with a name tied to it (which
 * makes it an ordinary gradient), train 3 steps, with clipping in effect or none: the
 * same values and gradient norms bit for bit, every gradient element 0 after each step
 * and, on Linux, the sparse one's pages not resident after it, nor made resident by the
 * norm or by an update that keeps the gradient. */
#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
/* pages of buf's page-aligned interior that are resident */
static size_t resident_pages(const void *buf, size_t bytes)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)buf + ps - 1) & ~(ps - 1);
    uintptr_t hi = ((uintptr_t)buf + bytes) & ~(ps - 1);
    size_t n = (hi - lo) / ps, res = 0;
    unsigned char *vec = malloc(n);
    cr_assert(vec);
    cr_assert_eq(mincore((void *)lo, hi - lo, vec), 0);
    for (size_t i = 0; i < n; i++)
        res += vec[i] & 1;
    free(vec);
    return res;
}
#endif

static void train_table(sg_optim_kind kind, bool tied, bool step_zeroes, double clip,
                        float *out, double *norms)
{
    enum { V = 8192, D = 64, B = 6 };
    sg_rng r;
    sg_rng_seed(&r, 3);
    sg_params *p = sg_params_new(SG_F32);
    sg_embedding emb;
    cr_assert_eq(sg_embedding_init(&emb, p, "emb", V, D, 0, &r), SG_OK, "%s", sg_last_error());
    cr_assert(sg_params_at(p, 0)->sparse_grad);
    if (tied) {
        cr_assert_eq(sg_params_alias(p, "tied.weight", "emb.weight"), SG_OK);
        cr_assert(!sg_params_at(p, 0)->sparse_grad, "a tied table is an ordinary one");
    }
    sg_optim_config c = sg_optim_config_default(kind);
    c.clip_norm = clip; /* 0.5: the gradients' norm is larger, clipped */
    c.momentum = kind == SG_OPTIM_SGD ? 0.9 : 0;
    sg_optim *o = sg_optim_new(p, &c);
    cr_assert(o, "%s", sg_last_error());
    size_t bytes = (size_t)V * D * sizeof(float);
    for (int step = 0; step < 3; step++) {
        sg_graph *g = sg_graph_new();
        int64_t ids[B] = {1 + step, 700, 4095, 4096 + step, 8191, 0}; /* 0: padding */
        sg_tensor *idt = sg_from_buffer(g, SG_I64, 1, (int64_t[]){B}, ids);
        sg_tensor *y = sg_embedding_forward(g, &emb, idt);
        sg_tensor *w = sg_randn(g, SG_F32, 2, (int64_t[]){B, D}, &r);
        cr_assert_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, y, w))), SG_OK, "%s", sg_last_error());
        const float *gr = emb.weight->grad;
#ifdef __linux__
        size_t written = tied ? 0 : resident_pages(gr, bytes);
#endif
        norms[step] = sg_grad_norm(p);
#ifdef __linux__
        if (!tied)
            cr_assert_eq(resident_pages(gr, bytes), written,
                         "step %d: the norm read pages that were given back", step);
#endif
        if (step_zeroes) {
            cr_assert_eq(sg_optim_step_zero_grad(o, NULL), SG_OK, "%s", sg_last_error());
        } else {
            cr_assert_eq(sg_optim_step(o, NULL), SG_OK, "%s", sg_last_error());
#ifdef __linux__
            /* an update that keeps the gradient as it is (no clipping) reads it only */
            if (!tied && clip == 0 && kind != SG_OPTIM_SGD)
                cr_assert_eq(resident_pages(gr, bytes), written,
                             "step %d: the update read pages that were given back", step);
#endif
            sg_params_zero_grad(p);
        }
#ifdef __linux__
        /* before reading it (a read maps the zero page, which mincore counts) */
        if (!tied)
            cr_assert_eq(resident_pages(gr, bytes), 0, "step %d: the zeroed gradient is resident",
                         step);
#endif
        for (int64_t i = 0; i < V * D; i++)
            cr_assert(gr[i] == 0.0f, "step %d: gradient element %lld is %g", step, (long long)i,
                      gr[i]);
        sg_graph_free(g);
    }
    memcpy(out, emb.weight->data, bytes);
    sg_optim_free(o);
    sg_params_free(p);
}

static void check_sparse(sg_optim_kind kind, bool step_zeroes, double clip)
{
    static float a[8192 * 64], b[8192 * 64];
    double na[3], nb[3];
    train_table(kind, false, step_zeroes, clip, a, na);
    train_table(kind, true, step_zeroes, clip, b, nb);
    cr_assert(memcmp(a, b, sizeof a) == 0, "the sparse table trained differently");
    for (int s = 0; s < 3; s++)
        cr_assert(na[s] == nb[s], "step %d: gradient norm %.17g, the ordinary table's %.17g", s,
                  na[s], nb[s]);
}

Test(optim, sparse_grad_adam_step_zero_grad) { check_sparse(SG_OPTIM_ADAM, true, 0.5); }
Test(optim, sparse_grad_adam_step_zero_grad_unclipped) { check_sparse(SG_OPTIM_ADAM, true, 0); }
Test(optim, sparse_grad_adam_then_params_zero_grad) { check_sparse(SG_OPTIM_ADAM, false, 0.5); }
Test(optim, sparse_grad_adam_unclipped_then_params_zero_grad)
{
    check_sparse(SG_OPTIM_ADAM, false, 0);
}
Test(optim, sparse_grad_sgd_step_zero_grad) { check_sparse(SG_OPTIM_SGD, true, 0.5); }
