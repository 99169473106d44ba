/* cnnviz atlas: a model's layers, channels and classes as a static web site
 * (HTML + CSS + PNG). The work is a fixed list of independent items, each
 * a PNG named by a hash of what made it, so runs resume, shard across
 * processes or machines, and merge into the same bytes as one run. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_common.h"

#define ATLAS_ITERS 128 /* a quarter of Lucid's 512: an overview, for speed */

static const char usage[] =
    "usage: cnnviz atlas [-m MODEL] -o SITE/ [--layers LIST|all] [--per-layer K|all]\n"
    "                    [--classes LIST|all] [--iters N] [--seed S]\n"
    "                    [--shard I/N] [--resume] [--merge] [--no-time] [--json] [--quiet]\n"
    "A browsable atlas of a model as a static site in SITE/: an overview of\n"
    "the layers (op, shape, parameters, FLOPs), a page per layer with a grid of\n"
    "its channels' pictures (the Lucid recipe of 'cnnviz neuron'), a page per\n"
    "channel, and the class models (cnnviz classmodel) on a classes page.\n"
    "Each picture is an item, written atomically to SITE/items/ under a name\n"
    "hashed from the model file's bytes, the item, the seed and the recipe.\n"
    "A plain run renders every item, then builds the pages (--merge).\n"
    "\n"
    "options:\n"
    "  -o SITE/           the site's directory (made if absent)\n"
    "  --layers A,B|all   layers to show (default all: every activation, and\n"
    "                     every feature map no activation reads)\n"
    "  --per-layer K|all  the first K channels of each layer (default all)\n"
    "  --classes A,B|all|none  class models to make, indices or labels\n"
    "                     (default all)\n"
    "  --iters N          Lucid steps per picture (default 128, a quarter of\n"
    "                     'cnnviz neuron's 512, for speed)\n"
    "  --seed S           random seed (default 0)\n"
    "  --shard I/N        render only the items whose index modulo N is I, and\n"
    "                     no pages (then --merge)\n"
    "  --resume           skip the items whose file exists\n"
    "  --merge            render nothing: build the pages from the item files\n"
    "                     that exist, marking the others missing\n"
    "  --no-time          no date on the pages ($SOURCE_DATE_EPOCH, when set,\n"
    "                     gives the date otherwise)\n"
    "  --threads T        threads per picture (default 1, so that every machine\n"
    "                     makes the same bytes: run shards in parallel instead)\n"
    "  --json             a JSON summary on stdout\n"
    "  --quiet            no progress\n"
    "The pages take the same options as the rendering runs: give --merge the\n"
    "model, --layers, --per-layer, --classes, --iters and --seed the shards had.\n";

/* ------------------------------------------------------------- hashing */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

/* FNV-1a 64 over n bytes, continuing from h. */
static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* A string with its NUL, so that ("ab", "c") and ("a", "bc") differ. */
static uint64_t fnv_str(uint64_t h, const char *s)
{
    return fnv(h, s, strlen(s) + 1);
}

static int hash_file(const char *path, uint64_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cli_error("atlas: cannot read %s: %s", path, strerror(errno));
    unsigned char buf[1 << 16];
    uint64_t h = FNV_OFFSET;
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        h = fnv(h, buf, k);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return cli_error("atlas: cannot read %s", path);
    *out = h;
    return 0;
}

/* ------------------------------------------------------------- the items */

typedef struct atlas_layer {
    int t, node;  /* tensor, and the node that makes it */
    int C, shown; /* channels, and how many (the first ones) the site shows */
} atlas_layer;

typedef struct atlas_item {
    int layer; /* index into the layers; -1: a class model */
    int index; /* channel or class */
    char file[32]; /* "items/n0123456789abcdef.png", relative to the site */
} atlas_item;

typedef struct atlas {
    cli_model cm;
    const char *site, *layers_text, *per_text, *classes_text;
    int iters, per_layer; /* per_layer -1: all */
    uint64_t seed, model_hash;
    char recipe[512]; /* the recipe as text, hashed into each item's name */
    atlas_layer *layers;
    int n_layers;
    int *classes, n_classes;
    atlas_item *items;
    int n_items;
    cnv_shape *shapes; /* every tensor's, for 1 x C x H x W */
    double *flops;     /* every node's multiply-add FLOPs */
    char *command;     /* how the site was made, for the pages */
    char date[64];     /* "" with --no-time */
} atlas;

static int parse_shard(const char *s, void *dst)
{
    int *v = dst, i, n, used = 0;
    if (sscanf(s, "%d/%d%n", &i, &n, &used) != 2 || s[used] || n < 1 || i < 0 || i >= n)
        return 1;
    v[0] = i;
    v[1] = n;
    return 0;
}

