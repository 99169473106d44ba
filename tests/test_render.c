/* Composed objectives (cnv_render): the diversity term's gradient against
 * central differences, each kind's reported value against the tensor
 * computed here from the result, weights (negative, interpolated, per
 * item), the same picture as cnv_neuron for one channel, errors; and on
 * SqueezeNet, when ../shared is present, that diversity spreads a batch. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "smallnet.h"
#include "testutil.h"
#include "viz/lucid.h"

#define SQUEEZENET "../shared/imagenet/squeezenet1_1.onnx"

static void ok_s(cnv_session *s, cnv_status st)
{
    if (st != CNV_OK)
        fail_msg("%s: %s", cnv_status_string(st), cnv_session_errmsg(s));
}

static void names(void **state)
{
    (void)state;
    for (int k = CNV_OBJ_CLASS; k <= CNV_OBJ_DIVERSITY; k++)
        assert_int_equal(cnv_objective_parse(cnv_objective_name((cnv_objective_kind)k)), k);
    assert_string_equal(cnv_objective_name(CNV_OBJ_LAYER_L2), "l2");
    assert_null(cnv_objective_name((cnv_objective_kind)6));
    assert_int_equal(cnv_objective_parse("Channel"), -1);
    assert_int_equal(cnv_objective_parse(NULL), -1);
    cnv_objective o = cnv_objective_default(CNV_OBJ_NEURON);
    assert_true(o.weight == 1.0f && o.weight_last == 1.0f && o.item == -1 && o.y == -1 && o.x == -1);
}

/* sum_i w_i val_i of cnv_diversity, in double through its value output */
static double div_obj(const float *A, int n, int C, size_t P, const float *w, float *G)
{
    float val[8], *dA = calloc((size_t)n * C * P, sizeof *dA);
    assert_non_null(dA);
    cnv_diversity(A, n, C, P, w, val, dA, G);
    free(dA);
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += (double)w[i] * val[i];
    return s;
}

/* The diversity gradient against central differences, with unequal
 * weights; and its value against the cosine similarities written out. */
static void diversity_gradient(void **state)
{
    (void)state;
    enum { n = 3, C = 4 };
    const size_t P = 6, count = n * C * 6;
    float A[3 * 4 * 6], dA[3 * 4 * 6] = {0}, val[3], G[(n + 1) * C * C];
    const float w[n] = {1.0f, -0.5f, 2.0f};
    tu_rng r;
    tu_rng_init(&r, 4);
    tu_fill(&r, A, (int64_t)count, -1.0f, 1.0f);
    cnv_diversity(A, n, C, P, w, val, dA, G);
    /* the value: cosines of the Gram matrices, computed here in double */
    double g[n][C * C], nr[n];
    for (int i = 0; i < n; i++) {
        nr[i] = 0.0;
        for (int a = 0; a < C; a++)
            for (int b = 0; b < C; b++) {
                double s = 0.0;
                for (size_t p = 0; p < P; p++)
                    s += (double)A[(i * C + a) * P + p] * A[(i * C + b) * P + p];
                g[i][a * C + b] = s / P;
                nr[i] += g[i][a * C + b] * g[i][a * C + b];
            }
        nr[i] = sqrt(nr[i]);
    }
    for (int i = 0; i < n; i++) {
        double v = 0.0;
        for (int j = 0; j < n; j++) {
            if (j == i)
                continue;
            double d = 0.0;
            for (int k = 0; k < C * C; k++)
                d += g[i][k] * g[j][k];
            v += d / (nr[i] * nr[j]);
        }
        v = -v / (n - 1);
        assert_true(fabs(v - val[i]) < 1e-5);
    }
    double worst = 0.0, big = 0.0;
    for (size_t j = 0; j < count; j++) {
        float keep = A[j];
        A[j] = keep + 1e-2f;
        double up = div_obj(A, n, C, P, w, G);
        A[j] = keep - 1e-2f;
        double down = div_obj(A, n, C, P, w, G);
        A[j] = keep;
        double fd = (up - down) / 2e-2;
        worst = fmax(worst, fabs(fd - dA[j]));
        big = fmax(big, fabs(dA[j]));
    }
    printf("diversity gradient: worst |fd - grad| %.2e of max %.2e\n", worst, big);
    assert_true(big > 1e-2);
    assert_true(worst < 1e-3 * big + 1e-5);
    /* one item: no pairs, value and gradient zero */
    memset(dA, 0, sizeof dA);
    cnv_diversity(A, 1, C, P, w, val, dA, G);
    assert_true(val[0] == 0.0f);
    for (size_t j = 0; j < C * P; j++)
        assert_true(dA[j] == 0.0f);
}

