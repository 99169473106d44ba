/* libFuzzer harness: an arbitrary byte string as a serialized ONNX
 * TensorProto (the test data's input_0.pb). */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cnv_dtype dt = CNV_FLOAT32;
    cnv_shape sh;
    void *values = NULL;
    char *name = NULL;
    char err[256];
    memset(&sh, 0, sizeof sh);
    cnv_status st = cnv_tensor_read_pb(data, size, &dt, &sh, &values, &name,
                                       err, sizeof err);
    if (st == CNV_OK) {
        /* Every element the shape promises must be readable. */
        int64_t n = cnv_shape_count(&sh);
        size_t esz = dt == CNV_INT64 ? 8 : 4;
        volatile uint8_t acc = 0;
        if (n > 0)
            for (size_t k = 0; k < (size_t)n * esz; k++)
                acc ^= ((const uint8_t *)values)[k];
        (void)acc;
        volatile size_t l = strlen(name);
        (void)l;
    } else {
        volatile size_t l = strlen(err);
        (void)l;
    }
    cnv_free_buffer(values);
    cnv_free_buffer(name);
    return 0;
}
