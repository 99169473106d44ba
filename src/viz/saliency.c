/* Saliency maps of one image for one class score: the plain gradient
 * (Simonyan et al. 2014), SmoothGrad, guided backpropagation and Grad-CAM. */
#include <math.h>
#include <string.h>

#include "viz/viz.h"

static const char *const g_method_names[] = {
    "grad",     "smoothgrad", "guided",   "gradcam",  "deconvnet", "gradxinput", "ig",          "blurig",    "guidedig",
    "guided-gradcam", "gradcam++", "layercam", "xgradcam", "eigencam", "scorecam", "ablationcam", "occlusion", "rise"};
#define N_METHODS ((int)(sizeof g_method_names / sizeof g_method_names[0]))

const char *cnv_saliency_method_name(cnv_saliency_method method)
{
    int k = (int)method;
    return k >= 0 && k < N_METHODS ? g_method_names[k] : NULL;
}

int cnv_saliency_method_parse(const char *name)
{
    for (int k = 0; name && k < N_METHODS; k++)
        if (!strcmp(name, g_method_names[k]))
            return k;
    return -1;
}

cnv_saliency_params cnv_saliency_params_default(void)
{
    cnv_saliency_params p;
    memset(&p, 0, sizeof p);
    p.method = CNV_SALIENCY_GRAD;
    p.class_index = -1;
    p.samples = 25;
    p.noise = 0.15f;
    p.batch = 8;
    p.y = p.x = -1;
    p.steps = 64;
    p.guided_fraction = 0.25f;
    p.masks = 2000;
    p.mask_cells = 7;
    p.mask_prob = 0.5f;
    return p;
}

/* map[i] = max over channels of |g[k][i]|; a NaN anywhere in the column
 * stays NaN, so a broken gradient shows instead of hiding behind a max. */
static void abs_max_channels(const float *g, int c, size_t plane, float *map)
{
    for (size_t i = 0; i < plane; i++) {
        float mx = 0.0f;
        for (int k = 0; k < c; k++) {
            float v = fabsf(g[(size_t)k * plane + i]);
            if (v != v) {
                mx = v;
                break;
            }
            if (v > mx)
                mx = v;
        }
        map[i] = mx;
    }
}

/* Grad-CAM's default layer: the last layer (an activation's output or a
 * feature map), in node order, that is 4-D with more than one spatial
 * position in the current plan and leads to the score. */
