/* Conv (ONNX, opset 1-17): 2-D convolution with groups, strides, dilations,
 * pads and auto_pad, as im2col + GEMM per image and group, or by direct
 * loops when it is depthwise (depthwise.c); its backward. */
#include <string.h>

#include "core/cpu.h"
#include "engine/op.h"
#include "engine/ops/depthwise.h"
#include "engine/ops/im2col.h"
#include "engine/ops/window.h"
#include "engine/ops/winograd.h"
#include "engine/testing.h"

typedef struct conv_params {
    /* counts are 0 for an absent attribute; a rank other than 2 is kept
     * here and refused in plan, where the input rank is known */
    int n_kernel, n_strides, n_dilations, n_pads;
    int64_t kernel[CNV_MAX_DIMS];
    int64_t strides[CNV_MAX_DIMS];
    int64_t dilations[CNV_MAX_DIMS];
    int64_t pads[2 * CNV_MAX_DIMS];
    int64_t group;
    int auto_pad;
} conv_params;

typedef struct conv_geom {
    cnv_im2col_geom ig; /* one image of one group: c is C/group */
    int64_t n, c, m;    /* batch, input and output channels */
    int64_t group, mg;  /* groups, output channels per group */
    int64_t k, p;       /* GEMM inner size (C/group*kh*kw), output pixels */
    int pointwise;      /* 1x1, stride 1, no pad: the input is the column matrix */
    int direct;         /* depthwise (one input channel per group, several
                           groups): depthwise.c's loops, no workspace */
    int simd;           /* their vector level (core/cpu.h) */
    int by_unit;        /* threads take whole (image, group) units, each with
                           its own workspace, instead of splitting each */
    int64_t unit_work;  /* workspace floats of one unit: the column matrix
                           (K, P) unless pointwise, then room to gather
                           mg / 2 rows of w and of dy (see wt_dy) */
    int wino;           /* 3x3, stride 1, group 1 where F(4x4,3x3) pays:
                           forward and backward to the input by
                           winograd.c, unless w needs a gradient */
    cnv_wino_geom wf;   /* forward: x to y */
    cnv_wino_geom wb;   /* backward: dy to dx */
    int64_t wino_image; /* workspace floats of one image (either pass) */
} conv_geom;

_Static_assert(sizeof(conv_geom) <= CNV_GEOM_SIZE, "conv_geom must fit in geom");

int cnv_conv_no_direct; /* engine/testing.h */
int cnv_conv_no_winograd; /* engine/testing.h */

/* Reads an INTS attribute of at most cap values, each in [lo, INT32_MAX];
 * the upper bound keeps every product of two of them inside int64. */
static cnv_status get_ints(const cnv_node *n, const char *attr, int64_t lo,
                           int cap, int64_t *dst, int *count, cnv_err *e)
{
    const int64_t *v;
    int cnt;
    cnv_status st = cnv_attr_get_ints(n, attr, &v, &cnt, e);
    if (st != CNV_OK)
        return st;
    if (cnt > cap)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "%s has %d values, at most %d are supported", attr, cnt, cap);
    for (int i = 0; i < cnt; i++) {
        if (v[i] < lo)
            return cnv_fail(e, CNV_ERR_FORMAT,
                            "%s[%d] = %lld, must be >= %lld",
                            attr, i, (long long)v[i], (long long)lo);
        if (v[i] > INT32_MAX)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                            "%s[%d] = %lld is too large", attr, i, (long long)v[i]);
        dst[i] = v[i];
    }
    *count = cnt;
    return CNV_OK;
}

static cnv_status conv_parse(const cnv_node *n, void *params, int64_t opset,
                             cnv_err *e)
{
    (void)opset; /* opset 1 and 11 differ only in wording */
    conv_params *p = params;
    cnv_status st;
    if ((st = get_ints(n, "kernel_shape", 1, CNV_MAX_DIMS, p->kernel, &p->n_kernel, e)) ||
        (st = get_ints(n, "strides", 1, CNV_MAX_DIMS, p->strides, &p->n_strides, e)) ||
        (st = get_ints(n, "dilations", 1, CNV_MAX_DIMS, p->dilations, &p->n_dilations, e)) ||
        (st = get_ints(n, "pads", 0, 2 * CNV_MAX_DIMS, p->pads, &p->n_pads, e)))
        return st;
    if ((st = cnv_attr_get_int(n, "group", 1, &p->group, e)))
        return st;
    if (p->group < 1 || p->group > INT32_MAX)
        return cnv_fail(e, CNV_ERR_FORMAT, "group = %lld, must be in [1, 2^31)",
                        (long long)p->group);
    /* with auto_pad set, a pads attribute (some exporters write zeros) is
     * ignored: auto_pad decides */
    return cnv_auto_pad_parse(n, &p->auto_pad, e);
}

