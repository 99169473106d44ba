/* The pointwise unary ops (src/engine/ops/unary.c): every op's forward
 * against a double-precision formula written here, its gradient by central
 * finite differences away from kinks, the gradient at each kink exactly
 * (PyTorch's rules), Clip's bounds as attributes, constants and run-time
 * inputs (with their own gradients), and each op fused into a Conv as its
 * epilogue equal, bit for bit, to the op run on its own. (ONNX's node tests
 * for these ops run in test_onnx_conformance.) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

typedef struct op_case {
    const char *op;
    double (*ref)(double x);
    float lo, hi;       /* the inputs drawn */
    const float *kinks; /* points kept 0.05 away from (NULL: none) */
    int n_kinks;
} op_case;

static double r_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double r_hardsigmoid(double x) { return fmax(0.0, fmin(1.0, 0.2 * x + 0.5)); }
static double r_hardswish(double x) { return x * fmax(0.0, fmin(1.0, x / 6.0 + 0.5)); }
static double r_tanh(double x) { return tanh(x); }
static double r_leakyrelu(double x) { return x >= 0 ? x : 0.01 * x; }
static double r_elu(double x) { return x > 0 ? x : exp(x) - 1.0; }
static double r_selu(double x)
{
    const double a = 1.6732632423543772, g = 1.0507009873554805;
    return x > 0 ? g * x : g * a * (exp(x) - 1.0);
}
static double r_celu(double x) { return fmax(0.0, x) + fmin(0.0, exp(x) - 1.0); }
static double r_softplus(double x) { return log(1.0 + exp(x)); }
static double r_softsign(double x) { return x / (1.0 + fabs(x)); }
static double r_thresholdedrelu(double x) { return x > 1.0 ? x : 0.0; }
static double r_gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double r_erf(double x) { return erf(x); }
static double r_sqrt(double x) { return sqrt(x); }
static double r_exp(double x) { return exp(x); }
static double r_log(double x) { return log(x); }
static double r_neg(double x) { return -x; }
static double r_reciprocal(double x) { return 1.0 / x; }
static double r_abs(double x) { return fabs(x); }
static double r_clip_attr(double x) { return fmin(fmax(x, -0.5), 1.5); } /* min -0.5, max 1.5 */

static const float k0[] = {0.0f}, k1[] = {1.0f}, k_hs[] = {-3.0f, 3.0f}, k_hsig[] = {-2.5f, 2.5f};

static const op_case g_ops[] = {
    {"Sigmoid", r_sigmoid, -6, 6, NULL, 0},
    {"HardSigmoid", r_hardsigmoid, -4, 4, k_hsig, 2},
    {"HardSwish", r_hardswish, -5, 5, k_hs, 2},
    {"Tanh", r_tanh, -3, 3, NULL, 0},
    {"LeakyRelu", r_leakyrelu, -2, 2, k0, 1},
    {"Elu", r_elu, -3, 2, k0, 1},
    {"Selu", r_selu, -3, 2, k0, 1},
    {"Celu", r_celu, -3, 2, k0, 1},
    {"Softplus", r_softplus, -6, 6, NULL, 0},
    {"Softsign", r_softsign, -4, 4, k0, 1},
    {"ThresholdedRelu", r_thresholdedrelu, -2, 3, k1, 1},
    {"Gelu", r_gelu, -4, 4, NULL, 0},
    {"Erf", r_erf, -2, 2, NULL, 0},
    {"Sqrt", r_sqrt, 0.1f, 4, NULL, 0},
    {"Exp", r_exp, -3, 3, NULL, 0},
    {"Log", r_log, 0.1f, 5, NULL, 0},
    {"Neg", r_neg, -3, 3, NULL, 0},
    {"Reciprocal", r_reciprocal, 0.3f, 3, NULL, 0},
    {"Abs", r_abs, -3, 3, k0, 1},
};

/* n values in [lo, hi], none within 0.05 of a kink; Reciprocal's also
 * negative. */
static void draw(const op_case *c, float *x, int n, uint64_t seed)
{
    tu_rng r;
    tu_rng_init(&r, seed);
    for (int i = 0; i < n; i++) {
        float v;
        int near;
        do {
            v = tu_uniform(&r, c->lo, c->hi);
            near = 0;
            for (int k = 0; k < c->n_kinks; k++)
                near |= fabsf(v - c->kinks[k]) < 0.05f;
        } while (near);
        x[i] = !strcmp(c->op, "Reciprocal") && i % 2 ? -v : v;
    }
}

