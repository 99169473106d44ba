/* The ONNX writer (src/onnx/write.c): a model built with the builder is
 * saved, loaded back and must match in structure and in its forward pass;
 * saving is atomic; and, where some python3 can import onnx, the written
 * file passes onnx.checker.check_model. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "engine/op.h"
#include "onnx/onnx.h"

static int setup(void **state)
{
    (void)state;
    return tu_scratch_make("cnv_onnx_write");
}

static int teardown(void **state)
{
    (void)state;
    return tu_scratch_remove();
}

#define CHECK(call)                                                      \
    do {                                                                 \
        cnv_status st_ = (call);                                         \
        if (st_ != CNV_OK)                                               \
            fail_msg("%s: %s", #call, cnv_model_errmsg(m));              \
    } while (0)

/* x[N,1,8,8] -> Conv(4,3x3,pad 1) -> BatchNorm -> Relu -> MaxPool 2 ->
 * Reshape([0,-1], an int64 constant) -> Gemm(3, transB) -> Softmax -> y,
 * with extra FLOATS / TENSOR / STRING attributes on Relu (ignored by the
 * op, but they must survive the trip; onnx.checker refuses them, so
 * they are left out for it), metadata and opset 13. */
static cnv_model *build(int extras)
{
    cnv_model *m = NULL;
    tu_rng r;
    tu_rng_init(&r, 7);
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, -1, 1, 8, 8);
    CHECK(cnv_model_add_input(m, "x", &xs));
    float w[36], b[4], scale[4], bias[4], mean[4], var[4], w2[3 * 64], b2[3];
    tu_fill(&r, w, 36, -0.5f, 0.5f);
    tu_fill(&r, b, 4, -0.1f, 0.1f);
    tu_fill(&r, scale, 4, 0.5f, 1.5f);
    tu_fill(&r, bias, 4, -0.2f, 0.2f);
    tu_fill(&r, mean, 4, -0.1f, 0.1f);
    tu_fill(&r, var, 4, 0.5f, 2.0f);
    tu_fill(&r, w2, 3 * 64, -0.2f, 0.2f);
    tu_fill(&r, b2, 3, -0.1f, 0.1f);
    cnv_shape s;
    s = tu_shape(4, 4, 1, 3, 3);
    CHECK(cnv_model_add_const(m, "conv.w", CNV_FLOAT32, &s, w));
    s = tu_shape(1, 4);
    CHECK(cnv_model_add_const(m, "conv.b", CNV_FLOAT32, &s, b));
    CHECK(cnv_model_add_const(m, "bn.scale", CNV_FLOAT32, &s, scale));
    CHECK(cnv_model_add_const(m, "bn.bias", CNV_FLOAT32, &s, bias));
    CHECK(cnv_model_add_const(m, "bn.mean", CNV_FLOAT32, &s, mean));
    CHECK(cnv_model_add_const(m, "bn.var", CNV_FLOAT32, &s, var));
    s = tu_shape(2, 3, 64);
    CHECK(cnv_model_add_const(m, "fc.w", CNV_FLOAT32, &s, w2));
    s = tu_shape(1, 3);
    CHECK(cnv_model_add_const(m, "fc.b", CNV_FLOAT32, &s, b2));
    const int64_t shape[2] = {0, -1};
    s = tu_shape(1, 2);
    CHECK(cnv_model_add_const(m, "flat.shape", CNV_INT64, &s, shape));

    const int64_t pads[4] = {1, 1, 1, 1}, k3[2] = {3, 3}, k2[2] = {2, 2};
    cnv_attr conv_attrs[2] = {tu_attr_ints("pads", 4, pads), tu_attr_ints("kernel_shape", 2, k3)};
    CHECK(cnv_model_add_node(m, "Conv", "conv", 3, (const char *[]){"x", "conv.w", "conv.b"}, 1,
                             (const char *[]){"c"}, 2, conv_attrs));
    cnv_attr bn_attrs[1] = {tu_attr_float("epsilon", 1e-3f)};
    CHECK(cnv_model_add_node(m, "BatchNormalization", "bn", 5,
                             (const char *[]){"c", "bn.scale", "bn.bias", "bn.mean", "bn.var"}, 1,
                             (const char *[]){"bn_out"}, 1, bn_attrs));
    const float fl[3] = {0.25f, -1.0f, INFINITY};
    const int64_t tdata[6] = {1, -2, 3, -4, 5, 1LL << 40};
    cnv_attr extra[3];
    memset(extra, 0, sizeof extra);
    extra[0].name = "note_floats";
    extra[0].type = CNV_ATTR_FLOATS;
    extra[0].floats = fl;
    extra[0].n = 3;
    extra[1].name = "note_tensor";
    extra[1].type = CNV_ATTR_TENSOR;
    extra[1].t_dtype = CNV_INT64;
    extra[1].t_shape = tu_shape(2, 2, 3);
    extra[1].t_data = tdata;
    extra[2] = tu_attr_string("note_string", "h\xc3\xa9llo");
    CHECK(cnv_model_add_node(m, "Relu", "relu", 1, (const char *[]){"bn_out"}, 1,
                             (const char *[]){"r"}, extras ? 3 : 0, extra));
    cnv_attr pool_attrs[2] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_ints("strides", 2, k2)};
    CHECK(cnv_model_add_node(m, "MaxPool", "pool", 1, (const char *[]){"r"}, 1,
                             (const char *[]){"p"}, 2, pool_attrs));
    CHECK(cnv_model_add_node(m, "Reshape", "flat", 2, (const char *[]){"p", "flat.shape"}, 1,
                             (const char *[]){"f"}, 0, NULL));
    cnv_attr gemm_attrs[2] = {tu_attr_int("transB", 1), tu_attr_float("alpha", 1.0f)};
    CHECK(cnv_model_add_node(m, "Gemm", "fc", 3, (const char *[]){"f", "fc.w", "fc.b"}, 1,
                             (const char *[]){"logits"}, 2, gemm_attrs));
    cnv_attr sm_attrs[1] = {tu_attr_int("axis", 1)};
    CHECK(cnv_model_add_node(m, "Softmax", "", 1, (const char *[]){"logits"}, 1,
                             (const char *[]){"y"}, 1, sm_attrs));
    CHECK(cnv_model_add_output(m, "y"));
    CHECK(cnv_model_add_output(m, "logits"));
    CHECK(cnv_model_set_meta(m, "labels", "T-shirt,Trouser,Pullover"));
    CHECK(cnv_model_set_meta(m, "mean", "0.5"));
    CHECK(cnv_model_set_opset(m, 13));
    return m;
}

