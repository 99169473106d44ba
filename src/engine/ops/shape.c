/* Ops whose values exist only at plan time: Shape, Size, ConstantOfShape,
 * Range, Equal, Where. Exports use them to compute the targets of Reshape,
 * Slice and Expand from the input's size (ShuffleNet's channel shuffle);
 * the planner folds them for the planned size (cnv_op.fold), so such a
 * graph plans like one with constant shapes. Their plan runs only when a
 * value depends on the image, which the engine refuses. Booleans are
 * INT64 0 and 1. */
#include <string.h>

#include "engine/op.h"

/* Plan of an op that only folds: its inputs were not known at plan time. */
static cnv_status fold_only_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    for (int k = 0; k < c->node->n_in; k++)
        if (c->in[k] && !c->in[k]->is_const)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                            "input %d depends on the image's values; %s is supported only on values known "
                            "at plan time (shapes and constants)",
                            k, c->node->op->type);
    return cnv_fail(e, CNV_ERR_UNSUPPORTED, "%s of these inputs cannot be evaluated", c->node->op->type);
}

static void no_forward(cnv_op_ctx *c)
{
    (void)c;
}

/* ---------------------------------------------------------------- Shape */

typedef struct shape_params {
    int64_t start, end; /* opset 15: a slice of the dims */
} shape_params;

static cnv_status shape_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    shape_params *p = params;
    cnv_status st = cnv_attr_get_int(n, "start", 0, &p->start, e);
    if (st == CNV_OK)
        st = cnv_attr_get_int(n, "end", INT64_MAX, &p->end, e);
    return st;
}

static int64_t clamp_axis(int64_t a, int64_t r)
{
    if (a < 0)
        a += r;
    return a < 0 ? 0 : a > r ? r : a;
}

static cnv_status shape_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    const shape_params *p = c->params;
    const cnv_shape *x = &c->in[0]->shape;
    int64_t lo = clamp_axis(p->start, x->ndim), hi = clamp_axis(p->end, x->ndim);
    if (hi < lo)
        hi = lo;
    cnv_val *y = c->out[0];
    y->shape.ndim = 1;
    y->shape.dims[0] = hi - lo;
    int64_t *v;
    cnv_status st = cnv_fold_values(c, y, 1, (void **)&v, e);
    if (st != CNV_OK)
        return st;
    for (int64_t d = lo; d < hi; d++)
        v[d - lo] = x->dims[d];
    *done = 1;
    return CNV_OK;
}

const cnv_op cnv_op_shape = {
    .type = "Shape", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_FOLD_SHAPES, .params_size = sizeof(shape_params), .parse = shape_parse,
    .plan = fold_only_plan, .forward = no_forward, .fold = shape_fold,
};

/* ----------------------------------------------------------------- Size */

static cnv_status size_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    cnv_val *y = c->out[0];
    y->shape.ndim = 0;
    int64_t *v;
    cnv_status st = cnv_fold_values(c, y, 1, (void **)&v, e);
    if (st != CNV_OK)
        return st;
    v[0] = cnv_shape_count(&c->in[0]->shape);
    *done = 1;
    return CNV_OK;
}

const cnv_op cnv_op_size = {
    .type = "Size", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_FOLD_SHAPES, .plan = fold_only_plan, .forward = no_forward, .fold = size_fold,
};

/* ------------------------------------------------------- ConstantOfShape */

/* The fill value: the `value` attribute, a one-element tensor (float 0 when
 * absent). */
typedef struct cos_params {
    int is_int;
    int64_t i;
    float f;
} cos_params;

static cnv_status cos_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    cos_params *p = params;
    const cnv_attr_def *a = cnv_attr_find(n, "value");
    if (!a)
        return CNV_OK;
    if (a->type != CNV_ATTR_TENSOR || cnv_shape_count(&a->t_shape) != 1)
        return cnv_fail(e, CNV_ERR_FORMAT, "`value` must be a one-element tensor");
    p->is_int = a->t_dtype == CNV_INT64;
    if (p->is_int)
        p->i = *(const int64_t *)a->t_data;
    else
        p->f = *(const float *)a->t_data;
    return CNV_OK;
}

