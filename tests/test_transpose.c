/* Transpose (src/engine/ops/transpose.c): forward against index arithmetic
 * written here, for every permutation of ranks 1-4, the layouts real models
 * use (ShuffleNet's 5-D channel shuffle, NCHW <-> NHWC), the default
 * reversal, random perms of ranks 5-8, dims of 1 among the others, sizes
 * that leave partial tiles, on one thread and several; the gradient by
 * finite differences and exactly (the seed moved back), stored and
 * accumulated; and the perms and shapes it refuses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/shape.h"

/* y = Transpose(x) in node "tr"; perm NULL: the attribute absent. */
static cnv_model *tr_model(const cnv_shape *xs, int n_perm, const int64_t *perm, cnv_status *st)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", xs), CNV_OK);
    cnv_attr at = tu_attr_ints("perm", n_perm, perm);
    const char *in = "x", *out = "y";
    *st = cnv_model_add_node(m, "Transpose", "tr", 1, &in, 1, &out, perm ? 1 : 0, perm ? &at : NULL);
    if (*st == CNV_OK)
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

static cnv_session *session(cnv_model *m, int threads, uint64_t seed)
{
    cnv_session *s = NULL;
    cnv_shape xs;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_threads(s, threads), CNV_OK);
    assert_int_equal(cnv_model_input_shape(m, 0, &xs), CNV_OK);
    if (cnv_session_plan_shapes(s, 1, &xs) != CNV_OK)
        fail_msg("plan: %s", cnv_session_errmsg(s));
    float *x;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
    tu_rng r;
    tu_rng_init(&r, seed);
    tu_fill(&r, x, cnv_shape_count(&xs), -1.0f, 1.0f);
    return s;
}

/* The x offset of y's flat index i: y's index (i_0..i_r-1) read off i in
 * y's dims, then x's index j with j[perm[d]] = i_d. */
static int64_t x_offset(const cnv_shape *xs, const int64_t *perm, int64_t i)
{
    int r = xs->ndim;
    int64_t idx[CNV_MAX_DIMS], j[CNV_MAX_DIMS];
    for (int d = r - 1; d >= 0; d--) {
        int64_t len = xs->dims[perm[d]];
        idx[d] = i % len;
        i /= len;
    }
    for (int d = 0; d < r; d++)
        j[perm[d]] = idx[d];
    int64_t off = 0;
    for (int d = 0; d < r; d++)
        off = off * xs->dims[d] + j[d];
    return off;
}

/* Forward and the exact backward of one x shape and perm (NULL: the
 * default, reversed) on `threads` threads; returns the elements checked. */
static int64_t check(const cnv_shape *xs, const int64_t *perm_attr, int threads)
{
    int r = xs->ndim;
    int64_t perm[CNV_MAX_DIMS];
    for (int d = 0; d < r; d++)
        perm[d] = perm_attr ? perm_attr[d] : r - 1 - d;
    cnv_status st;
    cnv_model *m = tr_model(xs, r, perm_attr, &st);
    if (st != CNV_OK)
        fail_msg("add_node: %s", cnv_model_errmsg(m));
    cnv_session *s = session(m, threads, 3);
    float *x, *y, *g;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    char sx[128], sy[128];
    cnv_shape_str(xs, sx, sizeof sx);
    cnv_shape_str(&ys, sy, sizeof sy);
    assert_int_equal(ys.ndim, r);
    for (int d = 0; d < r; d++)
        if (ys.dims[d] != xs->dims[perm[d]])
            fail_msg("x %s: y is %s, dim %d should be x's dim %lld", sx, sy, d, (long long)perm[d]);
    int64_t n = cnv_shape_count(xs);
    for (int64_t i = 0; i < n; i++)
        if (y[i] != x[x_offset(xs, perm, i)])
            fail_msg("x %s -> y %s (%d threads): y[%lld] = %g, want x[%lld] = %g", sx, sy, threads, (long long)i,
                     y[i], (long long)x_offset(xs, perm, i), x[x_offset(xs, perm, i)]);
    /* backward from a seed equal to its own index: dx[x_offset(i)] = i */
    float *seed = malloc((size_t)n * sizeof *seed);
    assert_non_null(seed);
    for (int64_t i = 0; i < n; i++)
        seed[i] = (float)i;
    assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
    assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &g), CNV_OK);
    for (int64_t i = 0; i < n; i++)
        if (g[x_offset(xs, perm, i)] != (float)i)
            fail_msg("x %s (%d threads): dx[%lld] = %g, want %lld", sx, threads, (long long)x_offset(xs, perm, i),
                     g[x_offset(xs, perm, i)], (long long)i);
    free(seed);
    cnv_session_free(s);
    cnv_model_free(m);
    return n;
}

