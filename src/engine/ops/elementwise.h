/* Element-wise loops shared by ops (elementwise.c). */
#ifndef CNV_ELEMENTWISE_H
#define CNV_ELEMENTWISE_H

#include <stdint.h>

#include "engine/op.h"

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
