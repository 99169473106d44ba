/* Helpers shared by the cnnviz subcommands: the table-driven option parser,
 * the common model options, the metadata convention (mean, std, color,
 * size, labels), class lookup, image input and output. Each prints its own
 * error and returns 1 (cli_parse: 2, the usage-error exit code). */
#ifndef CNV_CLI_COMMON_H
#define CNV_CLI_COMMON_H

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"

/* The options every model-using subcommand accepts. */
typedef struct cli_model_opts {
    const char *path;   /* -m/--model FILE (default: the Fashion-MNIST model) */
    const char *mean;   /* --mean a,b,c */
    const char *std;    /* --std a,b,c */
    const char *labels; /* --labels FILE */
    const char *size;   /* --size HxW */
    const char *preset; /* --preset imagenet, inception, caffe */
    const char *order;  /* --channel-order rgb|bgr */
    const char *threads; /* --threads T */
    const char *max_memory; /* --max-memory SIZE */
} cli_model_opts;

/* Help text for the options above, for each subcommand's --help. */
extern const char *const cli_model_help;

/* One option of a subcommand, for cli_parse. Write the rows with the
 * CLI_OPT_* macros below: they fill only the fields a kind uses, and a
 * destination of the wrong type is a compile-time warning. */
typedef enum cli_opt_kind {
    CLI_KIND_SET,    /* int: set to 1 */
    CLI_KIND_CLEAR,  /* int: set to 0 (--no-clamp and the like) */
    CLI_KIND_STRING, /* const char *: the value, borrowed from argv */
    CLI_KIND_OUTPUT, /* a STRING naming a file to write: checked at once
                        (cnv_check_output), before any computation */
    CLI_KIND_INT,    /* int in [min, max] */
    CLI_KIND_FLOAT,  /* float in [min, max]; open excludes either end */
    CLI_KIND_SEED,   /* uint64_t, decimal, not negative */
    CLI_KIND_CUSTOM, /* parse(value, dst) returns nonzero if the value is bad;
                        may be given more than once (each value is parsed) */
} cli_opt_kind;

enum { CLI_OPEN_MIN = 1, CLI_OPEN_MAX = 2 };

typedef struct cli_opt {
    const char *name, *alias; /* "--output", "-o" */
    cli_opt_kind kind;
    void *dst;
    double min, max;
    int open; /* CLI_OPEN_MIN | CLI_OPEN_MAX */
    int (*parse)(const char *value, void *dst);
} cli_opt;

#define CLI_TYPED(type, p) ((void *)(1 ? (p) : (type *)0))
#define CLI_OPT_SET(n, p) {.name = (n), .kind = CLI_KIND_SET, .dst = CLI_TYPED(int, p)}
#define CLI_OPT_CLEAR(n, p) {.name = (n), .kind = CLI_KIND_CLEAR, .dst = CLI_TYPED(int, p)}
#define CLI_OPT_STRING(n, a, p) \
    {.name = (n), .alias = (a), .kind = CLI_KIND_STRING, .dst = CLI_TYPED(const char *, p)}
#define CLI_OPT_OUTPUT(n, a, p) \
    {.name = (n), .alias = (a), .kind = CLI_KIND_OUTPUT, .dst = CLI_TYPED(const char *, p)}
#define CLI_OPT_INT(n, p, lo, hi) \
    {.name = (n), .kind = CLI_KIND_INT, .dst = CLI_TYPED(int, p), .min = (lo), .max = (hi)}
#define CLI_OPT_FLOAT(n, p, lo, hi, op) \
    {.name = (n), .kind = CLI_KIND_FLOAT, .dst = CLI_TYPED(float, p), .min = (lo), .max = (hi), .open = (op)}
#define CLI_OPT_SEED(n, p) {.name = (n), .kind = CLI_KIND_SEED, .dst = CLI_TYPED(uint64_t, p)}
#define CLI_OPT_CUSTOM(n, fn, p) {.name = (n), .kind = CLI_KIND_CUSTOM, .dst = (p), .parse = (fn)}

/* The options of the commands that optimize an image (classmodel, neuron,
 * layers): --recipe, --iters and --lr for either recipe, and the Lucid
 * recipe's own. Put CLI_RECIPE_OPTS(&r) among a command's rows, then
 * cli_recipe_apply. */
