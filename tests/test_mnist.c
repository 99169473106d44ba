/* The IDX (MNIST) reader on crafted files, plain and gzip: a good pair
 * read back exactly, and every kind of damage refused with a message (bad
 * magic, wrong type or rank, zero or huge sizes, counts larger than the
 * data, trailing bytes, mismatched counts, a cut gzip stream); then the
 * real Fashion-MNIST files when the package is installed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "testutil.h"

#define DATA_DIR "/usr/share/datasets/fashion-mnist"

static int setup(void **state)
{
    (void)state;
    return tu_scratch_make("cnv_mnist_");
}

static int teardown(void **state)
{
    (void)state;
    return tu_scratch_remove();
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes head (4 magic bytes + sizes) then n data bytes, plain or gzip. */
static void write_file(const char *name, const unsigned char *bytes, size_t n, int gz)
{
    const char *p = tu_scratch(name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        assert_non_null(f);
        if (n)
            assert_int_equal(gzwrite(f, bytes, (unsigned)n), (int)n);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(p, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(bytes, 1, n, f), n);
        fclose(f);
    }
}

/* An image file declaring n_decl images of h x w, holding n_real 4x3 ones
 * (byte i = i*7 & 255),
 * header fields overridable; `cut` bytes are removed from the end. */
static size_t image_bytes(unsigned char *buf, uint32_t magic, uint32_t n_decl, uint32_t h, uint32_t w,
                          int n_real, size_t cut)
{
    put_be32(buf, magic);
    put_be32(buf + 4, n_decl);
    put_be32(buf + 8, h);
    put_be32(buf + 12, w);
    size_t len = 16;
    for (size_t i = 0; i < (size_t)n_real * 12; i++) /* 4x3 images, whatever is declared */
        buf[len++] = (unsigned char)((i * 7) & 255);
    return len - cut;
}

static size_t label_bytes(unsigned char *buf, uint32_t magic, uint32_t n_decl, int n_real)
{
    put_be32(buf, magic);
    put_be32(buf + 4, n_decl);
    for (int i = 0; i < n_real; i++)
        buf[8 + i] = (unsigned char)((i * 3) % 5);
    return 8 + (size_t)n_real;
}

static unsigned char g_img[16 + 6 * 4 * 3 + 16], g_lab[8 + 6 + 8];

static void good_pair(int gz, const char *split)
{
    char name[64];
    size_t n = image_bytes(g_img, 0x803, 6, 4, 3, 6, 0);
    snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", split, gz ? ".gz" : "");
    write_file(name, g_img, n, gz);
    n = label_bytes(g_lab, 0x801, 6, 6);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", split, gz ? ".gz" : "");
    write_file(name, g_lab, n, gz);
}

static void reads_good_files(void **state)
{
    (void)state;
    for (int gz = 0; gz < 2; gz++) {
        const char *split = gz ? "gzset" : "plainset";
        good_pair(gz, split);
        cnv_dataset *d = NULL;
        if (cnv_mnist_load(tu_scratch_dir(), split, &d) != CNV_OK)
            fail_msg("%s", cnv_dataset_errmsg(d));
        assert_int_equal(cnv_dataset_count(d), 6);
        int c, h, w;
        cnv_dataset_shape(d, &c, &h, &w);
        assert_true(c == 1 && h == 4 && w == 3);
        assert_int_equal(cnv_dataset_classes(d), 5); /* labels (i*3)%5 reach 4 */
        const uint8_t *px = cnv_dataset_pixels(d), *lb = cnv_dataset_labels(d);
        for (int i = 0; i < 6 * 12; i++)
            assert_int_equal(px[i], (i * 7) & 255);
        for (int i = 0; i < 6; i++)
            assert_int_equal(lb[i], (i * 3) % 5);
        /* stats against a direct two-pass computation */
        double mean, sd, s = 0, s2 = 0;
        assert_int_equal(cnv_dataset_stats(d, &mean, &sd), CNV_OK);
        for (int i = 0; i < 72; i++)
            s += px[i] / 255.0;
        for (int i = 0; i < 72; i++)
            s2 += (px[i] / 255.0 - s / 72) * (px[i] / 255.0 - s / 72);
        assert_true(fabs(mean - s / 72) < 1e-12 && fabs(sd - sqrt(s2 / 72)) < 1e-9);
        cnv_dataset_free(d);
    }
}

/* Expects the pair (images, labels) to be refused with status st and a
 * message containing want. */
static void expect_refused(const char *images, const char *labels, cnv_status st, const char *want)
{
    cnv_dataset *d = NULL;
    char ip[256], lp[256];
    snprintf(ip, sizeof ip, "%s", tu_scratch(images));
    snprintf(lp, sizeof lp, "%s", tu_scratch(labels));
    cnv_status got = cnv_mnist_load_files(ip, lp, &d);
    printf("refused %s + %s: %s\n", images, labels, cnv_dataset_errmsg(d));
    assert_int_equal(got, st);
    assert_non_null(d);
    assert_non_null(strstr(cnv_dataset_errmsg(d), want));
    assert_int_equal(cnv_dataset_count(d), 0);
    assert_null(cnv_dataset_pixels(d));
    cnv_dataset_free(d);
}