/* Where F(4x4,3x3) beats im2col + GEMM, from single-thread timings of
 * each distinct 3x3 stride-1 layer of ResNet-18/50, VGG-16, SqueezeNet
 * 1.1, DenseNet-121 and GoogLeNet at 224x224, forward and forward +
 * backward to the input (docs/PERFORMANCE.md, "Winograd 3x3"). Every
 * pass transforms the weights anew (36 x M x C floats written, then read
 * by the GEMMs), a cost per call that only enough tiles repay:
 * - with 36 tiles or more (outputs of 24x24 and up) it was 1.2-3.4x as
 *   fast on every layer of 24 or more input channels; with 16 (SqueezeNet's
 *   expand3x3 at 55x55) 0.9x: the GEMMs' depth C is too short for the
 *   transforms to pay;
 * - 14x14 outputs (16 tiles): 1.2-2x where the transformed weights stay
 *   within ~4 MB (GoogLeNet 96x208 1.44x, 112x224 1.17x; DenseNet 128x32
 *   2x), 0.8-0.9x above (GoogLeNet 128x256, ResNet 256x256); 13x13
 *   (SqueezeNet, 16 tiles of which a third is padding) 0.88-0.95x, hence
 *   the 3/4 of the tiles' outputs that must be real;
 * - 7x7 (4 tiles): 0.3-0.9x everywhere. */
static int wino_pays(int64_t c, int64_t m, int64_t oh, int64_t ow)
{
    int64_t tiles = ((oh + 3) / 4) * ((ow + 3) / 4);
    if (c < 24)
        return 0;
    if (tiles >= 36)
        return 1;
    return tiles >= 16 && oh * ow >= 12 * tiles && c * m <= 28 * 1024;
}

/* Tiles per pass of the transforms and products (0: all): as many as
 * keep a pass's V and products within 1 MiB, so that the GEMMs find them
 * in cache. VGG-16's 64- and 128-channel layers at 224 and 112: 2.0-3.4x
 * the im2col speed in passes of 16-48 tiles, 1.3-2.1x in one pass. Below
 * 16 tiles a pass (more than 384 channels in and out) the GEMMs would
 * reread the transformed weights too often: VGG-16's and ResNet's
 * 256x256 and 512x512 layers ran faster in one pass. */
static int64_t wino_block(int64_t in, int64_t out)
{
    int64_t b = ((int64_t)1 << 20) / (36 * 4 * (in + out));
    return b < 16 ? 0 : b / 16 * 16;
}

