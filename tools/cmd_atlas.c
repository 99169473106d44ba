/* cnnviz atlas: a model's layers, channels, classes and images as a static
 * web site (HTML + CSS + PNG). The work is a fixed list of independent
 * items, each named by a hash of what made it, so runs resume, shard
 * across processes or machines, and merge into the same bytes as one run.
 * This file: the options, the choice of layers, classes and images, the
 * site's manifest, and the run; atlas_items.c renders the items and
 * atlas_pages.c builds the pages. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "atlas.h"

static const char usage[] =
    "usage: cnnviz atlas [-m MODEL] -o SITE/ [--images DIR] [--layers LIST|all]\n"
    "                    [--layer-sample N] [--per-layer K|all] [--classes LIST|all|none]\n"
    "                    [--iters N] [--seed S] [--top K] [--diversity K] [--no-negatives]\n"
    "                    [--saliency A,B] [--shard I/N] [--resume] [--merge] [--no-time]\n"
    "                    [--json] [--quiet]\n"
    "       cnnviz atlas --merge -o SITE/\n"
    "A browsable atlas of a model as a static site in SITE/: an overview of\n"
    "the layers (op, shape, parameters, FLOPs); a page per layer with a grid of\n"
    "its channels' pictures (the Lucid recipe of 'cnnviz neuron') and diversity\n"
    "batches; a page per channel with its picture, its negative and the crops\n"
    "of the images of DIR that excite it most; the class models, each with the\n"
    "images predicted as that class and their saliency maps; a page per image.\n"
    "Each picture or image is an item, written atomically to SITE/items/ under\n"
    "a name hashed from the model file's bytes, the item, the seed and the\n"
    "recipe. A plain run renders every item, then builds the pages (--merge).\n"
    "\n"
    "options:\n"
    "  -o SITE/           the site's directory (made if absent)\n"
    "  --images DIR       the images (PNG, JPEG, GIF, BMP, PPM/PGM, TGA files of\n"
    "                     DIR, by name) to classify, explain and crop\n"
    "  --layers A,B|all   layers to show (default all: every activation, and\n"
    "                     every feature map no activation reads)\n"
    "  --layer-sample N   N of those layers, evenly spread from the first to the\n"
    "                     last (for large models)\n"
    "  --per-layer K|all  the first K channels of each layer (default all)\n"
    "  --classes A,B|all|none  class models to make, indices or labels\n"
    "                     (default all)\n"
    "  --iters N          Lucid steps per picture (default 128, a quarter of\n"
    "                     'cnnviz neuron's 512, for speed)\n"
    "  --seed S           random seed (default 0)\n"
    "  --top K            image crops per channel (default 8; 0: none)\n"
    "  --diversity K      diversity batches (4 pictures) for the first K\n"
    "                     channels of each layer (default 2; 0: none)\n"
    "  --no-negatives     no negative picture per channel\n"
    "  --saliency A,B     the two saliency methods per image (default gradcam,ig)\n"
    "  --shard I/N        render only the items whose index modulo N is I, and\n"
    "                     no pages (then --merge)\n"
    "  --resume           skip the items whose file exists\n"
    "  --merge            render nothing: build the pages from the item files\n"
    "                     that exist, marking the others missing; alone (with\n"
    "                     -o), it takes the options from SITE/atlas.txt\n"
    "  --no-time          no date on the pages ($SOURCE_DATE_EPOCH, when set,\n"
    "                     gives the date otherwise)\n"
    "  --threads T        threads per picture (default 1, so that every machine\n"
    "                     makes the same bytes: run shards in parallel instead)\n"
    "  --json             a JSON summary on stdout\n"
    "  --quiet            no progress\n"
    "SITE/atlas.txt records the options that decide the content; a shard,\n"
    "--resume or --merge with other ones is refused (exit 2), a plain run\n"
    "replaces it.\n";

static int parse_shard(const char *s, void *dst)
{
    int *v = dst, i, n, used = 0;
    if (sscanf(s, "%d/%d%n", &i, &n, &used) != 2 || s[used] || n < 1 || i < 0 || i >= n)
        return 1;
    v[0] = i;
    v[1] = n;
    return 0;
}

/* Layers as `--layer-sample N` keeps them: N spread evenly over the
 * chosen ones, the first and the last included. */
