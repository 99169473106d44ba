/* The reductions (src/engine/ops/reduce.c): every op's forward against a
 * double-precision loop written here over shapes and axis sets that take
 * each path (trailing axes, the channel axis, axes apart like {0,2},
 * negative axes, everything, nothing), keepdims 0 and 1, axes as an
 * attribute and as an input; gradients by central finite differences,
 * alone and in graphs where the input's gradient has two writers; the
 * exact rules: ties split evenly, NaN as the tied extreme, ReduceL2's 0 at
 * an all-zero slice; noop_with_empty_axes; empty reductions; the same bits
 * on any thread count; and every refusal with its status and message.
 * (ONNX's node tests for these ops run in test_onnx_conformance.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/shape.h"

static const char *const g_ops[] = {"ReduceSum", "ReduceMean", "ReduceSumSquare",
                                    "ReduceL2",  "ReduceMax",  "ReduceMin"};
#define N_OPS (int)(sizeof g_ops / sizeof g_ops[0])

enum { AX_NONE, AX_ATTR, AX_INPUT };

/* One reduction node "node" on graph input x, output y. */
typedef struct rspec {
    const char *op;
    int64_t opset;   /* 0: as the form needs (axes_opset) */
    cnv_shape x;
    int form;        /* AX_*: no axes, an attribute, an int64 constant input */
    int n_axes;
    const int64_t *axes;
    int keepdims;    /* -1: absent */
    int noop;        /* noop_with_empty_axes; -1: absent */
} rspec;

/* The first opset with axes as an input (ONNX: 13 for ReduceSum, 18 for
 * the others), or the last one with the attribute. */
static int64_t axes_opset(const char *op, int as_input)
{
    int64_t from = strcmp(op, "ReduceSum") ? 18 : 13;
    return as_input ? from : from - 1;
}

/* The model of r; the status of adding its node in *st (NULL: that must
 * succeed). */
static cnv_model *red_model(const rspec *r, cnv_status *st)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_set_opset(m, r->opset ? r->opset : axes_opset(r->op, r->form == AX_INPUT)),
                     CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &r->x), CNV_OK);
    cnv_attr a[3];
    int na = 0;
    if (r->keepdims >= 0)
        a[na++] = tu_attr_int("keepdims", r->keepdims);
    if (r->noop >= 0)
        a[na++] = tu_attr_int("noop_with_empty_axes", r->noop);
    if (r->form == AX_ATTR)
        a[na++] = tu_attr_ints("axes", r->n_axes, r->axes);
    if (r->form == AX_INPUT) {
        cnv_shape as = tu_shape(1, r->n_axes);
        if (cnv_model_add_const(m, "axes", CNV_INT64, &as, r->axes) != CNV_OK)
            fail_msg("%s", cnv_model_errmsg(m));
    }
    const char *in[2] = {"x", "axes"}, *out = "y";
    cnv_status got = cnv_model_add_node(m, r->op, "node", r->form == AX_INPUT ? 2 : 1, in, 1, &out, na, a);
    if (st) {
        *st = got;
        if (got != CNV_OK)
            return m;
    } else if (got != CNV_OK) {
        fail_msg("adding %s: %s", r->op, cnv_model_errmsg(m));
    }
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

/* ----------------------------------------------------------- reference */

/* The axes of r as a bit per axis of x (all of them when none are given). */
static unsigned red_mask(const rspec *r)
{
    int nd = r->x.ndim;
    if (r->form == AX_NONE || r->n_axes == 0)
        return (1u << nd) - 1;
    unsigned red = 0;
    for (int i = 0; i < r->n_axes; i++)
        red |= 1u << (r->axes[i] < 0 ? r->axes[i] + nd : r->axes[i]);
    return red;
}

/* ONNX's definition in double, one input element at a time: y and its
 * shape. */
static void reference(const char *op, const cnv_shape *xs, unsigned red, int keepdims, const float *x,
                      double *y, cnv_shape *ys)
{
    int64_t n_in = cnv_shape_count(xs), n_out = 1;
    ys->ndim = 0;
    for (int d = 0; d < xs->ndim; d++) {
        if (!(red >> d & 1)) {
            ys->dims[ys->ndim++] = xs->dims[d];
            n_out *= xs->dims[d];
        } else if (keepdims) {
            ys->dims[ys->ndim++] = 1;
        }
    }
    int is_max = !strcmp(op, "ReduceMax"), is_min = !strcmp(op, "ReduceMin");
    for (int64_t o = 0; o < n_out; o++)
        y[o] = is_max ? -INFINITY : is_min ? INFINITY : 0.0;
    int64_t r = n_out ? n_in / n_out : 0;
    for (int64_t i = 0; i < n_in; i++) {
        int64_t rest = i, o = 0, scale = 1;
        for (int d = xs->ndim - 1; d >= 0; d--) {
            int64_t idx = rest % xs->dims[d];
            rest /= xs->dims[d];
            if (!(red >> d & 1)) {
                o += idx * scale;
                scale *= xs->dims[d];
            }
        }
        double v = x[i];
        if (is_max)
            y[o] = v > y[o] ? v : y[o];
        else if (is_min)
            y[o] = v < y[o] ? v : y[o];
        else if (!strcmp(op, "ReduceSumSquare") || !strcmp(op, "ReduceL2"))
            y[o] += v * v;
        else
            y[o] += v;
    }
    for (int64_t o = 0; o < n_out; o++) {
        if (!strcmp(op, "ReduceMean"))
            y[o] /= (double)r;
        if (!strcmp(op, "ReduceL2"))
            y[o] = sqrt(y[o]);
    }
}

