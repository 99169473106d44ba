/* How every visualization starts (viz.h): the preprocessing it works in,
 * checked once, and the lookups of scores and layers it needs. */
#include <math.h>
#include <string.h>

#include "viz/viz.h"

cnv_status cnv_viz_begin(cnv_viz *v, cnv_session *s, const char *what, const cnv_preprocess *pp,
                         int height, int width)
{
    memset(v, 0, sizeof *v);
    v->s = s;
    v->m = cnv_session_model(s);
    v->err = cnv_session_err(s);
    v->what = what;
    char msg[CNV_ERR_LEN];
    cnv_status st = CNV_OK;
    if (pp)
        v->pp = *pp;
    else if ((st = cnv_model_preprocess(v->m, &v->pp, msg, sizeof msg)) != CNV_OK)
        return cnv_fail(v->err, st, "%s: %s", what, msg);
    if (height > 0)
        v->pp.height = height;
    if (width > 0)
        v->pp.width = width;
    if (v->pp.height <= 0 || v->pp.width <= 0)
        return cnv_fail(v->err, CNV_ERR_INVALID_ARG,
                        "%s: the model does not say its input size (it declares none and has no "
                        "cnnviz.image_size); set height and width",
                        what);
    if ((st = cnv_preprocess_check(&v->pp, msg, sizeof msg)) != CNV_OK)
        return cnv_fail(v->err, st, "%s: %s", what, msg);
    cnv_shape in;
    if (cnv_model_input_shape(v->m, 0, &in) != CNV_OK || in.ndim != 4 || in.dims[1] != v->pp.channels)
        return cnv_fail(v->err, CNV_ERR_SHAPE,
                        "%s: the preprocessing has %d channels; the model's input is not N x %d x H x W", what,
                        v->pp.channels, v->pp.channels);
    /* A model exported with a fixed size (AlexNet, VGG, the old zoo) takes
     * that size only. */
    v->fixed_n = in.dims[0] > 0 && in.dims[0] <= INT32_MAX ? (int)in.dims[0] : 0;
    v->fixed_h = in.dims[2] > 0 && in.dims[2] <= INT32_MAX ? (int)in.dims[2] : 0;
    v->fixed_w = in.dims[3] > 0 && in.dims[3] <= INT32_MAX ? (int)in.dims[3] : 0;
    if ((v->fixed_h && v->fixed_h != v->pp.height) || (v->fixed_w && v->fixed_w != v->pp.width)) {
        char buf[128];
        return cnv_fail(v->err, CNV_ERR_SHAPE, "%s: the model takes %s images only; %dx%d was asked for", what,
                        cnv_shape_str(&in, buf, sizeof buf), v->pp.height, v->pp.width);
    }
    v->c = v->pp.channels;
    v->h = v->pp.height;
    v->w = v->pp.width;
    v->item = (size_t)v->c * v->h * v->w;
    for (int k = 0; k < CNV_MAX_CHANNELS; k++)
        v->unit[k] = cnv_viz_unit(v->pp.std[k]);
    return cnv_session_set_relu_mode(s, CNV_RELU_GRAD);
}

int cnv_viz_batch(const cnv_viz *v, int want)
{
    return v->fixed_n ? v->fixed_n : want;
}

cnv_status cnv_viz_check_len(const cnv_viz *v, const char *name, size_t count, int n)
{
    size_t need;
    if (!cnv_mul_size(v->item, (size_t)n, &need))
        return cnv_fail(v->err, CNV_ERR_NOMEM, "%s: %d images of %dx%dx%d are too many", v->what, n, v->c, v->h,
                        v->w);
    if (count != need)
        return cnv_fail(v->err, CNV_ERR_INVALID_ARG,
                        "%s: %s holds %zu floats; %d image%s of %dx%dx%d need %zu", v->what, name, count, n,
                        n == 1 ? "" : "s", v->c, v->h, v->w, need);
    return CNV_OK;
}

cnv_status cnv_viz_depends(const cnv_viz *v, int t, const char *role)
{
    /* A tensor no path from the image reaches (an output that is a
     * constant) has a zero gradient: every map would be blank and every
     * ascent noise. */
    unsigned char *mark = cnv_malloc((size_t)cnv_model_tensor_count(v->m) + 1);
    if (!mark)
        return cnv_fail(v->err, CNV_ERR_NOMEM, "%s: out of memory", v->what);
    int feeds = cnv_model_feeds(v->m, cnv_model_input(v->m, 0), t, mark);
    cnv_free(mark);
    if (!feeds)
        return cnv_fail(v->err, CNV_ERR_INVALID_ARG, "%s: the %s '%s' does not depend on the input image", v->what,
                        role, cnv_model_tensor_name(v->m, t));
    return CNV_OK;
}

cnv_status cnv_viz_score_tensor(const cnv_viz *v, int *t)
{
    *t = cnv_model_score_tensor(v->m);
    if (*t < 0)
        return cnv_fail(v->err, CNV_ERR_INVALID_ARG, "%s: the model has no output", v->what);
    return cnv_viz_depends(v, *t, "score");
}

cnv_status cnv_viz_finite(const cnv_viz *v, const float *sc, size_t count, int k)
{
    for (size_t i = 0; i < count; i++)
        if (!isfinite(sc[i]))
            return cnv_fail(v->err, CNV_ERR_FORMAT,
                            "%s: the model's score for class %d is %g: not finite (its weights overflow, or "
                            "make NaN, on this input)",
                            v->what, (int)(i % (size_t)k), (double)sc[i]);
    return CNV_OK;
}

cnv_status cnv_viz_layer(const cnv_viz *v, const char *text, int *t)
{
    char msg[256];
    cnv_status st = cnv_model_find_layer(v->m, text, t, msg, sizeof msg);
    if (st != CNV_OK)
        return cnv_fail(v->err, st, "%s: %s", v->what, msg);
    return cnv_viz_depends(v, *t, "layer");
}

cnv_status cnv_viz_scores(const cnv_viz *v, int t, int n, float **sc, int *k)
{
    cnv_shape sh;
    cnv_status st = cnv_session_tensor(v->s, t, sc, &sh);
    if (st != CNV_OK)
        return st;
    int64_t cnt = cnv_shape_count(&sh);
    if (sh.ndim < 1 || sh.dims[0] != n || cnt <= 0 || cnt % n != 0 || cnt / n > INT32_MAX)
        return cnv_fail(v->err, CNV_ERR_SHAPE,
                        "score tensor '%s' has %d dims, first %lld, for a batch of %d: expected batch x classes",
                        cnv_model_tensor_name(v->m, t), sh.ndim, sh.ndim > 0 ? (long long)sh.dims[0] : -1LL, n);
    *k = (int)(cnt / n);
    return CNV_OK;
}

float cnv_viz_unit(float std)
{
    return std >= 1.0f / 16.0f && std <= 4.0f ? 1.0f : CNV_PIXEL_STD / std;
}
