/* Slice and Split: parts of a tensor along its axes (ShuffleNet's channel
 * split, a crop). Each output is a strided walk over the input (strided.h);
 * backward adds each output's gradient back into its part. On values known
 * at plan time they fold. */
#include <string.h>

#include "engine/op.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/strided.h"

/* ---------------------------------------------------------------- Slice */

/* Before opset 10 starts, ends and axes are attributes; from 10 they (and
 * steps) are inputs known at plan time. */
typedef struct slice_params {
    int n_starts, n_ends, n_axes;
    const int64_t *starts, *ends, *axes; /* borrowed from the node */
} slice_params;

_Static_assert(sizeof(cnv_walk) <= CNV_GEOM_SIZE, "the walk fits geom");

static cnv_status slice_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    slice_params *p = params;
    if (opset >= 10)
        return n->n_in >= 3 ? CNV_OK : cnv_fail(e, CNV_ERR_FORMAT, "Slice needs starts and ends inputs");
    cnv_status st = cnv_attr_get_ints(n, "starts", &p->starts, &p->n_starts, e);
    if (st == CNV_OK)
        st = cnv_attr_get_ints(n, "ends", &p->ends, &p->n_ends, e);
    if (st == CNV_OK)
        st = cnv_attr_get_ints(n, "axes", &p->axes, &p->n_axes, e);
    if (st == CNV_OK && (!p->starts || !p->ends))
        st = cnv_fail(e, CNV_ERR_FORMAT, "Slice needs starts and ends (opset < 10)");
    return st;
}

/* A 1-D INT64 input known at plan time, or NULL/-1 when absent. */
static cnv_status vec_input(const cnv_op_ctx *c, int k, const char *what, const int64_t **v, int64_t *n,
                            cnv_err *e)
{
    *v = NULL;
    *n = -1;
    if (c->node->n_in <= k || !c->in[k])
        return CNV_OK;
    const cnv_val *x = c->in[k];
    if (!x->is_const || !x->i64)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "%s must be an INT64 tensor known at plan time", what);
    if (x->shape.ndim != 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "%s must be 1-D", what);
    *v = x->i64;
    *n = x->count;
    return CNV_OK;
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static cnv_status slice_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    const slice_params *p = c->params;
    const cnv_shape *x = &c->in[0]->shape;
    const int64_t *starts = p->starts, *ends = p->ends, *axes = p->axes, *steps = NULL;
    int64_t ns = p->n_starts, ne = p->n_ends, na = p->axes ? p->n_axes : -1, nst = -1;
    cnv_status st = CNV_OK;
    if (c->node->n_in >= 3) {
        if ((st = vec_input(c, 1, "starts", &starts, &ns, e)) != CNV_OK ||
            (st = vec_input(c, 2, "ends", &ends, &ne, e)) != CNV_OK ||
            (st = vec_input(c, 3, "axes", &axes, &na, e)) != CNV_OK ||
            (st = vec_input(c, 4, "steps", &steps, &nst, e)) != CNV_OK)
            return st;
    }
    if (ns != ne || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return cnv_fail(e, CNV_ERR_SHAPE, "starts, ends, axes and steps have different lengths");
    if (ns > x->ndim)
        return cnv_fail(e, CNV_ERR_SHAPE, "%lld slices for rank %d", (long long)ns, x->ndim);
    int64_t start[CNV_MAX_DIMS], step[CNV_MAX_DIMS], st_in[CNV_MAX_DIMS];
    unsigned char seen[CNV_MAX_DIMS] = {0};
    cnv_shape *y = &c->out[0]->shape;
    *y = *x;
    for (int d = 0; d < x->ndim; d++)
        start[d] = 0, step[d] = 1;
    for (int64_t i = 0; i < ns; i++) {
        int64_t a = axes ? axes[i] : i;
        if (a < 0)
            a += x->ndim;
        if (a < 0 || a >= x->ndim || seen[a])
            return cnv_fail(e, CNV_ERR_SHAPE, "axis %lld is out of range or repeated",
                            (long long)(axes ? axes[i] : i));
        seen[a] = 1;
        int64_t len = x->dims[a], s = starts[i], t = ends[i], k = steps ? steps[i] : 1;
        if (k == 0 || k == INT64_MIN)
            return cnv_fail(e, CNV_ERR_SHAPE, "step %lld on axis %lld", (long long)k, (long long)a);
        /* ONNX: negative bounds count from the end, then clamp */
        if (s < 0)
            s = s < -len ? 0 : s + len;
        if (t < 0)
            t = t < -len ? -1 : t + len;
        if (k > 0) {
            s = clamp(s, 0, len);
            t = clamp(t, 0, len);
        } else {
            s = clamp(s, 0, len - 1);
            t = clamp(t, -1, len - 1);
        }
        int64_t n = k > 0 ? (t - s + k - 1) / k : (s - t + (-k) - 1) / (-k);
        y->dims[a] = n > 0 ? n : 0;
        start[a] = s;
        step[a] = k;
    }
    int64_t stride = 1, base = 0;
    for (int d = x->ndim - 1; d >= 0; d--) {
        st_in[d] = stride * step[d];
        base += start[d] * stride;
        stride *= x->dims[d];
    }
    cnv_walk_init((cnv_walk *)c->geom, y->ndim, y->dims, st_in, base);
    return CNV_OK;
}

