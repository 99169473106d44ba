/* cnnviz atlas: the pages, built from whatever items exist (--merge). The
 * images' records are read one at a time: each image's page is written as
 * its record is read, and only the best few images of each channel and
 * class are kept, so the memory does not grow with the number of images.
 * The crops of those images that show what a channel's unit saw are made
 * here, named by their content like the items. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "atlas.h"

#define CLASS_IMAGES 8 /* images shown on a class's page */
#define CELL 84        /* a grid picture's larger side, CSS pixels */
/* random inputs a receptive field is measured on: a max pool passes the
 * gradient to one input of its window, another one on another input */
#define RF_TRIALS 16

/* ------------------------------------------------------------- HTML */

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
    "h2 { font-size: 1.1em; margin: 1.2em 0 0.5em; }\n"
    "nav { margin: 0 0 1em; }\n"
    "nav a { margin-right: 1em; }\n"
    "table { border-collapse: collapse; }\n"
    "th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }\n"
    "td.n { text-align: right; font-variant-numeric: tabular-nums; }\n"
    "td { white-space: nowrap; }\n"
    "td.name { white-space: normal; overflow-wrap: anywhere; }\n"
    ".grid { display: flex; flex-wrap: wrap; gap: 8px; }\n"
    ".cell { display: block; min-width: 92px; text-align: center; font-size: 12px; color: #222;"
    " text-decoration: none; }\n"
    ".cell img { background: #eee; display: block; margin: 0 auto; }\n"
    ".px { image-rendering: pixelated; }\n"
    ".missing { display: block; width: 84px; height: 84px; margin: 0 auto; background: #f4f4f4; color: #a00;"
    " line-height: 84px; font-size: 11px; }\n"
    ".pair { display: flex; flex-wrap: wrap; gap: 16px; }\n"
    ".pair figure { margin: 0; }\n"
    "figcaption { font-size: 12px; color: #444; max-width: 340px; }\n"
    ".made { margin-top: 2em; color: #666; font-size: 12px; }\n"
    "code { font-size: 12px; }\n";

/* A page is written beside its name and renamed, like the items. */
typedef struct page {
    FILE *f;
    char *tmp, *final;
} page;

static int page_open(const atlas *a, const char *name, const char *title, page *pg)
{
    *pg = (page){0};
    pg->final = atlas_site_path(a, name);
    pg->tmp = pg->final ? atlas_site_path2(a, name, ".tmp") : NULL;
    if (!pg->tmp) {
        free(pg->final);
        return 1;
    }
    if (!(pg->f = fopen(pg->tmp, "w"))) {
        cli_error("atlas: cannot write %s: %s", pg->tmp, strerror(errno));
        free(pg->tmp);
        free(pg->final);
        return 1;
    }
    if (title) {
        fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>", pg->f);
        put_html(pg->f, title);
        fputs("</title>\n<link rel=\"stylesheet\" href=\"style.css\">\n</head>\n<body>\n", pg->f);
    }
    return 0;
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
    fprintf(f, "), seed %llu, pictures at %dx%d", (unsigned long long)a->seed, a->cm.height, a->cm.width);
    if (a->n_images)
        fprintf(f, "; saliency by <code>cnnviz saliency --method %s,%s</code> at its defaults",
                cnv_saliency_method_name(a->methods[0]), cnv_saliency_method_name(a->methods[1]));
    fprintf(f, ". Model file FNV-1a 64 %016llx.", (unsigned long long)a->model_hash);
    if (a->timed_items)
        fprintf(f, " Rendering took %.1f s over %d items (one thread each; %s).", a->total_seconds, a->timed_items,
                "the sum of their times, whatever ran them side by side");
    if (a->date[0])
        fprintf(f, " Pages built %s.", a->date);
    fputs("</p>\n", f);
}

static int page_close(const atlas *a, page *pg, int html)
{
    if (html) {
        put_made(a, pg->f);
        fputs("</body>\n</html>\n", pg->f);
    }
    int bad = ferror(pg->f);
    bad |= fclose(pg->f) != 0;
    int rc = 0;
    if (bad || rename(pg->tmp, pg->final) != 0) {
        rc = cli_error("atlas: cannot write %s: %s", pg->final, strerror(errno));
        remove(pg->tmp);
    }
    free(pg->tmp);
    free(pg->final);
    return rc;
}

static void shape_text(const cnv_shape *y, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int d = 0; d < y->ndim && used < len; d++)
        used += (size_t)snprintf(buf + used, len - used, d ? "x%lld" : "%lld", (long long)y->dims[d]);
}

/* An <img> of a file w x h pixels shown with its larger side `side` CSS
 * pixels, or a "missing" box. */
static void put_img(FILE *f, const char *file, const char *suffix, int present, int w, int h, int side,
                    const char *alt)
{
    if (!present) {
        fputs("<span class=\"missing\">missing</span>", f);
        return;
    }
    int big = w > h ? w : h;
    fputs("<img src=\"", f);
    put_html(f, file);
    fprintf(f, "%s\" width=\"%d\" height=\"%d\" alt=\"", suffix, (w * side + big / 2) / big,
            (h * side + big / 2) / big);
    put_html(f, alt);
    /* enlarged pictures keep their pixels square and sharp */
    fputs(side >= 2 * big ? "\" class=\"px\">" : "\">", f);
}

