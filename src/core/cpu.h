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

/* Element-wise loops (activations, broadcast arithmetic) are compiled
 * three times by GCC, for AVX-512, AVX2 and the baseline, and the loader
 * picks one for this CPU (target_clones, an ifunc). A map from each input
 * element to its output is the same IEEE operation at every vector width,
 * so the clones give the same bits; loops that sum use the explicit levels
 * above instead, whose summation order is fixed. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__ELF__)
#define CNV_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CNV_CLONES
#endif

/* The widest level this CPU and its OS support, capped by cnv_simd_cap
 * (engine/testing.h). */
int cnv_simd_level(void);

/* The level's name: "base", "avx2", "avx512". */
const char *cnv_simd_name(int level);

#endif
