/* MatMul (ONNX, opset 1-13): numpy's matmul, a 1-D operand promoted to a
 * matrix and the added dim dropped, the batch dims broadcast both ways; its
 * backward to both operands, summed over the batches each was broadcast to. */
#include <string.h>

#include "engine/op.h"

typedef struct mm_geom {
    int64_t m, n, k;        /* each product: (m,k) x (k,n) -> (m,n) */
    int64_t batches;        /* products: the output's batch count */
    int64_t a_batches, b_batches;
    /* B holds one matrix (2-D, or every batch dim 1): A's batches are rows
     * of one (a_batches * m, k) matrix and the whole op is one GEMM. */
    int folded;
    /* The output's batch dims, and each operand's stride along them in
     * matrices (0 where it is broadcast). */
    int nb;
    int64_t dims[CNV_MAX_DIMS];
    int64_t sa[CNV_MAX_DIMS], sb[CNV_MAX_DIMS], sy[CNV_MAX_DIMS];
} mm_geom;
_Static_assert(sizeof(mm_geom) <= CNV_GEOM_SIZE, "mm_geom fits geom");

/* ------------------------------------------------------------- planning */

static cnv_status mm_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size, cnv_err *e)
{
    const cnv_shape *as = &c->in[0]->shape, *bs = &c->in[1]->shape;
    char sa[128], sb[128];
    cnv_shape_str(as, sa, sizeof sa);
    cnv_shape_str(bs, sb, sizeof sb);
    if (as->ndim < 1 || bs->ndim < 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "A %s and B %s must each have at least one dim (no scalars)",
                        sa, sb);
    for (int d = 0; d < as->ndim; d++)
        if (as->dims[d] < 1 || as->dims[d] > CNV_MAX_ELEMS)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED, "A %s has an empty, unknown or too large dim %d", sa, d);
    for (int d = 0; d < bs->ndim; d++)
        if (bs->dims[d] < 1 || bs->dims[d] > CNV_MAX_ELEMS)
            return cnv_fail(e, CNV_ERR_UNSUPPORTED, "B %s has an empty, unknown or too large dim %d", sb, d);

    /* A 1-D A is a row (1,k), a 1-D B a column (k,1). */
    int ra = as->ndim, rb = bs->ndim;
    int64_t m = ra == 1 ? 1 : as->dims[ra - 2], k = as->dims[ra - 1];
    int64_t kb = rb == 1 ? bs->dims[0] : bs->dims[rb - 2], n = rb == 1 ? 1 : bs->dims[rb - 1];
    if (k != kb)
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "inner sizes differ: A %s has %lld columns, B %s has %lld rows", sa,
                        (long long)k, sb, (long long)kb);

    mm_geom *g = (mm_geom *)c->geom;
    memset(g, 0, sizeof *g);
    int na = ra > 2 ? ra - 2 : 0, nbb = rb > 2 ? rb - 2 : 0;
    g->nb = na > nbb ? na : nbb;
    /* dims right-aligned; strides from the last batch dim back */
    int64_t stride_a = 1, stride_b = 1;
    for (int d = g->nb - 1; d >= 0; d--) {
        int ka = d - (g->nb - na), kb2 = d - (g->nb - nbb);
        int64_t la = ka >= 0 ? as->dims[ka] : 1, lb = kb2 >= 0 ? bs->dims[kb2] : 1;
        if (la != lb && la != 1 && lb != 1)
            return cnv_fail(e, CNV_ERR_SHAPE,
                            "batch dims of A %s and B %s do not broadcast (%lld against %lld)", sa, sb,
                            (long long)la, (long long)lb);
        g->dims[d] = la > lb ? la : lb;
        g->sa[d] = la == 1 ? 0 : stride_a;
        g->sb[d] = lb == 1 ? 0 : stride_b;
        if (!cnv_mul_i64(stride_a, la, &stride_a) || !cnv_mul_i64(stride_b, lb, &stride_b))
            return cnv_fail(e, CNV_ERR_SHAPE, "the batch counts of A %s or B %s overflow", sa, sb);
    }
    g->a_batches = stride_a;
    g->b_batches = stride_b;
    int64_t stride_y = 1;
    for (int d = g->nb - 1; d >= 0; d--) {
        g->sy[d] = stride_y;
        if (!cnv_mul_i64(stride_y, g->dims[d], &stride_y))
            return cnv_fail(e, CNV_ERR_SHAPE, "the output's batch count overflows (A %s, B %s)", sa, sb);
    }
    g->batches = stride_y;
    g->m = m;
    g->n = n;
    g->k = k;
    g->folded = g->b_batches == 1;

    /* Every operand count fits (the planner checked the inputs); the
     * output and the folded rows must too, so that BLAS's ints hold them. */
    int64_t mn, total, rows;
    if (!cnv_mul_i64(m, n, &mn) || !cnv_mul_i64(mn, g->batches, &total) || total > CNV_MAX_ELEMS ||
        !cnv_mul_i64(g->a_batches, m, &rows) || rows > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "the output of A %s times B %s is too large", sa, sb);

    cnv_shape *y = &c->out[0]->shape;
    y->ndim = g->nb;
    for (int d = 0; d < g->nb; d++)
        y->dims[d] = g->dims[d];
    if (ra > 1)
        y->dims[y->ndim++] = m;
    if (rb > 1)
        y->dims[y->ndim++] = n;
    *state_size = 0;
    *work_size = 0;
    return CNV_OK;
}

