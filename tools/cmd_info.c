/* cnnviz info: a model's ops, tensors and shapes, parameters and FLOPs. */
#include <stdlib.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz info [-m MODEL] [--size HxW] [--json]\n"
    "Lists the nodes with their output shapes for a 1 x C x H x W input,\n"
    "the parameter count and the multiply-add FLOPs of one forward pass.\n";

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
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    /* Shapes and FLOPs without a session: nothing is allocated or run. */
    const cnv_model *m = cm.model;
    int nt = cnv_model_tensor_count(m), n = cnv_model_node_count(m);
    cnv_shape in = {4, {1, cm.channels, cm.height, cm.width}};
    cnv_shape *shapes = calloc((size_t)nt + 1, sizeof *shapes);
    double *node_flops = calloc((size_t)n + 1, sizeof *node_flops);
    char err[512];
    rc = 0;
    if (!shapes || !node_flops)
        rc = cli_error("out of memory");
    else if (cnv_model_infer_shapes(m, 1, &in, shapes, nt, node_flops, n, err, sizeof err) != CNV_OK)
        rc = cli_error("%s", err);
    if (rc) {
        free(shapes);
        free(node_flops);
        cli_model_close(&cm);
        return rc;
    }
    int64_t params = 0;
    for (int k = 0; k < cnv_model_param_count(m); k++)
        params += cnv_shape_count(&shapes[cnv_model_tensor_index(m, cnv_model_param_name(m, k))]);
    double flops = 0.0;
    if (json) {
        printf("{\"model\": ");
        cli_json_string(stdout, cm.path);
        printf(", \"input\": [1, %d, %d, %d], \"nodes\": [", cm.channels, cm.height, cm.width);
    } else {
        printf("model   %s\ninput   %s: 1 x %d x %d x %d (size from %s)\n", cm.path,
               cnv_model_tensor_name(m, cnv_model_input(m, 0)), cm.channels, cm.height, cm.width, cm.size_from);
        printf("norm    mean %g,%g,%g std %g,%g,%g%s (from %s)\nlabels  %d (from %s)\n\n", cm.pp.mean[0],
               cm.pp.mean[1], cm.pp.mean[2], cm.pp.std[0], cm.pp.std[1], cm.pp.std[2],
               cm.pp.order == CNV_ORDER_BGR ? ", BGR order" : "", cm.norm_from, cm.n_labels, cm.labels_from);
        printf("%-4s %-20s %-24s %-24s %12s\n", "#", "op", "node", "output", "shape");
    }
    for (int i = 0; i < n; i++) {
        const char *out = cnv_model_tensor_name(m, cnv_model_node_output(m, i));
        const cnv_shape *y = &shapes[cnv_model_node_output(m, i)];
        char buf[128] = "?";
        size_t used = 0;
        for (int d = 0; d < y->ndim && used < sizeof buf; d++)
            used += (size_t)snprintf(buf + used, sizeof buf - used, d ? "x%lld" : "%lld", (long long)y->dims[d]);
        /* the multiply-add ops' FLOPs; the others count one per output */
        double f = node_flops[i] > 0.0 ? node_flops[i] : (double)cnv_shape_count(y);
        flops += f;
        if (json) {
            printf("%s{\"op\": ", i ? ", " : "");
            cli_json_string(stdout, cnv_model_node_op(m, i));
            printf(", \"name\": ");
            cli_json_string(stdout, cnv_model_node_name(m, i));
            printf(", \"output\": ");
            cli_json_string(stdout, out);
            printf(", \"shape\": \"%s\", \"flops\": %.0f}", buf, f);
        } else {
            printf("%-4d %-20s %-24s %-24s %12s\n", i, cnv_model_node_op(m, i), cnv_model_node_name(m, i), out,
                   buf);
        }
    }
    if (json) {
        printf("], \"parameters\": %lld, \"flops\": %.0f, \"classes\": %d}\n", (long long)params, flops,
               cm.n_labels);
    } else {
        printf("\n%d nodes, %lld parameters, %.3f GFLOP per forward pass at %dx%d, %d class labels\n", n,
               (long long)params, flops / 1e9, cm.height, cm.width, cm.n_labels);
    }
    free(shapes);
    free(node_flops);
    cli_model_close(&cm);
    return 0;
}
