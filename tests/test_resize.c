/* Resize and Upsample: forward against closed forms (nearest 2x upsampling
 * of a ramp repeats it; bilinear reproduces an affine ramp at each output's
 * source coordinate) and against the tent-filter sum and the rounding rules
 * written here for every coordinate and nearest mode, gradients by finite
 * differences (linear) and as an exact scatter (nearest), the += and
 * grad_store contracts, the legacy forms (Upsample-7/9, Resize-10), axes,
 * and every refusal. (ONNX's node tests run in test_onnx_conformance.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "engine/op.h"

/* One Resize or Upsample node on x. */
typedef struct rs_spec {
    const char *op;       /* NULL: "Resize" */
    int64_t opset;        /* 0: 13 */
    cnv_shape xs;
    const float *scales;  /* NULL: none */
    int n_scales;
    const int64_t *sizes; /* NULL: none */
    int n_sizes;
    int scales_is_input;  /* scales a graph input rather than a constant */
    int n_attrs;
    const cnv_attr *attrs;
} rs_spec;

/* Builds the model; the status of the first call that failed (add_node
 * for a refused attribute), msg its message. */
static cnv_status rs_build(const rs_spec *sp, cnv_model **out, char *msg, size_t len)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    int64_t opset = sp->opset ? sp->opset : 13;
    const char *op = sp->op ? sp->op : "Resize";
    assert_int_equal(cnv_model_set_opset(m, opset), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &sp->xs), CNV_OK);
    if (sp->scales) {
        cnv_shape ss = tu_shape(1, sp->n_scales);
        if (sp->scales_is_input)
            assert_int_equal(cnv_model_add_input(m, "scales", &ss), CNV_OK);
        else
            assert_int_equal(cnv_model_add_const(m, "scales", CNV_FLOAT32, &ss, sp->scales), CNV_OK);
    }
    if (sp->sizes) {
        cnv_shape zs = tu_shape(1, sp->n_sizes);
        assert_int_equal(cnv_model_add_const(m, "sizes", CNV_INT64, &zs, sp->sizes), CNV_OK);
    }
    /* X, roi, scales, sizes from opset 11; X, scales before (and
     * Upsample-9); X alone for Upsample-7 */
    const char *in[4] = { "x", "", sp->scales ? "scales" : "", sp->sizes ? "sizes" : "" };
    int n_in = 4;
    if (strcmp(op, "Upsample") == 0 || opset < 11) {
        in[1] = in[2];
        n_in = sp->scales ? 2 : 1;
    }
    const char *outs[1] = { "y" };
    cnv_status st = cnv_model_add_node(m, op, "rs", n_in, in, 1, outs, sp->n_attrs, sp->attrs);
    snprintf(msg, len, "%s", cnv_model_errmsg(m));
    if (st == CNV_OK)
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    *out = m;
    return st;
}

/* A session on the spec with x = xv (NULL: random); fails the test on any
 * error. y and its shape are returned through the session. */
static cnv_session *rs_run(const rs_spec *sp, const float *xv, cnv_model **mp)
{
    char msg[600];
    if (rs_build(sp, mp, msg, sizeof msg) != CNV_OK)
        fail_msg("build: %s", msg);
    const float *in[2] = { xv, sp->scales };
    cnv_session *s = tu_session(*mp, in, 3);
    if (cnv_session_forward(s) != CNV_OK)
        fail_msg("forward: %s", cnv_session_errmsg(s));
    return s;
}

static const float *y_of(cnv_session *s, cnv_shape *ys)
{
    float *y;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, ys), CNV_OK);
    return y;
}

/* ---- the references ---- */

/* Where output o of an axis of `in` samples reads, by ONNX's formulas;
 * len is the output length before flooring (in * scale, or the size). */
