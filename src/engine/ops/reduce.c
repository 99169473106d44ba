/* The ONNX reductions ReduceSum, ReduceMean, ReduceSumSquare, ReduceL2,
 * ReduceMax, ReduceMin over chosen axes, and GlobalMaxPool (ReduceMax over
 * every spatial axis, dims kept). Forward and backward side by side.
 *
 * Gradients: closed forms for the smooth ones; ReduceL2 passes 0 where its
 * output is 0 (an all-zero slice), as PyTorch's norm does. Max and Min
 * (and GlobalMaxPool, unlike MaxPool's single argmax) split the gradient
 * evenly between the elements equal to the output, as the variadic
 * Max/Min of binary.c do. A slice holding a NaN has NaN as its Max or Min
 * (NaN propagates, as in numpy and PyTorch); its NaNs are then its tied
 * extremes and share the gradient, so none of it is lost (binary.c's
 * Max/Min give a NaN output no gradient at all). */
#include <math.h>
#include <string.h>

#include "engine/op.h"
#include "engine/ops/elementwise.h"

enum { RED_SUM, RED_MEAN, RED_SUMSQ, RED_L2, RED_MAX, RED_MIN };

typedef struct red_params {
    int kind;            /* RED_* */
    int keepdims;
    int noop_empty;      /* noop_with_empty_axes (opsets with axes as input) */
    int global;          /* GlobalMaxPool: every axis from 2 on */
    int axes_input;      /* the model's opset takes axes as input 1 */
    const int64_t *axes; /* the attribute, borrowed from the node; NULL: absent */
    int n_axes;
} red_params;

/* COPY: the identity (no axes with noop_with_empty_axes); FILL: an empty
 * input, each output the reduction of nothing; RUNS and COLS: below. */
enum { PATH_COPY, PATH_FILL, PATH_RUNS, PATH_COLS };

/* Columns one COLS work item holds (its accumulators live on the stack). */
#define COLS 256

/* The input seen as groups of dims: dims of 1 dropped, neighbours that are
 * both kept or both reduced merged into one. kd/ks are the kept groups'
 * sizes and element strides in x, rd/rs the reduced groups'. The output is
 * the kept groups in order, so its layout needs no strides.
 * RUNS (the last group is reduced, so it is contiguous): one work item per
 * output, its slice read as runs of rd[nr-1] contiguous floats.
 * COLS (the last group is kept: the channel axis of NCHW, or nothing
 * reduced): that group is `inner`, taken off kd; one work item per block
 * of up to COLS contiguous outputs, adding up whole rows of them. */
typedef struct red_geom {
    int kind, path;
    int nk, nr;
    int64_t r;       /* elements reduced into each output */
    int64_t n_out;
    int64_t inner;   /* COLS */
    int64_t blocks;  /* COLS: blocks of COLS across inner */
    int64_t items;   /* work items */
    int64_t kd[CNV_MAX_DIMS], ks[CNV_MAX_DIMS], rd[CNV_MAX_DIMS], rs[CNV_MAX_DIMS];
} red_geom;
_Static_assert(sizeof(red_geom) <= CNV_GEOM_SIZE, "red_geom fits geom");

/* ------------------------------------------------------------- parsing */

static cnv_status get_flag(const cnv_node *n, const char *name, int64_t dflt, int *out, cnv_err *e)
{
    int64_t v;
    cnv_status st = cnv_attr_get_int(n, name, dflt, &v, e);
    if (st != CNV_OK)
        return st;
    if (v != 0 && v != 1)
        return cnv_fail(e, CNV_ERR_FORMAT, "attribute %s = %lld, expected 0 or 1", name, (long long)v);
    *out = (int)v;
    return CNV_OK;
}

/* ONNX moved `axes` from an attribute to an optional second input at
 * opset `input_from`, adding noop_with_empty_axes with it. */
