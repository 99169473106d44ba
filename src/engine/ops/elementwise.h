/* Element-wise loops shared by ops (elementwise.c). */
#ifndef CNV_ELEMENTWISE_H
#define CNV_ELEMENTWISE_H

#include <stdint.h>

/* dst += src */
void cnv_add_to(const float *restrict src, float *restrict dst, int64_t n);
/* dx += dy, or dx = dy when store (nothing when dx == dy: an input the
 * planner placed inside its consumer's output gradient) */
void cnv_grad_pass(const float *dy, float *dx, int64_t n, int store);

#endif