static int model_side(const atlas *a)
{
    return a->cm.width > a->cm.height ? a->cm.width : a->cm.height;
}

/* The size a picture at the model's size shows at for about `side` CSS
 * pixels: an integer multiple of its pixels (they stay square) when it is
 * smaller, else side itself. */
static int scale_for(const atlas *a, int side)
{
    int big = model_side(a);
    return big >= side ? side : side / big * big;
}

/* A grid cell: CELL pixels, twice that for pictures over twice as large
 * (a 224-pixel picture is not legible at 84). */
static int grid_side(const atlas *a)
{
    return model_side(a) > 2 * CELL ? 2 * CELL : CELL;
}

static void put_picture(const atlas *a, FILE *f, const atlas_item *it, int present, int side, const char *alt)
{
    put_img(f, it->file, "", present, a->cm.width, a->cm.height, scale_for(a, side), alt);
}

/* " in 0.09 s" when the item's time is known. */
static void put_seconds(const atlas *a, FILE *f, int item)
{
    if (a->seconds && a->seconds[item] >= 0)
        fprintf(f, " in %.2f s", a->seconds[item]);
}

/* ------------------------------------------------------------- what merge knows */

/* Both start with the float they are ranked by (keep_best). */
typedef struct hit {
    float v;
    int image, y, x;
} hit;

typedef struct pick {
    float p;
    int image;
} pick;

typedef struct merge_state {
    atlas *a;
    char *present;     /* per item */
    hit *hits;         /* ATLAS top per shown channel, best first */
    int *n_hits;
    pick *picks;       /* CLASS_IMAGES per class, most confident first */
    int *n_picks, *n_predicted;
    int *rf_h, *rf_w;  /* each layer's receptive field at the input */
    char *class_page;  /* per class: whether classes has it */
} merge_state;

/* ------------------------------------------------------------- overview */

static int write_index(merge_state *ms)
{
    const atlas *a = ms->a;
    const cnv_model *m = a->cm.model;
    page pg;
    if (page_open(a, "index.html", "atlas", &pg))
        return 1;
    FILE *f = pg.f;
    fputs("<h1>Atlas of ", f);
    put_html(f, atlas_model_name(a));
    fputs("</h1>\n<nav>", f);
    if (a->n_classes)
        fputs("<a href=\"classes.html\">class models</a>", f);
    if (a->n_images)
        fputs("<a href=\"images.html\">images</a>", f);
    fputs("</nav>\n", f);
    int nt = cnv_model_tensor_count(m), n = cnv_model_node_count(m);
    /* a node's parameters: its inputs that are the model's parameters */
    char *is_param = calloc((size_t)nt + 1, 1);
    if (!is_param) {
        page_close(a, &pg, 0);
        return cli_error("out of memory");
    }
    for (int k = 0; k < cnv_model_param_count(m); k++) {
        int t = cnv_model_tensor_index(m, cnv_model_param_name(m, k));
        if (t >= 0)
            is_param[t] = 1;
    }
    int missing = 0;
    for (int i = 0; i < a->n_items; i++)
        missing += !ms->present[i];
    fprintf(f, "<p>Input 1x%dx%dx%d. %d items: %d channels of %d layers", a->cm.channels, a->cm.height,
            a->cm.width, a->n_items, a->n_channels, a->n_layers);
    if (a->negatives)
        fputs(" with their negatives", f);
    fprintf(f, ", %d class models, %d images", a->n_classes, a->n_images);
    if (missing)
        fprintf(f, " (%d missing)", missing);
    fputs(".</p>\n<table>\n<tr><th>#</th><th>op</th><th>output (the node's name on hover)</th><th>shape</th>"
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
        fputs("</td><td class=\"name\" title=\"", f);
        put_html(f, cnv_model_node_name(m, i));
        fputs("\">", f);
        put_html(f, cnv_model_tensor_name(m, out));
        fprintf(f, "</td><td>%s</td><td class=\"n\">%lld</td><td class=\"n\">%.0f</td><td>", sh, (long long)params,
                fl);
        for (int l = 0; l < a->n_layers; l++)
            if (a->layers[l].t == out)
                fprintf(f, "<a href=\"layer-%d.html\">%d of %d channels</a>", out, a->layers[l].shown,
                        a->layers[l].C);
        fputs("</td></tr>\n", f);
    }
    fprintf(f, "<tr><th colspan=\"4\">total</th><td class=\"n\">%lld</td><td class=\"n\">%.0f</td><td></td></tr>\n"
               "</table>\n",
            (long long)total_params, total_flops);
    free(is_param);
    return page_close(a, &pg, 1);
}

/* ------------------------------------------------------------- layers and channels */