static void sample_layers(int *ts, int *n, int want)
{
    if (want <= 0 || want >= *n)
        return;
    int total = *n;
    for (int i = 0; i < want; i++)
        ts[i] = ts[want == 1 ? 0 : (int)((long long)i * (total - 1) / (want - 1))];
    *n = want;
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
    sample_layers(ts, &n, a->layer_sample);
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
        /* positions: H x W of a 4-D layer; 1 x L of a 3-D one; 1 x 1 */
        int64_t hw = 1;
        for (int d = 2; d < sh->ndim; d++)
            hw *= sh->dims[d];
        l->h = sh->ndim >= 4 ? (int)sh->dims[2] : 1;
        l->w = sh->ndim >= 3 ? (int)(hw / l->h) : 1;
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


static int has_image_extension(const char *name)
{
    static const char *const ext[] = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ppm", ".pgm", ".pnm", ".tga"};
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (!strcasecmp(dot, ext[i]))
            return 1;
    return 0;
}

static int by_name(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The image files of DIR (not its subdirectories), sorted by name. */
static int list_images(atlas *a)
{
    DIR *d = opendir(a->images_dir);
    if (!d)
        return cli_error("atlas: cannot read the directory %s: %s", a->images_dir, strerror(errno));
    int cap = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) && !rc) {
        if (e->d_name[0] == '.' || !has_image_extension(e->d_name))
            continue;
        if (a->n_images == cap) {
            if (cap > INT_MAX / 2 - 1) {
                rc = cli_error("atlas: too many images in %s", a->images_dir);
                break;
            }
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(a->image_names, (size_t)cap * sizeof *grown);
            if (!grown) {
                rc = cli_error("out of memory");
                break;
            }
            a->image_names = grown;
        }
        if (!(a->image_names[a->n_images] = strdup(e->d_name)))
            rc = cli_error("out of memory");
        else
            a->n_images++;
    }
    closedir(d);
    if (!rc && a->n_images == 0)
        rc = cli_error("atlas: no image (.png, .jpg, ...) in %s", a->images_dir);
    if (!rc)
        qsort(a->image_names, (size_t)a->n_images, sizeof *a->image_names, by_name);
    return rc;
}

static int parse_methods(atlas *a)
{
    char copy[128];
    snprintf(copy, sizeof copy, "%s", a->methods_text);
    char *comma = strchr(copy, ',');
    if (!comma || strchr(comma + 1, ','))
        return cli_usage_error("atlas: --saliency takes two methods, A,B (see cnnviz saliency --help)");
    *comma = '\0';
    const char *names[2] = {copy, comma + 1};
    for (int i = 0; i < ATLAS_METHODS; i++) {
        int m = cnv_saliency_method_parse(names[i]);
        if (m < 0)
            return cli_usage_error("atlas: unknown saliency method '%s' (see cnnviz saliency --help)", names[i]);
        unsigned flags = cnv_saliency_method_flags((cnv_saliency_method)m);
        if (!(flags & CNV_SAL_TARGET))
            return cli_usage_error("atlas: saliency method '%s' cannot explain a class", names[i]);
        a->methods[i] = (cnv_saliency_method)m;
    }
    return 0;
}

/* The command line the pages show: the options that decide the content,
 * in a fixed order, so that shards, resumed runs and a merge agree. The
 * model and the image folder by their last names (paths differ between
 * machines; the bytes' hashes name the items); a->options is the same
 * without those names, for the site's identity. */
