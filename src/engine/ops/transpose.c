/* Transpose (ONNX, opset 1-21): y's dim d is x's dim perm[d]; its backward
 * is the inverse permutation of the gradient. Both walk the same plan-time
 * layout: rows copied whole when the last axis stays last, square tiles
 * when it moves (NCHW <-> NHWC). */
#include <string.h>

#include "engine/op.h"
#include "engine/ops/elementwise.h"

typedef struct tr_params {
    int has_perm; /* absent: the dims reversed */
    int n_perm;
    int64_t perm[CNV_MAX_DIMS];
} tr_params;

enum { TR_COPY, TR_ROWS, TR_TILE };

/* The tile edge: 32 floats are two cache lines of each side's rows, and a
 * 32x32 tile (4 KB a side) stays in L1 while it is read across. */
#define TR_TILE_EDGE 32
/* A strip of the tiled case: this many elements along the split dim. */
#define TR_STRIP 64
/* Below this many elements a split over threads costs more than it saves. */
#define TR_MIN_PARALLEL ((int64_t)1 << 15)

/* The permutation with every dim of 1 dropped and every run of dims that
 * stay adjacent and in order merged: in y's order, each dim's length and
 * its strides in x and in y. */
typedef struct tr_geom {
    int mode;     /* TR_* */
    int nd;       /* merged rank, >= 1 */
    int q;        /* TR_TILE: the y dim that is x's contiguous one */
    int split_q;  /* TR_TILE: strips along q, else along y's last dim */
    int64_t dims[CNV_MAX_DIMS], xs[CNV_MAX_DIMS], ys[CNV_MAX_DIMS];
    int no;       /* the dims walked around each row or tile */
    int od[CNV_MAX_DIMS];
    int64_t strips; /* TR_TILE: strips per walked position */
    int64_t units;  /* rows (TR_ROWS) or strips (TR_TILE) in all */
    int64_t count;
} tr_geom;
_Static_assert(sizeof(tr_geom) <= CNV_GEOM_SIZE, "tr_geom fits geom");

/* ------------------------------------------------------------- planning */

static cnv_status tr_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    (void)opset;
    tr_params *p = params;
    const int64_t *perm;
    int cnt;
    cnv_status st = cnv_attr_get_ints(n, "perm", &perm, &cnt, e);
    if (st != CNV_OK)
        return st;
    p->has_perm = cnv_attr_find(n, "perm") != NULL;
    if (!p->has_perm)
        return CNV_OK;
    if (cnt > CNV_MAX_DIMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "perm has %d entries; ranks above %d are not supported", cnt,
                        CNV_MAX_DIMS);
    unsigned seen = 0;
    for (int i = 0; i < cnt; i++) {
        if (perm[i] < 0 || perm[i] >= cnt || (seen >> perm[i] & 1u))
            return cnv_fail(e, CNV_ERR_FORMAT, "perm entry %d is %lld (%s): perm must be a permutation of 0..%d",
                            i, (long long)perm[i], perm[i] < 0 || perm[i] >= cnt ? "out of range" : "repeated",
                            cnt - 1);
        seen |= 1u << perm[i];
        p->perm[i] = perm[i];
    }
    p->n_perm = cnt;
    return CNV_OK;
}

