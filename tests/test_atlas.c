/* cnnviz atlas end to end on the default model (a few channels of every
 * layer, every class, six test images and a broken one, few steps): every
 * link and picture of every page resolves inside the site, every page is
 * well formed, the images that excite a channel most are those the engine
 * finds on its own, shards plus a merge and an interrupted run plus
 * --resume give the same bytes as one run. Runs bin/cnnviz from the
 * repository root (make test builds it first). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "cnnviz.h"
#include "sitecheck.h"
#include "testutil.h"

#define CNNVIZ "bin/cnnviz atlas --quiet --no-time"
#define MODEL "weights/fashion_mnist.onnx"
/* 3 channels of each of the 5 layers with their negatives, a diversity
 * batch per layer, the 10 classes and 7 images: 52 items */
#define SUBSET "--layers all --per-layer 3 --classes all --iters 16 --diversity 1"
#define N_IMAGES 7
#define N_ITEMS (15 + 15 + 5 + 10 + N_IMAGES)

static char g_images[512]; /* the images' directory */

/* The integer after "key": in a JSON text (-1 for null). */
static int json_int(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(json, pat);
    assert_non_null(p);
    p += strlen(pat);
    return strncmp(p, "null", 4) ? atoi(p) : -1;
}

/* The JSON summary of a run. */
typedef struct summary {
    int items, shard_items, rendered, skipped, missing; /* missing -1: null */
} summary;

/* Runs the atlas of the model at model_path (NULL: MODEL) with extra
 * options into site, checks that it exits with 0, and returns its summary. */
static summary atlas_of(const char *model_path, const char *site, const char *extra)
{
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, CNNVIZ " -m %s " SUBSET " --images %s --json -o %s %s", model_path ? model_path : MODEL,
             g_images, site, extra);
    int rc = tu_run(cmd, &out);
    printf("%s\n%s", cmd, out);
    assert_int_equal(rc, 0);
    summary r = {json_int(out, "items"), json_int(out, "shard_items"), json_int(out, "rendered"),
                 json_int(out, "skipped"), json_int(out, "missing")};
    free(out);
    return r;
}

static summary atlas(const char *site, const char *extra)
{
    return atlas_of(NULL, site, extra);
}


static int setup(void **state)
{
    (void)state;
    if (tu_scratch_make("cnv_atlas_"))
        return -1;
    /* six test images, and a file that is no image */
    snprintf(g_images, sizeof g_images, "%s", tu_scratch("images"));
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bin/cnnviz sample --index 0 --count 6 -o %s >/dev/null", tu_scratch("images"));
    if (tu_run(cmd, NULL) != 0)
        return -1;
    FILE *f = fopen(tu_scratch("images/broken.png"), "wb");
    if (!f)
        return -1;
    fputs("\x89PNG\r\n\x1a\nnot really", f);
    fclose(f);
    /* the reference: one plain run */
    summary r = atlas(tu_scratch("plain"), "");
    return r.items == N_ITEMS && r.rendered == N_ITEMS && r.skipped == 0 && r.missing == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return tu_scratch_remove();
}

/* Whether a page of the plain site has text (want 1) or not (want 0). */
static void page_has(const char *page, const char *text, int want)
{
    char name[128];
    snprintf(name, sizeof name, "plain/%s", page);
    char *s = tu_read_text(tu_scratch(name));
    if ((strstr(s, text) != NULL) != want)
        printf("%s: '%s' %s\n", page, text, want ? "is missing" : "is there");
    assert_int_equal(strstr(s, text) != NULL, want);
    free(s);
}