/* The layers: every one cnv_model_layers gives, or those listed. */
static int choose_layers(atlas *a)
{
    const cnv_model *m = a->cm.model;
    int nt = cnv_model_tensor_count(m);
    int *ts = calloc((size_t)nt + 1, sizeof *ts), n = 0;
    if (!ts)
        return cli_error("out of memory");
    if (!strcmp(a->layers_text, "all")) {
        n = cnv_model_layers(m, 0, ts);
    } else {
        char *copy = strdup(a->layers_text);
        if (!copy) {
            free(ts);
            return cli_error("out of memory");
        }
        for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            int t;
            if (cli_layer_lookup(&a->cm, "atlas", tok, &t)) {
                free(copy);
                free(ts);
                return 1;
            }
            for (int i = 0; i < n; i++)
                if (ts[i] == t) {
                    free(copy);
                    free(ts);
                    return cli_error("atlas: layer '%s' is listed twice", cnv_model_tensor_name(m, t)), 2;
                }
            if (n < nt)
                ts[n++] = t;
        }
        free(copy);
    }
    if (n == 0) {
        free(ts);
        return cli_error("atlas: no layer to show");
    }
    a->layers = calloc((size_t)n, sizeof *a->layers);
    if (!a->layers) {
        free(ts);
        return cli_error("out of memory");
    }
    int nodes = cnv_model_node_count(m);
    for (int i = 0; i < n; i++) {
        atlas_layer *l = &a->layers[i];
        l->t = ts[i];
        l->node = -1;
        for (int k = 0; k < nodes; k++)
            if (cnv_model_node_output(m, k) == l->t)
                l->node = k;
        const cnv_shape *sh = &a->shapes[l->t];
        if (sh->ndim < 2 || sh->dims[1] < 1) {
            free(ts);
            return cli_error("atlas: layer '%s' has no channel dimension", cnv_model_tensor_name(m, l->t));
        }
        l->C = (int)sh->dims[1];
        l->shown = a->per_layer < 0 || a->per_layer > l->C ? l->C : a->per_layer;
    }
    a->n_layers = n;
    free(ts);
    return 0;
}

static int choose_classes(atlas *a)
{
    const cnv_shape *y = &a->shapes[a->cm.output];
    int K = a->cm.n_labels > 0 ? a->cm.n_labels : y->ndim >= 2 ? (int)y->dims[1] : 0;
    if (!strcmp(a->classes_text, "all")) {
        a->classes = calloc((size_t)K + 1, sizeof *a->classes);
        if (!a->classes)
            return cli_error("out of memory");
        for (int k = 0; k < K; k++)
            a->classes[k] = k;
        a->n_classes = K;
        return 0;
    }
    if (!strcmp(a->classes_text, "none"))
        return 0;
    a->classes = calloc(strlen(a->classes_text) + 1, sizeof *a->classes);
    char *copy = strdup(a->classes_text);
    if (!a->classes || !copy) {
        free(copy);
        return cli_error("out of memory");
    }
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k;
        if (cli_class_lookup(&a->cm, tok, &k)) {
            free(copy);
            return 1;
        }
        for (int i = 0; i < a->n_classes; i++)
            if (a->classes[i] == k) {
                free(copy);
                return cli_error("atlas: class %d is listed twice", k), 2;
            }
        a->classes[a->n_classes++] = k;
    }
    free(copy);
    return 0;
}

/* The items in their fixed order: each layer's channels, then the classes. */
static int list_items(atlas *a)
{
    int n = a->n_classes;
    for (int i = 0; i < a->n_layers; i++)
        n += a->layers[i].shown;
    a->items = calloc((size_t)n + 1, sizeof *a->items);
    if (!a->items)
        return cli_error("out of memory");
    const cnv_model *m = a->cm.model;
    for (int i = 0; i < a->n_layers; i++)
        for (int c = 0; c < a->layers[i].shown; c++) {
            atlas_item *it = &a->items[a->n_items++];
            it->layer = i;
            it->index = c;
        }
    for (int k = 0; k < a->n_classes; k++) {
        atlas_item *it = &a->items[a->n_items++];
        it->layer = -1;
        it->index = a->classes[k];
    }
    for (int i = 0; i < a->n_items; i++) {
        atlas_item *it = &a->items[i];
        uint64_t h = fnv(FNV_OFFSET, &a->model_hash, sizeof a->model_hash);
        h = fnv_str(h, it->layer >= 0 ? "neuron" : "classmodel");
        h = fnv_str(h, it->layer >= 0 ? cnv_model_tensor_name(m, a->layers[it->layer].t) : "");
        char buf[64];
        snprintf(buf, sizeof buf, "%d %llu", it->index, (unsigned long long)a->seed);
        h = fnv_str(fnv_str(h, buf), a->recipe);
        snprintf(it->file, sizeof it->file, "items/%c%016llx.png", it->layer >= 0 ? 'n' : 'c', (unsigned long long)h);
    }
    return 0;
}

