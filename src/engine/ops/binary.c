/* Element-wise ops of several inputs with ONNX's (numpy's) multidirectional
 * broadcasting: Add, Sub, Mul, Div, Pow, PRelu (its slope broadcast to the
 * input), and the variadic Sum, Mean, Max, Min. Backward sums each input's
 * gradient over the dimensions it was broadcast along. Gradients at
 * PyTorch's conventions: Max/Min split a tie evenly, PRelu's input takes
 * the slope at 0, Pow's exponent gets no gradient where the base is 0. */
#include <math.h>
#include <string.h>

#include "core/cpu.h"
#include "engine/op.h"
#include "engine/ops/elementwise.h"

/* The output's shape, at its rank. */
typedef struct bin_geom {
    int ndim;
    int64_t dims[CNV_MAX_DIMS];
    int same; /* every input has the output's shape: plain loops */
} bin_geom;
_Static_assert(sizeof(bin_geom) <= CNV_GEOM_SIZE, "bin_geom fits geom");

/* ----------------------------------------------------------- iteration */

/* Element strides of s within an output of rank ndim and these dims: 0
 * along the dimensions s is broadcast along. */
static void strides_for(const cnv_shape *s, int ndim, int64_t *st)
{
    int64_t stride = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        int k = d - (ndim - s->ndim); /* s's own dimension, if any */
        int64_t len = k >= 0 ? s->dims[k] : 1;
        st[d] = len == 1 ? 0 : stride;
        stride *= len;
    }
}

/* The output walked as rows: the dimensions merged where both operands
 * allow it (each one's stride at d equals its stride at d+1 times the
 * length of d+1), so that the innermost row is as long as can be and each
 * operand either steps by 1 along it or stays put (a stride of 0: the
 * broadcast scalar of a squeeze-excitation gate, a per-channel bias). */
typedef struct walk {
    int nd;                  /* merged rank; the last dim is the row */
    int64_t dims[CNV_MAX_DIMS];
    int64_t sa[CNV_MAX_DIMS], sb[CNV_MAX_DIMS];
} walk;

static void walk_init(walk *w, const bin_geom *g, const cnv_shape *a, const cnv_shape *b)
{
    int64_t sa[CNV_MAX_DIMS], sb[CNV_MAX_DIMS];
    strides_for(a, g->ndim, sa);
    strides_for(b, g->ndim, sb);
    w->nd = 0;
    for (int d = 0; d < g->ndim; d++) {
        if (g->dims[d] == 1)
            continue; /* a dimension of 1 walks nowhere */
        int k = w->nd - 1;
        if (k >= 0 && sa[d] * g->dims[d] == w->sa[k] && sb[d] * g->dims[d] == w->sb[k] &&
            (w->sa[k] == 0) == (sa[d] == 0) && (w->sb[k] == 0) == (sb[d] == 0)) {
            w->dims[k] *= g->dims[d];
            w->sa[k] = sa[d];
            w->sb[k] = sb[d];
            continue;
        }
        w->dims[w->nd] = g->dims[d];
        w->sa[w->nd] = sa[d];
        w->sb[w->nd] = sb[d];
        w->nd++;
    }
    if (w->nd == 0) { /* a scalar output */
        w->nd = 1;
        w->dims[0] = 1;
        w->sa[0] = w->sb[0] = 0;
    }
}

/* Calls row(arg, y offset, a offset, b offset) for every row of the walk,
 * the row being w->dims[nd-1] long with steps w->sa[nd-1], w->sb[nd-1]
 * (each 0 or 1). */
typedef void (*row_fn)(void *arg, int64_t y, int64_t a, int64_t b);