static cnv_status conv_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size,
                            cnv_err *e)
{
    const conv_params *p = c->params;
    const cnv_val *x = c->in[0], *w = c->in[1], *b = c->node->n_in > 2 ? c->in[2] : NULL;
    char sx[96], sw[96], sb[96];
    cnv_shape_str(&x->shape, sx, sizeof sx);
    cnv_shape_str(&w->shape, sw, sizeof sw);

    if (x->shape.ndim != 4 || w->shape.ndim != 4) {
        int spatial = x->shape.ndim >= 3 ? x->shape.ndim - 2 : w->shape.ndim - 2;
        if (spatial >= 1 && spatial != 2)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                            "only 2-D convolution is supported, got a %d-D one (X %s, W %s)",
                            spatial, sx, sw);
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "X and W must be 4-D, got X %s, W %s", sx, sw);
    }
    if ((p->n_kernel && p->n_kernel != 2) || (p->n_strides && p->n_strides != 2) ||
        (p->n_dilations && p->n_dilations != 2) || (p->n_pads && p->n_pads != 4))
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "only 2-D convolution is supported; X is %s but kernel_shape/strides/dilations/pads have %d/%d/%d/%d values",
                        sx, p->n_kernel, p->n_strides, p->n_dilations, p->n_pads);

    int64_t N = x->shape.dims[0], C = x->shape.dims[1];
    int64_t H = x->shape.dims[2], W = x->shape.dims[3];
    int64_t M = w->shape.dims[0], kh = w->shape.dims[2], kw = w->shape.dims[3];
    for (int i = 0; i < 4; i++)
        if (x->shape.dims[i] < 1 || w->shape.dims[i] < 1)
            return cnv_fail(e, CNV_ERR_SHAPE,
                            "empty or unknown dimension in X %s or W %s", sx, sw);
    if (C % p->group != 0 || M % p->group != 0)
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "group %lld does not divide the input channels %lld (X %s) and output channels %lld (W %s)",
                        (long long)p->group, (long long)C, sx, (long long)M, sw);
    int64_t cg = C / p->group;
    if (w->shape.dims[1] != cg)
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "W %s has %lld input channels, X %s with group %lld needs %lld",
                        sw, (long long)w->shape.dims[1], sx, (long long)p->group,
                        (long long)cg);
    if (p->n_kernel && (p->kernel[0] != kh || p->kernel[1] != kw))
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "kernel_shape %lldx%lld does not match W %s",
                        (long long)p->kernel[0], (long long)p->kernel[1], sw);
    if (b) {
        cnv_shape_str(&b->shape, sb, sizeof sb);
        if (b->shape.ndim != 1 || b->shape.dims[0] != M)
            return cnv_fail(e, CNV_ERR_SHAPE,
                            "B %s must be (%lld), the output channels of W %s",
                            sb, (long long)M, sw);
    }

    int64_t sh = p->n_strides ? p->strides[0] : 1, sww = p->n_strides ? p->strides[1] : 1;
    int64_t dh = p->n_dilations ? p->dilations[0] : 1, dw = p->n_dilations ? p->dilations[1] : 1;
    /* ONNX order: top, left, bottom, right */
    int64_t pt = 0, pl = 0, pb = 0, pr = 0;
    if (p->auto_pad == CNV_PAD_NOTSET && p->n_pads) {
        pt = p->pads[0];
        pl = p->pads[1];
        pb = p->pads[2];
        pr = p->pads[3];
    }
    int64_t oh, ow;
    if (!cnv_window_axis(p->auto_pad, H, kh, sh, dh, 0, &pt, &pb, &oh) ||
        !cnv_window_axis(p->auto_pad, W, kw, sww, dw, 0, &pl, &pr, &ow))
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "kernel %lldx%lld (dilations %lld,%lld) is larger than the padded input: X %s, pads %lld,%lld,%lld,%lld",
                        (long long)kh, (long long)kw, (long long)dh, (long long)dw, sx,
                        (long long)pt, (long long)pl, (long long)pb, (long long)pr);

    /* Every GEMM dimension and leading dimension must be a valid BLAS int
     * and every buffer's count representable. */
    int64_t P, K, out_n, t;
    if (!cnv_mul_i64(oh, ow, &P) || !cnv_mul_i64(cg, kh, &t) || !cnv_mul_i64(t, kw, &K) ||
        !cnv_mul_i64(N, M, &t) || !cnv_mul_i64(t, P, &out_n) || out_n > CNV_MAX_ELEMS ||
        !cnv_mul_i64(K, P, &t) || t > CNV_MAX_ELEMS || !cnv_mul_i64(M, K, &t) ||
        t > CNV_MAX_ELEMS || cnv_shape_count(&x->shape) > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "X %s with W %s gives buffers too large (output %lldx%lldx%lldx%lld)",
                        sx, sw, (long long)N, (long long)M, (long long)oh, (long long)ow);

    conv_geom *g = (conv_geom *)c->geom;
    memset(g, 0, sizeof *g);
    g->ig = (cnv_im2col_geom){ .c = cg, .h = H, .w = W, .kh = kh, .kw = kw,
                               .sh = sh, .sw = sww, .dh = dh, .dw = dw,
                               .pt = pt, .pl = pl, .oh = oh, .ow = ow };
    g->n = N;
    g->c = C;
    g->m = M;
    g->group = p->group;
    g->mg = M / p->group;
    g->k = K;
    g->p = P;
    g->pointwise = kh == 1 && kw == 1 && sh == 1 && sww == 1 &&
                   pt == 0 && pl == 0 && pb == 0 && pr == 0;

    g->direct = cg == 1 && p->group > 1 && !cnv_conv_no_direct && cnv_dw_scratch(&g->ig) >= 0;
    g->simd = cnv_simd_level();

    /* Many small units (a batch, depthwise groups) split evenly as they
     * are; one large unit is split inside (its GEMM and layout loops). */
    int64_t units = N * p->group, th = c->threads > 1 ? c->threads : 1;
    g->by_unit = th > 1 && units >= th && (units % th == 0 || units >= 4 * th);

    g->wino = kh == 3 && kw == 3 && sh == 1 && sww == 1 && dh == 1 && dw == 1 && p->group == 1 &&
              !cnv_conv_no_winograd && wino_pays(C, M, oh, ow) &&
              cnv_wino_geom_init(&g->wf, C, M, H, W, oh, ow, pt, pl, wino_block(C, M)) &&
              cnv_wino_geom_init(&g->wb, M, C, oh, ow, H, W, 2 - pt, 2 - pl, wino_block(M, C));

    cnv_shape4(&c->out[0]->shape, N, M, oh, ow);
    *state_size = 0;
    /* each term is at most CNV_MAX_ELEMS (checked above and by
     * cnv_dw_scratch), so no overflow */
    g->unit_work = g->direct ? cnv_dw_scratch(&g->ig) : (g->pointwise ? 0 : K * P) + g->mg / 2 * (K + P);
    size_t bytes;
    if (!cnv_mul_size((size_t)g->unit_work, sizeof(float), &bytes) ||
        !cnv_mul_size(bytes, g->by_unit || g->direct ? (size_t)th : 1, work_size))
        return cnv_fail(e, CNV_ERR_NOMEM, "workspace too large");
    if (g->wino) {
        /* the transformed weights, then each image's scratch; the im2col
         * path's room stays for a node whose w needs a gradient */
        int64_t img_f = cnv_wino_image_size(&g->wf), img_b = cnv_wino_image_size(&g->wb);
        g->wino_image = img_f > img_b ? img_f : img_b;
        size_t wbytes, imgs;
        if (!cnv_mul_size((size_t)g->wino_image, g->by_unit ? (size_t)th : 1, &imgs) ||
            imgs > SIZE_MAX - (size_t)cnv_wino_weights_size(&g->wf) ||
            !cnv_mul_size(imgs + (size_t)cnv_wino_weights_size(&g->wf), sizeof(float), &wbytes))
            return cnv_fail(e, CNV_ERR_NOMEM, "workspace too large");
        if (wbytes > *work_size)
            *work_size = wbytes;
    }
    return CNV_OK;
}

