/* A strided walk: the output visited in order, each element read from a
 * source at base + sum(idx[d] * st[d]). Slice (steps), Expand (stride 0
 * along broadcast dims) and Tile (each dim split in repeat x length, the
 * repeat with stride 0) are each one walk; backward runs it the other way,
 * adding. */
#ifndef CNV_STRIDED_H
#define CNV_STRIDED_H

#include "engine/op.h"

#define CNV_WALK_DIMS (2 * CNV_MAX_DIMS)

typedef struct cnv_walk {
    int nd; /* >= 1; the last dim is the row */
    int64_t dims[CNV_WALK_DIMS];
    int64_t st[CNV_WALK_DIMS];
    int64_t base;
} cnv_walk;

/* Sets up w over nd dims (<= CNV_WALK_DIMS; dims of 1 are dropped and
 * neighbours that stay contiguous merged, so rows are long). */
void cnv_walk_init(cnv_walk *w, int nd, const int64_t *dims, const int64_t *st, int64_t base);
/* y[i] = x[source of i] for every output element, as float or INT64. */
void cnv_walk_gather(const cnv_walk *w, const float *x, float *y);
void cnv_walk_gather_i64(const cnv_walk *w, const int64_t *x, int64_t *y);
/* dx[source of i] += dy[i]. */
void cnv_walk_scatter_add(const cnv_walk *w, const float *dy, float *dx);

/* Forward, backward and fold of an op that is one walk over in[0] into
 * out[0], its plan leaving the walk at the start of c->geom (Slice,
 * Expand, Tile). */
void cnv_walk_forward(cnv_op_ctx *c);
void cnv_walk_backward(cnv_op_ctx *c);
cnv_status cnv_walk_fold(cnv_op_ctx *c, int *done, cnv_err *e);

#endif
