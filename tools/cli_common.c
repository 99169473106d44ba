/* Helpers shared by the cnnviz subcommands: the command-line parser, model
 * options over the model's own preprocessing, class names, parsing, JSON
 * strings. The program uses the public API only. */
#include "cli_common.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

const char *const cli_model_help =
    "model options:\n"
    "  -m, --model FILE   ONNX model (default: weights/fashion_mnist.onnx)\n"
    "  --preset P         a model family's convention, for a model without cnnviz\n"
    "                     metadata: imagenet (torchvision: ImageNet mean/std,\n"
    "                     224x224), inception (Keras/TF Inception, Xception:\n"
    "                     pixels to [-1,1], 299x299) or caffe (old ONNX zoo, Keras\n"
    "                     VGG/ResNet50: BGR, 0..255 minus the ImageNet mean,\n"
    "                     224x224); each brings the 1000 ImageNet class names\n"
    "                     when the model has none\n"
    "  --mean a,b,c       per-channel mean, after scaling pixels to [0,1]\n"
    "  --std a,b,c        per-channel standard deviation\n"
    "  --channel-order O  rgb or bgr: the color order the model takes\n"
    "  --labels FILE      class names, one per line ('nXXXXXXXX name' accepted)\n"
    "  --size HxW         input size (default: the model's cnnviz.image_size)\n"
    "  --threads T        threads to run on (default: $CNNVIZ_NUM_THREADS or all cores)\n"
    "  --max-memory SIZE  the most one plan may take, as 512M, 4G or bytes (default:\n"
    "                     $CNNVIZ_MAX_MEMORY, else half of the physical memory)\n";

/* ------------------------------------------------------------- parsing */

static int parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < INT_MIN || v > INT_MAX)
        return 1;
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return 1;
    *out = v;
    return 0;
}

static int parse_size(const char *s, int *h, int *w)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (errno || end == s || (*end != 'x' && *end != 'X'))
        return 1;
    const char *rest = end + 1;
    long b = strtol(rest, &end, 10);
    if (errno || end == rest || *end || a < 1 || b < 1 || a > 16384 || b > 16384)
        return 1;
    *h = (int)a;
    *w = (int)b;
    return 0;
}

/* a,b,c (1 or 3 values; one value is repeated) into out[0..2] */
static int parse_floats3(const char *s, float out[CNV_MAX_CHANNELS])
{
    float v[3];
    int n = 0;
    const char *p = s;
    while (n < 3) {
        char *end;
        errno = 0;
        v[n] = strtof(p, &end);
        if (errno || end == p || !isfinite(v[n]))
            return 1;
        n++;
        if (*end == '\0')
            break;
        if (*end != ',')
            return 1;
        p = end + 1;
    }
    if (*p && n == 3 && strchr(p, ','))
        return 1; /* more than three values */
    if (n == 2)
        return 1;
    for (int i = 0; i < 3; i++)
        out[i] = v[n == 1 ? 0 : i];
    return 0;
}

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* Edit distance with adjacent swaps (optimal string alignment), on
 * lowercased bytes; names longer than 63 bytes are not compared. */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return INT_MAX;
    int d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            int best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

const char *cli_nearest(const char *typed, const char *const *names, int n)
{
    int best = INT_MAX, ties = 0, limit = (int)strlen(typed) / 3;
    const char *found = NULL;
    if (limit < 1)
        limit = 1;
    for (int i = 0; i < n; i++) {
        if (!names[i])
            continue;
        int dd = distance(typed, names[i]);
        if (dd < best) {
            best = dd;
            found = names[i];
            ties = 0;
        } else if (dd == best && strcmp(found, names[i])) {
            ties++;
        }
    }
    return best <= limit && !ties ? found : NULL;
}

static int g_progress_open, g_progress_tenth = -1, g_progress_tty = -1;

void cli_progress(int iter, int total, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (g_progress_tty < 0) /* asked once: progress comes every step */
        g_progress_tty = isatty(2);
    if (g_progress_tty) {
        fputc('\r', stderr);
        vfprintf(stderr, fmt, ap);
        fputc(' ', stderr);
        g_progress_open = 1;
    } else {
        int tenth = total > 0 ? (int)((int64_t)iter * 10 / total) : 10;
        if (iter <= 1 || tenth < g_progress_tenth)
            g_progress_tenth = -1; /* a new run */
        if (tenth != g_progress_tenth || iter == total) {
            vfprintf(stderr, fmt, ap);
            fputc('\n', stderr);
            g_progress_tenth = tenth;
        }
    }
    va_end(ap);
}

