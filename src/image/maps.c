/* Maps (saliency, activations) as pictures: gray levels, the heat
 * colormap, overlays on a photo. */
#include "image/image.h"

#include <math.h>
#include <string.h>

typedef struct map_range {
    double lo, span; /* span 0: constant (or no finite value) */
} map_range;

static map_range find_range(const float *m, size_t n)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(m[i]))
            continue;
        if (m[i] < lo)
            lo = m[i];
        if (m[i] > hi)
            hi = m[i];
    }
    map_range r = {0.0, 0.0};
    if (lo < hi) {
        r.lo = lo;
        r.span = hi - lo; /* in double: finite even for -FLT_MAX..FLT_MAX */
    }
    return r;
}

/* x normalized to [0,1]; NaN and -inf to 0, +inf to 1; constant maps 0. */
static float map_norm(float x, map_range r)
{
    if (r.span == 0.0 || !(x == x))
        return 0.0f;
    double t = ((double)x - r.lo) / r.span;
    if (!(t > 0.0))
        return 0.0f;
    return t >= 1.0 ? 1.0f : (float)t;
}

static int map_args_ok(const float *map, int h, int w)
{
    size_t n;
    return map && cnv_image_bytes(w, h, 4, &n) && cnv_plane_ok(h, w);
}

cnv_status cnv_map_to_gray(const float *map, int h, int w, cnv_image *out, char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_map_to_gray: out is NULL");
    memset(out, 0, sizeof *out);
    if (!map_args_ok(map, h, w))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_map_to_gray: invalid map %dx%d%s", h, w, map ? "" : " (NULL)");
    cnv_status st = cnv_image_alloc(w, h, 1, out, errbuf, errlen);
    if (st != CNV_OK)
        return st;
    size_t n = (size_t)h * w;
    map_range r = find_range(map, n);
    for (size_t i = 0; i < n; i++)
        out->data[i] = cnv_to_byte(map_norm(map[i], r) * 255.0);
    return CNV_OK;
}

void cnv_heat_color(float t, unsigned char rgb[3])
{
    /* Control points of a jet-like ramp: dark blue through cyan and yellow
     * to dark red, linear between them. */
    static const float pos[6] = {0.0f, 0.125f, 0.375f, 0.625f, 0.875f, 1.0f};
    static const unsigned char col[6][3] = {
        {0, 0, 128}, {0, 0, 255}, {0, 255, 255}, {255, 255, 0}, {255, 0, 0}, {128, 0, 0}};
    if (!rgb)
        return;
    if (!(t > 0.0f))
        t = 0.0f;
    if (t > 1.0f)
        t = 1.0f;
    int k = 0;
    while (k < 4 && t > pos[k + 1])
        k++;
    float u = (t - pos[k]) / (pos[k + 1] - pos[k]);
    for (int i = 0; i < 3; i++)
        rgb[i] = cnv_to_byte(col[k][i] + u * ((float)col[k + 1][i] - col[k][i]));
}

cnv_status cnv_map_overlay(const cnv_image *photo, const float *map, int h, int w, float alpha,
                           cnv_image *out, char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_map_overlay: out is NULL");
    memset(out, 0, sizeof *out);
    cnv_status st = cnv_image_check(photo, "cnv_map_overlay", errbuf, errlen);
    if (st != CNV_OK)
        return st;
    if (!map_args_ok(map, h, w))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_map_overlay: invalid map %dx%d%s", h, w, map ? "" : " (NULL)");
    if (!(alpha >= 0.0f && alpha <= 1.0f))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_map_overlay: alpha %g is not in [0,1]", alpha);
    int pw = photo->width, ph = photo->height, pc = photo->channels;
    if (!cnv_plane_ok(ph, pw))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_map_overlay: photo too large");
    size_t n = (size_t)h * w, pn = (size_t)ph * pw;
    float *norm = cnv_malloc(n * sizeof *norm);
    float *fit = (h == ph && w == pw) ? norm : cnv_malloc(pn * sizeof *fit);
    if (!norm || !fit) {
        st = cnv_errbuf_fail(errbuf, errlen, CNV_ERR_NOMEM, "cnv_map_overlay: out of memory");
        goto done;
    }
    map_range r = find_range(map, n);
    for (size_t i = 0; i < n; i++)
        norm[i] = map_norm(map[i], r);
    if (fit != norm && (st = cnv_resize_chw(norm, 1, h, w, fit, ph, pw, errbuf, errlen)) != CNV_OK)
        goto done;
    if ((st = cnv_image_alloc(pw, ph, 3, out, errbuf, errlen)) != CNV_OK)
        goto done;
    for (size_t i = 0; i < pn; i++) {
        unsigned char heat[3];
        cnv_heat_color(fit[i], heat);
        const unsigned char *p = photo->data + i * pc;
        for (int k = 0; k < 3; k++) {
            float base = p[pc == 1 ? 0 : k];
            out->data[i * 3 + k] = cnv_to_byte((1.0f - alpha) * base + alpha * heat[k]);
        }
    }
done:
    if (fit != norm)
        cnv_free(fit);
    cnv_free(norm);
    return st;
}