/* Every permutation of 0..r-1 in lexicographic order: the next one. */
static int next_perm(int64_t *p, int r)
{
    int i = r - 2;
    while (i >= 0 && p[i] >= p[i + 1])
        i--;
    if (i < 0)
        return 0;
    int j = r - 1;
    while (p[j] <= p[i])
        j--;
    int64_t t = p[i];
    p[i] = p[j];
    p[j] = t;
    for (int a = i + 1, b = r - 1; a < b; a++, b--)
        t = p[a], p[a] = p[b], p[b] = t;
    return 1;
}

static void all_perms_small_ranks(void **state)
{
    (void)state;
    /* distinct dims, and the same with 1s among them (merged away) */
    const cnv_shape shapes[] = {
        tu_shape(1, 5), tu_shape(2, 3, 4), tu_shape(3, 2, 3, 4), tu_shape(4, 2, 3, 4, 5),
        tu_shape(2, 1, 4), tu_shape(3, 3, 1, 2), tu_shape(4, 3, 1, 4, 2), tu_shape(4, 1, 1, 3, 1),
    };
    int perms = 0;
    int64_t values = 0;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int r = shapes[k].ndim;
        int64_t p[CNV_MAX_DIMS];
        for (int d = 0; d < r; d++)
            p[d] = d;
        do {
            values += check(&shapes[k], p, 1);
            perms++;
        } while (next_perm(p, r));
        values += check(&shapes[k], NULL, 1); /* default: reversed */
    }
    const cnv_shape scalar = tu_shape(0);
    values += check(&scalar, NULL, 1);
    printf("%d perms of ranks 1-4: forward and backward match the index arithmetic (%lld values)\n", perms,
           (long long)values);
}

/* The layouts of real exports, small and large (past the size where the
 * work is split over threads, with partial tiles and strips). */
