/* cnnviz saliency: which pixels of a photo a class score depends on, by
 * the plain gradient, SmoothGrad, guided backpropagation or Grad-CAM. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz saliency [-m MODEL] IMAGE [--class K|NAME] -o MAP.png [options]\n"
    "A saliency map of IMAGE for one class: how strongly each pixel moves the\n"
    "class's raw score. The map is saved normalized to 0..255 (gray); the\n"
    "overlay draws it in heat colors over the picture the network sees.\n"
    "\n"
    "options:\n"
    "  --class K|NAME     class index or label (default: the top-1 class)\n"
    "  -o MAP.png         the normalized map, grayscale\n"
    "  --overlay OUT.png  heat colormap over the (preprocessed) photo\n"
    "  --alpha F          overlay opacity in [0,1] (default 0.5)\n"
    "  --sheet OUT.png    a labeled sheet: the input, the map and the overlay\n"
    "                     (small inputs are enlarged so the labels fit)\n"
    "  --method M         grad (|dS/dI| max over channels; Simonyan et al. 2014),\n"
    "                     smoothgrad (Smilkov et al. 2017), guided (guided\n"
    "                     backpropagation; Springenberg et al. 2015) or gradcam\n"
    "                     (Selvaraju et al. 2017) (default grad); 'all' runs the\n"
    "                     four into one --sheet (then only --sheet is written)\n"
    "  --layer NAME       gradcam: the conv layer (default: the last Conv/Relu\n"
    "                     output larger than 1x1); a tensor or node name, or a\n"
    "                     unique part of one\n"
    "  --samples N        smoothgrad: noisy copies (default 25)\n"
    "  --noise F          smoothgrad: noise sigma / (max - min) of the input\n"
    "                     (default 0.15)\n"
    "  --batch N          smoothgrad: copies per pass (default 4)\n"
    "  --seed S           smoothgrad: noise seed (default 0)\n"
    "  --clip P           the PNGs cap the map at its P-th percentile before\n"
    "                     scaling, so a few extreme pixels do not darken the\n"
    "                     rest (Smilkov et al. cap at 99) (default 99; 100: off)\n"
    "  --raw-out S.f32    the unnormalized H x W map, raw little-endian float32\n"
    "                     (never clipped)\n"
    "  --json             one JSON document on stdout\n"
    "  --quiet            no progress\n";

static int on_progress(void *user, int iter, int total, float objective, float prob)
{
    (void)user;
    cli_progress(iter, total, "saliency: %d/%d samples  score %.3f  p %.3f", iter, total, (double)objective,
                 (double)prob);
    if (iter == total)
        cli_progress_end();
    return 0;
}

/* Raw little-endian float32, whatever the host's byte order. */
static int write_f32_le(const char *path, const float *x, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return cli_error("cannot write '%s': %s", path, strerror(errno));
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                              (unsigned char)(u >> 24)};
        bad = fwrite(b, 1, 4, f) != 4;
    }
    if (fclose(f))
        bad = 1;
    return bad ? cli_error("cannot write '%s': %s", path, strerror(errno)) : 0;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* A copy of the map with values above its pct-th percentile (of the
 * finite values; nearest rank) lowered to it. NaN stays NaN. */
static float *clip_map(const float *map, size_t n, float pct)
{
    float *out = malloc(n * sizeof *out), *sorted = malloc(n * sizeof *sorted);
    if (!out || !sorted) {
        free(out);
        free(sorted);
        return NULL;
    }
    memcpy(out, map, n * sizeof *out);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(map[i]))
            sorted[k++] = map[i];
    if (k > 0 && pct < 100.0f) {
        qsort(sorted, k, sizeof *sorted, cmp_float);
        size_t r = (size_t)((double)pct / 100.0 * (double)(k - 1) + 0.5);
        float cap = sorted[r < k ? r : k - 1];
        for (size_t i = 0; i < n; i++)
            if (out[i] > cap)
                out[i] = cap;
    }
    free(sorted);
    return out;
}

static void json_float(const char *key, double v, int comma)
{
    printf("\"%s\": %s%s", key, cli_jnum(v, 9).s, comma ? ", " : "");
}

