/* The proof of cnnviz atlas: the whole default model (every layer,
 * every channel with its negative, the diversity batches, all 10 classes)
 * and 300 Fashion-MNIST test images, with the command's defaults, then
 * every page checked: well formed, every link and picture a file of the
 * site, every channel page with its 8 image crops, every class page with
 * the images predicted as it. The time is printed, not asserted (docs/
 * ATLAS.md has the measurements). Runs bin/cnnviz from the repository
 * root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sitecheck.h"
#include "testutil.h"

#define IMAGES 300
/* 5 layers: 24 + 24 + 48 + 48 + 128 channels */
#define CHANNELS 272
#define ITEMS (2 * CHANNELS + 5 * 2 + 10 + IMAGES)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int count(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)) != NULL; p++)
        n++;
    return n;
}

static void test_full_default_model(void **state)
{
    (void)state;
    char cmd[2048], *out;
    snprintf(cmd, sizeof cmd, "bin/cnnviz sample --index 0 --count %d -o %s >/dev/null", IMAGES,
             tu_scratch("images"));
    assert_int_equal(tu_run(cmd, NULL), 0);
    char site[512];
    snprintf(site, sizeof site, "%s", tu_scratch("site"));
    double t0 = now();
    snprintf(cmd, sizeof cmd, "bin/cnnviz atlas --quiet --no-time --json --images %s -o %s", tu_scratch("images"), site);
    int rc = tu_run(cmd, &out);
    double secs = now() - t0;
    printf("%s\n%s", cmd, out);
    printf("the atlas of the default model with %d images: %.1f s\n", IMAGES, secs);
    assert_int_equal(rc, 0);
    char expect[128];
    snprintf(expect, sizeof expect, "\"items\": %d, \"layers\": 5, \"channels\": %d, \"classes\": 10, \"images\": %d",
             ITEMS, CHANNELS, IMAGES);
    assert_non_null(strstr(out, expect));
    assert_non_null(strstr(out, "\"missing\": 0"));
    free(out);
    /* index, classes and 10 class pages, images and an image page each,
     * the layers, the channels */
    assert_int_equal(tu_check_site(site), 2 + 10 + 1 + IMAGES + 5 + CHANNELS);
    /* every channel page shows 8 crops, each linking to an image's page */
    int pages = 0;
    const char *layers[] = {"14", "16", "19", "21", "25"};
    const int channels[] = {24, 24, 48, 48, 128};
    for (int l = 0; l < 5; l++)
        for (int c = 0; c < channels[l]; c++) {
            char name[600];
            snprintf(name, sizeof name, "%s/channel-%s-%d.html", site, layers[l], c);
            char *text = tu_read_text(name);
            assert_int_equal(count(text, "alt=\"crop\""), 8);
            assert_int_equal(count(text, "<a class=\"cell\" href=\"image-"), 8);
            assert_non_null(strstr(text, "alt=\"negative\""));
            free(text);
            pages++;
        }
    assert_int_equal(pages, CHANNELS);
    /* the classes' pages together list every image once as predicted */
    int predicted = 0;
    for (int k = 0; k < 10; k++) {
        char name[600];
        snprintf(name, sizeof name, "%s/class-%d.html", site, k);
        char *text = tu_read_text(name);
        const char *p = strstr(text, "Images predicted as this class</h2>\n<p>");
        assert_non_null(p);
        predicted += atoi(p + strlen("Images predicted as this class</h2>\n<p>"));
        free(text);
    }
    assert_int_equal(predicted, IMAGES);
}

static int setup(void **state)
{
    (void)state;
    return tu_scratch_make("cnv_atlas_full_") ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_scratch_remove();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_default_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