static void forward_and_gradient(void **state)
{
    (void)state;
    enum { N = 2 * 3 * 4 * 5 };
    for (size_t k = 0; k < sizeof g_ops / sizeof g_ops[0]; k++) {
        const op_case *c = &g_ops[k];
        tu_tensor in = {"x", tu_shape(4, 2, 3, 4, 5), NULL, 0};
        cnv_model *m = tu_one_node(c->op, 1, &in, 0, NULL);
        float x[N];
        draw(c, x, N, 100 + k);
        cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        float *y;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
        double worst = 0.0;
        for (int i = 0; i < N; i++) {
            double want = c->ref(x[i]), d = fabs(y[i] - want) / fmax(1.0, fabs(want));
            worst = d > worst ? d : worst;
        }
        char label[64];
        snprintf(label, sizeof label, "%s x", c->op);
        printf("%-16s forward: max rel err vs double %.2g; ", c->op, worst);
        assert_true(worst < 2e-6);
        tu_fd_assert(label, tu_fd_check(s, m, "y", 1e-3, N, 9 + k), 2e-3);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* dy/dx at each kink for a seed of ones: PyTorch's choices. */
static void gradients_at_kinks(void **state)
{
    (void)state;
    const struct {
        const char *op;
        float x, grad;
    } k[] = {
        {"LeakyRelu", 0.0f, 0.01f}, /* leaky_relu_backward: x > 0 ? g : g * slope */
        {"Elu", 0.0f, 1.0f},        /* the negative side: alpha * exp(0) */
        {"HardSwish", -3.0f, -0.5f}, {"HardSwish", 3.0f, 1.5f}, {"HardSwish", 3.01f, 1.0f},
        {"HardSwish", -3.01f, 0.0f}, {"Abs", 0.0f, 0.0f},        {"ThresholdedRelu", 1.0f, 0.0f},
        {"HardSigmoid", 2.5f, 0.0f}, {"HardSigmoid", -2.5f, 0.0f},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        tu_tensor in = {"x", tu_shape(1, 1), NULL, 0};
        cnv_model *m = tu_one_node(k[i].op, 1, &in, 0, NULL);
        cnv_session *s = tu_session(m, (const float *const[]){&k[i].x}, 1);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        const float one = 1.0f;
        assert_int_equal(tu_backward(s, "y", &one), CNV_OK);
        float g = cnv_session_input_grad(s)[0];
        printf("%s'(%g) = %g (want %g)\n", k[i].op, k[i].x, g, k[i].grad);
        assert_true(fabsf(g - k[i].grad) < 1e-6f);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* Clip: attributes (opset 6), constant inputs and run-time inputs
 * (opset 13); gradient strictly inside, bounds' own gradients. */
static void clip_forms(void **state)
{
    (void)state;
    const float x[6] = {-2.0f, -0.5f, 0.0f, 1.0f, 1.5f, 3.0f};
    /* opset 6: attributes */
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_set_opset(m, 6), CNV_OK);
    cnv_shape xs = tu_shape(1, 6), one = tu_shape(0);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    cnv_attr at[2] = {tu_attr_float("min", -0.5f), tu_attr_float("max", 1.5f)};
    const char *in = "x", *out = "y";
    assert_int_equal(cnv_model_add_node(m, "Clip", "c", 1, &in, 1, &out, 2, at), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
    for (int i = 0; i < 6; i++)
        assert_true(y[i] == (float)r_clip_attr(x[i]));
    const float ones[6] = {1, 1, 1, 1, 1, 1};
    assert_int_equal(tu_backward(s, "y", ones), CNV_OK);
    const float *g = cnv_session_input_grad(s);
    const float want_g[6] = {0, 0, 1, 1, 0, 0}; /* 0 at the bounds themselves */
    assert_memory_equal(g, want_g, sizeof want_g);
    cnv_session_free(s);
    cnv_model_free(m);

    /* opset 13: min a run-time input, max a constant; both get gradients */
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "lo", &one), CNV_OK);
    const float hi = 1.5f;
    assert_int_equal(cnv_model_add_const(m, "hi", CNV_FLOAT32, &one, &hi), CNV_OK);
    const char *ins[3] = {"x", "lo", "hi"};
    assert_int_equal(cnv_model_add_node(m, "Clip", "c", 3, ins, 1, &out, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    const float lo = -0.5f;
    s = tu_session(m, (const float *const[]){x, &lo}, 1);
    assert_int_equal(cnv_session_set_param_grads(s, 1), CNV_OK);
    cnv_shape shapes[2] = {xs, one};
    assert_int_equal(cnv_session_plan_shapes(s, 2, shapes), CNV_OK);
    float *xin, *loin;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &xin, NULL), CNV_OK);
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "lo"), &loin, NULL), CNV_OK);
    memcpy(xin, x, sizeof x);
    *loin = lo;
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
    for (int i = 0; i < 6; i++)
        assert_true(y[i] == (float)r_clip_attr(x[i]));
    /* the bound is read at run time */
    *loin = 0.5f;
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    assert_true(y[2] == 0.5f && y[3] == 1.0f);
    *loin = lo;
    const float seed[6] = {1, 2, 3, 4, 5, 6};
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
    float *gl, *gh;
    assert_int_equal(cnv_session_grad(s, tu_t(s, "lo"), &gl), CNV_OK);
    assert_int_equal(cnv_session_grad(s, tu_t(s, "hi"), &gh), CNV_OK);
    /* x = -2 and -0.5 sit on min (1 + 2), 1.5 and 3 on max (5 + 6) */
    assert_true(*gl == 3.0f && *gh == 11.0f);
    /* and by finite differences away from ties */
    const float x2[6] = {-2.0f, -0.7f, 0.0f, 1.0f, 1.2f, 3.0f};
    memcpy(xin, x2, sizeof x2);
    tu_fd_assert("Clip x, min, max", tu_fd_check(s, m, "y", 1e-3, 10, 4), 1e-3);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* Conv -> op: the op runs as the Conv's epilogue; Conv -> Identity -> op
 * cannot fuse. Same numbers, bit for bit, forward and backward. */
