/* Pooling: MaxPool and AveragePool (2-D, and 1-D as 2-D with a height of 1)
 * with ONNX geometry (pads, strides, ceil_mode, auto_pad), and
 * GlobalAveragePool over all spatial dims. Forward and backward side by side. */
#include <math.h>
#include <string.h>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "core/cpu.h"
#include "engine/op.h"
#include "engine/testing.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/window.h"

/* Attributes of MaxPool / AveragePool as parsed; nk is the number of
 * spatial dims kernel_shape names (checked against the input at plan). */
typedef struct pool_params {
    int nk;
    int64_t k[CNV_MAX_DIMS], s[CNV_MAX_DIMS], d[CNV_MAX_DIMS];
    int64_t pads[2 * CNV_MAX_DIMS]; /* ONNX order: all begins, then all ends */
    int auto_pad, ceil_mode, count_include_pad, storage_order;
} pool_params;

/* Resolved geometry of one planned pooling node, 2-D form. */
typedef struct pool_geom {
    int64_t nc, h, w, oh, ow;       /* N*C planes of h x w -> oh x ow */
    int64_t kh, kw, sh, sw;
    int64_t pt, pl, pb, pr;         /* pads top, left, bottom, right */
    int count_include_pad;
    /* MaxPool's fast paths for windows inside a NaN-free plane: reg, the
     * register path (SSE2, column strides 1 and 2), or else sep, the
     * separable bands with their output rows per band, the largest row
     * pitch and the floats of each workspace buffer */
    int reg, sep; /* reg: 1 with SSE2, 2 with AVX2 */
    int64_t band, pitch, p_floats, h_floats, y_floats;
    int64_t work_floats; /* workspace per thread */
} pool_geom;
_Static_assert(sizeof(pool_geom) <= CNV_GEOM_SIZE, "pool_geom fits geom");

/* Attribute values beyond this are rejected so index arithmetic in int64
 * can never overflow. */
#define POOL_ATTR_MAX ((int64_t)INT32_MAX)

/* Copies an optional INTS attribute of exactly `want` values into dst,
 * each within [lo, POOL_ATTR_MAX]; absent leaves dst as is. */
static cnv_status get_ints_n(const cnv_node *n, const char *name, int want,
                             int64_t lo, int64_t *dst, cnv_err *e)
{
    const int64_t *v;
    int cnt;
    cnv_status st = cnv_attr_get_ints(n, name, &v, &cnt, e);
    if (st != CNV_OK)
        return st;
    if (!v)
        return CNV_OK;
    if (cnt != want)
        return cnv_fail(e, CNV_ERR_FORMAT,
                        "attribute %s has %d values, expected %d", name, cnt, want);
    for (int i = 0; i < cnt; i++) {
        if (v[i] < lo || v[i] > POOL_ATTR_MAX)
            return cnv_fail(e, CNV_ERR_FORMAT,
                            "attribute %s[%d] = %lld is out of range", name, i, (long long)v[i]);
        dst[i] = v[i];
    }
    return CNV_OK;
}

static cnv_status get_flag(const cnv_node *n, const char *name, int *out, cnv_err *e)
{
    int64_t v;
    cnv_status st = cnv_attr_get_int(n, name, 0, &v, e);
    if (st != CNV_OK)
        return st;
    if (v != 0 && v != 1)
        return cnv_fail(e, CNV_ERR_FORMAT, "attribute %s = %lld, expected 0 or 1", name,
                        (long long)v);
    *out = (int)v;
    return CNV_OK;
}

static cnv_status pool_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset; /* attributes added in later opsets simply are absent before */
    pool_params *p = params;
    const int64_t *k;
    int nk;
    cnv_status st = cnv_attr_get_ints(n, "kernel_shape", &k, &nk, e);
    if (st != CNV_OK)
        return st;
    if (!k)
        return cnv_fail(e, CNV_ERR_FORMAT, "kernel_shape is required");
    if (nk < 1 || nk > CNV_MAX_DIMS - 2)
        return cnv_fail(e, CNV_ERR_FORMAT, "kernel_shape has %d values", nk);
    p->nk = nk;
    for (int i = 0; i < nk; i++)
        p->s[i] = p->d[i] = 1;
    if ((st = get_ints_n(n, "kernel_shape", nk, 1, p->k, e)) != CNV_OK ||
        (st = get_ints_n(n, "strides", nk, 1, p->s, e)) != CNV_OK ||
        (st = get_ints_n(n, "dilations", nk, 1, p->d, e)) != CNV_OK ||
        (st = get_ints_n(n, "pads", 2 * nk, 0, p->pads, e)) != CNV_OK)
        return st;

    if ((st = cnv_auto_pad_parse(n, &p->auto_pad, e)) != CNV_OK)
        return st;
    if ((st = get_flag(n, "ceil_mode", &p->ceil_mode, e)) != CNV_OK ||
        (st = get_flag(n, "count_include_pad", &p->count_include_pad, e)) != CNV_OK ||
        (st = get_flag(n, "storage_order", &p->storage_order, e)) != CNV_OK)
        return st;
    return CNV_OK;
}

