/* cnnviz classmodel: class model visualization (Simonyan et al. 2014),
 * one class or several in one batched run, with a contact sheet and an
 * animation, each result re-classified from its saved file. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz classmodel [-m MODEL] --class K|NAME -o OUT.png [options]\n"
    "       cnnviz classmodel [-m MODEL] --classes K1,K2,... --grid SHEET.png [-o OUT.png]\n"
    "Synthesizes an image the network scores highest for a class (Simonyan,\n"
    "Vedaldi, Zisserman 2014). The default recipe, lucid (Olah et al. 2017),\n"
    "ascends with Adam on an image made of a decorrelated 1/f Fourier basis,\n"
    "seen randomly scaled, rotated and shifted at every step; cs231n is\n"
    "gradient ascent on pixels from random noise with L2 decay, jitter,\n"
    "periodic blur and clamping. The saved PNG is read back and classified\n"
    "again.\n"
    "\n"
    "options:\n"
    "  --class K|NAME     class index or label\n"
    "  --classes A,B,...  several classes in one batched run\n"
    "  -o OUT.png         output (several classes: OUT_<class>.png)\n"
    "  --grid SHEET.png   labeled contact sheet of all classes\n"
    "  --tile PX          sheet and animation tiles PX wide (default: full size)\n"
    "  --softmax          ascend the softmax probability instead of the raw\n"
    "                     score (to compare; see docs/CLASS_MODELS.md)\n"
    "  --seed S           random seed (default 0)\n"
    "  --gif OUT.gif      animation of the ascent\n"
    "  --gif-every N      a frame every N steps (default 10)\n"
    "  --json             one JSON document on stdout\n"
    "  --quiet            no progress\n"
    CLI_RECIPE_HELP
    "cs231n options (--iters: default 300; --lr: the step length along\n"
    "g/||g||, default 25 at 3x224x224, in proportion to sqrt(values) at other\n"
    "sizes):\n"
    "  --raw-step         step lr*g instead of lr*g/||g||\n"
    "  --l2 F             L2 decay weight, lambda*||I||^2 (default 1e-3)\n"
    "  --l1 F             L1 decay weight, lambda*||I||_1 (default 0)\n"
    "  --blur-every N     blur every N steps, 0 never (default 10)\n"
    "  --blur-sigma F     blur radius in pixels (default 0.5)\n"
    "  --jitter PX        random roll of up to PX pixels (default 16 at 224,\n"
    "                     in proportion at other sizes, at least 1)\n"
    "  --no-clamp         do not clamp to the valid pixel range\n"
    "  --init-std F       std of the starting noise, normalized (default 1)\n";

typedef struct run_ctx {
    const cli_model *cm;
    int quiet, n;
    const int *classes;
    int tile; /* sheet and animation tile size in pixels; 0: as computed */
    cnv_gif_writer *gif;
    char **labels;
    cnv_status gif_st;
} run_ctx;

static int on_progress(void *user, int iter, int total, float objective, float prob)
{
    run_ctx *r = user;
    if (!r->quiet)
        cli_progress(iter, total, "classmodel: step %d/%d  score %.2f  p %.3f", iter, total, (double)objective,
                     (double)prob);
    return 0;
}

/* The n images as 8-bit tiles (full size), and as a labeled sheet of
 * thumbnails (r->tile pixels wide, or full size). */
