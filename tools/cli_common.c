/* Helpers shared by the cnnviz subcommands: the command-line parser, model
 * options and metadata, class names, parsing, JSON strings. */
#include "cli_common.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const char *const cli_model_help =
    "model options:\n"
    "  -m, --model FILE   ONNX model (default: weights/fashion_mnist.onnx)\n"
    "  --preset imagenet  ImageNet normalization and 224x224 input\n"
    "  --mean a,b,c       per-channel mean, after scaling pixels to [0,1]\n"
    "  --std a,b,c        per-channel standard deviation\n"
    "  --labels FILE      class names, one per line ('nXXXXXXXX name' accepted)\n"
    "  --size HxW         input size (default: the model's cnnviz.image_size)\n"
    "  --threads T        threads to run on (default: $CNNVIZ_NUM_THREADS or all cores)\n";

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

/* a,b,c (1 or 3 values; one value is repeated) */
static int parse_floats3(const char *s, float out[3])
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

void cli_softmax(const float *z, float *p, int n)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (z[i] > mx)
            mx = z[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        p[i] = expf(z[i] - mx);
        sum += p[i];
    }
    for (int i = 0; i < n; i++)
        p[i] = (float)(p[i] / sum);
}

/* ------------------------------------------------------------- options */

/* The value of o from v; nonzero if v is not one. */
static int set_value(const cli_opt *o, const char *v)
{
    switch (o->kind) {
    case CLI_KIND_STRING:
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
        CLI_OPT_STRING("--threads", NULL, &mo->threads),
        {0},
    };
    const char *cmd = spec->cmd;
    int n = 0;
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
        const char *v = argv[++i];
        if (set_value(o, v)) {
            cli_error("%s: bad value '%s' for %s", cmd, v, a);
            return 2;
        }
    }
    if (n_args)
        *n_args = n;
    return CLI_RUN;
}

/* --------------------------------------------------------------- labels */

static void free_labels(cli_model *m)
{
    for (int i = 0; i < m->n_labels; i++)
        free(m->labels[i]);
    free(m->labels);
    m->labels = NULL;
    m->n_labels = 0;
}

/* Splits text into lines; a leading WordNet id ("n01440764 ") is dropped. */
static int set_labels(cli_model *m, const char *text)
{
    free_labels(m);
    int cap = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *line = p;
        p = e ? e + 1 : p + len;
        if (len && line[len - 1] == '\r')
            len--;
        if (len > 10 && line[0] == 'n' && line[9] == ' ') {
            int id = 1;
            for (int k = 1; k < 9; k++)
                id &= isdigit((unsigned char)line[k]) != 0;
            if (id) {
                line += 10;
                len -= 10;
            }
        }
        if (!e && len == 0)
            break;
        if (m->n_labels == cap) {
            cap = cap ? cap * 2 : 64;
            char **nl = realloc(m->labels, (size_t)cap * sizeof *nl);
            if (!nl)
                return cli_error("out of memory reading labels");
            m->labels = nl;
        }
        m->labels[m->n_labels] = strndup(line, len);
        if (!m->labels[m->n_labels])
            return cli_error("out of memory reading labels");
        m->n_labels++;
    }
    return 0;
}

