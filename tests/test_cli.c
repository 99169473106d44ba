/* The cnnviz program end to end: classify, preprocess, eval and info on
 * SqueezeNet against PyTorch's reference logits, and its error paths.
 * Runs bin/cnnviz from the repository root (make test builds it first). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define CNNVIZ "bin/cnnviz"
#define SHARED "../shared/imagenet/"
#define SQUEEZE "-m " SHARED "squeezenet1_1.onnx"

/* Runs cmd; its exit status must be code and its output (stdout, and
 * stderr where cmd redirects it) must hold text (NULL: anything). */
static void expect_run(const char *cmd, int code, const char *text)
{
    char *out;
    int rc = tu_run(cmd, &out);
    printf("%s", out);
    assert_int_equal(rc, code);
    if (text)
        assert_non_null(strstr(out, text));
    free(out);
}

static int have_shared(void)
{
    if (access(SHARED "squeezenet1_1.onnx", R_OK) == 0)
        return 1;
    printf("skipping: " SHARED " is absent (SqueezeNet reference data lives beside the repository)\n");
    return 0;
}

static float *read_f32(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    assert_int_equal(fread(x, sizeof *x, n, f), n);
    fclose(f);
    return x;
}

static void top_k(const float *z, int n, int k, int *out)
{
    for (int i = 0; i < k; i++) {
        int best = -1;
        for (int j = 0; j < n; j++) {
            int used = 0;
            for (int q = 0; q < i; q++)
                used |= out[q] == j;
            if (!used && (best < 0 || z[j] > z[best]))
                best = j;
        }
        out[i] = best;
    }
}

/* classify's top-5 on cat.jpg (our own resize and crop) equals the top-5
 * of PyTorch's logits for its torchvision-preprocessed input. */
static void classify_cat_top5(void **state)
{
    (void)state;
    if (!have_shared())
        skip();
    char *out;
    assert_int_equal(tu_run(CNNVIZ " classify " SQUEEZE " " SHARED "images/cat.jpg --top 5 --json", &out), 0);
    float *ref = read_f32(SHARED "reference/cat_logits.f32", 1000);
    int want[5], got[5];
    top_k(ref, 1000, 5, want);
    const char *p = out;
    for (int i = 0; i < 5; i++) {
        p = strstr(p, "\"class\": ");
        assert_non_null(p);
        p += 9;
        got[i] = atoi(p);
    }
    printf("classify cat.jpg top-5: %d %d %d %d %d; reference: %d %d %d %d %d\n", got[0], got[1], got[2], got[3],
           got[4], want[0], want[1], want[2], want[3], want[4]);
    for (int i = 0; i < 5; i++)
        assert_int_equal(got[i], want[i]);
    assert_non_null(strstr(out, "kit fox"));
    free(ref);
    free(out);
}

/* eval on PyTorch's exact input reproduces its logits through the CLI, and
 * preprocess + eval agrees with classify. */
static void eval_matches_reference(void **state)
{
    (void)state;
    if (!have_shared())
        skip();
    char dir[] = "/tmp/cnnviz-cli-XXXXXX", cmd[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd,
             CNNVIZ " eval " SQUEEZE " --input " SHARED "reference/dog_input.f32 --shape 1,3,224,224 "
                    "--logits-out %s/l.f32 --grad-class 249 --grad-out %s/g.f32 --json",
             dir, dir);
    char *out;
    expect_run(cmd, 0, "\"top1\": [249]");
    char path[512];
    snprintf(path, sizeof path, "%s/l.f32", dir);
    float *l = read_f32(path, 1000), *ref = read_f32(SHARED "reference/dog_logits.f32", 1000);
    double md = 0, mr = 0;
    for (int i = 0; i < 1000; i++) {
        md = fmax(md, fabs((double)l[i] - ref[i]));
        mr = fmax(mr, fabs((double)ref[i]));
    }
    printf("eval dog logits: max|diff|/max|ref| = %.3g\n", md / mr);
    assert_true(md <= 1e-4 * mr);
    free(l);
    free(ref);

    /* preprocess writes what classify feeds the network */
    snprintf(cmd, sizeof cmd, CNNVIZ " preprocess " SQUEEZE " " SHARED "images/cat.jpg -o %s/x.f32", dir);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_string_equal(out, "1,3,224,224\n");
    free(out);
    snprintf(cmd, sizeof cmd, CNNVIZ " eval " SQUEEZE " --input %s/x.f32 --shape 1,3,224,224 --json", dir);
    expect_run(cmd, 0, "\"top1\": [278]");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
}

