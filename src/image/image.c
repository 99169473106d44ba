/* Images: decoding untrusted files (stb_image), PNG output through a
 * temporary file, resizing (stb_image_resize, see below), the torchvision-style
 * preprocessing to a network input and back, and saliency-map rendering. */
#include "image/image.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* Debian's libstb is prebuilt, so compile-time knobs such as
 * STBI_MAX_DIMENSIONS or STBI_MALLOC cannot be set: sizes are checked on
 * the header here before stb decodes anything, and stb's own buffers (from
 * malloc) are copied into ours and released at once. */
#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

static void errbuf_clear(char *buf, size_t len)
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
static cnv_status check_image(const cnv_image *img, const char *what,
                              char *buf, size_t len)
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

static cnv_status alloc_image(int w, int h, int c, cnv_image *out, char *buf, size_t len)
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
    errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_create: out is NULL");
    cnv_status st = alloc_image(width, height, channels, out, errbuf, errlen);
    if (st == CNV_OK)
        memset(out->data, 0, (size_t)width * height * channels);
    return st;
}

/* --------------------------------------------------------------- loading */

/* Debian's stb_image 2.27 does not check that a JPEG Huffman table (DHT)
 * declares at most 256 codes, and then writes past its tables (found by
 * fuzz/fuzz_image.c; docs/SECURITY.md). Before stb sees a JPEG, its marker
 * segments are walked and every DHT table's 16 code counts summed the way
 * stb reads them: from the bytes that follow, even past the segment's end,
 * and as zeros past the file's end. A sum over 256 refuses the file (its
 * value goes to *codes), and so does a scan that uses a table no DHT
 * defined (*codes = -1); anything else malformed is left to stb. */
static int jpeg_huffman_tables_ok(const unsigned char *d, size_t n, long *codes)
{
    if (n < 4 || d[0] != 0xFF || d[1] != 0xD8)
        return 1; /* not a JPEG */
    size_t p = 2;
    /* Tables defined so far, [class: 0 DC, 1 AC][id]: stb decodes a scan
     * with whatever its uninitialized table memory holds when the scan
     * names a table no DHT defined (a wild read, found by fuzzing). */
    unsigned char defined[2][4] = {{0}};
    while (p + 4 <= n) {
        unsigned m = d[p + 1];
        /* Entropy-coded data, stuffed bytes (FF 00), fill bytes and the
         * markers without a length (RSTn, TEM) are stepped over; the next
         * segment starts at the next FF that begins a real marker. */
        if (d[p] != 0xFF || m == 0xFF) {
            p++;
            continue;
        }
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
            p += 2;
            continue;
        }
        if (m == 0xD9)
            return 1; /* end of image */
        size_t seg = (size_t)d[p + 2] << 8 | d[p + 3]; /* counts its own 2 bytes */
        if (seg < 2)
            return 1; /* stb refuses it */
        if (m == 0xC4) {
            size_t end = p + 2 + seg; /* may lie past n */
            for (size_t q = p + 4; q < end && q < n;) {
                long total = 0;
                for (size_t i = 1; i <= 16; i++)
                    total += q + i < n ? d[q + i] : 0;
                if (total > 256) {
                    *codes = total;
                    return 0;
                }
                if ((d[q] >> 4) <= 1 && (d[q] & 15) <= 3)
                    defined[d[q] >> 4][d[q] & 15] = 1;
                q += 17 + (size_t)total;
            }
        }
        if (m == 0xDA && seg >= 3 && seg <= n - p - 2) {
            /* SOS: Ns, then (component, DC table << 4 | AC table) per
             * component, then Ss, Se, Ah|Al. A DC scan (Ss = 0) needs its
             * DC tables, a scan with Se > 0 its AC tables. */
            size_t ns = d[p + 4];
            if (seg >= 6 + 2 * ns) {
                unsigned ss = d[p + 5 + 2 * ns], se = d[p + 6 + 2 * ns];
                for (size_t i = 0; i < ns; i++) {
                    unsigned t = d[p + 6 + 2 * i], dc = t >> 4, ac = t & 15;
                    if ((ss == 0 && (dc > 3 || !defined[0][dc])) || (se > 0 && (ac > 3 || !defined[1][ac]))) {
                        *codes = -1;
                        return 0;
                    }
                }
            }
        }
        if (seg > n - p - 2)
            return 1; /* truncated: stb refuses it */
        p += 2 + seg;
    }
    return 1;
}

/* stb_image 2.27 does pointer arithmetic on NULL (undefined behaviour,
 * found by fuzzing) when a PNG's IDAT chunks hold no bytes at all; such a
 * file has no pixels, so it is refused first. Chunks are walked by their
 * lengths up to IEND or the end of the data; returns 0 to refuse. */