static void test_pages(void **state)
{
    (void)state;
    const char *site = tu_scratch("plain");
    /* index, classes and 10 class pages, images and 7 image pages, 5
     * layers and their 15 channels */
    assert_int_equal(tu_check_site(site), 2 + 10 + 1 + N_IMAGES + 5 + 15);
    const char *items = tu_scratch("plain/items");
    /* pictures, negatives, diversity batches, class models; each image
     * its record, input and two maps (the broken one its record alone) */
    assert_int_equal(tu_count_prefixed(items, "n"), 15);
    assert_int_equal(tu_count_prefixed(items, "g"), 15);
    assert_int_equal(tu_count_prefixed(items, "d"), 5);
    assert_int_equal(tu_count_prefixed(items, "c"), 10);
    assert_int_equal(tu_count_prefixed(items, "i"), 6 * 4 + 1);
    int crops = tu_count_prefixed(items, "x");
    assert_true(crops > 0 && crops <= 15 * 6);
    /* the overview counts the parameters as 'cnnviz info' does */
    page_has("index.html", "<th colspan=\"4\">total</th><td class=\"n\">339122</td>", 1);
    page_has("index.html", "--iters 16 --seed 0 --diversity 1</code>", 1);
    page_has("index.html", "Pages built", 0);
    page_has("classes.html", "9 Ankle boot", 1);
    /* image 0 of the test set is an ankle boot the model gets right: its
     * page, and the class's page, which shows it with its maps (broken.png
     * is image 0: names are sorted) */
    page_has("class-9.html", "href=\"image-1.html\"", 1);
    page_has("class-9.html", ".s0.png", 1);
    page_has("class-9.html", ".s1.png", 1);
    page_has("image-1.html", "<h1>t10k-00000.png</h1>", 1);
    page_has("image-1.html", "<a href=\"class-9.html\">9 Ankle boot</a>", 1);
    /* the file that is no image: its page says so, the run went on */
    page_has("image-0.html", "cannot read the image", 1);
    char cmd[1024], *out;
    /* a bare merge of the plain site (its manifest): the same pages, and
     * the unreadable file counted */
    snprintf(cmd, sizeof cmd, CNNVIZ " --merge --json -o %s", tu_scratch("plain"));
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "\"missing\": 0, \"unreadable\": 1,"));
    free(out);
    /* each layer's receptive field, as the architecture gives it: 3x3
     * convolutions (padding 1) and 2x2 max pools (stride 2): relu1 3,
     * relu2 3 + 2 = 5, after pool1 6 with a step of 2, relu3 6 + 2 x 2 =
     * 10, relu4 14 */
    const struct {
        int t;
        const char *name, *field;
    } rf[] = {{14, "relu1", "3x3"}, {16, "relu2", "5x5"}, {19, "relu3", "10x10"}, {21, "relu4", "14x14"}};
    for (int i = 0; i < 4; i++) {
        char page[64], want[64];
        snprintf(page, sizeof page, "plain/channel-%d-0.html", rf[i].t);
        char *ch = tu_read_text(tu_scratch(page));
        snprintf(want, sizeof want, "<h1>%s, channel 0</h1>", rf[i].name);
        assert_non_null(strstr(ch, want));
        snprintf(want, sizeof want, "receptive field, %s pixels", rf[i].field);
        assert_non_null(strstr(ch, want));
        free(ch);
    }
}

/* The images a channel page lists as exciting it most, in order, against
 * the engine run on each image here: the largest value of the channel
 * over its positions, largest first (ties: the earlier file). */
static void test_top_images(void **state)
{
    (void)state;
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    cnv_preprocess pp;
    char err[256];
    assert_int_equal(cnv_model_load_onnx(MODEL, &m), CNV_OK);
    assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_OK);
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_plan(s, 1, pp.height, pp.width), CNV_OK);
    const char *layers[] = {"relu2", "relu4"};
    for (int li = 0; li < 2; li++) {
        int t = cnv_model_tensor_index(m, layers[li]);
        assert_true(t >= 0);
        for (int c = 0; c < 3; c++) {
            float best[6];
            for (int k = 0; k < 6; k++) {
                char name[64];
                snprintf(name, sizeof name, "images/t10k-%05d.png", k);
                cnv_image img = {0};
                assert_int_equal(cnv_image_load(tu_scratch(name), &img, err, sizeof err), CNV_OK);
                assert_int_equal(cnv_session_set_image(s, 0, &img, &pp), CNV_OK);
                cnv_image_free(&img);
                assert_int_equal(cnv_session_forward(s), CNV_OK);
                float *x;
                cnv_shape sh;
                assert_int_equal(cnv_session_tensor(s, t, &x, &sh), CNV_OK);
                size_t hw = (size_t)sh.dims[2] * sh.dims[3];
                best[k] = x[(size_t)c * hw];
                for (size_t i = 1; i < hw; i++)
                    best[k] = x[(size_t)c * hw + i] > best[k] ? x[(size_t)c * hw + i] : best[k];
            }
            char page[64], *text;
            snprintf(page, sizeof page, "plain/channel-%d-%d.html", t, c);
            text = tu_read_text(tu_scratch(page));
            const char *p = strstr(text, "Images that excite it most");
            assert_non_null(p);
            int used[6] = {0};
            printf("%s channel %d:", layers[li], c);
            for (int r = 0; r < 6; r++) {
                int top = -1;
                for (int k = 0; k < 6; k++)
                    if (!used[k] && (top < 0 || best[k] > best[top]))
                        top = k;
                used[top] = 1;
                /* the page numbers images by file name: broken.png is 0 */
                char link[64];
                snprintf(link, sizeof link, "href=\"image-%d.html\"", top + 1);
                p = strstr(p, "<a class=\"cell\" href=");
                assert_non_null(p);
                printf(" %d (%.4g)", top + 1, (double)best[top]);
                assert_memory_equal(p + strlen("<a class=\"cell\" "), link, strlen(link));
                p++;
            }
            printf("\n");
            free(text);
        }
    }
    cnv_session_free(s);
    cnv_model_free(m);
}