static void rejects_damaged_files(void **state)
{
    (void)state;
    good_pair(0, "ok");
    unsigned char buf[sizeof g_img + 64];
    size_t n;
    for (int gz = 0; gz < 2; gz++) {
        const char *sfx = gz ? ".gz" : "";
        char nm[64];
#define NAME(s) (snprintf(nm, sizeof nm, "%s%s", s, sfx), nm)
        n = image_bytes(buf, 0x12345678, 6, 4, 3, 6, 0);
        write_file(NAME("magic"), buf, n, gz);
        expect_refused(nm, "ok-labels-idx1-ubyte", CNV_ERR_FORMAT, "bad magic");
        n = image_bytes(buf, 0x0D03, 6, 4, 3, 6, 0); /* float data */
        write_file(NAME("type"), buf, n, gz);
        expect_refused(nm, "ok-labels-idx1-ubyte", CNV_ERR_FORMAT, "unsigned bytes");
        n = image_bytes(buf, 0x802, 6, 4, 3, 6, 0); /* rank 2 */
        write_file(NAME("rank"), buf, n, gz);
        expect_refused(nm, "ok-labels-idx1-ubyte", CNV_ERR_FORMAT, "dimensions");
        n = image_bytes(buf, 0x803, 6, 0, 3, 6, 0);
        write_file(NAME("zero"), buf, n, gz);
        expect_refused(nm, "ok-labels-idx1-ubyte", CNV_ERR_FORMAT, "dimension 1 is 0");
        /* 100 images declared, 6 present */
        n = image_bytes(buf, 0x803, 100, 4, 3, 6, 0);
        write_file(NAME("short"), buf, n, gz);
        expect_refused(nm, "ok-labels-idx1-ubyte", CNV_ERR_FORMAT, "truncated");
        /* a count whose data would need gigabytes: refused on reading, not
         * allocated up front */
        n = image_bytes(buf, 0x803, 100000000, 4096, 4096, 6, 0);
        write_file(NAME("huge"), buf, n, gz);
        expect_refused(nm, "ok-labels-idx1-ubyte", CNV_ERR_FORMAT, "too large");
        n = image_bytes(buf, 0x803, 2000000, 28, 28, 6, 0);
        write_file(NAME("lying"), buf, n, gz);
        expect_refused(nm, "ok-labels-idx1-ubyte", CNV_ERR_FORMAT, "truncated");
        /* the header itself cut short */
        n = image_bytes(buf, 0x803, 6, 4, 3, 0, 7);
        write_file(NAME("head"), buf, n, gz);
        expect_refused(nm, "ok-labels-idx1-ubyte", CNV_ERR_FORMAT, "truncated header");
        /* one byte of data missing, one too many */
        n = image_bytes(buf, 0x803, 6, 4, 3, 6, 1);
        write_file(NAME("cut1"), buf, n, gz);
        expect_refused(nm, "ok-labels-idx1-ubyte", CNV_ERR_FORMAT, "truncated");
        n = image_bytes(buf, 0x803, 6, 4, 3, 6, 0);
        buf[n++] = 9;
        write_file(NAME("extra"), buf, n, gz);
        expect_refused(nm, "ok-labels-idx1-ubyte", CNV_ERR_FORMAT, "past the declared size");
        /* empty file */
        write_file(NAME("empty"), buf, 0, gz);
        expect_refused(nm, "ok-labels-idx1-ubyte", CNV_ERR_FORMAT, "bad magic");
        /* labels: more declared than present, and a count unlike the images' */
        n = label_bytes(buf, 0x801, 7, 6);
        write_file(NAME("lab7"), buf, n, gz);
        expect_refused("ok-images-idx3-ubyte", nm, CNV_ERR_FORMAT, "truncated");
        n = label_bytes(buf, 0x801, 5, 5);
        write_file(NAME("lab5"), buf, n, gz);
        expect_refused("ok-images-idx3-ubyte", nm, CNV_ERR_FORMAT, "has 6 images but");
        n = label_bytes(buf, 0x803, 6, 6);
        write_file(NAME("labrank"), buf, n, gz);
        expect_refused("ok-images-idx3-ubyte", nm, CNV_ERR_FORMAT, "dimensions");
#undef NAME
    }
    /* a gzip stream cut in the middle of its deflate data */
    unsigned char z[4096];
    n = image_bytes(buf, 0x803, 6, 4, 3, 6, 0);
    write_file("whole.gz", buf, n, 1);
    FILE *f = fopen(tu_scratch("whole.gz"), "rb");
    assert_non_null(f);
    size_t zn = fread(z, 1, sizeof z, f);
    fclose(f);
    assert_true(zn > 30);
    write_file("cutgz", z, zn - 12, 0); /* drop the trailer and some data */
    cnv_dataset *d = NULL;
    char ip[256], lp[256];
    snprintf(ip, sizeof ip, "%s", tu_scratch("cutgz"));
    snprintf(lp, sizeof lp, "%s", tu_scratch("ok-labels-idx1-ubyte"));
    assert_int_equal(cnv_mnist_load_files(ip, lp, &d), CNV_ERR_FORMAT);
    printf("refused a cut gzip stream: %s\n", cnv_dataset_errmsg(d));
    cnv_dataset_free(d);
    /* a missing file is an I/O error naming the path */
    expect_refused("nothing-here", "ok-labels-idx1-ubyte", CNV_ERR_IO, "nothing-here");
    d = NULL;
    assert_int_equal(cnv_mnist_load(tu_scratch_dir(), "nosuchsplit", &d), CNV_ERR_IO);
    assert_non_null(strstr(cnv_dataset_errmsg(d), "nosuchsplit-images-idx3-ubyte"));
    cnv_dataset_free(d);
    assert_int_equal(cnv_mnist_load(NULL, "train", &d), CNV_ERR_INVALID_ARG);
    cnv_dataset_free(d);
    assert_int_equal(cnv_mnist_load(tu_scratch_dir(), "train", NULL), CNV_ERR_INVALID_ARG);
}

