/* Images: PNG round trips, every channel layout and 16-bit PNGs, hostile
 * and truncated files, the torchvision-style preprocessing against crops
 * computed by hand and against PyTorch's input for cat.jpg, clamping on
 * the way back, maps, overlays, contact sheets, atomic writes and GIFs
 * read back with giflib. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gif_lib.h>
#include <stb_image_write.h>
#include <zlib.h>

#include "testutil.h"

#define SHARED "../shared/imagenet"

static char g_dir[256];

static int setup_dir(void **state)
{
    (void)state;
    strcpy(g_dir, "/tmp/cnv_test_image_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            if (unlink(p) != 0)
                rmdir(p);
        }
        closedir(d);
    }
    rmdir(g_dir);
    return 0;
}

static const char *tmp_path(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static int dir_entries(void)
{
    int n = 0;
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    if (d)
        closedir(d);
    return n;
}

static int dir_has_tmp(void)
{
    int found = 0;
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 4 && !strcmp(e->d_name + n - 4, ".tmp"))
            found = 1;
    }
    if (d)
        closedir(d);
    return found;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    rewind(f);
    unsigned char *p = malloc(sz > 0 ? (size_t)sz : 1);
    assert_non_null(p);
    *n = fread(p, 1, (size_t)sz, f);
    fclose(f);
    return p;
}

/* A w x h x c test pattern in malloc'd memory. */
static unsigned char *pattern(int w, int h, int c)
{
    unsigned char *p = malloc((size_t)w * h * c);
    assert_non_null(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++)
                p[((size_t)y * w + x) * c + k] = (unsigned char)((x * 37 + y * 11 + k * 91) & 255);
    return p;
}

static void assert_zeroed(const cnv_image *img)
{
    assert_null(img->data);
    assert_int_equal(img->width, 0);
    assert_int_equal(img->height, 0);
    assert_int_equal(img->channels, 0);
}

/* ------------------------------------------------------------- loading */

static void test_png_round_trip(void **state)
{
    (void)state;
    char err[256];
    int w = 13, h = 7;
    unsigned char *pix = pattern(w, h, 3);
    /* A file from stb_image_write, read back exactly. */
    assert_true(stbi_write_png(tmp_path("stb.png"), w, h, 3, pix, w * 3));
    cnv_image img = {0};
    assert_int_equal(cnv_image_load(tmp_path("stb.png"), &img, err, sizeof err), CNV_OK);
    assert_string_equal(err, "");
    assert_int_equal(img.width, w);
    assert_int_equal(img.height, h);
    assert_int_equal(img.channels, 3);
    assert_memory_equal(img.data, pix, (size_t)w * h * 3);

    /* Our writer, read back exactly, leaving no temporary behind. */
    assert_int_equal(cnv_image_write_png(&img, tmp_path("ours.png"), err, sizeof err), CNV_OK);
    cnv_image back = {0};
    assert_int_equal(cnv_image_load(tmp_path("ours.png"), &back, err, sizeof err), CNV_OK);
    assert_int_equal(back.channels, 3);
    assert_memory_equal(back.data, pix, (size_t)w * h * 3);
    assert_false(dir_has_tmp());
    struct stat sb;
    assert_int_equal(stat(tmp_path("ours.png"), &sb), 0);
    assert_true(sb.st_mode & S_IRUSR);

    /* From memory too. */
    size_t n;
    unsigned char *bytes = read_bytes(tmp_path("ours.png"), &n);
    cnv_image mem = {0};
    assert_int_equal(cnv_image_load_memory(bytes, n, &mem, err, sizeof err), CNV_OK);
    assert_memory_equal(mem.data, pix, (size_t)w * h * 3);

    cnv_image_free(&mem);
    cnv_image_free(&back);
    cnv_image_free(&img);
    assert_zeroed(&img);
    cnv_image_free(&img); /* twice, and NULL: no-ops */
    cnv_image_free(NULL);
    free(bytes);
    free(pix);
}

static void test_channel_layouts(void **state)
{
    (void)state;
    char err[256];
    int w = 5, h = 4;
    for (int c = 1; c <= 4; c++) {
        unsigned char *pix = pattern(w, h, c);
        char name[32];
        snprintf(name, sizeof name, "c%d.png", c);
        assert_true(stbi_write_png(tmp_path(name), w, h, c, pix, w * c));
        cnv_image img = {0};
        assert_int_equal(cnv_image_load(tmp_path(name), &img, err, sizeof err), CNV_OK);
        int want = c == 2 ? 4 : c;
        assert_int_equal(img.channels, want);
        for (int i = 0; i < w * h; i++) {
            const unsigned char *s = pix + i * c, *d = img.data + i * want;
            if (c == 2) { /* gray+alpha: gray replicated, alpha kept */
                assert_int_equal(d[0], s[0]);
                assert_int_equal(d[1], s[0]);
                assert_int_equal(d[2], s[0]);
                assert_int_equal(d[3], s[1]);
            } else {
                assert_memory_equal(d, s, (size_t)c);
            }
        }
        cnv_image_free(&img);
        free(pix);
    }
}

/* PNG files made by hand, for what stb_image_write cannot produce
 * (16-bit) or refuses to (absurd sizes). */
static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static size_t png_chunk(unsigned char *out, const char *type, const unsigned char *data, uint32_t n)
{
    put32(out, n);
    memcpy(out + 4, type, 4);
    if (n)
        memcpy(out + 8, data, n);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, out + 4, n + 4);
    put32(out + 8 + n, (uint32_t)crc);
    return 12 + n;
}

/* A PNG of w x h, bit depth, color type; raw scanlines (with filter bytes)
 * compressed into one IDAT. Returns its size in out. */
static size_t make_png(unsigned char *out, uint32_t w, uint32_t h, int depth, int ctype,
                       const unsigned char *raw, size_t raw_n)
{
    static const unsigned char sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    size_t n = 0;
    memcpy(out, sig, 8);
    n += 8;
    unsigned char ihdr[13];
    put32(ihdr, w);
    put32(ihdr + 4, h);
    ihdr[8] = (unsigned char)depth;
    ihdr[9] = (unsigned char)ctype;
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    n += png_chunk(out + n, "IHDR", ihdr, 13);
    if (raw) {
        unsigned char z[4096];
        uLongf zn = sizeof z;
        assert_int_equal(compress(z, &zn, raw, raw_n), Z_OK);
        n += png_chunk(out + n, "IDAT", z, (uint32_t)zn);
    }
    n += png_chunk(out + n, "IEND", NULL, 0);
    return n;
}

static void test_png_16bit(void **state)
{
    (void)state;
    char err[256];
    /* 2x2 RGB, 16 bits: each row is a filter byte and 2 x 6 bytes. */
    const uint16_t v[2][2][3] = {{{0x1234, 0xfedc, 0x0080}, {0xffff, 0x0000, 0x8000}},
                                 {{0x7f00, 0x80ff, 0x0101}, {0xabcd, 0x5432, 0x00ff}}};
    unsigned char raw[2 * 13], png[8192];
    for (int y = 0; y < 2; y++) {
        raw[y * 13] = 0;
        for (int x = 0; x < 2; x++)
            for (int k = 0; k < 3; k++) {
                raw[y * 13 + 1 + x * 6 + k * 2] = (unsigned char)(v[y][x][k] >> 8);
                raw[y * 13 + 2 + x * 6 + k * 2] = (unsigned char)(v[y][x][k] & 255);
            }
    }
    size_t n = make_png(png, 2, 2, 16, 2, raw, sizeof raw);
    cnv_image img = {0};
    assert_int_equal(cnv_image_load_memory(png, n, &img, err, sizeof err), CNV_OK);
    assert_int_equal(img.channels, 3);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 2; x++)
            for (int k = 0; k < 3; k++) {
                /* stb keeps the high byte; a rounding conversion would be
                 * within one of it. */
                int got = img.data[(y * 2 + x) * 3 + k], hi = v[y][x][k] >> 8;
                assert_true(abs(got - hi) <= 1);
            }
    cnv_image_free(&img);

    /* 16-bit gray, 3x1. */
    const uint16_t g[3] = {0x0000, 0x8001, 0xffff};
    unsigned char graw[1 + 6] = {0};
    for (int x = 0; x < 3; x++) {
        graw[1 + 2 * x] = (unsigned char)(g[x] >> 8);
        graw[2 + 2 * x] = (unsigned char)(g[x] & 255);
    }
    n = make_png(png, 3, 1, 16, 0, graw, sizeof graw);
    assert_int_equal(cnv_image_load_memory(png, n, &img, err, sizeof err), CNV_OK);
    assert_int_equal(img.channels, 1);
    assert_int_equal(img.data[0], 0);
    assert_true(abs(img.data[1] - 0x80) <= 1);
    assert_int_equal(img.data[2], 255);
    cnv_image_free(&img);
}