static cnv_status tr_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size, cnv_err *e)
{
    const tr_params *p = c->params;
    const cnv_shape *x = &c->in[0]->shape;
    int r = x->ndim;
    char sx[128];
    if (p->has_perm && p->n_perm != r)
        return cnv_fail(e, CNV_ERR_SHAPE, "perm has %d entries, the input %s has rank %d", p->n_perm,
                        cnv_shape_str(x, sx, sizeof sx), r);
    int64_t perm[CNV_MAX_DIMS], xstride[CNV_MAX_DIMS], s = 1;
    for (int d = 0; d < r; d++)
        perm[d] = p->has_perm ? p->perm[d] : r - 1 - d;
    for (int d = r - 1; d >= 0; d--) {
        xstride[d] = s;
        if (!cnv_mul_i64(s, x->dims[d], &s) || x->dims[d] < 1)
            return cnv_fail(e, CNV_ERR_SHAPE, "the input %s is empty or too large",
                            cnv_shape_str(x, sx, sizeof sx));
    }

    tr_geom *g = (tr_geom *)c->geom;
    memset(g, 0, sizeof *g);
    g->count = s;
    cnv_shape *y = &c->out[0]->shape;
    y->ndim = r;
    for (int d = 0; d < r; d++) {
        int64_t len = x->dims[perm[d]], st = xstride[perm[d]];
        y->dims[d] = len;
        if (len == 1)
            continue; /* a dim of 1 moves nothing */
        int k = g->nd - 1;
        if (k >= 0 && g->xs[k] == st * len) { /* still adjacent in x: one dim */
            g->dims[k] *= len;
            g->xs[k] = st;
            continue;
        }
        g->dims[g->nd] = len;
        g->xs[g->nd] = st;
        g->nd++;
    }
    if (g->nd == 0) {
        g->nd = 1;
        g->dims[0] = 1;
        g->xs[0] = 1;
    }
    int64_t ys = 1;
    for (int d = g->nd - 1; d >= 0; d--) {
        g->ys[d] = ys;
        ys *= g->dims[d]; /* at most count */
    }

    int last = g->nd - 1;
    if (g->nd == 1) {
        g->mode = TR_COPY;
    } else if (g->xs[last] == 1) {
        g->mode = TR_ROWS;
        for (int d = 0; d < last; d++)
            g->od[g->no++] = d;
        g->units = g->count / g->dims[last];
    } else {
        g->mode = TR_TILE;
        for (int d = 0; d < last; d++)
            if (g->xs[d] == 1)
                g->q = d;
            else
                g->od[g->no++] = d;
        /* strips along the longer side, so that a thin one (3 channels)
         * still splits */
        g->split_q = g->dims[g->q] >= g->dims[last];
        int64_t along = g->split_q ? g->dims[g->q] : g->dims[last];
        g->strips = (along + TR_STRIP - 1) / TR_STRIP;
        g->units = g->count / (g->dims[g->q] * g->dims[last]) * g->strips;
    }
    *state_size = 0;
    *work_size = 0;
    return CNV_OK;
}

/* ------------------------------------------------------------- kernels */

/* Position in the walked dims, with the offsets in x and y it gives. */
typedef struct tr_pos {
    int64_t idx[CNV_MAX_DIMS];
    int64_t xo, yo;
} tr_pos;

static void pos_at(const tr_geom *g, int64_t i, tr_pos *p)
{
    p->xo = p->yo = 0;
    for (int k = g->no - 1; k >= 0; k--) {
        int d = g->od[k];
        p->idx[k] = i % g->dims[d];
        i /= g->dims[d];
        p->xo += p->idx[k] * g->xs[d];
        p->yo += p->idx[k] * g->ys[d];
    }
}

static void pos_next(const tr_geom *g, tr_pos *p)
{
    for (int k = g->no - 1; k >= 0; k--) {
        int d = g->od[k];
        p->xo += g->xs[d];
        p->yo += g->ys[d];
        if (++p->idx[k] < g->dims[d])
            return;
        p->xo -= g->xs[d] * g->dims[d];
        p->yo -= g->ys[d] * g->dims[d];
        p->idx[k] = 0;
    }
}

/* dst[r * dld + c] = (or +=) src[c * sld + r], r < rows, c < cols: tile by
 * tile, so that the strided side's cache lines are used whole while the
 * tile is in L1. */
static inline __attribute__((always_inline)) void tile(float *restrict dst, int64_t dld,
                                                       const float *restrict src, int64_t sld,
                                                       int64_t rows, int64_t cols, int acc)
{
    for (int64_t r0 = 0; r0 < rows; r0 += TR_TILE_EDGE) {
        int64_t r1 = r0 + TR_TILE_EDGE < rows ? r0 + TR_TILE_EDGE : rows;
        for (int64_t c0 = 0; c0 < cols; c0 += TR_TILE_EDGE) {
            int64_t c1 = c0 + TR_TILE_EDGE < cols ? c0 + TR_TILE_EDGE : cols;
            for (int64_t r = r0; r < r1; r++) {
                float *d = dst + r * dld;
                const float *s = src + r;
                if (acc)
                    for (int64_t k = c0; k < c1; k++)
                        d[k] += s[k * sld];
                else
                    for (int64_t k = c0; k < c1; k++)
                        d[k] = s[k * sld];
            }
        }
    }
}

static void tile_store(float *restrict dst, int64_t dld, const float *restrict src, int64_t sld, int64_t rows,
                       int64_t cols)
{
    tile(dst, dld, src, sld, rows, cols, 0);
}

