/* The gradient methods: an attribution a (c x h x w) as a sum over the
 * points of a path of weight * gradient, a = sum_i w_i * g(x_i). The plain
 * gradient is one point (w = 1), gradient x input one point (w = x),
 * integrated gradients the midpoints of the straight line from the
 * baseline (w = (x - b) / steps), Blur IG the midpoints of a blur scale
 * (w = the path's step). Points are batched whatever attribution they
 * belong to; noise smoothing makes one attribution per noisy copy and
 * combines them. Guided IG chooses its path as it goes, one gradient at a
 * time, and has its own loop. */
#include <math.h>
#include <string.h>

#include "viz/saliency.h"

#define GIG_MAX_DIST 0.02 /* Guided IG: how far behind the line an input may lag */
#define GIG_EPS 1e-9      /* Guided IG: "the L1 target is reached" */

/* What one call's points need. */
typedef struct path {
    sal_ctx *c;
    cnv_saliency_method method;
    int n;            /* points per attribution */
    float max_sigma;  /* BLUR_IG */
    const float *b;   /* IG, GUIDED_IG: the baseline */
    float *scratch;   /* BLUR_IG: cnv_blur_chw's */
    float *last;      /* BLUR_IG: the last point's far end, the next one's
                         near end (points come in order) */
    int64_t last_at;  /* which point `last` belongs to, or -1 */
} path;

static void blurred(const path *pa, const float *x0, float sigma, float *out)
{
    const cnv_viz *v = &pa->c->v;
    memcpy(out, x0, v->item * sizeof *out);
    cnv_blur_chw(out, v->c, v->h, v->w, sigma, pa->scratch);
}

/* Point k of the path of image x0 (point q of the call): its input x and
 * its weight w. */
static void path_point(path *pa, const float *x0, int k, int64_t q, float *x, float *w)
{
    size_t item = pa->c->v.item;
    switch (pa->method) {
    case CNV_SALIENCY_IG: {
        double alpha = (k + 0.5) / pa->n;
        for (size_t j = 0; j < item; j++) {
            float d = x0[j] - pa->b[j];
            x[j] = (float)(pa->b[j] + alpha * d);
            w[j] = (float)((double)d / pa->n);
        }
        break;
    }
    case CNV_SALIENCY_BLUR_IG: {
        float s0 = (float)((double)k / pa->n * pa->max_sigma), s1 = (float)((double)(k + 1) / pa->n * pa->max_sigma);
        blurred(pa, x0, 0.5f * (s0 + s1), x);
        if (k > 0 && pa->last_at == q - 1)
            memcpy(w, pa->last, item * sizeof *w);
        else
            blurred(pa, x0, s0, w);
        blurred(pa, x0, s1, pa->last);
        pa->last_at = q;
        for (size_t j = 0; j < item; j++)
            w[j] -= pa->last[j];
        break;
    }
    case CNV_SALIENCY_GRADXINPUT:
        memcpy(x, x0, item * sizeof *x);
        memcpy(w, x0, item * sizeof *w);
        break;
    default:
        memcpy(x, x0, item * sizeof *x);
        for (size_t j = 0; j < item; j++)
            w[j] = 1.0f;
    }
}

/* Noisy copy j of the image: x + N(0, sigma^2) from the stream (seed, j),
 * SmoothGrad's noise whatever the batch. */
static void noisy_copy(const sal_ctx *c, float sigma, int64_t j, float *out)
{
    memcpy(out, c->image, c->v.item * sizeof *out);
    if (sigma == 0.0f)
        return;
    cnv_rng r;
    cnv_rng_seed2(&r, c->p.seed, (uint64_t)j);
    for (size_t i = 0; i < c->v.item; i++)
        out[i] += sigma * cnv_rng_normal(&r);
}

/* sigma = noise * (max - min of the image's finite values). */
static float noise_sigma(const sal_ctx *c)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < c->v.item; i++)
        if (isfinite(c->image[i])) {
            lo = c->image[i] < lo ? c->image[i] : lo;
            hi = c->image[i] > hi ? c->image[i] : hi;
        }
    return lo < hi ? (float)(c->p.noise * (hi - lo)) : 0.0f;
}

/* The smoothing's running sums of a and a^2 over noisy copies. */
typedef struct smoother {
    cnv_smooth kind;
    int64_t count;
    double *sum, *sum2;
} smoother;

