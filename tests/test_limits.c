/* Bounded work and memory for any model (issue "Untrusted input, round
 * 2"): a plan that needs more than the memory limit is refused before
 * anything is allocated, with the need and the limit in its message; the
 * limit's setter, default and environment variable; a Concat of one input
 * a million times and a chain of 200,000 nodes load, plan and run in
 * linear time (each took minutes when a node's inputs were compared
 * pairwise: 1,000,000 copies ran past 400 s); ranks above CNV_MAX_DIMS are
 * refused where a caller hands a shape in; preprocessing makes only the
 * crop it keeps (a 2x16384 image resized to a 256 short side was first
 * made whole: 256x2097152 pixels, 1.6 GB and 13 s, for a 224x224 crop);
 * counts of nodes, tensors, node inputs, attributes and metadata are capped
 * (CNV_MAX_NODES ...) before anything is stored. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "onnx/pb.h"

static void memory_limit(void **state)
{
    (void)state;
    size_t dflt = cnv_get_memory_limit();
    assert_true(dflt > 0);
    /* x (1,1,1024,1024) -> Relu: 4 MiB for each of x, y and their gradients */
    cnv_shape xs = tu_shape(4, 1, 1, 1024, 1024);
    tu_tensor in[1] = {{"x", xs, NULL, 0}};
    cnv_model *m = tu_one_node("Relu", 1, in, 0, NULL);
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_set_memory_limit((size_t)8 << 20);
    assert_int_equal(cnv_get_memory_limit(), (size_t)8 << 20);
    assert_int_equal(cnv_session_plan_shapes(s, 1, &xs), CNV_ERR_NOMEM);
    printf("limit 8 MiB: %s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "the memory limit is 8.0 MiB"));
    assert_non_null(strstr(cnv_session_errmsg(s), "needs 16.0 MiB"));
    cnv_set_memory_limit((size_t)17 << 20);
    assert_int_equal(cnv_session_plan_shapes(s, 1, &xs), CNV_OK);
    cnv_session_free(s);
    /* the environment variable is the default's */
    setenv("CNNVIZ_MAX_MEMORY", "3M", 1);
    cnv_set_memory_limit(0);
    assert_int_equal(cnv_get_memory_limit(), (size_t)3 << 20);
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_plan_shapes(s, 1, &xs), CNV_ERR_NOMEM);
    cnv_session_free(s);
    setenv("CNNVIZ_MAX_MEMORY", "lots", 1); /* malformed: ignored */
    assert_int_equal(cnv_get_memory_limit(), dflt);
    unsetenv("CNNVIZ_MAX_MEMORY");
    assert_int_equal(cnv_get_memory_limit(), dflt);
    cnv_model_free(m);
}

