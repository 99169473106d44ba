/* cnnviz: the command-line front end of libcnnviz. Each subcommand lives
 * in its own tools/cmd_*.c file and is listed in the table below. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

extern int cmd_info(int argc, char **argv);
extern int cmd_classify(int argc, char **argv);
extern int cmd_preprocess(int argc, char **argv);
extern int cmd_eval(int argc, char **argv);
extern int cmd_bench(int argc, char **argv);
extern int cmd_classmodel(int argc, char **argv);
extern int cmd_fool(int argc, char **argv);
extern int cmd_saliency(int argc, char **argv);
extern int cmd_neuron(int argc, char **argv);
extern int cmd_layers(int argc, char **argv);
extern int cmd_dream(int argc, char **argv);
extern int cmd_train(int argc, char **argv);
extern int cmd_evaluate(int argc, char **argv);
extern int cmd_sample(int argc, char **argv);
extern int cmd_annotate(int argc, char **argv);
extern int cmd_render(int argc, char **argv);
extern int cmd_atlas(int argc, char **argv);
/* COMMANDS-EXTERN (keep this marker: new subcommands add their extern above) */

static const cli_command g_commands[] = {
    {"info", "list a model's nodes, shapes, parameters and FLOPs", cmd_info},
    {"classify", "top-K classes of images", cmd_classify},
    {"preprocess", "write the exact network input of an image (raw float32)", cmd_preprocess},
    {"eval", "run the network on a raw tensor; logits and input gradients", cmd_eval},
    {"bench", "time forward and forward + input gradient per iteration", cmd_bench},
    {"classmodel", "synthesize the image a class scores highest on (class model)", cmd_classmodel},
    {"fool", "change a photo imperceptibly into a chosen class (fooling image)", cmd_fool},
    {"saliency", "saliency map of a photo for a class (grad, smoothgrad, guided, gradcam)", cmd_saliency},
    {"neuron", "synthesize the image one channel or unit of a layer responds to most", cmd_neuron},
    {"layers", "contact sheet of neuron visualizations, a row per layer", cmd_layers},
    {"render", "feature visualization of composed objectives (channels, directions, diversity...)", cmd_render},
    {"dream", "deep dream over octaves and a zooming movie (PNG frames, GIF)", cmd_dream},
    {"train", "train the small VGG-style classifier on an MNIST-format dataset", cmd_train},
    {"evaluate", "accuracy and confusion matrix on an MNIST-format test set", cmd_evaluate},
    {"sample", "save an image of an MNIST-format dataset as PNG", cmd_sample},
    {"annotate", "write a model's preprocessing and class names into its metadata", cmd_annotate},
    {"atlas", "a static web site of a model's layers, channels and class models (shardable)", cmd_atlas},
    /* COMMANDS-TABLE (keep this marker: new subcommands add their line above) */
    {NULL, NULL, NULL},
};

static void report(const char *fmt, va_list ap)
{
    fputs("cnnviz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(fmt, ap);
    va_end(ap);
    return 1;
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(fmt, ap);
    va_end(ap);
    return 2;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cnnviz <command> [options]\n"
            "       cnnviz help <command> | --help | --version\n\n"
            "See what a trained convolutional network has learned.\n\n"
            "commands:\n");
    for (const cli_command *c = g_commands; c->name; c++)
        fprintf(f, "  %-12s %s\n", c->name, c->summary);
    fprintf(f, "\n'cnnviz <command> --help' describes a command's options.\n");
}

/* Ctrl-C or a kill during a long run (a class model's GIF, a dream) must
 * not leave the library's half-written temporary files behind; the signal
 * then takes its default course, so the exit status says what happened. */
static void on_signal(int sig)
{
    cnv_remove_temp_files();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Handles sig, unless the parent set it ignored (a background job of a
 * non-interactive shell ignores SIGINT and should go on doing so). */
static void catch_signal(int sig)
{
    struct sigaction old;
    if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
        return;
    signal(sig, on_signal);
}

static const cli_command *find_command(const char *name)
{
    for (const cli_command *c = g_commands; c->name; c++)
        if (!strcmp(name, c->name))
            return c;
    return NULL;
}

/* "unknown command", with the nearest command's name when one is close. */
static int unknown_command(const char *name)
{
    const char *names[sizeof g_commands / sizeof g_commands[0]];
    int n = 0;
    for (const cli_command *c = g_commands; c->name; c++)
        names[n++] = c->name;
    const char *near = cli_nearest(name, names, n);
    if (near)
        cli_error("unknown command '%s'; did you mean '%s'? (try 'cnnviz --help')", name, near);
    else
        cli_error("unknown command '%s' (try 'cnnviz --help')", name);
    return 2;
}

int main(int argc, char **argv)
{
    catch_signal(SIGINT);
    catch_signal(SIGTERM);
    catch_signal(SIGHUP);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "help") && argc > 2) { /* cnnviz help CMD: CMD --help */
        const cli_command *c = find_command(argv[2]);
        if (!c)
            return unknown_command(argv[2]);
        char *args[] = {argv[2], "--help", NULL};
        return c->run(2, args);
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("cnnviz %s\n", cnv_version());
        return 0;
    }
    const cli_command *c = find_command(argv[1]);
    return c ? c->run(argc - 1, argv + 1) : unknown_command(argv[1]);
}
