/* cnnviz evaluate: accuracy and confusion matrix of a classifier on the
 * test split of an MNIST-format dataset. */
#include <stdlib.h>

#include "cli_common.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

static const char usage[] =
    "usage: cnnviz evaluate [-m MODEL] [--data DIR] [--split NAME] [--batch B]\n"
    "                       [--threads T] [--json]\n"
    "Top-1 accuracy and the confusion matrix (rows: true class, columns:\n"
    "predicted) of a gray-scale classifier on DIR/NAME-*-ubyte[.gz].\n"
    "  --data DIR     dataset directory (default " DEFAULT_DATA ")\n"
    "  --split NAME   t10k (default; the 10,000 test images) or train\n"
    "  --batch B      images per forward pass (default 250)\n"
    "  --json         one JSON document on stdout\n";

/* The width of the model's class scores, from the shapes of one image. */
static int logits_width(const cli_model *cm, int h, int w, int *k)
{
    int nt = cnv_model_tensor_count(cm->model);
    cnv_shape in = {4, {1, cm->channels, h, w}}, *shapes = calloc((size_t)nt + 1, sizeof *shapes);
    char err[512];
    if (!shapes)
        return cli_error("out of memory");
    int rc = 0;
    if (cnv_model_infer_shapes(cm->model, 1, &in, shapes, nt, NULL, 0, err, sizeof err) != CNV_OK) {
        rc = cli_error("%s", err);
    } else {
        const cnv_shape *sh = &shapes[cm->output];
        if (sh->ndim != 2 || sh->dims[0] != 1 || sh->dims[1] < 1 || sh->dims[1] > 4096)
            rc = cli_error("the model's output '%s' is not a vector of class scores",
                           cnv_model_tensor_name(cm->model, cm->output));
        else
            *k = (int)sh->dims[1];
    }
    free(shapes);
    return rc;
}

int cmd_evaluate(int argc, char **argv)
{
    cli_model_opts mo = {0};
    const char *data = DEFAULT_DATA, *split = "t10k";
    int json = 0, batch = 250;
    const cli_opt opts[] = {
        CLI_OPT_SET("--json", &json),
        CLI_OPT_STRING("--data", NULL, &data),
        CLI_OPT_STRING("--split", NULL, &split),
        CLI_OPT_INT("--batch", &batch, 1, 65536),
        {0},
    };
    const cli_spec spec = {"evaluate", usage, &mo, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    int k = 0;
    rc = 1;
    int64_t *conf = NULL;
    cnv_dataset *d = NULL;
    if (cm.channels != 1) {
        cli_error("evaluate: the model takes %d channels; MNIST-format images are gray", cm.channels);
        goto done;
    }
    if (cnv_mnist_load(data, split, &d) != CNV_OK) {
        cli_error("%s", cnv_dataset_errmsg(d));
        goto done;
    }
    int h, w;
    cnv_dataset_shape(d, NULL, &h, &w);
    if (logits_width(&cm, h, w, &k))
        goto done;
    int classes = k > cnv_dataset_classes(d) ? k : cnv_dataset_classes(d);
    conf = calloc((size_t)classes * (size_t)classes, sizeof *conf);
    if (!conf) {
        cli_error("out of memory");
        goto done;
    }
    double acc;
    if (cnv_evaluate(cm.model, d, cm.output, batch, &cm.pp, &acc, conf, classes) != CNV_OK) {
        cli_error("%s", cnv_model_errmsg(cm.model));
        goto done;
    }
    int n = cnv_dataset_count(d);
    int64_t right = 0;
    for (int i = 0; i < classes; i++)
        right += conf[(size_t)i * classes + i];
    if (json) {
        printf("{\"model\": ");
        cli_json_string(stdout, cm.path);
        printf(", \"data\": ");
        cli_json_string(stdout, data);
        printf(", \"split\": ");
        cli_json_string(stdout, split);
        printf(", \"images\": %d, \"correct\": %lld, \"accuracy\": %.4f, \"labels\": [", n, (long long)right,
               acc);
        for (int i = 0; i < classes; i++) {
            printf("%s", i ? ", " : "");
            cli_json_string(stdout, cli_label(&cm, i));
        }
        printf("], \"per_class_accuracy\": [");
        for (int i = 0; i < classes; i++) {
            int64_t row = 0;
            for (int j = 0; j < classes; j++)
                row += conf[(size_t)i * classes + j];
            printf("%s%.4f", i ? ", " : "", row ? (double)conf[(size_t)i * classes + i] / row : 0.0);
        }
        printf("], \"confusion\": [");
        for (int i = 0; i < classes; i++) {
            printf("%s[", i ? ", " : "");
            for (int j = 0; j < classes; j++)
                printf("%s%lld", j ? ", " : "", (long long)conf[(size_t)i * classes + j]);
            printf("]");
        }
        printf("]}\n");
    } else {
        printf("%s on %s/%s: accuracy %.2f%% (%lld of %d)\n\n", cm.path, data, split, 100 * acc,
               (long long)right, n);
        printf("confusion matrix (rows: true class, columns: predicted)\n%-14s", "");
        for (int j = 0; j < classes; j++)
            printf(" %5d", j);
        printf("  accuracy\n");
        for (int i = 0; i < classes; i++) {
            char name[32];
            snprintf(name, sizeof name, "%d %s", i, cli_label(&cm, i));
            printf("%-14.14s", name);
            int64_t row = 0;
            for (int j = 0; j < classes; j++) {
                printf(" %5lld", (long long)conf[(size_t)i * classes + j]);
                row += conf[(size_t)i * classes + j];
            }
            printf("  %6.2f%%\n", row ? 100.0 * conf[(size_t)i * classes + i] / row : 0.0);
        }
    }
    rc = 0;

done:
    free(conf);
    cnv_dataset_free(d);
    cli_model_close(&cm);
    return rc;
}
