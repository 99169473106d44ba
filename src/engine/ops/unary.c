/* Pointwise unary ops (ONNX): the activations of mobile and modern
 * networks (Clip as ReLU6, Sigmoid, HardSigmoid, HardSwish, Tanh,
 * LeakyRelu, Elu, Selu, Celu, Softplus, Softsign, Gelu, ThresholdedRelu)
 * and the math of decomposed layers (Erf, Sqrt, Exp, Log, Neg, Reciprocal,
 * Abs). Each is a pair of kernels, y = f(x) and dx (+)= dy * f'(x, y), in
 * one table; every op can be a Conv's fused epilogue. At kinks the
 * gradient is PyTorch's: Clip passes it strictly inside its bounds (as
 * hardtanh, ReLU6's module), LeakyRelu and Elu take the negative side at
 * 0, HardSwish follows hardswish_backward, Abs has 0 at 0. */
#include <math.h>
#include <string.h>

#include "core/cpu.h"
#include "core/numeric.h"
#include "engine/op.h"

/* An op's constants, resolved at plan: the kernels read them from the
 * node's geometry. Clip's bounds given as inputs are read at each call
 * through va, vb: a computed one changes with the input, and a float
 * constant may be a parameter a trainer updates between steps. */
typedef struct unary_k {
    float a, b, c; /* op-specific: see each kernel */
    const cnv_val *va, *vb;
} unary_k;
_Static_assert(sizeof(unary_k) <= CNV_GEOM_SIZE, "unary_k fits geom");

typedef void (*fwd_fn)(const float *restrict x, float *restrict y, int64_t n, const void *k);
/* dx = dy * f'(x, y), or dx += that when add */
typedef void (*bwd_fn)(const float *restrict x, const float *restrict y, const float *restrict dy,
                       float *restrict dx, int64_t n, const unary_k *k, int add);

/* --------------------------------------------------------------- kernels */

/* The loops are written as a function of one element, then expanded into
 * forward and backward kernels; GCC vectorizes the simple ones. */
#define FWD(name, expr)                                                                    \
    CNV_CLONES static void name##_f(const float *restrict x, float *restrict y, int64_t n, const void *kv) \
    {                                                                                      \
        const unary_k *k = kv;                                                             \
        (void)k;                                                                           \
        for (int64_t i = 0; i < n; i++) {                                                  \
            float v = x[i];                                                                \
            y[i] = (expr);                                                                 \
        }                                                                                  \
    }
/* d is dy[i] * f'(v = x[i], o = y[i]) */
#define BWD(name, expr)                                                                    \
    CNV_CLONES static void name##_b(const float *restrict x, const float *restrict y, const float *restrict dy, \
                         float *restrict dx, int64_t n, const unary_k *k, int add)         \
    {                                                                                      \
        (void)k, (void)x, (void)y;                                                         \
        if (add) {                                                                         \
            for (int64_t i = 0; i < n; i++) {                                              \
                float v = x[i], o = y[i], g = dy[i];                                       \
                (void)v, (void)o;                                                          \
                dx[i] += (expr);                                                           \
            }                                                                              \
        } else {                                                                           \
            for (int64_t i = 0; i < n; i++) {                                              \
                float v = x[i], o = y[i], g = dy[i];                                       \
                (void)v, (void)o;                                                          \
                dx[i] = (expr);                                                            \
            }                                                                              \
        }                                                                                  \
    }

