/* cnnviz annotate: write a model's preprocessing and class names into its
 * metadata (cnnviz.mean, cnnviz.std, cnnviz.image_size,
 * cnnviz.channel_order, cnnviz.labels), so
 * that every later command needs only -m. */
#include <stdio.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz annotate -m IN.onnx [--preset P] [--mean ..] [--std ..] [--size HxW]\n"
    "                       [--channel-order rgb|bgr] [--labels FILE] -o OUT.onnx\n"
    "Writes IN.onnx again as OUT.onnx with the preprocessing the options give\n"
    "(over what IN.onnx already says) and its class names in its metadata:\n"
    "afterwards `-m OUT.onnx` alone classifies and visualizes as intended.\n"
    "The graph and weights are written unchanged.\n";

/* "a,b,c" of the first `channels` values. */
static void join(const float *v, int channels, char *buf, size_t len)
{
    size_t used = 0;
    for (int k = 0; k < channels && used < len; k++)
        used += (size_t)snprintf(buf + used, len - used, "%s%.6g", k ? "," : "", (double)v[k]);
}

int cmd_annotate(int argc, char **argv)
{
    cli_model_opts mo = {0};
    const char *out = NULL;
    const cli_opt opts[] = {CLI_OPT_OUTPUT("-o", "--output", &out), {0}};
    const cli_spec spec = {"annotate", usage, &mo, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    if (!mo.path || !out)
        return cli_usage_error("annotate: give -m IN.onnx and -o OUT.onnx (see --help)");
    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    char mean[128], std[128], size[32];
    join(cm.pp.mean, cm.channels, mean, sizeof mean);
    join(cm.pp.std, cm.channels, std, sizeof std);
    snprintf(size, sizeof size, "%dx%d", cm.height, cm.width);
    cnv_model *m = cm.model;
    const char *order = cm.pp.order == CNV_ORDER_BGR ? "bgr" : "rgb";
    /* the labels are in the metadata already when the options loaded them */
    if (cnv_model_set_meta(m, "cnnviz.mean", mean) != CNV_OK || cnv_model_set_meta(m, "cnnviz.std", std) != CNV_OK ||
        cnv_model_set_meta(m, "cnnviz.image_size", size) != CNV_OK ||
        (cm.channels >= 3 && cnv_model_set_meta(m, "cnnviz.channel_order", order) != CNV_OK) ||
        cnv_model_save_onnx(m, out) != CNV_OK)
        rc = cli_error("annotate: %s", cnv_model_errmsg(m));
    else
        fprintf(stderr, "annotate: wrote %s (mean %s, std %s, size %s%s%s, %d class names)\n", out, mean, std, size,
                cm.channels >= 3 ? ", " : "", cm.channels >= 3 ? order : "", cnv_model_labels(m, NULL));
    cli_model_close(&cm);
    return rc;
}