/* y[0..n) = v, in blocks of 8 so that it is vectorized (see elementwise.c) */
static void fill(float *restrict y, float v, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            y[i + j] = v;
    for (; i < n; i++)
        y[i] = v;
}

/* One image n and group gr of one node, run on `team` (NULL: on the
 * calling thread alone) with its workspace at `work`. The loops below
 * split over the team through cnv_team_run, which takes a function and a
 * pointer: this struct is both the job and its arguments. */
typedef struct conv_unit {
    const cnv_op_ctx *c;
    const conv_geom *g;
    cnv_team *team;
    const float *x;  /* the group's input channels of image n */
    const float *w;  /* the group's filters */
    const float *b;  /* the group's biases, or NULL */
    float *y;        /* the group's output channels of image n */
    float *y_epi;    /* the same in the fused epilogue's output, or NULL */
    const float *dy; /* the group's output gradient */
    float *dx;       /* the group's input gradient channels */
    float *col;      /* column matrix (K, P) */
    float *gather;   /* room for mg / 2 rows of w and of dy */
    int store;       /* dx holds garbage: overwrite it */
} conv_unit;

static conv_unit unit_at(const cnv_op_ctx *c, int64_t n, int64_t gr, float *work, cnv_team *team)
{
    const conv_geom *g = (const conv_geom *)c->geom;
    const cnv_val *bv = c->node->n_in > 2 ? c->in[2] : NULL;
    int64_t in_off = (n * g->c + gr * g->ig.c) * g->ig.h * g->ig.w;
    int64_t out_off = (n * g->m + gr * g->mg) * g->p;
    return (conv_unit){
        .c = c, .g = g, .team = team,
        .x = c->in[0]->data + in_off,
        .w = c->in[1]->data + gr * g->mg * g->k,
        .b = bv ? bv->data + gr * g->mg : NULL,
        .y = c->out[0]->data + out_off,
        .y_epi = c->epilogue.fn ? c->epilogue.out->data + out_off : NULL,
        .dy = c->out[0]->grad ? c->out[0]->grad + out_off : NULL,
        .dx = c->in[0]->grad ? c->in[0]->grad + in_off : NULL,
        .col = work,
        .gather = work + (g->pointwise ? 0 : g->k * g->p),
        .store = cnv_grad_store(c, 0),
    };
}

