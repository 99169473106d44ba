/* The visualizations' image kernels: jitter rolls, Gaussian blur,
 * pixel-range clamping and 8-bit quantization, backward seeds (viz.h). */
#include <math.h>
#include <string.h>

#include "viz/viz.h"

/* ----------------------------------------------------------- jitter roll */

static int mod(int64_t a, int n)
{
    int64_t m = a % n;
    return (int)(m < 0 ? m + n : m);
}

void cnv_roll_chw(float *x, int c, int h, int w, int dy, int dx, float *scratch)
{
    if (c <= 0 || h <= 0 || w <= 0)
        return;
    int sy = mod(dy, h), sx = mod(dx, w);
    if (sy == 0 && sx == 0)
        return;
    size_t plane = (size_t)h * w;
    for (int k = 0; k < c; k++) {
        float *p = x + k * plane;
        memcpy(scratch, p, plane * sizeof(float));
        for (int y = 0; y < h; y++) {
            const float *src = scratch + (size_t)mod((int64_t)y - sy, h) * w;
            float *dst = p + (size_t)y * w;
            /* dst[xx] = src[xx - sx]: two contiguous runs */
            memcpy(dst + sx, src, (size_t)(w - sx) * sizeof(float));
            memcpy(dst, src + (w - sx), (size_t)sx * sizeof(float));
        }
    }
}

void cnv_roll_nchw(float *x, int n, int c, int h, int w, const int *dy, const int *dx,
                   float *scratch)
{
    size_t item = (size_t)c * h * w;
    for (int i = 0; i < n; i++)
        cnv_roll_chw(x + i * item, c, h, w, dy[i], dx[i], scratch);
}

/* ------------------------------------------------------------------ blur */

int cnv_blur_radius(float sigma)
{
    if (!(sigma > 0.0f))
        return 0;
    if (sigma > 1000.0f) /* a kernel far wider than any image: cap it */
        sigma = 1000.0f;
    int r = (int)ceilf(3.0f * sigma);
    return r < 1 ? 1 : r;
}

size_t cnv_blur_scratch(int h, int w, float sigma)
{
    /* the plane, the kernel, one row padded by its mirror on both sides */
    size_t plane, n, r = (size_t)cnv_blur_radius(sigma);
    if (h <= 0 || w <= 0 || !cnv_mul_size((size_t)h, (size_t)w, &plane) || !cnv_add_size(plane, 4 * r + 1, &n) ||
        !cnv_add_size(n, (size_t)w, &n))
        return 0;
    return n;
}

/* scipy 'reflect' (half-sample symmetric): period 2n, mirrored halves. */
static int reflect(int i, int n)
{
    int m = mod(i, 2 * n);
    return m < n ? m : 2 * n - 1 - m;
}

/* The normalized kernel kern[-R..R] of sigma in scratch after the plane
 * (cnv_blur_scratch); R = 0 when there is no blur. */
static float *blur_kernel(float sigma, int h, int w, float *scratch, int *R)
{
    *R = cnv_blur_radius(sigma);
    float *kern = scratch + (size_t)h * w + *R;
    double sum = 0.0;
    for (int t = -*R; t <= *R; t++)
        sum += exp(-0.5 * (double)t * t / ((double)sigma * sigma));
    for (int t = -*R; t <= *R; t++)
        kern[t] = (float)(exp(-0.5 * (double)t * t / ((double)sigma * sigma)) / sum);
    return kern;
}

void cnv_blur_chw(float *x, int c, int h, int w, float sigma, float *scratch)
{
    int R;
    if (cnv_blur_radius(sigma) == 0 || c <= 0 || h <= 0 || w <= 0)
        return;
    size_t plane = (size_t)h * w;
    float *tmp = scratch, *kern = blur_kernel(sigma, h, w, scratch, &R), *padded = kern + R + 1 + R;

    for (int k = 0; k < c; k++) {
        float *p = x + k * plane;
        /* rows: p -> tmp, each through a copy padded by its mirror (R
         * may be larger than the row) */
        for (int y = 0; y < h; y++) {
            const float *row = p + (size_t)y * w;
            float *out = tmp + (size_t)y * w;
            for (int xx = -R; xx < w + R; xx++)
                padded[xx] = row[reflect(xx, w)];
            for (int xx = 0; xx < w; xx++)
                out[xx] = 0.0f;
            for (int t = -R; t <= R; t++) { /* a tap at a time: contiguous */
                const float *src = padded + t;
                float kt = kern[t];
                for (int xx = 0; xx < w; xx++)
                    out[xx] += kt * src[xx];
            }
        }
        /* columns: tmp -> p, a whole row at a time for contiguous access */
        for (int y = 0; y < h; y++) {
            float *out = p + (size_t)y * w;
            for (int xx = 0; xx < w; xx++)
                out[xx] = 0.0f;
            for (int t = -R; t <= R; t++) {
                const float *src = tmp + (size_t)reflect(y + t, h) * w;
                float kt = kern[t];
                for (int xx = 0; xx < w; xx++)
                    out[xx] += kt * src[xx];
            }
        }
    }
}

