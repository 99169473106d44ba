/* Ops that change a tensor's shape but not its values: Flatten, Reshape.
 * The values are copied (each tensor owns its buffer in the plan). */
#include <string.h>

#include "engine/op.h"
#include "engine/ops/elementwise.h"

static void copy_forward(cnv_op_ctx *c)
{
    memcpy(c->out[0]->data, c->in[0]->data, (size_t)c->out[0]->count * sizeof(float));
}

/* dx += dy, or dx = dy with grad_store. */
static void copy_backward(cnv_op_ctx *c)
{
    cnv_grad_pass(c->out[0]->grad, c->in[0]->grad, c->out[0]->count, cnv_grad_store(c, 0));
}

/* -------------------------------------------------------------- Flatten */

typedef struct flatten_params {
    int64_t axis;
} flatten_params;

static cnv_status flatten_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    flatten_params *p = params;
    return cnv_attr_get_int(n, "axis", 1, &p->axis, e);
}

// (d0, ..., dk-1, dk, ..., dn-1) -> (d0*...*dk-1, dk*...*dn-1), k = axis
static cnv_status flatten_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    const flatten_params *p = c->params;
    const cnv_shape *x = &c->in[0]->shape;
    int64_t axis = p->axis < 0 ? p->axis + x->ndim : p->axis;
    if (axis < 0 || axis > x->ndim)
        return cnv_fail(e, CNV_ERR_SHAPE, "axis %lld is out of range for rank %d", (long long)p->axis,
                        x->ndim);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < x->ndim; d++)
        if (!cnv_mul_i64(d < axis ? outer : inner, x->dims[d], d < axis ? &outer : &inner))
            return cnv_fail(e, CNV_ERR_SHAPE, "the flattened size overflows");
    c->out[0]->shape.ndim = 2;
    c->out[0]->shape.dims[0] = outer;
    c->out[0]->shape.dims[1] = inner;
    return CNV_OK;
}

const cnv_op cnv_op_flatten = {
    .type = "Flatten", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .params_size = sizeof(flatten_params),
    .flags = CNV_OP_GRAD_STORE,
    .parse = flatten_parse, .plan = flatten_plan, .forward = copy_forward, .backward = copy_backward,
};

/* -------------------------------------------------------------- Reshape */

typedef struct reshape_params {
    int64_t allowzero;
    int n_shape;              /* opset < 5: the `shape` attribute */
    const int64_t *shape;     /* borrowed from the node's attributes */
} reshape_params;

static cnv_status reshape_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    reshape_params *p = params;
    cnv_status st = cnv_attr_get_int(n, "allowzero", 0, &p->allowzero, e);
    if (st == CNV_OK && opset < 5)
        st = cnv_attr_get_ints(n, "shape", &p->shape, &p->n_shape, e);
    if (st != CNV_OK)
        return st;
    if (opset >= 5 && n->n_in < 2)
        return cnv_fail(e, CNV_ERR_FORMAT, "Reshape needs its shape as a second input (opset >= 5)");
    if (opset < 5 && !p->shape)
        return cnv_fail(e, CNV_ERR_FORMAT, "Reshape needs a `shape` attribute (opset < 5)");
    return CNV_OK;
}

// 0 copies the input's dimension (unless allowzero), -1 takes what is left.
static cnv_status reshape_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    const reshape_params *p = c->params;
    const cnv_shape *x = &c->in[0]->shape;
    const int64_t *want = p->shape;
    int64_t n = p->n_shape;
    if (c->node->n_in >= 2) {
        const cnv_val *s = c->in[1];
        if (!s->is_const || !s->i64)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED, "the target shape must be a constant int64 tensor");
        if (s->shape.ndim != 1)
            return cnv_fail(e, CNV_ERR_SHAPE, "the target shape must be 1-D");
        want = s->i64;
        n = s->count;
    }
    if (n > CNV_MAX_DIMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "target rank %lld exceeds %d", (long long)n, CNV_MAX_DIMS);
    cnv_shape *y = &c->out[0]->shape;
    y->ndim = (int)n;
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < n; d++) {
        int64_t v = want[d];
        if (v == 0 && !p->allowzero) {
            if (d >= x->ndim)
                return cnv_fail(e, CNV_ERR_SHAPE, "target dim %d is 0 but the input has rank %d", d, x->ndim);
            v = x->dims[d];
        }
        if (v == -1) {
            if (infer >= 0)
                return cnv_fail(e, CNV_ERR_SHAPE, "more than one -1 in the target shape");
            infer = d;
            continue;
        }
        if (v < 0)
            return cnv_fail(e, CNV_ERR_SHAPE, "target dim %d is %lld", d, (long long)v);
        y->dims[d] = v;
        if (!cnv_mul_i64(known, v, &known))
            return cnv_fail(e, CNV_ERR_SHAPE, "the target size overflows");
    }
    int64_t total = cnv_shape_count(x);
    if (infer >= 0) {
        if (known == 0 || total % known != 0)
            return cnv_fail(e, CNV_ERR_SHAPE, "cannot infer the -1 dim: %lld elements into blocks of %lld",
                            (long long)total, (long long)known);
        y->dims[infer] = total / known;
        known = total;
    }
    if (known != total) {
        char a[128], b[128];
        return cnv_fail(e, CNV_ERR_SHAPE, "cannot reshape %s (%lld elements) to %s", cnv_shape_str(x, a, sizeof a),
                        (long long)total, cnv_shape_str(y, b, sizeof b));
    }
    return CNV_OK;
}

const cnv_op cnv_op_reshape = {
    .type = "Reshape", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .int_inputs = 1u << 1, /* shape */
    .params_size = sizeof(reshape_params),
    .flags = CNV_OP_GRAD_STORE,
    .parse = reshape_parse, .plan = reshape_plan, .forward = copy_forward, .backward = copy_backward,
};
