/* ONNX conformance: runs the ONNX project's own node test cases
 * (/usr/share/libonnx-testdata/data/node/<case>/model.onnx with
 * test_data_set_0/{input,output}_N.pb) for the ops this engine implements.
 * One cmocka test per case: passed, skipped (outside the engine's scope:
 * refused with UNSUPPORTED at load, or refused at planning; the reason is
 * the library's message) or failed (runs but gives wrong numbers or shapes,
 * or a valid file is refused at load as malformed).
 *
 * Outputs match when |got - want| <= 1e-4 + 1e-4 * |want| (NaN matches
 * NaN). Integer inputs (Reshape's shape, Pad's pads) become constants of the
 * model, since a float engine has no integer inputs at run time; so do
 * Resize's and Upsample's roi and scales (see plan_params).
 *
 * CNV_WRITE_DOCS=1 also rewrites the table in docs/ONNX.md between its
 * CONFORMANCE markers. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "engine/op.h"
#include "engine/session.h"
#include "onnx/onnx.h"

#define NODE_DIR "/usr/share/libonnx-testdata/data/node"
#define ABS_TOL 1e-4
#define REL_TOL 1e-4
#define MAX_IO 8

/* A case is wanted when its name is one of these or one of these then
 * "_..." ("test_exp_example", not "test_expand"). */
static const char *const g_prefixes[] = {
    "test_conv", "test_maxpool", "test_averagepool", "test_globalaveragepool", "test_relu",
    "test_gemm", "test_concat", "test_flatten", "test_reshape", "test_softmax", "test_dropout",
    "test_batchnorm", "test_add", "test_pad", "test_constant", "test_identity",
    "test_clip", "test_sigmoid", "test_hardsigmoid", "test_hardswish", "test_tanh", "test_leakyrelu",
    "test_elu", "test_selu", "test_celu", "test_softplus", "test_softsign", "test_thresholdedrelu",
    "test_gelu", "test_erf", "test_sqrt", "test_exp", "test_log", "test_neg", "test_reciprocal",
    "test_abs", "test_sub", "test_mul", "test_div", "test_pow", "test_prelu", "test_sum", "test_mean",
    "test_max", "test_min",
    "test_matmul", "test_transpose",
    "test_lrn", "test_layer_normalization", "test_instancenorm", "test_logsoftmax",
    "test_reduce_sum", "test_reduce_mean", "test_reduce_sum_square", "test_reduce_l2",
    "test_reduce_max", "test_reduce_min", "test_globalmaxpool",
    "test_convtranspose", "test_resize", "test_upsample",
    "test_shape", "test_size", "test_constantofshape", "test_range", "test_equal", "test_where",
    "test_cast", "test_gather", "test_squeeze", "test_unsqueeze", "test_slice", "test_split",
    "test_expand", "test_tile"};

enum { R_PASS, R_SKIP, R_FAIL };

typedef struct ccase {
    char name[96];
    int result;
    char reason[CNV_ERR_LEN + 64];
    double max_err;  /* worst |got - want| / (ABS_TOL + REL_TOL |want|) over outputs */
    double max_abs;  /* worst |got - want| */
    int64_t values;  /* output values compared */
} ccase;

static ccase *g_cases;
static int g_n_cases;

/* A decoded .pb tensor. */
typedef struct pbt {
    cnv_dtype dtype;
    cnv_shape shape;
    void *values;
} pbt;

/* Reads dir/test_data_set_0/<kind>_<k>.pb; 1 on success, 0 if absent, -1
 * with err filled when it cannot be read. */
static int read_pb(const char *dir, const char *kind, int k, pbt *t, char *err, size_t errlen)
{
    char path[640];
    snprintf(path, sizeof path, "%s/test_data_set_0/%s_%d.pb", dir, kind, k);
    if (access(path, F_OK) != 0)
        return 0;
    void *data;
    size_t size;
    cnv_err e;
    if (cnv_read_file(path, (size_t)1 << 30, &data, &size, &e) != CNV_OK) {
        snprintf(err, errlen, "%s", e.msg);
        return -1;
    }
    char msg[CNV_ERR_LEN];
    cnv_status st = cnv_tensor_read_pb(data, size, &t->dtype, &t->shape, &t->values, NULL, msg, sizeof msg);
    cnv_free(data);
    if (st != CNV_OK) {
        snprintf(err, errlen, "%s_%d.pb: %.400s", kind, k, msg);
        return -1;
    }
    return 1;
}

#define SKIP(...)                                               \
    do {                                                        \
        c->result = R_SKIP;                                     \
        snprintf(c->reason, sizeof c->reason, __VA_ARGS__);     \
        goto done;                                              \
    } while (0)
#define FAIL(...)                                               \
    do {                                                        \
        c->result = R_FAIL;                                     \
        snprintf(c->reason, sizeof c->reason, __VA_ARGS__);     \
        goto done;                                              \
    } while (0)

