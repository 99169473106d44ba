/* Depthwise convolution (one input channel per group: MobileNet,
 * EfficientNet, ConvNeXt) by direct loops over kernel taps. As im2col +
 * GEMM each channel is a 1 x kh*kw by kh*kw x P product: the column matrix
 * costs more than the multiplies, and a BLAS call per channel more still.
 * Here every output row takes its taps from rows of the input in place.
 * The results are the GEMM path's up to the order of the additions. */
#ifndef CNV_DEPTHWISE_H
#define CNV_DEPTHWISE_H

#include <stdint.h>

#include "engine/ops/im2col.h"

/* Floats of scratch each call below needs (per thread): 0 unless the
 * convolution has stride 1, which runs over padded planes; -1 when such a
 * plane would exceed CNV_MAX_ELEMS (then use im2col + GEMM). */
int64_t cnv_dw_scratch(const cnv_im2col_geom *g);

/* One channel each, with the row kernels of vector level `level`
 * (core/cpu.h; every level gives the same bits). g->c is ignored.
 * y (oh, ow) = bias + the correlation of x (h, w) with w (kh, kw) under
 * g's strides, dilations and pads. */
void cnv_dw_forward(const cnv_im2col_geom *g, int level, const float *x, const float *w, float bias, float *y,
                    float *scratch);

/* dx (h, w) = (store) or += the adjoint of cnv_dw_forward applied to count
 * output channels that read this input channel: dy + c * dy_stride with
 * filter w + c * kh * kw. */
void cnv_dw_backward_x(const cnv_im2col_geom *g, int level, const float *dy, int64_t dy_stride, const float *w,
                       int64_t count, float *dx, int store, float *scratch);

/* dw (kh, kw) += the gradient of cnv_dw_forward's output against dy, for
 * input x. */
void cnv_dw_backward_w(const cnv_im2col_geom *g, int level, const float *x, const float *dy, float *dw,
                       float *scratch);

#endif