static void info_squeezenet(void **state)
{
    (void)state;
    if (!have_shared())
        skip();
    char *out;
    assert_int_equal(tu_run(CNNVIZ " info " SQUEEZE " --json", &out), 0);
    /* torchvision's squeezenet1_1 has 1,235,496 parameters */
    assert_non_null(strstr(out, "\"parameters\": 1235496"));
    assert_non_null(strstr(out, "\"classes\": 1000"));
    free(out);
}

static void errors_exit_nonzero(void **state)
{
    (void)state;
    char *out;
    /* usage errors: 2; a file that does not load: 1 with a message */
    expect_run(CNNVIZ " no-such-command 2>&1", 2, "unknown command");
    expect_run(CNNVIZ " classify -m /nonexistent/model.onnx x.png 2>&1", 1, "/nonexistent/model.onnx");
    expect_run(CNNVIZ " eval --input /dev/null 2>&1", 2, NULL);
    expect_run(CNNVIZ " --version", 0, "cnnviz ");
    if (!have_shared())
        return;
    /* a raw tensor of the wrong size is refused before anything runs */
    assert_int_equal(tu_run(CNNVIZ " eval " SQUEEZE " --input " SHARED "reference/cat_logits.f32 --shape 1,3,224,224 2>&1",
                         &out),
                     1);
    assert_non_null(strstr(out, "4000 bytes"));
    free(out);
    expect_run(CNNVIZ " classify " SQUEEZE " /nonexistent.jpg 2>&1", 1, "/nonexistent.jpg");
}

/* A new user's mistakes get a way out (issue "A new user's first hour"):
 * `cnnviz help CMD`, the nearest command, class names by word, by
 * spelling and, on a small model, the whole list; a file that is not a
 * model says what it is. Before: the general usage, "unknown command",
 * "no class named 'X'" alone, and protobuf jargon for a PNG. */
static void guidance(void **state)
{
    (void)state;
    expect_run(CNNVIZ " help classmodel", 0, "usage: cnnviz classmodel");
    expect_run(CNNVIZ " clasify 2>&1", 2, "did you mean 'classify'");
    /* the default model: Fashion-MNIST's 10 classes */
    expect_run(CNNVIZ " classmodel --class flamingo -o /tmp/cnv_guidance.png 2>&1", 1,
               "the model's 10 classes: 0 T-shirt/top, 1 Trouser");
    expect_run(CNNVIZ " classmodel --class sneakr -o /tmp/cnv_guidance.png 2>&1", 1, "did you mean 7 (Sneaker)?");
    expect_run(CNNVIZ " classmodel --class boot -o /tmp/cnv_guidance.png 2>&1", 1,
               "1 class contains the word: 9 (Ankle boot)");
    /* one exit code per kind of mistake (2: the command line), ranges said */
    expect_run(CNNVIZ " classmodel --class 1 --iters -5 -o /tmp/cnv_guidance.png 2>&1", 2, "expected a whole number");
    expect_run(CNNVIZ " classmodel --class 1 --size 1 -o /tmp/cnv_guidance.png 2>&1", 2, NULL);
    expect_run(CNNVIZ " classmodel --class 1 --class 3 -o /tmp/cnv_guidance.png 2>&1", 2, "--class given twice");
    /* a size the network cannot take: its smallest, or its only size */
    expect_run(CNNVIZ " info -m tests/zoo/inception_op13.onnx --size 8x8 2>&1", 2,
               "the smallest square input it takes is 11x11");
    expect_run(CNNVIZ " info -m tests/zoo/inception_op13.onnx --size 11x11 2>&1", 0, NULL);
    expect_run(CNNVIZ " classmodel --class 1 --size 3x3 -o /tmp/cnv_guidance.png 2>&1", 2,
               "this model takes 28x28 inputs only");
    expect_run(CNNVIZ " neuron --layer rleu3 --channel 0 -o /tmp/cnv_guidance.png 2>&1", 1, "did you mean 'relu3'?");
    expect_run(CNNVIZ " info -m docs/img/ankle_boot.png 2>&1", 1, "not an ONNX model: this is a PNG image");
    expect_run(CNNVIZ " info -m README.md 2>&1", 1, "not an ONNX model");
}