static cnv_status red_parse(const cnv_node *n, red_params *p, int kind, int64_t opset, int64_t input_from,
                            cnv_err *e)
{
    p->kind = kind;
    cnv_status st = get_flag(n, "keepdims", 1, &p->keepdims, e);
    if (st != CNV_OK)
        return st;
    p->axes_input = opset >= input_from;
    if (p->axes_input) {
        if (cnv_attr_find(n, "axes"))
            return cnv_fail(e, CNV_ERR_FORMAT,
                            "from opset %lld the axes are input 1, not an attribute (the model's opset is %lld)",
                            (long long)input_from, (long long)opset);
        return get_flag(n, "noop_with_empty_axes", 0, &p->noop_empty, e);
    }
    if (n->n_in > 1)
        return cnv_fail(e, CNV_ERR_FORMAT,
                        "before opset %lld the axes are an attribute, not an input (the model's opset is %lld)",
                        (long long)input_from, (long long)opset);
    return cnv_attr_get_ints(n, "axes", &p->axes, &p->n_axes, e);
}

static cnv_status gmp_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)n, (void)opset, (void)e;
    red_params *p = params;
    p->kind = RED_MAX;
    p->keepdims = 1;
    p->global = 1;
    return CNV_OK;
}

/* ------------------------------------------------------------ planning */

/* The axes to reduce as a bit per axis of x, or *noop. */
static cnv_status red_axes(const cnv_op_ctx *c, unsigned *red, int *noop, cnv_err *e)
{
    const red_params *p = c->params;
    const cnv_shape *xs = &c->in[0]->shape;
    int nd = xs->ndim;
    char buf[128];
    *red = 0;
    *noop = 0;
    if (p->global) {
        if (nd < 3)
            return cnv_fail(e, CNV_ERR_SHAPE, "input %s needs N, C and spatial dims",
                            cnv_shape_str(xs, buf, sizeof buf));
        for (int d = 2; d < nd; d++)
            *red |= 1u << d;
        return CNV_OK;
    }
    const int64_t *ax = p->axes;
    int64_t n = p->n_axes;
    if (p->axes_input && c->node->n_in > 1 && c->in[1]) {
        const cnv_val *a = c->in[1];
        /* The output's shape depends on the values: they must be known now. */
        if (!a->is_const)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                            "the axes (input 1) must be a constant int64 tensor known when planning, "
                            "not a value computed at run time");
        if (a->count > 0 && !a->i64)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED, "the axes (input 1) must be a constant int64 tensor, not float");
        if (a->shape.ndim != 1)
            return cnv_fail(e, CNV_ERR_SHAPE, "the axes (input 1) must be 1-D, not %s",
                            cnv_shape_str(&a->shape, buf, sizeof buf));
        ax = a->i64;
        n = a->count;
    }
    if (n == 0) {
        if (p->noop_empty)
            *noop = 1;
        else
            *red = nd ? (unsigned)((1ull << nd) - 1) : 0;
        return CNV_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        if (ax[i] < -nd || ax[i] >= nd)
            return cnv_fail(e, CNV_ERR_SHAPE, "axis %lld is out of range for input %s (rank %d)",
                            (long long)ax[i], cnv_shape_str(xs, buf, sizeof buf), nd);
        int d = (int)(ax[i] < 0 ? ax[i] + nd : ax[i]);
        if (*red >> d & 1)
            return cnv_fail(e, CNV_ERR_SHAPE, "axis %lld repeats axis %d of input %s (axes must be distinct)",
                            (long long)ax[i], d, cnv_shape_str(xs, buf, sizeof buf));
        *red |= 1u << d;
    }
    return CNV_OK;
}

