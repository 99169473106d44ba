/* Methods that only run the model forward on changed images: occlusion
 * (a sliding square set to the baseline), RISE (random smooth masks), and
 * the deletion/insertion metrics that score any map by changing pixels in
 * its order. Images are built a batch at a time in the session's input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "viz/saliency.h"

/* The windows' starts along a side of n pixels: 0, stride, ... while the
 * window fits, then one ending at the edge if the last one did not; their
 * count (at most n). */
static int window_starts(int n, int win, int stride, int *starts)
{
    int k = 0, at = 0;
    for (; at + win <= n; at += stride)
        starts[k++] = at;
    if (k == 0 || starts[k - 1] + win < n)
        starts[k++] = n - win;
    return k;
}

cnv_status sal_occlusion(sal_ctx *c, float *map)
{
    cnv_viz *v = &c->v;
    int h = v->h, w = v->w, small = h < w ? h : w;
    int win = c->p.window ? c->p.window : (small / 7 > 1 ? small / 7 : 1);
    if (win > small)
        win = small;
    int stride = c->p.stride ? c->p.stride : (win / 2 > 1 ? win / 2 : 1);
    size_t item = v->item, plane = (size_t)h * w;
    int *ys = cnv_malloc(((size_t)h + 1) * sizeof *ys), *xs = cnv_malloc(((size_t)w + 1) * sizeof *xs);
    float *b = cnv_malloc(item * sizeof *b), *vals = NULL;
    double *sum = cnv_calloc(plane, sizeof *sum);
    int *count = cnv_calloc(plane, sizeof *count);
    cnv_status st = CNV_OK;
    if (!ys || !xs || !b || !sum || !count) {
        st = cnv_fail(v->err, CNV_ERR_NOMEM, "occlusion: out of memory");
        goto done;
    }
    int ny = window_starts(h, win, stride, ys), nx = window_starts(w, win, stride, xs);
    int total = ny * nx; /* <= h * w */
    if ((st = sal_baseline(c, c->p.baseline == CNV_BASELINE_AUTO ? CNV_BASELINE_ZERO : c->p.baseline, b)) != CNV_OK ||
        (st = sal_plan(c, c->p.batch < total ? c->p.batch : total)) != CNV_OK)
        goto done;
    int B = sal_batch(c);
    if (!(vals = cnv_malloc((size_t)B * sizeof *vals))) {
        st = cnv_fail(v->err, CNV_ERR_NOMEM, "occlusion: out of memory");
        goto done;
    }
    int passes = (total + B - 1) / B;
    for (int q0 = 0, pass = 0; q0 < total; q0 += B, pass++) {
        int used = total - q0 < B ? total - q0 : B;
        float *in = cnv_session_input(v->s);
        for (int i = 0; i < B; i++) {
            float *x = in + (size_t)i * item;
            memcpy(x, c->image, item * sizeof *x);
            if (i >= used)
                continue;
            int y0 = ys[(q0 + i) / nx], x0 = xs[(q0 + i) % nx];
            for (int ch = 0; ch < v->c; ch++)
                for (int y = y0; y < y0 + win; y++) {
                    size_t at = (size_t)ch * plane + (size_t)y * w + x0;
                    memcpy(x + at, b + at, (size_t)win * sizeof *x);
                }
        }
        if ((st = sal_forward(c, used, vals, NULL)) != CNV_OK ||
            (st = sal_progress(c, pass + 1, passes, vals[0])) != CNV_OK)
            goto done;
        for (int i = 0; i < used; i++) {
            int y0 = ys[(q0 + i) / nx], x0 = xs[(q0 + i) % nx];
            double drop = (double)c->score - vals[i];
            for (int y = y0; y < y0 + win; y++)
                for (int x = x0; x < x0 + win; x++) {
                    sum[(size_t)y * w + x] += drop;
                    count[(size_t)y * w + x]++;
                }
        }
    }
    for (size_t i = 0; i < plane; i++)
        map[i] = count[i] ? (float)(sum[i] / count[i]) : 0.0f;
done:
    cnv_free(ys);
    cnv_free(xs);
    cnv_free(b);
    cnv_free(vals);
    cnv_free(sum);
    cnv_free(count);
    return st;
}

/* ------------------------------------------------------------------ RISE */

/* RISE's mask i (h x w): a cells x cells grid, each cell on with
 * probability prob, upsampled bilinearly (half-pixel centers, edges
 * clamped) to (cells + 1) cells of ceil(h / cells) x ceil(w / cells)
 * pixels, cropped at a random offset within one cell; from the stream
 * (seed, i). grid holds cells^2 floats. */