static int default_cam_layer(cnv_session *s, const cnv_model *m, int score, unsigned char *mark)
{
    /* The last layer (an activation or feature map) or join of branches
     * with a spatial extent that every path from the image to the score
     * passes through: a block's output (an Inception block's
     * concatenation, a residual sum), never one of its branches, nor a
     * pooling of it (coarser, and no longer what the convolutions saw).
     * Checked from the score backwards: the first one found is the last. */
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

/* a + t (b - a) as (1-t) a + t b, but a neighbour with weight 0 is left
 * out, so a NaN does not leak into pixels it has no weight in. */
static double lerp(double a, double b, double t)
{
    return t == 0.0 ? a : (1.0 - t) * a + t * b;
}

/* Bilinear upsampling of a u x v plane to h x w with half-pixel centers,
 * source coordinates clamped to the plane (PyTorch's
 * interpolate(mode="bilinear", align_corners=False)). */
static void bilinear(const float *in, int u, int v, float *out, int h, int w)
{
    for (int y = 0; y < h; y++) {
        double sy = ((double)y + 0.5) * u / h - 0.5;
        if (sy < 0.0)
            sy = 0.0;
        int y0 = (int)sy;
        if (y0 > u - 1)
            y0 = u - 1;
        int y1 = y0 < u - 1 ? y0 + 1 : y0;
        double fy = sy - y0;
        for (int x = 0; x < w; x++) {
            double sx = ((double)x + 0.5) * v / w - 0.5;
            if (sx < 0.0)
                sx = 0.0;
            int x0 = (int)sx;
            if (x0 > v - 1)
                x0 = v - 1;
            int x1 = x0 < v - 1 ? x0 + 1 : x0;
            double fx = sx - x0;
            out[(size_t)y * w + x] = (float)lerp(lerp(in[(size_t)y0 * v + x0], in[(size_t)y0 * v + x1], fx),
                                                 lerp(in[(size_t)y1 * v + x0], in[(size_t)y1 * v + x1], fx), fy);
        }
    }
}

/* cam (u*v) = ReLU(sum_k alpha_k A_k), alpha_k = mean of dA_k; NaN kept. */
static void gradcam_map(const float *a, const float *da, int K, int u, int v, float *cam)
{
    size_t plane = (size_t)u * v;
    for (size_t i = 0; i < plane; i++)
        cam[i] = 0.0f;
    for (int k = 0; k < K; k++) {
        const float *g = da + (size_t)k * plane, *ak = a + (size_t)k * plane;
        double alpha = 0.0;
        for (size_t i = 0; i < plane; i++)
            alpha += g[i];
        alpha /= (double)plane;
        if (alpha == 0.0)
            continue; /* skips 0 * inf; NaN alpha still propagates below */
        for (size_t i = 0; i < plane; i++)
            cam[i] += (float)(alpha * ak[i]);
    }
    for (size_t i = 0; i < plane; i++)
        if (!(cam[i] >= 0.0f) && cam[i] == cam[i])
            cam[i] = 0.0f;
}

static cnv_status check_params(const cnv_saliency_params *p, cnv_err *err)
{
    if (!cnv_saliency_method_name(p->method))
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: unknown method %d", (int)p->method);
    if (p->method == CNV_SALIENCY_SMOOTHGRAD) {
        if (p->samples < 1)
            return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: samples is %d (>= 1)", p->samples);
        if (!(p->noise >= 0.0f) || !isfinite(p->noise))
            return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: noise %g is not a finite value >= 0",
                            p->noise);
        if (p->batch < 1)
            return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: batch is %d (>= 1)", p->batch);
    }
    if (p->class_index < -1)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: class %d (use -1 for the top-1 class)",
                        p->class_index);
    return CNV_OK;
}

/* The batch's raw scores (n x K) after a forward pass up to `score`. */
static cnv_status scores(const cnv_viz *v, int score, int n, float **sc, int *K)
{
    cnv_status st = cnv_session_forward_to(v->s, score);
    if (st == CNV_OK)
        st = cnv_viz_scores(v, score, n, sc, K);
    if (st == CNV_OK)
        st = cnv_viz_finite(v, *sc, (size_t)n * (size_t)*K, *K);
    return st;
}

/* SmoothGrad: sum over samples of the gradient at image + noise, in double
 * so that sigma 0 gives back the plain gradient exactly (n equal floats
 * sum exactly, and the division is exact). Sample j's noise comes from
 * the stream (seed, j), whatever the batch. */
