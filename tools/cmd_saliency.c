/* cnnviz saliency: which pixels of a photo a target (a class score, or a
 * channel or unit of a layer) depends on, by any of the library's 18
 * attribution methods; one image into PNGs, a sheet and JSON, or many
 * images into a folder of maps with a streamed CSV or JSON summary. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz saliency [-m MODEL] IMAGE [--method M] -o MAP.png [options]\n"
    "       cnnviz saliency [-m MODEL] IMAGE... --out-dir DIR [--summary S.csv] [...]\n"
    "A saliency map of IMAGE for one target: how strongly each pixel moves a\n"
    "class's raw score (or a layer's channel or unit). The map is saved\n"
    "normalized to 0..255 (gray); the overlay draws it in heat colors over the\n"
    "picture the network sees. Signed maps are drawn as |map| (gradxinput, ig,\n"
    "blurig, guidedig) or as their positive part (occlusion: where covering\n"
    "the image lowers the score) in every PNG; --raw-out keeps the signs.\n"
    "\n"
    "methods (--method M; a comma list such as grad,ig,gradcam, or 'all'):\n"
    "  gradients: grad (default; Simonyan et al. 2014), smoothgrad, guided,\n"
    "    deconvnet, gradxinput, ig (integrated gradients), blurig, guidedig\n"
    "  CAMs (on a layer): gradcam, guided-gradcam, gradcam++, layercam,\n"
    "    xgradcam, eigencam (no target), scorecam, ablationcam\n"
    "  perturbation: occlusion, rise\n"
    "  Several methods make one --sheet (the input and one overlay per method,\n"
    "  labeled with its time when it fits), or files per method with --out-dir.\n"
    "\n"
    "target:\n"
    "  --class K|NAME     class index or label (default: the top-1 class)\n"
    "  --target-layer L   explain a layer instead: the spatial mean of a channel\n"
    "  --channel K        the layer's channel (default: the largest mean)\n"
    "  --unit Y,X         one unit of that channel instead of its mean\n"
    "\n"
    "one image:\n"
    "  -o MAP.png         the normalized map, grayscale\n"
    "  --overlay OUT.png  heat colormap over the (preprocessed) photo\n"
    "  --sheet OUT.png    a labeled sheet: the input, the map and the overlay;\n"
    "                     several methods: the input and one overlay each\n"
    "                     (small inputs are enlarged so the labels fit)\n"
    "  --raw-out S.f32    the unnormalized H x W map, raw little-endian float32\n"
    "                     (never clipped, signs kept)\n"
    "  --json             one JSON document on stdout (with several methods:\n"
    "                     one entry per method with its time)\n"
    "many images (or one):\n"
    "  --out-dir DIR      per image and method DIR/NAME.METHOD.png (gray) and\n"
    "                     DIR/NAME.METHOD.overlay.png (NAME: the file name\n"
    "                     without its extension; names must differ)\n"
    "  --summary FILE     one row per image and method, written as it goes:\n"
    "                     FILE.csv or FILE.json (image, method, class, label,\n"
    "                     score, prob, time_s, passes, the metric areas, error)\n"
    "  An image that fails is reported and the run goes on; the exit code is 1.\n"
    "\n"
    "method options (each refused by the methods it does not apply to):\n"
    "  --layer NAME       CAMs: the layer (default: the last 4-D layer larger\n"
    "                     than 1x1 that every path to the target passes through);\n"
    "                     a tensor or node name, or a unique part of one\n"
    "  --smooth S         grad, guided, deconvnet, gradxinput, ig, blurig,\n"
    "                     guidedig: none (default), mean (SmoothGrad), sq\n"
    "                     (SmoothGrad-squared) or var (VarGrad) over noisy copies\n"
    "  --samples N        smoothgrad and --smooth: noisy copies (default 25)\n"
    "  --noise F          smoothgrad and --smooth: sigma / (max - min) of the\n"
    "                     input (default 0.15)\n"
    "  --steps N          ig, blurig, guidedig: path steps (default 64)\n"
    "  --baseline B       ig, guidedig, occlusion, scorecam, rise: zero (the\n"
    "                     mean color), black, blur, noise, or an image FILE\n"
    "                     (preprocessed like the input) (default: the method's\n"
    "                     own: black for ig, guidedig, rise; zero otherwise)\n"
    "  --baseline-sigma F --baseline blur: sigma in pixels (default: a tenth of\n"
    "                     the larger side)\n"
    "  --max-sigma F      blurig: the path's largest blur in pixels (default 50\n"
    "                     at 224)\n"
    "  --fraction F       guidedig: inputs moved per sub-step (default 0.25)\n"
    "  --window N         occlusion: the square's side (default: a seventh of\n"
    "  --stride N         the smaller side) and its step (default: half of it)\n"
    "  --masks N          rise: random masks (default 2000)\n"
    "  --cells N          rise: the masks' grid side (default 7)\n"
    "  --mask-prob F      rise: probability of a cell on (default 0.5)\n"
    "  --batch N          images per pass of the methods that make many\n"
    "                     (smoothing, ig, blurig, scorecam, ablationcam,\n"
    "                     occlusion, rise, --metric) (default: about 32768\n"
    "                     pixels a pass: 8 images up to 64x64, 1 at 224x224)\n"
    "  --seed S           noise, noise baselines, rise's masks (default 0)\n"
    "\n"
    "evaluation and drawing:\n"
    "  --metric M         deletion, insertion or both (Petsiuk et al. 2018): the\n"
    "                     target's probability as pixels are removed (to black)\n"
    "                     or inserted (into a blurred copy) in the map's order,\n"
    "                     largest value first; prints the area under the curve\n"
    "                     (deletion: lower is better; insertion: higher)\n"
    "  --metric-steps N   points of the curve after the first (default 32)\n"
    "  --clip P           the PNGs cap the map at its P-th percentile before\n"
    "                     scaling, so a few extreme pixels do not darken the\n"
    "                     rest (Smilkov et al. cap at 99) (default 99; 100: off)\n"
    "  --alpha F          overlay opacity in [0,1] (default 0.5)\n"
    "  --quiet            no progress\n";

/* ------------------------------------------------------------ options */

