/* MatMul (src/engine/ops/matmul.c): forward against a naive per-element
 * loop in double over 1-D, 2-D and batched shapes with broadcasting (one
 * thread and several), output shapes written out by hand from numpy's
 * rules, gradients of both operands by central finite differences (inputs,
 * a weight with parameter gradients, the same tensor on both sides, a
 * weight read by two nodes), FLOPs, and the shapes it refuses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/shape.h"

#define FD_H 1e-2
#define FD_TOL 2e-3

typedef struct mm_case {
    const char *label;
    cnv_shape a, b, y; /* y: numpy's matmul shape, by hand */
} mm_case;

static mm_case *cases(int *n)
{
    static mm_case c[32];
    int k = 0;
    c[k++] = (mm_case){"1-D x 2-D", tu_shape(1, 4), tu_shape(2, 4, 3), tu_shape(1, 3)};
    c[k++] = (mm_case){"2-D x 1-D", tu_shape(2, 3, 4), tu_shape(1, 4), tu_shape(1, 3)};
    c[k++] = (mm_case){"1-D x 1-D", tu_shape(1, 5), tu_shape(1, 5), tu_shape(0)};
    c[k++] = (mm_case){"2-D x 2-D", tu_shape(2, 3, 4), tu_shape(2, 4, 5), tu_shape(2, 3, 5)};
    c[k++] = (mm_case){"3-D x 2-D", tu_shape(3, 2, 3, 4), tu_shape(2, 4, 5), tu_shape(3, 2, 3, 5)};
    c[k++] = (mm_case){"4-D x 2-D (NHWC linear)", tu_shape(4, 1, 3, 3, 8), tu_shape(2, 8, 12),
                       tu_shape(4, 1, 3, 3, 12)};
    c[k++] = (mm_case){"broadcast (2,1,3,4)x(5,4,6)", tu_shape(4, 2, 1, 3, 4), tu_shape(3, 5, 4, 6),
                       tu_shape(4, 2, 5, 3, 6)};
    c[k++] = (mm_case){"2-D x 3-D (A broadcast)", tu_shape(2, 3, 4), tu_shape(3, 2, 4, 5), tu_shape(3, 2, 3, 5)};
    c[k++] = (mm_case){"3-D x 3-D same batch", tu_shape(3, 3, 2, 4), tu_shape(3, 3, 4, 2), tu_shape(3, 3, 2, 2)};
    c[k++] = (mm_case){"B batch of ones", tu_shape(2, 3, 4), tu_shape(4, 1, 1, 4, 2), tu_shape(4, 1, 1, 3, 2)};
    c[k++] = (mm_case){"A batch of ones", tu_shape(3, 1, 3, 4), tu_shape(3, 2, 4, 5), tu_shape(3, 2, 3, 5)};
    c[k++] = (mm_case){"1-D x 4-D", tu_shape(1, 4), tu_shape(4, 2, 3, 4, 5), tu_shape(3, 2, 3, 5)};
    c[k++] = (mm_case){"3-D x 1-D", tu_shape(3, 2, 3, 4), tu_shape(1, 4), tu_shape(2, 2, 3)};
    c[k++] = (mm_case){"5-D both ways", tu_shape(5, 2, 1, 4, 3, 5), tu_shape(4, 3, 1, 5, 2),
                       tu_shape(5, 2, 3, 4, 3, 2)};
    c[k++] = (mm_case){"column times row", tu_shape(2, 6, 1), tu_shape(2, 1, 7), tu_shape(2, 6, 7)};
    c[k++] = (mm_case){"large folded", tu_shape(3, 4, 37, 50), tu_shape(2, 50, 70), tu_shape(3, 4, 37, 70)};
    c[k++] = (mm_case){"large batched", tu_shape(3, 6, 40, 33), tu_shape(3, 6, 33, 45), tu_shape(3, 6, 40, 45)};
    *n = k;
    return c;
}

