/* cnnviz fool: a fooling image (Szegedy et al. 2014): a real photo changed
 * imperceptibly until the network calls it the target class, checked by
 * classifying the saved file. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz fool [-m MODEL] IMAGE --target K|NAME -o FOOLED.png [options]\n"
    "       cnnviz fool [-m MODEL] --index N [--data DIR] --target K|NAME -o FOOLED.png\n"
    "Changes IMAGE by small normalized gradient steps on the target's raw\n"
    "score until the network's top-1 class is the target, rounds it to 8 bits\n"
    "and checks again (going on if rounding undid it), saves it, and\n"
    "classifies the saved file. Reports the steps, the classes before and\n"
    "after, and the change in gray levels (0..255).\n"
    "\n"
    "options:\n"
    "  --target K|NAME    the class to reach (index or label)\n"
    "  --index N          instead of IMAGE, test image N of an IDX dataset\n"
    "  --data DIR         the dataset for --index (default\n"
    "                     /usr/share/datasets/fashion-mnist; t10k split)\n"
    "  -o FOOLED.png      the fooling image\n"
    "  --max-iters N      give up after N steps (default 100)\n"
    "  --lr F             L2 length of a step, normalized units (default 1)\n"
    "  --min-prob P       go on until the target has probability >= P (default 0:\n"
    "                     stop as soon as it is the top-1 class)\n"
    "  --delta D.png      the last step, magnified (gray 128 = no change; the\n"
    "                     99th percentile of magnitudes reaches 0 or 255)\n"
    "  --summed S.png     the sum of all steps, magnified likewise\n"
    "  --original O.png   the unchanged image as the network sees it (resized,\n"
    "                     cropped), to compare\n"
    "  --full F.png       the photo at its own size with the change carried onto\n"
    "                     the part the network sees (resized to it); F.png is\n"
    "                     classified again as the network would see it\n"
    "  --sheet SHEET.png  original, fooled, last step and all steps side by side\n"
    "  --tile PX          sheet tiles PX wide (default: full size)\n"
    "  --json             one JSON document on stdout\n"
    "  --quiet            no progress\n";

static int on_progress(void *user, int iter, int total, float objective, float prob)
{
    if (*(int *)user)
        return 0;
    cli_progress(iter, total, "fool: step %d/%d  target score %.2f  p %.4f", iter, total, (double)objective,
                 (double)prob);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A signed change (normalized units) as an image: each channel in gray
 * levels, magnified around 128 so that the 99th percentile of magnitudes
 * reaches 0 or 255 (the largest few clip: scaling by the maximum would
 * leave all but a handful of pixels flat gray). *gain is the
 * magnification (gray levels shown per gray level changed). */
static int delta_image(const cli_model *cm, const float *d, int h, int w, cnv_image *img,
                       double *gain)
{
    int c = cm->channels;
    size_t plane = (size_t)h * w, n = plane * (size_t)c;
    double *mag = malloc(n * sizeof *mag);
    if (!mag)
        return cli_error("out of memory");
    for (int k = 0; k < c; k++)
        for (size_t j = 0; j < plane; j++)
            mag[k * plane + j] = fabs((double)d[k * plane + j] * cm->pp.std[k] * 255.0);
    qsort(mag, n, sizeof *mag, cmp_double);
    double ref = mag[(size_t)(0.99 * (double)(n - 1))];
    if (!(ref > 0.0))
        ref = mag[n - 1];
    free(mag);
    *gain = ref > 0.0 ? 127.0 / ref : 1.0;
    char err[256];
    if (cnv_image_create(w, h, c, img, err, sizeof err) != CNV_OK)
        return cli_error("%s", err);
    for (int k = 0; k < c; k++) {
        unsigned char *px = img->data + cnv_preprocess_image_channel(&cm->pp, k);
        for (size_t j = 0; j < plane; j++) {
            double v = 128.0 + *gain * (double)d[k * plane + j] * cm->pp.std[k] * 255.0;
            px[j * c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : lrint(v));
        }
    }
    return 0;
}

static int write_png(const cnv_image *img, const char *path)
{
    char err[512];
    return cnv_image_write_png(img, path, err, sizeof err) == CNV_OK ? 0 : cli_error("%s", err);
}