static double ref_src(const char *coord, int64_t o, int64_t in, double scale, double len)
{
    if (strcmp(coord, "asymmetric") == 0)
        return o / scale;
    if (strcmp(coord, "align_corners") == 0)
        return len == 1.0 ? 0.0 : o * (double)(in - 1) / (len - 1.0);
    if (strcmp(coord, "pytorch_half_pixel") == 0 && len <= 1.0)
        return 0.0;
    return (o + 0.5) / scale - 0.5; /* half_pixel, pytorch_half_pixel */
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The input index nearest mode `mode` picks for source coordinate v. */
static int64_t ref_nearest(const char *mode, double v, int64_t in)
{
    double r;
    if (strcmp(mode, "floor") == 0)
        r = floor(v);
    else if (strcmp(mode, "ceil") == 0)
        r = ceil(v);
    else if (strcmp(mode, "round_prefer_ceil") == 0)
        r = floor(v + 0.5);
    else /* round_prefer_floor: halves go down */
        r = ceil(v - 0.5);
    return (int64_t)clampd(r, 0.0, (double)(in - 1));
}

/* Bilinear as a tent filter: every input sample weighted by
 * max(0, 1 - distance) along each axis from the clamped source point. */
static double ref_tent(const float *plane, int64_t h, int64_t w, double sy, double sx)
{
    sy = clampd(sy, 0.0, (double)(h - 1));
    sx = clampd(sx, 0.0, (double)(w - 1));
    double s = 0.0;
    for (int64_t i = 0; i < h; i++)
        for (int64_t j = 0; j < w; j++) {
            double a = fmax(0.0, 1.0 - fabs(sy - (double)i)), b = fmax(0.0, 1.0 - fabs(sx - (double)j));
            s += a * b * plane[i * w + j];
        }
    return s;
}

/* The axis geometry a spec asks for: scale and unfloored length of H, W. */
typedef struct axis_ref {
    int64_t in, out;
    double scale, len;
} axis_ref;

static axis_ref by_size(int64_t in, int64_t out)
{
    return (axis_ref){ in, out, (double)out / (double)in, (double)out };
}

static axis_ref by_scale(int64_t in, float s)
{
    double len = (double)in * s;
    return (axis_ref){ in, (int64_t)floor(len), s, len };
}

/* y against the reference over planes; mode "linear" or a nearest mode. */
static double check_against_ref(const float *x, const float *y, int64_t planes, axis_ref ah, axis_ref aw,
                                const char *coord, const char *mode)
{
    double worst = 0.0;
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + p * ah.in * aw.in;
        for (int64_t o = 0; o < ah.out; o++)
            for (int64_t q = 0; q < aw.out; q++) {
                double sy = ref_src(coord, o, ah.in, ah.scale, ah.len);
                double sx = ref_src(coord, q, aw.in, aw.scale, aw.len);
                double want;
                if (strcmp(mode, "linear") == 0)
                    want = ref_tent(xp, ah.in, aw.in, sy, sx);
                else
                    want = xp[ref_nearest(mode, sy, ah.in) * aw.in + ref_nearest(mode, sx, aw.in)];
                double got = y[(p * ah.out + o) * aw.out + q];
                double e = fabs(got - want) / fmax(1.0, fabs(want));
                if (e > worst)
                    worst = e;
            }
    }
    return worst;
}

static void fill_random(float *x, int64_t n, uint64_t seed)
{
    tu_rng r;
    tu_rng_init(&r, seed);
    tu_fill(&r, x, n, -1.0f, 1.0f);
}

/* ---- closed forms ---- */

/* x[p][i][j] = 100 p + 10 i + j over 2x3 planes, upsampled 2x by nearest:
 * y[p][i][j] = x[p][i/2][j/2], through every form that should give it. */