static void expect_shape(const cnv_shape *got, const cnv_shape *want, const char *label)
{
    char a[128], b[128];
    if (!cnv_shape_equal(got, want))
        fail_msg("%s: shape %s, want %s", label, cnv_shape_str(got, a, sizeof a), cnv_shape_str(want, b, sizeof b));
}

/* Runs r's model forward on random x and compares y with the reference. */
static void check_forward(const rspec *r, const char *label, uint64_t seed)
{
    cnv_model *m = red_model(r, NULL);
    cnv_session *s = tu_session(m, NULL, seed);
    if (cnv_session_forward(s) != CNV_OK)
        fail_msg("%s: %s", label, cnv_session_errmsg(s));
    float *x, *y;
    cnv_shape ys, want_shape;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    int64_t n_out = cnv_shape_count(&ys);
    double *want = malloc((size_t)(n_out + 1) * sizeof *want);
    assert_non_null(want);
    reference(r->op, &r->x, red_mask(r), r->keepdims != 0, x, want, &want_shape);
    expect_shape(&ys, &want_shape, label);
    for (int64_t o = 0; o < n_out; o++)
        if (!(fabs(y[o] - want[o]) <= 2e-6 * fmax(1.0, fabs(want[o]))))
            fail_msg("%s, output %lld: %.9g, want %.9g", label, (long long)o, y[o], want[o]);
    free(want);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ------------------------------------------------------------- forward */

typedef struct axes_case {
    cnv_shape x;
    int n; /* -1: no axes given */
    int64_t axes[4];
} axes_case;

static const axes_case *forward_cases(int *n)
{
    static axes_case c[20];
    int k = 0;
    c[k++] = (axes_case){tu_shape(4, 2, 3, 4, 5), 2, {2, 3}};     /* H,W of NCHW: mean([2,3]) */
    c[k++] = (axes_case){tu_shape(4, 2, 3, 4, 5), 1, {3}};        /* the last axis */
    c[k++] = (axes_case){tu_shape(4, 2, 3, 4, 5), 1, {1}};        /* the channel axis */
    c[k++] = (axes_case){tu_shape(4, 2, 3, 4, 5), 2, {0, 2}};     /* apart, the last kept */
    c[k++] = (axes_case){tu_shape(4, 2, 3, 4, 5), 2, {1, 3}};     /* apart, the last reduced */
    c[k++] = (axes_case){tu_shape(4, 2, 3, 4, 5), 2, {3, 0}};     /* ends, out of order */
    c[k++] = (axes_case){tu_shape(4, 2, 3, 4, 5), 1, {-1}};
    c[k++] = (axes_case){tu_shape(4, 2, 3, 4, 5), 2, {-3, -1}};
    c[k++] = (axes_case){tu_shape(4, 2, 3, 4, 5), 4, {0, 1, 2, 3}};
    c[k++] = (axes_case){tu_shape(4, 2, 3, 4, 5), -1, {0}};        /* none: all */
    c[k++] = (axes_case){tu_shape(4, 2, 3, 4, 5), 1, {0}};
    c[k++] = (axes_case){tu_shape(3, 3, 1, 4), 1, {1}};           /* only a dim of 1 */
    c[k++] = (axes_case){tu_shape(3, 3, 1, 4), 2, {0, 2}};
    c[k++] = (axes_case){tu_shape(3, 3, 1, 4), 2, {1, 2}};
    c[k++] = (axes_case){tu_shape(1, 7), 1, {0}};
    c[k++] = (axes_case){tu_shape(2, 1, 1), 2, {0, 1}};
    c[k++] = (axes_case){tu_shape(3, 2, 3, 600), 1, {1}};         /* three column blocks */
    c[k++] = (axes_case){tu_shape(4, 2, 3, 7, 71), 2, {2, 3}};    /* runs of 497, lanes and tail */
    c[k++] = (axes_case){tu_shape(4, 3, 2, 5, 267), 2, {0, 2}};   /* blocks, reduced rows apart */
    *n = k;
    return c;
}

static void forward_matches_reference(void **state)
{
    (void)state;
    int n_cases, runs = 0;
    const axes_case *cases = forward_cases(&n_cases);
    for (int k = 0; k < N_OPS; k++)
        for (int i = 0; i < n_cases; i++)
            for (int form = AX_ATTR; form <= AX_INPUT; form++)
                for (int keep = 0; keep <= 1; keep++) {
                    const axes_case *a = &cases[i];
                    rspec r = {g_ops[k], 0, a->x, a->n < 0 ? AX_NONE : form, a->n < 0 ? 0 : a->n, a->axes, keep, -1};
                    char label[128];
                    snprintf(label, sizeof label, "%s case %d %s keepdims %d", g_ops[k], i,
                             form == AX_ATTR ? "attribute" : "input", keep);
                    check_forward(&r, label, 1000 + (uint64_t)(k * 100 + i));
                    runs++;
                }
    /* the scalar: nothing to reduce but the element itself */
    for (int k = 0; k < N_OPS; k++) {
        rspec r = {g_ops[k], 0, tu_shape(0), AX_NONE, 0, NULL, 1, -1};
        check_forward(&r, g_ops[k], 3);
        runs++;
    }
    /* keepdims absent means 1 */
    const int64_t ax[1] = {1};
    rspec r = {"ReduceMean", 0, tu_shape(3, 2, 3, 4), AX_ATTR, 1, ax, -1, -1};
    check_forward(&r, "ReduceMean keepdims absent", 5);
    printf("%d reductions equal the double-precision loop\n", runs + 1);
}

/* GlobalMaxPool is ReduceMax over every axis from 2 on, dims kept. */
static void globalmaxpool_forward(void **state)
{
    (void)state;
    const cnv_shape shapes[4] = {tu_shape(4, 2, 3, 4, 5), tu_shape(3, 1, 2, 7), tu_shape(5, 1, 2, 2, 3, 2),
                                 tu_shape(4, 1, 300, 1, 1)};
    for (int i = 0; i < 4; i++) {
        tu_tensor in = {"x", shapes[i], NULL, 0};
        cnv_model *m = tu_one_node("GlobalMaxPool", 1, &in, 0, NULL);
        cnv_session *s = tu_session(m, NULL, 40 + (uint64_t)i);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        float *x, *y;
        cnv_shape ys, want_shape;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
        double want[600];
        unsigned red = ((1u << shapes[i].ndim) - 1) & ~3u;
        reference("ReduceMax", &shapes[i], red, 1, x, want, &want_shape);
        expect_shape(&ys, &want_shape, "GlobalMaxPool");
        for (int64_t o = 0; o < cnv_shape_count(&ys); o++)
            assert_true(y[o] == (float)want[o]);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* ----------------------------------------------------------- gradients */

/* Distinct values 0.05 apart (a permutation of a grid), so that no
 * central difference of step 0.01 crosses a tie of Max or Min. */
static void distinct(float *x, int64_t n)
{
    int64_t mul = 7, a, b;
    for (;; mul += 2) { /* coprime to n: i * mul % n is then a permutation */
        for (a = n, b = mul; b;) {
            int64_t t = a % b;
            a = b;
            b = t;
        }
        if (a == 1)
            break;
    }
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((i * mul) % n) * 0.05f - 0.025f * (float)n;
}

static void gradients_by_fd(void **state)
{
    (void)state;
    const axes_case cases[] = {
        {tu_shape(4, 2, 3, 4, 5), 2, {2, 3}}, {tu_shape(4, 2, 3, 4, 5), 1, {1}},
        {tu_shape(4, 2, 3, 4, 5), 2, {0, 2}}, {tu_shape(4, 2, 3, 4, 5), 2, {1, 3}},
        {tu_shape(3, 2, 3, 4), 1, {-1}},      {tu_shape(3, 2, 3, 4), -1, {0}},
        {tu_shape(3, 2, 300, 2), 1, {1}},
    };
    for (int k = 0; k < N_OPS; k++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            for (int keep = 0; keep <= 1; keep++) {
                const axes_case *a = &cases[i];
                rspec r = {g_ops[k], 0, a->x, a->n < 0 ? AX_NONE : AX_INPUT, a->n < 0 ? 0 : a->n, a->axes, keep, -1};
                cnv_model *m = red_model(&r, NULL);
                int64_t n = cnv_shape_count(&a->x);
                float *x = malloc((size_t)n * sizeof *x);
                assert_non_null(x);
                if (k >= 4) { /* Max, Min: away from ties */
                    distinct(x, n);
                } else {
                    tu_rng rng;
                    tu_rng_init(&rng, 50 + i);
                    tu_fill(&rng, x, n, -1.0f, 1.0f);
                }
                cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
                char label[96];
                snprintf(label, sizeof label, "%s case %zu keepdims %d", g_ops[k], i, keep);
                /* central differences are exact for the linear and quadratic ones
                 * and for Max/Min between ties; L2's curvature is small here */
                tu_fd_assert(label, tu_fd_check(s, m, "y", 1e-2, 80, 3 + i), 1e-3);
                cnv_session_free(s);
                cnv_model_free(m);
                free(x);
            }
    const cnv_shape gs[2] = {tu_shape(4, 2, 3, 4, 5), tu_shape(3, 2, 2, 9)};
    for (int i = 0; i < 2; i++) {
        tu_tensor in = {"x", gs[i], NULL, 0};
        cnv_model *m = tu_one_node("GlobalMaxPool", 1, &in, 0, NULL);
        float x[120];
        distinct(x, cnv_shape_count(&gs[i]));
        cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
        tu_fd_assert("GlobalMaxPool", tu_fd_check(s, m, "y", 1e-2, 120, 4), 1e-3);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* x -> op(x, axes, keepdims 1) = m; z = ReduceSumSquare(x - m) over all:
 * x's gradient has two writers (Sub and the reduction), so the reduction
 * adds to what is there (ConvNeXt's decomposed LayerNorm; Softmax's
 * max-shift with ReduceMax). */
static void gradients_in_a_graph(void **state)
{
    (void)state;
    const struct {
        const char *op;
        int64_t axis;
    } cases[] = {{"ReduceMean", -1}, {"ReduceMean", 1}, {"ReduceMax", -1}, {"ReduceMax", 1}, {"ReduceMin", 0},
                 {"ReduceL2", 1},    {"ReduceSum", 2},  {"ReduceSumSquare", -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cnv_model *m;
        assert_int_equal(cnv_model_create(&m), CNV_OK);
        assert_int_equal(cnv_model_set_opset(m, 18), CNV_OK);
        cnv_shape xs = tu_shape(3, 2, 3, 8), as = tu_shape(1, 1);
        assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
        assert_int_equal(cnv_model_add_const(m, "axes", CNV_INT64, &as, &cases[i].axis), CNV_OK);
        const char *in1[2] = {"x", "axes"}, *o1 = "m", *in2[2] = {"x", "m"}, *o2 = "d", *in3[1] = {"d"}, *o3 = "z";
        cnv_attr keep0 = tu_attr_int("keepdims", 0);
        assert_int_equal(cnv_model_add_node(m, cases[i].op, "red", 2, in1, 1, &o1, 0, NULL), CNV_OK);
        assert_int_equal(cnv_model_add_node(m, "Sub", "sub", 2, in2, 1, &o2, 0, NULL), CNV_OK);
        assert_int_equal(cnv_model_add_node(m, "ReduceSumSquare", "sq", 1, in3, 1, &o3, 1, &keep0), CNV_OK);
        assert_int_equal(cnv_model_add_output(m, "z"), CNV_OK);
        float x[48];
        distinct(x, 48);
        for (int j = 0; j < 48; j++) /* 0.025 apart, |x| <= 0.6: small third derivatives */
            x[j] *= 0.5f;
        cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
        char label[64];
        snprintf(label, sizeof label, "x - %s(x, %lld)", cases[i].op, (long long)cases[i].axis);
        tu_fd_assert(label, tu_fd_check(s, m, "z", 1e-2, 48, 2), 1e-3);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* --------------------------------------------------- the exact rules */

/* Runs r's model on x, backward from seed; y and dx into the caller's
 * buffers. */
static void run_exact(const rspec *r, const float *x, const float *seed, float *y, int64_t n_y, float *dx)
{
    cnv_model *m = red_model(r, NULL);
    cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *yp, *g;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &yp, &ys), CNV_OK);
    assert_int_equal(cnv_shape_count(&ys), n_y);
    memcpy(y, yp, (size_t)n_y * sizeof *y);
    assert_int_equal(cnv_session_backward(s, tu_t(s, "y"), seed, (size_t)n_y), CNV_OK);
    assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &g), CNV_OK);
    memcpy(dx, g, (size_t)cnv_shape_count(&r->x) * sizeof *dx);
    cnv_session_free(s);
    cnv_model_free(m);
}

static int same(float a, float b)
{
    return a == b || (isnan(a) && isnan(b));
}

static void expect_values(const char *label, const char *what, const float *got, const float *want, int n)
{
    for (int i = 0; i < n; i++)
        if (!same(got[i], want[i]))
            fail_msg("%s: %s[%d] = %.9g, want %.9g", label, what, i, got[i], want[i]);
}

/* Max and Min share the gradient evenly between tied extremes, along the
 * last axis (runs) and along the first (columns); a NaN in a slice makes
 * the output NaN and the NaNs share the gradient. */
static void ties_and_nan(void **state)
{
    (void)state;
    const float nan = NAN, third = 1.0f / 3.0f;
    /* rows: a 3-way tie, a 2-way tie, no tie, two NaNs, one NaN */
    const float x[5][4] = {{3, 1, 3, 3}, {0, -1, -1, 0}, {-2, 5, 4, -7}, {1, nan, 9, nan}, {nan, 2, 2, -1}};
    const float seed[5] = {1, 2, -1, 4, 0.5f};
    const float max_y[5] = {3, 0, 5, nan, nan}, min_y[5] = {1, -1, -7, nan, nan};
    const float max_dx[5][4] = {{third, 0, third, third}, {1, 0, 0, 1}, {0, -1, 0, 0}, {0, 2, 0, 2}, {0.5f, 0, 0, 0}};
    const float min_dx[5][4] = {{0, 1, 0, 0}, {0, 1, 1, 0}, {0, 0, 0, -1}, {0, 2, 0, 2}, {0.5f, 0, 0, 0}};
    for (int op = 0; op < 3; op++) {
        const char *name = op == 0 ? "ReduceMax" : op == 1 ? "ReduceMin" : "GlobalMaxPool";
        const float *want_y = op == 1 ? min_y : max_y;
        const float(*want_dx)[4] = op == 1 ? min_dx : max_dx;
        for (int cols = 0; cols <= 1; cols++) {
            if (op == 2 && cols)
                continue;
            float xin[20], dx[20], y[5], wdx[20];
            /* cols: x transposed to 4x5 and reduced over axis 0 */
            for (int i = 0; i < 5; i++)
                for (int j = 0; j < 4; j++) {
                    xin[cols ? j * 5 + i : i * 4 + j] = x[i][j];
                    wdx[cols ? j * 5 + i : i * 4 + j] = want_dx[i][j];
                }
            const int64_t axis = cols ? 0 : 1;
            rspec r = {name, 0, cols ? tu_shape(2, 4, 5) : tu_shape(2, 5, 4), AX_ATTR, 1, &axis, 0, -1};
            char label[64];
            snprintf(label, sizeof label, "%s along %s", name, cols ? "columns" : "runs");
            if (op == 2) { /* GlobalMaxPool on (5, 1, 4): the same rows */
                tu_tensor in = {"x", tu_shape(3, 5, 1, 4), NULL, 0};
                cnv_model *m = tu_one_node("GlobalMaxPool", 1, &in, 0, NULL);
                cnv_session *s = tu_session(m, (const float *const[]){xin}, 1);
                assert_int_equal(cnv_session_forward(s), CNV_OK);
                float *yp, *g;
                assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &yp, NULL), CNV_OK);
                memcpy(y, yp, sizeof y);
                assert_int_equal(cnv_session_backward(s, tu_t(s, "y"), seed, 5), CNV_OK);
                assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &g), CNV_OK);
                memcpy(dx, g, sizeof dx);
                cnv_session_free(s);
                cnv_model_free(m);
            } else {
                run_exact(&r, xin, seed, y, 5, dx);
            }
            expect_values(label, "y", y, want_y, 5);
            expect_values(label, "dx", dx, wdx, 20);
            printf("%s: a 3-way tie gets dy/3 each, NaNs share dy: exact\n", label);
        }
    }
}

/* Max and Min on values from {0, 1, 2} with a few NaNs (ties
 * everywhere, in the vector lanes and the tails) over every forward case:
 * y and dx against a reference that counts the ties of each slice. */
static void ties_against_reference(void **state)
{
    (void)state;
    int n_cases, checked = 0;
    const axes_case *cases = forward_cases(&n_cases);
    for (int op = 4; op < N_OPS; op++)
        for (int i = 0; i < n_cases; i++) {
            const axes_case *a = &cases[i];
            rspec r = {g_ops[op], 0, a->x, a->n < 0 ? AX_NONE : AX_INPUT, a->n < 0 ? 0 : a->n, a->axes, 1, -1};
            int64_t n = cnv_shape_count(&a->x);
            unsigned red = red_mask(&r);
            float *x = malloc((size_t)n * sizeof *x), *dx = malloc((size_t)n * sizeof *dx);
            int64_t *slot = malloc((size_t)n * sizeof *slot);
            assert_true(x && dx && slot);
            tu_rng rng;
            tu_rng_init(&rng, 300 + (uint64_t)i);
            for (int64_t j = 0; j < n; j++) {
                float u = tu_uniform(&rng, 0, 1);
                x[j] = u < 0.01f ? NAN : (float)(int)(u * 3.0f);
            }
            /* each element's output, as the reference loop finds it */
            int64_t n_out = 1;
            for (int d = 0; d < a->x.ndim; d++)
                n_out *= red >> d & 1 ? 1 : a->x.dims[d];
            for (int64_t j = 0; j < n; j++) {
                int64_t rest = j, o = 0, scale = 1;
                for (int d = a->x.ndim - 1; d >= 0; d--) {
                    int64_t idx = rest % a->x.dims[d];
                    rest /= a->x.dims[d];
                    if (!(red >> d & 1)) {
                        o += idx * scale;
                        scale *= a->x.dims[d];
                    }
                }
                slot[j] = o;
            }
            float *want_y = malloc((size_t)n_out * sizeof(float)), *seed = malloc((size_t)n_out * sizeof(float)),
                  *y = malloc((size_t)n_out * sizeof(float));
            int32_t *cnt = calloc((size_t)n_out, sizeof *cnt);
            assert_true(want_y && seed && y && cnt);
            for (int64_t o = 0; o < n_out; o++) {
                want_y[o] = op == 4 ? -INFINITY : INFINITY;
                seed[o] = tu_uniform(&rng, -1, 1);
            }
            for (int64_t j = 0; j < n; j++) {
                float *w = &want_y[slot[j]];
                if (isnan(x[j]) || isnan(*w))
                    *w = NAN;
                else if (op == 4 ? x[j] > *w : x[j] < *w)
                    *w = x[j];
            }
            for (int64_t j = 0; j < n; j++)
                cnt[slot[j]] += same(x[j], want_y[slot[j]]);
            run_exact(&r, x, seed, y, n_out, dx);
            char label[64];
            snprintf(label, sizeof label, "%s case %d", g_ops[op], i);
            expect_values(label, "y", y, want_y, (int)n_out);
            for (int64_t j = 0; j < n; j++) {
                int64_t o = slot[j];
                float want = same(x[j], want_y[o]) ? seed[o] / (float)cnt[o] : 0.0f;
                if (dx[j] != want)
                    fail_msg("%s: dx[%lld] = %.9g, want %.9g", label, (long long)j, dx[j], want);
            }
            checked += (int)n;
            free(x), free(dx), free(slot), free(want_y), free(seed), free(y), free(cnt);
        }
    printf("Max/Min with ties and NaNs: %d gradients equal the tie-counting reference\n", checked);
}

/* ReduceL2 at an all-zero slice: the output is 0 and the gradient 0 (the
 * subgradient PyTorch's norm takes), never NaN; elsewhere x / |x|. The
 * one-sided slopes there are |dy| in every direction, so 0 is the only
 * choice symmetric in the inputs. */
static void l2_at_zero(void **state)
{
    (void)state;
    const float x[2][3] = {{0, 0, 0}, {3, -4, 0}}, seed[2] = {2, 10};
    const float want_y[2] = {0, 5}, want_dx[6] = {0, 0, 0, 6, -8, 0};
    for (int cols = 0; cols <= 1; cols++) {
        float xin[6], y[2], dx[6], wdx[6];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++) {
                xin[cols ? j * 2 + i : i * 3 + j] = x[i][j];
                wdx[cols ? j * 2 + i : i * 3 + j] = want_dx[i * 3 + j];
            }
        const int64_t axis = cols ? 0 : 1;
        rspec r = {"ReduceL2", 0, cols ? tu_shape(2, 3, 2) : tu_shape(2, 2, 3), AX_INPUT, 1, &axis, 0, -1};
        run_exact(&r, xin, seed, y, 2, dx);
        expect_values("ReduceL2 at 0", "y", y, want_y, 2);
        expect_values("ReduceL2 at 0", "dx", dx, wdx, 6);
    }
    /* the one-sided differences at 0 along +e0 and -e0 are both |dy| */
    float xin[3] = {0, 0, 0}, y[1], dx[3];
    const float one = 1.0f;
    const int64_t axis = 0;
    rspec r = {"ReduceL2", 0, tu_shape(1, 3), AX_INPUT, 1, &axis, 0, -1};
    xin[0] = 1e-3f;
    run_exact(&r, xin, &one, y, 1, dx);
    assert_true(fabsf(y[0] - 1e-3f) < 1e-9f && fabsf(dx[0] - 1.0f) < 1e-6f);
    xin[0] = -1e-3f;
    run_exact(&r, xin, &one, y, 1, dx);
    assert_true(fabsf(y[0] - 1e-3f) < 1e-9f && fabsf(dx[0] + 1.0f) < 1e-6f);
    printf("ReduceL2: 0 at an all-zero slice, x/|x| beside it\n");
}

