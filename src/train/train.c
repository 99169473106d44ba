/* Training with the engine's own backward: softmax cross-entropy on the
 * logits (outside the graph), mini-batch SGD with momentum over
 * data-parallel shards (one session and thread each), and evaluation
 * (accuracy, confusion matrix). The model it trains by default comes from
 * vgg.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <pthread.h>

#include "core/clock.h"
#include "core/numeric.h"
#include "core/rng.h"
#include "core/shape.h"
#include "engine/engine.h"

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

/* Copies a failing session's message into e (unless e is the session's). */
static cnv_status from_session(cnv_err *e, cnv_session *s, cnv_status st)
{
    return e == cnv_session_err(s) ? st : cnv_fail(e, st, "%s", cnv_session_errmsg(s));
}

/* The planned logits tensor, checked to be (b, k). */
static cnv_status logits_of(cnv_err *e, cnv_session *s, int t, int *b, int *k, float **data)
{
    const char *name = cnv_model_tensor_name(cnv_session_model(s), t);
    cnv_shape sh;
    cnv_status st = cnv_session_tensor(s, t, data, &sh);
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
static cnv_status loss_backward(cnv_err *e, cnv_session *s, int logits, const uint8_t *labels, int b, int k,
                                int denom, float *dlogits, double *loss_sum, int *correct)
{
    cnv_status st = cnv_session_forward(s);
    if (st != CNV_OK)
        return from_session(e, s, st);
    float *z;
    int zb, zk;
    if ((st = logits_of(e, s, logits, &zb, &zk, &z)) != CNV_OK)
        return st;
    if (zb != b || zk != k)
        return cnv_fail(e, CNV_ERR_SHAPE, "'%s' is %dx%d, the plan said %dx%d",
                        cnv_model_tensor_name(cnv_session_model(s), logits), zb, zk, b, k);
    softmax_xent(z, labels, b, k, denom, dlogits, loss_sum, correct);
    st = cnv_session_backward(s, logits, dlogits, (size_t)b * (size_t)k);
    return st == CNV_OK ? CNV_OK : from_session(e, s, st);
}

cnv_status cnv_train_loss_backward(cnv_session *s, int logits, const uint8_t *labels, int n_labels,
                                   double *loss, int *correct)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    cnv_err *e = cnv_session_err(s);
    if (!labels)
        return cnv_fail(e, CNV_ERR_INVALID_ARG, "no labels given");
    /* The logits' planned shape is known before forward: check the labels
     * against it first, so a bad label leaves no half-done step. */
    float *z;
    int b, k;
    cnv_status st = logits_of(e, s, logits, &b, &k, &z);
    if (st != CNV_OK)
        return st;
    const char *name = cnv_model_tensor_name(cnv_session_model(s), logits);
    if (n_labels != b)
        return cnv_fail(e, CNV_ERR_INVALID_ARG, "%d labels for a batch of %d ('%s')", n_labels, b, name);
    for (int i = 0; i < b; i++)
        if (labels[i] >= k)
            return cnv_fail(e, CNV_ERR_INVALID_ARG, "label %d of image %d is not below the %d classes of '%s'",
                            labels[i], i, k, name);
    float *dz = cnv_calloc((size_t)b * (size_t)k, sizeof *dz);
    if (!dz)
        return cnv_fail(e, CNV_ERR_NOMEM, "out of memory for the gradient of '%s'", name);
    double sum;
    int right;
    st = loss_backward(e, s, logits, labels, b, k, b, dz, &sum, &right);
    cnv_free(dz);
    if (st == CNV_OK && loss)
        *loss = sum / b;
    if (st == CNV_OK && correct)
        *correct = right;
    return st;
}

/* ---------------------------------------------------------------- batches */

/* How pixels are normalized: x = (pixel/255 - mean[k]) / std[k] for
 * channel k, the last of the n given standing for any further channel
 * (training gives one pair for every channel). */
typedef struct norm {
    const float *mean, *std;
    int n; /* 1..3 */
} norm;

/* Writes images idx[0..b) of d into x (b,c,h,w), normalized. With r, each
 * image is shifted by up to shift pixels (zero pixels come in) and flipped
 * left-right with probability 1/2 when flip is set. */