static void nearest_2x_ramp(void **state)
{
    (void)state;
    float x[2 * 3 * 2 * 3];
    for (int p = 0; p < 6; p++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                x[(p * 2 + i) * 3 + j] = (float)(100 * p + 10 * i + j);
    const float sc4[4] = { 1, 1, 2, 2 }, sc2[2] = { 2, 2 };
    const int64_t sz4[4] = { 2, 3, 4, 6 };
    const int64_t ax[2] = { 2, 3 };
    cnv_attr asym[2] = { tu_attr_string("coordinate_transformation_mode", "asymmetric"),
                         tu_attr_string("nearest_mode", "floor") };
    cnv_attr up7 = { .name = "scales", .type = CNV_ATTR_FLOATS, .floats = sc4, .n = 4 };
    cnv_attr axes = tu_attr_ints("axes", 2, ax);
    const struct {
        const char *label;
        rs_spec sp;
    } forms[] = {
        { "Resize scales (half_pixel, round_prefer_floor)", { .scales = sc4, .n_scales = 4 } },
        { "Resize sizes", { .sizes = sz4, .n_sizes = 4 } },
        { "Resize asymmetric floor", { .scales = sc4, .n_scales = 4, .n_attrs = 2, .attrs = asym } },
        { "Resize-10", { .opset = 10, .scales = sc4, .n_scales = 4 } },
        { "Resize-18 axes 2,3", { .opset = 18, .scales = sc2, .n_scales = 2, .n_attrs = 1, .attrs = &axes } },
        { "Upsample-9", { .op = "Upsample", .opset = 9, .scales = sc4, .n_scales = 4 } },
        { "Upsample-7", { .op = "Upsample", .opset = 7, .n_attrs = 1, .attrs = &up7 } },
    };
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        rs_spec sp = forms[f].sp;
        sp.xs = tu_shape(4, 2, 3, 2, 3);
        cnv_model *m;
        cnv_session *s = rs_run(&sp, x, &m);
        cnv_shape ys;
        const float *y = y_of(s, &ys);
        assert_int_equal(ys.ndim, 4);
        assert_true(ys.dims[0] == 2 && ys.dims[1] == 3 && ys.dims[2] == 4 && ys.dims[3] == 6);
        for (int p = 0; p < 6; p++)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 6; j++)
                    assert_true(y[(p * 4 + i) * 6 + j] == (float)(100 * p + 10 * (i / 2) + j / 2));
        printf("nearest 2x ramp: %s exact\n", forms[f].label);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* Bilinear interpolation reproduces an affine function: on
 * x[p][i][j] = 7p + 0.5 i - 0.25 j + 1, y at output (o, q) is the same
 * function at the clamped source coordinates of o and q. */
static void linear_affine_ramp(void **state)
{
    (void)state;
    static const char *const coords[] = { "half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel" };
    const struct {
        int h, w;
        int by_sizes;
        int64_t oh, ow; /* by sizes */
        float sh, sw;   /* by scales */
    } shapes[] = {
        { 3, 4, 1, 7, 9, 0, 0 },      /* up, odd factors */
        { 5, 6, 1, 3, 4, 0, 0 },      /* down */
        { 4, 4, 1, 1, 4, 0, 0 },      /* one output row */
        { 4, 5, 0, 0, 0, 1.7f, 0.6f }, /* scales: align_corners uses 6.8 and 3.0 */
        { 2, 4, 0, 0, 0, 0.6f, 0.6f }, /* ONNX's downsample example */
    };
    for (size_t c = 0; c < sizeof coords / sizeof coords[0]; c++)
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            int h = shapes[k].h, w = shapes[k].w, planes = 2 * 2;
            float x[2 * 2 * 6 * 6];
            for (int p = 0; p < planes; p++)
                for (int i = 0; i < h; i++)
                    for (int j = 0; j < w; j++)
                        x[(p * h + i) * w + j] = 7.0f * p + 0.5f * i - 0.25f * j + 1.0f;
            float sc[4] = { 1, 1, shapes[k].sh, shapes[k].sw };
            int64_t sz[4] = { 2, 2, shapes[k].oh, shapes[k].ow };
            cnv_attr a[2] = { tu_attr_string("mode", "linear"),
                              tu_attr_string("coordinate_transformation_mode", coords[c]) };
            rs_spec sp = { .xs = tu_shape(4, 2, 2, h, w), .n_attrs = 2, .attrs = a };
            axis_ref ah, aw;
            if (shapes[k].by_sizes) {
                sp.sizes = sz;
                sp.n_sizes = 4;
                ah = by_size(h, shapes[k].oh);
                aw = by_size(w, shapes[k].ow);
            } else {
                sp.scales = sc;
                sp.n_scales = 4;
                ah = by_scale(h, sc[2]);
                aw = by_scale(w, sc[3]);
            }
            cnv_model *m;
            cnv_session *s = rs_run(&sp, x, &m);
            cnv_shape ys;
            const float *y = y_of(s, &ys);
            assert_int_equal(ys.dims[2], ah.out);
            assert_int_equal(ys.dims[3], aw.out);
            double worst = 0.0;
            for (int p = 0; p < planes; p++)
                for (int64_t o = 0; o < ah.out; o++)
                    for (int64_t q = 0; q < aw.out; q++) {
                        double sy = clampd(ref_src(coords[c], o, h, ah.scale, ah.len), 0, h - 1);
                        double sx = clampd(ref_src(coords[c], q, w, aw.scale, aw.len), 0, w - 1);
                        double want = 7.0 * p + 0.5 * sy - 0.25 * sx + 1.0;
                        worst = fmax(worst, fabs(y[(p * ah.out + o) * aw.out + q] - want));
                    }
            printf("linear affine ramp %-18s %dx%d -> %lldx%lld: max |diff| %.3g\n", coords[c], h, w,
                   (long long)ah.out, (long long)aw.out, worst);
            assert_true(worst < 1e-5);
            cnv_session_free(s);
            cnv_model_free(m);
        }
}