static char *site_path(const atlas *a, const char *name)
{
    size_t n = strlen(a->site) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a->site, name);
    return p;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return cli_error("atlas: cannot make %s: %s", path, strerror(errno));
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return cli_error("atlas: %s is not a directory", path);
    return 0;
}

/* ------------------------------------------------------------- rendering */

typedef struct render_stats {
    int items, rendered, skipped;
    double seconds;
} render_stats;

static int render_item(const atlas *a, cnv_session *s, const atlas_item *it, float *img, const char *path)
{
    const cli_model *cm = &a->cm;
    int h = cm->height, w = cm->width;
    size_t count = (size_t)cm->channels * h * w;
    cnv_status st;
    /* Always one item per call: a channel alone gives the same bytes in
     * every shard, where a batch would differ by GEMM rounding. */
    if (it->layer >= 0) {
        cnv_neuron_params p = cnv_neuron_params_default();
        p.layer = cnv_model_tensor_name(cm->model, a->layers[it->layer].t);
        p.height = h;
        p.width = w;
        p.preprocess = &cm->pp;
        p.seed = a->seed;
        p.recipe = CNV_RECIPE_LUCID;
        p.lucid = cnv_lucid_params_default();
        p.lucid.iters = a->iters;
        st = cnv_neuron(s, 1, &it->index, &p, img, count, NULL, NULL);
    } else {
        cnv_classmodel_params p = cnv_classmodel_params_default();
        p.height = h;
        p.width = w;
        p.preprocess = &cm->pp;
        p.seed = a->seed;
        p.recipe = CNV_RECIPE_LUCID;
        p.lucid = cnv_lucid_params_default();
        p.lucid.iters = a->iters;
        st = cnv_classmodel(s, 1, &it->index, &p, img, count, NULL, NULL);
    }
    if (st != CNV_OK)
        return cli_error("%s", cnv_session_errmsg(s));
    char err[512];
    cnv_image png = {0};
    /* cnv_image_write_png writes a temporary file beside path and renames
     * it: a file at path is always whole, which --resume relies on. */
    if (cnv_tensor_to_image(img, &cm->pp, h, w, &png, err, sizeof err) != CNV_OK ||
        cnv_image_write_png(&png, path, err, sizeof err) != CNV_OK) {
        cnv_image_free(&png);
        return cli_error("%s", err);
    }
    cnv_image_free(&png);
    return 0;
}

static void eta_text(double secs, char *buf, size_t len)
{
    if (secs < 0)
        snprintf(buf, len, "?");
    else if (secs < 60)
        snprintf(buf, len, "%.0fs", secs);
    else if (secs < 3600)
        snprintf(buf, len, "%dm%02ds", (int)secs / 60, (int)secs % 60);
    else
        snprintf(buf, len, "%dh%02dm", (int)(secs / 3600), (int)secs % 3600 / 60);
}

static int render(const atlas *a, int shard, int shards, int resume, int quiet, int one_thread, render_stats *rs)
{
    char *dir = site_path(a, "items");
    if (!dir)
        return cli_error("out of memory");
    int rc = make_dir(dir);
    free(dir);
    if (rc)
        return rc;
    int mine = 0;
    for (int i = shard; i < a->n_items; i += shards)
        mine++;
    rs->items = mine;
    float *img = malloc((size_t)a->cm.channels * a->cm.height * a->cm.width * sizeof *img);
    cnv_session *s = NULL;
    if (!img || cnv_session_create(a->cm.model, &s) != CNV_OK) {
        free(img);
        cnv_session_free(s);
        return cli_error("out of memory");
    }
    /* One thread unless --threads says otherwise: a picture's bytes then
     * do not depend on the machine's cores (a GEMM split between threads
     * rounds differently), and a 28x28 model runs twice as fast on one
     * thread as on two; parallel shards use the cores instead. */
    if (one_thread && cnv_session_set_threads(s, 1) != CNV_OK) {
        rc = cli_error("%s", cnv_session_errmsg(s));
        cnv_session_free(s);
        free(img);
        return rc;
    }
    double t0 = cli_now();
    int done = 0;
    for (int i = shard; i < a->n_items && !rc; i += shards) {
        const atlas_item *it = &a->items[i];
        char *path = site_path(a, it->file);
        if (!path) {
            rc = cli_error("out of memory");
            break;
        }
        if (resume && file_exists(path)) {
            rs->skipped++;
        } else {
            rc = render_item(a, s, it, img, path);
            rs->rendered += !rc;
        }
        free(path);
        done++;
        if (!quiet && !rc) {
            double el = cli_now() - t0;
            char eta[32];
            eta_text(rs->rendered ? el / rs->rendered * (mine - done) : -1, eta, sizeof eta);
            const char *what = it->layer >= 0 ? cnv_model_tensor_name(a->cm.model, a->layers[it->layer].t)
                                              : "class";
            cli_progress(done, mine, "atlas: item %d/%d (%s %d)  rendered %d, skipped %d  ETA %s", done, mine,
                         what, it->index, rs->rendered, rs->skipped, eta);
        }
    }
    if (!quiet)
        cli_progress_end();
    rs->seconds = cli_now() - t0;
    cnv_session_free(s);
    free(img);
    return rc;
}

