/* Deep dream: frame count and size, determinism for a seed, the octave
 * and zoom arithmetic checked exactly with zero steps, random channels,
 * the objective rising, errors, and `cnnviz dream` writing its frames and
 * GIF (a tiny net, and SqueezeNet when present). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define CNNVIZ "bin/cnnviz"
#define SHARED "../shared/imagenet/"
#define SQUEEZENET SHARED "squeezenet1_1.onnx"

static void ok_model(cnv_model *m, cnv_status st)
{
    if (st != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
}

static void ok_s(cnv_session *s, cnv_status st)
{
    if (st != CNV_OK)
        fail_msg("%s (%s)", cnv_session_errmsg(s), cnv_status_string(st));
}

static void add_const(cnv_model *m, const char *name, cnv_shape sh, const float *v)
{
    ok_model(m, cnv_model_add_const(m, name, CNV_FLOAT32, &sh, v));
}

static void node(cnv_model *m, const char *op, const char *in, const char *w, const char *b,
                 const char *out, int n_attrs, const cnv_attr *at)
{
    const char *ins[3] = {in, w, b}, *outs[1] = {out};
    ok_model(m, cnv_model_add_node(m, op, out, w ? (b ? 3 : 2) : 1, ins, 1, outs, n_attrs, at));
}

/* x (N x 3 x H x W, any size) -> conv3x3 -> relu1 -> maxpool 2 ->
 * conv3x3 -> relu2 (8 channels) -> gap -> flatten -> gemm "logits". */
static cnv_model *net(uint64_t seed)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, -1, 3, -1, -1);
    ok_model(m, cnv_model_add_input(m, "x", &xs));
    tu_rng r;
    tu_rng_init(&r, seed);
    static float w1[6 * 3 * 9], w2[8 * 6 * 9], fw[5 * 8], b[8];
    tu_fill(&r, w1, 6 * 27, -0.4f, 0.4f);
    tu_fill(&r, w2, 8 * 54, -0.3f, 0.3f);
    tu_fill(&r, fw, 40, -1.0f, 1.0f);
    tu_fill(&r, b, 8, -0.05f, 0.05f);
    add_const(m, "w1", tu_shape(4, 6, 3, 3, 3), w1);
    add_const(m, "w2", tu_shape(4, 8, 6, 3, 3), w2);
    add_const(m, "fw", tu_shape(2, 5, 8), fw);
    add_const(m, "b1", tu_shape(1, 6), b);
    add_const(m, "b2", tu_shape(1, 8), b);
    int64_t p1[4] = {1, 1, 1, 1}, k2[2] = {2, 2};
    cnv_attr pad = tu_attr_ints("pads", 4, p1);
    cnv_attr pool[2] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_ints("strides", 2, k2)};
    cnv_attr tb = tu_attr_int("transB", 1);
    node(m, "Conv", "x", "w1", "b1", "conv1", 1, &pad);
    node(m, "Relu", "conv1", NULL, NULL, "relu1", 0, NULL);
    node(m, "MaxPool", "relu1", NULL, NULL, "pool1", 2, pool);
    node(m, "Conv", "pool1", "w2", "b2", "conv2", 1, &pad);
    node(m, "Relu", "conv2", NULL, NULL, "relu2", 0, NULL);
    node(m, "GlobalAveragePool", "relu2", NULL, NULL, "gap", 0, NULL);
    node(m, "Flatten", "gap", NULL, NULL, "flat", 0, NULL);
    node(m, "Gemm", "flat", "fw", NULL, "logits", 1, &tb);
    ok_model(m, cnv_model_add_output(m, "logits"));
    return m;
}

static const float MEAN[3] = {0.5f, 0.5f, 0.5f}, STD[3] = {0.25f, 0.25f, 0.25f};
enum { H = 20, W = 24, ITEM = 3 * H * W, MAXF = 16 };