static void test_shards_then_merge(void **state)
{
    (void)state;
    const char *site = tu_scratch("sharded");
    int rendered = 0;
    for (int i = 0; i < 3; i++) {
        char extra[128];
        /* another path to the same model file: the pages name the file
         * alone, as on the machines of a sharded run */
        snprintf(extra, sizeof extra, "--shard %d/3", i);
        summary r = atlas_of(i == 1 ? "./weights/../" MODEL : NULL, site, extra);
        rendered += r.rendered;
        assert_int_equal(r.shard_items, (N_ITEMS - i + 2) / 3);
        assert_int_equal(r.missing, -1);
    }
    assert_int_equal(rendered, N_ITEMS);
    /* items/ and the manifest: shards write no page */
    assert_int_equal(tu_count_files(site), 2);
    summary r = atlas(site, "--merge");
    assert_int_equal(r.rendered, 0);
    assert_int_equal(r.missing, 0);
    tu_assert_same_site(tu_scratch("plain"), site);
}

static void test_interrupted_then_resumed(void **state)
{
    (void)state;
    const char *site = tu_scratch("resumed");
    /* the first half of the work done, as by a run killed halfway */
    atlas(site, "--shard 0/2");
    summary r = atlas(site, "--resume");
    assert_int_equal(r.skipped, (N_ITEMS + 1) / 2);
    assert_int_equal(r.rendered, N_ITEMS / 2);
    tu_assert_same_site(tu_scratch("plain"), site);
    /* nothing left to do: --resume renders nothing and changes nothing */
    r = atlas(site, "--resume");
    assert_int_equal(r.rendered, 0);
    assert_int_equal(r.skipped, N_ITEMS);
    tu_assert_same_site(tu_scratch("plain"), site);
}

/* A run killed by SIGKILL partway, then --resume: the same site as one
 * uninterrupted run (files are whole or absent; the merge removes what
 * the killed process left half written). */
static void test_killed_then_resumed(void **state)
{
    (void)state;
    char site[512], items[600], cmd[2048];
    snprintf(site, sizeof site, "%s", tu_scratch("killed"));
    snprintf(items, sizeof items, "%s/items", site);
    snprintf(cmd, sizeof cmd, "exec " CNNVIZ " -m " MODEL " " SUBSET " --images %s -o %s", g_images, site);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* kill it once a fifth of the items are there */
    int files = 0, status, exited = 0;
    for (int tries = 0; tries < 30000 && files < 12 && !exited; tries++) {
        nanosleep(&(struct timespec){0, 2000000}, NULL);
        struct stat st;
        files = stat(items, &st) == 0 ? tu_count_files(items) : 0;
        exited = waitpid(pid, &status, WNOHANG) == pid;
    }
    if (!exited) {
        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &status, 0), pid);
    }
    printf("killed after %d files in items/ (%s)\n", files,
           WIFSIGNALED(status) ? "by SIGKILL" : "it had finished first: nothing to resume");
    assert_false(tu_is_file(tu_scratch("killed/index.html")));
    /* what a process killed while writing leaves (whether or not this one
     * did), and a live process's work in progress (this test's) */
    char dead[2][700], live[700];
    snprintf(dead[0], sizeof dead[0], "%s/.cnv%ld-99.tmp", items, (long)pid);
    snprintf(dead[1], sizeof dead[1], "%s/.rec%ld-i0123.tmp", items, (long)pid);
    snprintf(live, sizeof live, "%s/.cnv%ld-7.tmp", items, (long)getpid());
    for (int i = 0; i < 3; i++) {
        FILE *f = fopen(i < 2 ? dead[i] : live, "w");
        assert_non_null(f);
        fputs("half", f);
        fclose(f);
    }
    summary r = atlas(site, "--resume");
    assert_int_equal(r.skipped + r.rendered, N_ITEMS);
    assert_false(tu_is_file(dead[0]));
    assert_false(tu_is_file(dead[1]));
    assert_true(tu_is_file(live));
    remove(live);
    tu_assert_same_site(tu_scratch("plain"), site);
}