/* A node "mm" = MatMul(a, b), b a graph input or (bdata) a constant. */
static cnv_model *mm_model(const cnv_shape *as, const cnv_shape *bs, const float *bdata)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "a", as), CNV_OK);
    if (bdata)
        assert_int_equal(cnv_model_add_const(m, "b", CNV_FLOAT32, bs, bdata), CNV_OK);
    else
        assert_int_equal(cnv_model_add_input(m, "b", bs), CNV_OK);
    const char *in[2] = {"a", "b"}, *out = "y";
    if (cnv_model_add_node(m, "MatMul", "mm", 2, in, 1, &out, 0, NULL) != CNV_OK)
        fail_msg("add_node: %s", cnv_model_errmsg(m));
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

/* A planned session with `threads` threads, inputs random from seed. */
static cnv_session *session(cnv_model *m, int threads, int param_grads, uint64_t seed)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_threads(s, threads), CNV_OK);
    assert_int_equal(cnv_session_set_param_grads(s, param_grads), CNV_OK);
    int n = cnv_model_input_count(m);
    cnv_shape sh[4];
    for (int i = 0; i < n; i++)
        assert_int_equal(cnv_model_input_shape(m, i, &sh[i]), CNV_OK);
    if (cnv_session_plan_shapes(s, n, sh) != CNV_OK)
        fail_msg("plan: %s", cnv_session_errmsg(s));
    tu_rng r;
    tu_rng_init(&r, seed);
    for (int i = 0; i < n; i++) {
        float *x;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, tu_input_name(m, i)), &x, NULL), CNV_OK);
        tu_fill(&r, x, cnv_shape_count(&sh[i]), -1.0f, 1.0f);
    }
    return s;
}

/* numpy's matmul, one output element at a time: operands promoted to at
 * least 2-D, batch dims right-aligned, a batch dim of 1 read at index 0. */
static void naive_matmul(const cnv_shape *as, const float *a, const cnv_shape *bs, const float *b,
                         double *y, int64_t *count)
{
    int64_t ad[CNV_MAX_DIMS + 1] = {0}, bd[CNV_MAX_DIMS + 1] = {0};
    int ra = as->ndim, rb = bs->ndim;
    for (int d = 0; d < ra; d++)
        ad[d] = as->dims[d];
    for (int d = 0; d < rb; d++)
        bd[d] = bs->dims[d];
    if (ra == 1) { /* (k) -> (1,k) */
        ad[1] = ad[0];
        ad[0] = 1;
        ra = 2;
    }
    if (rb == 1) /* (k) -> (k,1) */
        bd[rb++] = 1;
    int64_t M = ad[ra - 2], K = ad[ra - 1], N = bd[rb - 1];
    int nb = (ra > rb ? ra : rb) - 2;
    int64_t od[CNV_MAX_DIMS], batches = 1;
    for (int d = 0; d < nb; d++) {
        int ka = d - (nb - (ra - 2)), kb = d - (nb - (rb - 2));
        int64_t la = ka >= 0 ? ad[ka] : 1, lb = kb >= 0 ? bd[kb] : 1;
        od[d] = la > lb ? la : lb;
        batches *= od[d];
    }
    for (int64_t o = 0; o < batches; o++) {
        int64_t idx[CNV_MAX_DIMS], rest = o;
        for (int d = nb - 1; d >= 0; d--) {
            idx[d] = rest % od[d];
            rest /= od[d];
        }
        int64_t aoff = 0, boff = 0;
        for (int d = 0; d < ra - 2; d++)
            aoff = aoff * ad[d] + (ad[d] == 1 ? 0 : idx[d + nb - (ra - 2)]);
        for (int d = 0; d < rb - 2; d++)
            boff = boff * bd[d] + (bd[d] == 1 ? 0 : idx[d + nb - (rb - 2)]);
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0.0;
                for (int64_t k = 0; k < K; k++)
                    s += (double)a[(aoff * M + i) * K + k] * b[(boff * K + k) * N + j];
                y[(o * M + i) * N + j] = s;
            }
    }
    *count = batches * M * N;
}