void cli_progress_end(void)
{
    if (g_progress_open)
        fputc('\n', stderr);
    g_progress_open = 0;
}

cli_num cli_jnum(double v, int digits)
{
    cli_num n;
    if (isfinite(v))
        snprintf(n.s, sizeof n.s, "%.*g", digits, v);
    else
        snprintf(n.s, sizeof n.s, "null");
    return n;
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------- options */

/* The value of o from v; nonzero if v is not one. */
static int set_value(const cli_opt *o, const char *v)
{
    switch (o->kind) {
    case CLI_KIND_STRING:
    case CLI_KIND_OUTPUT:
        *(const char **)o->dst = v;
        return 0;
    case CLI_KIND_INT: {
        int x;
        if (parse_int(v, &x) || x < o->min || x > o->max)
            return 1;
        *(int *)o->dst = x;
        return 0;
    }
    case CLI_KIND_FLOAT: {
        float x;
        if (parse_float(v, &x) || !(o->open & CLI_OPEN_MIN ? x > o->min : x >= o->min) ||
            !(o->open & CLI_OPEN_MAX ? x < o->max : x <= o->max))
            return 1;
        *(float *)o->dst = x;
        return 0;
    }
    case CLI_KIND_SEED: {
        /* strtoull would take "-1" as 2^64 - 1 */
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno || *v == '-')
            return 1;
        *(uint64_t *)o->dst = x;
        return 0;
    }
    case CLI_KIND_CUSTOM:
        return o->parse(v, o->dst);
    default:
        return 1;
    }
}

/* What an option's value must be, for "bad value" messages ("" when its
 * own parser says nothing more). */
static void expected(const cli_opt *o, char *buf, size_t len)
{
    buf[0] = '\0';
    if (o->kind == CLI_KIND_INT && o->max == INT_MAX)
        snprintf(buf, len, ": expected a whole number, at least %d", (int)o->min);
    else if (o->kind == CLI_KIND_INT)
        snprintf(buf, len, ": expected a whole number from %d to %d", (int)o->min, (int)o->max);
    else if (o->kind == CLI_KIND_FLOAT && isinf(o->max))
        snprintf(buf, len, ": expected a number %s %g", o->open & CLI_OPEN_MIN ? "above" : "at least", o->min);
    else if (o->kind == CLI_KIND_FLOAT)
        snprintf(buf, len, ": expected a number from %g%s to %g%s", o->min,
                 o->open & CLI_OPEN_MIN ? " (excluded)" : "", o->max, o->open & CLI_OPEN_MAX ? " (excluded)" : "");
    else if (o->kind == CLI_KIND_SEED)
        snprintf(buf, len, ": expected a whole number, 0 or more");
}

static const cli_opt *find_option(const cli_opt *opts, const char *a)
{
    for (; opts && opts->name; opts++)
        if (!strcmp(a, opts->name) || (opts->alias && !strcmp(a, opts->alias)))
            return opts;
    return NULL;
}

