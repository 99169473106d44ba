/* cnnviz info: a model's ops, tensors and shapes, parameters and FLOPs. */
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz info [-m MODEL] [--size HxW] [--json]\n"
    "Lists the nodes with their output shapes for a 1 x C x H x W input,\n"
    "the parameter count and the multiply-add FLOPs of one forward pass.\n";

/* Forward FLOPs (2 per multiply-add) of the compute-heavy ops; the
 * element-wise ones are counted as one per output element. */
static double node_flops(cnv_session *s, const cnv_model *m, int i)
{
    const char *op = cnv_model_node_op(m, i);
    cnv_shape y, w;
    if (cnv_session_tensor(s, cnv_model_node_output(m, i), NULL, &y) != CNV_OK)
        return 0.0;
    double out = (double)cnv_shape_count(&y);
    if (!strcmp(op, "Conv") && cnv_session_tensor(s, cnv_model_node_input(m, i, 1), NULL, &w) == CNV_OK &&
        w.ndim == 4)
        return 2.0 * out * (double)(w.dims[1] * w.dims[2] * w.dims[3]);
    if (!strcmp(op, "Gemm") && cnv_session_tensor(s, cnv_model_node_input(m, i, 1), NULL, &w) == CNV_OK &&
        y.ndim == 2 && y.dims[1] > 0)
        return 2.0 * out * (double)cnv_shape_count(&w) / (double)y.dims[1];
    return out;
}

int cmd_info(int argc, char **argv)
{
    cli_model_opts mo = {0};
    int json = 0;
    const cli_opt opts[] = {CLI_OPT_SET("--json", &json), {0}};
    const cli_spec spec = {"info", usage, &mo, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    cli_model cm;
    if (cli_model_open(&mo, &cm))
        return 1;
    cnv_session *s = NULL;
    cnv_status st = cnv_session_create(cm.model, &s);
    if (st == CNV_OK)
        st = cnv_session_plan(s, 1, cm.height, cm.width);
    if (st != CNV_OK) {
        cli_error("%s", s ? cnv_session_errmsg(s) : cnv_status_string(st));
        cnv_session_free(s);
        cli_model_close(&cm);
        return 1;
    }
    const cnv_model *m = cm.model;
    int64_t params = 0;
    for (int k = 0; k < cnv_model_param_count(m); k++) {
        cnv_shape sh;
        if (cnv_session_tensor(s, cnv_model_param_name(m, k), NULL, &sh) == CNV_OK)
            params += cnv_shape_count(&sh);
    }
    double flops = 0.0;
    int n = cnv_model_node_count(m);
    if (json) {
        printf("{\"model\": ");
        cli_json_string(stdout, cm.path);
        printf(", \"input\": [1, %d, %d, %d], \"nodes\": [", cm.channels, cm.height, cm.width);
    } else {
        printf("model   %s\ninput   %s: 1 x %d x %d x %d (mean %g,%g,%g std %g,%g,%g)\n\n", cm.path,
               cnv_model_input_name(m, 0), cm.channels, cm.height, cm.width, cm.mean[0], cm.mean[1],
               cm.mean[2], cm.std[0], cm.std[1], cm.std[2]);
        printf("%-4s %-20s %-24s %-24s %12s\n", "#", "op", "node", "output", "shape");
    }
    for (int i = 0; i < n; i++) {
        cnv_shape y;
        char buf[128] = "?";
        if (cnv_session_tensor(s, cnv_model_node_output(m, i), NULL, &y) == CNV_OK) {
            size_t used = 0;
            for (int d = 0; d < y.ndim && used < sizeof buf; d++)
                used += (size_t)snprintf(buf + used, sizeof buf - used, d ? "x%lld" : "%lld", (long long)y.dims[d]);
        }
        double f = node_flops(s, m, i);
        flops += f;
        if (json) {
            printf("%s{\"op\": ", i ? ", " : "");
            cli_json_string(stdout, cnv_model_node_op(m, i));
            printf(", \"name\": ");
            cli_json_string(stdout, cnv_model_node_name(m, i));
            printf(", \"output\": ");
            cli_json_string(stdout, cnv_model_node_output(m, i));
            printf(", \"shape\": \"%s\", \"flops\": %.0f}", buf, f);
        } else {
            printf("%-4d %-20s %-24s %-24s %12s\n", i, cnv_model_node_op(m, i), cnv_model_node_name(m, i),
                   cnv_model_node_output(m, i), buf);
        }
    }
    if (json) {
        printf("], \"parameters\": %lld, \"flops\": %.0f, \"classes\": %d}\n", (long long)params, flops,
               cm.n_labels);
    } else {
        printf("\n%d nodes, %lld parameters, %.3f GFLOP per forward pass at %dx%d, %d class labels\n", n,
               (long long)params, flops / 1e9, cm.height, cm.width, cm.n_labels);
    }
    cnv_session_free(s);
    cli_model_close(&cm);
    return 0;
}
