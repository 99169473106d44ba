/* The small branching network shared by the engine tests (smallnet.h). */
#include "smallnet.h"

#include <stdlib.h>

#include "testutil.h"

static void add_param(cnv_model *m, tu_rng *r, const char *name, cnv_shape sh, float scale)
{
    int64_t n = cnv_shape_count(&sh);
    float *v = malloc((size_t)n * sizeof(float));
    assert_non_null(v);
    tu_fill(r, v, n, -scale, scale);
    if (cnv_model_add_const(m, name, CNV_FLOAT32, &sh, v) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    free(v);
}

static void add_node(cnv_model *m, const char *op, const char *name, int n_in, const char *const *in,
                     const char *out, int n_attrs, const cnv_attr *attrs)
{
    if (cnv_model_add_node(m, op, name, n_in, in, 1, &out, n_attrs, attrs) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
}

cnv_model *sn_build(int gap, uint64_t seed)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    tu_rng r;
    tu_rng_init(&r, seed);
    cnv_shape xs = gap ? tu_shape(4, -1, 2, -1, -1) : tu_shape(4, -1, 2, 8, 8);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    add_param(m, &r, "w1", tu_shape(4, 4, 2, 3, 3), 0.5f);
    add_param(m, &r, "b1", tu_shape(1, 4), 0.1f);
    add_param(m, &r, "wa", tu_shape(4, 3, 4, 1, 1), 0.8f);
    add_param(m, &r, "ba", tu_shape(1, 3), 0.1f);
    add_param(m, &r, "wb", tu_shape(4, 5, 4, 3, 3), 0.3f);
    add_param(m, &r, "bb", tu_shape(1, 5), 0.1f);
    int feat = gap ? 8 : 8 * 4 * 4;
    add_param(m, &r, "fc.w", tu_shape(2, SN_CLASSES, feat), gap ? 0.5f : 0.15f);
    add_param(m, &r, "fc.b", tu_shape(1, SN_CLASSES), 0.5f);

    const int64_t k3[2] = {3, 3}, k2[2] = {2, 2}, k1[2] = {1, 1}, p1[4] = {1, 1, 1, 1};
    const cnv_attr conv3[2] = {tu_attr_ints("kernel_shape", 2, k3), tu_attr_ints("pads", 4, p1)};
    const cnv_attr conv1 = tu_attr_ints("kernel_shape", 2, k1);
    const cnv_attr pool[2] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_ints("strides", 2, k2)};
    const cnv_attr axis1 = tu_attr_int("axis", 1), transb = tu_attr_int("transB", 1);

    add_node(m, "Conv", "conv1", 3, (const char *const[]){"x", "w1", "b1"}, "c1", 2, conv3);
    add_node(m, "Relu", "relu1", 1, (const char *const[]){"c1"}, "r1", 0, NULL);
    add_node(m, "MaxPool", "pool1", 1, (const char *const[]){"r1"}, "p1", 2, pool);
    add_node(m, "Conv", "conv_a", 3, (const char *const[]){"p1", "wa", "ba"}, "ca", 1, &conv1);
    add_node(m, "Relu", "relu_a", 1, (const char *const[]){"ca"}, "ra", 0, NULL);
    add_node(m, "Conv", "conv_b", 3, (const char *const[]){"p1", "wb", "bb"}, "cb", 2, conv3);
    add_node(m, "Relu", "relu_b", 1, (const char *const[]){"cb"}, "rb", 0, NULL);
    add_node(m, "Concat", "concat", 2, (const char *const[]){"ra", "rb"}, "cat", 1, &axis1);
    if (gap) {
        add_node(m, "GlobalAveragePool", "gap", 1, (const char *const[]){"cat"}, "gap", 0, NULL);
        add_node(m, "Flatten", "flatten", 1, (const char *const[]){"gap"}, "flat", 0, NULL);
    } else {
        add_node(m, "Flatten", "flatten", 1, (const char *const[]){"cat"}, "flat", 0, NULL);
    }
    add_node(m, "Gemm", "fc", 3, (const char *const[]){"flat", "fc.w", "fc.b"}, "logits", 1, &transb);
    add_node(m, "Relu", "side_relu", 1, (const char *const[]){"fc.b"}, "side", 0, NULL);
    assert_int_equal(cnv_model_add_output(m, "logits"), CNV_OK);
    return m;
}
