/* The ONNX reader (src/onnx/read.c) on real files from the ONNX test data
 * and on small models encoded here byte by byte: data types, Constant
 * nodes, every malformed length, count and dimension we could think of,
 * truncation at every offset, byte mutations, and allocation failures. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "engine/model.h"
#include "onnx/onnx.h"

#define NODE_DIR "/usr/share/libonnx-testdata/data/node"

/* ------------------------------------------------------ model encoder */

static int split(const char *csv, char out[][32], int max)
{
    int n = 0;
    if (!csv || !csv[0])
        return 0;
    const char *p = csv;
    while (n < max) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        memcpy(out[n], p, len);
        out[n][len] = '\0';
        n++;
        if (!c)
            break;
        p = c + 1;
    }
    return n;
}

/* A graph input; dims of -1 become dim_param "N". */
static void g_input(cnv_pbw *g, const char *name, int elem, int ndim, const int64_t *dims)
{
    size_t vi = cnv_pbw_begin(g, 11);
    cnv_pbw_string(g, 1, name);
    size_t ty = cnv_pbw_begin(g, 2);
    size_t tt = cnv_pbw_begin(g, 1);
    cnv_pbw_int(g, 1, elem);
    size_t sh = cnv_pbw_begin(g, 2);
    for (int i = 0; i < ndim; i++) {
        size_t d = cnv_pbw_begin(g, 1);
        if (dims[i] == -1)
            cnv_pbw_string(g, 2, "N");
        else
            cnv_pbw_int(g, 1, dims[i]);
        cnv_pbw_end(g, d);
    }
    cnv_pbw_end(g, sh);
    cnv_pbw_end(g, tt);
    cnv_pbw_end(g, ty);
    cnv_pbw_end(g, vi);
}

static void g_output(cnv_pbw *g, const char *name)
{
    size_t vi = cnv_pbw_begin(g, 12);
    cnv_pbw_string(g, 1, name);
    cnv_pbw_end(g, vi);
}

/* Opens a NodeProto; attributes are written before g_node_end. */
static size_t g_node_begin(cnv_pbw *g, const char *op, const char *name, const char *ins,
                           const char *outs)
{
    char v[8][32];
    size_t mark = cnv_pbw_begin(g, 1);
    int n = split(ins, v, 8);
    for (int i = 0; i < n; i++)
        cnv_pbw_string(g, 1, v[i]);
    n = split(outs, v, 8);
    for (int i = 0; i < n; i++)
        cnv_pbw_string(g, 2, v[i]);
    if (name)
        cnv_pbw_string(g, 3, name);
    if (op)
        cnv_pbw_string(g, 4, op);
    return mark;
}

static void attr_int(cnv_pbw *g, const char *name, int64_t v)
{
    size_t a = cnv_pbw_begin(g, 5);
    cnv_pbw_string(g, 1, name);
    cnv_pbw_int(g, 20, 2);
    cnv_pbw_int(g, 3, v);
    cnv_pbw_end(g, a);
}

/* Opens a TensorProto with dims, data_type and name (field `field` of the
 * enclosing message); the caller adds the data. */
static size_t t_begin(cnv_pbw *w, uint32_t field, const char *name, int dt, int ndim,
                      const int64_t *dims)
{
    size_t mark = cnv_pbw_begin(w, field);
    for (int i = 0; i < ndim; i++)
        cnv_pbw_int(w, 1, dims[i]); /* unpacked, as some exporters do */
    cnv_pbw_int(w, 2, dt);
    if (name)
        cnv_pbw_string(w, 8, name);
    return mark;
}

/* An initializer of float values as raw_data. */
static void g_init_f32(cnv_pbw *g, const char *name, int ndim, const int64_t *dims,
                       const float *v, size_t n)
{
    size_t t = t_begin(g, 5, name, 1, ndim, dims);
    cnv_pbw_bytes(g, 9, v, n * 4);
    cnv_pbw_end(g, t);
}

/* Wraps a graph into a ModelProto (IR 8, opset `opset` of `domain`, none
 * if 0). */
static uint8_t *finish_domain(cnv_pbw *g, const char *domain, int64_t opset, size_t *len)
{
    cnv_pbw m = {0};
    cnv_pbw_int(&m, 1, 8);
    cnv_pbw_string(&m, 2, "test");
    cnv_pbw_bytes(&m, 7, g->buf, g->len);
    if (opset) {
        size_t o = cnv_pbw_begin(&m, 8);
        cnv_pbw_string(&m, 1, domain);
        cnv_pbw_int(&m, 2, opset);
        cnv_pbw_end(&m, o);
    }
    assert_false(g->failed || m.failed);
    cnv_pbw_free(g);
    *len = m.len;
    return m.buf;
}

static uint8_t *finish(cnv_pbw *g, int64_t opset, size_t *len)
{
    return finish_domain(g, "", opset, len);
}

/* x[1,3] + b[3] -> y, with b given by `write_b`. */
typedef void (*init_fn)(cnv_pbw *g);

static uint8_t *add_model(init_fn write_b, size_t *len)
{
    cnv_pbw g = {0};
    const int64_t xd[2] = {1, 3};
    size_t n = g_node_begin(&g, "Add", "add1", "x,b", "y");
    cnv_pbw_end(&g, n);
    cnv_pbw_string(&g, 2, "g");
    write_b(&g);
    g_input(&g, "x", 1, 2, xd);
    g_output(&g, "y");
    return finish(&g, 13, len);
}

/* ------------------------------------------------------------ helpers */

static cnv_model *load_ok(const uint8_t *buf, size_t len)
{
    cnv_model *m = NULL;
    cnv_status st = cnv_model_load_onnx_memory(buf, len, &m);
    if (st != CNV_OK)
        fail_msg("load failed (%s): %s", cnv_status_string(st), cnv_model_errmsg(m));
    return m;
}

/* Loading must fail with st and a message holding every word of want. */
static void load_fails(const uint8_t *buf, size_t len, cnv_status want, const char *w1,
                       const char *w2, const char *label)
{
    cnv_model *m = NULL;
    cnv_status st = cnv_model_load_onnx_memory(buf, len, &m);
    assert_non_null(m); /* the handle comes back even on failure */
    const char *msg = cnv_model_errmsg(m);
    printf("%-28s -> %s: %s\n", label, cnv_status_string(st), msg);
    if (st != want)
        fail_msg("%s: status %s, expected %s (%s)", label, cnv_status_string(st),
                 cnv_status_string(want), msg);
    if (w1 && !strstr(msg, w1))
        fail_msg("%s: message lacks '%s': %s", label, w1, msg);
    if (w2 && !strstr(msg, w2))
        fail_msg("%s: message lacks '%s': %s", label, w2, msg);
    cnv_model_free(m);
}