static void walk_rows(const walk *w, row_fn row, void *arg)
{
    int64_t idx[CNV_MAX_DIMS] = {0}, ia = 0, ib = 0, iy = 0, len = w->dims[w->nd - 1];
    int64_t rows = 1;
    for (int d = 0; d < w->nd - 1; d++)
        rows *= w->dims[d];
    for (int64_t r = 0; r < rows; r++) {
        row(arg, iy, ia, ib);
        iy += len;
        for (int d = w->nd - 2; d >= 0; d--) {
            ia += w->sa[d];
            ib += w->sb[d];
            if (++idx[d] < w->dims[d])
                break;
            ia -= w->sa[d] * w->dims[d];
            ib -= w->sb[d] * w->dims[d];
            idx[d] = 0;
        }
    }
}

/* ------------------------------------------------------------ the ops */

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_PRELU, OP_MAX, OP_MIN };

static inline float apply(int op, float a, float b)
{
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    case OP_DIV: return a / b;
    case OP_POW: return powf(a, b);
    case OP_PRELU: return a < 0.0f ? b * a : a;
    case OP_MAX: return a != a ? a : b != b ? b : a >= b ? a : b; /* NaN wins, as numpy */
    default: return a != a ? a : b != b ? b : a <= b ? a : b;     /* OP_MIN */
    }
}

/* One row of y = a op b, each operand stepping by 1 or 0: the three
 * shapes of loop written out so each vectorizes. */
typedef struct fwd_job {
    int op;
    const float *a, *b;
    float *y;
    int64_t len, sa, sb;
} fwd_job;

/* The row loops with op a constant, so that apply() folds to one
 * operation and the loop vectorizes: one copy per op (OP_ROWS below). */
static inline __attribute__((always_inline)) void forward_row_of(const int op, const fwd_job *j, int64_t iy,
                                                                 int64_t ia, int64_t ib)
{
    const float *a = j->a + ia, *b = j->b + ib; /* a may be y (a fold) */
    float *y = j->y + iy;
    if (j->sa && j->sb)
        for (int64_t i = 0; i < j->len; i++)
            y[i] = apply(op, a[i], b[i]);
    else if (j->sa) {
        float bv = b[0];
        for (int64_t i = 0; i < j->len; i++)
            y[i] = apply(op, a[i], bv);
    } else if (j->sb) {
        float av = a[0];
        for (int64_t i = 0; i < j->len; i++)
            y[i] = apply(op, av, b[i]);
    } else
        for (int64_t i = 0; i < j->len; i++)
            y[i] = apply(op, a[0], b[0]);
}

/* One input's gradient row: dx[ix] (+)= t(dy, a, b, y) along the row, ix
 * stepping by sx (1, or 0: a reduction into one element). */
typedef struct bwd_job {
    int op, which;          /* which: 0 for a's gradient, 1 for b's */
    const float *a, *b, *y, *dy, *cnt;
    float *dx;
    int64_t len, sa, sb;
    float scale;            /* Mean's 1 / n */
    int store;              /* dx has the output's shape and holds garbage:
                               each element written once, with = */
} bwd_job;

/* d(a op b)/d(a or b) times g, at (a, b) with output o. */
static inline float dterm(int op, int which, float a, float b, float o, float g)
{
    switch (op) {
    case OP_ADD: return g;
    case OP_SUB: return which ? -g : g;
    case OP_MUL: return which ? g * a : g * b;
    case OP_DIV: return which ? -g * o / b : g / b;
    case OP_POW:
        if (which) /* d/db a^b = a^b log a; none where a is 0 (PyTorch) */
            return a == 0.0f ? 0.0f : g * o * logf(a);
        return b == 0.0f ? 0.0f : g * b * powf(a, b - 1.0f);
    case OP_PRELU:
        if (which)
            return a > 0.0f ? 0.0f : g * a;
        return a > 0.0f ? g : g * b;
    default:
        return g;
    }
}