static void same_attr(const cnv_attr_def *a, const cnv_attr_def *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case CNV_ATTR_INT: assert_true(a->i == b->i); break;
    case CNV_ATTR_FLOAT: assert_memory_equal(&a->f, &b->f, sizeof a->f); break;
    case CNV_ATTR_STRING: assert_string_equal(a->s, b->s); break;
    case CNV_ATTR_INTS:
        assert_int_equal(a->n, b->n);
        assert_memory_equal(a->ints, b->ints, (size_t)a->n * sizeof *a->ints);
        break;
    case CNV_ATTR_FLOATS:
        assert_int_equal(a->n, b->n);
        assert_memory_equal(a->floats, b->floats, (size_t)a->n * sizeof *a->floats);
        break;
    case CNV_ATTR_TENSOR:
        assert_int_equal(a->t_dtype, b->t_dtype);
        assert_true(cnv_shape_equal(&a->t_shape, &b->t_shape));
        assert_memory_equal(a->t_data, b->t_data,
                            (size_t)cnv_shape_count(&a->t_shape) * (a->t_dtype == CNV_INT64 ? 8 : 4));
        break;
    }
}

/* Every node, attribute, constant, input, output and metadata entry. */
static void same_model(const cnv_model *a, const cnv_model *b)
{
    assert_int_equal(a->opset, b->opset);
    assert_int_equal(a->n_nodes, b->n_nodes);
    for (int i = 0; i < a->n_nodes; i++) {
        const cnv_node *x = &a->nodes[i], *y = &b->nodes[i];
        assert_string_equal(x->op->type, y->op->type);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->n_in, y->n_in);
        assert_int_equal(x->n_out, y->n_out);
        for (int k = 0; k < x->n_in; k++) /* -1: an absent optional input */
            assert_string_equal(x->in[k] < 0 ? "" : a->tensors[x->in[k]].name,
                                y->in[k] < 0 ? "" : b->tensors[y->in[k]].name);
        for (int k = 0; k < x->n_out; k++)
            assert_string_equal(a->tensors[x->out[k]].name, b->tensors[y->out[k]].name);
        assert_int_equal(x->n_attrs, y->n_attrs);
        for (int k = 0; k < x->n_attrs; k++)
            same_attr(&x->attrs[k], &y->attrs[k]);
    }
    int consts = 0;
    for (int i = 0; i < a->n_tensors; i++) {
        const cnv_tensor_def *t = &a->tensors[i];
        if (t->kind != CNV_T_CONST)
            continue;
        consts++;
        int j = cnv_model_find(b, t->name);
        assert_true(j >= 0);
        const cnv_tensor_def *u = &b->tensors[j];
        assert_int_equal(u->kind, CNV_T_CONST);
        assert_int_equal(t->dtype, u->dtype);
        assert_true(cnv_shape_equal(&t->shape, &u->shape));
        assert_memory_equal(t->data, u->data,
                            (size_t)cnv_shape_count(&t->shape) * (t->dtype == CNV_INT64 ? 8 : 4));
    }
    for (int i = 0; i < b->n_tensors; i++)
        consts -= b->tensors[i].kind == CNV_T_CONST;
    assert_int_equal(consts, 0);
    assert_int_equal(cnv_model_input_count(a), cnv_model_input_count(b));
    for (int i = 0; i < cnv_model_input_count(a); i++) {
        cnv_shape sa, sb;
        assert_string_equal(tu_input_name(a, i), tu_input_name(b, i));
        assert_int_equal(cnv_model_input_shape(a, i, &sa), CNV_OK);
        assert_int_equal(cnv_model_input_shape(b, i, &sb), CNV_OK);
        assert_true(cnv_shape_equal(&sa, &sb));
    }
    assert_int_equal(cnv_model_output_count(a), cnv_model_output_count(b));
    for (int i = 0; i < cnv_model_output_count(a); i++)
        assert_string_equal(cnv_model_tensor_name(a, cnv_model_output(a, i)), cnv_model_tensor_name(b, cnv_model_output(b, i)));
    assert_int_equal(a->n_meta, b->n_meta);
    for (int i = 0; i < a->n_meta; i++)
        assert_string_equal(cnv_model_get_meta(b, a->meta[i].key), a->meta[i].value);
}

