/* Training: the loss gradient of every parameter against central finite
 * differences, the VGG builder, determinism, a short real training run,
 * and the committed model (accuracy on the test set, ONNX checker). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testutil.h"

#define DATA_DIR "/usr/share/datasets/fashion-mnist"
#define WEIGHTS "weights/fashion_mnist.onnx"

static cnv_model *tiny_vgg(uint64_t seed, int classes)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_vgg_params p = cnv_vgg_params_default();
    p.height = p.width = 8;
    p.width1 = 2;
    p.width2 = 3;
    p.hidden = 5;
    p.classes = classes;
    p.seed = seed;
    if (cnv_model_build_vgg(m, &p) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    return m;
}

/* The mean cross-entropy of the batch in s, through the training path. */
static double batch_loss(cnv_model *m, cnv_session *s, const uint8_t *labels)
{
    double loss = 0;
    (void)m;
    if (cnv_train_loss_backward(s, tu_t(s, "logits"), labels, tu_batch(s), &loss, NULL) != CNV_OK)
        fail_msg("%s", cnv_session_errmsg(s));
    return loss;
}

/* d(mean softmax cross-entropy)/d(every parameter) from one backward,
 * against central differences of the loss itself (computed outside the
 * graph, so tu_fd_check does not apply). The error of a tensor is
 * max |analytic - numeric| over its largest |analytic|. */
static double fd_h = 1e-3; /* larger steps cross ReLU and max-pool kinks */
static void loss_gradient_fd(void **state)
{
    (void)state;
    const int B = 3, K = 4;
    cnv_model *m = tiny_vgg(7, K);
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_param_grads(s, 1), CNV_OK);
    assert_int_equal(cnv_session_plan(s, B, 8, 8), CNV_OK);
    tu_rng r;
    tu_rng_init(&r, 3);
    tu_fill(&r, cnv_session_input(s), B * 64, -1.5f, 1.5f);
    const uint8_t labels[3] = {2, 0, 3};
    (void)batch_loss(m, s, labels);

    int np = cnv_model_param_count(m);
    assert_int_equal(np, 12); /* 6 layers x (weight, bias) */
    double worst = 0;
    int checked_total = 0;
    for (int i = 0; i < np; i++) {
        const char *name = cnv_model_param_name(m, i);
        float *w, *g;
        cnv_shape sh;
        assert_int_equal(cnv_model_param(m, name, &w, &sh), CNV_OK);
        assert_int_equal(cnv_session_grad(s, tu_t(s, name), &g), CNV_OK);
        int64_t n = cnv_shape_count(&sh);
        float *analytic = malloc((size_t)n * sizeof *analytic);
        assert_non_null(analytic);
        memcpy(analytic, g, (size_t)n * sizeof *analytic);
        double scale = 1e-6;
        for (int64_t j = 0; j < n; j++)
            scale = fmax(scale, fabs(analytic[j]));
        int64_t step = n > 40 ? n / 40 : 1;
        double err = 0;
        int checked = 0;
        for (int64_t j = 0; j < n; j += step) {
            const float h = (float)fd_h;
            float keep = w[j];
            w[j] = keep + h;
            double lp = batch_loss(m, s, labels);
            w[j] = keep - h;
            double lm = batch_loss(m, s, labels);
            w[j] = keep;
            double numeric = (lp - lm) / (2.0 * ((double)(keep + h) - (double)keep));
            err = fmax(err, fabs(analytic[j] - numeric) / scale);
            checked++;
        }
        printf("FD loss/%s: max error %.3g (of max |grad| %.3g) over %d elements\n", name, err, scale,
               checked);
        worst = fmax(worst, err);
        checked_total += checked;
        free(analytic);
    }
    printf("FD training loss, every parameter: max error %.3g over %d elements (tol 5e-3)\n", worst,
           checked_total);
    assert_true(worst <= 5e-3);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* The loss and dL/dlogits on a hand-checked case: a model whose logits are
 * its input (Identity), so the gradient is (softmax - onehot) / B. */