static int write_layer(merge_state *ms, int l)
{
    const atlas *a = ms->a;
    const atlas_layer *L = &a->layers[l];
    const char *name = cnv_model_tensor_name(a->cm.model, L->t);
    char file[64], sh[128];
    snprintf(file, sizeof file, "layer-%d.html", L->t);
    page pg;
    if (page_open(a, file, name, &pg))
        return 1;
    FILE *f = pg.f;
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
    for (int c = 0; c < L->shown; c++) {
        int i = L->first_channel + c;
        char alt[32];
        snprintf(alt, sizeof alt, "channel %d", c);
        fprintf(f, "<a class=\"cell\" href=\"channel-%d-%d.html\">", L->t, c);
        put_picture(a, f, &a->items[i], ms->present[i], grid_side(a), alt);
        fprintf(f, "%d</a>\n", c);
    }
    fputs("</div>\n", f);
    if (L->n_diverse) {
        fprintf(f, "<h2>Diversity</h2>\n<p>%d pictures of each of the first %d channels, made together with "
                   "Lucid's diversity term (their Gram matrices kept apart), so that they show different "
                   "things the channel responds to.</p>\n",
                ATLAS_DIVERSE, L->n_diverse);
        int w = ATLAS_DIVERSE * a->cm.width + (ATLAS_DIVERSE - 1) * 2, h = a->cm.height;
        int side = scale_for(a, grid_side(a)) * w / model_side(a);
        for (int c = 0; c < L->n_diverse; c++) {
            int i = L->first_diverse + c;
            char alt[48];
            snprintf(alt, sizeof alt, "channel %d, diversity", c);
            fprintf(f, "<p><a href=\"channel-%d-%d.html\">channel %d</a><br>", L->t, c, c);
            put_img(f, a->items[i].file, "", ms->present[i], w, h, side, alt);
            fputs("</p>\n", f);
        }
    }
    return page_close(a, &pg, 1);
}

/* The crop of an image that channel l's unit (y, x) sees: its receptive
 * field, at least a quarter of the image, centered on the unit and moved
 * inside the image. */
static void crop_box(const merge_state *ms, int l, int y, int x, int box[4])
{
    const atlas *a = ms->a;
    const atlas_layer *L = &a->layers[l];
    int H = a->cm.height, W = a->cm.width;
    int sh = ms->rf_h[l] > (H + 3) / 4 ? ms->rf_h[l] : (H + 3) / 4;
    int sw = ms->rf_w[l] > (W + 3) / 4 ? ms->rf_w[l] : (W + 3) / 4;
    sh = sh < H ? sh : H;
    sw = sw < W ? sw : W;
    int top = (int)lround((y + 0.5) * H / L->h - sh / 2.0), left = (int)lround((x + 0.5) * W / L->w - sw / 2.0);
    top = top < 0 ? 0 : top > H - sh ? H - sh : top;
    left = left < 0 ? 0 : left > W - sw ? W - sw : left;
    box[0] = top;
    box[1] = left;
    box[2] = sh;
    box[3] = sw;
}

/* The crop's file, made from the image's input picture unless it exists. */
static int make_crop(merge_state *ms, const hit *h, const int box[4], char *file, size_t len)
{
    atlas *a = ms->a;
    const atlas_item *im = &a->items[a->first_image + h->image];
    uint64_t k = atlas_fnv_str(ATLAS_FNV_OFFSET, im->file);
    k = atlas_fnv(k, box, 4 * sizeof *box);
    snprintf(file, len, "items/x%016llx.png", (unsigned long long)k);
    char *out = atlas_site_path(a, file), *src = out ? atlas_site_path2(a, im->file, ".in.png") : NULL;
    int rc = src ? 0 : 1;
    char err[512];
    cnv_image in = {0}, crop = {0};
    if (!rc && !atlas_file_exists(out)) {
        if (cnv_image_load(src, &in, err, sizeof err) != CNV_OK ||
            cnv_image_create(box[3], box[2], in.channels, &crop, err, sizeof err) != CNV_OK)
            rc = cli_error("%s", err);
        else if (in.width != a->cm.width || in.height != a->cm.height)
            rc = cli_error("atlas: %s is not %dx%d", src, a->cm.width, a->cm.height);
        else {
            for (int y = 0; y < box[2]; y++)
                memcpy(crop.data + (size_t)y * box[3] * in.channels,
                       in.data + ((size_t)(box[0] + y) * in.width + box[1]) * in.channels,
                       (size_t)box[3] * in.channels);
            if (cnv_image_write_png(&crop, out, err, sizeof err) != CNV_OK)
                rc = cli_error("%s", err);
        }
    }
    cnv_image_free(&in);
    cnv_image_free(&crop);
    free(out);
    free(src);
    return rc;
}

