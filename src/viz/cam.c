/* Class activation maps on a layer A (K x u x v): a weighted sum of A's
 * channels, ReLU, upsampled to the image. The weights come from the
 * gradient dS/dA (Grad-CAM, Grad-CAM++, XGrad-CAM; LayerCAM weighs each
 * position), from A alone (Eigen-CAM), or from forward passes with the
 * image masked by each channel (Score-CAM) or with each channel zeroed
 * (Ablation-CAM). Guided Grad-CAM multiplies Grad-CAM by guided
 * backpropagation. */
#include <math.h>
#include <string.h>

#include "viz/saliency.h"

#define CAM_EPS 1e-7   /* Grad-CAM++'s and XGrad-CAM's denominators */
#define MASK_EPS 1e-8  /* Score-CAM's mask normalization */

/* The last layer (an activation or feature map) or join of branches with
 * a spatial extent that every path from the image to the target passes
 * through: a block's output (an Inception block's concatenation, a
 * residual sum), never one of its branches, nor a pooling of it (coarser,
 * and no longer what the convolutions saw). Checked from the target
 * backwards: the first one found is the last. */
static int default_cam_layer(cnv_session *s, const cnv_model *m, int score, unsigned char *mark)
{
    for (int i = cnv_model_node_count(m) - 1; i >= 0; i--) {
        int t = cnv_model_node_output(m, i);
        cnv_shape sh;
        if (t == score || (!cnv_model_node_is_layer(m, i) && cnv_model_node_joins(m, i) < 2) ||
            cnv_session_tensor(s, t, NULL, &sh) != CNV_OK)
            continue;
        /* both sizes above 1: an NHWC tensor of a pooled map (ConvNeXt's
         * head transposes 1 x C x 1 x 1 to 1 x 1 x 1 x C) is not a map */
        if (sh.ndim == 4 && sh.dims[2] > 1 && sh.dims[3] > 1 && cnv_model_all_paths_through(m, t, score, mark))
            return t;
    }
    return -1;
}

cnv_status sal_cam_layer(sal_ctx *c, int *t)
{
    const cnv_model *m = c->v.m;
    int score = c->tg.t;
    const char *score_name = cnv_model_tensor_name(m, score);
    unsigned char *mark = cnv_malloc((size_t)cnv_model_tensor_count(m) + 1);
    if (!mark)
        return cnv_fail(c->v.err, CNV_ERR_NOMEM, "saliency: out of memory");
    cnv_status st = CNV_OK;
    const char *what = cnv_saliency_method_name(c->p.method);
    if (c->p.layer) {
        char msg[256];
        if ((st = cnv_model_find_layer(m, c->p.layer, t, msg, sizeof msg)) != CNV_OK)
            st = cnv_fail(c->v.err, st, "%s: %s", what, msg);
        else if (*t == score || !cnv_model_feeds(m, *t, score, mark))
            st = cnv_fail(c->v.err, CNV_ERR_INVALID_ARG, "%s: layer '%s' does not lead to the target '%s'", what,
                          cnv_model_tensor_name(m, *t), score_name);
    } else if ((*t = default_cam_layer(c->v.s, m, score, mark)) < 0) {
        st = cnv_fail(c->v.err, CNV_ERR_NOT_FOUND,
                      "%s: no 4-D tensor larger than 1 x 1 that every path to '%s' passes through; name a layer",
                      what, score_name);
    }
    cnv_free(mark);
    return st;
}

/* cam (u*v) = sum_k wk[k] A_k, then ReLU; NaN kept. */
static void weighted_sum(const float *a, const double *wk, int K, size_t plane, float *cam)
{
    for (size_t i = 0; i < plane; i++) {
        double acc = 0.0;
        for (int k = 0; k < K; k++)
            if (wk[k] != 0.0) /* skips 0 * inf; a NaN weight still propagates */
                acc += wk[k] * a[(size_t)k * plane + i];
        cam[i] = (float)acc;
    }
}

static void relu_plane(float *cam, size_t plane)
{
    for (size_t i = 0; i < plane; i++)
        if (!(cam[i] >= 0.0f) && cam[i] == cam[i])
            cam[i] = 0.0f;
}

