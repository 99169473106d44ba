/* Normalizations over part of a tensor (ONNX): LRN across a window of
 * channels, LayerNormalization over the trailing dims, InstanceNormalization
 * per (n, c) plane. Statistics are taken in double; forward keeps what
 * backward needs (LRN's denominators, the means and inverse deviations) in
 * the node's state. */
#include <math.h>
#include <string.h>

#include "engine/op.h"

/* ------------------------------------------------------------------ LRN */

typedef struct lrn_params {
    int64_t size;
    float alpha, beta, bias;
} lrn_params;

/* X as (n, c, inner); the window of channel k is [k - lo, k + hi] cut to
 * [0, c - 1], lo = floor((size - 1) / 2), hi = ceil((size - 1) / 2). */
typedef struct lrn_geom {
    int64_t n, c, inner, lo, hi, blocks;
    double alpha_n; /* alpha / size */
    float beta, bias;
} lrn_geom;
_Static_assert(sizeof(lrn_geom) <= CNV_GEOM_SIZE, "lrn_geom fits geom");

/* Positions of a plane one unit of work handles: its running sums live on
 * the stack. */
#define LRN_BLOCK 256

/* A window wider than any channel count: bounds the arithmetic on size. */
#define LRN_SIZE_MAX ((int64_t)1 << 30)

static cnv_status lrn_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    lrn_params *p = params;
    cnv_status st;
    if (!cnv_attr_find(n, "size"))
        return cnv_fail(e, CNV_ERR_FORMAT, "attribute size is required");
    if ((st = cnv_attr_get_int(n, "size", 1, &p->size, e)) != CNV_OK ||
        (st = cnv_attr_get_float(n, "alpha", 1e-4f, &p->alpha, e)) != CNV_OK ||
        (st = cnv_attr_get_float(n, "beta", 0.75f, &p->beta, e)) != CNV_OK ||
        (st = cnv_attr_get_float(n, "bias", 1.0f, &p->bias, e)) != CNV_OK)
        return st;
    if (p->size < 1 || p->size > LRN_SIZE_MAX)
        return cnv_fail(e, CNV_ERR_FORMAT, "size %lld is out of range [1, %lld]", (long long)p->size,
                        (long long)LRN_SIZE_MAX);
    if (!isfinite(p->alpha) || !isfinite(p->beta) || !isfinite(p->bias))
        return cnv_fail(e, CNV_ERR_FORMAT, "alpha %g, beta %g and bias %g must be finite", (double)p->alpha,
                        (double)p->beta, (double)p->bias);
    return CNV_OK;
}

static cnv_status lrn_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size, cnv_err *e)
{
    const lrn_params *p = c->params;
    const cnv_shape *xs = &c->in[0]->shape;
    char buf[128];
    int64_t cnt = cnv_shape_count(xs);
    if (xs->ndim < 2 || cnt < 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "X has shape %s; it needs N and C dims and at least one value",
                        cnv_shape_str(xs, buf, sizeof buf));
    lrn_geom *g = (lrn_geom *)c->geom;
    g->n = xs->dims[0];
    g->c = xs->dims[1];
    g->inner = cnt / (g->n * g->c);
    g->lo = (p->size - 1) / 2;
    g->hi = p->size - 1 - g->lo;
    g->blocks = (g->inner + LRN_BLOCK - 1) / LRN_BLOCK;
    g->alpha_n = (double)p->alpha / (double)p->size;
    g->beta = p->beta;
    g->bias = p->bias;
    c->out[0]->shape = *xs;
    /* the denominators, for backward */
    if (!cnv_mul_size((size_t)cnt, sizeof(float), state_size))
        return cnv_fail(e, CNV_ERR_SHAPE, "input %s is too large", cnv_shape_str(xs, buf, sizeof buf));
    *work_size = 0;
    return CNV_OK;
}

