/* cnnviz dream: deep dream over octaves, then a zooming movie written as
 * numbered PNG frames and, optionally, one animated GIF. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz dream [-m MODEL] [--layer NAME] -o FRAMES_DIR [options]\n"
    "Deep dream (Mordvintsev et al. 2015): gradient ascent on the L2 norm of a\n"
    "layer's activation (or of one channel's), from noise or a photo, over\n"
    "octaves of growing size; then a movie in which every frame zooms into the\n"
    "last one and dreams a few steps more. Frames are written as\n"
    "FRAMES_DIR/frame_0000.png, frame_0001.png, ... (the directory and its\n"
    "parents are created as needed).\n"
    "\n"
    "options:\n"
    "  -o FRAMES_DIR      output directory\n"
    "  --gif OUT.gif      also one animated GIF of the frames\n"
    "  --gif-delay CS     time per GIF frame in 1/100 s (default 8)\n"
    "  --upscale K        write frames and GIF K times larger (pixel blocks), for\n"
    "                     small models (default 1)\n"
    "  --layer NAME       the layer (default: of the layers 'cnnviz layers'\n"
    "                     would list with --max-layers 0, the one at 60% of\n"
    "                     the depth)\n"
    "  --channel C        ascend one channel instead of the whole layer\n"
    "  --random-channels  a new random channel every --every frames\n"
    "  --every M          frames per random channel (default 20)\n"
    "  --image START.png  start from this photo instead of noise\n"
    "  --start N          height of the first octave (default 64)\n"
    "  --octaves N        octaves, the last at the frame size (default 4)\n"
    "  --scale F          size ratio between octaves (default 1.4)\n"
    "  --steps N          ascent steps per octave (default 20)\n"
    "  --frames N         movie frames; frame 0 is the octaves' result\n"
    "                     (default 1, or 60 with --gif: a movie)\n"
    "  --zoom F           zoom per frame (default 1.05)\n"
    "  --frame-steps N    ascent steps per frame after the first (default 5)\n"
    "  --lr F             mean pixel change per step, gray levels (default 1.5)\n"
    "  --jitter PX        random roll of up to PX pixels (default 16)\n"
    "  --no-pre-relu      no fallback to the Relu's input for a dead channel\n"
    "  --mean             ascend the mean activation instead of its L2 norm\n"
    "                     (cnnviz 0.1's objective)\n"
    "  --seed S           random seed (default 0)\n"
    "  --json             one JSON document on stdout\n"
    "  --quiet            no progress\n";

typedef struct dream_ctx {
    const cli_model *cm;
    const char *dir;
    cnv_gif_writer *gif;
    int written, failed, progress, upscale;
    char err[512];
} dream_ctx;

static int on_progress(void *user, int iter, int total, float objective, float prob)
{
    (void)prob;
    dream_ctx *d = user;
    if (d->progress)
        cli_progress(iter, total, "dream: step %d/%d  objective %.4g  frames %d", iter, total, (double)objective,
                     d->written);
    return 0;
}

static int on_frame(void *user, int iter, const float *images, int n, int c, int h, int w)
{
    (void)n, (void)c;
    dream_ctx *d = user;
    size_t len = strlen(d->dir) + 32;
    char *path = malloc(len);
    cnv_image img = {0};
    cnv_status st = CNV_ERR_NOMEM;
    snprintf(d->err, sizeof d->err, "out of memory");
    if (path) {
        snprintf(path, len, "%s/frame_%04d.png", d->dir, iter);
        st = cnv_tensor_to_image(images, &d->cm->pp, h, w, &img, d->err, sizeof d->err);
        if (st == CNV_OK)
            st = cli_upscale_image(&img, d->upscale, d->err, sizeof d->err);
        if (st == CNV_OK)
            st = cnv_image_write_png(&img, path, d->err, sizeof d->err);
        if (st == CNV_OK && d->gif && (st = cnv_gif_writer_add_frame(d->gif, &img)) != CNV_OK)
            snprintf(d->err, sizeof d->err, "%s", cnv_gif_writer_errmsg(d->gif));
    }
    free(path);
    cnv_image_free(&img);
    if (st != CNV_OK) {
        d->failed = 1;
        return 1;
    }
    d->written++;
    return 0;
}

/* mkdir -p: the directory and any missing parents. */
static int make_dir(const char *dir)
{
    if (!*dir)
        return cli_error("dream: the output directory name is empty");
    char *path = strdup(dir);
    if (!path)
        return cli_error("out of memory");
    struct stat sb;
    int rc = 0;
    for (char *p = path + 1;; p++) {
        if (*p && *p != '/')
            continue;
        char keep = *p;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && !(errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))) {
            rc = cli_error("cannot create directory '%s': %s", path,
                           errno == EEXIST ? "a file of that name exists" : strerror(errno));
            break;
        }
        *p = keep;
        if (!keep)
            break;
    }
    free(path);
    return rc;
}