/* One spatial dim: output size and resolved begin/end pads
 * (cnv_window_axis), and no window of padding alone. */
static cnv_status pool_dim(const pool_params *p, int i, int64_t in,
                           int64_t *out, int64_t *pb, int64_t *pe, cnv_err *e)
{
    int64_t k = p->k[i], s = p->s[i], b = 0, en = 0, o;
    if (p->auto_pad == CNV_PAD_NOTSET) {
        b = p->pads[i];
        en = p->pads[i + p->nk];
    }
    if (!cnv_window_axis(p->auto_pad, in, k, s, 1, p->ceil_mode, &b, &en, &o))
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "kernel %lld is larger than the padded input %lld "
                        "(spatial dim %d): output size < 1",
                        (long long)k, (long long)(in + b + en), i);
    if (o < 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "output size %lld < 1 (spatial dim %d)", (long long)o, i);
    /* Every window must hold an input element: the first starts at -b, the
     * last at (o-1)*s - b. A window of padding only has no max and, without
     * counted pads, no divisor. */
    if (b >= k || (o - 1) * s - b >= in)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "padding (%lld, %lld) of spatial dim %d leaves windows "
                        "with no input element (kernel %lld)",
                        (long long)b, (long long)en, i, (long long)k);
    *out = o;
    *pb = b;
    *pe = en;
    return CNV_OK;
}

static cnv_status pool_plan_common(cnv_op_ctx *c, cnv_err *e)
{
    const pool_params *p = c->params;
    const cnv_shape *xs = &c->in[0]->shape;
    char buf[128];
    if (p->nk > 2)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "%d-D pooling is not supported (only 1-D and 2-D)",
                        p->nk);
    if (xs->ndim != p->nk + 2)
        return cnv_fail(e, CNV_ERR_SHAPE, "input %s has %d dims, kernel_shape needs %d",
                        cnv_shape_str(xs, buf, sizeof buf), xs->ndim, p->nk + 2);
    for (int i = 0; i < p->nk; i++)
        if (p->d[i] != 1)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED, "dilations other than 1 are not supported");
    for (int i = 0; i < xs->ndim; i++)
        if (xs->dims[i] < 1)
            return cnv_fail(e, CNV_ERR_SHAPE, "input %s has an empty dim",
                            cnv_shape_str(xs, buf, sizeof buf));

    pool_geom *g = (pool_geom *)c->geom;
    memset(g, 0, sizeof *g);
    cnv_status st;
    if (p->nk == 1) { /* (N,C,L) is (N,C,1,L) with a kernel of height 1 */
        g->h = g->oh = g->kh = g->sh = 1;
        g->w = xs->dims[2];
        g->kw = p->k[0];
        g->sw = p->s[0];
        st = pool_dim(p, 0, g->w, &g->ow, &g->pl, &g->pr, e);
    } else {
        g->h = xs->dims[2];
        g->w = xs->dims[3];
        g->kh = p->k[0];
        g->kw = p->k[1];
        g->sh = p->s[0];
        g->sw = p->s[1];
        st = pool_dim(p, 0, g->h, &g->oh, &g->pt, &g->pb, e);
        if (st == CNV_OK)
            st = pool_dim(p, 1, g->w, &g->ow, &g->pl, &g->pr, e);
    }
    if (st != CNV_OK)
        return st;
    g->count_include_pad = p->count_include_pad;

    int64_t cnt;
    if (!cnv_mul_i64(xs->dims[0], xs->dims[1], &g->nc) || !cnv_mul_i64(g->nc, g->oh, &cnt) ||
        !cnv_mul_i64(cnt, g->ow, &cnt) || cnt > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_NOMEM, "output of input %s is too large",
                        cnv_shape_str(xs, buf, sizeof buf));

    cnv_shape *ys = &c->out[0]->shape;
    *ys = *xs;
    if (p->nk == 1) {
        ys->dims[2] = g->ow;
    } else {
        ys->dims[2] = g->oh;
        ys->dims[3] = g->ow;
    }
    return CNV_OK;
}

/* Clips window [o*s - p, o*s - p + k) to [0, len). */
static inline void window(int64_t o, int64_t s, int64_t p, int64_t k, int64_t len,
                          int64_t *lo, int64_t *hi)
{
    int64_t a = o * s - p, b = a + k;
    *lo = a < 0 ? 0 : a;
    *hi = b > len ? len : b;
}

/* ------------------------------------------------------------- MaxPool */

int cnv_maxpool_no_avx2;

/* Sizes the separable fast path's workspace (see maxpool_band), for
 * windows of up to 64 elements and strides up to 8 (every CNN's); returns
 * 0 when it does not apply. Bands hold at most 32 output rows and 256
 * input rows, so the workspace stays small whatever the image size. */
