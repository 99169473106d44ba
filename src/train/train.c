/* Training with the engine's own backward: the small VGG-style model
 * builder, softmax cross-entropy on the logits (outside the graph), mini-
 * batch SGD with momentum over data-parallel shards (one session and thread
 * each), and evaluation (accuracy, confusion matrix). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <pthread.h>

#include "core/clock.h"
#include "core/numeric.h"
#include "core/rng.h"
#include "engine/session.h"

/* ------------------------------------------------------------------ rng */

/* The trainer's stream is splitmix64's own sequence: its draws below fixed
 * the shipped model's weights (docs/TRAINING.md gives its SHA-256). */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_u64(rng *r)
{
    return cnv_splitmix64(&r->s);
}

/* Uniform integer in [0, n), n >= 1 (the bias of a 64-bit modulo is far
 * below anything a shuffle of 2^31 items could show). */
static uint64_t rng_below(rng *r, uint64_t n)
{
    return rng_u64(r) % n;
}

/* Standard normal, one value per call. */
static double rng_normal(rng *r)
{
    double u1 = 1.0 - cnv_unit53(rng_u64(r)), u2 = cnv_unit53(rng_u64(r));
    return cnv_box_muller(u1, u2);
}

/* -------------------------------------------------------------- builder */

cnv_vgg_params cnv_vgg_default_params(void)
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
static cnv_status add_weights(cnv_model *m, rng *r, const char *name, const cnv_shape *wshape,
                              int64_t fan_in, int64_t n_out)
{
    int64_t count = cnv_shape_count(wshape);
    if (count < 1 || fan_in < 1)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "%s: empty weight", name);
    float *w = cnv_calloc((size_t)count, sizeof *w);
    float *b = cnv_calloc((size_t)n_out, sizeof *b);
    if (!w || !b) {
        cnv_free(w);
        cnv_free(b);
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "%s: out of memory for %lld weights", name,
                        (long long)count);
    }
    double sd = sqrt(2.0 / (double)fan_in);
    for (int64_t i = 0; i < count; i++)
        w[i] = (float)(sd * rng_normal(r));
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

static cnv_status add_conv(cnv_model *m, rng *r, const char *name, const char *x, const char *y, int cin,
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
static cnv_status add_fc(cnv_model *m, rng *r, const char *name, const char *x, const char *y,
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
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "no parameters given");
    if (m->n_tensors || m->n_nodes)
        return cnv_fail(&m->err, CNV_ERR_STATE, "the model is not empty");
    const int limit = 1 << 16;
    if (p->channels < 1 || p->channels > limit || p->height < 4 || p->height > limit || p->width < 4 ||
        p->width > limit || p->classes < 1 || p->classes > limit || p->width1 < 1 || p->width1 > limit ||
        p->width2 < 1 || p->width2 > limit || p->hidden < 1 || p->hidden > limit)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG,
                        "VGG of %dx%dx%d input, %d classes, widths %d/%d, hidden %d: each must be in "
                        "1..%d (height and width >= 4)",
                        p->channels, p->height, p->width, p->classes, p->width1, p->width2, p->hidden,
                        limit);
    int64_t flat;
    if (!cnv_mul_i64((int64_t)p->width2, (int64_t)(p->height / 4) * (p->width / 4), &flat) ||
        flat > CNV_MAX_ELEMS)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "the flattened features are too many");
    rng r = {p->seed};
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

/* ----------------------------------------------------------------- loss */

/* Softmax cross-entropy of logits (b,k) against labels (b); writes
 * dlogits (b,k) = (softmax - onehot) / denom, denom being the whole
 * batch's size when this is one shard of it. Returns the summed loss in
 * double: a mean over hundreds of images must not depend on float
 * rounding. */
static void softmax_xent(const float *logits, const uint8_t *labels, int b, int k, int denom,
                         float *dlogits, double *loss_sum, int *correct)
{
    double total = 0;
    int right = 0;
    for (int i = 0; i < b; i++) {
        const float *z = logits + (size_t)i * k;
        float *dz = dlogits + (size_t)i * k;
        double lse = cnv_logsumexp(z, k, 1);
        total += lse - (double)z[labels[i]];
        right += cnv_argmax(z, k) == labels[i];
        for (int j = 0; j < k; j++) {
            double pj = exp((double)z[j] - lse);
            dz[j] = (float)((pj - (j == labels[i])) / denom);
        }
    }
    *loss_sum = total;
    *correct = right;
}