const cnv_op cnv_op_slice = {
    .type = "Slice", .min_in = 1, .max_in = 5, .min_out = 1, .max_out = 1,
    .int_inputs = 0x1eu, /* starts, ends, axes, steps */
    .params_size = sizeof(slice_params), .flags = CNV_OP_GRAD_STORE,
    .parse = slice_parse, .plan = slice_plan, .forward = cnv_walk_forward, .backward = cnv_walk_backward,
    .fold = cnv_walk_fold,
};

/* ---------------------------------------------------------------- Split */

/* The lengths: an attribute before opset 13, an input after; absent, equal
 * parts (opset 18: num_outputs of them, the last one smaller). */
typedef struct split_params {
    int64_t axis;
    int n_split;
    const int64_t *split; /* borrowed from the node */
} split_params;

typedef struct split_geom {
    int64_t outer, axis_len, inner;
} split_geom;
_Static_assert(sizeof(split_geom) <= CNV_GEOM_SIZE, "split_geom fits geom");

static cnv_status split_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    split_params *p = params;
    cnv_status st = cnv_attr_get_int(n, "axis", 0, &p->axis, e);
    if (st == CNV_OK && opset < 13)
        st = cnv_attr_get_ints(n, "split", &p->split, &p->n_split, e);
    return st;
}

static cnv_status split_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    const split_params *p = c->params;
    const cnv_shape *x = &c->in[0]->shape;
    int n_out = c->node->n_out;
    int64_t ax = p->axis < 0 ? p->axis + x->ndim : p->axis;
    if (ax < 0 || ax >= x->ndim)
        return cnv_fail(e, CNV_ERR_SHAPE, "axis %lld is out of range for rank %d", (long long)p->axis, x->ndim);
    const int64_t *split = p->split;
    int64_t n_split = p->split ? p->n_split : -1;
    if (c->node->n_in > 1 && c->in[1]) {
        const cnv_val *v = c->in[1];
        if (!v->is_const || !v->i64 || v->shape.ndim != 1)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED, "split must be a 1-D INT64 tensor known at plan time");
        split = v->i64;
        n_split = v->count;
    }
    int64_t len = x->dims[ax], total = 0;
    if (split && n_split != n_out)
        return cnv_fail(e, CNV_ERR_SHAPE, "%lld split lengths for %d outputs", (long long)n_split, n_out);
    int64_t part = (len + n_out - 1) / n_out; /* equal parts, the last one what is left */
    for (int k = 0; k < n_out; k++) {
        int64_t l = split ? split[k] : (len - total < part ? len - total : part);
        if (l < 0 || l > len - total)
            return cnv_fail(e, CNV_ERR_SHAPE, "the split lengths do not add up to %lld", (long long)len);
        total += l;
        c->out[k]->shape = *x;
        c->out[k]->shape.dims[ax] = l;
    }
    if (total != len)
        return cnv_fail(e, CNV_ERR_SHAPE, "the split lengths add up to %lld, not %lld", (long long)total,
                        (long long)len);
    split_geom *g = (split_geom *)c->geom;
    g->outer = g->inner = 1;
    for (int d = 0; d < ax; d++)
        g->outer *= x->dims[d];
    for (int d = (int)ax + 1; d < x->ndim; d++)
        g->inner *= x->dims[d];
    g->axis_len = len;
    return CNV_OK;
}

/* Output k is rows of len_k * inner at offset off_k in each outer block. */
static void split_forward(cnv_op_ctx *c)
{
    const split_geom *g = (const split_geom *)c->geom;
    const float *x = c->in[0]->data;
    int64_t off = 0, ax_stride = g->axis_len * g->inner;
    for (int k = 0; k < c->node->n_out; k++) {
        cnv_val *y = c->out[k];
        int64_t chunk = y->count / (g->outer ? g->outer : 1);
        for (int64_t o = 0; chunk && o < g->outer; o++)
            memcpy(y->data + o * chunk, x + o * ax_stride + off, (size_t)chunk * sizeof(float));
        off += chunk;
    }
}

static void split_backward(cnv_op_ctx *c)
{
    const split_geom *g = (const split_geom *)c->geom;
    float *dx = c->in[0]->grad;
    if (!dx)
        return;
    int64_t off = 0, ax_stride = g->axis_len * g->inner;
    for (int k = 0; k < c->node->n_out; k++) {
        const cnv_val *y = c->out[k];
        int64_t chunk = y->count / (g->outer ? g->outer : 1);
        for (int64_t o = 0; chunk && o < g->outer; o++)
            cnv_grad_pass(y->grad + o * chunk, dx + o * ax_stride + off, chunk, cnv_grad_store(c, 0));
        off += chunk;
    }
}

const cnv_op cnv_op_split = {
    .type = "Split", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1 << 16,
    .int_inputs = 1u << 1, /* split */
    .params_size = sizeof(split_params), .flags = CNV_OP_GRAD_STORE,
    .parse = split_parse, .plan = split_plan, .forward = split_forward, .backward = split_backward,
};
