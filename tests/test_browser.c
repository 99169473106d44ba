/* cnnviz atlas in a browser: headless chromium opens a small atlas of the
 * default model (tests/browser/check_site.mjs, driven by playwright-core)
 * and finds no console error, no broken picture and no request leaving
 * the site; the same checker fails on a copy with a picture deleted and an
 * outside address added. Skips when node, /usr/bin/chromium or
 * tests/browser/node_modules/playwright-core are absent (.ci/run installs
 * them; docs/ATLAS.md, Browser test). Runs from the repository root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sitecheck.h"
#include "testutil.h"

#define CHECKER "node tests/browser/check_site.mjs"
#define CHROMIUM "/usr/bin/chromium"
#define PLAYWRIGHT "tests/browser/node_modules/playwright-core/package.json"

/* Whether the browser test can run here; prints why not. */
static int have_browser(void)
{
    const char *missing = NULL;
    if (tu_run("command -v node >/dev/null 2>&1", NULL) != 0)
        missing = "node is not on PATH (Debian: apt-get install nodejs npm)";
    else if (access(CHROMIUM, X_OK) != 0)
        missing = CHROMIUM " is absent (Debian: apt-get install chromium)";
    else if (access(PLAYWRIGHT, R_OK) != 0)
        missing = "playwright-core is not installed (npm install --prefix tests/browser --ignore-scripts)";
    if (missing)
        printf("skipping the browser test: %s\n", missing);
    return missing == NULL;
}

/* The value of the first attribute that starts with `start` (for example
 * `href="layer-`) in the file at path, into out. */
static void first_attr(const char *path, const char *start, char *out, size_t len)
{
    char *s = tu_read_text(path);
    const char *p = strstr(s, start);
    assert_non_null(p);
    p = strchr(p, '"') + 1;
    const char *e = strchr(p, '"');
    assert_non_null(e);
    assert_true((size_t)(e - p) < len);
    snprintf(out, len, "%.*s", (int)(e - p), p);
    free(s);
}

/* Runs the checker on site (with extra options); returns its exit status
 * and its output (owned by the caller). */
static int check(const char *site, const char *extra, char **out)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, CHECKER " '%s' %s 2>&1", site, extra);
    int rc = tu_run(cmd, out);
    printf("%s: exit %d\n%s", cmd, rc, *out);
    return rc;
}

static int is_png(const char *path)
{
    unsigned char b[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    return n == sizeof b && !memcmp(b, "\x89PNG\r\n\x1a\n", 8);
}

static int setup(void **state)
{
    (void)state;
    if (tu_scratch_make("cnv_browser_"))
        return -1;
    /* 3 channels of each layer with their negatives and a diversity
     * batch, the 10 classes, 3 test images, 16 steps: about 1 s */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bin/cnnviz sample --index 0 --count 3 -o '%s' >/dev/null", tu_scratch("images"));
    if (tu_run(cmd, NULL) != 0)
        return -1;
    snprintf(cmd, sizeof cmd,
             "bin/cnnviz atlas --quiet --no-time -m weights/fashion_mnist.onnx --per-layer 3 --diversity 1 "
             "--iters 16 --images '%s' -o '%s'",
             tu_scratch("images"), tu_scratch("site"));
    return tu_run(cmd, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return tu_scratch_remove();
}

static void test_site_is_clean(void **state)
{
    (void)state;
    if (!have_browser())
        skip();
    char *out, shots[256];
    snprintf(shots, sizeof shots, "--shots '%s'", tu_scratch("shots"));
    assert_int_equal(check(tu_scratch("site"), shots, &out), 0);
    /* every kind of page was opened: found by links, not by name */
    assert_non_null(strstr(out, "ok  index.html  0 images\n"));
    assert_non_null(strstr(out, "ok  classes.html  10 images\n"));
    assert_non_null(strstr(out, "ok  layer-"));
    assert_non_null(strstr(out, "ok  channel-"));
    assert_non_null(strstr(out, "ok  images.html  3 images\n"));
    assert_non_null(strstr(out, "ok  image-"));
    assert_non_null(strstr(out, "ok  class-"));
    assert_null(strstr(out, "FAIL"));
    free(out);
    const char *kinds[] = {"shots/index.png", "shots/classes.png", "shots/layer.png", "shots/channel.png"};
    for (int i = 0; i < 4; i++)
        assert_true(is_png(tu_scratch(kinds[i])));
}

static void test_broken_site_fails(void **state)
{
    (void)state;
    if (!have_browser())
        skip();
    char cmd[1024], layer[256], item[256], path[512];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", tu_scratch("site"), tu_scratch("broken"));
    assert_int_equal(tu_run(cmd, NULL), 0);
    /* the first picture of the first layer the index links */
    first_attr(tu_scratch("broken/index.html"), "href=\"layer-", layer, sizeof layer);
    snprintf(path, sizeof path, "%s/%s", tu_scratch("broken"), layer);
    first_attr(path, "<img src=\"", item, sizeof item);
    snprintf(path, sizeof path, "%s/%s", tu_scratch("broken"), item);
    assert_int_equal(unlink(path), 0);
    /* and a picture from outside on the classes page (port 9: discard;
     * the checker refuses the request before it leaves) */
    snprintf(cmd, sizeof cmd,
             "sed -i 's|</body>|<img src=\"http://127.0.0.1:9/x.png\" alt=\"x\">\\n</body>|' '%s'",
             tu_scratch("broken/classes.html"));
    assert_int_equal(tu_run(cmd, NULL), 0);

    char *out, want[640];
    assert_int_equal(check(tu_scratch("broken"), "", &out), 1);
    /* the layer page: 3 channels and a diversity batch */
    snprintf(want, sizeof want, "FAIL  %s  4 images, 1 problem:\n      broken image: %s (net::ERR_FILE_NOT_FOUND)\n",
             layer, item);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "FAIL  classes.html  11 images, 1 problem:\n"
                                "      request outside the site: http://127.0.0.1:9/x.png\n"));
    assert_non_null(strstr(out, "ok  index.html"));
    free(out);
}

static void test_usage_errors(void **state)
{
    (void)state;
    if (!have_browser())
        skip();
    const char *bad[] = {"", "--shots", "--frobnicate", tu_scratch("no-such-site"), "tests"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[512], *out;
        snprintf(cmd, sizeof cmd, CHECKER " %s 2>&1", bad[i]);
        int rc = tu_run(cmd, &out);
        printf("%s: exit %d\n%s", cmd, rc, out);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(out, "check_site: "));
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_site_is_clean),
        cmocka_unit_test(test_broken_site_fails),
        cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