/* Runs x -> y on a [1,3] input and returns y in out[3]. */
static void run_1x3(cnv_model *m, const float *x, float *out)
{
    const float *xs[1] = {x};
    cnv_session *s = tu_session(m, xs, 1);
    if (cnv_session_forward(s) != CNV_OK)
        fail_msg("%s", cnv_session_errmsg(s));
    float *y;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
    memcpy(out, y, 3 * sizeof *y);
    cnv_session_free(s);
}

static const cnv_tensor_def *tensor(const cnv_model *m, const char *name)
{
    int t = cnv_model_find(m, name);
    assert_true(t >= 0);
    return &m->tensors[t];
}

/* ------------------------------------------------- valid small models */

static void b_raw(cnv_pbw *g)
{
    const int64_t d[1] = {3};
    const float b[3] = {10, 20, 30};
    g_init_f32(g, "b", 1, d, b, 3);
}

static void b_float_data_packed(cnv_pbw *g)
{
    const int64_t d[1] = {3};
    const float b[3] = {10, 20, 30};
    size_t t = t_begin(g, 5, "b", 1, 1, d);
    cnv_pbw_packed_floats(g, 4, b, 3);
    cnv_pbw_end(g, t);
}

static void b_float_data_unpacked(cnv_pbw *g)
{
    const int64_t d[1] = {3};
    size_t t = t_begin(g, 5, "b", 1, 1, d);
    cnv_pbw_float(g, 4, 10);
    cnv_pbw_float(g, 4, 20);
    cnv_pbw_float(g, 4, 30);
    cnv_pbw_end(g, t);
}

/* Two packed chunks and one unpacked value: protobuf allows mixing. */
static void b_float_data_mixed(cnv_pbw *g)
{
    const int64_t d[1] = {3};
    const float a[2] = {10, 20};
    size_t t = t_begin(g, 5, "b", 1, 1, d);
    cnv_pbw_packed_floats(g, 4, a, 1);
    cnv_pbw_float(g, 4, 20);
    cnv_pbw_packed_floats(g, 4, (const float[]){30}, 1);
    cnv_pbw_end(g, t);
}

static void b_double(cnv_pbw *g)
{
    const int64_t d[1] = {3};
    size_t t = t_begin(g, 5, "b", 11, 1, d);
    size_t p = cnv_pbw_begin(g, 10);
    const double v[3] = {10, 20, 30};
    cnv_pbw_raw(g, v, sizeof v); /* little-endian host */
    cnv_pbw_end(g, p);
    cnv_pbw_end(g, t);
}

static void b_half(cnv_pbw *g)
{
    const int64_t d[1] = {3};
    const uint8_t h[6] = {0x00, 0x49, 0x00, 0x4d, 0x80, 0x4f}; /* 10, 20, 30 */
    size_t t = t_begin(g, 5, "b", 10, 1, d);
    cnv_pbw_bytes(g, 9, h, sizeof h);
    cnv_pbw_end(g, t);
}

static void b_half_int32_data(cnv_pbw *g)
{
    const int64_t d[1] = {3};
    const int64_t h[3] = {0x4900, 0x4d00, 0x4f80};
    size_t t = t_begin(g, 5, "b", 10, 1, d);
    cnv_pbw_packed_ints(g, 5, h, 3);
    cnv_pbw_end(g, t);
}

/* b also listed among the graph inputs, as exporters before IR 4 did. */
static void b_raw_listed_as_input(cnv_pbw *g)
{
    const int64_t d[1] = {3};
    b_raw(g);
    g_input(g, "b", 1, 1, d);
}

static void add_variants(void **state)
{
    (void)state;
    static const struct { const char *label; init_fn fn; } cases[] = {
        {"raw_data", b_raw},
        {"float_data packed", b_float_data_packed},
        {"float_data unpacked", b_float_data_unpacked},
        {"float_data mixed", b_float_data_mixed},
        {"DOUBLE double_data", b_double},
        {"FLOAT16 raw_data", b_half},
        {"FLOAT16 int32_data", b_half_int32_data},
        {"initializer also an input", b_raw_listed_as_input},
    };
    const float x[3] = {1, 2, 3};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        uint8_t *buf = add_model(cases[i].fn, &len);
        cnv_model *m = load_ok(buf, len);
        assert_int_equal(cnv_model_input_count(m), 1);
        assert_string_equal(tu_input_name(m, 0), "x");
        assert_int_equal(cnv_model_node_count(m), 1);
        assert_string_equal(cnv_model_node_op(m, 0), "Add");
        assert_string_equal(cnv_model_node_name(m, 0), "add1");
        assert_int_equal(cnv_model_output_count(m), 1);
        float y[3];
        run_1x3(m, x, y);
        printf("%-26s y = %g %g %g\n", cases[i].label, y[0], y[1], y[2]);
        assert_true(y[0] == 11 && y[1] == 22 && y[2] == 33);
        cnv_model_free(m);
        free(buf);
    }
}

/* Every input has an initializer of its name (ONNX: a default value). The
 * first is the image's place: before, both were taken as weights and the
 * model had no input ("expected one image input, it has 0 inputs"). */
static void input_with_default(void **state)
{
    (void)state;
    cnv_pbw g = {0};
    const int64_t xd[2] = {1, 3}, bd[1] = {3};
    const float x0[3] = {100, 200, 300};
    size_t n = g_node_begin(&g, "Add", "add1", "x,b", "y");
    cnv_pbw_end(&g, n);
    cnv_pbw_string(&g, 2, "g");
    g_init_f32(&g, "x", 2, xd, x0, 3);
    b_raw(&g);
    g_input(&g, "x", 1, 2, xd);
    g_input(&g, "b", 1, 1, bd);
    g_output(&g, "y");
    size_t len;
    uint8_t *buf = finish(&g, 13, &len);
    cnv_model *m = load_ok(buf, len);
    assert_int_equal(cnv_model_input_count(m), 1);
    assert_string_equal(tu_input_name(m, 0), "x");
    assert_int_equal(tensor(m, "b")->kind, CNV_T_CONST);
    const float x[3] = {1, 2, 3};
    float y[3];
    run_1x3(m, x, y);
    printf("x with a default, b a weight: y = %g %g %g\n", y[0], y[1], y[2]);
    assert_true(y[0] == 11 && y[1] == 22 && y[2] == 33);
    cnv_model_free(m);
    free(buf);
}