int cmd_dream(int argc, char **argv)
{
    cli_model_opts mo = {0};
    cnv_dream_params p = cnv_dream_params_default();
    const char *dir = NULL, *gif = NULL, *layer_text = NULL, *start_image = NULL;
    int json = 0, quiet = 0, random_channels = 0, every = 20, delay = 8, up = 1;
    const cli_opt opts[] = {
        CLI_OPT_SET("--json", &json),
        CLI_OPT_SET("--quiet", &quiet),
        CLI_OPT_SET("--random-channels", &random_channels),
        CLI_OPT_CLEAR("--no-pre-relu", &p.pre_relu),
        CLI_OPT_CLEAR("--mean", &p.l2),
        CLI_OPT_STRING("--output", "-o", &dir),
        CLI_OPT_OUTPUT("--gif", NULL, &gif),
        CLI_OPT_INT("--gif-delay", &delay, 0, 65535),
        CLI_OPT_INT("--upscale", &up, 1, 16),
        CLI_OPT_STRING("--layer", NULL, &layer_text),
        CLI_OPT_INT("--channel", &p.channel, 0, INT_MAX),
        CLI_OPT_INT("--every", &every, 1, INT_MAX),
        CLI_OPT_STRING("--image", NULL, &start_image),
        CLI_OPT_INT("--start", &p.start, 1, INT_MAX),
        CLI_OPT_INT("--octaves", &p.octaves, 1, 64),
        CLI_OPT_FLOAT("--scale", &p.octave_scale, 1, 16, CLI_OPEN_MIN),
        CLI_OPT_INT("--steps", &p.steps, 0, INT_MAX),
        CLI_OPT_INT("--frames", &p.frames, 1, 100000),
        CLI_OPT_FLOAT("--zoom", &p.zoom, 1, 4, 0),
        CLI_OPT_INT("--frame-steps", &p.frame_steps, 0, INT_MAX),
        CLI_OPT_FLOAT("--lr", &p.lr, -HUGE_VAL, HUGE_VAL, 0),
        CLI_OPT_INT("--jitter", &p.jitter, 0, 4096),
        CLI_OPT_SEED("--seed", &p.seed),
        {0},
    };
    const cli_spec spec = {"dream", usage, &mo, opts, NULL, 0};
    p.frames = 0; /* not given (the option takes 1 and up) */
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    if (!dir)
        return cli_error("dream: give -o FRAMES_DIR (see --help)"), 2;
    if (random_channels && p.channel >= 0)
        return cli_error("dream: give --channel or --random-channels, not both"), 2;
    if (random_channels)
        p.channel_every = every;
    /* a GIF of one frame is no movie: --gif without --frames zooms */
    if (p.frames == 0)
        p.frames = gif ? 60 : 1;

    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    int h = cm.height, w = cm.width, c = cm.channels;
    rc = 0;
    const char *layer = NULL;
    int t = -1;
    if (layer_text) {
        rc = cli_layer_lookup(&cm, "dream", layer_text, &t);
    } else {
        int n = cnv_model_layers(cm.model, 0, NULL);
        int *layers = calloc((size_t)n + 1, sizeof *layers);
        if (!layers)
            rc = cli_error("out of memory");
        else if (n == 0)
            rc = cli_error("dream: the model has no activation or feature map to dream on; give --layer");
        else {
            cnv_model_layers(cm.model, 0, layers);
            t = layers[(int)(0.6 * (n - 1))];
        }
        free(layers);
    }
    layer = cnv_model_tensor_name(cm.model, t);
    p.layer = layer;
    p.height = h;
    p.width = w;
    p.preprocess = &cm.pp;
    float *init = NULL, *last = NULL;
    int *chans = NULL;
    cnv_session *s = NULL;
    dream_ctx d = {&cm, dir, NULL, 0, 0, !quiet, up, ""};
    if (!rc && start_image) {
        if (!(init = malloc((size_t)c * h * w * sizeof *init)))
            rc = cli_error("out of memory");
        else
            rc = cli_load_input(&cm, start_image, h, w, init);
        p.init = init;
    }
    if (!rc && (!(last = malloc((size_t)c * h * w * sizeof *last)) ||
                !(chans = malloc((size_t)p.frames * sizeof *chans))))
        rc = cli_error("out of memory");
    if (!rc)
        rc = make_dir(dir);
    if (!rc && gif && cnv_gif_writer_open(gif, w * up, h * up, delay, 1, &d.gif) != CNV_OK)
        rc = cli_error("%s", d.gif ? cnv_gif_writer_errmsg(d.gif) : "out of memory");
    if (!rc && cnv_session_create(cm.model, &s) != CNV_OK)
        rc = cli_error("out of memory");
    if (!rc) {
        p.progress = on_progress;
        p.frame = on_frame;
        p.user = &d;
        cnv_status st = cnv_dream(s, &p, last, (size_t)c * h * w, chans, p.frames);
        cli_progress_end();
        if (st != CNV_OK)
            rc = cli_error("%s", d.failed ? d.err : cnv_session_errmsg(s));
    }
    if (!rc && d.gif && cnv_gif_writer_close(d.gif) != CNV_OK)
        rc = cli_error("%s", cnv_gif_writer_errmsg(d.gif));
    if (!rc && json) {
        printf("{\"layer\": ");
        cli_json_string(stdout, layer);
        printf(", \"height\": %d, \"width\": %d, \"frames\": %d, \"octaves\": %d, \"seed\": %llu, \"dir\": ", h,
               w, d.written, p.octaves, (unsigned long long)p.seed);
        cli_json_string(stdout, dir);
        if (gif) {
            printf(", \"gif\": ");
            cli_json_string(stdout, gif);
        }
        printf(", \"channels\": [");
        for (int f = 0; f < p.frames; f++)
            printf("%s%d", f ? ", " : "", chans[f]);
        printf("]}\n");
    } else if (!rc && !quiet) {
        fprintf(stderr, "dream: %d frames of %dx%d in %s (layer %s)%s%s\n", d.written, w, h, dir, layer,
                gif ? ", " : "", gif ? gif : "");
    }
    cnv_gif_writer_free(d.gif);
    cnv_session_free(s);
    free(init);
    free(last);
    free(chans);
    cli_model_close(&cm);
    return rc;
}
