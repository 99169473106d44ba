/* Depthwise convolution by direct loops (see depthwise.h). Each output row
 * is the sum, over the kernel taps whose input row exists, of a weight
 * times a run of that input row; runs are clipped to the columns that fall
 * inside the image, so the padding costs nothing. The row kernels are
 * written once (ROW_KERNELS) and compiled for each vector level of
 * core/cpu.h; their loops go in blocks of 16 so that the compiler
 * vectorizes them at -O2 and the same additions happen in the same order
 * at every level. */
#include "engine/ops/depthwise.h"

#include <string.h>

#include "core/cpu.h"

/* ------------------------------------------------------------- kernels */

#define BLOCK 16

/* y[i] += a x[i*S]; y[i*S] += a x[i] (S 1 or 2); the dot product of
 * x[i*S] and y[i] in BLOCK partial sums added in a fixed order. */
#define ROW_KERNELS(sfx, attr)                                                                                \
    attr static void axpy_##sfx(float *restrict y, const float *restrict x, float a, int64_t n, int s)       \
    {                                                                                                         \
        int64_t i = 0;                                                                                        \
        if (s == 1) {                                                                                         \
            for (; i + BLOCK <= n; i += BLOCK)                                                                \
                for (int j = 0; j < BLOCK; j++)                                                               \
                    y[i + j] += a * x[i + j];                                                                 \
        } else if (s == 2) {                                                                                  \
            for (; i + BLOCK <= n; i += BLOCK)                                                                \
                for (int j = 0; j < BLOCK; j++)                                                               \
                    y[i + j] += a * x[2 * (i + j)];                                                           \
        }                                                                                                     \
        for (; i < n; i++)                                                                                    \
            y[i] += a * x[i * s];                                                                             \
    }                                                                                                         \
    attr static void scatter_##sfx(float *restrict y, const float *restrict x, float a, int64_t n, int s)    \
    {                                                                                                         \
        int64_t i = 0;                                                                                        \
        if (s == 1)                                                                                           \
            for (; i + BLOCK <= n; i += BLOCK)                                                                \
                for (int j = 0; j < BLOCK; j++)                                                               \
                    y[i + j] += a * x[i + j];                                                                 \
        for (; i < n; i++)                                                                                    \
            y[i * s] += a * x[i];                                                                             \
    }                                                                                                         \
    attr static float dot_##sfx(const float *restrict x, const float *restrict y, int64_t n, int s)          \
    {                                                                                                         \
        float acc[BLOCK] = {0};                                                                               \
        int64_t i = 0;                                                                                        \
        if (s == 1) {                                                                                         \
            for (; i + BLOCK <= n; i += BLOCK)                                                                \
                for (int j = 0; j < BLOCK; j++)                                                               \
                    acc[j] += x[i + j] * y[i + j];                                                            \
        } else if (s == 2) {                                                                                  \
            for (; i + BLOCK <= n; i += BLOCK)                                                                \
                for (int j = 0; j < BLOCK; j++)                                                               \
                    acc[j] += x[2 * (i + j)] * y[i + j];                                                      \
        }                                                                                                     \
        for (; i < n; i++)                                                                                    \
            acc[i % BLOCK] += x[i * s] * y[i];                                                                \
        float sum = 0.0f;                                                                                     \
        for (int j = 0; j < BLOCK; j++)                                                                       \
            sum += acc[j];                                                                                    \
        return sum;                                                                                           \
    }

typedef struct row_kernels {
    void (*axpy)(float *restrict y, const float *restrict x, float a, int64_t n, int s);
    void (*scatter)(float *restrict y, const float *restrict x, float a, int64_t n, int s);
    float (*dot)(const float *restrict x, const float *restrict y, int64_t n, int s);
} row_kernels;

ROW_KERNELS(base, )
#if defined(__x86_64__) || defined(__i386__)
ROW_KERNELS(avx2, __attribute__((target("avx2"))))
ROW_KERNELS(avx512, __attribute__((target("avx512f"))))
#endif

