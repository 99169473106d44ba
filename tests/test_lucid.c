/* The Lucid recipe's pieces (src/viz/lucid.h): the spectral
 * parameterization against a naive DFT written out here and against finite
 * differences, the warp against closed forms, its adjoint and finite
 * differences, Adam against a sequence computed by hand from the paper's
 * formulas, the recipe names. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include "viz/lucid.h"

#define PI 3.14159265358979323846

/* ------------------------------------------------------ parameterization */

/* z[n] = sum over the half spectrum of c_k s_k Re(theta_k e^{2 pi i k.n})
 * (c_k = 1 in columns 0 and w/2, else 2), in double, for one plane. */
static void naive_spectral(const float *theta, const float *scale, int h, int w, double *z)
{
    int wf = w / 2 + 1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double sum = 0.0;
            for (int ky = 0; ky < h; ky++)
                for (int kx = 0; kx < wf; kx++) {
                    int k = ky * wf + kx;
                    double c = kx == 0 || 2 * kx == w ? 1.0 : 2.0;
                    double phi = 2.0 * PI * ((double)ky * y / h + (double)kx * x / w);
                    sum += c * scale[k] * (theta[2 * k] * cos(phi) - theta[2 * k + 1] * sin(phi));
                }
            z[y * w + x] = sum;
        }
}

static void test_spectral_vs_naive_dft(void **state)
{
    (void)state;
    const int sizes[][2] = { { 6, 7 }, { 5, 8 }, { 1, 4 }, { 8, 1 }, { 9, 9 } };
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int h = sizes[t][0], w = sizes[t][1];
        cnv_err e;
        cnv_param p;
        /* no decorrelation, clamp: the pixels are z + 1/2 while inside */
        assert_int_equal(cnv_param_init(&p, 1, 0, 0, 2, 3, h, w, &e), CNV_OK);
        float *theta = malloc(p.count * sizeof *theta);
        double *z = malloc((size_t)h * w * sizeof *z);
        assert_true(theta && z);
        cnv_rng r;
        cnv_rng_seed(&r, 7 + t);
        /* small enough that no pixel reaches the clamp */
        for (int i = 0; i < 2; i++)
            cnv_param_random(&p, theta, i, 0.05f, &r);
        cnv_param_image(&p, theta);
        size_t per_plane = 2 * (size_t)h * (w / 2 + 1);
        double worst = 0.0;
        for (int q = 0; q < 6; q++) {
            naive_spectral(theta + q * per_plane, p.scale, h, w, z);
            for (int j = 0; j < h * w; j++) {
                double d = fabs((p.pix[q * h * w + j] - 0.5) - z[j]);
                assert_true(fabs(z[j]) < 0.45);
                worst = d > worst ? d : worst;
            }
        }
        assert_true(worst < 2e-6);
        free(theta);
        free(z);
        cnv_param_free(&p);
    }
}

/* The amplitude falls as 1 / frequency (flat below 1 / max(h, w)), and a
 * pixel of unit-variance parameters has about unit variance. */
static void test_spectral_scale(void **state)
{
    (void)state;
    int h = 32, w = 48, wf = w / 2 + 1;
    cnv_err e;
    cnv_param p;
    assert_int_equal(cnv_param_init(&p, 1, 0, 0, 64, 1, h, w, &e), CNV_OK);
    double ref = 0.0;
    for (int ky = 0; ky < h; ky++)
        for (int kx = 0; kx < wf; kx++) {
            double fy = (ky <= h / 2 ? ky : ky - h) / (double)h, fx = kx / (double)w;
            double f = sqrt(fy * fy + fx * fx), fl = f > 1.0 / 48 ? f : 1.0 / 48;
            double v = p.scale[ky * wf + kx] * fl;
            if (ky == 0 && kx == 0)
                ref = v;
            assert_true(fabs(v - ref) < 1e-6 * ref);
        }
    /* pixel variance: mean of z^2 over 64 images, from parameters of std
     * 0.01 (so that the clamp never cuts: pix = z + 1/2), scaled back */
    float *theta = malloc(p.count * sizeof *theta);
    assert_non_null(theta);
    cnv_rng r;
    cnv_rng_seed(&r, 3);
    for (int i = 0; i < 64; i++)
        cnv_param_random(&p, theta, i, 0.01f, &r);
    cnv_param_image(&p, theta);
    double s2 = 0.0;
    for (size_t j = 0; j < p.pixels; j++) {
        double z = ((double)p.pix[j] - 0.5) / 0.01;
        s2 += z * z;
    }
    s2 /= (double)p.pixels;
    print_message("pixel variance of unit parameters: %.3f\n", s2);
    assert_true(s2 > 0.8 && s2 < 1.2);
    free(theta);
    cnv_param_free(&p);
}