static void half_values(void **state)
{
    (void)state;
    /* Zero, -0, smallest subnormal, largest subnormal, smallest normal, 1,
     * -2, 65504, +inf, -inf, NaN. */
    const uint16_t h[11] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0xc000, 0x7bff,
                            0x7c00, 0xfc00, 0x7e00};
    const float want[10] = {0.0f, -0.0f, 5.9604644775390625e-08f, 6.097555160522461e-05f,
                            6.103515625e-05f, 1.0f, -2.0f, 65504.0f, INFINITY, -INFINITY};
    cnv_pbw w = {0};
    const int64_t d[1] = {11};
    cnv_pbw_int(&w, 1, 11);
    cnv_pbw_int(&w, 2, 10);
    cnv_pbw_string(&w, 8, "h");
    cnv_pbw_bytes(&w, 9, h, sizeof h);
    (void)d;
    cnv_dtype dt;
    cnv_shape sh;
    void *v = NULL;
    char *name = NULL, err[256];
    assert_int_equal(cnv_tensor_read_pb(w.buf, w.len, &dt, &sh, &v, &name, err, sizeof err), CNV_OK);
    assert_int_equal(dt, CNV_FLOAT32);
    assert_true(sh.ndim == 1 && sh.dims[0] == 11);
    assert_string_equal(name, "h");
    const float *f = v;
    for (int i = 0; i < 10; i++) {
        if (f[i] != want[i] || signbit(f[i]) != signbit(want[i]))
            fail_msg("half 0x%04x -> %.9g, expected %.9g", h[i], f[i], want[i]);
    }
    assert_true(isnan(f[10]));
    cnv_free_buffer(v);
    cnv_free_buffer(name);
    cnv_pbw_free(&w);
}

static void int_tensors(void **state)
{
    (void)state;
    /* INT32 with negative values (ten-byte varints) becomes int64. */
    cnv_pbw w = {0};
    cnv_pbw_int(&w, 1, 3);
    cnv_pbw_int(&w, 2, 6);
    const int64_t v32[3] = {-1, 2147483647, -2147483648LL};
    cnv_pbw_packed_ints(&w, 5, v32, 3);
    cnv_dtype dt;
    cnv_shape sh;
    void *v = NULL;
    char err[256];
    assert_int_equal(cnv_tensor_read_pb(w.buf, w.len, &dt, &sh, &v, NULL, err, sizeof err), CNV_OK);
    assert_int_equal(dt, CNV_INT64);
    assert_memory_equal(v, v32, sizeof v32);
    cnv_free_buffer(v);
    cnv_pbw_free(&w);
    /* INT32 raw little-endian */
    const int32_t r32[2] = {-5, 7};
    cnv_pbw_int(&w, 1, 2);
    cnv_pbw_int(&w, 2, 6);
    cnv_pbw_bytes(&w, 9, r32, sizeof r32);
    assert_int_equal(cnv_tensor_read_pb(w.buf, w.len, &dt, &sh, &v, NULL, err, sizeof err), CNV_OK);
    assert_true(((int64_t *)v)[0] == -5 && ((int64_t *)v)[1] == 7);
    cnv_free_buffer(v);
    cnv_pbw_free(&w);
    /* INT64 int64_data, and a scalar (no dims) */
    cnv_pbw_int(&w, 2, 7);
    cnv_pbw_int(&w, 7, -42);
    assert_int_equal(cnv_tensor_read_pb(w.buf, w.len, &dt, &sh, &v, NULL, err, sizeof err), CNV_OK);
    assert_int_equal(sh.ndim, 0);
    assert_true(((int64_t *)v)[0] == -42);
    cnv_free_buffer(v);
    cnv_pbw_free(&w);
}

static void tensor_pb_errors(void **state)
{
    (void)state;
    cnv_dtype dt = CNV_INT64;
    cnv_shape sh = {0};
    void *v = (void *)&sh;
    char *name = (char *)"unchanged", err[256];
    /* raw_data of 8 bytes for 3 floats */
    cnv_pbw w = {0};
    cnv_pbw_int(&w, 1, 3);
    cnv_pbw_int(&w, 2, 1);
    cnv_pbw_string(&w, 8, "t");
    cnv_pbw_bytes(&w, 9, "12345678", 8);
    assert_int_equal(cnv_tensor_read_pb(w.buf, w.len, &dt, &sh, &v, &name, err, sizeof err),
                     CNV_ERR_FORMAT);
    printf("tensor pb: %s\n", err);
    assert_non_null(strstr(err, "'t'"));
    /* outputs untouched */
    assert_true(dt == CNV_INT64 && v == (void *)&sh && strcmp(name, "unchanged") == 0);
    /* every truncation of a good tensor */
    cnv_pbw_free(&w);
    cnv_pbw_int(&w, 1, 2);
    cnv_pbw_int(&w, 2, 1);
    cnv_pbw_string(&w, 8, "t");
    cnv_pbw_bytes(&w, 9, "12345678", 8);
    for (size_t n = 0; n < w.len; n++)
        assert_int_not_equal(cnv_tensor_read_pb(w.buf, n, &dt, &sh, &v, &name, NULL, 0), CNV_OK);
    assert_int_equal(cnv_tensor_read_pb(w.buf, w.len, &dt, &sh, &v, &name, err, sizeof err), CNV_OK);
    cnv_free_buffer(v);
    cnv_free_buffer(name);
    cnv_pbw_free(&w);
    assert_int_equal(cnv_tensor_read_pb(NULL, 0, NULL, &sh, &v, NULL, err, sizeof err),
                     CNV_ERR_INVALID_ARG);
}

