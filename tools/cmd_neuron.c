/* cnnviz neuron: the image that most excites one channel (or one unit) of
 * any layer, by the Lucid recipe or CS231n's regularized ascent. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz neuron [-m MODEL] --layer NAME --channel C [--unit Y,X] -o OUT.png [options]\n"
    "Synthesizes the image that maximizes the mean activation of one channel\n"
    "of a layer (or of one unit of it). The default recipe, lucid (Olah et al.\n"
    "2017), ascends with Adam on a decorrelated 1/f Fourier basis seen randomly\n"
    "transformed; cs231n is gradient ascent from noise, the step normalized by\n"
    "the gradient's mean magnitude, with jitter, L2 decay, periodic blur and\n"
    "clamping to valid pixels (Yosinski et al. 2015).\n"
    "\n"
    "options:\n"
    "  --layer NAME       a tensor or node name, or a unique part of one\n"
    "                     ('cnnviz info' lists them)\n"
    "  --channel C        the channel\n"
    "  --unit Y,X         maximize the single unit at (Y, X) of the channel\n"
    "  -o OUT.png         output\n"
    "  --no-pre-relu      a step whose gradient is zero (the channel is off\n"
    "                     everywhere, as often at the start) stays zero; by\n"
    "                     default it follows the Relu's input\n"
    "  --upscale K        write the image K times larger (pixel blocks), for\n"
    "                     small models (default 1)\n"
    "  --seed S           random seed (default 0)\n"
    "  --json             one JSON document on stdout\n"
    "  --quiet            no progress\n"
    CLI_RECIPE_HELP
    "cs231n options (--iters: default 200; --lr: the mean change of a pixel\n"
    "per step, gray levels, default 2):\n"
    "  --decay F          L2 decay per step (default 0.001)\n"
    "  --blur-every N     blur every N steps, 0 never (default 4)\n"
    "  --blur-sigma F     blur radius in pixels (default 0.5)\n"
    "  --jitter PX        random roll of up to PX pixels (default 4)\n"
    "  --init-std F       std of the starting noise, gray levels (default 10)\n"
    "  --no-clamp         do not clamp to the valid pixel range\n";

static int on_progress(void *user, int iter, int total, float objective, float prob)
{
    (void)user;
    (void)prob;
    cli_progress(iter, total, "neuron: step %d/%d  activation %.4g", iter, total, (double)objective);
    if (iter == total)
        cli_progress_end();
    return 0;
}

int cmd_neuron(int argc, char **argv)
{
    cli_model_opts mo = {0};
    cnv_neuron_params p = cnv_neuron_params_default();
    const char *out = NULL;
    int json = 0, quiet = 0, channel = -1, up = 1, unit[2] = {-1, -1};
    const cnv_neuron_params d = p;
    cli_recipe_opts ro;
    cli_recipe_init(&ro);
    const cli_opt opts[] = {
        CLI_RECIPE_OPTS(&ro),
        CLI_OPT_SET("--json", &json),
        CLI_OPT_SET("--quiet", &quiet),
        CLI_OPT_CLEAR("--no-clamp", &p.clamp),
        CLI_OPT_CLEAR("--no-pre-relu", &p.pre_relu),
        CLI_OPT_STRING("--layer", NULL, &p.layer),
        CLI_OPT_INT("--upscale", &up, 1, 16),
        CLI_OPT_INT("--channel", &channel, 0, INT_MAX),
        CLI_OPT_CUSTOM("--unit", cli_parse_unit, unit),
        CLI_OPT_OUTPUT("--output", "-o", &out),
        CLI_OPT_FLOAT("--decay", &p.decay, 0, 1, CLI_OPEN_MAX),
        CLI_OPT_INT("--blur-every", &p.blur_every, 0, INT_MAX),
        CLI_OPT_FLOAT("--blur-sigma", &p.blur_sigma, 0, HUGE_VAL, 0),
        CLI_OPT_INT("--jitter", &p.jitter, 0, INT_MAX),
        CLI_OPT_FLOAT("--init-std", &p.init_std, 0, HUGE_VAL, 0),
        CLI_OPT_SEED("--seed", &p.seed),
        {0},
    };
    const cli_spec spec = {"neuron", usage, &mo, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    p.unit_y = unit[0];
    p.unit_x = unit[1];
    if (!p.layer || channel < 0 || !out)
        return cli_error("neuron: give --layer NAME, --channel C and -o OUT.png (see --help)"), 2;
    int cs231n = p.decay != d.decay || p.blur_every != d.blur_every || p.blur_sigma != d.blur_sigma ||
                 p.jitter != d.jitter || p.init_std != d.init_std || p.clamp != d.clamp;
    if ((rc = cli_recipe_apply("neuron", &ro,
                               cs231n ? "--decay, --blur-every, --blur-sigma, --jitter, --init-std and --no-clamp"
                                      : NULL,
                               &p.recipe, &p.lucid, &p.iters, &p.lr)) != 0)
        return rc;

    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    int h = cm.height, w = cm.width, c = cm.channels;
    rc = 0;
    p.height = h;
    p.width = w;
    p.preprocess = &cm.pp;
    int t;
    char err[512];
    if (cli_layer_lookup(&cm, "neuron", p.layer, &t)) {
        cli_model_close(&cm);
        return 1;
    }
    const char *layer = cnv_model_tensor_name(cm.model, t);
    p.layer = layer;
    float *img = malloc((size_t)c * h * w * sizeof *img), before = 0, after = 0;
    cnv_session *s = NULL;
    if (!img)
        rc = cli_error("out of memory");
    if (!rc && cnv_session_create(cm.model, &s) != CNV_OK)
        rc = cli_error("out of memory");
    if (!rc) {
        if (!quiet)
            p.progress = on_progress;
        if (cnv_neuron(s, 1, &channel, &p, img, (size_t)c * h * w, &before, &after) != CNV_OK)
            rc = cli_error("%s", cnv_session_errmsg(s));
    }
    if (!rc) {
        cnv_image png = {0};
        if (cnv_tensor_to_image(img, &cm.pp, h, w, &png, err, sizeof err) != CNV_OK ||
            cli_upscale_image(&png, up, err, sizeof err) != CNV_OK || cnv_image_write_png(&png, out, err, sizeof err) != CNV_OK)
            rc = cli_error("%s", err);
        cnv_image_free(&png);
    }
    if (!rc && json) {
        printf("{\"layer\": ");
        cli_json_string(stdout, layer);
        printf(", \"channel\": %d, ", channel);
        if (p.unit_y >= 0)
            printf("\"unit\": [%d, %d], ", p.unit_y, p.unit_x);
        printf("\"height\": %d, \"width\": %d, \"recipe\": \"%s\", \"iters\": %d, \"seed\": %llu, "
               "\"before\": %s, \"after\": %s, \"output\": ",
               h, w, cnv_recipe_name(p.recipe), p.recipe == CNV_RECIPE_LUCID ? p.lucid.iters : p.iters,
               (unsigned long long)p.seed, cli_jnum(before, 9).s, cli_jnum(after, 9).s);
        cli_json_string(stdout, out);
        printf("}\n");
    } else if (!rc && !quiet) {
        fprintf(stderr, "neuron: %s channel %d: activation %.4g -> %.4g; wrote %s\n", layer, channel,
                (double)before, (double)after, out);
    }
    cnv_session_free(s);
    free(img);
    cli_model_close(&cm);
    return rc;
}
