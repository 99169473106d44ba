/* Scores that are not finite, and scores the image cannot move (issue
 * "Untrusted input, round 2"). Before: `--json` printed bare inf/nan
 * (invalid JSON) from classify, classmodel and fool; classmodel wrote an
 * all-black PNG and exited 0; fool wrote its output after failing; a model
 * whose output is a constant gave a blank saliency map, a noise "class
 * model" and a 100-step fooling run without a word. Now the visualizations
 * fail with a message before anything is written, and JSON says null with a
 * message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define SIDE 8
#define K 10

/* x (1x1x8x8) -> Flatten -> Gemm with every weight 1e38: any bright image
 * scores +inf in every class. */
static cnv_model *overflowing(void)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, 1, 1, SIDE, SIDE), ws = tu_shape(2, K, SIDE * SIDE);
    static float w[K * SIDE * SIDE];
    for (int i = 0; i < K * SIDE * SIDE; i++)
        w[i] = 1e38f;
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "w", CNV_FLOAT32, &ws, w), CNV_OK);
    const char *f_in[] = {"x"}, *f_out[] = {"f"}, *g_in[] = {"f", "w"}, *g_out[] = {"y"};
    cnv_attr trans = tu_attr_int("transB", 1);
    assert_int_equal(cnv_model_add_node(m, "Flatten", "flatten", 1, f_in, 1, f_out, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Gemm", "fc", 2, g_in, 1, g_out, 1, &trans), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

/* x is declared but the output is a + b, two constants: no gradient
 * reaches the image. */
static cnv_model *constant(void)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, 1, 1, SIDE, SIDE), cs = tu_shape(2, 1, K);
    float a[K], b[K];
    for (int i = 0; i < K; i++)
        a[i] = (float)i, b[i] = 0.5f;
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "a", CNV_FLOAT32, &cs, a), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "b", CNV_FLOAT32, &cs, b), CNV_OK);
    const char *in[] = {"a", "b"}, *out[] = {"y"};
    assert_int_equal(cnv_model_add_node(m, "Add", "add", 2, in, 1, out, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

static float g_white[SIDE * SIDE];

typedef cnv_status (*viz_fn)(cnv_session *s, cnv_model *m);

static cnv_status run_saliency(cnv_session *s, cnv_model *m)
{
    static float map[SIDE * SIDE];
    cnv_saliency_params p = cnv_saliency_params_default();
    p.class_index = 3;
    return tu_saliency(s, m, g_white, SIDE, SIDE, &p, map, NULL);
}

static cnv_status run_classmodel(cnv_session *s, cnv_model *m)
{
    static float img[SIDE * SIDE];
    float score, prob;
    int cls = 3;
    cnv_classmodel_params p = cnv_classmodel_params_default();
    p.iters = 5;
    p.height = p.width = SIDE;
    return tu_classmodel(s, m, NULL, NULL, 1, &cls, &p, img, &score, &prob);
}

static cnv_status run_fool(cnv_session *s, cnv_model *m)
{
    static float fooled[SIDE * SIDE];
    cnv_fool_params p = cnv_fool_params_default();
    p.max_iters = 5;
    cnv_fool_result r;
    return tu_fool(s, m, NULL, NULL, g_white, SIDE, SIDE, 4, &p, fooled, NULL, NULL, &r);
}

static void expect(cnv_model *m, viz_fn fn, const char *what, cnv_status want, const char *text)
{
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_status st = fn(s, m);
    printf("%s: %s\n", what, cnv_session_errmsg(s));
    assert_int_equal(st, want);
    assert_non_null(strstr(cnv_session_errmsg(s), text));
    cnv_session_free(s);
}

static void library_refuses_nonfinite_scores(void **state)
{
    (void)state;
    for (int i = 0; i < SIDE * SIDE; i++)
        g_white[i] = 1.0f;
    cnv_model *m = overflowing();
    expect(m, run_saliency, "saliency, scores +inf", CNV_ERR_FORMAT, "not finite");
    expect(m, run_classmodel, "classmodel, scores +inf", CNV_ERR_FORMAT, "not finite");
    expect(m, run_fool, "fool, scores +inf", CNV_ERR_FORMAT, "not finite");
    cnv_model_free(m);
}

static void library_refuses_constant_scores(void **state)
{
    (void)state;
    cnv_model *m = constant();
    expect(m, run_saliency, "saliency, constant output", CNV_ERR_INVALID_ARG, "does not depend on the input");
    expect(m, run_classmodel, "classmodel, constant output", CNV_ERR_INVALID_ARG,
           "does not depend on the input");
    expect(m, run_fool, "fool, constant output", CNV_ERR_INVALID_ARG, "does not depend on the input");
    cnv_model_free(m);
}

/* ---- the command line ---- */

static int setup(void **state)
{
    (void)state;
    if (tu_scratch_make("cnv_nonfinite") != 0)
        return -1;
    cnv_model *m = overflowing();
    char err[256];
    cnv_image img;
    int ok = cnv_model_save_onnx(m, tu_scratch("inf.onnx")) == CNV_OK &&
             cnv_image_create(SIDE, SIDE, 1, &img, err, sizeof err) == CNV_OK;
    cnv_model_free(m);
    if (!ok)
        return -1;
    memset(img.data, 255, SIDE * SIDE);
    ok = cnv_image_write_png(&img, tu_scratch("white.png"), err, sizeof err) == CNV_OK;
    cnv_image_free(&img);
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return tu_scratch_remove();
}

/* Runs `bin/cnnviz ARGS` with stdout to out.txt; the exit code, and
 * stdout in buf. */
static int cli(const char *args, char *buf, size_t len)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bin/cnnviz %s > %s 2> %s", args, tu_scratch("out.txt"), tu_scratch("err.txt"));
    int st = system(cmd);
    FILE *f = fopen(tu_scratch("out.txt"), "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = 0;
    fclose(f);
    char msg[512] = "";
    f = fopen(tu_scratch("err.txt"), "r");
    assert_non_null(f);
    msg[fread(msg, 1, sizeof msg - 1, f)] = 0;
    fclose(f);
    printf("$ cnnviz %s\n  exit %d, stdout: %.300s\n  stderr: %s\n", args, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
           buf, msg);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* No bare non-finite number in JSON text (outside strings, which here
 * hold only file names and labels without those words). */
static void assert_no_bare_nonfinite(const char *json)
{
    int in_string = 0;
    for (const char *p = json; *p; p++) {
        if (*p == '"' && (p == json || p[-1] != '\\'))
            in_string = !in_string;
        if (in_string)
            continue;
        assert_false(strncmp(p, "inf", 3) == 0 || strncmp(p, "nan", 3) == 0 || strncmp(p, "-nan", 4) == 0);
    }
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void cli_nonfinite(void **state)
{
    (void)state;
    char buf[8192], args[1024];
    snprintf(args, sizeof args, "classify -m %s %s --json --top 3", tu_scratch("inf.onnx"), tu_scratch("white.png"));
    assert_int_equal(cli(args, buf, sizeof buf), 1);
    assert_no_bare_nonfinite(buf);
    assert_non_null(strstr(buf, "\"top\": null"));
    assert_non_null(strstr(buf, "\"message\": \"the model's score for class 0 is inf: not finite\""));
    assert_non_null(strstr(buf, "]}\n"));

    snprintf(args, sizeof args, "classmodel -m %s --class 2 --iters 3 -o %s --json", tu_scratch("inf.onnx"),
             tu_scratch("cm.png"));
    assert_int_equal(cli(args, buf, sizeof buf), 1);
    assert_no_bare_nonfinite(buf);
    assert_false(exists(tu_scratch("cm.png")));

    snprintf(args, sizeof args, "fool -m %s %s --target 2 --max-iters 3 -o %s --json", tu_scratch("inf.onnx"),
             tu_scratch("white.png"), tu_scratch("fool.png"));
    assert_int_equal(cli(args, buf, sizeof buf), 1);
    assert_no_bare_nonfinite(buf);
    assert_false(exists(tu_scratch("fool.png")));

    snprintf(args, sizeof args, "saliency -m %s %s -o %s --json", tu_scratch("inf.onnx"), tu_scratch("white.png"),
             tu_scratch("sal.png"));
    assert_int_equal(cli(args, buf, sizeof buf), 1);
    assert_no_bare_nonfinite(buf);
    assert_false(exists(tu_scratch("sal.png")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(library_refuses_nonfinite_scores),
        cmocka_unit_test(library_refuses_constant_scores),
        cmocka_unit_test_setup_teardown(cli_nonfinite, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
