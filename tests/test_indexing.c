/* The shape and indexing ops (src/engine/ops/slice.c, gather.c, expand.c,
 * reshape.c, cast.c, shape.c): each forward against index arithmetic
 * written here, each gradient by central finite differences (a slice
 * picked twice gets both gradients; a broadcast one the sum), Cast's
 * rounding to FLOAT16 and BFLOAT16 at the closed-form boundaries, and shape
 * arithmetic folded at plan time for each planned size. (ONNX's node tests
 * for these ops run in test_onnx_conformance.) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "core/shape.h"

#define COMMA , /* a comma inside one macro argument */

typedef struct ivec {
    const char *name;
    int n;
    const int64_t *v;
} ivec;

/* x (a graph input of shape xs), then INT64 constants, into op; outputs
 * y, y1, ... */
static cnv_model *build(const char *op, cnv_shape xs, int n_int, const ivec *ints, int n_attrs,
                        const cnv_attr *attrs, int n_out)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_set_opset(m, 13), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    const char *ins[6] = {"x"};
    for (int k = 0; k < n_int; k++) {
        ins[k + 1] = ints[k].name;
        if (!ints[k].name[0])
            continue;
        cnv_shape s = tu_shape(1, ints[k].n);
        assert_int_equal(cnv_model_add_const(m, ints[k].name, CNV_INT64, &s, ints[k].v), CNV_OK);
    }
    static const char *outs[3] = {"y", "y1", "y2"};
    if (cnv_model_add_node(m, op, "n", 1 + n_int, ins, n_out, outs, n_attrs, attrs) != CNV_OK)
        fail_msg("%s: %s", op, cnv_model_errmsg(m));
    for (int k = 0; k < n_out; k++)
        assert_int_equal(cnv_model_add_output(m, outs[k]), CNV_OK);
    return m;
}

static const float *tensor(cnv_session *s, const char *name, cnv_shape *sh)
{
    float *p;
    if (cnv_session_tensor(s, tu_t(s, name), &p, sh) != CNV_OK)
        fail_msg("%s: %s", name, cnv_session_errmsg(s));
    return p;
}

/* The element of x (shape xs, row-major) at index idx. */
static float at(const float *x, const cnv_shape *xs, const int64_t *idx)
{
    int64_t off = 0;
    for (int d = 0; d < xs->ndim; d++)
        off = off * xs->dims[d] + idx[d];
    return x[off];
}

/* idx = the multi-index of flat position i in shape s. */
static void unflat(const cnv_shape *s, int64_t i, int64_t *idx)
{
    for (int d = s->ndim - 1; d >= 0; d--) {
        idx[d] = i % s->dims[d];
        i /= s->dims[d];
    }
}

static void fd(cnv_session *s, cnv_model *m, const char *out, const char *label)
{
    tu_fd_assert(label, tu_fd_check(s, m, out, 1e-3, 200, 7), 1e-3);
}

/* ----------------------------------------------------------------- Slice */

