/* Class model visualization (Simonyan, Vedaldi, Zisserman 2014, section 2):
 * batched ascent on raw class scores, by the Lucid recipe (lucid.c) or by
 * CS231n's gradient ascent with L2/L1 decay, jitter, blur and pixel
 * clamping. */
#include <math.h>
#include <string.h>

#include "viz/lucid.h"

cnv_classmodel_params cnv_classmodel_params_default(void)
{
    cnv_classmodel_params p;
    memset(&p, 0, sizeof p);
    p.iters = 300;
    p.lr = 0.0f;     /* automatic */
    p.normalize_grad = 1;
    p.l2 = 1e-3f;
    p.l1 = 0.0f;
    p.blur_every = 10;
    p.blur_sigma = 0.5f;
    p.jitter = -1;   /* automatic */
    p.clamp = 1;
    p.init_std = 1.0f;
    p.seed = 0;
    p.frame_every = 10;
    p.recipe = CNV_RECIPE_LUCID;
    p.lucid = cnv_lucid_params_default();
    return p;
}

void cnv_classmodel_params_resolve(cnv_classmodel_params *p, int c, int h, int w)
{
    if (!p || c <= 0 || h <= 0 || w <= 0)
        return;
    /* The defaults were tuned on 224x224 RGB (CS231n's 25 and 16); scaled so
     * that each value moves as much per step, and the roll covers the same
     * fraction of the image, at any size. */
    if (p->lr == 0.0f)
        p->lr = (float)(25.0 * sqrt((double)c * h * w / (3.0 * 224 * 224)));
    if (p->jitter < 0) {
        int j = (int)lround(16.0 * (h < w ? h : w) / 224.0);
        p->jitter = j < 1 ? 1 : j;
    }
}

static cnv_status check_params(const cnv_classmodel_params *p, cnv_err *err)
{
    if (p->frame_every < 0 || p->height < 0 || p->width < 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "classmodel: frame_every %d, size %dx%d (none negative)",
                        p->frame_every, p->height, p->width);
    if (!cnv_recipe_name(p->recipe))
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "classmodel: recipe %d is none of the cnv_recipe values",
                        (int)p->recipe);
    if (p->recipe == CNV_RECIPE_LUCID)
        return cnv_lucid_check(&p->lucid, "classmodel", err);
    if (p->iters < 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "classmodel: iters is %d (>= 0)", p->iters);
    if (!isfinite(p->lr) || !isfinite(p->l2) || !isfinite(p->l1) || !isfinite(p->blur_sigma) ||
        !isfinite(p->init_std) || p->l2 < 0 || p->l1 < 0 || p->blur_sigma < 0 || p->init_std < 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "classmodel: lr %g, l2 %g, l1 %g, blur_sigma %g, init_std %g (finite; "
                        "all but lr >= 0)",
                        (double)p->lr, (double)p->l2, (double)p->l1, (double)p->blur_sigma,
                        (double)p->init_std);
    if (p->blur_every < 0 || p->jitter < -1)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "classmodel: blur_every %d, jitter %d (>= 0; jitter -1: automatic)",
                        p->blur_every, p->jitter);
    return CNV_OK;
}

/* The objective: the raw score of each item's class, or its softmax
 * probability. class_pass runs one forward and backward of it for both
 * recipes; class_grad hands the result to the Lucid loop. */
typedef struct class_objective {
    const cnv_viz *v;
    const int *classes;
    int score, B, K, softmax;
    float *sc;     /* the session's B x K scores */
    float *seed;   /* B x K */
    float *prob;   /* K */
    int *cls_of;   /* B */
} class_objective;

