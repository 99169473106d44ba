/* cnnviz render: feature visualization with objectives composed on the
 * command line (cnv_render): a batch of images, a sheet of them. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz render [-m MODEL] --objective SPEC [--objective SPEC ...] [-n N] -o OUT.png [options]\n"
    "Renders N images by the Lucid recipe, each ascending the sum of the\n"
    "objectives that apply to it (Olah et al. 2017, 'Feature Visualization').\n"
    "A SPEC is [WEIGHT*]KIND:ARGS[#ITEM]:\n"
    "  class:K                  class K (index or label) of the model's scores\n"
    "  channel:LAYER:C          the mean of channel C of a layer\n"
    "  neuron:LAYER:C[@Y,X]     channel C at (Y, X) (default: the center)\n"
    "  l2:LAYER                 half the mean square of the layer (DeepDream)\n"
    "  direction:LAYER:C=V,...  the mean of sum_c V_c * channel c (a direction\n"
    "                           in the layer's channel space; others weigh 0)\n"
    "  diversity:LAYER          the items' Gram matrices at LAYER apart (style\n"
    "                           diversity across the batch)\n"
    "KIND/pre (channel/pre:...) takes the layer's input when the layer is an\n"
    "activation's output; class/prob:K ascends the class's softmax probability.\n"
    "WEIGHT is a number (negative: minimize) or A..B, a weight going from A at\n"
    "the first image to B at the last (two objectives with 1..0 and 0..1\n"
    "interpolate between them); #ITEM applies the objective\n"
    "to that image only. LAYER is split from its argument at the last ':'.\n"
    "\n"
    "options:\n"
    "  --objective SPEC   an objective (repeat to add)\n"
    "  -n N               images in the batch (default 1)\n"
    "  -o OUT.png         output (several images: OUT_<i>.png)\n"
    "  --grid SHEET.png   a labeled sheet of the images\n"
    "  --tile PX          sheet tiles PX wide (default: full size)\n"
    "  --seed S           random seed (default 0)\n"
    "  --json             one JSON document on stdout\n"
    "  --quiet            no progress\n"
    "  --iters N          steps (default 512)\n"
    "  --lr F             Adam's step size (default 0.05)\n"
    CLI_LUCID_HELP;

enum { MAX_TERMS = 32 };

typedef struct spec_list {
    const char *text[MAX_TERMS];
    int n;
} spec_list;

static int add_spec(const char *value, void *dst)
{
    spec_list *l = dst;
    if (l->n >= MAX_TERMS)
        return 1;
    l->text[l->n++] = value;
    return 0;
}

/* A number filling [s, end) exactly. */
static int number(const char *s, const char *end, float *out)
{
    char buf[64], *stop;
    size_t len = (size_t)(end - s);
    if (len == 0 || len >= sizeof buf)
        return 0;
    memcpy(buf, s, len);
    buf[len] = 0;
    errno = 0;
    double v = strtod(buf, &stop);
    if (errno || *stop || !isfinite(v))
        return 0;
    *out = (float)v;
    return 1;
}

static int integer(const char *s, const char *end, int *out)
{
    float f;
    if (!number(s, end, &f) || f != floorf(f) || f < 0 || f > INT_MAX)
        return 0;
    *out = (int)f;
    return 1;
}

/* The channels (second dim) of tensor t at the model's size, or 0. */
static int channels_of(const cli_model *cm, int t)
{
    int nt = cnv_model_tensor_count(cm->model), C = 0;
    cnv_shape in = {4, {1, cm->channels, cm->height, cm->width}}, *shapes = calloc((size_t)nt, sizeof *shapes);
    if (shapes && cnv_model_infer_shapes(cm->model, 1, &in, shapes, nt, NULL, 0, NULL, 0) == CNV_OK &&
        shapes[t].ndim >= 2 && shapes[t].dims[1] > 0 && shapes[t].dims[1] <= 1 << 20)
        C = (int)shapes[t].dims[1];
    free(shapes);
    return C;
}

/* One SPEC into *o; its strings are copied into owned (freed by the
 * caller), the direction into *dir (malloc'ed; NULL if none). 0 or 2. */
