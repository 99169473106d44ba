/* ConvTranspose (ONNX, opset 1-17), 2-D: the input gradient of a convolution
 * run forward (a GEMM and col2im per image and group), and its backward. */
#include <string.h>

#include "engine/op.h"
#include "engine/ops/im2col.h"
#include "engine/ops/window.h"

typedef struct convt_params {
    /* counts are 0 for an absent attribute; a spatial rank other than 2
     * is refused in plan, where the input rank is known */
    int n_kernel, n_strides, n_dilations, n_pads, n_outpad, n_outshape;
    int64_t kernel[CNV_MAX_DIMS];
    int64_t strides[CNV_MAX_DIMS];
    int64_t dilations[CNV_MAX_DIMS];
    int64_t pads[2 * CNV_MAX_DIMS];
    int64_t outpad[CNV_MAX_DIMS];
    int64_t outshape[CNV_MAX_DIMS];
    int64_t group;
    int auto_pad;
} convt_params;

/* The output Y of one image and group is the "image" of the convolution
 * whose input gradient ConvTranspose is, and X's pixels are that
 * convolution's output positions: ig.c = M/group, ig.h/w = OH/OW and
 * ig.oh/ow = H/W. Its column matrix (K, P) is W_g^T X_g. */
typedef struct convt_geom {
    cnv_im2col_geom ig;
    int64_t n, c, m;     /* batch, input and output channels */
    int64_t group, cg, mg; /* groups, input and output channels per group */
    int64_t k, p, q;     /* mg*kh*kw, H*W, OH*OW */
    int pointwise;       /* 1x1, stride 1, no pad, OH = H, OW = W: the
                            column matrix is Y itself */
    int by_unit;         /* threads take whole (image, group) units */
    int64_t unit_work;   /* workspace floats of one unit */
} convt_geom;

_Static_assert(sizeof(convt_geom) <= CNV_GEOM_SIZE, "convt_geom must fit in geom");

/* Reads an INTS attribute of at most cap values, each in [lo, INT32_MAX],
 * so that a product of two stays inside int64. */
static cnv_status get_ints(const cnv_node *n, const char *attr, int64_t lo, int cap, int64_t *dst,
                           int *count, cnv_err *e)
{
    const int64_t *v;
    int cnt;
    cnv_status st = cnv_attr_get_ints(n, attr, &v, &cnt, e);
    if (st != CNV_OK)
        return st;
    if (cnt > cap)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "%s has %d values, at most %d are supported", attr, cnt, cap);
    for (int i = 0; i < cnt; i++) {
        if (v[i] < lo || v[i] > INT32_MAX)
            return cnv_fail(e, v[i] < lo ? CNV_ERR_FORMAT : CNV_ERR_UNSUPPORTED,
                            "%s[%d] = %lld is out of range [%lld, 2^31)", attr, i, (long long)v[i],
                            (long long)lo);
        dst[i] = v[i];
    }
    *count = cnt;
    return CNV_OK;
}

static cnv_status convt_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset; /* opsets 1 and 11 differ in wording only */
    convt_params *p = params;
    cnv_status st;
    if ((st = get_ints(n, "kernel_shape", 1, CNV_MAX_DIMS, p->kernel, &p->n_kernel, e)) ||
        (st = get_ints(n, "strides", 1, CNV_MAX_DIMS, p->strides, &p->n_strides, e)) ||
        (st = get_ints(n, "dilations", 1, CNV_MAX_DIMS, p->dilations, &p->n_dilations, e)) ||
        (st = get_ints(n, "pads", 0, 2 * CNV_MAX_DIMS, p->pads, &p->n_pads, e)) ||
        (st = get_ints(n, "output_padding", 0, CNV_MAX_DIMS, p->outpad, &p->n_outpad, e)) ||
        (st = get_ints(n, "output_shape", 1, CNV_MAX_DIMS, p->outshape, &p->n_outshape, e)))
        return st;
    if ((st = cnv_attr_get_int(n, "group", 1, &p->group, e)))
        return st;
    if (p->group < 1 || p->group > INT32_MAX)
        return cnv_fail(e, CNV_ERR_FORMAT, "group = %lld, must be in [1, 2^31)", (long long)p->group);
    return cnv_auto_pad_parse(n, &p->auto_pad, e);
}