/* What a method takes, to refuse the options it would ignore. */
enum {
    A_TARGET = 1 << 0,   /* --class, --target-layer */
    A_LAYER = 1 << 1,    /* --layer */
    A_SMOOTH = 1 << 2,   /* --smooth */
    A_SAMPLES = 1 << 3,  /* --samples, --noise */
    A_SEED = 1 << 4,     /* --seed */
    A_BATCH = 1 << 5,    /* --batch */
    A_STEPS = 1 << 6,    /* --steps */
    A_BASELINE = 1 << 7, /* --baseline */
    A_FRACTION = 1 << 8, /* --fraction */
    A_MAXSIGMA = 1 << 9, /* --max-sigma */
    A_WINDOW = 1 << 10,  /* --window, --stride */
    A_RISE = 1 << 11,    /* --masks, --cells, --mask-prob */
};

/* The options method m uses (cnv_saliency_method_flags, and the options
 * of one method each), given whether smoothing, a noise baseline and a
 * metric were asked for. */
static unsigned applies(int m, int smoothing, int noise_baseline, int metric)
{
    unsigned f = cnv_saliency_method_flags((cnv_saliency_method)m), a = 0;
    if ((f & CNV_SAL_TARGET) || metric)
        a |= A_TARGET;
    if (f & CNV_SAL_LAYER)
        a |= A_LAYER;
    if (f & CNV_SAL_SMOOTH)
        a |= A_SMOOTH;
    if (m == CNV_SALIENCY_SMOOTHGRAD || ((f & CNV_SAL_SMOOTH) && smoothing))
        a |= A_SAMPLES | A_SEED | A_BATCH;
    if (f & CNV_SAL_STEPS)
        a |= A_STEPS;
    if ((f & CNV_SAL_BATCHED) || metric)
        a |= A_BATCH;
    if (f & CNV_SAL_BASELINE)
        a |= A_BASELINE;
    if (((f & CNV_SAL_BASELINE) && noise_baseline) || (f & CNV_SAL_SEEDED))
        a |= A_SEED;
    if (m == CNV_SALIENCY_RISE)
        a |= A_RISE;
    if (m == CNV_SALIENCY_GUIDED_IG)
        a |= A_FRACTION;
    if (m == CNV_SALIENCY_BLUR_IG)
        a |= A_MAXSIGMA;
    if (m == CNV_SALIENCY_OCCLUSION)
        a |= A_WINDOW;
    return a;
}

/* "--steps is for --method ig, blurig, guidedig": the methods that take
 * flag without smoothing, noise baselines or metrics, and what else
 * would make it apply. */
static int not_for(const char *opt, unsigned flag)
{
    if (flag == A_TARGET)
        return cli_usage_error("saliency: eigencam has no target (it is class-agnostic): %s is for its --metric, "
                               "or for the other methods",
                               opt);
    char names[512] = "";
    size_t len = 0;
    for (int m = 0; m < CNV_SALIENCY_METHODS; m++)
        if (applies(m, 0, 0, 0) & flag)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "",
                                    cnv_saliency_method_name((cnv_saliency_method)m));
    const char *more = flag == A_SAMPLES ? "; or --smooth mean|sq|var with a gradient method"
                       : flag == A_SEED  ? "; or --smooth, or --baseline noise"
                       : flag == A_BATCH ? "; or --smooth, or --metric"
                                          : "";
    return cli_usage_error("saliency: %s is for --method %s%s", opt, names, more);
}

/* --seed, recording that it was given */
typedef struct {
    uint64_t v;
    int given;
} seed_opt;

static int parse_seed(const char *s, void *dst)
{
    seed_opt *o = dst;
    char *end;
    if (o->given || !*s || *s == '-' || *s == '+')
        return 1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return 1;
    o->v = v;
    o->given = 1;
    return 0;
}

/* --method: "all", one name or a comma list, into methods[] in order
 * (each once). 0, or 2 after the error. */
static int parse_methods(const char *text, int *methods, int *n)
{
    *n = 0;
    if (!text) {
        methods[(*n)++] = CNV_SALIENCY_GRAD;
        return 0;
    }
    if (!strcmp(text, "all")) {
        for (int m = 0; m < CNV_SALIENCY_METHODS; m++)
            methods[(*n)++] = m;
        return 0;
    }
    const char *s = text;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char name[64];
        int m = -1;
        if (len < sizeof name) {
            memcpy(name, s, len);
            name[len] = '\0';
            m = cnv_saliency_method_parse(name);
        }
        if (m < 0) {
            char all[512] = "";
            size_t l = 0;
            for (int k = 0; k < CNV_SALIENCY_METHODS; k++)
                l += (size_t)snprintf(all + l, sizeof all - l, "%s%s", k ? ", " : "",
                                      cnv_saliency_method_name((cnv_saliency_method)k));
            return cli_usage_error("saliency: unknown method '%.*s' (known: %s; or all, or a comma list)",
                                   (int)(len < 64 ? len : 64), s, all);
        }
        for (int k = 0; k < *n; k++)
            if (methods[k] == m)
                return cli_usage_error("saliency: --method names %s twice", name);
        methods[(*n)++] = m;
        if (!comma)
            return 0;
        s = comma + 1;
    }
}

/* ----------------------------------------------------------- helpers */