static cnv_status smoothgrad(const cnv_viz *v, int score, const float *image, int cls,
                             const cnv_saliency_params *p, float *map)
{
    cnv_session *s = v->s;
    cnv_err *err = v->err;
    int c = v->c, h = v->h, w = v->w;
    size_t item = (size_t)c * h * w;
    int B = cnv_viz_batch(v, p->batch < p->samples ? p->batch : p->samples);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < item; i++)
        if (isfinite(image[i])) {
            lo = image[i] < lo ? image[i] : lo;
            hi = image[i] > hi ? image[i] : hi;
        }
    float sigma = lo < hi ? (float)(p->noise * (hi - lo)) : 0.0f;

    cnv_status st = cnv_session_plan(s, B, h, w);
    if (st != CNV_OK)
        return st;
    float *in = cnv_session_input(s), *sc;
    int K;
    if ((st = scores(v, score, B, &sc, &K)) != CNV_OK)
        return st;
    double *sum = cnv_calloc(item, sizeof *sum);
    float *seed = cnv_malloc((size_t)B * K * sizeof *seed);
    float *prob = cnv_malloc((size_t)K * sizeof *prob);
    int *cls_of = cnv_malloc((size_t)B * sizeof *cls_of);
    if (!sum || !seed || !prob || !cls_of) {
        st = cnv_fail(err, CNV_ERR_NOMEM, "saliency: out of memory for SmoothGrad");
        goto done;
    }
    for (int done = 0; done < p->samples; done += B) {
        int used = p->samples - done < B ? p->samples - done : B;
        for (int i = 0; i < B; i++) {
            float *x = in + (size_t)i * item;
            memcpy(x, image, item * sizeof *x);
            cls_of[i] = i < used ? cls : -1; /* spare items: zero seed */
            if (i >= used || sigma == 0.0f)
                continue;
            cnv_rng r;
            cnv_rng_seed2(&r, p->seed, (uint64_t)(done + i));
            for (size_t j = 0; j < item; j++)
                x[j] += sigma * cnv_rng_normal(&r);
        }
        if ((st = scores(v, score, B, &sc, &K)) != CNV_OK)
            goto done;
        cnv_seed_classes(seed, B, K, cls_of);
        if ((st = cnv_session_backward(s, score, seed, (size_t)B * K)) != CNV_OK)
            goto done;
        const float *g = cnv_session_input_grad(s);
        if (!g) {
            st = cnv_fail(err, CNV_ERR_STATE, "saliency: '%s' does not depend on the input",
                          cnv_model_tensor_name(v->m, score));
            goto done;
        }
        double mean_score = 0.0, mean_prob = 0.0;
        for (int i = 0; i < used; i++) {
            const float *gi = g + (size_t)i * item;
            for (size_t j = 0; j < item; j++)
                sum[j] += gi[j];
            cnv_softmax(sc + (size_t)i * K, K, prob);
            mean_score += sc[(size_t)i * K + cls];
            mean_prob += prob[cls];
        }
        if (p->progress && p->progress(p->user, done + used, p->samples, (float)(mean_score / used),
                                       (float)(mean_prob / used))) {
            st = cnv_fail(err, CNV_ERR_CANCELLED, "saliency: cancelled after %d of %d samples",
                          done + used, p->samples);
            goto done;
        }
    }
    /* The mean gradient in the (now unused) first input slot, then |.| max. */
    for (size_t j = 0; j < item; j++)
        in[j] = (float)(sum[j] / p->samples);
    abs_max_channels(in, c, (size_t)h * w, map);
done:
    cnv_free(sum);
    cnv_free(seed);
    cnv_free(prob);
    cnv_free(cls_of);
    return st;
}