/* ------------------------------------------------------------- pages */

static const char *model_name(const atlas *a);

static void put_html(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static const char style_css[] =
    "/* cnnviz atlas */\n"
    "body { font: 14px/1.4 sans-serif; margin: 1.5em; color: #222; background: #fff; }\n"
    "h1 { font-size: 1.4em; margin: 0 0 0.5em; }\n"
    "nav { margin: 0 0 1em; }\n"
    "nav a { margin-right: 1em; }\n"
    "table { border-collapse: collapse; }\n"
    "th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; }\n"
    "td.n { text-align: right; font-variant-numeric: tabular-nums; }\n"
    ".grid { display: flex; flex-wrap: wrap; gap: 8px; }\n"
    ".cell { display: block; width: 92px; text-align: center; font-size: 12px; color: #222; text-decoration: none; }\n"
    ".cell img, .big { image-rendering: pixelated; background: #eee; display: block; margin: 0 auto; }\n"
    ".missing { display: block; width: 84px; height: 84px; margin: 0 auto; background: #f4f4f4; color: #a00;"
    " line-height: 84px; font-size: 11px; }\n"
    ".made { margin-top: 2em; color: #666; font-size: 12px; }\n"
    "code { font-size: 12px; }\n";

/* A page is written beside its name and renamed, like the items. */
static FILE *page_open(const atlas *a, const char *name, char **tmp, char **final, const char *title)
{
    *final = site_path(a, name);
    size_t n = *final ? strlen(*final) + 8 : 0;
    *tmp = *final ? malloc(n) : NULL;
    if (!*tmp) {
        free(*final);
        cli_error("out of memory");
        return NULL;
    }
    snprintf(*tmp, n, "%s.tmp", *final);
    FILE *f = fopen(*tmp, "w");
    if (!f) {
        cli_error("atlas: cannot write %s: %s", *tmp, strerror(errno));
        free(*tmp);
        free(*final);
        return NULL;
    }
    if (title) {
        fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>", f);
        put_html(f, title);
        fputs("</title>\n<link rel=\"stylesheet\" href=\"style.css\">\n</head>\n<body>\n", f);
    }
    return f;
}

static void put_made(const atlas *a, FILE *f)
{
    fputs("<p class=\"made\">Made by <code>", f);
    put_html(f, a->command);
    fprintf(f, "</code> (cnnviz %s): the Lucid recipe of <code>cnnviz neuron</code> and "
               "<code>cnnviz classmodel</code> with %d steps each (", cnv_version(), a->iters);
    if (a->iters == ATLAS_ITERS)
        fprintf(f, "the atlas default, a quarter of their 512, for speed");
    else
        fprintf(f, "their default is 512");
    fprintf(f, "), seed %llu, pictures at %dx%d. Model file FNV-1a 64 %016llx.", (unsigned long long)a->seed,
            a->cm.height, a->cm.width, (unsigned long long)a->model_hash);
    if (a->date[0])
        fprintf(f, " Pages built %s.", a->date);
    fputs("</p>\n", f);
}

static int page_close(const atlas *a, FILE *f, char *tmp, char *final, int html)
{
    if (html) {
        put_made(a, f);
        fputs("</body>\n</html>\n", f);
    }
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    int rc = 0;
    if (bad || rename(tmp, final) != 0) {
        rc = cli_error("atlas: cannot write %s: %s", final, strerror(errno));
        remove(tmp);
    }
    free(tmp);
    free(final);
    return rc;
}

static void shape_text(const cnv_shape *y, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int d = 0; d < y->ndim && used < len; d++)
        used += (size_t)snprintf(buf + used, len - used, d ? "x%lld" : "%lld", (long long)y->dims[d]);
}