static int write_channel(merge_state *ms, int l, int c)
{
    atlas *a = ms->a;
    const atlas_layer *L = &a->layers[l];
    const char *name = cnv_model_tensor_name(a->cm.model, L->t);
    char file[64], title[64];
    snprintf(file, sizeof file, "channel-%d-%d.html", L->t, c);
    snprintf(title, sizeof title, "channel %d", c);
    page pg;
    if (page_open(a, file, title, &pg))
        return 1;
    FILE *f = pg.f;
    fprintf(f, "<nav><a href=\"index.html\">index</a><a href=\"layer-%d.html\">layer</a>", L->t);
    if (c > 0)
        fprintf(f, "<a href=\"channel-%d-%d.html\">previous channel</a>", L->t, c - 1);
    if (c + 1 < L->shown)
        fprintf(f, "<a href=\"channel-%d-%d.html\">next channel</a>", L->t, c + 1);
    fputs("</nav>\n<h1>", f);
    put_html(f, name);
    fprintf(f, ", channel %d</h1>\n<div class=\"pair\">\n<figure>", c);
    int i = L->first_channel + c;
    put_picture(a, f, &a->items[i], ms->present[i], 4 * CELL, title);
    fputs("<figcaption>raises the channel's mean most", f);
    if (ms->present[i])
        fprintf(f, " (<a href=\"%s\">%dx%d</a>)", a->items[i].file, a->cm.width, a->cm.height);
    put_seconds(a, f, i);
    fputs("</figcaption></figure>\n", f);
    if (L->first_negative >= 0) {
        int g = L->first_negative + c;
        fputs("<figure>", f);
        put_picture(a, f, &a->items[g], ms->present[g], 4 * CELL, "negative");
        fputs("<figcaption>lowers it most (the negative, on the pre-activation)", f);
        put_seconds(a, f, g);
        fputs("</figcaption></figure>\n", f);
    }
    fputs("</div>\n", f);
    if (c < L->n_diverse) {
        int d = L->first_diverse + c, w = ATLAS_DIVERSE * a->cm.width + (ATLAS_DIVERSE - 1) * 2;
        fputs("<h2>Diversity</h2>\n<p>", f);
        put_img(f, a->items[d].file, "", ms->present[d], w, a->cm.height,
                scale_for(a, 2 * CELL) * w / model_side(a), "diversity");
        fputs("</p>\n", f);
    }
    if (a->n_images) {
        int ch = L->channel0 + c, n = ms->n_hits[ch];
        fprintf(f, "<h2>Images that excite it most</h2>\n<p>The %d images of the %d with the largest value of "
                   "one unit of the channel; each crop is what that unit sees (its receptive field, %dx%d "
                   "pixels, at least a quarter of the image).</p>\n<div class=\"grid\">\n",
                n, a->n_images, ms->rf_h[l], ms->rf_w[l]);
        for (int k = 0; k < n; k++) {
            const hit *h = &ms->hits[(size_t)ch * a->top + k];
            int box[4];
            char crop[40];
            crop_box(ms, l, h->y, h->x, box);
            if (make_crop(ms, h, box, crop, sizeof crop)) {
                page_close(a, &pg, 0);
                return 1;
            }
            fprintf(f, "<a class=\"cell\" href=\"image-%d.html\">", h->image);
            put_img(f, crop, "", 1, box[3], box[2], grid_side(a), "crop");
            fprintf(f, "%.3g at (%d, %d)</a>\n", (double)h->v, h->y, h->x);
        }
        fputs("</div>\n", f);
    }
    return page_close(a, &pg, 1);
}

/* ------------------------------------------------------------- classes */

static void put_class_link(const merge_state *ms, FILE *f, int k)
{
    const char *label = cli_label(&ms->a->cm, k);
    if (ms->class_page[k])
        fprintf(f, "<a href=\"class-%d.html\">", k);
    fprintf(f, "%d ", k);
    put_html(f, label);
    if (ms->class_page[k])
        fputs("</a>", f);
}

static int write_classes(merge_state *ms)
{
    const atlas *a = ms->a;
    page pg;
    if (page_open(a, "classes.html", "class models", &pg))
        return 1;
    FILE *f = pg.f;
    fputs("<nav><a href=\"index.html\">index</a></nav>\n<h1>Class models</h1>\n"
          "<p>For each class, the image its raw score is highest on.</p>\n<div class=\"grid\">\n",
          f);
    for (int k = 0; k < a->n_classes; k++) {
        int cls = a->classes[k], i = a->first_class + k;
        const char *label = cli_label(&a->cm, cls);
        char alt[320];
        snprintf(alt, sizeof alt, "%d %s", cls, label);
        fprintf(f, "<a class=\"cell\" href=\"class-%d.html\">", cls);
        put_picture(a, f, &a->items[i], ms->present[i], grid_side(a), alt);
        fprintf(f, "%d ", cls);
        put_html(f, label);
        fputs("</a>\n", f);
    }
    fputs("</div>\n", f);
    return page_close(a, &pg, 1);
}

/* The saliency maps of an image, as cells. */
static void put_maps(const atlas *a, FILE *f, const atlas_item *im, int side)
{
    for (int m = 0; m < ATLAS_METHODS; m++) {
        char suffix[16];
        snprintf(suffix, sizeof suffix, ".s%d.png", m);
        fputs("<figure>", f);
        put_img(f, im->file, suffix, 1, a->cm.width, a->cm.height, scale_for(a, side),
                cnv_saliency_method_name(a->methods[m]));
        fprintf(f, "<figcaption>%s</figcaption></figure>\n", cnv_saliency_method_name(a->methods[m]));
    }
}