/* Copies a failing session's message into e. */
static cnv_status from_session(cnv_err *e, cnv_session *s, cnv_status st)
{
    return cnv_fail(e, st, "%s", cnv_session_errmsg(s));
}

/* The planned logits tensor, checked to be (b, k). */
static cnv_status logits_of(cnv_err *e, cnv_session *s, const char *name, int *b, int *k, float **data)
{
    cnv_shape sh;
    cnv_status st = cnv_session_tensor(s, name, data, &sh);
    if (st != CNV_OK)
        return from_session(e, s, st);
    if (sh.ndim != 2 || sh.dims[0] < 1 || sh.dims[1] < 1) {
        char buf[128];
        return cnv_fail(e, CNV_ERR_SHAPE, "'%s' has shape %s, expected batch x classes", name,
                        cnv_shape_str(&sh, buf, sizeof buf));
    }
    *b = (int)sh.dims[0];
    *k = (int)sh.dims[1];
    return CNV_OK;
}

/* Forward, loss, backward on the b images planned in s, with dlogits
 * (b*k floats) from the caller. Writes only e and s: shards run it in
 * parallel. */
static cnv_status loss_backward(cnv_err *e, cnv_session *s, const char *logits, const uint8_t *labels, int b,
                                int k, int denom, float *dlogits, double *loss_sum, int *correct)
{
    cnv_status st = cnv_session_forward(s);
    if (st != CNV_OK)
        return from_session(e, s, st);
    float *z;
    int zb, zk;
    if ((st = logits_of(e, s, logits, &zb, &zk, &z)) != CNV_OK)
        return st;
    if (zb != b || zk != k)
        return cnv_fail(e, CNV_ERR_SHAPE, "'%s' is %dx%d, the plan said %dx%d", logits, zb, zk, b, k);
    softmax_xent(z, labels, b, k, denom, dlogits, loss_sum, correct);
    st = cnv_session_backward(s, logits, dlogits);
    return st == CNV_OK ? CNV_OK : from_session(e, s, st);
}

cnv_status cnv_train_loss_backward(cnv_model *m, cnv_session *s, const char *logits, const uint8_t *labels,
                                   double *loss, int *correct)
{
    if (!m)
        return CNV_ERR_INVALID_ARG;
    if (!s || !labels)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "no session or labels given");
    if (!logits)
        logits = "logits";
    /* The logits' planned shape is known before forward: check the labels
     * against it first, so a bad label leaves no half-done step. */
    float *z;
    int b, k;
    cnv_status st = logits_of(&m->err, s, logits, &b, &k, &z);
    if (st != CNV_OK)
        return st;
    for (int i = 0; i < b; i++)
        if (labels[i] >= k)
            return cnv_fail(&m->err, CNV_ERR_INVALID_ARG,
                            "label %d of image %d is not below the %d classes of '%s'", labels[i], i, k, logits);
    float *dz = cnv_calloc((size_t)b * (size_t)k, sizeof *dz);
    if (!dz)
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory for the gradient of '%s'", logits);
    double sum;
    int right;
    st = loss_backward(&m->err, s, logits, labels, b, k, b, dz, &sum, &right);
    cnv_free(dz);
    if (st == CNV_OK && loss)
        *loss = sum / b;
    if (st == CNV_OK && correct)
        *correct = right;
    return st;
}

/* ---------------------------------------------------------------- batches */

/* Writes images idx[0..b) of d into x (b,c,h,w) as (pixel/255 - mean)/std.
 * With r, each image is shifted by up to shift pixels (zero pixels come
 * in) and flipped left-right with probability 1/2 when flip is set. */