static cnv_status class_pass(class_objective *o, int first, int used, double *obj, double *pr)
{
    int K = o->K;
    cnv_status st;
    if ((st = cnv_session_forward_to(o->v->s, o->score)) != CNV_OK ||
        (st = cnv_viz_finite(o->v, o->sc, (size_t)used * K, K)) != CNV_OK)
        return st;
    /* spare items of a fixed batch get a zero seed */
    for (int i = 0; i < o->B; i++)
        o->cls_of[i] = i < used ? o->classes[first + i] : -1;
    cnv_seed_classes(o->seed, o->B, K, o->cls_of);
    if (o->softmax) {
        /* dp_c/dz_k = p_c (1[k == c] - p_k): the same backward, seeded with
         * the softmax's Jacobian row, not a one-hot */
        for (int i = 0; i < used; i++) {
            float *row = o->seed + (size_t)i * K;
            cnv_softmax(o->sc + (size_t)i * K, K, o->prob);
            float pc = o->prob[o->cls_of[i]];
            for (int k = 0; k < K; k++)
                row[k] = pc * ((k == o->cls_of[i] ? 1.0f : 0.0f) - o->prob[k]);
        }
    }
    if ((st = cnv_session_backward(o->v->s, o->score, o->seed, (size_t)o->B * K)) != CNV_OK)
        return st;
    for (int i = 0; i < used; i++) {
        const float *row = o->sc + (size_t)i * K;
        cnv_softmax(row, K, o->prob);
        *obj += row[o->cls_of[i]];
        *pr += o->prob[o->cls_of[i]];
    }
    return CNV_OK;
}

static cnv_status input_grad(const class_objective *o, float **g)
{
    *g = cnv_session_input_grad(o->v->s);
    if (!*g)
        return cnv_fail(o->v->err, CNV_ERR_STATE, "classmodel: '%s' does not depend on the input",
                        cnv_model_tensor_name(o->v->m, o->score));
    return CNV_OK;
}

/* cnv_lucid_grad_fn */
static cnv_status class_grad(void *arg, int first, int used, float **grad, double *obj, double *pr)
{
    class_objective *o = arg;
    cnv_status st = class_pass(o, first, used, obj, pr);
    return st != CNV_OK ? st : input_grad(o, grad);
}