static void constant_nodes(void **state)
{
    (void)state;
    cnv_pbw g = {0};
    const int64_t xd[2] = {1, 3};
    const int64_t cd[1] = {3};
    /* c1: value tensor; c2: value_floats; c3: value_int; c4: value_ints */
    size_t n = g_node_begin(&g, "Constant", "c1", "", "b");
    size_t a = cnv_pbw_begin(&g, 5);
    cnv_pbw_string(&g, 1, "value");
    cnv_pbw_int(&g, 20, 4);
    size_t t = t_begin(&g, 5, NULL, 1, 1, cd);
    const float bv[3] = {10, 20, 30};
    cnv_pbw_bytes(&g, 9, bv, sizeof bv);
    cnv_pbw_end(&g, t);
    cnv_pbw_end(&g, a);
    cnv_pbw_end(&g, n);
    n = g_node_begin(&g, "Constant", "c2", "", "f");
    a = cnv_pbw_begin(&g, 5);
    cnv_pbw_string(&g, 1, "value_floats");
    cnv_pbw_int(&g, 20, 6);
    cnv_pbw_packed_floats(&g, 7, (const float[]){0.5f, -1.5f}, 2);
    cnv_pbw_end(&g, a);
    cnv_pbw_end(&g, n);
    n = g_node_begin(&g, "Constant", "c3", "", "i");
    attr_int(&g, "value_int", -7);
    cnv_pbw_end(&g, n);
    n = g_node_begin(&g, "Constant", "c4", "", "is");
    a = cnv_pbw_begin(&g, 5);
    cnv_pbw_string(&g, 1, "value_ints");
    cnv_pbw_int(&g, 20, 7);
    cnv_pbw_int(&g, 8, 4); /* unpacked ints */
    cnv_pbw_int(&g, 8, -1);
    cnv_pbw_end(&g, a);
    cnv_pbw_end(&g, n);
    n = g_node_begin(&g, "Add", NULL, "x,b", "y");
    cnv_pbw_end(&g, n);
    g_input(&g, "x", 1, 2, xd);
    g_output(&g, "y");
    size_t len;
    uint8_t *buf = finish(&g, 13, &len);
    cnv_model *m = load_ok(buf, len);
    assert_int_equal(cnv_model_node_count(m), 1); /* Constants became tensors */
    const cnv_tensor_def *f = tensor(m, "f");
    assert_true(f->kind == CNV_T_CONST && f->dtype == CNV_FLOAT32 && f->shape.ndim == 1 &&
                f->shape.dims[0] == 2 && ((float *)f->data)[1] == -1.5f);
    const cnv_tensor_def *i = tensor(m, "i");
    assert_true(i->dtype == CNV_INT64 && i->shape.ndim == 0 && ((int64_t *)i->data)[0] == -7);
    const cnv_tensor_def *is = tensor(m, "is");
    assert_true(is->dtype == CNV_INT64 && is->shape.dims[0] == 2 && ((int64_t *)is->data)[1] == -1);
    float y[3];
    run_1x3(m, (const float[]){1, 2, 3}, y);
    assert_true(y[0] == 11 && y[1] == 22 && y[2] == 33);
    cnv_model_free(m);
    free(buf);
}

/* Conv attributes (ints) and metadata reach the model. */
static void attributes_and_meta(void **state)
{
    (void)state;
    cnv_pbw g = {0};
    const int64_t xd[4] = {-1, 1, 5, 5};
    const int64_t wd[4] = {1, 1, 3, 3};
    float wv[9];
    for (int i = 0; i < 9; i++)
        wv[i] = 1.0f;
    size_t n = g_node_begin(&g, "Conv", "conv", "x,w", "y");
    size_t a = cnv_pbw_begin(&g, 5);
    cnv_pbw_string(&g, 1, "pads");
    cnv_pbw_int(&g, 20, 7);
    cnv_pbw_packed_ints(&g, 8, (const int64_t[]){1, 1, 1, 1}, 4);
    cnv_pbw_end(&g, a);
    a = cnv_pbw_begin(&g, 5); /* no type field: IR 1 style, inferred */
    cnv_pbw_string(&g, 1, "strides");
    cnv_pbw_packed_ints(&g, 8, (const int64_t[]){2, 2}, 2);
    cnv_pbw_end(&g, a);
    cnv_pbw_end(&g, n);
    g_init_f32(&g, "w", 4, wd, wv, 9);
    g_input(&g, "x", 1, 4, xd);
    g_output(&g, "y");
    size_t len;
    uint8_t *buf = finish(&g, 11, &len);
    /* metadata_props after the opset */
    cnv_pbw m2 = {0};
    cnv_pbw_raw(&m2, buf, len);
    size_t kv = cnv_pbw_begin(&m2, 14);
    cnv_pbw_string(&m2, 1, "labels");
    cnv_pbw_string(&m2, 2, "a,b");
    cnv_pbw_end(&m2, kv);
    free(buf);
    cnv_model *m = load_ok(m2.buf, m2.len);
    assert_string_equal(cnv_model_get_meta(m, "labels"), "a,b");
    assert_int_equal(m->opset, 11);
    cnv_shape s;
    assert_int_equal(cnv_model_input_shape(m, 0, &s), CNV_OK);
    assert_true(s.ndim == 4 && s.dims[0] == -1 && s.dims[2] == 5);
    const cnv_node *nd = &m->nodes[0];
    assert_int_equal(nd->n_attrs, 2);
    assert_true(nd->attrs[0].type == CNV_ATTR_INTS && nd->attrs[0].n == 4);
    assert_true(nd->attrs[1].type == CNV_ATTR_INTS && nd->attrs[1].n == 2 && nd->attrs[1].ints[1] == 2);
    /* forward: 5x5 ones, 3x3 ones kernel, pad 1, stride 2 -> 3x3 of 4/6/9 */
    cnv_session *ses = NULL;
    assert_int_equal(cnv_session_create(m, &ses), CNV_OK);
    assert_int_equal(cnv_session_plan(ses, 1, 5, 5), CNV_OK);
    float *x = cnv_session_input(ses);
    for (int i = 0; i < 25; i++)
        x[i] = 1.0f;
    assert_int_equal(cnv_session_forward(ses), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(ses, tu_t(ses, "y"), &y, &ys), CNV_OK);
    assert_true(ys.ndim == 4 && ys.dims[2] == 3 && ys.dims[3] == 3);
    const float want[9] = {4, 6, 4, 6, 9, 6, 4, 6, 4};
    for (int i = 0; i < 9; i++)
        assert_true(y[i] == want[i]);
    cnv_session_free(ses);
    cnv_model_free(m);
    cnv_pbw_free(&m2);
}

/* --------------------------------------------------- malformed models */

/* The add model with b written by a custom function. */
#define BAD_B(fname, ...)            \
    static void fname(cnv_pbw *g)    \
    {                                \
        __VA_ARGS__                  \
    }