/* Progress and results when stderr is not a terminal (a log, CI): plain
 * lines at each tenth and the files written; `dream --gif` makes a movie.
 * Before: nothing at all for the whole run (73 s for `layers` on
 * SqueezeNet), and a GIF of one frame. */
static void progress_in_logs(void **state)
{
    (void)state;
    char *out;
    assert_int_equal(tu_run(CNNVIZ " classmodel --class 3 --iters 30 -o /tmp/cnv_progress.png 2>&1", &out), 0);
    printf("%s", out);
    assert_non_null(strstr(out, "classmodel: step 3/30"));
    assert_non_null(strstr(out, "classmodel: step 30/30"));
    assert_null(strchr(out, '\r'));
    free(out);
    expect_run(CNNVIZ " layers --iters 5 --max-layers 2 -o /tmp/cnv_progress.png 2>&1", 0,
               "layers: wrote /tmp/cnv_progress.png");
    expect_run(CNNVIZ " dream -o /tmp/cnv_progress_frames --octaves 1 --steps 2 --frame-steps 1 "
                      "--gif /tmp/cnv_progress.gif --json 2>/dev/null",
               0, "\"frames\": 60");
    /* fool --full: the photo at its own size (a 56x56 photo, seen as 28x28) */
    cnv_image big, small;
    char e2[256];
    assert_int_equal(cnv_image_load("docs/img/ankle_boot.png", &small, e2, sizeof e2), CNV_OK);
    assert_int_equal(cnv_image_resize(&small, 56, 56, &big, e2, sizeof e2), CNV_OK);
    assert_int_equal(cnv_image_write_png(&big, "/tmp/cnv_progress_photo.png", e2, sizeof e2), CNV_OK);
    cnv_image_free(&small);
    cnv_image_free(&big);
    expect_run(CNNVIZ " fool /tmp/cnv_progress_photo.png --target Sneaker -o /tmp/cnv_progress.png "
                      "--full /tmp/cnv_progress_full.png --json 2>/dev/null",
               0, "\"full\": {\"file\": \"/tmp/cnv_progress_full.png\", \"class\": ");
    assert_int_equal(cnv_image_load("/tmp/cnv_progress_full.png", &big, e2, sizeof e2), CNV_OK);
    assert_true(big.width == 56 && big.height == 56);
    cnv_image_free(&big);
    assert_int_equal(tu_run("rm -f /tmp/cnv_progress_photo.png /tmp/cnv_progress_full.png", NULL), 0);
    /* transparency dropped: said */
    cnv_image rgba;
    char err[256];
    assert_int_equal(cnv_image_create(4, 4, 4, &rgba, err, sizeof err), CNV_OK);
    memset(rgba.data, 255, 64);
    rgba.data[3] = 0;
    assert_int_equal(cnv_image_write_png(&rgba, "/tmp/cnv_progress.png", err, sizeof err), CNV_OK);
    cnv_image_free(&rgba);
    assert_int_equal(tu_run(CNNVIZ " classify /tmp/cnv_progress.png 2>&1", &out), 0);
    printf("%s", out);
    assert_non_null(strstr(out, "1 of 16 pixels are transparent; the alpha channel is dropped"));
    free(out);
    assert_int_equal(tu_run("rm -rf /tmp/cnv_progress_frames /tmp/cnv_progress.gif /tmp/cnv_progress.png", NULL), 0);
}

/* A model without cnnviz metadata (every plain torch.onnx.export): a note
 * says what is assumed; --preset brings the family's convention and
 * ImageNet's 1000 class names; `info` says where each setting came from.
 * Before: mean 0 / std 1 without a word, and --preset imagenet brought no
 * names (--class flamingo failed). */
