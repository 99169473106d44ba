/* The architecture, checked on the sources (README.md, "Architecture"):
 * every #include of src/ points down the layers, the layers above the
 * engine reach it only through engine/engine.h (and the ONNX code through
 * its model representation), and no op type is compared by name outside
 * the registry and the ONNX reader. Run from the repository root. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "engine/op.h"

/* A source file's layer: its folder under src/ ("engine/ops" apart). */
static void layer_of(const char *path, char *layer, size_t len)
{
    const char *p = path + strlen("src/");
    const char *slash = strrchr(p, '/');
    snprintf(layer, len, "%.*s", (int)(slash - p), p);
}

/* Which headers a layer may include, by prefix. */
static int allowed(const char *layer, const char *inc)
{
    static const struct {
        const char *layer;
        const char *may[6];
    } rules[] = {
        {"core", {"core/"}},
        {"engine", {"core/", "engine/"}},
        {"engine/ops", {"core/", "engine/"}},
        {"onnx", {"core/", "onnx/", "engine/model.h"}},
        {"image", {"core/", "image/", "engine/engine.h"}},
        {"viz", {"core/", "viz/", "engine/engine.h"}},
        {"train", {"core/", "train/", "engine/engine.h"}},
    };
    if (!strcmp(inc, "cnnviz.h"))
        return 1;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        if (strcmp(rules[i].layer, layer))
            continue;
        for (int k = 0; k < 6 && rules[i].may[k]; k++)
            if (!strncmp(inc, rules[i].may[k], strlen(rules[i].may[k])))
                /* the engine proper does not reach into its ops */
                return !(strcmp(layer, "engine") == 0 && !strncmp(inc, "engine/ops/", 11));
        return 0;
    }
    return 0; /* a folder the rules do not know */
}

typedef struct scan {
    int files, includes, bad, compares;
} scan;

static int op_name_compared(const char *line)
{
    if (!strstr(line, "strcmp") && !strstr(line, "strcasecmp"))
        return 0;
    char quoted[64];
    for (int i = 0; i < cnv_op_count(); i++) {
        snprintf(quoted, sizeof quoted, "\"%s\"", cnv_op_at(i)->type);
        if (strstr(line, quoted))
            return 1;
    }
    return 0;
}

static void check_file(const char *path, scan *s)
{
    char layer[64], line[1024];
    layer_of(path, layer, sizeof layer);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int may_compare = !strcmp(path, "src/engine/registry.c") || !strcmp(path, "src/onnx/read.c");
    for (int ln = 1; fgets(line, sizeof line, f); ln++) {
        char inc[256];
        if (sscanf(line, " #include \"%255[^\"]\"", inc) == 1) {
            s->includes++;
            if (!allowed(layer, inc)) {
                printf("%s:%d: layer %s includes \"%s\"\n", path, ln, layer, inc);
                s->bad++;
            }
        }
        if (!may_compare && op_name_compared(line)) {
            printf("%s:%d: compares an op type by name: %s", path, ln, line);
            s->compares++;
        }
    }
    fclose(f);
    s->files++;
}

static void walk(const char *dir, scan *s)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        size_t n = strlen(path);
        if (S_ISDIR(sb.st_mode))
            walk(path, s);
        else if (n > 2 && path[n - 2] == '.' && (path[n - 1] == 'c' || path[n - 1] == 'h'))
            check_file(path, s);
    }
    closedir(d);
}

static void includes_point_down(void **state)
{
    (void)state;
    scan s = {0, 0, 0, 0};
    walk("src", &s);
    printf("%d files, %d includes; %d against the layers, %d op types compared by name\n", s.files, s.includes,
           s.bad, s.compares);
    assert_true(s.files > 40 && s.includes > 80);
    assert_int_equal(s.bad, 0);
    assert_int_equal(s.compares, 0);
    /* nothing loose in src/ itself */
    DIR *d = opendir("src");
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300];
        struct stat sb;
        snprintf(path, sizeof path, "src/%s", e->d_name);
        if (e->d_name[0] != '.' && stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode))
            fail_msg("src/%s is outside every layer", e->d_name);
    }
    closedir(d);
}

/* The checker itself: a rule broken on purpose is found. */
static void the_rules_bite(void **state)
{
    (void)state;
    assert_false(allowed("engine", "viz/viz.h"));
    assert_false(allowed("engine", "engine/ops/window.h"));
    assert_true(allowed("engine/ops", "engine/ops/window.h"));
    assert_false(allowed("core", "engine/model.h"));
    assert_false(allowed("viz", "engine/session.h"));
    assert_false(allowed("viz", "image/image.h"));
    assert_true(allowed("viz", "engine/engine.h"));
    assert_false(allowed("train", "engine/op.h"));
    assert_false(allowed("nowhere", "core/base.h"));
    assert_true(op_name_compared("    if (!strcmp(n->op_type, \"Relu\"))"));
    assert_false(op_name_compared("    add_node(m, \"Relu\", \"relu1\");"));
    assert_false(op_name_compared("    if (!strcmp(a, b))"));
}

int main(void)
{
    if (access("src/engine/op.h", R_OK) != 0) {
        fprintf(stderr, "run from the repository root\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(includes_point_down),
        cmocka_unit_test(the_rules_bite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