BAD_B(b_raw_short, {
    const int64_t d[1] = {3};
    size_t t = t_begin(g, 5, "bias", 1, 1, d);
    cnv_pbw_bytes(g, 9, "12345678", 8);
    cnv_pbw_end(g, t);
})
BAD_B(b_raw_long, {
    const int64_t d[1] = {3};
    size_t t = t_begin(g, 5, "bias", 1, 1, d);
    cnv_pbw_bytes(g, 9, "1234567890123456", 16);
    cnv_pbw_end(g, t);
})
BAD_B(b_float_count, {
    const int64_t d[1] = {3};
    size_t t = t_begin(g, 5, "bias", 1, 1, d);
    cnv_pbw_packed_floats(g, 4, (const float[]){1, 2}, 2);
    cnv_pbw_end(g, t);
})
BAD_B(b_no_data, {
    const int64_t d[1] = {3};
    size_t t = t_begin(g, 5, "bias", 1, 1, d);
    cnv_pbw_end(g, t);
})
BAD_B(b_both, {
    const int64_t d[1] = {1};
    size_t t = t_begin(g, 5, "bias", 1, 1, d);
    cnv_pbw_float(g, 4, 1);
    cnv_pbw_bytes(g, 9, "1234", 4);
    cnv_pbw_end(g, t);
})
BAD_B(b_wrong_field, {
    const int64_t d[1] = {1};
    size_t t = t_begin(g, 5, "bias", 1, 1, d);
    cnv_pbw_int(g, 7, 1);
    cnv_pbw_end(g, t);
})
BAD_B(b_negative_dim, {
    const int64_t d[2] = {3, -1};
    size_t t = t_begin(g, 5, "bias", 1, 2, d);
    cnv_pbw_end(g, t);
})
BAD_B(b_overflow_dims, {
    const int64_t d[2] = {1LL << 40, 1LL << 40};
    size_t t = t_begin(g, 5, "bias", 1, 2, d);
    cnv_pbw_end(g, t);
})
BAD_B(b_zero_times_overflow, {
    const int64_t d[3] = {0, 1LL << 62, 1LL << 62};
    size_t t = t_begin(g, 5, "bias", 1, 3, d);
    cnv_pbw_end(g, t);
})
BAD_B(b_huge, {
    const int64_t d[2] = {1LL << 20, 1LL << 20};
    size_t t = t_begin(g, 5, "bias", 1, 2, d);
    cnv_pbw_end(g, t);
})
BAD_B(b_rank9, {
    const int64_t d[9] = {1, 1, 1, 1, 1, 1, 1, 1, 3};
    size_t t = t_begin(g, 5, "bias", 1, 9, d);
    cnv_pbw_bytes(g, 9, "123456789012", 12);
    cnv_pbw_end(g, t);
})
BAD_B(b_bool, {
    const int64_t d[1] = {3};
    size_t t = t_begin(g, 5, "bias", 9, 1, d);
    cnv_pbw_bytes(g, 9, "\1\0\1", 3);
    cnv_pbw_end(g, t);
})
BAD_B(b_dtype99, {
    const int64_t d[1] = {3};
    size_t t = t_begin(g, 5, "bias", 99, 1, d);
    cnv_pbw_bytes(g, 9, "123", 3);
    cnv_pbw_end(g, t);
})
BAD_B(b_dtype0, {
    const int64_t d[1] = {3};
    size_t t = t_begin(g, 5, "bias", 0, 1, d);
    cnv_pbw_bytes(g, 9, "123456789012", 12);
    cnv_pbw_end(g, t);
})
BAD_B(b_external, {
    const int64_t d[1] = {3};
    size_t t = t_begin(g, 5, "bias", 1, 1, d);
    size_t kv = cnv_pbw_begin(g, 13);
    cnv_pbw_string(g, 1, "location");
    cnv_pbw_string(g, 2, "/etc/passwd");
    cnv_pbw_end(g, kv);
    cnv_pbw_int(g, 14, 1);
    cnv_pbw_end(g, t);
})
BAD_B(b_no_name, {
    const int64_t d[1] = {3};
    const float b[3] = {1, 2, 3};
    size_t t = t_begin(g, 5, NULL, 1, 1, d);
    cnv_pbw_bytes(g, 9, b, 12);
    cnv_pbw_end(g, t);
})
BAD_B(b_name_nul, {
    const int64_t d[1] = {3};
    const float b[3] = {1, 2, 3};
    size_t t = t_begin(g, 5, NULL, 1, 1, d);
    cnv_pbw_bytes(g, 8, "b\0x", 3);
    cnv_pbw_bytes(g, 9, b, 12);
    cnv_pbw_end(g, t);
})
BAD_B(b_dims_wire, {
    size_t t = cnv_pbw_begin(g, 5);
    cnv_pbw_float(g, 1, 3.0f); /* dims as fixed32 */
    cnv_pbw_end(g, t);
})