static void mem_write(void *ctx, void *data, int size)
{
    unsigned char **cur = ctx;
    memcpy(*cur, data, (size_t)size);
    *cur += size;
}

static void expect_load_error(const char *path, cnv_status want, const char *needle)
{
    char err[512];
    cnv_image img = {(int)0xdead, 1, 1, (unsigned char *)err}; /* garbage, overwritten */
    cnv_status st = cnv_image_load(path, &img, err, sizeof err);
    printf("  %s -> %s: %s\n", strrchr(path, '/') + 1, cnv_status_string(st), err);
    assert_int_equal(st, want);
    assert_zeroed(&img);
    assert_non_null(strstr(err, path));
    if (needle)
        assert_non_null(strstr(err, needle));
}

static void test_bad_files(void **state)
{
    (void)state;
    write_bytes(tmp_path("empty.png"), "", 0);
    expect_load_error(tmp_path("empty.png"), CNV_ERR_FORMAT, "empty");
    write_bytes(tmp_path("one.png"), "\x89", 1);
    expect_load_error(tmp_path("one.png"), CNV_ERR_FORMAT, "not a PNG, JPEG");
    expect_load_error(tmp_path("missing.png"), CNV_ERR_IO, "No such file");
    expect_load_error(g_dir, CNV_ERR_IO, "directory");
    char err0[256];
    cnv_image dev = {0};
    assert_int_equal(cnv_image_load("/dev/zero", &dev, err0, sizeof err0), CNV_ERR_IO);
    assert_non_null(strstr(err0, "not a regular file"));

    /* A valid PNG and JPEG cut short: the header reads, the pixels do not. */
    int w = 64, h = 48;
    unsigned char *pix = pattern(w, h, 3);
    assert_true(stbi_write_png(tmp_path("full.png"), w, h, 3, pix, w * 3));
    size_t n;
    unsigned char *png = read_bytes(tmp_path("full.png"), &n);
    write_bytes(tmp_path("cut.png"), png, n / 2);
    expect_load_error(tmp_path("cut.png"), CNV_ERR_FORMAT, "truncated");

    unsigned char *jpg = malloc(1 << 20), *cur = jpg;
    assert_true(stbi_write_jpg_to_func(mem_write, &cur, w, h, 3, pix, 90));
    size_t jn = (size_t)(cur - jpg);
    cnv_image ok = {0};
    char err[256];
    assert_int_equal(cnv_image_load_memory(jpg, jn, &ok, err, sizeof err), CNV_OK);
    cnv_image_free(&ok);
    write_bytes(tmp_path("cut.jpg"), jpg, jn / 2);
    expect_load_error(tmp_path("cut.jpg"), CNV_ERR_FORMAT, "truncated");

    /* 100000 x 100000 claimed by a 57-byte PNG with a valid IHDR CRC:
     * refused from the header, before anything is allocated for pixels. */
    unsigned char huge[256];
    size_t hn = make_png(huge, 100000, 100000, 8, 2, NULL, 0);
    write_bytes(tmp_path("huge.png"), huge, hn);
    expect_load_error(tmp_path("huge.png"), CNV_ERR_FORMAT, "100000x100000");
    /* Within each side limit but over the pixel limit: 16384 x 16385. */
    hn = make_png(huge, 16384, 16384 + 1, 8, 0, NULL, 0);
    write_bytes(tmp_path("wide.png"), huge, hn);
    expect_load_error(tmp_path("wide.png"), CNV_ERR_FORMAT, "16384x16385");

    /* Argument errors. */
    cnv_image img = {0};
    assert_int_equal(cnv_image_load(NULL, &img, NULL, 0), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_image_load(tmp_path("full.png"), NULL, NULL, 0), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_image_load_memory(NULL, 5, &img, NULL, 0), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_image_load_memory(NULL, 0, &img, err, sizeof err), CNV_ERR_FORMAT);
    free(jpg);
    free(png);
    free(pix);
}

/* ------------------------------------------------------- preprocessing */

static void test_center_crop_exact(void **state)
{
    (void)state;
    char err[256];
    /* 300 x 256: the shorter side is already 256 (= round(224 * 256/224)),
     * so torchvision's Resize(256) leaves it alone and CenterCrop(224)
     * takes columns 38.. (76 / 2) and rows 16.. (32 / 2). */
    int w = 300, h = 256;
    cnv_image img = {w, h, 3, pattern(w, h, 3)};
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, 3, 224, 224);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(pp.mean, mean, sizeof mean);
    memcpy(pp.std, std, sizeof std);
    float *t = malloc(3 * 224 * 224 * sizeof *t);
    assert_int_equal(cnv_image_to_tensor(&img, &pp, t, tu_pp_len(&pp), err, sizeof err), CNV_OK);
    double worst = 0;
    for (int k = 0; k < 3; k++)
        for (int y = 0; y < 224; y++)
            for (int x = 0; x < 224; x++) {
                int v = img.data[((y + 16) * w + (x + 38)) * 3 + k];
                double want = ((double)v / 255.0 - mean[k]) / std[k];
                double d = fabs(t[(k * 224 + y) * 224 + x] - want);
                worst = d > worst ? d : worst;
            }
    printf("  300x256 center crop: max |tensor - hand| = %.3g\n", worst);
    assert_true(worst < 1e-6);
    free(img.data);

    /* Odd margins round half to even like Python: 301 -> 77/2 = 38.5 -> 38,
     * 303 -> 79/2 = 39.5 -> 40; 256 x 259 -> rows 35/2 = 17.5 -> 18. */
    const int cases[3][4] = {{301, 256, 38, 16}, {303, 256, 40, 16}, {256, 259, 16, 18}};
    for (int i = 0; i < 3; i++) {
        cnv_image src = {cases[i][0], cases[i][1], 3, pattern(cases[i][0], cases[i][1], 3)};
        cnv_image out = {0};
        assert_int_equal(cnv_image_prepare(&src, &pp, &out, err, sizeof err), CNV_OK);
        assert_int_equal(out.width, 224);
        assert_int_equal(out.height, 224);
        for (int y = 0; y < 224; y++)
            assert_memory_equal(out.data + y * 224 * 3,
                                src.data + ((y + cases[i][3]) * src.width + cases[i][2]) * 3, 224 * 3);
        cnv_image_free(&out);
        free(src.data);
    }

    /* A 512 x 600 image halves to 256 x 300 (int(256 * 600 / 512) = 300).
     * Shrinking 2:1, the widened triangle has taps (1,3,3,1)/8 on 2x2
     * blocks, which keeps a pattern linear in the block index exactly:
     * R = x/2 (0..255), G = y/2 - 20 (within 0..255 around the crop). */
    cnv_image big = {512, 600, 3, malloc(512 * 600 * 3)};
    for (int y = 0; y < 600; y++)
        for (int x = 0; x < 512; x++) {
            unsigned char *p = big.data + (y * 512 + x) * 3;
            int g = y / 2 - 20;
            p[0] = (unsigned char)(x / 2);
            p[1] = (unsigned char)(g < 0 ? 0 : g > 255 ? 255 : g);
            p[2] = 100;
        }
    cnv_image out = {0};
    assert_int_equal(cnv_image_prepare(&big, &pp, &out, err, sizeof err), CNV_OK);
    int off = 0;
    for (int y = 0; y < 224; y++)
        for (int x = 0; x < 224; x++) {
            const unsigned char *p = out.data + (y * 224 + x) * 3;
            int sx = x + 16, sy = y + 38; /* 256-224 = 32 -> 16; 300-224 = 76 -> 38 */
            off += p[0] != sx || p[1] != sy - 20 || p[2] != 100;
        }
    printf("  512x600 -> 256x300 -> crop 224: %d pixels differ from the hand-computed crop\n", off);
    assert_int_equal(off, 0);
    cnv_image_free(&out);
    free(big.data);
    free(t);
}