/* Sum, Mean, SumSquare propagate NaN and infinities forward as plain
 * arithmetic does. */
static void nan_in_sums(void **state)
{
    (void)state;
    const float x[8] = {1, NAN, 2, 3, INFINITY, 1, 2, 3};
    const int64_t axis = 1;
    for (int k = 0; k < 4; k++) {
        rspec r = {g_ops[k], 0, tu_shape(2, 2, 4), AX_INPUT, 1, &axis, 0, -1};
        float y[2], dx[8];
        const float seed[2] = {1, 1};
        run_exact(&r, x, seed, y, 2, dx);
        assert_true(isnan(y[0]));
        assert_true(isinf(y[1]) && y[1] > 0);
    }
}

/* noop_with_empty_axes: with no axes (an empty input or none) the op is
 * the identity when it is 1 and reduces everything when it is 0. */
static void noop_with_empty_axes(void **state)
{
    (void)state;
    const int64_t none[1] = {0};
    for (int k = 0; k < N_OPS; k++)
        for (int absent = 0; absent <= 1; absent++)
            for (int noop = 0; noop <= 1; noop++) {
                rspec r = {g_ops[k], 0, tu_shape(3, 2, 3, 4), absent ? AX_NONE : AX_INPUT, 0, none, 1, noop};
                if (absent)
                    r.opset = axes_opset(g_ops[k], 1);
                cnv_model *m = red_model(&r, NULL);
                cnv_session *s = tu_session(m, NULL, 9);
                assert_int_equal(cnv_session_forward(s), CNV_OK);
                float *x, *y, *g;
                cnv_shape ys;
                assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
                assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
                if (noop) {
                    expect_shape(&ys, &r.x, "noop");
                    assert_memory_equal(x, y, 24 * sizeof(float));
                    float seed[24];
                    for (int i = 0; i < 24; i++)
                        seed[i] = (float)i - 11.5f;
                    assert_int_equal(cnv_session_backward(s, tu_t(s, "y"), seed, 24), CNV_OK);
                    assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &g), CNV_OK);
                    assert_memory_equal(g, seed, sizeof seed);
                } else {
                    cnv_shape one = tu_shape(3, 1, 1, 1), want_shape;
                    expect_shape(&ys, &one, "all");
                    double want;
                    reference(g_ops[k], &r.x, 7, 1, x, &want, &want_shape);
                    assert_true(fabs(y[0] - want) <= 2e-6 * fmax(1.0, fabs(want)));
                }
                cnv_session_free(s);
                cnv_model_free(m);
            }
    /* the attribute forms have no noop: no axes means all (and the
     * attribute is not read there) */
    rspec r = {"ReduceMean", 13, tu_shape(2, 3, 4), AX_NONE, 0, NULL, 0, -1};
    check_forward(&r, "ReduceMean opset 13, no axes", 2);
    printf("noop_with_empty_axes: identity with 1, everything with 0, for all six ops\n");
}

