/* cnnviz fool: a fooling image (Szegedy et al. 2014): a real photo changed
 * imperceptibly until the network calls it the target class, checked by
 * classifying the saved file. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz fool [-m MODEL] IMAGE --target K|NAME -o FOOLED.png [options]\n"
    "Changes IMAGE by small normalized gradient steps on the target's raw\n"
    "score until the network's top-1 class is the target, rounds it to 8 bits\n"
    "and checks again (going on if rounding undid it), saves it, and\n"
    "classifies the saved file. Reports the steps, the classes before and\n"
    "after, and the change in gray levels (0..255).\n"
    "\n"
    "options:\n"
    "  --target K|NAME    the class to reach (index or label)\n"
    "  -o FOOLED.png      the fooling image\n"
    "  --max-iters N      give up after N steps (default 100)\n"
    "  --lr F             L2 length of a step, normalized units (default 1)\n"
    "  --delta D.png      the last step, magnified (gray 128 = no change)\n"
    "  --summed S.png     the sum of all steps, magnified likewise\n"
    "  --original O.png   the unchanged image as the network sees it (resized,\n"
    "                     cropped), to compare\n"
    "  --json             one JSON document on stdout\n"
    "  --quiet            no progress\n";

static int on_progress(void *user, int iter, int total, float objective, float prob)
{
    if (*(int *)user)
        return 0;
    fprintf(stderr, "\rfool: step %d/%d  target score %.2f  p %.4f ", iter, total,
            (double)objective, (double)prob);
    return 0;
}

/* A signed change (normalized units) as an image: each channel in gray
 * levels, scaled so the largest magnitude reaches 0 or 255 around 128.
 * Returns the magnification (gray levels shown per gray level changed). */
static double save_delta(const cli_model *cm, const float *d, int h, int w, const char *path)
{
    int c = cm->channels;
    size_t plane = (size_t)h * w;
    double mx = 0.0;
    for (int k = 0; k < c; k++)
        for (size_t j = 0; j < plane; j++) {
            double v = fabs((double)d[k * plane + j] * cm->std[k] * 255.0);
            if (v > mx)
                mx = v;
        }
    double gain = mx > 0.0 ? 127.0 / mx : 1.0;
    cnv_image img = {w, h, c, malloc(plane * (size_t)c)};
    if (!img.data)
        return cli_error("out of memory"), -1.0;
    for (int k = 0; k < c; k++)
        for (size_t j = 0; j < plane; j++) {
            double v = 128.0 + gain * (double)d[k * plane + j] * cm->std[k] * 255.0;
            img.data[j * c + k] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : lrint(v));
        }
    char err[512];
    cnv_status st = cnv_image_write_png(&img, path, err, sizeof err);
    free(img.data);
    if (st != CNV_OK)
        return cli_error("%s", err), -1.0;
    return gain;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Top-1 of the session's planned single image. */
