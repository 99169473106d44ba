/* splitmix64 and xorshift64*, with their uniform and normal draws (rng.h). */
#include "core/rng.h"

#include <math.h>

uint64_t cnv_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The top 53 bits of v as a double in [0, 1). */
static double unit53(uint64_t v)
{
    return (double)(v >> 11) * (1.0 / 9007199254740992.0);
}

/* Box-Muller: a standard normal value from u1 in (0, 1] and u2 in [0, 1). */
static double box_muller(double u1, double u2)
{
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t cnv_splitmix64_below(uint64_t *state, uint64_t n)
{
    return cnv_splitmix64(state) % n;
}

double cnv_splitmix64_normal(uint64_t *state)
{
    double u1 = 1.0 - unit53(cnv_splitmix64(state)), u2 = unit53(cnv_splitmix64(state));
    return box_muller(u1, u2);
}

void cnv_rng_seed(cnv_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    r->s = cnv_splitmix64(&x);
    if (r->s == 0) /* xorshift's one fixed point */
        r->s = 0x2545F4914F6CDD1Dull;
}

void cnv_rng_seed2(cnv_rng *r, uint64_t seed, uint64_t item)
{
    uint64_t x = seed;
    uint64_t a = cnv_splitmix64(&x);
    cnv_rng_seed(r, a ^ (item * 0xD1B54A32D192ED03ull + 0x8CB92BA72F3D8DD7ull));
}

uint64_t cnv_rng_next(cnv_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float cnv_rng_uniform(cnv_rng *r)
{
    /* the top 24 bits: every value exactly representable, never 1.0 */
    return (float)(cnv_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

float cnv_rng_normal(cnv_rng *r)
{
    /* u1 in (0, 1]: log(u1) is finite */
    double u1 = ((double)(cnv_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = unit53(cnv_rng_next(r));
    return (float)box_muller(u1, u2);
}

int cnv_rng_int(cnv_rng *r, int lo, int hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = (uint64_t)((int64_t)hi - lo) + 1;
    return (int)((int64_t)lo + (int64_t)(cnv_rng_next(r) % span));
}
