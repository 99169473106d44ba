/* Gradient ascent on a layer, shared by neurons and dreams (viz.h): the
 * input gradient of each item, with the pre-activation when the layer is
 * dead for it, and the step normalized by the gradient's mean size. */
#include <math.h>
#include <string.h>

#include "viz/viz.h"

static int all_zero(const float *g, size_t n)
{
    for (size_t j = 0; j < n; j++)
        if (g[j] != 0.0f)
            return 0;
    return 1;
}

cnv_status cnv_viz_layer_grads(const cnv_viz *v, int layer, int pre, const float *seed, size_t count, size_t per,
                               int used, float *scratch, cnv_viz_grad_fn fn, void *arg)
{
    cnv_status st = cnv_session_backward(v->s, layer, seed, count);
    if (st != CNV_OK)
        return st;
    float *g = cnv_session_input_grad(v->s);
    if (!g)
        return cnv_fail(v->err, CNV_ERR_STATE, "%s: layer '%s' does not depend on the input", v->what,
                        cnv_model_tensor_name(v->m, layer));
    /* The dead items wait in scratch, with their part of the seed, for a
     * second backward from the pre-activation: the forward values are
     * still in place for it. The live ones are handed over first, as that
     * backward overwrites every item's gradient. */
    int dead = 0;
    if (pre >= 0)
        memset(scratch, 0, count * sizeof *scratch);
    for (int i = 0; i < used; i++) {
        float *gi = g + (size_t)i * v->item;
        if (pre >= 0 && all_zero(gi, v->item)) {
            memcpy(scratch + (size_t)i * per, seed + (size_t)i * per, per * sizeof *scratch);
            dead++;
            continue;
        }
        fn(arg, i, gi);
    }
    if (!dead)
        return CNV_OK;
    if ((st = cnv_session_backward(v->s, pre, scratch, count)) != CNV_OK)
        return st;
    g = cnv_session_input_grad(v->s);
    for (int i = 0; i < used; i++)
        if (!all_zero(scratch + (size_t)i * per, per))
            fn(arg, i, g + (size_t)i * v->item);
    return CNV_OK;
}

void cnv_viz_step(const cnv_viz *v, float *x, const float *g, float lr, float decay)
{
    size_t plane = (size_t)v->h * v->w;
    double sum = 0.0;
    for (size_t j = 0; j < v->item; j++)
        sum += fabs((double)g[j]);
    double mean_abs = sum / (double)v->item;
    int ok = mean_abs > 0.0 && isfinite(mean_abs);
    for (int k = 0; k < v->c; k++) {
        double step = ok ? (double)lr / 255.0 / v->pp.std[k] / mean_abs : 0.0;
        float *xk = x + (size_t)k * plane;
        const float *gk = g + (size_t)k * plane;
        for (size_t j = 0; j < plane; j++)
            xk[j] = (float)(xk[j] * (1.0 - (double)decay) + step * gk[j]);
    }
}
