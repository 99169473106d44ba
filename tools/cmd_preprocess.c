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
    const char *out = NULL;
    const cli_opt opts[] = {CLI_OPT_STRING("-o", NULL, &out), {0}};
    const cli_spec spec = {"preprocess", usage, &mo, opts, "image", 1};
    int n_images, rc = cli_parse(argc, argv, &spec, &n_images);
    if (rc != CLI_RUN)
        return rc;
    const char *image = n_images ? argv[1] : NULL;
    if (!image || !out) {
        cli_error("preprocess: needs IMAGE and -o FILE");
        return 2;
    }
    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    size_t n = (size_t)cm.channels * (size_t)cm.height * (size_t)cm.width;
    float *x = malloc(n * sizeof *x);
    rc = x ? cli_load_input(&cm, image, cm.height, cm.width, x) : cli_error("out of memory");
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