static int write_class(merge_state *ms, int k)
{
    const atlas *a = ms->a;
    int cls = a->classes[k], i = a->first_class + k;
    const char *label = cli_label(&a->cm, cls);
    char file[64];
    snprintf(file, sizeof file, "class-%d.html", cls);
    page pg;
    if (page_open(a, file, label, &pg))
        return 1;
    FILE *f = pg.f;
    fputs("<nav><a href=\"index.html\">index</a><a href=\"classes.html\">class models</a>", f);
    if (a->n_images)
        fputs("<a href=\"images.html\">images</a>", f);
    fprintf(f, "</nav>\n<h1>Class %d: ", cls);
    put_html(f, label);
    fputs("</h1>\n<figure>", f);
    put_picture(a, f, &a->items[i], ms->present[i], 4 * CELL, label);
    fputs("<figcaption>the class model: the image the class's raw score is highest on", f);
    put_seconds(a, f, i);
    fputs("</figcaption></figure>\n", f);
    if (a->n_images) {
        int n = ms->n_picks[cls];
        fprintf(f, "<h2>Images predicted as this class</h2>\n<p>%d of the %d images", ms->n_predicted[cls],
                a->n_images);
        if (n)
            fprintf(f, "; the %d most confident, each with its saliency maps for this class", n);
        fputs(".</p>\n", f);
        for (int j = 0; j < n; j++) {
            const pick *p = &ms->picks[(size_t)cls * CLASS_IMAGES + j];
            const atlas_item *im = &a->items[a->first_image + p->image];
            fprintf(f, "<div class=\"pair\">\n<figure><a href=\"image-%d.html\">", p->image);
            put_img(f, im->file, ".in.png", 1, a->cm.width, a->cm.height, scale_for(a, 2 * CELL), "image");
            fprintf(f, "</a><figcaption>");
            put_html(f, a->image_names[p->image]);
            fprintf(f, ": %.2f%%</figcaption></figure>\n", 100.0 * p->p);
            put_maps(a, f, im, 2 * CELL);
            fputs("</div>\n", f);
        }
    }
    return page_close(a, &pg, 1);
}

/* ------------------------------------------------------------- images */

#define LINE 1100 /* a record's longest line */

typedef struct record {
    char name[LINE];
    char error[LINE]; /* "" when the image was read and scored */
    int n_top, cls[ATLAS_TOP];
    float prob[ATLAS_TOP];
} record;

/* Reads a line of f into buf (without its newline); 1 at the end, or for
 * a line longer than the buffer. */
static int read_line(FILE *f, char *buf, size_t len)
{
    if (!fgets(buf, (int)len, f))
        return 1;
    size_t n = strlen(buf);
    if (n == 0 || buf[n - 1] != '\n')
        return 1;
    buf[n - 1] = '\0';
    return 0;
}

/* Inserts item into list (n of at most cap elements of `size` bytes,
 * best first), by the float each starts with; an equal one goes after
 * those already there (images come in order: the earlier file first). */
static void keep_best(void *list, size_t size, int *n, int cap, const void *item)
{
    unsigned char *l = list;
    float v, w;
    memcpy(&v, item, sizeof v);
    int at = *n;
    for (; at > 0; at--) {
        memcpy(&w, l + (size_t)(at - 1) * size, sizeof w);
        if (!(v > w))
            break;
    }
    if (at >= cap)
        return;
    int last = *n < cap ? *n : cap - 1;
    memmove(l + (size_t)(at + 1) * size, l + (size_t)at * size, (size_t)(last - at) * size);
    memcpy(l + (size_t)at * size, item, size);
    if (*n < cap)
        (*n)++;
}

/* Reads image j's record, and folds its channels' values into the best
 * images of each channel. The record is a file of the site, written by
 * render_image: it is read as untrusted all the same (every count and
 * index is checked against what this atlas expects). */
