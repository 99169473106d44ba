/* Element-wise loops shared by ops (elementwise.c). */
#ifndef CNV_ELEMENTWISE_H
#define CNV_ELEMENTWISE_H

#include <stdint.h>

#include "engine/op.h"

/* Sum (of squares when sq) of n contiguous floats in double, in 16
 * partial sums: enough independent additions to hide their latency (and
 * the rounding error stays small), in the same order at every vector
 * width (ReduceSum and its kin, GlobalAveragePool). */
static inline double cnv_run_sum(const float *restrict x, int64_t n, int sq)
{
    enum { W = 16 };
    double acc[W] = {0}, s = 0.0;
    int64_t i = 0;
    for (; i + W <= n; i += W)
        for (int k = 0; k < W; k++) {
            double v = x[i + k];
            acc[k] += sq ? v * v : v;
        }
    for (; i < n; i++) {
        double v = x[i];
        s += sq ? v * v : v;
    }
    for (int k = 0; k < W; k++)
        s += acc[k];
    return s;
}

/* dst += src */
void cnv_add_to(const float *restrict src, float *restrict dst, int64_t n);
/* dx += dy, or dx = dy when store (nothing when dx == dy: an input the
 * planner placed inside its consumer's output gradient) */
void cnv_grad_pass(const float *dy, float *dx, int64_t n, int store);

/* Ops whose output is their input's values (Identity, Reshape, ...): y = x,
 * and dx += dy (or = with grad_store). */
void cnv_copy_forward(cnv_op_ctx *c);
void cnv_copy_backward(cnv_op_ctx *c);
/* Their fold (reshape.c): the op's plan gives the shape, the values are the
 * input's, borrowed. */
cnv_status cnv_fold_view(cnv_op_ctx *c, int *done, cnv_err *e);

#endif