/* CS231n's ascent (cnv_classmodel_params, CNV_RECIPE_CS231N) */
static cnv_status cs231n(const cnv_viz *v, const cnv_classmodel_params *pp, class_objective *o, int n,
                         float *images)
{
    cnv_classmodel_params p = *pp;
    cnv_session *s = v->s;
    cnv_err *err = v->err;
    int c = v->c, h = v->h, w = v->w, B = o->B;
    const float *mean = v->pp.mean, *std = v->pp.std;
    cnv_classmodel_params_resolve(&p, c, h, w);
    float *in = cnv_session_input(s);
    size_t plane = (size_t)h * w, item = plane * c, batch = item * (size_t)B, nscratch;
    if (!(nscratch = cnv_blur_scratch(h, w, p.blur_sigma)))
        return cnv_fail(err, CNV_ERR_NOMEM, "classmodel: sizes overflow");
    float *scratch = cnv_malloc(nscratch * sizeof(float));
    int *dy = cnv_malloc((size_t)n * 2 * sizeof(int));
    cnv_rng *rng = cnv_malloc((size_t)n * sizeof(cnv_rng));
    cnv_status st;
    if (!scratch || !dy || !rng) {
        st = cnv_fail(err, CNV_ERR_NOMEM, "classmodel: out of memory for %d images of %dx%dx%d",
                      n, c, h, w);
        goto done;
    }
    int *dx = dy + n;

    for (int i = 0; i < n; i++) {
        cnv_rng_seed2(&rng[i], p.seed, (uint64_t)o->classes[i]);
        float *x = images + i * item;
        for (size_t j = 0; j < item; j++)
            x[j] = v->unit[j / plane] * p.init_std * cnv_rng_normal(&rng[i]);
    }
    if (p.clamp)
        cnv_clamp_pixels(images, n, c, h, w, mean, std);
    if (p.frame && p.frame_every > 0 && p.frame(p.user, 0, images, n, c, h, w)) {
        st = cnv_fail(err, CNV_ERR_CANCELLED, "classmodel: cancelled before the first step");
        goto done;
    }

    for (int t = 1; t <= p.iters; t++) {
        for (int i = 0; i < n; i++) {
            dy[i] = cnv_rng_int(&rng[i], -p.jitter, p.jitter);
            dx[i] = cnv_rng_int(&rng[i], -p.jitter, p.jitter);
        }
        double obj = 0.0, pr = 0.0;
        for (int first = 0; first < n; first += B) {
            int used = n - first < B ? n - first : B;
            /* Ascend at the rolled image. Rolling the gradient back instead
             * of the image is the same step, since the decay terms are
             * pointwise. Spare items of a fixed batch are zeros. */
            memset(in, 0, batch * sizeof(float));
            memcpy(in, images + first * item, (size_t)used * item * sizeof(float));
            cnv_roll_nchw(in, used, c, h, w, dy + first, dx + first, scratch);
            float *g;
            if ((st = class_pass(o, first, used, &obj, &pr)) != CNV_OK || (st = input_grad(o, &g)) != CNV_OK)
                goto done;
            for (int i = 0; i < used; i++) {
                float *gi = g + i * item, *x = images + (first + i) * item;
                cnv_roll_chw(gi, c, h, w, -dy[first + i], -dx[first + i], scratch);
                /* in the space of z = x / unit_k (cnv_viz_unit): the
                 * gradient is unit_k * g, the penalties act on z, and a
                 * step dz moves x by unit_k * dz */
                double nrm = 0.0;
                for (int k = 0; k < c; k++) {
                    float u = v->unit[k];
                    for (size_t j = k * plane; j < (k + 1) * plane; j++) {
                        float z = x[j] / u, d = u * gi[j] - 2.0f * p.l2 * z;
                        if (p.l1 > 0.0f)
                            d -= p.l1 * (z > 0.0f ? 1.0f : z < 0.0f ? -1.0f : 0.0f);
                        gi[j] = d;
                        nrm += (double)d * d;
                    }
                }
                nrm = sqrt(nrm);
                float step = p.lr;
                if (p.normalize_grad)
                    step = nrm > 0.0 ? (float)(p.lr / nrm) : 0.0f;
                for (size_t j = 0; j < item; j++)
                    x[j] += v->unit[j / plane] * step * gi[j];
            }
        }
        if (p.clamp)
            cnv_clamp_pixels(images, n, c, h, w, mean, std);
        if (p.blur_every > 0 && t % p.blur_every == 0)
            for (int i = 0; i < n; i++)
                cnv_blur_chw(images + i * item, c, h, w, p.blur_sigma, scratch);
        if (p.progress && p.progress(p.user, t, p.iters, (float)(obj / n), (float)(pr / n))) {
            st = cnv_fail(err, CNV_ERR_CANCELLED, "classmodel: cancelled at step %d of %d", t,
                          p.iters);
            goto done;
        }
        if (p.frame && p.frame_every > 0 && (t % p.frame_every == 0 || t == p.iters) &&
            p.frame(p.user, t, images, n, c, h, w)) {
            st = cnv_fail(err, CNV_ERR_CANCELLED, "classmodel: cancelled at step %d of %d", t,
                          p.iters);
            goto done;
        }
    }
    st = CNV_OK;
done:
    cnv_free(scratch);
    cnv_free(dy);
    cnv_free(rng);
    return st;
}

