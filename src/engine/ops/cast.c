/* Cast. The engine computes in float32 (FLOAT16, BFLOAT16 and DOUBLE
 * values are converted when a model is read). A Cast to FLOAT or DOUBLE
 * passes values through; a Cast to FLOAT16 or BFLOAT16 rounds them to
 * that precision (to nearest, ties to even; beyond FLOAT16's range to
 * infinity), as the model asks, and keeps them in float32. Gradients pass
 * through unchanged (straight through the rounding, as PyTorch's .half()
 * does). So the float16 models that wrap their weights in Casts to FLOAT
 * run at float32 precision, and a model that rounds its activations where
 * it says so. Integer types
 * (shape arithmetic, booleans) are INT64 values known at plan time, where
 * a Cast folds; a Cast of the image's values to an integer type is
 * refused. */
#include <math.h>
#include <string.h>

#include "engine/op.h"
#include "engine/ops/elementwise.h"

enum { TO_FLOAT, TO_INT };
enum { ONNX_FLOAT16 = 10, ONNX_BFLOAT16 = 16 };

typedef struct cast_params {
    int to;       /* TO_FLOAT or TO_INT */
    int64_t type; /* the ONNX data type */
} cast_params;

static cnv_status cast_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    cast_params *p = params;
    if (!cnv_attr_find(n, "to"))
        return cnv_fail(e, CNV_ERR_FORMAT, "Cast needs its `to` attribute");
    cnv_status st = cnv_attr_get_int(n, "to", 1, &p->type, e);
    if (st != CNV_OK)
        return st;
    switch (p->type) {
    case 1: case 10: case 11: case 16: /* FLOAT, FLOAT16, DOUBLE, BFLOAT16 */
        p->to = TO_FLOAT;
        return CNV_OK;
    case 2: case 3: case 4: case 5: case 6: case 7: case 9: case 12: case 13:
        p->to = TO_INT; /* UINT8 INT8 UINT16 INT16 INT32 INT64 BOOL UINT32 UINT64 */
        return CNV_OK;
    default:
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "Cast to data type %lld is not supported", (long long)p->type);
    }
}

/* f rounded to the nearest FLOAT16 (type 10) or BFLOAT16 (16) value. */
static float round_to(float f, int64_t type)
{
    uint32_t u, sign;
    memcpy(&u, &f, sizeof u);
    sign = u & 0x80000000u;
    u ^= sign;
    if (u >= 0x7f800000u) /* inf, NaN */
        return f;
    if (type == ONNX_BFLOAT16) {
        u += 0x7fffu + ((u >> 16) & 1u); /* may carry into inf: right */
        u &= 0xffff0000u;
    } else {
        float a;
        memcpy(&a, &u, sizeof a);
        if (a >= 65520.0f) { /* rounds past FLOAT16's 65504 */
            u = 0x7f800000u;
        } else if (a < 6.103515625e-05f) { /* FLOAT16's subnormals: steps of 2^-24 */
            a = nearbyintf(a * 16777216.0f) / 16777216.0f;
            memcpy(&u, &a, sizeof u);
        } else {
            u += 0xfffu + ((u >> 13) & 1u);
            u &= ~0x1fffu;
        }
    }
    u |= sign;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int rounds(const cast_params *p)
{
    return p->type == ONNX_FLOAT16 || p->type == ONNX_BFLOAT16;
}

static cnv_status cast_plan(cnv_op_ctx *c, size_t *state, size_t *work, cnv_err *e)
{
    (void)state, (void)work;
    const cast_params *p = c->params;
    if (p->to == TO_INT)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "a Cast of values that depend on the image to an integer type is not supported");
    c->out[0]->shape = c->in[0]->shape;
    return CNV_OK;
}

/* An integer value as the target type holds it (two's complement wrap). */
static int64_t to_int_type(int64_t v, int64_t type)
{
    switch (type) {
    case 2: return (uint8_t)v;
    case 3: return (int8_t)v;
    case 4: return (uint16_t)v;
    case 5: return (int16_t)v;
    case 6: return (int32_t)v;
    case 9: return v != 0;
    case 12: return (uint32_t)v;
    default: return v; /* INT64, and UINT64 as far as INT64 holds it */
    }
}

static cnv_status cast_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    const cast_params *p = c->params;
    const cnv_val *x = c->in[0];
    cnv_val *y = c->out[0];
    if (!x->i64 && p->to == TO_FLOAT && !rounds(p)) {
        cnv_fold_alias(y, x);
        *done = 1;
        return CNV_OK;
    }
    y->shape = x->shape;
    void *v;
    cnv_status st = cnv_fold_values(c, y, p->to == TO_INT, &v, e);
    if (st != CNV_OK)
        return st;
    for (int64_t i = 0; i < x->count; i++) {
        if (p->to == TO_FLOAT) {
            float f = x->i64 ? (float)x->i64[i] : x->data[i];
            ((float *)v)[i] = rounds(p) ? round_to(f, p->type) : f;
            continue;
        }
        int64_t r;
        if (x->i64) {
            r = x->i64[i];
        } else {
            double f = x->data[i];
            if (p->type == 9) {
                r = f != 0.0;
            } else {
                if (!(f > -9.2e18 && f < 9.2e18))
                    return cnv_fail(e, CNV_ERR_UNSUPPORTED, "cannot cast %g to an integer", f);
                r = (int64_t)f; /* toward zero, as C and ONNX Runtime */
            }
        }
        ((int64_t *)v)[i] = to_int_type(r, p->type);
    }
    *done = 1;
    return CNV_OK;
}

static void cast_forward(cnv_op_ctx *c)
{
    const cast_params *p = c->params;
    if (!rounds(p)) {
        cnv_copy_forward(c);
        return;
    }
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t i = 0; i < c->out[0]->count; i++)
        y[i] = round_to(x[i], p->type);
}

const cnv_op cnv_op_cast = {
    .type = "Cast", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .params_size = sizeof(cast_params), .flags = CNV_OP_GRAD_STORE,
    .parse = cast_parse, .plan = cast_plan, .forward = cast_forward, .backward = cnv_copy_backward,
    .fold = cast_fold,
};
