#include "core/cpu.h"

int cnv_simd_cap = CNV_SIMD_AVX512;

int cnv_simd_level(void)
{
    int level = CNV_SIMD_BASE;
#if defined(__x86_64__) || defined(__i386__)
    /* libgcc's and compiler-rt's checks include the OS saving the wider
     * registers (XGETBV) */
    if (__builtin_cpu_supports("avx512f"))
        level = CNV_SIMD_AVX512;
    else if (__builtin_cpu_supports("avx2"))
        level = CNV_SIMD_AVX2;
#endif
    return level < cnv_simd_cap ? level : cnv_simd_cap;
}

const char *cnv_simd_name(int level)
{
    return level >= CNV_SIMD_AVX512 ? "avx512" : level == CNV_SIMD_AVX2 ? "avx2" : "base";
}
