/* cnnviz preprocess: write the exact network input for an image. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz preprocess [-m MODEL] IMAGE -o X.f32\n"
    "Writes the network input for IMAGE (raw little-endian float32, NCHW,\n"
    "batch 1) and prints its shape.\n";

int cmd_preprocess(int argc, char **argv)
{
    cli_model_opts mo = {0};
    const char *image = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_option(argc, argv, &i, &mo);
        if (r < 0)
            return 2;
        if (r)
            continue;
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("%s\n%s", usage, cli_model_help);
            return 0;
        } else if (argv[i][0] != '-' && !image)
            image = argv[i];
        else {
            cli_error("preprocess: unexpected argument '%s'", argv[i]);
            return 2;
        }
    }
    if (!image || !out) {
        cli_error("preprocess: needs IMAGE and -o FILE");
        return 2;
    }
    cli_model cm;
    if (cli_model_open(&mo, &cm))
        return 1;
    size_t n = (size_t)cm.channels * (size_t)cm.height * (size_t)cm.width;
    float *x = malloc(n * sizeof *x);
    int rc = x ? cli_load_input(&cm, image, cm.height, cm.width, x) : cli_error("out of memory");
    if (!rc) {
        FILE *f = fopen(out, "wb");
        if (!f || fwrite(x, sizeof *x, n, f) != n)
            rc = cli_error("cannot write '%s': %s", out, strerror(errno));
        if (f && fclose(f) && !rc)
            rc = cli_error("cannot write '%s': %s", out, strerror(errno));
    }
    if (!rc)
        printf("1,%d,%d,%d\n", cm.channels, cm.height, cm.width);
    free(x);
    cli_model_close(&cm);
    return rc;
}