enum { H = 8, W = 8, ITEM = 2 * H * W };

static cnv_render_params small_params(int iters)
{
    cnv_render_params p = cnv_render_params_default();
    p.lucid.iters = iters;
    p.lucid.lr = 0.1f;
    p.height = H;
    p.width = W;
    p.seed = 5;
    return p;
}

/* Tensor t of the session after a forward of the n images. */
static float *forward_tensor(cnv_session *s, const float *img, int n, const char *name, cnv_shape *sh)
{
    ok_s(s, cnv_session_plan(s, n, H, W));
    memcpy(cnv_session_input(s), img, (size_t)n * ITEM * sizeof *img);
    ok_s(s, cnv_session_forward(s));
    float *a;
    ok_s(s, cnv_session_tensor(s, tu_t(s, name), &a, sh));
    return a;
}

/* Each kind's value as cnv_render reports it equals the objective
 * computed here from the tensor on the rendered images; the objective
 * went up from the start (0 steps). */
static void values_and_ascent(void **state)
{
    (void)state;
    cnv_model *m = sn_build(1, 31);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    const float mean[2] = {0.5f, 0.4f}, std[2] = {0.25f, 0.3f};
    cnv_preprocess pp = tu_pp(2, H, W, mean, std);
    const float dir[8] = {0.5f, -1.0f, 0.0f, 2.0f, 0.0f, 0.0f, 1.0f, -0.5f};
    cnv_objective terms[6];
    terms[0] = cnv_objective_default(CNV_OBJ_CLASS);
    terms[0].index = 3;
    terms[1] = cnv_objective_default(CNV_OBJ_CHANNEL);
    terms[1].layer = "ra";
    terms[1].index = 2;
    terms[2] = cnv_objective_default(CNV_OBJ_NEURON);
    terms[2].layer = "rb";
    terms[2].index = 4;
    terms[2].y = 1;
    terms[2].x = 2;
    terms[3] = cnv_objective_default(CNV_OBJ_LAYER_L2);
    terms[3].layer = "r1";
    terms[4] = cnv_objective_default(CNV_OBJ_DIRECTION);
    terms[4].layer = "cat";
    terms[4].direction = dir;
    terms[4].n_direction = 8;
    terms[5] = cnv_objective_default(CNV_OBJ_CLASS);
    terms[5].index = 7;
    terms[5].probability = 1;
    float img[2 * ITEM], start[2 * ITEM], v[2], v0[2];
    for (int k = 0; k < 6; k++) {
        cnv_render_params p = small_params(0);
        p.preprocess = &pp;
        ok_s(s, cnv_render(s, 2, &terms[k], 1, &p, start, sizeof start / sizeof *start, v0));
        p.lucid.iters = 30;
        ok_s(s, cnv_render(s, 2, &terms[k], 1, &p, img, sizeof img / sizeof *img, v));
        cnv_shape sh;
        const char *name = terms[k].layer ? terms[k].layer : "logits";
        const float *a = forward_tensor(s, img, 2, name, &sh);
        size_t per = (size_t)(cnv_shape_count(&sh) / 2), P = per / (size_t)sh.dims[1];
        for (int i = 0; i < 2; i++) {
            const float *ai = a + i * per;
            double want = 0.0;
            switch (k) {
            case 0:
                want = ai[3];
                break;
            case 1:
                for (size_t q = 0; q < P; q++)
                    want += ai[2 * P + q] / (double)P;
                break;
            case 2:
                want = ai[4 * P + 1 * 4 + 2]; /* rb is 4 x 4 */
                break;
            case 3:
                for (size_t q = 0; q < per; q++)
                    want += 0.5 * (double)ai[q] * ai[q] / (double)per;
                break;
            case 4:
                for (int c = 0; c < 8; c++)
                    for (size_t q = 0; q < P; q++)
                        want += dir[c] * (double)ai[c * P + q] / (double)P;
                break;
            case 5: { /* softmax, in double */
                double mx = ai[0], z = 0.0;
                for (size_t q = 1; q < per; q++)
                    mx = fmax(mx, ai[q]);
                for (size_t q = 0; q < per; q++)
                    z += exp(ai[q] - mx);
                want = exp(ai[7] - mx) / z;
                break;
            }
            }
            printf("%s%s item %d: start %.4f, value %.4f, computed here %.4f\n", cnv_objective_name(terms[k].kind),
                   terms[k].probability ? " (probability)" : "", i,
                   (double)v0[i], (double)v[i], want);
            assert_true(fabs(v[i] - want) < 1e-4 * (1.0 + fabs(want)));
            assert_true(v[i] > v0[i] + 0.01f);
        }
    }
    cnv_session_free(s);
    cnv_model_free(m);
}