/* original | fooled | last step | all steps, labeled, tiles `tile` wide. */
static int write_sheet(const cli_model *cm, const float *x, const float *fooled,
                       const cnv_image *dl, const cnv_image *ds, int h, int w, int tile,
                       const char *const labels[4], const char *path)
{
    char err[512];
    cnv_image t[4] = {{0}}, small[4] = {{0}}, sheet = {0};
    cnv_status st = cnv_tensor_to_image(x, &cm->pp, h, w, &t[0], err, sizeof err);
    if (st == CNV_OK)
        st = cnv_tensor_to_image(fooled, &cm->pp, h, w, &t[1], err, sizeof err);
    const cnv_image *src[4] = {&t[0], &t[1], dl, ds};
    int th = tile > 0 ? (int)((long)tile * h / w) : h;
    for (int i = 0; i < 4 && st == CNV_OK; i++)
        st = tile > 0 ? cnv_image_resize(src[i], tile, th > 0 ? th : 1, &small[i], err, sizeof err)
                      : cnv_image_convert(src[i], src[i]->channels, &small[i], err, sizeof err);
    if (st == CNV_OK)
        st = cnv_image_grid(small, 4, 4, labels, 4, &sheet, err, sizeof err);
    if (st == CNV_OK)
        st = cnv_image_write_png(&sheet, path, err, sizeof err);
    for (int i = 0; i < 4; i++) {
        cnv_image_free(&t[i]);
        cnv_image_free(&small[i]);
    }
    cnv_image_free(&sheet);
    return st == CNV_OK ? 0 : cli_error("%s", err);
}

/* Top-1 of the session's planned single image. */
static int top1(cnv_session *s, const cli_model *cm, int *cls, float *prob, float *ptarget,
                int target)
{
    float *sc;
    cnv_shape sh;
    if (cnv_session_forward(s) != CNV_OK || cnv_session_tensor(s, cm->output, &sc, &sh) != CNV_OK)
        return cli_error("%s", cnv_session_errmsg(s));
    int K = (int)cnv_shape_count(&sh);
    float *p = malloc((size_t)K * sizeof *p);
    if (!p)
        return cli_error("out of memory");
    cnv_softmax(sc, K, p); /* cm->output holds raw scores */
    int b = 0;
    for (int k = 1; k < K; k++)
        if (p[k] > p[b])
            b = k;
    *cls = b;
    *prob = p[b];
    *ptarget = target >= 0 && target < K ? p[target] : 0.0f;
    free(p);
    return 0;
}

/* The photo at its own size with the change the fooling made (fooled.png
 * minus the photo as the network saw it, in 8-bit levels) resized onto
 * the window the network sees, into `full`. */
static int write_full(const cli_model *cm, const char *photo, const char *fooled, int h, int w, const char *full)
{
    char err[512];
    cnv_image img = {0}, conv = {0}, seen = {0}, after = {0};
    float *d = NULL, *big = NULL;
    cnv_preprocess pp = cm->pp;
    pp.height = h;
    pp.width = w;
    int c = cm->channels, wx = 0, wy = 0, ww = 0, wh = 0, rc = 0;
    cnv_status st = cnv_image_load(photo, &img, err, sizeof err);
    if (st == CNV_OK && img.channels != c && (st = cnv_image_convert(&img, c, &conv, err, sizeof err)) == CNV_OK) {
        cnv_image_free(&img);
        img = conv;
    }
    if (st == CNV_OK)
        st = cnv_image_prepare(&img, &pp, &seen, err, sizeof err);
    if (st == CNV_OK)
        st = cnv_image_load(fooled, &after, err, sizeof err);
    if (st == CNV_OK && (after.width != w || after.height != h || after.channels != c))
        st = CNV_ERR_FORMAT, snprintf(err, sizeof err, "%s is not the %dx%dx%d image fool wrote", fooled, c, h, w);
    if (st == CNV_OK)
        st = cnv_preprocess_window(&pp, img.width, img.height, &wx, &wy, &ww, &wh, err, sizeof err);
    size_t plane = (size_t)h * w, bigplane = (size_t)ww * wh;
    if (st == CNV_OK && (!(d = malloc((size_t)c * plane * sizeof *d)) || !(big = malloc((size_t)c * bigplane * sizeof *big))))
        st = CNV_ERR_NOMEM, snprintf(err, sizeof err, "out of memory");
    if (st == CNV_OK) {
        for (int k = 0; k < c; k++)
            for (size_t i = 0; i < plane; i++)
                d[k * plane + i] = (float)after.data[i * c + k] - (float)seen.data[i * c + k];
        st = cnv_resize_chw(d, c, h, w, big, wh, ww, err, sizeof err);
    }
    if (st == CNV_OK) {
        for (int y = 0; y < wh; y++)
            for (int x = 0; x < ww; x++)
                for (int k = 0; k < c; k++) {
                    unsigned char *px = img.data + (((size_t)(wy + y) * img.width) + (size_t)(wx + x)) * c + k;
                    float v = (float)*px + big[k * bigplane + (size_t)y * ww + x];
                    *px = (unsigned char)(v <= 0.0f ? 0 : v >= 255.0f ? 255 : (int)lroundf(v));
                }
        st = cnv_image_write_png(&img, full, err, sizeof err);
    }
    if (st != CNV_OK)
        rc = cli_error("fool: --full: %s", err);
    free(d);
    free(big);
    cnv_image_free(&img);
    cnv_image_free(&seen);
    cnv_image_free(&after);
    return rc;
}

