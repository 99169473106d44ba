/* Which vector instructions the library's own loops may use, decided once
 * per plan: hand-written kernels are compiled for each level from one C
 * body and the plan picks the widest the CPU has. The levels give
 * bit-identical results (no fused multiply-adds, the same summation
 * order), so a test can force a lower one and compare. */
#ifndef CNV_CPU_H
#define CNV_CPU_H

enum {
    CNV_SIMD_BASE = 0,   /* the compiler's baseline (SSE2 on x86-64) */
    CNV_SIMD_AVX2 = 1,   /* AVX2 */
    CNV_SIMD_AVX512 = 2  /* AVX-512F */
};

/* The widest level this CPU and its OS support, capped by cnv_simd_cap
 * (engine/testing.h). */
int cnv_simd_level(void);

/* The level's name: "base", "avx2", "avx512". */
const char *cnv_simd_name(int level);

#endif
