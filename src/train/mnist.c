/* Labelled 8-bit image sets (cnv_dataset) and the MNIST IDX reader: files
 * are untrusted, so every header field is checked and the buffers grow only
 * as data actually arrives. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "core/base.h"

struct cnv_dataset {
    cnv_err err;
    int n, c, h, w, n_classes;
    uint8_t *pixels; /* n*c*h*w */
    uint8_t *labels; /* n */
};

/* Sizes an IDX file may declare: generous for image sets, small enough that
 * n*h*w stays far below SIZE_MAX and INT_MAX counts. */
#define IDX_MAX_COUNT 100000000
#define IDX_MAX_SIDE 4096
#define IDX_MAX_BYTES ((size_t)1 << 31)

static cnv_dataset *dataset_new(void)
{
    return cnv_calloc(1, sizeof(cnv_dataset));
}

void cnv_dataset_free(cnv_dataset *d)
{
    if (!d)
        return;
    cnv_free(d->pixels);
    cnv_free(d->labels);
    cnv_free(d);
}

const char *cnv_dataset_errmsg(const cnv_dataset *d)
{
    return d ? d->err.msg : "no dataset (NULL handle)";
}

int cnv_dataset_count(const cnv_dataset *d)
{
    return d && d->pixels ? d->n : 0;
}

void cnv_dataset_shape(const cnv_dataset *d, int *c, int *h, int *w)
{
    int ok = d && d->pixels;
    if (c)
        *c = ok ? d->c : 0;
    if (h)
        *h = ok ? d->h : 0;
    if (w)
        *w = ok ? d->w : 0;
}

int cnv_dataset_classes(const cnv_dataset *d)
{
    return d && d->pixels ? d->n_classes : 0;
}

const uint8_t *cnv_dataset_pixels(const cnv_dataset *d)
{
    return d ? d->pixels : NULL;
}

const uint8_t *cnv_dataset_labels(const cnv_dataset *d)
{
    return d ? d->labels : NULL;
}

cnv_status cnv_dataset_stats(const cnv_dataset *d, double *mean, double *std)
{
    if (!d || !d->pixels)
        return CNV_ERR_INVALID_ARG;
    /* A histogram makes the sums exact and the result order-independent. */
    uint64_t hist[256] = {0};
    size_t total = (size_t)d->n * (size_t)d->c * (size_t)d->h * (size_t)d->w;
    for (size_t i = 0; i < total; i++)
        hist[d->pixels[i]]++;
    double s = 0, s2 = 0;
    for (int v = 0; v < 256; v++) {
        double x = v / 255.0;
        s += (double)hist[v] * x;
        s2 += (double)hist[v] * x * x;
    }
    double m = s / (double)total, var = s2 / (double)total - m * m;
    if (mean)
        *mean = m;
    if (std)
        *std = var > 0 ? sqrt(var) : 0;
    return CNV_OK;
}

cnv_status cnv_dataset_create(int n, int c, int h, int w, int n_classes, const uint8_t *pixels,
                              const uint8_t *labels, cnv_dataset **out)
{
    if (!out)
        return CNV_ERR_INVALID_ARG;
    *out = NULL;
    cnv_dataset *d = dataset_new();
    if (!d)
        return CNV_ERR_NOMEM;
    *out = d;
    size_t bytes;
    if (n < 1 || c < 1 || h < 1 || w < 1 || n_classes < 1 || n_classes > 256 || !pixels || !labels)
        return cnv_fail(&d->err, CNV_ERR_INVALID_ARG,
                        "dataset of %d images of %dx%dx%d, %d classes: sizes must be >= 1, classes "
                        "<= 256, and data given",
                        n, c, h, w, n_classes);
    if (!cnv_mul_size((size_t)n, (size_t)c, &bytes) || !cnv_mul_size(bytes, (size_t)h, &bytes) ||
        !cnv_mul_size(bytes, (size_t)w, &bytes) || bytes > IDX_MAX_BYTES)
        return cnv_fail(&d->err, CNV_ERR_NOMEM, "dataset of %d images of %dx%dx%d is too large", n, c, h,
                        w);
    for (int i = 0; i < n; i++)
        if (labels[i] >= n_classes)
            return cnv_fail(&d->err, CNV_ERR_INVALID_ARG, "label %d of image %d is not below %d classes",
                            labels[i], i, n_classes);
    d->pixels = cnv_malloc(bytes);
    d->labels = cnv_malloc((size_t)n);
    if (!d->pixels || !d->labels) {
        cnv_free(d->pixels);
        cnv_free(d->labels);
        d->pixels = d->labels = NULL;
        return cnv_fail(&d->err, CNV_ERR_NOMEM, "out of memory for %zu bytes of images", bytes);
    }
    memcpy(d->pixels, pixels, bytes);
    memcpy(d->labels, labels, (size_t)n);
    d->n = n;
    d->c = c;
    d->h = h;
    d->w = w;
    d->n_classes = n_classes;
    return CNV_OK;
}

