/* Small numeric kernels shared across layers: log-sum-exp and softmax (the
 * Softmax op, the visualizations' probabilities, the trainer's loss and the
 * public cnv_softmax all use these), and argmax. */
#ifndef CNV_NUMERIC_H
#define CNV_NUMERIC_H

#include <stdint.h>

/* log(sum_j exp(z[j * stride])) over n >= 1 values, in double and stable:
 * the largest value (the first on ties) is taken out before exp. NaN in,
 * NaN out. */
double cnv_logsumexp(const float *z, int64_t n, int64_t stride);

/* y[j * stride] = exp(z[j * stride] - logsumexp(z)), over n >= 1 values;
 * y may be z. */
void cnv_softmax_strided(const float *z, int64_t n, int64_t stride, float *y);

/* e^x within 2 ulp (2.5e-7 relative at worst) for results in the normal
 * range, +inf above 88.72, 0 below -104 (the subnormal results in between
 * are approximate), NaN for NaN. Unlike libm's expf it has no branch and
 * no call, so loops over it vectorize (the Sigmoid of every SiLU in
 * EfficientNet). Range reduction x = n ln2 + r with ln2 in two parts
 * (Cody-Waite), e^r by its degree-6 Taylor polynomial on |r| <= ln2/2, and
 * 2^n applied in two halves so that n from -150 to 128 scales exactly. */
static inline float cnv_exp(float x)
{
    const float log2e = 1.44269504f, ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-6f;
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    /* clamped where the result is already +inf or 0; a NaN passes */
    float xh = x > 88.8f ? 88.8f : x;
    float xc = xh < -104.0f ? -104.0f : xh;
    float t = xc * log2e + shifter, n = t - shifter;
    float r = (xc - n * ln2_hi) - n * ln2_lo;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    /* n as an integer from t's bits (no conversion that a NaN would make
     * undefined), then 2^n as two halves */
    union { float f; uint32_t u; } tb = {t}, sh = {shifter};
    int32_t ni = (int32_t)(tb.u - sh.u), n1 = ni / 2, n2 = ni - n1;
    union { uint32_t u; float f; } s1 = {(uint32_t)(n1 + 127) << 23}, s2 = {(uint32_t)(n2 + 127) << 23};
    /* above 88.72 the product overflows to +inf, at -104 it rounds to 0 */
    return p * s1.f * s2.f;
}

/* Index of the largest of k >= 1 values (the first on ties; NaN is never
 * larger). */
int cnv_argmax(const float *v, int k);

#endif
