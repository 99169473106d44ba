/* Tensor shapes: counts, equality, text (see shape.h). */
#include "core/shape.h"

#include "core/base.h"

#include <stdio.h>
#include <string.h>

int64_t cnv_shape_count(const cnv_shape *s)
{
    if (!s || s->ndim < 0 || s->ndim > CNV_MAX_DIMS)
        return -1;
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        if (!cnv_mul_i64(n, s->dims[i], &n))
            return -1;
    return n;
}

int cnv_shape_ok(const cnv_shape *s)
{
    if (!s || s->ndim < 0 || s->ndim > CNV_MAX_DIMS)
        return 0;
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        if (s->dims[i] < 0 || !cnv_mul_i64(n, s->dims[i] ? s->dims[i] : 1, &n) || n > CNV_MAX_ELEMS)
            return 0;
    return 1;
}

void cnv_shape4(cnv_shape *s, int64_t n, int64_t c, int64_t h, int64_t w)
{
    memset(s, 0, sizeof *s);
    s->ndim = 4;
    s->dims[0] = n;
    s->dims[1] = c;
    s->dims[2] = h;
    s->dims[3] = w;
}

int cnv_shape_equal(const cnv_shape *a, const cnv_shape *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return 1;
}

const char *cnv_shape_str(const cnv_shape *s, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    if (s->ndim < 0 || s->ndim > CNV_MAX_DIMS) {
        snprintf(buf, len, "(rank %d)", s->ndim);
        return buf;
    }
    if (s->ndim == 0)
        snprintf(buf, len, "scalar");
    for (int i = 0; i < s->ndim && used < len; i++) {
        int k = snprintf(buf + used, len - used, i ? "x%lld" : "%lld",
                         (long long)s->dims[i]);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    return buf;
}