/* ------------------------------------------------------------ IDX files */

/* An IDX file: 2 zero bytes, a type byte (0x08: unsigned bytes), a rank
 * byte, rank big-endian uint32 sizes, then the values. */
typedef struct idx_file {
    int rank;
    uint32_t dims[3];
    uint8_t *data; /* owned */
    size_t bytes;
} idx_file;

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads exactly n bytes; returns how many arrived (fewer at the end of the
 * data) or -1 on a read error. */
static long long read_full(gzFile f, unsigned char *dst, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
        int r = gzread(f, dst + got, (unsigned)want);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (long long)got;
}

/* Reads an IDX file of unsigned bytes with the given rank. */
static cnv_status idx_read(const char *path, int rank, idx_file *out, cnv_err *e)
{
    memset(out, 0, sizeof *out);
    /* gzopen reads uncompressed files as they are, so both forms work. */
    gzFile f = gzopen(path, "rb");
    if (!f)
        return cnv_fail(e, CNV_ERR_IO, "%s: cannot open", path);
    cnv_status st = CNV_OK;
    unsigned char head[4 + 4 * 3];
    size_t head_len = 4 + 4 * (size_t)rank;
    long long got = read_full(f, head, head_len);
    if (got < 0) {
        int zerr;
        const char *msg = gzerror(f, &zerr);
        st = cnv_fail(e, zerr == Z_ERRNO ? CNV_ERR_IO : CNV_ERR_FORMAT, "%s: %s", path,
                      zerr == Z_ERRNO ? "read error" : msg);
        goto done;
    }
    if ((size_t)got < 4 || head[0] != 0 || head[1] != 0) {
        st = cnv_fail(e, CNV_ERR_FORMAT, "%s: not an IDX file (bad magic)", path);
        goto done;
    }
    if (head[2] != 0x08 || head[3] != rank) {
        st = cnv_fail(e, CNV_ERR_FORMAT,
                      "%s: IDX type 0x%02x with %d dimensions, expected unsigned bytes (0x08) with %d",
                      path, head[2], head[3], rank);
        goto done;
    }
    if ((size_t)got < head_len) {
        st = cnv_fail(e, CNV_ERR_FORMAT, "%s: truncated header", path);
        goto done;
    }
    size_t total = 1;
    for (int i = 0; i < rank; i++) {
        uint32_t v = be32(head + 4 + 4 * i);
        uint32_t cap = i == 0 ? IDX_MAX_COUNT : IDX_MAX_SIDE;
        if (v < 1 || v > cap) {
            st = cnv_fail(e, CNV_ERR_FORMAT, "%s: dimension %d is %u, must be in 1..%u", path, i, v, cap);
            goto done;
        }
        out->dims[i] = v;
        if (!cnv_mul_size(total, v, &total) || total > IDX_MAX_BYTES) {
            st = cnv_fail(e, CNV_ERR_FORMAT, "%s: the declared data is too large", path);
            goto done;
        }
    }
    out->rank = rank;
    /* The header is not trusted for the allocation: grow as data arrives,
     * so a lying count costs a clean error, not gigabytes. */
    size_t cap = 0, have = 0;
    while (have < total) {
        size_t want = total - have;
        if (!cnv_grow((void **)&out->data, &cap, have + (want < 4096 ? want : 4096), 1)) {
            st = cnv_fail(e, CNV_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, total);
            goto done;
        }
        if (cap > total)
            cap = total; /* cnv_grow rounds up; never read past the data */
        size_t room = cap - have;
        got = read_full(f, out->data + have, room);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            st = cnv_fail(e, zerr == Z_ERRNO ? CNV_ERR_IO : CNV_ERR_FORMAT, "%s: %s", path,
                          zerr == Z_ERRNO ? "read error" : msg);
            goto done;
        }
        have += (size_t)got;
        if ((size_t)got < room) {
            st = cnv_fail(e, CNV_ERR_FORMAT, "%s: truncated: the header declares %zu bytes of data, the file has %zu",
                          path, total, have);
            goto done;
        }
    }
    unsigned char extra;
    got = read_full(f, &extra, 1);
    if (got != 0) {
        st = cnv_fail(e, CNV_ERR_FORMAT, "%s: %s", path,
                      got > 0 ? "data continues past the declared size" : "corrupt compressed data at the end");
        goto done;
    }
    out->bytes = total;