static void presets(void **state)
{
    (void)state;
    /* x (1x3x8x8) -> Flatten -> Gemm: 1000 classes, no metadata */
    cnv_model *net;
    assert_int_equal(cnv_model_create(&net), CNV_OK);
    cnv_shape xs = {4, {1, 3, 8, 8}}, ws = {2, {1000, 192}};
    float *w = calloc(1000 * 192, sizeof *w);
    assert_non_null(w);
    for (int i = 0; i < 1000 * 192; i++)
        w[i] = (float)((i * 7919) % 13) / 13.0f - 0.5f;
    cnv_attr trans = {.name = "transB", .type = CNV_ATTR_INT, .i = 1};
    const char *f_in[] = {"x"}, *f_out[] = {"f"}, *g_in[] = {"f", "w"}, *g_out[] = {"logits"};
    assert_int_equal(cnv_model_add_input(net, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(net, "w", CNV_FLOAT32, &ws, w), CNV_OK);
    assert_int_equal(cnv_model_add_node(net, "Flatten", "flatten", 1, f_in, 1, f_out, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_node(net, "Gemm", "fc", 2, g_in, 1, g_out, 1, &trans), CNV_OK);
    assert_int_equal(cnv_model_add_output(net, "logits"), CNV_OK);
    assert_int_equal(cnv_model_save_onnx(net, "/tmp/cnv_preset.onnx"), CNV_OK);
    cnv_model_free(net);
    free(w);

    char *out, cmd[512];
    const char *m = " -m /tmp/cnv_preset.onnx";
    snprintf(cmd, sizeof cmd, CNNVIZ " info%s 2>&1", m);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "has no normalization metadata; using mean 0, std 1"));
    assert_non_null(strstr(out, "(from default)"));
    free(out);
    snprintf(cmd, sizeof cmd, CNNVIZ " info%s --preset imagenet 2>&1", m);
    assert_int_equal(tu_run(cmd, &out), 0);
    printf("%.300s", out);
    assert_null(strstr(out, "no normalization metadata"));
    assert_non_null(strstr(out, "1 x 3 x 8 x 8 (size from model)"));
    assert_non_null(strstr(out, "norm    mean 0.485,0.456,0.406 std 0.229,0.224,0.225 (from --preset)"));
    assert_non_null(strstr(out, "labels  1000 (from --preset (ImageNet))"));
    free(out);
    snprintf(cmd, sizeof cmd,
             CNNVIZ " classmodel%s --preset imagenet --class flamingo --iters 1 -o /tmp/cnv_preset.png 2>&1", m);
    expect_run(cmd, 0, "class 130 (flamingo)");
    /* annotate writes all of it into the model: -m alone then suffices */
    snprintf(cmd, sizeof cmd, CNNVIZ " annotate%s --preset imagenet -o /tmp/cnv_preset_annotated.onnx 2>&1", m);
    expect_run(cmd, 0, "annotate: wrote /tmp/cnv_preset_annotated.onnx (mean 0.485,0.456,0.406, std "
                       "0.229,0.224,0.225, size 8x8, rgb, 1000 class names)");
    assert_int_equal(tu_run(CNNVIZ " info -m /tmp/cnv_preset_annotated.onnx 2>&1", &out), 0);
    assert_null(strstr(out, "no normalization metadata"));
    assert_non_null(strstr(out, "std 0.229,0.224,0.225 (from model metadata)"));
    assert_non_null(strstr(out, "labels  1000 (from model metadata)"));
    free(out);
    /* a model of another class count gets no ImageNet names, and says so */
    snprintf(cmd, sizeof cmd, CNNVIZ " info -m tests/zoo/mobilenet_v2_op13.onnx --preset inception 2>&1");
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "1 x 3 x 299 x 299 (size from --preset)"));
    assert_non_null(strstr(out, "mean 0.5,0.5,0.5 std 0.5,0.5,0.5"));
    assert_non_null(strstr(out, "the model scores 10 classes, not ImageNet's 1000: no class names"));
    free(out);
    /* caffe: BGR, 0..255 minus the mean; annotate keeps the order */
    snprintf(cmd, sizeof cmd, CNNVIZ " info%s --preset caffe 2>&1", m);
    expect_run(cmd, 0, "norm    mean 0.407604,0.457957,0.48502 std 0.00392157,0.00392157,0.00392157, BGR order "
                       "(from --preset)");
    snprintf(cmd, sizeof cmd, CNNVIZ " annotate%s --preset caffe -o /tmp/cnv_preset_annotated.onnx 2>&1", m);
    expect_run(cmd, 0, ", size 8x8, bgr, 1000 class names)");
    expect_run(CNNVIZ " info -m /tmp/cnv_preset_annotated.onnx 2>&1", 0, ", BGR order (from model metadata)");
    snprintf(cmd, sizeof cmd, CNNVIZ " info%s --preset caffe --channel-order rgb 2>&1", m);
    expect_run(cmd, 0, "std 0.00392157,0.00392157,0.00392157 (from --preset)");
    snprintf(cmd, sizeof cmd, CNNVIZ " info%s --preset vgg 2>&1", m);
    expect_run(cmd, 2, "unknown preset 'vgg' (known: imagenet, inception, caffe)");
    snprintf(cmd, sizeof cmd, CNNVIZ " info%s --channel-order gbr 2>&1", m);
    expect_run(cmd, 2, "--channel-order 'gbr': expected rgb or bgr");
    expect_run(CNNVIZ " info --channel-order bgr 2>&1", 2, "--channel-order: the model takes 1-channel (gray) inputs");
    assert_int_equal(tu_run("rm -f /tmp/cnv_preset.png /tmp/cnv_preset.onnx /tmp/cnv_preset_annotated.onnx", NULL), 0);
}

