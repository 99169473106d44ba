/* The small VGG-style classifier the shipped model is (cnv_model_build_vgg),
 * built through the public builder calls, He-initialized from the
 * trainer's random stream. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/rng.h"
#include "core/shape.h"
#include "engine/engine.h"

cnv_vgg_params cnv_vgg_params_default(void)
{
    cnv_vgg_params p;
    memset(&p, 0, sizeof p);
    p.channels = 1;
    p.height = p.width = 28;
    p.classes = 10;
    p.width1 = 24;
    p.width2 = 48;
    p.hidden = 128;
    p.seed = 1;
    return p;
}

/* Adds name.weight (He-normal: std sqrt(2 / fan_in), the variance that
 * keeps ReLU activations from shrinking or growing layer to layer) and
 * name.bias (zeros). */
static cnv_status add_weights(cnv_model *m, uint64_t *r, const char *name, const cnv_shape *wshape,
                              int64_t fan_in, int64_t n_out)
{
    int64_t count = cnv_shape_count(wshape);
    if (count < 1 || fan_in < 1)
        return cnv_fail(cnv_model_err(m), CNV_ERR_INVALID_ARG, "%s: empty weight", name);
    float *w = cnv_calloc((size_t)count, sizeof *w);
    float *b = cnv_calloc((size_t)n_out, sizeof *b);
    if (!w || !b) {
        cnv_free(w);
        cnv_free(b);
        return cnv_fail(cnv_model_err(m), CNV_ERR_NOMEM, "%s: out of memory for %lld weights", name,
                        (long long)count);
    }
    double sd = sqrt(2.0 / (double)fan_in);
    for (int64_t i = 0; i < count; i++)
        w[i] = (float)(sd * cnv_splitmix64_normal(r));
    char wname[64], bname[64];
    snprintf(wname, sizeof wname, "%s.weight", name);
    snprintf(bname, sizeof bname, "%s.bias", name);
    cnv_shape bshape = {1, {n_out}};
    cnv_status st = cnv_model_add_const(m, wname, CNV_FLOAT32, wshape, w);
    if (st == CNV_OK)
        st = cnv_model_add_const(m, bname, CNV_FLOAT32, &bshape, b);
    cnv_free(w);
    cnv_free(b);
    return st;
}

static cnv_status add_conv(cnv_model *m, uint64_t *r, const char *name, const char *x, const char *y, int cin,
                           int cout)
{
    cnv_shape ws;
    cnv_shape4(&ws, cout, cin, 3, 3);
    cnv_status st = add_weights(m, r, name, &ws, (int64_t)cin * 9, cout);
    if (st != CNV_OK)
        return st;
    char wname[64], bname[64];
    snprintf(wname, sizeof wname, "%s.weight", name);
    snprintf(bname, sizeof bname, "%s.bias", name);
    static const int64_t k3[2] = {3, 3}, pad1[4] = {1, 1, 1, 1};
    cnv_attr attrs[2];
    memset(attrs, 0, sizeof attrs);
    attrs[0].name = "kernel_shape";
    attrs[0].type = CNV_ATTR_INTS;
    attrs[0].ints = k3;
    attrs[0].n = 2;
    attrs[1].name = "pads";
    attrs[1].type = CNV_ATTR_INTS;
    attrs[1].ints = pad1;
    attrs[1].n = 4;
    const char *in[3] = {x, wname, bname};
    char conv_out[64];
    snprintf(conv_out, sizeof conv_out, "%s.out", name);
    const char *out1[1] = {conv_out};
    st = cnv_model_add_node(m, "Conv", name, 3, in, 1, out1, 2, attrs);
    if (st != CNV_OK)
        return st;
    char relu_name[64];
    snprintf(relu_name, sizeof relu_name, "%s.relu", name);
    const char *rin[1] = {conv_out}, *rout[1] = {y};
    return cnv_model_add_node(m, "Relu", relu_name, 1, rin, 1, rout, 0, NULL);
}

static cnv_status add_pool(cnv_model *m, const char *name, const char *x, const char *y)
{
    static const int64_t k2[2] = {2, 2};
    cnv_attr attrs[2];
    memset(attrs, 0, sizeof attrs);
    attrs[0].name = "kernel_shape";
    attrs[0].type = CNV_ATTR_INTS;
    attrs[0].ints = k2;
    attrs[0].n = 2;
    attrs[1].name = "strides";
    attrs[1].type = CNV_ATTR_INTS;
    attrs[1].ints = k2;
    attrs[1].n = 2;
    const char *in[1] = {x}, *out[1] = {y};
    return cnv_model_add_node(m, "MaxPool", name, 1, in, 1, out, 2, attrs);
}

