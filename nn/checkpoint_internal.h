/* checkpoint_internal.h - shared by checkpoint*.c, the only sources that include hdf5.h. */
#ifndef SG_CHECKPOINT_INTERNAL_H
#define SG_CHECKPOINT_INTERNAL_H

#include <hdf5.h>
#include <stdio.h>

#include "nn_internal.h"

/* Longest HDF5 path we build: "/optim/exp_avg_sq/" + a parameter name. */
#define SG__CKPT_PATH_MAX (SG_PARAM_NAME_MAX + 32)

/* The innermost message of HDF5's current error stack ("truncated file: eof = ...")
 * into buf, or "" when the stack is empty. */
SG_INTERNAL const char *sg__ckpt_h5_reason(char *buf, size_t n);

/* Closes every id of ids[0..n) that is valid (>= 0), whatever its kind (dataset,
 * attribute, datatype, dataspace, group, property list): each is an id this code opened,
 * created or copied, held once, so dropping its reference closes it. SG_H5_CLOSE(a, b,
 * ...) passes its arguments as the array, in order. */
SG_INTERNAL void sg__ckpt_close_ids(int n, const hid_t *ids);
#define SG_H5_CLOSE(...)                                                                    \
    sg__ckpt_close_ids((int)(sizeof((hid_t[]){__VA_ARGS__}) / sizeof(hid_t)),               \
                       (hid_t[]){__VA_ARGS__})

/* A new variable-length UTF-8 string type (h5py's str); close with H5Tclose. */
SG_INTERNAL hid_t sg__ckpt_str_type(void);

/* prefix + name with '.' -> '/' into out. SG_EINVAL (with a message naming fn) when name
 * is not a dotted path of non-empty segments without '/', or is too long. */
SG_INTERNAL int sg__ckpt_param_path(const char *fn, const char *prefix, const char *name,
                                    char *out, size_t n);

/* Checks the n variable-length references of dataset d (named full) of file f, opened
 * from path, against the global heap collections they point to (checkpoint_heap.c).
 * SG_EFORMAT naming the entry, SG_EIO. */
SG_INTERNAL int sg__ckpt_check_vlen(const char *fn, const char *path, hid_t f, hid_t d,
                                    const char *full, uint64_t n);

/* Checks n raw variable-length elements (16 bytes each) against the global heap
 * collections of the file fp (user block ub, fsize bytes) they name; what names them in
 * messages ("dataset /vocab/src"). SG_EFORMAT naming the entry. */
SG_INTERNAL int sg__ckpt_check_vlen_elems(const char *fn, const char *path, FILE *fp,
                                          uint64_t ub, uint64_t fsize,
                                          const unsigned char *raw, uint64_t n,
                                          const char *what);

/* Finds every global heap collection of the file by its signature and checks its
 * structure (checkpoint_heap.c). SG_EFORMAT naming the byte offset, SG_EIO. */
SG_INTERNAL int sg__ckpt_check_heaps(const char *fn, const char *path);

/* ------------------------------------------------ reading (checkpoint_read.c) */

typedef struct rctx { /* an open file being read */
    const char *fn;   /* public function, for messages */
    const char *path; /* file, for messages */
    hid_t f;
} rctx;

/* Error code with message "fn: 'path': what obj: <HDF5's reason>". */
SG_INTERNAL int sg__ckpt_h5err(const rctx *r, int code, const char *what, const char *obj);
/* Opens r->path read-only after checking it is a non-empty regular HDF5 file with sound
 * global heaps, then checks the root attributes format and version; sets r->f. */
SG_INTERNAL int sg__ckpt_open(rctx *r);
SG_INTERNAL void sg__ckpt_close(rctx *r);
/* Opens group name ("/model") through hard links; *g = -1 when absent and not required. */
SG_INTERNAL int sg__ckpt_open_group(const rctx *r, const char *name, bool required, hid_t *g);
/* Every scalar integer, real or string attribute of obj into out. */
SG_INTERNAL int sg__ckpt_read_attrs(const rctx *r, hid_t obj, const char *objname, sg_attrs *out);

/* Checks the object header of name (below loc; full is its absolute name) when it is of
 * version 1, which has no checksum, before HDF5 decodes its messages (checkpoint_ohdr.c).
 * SG_EFORMAT naming full and the fault, SG_EIO. */
SG_INTERNAL int sg__ckpt_check_ohdr(const rctx *r, hid_t loc, const char *name,
                                    const char *full);

/* Number of distinct (non-alias) parameters of p. */
SG_INTERNAL int sg__ckpt_distinct(const sg_params *p);

#endif