static int plan_separable(pool_geom *g)
{
    g->work_floats = 0;
    if (g->kh * g->kw > 64 || g->sw > 8)
        return 0;
    int64_t band = g->sh > 64 ? 1 : (256 - g->kh) / g->sh + 1;
    g->band = band < 32 ? band : 32;
    int64_t rows = (g->band - 1) * g->sh + g->kh; /* <= 256 + 64 */
    int64_t run = g->ow + (g->kw - 1) / g->sw + 1;
    g->pitch = g->sw == 1 ? g->w : run;
    int64_t t;
    /* every buffer stays below 2^31 floats, so int32 indices hold */
    if (!cnv_mul_i64(rows, g->pitch, &g->h_floats) || g->h_floats > CNV_MAX_ELEMS / 16 ||
        !cnv_mul_i64((g->band - 1) * g->sh + 1, g->pitch, &g->y_floats) ||
        !cnv_mul_i64(rows * g->sw, run, &t))
        return 0;
    g->p_floats = g->sw > 1 ? t + 16 : 0;
    g->h_floats = (g->h_floats + 15) / 16 * 16;
    g->y_floats = (g->y_floats + 15) / 16 * 16;
    g->work_floats = (g->p_floats + 15) / 16 * 16 + 2 * g->h_floats + 2 * g->y_floats;
    return 1;
}

static cnv_status maxpool_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size,
                               cnv_err *e)
{
    if (c->node->n_out > 1)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "the Indices output is not supported");
    cnv_status st = pool_plan_common(c, e);
    if (st != CNV_OK)
        return st;
    pool_geom *g = (pool_geom *)c->geom;
    g->work_floats = 0;
    g->reg = 0;
#if defined(__SSE2__)
    if (g->sw <= 2 && g->kh * g->kw <= 64) /* as many elements as the bands take */
        g->reg = __builtin_cpu_supports("avx2") && !cnv_maxpool_no_avx2 ? 2 : 1;
#endif
    g->sep = !g->reg && plan_separable(g);
    if (!cnv_mul_size((size_t)g->work_floats, (size_t)(c->threads > 1 ? c->threads : 1), work_size) ||
        !cnv_mul_size(*work_size, sizeof(float), work_size))
        return cnv_fail(e, CNV_ERR_NOMEM, "workspace too large");
    /* one int32 argmax per output element, kept from forward for backward */
    if (!cnv_mul_size((size_t)cnv_shape_count(&c->out[0]->shape), sizeof(int32_t), state_size))
        return cnv_fail(e, CNV_ERR_NOMEM, "state too large");
    return CNV_OK;
}

/* The range [*lo, *hi) of outputs along one axis whose window lies wholly
 * inside the input. */
static void inner_range(int64_t n_out, int64_t s, int64_t p, int64_t k, int64_t len,
                        int64_t *lo, int64_t *hi)
{
    int64_t a = (p + s - 1) / s, b = len + p - k < 0 ? 0 : (len + p - k) / s + 1;
    if (b > n_out)
        b = n_out;
    if (a > b)
        a = b;
    *lo = a;
    *hi = b;
}

/* The first maximum of the window at (oh, ow), clipped to the plane, in
 * row-major order, a NaN winning over numbers: the general path. Returns
 * its index in the plane, or -1 for a window without input elements. */
static int64_t max_window_general(const pool_geom *g, const float *xp, int64_t oh, int64_t ow)
{
    int64_t h0, h1, w0, w1, bi = -1;
    float best = 0.0f;
    window(oh, g->sh, g->pt, g->kh, g->h, &h0, &h1);
    window(ow, g->sw, g->pl, g->kw, g->w, &w0, &w1);
    for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t iw = w0; iw < w1; iw++) {
            float v = xp[ih * g->w + iw];
            if (bi < 0 || v > best || (isnan(v) && !isnan(best))) {
                best = v;
                bi = ih * g->w + iw;
            }
        }
    return bi;
}

/* 1 when the plane holds a NaN (its windows then take the general path,
 * where the first NaN wins). */
static int has_nan(const float *restrict x, int64_t n)
{
    int32_t any[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            any[j] |= -(int32_t)(x[i + j] != x[i + j]);
    for (; i < n; i++)
        any[0] |= x[i] != x[i];
    for (int j = 1; j < 8; j++)
        any[0] |= any[j];
    return any[0] != 0;
}

/* The separable fast path for windows wholly inside a NaN-free plane.
 * The first maximum of a window in row-major order is the first maximum,
 * over its rows in order, of each row's first maximum: so each input row
 * is reduced along its columns first, then kh such rows are reduced into
 * an output row. Every pass below is a plain loop over contiguous floats
 * in blocks of 8 (see elementwise.c), which the compiler turns into
 * branch-free SIMD code. */

/* m[i], a[i] = v[i], t where v[i] > m[i] (strict: the earlier one wins a tie) */
static void max_pass(const float *restrict v, float *restrict m, int32_t *restrict a, int64_t n,
                     int32_t t)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            float x = v[i + j], b = m[i + j];
            int32_t take = -(int32_t)(x > b);
            m[i + j] = x > b ? x : b;
            a[i + j] = (a[i + j] & ~take) | (t & take);
        }
    for (; i < n; i++) {
        float x = v[i], b = m[i];
        int32_t take = -(int32_t)(x > b);
        m[i] = x > b ? x : b;
        a[i] = (a[i] & ~take) | (t & take);
    }
}