typedef struct cli_recipe_opts {
    const char *recipe, *param, *scale;
    int iters;   /* -1: not given */
    float lr;    /* NaN: not given */
    cnv_lucid_params lucid;
} cli_recipe_opts;

#define CLI_RECIPE_OPTS(r) \
    CLI_OPT_STRING("--recipe", NULL, &(r)->recipe), CLI_OPT_STRING("--param", NULL, &(r)->param), \
    CLI_OPT_STRING("--scale", NULL, &(r)->scale), CLI_OPT_CLEAR("--no-decorrelate", &(r)->lucid.decorrelate), \
    CLI_OPT_CLEAR("--no-sigmoid", &(r)->lucid.sigmoid), CLI_OPT_FLOAT("--shift", &(r)->lucid.shift, 0, 1e4, 0), \
    CLI_OPT_FLOAT("--rotate", &(r)->lucid.rotate, 0, 360, 0), CLI_OPT_FLOAT("--blur", &(r)->lucid.blur, 0, 100, 0), \
    CLI_OPT_INT("--iters", &(r)->iters, 0, INT_MAX), CLI_OPT_FLOAT("--lr", &(r)->lr, -HUGE_VAL, HUGE_VAL, 0)

/* Help text for those options, to end a command's usage string with
 * (the Lucid recipe's own options alone: CLI_LUCID_HELP). */
#define CLI_LUCID_HELP \
    "lucid options (sizes in pixels at 224x224, in proportion at other sizes):\n" \
    "  --param P          spectral (default: 1/f Fourier basis) or pixel\n" \
    "  --no-decorrelate   no color decorrelation\n" \
    "  --no-sigmoid       clamp to the pixel range instead of a sigmoid\n" \
    "  --shift PX         random shift of up to PX pixels (default 8)\n" \
    "  --scale A,B        random scale between A and B (default 0.9,1.1)\n" \
    "  --rotate DEG       random rotation of up to DEG degrees (default 10)\n" \
    "  --blur PX          random blur of sigma up to PX pixels (default 1)\n"
#define CLI_RECIPE_HELP \
    "  --recipe R         lucid (default: Olah et al. 2017) or cs231n (cnnviz\n" \
    "                     0.1's pixel ascent)\n" \
    "  --iters N          steps (lucid: default 512)\n" \
    "  --lr F             step size (lucid: Adam's, default 0.05)\n" CLI_LUCID_HELP

/* The file of item k of several: out.png -> out_k.png (malloc'ed; NULL
 * when out of memory). */
char *cli_item_path(const char *out, int k);

/* Starts o with nothing given and the Lucid defaults. */
void cli_recipe_init(cli_recipe_opts *o);
/* Resolves the recipe into *recipe, *lucid and the cs231n *iters and *lr
 * (which --iters and --lr set under that recipe); cs231n_options names
 * the cs231n-only options of the command when any was given (NULL: none),
 * which the Lucid recipe refuses. 0, or 2 after a usage error. */
int cli_recipe_apply(const char *cmd, const cli_recipe_opts *o, const char *cs231n_options, cnv_recipe *recipe,
                     cnv_lucid_params *lucid, int *iters, float *lr);

/* A subcommand's command line. */
typedef struct cli_spec {
    const char *cmd;       /* "classify": error messages start with it */
    const char *usage;     /* --help prints it (then cli_model_help if model) */
    cli_model_opts *model; /* takes the shared model options; NULL: none */
    const cli_opt *opts;   /* the command's own, up to a row {0} */
    const char *arg;       /* what a positional argument is ("image") */
    int max_args;          /* positional arguments allowed: 0, 1 or INT_MAX */
} cli_spec;

/* Returned by cli_parse when the command should go on. */
enum { CLI_RUN = -1 };

/* Parses argv[1..argc-1]: options take their value from the next
 * argument whatever it is (--lr -0.5), options and positional arguments
 * mix in any order, and a lone "-" is positional. The positional
 * arguments are moved, in order, to argv[1..*n_args] (n_args may be NULL
 * when max_args is 0). Returns CLI_RUN, or the exit code the command
 * should return at once: 0 after --help/-h (the usage on stdout), 2 after
 * a usage error ("<cmd>: unknown option '--x' (see --help)", "<cmd>: bad
 * value 'v' for --x", "<cmd>: --x needs a value (see --help)", an
 * unexpected or extra positional argument). */
