/* libFuzzer harness: an arbitrary byte string as an image file, decoded and
 * turned into a network input (gray 28x28 or RGB 32x32, by the first byte). */
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
    cnv_image img = {0};
    char err[256];
    static float tensor[3 * 32 * 32];
    if (cnv_image_load_memory(data, size, &img, err, sizeof err) != CNV_OK) {
        volatile size_t l = strlen(err);
        (void)l;
        cnv_image_free(&img);
        return 0;
    }
    /* Every decoded byte must be readable. */
    volatile uint8_t acc = 0;
    size_t n = (size_t)img.width * img.height * img.channels;
    for (size_t k = 0; k < n; k++)
        acc ^= img.data[k];
    (void)acc;
    cnv_preprocess pp;
    int gray = size > 0 && (data[size - 1] & 1);
    cnv_preprocess_init(&pp, gray ? 1 : 3, gray ? 28 : 32, gray ? 28 : 32);
    pp.fit = size > 1 && (data[size - 2] & 1) ? CNV_FIT_STRETCH : CNV_FIT_CENTER_CROP;
    cnv_image_to_tensor(&img, &pp, tensor, err, sizeof err);
    cnv_image_free(&img);
    return 0;
}