static inline float sigmoid(float v)
{
    /* e^-|v|: never exp of a large positive number; no branch */
    float e = cnv_exp(-fabsf(v));
    return (v >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/* log(1 + e^v) without overflow */
static inline float softplus(float v)
{
    return v > 0.0f ? v + log1pf(expf(-v)) : log1pf(expf(v));
}

#define SQRT_2_OVER_PI 0.7978845608028654f
#define INV_SQRT_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

/* Clip: a = min, b = max; min(max(v, a), b) as numpy's clip (a > b gives
 * b), NaN passing through. */
static inline float clamp(float v, float a, float b)
{
    float t = v < a ? a : v;
    return t > b ? b : t;
}
/* The bounds as they are at this call. */
static inline unary_k clip_bounds(const unary_k *k)
{
    unary_k b = *k;
    if (k->va)
        b.a = k->va->data[0];
    if (k->vb)
        b.b = k->vb->data[0];
    return b;
}

CNV_CLONES static void clip_f(const float *restrict x, float *restrict y, int64_t n, const void *kv)
{
    unary_k k = clip_bounds(kv);
    for (int64_t i = 0; i < n; i++)
        y[i] = clamp(x[i], k.a, k.b);
}

CNV_CLONES static void clip_b(const float *restrict x, const float *restrict y, const float *restrict dy, float *restrict dx,
                   int64_t n, const unary_k *kv, int add)
{
    (void)y;
    unary_k k = clip_bounds(kv);
    /* dy read whatever x is and & for &&: the select vectorizes */
    if (add)
        for (int64_t i = 0; i < n; i++) {
            float g = dy[i];
            dx[i] += (x[i] > k.a) & (x[i] < k.b) ? g : 0.0f;
        }
    else
        for (int64_t i = 0; i < n; i++) {
            float g = dy[i];
            dx[i] = (x[i] > k.a) & (x[i] < k.b) ? g : 0.0f;
        }
}
FWD(sigmoid, sigmoid(v))
BWD(sigmoid, g * o * (1.0f - o))
/* HardSigmoid: a = alpha, b = beta */
FWD(hardsigmoid, fmaxf(0.0f, fminf(1.0f, k->a * v + k->b)))
BWD(hardsigmoid, k->a * v + k->b > 0.0f && k->a * v + k->b < 1.0f ? g * k->a : 0.0f)
FWD(hardswish, v * fmaxf(0.0f, fminf(1.0f, v / 6.0f + 0.5f)))
BWD(hardswish, v < -3.0f ? 0.0f : v <= 3.0f ? g * (v / 3.0f + 0.5f) : g)
FWD(tanh, tanhf(v))
BWD(tanh, g * (1.0f - o * o))
/* LeakyRelu: a = alpha */
FWD(leakyrelu, v >= 0.0f ? v : k->a * v)
BWD(leakyrelu, v > 0.0f ? g : g * k->a)
/* Elu: a = alpha */
FWD(elu, v > 0.0f ? v : k->a * expm1f(v))
BWD(elu, v > 0.0f ? g : g * k->a * expf(v))
/* Selu: a = alpha, b = gamma */
FWD(selu, v > 0.0f ? k->b * v : k->b * k->a * expm1f(v))
BWD(selu, v > 0.0f ? g * k->b : g * k->b * k->a * expf(v))
/* Celu: a = alpha */
FWD(celu, fmaxf(0.0f, v) + fminf(0.0f, k->a * expm1f(v / k->a)))
BWD(celu, v > 0.0f ? g : g * expf(v / k->a))
FWD(softplus, softplus(v))
BWD(softplus, g * sigmoid(v))
FWD(softsign, v / (1.0f + fabsf(v)))
BWD(softsign, g / ((1.0f + fabsf(v)) * (1.0f + fabsf(v))))
/* ThresholdedRelu: a = alpha */
FWD(thresholdedrelu, v > k->a ? v : 0.0f)
BWD(thresholdedrelu, v > k->a ? g : 0.0f)
FWD(gelu, 0.5f * v * (1.0f + erff(v * INV_SQRT_2)))
BWD(gelu, g * (0.5f * (1.0f + erff(v * INV_SQRT_2)) + v * INV_SQRT_2PI * expf(-0.5f * v * v)))
/* Gelu with approximate = "tanh" */
static inline float gelu_tanh_inner(float v)
{
    return SQRT_2_OVER_PI * (v + 0.044715f * v * v * v);
}
FWD(gelutanh, 0.5f * v * (1.0f + tanhf(gelu_tanh_inner(v))))
BWD(gelutanh, g * (0.5f * (1.0f + tanhf(gelu_tanh_inner(v))) +
                   0.5f * v * (1.0f - tanhf(gelu_tanh_inner(v)) * tanhf(gelu_tanh_inner(v))) * SQRT_2_OVER_PI *
                       (1.0f + 3.0f * 0.044715f * v * v)))
FWD(erf, erff(v))
BWD(erf, g * 2.0f * INV_SQRT_2PI * 1.4142135623730951f * expf(-v * v))
FWD(sqrt, sqrtf(v))
BWD(sqrt, g * 0.5f / o)
FWD(exp, expf(v))
BWD(exp, g * o)
FWD(log, logf(v))
BWD(log, g / v)
FWD(neg, -v)
BWD(neg, -g)
FWD(reciprocal, 1.0f / v)
BWD(reciprocal, -g * o * o)
FWD(abs, fabsf(v))
BWD(abs, v > 0.0f ? g : v < 0.0f ? -g : 0.0f)

/* ----------------------------------------------------------- parameters */

typedef struct unary_params {
    float a, b;       /* as in unary_k; Clip's from attributes (opset < 11) */
    int approximate;  /* Gelu: 1 for "tanh" */
} unary_params;

static cnv_status parse_floats(const cnv_node *n, const char *an, float ad, const char *bn, float bd,
                               unary_params *p, cnv_err *e)
{
    cnv_status st = an ? cnv_attr_get_float(n, an, ad, &p->a, e) : CNV_OK;
    if (st == CNV_OK && bn)
        st = cnv_attr_get_float(n, bn, bd, &p->b, e);
    if (st == CNV_OK && (!isfinite(p->a) || !isfinite(p->b)))
        return cnv_fail(e, CNV_ERR_FORMAT, "attribute %s / %s must be finite", an ? an : "-", bn ? bn : "-");
    return st;
}

static cnv_status no_attrs(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)n, (void)params, (void)opset, (void)e;
    return CNV_OK;
}

static cnv_status clip_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    unary_params *p = params;
    /* Clip-1 and -6 take min and max attributes; Clip-11 takes inputs */
    p->a = -INFINITY;
    p->b = INFINITY;
    if (opset >= 11)
        return CNV_OK;
    cnv_status st = cnv_attr_get_float(n, "min", -INFINITY, &p->a, e);
    if (st == CNV_OK)
        st = cnv_attr_get_float(n, "max", INFINITY, &p->b, e);
    return st;
}