static void concat_of_one_input_many_times(void **state)
{
    (void)state;
    enum { N = 1000000 };
    const char **ins = malloc(N * sizeof *ins);
    assert_non_null(ins);
    for (int i = 0; i < N; i++)
        ins[i] = "x";
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(2, 1, 1);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    cnv_attr axis = tu_attr_int("axis", 1);
    const char *out = "y";
    assert_int_equal(cnv_model_add_node(m, "Concat", "c", N, ins, 1, &out, 1, &axis), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_plan_shapes(s, 1, &xs), CNV_OK);
    cnv_session_input(s)[0] = 2.5f;
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    assert_true(ys.dims[1] == N && y[0] == 2.5f && y[N - 1] == 2.5f);
    float *seed = malloc(N * sizeof *seed);
    assert_non_null(seed);
    for (int i = 0; i < N; i++)
        seed[i] = 0.5f;
    assert_int_equal(cnv_session_backward(s, tu_t(s, "y"), seed, N), CNV_OK);
    /* x's gradient sums a million halves: exact in float */
    printf("Concat of x a million times: dx = %.1f (want %.1f)\n", cnv_session_input_grad(s)[0], 0.5 * N);
    assert_true(cnv_session_input_grad(s)[0] == 0.5f * N);
    free(seed);
    free(ins);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void long_chain(void **state)
{
    (void)state;
    enum { N = 200000 };
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(2, 1, 4);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    char a[32] = "x", b[32];
    for (int i = 0; i < N; i++) {
        snprintf(b, sizeof b, "t%d", i);
        const char *in = a, *out = b;
        if (cnv_model_add_node(m, "Relu", NULL, 1, &in, 1, &out, 0, NULL) != CNV_OK)
            fail_msg("node %d: %s", i, cnv_model_errmsg(m));
        memcpy(a, b, sizeof a);
    }
    assert_int_equal(cnv_model_add_output(m, a), CNV_OK);
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_plan_shapes(s, 1, &xs), CNV_OK);
    float *x = cnv_session_input(s);
    x[0] = -1, x[1] = 2, x[2] = 0, x[3] = 3;
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y, seed[4] = {1, 1, 1, 1};
    assert_int_equal(cnv_session_tensor(s, tu_t(s, a), &y, NULL), CNV_OK);
    assert_true(y[0] == 0 && y[1] == 2 && y[3] == 3);
    assert_int_equal(cnv_session_backward(s, tu_t(s, a), seed, 4), CNV_OK);
    const float *g = cnv_session_input_grad(s);
    assert_true(g[0] == 0 && g[1] == 1 && g[2] == 0 && g[3] == 1);
    printf("a chain of %d Relu nodes: built, planned, run forward and backward\n", N);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void ranks_checked(void **state)
{
    (void)state;
    cnv_shape xs = tu_shape(2, 1, 4);
    tu_tensor in[1] = {{"x", xs, NULL, 0}};
    cnv_model *m = tu_one_node("Relu", 1, in, 0, NULL);
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_shape bad = xs;
    bad.ndim = 1000; /* read past dims before, and echoed stack bytes */
    assert_int_equal(cnv_session_plan_shapes(s, 1, &bad), CNV_ERR_INVALID_ARG);
    printf("rank 1000: %s\n", cnv_session_errmsg(s));
    bad.ndim = -3;
    assert_int_equal(cnv_session_plan_shapes(s, 1, &bad), CNV_ERR_INVALID_ARG);
    char buf[256];
    assert_int_equal(cnv_model_infer_shapes(m, 1, &bad, NULL, 0, NULL, 0, buf, sizeof buf), CNV_ERR_INVALID_ARG);
    bad.ndim = 9;
    assert_true(cnv_shape_count(&bad) < 0);
    assert_int_equal(cnv_model_add_input(m, "z", &bad), CNV_ERR_SHAPE);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* The allocator hook sees every image buffer: the largest one asked for. */
static size_t g_largest;

static void *note_malloc(void *user, size_t size)
{
    (void)user;
    if (size > g_largest)
        g_largest = size;
    return malloc(size);
}

static void note_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

static void fill(cnv_image *img, unsigned seed)
{
    for (size_t i = 0; i < (size_t)img->width * img->height * img->channels; i++) {
        seed = seed * 1103515245u + 12345u;
        img->data[i] = (unsigned char)(seed >> 16);
    }
}

static void crop_before_resize(void **state)
{
    (void)state;
    char err[256];
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, 3, 224, 224);
    /* the same pixels as the whole resize then torchvision's crop */
    const int sizes[][2] = {{480, 360}, {500, 375}, {360, 480}, {13, 9}, {300, 100}, {1000, 667}};
    for (int k = 0; k < 6; k++) {
        cnv_image in, whole, got;
        assert_int_equal(cnv_image_create(sizes[k][0], sizes[k][1], 3, &in, err, sizeof err), CNV_OK);
        fill(&in, (unsigned)k);
        int iw = in.width, ih = in.height, S = 256;
        int nw = iw <= ih ? S : (int)((double)S * iw / ih), nh = iw <= ih ? (int)((double)S * ih / iw) : S;
        if (nw < 224 || nh < 224) { /* grown so the crop fits (13x9, 300x100) */
            double sc = fmax(224.0 / iw, 224.0 / ih);
            nw = (int)ceil(iw * sc - 1e-9);
            nh = (int)ceil(ih * sc - 1e-9);
        }
        assert_int_equal(cnv_image_resize(&in, nw, nh, &whole, err, sizeof err), CNV_OK);
        assert_int_equal(cnv_image_prepare(&in, &pp, &got, err, sizeof err), CNV_OK);
        int left = (nw - 224) / 2, top = (nh - 224) / 2; /* even differences here, or odd halves even */
        if ((nw - 224) % 2 && left % 2)
            left++;
        if ((nh - 224) % 2 && top % 2)
            top++;
        int differ = 0;
        for (int y = 0; y < 224; y++)
            differ += memcmp(got.data + (size_t)y * 224 * 3, whole.data + ((size_t)(top + y) * nw + left) * 3,
                             224 * 3) != 0;
        printf("%dx%d -> %dx%d, crop at (%d, %d): %d rows differ\n", iw, ih, nw, nh, left, top, differ);
        assert_int_equal(differ, 0);
        cnv_image_free(&in);
        cnv_image_free(&whole);
        cnv_image_free(&got);
    }
    /* a 2x16384 image: only the crop is made */
    cnv_image tall, got;
    assert_int_equal(cnv_image_create(2, 16384, 3, &tall, err, sizeof err), CNV_OK);
    fill(&tall, 7);
    const cnv_allocator hook = {note_malloc, note_free, NULL};
    g_largest = 0;
    cnv_set_allocator(&hook);
    cnv_status st = cnv_image_prepare(&tall, &pp, &got, err, sizeof err);
    cnv_set_allocator(NULL);
    printf("2x16384 to 224x224: largest allocation %zu bytes (%s)\n", g_largest, err);
    assert_int_equal(st, CNV_OK);
    assert_true(g_largest <= (size_t)224 * 224 * 3);
    cnv_image_free(&got);
    cnv_image_free(&tall);
}

/* A ModelProto around a graph whose field `field` repeats `n` times with
 * the bytes `item` (or, field 0, metadata entries "k<i>" = "v"). */
static uint8_t *repeated(uint32_t field, const char *item, size_t item_len, size_t n, size_t *len)
{
    cnv_pbw g = {0}, m = {0};
    size_t node = cnv_pbw_begin(&g, 1); /* x -> Relu -> y */
    cnv_pbw_string(&g, 1, "x");
    cnv_pbw_string(&g, 2, "y");
    cnv_pbw_string(&g, 4, "Relu");
    cnv_pbw_end(&g, node);
    for (size_t i = 0; field && i < n; i++)
        cnv_pbw_bytes(&g, field, item, item_len);
    size_t in = cnv_pbw_begin(&g, 11); /* x: FLOAT [1] */
    cnv_pbw_string(&g, 1, "x");
    size_t type = cnv_pbw_begin(&g, 2), tensor = cnv_pbw_begin(&g, 1);
    cnv_pbw_int(&g, 1, 1);
    size_t shape = cnv_pbw_begin(&g, 2), dim = cnv_pbw_begin(&g, 1);
    cnv_pbw_int(&g, 1, 1);
    cnv_pbw_end(&g, dim);
    cnv_pbw_end(&g, shape);
    cnv_pbw_end(&g, tensor);
    cnv_pbw_end(&g, type);
    cnv_pbw_end(&g, in);
    size_t out = cnv_pbw_begin(&g, 12);
    cnv_pbw_string(&g, 1, "y");
    cnv_pbw_end(&g, out);
    cnv_pbw_int(&m, 1, 8);
    cnv_pbw_bytes(&m, 7, g.buf, g.len);
    size_t o = cnv_pbw_begin(&m, 8);
    cnv_pbw_string(&m, 1, "");
    cnv_pbw_int(&m, 2, 13);
    cnv_pbw_end(&m, o);
    for (size_t i = 0; !field && i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%zu", i);
        size_t e = cnv_pbw_begin(&m, 14);
        cnv_pbw_string(&m, 1, key);
        cnv_pbw_string(&m, 2, "v");
        cnv_pbw_end(&m, e);
    }
    assert_false(g.failed || m.failed);
    cnv_pbw_free(&g);
    *len = m.len;
    return m.buf;
}

static void refused(const uint8_t *buf, size_t len, const char *words, const char *label)
{
    cnv_model *m = NULL;
    cnv_status st = cnv_model_load_onnx_memory(buf, len, &m);
    printf("%s (%zu bytes): %s\n", label, len, cnv_model_errmsg(m));
    assert_int_equal(st, CNV_ERR_UNSUPPORTED);
    assert_non_null(strstr(cnv_model_errmsg(m), words));
    cnv_model_free(m);
}

static void model_counts(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf;
    /* a Relu node x -> y, then again (each a valid node of its own) */
    static const char relu[] = "\x0a\x01x\x12\x01y\x22\x04Relu";
    buf = repeated(1, relu, sizeof relu - 1, CNV_MAX_NODES, &len);
    refused(buf, len, "more than 1000000 nodes", "nodes");
    free(buf);
    /* empty initializers (an unnamed tensor each) */
    buf = repeated(5, "", 0, (size_t)CNV_MAX_TENSORS + 1, &len);
    refused(buf, len, "more than 4000000 initializers", "initializers");
    free(buf);
    buf = repeated(0, NULL, 0, CNV_MAX_META + 1, &len);
    refused(buf, len, "more than 10000 metadata entries", "metadata entries");
    free(buf);
    /* one node with 2^20 + 1 inputs, and one with 1025 attributes */
    cnv_pbw node = {0};
    for (int i = 0; i <= CNV_MAX_NODE_IO; i++)
        cnv_pbw_string(&node, 1, "x");
    buf = repeated(1, (const char *)node.buf, node.len, 1, &len);
    refused(buf, len, "the limit is 1048576", "node inputs");
    free(buf);
    cnv_pbw_free(&node);
    cnv_pbw attrs = {0};
    cnv_pbw_string(&attrs, 4, "Relu");
    for (int i = 0; i <= CNV_MAX_ATTRS; i++)
        cnv_pbw_bytes(&attrs, 5, "", 0);
    buf = repeated(1, (const char *)attrs.buf, attrs.len, 1, &len);
    refused(buf, len, "more than 1024 attributes", "attributes");
    free(buf);
    cnv_pbw_free(&attrs);
    /* metadata bytes, through the API */
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    size_t big = (size_t)CNV_MAX_META_BYTES / 2;
    char *v = malloc(big + 1);
    assert_non_null(v);
    memset(v, 'a', big);
    v[big] = 0;
    assert_int_equal(cnv_model_set_meta(m, "a", v), CNV_OK);
    assert_int_equal(cnv_model_set_meta(m, "b", v), CNV_ERR_UNSUPPORTED);
    printf("metadata bytes: %s\n", cnv_model_errmsg(m));
    assert_int_equal(cnv_model_set_meta(m, "a", "small"), CNV_OK); /* replacing frees its share */
    assert_int_equal(cnv_model_set_meta(m, "b", v), CNV_OK);
    free(v);
    cnv_model_free(m);
}

/* An input declared larger than an image may be: refused with its shape
 * (before, the CLI fell back to 224x224 and said that did not fit). */
static void input_larger_than_an_image(void **state)
{
    (void)state;
    const int64_t sides[2] = {65536, (int64_t)1 << 31};
    for (int k = 0; k < 2; k++) {
        cnv_shape xs = {4, {1, 3, sides[k], 8}}; /* tu_shape takes ints */
        tu_tensor in[1] = {{"x", xs, NULL, 0}};
        cnv_model *m = tu_one_node("Relu", 1, in, 0, NULL);
        cnv_preprocess pp;
        char err[256];
        assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_ERR_UNSUPPORTED);
        printf("%s\n", err);
        assert_non_null(strstr(err, k ? "1x3x2147483648x8" : "1x3x65536x8"));
        assert_non_null(strstr(err, "larger than 16384"));
        cnv_model_free(m);
    }
}