/* Weights: a negative weight lowers the channel; item-only terms leave
 * the other items to the rest; an interpolation's middle item has half
 * of each end's term in its value. */
static void weights(void **state)
{
    (void)state;
    cnv_model *m = sn_build(1, 32);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_render_params p = small_params(30);
    float img[3 * ITEM], v[3], v0[3];
    cnv_objective t = cnv_objective_default(CNV_OBJ_CHANNEL);
    t.layer = "cb"; /* a conv output: the mean can go negative */
    t.index = 1;
    t.weight = t.weight_last = -1.0f;
    p.lucid.iters = 0;
    ok_s(s, cnv_render(s, 1, &t, 1, &p, img, ITEM, v0));
    p.lucid.iters = 30;
    ok_s(s, cnv_render(s, 1, &t, 1, &p, img, ITEM, v));
    printf("minimized channel: value %.4f -> %.4f (the value is -mean)\n", (double)v0[0], (double)v[0]);
    assert_true(v[0] > v0[0] + 0.01f); /* -mean went up: the mean went down */

    /* interpolation across 3 items between channel 1 and channel 2 of cb */
    cnv_objective two[2] = {cnv_objective_default(CNV_OBJ_CHANNEL), cnv_objective_default(CNV_OBJ_CHANNEL)};
    two[0].layer = two[1].layer = "cb";
    two[0].index = 1;
    two[0].weight = 1.0f;
    two[0].weight_last = 0.0f;
    two[1].index = 2;
    two[1].weight = 0.0f;
    two[1].weight_last = 1.0f;
    ok_s(s, cnv_render(s, 3, two, 2, &p, img, 3 * ITEM, v));
    cnv_shape sh;
    const float *a = forward_tensor(s, img, 3, "cb", &sh);
    size_t P = (size_t)(sh.dims[2] * sh.dims[3]), per = 5 * P;
    for (int i = 0; i < 3; i++) {
        double c1 = 0.0, c2 = 0.0;
        for (size_t q = 0; q < P; q++) {
            c1 += a[i * per + 1 * P + q] / (double)P;
            c2 += a[i * per + 2 * P + q] / (double)P;
        }
        double f = i / 2.0, want = (1.0 - f) * c1 + f * c2;
        printf("interpolation item %d: value %.4f, (1-f) c1 + f c2 = %.4f\n", i, (double)v[i], want);
        assert_true(fabs(v[i] - want) < 1e-4 * (1.0 + fabs(want)));
    }
    /* a term for item 1 only: item 0 has no objective (value 0, and its
     * image is where it started) */
    cnv_objective only = cnv_objective_default(CNV_OBJ_CHANNEL);
    only.layer = "cb";
    only.index = 1;
    only.item = 1;
    float startimg[2 * ITEM];
    p.lucid.iters = 0;
    ok_s(s, cnv_render(s, 2, &only, 1, &p, startimg, 2 * ITEM, NULL));
    p.lucid.iters = 30;
    ok_s(s, cnv_render(s, 2, &only, 1, &p, img, 2 * ITEM, v));
    assert_true(v[0] == 0.0f);
    assert_memory_equal(img, startimg, ITEM * sizeof *img);
    assert_true(memcmp(img + ITEM, startimg + ITEM, ITEM * sizeof *img) != 0);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* One channel term for item 0 makes cnv_neuron's picture of that channel
 * when the channel is 0 (both draw from the stream (seed, 0)). */
static void same_as_neuron(void **state)
{
    (void)state;
    cnv_model *m = sn_build(1, 33);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_render_params p = small_params(20);
    cnv_objective t = cnv_objective_default(CNV_OBJ_CHANNEL);
    t.layer = "ra";
    t.index = 0;
    float a[ITEM], b[ITEM];
    ok_s(s, cnv_render(s, 1, &t, 1, &p, a, ITEM, NULL));
    cnv_neuron_params q = cnv_neuron_params_default();
    q.layer = "ra";
    q.height = H;
    q.width = W;
    q.lucid = p.lucid;
    q.seed = p.seed;
    int ch = 0;
    ok_s(s, tu_neuron(s, m, NULL, NULL, 1, &ch, &q, b, NULL, NULL));
    assert_memory_equal(a, b, sizeof a);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void errors(void **state)
{
    (void)state;
    cnv_model *m = sn_build(1, 34);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_render_params p = small_params(1);
    float img[2 * ITEM], dir[3] = {1, 2, 3};
    cnv_objective t = cnv_objective_default(CNV_OBJ_CHANNEL);
#define EXPECT(st, frag)                                                                   \
    do {                                                                                   \
        assert_int_equal(cnv_render(s, 2, &t, 1, &p, img, 2 * ITEM, NULL), (st));          \
        printf("  %s\n", cnv_session_errmsg(s));                                           \
        assert_non_null(strstr(cnv_session_errmsg(s), (frag)));                            \
    } while (0)
    EXPECT(CNV_ERR_INVALID_ARG, "needs a layer");
    t.layer = "nonesuch";
    EXPECT(CNV_ERR_NOT_FOUND, "nonesuch");
    t.layer = "ra";
    t.index = 3;
    EXPECT(CNV_ERR_INVALID_ARG, "channel 3 is outside 0..2");
    t.index = 0;
    t.kind = (cnv_objective_kind)9;
    EXPECT(CNV_ERR_INVALID_ARG, "kind 9");
    t.kind = CNV_OBJ_NEURON;
    t.y = 7;
    t.x = 0;
    EXPECT(CNV_ERR_INVALID_ARG, "outside");
    t.kind = CNV_OBJ_DIRECTION;
    t.direction = dir;
    t.n_direction = 3;
    t.layer = "cat";
    EXPECT(CNV_ERR_INVALID_ARG, "needs 8 values");
    t.kind = CNV_OBJ_DIVERSITY;
    t.item = 0;
    EXPECT(CNV_ERR_INVALID_ARG, "every item");
    t.item = 5;
    t.kind = CNV_OBJ_CHANNEL;
    EXPECT(CNV_ERR_INVALID_ARG, "item 5");
    t.item = -1;
    t.probability = 1;
    EXPECT(CNV_ERR_INVALID_ARG, "probability");
    t.probability = 0;
    t.weight = NAN;
    EXPECT(CNV_ERR_INVALID_ARG, "finite");
    t.weight = 1.0f;
    t.layer = "c1"; /* a Conv's output: no pre-activation */
    t.pre_activation = 1;
    EXPECT(CNV_ERR_INVALID_ARG, "no activation's output");
    t.layer = "r1"; /* a Relu's: its input c1 */
    ok_s(s, cnv_render(s, 2, &t, 1, &p, img, 2 * ITEM, NULL));
    t.layer = "side"; /* depends on no input */
    t.pre_activation = 0;
    EXPECT(CNV_ERR_INVALID_ARG, "side");
    assert_int_equal(cnv_render(s, 2, &t, 0, &p, img, 2 * ITEM, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_render(s, 2, &t, 1, &p, img, ITEM, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_render(NULL, 2, &t, 1, &p, img, 2 * ITEM, NULL), CNV_ERR_INVALID_ARG);
#undef EXPECT
    cnv_session_free(s);
    cnv_model_free(m);
}

/* Lucid's diversity example on SqueezeNet: four pictures of one channel,
 * with and without the diversity term; with it they lie further apart
 * (mean pairwise distance of their Gram matrices at the diversity layer,
 * each scaled to unit length). */
static void squeezenet_diversity(void **state)
{
    (void)state;
    tu_skip_under_valgrind("SqueezeNet diversity batches");
    if (access(SQUEEZENET, R_OK)) {
        printf("skipping: " SQUEEZENET " is absent (SqueezeNet lives beside the repository)\n");
        skip();
    }
    cnv_model *m = NULL;
    if (cnv_model_load_onnx(SQUEEZENET, &m) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    enum { N = 4, S = 128, IT = 3 * S * S };
    const char *layer = "features.9/expand3x3_activation", *name;
    char err[256];
    assert_int_equal(tu_find_layer(m, layer, &name, err, sizeof err), CNV_OK);
    cnv_objective t[2] = {cnv_objective_default(CNV_OBJ_CHANNEL), cnv_objective_default(CNV_OBJ_DIVERSITY)};
    t[0].layer = t[1].layer = layer;
    t[0].index = 80;
    t[1].weight = t[1].weight_last = 200.0f;
    cnv_render_params p = cnv_render_params_default();
    p.height = p.width = S;
    p.lucid.iters = 256;
    float *img = malloc((size_t)N * IT * sizeof *img), *G = malloc((size_t)(N + 1) * 192 * 192 * sizeof *G);
    assert_true(img && G);
    double spread[2];
    for (int with = 0; with < 2; with++) {
        ok_s(s, cnv_render(s, N, t, 1 + with, &p, img, (size_t)N * IT, NULL));
        ok_s(s, cnv_session_set_plan_target(s, tu_t(s, name)));
        ok_s(s, cnv_session_plan(s, N, S, S));
        memcpy(cnv_session_input(s), img, (size_t)N * IT * sizeof *img);
        ok_s(s, cnv_session_forward_to(s, tu_t(s, name)));
        float *a;
        cnv_shape sh;
        ok_s(s, cnv_session_tensor(s, tu_t(s, name), &a, &sh));
        const float w[N] = {1, 1, 1, 1};
        float val[N], *dA = calloc((size_t)cnv_shape_count(&sh), sizeof *dA);
        assert_non_null(dA);
        cnv_diversity(a, N, (int)sh.dims[1], (size_t)(sh.dims[2] * sh.dims[3]), w, val, dA, G);
        free(dA);
        /* |u_i - u_j|^2 = 2 - 2 u_i . u_j: the mean pairwise distance
         * follows from the mean similarity, -val */
        double sim = 0.0;
        for (int i = 0; i < N; i++)
            sim += -val[i] / N;
        spread[with] = sqrt(2.0 - 2.0 * sim);
        printf("%s diversity: mean Gram cosine %.4f, distance %.4f\n", with ? "with" : "without", sim, spread[with]);
        ok_s(s, cnv_session_set_plan_target(s, -1));
    }
    assert_true(spread[1] > spread[0]);
    free(img);
    free(G);
    cnv_session_free(s);
    cnv_model_free(m);
}

static int sh(const char *cmd, char *out, size_t len)
{
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t got = fread(out, 1, len - 1, f);
    out[got] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `cnnviz render` on the default model: specs of every kind, weights,
 * items, sheets and JSON; bad specs are usage errors (exit 2). */
static void cli(void **state)
{
    (void)state;
    if (access("bin/cnnviz", X_OK) || access("weights/fashion_mnist.onnx", R_OK)) {
        printf("skipping: bin/cnnviz or weights/fashion_mnist.onnx is missing (make test builds them)\n");
        skip();
    }
    char dir[] = "/tmp/cnv_render_XXXXXX", cmd[1024], out[4096], path[256], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd,
             "bin/cnnviz render --objective '1..0*channel:relu3:9' --objective '0..1*channel/pre:relu3:3' "
             "--objective 'diversity:relu2' --objective '0.5*neuron:relu4:2@1,1#2' --objective 'class:Sneaker' "
             "--objective '-0.1*l2:relu1' --objective 'direction:relu3:1=0.5,7=-1' --objective '0.2*class/prob:Bag' "
             "-n 3 --iters 40 "
             "-o %s/r.png --grid %s/g.png --tile 56 --json --quiet",
             dir, dir);
    assert_int_equal(sh(cmd, out, sizeof out), 0);
    printf("%s", out);
    assert_non_null(strstr(out, "\"values\": ["));
    const char *files[] = {"r_0.png", "r_1.png", "r_2.png", "g.png"};
    for (int i = 0; i < 4; i++) {
        cnv_image im = {0};
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (cnv_image_load(path, &im, err, sizeof err) != CNV_OK)
            fail_msg("%s", err);
        if (i < 3)
            assert_true(im.width == 28 && im.height == 28 && im.channels == 1);
        cnv_image_free(&im);
        remove(path);
    }
    const char *bad[] = {"channel:relu3", "channel:relu3:x", "nosuch:relu3:1", "channel/post:relu3:1",
                         "neuron:relu3:1@1", "direction:relu3:99=1", "2..*channel:relu3:1", "class"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        snprintf(cmd, sizeof cmd, "bin/cnnviz render --objective '%s' -o %s/e.png --iters 1 2>&1", bad[k], dir);
        int rc = sh(cmd, out, sizeof out);
        printf("%-24s -> %d %s", bad[k], rc, out);
        assert_true(rc == 2 || rc == 1);
        assert_non_null(strstr(out, "render"));
    }
    snprintf(cmd, sizeof cmd, "bin/cnnviz render -o %s/e.png 2>&1", dir);
    assert_int_equal(sh(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "bin/cnnviz render --objective channel:relu3:1 --recipe cs231n -o %s/e.png 2>&1", dir);
    assert_int_equal(sh(cmd, out, sizeof out), 2);
    snprintf(path, sizeof path, "%s/e.png", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names),
        cmocka_unit_test(diversity_gradient),
        cmocka_unit_test(values_and_ascent),
        cmocka_unit_test(weights),
        cmocka_unit_test(same_as_neuron),
        cmocka_unit_test(errors),
        cmocka_unit_test(cli),
        cmocka_unit_test(squeezenet_diversity),
    };
    return cmocka_run_group_tests_name("render", tests, NULL, NULL);
}
