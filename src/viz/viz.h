/* Machinery shared by the visualizations (class models, fooling images,
 * saliency, neurons, deep dream): how each one starts (cnv_viz_begin), the
 * ascent step of neurons and dreams, and the image kernels (jitter rolls,
 * Gaussian blur, pixel-range clamping and 8-bit quantization in normalized
 * space, backward seeds). The visualizations reach the engine only through
 * the public API and engine/engine.h. */
#ifndef CNV_VIZ_H
#define CNV_VIZ_H

#include "core/numeric.h"
#include "core/rng.h"
#include "core/shape.h"
#include "engine/engine.h"

/* ----------------------------------------------------------- jitter roll */

/* Rolls a CHW image with wrap-around, like numpy.roll over (H, W):
 * out[c][y][x] = in[c][(y - dy) mod h][(x - dx) mod w]. Any dy, dx (also
 * negative or larger than the image); rolling by (-dy, -dx) undoes it.
 * scratch holds h*w floats. */
void cnv_roll_chw(float *x, int c, int h, int w, int dy, int dx, float *scratch);
/* The same for each item i of an NCHW batch by (dy[i], dx[i]). */
void cnv_roll_nchw(float *x, int n, int c, int h, int w, const int *dy, const int *dx,
                   float *scratch);

/* ------------------------------------------------------------------ blur */

/* Radius of the truncated Gaussian kernel for sigma: ceil(3 sigma), at
 * least 1; 0 when sigma <= 0 (no blur). */
int cnv_blur_radius(float sigma);
/* Floats of scratch cnv_blur_chw needs: h*w + 4*radius + 1 + w. 0 on
 * overflow. */
size_t cnv_blur_scratch(int h, int w, float sigma);
/* Gaussian blur of a CHW image in place, per channel, separable (rows then
 * columns), the kernel normalized to sum 1 and truncated at
 * cnv_blur_radius; the border is mirrored (scipy's 'reflect':
 * d c b a | a b c d | d c b a). sigma <= 0 leaves x unchanged. */
void cnv_blur_chw(float *x, int c, int h, int w, float sigma, float *scratch);
/* Its adjoint (transpose), in place: g, the gradient of a loss with respect
 * to the blurred image, becomes the gradient with respect to the image. */
void cnv_blur_chw_adjoint(float *g, int c, int h, int w, float sigma, float *scratch);

/* ------------------------------------------------ pixel range, quantize */

/* A model sees pixels p in [0, 1] as x = (p - mean[k]) / std[k] per
 * channel. mean/std NULL mean 0 and 1. */
/* Clamps every value of n CHW images to the normalized image of [0, 1]. */
void cnv_clamp_pixels(float *x, int n, int c, int h, int w, const float *mean,
                      const float *std);
/* Rounds n CHW images to what an 8-bit file holds, through the same
 * arithmetic as cnv_tensor_to_image (p = x*std+mean in double, clamped,
 * byte = (int)(p*255 + 0.5)) and back to normalized. After this, saving and
 * reloading the image gives the same values up to float rounding. */
void cnv_quantize_pixels(float *x, int n, int c, int h, int w, const float *mean,
                         const float *std);
/* The 8-bit value cnv_tensor_to_image would write for normalized x in
 * channel with mean m and std s. */
int cnv_pixel_byte(float x, float m, float s);

/* --------------------------------------------------------------- seeds */

/* seed (n x k) = 0 except seed[i*k + cls[i]] = 1: backward then gives, for
 * every batch item i, the gradient of its own class score cls[i]. */
void cnv_seed_classes(float *seed, int n, int k, const int *cls);
/* seed (n x c x h x w) = 0 except 1/(h*w) over channel ch[i] of item i: the
 * gradient of that channel's spatial mean. */
void cnv_seed_channel_mean(float *seed, int n, int c, int h, int w, const int *ch);

/* ---------------------------------------------------------------- start */