static void fill_batch(float *x, const cnv_dataset *d, const int *idx, int b, float mean, float std,
                       rng *r, int shift, int flip)
{
    int c = 0, h = 0, w = 0;
    cnv_dataset_shape(d, &c, &h, &w);
    const uint8_t *px = cnv_dataset_pixels(d);
    size_t plane = (size_t)h * (size_t)w, img = (size_t)c * plane;
    /* pixel/255 -> normalized, as a table: exact and branch-free */
    float lut[256];
    for (int v = 0; v < 256; v++)
        lut[v] = (float)(((double)v / 255.0 - mean) / std);
    for (int i = 0; i < b; i++) {
        const uint8_t *src = px + (size_t)idx[i] * img;
        float *dst = x + (size_t)i * img;
        int dy = 0, dx = 0, fl = 0;
        if (r) {
            if (shift > 0) {
                dy = (int)rng_below(r, 2 * (uint64_t)shift + 1) - shift;
                dx = (int)rng_below(r, 2 * (uint64_t)shift + 1) - shift;
            }
            if (flip)
                fl = (int)(rng_u64(r) >> 63);
        }
        if (!dy && !dx && !fl) {
            for (size_t j = 0; j < img; j++)
                dst[j] = lut[src[j]];
            continue;
        }
        for (int ch = 0; ch < c; ch++) {
            const uint8_t *sp = src + (size_t)ch * plane;
            float *dp = dst + (size_t)ch * plane;
            for (int y = 0; y < h; y++) {
                int sy = y - dy;
                for (int xx = 0; xx < w; xx++) {
                    int sx = (fl ? w - 1 - xx : xx) - dx;
                    int in = sy >= 0 && sy < h && sx >= 0 && sx < w;
                    dp[(size_t)y * w + xx] = lut[in ? sp[(size_t)sy * w + sx] : 0];
                }
            }
        }
    }
}

/* Checks that d's images fit m's image input (channels, and height and
 * width unless the model leaves them open). */
static cnv_status check_fit(cnv_model *m, const cnv_dataset *d, const char *what)
{
    if (cnv_dataset_count(d) < 1)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "the %s set is empty", what);
    if (m->n_inputs != 1)
        return cnv_fail(&m->err, CNV_ERR_SHAPE, "the model has %d inputs, training needs one image input",
                        m->n_inputs);
    const cnv_shape *in = &m->tensors[m->inputs[0]].shape;
    int c, h, w;
    cnv_dataset_shape(d, &c, &h, &w);
    if (in->ndim != 4 || in->dims[1] != c || (in->dims[2] != -1 && in->dims[2] != h) ||
        (in->dims[3] != -1 && in->dims[3] != w)) {
        char buf[128];
        return cnv_fail(&m->err, CNV_ERR_SHAPE, "the %s images are %dx%dx%d, the model's input is %s", what, c,
                        h, w, cnv_shape_str(in, buf, sizeof buf));
    }
    return CNV_OK;
}

/* Runs the planned session (batch b) over images [start, end) of d;
 * counts correct predictions and fills confusion (classes x classes) when
 * given. A last partial batch is padded with image `start` and its extra
 * outputs ignored, so the plan never changes. idx has b entries. */
static cnv_status eval_planned(cnv_err *e, cnv_session *s, const char *logits, const cnv_dataset *d, int start,
                               int end, int b, float mean, float std, int *idx, int64_t *correct,
                               int64_t *confusion, int classes)
{
    const uint8_t *labels = cnv_dataset_labels(d);
    float *x = cnv_session_input(s);
    int64_t right = 0;
    for (int at = start; at < end; at += b) {
        int len = end - at < b ? end - at : b;
        for (int i = 0; i < b; i++)
            idx[i] = i < len ? at + i : start;
        fill_batch(x, d, idx, b, mean, std, NULL, 0, 0);
        cnv_status st = cnv_session_forward_to(s, logits);
        if (st != CNV_OK)
            return from_session(e, s, st);
        float *z;
        int zb, k;
        if ((st = logits_of(e, s, logits, &zb, &k, &z)) != CNV_OK)
            return st;
        if (zb != b || (confusion && k > classes))
            return cnv_fail(e, CNV_ERR_SHAPE, "'%s' is %dx%d for a batch of %d and %d classes", logits, zb, k, b,
                            classes);
        for (int i = 0; i < len; i++) {
            const float *zi = z + (size_t)i * k;
            int best = 0;
            for (int j = 1; j < k; j++)
                if (zi[j] > zi[best])
                    best = j;
            int truth = labels[at + i];
            right += best == truth;
            if (confusion)
                confusion[(size_t)truth * classes + best]++;
        }
    }
    *correct = right;
    return CNV_OK;
}