static int read_record(merge_state *ms, int j, record *r)
{
    atlas *a = ms->a;
    const atlas_item *im = &a->items[a->first_image + j];
    char *path = atlas_site_path2(a, im->file, ".txt");
    if (!path)
        return 1;
    FILE *f = fopen(path, "r");
    if (!f) {
        int rc = cli_error("atlas: cannot read %s: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    char line[LINE];
    int bad = read_line(f, line, sizeof line) || strcmp(line, "cnnviz-atlas-image 1");
    bad = bad || read_line(f, line, sizeof line) || strncmp(line, "name ", 5);
    if (!bad)
        snprintf(r->name, sizeof r->name, "%s", line + 5);
    r->error[0] = '\0';
    r->n_top = 0;
    bad = bad || read_line(f, line, sizeof line);
    if (!bad && !strncmp(line, "error ", 6)) {
        snprintf(r->error, sizeof r->error, "%s", line + 6);
        bad = read_line(f, line, sizeof line) || strcmp(line, "end");
    } else if (!bad) {
        int used = 0;
        bad = sscanf(line, "top %d%n", &r->n_top, &used) != 1 || line[used] || r->n_top < 1 || r->n_top > ATLAS_TOP;
        for (int i = 0; !bad && i < r->n_top; i++) {
            float score;
            bad = read_line(f, line, sizeof line) ||
                  sscanf(line, "%d %g %g%n", &r->cls[i], &r->prob[i], &score, &used) != 3 || line[used] ||
                  r->cls[i] < 0 || r->cls[i] >= a->n_scores || !(r->prob[i] >= 0.0f && r->prob[i] <= 1.0f);
        }
        for (int l = 0; !bad && l < a->n_layers; l++) {
            const atlas_layer *L = &a->layers[l];
            int t, n;
            bad = read_line(f, line, sizeof line) || sscanf(line, "layer %d %d%n", &t, &n, &used) != 2 ||
                  line[used] || t != L->t || n != L->shown;
            for (int c = 0; !bad && c < L->shown; c++) {
                hit h = {.image = j};
                bad = read_line(f, line, sizeof line) ||
                      sscanf(line, "%g %d %d%n", &h.v, &h.y, &h.x, &used) != 3 || line[used] || h.y < 0 ||
                      h.y >= L->h || h.x < 0 || h.x >= L->w;
                if (!bad && isfinite(h.v) && a->top > 0)
                    keep_best(&ms->hits[(size_t)(L->channel0 + c) * a->top], sizeof h,
                              &ms->n_hits[L->channel0 + c], a->top, &h);
            }
        }
        bad = bad || read_line(f, line, sizeof line) || strcmp(line, "end");
    }
    fclose(f);
    int rc = bad ? cli_error("atlas: %s is not an image record of this atlas", path) : 0;
    free(path);
    if (!rc && r->n_top) {
        ms->n_predicted[r->cls[0]]++;
        pick p = {r->prob[0], j};
        keep_best(&ms->picks[(size_t)r->cls[0] * CLASS_IMAGES], sizeof p, &ms->n_picks[r->cls[0]], CLASS_IMAGES, &p);
    }
    return rc;
}

static int write_image(merge_state *ms, int j, const record *r)
{
    const atlas *a = ms->a;
    const atlas_item *im = &a->items[a->first_image + j];
    char file[64];
    snprintf(file, sizeof file, "image-%d.html", j);
    page pg;
    if (page_open(a, file, r->name, &pg))
        return 1;
    FILE *f = pg.f;
    fputs("<nav><a href=\"index.html\">index</a><a href=\"images.html\">images</a>", f);
    if (j > 0)
        fprintf(f, "<a href=\"image-%d.html\">previous image</a>", j - 1);
    if (j + 1 < a->n_images)
        fprintf(f, "<a href=\"image-%d.html\">next image</a>", j + 1);
    fputs("</nav>\n<h1>", f);
    put_html(f, r->name);
    fputs("</h1>\n", f);
    if (r->error[0]) {
        fputs("<p>", f);
        put_html(f, r->error);
        fputs(".</p>\n", f);
        return page_close(a, &pg, 1);
    }
    fputs("<table>\n<tr><th>class</th><th>probability</th></tr>\n", f);
    for (int i = 0; i < r->n_top; i++) {
        fputs("<tr><td>", f);
        put_class_link(ms, f, r->cls[i]);
        fprintf(f, "</td><td class=\"n\">%.2f%%</td></tr>\n", 100.0 * r->prob[i]);
    }
    fputs("</table>\n<h2>Saliency for its top class, ", f);
    put_html(f, cli_label(&a->cm, r->cls[0]));
    fputs("</h2>\n<div class=\"pair\">\n<figure>", f);
    put_img(f, im->file, ".in.png", 1, a->cm.width, a->cm.height, scale_for(a, 3 * CELL), "the model's input");
    fprintf(f, "<figcaption>the model's input, %dx%d; classified and explained", a->cm.width, a->cm.height);
    put_seconds(a, f, a->first_image + j);
    fputs("</figcaption></figure>\n", f);
    put_maps(a, f, im, 3 * CELL);
    fputs("</div>\n", f);
    return page_close(a, &pg, 1);
}

/* Every image's page, the images page, and the best images of each
 * channel and class, in one pass over the records. */
static int scan_images(merge_state *ms)
{
    atlas *a = ms->a;
    page pg;
    if (page_open(a, "images.html", "images", &pg))
        return 1;
    FILE *f = pg.f;
    fputs("<nav><a href=\"index.html\">index</a></nav>\n<h1>Images</h1>\n<p>", f);
    fprintf(f, "%d images from <code>", a->n_images);
    put_html(f, a->images_dir);
    fputs("</code> as the model sees them, with its top class.</p>\n<div class=\"grid\">\n", f);
    int rc = 0;
    record *r = malloc(sizeof *r);
    if (!r)
        rc = cli_error("out of memory");
    for (int j = 0; j < a->n_images && !rc; j++) {
        const atlas_item *im = &a->items[a->first_image + j];
        if (!ms->present[a->first_image + j]) {
            /* a page all the same, which says so: the neighbours link to it */
            snprintf(r->name, sizeof r->name, "%s", a->image_names[j]);
            snprintf(r->error, sizeof r->error, "Missing: this image's item is not rendered yet");
            if ((rc = write_image(ms, j, r)))
                break;
            fprintf(f, "<a class=\"cell\" href=\"image-%d.html\">", j);
            put_img(f, "", "", 0, 0, 0, CELL, "");
            put_html(f, a->image_names[j]);
            fputs("</a>\n", f);
            continue;
        }
        if ((rc = read_record(ms, j, r)) || (rc = write_image(ms, j, r)))
            break;
        a->unreadable += r->error[0] != '\0';
        fprintf(f, "<a class=\"cell\" href=\"image-%d.html\">", j);
        if (r->error[0])
            fputs("<span class=\"missing\">unreadable</span>", f);
        else
            put_img(f, im->file, ".in.png", 1, a->cm.width, a->cm.height, scale_for(a, grid_side(a)), "image");
        put_html(f, r->error[0] ? r->name : cli_label(&a->cm, r->cls[0]));
        fputs("</a>\n", f);
    }
    free(r);
    fputs("</div>\n", f);
    if (rc) {
        page_close(a, &pg, 0);
        return rc;
    }
    return page_close(a, &pg, 1);
}

/* Each layer's receptive field at the input: the box of input pixels
 * whose gradient is nonzero for the unit at the layer's center (every
 * channel), over RF_TRIALS random inputs so that ReLUs closed on one are open
 * on another and a max pool's window passes the gradient to another of its
 * inputs. */
static int receptive_fields(merge_state *ms)
{
    atlas *a = ms->a;
    const cli_model *cm = &a->cm;
    int H = cm->height, W = cm->width, rc = 0;
    cnv_session *s = NULL;
    float *seed = NULL;
    size_t most = 0;
    for (int l = 0; l < a->n_layers; l++) {
        size_t n = (size_t)a->layers[l].C * a->layers[l].h * a->layers[l].w;
        most = n > most ? n : most;
    }
    if (!(seed = calloc(most + 1, sizeof *seed)) || cnv_session_create(cm->model, &s) != CNV_OK)
        rc = cli_error("out of memory");
    else if (cnv_session_set_threads(s, 1) != CNV_OK || cnv_session_plan(s, 1, H, W) != CNV_OK)
        rc = cli_error("%s", cnv_session_errmsg(s));
    for (int l = 0; l < a->n_layers && !rc; l++) {
        const atlas_layer *L = &a->layers[l];
        int y0 = H, y1 = -1, x0 = W, x1 = -1;
        size_t hw = (size_t)L->h * L->w, center = (size_t)(L->h / 2) * L->w + L->w / 2;
        uint64_t state = 0x9e3779b97f4a7c15ull;
        for (int trial = 0; trial < RF_TRIALS && !rc; trial++) {
            float *in = cnv_session_input(s);
            for (size_t i = 0; i < (size_t)cm->channels * H * W; i++) {
                state = state * 6364136223846793005ull + 1442695040888963407ull;
                in[i] = (float)((state >> 40) / (double)(1 << 24) * 4.0 - 2.0);
            }
            memset(seed, 0, (size_t)L->C * hw * sizeof *seed);
            for (int c = 0; c < L->C; c++)
                seed[(size_t)c * hw + center] = 1.0f;
            if (cnv_session_forward_to(s, L->t) != CNV_OK ||
                cnv_session_backward(s, L->t, seed, (size_t)L->C * hw) != CNV_OK) {
                rc = cli_error("%s", cnv_session_errmsg(s));
                break;
            }
            /* nonzero: above rounding (a Winograd convolution's backward
             * leaves about 1e-6 of the largest value outside the field) */
            const float *g = cnv_session_input_grad(s);
            size_t n = (size_t)cm->channels * H * W;
            float most = 0.0f;
            for (size_t i = 0; i < n; i++)
                most = fabsf(g[i]) > most ? fabsf(g[i]) : most;
            for (int c = 0; c < cm->channels; c++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++)
                        if (fabsf(g[((size_t)c * H + y) * W + x]) > 1e-4f * most) {
                            y0 = y < y0 ? y : y0;
                            y1 = y > y1 ? y : y1;
                            x0 = x < x0 ? x : x0;
                            x1 = x > x1 ? x : x1;
                        }
        }
        ms->rf_h[l] = y1 >= y0 ? y1 - y0 + 1 : H;
        ms->rf_w[l] = x1 >= x0 ? x1 - x0 + 1 : W;
    }
    cnv_session_free(s);
    free(seed);
    return rc;
}

/* ------------------------------------------------------------- merge */

typedef struct named {
    const char *file;
    int item;
} named;

static int by_file(const void *x, const void *y)
{
    return strcmp(((const named *)x)->file, ((const named *)y)->file);
}

/* Each item's time from the log the rendering runs appended to (the last
 * line of an item wins: a re-rendered item's); lines that name no item of
 * this atlas, or are malformed, are skipped. */
static int read_times(atlas *a, const char *present)
{
    char *path = atlas_site_path(a, ATLAS_TIMES);
    if (!path)
        return 1;
    FILE *f = fopen(path, "r");
    free(path);
    if (!f)
        return 0; /* no log: no times */
    named *index = malloc(((size_t)a->n_items + 1) * sizeof *index);
    if (!index) {
        fclose(f);
        return cli_error("out of memory");
    }
    for (int i = 0; i < a->n_items; i++) {
        index[i] = (named){a->items[i].file, i};
        a->seconds[i] = -1.0;
    }
    qsort(index, (size_t)a->n_items, sizeof *index, by_file);
    char line[128], file[64];
    double secs;
    while (fgets(line, sizeof line, f)) {
        int used = 0;
        if (sscanf(line, "%63s %lf%n", file, &secs, &used) != 2 || line[used] != '\n' || !(secs >= 0.0) ||
            secs > 1e9)
            continue;
        named key = {file, 0}, *hit = bsearch(&key, index, (size_t)a->n_items, sizeof *index, by_file);
        if (hit)
            a->seconds[hit->item] = secs;
    }
    fclose(f);
    free(index);
    for (int i = 0; i < a->n_items; i++)
        if (present[i] && a->seconds[i] >= 0) {
            a->total_seconds += a->seconds[i];
            a->timed_items++;
        }
    return 0;
}

static void merge_free(merge_state *ms)
{
    free(ms->present);
    free(ms->hits);
    free(ms->n_hits);
    free(ms->picks);
    free(ms->n_picks);
    free(ms->n_predicted);
    free(ms->rf_h);
    free(ms->rf_w);
    free(ms->class_page);
}

/* The temporary files a killed run left in items/: cnv_image_write_png's
 * ".cnv<pid>-<n>.tmp" and the records' ".rec<pid>-<name>.tmp", when
 * process <pid> is gone from this machine (a live shard's are its work in
 * progress; another machine's are left alone). */
static int remove_stale(const atlas *a)
{
    char *dir = atlas_site_path(a, "items");
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) {
        free(dir);
        return 0; /* no items yet */
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) && !rc) {
        long pid;
        size_t n = strlen(e->d_name);
        if (n < 8 || strcmp(e->d_name + n - 4, ".tmp") ||
            (sscanf(e->d_name, ".cnv%ld-", &pid) != 1 && sscanf(e->d_name, ".rec%ld-", &pid) != 1) || pid <= 0 ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char *path = atlas_site_path2(a, "items/", e->d_name);
        if (!path || (remove(path) != 0 && errno != ENOENT))
            rc = path ? cli_error("atlas: cannot remove %s: %s", path, strerror(errno)) : 1;
        free(path);
    }
    closedir(d);
    free(dir);
    return rc;
}

int atlas_merge(atlas *a, int *missing)
{
    merge_state ms = {.a = a};
    size_t K = (size_t)a->n_scores + 1, L = (size_t)a->n_layers + 1;
    ms.present = calloc((size_t)a->n_items + 1, 1);
    ms.hits = calloc((size_t)a->n_channels * a->top + 1, sizeof *ms.hits);
    ms.n_hits = calloc((size_t)a->n_channels + 1, sizeof *ms.n_hits);
    ms.picks = calloc(K * CLASS_IMAGES, sizeof *ms.picks);
    ms.n_picks = calloc(K, sizeof *ms.n_picks);
    ms.n_predicted = calloc(K, sizeof *ms.n_predicted);
    ms.rf_h = calloc(L, sizeof *ms.rf_h);
    ms.rf_w = calloc(L, sizeof *ms.rf_w);
    ms.class_page = calloc(K, 1);
    int rc = 0;
    if (!ms.present || !ms.hits || !ms.n_hits || !ms.picks || !ms.n_picks || !ms.n_predicted || !ms.rf_h ||
        !ms.rf_w || !ms.class_page)
        rc = cli_error("out of memory");
    *missing = 0;
    if (!rc)
        rc = remove_stale(a);
    for (int i = 0; i < a->n_items && !rc; i++) {
        int there = atlas_item_present(a, &a->items[i]);
        if (there < 0)
            rc = 1;
        ms.present[i] = (char)(there > 0);
        *missing += there == 0;
    }
    for (int k = 0; k < a->n_classes && !rc; k++)
        ms.class_page[a->classes[k]] = 1;
    if (!rc && a->timed) {
        if (!(a->seconds = malloc(((size_t)a->n_items + 1) * sizeof *a->seconds)))
            rc = cli_error("out of memory");
        else
            rc = read_times(a, ms.present);
    }
    page pg;
    if (!rc && !(rc = page_open(a, "style.css", NULL, &pg))) {
        fputs(style_css, pg.f);
        rc = page_close(a, &pg, 0);
    }
    if (!rc && a->n_images && a->top > 0)
        rc = receptive_fields(&ms);
    if (!rc && a->n_images)
        rc = scan_images(&ms);
    if (!rc)
        rc = write_index(&ms);
    for (int l = 0; l < a->n_layers && !rc; l++) {
        rc = write_layer(&ms, l);
        for (int c = 0; c < a->layers[l].shown && !rc; c++)
            rc = write_channel(&ms, l, c);
    }
    if (!rc && a->n_classes)
        rc = write_classes(&ms);
    for (int k = 0; k < a->n_classes && !rc; k++)
        rc = write_class(&ms, k);
    merge_free(&ms);
    return rc;
}

/* The model as the pages name it: the file's name without its directory,
 * which differs between the machines of a sharded run (the bytes' hash
 * identifies the file). */
const char *atlas_model_name(const atlas *a)
{
    const char *slash = strrchr(a->cm.path, '/');
    return slash && slash[1] ? slash + 1 : a->cm.path;
}
