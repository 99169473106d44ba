/* The installed library: the header's usage example is tests/example.c
 * line for line, and tests/install_test.sh installs into a scratch prefix
 * and builds and runs that example with pkg-config's flags. Runs from the
 * repository root (as `make test` does). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char g_dir[64];
static int g_built;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s (run from the repository root)", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *copy = malloc(n + 1);
    assert_non_null(copy);
    memcpy(copy, buf, n + 1);
    return copy;
}

/* The lines of the header's USAGE block (" *     code") in order must
 * appear in tests/example.c, consecutively, indented by four spaces. */
static void example_matches_header(void **state)
{
    (void)state;
    char *h = slurp("include/cnnviz.h"), *ex = slurp("tests/example.c");
    char *usage = strstr(h, " * USAGE");
    assert_non_null(usage);
    char *end = strstr(usage, " * CONVENTIONS");
    assert_non_null(end);
    *end = '\0';
    char *at = NULL; /* where the previous line matched in example.c */
    int lines = 0;
    for (char *line = strtok(usage, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, " *     ", 7) != 0)
            continue;
        char want[512];
        snprintf(want, sizeof want, "\n    %s\n", line + 7);
        char *found = strstr(at ? at : ex, want);
        if (!found || (at && found != at))
            fail_msg("tests/example.c lacks, at its place, the header's line:\n%s", line + 7);
        at = found + strlen(want) - 1; /* the next line starts at this '\n' */
        lines++;
    }
    printf("the header's example (%d lines) is tests/example.c's main\n", lines);
    assert_true(lines >= 5);
    free(h);
    free(ex);
}

static int run_script(const char *mode, const char *cwd)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "sh tests/install_test.sh %s %s %s", mode, g_dir, cwd ? cwd : "");
    fflush(stdout);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc))
        fail_msg("could not run %s", cmd);
    return WEXITSTATUS(rc);
}

static void installed_library_builds(void **state)
{
    (void)state;
    assert_int_equal(run_script("build", NULL), 0);
    g_built = 1;
}

static void installed_example_runs(void **state)
{
    (void)state;
    if (!g_built)
        fail_msg("the example was not built (see installed_library_builds)");
    int rc = run_script("run", NULL);
    if (rc == 77)
        skip();
    assert_int_equal(rc, 0);
}

/* Until (and besides) the trained weights: the same installed example on
 * a small stand-in network of the same input shape, written by the
 * library's ONNX writer into a scratch weights/ directory. */
static void installed_example_runs_standin(void **state)
{
    (void)state;
    if (!g_built)
        fail_msg("the example was not built (see installed_library_builds)");
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, 1, 1, 28, 28), ws = tu_shape(4, 4, 1, 3, 3), fs = tu_shape(2, 10, 4);
    float w[36], fc[40];
    tu_rng r;
    tu_rng_init(&r, 1);
    tu_fill(&r, w, 36, -1.0f, 1.0f);
    tu_fill(&r, fc, 40, -1.0f, 1.0f);
    const int64_t k3[2] = {3, 3};
    cnv_attr ks = tu_attr_ints("kernel_shape", 2, k3), tb = tu_attr_int("transB", 1);
    const char *c = "c", *rl = "r", *g = "g", *f = "f", *y = "logits";
    assert_int_equal(cnv_model_add_input(m, "image", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "w", CNV_FLOAT32, &ws, w), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "fc", CNV_FLOAT32, &fs, fc), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Conv", "conv", 2, (const char *const[]){"image", "w"}, 1, &c, 1, &ks),
                     CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Relu", "relu", 1, &c, 1, &rl, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "GlobalAveragePool", "gap", 1, &rl, 1, &g, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Flatten", "flatten", 1, &g, 1, &f, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Gemm", "fc", 2, (const char *const[]){"f", "fc"}, 1, &y, 1, &tb),
                     CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "logits"), CNV_OK);
    char cwd[128], path[192];
    snprintf(cwd, sizeof cwd, "%s/standin", g_dir);
    snprintf(path, sizeof path, "%s/weights", cwd);
    assert_int_equal(mkdir(cwd, 0700), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/weights/fashion_mnist.onnx", cwd);
    if (cnv_model_save_onnx(m, path) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    cnv_model_free(m);
    /* and the picture the example reads, where it looks for it */
    char err[256];
    cnv_image img = {0};
    snprintf(path, sizeof path, "%s/docs", cwd);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/docs/img", cwd);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/docs/img/ankle_boot.png", cwd);
    if (cnv_image_load("docs/img/ankle_boot.png", &img, err, sizeof err) != CNV_OK ||
        cnv_image_write_png(&img, path, err, sizeof err) != CNV_OK)
        fail_msg("%s", err);
    cnv_image_free(&img);
    assert_int_equal(run_script("run", cwd), 0);
}

static int setup(void **state)
{
    (void)state;
    if (access("tests/install_test.sh", R_OK) != 0) {
        fprintf(stderr, "run from the repository root\n");
        return -1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/cnv_install_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(example_matches_header),
        cmocka_unit_test(installed_library_builds),
        cmocka_unit_test(installed_example_runs),
        cmocka_unit_test(installed_example_runs_standin),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