int cli_parse(int argc, char **argv, const cli_spec *spec, int *n_args)
{
    cli_model_opts unused, *mo = spec->model ? spec->model : &unused;
    const cli_opt model_opts[] = {
        CLI_OPT_STRING("--model", "-m", &mo->path),
        CLI_OPT_STRING("--mean", NULL, &mo->mean),
        CLI_OPT_STRING("--std", NULL, &mo->std),
        CLI_OPT_STRING("--labels", NULL, &mo->labels),
        CLI_OPT_STRING("--size", NULL, &mo->size),
        CLI_OPT_STRING("--preset", NULL, &mo->preset),
        CLI_OPT_STRING("--channel-order", NULL, &mo->order),
        CLI_OPT_STRING("--threads", NULL, &mo->threads),
        CLI_OPT_STRING("--max-memory", NULL, &mo->max_memory),
        {0},
    };
    const char *cmd = spec->cmd;
    int n = 0, n_seen = 0;
    struct {
        const void *dst;
        const char *as;
    } seen[64];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            if (n == spec->max_args) {
                if (n == 0)
                    cli_error("%s: unexpected argument '%s' (see --help)", cmd, a);
                else
                    cli_error("%s: one %s only ('%s' and '%s')", cmd, spec->arg, argv[1], a);
                return 2;
            }
            argv[++n] = argv[i]; /* n <= i: nothing unread is overwritten */
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (spec->model)
                printf("%s\n%s", spec->usage, cli_model_help);
            else
                fputs(spec->usage, stdout);
            return 0;
        }
        const cli_opt *o = find_option(spec->opts, a);
        if (!o && spec->model)
            o = find_option(model_opts, a);
        if (!o) {
            cli_error("%s: unknown option '%s' (see --help)", cmd, a);
            return 2;
        }
        if (o->kind == CLI_KIND_SET || o->kind == CLI_KIND_CLEAR) {
            *(int *)o->dst = o->kind == CLI_KIND_SET;
            continue;
        }
        if (i + 1 == argc) {
            cli_error("%s: %s needs a value (see --help)", cmd, a);
            return 2;
        }
        /* an option given twice would silently keep the last value (a
         * CUSTOM one may collect several: its parser decides) */
        for (int k = 0; o->kind != CLI_KIND_CUSTOM && k < n_seen; k++)
            if (seen[k].dst == o->dst) {
                if (strcmp(a, seen[k].as))
                    cli_error("%s: %s given twice (also as %s); give it once", cmd, a, seen[k].as);
                else
                    cli_error("%s: %s given twice; give it once", cmd, a);
                return 2;
            }
        if (n_seen < (int)(sizeof seen / sizeof seen[0]))
            seen[n_seen].dst = o->dst, seen[n_seen++].as = a;
        const char *v = argv[++i];
        if (set_value(o, v)) {
            char range[128];
            expected(o, range, sizeof range);
            cli_error("%s: bad value '%s' for %s%s", cmd, v, a, range);
            return 2;
        }
        char why[512];
        if (o->kind == CLI_KIND_OUTPUT && cnv_check_output(v, why, sizeof why) != CNV_OK) {
            cli_error("%s: %s: %s", cmd, a, why);
            return 2;
        }
    }
    if (n_args)
        *n_args = n;
    return CLI_RUN;
}

/* ---------------------------------------------------------------- model */

/* A file the program ships (the default model, ImageNet's class names):
 * weights/NAME here, else beside the executable in ../weights (a build
 * tree) or ../share/cnnviz (an installation). NULL when none is found. */
static char *find_data(const char *name)
{
    static const char *const rel[] = {"../weights/", "../share/cnnviz/"};
    char path[8192];
    snprintf(path, sizeof path, "weights/%s", name);
    if (access(path, R_OK) == 0)
        return strdup(path);
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            slash[1] = '\0';
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
                snprintf(path, sizeof path, "%s%s%s", exe, rel[i], name);
                if (access(path, R_OK) == 0)
                    return strdup(path);
            }
        }
    }
    return NULL;
}

static char *find_default_model(void)
{
    const char *env = getenv("CNNVIZ_MODEL");
    if (env && *env)
        return strdup(env);
    char *found = find_data("fashion_mnist.onnx");
    return found ? found : strdup("weights/fashion_mnist.onnx"); /* so the error names it */
}

/* The conventions of model families that carry no cnnviz metadata. */
typedef struct preset {
    const char *name;
    float mean[3], std[3]; /* in the input's channel order */
    int size;
    cnv_channel_order order;
} preset;