/* Valid files refused as malformed or with a shape error are the
 * engine's fault, not out of scope. */
static int is_scope(cnv_status st)
{
    return st == CNV_ERR_UNSUPPORTED;
}

/* Resize's and Upsample's float inputs after X (roi, scales) set the
 * output's shape, so the engine needs them when planning; a real model
 * has them as constants, ONNX's tests as inputs: they become constants. */
static int plan_params(const char *name)
{
    static const char *const ops[] = {"test_resize_", "test_upsample_"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strncmp(name, ops[i], strlen(ops[i])) == 0)
            return 1;
    return 0;
}

static void run_case(ccase *c)
{
    char dir[512], err[CNV_ERR_LEN];
    pbt ins[MAX_IO], outs[MAX_IO];
    int n_in = 0, n_out = 0;
    void *model = NULL;
    size_t model_size;
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    cnv_err e;
    cnv_status st;

    memset(ins, 0, sizeof ins);
    memset(outs, 0, sizeof outs);
    c->result = R_PASS;
    c->reason[0] = '\0';
    snprintf(dir, sizeof dir, "%s/%s", NODE_DIR, c->name);

    char path[600];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if ((st = cnv_read_file(path, CNV_ONNX_MAX_FILE, &model, &model_size, &e)) != CNV_OK)
        FAIL("%s", e.msg);

    int rc;
    while (n_in < MAX_IO && (rc = read_pb(dir, "input", n_in, &ins[n_in], err, sizeof err)) == 1)
        n_in++;
    if (rc >= 0)
        while (n_out < MAX_IO && (rc = read_pb(dir, "output", n_out, &outs[n_out], err, sizeof err)) == 1)
            n_out++;
    if (rc < 0) {
        /* Test data we cannot read (UINT8, BOOL, sequences, optionals):
         * the model's own refusal, when it has one, says more. */
        st = cnv_onnx_load(model, model_size, NULL, 0, &m);
        if (st == CNV_ERR_UNSUPPORTED)
            SKIP("%s", cnv_model_errmsg(m));
        SKIP("%s", err);
    }

    cnv_onnx_bind binds[MAX_IO];
    memset(binds, 0, sizeof binds);
    for (int i = 0; i < n_in; i++)
        if (ins[i].dtype == CNV_INT64 || (i > 0 && ins[i].dtype == CNV_FLOAT32 && plan_params(c->name))) {
            binds[i].dtype = ins[i].dtype;
            binds[i].shape = ins[i].shape;
            binds[i].data = ins[i].values;
        }
    st = cnv_onnx_load(model, model_size, binds, n_in, &m);
    if (st != CNV_OK) {
        if (is_scope(st))
            SKIP("%s", cnv_model_errmsg(m));
        FAIL("load: %s: %s", cnv_status_string(st), cnv_model_errmsg(m));
    }

    /* The float inputs, in order, are the model's inputs. */
    cnv_shape shapes[MAX_IO];
    int n_float = 0;
    for (int i = 0; i < n_in; i++)
        if (ins[i].dtype == CNV_FLOAT32 && !binds[i].data)
            shapes[n_float++] = ins[i].shape;
    if (n_float != cnv_model_input_count(m))
        FAIL("%d float inputs in the test data, the model has %d", n_float, cnv_model_input_count(m));
    if (n_out != cnv_model_output_count(m))
        FAIL("%d outputs in the test data, the model has %d", n_out, cnv_model_output_count(m));
    if ((st = cnv_session_create(m, &s)) != CNV_OK)
        FAIL("session: %s", cnv_session_errmsg(s));
    /* A refusal at planning is the engine declining a shape or an
     * attribute value it does not handle: a skip, with the status shown
     * when it is not UNSUPPORTED so that a wrong refusal stands out. */
    st = cnv_session_plan_shapes(s, n_float, shapes);
    if (st != CNV_OK) {
        if (is_scope(st))
            SKIP("%s", cnv_session_errmsg(s));
        SKIP("planning refused (%s): %s", cnv_status_string(st), cnv_session_errmsg(s));
    }
    for (int i = 0, k = 0; i < n_in; i++) {
        if (ins[i].dtype != CNV_FLOAT32 || binds[i].data)
            continue;
        float *d;
        const char *name = tu_input_name(m, k++);
        if (cnv_session_tensor(s, tu_t(s, name), &d, NULL) != CNV_OK)
            FAIL("input '%s': %s", name, cnv_session_errmsg(s));
        int64_t n = cnv_shape_count(&ins[i].shape);
        if (n > 0)
            memcpy(d, ins[i].values, (size_t)n * sizeof(float));
    }
    if ((st = cnv_session_forward(s)) != CNV_OK)
        FAIL("forward: %s", cnv_session_errmsg(s));

    for (int k = 0; k < n_out; k++) {
        const char *name = cnv_model_tensor_name(m, cnv_model_output(m, k));
        float *got;
        cnv_shape gs;
        char b1[128], b2[128];
        if (outs[k].dtype != CNV_FLOAT32) {
            /* INT64 values (shape arithmetic) exist only as values folded
             * at plan time, which the session keeps internally */
            const cnv_val *v = &s->vals[cnv_model_output(m, k)];
            if (!v->i64)
                SKIP("output_%d.pb holds INT64 values; the engine computed floats or nothing", k);
            if (!cnv_shape_equal(&v->shape, &outs[k].shape))
                FAIL("output '%s' has shape %s, expected %s", name, cnv_shape_str(&v->shape, b1, sizeof b1),
                     cnv_shape_str(&outs[k].shape, b2, sizeof b2));
            const int64_t *want = outs[k].values;
            for (int64_t i = 0; i < v->count; i++)
                if (v->i64[i] != want[i])
                    FAIL("output '%s'[%lld] = %lld, expected %lld", name, (long long)i, (long long)v->i64[i],
                         (long long)want[i]);
            c->values += v->count;
            continue;
        }
        if (cnv_session_tensor(s, tu_t(s, name), &got, &gs) != CNV_OK)
            FAIL("output '%s': %s", name, cnv_session_errmsg(s));
        if (!cnv_shape_equal(&gs, &outs[k].shape))
            FAIL("output '%s' has shape %s, expected %s", name, cnv_shape_str(&gs, b1, sizeof b1),
                 cnv_shape_str(&outs[k].shape, b2, sizeof b2));
        const float *want = outs[k].values;
        int64_t n = cnv_shape_count(&gs), worst = -1;
        for (int64_t i = 0; i < n; i++) {
            double g = got[i], w = want[i];
            if (isnan(w) && isnan(g))
                continue;
            double d = fabs(g - w);
            double r = d / (ABS_TOL + REL_TOL * fabs(w));
            if (!(r <= c->max_err) || isnan(d)) {
                c->max_err = isnan(d) ? INFINITY : r;
                worst = i;
            }
            if (d > c->max_abs)
                c->max_abs = d;
        }
        c->values += n;
        if (c->max_err > 1.0)
            FAIL("output '%s'[%lld] = %.8g, expected %.8g (|diff| %.3g > tolerance)", name,
                 (long long)worst, got[worst], want[worst], fabs((double)got[worst] - want[worst]));
    }
    snprintf(c->reason, sizeof c->reason, "max |diff| %.2g over %lld values", c->max_abs,
             (long long)c->values);
done:
    for (int i = 0; i < MAX_IO; i++) {
        cnv_free_buffer(ins[i].values);
        cnv_free_buffer(outs[i].values);
    }
    cnv_session_free(s);
    cnv_model_free(m);
    cnv_free(model);
}