/* d^-beta, with AlexNet's and GoogLeNet's beta = 0.75 as square roots */
static inline float lrn_pow(float d, float beta)
{
    if (beta == 0.75f) {
        float s = sqrtf(d);
        return 1.0f / (s * sqrtf(s));
    }
    return powf(d, -beta);
}

/* Units [lo, hi) of (image, block of positions): the window's sum of
 * squares slides along the channels, one channel plane in and one out per
 * step, for every position of the block at once. */
static void lrn_fwd_units(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const lrn_geom *g = (const lrn_geom *)c->geom;
    double acc[LRN_BLOCK];
    for (int64_t u = lo; u < hi; u++) {
        int64_t img = u / g->blocks, p0 = (u % g->blocks) * LRN_BLOCK;
        int64_t np = g->inner - p0 < LRN_BLOCK ? g->inner - p0 : LRN_BLOCK;
        int64_t base = img * g->c * g->inner + p0;
        const float *x = c->in[0]->data + base;
        float *y = c->out[0]->data + base, *den = (float *)c->state + base;
        for (int64_t i = 0; i < np; i++)
            acc[i] = 0.0;
        for (int64_t k = 0; k < g->hi && k < g->c; k++)
            for (int64_t i = 0; i < np; i++)
                acc[i] += (double)x[k * g->inner + i] * x[k * g->inner + i];
        for (int64_t k = 0; k < g->c; k++) {
            const float *in = k + g->hi < g->c ? x + (k + g->hi) * g->inner : NULL;
            const float *out = k - g->lo - 1 >= 0 ? x + (k - g->lo - 1) * g->inner : NULL;
            for (int64_t i = 0; in && i < np; i++)
                acc[i] += (double)in[i] * in[i];
            for (int64_t i = 0; out && i < np; i++)
                acc[i] -= (double)out[i] * out[i];
            const float *xk = x + k * g->inner;
            float *yk = y + k * g->inner, *dk = den + k * g->inner;
            for (int64_t i = 0; i < np; i++) {
                /* what the subtractions leave of an all-zero window may be
                 * a hair below 0 */
                float d = (float)(g->bias + g->alpha_n * (acc[i] > 0.0 ? acc[i] : 0.0));
                dk[i] = d;
                yk[i] = xk[i] * lrn_pow(d, g->beta);
            }
        }
    }
}

static void lrn_forward(cnv_op_ctx *c)
{
    const lrn_geom *g = (const lrn_geom *)c->geom;
    cnv_team_run(c->team, g->n * g->blocks, lrn_fwd_units, c);
}

/* With y_k = x_k d_k^-beta and d_k = bias + alpha/size * sum_{i in W(k)} x_i^2,
 *   dx_j = dy_j d_j^-beta - 2 beta alpha/size x_j sum_{k : j in W(k)} dy_k y_k / d_k,
 * and j in W(k) when k is in [j - hi, j + lo]: the mirrored window, slid
 * the same way over the planes of dy_k y_k / d_k. */
static void lrn_bwd_units(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const lrn_geom *g = (const lrn_geom *)c->geom;
    int store = cnv_grad_store(c, 0);
    double acc[LRN_BLOCK], f = 2.0 * g->beta * g->alpha_n;
    for (int64_t u = lo; u < hi; u++) {
        int64_t img = u / g->blocks, p0 = (u % g->blocks) * LRN_BLOCK;
        int64_t np = g->inner - p0 < LRN_BLOCK ? g->inner - p0 : LRN_BLOCK;
        int64_t base = img * g->c * g->inner + p0;
        const float *x = c->in[0]->data + base, *y = c->out[0]->data + base;
        const float *dy = c->out[0]->grad + base, *den = (const float *)c->state + base;
        float *dx = c->in[0]->grad + base;
        for (int64_t i = 0; i < np; i++)
            acc[i] = 0.0;
        /* ratio of plane k, position i; the same value going in and out */
#define LRN_R(k, i) ((double)dy[(k) * g->inner + (i)] * y[(k) * g->inner + (i)] / den[(k) * g->inner + (i)])
        for (int64_t k = 0; k < g->lo && k < g->c; k++)
            for (int64_t i = 0; i < np; i++)
                acc[i] += LRN_R(k, i);
        for (int64_t j = 0; j < g->c; j++) {
            int64_t kin = j + g->lo, kout = j - g->hi - 1;
            for (int64_t i = 0; kin < g->c && i < np; i++)
                acc[i] += LRN_R(kin, i);
            for (int64_t i = 0; kout >= 0 && i < np; i++)
                acc[i] -= LRN_R(kout, i);
            int64_t o = j * g->inner;
            for (int64_t i = 0; i < np; i++) {
                float v = (float)((double)dy[o + i] * lrn_pow(den[o + i], g->beta) - f * x[o + i] * acc[i]);
                dx[o + i] = store ? v : dx[o + i] + v;
            }
        }
#undef LRN_R
    }
}

