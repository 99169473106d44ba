/* Helpers shared by the cnnviz subcommands: the common model options, the
 * metadata convention (mean, std, color, size, labels), class lookup,
 * image input and output. Each prints its own error and returns 1. */
#ifndef CNV_CLI_COMMON_H
#define CNV_CLI_COMMON_H

#include <stdio.h>

#include "cli.h"

/* The options every model-using subcommand accepts. */
typedef struct cli_model_opts {
    const char *path;   /* -m/--model FILE (default: the Fashion-MNIST model) */
    const char *mean;   /* --mean a,b,c */
    const char *std;    /* --std a,b,c */
    const char *labels; /* --labels FILE */
    const char *size;   /* --size HxW */
    const char *preset; /* --preset imagenet */
    const char *threads; /* --threads T */
} cli_model_opts;

/* Help text for the options above, for each subcommand's --help. */
extern const char *const cli_model_help;

/* Consumes one model option at argv[*i], advancing *i past its value.
 * Returns 1 if consumed, 0 if argv[*i] is not a model option, -1 after
 * printing an error. */
int cli_model_option(int argc, char **argv, int *i, cli_model_opts *o);

typedef struct cli_model {
    cnv_model *model;
    char *path;
    int channels, height, width; /* input C and the default H x W */
    float mean[3], std[3];
    char **labels;
    int n_labels;
    const char *output; /* the raw class-score tensor (cnv_model_score_tensor) */
} cli_model;

/* Loads the model (default: weights/fashion_mnist.onnx, looked up in
 * $CNNVIZ_MODEL, the current directory, then beside the executable in
 * ../weights and ../share/cnnviz) and reads its metadata, the options
 * overriding it. Returns 0 on success, 1 after printing the error. */
int cli_model_open(const cli_model_opts *o, cli_model *out);
void cli_model_close(cli_model *m);

/* "281", or a label (case-insensitive; the whole label or its first
 * comma-separated name) into a class index. */
int cli_class_lookup(const cli_model *m, const char *text, int *cls);
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

/* Softmax of n scores into p (may alias). */
void cli_softmax(const float *z, float *p, int n);

int cli_parse_int(const char *s, int *out);
int cli_parse_float(const char *s, float *out);
int cli_parse_size(const char *s, int *h, int *w);
/* a,b,c (1 or 3 values; one value is repeated) */
int cli_parse_floats3(const char *s, float out[3]);

/* Writes s as a JSON string literal (quotes and escapes) to f. */
void cli_json_string(FILE *f, const char *s);

#endif