static void test_merge_marks_missing(void **state)
{
    (void)state;
    const char *site = tu_scratch("partial");
    atlas(site, "--shard 1/2");
    summary r = atlas(site, "--merge");
    assert_int_equal(r.missing, (N_ITEMS + 1) / 2);
    tu_check_site(site); /* a missing picture links nowhere */
    char *index = tu_read_text(tu_scratch("partial/index.html"));
    assert_non_null(strstr(index, "(26 missing)"));
    free(index);
}

static void test_manifest(void **state)
{
    (void)state;
    char site[512];
    snprintf(site, sizeof site, "%s", tu_scratch("bare"));
    atlas(site, "--shard 0/2");
    atlas(site, "--shard 1/2");
    /* a merge given only the site takes the options from its manifest */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, CNNVIZ " --merge -o %s", site);
    assert_int_equal(tu_run(cmd, NULL), 0);
    tu_assert_same_site(tu_scratch("plain"), site);
    /* a shard, resume or merge with other options is refused, and writes
     * nothing */
    const char *other[] = {"--shard 0/2 --top 3", "--resume --no-negatives", "--merge --seed 1"};
    for (int i = 0; i < 3; i++) {
        char *out;
        snprintf(cmd, sizeof cmd, CNNVIZ " -m " MODEL " " SUBSET " --images %s -o %s %s 2>&1", g_images, site,
                 other[i]);
        int rc = tu_run(cmd, &out);
        printf("%s: %d %s", other[i], rc, out);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(out, "was made with other options"));
        free(out);
    }
    tu_assert_same_site(tu_scratch("plain"), site);
}

static void test_one_thread_same_bytes(void **state)
{
    (void)state;
    /* one thread per picture by default, so that shards on machines with
     * other core counts make the same bytes (a GEMM split between threads
     * rounds differently) */
    const char *site = tu_scratch("threads1");
    atlas(site, "--threads 1");
    tu_assert_same_site(tu_scratch("plain"), site);
}

static void test_usage_errors(void **state)
{
    (void)state;
    const char *bad[] = {
        CNNVIZ " --merge --shard 0/2 -o /tmp/cnv_atlas_never",
        CNNVIZ " --shard 3/3 -o /tmp/cnv_atlas_never",
        CNNVIZ " --shard 1 -o /tmp/cnv_atlas_never",
        CNNVIZ " --per-layer 0 -o /tmp/cnv_atlas_never",
        CNNVIZ " --layers relu1,relu1 -o /tmp/cnv_atlas_never",
        CNNVIZ " --images weights --saliency ig -o /tmp/cnv_atlas_never",
        CNNVIZ " --images weights --saliency ig,nope -o /tmp/cnv_atlas_never",
        CNNVIZ " --images weights --saliency ig,eigencam -o /tmp/cnv_atlas_never",
        CNNVIZ " --merge -o /tmp/cnv_atlas_never",
        CNNVIZ,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s 2>&1", bad[i]);
        char *out;
        int rc = tu_run(cmd, &out);
        printf("%s: %d %s", bad[i], rc, out);
        free(out);
        assert_int_equal(rc, 2);
    }
    assert_false(tu_is_file("/tmp/cnv_atlas_never/index.html"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages),
        cmocka_unit_test(test_top_images),
        cmocka_unit_test(test_manifest),
        cmocka_unit_test(test_shards_then_merge),
        cmocka_unit_test(test_interrupted_then_resumed),
        cmocka_unit_test(test_killed_then_resumed),
        cmocka_unit_test(test_merge_marks_missing),
        cmocka_unit_test(test_one_thread_same_bytes),
        cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