/* The legacy forms map output o to o / scale, the input's first sample at
 * the output's first (as onnxruntime and PyTorch's exports read them):
 * worked by hand on [[1, 2], [3, 4]] upsampled 2x4, rows at 0, 0.5, 1, 1.5
 * and columns at 0, 0.25, ..., 1.75, clamped to the last sample. */
static void legacy_linear(void **state)
{
    (void)state;
    const float x[4] = { 1, 2, 3, 4 }, sc[4] = { 1, 1, 2, 4 };
    const float want[32] = { 1, 1.25f, 1.5f, 1.75f, 2, 2, 2, 2, 2, 2.25f, 2.5f, 2.75f, 3, 3, 3, 3,
                             3, 3.25f, 3.5f, 3.75f, 4, 4, 4, 4, 3, 3.25f, 3.5f, 3.75f, 4, 4, 4, 4 };
    cnv_attr lin = tu_attr_string("mode", "linear");
    cnv_attr up7[2] = { lin, { .name = "scales", .type = CNV_ATTR_FLOATS, .floats = sc, .n = 4 } };
    const rs_spec forms[] = {
        { .op = "Upsample", .opset = 7, .n_attrs = 2, .attrs = up7 },
        { .op = "Upsample", .opset = 9, .scales = sc, .n_scales = 4, .n_attrs = 1, .attrs = &lin },
        { .opset = 10, .scales = sc, .n_scales = 4, .n_attrs = 1, .attrs = &lin },
    };
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        rs_spec sp = forms[f];
        sp.xs = tu_shape(4, 1, 1, 2, 2);
        cnv_model *m;
        cnv_session *s = rs_run(&sp, x, &m);
        cnv_shape ys;
        const float *y = y_of(s, &ys);
        assert_true(ys.dims[2] == 4 && ys.dims[3] == 8);
        for (int i = 0; i < 32; i++)
            assert_float_equal(y[i], want[i], 1e-6);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* ---- every mode against the references, on random planes ---- */

typedef struct sweep_shape {
    int h, w;
    int by_sizes;
    int64_t oh, ow;
    float sh, sw;
} sweep_shape;

static const sweep_shape g_shapes[] = {
    { 3, 4, 1, 8, 7, 0, 0 },       /* up */
    { 7, 6, 1, 3, 4, 0, 0 },       /* down */
    { 4, 5, 1, 4, 11, 0, 0 },      /* mixed, H kept */
    { 5, 3, 0, 0, 0, 2.5f, 1.5f }, /* scales, halves fall on samples */
    { 6, 6, 0, 0, 0, 0.5f, 0.7f }, /* scales down */
    { 1, 4, 1, 3, 1, 0, 0 },       /* one input row, one output column */
};
#define N_SHAPES ((int)(sizeof g_shapes / sizeof g_shapes[0]))

static const char *const g_coords[] = { "half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel" };
static const char *const g_nearest[] = { "round_prefer_floor", "round_prefer_ceil", "floor", "ceil" };

/* A spec for shape k; attrs filled from mode/coord/nearest. */
static rs_spec sweep_spec(const sweep_shape *k, float *sc, int64_t *sz, cnv_attr *a, const char *mode,
                          const char *coord, const char *nearest, axis_ref *ah, axis_ref *aw)
{
    rs_spec sp = { .xs = tu_shape(4, 2, 3, k->h, k->w), .attrs = a };
    a[sp.n_attrs++] = tu_attr_string("mode", strcmp(mode, "linear") == 0 ? "linear" : "nearest");
    a[sp.n_attrs++] = tu_attr_string("coordinate_transformation_mode", coord);
    if (nearest)
        a[sp.n_attrs++] = tu_attr_string("nearest_mode", nearest);
    sc[0] = sc[1] = 1;
    sc[2] = k->sh;
    sc[3] = k->sw;
    sz[0] = 2;
    sz[1] = 3;
    sz[2] = k->oh;
    sz[3] = k->ow;
    if (k->by_sizes) {
        sp.sizes = sz;
        sp.n_sizes = 4;
        *ah = by_size(k->h, k->oh);
        *aw = by_size(k->w, k->ow);
    } else {
        sp.scales = sc;
        sp.n_scales = 4;
        *ah = by_scale(k->h, k->sh);
        *aw = by_scale(k->w, k->sw);
    }
    return sp;
}

static void modes_vs_reference(void **state)
{
    (void)state;
    double worst = 0.0;
    int runs = 0;
    for (int k = 0; k < N_SHAPES; k++)
        for (int c = 0; c < 4; c++)
            for (int n = -1; n < 4; n++) { /* -1: linear */
                const char *mode = n < 0 ? "linear" : g_nearest[n];
                float sc[4], x[2 * 3 * 7 * 6];
                int64_t sz[4];
                cnv_attr a[3];
                axis_ref ah, aw;
                rs_spec sp = sweep_spec(&g_shapes[k], sc, sz, a, mode, g_coords[c], n < 0 ? NULL : mode, &ah, &aw);
                fill_random(x, 6 * g_shapes[k].h * g_shapes[k].w, 40 + (uint64_t)k);
                cnv_model *m;
                cnv_session *s = rs_run(&sp, x, &m);
                cnv_shape ys;
                const float *y = y_of(s, &ys);
                assert_int_equal(ys.dims[2], ah.out);
                assert_int_equal(ys.dims[3], aw.out);
                double e = check_against_ref(x, y, 6, ah, aw, g_coords[c], mode);
                if (e > 1e-6)
                    fail_msg("%s %s %dx%d -> %lldx%lld: max rel diff %.3g", g_coords[c], mode, g_shapes[k].h,
                             g_shapes[k].w, (long long)ah.out, (long long)aw.out, e);
                worst = fmax(worst, e);
                runs++;
                cnv_session_free(s);
                cnv_model_free(m);
            }
    printf("modes vs reference: %d runs, max rel diff %.3g\n", runs, worst);
}

/* ---- gradients ---- */

/* Linear: central differences (Resize is linear in x: no truncation). */
static void linear_fd(void **state)
{
    (void)state;
    for (int k = 0; k < N_SHAPES; k++)
        for (int c = 0; c < 4; c++) {
            float sc[4];
            int64_t sz[4];
            cnv_attr a[3];
            axis_ref ah, aw;
            rs_spec sp = sweep_spec(&g_shapes[k], sc, sz, a, "linear", g_coords[c], NULL, &ah, &aw);
            cnv_model *m;
            cnv_session *s = rs_run(&sp, NULL, &m);
            char label[128];
            snprintf(label, sizeof label, "Resize linear %s %dx%d -> %lldx%lld", g_coords[c], g_shapes[k].h,
                     g_shapes[k].w, (long long)ah.out, (long long)aw.out);
            tu_fd_assert(label, tu_fd_check(s, m, "y", 1e-2, 80, 60 + (uint64_t)k), 1e-3);
            cnv_session_free(s);
            cnv_model_free(m);
        }
}

/* Nearest: dx[i] is the sum of dy over the outputs that copied x[i], with
 * seeds that are small integers so every sum is exact. */
static void nearest_scatter(void **state)
{
    (void)state;
    for (int k = 0; k < N_SHAPES; k++)
        for (int c = 0; c < 4; c++)
            for (int n = 0; n < 4; n++) {
                float sc[4];
                int64_t sz[4];
                cnv_attr a[3];
                axis_ref ah, aw;
                rs_spec sp = sweep_spec(&g_shapes[k], sc, sz, a, g_nearest[n], g_coords[c], g_nearest[n], &ah, &aw);
                cnv_model *m;
                cnv_session *s = rs_run(&sp, NULL, &m);
                int64_t ny = 6 * ah.out * aw.out, nx = 6 * ah.in * aw.in;
                float *seed = malloc((size_t)ny * sizeof *seed);
                double *want = calloc((size_t)nx, sizeof *want);
                assert_true(seed && want);
                for (int64_t i = 0; i < ny; i++)
                    seed[i] = (float)((i * 7) % 11) - 5.0f;
                for (int64_t p = 0; p < 6; p++)
                    for (int64_t o = 0; o < ah.out; o++)
                        for (int64_t q = 0; q < aw.out; q++) {
                            int64_t i = ref_nearest(g_nearest[n], ref_src(g_coords[c], o, ah.in, ah.scale, ah.len), ah.in);
                            int64_t j = ref_nearest(g_nearest[n], ref_src(g_coords[c], q, aw.in, aw.scale, aw.len), aw.in);
                            want[(p * ah.in + i) * aw.in + j] += seed[(p * ah.out + o) * aw.out + q];
                        }
                assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
                float *dx;
                assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &dx), CNV_OK);
                for (int64_t i = 0; i < nx; i++)
                    if (dx[i] != (float)want[i])
                        fail_msg("nearest %s %s shape %d: dx[%lld] = %g, want %g", g_coords[c], g_nearest[n], k,
                                 (long long)i, dx[i], want[i]);
                free(seed);
                free(want);
                cnv_session_free(s);
                cnv_model_free(m);
            }
    printf("nearest scatter: exact over %d shapes x 4 coordinate x 4 nearest modes\n", N_SHAPES);
}