/* The picture of an item, or a "missing" box. */
static void put_picture(const atlas *a, FILE *f, const atlas_item *it, int present, int scale, const char *alt)
{
    if (present) {
        fprintf(f, "<img src=\"%s\" width=\"%d\" height=\"%d\" alt=\"", it->file, a->cm.width * scale,
                a->cm.height * scale);
        put_html(f, alt);
        fprintf(f, "\"%s>", scale > 3 ? " class=\"big\"" : "");
    } else {
        fputs("<span class=\"missing\">missing</span>", f);
    }
}

/* How much larger a picture shows than its pixels: about 84 px on a grid. */
static int grid_scale(const atlas *a)
{
    int s = 84 / (a->cm.width > a->cm.height ? a->cm.width : a->cm.height);
    return s < 1 ? 1 : s;
}

static int big_scale(const atlas *a)
{
    int s = 336 / (a->cm.width > a->cm.height ? a->cm.width : a->cm.height);
    return s < 1 ? 1 : s;
}

static int write_index(const atlas *a, const int *present)
{
    const cnv_model *m = a->cm.model;
    char *tmp, *final;
    FILE *f = page_open(a, "index.html", &tmp, &final, "atlas");
    if (!f)
        return 1;
    fputs("<h1>Atlas of ", f);
    put_html(f, model_name(a));
    fputs("</h1>\n<nav>", f);
    if (a->n_classes)
        fputs("<a href=\"classes.html\">class models</a>", f);
    fputs("</nav>\n", f);
    int nt = cnv_model_tensor_count(m), n = cnv_model_node_count(m);
    /* a node's parameters: its inputs that are the model's parameters */
    char *is_param = calloc((size_t)nt + 1, 1);
    if (!is_param) {
        fclose(f);
        remove(tmp);
        free(tmp);
        free(final);
        return cli_error("out of memory");
    }
    for (int k = 0; k < cnv_model_param_count(m); k++) {
        int t = cnv_model_tensor_index(m, cnv_model_param_name(m, k));
        if (t >= 0)
            is_param[t] = 1;
    }
    int missing = 0;
    for (int i = 0; i < a->n_items; i++)
        missing += !present[i];
    fprintf(f, "<p>Input 1x%dx%dx%d. %d pictures: %d channels of %d layers, %d class models", a->cm.channels,
            a->cm.height, a->cm.width, a->n_items, a->n_items - a->n_classes, a->n_layers, a->n_classes);
    if (missing)
        fprintf(f, " (%d missing)", missing);
    fputs(".</p>\n<table>\n<tr><th>#</th><th>op</th><th>node</th><th>output</th><th>shape</th>"
          "<th>parameters</th><th>FLOPs</th><th>pictures</th></tr>\n",
          f);
    int64_t total_params = 0;
    double total_flops = 0;
    for (int i = 0; i < n; i++) {
        int out = cnv_model_node_output(m, i);
        char sh[128];
        shape_text(&a->shapes[out], sh, sizeof sh);
        int64_t params = 0;
        for (int k = 0; k < cnv_model_node_input_count(m, i); k++) {
            int t = cnv_model_node_input(m, i, k);
            if (t >= 0 && is_param[t])
                params += cnv_shape_count(&a->shapes[t]);
        }
        /* as 'cnnviz info' counts: multiply-adds, else one per output */
        double fl = a->flops[i] > 0.0 ? a->flops[i] : (double)cnv_shape_count(&a->shapes[out]);
        total_params += params;
        total_flops += fl;
        fprintf(f, "<tr><td class=\"n\">%d</td><td>", i);
        put_html(f, cnv_model_node_op(m, i));
        fputs("</td><td>", f);
        put_html(f, cnv_model_node_name(m, i));
        fputs("</td><td>", f);
        put_html(f, cnv_model_tensor_name(m, out));
        fprintf(f, "</td><td>%s</td><td class=\"n\">%lld</td><td class=\"n\">%.0f</td><td>", sh, (long long)params,
                fl);
        for (int l = 0; l < a->n_layers; l++)
            if (a->layers[l].t == out)
                fprintf(f, "<a href=\"layer-%d.html\">%d of %d channels</a>", out, a->layers[l].shown,
                        a->layers[l].C);
        fputs("</td></tr>\n", f);
    }
    fprintf(f, "<tr><th colspan=\"5\">total</th><td class=\"n\">%lld</td><td class=\"n\">%.0f</td><td></td></tr>\n"
               "</table>\n",
            (long long)total_params, total_flops);
    free(is_param);
    return page_close(a, f, tmp, final, 1);
}