/* Test image `index` of the IDX dataset in dir, normalized into x. */
static int load_dataset_image(const cli_model *cm, const char *dir, int index, int h, int w,
                              float *x)
{
    cnv_dataset *d = NULL;
    cnv_status st = cnv_mnist_load(dir, "t10k", &d);
    if (st != CNV_OK) {
        cli_error("%s", d ? cnv_dataset_errmsg(d) : cnv_status_string(st));
        cnv_dataset_free(d);
        return 1;
    }
    int c, dh, dw, rc = 0;
    cnv_dataset_shape(d, &c, &dh, &dw);
    if (index >= cnv_dataset_count(d))
        rc = cli_error("--index %d: the dataset has %d test images", index, cnv_dataset_count(d));
    else if (c != cm->channels || dh != h || dw != w)
        rc = cli_error("the dataset's %dx%dx%d images do not fit the model's %dx%dx%d input", c, dh,
                       dw, cm->channels, h, w);
    else {
        const uint8_t *px = cnv_dataset_pixels(d) + (size_t)index * c * h * w;
        size_t plane = (size_t)h * w;
        for (int k = 0; k < c; k++)
            for (size_t j = 0; j < plane; j++)
                x[k * plane + j] = ((float)px[k * plane + j] / 255.0f - cm->pp.mean[k]) / cm->pp.std[k];
    }
    cnv_dataset_free(d);
    return rc;
}

/* A label's first comma-separated name (in one of two static buffers). */
static const char *short_label(const cli_model *cm, int k, int slot)
{
    static char buf[2][64];
    snprintf(buf[slot], sizeof buf[slot], "%s", cli_label(cm, k));
    char *comma = strchr(buf[slot], ',');
    if (comma)
        *comma = 0;
    return buf[slot];
}