static inline __attribute__((always_inline)) void backward_row_of(const int op, const bwd_job *j, int64_t iy,
                                                                  int64_t ia, int64_t ib)
{
    const float *a = j->a + ia, *b = j->b + ib, *y = j->y + iy, *dy = j->dy + iy;
    const int which = j->which;
    float *dx = j->dx + (which ? ib : ia);
    int64_t sx = which ? j->sb : j->sa, so = which ? j->sa : j->sb; /* the other operand's step */
    const float *x = which ? b : a, *other = which ? a : b;
#define TERM(xi, oi) (which ? dterm(op, 1, other[oi], x[xi], y[i], dy[i]) : dterm(op, 0, x[xi], other[oi], y[i], dy[i]))
    if (sx && j->store) {
        if (so)
            for (int64_t i = 0; i < j->len; i++)
                dx[i] = TERM(i, i);
        else
            for (int64_t i = 0; i < j->len; i++)
                dx[i] = TERM(i, 0);
        return;
    }
    if (sx) {
        if (so)
            for (int64_t i = 0; i < j->len; i++)
                dx[i] += TERM(i, i);
        else
            for (int64_t i = 0; i < j->len; i++)
                dx[i] += TERM(i, 0);
        return;
    }
    double s = 0.0; /* a broadcast operand: the row sums into one element */
    if (so)
        for (int64_t i = 0; i < j->len; i++)
            s += TERM(0, i);
    else
        for (int64_t i = 0; i < j->len; i++)
            s += TERM(0, 0);
#undef TERM
    dx[0] += (float)s;
}

/* One copy of the row loops per op, each with op a constant so that
 * apply() and dterm() fold to one expression and the loops vectorize.
 * Max and Min fold forward through these, and have a backward of their
 * own (var_backward). */
#define FORWARD_ROWS(OP)                                                           \
    CNV_CLONES static void forward_row_##OP(void *arg, int64_t iy, int64_t ia, int64_t ib) \
    {                                                                              \
        forward_row_of(OP, arg, iy, ia, ib);                                       \
    }
#define OP_ROWS(OP)                                                                \
    FORWARD_ROWS(OP)                                                               \
    CNV_CLONES static void backward_row_##OP(void *arg, int64_t iy, int64_t ia, int64_t ib) \
    {                                                                              \
        backward_row_of(OP, arg, iy, ia, ib);                                      \
    }
OP_ROWS(OP_ADD)
OP_ROWS(OP_SUB)
OP_ROWS(OP_MUL)
OP_ROWS(OP_DIV)
OP_ROWS(OP_POW)
OP_ROWS(OP_PRELU)
FORWARD_ROWS(OP_MAX)
FORWARD_ROWS(OP_MIN)
#undef OP_ROWS
#undef FORWARD_ROWS

static const row_fn g_forward_rows[] = {forward_row_OP_ADD, forward_row_OP_SUB,   forward_row_OP_MUL,
                                        forward_row_OP_DIV, forward_row_OP_POW,   forward_row_OP_PRELU,
                                        forward_row_OP_MAX, forward_row_OP_MIN};
static const row_fn g_backward_rows[] = {backward_row_OP_ADD, backward_row_OP_SUB, backward_row_OP_MUL,
                                         backward_row_OP_DIV, backward_row_OP_POW, backward_row_OP_PRELU};

/* y = a op b over the output (y may be a: the variadic ops fold into y). */
static void fold(int op, const bin_geom *g, const cnv_val *a, const float *adata, const cnv_val *b, float *y)
{
    walk w;
    walk_init(&w, g, &a->shape, &b->shape);
    fwd_job j = {op, adata, b->data, y, w.dims[w.nd - 1], w.sa[w.nd - 1], w.sb[w.nd - 1]};
    walk_rows(&w, g_forward_rows[op], &j);
}

/* ------------------------------------------------------------- planning */