static void case_test(void **state)
{
    ccase *c = *state;
    run_case(c);
    switch (c->result) {
    case R_PASS:
        printf("PASS %-50s %s\n", c->name, c->reason);
        break;
    case R_SKIP:
        printf("SKIP %-50s %s\n", c->name, c->reason);
        skip();
        break;
    default:
        fail_msg("FAIL %s: %s", c->name, c->reason);
    }
}

static void no_testdata(void **state)
{
    (void)state;
    printf("%s is missing (Debian package libonnx-testdata): conformance not run\n", NODE_DIR);
    skip();
}

static int cmp_case(const void *a, const void *b)
{
    return strcmp(((const ccase *)a)->name, ((const ccase *)b)->name);
}

static int wanted(const char *name)
{
    for (size_t i = 0; i < sizeof g_prefixes / sizeof g_prefixes[0]; i++) {
        size_t n = strlen(g_prefixes[i]);
        if (strncmp(name, g_prefixes[i], n) == 0 && (name[n] == '\0' || name[n] == '_'))
            return 1;
    }
    return 0;
}

static int list_cases(void)
{
    DIR *d = opendir(NODE_DIR);
    if (!d)
        return -1;
    struct dirent *ent;
    size_t cap = 0;
    while ((ent = readdir(d))) {
        if (!wanted(ent->d_name) || strlen(ent->d_name) >= sizeof g_cases[0].name)
            continue;
        if ((size_t)g_n_cases == cap) {
            cap = cap ? 2 * cap : 64;
            g_cases = realloc(g_cases, cap * sizeof *g_cases);
            if (!g_cases)
                abort();
        }
        memset(&g_cases[g_n_cases], 0, sizeof *g_cases);
        snprintf(g_cases[g_n_cases].name, sizeof g_cases[0].name, "%s", ent->d_name);
        g_n_cases++;
    }
    closedir(d);
    qsort(g_cases, (size_t)g_n_cases, sizeof *g_cases, cmp_case);
    return 0;
}