cnv_status cnv_evaluate(cnv_model *m, const cnv_dataset *d, const char *logits, int batch, float mean, float std,
                        double *accuracy, int64_t *confusion, int classes)
{
    if (!m)
        return CNV_ERR_INVALID_ARG;
    if (!d)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "no dataset given");
    if (!logits)
        logits = "logits";
    if (batch < 1 || !(std > 0) || !isfinite(mean) || !isfinite(std))
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "batch %d, mean %g, std %g: batch and std must be > 0",
                        batch, mean, std);
    if (confusion && (classes < cnv_dataset_classes(d) || classes > 65536))
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "a confusion matrix of %d classes for a dataset of %d",
                        classes, cnv_dataset_classes(d));
    cnv_status st = check_fit(m, d, "evaluation");
    if (st != CNV_OK)
        return st;
    int n = cnv_dataset_count(d), h, w;
    cnv_dataset_shape(d, NULL, &h, &w);
    if (batch > n)
        batch = n;
    cnv_session *s = NULL;
    int *idx = cnv_calloc((size_t)batch, sizeof *idx);
    if (!idx)
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory");
    st = cnv_session_create(m, &s);
    if (st != CNV_OK) {
        cnv_free(idx);
        return cnv_fail(&m->err, st, "cannot create a session");
    }
    st = cnv_session_plan(s, batch, h, w);
    if (st != CNV_OK)
        st = from_session(&m->err, s, st);
    if (confusion && st == CNV_OK)
        memset(confusion, 0, (size_t)classes * (size_t)classes * sizeof *confusion);
    int64_t right = 0;
    if (st == CNV_OK)
        st = eval_planned(&m->err, s, logits, d, 0, n, batch, mean, std, idx, &right, confusion, classes);
    if (st == CNV_OK && accuracy)
        *accuracy = (double)right / n;
    cnv_session_free(s);
    cnv_free(idx);
    return st;
}

/* ---------------------------------------------------------------- trainer */

cnv_train_params cnv_train_default_params(void)
{
    cnv_train_params p;
    memset(&p, 0, sizeof p);
    p.logits = "logits";
    p.epochs = 10;
    p.batch = 64;
    p.lr = 0.05f;
    p.momentum = 0.9f;
    p.weight_decay = 5e-4f;
    p.mean = 0.2860f;
    p.std = 0.3530f;
    p.augment = CNV_AUG_SHIFT | CNV_AUG_FLIP;
    p.max_shift = 2;
    p.seed = 1;
    p.workers = 1;
    return p;
}

#define MAX_WORKERS 64

/* One trainable tensor: its values (in the model), its gradient in each
 * shard's session, and its momentum. */
typedef struct train_param {
    float *w, *v;
    float *g[MAX_WORKERS]; /* NULL when it gets no gradient */
    int64_t count;
    int decay; /* weights decay, biases (1-D) do not */
} train_param;

/* A slice of every batch, with its own session, run by its own thread:
 * images [start, start + len) of the batch; in the test pass, test images
 * [eval_start, eval_end). Writes only its own fields. */
typedef struct shard {
    cnv_session *s;
    int start, len, denom, k;
    const char *logits;
    const uint8_t *labels;
    float *dlogits;
    double loss_sum;
    int correct;
    /* test pass */
    const cnv_dataset *test;
    int eval_start, eval_end;
    float mean, std;
    int *idx;
    int64_t eval_correct;
    int evaluating;
    cnv_status st;
    cnv_err err;
} shard;

typedef struct trainer {
    cnv_model *m;
    const cnv_train_params *p;
    int n_shards;
    shard shards[MAX_WORKERS];
    int n_params;
    train_param *params;
    float *velocity; /* every param's momentum, back to back */
    int *order;
    uint8_t *labels;
} trainer;

static void trainer_free(trainer *t)
{
    for (int i = 0; i < t->n_shards; i++) {
        cnv_session_free(t->shards[i].s);
        cnv_free(t->shards[i].dlogits);
        cnv_free(t->shards[i].idx);
    }
    cnv_free(t->params);
    cnv_free(t->velocity);
    cnv_free(t->order);
    cnv_free(t->labels);
}