static void check_case(const mm_case *c, int threads)
{
    cnv_model *m = mm_model(&c->a, &c->b, NULL);
    cnv_session *s = session(m, threads, 0, 17);
    float *a, *b, *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "a"), &a, NULL), CNV_OK);
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "b"), &b, NULL), CNV_OK);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    char got[128], want[128];
    cnv_shape_str(&ys, got, sizeof got);
    cnv_shape_str(&c->y, want, sizeof want);
    if (!cnv_shape_equal(&ys, &c->y))
        fail_msg("%s: output %s, numpy gives %s", c->label, got, want);
    int64_t n = cnv_shape_count(&ys), rn;
    double *ref = malloc((size_t)n * sizeof *ref);
    assert_non_null(ref);
    naive_matmul(&c->a, a, &c->b, b, ref, &rn);
    assert_int_equal(rn, n);
    for (int64_t i = 0; i < n; i++)
        if (fabs(y[i] - ref[i]) > 1e-5 * (1.0 + fabs(ref[i])))
            fail_msg("%s (%d threads): y[%lld] = %.8g, naive %.8g", c->label, threads, (long long)i, y[i],
                     ref[i]);
    printf("%-32s %d thread(s): y %s matches the naive loop (%lld values)\n", c->label, threads, got,
           (long long)n);
    free(ref);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void forward_matches_naive(void **state)
{
    (void)state;
    int n;
    const mm_case *c = cases(&n);
    for (int i = 0; i < n; i++) {
        check_case(&c[i], 1);
        check_case(&c[i], 3);
    }
}

/* Random shapes: ranks 1..5 each side, batch dims 1 or a shared length. */
static void forward_random_shapes(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_init(&r, 5);
    for (int t = 0; t < 60; t++) {
        int ra = 1 + (int)(tu_uniform(&r, 0, 1) * 5) % 5, rb = 1 + (int)(tu_uniform(&r, 0, 1) * 5) % 5;
        int64_t M = 1 + (int64_t)(tu_uniform(&r, 0, 1) * 5) % 5, K = 1 + (int64_t)(tu_uniform(&r, 0, 1) * 6) % 6,
                N = 1 + (int64_t)(tu_uniform(&r, 0, 1) * 5) % 5;
        int64_t full[3];
        for (int d = 0; d < 3; d++)
            full[d] = 2 + (int64_t)(tu_uniform(&r, 0, 1) * 2) % 2;
        mm_case c = {"random", {0}, {0}, {0}};
        c.a.ndim = ra;
        c.b.ndim = rb;
        int nba = ra > 2 ? ra - 2 : 0, nbb = rb > 2 ? rb - 2 : 0, nb = nba > nbb ? nba : nbb;
        for (int d = 0; d < nba; d++)
            c.a.dims[d] = tu_uniform(&r, 0, 1) < 0.35f ? 1 : full[d + 3 - nba];
        for (int d = 0; d < nbb; d++)
            c.b.dims[d] = tu_uniform(&r, 0, 1) < 0.35f ? 1 : full[d + 3 - nbb];
        if (ra == 1)
            c.a.dims[0] = K;
        else
            c.a.dims[ra - 2] = M, c.a.dims[ra - 1] = K;
        if (rb == 1)
            c.b.dims[0] = K;
        else
            c.b.dims[rb - 2] = K, c.b.dims[rb - 1] = N;
        /* numpy's shape: the broadcast batch, then M unless A is 1-D, N
         * unless B is 1-D */
        c.y.ndim = nb;
        for (int d = 0; d < nb; d++) {
            int ka = d - (nb - nba), kb = d - (nb - nbb);
            int64_t la = ka >= 0 ? c.a.dims[ka] : 1, lb = kb >= 0 ? c.b.dims[kb] : 1;
            c.y.dims[d] = la > lb ? la : lb;
        }
        if (ra > 1)
            c.y.dims[c.y.ndim++] = M;
        if (rb > 1)
            c.y.dims[c.y.ndim++] = N;
        check_case(&c, t % 2 ? 2 : 1);
    }
}

static void gradients_by_fd(void **state)
{
    (void)state;
    int n;
    const mm_case *c = cases(&n);
    for (int i = 0; i < n; i++)
        for (int th = 1; th <= 3; th += 2) {
            cnv_model *m = mm_model(&c[i].a, &c[i].b, NULL);
            cnv_session *s = session(m, th, 0, 31 + (uint64_t)i);
            char label[96];
            snprintf(label, sizeof label, "MatMul dA,dB %s, %d thread(s)", c[i].label, th);
            tu_fd_assert(label, tu_fd_check(s, m, "y", FD_H, 80, 7 + (uint64_t)i), FD_TOL);
            cnv_session_free(s);
            cnv_model_free(m);
        }
}

