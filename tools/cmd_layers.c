/* cnnviz layers: a contact sheet of what the layers of a network respond
 * to, one row per layer, a few channels each, each row one batched run. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz layers [-m MODEL] [--per-layer K] -o SHEET.png [options]\n"
    "A contact sheet of neuron visualizations (see 'cnnviz neuron'): one row\n"
    "per layer in depth order, K channels each, each labeled with its channel.\n"
    "The layers are the outputs of every Relu and of every Conv that no Relu\n"
    "reads; a deep network shows --max-layers of them, evenly spaced, the\n"
    "first and the last included. The K channels of a row are drawn at random\n"
    "(seeded) and optimized together in one batched run.\n"
    "\n"
    "options:\n"
    "  -o SHEET.png       output\n"
    "  --per-layer K      channels per layer (default 6)\n"
    "  --max-layers L     at most L rows (default 12; 0: every layer)\n"
    "  --layers A,B,...   these layers instead (names as for 'cnnviz neuron')\n"
    "  --tile N           tile size in pixels (default: the model's input size,\n"
    "                     at most 128 unless the model takes one size only)\n"
    "  --no-pre-relu      a step whose gradient is zero (the channel is off\n"
    "                     everywhere, as often at the start) stays zero; by\n"
    "                     default it follows the Relu's input\n"
    "  --seed S           random seed for channels and images (default 0)\n"
    "  --json             one JSON document on stdout\n"
    "  --quiet            no progress\n"
    CLI_RECIPE_HELP
    "  (here --iters is 256 by default with lucid, 100 with cs231n, whose --lr\n"
    "  is the mean pixel change per step in gray levels, default 2)\n";

typedef struct row_info {
    const char *name;
    int C, k;
    int *ch;
    float *before, *after;
    cnv_image img;
} row_info;

static int on_progress(void *user, int iter, int total, float objective, float prob)
{
    (void)prob;
    const char *label = user;
    cli_progress(iter, total, "layers: %s step %d/%d  activation %.4g", label, iter, total, (double)objective);
    return 0;
}

/* A short label for a row: the tensor name without ONNX exporter noise
 * ("/features/features.3/expand1x1_activation/Relu_output_0" ->
 * "features.3/expand1x1_activation"). */
static void short_name(const char *name, char *buf, size_t len)
{
    const char *p = name;
    while (*p == '/')
        p++;
    /* drop a leading "x/" when the next part starts with "x." ("features/features.3") */
    const char *slash = strchr(p, '/');
    if (slash && !strncmp(slash + 1, p, (size_t)(slash - p)) && slash[1 + (slash - p)] == '.')
        p = slash + 1;
    snprintf(buf, len, "%s", p);
    char *end = strstr(buf, "_output_0");
    if (end && !end[9])
        *end = '\0';
    char *last = strrchr(buf, '/');
    /* "/Relu" or "/Conv" after a descriptive part adds nothing */
    if (last && last != buf && (!strcmp(last, "/Relu") || !strcmp(last, "/Conv")))
        *last = '\0';
}

/* Stacks rows (RGB) top to bottom, each under a header line with its title. */
static cnv_status stack_rows(row_info *rows, int n, char *const *titles, cnv_image *out, char *err,
                             size_t errlen)
{
    const int head = 16, pad = 4;
    int W = 0, H = pad;
    for (int i = 0; i < n; i++) {
        int tw = cnv_text_width(titles[i], 1) + 2 * pad;
        W = rows[i].img.width > W ? rows[i].img.width : W;
        W = tw > W ? tw : W;
        H += head + rows[i].img.height;
    }
    cnv_status st = cnv_image_create(W, H, 3, out, err, errlen);
    if (st != CNV_OK)
        return st;
    memset(out->data, 255, (size_t)W * H * 3);
    static const unsigned char black[3] = {0, 0, 0};
    int y = pad;
    for (int i = 0; i < n; i++) {
        cnv_image_draw_text(out, pad, y + 2, titles[i], 1, black);
        y += head;
        const cnv_image *r = &rows[i].img;
        for (int yy = 0; yy < r->height; yy++)
            memcpy(out->data + ((size_t)(y + yy) * W) * 3, r->data + (size_t)yy * r->width * 3,
                   (size_t)r->width * 3);
        y += r->height;
    }
    return CNV_OK;
}