static void lrn_backward(cnv_op_ctx *c)
{
    const lrn_geom *g = (const lrn_geom *)c->geom;
    if (c->in[0]->grad)
        cnv_team_run(c->team, g->n * g->blocks, lrn_bwd_units, c);
}

const cnv_op cnv_op_lrn = {
    .type = "LRN", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE,
    .params_size = sizeof(lrn_params), .parse = lrn_parse, .plan = lrn_plan,
    .forward = lrn_forward, .backward = lrn_backward,
};

/* ----------------------------------------------- rows of a normalization */

/* Both normalizations standardize rows of n values: xhat = (x - mean) * r,
 * r = 1 / sqrt(var + eps), then y = xhat * s + b. LayerNormalization's s
 * and b vary along the row (stride 1) or are one value (stride 0);
 * InstanceNormalization's are one value per row. */

/* Mean and r of a row, two passes in double (var never negative). */
static void row_stats(const float *x, int64_t n, double eps, double *mean, double *r)
{
    double s = 0.0;
    for (int64_t j = 0; j < n; j++)
        s += x[j];
    double m = s / (double)n, v = 0.0;
    for (int64_t j = 0; j < n; j++)
        v += ((double)x[j] - m) * ((double)x[j] - m);
    *mean = m;
    *r = 1.0 / sqrt(v / (double)n + eps);
}

/* y = xhat * s[j * ss] + b[j * bs] (b NULL: no shift). */
static void row_forward(const float *x, float *y, int64_t n, double mean, double r, const float *s,
                        int64_t ss, const float *b, int64_t bs)
{
    for (int64_t j = 0; j < n; j++) {
        double v = ((double)x[j] - mean) * r * s[j * ss];
        y[j] = (float)(b ? v + b[j * bs] : v);
    }
}

/* The gradient of a row to x, with g = dy * s:
 *   dx = r (g - mean(g) - xhat mean(g xhat)) + dmean / n - dr r^2 xhat / n,
 * dmean and dr being the gradients of the row's Mean and InvStdDev outputs
 * (0 when it has none). dx is stored or added. */
static void row_backward(const float *x, const float *dy, float *dx, int64_t n, double mean, double r,
                         const float *s, int64_t ss, double dmean, double dr, int store)
{
    double sg = 0.0, sgx = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double g = (double)dy[j] * s[j * ss];
        sg += g;
        sgx += g * ((double)x[j] - mean) * r;
    }
    double a = sg / (double)n, b = sgx / (double)n;
    double cm = dmean / (double)n, cr = dr * r * r / (double)n;
    for (int64_t j = 0; j < n; j++) {
        double xh = ((double)x[j] - mean) * r;
        float v = (float)(r * ((double)dy[j] * s[j * ss] - a - xh * b) + cm - cr * xh);
        dx[j] = store ? v : dx[j] + v;
    }
}

/* x as rows: each row's mean and r, stored by forward in the state as
 * pairs of doubles. */
typedef struct rows_geom {
    int64_t rows, n;
    int64_t c;      /* InstanceNormalization: channels (row = n * c + ch) */
    int64_t ss, bs; /* LayerNormalization: scale and bias strides (1 or 0) */
    double eps;
} rows_geom;
_Static_assert(sizeof(rows_geom) <= CNV_GEOM_SIZE, "rows_geom fits geom");

