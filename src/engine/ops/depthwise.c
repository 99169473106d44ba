/* Depthwise convolution by direct loops (see depthwise.h).
 *
 * Stride 1 (most depthwise layers): the input is copied once into a
 * zero-bordered plane of width wp, and the output is computed in a plane
 * of the same row pitch ("wide": wp - ow garbage columns per row). Each
 * kernel tap is then one run over the whole plane: wide[k] += w *
 * padded[k + tap offset], k < (oh - 1) * wp + ow, and the rows are copied
 * out at the end. The backward passes run the same runs the other way.
 *
 * Other strides: each output row is the sum, over the kernel taps whose
 * input row exists, of a weight times a run of that input row, runs
 * clipped to the columns inside the image.
 *
 * The row kernels are
 * written once (ROW_KERNELS) and compiled for each vector level of
 * core/cpu.h; their loops go in blocks of 16 so that the compiler
 * vectorizes them at -O2 and the same additions happen in the same order
 * at every level. */
#include "engine/ops/depthwise.h"

#include <string.h>

#include "core/cpu.h"
#include "engine/ops/elementwise.h"

/* ------------------------------------------------------------- kernels */

#define BLOCK 16

/* y[i] += a x[i*S]; y[i*S] += a x[i] (the first at S 1); the dot product of
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
        if (s == 1) {                                                                                         \
            axpy_##sfx(y, x, a, n, 1);                                                                        \
            return;                                                                                           \
        }                                                                                                     \
        for (int64_t i = 0; i < n; i++)                                                                       \
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

/* ------------------------------------------------------- stride 1: planes */

/* The zero-bordered plane: hp x wp, the input at (pt, pl). */
static int64_t padded_h(const cnv_im2col_geom *g)
{
    return g->oh + (g->kh - 1) * g->dh;
}

static int64_t padded_w(const cnv_im2col_geom *g)
{
    return g->ow + (g->kw - 1) * g->dw;
}

/* The runs' length: up to the last output of the last row. */
static int64_t run_len(const cnv_im2col_geom *g)
{
    return (g->oh - 1) * padded_w(g) + g->ow;
}

int64_t cnv_dw_scratch(const cnv_im2col_geom *g)
{
    if (g->sh != 1 || g->sw != 1)
        return 0;
    /* huge pads with a dilated kernel make a small output of a vast
     * padded plane: then there is no plane (-1) */
    int64_t rows, n;
    if (!cnv_mul_i64(g->kh - 1, g->dh, &rows) || (rows += g->oh) > CNV_MAX_ELEMS ||
        !cnv_mul_i64(g->kw - 1, g->dw, &n) || (n += g->ow) > CNV_MAX_ELEMS || !cnv_mul_i64(rows + g->oh, n, &n) ||
        n > CNV_MAX_ELEMS)
        return -1;
    return n;
}

/* pad = x with zero borders (x NULL: all zero). At stride 1 the plane is
 * the input with its pads: hp = pt + h + pb, wp = pl + w + pr. Only the
 * borders are cleared when x fills the rest. */
static void pad_plane(const cnv_im2col_geom *g, const float *x, float *pad)
{
    int64_t hp = padded_h(g), wp = padded_w(g), right = wp - g->pl - g->w;
    if (!x) {
        memset(pad, 0, (size_t)(hp * wp) * sizeof *pad);
        return;
    }
    memset(pad, 0, (size_t)(g->pt * wp) * sizeof *pad);
    for (int64_t r = 0; r < g->h; r++) {
        float *row = pad + (r + g->pt) * wp;
        memset(row, 0, (size_t)g->pl * sizeof *row);
        memcpy(row + g->pl, x + r * g->w, (size_t)g->w * sizeof *row);
        memset(row + g->pl + g->w, 0, (size_t)right * sizeof *row);
    }
    memset(pad + (g->pt + g->h) * wp, 0, (size_t)((hp - g->pt - g->h) * wp) * sizeof *pad);
}