/* d/dtheta of L = sum(r * pixels) against central differences in every
 * configuration, on a few parameters of each kind (both parts of interior,
 * column-0 and Nyquist frequencies). */
static void test_param_gradient_fd(void **state)
{
    (void)state;
    for (int cfg = 0; cfg < 8; cfg++) {
        int spectral = cfg & 1, decor = cfg >> 1 & 1, sig = cfg >> 2 & 1;
        int n = 2, c = 3, h = 6, w = 8;
        cnv_err e;
        cnv_param p;
        assert_int_equal(cnv_param_init(&p, spectral, decor, sig, n, c, h, w, &e), CNV_OK);
        float *theta = malloc(p.count * sizeof *theta), *g = malloc(p.count * sizeof *g);
        float *r = malloc(p.pixels * sizeof *r);
        assert_true(theta && g && r);
        cnv_rng rng;
        cnv_rng_seed(&rng, 100 + cfg);
        for (int i = 0; i < n; i++)
            cnv_param_random(&p, theta, i, sig ? 1.0f : 0.1f, &rng);
        tu_rng tr;
        tu_rng_init(&tr, 200 + cfg);
        tu_fill(&tr, r, (int64_t)p.pixels, -1.0f, 1.0f);
        cnv_param_image(&p, theta);
        memcpy(g, cnv_param_backward(&p, r), p.count * sizeof *g);
        double worst = 0.0, big = 0.0;
        for (size_t j = 0; j < p.count; j += 7) {
            float keep = theta[j];
            double l[2];
            for (int s = 0; s < 2; s++) {
                theta[j] = keep + (s ? -1e-2f : 1e-2f);
                cnv_param_image(&p, theta);
                double sum = 0.0;
                for (size_t k = 0; k < p.pixels; k++)
                    sum += (double)r[k] * p.pix[k];
                l[s] = sum;
            }
            theta[j] = keep;
            double fd = (l[0] - l[1]) / (2.0 * ((double)(keep + 1e-2f) - keep));
            double d = fabs(fd - g[j]);
            worst = d > worst ? d : worst;
            big = fabs(g[j]) > big ? fabs(g[j]) : big;
        }
        print_message("param spectral %d decorrelate %d sigmoid %d: worst |fd - grad| %.2e of max %.2e\n",
                      spectral, decor, sig, worst, big);
        assert_true(big > 1e-3); /* something was checked */
        assert_true(worst < 2e-3 * big + 1e-5);
        free(theta);
        free(g);
        free(r);
        cnv_param_free(&p);
    }
}

static void test_param_errors(void **state)
{
    (void)state;
    cnv_err e;
    cnv_param p;
    assert_int_equal(cnv_param_init(&p, 1, 1, 1, 0, 3, 8, 8, &e), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_param_init(&p, 1, 1, 1, 1 << 20, 3, 1 << 12, 1 << 12, &e), CNV_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "too many"));
    cnv_param_free(&p); /* zeroed by the failed init: a no-op */
}

/* ------------------------------------------------------------------ warp */