/* With parameter gradients on, the float scales constant gets one: zero,
 * as the finite differences of a planned shape say. */
static void scales_param_grad(void **state)
{
    (void)state;
    const float sc[4] = { 1, 1, 1.5f, 2 };
    cnv_attr a = tu_attr_string("mode", "linear");
    rs_spec sp = { .xs = tu_shape(4, 1, 2, 3, 3), .scales = sc, .n_scales = 4, .n_attrs = 1, .attrs = &a };
    cnv_model *m;
    char msg[600];
    assert_int_equal(rs_build(&sp, &m, msg, sizeof msg), CNV_OK);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_param_grads(s, 1), CNV_OK);
    if (cnv_session_plan_shapes(s, 1, &sp.xs) != CNV_OK)
        fail_msg("plan: %s", cnv_session_errmsg(s));
    float *x, *g;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
    fill_random(x, 18, 9);
    tu_fd_assert("Resize dX and d(scales) (param grads)", tu_fd_check(s, m, "y", 1e-2, 80, 10), 1e-3);
    assert_int_equal(cnv_session_grad(s, tu_t(s, "scales"), &g), CNV_OK);
    for (int i = 0; i < 4; i++)
        assert_true(g[i] == 0.0f);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* The op on a hand-made context: backward adds, and overwrites under
 * grad_store whatever the gradient held (for scales too). */