static int parse_spec(const cli_model *cm, const char *text, cnv_objective *o, char **owned, float **dir)
{
    *owned = NULL;
    *dir = NULL;
    const char *s = text, *star = strchr(text, '*'), *colon = strchr(text, ':');
    *o = cnv_objective_default(CNV_OBJ_CLASS);
    if (star && (!colon || star < colon)) {
        const char *dots = strstr(s, "..");
        if (dots && dots < star) {
            if (!number(s, dots, &o->weight) || !number(dots + 2, star, &o->weight_last))
                goto bad;
        } else {
            if (!number(s, star, &o->weight))
                goto bad;
            o->weight_last = o->weight;
        }
        s = star + 1;
    }
    colon = strchr(s, ':');
    if (!colon)
        goto bad;
    char kind[32];
    size_t klen = (size_t)(colon - s);
    if (klen >= sizeof kind)
        goto bad;
    memcpy(kind, s, klen);
    kind[klen] = 0;
    char *slash = strchr(kind, '/');
    if (slash) {
        if (strcmp(slash, "/pre") == 0)
            o->pre_activation = 1;
        else if (strcmp(slash, "/prob") == 0)
            o->probability = 1;
        else
            goto bad;
        *slash = 0;
    }
    int k = cnv_objective_parse(kind);
    if (k < 0)
        return cli_error("render: unknown objective '%s' in '%s' (class, channel, neuron, l2, direction, "
                         "diversity)",
                         kind, text),
               2;
    o->kind = (cnv_objective_kind)k;
    /* the rest, without a trailing #ITEM */
    *owned = strdup(colon + 1);
    if (!*owned)
        return cli_error("out of memory"), 2;
    char *rest = *owned, *hash = strrchr(rest, '#');
    if (hash && integer(hash + 1, hash + strlen(hash), &o->item))
        *hash = 0;
    char *last = strrchr(rest, ':');
    switch (o->kind) {
    case CNV_OBJ_CLASS:
        if (cli_class_lookup(cm, rest, &o->index))
            return 1;
        break;
    case CNV_OBJ_LAYER_L2:
    case CNV_OBJ_DIVERSITY:
        o->layer = rest;
        break;
    case CNV_OBJ_CHANNEL:
    case CNV_OBJ_NEURON: {
        if (!last)
            goto bad;
        *last = 0;
        o->layer = rest;
        char *arg = last + 1, *at = strchr(arg, '@');
        if (o->kind == CNV_OBJ_NEURON && at) {
            char *comma = strchr(at, ',');
            if (!comma || !integer(at + 1, comma, &o->y) || !integer(comma + 1, comma + strlen(comma), &o->x))
                goto bad;
        } else if (at) {
            goto bad;
        }
        if (!integer(arg, at ? at : arg + strlen(arg), &o->index))
            goto bad;
        break;
    }
    case CNV_OBJ_DIRECTION: {
        if (!last)
            goto bad;
        *last = 0;
        o->layer = rest;
        int t;
        if (cli_layer_lookup(cm, "render", rest, &t))
            return 1;
        /* the channel count: the tensor's second dim, known once planned;
         * the highest channel named sets a lower bound, cnv_render checks */
        int most = -1;
        for (const char *p = last + 1; *p;) {
            const char *eq = strchr(p, '='), *end = strchr(p, ',');
            end = end ? end : p + strlen(p);
            int c;
            float v;
            if (!eq || eq > end || !integer(p, eq, &c) || !number(eq + 1, end, &v) || c > 1 << 20)
                goto bad;
            most = c > most ? c : most;
            p = *end ? end + 1 : end;
        }
        int C = channels_of(cm, t);
        if (C <= 0)
            return cli_error("render: cannot tell the channels of '%s' at %dx%d", rest, cm->height, cm->width), 1;
        if (most < 0 || most >= C)
            return cli_error("render: a direction on '%s' names channel %d; it has %d", rest, most, C), 2;
        *dir = calloc((size_t)C, sizeof **dir);
        if (!*dir)
            return cli_error("out of memory"), 2;
        for (const char *p = last + 1; *p;) {
            const char *eq = strchr(p, '='), *end = strchr(p, ',');
            end = end ? end : p + strlen(p);
            int c = 0;
            float v = 0.0f;
            integer(p, eq, &c);
            number(eq + 1, end, &v);
            (*dir)[c] = v;
            p = *end ? end + 1 : end;
        }
        o->direction = *dir;
        o->n_direction = C;
        break;
    }
    }
    return 0;
bad:
    return cli_error("render: cannot read the objective '%s' (see --help)", text), 2;
}

static int on_progress(void *user, int iter, int total, float objective, float prob)
{
    (void)prob;
    int *quiet = user;
    if (!*quiet)
        cli_progress(iter, total, "render: step %d/%d  objective %.4g", iter, total, (double)objective);
    return 0;
}

