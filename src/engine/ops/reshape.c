/* Ops that change a tensor's shape but not its values: Flatten, Reshape,
 * Squeeze, Unsqueeze. The values are copied (each tensor owns its buffer
 * in the plan); on values known at plan time (shape arithmetic, weights)
 * they fold to the input's values under the new shape. */
#include <string.h>

#include "engine/op.h"
#include "engine/ops/elementwise.h"

cnv_status cnv_fold_view(cnv_op_ctx *c, int *done, cnv_err *e)
{
    size_t state = 0, work = 0;
    cnv_status st = c->node->op->plan(c, &state, &work, e);
    if (st != CNV_OK)
        return st;
    cnv_shape shape = c->out[0]->shape;
    cnv_fold_alias(c->out[0], c->in[0]);
    c->out[0]->shape = shape;
    *done = 1;
    return CNV_OK;
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
    .parse = flatten_parse, .plan = flatten_plan, .forward = cnv_copy_forward,
    .backward = cnv_copy_backward, .fold = cnv_fold_view,
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
    .parse = reshape_parse, .plan = reshape_plan, .forward = cnv_copy_forward,
    .backward = cnv_copy_backward, .fold = cnv_fold_view,
};

/* ---------------------------------------------------- Squeeze, Unsqueeze */

/* The axes: an attribute before opset 13, an optional INT64 input after. */
typedef struct axes_params {
    int n_axes;
    const int64_t *axes; /* borrowed from the node's attributes */
} axes_params;

static cnv_status axes_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    axes_params *p = params;
    if (opset >= 13)
        return CNV_OK;
    if (n->n_in > 1)
        return cnv_fail(e, CNV_ERR_FORMAT, "%s takes its axes as an attribute before opset 13", n->op->type);
    return cnv_attr_get_ints(n, "axes", &p->axes, &p->n_axes, e);
}

/* The axes as given (attribute or constant input): *n is -1 when absent. */
static cnv_status axes_of(const cnv_op_ctx *c, const int64_t **axes, int64_t *n, cnv_err *e)
{
    const axes_params *p = c->params;
    *axes = p->axes;
    *n = p->axes ? p->n_axes : -1;
    if (c->node->n_in > 1 && c->in[1]) {
        const cnv_val *v = c->in[1];
        if (!v->is_const || !v->i64)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED, "the axes must be an INT64 tensor known at plan time");
        if (v->shape.ndim > 1)
            return cnv_fail(e, CNV_ERR_SHAPE, "the axes must be 1-D");
        *axes = v->i64;
        *n = v->count;
    }
    if (*n > CNV_MAX_DIMS)
        return cnv_fail(e, CNV_ERR_SHAPE, "%lld axes: at most %d", (long long)*n, CNV_MAX_DIMS);
    return CNV_OK;
}

/* Marks each axis (negative counts from the end of rank r) in mark[];
 * fails on one out of range or given twice. */
static cnv_status mark_axes(const int64_t *axes, int64_t n, int r, unsigned char *mark, cnv_err *e)
{
    memset(mark, 0, CNV_MAX_DIMS);
    for (int64_t i = 0; i < n; i++) {
        int64_t a = axes[i] < 0 ? axes[i] + r : axes[i];
        if (a < 0 || a >= r)
            return cnv_fail(e, CNV_ERR_SHAPE, "axis %lld is out of range for rank %d", (long long)axes[i], r);
        if (mark[a])
            return cnv_fail(e, CNV_ERR_SHAPE, "axis %lld is given twice", (long long)axes[i]);
        mark[a] = 1;
    }
    return CNV_OK;
}

static cnv_status squeeze_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    const cnv_shape *x = &c->in[0]->shape;
    const int64_t *axes;
    int64_t n;
    unsigned char mark[CNV_MAX_DIMS];
    cnv_status st = axes_of(c, &axes, &n, e);
    if (st == CNV_OK && n >= 0)
        st = mark_axes(axes, n, x->ndim, mark, e);
    if (st != CNV_OK)
        return st;
    cnv_shape *y = &c->out[0]->shape;
    y->ndim = 0;
    for (int d = 0; d < x->ndim; d++) {
        int drop = n >= 0 ? mark[d] : x->dims[d] == 1; /* no axes: every 1 */
        if (drop && x->dims[d] != 1)
            return cnv_fail(e, CNV_ERR_SHAPE, "axis %d has length %lld, not 1", d, (long long)x->dims[d]);
        if (!drop)
            y->dims[y->ndim++] = x->dims[d];
    }
    return CNV_OK;
}

const cnv_op cnv_op_squeeze = {
    .type = "Squeeze", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .int_inputs = 1u << 1, /* axes */
    .params_size = sizeof(axes_params), .flags = CNV_OP_GRAD_STORE,
    .parse = axes_parse, .plan = squeeze_plan, .forward = cnv_copy_forward,
    .backward = cnv_copy_backward, .fold = cnv_fold_view,
};

static cnv_status unsqueeze_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    const cnv_shape *x = &c->in[0]->shape;
    const int64_t *axes;
    int64_t n;
    unsigned char mark[CNV_MAX_DIMS];
    cnv_status st = axes_of(c, &axes, &n, e);
    if (st != CNV_OK)
        return st;
    if (n < 0)
        return cnv_fail(e, CNV_ERR_FORMAT, "Unsqueeze needs its axes");
    if (x->ndim + n > CNV_MAX_DIMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "the output rank %lld exceeds %d", (long long)(x->ndim + n),
                        CNV_MAX_DIMS);
    int r = x->ndim + (int)n;
    if ((st = mark_axes(axes, n, r, mark, e)) != CNV_OK)
        return st;
    cnv_shape *y = &c->out[0]->shape;
    y->ndim = r;
    for (int d = 0, k = 0; d < r; d++)
        y->dims[d] = mark[d] ? 1 : x->dims[k++];
    return CNV_OK;
}

const cnv_op cnv_op_unsqueeze = {
    .type = "Unsqueeze", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .int_inputs = 1u << 1, /* axes */
    .params_size = sizeof(axes_params), .flags = CNV_OP_GRAD_STORE,
    .parse = axes_parse, .plan = unsqueeze_plan, .forward = cnv_copy_forward,
    .backward = cnv_copy_backward, .fold = cnv_fold_view,
};