static cnv_status check_params(cnv_model *m, const cnv_train_params *p)
{
    if (p->epochs < 1 || p->batch < 1 || p->batch > 65536 || !(p->lr > 0) || !isfinite(p->lr) ||
        !(p->momentum >= 0 && p->momentum < 1) || !(p->weight_decay >= 0) || !isfinite(p->weight_decay) ||
        !(p->std > 0) || !isfinite(p->std) || !isfinite(p->mean) || p->max_shift < 0 || p->max_shift > 1024 ||
        p->max_train < 0 || p->max_test < 0 || p->workers < 0 || p->workers > MAX_WORKERS ||
        (p->augment & ~(CNV_AUG_SHIFT | CNV_AUG_FLIP)))
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG,
                        "training parameters out of range: epochs %d, batch %d, lr %g, momentum %g, weight decay "
                        "%g, std %g, max_shift %d, workers %d (at most %d), augment 0x%x",
                        p->epochs, p->batch, p->lr, p->momentum, p->weight_decay, p->std, p->max_shift,
                        p->workers, MAX_WORKERS, (unsigned)p->augment);
    return CNV_OK;
}

/* Splits the batch of b images into the shards, plans a session with
 * parameter gradients for each, and gathers the parameters, their
 * gradients and momentum buffers. */
static cnv_status trainer_init(trainer *t, int b, int h, int w, int k)
{
    cnv_model *m = t->m;
    cnv_status st;
    for (int i = 0, at = 0; i < t->n_shards; i++) {
        shard *sh = &t->shards[i];
        sh->start = at;
        sh->len = b / t->n_shards + (i < b % t->n_shards);
        at += sh->len;
        sh->denom = b;
        sh->k = k;
        sh->logits = t->p->logits ? t->p->logits : "logits";
        if ((st = cnv_session_create(m, &sh->s)) != CNV_OK)
            return cnv_fail(&m->err, st, "cannot create a session");
        cnv_session_set_param_grads(sh->s, 1);
        if (t->n_shards > 1) /* the shards are the threads */
            cnv_session_set_threads(sh->s, 1);
        if ((st = cnv_session_plan(sh->s, sh->len, h, w)) != CNV_OK)
            return from_session(&m->err, sh->s, st);
        sh->dlogits = cnv_calloc((size_t)sh->len * (size_t)k, sizeof(float));
        sh->idx = cnv_calloc((size_t)sh->len, sizeof(int));
        if (!sh->dlogits || !sh->idx)
            return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory for the loss gradient");
    }
    t->n_params = cnv_model_param_count(m);
    if (t->n_params < 1)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "the model has no float parameters to train");
    t->params = cnv_calloc((size_t)t->n_params, sizeof *t->params);
    if (!t->params)
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory");
    size_t total = 0;
    for (int i = 0; i < t->n_params; i++) {
        const char *name = cnv_model_param_name(m, i);
        train_param *tp = &t->params[i];
        cnv_shape sh;
        if ((st = cnv_model_param(m, name, &tp->w, &sh)) != CNV_OK)
            return st;
        tp->count = cnv_shape_count(&sh);
        tp->decay = sh.ndim > 1;
        /* A constant no node reads, or one behind a non-differentiable
         * op, has no gradient: it stays as it is. */
        for (int j = 0; j < t->n_shards; j++)
            if (cnv_session_grad(t->shards[j].s, name, &tp->g[j]) != CNV_OK)
                tp->g[0] = NULL;
        if (tp->count < 0 || !cnv_add_size(total, (size_t)tp->count, &total))
            return cnv_fail(&m->err, CNV_ERR_NOMEM, "the parameters are too large");
    }
    t->velocity = cnv_calloc(total, sizeof(float));
    t->labels = cnv_calloc((size_t)b, 1);
    if (!t->velocity || !t->labels)
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory for the optimizer state");
    float *v = t->velocity;
    for (int i = 0; i < t->n_params; i++) {
        t->params[i].v = v;
        v += t->params[i].count;
    }
    return CNV_OK;
}

/* One SGD step: g = sum of the shards' gradients (in shard order, so the
 * result depends on the shard count only) + wd * w for weights;
 * v = mu * v + g; w -= lr * v. */
static void sgd_step(trainer *t, float lr)
{
    float mu = t->p->momentum, wd = t->p->weight_decay;
    int ns = t->n_shards;
    for (int i = 0; i < t->n_params; i++) {
        train_param *tp = &t->params[i];
        if (!tp->g[0])
            continue;
        float d = tp->decay ? wd : 0.0f;
        for (int64_t j = 0; j < tp->count; j++) {
            float g = tp->g[0][j];
            for (int k = 1; k < ns; k++)
                g += tp->g[k][j];
            g += d * tp->w[j];
            tp->v[j] = mu * tp->v[j] + g;
            tp->w[j] -= lr * tp->v[j];
        }
    }
}