/* Gemm with weights stored (out, in) as PyTorch's Linear does (transB). */
static cnv_status add_fc(cnv_model *m, uint64_t *r, const char *name, const char *x, const char *y,
                         int64_t nin, int64_t nout)
{
    cnv_shape ws = {2, {nout, nin}};
    cnv_status st = add_weights(m, r, name, &ws, nin, nout);
    if (st != CNV_OK)
        return st;
    char wname[64], bname[64];
    snprintf(wname, sizeof wname, "%s.weight", name);
    snprintf(bname, sizeof bname, "%s.bias", name);
    cnv_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.name = "transB";
    attr.type = CNV_ATTR_INT;
    attr.i = 1;
    const char *in[3] = {x, wname, bname}, *out[1] = {y};
    return cnv_model_add_node(m, "Gemm", name, 3, in, 1, out, 1, &attr);
}

cnv_status cnv_model_build_vgg(cnv_model *m, const cnv_vgg_params *p)
{
    if (!m)
        return CNV_ERR_INVALID_ARG;
    if (!p)
        return cnv_fail(cnv_model_err(m), CNV_ERR_INVALID_ARG, "no parameters given");
    if (cnv_model_tensor_count(m) || cnv_model_node_count(m))
        return cnv_fail(cnv_model_err(m), CNV_ERR_STATE, "the model is not empty");
    const int limit = 1 << 16;
    if (p->channels < 1 || p->channels > limit || p->height < 4 || p->height > limit || p->width < 4 ||
        p->width > limit || p->classes < 1 || p->classes > limit || p->width1 < 1 || p->width1 > limit ||
        p->width2 < 1 || p->width2 > limit || p->hidden < 1 || p->hidden > limit)
        return cnv_fail(cnv_model_err(m), CNV_ERR_INVALID_ARG,
                        "VGG of %dx%dx%d input, %d classes, widths %d/%d, hidden %d: each must be in "
                        "1..%d (height and width >= 4)",
                        p->channels, p->height, p->width, p->classes, p->width1, p->width2, p->hidden,
                        limit);
    int64_t flat;
    if (!cnv_mul_i64((int64_t)p->width2, (int64_t)(p->height / 4) * (p->width / 4), &flat) ||
        flat > CNV_MAX_ELEMS)
        return cnv_fail(cnv_model_err(m), CNV_ERR_INVALID_ARG, "the flattened features are too many");
    uint64_t r = p->seed; /* the trainer's splitmix64 stream (He init) */
    cnv_shape in = {4, {-1, p->channels, p->height, p->width}};
    cnv_status st = cnv_model_add_input(m, "image", &in);
    if (st == CNV_OK)
        st = add_conv(m, &r, "conv1", "image", "relu1", p->channels, p->width1);
    if (st == CNV_OK)
        st = add_conv(m, &r, "conv2", "relu1", "relu2", p->width1, p->width1);
    if (st == CNV_OK)
        st = add_pool(m, "pool1", "relu2", "pool1");
    if (st == CNV_OK)
        st = add_conv(m, &r, "conv3", "pool1", "relu3", p->width1, p->width2);
    if (st == CNV_OK)
        st = add_conv(m, &r, "conv4", "relu3", "relu4", p->width2, p->width2);
    if (st == CNV_OK)
        st = add_pool(m, "pool2", "relu4", "pool2");
    if (st == CNV_OK) {
        cnv_attr axis;
        memset(&axis, 0, sizeof axis);
        axis.name = "axis";
        axis.type = CNV_ATTR_INT;
        axis.i = 1;
        const char *fin[1] = {"pool2"}, *fout[1] = {"flat"};
        st = cnv_model_add_node(m, "Flatten", "flatten", 1, fin, 1, fout, 1, &axis);
    }
    if (st == CNV_OK)
        st = add_fc(m, &r, "fc1", "flat", "fc1.out", flat, p->hidden);
    if (st == CNV_OK) {
        const char *rin[1] = {"fc1.out"}, *rout[1] = {"hidden"};
        st = cnv_model_add_node(m, "Relu", "fc1.relu", 1, rin, 1, rout, 0, NULL);
    }
    if (st == CNV_OK)
        st = add_fc(m, &r, "fc2", "hidden", "logits", p->hidden, p->classes);
    if (st == CNV_OK)
        st = cnv_model_add_output(m, "logits");
    return st;
}
