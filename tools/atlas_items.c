/* cnnviz atlas: the items (channel pictures, negatives, diversity batches,
 * class models, images), each written atomically to SITE/items/ under a
 * name hashed from everything that decides its content, and the loop that
 * renders a shard of them. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atlas.h"

/* ------------------------------------------------------------- hashing */

#define FNV_PRIME 0x100000001b3ull

/* FNV-1a 64 over n bytes, continuing from h. */
uint64_t atlas_fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* A string with its NUL, so that ("ab", "c") and ("a", "bc") differ. */
uint64_t atlas_fnv_str(uint64_t h, const char *s)
{
    return atlas_fnv(h, s, strlen(s) + 1);
}

int atlas_hash_file(const char *path, uint64_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cli_error("atlas: cannot read %s: %s", path, strerror(errno));
    unsigned char buf[1 << 16];
    uint64_t h = ATLAS_FNV_OFFSET;
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        h = atlas_fnv(h, buf, k);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return cli_error("atlas: cannot read %s", path);
    *out = h;
    return 0;
}

/* ------------------------------------------------------------- files */

char *atlas_site_path2(const atlas *a, const char *name, const char *suffix)
{
    size_t n = strlen(a->site) + strlen(name) + strlen(suffix) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s%s", a->site, name, suffix);
    else
        cli_error("out of memory");
    return p;
}

char *atlas_site_path(const atlas *a, const char *name)
{
    return atlas_site_path2(a, name, "");
}

char *atlas_image_path(const atlas *a, int index)
{
    size_t n = strlen(a->images_dir) + strlen(a->image_names[index]) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a->images_dir, a->image_names[index]);
    else
        cli_error("out of memory");
    return p;
}

int atlas_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int atlas_make_dir(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return cli_error("atlas: cannot make %s: %s", path, strerror(errno));
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return cli_error("atlas: %s is not a directory", path);
    return 0;
}

/* ------------------------------------------------------------- the items */

/* The items in their fixed order: each layer's channels, then every
 * layer's negatives, then the diversity batches, the classes, the images.
 * The order decides only which shard renders an item. */
int atlas_list_items(atlas *a)
{
    int n = a->n_classes + a->n_images;
    for (int i = 0; i < a->n_layers; i++) {
        atlas_layer *l = &a->layers[i];
        l->n_diverse = a->diverse < l->shown ? a->diverse : l->shown;
        n += l->shown * (1 + (a->negatives != 0)) + l->n_diverse;
    }
    a->items = calloc((size_t)n + 1, sizeof *a->items);
    if (!a->items)
        return cli_error("out of memory");
#define ADD(k, l, i) (a->items[a->n_items++] = (atlas_item){.kind = (k), .layer = (l), .index = (i)})
    a->n_channels = 0;
    for (int i = 0; i < a->n_layers; i++) {
        atlas_layer *l = &a->layers[i];
        l->first_channel = a->n_items;
        l->channel0 = a->n_channels;
        a->n_channels += l->shown;
        for (int c = 0; c < l->shown; c++)
            ADD(ITEM_CHANNEL, i, c);
    }
    for (int i = 0; i < a->n_layers; i++) {
        atlas_layer *l = &a->layers[i];
        l->first_negative = a->negatives ? a->n_items : -1;
        for (int c = 0; a->negatives && c < l->shown; c++)
            ADD(ITEM_NEGATIVE, i, c);
    }
    for (int i = 0; i < a->n_layers; i++) {
        atlas_layer *l = &a->layers[i];
        l->first_diverse = l->n_diverse ? a->n_items : -1;
        for (int c = 0; c < l->n_diverse; c++)
            ADD(ITEM_DIVERSITY, i, c);
    }
    a->first_class = a->n_items;
    for (int k = 0; k < a->n_classes; k++)
        ADD(ITEM_CLASS, -1, a->classes[k]);
    a->first_image = a->n_items;
    for (int k = 0; k < a->n_images; k++)
        ADD(ITEM_IMAGE, -1, k);
#undef ADD
    for (int i = 0; i < a->first_image; i++)
        if (atlas_item_name(a, &a->items[i]))
            return 1;
    return 0;
}

/* An item's name: the hash of the model file's bytes, the kind, the layer,
 * the channel or class, the seed and the recipe; an image's of the image
 * file's bytes and the image recipe (methods, layers and channels) instead
 * of the picture recipe. */
