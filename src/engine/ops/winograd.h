/* 3x3 stride-1 correlation by Winograd's minimal filtering F(4x4, 3x3)
 * (Lavin & Gray, 2015; interpolation points 0, 1, -1, 2, -2, inf): each
 * 4x4 block of outputs of each channel pair costs 36 multiplies instead
 * of 144. The weights become 36 matrices U (out x in), each 6x6 input
 * tile 36 values V (in x tiles), and the products are 36 GEMMs, one per
 * point (OpenBLAS); the output transform then folds each 6x6 product back
 * into a 4x4 block. Conv's forward and its backward to the input use it
 * (conv.c); the results are the direct sums' up to float rounding (see
 * docs/PERFORMANCE.md, "Winograd 3x3", for the measured error). */
#ifndef CNV_WINOGRAD_H
#define CNV_WINOGRAD_H

#include <stdint.h>

#include "core/team.h"

/* One correlation: `in` channels of an h x w plane to `out` channels of
 * an oh x ow plane, output (r, s) of channel o being
 * sum over i, a, b of x[i][r - pt + a][s - pl + b] * k[o][i][a][b], the
 * samples outside the plane taken as 0. pt and pl may be negative (then
 * the output starts inside the plane): the backward to the input of a
 * convolution with pads above 2 reads dy that way. */
typedef struct cnv_wino_geom {
    int64_t in, out;          /* channels */
    int64_t h, w, oh, ow;     /* planes */
    int64_t pt, pl;           /* offsets, see above */
    int64_t tiles_w, tiles;   /* 4x4 output tiles: per row, in all */
    int64_t block;            /* tiles transformed and multiplied at once */
} cnv_wino_geom;

/* Fills g; 0 when a buffer would pass CNV_MAX_ELEMS (then use im2col).
 * block is the most tiles to transform at once (<= 0: all). */
int cnv_wino_geom_init(cnv_wino_geom *g, int64_t in, int64_t out, int64_t h, int64_t w, int64_t oh, int64_t ow,
                       int64_t pt, int64_t pl, int64_t block);

/* Floats of the transformed weights (36 x out x in), and of the scratch
 * one image needs besides them (the tiles' V and the products). */
int64_t cnv_wino_weights_size(const cnv_wino_geom *g);
int64_t cnv_wino_image_size(const cnv_wino_geom *g);

/* u = the transformed weights of output channels [o0, o1), from the 3x3
 * kernels at k + o * so + i * si (9 contiguous floats), rotated 180
 * degrees when flip (the backward to the input: so and si then walk the
 * forward kernel's input and output channels). */
void cnv_wino_weights(const cnv_wino_geom *g, const float *k, int64_t so, int64_t si, int flip, float *u,
                      int64_t o0, int64_t o1);

/* One image: y (out, oh, ow) = (or += when !store) the correlation of x
 * (in, h, w) with the kernels that u holds, plus bias[o] (NULL: none).
 * done(arg, o) runs on output channel o once its plane is final, on the
 * thread that finished it (NULL: nothing). The work splits over the team
 * (NULL: the calling thread) by channels for the transforms and by whole
 * GEMMs for the products (each one thread's BLAS call), so the result
 * does not depend on the team's size. scratch: cnv_wino_image_size
 * floats. */
typedef void (*cnv_wino_done_fn)(void *arg, int64_t o);
void cnv_wino_image(const cnv_wino_geom *g, cnv_team *team, const float *u, const float *x, const float *bias,
                    float *y, int store, cnv_wino_done_fn done, void *arg, float *scratch);

#endif
