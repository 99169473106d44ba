/* Pad in constant mode (ONNX), any rank: pads from the attribute (opset < 11)
 * or from a constant int64 input (opset >= 11); negative pads crop.
 * Backward crops the gradient (and sums the padding's share into an optional
 * constant_value input). */
#include <stdio.h>
#include <string.h>

#include "engine/op.h"

typedef struct pad_params {
    int64_t opset;
    int mode_constant;       /* 0: reflect/edge/wrap, rejected at plan */
    char mode[16];           /* for the message */
    int npads;               /* opset < 11: attribute values */
    int64_t pads[2 * CNV_MAX_DIMS];
    float value;             /* opset < 11 */
} pad_params;

/* Output coordinate o maps to input coordinate o - begin[d]. Rank 0 is
 * held as rank 1 of one element. */
typedef struct pad_geom {
    int r;
    int64_t in[CNV_MAX_DIMS], out[CNV_MAX_DIMS], begin[CNV_MAX_DIMS];
    float value;
    int value_input; /* constant_value comes from in[2] at run time */
} pad_geom;
_Static_assert(sizeof(pad_geom) <= CNV_GEOM_SIZE, "pad_geom fits geom");

/* Larger pads than this are surely a malformed file; the bound also keeps
 * in + begin + end from overflowing. */
#define PAD_MAX ((int64_t)INT32_MAX)

static cnv_status pad_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    pad_params *p = params;
    p->opset = opset;
    const char *mode;
    cnv_status st = cnv_attr_get_string(n, "mode", "constant", &mode, e);
    if (st != CNV_OK)
        return st;
    p->mode_constant = strcmp(mode, "constant") == 0;
    snprintf(p->mode, sizeof p->mode, "%s", mode);
    if (opset >= 11)
        return CNV_OK;
    if ((st = cnv_attr_get_float(n, "value", 0.0f, &p->value, e)) != CNV_OK)
        return st;
    /* Pad-1 called the attribute paddings; Pad-2 renamed it pads */
    const char *key = cnv_attr_find(n, "pads") ? "pads" : "paddings";
    const int64_t *v;
    int cnt;
    if ((st = cnv_attr_get_ints(n, key, &v, &cnt, e)) != CNV_OK)
        return st;
    if (!v)
        return cnv_fail(e, CNV_ERR_FORMAT, "attribute pads is required");
    if (cnt % 2 || cnt > 2 * CNV_MAX_DIMS)
        return cnv_fail(e, CNV_ERR_FORMAT, "pads has %d values", cnt);
    p->npads = cnt;
    memcpy(p->pads, v, (size_t)cnt * sizeof *v);
    return CNV_OK;
}

static cnv_status pad_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size, cnv_err *e)
{
    const cnv_node *n = c->node;
    const pad_params *p = c->params;
    const cnv_shape *xs = &c->in[0]->shape;
    char buf[128];
    if (!p->mode_constant)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "mode '%s' is not supported (only constant)", p->mode);
    pad_geom *g = (pad_geom *)c->geom;
    memset(g, 0, sizeof *g);
    const int64_t *pads = p->pads;
    int npads = p->npads;
    g->value = p->value;
    if (p->opset >= 11) {
        const cnv_val *pv = n->n_in > 1 ? c->in[1] : NULL;
        if (!pv)
            return cnv_fail(e, CNV_ERR_FORMAT, "the pads input is missing");
        if (!pv->is_const || !pv->i64)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                            "pads must be a constant int64 tensor");
        if (pv->count > 2 * CNV_MAX_DIMS)
            return cnv_fail(e, CNV_ERR_SHAPE, "pads has %lld values", (long long)pv->count);
        pads = pv->i64;
        npads = (int)pv->count;
        if (n->n_in > 3 && c->in[3])
            return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                            "the axes input is not supported");
        const cnv_val *cv = n->n_in > 2 ? c->in[2] : NULL;
        if (cv) {
            if (cv->count != 1 || (cv->is_const && !cv->data))
                return cnv_fail(e, CNV_ERR_UNSUPPORTED, "constant_value must be one float, got %s",
                                cnv_shape_str(&cv->shape, buf, sizeof buf));
            g->value_input = 1;
        }
    }
    int r = xs->ndim;
    if (npads != 2 * r)
        return cnv_fail(e, CNV_ERR_SHAPE, "%d pads for input %s of rank %d (expected %d)", npads,
                        cnv_shape_str(xs, buf, sizeof buf), r, 2 * r);
    cnv_shape *ys = &c->out[0]->shape;
    *ys = *xs;
    for (int d = 0; d < r; d++) {
        int64_t b = pads[d], en = pads[d + r];
        if (b < -PAD_MAX || b > PAD_MAX || en < -PAD_MAX || en > PAD_MAX || xs->dims[d] < 0 ||
            xs->dims[d] > PAD_MAX)
            return cnv_fail(e, CNV_ERR_SHAPE, "pads (%lld, %lld) out of range", (long long)b,
                            (long long)en);
        int64_t o = xs->dims[d] + b + en;
        if (o < 1)
            return cnv_fail(e, CNV_ERR_SHAPE, "pads (%lld, %lld) crop dim %d of input %s to %lld",
                            (long long)b, (long long)en, d, cnv_shape_str(xs, buf, sizeof buf),
                            (long long)o);
        ys->dims[d] = o;
        g->in[d] = xs->dims[d];
        g->out[d] = o;
        g->begin[d] = b;
    }
    int64_t cnt = cnv_shape_count(ys);
    if (cnt < 1 || cnt > CNV_MAX_ELEMS || cnv_shape_count(xs) < 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "output %s is empty or too large",
                        cnv_shape_str(ys, buf, sizeof buf));
    if (r == 0) {
        g->r = 1;
        g->in[0] = g->out[0] = 1;
    } else {
        g->r = r;
    }
    *state_size = 0;
    *work_size = 0;
    return CNV_OK;
}