static int make_command(atlas *a, const cli_model_opts *mo)
{
    char opts[4096], dir[512] = "";
    size_t u = 0;
    const char *names[] = {"--mean", "--std", "--labels", "--size", "--preset", "--channel-order"};
    const char *vals[] = {mo->mean, mo->std, mo->labels, mo->size, mo->preset, mo->order};
    for (int i = 0; i < 6; i++)
        if (vals[i] && u < sizeof opts)
            u += (size_t)snprintf(opts + u, sizeof opts - u, " %s %s", names[i], vals[i]);
    if (a->images_dir && u < sizeof opts) {
        const char *slash = strrchr(a->images_dir, '/');
        snprintf(dir, sizeof dir, " --images %s", slash && slash[1] ? slash + 1 : a->images_dir);
        u += (size_t)snprintf(opts + u, sizeof opts - u, " --top %d --saliency %s", a->top, a->methods_text);
    }
    if (a->layer_sample && u < sizeof opts)
        u += (size_t)snprintf(opts + u, sizeof opts - u, " --layer-sample %d", a->layer_sample);
    if (u < sizeof opts)
        snprintf(opts + u, sizeof opts - u,
                 " --layers %s --per-layer %s --classes %s --iters %d --seed %llu --diversity %d%s", a->layers_text,
                 a->per_text, a->classes_text, a->iters, (unsigned long long)a->seed, a->diverse,
                 a->negatives ? "" : " --no-negatives");
    size_t n = strlen(atlas_model_name(a)) + strlen(dir) + strlen(opts) + sizeof "cnnviz atlas -m ";
    a->command = malloc(n);
    a->options = strdup(opts);
    if (!a->command || !a->options)
        return cli_error("out of memory");
    snprintf(a->command, n, "cnnviz atlas -m %s%s%s", atlas_model_name(a), dir, opts);
    return 0;
}

/* ------------------------------------------------------------- the manifest */

/* SITE/atlas.txt: what decides the site's content (the model's and the
 * images' bytes are in the items' names; the identity line covers the
 * options, the model's bytes and the images' names), and the paths and
 * options a bare `--merge -o SITE` reuses. */
#define MANIFEST "atlas.txt"
#define MANIFEST_MAGIC "cnnviz-atlas-site 1"

static uint64_t identity(const atlas *a)
{
    uint64_t h = atlas_fnv(ATLAS_FNV_OFFSET, &a->model_hash, sizeof a->model_hash);
    h = atlas_fnv_str(h, a->options);
    for (int i = 0; i < a->n_images; i++)
        h = atlas_fnv_str(h, a->image_names[i]);
    return h;
}

/* The options of argv that decide the content, with -m, --images and
 * --labels as absolute paths. */
static const char *const run_only[] = {"--shard", "--threads", "-o", "--output", NULL};
static const char *const run_flags[] = {"--resume", "--merge", "--no-time", "--json", "--quiet", NULL};

static int in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (!strcmp(*list, s))
            return 1;
    return 0;
}

static int write_manifest(const atlas *a, int argc, char **argv)
{
    char *path = atlas_site_path(a, MANIFEST), *tmp = path ? atlas_site_path(a, MANIFEST ".tmp") : NULL;
    FILE *f = tmp ? fopen(tmp, "w") : NULL;
    int rc = 0;
    if (!f) {
        rc = tmp ? cli_error("atlas: cannot write %s: %s", tmp, strerror(errno)) : 1;
        goto done;
    }
    fprintf(f, MANIFEST_MAGIC "\nidentity %016llx\n", (unsigned long long)identity(a));
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (in_list(run_flags, arg))
            continue;
        if (in_list(run_only, arg)) {
            i++;
            continue;
        }
        int is_path = (!strcmp(arg, "-m") || !strcmp(arg, "--model") || !strcmp(arg, "--images") ||
                       !strcmp(arg, "--labels")) && i + 1 < argc;
        fprintf(f, "arg %s\n", arg);
        if (is_path) {
            char *abs = realpath(argv[++i], NULL);
            fprintf(f, "arg %s\n", abs ? abs : argv[i]);
            free(abs);
        }
    }
    if (ferror(f) | (fclose(f) != 0) || rename(tmp, path) != 0)
        rc = cli_error("atlas: cannot write %s: %s", path, strerror(errno));
