/* error.c - per-thread last-error message: the detector writes, callers propagate. */
#include "tensor_internal.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[1024];

const char *sg_last_error(void) { return last_error; }

void sg_clear_error(void) { last_error[0] = '\0'; }

const char *sg_strerror(int code)
{
    switch (code) {
    case SG_OK: return "SG_OK";
    case SG_ENOMEM: return "SG_ENOMEM";
    case SG_EINVAL: return "SG_EINVAL";
    case SG_ESHAPE: return "SG_ESHAPE";
    case SG_EDTYPE: return "SG_EDTYPE";
    case SG_ERANGE: return "SG_ERANGE";
    case SG_EIO: return "SG_EIO";
    case SG_EFORMAT: return "SG_EFORMAT";
    case SG_ESTATE: return "SG_ESTATE";
    case SG_ENUMERIC: return "SG_ENUMERIC";
    default: return "SG_E?";
    }
}

int sg__error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

const char *sg__shape_str(const sg_tensor *t, char *buf, size_t n)
{
    if (!t) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
    return buf;
}
