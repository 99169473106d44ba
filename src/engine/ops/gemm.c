/* Gemm (ONNX, opset 7-17): Y = alpha * op(A) * op(B) + beta * C with C
 * broadcast to Y, as one GEMM; its backward to A, B and C. */
#include <string.h>

#include "engine/op.h"

typedef struct gemm_params {
    float alpha, beta;
    int64_t trans_a, trans_b;
} gemm_params;

typedef struct gemm_geom {
    int64_t m, n, k;   /* Y is (m,n); op(A) is (m,k), op(B) is (k,n) */
    int64_t lda, ldb;  /* row lengths of A and B as stored */
    int64_t cm, cn;    /* C seen as (cm,cn), each 1 (broadcast) or m / n */
    int ta, tb, has_c;
} gemm_geom;

_Static_assert(sizeof(gemm_geom) <= CNV_GEOM_SIZE, "gemm_geom must fit in geom");

static cnv_status gemm_parse(const cnv_node *n, void *params, int64_t opset,
                             cnv_err *e)
{
    (void)opset; /* opset < 7 also had "broadcast", which 7+ implies */
    gemm_params *p = params;
    cnv_status st;
    if ((st = cnv_attr_get_float(n, "alpha", 1.0f, &p->alpha, e)) ||
        (st = cnv_attr_get_float(n, "beta", 1.0f, &p->beta, e)) ||
        (st = cnv_attr_get_int(n, "transA", 0, &p->trans_a, e)) ||
        (st = cnv_attr_get_int(n, "transB", 0, &p->trans_b, e)))
        return st;
    if ((p->trans_a != 0 && p->trans_a != 1) || (p->trans_b != 0 && p->trans_b != 1))
        return cnv_fail(e, CNV_ERR_FORMAT,
                        "transA = %lld, transB = %lld, each must be 0 or 1",
                        (long long)p->trans_a, (long long)p->trans_b);
    return CNV_OK;
}

static cnv_status gemm_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size,
                            cnv_err *e)
{
    const gemm_params *p = c->params;
    const cnv_val *a = c->in[0], *b = c->in[1], *cv = c->node->n_in > 2 ? c->in[2] : NULL;
    char sa[96], sb[96], sc[96];
    cnv_shape_str(&a->shape, sa, sizeof sa);
    cnv_shape_str(&b->shape, sb, sizeof sb);

    if (a->shape.ndim != 2 || b->shape.ndim != 2)
        return cnv_fail(e, CNV_ERR_SHAPE, "A %s and B %s must be 2-D", sa, sb);
    for (int i = 0; i < 2; i++)
        if (a->shape.dims[i] < 1 || b->shape.dims[i] < 1 ||
            a->shape.dims[i] > CNV_MAX_ELEMS || b->shape.dims[i] > CNV_MAX_ELEMS)
            return cnv_fail(e, CNV_ERR_SHAPE,
                            "empty, unknown or too large dimension in A %s or B %s", sa, sb);
    int ta = p->trans_a != 0, tb = p->trans_b != 0;
    int64_t m = a->shape.dims[ta ? 1 : 0], k = a->shape.dims[ta ? 0 : 1];
    int64_t kb = b->shape.dims[tb ? 1 : 0], n = b->shape.dims[tb ? 0 : 1];
    if (k != kb)
        return cnv_fail(e, CNV_ERR_SHAPE,
                        "inner sizes differ: A %s (transA %d) gives K = %lld, B %s (transB %d) gives K = %lld",
                        sa, ta, (long long)k, sb, tb, (long long)kb);
    int64_t mn;
    if (!cnv_mul_i64(m, n, &mn) || mn > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "output %lldx%lld is too large",
                        (long long)m, (long long)n);

    gemm_geom *g = (gemm_geom *)c->geom;
    memset(g, 0, sizeof *g);
    g->m = m;
    g->n = n;
    g->k = k;
    g->lda = a->shape.dims[1];
    g->ldb = b->shape.dims[1];
    g->ta = ta;
    g->tb = tb;
    g->cm = g->cn = 1;
    if (cv) {
        /* unidirectional broadcast: C's dims, right-aligned, are 1 or Y's */
        const cnv_shape *s = &cv->shape;
        cnv_shape_str(s, sc, sizeof sc);
        int ok = s->ndim <= 2;
        if (ok && s->ndim >= 1)
            g->cn = s->dims[s->ndim - 1];
        if (ok && s->ndim == 2)
            g->cm = s->dims[0];
        ok = ok && (g->cn == 1 || g->cn == n) && (g->cm == 1 || g->cm == m);
        if (!ok)
            return cnv_fail(e, CNV_ERR_SHAPE,
                            "C %s does not broadcast to the output %lldx%lld (A %s, B %s)",
                            sc, (long long)m, (long long)n, sa, sb);
        g->has_c = 1;
    }
    cnv_val *y = c->out[0];
    y->shape.ndim = 2;
    y->shape.dims[0] = m;
    y->shape.dims[1] = n;
    *state_size = 0;
    *work_size = 0;
    return CNV_OK;
}