/* 2 per multiply-add: m * n outputs of k products, per batch. */
static double mm_flops(const cnv_op_ctx *c)
{
    const mm_geom *g = (const mm_geom *)c->geom;
    return 2.0 * (double)g->m * (double)g->n * (double)g->k * (double)g->batches;
}

/* --------------------------------------------------------- batch walk */

/* Offsets (in matrices) of output batch `o` in A, B and the output. */
static void batch_offsets(const mm_geom *g, int64_t o, int64_t *ia, int64_t *ib, int64_t *iy)
{
    *ia = *ib = *iy = 0;
    for (int d = g->nb - 1; d >= 0; d--) {
        int64_t i = o % g->dims[d];
        o /= g->dims[d];
        *ia += i * g->sa[d];
        *ib += i * g->sb[d];
        *iy += i * g->sy[d];
    }
}

/* The output batches that read one batch of an operand (its strides sx):
 * the operand's own dims fix their indices, its broadcast dims range
 * freely. `own` is the operand's batch index (row-major over its own
 * dims), `j` the index over the free ones. */
static void batch_for_operand(const mm_geom *g, const int64_t *sx, int64_t own, int64_t j, int64_t *ia,
                              int64_t *ib, int64_t *iy)
{
    *ia = *ib = *iy = 0;
    for (int d = g->nb - 1; d >= 0; d--) {
        int64_t i;
        if (sx[d] || g->dims[d] == 1) {
            i = own % g->dims[d];
            own /= g->dims[d];
        } else {
            i = j % g->dims[d];
            j /= g->dims[d];
        }
        *ia += i * g->sa[d];
        *ib += i * g->sb[d];
        *iy += i * g->sy[d];
    }
}

/* Threads take whole products when there are enough of them; otherwise
 * each product's GEMM is split over the team. */
static int by_unit(const cnv_op_ctx *c, int64_t units)
{
    return c->threads > 1 && units >= c->threads;
}

/* ------------------------------------------------------------- forward */

typedef struct mm_job {
    const cnv_op_ctx *c;
    cnv_team *team; /* NULL inside a unit: that thread runs the GEMM alone */
} mm_job;

static void forward_units(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const mm_job *j = arg;
    const cnv_op_ctx *c = j->c;
    const mm_geom *g = (const mm_geom *)c->geom;
    const int M = (int)g->m, N = (int)g->n, K = (int)g->k;
    for (int64_t o = lo; o < hi; o++) {
        int64_t ia, ib, iy;
        batch_offsets(g, o, &ia, &ib, &iy);
        cnv_sgemm(j->team, 0, 0, M, N, K, 1.0f, c->in[0]->data + ia * g->m * g->k, K,
                  c->in[1]->data + ib * g->k * g->n, N, 0.0f, c->out[0]->data + iy * g->m * g->n, N);
    }
}

