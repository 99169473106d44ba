/* libFuzzer harness: bytes as the choices of a random valid graph built
 * from the op registry, through fuzz_run_graph (fuzz_run.h). */
#include "fuzz_common.h"
#include "fuzz_run.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup();
    /* plans stay small: a graph that asks for more is refused, which is
     * a path worth running too */
    cnv_set_memory_limit((size_t)64 << 20);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char message[512];
    fuzz_run_graph(data, size, message, sizeof message);
    volatile size_t n = strlen(message);
    (void)n;
    return 0;
}