/* B a weight: its gradient comes with parameter gradients on (the
 * trainer's case); folded and batched forms. */
static void weight_gradient(void **state)
{
    (void)state;
    const cnv_shape forms[][2] = {
        {tu_shape(4, 2, 3, 3, 8), tu_shape(2, 8, 6)},
        {tu_shape(3, 2, 3, 4), tu_shape(3, 2, 4, 5)},
        {tu_shape(3, 2, 3, 4), tu_shape(3, 1, 4, 5)},
        {tu_shape(4, 2, 1, 3, 4), tu_shape(3, 5, 4, 6)},
    };
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++)
        for (int th = 1; th <= 3; th += 2) {
            float w[256];
            tu_rng r;
            tu_rng_init(&r, 40 + f);
            assert_true(cnv_shape_count(&forms[f][1]) <= 256);
            tu_fill(&r, w, cnv_shape_count(&forms[f][1]), -1.0f, 1.0f);
            cnv_model *m = mm_model(&forms[f][0], &forms[f][1], w);
            cnv_session *s = session(m, th, 1, 3 + f);
            float *g;
            tu_fd_result res = tu_fd_check(s, m, "y", FD_H, 80, 11 + f);
            assert_int_equal(cnv_session_grad(s, tu_t(s, "b"), &g), CNV_OK);
            char label[64], sa[64], sb[64];
            snprintf(label, sizeof label, "MatMul dA + dW %s x %s, %d thread(s)",
                     cnv_shape_str(&forms[f][0], sa, sizeof sa), cnv_shape_str(&forms[f][1], sb, sizeof sb), th);
            tu_fd_assert(label, res, FD_TOL);
            /* more than A's elements alone: the weight was checked too */
            int64_t na = cnv_shape_count(&forms[f][0]);
            assert_true(res.checked > (na < 80 ? na : 80));
            cnv_session_free(s);
            cnv_model_free(m);
        }
}

/* y = x x (one tensor, both sides: its gradient is the sum of both), and
 * z = (a w) w (w read by two nodes: the first writer stores, the other
 * adds). */