/* Forward of y for a batch of 2 with fixed inputs, into out[6]. */
static void forward(cnv_model *m, float *out)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    if (cnv_session_plan(s, 2, 8, 8) != CNV_OK)
        fail_msg("%s", cnv_session_errmsg(s));
    tu_rng r;
    tu_rng_init(&r, 99);
    tu_fill(&r, cnv_session_input(s), 2 * 64, -1, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    assert_true(ys.ndim == 2 && ys.dims[0] == 2 && ys.dims[1] == 3);
    memcpy(out, y, 6 * sizeof *y);
    cnv_session_free(s);
}

static void round_trip(void **state)
{
    (void)state;
    cnv_model *m = build(1);
    char path[128];
    snprintf(path, sizeof path, "%s/model.onnx", tu_scratch_dir());
    CHECK(cnv_model_save_onnx(m, path));
    cnv_model *m2 = NULL;
    if (cnv_model_load_onnx(path, &m2) != CNV_OK)
        fail_msg("reload: %s", cnv_model_errmsg(m2));
    same_model(m, m2);
    float y1[6], y2[6];
    forward(m, y1);
    forward(m2, y2);
    double maxd = 0, sum = 0;
    for (int i = 0; i < 6; i++) {
        maxd = fmax(maxd, fabs((double)y1[i] - y2[i]));
        sum += y1[i];
    }
    printf("round trip: max |y - y'| = %g over 6 outputs (softmax rows sum to %g)\n", maxd, sum / 2);
    assert_true(maxd == 0.0);
    assert_true(fabs(sum / 2 - 1.0) < 1e-5);

    /* Saving the reloaded model again gives the same bytes. */
    cnv_pbw a = {0}, b = {0};
    cnv_onnx_encode(&a, m);
    cnv_onnx_encode(&b, m2);
    assert_false(a.failed || b.failed);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.buf, b.buf, a.len);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal((size_t)sb.st_size, a.len);
    printf("encoded model: %zu bytes\n", a.len);
    cnv_pbw_free(&a);
    cnv_pbw_free(&b);
    cnv_model_free(m2);
    cnv_model_free(m);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void atomic_save(void **state)
{
    (void)state;
    cnv_model *m = build(1);
    char sub[128], path[192];
    snprintf(sub, sizeof sub, "%s/atomic", tu_scratch_dir());
    assert_int_equal(mkdir(sub, 0755), 0);

    /* A directory that does not exist: IO, nothing created. */
    snprintf(path, sizeof path, "%s/nope/model.onnx", sub);
    assert_int_equal(cnv_model_save_onnx(m, path), CNV_ERR_IO);
    printf("missing directory: %s\n", cnv_model_errmsg(m));
    assert_int_equal(count_entries(sub), 0);

    /* The target is a directory: rename fails, the temporary file goes. */
    snprintf(path, sizeof path, "%s/adir", sub);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(cnv_model_save_onnx(m, path), CNV_ERR_IO);
    printf("target is a directory: %s\n", cnv_model_errmsg(m));
    assert_int_equal(count_entries(sub), 1);
    assert_int_equal(count_entries(path), 0);

    /* Over a longer existing file: replaced whole. */
    snprintf(path, sizeof path, "%s/model.onnx", sub);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (int i = 0; i < 100000; i++)
        fputc('z', fp);
    fclose(fp);
    CHECK(cnv_model_save_onnx(m, path));
    assert_int_equal(count_entries(sub), 2);
    cnv_model *m2 = NULL;
    if (cnv_model_load_onnx(path, &m2) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m2));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size < 100000);
    assert_true((sb.st_mode & 0777) == 0644);
    cnv_model_free(m2);

    assert_int_equal(cnv_model_save_onnx(NULL, path), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_model_save_onnx(m, NULL), CNV_ERR_INVALID_ARG);
    cnv_model_free(m);
}