/* The GEMM hooks of the forward pass, on one block of the unit's output. */
static void bias_block(void *arg, int m0, int m1, int n0, int n1)
{
    const conv_unit *u = arg;
    for (int64_t m = m0; m < m1; m++)
        fill(u->y + m * u->g->p + n0, u->b[m], n1 - n0);
}

static void epilogue_block(void *arg, int m0, int m1, int n0, int n1)
{
    const conv_unit *u = arg;
    const cnv_epilogue *ep = &u->c->epilogue;
    for (int64_t m = m0; m < m1; m++)
        ep->fn(u->y + m * u->g->p + n0, u->y_epi + m * u->g->p + n0, n1 - n0, ep->geom);
}

static void im2col_rows(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const conv_unit *u = arg;
    cnv_im2col_rows(&u->g->ig, u->x, u->col, lo, hi);
}

static void col2im_rows(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const conv_unit *u = arg;
    cnv_col2im_rows(&u->g->ig, u->col, u->dx, lo, hi, u->store);
}

/* The columns of the unit's input: the input itself for a pointwise conv. */
static const float *unit_columns(conv_unit *u)
{
    if (u->g->pointwise)
        return u->x;
    cnv_team_run(u->team, u->g->ig.c * u->g->ig.kh, im2col_rows, u);
    return u->col;
}

/* y = w * im2col(x) + b, and the fused epilogue of y into its output. Each
 * thread writes the bias into its block of y just before its GEMM adds to
 * it (beta = 1: that replaces both the pass with which the BLAS clears C
 * for beta = 0 and a pass adding the bias) and applies the epilogue right
 * after, while the block is in its cache. */
static void unit_forward(conv_unit *u)
{
    const conv_geom *g = u->g;
    const int Mg = (int)g->mg, K = (int)g->k, P = (int)g->p;
    const float *col = unit_columns(u);
    cnv_gemm_hooks h = { u->b ? bias_block : NULL, u->y_epi ? epilogue_block : NULL, u };
    cnv_sgemm_hooked(u->team, 0, 0, Mg, P, K, 1.0f, u->w, K, col, P, u->b ? 1.0f : 0.0f, u->y, P, &h);
}

static void forward_unit(const cnv_op_ctx *c, int64_t n, int64_t gr, float *work, cnv_team *team)
{
    conv_unit u = unit_at(c, n, gr, work, team);
    unit_forward(&u);
}

/* ---------------------------------------------------------- depthwise */

/* Thread tid's planes in the workspace (NULL: the loops need none). */
static float *thread_scratch(const cnv_op_ctx *c, int tid)
{
    const conv_geom *g = (const conv_geom *)c->geom;
    return c->work ? c->work + tid * g->unit_work : NULL;
}

/* Output channels [lo, hi) of the batch (n * M + m), each the direct
 * correlation of its group's one input channel, then the fused epilogue. */
static void direct_forward(void *arg, int64_t lo, int64_t hi, int tid)
{
    const cnv_op_ctx *c = arg;
    const conv_geom *g = (const conv_geom *)c->geom;
    const cnv_val *bv = c->node->n_in > 2 ? c->in[2] : NULL;
    const cnv_epilogue *ep = &c->epilogue;
    int64_t hw = g->ig.h * g->ig.w;
    float *scratch = thread_scratch(c, tid);
    for (int64_t i = lo; i < hi; i++) {
        int64_t n = i / g->m, m = i % g->m;
        float *y = c->out[0]->data + i * g->p;
        cnv_dw_forward(&g->ig, g->simd, c->in[0]->data + (n * g->c + m / g->mg) * hw, c->in[1]->data + m * g->k,
                       bv ? bv->data[m] : 0.0f, y, scratch);
        if (ep->fn)
            ep->fn(y, ep->out->data + i * g->p, g->p, ep->geom);
    }
}