static void shared_operands(void **state)
{
    (void)state;
    const cnv_shape xs[2] = {tu_shape(2, 4, 4), tu_shape(3, 3, 4, 4)};
    for (int k = 0; k < 2; k++) {
        cnv_model *m = NULL;
        assert_int_equal(cnv_model_create(&m), CNV_OK);
        assert_int_equal(cnv_model_add_input(m, "x", &xs[k]), CNV_OK);
        const char *in[2] = {"x", "x"}, *out = "y";
        assert_int_equal(cnv_model_add_node(m, "MatMul", "sq", 2, in, 1, &out, 0, NULL), CNV_OK);
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
        cnv_session *s = session(m, 1, 0, 9);
        tu_fd_assert(k ? "MatMul x x (batched)" : "MatMul x x", tu_fd_check(s, m, "y", FD_H, 64, 2), FD_TOL);
        cnv_session_free(s);
        cnv_model_free(m);
    }
    const cnv_shape chain[2][2] = {{tu_shape(2, 3, 4), tu_shape(2, 4, 4)},
                                   {tu_shape(3, 2, 3, 4), tu_shape(3, 2, 4, 4)}};
    for (int k = 0; k < 2; k++) {
        cnv_model *m = NULL;
        assert_int_equal(cnv_model_create(&m), CNV_OK);
        assert_int_equal(cnv_model_add_input(m, "a", &chain[k][0]), CNV_OK);
        assert_int_equal(cnv_model_add_input(m, "w", &chain[k][1]), CNV_OK);
        const char *in1[2] = {"a", "w"}, *in2[2] = {"t", "w"}, *o1 = "t", *o2 = "z";
        assert_int_equal(cnv_model_add_node(m, "MatMul", "m1", 2, in1, 1, &o1, 0, NULL), CNV_OK);
        assert_int_equal(cnv_model_add_node(m, "MatMul", "m2", 2, in2, 1, &o2, 0, NULL), CNV_OK);
        assert_int_equal(cnv_model_add_output(m, "z"), CNV_OK);
        cnv_session *s = session(m, 1, 0, 12);
        tu_fd_assert(k ? "MatMul (a w) w (batched)" : "MatMul (a w) w", tu_fd_check(s, m, "z", FD_H, 64, 4),
                     FD_TOL);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* 2 M N K per product, without a session. */
static void flops_counted(void **state)
{
    (void)state;
    const struct {
        cnv_shape a, b;
        double flops;
    } k[] = {
        {tu_shape(4, 1, 3, 3, 8), tu_shape(2, 8, 12), 2.0 * 9 * 12 * 8},
        {tu_shape(4, 2, 1, 3, 4), tu_shape(3, 5, 4, 6), 2.0 * 10 * 3 * 6 * 4},
        {tu_shape(1, 5), tu_shape(1, 5), 2.0 * 5},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        cnv_model *m = mm_model(&k[i].a, &k[i].b, NULL);
        cnv_shape in[2] = {k[i].a, k[i].b}, shapes[8];
        double flops[1];
        char err[256];
        assert_int_equal(cnv_model_infer_shapes(m, 2, in, shapes, cnv_model_tensor_count(m), flops, 1, err,
                                                sizeof err),
                         CNV_OK);
        printf("flops %g (want %g)\n", flops[0], k[i].flops);
        assert_true(flops[0] == k[i].flops);
        cnv_model_free(m);
    }
}

static cnv_status try_plan(cnv_shape as, cnv_shape bs, char *msg, size_t len)
{
    cnv_model *m = mm_model(&as, &bs, NULL);
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_shape in[2] = {as, bs};
    cnv_status st = cnv_session_plan_shapes(s, 2, in);
    snprintf(msg, len, "%s", cnv_session_errmsg(s));
    cnv_session_free(s);
    cnv_model_free(m);
    return st;
}

static void refusals(void **state)
{
    (void)state;
    const struct {
        cnv_shape a, b;
        cnv_status st;
        const char *says;
    } k[] = {
        {tu_shape(2, 2, 3), tu_shape(2, 4, 5), CNV_ERR_SHAPE, "inner sizes differ"},
        {tu_shape(1, 3), tu_shape(1, 4), CNV_ERR_SHAPE, "inner sizes differ"},
        {tu_shape(3, 2, 3, 4), tu_shape(3, 3, 4, 5), CNV_ERR_SHAPE, "do not broadcast"},
        {tu_shape(4, 2, 3, 3, 4), tu_shape(3, 4, 4, 5), CNV_ERR_SHAPE, "do not broadcast"},
        {tu_shape(0), tu_shape(1, 3), CNV_ERR_SHAPE, "no scalars"},
        {tu_shape(2, 3, 4), tu_shape(0), CNV_ERR_SHAPE, "no scalars"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        char msg[512];
        cnv_status st = try_plan(k[i].a, k[i].b, msg, sizeof msg);
        printf("refused: %s -> %s\n", cnv_status_string(st), msg);
        assert_int_equal(st, k[i].st);
        assert_non_null(strstr(msg, "'mm'"));
        assert_non_null(strstr(msg, k[i].says));
    }
    /* an output past the element limit, from batches that each fit */
    cnv_shape a = tu_shape(3, 65536, 1, 1), b = tu_shape(3, 1, 1, 65536), in[2] = {a, b}, sh[8];
    cnv_model *m = mm_model(&a, &b, NULL);
    char err[512];
    cnv_status st = cnv_model_infer_shapes(m, 2, in, sh, cnv_model_tensor_count(m), NULL, 0, err, sizeof err);
    printf("refused: %s -> %s\n", cnv_status_string(st), err);
    assert_int_not_equal(st, CNV_OK);
    assert_non_null(strstr(err, "too large"));
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_matches_naive),
        cmocka_unit_test(forward_random_shapes),
        cmocka_unit_test(gradients_by_fd),
        cmocka_unit_test(weight_gradient),
        cmocka_unit_test(shared_operands),
        cmocka_unit_test(flops_counted),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