int atlas_item_name(atlas *a, atlas_item *it)
{
    if (it->file[0])
        return 0;
    const cnv_model *m = a->cm.model;
    char kind[2] = {it->kind, '\0'}, buf[64];
    uint64_t h = atlas_fnv(ATLAS_FNV_OFFSET, &a->model_hash, sizeof a->model_hash);
    h = atlas_fnv_str(h, kind);
    if (it->kind == ITEM_IMAGE) {
        char *path = atlas_image_path(a, it->index);
        uint64_t bytes;
        int rc = path ? atlas_hash_file(path, &bytes) : 1;
        free(path);
        if (rc)
            return rc;
        h = atlas_fnv_str(atlas_fnv(h, &bytes, sizeof bytes), a->image_recipe);
    } else {
        h = atlas_fnv_str(h, it->layer >= 0 ? cnv_model_tensor_name(m, a->layers[it->layer].t) : "");
        snprintf(buf, sizeof buf, "%d %llu", it->index, (unsigned long long)a->seed);
        h = atlas_fnv_str(atlas_fnv_str(h, buf), a->recipe);
    }
    snprintf(it->file, sizeof it->file, "items/%c%016llx%s", it->kind, (unsigned long long)h,
             it->kind == ITEM_IMAGE ? "" : ".png");
    return 0;
}

/* Whether an item is complete: its file exists (an image's record, which
 * it writes last). */
int atlas_item_present(atlas *a, atlas_item *it)
{
    if (atlas_item_name(a, it))
        return -1;
    char *p = atlas_site_path2(a, it->file, it->kind == ITEM_IMAGE ? ".txt" : "");
    if (!p)
        return -1;
    int there = atlas_file_exists(p);
    free(p);
    return there;
}

/* ------------------------------------------------------------- rendering */

typedef struct renderer {
    atlas *a;
    cnv_session *s;
    float *img;    /* ATLAS_DIVERSE pictures */
    float *map;    /* an image's saliency map, 3 planes: the map, as shown,
                      scratch */
    size_t count;  /* one picture's floats */
} renderer;

static cnv_lucid_params lucid(int iters)
{
    cnv_lucid_params p = cnv_lucid_params_default();
    p.iters = iters;
    return p;
}

static int session_error(const renderer *r)
{
    return cli_error("%s", cnv_session_errmsg(r->s));
}

/* Pictures n x C x H x W side by side, 2 white pixels apart, to path. */
static int write_pictures(const renderer *r, int n, const char *path)
{
    const cli_model *cm = &r->a->cm;
    char err[512];
    cnv_image one = {0}, strip = {0};
    int rc = 0, h = cm->height, w = cm->width, gap = n > 1 ? 2 : 0;
    for (int i = 0; i < n && !rc; i++) {
        if (cnv_tensor_to_image(r->img + (size_t)i * r->count, &cm->pp, h, w, &one, err, sizeof err) != CNV_OK) {
            rc = cli_error("%s", err);
            break;
        }
        if (n == 1) {
            strip = one;
            one = (cnv_image){0};
            break;
        }
        if (!strip.data) {
            if (cnv_image_create(n * w + (n - 1) * gap, h, one.channels, &strip, err, sizeof err) != CNV_OK)
                rc = cli_error("%s", err);
            else
                memset(strip.data, 255, (size_t)strip.width * strip.height * strip.channels);
        }
        if (!rc) {
            for (int y = 0; y < h; y++)
                memcpy(strip.data + ((size_t)y * strip.width + (size_t)i * (w + gap)) * one.channels,
                       one.data + (size_t)y * w * one.channels, (size_t)w * one.channels);
        }
        cnv_image_free(&one);
    }
    /* cnv_image_write_png writes a temporary file beside path and renames
     * it: a file at path is always whole, which --resume relies on. */
    if (!rc && cnv_image_write_png(&strip, path, err, sizeof err) != CNV_OK)
        rc = cli_error("%s", err);
    cnv_image_free(&one);
    cnv_image_free(&strip);
    return rc;
}

/* A channel's picture (cnnviz neuron's), or a class model (classmodel's). */
static int render_positive(renderer *r, const atlas_item *it, const char *path)
{
    const atlas *a = r->a;
    const cli_model *cm = &a->cm;
    cnv_status st;
    if (it->kind == ITEM_CHANNEL) {
        cnv_neuron_params p = cnv_neuron_params_default();
        p.layer = cnv_model_tensor_name(cm->model, a->layers[it->layer].t);
        p.height = cm->height;
        p.width = cm->width;
        p.preprocess = &cm->pp;
        p.seed = a->seed;
        p.recipe = CNV_RECIPE_LUCID;
        p.lucid = lucid(a->iters);
        st = cnv_neuron(r->s, 1, &it->index, &p, r->img, r->count, NULL, NULL);
    } else {
        cnv_classmodel_params p = cnv_classmodel_params_default();
        p.height = cm->height;
        p.width = cm->width;
        p.preprocess = &cm->pp;
        p.seed = a->seed;
        p.recipe = CNV_RECIPE_LUCID;
        p.lucid = lucid(a->iters);
        st = cnv_classmodel(r->s, 1, &it->index, &p, r->img, r->count, NULL, NULL);
    }
    return st != CNV_OK ? session_error(r) : write_pictures(r, 1, path);
}