done:
    if (rc && tmp)
        remove(tmp);
    free(path);
    free(tmp);
    return rc;
}

/* The manifest's identity (0: none), or its options as an argv (owned by
 * *args, the strings after argv[0] one per line in *text). */
static int read_manifest(const char *site, uint64_t *ident, char ***args, int *n_args, char **text)
{
    size_t n = strlen(site) + sizeof "/" MANIFEST;
    char *path = malloc(n);
    if (!path)
        return cli_error("out of memory");
    snprintf(path, n, "%s/" MANIFEST, site);
    *ident = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        free(path);
        return 0;
    }
    char line[8192];
    int bad = !fgets(line, sizeof line, f) || strcmp(line, MANIFEST_MAGIC "\n");
    unsigned long long id = 0;
    bad = bad || !fgets(line, sizeof line, f) || sscanf(line, "identity %llx", &id) != 1;
    if (args) {
        *args = NULL;
        *n_args = 0;
        *text = NULL;
        size_t used = 0, cap = 0;
        int lines = 0;
        while (!bad && fgets(line, sizeof line, f)) {
            size_t k = strlen(line);
            bad = k < 5 || strncmp(line, "arg ", 4) || line[k - 1] != '\n' || lines >= 256;
            if (bad)
                break;
            if (used + k > cap) {
                cap = (used + k) * 2;
                char *grown = realloc(*text, cap);
                if (!grown) {
                    bad = 1;
                    break;
                }
                *text = grown;
            }
            memcpy(*text + used, line + 4, k - 4);
            (*text)[used + k - 5] = '\0';
            used += k - 4;
            lines++;
        }
        if (!bad && !(*args = calloc((size_t)lines + 2, sizeof **args)))
            bad = 1;
        for (int i = 0; !bad && i < lines; i++)
            (*args)[(*n_args)++] = i ? (*args)[i - 1] + strlen((*args)[i - 1]) + 1 : *text;
    }
    fclose(f);
    int rc = bad ? cli_error("atlas: %s is not an atlas manifest", path) : 0;
    free(path);
    if (!rc)
        *ident = id;
    return rc;
}

/* ------------------------------------------------------------- the command */

static void atlas_free(atlas *a)
{
    free(a->layers);
    free(a->classes);
    free(a->items);
    free(a->shapes);
    free(a->flops);
    free(a->command);
    free(a->options);
    free(a->seconds);
    for (int i = 0; i < a->n_images; i++)
        free(a->image_names[i]);
    free(a->image_names);
}

static int run(int argc, char **argv, int from_manifest);

/* `--merge -o SITE` alone: the same with the manifest's options. */
static int merge_from_manifest(int argc, char **argv, const char *site)
{
    uint64_t ident;
    char **args = NULL, *text = NULL;
    int n = 0;
    int rc = read_manifest(site, &ident, &args, &n, &text);
    if (!rc && !ident)
        rc = cli_usage_error("atlas: %s/" MANIFEST " is absent: give --merge the options the shards had", site);
    char **all = rc ? NULL : calloc((size_t)argc + n + 1, sizeof *all);
    if (!rc && !all)
        rc = cli_error("out of memory");
    if (!rc) {
        all[0] = argv[0];
        memcpy(all + 1, args, (size_t)n * sizeof *all);
        memcpy(all + 1 + n, argv + 1, (size_t)(argc - 1) * sizeof *all);
        rc = run(argc + n, all, 1);
    }
    free(all);
    free(args);
    free(text);
    return rc;
}

/* Whether argv has only the options of a bare merge. */
static const char *bare_merge_site(int argc, char **argv)
{
    const char *site = NULL;
    int merge = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--merge"))
            merge = 1;
        else if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc)
            site = argv[++i];
        else if (!in_list(run_flags, argv[i]))
            return NULL;
    }
    return merge ? site : NULL;
}