int cmd_saliency(int argc, char **argv)
{
    cli_model_opts mo = {0};
    cnv_saliency_params p = cnv_saliency_params_default();
    const char *cls_text = NULL, *out = NULL, *overlay = NULL, *raw = NULL, *sheet = NULL, *method = NULL;
    float alpha = 0.5f, clip = 99.0f;
    int json = 0, quiet = 0;
    const cli_opt opts[] = {
        CLI_OPT_SET("--json", &json),
        CLI_OPT_SET("--quiet", &quiet),
        CLI_OPT_STRING("--class", NULL, &cls_text),
        CLI_OPT_OUTPUT("--output", "-o", &out),
        CLI_OPT_OUTPUT("--overlay", NULL, &overlay),
        CLI_OPT_OUTPUT("--sheet", NULL, &sheet),
        CLI_OPT_STRING("--raw-out", NULL, &raw),
        CLI_OPT_STRING("--layer", NULL, &p.layer),
        CLI_OPT_STRING("--method", NULL, &method),
        CLI_OPT_INT("--samples", &p.samples, 1, INT_MAX),
        CLI_OPT_FLOAT("--noise", &p.noise, 0, HUGE_VAL, 0),
        CLI_OPT_INT("--batch", &p.batch, 1, INT_MAX),
        CLI_OPT_FLOAT("--clip", &clip, 0, 100, 0),
        CLI_OPT_FLOAT("--alpha", &alpha, 0, 1, 0),
        CLI_OPT_SEED("--seed", &p.seed),
        {0},
    };
    const cli_spec spec = {"saliency", usage, &mo, opts, "image", 1};
    int n_images, rc = cli_parse(argc, argv, &spec, &n_images);
    if (rc != CLI_RUN)
        return rc;
    const char *image = n_images ? argv[1] : NULL;
    int all = method && !strcmp(method, "all");
    if (method && !all) {
        int m = cnv_saliency_method_parse(method);
        if (m < 0)
            return cli_error("saliency: unknown method '%s' (grad, smoothgrad, guided, gradcam)", method), 2;
        p.method = (cnv_saliency_method)m;
    }
    if (!image)
        return cli_error("saliency: no image given (see --help)"), 2;
    if (!out && !overlay && !raw && !json && !sheet)
        return cli_error("saliency: give -o MAP.png, --overlay OUT.png, --sheet OUT.png, --raw-out S.f32 or "
                         "--json"),
               2;
    if (all && (out || overlay || raw || json || !sheet))
        return cli_error("saliency: --method all writes only --sheet OUT.png"), 2;
    if (p.layer && p.method != CNV_SALIENCY_GRADCAM && !all)
        return cli_error("saliency: --layer is for --method gradcam"), 2;

    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    int h = cm.height, w = cm.width, c = cm.channels;
    rc = 0;
    if (cls_text && cli_class_lookup(&cm, cls_text, &p.class_index)) {
        cli_model_close(&cm);
        return 1;
    }
    size_t plane = (size_t)h * w;
    float *x = malloc((size_t)c * plane * sizeof *x), *map = malloc(plane * sizeof *map);
    cnv_session *s = NULL;
    cnv_image photo = {0}, img = {0};
    char err[512];
    cnv_saliency_info info;
    if (!x || !map)
        rc = cli_error("out of memory");
    if (!rc)
        rc = cli_load_input(&cm, image, h, w, x);
    if (!rc && cnv_session_create(cm.model, &s) != CNV_OK)
        rc = cli_error("out of memory");
    if (!rc && (overlay || sheet) && cnv_tensor_to_image(x, &cm.pp, h, w, &photo, err, sizeof err))
        rc = cli_error("%s", err);
    /* the sheet: the input, then per method its map and overlay */
    int n_methods = all ? 4 : 1, n_tiles = 0;
    cnv_image tiles[10];
    char *labels[10] = {0};
    memset(tiles, 0, sizeof tiles);
    for (int k = 0; k < n_methods && !rc; k++) {
        if (all)
            p.method = (cnv_saliency_method)k;
        p.progress = !quiet && p.method == CNV_SALIENCY_SMOOTHGRAD ? on_progress : NULL;
        if (cnv_saliency(s, x, (size_t)c * h * w, h, w, &p, map, (size_t)h * w, &info) != CNV_OK) {
            rc = cli_error("%s", cnv_session_errmsg(s));
            break;
        }
        if (!sheet)
            break;
        if (k == 0) {
            labels[0] = strdup(cli_label(&cm, info.class_index));
            if (!labels[0] || cnv_image_convert(&photo, 3, &tiles[0], err, sizeof err) != CNV_OK) {
                rc = cli_error("%s", labels[0] ? err : "out of memory");
                break;
            }
            n_tiles = 1;
        }
        float *sh = clip_map(map, plane, clip);
        cnv_image gray = {0};
        int ov = all ? 1 + k : 2, gr = all ? 6 + k : 1;
        if (!sh || cnv_map_overlay(&photo, sh, h, w, alpha, &tiles[ov], err, sizeof err) != CNV_OK ||
            cnv_map_to_gray(sh, h, w, &gray, err, sizeof err) != CNV_OK ||
            cnv_image_convert(&gray, 3, &tiles[gr], err, sizeof err) != CNV_OK)
            rc = cli_error("%s", sh ? err : "out of memory");
        free(sh);
        cnv_image_free(&gray);
        labels[ov] = strdup(cnv_saliency_method_name(p.method));
        if (!all)
            labels[gr] = strdup("map");
        n_tiles = all ? 10 : 3;
    }
    cnv_image sheet_img = {0};
    if (!rc && sheet) {
        /* --method all: row two holds the maps under their overlays, a
         * white cell under the input */
        if (all && cnv_image_create(tiles[0].width, tiles[0].height, 3, &tiles[5], err, sizeof err) == CNV_OK)
            memset(tiles[5].data, 255, (size_t)tiles[5].width * tiles[5].height * 3);
        if (cnv_image_grid(tiles, n_tiles, all ? 5 : 3, (const char *const *)labels, 4, &sheet_img, err,
                           sizeof err) != CNV_OK ||
            cnv_image_write_png(&sheet_img, sheet, err, sizeof err) != CNV_OK)
            rc = cli_error("%s", err);
    }
    for (int k = 0; k < 10; k++) {
        cnv_image_free(&tiles[k]);
        free(labels[k]);
    }
    cnv_image_free(&sheet_img);
    float *shown = NULL;
    if (!rc && (out || overlay) && !(shown = clip_map(map, plane, clip)))
        rc = cli_error("out of memory");
    if (!rc && out) {
        if (cnv_map_to_gray(shown, h, w, &img, err, sizeof err) != CNV_OK ||
            cnv_image_write_png(&img, out, err, sizeof err) != CNV_OK)
            rc = cli_error("%s", err);
        cnv_image_free(&img);
    }
    if (!rc && overlay) {
        if (cnv_map_overlay(&photo, shown, h, w, alpha, &img, err, sizeof err) != CNV_OK ||
            cnv_image_write_png(&img, overlay, err, sizeof err) != CNV_OK)
            rc = cli_error("%s", err);
        cnv_image_free(&img);
    }
    if (!rc && raw)
        rc = write_f32_le(raw, map, plane);
    if (!rc && json) {
        double lo = INFINITY, hi = -INFINITY, sum = 0.0;
        size_t nan = 0;
        for (size_t i = 0; i < plane; i++) {
            if (map[i] != map[i]) {
                nan++;
                continue;
            }
            lo = map[i] < lo ? map[i] : lo;
            hi = map[i] > hi ? map[i] : hi;
            sum += map[i];
        }
        printf("{\"image\": ");
        cli_json_string(stdout, image);
        printf(", \"method\": \"%s\", \"class\": %d, \"label\": ", cnv_saliency_method_name(p.method),
               info.class_index);
        cli_json_string(stdout, cli_label(&cm, info.class_index));
        printf(", ");
        json_float("score", info.score, 1);
        json_float("prob", info.prob, 1);
        printf("\"height\": %d, \"width\": %d, ", h, w);
        json_float("map_min", plane > nan ? lo : NAN, 1);
        json_float("map_max", plane > nan ? hi : NAN, 1);
        json_float("map_mean", plane > nan ? sum / (double)(plane - nan) : NAN, 1);
        printf("\"map_nan\": %zu", nan);
        if (p.method == CNV_SALIENCY_GRADCAM) {
            printf(", \"layer\": ");
            cli_json_string(stdout, info.layer);
            printf(", \"layer_height\": %d, \"layer_width\": %d", info.layer_height, info.layer_width);
        }
        if (p.method == CNV_SALIENCY_SMOOTHGRAD)
            printf(", \"samples\": %d, \"noise\": %g, \"seed\": %llu", p.samples, (double)p.noise,
                   (unsigned long long)p.seed);
        const char *keys[4] = {"map", "overlay", "raw", "sheet"}, *vals[4] = {out, overlay, raw, sheet};
        for (int k = 0; k < 4; k++)
            if (vals[k]) {
                printf(", \"%s\": ", keys[k]);
                cli_json_string(stdout, vals[k]);
            }
        printf("}\n");
    } else if (!rc && !quiet) {
        fprintf(stderr, "saliency (%s): class %d (%s), score %.4g, p %.4f%s%s\n",
                all ? "every method" : cnv_saliency_method_name(p.method), info.class_index,
                cli_label(&cm, info.class_index), (double)info.score, (double)info.prob,
                info.layer ? ", layer " : "", info.layer ? info.layer : "");
        const char *files[4] = {out, overlay, raw, sheet};
        fprintf(stderr, "saliency: wrote");
        for (int k = 0, first = 1; k < 4; k++)
            if (files[k])
                fprintf(stderr, "%s %s", first ? "" : ",", files[k]), first = 0;
        fputc('\n', stderr);
    }
    cnv_image_free(&photo);
    cnv_session_free(s);
    free(x);
    free(map);
    free(shown);
    cli_model_close(&cm);
    return rc;
}
