/* Drawing on images: ASCII text rasterized from stb_easy_font's quads, and
 * labelled contact sheets (cnv_image_grid). */
#include "image/image.h"

#include <string.h>

/* stb_easy_font is header-only and all static; this is the one file that
 * includes it. Its spacing setter is unused (the spacing stays 0), and its
 * initializers draw a brace warning that is not ours to fix. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-braces"
#endif
#include <stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#define LINE_H 12 /* stb_easy_font's line height in font pixels */

/* stb_easy_font indexes its tables with (c - 32) and (c - 32 + 1): only
 * 32..126 are safe, anything else (UTF-8 bytes, controls) becomes '?'. */
static char printable(char c)
{
    return (c >= 32 && c <= 126) ? c : '?';
}

static int char_advance(char c)
{
    return stb_easy_font_charinfo[printable(c) - 32].advance & 15;
}

int cnv_text_width(const char *text, int scale)
{
    if (!text || scale < 1)
        return 0;
    long long w = 0;
    for (const char *p = text; *p; p++)
        w += char_advance(*p);
    w *= scale;
    return w > 0x7fffffff ? 0x7fffffff : (int)w;
}

static void fill_rect(cnv_image *img, long long x0, long long y0, long long x1, long long y1,
                      const unsigned char *color)
{
    if (x0 < 0)
        x0 = 0;
    if (y0 < 0)
        y0 = 0;
    if (x1 > img->width)
        x1 = img->width;
    if (y1 > img->height)
        y1 = img->height;
    int c = img->channels;
    for (long long y = y0; y < y1; y++)
        for (long long x = x0; x < x1; x++)
            memcpy(img->data + ((size_t)y * img->width + (size_t)x) * c, color, (size_t)c);
}

void cnv_image_draw_text(cnv_image *img, int x, int y, const char *text, int scale,
                         const unsigned char rgb[3])
{
    size_t bytes;
    if (!img || !img->data || !text || !rgb || scale < 1 ||
        !cnv_image_bytes(img->width, img->height, img->channels, &bytes))
        return;
    unsigned char color[4] = {rgb[0], rgb[1], rgb[2], 255};
    if (img->channels == 1)
        color[0] = (unsigned char)((19595u * rgb[0] + 38470u * rgb[1] + 7471u * rgb[2] + 32768u) >> 16);
    /* One character at a time at the origin: a fixed buffer holds any
     * glyph's quads (4 vertices of 16 bytes each), and the pen is ours. */
    float vbuf[1024];
    long long pen = x;
    for (const char *p = text; *p; p++) {
        char one[2] = {printable(*p), '\0'};
        int quads = stb_easy_font_print(0.0f, 0.0f, one, NULL, vbuf, (int)sizeof vbuf);
        for (int q = 0; q < quads; q++) {
            const float *v = vbuf + q * 16; /* 4 vertices of x, y, z, rgba */
            float qx0 = v[0], qy0 = v[1], qx1 = v[0], qy1 = v[1];
            for (int k = 1; k < 4; k++) {
                float vx = v[k * 4], vy = v[k * 4 + 1];
                qx0 = vx < qx0 ? vx : qx0;
                qy0 = vy < qy0 ? vy : qy0;
                qx1 = vx > qx1 ? vx : qx1;
                qy1 = vy > qy1 ? vy : qy1;
            }
            fill_rect(img, pen + (long long)qx0 * scale, y + (long long)qy0 * scale,
                      pen + (long long)qx1 * scale, y + (long long)qy1 * scale, color);
        }
        pen += (long long)char_advance(*p) * scale;
        if (pen >= img->width)
            break;
    }
}

/* label cut to fit width pixels at scale, with "..." when cut; the result
 * is a NUL-terminated string in dst (room for strlen(label) + 4). */
static void fit_label(const char *label, int width, int scale, char *dst)
{
    size_t n = strlen(label);
    memcpy(dst, label, n + 1);
    if (cnv_text_width(dst, scale) <= width)
        return;
    int dots = cnv_text_width("...", scale), used = 0;
    size_t k = 0;
    while (k < n && used + char_advance(label[k]) * scale + dots <= width)
        used += char_advance(label[k++]) * scale;
    if (dots <= width)
        memcpy(dst + k, "...", 4);
    else
        dst[k] = '\0';
}