/* One spatial axis of the output: its size *out and the pad *pb cut from
 * its beginning. The full transposed convolution has
 * s*(in-1) + output_padding + span positions; the pads (or the total
 * implied by an output_shape or by SAME's in*s) are cut from it. A target
 * larger than the full size leaves the extra positions at the end with no
 * input (bias only), as ONNX's output_shape tests expect. */
static cnv_status convt_axis(const convt_params *p, int i, const char *name, int64_t in, int64_t k,
                             int64_t *out, int64_t *pb, cnv_err *e)
{
    int64_t s = p->n_strides ? p->strides[i] : 1, d = p->n_dilations ? p->dilations[i] : 1;
    int64_t op = p->n_outpad ? p->outpad[i] : 0, span, full;
    /* each factor is below 2^31, so each product fits; the sum is checked */
    if (!cnv_mul_i64(k - 1, d, &span) || !cnv_mul_i64(in - 1, s, &full) || span > CNV_MAX_ELEMS ||
        full > CNV_MAX_ELEMS || (full += span + 1 + op) > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "the %s of the output is too large", name);
    int64_t target = 0;
    if (p->n_outshape)
        target = p->outshape[p->n_outshape - 2 + i];
    else if (p->auto_pad == CNV_PAD_SAME_UPPER || p->auto_pad == CNV_PAD_SAME_LOWER)
        target = in * s; /* both below 2^31 */
    if (target) {
        int64_t total = full - target;
        if (total < 0)
            total = 0;
        *pb = p->auto_pad == CNV_PAD_SAME_UPPER ? total / 2 : total - total / 2;
        *out = target;
        return CNV_OK;
    }
    int64_t b = 0, en = 0;
    if (p->auto_pad == CNV_PAD_NOTSET && p->n_pads) {
        b = p->pads[i];
        en = p->pads[i + 2];
    }
    if (full - b - en < 1)
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "pads %lld + %lld leave no output %s (%lld before padding)", (long long)b,
                        (long long)en, name, (long long)full);
    *pb = b;
    *out = full - b - en;
    return CNV_OK;
}