static void loss_hand(void **state)
{
    (void)state;
    tu_tensor in = {"x", tu_shape(2, 2, 3), NULL, 0};
    cnv_model *m = tu_one_node("Identity", 1, &in, 0, NULL);
    const float z[6] = {0, 0, 0, 1, 2, 3};
    const float *zs[1] = {z};
    cnv_session *s = tu_session(m, zs, 1);
    const uint8_t labels[2] = {1, 2};
    double loss;
    int correct;
    assert_int_equal(cnv_train_loss_backward(s, tu_t(s, "y"), labels, tu_batch(s), &loss, &correct), CNV_OK);
    double l0 = log(3.0), e = exp(1.0), l1 = log(1 + e + e * e) - 2.0;
    assert_true(fabs(loss - (l0 + l1) / 2) < 1e-6);
    /* argmax of row 0 is the first of equal values (0), row 1 is 2 */
    assert_int_equal(correct, 1);
    float *g = cnv_session_input_grad(s);
    double den = 1 + e + e * e;
    const double want[6] = {1 / 6.0, (1 / 3.0 - 1) / 2, 1 / 6.0, 1 / den / 2, e / den / 2, (e * e / den - 1) / 2};
    for (int i = 0; i < 6; i++)
        assert_true(fabs(g[i] - want[i]) < 1e-6);
    /* a label outside the logits is refused before anything runs */
    const uint8_t bad[2] = {1, 3};
    assert_int_equal(cnv_train_loss_backward(s, tu_t(s, "y"), bad, tu_batch(s), &loss, NULL), CNV_ERR_INVALID_ARG);
    assert_non_null(strstr(cnv_session_errmsg(s), "label 3"));
    assert_int_equal(cnv_train_loss_backward(s, tu_t(s, "nope"), labels, tu_batch(s), &loss, NULL), CNV_ERR_NOT_FOUND);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void build_vgg_checks(void **state)
{
    (void)state;
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_vgg_params p = cnv_vgg_params_default();
    assert_int_equal(cnv_model_build_vgg(m, &p), CNV_OK);
    assert_int_equal(cnv_model_input_count(m), 1);
    assert_string_equal(tu_input_name(m, 0), "image");
    assert_string_equal(cnv_model_tensor_name(m, cnv_model_output(m, 0)), "logits");
    cnv_shape sh;
    assert_int_equal(cnv_model_input_shape(m, 0, &sh), CNV_OK);
    assert_true(sh.ndim == 4 && sh.dims[0] == -1 && sh.dims[1] == 1 && sh.dims[2] == 28 && sh.dims[3] == 28);
    float *w;
    assert_int_equal(cnv_model_param(m, "fc1.weight", &w, &sh), CNV_OK);
    assert_true(sh.ndim == 2 && sh.dims[0] == 128 && sh.dims[1] == 48 * 7 * 7);
    /* He init: the sample std of conv4's weights is near sqrt(2/(48*9)) */
    assert_int_equal(cnv_model_param(m, "conv4.weight", &w, &sh), CNV_OK);
    int64_t n = cnv_shape_count(&sh);
    double s2 = 0;
    for (int64_t i = 0; i < n; i++)
        s2 += (double)w[i] * w[i];
    double sd = sqrt(s2 / n), want = sqrt(2.0 / 432);
    printf("He init: conv4 std %.5f, expected %.5f\n", sd, want);
    assert_true(fabs(sd - want) < 0.03 * want);
    /* a non-empty model and bad sizes are refused */
    assert_int_equal(cnv_model_build_vgg(m, &p), CNV_ERR_STATE);
    cnv_model_free(m);
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    p.height = 3;
    assert_int_equal(cnv_model_build_vgg(m, &p), CNV_ERR_INVALID_ARG);
    assert_true(strlen(cnv_model_errmsg(m)) > 0);
    cnv_model_free(m);
}

/* A synthetic 8x8 set: class k has a bright k-th row band, so a tiny net
 * can learn it; used for determinism and the argument checks. */
static cnv_dataset *synthetic(int n, int classes, uint64_t seed)
{
    uint8_t *px = malloc((size_t)n * 64), *lb = malloc((size_t)n);
    assert_true(px && lb);
    tu_rng r;
    tu_rng_init(&r, seed);
    for (int i = 0; i < n; i++) {
        lb[i] = (uint8_t)(i % classes);
        for (int j = 0; j < 64; j++)
            px[i * 64 + j] = (uint8_t)tu_uniform(&r, 0, 80);
        for (int x = 0; x < 8; x++)
            px[i * 64 + (lb[i] * 2) * 8 + x] = 255;
    }
    cnv_dataset *d = NULL;
    assert_int_equal(cnv_dataset_create(n, 1, 8, 8, classes, px, lb, &d), CNV_OK);
    free(px);
    free(lb);
    return d;
}

typedef struct seen {
    int epochs;
    double last_acc, last_loss;
    int stop_after;
} seen;

static int on_epoch(void *user, const cnv_train_epoch *e)
{
    seen *s = user;
    s->epochs++;
    s->last_acc = e->test_acc;
    s->last_loss = e->loss;
    assert_int_equal(e->epoch, s->epochs);
    assert_true(e->images_per_s > 0 && e->seconds >= 0 && e->total_seconds >= e->seconds);
    return s->stop_after && s->epochs >= s->stop_after;
}

static void weights_copy(cnv_model *m, float *dst, int64_t cap)
{
    int64_t at = 0;
    for (int i = 0; i < cnv_model_param_count(m); i++) {
        float *w;
        cnv_shape sh;
        assert_int_equal(cnv_model_param(m, cnv_model_param_name(m, i), &w, &sh), CNV_OK);
        int64_t n = cnv_shape_count(&sh);
        assert_true(at + n <= cap);
        memcpy(dst + at, w, (size_t)n * sizeof *w);
        at += n;
    }
}

/* Same seed, same threads: bit-identical weights; learns the synthetic
 * set; cancelling through the callback stops with CNV_ERR_CANCELLED. */
static void deterministic_and_cancel(void **state)
{
    (void)state;
    cnv_set_threads(1);
    cnv_dataset *d = synthetic(256, 4, 5), *t = synthetic(64, 4, 6);
    static float w1[20000], w2[20000], w3[20000];
    double acc[3];
    /* two runs with the batch split between 2 workers, one with 1 */
    for (int run = 0; run < 3; run++) {
        cnv_model *m = tiny_vgg(11, 4);
        cnv_train_params p = cnv_train_params_default();
        p.epochs = 3;
        p.batch = 16;
        p.seed = 42;
        p.mean = 0.2f;
        p.std = 0.3f;
        p.augment = CNV_AUG_FLIP; /* a shift would move a band onto another class's row */
        p.workers = run < 2 ? 2 : 1;
        seen sn = {0, 0, 0, 0};
        p.progress = on_epoch;
        p.user = &sn;
        if (cnv_train(m, d, t, &p) != CNV_OK)
            fail_msg("%s", cnv_model_errmsg(m));
        assert_int_equal(sn.epochs, 3);
        acc[run] = sn.last_acc;
        weights_copy(m, run == 0 ? w1 : run == 1 ? w2 : w3, 20000);
        cnv_model_free(m);
    }
    /* 1 and 2 workers differ only in the order gradients are summed */
    double diff = 0, wmax = 0;
    for (int i = 0; i < 20000; i++) {
        diff = fmax(diff, fabs(w1[i] - w3[i]));
        wmax = fmax(wmax, fabs(w3[i]));
    }
    printf("synthetic set: test accuracy %.3f and %.3f on two runs with seed 42 and 2 workers, %.3f with 1; "
           "weights of 1 vs 2 workers differ by at most %.3g (largest weight %.3g)\n",
           acc[0], acc[1], acc[2], diff, wmax);
    assert_memory_equal(w1, w2, sizeof w1);
    assert_true(diff < 1e-5 * wmax);
    assert_true(acc[0] >= 0.9 && acc[2] >= 0.9);

    cnv_model *m = tiny_vgg(11, 4);
    cnv_train_params p = cnv_train_params_default();
    p.epochs = 5;
    p.batch = 16;
    seen sn = {0, 0, 0, 2};
    p.progress = on_epoch;
    p.user = &sn;
    assert_int_equal(cnv_train(m, d, NULL, &p), CNV_ERR_CANCELLED);
    assert_int_equal(sn.epochs, 2);
    assert_true(sn.last_acc == -1); /* no test set */
    /* bad arguments */
    p.progress = NULL;
    p.lr = -1;
    assert_int_equal(cnv_train(m, d, NULL, &p), CNV_ERR_INVALID_ARG);
    p = cnv_train_params_default();
    cnv_model *wide = tiny_vgg(11, 3); /* 3 logits, labels up to 3 */
    assert_int_equal(cnv_train(wide, d, NULL, &p), CNV_ERR_SHAPE);
    printf("refused: %s\n", cnv_model_errmsg(wide));
    cnv_model_free(wide);
    cnv_dataset *big = NULL;
    uint8_t px[2 * 100] = {0}, lb[2] = {0, 1};
    assert_int_equal(cnv_dataset_create(2, 1, 10, 10, 2, px, lb, &big), CNV_OK);
    assert_int_equal(cnv_train(m, big, NULL, &p), CNV_ERR_SHAPE);
    cnv_dataset_free(big);
    cnv_model_free(m);
    cnv_dataset_free(d);
    cnv_dataset_free(t);
}

static int have_data(void)
{
    FILE *f = fopen(DATA_DIR "/train-images-idx3-ubyte.gz", "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

/* One epoch on 2,000 real images beats 60% on 1,000 held-out ones. */
static void short_training_run(void **state)
{
    (void)state;
    tu_skip_under_valgrind("an epoch of training on 2,000 images");
    if (!have_data()) {
        printf("skipped: the dataset-fashion-mnist package is not installed (" DATA_DIR ")\n");
        skip();
    }
    cnv_set_threads(0);
    cnv_dataset *tr = NULL, *te = NULL;
    if (cnv_mnist_load(DATA_DIR, "train", &tr) != CNV_OK)
        fail_msg("%s", cnv_dataset_errmsg(tr));
    if (cnv_mnist_load(DATA_DIR, "t10k", &te) != CNV_OK)
        fail_msg("%s", cnv_dataset_errmsg(te));
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_vgg_params vp = cnv_vgg_params_default();
    vp.width1 = 16;
    vp.width2 = 32;
    vp.seed = 3;
    assert_int_equal(cnv_model_build_vgg(m, &vp), CNV_OK);
    cnv_train_params p = cnv_train_params_default();
    p.epochs = 1;
    p.batch = 16;
    p.lr = 0.01f;
    p.augment = 0;
    p.max_train = 2000;
    p.max_test = 1000;
    seen sn = {0, 0, 0, 0};
    p.progress = on_epoch;
    p.user = &sn;
    if (cnv_train(m, tr, te, &p) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    printf("short run (2000 images, 1 epoch): loss %.3f, accuracy %.3f on 1000 held-out images\n",
           sn.last_loss, sn.last_acc);
    assert_true(sn.last_acc > 0.60);
    cnv_model_free(m);
    cnv_dataset_free(tr);
    cnv_dataset_free(te);
}

/* Runs cmd, returns its stdout (at most cap-1 bytes) and exit status. */
static int run_capture(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    return pclose(f);
}

static double json_number(const char *json, const char *key)
{
    const char *p = strstr(json, key);
    if (!p)
        fail_msg("no %s in: %s", key, json);
    return strtod(p + strlen(key), NULL);
}

/* cnnviz train writes a model whose accuracy, re-read from the ONNX file
 * by cnnviz evaluate (normalization from its metadata), is exactly the
 * test accuracy the trainer measured in memory. */
static void cli_train_then_evaluate(void **state)
{
    (void)state;
    if (!have_data()) {
        printf("skipped: the dataset-fashion-mnist package is not installed (" DATA_DIR ")\n");
        skip();
    }
    char dir[] = "/tmp/cnv_train_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[512], out[8192];
    snprintf(cmd, sizeof cmd,
             "bin/cnnviz train --limit 512 --epochs 1 --batch 32 --lr 0.01 --width1 4 --width2 8 "
             "--hidden 16 --threads 1 --quiet --json -o %s/m.onnx",
             dir);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    double trained = json_number(out, "\"test_accuracy\": ");
    snprintf(cmd, sizeof cmd, "bin/cnnviz evaluate -m %s/m.onnx --threads 1 --json", dir);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    double evaluated = json_number(out, "\"accuracy\": ");
    printf("cnnviz train reported %.4f, cnnviz evaluate measured %.4f on the 10000 test images\n", trained,
           evaluated);
    assert_true(fabs(trained - evaluated) < 1e-9);
    assert_non_null(strstr(out, "\"labels\": [\"T-shirt/top\", \"Trouser\""));
    /* usage errors exit 2 */
    snprintf(cmd, sizeof cmd, "bin/cnnviz train --epochs 0 -o %s/x.onnx 2>/dev/null", dir);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static cnv_model *load_committed(void)
{
    FILE *f = fopen(WEIGHTS, "rb");
    if (!f)
        fail_msg("%s is missing (run the tests from the repository root)", WEIGHTS);
    fclose(f);
    cnv_model *m = NULL;
    if (cnv_model_load_onnx(WEIGHTS, &m) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    return m;
}

/* The shipped model: loads, carries the metadata convention, and scores
 * >= 92% on the 10,000 test images. */
static void committed_model_accuracy(void **state)
{
    (void)state;
    tu_skip_under_valgrind("the default model on 10,000 test images");
    cnv_model *m = load_committed();
    const char *labels = cnv_model_get_meta(m, "cnnviz.labels");
    assert_non_null(labels);
    assert_int_equal(strncmp(labels, "T-shirt/top\nTrouser\n", 20), 0);
    assert_string_equal(cnv_model_get_meta(m, "cnnviz.color"), "gray");
    assert_string_equal(cnv_model_get_meta(m, "cnnviz.image_size"), "28x28");
    const char *mean_s = cnv_model_get_meta(m, "cnnviz.mean"), *std_s = cnv_model_get_meta(m, "cnnviz.std");
    assert_true(mean_s && std_s);
    if (!have_data()) {
        cnv_model_free(m);
        printf("skipped: the dataset-fashion-mnist package is not installed (" DATA_DIR ")\n");
        skip();
    }
    cnv_set_threads(0);
    cnv_dataset *te = NULL;
    if (cnv_mnist_load(DATA_DIR, "t10k", &te) != CNV_OK)
        fail_msg("%s", cnv_dataset_errmsg(te));
    double acc;
    int64_t conf[100];
    const float mean = strtof(mean_s, NULL), std = strtof(std_s, NULL);
    cnv_preprocess pp = tu_pp(1, 28, 28, &mean, &std);
    if (cnv_evaluate(m, te, cnv_model_tensor_index(m, "logits"), 250, &pp, &acc, conf, 10) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    int64_t sum = 0, diag = 0;
    for (int i = 0; i < 100; i++)
        sum += conf[i];
    for (int i = 0; i < 10; i++)
        diag += conf[i * 11];
    printf("committed model: test accuracy %.4f (%lld of %lld)\n", acc, (long long)diag, (long long)sum);
    assert_int_equal(sum, 10000);
    assert_true(fabs(acc - diag / 10000.0) < 1e-12);
    assert_true(acc >= 0.92);
    cnv_dataset_free(te);
    cnv_model_free(m);
}

/* A python3 that imports onnx accepts the committed file. */
static void committed_model_onnx_checker(void **state)
{
    (void)state;
    cnv_model_free(load_committed());
    const char *pys[2] = {"/usr/bin/python3", "python3"};
    for (int i = 0; i < 2; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s -c 'import onnx' >/dev/null 2>&1", pys[i]);
        if (system(cmd) != 0)
            continue;
        snprintf(cmd, sizeof cmd,
                 "%s -c 'import onnx; m = onnx.load(\"%s\"); onnx.checker.check_model(m, full_check=True); "
                 "print(\"onnx.checker: ok, opset\", m.opset_import[0].version)'",
                 pys[i], WEIGHTS);
        int rc = system(cmd);
        assert_int_equal(rc, 0);
        return;
    }
    printf("skipped: no python3 on this machine imports onnx\n");
    skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loss_hand),
        cmocka_unit_test(loss_gradient_fd),
        cmocka_unit_test(build_vgg_checks),
        cmocka_unit_test(deterministic_and_cancel),
        cmocka_unit_test(short_training_run),
        cmocka_unit_test(cli_train_then_evaluate),
        cmocka_unit_test(committed_model_accuracy),
        cmocka_unit_test(committed_model_onnx_checker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