static void bad_tensors(void **state)
{
    (void)state;
    static const struct {
        const char *label;
        init_fn fn;
        cnv_status st;
        const char *w1, *w2;
    } cases[] = {
        {"raw_data shorter", b_raw_short, CNV_ERR_FORMAT, "'bias'", "raw_data holds 8 bytes"},
        {"raw_data longer", b_raw_long, CNV_ERR_FORMAT, "'bias'", "raw_data holds 16 bytes"},
        {"float_data count", b_float_count, CNV_ERR_FORMAT, "'bias'", "2 values"},
        {"no data", b_no_data, CNV_ERR_FORMAT, "'bias'", "0 values"},
        {"raw and typed", b_both, CNV_ERR_FORMAT, "'bias'", "both"},
        {"values in wrong field", b_wrong_field, CNV_ERR_FORMAT, "'bias'", "another type"},
        {"negative dim", b_negative_dim, CNV_ERR_FORMAT, "'bias'", "negative"},
        {"dims overflow", b_overflow_dims, CNV_ERR_FORMAT, "'bias'", "overflows"},
        {"0 x 2^62 x 2^62", b_zero_times_overflow, CNV_ERR_FORMAT, "'bias'", "overflows"},
        {"2^40 elements", b_huge, CNV_ERR_UNSUPPORTED, "'bias'", "limit"},
        {"rank 9", b_rank9, CNV_ERR_UNSUPPORTED, "'bias'", "rank 9"},
        {"BOOL", b_bool, CNV_ERR_UNSUPPORTED, "'bias'", "BOOL"},
        {"data type 99", b_dtype99, CNV_ERR_UNSUPPORTED, "'bias'", "unknown (99)"},
        {"data type 0", b_dtype0, CNV_ERR_FORMAT, "'bias'", "no data_type"},
        {"external data", b_external, CNV_ERR_UNSUPPORTED, "'bias'", "external"},
        {"initializer without name", b_no_name, CNV_ERR_FORMAT, "initializer", "no name"},
        {"name with NUL", b_name_nul, CNV_ERR_FORMAT, "NUL", NULL},
        {"dims as fixed32", b_dims_wire, CNV_ERR_FORMAT, "dims", "wire type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        uint8_t *buf = add_model(cases[i].fn, &len);
        load_fails(buf, len, cases[i].st, cases[i].w1, cases[i].w2, cases[i].label);
        free(buf);
    }
}

static void zero_sized_initializer(void **state)
{
    (void)state;
    cnv_pbw g = {0};
    const int64_t xd[2] = {1, 3}, zd[2] = {0, 4};
    size_t n = g_node_begin(&g, "Relu", "r", "x", "y");
    cnv_pbw_end(&g, n);
    size_t t = t_begin(&g, 5, "empty", 1, 2, zd);
    cnv_pbw_end(&g, t);
    g_input(&g, "x", 1, 2, xd);
    g_output(&g, "y");
    size_t len;
    uint8_t *buf = finish(&g, 13, &len);
    cnv_model *m = load_ok(buf, len);
    const cnv_tensor_def *e = tensor(m, "empty");
    assert_true(e->kind == CNV_T_CONST && e->shape.ndim == 2 && e->shape.dims[0] == 0);
    cnv_model_free(m);
    free(buf);
}

/* A model of one node; `op`, inputs and the graph input type vary. */
static uint8_t *one_node(const char *op, const char *domain, const char *ins, int x_elem,
                         int64_t opset, size_t *len)
{
    cnv_pbw g = {0};
    const int64_t xd[2] = {1, 3};
    size_t n = g_node_begin(&g, op, "n1", ins, "y");
    if (domain)
        cnv_pbw_string(&g, 7, domain);
    cnv_pbw_end(&g, n);
    g_input(&g, "x", x_elem, 2, xd);
    g_output(&g, "y");
    return finish(&g, opset, len);
}

static void bad_graphs(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf;
    buf = one_node("FancyOp", NULL, "x", 1, 13, &len);
    load_fails(buf, len, CNV_ERR_UNSUPPORTED, "'n1'", "FancyOp", "unknown op");
    free(buf);
    buf = one_node("Relu", NULL, "x", 1, 0, &len);
    load_fails(buf, len, CNV_ERR_FORMAT, "opset", NULL, "missing opset");
    free(buf);
    /* Only a foreign domain imported: its nodes are beyond us, a default
     * domain node without its import is malformed. */
    cnv_pbw g = {0};
    const int64_t xd[2] = {1, 3};
    size_t n = g_node_begin(&g, "Adagrad", "train", "x", "y");
    cnv_pbw_string(&g, 7, "ai.onnx.preview.training");
    cnv_pbw_end(&g, n);
    g_input(&g, "x", 1, 2, xd);
    g_output(&g, "y");
    buf = finish_domain(&g, "ai.onnx.preview.training", 1, &len);
    load_fails(buf, len, CNV_ERR_UNSUPPORTED, "'train'", "ai.onnx.preview.training", "foreign-only model");
    free(buf);
    n = g_node_begin(&g, "Relu", "r", "x", "y");
    cnv_pbw_end(&g, n);
    g_input(&g, "x", 1, 2, xd);
    g_output(&g, "y");
    buf = finish_domain(&g, "com.example", 1, &len);
    load_fails(buf, len, CNV_ERR_FORMAT, "'r'", "opset_import", "default node, foreign opset");
    free(buf);

    buf = one_node("Relu", NULL, "nowhere", 1, 13, &len);
    load_fails(buf, len, CNV_ERR_FORMAT, "'nowhere'", "'n1'", "dangling input");
    free(buf);
    buf = one_node("Relu", "com.microsoft", "x", 1, 13, &len);
    load_fails(buf, len, CNV_ERR_UNSUPPORTED, "com.microsoft", "'n1'", "custom domain");
    free(buf);
    buf = one_node("Relu", "ai.onnx", "x", 1, 13, &len); /* the default, spelled out */
    cnv_model_free(load_ok(buf, len));
    free(buf);
    buf = one_node("Relu", NULL, "x", 7, 13, &len);
    load_fails(buf, len, CNV_ERR_UNSUPPORTED, "'x'", "INT64", "int64 graph input");
    free(buf);
    buf = one_node(NULL, NULL, "x", 1, 13, &len);
    load_fails(buf, len, CNV_ERR_FORMAT, "op_type", NULL, "no op_type");
    free(buf);

    /* A graph output nobody produces. */
    n = g_node_begin(&g, "Relu", "r", "x", "y");
    cnv_pbw_end(&g, n);
    g_input(&g, "x", 1, 2, xd);
    g_output(&g, "z");
    buf = finish(&g, 13, &len);
    load_fails(buf, len, CNV_ERR_NOT_FOUND, "'z'", NULL, "dangling output");
    free(buf);

    /* An attribute of type GRAPH (If/Loop bodies). */
    n = g_node_begin(&g, "Relu", "r", "x", "y");
    size_t a = cnv_pbw_begin(&g, 5);
    cnv_pbw_string(&g, 1, "body");
    cnv_pbw_int(&g, 20, 5);
    cnv_pbw_bytes(&g, 6, "", 0);
    cnv_pbw_end(&g, a);
    cnv_pbw_end(&g, n);
    g_input(&g, "x", 1, 2, xd);
    g_output(&g, "y");
    buf = finish(&g, 13, &len);
    load_fails(buf, len, CNV_ERR_UNSUPPORTED, "'body'", "GRAPH", "GRAPH attribute");
    free(buf);

    /* Rank 9 graph input. */
    const int64_t d9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    n = g_node_begin(&g, "Relu", "r", "x", "y");
    cnv_pbw_end(&g, n);
    g_input(&g, "x", 1, 9, d9);
    g_output(&g, "y");
    buf = finish(&g, 13, &len);
    load_fails(buf, len, CNV_ERR_UNSUPPORTED, "'x'", "rank 9", "rank 9 input");
    free(buf);

    /* Two initializers of one name: the builder's argument error becomes
     * a malformed file. */
    const int64_t bd[1] = {3};
    const float bv[3] = {1, 2, 3};
    n = g_node_begin(&g, "Add", "add", "x,b", "y");
    cnv_pbw_end(&g, n);
    g_init_f32(&g, "b", 1, bd, bv, 3);
    g_init_f32(&g, "b", 1, bd, bv, 3);
    g_input(&g, "x", 1, 2, xd);
    g_output(&g, "y");
    buf = finish(&g, 13, &len);
    load_fails(buf, len, CNV_ERR_FORMAT, "'b'", "exists already", "duplicate initializer");
    free(buf);

    /* Not a model at all: an empty buffer, one byte, text, no graph. */
    load_fails((const uint8_t *)"", 0, CNV_ERR_FORMAT, "empty", NULL, "empty buffer");
    load_fails((const uint8_t *)"\x08", 1, CNV_ERR_FORMAT, NULL, NULL, "one byte");
    load_fails((const uint8_t *)"hello world\n", 12, CNV_ERR_FORMAT, NULL, NULL, "text");
    load_fails((const uint8_t *)"\x08\x08", 2, CNV_ERR_FORMAT, "no graph", NULL, "no graph");
}

/* The conformance runner's way to feed integer inputs: a binding turns
 * the k-th graph input into a constant. */
static void bound_inputs(void **state)
{
    (void)state;
    cnv_pbw g = {0};
    const int64_t xd[2] = {2, 3}, sd[1] = {2};
    size_t n = g_node_begin(&g, "Reshape", "r", "x,shape", "y");
    cnv_pbw_end(&g, n);
    g_input(&g, "x", 1, 2, xd);
    g_input(&g, "shape", 7, 1, sd);
    g_output(&g, "y");
    size_t len;
    uint8_t *buf = finish(&g, 13, &len);
    load_fails(buf, len, CNV_ERR_UNSUPPORTED, "'shape'", "INT64", "unbound int64 input");
    const int64_t shape[2] = {3, 2};
    cnv_onnx_bind binds[2];
    memset(binds, 0, sizeof binds);
    binds[1].dtype = CNV_INT64;
    binds[1].shape = tu_shape(1, 2);
    binds[1].data = shape;
    cnv_model *m = NULL;
    if (cnv_onnx_load(buf, len, binds, 2, &m) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    assert_int_equal(cnv_model_input_count(m), 1);
    const cnv_tensor_def *t = tensor(m, "shape");
    assert_true(t->kind == CNV_T_CONST && t->dtype == CNV_INT64 && ((int64_t *)t->data)[0] == 3);
    cnv_session *s = NULL;
    cnv_shape in = tu_shape(2, 2, 3), out;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_plan_shapes(s, 1, &in), CNV_OK);
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), NULL, &out), CNV_OK);
    assert_true(out.ndim == 2 && out.dims[0] == 3 && out.dims[1] == 2);
    cnv_session_free(s);
    cnv_model_free(m);
    free(buf);
}