/* Input channels [lo, hi) of the batch (n * C + gr): each gathers the
 * gradient of its group's mg output channels. */
static void direct_backward_x(void *arg, int64_t lo, int64_t hi, int tid)
{
    const cnv_op_ctx *c = arg;
    const conv_geom *g = (const conv_geom *)c->geom;
    int64_t hw = g->ig.h * g->ig.w;
    float *scratch = thread_scratch(c, tid);
    for (int64_t i = lo; i < hi; i++) {
        int64_t n = i / g->c, m0 = i % g->c * g->mg;
        cnv_dw_backward_x(&g->ig, g->simd, c->out[0]->grad + (n * g->m + m0) * g->p, g->p,
                          c->in[1]->data + m0 * g->k, g->mg, c->in[0]->grad + i * hw, cnv_grad_store(c, 0), scratch);
    }
}

/* Filters [lo, hi): each sums its gradient over the batch. */
static void direct_backward_w(void *arg, int64_t lo, int64_t hi, int tid)
{
    const cnv_op_ctx *c = arg;
    const conv_geom *g = (const conv_geom *)c->geom;
    int64_t hw = g->ig.h * g->ig.w;
    float *scratch = thread_scratch(c, tid);
    for (int64_t m = lo; m < hi; m++) {
        float *dw = c->in[1]->grad + m * g->k;
        if (cnv_grad_store(c, 1))
            memset(dw, 0, (size_t)g->k * sizeof *dw);
        for (int64_t n = 0; n < g->n; n++)
            cnv_dw_backward_w(&g->ig, g->simd, c->in[0]->data + (n * g->c + m / g->mg) * hw,
                              c->out[0]->grad + (n * g->m + m) * g->p, dw, scratch);
    }
}

/* ----------------------------------------------------------- winograd */

/* Whether this run takes winograd.c: a node whose w needs a gradient
 * keeps im2col, whose column matrices the weight gradient needs anyway. */
static int use_wino(const cnv_op_ctx *c)
{
    const conv_geom *g = (const conv_geom *)c->geom;
    return g->wino && !c->in[1]->grad;
}

/* A Winograd pass of a node: forward (x to y) or backward (dy to dx). */
typedef struct wino_pass {
    const cnv_op_ctx *c;
    int backward;
    int64_t n; /* the image, for the epilogue */
} wino_pass;

/* Its transformed weights, output channels [lo, hi): the forward reads
 * w (M, C, 3, 3) as is; the backward reads it with input and output
 * channels swapped and each kernel rotated 180 degrees. */
static void wino_weights_part(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const wino_pass *wp = arg;
    const conv_geom *g = (const conv_geom *)wp->c->geom;
    const float *w = wp->c->in[1]->data;
    if (wp->backward)
        cnv_wino_weights(&g->wb, w, 9, g->c * 9, 1, wp->c->work, lo, hi);
    else
        cnv_wino_weights(&g->wf, w, g->c * 9, 9, 0, wp->c->work, lo, hi);
}

/* The fused epilogue of output channel o once its plane is final. */
static void wino_epilogue(void *arg, int64_t o)
{
    const wino_pass *wp = arg;
    const cnv_op_ctx *c = wp->c;
    const conv_geom *g = (const conv_geom *)c->geom;
    int64_t off = (wp->n * g->m + o) * g->p;
    c->epilogue.fn(c->out[0]->data + off, c->epilogue.out->data + off, g->p, c->epilogue.geom);
}