static const preset g_presets[] = {
    {"imagenet", {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, 224, CNV_ORDER_RGB},
    {"inception", {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, 299, CNV_ORDER_RGB},
    /* Caffe's BGR pixels 0..255 minus the ImageNet mean, no scaling */
    {"caffe",
     {103.939f / 255.0f, 116.779f / 255.0f, 123.68f / 255.0f},
     {1.0f / 255.0f, 1.0f / 255.0f, 1.0f / 255.0f},
     224,
     CNV_ORDER_BGR},
};

/* Whether the model plans for an input of c x h x w (shapes only). */
static int plans_at(const cnv_model *m, cnv_shape *shapes, int nt, int c, int h, int w, char *err, size_t len)
{
    cnv_shape in = {4, {1, c, h, w}};
    return cnv_model_infer_shapes(m, 1, &in, shapes, nt, NULL, 0, err, len) == CNV_OK;
}

/* A --size the network cannot take: the smallest square side it can, or
 * 0. The first power of two from 16 that plans bounds a bisection (sizes
 * that are too large fail too, on the element limit). */
static int smallest_side(const cnv_model *m, cnv_shape *shapes, int nt, int c)
{
    char err[256];
    int lo = 1, hi = 16;
    while (hi <= CNV_IMAGE_MAX_SIDE && !plans_at(m, shapes, nt, c, hi, hi, err, sizeof err))
        hi *= 2;
    if (hi > CNV_IMAGE_MAX_SIDE)
        return 0;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (plans_at(m, shapes, nt, c, mid, mid, err, sizeof err))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The chosen size must plan; when it does not and the user chose it, the
 * message gives the smallest size the network takes. On success *classes
 * gets the score tensor's values per image at that size (-1 if unknown),
 * from the same shapes. */
static int check_size(const cli_model *cm, int chosen, int *classes)
{
    int nt = cnv_model_tensor_count(cm->model), t = cnv_model_score_tensor(cm->model);
    cnv_shape *shapes = calloc((size_t)nt + 1, sizeof *shapes);
    char err[512];
    *classes = -1;
    if (!shapes)
        return cli_error("out of memory");
    int rc = 0;
    cnv_shape in;
    if (chosen && cnv_model_input_shape(cm->model, 0, &in) == CNV_OK && in.ndim == 4 && in.dims[2] > 0 &&
        in.dims[3] > 0 && (in.dims[2] != cm->pp.height || in.dims[3] != cm->pp.width)) {
        rc = cli_usage_error("--size %dx%d: this model takes %lldx%lld inputs only", cm->pp.height, cm->pp.width,
                             (long long)in.dims[2], (long long)in.dims[3]);
    } else if (!plans_at(cm->model, shapes, nt, cm->pp.channels, cm->pp.height, cm->pp.width, err, sizeof err)) {
        int side = chosen ? smallest_side(cm->model, shapes, nt, cm->pp.channels) : 0;
        if (side > cm->pp.height || side > cm->pp.width)
            rc = cli_usage_error("--size %dx%d is too small for this model: the smallest square input it takes "
                                 "is %dx%d (at %dx%d: %s)",
                                 cm->pp.height, cm->pp.width, side, side, cm->pp.height, cm->pp.width, err);
        else
            rc = cli_error("the model cannot run on %dx%d inputs: %s", cm->pp.height, cm->pp.width, err);
    } else if (t >= 0) {
        int64_t k = cnv_shape_count(&shapes[t]);
        *classes = k > 0 && k <= INT_MAX ? (int)k : -1;
    }
    free(shapes);
    return rc;
}

int cli_model_open(const cli_model_opts *o, cli_model *out)
{
    memset(out, 0, sizeof *out);
    if (o->threads) { /* else the library's default: $CNNVIZ_NUM_THREADS or all cores */
        int n;
        if (parse_int(o->threads, &n) || n < 1 || n > CNV_MAX_THREADS)
            return cli_usage_error("--threads '%s': expected a whole number from 1 to %d", o->threads, CNV_MAX_THREADS);
        cnv_set_threads(n);
    }
    if (o->max_memory) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(o->max_memory, &end, 10);
        unsigned shift = *end == 'K' || *end == 'k' ? 10 : *end == 'M' || *end == 'm' ? 20
                       : *end == 'G' || *end == 'g' ? 30 : 0;
        if (shift)
            end++;
        if (errno || !v || *end || o->max_memory[0] == '-' || v > (SIZE_MAX >> shift))
            return cli_usage_error("--max-memory '%s': expected a size such as 512M, 4G or a byte count",
                             o->max_memory);
        cnv_set_memory_limit((size_t)v << shift);
    }
    out->path = o->path ? strdup(o->path) : find_default_model();
    if (!out->path)
        return cli_error("out of memory");
    cnv_status st = cnv_model_load_onnx(out->path, &out->model);
    if (st != CNV_OK) {
        cli_error("cannot load model '%s': %s", out->path,
                  out->model ? cnv_model_errmsg(out->model) : cnv_status_string(st));
        cli_model_close(out);
        return 1;
    }
    cnv_model *m = out->model;
    char err[512];
    int rc = 0;
    /* The model's own preprocessing (its metadata), then the preset, then
     * explicit options. */
    if (cnv_model_input_count(m) != 1)
        rc = cli_error("model '%s': expected one image input, it has %d inputs", out->path,
                       cnv_model_input_count(m));
    else if (cnv_model_output_count(m) < 1)
        rc = cli_error("model '%s' declares no output", out->path);
    else if (cnv_model_preprocess(m, &out->pp, err, sizeof err) != CNV_OK)
        rc = cli_error("model '%s': %s", out->path, err);
    cnv_preprocess *pp = &out->pp;
    const preset *ps = NULL;
    out->norm_from = pp->found & (CNV_PP_MEAN | CNV_PP_STD) ? "model metadata" : "default";
    out->size_from = pp->found & CNV_PP_SIZE ? "model" : "default";
    out->labels_from = cnv_model_labels(m, NULL) ? "model metadata" : "none";
    if (!rc && !(pp->found & CNV_PP_SIZE))
        pp->height = pp->width = 224;
    if (!rc && o->preset) {
        for (size_t i = 0; i < sizeof g_presets / sizeof g_presets[0]; i++)
            if (!strcmp(o->preset, g_presets[i].name))
                ps = &g_presets[i];
        if (!ps)
            rc = cli_usage_error("unknown preset '%s' (known: imagenet, inception, caffe)", o->preset);
    }
    if (ps) {
        memcpy(pp->mean, ps->mean, sizeof ps->mean);
        memcpy(pp->std, ps->std, sizeof ps->std);
        pp->order = ps->order;
        out->norm_from = "--preset";
        if (!(pp->found & CNV_PP_SIZE)) { /* a fixed-size model keeps its size */
            pp->height = pp->width = ps->size;
            out->size_from = "--preset";
        }
    }
    if (!rc && o->mean && parse_floats3(o->mean, pp->mean))
        rc = cli_usage_error("--mean '%s': expected one or three numbers separated by commas", o->mean);
    if (!rc && o->std && parse_floats3(o->std, pp->std))
        rc = cli_usage_error("--std '%s': expected one or three numbers separated by commas", o->std);
    if (o->mean || o->std)
        out->norm_from = "--mean/--std";
    if (!rc && o->order) {
        if (strcmp(o->order, "rgb") && strcmp(o->order, "bgr"))
            rc = cli_usage_error("--channel-order '%s': expected rgb or bgr", o->order);
        else if (pp->channels != 3 && pp->channels != 4)
            rc = cli_usage_error("--channel-order: the model takes %d-channel%s inputs", pp->channels,
                                 pp->channels == 1 ? " (gray)" : "");
        else
            pp->order = o->order[0] == 'b' ? CNV_ORDER_BGR : CNV_ORDER_RGB;
    }
    if (!rc && o->size && parse_size(o->size, &pp->height, &pp->width))
        rc = cli_usage_error("--size '%s': expected HxW, e.g. 224x224", o->size);
    if (o->size)
        out->size_from = "--size";
    if (!rc && o->labels && cnv_model_load_labels(m, o->labels) != CNV_OK)
        rc = cli_error("%s", cnv_model_errmsg(m));
    if (o->labels)
        out->labels_from = "--labels";
    /* Mean 0 and std 1 on a color model is almost never what it was
     * trained with: say what is assumed, once. */
    if (!rc && !strcmp(out->norm_from, "default") && pp->channels == 3)
        fprintf(stderr,
                "cnnviz: note: %s has no normalization metadata; using mean 0, std 1 (pixels in [0,1]). For a "
                "torchvision model give --preset imagenet, for Keras Inception --preset inception, for a Caffe-era model "
                "--preset caffe, or --mean/--std (docs/PREPROCESSING.md)\n",
                out->path);
    if (!rc && cnv_preprocess_check(pp, err, sizeof err) != CNV_OK)
        rc = cli_error("%s", err);
    int classes = -1;
    if (!rc)
        rc = check_size(out, o->size != NULL, &classes);
    /* a preset brings ImageNet's names to a model of 1000 classes that has
     * none */
    if (!rc && ps && !o->labels && !cnv_model_labels(m, NULL)) {
        char *names = classes == 1000 ? find_data("imagenet_labels.txt") : NULL;
        if (classes != 1000)
            fprintf(stderr, "cnnviz: note: the model scores %d classes, not ImageNet's 1000: no class names\n",
                    classes);
        else if (!names)
            rc = cli_error("--preset %s: the ImageNet class names (imagenet_labels.txt) are not installed", ps->name);
        else if (cnv_model_load_labels(m, names) != CNV_OK)
            rc = cli_error("%s", cnv_model_errmsg(m));
        else
            out->labels_from = "--preset (ImageNet)";
        free(names);
    }
    if (rc) {
        cli_model_close(out);
        return rc;
    }
    out->output = cnv_model_score_tensor(m); /* raw scores, even after a final Softmax */
    out->channels = pp->channels;
    out->height = pp->height;
    out->width = pp->width;
    out->n_labels = cnv_model_labels(m, &out->labels);
    return 0;
}

void cli_model_close(cli_model *m)
{
    if (!m)
        return;
    cnv_model_free(m->model);
    free(m->path);
    memset(m, 0, sizeof *m);
}

/* Whether word occurs in label as a whole word, ignoring case. */
static int has_word(const char *label, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = label; n && *p; p++)
        if (!strncasecmp(p, word, n) && (p == label || !isalnum((unsigned char)p[-1])) &&
            !isalnum((unsigned char)p[n]))
            return 1;
    return 0;
}

int cli_class_lookup(const cli_model *m, const char *text, int *cls)
{
    char err[512];
    if (cnv_model_find_class(m->model, text, cls, err, sizeof err) == CNV_OK)
        return 0;
    int n = m->n_labels;
    if (n <= 0)
        return cli_error("%s", err);
    /* Help to the right name: the labels that hold the word, the nearest
     * spelling, or, for a small model, every class. */
    char more[1024] = "";
    size_t used = 0;
    int hits = 0;
    for (int i = 0; i < n; i++)
        if (has_word(m->labels[i], text) && hits++ < 6 && used < sizeof more)
            used += (size_t)snprintf(more + used, sizeof more - used, "%s%d (%s)", hits > 1 ? ", " : "", i,
                                     m->labels[i]);
    if (hits)
        return cli_error("%s; %d class%s contain%s the word: %s%s", err, hits, hits == 1 ? "" : "es",
                         hits == 1 ? "s" : "", more, hits > 6 ? ", ..." : "");
    /* the nearest first name ("flamingo" of "flamingo, pink bird") */
    char(*first)[64] = malloc((size_t)n * sizeof *first);
    const char **names = malloc((size_t)n * sizeof *names);
    const char *near = NULL;
    if (first && names) {
        for (int i = 0; i < n; i++) {
            snprintf(first[i], sizeof first[i], "%.*s", (int)strcspn(m->labels[i], ","), m->labels[i]);
            names[i] = first[i];
        }
        near = cli_nearest(text, names, n);
    }
    int rc;
    if (near) {
        int k = (int)(((const char(*)[64])near) - first);
        rc = cli_error("%s; did you mean %d (%s)?", err, k, m->labels[k]);
    } else if (n <= 20) {
        for (int i = 0; i < n && used < sizeof more; i++)
            used += (size_t)snprintf(more + used, sizeof more - used, "%s%d %s", i ? ", " : "", i, m->labels[i]);
        rc = cli_error("%s; the model's %d classes: %s", err, n, more);
    } else {
        rc = cli_error("%s ('cnnviz info' lists the model's %d classes)", err, n);
    }
    free(first);
    free(names);
    return rc;
}

int cli_layer_lookup(const cli_model *m, const char *cmd, const char *text, int *t)
{
    char err[512];
    if (cnv_model_find_layer(m->model, text, t, err, sizeof err) == CNV_OK)
        return 0;
    /* the nearest of the layers' tensor names and the nodes' names */
    int n_layers = cnv_model_layers(m->model, 0, NULL), n_nodes = cnv_model_node_count(m->model);
    int *layers = malloc(((size_t)(n_layers > 0 ? n_layers : 0) + 1) * sizeof *layers);
    const char **names = malloc(((size_t)(n_layers > 0 ? n_layers : 0) + (size_t)n_nodes + 1) * sizeof *names);
    const char *near = NULL;
    if (layers && names) {
        int n = cnv_model_layers(m->model, n_layers, layers);
        for (int i = 0; i < n; i++)
            names[i] = cnv_model_tensor_name(m->model, layers[i]);
        for (int i = 0; i < n_nodes; i++)
            names[n++] = cnv_model_node_name(m->model, i);
        near = cli_nearest(text, names, n);
    }
    int rc = near ? cli_error("%s: %s; did you mean '%s'?", cmd, err, near) : cli_error("%s: %s", cmd, err);
    free(layers);
    free(names);
    return rc;
}

const char *cli_label(const cli_model *m, int k)
{
    static char buf[32];
    if (k >= 0 && k < m->n_labels)
        return m->labels[k];
    snprintf(buf, sizeof buf, "class %d", k);
    return buf;
}

/* ---------------------------------------------------------------- classes */

void cli_top_classes(const float *p, int n, int k, int *order)
{
    /* partial selection sort: k is small */
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < n; j++)
            if (p[order[j]] > p[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
}

/* ---------------------------------------------------------------- saliency maps */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* How the PNGs show a map: as it is, |map| (signed attributions: a pixel
 * matters either way), or its positive part (occlusion: where covering
 * the image lowers the score; where it raises it is not evidence for the
 * class). */
int cli_show_mode(int method, int is_signed)
{
    return !is_signed ? CLI_SHOW_AS_IS : method == CNV_SALIENCY_OCCLUSION ? CLI_SHOW_POSITIVE : CLI_SHOW_ABS;
}

/* The map as the PNGs show it (cli_show_mode), into out, values above the
 * pct-th percentile (of the finite values; nearest rank) lowered to it.
 * NaN stays NaN. scratch holds n floats. */
void cli_shown_map(const float *map, size_t n, int mode, float pct, float *out, float *scratch)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = mode == CLI_SHOW_ABS ? fabsf(map[i]) : mode == CLI_SHOW_POSITIVE && map[i] < 0.0f ? 0.0f : map[i];
        if (isfinite(out[i]))
            scratch[k++] = out[i];
    }
    if (k > 0 && pct < 100.0f) {
        qsort(scratch, k, sizeof *scratch, cmp_float);
        size_t r = (size_t)((double)pct / 100.0 * (double)(k - 1) + 0.5);
        float cap = scratch[r < k ? r : k - 1];
        for (size_t i = 0; i < n; i++)
            if (out[i] > cap)
                out[i] = cap;
    }
}

