/* Expand and Tile: a tensor repeated, by broadcasting to a shape (Expand)
 * or whole along each axis (Tile). Each is one strided walk over the input
 * (strided.h) with stride 0 where values repeat; backward sums the
 * gradient of every copy. The shape and repeats are INT64 values known at
 * plan time; on values known at plan time the ops fold. */
#include <string.h>

#include "engine/op.h"
#include "engine/ops/strided.h"

_Static_assert(sizeof(cnv_walk) <= CNV_GEOM_SIZE, "the walk fits geom");

static cnv_status int_vector(const cnv_val *v, const char *what, cnv_err *e)
{
    if (!v->is_const || !v->i64)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "%s must be an INT64 tensor known at plan time", what);
    if (v->shape.ndim != 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "%s must be 1-D", what);
    return CNV_OK;
}

/* --------------------------------------------------------------- Expand */

static cnv_status expand_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    const cnv_shape *x = &c->in[0]->shape;
    const cnv_val *s = c->in[1];
    cnv_status st = int_vector(s, "the shape", e);
    if (st != CNV_OK)
        return st;
    if (s->count > CNV_MAX_DIMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "rank %lld exceeds %d", (long long)s->count, CNV_MAX_DIMS);
    cnv_shape *y = &c->out[0]->shape;
    y->ndim = x->ndim > (int)s->count ? x->ndim : (int)s->count;
    int64_t st_in[CNV_MAX_DIMS], stride = 1;
    for (int o = y->ndim - 1; o >= 0; o--) {
        int dx = o - (y->ndim - x->ndim), ds = o - (y->ndim - (int)s->count);
        int64_t a = dx >= 0 ? x->dims[dx] : 1, b = ds >= 0 ? s->i64[ds] : 1;
        if (b < 0 || (a != b && a != 1 && b != 1))
            return cnv_fail(e, CNV_ERR_SHAPE, "the input does not broadcast to the shape (dim %d: %lld and %lld)",
                            o, (long long)a, (long long)b);
        y->dims[o] = a == 1 ? b : a;
        st_in[o] = a == 1 ? 0 : stride;
        stride *= a;
    }
    int64_t n = cnv_shape_count(y);
    if (n < 0 || n > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_SHAPE, "the output is too large");
    cnv_walk_init((cnv_walk *)c->geom, y->ndim, y->dims, st_in, 0);
    return CNV_OK;
}

const cnv_op cnv_op_expand = {
    .type = "Expand", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
    .int_inputs = 1u << 1, /* shape */
    .flags = CNV_OP_GRAD_STORE,
    .plan = expand_plan, .forward = cnv_walk_forward, .backward = cnv_walk_backward,
    .fold = cnv_walk_fold,
};

/* ----------------------------------------------------------------- Tile */

/* Output dim d of length r_d * n_d walks as (r_d, n_d): the repeat with
 * stride 0, the input's own dim with its stride. */
static cnv_status tile_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    const cnv_shape *x = &c->in[0]->shape;
    const cnv_val *r = c->in[1];
    cnv_status st = int_vector(r, "repeats", e);
    if (st != CNV_OK)
        return st;
    if (r->count != x->ndim)
        return cnv_fail(e, CNV_ERR_SHAPE, "%lld repeats for rank %d", (long long)r->count, x->ndim);
    cnv_shape *y = &c->out[0]->shape;
    y->ndim = x->ndim;
    int64_t dims[CNV_WALK_DIMS], st_in[CNV_WALK_DIMS], stride = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        if (r->i64[d] < 0 || !cnv_mul_i64(x->dims[d], r->i64[d], &y->dims[d]))
            return cnv_fail(e, CNV_ERR_SHAPE, "repeat %lld on axis %d", (long long)r->i64[d], d);
        dims[2 * d] = r->i64[d];
        st_in[2 * d] = 0;
        dims[2 * d + 1] = x->dims[d];
        st_in[2 * d + 1] = stride;
        stride *= x->dims[d];
    }
    int64_t n = cnv_shape_count(y);
    if (n < 0 || n > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_SHAPE, "the output is too large");
    cnv_walk_init((cnv_walk *)c->geom, 2 * x->ndim, dims, st_in, 0);
    return CNV_OK;
}

const cnv_op cnv_op_tile = {
    .type = "Tile", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
    .int_inputs = 1u << 1, /* repeats */
    .flags = CNV_OP_GRAD_STORE,
    .plan = tile_plan, .forward = cnv_walk_forward, .backward = cnv_walk_backward,
    .fold = cnv_walk_fold,
};
