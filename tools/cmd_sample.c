/* cnnviz sample: save images of an MNIST-format dataset as PNGs, so that
 * the other subcommands (classify, saliency, fool, atlas) have real inputs
 * for the default model. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz sample [--data DIR] [--split train|t10k] --index N [--count K] -o OUT [--json]\n"
    "Writes image N of an MNIST-format dataset (default: Debian's Fashion-MNIST\n"
    "in /usr/share/datasets/fashion-mnist, test split) as the PNG OUT and prints\n"
    "its label. With --count K, images N to N+K-1 go into the directory OUT\n"
    "(made if absent) as SPLIT-NNNNN.png (t10k-00042.png), a line each.\n";

int cmd_sample(int argc, char **argv)
{
    const char *data = "/usr/share/datasets/fashion-mnist", *split = "t10k", *out = NULL;
    int index = -1, count = 1, json = 0;
    const cli_opt opts[] = {
        CLI_OPT_STRING("--data", NULL, &data),
        CLI_OPT_STRING("--split", NULL, &split),
        CLI_OPT_STRING("-o", NULL, &out),
        CLI_OPT_INT("--index", &index, 0, INT_MAX),
        CLI_OPT_INT("--count", &count, 1, INT_MAX),
        CLI_OPT_SET("--json", &json),
        {0},
    };
    const cli_spec spec = {"sample", usage, NULL, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    rc = 0;
    if (index < 0 || !out)
        return cli_usage_error("sample: needs --index N and -o OUT");
    char err[512];
    if (count == 1 && cnv_check_output(out, err, sizeof err) != CNV_OK)
        return cli_usage_error("%s", err);
    if (count > 1 && mkdir(out, 0777) != 0 && errno != EEXIST)
        return cli_error("sample: cannot make %s: %s", out, strerror(errno));
    cnv_dataset *d = NULL;
    cnv_status st = cnv_mnist_load(data, split, &d);
    if (st != CNV_OK) {
        cli_error("%s", d ? cnv_dataset_errmsg(d) : cnv_status_string(st));
        cnv_dataset_free(d);
        return 1;
    }
    int c, h, w, total = cnv_dataset_count(d);
    cnv_dataset_shape(d, &c, &h, &w);
    if (index >= total || count > total - index)
        rc = cli_error("--index %d --count %d: the %s split has %d images", index, count, split, total);
    if (!rc && json && count > 1)
        printf("[");
    size_t n = (size_t)c * h * w, len = strlen(out) + strlen(split) + 32;
    char *path = malloc(len);
    if (!rc && !path)
        rc = cli_error("out of memory");
    for (int k = index; !rc && k < index + count; k++) {
        if (count > 1)
            snprintf(path, len, "%s/%s-%05d.png", out, split, k);
        else
            snprintf(path, len, "%s", out);
        cnv_image img = {w, h, c, (unsigned char *)cnv_dataset_pixels(d) + (size_t)k * n};
        if (cnv_image_write_png(&img, path, err, sizeof err) != CNV_OK) {
            rc = cli_error("%s", err);
            break;
        }
        int label = cnv_dataset_labels(d)[k];
        if (json)
            printf("%s{\"index\": %d, \"label\": %d, \"output\": ", k > index ? ", " : "", k, label),
                cli_json_string(stdout, path), printf("}");
        else
            printf("%s: image %d of %s, label %d\n", path, k, split, label);
    }
    if (json && count > 1)
        printf("]");
    if (json)
        printf("\n");
    free(path);
    cnv_dataset_free(d);
    return rc;
}