static void wino_image(const cnv_op_ctx *c, int backward, int64_t n, cnv_team *team, float *scratch)
{
    const conv_geom *g = (const conv_geom *)c->geom;
    const float *u = c->work;
    int64_t hw = g->ig.h * g->ig.w;
    if (backward) {
        cnv_wino_image(&g->wb, team, u, c->out[0]->grad + n * g->m * g->p, NULL, c->in[0]->grad + n * g->c * hw,
                       cnv_grad_store(c, 0), NULL, NULL, scratch);
        return;
    }
    const cnv_val *bv = c->node->n_in > 2 ? c->in[2] : NULL;
    wino_pass wp = { c, 0, n };
    cnv_wino_image(&g->wf, team, u, c->in[0]->data + n * g->c * hw, bv ? bv->data : NULL,
                   c->out[0]->data + n * g->m * g->p, 1, c->epilogue.fn ? wino_epilogue : NULL, &wp, scratch);
}

/* Images [lo, hi), each on one thread with its own scratch. */
static void wino_images(void *arg, int64_t lo, int64_t hi, int tid)
{
    const wino_pass *wp = arg;
    const conv_geom *g = (const conv_geom *)wp->c->geom;
    float *scratch = wp->c->work + cnv_wino_weights_size(&g->wf) + tid * g->wino_image;
    for (int64_t n = lo; n < hi; n++)
        wino_image(wp->c, wp->backward, n, NULL, scratch);
}

/* The weights are transformed at every pass, not kept: the caller may
 * rewrite them between runs (cnv_model_param). Each image's result is the
 * same whether the team splits the batch or each image. */
static void wino_run(const cnv_op_ctx *c, int backward)
{
    const conv_geom *g = (const conv_geom *)c->geom;
    wino_pass wp = { c, backward, 0 };
    cnv_team_run(c->team, backward ? g->c : g->m, wino_weights_part, &wp);
    if (g->by_unit) {
        cnv_team_run(c->team, g->n, wino_images, &wp);
        return;
    }
    for (int64_t n = 0; n < g->n; n++)
        wino_image(c, backward, n, c->team, c->work + cnv_wino_weights_size(&g->wf));
}

// y (N,M,OH,OW) = conv(x (N,C,H,W), w (M,C/group,kh,kw)) + b (M)
static void conv_forward(cnv_op_ctx *c)
{
    const conv_geom *g = (const conv_geom *)c->geom;
    if (g->direct) {
        cnv_team_run(c->team, g->n * g->m, direct_forward, c);
        return;
    }
    if (use_wino(c)) {
        wino_run(c, 0);
        return;
    }
    cnv_run_units(c, g->n, g->group, g->by_unit, (size_t)g->unit_work, forward_unit);
}

/* Whether r[0..n) is all zero (-0 included). The blocks of 16 have no
 * early exit, so that they vectorize; a NaN is not zero. */
static int row_is_zero(const float *r, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        uint32_t any = 0;
        for (int j = 0; j < 16; j++) {
            uint32_t bits;
            memcpy(&bits, &r[i + j], sizeof bits);
            any |= bits << 1; /* drops the sign */
        }
        if (any)
            return 0;
    }
    for (; i < n; i++)
        if (r[i] != 0.0f)
            return 0;
    return 1;
}

/* out (K,P) = w^T dy + beta out, for w (Mg,K) and dy (Mg,P). A row of dy
 * that is all zero adds nothing, and a backward pass from one class score
 * leaves all but one row zero in the last convolution of a classifier
 * (SqueezeNet: 1 of 1000 channels), and channels that a ReLU switched off
 * for this image are zero too. So when at most half the rows are non-zero,
 * they are gathered with their rows of w into `gather` (room for Mg / 2 of
 * each) and the product runs over them alone. Skipping the zero rows
 * changes nothing unless w holds an infinity or NaN (0 * inf). */
static void wt_dy(cnv_team *team, int Mg, int K, int P, const float *w, const float *dy, float beta,
                  float *out, float *gather)
{
    const int half = Mg / 2;
    int nz = 0;
    for (int m = 0; m < Mg && nz <= half; m++)
        nz += !row_is_zero(dy + (int64_t)m * P, P);
    if (nz > half) {
        cnv_sgemm(team, 1, 0, K, P, Mg, 1.0f, w, K, dy, P, beta, out, P);
        return;
    }
    if (nz == 0) { /* the product is zero */
        if (beta == 0.0f)
            memset(out, 0, (size_t)K * (size_t)P * sizeof *out);
        return;
    }
    float *gw = gather, *gdy = gather + (int64_t)half * K;
    for (int m = 0, k = 0; m < Mg; m++) {
        const float *r = dy + (int64_t)m * P;
        if (row_is_zero(r, P))
            continue;
        memcpy(gw + (int64_t)k * K, w + (int64_t)m * K, (size_t)K * sizeof *gw);
        memcpy(gdy + (int64_t)k * P, r, (size_t)P * sizeof *gdy);
        k++;
    }
    cnv_sgemm(team, 1, 0, K, P, nz, 1.0f, gw, K, gdy, P, beta, out, P);
}

