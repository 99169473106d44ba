/* Shared by the libFuzzer harnesses: an allocator hook that refuses single
 * allocations over a cap, so a file that legitimately asks for gigabytes is
 * answered with CNV_ERR_NOMEM instead of tripping the fuzzer's RSS limit. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdlib.h>

#include "cnnviz.h"

#define FUZZ_MAX_ALLOC ((size_t)256 << 20)

static void *fuzz_malloc(void *user, size_t n)
{
    (void)user;
    return n > FUZZ_MAX_ALLOC ? NULL : malloc(n);
}

static void fuzz_free(void *user, void *p)
{
    (void)user;
    free(p);
}

static void fuzz_setup(void)
{
    static const cnv_allocator a = {fuzz_malloc, fuzz_free, NULL};
    cnv_set_allocator(&a);
    cnv_set_threads(1);
}

#endif
