/* im2col (gather an image into a column matrix) and col2im (its transpose,
 * scatter-adding a column matrix back into an image). */
#include <string.h>

#include "engine/ops/im2col.h"

#include "engine/ops/elementwise.h"

/* Output positions o in [*lo, *hi) whose input index o*s + off lies inside
 * [0, n_in): computing the range once keeps the inner loops branch-free. */
static void tap_range(int64_t off, int64_t s, int64_t n_in, int64_t n_out,
                      int64_t *lo, int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = n_in - 1 - off < 0 ? 0 : (n_in - 1 - off) / s + 1;
    if (b > n_out)
        b = n_out;
    if (a > b)
        a = b;
    *lo = a;
    *hi = b;
}

void cnv_im2col(const cnv_im2col_geom *g, const float *x, float *col)
{
    cnv_im2col_rows(g, x, col, 0, g->c * g->kh);
}

void cnv_im2col_rows(const cnv_im2col_geom *g, const float *x, float *col, int64_t r0, int64_t r1)
{
    const int64_t P = g->oh * g->ow;
    for (int64_t kr = r0; kr < r1; kr++) {
        const int64_t ci = kr / g->kh, ki = kr % g->kh;
        const float *xc = x + ci * g->h * g->w;
        int64_t offh = ki * g->dh - g->pt, oh_lo, oh_hi;
        tap_range(offh, g->sh, g->h, g->oh, &oh_lo, &oh_hi);
        for (int64_t kj = 0; kj < g->kw; kj++) {
            int64_t offw = kj * g->dw - g->pl, ow_lo, ow_hi;
            tap_range(offw, g->sw, g->w, g->ow, &ow_lo, &ow_hi);
            float *row = col + ((ci * g->kh + ki) * g->kw + kj) * P;
            /* rows of padding above and below */
            memset(row, 0, (size_t)(oh_lo * g->ow) * sizeof *row);
            memset(row + oh_hi * g->ow, 0,
                   (size_t)((g->oh - oh_hi) * g->ow) * sizeof *row);
            for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                float *r = row + oh * g->ow;
                /* base may be negative; only base + ow*sw for ow in
                 * [ow_lo, ow_hi) is ever dereferenced */
                int64_t base = (oh * g->sh + offh) * g->w + offw;
                for (int64_t ow = 0; ow < ow_lo; ow++)
                    r[ow] = 0.0f;
                if (g->sw == 1) {
                    if (ow_hi > ow_lo)
                        memcpy(r + ow_lo, xc + base + ow_lo,
                               (size_t)(ow_hi - ow_lo) * sizeof *r);
                } else {
                    for (int64_t ow = ow_lo; ow < ow_hi; ow++)
                        r[ow] = xc[base + ow * g->sw];
                }
                for (int64_t ow = ow_hi; ow < g->ow; ow++)
                    r[ow] = 0.0f;
            }
        }
    }
}

void cnv_col2im(const cnv_im2col_geom *g, const float *col, float *x)
{
    cnv_col2im_rows(g, col, x, 0, g->h, 0);
}

/* The outputs o in [*lo, *hi) whose tap lands on an input row or column
 * in [i0, i1): o*s + off in that range. */
static void clip_to(int64_t off, int64_t s, int64_t i0, int64_t i1, int64_t *lo, int64_t *hi)
{
    int64_t a = i0 - off, b = i1 - off;
    int64_t first = a <= 0 ? 0 : (a + s - 1) / s, end = b <= 0 ? 0 : (b + s - 1) / s;
    if (*lo < first)
        *lo = first;
    if (*hi > end)
        *hi = end;
    if (*lo > *hi)
        *lo = *hi;
}

void cnv_col2im_rows(const cnv_im2col_geom *g, const float *col, float *x, int64_t ih0, int64_t ih1,
                     int store)
{
    const int64_t P = g->oh * g->ow;
    for (int64_t ci = 0; ci < g->c; ci++) {
        float *xc = x + ci * g->h * g->w;
        if (store)
            memset(xc + ih0 * g->w, 0, (size_t)((ih1 - ih0) * g->w) * sizeof *xc);
        for (int64_t ki = 0; ki < g->kh; ki++) {
            int64_t offh = ki * g->dh - g->pt, oh_lo, oh_hi;
            tap_range(offh, g->sh, g->h, g->oh, &oh_lo, &oh_hi);
            clip_to(offh, g->sh, ih0, ih1, &oh_lo, &oh_hi);
            for (int64_t kj = 0; kj < g->kw; kj++) {
                int64_t offw = kj * g->dw - g->pl, ow_lo, ow_hi;
                tap_range(offw, g->sw, g->w, g->ow, &ow_lo, &ow_hi);
                const float *row = col + ((ci * g->kh + ki) * g->kw + kj) * P;
                /* entries that came from padding have no input to go to */
                for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                    const float *r = row + oh * g->ow;
                    int64_t base = (oh * g->sh + offh) * g->w + offw;
                    if (g->sw == 1)
                        cnv_add_to(r + ow_lo, xc + base + ow_lo, ow_hi - ow_lo);
                    else
                        for (int64_t ow = ow_lo; ow < ow_hi; ow++)
                            xc[base + ow * g->sw] += r[ow];
                }
            }
        }
    }
}

typedef struct units_job {
    const cnv_op_ctx *c;
    int64_t groups;
    size_t unit_work;
    cnv_unit_fn fn;
} units_job;

static void units_part(void *arg, int64_t lo, int64_t hi, int tid)
{
    const units_job *j = arg;
    for (int64_t i = lo; i < hi; i++)
        j->fn(j->c, i / j->groups, i % j->groups, j->c->work + (size_t)tid * j->unit_work, NULL);
}

void cnv_run_units(const cnv_op_ctx *c, int64_t images, int64_t groups, int by_unit, size_t unit_work,
                   cnv_unit_fn fn)
{
    if (by_unit) {
        units_job j = {c, groups, unit_work, fn};
        cnv_team_run(c->team, images * groups, units_part, &j);
        return;
    }
    for (int64_t n = 0; n < images; n++)
        for (int64_t gr = 0; gr < groups; gr++)
            fn(c, n, gr, c->work, c->team);
}