/* Reads a 1-D INT64 shape input into s; every dim >= 0. */
static cnv_status shape_input(const cnv_val *v, cnv_shape *s, cnv_err *e)
{
    if (!v->i64 || v->shape.ndim != 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "the shape input must be a 1-D INT64 tensor");
    if (v->count > CNV_MAX_DIMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "rank %lld exceeds %d", (long long)v->count, CNV_MAX_DIMS);
    s->ndim = (int)v->count;
    for (int d = 0; d < s->ndim; d++) {
        if (v->i64[d] < 0)
            return cnv_fail(e, CNV_ERR_SHAPE, "dim %d is %lld", d, (long long)v->i64[d]);
        s->dims[d] = v->i64[d];
    }
    int64_t n = cnv_shape_count(s);
    if (n < 0 || n > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_SHAPE, "the shape's element count is too large");
    return CNV_OK;
}

static cnv_status cos_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    const cos_params *p = c->params;
    cnv_val *y = c->out[0];
    cnv_status st = shape_input(c->in[0], &y->shape, e);
    void *v;
    if (st == CNV_OK)
        st = cnv_fold_values(c, y, p->is_int, &v, e);
    if (st != CNV_OK)
        return st;
    for (int64_t i = 0; i < y->count; i++)
        if (p->is_int)
            ((int64_t *)v)[i] = p->i;
        else
            ((float *)v)[i] = p->f;
    *done = 1;
    return CNV_OK;
}

const cnv_op cnv_op_constantofshape = {
    .type = "ConstantOfShape", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .int_inputs = 1u << 0, .params_size = sizeof(cos_params), .parse = cos_parse,
    .plan = fold_only_plan, .forward = no_forward, .fold = cos_fold,
};

/* ---------------------------------------------------------------- Range */

static cnv_status range_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    const cnv_val *a = c->in[0], *b = c->in[1], *d = c->in[2];
    int ints = a->i64 && b->i64 && d->i64;
    if (!ints && (a->i64 || b->i64 || d->i64))
        return cnv_fail(e, CNV_ERR_SHAPE, "start, limit and delta must have one type");
    if (a->count != 1 || b->count != 1 || d->count != 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "start, limit and delta must be scalars");
    double start = ints ? (double)a->i64[0] : a->data[0], limit = ints ? (double)b->i64[0] : b->data[0],
           delta = ints ? (double)d->i64[0] : d->data[0];
    if (delta == 0.0 || delta != delta || start != start || limit != limit)
        return cnv_fail(e, CNV_ERR_SHAPE, "delta is 0 or a value is NaN");
    double steps = (limit - start) / delta;
    if (steps > (double)CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_SHAPE, "the range has too many elements");
    int64_t n = steps > 0.0 ? (int64_t)steps : 0;
    if ((double)n < steps)
        n++; /* ceil */
    cnv_val *y = c->out[0];
    y->shape.ndim = 1;
    y->shape.dims[0] = n;
    void *v;
    cnv_status st = cnv_fold_values(c, y, ints, &v, e);
    if (st != CNV_OK)
        return st;
    for (int64_t i = 0; i < n; i++)
        if (ints)
            ((int64_t *)v)[i] = a->i64[0] + i * d->i64[0];
        else
            ((float *)v)[i] = (float)(start + (double)i * delta);
    *done = 1;
    return CNV_OK;
}

const cnv_op cnv_op_range = {
    .type = "Range", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
    .int_inputs = 7u, .plan = fold_only_plan, .forward = no_forward, .fold = range_fold,
};

/* ---------------------------------------------------- Equal and Where */

/* Multidirectional broadcasting of n shapes into y; each input's element
 * strides within y (0 along broadcast dims) into st[k]. */