static void tile_add(float *restrict dst, int64_t dld, const float *restrict src, int64_t sld, int64_t rows,
                     int64_t cols)
{
    tile(dst, dld, src, sld, rows, cols, 1);
}

/* One direction of the walk: forward reads x and writes y; backward reads
 * dy and writes (or adds into) dx, at the same offset pairs. */
typedef struct tr_job {
    const tr_geom *g;
    const float *src;
    float *dst;
    int back, acc;
} tr_job;

static void rows_part(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const tr_job *j = arg;
    const tr_geom *g = j->g;
    int64_t len = g->dims[g->nd - 1];
    tr_pos p;
    pos_at(g, lo, &p);
    for (int64_t u = lo; u < hi; u++, pos_next(g, &p)) {
        if (!j->back)
            memcpy(j->dst + p.yo, j->src + p.xo, (size_t)len * sizeof(float));
        else if (!j->acc)
            memcpy(j->dst + p.xo, j->src + p.yo, (size_t)len * sizeof(float));
        else
            cnv_add_to(j->src + p.yo, j->dst + p.xo, len);
    }
}

static void tiles_part(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const tr_job *j = arg;
    const tr_geom *g = j->g;
    int last = g->nd - 1;
    int64_t dq = g->dims[g->q], dl = g->dims[last], ysq = g->ys[g->q], xsl = g->xs[last];
    tr_pos p;
    pos_at(g, lo / g->strips, &p);
    for (int64_t u = lo; u < hi; u++) {
        int64_t s = u % g->strips;
        if (s == 0 && u != lo)
            pos_next(g, &p);
        /* a runs along q (x's contiguous dim), b along y's last */
        int64_t a0 = 0, na = dq, b0 = 0, nb = dl;
        if (g->split_q) {
            a0 = s * TR_STRIP;
            na = a0 + TR_STRIP < dq ? TR_STRIP : dq - a0;
        } else {
            b0 = s * TR_STRIP;
            nb = b0 + TR_STRIP < dl ? TR_STRIP : dl - b0;
        }
        const int64_t xo = p.xo + a0 + b0 * xsl, yo = p.yo + a0 * ysq + b0;
        if (!j->back) /* y[a ysq + b] = x[a + b xsl] */
            tile_store(j->dst + yo, ysq, j->src + xo, xsl, na, nb);
        else if (!j->acc) /* dx[b xsl + a] = dy[a ysq + b] */
            tile_store(j->dst + xo, xsl, j->src + yo, ysq, nb, na);
        else
            tile_add(j->dst + xo, xsl, j->src + yo, ysq, nb, na);
    }
}

static void tr_run(cnv_op_ctx *c, tr_job *j)
{
    const tr_geom *g = j->g;
    cnv_chunk_fn fn = g->mode == TR_ROWS ? rows_part : tiles_part;
    if (g->count < TR_MIN_PARALLEL)
        fn(j, 0, g->units, 0);
    else
        cnv_team_run(c->team, g->units, fn, j);
}

// y[i_0, ..., i_r-1] = x[j] with j_perm[d] = i_d
static void tr_forward(cnv_op_ctx *c)
{
    const tr_geom *g = (const tr_geom *)c->geom;
    if (g->mode == TR_COPY) {
        memcpy(c->out[0]->data, c->in[0]->data, (size_t)g->count * sizeof(float));
        return;
    }
    tr_job j = {g, c->in[0]->data, c->out[0]->data, 0, 0};
    tr_run(c, &j);
}

/* dx += dy transposed back (or = under a grad store): each y position
 * is one x position, so the walk has no conflicts between threads. */
static void tr_backward(cnv_op_ctx *c)
{
    const tr_geom *g = (const tr_geom *)c->geom;
    float *dx = c->in[0]->grad;
    if (!dx)
        return;
    int store = cnv_grad_store(c, 0);
    if (g->mode == TR_COPY) {
        cnv_grad_pass(c->out[0]->grad, dx, g->count, store);
        return;
    }
    tr_job j = {g, c->out[0]->grad, dx, 1, !store};
    tr_run(c, &j);
}

const cnv_op cnv_op_transpose = {
    .type = "Transpose",
    .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE,
    .params_size = sizeof(tr_params),
    .parse = tr_parse,
    .plan = tr_plan,
    .forward = tr_forward,
    .backward = tr_backward,
};