static cnv_model *conv_then(const char *op, int fuse)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, 1, 2, 7, 6), ws = tu_shape(4, 3, 2, 3, 3);
    float w[54];
    tu_rng r;
    tu_rng_init(&r, 31);
    tu_fill(&r, w, 54, -0.6f, 0.6f);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "w", CNV_FLOAT32, &ws, w), CNV_OK);
    const int64_t k3[2] = {3, 3}, p1[4] = {1, 1, 1, 1};
    cnv_attr ca[2] = {tu_attr_ints("kernel_shape", 2, k3), tu_attr_ints("pads", 4, p1)};
    const char *c = "c", *i = "i", *y = "y";
    assert_int_equal(cnv_model_add_node(m, "Conv", "conv", 2, (const char *const[]){"x", "w"}, 1, &c, 2, ca), CNV_OK);
    if (!fuse)
        assert_int_equal(cnv_model_add_node(m, "Identity", "id", 1, &c, 1, &i, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, op, "act", 1, fuse ? &c : &i, 1, &y, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

static void fused_equals_unfused(void **state)
{
    (void)state;
    enum { NX = 2 * 7 * 6, NY = 3 * 7 * 6 };
    for (size_t k = 0; k < sizeof g_ops / sizeof g_ops[0]; k++) {
        float out[2][NY], grad[2][NX];
        for (int fuse = 0; fuse < 2; fuse++) {
            cnv_model *m = conv_then(g_ops[k].op, fuse);
            float x[NX];
            tu_rng r;
            tu_rng_init(&r, 5);
            /* Sqrt, Log, Reciprocal: positive conv outputs need positive
             * inputs and weights do not give them; what matters is the
             * same numbers, NaN included */
            tu_fill(&r, x, NX, -1.0f, 1.0f);
            cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
            assert_int_equal(cnv_session_forward(s), CNV_OK);
            float *y;
            assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
            memcpy(out[fuse], y, sizeof out[fuse]);
            float seed[NY];
            tu_fill(&r, seed, NY, -1.0f, 1.0f);
            assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
            memcpy(grad[fuse], cnv_session_input_grad(s), sizeof grad[fuse]);
            cnv_session_free(s);
            cnv_model_free(m);
        }
        assert_memory_equal(out[0], out[1], sizeof out[0]);
        assert_memory_equal(grad[0], grad[1], sizeof grad[0]);
    }
    printf("%zu ops: fused into the Conv and run alone give the same bits\n", sizeof g_ops / sizeof g_ops[0]);
}

/* Gelu's approximate = "tanh" against its formula; a bad value refused. */
static void gelu_tanh(void **state)
{
    (void)state;
    tu_tensor in = {"x", tu_shape(1, 9), NULL, 0};
    cnv_attr a = tu_attr_string("approximate", "tanh");
    cnv_model *m = tu_one_node("Gelu", 1, &in, 1, &a);
    float x[9];
    for (int i = 0; i < 9; i++)
        x[i] = -4.0f + (float)i + 0.37f;
    cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
    for (int i = 0; i < 9; i++) {
        double v = x[i], want = 0.5 * v * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
        assert_true(fabs(y[i] - want) < 2e-6 * fmax(1.0, fabs(want)));
    }
    tu_fd_assert("Gelu tanh x", tu_fd_check(s, m, "y", 1e-3, 9, 2), 2e-3);
    cnv_session_free(s);
    cnv_model_free(m);
    cnv_model *m2;
    assert_int_equal(cnv_model_create(&m2), CNV_OK);
    cnv_shape xs = tu_shape(1, 3);
    assert_int_equal(cnv_model_add_input(m2, "x", &xs), CNV_OK);
    cnv_attr bad = tu_attr_string("approximate", "erf");
    const char *i1 = "x", *o1 = "y";
    assert_int_equal(cnv_model_add_node(m2, "Gelu", "g", 1, &i1, 1, &o1, 1, &bad), CNV_ERR_FORMAT);
    printf("Gelu approximate=erf: %s\n", cnv_model_errmsg(m2));
    cnv_model_free(m2);
}

/* x -> Sigmoid s -> Mul(x, s) or Mul(s, x) = y (SiLU); with s_out the
 * Sigmoid output is also a graph output, which keeps the Mul from doing
 * the Sigmoid's backward (plan_swish). */
static cnv_model *silu_model(int s_first, int s_out)
{
    cnv_model *m;
    cnv_shape xs = tu_shape(4, 1, 3, 8, 9);
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    const char *si[] = {"x"}, *so[] = {"s"}, *mo[] = {"y"};
    const char *mi[2] = {s_first ? "s" : "x", s_first ? "x" : "s"};
    assert_int_equal(cnv_model_add_node(m, "Sigmoid", "sig", 1, si, 1, so, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Mul", "mul", 2, mi, 1, mo, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    if (s_out)
        assert_int_equal(cnv_model_add_output(m, "s"), CNV_OK);
    return m;
}

/* The Mul of x * Sigmoid(x) does the Sigmoid's backward too: dx and the
 * Sigmoid output's gradient are bit for bit those of the two nodes run
 * apart (on 1 and 2 threads), the Sigmoid's own backward does not run,
 * and a backward from the Sigmoid output alone still runs it. */
static void silu_backward_fused(void **state)
{
    (void)state;
    enum { N = 3 * 8 * 9 };
    float x[N], seed[N];
    tu_rng r;
    tu_rng_init(&r, 77);
    tu_fill(&r, x, N, -6.0f, 6.0f);
    tu_fill(&r, seed, N, -1.0f, 1.0f);
    for (int threads = 1; threads <= 2; threads++)
        for (int s_first = 0; s_first < 2; s_first++) {
            float dx[2][N], ds[2][N];
            double sig_bwd[2];
            for (int apart = 0; apart < 2; apart++) {
                cnv_model *m = silu_model(s_first, apart);
                cnv_session *s;
                assert_int_equal(cnv_session_create(m, &s), CNV_OK);
                assert_int_equal(cnv_session_set_threads(s, threads), CNV_OK);
                assert_int_equal(cnv_session_set_profiling(s, 1), CNV_OK);
                cnv_shape xs = tu_shape(4, 1, 3, 8, 9);
                assert_int_equal(cnv_session_plan_shapes(s, 1, &xs), CNV_OK);
                memcpy(cnv_session_input(s), x, sizeof x);
                assert_int_equal(cnv_session_forward(s), CNV_OK);
                assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
                float *g;
                memcpy(dx[apart], cnv_session_input_grad(s), sizeof dx[apart]);
                assert_int_equal(cnv_session_grad(s, tu_t(s, "s"), &g), CNV_OK);
                memcpy(ds[apart], g, sizeof ds[apart]);
                assert_int_equal(cnv_session_node_time(s, 0, NULL, &sig_bwd[apart]), CNV_OK);
                if (!apart) { /* from the Sigmoid output: its backward runs */
                    assert_int_equal(tu_backward(s, "s", seed), CNV_OK);
                    const float *dxs = cnv_session_input_grad(s);
                    for (int i = 0; i < N; i++) {
                        double sv = 1.0 / (1.0 + exp(-(double)x[i]));
                        assert_true(fabs(dxs[i] - seed[i] * sv * (1.0 - sv)) < 1e-6);
                    }
                }
                cnv_session_free(s);
                cnv_model_free(m);
            }
            assert_memory_equal(dx[0], dx[1], sizeof dx[0]);
            assert_memory_equal(ds[0], ds[1], sizeof ds[0]);
            assert_true(sig_bwd[0] == 0.0 && sig_bwd[1] > 0.0);
            for (int i = 0; i < N; i++) { /* d/dx x s(x) = s + x s (1 - s) */
                double sv = 1.0 / (1.0 + exp(-(double)x[i])), want = seed[i] * (sv + x[i] * sv * (1.0 - sv));
                assert_true(fabs(dx[0][i] - want) < 1e-5 * fmax(1.0, fabs(want)));
                assert_true(fabs(ds[0][i] - seed[i] * x[i]) < 1e-6 * fmax(1.0, fabs(x[i])));
            }
        }
    printf("SiLU: the Mul's fused backward equals the two nodes' to the bit (1 and 2 threads, both orders)\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_and_gradient), cmocka_unit_test(gradients_at_kinks),
        cmocka_unit_test(clip_forms),           cmocka_unit_test(fused_equals_unfused),
        cmocka_unit_test(gelu_tanh),            cmocka_unit_test(silu_backward_fused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