/* k distinct channels of C drawn from the seed, ascending. */
static void sample_channels(int C, int k, unsigned long long seed, int row, int *out)
{
    if (k >= C) {
        for (int i = 0; i < C; i++)
            out[i] = i;
        return;
    }
    /* Floyd's algorithm with a splitmix-style generator of our own, so
     * the choice depends only on (seed, row). */
    unsigned long long x = seed * 0x9E3779B97F4A7C15ull + (unsigned long long)row * 0xBF58476D1CE4E5B9ull + 1;
    int n = 0;
    for (int j = C - k; j < C; j++) {
        x ^= x >> 31;
        x *= 0x94D049BB133111EBull;
        x ^= x >> 29;
        int t = (int)(x % (unsigned long long)(j + 1));
        int seen = 0;
        for (int i = 0; i < n; i++)
            seen |= out[i] == t;
        out[n++] = seen ? j : t;
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            int tmp = out[j];
            out[j] = out[j - 1];
            out[j - 1] = tmp;
        }
}

int cmd_layers(int argc, char **argv)
{
    cli_model_opts mo = {0};
    cnv_neuron_params p = cnv_neuron_params_default();
    p.iters = 100;
    const char *out = NULL, *layer_list = NULL;
    int json = 0, quiet = 0, per = 6, max_layers = 12, tile = 0;
    cli_recipe_opts ro;
    cli_recipe_init(&ro);
    ro.lucid.iters = 256; /* a sheet is an overview: half of Lucid's steps */
    const cli_opt opts[] = {
        CLI_RECIPE_OPTS(&ro),
        CLI_OPT_SET("--json", &json),
        CLI_OPT_SET("--quiet", &quiet),
        CLI_OPT_CLEAR("--no-pre-relu", &p.pre_relu),
        CLI_OPT_OUTPUT("--output", "-o", &out),
        CLI_OPT_INT("--per-layer", &per, 1, 64),
        CLI_OPT_INT("--max-layers", &max_layers, 0, INT_MAX),
        CLI_OPT_STRING("--layers", NULL, &layer_list),
        CLI_OPT_INT("--tile", &tile, 1, 4096),
        CLI_OPT_SEED("--seed", &p.seed),
        {0},
    };
    const cli_spec spec = {"layers", usage, &mo, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    if (!out)
        return cli_error("layers: give -o SHEET.png (see --help)"), 2;
    if ((rc = cli_recipe_apply("layers", &ro, NULL, &p.recipe, &p.lucid, &p.iters, &p.lr)) != 0)
        return rc;

    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    int c = cm.channels;
    rc = 0;
    /* at most 128 px, unless the model takes one size only (VGG exports) */
    cnv_shape decl;
    int fixed = cnv_model_input_shape(cm.model, 0, &decl) == CNV_OK && decl.ndim == 4 && decl.dims[2] > 0 &&
                decl.dims[3] > 0;
    int h = tile ? tile : cm.height > 128 && !fixed ? 128 : cm.height;
    int w = tile ? tile : cm.width > 128 && !fixed ? 128 : cm.width;
    char err[512];
    /* the rows: listed, or chosen by the library */
    int n = 0;
    int *layers = NULL;
    char *list_copy = NULL;
    if (layer_list) {
        list_copy = strdup(layer_list);
        layers = calloc(strlen(layer_list) + 1, sizeof *layers);
        if (!list_copy || !layers)
            rc = cli_error("out of memory");
        for (char *save = NULL, *tok = rc ? NULL : strtok_r(list_copy, ",", &save); tok && !rc;
             tok = strtok_r(NULL, ",", &save)) {
            rc = cli_layer_lookup(&cm, "layers", tok, &layers[n]);
            n++;
        }
    } else {
        n = cnv_model_layers(cm.model, max_layers, NULL);
        layers = calloc((size_t)n + 1, sizeof *layers);
        if (!layers)
            rc = cli_error("out of memory");
        else
            cnv_model_layers(cm.model, max_layers, layers);
    }
    if (!rc && n == 0)
        rc = cli_error("layers: the model has no activation or feature map to show");
    row_info *rows = calloc((size_t)n + 1, sizeof *rows);
    char **titles = calloc((size_t)n + 1, sizeof *titles);
    cnv_session *s = NULL;
    if (!rc && (!rows || !titles))
        rc = cli_error("out of memory");
    if (!rc && (cnv_session_create(cm.model, &s) != CNV_OK || cnv_session_plan(s, 1, h, w) != CNV_OK))
        rc = cli_error("%s", s ? cnv_session_errmsg(s) : "out of memory");
    size_t item = (size_t)c * h * w;
    for (int r = 0; !rc && r < n; r++) {
        row_info *ri = &rows[r];
        ri->name = cnv_model_tensor_name(cm.model, layers[r]);
        cnv_shape sh;
        if (cnv_session_plan(s, 1, h, w) != CNV_OK || cnv_session_tensor(s, layers[r], NULL, &sh) != CNV_OK) {
            rc = cli_error("%s", cnv_session_errmsg(s));
            break;
        }
        if (sh.ndim < 2 || sh.dims[1] < 1) {
            rc = cli_error("layers: layer '%s' has no channel dimension", ri->name);
            break;
        }
        ri->C = (int)sh.dims[1];
        ri->k = per < ri->C ? per : ri->C;
        ri->ch = calloc((size_t)ri->k, sizeof *ri->ch);
        ri->before = calloc((size_t)ri->k, sizeof *ri->before);
        ri->after = calloc((size_t)ri->k, sizeof *ri->after);
        float *imgs = malloc((size_t)ri->k * item * sizeof *imgs);
        cnv_image *tiles = calloc((size_t)ri->k, sizeof *tiles);
        char **labels = calloc((size_t)ri->k, sizeof *labels);
        char title[160], sn[128];
        short_name(ri->name, sn, sizeof sn);
        snprintf(title, sizeof title, "%s (%d of %d channels)", sn, ri->k, ri->C);
        titles[r] = strdup(title);
        if (!ri->ch || !ri->before || !ri->after || !imgs || !tiles || !labels || !titles[r]) {
            rc = cli_error("out of memory");
        } else {
            sample_channels(ri->C, ri->k, (unsigned long long)p.seed, r, ri->ch);
            p.layer = ri->name;
            p.height = h;
            p.width = w;
            p.preprocess = &cm.pp;
            p.progress = !quiet ? on_progress : NULL;
            p.user = sn;
            if (cnv_neuron(s, ri->k, ri->ch, &p, imgs, (size_t)ri->k * item, ri->before, ri->after) != CNV_OK)
                rc = cli_error("%s", cnv_session_errmsg(s));
            for (int i = 0; !rc && i < ri->k; i++) {
                char lb[32];
                snprintf(lb, sizeof lb, "%d", ri->ch[i]);
                labels[i] = strdup(lb);
                if (!labels[i])
                    rc = cli_error("out of memory");
                else if (cnv_tensor_to_image(imgs + i * item, &cm.pp, h, w, &tiles[i], err, sizeof err) != CNV_OK)
                    rc = cli_error("%s", err);
            }
            if (!rc && cnv_image_grid(tiles, ri->k, ri->k, (const char *const *)labels, 4, &ri->img, err,
                                      sizeof err) != CNV_OK)
                rc = cli_error("%s", err);
        }
        for (int i = 0; tiles && labels && i < ri->k; i++) {
            cnv_image_free(&tiles[i]);
            free(labels[i]);
        }
        free(tiles);
        free(labels);
        free(imgs);
    }
    cli_progress_end();
    cnv_image sheet = {0};
    if (!rc && (stack_rows(rows, n, titles, &sheet, err, sizeof err) != CNV_OK ||
                cnv_image_write_png(&sheet, out, err, sizeof err) != CNV_OK))
        rc = cli_error("%s", err);
    if (!rc && !json && !quiet)
        fprintf(stderr, "layers: wrote %s (%d layers, %dx%d)\n", out, n, sheet.width, sheet.height);
    if (!rc && json) {
        printf("{\"output\": ");
        cli_json_string(stdout, out);
        printf(", \"tile\": [%d, %d], \"recipe\": \"%s\", \"iters\": %d, \"seed\": %llu, \"width\": %d, "
               "\"height\": %d, \"layers\": [",
               h, w, cnv_recipe_name(p.recipe), p.recipe == CNV_RECIPE_LUCID ? p.lucid.iters : p.iters,
               (unsigned long long)p.seed, sheet.width, sheet.height);
        for (int r = 0; r < n; r++) {
            printf("%s{\"name\": ", r ? ", " : "");
            cli_json_string(stdout, rows[r].name);
            printf(", \"channels\": %d, \"shown\": [", rows[r].C);
            for (int i = 0; i < rows[r].k; i++)
                printf("%s{\"channel\": %d, \"before\": %s, \"after\": %s}", i ? ", " : "", rows[r].ch[i],
                       cli_jnum(rows[r].before[i], 6).s, cli_jnum(rows[r].after[i], 6).s);
            printf("]}");
        }
        printf("]}\n");
    }
    cnv_image_free(&sheet);
    for (int r = 0; rows && r < n; r++) {
        free(rows[r].ch);
        free(rows[r].before);
        free(rows[r].after);
        cnv_image_free(&rows[r].img);
        if (titles)
            free(titles[r]);
    }
    free(rows);
    free(titles);
    free(layers);
    free(list_copy);
    cnv_session_free(s);
    cli_model_close(&cm);
    return rc;
}
