/* The op registry: ONNX op_type -> implementation. CNV_OPS is the one
 * list: it declares every op and makes the table. Each op lives in
 * engine/ops/, one file per op family (conv.c, pool.c, ...). */
#include <string.h>

#include "engine/op.h"

/* X(name): the op is `const cnv_op cnv_op_<name>`, in table order. */
#define CNV_OPS(X)                                                                                 \
    X(relu) X(identity) X(dropout) X(flatten) X(reshape) X(add) X(conv) X(gemm) X(maxpool)        \
    X(averagepool) X(globalaveragepool) X(concat) X(softmax) X(batchnorm) X(pad)                  \
    X(clip) X(sigmoid) X(hardsigmoid) X(hardswish) X(tanh) X(leakyrelu) X(elu) X(selu) X(celu)     \
    X(softplus) X(softsign) X(thresholdedrelu) X(gelu) X(erf) X(sqrt) X(exp) X(log) X(neg)        \
    X(reciprocal) X(abs) X(sub) X(mul) X(div) X(pow) X(prelu) X(sum) X(mean) X(max) X(min)     \
    X(shape) X(size) X(constantofshape) X(range) X(equal) X(where) X(cast) X(gather) X(squeeze)    \
    X(unsqueeze) X(slice) X(split) X(expand) X(tile)                                             \
    X(matmul) X(transpose)                                                                     \
    X(lrn) X(layernorm) X(instancenorm) X(logsoftmax)                                         \
    X(reducesum) X(reducemean) X(reducesumsquare) X(reducel2) X(reducemax) X(reducemin) X(globalmaxpool) \
    X(convtranspose) X(resize) X(upsample)

#define DECLARE(name) extern const cnv_op cnv_op_##name;
CNV_OPS(DECLARE)
#undef DECLARE

#define ENTRY(name) &cnv_op_##name,
static const cnv_op *const g_ops[] = {CNV_OPS(ENTRY)};
#undef ENTRY

#define N_OPS (sizeof g_ops / sizeof g_ops[0])

const cnv_op *cnv_op_find(const char *type)
{
    for (size_t i = 0; i < N_OPS; i++)
        if (strcmp(g_ops[i]->type, type) == 0)
            return g_ops[i];
    return NULL;
}

int cnv_op_count(void)
{
    return (int)N_OPS;
}

const cnv_op *cnv_op_at(int i)
{
    return i >= 0 && i < (int)N_OPS ? g_ops[i] : NULL;
}