static int run(int argc, char **argv, int from_manifest)
{
    const char *bare = from_manifest ? NULL : bare_merge_site(argc, argv);
    if (bare)
        return merge_from_manifest(argc, argv, bare);
    cli_model_opts mo = {0};
    atlas a = {0};
    a.layers_text = "all";
    a.per_text = "all";
    a.classes_text = "all";
    a.methods_text = "gradcam,ig";
    a.iters = ATLAS_ITERS;
    a.per_layer = -1;
    a.negatives = 1;
    a.diverse = 2;
    a.top = 8;
    int shard[2] = {0, 1}, resume = 0, merge_only = 0, no_time = 0, json = 0, quiet = 0, no_negatives = 0;
    const cli_opt opts[] = {
        CLI_OPT_STRING("--output", "-o", &a.site),
        CLI_OPT_STRING("--images", NULL, &a.images_dir),
        CLI_OPT_STRING("--layers", NULL, &a.layers_text),
        CLI_OPT_INT("--layer-sample", &a.layer_sample, 1, 100000),
        CLI_OPT_STRING("--per-layer", NULL, &a.per_text),
        CLI_OPT_STRING("--classes", NULL, &a.classes_text),
        CLI_OPT_INT("--iters", &a.iters, 1, INT_MAX),
        CLI_OPT_SEED("--seed", &a.seed),
        CLI_OPT_INT("--top", &a.top, 0, ATLAS_MAX_TOP),
        CLI_OPT_INT("--diversity", &a.diverse, 0, 100000),
        CLI_OPT_SET("--no-negatives", &no_negatives),
        CLI_OPT_STRING("--saliency", NULL, &a.methods_text),
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
    a.negatives = !no_negatives;
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
    if (a.images_dir && (rc = parse_methods(&a)))
        return rc;
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
        rc = atlas_hash_file(a.cm.path, &a.model_hash);
    if (!rc) {
        const cnv_shape *y = &a.shapes[a.cm.output];
        a.n_scores = y->ndim >= 2 ? (int)y->dims[1] : y->ndim == 1 ? (int)y->dims[0] : 0;
        if (a.n_scores < 1)
            rc = cli_error("atlas: the model's output %s has no classes", cnv_model_tensor_name(m, a.cm.output));
    }
    if (!rc)
        rc = choose_layers(&a);
    if (!rc)
        rc = choose_classes(&a);
    if (!rc && a.images_dir)
        rc = list_images(&a);
    if (!rc) {
        /* what decides a picture besides the model, the item and the seed;
         * %a prints floats exactly */
        cnv_lucid_params lp = cnv_lucid_params_default();
        const cnv_preprocess *pp = &a.cm.pp;
        int u = snprintf(a.recipe, sizeof a.recipe,
                         "lucid iters=%d lr=%a spectral=%d decorrelate=%d sigmoid=%d init=%a shift=%a scale=%a,%a "
                         "rotate=%a blur=%a pre_relu=1 size=%dx%dx%d mean=%a,%a,%a std=%a,%a,%a order=%d",
                         a.iters, (double)lp.lr, lp.spectral, lp.decorrelate, lp.sigmoid, (double)lp.init_std,
                         (double)lp.shift, (double)lp.scale_min, (double)lp.scale_max, (double)lp.rotate,
                         (double)lp.blur, a.cm.channels, a.cm.height, a.cm.width, (double)pp->mean[0],
                         (double)pp->mean[1], (double)pp->mean[2], (double)pp->std[0], (double)pp->std[1],
                         (double)pp->std[2], (int)pp->order);
        /* an image's record lists the shown channels of each layer */
        uint64_t lh = ATLAS_FNV_OFFSET;
        for (int l = 0; l < a.n_layers; l++) {
            char buf[32];
            snprintf(buf, sizeof buf, "%d", a.layers[l].shown);
            lh = atlas_fnv_str(atlas_fnv_str(lh, cnv_model_tensor_name(m, a.layers[l].t)), buf);
        }
        snprintf(a.image_recipe, sizeof a.image_recipe, "%s methods=%s,%s shown=clip%a seed=%llu layers=%016llx",
                 u > 0 ? strstr(a.recipe, "size=") : "", cnv_saliency_method_name(a.methods[0]),
                 cnv_saliency_method_name(a.methods[1]), (double)CLI_SALIENCY_CLIP, (unsigned long long)a.seed,
                 (unsigned long long)lh);
    }
    if (!rc)
        rc = atlas_list_items(&a);
    if (!rc)
        rc = make_command(&a, &mo);
    a.timed = !no_time;
    if (!rc && !no_time) {
        const char *sde = getenv("SOURCE_DATE_EPOCH");
        time_t now = sde && *sde ? (time_t)strtoll(sde, NULL, 10) : time(NULL);
        struct tm tm;
        if (gmtime_r(&now, &tm))
            strftime(a.date, sizeof a.date, "%Y-%m-%d %H:%M:%S UTC", &tm);
    }
    if (!rc)
        rc = atlas_make_dir(a.site);
    /* the manifest: a plain run writes it; the others check it */
    if (!rc) {
        uint64_t ident;
        rc = read_manifest(a.site, &ident, NULL, NULL, NULL);
        int plain = !merge_only && shard[1] == 1 && !resume;
        if (!rc && ident && ident != identity(&a) && !plain)
            rc = cli_usage_error("atlas: %s was made with other options, another model or other images "
                                 "(%s/" MANIFEST "); give the same ones, or another -o",
                                 a.site, a.site);
        else if (!rc && (!ident || (plain && ident != identity(&a))) && !from_manifest)
            rc = write_manifest(&a, argc, argv);
    }

    atlas_stats rs = {0};
    int missing = -1;
    double t0 = cli_now();
    if (!rc && !merge_only)
        rc = atlas_render(&a, shard[0], shard[1], resume, quiet, mo.threads == NULL, &rs);
    if (!rc && shard[1] == 1)
        rc = atlas_merge(&a, &missing);
    double secs = cli_now() - t0;
    if (!rc && json) {
        printf("{\"site\": ");
        cli_json_string(stdout, a.site);
        printf(", \"items\": %d, \"layers\": %d, \"channels\": %d, \"classes\": %d, \"images\": %d, "
               "\"shard\": [%d, %d], \"shard_items\": %d, \"rendered\": %d, \"skipped\": %d, \"missing\": ",
               a.n_items, a.n_layers, a.n_channels, a.n_classes, a.n_images, shard[0], shard[1],
               merge_only ? 0 : rs.items, rs.rendered, rs.skipped);
        if (missing >= 0)
            printf("%d", missing);
        else
            printf("null");
        if (missing >= 0)
            printf(", \"unreadable\": %d", a.unreadable);
        printf(", \"iters\": %d, \"seed\": %llu, \"render_seconds\": %.3f, \"seconds\": %.3f}\n", a.iters,
               (unsigned long long)a.seed, rs.seconds, secs);
    } else if (!rc && !quiet) {
        fprintf(stderr, "atlas: %d items; rendered %d, skipped %d in %.1f s", a.n_items, rs.rendered, rs.skipped,
                rs.seconds);
        if (missing >= 0)
            fprintf(stderr, "; pages in %s/index.html (%d missing)", a.site, missing);
        fputc('\n', stderr);
    }
    if (!rc && a.unreadable && !quiet) {
        fprintf(stderr, "atlas: %d of the %d images could not be read or scored (their pages say why)\n",
                a.unreadable, a.n_images);
    }
    atlas_free(&a);
    cli_model_close(&a.cm);
    free(site);
    return rc;
}

int cmd_atlas(int argc, char **argv)
{
    return run(argc, argv, 0);
}