static int on_progress(void *user, int iter, int total, float objective, float prob)
{
    (void)objective, (void)prob;
    if (total <= 1)
        return 0;
    cli_progress(iter, total, "saliency (%s): pass %d/%d", (const char *)user, iter, total);
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

static void json_float(const char *key, double v, int comma)
{
    printf("\"%s\": %s%s", key, cli_jnum(v, 9).s, comma ? ", " : "");
}

/* One CSV field, quoted when it needs to be (RFC 4180). */
static void csv_field(FILE *f, const char *s, int last)
{
    if (strpbrk(s, ",\"\n\r")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputc(last ? '\n' : ',', f);
}

/* The file name of path without its folder and extension ("a/b.x.jpg" ->
 * "b.x"), as a pointer into path and a length. */
static const char *stem(const char *path, int *len)
{
    const char *slash = strrchr(path, '/'), *b = slash ? slash + 1 : path;
    const char *dot = strrchr(b, '.');
    *len = (int)(dot && dot != b ? dot - b : (long)strlen(b));
    return b;
}

static const char *const *g_sort_names;

static int cmp_stem(const void *a, const void *b)
{
    int la, lb;
    const char *sa = stem(g_sort_names[*(const int *)a], &la), *sb = stem(g_sort_names[*(const int *)b], &lb);
    int c = strncmp(sa, sb, (size_t)(la < lb ? la : lb));
    return c ? c : la - lb;
}

/* ------------------------------------------------------------- running */

/* Everything one run needs, allocated once: the buffers are reused for
 * every image and method, so a folder of any length runs in flat memory. */
typedef struct run {
    cli_model *cm;
    cnv_session *s;
    int c, h, w;
    size_t plane;
    float *x, *map, *shown, *scratch, *curve[2];
    cnv_saliency_params base;
    unsigned given; /* the A_* options given, to pass on only those */
    int metrics;    /* bit k: cnv_metric k */
    int metric_steps;
    int target_layer; /* a layer target (p.score) */
    float clip, alpha;
    int quiet, method_progress;
} run;

/* What one method gave on one image. */
typedef struct result {
    cnv_saliency_info info;
    double time_s;
    float auc[2];
} result;

/* The parameters for method m: the base with the options m does not take
 * set back to their defaults (a list runs each method with its own). */
static cnv_saliency_params params_for(const run *r, int m)
{
    cnv_saliency_params p = r->base, d = cnv_saliency_params_default();
    unsigned a = applies(m, r->base.smooth != CNV_SMOOTH_NONE, r->base.baseline == CNV_BASELINE_NOISE,
                         r->metrics != 0);
    p.method = (cnv_saliency_method)m;
    if (!(a & A_LAYER))
        p.layer = NULL;
    if (!(a & A_SMOOTH))
        p.smooth = CNV_SMOOTH_NONE;
    if (!(a & A_SAMPLES))
        p.samples = d.samples, p.noise = d.noise;
    if (!(a & A_STEPS))
        p.steps = d.steps;
    if (!(a & A_BASELINE))
        p.baseline = d.baseline, p.baseline_sigma = d.baseline_sigma, p.baseline_image = NULL;
    if (!(a & A_FRACTION))
        p.guided_fraction = d.guided_fraction;
    if (!(a & A_MAXSIGMA))
        p.blur_max_sigma = d.blur_max_sigma;
    if (!(a & A_WINDOW))
        p.window = d.window, p.stride = d.stride;
    if (!(a & A_RISE))
        p.masks = d.masks, p.mask_cells = d.mask_cells, p.mask_prob = d.mask_prob;
    p.progress = r->method_progress ? on_progress : NULL;
    p.user = (void *)cnv_saliency_method_name(p.method);
    return p;
}

/* The session's message without the "saliency: " it starts with (the
 * command says where it comes from). */
static const char *session_message(const cnv_session *s)
{
    const char *e = cnv_session_errmsg(s);
    return strncmp(e, "saliency: ", 10) ? e : e + 10;
}

/* Method m on the image in r->x: the map in r->map, the metric curves in
 * r->curve. 0, or 1 with the session's message in msg. */
static int run_method(run *r, int m, result *res, char *msg, size_t msglen)
{
    cnv_saliency_params p = params_for(r, m);
    size_t count = (size_t)r->c * r->plane;
    memset(res, 0, sizeof *res);
    res->auc[0] = res->auc[1] = NAN;
    double t0 = cli_now();
    if (cnv_saliency(r->s, r->x, count, r->h, r->w, &p, r->map, r->plane, &res->info) != CNV_OK) {
        snprintf(msg, msglen, "%s", session_message(r->s));
        return 1;
    }
    res->time_s = cli_now() - t0;
    /* The metrics follow the explained target with their own baselines
     * (black for deletion, a blur for insertion), whatever --baseline set
     * for the method, so that every method is scored alike. */
    cnv_saliency_params q = p;
    q.class_index = res->info.class_index;
    q.baseline = CNV_BASELINE_AUTO;
    q.baseline_image = NULL;
    q.progress = NULL;
    for (int k = 0; k < 2; k++)
        if ((r->metrics >> k) & 1)
            if (cnv_saliency_metric(r->s, r->x, count, r->h, r->w, r->map, r->plane, (cnv_metric)k,
                                    r->metric_steps, &q, r->curve[k], &res->auc[k]) != CNV_OK) {
                snprintf(msg, msglen, "%s: %s", cnv_metric_name((cnv_metric)k), session_message(r->s));
                return 1;
            }
    return 0;
}

/* The label of the explained target: the class's, or "LAYER channel K". */
static const char *target_label(const run *r, const result *res, char *buf, size_t len)
{
    if (!r->target_layer)
        return cli_label(r->cm, res->info.class_index);
    snprintf(buf, len, "%s channel %d", r->base.score, res->info.class_index);
    return buf;
}

/* A summary row (res NULL: the method failed with msg). */
static void summary_row(FILE *f, int json, int *rows, const run *r, const char *image, int m, const result *res,
                        const char *msg)
{
    char lb[300];
    const char *method = cnv_saliency_method_name((cnv_saliency_method)m);
    if (json) {
        fprintf(f, "%s\n  {\"image\": ", *rows ? "," : "");
        cli_json_string(f, image);
        fprintf(f, ", \"method\": \"%s\"", method);
        if (res) {
            fprintf(f, ", \"class\": %d, \"label\": ", res->info.class_index);
            cli_json_string(f, target_label(r, res, lb, sizeof lb));
            fprintf(f, ", \"score\": %s, \"prob\": %s, \"time_s\": %s, \"passes\": %d", cli_jnum(res->info.score, 9).s,
                    cli_jnum(res->info.prob, 9).s, cli_jnum(res->time_s, 4).s, res->info.passes);
            for (int k = 0; k < 2; k++)
                if ((r->metrics >> k) & 1)
                    fprintf(f, ", \"%s_auc\": %s", cnv_metric_name((cnv_metric)k), cli_jnum(res->auc[k], 6).s);
        } else {
            fprintf(f, ", \"error\": ");
            cli_json_string(f, msg);
        }
        fputc('}', f);
    } else {
        char num[64];
        csv_field(f, image, 0);
        csv_field(f, method, 0);
        if (res) {
            snprintf(num, sizeof num, "%d", res->info.class_index);
            csv_field(f, num, 0);
            csv_field(f, target_label(r, res, lb, sizeof lb), 0);
            fprintf(f, "%s,%s,%s,%d,", cli_jnum(res->info.score, 9).s, cli_jnum(res->info.prob, 9).s,
                    cli_jnum(res->time_s, 4).s, res->info.passes);
        } else {
            fputs(",,,,,,", f);
        }
        for (int k = 0; k < 2; k++)
            if ((r->metrics >> k) & 1)
                fprintf(f, "%s,", res ? cli_jnum(res->auc[k], 6).s : "");
        csv_field(f, res ? "" : msg, 1);
    }
    fflush(f);
    ++*rows;
}

/* The gray map and the overlay of r->map as PNGs (either path may be NULL). */
static int write_pngs(run *r, const cnv_image *photo, int mode, const char *gray_path, const char *ov_path)
{
    char err[512];
    cnv_image img = {0};
    int rc = 0;
    cli_shown_map(r->map, r->plane, mode, r->clip, r->shown, r->scratch);
    if (gray_path) {
        if (cnv_map_to_gray(r->shown, r->h, r->w, &img, err, sizeof err) != CNV_OK ||
            cnv_image_write_png(&img, gray_path, err, sizeof err) != CNV_OK)
            rc = cli_error("%s", err);
        cnv_image_free(&img);
    }
    if (!rc && ov_path) {
        if (cnv_map_overlay(photo, r->shown, r->h, r->w, r->alpha, &img, err, sizeof err) != CNV_OK ||
            cnv_image_write_png(&img, ov_path, err, sizeof err) != CNV_OK)
            rc = cli_error("%s", err);
        cnv_image_free(&img);
    }
    return rc;
}

static void format_eta(double s, char *buf, size_t len)
{
    if (s >= 3600)
        snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60)
        snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, len, "%.0fs", s);
}

