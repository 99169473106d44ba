/* Relu, Identity and Dropout (identity at inference), and the element-wise
 * loops other ops share (elementwise.h). Add and the other broadcast ops
 * are in binary.c. */
#include <string.h>

#include "core/cpu.h"
#include "engine/op.h"
#include "engine/ops/elementwise.h"

/* ----------------------------------------------------------------- Relu */

static cnv_status same_shape_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work, (void)e;
    c->out[0]->shape = c->in[0]->shape;
    return CNV_OK;
}

/* The loops below run over blocks of 8 with restrict pointers, and load
 * every operand unconditionally: in that form GCC's -O2 vectorizer (its
 * "very cheap" cost model, which will not add run-time alias checks nor
 * masked loads) turns them into SIMD compare-and-mask code with no
 * branch; a plain loop compiled to one branch per element, which
 * mispredicts on the half of the activations that are negative. */

// y = max(x, 0); NaN passes through, as in ONNX and PyTorch. It is also
// the epilogue a Conv applies for a Relu that reads it.
CNV_CLONES static void relu(const float *restrict x, float *restrict y, int64_t n, const void *geom)
{
    (void)geom;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            float v = x[i + j];
            y[i + j] = v < 0.0f ? 0.0f : v;
        }
    for (; i < n; i++)
        y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

static void relu_part(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    lo *= 16, hi = hi * 16 < c->out[0]->count ? hi * 16 : c->out[0]->count;
    relu(c->in[0]->data + lo, c->out[0]->data + lo, hi - lo, NULL);
}

/* The element-wise loops split into blocks of 16 floats (whole cache
 * lines for the threads) */
static int64_t blocks16(int64_t n) { return (n + 15) / 16; }

static void relu_forward(cnv_op_ctx *c)
{
    cnv_team_run(c->team, blocks16(c->out[0]->count), relu_part, c);
}

/* The kept gradient for output y and its gradient d under the session's
 * ReLU mode: the true gradient (y > 0), guided backpropagation (y > 0 and
 * d > 0) or Deconvnet's rule (d > 0, whatever y). */
#define RELU_KEEP(mode, yv, d)                                                                                    \
    ((mode) == CNV_RELU_GRAD ? (yv) > 0.0f : (mode) == CNV_RELU_GUIDED ? ((yv) > 0.0f) & ((d) > 0.0f) : (d) > 0.0f)

/* dx = dy where the mode keeps it, else 0. The mode is a constant in each
 * loop so the compiler vectorizes all three. */
CNV_CLONES static void relu_mask_store(const float *restrict y, const float *restrict dy, float *restrict dx,
                                       int64_t n, int mode)
{
    if (mode == CNV_RELU_GUIDED) {
        for (int64_t i = 0; i < n; i++)
            dx[i] = RELU_KEEP(CNV_RELU_GUIDED, y[i], dy[i]) ? dy[i] : 0.0f;
    } else if (mode == CNV_RELU_DECONV) {
        for (int64_t i = 0; i < n; i++)
            dx[i] = RELU_KEEP(CNV_RELU_DECONV, y[i], dy[i]) ? dy[i] : 0.0f;
    } else {
        for (int64_t i = 0; i < n; i++)
            dx[i] = RELU_KEEP(CNV_RELU_GRAD, y[i], dy[i]) ? dy[i] : 0.0f;
    }
}

/* dx += dy where the mode keeps it. */
CNV_CLONES static void relu_mask_add(const float *restrict y, const float *restrict dy, float *restrict dx,
                                     int64_t n, int mode)
{
    if (mode == CNV_RELU_GUIDED) {
        for (int64_t i = 0; i < n; i++)
            dx[i] += RELU_KEEP(CNV_RELU_GUIDED, y[i], dy[i]) ? dy[i] : 0.0f;
    } else if (mode == CNV_RELU_DECONV) {
        for (int64_t i = 0; i < n; i++)
            dx[i] += RELU_KEEP(CNV_RELU_DECONV, y[i], dy[i]) ? dy[i] : 0.0f;
    } else {
        for (int64_t i = 0; i < n; i++)
            dx[i] += RELU_KEEP(CNV_RELU_GRAD, y[i], dy[i]) ? dy[i] : 0.0f;
    }
}