static cnv_status hardsigmoid_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    return parse_floats(n, "alpha", 0.2f, "beta", 0.5f, params, e);
}

static cnv_status leakyrelu_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    return parse_floats(n, "alpha", 0.01f, NULL, 0.0f, params, e);
}

static cnv_status elu_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    return parse_floats(n, "alpha", 1.0f, NULL, 0.0f, params, e);
}

static cnv_status selu_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    return parse_floats(n, "alpha", 1.67326319217681884765625f, "gamma", 1.05070102214813232421875f, params, e);
}

static cnv_status celu_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    cnv_status st = parse_floats(n, "alpha", 1.0f, NULL, 0.0f, params, e);
    if (st == CNV_OK && ((unary_params *)params)->a == 0.0f)
        return cnv_fail(e, CNV_ERR_FORMAT, "alpha must not be 0");
    return st;
}

static cnv_status thresholdedrelu_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    return parse_floats(n, "alpha", 1.0f, NULL, 0.0f, params, e);
}

static cnv_status gelu_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    const char *ap;
    cnv_status st = cnv_attr_get_string(n, "approximate", "none", &ap, e);
    if (st != CNV_OK)
        return st;
    if (strcmp(ap, "none") && strcmp(ap, "tanh"))
        return cnv_fail(e, CNV_ERR_FORMAT, "approximate is '%s' (none or tanh)", ap);
    ((unary_params *)params)->approximate = !strcmp(ap, "tanh");
    return CNV_OK;
}

/* ------------------------------------------------------------ plan, run */

/* A bound of Clip-11 (input k), read at run time through *run; NULL
 * when absent (the default stays). */
static cnv_status clip_bound(const cnv_op_ctx *c, int k, const cnv_val **run, cnv_err *e)
{
    const cnv_val *v = c->node->n_in > k ? c->in[k] : NULL;
    *run = v;
    if (v && v->count != 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "Clip's %s must be a scalar, it has %lld values", k == 1 ? "min" : "max",
                        (long long)v->count);
    return CNV_OK;
}

static cnv_status unary_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    const unary_params *p = c->params;
    unary_k *k = (unary_k *)c->geom;
    k->a = p->a;
    k->b = p->b;
    cnv_status st = clip_bound(c, 1, &k->va, e);
    if (st == CNV_OK)
        st = clip_bound(c, 2, &k->vb, e);
    if (st != CNV_OK)
        return st;
    c->out[0]->shape = c->in[0]->shape;
    return CNV_OK;
}