static int write_layer(const atlas *a, int l, int first, const int *present)
{
    const atlas_layer *L = &a->layers[l];
    const char *name = cnv_model_tensor_name(a->cm.model, L->t);
    char file[64], sh[128];
    snprintf(file, sizeof file, "layer-%d.html", L->t);
    char *tmp, *final;
    FILE *f = page_open(a, file, &tmp, &final, name);
    if (!f)
        return 1;
    shape_text(&a->shapes[L->t], sh, sizeof sh);
    fputs("<nav><a href=\"index.html\">index</a>", f);
    if (l > 0)
        fprintf(f, "<a href=\"layer-%d.html\">previous layer</a>", a->layers[l - 1].t);
    if (l + 1 < a->n_layers)
        fprintf(f, "<a href=\"layer-%d.html\">next layer</a>", a->layers[l + 1].t);
    fputs("</nav>\n<h1>", f);
    put_html(f, name);
    fputs("</h1>\n<p>", f);
    if (L->node >= 0)
        put_html(f, cnv_model_node_op(a->cm.model, L->node)), fputs(", ", f);
    fprintf(f, "output %s; channels 0 to %d of %d, each the image that most excites its mean.</p>\n"
               "<div class=\"grid\">\n",
            sh, L->shown - 1, L->C);
    int scale = grid_scale(a);
    for (int c = 0; c < L->shown; c++) {
        const atlas_item *it = &a->items[first + c];
        char alt[32];
        snprintf(alt, sizeof alt, "channel %d", c);
        fprintf(f, "<a class=\"cell\" href=\"channel-%d-%d.html\">", L->t, c);
        put_picture(a, f, it, present[first + c], scale, alt);
        fprintf(f, "%d</a>\n", c);
    }
    fputs("</div>\n", f);
    return page_close(a, f, tmp, final, 1);
}

static int write_channel(const atlas *a, int l, int c, int item, int present)
{
    const atlas_layer *L = &a->layers[l];
    const char *name = cnv_model_tensor_name(a->cm.model, L->t);
    char file[64], title[64];
    snprintf(file, sizeof file, "channel-%d-%d.html", L->t, c);
    snprintf(title, sizeof title, "channel %d", c);
    char *tmp, *final;
    FILE *f = page_open(a, file, &tmp, &final, title);
    if (!f)
        return 1;
    fprintf(f, "<nav><a href=\"index.html\">index</a><a href=\"layer-%d.html\">layer</a>", L->t);
    if (c > 0)
        fprintf(f, "<a href=\"channel-%d-%d.html\">previous channel</a>", L->t, c - 1);
    if (c + 1 < L->shown)
        fprintf(f, "<a href=\"channel-%d-%d.html\">next channel</a>", L->t, c + 1);
    fputs("</nav>\n<h1>", f);
    put_html(f, name);
    fprintf(f, ", channel %d</h1>\n<p>", c);
    put_picture(a, f, &a->items[item], present, big_scale(a), title);
    fputs("</p>\n", f);
    if (present)
        fprintf(f, "<p><a href=\"%s\">the picture at its size (%dx%d)</a></p>\n", a->items[item].file, a->cm.width,
                a->cm.height);
    return page_close(a, f, tmp, final, 1);
}

static int write_classes(const atlas *a, int first, const int *present)
{
    char *tmp, *final;
    FILE *f = page_open(a, "classes.html", &tmp, &final, "class models");
    if (!f)
        return 1;
    fputs("<nav><a href=\"index.html\">index</a></nav>\n<h1>Class models</h1>\n"
          "<p>For each class, the image its raw score is highest on.</p>\n<div class=\"grid\">\n",
          f);
    int scale = grid_scale(a);
    for (int k = 0; k < a->n_classes; k++) {
        const char *label = cli_label(&a->cm, a->classes[k]);
        char alt[320];
        snprintf(alt, sizeof alt, "%d %s", a->classes[k], label);
        fputs("<span class=\"cell\">", f);
        put_picture(a, f, &a->items[first + k], present[first + k], scale, alt);
        fprintf(f, "%d ", a->classes[k]);
        put_html(f, label);
        fputs("</span>\n", f);
    }
    fputs("</div>\n", f);
    return page_close(a, f, tmp, final, 1);
}

