/* cnnviz sample: save one image of an MNIST-format dataset as a PNG, so
 * that the other subcommands (classify, saliency, fool) have real inputs
 * for the default model. */
#include <limits.h>
#include <stdlib.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz sample [--data DIR] [--split train|t10k] --index N -o OUT.png [--json]\n"
    "Writes image N of an MNIST-format dataset (default: Debian's Fashion-MNIST\n"
    "in /usr/share/datasets/fashion-mnist, test split) as a PNG and prints its\n"
    "label.\n";

int cmd_sample(int argc, char **argv)
{
    const char *data = "/usr/share/datasets/fashion-mnist", *split = "t10k", *out = NULL;
    int index = -1, json = 0;
    const cli_opt opts[] = {
        CLI_OPT_STRING("--data", NULL, &data),
        CLI_OPT_STRING("--split", NULL, &split),
        CLI_OPT_OUTPUT("-o", NULL, &out),
        CLI_OPT_INT("--index", &index, 0, INT_MAX),
        CLI_OPT_SET("--json", &json),
        {0},
    };
    const cli_spec spec = {"sample", usage, NULL, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    if (index < 0 || !out) {
        cli_error("sample: needs --index N and -o OUT.png");
        return 2;
    }
    cnv_dataset *d = NULL;
    cnv_status st = cnv_mnist_load(data, split, &d);
    if (st != CNV_OK) {
        cli_error("%s", d ? cnv_dataset_errmsg(d) : cnv_status_string(st));
        cnv_dataset_free(d);
        return 1;
    }
    int c, h, w;
    rc = 0;
    cnv_dataset_shape(d, &c, &h, &w);
    if (index >= cnv_dataset_count(d))
        rc = cli_error("--index %d: the %s split has %d images", index, split, cnv_dataset_count(d));
    if (!rc) {
        size_t n = (size_t)c * h * w;
        cnv_image img = {w, h, c, (unsigned char *)cnv_dataset_pixels(d) + (size_t)index * n};
        char err[512];
        if (cnv_image_write_png(&img, out, err, sizeof err) != CNV_OK)
            rc = cli_error("%s", err);
    }
    if (!rc) {
        int label = cnv_dataset_labels(d)[index];
        if (json)
            printf("{\"index\": %d, \"label\": %d, \"output\": ", index, label), cli_json_string(stdout, out),
                printf("}\n");
        else
            printf("%s: image %d of %s, label %d\n", out, index, split, label);
    }
    cnv_dataset_free(d);
    return rc;
}
