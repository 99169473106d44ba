/* cnnviz atlas end to end on the default model (a few channels of every
 * layer, every class, few steps): every link and picture of every page
 * resolves inside the site, every page is well formed, shards plus a merge
 * and an interrupted run plus --resume give the same bytes as one run.
 * Runs bin/cnnviz from the repository root (make test builds it first). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"

#define CNNVIZ "bin/cnnviz atlas --quiet --no-time"
#define MODEL "weights/fashion_mnist.onnx"
/* 3 channels of each of the 5 layers and the 10 classes: 25 items */
#define SUBSET "--layers all --per-layer 3 --classes all --iters 16"
#define N_ITEMS 25

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
    snprintf(cmd, sizeof cmd, CNNVIZ " -m %s " SUBSET " --json -o %s %s", model_path ? model_path : MODEL, site,
             extra);
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


static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_void(const char *tag)
{
    static const char *const v[] = {"meta", "link", "img", "br", "hr", "input", NULL};
    for (int i = 0; v[i]; i++)
        if (!strcmp(tag, v[i]))
            return 1;
    return 0;
}

/* Well formed for the elements the atlas writes: a doctype, then tags
 * whose non-void elements close in order, attribute values quoted, and
 * the whole inside one <html> element. Returns 0, or prints why and
 * returns 1. Every href and src must name a file in dir (no URL). */
static int check_page(const char *dir, const char *name, int *links)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *s = read_text(path);
    int bad = 0, depth = 0, closed_html = 0;
    char stack[64][16];
    if (strncmp(s, "<!DOCTYPE html>\n", 16)) {
        printf("%s: no doctype\n", name);
        bad = 1;
    }
    const char *p = s + (strncmp(s, "<!DOCTYPE", 9) ? 0 : 9);
    for (; !bad && (p = strchr(p, '<')) != NULL;) {
        if (!strncmp(p, "<!DOCTYPE", 9)) {
            bad = p != s;
            p++;
            continue;
        }
        if (closed_html) {
            printf("%s: a tag after </html>\n", name);
            bad = 1;
            break;
        }
        int closing = p[1] == '/';
        const char *q = p + 1 + closing;
        char tag[16];
        size_t n = 0;
        while ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9'))
            if (n + 1 < sizeof tag)
                tag[n++] = *q++;
            else
                q++;
        tag[n] = '\0';
        if (!n) {
            printf("%s: a '<' that starts no tag\n", name);
            bad = 1;
            break;
        }
        /* attributes: name="value" ... up to '>' */
        while (*q && *q != '>') {
            if (*q == '<') {
                printf("%s: '<' inside the tag <%s>\n", name, tag);
                bad = 1;
                break;
            }
            if (*q == '=') {
                if (q[1] != '"') {
                    printf("%s: an unquoted attribute in <%s>\n", name, tag);
                    bad = 1;
                    break;
                }
                const char *v = q + 2, *e = strchr(v, '"');
                if (!e) {
                    printf("%s: an unterminated attribute in <%s>\n", name, tag);
                    bad = 1;
                    break;
                }
                int is_link = (q - p > 5 && !strncmp(q - 4, "href", 4)) || (q - p > 4 && !strncmp(q - 3, "src", 3));
                if (is_link) {
                    char target[512], full[1100];
                    snprintf(target, sizeof target, "%.*s", (int)(e - v), v);
                    char *hash = strchr(target, '#');
                    if (hash)
                        *hash = '\0';
                    snprintf(full, sizeof full, "%s/%s", dir, target);
                    if (strchr(target, ':') || target[0] == '/' || !target[0] || !is_file(full)) {
                        printf("%s: the link '%s' names no file of the site\n", name, target);
                        bad = 1;
                    }
                    (*links)++;
                }
                q = e + 1;
                continue;
            }
            q++;
        }
        if (bad)
            break;
        if (!*q) {
            printf("%s: an unterminated tag <%s\n", name, tag);
            bad = 1;
            break;
        }
        if (closing) {
            if (depth == 0 || strcmp(stack[depth - 1], tag)) {
                printf("%s: </%s> closes <%s>\n", name, tag, depth ? stack[depth - 1] : "nothing");
                bad = 1;
                break;
            }
            depth--;
            closed_html = depth == 0;
        } else if (!is_void(tag)) {
            if (depth == 0 && strcmp(tag, "html")) {
                printf("%s: <%s> outside <html>\n", name, tag);
                bad = 1;
                break;
            }
            if (depth == 64) {
                printf("%s: nested too deep\n", name);
                bad = 1;
                break;
            }
            snprintf(stack[depth++], sizeof stack[0], "%s", tag);
        }
        p = q + 1;
    }
    if (!bad && (depth || !closed_html)) {
        printf("%s: %d elements left open\n", name, depth);
        bad = 1;
    }
    free(s);
    return bad;
}