done:
    gzclose(f);
    if (st != CNV_OK) {
        cnv_free(out->data);
        memset(out, 0, sizeof *out);
    }
    return st;
}

cnv_status cnv_mnist_load_files(const char *images_path, const char *labels_path, cnv_dataset **out)
{
    if (!out)
        return CNV_ERR_INVALID_ARG;
    *out = NULL;
    cnv_dataset *d = dataset_new();
    if (!d)
        return CNV_ERR_NOMEM;
    *out = d;
    if (!images_path || !labels_path)
        return cnv_fail(&d->err, CNV_ERR_INVALID_ARG, "no path given");
    idx_file im, lb;
    cnv_status st = idx_read(images_path, 3, &im, &d->err);
    if (st != CNV_OK)
        return st;
    st = idx_read(labels_path, 1, &lb, &d->err);
    if (st != CNV_OK) {
        cnv_free(im.data);
        return st;
    }
    int n_classes = 0;
    if (im.dims[0] != lb.dims[0]) {
        st = cnv_fail(&d->err, CNV_ERR_FORMAT, "%s has %u images but %s has %u labels", images_path,
                      im.dims[0], labels_path, lb.dims[0]);
    } else {
        for (uint32_t i = 0; i < lb.dims[0]; i++)
            if (lb.data[i] >= n_classes)
                n_classes = lb.data[i] + 1;
    }
    if (st != CNV_OK) {
        cnv_free(im.data);
        cnv_free(lb.data);
        return st;
    }
    d->pixels = im.data;
    d->labels = lb.data;
    d->n = (int)im.dims[0];
    d->c = 1;
    d->h = (int)im.dims[1];
    d->w = (int)im.dims[2];
    d->n_classes = n_classes;
    return CNV_OK;
}

/* <dir>/<split>-<kind>-ubyte.gz when it exists, else without .gz. */
static cnv_status split_path(const char *dir, const char *split, const char *kind, char *buf, size_t len,
                             cnv_err *e)
{
    int k = snprintf(buf, len, "%s/%s-%s-ubyte.gz", dir, split, kind);
    if (k < 0 || (size_t)k >= len)
        return cnv_fail(e, CNV_ERR_INVALID_ARG, "path too long: %s/%s-%s-ubyte.gz", dir, split, kind);
    FILE *f = fopen(buf, "rb");
    if (f)
        fclose(f);
    else
        buf[k - 3] = '\0';
    return CNV_OK;
}

cnv_status cnv_mnist_load(const char *dir, const char *split, cnv_dataset **out)
{
    if (!out)
        return CNV_ERR_INVALID_ARG;
    *out = NULL;
    if (!dir || !split) {
        cnv_dataset *d = dataset_new();
        if (!d)
            return CNV_ERR_NOMEM;
        *out = d;
        return cnv_fail(&d->err, CNV_ERR_INVALID_ARG, "no directory or split given");
    }
    char images[4096], labels[4096];
    cnv_err e;
    cnv_err_clear(&e);
    cnv_status st = split_path(dir, split, "images-idx3", images, sizeof images, &e);
    if (st == CNV_OK)
        st = split_path(dir, split, "labels-idx1", labels, sizeof labels, &e);
    if (st != CNV_OK) {
        cnv_dataset *d = dataset_new();
        if (!d)
            return CNV_ERR_NOMEM;
        *out = d;
        return cnv_fail(&d->err, st, "%s", e.msg);
    }
    return cnv_mnist_load_files(images, labels, out);
}
