/* What each fuzz target does with one input, shared by the libFuzzer
 * harnesses and tests/test_fuzz_regressions.c (which replays every input
 * the fuzzers ever crashed on). Each returns the first failing status (or
 * CNV_OK) so a test can assert on it; message receives its text. */
#ifndef FUZZ_RUN_H
#define FUZZ_RUN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnviz.h"
#include "engine/op.h"
#include "onnx/onnx.h"
#include "onnx/pb.h"

/* Keeps one run fast: inputs and the planned activations stay small. */
#define FUZZ_MAX_INPUT_ELEMS ((int64_t)1 << 16)

/* The declared shape with unknown dims made concrete: batch 1, other
 * unknown sizes 32 (a small image). 0 when it would be too large. */
static inline int fuzz_concrete_shape(const cnv_model *m, int i, cnv_shape *s)
{
    if (cnv_model_input_shape(m, i, s) != CNV_OK)
        return 0;
    int64_t count = 1;
    for (int d = 0; d < s->ndim; d++) {
        if (s->dims[d] < 0)
            s->dims[d] = d == 0 ? 1 : 32;
        if (s->dims[d] > FUZZ_MAX_INPUT_ELEMS)
            return 0;
        count *= s->dims[d];
        if (count > FUZZ_MAX_INPUT_ELEMS)
            return 0;
    }
    return 1;
}

/* An ONNX model from memory, planned for its declared input shapes (made
 * small), one forward pass and one backward pass from the first output
 * with parameter gradients on. Inputs of odd length are loaded as a file
 * is (cnv_onnx_load_owned on a copy: large weights used where they lie),
 * the others through the public memory loader. */
static inline cnv_status fuzz_run_onnx(const uint8_t *data, size_t size, char *message, size_t len)
{
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    cnv_shape shapes[4];
    float *seed = NULL;
    cnv_status st;
    if (size & 1) {
        void *copy = cnv_malloc(size);
        if (!copy)
            return CNV_ERR_NOMEM;
        memcpy(copy, data, size);
        st = cnv_onnx_load_owned(copy, size, &m);
    } else {
        st = cnv_model_load_onnx_memory(data, size, &m);
    }
    snprintf(message, len, "%s", cnv_model_errmsg(m));
    if (st != CNV_OK)
        goto done;
    int n_in = cnv_model_input_count(m);
    if (n_in < 1 || n_in > 4)
        goto done;
    for (int i = 0; i < n_in; i++)
        if (!fuzz_concrete_shape(m, i, &shapes[i]))
            goto done;
    if ((st = cnv_session_create(m, &s)) != CNV_OK)
        goto done;
    cnv_session_set_param_grads(s, 1);
    if ((st = cnv_session_plan_shapes(s, n_in, shapes)) != CNV_OK)
        goto session_done;
    for (int i = 0; i < n_in; i++) {
        float *x;
        cnv_shape sh;
        if ((st = cnv_session_tensor(s, cnv_model_input(m, i), &x, &sh)) != CNV_OK)
            goto session_done;
        int64_t n = cnv_shape_count(&sh);
        for (int64_t k = 0; k < n; k++)
            x[k] = (float)((k * 7919 + i * 31) % 17) / 8.0f - 1.0f;
    }
    if ((st = cnv_session_forward(s)) != CNV_OK || cnv_model_output_count(m) < 1)
        goto session_done;
    int out = cnv_model_output(m, 0);
    float *y;
    cnv_shape ysh;
    if ((st = cnv_session_tensor(s, out, &y, &ysh)) != CNV_OK)
        goto session_done;
    int64_t ny = cnv_shape_count(&ysh);
    if (ny > 0 && ny <= ((int64_t)1 << 24) && (seed = malloc((size_t)ny * sizeof *seed))) {
        for (int64_t k = 0; k < ny; k++)
            seed[k] = 1.0f;
        st = cnv_session_backward(s, out, seed, (size_t)ny);
    }
session_done:
    snprintf(message, len, "%s", cnv_session_errmsg(s));
done:
    free(seed);
    cnv_session_free(s);
    cnv_model_free(m);
    return st;
}