/* cnv_render of n pictures of the terms; values[0] the first's objective. */
static int render_terms(renderer *r, int n, const cnv_objective *terms, int n_terms, int iters, float *values)
{
    const cli_model *cm = &r->a->cm;
    cnv_render_params p = cnv_render_params_default();
    p.lucid = lucid(iters);
    p.height = cm->height;
    p.width = cm->width;
    p.preprocess = &cm->pp;
    p.seed = r->a->seed;
    if (cnv_render(r->s, n, terms, n_terms, &p, r->img, (size_t)n * r->count, values) != CNV_OK)
        return session_error(r);
    return 0;
}

/* The picture that lowers the channel's pre-activation most (a Relu's
 * output is flat zero below; Lucid's negatives are pre-ReLU too). */
static int render_negative(renderer *r, const atlas_item *it, const char *path)
{
    cnv_objective o = cnv_objective_default(CNV_OBJ_CHANNEL);
    o.layer = cnv_model_tensor_name(r->a->cm.model, r->a->layers[it->layer].t);
    o.index = it->index;
    o.pre_activation = 1;
    o.weight = o.weight_last = -1.0f;
    return render_terms(r, 1, &o, 1, r->a->iters, NULL) || write_pictures(r, 1, path);
}

/* ATLAS_DIVERSE pictures of a channel kept apart by Lucid's diversity
 * term. Its weight must match the channel's scale (docs/FEATURE_
 * VISUALIZATION.md: 200 for activations of a few hundred), so it is the
 * objective a short run without it reaches. */
static int render_diversity(renderer *r, const atlas_item *it, const char *path)
{
    cnv_objective o[2] = {cnv_objective_default(CNV_OBJ_CHANNEL), cnv_objective_default(CNV_OBJ_DIVERSITY)};
    o[0].layer = o[1].layer = cnv_model_tensor_name(r->a->cm.model, r->a->layers[it->layer].t);
    o[0].index = it->index;
    float v = 0.0f;
    int short_iters = r->a->iters / 4 > 0 ? r->a->iters / 4 : 1;
    if (render_terms(r, 1, o, 1, short_iters, &v))
        return 1;
    float wgt = fabsf(v);
    o[1].weight = o[1].weight_last = isfinite(wgt) && wgt > 1e-3f ? wgt : 1.0f;
    return render_terms(r, ATLAS_DIVERSE, o, 2, r->a->iters, NULL) || write_pictures(r, ATLAS_DIVERSE, path);
}

/* ---- images */

/* The largest value of each shown channel of layer l on the image just
 * run forward, and where it is, to f. */
static int record_layer(renderer *r, int l, FILE *f)
{
    const atlas_layer *L = &r->a->layers[l];
    float *x;
    cnv_shape sh;
    if (cnv_session_tensor(r->s, L->t, &x, &sh) != CNV_OK)
        return session_error(r);
    size_t hw = (size_t)L->h * L->w;
    if (cnv_shape_count(&sh) != (int64_t)(hw * L->C))
        return cli_error("atlas: layer %s has another shape than planned", cnv_model_tensor_name(r->a->cm.model, L->t));
    fprintf(f, "layer %d %d\n", L->t, L->shown);
    for (int c = 0; c < L->shown; c++) {
        const float *p = x + (size_t)c * hw;
        size_t best = 0;
        float v = -INFINITY;
        for (size_t i = 0; i < hw; i++)
            if (p[i] > v) { /* NaN never wins */
                v = p[i];
                best = i;
            }
        fprintf(f, "%.9g %d %d\n", (double)v, (int)(best / (size_t)L->w), (int)(best % (size_t)L->w));
    }
    return 0;
}

/* The image's saliency map for class k by method m, over the image, to
 * path, drawn as cnnviz saliency draws it at its defaults. */