static void fill_batch(float *x, const cnv_dataset *d, const int *idx, int b, const norm *nm, uint64_t *r,
                       int shift, int flip)
{
    int c = 0, h = 0, w = 0;
    cnv_dataset_shape(d, &c, &h, &w);
    const uint8_t *px = cnv_dataset_pixels(d);
    size_t plane = (size_t)h * (size_t)w, img = (size_t)c * plane;
    /* pixel/255 -> normalized, as a table: exact and branch-free */
    float lut[3][256];
    for (int k = 0; k < nm->n; k++)
        for (int v = 0; v < 256; v++)
            lut[k][v] = (float)(((double)v / 255.0 - nm->mean[k]) / nm->std[k]);
    for (int i = 0; i < b; i++) {
        const uint8_t *src = px + (size_t)idx[i] * img;
        float *dst = x + (size_t)i * img;
        int dy = 0, dx = 0, fl = 0;
        if (r) {
            if (shift > 0) {
                dy = (int)cnv_splitmix64_below(r, 2 * (uint64_t)shift + 1) - shift;
                dx = (int)cnv_splitmix64_below(r, 2 * (uint64_t)shift + 1) - shift;
            }
            if (flip)
                fl = (int)(cnv_splitmix64(r) >> 63);
        }
        for (int ch = 0; ch < c; ch++) {
            const float *t = lut[ch < nm->n ? ch : nm->n - 1];
            const uint8_t *sp = src + (size_t)ch * plane;
            float *dp = dst + (size_t)ch * plane;
            if (!dy && !dx && !fl) {
                for (size_t j = 0; j < plane; j++)
                    dp[j] = t[sp[j]];
                continue;
            }
            for (int y = 0; y < h; y++) {
                int sy = y - dy;
                for (int xx = 0; xx < w; xx++) {
                    int sx = (fl ? w - 1 - xx : xx) - dx;
                    int in = sy >= 0 && sy < h && sx >= 0 && sx < w;
                    dp[(size_t)y * w + xx] = t[in ? sp[(size_t)sy * w + sx] : 0];
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
        return cnv_fail(cnv_model_err(m), CNV_ERR_INVALID_ARG, "the %s set is empty", what);
    if (cnv_model_input_count(m) != 1)
        return cnv_fail(cnv_model_err(m), CNV_ERR_SHAPE, "the model has %d inputs, training needs one image input",
                        cnv_model_input_count(m));
    cnv_shape in_shape;
    cnv_model_input_shape(m, 0, &in_shape);
    const cnv_shape *in = &in_shape;
    int c, h, w;
    cnv_dataset_shape(d, &c, &h, &w);
    if (in->ndim != 4 || in->dims[1] != c || (in->dims[2] != -1 && in->dims[2] != h) ||
        (in->dims[3] != -1 && in->dims[3] != w)) {
        char buf[128];
        return cnv_fail(cnv_model_err(m), CNV_ERR_SHAPE, "the %s images are %dx%dx%d, the model's input is %s", what, c,
                        h, w, cnv_shape_str(in, buf, sizeof buf));
    }
    return CNV_OK;
}

/* Runs the planned session (batch b) over images [start, end) of d;
 * counts correct predictions and fills confusion (classes x classes) when
 * given. A last partial batch is padded with image `start` and its extra
 * outputs ignored, so the plan never changes. idx has b entries. */
static cnv_status eval_planned(cnv_err *e, cnv_session *s, int logits, const cnv_dataset *d, int start, int end,
                               int b, const norm *nm, int *idx, int64_t *correct, int64_t *confusion,
                               int classes)
{
    const uint8_t *labels = cnv_dataset_labels(d);
    float *x = cnv_session_input(s);
    int64_t right = 0;
    for (int at = start; at < end; at += b) {
        int len = end - at < b ? end - at : b;
        for (int i = 0; i < b; i++)
            idx[i] = i < len ? at + i : start;
        fill_batch(x, d, idx, b, nm, NULL, 0, 0);
        cnv_status st = cnv_session_forward_to(s, logits);
        if (st != CNV_OK)
            return from_session(e, s, st);
        float *z;
        int zb, k;
        if ((st = logits_of(e, s, logits, &zb, &k, &z)) != CNV_OK)
            return st;
        if (zb != b || (confusion && k > classes))
            return cnv_fail(e, CNV_ERR_SHAPE, "'%s' is %dx%d for a batch of %d and %d classes",
                            cnv_model_tensor_name(cnv_session_model(s), logits), zb, k, b, classes);
        for (int i = 0; i < len; i++) {
            int best = cnv_argmax(z + (size_t)i * k, k);
            int truth = labels[at + i];
            right += best == truth;
            if (confusion)
                confusion[(size_t)truth * classes + best]++;
        }
    }
    *correct = right;
    return CNV_OK;
}

cnv_status cnv_evaluate(cnv_model *m, const cnv_dataset *d, int logits, int batch, const cnv_preprocess *pp,
                        double *accuracy, int64_t *confusion, int classes)
{
    if (!m)
        return CNV_ERR_INVALID_ARG;
    if (!d)
        return cnv_fail(cnv_model_err(m), CNV_ERR_INVALID_ARG, "no dataset given");
    if (logits < 0)
        logits = cnv_model_score_tensor(m);
    if (logits < 0 || logits >= cnv_model_tensor_count(m))
        return cnv_fail(cnv_model_err(m), CNV_ERR_NOT_FOUND, "no class-score tensor %d", logits);
    if (batch < 1)
        return cnv_fail(cnv_model_err(m), CNV_ERR_INVALID_ARG, "batch %d: must be > 0", batch);
    char msg[CNV_ERR_LEN];
    cnv_preprocess own;
    cnv_status st = pp ? cnv_preprocess_check(pp, msg, sizeof msg) : cnv_model_preprocess(m, &own, msg, sizeof msg);
    if (st != CNV_OK)
        return cnv_fail(cnv_model_err(m), st, "%s", msg);
    if (!pp)
        pp = &own;
    int c;
    cnv_dataset_shape(d, &c, NULL, NULL);
    if (pp->channels != c)
        return cnv_fail(cnv_model_err(m), CNV_ERR_SHAPE, "the preprocessing has %d channels, the images %d", pp->channels, c);
    norm nm = {pp->mean, pp->std, pp->channels};
    if (confusion && (classes < cnv_dataset_classes(d) || classes > 65536))
        return cnv_fail(cnv_model_err(m), CNV_ERR_INVALID_ARG, "a confusion matrix of %d classes for a dataset of %d",
                        classes, cnv_dataset_classes(d));

    st = check_fit(m, d, "evaluation");
    if (st != CNV_OK)
        return st;
    int n = cnv_dataset_count(d), h, w;
    cnv_dataset_shape(d, NULL, &h, &w);
    if (batch > n)
        batch = n;
    cnv_session *s = NULL;
    int *idx = cnv_calloc((size_t)batch, sizeof *idx);
    if (!idx)
        return cnv_fail(cnv_model_err(m), CNV_ERR_NOMEM, "out of memory");
    st = cnv_session_create(m, &s);
    if (st != CNV_OK) {
        cnv_free(idx);
        return cnv_fail(cnv_model_err(m), st, "cannot create a session");
    }
    st = cnv_session_plan(s, batch, h, w);
    if (st != CNV_OK)
        st = from_session(cnv_model_err(m), s, st);
    if (confusion && st == CNV_OK)
        memset(confusion, 0, (size_t)classes * (size_t)classes * sizeof *confusion);
    int64_t right = 0;
    if (st == CNV_OK)
        st = eval_planned(cnv_model_err(m), s, logits, d, 0, n, batch, &nm, idx, &right, confusion, classes);
    if (st == CNV_OK && accuracy)
        *accuracy = (double)right / n;
    cnv_session_free(s);
    cnv_free(idx);
    return st;
}

/* ---------------------------------------------------------------- trainer */

cnv_train_params cnv_train_params_default(void)
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
    int logits;
    const uint8_t *labels;
    float *dlogits;
    double loss_sum;
    int correct;
    /* test pass */
    const cnv_dataset *test;
    int eval_start, eval_end;
    norm nm;
    int *idx;
    int64_t eval_correct;
    int evaluating;
    cnv_status st;
    cnv_err err;
} shard;

typedef struct trainer {
    cnv_model *m;
    const cnv_train_params *p;
    int logits; /* the tensor the loss reads */
    norm nm;    /* p's mean and std for every channel */
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
        return cnv_fail(cnv_model_err(m), CNV_ERR_INVALID_ARG,
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
        sh->logits = t->logits;
        if ((st = cnv_session_create(m, &sh->s)) != CNV_OK)
            return cnv_fail(cnv_model_err(m), st, "cannot create a session");
        cnv_session_set_param_grads(sh->s, 1);
        if (t->n_shards > 1) /* the shards are the threads */
            cnv_session_set_threads(sh->s, 1);
        if ((st = cnv_session_plan(sh->s, sh->len, h, w)) != CNV_OK)
            return from_session(cnv_model_err(m), sh->s, st);
        sh->dlogits = cnv_calloc((size_t)sh->len * (size_t)k, sizeof(float));
        sh->idx = cnv_calloc((size_t)sh->len, sizeof(int));
        if (!sh->dlogits || !sh->idx)
            return cnv_fail(cnv_model_err(m), CNV_ERR_NOMEM, "out of memory for the loss gradient");
    }
    t->n_params = cnv_model_param_count(m);
    if (t->n_params < 1)
        return cnv_fail(cnv_model_err(m), CNV_ERR_INVALID_ARG, "the model has no float parameters to train");
    t->params = cnv_calloc((size_t)t->n_params, sizeof *t->params);
    if (!t->params)
        return cnv_fail(cnv_model_err(m), CNV_ERR_NOMEM, "out of memory");
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
            if (cnv_session_grad(t->shards[j].s, cnv_model_tensor_index(m, name), &tp->g[j]) != CNV_OK)
                tp->g[0] = NULL;
        if (tp->count < 0 || !cnv_add_size(total, (size_t)tp->count, &total))
            return cnv_fail(cnv_model_err(m), CNV_ERR_NOMEM, "the parameters are too large");
    }
    t->velocity = cnv_calloc(total, sizeof(float));
    t->labels = cnv_calloc((size_t)b, 1);
    if (!t->velocity || !t->labels)
        return cnv_fail(cnv_model_err(m), CNV_ERR_NOMEM, "out of memory for the optimizer state");
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
                              &sh->nm, sh->idx, &sh->eval_correct, NULL, 0);
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
            return cnv_fail(cnv_model_err(t->m), t->shards[i].st, "%s", t->shards[i].err.msg);
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
        sh->nm = t->nm;
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
        return cnv_fail(cnv_model_err(m), CNV_ERR_INVALID_ARG, "no training set or parameters given");
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
        return cnv_fail(cnv_model_err(m), CNV_ERR_NOMEM, "out of memory");
    /* The logits' width, from the shapes of a one-image plan (no session:
     * nothing is allocated for it). */
    int k = 0;
    t.logits = cnv_model_tensor_index(m, logits);
    t.nm = (norm){&p->mean, &p->std, 1};
    if (t.logits < 0) {
        st = cnv_fail(cnv_model_err(m), CNV_ERR_NOT_FOUND, "no tensor named '%s' (the logits the loss reads)", logits);
    } else {
        int nt = cnv_model_tensor_count(m);
        cnv_shape in, *shapes = cnv_calloc((size_t)nt + 1, sizeof *shapes);
        char msg[CNV_ERR_LEN];
        int c;
        cnv_dataset_shape(train, &c, NULL, NULL);
        cnv_shape4(&in, 1, c, h, w);
        if (!shapes)
            st = cnv_fail(cnv_model_err(m), CNV_ERR_NOMEM, "out of memory");
        else if ((st = cnv_model_infer_shapes(m, 1, &in, shapes, nt, NULL, 0, msg, sizeof msg)) != CNV_OK)
            st = cnv_fail(cnv_model_err(m), st, "%s", msg);
        else if (shapes[t.logits].ndim != 2 || shapes[t.logits].dims[1] < 1 || shapes[t.logits].dims[1] > INT32_MAX)
            st = cnv_fail(cnv_model_err(m), CNV_ERR_SHAPE, "'%s' has shape %s, expected batch x classes", logits,
                          cnv_shape_str(&shapes[t.logits], msg, sizeof msg));
        else
            k = (int)shapes[t.logits].dims[1];
        cnv_free(shapes);
    }
    if (st == CNV_OK && k < cnv_dataset_classes(train))
        st = cnv_fail(cnv_model_err(m), CNV_ERR_SHAPE, "'%s' has %d classes, the training labels go up to %d", logits, k,
                      cnv_dataset_classes(train) - 1);
    if (st == CNV_OK)
        st = trainer_init(&t, b, h, w, k);
    if (st != CNV_OK) {
        trainer_free(&t);
        return st;
    }

    uint64_t r = p->seed ^ 0x5DEECE66Dull; /* the trainer's splitmix64 stream */
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
            int j = (int)cnv_splitmix64_below(&r, (uint64_t)i + 1), tmp = t.order[i];
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
                fill_batch(cnv_session_input(sh->s), train, idx + sh->start, sh->len, &t.nm,
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
                st = cnv_fail(cnv_model_err(m), CNV_ERR_STATE,
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
        if (p->progress && p->progress(p->user, &ep))
            st = cnv_fail(cnv_model_err(m), CNV_ERR_CANCELLED, "training cancelled after epoch %d of %d", e + 1, p->epochs);
    }
    trainer_free(&t);
    return st;
}
