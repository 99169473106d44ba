/* Hooks that only tests set, to reach code paths this CPU would not take. */
#ifndef CNV_TESTING_H
#define CNV_TESTING_H

/* Nonzero makes MaxPool plans take the SSE2 register path even on a CPU
 * with AVX2 (engine/ops/pool.c). */
extern int cnv_maxpool_no_avx2;

/* The widest vector level plans may pick (core/cpu.h; CNV_SIMD_AVX512 by
 * default, i.e. no cap): lower it to run the narrower kernels. */
extern int cnv_simd_cap;

/* Nonzero makes depthwise convolutions run as im2col + GEMM, as other
 * grouped ones, instead of the direct loops (engine/ops/depthwise.c). */
extern int cnv_conv_no_direct;

/* Nonzero makes 3x3 stride-1 convolutions run as im2col + GEMM instead of
 * Winograd's F(4x4,3x3) (engine/ops/winograd.c) wherever plans would pick
 * it. */
extern int cnv_conv_no_winograd;

#endif