static void backward_contract(void **state)
{
    (void)state;
    static const char *const modes[] = { "linear", "nearest" };
    for (int md = 0; md < 2; md++) {
        const cnv_op *op = cnv_op_find("Resize");
        assert_non_null(op);
        cnv_attr a = tu_attr_string("mode", modes[md]);
        char name[] = "contract";
        cnv_node node = { 0 };
        node.name = name;
        node.op = op;
        node.n_in = 3;
        node.n_out = 1;
        node.n_attrs = 1;
        node.attrs = &a;
        void *params = calloc(1, op->params_size);
        assert_non_null(params);
        node.params = params;
        cnv_err e;
        cnv_err_clear(&e);
        assert_int_equal(op->parse(&node, params, 13, &e), CNV_OK);
        float x[2 * 4 * 5], sc[4] = { 1, 1, 1.5f, 0.6f }, y[2 * 6 * 3], dy[2 * 6 * 3];
        float g1[40] = { 0 }, g2[40], g3[40], gs[4];
        fill_random(x, 40, 1);
        fill_random(dy, 36, 2);
        cnv_val vx = { .data = x, .shape = tu_shape(4, 1, 2, 4, 5), .count = 40 };
        cnv_val vs = { .data = sc, .shape = tu_shape(1, 4), .count = 4, .is_const = 1 };
        cnv_val vy = { .data = y, .grad = dy };
        cnv_val *ins[3] = { &vx, NULL, &vs }, *outs[1] = { &vy };
        cnv_op_ctx *c = aligned_alloc(64, (sizeof *c + 63) / 64 * 64);
        assert_non_null(c);
        memset(c, 0, sizeof *c);
        c->node = &node;
        c->params = params;
        c->in = ins;
        c->out = outs;
        size_t st = 0, work = 0;
        if (op->plan(c, &st, &work, &e) != CNV_OK)
            fail_msg("plan: %s", e.msg);
        assert_true(vy.shape.dims[2] == 6 && vy.shape.dims[3] == 3);
        c->state = aligned_alloc(64, (st + 63) / 64 * 64);
        assert_non_null(c->state);
        memset(c->state, 0, st);
        op->forward(c);
        vx.grad = g1;
        op->backward(c);
        for (int i = 0; i < 40; i++) {
            g2[i] = 0.25f;
            g3[i] = NAN;
        }
        vx.grad = g2;
        op->backward(c);
        unsigned char store[3] = { 1, 0, 1 };
        c->grad_store = store;
        vx.grad = g3;
        for (int i = 0; i < 4; i++)
            gs[i] = NAN;
        vs.grad = gs;
        op->backward(c);
        for (int i = 0; i < 40; i++) {
            assert_true(fabs((double)g2[i] - 0.25 - g1[i]) < 1e-6);
            assert_true(g3[i] == g1[i]);
        }
        for (int i = 0; i < 4; i++)
            assert_true(gs[i] == 0.0f);
        free(c->state);
        free(c);
        free(params);
    }
}