static cnv_status make_sheet(const run_ctx *r, const float *images, int h, int w, cnv_image *tiles,
                             cnv_image *sheet, char *err, size_t errlen)
{
    size_t item = (size_t)r->cm->channels * h * w;
    cnv_status st = CNV_OK;
    for (int i = 0; i < r->n && st == CNV_OK; i++)
        st = cnv_tensor_to_image(images + i * item, &r->cm->pp, h, w, &tiles[i], err, errlen);
    cnv_image *small = NULL;
    if (st == CNV_OK && r->tile > 0) {
        /* thumbnails: the tiles themselves stay full size for the files */
        small = calloc((size_t)r->n, sizeof *small);
        if (!small)
            return CNV_ERR_NOMEM;
        for (int i = 0; i < r->n && st == CNV_OK; i++) {
            int tw = r->tile, th = (int)((long)r->tile * h / w);
            st = cnv_image_resize(&tiles[i], tw, th > 0 ? th : 1, &small[i], err, errlen);
        }
    }
    if (st == CNV_OK) {
        int cols = r->n <= 3 ? r->n : r->n == 4 ? 2 : r->n <= 9 ? 3 : r->n <= 16 ? 4 : 5;
        st = cnv_image_grid(small ? small : tiles, r->n, cols, (const char *const *)r->labels, 4,
                            sheet, err, errlen);
    }
    for (int i = 0; small && i < r->n; i++)
        cnv_image_free(&small[i]);
    free(small);
    return st;
}

static int on_frame(void *user, int iter, const float *images, int n, int c, int h, int w)
{
    (void)iter;
    (void)n;
    (void)c;
    run_ctx *r = user;
    if (!r->gif)
        return 0;
    char err[256];
    cnv_image *tiles = calloc((size_t)r->n, sizeof *tiles);
    cnv_image sheet = {0};
    if (!tiles)
        return r->gif_st = CNV_ERR_NOMEM, 1;
    cnv_status st = make_sheet(r, images, h, w, tiles, &sheet, err, sizeof err);
    if (st == CNV_OK)
        st = cnv_gif_writer_add_frame(r->gif, &sheet);
    for (int i = 0; i < r->n; i++)
        cnv_image_free(&tiles[i]);
    free(tiles);
    cnv_image_free(&sheet);
    r->gif_st = st;
    return st != CNV_OK;
}

/* "a,b,c" of class indices or names. */
static int parse_classes(const cli_model *cm, const char *text, int **out, int *n)
{
    char *copy = strdup(text);
    int cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == ',';
    int *v = calloc((size_t)cap, sizeof *v);
    if (!copy || !v) {
        free(copy);
        free(v);
        return cli_error("out of memory");
    }
    int k = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (cli_class_lookup(cm, tok, &v[k])) {
            free(copy);
            free(v);
            return 1;
        }
        k++;
    }
    free(copy);
    if (!k) {
        free(v);
        return cli_error("classmodel: no class in '%s'", text);
    }
    *out = v;
    *n = k;
    return 0;
}