/* Many images: per image and method the files in out_dir (may be NULL)
 * and a summary row, streamed. Returns 0, or 1 when any image or method
 * failed (after going on with the others). */
static int run_folder(run *r, char **images, int n, const int *methods, int n_methods, const char *out_dir,
                      const char *summary)
{
    FILE *sf = NULL;
    int json = 0, rows = 0, bad = 0, n_failed = 0;
    if (summary) {
        json = strlen(summary) >= 5 && !strcmp(summary + strlen(summary) - 5, ".json");
        if (!(sf = fopen(summary, "w")))
            return cli_error("cannot write '%s': %s", summary, strerror(errno));
        if (json) {
            fputc('[', sf);
        } else {
            fputs("image,method,class,label,score,prob,time_s,passes,", sf);
            for (int k = 0; k < 2; k++)
                if ((r->metrics >> k) & 1)
                    fprintf(sf, "%s_auc,", cnv_metric_name((cnv_metric)k));
            fputs("error\n", sf);
        }
    }
    size_t plen = out_dir ? strlen(out_dir) + 300 : 0;
    char *gray_path = out_dir ? malloc(plen) : NULL, *ov_path = out_dir ? malloc(plen) : NULL;
    if (out_dir && (!gray_path || !ov_path)) {
        free(gray_path);
        free(ov_path);
        if (sf)
            fclose(sf);
        return cli_error("out of memory");
    }
    double t0 = cli_now();
    char msg[600], err[512];
    for (int i = 0; i < n; i++) {
        cnv_image photo = {0};
        int failed = 0;
        if (cli_load_input(r->cm, images[i], r->h, r->w, r->x)) {
            /* cli_load_input said why on stderr; the row gets the gist */
            snprintf(msg, sizeof msg, "%s", access(images[i], R_OK) ? strerror(errno) : "not an image it can read");
            failed = 1;
        } else if (out_dir && cnv_tensor_to_image(r->x, &r->cm->pp, r->h, r->w, &photo, err, sizeof err) != CNV_OK) {
            snprintf(msg, sizeof msg, "%s", err);
            cli_error("saliency: %s: %s", images[i], msg);
            failed = 1;
        }
        for (int k = 0; k < n_methods; k++) {
            result res;
            int m = methods[k];
            const char *name = cnv_saliency_method_name((cnv_saliency_method)m);
            if (!failed && run_method(r, m, &res, msg, sizeof msg)) {
                cli_progress_end();
                cli_error("saliency: %s: %s: %s", images[i], name, msg);
                bad = 1;
                n_failed++;
                if (sf)
                    summary_row(sf, json, &rows, r, images[i], m, NULL, msg);
                continue;
            }
            if (failed) {
                bad = 1;
                n_failed++;
                if (sf)
                    summary_row(sf, json, &rows, r, images[i], m, NULL, msg);
                continue;
            }
            if (out_dir) {
                int sl;
                const char *st = stem(images[i], &sl);
                snprintf(gray_path, plen, "%s/%.*s.%s.png", out_dir, sl, st, name);
                snprintf(ov_path, plen, "%s/%.*s.%s.overlay.png", out_dir, sl, st, name);
                if (write_pngs(r, &photo, cli_show_mode(m, res.info.is_signed), gray_path, ov_path)) {
                    /* a folder that cannot be written fails every image */
                    cnv_image_free(&photo);
                    free(gray_path);
                    free(ov_path);
                    if (sf)
                        fclose(sf);
                    return 1;
                }
            }
            if (sf)
                summary_row(sf, json, &rows, r, images[i], m, &res, NULL);
        }
        cnv_image_free(&photo);
        if (!r->quiet) {
            double el = cli_now() - t0;
            char eta[32];
            format_eta(el / (i + 1) * (n - i - 1), eta, sizeof eta);
            cli_progress(i + 1, n, "saliency: image %d/%d, %.1f s, ETA %s", i + 1, n, el, eta);
        }
    }
    cli_progress_end();
    free(gray_path);
    free(ov_path);
    if (sf) {
        if (json)
            fputs(rows ? "\n]\n" : "]\n", sf);
        if (fclose(sf))
            return cli_error("cannot write '%s': %s", summary, strerror(errno));
    }
    if (!r->quiet)
        fprintf(stderr, "saliency: %d image%s x %d method%s in %.1f s, %d failed%s%s%s%s\n", n, n == 1 ? "" : "s",
                n_methods, n_methods == 1 ? "" : "s", cli_now() - t0, n_failed, out_dir ? ", maps in " : "",
                out_dir ? out_dir : "", summary ? ", summary " : "", summary ? summary : "");
    return bad;
}

/* The metric fields of one method's JSON: ", "deletion_auc": a,
 * "deletion_curve": [...]" per metric asked for. */
static void json_metrics(const run *r, const result *res)
{
    for (int k = 0; k < 2; k++) {
        if (!((r->metrics >> k) & 1))
            continue;
        const char *name = cnv_metric_name((cnv_metric)k);
        printf(", \"%s_auc\": %s, \"%s_curve\": [", name, cli_jnum(res->auc[k], 6).s, name);
        for (int i = 0; i <= r->metric_steps; i++)
            printf("%s%s", i ? ", " : "", cli_jnum(r->curve[k][i], 6).s);
        printf("]");
    }
}