/* Collects the frames a run produces. */
typedef struct frames {
    int n, cancel_at;
    float img[MAXF][ITEM];
    int steps;
    float first_obj, last_obj;
} frames;

static int on_frame(void *user, int iter, const float *images, int n, int c, int h, int w)
{
    frames *f = user;
    assert_int_equal(iter, f->n);
    assert_int_equal(n, 1);
    assert_int_equal(c, 3);
    assert_int_equal(h, H);
    assert_int_equal(w, W);
    assert_true(f->n < MAXF);
    memcpy(f->img[f->n++], images, sizeof f->img[0]);
    return f->cancel_at > 0 && f->n >= f->cancel_at;
}

static int on_progress(void *user, int iter, int total, float objective, float prob)
{
    (void)total;
    (void)prob;
    frames *f = user;
    assert_int_equal(iter, f->steps + 1);
    if (f->steps == 0)
        f->first_obj = objective;
    f->last_obj = objective;
    f->steps++;
    return 0;
}

static cnv_dream_params small_params(void)
{
    cnv_dream_params p = cnv_dream_params_default();
    p.layer = "relu2";
    p.height = H;
    p.width = W;
    p.start = 8;
    p.octaves = 3;
    p.octave_scale = 1.5f;
    p.steps = 6;
    p.frames = 5;
    p.frame_steps = 3;
    p.zoom = 1.1f;
    p.jitter = 2;
    p.seed = 3;
    p.frame = on_frame;
    p.progress = on_progress;
    return p;
}

static void frames_and_determinism(void **state)
{
    (void)state;
    cnv_model *m = net(1);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    static frames a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    cnv_dream_params p = small_params();
    p.user = &a;
    float out[ITEM];
    int ch[5];
    ok_s(s, tu_dream(s, m, MEAN, STD, &p, out, ch));
    assert_int_equal(a.n, 5);
    assert_int_equal(a.steps, 3 * 6 + 4 * 3);
    assert_memory_equal(out, a.img[4], sizeof out);
    for (int f = 0; f < 5; f++)
        assert_int_equal(ch[f], -1);
    printf("dream objective (mean of relu2): %.4f at the first step, %.4f at the last\n", a.first_obj,
           a.last_obj);
    assert_true(a.last_obj > a.first_obj * 2.0f);
    /* the session ends planned at the frame size */
    cnv_shape sh;
    ok_s(s, cnv_session_tensor(s, tu_t(s, "x"), NULL, &sh));
    assert_true(sh.dims[2] == H && sh.dims[3] == W);
    /* valid pixels */
    for (int i = 0; i < ITEM; i++)
        assert_true(out[i] >= -2.0f - 1e-6f && out[i] <= 2.0f + 1e-6f);
    /* the same seed gives the same frames, bit for bit */
    p.user = &b;
    ok_s(s, tu_dream(s, m, MEAN, STD, &p, NULL, NULL));
    assert_int_equal(b.n, 5);
    assert_memory_equal(a.img, b.img, sizeof a.img[0] * 5);
    /* another seed other frames */
    memset(&b, 0, sizeof b);
    p.seed = 4;
    ok_s(s, tu_dream(s, m, MEAN, STD, &p, NULL, NULL));
    assert_true(memcmp(a.img[0], b.img[0], sizeof a.img[0]) != 0);
    /* a frame callback that stops the run */
    memset(&b, 0, sizeof b);
    b.cancel_at = 2;
    assert_int_equal(tu_dream(s, m, MEAN, STD, &p, NULL, NULL), CNV_ERR_CANCELLED);
    assert_int_equal(b.n, 2);
    assert_non_null(strstr(cnv_session_errmsg(s), "cancelled"));
    cnv_session_free(s);
    cnv_model_free(m);
}

/* With zero steps nothing is dreamed, so the arithmetic shows: the octaves
 * hand the photo through unchanged (base + upscaled zero detail), and each
 * frame is the center of the last one enlarged by the zoom. */
