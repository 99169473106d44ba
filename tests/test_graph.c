/* The engine on a small branching graph (tests/util/smallnet.h): input and
 * parameter gradients against central finite differences, forward_to,
 * fan-out accumulation, re-planning, and the error contract of the model
 * builder and the session. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smallnet.h"
#include "testutil.h"

#define N 2        /* batch */
#define HW 8       /* input height and width */
#define H2 (HW / 2) /* after the pool */

static cnv_session *planned(cnv_model *m, int param_grads, uint64_t seed)
{
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_param_grads(s, param_grads), CNV_OK);
    if (cnv_session_plan(s, N, HW, HW) != CNV_OK)
        fail_msg("plan: %s", cnv_session_errmsg(s));
    tu_rng r;
    tu_rng_init(&r, seed);
    tu_fill(&r, cnv_session_input(s), N * 2 * HW * HW, -1.0f, 1.0f);
    return s;
}

static float *tensor(cnv_session *s, const char *name, int64_t *count)
{
    float *p;
    cnv_shape sh;
    if (cnv_session_tensor(s, tu_t(s, name), &p, &sh) != CNV_OK)
        fail_msg("%s", cnv_session_errmsg(s));
    if (count)
        *count = cnv_shape_count(&sh);
    return p;
}

static float *grad(cnv_session *s, const char *name)
{
    float *g;
    if (cnv_session_grad(s, tu_t(s, name), &g) != CNV_OK)
        fail_msg("%s", cnv_session_errmsg(s));
    return g;
}

static void ok(cnv_session *s, cnv_status st)
{
    if (st != CNV_OK)
        fail_msg("%s: %s", cnv_status_string(st), cnv_session_errmsg(s));
}

/* ------------------------------------------------ finite differences */

/* The network is piecewise linear in the input and in any one parameter:
 * its linear piece is fixed by the sign of every ReLU input and the argmax
 * of every pooling window. Each piece is convex, so when x-h, x and x+h
 * share one, the central difference is exact up to float rounding; probes
 * whose pattern changes straddle a kink or a tie and are skipped (and
 * counted). */
#define MAX_PATTERN 4096

static int is_one_of(const char *name, const char *const *list, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0)
            return 1;
    return 0;
}

/* Only the kinks between the input and the seeded tensor `to` count (a
 * seed on c1 makes the objective linear whatever c1's signs); the others
 * are not even computed by forward_to. */
static int pattern(cnv_session *s, const char *to, unsigned char *out)
{
    int n = 0;
    const char *pre[3] = {"c1", "ca", "cb"};
    const char *after_ra[4] = {"ra", "cat", "flat", "logits"}, *after_rb[4] = {"rb", "cat", "flat", "logits"};
    const char *before_pool[2] = {"c1", "r1"};
    const int use[3] = {strcmp(to, "c1") != 0, is_one_of(to, after_ra, 4), is_one_of(to, after_rb, 4)};
    for (int k = 0; k < 3; k++) {
        int64_t cnt;
        if (!use[k])
            continue;
        const float *v = tensor(s, pre[k], &cnt);
        for (int64_t i = 0; i < cnt; i++) {
            assert_true(n < MAX_PATTERN);
            out[n++] = v[i] > 0.0f;
        }
    }
    if (is_one_of(to, before_pool, 2))
        return n;
    /* argmax of each 2x2 window of r1 (N x 4 x HW x HW) */
    const float *r1 = tensor(s, "r1", NULL);
    for (int p = 0; p < N * 4; p++)
        for (int i = 0; i < H2; i++)
            for (int j = 0; j < H2; j++) {
                const float *w = r1 + (size_t)p * HW * HW;
                int best = 0;
                float bv = w[(2 * i) * HW + 2 * j];
                for (int d = 1; d < 4; d++) {
                    float v = w[(2 * i + d / 2) * HW + 2 * j + d % 2];
                    if (v > bv)
                        bv = v, best = d;
                }
                assert_true(n < MAX_PATTERN);
                out[n++] = (unsigned char)best;
            }
    return n;
}

/* f = sum(seed * T) in double after forward (to_only: forward_to T). */
static double objective(cnv_session *s, const char *out, const float *seed, int to_only)
{
    ok(s, to_only ? cnv_session_forward_to(s, tu_t(s, out)) : cnv_session_forward(s));
    int64_t n;
    const float *y = tensor(s, out, &n);
    double f = 0.0;
    for (int64_t i = 0; i < n; i++)
        f += (double)seed[i] * (double)y[i];
    return f;
}