static cnv_status rows_state(const rows_geom *g, size_t *state_size, cnv_err *e)
{
    if (!cnv_mul_size((size_t)g->rows, 2 * sizeof(double), state_size))
        return cnv_fail(e, CNV_ERR_SHAPE, "too many rows to normalize");
    return CNV_OK;
}

static cnv_status parse_epsilon(const cnv_node *n, float *eps, cnv_err *e)
{
    cnv_status st = cnv_attr_get_float(n, "epsilon", 1e-5f, eps, e);
    if (st == CNV_OK && !(*eps >= 0.0f && isfinite(*eps)))
        return cnv_fail(e, CNV_ERR_FORMAT, "epsilon %g is negative or not finite", (double)*eps);
    return st;
}

/* --------------------------------------------------- LayerNormalization */

typedef struct ln_params {
    int64_t axis;
    float epsilon;
} ln_params;

enum { LN_X, LN_SCALE, LN_B };
enum { LN_Y, LN_MEAN, LN_INVSTD };

static cnv_status ln_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    ln_params *p = params;
    int64_t stash;
    cnv_status st;
    if ((st = cnv_attr_get_int(n, "axis", -1, &p->axis, e)) != CNV_OK ||
        (st = parse_epsilon(n, &p->epsilon, e)) != CNV_OK ||
        (st = cnv_attr_get_int(n, "stash_type", 1, &stash, e)) != CNV_OK)
        return st;
    /* The statistics are taken in double, at least as precise as float
     * (1) and double (11); a narrower stash type would round them more. */
    if (stash != 1 && stash != 11)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "stash_type %lld is not supported (only 1, float, and 11, double)", (long long)stash);
    return CNV_OK;
}

/* The stride of scale or B (input k) along the normalized block of n
 * values: 1 for the block's shape (leading 1s allowed), 0 for a single
 * value. */
static cnv_status ln_param_stride(const cnv_op_ctx *c, int k, int axis, int64_t n, int64_t *stride,
                                  cnv_err *e)
{
    static const char *const names[] = {"X", "Scale", "B"};
    const cnv_shape *xs = &c->in[LN_X]->shape, *ps = &c->in[k]->shape;
    char b1[128], b2[128];
    int64_t cnt = cnv_shape_count(ps);
    if (cnt == 1 && ps->ndim <= xs->ndim) {
        *stride = 0;
        return CNV_OK;
    }
    int same = cnt == n && ps->ndim <= xs->ndim;
    for (int d = 0; same && d < ps->ndim; d++) {
        int xd = xs->ndim - ps->ndim + d;
        same = xd >= axis ? ps->dims[d] == xs->dims[xd] : ps->dims[d] == 1;
    }
    if (!same) {
        /* broadcastable over part of the block: legal ONNX, not handled */
        int bc = ps->ndim <= xs->ndim;
        for (int d = 0; bc && d < ps->ndim; d++) {
            int xd = xs->ndim - ps->ndim + d;
            bc = ps->dims[d] == 1 || (xd >= axis && ps->dims[d] == xs->dims[xd]);
        }
        cnv_shape block = {0};
        for (int d = axis; d < xs->ndim; d++)
            block.dims[block.ndim++] = xs->dims[d];
        char b3[128];
        cnv_shape_str(ps, b1, sizeof b1);
        cnv_shape_str(&block, b2, sizeof b2);
        cnv_shape_str(xs, b3, sizeof b3);
        if (bc)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                            "%s has shape %s, broadcast over part of the normalized dims %s of X %s (axis %d): "
                            "only one value or the dims' full shape is supported",
                            names[k], b1, b2, b3, axis);
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "%s has shape %s, which does not broadcast to the normalized dims %s of X %s (axis %d)",
                        names[k], b1, b2, b3, axis);
    }
    *stride = 1;
    return CNV_OK;
}

