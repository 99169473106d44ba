/* What every image file shares: the image type's checks, allocation and
 * lifetime, and the rounding of values to bytes. */
#include "image/image.h"

#include <limits.h>
#include <string.h>

void cnv_errbuf_clear(char *buf, size_t len)
{
    if (buf && len)
        buf[0] = '\0';
}

int cnv_image_bytes(int w, int h, int c, size_t *bytes)
{
    size_t n;
    if (w <= 0 || h <= 0 || (c != 1 && c != 3 && c != 4))
        return 0;
    if (!cnv_mul_size((size_t)w, (size_t)h, &n) || !cnv_mul_size(n, (size_t)c, &n))
        return 0;
    if (n > (size_t)INT_MAX)
        return 0;
    *bytes = n;
    return 1;
}

/* A usable input image: non-NULL data and a size within cnv_image_bytes. */
cnv_status cnv_image_check(const cnv_image *img, const char *what, char *buf, size_t len)
{
    size_t n;
    if (!img || !img->data)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG, "%s: no image data", what);
    if (!cnv_image_bytes(img->width, img->height, img->channels, &n))
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG,
                               "%s: invalid image %dx%d with %d channels (1, 3 or 4, "
                               "at most 2^31 bytes)", what, img->width, img->height,
                               img->channels);
    return CNV_OK;
}

cnv_status cnv_image_alloc(int w, int h, int c, cnv_image *out, char *buf, size_t len)
{
    size_t n;
    memset(out, 0, sizeof *out);
    if (!cnv_image_bytes(w, h, c, &n))
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG,
                               "invalid image size %dx%d with %d channels", w, h, c);
    out->data = cnv_malloc(n);
    if (!out->data)
        return cnv_errbuf_fail(buf, len, CNV_ERR_NOMEM,
                               "out of memory for a %dx%dx%d image", w, h, c);
    out->width = w;
    out->height = h;
    out->channels = c;
    return CNV_OK;
}

void cnv_image_free(cnv_image *img)
{
    if (!img)
        return;
    cnv_free(img->data);
    memset(img, 0, sizeof *img);
}

cnv_status cnv_image_create(int width, int height, int channels, cnv_image *out,
                            char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_create: out is NULL");
    cnv_status st = cnv_image_alloc(width, height, channels, out, errbuf, errlen);
    if (st == CNV_OK)
        memset(out->data, 0, (size_t)width * height * channels);
    return st;
}

/* x in [0,255] rounded, NaN to 0: comparisons written so NaN fails them
 * and nothing out of range reaches the conversion (which would be UB). */
unsigned char cnv_to_byte(double v)
{
    if (!(v > 0.0))
        return 0;
    if (v >= 255.0)
        return 255;
    return (unsigned char)(v + 0.5);
}

int cnv_plane_ok(int h, int w)
{
    size_t n;
    return h > 0 && w > 0 && cnv_mul_size((size_t)h, (size_t)w, &n) &&
           cnv_mul_size(n, sizeof(float), &n) && n <= (size_t)INT_MAX;
}