static void model_layouts(void **state)
{
    (void)state;
    static const int64_t shuffle[5] = {0, 2, 1, 3, 4}, to_nhwc[4] = {0, 2, 3, 1}, to_nchw[4] = {0, 3, 1, 2};
    static const int64_t swap_last[3] = {0, 2, 1};
    const struct {
        const char *label;
        cnv_shape x;
        const int64_t *perm;
    } k[] = {
        {"channel shuffle (0,2,1,3,4)", tu_shape(5, 2, 4, 3, 5, 5), shuffle},
        {"channel shuffle, large", tu_shape(5, 1, 2, 58, 28, 28), shuffle},
        {"NCHW -> NHWC (0,2,3,1)", tu_shape(4, 2, 3, 4, 5), to_nhwc},
        {"NCHW -> NHWC, large", tu_shape(4, 2, 67, 9, 41), to_nhwc},
        {"NCHW -> NHWC, batch 1", tu_shape(4, 1, 96, 28, 28), to_nhwc},
        {"NHWC -> NCHW (0,3,1,2)", tu_shape(4, 2, 4, 5, 3), to_nchw},
        {"NHWC -> NCHW, 3 channels", tu_shape(4, 1, 64, 70, 3), to_nchw},
        {"NHWC -> NCHW, large", tu_shape(4, 3, 33, 35, 97), to_nchw},
        {"batched matrix transpose", tu_shape(3, 7, 100, 130), swap_last},
        {"2-D, large", tu_shape(2, 300, 257), NULL},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        for (int th = 1; th <= 4; th += 3) {
            int64_t n = check(&k[i].x, k[i].perm, th);
            char sx[64];
            printf("%-30s x %-14s %d thread(s): %lld values, forward and backward exact\n", k[i].label,
                   cnv_shape_str(&k[i].x, sx, sizeof sx), th, (long long)n);
        }
}

/* Random perms of ranks 5 to 8 (the engine's limit), 1s among the dims. */
static void random_high_ranks(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_init(&r, 77);
    for (int t = 0; t < 40; t++) {
        int rank = 5 + t % 4;
        cnv_shape xs = {0};
        xs.ndim = rank;
        int64_t p[CNV_MAX_DIMS];
        for (int d = 0; d < rank; d++) {
            xs.dims[d] = tu_uniform(&r, 0, 1) < 0.2f ? 1 : 2 + (int64_t)(tu_uniform(&r, 0, 1) * 3) % 3;
            p[d] = d;
        }
        for (int d = rank - 1; d > 0; d--) { /* Fisher-Yates */
            int e = (int)(tu_uniform(&r, 0, 1) * (float)(d + 1)) % (d + 1);
            int64_t tmp = p[d];
            p[d] = p[e];
            p[e] = tmp;
        }
        check(&xs, p, t % 2 ? 3 : 1);
        if (t == 0 || rank == 6) {
            char sx[64];
            printf("rank %d x %s perm (", rank, cnv_shape_str(&xs, sx, sizeof sx));
            for (int d = 0; d < rank; d++)
                printf("%s%lld", d ? "," : "", (long long)p[d]);
            printf("): exact\n");
        }
    }
}

static void gradients_by_fd(void **state)
{
    (void)state;
    static const int64_t p5[5] = {0, 2, 1, 3, 4}, p4a[4] = {0, 2, 3, 1}, p4b[4] = {0, 3, 1, 2},
                         p6[6] = {4, 1, 5, 0, 3, 2};
    const struct {
        cnv_shape x;
        const int64_t *perm;
    } k[] = {
        {tu_shape(5, 2, 3, 2, 3, 2), p5}, {tu_shape(4, 2, 3, 4, 5), p4a}, {tu_shape(4, 2, 4, 5, 3), p4b},
        {tu_shape(6, 2, 3, 1, 2, 3, 2), p6}, {tu_shape(3, 3, 4, 5), NULL},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        cnv_status st;
        cnv_model *m = tr_model(&k[i].x, k[i].x.ndim, k[i].perm, &st);
        assert_int_equal(st, CNV_OK);
        cnv_session *s = session(m, 1, 5 + i);
        char label[64], sx[48];
        snprintf(label, sizeof label, "Transpose x %s", cnv_shape_str(&k[i].x, sx, sizeof sx));
        tu_fd_assert(label, tu_fd_check(s, m, "y", 1e-2, 100, 3 + i), 1e-4);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* x read by two Transposes whose outputs are added: the first gradient
 * writer stores, the other adds (rows, tiles and a plain copy). */
static void accumulated_gradient(void **state)
{
    (void)state;
    static const int64_t pa[3][3] = {{1, 0, 2}, {2, 0, 1}, {0, 1, 2}}, pb[3][3] = {{1, 0, 2}, {1, 2, 0}, {0, 1, 2}};
    const cnv_shape xs[3] = {tu_shape(3, 4, 4, 6), tu_shape(3, 5, 5, 5), tu_shape(3, 2, 3, 4)};
    for (int k = 0; k < 3; k++) {
        cnv_model *m = NULL;
        assert_int_equal(cnv_model_create(&m), CNV_OK);
        assert_int_equal(cnv_model_add_input(m, "x", &xs[k]), CNV_OK);
        cnv_attr a1 = tu_attr_ints("perm", 3, pa[k]), a2 = tu_attr_ints("perm", 3, pb[k]);
        const char *x = "x", *t1 = "t1", *t2 = "t2", *add[2] = {"t1", "t2"}, *y = "y";
        assert_int_equal(cnv_model_add_node(m, "Transpose", "tr1", 1, &x, 1, &t1, 1, &a1), CNV_OK);
        assert_int_equal(cnv_model_add_node(m, "Transpose", "tr2", 1, &x, 1, &t2, 1, &a2), CNV_OK);
        assert_int_equal(cnv_model_add_node(m, "Add", "sum", 2, add, 1, &y, 0, NULL), CNV_OK);
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
        cnv_session *s = session(m, 1, 8);
        const char *labels[3] = {"two Transposes (rows) added", "two Transposes (tiles) added",
                                 "two identity Transposes added"};
        tu_fd_assert(labels[k], tu_fd_check(s, m, "y", 1e-2, 200, 9), 1e-4);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

static void refusals(void **state)
{
    (void)state;
    const struct {
        int n;
        int64_t perm[10];
        cnv_status st;
        const char *says;
    } bad[] = {
        {3, {0, 1, 1}, CNV_ERR_FORMAT, "entry 2 is 1 (repeated)"},
        {3, {0, 3, 1}, CNV_ERR_FORMAT, "permutation of 0..2"},
        {3, {0, -1, 2}, CNV_ERR_FORMAT, "perm entry 1 is -1 (out of range)"},
        {9, {0, 1, 2, 3, 4, 5, 6, 7, 8}, CNV_ERR_UNSUPPORTED, "ranks above 8"},
    };
    cnv_shape xs = tu_shape(3, 2, 3, 4);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cnv_status st;
        cnv_model *m = tr_model(&xs, bad[i].n, bad[i].perm, &st);
        printf("refused perm: %s -> %s\n", cnv_status_string(st), cnv_model_errmsg(m));
        assert_int_equal(st, bad[i].st);
        assert_non_null(strstr(cnv_model_errmsg(m), "tr"));
        assert_non_null(strstr(cnv_model_errmsg(m), bad[i].says));
        cnv_model_free(m);
    }
    /* a valid perm of another rank than the input's */
    static const int64_t p4[4] = {0, 2, 3, 1};
    cnv_status st;
    cnv_model *m = tr_model(&xs, 4, p4, &st);
    assert_int_equal(st, CNV_OK);
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    st = cnv_session_plan_shapes(s, 1, &xs);
    printf("refused plan: %s -> %s\n", cnv_status_string(st), cnv_session_errmsg(s));
    assert_int_equal(st, CNV_ERR_SHAPE);
    assert_non_null(strstr(cnv_session_errmsg(s), "'tr'"));
    assert_non_null(strstr(cnv_session_errmsg(s), "perm has 4 entries"));
    cnv_session_free(s);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(all_perms_small_ranks),
        cmocka_unit_test(model_layouts),
        cmocka_unit_test(random_high_ranks),
        cmocka_unit_test(gradients_by_fd),
        cmocka_unit_test(accumulated_gradient),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