static cnv_status bin_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state;
    bin_geom *g = (bin_geom *)c->geom;
    int n = c->node->n_in;
    g->ndim = 0;
    for (int k = 0; k < n; k++)
        if (c->in[k]->shape.ndim > g->ndim)
            g->ndim = c->in[k]->shape.ndim;
    for (int d = 0; d < g->ndim; d++)
        g->dims[d] = 1;
    for (int k = 0; k < n; k++) {
        const cnv_shape *s = &c->in[k]->shape;
        for (int d = 0; d < s->ndim; d++) {
            int o = d + g->ndim - s->ndim;
            int64_t len = s->dims[d];
            if (len != g->dims[o] && len != 1 && g->dims[o] != 1) {
                char sa[128], sb[128];
                return cnv_fail(e, CNV_ERR_SHAPE, "input %d of shape %s does not broadcast with %s", k,
                                cnv_shape_str(s, sa, sizeof sa), cnv_shape_str(&c->in[0]->shape, sb, sizeof sb));
            }
            if (len != 1)
                g->dims[o] = len;
        }
    }
    cnv_shape *y = &c->out[0]->shape;
    y->ndim = g->ndim;
    memcpy(y->dims, g->dims, sizeof g->dims);
    g->same = 1;
    for (int k = 0; k < n; k++)
        g->same &= cnv_shape_equal(&c->in[k]->shape, y);
    *work = 0;
    return CNV_OK;
}

/* Max and Min keep each output element's count of tied inputs. */
static cnv_status select_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    cnv_status st = bin_plan(c, state, work, e);
    if (st == CNV_OK && c->node->n_in > 1 &&
        !cnv_mul_size((size_t)cnv_shape_count(&c->out[0]->shape), sizeof(float), work))
        return cnv_fail(e, CNV_ERR_NOMEM, "workspace too large");
    return st;
}

/* PRelu: the slope broadcasts to the input (unidirectionally), which the
 * output's shape must be. */
static cnv_status prelu_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    cnv_status st = bin_plan(c, state, work, e);
    if (st == CNV_OK && !cnv_shape_equal(&c->out[0]->shape, &c->in[0]->shape)) {
        char sx[128], ss[128];
        return cnv_fail(e, CNV_ERR_SHAPE, "the slope %s does not broadcast to the input %s",
                        cnv_shape_str(&c->in[1]->shape, ss, sizeof ss), cnv_shape_str(&c->in[0]->shape, sx, sizeof sx));
    }
    return st;
}

/* ------------------------------------------------------------- forward */

static void bin_forward(cnv_op_ctx *c, int op)
{
    const bin_geom *g = (const bin_geom *)c->geom;
    float *y = c->out[0]->data;
    int64_t n = c->out[0]->count;
    if (g->same && c->node->n_in == 2) {
        fwd_job j = {op, c->in[0]->data, c->in[1]->data, y, n, 1, 1};
        g_forward_rows[op](&j, 0, 0, 0);
        return;
    }
    fold(op, g, c->in[0], c->in[0]->data, c->in[1], y);
}

/* Sum, Mean, Max, Min: the first input broadcast into y, then each next one
 * folded in. */
static void var_forward(cnv_op_ctx *c, int op, int mean)
{
    const bin_geom *g = (const bin_geom *)c->geom;
    float *y = c->out[0]->data;
    int64_t n = c->out[0]->count;
    int fop = op == OP_MAX || op == OP_MIN ? op : OP_ADD;
    cnv_val yv = *c->out[0];
    if (c->node->n_in == 1) {
        memcpy(y, c->in[0]->data, (size_t)n * sizeof *y);
    } else {
        fold(fop, g, c->in[0], c->in[0]->data, c->in[1], y);
        for (int k = 2; k < c->node->n_in; k++)
            fold(fop, g, &yv, y, c->in[k], y);
    }
    if (mean)
        for (int64_t i = 0; i < n; i++)
            y[i] /= (float)c->node->n_in;
}

/* ------------------------------------------------------------ backward */

/* Adds input k's gradient of a binary op; zeroes it first when the
 * executor asks for a store. */
