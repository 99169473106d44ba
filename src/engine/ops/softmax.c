/* Softmax and LogSoftmax (ONNX): before opset 13 over the input coerced to
 * 2-D at axis (all trailing dims together), from opset 13 over the single
 * axis; both viewed as (outer, n, inner) with the reduction over n. */
#include <math.h>

#include "core/numeric.h"
#include "engine/op.h"

typedef struct softmax_params {
    int64_t axis;
    int64_t opset;
} softmax_params;

/* The input as (outer, n, inner): softmax over n at stride inner. */
typedef struct softmax_geom {
    int64_t outer, n, inner;
} softmax_geom;
_Static_assert(sizeof(softmax_geom) <= CNV_GEOM_SIZE, "softmax_geom fits geom");

static cnv_status softmax_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    softmax_params *p = params;
    p->opset = opset;
    return cnv_attr_get_int(n, "axis", opset < 13 ? 1 : -1, &p->axis, e);
}

static cnv_status softmax_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size,
                               cnv_err *e)
{
    const softmax_params *p = c->params;
    const cnv_shape *xs = &c->in[0]->shape;
    char buf[128];
    int r = xs->ndim;
    int64_t ax = p->axis < 0 ? p->axis + r : p->axis;
    /* The 2-D coercion accepts axis == r (every row is one element). */
    int64_t hi = p->opset < 13 ? r : r - 1;
    if (r < 1 || ax < 0 || ax > hi)
        return cnv_fail(e, CNV_ERR_SHAPE, "axis %lld is out of range for input %s",
                        (long long)p->axis, cnv_shape_str(xs, buf, sizeof buf));
    if (cnv_shape_count(xs) < 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "input %s is empty", cnv_shape_str(xs, buf, sizeof buf));
    softmax_geom *g = (softmax_geom *)c->geom;
    g->outer = g->n = g->inner = 1;
    for (int i = 0; i < r; i++) {
        if (i < ax)
            g->outer *= xs->dims[i];
        else if (i == ax || p->opset < 13)
            g->n *= xs->dims[i];
        else
            g->inner *= xs->dims[i];
    }
    c->out[0]->shape = *xs;
    *state_size = 0;
    *work_size = 0;
    return CNV_OK;
}

/* x, y are (outer, n, inner): y = exp(x - logsumexp(x)) over n. */
static void softmax_forward(cnv_op_ctx *c)
{
    const softmax_geom *g = (const softmax_geom *)c->geom;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t i = 0; i < g->inner; i++)
            cnv_softmax_strided(x + o * g->n * g->inner + i, g->n, g->inner, y + o * g->n * g->inner + i);
}

/* dx += y * (dy - sum(dy * y)) over n. */
static void softmax_backward(cnv_op_ctx *c)
{
    float *dx = c->in[0]->grad;
    if (!dx)
        return;
    const softmax_geom *g = (const softmax_geom *)c->geom;
    const float *y = c->out[0]->data, *dy = c->out[0]->grad;
    int64_t st = g->inner;
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t i = 0; i < g->inner; i++) {
            int64_t base = o * g->n * st + i;
            double dot = 0.0;
            for (int64_t j = 0; j < g->n; j++)
                dot += (double)dy[base + j * st] * y[base + j * st];
            for (int64_t j = 0; j < g->n; j++)
                dx[base + j * st] += y[base + j * st] * (float)(dy[base + j * st] - dot);
        }
}

/* x, y are (outer, n, inner): y = x - logsumexp(x) over n, the log taken
 * in double so that a large shift does not cost the small differences. */
static void logsoftmax_forward(cnv_op_ctx *c)
{
    const softmax_geom *g = (const softmax_geom *)c->geom;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    int64_t st = g->inner;
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t i = 0; i < st; i++) {
            int64_t base = o * g->n * st + i;
            double lse = cnv_logsumexp(x + base, g->n, st);
            for (int64_t j = 0; j < g->n; j++)
                y[base + j * st] = (float)((double)x[base + j * st] - lse);
        }
}

/* dx += dy - softmax(x) * sum(dy) over n, softmax(x) being exp(y). */
static void logsoftmax_backward(cnv_op_ctx *c)
{
    float *dx = c->in[0]->grad;
    if (!dx)
        return;
    const softmax_geom *g = (const softmax_geom *)c->geom;
    const float *y = c->out[0]->data, *dy = c->out[0]->grad;
    int64_t st = g->inner;
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t i = 0; i < st; i++) {
            int64_t base = o * g->n * st + i;
            double sum = 0.0;
            for (int64_t j = 0; j < g->n; j++)
                sum += dy[base + j * st];
            for (int64_t j = 0; j < g->n; j++)
                dx[base + j * st] += (float)((double)dy[base + j * st] - exp((double)y[base + j * st]) * sum);
        }
}

const cnv_op cnv_op_softmax = {
    .type = "Softmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_PROBABILITIES,
    .params_size = sizeof(softmax_params), .parse = softmax_parse, .plan = softmax_plan,
    .forward = softmax_forward, .backward = softmax_backward,
};

/* Log-probabilities: to the model queries the same role as Softmax (its
 * input holds the raw class scores). */
const cnv_op cnv_op_logsoftmax = {
    .type = "LogSoftmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_PROBABILITIES,
    .params_size = sizeof(softmax_params), .parse = softmax_parse, .plan = softmax_plan,
    .forward = logsoftmax_forward, .backward = logsoftmax_backward,
};