/* The loops split into blocks of 16 floats (whole cache lines for the
 * threads). */
static int64_t blocks16(int64_t n)
{
    return (n + 15) / 16;
}

typedef struct unary_job {
    const cnv_op_ctx *c;
    fwd_fn f;
    bwd_fn b;
} unary_job;

static void forward_part(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const unary_job *j = arg;
    int64_t n = j->c->out[0]->count;
    lo *= 16, hi = hi * 16 < n ? hi * 16 : n;
    j->f(j->c->in[0]->data + lo, j->c->out[0]->data + lo, hi - lo, j->c->geom);
}

static void unary_forward(cnv_op_ctx *c, fwd_fn f)
{
    unary_job j = {c, f, NULL};
    cnv_team_run(c->team, blocks16(c->out[0]->count), forward_part, &j);
}

static void backward_part(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const unary_job *j = arg;
    const cnv_op_ctx *c = j->c;
    int64_t n = c->out[0]->count;
    lo *= 16, hi = hi * 16 < n ? hi * 16 : n;
    j->b(c->in[0]->data + lo, c->out[0]->data + lo, c->out[0]->grad + lo, c->in[0]->grad + lo, hi - lo,
         (const unary_k *)c->geom, !cnv_grad_store(c, 0));
}

/* Clip's bounds as inputs: each output element that equals a bound passes
 * its gradient to that bound (x's passes strictly inside; ties go to the
 * bound; when min >= max every element is max). */
static void clip_bound_grads(cnv_op_ctx *c)
{
    unary_k bk = clip_bounds((const unary_k *)c->geom);
    const unary_k *k = &bk;
    const float *x = c->in[0]->data, *dy = c->out[0]->grad;
    for (int b = 1; b <= 2; b++) {
        cnv_val *v = c->node->n_in > b ? c->in[b] : NULL;
        if (!v || !v->grad)
            continue;
        double s = 0.0;
        for (int64_t i = 0; i < c->out[0]->count; i++) {
            int to_min = x[i] <= k->a && k->a < k->b;
            int to_max = !to_min && (x[i] < k->a ? k->a : x[i]) >= k->b;
            if (b == 1 ? to_min : to_max)
                s += dy[i];
        }
        v->grad[0] = (float)s + (cnv_grad_store(c, b) ? 0.0f : v->grad[0]);
    }
}

static void unary_backward(cnv_op_ctx *c, bwd_fn b)
{
    if (c->in[0]->grad) {
        unary_job j = {c, NULL, b};
        cnv_team_run(c->team, blocks16(c->out[0]->count), backward_part, &j);
    }
    if (c->node->n_in > 1)
        clip_bound_grads(c);
}

/* ------------------------------------------------------------- the table */

#define UNARY(name, TYPE, FLAGS, MAX_IN, PARSE, F, B, FOLD)                                    \
    static void name##_forward(cnv_op_ctx *c) { unary_forward(c, F); }                      \
    static void name##_backward(cnv_op_ctx *c) { unary_backward(c, B); }                    \
    const cnv_op cnv_op_##name = {                                                           \
        .type = TYPE, .min_in = 1, .max_in = MAX_IN, .min_out = 1, .max_out = 1,             \
        .flags = CNV_OP_GRAD_STORE | (FLAGS), .params_size = sizeof(unary_params),           \
        .parse = PARSE, .plan = unary_plan, .forward = name##_forward,                       \
        .backward = name##_backward, .epilogue = F, .fold = FOLD,                            \
    };

#define ACT CNV_OP_ACTIVATION
/* Neg and Abs of INT64 values known at plan time (an export's shape
 * arithmetic, e.g. a negative axis): computed once. */
static cnv_status int_fold(cnv_op_ctx *c, int abs_of, int *done, cnv_err *e)
{
    const cnv_val *x = c->in[0];
    if (!x->i64)
        return CNV_OK;
    c->out[0]->shape = x->shape;
    int64_t *y;
    cnv_status st = cnv_fold_values(c, c->out[0], 1, (void **)&y, e);
    if (st != CNV_OK)
        return st;
    for (int64_t i = 0; i < x->count; i++) {
        if (x->i64[i] == INT64_MIN)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED, "%s of INT64_MIN overflows", c->node->op->type);
        y[i] = abs_of && x->i64[i] >= 0 ? x->i64[i] : -x->i64[i];
    }
    *done = 1;
    return CNV_OK;
}