static void test_warp_closed_forms(void **state)
{
    (void)state;
    int c = 2, h = 5, w = 6;
    float in[60], out[60], fill[2] = { -7.0f, 9.0f };
    for (int j = 0; j < c * h * w; j++)
        in[j] = (float)(j * j % 13) - 4.0f;
    /* identity */
    cnv_warp id = { 1.0f, 0.0f, 0.0f, 0.0f };
    cnv_warp_forward(&id, in, c, h, w, fill, out);
    assert_memory_equal(in, out, sizeof in);
    /* a shift by (2, -1): out(y, x) = in(y - 2, x + 1), fill outside */
    cnv_warp sh = { 1.0f, 0.0f, 2.0f, -1.0f };
    cnv_warp_forward(&sh, in, c, h, w, fill, out);
    for (int k = 0; k < c; k++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int sy = y - 2, sx = x + 1;
                float want = sy >= 0 && sy < h && sx < w ? in[(k * h + sy) * w + sx] : fill[k];
                assert_true(fabsf(out[(k * h + y) * w + x] - want) < 1e-5f);
            }
    /* 180 degrees about the center: out(y, x) = in(h-1-y, w-1-x) */
    cnv_warp rot = { 1.0f, (float)PI, 0.0f, 0.0f };
    cnv_warp_forward(&rot, in, c, h, w, fill, out);
    for (int k = 0; k < c; k++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                assert_true(fabsf(out[(k * h + y) * w + x] - in[(k * h + h - 1 - y) * w + w - 1 - x]) < 1e-4f);
    /* scale 2 about the center (2, 2.5): out(2, 0) samples (2, 2.5 - 2.5 / 2)
     * = (2, 1.25) */
    cnv_warp zoom = { 2.0f, 0.0f, 0.0f, 0.0f };
    cnv_warp_forward(&zoom, in, c, h, w, fill, out);
    assert_true(fabsf(out[2 * w + 0] - (0.75f * in[2 * w + 1] + 0.25f * in[2 * w + 2])) < 1e-5f);
}

/* The warp is affine in the image: <W x, y> = <x, W^T y> with fill 0,
 * and the gradient of sum(r * warp(x)) matches central differences. */
static void test_warp_adjoint(void **state)
{
    (void)state;
    int c = 3, h = 9, w = 11, n = c * h * w;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *wx = malloc(n * sizeof *wx);
    float *wty = calloc(n, sizeof *wty), zero[3] = { 0, 0, 0 }, fill[3] = { 0.5f, -1.0f, 2.0f };
    assert_true(x && y && wx && wty);
    tu_rng r;
    tu_rng_init(&r, 5);
    tu_fill(&r, x, n, -1.0f, 1.0f);
    tu_fill(&r, y, n, -1.0f, 1.0f);
    cnv_rng rng;
    cnv_rng_seed(&rng, 9);
    for (int trial = 0; trial < 20; trial++) {
        cnv_warp t = cnv_warp_random(&rng, 0.8f, 1.2f, 30.0f, 3.0f);
        cnv_warp_forward(&t, x, c, h, w, zero, wx);
        memset(wty, 0, n * sizeof *wty);
        cnv_warp_backward(&t, y, c, h, w, wty);
        double a = 0.0, b = 0.0;
        for (int j = 0; j < n; j++) {
            a += (double)wx[j] * y[j];
            b += (double)x[j] * wty[j];
        }
        assert_true(fabs(a - b) < 1e-4 * (1.0 + fabs(a)));
        /* finite differences with a nonzero fill, on a few pixels */
        for (int j = trial; j < n; j += 37) {
            float keep = x[j];
            double l[2];
            for (int s = 0; s < 2; s++) {
                x[j] = keep + (s ? -0.25f : 0.25f);
                cnv_warp_forward(&t, x, c, h, w, fill, wx);
                double sum = 0.0;
                for (int k = 0; k < n; k++)
                    sum += (double)wx[k] * y[k];
                l[s] = sum;
            }
            x[j] = keep;
            assert_true(fabs((l[0] - l[1]) / 0.5 - wty[j]) < 1e-4);
        }
    }
    free(x);
    free(y);
    free(wx);
    free(wty);
}

/* The blur's adjoint: <B x, y> = <x, B^T y> for several sigmas and sizes
 * (borders mirrored), which makes it the exact gradient of the blur. */
static void test_blur_adjoint(void **state)
{
    (void)state;
    const int sizes[][2] = { { 9, 11 }, { 3, 17 }, { 1, 5 }, { 24, 24 } };
    const float sigmas[] = { 0.3f, 0.8f, 1.0f, 2.5f };
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++)
        for (size_t u = 0; u < sizeof sigmas / sizeof sigmas[0]; u++) {
            int c = 2, h = sizes[t][0], w = sizes[t][1], n = c * h * w;
            float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *bx = malloc(n * sizeof *bx);
            float *bty = malloc(n * sizeof *bty), *scratch = malloc(cnv_blur_scratch(h, w, sigmas[u]) * sizeof *scratch);
            assert_true(x && y && bx && bty && scratch);
            tu_rng r;
            tu_rng_init(&r, 40 + t * 8 + u);
            tu_fill(&r, x, n, -1.0f, 1.0f);
            tu_fill(&r, y, n, -1.0f, 1.0f);
            memcpy(bx, x, n * sizeof *x);
            cnv_blur_chw(bx, c, h, w, sigmas[u], scratch);
            memcpy(bty, y, n * sizeof *y);
            cnv_blur_chw_adjoint(bty, c, h, w, sigmas[u], scratch);
            double a = 0.0, b = 0.0, moved = 0.0;
            for (int j = 0; j < n; j++) {
                a += (double)bx[j] * y[j];
                b += (double)x[j] * bty[j];
                moved += fabs((double)bty[j] - y[j]);
            }
            assert_true(fabs(a - b) < 1e-5 * (1.0 + fabs(a)));
            assert_true(moved > 1e-3); /* the adjoint did something */
            free(x);
            free(y);
            free(bx);
            free(bty);
            free(scratch);
        }
}