static void grad_of(cnv_op_ctx *c, int op, int k)
{
    const bin_geom *g = (const bin_geom *)c->geom;
    cnv_val *x = c->in[k];
    if (!x->grad)
        return;
    const cnv_val *a = c->in[0], *b = c->in[1];
    if (g->same && (op == OP_ADD || (op == OP_SUB && k == 0))) {
        cnv_grad_pass(c->out[0]->grad, x->grad, x->count, cnv_grad_store(c, k));
        return;
    }
    /* an input of the output's shape is written once per element, so it
     * can take = ; a broadcast one sums rows into its elements */
    int store = cnv_grad_store(c, k) && cnv_shape_equal(&x->shape, &c->out[0]->shape);
    if (cnv_grad_store(c, k) && !store)
        memset(x->grad, 0, (size_t)x->count * sizeof *x->grad);
    walk w;
    walk_init(&w, g, &a->shape, &b->shape);
    bwd_job j = {op, k, a->data, b->data, c->out[0]->data, c->out[0]->grad, NULL, x->grad,
                 w.dims[w.nd - 1], w.sa[w.nd - 1], w.sb[w.nd - 1], 1.0f, store};
    walk_rows(&w, g_backward_rows[op], &j);
}

/* y = x * s with s = Sigmoid(x) (cnv_op_ctx.fused_sigmoid): ds = dy x
 * (the Mul's gradient for s), dx = dy s (the Mul's for x) + ds s (1 - s)
 * (the Sigmoid's), in one pass and the order the two nodes would add
 * them. Blocks of 16 floats [lo, hi) per thread. */
typedef struct swish_job {
    const cnv_op_ctx *c;
    int ks; /* the input that is s */
} swish_job;

CNV_CLONES static void swish_rows(const float *restrict dy, const float *restrict x, const float *restrict sg,
                                  float *restrict dx, float *restrict ds, int64_t n, int store_x, int store_s)
{
    for (int64_t i = 0; i < n; i++) {
        float g = dy[i], sv = sg[i], d = g * x[i];
        float d_total = store_s ? d : ds[i] + d;
        float a = store_x ? g * sv : dx[i] + g * sv;
        ds[i] = d_total;
        dx[i] = a + d_total * sv * (1.0f - sv);
    }
}

static void swish_part(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const swish_job *j = arg;
    const cnv_op_ctx *c = j->c;
    int kx = 1 - j->ks;
    int64_t n = c->out[0]->count;
    lo *= 16, hi = hi * 16 < n ? hi * 16 : n;
    swish_rows(c->out[0]->grad + lo, c->in[kx]->data + lo, c->in[j->ks]->data + lo, c->in[kx]->grad + lo,
               c->in[j->ks]->grad + lo, hi - lo, cnv_grad_store(c, kx), cnv_grad_store(c, j->ks));
}

static void bin_backward(cnv_op_ctx *c, int op)
{
    if (c->fused_sigmoid) { /* Mul; plan_swish made sure both have gradients */
        swish_job j = {c, c->fused_sigmoid - 1};
        cnv_team_run(c->team, (c->out[0]->count + 15) / 16, swish_part, &j);
        return;
    }
    /* both inputs the same tensor: the executor zeroed it, each adds */
    grad_of(c, op, 0);
    grad_of(c, op, 1);
}

/* Sum and Mean: each input gets dy (over n for Mean) summed over its
 * broadcast dimensions. Max and Min: dy goes to the inputs equal to the
 * output, split evenly between ties (their count kept in the workspace). */
typedef struct var_job {
    const float *x, *y, *dy, *cnt;
    float *dx;
    int64_t len, sx, sy;
    int select;  /* Max/Min: only where x == y, over the tie count */
    float scale;
} var_job;

/* Walked with y as the first operand and x as the second. */
static void var_row(void *arg, int64_t iy, int64_t unused, int64_t ix)
{
    (void)unused;
    const var_job *j = arg;
    const float *x = j->x + ix, *y = j->y + iy, *dy = j->dy + iy, *cnt = j->cnt ? j->cnt + iy : NULL;
    float *dx = j->dx + ix;
    double s = 0.0;
    for (int64_t i = 0; i < j->len; i++) {
        float d = dy[i] * j->scale;
        if (j->select)
            d = x[i * j->sx] == y[i] ? dy[i] / cnt[i] : 0.0f;
        if (j->sx)
            dx[i] += d;
        else
            s += d;
    }
    if (!j->sx)
        dx[0] += (float)s;
}