static int png_has_image_data(const unsigned char *d, size_t n)
{
    static const unsigned char sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    if (n < 8 || memcmp(d, sig, 8))
        return 1; /* not a PNG */
    size_t p = 8;
    uint64_t idat = 0;
    int seen = 0;
    while (n - p >= 12) {
        uint32_t len = (uint32_t)d[p] << 24 | (uint32_t)d[p + 1] << 16 | (uint32_t)d[p + 2] << 8 | d[p + 3];
        const unsigned char *type = d + p + 4;
        if (!memcmp(type, "IDAT", 4)) {
            seen = 1;
            idat += len;
        }
        if (!memcmp(type, "IEND", 4) || len > n - p - 12)
            break; /* the end, or a chunk cut short: stb judges the rest */
        p += 12 + (size_t)len;
    }
    return !seen || idat > 0; /* no IDAT at all: stb says so itself */
}

/* stb_image 2.27 reads a binary PNM's width, height and maximum value
 * into an int with no overflow check (undefined behaviour on a long digit
 * string; found by fuzzing). Those three numbers may have at most 9 digits
 * here, which is far above every limit the decoder then applies. Returns 0
 * when the file must be refused. */
static int pnm_header_ok(const unsigned char *d, size_t n)
{
    if (n < 2 || d[0] != 'P' || (d[1] != '5' && d[1] != '6'))
        return 1; /* not a PNM that stb reads */
    size_t p = 2;
    for (int k = 0; k < 3; k++) {
        for (;;) { /* white space and # comments, as stb skips them */
            while (p < n && strchr(" \t\n\v\f\r", d[p]) && d[p])
                p++;
            if (p >= n || d[p] != '#')
                break;
            while (p < n && d[p] != '\n' && d[p] != '\r')
                p++;
        }
        size_t digits = 0;
        while (p < n && d[p] >= '0' && d[p] <= '9')
            p++, digits++;
        if (digits > 9)
            return 0;
    }
    return 1;
}

static cnv_status decode(const unsigned char *data, size_t size, cnv_image *out,
                         char *buf, size_t len)
{
    int w, h, comp;
    if (size == 0)
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT, "empty file");
    if (size > (size_t)CNV_IMAGE_MAX_FILE_BYTES)
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT, "%zu bytes, more than the %ld accepted",
                               size, (long)CNV_IMAGE_MAX_FILE_BYTES);
    /* stb_image refuses some huge PNG headers itself, and then its message
     * hides the size; read a PNG's IHDR size so the message can say it. */
    static const unsigned char png_sig[12] = {137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13};
    if (size >= 24 && !memcmp(data, png_sig, sizeof png_sig) && !memcmp(data + 12, "IHDR", 4)) {
        uint32_t pw = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 | data[19];
        uint32_t ph = (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | (uint32_t)data[22] << 8 | data[23];
        if (pw > CNV_IMAGE_MAX_SIDE || ph > CNV_IMAGE_MAX_SIDE ||
            (uint64_t)pw * ph > (uint64_t)CNV_IMAGE_MAX_PIXELS)
            return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                                   "PNG header claims %ux%u pixels, more than the %d per side and "
                                   "%ld in all accepted", (unsigned)pw, (unsigned)ph,
                                   CNV_IMAGE_MAX_SIDE, (long)CNV_IMAGE_MAX_PIXELS);
    }
    if (!png_has_image_data(data, size))
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT, "corrupt PNG: its IDAT chunks hold no image data");
    if (!pnm_header_ok(data, size))
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT, "corrupt PNM: a header number has more than 9 digits");
    long codes;
    if (!jpeg_huffman_tables_ok(data, size, &codes)) {
        if (codes < 0)
            return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                                   "corrupt JPEG: a scan uses a Huffman table that was never defined");
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                               "corrupt JPEG: a Huffman table declares %ld codes (at most 256)", codes);
    }
    if (!stbi_info_from_memory(data, (int)size, &w, &h, &comp))
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                               "not a readable image (%s); PNG, JPEG, BMP, GIF, TGA, PSD, "
                               "PNM and HDR are supported; %zu bytes may be a truncated header",
                               stbi_failure_reason(), size);
    if (w <= 0 || h <= 0 || comp < 1 || comp > 4)
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                               "header claims %dx%d pixels with %d channels", w, h, comp);
    if (w > CNV_IMAGE_MAX_SIDE || h > CNV_IMAGE_MAX_SIDE ||
        (int64_t)w * h > (int64_t)CNV_IMAGE_MAX_PIXELS)
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                               "header claims %dx%d pixels, more than the %d per side and "
                               "%ld in all accepted", w, h, CNV_IMAGE_MAX_SIDE,
                               (long)CNV_IMAGE_MAX_PIXELS);
    /* Gray+alpha has no cnv_image layout: stb expands it to RGBA. */
    int want = comp == 2 ? 4 : comp;
    int dw, dh, dc;
    unsigned char *pix = stbi_load_from_memory(data, (int)size, &dw, &dh, &dc, want);
    if (!pix)
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                               "cannot decode the %dx%d image (%s): truncated or corrupt",
                               w, h, stbi_failure_reason());
    cnv_status st = CNV_OK;
    if (dw != w || dh != h)
        st = cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT, "header says %dx%d, decoded %dx%d",
                             w, h, dw, dh);
    else if ((st = alloc_image(w, h, want, out, buf, len)) == CNV_OK)
        memcpy(out->data, pix, (size_t)w * h * want);
    stbi_image_free(pix);
    return st;
}

