/* Image parameterizations of the Lucid recipe (lucid.h): pixels or a
 * 1/f-scaled Fourier basis (FFTW's single-precision real transforms),
 * color decorrelation, and a sigmoid or a clamp to [0, 1]; each with its
 * exact backward. */
#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "viz/lucid.h"

/* The symmetric square root of the covariance of (R, G, B) in [0, 1] over
 * the 1.4 million pixels of the five photos in ../shared/imagenet/images,
 * scaled so that its largest column has unit length (tools/color_stats.py
 * printed it). Natural photos' channels are strongly correlated: a step
 * along one parameter channel moves all three colors together, mostly
 * brightness, which keeps the pictures from the saturated color noise that
 * independent channels give. */
const float cnv_color_sqrt[9] = {
    0.750493f, 0.449354f, 0.395342f,
    0.449354f, 0.691823f, 0.339179f,
    0.395342f, 0.339179f, 0.853617f,
};

/* FFTW's planner is not thread-safe (executing plans is): sessions on
 * several threads may make class models at once. */
static pthread_mutex_t g_plan_lock = PTHREAD_MUTEX_INITIALIZER;

size_t cnv_param_item(const cnv_param *p)
{
    return p->count / (size_t)p->n;
}

/* Frequency of index k of an n-point transform, cycles per sample. */
static double freq(int k, int n)
{
    return (k <= n / 2 ? k : k - n) / (double)n;
}

/* The weight of half-spectrum column kx in the real image: 1 for the
 * columns whose conjugates are not stored (0, and w/2 when w is even),
 * 2 for the others, which stand for themselves and their conjugates. */
static double col_weight(int kx, int w)
{
    return kx == 0 || 2 * kx == w ? 1.0 : 2.0;
}

static void init_scale(cnv_param *p)
{
    int h = p->h, w = p->w, wf = p->wf;
    double fmin = 1.0 / (h > w ? h : w), var = 0.0;
    for (int ky = 0; ky < h; ky++)
        for (int kx = 0; kx < wf; kx++) {
            double fy = freq(ky, h), fx = freq(kx, w), f = sqrt(fy * fy + fx * fx);
            double s = 1.0 / (f > fmin ? f : fmin);
            p->scale[ky * wf + kx] = (float)s;
            double cw = col_weight(kx, w);
            var += cw * cw * s * s;
        }
    /* a pixel is sum_k c_k s_k (Re t_k cos - Im t_k sin): its variance for
     * unit-variance parts is sum_k c_k^2 s_k^2 (up to the few purely real
     * frequencies) */
    double norm = 1.0 / sqrt(var);
    for (int k = 0; k < h * wf; k++)
        p->scale[k] = (float)(p->scale[k] * norm);
}

cnv_status cnv_param_init(cnv_param *p, int spectral, int decorrelate, int sigmoid, int n, int c,
                          int h, int w, cnv_err *e)
{
    memset(p, 0, sizeof *p);
    p->spectral = spectral;
    p->decorrelate = decorrelate && c == 3;
    p->sigmoid = sigmoid;
    p->n = n;
    p->c = c;
    p->h = h;
    p->w = w;
    p->wf = w / 2 + 1;
    size_t nc, half, t;
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || !cnv_mul_size((size_t)n, (size_t)c, &nc) ||
        nc > INT32_MAX || !cnv_mul_size(nc, (size_t)h * w, &p->pixels) ||
        !cnv_mul_size((size_t)h, (size_t)p->wf, &half) || !cnv_mul_size(nc, half, &t) ||
        !cnv_mul_size(t, 2, &t) || p->pixels > CNV_MAX_ELEMS || t > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_INVALID_ARG, "parameterization: %d images of %dx%dx%d are too many values",
                        n, c, h, w);
    p->count = spectral ? t : p->pixels;
    p->pix = cnv_malloc(p->pixels * sizeof(float));
    if (!p->pix)
        goto nomem;
    if (!spectral) {
        if (!(p->dpix = cnv_malloc(p->pixels * sizeof(float))))
            goto nomem;
        return CNV_OK;
    }
    p->scale = cnv_malloc(half * sizeof(float));
    p->spec = cnv_malloc(t * sizeof(float));
    if (!p->scale || !p->spec)
        goto nomem;
    p->dpix = p->spec; /* t >= pixels: 2 h (w/2+1) >= h w */
    init_scale(p);
    int dims[2] = { h, w }, howmany = (int)nc;
    pthread_mutex_lock(&g_plan_lock);
    /* FFTW_ESTIMATE: the plan depends only on the sizes (FFTW_MEASURE
     * times algorithms and could pick different ones, hence different
     * roundings, from one run to the next) */
    p->inv = fftwf_plan_many_dft_c2r(2, dims, howmany, (fftwf_complex *)p->spec, NULL, 1, (int)half,
                                     p->pix, NULL, 1, h * w, FFTW_ESTIMATE);
    p->fwd = fftwf_plan_many_dft_r2c(2, dims, howmany, p->pix, NULL, 1, h * w, (fftwf_complex *)p->spec,
                                     NULL, 1, (int)half, FFTW_ESTIMATE);
    pthread_mutex_unlock(&g_plan_lock);
    if (!p->inv || !p->fwd) {
        cnv_param_free(p);
        return cnv_fail(e, CNV_ERR_NOMEM, "parameterization: FFTW could not plan %d transforms of %dx%d",
                        howmany, h, w);
    }
    return CNV_OK;
nomem:
    cnv_param_free(p);
    return cnv_fail(e, CNV_ERR_NOMEM, "parameterization: out of memory for %d images of %dx%dx%d", n, c, h, w);
}