/* Values decoded at load count against the memory limit: an INT64 tensor
 * of one-byte varints takes 8 bytes a value (a 2 GiB file could ask for
 * 16 GiB; before, nothing bounded it). */
static void load_within_the_memory_limit(void **state)
{
    (void)state;
    enum { N = 8 << 20 }; /* 8 MiB of varints: 64 MiB decoded */
    uint8_t *zeros = calloc(N, 1);
    assert_non_null(zeros);
    cnv_pbw t = {0};
    cnv_pbw_int(&t, 1, N);
    cnv_pbw_int(&t, 2, 7); /* INT64 */
    cnv_pbw_bytes(&t, 7, zeros, N);
    cnv_pbw_string(&t, 8, "big");
    free(zeros);
    size_t len;
    uint8_t *buf = repeated(5, (const char *)t.buf, t.len, 1, &len);
    cnv_set_memory_limit((size_t)32 << 20);
    cnv_model *m = NULL;
    cnv_status st = cnv_model_load_onnx_memory(buf, len, &m);
    printf("initializer, limit 32 MiB: %s\n", cnv_model_errmsg(m));
    assert_int_equal(st, CNV_ERR_NOMEM);
    assert_non_null(strstr(cnv_model_errmsg(m), "memory limit of 32.0 MiB"));
    cnv_model_free(m);
    /* the same as a TensorProto file */
    cnv_dtype dt;
    cnv_shape sh;
    void *values = NULL;
    char err[256];
    assert_int_equal(cnv_tensor_read_pb(t.buf, t.len, &dt, &sh, &values, NULL, err, sizeof err), CNV_ERR_NOMEM);
    printf("TensorProto, limit 32 MiB: %s\n", err);
    cnv_set_memory_limit((size_t)128 << 20);
    st = cnv_model_load_onnx_memory(buf, len, &m);
    printf("limit 128 MiB: %s\n", cnv_model_errmsg(m));
    assert_int_equal(st, CNV_OK);
    cnv_model_free(m);
    cnv_set_memory_limit(0);
    free(buf);
    cnv_pbw_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(memory_limit),
        cmocka_unit_test(concat_of_one_input_many_times),
        cmocka_unit_test(long_chain),
        cmocka_unit_test(ranks_checked),
        cmocka_unit_test(crop_before_resize),
        cmocka_unit_test(model_counts),
        cmocka_unit_test(input_larger_than_an_image),
        cmocka_unit_test(load_within_the_memory_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
