/* Preprocessing: a model's input convention (cnv_model_preprocess), its
 * one check, and the torchvision-style path from an image to the network
 * input and back. */
#include "image/image.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/shape.h"
#include "engine/engine.h"

void cnv_preprocess_init(cnv_preprocess *pp, int channels, int height, int width)
{
    if (!pp)
        return;
    memset(pp, 0, sizeof *pp);
    pp->channels = channels;
    pp->height = height;
    pp->width = width;
    for (int i = 0; i < CNV_MAX_CHANNELS; i++)
        pp->std[i] = 1.0f;
    pp->fit = CNV_FIT_CENTER_CROP;
}

/* The one check (cnv_preprocess_check), without the size when sized is 0:
 * a model may leave it open, and a tensor turned back into an image has
 * its own. */
static cnv_status check(const cnv_preprocess *pp, int sized, char *buf, size_t len)
{
    if (!pp)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG, "preprocessing parameters are NULL");
    if (pp->channels < 1 || pp->channels > CNV_MAX_CHANNELS)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG,
                               "preprocessing: %d input channels (1 to %d supported)", pp->channels,
                               CNV_MAX_CHANNELS);
    if (sized && (pp->height <= 0 || pp->width <= 0 || pp->height > CNV_IMAGE_MAX_SIDE ||
                  pp->width > CNV_IMAGE_MAX_SIDE))
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG,
                               "preprocessing: invalid input size %dx%d (1..%d each)", pp->height, pp->width,
                               CNV_IMAGE_MAX_SIDE);
    for (int k = 0; k < pp->channels; k++)
        if (!isfinite(pp->mean[k]) || !isfinite(pp->std[k]) || !(pp->std[k] > 0.0f))
            return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG,
                                   "preprocessing: channel %d has mean %g, std %g (both finite, std positive)",
                                   k, pp->mean[k], pp->std[k]);
    if (pp->fit != CNV_FIT_CENTER_CROP && pp->fit != CNV_FIT_STRETCH)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG, "preprocessing: unknown fit %d", (int)pp->fit);
    if (pp->resize < 0 || pp->resize > CNV_IMAGE_MAX_SIDE)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG, "preprocessing: invalid resize %d", pp->resize);
    if (pp->order != CNV_ORDER_RGB && pp->order != CNV_ORDER_BGR)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG, "preprocessing: unknown channel order %d",
                               (int)pp->order);
    if (pp->order == CNV_ORDER_BGR && pp->channels < 3)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG,
                               "preprocessing: BGR channel order on a %d-channel input (3 or 4 needed)",
                               pp->channels);
    return CNV_OK;
}

cnv_status cnv_preprocess_check(const cnv_preprocess *pp, char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    return check(pp, 1, errbuf, errlen);
}

/* ------------------------------------------------- the model's convention */

/* Finite numbers separated by commas: one for every channel, or one per
 * channel (more are allowed: "0.5,0.5,0.5" for a gray model). */
static int parse_channels(const char *s, int channels, float out[CNV_MAX_CHANNELS])
{
    float v[CNV_MAX_CHANNELS];
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        v[n] = strtof(p, &end);
        if (errno || end == p || !isfinite(v[n]))
            return 0;
        n++;
        if (*end == '\0')
            break;
        if (*end != ',' || n == CNV_MAX_CHANNELS)
            return 0;
        p = end + 1;
    }
    if (n > 1 && n < channels)
        return 0;
    for (int i = 0; i < CNV_MAX_CHANNELS; i++)
        out[i] = v[n == 1 || i >= n ? 0 : i];
    return 1;
}

/* "HxW" with both in 1..CNV_IMAGE_MAX_SIDE. */
static int parse_size(const char *s, int *h, int *w)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (errno || end == s || (*end != 'x' && *end != 'X'))
        return 0;
    const char *rest = end + 1;
    long b = strtol(rest, &end, 10);
    if (errno || end == rest || *end || a < 1 || b < 1 || a > CNV_IMAGE_MAX_SIDE || b > CNV_IMAGE_MAX_SIDE)
        return 0;
    *h = (int)a;
    *w = (int)b;
    return 1;
}