/* The same with a per-element index vi[i] to take along. */
static void max_pass_idx(const float *restrict v, const int32_t *restrict vi, float *restrict m,
                         int32_t *restrict a, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            float x = v[i + j], b = m[i + j];
            int32_t take = -(int32_t)(x > b);
            m[i + j] = x > b ? x : b;
            a[i + j] = (a[i + j] & ~take) | (vi[i + j] & take);
        }
    for (; i < n; i++) {
        float x = v[i], b = m[i];
        int32_t take = -(int32_t)(x > b);
        m[i] = x > b ? x : b;
        a[i] = (a[i] & ~take) | (vi[i] & take);
    }
}

/* even[i] = x[2i] for i < n_even, odd[i] = x[2i + 1] for i < n_odd (n_even
 * is n_odd or n_odd + 1): the column phases of a stride-2 row. With SSE2,
 * four pairs per shuffle. */
static void split_pairs(const float *restrict x, float *restrict even, float *restrict odd,
                        int64_t n_even, int64_t n_odd)
{
    int64_t i = 0;
#if defined(__SSE2__)
    for (; i + 4 <= n_odd; i += 4) {
        __m128 a = _mm_loadu_ps(x + 2 * i), b = _mm_loadu_ps(x + 2 * i + 4);
        _mm_storeu_ps(even + i, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm_storeu_ps(odd + i, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
    }
#endif
    for (; i < n_odd; i++) {
        even[i] = x[2 * i];
        odd[i] = x[2 * i + 1];
    }
    if (n_even > n_odd)
        even[n_odd] = x[2 * n_odd];
}

/* Output rows [b0, b1) x columns [iw0, iw0 + n) of one NaN-free plane xp
 * (its flat index `base` in x), all windows inside the plane, into y and
 * arg (rows of ow). The band is handled as a few long loops, not a few
 * per row, which matters for small planes:
 *  1. with a stride, split the band's input rows by column phase (column
 *     mod stride), so that window column kj of consecutive outputs is one
 *     contiguous run (without one, the plane is read in place);
 *  2. row maxima over kw columns for every input row of the band at once,
 *     treating the rows as one array of pitch `pitch` (the entries past n
 *     in each row are computed too and never used);
 *  3. each row's column of the winner into its flat index in x;
 *  4. maxima over kh rows for every output row at once, output row i
 *     starting sh input rows below row i - 1 (pitch sh * pitch);
 *  5. the n values and indices of each output row copied out. */
static void maxpool_band(const pool_geom *g, const float *xp, int64_t base, int64_t b0, int64_t b1,
                         int64_t iw0, int64_t n, float *work, float *y, int32_t *arg)
{
    const int64_t sw = g->sw, sh = g->sh, kw = g->kw, kh = g->kh;
    const int64_t nr = b1 - b0, r0 = b0 * sh - g->pt, rows = (nr - 1) * sh + kh;
    const int64_t c0 = iw0 * sw - g->pl;
    float *ph = work, *hv = work + (g->p_floats + 15) / 16 * 16, *yv = hv + 2 * g->h_floats;
    int32_t *hi = (int32_t *)(hv + g->h_floats), *yi = (int32_t *)(yv + g->y_floats);
    const float *src = xp + r0 * g->w + c0;
    int64_t pitch = g->w, phase = 0;
    if (sw > 1) {
        const int64_t run = n + (kw - 1) / sw + 1;
        pitch = run;
        phase = rows * run;
        for (int64_t r = 0; r < rows; r++) {
            int64_t p = 0;
            if (sw == 2 && kw >= 2) { /* both phases in one pass */
                split_pairs(src + r * g->w, ph + r * run, ph + phase + r * run,
                            ((n - 1) * 2 + kw - 1) / 2 + 1, ((n - 1) * 2 + kw - 2) / 2 + 1);
                p = 2;
            }
            for (; p < sw && p < kw; p++) {
                /* columns p, p + sw, ... up to the last one a window reads */
                const int64_t cnt = ((n - 1) * sw + kw - 1 - p) / sw + 1;
                const float *xr = src + r * g->w + p;
                float *d = ph + p * phase + r * run;
                for (int64_t i = 0; i < cnt; i++)
                    d[i] = xr[i * sw];
            }
            for (p = 0; p < sw && p < kw; p++) { /* read by the unused entries only */
                const int64_t cnt = ((n - 1) * sw + kw - 1 - p) / sw + 1;
                for (int64_t i = cnt; i < run; i++)
                    ph[p * phase + r * run + i] = 0.0f;
            }
        }
        src = ph;
    }
    const int64_t len = (rows - 1) * pitch + n; /* the entries step 4 reads */
    memcpy(hv, src, (size_t)len * sizeof *hv);
    memset(hi, 0, (size_t)len * sizeof *hi);
    for (int32_t kj = 1; kj < (int32_t)kw; kj++)
        max_pass(src + (kj % sw) * phase + kj / sw, hv, hi, len, kj);
    for (int64_t r = 0; r < rows; r++) {
        const int32_t first = (int32_t)(base + (r0 + r) * g->w + c0), step = (int32_t)sw;
        int32_t *h = hi + r * pitch;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++)
                h[i + j] += first + (int32_t)(i + j) * step;
        for (; i < n; i++)
            h[i] += first + (int32_t)i * step;
    }
    const int64_t opitch = sh * pitch, ylen = (nr - 1) * opitch + n;
    memcpy(yv, hv, (size_t)ylen * sizeof *yv);
    memcpy(yi, hi, (size_t)ylen * sizeof *yi);
    for (int64_t ki = 1; ki < kh; ki++)
        max_pass_idx(hv + ki * pitch, hi + ki * pitch, yv, yi, ylen);
    for (int64_t o = 0; o < nr; o++) {
        memcpy(y + (b0 + o) * g->ow + iw0, yv + o * opitch, (size_t)n * sizeof *y);
        memcpy(arg + (b0 + o) * g->ow + iw0, yi + o * opitch, (size_t)n * sizeof *arg);
    }
}

#if defined(__SSE2__)
/* The register path, for column strides 1 and 2 on x86 (SSE2, or AVX2
 * where the CPU has it), used instead of the bands above: `lanes` windows
 * of an output row side by side (4 with SSE2, 8 with AVX2), each element
 * position of the window loaded for all of them into one register (with a
 * stride of 2, two loads and shuffles give the even or odd columns),
 * compared with the running maxima, and the winners' window positions
 * carried along in a second register. The window is walked in row-major
 * order with a strict comparison, so the first maximum wins, as in
 * max_window_general; a row with a NaN in a window is left to that. */

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The windows whose top-left elements are r[0], r[sw], ..., r[3 sw]: their
 * maxima into y[0..4), the winners' flat indices (first + ki * w + kj +
 * lane * sw) into arg[0..4). Returns nonzero when an element is NaN. With
 * sw = 2 it reads up to r[(kh - 1) * w + kw + 6]. */