static void rise_mask(const sal_ctx *c, int64_t i, float *grid, float *mask)
{
    int s = c->p.mask_cells, h = c->v.h, w = c->v.w;
    int ch = (h + s - 1) / s, cw = (w + s - 1) / s;
    int H = (s + 1) * ch, W = (s + 1) * cw;
    cnv_rng r;
    cnv_rng_seed2(&r, c->p.seed, (uint64_t)i);
    for (int k = 0; k < s * s; k++)
        grid[k] = cnv_rng_uniform(&r) < c->p.mask_prob ? 1.0f : 0.0f;
    int dy = (int)(cnv_rng_uniform(&r) * ch), dx = (int)(cnv_rng_uniform(&r) * cw);
    dy = dy < ch ? dy : ch - 1;
    dx = dx < cw ? dx : cw - 1;
    for (int y = 0; y < h; y++) {
        double sy = ((double)(y + dy) + 0.5) * s / H - 0.5;
        sy = sy < 0.0 ? 0.0 : sy;
        int y0 = (int)sy < s - 1 ? (int)sy : s - 1, y1 = y0 < s - 1 ? y0 + 1 : y0;
        double fy = sy - y0 < 1.0 ? sy - y0 : 1.0;
        for (int x = 0; x < w; x++) {
            double sx = ((double)(x + dx) + 0.5) * s / W - 0.5;
            sx = sx < 0.0 ? 0.0 : sx;
            int x0 = (int)sx < s - 1 ? (int)sx : s - 1, x1 = x0 < s - 1 ? x0 + 1 : x0;
            double fx = sx - x0 < 1.0 ? sx - x0 : 1.0;
            double top = (1.0 - fx) * grid[y0 * s + x0] + fx * grid[y0 * s + x1];
            double bot = (1.0 - fx) * grid[y1 * s + x0] + fx * grid[y1 * s + x1];
            mask[(size_t)y * w + x] = (float)((1.0 - fy) * top + fy * bot);
        }
    }
}

cnv_status sal_rise(sal_ctx *c, float *map)
{
    cnv_viz *v = &c->v;
    const cnv_saliency_params *p = &c->p;
    size_t item = v->item, plane = (size_t)v->h * v->w;
    int N = p->masks;
    cnv_status st = sal_plan(c, p->batch < N ? p->batch : N);
    if (st != CNV_OK)
        return st;
    int B = sal_batch(c);
    float *b = cnv_malloc(item * sizeof *b), *masks = cnv_malloc((size_t)B * plane * sizeof *masks);
    float *grid = cnv_malloc((size_t)p->mask_cells * p->mask_cells * sizeof *grid);
    float *vals = cnv_malloc((size_t)B * sizeof *vals);
    double *sum = cnv_calloc(plane, sizeof *sum);
    if (!b || !masks || !grid || !vals || !sum) {
        st = cnv_fail(v->err, CNV_ERR_NOMEM, "rise: out of memory");
        goto done;
    }
    if ((st = sal_baseline(c, p->baseline == CNV_BASELINE_AUTO ? CNV_BASELINE_BLACK : p->baseline, b)) != CNV_OK)
        goto done;
    int passes = (N + B - 1) / B;
    for (int q0 = 0, pass = 0; q0 < N; q0 += B, pass++) {
        int used = N - q0 < B ? N - q0 : B;
        float *in = cnv_session_input(v->s);
        for (int i = 0; i < B; i++) {
            float *x = in + (size_t)i * item, *m = masks + (size_t)i * plane;
            if (i >= used) {
                memcpy(x, c->image, item * sizeof *x);
                continue;
            }
            rise_mask(c, q0 + i, grid, m);
            for (int ch = 0; ch < v->c; ch++)
                for (size_t j = 0; j < plane; j++) {
                    size_t at = (size_t)ch * plane + j;
                    x[at] = b[at] + m[j] * (c->image[at] - b[at]);
                }
        }
        if ((st = sal_forward(c, used, NULL, vals)) != CNV_OK ||
            (st = sal_progress(c, pass + 1, passes, vals[0])) != CNV_OK)
            goto done;
        for (int i = 0; i < used; i++) {
            const float *m = masks + (size_t)i * plane;
            for (size_t j = 0; j < plane; j++)
                sum[j] += (double)vals[i] * m[j];
        }
    }
    for (size_t j = 0; j < plane; j++)
        map[j] = (float)(sum[j] / ((double)N * p->mask_prob));
done:
    cnv_free(b);
    cnv_free(masks);
    cnv_free(grid);
    cnv_free(vals);
    cnv_free(sum);
    return st;
}

/* ---------------------------------------------------------------- metrics */

static const char *const g_metric_names[] = {"deletion", "insertion"};

const char *cnv_metric_name(cnv_metric metric)
{
    int k = (int)metric;
    return k >= 0 && k < 2 ? g_metric_names[k] : NULL;
}

int cnv_metric_parse(const char *name)
{
    for (int k = 0; name && k < 2; k++)
        if (!strcmp(name, g_metric_names[k]))
            return k;
    return -1;
}