/* One serialized TensorProto; every element the shape promises is read. */
static inline cnv_status fuzz_run_tensor_pb(const uint8_t *data, size_t size, char *message, size_t len)
{
    cnv_dtype dt = CNV_FLOAT32;
    cnv_shape sh;
    void *values = NULL;
    char *name = NULL;
    memset(&sh, 0, sizeof sh);
    cnv_status st = cnv_tensor_read_pb(data, size, &dt, &sh, &values, &name, message, len);
    if (st == CNV_OK) {
        int64_t n = cnv_shape_count(&sh);
        size_t esz = dt == CNV_INT64 ? 8 : 4;
        volatile uint8_t acc = 0;
        if (n > 0)
            for (size_t k = 0; k < (size_t)n * esz; k++)
                acc ^= ((const uint8_t *)values)[k];
        (void)acc;
        snprintf(message, len, "tensor '%s'", name);
    }
    cnv_free_buffer(values);
    cnv_free_buffer(name);
    return st;
}

/* An image file, decoded (every byte read) and turned into a network
 * input: gray 28x28 or RGB 32x32 and the fit by the last bytes. */
static inline cnv_status fuzz_run_image(const uint8_t *data, size_t size, char *message, size_t len)
{
    cnv_image img = {0};
    static float tensor[3 * 32 * 32];
    cnv_status st = cnv_image_load_memory(data, size, &img, message, len);
    if (st != CNV_OK) {
        cnv_image_free(&img);
        return st;
    }
    volatile uint8_t acc = 0;
    size_t n = (size_t)img.width * img.height * img.channels;
    for (size_t k = 0; k < n; k++)
        acc ^= img.data[k];
    (void)acc;
    cnv_preprocess pp;
    int gray = size > 0 && (data[size - 1] & 1);
    cnv_preprocess_init(&pp, gray ? 1 : 3, gray ? 28 : 32, gray ? 28 : 32);
    pp.fit = size > 1 && (data[size - 2] & 1) ? CNV_FIT_STRETCH : CNV_FIT_CENTER_CROP;
    st = cnv_image_to_tensor(&img, &pp, tensor, (size_t)pp.channels * pp.height * pp.width, message, len);
    cnv_image_free(&img);
    return st;
}

/* ------------------------------------------------- random valid graphs */

/* The bytes as a stream of choices; 0 once they run out. */
typedef struct fuzz_bytes {
    const uint8_t *p;
    size_t n;
} fuzz_bytes;

static inline unsigned fuzz_byte(fuzz_bytes *b)
{
    if (!b->n)
        return 0;
    b->n--;
    return *b->p++;
}

/* Attribute values at and beside their limits. */
static const int64_t fuzz_ints[] = {0, 1, 2, 3, -1, -2, 4, 5, 7, 8, -3, 16, 1000, INT32_MAX, (int64_t)INT32_MAX + 1,
                                    INT64_MAX, INT64_MIN, -4, 6, 9, 13, 1, 0, 2};
static const float fuzz_floats[] = {0.0f, 1.0f, -1.0f, 0.5f, 2.0f, 1e-5f, 3.0f, -0.5f, 1e38f, -1e38f, 1e-38f, 6.0f,
                                    0.1f, 10.0f, 1.0f / 0.0f, 0.0f / 0.0f};
static const char *const fuzz_strings[] = {
    "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "constant", "reflect", "edge", "nearest", "linear", "cubic",
    "half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_crop_and_resize", "floor",
    "round_prefer_floor", "round_prefer_ceil", "ceil", "tanh", "none", "", "DCR", "wrap"};