ALWAYS_INLINE int block_sse2(const pool_geom *g, const int64_t sw, const float *r, int32_t first,
                             float *y, int32_t *arg)
{
    __m128 m = _mm_set1_ps(-INFINITY), nan = _mm_setzero_ps();
    __m128i a = _mm_setzero_si128(), at = a;
    const __m128i one = _mm_set1_epi32(1), skip = _mm_set1_epi32((int)(g->w - g->kw));
    for (int64_t ki = 0; ki < g->kh; ki++, r += g->w, at = _mm_add_epi32(at, skip))
        for (int64_t kj = 0; kj < g->kw; kj++, at = _mm_add_epi32(at, one)) {
            __m128 v = _mm_loadu_ps(r + kj);
            if (sw == 2) /* columns kj, kj + 2, ...: the even or odd ones of 8 */
                v = kj & 1 ? _mm_shuffle_ps(_mm_loadu_ps(r + kj - 1), _mm_loadu_ps(r + kj + 3),
                                            _MM_SHUFFLE(3, 1, 3, 1))
                           : _mm_shuffle_ps(v, _mm_loadu_ps(r + kj + 4), _MM_SHUFFLE(2, 0, 2, 0));
            __m128i take = _mm_castps_si128(_mm_cmpgt_ps(v, m));
            nan = _mm_or_ps(nan, _mm_cmpunord_ps(v, v));
            m = _mm_max_ps(v, m); /* v where v > m: m wins a tie, even 0 against -0 */
            a = _mm_or_si128(_mm_and_si128(take, at), _mm_andnot_si128(take, a));
        }
    const __m128i lane = _mm_set_epi32(3 * (int)sw, 2 * (int)sw, (int)sw, 0);
    _mm_storeu_ps(y, m);
    _mm_storeu_si128((__m128i *)arg, _mm_add_epi32(a, _mm_add_epi32(lane, _mm_set1_epi32(first))));
    return _mm_movemask_ps(nan);
}

/* The same for 8 windows with AVX2; reads up to r[(kh - 1) * w + kw + 14]
 * with sw = 2. */