/* The markdown table (and counts) for docs/ONNX.md. */
static void write_table(FILE *fp)
{
    int n[3] = {0, 0, 0};
    for (int i = 0; i < g_n_cases; i++)
        n[g_cases[i].result]++;
    fprintf(fp, "Generated by `CNV_WRITE_DOCS=1 build/rel/tests/test_onnx_conformance` over the\n");
    fprintf(fp, "cases of `%s` whose names start with", NODE_DIR);
    for (size_t i = 0; i < sizeof g_prefixes / sizeof g_prefixes[0]; i++)
        fprintf(fp, "%s `%s`", i ? "," : "", g_prefixes[i]);
    fprintf(fp, ".\nTolerance: |got - want| <= %g + %g |want|.\n\n", ABS_TOL, REL_TOL);
    fprintf(fp, "**%d passed, %d skipped, %d failed** (of %d).\n\n", n[R_PASS], n[R_SKIP], n[R_FAIL],
            g_n_cases);
    fprintf(fp, "| case | result | detail |\n|---|---|---|\n");
    static const char *const word[3] = {"pass", "skip", "**FAIL**"};
    for (int i = 0; i < g_n_cases; i++) {
        const ccase *c = &g_cases[i];
        fprintf(fp, "| %s | %s | ", c->name, word[c->result]);
        for (const char *p = c->reason; *p; p++) {
            if (*p == '|')
                fputs("\\|", fp);
            else if (*p == '\n')
                fputc(' ', fp);
            else
                fputc(*p, fp);
        }
        fprintf(fp, " |\n");
    }
}

static void write_ops(FILE *fp)
{
    fprintf(fp, "Ops in the registry (src/engine/registry.c) when the table was made:");
    for (int i = 0; i < cnv_op_count(); i++)
        fprintf(fp, "%s `%s`", i ? "," : "", cnv_op_at(i)->type);
    fprintf(fp, ".\n\n");
}

#define BEGIN_MARK "<!-- CONFORMANCE-BEGIN -->"
#define END_MARK "<!-- CONFORMANCE-END -->"

static int write_docs(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    int ch;
    while ((ch = fgetc(fp)) != EOF) {
        if (len + 1 >= cap) {
            cap = cap ? 2 * cap : 4096;
            text = realloc(text, cap);
            if (!text)
                abort();
        }
        text[len++] = (char)ch;
    }
    fclose(fp);
    if (!text)
        return -1;
    text[len] = '\0';
    char *b = strstr(text, BEGIN_MARK), *e = b ? strstr(b, END_MARK) : NULL;
    if (!b || !e) {
        fprintf(stderr, "%s lacks the %s / %s markers\n", path, BEGIN_MARK, END_MARK);
        free(text);
        return -1;
    }
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fp = fopen(tmp, "wb");
    if (!fp) {
        free(text);
        return -1;
    }
    fwrite(text, 1, (size_t)(b - text) + strlen(BEGIN_MARK), fp);
    fputs("\n", fp);
    write_ops(fp);
    write_table(fp);
    fputs(e, fp);
    free(text);
    if (fclose(fp) != 0 || rename(tmp, path) != 0)
        return -1;
    printf("wrote the conformance table to %s\n", path);
    return 0;
}

int main(void)
{
    if (list_cases() != 0 || g_n_cases == 0) {
        const struct CMUnitTest none[] = {cmocka_unit_test(no_testdata)};
        return cmocka_run_group_tests(none, NULL, NULL);
    }
    struct CMUnitTest *tests = calloc((size_t)g_n_cases, sizeof *tests);
    if (!tests)
        return 1;
    for (int i = 0; i < g_n_cases; i++) {
        tests[i].name = g_cases[i].name;
        tests[i].test_func = case_test;
        tests[i].initial_state = &g_cases[i];
    }
    int rc = _cmocka_run_group_tests("onnx_conformance", tests, (size_t)g_n_cases, NULL, NULL);
    int n[3] = {0, 0, 0};
    for (int i = 0; i < g_n_cases; i++)
        n[g_cases[i].result]++;
    printf("ONNX conformance over %d cases -- pass %d, skip %d, fail %d\n", g_n_cases, n[R_PASS], n[R_SKIP],
           n[R_FAIL]);
    for (int i = 0; i < g_n_cases; i++)
        if (g_cases[i].result == R_FAIL)
            printf("  FAILED %s: %s\n", g_cases[i].name, g_cases[i].reason);
    const char *w = getenv("CNV_WRITE_DOCS");
    if (w && strcmp(w, "1") == 0 && write_docs("docs/ONNX.md") != 0)
        rc = 1;
    free(tests);
    free(g_cases);
    return rc;
}