/* ---- refusals ---- */

static void expect(const char *what, const rs_spec *sp, cnv_status want, const char *mention)
{
    char msg[600];
    cnv_model *m;
    cnv_status st = rs_build(sp, &m, msg, sizeof msg);
    if (st == CNV_OK) {
        cnv_session *s;
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        cnv_shape shapes[2] = { sp->xs, tu_shape(1, sp->n_scales) };
        st = cnv_session_plan_shapes(s, sp->scales_is_input ? 2 : 1, shapes);
        snprintf(msg, sizeof msg, "%s", cnv_session_errmsg(s));
        cnv_session_free(s);
    }
    cnv_model_free(m);
    printf("resize error %-34s -> %s: %s\n", what, cnv_status_string(st), msg);
    assert_int_equal(st, want);
    assert_non_null(strstr(msg, "'rs'"));
    assert_non_null(strstr(msg, mention));
}

static void refusals(void **state)
{
    (void)state;
    const float sc[4] = { 1, 1, 2, 2 }, sc_c[4] = { 1, 2, 2, 2 }, sc0[4] = { 1, 1, 0, 2 }, sc_small[4] = { 1, 1, 0.1f, 2 };
    const int64_t sz[4] = { 1, 2, 8, 8 }, sz3[3] = { 1, 2, 8 };
    const int64_t ax_rep[2] = { 3, -1 };
    cnv_shape xs = tu_shape(4, 1, 2, 4, 4);
    cnv_attr a;
    rs_spec sp;

    /* each case: X 1x2x4x4 upsampled 2x by constant scales, then one
     * thing changed */
    const rs_spec base = { .xs = xs, .scales = sc, .n_scales = 4 };
    a = tu_attr_string("mode", "cubic");
    sp = base;
    sp.n_attrs = 1;
    sp.attrs = &a;
    expect("cubic", &sp, CNV_ERR_UNSUPPORTED, "cubic");
    a = tu_attr_string("coordinate_transformation_mode", "tf_crop_and_resize");
    expect("tf_crop_and_resize", &sp, CNV_ERR_UNSUPPORTED, "tf_crop_and_resize");
    a = tu_attr_string("coordinate_transformation_mode", "tf_half_pixel_for_nn");
    expect("tf_half_pixel_for_nn", &sp, CNV_ERR_UNSUPPORTED, "tf_half_pixel_for_nn");
    a = tu_attr_string("coordinate_transformation_mode", "sideways");
    expect("unknown coordinate mode", &sp, CNV_ERR_FORMAT, "sideways");
    a = tu_attr_string("nearest_mode", "nearest");
    expect("unknown nearest_mode", &sp, CNV_ERR_FORMAT, "nearest_mode");
    a = tu_attr_int("exclude_outside", 2);
    expect("exclude_outside 2", &sp, CNV_ERR_FORMAT, "exclude_outside");
    a = tu_attr_int("antialias", 1);
    sp.opset = 18;
    expect("antialias", &sp, CNV_ERR_UNSUPPORTED, "antialias");
    a = tu_attr_ints("axes", 2, ax_rep);
    sp.n_scales = 2;
    expect("axes repeated", &sp, CNV_ERR_FORMAT, "axes");
    a = tu_attr_string("keep_aspect_ratio_policy", "not_larger");
    sp = (rs_spec){ .opset = 18, .xs = xs, .sizes = sz, .n_sizes = 4, .n_attrs = 1, .attrs = &a };
    expect("keep_aspect_ratio_policy", &sp, CNV_ERR_UNSUPPORTED, "keep_aspect_ratio_policy");

    sp = base;
    sp.scales = sc_c;
    expect("scaling C", &sp, CNV_ERR_UNSUPPORTED, "N and C");
    sp.scales = sc0;
    expect("scale 0", &sp, CNV_ERR_FORMAT, "scales[2]");
    sp.scales = sc_small;
    expect("scale to an empty output", &sp, CNV_ERR_SHAPE, "empty");
    sp = base;
    sp.xs = tu_shape(3, 1, 2, 4);
    sp.n_scales = 3;
    expect("3-D X", &sp, CNV_ERR_UNSUPPORTED, "4-D");
    sp = base;
    sp.scales_is_input = 1;
    expect("scales a graph input", &sp, CNV_ERR_UNSUPPORTED, "constant");
    sp = base;
    sp.sizes = sz;
    sp.n_sizes = 4;
    expect("scales and sizes", &sp, CNV_ERR_FORMAT, "both");
    sp = (rs_spec){ .xs = xs };
    expect("neither scales nor sizes", &sp, CNV_ERR_FORMAT, "neither");
    sp = (rs_spec){ .xs = xs, .sizes = sz3, .n_sizes = 3 };
    expect("sizes of 3", &sp, CNV_ERR_SHAPE, "sizes");
    sp = base;
    sp.op = "Upsample";
    sp.opset = 6;
    expect("Upsample-6", &sp, CNV_ERR_UNSUPPORTED, "opset 7");
    sp = (rs_spec){ .op = "Upsample", .opset = 7, .xs = xs };
    expect("Upsample-7 without scales", &sp, CNV_ERR_FORMAT, "scales");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nearest_2x_ramp),   cmocka_unit_test(linear_affine_ramp),
        cmocka_unit_test(legacy_linear),     cmocka_unit_test(modes_vs_reference),
        cmocka_unit_test(linear_fd),         cmocka_unit_test(nearest_scatter),
        cmocka_unit_test(scales_param_grad), cmocka_unit_test(backward_contract),
        cmocka_unit_test(refusals),
    };
    /* planes split over 3 threads */
    const struct CMUnitTest threaded[] = {
        cmocka_unit_test(modes_vs_reference),
        cmocka_unit_test(nearest_scatter),
    };
    int failed = cmocka_run_group_tests_name("one thread", tests, NULL, NULL);
    cnv_set_threads(3);
    failed += cmocka_run_group_tests_name("three threads", threaded, NULL, NULL);
    return failed;
}
