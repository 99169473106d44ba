/* BatchNormalization in its inference form (ONNX): per-channel
 * y = (x - mean) * scale / sqrt(var + epsilon) + B, with the gradient to x
 * and to every per-channel input whose gradient is wanted. */
#include <math.h>

#include "engine/op.h"

typedef struct bn_params {
    float epsilon;
    int64_t spatial;       /* opset < 9; 1 when absent */
    int64_t training_mode; /* opset >= 14 */
} bn_params;

/* X as (outer = N, C, inner = spatial product). */
typedef struct bn_geom {
    int64_t outer, c, inner;
    float epsilon;
} bn_geom;
_Static_assert(sizeof(bn_geom) <= CNV_GEOM_SIZE, "bn_geom fits geom");

enum { BN_X, BN_SCALE, BN_B, BN_MEAN, BN_VAR };

static cnv_status bn_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset; /* spatial and training_mode are absent where they do not exist */
    bn_params *p = params;
    cnv_status st;
    if ((st = cnv_attr_get_float(n, "epsilon", 1e-5f, &p->epsilon, e)) != CNV_OK ||
        (st = cnv_attr_get_int(n, "spatial", 1, &p->spatial, e)) != CNV_OK ||
        (st = cnv_attr_get_int(n, "training_mode", 0, &p->training_mode, e)) != CNV_OK)
        return st;
    if (!(p->epsilon >= 0.0f))
        return cnv_fail(e, CNV_ERR_FORMAT,
                        "epsilon %g is negative or NaN", (double)p->epsilon);
    return CNV_OK;
}

static cnv_status bn_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size, cnv_err *e)
{
    const cnv_node *n = c->node;
    const bn_params *p = c->params;
    char b1[128], b2[128];
    static const char *const names[] = {"X", "scale", "B", "mean", "var"};
    if (p->training_mode != 0 || n->n_out > 1)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "training mode (training_mode=1 or "
                        "running-statistics outputs) is not supported");
    if (n->n_in != 5)
        return cnv_fail(e, CNV_ERR_FORMAT,
                        "needs 5 inputs, has %d", n->n_in);
    for (int k = 0; k < 5; k++)
        if (!c->in[k])
            return cnv_fail(e, CNV_ERR_FORMAT,
                            "input %s is absent", names[k]);
    const cnv_shape *xs = &c->in[BN_X]->shape;
    int64_t cnt = cnv_shape_count(xs);
    if (xs->ndim < 2 || cnt < 1)
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "input X %s needs N and C dims", cnv_shape_str(xs, b1, sizeof b1));
    int64_t C = xs->dims[1];
    for (int k = 1; k < 5; k++) {
        const cnv_shape *ps = &c->in[k]->shape;
        if (cnv_shape_count(ps) == C)
            continue;
        /* spatial=0 means per-activation statistics (C x D1 x ...); with
         * C values only it is the per-channel form, anything else is not */
        if (p->spatial == 0)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                            "spatial=0 with %s of shape %s "
                            "(per-activation statistics) is not supported",
                            names[k], cnv_shape_str(ps, b1, sizeof b1));
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "%s has shape %s, expected %lld values "
                        "for X %s",
                        names[k], cnv_shape_str(ps, b1, sizeof b1), (long long)C,
                        cnv_shape_str(xs, b2, sizeof b2));
    }
    bn_geom *g = (bn_geom *)c->geom;
    g->outer = xs->dims[0];
    g->c = C;
    g->inner = cnt / (g->outer * C);
    g->epsilon = p->epsilon;
    c->out[0]->shape = *xs;
    *state_size = 0;
    *work_size = 0;
    return CNV_OK;
}

/* x, y are (N, C, inner); scale, B, mean, var are (C). */
static void bn_forward(cnv_op_ctx *c)
{
    const bn_geom *g = (const bn_geom *)c->geom;
    const float *x = c->in[BN_X]->data, *scale = c->in[BN_SCALE]->data,
                *bias = c->in[BN_B]->data, *mean = c->in[BN_MEAN]->data,
                *var = c->in[BN_VAR]->data;
    float *y = c->out[0]->data;
    for (int64_t ch = 0; ch < g->c; ch++) {
        float a = scale[ch] / sqrtf(var[ch] + g->epsilon), m = mean[ch], b = bias[ch];
        for (int64_t o = 0; o < g->outer; o++) {
            const float *xp = x + (o * g->c + ch) * g->inner;
            float *yp = y + (o * g->c + ch) * g->inner;
            for (int64_t i = 0; i < g->inner; i++)
                yp[i] = (xp[i] - m) * a + b;
        }
    }
}

/* With s = 1/sqrt(var+eps) and a = scale*s:
 *   dx = dy*a,  dscale = sum dy*(x-mean)*s,  dB = sum dy,
 *   dmean = -a * sum dy,  dvar = -scale*s^3/2 * sum dy*(x-mean). */
static void bn_backward(cnv_op_ctx *c)
{
    const bn_geom *g = (const bn_geom *)c->geom;
    const float *x = c->in[BN_X]->data, *scale = c->in[BN_SCALE]->data,
                *mean = c->in[BN_MEAN]->data, *var = c->in[BN_VAR]->data;
    const float *dy = c->out[0]->grad;
    float *dx = c->in[BN_X]->grad, *dscale = c->in[BN_SCALE]->grad,
          *dbias = c->in[BN_B]->grad, *dmean = c->in[BN_MEAN]->grad,
          *dvar = c->in[BN_VAR]->grad;
    int want_sums = dscale || dbias || dmean || dvar;
    for (int64_t ch = 0; ch < g->c; ch++) {
        double s = 1.0 / sqrt((double)var[ch] + g->epsilon);
        float a = scale[ch] / sqrtf(var[ch] + g->epsilon), m = mean[ch];
        double sum_dy = 0.0, sum_dyxm = 0.0;
        for (int64_t o = 0; o < g->outer; o++) {
            const float *xp = x + (o * g->c + ch) * g->inner;
            const float *dyp = dy + (o * g->c + ch) * g->inner;
            if (dx) {
                float *dxp = dx + (o * g->c + ch) * g->inner;
                for (int64_t i = 0; i < g->inner; i++)
                    dxp[i] += dyp[i] * a;
            }
            if (want_sums)
                for (int64_t i = 0; i < g->inner; i++) {
                    sum_dy += dyp[i];
                    sum_dyxm += (double)dyp[i] * (xp[i] - m);
                }
        }
        if (dscale)
            dscale[ch] += (float)(sum_dyxm * s);
        if (dbias)
            dbias[ch] += (float)sum_dy;
        if (dmean)
            dmean[ch] += (float)(-(double)scale[ch] * s * sum_dy);
        if (dvar)
            dvar[ch] += (float)(-0.5 * scale[ch] * s * s * s * sum_dyxm);
    }
}

const cnv_op cnv_op_batchnorm = {
    .type = "BatchNormalization", .min_in = 5, .max_in = 5, .min_out = 1, .max_out = 5,
    .params_size = sizeof(bn_params), .parse = bn_parse, .plan = bn_plan,
    .forward = bn_forward, .backward = bn_backward,
};