// y (..., m, n) = a (..., m, k) x b (..., k, n), batches broadcast
static void mm_forward(cnv_op_ctx *c)
{
    const mm_geom *g = (const mm_geom *)c->geom;
    if (g->folded) {
        const int R = (int)(g->a_batches * g->m), N = (int)g->n, K = (int)g->k;
        cnv_sgemm(c->team, 0, 0, R, N, K, 1.0f, c->in[0]->data, K, c->in[1]->data, N, 0.0f,
                  c->out[0]->data, N);
        return;
    }
    if (by_unit(c, g->batches)) {
        mm_job j = {c, NULL};
        cnv_team_run(c->team, g->batches, forward_units, &j);
    } else {
        mm_job j = {c, c->team};
        forward_units(&j, 0, g->batches, 0);
    }
}

/* ------------------------------------------------------------ backward */

/* Gradients of operand batches [lo, hi) of one operand: each batch's
 * gradient is the sum of one product per output batch that read it, the
 * first of which stores when the executor asked for a store. */
typedef struct grad_job {
    const cnv_op_ctx *c;
    cnv_team *team;
    int which;       /* 0: dA, 1: dB */
    int store;
    int64_t per;     /* output batches per operand batch */
} grad_job;

static void grad_units(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const grad_job *j = arg;
    const cnv_op_ctx *c = j->c;
    const mm_geom *g = (const mm_geom *)c->geom;
    const int M = (int)g->m, N = (int)g->n, K = (int)g->k;
    const float *a = c->in[0]->data, *b = c->in[1]->data, *dy = c->out[0]->grad;
    float *dx = c->in[j->which]->grad;
    for (int64_t x = lo; x < hi; x++)
        for (int64_t f = 0; f < j->per; f++) {
            int64_t ia, ib, iy;
            batch_for_operand(g, j->which ? g->sb : g->sa, x, f, &ia, &ib, &iy);
            float beta = j->store && f == 0 ? 0.0f : 1.0f;
            const float *dyo = dy + iy * g->m * g->n;
            if (j->which == 0) /* da (m,k) += dy (m,n) b^T (n,k) */
                cnv_sgemm(j->team, 0, 1, M, K, N, 1.0f, dyo, N, b + ib * g->k * g->n, N, beta,
                          dx + ia * g->m * g->k, K);
            else /* db (k,n) += a^T (k,m) dy (m,n) */
                cnv_sgemm(j->team, 1, 0, K, N, M, 1.0f, a + ia * g->m * g->k, K, dyo, N, beta,
                          dx + ib * g->k * g->n, N);
        }
}

static void grad_of(cnv_op_ctx *c, int which)
{
    const mm_geom *g = (const mm_geom *)c->geom;
    int64_t units = which ? g->b_batches : g->a_batches;
    grad_job j = {c, c->team, which, cnv_grad_store(c, which), g->batches / units};
    if (by_unit(c, units)) {
        j.team = NULL;
        cnv_team_run(c->team, units, grad_units, &j);
    } else {
        grad_units(&j, 0, units, 0);
    }
}

/* da += dy b^T and db += a^T dy, per product; folded, each is one GEMM
 * over all of A's rows (db's sum over A's batches is the GEMM's own). */
static void mm_backward(cnv_op_ctx *c)
{
    const mm_geom *g = (const mm_geom *)c->geom;
    const float *a = c->in[0]->data, *b = c->in[1]->data, *dy = c->out[0]->grad;
    float *da = c->in[0]->grad, *db = c->in[1]->grad;
    if (!g->folded) {
        /* A and B the same tensor: the executor zeroed it, each adds */
        if (da)
            grad_of(c, 0);
        if (db)
            grad_of(c, 1);
        return;
    }
    const int R = (int)(g->a_batches * g->m), N = (int)g->n, K = (int)g->k;
    if (da)
        cnv_sgemm(c->team, 0, 1, R, K, N, 1.0f, dy, N, b, N, cnv_grad_store(c, 0) ? 0.0f : 1.0f, da, K);
    if (db)
        cnv_sgemm(c->team, 1, 0, K, N, R, 1.0f, a, K, dy, N, cnv_grad_store(c, 1) ? 0.0f : 1.0f, db, N);
}

const cnv_op cnv_op_matmul = {
    .type = "MatMul",
    .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE,
    .plan = mm_plan,
    .forward = mm_forward,
    .backward = mm_backward,
    .flops = mm_flops,
};