static int top1(cnv_session *s, const char *out, int *cls, float *prob, float *ptarget, int target)
{
    float *sc;
    cnv_shape sh;
    if (cnv_session_forward(s) != CNV_OK || cnv_session_tensor(s, out, &sc, &sh) != CNV_OK)
        return cli_error("%s", cnv_session_errmsg(s));
    int K = (int)cnv_shape_count(&sh);
    float *p = malloc((size_t)K * sizeof *p);
    if (!p)
        return cli_error("out of memory");
    cli_softmax(sc, p, K);
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

int cmd_fool(int argc, char **argv)
{
    cli_model_opts mo = {0};
    cnv_fool_params p = cnv_fool_params_default();
    const char *image = NULL, *target_text = NULL, *out = NULL, *delta = NULL, *summed = NULL;
    const char *original = NULL;
    int json = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_option(argc, argv, &i, &mo);
        if (r < 0)
            return 2;
        if (r)
            continue;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s\n%s", usage, cli_model_help);
            return 0;
        } else if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--quiet"))
            quiet = 1;
        else if (a[0] != '-' || !a[1]) {
            if (image)
                return cli_error("fool: one image only ('%s' and '%s')", image, a), 2;
            image = a;
        } else if (!v)
            return cli_error("fool: %s needs a value (see --help)", a), 2;
        else if (i++, !strcmp(a, "--target"))
            target_text = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            out = v;
        else if (!strcmp(a, "--delta"))
            delta = v;
        else if (!strcmp(a, "--summed"))
            summed = v;
        else if (!strcmp(a, "--original"))
            original = v;
        else if (!strcmp(a, "--max-iters"))
            bad = cli_parse_int(v, &p.max_iters) || p.max_iters < 0;
        else if (!strcmp(a, "--lr"))
            bad = cli_parse_float(v, &p.lr) || !(p.lr > 0);
        else
            return cli_error("fool: unknown option '%s' (see --help)", a), 2;
        if (bad)
            return cli_error("fool: bad value '%s' for %s", v, a), 2;
    }
    if (!image || !target_text || !out)
        return cli_error("fool: give IMAGE, --target K|NAME and -o FOOLED.png (see --help)"), 2;

    cli_model cm;
    if (cli_model_open(&mo, &cm))
        return 1;
    int target, rc = 0, h = cm.height, w = cm.width;
    size_t item = (size_t)cm.channels * h * w;
    float *x = malloc(item * sizeof *x), *fooled = malloc(item * sizeof *fooled);
    float *last = delta ? malloc(item * sizeof *last) : NULL;
    float *sum = summed ? malloc(item * sizeof *sum) : NULL;
    cnv_session *s = NULL;
    if (cli_class_lookup(&cm, target_text, &target)) {
        rc = 1;
        goto done;
    }
    if (!x || !fooled || (delta && !last) || (summed && !sum)) {
        rc = cli_error("out of memory");
        goto done;
    }
    if (cli_load_input(&cm, image, h, w, x)) {
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
    int silent = quiet || !isatty(2);
    p.progress = on_progress;
    p.user = &silent;
    cnv_fool_result r;
    double t0 = now();
    st = cnv_fool(s, cm.model, cm.mean, cm.std, x, h, w, target, &p, fooled, last, sum, &r);
    double secs = now() - t0;
    if (!silent)
        fputc('\n', stderr);
    if (st != CNV_OK) {
        rc = cli_error("%s", cnv_session_errmsg(s));
        goto done;
    }
    if (cli_save_input_png(&cm, fooled, h, w, out)) {
        rc = 1;
        goto done;
    }
    double gain_last = 0.0, gain_sum = 0.0;
    if (delta && (gain_last = save_delta(&cm, last, h, w, delta)) < 0) {
        rc = 1;
        goto done;
    }
    if (summed && (gain_sum = save_delta(&cm, sum, h, w, summed)) < 0) {
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
        top1(s, cm.output, &saved_cls, &saved_p, &saved_pt, target)) {
        rc = 1;
        goto done;
    }
    int ok = saved_cls == target;
    if (json) {
        printf("{\"model\": ");
        cli_json_string(stdout, cm.path);
        printf(", \"image\": ");
        cli_json_string(stdout, image);
        printf(", \"output\": ");
        cli_json_string(stdout, out);
        printf(", \"target\": {\"class\": %d, \"label\": ", target);
        cli_json_string(stdout, cli_label(&cm, target));
        printf("}, \"fooled\": %s, \"iters\": %d, \"lr\": %g, \"seconds\": %.3f", ok ? "true" : "false",
               r.iters, (double)p.lr, secs);
        printf(", \"before\": {\"class\": %d, \"label\": ", r.before_class);
        cli_json_string(stdout, cli_label(&cm, r.before_class));
        printf(", \"probability\": %.6g}", (double)r.before_prob);
        printf(", \"after\": {\"class\": %d, \"label\": ", saved_cls);
        cli_json_string(stdout, cli_label(&cm, saved_cls));
        printf(", \"probability\": %.6g}, \"target_probability\": %.6g", (double)saved_p,
               (double)saved_pt);
        printf(", \"linf\": %g, \"mean_abs\": %.4f", (double)r.linf, (double)r.mean_abs);
        if (delta)
            printf(", \"delta\": "), cli_json_string(stdout, delta),
                printf(", \"delta_gain\": %.4g", gain_last);
        if (summed)
            printf(", \"summed\": "), cli_json_string(stdout, summed),
                printf(", \"summed_gain\": %.4g", gain_sum);
        if (original)
            printf(", \"original\": "), cli_json_string(stdout, original);
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
    }
    if (!ok)
        rc = cli_error("fool: the saved image is classified as %d (%s), not the target %d after "
                       "%d steps (try --max-iters or --lr)",
                       saved_cls, cli_label(&cm, saved_cls), target, r.iters);
done:
    cnv_session_free(s);
    free(x);
    free(fooled);
    free(last);
    free(sum);
    cli_model_close(&cm);
    return rc;
}