cnv_status cnv_image_load_memory(const void *data, size_t size, cnv_image *out,
                                 char *errbuf, size_t errlen)
{
    errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_load_memory: out is NULL");
    memset(out, 0, sizeof *out);
    if (!data && size)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_load_memory: data is NULL");
    return decode(data, size, out, errbuf, errlen);
}

cnv_status cnv_image_load(const char *path, cnv_image *out, char *errbuf, size_t errlen)
{
    errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_load: path is NULL");
    void *data;
    size_t size;
    cnv_err e;
    cnv_status st = cnv_read_file(path, (size_t)CNV_IMAGE_MAX_FILE_BYTES, &data, &size, &e);
    if (st != CNV_OK)
        return cnv_errbuf_fail(errbuf, errlen, st, "%s", e.msg);
    char msg[CNV_ERR_LEN];
    st = decode(data, size, out, msg, sizeof msg);
    cnv_free(data);
    if (st != CNV_OK)
        return cnv_errbuf_fail(errbuf, errlen, st, "'%s': %s", path, msg);
    return CNV_OK;
}

/* ------------------------------------------------------ channels, resize */

/* x in [0,255] rounded, NaN to 0: comparisons written so NaN fails them
 * and nothing out of range reaches the conversion (which would be UB). */
static unsigned char to_byte(double v)
{
    if (!(v > 0.0))
        return 0;
    if (v >= 255.0)
        return 255;
    return (unsigned char)(v + 0.5);
}


/* ITU-R 601 luma in 16-bit fixed point; the weights sum to 65536 so white
 * stays 255. This rounding is the one PIL's convert("L") uses. */
static unsigned char luma(const unsigned char *p)
{
    return (unsigned char)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 32768u) >> 16);
}

cnv_status cnv_image_convert(const cnv_image *in, int channels, cnv_image *out,
                             char *errbuf, size_t errlen)
{
    errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_convert: out is NULL");
    memset(out, 0, sizeof *out);
    cnv_status st = check_image(in, "cnv_image_convert", errbuf, errlen);
    if (st == CNV_OK)
        st = alloc_image(in->width, in->height, channels, out, errbuf, errlen);
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

cnv_status cnv_image_resize(const cnv_image *in, int width, int height, cnv_image *out,
                            char *errbuf, size_t errlen)
{
    errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_resize: out is NULL");
    memset(out, 0, sizeof *out);
    cnv_status st = check_image(in, "cnv_image_resize", errbuf, errlen);
    if (st == CNV_OK)
        st = alloc_image(width, height, in->channels, out, errbuf, errlen);
    if (st != CNV_OK)
        return st;
    int c = in->channels;
    /* RGBA: stb weights the colors by alpha, so transparent pixels do not
     * bleed their color into their neighbours. */
    if (!stbir_resize(in->data, in->width, in->height, 0, out->data, width, height, 0, STBIR_TYPE_UINT8, c,
                      c == 4 ? 3 : STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP, STBIR_EDGE_CLAMP,
                      axis_filter(in->width, width), axis_filter(in->height, height), STBIR_COLORSPACE_LINEAR,
                      NULL)) {
        cnv_image_free(out);
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_NOMEM, "out of memory resizing %dx%d to %dx%d",
                               in->width, in->height, width, height);
    }
    return CNV_OK;
}

/* A plane of h*w floats: h, w > 0 and its byte size within an int. */
static int plane_ok(int h, int w)
{
    size_t n;
    return h > 0 && w > 0 && cnv_mul_size((size_t)h, (size_t)w, &n) &&
           cnv_mul_size(n, sizeof(float), &n) && n <= (size_t)INT_MAX;
}