static cnv_status convt_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size, cnv_err *e)
{
    const convt_params *p = c->params;
    const cnv_val *x = c->in[0], *w = c->in[1], *b = c->node->n_in > 2 ? c->in[2] : NULL;
    char sx[96], sw[96], sb[96];
    cnv_shape_str(&x->shape, sx, sizeof sx);
    cnv_shape_str(&w->shape, sw, sizeof sw);

    if (x->shape.ndim != 4 || w->shape.ndim != 4) {
        int spatial = x->shape.ndim >= 3 ? x->shape.ndim - 2 : w->shape.ndim - 2;
        if (spatial >= 1 && spatial != 2)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                            "only 2-D ConvTranspose is supported, got a %d-D one (X %s, W %s)", spatial,
                            sx, sw);
        return cnv_fail(e, CNV_ERR_SHAPE, "X and W must be 4-D, got X %s, W %s", sx, sw);
    }
    if ((p->n_kernel && p->n_kernel != 2) || (p->n_strides && p->n_strides != 2) ||
        (p->n_dilations && p->n_dilations != 2) || (p->n_pads && p->n_pads != 4) ||
        (p->n_outpad && p->n_outpad != 2) || (p->n_outshape && p->n_outshape != 2 && p->n_outshape != 4))
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "only 2-D ConvTranspose is supported; X is %s but kernel_shape/strides/dilations/pads/output_padding/output_shape have %d/%d/%d/%d/%d/%d values",
                        sx, p->n_kernel, p->n_strides, p->n_dilations, p->n_pads, p->n_outpad,
                        p->n_outshape);
    for (int i = 0; i < 4; i++)
        if (x->shape.dims[i] < 1 || w->shape.dims[i] < 1)
            return cnv_fail(e, CNV_ERR_SHAPE, "empty or unknown dimension in X %s or W %s", sx, sw);

    int64_t N = x->shape.dims[0], C = x->shape.dims[1], H = x->shape.dims[2], W = x->shape.dims[3];
    int64_t kh = w->shape.dims[2], kw = w->shape.dims[3], M;
    if (w->shape.dims[0] != C)
        return cnv_fail(e, CNV_ERR_SHAPE, "W %s must have X's %lld input channels first (X %s)", sw,
                        (long long)C, sx);
    if (C % p->group != 0)
        return cnv_fail(e, CNV_ERR_SHAPE, "group %lld does not divide the input channels of X %s",
                        (long long)p->group, sx);
    if (!cnv_mul_i64(w->shape.dims[1], p->group, &M) || M > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "W %s with group %lld has too many output channels", sw,
                        (long long)p->group);
    if (p->n_kernel && (p->kernel[0] != kh || p->kernel[1] != kw))
        return cnv_fail(e, CNV_ERR_SHAPE, "kernel_shape %lldx%lld does not match W %s",
                        (long long)p->kernel[0], (long long)p->kernel[1], sw);
    if (p->n_outshape == 4 && (p->outshape[0] != N || p->outshape[1] != M))
        return cnv_fail(e, CNV_ERR_SHAPE, "output_shape %lldx%lldx%lldx%lld does not match N = %lld, M = %lld",
                        (long long)p->outshape[0], (long long)p->outshape[1], (long long)p->outshape[2],
                        (long long)p->outshape[3], (long long)N, (long long)M);
    if (b) {
        cnv_shape_str(&b->shape, sb, sizeof sb);
        if (b->shape.ndim != 1 || b->shape.dims[0] != M)
            return cnv_fail(e, CNV_ERR_SHAPE, "B %s must be (%lld), the output channels of W %s", sb,
                            (long long)M, sw);
    }
    int64_t oh, ow, pt, pl;
    cnv_status st;
    if ((st = convt_axis(p, 0, "height", H, kh, &oh, &pt, e)) ||
        (st = convt_axis(p, 1, "width", W, kw, &ow, &pl, e)))
        return st;

    /* every GEMM dimension must be a BLAS int and every buffer countable */
    int64_t mg = M / p->group, cg = C / p->group, K, P, Q, t;
    if (!cnv_mul_i64(oh, ow, &Q) || !cnv_mul_i64(H, W, &P) || !cnv_mul_i64(mg, kh, &t) ||
        !cnv_mul_i64(t, kw, &K) || !cnv_mul_i64(K, P, &t) || t > CNV_MAX_ELEMS ||
        !cnv_mul_i64(N, M, &t) || !cnv_mul_i64(t, Q, &t) || t > CNV_MAX_ELEMS || !cnv_mul_i64(C, K, &t) ||
        t > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "X %s with W %s gives buffers too large (output %lldx%lldx%lldx%lld)", sx, sw,
                        (long long)N, (long long)M, (long long)oh, (long long)ow);

    convt_geom *g = (convt_geom *)c->geom;
    memset(g, 0, sizeof *g);
    g->ig = (cnv_im2col_geom){ .c = mg, .h = oh, .w = ow, .kh = kh, .kw = kw,
                               .sh = p->n_strides ? p->strides[0] : 1,
                               .sw = p->n_strides ? p->strides[1] : 1,
                               .dh = p->n_dilations ? p->dilations[0] : 1,
                               .dw = p->n_dilations ? p->dilations[1] : 1,
                               .pt = pt, .pl = pl, .oh = H, .ow = W };
    g->n = N;
    g->c = C;
    g->m = M;
    g->group = p->group;
    g->cg = cg;
    g->mg = mg;
    g->k = K;
    g->p = P;
    g->q = Q;
    g->pointwise = kh == 1 && kw == 1 && g->ig.sh == 1 && g->ig.sw == 1 && pt == 0 && pl == 0 &&
                   oh == H && ow == W;
    int64_t units = N * p->group, th = c->threads > 1 ? c->threads : 1;
    g->by_unit = th > 1 && units >= th && (units % th == 0 || units >= 4 * th);
    g->unit_work = g->pointwise ? 0 : K * P;

    cnv_shape4(&c->out[0]->shape, N, M, oh, ow);
    *state_size = 0;
    size_t bytes;
    if (!cnv_mul_size((size_t)g->unit_work, sizeof(float), &bytes) ||
        !cnv_mul_size(bytes, g->by_unit ? (size_t)th : 1, work_size))
        return cnv_fail(e, CNV_ERR_NOMEM, "workspace too large");
    return CNV_OK;
}