/* The gradient-weighted CAMs, from A and g = dS/dA. */
static void gradient_cam(cnv_saliency_method method, const float *a, const float *g, int K, size_t plane,
                         double *wk, float *cam)
{
    if (method == CNV_SALIENCY_LAYERCAM) {
        for (size_t i = 0; i < plane; i++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float gi = g[(size_t)k * plane + i];
                if (gi > 0.0f || gi != gi)
                    acc += (double)gi * a[(size_t)k * plane + i];
            }
            cam[i] = (float)acc;
        }
        return;
    }
    for (int k = 0; k < K; k++) {
        const float *ak = a + (size_t)k * plane, *gk = g + (size_t)k * plane;
        double sum_a = 0.0, w = 0.0;
        for (size_t i = 0; i < plane; i++)
            sum_a += ak[i];
        for (size_t i = 0; i < plane; i++) {
            double gi = gk[i];
            if (method == CNV_SALIENCY_GRADCAM_PP) {
                if (gi == 0.0)
                    continue;
                double g2 = gi * gi, alpha = g2 / (2.0 * g2 + sum_a * g2 * gi + CAM_EPS);
                w += alpha * (gi > 0.0 || gi != gi ? gi : 0.0);
            } else if (method == CNV_SALIENCY_XGRADCAM) {
                w += (double)ak[i] * gi;
            } else {
                w += gi;
            }
        }
        wk[k] = method == CNV_SALIENCY_XGRADCAM ? w / (sum_a + CAM_EPS)
                : method == CNV_SALIENCY_GRADCAM_PP ? w
                                                     : w / (double)plane;
    }
    weighted_sum(a, wk, K, plane, cam);
}

/* ------------------------------------------------------------ Eigen-CAM */

/* The unit eigenvector of the largest eigenvalue of the symmetric d x d
 * matrix S (power iteration from v, which it overwrites); the eigenvalue. */
static double top_eigen(const double *S, int d, double *v, double *tmp)
{
    double norm = 0.0, lambda = 0.0;
    for (int i = 0; i < d; i++)
        norm += v[i] * v[i];
    if (norm == 0.0)
        for (int i = 0; i < d; i++)
            v[i] = 1.0 + 1e-3 * i, norm += v[i] * v[i];
    norm = sqrt(norm);
    for (int i = 0; i < d; i++)
        v[i] /= norm;
    for (int it = 0; it < 5000; it++) {
        for (int i = 0; i < d; i++) {
            double acc = 0.0;
            for (int j = 0; j < d; j++)
                acc += S[(size_t)i * d + j] * v[j];
            tmp[i] = acc;
        }
        norm = 0.0;
        for (int i = 0; i < d; i++)
            norm += tmp[i] * tmp[i];
        norm = sqrt(norm);
        if (!(norm > 0.0))
            return 0.0;
        double change = 0.0;
        for (int i = 0; i < d; i++) {
            double nv = tmp[i] / norm;
            change += fabs(nv - v[i]);
            v[i] = nv;
        }
        lambda = norm;
        if (change < 1e-13 * d)
            break;
    }
    return lambda;
}

/* cam (plane) = the projection of the centered positions X (plane x K) on
 * their first principal axis, signed to correlate with the channel sum. */
static cnv_status eigen_cam(sal_ctx *c, const float *a, int K, size_t plane, float *cam)
{
    size_t P = plane;
    int in_p = P <= (size_t)K; /* eigen-decompose the smaller Gram matrix */
    size_t d = in_p ? P : (size_t)K;
    double *X = cnv_malloc(P * (size_t)K * sizeof *X), *S = cnv_malloc(d * d * sizeof *S);
    double *v = cnv_malloc(d * sizeof *v), *tmp = cnv_malloc(d * sizeof *tmp), *sum = cnv_calloc(P, sizeof *sum);
    cnv_status st = CNV_OK;
    if (!X || !S || !v || !tmp || !sum) {
        st = cnv_fail(c->v.err, CNV_ERR_NOMEM, "eigencam: out of memory");
        goto done;
    }
    for (int k = 0; k < K; k++) {
        const float *ak = a + (size_t)k * plane;
        double mean = 0.0;
        for (size_t p = 0; p < P; p++)
            mean += ak[p], sum[p] += ak[p];
        mean /= (double)P;
        for (size_t p = 0; p < P; p++)
            X[p * K + k] = ak[p] - mean;
    }
    for (size_t i = 0; i < d; i++)
        for (size_t j = i; j < d; j++) {
            double acc = 0.0;
            if (in_p)
                for (int k = 0; k < K; k++)
                    acc += X[i * K + k] * X[j * K + k];
            else
                for (size_t p = 0; p < P; p++)
                    acc += X[p * K + i] * X[p * K + j];
            S[i * d + j] = S[j * d + i] = acc;
        }
    /* start from the channel sum (the sign's reference), in the space used */
    for (size_t i = 0; i < d; i++) {
        double acc = 0.0;
        if (in_p)
            acc = sum[i];
        else
            for (size_t p = 0; p < P; p++)
                acc += X[p * K + i] * sum[p];
        v[i] = acc;
    }
    double lambda = top_eigen(S, (int)d, v, tmp);
    double corr = 0.0;
    for (size_t p = 0; p < P; p++) {
        double proj = 0.0;
        if (in_p)
            proj = v[p] * sqrt(lambda);
        else
            for (int k = 0; k < K; k++)
                proj += X[p * K + k] * v[k];
        cam[p] = (float)proj;
        corr += proj * sum[p];
    }
    if (corr < 0.0)
        for (size_t p = 0; p < P; p++)
            cam[p] = -cam[p];
done:
    cnv_free(X);
    cnv_free(S);
    cnv_free(v);
    cnv_free(tmp);
    cnv_free(sum);
    return st;
}