/* ------------------------------------------------------------ saliency */

/* Test images of the default model, made by `cnnviz sample`, in a fresh
 * folder: dir/fK.png for K = 0 .. n-1. */
static void make_samples(const char *dir, int n)
{
    char cmd[512];
    for (int k = 0; k < n; k++) {
        snprintf(cmd, sizeof cmd, CNNVIZ " sample --index %d -o %s/f%d.png > /dev/null 2>&1", k, dir, k);
        assert_int_equal(tu_run(cmd, NULL), 0);
    }
}

static int have_default_model(void)
{
    if (access("weights/fashion_mnist.onnx", R_OK) == 0)
        return 1;
    printf("skipping: weights/fashion_mnist.onnx is missing\n");
    return 0;
}

/* Lines of a file (0 when it cannot be read). */
static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0, ch;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

/* Occurrences of text in s. */
static int count_of(const char *s, const char *text)
{
    int n = 0;
    for (const char *p = strstr(s, text); p; p = strstr(p + 1, text))
        n++;
    return n;
}

/* Every option of `saliency` that a method does not take is refused with
 * exit code 2 and a message that says which methods take it; so are bad
 * values, conflicting targets and outputs that do not fit the run. */
static void saliency_options(void **state)
{
    (void)state;
    if (!have_default_model())
        skip();
    char dir[] = "/tmp/cnnviz-sal-XXXXXX", cmd[1024];
    assert_non_null(mkdtemp(dir));
    make_samples(dir, 1);
    static const struct {
        const char *args, *text;
    } bad[] = {
        {"--method nope -o X", "unknown method 'nope' (known: grad, smoothgrad, guided, gradcam, deconvnet"},
        {"--method grad,nope --sheet X", "unknown method 'nope'"},
        {"--method grad,ig,grad --sheet X", "--method names grad twice"},
        {"--steps 4 -o X", "--steps is for --method ig, blurig, guidedig"},
        {"--method ig --steps 0 -o X", "bad value '0' for --steps"},
        {"--method ig --samples 4 -o X", "--samples is for --method smoothgrad; or --smooth"},
        {"--method gradcam --noise 0.1 -o X", "--noise is for --method smoothgrad"},
        {"--method gradcam --smooth mean -o X", "--smooth is for --method grad, smoothgrad, guided, deconvnet, gradxinput, ig"},
        {"--method grad --smooth median -o X", "--smooth 'median': expected none, mean, sq or var"},
        {"--baseline zero -o X", "--baseline is for --method ig, guidedig, scorecam, occlusion, rise"},
        {"--method ig --baseline /nonexistent.png -o X", "expected zero, black, blur, noise or an image file"},
        {"--method ig --baseline zero --baseline-sigma 2 -o X", "--baseline-sigma is for --baseline blur"},
        {"--method ig --baseline blur --baseline-sigma 0 -o X", "bad value '0' for --baseline-sigma"},
        {"--method ig --fraction 0.5 -o X", "--fraction is for --method guidedig"},
        {"--method guidedig --fraction 1.5 -o X", "bad value '1.5' for --fraction"},
        {"--method ig --max-sigma 3 -o X", "--max-sigma is for --method blurig"},
        {"--method rise --window 4 -o X", "--window is for --method occlusion"},
        {"--method grad --stride 2 -o X", "--stride is for --method occlusion"},
        {"--method occlusion --masks 10 -o X", "--masks is for --method rise"},
        {"--method occlusion --cells 3 -o X", "--cells is for --method rise"},
        {"--method occlusion --mask-prob 0.3 -o X", "--mask-prob is for --method rise"},
        {"--method rise --mask-prob 0 -o X", "bad value '0' for --mask-prob"},
        {"--method ig --layer relu4 -o X", "--layer is for --method gradcam, guided-gradcam, gradcam++"},
        {"--method grad --batch 4 -o X", "--batch is for --method"},
        {"--method gradcam --seed 3 -o X", "--seed is for --method"},
        {"--method ig --baseline black --seed 3 -o X", "--seed is for --method"},
        {"--channel 3 -o X", "--channel and --unit pick a channel of --target-layer"},
        {"--unit 1,2 -o X", "--channel and --unit pick a channel of --target-layer"},
        {"--target-layer relu4 --unit 1 -o X", "bad value '1' for --unit"},
        {"--class 1 --target-layer relu4 -o X", "--class and --target-layer are two targets"},
        {"--method eigencam --class 3 -o X", "eigencam has no target"},
        {"--metric area -o X", "--metric 'area': expected deletion, insertion or both"},
        {"--metric-steps 8 -o X", "--metric-steps is for --metric"},
        {"--metric both --metric-steps 0 -o X", "bad value '0' for --metric-steps"},
        {"--method all -o X", "several methods write only --sheet"},
        {"--method grad,gradcam --overlay X", "several methods write only --sheet"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char args[512];
        const char *x = strstr(bad[k].args, " X");
        snprintf(args, sizeof args, "%.*s %s/x.png%s", (int)(x - bad[k].args), bad[k].args, dir, x + 2);
        snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png %s 2>&1", dir, args);
        expect_run(cmd, 2, bad[k].text);
    }
    /* several images: a folder; one image's outputs are refused there */
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png %s/f0.png -o %s/x.png 2>&1", dir, dir, dir);
    expect_run(cmd, 2, "are for one image");
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png %s/f0.png 2>&1", dir, dir);
    expect_run(cmd, 2, "2 images: give --out-dir DIR");
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png --summary %s/s.txt 2>&1", dir, dir);
    expect_run(cmd, 2, "name a .csv or a .json file");
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png %s/f0.png --out-dir %s/maps 2>&1", dir, dir, dir);
    expect_run(cmd, 2, "would both write");
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png --out-dir %s/f0.png 2>&1", dir, dir);
    expect_run(cmd, 2, "is not a folder");
    /* a misspelt layer fails once, with exit code 1 */
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png --target-layer nonesuch -o %s/x.png 2>&1", dir, dir);
    expect_run(cmd, 1, "--target-layer: no layer 'nonesuch'");
    /* the options a method takes pass (grad runs on main today) */
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png --method smoothgrad --samples 3 --noise 0.1 --batch 2 "
                              "--seed 7 --json 2>/dev/null", dir);
    expect_run(cmd, 0, "\"samples\": 3, \"noise\": 0.1, \"seed\": 7");
    /* an image as the baseline; a signed method; a layer target */
    make_samples(dir, 2);
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png --method ig --baseline %s/f1.png --steps 4 --json "
                              "2>/dev/null", dir, dir);
    expect_run(cmd, 0, "\"signed\": true");
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png --target-layer relu4 --channel 3 --unit 5,6 --json "
                              "2>/dev/null", dir);
    expect_run(cmd, 0, "\"label\": \"relu4 channel 3\", \"target_layer\": \"relu4\", \"channel\": 3, "
                       "\"unit\": [5, 6]");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
}

