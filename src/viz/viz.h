/* Machinery shared by the gradient-ascent visualizations (class models,
 * fooling images, neuron/layer maximization, deep dream, saliency): a seeded
 * RNG, jitter rolls, Gaussian blur, pixel-range clamping and 8-bit
 * quantization in normalized space, backward seeds, and session helpers. */
#ifndef CNV_VIZ_H
#define CNV_VIZ_H

#include "core/numeric.h"
#include "core/rng.h"
#include "engine/session.h"

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
/* Floats of scratch cnv_blur_chw needs: h*w + 2*radius + 1. 0 on overflow. */
size_t cnv_blur_scratch(int h, int w, float sigma);
/* Gaussian blur of a CHW image in place, per channel, separable (rows then
 * columns), the kernel normalized to sum 1 and truncated at
 * cnv_blur_radius; the border is mirrored (scipy's 'reflect':
 * d c b a | a b c d | d c b a). sigma <= 0 leaves x unchanged. */
void cnv_blur_chw(float *x, int c, int h, int w, float sigma, float *scratch);

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

/* ------------------------------------------------------ session helpers */


/* Geometry of the image input: channels, and the declared height and width,
 * or where the model leaves them open, its "cnnviz.image_size" metadata
 * ("HxW"); -1 when neither says. Fails with a message in err when
 * the model's first input is not 4-D. */
cnv_status cnv_viz_input_geom(const cnv_model *m, int *c, int *h, int *w, cnv_err *err);

/* The planned session's score tensor `name` as an n x k matrix (*sc is the
 * session's buffer): its first dim must be the batch n. */
cnv_status cnv_viz_scores(cnv_session *s, const char *name, int n, float **sc, int *k,
                          cnv_err *err);

#endif
