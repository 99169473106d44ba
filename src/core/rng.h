/* Seeded random numbers, the same on every platform, so that every
 * picture and every trained model is reproducible from its seed. */
#ifndef CNV_RNG_H
#define CNV_RNG_H

#include <stdint.h>

/* splitmix64 (Steele, Lea, Flood 2014): adds a fixed odd step to *state
 * and returns its mix; any state is fine, 0 included. It seeds cnv_rng,
 * and the trainer draws from it directly (the stream that fixed the
 * shipped model's weights, so it stays). */
uint64_t cnv_splitmix64(uint64_t *state);

/* The top 53 bits of v as a double in [0, 1). */
double cnv_unit53(uint64_t v);

/* Box-Muller: a standard normal value from u1 in (0, 1] and u2 in [0, 1). */
double cnv_box_muller(double u1, double u2);

/* xorshift64*: small and fast; the generator of the visualizations. */
typedef struct cnv_rng {
    uint64_t s;
} cnv_rng;

void cnv_rng_seed(cnv_rng *r, uint64_t seed);
/* A stream for item `item` of a batch: the same (seed, item) gives the same
 * stream whatever the batch size, so a class rendered alone or batched
 * starts from the same image. */
void cnv_rng_seed2(cnv_rng *r, uint64_t seed, uint64_t item);
uint64_t cnv_rng_next(cnv_rng *r);
float cnv_rng_uniform(cnv_rng *r);           /* [0, 1) */
float cnv_rng_normal(cnv_rng *r);            /* N(0, 1) */
int cnv_rng_int(cnv_rng *r, int lo, int hi); /* lo..hi inclusive (lo <= hi) */

#endif