cnv_status cnv_model_preprocess(const cnv_model *m, cnv_preprocess *pp, char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    if (!m || !pp)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_model_preprocess: no model or output");
    cnv_shape in;
    char buf[128];
    if (cnv_model_input_count(m) < 1 || cnv_model_input_shape(m, 0, &in) != CNV_OK)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_UNSUPPORTED, "the model has no input");
    if (in.ndim != 4 || in.dims[1] < 1 || in.dims[1] > CNV_MAX_CHANNELS)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_UNSUPPORTED,
                               "input '%s' of shape %s is not an image: expected N x C x H x W with C = 1 "
                               "(gray), 3 (RGB), or up to %d",
                               cnv_model_tensor_name(m, cnv_model_input(m, 0)), cnv_shape_str(&in, buf, sizeof buf),
                               CNV_MAX_CHANNELS);
    if (in.dims[2] > CNV_IMAGE_MAX_SIDE || in.dims[3] > CNV_IMAGE_MAX_SIDE)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_UNSUPPORTED,
                               "input '%s' of shape %s takes images larger than %d on a side, the largest an "
                               "image may have",
                               cnv_model_tensor_name(m, cnv_model_input(m, 0)), cnv_shape_str(&in, buf, sizeof buf),
                               CNV_IMAGE_MAX_SIDE);
    int c = (int)in.dims[1];
    int h = in.dims[2] > 0 && in.dims[2] <= CNV_IMAGE_MAX_SIDE ? (int)in.dims[2] : 0;
    int w = in.dims[3] > 0 && in.dims[3] <= CNV_IMAGE_MAX_SIDE ? (int)in.dims[3] : 0;
    cnv_preprocess_init(pp, c, h, w);
    const char *v;
    if ((v = cnv_model_get_meta(m, "cnnviz.mean"))) {
        if (!parse_channels(v, c, pp->mean))
            return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_FORMAT,
                                   "metadata cnnviz.mean '%s': expected one number, or one per channel (%d), "
                                   "separated by commas",
                                   v, c);
        pp->found |= CNV_PP_MEAN;
    }
    if ((v = cnv_model_get_meta(m, "cnnviz.std"))) {
        if (!parse_channels(v, c, pp->std))
            return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_FORMAT,
                                   "metadata cnnviz.std '%s': expected one number, or one per channel (%d), "
                                   "separated by commas",
                                   v, c);
        pp->found |= CNV_PP_STD;
    }
    if ((v = cnv_model_get_meta(m, "cnnviz.image_size"))) {
        int mh, mw;
        if (!parse_size(v, &mh, &mw))
            return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_FORMAT,
                                   "metadata cnnviz.image_size '%s': expected HxW, each 1..%d", v, CNV_IMAGE_MAX_SIDE);
        if ((h && h != mh) || (w && w != mw))
            return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_FORMAT,
                                   "metadata cnnviz.image_size '%s' contradicts the declared input %s", v,
                                   cnv_shape_str(&in, buf, sizeof buf));
        pp->height = mh;
        pp->width = mw;
    }
    if (pp->height && pp->width)
        pp->found |= CNV_PP_SIZE;
    else
        pp->height = pp->width = 0;
    if ((v = cnv_model_get_meta(m, "cnnviz.color"))) {
        static const char *const colors[CNV_MAX_CHANNELS + 1] = {NULL, "gray", NULL, "rgb", "rgba"};
        if (!colors[c] || strcmp(v, colors[c]))
            return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_FORMAT,
                                   "metadata cnnviz.color '%s' does not fit the input's %d channels", v, c);
        pp->found |= CNV_PP_COLOR;
    }
    if ((v = cnv_model_get_meta(m, "cnnviz.channel_order"))) {
        if (strcmp(v, "rgb") && strcmp(v, "bgr"))
            return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_FORMAT,
                                   "metadata cnnviz.channel_order '%s': expected rgb or bgr", v);
        pp->order = v[0] == 'b' ? CNV_ORDER_BGR : CNV_ORDER_RGB;
        pp->found |= CNV_PP_ORDER;
    }
    char msg[256];
    if (check(pp, pp->found & CNV_PP_SIZE, msg, sizeof msg) != CNV_OK)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_FORMAT, "the model's cnnviz metadata is not valid: %s", msg);
    return CNV_OK;
}

/* ---------------------------------------------------- image -> network */

/* Python's round() of d / 2: half to even, as torchvision's center_crop. */
static int half_to_even(int d)
{
    int q = d / 2;
    return (d % 2 && q % 2) ? q + 1 : q;
}