typedef struct ranked {
    float v;
    size_t at;
} ranked;

/* Larger first, NaN last, ties by position. */
static int by_rank(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    int an = a->v != a->v, bn = b->v != b->v;
    if (an != bn)
        return an - bn;
    if (!an && a->v != b->v)
        return a->v > b->v ? -1 : 1;
    return (a->at > b->at) - (a->at < b->at);
}

cnv_status cnv_saliency_metric(cnv_session *s, const float *image, size_t count, int h, int w, const float *map,
                               size_t map_count, cnv_metric metric, int steps, const cnv_saliency_params *p,
                               float *curve, float *area)
{
    cnv_saliency_params q = p ? *p : cnv_saliency_params_default();
    q.method = CNV_SALIENCY_GRAD; /* only the target's fields matter */
    q.smooth = CNV_SMOOTH_NONE;
    sal_ctx c;
    cnv_status st = sal_begin(&c, s, image, count, h, w, &q, NULL);
    size_t plane = (size_t)h * w, item = c.v.item;
    ranked *order = NULL;
    float *base = NULL, *vals = NULL, *cv = NULL;
    if (st == CNV_OK && (!map || map_count != plane))
        st = cnv_fail(c.v.err, CNV_ERR_INVALID_ARG, "saliency metric: the map holds %zu floats, %dx%d needs %zu",
                      map ? map_count : 0, h, w, plane);
    if (st == CNV_OK && !cnv_metric_name(metric))
        st = cnv_fail(c.v.err, CNV_ERR_INVALID_ARG, "saliency metric: unknown metric %d", (int)metric);
    if (st == CNV_OK && (steps < 1 || steps > 1000000))
        st = cnv_fail(c.v.err, CNV_ERR_INVALID_ARG, "saliency metric: steps is %d (1..1000000)", steps);
    if (st != CNV_OK)
        goto done;
    order = cnv_malloc(plane * sizeof *order);
    base = cnv_malloc(item * sizeof *base);
    cv = cnv_malloc(((size_t)steps + 1) * sizeof *cv);
    if (!order || !base || !cv) {
        st = cnv_fail(c.v.err, CNV_ERR_NOMEM, "saliency metric: out of memory");
        goto done;
    }
    for (size_t i = 0; i < plane; i++)
        order[i] = (ranked){map[i], i};
    qsort(order, plane, sizeof *order, by_rank);
    cnv_baseline kind = q.baseline != CNV_BASELINE_AUTO      ? q.baseline
                        : metric == CNV_METRIC_DELETION ? CNV_BASELINE_BLACK
                                                        : CNV_BASELINE_BLUR;
    if ((st = sal_baseline(&c, kind, base)) != CNV_OK || (st = sal_plan(&c, c.p.batch < steps + 1 ? c.p.batch : steps + 1)) != CNV_OK)
        goto done;
    int B = sal_batch(&c), total = steps + 1;
    if (!(vals = cnv_malloc((size_t)B * sizeof *vals))) {
        st = cnv_fail(c.v.err, CNV_ERR_NOMEM, "saliency metric: out of memory");
        goto done;
    }
    /* deletion: the image with its first n pixels from the baseline;
     * insertion: the baseline with the image's first n pixels */
    const float *from = metric == CNV_METRIC_DELETION ? image : base, *to = metric == CNV_METRIC_DELETION ? base : image;
    int passes = (total + B - 1) / B;
    for (int i0 = 0, pass = 0; i0 < total; i0 += B, pass++) {
        int used = total - i0 < B ? total - i0 : B;
        float *in = cnv_session_input(c.v.s);
        for (int i = 0; i < B; i++) {
            float *x = in + (size_t)i * item;
            memcpy(x, from, item * sizeof *x);
            if (i >= used)
                continue;
            size_t n = (size_t)(((double)(i0 + i) * plane) / steps + 0.5);
            n = n < plane ? n : plane;
            for (size_t j = 0; j < n; j++)
                for (int ch = 0; ch < c.v.c; ch++) {
                    size_t at = (size_t)ch * plane + order[j].at;
                    x[at] = to[at];
                }
        }
        if ((st = sal_forward(&c, used, NULL, vals)) != CNV_OK ||
            (st = sal_progress(&c, pass + 1, passes, vals[0])) != CNV_OK)
            goto done;
        memcpy(cv + i0, vals, (size_t)used * sizeof *vals);
    }
    double auc = 0.0;
    for (int i = 0; i < steps; i++)
        auc += 0.5 * ((double)cv[i] + cv[i + 1]);
    if (area)
        *area = (float)(auc / steps);
    if (curve)
        memcpy(curve, cv, (size_t)total * sizeof *cv);
done:
    sal_end(&c, NULL);
    cnv_free(order);
    cnv_free(base);
    cnv_free(vals);
    cnv_free(cv);
    return st;
}