ALWAYS_INLINE __attribute__((target("avx2"))) int
block_avx2(const pool_geom *g, const int64_t sw, const float *r, int32_t first, float *y,
           int32_t *arg)
{
    __m256 m = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
    __m256i a = _mm256_setzero_si256(), at = a;
    const __m256i one = _mm256_set1_epi32(1), skip = _mm256_set1_epi32((int)(g->w - g->kw));
    for (int64_t ki = 0; ki < g->kh; ki++, r += g->w, at = _mm256_add_epi32(at, skip))
        for (int64_t kj = 0; kj < g->kw; kj++, at = _mm256_add_epi32(at, one)) {
            __m256 v = _mm256_loadu_ps(r + kj);
            if (sw == 2) { /* shuffles within 128-bit halves, then the 64-bit pieces in order */
                const float *q = r + (kj & ~(int64_t)1);
                __m256 lo = _mm256_loadu_ps(q), hi = _mm256_loadu_ps(q + 8);
                v = kj & 1 ? _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))
                           : _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
                v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
            }
            __m256 take = _mm256_cmp_ps(v, m, _CMP_GT_OQ);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            m = _mm256_max_ps(v, m);
            a = _mm256_castps_si256(
                _mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(at), take));
        }
    const __m256i lane = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32((int)sw));
    _mm256_storeu_ps(y, m);
    _mm256_storeu_si256((__m256i *)arg, _mm256_add_epi32(a, _mm256_add_epi32(lane, _mm256_set1_epi32(first))));
    return _mm256_movemask_ps(nan);
}

/* For output row oh, columns [o0, o1), all windows inside the plane, done
 * `lanes` at a time with the last block overlapping the one before when
 * o1 - o0 is not a multiple of lanes: the last block's first column, or
 * o0 - 1 when fewer than `lanes` columns are left or (stride 2) the blocks
 * would read past the plane's end. */
static int64_t reg_last(const pool_geom *g, int64_t lanes, int64_t oh, int64_t o0, int64_t o1)
{
    int64_t last = o1 - lanes, top = (oh * g->sh - g->pt) * g->w - g->pl;
    if (g->sw == 2) {
        int64_t room = g->h * g->w - 1 - (top + (g->kh - 1) * g->w + g->kw + 2 * lanes - 2);
        if (room < 0)
            return o0 - 1;
        if (room / 2 < last)
            last = room / 2;
    }
    return last < o0 ? o0 - 1 : last;
}

/* Output row oh, columns [o0, o1) of the plane xp (flat index `base` in x)
 * into y and arg, 4 windows at a time. Returns the first column not done:
 * o1, or o0 when the row holds a NaN or reg_last finds no block. */
ALWAYS_INLINE int64_t row_sse2(const pool_geom *g, const int64_t sw, const float *xp, int64_t base,
                               int64_t oh, int64_t o0, int64_t o1, float *y, int32_t *arg)
{
    const int64_t top = (oh * g->sh - g->pt) * g->w - g->pl, last = reg_last(g, 4, oh, o0, o1);
    int nan = 0;
    for (int64_t ow = o0; ow <= last; ow = ow < last && ow + 4 > last ? last : ow + 4)
        nan |= block_sse2(g, sw, xp + top + ow * sw, (int32_t)(base + top + ow * sw),
                          y + oh * g->ow + ow, arg + oh * g->ow + ow);
    return nan || last < o0 ? o0 : last + 4;
}

/* The same, 8 windows at a time (4 when the row is narrower). */
ALWAYS_INLINE __attribute__((target("avx2"))) int64_t
row_avx2(const pool_geom *g, const int64_t sw, const float *xp, int64_t base, int64_t oh,
         int64_t o0, int64_t o1, float *y, int32_t *arg)
{
    const int64_t top = (oh * g->sh - g->pt) * g->w - g->pl, last = reg_last(g, 8, oh, o0, o1);
    if (last < o0)
        return row_sse2(g, sw, xp, base, oh, o0, o1, y, arg);
    int nan = 0;
    for (int64_t ow = o0; ow <= last; ow = ow < last && ow + 8 > last ? last : ow + 8)
        nan |= block_avx2(g, sw, xp + top + ow * sw, (int32_t)(base + top + ow * sw),
                          y + oh * g->ow + ow, arg + oh * g->ow + ow);
    return nan ? o0 : last + 8;
}

static int64_t maxpool_row_sse2(const pool_geom *g, const float *xp, int64_t base, int64_t oh,
                                int64_t o0, int64_t o1, float *y, int32_t *arg)
{
    return g->sw == 1 ? row_sse2(g, 1, xp, base, oh, o0, o1, y, arg)
                      : row_sse2(g, 2, xp, base, oh, o0, o1, y, arg);
}

__attribute__((target("avx2"))) static int64_t
maxpool_row_avx2(const pool_geom *g, const float *xp, int64_t base, int64_t oh, int64_t o0,
                 int64_t o1, float *y, int32_t *arg)
{
    return g->sw == 1 ? row_avx2(g, 1, xp, base, oh, o0, o1, y, arg)
                      : row_avx2(g, 2, xp, base, oh, o0, o1, y, arg);
}
#endif

/* Planes [lo, hi) of x (NC,h,w) into y (NC,oh,ow); arg[o] is the flat index
 * into x of the element y[o] was taken from: the first maximum of the
 * window in row-major order, except that a NaN wins over numbers (the
 * first NaN, so NaN propagates as in PyTorch). An all-NaN or all -inf
 * window thus stores its first in-bounds element. A window without input
 * elements (rejected by plan) would give y = 0 and arg = -1. In a plane
 * without NaN, windows wholly inside the input (all but a border) take the
 * separable path. */
