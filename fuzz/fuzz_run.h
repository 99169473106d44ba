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
#include "onnx/onnx.h"

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

#endif