/* dx (+)= col2im(w^T dy): straight into dx for a pointwise conv. */
static void unit_backward_dx(conv_unit *u)
{
    const conv_geom *g = u->g;
    const int Mg = (int)g->mg, K = (int)g->k, P = (int)g->p;
    if (g->pointwise) {
        wt_dy(u->team, Mg, K, P, u->w, u->dy, u->store ? 0.0f : 1.0f, u->dx, u->gather);
        return;
    }
    wt_dy(u->team, Mg, K, P, u->w, u->dy, 0.0f, u->col, u->gather);
    cnv_team_run(u->team, g->ig.h, col2im_rows, u);
}

static void backward_dx_unit(const cnv_op_ctx *c, int64_t n, int64_t gr, float *work, cnv_team *team)
{
    conv_unit u = unit_at(c, n, gr, work, team);
    unit_backward_dx(&u);
}

static void bias_grad(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = arg;
    const conv_geom *g = (const conv_geom *)c->geom;
    const float *dy = c->out[0]->grad;
    float *db = c->in[2]->grad;
    for (int64_t m = lo; m < hi; m++) {
        double s = 0.0; /* sums up to N*OH*OW terms */
        for (int64_t n = 0; n < g->n; n++) {
            const float *r = dy + (n * g->m + m) * g->p;
            for (int64_t i = 0; i < g->p; i++)
                s += r[i];
        }
        db[m] = (float)s + (cnv_grad_store(c, 2) ? 0.0f : db[m]);
    }
}

/* dx += conv^T(dy, w); dw += dy * im2col(x)^T; db += sum of dy over N,OH,OW */
static void conv_backward(cnv_op_ctx *c)
{
    const conv_geom *g = (const conv_geom *)c->geom;
    const cnv_val *bv = c->node->n_in > 2 ? c->in[2] : NULL;
    const int Mg = (int)g->mg, K = (int)g->k, P = (int)g->p;
    float *dw = c->in[1]->grad;

    if (bv && bv->grad)
        cnv_team_run(c->team, g->m, bias_grad, c);
    if (g->direct) {
        if (c->in[0]->grad)
            cnv_team_run(c->team, g->n * g->c, direct_backward_x, c);
        if (dw)
            cnv_team_run(c->team, g->m, direct_backward_w, c);
        return;
    }
    if (c->in[0]->grad && use_wino(c))
        wino_run(c, 1);
    else if (c->in[0]->grad)
        cnv_run_units(c, g->n, g->group, g->by_unit, (size_t)g->unit_work, backward_dx_unit);
    /* Every image adds to the same dw: the units go one after another,
     * each split over the team. */
    for (int64_t n = 0; dw && n < g->n; n++) {
        for (int64_t gr = 0; gr < g->group; gr++) {
            conv_unit u = unit_at(c, n, gr, c->work, c->team);
            const float *col = unit_columns(&u);
            /* with grad_store the first image's product overwrites */
            float beta = cnv_grad_store(c, 1) && n == 0 ? 0.0f : 1.0f;
            cnv_sgemm(c->team, 0, 1, Mg, K, P, 1.0f, u.dy, P, col, P, beta, dw + gr * g->mg * g->k, K);
        }
    }
}

/* 2 per multiply-add: N * M * P outputs of K products each. */
static double conv_flops(const cnv_op_ctx *c)
{
    const conv_geom *g = (const conv_geom *)c->geom;
    return 2.0 * (double)g->n * (double)g->m * (double)g->p * (double)g->k;
}

const cnv_op cnv_op_conv = {
    .type = "Conv",
    .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE | CNV_OP_TAKES_EPILOGUE | CNV_OP_FEATURES,
    .params_size = sizeof(conv_params),
    .parse = conv_parse,
    .plan = conv_plan,
    .forward = conv_forward,
    .backward = conv_backward,
    .flops = conv_flops,
};