/* The size torchvision's Resize(S) gives, grown if the crop would not fit. */
static void center_crop_size(int iw, int ih, int W, int H, int S, int *nw, int *nh)
{
    if (iw <= ih) {
        *nw = S;
        *nh = (int)((double)S * ih / iw);
    } else {
        *nh = S;
        *nw = (int)((double)S * iw / ih);
    }
    if (*nw < W || *nh < H) {
        double s = fmax((double)W / iw, (double)H / ih);
        *nw = (int)ceil(iw * s - 1e-9);
        *nh = (int)ceil(ih * s - 1e-9);
        if (*nw < W)
            *nw = W;
        if (*nh < H)
            *nh = H;
    }
}

/* torchvision's center crop of an iw x ih image to pp's size: the resized
 * size nw x nh and the crop's corner in it. */
static void crop_window(const cnv_preprocess *pp, int iw, int ih, int *nw, int *nh, int *left, int *top)
{
    int W = pp->width, H = pp->height;
    int S = pp->resize ? pp->resize : (int)lround(fmin(W, H) * 256.0 / 224.0);
    center_crop_size(iw, ih, W, H, S, nw, nh);
    *left = half_to_even(*nw - W);
    *top = half_to_even(*nh - H);
}

cnv_status cnv_image_prepare(const cnv_image *img, const cnv_preprocess *pp, cnv_image *out,
                             char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_prepare: out is NULL");
    memset(out, 0, sizeof *out);
    cnv_status st = cnv_image_check(img, "cnv_image_prepare", errbuf, errlen);
    if (st == CNV_OK)
        st = check(pp, 1, errbuf, errlen);
    if (st == CNV_OK && pp->channels == 2)
        st = cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                             "preprocessing: an image converts to 1, 3 or 4 channels, not to the input's 2");
    if (st != CNV_OK)
        return st;
    int W = pp->width, H = pp->height, C = pp->channels;

    /* Channels first: PIL pipelines convert("RGB"/"L") before resizing. */
    cnv_image conv = {0};
    const cnv_image *src = img;
    if (img->channels != C) {
        if ((st = cnv_image_convert(img, C, &conv, errbuf, errlen)) != CNV_OK)
            return st;
        src = &conv;
    }
    if (src->width == W && src->height == H) {
        if (src == &conv) {
            *out = conv;
            return CNV_OK;
        }
        return cnv_image_resize(src, W, H, out, errbuf, errlen); /* a copy */
    }
    if (pp->fit == CNV_FIT_STRETCH) {
        st = cnv_image_resize(src, W, H, out, errbuf, errlen);
        cnv_image_free(&conv);
        return st;
    }

    int nw, nh, left, top;
    crop_window(pp, src->width, src->height, &nw, &nh, &left, &top);
    /* Only the window is made: resizing the whole image first would cost
     * its resized size, unbounded for a long thin image. */
    st = cnv_image_resize_crop(src, nw, nh, left, top, W, H, out, errbuf, errlen);
    cnv_image_free(&conv);
    return st;
}

cnv_status cnv_preprocess_window(const cnv_preprocess *pp, int width, int height, int *x, int *y, int *w, int *h,
                                 char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    cnv_status st = check(pp, 1, errbuf, errlen);
    if (st != CNV_OK)
        return st;
    if (!x || !y || !w || !h || width < 1 || height < 1 || width > CNV_IMAGE_MAX_SIDE || height > CNV_IMAGE_MAX_SIDE)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_preprocess_window: an image of %dx%d (1..%d each) and four outputs needed", width,
                               height, CNV_IMAGE_MAX_SIDE);
    int W = pp->width, H = pp->height;
    *x = *y = 0;
    *w = width;
    *h = height;
    if (pp->fit == CNV_FIT_STRETCH || (width == W && height == H))
        return CNV_OK;
    int nw, nh, left, top;
    crop_window(pp, width, height, &nw, &nh, &left, &top);
    /* the resized image's window, scaled back to the photo */
    double sx = (double)width / nw, sy = (double)height / nh;
    *x = (int)lround(left * sx);
    *y = (int)lround(top * sy);
    *w = (int)lround(W * sx);
    *h = (int)lround(H * sy);
    if (*w < 1)
        *w = 1;
    if (*h < 1)
        *h = 1;
    if (*x + *w > width)
        *x = width - *w;
    if (*y + *h > height)
        *y = height - *h;
    return CNV_OK;
}

