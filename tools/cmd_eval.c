/* cnnviz eval: run the network on a raw tensor; the scripting interface
 * (logits and the input gradient of one class as raw float32 files). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"

static const char usage[] =
    "usage: cnnviz eval [-m MODEL] --input X.f32 --shape N,C,H,W\n"
    "                   [--logits-out L.f32] [--grad-class K --grad-out G.f32] [--json]\n"
    "Runs the network on a raw little-endian float32 NCHW tensor. With\n"
    "--grad-class, writes d(sum over the batch of logit K)/d(input).\n";

static int parse_shape(const char *s, int v[4])
{
    char *end;
    const char *p = s;
    for (int i = 0; i < 4; i++) {
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 1 || x > 65536 || (i < 3 && *end != ',') || (i == 3 && *end))
            return 1;
        v[i] = (int)x;
        p = end + 1;
    }
    return 0;
}

static int write_f32(const char *path, const float *x, size_t n)
{
    FILE *f = fopen(path, "wb");
    int bad = !f || fwrite(x, sizeof *x, n, f) != n;
    if (f && fclose(f))
        bad = 1;
    return bad ? cli_error("cannot write '%s': %s", path, strerror(errno)) : 0;
}

int cmd_eval(int argc, char **argv)
{
    cli_model_opts mo = {0};
    const char *input = NULL, *shape = NULL, *logits_out = NULL, *grad_out = NULL, *grad_class = NULL;
    int json = 0;
    const cli_opt opts[] = {
        CLI_OPT_STRING("--input", NULL, &input),
        CLI_OPT_STRING("--shape", NULL, &shape),
        CLI_OPT_STRING("--logits-out", NULL, &logits_out),
        CLI_OPT_STRING("--grad-out", NULL, &grad_out),
        CLI_OPT_STRING("--grad-class", NULL, &grad_class),
        CLI_OPT_SET("--json", &json),
        {0},
    };
    const cli_spec spec = {"eval", usage, &mo, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    int sh[4];
    if (!input || !shape || parse_shape(shape, sh)) {
        cli_error("eval: needs --input FILE and --shape N,C,H,W");
        return 2;
    }
    if (!grad_class != !grad_out) {
        cli_error("eval: --grad-class and --grad-out go together");
        return 2;
    }
    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    int cls = -1;
    rc = 0;
    if (grad_class && cli_class_lookup(&cm, grad_class, &cls))
        rc = 1;
    if (!rc && sh[1] != cm.channels)
        rc = cli_error("--shape has %d channels; the model takes %d", sh[1], cm.channels);
    size_t n = (size_t)sh[0] * sh[1] * sh[2] * sh[3];
    float *x = NULL;
    if (!rc) {
        FILE *f = fopen(input, "rb");
        if (!f)
            rc = cli_error("cannot open '%s': %s", input, strerror(errno));
        else {
            long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
            rewind(f);
            if (size < 0 || (size_t)size != n * sizeof(float))
                rc = cli_error("'%s' has %ld bytes; shape %s needs %zu", input, size, shape, n * sizeof(float));
            else if (!(x = malloc(n * sizeof *x)) || fread(x, sizeof *x, n, f) != n)
                rc = cli_error("cannot read '%s'", input);
            fclose(f);
        }
    }
    cnv_session *s = NULL;
    float *y = NULL;
    cnv_shape ysh;
    if (!rc) {
        cnv_status st = cnv_session_create(cm.model, &s);
        if (st == CNV_OK)
            st = cnv_session_plan(s, sh[0], sh[2], sh[3]);
        if (st == CNV_OK) {
            memcpy(cnv_session_input(s), x, n * sizeof *x);
            st = cnv_session_forward(s);
        }
        if (st == CNV_OK)
            st = cnv_session_tensor(s, cm.output, &y, &ysh);
        if (st != CNV_OK)
            rc = cli_error("%s", s ? cnv_session_errmsg(s) : cnv_status_string(st));
    }
    int64_t ny = rc ? 0 : cnv_shape_count(&ysh);
    int per = (!rc && sh[0] > 0) ? (int)(ny / sh[0]) : 0;
    if (!rc && cls >= per)
        rc = cli_error("class %d is out of range (the output has %d per image)", cls, per);
    if (!rc && logits_out)
        rc = write_f32(logits_out, y, (size_t)ny);
    if (!rc && grad_out) {
        float *seed = calloc((size_t)ny, sizeof *seed);
        if (!seed)
            rc = cli_error("out of memory");
        for (int b = 0; !rc && b < sh[0]; b++)
            seed[(size_t)b * per + cls] = 1.0f;
        if (!rc && cnv_session_backward(s, cm.output, seed, (size_t)ny) != CNV_OK)
            rc = cli_error("%s", cnv_session_errmsg(s));
        if (!rc)
            rc = write_f32(grad_out, cnv_session_input_grad(s), n);
        free(seed);
    }
    if (!rc && json) {
        printf("{\"shape\": [%d, %d, %d, %d], \"outputs_per_image\": %d, \"top1\": [", sh[0], sh[1], sh[2], sh[3],
               per);
        for (int b = 0; b < sh[0]; b++) {
            int best = 0;
            for (int k = 1; k < per; k++)
                if (y[(size_t)b * per + k] > y[(size_t)b * per + best])
                    best = k;
            printf("%s%d", b ? ", " : "", best);
        }
        printf("]}\n");
    } else if (!rc)
        printf("ran %s on %s; output %lld values\n", cm.path, shape, (long long)ny);
    free(x);
    cnv_session_free(s);
    cli_model_close(&cm);
    return rc;
}