/* Checks every page of a site; returns how many there are. */
static int check_site(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int pages = 0, bad = 0, links = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        assert_null(strstr(e->d_name, ".tmp")); /* no temporary file left */
        if (n > 5 && !strcmp(e->d_name + n - 5, ".html")) {
            bad += check_page(dir, e->d_name, &links);
            pages++;
        }
    }
    closedir(d);
    printf("%s: %d pages, %d links and pictures checked\n", dir, pages, links);
    assert_int_equal(bad, 0);
    assert_true(links > pages);
    return pages;
}

/* Whether two sites hold the same files with the same bytes. */
static void assert_same_site(const char *a, const char *b)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "diff -r '%s' '%s'", a, b);
    assert_int_equal(tu_run(cmd, NULL), 0);
}

static int count_files(const char *dir)
{
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, "ls '%s' | wc -l", dir);
    assert_int_equal(tu_run(cmd, &out), 0);
    int n = atoi(out);
    free(out);
    return n;
}

static int setup(void **state)
{
    (void)state;
    if (tu_scratch_make("cnv_atlas_"))
        return -1;
    /* the reference: one plain run */
    summary r = atlas(tu_scratch("plain"), "");
    return r.items == N_ITEMS && r.rendered == N_ITEMS && r.skipped == 0 && r.missing == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return tu_scratch_remove();
}

static void test_pages(void **state)
{
    (void)state;
    const char *site = tu_scratch("plain");
    /* index, classes, 5 layers and their 15 channels */
    assert_int_equal(check_site(site), 2 + 5 + 15);
    assert_int_equal(count_files(tu_scratch("plain/items")), N_ITEMS);
    /* the overview counts the parameters as 'cnnviz info' does */
    char *index = read_text(tu_scratch("plain/index.html"));
    assert_non_null(strstr(index, "<th colspan=\"5\">total</th><td class=\"n\">339122</td>"));
    assert_non_null(strstr(index, "--iters 16 --seed 0</code>"));
    assert_null(strstr(index, "Pages built"));
    free(index);
    char *classes = read_text(tu_scratch("plain/classes.html"));
    assert_non_null(strstr(classes, "9 Ankle boot"));
    free(classes);
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
    assert_int_equal(count_files(site), 1); /* items/ alone: shards write no page */
    summary r = atlas(site, "--merge");
    assert_int_equal(r.rendered, 0);
    assert_int_equal(r.missing, 0);
    assert_same_site(tu_scratch("plain"), site);
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
    assert_same_site(tu_scratch("plain"), site);
    /* nothing left to do: --resume renders nothing and changes nothing */
    r = atlas(site, "--resume");
    assert_int_equal(r.rendered, 0);
    assert_int_equal(r.skipped, N_ITEMS);
    assert_same_site(tu_scratch("plain"), site);
}

static void test_merge_marks_missing(void **state)
{
    (void)state;
    const char *site = tu_scratch("partial");
    atlas(site, "--shard 1/2");
    summary r = atlas(site, "--merge");
    assert_int_equal(r.missing, (N_ITEMS + 1) / 2);
    check_site(site); /* a missing picture links nowhere */
    char *index = read_text(tu_scratch("partial/index.html"));
    assert_non_null(strstr(index, "(13 missing)"));
    free(index);
}

static void test_one_thread_same_bytes(void **state)
{
    (void)state;
    /* one thread per picture by default, so that shards on machines with
     * other core counts make the same bytes (a GEMM split between threads
     * rounds differently) */
    const char *site = tu_scratch("threads1");
    atlas(site, "--threads 1");
    assert_same_site(tu_scratch("plain"), site);
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
    assert_false(is_file("/tmp/cnv_atlas_never/index.html"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages),
        cmocka_unit_test(test_shards_then_merge),
        cmocka_unit_test(test_interrupted_then_resumed),
        cmocka_unit_test(test_merge_marks_missing),
        cmocka_unit_test(test_one_thread_same_bytes),
        cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