int cnv_preprocess_image_channel(const cnv_preprocess *pp, int k)
{
    return pp && pp->order == CNV_ORDER_BGR && pp->channels >= 3 && k >= 0 && k < 3 ? 2 - k : k;
}

cnv_status cnv_image_to_tensor(const cnv_image *img, const cnv_preprocess *pp, float *out, size_t count,
                               char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_to_tensor: out is NULL");
    cnv_status st = check(pp, 1, errbuf, errlen);
    if (st != CNV_OK)
        return st;
    size_t plane = (size_t)pp->height * pp->width;
    int C = pp->channels;
    if (count != plane * C)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_image_to_tensor: out holds %zu floats, a %dx%dx%d input needs %zu", count, C,
                               pp->height, pp->width, plane * C);
    cnv_image fit;
    if ((st = cnv_image_prepare(img, pp, &fit, errbuf, errlen)) != CNV_OK)
        return st;
    for (int k = 0; k < C; k++) {
        float m = pp->mean[k], s = pp->std[k];
        float *o = out + k * plane;
        const unsigned char *px = fit.data + cnv_preprocess_image_channel(pp, k);
        for (size_t i = 0; i < plane; i++)
            o[i] = ((float)px[i * C] / 255.0f - m) / s;
    }
    cnv_image_free(&fit);
    return CNV_OK;
}

cnv_status cnv_session_set_image(cnv_session *s, int i, const cnv_image *img, const cnv_preprocess *pp)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    cnv_err *e = cnv_session_err(s);
    const cnv_model *m = cnv_session_model(s);
    char msg[CNV_ERR_LEN];
    cnv_preprocess own;
    cnv_status st = CNV_OK;
    if (pp)
        own = *pp;
    else if ((st = cnv_model_preprocess(m, &own, msg, sizeof msg)) != CNV_OK)
        return cnv_fail(e, st, "%s", msg);
    float *x;
    cnv_shape sh;
    if ((st = cnv_session_tensor(s, cnv_model_input(m, 0), &x, &sh)) != CNV_OK)
        return st;
    if (sh.ndim != 4 || sh.dims[1] != own.channels)
        return cnv_fail(e, CNV_ERR_SHAPE, "set_image: the input is planned as %s, the preprocessing has %d channels",
                        cnv_shape_str(&sh, msg, sizeof msg), own.channels);
    if (i < 0 || i >= sh.dims[0])
        return cnv_fail(e, CNV_ERR_INVALID_ARG, "set_image: image %d of a batch of %lld", i, (long long)sh.dims[0]);
    if (sh.dims[2] > CNV_IMAGE_MAX_SIDE || sh.dims[3] > CNV_IMAGE_MAX_SIDE)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "set_image: the input is planned as %s, larger than an image",
                        cnv_shape_str(&sh, msg, sizeof msg));
    own.height = (int)sh.dims[2];
    own.width = (int)sh.dims[3];
    size_t item = (size_t)own.channels * own.height * own.width;
    if ((st = cnv_image_to_tensor(img, &own, x + (size_t)i * item, item, msg, sizeof msg)) != CNV_OK)
        return cnv_fail(e, st, "%s", msg);
    return CNV_OK;
}

/* ---------------------------------------------------- network -> image */

cnv_status cnv_tensor_to_image(const float *chw, const cnv_preprocess *pp, int h, int w, cnv_image *out,
                               char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_tensor_to_image: out is NULL");
    memset(out, 0, sizeof *out);
    if (!chw)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_tensor_to_image: no data");
    cnv_status st = check(pp, 0, errbuf, errlen);
    if (st == CNV_OK)
        st = cnv_image_alloc(w, h, pp->channels, out, errbuf, errlen);
    if (st != CNV_OK)
        return st;
    size_t plane = (size_t)h * w;
    int c = pp->channels;
    for (int k = 0; k < c; k++) {
        double m = pp->mean[k], s = pp->std[k];
        const float *p = chw + k * plane;
        unsigned char *px = out->data + cnv_preprocess_image_channel(pp, k);
        for (size_t i = 0; i < plane; i++)
            px[i * c] = cnv_to_byte(((double)p[i] * s + m) * 255.0);
    }
    return CNV_OK;
}