static cnv_status ln_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size, cnv_err *e)
{
    const ln_params *p = c->params;
    const cnv_shape *xs = &c->in[LN_X]->shape;
    char buf[128];
    int r = xs->ndim;
    int64_t ax = p->axis < 0 ? p->axis + r : p->axis;
    if (r < 1 || ax < 0 || ax >= r)
        return cnv_fail(e, CNV_ERR_SHAPE, "axis %lld is out of range for X %s", (long long)p->axis,
                        cnv_shape_str(xs, buf, sizeof buf));
    int64_t cnt = cnv_shape_count(xs);
    if (cnt < 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "X %s is empty", cnv_shape_str(xs, buf, sizeof buf));
    rows_geom *g = (rows_geom *)c->geom;
    memset(g, 0, sizeof *g);
    g->n = 1;
    for (int d = (int)ax; d < r; d++)
        g->n *= xs->dims[d];
    g->rows = cnt / g->n;
    g->eps = p->epsilon;
    cnv_status st = ln_param_stride(c, LN_SCALE, (int)ax, g->n, &g->ss, e);
    if (st == CNV_OK && c->node->n_in > LN_B && c->in[LN_B])
        st = ln_param_stride(c, LN_B, (int)ax, g->n, &g->bs, e);
    if (st != CNV_OK)
        return st;
    c->out[LN_Y]->shape = *xs;
    /* Mean and InvStdDev: X's shape with the normalized dims 1 */
    for (int k = LN_MEAN; k < c->node->n_out; k++) {
        c->out[k]->shape = *xs;
        for (int d = (int)ax; d < r; d++)
            c->out[k]->shape.dims[d] = 1;
    }
    *work_size = 0;
    return rows_state(g, state_size, e);
}

static void ln_fwd_rows(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const rows_geom *g = (const rows_geom *)c->geom;
    const float *x = c->in[LN_X]->data, *s = c->in[LN_SCALE]->data;
    const float *b = c->node->n_in > LN_B && c->in[LN_B] ? c->in[LN_B]->data : NULL;
    float *y = c->out[LN_Y]->data;
    float *om = c->node->n_out > LN_MEAN ? c->out[LN_MEAN]->data : NULL;
    float *oi = c->node->n_out > LN_INVSTD ? c->out[LN_INVSTD]->data : NULL;
    double *stats = c->state;
    for (int64_t o = lo; o < hi; o++) {
        double *ms = stats + 2 * o;
        row_stats(x + o * g->n, g->n, g->eps, &ms[0], &ms[1]);
        row_forward(x + o * g->n, y + o * g->n, g->n, ms[0], ms[1], s, g->ss, b, g->bs);
        if (om)
            om[o] = (float)ms[0];
        if (oi)
            oi[o] = (float)ms[1];
    }
}

static void ln_forward(cnv_op_ctx *c)
{
    cnv_team_run(c->team, ((const rows_geom *)c->geom)->rows, ln_fwd_rows, c);
}

static void ln_bwd_rows(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const rows_geom *g = (const rows_geom *)c->geom;
    const float *x = c->in[LN_X]->data, *s = c->in[LN_SCALE]->data, *dy = c->out[LN_Y]->grad;
    const float *dm = c->node->n_out > LN_MEAN ? c->out[LN_MEAN]->grad : NULL;
    const float *di = c->node->n_out > LN_INVSTD ? c->out[LN_INVSTD]->grad : NULL;
    const double *stats = c->state;
    float *dx = c->in[LN_X]->grad;
    int store = cnv_grad_store(c, LN_X);
    for (int64_t o = lo; o < hi; o++)
        row_backward(x + o * g->n, dy + o * g->n, dx + o * g->n, g->n, stats[2 * o], stats[2 * o + 1], s,
                     g->ss, dm ? dm[o] : 0.0, di ? di[o] : 0.0, store);
}

/* Columns of 64 at a time, summed down the rows in double on the stack. */
#define LN_COLS 64

