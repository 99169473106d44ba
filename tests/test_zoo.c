/* The CNN families users bring (tests/zoo/, written by
 * tools/make_zoo_refs.py): torchvision's MobileNetV2/V3, EfficientNet,
 * RegNetY, MNASNet, ShuffleNetV2 and ConvNeXt at reduced width, a small
 * GoogLeNet, a CaffeNet-style model with LRN and a fixed size, a Keras-
 * style NHWC model and float16 models, as torch.onnx exports them at
 * several opsets. Each must load, and give PyTorch's logits and input
 * gradient (of the reference's top class) for the reference input.
 *
 * The references were computed in float64. The same computation in float32
 * (PyTorch's own, in the manifest) is at most 6.3e-7 away from them on
 * logits (max|diff| / max|ref|) and on the gradient (relative L2) for every
 * model here: that is float32's floor on these nets, and libcnnviz measured
 * at most 4.3e-7 and 5.6e-7 (1 and 2 threads). The limit, 2e-5 on both,
 * leaves room for another summation order (a BLAS build, a thread count)
 * and nothing more: a wrong epilogue, broadcast or layout costs 1e-2 or
 * more. (The issue asked for 1e-4 and 1e-3; these are tighter.) (On deeper, wider nets the floor grows, ~1e-3 for the
 * gradient of a full-size GoogLeNet with random weights, as max-pool
 * windows with near-ties flip; the models here were made small enough that
 * it stays at float32's rounding.)
 *
 * Then every command of bin/cnnviz runs once on each model with its
 * default options but a few steps, so that the fixed-size and fixed-batch
 * model, the NHWC one and the float16 ones are each seen through
 * classify, saliency (four methods), classmodel, fool, neuron, layers and
 * dream. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define ZOO "tests/zoo/"
#define MAX_MODELS 64

typedef struct zoo_model {
    char name[64], layout[8];
    int n, c, h, w; /* the input as the file takes it: N C H W, or N H W C */
    int cls;
    double floor_logits, floor_grad;
} zoo_model;

static zoo_model g_models[MAX_MODELS];
static int g_n;

static float *read_f32(const char *name, const char *ext, size_t n)
{
    char path[256];
    snprintf(path, sizeof path, ZOO "%s.%s.f32", name, ext);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *x = malloc(n * sizeof *x);
    if (x && fread(x, sizeof *x, n, f) != n) {
        free(x);
        x = NULL;
    }
    fclose(f);
    return x;
}

static int load_manifest(void **state)
{
    (void)state;
    FILE *f = fopen(ZOO "MANIFEST", "r");
    if (!f) {
        print_error("no " ZOO "MANIFEST (run from the repository root)\n");
        return -1;
    }
    char line[512];
    while (fgets(line, sizeof line, f) && g_n < MAX_MODELS) {
        zoo_model *z = &g_models[g_n];
        if (line[0] == '#')
            continue;
        if (sscanf(line, "%63s %7s %d %d %d %d %d %lf %lf", z->name, z->layout, &z->n, &z->c, &z->h, &z->w, &z->cls,
                   &z->floor_logits, &z->floor_grad) == 9)
            g_n++;
    }
    fclose(f);
    return g_n > 0 ? 0 : -1;
}

/* The file's NHWC tensor (n, h, w, c given as the manifest's dims) as
 * NCHW, or back (to_nchw 0). */
static void relayout(const float *src, float *dst, int n, int h, int w, int c, int to_nchw)
{
    for (int b = 0; b < n; b++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int k = 0; k < c; k++) {
                    size_t nhwc = (((size_t)b * h + y) * w + x) * c + k, nchw = (((size_t)b * c + k) * h + y) * w + x;
                    if (to_nchw)
                        dst[nchw] = src[nhwc];
                    else
                        dst[nhwc] = src[nchw];
                }
}