static cnv_status gradcam(const cnv_viz *v, int score, const float *seed, int n_seed,
                          const cnv_saliency_params *p, float *map, cnv_saliency_info *info)
{
    cnv_session *s = v->s;
    const cnv_model *m = v->m;
    cnv_err *err = v->err;
    const char *score_name = cnv_model_tensor_name(m, score);
    unsigned char *mark = cnv_malloc((size_t)cnv_model_tensor_count(m) + 1);
    if (!mark)
        return cnv_fail(err, CNV_ERR_NOMEM, "saliency: out of memory");
    cnv_status st = CNV_OK;
    int t;
    float *cam = NULL;
    if (p->layer) {
        char msg[256];
        if ((st = cnv_model_find_layer(m, p->layer, &t, msg, sizeof msg)) != CNV_OK) {
            st = cnv_fail(err, st, "Grad-CAM: %s", msg);
            goto done;
        }
        if (!cnv_model_feeds(m, t, score, mark)) {
            st = cnv_fail(err, CNV_ERR_INVALID_ARG, "Grad-CAM: layer '%s' does not lead to the score '%s'",
                          cnv_model_tensor_name(m, t), score_name);
            goto done;
        }
    } else if ((t = default_cam_layer(s, m, score, mark)) < 0) {
        st = cnv_fail(err, CNV_ERR_NOT_FOUND,
                      "Grad-CAM: no 4-D tensor larger than 1 x 1 that every path to '%s' passes through; "
                      "name a layer",
                      score_name);
        goto done;
    }
    const char *name = cnv_model_tensor_name(m, t);
    float *a, *da;
    cnv_shape sh;
    if ((st = cnv_session_tensor(s, t, &a, &sh)) != CNV_OK)
        goto done;
    if (sh.ndim != 4 || sh.dims[0] != 1) {
        char buf[128];
        st = cnv_fail(err, CNV_ERR_SHAPE, "Grad-CAM: layer '%s' has shape %s, not 1 x K x u x v", name,
                      cnv_shape_str(&sh, buf, sizeof buf));
        goto done;
    }
    if ((st = cnv_session_backward(s, score, seed, (size_t)n_seed)) != CNV_OK)
        goto done;
    if ((st = cnv_session_grad(s, t, &da)) != CNV_OK) {
        st = cnv_fail(err, st, "Grad-CAM: layer '%s' does not depend on the input", name);
        goto done;
    }
    int K = (int)sh.dims[1], u = (int)sh.dims[2], vv = (int)sh.dims[3];
    cam = cnv_malloc((size_t)u * vv * sizeof *cam);
    if (!cam) {
        st = cnv_fail(err, CNV_ERR_NOMEM, "Grad-CAM: out of memory");
        goto done;
    }
    gradcam_map(a, da, K, u, vv, cam);
    bilinear(cam, u, vv, map, v->h, v->w);
    if (info) {
        info->layer = name;
        info->layer_height = u;
        info->layer_width = vv;
    }
done:
    cnv_free(cam);
    cnv_free(mark);
    return st;
}