/* Caffe-era models take BGR pixels in 0..255 minus the ImageNet mean:
 * x[0] = B - 103.939, x[1] = G - 116.779, x[2] = R - 123.68 (Keras'
 * preprocess_input(mode="caffe"), the old ONNX zoo's VGG and ResNet).
 * The tensor is checked against that formula written out, and turning
 * it back gives the RGB picture. */
static void test_channel_order(void **state)
{
    (void)state;
    char err[256];
    unsigned char px[2 * 2 * 3] = {255, 0, 10, 0, 128, 255, 30, 60, 90, 200, 100, 0};
    cnv_image img = {2, 2, 3, px};
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, 3, 2, 2);
    const double caffe_mean[3] = {103.939, 116.779, 123.68}; /* B, G, R */
    for (int k = 0; k < 3; k++) {
        pp.mean[k] = (float)(caffe_mean[k] / 255.0);
        pp.std[k] = 1.0f / 255.0f;
    }
    pp.order = CNV_ORDER_BGR;
    float t[12];
    assert_int_equal(cnv_image_to_tensor(&img, &pp, t, 12, err, sizeof err), CNV_OK);
    for (int i = 0; i < 4; i++) {
        const unsigned char *p = px + 3 * i; /* R, G, B */
        double want[3] = {p[2] - caffe_mean[0], p[1] - caffe_mean[1], p[0] - caffe_mean[2]};
        for (int k = 0; k < 3; k++)
            assert_true(fabs(t[k * 4 + i] - want[k]) < 1e-3);
    }
    assert_int_equal(cnv_preprocess_image_channel(&pp, 0), 2);
    assert_int_equal(cnv_preprocess_image_channel(&pp, 1), 1);
    cnv_image back = {0};
    assert_int_equal(cnv_tensor_to_image(t, &pp, 2, 2, &back, err, sizeof err), CNV_OK);
    assert_memory_equal(back.data, px, sizeof px);
    cnv_image_free(&back);

    /* RGBA keeps alpha in place; a gray input cannot be BGR */
    pp.channels = 4;
    assert_int_equal(cnv_preprocess_image_channel(&pp, 3), 3);
    assert_int_equal(cnv_preprocess_check(&pp, err, sizeof err), CNV_OK);
    pp.channels = 1;
    assert_int_equal(cnv_preprocess_check(&pp, err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "BGR channel order on a 1-channel input"));
    pp.channels = 3;
    pp.order = (cnv_channel_order)7;
    assert_int_equal(cnv_preprocess_check(&pp, err, sizeof err), CNV_ERR_INVALID_ARG);

    /* the model's metadata: cnnviz.channel_order */
    cnv_model *m;
    cnv_shape xs = {4, {1, 3, 8, 8}};
    const char *in[] = {"x"}, *out[] = {"y"};
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Relu", "r", 1, in, 1, out, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_OK);
    assert_int_equal(pp.order, CNV_ORDER_RGB);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.channel_order", "bgr"), CNV_OK);
    assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_OK);
    assert_int_equal(pp.order, CNV_ORDER_BGR);
    assert_true(pp.found & CNV_PP_ORDER);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.channel_order", "brg"), CNV_OK);
    assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_ERR_FORMAT);
    assert_non_null(strstr(err, "cnnviz.channel_order 'brg': expected rgb or bgr"));
    cnv_model_free(m);
}