/* y (m,n) = alpha * op(a) (m,k) * op(b) (k,n) + beta * c (broadcast) */
static void gemm_forward(cnv_op_ctx *c)
{
    const gemm_params *p = c->params;
    const gemm_geom *g = (const gemm_geom *)c->geom;
    float *y = c->out[0]->data;
    float beta = 0.0f;
    if (g->has_c) {
        const float *cd = c->in[2]->data;
        for (int64_t i = 0; i < g->m; i++)
            for (int64_t j = 0; j < g->n; j++)
                y[i * g->n + j] = p->beta * cd[(g->cm == 1 ? 0 : i) * g->cn + (g->cn == 1 ? 0 : j)];
        beta = 1.0f;
    }
    cnv_sgemm(c->team, g->ta, g->tb, (int)g->m, (int)g->n, (int)g->k, p->alpha, c->in[0]->data,
              (int)g->lda, c->in[1]->data, (int)g->ldb, beta, y, (int)g->n);
}

/* da += alpha * dy * op(b)^T (transposed back when transA);
 * db += alpha * op(a)^T * dy (likewise); dc += beta * dy summed over the
 * dims C was broadcast along. */
static void gemm_backward(cnv_op_ctx *c)
{
    const gemm_params *p = c->params;
    const gemm_geom *g = (const gemm_geom *)c->geom;
    const float *a = c->in[0]->data, *b = c->in[1]->data, *dy = c->out[0]->grad;
    float *da = c->in[0]->grad, *db = c->in[1]->grad;
    const int M = (int)g->m, N = (int)g->n, K = (int)g->k;
    const int lda = (int)g->lda, ldb = (int)g->ldb;

    if (da) {
        if (!g->ta) /* da (M,K) = dy (M,N) * op(b)^T (N,K) */
            cnv_sgemm(c->team, 0, !g->tb, M, K, N, p->alpha, dy, N, b, ldb, 1.0f, da, K);
        else /* da (K,M) = op(b) (K,N) * dy^T (N,M) */
            cnv_sgemm(c->team, g->tb, 1, K, M, N, p->alpha, b, ldb, dy, N, 1.0f, da, M);
    }
    if (db) {
        if (!g->tb) /* db (K,N) = op(a)^T (K,M) * dy (M,N) */
            cnv_sgemm(c->team, !g->ta, 0, K, N, M, p->alpha, a, lda, dy, N, 1.0f, db, N);
        else /* db (N,K) = dy^T (N,M) * op(a) (M,K) */
            cnv_sgemm(c->team, 1, g->ta, N, K, M, p->alpha, dy, N, a, lda, 1.0f, db, K);
    }
    if (g->has_c && c->in[2]->grad) {
        float *dc = c->in[2]->grad;
        for (int64_t i = 0; i < g->m; i++)
            for (int64_t j = 0; j < g->n; j++)
                dc[(g->cm == 1 ? 0 : i) * g->cn + (g->cn == 1 ? 0 : j)] +=
                    p->beta * dy[i * g->n + j];
    }
}

/* 2 per multiply-add: m * n outputs of k products each. */
static double gemm_flops(const cnv_op_ctx *c)
{
    const gemm_geom *g = (const gemm_geom *)c->geom;
    return 2.0 * (double)g->m * (double)g->n * (double)g->k;
}

const cnv_op cnv_op_gemm = {
    .type = "Gemm",
    .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1,
    .params_size = sizeof(gemm_params),
    .parse = gemm_parse,
    .plan = gemm_plan,
    .forward = gemm_forward,
    .backward = gemm_backward,
    .flops = gemm_flops,
};