static int read_labels_file(cli_model *m, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cli_error("cannot open labels file '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    size_t k;
    while (buf && (k = fread(buf + len, 1, cap - len, f)) > 0) {
        len += k;
        if (len == cap) {
            if (cap >= ((size_t)64 << 20)) {
                free(buf);
                fclose(f);
                return cli_error("labels file '%s' is larger than 64 MB", path);
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return cli_error("out of memory reading '%s'", path);
    buf[len] = '\0';
    int rc = set_labels(m, buf);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- model */

static char *find_default_model(void)
{
    static const char *const rel[] = {"../weights/fashion_mnist.onnx", "../share/cnnviz/fashion_mnist.onnx"};
    const char *env = getenv("CNNVIZ_MODEL");
    if (env && *env)
        return strdup(env);
    if (access("weights/fashion_mnist.onnx", R_OK) == 0)
        return strdup("weights/fashion_mnist.onnx");
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            slash[1] = '\0';
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
                char path[8192];
                snprintf(path, sizeof path, "%s%s", exe, rel[i]);
                if (access(path, R_OK) == 0)
                    return strdup(path);
            }
        }
    }
    return strdup("weights/fashion_mnist.onnx"); /* so the error names it */
}

int cli_model_open(const cli_model_opts *o, cli_model *out)
{
    memset(out, 0, sizeof *out);
    if (o->threads) { /* else the library's default: $CNNVIZ_NUM_THREADS or all cores */
        int n;
        if (parse_int(o->threads, &n) || n < 1)
            return cli_error("--threads '%s': expected a positive integer", o->threads);
        cnv_set_threads(n);
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
    cnv_shape in;
    if (cnv_model_input_count(m) != 1 || cnv_model_input_shape(m, 0, &in) != CNV_OK || in.ndim != 4 ||
        (in.dims[1] != 1 && in.dims[1] != 3)) {
        cli_error("model '%s': expected one image input of shape N x C x H x W with C = 1 or 3", out->path);
        cli_model_close(out);
        return 1;
    }
    if (cnv_model_output_count(m) < 1) {
        cli_error("model '%s' declares no output", out->path);
        cli_model_close(out);
        return 1;
    }
    out->output = cnv_model_score_tensor(m); /* raw scores, even after a final Softmax */
    out->channels = (int)in.dims[1];
    out->height = in.dims[2] > 0 ? (int)in.dims[2] : 224;
    out->width = in.dims[3] > 0 ? (int)in.dims[3] : 224;
    for (int c = 0; c < 3; c++) {
        out->mean[c] = 0.0f;
        out->std[c] = 1.0f;
    }

    /* The model's metadata, then the preset, then explicit options. */
    const char *v;
    const char *bad = NULL;
    if ((v = cnv_model_get_meta(m, "cnnviz.mean")) && parse_floats3(v, out->mean))
        bad = "cnnviz.mean";
    if ((v = cnv_model_get_meta(m, "cnnviz.std")) && parse_floats3(v, out->std))
        bad = "cnnviz.std";
    if ((v = cnv_model_get_meta(m, "cnnviz.image_size")) && parse_size(v, &out->height, &out->width))
        bad = "cnnviz.image_size";
    if ((v = cnv_model_get_meta(m, "cnnviz.color")) && strcmp(v, out->channels == 3 ? "rgb" : "gray"))
        bad = "cnnviz.color";
    if (bad) {
        cli_error("model '%s': metadata %s is not valid for this model", out->path, bad);
        cli_model_close(out);
        return 1;
    }
    if ((v = cnv_model_get_meta(m, "cnnviz.labels")) && set_labels(out, v)) {
        cli_model_close(out);
        return 1;
    }
    if (o->preset) {
        if (strcmp(o->preset, "imagenet")) {
            cli_model_close(out);
            return cli_error("unknown preset '%s' (known: imagenet)", o->preset);
        }
        const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
        memcpy(out->mean, mean, sizeof mean);
        memcpy(out->std, std, sizeof std);
        out->height = out->width = 224;
    }
    int rc = 0;
    if (o->mean && parse_floats3(o->mean, out->mean))
        rc = cli_error("--mean '%s': expected one or three numbers separated by commas", o->mean);
    if (!rc && o->std && parse_floats3(o->std, out->std))
        rc = cli_error("--std '%s': expected one or three numbers separated by commas", o->std);
    if (!rc && o->size && parse_size(o->size, &out->height, &out->width))
        rc = cli_error("--size '%s': expected HxW, e.g. 224x224", o->size);
    if (!rc && o->labels)
        rc = read_labels_file(out, o->labels);
    for (int c = 0; !rc && c < 3; c++)
        if (!(out->std[c] > 0.0f))
            rc = cli_error("the standard deviation must be positive");
    if (rc)
        cli_model_close(out);
    return rc;
}

void cli_model_close(cli_model *m)
{
    if (!m)
        return;
    cnv_model_free(m->model);
    free(m->path);
    free_labels(m);
    memset(m, 0, sizeof *m);
}

int cli_class_lookup(const cli_model *m, const char *text, int *cls)
{
    int k;
    int n_classes = m->n_labels;
    if (parse_int(text, &k) == 0) {
        if (k < 0 || (n_classes && k >= n_classes))
            return cli_error("class %d is out of range (the model has %d classes)", k, n_classes);
        *cls = k;
        return 0;
    }
    for (int i = 0; i < m->n_labels; i++) {
        const char *l = m->labels[i];
        size_t first = strcspn(l, ",");
        if (!strcasecmp(l, text) || (strlen(text) == first && !strncasecmp(l, text, first))) {
            *cls = i;
            return 0;
        }
    }
    return cli_error("no class named '%s'%s", text, m->n_labels ? "" : " (the model has no labels; give a number)");
}

const char *cli_label(const cli_model *m, int k)
{
    static char buf[32];
    if (k >= 0 && k < m->n_labels)
        return m->labels[k];
    snprintf(buf, sizeof buf, "class %d", k);
    return buf;
}

/* ---------------------------------------------------------------- images */

int cli_load_input(const cli_model *m, const char *path, int height, int width, float *out)
{
    char err[512];
    cnv_image img = {0};
    if (cnv_image_load(path, &img, err, sizeof err) != CNV_OK)
        return cli_error("%s", err);
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, m->channels, height, width);
    memcpy(pp.mean, m->mean, sizeof pp.mean);
    memcpy(pp.std, m->std, sizeof pp.std);
    cnv_status st = cnv_image_to_tensor(&img, &pp, out, err, sizeof err);
    cnv_image_free(&img);
    if (st != CNV_OK)
        return cli_error("%s: %s", path, err);
    return 0;
}

int cli_save_input_png(const cli_model *m, const float *chw, int height, int width, const char *path)
{
    char err[512];
    cnv_image img = {0};
    cnv_status st = cnv_tensor_to_image(chw, m->channels, height, width, m->mean, m->std, &img, err, sizeof err);
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