/* ------------------------------------------- truncation and mutations */

/* Every proper prefix must fail (the models here end with opset_import, so
 * no prefix is a complete model), and every single-byte mutation must
 * return without a crash; ASan (make test SANITIZE=1) checks the reads. */
static void torture(const uint8_t *buf, size_t len, const char *label)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    size_t ok = 0, failed = 0;
    for (size_t n = 0; n < len; n++) {
        memcpy(copy, buf, n); /* a fresh heap block of exactly n bytes */
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, buf, n);
        cnv_model *m = NULL;
        cnv_status st = cnv_model_load_onnx_memory(exact, n, &m);
        if (st == CNV_OK)
            fail_msg("%s: prefix of %zu/%zu bytes loaded", label, n, len);
        assert_true(strlen(cnv_model_errmsg(m)) > 0);
        cnv_model_free(m);
        free(exact);
    }
    static const uint8_t values[] = {0x00, 0xff, 0x80, 0x7f, 0x01};
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof values; k++) {
            memcpy(copy, buf, len);
            copy[i] = (uint8_t)(k == 4 ? buf[i] ^ 0x01 : values[k]);
            cnv_model *m = NULL;
            cnv_status st = cnv_model_load_onnx_memory(copy, len, &m);
            if (st == CNV_OK) {
                ok++;
            } else {
                failed++;
                assert_true(strlen(cnv_model_errmsg(m)) > 0);
            }
            cnv_model_free(m);
        }
    }
    printf("%s: %zu prefixes all refused; %zu mutations loaded, %zu refused, no crash\n", label,
           len, ok, failed);
    free(copy);
}

static void b_raw2(cnv_pbw *g)
{
    b_raw(g);
}

static void truncation_and_mutation(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = add_model(b_raw2, &len);
    torture(buf, len, "in-memory Add model");
    free(buf);
    void *data;
    size_t size;
    cnv_err e;
    const char *path = NODE_DIR "/test_conv_with_strides_padding/model.onnx";
    if (cnv_read_file(path, 1 << 20, &data, &size, &e) == CNV_OK) {
        torture(data, size, "test_conv_with_strides_padding");
        cnv_free(data);
    } else {
        printf("skipping the real file: %s\n", e.msg);
    }
}

/* ------------------------------------------------- allocation failures */

static long g_alloc_left; /* allocations until the failing one; -1 never */

static void *failing_malloc(void *user, size_t n)
{
    (void)user;
    if (g_alloc_left == 0)
        return NULL;
    if (g_alloc_left > 0)
        g_alloc_left--;
    return malloc(n);
}

static void plain_free(void *user, void *p)
{
    (void)user;
    free(p);
}

static void allocation_failures(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = add_model(b_float_data_mixed, &len);
    const cnv_allocator a = {failing_malloc, plain_free, NULL};
    cnv_set_allocator(&a);
    long k;
    int nomem = 0;
    for (k = 0; k < 10000; k++) {
        g_alloc_left = k;
        cnv_model *m = NULL;
        cnv_status st = cnv_model_load_onnx_memory(buf, len, &m);
        g_alloc_left = -1;
        cnv_model_free(m);
        if (st == CNV_OK)
            break;
        if (st != CNV_ERR_NOMEM) {
            cnv_set_allocator(NULL);
            fail_msg("allocation %ld failing gave %s, not out of memory", k, cnv_status_string(st));
        }
        nomem++;
    }
    cnv_set_allocator(NULL);
    printf("load succeeds from %ld allocations; each earlier failure gave NOMEM (%d runs)\n", k, nomem);
    assert_true(k > 0 && k < 10000);
    free(buf);
}

/* ------------------------------------------------------- real files */

static int read_pb(const char *path, cnv_dtype *dt, cnv_shape *sh, void **v)
{
    void *data;
    size_t size;
    cnv_err e;
    char err[256];
    if (cnv_read_file(path, 1 << 28, &data, &size, &e) != CNV_OK)
        fail_msg("%s", e.msg);
    cnv_status st = cnv_tensor_read_pb(data, size, dt, sh, v, NULL, err, sizeof err);
    cnv_free(data);
    if (st != CNV_OK)
        fail_msg("%s: %s", path, err);
    return 0;
}