void cnv_param_free(cnv_param *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&g_plan_lock);
    if (p->inv)
        fftwf_destroy_plan(p->inv);
    if (p->fwd)
        fftwf_destroy_plan(p->fwd);
    pthread_mutex_unlock(&g_plan_lock);
    cnv_free(p->scale);
    if (p->dpix != p->spec)
        cnv_free(p->dpix);
    cnv_free(p->spec);
    cnv_free(p->pix);
    memset(p, 0, sizeof *p);
}

void cnv_param_random(const cnv_param *p, float *theta, int i, float std, cnv_rng *rng)
{
    size_t per = cnv_param_item(p);
    float *t = theta + (size_t)i * per;
    for (size_t j = 0; j < per; j++)
        t[j] = std * cnv_rng_normal(rng);
}

/* The half spectrum of one channel, made Hermitian where the real
 * transform needs it: in columns 0 and w/2 (w even) entry (ky, kx) and
 * (-ky, kx) are each other's conjugates in a real image, and FFTW's c2r
 * assumes it. The pixel formula sum_k c_k Re(X_k e^{i phi}) the gradient
 * is derived from holds for any X and equals c2r of X with those columns
 * replaced by (X(ky) + conj X(-ky)) / 2. */
static void hermitian_columns(float *s, int h, int w, int wf)
{
    for (int kx = 0; kx < wf; kx += (w % 2 == 0 && wf > 1 ? wf - 1 : wf)) {
        for (int ky = 0; ky <= h / 2; ky++) {
            int my = (h - ky) % h;
            float *a = s + 2 * ((size_t)ky * wf + kx), *b = s + 2 * ((size_t)my * wf + kx);
            float re = 0.5f * (a[0] + b[0]), im = 0.5f * (a[1] - b[1]);
            a[0] = re;
            a[1] = im;
            b[0] = re;
            b[1] = -im;
        }
    }
}

/* u = C z in place per pixel (or C^T when transpose), over n images of 3
 * channels of `plane` pixels. */
static void color_mix(float *u, int n, size_t plane, int transpose)
{
    const float *C = cnv_color_sqrt;
    for (int i = 0; i < n; i++) {
        float *r = u + (size_t)i * 3 * plane, *g = r + plane, *b = g + plane;
        for (size_t j = 0; j < plane; j++) {
            float z0 = r[j], z1 = g[j], z2 = b[j];
            if (transpose) {
                r[j] = C[0] * z0 + C[3] * z1 + C[6] * z2;
                g[j] = C[1] * z0 + C[4] * z1 + C[7] * z2;
                b[j] = C[2] * z0 + C[5] * z1 + C[8] * z2;
            } else {
                r[j] = C[0] * z0 + C[1] * z1 + C[2] * z2;
                g[j] = C[3] * z0 + C[4] * z1 + C[5] * z2;
                b[j] = C[6] * z0 + C[7] * z1 + C[8] * z2;
            }
        }
    }
}

void cnv_param_image(cnv_param *p, const float *theta)
{
    size_t plane = (size_t)p->h * p->w, half = (size_t)p->h * p->wf;
    size_t planes = (size_t)p->n * p->c;
    if (p->spectral) {
        for (size_t q = 0; q < planes; q++) {
            const float *t = theta + q * 2 * half;
            float *s = p->spec + q * 2 * half;
            for (size_t k = 0; k < half; k++) {
                s[2 * k] = p->scale[k] * t[2 * k];
                s[2 * k + 1] = p->scale[k] * t[2 * k + 1];
            }
            hermitian_columns(s, p->h, p->w, p->wf);
        }
        fftwf_execute(p->inv); /* spec -> pix, unnormalized */
    } else {
        memcpy(p->pix, theta, p->pixels * sizeof(float));
    }
    if (p->decorrelate)
        color_mix(p->pix, p->n, plane, 0);
    for (size_t j = 0; j < p->pixels; j++) {
        float u = p->pix[j];
        if (p->sigmoid)
            p->pix[j] = 1.0f / (1.0f + expf(-u));
        else
            p->pix[j] = u + 0.5f < 0.0f ? 0.0f : u + 0.5f > 1.0f ? 1.0f : u + 0.5f;
    }
}

float *cnv_param_backward(cnv_param *p, const float *dpix)
{
    size_t plane = (size_t)p->h * p->w, half = (size_t)p->h * p->wf;
    size_t planes = (size_t)p->n * p->c;
    /* du, into pix (the images are not needed after this) */
    float *du = p->pix;
    for (size_t j = 0; j < p->pixels; j++) {
        float q = p->pix[j];
        if (p->sigmoid)
            du[j] = dpix[j] * q * (1.0f - q);
        else /* the clamp's derivative: 1 strictly inside, 0 where it cut */
            du[j] = q > 0.0f && q < 1.0f ? dpix[j] : 0.0f;
    }
    if (p->decorrelate)
        color_mix(du, p->n, plane, 1);
    if (!p->spectral)
        return du;
    /* d pixel / d Re X_k = c_k cos phi, d / d Im X_k = -c_k sin phi: with
     * G = r2c(g) = sum g (cos phi - i sin phi), dRe = c_k Re G_k and
     * dIm = c_k Im G_k, times scale_k. The Hermitian averaging of
     * hermitian_columns is linear and self-adjoint on those columns, and
     * G is Hermitian there already, so it changes nothing. */
    fftwf_execute(p->fwd); /* pix -> spec */
    for (size_t q = 0; q < planes; q++) {
        float *d = p->spec + q * 2 * half;
        for (int ky = 0; ky < p->h; ky++)
            for (int kx = 0; kx < p->wf; kx++) {
                size_t k = (size_t)ky * p->wf + kx;
                float f = (float)col_weight(kx, p->w) * p->scale[k];
                d[2 * k] *= f;
                d[2 * k + 1] *= f;
            }
    }
    return p->spec;
}