/* An input with an empty dim (a float constant: graph inputs cannot be
 * empty): ONNX's values for a reduction of nothing. */
static void empty_reductions(void **state)
{
    (void)state;
    const float want[N_OPS] = {0.0f, NAN, 0.0f, 0.0f, -INFINITY, INFINITY};
    for (int k = 0; k < N_OPS; k++) {
        cnv_model *m;
        assert_int_equal(cnv_model_create(&m), CNV_OK);
        assert_int_equal(cnv_model_set_opset(m, 18), CNV_OK);
        cnv_shape xs = tu_shape(3, 2, 0, 3), as = tu_shape(1, 1);
        const int64_t axis = 1;
        assert_int_equal(cnv_model_add_const(m, "x", CNV_FLOAT32, &xs, NULL), CNV_OK);
        assert_int_equal(cnv_model_add_const(m, "axes", CNV_INT64, &as, &axis), CNV_OK);
        const char *in[2] = {"x", "axes"}, *out = "y";
        assert_int_equal(cnv_model_add_node(m, g_ops[k], "node", 2, in, 1, &out, 0, NULL), CNV_OK);
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
        cnv_session *s;
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        cnv_shape unused; /* not NULL: plan.c copies the 0 shapes with memcpy */
        if (cnv_session_plan_shapes(s, 0, &unused) != CNV_OK)
            fail_msg("%s of nothing: %s", g_ops[k], cnv_session_errmsg(s));
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        float *y;
        cnv_shape ys;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
        cnv_shape w = tu_shape(3, 2, 1, 3);
        expect_shape(&ys, &w, g_ops[k]);
        for (int i = 0; i < 6; i++)
            if (!same(y[i], want[k]))
                fail_msg("%s of nothing: %g, want %g", g_ops[k], y[i], want[k]);
        printf("%s of nothing: %g\n", g_ops[k], y[0]);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* The same bits forward and backward on 1 and 3 threads (each output is
 * computed whole by one thread, in a fixed order). */
static void threads_agree(void **state)
{
    (void)state;
    const axes_case cases[] = {{tu_shape(4, 2, 16, 12, 12), 2, {2, 3}},
                               {tu_shape(4, 2, 16, 12, 40), 1, {1}},
                               {tu_shape(4, 3, 4, 5, 67), 2, {0, 2}}};
    for (int k = 0; k < N_OPS; k++)
        for (int i = 0; i < 3; i++) {
            rspec r = {g_ops[k], 0, cases[i].x, AX_INPUT, cases[i].n, cases[i].axes, 1, -1};
            cnv_model *m = red_model(&r, NULL);
            int64_t n = cnv_shape_count(&r.x);
            float *res[2][2];
            for (int t = 0; t < 2; t++) {
                cnv_session *s;
                assert_int_equal(cnv_session_create(m, &s), CNV_OK);
                assert_int_equal(cnv_session_set_threads(s, t ? 3 : 1), CNV_OK);
                assert_int_equal(cnv_session_plan_shapes(s, 1, &r.x), CNV_OK);
                float *x, *y, *g;
                cnv_shape ys;
                assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
                tu_rng rng;
                tu_rng_init(&rng, 77);
                tu_fill(&rng, x, n, -1, 1);
                assert_int_equal(cnv_session_forward(s), CNV_OK);
                assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
                int64_t ny = cnv_shape_count(&ys);
                float *seed = malloc((size_t)ny * sizeof *seed);
                assert_non_null(seed);
                tu_fill(&rng, seed, ny, -1, 1);
                assert_int_equal(cnv_session_backward(s, tu_t(s, "y"), seed, (size_t)ny), CNV_OK);
                assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &g), CNV_OK);
                res[t][0] = malloc((size_t)ny * sizeof(float));
                res[t][1] = malloc((size_t)n * sizeof(float));
                assert_true(res[t][0] && res[t][1]);
                memcpy(res[t][0], y, (size_t)ny * sizeof(float));
                memcpy(res[t][1], g, (size_t)n * sizeof(float));
                if (t) {
                    assert_memory_equal(res[0][0], res[1][0], (size_t)ny * sizeof(float));
                    assert_memory_equal(res[0][1], res[1][1], (size_t)n * sizeof(float));
                }
                free(seed);
                cnv_session_free(s);
            }
            for (int t = 0; t < 2; t++)
                free(res[t][0]), free(res[t][1]);
            cnv_model_free(m);
        }
}

