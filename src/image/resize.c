/* Channel conversion and resampling (stb_image_resize), of 8-bit images
 * and of float planes. */
#include "image/image.h"

#include <math.h>
#include <string.h>

#include <stb_image_resize.h>

/* ITU-R 601 luma in 16-bit fixed point; the weights sum to 65536 so white
 * stays 255. This rounding is the one PIL's convert("L") uses. */
static unsigned char luma(const unsigned char *p)
{
    return (unsigned char)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 32768u) >> 16);
}

cnv_status cnv_image_convert(const cnv_image *in, int channels, cnv_image *out,
                             char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_convert: out is NULL");
    memset(out, 0, sizeof *out);
    cnv_status st = cnv_image_check(in, "cnv_image_convert", errbuf, errlen);
    if (st == CNV_OK)
        st = cnv_image_alloc(in->width, in->height, channels, out, errbuf, errlen);
    if (st != CNV_OK)
        return st;
    size_t n = (size_t)in->width * in->height;
    int ic = in->channels, oc = channels;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *s = in->data + i * ic;
        unsigned char *d = out->data + i * oc;
        unsigned char rgb[3];
        if (ic == 1)
            rgb[0] = rgb[1] = rgb[2] = s[0];
        else
            memcpy(rgb, s, 3);
        if (oc == 1) {
            d[0] = ic == 1 ? s[0] : luma(rgb);
        } else {
            memcpy(d, rgb, 3);
            if (oc == 4)
                d[3] = ic == 4 ? s[3] : 255;
        }
    }
    return CNV_OK;
}

/* Resampling is stb_image_resize's. Debian's prebuilt copy (0.97, built
 * with its assertions on) aborts the process when it SHRINKS with the
 * triangle filter at about one size ratio in six (13 -> 9 pixels, the
 * 480 -> 341 of a 480x360 photo resized to a 256 short side, ...: upstream
 * nothings/stb#1449), and a library must not abort on data. So each axis
 * gets its own filter: triangle (bilinear) when enlarging, Mitchell when
 * shrinking; a sweep of 17,000 shrink ratios found no abort with Mitchell
 * or box, and Mitchell is the closer of the two to PIL's antialiased
 * bilinear that torchvision uses (docs/PREPROCESSING.md has the figures). */
static stbir_filter axis_filter(int from, int to)
{
    return to >= from ? STBIR_FILTER_TRIANGLE : STBIR_FILTER_MITCHELL;
}

/* The w x h window at (left, top) of `in` resized to width x height, into
 * a new image; what names the caller in messages. The scales are the ones
 * stbir_resize computes for width x height (a float quotient), and the
 * shift moves output pixel 0 to the window's corner, so every pixel gets
 * the weights it gets in the full resize (the whole window is exactly
 * stbir_resize). */
static cnv_status resize_window(const cnv_image *in, int width, int height, int left, int top, int w, int h,
                                const char *what, cnv_image *out, char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "%s: out is NULL", what);
    memset(out, 0, sizeof *out);
    if (left < 0 || top < 0 || w < 1 || h < 1 || left > width - w || top > height - h)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "%s: a %dx%d window at (%d, %d) is not inside %dx%d",
                               what, w, h, left, top, width, height);
    cnv_status st = cnv_image_check(in, what, errbuf, errlen);
    if (st == CNV_OK)
        st = cnv_image_alloc(w, h, in->channels, out, errbuf, errlen);
    if (st != CNV_OK)
        return st;
    int c = in->channels;
    float sx = (float)width / (float)in->width, sy = (float)height / (float)in->height;
    /* RGBA: stb weights the colors by alpha, so transparent pixels do not
     * bleed their color into their neighbours. */
    if (!stbir_resize_subpixel(in->data, in->width, in->height, 0, out->data, w, h, 0, STBIR_TYPE_UINT8, c,
                               c == 4 ? 3 : STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP, STBIR_EDGE_CLAMP,
                               axis_filter(in->width, width), axis_filter(in->height, height),
                               STBIR_COLORSPACE_LINEAR, NULL, sx, sy, (float)left, (float)top)) {
        cnv_image_free(out);
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_NOMEM, "out of memory resizing %dx%d to %dx%d", in->width,
                               in->height, width, height);
    }
    return CNV_OK;
}

cnv_status cnv_image_resize_crop(const cnv_image *in, int width, int height, int left, int top, int w, int h,
                                 cnv_image *out, char *errbuf, size_t errlen)
{
    return resize_window(in, width, height, left, top, w, h, "cnv_image_resize_crop", out, errbuf, errlen);
}

cnv_status cnv_image_resize(const cnv_image *in, int width, int height, cnv_image *out,
                            char *errbuf, size_t errlen)
{
    return resize_window(in, width, height, 0, 0, width, height, "cnv_image_resize", out, errbuf, errlen);
}

cnv_status cnv_resize_chw(const float *in, int c, int h, int w, float *out, int oh, int ow,
                          char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    if (!in || !out || c <= 0 || !cnv_plane_ok(h, w) || !cnv_plane_ok(oh, ow))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_resize_chw: invalid arguments (%d planes %dx%d to %dx%d)",
                               c, h, w, oh, ow);
    size_t isz = (size_t)h * w, osz = (size_t)oh * ow;
    for (int k = 0; k < c; k++)
        if (!stbir_resize(in + k * isz, w, h, 0, out + k * osz, ow, oh, 0, STBIR_TYPE_FLOAT, 1,
                          STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP, STBIR_EDGE_CLAMP, axis_filter(w, ow),
                          axis_filter(h, oh), STBIR_COLORSPACE_LINEAR, NULL))
            return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_NOMEM,
                                   "out of memory resizing %dx%d to %dx%d", h, w, oh, ow);
    return CNV_OK;
}
