/* The Lucid recipe's optimization loop (lucid.h, viz.h): parameterized
 * images, a random warp per item and step, the objective's gradient
 * through the warp and the parameterization, Adam. The objective itself
 * (forward and backward seeds) is the caller's. */
#include <math.h>
#include <string.h>

#include "viz/lucid.h"

const char *cnv_recipe_name(cnv_recipe r)
{
    switch (r) {
    case CNV_RECIPE_LUCID:
        return "lucid";
    case CNV_RECIPE_CS231N:
        return "cs231n";
    }
    return NULL;
}

int cnv_recipe_parse(const char *name)
{
    for (int r = CNV_RECIPE_LUCID; name && r <= CNV_RECIPE_CS231N; r++)
        if (strcmp(name, cnv_recipe_name((cnv_recipe)r)) == 0)
            return r;
    return -1;
}

cnv_lucid_params cnv_lucid_params_default(void)
{
    return (cnv_lucid_params){
        .iters = 512,
        .lr = 0.05f,
        .spectral = 1,
        .decorrelate = 1,
        .sigmoid = 1,
        .init_std = 0.01f,
        .shift = 8.0f,
        .scale_min = 0.9f,
        .scale_max = 1.1f,
        .rotate = 10.0f,
        .blur = 1.0f,
    };
}

cnv_status cnv_lucid_check(const cnv_lucid_params *p, const char *what, cnv_err *e)
{
    if (p->iters < 0 || !(p->lr > 0.0f) || !isfinite(p->lr) || !(p->init_std >= 0.0f) ||
        !isfinite(p->init_std))
        return cnv_fail(e, CNV_ERR_INVALID_ARG, "%s: lucid iters %d (>= 0), lr %g (> 0), init_std %g (>= 0)",
                        what, p->iters, (double)p->lr, (double)p->init_std);
    if (!(p->shift >= 0.0f && p->shift <= 1e4f) || !(p->rotate >= 0.0f && p->rotate <= 360.0f) ||
        !(p->blur >= 0.0f && p->blur <= 100.0f) ||
        !(p->scale_min > 0.0f && p->scale_min <= p->scale_max && p->scale_max <= 100.0f))
        return cnv_fail(e, CNV_ERR_INVALID_ARG,
                        "%s: lucid shift %g (0..1e4 pixels), rotate %g (0..360 degrees), blur %g "
                        "(0..100 pixels), scale %g..%g (0 < min <= max <= 100)",
                        what, (double)p->shift, (double)p->rotate, (double)p->blur, (double)p->scale_min,
                        (double)p->scale_max);
    return CNV_OK;
}

void cnv_adam_step(cnv_adam *a, float *x, const float *g, float *m, float *v, size_t n)
{
    a->t++;
    double c1 = 1.0 - pow(a->b1, a->t), c2 = 1.0 - pow(a->b2, a->t);
    float step = (float)(a->lr / c1), rc2 = (float)(1.0 / c2);
    for (size_t i = 0; i < n; i++) {
        m[i] = a->b1 * m[i] + (1.0f - a->b1) * g[i];
        v[i] = a->b2 * v[i] + (1.0f - a->b2) * g[i] * g[i];
        x[i] += step * m[i] / (sqrtf(v[i] * rc2) + a->eps);
    }
}

/* images (n items, normalized) = the parameterization's pixels */
static void to_normalized(const cnv_viz *v, const float *pix, int n, float *images)
{
    size_t plane = (size_t)v->h * v->w;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < v->c; k++) {
            const float *p = pix + ((size_t)i * v->c + k) * plane;
            float *x = images + ((size_t)i * v->c + k) * plane, m = v->pp.mean[k], s = v->pp.std[k];
            for (size_t j = 0; j < plane; j++)
                x[j] = (p[j] - m) / s;
        }
}