cnv_status cnv_image_grid(const cnv_image *tiles, int n, int cols, const char *const *labels,
                          int pad, cnv_image *out, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_grid: out is NULL");
    memset(out, 0, sizeof *out);
    if (!tiles || n < 1 || cols < 1 || pad < 0 || pad > 1024)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_image_grid: %d tiles in %d columns, pad %d (need tiles, "
                               "n >= 1, cols >= 1, 0 <= pad <= 1024)", n, cols, pad);
    int cw = 0, ch = 0;
    size_t longest = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes;
        const cnv_image *t = &tiles[i];
        if (!t->data || !cnv_image_bytes(t->width, t->height, t->channels, &bytes))
            return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                                   "cnv_image_grid: tile %d is not a valid image (%dx%d, %d channels)",
                                   i, t->width, t->height, t->channels);
        cw = t->width > cw ? t->width : cw;
        ch = t->height > ch ? t->height : ch;
        if (labels && labels[i] && strlen(labels[i]) > longest)
            longest = strlen(labels[i]);
    }
    /* Tiny tiles (28x28 digits) leave no room for a word: enlarge them by
     * an integer factor, nearest neighbour, so their pixels stay crisp. */
    int f = 1;
    if (cw < 64) {
        f = (64 + cw - 1) / cw;
        f = f > 8 ? 8 : f;
    }
    long long cellw = (long long)cw * f, cellh = (long long)ch * f;
    int ts = cellw >= 200 ? 2 : 1;
    long long label_h = labels ? (long long)LINE_H * ts + 4 : 0;
    if (cols > n)
        cols = n;
    int rows = (n + cols - 1) / cols;
    long long W = cols * cellw + (long long)(cols + 1) * pad;
    long long H = rows * (cellh + label_h) + (long long)(rows + 1) * pad;
    size_t bytes;
    if (W > CNV_IMAGE_MAX_SIDE * 4LL || H > CNV_IMAGE_MAX_SIDE * 4LL ||
        !cnv_image_bytes((int)W, (int)H, 3, &bytes))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_image_grid: a %lldx%lld sheet is too large", W, H);
    char *text = NULL;
    if (labels && !(text = cnv_malloc(longest + 4)))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_NOMEM, "cnv_image_grid: out of memory");
    cnv_status st = cnv_image_create((int)W, (int)H, 3, out, errbuf, errlen);
    if (st != CNV_OK) {
        cnv_free(text);
        return st;
    }
    memset(out->data, 255, bytes);
    static const unsigned char black[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        const cnv_image *t = &tiles[i];
        long long x0 = pad + (i % cols) * (cellw + pad);
        long long y0 = pad + (i / cols) * (cellh + label_h + pad);
        long long tw = (long long)t->width * f, th = (long long)t->height * f;
        long long ox = x0 + (cellw - tw) / 2, oy = y0 + (cellh - th) / 2;
        int c = t->channels;
        for (long long y = 0; y < th; y++) {
            unsigned char *row = out->data + ((size_t)(oy + y) * (size_t)W + (size_t)ox) * 3;
            const unsigned char *srow = t->data + (size_t)(y / f) * t->width * c;
            for (long long x = 0; x < tw; x++) {
                const unsigned char *s = srow + (size_t)(x / f) * c;
                for (int k = 0; k < 3; k++) {
                    unsigned v = s[c == 1 ? 0 : k];
                    if (c == 4) /* composite on the white sheet */
                        v = (v * s[3] + 255u * (255u - s[3]) + 127u) / 255u;
                    row[x * 3 + k] = (unsigned char)v;
                }
            }
        }
        if (labels && labels[i]) {
            fit_label(labels[i], (int)cellw, ts, text);
            int lw = cnv_text_width(text, ts);
            cnv_image_draw_text(out, (int)(x0 + (cellw - lw) / 2), (int)(y0 + cellh + 2), text, ts,
                                black);
        }
    }
    cnv_free(text);
    return CNV_OK;
}