static int merge(const atlas *a, int *missing)
{
    int *present = calloc((size_t)a->n_items + 1, sizeof *present);
    if (!present)
        return cli_error("out of memory");
    *missing = 0;
    for (int i = 0; i < a->n_items; i++) {
        char *p = site_path(a, a->items[i].file);
        if (!p) {
            free(present);
            return cli_error("out of memory");
        }
        present[i] = file_exists(p);
        *missing += !present[i];
        free(p);
    }
    char *tmp, *final;
    FILE *f = page_open(a, "style.css", &tmp, &final, NULL);
    int rc = f ? 0 : 1;
    if (!rc) {
        fputs(style_css, f);
        rc = page_close(a, f, tmp, final, 0);
    }
    if (!rc)
        rc = write_index(a, present);
    int item = 0;
    for (int l = 0; l < a->n_layers && !rc; l++) {
        rc = write_layer(a, l, item, present);
        for (int c = 0; c < a->layers[l].shown && !rc; c++)
            rc = write_channel(a, l, c, item + c, present[item + c]);
        item += a->layers[l].shown;
    }
    if (!rc && a->n_classes)
        rc = write_classes(a, item, present);
    free(present);
    return rc;
}

/* ------------------------------------------------------------- the command */

/* The model as the pages name it: the file's name without its directory,
 * which differs between the machines of a sharded run (the bytes' hash
 * identifies the file). */
static const char *model_name(const atlas *a)
{
    const char *slash = strrchr(a->cm.path, '/');
    return slash && slash[1] ? slash + 1 : a->cm.path;
}

/* The command line the pages show: the options that decide the content,
 * in a fixed order, so that shards, resumed runs and a merge agree. */
static int make_command(atlas *a, const cli_model_opts *mo)
{
    char buf[4096];
    size_t u = 0;
    u += (size_t)snprintf(buf + u, sizeof buf - u, "cnnviz atlas -m %s", model_name(a));
    const char *names[] = {"--mean", "--std", "--labels", "--size", "--preset", "--channel-order"};
    const char *vals[] = {mo->mean, mo->std, mo->labels, mo->size, mo->preset, mo->order};
    for (int i = 0; i < 6; i++)
        if (vals[i] && u < sizeof buf)
            u += (size_t)snprintf(buf + u, sizeof buf - u, " %s %s", names[i], vals[i]);
    if (u < sizeof buf)
        snprintf(buf + u, sizeof buf - u, " --layers %s --per-layer %s --classes %s --iters %d --seed %llu",
                 a->layers_text, a->per_text, a->classes_text, a->iters, (unsigned long long)a->seed);
    a->command = strdup(buf);
    return a->command ? 0 : cli_error("out of memory");
}

static void atlas_free(atlas *a)
{
    free(a->layers);
    free(a->classes);
    free(a->items);
    free(a->shapes);
    free(a->flops);
    free(a->command);
}