static void smoother_add(smoother *sm, const double *a, size_t n)
{
    sm->count++;
    for (size_t i = 0; i < n; i++)
        sm->sum[i] += a[i];
    if (sm->sum2)
        for (size_t i = 0; i < n; i++)
            sm->sum2[i] += a[i] * a[i];
}

static void smoother_result(const smoother *sm, size_t n, float *attr)
{
    double inv = 1.0 / (double)sm->count;
    for (size_t i = 0; i < n; i++) {
        double mean = sm->sum[i] * inv;
        if (sm->kind == CNV_SMOOTH_SQUARE) {
            attr[i] = (float)(sm->sum2[i] * inv);
        } else if (sm->kind == CNV_SMOOTH_VAR) {
            double var = sm->sum2[i] * inv - mean * mean;
            attr[i] = (float)(var > 0.0 || var != var ? var : 0.0);
        } else {
            attr[i] = (float)mean;
        }
    }
}

/* The target at one image (batch item 0 of the planned session). */
static cnv_status value_at(sal_ctx *c, const float *x, float *val)
{
    memcpy(cnv_session_input(c->v.s), x, c->v.item * sizeof *x);
    return sal_forward(c, 1, val, NULL);
}

/* ----------------------------------------------------------- Guided IG */

/* The k-th smallest of n floats (k < n), reordering a. */
static float select_kth(float *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return a[k];
}

/* Guided IG (Kapishnikov et al. 2021, as PAIR's saliency library runs it)
 * for image x0 from baseline b, added to acc. Per step: the gradient at x;
 * inputs lagging more than GIG_MAX_DIST behind the line's point are moved
 * up to it; then, until the step's L1 budget is spent, the fraction of the
 * remaining inputs with the smallest |gradient| move toward the point
 * GIG_MAX_DIST ahead (all the way, or by the fraction gamma that spends
 * the budget exactly). Each move adds its length times the gradient. */
typedef struct gig_buf {
    double *x;       /* the path's position */
    float *grad;     /* the step's gradient, +inf where an input is done */
    float *sel;      /* |grad| for the quantile */
    float *seed;
} gig_buf;

static cnv_status guided_ig(sal_ctx *c, const float *x0, const float *b, gig_buf *gb, double *acc)
{
    const cnv_viz *v = &c->v;
    size_t n = v->item;
    int steps = c->p.steps;
    double l1_total = 0.0;
    for (size_t i = 0; i < n; i++) {
        gb->x[i] = b[i];
        l1_total += fabs((double)x0[i] - b[i]);
    }
    if (l1_total == 0.0)
        return CNV_OK;
    float *in = cnv_session_input(v->s);
    size_t kth = (size_t)floor(c->p.guided_fraction * (double)(n - 1)); /* numpy's quantile 'lower' */
    for (int step = 0; step < steps; step++) {
        for (size_t i = 0; i < n; i++)
            in[i] = (float)gb->x[i];
        float val;
        const float *g;
        cnv_status st = sal_forward(c, 1, &val, NULL);
        if (st == CNV_OK)
            st = sal_backward(c, 1, 1, gb->seed, &g);
        if (st == CNV_OK)
            st = sal_progress(c, step + 1, steps, val);
        if (st != CNV_OK)
            return st;
        memcpy(gb->grad, g, n * sizeof *g);
        double alpha = (step + 1.0) / steps;
        double a_min = alpha - GIG_MAX_DIST > 0.0 ? alpha - GIG_MAX_DIST : 0.0;
        double a_max = alpha + GIG_MAX_DIST < 1.0 ? alpha + GIG_MAX_DIST : 1.0;
        double l1_target = l1_total * (1.0 - (step + 1.0) / steps);
        for (;;) {
            /* inputs behind the line catch up */
            double l1_cur = 0.0;
            for (size_t i = 0; i < n; i++) {
                double d = (double)x0[i] - b[i];
                if (d != 0.0 && (gb->x[i] - b[i]) / d < a_min) {
                    double to = b[i] + d * a_min;
                    acc[i] += (to - gb->x[i]) * g[i];
                    gb->x[i] = to;
                }
                l1_cur += fabs(gb->x[i] - x0[i]);
            }
            if (fabs(l1_target - l1_cur) <= GIG_EPS + GIG_EPS * fabs(l1_cur))
                break;
            /* inputs at the point ahead are done for this step */
            for (size_t i = 0; i < n; i++) {
                double xmax = b[i] + ((double)x0[i] - b[i]) * a_max;
                if (gb->x[i] == xmax)
                    gb->grad[i] = INFINITY;
                gb->sel[i] = fabsf(gb->grad[i]);
            }
            float thr = select_kth(gb->sel, n, kth);
            double l1_s = 0.0;
            for (size_t i = 0; i < n; i++)
                if (fabsf(gb->grad[i]) <= thr && gb->grad[i] != INFINITY)
                    l1_s += fabs(gb->x[i] - (b[i] + ((double)x0[i] - b[i]) * a_max));
            double gamma = l1_s > 0.0 ? (l1_cur - l1_target) / l1_s : INFINITY;
            for (size_t i = 0; i < n; i++) {
                if (!(fabsf(gb->grad[i]) <= thr && gb->grad[i] != INFINITY))
                    continue;
                double xmax = b[i] + ((double)x0[i] - b[i]) * a_max;
                double to = gamma > 1.0 ? xmax : gb->x[i] + (xmax - gb->x[i]) * gamma;
                acc[i] += (to - gb->x[i]) * g[i];
                gb->x[i] = to;
            }
            if (!(gamma > 1.0))
                break;
        }
    }
    return CNV_OK;
}