static void check_model(const zoo_model *z, int threads, double *worst_logits, double *worst_grad)
{
    char path[256];
    snprintf(path, sizeof path, ZOO "%s.onnx", z->name);
    int nhwc = !strcmp(z->layout, "NHWC");
    /* the engine's NCHW sizes */
    int N = z->n, C = nhwc ? z->w : z->c, H = nhwc ? z->c : z->h, W = nhwc ? z->h : z->w;
    size_t count = (size_t)N * C * H * W;
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    if (cnv_model_load_onnx(path, &m) != CNV_OK)
        fail_msg("%s: %s", z->name, cnv_model_errmsg(m));
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_threads(s, threads), CNV_OK);
    if (cnv_session_plan(s, N, H, W) != CNV_OK)
        fail_msg("%s: planning %dx%dx%dx%d: %s", z->name, N, C, H, W, cnv_session_errmsg(s));

    float *x = read_f32(z->name, "in", count), *ref_grad = read_f32(z->name, "grad", count);
    assert_non_null(x);
    assert_non_null(ref_grad);
    if (nhwc)
        relayout(x, cnv_session_input(s), N, H, W, C, 1);
    else
        memcpy(cnv_session_input(s), x, count * sizeof *x);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    int out = cnv_model_output(m, 0);
    float *logits;
    cnv_shape ls;
    assert_int_equal(cnv_session_tensor(s, out, &logits, &ls), CNV_OK);
    int64_t k = cnv_shape_count(&ls);
    float *ref_logits = read_f32(z->name, "logits", (size_t)k);
    assert_non_null(ref_logits);
    double max_diff = 0.0, max_ref = 0.0;
    for (int64_t i = 0; i < k; i++) {
        max_diff = fmax(max_diff, fabs((double)logits[i] - ref_logits[i]));
        max_ref = fmax(max_ref, fabs((double)ref_logits[i]));
    }
    float *seed = calloc((size_t)k, sizeof *seed);
    assert_non_null(seed);
    seed[z->cls] = 1.0f;
    assert_int_equal(cnv_session_backward(s, out, seed, (size_t)k), CNV_OK);
    const float *g = cnv_session_input_grad(s);
    float *gl = malloc(count * sizeof *gl);
    assert_non_null(gl);
    if (nhwc)
        relayout(g, gl, N, H, W, C, 0);
    else
        memcpy(gl, g, count * sizeof *gl);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < count; i++) {
        double d = (double)gl[i] - ref_grad[i];
        num += d * d;
        den += (double)ref_grad[i] * ref_grad[i];
    }
    double e_logits = max_diff / max_ref, e_grad = sqrt(num / den);
    printf("  %-24s %d thread%s  logits %.2e (floor %.1e)  gradient %.2e (floor %.1e)\n", z->name, threads,
           threads > 1 ? "s" : " ", e_logits, z->floor_logits, e_grad, z->floor_grad);
    if (!(e_logits <= 2e-5) || !(e_grad <= 2e-5))
        fail_msg("%s: logits error %.3g, gradient error %.3g (limit 2e-5)", z->name, e_logits, e_grad);
    *worst_logits = fmax(*worst_logits, e_logits);
    *worst_grad = fmax(*worst_grad, e_grad);
    free(x);
    free(ref_grad);
    free(ref_logits);
    free(seed);
    free(gl);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void test_against_pytorch(void **state)
{
    (void)state;
    double wl = 0.0, wg = 0.0;
    for (int i = 0; i < g_n; i++)
        for (int t = 1; t <= 2; t++)
            check_model(&g_models[i], t, &wl, &wg);
    printf("%d models: worst logits error %.2e, worst gradient error %.2e\n", g_n, wl, wg);
}