static void test_same_size_and_channels(void **state)
{
    (void)state;
    char err[256];
    /* An image at the input size is used as is, not resized to 256 and
     * cropped back. */
    cnv_image img = {224, 224, 3, pattern(224, 224, 3)};
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, 3, 224, 224);
    cnv_image out = {0};
    assert_int_equal(cnv_image_prepare(&img, &pp, &out, err, sizeof err), CNV_OK);
    assert_memory_equal(out.data, img.data, 224 * 224 * 3);
    cnv_image_free(&out);

    /* Saved, reloaded and re-preprocessed: the tensor is bit-identical. */
    float *t1 = malloc(3 * 224 * 224 * sizeof *t1), *t2 = malloc(3 * 224 * 224 * sizeof *t2);
    pp.mean[0] = 0.5f;
    pp.std[2] = 0.25f;
    assert_int_equal(cnv_image_to_tensor(&img, &pp, t1, tu_pp_len(&pp), err, sizeof err), CNV_OK);
    cnv_image back = {0};
    assert_int_equal(tu_to_image(t1, 3, 224, 224, pp.mean, pp.std, &back, err, sizeof err), CNV_OK);
    assert_memory_equal(back.data, img.data, 224 * 224 * 3);
    assert_int_equal(cnv_image_write_png(&back, tmp_path("saved.png"), err, sizeof err), CNV_OK);
    cnv_image re = {0};
    assert_int_equal(cnv_image_load(tmp_path("saved.png"), &re, err, sizeof err), CNV_OK);
    assert_int_equal(cnv_image_to_tensor(&re, &pp, t2, tu_pp_len(&pp), err, sizeof err), CNV_OK);
    assert_memory_equal(t1, t2, 3 * 224 * 224 * sizeof *t1);
    cnv_image_free(&re);
    cnv_image_free(&back);
    free(t1);
    free(t2);
    free(img.data);

    /* Gray model from RGB: ITU-R 601 luma, rounded. */
    unsigned char px[4 * 3] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 200, 30};
    cnv_image rgb = {2, 2, 3, px};
    cnv_preprocess g;
    cnv_preprocess_init(&g, 1, 2, 2);
    assert_int_equal(cnv_image_prepare(&rgb, &g, &out, err, sizeof err), CNV_OK);
    assert_int_equal(out.channels, 1);
    const int luma[4] = {76, 150, 29, 124}; /* 0.299*255, 0.587*255, 0.114*255, 2.99+117.4+3.42 */
    for (int i = 0; i < 4; i++) {
        double exact = 0.299 * px[i * 3] + 0.587 * px[i * 3 + 1] + 0.114 * px[i * 3 + 2];
        assert_true(fabs(out.data[i] - exact) <= 0.5 + 1e-9);
        assert_int_equal(out.data[i], luma[i]);
    }
    cnv_image_free(&out);

    /* RGB model: gray replicated; RGBA with alpha dropped. */
    unsigned char gp[4] = {0, 100, 200, 255};
    cnv_image gray = {2, 2, 1, gp};
    cnv_preprocess c3;
    cnv_preprocess_init(&c3, 3, 2, 2);
    assert_int_equal(cnv_image_prepare(&gray, &c3, &out, err, sizeof err), CNV_OK);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++)
            assert_int_equal(out.data[i * 3 + k], gp[i]);
    cnv_image_free(&out);
    unsigned char ap[2 * 4] = {1, 2, 3, 0, 4, 5, 6, 128};
    cnv_image rgba = {2, 1, 4, ap};
    cnv_preprocess_init(&c3, 3, 1, 2);
    assert_int_equal(cnv_image_prepare(&rgba, &c3, &out, err, sizeof err), CNV_OK);
    const unsigned char want[6] = {1, 2, 3, 4, 5, 6};
    assert_memory_equal(out.data, want, 6);
    cnv_image_free(&out);

    /* Stretch: a constant image stays constant at any size. */
    unsigned char cp[5 * 3 * 3];
    memset(cp, 77, sizeof cp);
    cnv_image con = {5, 3, 3, cp};
    cnv_preprocess_init(&c3, 3, 8, 4);
    c3.fit = CNV_FIT_STRETCH;
    assert_int_equal(cnv_image_prepare(&con, &c3, &out, err, sizeof err), CNV_OK);
    assert_int_equal(out.width, 4);
    assert_int_equal(out.height, 8);
    for (int i = 0; i < 4 * 8 * 3; i++)
        assert_int_equal(out.data[i], 77);
    cnv_image_free(&out);

    /* A non-square crop larger than the short-side resize still fits. */
    cnv_preprocess_init(&c3, 3, 100, 300);
    c3.resize = 110;
    cnv_image sq = {200, 200, 3, pattern(200, 200, 3)};
    assert_int_equal(cnv_image_prepare(&sq, &c3, &out, err, sizeof err), CNV_OK);
    assert_int_equal(out.width, 300);
    assert_int_equal(out.height, 100);
    cnv_image_free(&out);
    free(sq.data);

    /* Bad parameters. */
    cnv_preprocess_init(&c3, 2, 10, 10);
    assert_int_equal(cnv_image_prepare(&con, &c3, &out, err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_zeroed(&out);
    cnv_preprocess_init(&c3, 3, 10, 10);
    c3.std[1] = 0.0f;
    float tiny[300];
    assert_int_equal(cnv_image_to_tensor(&con, &c3, tiny, tu_pp_len(&c3), err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "std"));
    cnv_image badimg = {0, 5, 3, cp};
    cnv_preprocess_init(&c3, 3, 10, 10);
    assert_int_equal(cnv_image_to_tensor(&badimg, &c3, tiny, tu_pp_len(&c3), err, sizeof err), CNV_ERR_INVALID_ARG);
}

static void test_tensor_to_image_clamps(void **state)
{
    (void)state;
    char err[256];
    const float v[8] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.5f, 0.0f, 1.0f};
    const unsigned char want[8] = {0, 255, 0, 255, 0, 128, 0, 255};
    cnv_image img = {0};
    assert_int_equal(tu_to_image(v, 1, 2, 4, NULL, NULL, &img, err, sizeof err), CNV_OK);
    assert_int_equal(img.channels, 1);
    assert_int_equal(img.width, 4);
    assert_memory_equal(img.data, want, 8);
    cnv_image_free(&img);

    /* Denormalized per channel, interleaved into RGB. */
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    float chw[3 * 2];
    const int px[2][3] = {{100, 0, 255}, {37, 128, 200}};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 2; i++)
            chw[k * 2 + i] = ((float)px[i][k] / 255.0f - mean[k]) / std[k];
    assert_int_equal(tu_to_image(chw, 3, 1, 2, mean, std, &img, err, sizeof err), CNV_OK);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++)
            assert_int_equal(img.data[i * 3 + k], px[i][k]);
    cnv_image_free(&img);
    assert_int_equal(tu_to_image(chw, 2, 1, 2, NULL, NULL, &img, err, sizeof err),
                     CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_to_image(chw, 1, 0, 2, NULL, NULL, &img, err, sizeof err),
                     CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_to_image(chw, 1, 1 << 20, 1 << 20, NULL, NULL, &img, err, sizeof err),
                     CNV_ERR_INVALID_ARG);
}

/* ----------------------------------------------------------- resizing */