/* cnt[i] = how many inputs equal y[i]. */
typedef struct count_job {
    const float *x, *y;
    float *cnt;
    int64_t len, sx;
} count_job;

static void count_row(void *arg, int64_t iy, int64_t unused, int64_t ix)
{
    (void)unused;
    const count_job *j = arg;
    for (int64_t i = 0; i < j->len; i++)
        j->cnt[iy + i] += j->x[ix + i * j->sx] == j->y[iy + i];
}

static void var_backward(cnv_op_ctx *c, int op, int mean)
{
    const bin_geom *g = (const bin_geom *)c->geom;
    const cnv_val *yv = c->out[0];
    int select = op == OP_MAX || op == OP_MIN, n = c->node->n_in;
    float *cnt = select && n > 1 ? c->work : NULL;
    if (cnt) {
        memset(cnt, 0, (size_t)yv->count * sizeof *cnt);
        for (int k = 0; k < n; k++) {
            walk w;
            walk_init(&w, g, &yv->shape, &c->in[k]->shape);
            count_job j = {c->in[k]->data, yv->data, cnt, w.dims[w.nd - 1], w.sb[w.nd - 1]};
            walk_rows(&w, count_row, &j);
        }
    }
    for (int k = 0; k < n; k++) {
        cnv_val *x = c->in[k];
        if (!x->grad)
            continue;
        if (cnv_grad_store(c, k))
            memset(x->grad, 0, (size_t)x->count * sizeof *x->grad);
        walk w;
        walk_init(&w, g, &yv->shape, &x->shape);
        var_job j = {x->data, yv->data, yv->grad, cnt, x->grad, w.dims[w.nd - 1], w.sb[w.nd - 1],
                     w.sa[w.nd - 1], cnt != NULL, mean ? 1.0f / (float)n : 1.0f};
        walk_rows(&w, var_row, &j);
    }
}

/* ------------------------------------------------------------- folding */

/* INT64 operands known at plan time (shape arithmetic: an export's
 * `channels // groups`) are computed once, with C's integer semantics
 * (division truncates); overflow and division by zero are refused. Float
 * operands go through plan and forward as usual. */
typedef struct ifold_job {
    int op;
    const int64_t *a, *b;
    int64_t *y;
    int64_t len, sa, sb;
    int bad; /* an overflow or a division by zero */
} ifold_job;

static int apply_i64(int op, int64_t a, int64_t b, int64_t *y)
{
    switch (op) {
    case OP_ADD: return !__builtin_add_overflow(a, b, y);
    case OP_SUB: return !__builtin_sub_overflow(a, b, y);
    case OP_MUL: return !__builtin_mul_overflow(a, b, y);
    case OP_DIV:
        if (b == 0 || (a == INT64_MIN && b == -1))
            return 0;
        *y = a / b;
        return 1;
    case OP_MAX: *y = a >= b ? a : b; return 1;
    case OP_MIN: *y = a <= b ? a : b; return 1;
    default: return 0;
    }
}

static void ifold_row(void *arg, int64_t iy, int64_t ia, int64_t ib)
{
    ifold_job *j = arg;
    for (int64_t i = 0; i < j->len; i++)
        j->bad |= !apply_i64(j->op, j->a[ia + i * j->sa], j->b[ib + i * j->sb], &j->y[iy + i]);
}