static cnv_status neg_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    return int_fold(c, 0, done, e);
}

static cnv_status abs_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    return int_fold(c, 1, done, e);
}

UNARY(clip, "Clip", ACT, 3, clip_parse, clip_f, clip_b, NULL)
UNARY(sigmoid, "Sigmoid", CNV_OP_SIGMOID, 1, no_attrs, sigmoid_f, sigmoid_b, NULL)
UNARY(hardsigmoid, "HardSigmoid", 0, 1, hardsigmoid_parse, hardsigmoid_f, hardsigmoid_b, NULL)
UNARY(hardswish, "HardSwish", ACT, 1, no_attrs, hardswish_f, hardswish_b, NULL)
UNARY(tanh, "Tanh", ACT, 1, no_attrs, tanh_f, tanh_b, NULL)
UNARY(leakyrelu, "LeakyRelu", ACT, 1, leakyrelu_parse, leakyrelu_f, leakyrelu_b, NULL)
UNARY(elu, "Elu", ACT, 1, elu_parse, elu_f, elu_b, NULL)
UNARY(selu, "Selu", ACT, 1, selu_parse, selu_f, selu_b, NULL)
UNARY(celu, "Celu", ACT, 1, celu_parse, celu_f, celu_b, NULL)
UNARY(softplus, "Softplus", ACT, 1, no_attrs, softplus_f, softplus_b, NULL)
UNARY(softsign, "Softsign", 0, 1, no_attrs, softsign_f, softsign_b, NULL)
UNARY(thresholdedrelu, "ThresholdedRelu", ACT, 1, thresholdedrelu_parse, thresholdedrelu_f,
      thresholdedrelu_b, NULL)
UNARY(erf, "Erf", 0, 1, no_attrs, erf_f, erf_b, NULL)
UNARY(sqrt, "Sqrt", 0, 1, no_attrs, sqrt_f, sqrt_b, NULL)
UNARY(exp, "Exp", 0, 1, no_attrs, exp_f, exp_b, NULL)
UNARY(log, "Log", 0, 1, no_attrs, log_f, log_b, NULL)
UNARY(neg, "Neg", 0, 1, no_attrs, neg_f, neg_b, neg_fold)
UNARY(reciprocal, "Reciprocal", 0, 1, no_attrs, reciprocal_f, reciprocal_b, NULL)
UNARY(abs, "Abs", 0, 1, no_attrs, abs_f, abs_b, abs_fold)

/* Gelu's kernels depend on an attribute: two kernel pairs, chosen per
 * node (so its epilogue is the exact one, not a branch per element). */
static void gelu_any_f(const float *restrict x, float *restrict y, int64_t n, const void *k)
{
    if (((const unary_k *)k)->c != 0.0f)
        gelutanh_f(x, y, n, k);
    else
        gelu_f(x, y, n, k);
}

static void gelu_any_b(const float *restrict x, const float *restrict y, const float *restrict dy,
                       float *restrict dx, int64_t n, const unary_k *k, int add)
{
    if (k->c != 0.0f)
        gelutanh_b(x, y, dy, dx, n, k, add);
    else
        gelu_b(x, y, dy, dx, n, k, add);
}

static cnv_status gelu_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    cnv_status st = unary_plan(c, state, work, e);
    ((unary_k *)c->geom)->c = ((const unary_params *)c->params)->approximate ? 1.0f : 0.0f;
    return st;
}

static void gelu_forward(cnv_op_ctx *c)
{
    unary_forward(c, gelu_any_f);
}

static void gelu_backward(cnv_op_ctx *c)
{
    unary_backward(c, gelu_any_b);
}

const cnv_op cnv_op_gelu = {
    .type = "Gelu", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE | CNV_OP_ACTIVATION, .params_size = sizeof(unary_params),
    .parse = gelu_parse, .plan = gelu_plan, .forward = gelu_forward, .backward = gelu_backward,
    .epilogue = gelu_any_f,
};
