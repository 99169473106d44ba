/* Concat: joins any number of tensors along one axis (ONNX, any rank up to
 * CNV_MAX_DIMS); backward splits the gradient back. */
#include <string.h>

#include "engine/op.h"
#include "engine/ops/elementwise.h"

typedef struct concat_params {
    int64_t axis;
} concat_params;

/* Every tensor is (outer, len_k, inner) around the axis; the output is
 * (outer, out_len, inner). */
typedef struct concat_geom {
    int axis;
    int64_t outer, inner, out_len;
} concat_geom;
_Static_assert(sizeof(concat_geom) <= CNV_GEOM_SIZE, "concat_geom fits geom");

static cnv_status concat_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    concat_params *p = params;
    if (!cnv_attr_find(n, "axis")) {
        if (opset >= 4)
            return cnv_fail(e, CNV_ERR_FORMAT, "attribute axis is required");
        p->axis = 1; /* Concat-1 default */
        return CNV_OK;
    }
    return cnv_attr_get_int(n, "axis", 1, &p->axis, e);
}

static cnv_status concat_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size,
                              cnv_err *e)
{
    const cnv_node *n = c->node;
    const concat_params *p = c->params;
    char b1[128], b2[128];
    for (int k = 0; k < n->n_in; k++)
        if (!c->in[k])
            return cnv_fail(e, CNV_ERR_FORMAT, "input %d is absent", k);
    const cnv_shape *s0 = &c->in[0]->shape;
    int r = s0->ndim;
    if (r < 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "cannot concatenate scalars");
    int64_t ax = p->axis < 0 ? p->axis + r : p->axis;
    if (ax < 0 || ax >= r)
        return cnv_fail(e, CNV_ERR_SHAPE, "axis %lld is out of range for input %s",
                        (long long)p->axis, cnv_shape_str(s0, b1, sizeof b1));
    int64_t len = 0;
    for (int k = 0; k < n->n_in; k++) {
        const cnv_shape *sk = &c->in[k]->shape;
        int ok = sk->ndim == r;
        for (int i = 0; ok && i < r; i++)
            ok = sk->dims[i] >= 0 && (i == ax || sk->dims[i] == s0->dims[i]);
        if (!ok)
            return cnv_fail(e, CNV_ERR_SHAPE,
                            "input %d of shape %s does not fit input 0 of "
                            "shape %s along axis %lld", k, cnv_shape_str(sk, b1, sizeof b1),
                            cnv_shape_str(s0, b2, sizeof b2), (long long)ax);
        len += sk->dims[ax]; /* each count was checked by the session: no overflow */
        if (len > CNV_MAX_ELEMS)
            return cnv_fail(e, CNV_ERR_NOMEM, "output is too large");
    }
    cnv_shape *ys = &c->out[0]->shape;
    *ys = *s0;
    ys->dims[ax] = len;
    int64_t cnt = cnv_shape_count(ys);
    if (cnt < 0 || cnt > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_NOMEM, "output %s is too large",
                        cnv_shape_str(ys, b1, sizeof b1));

    concat_geom *g = (concat_geom *)c->geom;
    g->axis = (int)ax;
    g->out_len = len;
    g->outer = g->inner = 1;
    for (int i = 0; i < ax; i++)
        g->outer *= s0->dims[i];
    for (int i = (int)ax + 1; i < r; i++)
        g->inner *= s0->dims[i];
    *state_size = 0;
    *work_size = 0;
    return CNV_OK;
}

/* Input k is one slice of y when nothing is outside the axis (outer 1). */
static int concat_input_view(const cnv_op_ctx *c, int k, int64_t *offset)
{
    const concat_geom *g = (const concat_geom *)c->geom;
    if (g->outer != 1)
        return 0;
    *offset = 0;
    for (int q = 0; q < k; q++)
        *offset += c->in[q]->shape.dims[g->axis] * g->inner;
    return 1;
}

/* in[k] is (outer, len_k, inner), y is (outer, sum len_k, inner). An input
 * the planner placed inside y (concat_input_view) is already there. */
static void concat_forward(cnv_op_ctx *c)
{
    const concat_geom *g = (const concat_geom *)c->geom;
    float *y = c->out[0]->data;
    int64_t off = 0;
    for (int k = 0; k < c->node->n_in; k++) {
        int64_t chunk = c->in[k]->shape.dims[g->axis] * g->inner;
        const float *x = c->in[k]->data;
        for (int64_t o = 0; o < g->outer; o++)
            if (chunk && x + o * chunk != y + o * g->out_len * g->inner + off)
                memcpy(y + o * g->out_len * g->inner + off, x + o * chunk,
                       (size_t)chunk * sizeof(float));
        off += chunk;
    }
}

static void concat_backward(cnv_op_ctx *c)
{
    const concat_geom *g = (const concat_geom *)c->geom;
    const float *dy = c->out[0]->grad;
    int64_t off = 0;
    for (int k = 0; k < c->node->n_in; k++) {
        int64_t chunk = c->in[k]->shape.dims[g->axis] * g->inner;
        float *dx = c->in[k]->grad;
        for (int64_t o = 0; dx && o < g->outer; o++)
            cnv_grad_pass(dy + o * g->out_len * g->inner + off, dx + o * chunk, chunk,
                          cnv_grad_store(c, k));
        off += chunk;
    }
}

/* Values known at plan time (an export's Reshape target assembled from
 * Shape's dims): joined once, as INT64 or float. */
static cnv_status concat_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    int n = c->node->n_in, ints = 0;
    size_t state, work;
    cnv_status st = concat_plan(c, &state, &work, e);
    if (st != CNV_OK)
        return st;
    for (int k = 0; k < n; k++)
        ints += c->in[k]->i64 != NULL;
    if (ints != 0 && ints != n)
        return cnv_fail(e, CNV_ERR_SHAPE, "mixes INT64 and float inputs");
    const concat_geom *g = (const concat_geom *)c->geom;
    size_t elem = ints ? sizeof(int64_t) : sizeof(float);
    unsigned char *y;
    if ((st = cnv_fold_values(c, c->out[0], ints != 0, (void **)&y, e)) != CNV_OK)
        return st;
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        int64_t chunk = c->in[k]->shape.dims[g->axis] * g->inner;
        const unsigned char *x = ints ? (const void *)c->in[k]->i64 : (const void *)c->in[k]->data;
        for (int64_t o = 0; chunk && o < g->outer; o++)
            memcpy(y + (size_t)(o * g->out_len * g->inner + off) * elem, x + (size_t)(o * chunk) * elem,
                   (size_t)chunk * elem);
        off += chunk;
    }
    *done = 1;
    return CNV_OK;
}

const cnv_op cnv_op_concat = {
    .type = "Concat", .min_in = 1, .max_in = 1 << 20, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE | CNV_OP_ALL_REQUIRED,
    .params_size = sizeof(concat_params), .parse = concat_parse, .plan = concat_plan,
    .forward = concat_forward, .backward = concat_backward,
    .input_view = concat_input_view, .fold = concat_fold,
};