int cmd_fool(int argc, char **argv)
{
    cli_model_opts mo = {0};
    cnv_fool_params p = cnv_fool_params_default();
    const char *target_text = NULL, *out = NULL, *delta = NULL, *summed = NULL;
    const char *original = NULL, *sheet = NULL, *full = NULL;
    const char *data = "/usr/share/datasets/fashion-mnist";
    int tile = 0, index = -1;
    cnv_image dl_img = {0}, ds_img = {0};
    int json = 0, quiet = 0;
    const cli_opt opts[] = {
        CLI_OPT_SET("--json", &json),
        CLI_OPT_SET("--quiet", &quiet),
        CLI_OPT_STRING("--target", NULL, &target_text),
        CLI_OPT_OUTPUT("--output", "-o", &out),
        CLI_OPT_OUTPUT("--delta", NULL, &delta),
        CLI_OPT_OUTPUT("--summed", NULL, &summed),
        CLI_OPT_STRING("--original", NULL, &original),
        CLI_OPT_OUTPUT("--sheet", NULL, &sheet),
        CLI_OPT_OUTPUT("--full", NULL, &full),
        CLI_OPT_STRING("--data", NULL, &data),
        CLI_OPT_INT("--index", &index, 0, INT_MAX),
        CLI_OPT_INT("--tile", &tile, 8, 4096),
        CLI_OPT_INT("--max-iters", &p.max_iters, 0, INT_MAX),
        CLI_OPT_FLOAT("--lr", &p.lr, 0, HUGE_VAL, CLI_OPEN_MIN),
        CLI_OPT_FLOAT("--min-prob", &p.min_prob, 0, 1, CLI_OPEN_MAX),
        {0},
    };
    const cli_spec spec = {"fool", usage, &mo, opts, "image", 1};
    int n_images, rc = cli_parse(argc, argv, &spec, &n_images);
    if (rc != CLI_RUN)
        return rc;
    const char *image = n_images ? argv[1] : NULL;
    if ((!image && index < 0) || !target_text || !out)
        return cli_error("fool: give IMAGE (or --index N), --target K|NAME and -o FOOLED.png "
                         "(see --help)"),
               2;
    if (image && index >= 0)
        return cli_error("fool: give IMAGE or --index, not both"), 2;
    if (full && !image)
        return cli_error("fool: --full needs a photo (IMAGE), not --index"), 2;

    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    int target, h = cm.height, w = cm.width;
    rc = 0;
    size_t item = (size_t)cm.channels * h * w;
    float *x = malloc(item * sizeof *x), *fooled = malloc(item * sizeof *fooled);
    float *last = delta || sheet ? malloc(item * sizeof *last) : NULL;
    float *sum = summed || sheet ? malloc(item * sizeof *sum) : NULL;
    cnv_session *s = NULL;
    if (cli_class_lookup(&cm, target_text, &target)) {
        rc = 1;
        goto done;
    }
    if (!x || !fooled || ((delta || sheet) && !last) || ((summed || sheet) && !sum)) {
        rc = cli_error("out of memory");
        goto done;
    }
    char image_name[64];
    if (index >= 0) {
        if (load_dataset_image(&cm, data, index, h, w, x)) {
            rc = 1;
            goto done;
        }
        snprintf(image_name, sizeof image_name, "t10k[%d]", index);
        image = image_name;
    } else if (cli_load_input(&cm, image, h, w, x)) {
        rc = 1;
        goto done;
    }
    if (original && cli_save_input_png(&cm, x, h, w, original)) {
        rc = 1;
        goto done;
    }
    cnv_status st = cnv_session_create(cm.model, &s);
    if (st != CNV_OK) {
        rc = cli_error("%s", s ? cnv_session_errmsg(s) : cnv_status_string(st));
        goto done;
    }
    int silent = quiet;
    p.progress = on_progress;
    p.user = &silent;
    cnv_fool_result r;
    p.preprocess = &cm.pp;
    double t0 = cli_now();
    st = cnv_fool(s, x, (size_t)cm.channels * h * w, h, w, target, &p, fooled, last, sum, &r);
    double secs = cli_now() - t0;
    cli_progress_end();
    if (st != CNV_OK) {
        rc = cli_error("%s", cnv_session_errmsg(s));
        goto done;
    }
    if (cli_save_input_png(&cm, fooled, h, w, out)) {
        rc = 1;
        goto done;
    }
    double gain_last = 0.0, gain_sum = 0.0;
    if ((delta || sheet) &&
        (delta_image(&cm, last, h, w, &dl_img, &gain_last) ||
         (delta && write_png(&dl_img, delta)))) {
        rc = 1;
        goto done;
    }
    if ((summed || sheet) &&
        (delta_image(&cm, sum, h, w, &ds_img, &gain_sum) ||
         (summed && write_png(&ds_img, summed)))) {
        rc = 1;
        goto done;
    }
    /* the verdict comes from the file, not from memory */
    int saved_cls = -1;
    float saved_p = 0.0f, saved_pt = 0.0f;
    if (cnv_session_plan(s, 1, h, w) != CNV_OK) {
        rc = cli_error("%s", cnv_session_errmsg(s));
        goto done;
    }
    if (cli_load_input(&cm, out, h, w, cnv_session_input(s)) ||
        top1(s, &cm, &saved_cls, &saved_p, &saved_pt, target)) {
        rc = 1;
        goto done;
    }
    int ok = saved_cls == target && saved_pt >= p.min_prob;
    /* the full photo, and how the network sees it: resizing it down again
     * need not keep a change this small, so it is said, not assumed */
    int full_cls = -1;
    float full_p = 0.0f, full_pt = 0.0f;
    if (full && (write_full(&cm, image, out, h, w, full) || cli_load_input(&cm, full, h, w, cnv_session_input(s)) ||
                 top1(s, &cm, &full_cls, &full_p, &full_pt, target))) {
        rc = 1;
        goto done;
    }
    if (sheet) {
        char l0[96], l1[96], l2[64], l3[64];
        snprintf(l0, sizeof l0, "%s %.0f%%", short_label(&cm, r.before_class, 0),
                 100.0 * r.before_prob);
        snprintf(l1, sizeof l1, "%s %.0f%%", short_label(&cm, saved_cls, 1), 100.0 * saved_p);
        snprintf(l2, sizeof l2, "last step x%.0f", gain_last);
        snprintf(l3, sizeof l3, "%d steps x%.1f", r.iters, gain_sum);
        const char *labels[4] = {l0, l1, l2, l3};
        if (write_sheet(&cm, x, fooled, &dl_img, &ds_img, h, w, tile, labels, sheet)) {
            rc = 1;
            goto done;
        }
    }
    if (json) {
        printf("{\"model\": ");
        cli_json_string(stdout, cm.path);
        printf(", \"image\": ");
        cli_json_string(stdout, image);
        printf(", \"output\": ");
        cli_json_string(stdout, out);
        printf(", \"target\": {\"class\": %d, \"label\": ", target);
        cli_json_string(stdout, cli_label(&cm, target));
        printf("}, \"fooled\": %s, \"iters\": %d, \"lr\": %g, \"min_prob\": %g, "
               "\"seconds\": %.3f",
               ok ? "true" : "false", r.iters, (double)p.lr, (double)p.min_prob, secs);
        printf(", \"before\": {\"class\": %d, \"label\": ", r.before_class);
        cli_json_string(stdout, cli_label(&cm, r.before_class));
        printf(", \"probability\": %s}", cli_jnum(r.before_prob, 6).s);
        printf(", \"after\": {\"class\": %d, \"label\": ", saved_cls);
        cli_json_string(stdout, cli_label(&cm, saved_cls));
        printf(", \"probability\": %s}, \"target_probability\": %s", cli_jnum(saved_p, 6).s,
               cli_jnum(saved_pt, 6).s);
        printf(", \"linf\": %s, \"mean_abs\": %s", cli_jnum(r.linf, 6).s, cli_jnum(r.mean_abs, 4).s);
        if (delta)
            printf(", \"delta\": "), cli_json_string(stdout, delta),
                printf(", \"delta_gain\": %s", cli_jnum(gain_last, 4).s);
        if (summed)
            printf(", \"summed\": "), cli_json_string(stdout, summed),
                printf(", \"summed_gain\": %s", cli_jnum(gain_sum, 4).s);
        if (original)
            printf(", \"original\": "), cli_json_string(stdout, original);
        if (sheet)
            printf(", \"sheet\": "), cli_json_string(stdout, sheet);
        if (full) {
            printf(", \"full\": {\"file\": ");
            cli_json_string(stdout, full);
            printf(", \"class\": %d, \"label\": ", full_cls);
            cli_json_string(stdout, cli_label(&cm, full_cls));
            printf(", \"probability\": %s, \"target_probability\": %s}", cli_jnum(full_p, 6).s,
                   cli_jnum(full_pt, 6).s);
        }
        printf("}\n");
    } else {
        printf("before: %d (%s) p = %.4f\n", r.before_class, cli_label(&cm, r.before_class),
               (double)r.before_prob);
        printf("after:  %d (%s) p = %.4f  (%s, read back)\n", saved_cls,
               cli_label(&cm, saved_cls), (double)saved_p, out);
        printf("target: %d (%s) p = %.4f, %s after %d steps in %.1f s\n", target,
               cli_label(&cm, target), (double)saved_pt, ok ? "reached" : "NOT reached", r.iters,
               secs);
        printf("change: max %g, mean %.3f gray levels (0..255)\n", (double)r.linf,
               (double)r.mean_abs);
        if (delta)
            printf("last step: %s (x%.0f)\n", delta, gain_last);
        if (summed)
            printf("all steps: %s (x%.1f)\n", summed, gain_sum);
        if (sheet)
            printf("sheet: %s\n", sheet);
        if (full)
            printf("full size: %s, seen by the network as %d (%s) p = %.4f; the target has p = %.4f\n", full,
                   full_cls, cli_label(&cm, full_cls), (double)full_p, (double)full_pt);
    }
    if (!ok)
        rc = cli_error("fool: the saved image is classified as %d (%s, p = %.4f); the target %d "
                       "has p = %.4f after %d steps (try --max-iters or --lr)",
                       saved_cls, cli_label(&cm, saved_cls), (double)saved_p, target,
                       (double)saved_pt, r.iters);
done:
    cnv_image_free(&dl_img);
    cnv_image_free(&ds_img);
    cnv_session_free(s);
    free(x);
    free(fooled);
    free(last);
    free(sum);
    cli_model_close(&cm);
    return rc;
}