/* One image n and group gr, run on `team` (NULL: the calling thread
 * alone), its column matrix at `col`; also the argument of the row loops
 * split over the team. */
typedef struct convt_unit {
    const convt_geom *g;
    cnv_team *team;
    const float *x;  /* (cg, P) */
    const float *w;  /* (cg, K) */
    const float *b;  /* (mg) or NULL */
    float *y;        /* (mg, Q) */
    const float *dy; /* (mg, Q) or NULL */
    float *dx;       /* (cg, P) or NULL */
    float *col;      /* (K, P) */
} convt_unit;

static convt_unit unit_at(const cnv_op_ctx *c, int64_t n, int64_t gr, float *col, cnv_team *team)
{
    const convt_geom *g = (const convt_geom *)c->geom;
    const cnv_val *bv = c->node->n_in > 2 ? c->in[2] : NULL;
    int64_t in_off = (n * g->c + gr * g->cg) * g->p, out_off = (n * g->m + gr * g->mg) * g->q;
    return (convt_unit){
        .g = g, .team = team,
        .x = c->in[0]->data + in_off,
        .w = c->in[1]->data + gr * g->cg * g->k,
        .b = bv ? bv->data + gr * g->mg : NULL,
        .y = c->out[0]->data + out_off,
        .dy = c->out[0]->grad ? c->out[0]->grad + out_off : NULL,
        .dx = c->in[0]->grad ? c->in[0]->grad + in_off : NULL,
        .col = col,
    };
}

/* Output rows [r0, r1) of every channel: the bias (or zero), then the
 * column entries that land there. Rows are disjoint between threads. */
static void col2im_rows(void *arg, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const convt_unit *u = arg;
    const cnv_im2col_geom *ig = &u->g->ig;
    if (!u->b) {
        cnv_col2im_rows(ig, u->col, u->y, r0, r1, 1);
        return;
    }
    for (int64_t m = 0; m < ig->c; m++) {
        float *r = u->y + m * u->g->q + r0 * ig->w, v = u->b[m];
        for (int64_t i = 0; i < (r1 - r0) * ig->w; i++)
            r[i] = v;
    }
    cnv_col2im_rows(ig, u->col, u->y, r0, r1, 0);
}

static void bias_block(void *arg, int m0, int m1, int n0, int n1)
{
    const convt_unit *u = arg;
    for (int64_t m = m0; m < m1; m++)
        for (int64_t i = n0; i < n1; i++)
            u->y[m * u->g->q + i] = u->b[m];
}

/* y = col2im(w^T x) + b; for a pointwise unit y = w^T x + b directly (the
 * bias written into each block just before the GEMM adds to it). */
static void unit_forward(convt_unit *u)
{
    const convt_geom *g = u->g;
    const int Cg = (int)g->cg, K = (int)g->k, P = (int)g->p;
    if (g->pointwise) {
        cnv_gemm_hooks h = { u->b ? bias_block : NULL, NULL, u };
        cnv_sgemm_hooked(u->team, 1, 0, K, P, Cg, 1.0f, u->w, K, u->x, P, u->b ? 1.0f : 0.0f, u->y, P, &h);
        return;
    }
    cnv_sgemm(u->team, 1, 0, K, P, Cg, 1.0f, u->w, K, u->x, P, 0.0f, u->col, P);
    cnv_team_run(u->team, g->ig.h, col2im_rows, u);
}

static void forward_unit(const cnv_op_ctx *c, int64_t n, int64_t gr, float *work, cnv_team *team)
{
    convt_unit u = unit_at(c, n, gr, work, team);
    unit_forward(&u);
}