/* Every attribute name the ops read (and one they do not). */
static const char *const fuzz_attr_names[] = {
    "axis", "axes", "perm", "kernel_shape", "strides", "pads", "dilations", "group", "keepdims", "epsilon",
    "alpha", "beta", "gamma", "transA", "transB", "mode", "to", "ceil_mode", "count_include_pad", "auto_pad",
    "output_padding", "output_shape", "coordinate_transformation_mode", "nearest_mode", "size", "bias", "value",
    "split", "num_outputs", "noop_with_empty_axes", "allowzero", "min", "max", "lambd", "approximate",
    "storage_order", "cubic_coeff_a", "exclude_outside", "extrapolation_value", "scales", "select_last_index",
    "stash_type", "momentum", "training_mode", "spatial", "consumed_inputs", "blocksize", "unknown"};

#define FUZZ_N(a) (sizeof(a) / sizeof((a)[0]))
#define FUZZ_MAX_TENSORS 64

/* A shape of rank 0..max_rank, dims 1..8 (sometimes 0). */
static inline cnv_shape fuzz_shape(fuzz_bytes *b, int max_rank)
{
    cnv_shape sh;
    memset(&sh, 0, sizeof sh);
    sh.ndim = (int)(fuzz_byte(b) % (unsigned)(max_rank + 1));
    for (int d = 0; d < sh.ndim; d++) {
        unsigned v = fuzz_byte(b);
        sh.dims[d] = v == 255 ? 0 : 1 + v % 8;
    }
    return sh;
}

/* A graph built from the op registry by the bytes: one input, up to 8
 * nodes of any registered op, each input an earlier tensor, a new float
 * or int64 constant, or absent; attributes of any name the ops read,
 * with values at their limits; a node the model refuses is skipped. The
 * graph is planned for its input, run forward and backward with
 * parameter gradients, written as ONNX and read back. */