/* A python3 that can import onnx, or NULL. Tried in order: python3 on
 * PATH (may be a pyenv without it), then the system one. */
static const char *find_python_onnx(void)
{
    static const char *const cands[] = {"python3", "/usr/bin/python3"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import onnx' >/dev/null 2>&1", cands[i]);
        if (system(cmd) == 0)
            return cands[i];
    }
    return NULL;
}

static void onnx_checker(void **state)
{
    (void)state;
    const char *py = find_python_onnx();
    if (!py) {
        printf("no python3 with the onnx package (python3-onnx): onnx.checker not run\n");
        skip();
    }
    cnv_model *m = build(0);
    char path[128], cmd[1024];
    snprintf(path, sizeof path, "%s/checked.onnx", tu_scratch_dir());
    CHECK(cnv_model_save_onnx(m, path));
    /* full_check also runs ONNX shape inference over the graph; the
     * script then prints what it read, which is compared below. */
    snprintf(cmd, sizeof cmd,
             "%s -c 'import sys, onnx\n"
             "m = onnx.load(sys.argv[1])\n"
             "onnx.checker.check_model(m, full_check=True)\n"
             "g = m.graph\n"
             "print(\"ir\", m.ir_version, \"opset\", m.opset_import[0].version, \"producer\", m.producer_name)\n"
             "print(\"nodes\", \",\".join(n.op_type for n in g.node))\n"
             "print(\"inits\", len(g.initializer), \"meta\", len(m.metadata_props))\n"
             "print(\"input\", [d.dim_param or d.dim_value for d in g.input[0].type.tensor_type.shape.dim])\n"
             "for o in g.output: print(\"output\", o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])\n"
             "' '%s' 2>&1",
             py, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[2048];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    printf("%s onnx.checker output:\n%s", py, out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "ir 8 opset 13 producer libcnnviz"));
    assert_non_null(strstr(out, "nodes Conv,BatchNormalization,Relu,MaxPool,Reshape,Gemm,Softmax"));
    assert_non_null(strstr(out, "inits 9 meta 2"));
    assert_non_null(strstr(out, "input ['N', 1, 8, 8]"));
    assert_non_null(strstr(out, "output y ['N', 3]"));
    assert_non_null(strstr(out, "output logits ['N', 3]"));
    cnv_model_free(m);

    /* Unknown spatial sizes: the conv output's H and W follow the input
     * (written unnamed, read back as 0 here), the pooled output's do not. */
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, -1, 1, -1, -1), ws = tu_shape(4, 4, 1, 3, 3);
    float w[36] = {0};
    CHECK(cnv_model_add_input(m, "x", &xs));
    CHECK(cnv_model_add_const(m, "w", CNV_FLOAT32, &ws, w));
    CHECK(cnv_model_add_node(m, "Conv", "conv", 2, (const char *[]){"x", "w"}, 1,
                             (const char *[]){"c"}, 0, NULL));
    CHECK(cnv_model_add_node(m, "GlobalAveragePool", "gap", 1, (const char *[]){"c"}, 1,
                             (const char *[]){"g"}, 0, NULL));
    CHECK(cnv_model_add_output(m, "g"));
    CHECK(cnv_model_add_output(m, "c"));
    CHECK(cnv_model_save_onnx(m, path));
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    rc = pclose(p);
    printf("%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "input ['N', 1, 'H', 'W']"));
    assert_non_null(strstr(out, "output g ['N', 4, 1, 1]"));
    assert_non_null(strstr(out, "output c ['N', 4, 0, 0]"));
    cnv_model_free(m);
}