static void real_conv_model(void **state)
{
    (void)state;
    const char *dir = NODE_DIR "/test_conv_with_strides_padding";
    char path[512];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (access(path, R_OK) != 0) {
        printf("libonnx-testdata is not installed (%s): skipped\n", path);
        skip();
    }
    cnv_model *m = NULL;
    if (cnv_model_load_onnx(path, &m) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    assert_int_equal(cnv_model_node_count(m), 1);
    assert_string_equal(cnv_model_node_op(m, 0), "Conv");
    assert_int_equal(cnv_model_input_count(m), 2); /* x and W are both inputs here */
    cnv_shape shapes[2];
    void *vals[2];
    cnv_dtype dt;
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%d.pb", dir, i);
        read_pb(path, &dt, &shapes[i], &vals[i]);
        assert_int_equal(dt, CNV_FLOAT32);
    }
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    if (cnv_session_plan_shapes(s, 2, shapes) != CNV_OK)
        fail_msg("%s", cnv_session_errmsg(s));
    for (int i = 0; i < 2; i++) {
        float *d;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, tu_input_name(m, i)), &d, NULL), CNV_OK);
        memcpy(d, vals[i], (size_t)cnv_shape_count(&shapes[i]) * sizeof(float));
        cnv_free_buffer(vals[i]);
    }
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    cnv_shape ws, ys;
    void *want;
    snprintf(path, sizeof path, "%s/test_data_set_0/output_0.pb", dir);
    read_pb(path, &dt, &ws, &want);
    float *y;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, cnv_model_tensor_name(m, cnv_model_output(m, 0))), &y, &ys), CNV_OK);
    assert_true(cnv_shape_equal(&ys, &ws));
    int64_t at;
    double err = tu_max_rel_diff(y, want, cnv_shape_count(&ws), &at);
    printf("test_conv_with_strides_padding: max rel error %.3g over %lld values\n", err,
           (long long)cnv_shape_count(&ws));
    assert_true(err < 1e-5);
    cnv_free_buffer(want);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* Every model of the ONNX node tests is valid: each must load or be
 * refused as UNSUPPORTED, never as malformed (a reader bug) or worse. */
static void all_node_models(void **state)
{
    (void)state;
    DIR *d = opendir(NODE_DIR);
    if (!d) {
        printf("libonnx-testdata is not installed (%s): skipped\n", NODE_DIR);
        skip();
    }
    struct dirent *ent;
    int ok = 0, unsupported = 0, bad = 0;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s/model.onnx", NODE_DIR, ent->d_name);
        if (access(path, R_OK) != 0)
            continue;
        cnv_model *m = NULL;
        cnv_status st = cnv_model_load_onnx(path, &m);
        if (st == CNV_OK) {
            ok++;
        } else if (st == CNV_ERR_UNSUPPORTED) {
            unsupported++;
        } else {
            bad++;
            printf("  %s: %s: %s\n", ent->d_name, cnv_status_string(st), cnv_model_errmsg(m));
        }
        cnv_model_free(m);
    }
    closedir(d);
    printf("ONNX node test models: %d load, %d unsupported, %d refused otherwise\n", ok, unsupported, bad);
    assert_int_equal(bad, 0);
    assert_true(ok > 50);
}

/* A model read from a file keeps its large FLOAT weights where they lie in
 * the file's buffer (moved to alignment), the others decoded: every
 * constant must equal what the copying path (the same bytes from memory)
 * gives, and at least one must have been kept in place. */
static void weights_in_place(void **state)
{
    (void)state;
    const char *path = "tests/zoo/mnasnet_op13.onnx";
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    void *bytes = malloc((size_t)n);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    cnv_model *a = NULL, *b = NULL;
    assert_int_equal(cnv_model_load_onnx(path, &a), CNV_OK);
    assert_int_equal(cnv_model_load_onnx_memory(bytes, (size_t)n, &b), CNV_OK);
    assert_int_equal(a->n_tensors, b->n_tensors);
    int kept = 0, consts = 0;
    for (int t = 0; t < a->n_tensors; t++) {
        const cnv_tensor_def *x = &a->tensors[t], *y = &b->tensors[t];
        assert_string_equal(x->name, y->name);
        assert_int_equal(y->in_blob, 0);
        if (x->kind != CNV_T_CONST)
            continue;
        consts++;
        kept += x->in_blob;
        if (x->in_blob)
            assert_true((uintptr_t)x->data % 4 == 0 && (char *)x->data >= (char *)a->blob);
        int64_t count = cnv_shape_count(&x->shape);
        assert_memory_equal(x->data, y->data, (size_t)count * (x->dtype == CNV_INT64 ? 8 : 4));
    }
    printf("%s: %d constants, %d used where they lie in the file's buffer\n", path, consts, kept);
    assert_true(kept > 0);
    free(bytes);
    cnv_model_free(a);
    cnv_model_free(b);
}

static void files(void **state)
{
    (void)state;
    char dir[] = "/tmp/cnv_onnx_readXXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    cnv_model *m = NULL;
    /* missing file: IO, and the path in the message */
    snprintf(path, sizeof path, "%s/missing.onnx", dir);
    assert_int_equal(cnv_model_load_onnx(path, &m), CNV_ERR_IO);
    assert_non_null(strstr(cnv_model_errmsg(m), "missing.onnx"));
    cnv_model_free(m);
    /* empty and one-byte files */
    for (int n = 0; n <= 1; n++) {
        snprintf(path, sizeof path, "%s/f%d.onnx", dir, n);
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        fwrite("\x08", 1, (size_t)n, fp);
        fclose(fp);
        assert_int_equal(cnv_model_load_onnx(path, &m), CNV_ERR_FORMAT);
        printf("%d-byte file: %s\n", n, cnv_model_errmsg(m));
        assert_non_null(strstr(cnv_model_errmsg(m), path));
        cnv_model_free(m);
        unlink(path);
    }
    /* a directory */
    assert_int_equal(cnv_model_load_onnx(dir, &m), CNV_ERR_IO);
    printf("directory: %s\n", cnv_model_errmsg(m));
    cnv_model_free(m);
    rmdir(dir);
    assert_int_equal(cnv_model_load_onnx(path, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_model_load_onnx(NULL, &m), CNV_ERR_INVALID_ARG);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(add_variants),
        cmocka_unit_test(half_values),
        cmocka_unit_test(int_tensors),
        cmocka_unit_test(tensor_pb_errors),
        cmocka_unit_test(constant_nodes),
        cmocka_unit_test(attributes_and_meta),
        cmocka_unit_test(bad_tensors),
        cmocka_unit_test(zero_sized_initializer),
        cmocka_unit_test(bad_graphs),
        cmocka_unit_test(bound_inputs),
        cmocka_unit_test(truncation_and_mutation),
        cmocka_unit_test(allocation_failures),
        cmocka_unit_test(real_conv_model),
        cmocka_unit_test(all_node_models),
        cmocka_unit_test(files),
        cmocka_unit_test(weights_in_place),
        cmocka_unit_test(input_with_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