static inline cnv_status fuzz_run_graph(const uint8_t *data, size_t size, char *message, size_t len)
{
    fuzz_bytes b = {data, size};
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    float *seed = NULL;
    char names[FUZZ_MAX_TENSORS][16];
    int n_names = 0;
    message[0] = 0;
    cnv_status st = cnv_model_create(&m);
    if (st != CNV_OK)
        return st;
    cnv_shape xs = fuzz_shape(&b, 5);
    if (xs.ndim == 0)
        xs.ndim = 1, xs.dims[0] = 1 + fuzz_byte(&b) % 8;
    for (int d = 0; d < xs.ndim; d++)
        if (xs.dims[d] == 0)
            xs.dims[d] = 1;
    snprintf(names[n_names++], sizeof names[0], "x");
    if ((st = cnv_model_add_input(m, "x", &xs)) != CNV_OK)
        goto done;
    int n_nodes = 1 + (int)(fuzz_byte(&b) % 8), last = 0;
    for (int k = 0; k < n_nodes && n_names < FUZZ_MAX_TENSORS - 8; k++) {
        const cnv_op *op = cnv_op_at((int)(fuzz_byte(&b) % (unsigned)cnv_op_count()));
        int n_in = 1 + (int)(fuzz_byte(&b) % 4);
        const char *ins[4];
        char cname[4][16];
        for (int i = 0; i < n_in; i++) {
            unsigned kind = fuzz_byte(&b) % 8;
            if (kind < 4) { /* an earlier tensor, the latest most often */
                unsigned back = fuzz_byte(&b) % 4;
                int t = n_names - 1 - (int)(back < (unsigned)n_names ? back : 0);
                ins[i] = names[t];
            } else if (kind == 7) {
                ins[i] = "";
            } else {
                cnv_shape cs = fuzz_shape(&b, 4);
                int64_t count = cnv_shape_count(&cs);
                snprintf(cname[i], sizeof cname[i], "c%d_%d", k, i);
                ins[i] = cname[i];
                if (kind == 6) {
                    int64_t v[4096];
                    for (int64_t e = 0; e < count && e < 4096; e++)
                        v[e] = fuzz_ints[fuzz_byte(&b) % FUZZ_N(fuzz_ints)];
                    if (count > 4096 || cnv_model_add_const(m, cname[i], CNV_INT64, &cs, v) != CNV_OK)
                        ins[i] = "";
                } else {
                    float v[4096];
                    for (int64_t e = 0; e < count && e < 4096; e++)
                        v[e] = fuzz_floats[fuzz_byte(&b) % FUZZ_N(fuzz_floats)];
                    if (count > 4096 || cnv_model_add_const(m, cname[i], CNV_FLOAT32, &cs, v) != CNV_OK)
                        ins[i] = "";
                }
            }
        }
        int n_attrs = (int)(fuzz_byte(&b) % 5);
        cnv_attr attrs[4];
        int64_t ivals[4][6];
        float fvals[4][6];
        for (int a = 0; a < n_attrs; a++) {
            cnv_attr *at = &attrs[a];
            memset(at, 0, sizeof *at);
            at->name = fuzz_attr_names[fuzz_byte(&b) % FUZZ_N(fuzz_attr_names)];
            at->type = (cnv_attr_type)(fuzz_byte(&b) % 5);
            at->n = (int)(fuzz_byte(&b) % 7);
            for (int e = 0; e < 6; e++) {
                ivals[a][e] = fuzz_ints[fuzz_byte(&b) % FUZZ_N(fuzz_ints)];
                fvals[a][e] = fuzz_floats[fuzz_byte(&b) % FUZZ_N(fuzz_floats)];
            }
            at->i = ivals[a][0];
            at->f = fvals[a][0];
            at->s = fuzz_strings[fuzz_byte(&b) % FUZZ_N(fuzz_strings)];
            at->ints = ivals[a];
            at->floats = fvals[a];
        }
        int n_out = 1 + (int)(fuzz_byte(&b) % 4 == 0);
        const char *outs[2];
        for (int o = 0; o < n_out; o++) {
            snprintf(names[n_names + o], sizeof names[0], "t%d_%d", k, o);
            outs[o] = names[n_names + o];
        }
        char node[16];
        snprintf(node, sizeof node, "n%d", k);
        if (cnv_model_add_node(m, op->type, node, n_in, ins, n_out, outs, n_attrs, attrs) == CNV_OK) {
            last = n_names;
            n_names += n_out;
        }
    }
    if (last == 0) {
        st = CNV_ERR_NOT_FOUND; /* no node was accepted */
        goto done;
    }
    if ((st = cnv_model_add_output(m, names[last])) != CNV_OK)
        goto done;
    if ((st = cnv_session_create(m, &s)) != CNV_OK)
        goto done;
    cnv_session_set_param_grads(s, 1);
    if ((st = cnv_session_plan_shapes(s, 1, &xs)) == CNV_OK) {
        float *x;
        if ((st = cnv_session_tensor(s, cnv_model_input(m, 0), &x, NULL)) != CNV_OK)
            goto done;
        int64_t nx = cnv_shape_count(&xs);
        for (int64_t e = 0; e < nx; e++)
            x[e] = (float)((e * 7919) % 17) / 8.0f - 1.0f;
        int out = cnv_model_output(m, 0);
        float *y;
        cnv_shape ysh;
        if ((st = cnv_session_forward(s)) == CNV_OK && (st = cnv_session_tensor(s, out, &y, &ysh)) == CNV_OK) {
            int64_t ny = cnv_shape_count(&ysh);
            if (ny > 0 && ny <= ((int64_t)1 << 20) && (seed = malloc((size_t)ny * sizeof *seed))) {
                for (int64_t e = 0; e < ny; e++)
                    seed[e] = 1.0f;
                st = cnv_session_backward(s, out, seed, (size_t)ny);
            }
        }
    }
    snprintf(message, len, "%s", cnv_session_errmsg(s));
    /* the writer and the reader on the same graph */
    cnv_pbw w = {0};
    cnv_onnx_encode(&w, m);
    if (!w.failed) {
        cnv_model *back = NULL;
        cnv_model_load_onnx_memory(w.buf, w.len, &back);
        cnv_model_free(back);
    }
    cnv_pbw_free(&w);
done:
    if (!message[0])
        snprintf(message, len, "%s", cnv_model_errmsg(m));
    free(seed);
    cnv_session_free(s);
    cnv_model_free(m);
    return st;
}

#endif