/* Whether a session plans with the model's declared input shapes. */
static int plannable(const cnv_model *m)
{
    cnv_shape sh[8];
    int n = cnv_model_input_count(m), ok = 0;
    if (n > 8)
        return 0;
    for (int i = 0; i < n; i++)
        if (cnv_model_input_shape(m, i, &sh[i]) != CNV_OK || cnv_shape_count(&sh[i]) < 0)
            return 0;
    cnv_session *s = NULL;
    if (cnv_session_create(m, &s) == CNV_OK)
        ok = cnv_session_plan_shapes(s, n, sh) == CNV_OK;
    cnv_session_free(s);
    return ok;
}

/* Every ONNX node test model that loads goes through the writer: the
 * reloaded model is the same, and encoding it again gives the same bytes. */
static void node_models_round_trip(void **state)
{
    (void)state;
    const char *dir = "/usr/share/libonnx-testdata/data/node";
    DIR *d = opendir(dir);
    if (!d) {
        printf("libonnx-testdata is not installed: skipped\n");
        skip();
    }
    struct dirent *ent;
    int n = 0, n_checked = 0;
    const char *py = find_python_onnx();
    char saved[128];
    snprintf(saved, sizeof saved, "%s/node_models", tu_scratch_dir());
    assert_int_equal(mkdir(saved, 0755), 0);
    while ((ent = readdir(d))) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s/model.onnx", dir, ent->d_name);
        cnv_model *m = NULL, *m2 = NULL;
        if (ent->d_name[0] == '.' || cnv_model_load_onnx(path, &m) != CNV_OK) {
            cnv_model_free(m);
            continue;
        }
        cnv_pbw a = {0}, b = {0};
        cnv_onnx_encode(&a, m);
        assert_false(a.failed);
        if (cnv_model_load_onnx_memory(a.buf, a.len, &m2) != CNV_OK)
            fail_msg("%s: reload: %s", ent->d_name, cnv_model_errmsg(m2));
        same_model(m, m2);
        cnv_onnx_encode(&b, m2);
        assert_false(b.failed);
        if (a.len != b.len || memcmp(a.buf, b.buf, a.len) != 0)
            fail_msg("%s: the second encoding differs", ent->d_name);
        /* The checker wants output shapes, which the writer finds by
         * planning: models the engine cannot plan are left out of it. */
        if (py && plannable(m)) {
            snprintf(path, sizeof path, "%s/%s.onnx", saved, ent->d_name);
            if (cnv_model_save_onnx(m, path) != CNV_OK)
                fail_msg("%s: %s", path, cnv_model_errmsg(m));
            n_checked++;
        }
        cnv_pbw_free(&a);
        cnv_pbw_free(&b);
        cnv_model_free(m2);
        cnv_model_free(m);
        n++;
    }
    closedir(d);
    printf("%d ONNX node test models written, reloaded and compared\n", n);
    assert_true(n > 50);
    if (!py) {
        printf("no python3 with onnx: the written files were not checked by onnx.checker\n");
        return;
    }
    /* One python run checks them all; it prints a line per failure. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s -c 'import sys, glob, onnx\n"
             "bad = 0\n"
             "files = sorted(glob.glob(sys.argv[1] + \"/*.onnx\"))\n"
             "for f in files:\n"
             "    try:\n"
             "        onnx.checker.check_model(onnx.load(f), full_check=True)\n"
             "    except Exception as e:\n"
             "        bad += 1\n"
             "        print(\"FAILED\", f, str(e).splitlines()[0])\n"
             "print(\"checked\", len(files), \"bad\", bad)\n"
             "' '%s' 2>&1",
             py, saved);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[8192];
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = '\0';
    int rc = pclose(p);
    printf("onnx.checker over the written files: %s", out);
    assert_int_equal(rc, 0);
    char want[64];
    snprintf(want, sizeof want, "checked %d bad 0", n_checked);
    assert_non_null(strstr(out, want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(atomic_save),
        cmocka_unit_test(onnx_checker),
        cmocka_unit_test(node_models_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