static void test_resize(void **state)
{
    (void)state;
    char err[256];
    /* Enlarging [0, 255] to 4 pixels is bilinear with pixel centers at
     * +0.5 and clamped edges: 0, 63.75, 191.25, 255. */
    unsigned char two[2] = {0, 255};
    cnv_image in = {2, 1, 1, two}, out = {0};
    assert_int_equal(cnv_image_resize(&in, 4, 1, &out, err, sizeof err), CNV_OK);
    const int want[4] = {0, 64, 191, 255};
    for (int i = 0; i < 4; i++)
        assert_true(abs(out.data[i] - want[i]) <= 1);
    cnv_image_free(&out);

    /* RGBA: the color of a fully transparent pixel does not bleed. */
    unsigned char rgba[8] = {255, 0, 0, 255, 0, 255, 0, 0};
    cnv_image ra = {2, 1, 4, rgba};
    assert_int_equal(cnv_image_resize(&ra, 4, 1, &out, err, sizeof err), CNV_OK);
    assert_int_equal(out.data[1 * 4 + 1], 0); /* no green in pixel 1 */
    assert_int_equal(out.data[1 * 4 + 0], 255);
    cnv_image_free(&out);

    /* Float planes: constants stay constant, planes do not mix, and a
     * 2:1 shrink of a linear ramp samples it at the output centers where
     * the filter's taps stay inside the plane (Mitchell's support is 2
     * output pixels, 4 input pixels each side). */
    float planes[2 * 16 * 24], small[2 * 8 * 12];
    for (int k = 0; k < 2; k++)
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 24; x++)
                planes[(k * 16 + y) * 24 + x] = k == 0 ? 3.5f : (float)(x + 2 * y);
    assert_int_equal(cnv_resize_chw(planes, 2, 16, 24, small, 8, 12, err, sizeof err), CNV_OK);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 12; x++) {
            assert_true(fabsf(small[y * 12 + x] - 3.5f) < 1e-5f);
            if (y >= 2 && y <= 5 && x >= 2 && x <= 9) /* input centers 2x+0.5 */
                assert_true(fabsf(small[96 + y * 12 + x] - (2 * x + 0.5f + 2 * (2 * y + 0.5f))) < 1e-3f);
        }
    float up[2 * 32 * 48];
    assert_int_equal(cnv_resize_chw(planes, 2, 16, 24, up, 32, 48, err, sizeof err), CNV_OK);
    for (int i = 0; i < 32 * 48; i++)
        assert_true(fabsf(up[i] - 3.5f) < 1e-5f);
    assert_int_equal(cnv_resize_chw(planes, 2, 16, 24, up, 0, 12, err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_image_resize(&in, -1, 3, &out, err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_zeroed(&out);
}

/* Debian's stb_image_resize 0.97 aborts (an assert) when it shrinks with
 * the triangle filter at about one ratio in six, 13 -> 9 among them, and
 * on the 480x360 -> 341x256 of cat.jpg's preprocessing. Every shrink ratio
 * of up to 160 pixels, and those two, must resize without ending the
 * process (a failure here is a crash of this test program). */
static void test_resize_never_aborts(void **state)
{
    (void)state;
    char err[256];
    int calls = 0;
    unsigned char *px = pattern(160, 1, 3);
    for (int w = 2; w <= 160; w++)
        for (int ow = 1; ow < w; ow++) {
            cnv_image in = {w, 1, 3, px}, row = {0}, col = {0};
            cnv_image tall = {1, w, 3, px};
            assert_int_equal(cnv_image_resize(&in, ow, 1, &row, err, sizeof err), CNV_OK);
            assert_int_equal(cnv_image_resize(&tall, 1, ow, &col, err, sizeof err), CNV_OK);
            cnv_image_free(&row);
            cnv_image_free(&col);
            calls += 2;
        }
    free(px);
    unsigned char *big = pattern(480, 360, 3);
    cnv_image cat = {480, 360, 3, big}, out = {0};
    assert_int_equal(cnv_image_resize(&cat, 341, 256, &out, err, sizeof err), CNV_OK);
    cnv_image_free(&out);
    free(big);
    printf("  %d shrinking resizes, none aborted\n", calls + 1);
}

/* A JPEG Huffman table (DHT) declaring more than 256 codes makes Debian's
 * stb_image 2.27 write past its tables: the library refuses it first, also
 * when the table is cut by the end of the segment or the file. */
static void test_jpeg_huffman_overflow(void **state)
{
    (void)state;
    char err[256];
    /* SOI, then DHT: length 2 + 17, class 0 id 0, counts 255 + 2 = 257 */
    unsigned char jpg[23] = {0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x13, 0x00, 255, 2};
    cnv_image out = {0};
    assert_int_equal(cnv_image_load_memory(jpg, sizeof jpg, &out, err, sizeof err), CNV_ERR_FORMAT);
    assert_non_null(strstr(err, "257 codes"));
    assert_zeroed(&out);
    /* the same counts in a segment cut by the file's end */
    assert_int_equal(cnv_image_load_memory(jpg, 9, &out, err, sizeof err), CNV_ERR_FORMAT);
    assert_non_null(strstr(err, "Huffman"));
    /* a scan using an AC table no DHT defined (stb would decode it with
     * uninitialized table memory) */
    unsigned char scan[] = {0xFF, 0xD8,
                            0xFF, 0xC4, 0x00, 0x14, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                            0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0};
    assert_int_equal(cnv_image_load_memory(scan, sizeof scan, &out, err, sizeof err), CNV_ERR_FORMAT);
    assert_non_null(strstr(err, "never defined"));
    /* 256 codes is the legal maximum: left to stb (which refuses this
     * otherwise empty file for other reasons) */
    jpg[8] = 1;
    assert_int_equal(cnv_image_load_memory(jpg, sizeof jpg, &out, err, sizeof err), CNV_ERR_FORMAT);
    assert_null(strstr(err, "Huffman"));
}

/* stb_image 2.27 overflows an int on a long PNM header number: refused
 * first; ordinary PNMs still load. */
static void test_pnm_long_numbers(void **state)
{
    (void)state;
    char err[256];
    cnv_image out = {0};
    const char *bad = "P6 # comment\n33333333333333333333 13 255\n";
    assert_int_equal(cnv_image_load_memory(bad, strlen(bad), &out, err, sizeof err), CNV_ERR_FORMAT);
    assert_non_null(strstr(err, "9 digits"));
    const char *bad_max = "P5 2 1 0000000000255\n";
    assert_int_equal(cnv_image_load_memory(bad_max, strlen(bad_max), &out, err, sizeof err), CNV_ERR_FORMAT);
    unsigned char good[] = "P5\n# a 2x1 gray image\n2 1\n255\n\x10\x20";
    assert_int_equal(cnv_image_load_memory(good, sizeof good - 1, &out, err, sizeof err), CNV_OK);
    assert_int_equal(out.width, 2);
    assert_int_equal(out.data[0], 0x10);
    assert_int_equal(out.data[1], 0x20);
    cnv_image_free(&out);
}

/* A PNG whose IDAT chunks are all empty makes stb_image 2.27 do pointer
 * arithmetic on NULL: refused first, with its own message. */
static void test_png_empty_idat(void **state)
{
    (void)state;
    char err[256];
    cnv_image out = {0};
    FILE *f = fopen("tests/fuzz_regressions/image/stb_png_empty_idat.png", "rb");
    if (!f) {
        printf("  skipped: run from the repository root\n");
        skip();
    }
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_int_equal(cnv_image_load_memory(buf, n, &out, err, sizeof err), CNV_ERR_FORMAT);
    assert_non_null(strstr(err, "IDAT"));
    assert_zeroed(&out);
}

/* Files far smaller than any encoding of the image they claim (found by
 * fuzz_image in round 2: a 41-byte RLE TGA of 16143x3880 pixels took
 * 5.3 s and 377 MB in `cnnviz preprocess`, stb_image filling it all with
 * zeros). A TGA packet codes at most 128 pixels, a raw PNM or BMP stores
 * every one, deflate packs at most 1032 bytes into one: shorter files are
 * refused before decoding; a whole file of each kind still decodes. */
static void test_truncated_for_their_size(void **state)
{
    (void)state;
    char err[256];
    cnv_image out = {0};
    unsigned char tga[41] = {0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0f, 0x3f, 0x28, 0x0f, 24, 0};
    assert_int_equal(cnv_image_load_memory(tga, sizeof tga, &out, err, sizeof err), CNV_ERR_FORMAT);
    printf("%s\n", err);
    assert_non_null(strstr(err, "truncated TGA: a 16143x3880 image needs at least 1957358 bytes"));
    const char pnm[] = "P6\n4000 3000\n255\n\x01\x02\x03";
    assert_int_equal(cnv_image_load_memory(pnm, sizeof pnm - 1, &out, err, sizeof err), CNV_ERR_FORMAT);
    printf("%s\n", err);
    assert_non_null(strstr(err, "truncated PNM"));
    unsigned char bmp[64] = {'B', 'M', 64, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 0, 16, 0, 0, 0, 16, 0, 0,
                             1, 0, 24, 0};
    assert_int_equal(cnv_image_load_memory(bmp, sizeof bmp, &out, err, sizeof err), CNV_ERR_FORMAT);
    printf("%s\n", err);
    assert_non_null(strstr(err, "truncated BMP: a 4096x4096 image"));
    assert_zeroed(&out);
    /* a BMP whose compression field holds garbage: stb reads it raw */
    bmp[30] = 0x00, bmp[31] = 0xff, bmp[32] = 0xd8, bmp[33] = 0xff;
    assert_int_equal(cnv_image_load_memory(bmp, sizeof bmp, &out, err, sizeof err), CNV_ERR_FORMAT);
    assert_non_null(strstr(err, "truncated BMP"));
    /* an IDAT chunk that claims 1.9 GB in a 167-byte file (stb grew its
     * buffer to 2 GiB before reading it) */
    FILE *f = fopen("tests/fuzz_regressions/image/png-idat-claims-1.9-GB.png", "rb");
    assert_non_null(f);
    unsigned char png[256];
    size_t n = fread(png, 1, sizeof png, f);
    fclose(f);
    assert_int_equal(cnv_image_load_memory(png, n, &out, err, sizeof err), CNV_ERR_FORMAT);
    printf("%s\n", err);
    assert_non_null(strstr(err, "IDAT chunk claims more bytes than the file holds"));
    /* whole files of the same kinds, at the edge: exactly the bytes needed */
    unsigned char full[18 + 2 * (1 + 3)] = {0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200, 0, 1, 0, 24, 0,
                                            0x80 | 127, 1, 2, 3, 0x80 | 71, 4, 5, 6};
    assert_int_equal(cnv_image_load_memory(full, sizeof full, &out, err, sizeof err), CNV_OK);
    assert_int_equal(out.width, 200);
    cnv_image_free(&out);
    const char small[] = "P5\n2 2\n255\n\x01\x02\x03\x04";
    assert_int_equal(cnv_image_load_memory(small, sizeof small - 1, &out, err, sizeof err), CNV_OK);
    cnv_image_free(&out);
}

/* cnv_preprocess_window: the part of a photo the network input comes from,
 * by hand for torchvision's transform of a 480x360 photo to 224x224:
 * resized to 341x256, cropped at (58, 16) (117 / 2 rounds half to even),
 * which is (81.6, 22.5) to (396.9, 337.5) in the photo. */
static void test_preprocess_window(void **state)
{
    (void)state;
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, 3, 224, 224);
    int x, y, w, h;
    char err[256];
    assert_int_equal(cnv_preprocess_window(&pp, 480, 360, &x, &y, &w, &h, err, sizeof err), CNV_OK);
    printf("480x360 -> window (%d, %d) %dx%d\n", x, y, w, h);
    assert_true(x == 82 && y == 23 && w == 315 && h == 315);
    assert_int_equal(cnv_preprocess_window(&pp, 224, 224, &x, &y, &w, &h, err, sizeof err), CNV_OK);
    assert_true(x == 0 && y == 0 && w == 224 && h == 224);
    pp.fit = CNV_FIT_STRETCH;
    assert_int_equal(cnv_preprocess_window(&pp, 480, 360, &x, &y, &w, &h, err, sizeof err), CNV_OK);
    assert_true(x == 0 && y == 0 && w == 480 && h == 360);
    assert_int_equal(cnv_preprocess_window(&pp, 0, 360, &x, &y, &w, &h, err, sizeof err), CNV_ERR_INVALID_ARG);
}

/* ---------------------------------------------------------------- maps */

static void test_maps(void **state)
{
    (void)state;
    char err[256];
    cnv_image img = {0};
    float con[6] = {2, 2, 2, 2, 2, 2};
    assert_int_equal(cnv_map_to_gray(con, 2, 3, &img, err, sizeof err), CNV_OK);
    for (int i = 0; i < 6; i++)
        assert_int_equal(img.data[i], 0);
    cnv_image_free(&img);

    float ramp[6] = {-1, 0, 1, 2, NAN, INFINITY};
    const unsigned char want[6] = {0, 85, 170, 255, 0, 255};
    assert_int_equal(cnv_map_to_gray(ramp, 1, 6, &img, err, sizeof err), CNV_OK);
    assert_memory_equal(img.data, want, 6);
    cnv_image_free(&img);

    float allnan[2] = {NAN, NAN};
    assert_int_equal(cnv_map_to_gray(allnan, 1, 2, &img, err, sizeof err), CNV_OK);
    assert_int_equal(img.data[0], 0);
    cnv_image_free(&img);
    float extreme[2] = {-3e38f, 3e38f};
    assert_int_equal(cnv_map_to_gray(extreme, 1, 2, &img, err, sizeof err), CNV_OK);
    assert_int_equal(img.data[0], 0);
    assert_int_equal(img.data[1], 255);
    cnv_image_free(&img);

    unsigned char c[3];
    cnv_heat_color(0.0f, c);
    assert_true(c[0] == 0 && c[1] == 0 && c[2] == 128);
    cnv_heat_color(1.0f, c);
    assert_true(c[0] == 128 && c[1] == 0 && c[2] == 0);
    cnv_heat_color(0.5f, c); /* halfway between cyan and yellow */
    assert_true(c[0] == 128 && c[1] == 255 && c[2] == 128);
    cnv_heat_color(NAN, c);
    assert_true(c[2] == 128);

    /* Overlay: alpha 0 is the photo, alpha 1 the heat map, resized from
     * 2x2 to the 8x6 photo. */
    cnv_image photo = {8, 6, 3, pattern(8, 6, 3)};
    float m[4] = {0, 1, 0, 1}; /* columns: cold, hot */
    assert_int_equal(cnv_map_overlay(&photo, m, 2, 2, 0.0f, &img, err, sizeof err), CNV_OK);
    assert_memory_equal(img.data, photo.data, 8 * 6 * 3);
    cnv_image_free(&img);
    assert_int_equal(cnv_map_overlay(&photo, m, 2, 2, 1.0f, &img, err, sizeof err), CNV_OK);
    assert_int_equal(img.width, 8);
    assert_int_equal(img.height, 6);
    for (int y = 0; y < 6; y++) {
        const unsigned char *l = img.data + (y * 8 + 0) * 3, *r = img.data + (y * 8 + 7) * 3;
        assert_true(l[0] == 0 && l[1] == 0 && l[2] == 128);
        assert_true(r[0] == 128 && r[1] == 0 && r[2] == 0);
    }
    cnv_image_free(&img);
    /* Half: the mean of photo and heat, on a gray photo too. */
    cnv_image gphoto = {2, 1, 1, (unsigned char[]){100, 200}};
    float m2[2] = {0, 1};
    assert_int_equal(cnv_map_overlay(&gphoto, m2, 1, 2, 0.5f, &img, err, sizeof err), CNV_OK);
    assert_int_equal(img.channels, 3);
    assert_int_equal(img.data[0], 50);
    assert_int_equal(img.data[2], 114);
    assert_int_equal(img.data[3], 164);
    cnv_image_free(&img);
    assert_int_equal(cnv_map_overlay(&photo, m, 2, 2, 1.5f, &img, err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_map_overlay(&photo, m, 2, 2, NAN, &img, err, sizeof err), CNV_ERR_INVALID_ARG);
    free(photo.data);
}

/* ------------------------------------------------------------- writing */

static void test_write_failures(void **state)
{
    (void)state;
    char err[512];
    unsigned char px[3] = {1, 2, 3};
    cnv_image img = {1, 1, 3, px};
    const char *path = tmp_path("no/such/dir/out.png");
    cnv_status st = cnv_image_write_png(&img, path, err, sizeof err);
    printf("  write to a missing directory -> %s: %s\n", cnv_status_string(st), err);
    assert_int_equal(st, CNV_ERR_IO);
    assert_non_null(strstr(err, path));
    assert_int_not_equal(access(path, F_OK), 0);

    /* The target is a directory: the temporary is written, the rename
     * fails, and nothing is left behind. */
    int before = dir_entries();
    char sub[512];
    snprintf(sub, sizeof sub, "%s", tmp_path("adir"));
    assert_int_equal(mkdir(sub, 0700), 0);
    st = cnv_image_write_png(&img, sub, err, sizeof err);
    printf("  write over a directory -> %s: %s\n", cnv_status_string(st), err);
    assert_int_equal(st, CNV_ERR_IO);
    assert_int_equal(dir_entries(), before + 1);
    assert_false(dir_has_tmp());
    rmdir(sub);

    /* Replacing an existing file is atomic: it is either old or new. */
    assert_int_equal(cnv_image_write_png(&img, tmp_path("again.png"), err, sizeof err), CNV_OK);
    px[0] = 200;
    assert_int_equal(cnv_image_write_png(&img, tmp_path("again.png"), err, sizeof err), CNV_OK);
    cnv_image back = {0};
    assert_int_equal(cnv_image_load(tmp_path("again.png"), &back, err, sizeof err), CNV_OK);
    assert_int_equal(back.data[0], 200);
    cnv_image_free(&back);

    cnv_image bad = {1, 1, 2, px};
    assert_int_equal(cnv_image_write_png(&bad, tmp_path("bad.png"), err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_image_write_png(NULL, tmp_path("bad.png"), err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_image_write_png(&img, "", err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_false(dir_has_tmp());
}

/* ----------------------------------------------------------------- GIF */

static void test_gif(void **state)
{
    (void)state;
    const int w = 20, h = 10, nf = 3;
    cnv_gif_writer *g = NULL;
    const char *path = tmp_path("anim.gif");
    assert_int_equal(cnv_gif_writer_open(path, w, h, 7, 1, &g), CNV_OK);
    unsigned char rgb[20 * 10 * 3];
    for (int f = 0; f < nf; f++) {
        /* Few colors, so the quantizer keeps them exactly. */
        for (int i = 0; i < w * h; i++) {
            int x = i % w;
            rgb[i * 3 + 0] = x < 10 ? 255 : 0;
            rgb[i * 3 + 1] = (unsigned char)(f * 120);
            rgb[i * 3 + 2] = x < 10 ? 0 : 248;
        }
        cnv_image frame = {w, h, 3, rgb};
        assert_int_equal(cnv_gif_writer_add_frame(g, &frame), CNV_OK);
    }
    cnv_image wrong = {w + 1, h, 3, rgb};
    assert_int_equal(cnv_gif_writer_add_frame(g, &wrong), CNV_ERR_SHAPE);
    assert_non_null(strstr(cnv_gif_writer_errmsg(g), "21x10"));
    unsigned char gray[20 * 10];
    memset(gray, 90, sizeof gray);
    cnv_image gframe = {w, h, 1, gray};
    assert_int_equal(cnv_gif_writer_add_frame(g, &gframe), CNV_OK);
    assert_int_equal(cnv_gif_writer_frames(g), nf + 1);
    assert_int_not_equal(access(path, F_OK), 0); /* not there until close */
    assert_int_equal(cnv_gif_writer_close(g), CNV_OK);
    assert_int_equal(cnv_gif_writer_add_frame(g, &gframe), CNV_ERR_STATE);
    cnv_gif_writer_free(g);
    assert_false(dir_has_tmp());

    int e = 0;
    GifFileType *rd = DGifOpenFileName(path, &e);
    assert_non_null(rd);
    assert_int_equal(DGifSlurp(rd), GIF_OK);
    printf("  GIF read back: %dx%d, %d frames\n", rd->SWidth, rd->SHeight, rd->ImageCount);
    assert_int_equal(rd->SWidth, w);
    assert_int_equal(rd->SHeight, h);
    assert_int_equal(rd->ImageCount, nf + 1);
    for (int f = 0; f < nf + 1; f++) {
        SavedImage *si = &rd->SavedImages[f];
        assert_int_equal(si->ImageDesc.Width, w);
        assert_int_equal(si->ImageDesc.Height, h);
        ColorMapObject *cm = si->ImageDesc.ColorMap ? si->ImageDesc.ColorMap : rd->SColorMap;
        assert_non_null(cm);
        GraphicsControlBlock gcb;
        assert_int_equal(DGifSavedExtensionToGCB(rd, f, &gcb), GIF_OK);
        assert_int_equal(gcb.DelayTime, 7);
        /* Left and right halves, within the quantizer's 5 bits per channel. */
        GifColorType l = cm->Colors[si->RasterBits[3 * w + 2]];
        GifColorType r = cm->Colors[si->RasterBits[3 * w + 15]];
        int gw = f < nf ? f * 120 : 90;
        if (f < nf) {
            assert_true(abs(l.Red - 255) <= 8 && abs(l.Green - gw) <= 8 && l.Blue <= 8);
            assert_true(r.Red <= 8 && abs(r.Green - gw) <= 8 && abs(r.Blue - 248) <= 8);
        } else {
            assert_true(abs(l.Red - 90) <= 8 && abs(l.Green - 90) <= 8 && abs(l.Blue - 90) <= 8);
        }
    }
    /* The loop extension (NETSCAPE2.0) sits before the first image. */
    int looped = 0;
    SavedImage *s0 = &rd->SavedImages[0];
    for (int i = 0; i < s0->ExtensionBlockCount; i++)
        if (s0->ExtensionBlocks[i].Function == APPLICATION_EXT_FUNC_CODE &&
            s0->ExtensionBlocks[i].ByteCount == 11 &&
            !memcmp(s0->ExtensionBlocks[i].Bytes, "NETSCAPE2.0", 11))
            looped = 1;
    assert_true(looped);
    DGifCloseFile(rd, &e);

    /* Failures: a missing directory, bad sizes, closing with no frames,
     * abandoning an open writer. */
    const char *bad = tmp_path("nodir/x.gif");
    assert_int_equal(cnv_gif_writer_open(bad, w, h, 5, 0, &g), CNV_ERR_IO);
    assert_non_null(g);
    printf("  GIF to a missing directory: %s\n", cnv_gif_writer_errmsg(g));
    assert_non_null(strstr(cnv_gif_writer_errmsg(g), bad));
    assert_int_equal(cnv_gif_writer_add_frame(g, &gframe), CNV_ERR_STATE);
    cnv_gif_writer_free(g);
    assert_int_equal(cnv_gif_writer_open(path, 0, h, 5, 0, &g), CNV_ERR_INVALID_ARG);
    cnv_gif_writer_free(g);
    assert_int_equal(cnv_gif_writer_open(tmp_path("empty.gif"), w, h, 5, 0, &g), CNV_OK);
    assert_int_equal(cnv_gif_writer_close(g), CNV_ERR_STATE);
    cnv_gif_writer_free(g);
    assert_int_equal(access(tmp_path("empty.gif"), F_OK), -1);
    assert_int_equal(cnv_gif_writer_open(tmp_path("abandoned.gif"), w, h, 5, 0, &g), CNV_OK);
    assert_int_equal(cnv_gif_writer_add_frame(g, &gframe), CNV_OK);
    cnv_gif_writer_free(g);
    assert_int_equal(access(tmp_path("abandoned.gif"), F_OK), -1);
    assert_false(dir_has_tmp());
    cnv_gif_writer_free(NULL);
}

/* -------------------------------------------------------------- drawing */

static int count_dark(const cnv_image *img, int x0, int y0, int x1, int y1)
{
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            n += img->data[(y * img->width + x) * img->channels] < 128;
    return n;
}

static void test_text_and_grid(void **state)
{
    (void)state;
    char err[256];
    int wa = cnv_text_width("A", 1);
    assert_true(wa >= 5 && wa <= 8);
    assert_int_equal(cnv_text_width("AB", 2), 2 * cnv_text_width("AB", 1));
    assert_int_equal(cnv_text_width("", 1), 0);
    assert_int_equal(cnv_text_width("\xc3\xa9", 1), 2 * cnv_text_width("?", 1));

    cnv_image canvas = {0};
    assert_int_equal(cnv_image_create(40, 20, 3, &canvas, err, sizeof err), CNV_OK);
    memset(canvas.data, 255, 40 * 20 * 3);
    const unsigned char black[3] = {0, 0, 0};
    cnv_image_draw_text(&canvas, 2, 2, "Hi", 1, black);
    int ink = count_dark(&canvas, 0, 0, 40, 20);
    assert_true(ink > 5);
    assert_int_equal(count_dark(&canvas, 0, 0, 40, 2), 0); /* nothing above y */
    /* Clipped at every edge, and non-ASCII, without touching outside. */
    cnv_image_draw_text(&canvas, -5, -5, "W\x01\xff~", 3, black);
    cnv_image_draw_text(&canvas, 38, 18, "MMMM", 2, black);
    cnv_image_draw_text(&canvas, 1 << 30, 0, "x", 1, black);
    cnv_image_draw_text(NULL, 0, 0, "x", 1, black);
    cnv_image_free(&canvas);

    /* Five 28x28 tiles in 3 columns: enlarged 3x to 84, labels under. */
    cnv_image tiles[5];
    unsigned char data[5][28 * 28];
    for (int i = 0; i < 5; i++) {
        memset(data[i], (unsigned char)(40 * i), sizeof data[i]);
        tiles[i] = (cnv_image){28, 28, 1, data[i]};
    }
    const char *labels[5] = {"T-shirt", "Trouser", NULL, "a very long label that cannot fit", "Bag"};
    cnv_image sheet = {0};
    assert_int_equal(cnv_image_grid(tiles, 5, 3, labels, 4, &sheet, err, sizeof err), CNV_OK);
    const int cell = 84, lab = 16, pad = 4;
    assert_int_equal(sheet.channels, 3);
    assert_int_equal(sheet.width, 3 * cell + 4 * pad);
    assert_int_equal(sheet.height, 2 * (cell + lab) + 3 * pad);
    for (int i = 0; i < 5; i++) {
        int x0 = pad + (i % 3) * (cell + pad), y0 = pad + (i / 3) * (cell + lab + pad);
        const unsigned char *p = sheet.data + ((y0 + 40) * sheet.width + x0 + 40) * 3;
        assert_int_equal(p[0], 40 * i);
        int text = count_dark(&sheet, x0, y0 + cell, x0 + cell, y0 + cell + lab);
        if (labels[i])
            assert_true(text > 10);
        else
            assert_int_equal(text, 0);
        /* The gap right of each cell stays white: long labels are cut. */
        assert_int_equal(count_dark(&sheet, x0 + cell, y0, x0 + cell + pad, y0 + cell + lab), 0);
    }
    assert_int_equal(cnv_image_write_png(&sheet, tmp_path("sheet.png"), err, sizeof err), CNV_OK);
    if (getenv("CNV_KEEP_IMAGES"))
        cnv_image_write_png(&sheet, "/tmp/cnv_sheet.png", err, sizeof err);
    cnv_image_free(&sheet);

    /* Large RGBA tiles keep their size and get 2x text. */
    cnv_image big[2];
    for (int i = 0; i < 2; i++)
        big[i] = (cnv_image){210, 100 + 10 * i, 4, pattern(210, 100 + 10 * i, 4)};
    assert_int_equal(cnv_image_grid(big, 2, 5, labels, 0, &sheet, err, sizeof err), CNV_OK);
    assert_int_equal(sheet.width, 420);
    assert_int_equal(sheet.height, 110 + 24 + 4);
    cnv_image_free(&sheet);
    free(big[0].data);
    free(big[1].data);

    assert_int_equal(cnv_image_grid(tiles, 0, 3, NULL, 0, &sheet, err, sizeof err), CNV_ERR_INVALID_ARG);
    tiles[2].channels = 2;
    assert_int_equal(cnv_image_grid(tiles, 5, 3, NULL, 0, &sheet, err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "tile 2"));
    assert_zeroed(&sheet);
}

/* ------------------------------------------------ allocation failures */

static long g_alloc_left;
static long g_live;

static void *failing_malloc(void *user, size_t n)
{
    (void)user;
    if (g_alloc_left-- <= 0)
        return NULL;
    void *p = malloc(n);
    if (p)
        g_live++;
    return p;
}

static void counting_free(void *user, void *p)
{
    (void)user;
    g_live--;
    free(p);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    char err[256];
    cnv_image photo = {300, 260, 4, pattern(300, 260, 4)};
    assert_true(stbi_write_png(tmp_path("oom.png"), 30, 20, 4, photo.data, 30 * 4));
    cnv_allocator a = {failing_malloc, counting_free, NULL};
    /* Fail the k-th allocation for every k until the call succeeds: each
     * failure is NOMEM with nothing leaked. */
    for (int which = 0; which < 4; which++) {
        int k, ok = 0;
        for (k = 0; k < 50 && !ok; k++) {
            g_alloc_left = k;
            g_live = 0;
            cnv_set_allocator(&a);
            cnv_image out = {0};
            cnv_preprocess pp;
            cnv_preprocess_init(&pp, 1, 224, 224);
            float m[4] = {0, 1, 2, 3};
            cnv_status st = CNV_OK;
            switch (which) {
            case 0: st = cnv_image_prepare(&photo, &pp, &out, err, sizeof err); break;
            case 1: st = cnv_image_load(tmp_path("oom.png"), &out, err, sizeof err); break;
            case 2: st = cnv_map_overlay(&photo, m, 2, 2, 0.5f, &out, err, sizeof err); break;
            case 3: st = cnv_image_grid(&photo, 1, 1, (const char *[]){"x"}, 2, &out, err, sizeof err); break;
            }
            if (st == CNV_OK) {
                ok = 1;
                cnv_image_free(&out);
            } else {
                assert_int_equal(st, CNV_ERR_NOMEM);
                assert_zeroed(&out);
            }
            cnv_set_allocator(NULL);
            assert_int_equal(g_live, 0);
        }
        assert_true(ok);
        assert_true(k > 1);
    }
    free(photo.data);
}

/* -------------------------------------- PyTorch's inputs for cat and dog */

static void test_imagenet_reference(void **state)
{
    (void)state;
    const char *names[2] = {"cat", "dog"};
    int done = 0;
    for (int t = 0; t < 2; t++) {
        char img_path[256], ref_path[256];
        snprintf(img_path, sizeof img_path, SHARED "/images/%s.jpg", names[t]);
        snprintf(ref_path, sizeof ref_path, SHARED "/reference/%s_input.f32", names[t]);
        size_t n = 0;
        unsigned char *ref = read_bytes(ref_path, &n);
        if (!ref || access(img_path, R_OK) != 0) {
            printf("  %s or %s absent: not compared\n", img_path, ref_path);
            free(ref);
            continue;
        }
        assert_int_equal(n, 3 * 224 * 224 * sizeof(float));
        float *want = malloc(n), *got = malloc(n);
        memcpy(want, ref, n); /* raw little-endian float32, this machine's order */
        char err[256];
        cnv_image img = {0};
        assert_int_equal(cnv_image_load(img_path, &img, err, sizeof err), CNV_OK);
        cnv_preprocess pp;
        cnv_preprocess_init(&pp, 3, 224, 224);
        const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
        memcpy(pp.mean, mean, sizeof mean);
        memcpy(pp.std, std, sizeof std);
        assert_int_equal(cnv_image_to_tensor(&img, &pp, got, tu_pp_len(&pp), err, sizeof err), CNV_OK);
        double max = 0, sum = 0;
        int differ = 0;
        for (size_t i = 0; i < 3 * 224 * 224; i++) {
            double d = fabs((double)got[i] - want[i]);
            sum += d;
            max = d > max ? d : max;
            differ += d > 1e-6;
        }
        double mean_d = sum / (3 * 224 * 224);
        /* PIL resizes with an antialiased triangle filter, we with stb's
         * Mitchell filter when shrinking (src/image/resize.c says why), and stb's
         * JPEG decoder differs from libjpeg by a level here and there. One
         * 8-bit level of channel 0 is 1 / (255 * 0.229) = 0.0171; measured:
         * mean 0.006 (cat) and 0.008 (dog), max 0.16. */
        printf("  %s.jpg %dx%d vs PyTorch's input: max abs diff %.4f, mean abs diff %.5f, "
               "%d of %d values differ\n", names[t], img.width, img.height, max, mean_d, differ,
               3 * 224 * 224);
        assert_true(mean_d < 0.015);
        assert_true(max < 0.25);
        cnv_image_free(&img);
        free(want);
        free(got);
        free(ref);
        done++;
    }
    if (!done)
        skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_round_trip),
        cmocka_unit_test(test_channel_layouts),
        cmocka_unit_test(test_png_16bit),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_center_crop_exact),
        cmocka_unit_test(test_same_size_and_channels),
        cmocka_unit_test(test_channel_order),
        cmocka_unit_test(test_tensor_to_image_clamps),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_resize_never_aborts),
        cmocka_unit_test(test_jpeg_huffman_overflow),
        cmocka_unit_test(test_pnm_long_numbers),
        cmocka_unit_test(test_png_empty_idat),
        cmocka_unit_test(test_maps),
        cmocka_unit_test(test_write_failures),
        cmocka_unit_test(test_gif),
        cmocka_unit_test(test_text_and_grid),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_truncated_for_their_size),
        cmocka_unit_test(test_preprocess_window),
        cmocka_unit_test(test_imagenet_reference),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
