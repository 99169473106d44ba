/* Seeded random numbers, the same on every platform, so that every
 * picture and every trained model is reproducible from its seed. */
#ifndef CNV_RNG_H
#define CNV_RNG_H

#include <stdint.h>

/* Two generators: splitmix64 (Steele, Lea, Flood 2014), which seeds the
 * other and is the trainer's own stream (its draws fixed the shipped
 * model's weights, docs/TRAINING.md), and xorshift64*, the
 * visualizations'. */

/* Adds a fixed odd step to *state and returns its mix; any state is fine,
 * 0 included. */
uint64_t cnv_splitmix64(uint64_t *state);
/* From the same stream: an integer in [0, n) for n >= 1 (the bias of a
 * 64-bit modulo is far below anything a shuffle of 2^31 items could show),
 * and a standard normal value (one per two draws). */
uint64_t cnv_splitmix64_below(uint64_t *state, uint64_t n);
double cnv_splitmix64_normal(uint64_t *state);

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
