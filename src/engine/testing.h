/* Hooks that only tests set, to reach code paths this CPU would not take. */
#ifndef CNV_TESTING_H
#define CNV_TESTING_H

/* Nonzero makes MaxPool plans take the SSE2 register path even on a CPU
 * with AVX2 (engine/ops/pool.c). */
extern int cnv_maxpool_no_avx2;

#endif
