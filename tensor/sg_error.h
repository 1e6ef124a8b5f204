/*
 * sg_error.h - error codes and the per-thread last-error message.
 *
 * Every fallible seqgrad function returns either an int status (SG_OK = 0,
 * a negative SG_E* code on failure) or a pointer (NULL on failure). The code
 * that detects the error records one message naming the function, the
 * argument and the offending values; callers only propagate the code.
 *
 *     sg_tensor *y = sg_matmul(g, a, b);
 *     if (!y) fprintf(stderr, "%s\n", sg_last_error());
 *
 * The library never aborts or exits on a caller's mistake and never prints.
 */
#ifndef SG_ERROR_H
#define SG_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SG_BUILDING_LIBRARY)
#define SG_API __attribute__((visibility("default")))
#else
#define SG_API
#endif

typedef enum sg_status {
    SG_OK = 0,
    SG_ENOMEM = -1,    /* allocation failed */
    SG_EINVAL = -2,    /* invalid argument (NULL, bad option, bad value) */
    SG_ESHAPE = -3,    /* shapes do not match / cannot broadcast / bad view */
    SG_EDTYPE = -4,    /* unsupported or mismatched dtype */
    SG_ERANGE = -5,    /* index out of range (token id, dim, slice bounds) */
    SG_EIO = -6,       /* file cannot be opened, read or written */
    SG_EFORMAT = -7,   /* file content is malformed or of the wrong format */
    SG_ESTATE = -8,    /* call not valid in the object's current state */
    SG_ENUMERIC = -9,  /* NaN or Inf where finite values are required */
    SG_STATUS_COUNT_ = 10
} sg_status;

/* This thread's last error message; "" if none. Owned by the library, valid
 * until the next seqgrad call on this thread that fails. */
SG_API const char *sg_last_error(void);

/* The symbolic name of a status code ("SG_ESHAPE", ...); never NULL. */
SG_API const char *sg_strerror(int code);

/* Forget this thread's last error message. */
SG_API void sg_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
