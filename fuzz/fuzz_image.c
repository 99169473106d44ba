/* libFuzzer harness: arbitrary bytes through fuzz_run_image (fuzz_run.h). */
#include "fuzz_common.h"
#include "fuzz_run.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char message[512];
    fuzz_run_image(data, size, message, sizeof message);
    /* Whatever happened, the message is a terminated string. */
    volatile size_t n = strlen(message);
    (void)n;
    return 0;
}