/* dscale[j] = sum over rows of dy xhat, dB[j] = sum of dy, for the blocks
 * of columns [lo, hi) (scale and B of the block's shape). */
static void ln_bwd_cols(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const rows_geom *g = (const rows_geom *)c->geom;
    const float *x = c->in[LN_X]->data, *dy = c->out[LN_Y]->grad;
    const double *stats = c->state;
    int has_b = c->node->n_in > LN_B && c->in[LN_B];
    float *ds = g->ss ? c->in[LN_SCALE]->grad : NULL;
    float *db = g->bs && has_b ? c->in[LN_B]->grad : NULL;
    int ss_store = cnv_grad_store(c, LN_SCALE), bs_store = has_b && cnv_grad_store(c, LN_B);
    double as[LN_COLS], ab[LN_COLS];
    for (int64_t blk = lo; blk < hi; blk++) {
        int64_t j0 = blk * LN_COLS, nj = g->n - j0 < LN_COLS ? g->n - j0 : LN_COLS;
        for (int64_t j = 0; j < nj; j++)
            as[j] = ab[j] = 0.0;
        for (int64_t o = 0; o < g->rows; o++) {
            const float *xr = x + o * g->n + j0, *dr = dy + o * g->n + j0;
            double m = stats[2 * o], r = stats[2 * o + 1];
            for (int64_t j = 0; j < nj; j++) {
                as[j] += (double)dr[j] * ((double)xr[j] - m) * r;
                ab[j] += dr[j];
            }
        }
        for (int64_t j = 0; ds && j < nj; j++)
            ds[j0 + j] = (float)(ss_store ? as[j] : ds[j0 + j] + as[j]);
        for (int64_t j = 0; db && j < nj; j++)
            db[j0 + j] = (float)(bs_store ? ab[j] : db[j0 + j] + ab[j]);
    }
}

static void ln_backward(cnv_op_ctx *c)
{
    const rows_geom *g = (const rows_geom *)c->geom;
    const cnv_val *vb = c->node->n_in > LN_B ? c->in[LN_B] : NULL;
    float *ds = c->in[LN_SCALE]->grad, *db = vb ? vb->grad : NULL;
    if (c->in[LN_X]->grad)
        cnv_team_run(c->team, g->rows, ln_bwd_rows, c);
    if ((ds && g->ss) || (db && g->bs))
        cnv_team_run(c->team, (g->n + LN_COLS - 1) / LN_COLS, ln_bwd_cols, c);
    if ((ds && !g->ss) || (db && !g->bs)) {
        /* a single scale or B: the sums over everything */
        const float *x = c->in[LN_X]->data, *dy = c->out[LN_Y]->grad;
        const double *stats = c->state;
        double as = 0.0, ab = 0.0;
        for (int64_t o = 0; o < g->rows; o++)
            for (int64_t j = 0; j < g->n; j++) {
                double d = dy[o * g->n + j];
                as += d * ((double)x[o * g->n + j] - stats[2 * o]) * stats[2 * o + 1];
                ab += d;
            }
        if (ds && !g->ss)
            ds[0] = (float)(cnv_grad_store(c, LN_SCALE) ? as : ds[0] + as);
        if (db && !g->bs)
            db[0] = (float)(cnv_grad_store(c, LN_B) ? ab : db[0] + ab);
    }
}

const cnv_op cnv_op_layernorm = {
    .type = "LayerNormalization", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 3,
    .flags = CNV_OP_GRAD_STORE,
    .params_size = sizeof(ln_params), .parse = ln_parse, .plan = ln_plan,
    .forward = ln_forward, .backward = ln_backward,
};

/* ------------------------------------------------ InstanceNormalization */

typedef struct in_params {
    float epsilon;
} in_params;

enum { IN_X, IN_SCALE, IN_B };

static cnv_status in_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    return parse_epsilon(n, &((in_params *)params)->epsilon, e);
}