/* One image, several methods: the sheet of the input and one overlay per
 * method, and with --json one entry per method. */
static int run_sheet(run *r, const char *image, const int *methods, int n_methods, const char *sheet, int json)
{
    char err[512], msg[600], lb[300];
    int n_tiles = 1 + n_methods, rc = 0;
    cnv_image *tiles = calloc((size_t)n_tiles, sizeof *tiles), photo = {0}, sheet_img = {0};
    char **labels = calloc((size_t)n_tiles, sizeof *labels);
    if (!tiles || !labels) {
        free(tiles);
        free(labels);
        return cli_error("out of memory");
    }
    if (cnv_tensor_to_image(r->x, &r->cm->pp, r->h, r->w, &photo, err, sizeof err) != CNV_OK ||
        cnv_image_convert(&photo, 3, &tiles[0], err, sizeof err) != CNV_OK)
        rc = cli_error("%s", err);
    /* 28-pixel tiles are enlarged enough for "guided-gradcam 12 ms" */
    int up = r->w < 128 ? (128 + r->w - 1) / r->w : 1;
    if (json) {
        printf("{\"image\": ");
        cli_json_string(stdout, image);
        printf(", \"height\": %d, \"width\": %d, \"methods\": [", r->h, r->w);
    }
    double total = 0;
    for (int k = 0; k < n_methods && !rc; k++) {
        result res;
        int m = methods[k];
        const char *name = cnv_saliency_method_name((cnv_saliency_method)m);
        if (run_method(r, m, &res, msg, sizeof msg)) {
            rc = cli_error("saliency: %s: %s", name, msg);
            break;
        }
        total += res.time_s;
        cli_shown_map(r->map, r->plane, cli_show_mode(m, res.info.is_signed), r->clip, r->shown, r->scratch);
        if (cnv_map_overlay(&photo, r->shown, r->h, r->w, r->alpha, &tiles[1 + k], err, sizeof err) != CNV_OK) {
            rc = cli_error("%s", err);
            break;
        }
        /* the input is labeled with the target (eigencam has none) */
        if (!labels[0] && (m != CNV_SALIENCY_EIGENCAM || k == n_methods - 1))
            labels[0] = strdup(m == CNV_SALIENCY_EIGENCAM && !r->metrics ? "input" : target_label(r, &res, lb, sizeof lb));
        /* the time when it fits the cell; else the name alone */
        char text[96];
        int cell = r->w * up, scale = cell >= 200 ? 2 : 1;
        if (res.time_s < 0.1)
            snprintf(text, sizeof text, "%s %.0f ms", name, res.time_s * 1e3);
        else
            snprintf(text, sizeof text, "%s %.2f s", name, res.time_s);
        if (cnv_text_width(text, scale) > cell)
            snprintf(text, sizeof text, "%s", name);
        labels[1 + k] = strdup(text);
        if (!labels[1 + k] || (!labels[0] && m != CNV_SALIENCY_EIGENCAM)) {
            rc = cli_error("out of memory");
            break;
        }
        if (json) {
            printf("%s{\"method\": \"%s\", \"class\": %d, \"label\": ", k ? ", " : "", name, res.info.class_index);
            cli_json_string(stdout, target_label(r, &res, lb, sizeof lb));
            printf(", ");
            json_float("score", res.info.score, 1);
            json_float("prob", res.info.prob, 1);
            printf("\"signed\": %s, \"passes\": %d, \"time_s\": %s", res.info.is_signed ? "true" : "false",
                   res.info.passes, cli_jnum(res.time_s, 4).s);
            if (res.info.layer) {
                printf(", \"layer\": ");
                cli_json_string(stdout, res.info.layer);
            }
            json_metrics(r, &res);
            printf("}");
        } else if (!r->quiet) {
            fprintf(stderr, "saliency (%s): class %d (%s), %.2f s, %d pass%s", name, res.info.class_index,
                    target_label(r, &res, lb, sizeof lb), res.time_s, res.info.passes,
                    res.info.passes == 1 ? "" : "es");
            for (int q = 0; q < 2; q++)
                if ((r->metrics >> q) & 1)
                    fprintf(stderr, ", %s area %.4f", cnv_metric_name((cnv_metric)q), (double)res.auc[q]);
            fputc('\n', stderr);
        }
    }
    for (int k = 0; k < n_tiles && !rc && up > 1; k++)
        if (cli_upscale_image(&tiles[k], up, err, sizeof err) != CNV_OK)
            rc = cli_error("%s", err);
    if (!rc && sheet &&
        (cnv_image_grid(tiles, n_tiles, n_tiles < 5 ? n_tiles : 5, (const char *const *)labels, 4, &sheet_img, err,
                        sizeof err) != CNV_OK ||
         cnv_image_write_png(&sheet_img, sheet, err, sizeof err) != CNV_OK))
        rc = cli_error("%s", err);
    if (json) {
        printf("], \"time_s\": %s", cli_jnum(total, 4).s);
        if (sheet) {
            printf(", \"sheet\": ");
            cli_json_string(stdout, sheet);
        }
        printf("%s}\n", rc ? ", \"error\": true" : "");
    } else if (!rc && !r->quiet && sheet) {
        fprintf(stderr, "saliency: %d methods in %.2f s; wrote %s\n", n_methods, total, sheet);
    }
    for (int k = 0; k < n_tiles; k++) {
        cnv_image_free(&tiles[k]);
        free(labels[k]);
    }
    free(tiles);
    free(labels);
    cnv_image_free(&photo);
    cnv_image_free(&sheet_img);
    return rc;
}