static void maxpool_planes(void *job, int64_t lo, int64_t hi, int tid)
{
    const cnv_op_ctx *c = job;
    const pool_geom *g = (const pool_geom *)c->geom;
    const float *x = c->in[0]->data;
    int64_t plane = g->h * g->w, iw_lo, iw_hi, ih_lo, ih_hi;
    inner_range(g->ow, g->sw, g->pl, g->kw, g->w, &iw_lo, &iw_hi);
    inner_range(g->oh, g->sh, g->pt, g->kh, g->h, &ih_lo, &ih_hi);
    float *work = c->work + tid * g->work_floats;
    for (int64_t nc = lo; nc < hi; nc++) {
        const float *xp = x + nc * plane;
        float *y = c->out[0]->data + nc * g->oh * g->ow;
        int32_t *arg = (int32_t *)c->state + nc * g->oh * g->ow;
        /* the register path finds NaN itself, row by row */
        int fast = (g->reg || (g->sep && !has_nan(xp, plane))) && iw_lo < iw_hi && ih_lo < ih_hi;
        for (int64_t b0 = ih_lo; fast && g->sep && b0 < ih_hi; b0 += g->band)
            maxpool_band(g, xp, nc * plane, b0, b0 + g->band < ih_hi ? b0 + g->band : ih_hi, iw_lo,
                         iw_hi - iw_lo, work, y, arg);
        /* the rest (all of it without a fast path) window by window */
        for (int64_t oh = 0; oh < g->oh; oh++) {
            int inner_row = fast && oh >= ih_lo && oh < ih_hi;
            int64_t done_to = iw_hi; /* the fast path did [iw_lo, done_to) of this row */
#if defined(__SSE2__)
            if (inner_row && g->reg)
                done_to = (g->reg == 2 ? maxpool_row_avx2 : maxpool_row_sse2)(g, xp, nc * plane, oh,
                                                                          iw_lo, iw_hi, y, arg);
#endif
            for (int64_t ow = 0; ow < g->ow; ow++) {
                if (inner_row && ow == iw_lo)
                    ow = done_to;
                if (ow >= g->ow)
                    break;
                int64_t bi = max_window_general(g, xp, oh, ow);
                y[oh * g->ow + ow] = bi < 0 ? 0.0f : xp[bi];
                arg[oh * g->ow + ow] = bi < 0 ? -1 : (int32_t)(nc * plane + bi);
            }
        }
    }
}

static void maxpool_forward(cnv_op_ctx *c)
{
    cnv_team_run(c->team, ((const pool_geom *)c->geom)->nc, maxpool_planes, c);
}

/* dx[arg[o]] += dy[o] over planes [lo, hi) (zeroed first with
 * grad_store): every arg[o] of a plane points into the same plane of x, so
 * threads taking whole planes never meet. */
static void maxpool_back_planes(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const pool_geom *g = (const pool_geom *)c->geom;
    float *dx = c->in[0]->grad;
    const float *dy = c->out[0]->grad;
    const int32_t *am = c->state;
    if (cnv_grad_store(c, 0)) /* these planes, while they are in cache */
        memset(dx + lo * g->h * g->w, 0, (size_t)((hi - lo) * g->h * g->w) * sizeof *dx);
    for (int64_t o = lo * g->oh * g->ow; o < hi * g->oh * g->ow; o++)
        if (am[o] >= 0)
            dx[am[o]] += dy[o];
}

/* The gradient flows to the element forward chose. */
static void maxpool_backward(cnv_op_ctx *c)
{
    if (c->in[0]->grad)
        cnv_team_run(c->team, ((const pool_geom *)c->geom)->nc, maxpool_back_planes, c);
}

const cnv_op cnv_op_maxpool = {
    .type = "MaxPool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 2,
    .flags = CNV_OP_GRAD_STORE,
    .params_size = sizeof(pool_params), .parse = pool_parse, .plan = maxpool_plan,
    .forward = maxpool_forward, .backward = maxpool_backward,
};

/* --------------------------------------------------------- AveragePool */

static cnv_status avgpool_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size,
                               cnv_err *e)
{
    *state_size = 0;
    *work_size = 0;
    return pool_plan_common(c, e);
}

/* The divisor of the window at (oh, ow). count_include_pad counts pads but
 * not what lies beyond the padded input (a ceil_mode window may reach past
 * it), as PyTorch does; otherwise only input elements count. */
static inline float avg_divisor(const pool_geom *g, int64_t oh, int64_t ow, int64_t h0,
                                int64_t h1, int64_t w0, int64_t w1)
{
    if (!g->count_include_pad)
        return (float)((h1 - h0) * (w1 - w0));
    int64_t a = oh * g->sh - g->pt, b = a + g->kh, lim = g->h + g->pb;
    int64_t dh = (b > lim ? lim : b) - a;
    a = ow * g->sw - g->pl;
    b = a + g->kw;
    lim = g->w + g->pr;
    int64_t dw = (b > lim ? lim : b) - a;
    return (float)(dh * dw);
}