static void slice(void **state)
{
    (void)state;
    cnv_shape xs = tu_shape(4, 2, 3, 5, 6);
    static const int64_t ax1[] = {3, 1}, st1[] = {1, 0}, en1[] = {5, -1}, sp1[] = {2, 1};
    static const int64_t ax2[] = {2}, st2[] = {-1}, en2[] = {-100}, sp2[] = {-2};
    static const int64_t ax3[] = {-1, 0}, st3[] = {2, 0}, en3[] = {INT64_MAX, 1};
    const struct {
        const char *label;
        ivec in[4];
        int n;
        int64_t start[4], step[4], len[4]; /* per dim of x: what the case picks */
    } cases[] = {
        {"axes (3,1), step 2", {{"s", 2, st1}, {"e", 2, en1}, {"a", 2, ax1}, {"p", 2, sp1}}, 4,
         {0, 0, 0, 1}, {1, 1, 1, 2}, {2, 2, 5, 2}},
        {"negative step from the end", {{"s", 1, st2}, {"e", 1, en2}, {"a", 1, ax2}, {"p", 1, sp2}}, 4,
         {0, 0, 4, 0}, {1, 1, -2, 1}, {2, 3, 3, 6}},
        {"negative axis, INT64_MAX end, no steps", {{"s", 2, st3}, {"e", 2, en3}, {"a", 2, ax3}}, 3,
         {0, 0, 0, 2}, {1, 1, 1, 1}, {1, 3, 5, 4}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cnv_model *m = build("Slice", xs, cases[k].n, cases[k].in, 0, NULL, 1);
        cnv_session *s = tu_session(m, NULL, 3 + k);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        cnv_shape ys, xsh;
        const float *x = tensor(s, "x", &xsh), *y = tensor(s, "y", &ys);
        for (int d = 0; d < 4; d++)
            if (ys.dims[d] != cases[k].len[d])
                fail_msg("%s: dim %d is %lld, want %lld", cases[k].label, d, (long long)ys.dims[d],
                         (long long)cases[k].len[d]);
        int64_t n = cnv_shape_count(&ys);
        for (int64_t i = 0; i < n; i++) {
            int64_t idx[4], src[4];
            unflat(&ys, i, idx);
            for (int d = 0; d < 4; d++)
                src[d] = cases[k].start[d] + idx[d] * cases[k].step[d];
            assert_true(y[i] == at(x, &xsh, src));
        }
        printf("Slice, %s: %s, %lld values where the index arithmetic says\n", cases[k].label,
               cnv_shape_str(&ys, (char[64]){0}, 64), (long long)n);
        fd(s, m, "y", cases[k].label);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* ---------------------------------------------------------------- Gather */

static void gather(void **state)
{
    (void)state;
    cnv_shape xs = tu_shape(3, 3, 4, 5);
    static const int64_t idx[] = {0, 3, 3, -1}; /* 3 picked three times */
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    cnv_shape is = tu_shape(2, 2, 2);
    assert_int_equal(cnv_model_add_const(m, "i", CNV_INT64, &is, idx), CNV_OK);
    cnv_attr axis = tu_attr_int("axis", 1);
    assert_int_equal(cnv_model_add_node(m, "Gather", "g", 2, (const char *[]){"x", "i"}, 1, (const char *[]){"y"},
                                        1, &axis),
                     CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    cnv_session *s = tu_session(m, NULL, 5);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    cnv_shape ys, xsh;
    const float *x = tensor(s, "x", &xsh), *y = tensor(s, "y", &ys);
    assert_int_equal(ys.ndim, 4);
    assert_true(ys.dims[0] == 3 && ys.dims[1] == 2 && ys.dims[2] == 2 && ys.dims[3] == 5);
    for (int64_t i = 0; i < cnv_shape_count(&ys); i++) {
        int64_t o[4];
        unflat(&ys, i, o);
        int64_t j = idx[o[1] * 2 + o[2]];
        int64_t src[3] = {o[0], j < 0 ? j + 4 : j, o[3]};
        assert_true(y[i] == at(x, &xsh, src));
    }
    fd(s, m, "y", "Gather, an index picked three times");
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ----------------------------------------------------------------- Split */

static void split(void **state)
{
    (void)state;
    cnv_shape xs = tu_shape(3, 2, 7, 3);
    static const int64_t parts[] = {2, 5};
    ivec in[1] = {{"split", 2, parts}};
    cnv_attr axis = tu_attr_int("axis", 1);
    cnv_model *m = build("Split", xs, 1, in, 1, &axis, 2);
    cnv_session *s = tu_session(m, NULL, 9);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    cnv_shape a, b, xsh;
    const float *x = tensor(s, "x", &xsh), *y0 = tensor(s, "y", &a), *y1 = tensor(s, "y1", &b);
    assert_true(a.dims[1] == 2 && b.dims[1] == 5);
    for (int64_t i = 0; i < cnv_shape_count(&b); i++) {
        int64_t o[3];
        unflat(&b, i, o);
        o[1] += 2;
        assert_true(y1[i] == at(x, &xsh, o));
    }
    for (int64_t i = 0; i < cnv_shape_count(&a); i++) {
        int64_t o[3];
        unflat(&a, i, o);
        assert_true(y0[i] == at(x, &xsh, o));
    }
    fd(s, m, "y1", "Split, second part");
    fd(s, m, "y", "Split, first part");
    cnv_session_free(s);
    cnv_model_free(m);
}

/* --------------------------------------------------------- Expand, Tile */

static void expand_and_tile(void **state)
{
    (void)state;
    static const int64_t shape[] = {2, 3, 5, 4}, reps[] = {2, 1, 3};
    cnv_shape xs = tu_shape(3, 3, 1, 4);
    ivec e[1] = {{"shape", 4, shape}}, t[1] = {{"repeats", 3, reps}};
    for (int k = 0; k < 2; k++) {
        cnv_model *m = build(k ? "Tile" : "Expand", xs, 1, k ? t : e, 0, NULL, 1);
        cnv_session *s = tu_session(m, NULL, 11);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        cnv_shape ys, xsh;
        const float *x = tensor(s, "x", &xsh), *y = tensor(s, "y", &ys);
        for (int64_t i = 0; i < cnv_shape_count(&ys); i++) {
            int64_t o[4], src[3];
            unflat(&ys, i, o);
            for (int d = 0; d < 3; d++) {
                int64_t od = k ? o[d] : o[d + 1];
                src[d] = od % xsh.dims[d]; /* broadcast (dim 1) or tiled */
            }
            assert_true(y[i] == at(x, &xsh, src));
        }
        printf("%s to %s: every value where it repeats from\n", k ? "Tile" : "Expand",
               cnv_shape_str(&ys, (char[64]){0}, 64));
        fd(s, m, "y", k ? "Tile" : "Expand (gradient summed over the copies)");
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* ------------------------------------------------ Squeeze and Unsqueeze */

static void squeeze_unsqueeze(void **state)
{
    (void)state;
    static const int64_t sq[] = {1, -1}, unsq[] = {0, 3, -1};
    cnv_shape xs = tu_shape(4, 2, 1, 3, 1);
    ivec a[1] = {{"axes", 2, sq}}, b[1] = {{"axes", 3, unsq}};
    cnv_model *m = build("Squeeze", xs, 1, a, 0, NULL, 1);
    cnv_session *s = tu_session(m, NULL, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    cnv_shape ys;
    tensor(s, "y", &ys);
    assert_true(ys.ndim == 2 && ys.dims[0] == 2 && ys.dims[1] == 3);
    fd(s, m, "y", "Squeeze");
    cnv_session_free(s);
    cnv_model_free(m);
    m = build("Unsqueeze", xs, 1, b, 0, NULL, 1);
    s = tu_session(m, NULL, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    tensor(s, "y", &ys);
    /* rank 7: 1 x 2 x 1 x 1 x 3 x 1 x 1 */
    assert_int_equal(ys.ndim, 7);
    assert_true(ys.dims[0] == 1 && ys.dims[1] == 2 && ys.dims[3] == 1 && ys.dims[4] == 3 && ys.dims[6] == 1);
    fd(s, m, "y", "Unsqueeze");
    cnv_session_free(s);
    cnv_model_free(m);
    /* squeezing a dim that is not 1 is refused */
    static const int64_t bad[] = {0};
    ivec c[1] = {{"axes", 1, bad}};
    m = build("Squeeze", xs, 1, c, 0, NULL, 1);
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_plan_shapes(s, 1, &xs), CNV_ERR_SHAPE);
    assert_non_null(strstr(cnv_session_errmsg(s), "not 1"));
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ------------------------------------------------------------------ Cast */

static void cast_rounding(void **state)
{
    (void)state;
    const float h = 1.0f / 2048.0f; /* half an ulp of FLOAT16 at 1 */
    const struct {
        float x, f16, bf16;
    } cases[] = {
        {1.0f + h, 1.0f, 1.0f},                              /* a tie: to even */
        {1.0f + 3 * h, 1.0f + 4 * h, 1.0f},                  /* 1.5 ulp: up to even */
        {65504.0f, 65504.0f, 65536.0f},                      /* FLOAT16's largest */
        {65519.0f, 65504.0f, 65536.0f},                      /* rounds down to it */
        {65520.0f, INFINITY, 65536.0f},                      /* past it: infinity */
        {-65520.0f, -INFINITY, -65536.0f},
        {0x1p-25f, 0.0f, 0x1p-25f},                          /* half the least subnormal */
        {0x3p-25f, 0x1p-23f, 0x3p-25f},                      /* 1.5 of it: up to 2 */
        {1.0f + 0x1p-8f, 1.0f + 0x1p-8f, 1.0f},             /* a BFLOAT16 tie */
        {1.0f + 0x3p-8f, 1.0f + 0x3p-8f, 1.0f + 0x1p-6f},  /* 1.5 ulp of BFLOAT16 */
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int type = 10; type <= 16; type += 6) {
        cnv_shape xs = tu_shape(1, n);
        cnv_attr to = tu_attr_int("to", type);
        cnv_model *m = build("Cast", xs, 0, NULL, 1, &to, 1);
        float xin[16];
        for (int i = 0; i < n; i++)
            xin[i] = cases[i].x;
        const float *data[1] = {xin};
        cnv_session *s = tu_session(m, data, 0);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        cnv_shape ys;
        const float *y = tensor(s, "y", &ys);
        for (int i = 0; i < n; i++) {
            float want = type == 10 ? cases[i].f16 : cases[i].bf16;
            if (!(y[i] == want))
                fail_msg("Cast to %s of %.9g: %.9g, want %.9g", type == 10 ? "FLOAT16" : "BFLOAT16",
                         (double)cases[i].x, (double)y[i], (double)want);
        }
        /* the gradient passes straight through */
        float seed[16];
        for (int i = 0; i < n; i++)
            seed[i] = (float)i - 2.5f;
        assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
        assert_memory_equal(cnv_session_input_grad(s), seed, (size_t)n * sizeof(float));
        printf("Cast to %s: %d boundary values rounded as IEEE 754 says; gradient passed through\n",
               type == 10 ? "FLOAT16" : "BFLOAT16", n);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* ------------------------------------------------------ shape arithmetic */

/* y = Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])): the
 * export of x.view(x.size(0), -1). Planned at two sizes, the target is
 * folded for each; the gradient is x's. A shape computed from the image's
 * values (a Cast of x to INT64) is refused with a message. */
static void shape_arithmetic(void **state)
{
    (void)state;
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_set_opset(m, 13), CNV_OK);
    cnv_shape xs = tu_shape(4, -1, 3, -1, -1), one = tu_shape(1, 1), scalar = tu_shape(0);
    static const int64_t zero[1] = {0}, minus1[1] = {-1};
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "i0", CNV_INT64, &scalar, zero), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "ax", CNV_INT64, &one, zero), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "rest", CNV_INT64, &one, minus1), CNV_OK);
    cnv_attr axis0 = tu_attr_int("axis", 0);
#define NODE(op, nin, ins, out, na, at)                                                                       \
    assert_int_equal(cnv_model_add_node(m, op, out, nin, (const char *[])ins, 1, (const char *[]){out}, na, at), \
                     CNV_OK)
    NODE("Shape", 1, {"x"}, "shp", 0, NULL);
    NODE("Gather", 2, {"shp" COMMA "i0"}, "n", 1, &axis0);
    NODE("Unsqueeze", 2, {"n" COMMA "ax"}, "n1", 0, NULL);
    NODE("Concat", 2, {"n1" COMMA "rest"}, "target", 1, &axis0);
    NODE("Reshape", 2, {"x" COMMA "target"}, "y", 0, NULL);
#undef NODE
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    for (int k = 0; k < 2; k++) {
        int n = 1 + k, h = 4 + 3 * k, w = 5;
        assert_int_equal(cnv_session_plan(s, n, h, w), CNV_OK);
        tu_rng r;
        tu_rng_init(&r, 4);
        tu_fill(&r, cnv_session_input(s), (int64_t)n * 3 * h * w, -1, 1);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        cnv_shape ys;
        const float *y = tensor(s, "y", &ys);
        assert_true(ys.ndim == 2 && ys.dims[0] == n && ys.dims[1] == 3 * h * w);
        assert_memory_equal(y, cnv_session_input(s), (size_t)n * 3 * h * w * sizeof(float));
        printf("x.view(x.size(0), -1) at %dx3x%dx%d: y is %s\n", n, h, w, cnv_shape_str(&ys, (char[64]){0}, 64));
        fd(s, m, "y", "Reshape to a target computed at plan time");
    }
    cnv_session_free(s);
    cnv_model_free(m);

    /* the target from the image's values: refused, naming the node */
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape fs = tu_shape(1, 2);
    assert_int_equal(cnv_model_add_input(m, "x", &fs), CNV_OK);
    cnv_attr to = tu_attr_int("to", 7);
    assert_int_equal(cnv_model_add_node(m, "Cast", "c", 1, (const char *[]){"x"}, 1, (const char *[]){"t"}, 1, &to),
                     CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Reshape", "r", 2, (const char *[]){"x", "t"}, 1, (const char *[]){"y"}, 0,
                                        NULL),
                     CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_plan_shapes(s, 1, &fs), CNV_ERR_UNSUPPORTED);
    printf("a shape from the image's values: %s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "node 'c'"));
    cnv_session_free(s);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slice),          cmocka_unit_test(gather),         cmocka_unit_test(split),
        cmocka_unit_test(expand_and_tile), cmocka_unit_test(squeeze_unsqueeze), cmocka_unit_test(cast_rounding),
        cmocka_unit_test(shape_arithmetic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