/* ---------------------------------------------------------------- images */

int cli_load_input(const cli_model *m, const char *path, int height, int width, float *out)
{
    char err[512];
    cnv_image img = {0};
    if (cnv_image_load(path, &img, err, sizeof err) != CNV_OK)
        return cli_error("%s", err);
    /* Say so when transparency is dropped: the colors under it are used
     * as stored, which may not be what the picture shows. */
    if (img.channels == 4 && m->pp.channels != 4) {
        size_t n = (size_t)img.width * img.height, clear = 0;
        for (size_t i = 0; i < n; i++)
            clear += img.data[i * 4 + 3] < 255;
        if (clear)
            fprintf(stderr, "cnnviz: note: %s: %zu of %zu pixels are transparent; the alpha channel is dropped "
                    "and the colors stored under it are used\n", path, clear, n);
    }
    cnv_preprocess pp = m->pp;
    pp.height = height;
    pp.width = width;
    cnv_status st = cnv_image_to_tensor(&img, &pp, out, (size_t)pp.channels * height * width, err, sizeof err);
    cnv_image_free(&img);
    if (st != CNV_OK)
        return cli_error("%s: %s", path, err);
    return 0;
}

int cli_save_input_png(const cli_model *m, const float *chw, int height, int width, const char *path)
{
    char err[512];
    cnv_image img = {0};
    cnv_status st = cnv_tensor_to_image(chw, &m->pp, height, width, &img, err, sizeof err);
    if (st == CNV_OK)
        st = cnv_image_write_png(&img, path, err, sizeof err);
    cnv_image_free(&img);
    return st == CNV_OK ? 0 : cli_error("%s", err);
}