/* -------------------------------------------------------------- refusals */

/* Plans m (its declared input shapes): must fail with st, and the message
 * must hold the node's name and `what`. */
static void expect_plan_error(cnv_model *m, cnv_status st, const char *what)
{
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_shape sh[2];
    int n = cnv_model_input_count(m);
    for (int i = 0; i < n; i++)
        assert_int_equal(cnv_model_input_shape(m, i, &sh[i]), CNV_OK);
    cnv_status got = cnv_session_plan_shapes(s, n, sh);
    printf("expected error (%s): %s\n", cnv_status_string(got), cnv_session_errmsg(s));
    assert_int_equal(got, st);
    assert_non_null(strstr(cnv_session_errmsg(s), "'node'"));
    assert_non_null(strstr(cnv_session_errmsg(s), what));
    cnv_session_free(s);
}

static void refusals_at_plan(void **state)
{
    (void)state;
    const struct {
        int64_t axes[2];
        int n;
        const char *what;
    } bad[] = {{{3}, 1, "axis 3 is out of range"},
               {{-4}, 1, "axis -4 is out of range"},
               {{1, -2}, 2, "repeats axis 1"},
               {{0, 0}, 2, "repeats axis 0"},
               {{2, INT64_MIN}, 2, "out of range"}};
    for (int k = 0; k < N_OPS; k++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
            for (int form = AX_ATTR; form <= AX_INPUT; form++) {
                rspec r = {g_ops[k], 0, tu_shape(3, 2, 3, 4), form, bad[i].n, bad[i].axes, 1, -1};
                cnv_model *m = red_model(&r, NULL);
                expect_plan_error(m, CNV_ERR_SHAPE, bad[i].what);
                cnv_model_free(m);
            }

    /* axes that are not a constant int64 tensor */
    for (int k = 0; k < N_OPS; k++)
        for (int kind = 0; kind < 3; kind++) {
            cnv_model *m;
            assert_int_equal(cnv_model_create(&m), CNV_OK);
            assert_int_equal(cnv_model_set_opset(m, axes_opset(g_ops[k], 1)), CNV_OK);
            cnv_shape xs = tu_shape(3, 2, 3, 4), as = tu_shape(1, 1), as2 = tu_shape(2, 1, 1);
            assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
            const float f = 1.0f;
            const int64_t one = 1;
            if (kind == 0)
                assert_int_equal(cnv_model_add_input(m, "axes", &as), CNV_OK);
            else if (kind == 1)
                assert_int_equal(cnv_model_add_const(m, "axes", CNV_FLOAT32, &as, &f), CNV_OK);
            else
                assert_int_equal(cnv_model_add_const(m, "axes", CNV_INT64, &as2, &one), CNV_OK);
            const char *in[2] = {"x", "axes"}, *out = "y";
            assert_int_equal(cnv_model_add_node(m, g_ops[k], "node", 2, in, 1, &out, 0, NULL), CNV_OK);
            assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
            if (kind == 0)
                expect_plan_error(m, CNV_ERR_UNSUPPORTED, "known when planning");
            else if (kind == 1)
                expect_plan_error(m, CNV_ERR_UNSUPPORTED, "not float");
            else
                expect_plan_error(m, CNV_ERR_SHAPE, "1-D");
            cnv_model_free(m);
        }

    /* GlobalMaxPool needs spatial dims */
    tu_tensor in = {"x", tu_shape(2, 2, 3), NULL, 0};
    cnv_model *m = tu_one_node("GlobalMaxPool", 1, &in, 0, NULL);
    expect_plan_error(m, CNV_ERR_SHAPE, "spatial");
    cnv_model_free(m);
}

/* Attribute errors and axes in the wrong place for the opset, refused
 * when the node is added. */
static void refusals_at_load(void **state)
{
    (void)state;
    const int64_t ax[1] = {1};
    for (int k = 0; k < N_OPS; k++) {
        const struct {
            rspec r;
            const char *what;
        } bad[] = {
            {{g_ops[k], axes_opset(g_ops[k], 1), tu_shape(2, 2, 3), AX_ATTR, 1, ax, 1, -1}, "not an attribute"},
            {{g_ops[k], axes_opset(g_ops[k], 0), tu_shape(2, 2, 3), AX_INPUT, 1, ax, 1, -1}, "not an input"},
            {{g_ops[k], 0, tu_shape(2, 2, 3), AX_INPUT, 1, ax, 2, -1}, "keepdims = 2"},
            {{g_ops[k], 0, tu_shape(2, 2, 3), AX_INPUT, 1, ax, 1, 3}, "noop_with_empty_axes = 3"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            cnv_status st;
            cnv_model *m = red_model(&bad[i].r, &st);
            printf("expected error (%s): %s\n", cnv_status_string(st), cnv_model_errmsg(m));
            assert_int_equal(st, CNV_ERR_FORMAT);
            assert_non_null(strstr(cnv_model_errmsg(m), "'node'"));
            assert_non_null(strstr(cnv_model_errmsg(m), bad[i].what));
            cnv_model_free(m);
        }
    }
    /* an axes attribute of the wrong type */
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(2, 2, 3);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    cnv_attr a = tu_attr_int("axes", 1);
    const char *in = "x", *out = "y";
    assert_int_not_equal(cnv_model_add_node(m, "ReduceMean", "node", 1, &in, 1, &out, 1, &a), CNV_OK);
    printf("expected error: %s\n", cnv_model_errmsg(m));
    assert_non_null(strstr(cnv_model_errmsg(m), "axes"));
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_matches_reference),
        cmocka_unit_test(globalmaxpool_forward),
        cmocka_unit_test(gradients_by_fd),
        cmocka_unit_test(gradients_in_a_graph),
        cmocka_unit_test(ties_and_nan),
        cmocka_unit_test(ties_against_reference),
        cmocka_unit_test(l2_at_zero),
        cmocka_unit_test(nan_in_sums),
        cmocka_unit_test(noop_with_empty_axes),
        cmocka_unit_test(empty_reductions),
        cmocka_unit_test(threads_agree),
        cmocka_unit_test(refusals_at_plan),
        cmocka_unit_test(refusals_at_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