/* Runs cmd (stdout and stderr to log); 0 when it exited with status 0. */
static int run(const char *cmd, const char *log)
{
    char full[4096];
    snprintf(full, sizeof full, "%s >%s 2>&1", cmd, log);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int log_says(const char *log, const char *text)
{
    FILE *f = fopen(log, "r");
    char buf[4096];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

static void test_every_command(void **state)
{
    (void)state;
    char dir[] = "/tmp/cnv_zooXXXXXX", img_path[64], log[64], cmd[1200];
    assert_non_null(mkdtemp(dir));
    snprintf(img_path, sizeof img_path, "%s/photo.png", dir);
    snprintf(log, sizeof log, "%s/log.txt", dir);
    /* a 96x80 RGB picture: smooth colour ramps and a bright square */
    cnv_image img;
    char err[256];
    assert_int_equal(cnv_image_create(96, 80, 3, &img, err, sizeof err), CNV_OK);
    for (int y = 0; y < 80; y++)
        for (int x = 0; x < 96; x++) {
            unsigned char *px = img.data + ((size_t)y * 96 + x) * 3;
            int sq = x > 30 && x < 60 && y > 20 && y < 50;
            px[0] = (unsigned char)(sq ? 240 : x * 2);
            px[1] = (unsigned char)(sq ? 220 : y * 3);
            px[2] = (unsigned char)((x + y) & 255);
        }
    assert_int_equal(cnv_image_write_png(&img, img_path, err, sizeof err), CNV_OK);
    cnv_image_free(&img);
    int failures = 0, runs = 0;
    for (int i = 0; i < g_n; i++) {
        const zoo_model *z = &g_models[i];
        char model[128], layer[256] = "";
        snprintf(model, sizeof model, ZOO "%.63s.onnx", z->name);
        cnv_model *m = NULL;
        assert_int_equal(cnv_model_load_onnx(model, &m), CNV_OK);
        int layers[4];
        if (cnv_model_layers(m, 1, layers) == 1)
            snprintf(layer, sizeof layer, "%s", cnv_model_tensor_name(m, layers[0]));
        cnv_model_free(m);
        assert_true(layer[0] != '\0');
        const char *cmds[] = {
            "classify -m %s %s",
            "saliency -m %s --method grad -o %s/s.png %s",
            "saliency -m %s --method smoothgrad -o %s/s.png %s",
            "saliency -m %s --method guided -o %s/s.png %s",
            "saliency -m %s --method gradcam -o %s/s.png %s",
            "classmodel -m %s --classes 0,1,2 --iters 3 -o %s/cm.png",
            "fool -m %s --target 1 --max-iters 3 -o %s/f.png %s",
            "neuron -m %s --layer '%s' --channel 0 --iters 3 -o %s/n.png",
            "layers -m %s --iters 2 --max-layers 4 --per-layer 3 -o %s/l.png",
            "dream -m %s --steps 1 --frames 2 --frame-steps 1 -o %s/dream",
        };
        for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++) {
            char args[768];
            if (k == 0)
                snprintf(args, sizeof args, cmds[k], model, img_path);
            else if (k == 7)
                snprintf(args, sizeof args, cmds[k], model, layer, dir);
            else if (strstr(cmds[k], "%s/s.png %s") || strstr(cmds[k], "%s/f.png %s"))
                snprintf(args, sizeof args, cmds[k], model, dir, img_path);
            else
                snprintf(args, sizeof args, cmds[k], model, dir);
            /* 64x64 keeps the suite quick; the fixed-size model and one
             * other run at their defaults (131x131, and 224x224) */
            char size[32] = "";
            int nhwc = !strcmp(z->layout, "NHWC");
            if (strncmp(z->name, "caffenet", 8) != 0 && strcmp(z->name, "mobilenet_v2_op13") != 0)
                snprintf(size, sizeof size, " --size %dx%d", nhwc ? z->c : z->h, nhwc ? z->h : z->w);
            snprintf(cmd, sizeof cmd, "bin/cnnviz %s%s", args, size);
            int rc = run(cmd, log);
            runs++;
            /* a fooling image three steps from random weights may not be
             * there yet: that is a result, not a failure */
            if (rc != 0 && !(k == 6 && log_says(log, "try --max-iters"))) {
                char buf[512] = "";
                FILE *f = fopen(log, "r");
                if (f) {
                    buf[fread(buf, 1, sizeof buf - 1, f)] = '\0';
                    fclose(f);
                }
                print_error("%s: exit %d: %s\n", cmd, rc, buf);
                failures++;
            }
        }
    }
    printf("%d commands on %d models: %d failed\n", runs, g_n, failures);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(failures, 0);
}

/* Grad-CAM's default layer is a block's output that every path to the
 * score passes through: the last Inception block's concatenation (not its
 * fourth branch, which the last-activation rule picked before), ConvNeXt's
 * last residual sum (not the NHWC layer norm of its pooled head), the
 * SiLU (Mul) ending EfficientNet. */
static void test_gradcam_default_layer(void **state)
{
    (void)state;
    static const struct {
        const char *model, *layer;
    } cases[] = {
        {"inception_op13", "/b/Concat_output_0"},
        {"convnext_op17", "/features/features.5/features.5.1/Add_output_0"},
        {"efficientnet_b0_op13", "/features/features.8/features.8.2/Mul_output_0"},
        {"mobilenet_v2_op13", "/features/features.11/features.11.2/Clip_output_0"},
        {"caffenet_lrn_op9", "r2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, ZOO "%s.onnx", cases[i].model);
        cnv_model *m = NULL;
        cnv_session *s = NULL;
        assert_int_equal(cnv_model_load_onnx(path, &m), CNV_OK);
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        int h = 64, w = 64;
        if (!strcmp(cases[i].model, "caffenet_lrn_op9"))
            h = w = 131;
        size_t n = (size_t)3 * h * w;
        float *img = calloc(n, sizeof *img), *map = calloc((size_t)h * w, sizeof *map);
        assert_non_null(img);
        assert_non_null(map);
        for (size_t j = 0; j < n; j++)
            img[j] = (float)((j * 2654435761u) % 1000) / 500.0f - 1.0f;
        cnv_saliency_params p = cnv_saliency_params_default();
        p.method = CNV_SALIENCY_GRADCAM;
        cnv_saliency_info info;
        if (cnv_saliency(s, img, n, h, w, &p, map, (size_t)h * w, &info) != CNV_OK)
            fail_msg("%s: %s", cases[i].model, cnv_session_errmsg(s));
        printf("  %-22s Grad-CAM layer %s (%dx%d)\n", cases[i].model, info.layer, info.layer_height,
               info.layer_width);
        assert_string_equal(info.layer, cases[i].layer);
        free(img);
        free(map);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_pytorch),
        cmocka_unit_test(test_gradcam_default_layer),
        cmocka_unit_test(test_every_command),
    };
    return cmocka_run_group_tests(tests, load_manifest, NULL);
}
