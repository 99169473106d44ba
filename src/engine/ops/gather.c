/* Gather: slices of a tensor picked along one axis by INT64 indices known
 * at plan time (an export's Shape()[i], a channel selection). Backward
 * adds each picked slice's gradient back (a slice picked twice gets both).
 * On values known at plan time it folds. */
#include <string.h>

#include "engine/op.h"

typedef struct gather_params {
    int64_t axis;
} gather_params;

/* data is (outer, axis_len, inner), the output (outer, n_idx, inner). */
typedef struct gather_geom {
    int64_t outer, axis_len, inner, n_idx;
} gather_geom;
_Static_assert(sizeof(gather_geom) <= CNV_GEOM_SIZE, "gather_geom fits geom");

static cnv_status gather_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    gather_params *p = params;
    return cnv_attr_get_int(n, "axis", 0, &p->axis, e);
}

static cnv_status gather_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    const gather_params *p = c->params;
    const cnv_shape *x = &c->in[0]->shape;
    const cnv_val *idx = c->in[1];
    if (!idx->is_const || !idx->i64)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "the indices must be INT64 values known at plan time");
    int64_t ax = p->axis < 0 ? p->axis + x->ndim : p->axis;
    if (ax < 0 || ax >= x->ndim)
        return cnv_fail(e, CNV_ERR_SHAPE, "axis %lld is out of range for rank %d", (long long)p->axis, x->ndim);
    if (x->ndim - 1 + idx->shape.ndim > CNV_MAX_DIMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "the output rank exceeds %d", CNV_MAX_DIMS);
    int64_t len = x->dims[ax];
    for (int64_t i = 0; i < idx->count; i++)
        if (idx->i64[i] < -len || idx->i64[i] >= len)
            return cnv_fail(e, CNV_ERR_SHAPE, "index %lld is out of range for length %lld",
                            (long long)idx->i64[i], (long long)len);
    cnv_shape *y = &c->out[0]->shape;
    y->ndim = 0;
    for (int d = 0; d < ax; d++)
        y->dims[y->ndim++] = x->dims[d];
    for (int d = 0; d < idx->shape.ndim; d++)
        y->dims[y->ndim++] = idx->shape.dims[d];
    for (int d = (int)ax + 1; d < x->ndim; d++)
        y->dims[y->ndim++] = x->dims[d];
    gather_geom *g = (gather_geom *)c->geom;
    g->outer = g->inner = 1;
    for (int d = 0; d < ax; d++)
        g->outer *= x->dims[d];
    for (int d = (int)ax + 1; d < x->ndim; d++)
        g->inner *= x->dims[d];
    g->axis_len = len;
    g->n_idx = idx->count;
    return CNV_OK;
}

/* Copies the picked slices of elem-byte values from x into y. */
static void pick(const gather_geom *g, const int64_t *idx, const void *x, void *y, size_t elem)
{
    size_t row = (size_t)g->inner * elem;
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t j = 0; j < g->n_idx; j++) {
            int64_t i = idx[j] < 0 ? idx[j] + g->axis_len : idx[j];
            memcpy((unsigned char *)y + (size_t)(o * g->n_idx + j) * row,
                   (const unsigned char *)x + (size_t)(o * g->axis_len + i) * row, row);
        }
}

static void gather_forward(cnv_op_ctx *c)
{
    pick((const gather_geom *)c->geom, c->in[1]->i64, c->in[0]->data, c->out[0]->data, sizeof(float));
}

static void gather_backward(cnv_op_ctx *c)
{
    const gather_geom *g = (const gather_geom *)c->geom;
    const int64_t *idx = c->in[1]->i64;
    float *dx = c->in[0]->grad;
    const float *dy = c->out[0]->grad;
    if (!dx)
        return;
    if (cnv_grad_store(c, 0))
        memset(dx, 0, (size_t)c->in[0]->count * sizeof *dx);
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t j = 0; j < g->n_idx; j++) {
            int64_t i = idx[j] < 0 ? idx[j] + g->axis_len : idx[j];
            float *d = dx + (o * g->axis_len + i) * g->inner;
            const float *s = dy + (o * g->n_idx + j) * g->inner;
            for (int64_t k = 0; k < g->inner; k++)
                d[k] += s[k];
        }
}

static cnv_status gather_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    size_t state, work;
    cnv_status st = gather_plan(c, &state, &work, e);
    int ints = c->in[0]->i64 != NULL;
    void *y;
    if (st == CNV_OK)
        st = cnv_fold_values(c, c->out[0], ints, &y, e);
    if (st != CNV_OK)
        return st;
    pick((const gather_geom *)c->geom, c->in[1]->i64, ints ? (const void *)c->in[0]->i64 : c->in[0]->data, y,
         ints ? sizeof(int64_t) : sizeof(float));
    *done = 1;
    return CNV_OK;
}

const cnv_op cnv_op_gather = {
    .type = "Gather", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
    .int_inputs = 1u << 1, /* indices */
    .params_size = sizeof(gather_params), .flags = CNV_OP_GRAD_STORE,
    .parse = gather_parse, .plan = gather_plan, .forward = gather_forward, .backward = gather_backward,
    .fold = gather_fold,
};