typedef struct fd_stats {
    double max_err;
    int checked, skipped;
} fd_stats;

/* Compares cnv_session_backward(out, seed) with central differences on
 * every element of the input and of every parameter that has a gradient;
 * prints one line per tensor and returns the totals. */
static fd_stats fd_seeded(cnv_session *s, cnv_model *m, const char *label, const char *out,
                          const float *seed, double h, int to_only)
{
    fd_stats all = {0.0, 0, 0};
    ok(s, to_only ? cnv_session_forward_to(s, tu_t(s, out)) : cnv_session_forward(s));
    ok(s, tu_backward(s, out, seed));
    static unsigned char base[MAX_PATTERN], probe[MAX_PATTERN];
    int np = pattern(s, out, base);
    int n_par = cnv_model_param_count(m);
    for (int k = -1; k < n_par; k++) {
        const char *name = k < 0 ? "x" : cnv_model_param_name(m, k);
        float *g, *x;
        cnv_shape sh;
        if (cnv_session_grad(s, tu_t(s, name), &g) != CNV_OK)
            continue;
        if (k < 0)
            assert_int_equal(cnv_session_tensor(s, tu_t(s, name), &x, &sh), CNV_OK);
        else
            assert_int_equal(cnv_model_param(m, name, &x, &sh), CNV_OK);
        int64_t count = cnv_shape_count(&sh);
        float *gc = malloc((size_t)count * sizeof(float));
        assert_non_null(gc);
        memcpy(gc, g, (size_t)count * sizeof(float));
        fd_stats t = {0.0, 0, 0};
        for (int64_t i = 0; i < count; i++) {
            /* a probe that straddles a kink is retried with smaller steps */
            float keep = x[i];
            double step = h, num = NAN;
            for (int tries = 0; tries < 2 && isnan(num); tries++, step /= 10.0) {
                x[i] = (float)(keep + step);
                double fp = objective(s, out, seed, to_only);
                int crossed = pattern(s, out, probe) != np || memcmp(base, probe, (size_t)np) != 0;
                x[i] = (float)(keep - step);
                double fm = objective(s, out, seed, to_only);
                crossed |= pattern(s, out, probe) != np || memcmp(base, probe, (size_t)np) != 0;
                if (!crossed)
                    num = (fp - fm) / ((double)(float)(keep + step) - (double)(float)(keep - step));
            }
            x[i] = keep;
            if (isnan(num)) {
                t.skipped++;
                continue;
            }
            double err = fabs((double)gc[i] - num) / fmax(1.0, fabs(num));
            if (!(err <= t.max_err))
                t.max_err = isnan(err) ? INFINITY : err;
            t.checked++;
        }
        free(gc);
        printf("FD %s d/d%s: max error %.3g over %d elements, %d skipped at kinks (h %g, else %g)\n", label,
               name, t.max_err, t.checked, t.skipped, h, h / 10);
        if (!(t.max_err <= all.max_err))
            all.max_err = t.max_err;
        all.checked += t.checked;
        all.skipped += t.skipped;
    }
    ok(s, to_only ? cnv_session_forward_to(s, tu_t(s, out)) : cnv_session_forward(s)); /* leave x's state */
    return all;
}

static void fd_expect(const char *label, fd_stats st, double tol)
{
    printf("FD %s: max error %.3g over %d elements, %d skipped (tol %.3g)\n", label, st.max_err,
           st.checked, st.skipped, tol);
    if (st.checked == 0)
        fail_msg("FD %s: nothing checked", label);
    /* a few probes may straddle a kink; many would mean a broken pattern */
    if (st.skipped * 20 > st.checked + st.skipped)
        fail_msg("FD %s: %d of %d probes crossed a kink", label, st.skipped, st.checked + st.skipped);
    if (!(st.max_err <= tol))
        fail_msg("FD %s: max error %.3g exceeds %.3g", label, st.max_err, tol);
}

static int all_zero(const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (v[i] != 0.0f)
            return 0;
    return 1;
}

/* d(logits[0][3])/d(input, parameters): a one-hot seed on one class score
 * of the first batch item. */