/* A folder run: per image and method a map and an overlay, one summary
 * row per image and method (CSV and JSON), an image that does not load
 * reported, its rows kept with the error, the others done, exit code 1. */
static void saliency_folder(void **state)
{
    (void)state;
    if (!have_default_model())
        skip();
    char dir[] = "/tmp/cnnviz-sal-XXXXXX", cmd[2048], path[512];
    assert_non_null(mkdtemp(dir));
    make_samples(dir, 4);
    snprintf(cmd, sizeof cmd,
             CNNVIZ " saliency %s/f0.png %s/f1.png %s/f2.png %s/f3.png --method grad,gradcam --out-dir %s/maps "
                    "--summary %s/sum.csv 2>&1",
             dir, dir, dir, dir, dir, dir);
    expect_run(cmd, 0, "saliency: image 4/4");
    const char *methods[] = {"grad", "gradcam"};
    for (int k = 0; k < 4; k++)
        for (int m = 0; m < 2; m++) {
            cnv_image img;
            char err[256];
            snprintf(path, sizeof path, "%s/maps/f%d.%s.png", dir, k, methods[m]);
            assert_int_equal(cnv_image_load(path, &img, err, sizeof err), CNV_OK);
            assert_true(img.width == 28 && img.height == 28 && img.channels == 1);
            cnv_image_free(&img);
            snprintf(path, sizeof path, "%s/maps/f%d.%s.overlay.png", dir, k, methods[m]);
            assert_int_equal(cnv_image_load(path, &img, err, sizeof err), CNV_OK);
            assert_true(img.width == 28 && img.height == 28 && img.channels == 3);
            cnv_image_free(&img);
        }
    snprintf(path, sizeof path, "%s/sum.csv", dir);
    assert_int_equal(count_lines(path), 1 + 4 * 2);
    char *out;
    snprintf(cmd, sizeof cmd, "cat %s/sum.csv", dir);
    assert_int_equal(tu_run(cmd, &out), 0);
    printf("%s", out);
    assert_non_null(strstr(out, "image,method,class,label,score,prob,time_s,passes,error\n"));
    /* Fashion-MNIST test images 0..3: ankle boot, pullover, trouser, trouser */
    assert_non_null(strstr(out, "/f0.png,grad,9,Ankle boot,"));
    assert_non_null(strstr(out, "/f3.png,gradcam,1,Trouser,"));
    free(out);
    /* a missing image among them, JSON summary */
    snprintf(cmd, sizeof cmd,
             CNNVIZ " saliency %s/f0.png %s/missing.png %s/f2.png --method gradcam --out-dir %s/maps2 "
                    "--summary %s/sum.json 2>&1",
             dir, dir, dir, dir, dir);
    expect_run(cmd, 1, "missing.png");
    snprintf(cmd, sizeof cmd, "cat %s/sum.json", dir);
    assert_int_equal(tu_run(cmd, &out), 0);
    printf("%s", out);
    assert_int_equal(count_of(out, "\"method\": \"gradcam\""), 3);
    assert_int_equal(count_of(out, "\"error\": "), 1);
    assert_true(out[0] == '[' && strstr(out, "]\n"));
    free(out);
    snprintf(path, sizeof path, "%s/maps2/f2.gradcam.png", dir);
    assert_int_equal(access(path, R_OK), 0);
    snprintf(path, sizeof path, "%s/maps2/missing.gradcam.png", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    /* a summary alone (no maps), multi-pass methods */
    snprintf(cmd, sizeof cmd,
             CNNVIZ " saliency %s/f0.png %s/f1.png --method ig,occlusion --steps 8 --batch 4 --summary %s/s2.csv "
                    "--quiet 2>&1",
             dir, dir, dir);
    expect_run(cmd, 0, NULL);
    snprintf(path, sizeof path, "%s/s2.csv", dir);
    assert_int_equal(count_lines(path), 1 + 2 * 2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
}

/* --metric both --json: the two areas in [0, 1] and the curves of
 * --metric-steps + 1 points; the CSV summary gets the area columns. */
static void saliency_metric_json(void **state)
{
    (void)state;
    if (!have_default_model())
        skip();
    char dir[] = "/tmp/cnnviz-sal-XXXXXX", cmd[1024], *out;
    assert_non_null(mkdtemp(dir));
    make_samples(dir, 2);
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png --metric both --metric-steps 8 --json 2>&1", dir);
    int rc = tu_run(cmd, &out);
    printf("%s", out);
    assert_int_equal(rc, 0);
    const char *keys[] = {"\"deletion_auc\": ", "\"insertion_auc\": "};
    for (int k = 0; k < 2; k++) {
        const char *p = strstr(out, keys[k]);
        assert_non_null(p);
        double a = atof(p + strlen(keys[k]));
        assert_true(a >= 0.0 && a <= 1.0);
    }
    assert_non_null(strstr(out, "\"metric_steps\": 8"));
    const char *curve = strstr(out, "\"deletion_curve\": [");
    assert_non_null(curve);
    const char *end = strchr(curve, ']');
    int commas = 0;
    for (const char *p = curve; p < end; p++)
        commas += *p == ',';
    assert_int_equal(commas, 8); /* 9 points */
    assert_non_null(strstr(out, "\"insertion_curve\": ["));
    free(out);
    snprintf(cmd, sizeof cmd,
             CNNVIZ " saliency %s/f0.png %s/f1.png --metric deletion --metric-steps 4 --summary %s/s.csv --quiet",
             dir, dir, dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
    snprintf(cmd, sizeof cmd, "head -1 %s/s.csv", dir);
    expect_run(cmd, 0, "image,method,class,label,score,prob,time_s,passes,deletion_auc,error");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
}

/* --method all: one sheet, the input and the 18 overlays (19 tiles, 5
 * columns, 4 rows), and --json lists the 18 methods with their times. */
static void saliency_all_sheet(void **state)
{
    (void)state;
    if (!have_default_model())
        skip();
    char dir[] = "/tmp/cnnviz-sal-XXXXXX", cmd[1024], path[512], *out;
    assert_non_null(mkdtemp(dir));
    make_samples(dir, 1);
    /* a list of three first: 4 tiles in a row */
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s/f0.png --method grad,guided,gradcam --sheet %s/three.png --json",
             dir, dir);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_int_equal(count_of(out, "\"time_s\": "), 4); /* each method's and the total */
    free(out);
    cnv_image img;
    char err[256];
    snprintf(path, sizeof path, "%s/three.png", dir);
    assert_int_equal(cnv_image_load(path, &img, err, sizeof err), CNV_OK);
    printf("three methods: %dx%d\n", img.width, img.height);
    assert_true(img.width > 4 * 128 && img.height > 128 && img.height < 2 * 128);
    cnv_image_free(&img);
    snprintf(cmd, sizeof cmd,
             CNNVIZ " saliency %s/f0.png --method all --samples 3 --steps 4 --masks 50 --batch 4 --sheet %s/all.png "
                    "--json 2>&1",
             dir, dir);
    int rc = tu_run(cmd, &out);
    printf("%s", out);
    assert_int_equal(rc, 0);
    for (int m = 0; m < CNV_SALIENCY_METHODS; m++) {
        char key[64];
        snprintf(key, sizeof key, "{\"method\": \"%s\"", cnv_saliency_method_name((cnv_saliency_method)m));
        assert_non_null(strstr(out, key));
    }
    free(out);
    snprintf(path, sizeof path, "%s/all.png", dir);
    assert_int_equal(cnv_image_load(path, &img, err, sizeof err), CNV_OK);
    printf("all methods: %dx%d\n", img.width, img.height);
    assert_true(img.width > 5 * 128 && img.width < 6 * 128 + 40 && img.height > 4 * 128);
    cnv_image_free(&img);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
}

int main(void)
{
    if (access(CNNVIZ, X_OK) != 0) {
        printf("bin/cnnviz is missing: run the tests through 'make test' from the repository root\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(classify_cat_top5),
        cmocka_unit_test(eval_matches_reference),
        cmocka_unit_test(info_squeezenet),
        cmocka_unit_test(errors_exit_nonzero),
        cmocka_unit_test(guidance),
        cmocka_unit_test(progress_in_logs),
        cmocka_unit_test(presets),
        cmocka_unit_test(saliency_options),
        cmocka_unit_test(saliency_folder),
        cmocka_unit_test(saliency_metric_json),
        cmocka_unit_test(saliency_all_sheet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
