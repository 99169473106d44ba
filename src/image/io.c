/* Image files: decoding untrusted bytes with stb_image behind guards for
 * its known faults, and PNG output through an atomic file. */
#include "image/image.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* Debian's libstb is prebuilt, so compile-time knobs such as
 * STBI_MAX_DIMENSIONS or STBI_MALLOC cannot be set: sizes are checked on
 * the header here before stb decodes anything, and stb's own buffers (from
 * malloc) are copied into ours and released at once. */
#include <stb_image.h>
#include <stb_image_write.h>

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
 * file has no pixels, so it is refused first (0). And it grows its buffer
 * to an IDAT chunk's claimed length before reading it: a 167-byte file
 * whose IDAT claims 1.9 GB made it ask for 2 GiB (found by the round-2
 * campaign); an IDAT longer than the rest of the file is refused (-1).
 * Chunks are walked by their lengths up to IEND or the end of the data;
 * 1: let stb decode. */
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
            if (len > n - p - 12)
                return -1;
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

/* Which format data starts as, by its magic bytes: a documented one, "PIC",
 * or NULL. stb_image also decodes Softimage PIC (where Debian's 2.27 crashes
 * on a bad packet) and tries TGA on anything: only what is named here
 * reaches it. TGA has no magic; its header's fixed fields are checked. */
static const char *sniff(const unsigned char *d, size_t n)
{
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8))
        return "PNG";
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        return "JPEG";
    if (n >= 2 && d[0] == 'B' && d[1] == 'M')
        return "BMP";
    if (n >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6)))
        return "GIF";
    if (n >= 4 && !memcmp(d, "8BPS", 4))
        return "PSD";
    if (n >= 2 && d[0] == 'P' && (d[1] == '5' || d[1] == '6'))
        return "PNM";
    if ((n >= 11 && !memcmp(d, "#?RADIANCE\n", 11)) || (n >= 7 && !memcmp(d, "#?RGBE\n", 7)))
        return "HDR";
    if (n >= 4 && d[0] == 'S' && d[1] == 0x80 && d[2] == 0xF6 && d[3] == 0x34)
        return "PIC"; /* refused by decode */
    /* TGA: colour-map type 0 or 1, an image type stb reads, a known depth,
     * and a size */
    if (n >= 18 && d[1] <= 1 &&
        (d[2] == 1 || d[2] == 2 || d[2] == 3 || d[2] == 9 || d[2] == 10 || d[2] == 11) &&
        (d[16] == 8 || d[16] == 15 || d[16] == 16 || d[16] == 24 || d[16] == 32) && (d[12] | d[13]) &&
        (d[14] | d[15]))
        return "TGA";
    return NULL;
}

/* The fewest bytes a file of this format can hold a w x h image in, or 0
 * when that is not known (JPEG: a progressive scan codes runs of empty
 * blocks in a few bits; GIF's LZW and PSD's and HDR's RLE are left to the
 * pixel limits). stb_image allocates and fills the whole image whatever
 * the file holds, so a 41-byte TGA that claims 16143x3880 pixels cost
 * 188 MB and seconds to decode to zeros. */