/* Walks the output row by row (a row = the last dim). For each row, *src is
 * the offset of the matching input row, or -1 when the row lies in the
 * padding. idx is the row's multi-index over dims 0..r-2. */
static int64_t src_row(const pad_geom *g, const int64_t *idx)
{
    int64_t off = 0;
    for (int d = 0; d < g->r - 1; d++) {
        int64_t i = idx[d] - g->begin[d];
        if (i < 0 || i >= g->in[d])
            return -1;
        off = off * g->in[d] + i;
    }
    return off * g->in[g->r - 1];
}

static void next_row(const pad_geom *g, int64_t *idx)
{
    for (int d = g->r - 2; d >= 0; d--) {
        if (++idx[d] < g->out[d])
            return;
        idx[d] = 0;
    }
}

/* x is in[...], y is out[...]. */
static void pad_forward(cnv_op_ctx *c)
{
    const pad_geom *g = (const pad_geom *)c->geom;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    float v = g->value_input ? c->in[2]->data[0] : g->value;
    int64_t ow = g->out[g->r - 1], iw = g->in[g->r - 1], b = g->begin[g->r - 1];
    int64_t rows = c->out[0]->count / ow, idx[CNV_MAX_DIMS] = {0};
    for (int64_t row = 0; row < rows; row++, next_row(g, idx)) {
        float *yr = y + row * ow;
        int64_t s = src_row(g, idx);
        for (int64_t o = 0; o < ow; o++) {
            int64_t i = o - b;
            yr[o] = s >= 0 && i >= 0 && i < iw ? x[s + i] : v;
        }
    }
}

/* dx += dy cropped back; dvalue += sum of dy over the padding. */
static void pad_backward(cnv_op_ctx *c)
{
    const pad_geom *g = (const pad_geom *)c->geom;
    float *dx = c->in[0]->grad;
    float *dv = g->value_input ? c->in[2]->grad : NULL;
    if (!dx && !dv)
        return;
    const float *dy = c->out[0]->grad;
    int64_t ow = g->out[g->r - 1], iw = g->in[g->r - 1], b = g->begin[g->r - 1];
    int64_t rows = c->out[0]->count / ow, idx[CNV_MAX_DIMS] = {0};
    double pad_sum = 0.0;
    for (int64_t row = 0; row < rows; row++, next_row(g, idx)) {
        const float *dyr = dy + row * ow;
        int64_t s = src_row(g, idx);
        for (int64_t o = 0; o < ow; o++) {
            int64_t i = o - b;
            if (s >= 0 && i >= 0 && i < iw) {
                if (dx)
                    dx[s + i] += dyr[o];
            } else {
                pad_sum += dyr[o];
            }
        }
    }
    if (dv)
        dv[0] += (float)pad_sum;
}

const cnv_op cnv_op_pad = {
    .type = "Pad", .min_in = 1, .max_in = 4, .min_out = 1, .max_out = 1,
    .int_inputs = 1u << 1 | 1u << 3, /* pads, axes */
    .params_size = sizeof(pad_params), .parse = pad_parse, .plan = pad_plan,
    .forward = pad_forward, .backward = pad_backward,
};
