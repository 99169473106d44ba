/* im2col and its adjoint col2im for one image: the layout change that turns
 * a 2-D convolution into a matrix product; and the loop over a grouped
 * convolution's (image, group) units (conv.c, convtranspose.c). */
#ifndef CNV_IM2COL_H
#define CNV_IM2COL_H

#include <stdint.h>

#include "engine/op.h"

/* Geometry of one image and one kernel. The image is (c, h, w); the column
 * matrix is (c*kh*kw, oh*ow), row (ci*kh + ki)*kw + kj holding, for every
 * output position, the input sample that kernel tap (ki, kj) of channel ci
 * reads (0 where it falls in the padding). pt/pl are the top/left pads; the
 * bottom/right pads are implied by oh/ow. */
typedef struct cnv_im2col_geom {
    int64_t c, h, w;   /* image */
    int64_t kh, kw;    /* kernel */
    int64_t sh, sw;    /* strides, >= 1 */
    int64_t dh, dw;    /* dilations, >= 1 */
    int64_t pt, pl;    /* top and left pads, >= 0 */
    int64_t oh, ow;    /* output size */
} cnv_im2col_geom;

/* col (c*kh*kw, oh*ow) = im2col(x (c, h, w)). Overwrites col. The _rows
 * form writes only the rows of kernel rows r = ci*kh + ki in [r0, r1), so
 * that threads can share one column matrix. */
void cnv_im2col(const cnv_im2col_geom *g, const float *x, float *col);
void cnv_im2col_rows(const cnv_im2col_geom *g, const float *x, float *col, int64_t r0, int64_t r1);

/* x (c, h, w) += col2im(col (c*kh*kw, oh*ow)): the transpose of cnv_im2col,
 * so every input sample gathers the column entries it was copied to. The
 * _rows form writes input rows [ih0, ih1) of every channel alone, so that
 * threads can share one image (the windows of neighbouring outputs
 * overlap, rows of x do not), and first zeroes them when store. */
void cnv_col2im(const cnv_im2col_geom *g, const float *col, float *x);
void cnv_col2im_rows(const cnv_im2col_geom *g, const float *col, float *x, int64_t ih0, int64_t ih1,
                     int store);

/* Runs fn(c, n, gr, work, team) for every unit (image n, group gr) of a
 * grouped convolution of `images` x `groups` units. by_unit: the units are
 * split over the team, each thread with its own slice of c->work of
 * unit_work floats (and team NULL in fn); else one after another, each on
 * all of c->work and free to split its own loops over c->team. */
typedef void (*cnv_unit_fn)(const cnv_op_ctx *c, int64_t n, int64_t gr, float *work, cnv_team *team);
void cnv_run_units(const cnv_op_ctx *c, int64_t images, int64_t groups, int by_unit, size_t unit_work,
                   cnv_unit_fn fn);

#endif