/* ------------------------------------------------ Score- and Ablation-CAM */

/* w = softmax over channels of the masked images' scores (Score-CAM). */
static cnv_status score_cam(sal_ctx *c, const float *a, int K, int u, int vv, double *wk)
{
    cnv_viz *v = &c->v;
    size_t item = v->item, plane = (size_t)v->h * v->w;
    cnv_status st = sal_plan(c, c->p.batch < K ? c->p.batch : K);
    if (st != CNV_OK)
        return st;
    int B = sal_batch(c);
    float *b = cnv_malloc(item * sizeof *b), *mask = cnv_malloc(plane * sizeof *mask);
    float *vals = cnv_malloc((size_t)B * sizeof *vals);
    if (!b || !mask || !vals) {
        st = cnv_fail(v->err, CNV_ERR_NOMEM, "scorecam: out of memory");
        goto done;
    }
    if ((st = sal_baseline(c, c->p.baseline == CNV_BASELINE_AUTO ? CNV_BASELINE_ZERO : c->p.baseline, b)) != CNV_OK)
        goto done;
    int passes = (K + B - 1) / B;
    for (int k0 = 0, pass = 0; k0 < K; k0 += B, pass++) {
        int used = K - k0 < B ? K - k0 : B;
        float *in = cnv_session_input(v->s);
        for (int i = 0; i < B; i++) {
            float *x = in + (size_t)i * item;
            if (i >= used) {
                memcpy(x, c->image, item * sizeof *x);
                continue;
            }
            sal_bilinear(a + (size_t)(k0 + i) * u * vv, u, vv, mask, v->h, v->w);
            float lo = INFINITY, hi = -INFINITY;
            for (size_t j = 0; j < plane; j++) {
                lo = mask[j] < lo ? mask[j] : lo;
                hi = mask[j] > hi ? mask[j] : hi;
            }
            for (size_t j = 0; j < plane; j++)
                mask[j] = (float)((mask[j] - lo) / ((double)hi - lo + MASK_EPS));
            for (int ch = 0; ch < v->c; ch++)
                for (size_t j = 0; j < plane; j++) {
                    size_t at = (size_t)ch * plane + j;
                    x[at] = b[at] + mask[j] * (c->image[at] - b[at]);
                }
        }
        if ((st = sal_forward(c, used, vals, NULL)) != CNV_OK ||
            (st = sal_progress(c, pass + 1, passes, vals[0])) != CNV_OK)
            goto done;
        for (int i = 0; i < used; i++)
            wk[k0 + i] = vals[i];
    }
    double mx = -INFINITY, sum = 0.0;
    for (int k = 0; k < K; k++)
        mx = wk[k] > mx ? wk[k] : mx;
    for (int k = 0; k < K; k++)
        sum += (wk[k] = exp(wk[k] - mx));
    for (int k = 0; k < K; k++)
        wk[k] /= sum;
done:
    cnv_free(b);
    cnv_free(mask);
    cnv_free(vals);
    return st;
}

/* w_k = (S - S_k) / S, S_k with channel k of A zeroed (Ablation-CAM). */
static cnv_status ablation_cam(sal_ctx *c, int t, const float *a, int K, size_t plane, double *wk)
{
    cnv_viz *v = &c->v;
    size_t item = v->item, per = (size_t)K * plane;
    cnv_status st = sal_plan(c, c->p.batch < K ? c->p.batch : K);
    if (st != CNV_OK)
        return st;
    int B = sal_batch(c);
    float *vals = cnv_malloc((size_t)B * sizeof *vals), *at;
    if (!vals)
        return cnv_fail(v->err, CNV_ERR_NOMEM, "ablationcam: out of memory");
    float *in = cnv_session_input(v->s);
    for (int i = 0; i < B; i++)
        memcpy(in + (size_t)i * item, c->image, item * sizeof *in);
    if ((st = sal_forward(c, 1, vals, NULL)) != CNV_OK || (st = cnv_session_tensor(v->s, t, &at, NULL)) != CNV_OK)
        goto done;
    double S = c->score;
    int passes = (K + B - 1) / B;
    for (int k0 = 0, pass = 0; k0 < K; k0 += B, pass++) {
        int used = K - k0 < B ? K - k0 : B;
        for (int i = 0; i < B; i++) {
            float *ai = at + (size_t)i * per;
            memcpy(ai, a, per * sizeof *ai);
            if (i < used)
                memset(ai + (size_t)(k0 + i) * plane, 0, plane * sizeof *ai);
        }
        if ((st = cnv_session_forward_from(v->s, t, c->tg.t)) != CNV_OK)
            goto done;
        c->passes++;
        if ((st = sal_read(c, used, vals, NULL)) != CNV_OK ||
            (st = sal_progress(c, pass + 1, passes, vals[0])) != CNV_OK)
            goto done;
        for (int i = 0; i < used; i++)
            wk[k0 + i] = S != 0.0 ? (S - vals[i]) / S : S - vals[i];
    }
done:
    cnv_free(vals);
    return st;
}