/* Learning rate at step i of n: linear warm-up over the first 2% of the
 * steps (large early steps on He-initialized weights can blow up), then
 * cosine decay to 0. */
static float lr_at(float lr, int64_t i, int64_t n)
{
    int64_t warm = n / 50 > 0 ? n / 50 : 1;
    if (i < warm)
        return lr * (float)(i + 1) / (float)warm;
    double f = (double)(i - warm) / (double)(n - warm > 0 ? n - warm : 1);
    return (float)(lr * 0.5 * (1.0 + cos(3.141592653589793 * f)));
}

/* A shard's work for one step (training) or for the test pass. */
static void *shard_run(void *arg)
{
    shard *sh = arg;
    if (sh->evaluating)
        sh->st = eval_planned(&sh->err, sh->s, sh->logits, sh->test, sh->eval_start, sh->eval_end, sh->len,
                              sh->mean, sh->std, sh->idx, &sh->eval_correct, NULL, 0);
    else
        sh->st = loss_backward(&sh->err, sh->s, sh->logits, sh->labels, sh->len, sh->k, sh->denom, sh->dlogits,
                               &sh->loss_sum, &sh->correct);
    return NULL;
}

/* Runs every shard: the first on this thread, the others on their own,
 * each with a session of its own; the model is only read. The first
 * failure, in shard order, is copied into the model's message. */
static cnv_status run_shards(trainer *t)
{
    pthread_t tid[MAX_WORKERS];
    int started[MAX_WORKERS] = {0};
    for (int i = 1; i < t->n_shards; i++)
        started[i] = pthread_create(&tid[i], NULL, shard_run, &t->shards[i]) == 0;
    shard_run(&t->shards[0]);
    for (int i = 1; i < t->n_shards; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            shard_run(&t->shards[i]); /* no thread to be had: run it here */
    }
    for (int i = 0; i < t->n_shards; i++)
        if (t->shards[i].st != CNV_OK)
            return cnv_fail(&t->m->err, t->shards[i].st, "%s", t->shards[i].err.msg);
    return CNV_OK;
}

/* Accuracy on the first n images of the test set, split between the
 * shards in contiguous ranges. */
static cnv_status test_pass(trainer *t, const cnv_dataset *test, int n, double *acc)
{
    for (int i = 0, at = 0; i < t->n_shards; i++) {
        shard *sh = &t->shards[i];
        int len = n / t->n_shards + (i < n % t->n_shards);
        sh->evaluating = 1;
        sh->test = test;
        sh->eval_start = at;
        sh->eval_end = at + len;
        sh->mean = t->p->mean;
        sh->std = t->p->std;
        sh->eval_correct = 0;
        at += len;
    }
    cnv_status st = run_shards(t);
    int64_t right = 0;
    for (int i = 0; i < t->n_shards; i++) {
        t->shards[i].evaluating = 0;
        right += t->shards[i].eval_correct;
    }
    *acc = (double)right / n;
    return st;
}