static cnv_status broadcast(int n, const cnv_val *const *in, cnv_shape *y, int64_t st[][CNV_MAX_DIMS],
                            cnv_err *e)
{
    y->ndim = 0;
    for (int k = 0; k < n; k++)
        if (in[k]->shape.ndim > y->ndim)
            y->ndim = in[k]->shape.ndim;
    for (int d = 0; d < y->ndim; d++)
        y->dims[d] = 1;
    for (int k = 0; k < n; k++) {
        const cnv_shape *s = &in[k]->shape;
        for (int d = 0; d < s->ndim; d++) {
            int o = d + y->ndim - s->ndim;
            if (s->dims[d] != 1 && y->dims[o] != 1 && s->dims[d] != y->dims[o])
                return cnv_fail(e, CNV_ERR_SHAPE, "input %d does not broadcast with the others", k);
            if (s->dims[d] != 1)
                y->dims[o] = s->dims[d];
        }
    }
    for (int k = 0; k < n; k++) {
        const cnv_shape *s = &in[k]->shape;
        int64_t stride = 1;
        for (int o = y->ndim - 1; o >= 0; o--) {
            int d = o - (y->ndim - s->ndim);
            int64_t len = d >= 0 ? s->dims[d] : 1;
            st[k][o] = len == 1 ? 0 : stride;
            stride *= len;
        }
    }
    return CNV_OK;
}

/* The offset into input k of output element i. */
static int64_t offset_of(const cnv_shape *y, const int64_t *st, int64_t i)
{
    int64_t off = 0;
    for (int d = y->ndim - 1; d >= 0; d--) {
        off += i % y->dims[d] * st[d];
        i /= y->dims[d];
    }
    return off;
}

static double value_at(const cnv_val *v, int64_t i)
{
    return v->i64 ? (double)v->i64[i] : (double)v->data[i];
}

static cnv_status equal_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    const cnv_val *in[2] = {c->in[0], c->in[1]};
    if (!in[0]->i64 != !in[1]->i64)
        return cnv_fail(e, CNV_ERR_SHAPE, "the inputs have different types");
    int64_t st[2][CNV_MAX_DIMS];
    cnv_val *y = c->out[0];
    cnv_status s = broadcast(2, in, &y->shape, st, e);
    int64_t *v;
    if (s == CNV_OK)
        s = cnv_fold_values(c, y, 1, (void **)&v, e);
    if (s != CNV_OK)
        return s;
    for (int64_t i = 0; i < y->count; i++) {
        int64_t a = offset_of(&y->shape, st[0], i), b = offset_of(&y->shape, st[1], i);
        v[i] = in[0]->i64 ? in[0]->i64[a] == in[1]->i64[b] : in[0]->data[a] == in[1]->data[b];
    }
    *done = 1;
    return CNV_OK;
}

const cnv_op cnv_op_equal = {
    .type = "Equal", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
    .int_inputs = 3u, .plan = fold_only_plan, .forward = no_forward, .fold = equal_fold,
};

static cnv_status where_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    const cnv_val *in[3] = {c->in[0], c->in[1], c->in[2]};
    if (!in[1]->i64 != !in[2]->i64)
        return cnv_fail(e, CNV_ERR_SHAPE, "X and Y have different types");
    int64_t st[3][CNV_MAX_DIMS];
    cnv_val *y = c->out[0];
    cnv_status s = broadcast(3, in, &y->shape, st, e);
    void *v;
    if (s == CNV_OK)
        s = cnv_fold_values(c, y, in[1]->i64 != NULL, &v, e);
    if (s != CNV_OK)
        return s;
    for (int64_t i = 0; i < y->count; i++) {
        int64_t ic = offset_of(&y->shape, st[0], i);
        int k = value_at(in[0], ic) != 0.0 ? 1 : 2;
        int64_t at = offset_of(&y->shape, st[k], i);
        if (in[1]->i64)
            ((int64_t *)v)[i] = in[k]->i64[at];
        else
            ((float *)v)[i] = in[k]->data[at];
    }
    *done = 1;
    return CNV_OK;
}

const cnv_op cnv_op_where = {
    .type = "Where", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
    .int_inputs = 7u, .plan = fold_only_plan, .forward = no_forward, .fold = where_fold,
};