cnv_status cnv_lucid_run(const cnv_lucid_job *job, float *images, float *start)
{
    const cnv_viz *v = job->v;
    const cnv_lucid_params *lp = job->lucid;
    cnv_err *err = v->err;
    int n = job->n, B = job->batch, c = v->c, h = v->h, w = v->w;
    size_t plane = (size_t)h * w, item = v->item;
    cnv_param par;
    cnv_status st = cnv_param_init(&par, lp->spectral, lp->decorrelate, lp->sigmoid, n, c, h, w, err);
    if (st != CNV_OK)
        return st;
    /* sizes are given at 224 x 224 */
    float size = (float)(h < w ? h : w) / 224.0f, blur_max = lp->blur * size;
    size_t nblur = cnv_blur_scratch(h, w, blur_max);
    float *theta = cnv_calloc(par.count * 3, sizeof(float));
    float *scratch = nblur ? cnv_malloc(nblur * sizeof(float)) : NULL;
    cnv_rng *rng = cnv_malloc((size_t)n * sizeof *rng);
    cnv_warp *warp = cnv_malloc((size_t)n * sizeof *warp);
    float *sigma = cnv_malloc((size_t)n * sizeof *sigma);
    if (!theta || !scratch || !rng || !warp || !sigma) {
        st = cnv_fail(err, CNV_ERR_NOMEM, "%s: out of memory for %d images of %dx%dx%d", v->what, n, c, h,
                      w);
        goto done;
    }
    float *m = theta + par.count, *vv = m + par.count, *dpix = par.dpix;
    float *in = cnv_session_input(v->s), fill[CNV_MAX_CHANNELS];
    for (int k = 0; k < c; k++)
        fill[k] = 0.5f; /* gray, in pixels; normalized with the image */
    for (int i = 0; i < n; i++) {
        cnv_rng_seed2(&rng[i], job->seed, job->streams[i]);
        cnv_param_random(&par, theta, i, lp->init_std, &rng[i]);
    }
    cnv_adam adam = { .lr = lp->lr, .b1 = 0.9f, .b2 = 0.999f, .eps = 1e-8f };

    for (int t = 0; t <= lp->iters; t++) {
        cnv_param_image(&par, theta);
        if (t == 0 && start)
            to_normalized(v, par.pix, n, start);
        if (job->frame && job->frame_every > 0 && (t % job->frame_every == 0 || t == lp->iters)) {
            to_normalized(v, par.pix, n, images);
            if (job->frame(job->user, t, images, n, c, h, w)) {
                st = cnv_fail(err, CNV_ERR_CANCELLED, "%s: cancelled at step %d of %d", v->what, t,
                              lp->iters);
                goto done;
            }
        }
        if (t == lp->iters)
            break;
        for (int i = 0; i < n; i++) {
            warp[i] = cnv_warp_random(&rng[i], lp->scale_min, lp->scale_max, lp->rotate, lp->shift * size);
            sigma[i] = blur_max * cnv_rng_uniform(&rng[i]);
        }
        memset(dpix, 0, par.pixels * sizeof(float));
        double obj = 0.0, prob = 0.0;
        for (int first = 0; first < n; first += B) {
            int used = n - first < B ? n - first : B;
            memset(in, 0, (size_t)B * item * sizeof(float));
            for (int i = 0; i < used; i++) {
                cnv_warp_forward(&warp[first + i], par.pix + (first + i) * item, c, h, w, fill,
                                 in + i * item);
                cnv_blur_chw(in + i * item, c, h, w, sigma[first + i], scratch);
            }
            to_normalized(v, in, used, in);
            float *grad;
            if ((st = job->grad(job->arg, first, used, &grad, &obj, &prob)) != CNV_OK)
                goto done;
            /* d/dpixel = d/dx / std: x = (pixel - mean) / std */
            for (int i = 0; i < used; i++) {
                float *gi = grad + i * item;
                for (int k = 0; k < c; k++)
                    for (size_t j = 0; j < plane; j++)
                        gi[k * plane + j] /= v->pp.std[k];
                cnv_blur_chw_adjoint(gi, c, h, w, sigma[first + i], scratch);
                cnv_warp_backward(&warp[first + i], gi, c, h, w, dpix + (first + i) * item);
            }
        }
        cnv_adam_step(&adam, theta, cnv_param_backward(&par, dpix), m, vv, par.count);
        int total = job->progress_total > 0 ? job->progress_total : lp->iters;
        if (job->progress &&
            job->progress(job->user, job->progress_done + t + 1, total, (float)(obj / n), (float)(prob / n))) {
            st = cnv_fail(err, CNV_ERR_CANCELLED, "%s: cancelled at step %d of %d", v->what, t + 1, lp->iters);
            goto done;
        }
    }
    to_normalized(v, par.pix, n, images);
    st = CNV_OK;
done:
    cnv_param_free(&par);
    cnv_free(theta);
    cnv_free(scratch);
    cnv_free(rng);
    cnv_free(warp);
    cnv_free(sigma);
    return st;
}