/* One image, one method: the files and messages as cnnviz 0.x wrote them. */
static int run_single(run *r, const char *image, int m, const char *out, const char *overlay, const char *sheet,
                      const char *raw, int json)
{
    char err[512], msg[600], lb[300];
    result res;
    cnv_image photo = {0};
    int h = r->h, w = r->w, rc = 0;
    size_t plane = r->plane;
    if ((overlay || sheet) && cnv_tensor_to_image(r->x, &r->cm->pp, h, w, &photo, err, sizeof err) != CNV_OK)
        return cli_error("%s", err);
    if (run_method(r, m, &res, msg, sizeof msg)) {
        cnv_image_free(&photo);
        return cli_error("saliency: %s", msg);
    }
    const char *name = cnv_saliency_method_name((cnv_saliency_method)m);
    if (sheet) {
        /* the input labeled with its class, the map, the overlay */
        cnv_image tiles[3] = {{0}};
        char *labels[3] = {strdup(target_label(r, &res, lb, sizeof lb)), strdup("map"), strdup(name)};
        cnv_image gray = {0}, sheet_img = {0};
        cli_shown_map(r->map, plane, cli_show_mode(m, res.info.is_signed), r->clip, r->shown, r->scratch);
        if (!labels[0] || !labels[1] || !labels[2])
            rc = cli_error("out of memory");
        else if (cnv_image_convert(&photo, 3, &tiles[0], err, sizeof err) != CNV_OK ||
                 cnv_map_to_gray(r->shown, h, w, &gray, err, sizeof err) != CNV_OK ||
                 cnv_image_convert(&gray, 3, &tiles[1], err, sizeof err) != CNV_OK ||
                 cnv_map_overlay(&photo, r->shown, h, w, r->alpha, &tiles[2], err, sizeof err) != CNV_OK ||
                 cnv_image_grid(tiles, 3, 3, (const char *const *)labels, 4, &sheet_img, err, sizeof err) != CNV_OK ||
                 cnv_image_write_png(&sheet_img, sheet, err, sizeof err) != CNV_OK)
            rc = cli_error("%s", err);
        for (int k = 0; k < 3; k++) {
            cnv_image_free(&tiles[k]);
            free(labels[k]);
        }
        cnv_image_free(&gray);
        cnv_image_free(&sheet_img);
    }
    if (!rc && (out || overlay))
        rc = write_pngs(r, &photo, cli_show_mode(m, res.info.is_signed), out, overlay);
    if (!rc && raw)
        rc = write_f32_le(raw, r->map, plane);
    const float *map = r->map;
    const cnv_saliency_params p = params_for(r, m);
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
        printf(", \"method\": \"%s\", \"class\": %d, \"label\": ", name, res.info.class_index);
        cli_json_string(stdout, target_label(r, &res, lb, sizeof lb));
        printf(", ");
        if (r->target_layer) {
            printf("\"target_layer\": ");
            cli_json_string(stdout, p.score);
            printf(", \"channel\": %d, ", res.info.class_index);
            if (p.y >= 0)
                printf("\"unit\": [%d, %d], ", p.y, p.x);
        }
        json_float("score", res.info.score, 1);
        json_float("prob", res.info.prob, 1);
        printf("\"height\": %d, \"width\": %d, ", h, w);
        json_float("map_min", plane > nan ? lo : NAN, 1);
        json_float("map_max", plane > nan ? hi : NAN, 1);
        json_float("map_mean", plane > nan ? sum / (double)(plane - nan) : NAN, 1);
        printf("\"map_nan\": %zu, \"signed\": %s, \"passes\": %d, \"time_s\": %s", nan,
               res.info.is_signed ? "true" : "false", res.info.passes, cli_jnum(res.time_s, 4).s);
        if (res.info.layer) {
            printf(", \"layer\": ");
            cli_json_string(stdout, res.info.layer);
            printf(", \"layer_height\": %d, \"layer_width\": %d", res.info.layer_height, res.info.layer_width);
        }
        if (p.smooth != CNV_SMOOTH_NONE) {
            const char *names[4] = {"none", "mean", "sq", "var"};
            printf(", \"smooth\": \"%s\"", names[p.smooth]);
        }
        if (m == CNV_SALIENCY_SMOOTHGRAD || p.smooth != CNV_SMOOTH_NONE)
            printf(", \"samples\": %d, \"noise\": %g, \"seed\": %llu", p.samples, (double)p.noise,
                   (unsigned long long)p.seed);
        if (m == CNV_SALIENCY_IG || m == CNV_SALIENCY_BLUR_IG || m == CNV_SALIENCY_GUIDED_IG) {
            printf(", \"steps\": %d, ", p.steps);
            json_float("baseline_score", res.info.baseline_score, 0);
        }
        if (r->metrics)
            printf(", \"metric_steps\": %d", r->metric_steps);
        json_metrics(r, &res);
        const char *keys[4] = {"map", "overlay", "raw", "sheet"}, *vals[4] = {out, overlay, raw, sheet};
        for (int k = 0; k < 4; k++)
            if (vals[k]) {
                printf(", \"%s\": ", keys[k]);
                cli_json_string(stdout, vals[k]);
            }
        printf("}\n");
    } else if (!rc && !r->quiet) {
        fprintf(stderr, "saliency (%s): class %d (%s), score %.4g, p %.4f%s%s\n", name, res.info.class_index,
                target_label(r, &res, lb, sizeof lb), (double)res.info.score, (double)res.info.prob,
                res.info.layer ? ", layer " : "", res.info.layer ? res.info.layer : "");
        for (int k = 0; k < 2; k++)
            if ((r->metrics >> k) & 1)
                fprintf(stderr, "saliency: %s area %.4f (%d steps)\n", cnv_metric_name((cnv_metric)k),
                        (double)res.auc[k], r->metric_steps);
        const char *files[4] = {out, overlay, raw, sheet};
        int any = 0;
        for (int k = 0; k < 4; k++)
            any |= files[k] != NULL;
        if (any) {
            fprintf(stderr, "saliency: wrote");
            for (int k = 0, first = 1; k < 4; k++)
                if (files[k])
                    fprintf(stderr, "%s %s", first ? "" : ",", files[k]), first = 0;
            fputc('\n', stderr);
        }
    }
    cnv_image_free(&photo);
    return rc;
}

/* ------------------------------------------------------------- command */