cnv_status cnv_resize_chw(const float *in, int c, int h, int w, float *out, int oh, int ow,
                          char *errbuf, size_t errlen)
{
    errbuf_clear(errbuf, errlen);
    if (!in || !out || c <= 0 || !plane_ok(h, w) || !plane_ok(oh, ow))
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

/* --------------------------------------------------------------- writing */

typedef struct png_sink {
    FILE *f;
    int failed;
} png_sink;

static void png_write(void *ctx, void *data, int size)
{
    png_sink *s = ctx;
    if (size > 0 && fwrite(data, 1, (size_t)size, s->f) != (size_t)size)
        s->failed = 1;
}

cnv_status cnv_image_write_png(const cnv_image *img, const char *path, char *errbuf, size_t errlen)
{
    errbuf_clear(errbuf, errlen);
    cnv_status st = check_image(img, "cnv_image_write_png", errbuf, errlen);
    if (st != CNV_OK)
        return st;
    cnv_tmpfile t;
    cnv_err e;
    if ((st = cnv_tmpfile_open(&t, path, &e)) != CNV_OK)
        return cnv_errbuf_fail(errbuf, errlen, st, "%s", e.msg);
    png_sink sink = {t.f, 0};
    if (!stbi_write_png_to_func(png_write, &sink, img->width, img->height, img->channels,
                                img->data, img->width * img->channels)) {
        cnv_tmpfile_abort(&t);
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_NOMEM, "'%s': PNG encoding failed (out of memory)", path);
    }
    if (sink.failed) {
        int e = errno ? errno : EIO;
        cnv_tmpfile_abort(&t);
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_IO, "cannot write '%s': %s", path, strerror(e));
    }
    if ((st = cnv_tmpfile_commit(&t, &e)) != CNV_OK)
        return cnv_errbuf_fail(errbuf, errlen, st, "%s", e.msg);
    return CNV_OK;
}

/* ---------------------------------------------------------- preprocessing */

void cnv_preprocess_init(cnv_preprocess *pp, int channels, int height, int width)
{
    if (!pp)
        return;
    memset(pp, 0, sizeof *pp);
    pp->channels = channels;
    pp->height = height;
    pp->width = width;
    for (int i = 0; i < 3; i++)
        pp->std[i] = 1.0f;
    pp->fit = CNV_FIT_CENTER_CROP;
}

static cnv_status check_pp(const cnv_preprocess *pp, char *buf, size_t len)
{
    if (!pp)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG, "preprocessing parameters are NULL");
    if (pp->channels != 1 && pp->channels != 3)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG,
                               "preprocessing: %d input channels (1 or 3 supported)", pp->channels);
    if (pp->height <= 0 || pp->width <= 0 || pp->height > CNV_IMAGE_MAX_SIDE ||
        pp->width > CNV_IMAGE_MAX_SIDE)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG,
                               "preprocessing: invalid input size %dx%d", pp->width, pp->height);
    if (pp->fit != CNV_FIT_CENTER_CROP && pp->fit != CNV_FIT_STRETCH)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG, "preprocessing: unknown fit %d", (int)pp->fit);
    if (pp->resize < 0 || pp->resize > CNV_IMAGE_MAX_SIDE)
        return cnv_errbuf_fail(buf, len, CNV_ERR_INVALID_ARG, "preprocessing: invalid resize %d", pp->resize);
    return CNV_OK;
}

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

cnv_status cnv_image_prepare(const cnv_image *img, const cnv_preprocess *pp, cnv_image *out,
                             char *errbuf, size_t errlen)
{
    errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_prepare: out is NULL");
    memset(out, 0, sizeof *out);
    cnv_status st = check_image(img, "cnv_image_prepare", errbuf, errlen);
    if (st == CNV_OK)
        st = check_pp(pp, errbuf, errlen);
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

    int S = pp->resize ? pp->resize : (int)lround(fmin(W, H) * 256.0 / 224.0);
    int nw, nh;
    center_crop_size(src->width, src->height, W, H, S, &nw, &nh);
    cnv_image big = {0};
    st = cnv_image_resize(src, nw, nh, &big, errbuf, errlen);
    cnv_image_free(&conv);
    if (st == CNV_OK)
        st = alloc_image(W, H, C, out, errbuf, errlen);
    if (st == CNV_OK) {
        int left = half_to_even(nw - W), top = half_to_even(nh - H);
        for (int y = 0; y < H; y++)
            memcpy(out->data + (size_t)y * W * C,
                   big.data + ((size_t)(top + y) * nw + left) * C, (size_t)W * C);
    }
    cnv_image_free(&big);
    return st;
}