static cnv_status guided_ig_all(sal_ctx *c, const float *b, smoother *sm, float sigma, float *noisy, double *acc)
{
    size_t n = c->v.item;
    int samples = sm->kind ? c->p.samples : 1;
    gig_buf gb = {cnv_malloc(n * sizeof(double)), cnv_malloc(n * sizeof(float)), cnv_malloc(n * sizeof(float)),
                  cnv_malloc(c->tg.per * sizeof(float))};
    cnv_status st = CNV_OK;
    if (!gb.x || !gb.grad || !gb.sel || !gb.seed)
        st = cnv_fail(c->v.err, CNV_ERR_NOMEM, "saliency: out of memory for Guided IG");
    for (int j = 0; j < samples && st == CNV_OK; j++) {
        if (sm->kind)
            noisy_copy(c, sigma, j, noisy);
        memset(acc, 0, n * sizeof *acc);
        if ((st = guided_ig(c, sm->kind ? noisy : c->image, b, &gb, acc)) == CNV_OK)
            smoother_add(sm, acc, n);
    }
    cnv_free(gb.x);
    cnv_free(gb.grad);
    cnv_free(gb.sel);
    cnv_free(gb.seed);
    return st;
}

/* ------------------------------------------------------------ the loop */

cnv_status sal_gradient_attribution(sal_ctx *c, float *attr)
{
    cnv_viz *v = &c->v;
    const cnv_saliency_params *p = &c->p;
    size_t item = v->item;
    cnv_smooth kind = p->method == CNV_SALIENCY_SMOOTHGRAD && p->smooth == CNV_SMOOTH_NONE ? CNV_SMOOTH_MEAN : p->smooth;
    path pa = {c, p->method, 1, 0.0f, NULL, NULL, NULL, -1};
    if (p->method == CNV_SALIENCY_IG || p->method == CNV_SALIENCY_BLUR_IG)
        pa.n = p->steps;
    int larger = v->h > v->w ? v->h : v->w;
    pa.max_sigma = p->blur_max_sigma > 0.0f ? p->blur_max_sigma : 50.0f / 224.0f * (float)larger;
    int samples = kind ? p->samples : 1;
    int64_t total = (int64_t)samples * pa.n;
    int want = total < p->batch ? (int)total : p->batch;
    if (p->method == CNV_SALIENCY_GUIDED_IG)
        want = 1;
    cnv_status st = sal_plan(c, want);
    if (st != CNV_OK)
        return st;
    int B = sal_batch(c);
    float sigma = kind ? noise_sigma(c) : 0.0f;

    smoother sm = {kind, 0, cnv_calloc(item, sizeof(double)), NULL};
    double *acc = cnv_calloc(item, sizeof *acc);
    float *wts = cnv_malloc((size_t)B * item * sizeof *wts), *seed = cnv_malloc((size_t)B * c->tg.per * sizeof *seed);
    float *noisy = kind ? cnv_malloc(item * sizeof *noisy) : NULL, *vals = cnv_malloc((size_t)B * sizeof *vals);
    float *b = NULL;
    if (kind == CNV_SMOOTH_SQUARE || kind == CNV_SMOOTH_VAR)
        sm.sum2 = cnv_calloc(item, sizeof(double));
    int needs_b = p->method == CNV_SALIENCY_IG || p->method == CNV_SALIENCY_GUIDED_IG;
    if (needs_b || p->method == CNV_SALIENCY_BLUR_IG)
        b = cnv_malloc(item * sizeof *b);
    if (p->method == CNV_SALIENCY_BLUR_IG) {
        pa.last = cnv_malloc(item * sizeof *pa.last);
        pa.scratch = cnv_malloc(cnv_blur_scratch(v->h, v->w, pa.max_sigma) * sizeof *pa.scratch);
    }
    if (!sm.sum || !acc || !wts || !seed || !vals || (kind && !noisy) ||
        ((kind == CNV_SMOOTH_SQUARE || kind == CNV_SMOOTH_VAR) && !sm.sum2) ||
        ((needs_b || p->method == CNV_SALIENCY_BLUR_IG) && !b) ||
        (p->method == CNV_SALIENCY_BLUR_IG && (!pa.last || !pa.scratch))) {
        st = cnv_fail(v->err, CNV_ERR_NOMEM, "saliency: out of memory for %s", cnv_saliency_method_name(p->method));
        goto done;
    }
    if (needs_b) {
        cnv_baseline kind_b = p->baseline == CNV_BASELINE_AUTO ? CNV_BASELINE_BLACK : p->baseline;
        if ((st = sal_baseline(c, kind_b, b)) != CNV_OK)
            goto done;
        pa.b = b;
    }
    cnv_relu_mode mode = p->method == CNV_SALIENCY_GUIDED    ? CNV_RELU_GUIDED
                         : p->method == CNV_SALIENCY_DECONVNET ? CNV_RELU_DECONV
                                                               : CNV_RELU_GRAD;
    if ((st = cnv_session_set_relu_mode(v->s, mode)) != CNV_OK)
        goto done;

    if (p->method == CNV_SALIENCY_GUIDED_IG) {
        st = guided_ig_all(c, b, &sm, sigma, noisy, acc);
    } else {
        int passes = (int)((total + B - 1) / B), pass = 0;
        int64_t cur = -1;
        for (int64_t start = 0; start < total; start += B, pass++) {
            int used = total - start < B ? (int)(total - start) : B;
            float *in = cnv_session_input(v->s);
            for (int i = 0; i < B; i++) {
                if (i >= used) { /* spare items see the image; their seed is 0 */
                    memcpy(in + (size_t)i * item, c->image, item * sizeof *in);
                    continue;
                }
                int64_t q = start + i, j = q / pa.n;
                if (kind && j != cur)
                    noisy_copy(c, sigma, j, noisy);
                cur = j;
                path_point(&pa, kind ? noisy : c->image, (int)(q % pa.n), q, in + (size_t)i * item,
                           wts + (size_t)i * item);
            }
            const float *g;
            if ((st = sal_forward(c, used, vals, NULL)) != CNV_OK || (st = sal_backward(c, B, used, seed, &g)) != CNV_OK)
                goto done;
            double mean = 0.0;
            for (int i = 0; i < used; i++) {
                int64_t q = start + i;
                const float *gi = g + (size_t)i * item, *wi = wts + (size_t)i * item;
                for (size_t j = 0; j < item; j++)
                    acc[j] += (double)wi[j] * gi[j];
                if (q % pa.n == pa.n - 1) {
                    smoother_add(&sm, acc, item);
                    memset(acc, 0, item * sizeof *acc);
                }
                mean += vals[i];
            }
            if ((st = sal_progress(c, pass + 1, passes, (float)(mean / used))) != CNV_OK)
                goto done;
        }
    }
    if (st != CNV_OK)
        goto done;
    smoother_result(&sm, item, attr);
    /* where the path starts, for completeness checks */
    cnv_session_set_relu_mode(v->s, CNV_RELU_GRAD);
    if (needs_b) {
        st = value_at(c, b, &c->baseline_score);
    } else if (p->method == CNV_SALIENCY_BLUR_IG) {
        blurred(&pa, c->image, pa.max_sigma, b);
        st = value_at(c, b, &c->baseline_score);
    }
done:
    cnv_free(sm.sum);
    cnv_free(sm.sum2);
    cnv_free(acc);
    cnv_free(wts);
    cnv_free(seed);
    cnv_free(noisy);
    cnv_free(vals);
    cnv_free(b);
    cnv_free(pa.last);
    cnv_free(pa.scratch);
    return st;
}