static cnv_status red_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    *state = 0;
    *work = 0;
    const red_params *p = c->params;
    const cnv_shape *xs = &c->in[0]->shape;
    unsigned red;
    int noop;
    cnv_status st = red_axes(c, &red, &noop, e);
    if (st != CNV_OK)
        return st;

    red_geom *g = (red_geom *)c->geom;
    memset(g, 0, sizeof *g);
    g->kind = p->kind;
    cnv_shape *ys = &c->out[0]->shape;
    if (noop) {
        *ys = *xs;
        g->path = PATH_COPY;
        return CNV_OK;
    }
    ys->ndim = 0;
    g->r = 1;
    int64_t n_in = 1;
    for (int d = 0; d < xs->ndim; d++) {
        int64_t len = xs->dims[d];
        if (!cnv_mul_i64(n_in, len, &n_in) || (red >> d & 1 && !cnv_mul_i64(g->r, len, &g->r)))
            return cnv_fail(e, CNV_ERR_SHAPE, "the input's size overflows");
        if (!(red >> d & 1))
            ys->dims[ys->ndim++] = len;
        else if (p->keepdims)
            ys->dims[ys->ndim++] = 1;
    }
    g->n_out = cnv_shape_count(ys);
    if (n_in == 0) { /* ONNX's empty reductions: 0, -inf, +inf; a mean of nothing is NaN */
        g->path = PATH_FILL;
        return CNV_OK;
    }

    int ng = 0, gred[CNV_MAX_DIMS];
    int64_t gsize[CNV_MAX_DIMS];
    for (int d = 0; d < xs->ndim; d++) {
        if (xs->dims[d] == 1)
            continue;
        int f = red >> d & 1;
        if (ng > 0 && gred[ng - 1] == f) {
            gsize[ng - 1] *= xs->dims[d];
        } else {
            gsize[ng] = xs->dims[d];
            gred[ng++] = f;
        }
    }
    int64_t stride = 1, gstride[CNV_MAX_DIMS];
    for (int k = ng - 1; k >= 0; k--) {
        gstride[k] = stride;
        stride *= gsize[k];
    }
    for (int k = 0; k < ng; k++) {
        if (gred[k]) {
            g->rd[g->nr] = gsize[k];
            g->rs[g->nr++] = gstride[k];
        } else {
            g->kd[g->nk] = gsize[k];
            g->ks[g->nk++] = gstride[k];
        }
    }
    if (ng > 0 && gred[ng - 1]) {
        g->path = PATH_RUNS;
        g->items = g->n_out;
    } else {
        g->path = PATH_COLS;
        g->inner = g->nk > 0 ? g->kd[--g->nk] : 1;
        g->blocks = (g->inner + COLS - 1) / COLS;
        g->items = g->n_out / g->inner * g->blocks;
    }
    return CNV_OK;
}

/* ------------------------------------------------------------ walking */

/* A multi-index over n dims with its offset in x, stepped in row-major
 * order. */
typedef struct odo {
    int n;
    int64_t idx[CNV_MAX_DIMS], off;
} odo;

/* At flat position pos of dims (n of them). */
static void odo_seek(odo *o, int n, const int64_t *dims, const int64_t *strides, int64_t pos)
{
    o->n = n;
    o->off = 0;
    for (int d = n - 1; d >= 0; d--) {
        o->idx[d] = pos % dims[d];
        pos /= dims[d];
        o->off += o->idx[d] * strides[d];
    }
}

static inline void odo_next(odo *o, const int64_t *dims, const int64_t *strides)
{
    for (int d = o->n - 1; d >= 0; d--) {
        o->off += strides[d];
        if (++o->idx[d] < dims[d])
            return;
        o->off -= strides[d] * dims[d];
        o->idx[d] = 0;
    }
}

/* v replaces m when it is larger (smaller for Min) or NaN; a NaN m stays.
 * Bitwise, so that loops of it have no branches and vectorize. */
static inline float pick(int is_min, float m, float v)
{
    return ((is_min ? v < m : v > m) | (v != v)) ? v : m;
}

/* The elements that receive a Max/Min's gradient: equal to the output, or
 * NaN when the output is. */
static inline int tie(float x, float y)
{
    return (x == y) | ((x != x) & (y != y));
}

