/* Replays every input the fuzzers crashed on (tests/fuzz_regressions/
 * {onnx,pb,image,graph}/) through the same steps as the fuzz targets
 * (fuzz/fuzz_run.h), plus hand-made reproducers of what they found. Under
 * `make test SANITIZE=1` this is where a regression would show. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/op.h"
#include "testutil.h"
#include "../fuzz/fuzz_run.h"

#define REG_DIR "tests/fuzz_regressions"

typedef cnv_status (*run_fn)(const uint8_t *, size_t, char *, size_t);

static int replay_dir(const char *sub, run_fn run)
{
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "%s/%s", REG_DIR, sub);
    DIR *d = opendir(dir);
    if (!d) {
        print_message("no %s (run from the repository root)\n", dir);
        fail();
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t *buf = malloc(1 << 20);
        size_t len = fread(buf, 1, 1 << 20, f);
        fclose(f);
        char msg[512] = "";
        cnv_status st = run(buf, len, msg, sizeof msg);
        printf("  %s/%s (%zu bytes) -> %s%s%s\n", sub, e->d_name, len, cnv_status_string(st),
               msg[0] ? ": " : "", msg);
        /* A failure must say why. */
        if (st != CNV_OK)
            assert_true(strlen(msg) > 0);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

static void test_replay_onnx(void **state)
{
    (void)state;
    int n = replay_dir("onnx", fuzz_run_onnx);
    printf("  %d ONNX inputs replayed\n", n);
    assert_true(n > 0);
}

static void test_replay_tensor_pb(void **state)
{
    (void)state;
    int n = replay_dir("pb", fuzz_run_tensor_pb);
    printf("  %d TensorProto inputs replayed\n", n);
}

static void test_replay_image(void **state)
{
    (void)state;
    int n = replay_dir("image", fuzz_run_image);
    printf("  %d image inputs replayed\n", n);
    assert_true(n > 0);
}

static void test_replay_graph(void **state)
{
    (void)state;
    int n = replay_dir("graph", fuzz_run_graph);
    printf("  %d graph inputs replayed\n", n);
    assert_true(n > 0);
}

/* Found by fuzz_graph (graph/constantofshape-empty-huge-dims.bin): a
 * ConstantOfShape whose shape holds a 0 and values near 2^63 made an
 * empty tensor (no element, so within every count limit) whose strides
 * overflow int64: UBSan in the Div after it (binary.c, strides_for). Now
 * a planned shape's dims, zeros taken as 1, must multiply to at most
 * CNV_MAX_ELEMS (cnv_shape_ok), and constants are held to the same. */
static void test_empty_tensor_with_huge_dims(void **state)
{
    (void)state;
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(1, 4), ss = tu_shape(1, 4);
    const int64_t dims[4] = {2, 0, INT64_MAX, INT64_MAX};
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "shape", CNV_INT64, &ss, dims), CNV_OK);
    const char *in1[] = {"shape"}, *out1[] = {"z"}, *in2[] = {"x", "z"}, *out2[] = {"y"};
    assert_int_equal(cnv_model_add_node(m, "ConstantOfShape", "c", 1, in1, 1, out1, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Div", "d", 2, in2, 1, out2, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_plan_shapes(s, 1, &xs), CNV_ERR_SHAPE);
    printf("  %s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "too large"));
    cnv_session_free(s);
    /* a constant of that shape is refused when added */
    cnv_shape big = {4, {2, 0, INT64_MAX, INT64_MAX}};
    assert_int_equal(cnv_model_add_const(m, "empty", CNV_FLOAT32, &big, NULL), CNV_ERR_SHAPE);
    cnv_model_free(m);
}

/* Found by fuzz_onnx (onnx/conv_int64_bias.onnx, conv_int64_weight.onnx):
 * a Conv whose bias or weight initializer is INT64 planned fine, and
 * forward read the float data of an int64 constant (NULL): a SIGSEGV in
 * the release build. Fixed in d99ce19 (Conv/Gemm/BatchNorm plans refuse
 * INT64 constants). The same through the builder API, for the weight and
 * for other ops. Planning must refuse them. */
static void int64_const_case(const char *op, int n_in, const char *const *ins, int bad,
                             const cnv_shape *shapes)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, ins[0], &shapes[0]), CNV_OK);
    for (int k = 1; k < n_in; k++) {
        int64_t n = cnv_shape_count(&shapes[k]);
        void *data = calloc((size_t)n, 8);
        if (k == bad)
            assert_int_equal(cnv_model_add_const(m, ins[k], CNV_INT64, &shapes[k], data), CNV_OK);
        else
            assert_int_equal(cnv_model_add_const(m, ins[k], CNV_FLOAT32, &shapes[k], data), CNV_OK);
        free(data);
    }
    const char *out = "y";
    cnv_status st = cnv_model_add_node(m, op, "n", n_in, ins, 1, &out, 0, NULL);
    if (st == CNV_OK)
        st = cnv_model_add_output(m, "y");
    if (st != CNV_OK) {
        printf("  %s with INT64 input %d: refused at build: %s\n", op, bad, cnv_model_errmsg(m));
        cnv_model_free(m);
        return;
    }
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    st = cnv_session_plan_shapes(s, 1, &shapes[0]);
    printf("  %s with INT64 input %d: plan -> %s: %s\n", op, bad, cnv_status_string(st),
           cnv_session_errmsg(s));
    if (st == CNV_OK) /* would read a NULL float pointer in forward */
        print_error("%s planned with an INT64 constant as input %d\n", op, bad);
    assert_int_not_equal(st, CNV_OK);
    assert_true(strstr(cnv_session_errmsg(s), "'n'") != NULL);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void test_int64_constant_as_float_input(void **state)
{
    (void)state;
    const char *conv_in[3] = {"x", "w", "b"};
    cnv_shape conv_sh[3] = {tu_shape(4, 1, 2, 5, 5), tu_shape(4, 3, 2, 3, 3), tu_shape(1, 3)};
    int64_const_case("Conv", 3, conv_in, 2, conv_sh);
    int64_const_case("Conv", 3, conv_in, 1, conv_sh);
    const char *gemm_in[3] = {"a", "b", "c"};
    cnv_shape gemm_sh[3] = {tu_shape(2, 2, 3), tu_shape(2, 3, 4), tu_shape(1, 4)};
    int64_const_case("Gemm", 3, gemm_in, 1, gemm_sh);
    int64_const_case("Gemm", 3, gemm_in, 2, gemm_sh);
    const char *add_in[2] = {"a", "b"};
    cnv_shape add_sh[2] = {tu_shape(2, 2, 3), tu_shape(2, 2, 3)};
    int64_const_case("Add", 2, add_in, 1, add_sh);
    const char *bn_in[5] = {"x", "scale", "bias", "mean", "var"};
    cnv_shape bn_sh[5] = {tu_shape(4, 1, 2, 3, 3), tu_shape(1, 2), tu_shape(1, 2), tu_shape(1, 2),
                          tu_shape(1, 2)};
    int64_const_case("BatchNormalization", 5, bn_in, 3, bn_sh);
}

