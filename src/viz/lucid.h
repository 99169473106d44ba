/* The machinery of the Lucid recipe for feature visualizations (Olah,
 * Mordvintsev, Schubert 2017, "Feature Visualization"): an image
 * parameterization (a decorrelated, 1/f-scaled Fourier basis squashed by a
 * sigmoid, or plain pixels), random differentiable transforms applied at
 * every step, and Adam. Each piece has a forward and its exact backward. */
#ifndef CNV_VIZ_LUCID_H
#define CNV_VIZ_LUCID_H

#include "viz/viz.h"

/* ------------------------------------------------------ parameterization */

/* n images of c x h x w pixels in [0, 1] made from parameters theta:
 *   z = the image itself (pixel), or for spectral, per channel,
 *       z = sum over frequencies k of scale_k Re(theta_k e^{2 pi i k.n}),
 *       theta_k complex over the half spectrum (h x (w/2+1)), scale_k
 *       proportional to 1 / max(|f_k|, 1/max(h, w)) (f in cycles per
 *       pixel) and normalized so that theta with unit-variance parts gives
 *       pixels of unit variance;
 *   u = C z per pixel, C a square root of natural photos' color covariance
 *       (3 channels and decorrelate only; else u = z);
 *   p = sigmoid(u), or clamp(u + 1/2, 0, 1) without sigmoid.
 * All buffers are allocated by cnv_param_init; cnv_param_image and
 * cnv_param_backward allocate nothing, and work in them. */
typedef struct cnv_param {
    int spectral, decorrelate, sigmoid;
    int n, c, h, w, wf;    /* wf = w / 2 + 1 */
    size_t count;          /* floats of theta for all n images */
    size_t pixels;         /* n * c * h * w */
    float *scale;          /* spectral: h * wf weights */
    float *spec;           /* spectral: n * c * h * wf complex values */
    float *pix;            /* p of the last cnv_param_image */
    float *dpix;           /* room for a pixel gradient (pixels floats):
                              spec when spectral, which is free between
                              cnv_param_image and cnv_param_backward */
    void *inv, *fwd;       /* FFTW plans (fftwf_plan) */
} cnv_param;

cnv_status cnv_param_init(cnv_param *p, int spectral, int decorrelate, int sigmoid, int n, int c,
                          int h, int w, cnv_err *e);
void cnv_param_free(cnv_param *p);
/* Item i's parameters: theta + i * (count / n). */
size_t cnv_param_item(const cnv_param *p);
/* theta = independent N(0, std^2) parts for item i, from rng. */
void cnv_param_random(const cnv_param *p, float *theta, int i, float std, cnv_rng *rng);
/* p->pix = the images of theta. */
void cnv_param_image(cnv_param *p, const float *theta);
/* d/dtheta of sum(dpix * pix) at the last cnv_param_image (count floats,
 * in p's buffers until its next call). It overwrites p->pix; dpix may be
 * p->dpix. */
float *cnv_param_backward(cnv_param *p, const float *dpix);

/* The color matrix C (row-major 3 x 3) of the decorrelated parameterization. */
extern const float cnv_color_sqrt[9];

/* ------------------------------------------------------------ transforms */

/* The network sees, for each output pixel (y, x), the image sampled
 * bilinearly at the point
 *   q = R(-angle) ((y, x) - center - shift) / scale + center,
 * center = ((h-1)/2, (w-1)/2): the image scaled by `scale` and rotated by
 * `angle` about its center, then shifted. Taps outside the image read
 * `fill`, a value per channel. */
typedef struct cnv_warp {
    float scale, angle, dy, dx;
} cnv_warp;

/* A random warp: scale uniform in [smin, smax], angle uniform in
 * [-rotate, rotate] degrees, shift uniform in [-shift, shift]^2 pixels. */
cnv_warp cnv_warp_random(cnv_rng *rng, float smin, float smax, float rotate, float shift);
/* out (c x h x w) = the warped image of in (c x h x w). */
void cnv_warp_forward(const cnv_warp *t, const float *in, int c, int h, int w, const float *fill,
                      float *out);
/* din += the adjoint of the warp applied to dout (the gradient). */
void cnv_warp_backward(const cnv_warp *t, const float *dout, int c, int h, int w, float *din);

/* ------------------------------------------------------------------ Adam */

/* Kingma and Ba 2015, ascending: m = b1 m + (1 - b1) g, v = b2 v + (1 -
 * b2) g^2, x += lr m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps), t counting
 * from 1. m and v start at zero. */
typedef struct cnv_adam {
    float lr, b1, b2, eps;
    int t;
} cnv_adam;

void cnv_adam_step(cnv_adam *a, float *x, const float *g, float *m, float *v, size_t n);

/* ------------------------------------------------------------------ loop */

/* The most items a diversity term compares (cnv_render). */
#define CNV_MAX_BATCH_DIVERSITY 64

/* Diversity of n <= CNV_MAX_BATCH_DIVERSITY items' activations A (n x C x
 * P): val[i] = -1/(n-1) sum over j != i of u_i . u_j, u_i item i's Gram
 * matrix A_i A_i^T / P scaled to unit length (0 for an item whose Gram
 * matrix is zero, and for n = 1). dA (n x C x P) += the gradient of
 * sum_i w[i] val[i]. G: scratch of (n + 1) C^2 floats. */
void cnv_diversity(const float *A, int n, int C, size_t P, const float *w, float *val, float *dA, float *G);

/* Fails unless p's values are usable; what starts the message. */
cnv_status cnv_lucid_check(const cnv_lucid_params *p, const char *what, cnv_err *e);

/* The objective's part of a step: the session's input holds items
 * first .. first + used - 1 (transformed, normalized) in its first `used`
 * slots and zeros after; grad runs the forward and the backward, points
 * *grad at d(objective)/d(input) of those items (used images; the caller
 * may change them, and they stay until the next call: the session's input
 * gradient, or a buffer of the objective's), and adds their objective
 * values (and probabilities, for progress; 0 when the objective has none)
 * to *obj and *prob. */
typedef cnv_status (*cnv_lucid_grad_fn)(void *arg, int first, int used, float **grad, double *obj,
                                        double *prob);

typedef struct cnv_lucid_job {
    const cnv_viz *v;         /* the session, planned for `batch` images */
    const cnv_lucid_params *lucid; /* checked */
    int n, batch;             /* images, and how many per pass */
    uint64_t seed;
    const uint64_t *streams;  /* item i draws from (seed, streams[i]) */
    cnv_lucid_grad_fn grad;
    void *arg;
    cnv_progress_fn progress; /* may be NULL; iter counts from progress_done,
                                 of progress_total (0: the job's steps) */
    int progress_done, progress_total;
    cnv_frame_fn frame;       /* may be NULL */
    int frame_every;
    void *user;
} cnv_lucid_job;

/* Optimizes n images for job's objective and writes them, normalized, to
 * images (n x c x h x w); start (may be NULL) receives the images it
 * started from. */
cnv_status cnv_lucid_run(const cnv_lucid_job *job, float *images, float *start);

#endif