static int write_saliency(renderer *r, const cnv_image *photo, int m, int k, const char *path)
{
    const atlas *a = r->a;
    const cli_model *cm = &a->cm;
    int h = cm->height, w = cm->width;
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = a->methods[m];
    p.class_index = k;
    p.seed = a->seed;
    cnv_saliency_info info;
    if (cnv_saliency(r->s, r->img, r->count, h, w, &p, r->map, (size_t)h * w, &info) != CNV_OK)
        return session_error(r);
    size_t n = (size_t)h * w;
    float *shown = r->map + n;
    cli_shown_map(r->map, n, cli_show_mode(p.method, info.is_signed), CLI_SALIENCY_CLIP, shown, shown + n);
    char err[512];
    cnv_image over = {0};
    int rc = 0;
    if (cnv_map_overlay(photo, shown, h, w, 0.5f, &over, err, sizeof err) != CNV_OK ||
        cnv_image_write_png(&over, path, err, sizeof err) != CNV_OK)
        rc = cli_error("%s", err);
    cnv_image_free(&over);
    return rc;
}

/* One image: the model's input as a picture (.in.png), the saliency maps
 * of its top class (.s0.png, .s1.png), and last its record (.txt): the
 * top classes and each shown channel's largest value and where. An image
 * that cannot be read or scored gets a record that says why. */
static int render_image(renderer *r, atlas_item *it, const char *base)
{
    atlas *a = r->a;
    const cli_model *cm = &a->cm;
    int h = cm->height, w = cm->width, rc = 0;
    /* the record is written beside its name and renamed: a hidden name
     * with this process's id, which a merge removes once the process is
     * gone (a run killed while writing it) */
    char tmp[64];
    snprintf(tmp, sizeof tmp, "items/.rec%ld-%s.tmp", (long)getpid(), base + strlen("items/"));
    char *src = atlas_image_path(a, it->index), *rec = atlas_site_path(a, tmp);
    char *inpng = atlas_site_path2(a, base, ".in.png");
    float *prob = malloc((size_t)a->n_scores * sizeof *prob);
    int *order = malloc((size_t)a->n_scores * sizeof *order);
    FILE *f = NULL;
    if (!src || !rec || !inpng || !prob || !order)
        rc = cli_error("out of memory");
    else if (!(f = fopen(rec, "w")))
        rc = cli_error("atlas: cannot write %s: %s", rec, strerror(errno));
    if (rc)
        goto done;
    fprintf(f, "cnnviz-atlas-image 1\nname ");
    for (const char *c = a->image_names[it->index]; *c; c++)
        fputc((unsigned char)*c < 32 ? '?' : *c, f);
    fputc('\n', f);
    char err[512];
    cnv_image photo = {0};
    float *scores;
    cnv_shape ysh;
    if (cli_load_input(cm, src, h, w, r->img)) {
        fprintf(f, "error cannot read the image (or not as a %dx%d picture)\n", w, h);
        goto close;
    }
    if (cnv_session_plan(r->s, 1, h, w) != CNV_OK) {
        rc = session_error(r);
        goto close;
    }
    memcpy(cnv_session_input(r->s), r->img, r->count * sizeof *r->img);
    if (cnv_session_forward(r->s) != CNV_OK || cnv_session_tensor(r->s, cm->output, &scores, &ysh) != CNV_OK) {
        rc = session_error(r);
        goto close;
    }
    if (cnv_shape_count(&ysh) != a->n_scores) {
        rc = cli_error("atlas: the model gives %lld scores, not %d", (long long)cnv_shape_count(&ysh), a->n_scores);
        goto close;
    }
    for (int k = 0; k < a->n_scores; k++)
        if (!isfinite(scores[k])) {
            fprintf(f, "error the model's score for class %d is %g: not finite\n", k, (double)scores[k]);
            goto close;
        }
    cnv_softmax(scores, a->n_scores, prob);
    int ntop = a->n_scores < ATLAS_TOP ? a->n_scores : ATLAS_TOP;
    cli_top_classes(prob, a->n_scores, ntop, order);
    fprintf(f, "top %d\n", ntop);
    for (int i = 0; i < ntop; i++)
        fprintf(f, "%d %.9g %.9g\n", order[i], (double)prob[order[i]], (double)scores[order[i]]);
    for (int l = 0; l < a->n_layers && !rc; l++)
        rc = record_layer(r, l, f);
    if (!rc && cnv_tensor_to_image(r->img, &cm->pp, h, w, &photo, err, sizeof err) != CNV_OK)
        rc = cli_error("%s", err);
    if (!rc && cnv_image_write_png(&photo, inpng, err, sizeof err) != CNV_OK)
        rc = cli_error("%s", err);
    for (int m = 0; m < ATLAS_METHODS && !rc; m++) {
        char suffix[16];
        snprintf(suffix, sizeof suffix, ".s%d.png", m);
        char *out = atlas_site_path2(a, base, suffix);
        rc = out ? write_saliency(r, &photo, m, order[0], out) : 1;
        free(out);
    }
    cnv_image_free(&photo);
close:
    if (!rc)
        fputs("end\n", f);
    if ((ferror(f) | (fclose(f) != 0)) && !rc)
        rc = cli_error("atlas: cannot write %s", rec);
    if (!rc) {
        char *final = atlas_site_path2(a, base, ".txt");
        if (!final || rename(rec, final) != 0)
            rc = final ? cli_error("atlas: cannot write %s: %s", final, strerror(errno)) : 1;
        free(final);
    }
    if (rc)
        remove(rec);
done:
    free(src);
    free(rec);
    free(inpng);
    free(prob);
    free(order);
    return rc;
}