static void class_score_gradient(void **state)
{
    (void)state;
    cnv_model *m = sn_build(0, 1);
    cnv_session *s = planned(m, 1, 2);
    float seed[N * SN_CLASSES] = {0};
    seed[3] = 1.0f;
    fd_expect("class score", fd_seeded(s, m, "class score", "logits", seed, 1e-2, 0), 1e-3);

    /* the second batch item does not touch the first item's score */
    ok(s, cnv_session_forward(s));
    ok(s, tu_backward(s, "logits", seed));
    const int per = 2 * HW * HW;
    const float *gx = cnv_session_input_grad(s);
    assert_false(all_zero(gx, per));
    assert_true(all_zero(gx + per, per));

    /* the input gradient does not depend on parameter gradients being on */
    cnv_session *s2 = planned(m, 0, 2);
    ok(s2, cnv_session_forward(s2));
    ok(s2, tu_backward(s2, "logits", seed));
    assert_int_equal(cnv_session_grad(s2, tu_t(s2, "w1"), NULL), CNV_ERR_NOT_FOUND);
    double d = tu_max_rel_diff(cnv_session_input_grad(s2), gx, 2 * per, NULL);
    printf("input gradient with and without parameter gradients: max diff %.3g\n", d);
    assert_true(d <= 1e-6);
    cnv_session_free(s2);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* The mean of one concat channel (branch b's third) of the second item,
 * reached with forward_to: seed 1/(H2*W2) on that channel. */
static void channel_mean_gradient(void **state)
{
    (void)state;
    cnv_model *m = sn_build(0, 3);
    cnv_session *s = planned(m, 1, 4);
    const int ch = 5, per_ch = H2 * H2;
    float seed[N * 8 * H2 * H2] = {0};
    for (int i = 0; i < per_ch; i++)
        seed[(1 * 8 + ch) * per_ch + i] = 1.0f / per_ch;
    fd_expect("channel mean", fd_seeded(s, m, "channel mean", "cat", seed, 1e-2, 1), 1e-3);

    ok(s, cnv_session_forward_to(s, tu_t(s, "cat")));
    ok(s, tu_backward(s, "cat", seed));
    const float *gx = cnv_session_input_grad(s);
    assert_true(all_zero(gx, 2 * HW * HW));          /* item 0 */
    assert_false(all_zero(gx + 2 * HW * HW, 2 * HW * HW));
    /* branch a and the classifier lie off the path */
    assert_true(all_zero(grad(s, "wa"), 3 * 4) && all_zero(grad(s, "ba"), 3));
    assert_true(all_zero(grad(s, "fc.w"), SN_CLASSES * 128) && all_zero(grad(s, "fc.b"), SN_CLASSES));
    assert_false(all_zero(grad(s, "wb"), 5 * 4 * 9));
    cnv_session_free(s);
    cnv_model_free(m);
}

/* Backward seeded on tensors inside the graph (a conv output, a ReLU
 * output, the pool, a branch, the flattened features: the places an
 * executor may share or alias buffers) with random seeds. */
static void intermediate_seeds(void **state)
{
    (void)state;
    const char *names[] = {"c1", "r1", "p1", "rb", "flat"};
    cnv_model *m = sn_build(0, 15);
    cnv_session *s = planned(m, 1, 16);
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        int64_t n;
        ok(s, cnv_session_forward(s));
        tensor(s, names[k], &n);
        float *seed = malloc((size_t)n * sizeof(float));
        assert_non_null(seed);
        tu_rng r;
        tu_rng_init(&r, 100 + k);
        tu_fill(&r, seed, n, -1.0f, 1.0f);
        char label[32];
        snprintf(label, sizeof label, "seed on %s", names[k]);
        fd_expect(label, fd_seeded(s, m, label, names[k], seed, 1e-2, 1), 1e-3);
        free(seed);
    }
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ------------------------------------------------------------ fan-out */

/* x (1x6) feeding two nodes: its gradient is the sum over both paths.
 * form 0: relu(x) + relu(x) through two Relu nodes; 1: Add(r, r), one
 * tensor as both inputs; 2: x + relu(x). */
static void fan_out_accumulates(void **state)
{
    (void)state;
    const float x[6] = {-1.5f, 0.75f, 2.0f, -0.25f, 0.5f, -3.0f};
    const float seed[6] = {0.5f, -1.25f, 3.0f, 2.0f, -0.75f, 1.0f};
    for (int form = 0; form < 3; form++) {
        cnv_model *m;
        assert_int_equal(cnv_model_create(&m), CNV_OK);
        cnv_shape sh = tu_shape(2, 1, 6);
        assert_int_equal(cnv_model_add_input(m, "x", &sh), CNV_OK);
        const char *r1 = "r1", *r2 = "r2", *y = "y";
        assert_int_equal(cnv_model_add_node(m, "Relu", "relu1", 1, (const char *const[]){"x"}, 1, &r1, 0, NULL),
                         CNV_OK);
        if (form == 0)
            assert_int_equal(
                cnv_model_add_node(m, "Relu", "relu2", 1, (const char *const[]){"x"}, 1, &r2, 0, NULL), CNV_OK);
        const char *a = form == 2 ? "x" : "r1", *b = form == 0 ? "r2" : "r1";
        assert_int_equal(cnv_model_add_node(m, "Add", "add", 2, (const char *const[]){a, b}, 1, &y, 0, NULL),
                         CNV_OK);
        const float *xs[1] = {x};
        cnv_session *s = tu_session(m, xs, 1);
        ok(s, cnv_session_forward(s));
        ok(s, tu_backward(s, "y", seed));
        const float *g = cnv_session_input_grad(s), *out = tensor(s, "y", NULL);
        for (int i = 0; i < 6; i++) {
            float pos = x[i] > 0.0f ? 1.0f : 0.0f;
            float want_y = form == 2 ? x[i] + pos * x[i] : 2.0f * pos * x[i];
            float want_g = form == 2 ? seed[i] + pos * seed[i] : 2.0f * pos * seed[i];
            assert_true(out[i] == want_y);
            if (g[i] != want_g)
                fail_msg("form %d: dx[%d] = %g, want %g", form, i, g[i], want_g);
        }
        /* a second backward gives the same, not twice as much */
        ok(s, tu_backward(s, "y", seed));
        for (int i = 0; i < 6; i++)
            assert_true(g[i] == (form == 2 ? seed[i] : 0.0f) + (x[i] > 0.0f ? (form == 2 ? 1.0f : 2.0f) * seed[i] : 0.0f));
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* ---------------------------------------------------------- forward_to */

static void forward_to_stops_early(void **state)
{
    (void)state;
    cnv_model *m = sn_build(0, 5);
    cnv_session *s = planned(m, 0, 6);
    ok(s, cnv_session_forward(s));
    int64_t n_ra, n_rb, n_lg;
    float *ra = tensor(s, "ra", &n_ra), *rb = tensor(s, "rb", &n_rb), *lg = tensor(s, "logits", &n_lg);
    float *want = malloc((size_t)n_ra * sizeof(float)), *seed = malloc((size_t)n_ra * sizeof(float));
    float *gwant = malloc(N * 2 * HW * HW * sizeof(float));
    assert_true(want && seed && gwant);
    memcpy(want, ra, (size_t)n_ra * sizeof(float));
    tu_rng r;
    tu_rng_init(&r, 7);
    tu_fill(&r, seed, n_ra, -1.0f, 1.0f);
    ok(s, tu_backward(s, "ra", seed));
    memcpy(gwant, cnv_session_input_grad(s), N * 2 * HW * HW * sizeof(float));

    /* Poison every value, then ask for branch a only: it is recomputed,
     * branch b and the classifier are not. */
    for (int64_t i = 0; i < n_ra; i++)
        ra[i] = NAN;
    for (int64_t i = 0; i < n_rb; i++)
        rb[i] = NAN;
    for (int64_t i = 0; i < n_lg; i++)
        lg[i] = NAN;
    ok(s, cnv_session_forward_to(s, tu_t(s, "ra")));
    assert_memory_equal(ra, want, (size_t)n_ra * sizeof(float));
    for (int64_t i = 0; i < n_rb; i++)
        assert_true(isnan(rb[i]));
    for (int64_t i = 0; i < n_lg; i++)
        assert_true(isnan(lg[i]));
    /* what was not computed cannot be differentiated */
    float lseed[N * SN_CLASSES] = {1};
    assert_int_equal(tu_backward(s, "logits", lseed), CNV_ERR_STATE);
    printf("expected error: %s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "logits"));
    assert_int_equal(tu_backward(s, "rb", seed), CNV_ERR_STATE);
    /* what was computed can, with the same result as after a full forward */
    ok(s, tu_backward(s, "ra", seed));
    assert_memory_equal(cnv_session_input_grad(s), gwant, N * 2 * HW * HW * sizeof(float));
    free(want);
    free(seed);
    free(gwant);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* "side" = relu(fc.b) depends on no input: backward from it leaves the
 * input gradient zero (and, with parameter gradients, reaches fc.b). */
static void backward_from_independent_tensor(void **state)
{
    (void)state;
    cnv_model *m = sn_build(0, 8);
    float seed[N * SN_CLASSES] = {0}, sseed[SN_CLASSES];
    seed[7] = 1.0f;
    for (int i = 0; i < SN_CLASSES; i++)
        sseed[i] = (float)(i + 1);
    for (int pg = 0; pg < 2; pg++) {
        cnv_session *s = planned(m, pg, 9);
        ok(s, cnv_session_forward(s));
        ok(s, tu_backward(s, "logits", seed));
        assert_false(all_zero(cnv_session_input_grad(s), N * 2 * HW * HW));
        ok(s, tu_backward(s, "side", sseed));
        assert_true(all_zero(cnv_session_input_grad(s), N * 2 * HW * HW));
        if (pg) {
            float *b;
            assert_int_equal(cnv_model_param(m, "fc.b", &b, NULL), CNV_OK);
            const float *gb = grad(s, "fc.b");
            for (int i = 0; i < SN_CLASSES; i++)
                assert_true(gb[i] == (b[i] > 0.0f ? sseed[i] : 0.0f));
            assert_true(all_zero(grad(s, "w1"), 4 * 2 * 9));
            assert_true(all_zero(grad(s, "fc.w"), SN_CLASSES * 128));
        } else {
            assert_int_equal(cnv_session_grad(s, tu_t(s, "side"), NULL), CNV_ERR_NOT_FOUND);
        }
        cnv_session_free(s);
    }
    cnv_model_free(m);
}

/* ---------------------------------------------------------- re-planning */

typedef struct run_out {
    float logits[SN_CLASSES];
    float gx[2 * 12 * 12];
} run_out;

/* One image of size hw through session s (planned to 1 x 2 x hw x hw):
 * logits and the gradient of class 2. */
static void run_one(cnv_session *s, int hw, run_out *o)
{
    ok(s, cnv_session_plan(s, 1, hw, hw));
    tu_rng r;
    tu_rng_init(&r, (uint64_t)hw);
    tu_fill(&r, cnv_session_input(s), 2 * hw * hw, -1.0f, 1.0f);
    ok(s, cnv_session_forward(s));
    memcpy(o->logits, tensor(s, "logits", NULL), sizeof o->logits);
    float seed[SN_CLASSES] = {0, 0, 1};
    ok(s, tu_backward(s, "logits", seed));
    memset(o->gx, 0, sizeof o->gx);
    memcpy(o->gx, cnv_session_input_grad(s), (size_t)(2 * hw * hw) * sizeof(float));
}

static void replan_matches_fresh(void **state)
{
    (void)state;
    cnv_model *m = sn_build(1, 10);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    static run_out a8, a12, b8, fresh8, fresh12;
    run_one(s, 8, &a8);
    run_one(s, 12, &a12);
    run_one(s, 8, &b8);
    for (int k = 0; k < 2; k++) {
        cnv_session *f;
        assert_int_equal(cnv_session_create(m, &f), CNV_OK);
        run_one(f, k ? 12 : 8, k ? &fresh12 : &fresh8);
        cnv_session_free(f);
    }
    assert_memory_equal(&a8, &fresh8, sizeof a8);
    assert_memory_equal(&b8, &fresh8, sizeof b8);
    assert_memory_equal(&a12, &fresh12, sizeof a12);
    assert_memory_not_equal(a8.logits, a12.logits, sizeof a8.logits);

    /* planning the same shape again keeps the plan and its buffers */
    float *in = cnv_session_input(s);
    float first = in[0];
    ok(s, cnv_session_plan(s, 1, 8, 8));
    assert_ptr_equal(cnv_session_input(s), in);
    assert_true(in[0] == first);
    ok(s, tu_backward(s, "logits", (const float[SN_CLASSES]){1}));
    /* another shape drops the computed values: backward needs a forward */
    ok(s, cnv_session_plan(s, 1, 10, 10));
    assert_int_equal(tu_backward(s, "logits", (const float[SN_CLASSES]){1}), CNV_ERR_STATE);

    /* a batch of two gives each item what it gets alone */
    ok(s, cnv_session_plan(s, 2, 8, 8));
    tu_rng r;
    tu_rng_init(&r, 8);
    tu_fill(&r, cnv_session_input(s), 2 * 8 * 8, -1.0f, 1.0f);
    memcpy(cnv_session_input(s) + 2 * 8 * 8, cnv_session_input(s), 2 * 8 * 8 * sizeof(float));
    ok(s, cnv_session_forward(s));
    const float *lg = tensor(s, "logits", NULL);
    double d0 = tu_max_rel_diff(lg, a8.logits, SN_CLASSES, NULL);
    double d1 = tu_max_rel_diff(lg + SN_CLASSES, a8.logits, SN_CLASSES, NULL);
    printf("batch of 2 vs alone: max diff %.3g, %.3g\n", d0, d1);
    assert_true(d0 <= 1e-5 && d1 <= 1e-5);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* --------------------------------------------------------------- errors */

static void expect_msg(cnv_status got, cnv_status want, const char *msg, const char *a, const char *b)
{
    printf("expected error (%s): %s\n", cnv_status_string(want), msg);
    assert_int_equal(got, want);
    if (a && !strstr(msg, a))
        fail_msg("message \"%s\" lacks \"%s\"", msg, a);
    if (b && !strstr(msg, b))
        fail_msg("message \"%s\" lacks \"%s\"", msg, b);
}

static void session_errors(void **state)
{
    (void)state;
    cnv_model *m = sn_build(0, 11);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_string_equal(cnv_session_errmsg(s), "");
    /* not planned yet */
    assert_null(cnv_session_input(s));
    assert_null(cnv_session_input_grad(s));
    expect_msg(cnv_session_forward(s), CNV_ERR_STATE, cnv_session_errmsg(s), "plan", NULL);
    /* a wrong channel count names the input and both shapes */
    cnv_shape bad = tu_shape(4, 1, 3, 8, 8);
    expect_msg(cnv_session_plan_shapes(s, 1, &bad), CNV_ERR_SHAPE, cnv_session_errmsg(s), "'x'", "1x3x8x8");
    assert_non_null(strstr(cnv_session_errmsg(s), "-1x2x8x8"));
    expect_msg(cnv_session_plan_shapes(s, 2, (cnv_shape[2]){bad, bad}), CNV_ERR_SHAPE, cnv_session_errmsg(s),
               "1 input", NULL);
    expect_msg(cnv_session_plan(s, 1, 12, 12), CNV_ERR_SHAPE, cnv_session_errmsg(s), "'x'", "1x2x12x12");
    expect_msg(cnv_session_plan(s, 0, 8, 8), CNV_ERR_INVALID_ARG, cnv_session_errmsg(s), NULL, NULL);
    ok(s, cnv_session_plan(s, 1, 8, 8));
    tu_rng r;
    tu_rng_init(&r, 12);
    tu_fill(&r, cnv_session_input(s), 2 * HW * HW, -1.0f, 1.0f);
    /* unknown names: the model has no index for them, and the session
     * refuses the -1 (0.1 took names and named them in the message; 0.2
     * takes indices and names the index) */
    float *p;
    assert_int_equal(cnv_model_tensor_index(m, "nope"), -1);
    expect_msg(cnv_session_tensor(s, tu_t(s, "nope"), &p, NULL), CNV_ERR_NOT_FOUND, cnv_session_errmsg(s), "-1", NULL);
    expect_msg(cnv_session_forward_to(s, tu_t(s, "nope")), CNV_ERR_NOT_FOUND, cnv_session_errmsg(s), "-1", NULL);
    float seed[SN_CLASSES] = {1};
    expect_msg(tu_backward(s, "nope", seed), CNV_ERR_NOT_FOUND, cnv_session_errmsg(s), "-1", NULL);
    expect_msg(cnv_session_grad(s, tu_t(s, "nope"), &p), CNV_ERR_NOT_FOUND, cnv_session_errmsg(s), "-1", NULL);
    expect_msg(cnv_session_tensor(s, tu_t(s, NULL), &p, NULL), CNV_ERR_NOT_FOUND, cnv_session_errmsg(s), NULL, NULL);
    /* backward before forward */
    expect_msg(tu_backward(s, "logits", seed), CNV_ERR_STATE, cnv_session_errmsg(s), "logits", NULL);
    ok(s, cnv_session_forward(s));
    expect_msg(tu_backward(s, "logits", NULL), CNV_ERR_INVALID_ARG, cnv_session_errmsg(s), NULL, NULL);
    /* parameter gradients are off */
    expect_msg(cnv_session_grad(s, tu_t(s, "w1"), &p), CNV_ERR_NOT_FOUND, cnv_session_errmsg(s), "w1", NULL);
    expect_msg(cnv_session_set_relu_mode(s, (cnv_relu_mode)7), CNV_ERR_INVALID_ARG, cnv_session_errmsg(s), NULL,
               NULL);
    /* after all that the session still works */
    ok(s, tu_backward(s, "logits", seed));
    assert_false(all_zero(cnv_session_input_grad(s), 2 * HW * HW));
    cnv_session_free(s);
    cnv_model_free(m);
}

/* A shape an op cannot take names the node and both shapes. */
static void plan_error_names_node(void **state)
{
    (void)state;
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(2, 1, -1), ws = tu_shape(2, 10, 128);
    static float w[10 * 128];
    assert_int_equal(cnv_model_add_input(m, "flat", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "fc.w", CNV_FLOAT32, &ws, w), CNV_OK);
    const char *y = "logits";
    cnv_attr tb = tu_attr_int("transB", 1);
    assert_int_equal(cnv_model_add_node(m, "Gemm", "fc", 2, (const char *const[]){"flat", "fc.w"}, 1, &y, 1, &tb),
                     CNV_OK);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_shape bad = tu_shape(2, 1, 100);
    expect_msg(cnv_session_plan_shapes(s, 1, &bad), CNV_ERR_SHAPE, cnv_session_errmsg(s), "'fc'", "100");
    assert_non_null(strstr(cnv_session_errmsg(s), "128"));
    /* cnv_session_plan is for one 4-D image input only */
    expect_msg(cnv_session_plan(s, 1, 8, 8), CNV_ERR_SHAPE, cnv_session_errmsg(s), "4-D", NULL);
    cnv_shape good = tu_shape(2, 1, 128);
    ok(s, cnv_session_plan_shapes(s, 1, &good));
    cnv_session_free(s);
    cnv_model_free(m);
}

static void null_handles(void **state)
{
    (void)state;
    cnv_model_free(NULL);
    cnv_session_free(NULL);
    assert_non_null(cnv_model_errmsg(NULL));
    assert_non_null(cnv_session_errmsg(NULL));
    assert_int_equal(cnv_model_create(NULL), CNV_ERR_INVALID_ARG);
    cnv_shape sh = tu_shape(1, 3);
    assert_int_equal(cnv_model_add_input(NULL, "x", &sh), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_model_add_const(NULL, "c", CNV_FLOAT32, &sh, (const float[3]){0}), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_model_add_node(NULL, "Relu", "n", 1, (const char *const[]){"x"}, 1,
                                        (const char *const[]){"y"}, 0, NULL),
                     CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_model_add_output(NULL, "y"), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_model_set_opset(NULL, 13), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_model_param(NULL, "w", NULL, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_model_input_count(NULL), 0);
    assert_int_equal(cnv_model_param_count(NULL), 0);
    assert_int_equal(cnv_model_node_count(NULL), 0);
    assert_null(tu_input_name(NULL, 0));

    cnv_session *s = (cnv_session *)&s; /* must be overwritten */
    assert_int_equal(cnv_session_create(NULL, &s), CNV_ERR_INVALID_ARG);
    assert_null(s);
    cnv_model *m = sn_build(0, 12);
    assert_int_equal(cnv_session_create(m, NULL), CNV_ERR_INVALID_ARG);
    float *p;
    const float seed[1] = {0};
    assert_int_equal(cnv_session_plan(NULL, 1, 8, 8), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_session_plan_shapes(NULL, 1, &sh), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_session_forward(NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_session_forward_to(NULL, tu_t(NULL, "y")), CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_backward(NULL, "y", seed), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_session_tensor(NULL, tu_t(NULL, "y"), &p, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_session_grad(NULL, tu_t(NULL, "y"), &p), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_session_set_param_grads(NULL, 1), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_session_set_relu_mode(NULL, CNV_RELU_GRAD), CNV_ERR_INVALID_ARG);
    assert_null(cnv_session_input(NULL));
    assert_null(cnv_session_input_grad(NULL));
    cnv_model_free(m);
}

/* A refused node names itself and leaves the model as it was. */
static void add_node_errors(void **state)
{
    (void)state;
    cnv_model *m = sn_build(0, 13);
    int nodes = cnv_model_node_count(m);
    const char *y = "y";
    struct {
        const char *op, *name;
        int n_in;
        const char *in[3];
        const char *out;
        const char *needle;
    } cases[] = {
        {"Relu", "undefined_in", 1, {"ghost"}, "y", "ghost"},
        {"Relu", "dup_input", 1, {"r1"}, "x", "'x'"},        /* a graph input's name */
        {"Relu", "dup_act", 1, {"r1"}, "ra", "'ra'"},        /* an earlier node's output */
        {"Frobnicate", "unknown_op", 1, {"r1"}, "y", "Frobnicate"},
        {"Relu", "too_many", 2, {"r1", "ra"}, "y", "2 inputs"},
        {"Conv", "too_few", 1, {"x"}, "y", "1 inputs"},
        {"Relu", "no_output", 1, {"r1"}, "", "output"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cnv_status st = cnv_model_add_node(m, cases[k].op, cases[k].name, cases[k].n_in, cases[k].in, 1,
                                           &cases[k].out, 0, NULL);
        printf("expected error (%s): %s\n", cnv_status_string(st), cnv_model_errmsg(m));
        assert_int_not_equal(st, CNV_OK);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", cases[k].name);
        assert_non_null(strstr(cnv_model_errmsg(m), quoted));
        assert_non_null(strstr(cnv_model_errmsg(m), cases[k].needle));
        assert_int_equal(cnv_model_node_count(m), nodes);
        assert_false((cnv_model_tensor_index(m, "y") >= 0));
    }
    assert_int_equal(cnv_model_add_node(m, "Relu", "dup_self", 1, (const char *const[]){"r1"}, 2,
                                        (const char *const[]){"y", "y"}, 0, NULL),
                     CNV_ERR_UNSUPPORTED); /* Relu has one output: refused before the names */
    /* a bad attribute names the node too */
    const int64_t k0[2] = {0, 3};
    cnv_attr a = tu_attr_ints("kernel_shape", 2, k0);
    assert_int_not_equal(cnv_model_add_node(m, "MaxPool", "bad_pool", 1, (const char *const[]){"r1"}, 1, &y, 1, &a),
                         CNV_OK);
    printf("expected error: %s\n", cnv_model_errmsg(m));
    assert_non_null(strstr(cnv_model_errmsg(m), "'bad_pool'"));
    cnv_attr wrong = tu_attr_string("axis", "one");
    assert_int_not_equal(cnv_model_add_node(m, "Flatten", "bad_axis", 1, (const char *const[]){"r1"}, 1, &y, 1, &wrong),
                         CNV_OK);
    printf("expected error: %s\n", cnv_model_errmsg(m));
    assert_non_null(strstr(cnv_model_errmsg(m), "'bad_axis'"));
    assert_non_null(strstr(cnv_model_errmsg(m), "axis"));
    assert_int_equal(cnv_model_node_count(m), nodes);
    assert_false((cnv_model_tensor_index(m, "y") >= 0));
    /* outputs and tensors */
    assert_int_equal(cnv_model_add_output(m, "ghost"), CNV_ERR_NOT_FOUND);
    assert_non_null(strstr(cnv_model_errmsg(m), "ghost"));
    assert_int_not_equal(cnv_model_add_output(m, "logits"), CNV_OK); /* listed twice */
    cnv_shape sh = tu_shape(1, 3);
    assert_int_not_equal(cnv_model_add_input(m, "w1", &sh), CNV_OK);
    assert_non_null(strstr(cnv_model_errmsg(m), "w1"));
    assert_int_not_equal(cnv_model_add_const(m, "c", CNV_FLOAT32, &sh, NULL), CNV_OK);
    assert_non_null(strstr(cnv_model_errmsg(m), "'c'"));
    cnv_shape neg = tu_shape(1, -1);
    assert_int_not_equal(cnv_model_add_const(m, "c", CNV_FLOAT32, &neg, (const float[1]){0}), CNV_OK);

    /* the model still plans and runs as before */
    cnv_session *s = planned(m, 0, 14);
    ok(s, cnv_session_forward(s));
    cnv_session_free(s);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(class_score_gradient),
        cmocka_unit_test(channel_mean_gradient),
        cmocka_unit_test(intermediate_seeds),
        cmocka_unit_test(fan_out_accumulates),
        cmocka_unit_test(forward_to_stops_early),
        cmocka_unit_test(backward_from_independent_tensor),
        cmocka_unit_test(replan_matches_fresh),
        cmocka_unit_test(session_errors),
        cmocka_unit_test(plan_error_names_node),
        cmocka_unit_test(null_handles),
        cmocka_unit_test(add_node_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