/* Random warps stay in their ranges and depend only on the stream. */
static void test_warp_random(void **state)
{
    (void)state;
    cnv_rng a, b;
    cnv_rng_seed(&a, 11);
    cnv_rng_seed(&b, 11);
    for (int i = 0; i < 1000; i++) {
        cnv_warp t = cnv_warp_random(&a, 0.9f, 1.1f, 10.0f, 8.0f), u = cnv_warp_random(&b, 0.9f, 1.1f, 10.0f, 8.0f);
        assert_memory_equal(&t, &u, sizeof t);
        assert_true(t.scale >= 0.9f && t.scale <= 1.1f);
        assert_true(fabsf(t.angle) <= (float)(10.0 * PI / 180.0) + 1e-6f);
        assert_true(fabsf(t.dy) <= 8.0f && fabsf(t.dx) <= 8.0f);
    }
}

/* ------------------------------------------------------------------ Adam */

/* Two parameters, three steps, lr 0.1, betas 0.9 / 0.999, eps 1e-8: the
 * values below were computed by hand (in double, from Kingma and Ba's
 * algorithm 1, ascending). */
static void test_adam_sequence(void **state)
{
    (void)state;
    float x[2] = { 1.0f, -0.5f }, m[2] = { 0, 0 }, v[2] = { 0, 0 };
    const float g[3][2] = { { 1.0f, 0.25f }, { -2.0f, 0.25f }, { 0.5f, -4.0f } };
    const double want[3][2] = {
        { 1.099999999, -0.4000000039999998 },
        { 1.0633896465279251, -0.3000000080000004 },
        { 1.0497205803261784, -0.35683280774249554 },
    };
    cnv_adam a = { .lr = 0.1f, .b1 = 0.9f, .b2 = 0.999f, .eps = 1e-8f };
    for (int t = 0; t < 3; t++) {
        cnv_adam_step(&a, x, g[t], m, v, 2);
        for (int i = 0; i < 2; i++)
            assert_true(fabs(x[i] - want[t][i]) < 2e-6);
    }
    assert_int_equal(a.t, 3);
}

static void test_recipe_names(void **state)
{
    (void)state;
    assert_string_equal(cnv_recipe_name(CNV_RECIPE_LUCID), "lucid");
    assert_string_equal(cnv_recipe_name(CNV_RECIPE_CS231N), "cs231n");
    assert_null(cnv_recipe_name((cnv_recipe)7));
    assert_int_equal(cnv_recipe_parse("lucid"), CNV_RECIPE_LUCID);
    assert_int_equal(cnv_recipe_parse("cs231n"), CNV_RECIPE_CS231N);
    assert_int_equal(cnv_recipe_parse("Lucid"), -1);
    assert_int_equal(cnv_recipe_parse(NULL), -1);
    cnv_lucid_params p = cnv_lucid_params_default();
    cnv_err e;
    assert_int_equal(cnv_lucid_check(&p, "t", &e), CNV_OK);
    p.scale_min = 1.2f;
    assert_int_equal(cnv_lucid_check(&p, "t", &e), CNV_ERR_INVALID_ARG);
    p = cnv_lucid_params_default();
    p.lr = NAN;
    assert_int_equal(cnv_lucid_check(&p, "t", &e), CNV_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spectral_vs_naive_dft),
        cmocka_unit_test(test_spectral_scale),
        cmocka_unit_test(test_param_gradient_fd),
        cmocka_unit_test(test_param_errors),
        cmocka_unit_test(test_warp_closed_forms),
        cmocka_unit_test(test_warp_adjoint),
        cmocka_unit_test(test_blur_adjoint),
        cmocka_unit_test(test_warp_random),
        cmocka_unit_test(test_adam_sequence),
        cmocka_unit_test(test_recipe_names),
    };
    return cmocka_run_group_tests_name("lucid", tests, NULL, NULL);
}