int cli_parse(int argc, char **argv, const cli_spec *spec, int *n_args);

typedef struct cli_model {
    cnv_model *model;
    char *path;
    cnv_preprocess pp;           /* the model's, with the options over it */
    int channels, height, width; /* pp's: input C and the default H x W */
    const char *const *labels;   /* the model's (cnv_model_labels) */
    int n_labels;
    int output; /* the raw class-score tensor (cnv_model_score_tensor) */
    /* where the settings came from, for `info` and the note on models
     * without normalization: "model metadata", "--preset", "default", ... */
    const char *norm_from, *size_from, *labels_from;
} cli_model;

/* Loads the model (default: weights/fashion_mnist.onnx, looked up in
 * $CNNVIZ_MODEL, the current directory, then beside the executable in
 * ../weights and ../share/cnnviz) and its preprocessing
 * (cnv_model_preprocess; 224 x 224 when it gives no size), the options
 * overriding it. Returns 0 on success, 1 after printing the error. */
int cli_model_open(const cli_model_opts *o, cli_model *out);
void cli_model_close(cli_model *m);

/* "281", or a label (case-insensitive; the whole label or its first
 * comma-separated name) into a class index. */
int cli_class_lookup(const cli_model *m, const char *text, int *cls);
/* A layer as typed (cnv_model_find_layer) into *t; on failure prints the
 * error, with the nearest layer name when one is close, and returns 1.
 * cmd prefixes the message. */
int cli_layer_lookup(const cli_model *m, const char *cmd, const char *text, int *t);
/* The label of class k, or "class k" (in a static buffer). */
const char *cli_label(const cli_model *m, int k);

/* Loads an image and preprocesses it into the model's input at
 * height x width (C*H*W floats, normalized). */
int cli_load_input(const cli_model *m, const char *path, int height, int width, float *out);
/* Writes a normalized CHW tensor as an 8-bit PNG. */
int cli_save_input_png(const cli_model *m, const float *chw, int height, int width, const char *path);

/* img enlarged k times in place, each pixel a k x k block (28-pixel
 * frames of small models are too small to look at); k <= 1 leaves it. */
cnv_status cli_upscale_image(cnv_image *img, int k, char *err, size_t errlen);

/* The classes by decreasing probability p (n of them): order (n ints)
 * holds the first k in order, then the rest. */
void cli_top_classes(const float *p, int n, int k, int *order);

/* How cnnviz saliency's PNGs show a map (cnnviz atlas draws its maps the
 * same way): as it is, |map| for a signed method, or the positive part
 * for occlusion; capped at the CLI_SALIENCY_CLIP-th percentile by default
 * (--clip). cli_shown_map writes n values into out; scratch holds n. */
enum { CLI_SHOW_AS_IS, CLI_SHOW_ABS, CLI_SHOW_POSITIVE };
#define CLI_SALIENCY_CLIP 99.0f
int cli_show_mode(int method, int is_signed);
void cli_shown_map(const float *map, size_t n, int mode, float pct, float *out, float *scratch);

/* Seconds on the monotonic clock. */
double cli_now(void);

/* Progress of step iter of total, on stderr: on a terminal one line
 * rewritten in place; otherwise (a log, a pipe) a plain line at each tenth
 * of the way and at the end, so a long run is never silent. */
void cli_progress(int iter, int total, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Ends a line cli_progress left open on a terminal (no-op otherwise). */
void cli_progress_end(void);

/* A CLI_OPT_CUSTOM parser of --unit Y,X into int dst[2] = {y, x}, each
 * 0..2^20; fails when given twice (dst[0] >= 0 already) or malformed. */
int cli_parse_unit(const char *s, void *dst);

/* Writes s as a JSON string literal (quotes and escapes) to f. */
void cli_json_string(FILE *f, const char *s);

/* A number as JSON text: v printed with `digits` significant digits, or
 * null when v is not finite (JSON has no NaN or infinity). The buffer lives
 * until the end of the full expression: printf("%s", cli_jnum(x, 6).s). */
typedef struct {
    char s[32];
} cli_num;
cli_num cli_jnum(double v, int digits);

#endif