int cmd_atlas(int argc, char **argv)
{
    cli_model_opts mo = {0};
    atlas a = {0};
    a.layers_text = "all";
    a.per_text = "all";
    a.classes_text = "all";
    a.iters = ATLAS_ITERS;
    a.per_layer = -1;
    int shard[2] = {0, 1}, resume = 0, merge_only = 0, no_time = 0, json = 0, quiet = 0;
    const cli_opt opts[] = {
        CLI_OPT_STRING("--output", "-o", &a.site),
        CLI_OPT_STRING("--layers", NULL, &a.layers_text),
        CLI_OPT_STRING("--per-layer", NULL, &a.per_text),
        CLI_OPT_STRING("--classes", NULL, &a.classes_text),
        CLI_OPT_INT("--iters", &a.iters, 1, INT_MAX),
        CLI_OPT_SEED("--seed", &a.seed),
        CLI_OPT_CUSTOM("--shard", parse_shard, shard),
        CLI_OPT_SET("--resume", &resume),
        CLI_OPT_SET("--merge", &merge_only),
        CLI_OPT_SET("--no-time", &no_time),
        CLI_OPT_SET("--json", &json),
        CLI_OPT_SET("--quiet", &quiet),
        {0},
    };
    const cli_spec spec = {"atlas", usage, &mo, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    if (!a.site)
        return cli_usage_error("atlas: give -o SITE/ (see --help)");
    if (merge_only && shard[1] > 1)
        return cli_usage_error("atlas: --merge renders nothing; give it without --shard");
    if (strcmp(a.per_text, "all")) {
        char *end;
        errno = 0;
        long k = strtol(a.per_text, &end, 10);
        if (errno || end == a.per_text || *end || k < 1 || k > INT_MAX)
            return cli_usage_error("atlas: bad value '%s' for --per-layer (a count, or all)", a.per_text);
        a.per_layer = (int)k;
    }
    /* the site's directory without trailing slashes ("/" stays) */
    char *site = strdup(a.site);
    if (!site)
        return cli_error("out of memory");
    for (size_t n = strlen(site); n > 1 && site[n - 1] == '/'; n--)
        site[n - 1] = '\0';
    a.site = site;

    if ((rc = cli_model_open(&mo, &a.cm)) != 0) {
        free(site);
        return rc;
    }
    const cnv_model *m = a.cm.model;
    int nt = cnv_model_tensor_count(m), nn = cnv_model_node_count(m);
    cnv_shape in = {4, {1, a.cm.channels, a.cm.height, a.cm.width}};
    char err[512];
    a.shapes = calloc((size_t)nt + 1, sizeof *a.shapes);
    a.flops = calloc((size_t)nn + 1, sizeof *a.flops);
    if (!a.shapes || !a.flops)
        rc = cli_error("out of memory");
    else if (cnv_model_infer_shapes(m, 1, &in, a.shapes, nt, a.flops, nn, err, sizeof err) != CNV_OK)
        rc = cli_error("%s", err);
    if (!rc)
        rc = hash_file(a.cm.path, &a.model_hash);
    if (!rc) {
        /* what decides a picture besides the model, the item and the seed;
         * %a prints floats exactly */
        cnv_lucid_params lp = cnv_lucid_params_default();
        const cnv_preprocess *pp = &a.cm.pp;
        snprintf(a.recipe, sizeof a.recipe,
                 "lucid iters=%d lr=%a spectral=%d decorrelate=%d sigmoid=%d init=%a shift=%a scale=%a,%a "
                 "rotate=%a blur=%a pre_relu=1 size=%dx%dx%d mean=%a,%a,%a std=%a,%a,%a order=%d",
                 a.iters, (double)lp.lr, lp.spectral, lp.decorrelate, lp.sigmoid, (double)lp.init_std,
                 (double)lp.shift, (double)lp.scale_min, (double)lp.scale_max, (double)lp.rotate, (double)lp.blur,
                 a.cm.channels, a.cm.height, a.cm.width, (double)pp->mean[0], (double)pp->mean[1],
                 (double)pp->mean[2], (double)pp->std[0], (double)pp->std[1], (double)pp->std[2], (int)pp->order);
    }
    if (!rc)
        rc = choose_layers(&a);
    if (!rc)
        rc = choose_classes(&a);
    if (!rc)
        rc = list_items(&a);
    if (!rc)
        rc = make_command(&a, &mo);
    if (!rc && !no_time) {
        const char *sde = getenv("SOURCE_DATE_EPOCH");
        time_t now = sde && *sde ? (time_t)strtoll(sde, NULL, 10) : time(NULL);
        struct tm tm;
        if (gmtime_r(&now, &tm))
            strftime(a.date, sizeof a.date, "%Y-%m-%d %H:%M:%S UTC", &tm);
    }
    if (!rc)
        rc = make_dir(a.site);

    render_stats rs = {0};
    int missing = -1;
    double t0 = cli_now();
    if (!rc && !merge_only)
        rc = render(&a, shard[0], shard[1], resume, quiet, mo.threads == NULL, &rs);
    if (!rc && shard[1] == 1)
        rc = merge(&a, &missing);
    double secs = cli_now() - t0;
    if (!rc && json) {
        printf("{\"site\": ");
        cli_json_string(stdout, a.site);
        printf(", \"items\": %d, \"layers\": %d, \"channels\": %d, \"classes\": %d, \"shard\": [%d, %d], "
               "\"shard_items\": %d, \"rendered\": %d, \"skipped\": %d, \"missing\": ",
               a.n_items, a.n_layers, a.n_items - a.n_classes, a.n_classes, shard[0], shard[1],
               merge_only ? 0 : rs.items, rs.rendered, rs.skipped);
        if (missing >= 0)
            printf("%d", missing);
        else
            printf("null");
        printf(", \"iters\": %d, \"seed\": %llu, \"render_seconds\": %.3f, \"seconds\": %.3f}\n", a.iters,
               (unsigned long long)a.seed, rs.seconds, secs);
    } else if (!rc && !quiet) {
        fprintf(stderr, "atlas: %d items; rendered %d, skipped %d in %.1f s", a.n_items, rs.rendered, rs.skipped,
                rs.seconds);
        if (missing >= 0)
            fprintf(stderr, "; pages in %s/index.html (%d missing)", a.site, missing);
        fputc('\n', stderr);
    }
    atlas_free(&a);
    cli_model_close(&a.cm);
    free(site);
    return rc;
}
