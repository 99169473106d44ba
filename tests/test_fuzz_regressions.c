/* Replays every input the fuzzers crashed on (tests/fuzz_regressions/
 * {onnx,pb,image}/) through the same steps as the fuzz targets
 * (fuzz/fuzz_run.h), plus hand-made reproducers of what they found. Under
 * `make test SANITIZE=1` this is where a regression would show. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The same question for every op whose data input is a float: an INT64
 * constant there must be refused at plan (or build), never read as float
 * in forward. The model has an unrelated graph input so it can plan. */
static void test_int64_constant_into_every_op(void **state)
{
    (void)state;
    static const int64_t k2[2] = {2, 2}, pads[8] = {0, 0, 1, 1, 0, 0, 1, 1};
    cnv_attr kernel = tu_attr_ints("kernel_shape", 2, k2), axis = tu_attr_int("axis", 1);
    static const struct {
        const char *op;
        int n_in;
        int attr; /* 0 none, 1 kernel_shape, 2 axis */
    } ops[] = {
        {"Relu", 1, 0},   {"Identity", 1, 0},          {"Dropout", 1, 0},
        {"Flatten", 1, 0}, {"Softmax", 1, 0},          {"GlobalAveragePool", 1, 0},
        {"MaxPool", 1, 1}, {"AveragePool", 1, 1},      {"Concat", 2, 2},
        {"Reshape", 2, 0}, {"Pad", 2, 0},
    };
    cnv_shape xs = tu_shape(2, 1, 3), cs = tu_shape(4, 1, 2, 4, 4), ps = tu_shape(1, 8),
              rs = tu_shape(1, 2);
    int64_t cdata[32] = {0}, rshape[2] = {1, 32};
    int bad = 0;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        cnv_model *m = NULL;
        assert_int_equal(cnv_model_create(&m), CNV_OK);
        assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
        assert_int_equal(cnv_model_add_const(m, "c", CNV_INT64, &cs, cdata), CNV_OK);
        const char *ins[2] = {"c", "c"}, *out = "y";
        if (!strcmp(ops[i].op, "Reshape")) {
            assert_int_equal(cnv_model_add_const(m, "shape", CNV_INT64, &rs, rshape), CNV_OK);
            ins[1] = "shape";
        } else if (!strcmp(ops[i].op, "Pad")) {
            assert_int_equal(cnv_model_add_const(m, "pads", CNV_INT64, &ps, pads), CNV_OK);
            ins[1] = "pads";
        }
        const cnv_attr *a = ops[i].attr == 1 ? &kernel : ops[i].attr == 2 ? &axis : NULL;
        cnv_status st = cnv_model_add_node(m, ops[i].op, "n", ops[i].n_in, ins, 1, &out, a ? 1 : 0, a);
        if (st == CNV_OK)
            st = cnv_model_add_output(m, "y");
        if (st != CNV_OK) {
            printf("  %-18s INT64 constant input: refused at build: %s\n", ops[i].op,
                   cnv_model_errmsg(m));
            cnv_model_free(m);
            continue;
        }
        cnv_session *s = NULL;
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        st = cnv_session_plan_shapes(s, 1, &xs);
        printf("  %-18s INT64 constant input: plan -> %s: %s\n", ops[i].op, cnv_status_string(st),
               cnv_session_errmsg(s));
        if (st == CNV_OK) {
            /* Forward would read the int64 constant as float (NULL). */
            print_error("%s planned with an INT64 data input\n", ops[i].op);
            bad++;
        }
        cnv_session_free(s);
        cnv_model_free(m);
    }
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_onnx),
        cmocka_unit_test(test_replay_tensor_pb),
        cmocka_unit_test(test_replay_image),
        cmocka_unit_test(test_int64_constant_as_float_input),
        cmocka_unit_test(test_int64_constant_into_every_op),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
