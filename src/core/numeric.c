/* Log-sum-exp, softmax and argmax (see numeric.h). */
#include "core/numeric.h"

#include <math.h>

#include "cnnviz.h"

double cnv_logsumexp(const float *z, int64_t n, int64_t stride)
{
    int64_t best = 0;
    for (int64_t j = 1; j < n; j++)
        if (z[j * stride] > z[best * stride])
            best = j;
    double zmax = z[best * stride], sum = 0.0;
    for (int64_t j = 0; j < n; j++)
        sum += exp((double)z[j * stride] - zmax);
    return zmax + log(sum);
}

void cnv_softmax_strided(const float *z, int64_t n, int64_t stride, float *y)
{
    double lse = cnv_logsumexp(z, n, stride);
    for (int64_t j = 0; j < n; j++)
        y[j * stride] = (float)exp((double)z[j * stride] - lse);
}

void cnv_softmax(const float *scores, int k, float *probs)
{
    if (scores && probs && k > 0)
        cnv_softmax_strided(scores, k, 1, probs);
}

int cnv_argmax(const float *v, int k)
{
    int b = 0;
    for (int j = 1; j < k; j++)
        if (v[j] > v[b])
            b = j;
    return b;
}