int cmd_saliency(int argc, char **argv)
{
    cli_model_opts mo = {0};
    const cnv_saliency_params d = cnv_saliency_params_default();
    const char *cls_text = NULL, *out = NULL, *overlay = NULL, *raw = NULL, *sheet = NULL, *method = NULL;
    const char *layer = NULL, *smooth = NULL, *baseline = NULL, *metric = NULL, *target_layer = NULL;
    const char *out_dir = NULL, *summary = NULL;
    float alpha = 0.5f, clip = CLI_SALIENCY_CLIP;
    float noise = NAN, baseline_sigma = NAN, max_sigma = NAN, fraction = NAN, mask_prob = NAN;
    int samples = -1, batch = -1, steps = -1, window = -1, stride = -1, masks = -1, cells = -1, channel = -1;
    int metric_steps = -1, unit[2] = {-1, -1};
    seed_opt seed = {0, 0};
    int json = 0, quiet = 0;
    const cli_opt opts[] = {
        CLI_OPT_SET("--json", &json),
        CLI_OPT_SET("--quiet", &quiet),
        CLI_OPT_STRING("--class", NULL, &cls_text),
        CLI_OPT_OUTPUT("--output", "-o", &out),
        CLI_OPT_OUTPUT("--overlay", NULL, &overlay),
        CLI_OPT_OUTPUT("--sheet", NULL, &sheet),
        CLI_OPT_STRING("--raw-out", NULL, &raw),
        CLI_OPT_STRING("--out-dir", NULL, &out_dir),
        CLI_OPT_OUTPUT("--summary", NULL, &summary),
        CLI_OPT_STRING("--layer", NULL, &layer),
        CLI_OPT_STRING("--method", NULL, &method),
        CLI_OPT_STRING("--target-layer", NULL, &target_layer),
        CLI_OPT_INT("--channel", &channel, 0, INT_MAX),
        CLI_OPT_CUSTOM("--unit", cli_parse_unit, unit),
        CLI_OPT_STRING("--smooth", NULL, &smooth),
        CLI_OPT_INT("--samples", &samples, 1, INT_MAX),
        CLI_OPT_FLOAT("--noise", &noise, 0, HUGE_VAL, 0),
        CLI_OPT_INT("--batch", &batch, 1, INT_MAX),
        CLI_OPT_INT("--steps", &steps, 1, INT_MAX),
        CLI_OPT_STRING("--baseline", NULL, &baseline),
        CLI_OPT_FLOAT("--baseline-sigma", &baseline_sigma, 0, HUGE_VAL, CLI_OPEN_MIN),
        CLI_OPT_FLOAT("--max-sigma", &max_sigma, 0, HUGE_VAL, CLI_OPEN_MIN),
        CLI_OPT_FLOAT("--fraction", &fraction, 0, 1, CLI_OPEN_MIN),
        CLI_OPT_INT("--window", &window, 1, INT_MAX),
        CLI_OPT_INT("--stride", &stride, 1, INT_MAX),
        CLI_OPT_INT("--masks", &masks, 1, INT_MAX),
        CLI_OPT_INT("--cells", &cells, 1, INT_MAX),
        CLI_OPT_FLOAT("--mask-prob", &mask_prob, 0, 1, CLI_OPEN_MIN),
        CLI_OPT_STRING("--metric", NULL, &metric),
        CLI_OPT_INT("--metric-steps", &metric_steps, 1, 1 << 20),
        CLI_OPT_FLOAT("--clip", &clip, 0, 100, 0),
        CLI_OPT_FLOAT("--alpha", &alpha, 0, 1, 0),
        CLI_OPT_CUSTOM("--seed", parse_seed, &seed),
        {0},
    };
    const cli_spec spec = {"saliency", usage, &mo, opts, "image", INT_MAX};
    int n_images, rc = cli_parse(argc, argv, &spec, &n_images);
    if (rc != CLI_RUN)
        return rc;
    rc = 0;
    char **images = argv + 1;

    /* ---- the command line, checked before the model loads */
    int methods[CNV_SALIENCY_METHODS], n_methods;
    if (parse_methods(method, methods, &n_methods))
        return 2;
    cnv_saliency_params p = d;
    if (smooth) {
        const char *names[4] = {"none", "mean", "sq", "var"};
        int k = 0;
        while (k < 4 && strcmp(smooth, names[k]))
            k++;
        if (k == 4)
            return cli_usage_error("saliency: --smooth '%s': expected none, mean, sq or var", smooth);
        p.smooth = (cnv_smooth)k;
    }
    int metrics = 0;
    if (metric) {
        if (!strcmp(metric, "both"))
            metrics = 3;
        else if (cnv_metric_parse(metric) >= 0)
            metrics = 1 << cnv_metric_parse(metric);
        else
            return cli_usage_error("saliency: --metric '%s': expected deletion, insertion or both", metric);
    }
    if (metric_steps >= 0 && !metrics)
        return cli_usage_error("saliency: --metric-steps is for --metric");
    const char *baseline_file = NULL;
    if (baseline) {
        const char *names[] = {"zero", "black", "blur", "noise"};
        const cnv_baseline kinds[] = {CNV_BASELINE_ZERO, CNV_BASELINE_BLACK, CNV_BASELINE_BLUR, CNV_BASELINE_NOISE};
        int k = 0;
        while (k < 4 && strcmp(baseline, names[k]))
            k++;
        if (k < 4) {
            p.baseline = kinds[k];
        } else if (access(baseline, R_OK) == 0) {
            p.baseline = CNV_BASELINE_IMAGE;
            baseline_file = baseline;
        } else {
            return cli_usage_error("saliency: --baseline '%s': expected zero, black, blur, noise or an image file "
                                   "(%s)",
                                   baseline, strerror(errno));
        }
    }
    if (!isnan(baseline_sigma) && p.baseline != CNV_BASELINE_BLUR)
        return cli_usage_error("saliency: --baseline-sigma is for --baseline blur");
    if ((channel >= 0 || unit[0] >= 0) && !target_layer)
        return cli_usage_error("saliency: --channel and --unit pick a channel of --target-layer LAYER");
    if (cls_text && target_layer)
        return cli_usage_error("saliency: --class and --target-layer are two targets; give one (--channel picks "
                               "the layer's channel)");
    /* every option must be taken by at least one of the methods */
    unsigned takes = 0;
    for (int k = 0; k < n_methods; k++)
        takes |= applies(methods[k], p.smooth != CNV_SMOOTH_NONE, p.baseline == CNV_BASELINE_NOISE, metrics != 0);
    const struct {
        int given;
        const char *name;
        unsigned flag;
    } checks[] = {
        {cls_text != NULL, "--class", A_TARGET},
        {target_layer != NULL, "--target-layer", A_TARGET},
        {layer != NULL, "--layer", A_LAYER},
        {smooth != NULL, "--smooth", A_SMOOTH},
        {samples >= 0, "--samples", A_SAMPLES},
        {!isnan(noise), "--noise", A_SAMPLES},
        {seed.given, "--seed", A_SEED},
        {batch >= 0, "--batch", A_BATCH},
        {steps >= 0, "--steps", A_STEPS},
        {baseline != NULL, "--baseline", A_BASELINE},
        {!isnan(fraction), "--fraction", A_FRACTION},
        {!isnan(max_sigma), "--max-sigma", A_MAXSIGMA},
        {window >= 0, "--window", A_WINDOW},
        {stride >= 0, "--stride", A_WINDOW},
        {masks >= 0, "--masks", A_RISE},
        {cells >= 0, "--cells", A_RISE},
        {!isnan(mask_prob), "--mask-prob", A_RISE},
    };
    for (size_t k = 0; k < sizeof checks / sizeof checks[0]; k++)
        if (checks[k].given && !(takes & checks[k].flag))
            return not_for(checks[k].name, checks[k].flag);
    if (samples >= 0)
        p.samples = samples;
    if (!isnan(noise))
        p.noise = noise;
    p.seed = seed.v;
    if (batch >= 0)
        p.batch = batch;
    if (steps >= 0)
        p.steps = steps;
    if (!isnan(baseline_sigma))
        p.baseline_sigma = baseline_sigma;
    if (!isnan(fraction))
        p.guided_fraction = fraction;
    if (!isnan(max_sigma))
        p.blur_max_sigma = max_sigma;
    if (window >= 0)
        p.window = window;
    if (stride >= 0)
        p.stride = stride;
    if (masks >= 0)
        p.masks = masks;
    if (cells >= 0)
        p.mask_cells = cells;
    if (!isnan(mask_prob))
        p.mask_prob = mask_prob;
    p.layer = layer;
    p.score = target_layer;
    p.class_index = channel;
    p.y = unit[0];
    p.x = unit[1];

    if (!n_images)
        return cli_error("saliency: no image given (see --help)"), 2;
    int folder = out_dir || summary || n_images > 1;
    if (folder) {
        if (out || overlay || sheet || raw || json)
            return cli_usage_error("saliency: -o, --overlay, --sheet, --raw-out and --json are for one image; "
                                   "with several (or --out-dir, --summary) the maps go to --out-dir DIR and the "
                                   "results to --summary FILE");
        if (!out_dir && !summary)
            return cli_usage_error("saliency: %d images: give --out-dir DIR (and --summary FILE.csv|.json)",
                                   n_images);
        if (summary) {
            size_t l = strlen(summary);
            if (!(l > 4 && !strcmp(summary + l - 4, ".csv")) && !(l > 5 && !strcmp(summary + l - 5, ".json")))
                return cli_usage_error("saliency: --summary '%s': name a .csv or a .json file", summary);
        }
        if (out_dir) {
            /* two images of one name would write the same files */
            int *order = malloc((size_t)n_images * sizeof *order);
            if (!order)
                return cli_error("out of memory");
            for (int i = 0; i < n_images; i++)
                order[i] = i;
            g_sort_names = (const char *const *)images;
            qsort(order, (size_t)n_images, sizeof *order, cmp_stem);
            for (int i = 1; i < n_images; i++)
                if (!cmp_stem(&order[i - 1], &order[i])) {
                    int l;
                    const char *st = stem(images[order[i]], &l);
                    rc = cli_usage_error("saliency: '%s' and '%s' would both write %s/%.*s.*.png; rename one",
                                         images[order[i - 1]], images[order[i]], out_dir, l, st);
                    break;
                }
            free(order);
            if (rc)
                return rc;
            struct stat sb;
            if (stat(out_dir, &sb) != 0 && mkdir(out_dir, 0777) != 0)
                return cli_error("saliency: cannot make the folder '%s': %s", out_dir, strerror(errno));
            if (stat(out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
                return cli_usage_error("saliency: --out-dir '%s' is not a folder", out_dir);
        }
    } else if (n_methods > 1) {
        if (out || overlay || raw || (!sheet && !json))
            return cli_usage_error("saliency: several methods write only --sheet OUT.png (and --json), or files "
                                   "per method with --out-dir DIR");
    } else if (!out && !overlay && !raw && !json && !sheet) {
        return cli_usage_error("saliency: give -o MAP.png, --overlay OUT.png, --sheet OUT.png, --raw-out S.f32 "
                               "or --json");
    }

    /* ---- the model and the buffers, once for the whole run */
    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    int h = cm.height, w = cm.width, c = cm.channels, t;
    if (cls_text && cli_class_lookup(&cm, cls_text, &p.class_index)) {
        cli_model_close(&cm);
        return 1;
    }
    /* a misspelt layer fails here once, not on every image */
    if ((layer && cli_layer_lookup(&cm, "saliency: --layer", layer, &t)) ||
        (target_layer && cli_layer_lookup(&cm, "saliency: --target-layer", target_layer, &t))) {
        cli_model_close(&cm);
        return 1;
    }
    size_t plane = (size_t)h * w, ms = metric_steps >= 0 ? (size_t)metric_steps : 32;
    run r = {.cm = &cm, .c = c, .h = h, .w = w, .plane = plane, .base = p, .metrics = metrics,
             .metric_steps = (int)ms, .target_layer = target_layer != NULL, .clip = clip, .alpha = alpha,
             .quiet = quiet, .method_progress = !quiet && !folder};
    float *base_img = NULL;
    r.x = malloc((size_t)c * plane * sizeof *r.x);
    r.map = malloc(plane * sizeof *r.map);
    r.shown = malloc(plane * sizeof *r.shown);
    r.scratch = malloc(plane * sizeof *r.scratch);
    r.curve[0] = malloc((ms + 1) * sizeof *r.curve[0]);
    r.curve[1] = malloc((ms + 1) * sizeof *r.curve[1]);
    if (!r.x || !r.map || !r.shown || !r.scratch || !r.curve[0] || !r.curve[1])
        rc = cli_error("out of memory");
    if (!rc && baseline_file) {
        if (!(base_img = malloc((size_t)c * plane * sizeof *base_img)))
            rc = cli_error("out of memory");
        else if (cli_load_input(&cm, baseline_file, h, w, base_img))
            rc = 1;
        r.base.baseline_image = base_img;
    }
    if (!rc && cnv_session_create(cm.model, &r.s) != CNV_OK)
        rc = cli_error("out of memory");
    if (!rc) {
        if (folder)
            rc = run_folder(&r, images, n_images, methods, n_methods, out_dir, summary);
        else if (cli_load_input(&cm, images[0], h, w, r.x))
            rc = 1;
        else if (n_methods > 1)
            rc = run_sheet(&r, images[0], methods, n_methods, sheet, json);
        else
            rc = run_single(&r, images[0], methods[0], out, overlay, sheet, raw, json);
    }
    cnv_session_free(r.s);
    free(r.x);
    free(r.map);
    free(r.shown);
    free(r.scratch);
    free(r.curve[0]);
    free(r.curve[1]);
    free(base_img);
    cli_model_close(&cm);
    return rc;
}