int cmd_classmodel(int argc, char **argv)
{
    cli_model_opts mo = {0};
    cnv_classmodel_params p = cnv_classmodel_params_default();
    const char *cls_text = NULL, *classes_text = NULL, *out = NULL, *grid = NULL, *gif = NULL;
    int json = 0, quiet = 0, gif_every = 10, tile = 0;
    const cnv_classmodel_params defaults = p;
    cli_recipe_opts ro;
    cli_recipe_init(&ro);
    const cli_opt opts[] = {
        CLI_RECIPE_OPTS(&ro),
        CLI_OPT_SET("--json", &json),
        CLI_OPT_SET("--quiet", &quiet),
        CLI_OPT_CLEAR("--no-clamp", &p.clamp),
        CLI_OPT_CLEAR("--raw-step", &p.normalize_grad),
        CLI_OPT_SET("--softmax", &p.softmax),
        CLI_OPT_STRING("--class", NULL, &cls_text),
        CLI_OPT_STRING("--classes", NULL, &classes_text),
        CLI_OPT_OUTPUT("--output", "-o", &out),
        CLI_OPT_OUTPUT("--grid", NULL, &grid),
        CLI_OPT_OUTPUT("--gif", NULL, &gif),
        CLI_OPT_FLOAT("--l2", &p.l2, 0, HUGE_VAL, 0),
        CLI_OPT_FLOAT("--l1", &p.l1, 0, HUGE_VAL, 0),
        CLI_OPT_INT("--blur-every", &p.blur_every, 0, INT_MAX),
        CLI_OPT_FLOAT("--blur-sigma", &p.blur_sigma, 0, HUGE_VAL, 0),
        CLI_OPT_INT("--jitter", &p.jitter, 0, INT_MAX),
        CLI_OPT_FLOAT("--init-std", &p.init_std, 0, HUGE_VAL, 0),
        CLI_OPT_INT("--tile", &tile, 8, 4096),
        CLI_OPT_INT("--gif-every", &gif_every, 1, INT_MAX),
        CLI_OPT_SEED("--seed", &p.seed),
        {0},
    };
    const cli_spec spec = {"classmodel", usage, &mo, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    if (!cls_text && !classes_text)
        return cli_error("classmodel: give --class K or --classes A,B,... (see --help)"), 2;
    if (cls_text && classes_text)
        return cli_error("classmodel: give --class or --classes, not both"), 2;
    if (!out && !grid)
        return cli_error("classmodel: give -o OUT.png (or --grid SHEET.png)"), 2;
    int cs231n = p.l2 != defaults.l2 || p.l1 != defaults.l1 || p.blur_every != defaults.blur_every ||
                 p.blur_sigma != defaults.blur_sigma || p.jitter != defaults.jitter || p.clamp != defaults.clamp ||
                 p.normalize_grad != defaults.normalize_grad || p.init_std != defaults.init_std;
    if ((rc = cli_recipe_apply("classmodel", &ro,
                               cs231n ? "--l2, --l1, --blur-every, --blur-sigma, --jitter, --no-clamp, "
                                        "--raw-step and --init-std"
                                      : NULL,
                               &p.recipe, &p.lucid, &p.iters, &p.lr)) != 0)
        return rc;

    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    int n = 0, *classes = NULL;
    rc = 0;
    if (parse_classes(&cm, cls_text ? cls_text : classes_text, &classes, &n)) {
        cli_model_close(&cm);
        return 1;
    }
    int h = cm.height, w = cm.width, c = cm.channels;
    p.height = h;
    p.preprocess = &cm.pp;
    p.width = w;
    cnv_classmodel_params_resolve(&p, c, h, w); /* to report what runs */
    size_t item = (size_t)c * h * w;
    float *images = malloc((size_t)n * item * sizeof *images);
    float *probs = malloc((size_t)n * sizeof *probs), *scores = malloc((size_t)n * sizeof *scores);
    char **labels = calloc((size_t)n, sizeof *labels), **paths = calloc((size_t)n, sizeof *paths);
    int *top = calloc((size_t)n, sizeof *top);
    float *ptop = calloc((size_t)n, sizeof *ptop);
    cnv_image *tiles = calloc((size_t)n, sizeof *tiles);
    cnv_image sheet = {0};
    cnv_session *s = NULL;
    run_ctx rx = {&cm, quiet, n, classes, tile, NULL, labels, CNV_OK};
    char err[512];
    if (!images || !probs || !scores || !labels || !paths || !top || !ptop || !tiles) {
        rc = cli_error("out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        labels[i] = strdup(cli_label(&cm, classes[i]));
        paths[i] = out ? (n == 1 ? strdup(out) : cli_item_path(out, classes[i])) : NULL;
        if (!labels[i] || (out && !paths[i])) {
            rc = cli_error("out of memory");
            goto done;
        }
        /* the label's first name is enough on a sheet */
        char *comma = strchr(labels[i], ',');
        if (comma)
            *comma = 0;
    }
    cnv_status st = cnv_session_create(cm.model, &s);
    if (st != CNV_OK) {
        rc = cli_error("%s", s ? cnv_session_errmsg(s) : cnv_status_string(st));
        goto done;
    }
    if (gif) {
        /* Size the animation from a sheet of blank tiles. */
        memset(images, 0, (size_t)n * item * sizeof *images);
        if (make_sheet(&rx, images, h, w, tiles, &sheet, err, sizeof err) != CNV_OK) {
            rc = cli_error("%s", err);
            goto done;
        }
        st = cnv_gif_writer_open(gif, sheet.width, sheet.height, 10, 1, &rx.gif);
        for (int i = 0; i < n; i++)
            cnv_image_free(&tiles[i]);
        cnv_image_free(&sheet);
        if (st != CNV_OK) {
            rc = cli_error("%s", rx.gif ? cnv_gif_writer_errmsg(rx.gif) : cnv_status_string(st));
            goto done;
        }
        p.frame = on_frame;
        p.frame_every = gif_every;
    }
    p.progress = on_progress;
    p.user = &rx;
    double t0 = cli_now();
    st = cnv_classmodel(s, n, classes, &p, images, (size_t)n * item, scores, probs);
    double secs = cli_now() - t0;
    cli_progress_end();
    if (st != CNV_OK) {
        rc = cli_error("%s", rx.gif_st != CNV_OK && rx.gif ? cnv_gif_writer_errmsg(rx.gif)
                                                          : cnv_session_errmsg(s));
        goto done;
    }
    if (rx.gif && cnv_gif_writer_close(rx.gif) != CNV_OK) {
        rc = cli_error("%s", cnv_gif_writer_errmsg(rx.gif));
        goto done;
    }

    /* save, then classify what was saved */
    if (make_sheet(&rx, images, h, w, tiles, &sheet, err, sizeof err) != CNV_OK) {
        rc = cli_error("%s", err);
        goto done;
    }
    for (int i = 0; i < n && paths[i]; i++)
        if (cnv_image_write_png(&tiles[i], paths[i], err, sizeof err) != CNV_OK) {
            rc = cli_error("%s", err);
            goto done;
        }
    if (grid && cnv_image_write_png(&sheet, grid, err, sizeof err) != CNV_OK) {
        rc = cli_error("%s", err);
        goto done;
    }
    /* Classified B at a time: all n, or the batch a model fixes. */
    cnv_shape decl;
    int B = cnv_model_input_shape(cm.model, 0, &decl) == CNV_OK && decl.dims[0] > 0 ? (int)decl.dims[0] : n;
    if ((st = cnv_session_plan(s, B, h, w)) != CNV_OK) {
        rc = cli_error("%s", cnv_session_errmsg(s));
        goto done;
    }
    float *in = cnv_session_input(s), *prob = NULL;
    for (int first = 0; first < n; first += B) {
        int used = n - first < B ? n - first : B;
        memset(in, 0, (size_t)B * item * sizeof *in);
        for (int i = first; i < first + used; i++) {
            float *x = in + (size_t)(i - first) * item;
            if (paths[i]) {
                if (cli_load_input(&cm, paths[i], h, w, x)) {
                    rc = 1;
                    goto done;
                }
            } else {
                cnv_preprocess pp = cm.pp;
                pp.height = h;
                pp.width = w;
                if (cnv_image_to_tensor(&tiles[i], &pp, x, item, err, sizeof err) != CNV_OK) {
                    rc = cli_error("%s", err);
                    goto done;
                }
            }
        }
        float *sc;
        cnv_shape ysh;
        if (cnv_session_forward(s) != CNV_OK || cnv_session_tensor(s, cm.output, &sc, &ysh) != CNV_OK) {
            rc = cli_error("%s", cnv_session_errmsg(s));
            goto done;
        }
        int K = (int)(cnv_shape_count(&ysh) / B);
        if (!prob && !(prob = malloc((size_t)K * sizeof *prob))) {
            rc = cli_error("out of memory");
            goto done;
        }
        for (int i = first; i < first + used; i++) {
            cnv_softmax(sc + (size_t)(i - first) * K, K, prob); /* the raw scores' probabilities */
            top[i] = 0;
            for (int k = 1; k < K; k++)
                if (prob[k] > prob[top[i]])
                    top[i] = k;
            ptop[i] = prob[top[i]];
        }
    }
    free(prob);

    if (json) {
        printf("{\"model\": ");
        cli_json_string(stdout, cm.path);
        printf(", \"recipe\": \"%s\"", cnv_recipe_name(p.recipe));
        if (p.recipe == CNV_RECIPE_LUCID)
            printf(", \"iters\": %d, \"lr\": %g, \"param\": \"%s\", \"decorrelate\": %s, "
                   "\"sigmoid\": %s, \"shift\": %g, \"scale\": [%g, %g], \"rotate\": %g, \"blur\": %g",
                   p.lucid.iters, (double)p.lucid.lr, p.lucid.spectral ? "spectral" : "pixel",
                   p.lucid.decorrelate ? "true" : "false", p.lucid.sigmoid ? "true" : "false",
                   (double)p.lucid.shift, (double)p.lucid.scale_min, (double)p.lucid.scale_max,
                   (double)p.lucid.rotate, (double)p.lucid.blur);
        else
            printf(", \"iters\": %d, \"lr\": %g, \"l2\": %g, \"l1\": %g, \"blur_every\": %d, "
                   "\"blur_sigma\": %g, \"jitter\": %d",
                   p.iters, (double)p.lr, (double)p.l2, (double)p.l1, p.blur_every,
                   (double)p.blur_sigma, p.jitter);
        printf(", \"softmax\": %s, \"seed\": %llu, \"seconds\": %.3f", p.softmax ? "true" : "false",
               (unsigned long long)p.seed, secs);
        if (grid)
            printf(", \"grid\": "), cli_json_string(stdout, grid);
        if (gif)
            printf(", \"gif\": "), cli_json_string(stdout, gif);
        printf(", \"classes\": [");
        for (int i = 0; i < n; i++) {
            printf("%s{\"class\": %d, \"label\": ", i ? ", " : "", classes[i]);
            cli_json_string(stdout, cli_label(&cm, classes[i]));
            printf(", \"file\": ");
            if (paths[i])
                cli_json_string(stdout, paths[i]);
            else
                printf("null");
            printf(", \"score\": %s, \"probability\": %s, \"top1\": {\"class\": %d, "
                   "\"label\": ",
                   cli_jnum(scores[i], 6).s, cli_jnum(probs[i], 6).s, top[i]);
            cli_json_string(stdout, cli_label(&cm, top[i]));
            printf(", \"probability\": %s}, \"recognized\": %s}", cli_jnum(ptop[i], 6).s,
                   top[i] == classes[i] ? "true" : "false");
        }
        printf("]}\n");
    } else {
        for (int i = 0; i < n; i++) {
            printf("%s: class %d (%s), score %.2f\n", paths[i] ? paths[i] : "(sheet)", classes[i],
                   cli_label(&cm, classes[i]), (double)scores[i]);
            printf("  saved image classified as %d (%s) with p = %.4f\n", top[i],
                   cli_label(&cm, top[i]), (double)ptop[i]);
        }
        if (grid)
            printf("sheet: %s\n", grid);
        if (gif)
            printf("animation: %s (%d frames)\n", gif, cnv_gif_writer_frames(rx.gif));
        printf("%d steps (%s) in %.1f s\n", p.recipe == CNV_RECIPE_LUCID ? p.lucid.iters : p.iters,
               cnv_recipe_name(p.recipe), secs);
    }

done:
    cnv_gif_writer_free(rx.gif);
    cnv_session_free(s);
    for (int i = 0; tiles && i < n; i++)
        cnv_image_free(&tiles[i]);
    cnv_image_free(&sheet);
    for (int i = 0; labels && i < n; i++)
        free(labels[i]);
    for (int i = 0; paths && i < n; i++)
        free(paths[i]);
    free(labels);
    free(paths);
    free(tiles);
    free(top);
    free(ptop);
    free(images);
    free(probs);
    free(scores);
    free(classes);
    cli_model_close(&cm);
    return rc;
}
