/* cnnviz train: train the small VGG-style classifier on an MNIST-format
 * dataset with the library's own backward, and save it as ONNX with the
 * metadata the other subcommands read. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_common.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

static const char usage[] =
    "usage: cnnviz train [--data DIR] [--epochs N] [--batch B] [--lr F] [--seed S]\n"
    "                    [--threads T] [--width1 C] [--width2 C] [--hidden H]\n"
    "                    [--limit N] [--no-augment] [--json] [--quiet] -o OUT.onnx\n"
    "Trains conv3x3(C1)-relu-conv3x3(C1)-relu-maxpool, the same with C2, then\n"
    "Gemm(H)-relu-Gemm(classes) on DIR/train-*-ubyte[.gz] (IDX files), tests\n"
    "on DIR/t10k-*, and writes OUT.onnx (input \"image\" N x 1 x H x W, output\n"
    "\"logits\"; metadata cnnviz.mean/std/color/image_size/labels).\n"
    "  --data DIR      dataset directory (default " DEFAULT_DATA ")\n"
    "  --epochs N      passes over the training set (default 10)\n"
    "  --batch B       images per SGD step (default 64)\n"
    "  --lr F          peak learning rate (default 0.05); SGD, momentum 0.9,\n"
    "                  weight decay 5e-4, warm-up then cosine decay\n"
    "  --seed S        initialization, shuffling and augmentation (default 1)\n"
    "  --threads T     threads sharing each batch (default: all cores, at\n"
    "                  most 64); the same seed and thread count give the\n"
    "                  same weights\n"
    "  --width1 C, --width2 C, --hidden H   layer sizes (default 24, 48, 128)\n"
    "  --limit N       train on the first N images only (quick runs)\n"
    "  --no-augment    no random shifts (up to 2 pixels) and flips\n"
    "  --labels FILE   class names, one per line (default: the Fashion-MNIST\n"
    "                  names when there are 10 classes)\n"
    "  --json          print a JSON summary on stdout\n"
    "  --quiet         no per-epoch lines on stderr\n";

static const char fashion_labels[] =
    "T-shirt/top\nTrouser\nPullover\nDress\nCoat\nSandal\nShirt\nSneaker\nBag\nAnkle boot";

typedef struct history {
    cnv_train_epoch *e;
    int n, quiet;
} history;

static int on_epoch(void *user, const cnv_train_epoch *e)
{
    history *h = user;
    h->e[h->n++] = *e;
    if (!h->quiet) {
        fprintf(stderr, "epoch %2d/%d  loss %.4f  train %.2f%%", e->epoch, e->epochs, e->loss,
                100 * e->train_acc);
        if (e->test_acc >= 0)
            fprintf(stderr, "  test %.2f%%", 100 * e->test_acc);
        fprintf(stderr, "  %.0f images/s  %.1f s (total %.1f s)\n", e->images_per_s, e->seconds,
                e->total_seconds);
    }
    return 0;
}

/* The whole file, with trailing newlines removed; NULL after an error. */
static char *read_labels(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("cannot open %s", path);
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = cap < (1u << 24) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    if (!buf) {
        cli_error("%s: too large or out of memory", path);
        return NULL;
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    return buf;
}

int cmd_train(int argc, char **argv)
{
    const char *data = DEFAULT_DATA, *out = NULL, *labels_path = NULL;
    int json = 0, quiet = 0, threads = 0, limit = 0;
    cnv_train_params p = cnv_train_params_default();
    cnv_vgg_params vp = cnv_vgg_params_default();
    const cli_opt opts[] = {
        CLI_OPT_SET("--json", &json),
        CLI_OPT_SET("--quiet", &quiet),
        CLI_OPT_CLEAR("--no-augment", &p.augment),
        CLI_OPT_STRING("--data", NULL, &data),
        CLI_OPT_OUTPUT("--output", "-o", &out),
        CLI_OPT_STRING("--labels", NULL, &labels_path),
        CLI_OPT_INT("--epochs", &p.epochs, 1, INT_MAX),
        CLI_OPT_INT("--batch", &p.batch, 1, INT_MAX),
        CLI_OPT_INT("--threads", &threads, 1, 64),
        CLI_OPT_INT("--limit", &limit, 1, INT_MAX),
        CLI_OPT_INT("--width1", &vp.width1, 1, INT_MAX),
        CLI_OPT_INT("--width2", &vp.width2, 1, INT_MAX),
        CLI_OPT_INT("--hidden", &vp.hidden, 1, INT_MAX),
        CLI_OPT_SEED("--seed", &p.seed),
        CLI_OPT_FLOAT("--lr", &p.lr, 0, HUGE_VAL, CLI_OPEN_MIN),
        {0},
    };
    const cli_spec spec = {"train", usage, NULL, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    vp.seed = p.seed; /* one --seed for both; their defaults agree */
    if (!out) {
        cli_error("train: no output file given (-o OUT.onnx)");
        return 2;
    }
    p.max_train = limit;
    if (!threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores < 1 ? 1 : cores > 64 ? 64 : (int)cores;
    }
    /* the batch is split between the threads; evaluation uses BLAS threads */
    p.workers = threads;
    cnv_set_threads(threads);

    rc = 1;
    char *labels = NULL;
    cnv_dataset *train = NULL, *test = NULL;
    cnv_model *m = NULL;
    history h = {NULL, 0, quiet};
    if (labels_path && !(labels = read_labels(labels_path)))
        goto done;
    if (cnv_mnist_load(data, "train", &train) != CNV_OK) {
        cli_error("%s", cnv_dataset_errmsg(train));
        goto done;
    }
    if (cnv_mnist_load(data, "t10k", &test) != CNV_OK) {
        cli_error("%s", cnv_dataset_errmsg(test));
        goto done;
    }
    double mean, std;
    cnv_dataset_stats(train, &mean, &std);
    /* Train with exactly the values the metadata will say. */
    char mean_s[32], std_s[32], size_s[32];
    snprintf(mean_s, sizeof mean_s, "%.4f", mean);
    snprintf(std_s, sizeof std_s, "%.4f", std);
    p.mean = strtof(mean_s, NULL);
    p.std = strtof(std_s, NULL);
    if (!(p.std > 0)) {
        cli_error("the training images are all the same value");
        goto done;
    }
    int c, ih, iw;
    cnv_dataset_shape(train, &c, &ih, &iw);
    vp.channels = c;
    vp.height = ih;
    vp.width = iw;
    vp.classes = cnv_dataset_classes(train);
    snprintf(size_s, sizeof size_s, "%dx%d", ih, iw);
    if (!labels_path && vp.classes == 10)
        labels = strdup(fashion_labels);
    h.e = calloc((size_t)p.epochs, sizeof *h.e);
    if (!h.e || (!labels_path && vp.classes == 10 && !labels)) {
        cli_error("out of memory");
        goto done;
    }
    p.progress = on_epoch;
    p.user = &h;
    cnv_status st = cnv_model_create(&m);
    if (st == CNV_OK)
        st = cnv_model_build_vgg(m, &vp);
    if (st == CNV_OK && !quiet)
        fprintf(stderr,
                "training on %d images (%dx%d, %d classes; mean %s, std %s), testing on %d; %d epochs, "
                "batch %d, lr %g, seed %llu\n",
                limit && limit < cnv_dataset_count(train) ? limit : cnv_dataset_count(train), ih, iw,
                vp.classes, mean_s, std_s, cnv_dataset_count(test), p.epochs, p.batch, p.lr,
                (unsigned long long)p.seed);
    if (st == CNV_OK)
        st = cnv_train(m, train, test, &p);
    if (st == CNV_OK)
        st = cnv_model_set_meta(m, "cnnviz.mean", mean_s);
    if (st == CNV_OK)
        st = cnv_model_set_meta(m, "cnnviz.std", std_s);
    if (st == CNV_OK)
        st = cnv_model_set_meta(m, "cnnviz.color", c == 1 ? "gray" : "rgb");
    if (st == CNV_OK)
        st = cnv_model_set_meta(m, "cnnviz.image_size", size_s);
    if (st == CNV_OK && labels)
        st = cnv_model_set_meta(m, "cnnviz.labels", labels);
    if (st == CNV_OK)
        st = cnv_model_save_onnx(m, out);
    if (st != CNV_OK) {
        cli_error("%s", m ? cnv_model_errmsg(m) : cnv_status_string(st));
        goto done;
    }
    const cnv_train_epoch *last = &h.e[h.n - 1];
    if (json) {
        printf("{\"output\": ");
        cli_json_string(stdout, out);
        printf(", \"data\": ");
        cli_json_string(stdout, data);
        printf(", \"train_images\": %d, \"test_images\": %d, \"epochs\": %d, \"batch\": %d, \"lr\": %g, "
               "\"seed\": %llu, \"threads\": %d, \"width1\": %d, \"width2\": %d, \"hidden\": %d, "
               "\"mean\": %s, \"std\": %s, \"test_accuracy\": %.4f, \"seconds\": %.1f, \"history\": [",
               limit && limit < cnv_dataset_count(train) ? limit : cnv_dataset_count(train),
               cnv_dataset_count(test), p.epochs, p.batch, p.lr, (unsigned long long)p.seed, threads,
               vp.width1, vp.width2, vp.hidden, mean_s, std_s, last->test_acc, last->total_seconds);
        for (int i = 0; i < h.n; i++)
            printf("%s{\"epoch\": %d, \"loss\": %.5f, \"train_accuracy\": %.4f, \"test_accuracy\": %.4f, "
                   "\"images_per_s\": %.1f, \"seconds\": %.1f}",
                   i ? ", " : "", h.e[i].epoch, h.e[i].loss, h.e[i].train_acc, h.e[i].test_acc,
                   h.e[i].images_per_s, h.e[i].seconds);
        printf("]}\n");
    } else if (!quiet) {
        fprintf(stderr, "wrote %s: test accuracy %.2f%% after %.1f s\n", out, 100 * last->test_acc,
                last->total_seconds);
    }
    rc = 0;

done:
    free(labels);
    free(h.e);
    cnv_model_free(m);
    cnv_dataset_free(train);
    cnv_dataset_free(test);
    return rc;
}