int cmd_render(int argc, char **argv)
{
    cli_model_opts mo = {0};
    cnv_render_params p = cnv_render_params_default();
    spec_list specs = {0};
    const char *out = NULL, *grid = NULL;
    int json = 0, quiet = 0, n = 1, tile = 0;
    cli_recipe_opts ro;
    cli_recipe_init(&ro);
    const cli_opt opts[] = {
        CLI_RECIPE_OPTS(&ro),
        CLI_OPT_CUSTOM("--objective", add_spec, &specs),
        CLI_OPT_INT("-n", &n, 1, 64),
        CLI_OPT_OUTPUT("--output", "-o", &out),
        CLI_OPT_OUTPUT("--grid", NULL, &grid),
        CLI_OPT_INT("--tile", &tile, 8, 4096),
        CLI_OPT_SEED("--seed", &p.seed),
        CLI_OPT_SET("--json", &json),
        CLI_OPT_SET("--quiet", &quiet),
        {0},
    };
    const cli_spec spec = {"render", usage, &mo, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    if (!specs.n)
        return cli_error("render: give at least one --objective SPEC (see --help)"), 2;
    if (!out && !grid)
        return cli_error("render: give -o OUT.png (or --grid SHEET.png)"), 2;
    cnv_recipe recipe = CNV_RECIPE_LUCID;
    int unused_iters = 0;
    float unused_lr = 0;
    if ((rc = cli_recipe_apply("render", &ro, NULL, &recipe, &p.lucid, &unused_iters, &unused_lr)) != 0)
        return rc;
    if (recipe != CNV_RECIPE_LUCID)
        return cli_error("render: objectives are rendered by the lucid recipe only"), 2;

    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    cnv_objective terms[MAX_TERMS];
    char *owned[MAX_TERMS] = {0};
    float *dirs[MAX_TERMS] = {0};
    int h = cm.height, w = cm.width, c = cm.channels;
    size_t item = (size_t)c * h * w;
    float *images = NULL, *values = NULL;
    cnv_session *s = NULL;
    cnv_image *tiles = NULL, sheet = {0};
    char **labels = NULL;
    rc = 0;
    for (int k = 0; k < specs.n && !rc; k++)
        rc = parse_spec(&cm, specs.text[k], &terms[k], &owned[k], &dirs[k]);
    if (rc)
        goto done;
    p.height = h;
    p.width = w;
    p.preprocess = &cm.pp;
    p.progress = on_progress;
    p.user = &quiet;
    images = malloc((size_t)n * item * sizeof *images);
    values = malloc((size_t)n * sizeof *values);
    tiles = calloc((size_t)n, sizeof *tiles);
    labels = calloc((size_t)n, sizeof *labels);
    if (!images || !values || !tiles || !labels || cnv_session_create(cm.model, &s) != CNV_OK) {
        rc = cli_error("out of memory");
        goto done;
    }
    double t0 = cli_now();
    if (cnv_render(s, n, terms, specs.n, &p, images, (size_t)n * item, values) != CNV_OK) {
        cli_progress_end();
        rc = cli_error("%s", cnv_session_errmsg(s));
        goto done;
    }
    double secs = cli_now() - t0;
    cli_progress_end();
    char err[512];
    for (int i = 0; i < n && !rc; i++) {
        if (cnv_tensor_to_image(images + (size_t)i * item, &cm.pp, h, w, &tiles[i], err, sizeof err) != CNV_OK) {
            rc = cli_error("%s", err);
            break;
        }
        if (out) {
            char *path = n == 1 ? strdup(out) : cli_item_path(out, i);
            if (!path || cnv_image_write_png(&tiles[i], path, err, sizeof err) != CNV_OK)
                rc = path ? cli_error("%s", err) : cli_error("out of memory");
            free(path);
        }
        labels[i] = malloc(32);
        if (labels[i])
            snprintf(labels[i], 32, "%d: %.3g", i, (double)values[i]);
    }
    if (!rc && grid) {
        cnv_image *small = tiles;
        cnv_image *thumbs = NULL;
        if (tile > 0 && (thumbs = calloc((size_t)n, sizeof *thumbs))) {
            for (int i = 0; i < n && !rc; i++)
                if (cnv_image_resize(&tiles[i], tile, (int)((long)tile * h / w > 0 ? (long)tile * h / w : 1),
                                     &thumbs[i], err, sizeof err) != CNV_OK)
                    rc = cli_error("%s", err);
            small = thumbs;
        }
        int cols = n <= 4 ? n : n <= 9 ? 3 : n <= 16 ? 4 : 8;
        if (!rc && (cnv_image_grid(small, n, cols, (const char *const *)labels, 4, &sheet, err, sizeof err) != CNV_OK ||
                    cnv_image_write_png(&sheet, grid, err, sizeof err) != CNV_OK))
            rc = cli_error("%s", err);
        for (int i = 0; thumbs && i < n; i++)
            cnv_image_free(&thumbs[i]);
        free(thumbs);
    }
    if (!rc && json) {
        printf("{\"model\": ");
        cli_json_string(stdout, cm.path);
        printf(", \"iters\": %d, \"seed\": %llu, \"seconds\": %.3f, \"objectives\": [", p.lucid.iters,
               (unsigned long long)p.seed, secs);
        for (int k = 0; k < specs.n; k++) {
            printf("%s", k ? ", " : "");
            cli_json_string(stdout, specs.text[k]);
        }
        printf("], \"values\": [");
        for (int i = 0; i < n; i++)
            printf("%s%s", i ? ", " : "", cli_jnum(values[i], 6).s);
        printf("]}\n");
    } else if (!rc && !quiet) {
        for (int i = 0; i < n; i++)
            fprintf(stderr, "image %d: objective %.4g\n", i, (double)values[i]);
        fprintf(stderr, "%d steps in %.1f s\n", p.lucid.iters, secs);
    }
done:
    cnv_session_free(s);
    for (int i = 0; tiles && i < n; i++)
        cnv_image_free(&tiles[i]);
    for (int i = 0; labels && i < n; i++)
        free(labels[i]);
    cnv_image_free(&sheet);
    free(tiles);
    free(labels);
    for (int k = 0; k < MAX_TERMS; k++) {
        free(owned[k]);
        free(dirs[k]);
    }
    free(images);
    free(values);
    cli_model_close(&cm);
    return rc;
}
