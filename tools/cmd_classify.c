/* cnnviz classify: top-K classes of images. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz classify [-m MODEL] IMAGE... [--top K] [--json]\n"
    "Prints the K most probable classes of each image (default 5).\n"
    "Preprocessing is torchvision's evaluation transform: the shorter side\n"
    "resized to round(size*256/224), the center cropped to the model's size,\n"
    "scaled to [0,1] and normalized; an image of exactly the model's size is\n"
    "used as is.\n";

int cmd_classify(int argc, char **argv)
{
    cli_model_opts mo = {0};
    int json = 0, top = 5, n_images;
    const cli_opt opts[] = {CLI_OPT_SET("--json", &json), CLI_OPT_INT("--top", &top, 1, INT_MAX), {0}};
    const cli_spec spec = {"classify", usage, &mo, opts, "image", INT_MAX};
    int rc = cli_parse(argc, argv, &spec, &n_images);
    if (rc != CLI_RUN)
        return rc;
    char **images = argv + 1;
    if (!n_images) {
        cli_error("classify: no image given (see 'cnnviz classify --help')");
        return 2;
    }
    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    cnv_session *s = NULL;
    cnv_status st = cnv_session_create(cm.model, &s);
    if (st == CNV_OK)
        st = cnv_session_plan(s, 1, cm.height, cm.width);
    rc = 0;
    if (st != CNV_OK)
        rc = cli_error("%s", s ? cnv_session_errmsg(s) : cnv_status_string(st));
    int opened = json && !rc, bad = 0;
    if (opened)
        printf("{\"model\": "), cli_json_string(stdout, cm.path), printf(", \"results\": [");
    for (int k = 0; !rc && k < n_images; k++) {
        float *scores;
        cnv_shape ysh;
        if (cli_load_input(&cm, images[k], cm.height, cm.width, cnv_session_input(s))) {
            rc = 1;
            break;
        }
        if (cnv_session_forward(s) != CNV_OK || cnv_session_tensor(s, cm.output, &scores, &ysh) != CNV_OK) {
            rc = cli_error("%s", cnv_session_errmsg(s));
            break;
        }
        int n = (int)cnv_shape_count(&ysh);
        /* A score that is not finite (weights that overflow on this image)
         * ranks nothing: say so for this image and go on with the others. */
        int nonfinite = -1;
        for (int i = 0; i < n && nonfinite < 0; i++)
            if (!isfinite(scores[i]))
                nonfinite = i;
        if (nonfinite >= 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "the model's score for class %d is %g: not finite", nonfinite,
                     (double)scores[nonfinite]);
            if (json) {
                printf("%s{\"image\": ", k ? ", " : "");
                cli_json_string(stdout, images[k]);
                printf(", \"top\": null, \"message\": ");
                cli_json_string(stdout, msg);
                printf("}");
            }
            cli_error("classify: %s: %s", images[k], msg);
            bad = 1;
            continue;
        }
        float *p = malloc((size_t)n * sizeof *p);
        int *order = malloc((size_t)n * sizeof *order);
        if (!p || !order) {
            free(p);
            free(order);
            rc = cli_error("out of memory");
            break;
        }
        cnv_softmax(scores, n, p);
        int kk = top < n ? top : n;
        cli_top_classes(p, n, kk, order);
        if (json) {
            printf("%s{\"image\": ", k ? ", " : "");
            cli_json_string(stdout, images[k]);
            printf(", \"top\": [");
            for (int i = 0; i < kk; i++) {
                printf("%s{\"class\": %d, \"label\": ", i ? ", " : "", order[i]);
                cli_json_string(stdout, cli_label(&cm, order[i]));
                printf(", \"probability\": %s, \"score\": %s}", cli_jnum(p[order[i]], 6).s,
                       cli_jnum(scores[order[i]], 6).s);
            }
            printf("]}");
        } else {
            printf("%s\n", images[k]);
            for (int i = 0; i < kk; i++)
                printf("  %5d  %6.2f%%  %s\n", order[i], 100.0 * p[order[i]], cli_label(&cm, order[i]));
        }
        free(p);
        free(order);
    }
    /* the document stays valid JSON when a later image fails */
    if (opened)
        printf("]%s}\n", rc ? ", \"error\": true" : "");
    if (bad && !rc)
        rc = 1;
    cnv_session_free(s);
    cli_model_close(&cm);
    return rc;
}
