/* fixture.h - read PyTorch reference tensors from tests/fixtures/<area>.h5 (HDF5) for the
 * Criterion tests. Fixtures are written by tools/gen_fixtures_*.py and committed. */
#ifndef SG_TEST_FIXTURE_H
#define SG_TEST_FIXTURE_H

#include <criterion/criterion.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>

#include "sg_autograd.h"

/* Opens $SG_FIXTURES/name (fails the test if missing). Close with H5Fclose. */
static inline hid_t fx_open(const char *name)
{
    const char *dir = getenv("SG_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", name);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0, "cannot open fixture %s", path);
    return f;
}

/* Dataset `path` as a heap tensor of dtype dt (SG_F32, SG_F64 or SG_I64; converted by
 * HDF5). Fails the test if it is missing. Free with sg_tensor_free. */
static inline sg_tensor *fx_read(hid_t f, const char *path, sg_dtype dt)
{
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    cr_assert_geq(d, 0, "fixture has no dataset %s", path);
    hid_t s = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(s);
    hsize_t dims[SG_MAX_DIMS];
    H5Sget_simple_extent_dims(s, dims, NULL);
    int64_t shape[SG_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        shape[i] = (int64_t)dims[i];
    sg_tensor *t = sg_tensor_new(dt, nd, shape);
    cr_assert(t);
    hid_t mt = dt == SG_F32 ? H5T_NATIVE_FLOAT : dt == SG_F64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64;
    cr_assert_geq(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data), 0, "reading %s", path);
    H5Sclose(s);
    H5Dclose(d);
    return t;
}

/* Scalar attribute or 0-d dataset value as double. */
static inline double fx_scalar(hid_t f, const char *path)
{
    sg_tensor *t = fx_read(f, path, SG_F64);
    double v = ((double *)t->data)[0];
    sg_tensor_free(t);
    return v;
}

#endif