// y (N,M,OH,OW) = convT(x (N,C,H,W), w (C,M/group,kh,kw)) + b (M)
static void convt_forward(cnv_op_ctx *c)
{
    const convt_geom *g = (const convt_geom *)c->geom;
    cnv_run_units(c, g->n, g->group, g->by_unit, (size_t)g->unit_work, forward_unit);
}

static void im2col_rows(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const convt_unit *u = arg;
    cnv_im2col_rows(&u->g->ig, u->dy, u->col, lo, hi);
}

/* The columns of dy: dy itself for a pointwise unit. */
static const float *dy_columns(convt_unit *u)
{
    if (u->g->pointwise)
        return u->dy;
    cnv_team_run(u->team, u->g->ig.c * u->g->ig.kh, im2col_rows, u);
    return u->col;
}

/* dx (+)= w im2col(dy): the convolution of dy by w. */
static void unit_backward_dx(convt_unit *u, const float *col, int store)
{
    const convt_geom *g = u->g;
    cnv_sgemm(u->team, 0, 0, (int)g->cg, (int)g->p, (int)g->k, 1.0f, u->w, (int)g->k, col, (int)g->p,
              store ? 0.0f : 1.0f, u->dx, (int)g->p);
}

static void backward_dx_unit(const cnv_op_ctx *c, int64_t n, int64_t gr, float *work, cnv_team *team)
{
    convt_unit u = unit_at(c, n, gr, work, team);
    unit_backward_dx(&u, dy_columns(&u), cnv_grad_store(c, 0));
}

static void bias_grad(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = arg;
    const convt_geom *g = (const convt_geom *)c->geom;
    const float *dy = c->out[0]->grad;
    float *db = c->in[2]->grad;
    for (int64_t m = lo; m < hi; m++) {
        double s = 0.0; /* up to N*OH*OW terms */
        for (int64_t n = 0; n < g->n; n++) {
            const float *r = dy + (n * g->m + m) * g->q;
            for (int64_t i = 0; i < g->q; i++)
                s += r[i];
        }
        db[m] = (float)s + (cnv_grad_store(c, 2) ? 0.0f : db[m]);
    }
}

/* dx += conv(dy, w); dw += x im2col(dy)^T; db += sum of dy over N,OH,OW */
static void convt_backward(cnv_op_ctx *c)
{
    const convt_geom *g = (const convt_geom *)c->geom;
    const cnv_val *bv = c->node->n_in > 2 ? c->in[2] : NULL;
    float *dw = c->in[1]->grad;

    if (bv && bv->grad)
        cnv_team_run(c->team, g->m, bias_grad, c);
    if (!dw && !c->in[0]->grad)
        return;
    /* Without dw the units are independent; with it every image adds to
     * the same dw, so the units go one after another, each split over the
     * team, and share one im2col of dy between dx and dw. */
    if (!dw) {
        cnv_run_units(c, g->n, g->group, g->by_unit, (size_t)g->unit_work, backward_dx_unit);
        return;
    }
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t gr = 0; gr < g->group; gr++) {
            convt_unit u = unit_at(c, n, gr, c->work, c->team);
            const float *col = dy_columns(&u);
            if (u.dx)
                unit_backward_dx(&u, col, cnv_grad_store(c, 0));
            if (dw) {
                float beta = cnv_grad_store(c, 1) && n == 0 ? 0.0f : 1.0f;
                cnv_sgemm(c->team, 0, 1, (int)g->cg, (int)g->k, (int)g->p, 1.0f, u.x, (int)g->p, col,
                          (int)g->p, beta, dw + gr * g->cg * g->k, (int)g->k);
            }
        }
}

/* 2 per multiply-add: every input value times every weight of its row. */
static double convt_flops(const cnv_op_ctx *c)
{
    const convt_geom *g = (const convt_geom *)c->geom;
    return 2.0 * (double)g->n * (double)g->c * (double)g->k * (double)g->p;
}

const cnv_op cnv_op_convtranspose = {
    .type = "ConvTranspose",
    .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE | CNV_OP_FEATURES,
    .params_size = sizeof(convt_params),
    .parse = convt_parse,
    .plan = convt_plan,
    .forward = convt_forward,
    .backward = convt_backward,
    .flops = convt_flops,
};