void cnv_blur_chw_adjoint(float *g, int c, int h, int w, float sigma, float *scratch)
{
    int R;
    if (cnv_blur_radius(sigma) == 0 || c <= 0 || h <= 0 || w <= 0)
        return;
    size_t plane = (size_t)h * w;
    float *tmp = scratch, *kern = blur_kernel(sigma, h, w, scratch, &R);
    /* the passes of cnv_blur_chw transposed, in reverse order: each output
     * gives back to the inputs it read, with the weights it read them by */
    for (int k = 0; k < c; k++) {
        float *p = g + k * plane;
        memset(tmp, 0, plane * sizeof *tmp);
        for (int y = 0; y < h; y++) {
            const float *src = p + (size_t)y * w;
            for (int t = -R; t <= R; t++) {
                float *dst = tmp + (size_t)reflect(y + t, h) * w, kt = kern[t];
                for (int xx = 0; xx < w; xx++)
                    dst[xx] += kt * src[xx];
            }
        }
        memset(p, 0, plane * sizeof *p);
        /* the columns whose taps all fall inside the row give to
         * out[xx + t] directly, one contiguous run per tap; the others
         * through the mirror */
        int lo = R < w ? R : w, hi = w - R > lo ? w - R : lo;
        for (int y = 0; y < h; y++) {
            const float *row = tmp + (size_t)y * w;
            float *out = p + (size_t)y * w;
            for (int t = -R; t <= R; t++) {
                float kt = kern[t];
                for (int xx = lo; xx < hi; xx++)
                    out[xx + t] += kt * row[xx];
            }
            for (int xx = 0; xx < w; xx++) {
                if (xx == lo)
                    xx = hi;
                if (xx >= w)
                    break;
                for (int t = -R; t <= R; t++)
                    out[reflect(xx + t, w)] += kern[t] * row[xx];
            }
        }
    }
}

/* ------------------------------------------------ pixel range, quantize */

void cnv_clamp_pixels(float *x, int n, int c, int h, int w, const float *mean,
                      const float *std)
{
    size_t plane = (size_t)h * w;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < c; k++) {
            float m = mean ? mean[k] : 0.0f, s = std ? std[k] : 1.0f;
            float lo = (0.0f - m) / s, hi = (1.0f - m) / s;
            float *p = x + ((size_t)i * c + k) * plane;
            for (size_t j = 0; j < plane; j++)
                p[j] = p[j] < lo ? lo : p[j] > hi ? hi : p[j];
        }
}

int cnv_pixel_byte(float x, float m, float s)
{
    double v = ((double)x * s + m) * 255.0;
    if (!(v > 0.0))
        return 0;
    if (v >= 255.0)
        return 255;
    return (int)(v + 0.5);
}

void cnv_quantize_pixels(float *x, int n, int c, int h, int w, const float *mean,
                         const float *std)
{
    size_t plane = (size_t)h * w;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < c; k++) {
            float m = mean ? mean[k] : 0.0f, s = std ? std[k] : 1.0f;
            float *p = x + ((size_t)i * c + k) * plane;
            for (size_t j = 0; j < plane; j++)
                p[j] = (float)(((double)cnv_pixel_byte(p[j], m, s) / 255.0 - m) / s);
        }
}

/* --------------------------------------------------------------- seeds */

void cnv_seed_classes(float *seed, int n, int k, const int *cls)
{
    memset(seed, 0, (size_t)n * k * sizeof(float));
    for (int i = 0; i < n; i++)
        if (cls[i] >= 0 && cls[i] < k)
            seed[(size_t)i * k + cls[i]] = 1.0f;
}

void cnv_seed_channel_mean(float *seed, int n, int c, int h, int w, const int *ch)
{
    size_t plane = (size_t)h * w;
    memset(seed, 0, (size_t)n * c * plane * sizeof(float));
    for (int i = 0; i < n; i++) {
        if (ch[i] < 0 || ch[i] >= c)
            continue;
        float *p = seed + ((size_t)i * c + ch[i]) * plane;
        for (size_t j = 0; j < plane; j++)
            p[j] = 1.0f / (float)plane;
    }
}
