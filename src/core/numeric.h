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

/* Index of the largest of k >= 1 values (the first on ties; NaN is never
 * larger). */
int cnv_argmax(const float *v, int k);

#endif