static row_kernels kernels(int level)
{
#if defined(__x86_64__) || defined(__i386__)
    switch (level) {
    case CNV_SIMD_AVX512: return (row_kernels){axpy_avx512, scatter_avx512, dot_avx512};
    case CNV_SIMD_AVX2: return (row_kernels){axpy_avx2, scatter_avx2, dot_avx2};
    default: break;
    }
#endif
    (void)level;
    return (row_kernels){axpy_base, scatter_base, dot_base};
}

/* ------------------------------------------------------------- geometry */

/* The output columns [*lo, *hi) whose tap in kernel column j reads inside
 * the image, and that tap's input column for output column 0 (*off: the
 * input column of output column ow is ow * sw + *off). */
static void columns(const cnv_im2col_geom *g, int64_t j, int64_t *lo, int64_t *hi, int64_t *off)
{
    *off = j * g->dw - g->pl;
    int64_t first = -*off, last = g->w - 1 - *off; /* ow * sw in [first, last] */
    *lo = first <= 0 ? 0 : (first + g->sw - 1) / g->sw;
    *hi = last < 0 ? 0 : last / g->sw + 1;
    if (*hi > g->ow)
        *hi = g->ow;
    if (*lo > *hi)
        *lo = *hi;
}

/* The input row of output row oh and kernel row i, or -1 in the padding. */
static int64_t input_row(const cnv_im2col_geom *g, int64_t oh, int64_t i)
{
    int64_t ih = oh * g->sh + i * g->dh - g->pt;
    return ih >= 0 && ih < g->h ? ih : -1;
}

/* ------------------------------------------------------------ the passes */

void cnv_dw_forward(const cnv_im2col_geom *g, int level, const float *x, const float *w, float bias, float *y)
{
    row_kernels k = kernels(level);
    int s = (int)g->sw;
    for (int64_t oh = 0; oh < g->oh; oh++) {
        float *yr = y + oh * g->ow;
        for (int64_t o = 0; o < g->ow; o++)
            yr[o] = bias;
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t ih = input_row(g, oh, i);
            if (ih < 0)
                continue;
            const float *xr = x + ih * g->w;
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t lo, hi, off;
                columns(g, j, &lo, &hi, &off);
                if (lo < hi)
                    k.axpy(yr + lo, xr + lo * s + off, w[i * g->kw + j], hi - lo, s);
            }
        }
    }
}

void cnv_dw_backward_x(const cnv_im2col_geom *g, int level, const float *dy, const float *w, float *dx)
{
    row_kernels k = kernels(level);
    int s = (int)g->sw;
    for (int64_t oh = 0; oh < g->oh; oh++) {
        const float *dyr = dy + oh * g->ow;
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t ih = input_row(g, oh, i);
            if (ih < 0)
                continue;
            float *dxr = dx + ih * g->w;
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t lo, hi, off;
                columns(g, j, &lo, &hi, &off);
                if (lo < hi)
                    k.scatter(dxr + lo * s + off, dyr + lo, w[i * g->kw + j], hi - lo, s);
            }
        }
    }
}

void cnv_dw_backward_w(const cnv_im2col_geom *g, int level, const float *x, const float *dy, float *dw)
{
    row_kernels k = kernels(level);
    int s = (int)g->sw;
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++) {
            int64_t lo, hi, off;
            columns(g, j, &lo, &hi, &off);
            double sum = 0.0; /* over up to oh rows */
            for (int64_t oh = 0; oh < g->oh && lo < hi; oh++) {
                int64_t ih = input_row(g, oh, i);
                if (ih >= 0)
                    sum += k.dot(x + ih * g->w + lo * s + off, dy + oh * g->ow + lo, hi - lo, s);
            }
            dw[i * g->kw + j] += (float)sum;
        }
}