static cnv_status int_fold(cnv_op_ctx *c, int op, int *done, cnv_err *e)
{
    int n = c->node->n_in, ints = 0;
    for (int k = 0; k < n; k++)
        ints += c->in[k]->i64 != NULL;
    if (ints == 0)
        return CNV_OK;
    if (ints != n)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "mixes INT64 and float inputs");
    if (op == OP_POW || op == OP_PRELU || op < 0)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "%s of INT64 values is not supported", c->node->op->type);
    size_t state, work;
    cnv_status st = bin_plan(c, &state, &work, e);
    if (st != CNV_OK)
        return st;
    const bin_geom *g = (const bin_geom *)c->geom;
    cnv_val *yv = c->out[0];
    int64_t *y;
    if ((st = cnv_fold_values(c, yv, 1, (void **)&y, e)) != CNV_OK)
        return st;
    if (n == 1) {
        memcpy(y, c->in[0]->i64, (size_t)yv->count * sizeof *y);
    } else {
        ifold_job j = {op, c->in[0]->i64, NULL, y, 0, 0, 0, 0};
        for (int k = 1; k < n; k++) {
            walk w;
            walk_init(&w, g, k == 1 ? &c->in[0]->shape : &yv->shape, &c->in[k]->shape);
            j.b = c->in[k]->i64;
            j.len = w.dims[w.nd - 1], j.sa = w.sa[w.nd - 1], j.sb = w.sb[w.nd - 1];
            walk_rows(&w, ifold_row, &j);
            j.a = y;
        }
        if (j.bad)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED, "the INT64 result overflows or divides by zero");
    }
    *done = 1;
    return CNV_OK;
}

/* ------------------------------------------------------------ the table */

#define BINARY(name, TYPE, OP, FLAGS)                                                            \
    static void name##_forward(cnv_op_ctx *c) { bin_forward(c, OP); }                         \
    static void name##_backward(cnv_op_ctx *c) { bin_backward(c, OP); }                       \
    static cnv_status name##_fold(cnv_op_ctx *c, int *done, cnv_err *e)                        \
    {                                                                                          \
        return int_fold(c, OP, done, e);                                                       \
    }                                                                                          \
    const cnv_op cnv_op_##name = {                                                             \
        .type = TYPE, .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,                    \
        .flags = CNV_OP_GRAD_STORE | (FLAGS), .plan = bin_plan, .forward = name##_forward,     \
        .backward = name##_backward, .fold = name##_fold,                                      \
    };

BINARY(add, "Add", OP_ADD, 0)
BINARY(sub, "Sub", OP_SUB, 0)
BINARY(mul, "Mul", OP_MUL, CNV_OP_TAKES_SIGMOID)
BINARY(div, "Div", OP_DIV, 0)
BINARY(pow, "Pow", OP_POW, 0)

static void prelu_forward(cnv_op_ctx *c)
{
    bin_forward(c, OP_PRELU);
}

static void prelu_backward(cnv_op_ctx *c)
{
    bin_backward(c, OP_PRELU);
}

const cnv_op cnv_op_prelu = {
    .type = "PRelu", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE | CNV_OP_ACTIVATION, .plan = prelu_plan, .forward = prelu_forward,
    .backward = prelu_backward,
};

#define VARIADIC(name, TYPE, OP, MEAN, PLAN)                                                     \
    static void name##_forward(cnv_op_ctx *c) { var_forward(c, OP, MEAN); }                   \
    static void name##_backward(cnv_op_ctx *c) { var_backward(c, OP, MEAN); }                 \
    static cnv_status name##_fold(cnv_op_ctx *c, int *done, cnv_err *e)                        \
    {                                                                                          \
        return int_fold(c, MEAN ? -1 : OP, done, e);                                           \
    }                                                                                          \
    const cnv_op cnv_op_##name = {                                                             \
        .type = TYPE, .min_in = 1, .max_in = 1 << 16, .min_out = 1, .max_out = 1,              \
        .flags = CNV_OP_GRAD_STORE | CNV_OP_ALL_REQUIRED, .plan = PLAN,                        \
        .forward = name##_forward, .backward = name##_backward, .fold = name##_fold,           \
    };

VARIADIC(sum, "Sum", OP_ADD, 0, bin_plan)
VARIADIC(mean, "Mean", OP_ADD, 1, bin_plan)
VARIADIC(max, "Max", OP_MAX, 0, select_plan)
VARIADIC(min, "Min", OP_MIN, 0, select_plan)
