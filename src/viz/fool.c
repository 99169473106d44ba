/* Fooling images (Szegedy et al. 2014): normalized gradient ascent on a
 * target's raw score from a real image until the network, reading the
 * 8-bit-rounded result, calls it the target. */
#include <math.h>
#include <string.h>

#include "viz/viz.h"

cnv_fool_params cnv_fool_params_default(void)
{
    cnv_fool_params p;
    memset(&p, 0, sizeof p);
    p.max_iters = 100;
    p.lr = 1.0f;
    return p;
}

/* Forward on the session's input; top-1 and the probabilities of the
 * top-1 and of the target into *top, *ptop, *ptarget. */
static cnv_status classify(const cnv_viz *v, int score, const float *sc, int K, int target,
                           float *prob, int *top, float *ptop, float *ptarget)
{
    cnv_status st = cnv_session_forward_to(v->s, score);
    if (st == CNV_OK)
        st = cnv_viz_finite(v, sc, (size_t)K, K);
    if (st != CNV_OK)
        return st;
    cnv_softmax(sc, K, prob);
    *top = cnv_argmax(sc, K);
    *ptop = prob[*top];
    *ptarget = prob[target];
    return CNV_OK;
}

cnv_status cnv_fool(cnv_session *s, const float *image, size_t count, int h, int w, int target,
                    const cnv_fool_params *pp, float *fooled, float *last_delta, float *sum_delta,
                    cnv_fool_result *r)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    cnv_err *err = cnv_session_err(s);
    if (!image || !fooled || !r || h <= 0 || w <= 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "fool: image %s, fooled %s, result %s, size %dx%d",
                        image ? "ok" : "NULL", fooled ? "ok" : "NULL", r ? "ok" : "NULL", h, w);
    memset(r, 0, sizeof *r);
    cnv_fool_params p = pp ? *pp : cnv_fool_params_default();
    if (p.max_iters < 0 || !isfinite(p.lr) || !(p.lr > 0.0f) || !(p.min_prob >= 0.0f) ||
        !(p.min_prob < 1.0f))
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "fool: max_iters %d (>= 0), lr %g (> 0), min_prob %g (0 <= p < 1)",
                        p.max_iters, (double)p.lr, (double)p.min_prob);
    cnv_viz v;
    int score;
    cnv_status st;
    if ((st = cnv_viz_begin(&v, s, "fool", p.preprocess, h, w)) != CNV_OK ||
        (st = cnv_viz_check_len(&v, "the image", count, 1)) != CNV_OK ||
        (st = cnv_viz_score_tensor(&v, &score)) != CNV_OK)
        return st;
    int c = v.c;
    const float *mean = v.pp.mean, *std = v.pp.std;
    if ((st = cnv_session_plan(s, 1, h, w)) != CNV_OK)
        return st;
    float *in = cnv_session_input(s), *sc;
    int K;
    if ((st = cnv_viz_scores(&v, score, 1, &sc, &K)) != CNV_OK)
        return st;
    if (target < 0 || target >= K)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "fool: target %d is outside 0..%d of '%s'",
                        target, K - 1, cnv_model_tensor_name(v.m, score));

    size_t plane = (size_t)h * w, item = plane * c;
    float *x = cnv_malloc(item * sizeof(float));
    float *prob = cnv_malloc((size_t)K * sizeof(float));
    float *seed = cnv_calloc((size_t)K, sizeof(float));
    if (!x || !prob || !seed) {
        st = cnv_fail(err, CNV_ERR_NOMEM, "fool: out of memory for a %dx%dx%d image", c, h, w);
        goto done;
    }
    seed[target] = 1.0f;
    if (sum_delta)
        memset(sum_delta, 0, item * sizeof(float));
    if (last_delta)
        memset(last_delta, 0, item * sizeof(float));

    int top;
    float ptop, ptarget;
    memcpy(in, image, item * sizeof(float));
    if ((st = classify(&v, score, sc, K, target, prob, &top, &ptop, &ptarget)) != CNV_OK)
        goto done;
    r->before_class = top;
    r->before_prob = ptop;

    /* x is the float image being changed; `fooled` its 8-bit rounding. Each
     * round classifies x, and when x is fooling, its rounding; the gradient
     * comes from the last image classified (the rounding when rounding
     * undid the change, which steers the next steps to survive it). */
    memcpy(x, image, item * sizeof(float));
    cnv_clamp_pixels(x, 1, c, h, w, mean, std);
    for (int it = 0;; it++) {
        if (it > 0) {
            memcpy(in, x, item * sizeof(float));
            if ((st = classify(&v, score, sc, K, target, prob, &top, &ptop, &ptarget)) != CNV_OK)
                goto done;
        }
        if ((top == target && ptarget >= p.min_prob) || it == p.max_iters) {
            memcpy(fooled, x, item * sizeof(float));
            cnv_quantize_pixels(fooled, 1, c, h, w, mean, std);
            memcpy(in, fooled, item * sizeof(float));
            if ((st = classify(&v, score, sc, K, target, prob, &top, &ptop, &ptarget)) != CNV_OK)
                goto done;
            r->after_class = top;
            r->after_prob = ptop;
            r->target_prob = ptarget;
            r->iters = it;
            if (top == target && ptarget >= p.min_prob) {
                r->fooled = 1;
                break;
            }
            if (it == p.max_iters)
                break;
        }
        float objective = sc[target];
        if ((st = cnv_session_backward(s, score, seed, (size_t)K)) != CNV_OK)
            goto done;
        const float *g = cnv_session_input_grad(s);
        if (!g) {
            st = cnv_fail(err, CNV_ERR_STATE, "fool: '%s' does not depend on the input",
                          cnv_model_tensor_name(v.m, score));
            goto done;
        }
        /* a step of lr in the space of x / unit_k (cnv_viz_unit) */
        double nrm = 0.0;
        for (size_t j = 0; j < item; j++) {
            double gz = (double)v.unit[j / plane] * g[j];
            nrm += gz * gz;
        }
        nrm = sqrt(nrm);
        float step = nrm > 0.0 ? (float)(p.lr / nrm) : 0.0f;
        for (size_t j = 0; j < item; j++) {
            float u = v.unit[j / plane], d = u * u * step * g[j];
            x[j] += d;
            if (last_delta)
                last_delta[j] = d;
            if (sum_delta)
                sum_delta[j] += d;
        }
        cnv_clamp_pixels(x, 1, c, h, w, mean, std);
        if (p.progress && p.progress(p.user, it + 1, p.max_iters, objective, ptarget)) {
            memcpy(fooled, x, item * sizeof(float));
            cnv_quantize_pixels(fooled, 1, c, h, w, mean, std);
            r->iters = it + 1;
            st = cnv_fail(err, CNV_ERR_CANCELLED, "fool: cancelled at step %d of %d", it + 1,
                          p.max_iters);
            goto done;
        }
    }

    /* the change as the saved files would show it, in gray levels */
    double sum = 0.0, mx = 0.0;
    for (int k = 0; k < c; k++) {
        float mk = mean[k], sk = std[k];
        for (size_t j = 0; j < plane; j++) {
            int d = cnv_pixel_byte(fooled[k * plane + j], mk, sk) -
                    cnv_pixel_byte(image[k * plane + j], mk, sk);
            double a = d < 0 ? -d : d;
            sum += a;
            if (a > mx)
                mx = a;
        }
    }
    r->linf = (float)mx;
    r->mean_abs = (float)(sum / (double)item);
    st = CNV_OK;
done:
    cnv_free(x);
    cnv_free(prob);
    cnv_free(seed);
    return st;
}