static uint64_t min_bytes(const char *format, const unsigned char *d, size_t n, int w, int h)
{
    uint64_t px = (uint64_t)w * (uint64_t)h;
    if (!strcmp(format, "TGA")) {
        uint64_t bpp = ((uint64_t)d[16] + 7) / 8; /* 15-bit: 2 bytes */
        if (d[2] >= 9)                            /* RLE: a packet codes at most 128 pixels */
            return 18 + (px + 127) / 128 * (1 + bpp);
        return 18 + px * bpp;
    }
    if (!strcmp(format, "PNM"))
        return px * (d[1] == '6' ? 3 : 1);
    if (!strcmp(format, "BMP") && n >= 34 && (d[14] | d[15] << 8) >= 40) {
        /* stb refuses RLE (1, 2) and reads any other compression value
         * as raw pixels (the second round found 0xffd80000) */
        uint32_t bits = d[28] | d[29] << 8, compression = (uint32_t)d[30] | (uint32_t)d[31] << 8 |
                                                          (uint32_t)d[32] << 16 | (uint32_t)d[33] << 24;
        return compression == 1 || compression == 2 ? 0 : px * bits / 8;
    }
    if (!strcmp(format, "PNG") && n >= 26) {
        static const int channels[7] = {1, 0, 3, 1, 2, 0, 4};
        int ch = d[25] < 7 ? channels[d[25]] : 0;
        /* deflate stores at most 1032 bytes in one: filter bytes and rows */
        return ((uint64_t)h * (1 + ((uint64_t)w * ch * d[24] + 7) / 8)) / 1032;
    }
    return 0;
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
    const char *format = sniff(data, size);
    if (format && !strcmp(format, "PIC"))
        return cnv_errbuf_fail(buf, len, CNV_ERR_UNSUPPORTED, "Softimage PIC images are not supported");
    if (!format)
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                               "not a PNG, JPEG, BMP, GIF, TGA, PSD, PNM (P5, P6) or HDR file (its first "
                               "bytes: %02x %02x %02x %02x)",
                               data[0], size > 1 ? data[1] : 0, size > 2 ? data[2] : 0, size > 3 ? data[3] : 0);
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
    int idat = png_has_image_data(data, size);
    if (idat == 0)
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
    if (idat < 0)
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                               "truncated PNG: the %dx%d image's IDAT chunk claims more bytes than the file holds", w,
                               h);
    if (w <= 0 || h <= 0 || comp < 1 || comp > 4)
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                               "header claims %dx%d pixels with %d channels", w, h, comp);
    if (w > CNV_IMAGE_MAX_SIDE || h > CNV_IMAGE_MAX_SIDE ||
        (int64_t)w * h > (int64_t)CNV_IMAGE_MAX_PIXELS)
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                               "header claims %dx%d pixels, more than the %d per side and "
                               "%ld in all accepted", w, h, CNV_IMAGE_MAX_SIDE,
                               (long)CNV_IMAGE_MAX_PIXELS);
    /* stb decodes 16-bit PNG/PNM at 2 bytes a sample and HDR at 4 (floats)
     * before converting to 8 bits: those get a quarter of the pixels, so
     * that decoding stays within what 8-bit images at the limit take. */
    int deep = !strcmp(format, "HDR") || ((!strcmp(format, "PNG") || !strcmp(format, "PNM")) &&
                                          stbi_is_16_bit_from_memory(data, (int)size));
    if (deep && (int64_t)w * h > (int64_t)CNV_IMAGE_MAX_PIXELS / 4)
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                               "header claims %dx%d pixels; %s images are accepted up to %ld pixels", w, h,
                               strcmp(format, "HDR") ? "16-bit" : "HDR", (long)CNV_IMAGE_MAX_PIXELS / 4);
    uint64_t need = min_bytes(format, data, size, w, h);
    if (size < need)
        return cnv_errbuf_fail(buf, len, CNV_ERR_FORMAT,
                               "truncated %s: a %dx%d image needs at least %llu bytes, the file has %zu", format, w,
                               h, (unsigned long long)need, size);
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
    else if ((st = cnv_image_alloc(w, h, want, out, buf, len)) == CNV_OK)
        memcpy(out->data, pix, (size_t)w * h * want);
    stbi_image_free(pix);
    return st;
}

cnv_status cnv_image_load_memory(const void *data, size_t size, cnv_image *out,
                                 char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
    if (!out)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_load_memory: out is NULL");
    memset(out, 0, sizeof *out);
    if (!data && size)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "cnv_image_load_memory: data is NULL");
    return decode(data, size, out, errbuf, errlen);
}

cnv_status cnv_image_load(const char *path, cnv_image *out, char *errbuf, size_t errlen)
{
    cnv_errbuf_clear(errbuf, errlen);
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
    cnv_errbuf_clear(errbuf, errlen);
    cnv_status st = cnv_image_check(img, "cnv_image_write_png", errbuf, errlen);
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