cnv_status cnv_train(cnv_model *m, const cnv_dataset *train, const cnv_dataset *test, const cnv_train_params *p)
{
    if (!m)
        return CNV_ERR_INVALID_ARG;
    if (!train || !p)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "no training set or parameters given");
    cnv_status st = check_params(m, p);
    if (st == CNV_OK)
        st = check_fit(m, train, "training");
    if (st == CNV_OK && test)
        st = check_fit(m, test, "test");
    if (st != CNV_OK)
        return st;
    const char *logits = p->logits ? p->logits : "logits";
    int n = cnv_dataset_count(train), h, w;
    if (p->max_train > 0 && p->max_train < n)
        n = p->max_train;
    int n_test = test ? cnv_dataset_count(test) : 0;
    if (p->max_test > 0 && p->max_test < n_test)
        n_test = p->max_test;
    cnv_dataset_shape(train, NULL, &h, &w);
    int b = p->batch < n ? p->batch : n;
    int steps = n / b; /* the tail of each shuffled epoch is left out */

    trainer t;
    memset(&t, 0, sizeof t);
    t.m = m;
    t.p = p;
    t.n_shards = p->workers < 1 ? 1 : p->workers;
    if (t.n_shards > b)
        t.n_shards = b;
    if (n_test > 0 && t.n_shards > n_test)
        t.n_shards = n_test;
    t.order = cnv_calloc((size_t)n, sizeof(int));
    if (!t.order)
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory");
    /* The logits' width is only known once planned: plan one image, read
     * it, then size the loss buffers. */
    int k = 0;
    {
        cnv_session *probe = NULL;
        st = cnv_session_create(m, &probe);
        if (st == CNV_OK && (st = cnv_session_plan(probe, 1, h, w)) != CNV_OK)
            st = from_session(&m->err, probe, st);
        float *z;
        int zb;
        if (st == CNV_OK)
            st = logits_of(&m->err, probe, logits, &zb, &k, &z);
        cnv_session_free(probe);
    }
    if (st == CNV_OK && k < cnv_dataset_classes(train))
        st = cnv_fail(&m->err, CNV_ERR_SHAPE, "'%s' has %d classes, the training labels go up to %d", logits, k,
                      cnv_dataset_classes(train) - 1);
    if (st == CNV_OK)
        st = trainer_init(&t, b, h, w, k);
    if (st != CNV_OK) {
        trainer_free(&t);
        return st;
    }

    rng r = {p->seed ^ 0x5DEECE66Dull};
    for (int i = 0; i < n; i++)
        t.order[i] = i;
    const uint8_t *labels = cnv_dataset_labels(train);
    int64_t total_steps = (int64_t)steps * p->epochs, step = 0;
    int shift = p->augment & CNV_AUG_SHIFT ? p->max_shift : 0, flip = (p->augment & CNV_AUG_FLIP) != 0;
    double t0 = cnv_now();
    for (int e = 0; e < p->epochs && st == CNV_OK; e++) {
        double te = cnv_now(), loss_sum = 0;
        int64_t right = 0;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)rng_below(&r, (uint64_t)i + 1), tmp = t.order[i];
            t.order[i] = t.order[j];
            t.order[j] = tmp;
        }
        for (int sb = 0; sb < steps && st == CNV_OK; sb++, step++) {
            const int *idx = t.order + (size_t)sb * b;
            for (int i = 0; i < b; i++)
                t.labels[i] = labels[idx[i]];
            /* Filled in shard order from one generator: the augmentation
             * does not depend on the shard count. */
            for (int i = 0; i < t.n_shards; i++) {
                shard *sh = &t.shards[i];
                sh->labels = t.labels + sh->start;
                fill_batch(cnv_session_input(sh->s), train, idx + sh->start, sh->len, p->mean, p->std,
                           shift || flip ? &r : NULL, shift, flip);
            }
            if ((st = run_shards(&t)) != CNV_OK)
                break;
            double loss = 0;
            for (int i = 0; i < t.n_shards; i++) {
                loss += t.shards[i].loss_sum;
                right += t.shards[i].correct;
            }
            loss /= b;
            if (!isfinite(loss)) {
                st = cnv_fail(&m->err, CNV_ERR_STATE,
                              "the loss diverged (%g) at epoch %d, step %d: lower the learning rate", loss, e + 1,
                              sb + 1);
                break;
            }
            sgd_step(&t, lr_at(p->lr, step, total_steps));
            loss_sum += loss;
        }
        if (st != CNV_OK)
            break;
        double train_end = cnv_now();
        cnv_train_epoch ep;
        memset(&ep, 0, sizeof ep);
        ep.epoch = e + 1;
        ep.epochs = p->epochs;
        ep.loss = loss_sum / steps;
        ep.train_acc = (double)right / ((double)steps * b);
        ep.images_per_s = (double)steps * b / (train_end - te > 1e-9 ? train_end - te : 1e-9);
        ep.test_acc = -1;
        if (n_test > 0 && (st = test_pass(&t, test, n_test, &ep.test_acc)) != CNV_OK)
            break;
        double end = cnv_now();
        ep.seconds = end - te;
        ep.total_seconds = end - t0;
        if (p->progress && p->progress(&ep, p->user))
            st = cnv_fail(&m->err, CNV_ERR_CANCELLED, "training cancelled after epoch %d of %d", e + 1, p->epochs);
    }
    trainer_free(&t);
    return st;
}
