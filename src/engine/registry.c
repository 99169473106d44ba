/* The op registry: ONNX op_type -> implementation. One line per op; each op
 * lives in its own source file (conv.c, pool.c, ...). */
#include <string.h>

#include "engine/graph.h"

extern const cnv_op cnv_op_relu;
extern const cnv_op cnv_op_identity;
extern const cnv_op cnv_op_dropout;
extern const cnv_op cnv_op_flatten;
extern const cnv_op cnv_op_reshape;
extern const cnv_op cnv_op_add;
extern const cnv_op cnv_op_conv;
extern const cnv_op cnv_op_gemm;
extern const cnv_op cnv_op_maxpool, cnv_op_averagepool, cnv_op_globalaveragepool, cnv_op_concat, cnv_op_softmax, cnv_op_batchnorm, cnv_op_pad;
/* OPS-EXTERN (keep this marker: new ops add their extern line above) */

static const cnv_op *const g_ops[] = {
    &cnv_op_relu,
    &cnv_op_identity,
    &cnv_op_dropout,
    &cnv_op_flatten,
    &cnv_op_reshape,
    &cnv_op_add,
    &cnv_op_conv,
    &cnv_op_gemm,
    &cnv_op_maxpool, &cnv_op_averagepool, &cnv_op_globalaveragepool, &cnv_op_concat, &cnv_op_softmax, &cnv_op_batchnorm, &cnv_op_pad,
    /* OPS-TABLE (keep this marker: new ops add their line above) */
};

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