/* img enlarged k times, each pixel a k x k block (small models' 28-pixel
 * frames are too small to look at). */
cnv_status cli_upscale_image(cnv_image *img, int k, char *err, size_t errlen)
{
    if (k <= 1)
        return CNV_OK;
    cnv_image big = {0};
    cnv_status st = cnv_image_create(img->width * k, img->height * k, img->channels, &big, err, errlen);
    if (st != CNV_OK)
        return st;
    int c = img->channels;
    for (int y = 0; y < big.height; y++)
        for (int x = 0; x < big.width; x++)
            memcpy(big.data + ((size_t)y * big.width + x) * c,
                   img->data + ((size_t)(y / k) * img->width + x / k) * c, (size_t)c);
    cnv_image_free(img);
    *img = big;
    return CNV_OK;
}

/* ------------------------------------------------------------- recipes */

void cli_recipe_init(cli_recipe_opts *o)
{
    memset(o, 0, sizeof *o);
    o->iters = -1;
    o->lr = NAN;
    o->lucid = cnv_lucid_params_default();
}

int cli_recipe_apply(const char *cmd, const cli_recipe_opts *o, const char *cs231n_options, cnv_recipe *recipe,
                     cnv_lucid_params *lucid, int *iters, float *lr)
{
    if (o->recipe) {
        int r = cnv_recipe_parse(o->recipe);
        if (r < 0)
            return cli_error("%s: --recipe is lucid or cs231n, not '%s'", cmd, o->recipe), 2;
        *recipe = (cnv_recipe)r;
    }
    if (*recipe == CNV_RECIPE_CS231N) {
        const cnv_lucid_params d = cnv_lucid_params_default();
        if (o->param || o->scale || o->lucid.decorrelate != d.decorrelate || o->lucid.sigmoid != d.sigmoid ||
            o->lucid.shift != d.shift || o->lucid.rotate != d.rotate || o->lucid.blur != d.blur)
            return cli_error("%s: --param, --scale, --no-decorrelate, --no-sigmoid, --shift, --rotate and "
                             "--blur belong to --recipe lucid",
                             cmd),
                   2;
        if (o->iters >= 0)
            *iters = o->iters;
        if (!isnan(o->lr))
            *lr = o->lr;
        return 0;
    }
    if (cs231n_options)
        return cli_error("%s: %s belong to --recipe cs231n", cmd, cs231n_options), 2;
    *lucid = o->lucid;
    if (o->param && strcmp(o->param, "spectral") != 0 && strcmp(o->param, "pixel") != 0)
        return cli_error("%s: --param is spectral or pixel, not '%s'", cmd, o->param), 2;
    if (o->param)
        lucid->spectral = strcmp(o->param, "spectral") == 0;
    if (o->scale) {
        char *end;
        double a = strtod(o->scale, &end), b = *end == ',' ? strtod(end + 1, &end) : NAN;
        if (*end || !(a > 0.0 && a <= b && b <= 100.0))
            return cli_error("%s: --scale takes A,B with 0 < A <= B <= 100, not '%s'", cmd, o->scale), 2;
        lucid->scale_min = (float)a;
        lucid->scale_max = (float)b;
    }
    if (o->iters >= 0)
        lucid->iters = o->iters;
    if (!isnan(o->lr)) {
        if (!(o->lr > 0.0f))
            return cli_error("%s: --lr must be > 0 with --recipe lucid", cmd), 2;
        lucid->lr = o->lr;
    }
    return 0;
}

char *cli_item_path(const char *out, int k)
{
    const char *dot = strrchr(out, '.');
    const char *slash = strrchr(out, '/');
    if (!dot || (slash && dot < slash))
        dot = out + strlen(out);
    size_t len = strlen(out) + 16;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%.*s_%d%s", (int)(dot - out), out, k, dot);
    return p;
}

int cli_parse_unit(const char *s, void *dst)
{
    int *yx = dst;
    char *end;
    if (yx[0] >= 0)
        return 1;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (errno || end == s || *end != ',' || a < 0 || a > 1 << 20)
        return 1;
    const char *t = end + 1;
    long b = strtol(t, &end, 10);
    if (errno || end == t || *end || b < 0 || b > 1 << 20)
        return 1;
    yx[0] = (int)a;
    yx[1] = (int)b;
    return 0;
}