/* What a visualization works with, resolved once by cnv_viz_begin. */
typedef struct cnv_viz {
    cnv_session *s;
    const cnv_model *m; /* the session's */
    cnv_err *err;       /* the session's message */
    const char *what;   /* "classmodel": messages start with it */
    cnv_preprocess pp;  /* checked; its size is the image size */
    int c, h, w;        /* pp's channels, height and width */
    size_t item;        /* c * h * w */
    int fixed_n;        /* the batch the model's input declares; 0: any */
    int fixed_h, fixed_w; /* its declared height and width; 0: any */
    /* Normalized input units per unit of the space class models and
     * fooling images step and regularize in (cnv_viz_unit). */
    float unit[CNV_MAX_CHANNELS];
} cnv_viz;

/* A standard deviation of pixels (as a fraction of the range), ImageNet's
 * mean over its three channels. */
#define CNV_PIXEL_STD 0.226f

/* Class models and fooling images step and regularize in the model's
 * normalized units, which are standard deviations of pixels for the
 * conventions that standardize (torchvision's, Inception's, the default
 * model's: std 1/16..4): unit 1. A convention that does not (Caffe's BGR
 * 0..255 minus the mean, std 1/255) would make their lr, L2 and L1 weights
 * 58 times off, so its unit is CNV_PIXEL_STD / std_k: the same step and
 * penalty, in pixels, as for a standardized model. */
float cnv_viz_unit(float std);

/* The prelude every visualization shares: the preprocessing (pp, or the
 * model's when NULL) with its size replaced by height x width where they
 * are > 0, checked once by cnv_preprocess_check (a model that leaves its
 * size open then needs them), and the session set to the true gradient.
 * Failures land on s, prefixed with what. */
cnv_status cnv_viz_begin(cnv_viz *v, cnv_session *s, const char *what, const cnv_preprocess *pp,
                         int height, int width);

/* The batch to plan for `want` images: want, or the model's declared
 * batch (the old model zoo's 1) when it fixes one, through which the
 * visualization then loops. */
int cnv_viz_batch(const cnv_viz *v, int want);

/* Fails unless a buffer called `name` of count floats holds n images. */
cnv_status cnv_viz_check_len(const cnv_viz *v, const char *name, size_t count, int n);

/* Fails unless tensor t depends on the input image (its gradient would be
 * zero); role names it in the message ("score", "layer"). */
cnv_status cnv_viz_depends(const cnv_viz *v, int t, const char *role);

/* The model's raw class scores (cnv_model_score_tensor), or a failure. */
cnv_status cnv_viz_score_tensor(const cnv_viz *v, int *t);

/* Fails unless every one of count scores (k per image) is finite: a model
 * whose weights overflow on an input gives no meaningful map or image,
 * and nothing should be written from it. */
cnv_status cnv_viz_finite(const cnv_viz *v, const float *sc, size_t count, int k);

/* A layer as the user typed it (cnv_model_find_layer), or a failure. */
cnv_status cnv_viz_layer(const cnv_viz *v, const char *text, int *t);

/* The planned session's tensor t as an n x k matrix of scores (*sc is the
 * session's buffer): its first dim must be the batch n. */
cnv_status cnv_viz_scores(const cnv_viz *v, int t, int n, float **sc, int *k);

/* ------------------------------------------------------ ascent on a layer */

/* Called with each item's input gradient, rolled as the input was. */
typedef void (*cnv_viz_grad_fn)(void *arg, int item, float *g);

/* The input gradient of items 0..used-1 from a backward from `layer`
 * seeded with seed (count floats, per of them for each item), each handed
 * to fn. An item whose gradient comes out all zero (its target is off
 * everywhere, as a ReLU's output often is on the starting noise) is
 * handed over instead with the gradient of the same seed on `pre` (the
 * activation's input, of the same shape; -1: none), from a second
 * backward over the same forward. scratch holds count floats. */
cnv_status cnv_viz_layer_grads(const cnv_viz *v, int layer, int pre, const float *seed, size_t count, size_t per,
                               int used, float *scratch, cnv_viz_grad_fn fn, void *arg);

/* The step of neurons and dreams: x = x * (1 - decay) + step_k * g, with
 * step_k = lr / 255 / std_k / mean|g| for channel k, so that lr is the
 * mean change of a pixel in gray levels whatever the model's std. A zero
 * or non-finite mean|g| leaves x to the decay alone. x and g are one CHW
 * image of v's size. */
void cnv_viz_step(const cnv_viz *v, float *x, const float *g, float lr, float decay);

#endif