/* What reducing nothing gives, and the value a Max/Min starts from. */
static float red_identity(int kind)
{
    switch (kind) {
    case RED_MAX: return -INFINITY;
    case RED_MIN: return INFINITY;
    case RED_MEAN: return NAN;
    default: return 0.0f;
    }
}

static inline float finish(int kind, double s, int64_t r)
{
    return (float)(kind == RED_MEAN ? s / (double)r : kind == RED_L2 ? sqrt(s) : s);
}

/* GCC at -O2 (its "very cheap" cost model) vectorizes only loops whose
 * trip count it knows, so the hot loops run BODY over i in [0, n) as
 * blocks of LANES and a scalar tail. Their pointers are restrict, so that
 * no alias check is needed either. */
#define LANES 8
#define FOR_LANES(i, n, ...)                                                                       \
    do {                                                                                           \
        int64_t i##_at = 0;                                                                        \
        for (; i##_at + LANES <= (n); i##_at += LANES)                                             \
            for (int i##_k = 0; i##_k < LANES; i##_k++) {                                          \
                int64_t i = i##_at + i##_k;                                                        \
                __VA_ARGS__;                                                                       \
            }                                                                                      \
        for (int64_t i = i##_at; i < (n); i++) {                                                   \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
    } while (0)

/* m folded with n contiguous floats by pick. */
static inline float run_pick(const float *restrict x, int64_t n, int is_min, float m)
{
    float acc[LANES];
    for (int k = 0; k < LANES; k++)
        acc[k] = m;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] = pick(is_min, acc[k], x[i + k]);
    for (; i < n; i++)
        m = pick(is_min, m, x[i]);
    for (int k = 0; k < LANES; k++)
        m = pick(is_min, m, acc[k]);
    return m;
}

/* How many of n contiguous floats tie y. */
static inline int64_t run_ties(const float *restrict x, int64_t n, float y)
{
    int32_t acc[LANES] = {0}; /* n <= CNV_MAX_ELEMS */
    int64_t i = 0, cnt = 0;
    if (y == y) {
        for (; i + LANES <= n; i += LANES)
            for (int k = 0; k < LANES; k++)
                acc[k] += x[i + k] == y;
        for (; i < n; i++)
            cnt += x[i] == y;
    } else {
        for (; i + LANES <= n; i += LANES)
            for (int k = 0; k < LANES; k++)
                acc[k] += x[i + k] != x[i + k];
        for (; i < n; i++)
            cnt += x[i] != x[i];
    }
    for (int k = 0; k < LANES; k++)
        cnt += acc[k];
    return cnt;
}

/* How each element of a slice gets its output's gradient: f, f * x, or f
 * where x ties the output. */
enum { PUT_PLAIN, PUT_SCALE, PUT_TIES };

static int put_mode(int kind)
{
    return kind == RED_MAX || kind == RED_MIN ? PUT_TIES
           : kind == RED_SUMSQ || kind == RED_L2 ? PUT_SCALE
                                                 : PUT_PLAIN;
}

/* dx over one run of n (+)= v by mode, y the output. */
static inline void run_put(float *restrict d, const float *restrict x, int64_t n, int mode, float y, float v,
                           int store)
{
    if (mode == PUT_TIES) {
        if (y == y && store)
            FOR_LANES(i, n, d[i] = x[i] == y ? v : 0.0f);
        else if (y == y)
            FOR_LANES(i, n, d[i] += x[i] == y ? v : 0.0f);
        else if (store)
            FOR_LANES(i, n, d[i] = x[i] != x[i] ? v : 0.0f);
        else
            FOR_LANES(i, n, d[i] += x[i] != x[i] ? v : 0.0f);
    } else if (mode == PUT_SCALE) {
        if (store)
            FOR_LANES(i, n, d[i] = v * x[i]);
        else
            FOR_LANES(i, n, d[i] += v * x[i]);
    } else {
        if (store)
            FOR_LANES(i, n, d[i] = v);
        else
            FOR_LANES(i, n, d[i] += v);
    }
}

/* The same across a row of n outputs: element i (+)= by mode from f[i],
 * y[i]. */
static inline void row_put(float *restrict d, const float *restrict x, int64_t n, int mode,
                           const float *restrict y, const float *restrict f, int store)
{
    if (mode == PUT_TIES && store)
        FOR_LANES(i, n, float fi = f[i]; d[i] = tie(x[i], y[i]) ? fi : 0.0f);
    else if (mode == PUT_TIES)
        FOR_LANES(i, n, float fi = f[i]; d[i] += tie(x[i], y[i]) ? fi : 0.0f);
    else if (mode == PUT_SCALE && store)
        FOR_LANES(i, n, d[i] = f[i] * x[i]);
    else if (mode == PUT_SCALE)
        FOR_LANES(i, n, d[i] += f[i] * x[i]);
    else if (store)
        FOR_LANES(i, n, d[i] = f[i]);
    else
        FOR_LANES(i, n, d[i] += f[i]);
}

/* What each element of the slice of an output (value y, gradient dy) gets,
 * before PUT_SCALE's x and PUT_TIES's 1 / (number of ties). */
static inline float grad_factor(int kind, float y, float dy, int64_t r)
{
    switch (kind) {
    case RED_SUMSQ: return 2.0f * dy;
    case RED_L2: return y == 0.0f ? 0.0f : dy / y; /* PyTorch's subgradient at 0 */
    case RED_MEAN: return (float)((double)dy / (double)r);
    default: return dy;
    }
}

/* --------------------------------------------------- forward, backward */

/* RUNS: the slice at xs, as r / len runs of len contiguous floats. */
static float slice_value(const red_geom *g, const float *xs)
{
    int64_t len = g->rd[g->nr - 1], rows = g->r / len;
    odo w;
    odo_seek(&w, g->nr - 1, g->rd, g->rs, 0);
    if (g->kind == RED_MAX || g->kind == RED_MIN) {
        int is_min = g->kind == RED_MIN;
        float m = red_identity(g->kind);
        for (int64_t q = 0; q < rows; q++, odo_next(&w, g->rd, g->rs))
            m = is_min ? run_pick(xs + w.off, len, 1, m) : run_pick(xs + w.off, len, 0, m);
        return m;
    }
    int sq = g->kind == RED_SUMSQ || g->kind == RED_L2;
    double s = 0.0;
    for (int64_t q = 0; q < rows; q++, odo_next(&w, g->rd, g->rs))
        s += sq ? cnv_run_sum(xs + w.off, len, 1) : cnv_run_sum(xs + w.off, len, 0);
    return finish(g->kind, s, g->r);
}

/* Outputs [lo, hi). */
static void runs_forward(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const red_geom *g = (const red_geom *)c->geom;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    odo k;
    odo_seek(&k, g->nk, g->kd, g->ks, lo);
    for (int64_t o = lo; o < hi; o++, odo_next(&k, g->kd, g->ks))
        y[o] = slice_value(g, x + k.off);
}

/* RUNS: the gradient of one output (value y, gradient dy) into its slice. */
static void slice_grad(const red_geom *g, const float *xs, float *ds, float y, float dy, int store)
{
    int64_t len = g->rd[g->nr - 1], rows = g->r / len;
    int mode = put_mode(g->kind);
    float v = grad_factor(g->kind, y, dy, g->r);
    odo w;
    if (mode == PUT_TIES) {
        int64_t cnt = 0;
        odo_seek(&w, g->nr - 1, g->rd, g->rs, 0);
        for (int64_t q = 0; q < rows; q++, odo_next(&w, g->rd, g->rs))
            cnt += run_ties(xs + w.off, len, y);
        v = cnt ? dy / (float)cnt : 0.0f;
    }
    odo_seek(&w, g->nr - 1, g->rd, g->rs, 0);
    for (int64_t q = 0; q < rows; q++, odo_next(&w, g->rd, g->rs))
        run_put(ds + w.off, xs + w.off, len, mode, y, v, store);
}

static void runs_backward(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const red_geom *g = (const red_geom *)c->geom;
    const float *x = c->in[0]->data, *y = c->out[0]->data, *dy = c->out[0]->grad;
    float *dx = c->in[0]->grad;
    int store = cnv_grad_store(c, 0);
    odo k;
    odo_seek(&k, g->nk, g->kd, g->ks, lo);
    for (int64_t o = lo; o < hi; o++, odo_next(&k, g->kd, g->ks))
        slice_grad(g, x + k.off, dx + k.off, y[o], dy[o], store);
}

/* COLS item `it`: outputs y[yo, yo + n), the first read at x[xo] and the
 * rest beside it, each row of the reduced dims at xo + (row's offset). */
static void cols_item(const red_geom *g, int64_t it, int64_t *xo, int64_t *yo, int64_t *n)
{
    int64_t q = it / g->blocks, i0 = it % g->blocks * COLS;
    odo k;
    odo_seek(&k, g->nk, g->kd, g->ks, q);
    *xo = k.off + i0;
    *yo = q * g->inner + i0;
    *n = g->inner - i0 < COLS ? g->inner - i0 : COLS;
}

/* Rows of n floats folded into m or summed (squared when sq) into s. */
static inline void row_pick(float *restrict m, const float *restrict row, int64_t n, int is_min)
{
    if (is_min)
        FOR_LANES(i, n, m[i] = pick(1, m[i], row[i]));
    else
        FOR_LANES(i, n, m[i] = pick(0, m[i], row[i]));
}

static inline void row_sum(double *restrict s, const float *restrict row, int64_t n, int sq)
{
    if (sq)
        FOR_LANES(i, n, s[i] += (double)row[i] * row[i]);
    else
        FOR_LANES(i, n, s[i] += row[i]);
}

static inline void row_ties(int32_t *restrict cnt, const float *restrict row, const float *restrict y,
                            int64_t n)
{
    FOR_LANES(i, n, cnt[i] += tie(row[i], y[i]));
}

static void cols_forward(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const red_geom *g = (const red_geom *)c->geom;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    int is_pick = g->kind == RED_MAX || g->kind == RED_MIN, is_min = g->kind == RED_MIN;
    int sq = g->kind == RED_SUMSQ || g->kind == RED_L2;
    for (int64_t it = lo; it < hi; it++) {
        int64_t xo, yo, n;
        cols_item(g, it, &xo, &yo, &n);
        odo w;
        odo_seek(&w, g->nr, g->rd, g->rs, 0);
        if (is_pick) {
            float m[COLS];
            for (int64_t i = 0; i < n; i++)
                m[i] = red_identity(g->kind);
            for (int64_t q = 0; q < g->r; q++, odo_next(&w, g->rd, g->rs))
                row_pick(m, x + xo + w.off, n, is_min);
            memcpy(y + yo, m, (size_t)n * sizeof *m);
            continue;
        }
        double s[COLS] = {0};
        for (int64_t q = 0; q < g->r; q++, odo_next(&w, g->rd, g->rs))
            row_sum(s, x + xo + w.off, n, sq);
        for (int64_t i = 0; i < n; i++)
            y[yo + i] = finish(g->kind, s[i], g->r);
    }
}

static void cols_backward(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const red_geom *g = (const red_geom *)c->geom;
    const float *x = c->in[0]->data, *y = c->out[0]->data, *dy = c->out[0]->grad;
    float *dx = c->in[0]->grad;
    int store = cnv_grad_store(c, 0), mode = put_mode(g->kind);
    for (int64_t it = lo; it < hi; it++) {
        int64_t xo, yo, n;
        cols_item(g, it, &xo, &yo, &n);
        const float *yb = y + yo, *db = dy + yo;
        float f[COLS];
        odo w;
        if (mode == PUT_TIES) {
            int32_t cnt[COLS] = {0}; /* <= r <= CNV_MAX_ELEMS */
            odo_seek(&w, g->nr, g->rd, g->rs, 0);
            for (int64_t q = 0; q < g->r; q++, odo_next(&w, g->rd, g->rs))
                row_ties(cnt, x + xo + w.off, yb, n);
            for (int64_t i = 0; i < n; i++)
                f[i] = cnt[i] ? db[i] / (float)cnt[i] : 0.0f;
        } else {
            for (int64_t i = 0; i < n; i++)
                f[i] = grad_factor(g->kind, yb[i], db[i], g->r);
        }
        odo_seek(&w, g->nr, g->rd, g->rs, 0);
        for (int64_t q = 0; q < g->r; q++, odo_next(&w, g->rd, g->rs))
            row_put(dx + xo + w.off, x + xo + w.off, n, mode, yb, f, store);
    }
}

static void red_forward(cnv_op_ctx *c)
{
    const red_geom *g = (const red_geom *)c->geom;
    switch (g->path) {
    case PATH_COPY:
        memcpy(c->out[0]->data, c->in[0]->data, (size_t)c->out[0]->count * sizeof(float));
        return;
    case PATH_FILL:
        for (int64_t o = 0; o < g->n_out; o++)
            c->out[0]->data[o] = red_identity(g->kind);
        return;
    case PATH_RUNS:
        cnv_team_run(c->team, g->items, runs_forward, c);
        return;
    default:
        cnv_team_run(c->team, g->items, cols_forward, c);
    }
}

/* Every input element is in exactly one output's slice, so each work item
 * writes its own part of dx once: storing is as cheap as adding. An empty
 * input (FILL) has no gradient to write. */
static void red_backward(cnv_op_ctx *c)
{
    if (!c->in[0]->grad)
        return;
    const red_geom *g = (const red_geom *)c->geom;
    switch (g->path) {
    case PATH_COPY:
        cnv_grad_pass(c->out[0]->grad, c->in[0]->grad, c->in[0]->count, cnv_grad_store(c, 0));
        return;
    case PATH_FILL:
        return;
    case PATH_RUNS:
        cnv_team_run(c->team, g->items, runs_backward, c);
        return;
    default:
        cnv_team_run(c->team, g->items, cols_backward, c);
    }
}

/* ------------------------------------------------------------ the table */

/* ONNX moved axes to an input at opset 13 for ReduceSum, 18 for the others. */
#define REDUCE(name, TYPE, KIND, AXES_INPUT_FROM)                                                 \
    static cnv_status name##_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)    \
    {                                                                                              \
        return red_parse(n, params, KIND, opset, AXES_INPUT_FROM, e);                              \
    }                                                                                              \
    const cnv_op cnv_op_##name = {                                                                 \
        .type = TYPE, .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,                        \
        .flags = CNV_OP_GRAD_STORE, .int_inputs = 1u << 1, /* axes */                              \
        .params_size = sizeof(red_params), .parse = name##_parse, .plan = red_plan,                \
        .forward = red_forward, .backward = red_backward,                                          \
    };

REDUCE(reducesum, "ReduceSum", RED_SUM, 13)
REDUCE(reducemean, "ReduceMean", RED_MEAN, 18)
REDUCE(reducesumsquare, "ReduceSumSquare", RED_SUMSQ, 18)
REDUCE(reducel2, "ReduceL2", RED_L2, 18)
REDUCE(reducemax, "ReduceMax", RED_MAX, 18)
REDUCE(reducemin, "ReduceMin", RED_MIN, 18)

const cnv_op cnv_op_globalmaxpool = {
    .type = "GlobalMaxPool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE,
    .params_size = sizeof(red_params), .parse = gmp_parse, .plan = red_plan,
    .forward = red_forward, .backward = red_backward,
};