/* The same question for every registered op: an INT64 constant in any
 * input must be refused at plan (or build), or folded at plan time (shape
 * arithmetic), when forward and backward have nothing to run; it must never
 * be read as float. Each op gets INT64 constants in every input (its least
 * and greatest count up to 5), with a few common attributes so that more
 * plans get that far; under ASan a forward that read one would show. The
 * model has an unrelated graph input so it can plan. */
static void test_int64_constant_into_every_op(void **state)
{
    (void)state;
    static const int64_t k2[2] = {2, 2};
    cnv_attr attrs[3] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_int("axis", 1), tu_attr_int("to", 1)};
    cnv_shape xs = tu_shape(2, 1, 3), cs = tu_shape(4, 1, 2, 4, 4);
    int64_t cdata[32] = {0};
    int bad = 0, refused = 0, folded = 0;
    for (int i = 0; i < cnv_op_count(); i++) {
        const cnv_op *op = cnv_op_at(i);
        int counts[2] = {op->min_in > 0 ? op->min_in : 1, op->max_in < 5 ? op->max_in : 5};
        for (int c = 0; c < 2; c++) {
            int n_in = counts[c];
            for (int with_attrs = 0; with_attrs < 2; with_attrs++) {
                cnv_model *m = NULL;
                assert_int_equal(cnv_model_create(&m), CNV_OK);
                assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
                assert_int_equal(cnv_model_add_const(m, "c", CNV_INT64, &cs, cdata), CNV_OK);
                const char *ins[5] = {"c", "c", "c", "c", "c"}, *out = "y";
                cnv_status st = cnv_model_add_node(m, op->type, "n", n_in, ins, 1, &out, with_attrs ? 3 : 0,
                                                   attrs);
                if (st == CNV_OK)
                    st = cnv_model_add_output(m, "y");
                cnv_session *s = NULL;
                if (st == CNV_OK) {
                    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
                    st = cnv_session_plan_shapes(s, 1, &xs);
                }
                if (st != CNV_OK) {
                    refused++;
                } else {
                    /* Planned: the node must have been folded, so forward
                     * runs nothing, and an INT64 result is not handed out
                     * as floats. */
                    float *y = NULL;
                    cnv_status fs = cnv_session_forward(s);
                    cnv_status ts = cnv_session_tensor(s, tu_t(s, "y"), &y, NULL);
                    printf("  %-22s %d INT64 inputs%s: folded at plan time (output %s)\n", op->type, n_in,
                           with_attrs ? " + attributes" : "", ts == CNV_OK ? "float" : "INT64");
                    if (fs != CNV_OK || (ts == CNV_OK && !y)) {
                        print_error("%s: forward %s after planning with INT64 inputs\n", op->type,
                                    cnv_status_string(fs));
                        bad++;
                    }
                    folded++;
                }
                cnv_session_free(s);
                cnv_model_free(m);
            }
        }
    }
    printf("%d ops, every input an INT64 constant: %d models refused, %d folded\n", cnv_op_count(), refused,
           folded);
    assert_true(refused > 0);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_onnx),
        cmocka_unit_test(test_replay_tensor_pb),
        cmocka_unit_test(test_replay_image),
        cmocka_unit_test(test_replay_graph),
        cmocka_unit_test(test_empty_tensor_with_huge_dims),
        cmocka_unit_test(test_int64_constant_as_float_input),
        cmocka_unit_test(test_int64_constant_into_every_op),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