cnv_status cnv_classmodel(cnv_session *s, int n, const int *classes, const cnv_classmodel_params *pp,
                          float *images, size_t count, float *scores, float *probs)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    cnv_err *err = cnv_session_err(s);
    if (!classes || !images || n <= 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "classmodel: classes %s, images %s, n %d",
                        classes ? "ok" : "NULL", images ? "ok" : "NULL", n);
    cnv_classmodel_params p = pp ? *pp : cnv_classmodel_params_default();
    cnv_status st = check_params(&p, err);
    if (st != CNV_OK)
        return st;
    cnv_viz v;
    int score;
    if ((st = cnv_viz_begin(&v, s, "classmodel", p.preprocess, p.height, p.width)) != CNV_OK ||
        (st = cnv_viz_check_len(&v, "images", count, n)) != CNV_OK || (st = cnv_viz_score_tensor(&v, &score)) != CNV_OK)
        return st;
    int c = v.c, h = v.h, w = v.w;
    /* B images at a time: all of them, or the batch a model fixes */
    int B = cnv_viz_batch(&v, n);
    if ((st = cnv_session_plan(s, B, h, w)) != CNV_OK)
        return st;
    float *in = cnv_session_input(s), *sc;
    int K;
    if ((st = cnv_viz_scores(&v, score, B, &sc, &K)) != CNV_OK)
        return st;
    for (int i = 0; i < n; i++)
        if (classes[i] < 0 || classes[i] >= K)
            return cnv_fail(err, CNV_ERR_INVALID_ARG,
                            "classmodel: class %d of item %d is outside 0..%d of '%s'",
                            classes[i], i, K - 1, cnv_model_tensor_name(v.m, score));

    size_t item = (size_t)h * w * c, batch, nk;
    if (!cnv_mul_size(item, (size_t)B, &batch) || !cnv_mul_size((size_t)B, (size_t)K, &nk))
        return cnv_fail(err, CNV_ERR_NOMEM, "classmodel: sizes overflow");
    class_objective o = {
        .v = &v, .classes = classes, .score = score, .B = B, .K = K, .softmax = p.softmax, .sc = sc,
        .seed = cnv_malloc(nk * sizeof(float)),
        .prob = cnv_malloc((size_t)K * sizeof(float)),
        .cls_of = cnv_malloc((size_t)B * sizeof(int)),
    };
    uint64_t *streams = cnv_malloc((size_t)n * sizeof *streams);
    if (!o.seed || !o.prob || !o.cls_of || !streams) {
        st = cnv_fail(err, CNV_ERR_NOMEM, "classmodel: out of memory for %d images of %dx%dx%d",
                      n, c, h, w);
        goto done;
    }
    if (p.recipe == CNV_RECIPE_CS231N) {
        st = cs231n(&v, &p, &o, n, images);
    } else {
        for (int i = 0; i < n; i++)
            streams[i] = (uint64_t)classes[i];
        cnv_lucid_job job = {
            .v = &v, .lucid = &p.lucid, .n = n, .batch = B, .seed = p.seed, .streams = streams,
            .grad = class_grad, .arg = &o, .progress = p.progress, .frame = p.frame,
            .frame_every = p.frame_every, .user = p.user,
        };
        st = cnv_lucid_run(&job, images, NULL);
    }
    if (st != CNV_OK)
        goto done;

    for (int first = 0; (scores || probs) && first < n; first += B) {
        int used = n - first < B ? n - first : B;
        memset(in, 0, batch * sizeof(float));
        memcpy(in, images + first * item, (size_t)used * item * sizeof(float));
        if ((st = cnv_session_forward_to(s, score)) != CNV_OK ||
            (st = cnv_viz_finite(&v, sc, (size_t)used * K, K)) != CNV_OK)
            goto done;
        for (int i = 0; i < used; i++) {
            const float *row = sc + (size_t)i * K;
            int k = classes[first + i];
            if (scores)
                scores[first + i] = row[k];
            if (probs) {
                cnv_softmax(row, K, o.prob);
                probs[first + i] = o.prob[k];
            }
        }
    }
    st = CNV_OK;
done:
    cnv_free(o.seed);
    cnv_free(o.prob);
    cnv_free(o.cls_of);
    cnv_free(streams);
    return st;
}