static void relu_back_part(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    lo *= 16, hi = hi * 16 < c->out[0]->count ? hi * 16 : c->out[0]->count;
    const float *y = c->out[0]->data + lo, *dy = c->out[0]->grad + lo;
    float *dx = c->in[0]->grad + lo;
    int mode = c->opts->relu_mode;
    if (cnv_grad_store(c, 0))
        relu_mask_store(y, dy, dx, hi - lo, mode);
    else
        relu_mask_add(y, dy, dx, hi - lo, mode);
}

// dx += dy where y > 0. At x == 0 exactly the gradient is 0 (the
// subgradient PyTorch also picks). Guided mode also drops negative dy;
// Deconvnet's keeps positive dy wherever y is.
// With grad_store, dx is overwritten instead.
static void relu_backward(cnv_op_ctx *c)
{
    cnv_team_run(c->team, blocks16(c->out[0]->count), relu_back_part, c);
}

const cnv_op cnv_op_relu = {
    .type = "Relu", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE | CNV_OP_ACTIVATION,
    .plan = same_shape_plan, .forward = relu_forward, .backward = relu_backward,
    .epilogue = relu,
};

/* ------------------------------------------------------------- Identity */

void cnv_copy_forward(cnv_op_ctx *c)
{
    memcpy(c->out[0]->data, c->in[0]->data, (size_t)c->out[0]->count * sizeof(float));
}

void cnv_copy_backward(cnv_op_ctx *c)
{
    cnv_grad_pass(c->out[0]->grad, c->in[0]->grad, c->out[0]->count, cnv_grad_store(c, 0));
}

void cnv_grad_pass(const float *dy, float *dx, int64_t n, int store)
{
    if (store) {
        if (dx != dy)
            memcpy(dx, dy, (size_t)n * sizeof *dx);
        return;
    }
    cnv_add_to(dy, dx, n);
}

CNV_CLONES void cnv_add_to(const float *restrict src, float *restrict dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            dst[i + j] += src[i + j];
    for (; i < n; i++)
        dst[i] += src[i];
}

const cnv_op cnv_op_identity = {
    .type = "Identity", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE,
    .plan = same_shape_plan, .forward = cnv_copy_forward, .backward = cnv_copy_backward,
    .fold = cnv_fold_view,
};

/* -------------------------------------------------------------- Dropout */

/* Inference only: the ratio (attribute before opset 12, input after) is
 * read for validity and otherwise ignored; training mode and the mask
 * output are refused. */
static cnv_status dropout_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)params;
    float ratio;
    int64_t is_test;
    cnv_status st = cnv_attr_get_float(n, "ratio", 0.5f, &ratio, e);
    if (st == CNV_OK)
        st = cnv_attr_get_int(n, "is_test", 1, &is_test, e);
    if (st != CNV_OK)
        return st;
    if (opset < 7 && !is_test)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "Dropout in training mode (is_test=0) is not supported");
    if (n->n_out > 1)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "Dropout's mask output is not supported");
    return CNV_OK;
}

static cnv_status dropout_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    if (c->node->n_in >= 3 && c->in[2]) {
        const cnv_val *mode = c->in[2];
        /* training_mode is a bool tensor; we accept it only as a constant
         * false (stored as int64 0 by the reader) */
        if (!mode->is_const || !mode->i64 || mode->count != 1 || mode->i64[0] != 0)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED, "Dropout in training mode is not supported");
    }
    return same_shape_plan(c, state, work, e);
}

const cnv_op cnv_op_dropout = {
    .type = "Dropout", .min_in = 1, .max_in = 3, .min_out = 1, .max_out = 2,
    .int_inputs = 1u << 2, /* training_mode (a bool, read as INT64) */
    .parse = dropout_parse, .plan = dropout_plan, .forward = cnv_copy_forward, .backward = cnv_copy_backward,
    .fold = cnv_fold_view,
};