static void dataset_create_checks(void **state)
{
    (void)state;
    const uint8_t px[2 * 4] = {0, 255, 0, 255, 0, 0, 0, 0}, lb[2] = {1, 0};
    cnv_dataset *d = NULL;
    assert_int_equal(cnv_dataset_create(2, 1, 2, 2, 2, px, lb, &d), CNV_OK);
    double mean, sd;
    assert_int_equal(cnv_dataset_stats(d, &mean, &sd), CNV_OK);
    assert_true(fabs(mean - 0.25) < 1e-12 && fabs(sd - sqrt(0.1875)) < 1e-12);
    cnv_dataset_free(d);
    const uint8_t bad[2] = {2, 0};
    assert_int_equal(cnv_dataset_create(2, 1, 2, 2, 2, px, bad, &d), CNV_ERR_INVALID_ARG);
    assert_non_null(strstr(cnv_dataset_errmsg(d), "label 2"));
    cnv_dataset_free(d);
    assert_int_equal(cnv_dataset_create(0, 1, 2, 2, 2, px, lb, &d), CNV_ERR_INVALID_ARG);
    cnv_dataset_free(d);
    assert_int_equal(cnv_dataset_create(65536, 1, 65536, 65536, 2, px, lb, &d), CNV_ERR_NOMEM);
    cnv_dataset_free(d);
    cnv_dataset_free(NULL);
    assert_int_equal(cnv_dataset_count(NULL), 0);
    assert_non_null(cnv_dataset_errmsg(NULL));
    assert_int_equal(cnv_dataset_stats(NULL, &mean, &sd), CNV_ERR_INVALID_ARG);
}

static void real_fashion_mnist(void **state)
{
    (void)state;
    if (access(DATA_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0) {
        printf("skipped: the dataset-fashion-mnist package is not installed (" DATA_DIR ")\n");
        skip();
    }
    cnv_dataset *tr = NULL, *te = NULL;
    if (cnv_mnist_load(DATA_DIR, "train", &tr) != CNV_OK)
        fail_msg("%s", cnv_dataset_errmsg(tr));
    if (cnv_mnist_load(DATA_DIR, "t10k", &te) != CNV_OK)
        fail_msg("%s", cnv_dataset_errmsg(te));
    assert_int_equal(cnv_dataset_count(tr), 60000);
    assert_int_equal(cnv_dataset_count(te), 10000);
    assert_int_equal(cnv_dataset_classes(tr), 10);
    int c, h, w;
    cnv_dataset_shape(tr, &c, &h, &w);
    assert_true(c == 1 && h == 28 && w == 28);
    /* every class has 6,000 training and 1,000 test images */
    int count[10] = {0};
    for (int i = 0; i < 60000; i++)
        count[cnv_dataset_labels(tr)[i]]++;
    for (int k = 0; k < 10; k++)
        assert_int_equal(count[k], 6000);
    double mean, sd;
    assert_int_equal(cnv_dataset_stats(tr, &mean, &sd), CNV_OK);
    printf("Fashion-MNIST train: mean %.4f, std %.4f\n", mean, sd);
    assert_true(fabs(mean - 0.2860) < 5e-5 && fabs(sd - 0.3530) < 5e-5);
    cnv_dataset_free(tr);
    cnv_dataset_free(te);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_good_files),
        cmocka_unit_test(rejects_damaged_files),
        cmocka_unit_test(dataset_create_checks),
        cmocka_unit_test(real_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