static cnv_status in_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size, cnv_err *e)
{
    static const char *const names[] = {"input", "scale", "B"};
    const in_params *p = c->params;
    const cnv_shape *xs = &c->in[IN_X]->shape;
    char b1[128], b2[128];
    int64_t cnt = cnv_shape_count(xs);
    if (xs->ndim < 2 || cnt < 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "input has shape %s; it needs N and C dims and at least one value",
                        cnv_shape_str(xs, b1, sizeof b1));
    for (int k = IN_SCALE; k <= IN_B; k++) {
        const cnv_shape *ps = &c->in[k]->shape;
        if (ps->ndim != 1 || ps->dims[0] != xs->dims[1])
            return cnv_fail(e, CNV_ERR_SHAPE, "%s has shape %s, expected %lld values (C of input %s)", names[k],
                            cnv_shape_str(ps, b1, sizeof b1), (long long)xs->dims[1],
                            cnv_shape_str(xs, b2, sizeof b2));
    }
    rows_geom *g = (rows_geom *)c->geom;
    memset(g, 0, sizeof *g);
    g->c = xs->dims[1];
    g->rows = xs->dims[0] * g->c;
    g->n = cnt / g->rows;
    g->eps = p->epsilon;
    c->out[0]->shape = *xs;
    *work_size = 0;
    return rows_state(g, state_size, e);
}

static void in_fwd_rows(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const rows_geom *g = (const rows_geom *)c->geom;
    const float *x = c->in[IN_X]->data, *s = c->in[IN_SCALE]->data, *b = c->in[IN_B]->data;
    float *y = c->out[0]->data;
    double *stats = c->state;
    for (int64_t o = lo; o < hi; o++) {
        int64_t ch = o % g->c;
        row_stats(x + o * g->n, g->n, g->eps, &stats[2 * o], &stats[2 * o + 1]);
        row_forward(x + o * g->n, y + o * g->n, g->n, stats[2 * o], stats[2 * o + 1], s + ch, 0, b + ch, 0);
    }
}

static void in_forward(cnv_op_ctx *c)
{
    cnv_team_run(c->team, ((const rows_geom *)c->geom)->rows, in_fwd_rows, c);
}

/* Channels [lo, hi): each one's rows (one per image), so that a thread owns
 * its channels' dscale and dB. */
static void in_bwd_channels(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const rows_geom *g = (const rows_geom *)c->geom;
    const float *x = c->in[IN_X]->data, *s = c->in[IN_SCALE]->data, *dy = c->out[0]->grad;
    const double *stats = c->state;
    float *dx = c->in[IN_X]->grad, *ds = c->in[IN_SCALE]->grad, *db = c->in[IN_B]->grad;
    int64_t images = g->rows / g->c;
    for (int64_t ch = lo; ch < hi; ch++) {
        double as = 0.0, ab = 0.0;
        for (int64_t im = 0; im < images; im++) {
            int64_t o = im * g->c + ch;
            const float *xr = x + o * g->n, *dr = dy + o * g->n;
            double m = stats[2 * o], r = stats[2 * o + 1];
            if (dx)
                row_backward(xr, dr, dx + o * g->n, g->n, m, r, s + ch, 0, 0.0, 0.0, cnv_grad_store(c, IN_X));
            if (ds || db)
                for (int64_t j = 0; j < g->n; j++) {
                    as += (double)dr[j] * ((double)xr[j] - m) * r;
                    ab += dr[j];
                }
        }
        if (ds)
            ds[ch] = (float)(cnv_grad_store(c, IN_SCALE) ? as : ds[ch] + as);
        if (db)
            db[ch] = (float)(cnv_grad_store(c, IN_B) ? ab : db[ch] + ab);
    }
}

static void in_backward(cnv_op_ctx *c)
{
    cnv_team_run(c->team, ((const rows_geom *)c->geom)->c, in_bwd_channels, c);
}

const cnv_op cnv_op_instancenorm = {
    .type = "InstanceNormalization", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE,
    .params_size = sizeof(in_params), .parse = in_parse, .plan = in_plan,
    .forward = in_forward, .backward = in_backward,
};
