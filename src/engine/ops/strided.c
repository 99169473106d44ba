/* The strided walk of strided.h: rows copied with memcpy where the source
 * is contiguous, filled where it is broadcast. */
#include <string.h>

#include "engine/ops/strided.h"

void cnv_walk_init(cnv_walk *w, int nd, const int64_t *dims, const int64_t *st, int64_t base)
{
    w->nd = 0;
    w->base = base;
    for (int d = 0; d < nd; d++) {
        if (dims[d] == 1)
            continue;
        int k = w->nd - 1;
        if (k >= 0 && w->st[k] == st[d] * dims[d]) {
            w->dims[k] *= dims[d];
            w->st[k] = st[d];
            continue;
        }
        w->dims[w->nd] = dims[d];
        w->st[w->nd] = st[d];
        w->nd++;
    }
    if (w->nd == 0) {
        w->nd = 1;
        w->dims[0] = 1;
        w->st[0] = 0;
    }
}

/* Calls row(arg, y offset, source offset) for each row. */
typedef void (*walk_row)(void *arg, int64_t y, int64_t x);

static void walk_rows(const cnv_walk *w, walk_row row, void *arg)
{
    int64_t idx[CNV_WALK_DIMS] = {0}, ix = w->base, iy = 0, len = w->dims[w->nd - 1], rows = 1;
    for (int d = 0; d < w->nd - 1; d++)
        rows *= w->dims[d];
    for (int64_t r = 0; r < rows; r++) {
        row(arg, iy, ix);
        iy += len;
        for (int d = w->nd - 2; d >= 0; d--) {
            ix += w->st[d];
            if (++idx[d] < w->dims[d])
                break;
            ix -= w->st[d] * w->dims[d];
            idx[d] = 0;
        }
    }
}

typedef struct row_job {
    const void *x;
    void *y;
    int64_t len, st;
} row_job;

static void gather_row(void *arg, int64_t iy, int64_t ix)
{
    const row_job *j = arg;
    const float *x = (const float *)j->x + ix;
    float *y = (float *)j->y + iy;
    if (j->st == 1)
        memcpy(y, x, (size_t)j->len * sizeof *y);
    else
        for (int64_t i = 0; i < j->len; i++)
            y[i] = x[i * j->st];
}

static void gather_row_i64(void *arg, int64_t iy, int64_t ix)
{
    const row_job *j = arg;
    const int64_t *x = (const int64_t *)j->x + ix;
    int64_t *y = (int64_t *)j->y + iy;
    for (int64_t i = 0; i < j->len; i++)
        y[i] = x[i * j->st];
}

static void scatter_row(void *arg, int64_t iy, int64_t ix)
{
    const row_job *j = arg;
    const float *dy = (const float *)j->x + iy;
    float *dx = (float *)j->y + ix;
    if (j->st == 0) { /* a broadcast source: the row sums into one */
        double s = 0.0;
        for (int64_t i = 0; i < j->len; i++)
            s += dy[i];
        dx[0] += (float)s;
        return;
    }
    for (int64_t i = 0; i < j->len; i++)
        dx[i * j->st] += dy[i];
}

void cnv_walk_gather(const cnv_walk *w, const float *x, float *y)
{
    row_job j = {x, y, w->dims[w->nd - 1], w->st[w->nd - 1]};
    walk_rows(w, gather_row, &j);
}

void cnv_walk_gather_i64(const cnv_walk *w, const int64_t *x, int64_t *y)
{
    row_job j = {x, y, w->dims[w->nd - 1], w->st[w->nd - 1]};
    walk_rows(w, gather_row_i64, &j);
}

void cnv_walk_scatter_add(const cnv_walk *w, const float *dy, float *dx)
{
    row_job j = {dy, dx, w->dims[w->nd - 1], w->st[w->nd - 1]};
    walk_rows(w, scatter_row, &j);
}

void cnv_walk_forward(cnv_op_ctx *c)
{
    if (c->out[0]->count)
        cnv_walk_gather((const cnv_walk *)c->geom, c->in[0]->data, c->out[0]->data);
}

void cnv_walk_backward(cnv_op_ctx *c)
{
    cnv_val *x = c->in[0];
    if (!x->grad)
        return;
    if (cnv_grad_store(c, 0))
        memset(x->grad, 0, (size_t)x->count * sizeof *x->grad);
    if (c->out[0]->count)
        cnv_walk_scatter_add((const cnv_walk *)c->geom, c->out[0]->grad, x->grad);
}

cnv_status cnv_walk_fold(cnv_op_ctx *c, int *done, cnv_err *e)
{
    size_t state, work;
    cnv_status st = c->node->op->plan(c, &state, &work, e);
    void *y;
    if (st == CNV_OK)
        st = cnv_fold_values(c, c->out[0], c->in[0]->i64 != NULL, &y, e);
    if (st != CNV_OK)
        return st;
    const cnv_walk *w = (const cnv_walk *)c->geom;
    if (c->out[0]->count && c->in[0]->i64)
        cnv_walk_gather_i64(w, c->in[0]->i64, y);
    else if (c->out[0]->count)
        cnv_walk_gather(w, c->in[0]->data, y);
    *done = 1;
    return CNV_OK;
}