static int render_item(renderer *r, atlas_item *it)
{
    char *path = atlas_site_path(r->a, it->file);
    if (!path)
        return 1;
    int rc;
    switch (it->kind) {
    case ITEM_NEGATIVE: rc = render_negative(r, it, path); break;
    case ITEM_DIVERSITY: rc = render_diversity(r, it, path); break;
    case ITEM_IMAGE: rc = render_image(r, it, it->file); break;
    default: rc = render_positive(r, it, path);
    }
    free(path);
    return rc;
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

static const char *kind_name(char kind)
{
    switch (kind) {
    case ITEM_CHANNEL: return "channel";
    case ITEM_NEGATIVE: return "negative";
    case ITEM_DIVERSITY: return "diversity";
    case ITEM_CLASS: return "class";
    default: return "image";
    }
}

int atlas_render(atlas *a, int shard, int shards, int resume, int quiet, int one_thread, atlas_stats *rs)
{
    char *dir = atlas_site_path(a, "items");
    if (!dir)
        return 1;
    int rc = atlas_make_dir(dir);
    free(dir);
    if (rc)
        return rc;
    int mine = 0;
    for (int i = shard; i < a->n_items; i += shards)
        mine++;
    rs->items = mine;
    renderer r = {.a = a, .count = (size_t)a->cm.channels * a->cm.height * a->cm.width};
    r.img = malloc(ATLAS_DIVERSE * r.count * sizeof *r.img);
    r.map = malloc(3 * (size_t)a->cm.height * a->cm.width * sizeof *r.map);
    if (!r.img || !r.map || cnv_session_create(a->cm.model, &r.s) != CNV_OK)
        rc = cli_error("out of memory");
    /* One thread unless --threads says otherwise: a picture's bytes then
     * do not depend on the machine's cores (a GEMM split between threads
     * rounds differently), and a 28x28 model runs twice as fast on one
     * thread as on two; parallel shards use the cores instead. */
    else if (one_thread && cnv_session_set_threads(r.s, 1) != CNV_OK)
        rc = session_error(&r);
    /* each rendered item's time, a line appended at once: shards running
     * side by side append to the same file */
    FILE *times = NULL;
    if (!rc && a->timed) {
        char *path = atlas_site_path(a, ATLAS_TIMES);
        if (!path || !(times = fopen(path, "a")))
            rc = path ? cli_error("atlas: cannot write %s: %s", path, strerror(errno)) : 1;
        free(path);
    }
    double t0 = cli_now();
    int done = 0;
    for (int i = shard; i < a->n_items && !rc; i += shards) {
        atlas_item *it = &a->items[i];
        int there = resume ? atlas_item_present(a, it) : atlas_item_name(a, it) ? -1 : 0;
        double t = cli_now();
        if (there < 0)
            rc = 1;
        else if (there)
            rs->skipped++;
        else if (!(rc = render_item(&r, it))) {
            rs->rendered++;
            if (times && (fprintf(times, "%s %.3f\n", it->file, cli_now() - t) < 0 || fflush(times) != 0))
                rc = cli_error("atlas: cannot write %s/" ATLAS_TIMES, a->site);
        }
        done++;
        if (!quiet && !rc) {
            double el = cli_now() - t0;
            char eta[32];
            eta_text(rs->rendered ? el / rs->rendered * (mine - done) : -1, eta, sizeof eta);
            const char *where = it->layer >= 0 ? cnv_model_tensor_name(a->cm.model, a->layers[it->layer].t) : "";
            cli_progress(done, mine, "atlas: item %d/%d (%s %s %d)  rendered %d, skipped %d  ETA %s", done, mine,
                         kind_name(it->kind), where, it->index, rs->rendered, rs->skipped, eta);
        }
    }
    if (!quiet)
        cli_progress_end();
    rs->seconds = cli_now() - t0;
    if (times)
        fclose(times);
    cnv_session_free(r.s);
    free(r.img);
    free(r.map);
    return rc;
}