cnv_status cnv_image_to_tensor(const cnv_image *img, const cnv_preprocess *pp, float *out,
                               char *errbuf, size_t errlen)
{
    errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_to_tensor: out is NULL");
    cnv_status st = check_pp(pp, errbuf, errlen);
    if (st != CNV_OK)
        return st;
    for (int k = 0; k < pp->channels; k++)
        if (!isfinite(pp->mean[k]) || !isfinite(pp->std[k]) || pp->std[k] == 0.0f)
            return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                                   "preprocessing: channel %d has mean %g, std %g (std must be "
                                   "finite and non-zero)", k, pp->mean[k], pp->std[k]);
    cnv_image fit;
    if ((st = cnv_image_prepare(img, pp, &fit, errbuf, errlen)) != CNV_OK)
        return st;
    size_t plane = (size_t)pp->height * pp->width;
    int C = pp->channels;
    for (int k = 0; k < C; k++) {
        float m = pp->mean[k], s = pp->std[k];
        float *o = out + k * plane;
        for (size_t i = 0; i < plane; i++)
            o[i] = ((float)fit.data[i * C + k] / 255.0f - m) / s;
    }
    cnv_image_free(&fit);
    return CNV_OK;
}

cnv_status cnv_tensor_to_image(const float *chw, int c, int h, int w, const float *mean,
                               const float *std, cnv_image *out, char *errbuf, size_t errlen)
{
    errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_tensor_to_image: out is NULL");
    memset(out, 0, sizeof *out);
    if (!chw || (c != 1 && c != 3))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_tensor_to_image: %d channels (1 or 3), data %s", c,
                               chw ? "given" : "NULL");
    cnv_status st = alloc_image(w, h, c, out, errbuf, errlen);
    if (st != CNV_OK)
        return st;
    size_t plane = (size_t)h * w;
    for (int k = 0; k < c; k++) {
        double m = mean ? mean[k] : 0.0, s = std ? std[k] : 1.0;
        const float *p = chw + k * plane;
        for (size_t i = 0; i < plane; i++)
            out->data[i * c + k] = to_byte(((double)p[i] * s + m) * 255.0);
    }
    return CNV_OK;
}

/* ------------------------------------------------------------------ maps */

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
    return map && cnv_image_bytes(w, h, 4, &n) && plane_ok(h, w);
}

cnv_status cnv_map_to_gray(const float *map, int h, int w, cnv_image *out, char *errbuf, size_t errlen)
{
    errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_map_to_gray: out is NULL");
    memset(out, 0, sizeof *out);
    if (!map_args_ok(map, h, w))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_map_to_gray: invalid map %dx%d%s", h, w, map ? "" : " (NULL)");
    cnv_status st = alloc_image(w, h, 1, out, errbuf, errlen);
    if (st != CNV_OK)
        return st;
    size_t n = (size_t)h * w;
    map_range r = find_range(map, n);
    for (size_t i = 0; i < n; i++)
        out->data[i] = to_byte(map_norm(map[i], r) * 255.0);
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
        rgb[i] = to_byte(col[k][i] + u * ((float)col[k + 1][i] - col[k][i]));
}

cnv_status cnv_map_overlay(const cnv_image *photo, const float *map, int h, int w, float alpha,
                           cnv_image *out, char *errbuf, size_t errlen)
{
    errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_map_overlay: out is NULL");
    memset(out, 0, sizeof *out);
    cnv_status st = check_image(photo, "cnv_map_overlay", errbuf, errlen);
    if (st != CNV_OK)
        return st;
    if (!map_args_ok(map, h, w))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_map_overlay: invalid map %dx%d%s", h, w, map ? "" : " (NULL)");
    if (!(alpha >= 0.0f && alpha <= 1.0f))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_map_overlay: alpha %g is not in [0,1]", alpha);
    int pw = photo->width, ph = photo->height, pc = photo->channels;
    if (!plane_ok(ph, pw))
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
    if ((st = alloc_image(pw, ph, 3, out, errbuf, errlen)) != CNV_OK)
        goto done;
    for (size_t i = 0; i < pn; i++) {
        unsigned char heat[3];
        cnv_heat_color(fit[i], heat);
        const unsigned char *p = photo->data + i * pc;
        for (int k = 0; k < 3; k++) {
            float base = p[pc == 1 ? 0 : k];
            out->data[i * 3 + k] = to_byte((1.0f - alpha) * base + alpha * heat[k]);
        }
    }
done:
    if (fit != norm)
        cnv_free(fit);
    cnv_free(norm);
    return st;
}