static void zero_steps_are_exact(void **state)
{
    (void)state;
    cnv_model *m = net(2);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    static frames a;
    memset(&a, 0, sizeof a);
    static float photo[ITEM];
    tu_rng r;
    tu_rng_init(&r, 5);
    tu_fill(&r, photo, ITEM, -1.5f, 1.5f);
    cnv_dream_params p = small_params();
    p.init = photo;
    p.steps = 0;
    p.frame_steps = 0;
    p.frames = 3;
    p.zoom = 1.5f;
    p.user = &a;
    ok_s(s, tu_dream(s, m, MEAN, STD, &p, NULL, NULL));
    assert_int_equal(a.n, 3);
    assert_memory_equal(a.img[0], photo, sizeof photo);
    /* zoom 1.5: 20 x 24 -> 30 x 36, crop offset (5, 6) */
    static float big[3 * 30 * 36];
    char err[200];
    for (int f = 1; f < 3; f++) {
        assert_int_equal(cnv_resize_chw(a.img[f - 1], 3, H, W, big, 30, 36, err, sizeof err), CNV_OK);
        for (int k = 0; k < 3; k++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    assert_true(a.img[f][(k * H + y) * W + x] == big[(k * 30 + y + 5) * 36 + x + 6]);
    }
    cnv_session_free(s);
    cnv_model_free(m);
}

/* The objective: half the mean square of the layer (default) or its mean,
 * as progress reports it on the first step, from a photo, against the
 * layer computed here; and the one step follows d(objective)/dx, which
 * for half the mean square is the backward of a / count. */
static void l2_objective(void **state)
{
    (void)state;
    cnv_model *m = net(6);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    static float photo[ITEM], grad[ITEM];
    tu_rng r;
    tu_rng_init(&r, 8);
    tu_fill(&r, photo, ITEM, -1.5f, 1.5f);
    /* the layer and the objectives' gradient on the photo */
    ok_s(s, cnv_session_plan(s, 1, H, W));
    memcpy(cnv_session_input(s), photo, sizeof photo);
    ok_s(s, cnv_session_forward(s));
    float *a;
    cnv_shape sh;
    int t = tu_t(s, "relu2");
    ok_s(s, cnv_session_tensor(s, t, &a, &sh));
    size_t n = (size_t)cnv_shape_count(&sh);
    double sq = 0.0, sum = 0.0;
    float *seed = malloc(n * sizeof *seed);
    assert_non_null(seed);
    for (size_t j = 0; j < n; j++) {
        sq += 0.5 * (double)a[j] * a[j];
        sum += a[j];
        seed[j] = a[j] / (float)n;
    }
    ok_s(s, cnv_session_backward(s, t, seed, n));
    memcpy(grad, cnv_session_input_grad(s), sizeof grad);
    free(seed);
    for (int l2 = 0; l2 < 2; l2++) {
        static frames f;
        memset(&f, 0, sizeof f);
        cnv_dream_params p = small_params();
        p.init = photo;
        p.l2 = l2;
        p.octaves = 1;
        p.start = H;
        p.steps = 1;
        p.frames = 1;
        p.jitter = 0;
        p.user = &f;
        ok_s(s, tu_dream(s, m, MEAN, STD, &p, NULL, NULL));
        double want = l2 ? sq / (double)n : sum / (double)n;
        printf("%s objective: reported %.6f, computed %.6f\n", l2 ? "L2" : "mean", f.first_obj, want);
        assert_true(fabs(f.first_obj - want) < 1e-5 * (1.0 + fabs(want)));
        if (l2) { /* the step is parallel to the gradient */
            double dot = 0.0, n1 = 0.0, n2 = 0.0;
            for (int j = 0; j < ITEM; j++) {
                double d = (double)f.img[0][j] - photo[j];
                dot += d * grad[j];
                n1 += d * d;
                n2 += (double)grad[j] * grad[j];
            }
            printf("L2 step vs gradient: cosine %.6f\n", dot / sqrt(n1 * n2));
            assert_true(dot / sqrt(n1 * n2) > 0.999);
        }
    }
    cnv_session_free(s);
    cnv_model_free(m);
}

static void random_channels(void **state)
{
    (void)state;
    cnv_model *m = net(3);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    static frames a;
    memset(&a, 0, sizeof a);
    cnv_dream_params p = small_params();
    p.frames = 12;
    p.channel_every = 3;
    p.steps = 2;
    p.frame_steps = 1;
    p.user = &a;
    int ch[12], ch2[12], changes = 0;
    ok_s(s, tu_dream(s, m, MEAN, STD, &p, NULL, ch));
    for (int f = 0; f < 12; f++) {
        assert_true(ch[f] >= 0 && ch[f] < 8);
        if (f % 3)
            assert_int_equal(ch[f], ch[f - 1]);
        else if (f)
            changes += ch[f] != ch[f - 1];
    }
    printf("random channels: %d %d %d %d\n", ch[0], ch[3], ch[6], ch[9]);
    assert_true(changes >= 1);
    memset(&a, 0, sizeof a);
    ok_s(s, tu_dream(s, m, MEAN, STD, &p, NULL, ch2));
    assert_memory_equal(ch, ch2, sizeof ch);
    /* one fixed channel */
    memset(&a, 0, sizeof a);
    p.channel_every = 0;
    p.channel = 5;
    ok_s(s, tu_dream(s, m, MEAN, STD, &p, NULL, ch));
    for (int f = 0; f < 12; f++)
        assert_int_equal(ch[f], 5);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void errors(void **state)
{
    (void)state;
    cnv_model *m = net(4);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_dream_params p = small_params();
    p.frame = NULL;
    p.progress = NULL;
    p.layer = "nonesuch";
    assert_int_equal(tu_dream(s, m, MEAN, STD, &p, NULL, NULL), CNV_ERR_NOT_FOUND);
    printf("%s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "nonesuch"));
    p.layer = NULL;
    assert_int_equal(tu_dream(s, m, MEAN, STD, &p, NULL, NULL), CNV_ERR_INVALID_ARG);
    p.layer = "relu2";
    p.channel = 8;
    assert_int_equal(tu_dream(s, m, MEAN, STD, &p, NULL, NULL), CNV_ERR_INVALID_ARG);
    printf("%s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "out of range"));
    p.channel = -1;
    cnv_dream_params q = p;
    q.octaves = 0;
    assert_int_equal(tu_dream(s, m, MEAN, STD, &q, NULL, NULL), CNV_ERR_INVALID_ARG);
    q = p;
    q.zoom = 0.5f;
    assert_int_equal(tu_dream(s, m, MEAN, STD, &q, NULL, NULL), CNV_ERR_INVALID_ARG);
    q = p;
    q.octave_scale = NAN;
    assert_int_equal(tu_dream(s, m, MEAN, STD, &q, NULL, NULL), CNV_ERR_INVALID_ARG);
    q = p;
    q.frames = 0;
    assert_int_equal(tu_dream(s, m, MEAN, STD, &q, NULL, NULL), CNV_ERR_INVALID_ARG);
    q = p;
    q.height = q.width = 0; /* the model leaves its size open */
    assert_int_equal(tu_dream(s, m, MEAN, STD, &q, NULL, NULL), CNV_ERR_INVALID_ARG);
    const float zero_std[3] = {0.25f, 0, 0.25f};
    assert_int_equal(tu_dream(s, m, MEAN, zero_std, &p, NULL, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_dream(s, NULL, MEAN, STD, &p, NULL, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_dream(NULL, m, MEAN, STD, &p, NULL, NULL), CNV_ERR_INVALID_ARG);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ------------------------------------------------------------------ CLI */

static int sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Names in dir, sorted, joined by spaces. */
static void list_dir(const char *dir, char *buf, size_t len)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char names[64][256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.')
            snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        strncat(buf, names[i], len - strlen(buf) - 1);
        if (i + 1 < n)
            strncat(buf, " ", len - strlen(buf) - 1);
    }
}

static void check_frames(const char *dir, int n, int h, int w)
{
    char want[1024] = "", got[1024], path[700];
    for (int i = 0; i < n; i++) {
        char one[32];
        snprintf(one, sizeof one, "%sframe_%04d.png", i ? " " : "", i);
        strcat(want, one);
        snprintf(path, sizeof path, "%s/frame_%04d.png", dir, i);
        cnv_image img = {0};
        char err[256];
        if (cnv_image_load(path, &img, err, sizeof err) != CNV_OK)
            fail_msg("%s", err);
        assert_int_equal(img.width, w);
        assert_int_equal(img.height, h);
        assert_int_equal(img.channels, 3);
        cnv_image_free(&img);
    }
    list_dir(dir, got, sizeof got);
    assert_string_equal(got, want);
}

static int same_file(const char *a, const char *b)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    return sh(cmd) == 0;
}

static void cli_dream(void **state)
{
    (void)state;
    if (access(CNNVIZ, X_OK)) {
        printf("skipping: " CNNVIZ " is missing (run through 'make test' from the repository root)\n");
        skip();
    }
    char dir[] = "/tmp/cnv_dream_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char model[600], cmd[1600], a[600], b[600];
    snprintf(model, sizeof model, "%s/net.onnx", dir);
    cnv_model *m = net(5);
    ok_model(m, cnv_model_set_meta(m, "cnnviz.image_size", "20x24"));
    ok_model(m, cnv_model_set_meta(m, "cnnviz.mean", "0.5,0.5,0.5"));
    ok_model(m, cnv_model_set_meta(m, "cnnviz.std", "0.25,0.25,0.25"));
    ok_model(m, cnv_model_save_onnx(m, model));
    cnv_model_free(m);
    const char *opts = "--layer relu2 --start 8 --octaves 2 --steps 4 --frames 4 --frame-steps 2 --jitter 2";
    for (int run = 0; run < 2; run++) {
        snprintf(cmd, sizeof cmd, CNNVIZ " dream -m %s %s -o %s/f%d --gif %s/d%d.gif --quiet", model, opts, dir,
                 run, dir, run);
        assert_int_equal(sh(cmd), 0);
        snprintf(a, sizeof a, "%s/f%d", dir, run);
        check_frames(a, 4, 20, 24);
    }
    /* deterministic: the same frames and GIF bytes */
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/f0/frame_%04d.png", dir, i);
        snprintf(b, sizeof b, "%s/f1/frame_%04d.png", dir, i);
        assert_true(same_file(a, b));
    }
    snprintf(a, sizeof a, "%s/d0.gif", dir);
    snprintf(b, sizeof b, "%s/d1.gif", dir);
    assert_true(same_file(a, b));
    cnv_image gif = {0};
    char err[256];
    if (cnv_image_load(a, &gif, err, sizeof err) != CNV_OK) /* first frame */
        fail_msg("%s", err);
    assert_int_equal(gif.width, 24);
    assert_int_equal(gif.height, 20);
    cnv_image_free(&gif);
    /* another seed, random channels, JSON */
    snprintf(cmd, sizeof cmd,
             CNNVIZ " dream -m %s %s --seed 9 --random-channels --every 2 -o %s/f2 --json > %s/j.json", model,
             opts, dir, dir);
    assert_int_equal(sh(cmd), 0);
    snprintf(a, sizeof a, "%s/f2", dir);
    check_frames(a, 4, 20, 24);
    snprintf(a, sizeof a, "%s/f0/frame_0000.png", dir);
    snprintf(b, sizeof b, "%s/f2/frame_0000.png", dir);
    assert_false(same_file(a, b));
    snprintf(a, sizeof a, "%s/j.json", dir);
    FILE *f = fopen(a, "r");
    assert_non_null(f);
    char json[2048] = {0};
    assert_true(fread(json, 1, sizeof json - 1, f) > 0);
    fclose(f);
    printf("%s", json);
    assert_non_null(strstr(json, "\"frames\": 4"));
    assert_non_null(strstr(json, "\"channels\": ["));
    /* --upscale 2: frames of 48 x 40, in 2 x 2 blocks of the frames above */
    snprintf(cmd, sizeof cmd, CNNVIZ " dream -m %s %s --upscale 2 -o %s/f3 --quiet", model, opts, dir);
    assert_int_equal(sh(cmd), 0);
    snprintf(a, sizeof a, "%s/f3", dir);
    check_frames(a, 4, 40, 48);
    cnv_image small = {0}, big = {0};
    snprintf(a, sizeof a, "%s/f0/frame_0003.png", dir);
    snprintf(b, sizeof b, "%s/f3/frame_0003.png", dir);
    if (cnv_image_load(a, &small, err, sizeof err) != CNV_OK || cnv_image_load(b, &big, err, sizeof err) != CNV_OK)
        fail_msg("%s", err);
    for (int y = 0; y < 40; y++)
        for (int x = 0; x < 48; x++)
            for (int k = 0; k < 3; k++)
                assert_int_equal(big.data[(y * 48 + x) * 3 + k], small.data[((y / 2) * 24 + x / 2) * 3 + k]);
    cnv_image_free(&small);
    cnv_image_free(&big);
    /* errors */
    snprintf(cmd, sizeof cmd, CNNVIZ " dream -m %s --layer nonesuch -o %s/e 2>/dev/null", model, dir);
    assert_int_equal(sh(cmd), 1);
    snprintf(cmd, sizeof cmd, CNNVIZ " dream -m %s --layer relu2 --channel 99 -o %s/e2 2>/dev/null", model, dir);
    assert_int_equal(sh(cmd), 1);
    snprintf(cmd, sizeof cmd, CNNVIZ " dream -m %s --channel 1 --random-channels -o %s/e3 2>/dev/null", model,
             dir);
    assert_int_equal(sh(cmd), 2);
    snprintf(cmd, sizeof cmd, CNNVIZ " dream -m %s --layer relu2 -o %s/net.onnx 2>/dev/null", model, dir);
    assert_int_equal(sh(cmd), 1); /* -o is a file */
    snprintf(cmd, sizeof cmd, CNNVIZ " dream -m %s --zoom 0.5 -o %s/e4 2>/dev/null", model, dir);
    assert_int_equal(sh(cmd), 2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    sh(cmd);
}

/* SqueezeNet at 64 x 64: frames of the right size from the default layer. */
static void squeezenet_dream(void **state)
{
    (void)state;
    if (access(SQUEEZENET, R_OK)) {
        printf("skipping: " SQUEEZENET " is absent (SqueezeNet lives beside the repository)\n");
        skip();
    }
    if (access(CNNVIZ, X_OK)) {
        printf("skipping: " CNNVIZ " is missing\n");
        skip();
    }
    char dir[] = "/tmp/cnv_dream_sq_XXXXXX", cmd[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd,
             CNNVIZ " dream -m " SQUEEZENET " --size 64x64 --start 32 --octaves 2 --steps 3 --frames 3 "
                    "--frame-steps 1 -o %s/f --quiet",
             dir);
    assert_int_equal(sh(cmd), 0);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/f", dir);
    check_frames(sub, 3, 64, 64);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    sh(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_and_determinism),
        cmocka_unit_test(zero_steps_are_exact),
        cmocka_unit_test(l2_objective),
        cmocka_unit_test(random_channels),
        cmocka_unit_test(errors),
        cmocka_unit_test(cli_dream),
        cmocka_unit_test(squeezenet_dream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