/* wide = y with garbage columns zeroed, or y = the valid part of wide. */
static void to_wide(const cnv_im2col_geom *g, const float *y, float *wide)
{
    int64_t wp = padded_w(g);
    for (int64_t r = 0; r < g->oh; r++) {
        memcpy(wide + r * wp, y + r * g->ow, (size_t)g->ow * sizeof *wide);
        if (r + 1 < g->oh)
            memset(wide + r * wp + g->ow, 0, (size_t)(wp - g->ow) * sizeof *wide);
    }
}

static void from_wide(const cnv_im2col_geom *g, const float *wide, float *y)
{
    int64_t wp = padded_w(g);
    for (int64_t r = 0; r < g->oh; r++)
        memcpy(y + r * g->ow, wide + r * wp, (size_t)g->ow * sizeof *y);
}

static void plane_forward(const cnv_im2col_geom *g, row_kernels k, const float *x, const float *w, float bias,
                          float *y, float *scratch)
{
    int64_t wp = padded_w(g), len = run_len(g);
    float *pad = scratch, *wide = scratch + padded_h(g) * wp;
    pad_plane(g, x, pad);
    for (int64_t i = 0; i < len; i++)
        wide[i] = bias;
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++)
            k.axpy(wide, pad + i * g->dh * wp + j * g->dw, w[i * g->kw + j], len, 1);
    from_wide(g, wide, y);
}

/* ------------------------------------------------------------ the passes */

void cnv_dw_forward(const cnv_im2col_geom *g, int level, const float *x, const float *w, float bias, float *y,
                    float *scratch)
{
    row_kernels k = kernels(level);
    if (g->sh == 1 && g->sw == 1) {
        plane_forward(g, k, x, w, bias, y, scratch);
        return;
    }
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

/* dx (h, w) += the adjoint of one channel's correlation applied to dy,
 * row by row. */
static void rows_backward_x(const cnv_im2col_geom *g, row_kernels k, const float *dy, const float *w, float *dx)
{
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

void cnv_dw_backward_x(const cnv_im2col_geom *g, int level, const float *dy, int64_t dy_stride, const float *w,
                       int64_t count, float *dx, int store, float *scratch)
{
    row_kernels k = kernels(level);
    int64_t kk = g->kh * g->kw;
    if (g->sh != 1 || g->sw != 1) {
        if (store)
            memset(dx, 0, (size_t)(g->h * g->w) * sizeof *dx);
        for (int64_t c = 0; c < count; c++)
            rows_backward_x(g, k, dy + c * dy_stride, w + c * kk, dx);
        return;
    }
    /* every channel's runs into one padded plane, then its interior out */
    int64_t wp = padded_w(g), len = run_len(g);
    float *pad = scratch, *wide = scratch + padded_h(g) * wp;
    pad_plane(g, NULL, pad);
    for (int64_t c = 0; c < count; c++) {
        to_wide(g, dy + c * dy_stride, wide);
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++)
                k.axpy(pad + i * g->dh * wp + j * g->dw, wide, w[c * kk + i * g->kw + j], len, 1);
    }
    for (int64_t r = 0; r < g->h; r++) {
        const float *src = pad + (r + g->pt) * wp + g->pl;
        float *dst = dx + r * g->w;
        if (store)
            memcpy(dst, src, (size_t)g->w * sizeof *dst);
        else
            cnv_add_to(src, dst, g->w);
    }
}

void cnv_dw_backward_w(const cnv_im2col_geom *g, int level, const float *x, const float *dy, float *dw,
                       float *scratch)
{
    row_kernels k = kernels(level);
    if (g->sh == 1 && g->sw == 1) {
        int64_t wp = padded_w(g), len = run_len(g);
        float *pad = scratch, *wide = scratch + padded_h(g) * wp;
        pad_plane(g, x, pad);
        to_wide(g, dy, wide);
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++)
                dw[i * g->kw + j] += k.dot(pad + i * g->dh * wp + j * g->dw, wide, len, 1);
        return;
    }
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