/* x is (NC,h,w), y is (NC,oh,ow): the window mean. */
static void avgpool_forward(cnv_op_ctx *c)
{
    const pool_geom *g = (const pool_geom *)c->geom;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    int64_t plane = g->h * g->w, o = 0;
    for (int64_t nc = 0; nc < g->nc; nc++) {
        const float *xp = x + nc * plane;
        for (int64_t oh = 0; oh < g->oh; oh++) {
            int64_t h0, h1;
            window(oh, g->sh, g->pt, g->kh, g->h, &h0, &h1);
            for (int64_t ow = 0; ow < g->ow; ow++, o++) {
                int64_t w0, w1;
                window(ow, g->sw, g->pl, g->kw, g->w, &w0, &w1);
                float sum = 0.0f;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        sum += xp[ih * g->w + iw];
                y[o] = sum / avg_divisor(g, oh, ow, h0, h1, w0, w1);
            }
        }
    }
}

/* dx over each window += dy / divisor. */
static void avgpool_backward(cnv_op_ctx *c)
{
    float *dx = c->in[0]->grad;
    if (!dx)
        return;
    const pool_geom *g = (const pool_geom *)c->geom;
    const float *dy = c->out[0]->grad;
    int64_t plane = g->h * g->w, o = 0;
    for (int64_t nc = 0; nc < g->nc; nc++) {
        float *dp = dx + nc * plane;
        for (int64_t oh = 0; oh < g->oh; oh++) {
            int64_t h0, h1;
            window(oh, g->sh, g->pt, g->kh, g->h, &h0, &h1);
            for (int64_t ow = 0; ow < g->ow; ow++, o++) {
                int64_t w0, w1;
                window(ow, g->sw, g->pl, g->kw, g->w, &w0, &w1);
                float v = dy[o] / avg_divisor(g, oh, ow, h0, h1, w0, w1);
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        dp[ih * g->w + iw] += v;
            }
        }
    }
}

const cnv_op cnv_op_averagepool = {
    .type = "AveragePool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .params_size = sizeof(pool_params), .parse = pool_parse, .plan = avgpool_plan,
    .forward = avgpool_forward, .backward = avgpool_backward,
};

/* --------------------------------------------------- GlobalAveragePool */

typedef struct gap_geom {
    int64_t nc, plane; /* N*C planes of `plane` spatial elements */
} gap_geom;

static cnv_status gap_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size, cnv_err *e)
{
    const cnv_shape *xs = &c->in[0]->shape;
    char buf[128];
    if (xs->ndim < 3)
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "input %s needs N, C and spatial dims", cnv_shape_str(xs, buf, sizeof buf));
    gap_geom *g = (gap_geom *)c->geom;
    int64_t cnt = cnv_shape_count(xs);
    if (cnt < 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "input %s is empty", cnv_shape_str(xs, buf, sizeof buf));
    g->nc = xs->dims[0] * xs->dims[1];
    g->plane = cnt / g->nc;
    cnv_shape *ys = &c->out[0]->shape;
    *ys = *xs;
    for (int i = 2; i < ys->ndim; i++)
        ys->dims[i] = 1;
    *state_size = 0;
    *work_size = 0;
    return CNV_OK;
}

/* x is (NC, plane), y is (NC): plane means, summed in double; planes
 * [lo, hi). */
CNV_CLONES static void gap_planes(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const gap_geom *g = (const gap_geom *)c->geom;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    for (int64_t i = lo; i < hi; i++)
        y[i] = (float)(cnv_run_sum(x + i * g->plane, g->plane, 0) / (double)g->plane);
}

static void gap_forward(cnv_op_ctx *c)
{
    cnv_team_run(c->team, ((const gap_geom *)c->geom)->nc, gap_planes, c);
}

static void gap_back_planes(void *job, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const cnv_op_ctx *c = job;
    const gap_geom *g = (const gap_geom *)c->geom;
    const float *dy = c->out[0]->grad;
    for (int64_t i = lo; i < hi; i++) {
        float v = dy[i] / (float)g->plane, *d = c->in[0]->grad + i * g->plane;
        if (cnv_grad_store(c, 0))
            for (int64_t j = 0; j < g->plane; j++)
                d[j] = v;
        else
            for (int64_t j = 0; j < g->plane; j++)
                d[j] += v;
    }
}

static void gap_backward(cnv_op_ctx *c)
{
    if (c->in[0]->grad)
        cnv_team_run(c->team, ((const gap_geom *)c->geom)->nc, gap_back_planes, c);
}

const cnv_op cnv_op_globalaveragepool = {
    .type = "GlobalAveragePool", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE,
    .params_size = 0, .parse = NULL, .plan = gap_plan,
    .forward = gap_forward, .backward = gap_backward,
};
