/* libFuzzer harness: an arbitrary byte string as an ONNX model, loaded from
 * memory, planned for a small input, run forward and backward once. */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"

/* Keeps one run fast: inputs and the planned activations stay small. */
#define MAX_INPUT_ELEMS ((int64_t)1 << 16)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup();
    return 0;
}

/* The declared shape with unknown dims made concrete: batch 1, other
 * unknown sizes 32 (a small image). 0 when it would be too large. */
static int concrete_shape(const cnv_model *m, int i, cnv_shape *s)
{
    if (cnv_model_input_shape(m, i, s) != CNV_OK)
        return 0;
    int64_t count = 1;
    for (int d = 0; d < s->ndim; d++) {
        if (s->dims[d] < 0)
            s->dims[d] = d == 0 ? 1 : 32;
        if (s->dims[d] > MAX_INPUT_ELEMS)
            return 0;
        count *= s->dims[d];
        if (count > MAX_INPUT_ELEMS)
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    cnv_shape shapes[4];
    cnv_status st = cnv_model_load_onnx_memory(data, size, &m);
    /* The message must exist and be terminated whatever happened. */
    volatile size_t len = strlen(cnv_model_errmsg(m));
    (void)len;
    if (st != CNV_OK)
        goto done;
    int n_in = cnv_model_input_count(m);
    if (n_in < 1 || n_in > 4)
        goto done;
    for (int i = 0; i < n_in; i++)
        if (!concrete_shape(m, i, &shapes[i]))
            goto done;
    if (cnv_session_create(m, &s) != CNV_OK)
        goto done;
    cnv_session_set_param_grads(s, 1);
    if (cnv_session_plan_shapes(s, n_in, shapes) != CNV_OK)
        goto done;
    for (int i = 0; i < n_in; i++) {
        float *x;
        cnv_shape sh;
        if (cnv_session_tensor(s, cnv_model_input_name(m, i), &x, &sh) != CNV_OK)
            goto done;
        int64_t n = cnv_shape_count(&sh);
        for (int64_t k = 0; k < n; k++)
            x[k] = (float)((k * 7919 + i * 31) % 17) / 8.0f - 1.0f;
    }
    if (cnv_session_forward(s) != CNV_OK || cnv_model_output_count(m) < 1)
        goto done;
    const char *out = cnv_model_output_name(m, 0);
    float *y;
    cnv_shape ysh;
    if (cnv_session_tensor(s, out, &y, &ysh) != CNV_OK)
        goto done;
    int64_t ny = cnv_shape_count(&ysh);
    if (ny > 0 && ny <= ((int64_t)1 << 24)) {
        float *seed = malloc((size_t)ny * sizeof *seed);
        if (seed) {
            for (int64_t k = 0; k < ny; k++)
                seed[k] = 1.0f;
            cnv_session_backward(s, out, seed);
            free(seed);
        }
    }
done:;
    volatile size_t len2 = strlen(cnv_session_errmsg(s));
    (void)len2;
    cnv_session_free(s);
    cnv_model_free(m);
    return 0;
}