cnv_status cnv_saliency(cnv_session *s, const float *image, size_t count, int h, int w,
                        const cnv_saliency_params *pp, float *map, size_t map_count, cnv_saliency_info *info)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    cnv_err *err = cnv_session_err(s);
    if (!image || !map || h < 1 || w < 1)
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "saliency: needs an image of at least 1x1 (got %dx%d) and a map", h, w);
    cnv_saliency_params p = pp ? *pp : cnv_saliency_params_default();
    cnv_status st = check_params(&p, err);
    if (st != CNV_OK)
        return st;
    /* Every method but GUIDED ascends the true gradient, whatever mode the
     * session was left in (cnv_viz_begin sets it). */
    cnv_viz v;
    if ((st = cnv_viz_begin(&v, s, "saliency", NULL, h, w)) != CNV_OK ||
        (st = cnv_viz_check_len(&v, "the image", count, 1)) != CNV_OK)
        return st;
    if (map_count != (size_t)h * w)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: the map holds %zu floats, %dx%d needs %zu", map_count,
                        h, w, (size_t)h * w);
    int score = p.score ? cnv_model_tensor_index(v.m, p.score) : cnv_model_score_tensor(v.m);
    if (score < 0)
        return cnv_fail(err, CNV_ERR_NOT_FOUND, "saliency: no score tensor '%s'",
                        p.score ? p.score : "(the model has no output)");
    if ((st = cnv_viz_depends(&v, score, "score")) != CNV_OK)
        return st;
    const char *score_name = cnv_model_tensor_name(v.m, score);
    if (info) {
        memset(info, 0, sizeof *info);
        info->class_index = -1;
    }
    if ((st = cnv_session_plan(s, 1, h, w)) != CNV_OK)
        return st;
    int c = v.c;
    size_t item = v.item, plane = (size_t)h * w;
    memcpy(cnv_session_input(s), image, item * sizeof(float));
    float *sc;
    int K;
    if ((st = scores(&v, score, 1, &sc, &K)) != CNV_OK)
        return st;
    int cls = p.class_index;
    if (cls < 0) {
        /* the top-1 class, NaN scores never chosen */
        for (int k = 0; k < K; k++)
            if (sc[k] == sc[k] && (cls < 0 || sc[k] > sc[cls]))
                cls = k;
        if (cls < 0)
            return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: every score of '%s' is NaN", score_name);
    } else if (cls >= K) {
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: class %d is out of range ('%s' has %d classes)",
                        cls, score_name, K);
    }
    float *seed = cnv_malloc((size_t)K * sizeof *seed);
    float *prob = cnv_malloc((size_t)K * sizeof *prob);
    if (!seed || !prob) {
        st = cnv_fail(err, CNV_ERR_NOMEM, "saliency: out of memory");
        goto done;
    }
    cnv_softmax(sc, K, prob);
    if (info) {
        info->class_index = cls;
        info->score = sc[cls];
        info->prob = prob[cls];
    }
    cnv_seed_classes(seed, 1, K, &cls);
    switch (p.method) {
    case CNV_SALIENCY_GRAD:
    case CNV_SALIENCY_GUIDED: {
        /* ReLU's forward is the same in both modes: only backward differs. */
        if (p.method == CNV_SALIENCY_GUIDED && (st = cnv_session_set_relu_mode(s, CNV_RELU_GUIDED)) != CNV_OK)
            break;
        st = cnv_session_backward(s, score, seed, (size_t)K);
        cnv_session_set_relu_mode(s, CNV_RELU_GRAD);
        if (st != CNV_OK)
            break;
        const float *g = cnv_session_input_grad(s);
        if (!g) {
            st = cnv_fail(err, CNV_ERR_STATE, "saliency: '%s' does not depend on the input", score_name);
            break;
        }
        abs_max_channels(g, c, plane, map);
        break;
    }
    case CNV_SALIENCY_SMOOTHGRAD:
        st = smoothgrad(&v, score, image, cls, &p, map);
        break;
    case CNV_SALIENCY_GRADCAM:
        st = gradcam(&v, score, seed, K, &p, map, info);
        break;
    default:
        st = cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: %s is not built yet", cnv_saliency_method_name(p.method));
        break;
    }
done:
    cnv_free(seed);
    cnv_free(prob);
    return st;
}

/* WORK IN PROGRESS: the attribution suite's entry points, filled in by the
 * next commits. */
cnv_status cnv_saliency_attribution(cnv_session *s, const float *image, size_t count, int h, int w,
                                    const cnv_saliency_params *p, float *attr, size_t attr_count,
                                    cnv_saliency_info *info)
{
    (void)image, (void)count, (void)h, (void)w, (void)p, (void)attr, (void)attr_count, (void)info;
    return s ? cnv_fail(cnv_session_err(s), CNV_ERR_INVALID_ARG, "saliency: not built yet") : CNV_ERR_INVALID_ARG;
}

static const char *const g_metric_names[] = {"deletion", "insertion"};

const char *cnv_metric_name(cnv_metric metric)
{
    int k = (int)metric;
    return k >= 0 && k < 2 ? g_metric_names[k] : NULL;
}

int cnv_metric_parse(const char *name)
{
    for (int k = 0; name && k < 2; k++)
        if (!strcmp(name, g_metric_names[k]))
            return k;
    return -1;
}

cnv_status cnv_saliency_metric(cnv_session *s, const float *image, size_t count, int h, int w, const float *map,
                               size_t map_count, cnv_metric metric, int steps, const cnv_saliency_params *p,
                               float *curve, float *area)
{
    (void)image, (void)count, (void)h, (void)w, (void)map, (void)map_count, (void)metric, (void)steps, (void)p;
    (void)curve, (void)area;
    return s ? cnv_fail(cnv_session_err(s), CNV_ERR_INVALID_ARG, "saliency: not built yet") : CNV_ERR_INVALID_ARG;
}