/* ----------------------------------------------------------------- entry */

cnv_status sal_cam(sal_ctx *c, float *map, cnv_saliency_info *info)
{
    cnv_viz *v = &c->v;
    cnv_saliency_method method = c->p.method;
    const char *what = cnv_saliency_method_name(method);
    int t;
    cnv_status st = sal_cam_layer(c, &t);
    if (st != CNV_OK)
        return st;
    const char *name = cnv_model_tensor_name(v->m, t);
    float *a, *g;
    cnv_shape sh;
    if ((st = cnv_session_tensor(v->s, t, &a, &sh)) != CNV_OK)
        return st;
    if (sh.ndim != 4 || sh.dims[0] != 1 || sh.dims[1] < 1 || sh.dims[1] > INT32_MAX) {
        char buf[128];
        return cnv_fail(v->err, CNV_ERR_SHAPE, "%s: layer '%s' has shape %s, not 1 x K x u x v", what, name,
                        cnv_shape_str(&sh, buf, sizeof buf));
    }
    int K = (int)sh.dims[1], u = (int)sh.dims[2], vv = (int)sh.dims[3];
    size_t plane = (size_t)u * vv, hw = (size_t)v->h * v->w;
    float *acopy = cnv_malloc((size_t)K * plane * sizeof *acopy), *cam = cnv_malloc(plane * sizeof *cam);
    float *seed = cnv_malloc(c->tg.per * sizeof *seed);
    double *wk = cnv_calloc((size_t)K, sizeof *wk);
    if (!acopy || !cam || !seed || !wk) {
        st = cnv_fail(v->err, CNV_ERR_NOMEM, "%s: out of memory", what);
        goto done;
    }
    memcpy(acopy, a, (size_t)K * plane * sizeof *a);
    switch (method) {
    case CNV_SALIENCY_EIGENCAM:
        st = eigen_cam(c, acopy, K, plane, cam);
        break;
    case CNV_SALIENCY_SCORECAM:
        if ((st = score_cam(c, acopy, K, u, vv, wk)) == CNV_OK)
            weighted_sum(acopy, wk, K, plane, cam);
        break;
    case CNV_SALIENCY_ABLATIONCAM:
        if ((st = ablation_cam(c, t, acopy, K, plane, wk)) == CNV_OK)
            weighted_sum(acopy, wk, K, plane, cam);
        break;
    default: {
        const float *gin;
        if ((st = sal_backward(c, 1, 1, seed, &gin)) != CNV_OK)
            break;
        if ((st = cnv_session_grad(v->s, t, &g)) != CNV_OK) {
            st = cnv_fail(v->err, st, "%s: layer '%s' has no gradient", what, name);
            break;
        }
        gradient_cam(method == CNV_SALIENCY_GUIDED_GRADCAM ? CNV_SALIENCY_GRADCAM : method, acopy, g, K, plane, wk,
                     cam);
    }
    }
    if (st != CNV_OK)
        goto done;
    relu_plane(cam, plane);
    sal_bilinear(cam, u, vv, map, v->h, v->w);
    if (method == CNV_SALIENCY_GUIDED_GRADCAM) {
        /* times guided backpropagation's map, from a second backward over
         * the same forward */
        const float *gin;
        if ((st = cnv_session_set_relu_mode(v->s, CNV_RELU_GUIDED)) == CNV_OK)
            st = sal_backward(c, 1, 1, seed, &gin);
        cnv_session_set_relu_mode(v->s, CNV_RELU_GRAD);
        if (st != CNV_OK)
            goto done;
        for (size_t i = 0; i < hw; i++) {
            float mx = 0.0f;
            for (int k = 0; k < v->c; k++) {
                float x = fabsf(gin[(size_t)k * hw + i]);
                if (x != x || x > mx)
                    mx = x;
                if (x != x)
                    break;
            }
            map[i] *= mx;
        }
    }
    if (info) {
        info->layer = name;
        info->layer_height = u;
        info->layer_width = vv;
    }
done:
    cnv_free(acopy);
    cnv_free(cam);
    cnv_free(seed);
    cnv_free(wk);
    return st;
}
