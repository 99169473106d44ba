/* Resize (ONNX, opset 10-19) and the deprecated Upsample (opset 7-9) on 4-D
 * NCHW tensors, nearest or bilinear over H and W: a table of source taps
 * per output row and column, gathered in forward and scattered back (added)
 * in backward. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/op.h"

enum { RS_NEAREST, RS_LINEAR };
enum { RC_HALF_PIXEL, RC_ASYMMETRIC, RC_ALIGN_CORNERS, RC_PYTORCH_HALF_PIXEL };
enum { RN_ROUND_PREFER_FLOOR, RN_ROUND_PREFER_CEIL, RN_FLOOR, RN_CEIL };

typedef struct resize_params {
    int mode, coord, nearest;
    int scales_in;  /* input index of scales; -1: the scales attribute */
    int sizes_in;   /* input index of sizes; -1: none (Resize-10, Upsample) */
    int keep_ratio; /* keep_aspect_ratio_policy other than stretch */
    int n_axes;     /* 0: scales/sizes cover every axis */
    int64_t axes[CNV_MAX_DIMS];
    int n_attr_scales; /* Upsample-7 */
    float attr_scales[CNV_MAX_DIMS];
} resize_params;

typedef struct resize_geom {
    int64_t nc, h, w, oh, ow;
    int mode, coord, nearest;
    /* per spatial axis (H, W): the scale the coordinates use and the
     * output length before flooring (in * scale, or the size asked for):
     * ONNX's align_corners divides by it, not by the floored size */
    double scale[2], len[2];
} resize_geom;

_Static_assert(sizeof(resize_geom) <= CNV_GEOM_SIZE, "resize_geom must fit in geom");

/* The source of one output row or column: rows i0 and i1 weighted w0 and
 * w1 (nearest: i0 alone). */
typedef struct rs_tap {
    int64_t i0, i1;
    float w0, w1;
} rs_tap;

/* Plan has no memory to write the taps into (state is allocated after
 * it, zeroed), so the first forward or backward after a plan fills them;
 * they depend on the geometry alone. Rows (oh) come first, then columns. */
typedef struct rs_state {
    int ready;
    rs_tap taps[];
} rs_state;

/* The index of `s` in names[0..n), or -1. */
static int find_name(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* A string attribute that must be one of ok[] (its index in *out); a value
 * ONNX defines but this engine does not do (refused[]) is UNSUPPORTED,
 * anything else malformed. */
static cnv_status get_choice(const cnv_node *n, const char *attr, const char *const *ok, int n_ok,
                             const char *const *refused, int n_refused, int *out, cnv_err *e)
{
    const char *v;
    cnv_status st = cnv_attr_get_string(n, attr, ok[0], &v, e);
    if (st != CNV_OK)
        return st;
    if ((*out = find_name(v, ok, n_ok)) >= 0)
        return CNV_OK;
    if (find_name(v, refused, n_refused) >= 0) {
        char list[128] = "";
        for (int i = 0, at = 0; i < n_ok && at < (int)sizeof list; i++)
            at += snprintf(list + at, sizeof list - (size_t)at, "%s%s", i ? ", " : "", ok[i]);
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "%s '%s' is not supported (only %s)", attr, v, list);
    }
    return cnv_fail(e, CNV_ERR_FORMAT, "unknown %s '%s'", attr, v);
}

static cnv_status get_flag(const cnv_node *n, const char *attr, int64_t *v, cnv_err *e)
{
    cnv_status st = cnv_attr_get_int(n, attr, 0, v, e);
    if (st == CNV_OK && *v != 0 && *v != 1)
        return cnv_fail(e, CNV_ERR_FORMAT, "%s = %lld, must be 0 or 1", attr, (long long)*v);
    return st;
}

static const char *const g_modes[] = {"nearest", "linear"};
static const char *const g_cubic[] = {"cubic"};

/* Resize-10, Upsample: align the output's corner pixel with the input's
 * (x / scale), nearest taking the floor, as Upsample always did. */
static void legacy_geometry(resize_params *p)
{
    p->coord = RC_ASYMMETRIC;
    p->nearest = RN_FLOOR;
    p->sizes_in = -1;
}

static cnv_status resize_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    resize_params *p = params;
    cnv_status st = get_choice(n, "mode", g_modes, 2, g_cubic, 1, &p->mode, e);
    if (st != CNV_OK)
        return st;
    if (opset < 11) {
        if (n->n_in != 2)
            return cnv_fail(e, CNV_ERR_FORMAT, "Resize-10 takes X and scales, got %d inputs", n->n_in);
        legacy_geometry(p);
        p->scales_in = 1;
        return CNV_OK;
    }
    p->scales_in = 2;
    p->sizes_in = 3;
    static const char *const coords[] = {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"};
    static const char *const coords_no[] = {"tf_half_pixel_for_nn", "tf_crop_and_resize",
                                            "half_pixel_symmetric"};
    static const char *const nearest[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    static const char *const ratio[] = {"stretch", "not_larger", "not_smaller"};
    int keep;
    int64_t flag;
    if ((st = get_choice(n, "coordinate_transformation_mode", coords, 4, coords_no, 3, &p->coord, e)) ||
        (st = get_choice(n, "nearest_mode", nearest, 4, NULL, 0, &p->nearest, e)) ||
        (st = get_choice(n, "keep_aspect_ratio_policy", ratio, 3, NULL, 0, &keep, e)))
        return st;
    p->keep_ratio = keep != 0;
    /* exclude_outside drops the taps outside the input and renormalizes:
     * for nearest and linear that is the clamping at the border that the
     * taps do anyway. extrapolation_value and cubic_coeff_a belong to the
     * modes refused above. */
    if ((st = get_flag(n, "exclude_outside", &flag, e)) || (st = get_flag(n, "antialias", &flag, e)))
        return st;
    if (flag)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "antialias = 1 is not supported");
    const int64_t *axes;
    if ((st = cnv_attr_get_ints(n, "axes", &axes, &p->n_axes, e)))
        return st;
    if (p->n_axes > CNV_MAX_DIMS)
        return cnv_fail(e, CNV_ERR_FORMAT, "axes has %d values", p->n_axes);
    for (int i = 0; i < p->n_axes; i++)
        p->axes[i] = axes[i];
    return CNV_OK;
}

static cnv_status upsample_parse(const cnv_node *n, void *params, int64_t opset, cnv_err *e)
{
    resize_params *p = params;
    if (opset < 7)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "Upsample before opset 7 (height_scale, width_scale) is not supported");
    cnv_status st = get_choice(n, "mode", g_modes, 2, NULL, 0, &p->mode, e);
    if (st != CNV_OK)
        return st;
    legacy_geometry(p);
    if (opset >= 9) {
        if (n->n_in != 2)
            return cnv_fail(e, CNV_ERR_FORMAT, "Upsample-9 takes X and scales, got %d inputs", n->n_in);
        p->scales_in = 1;
        return CNV_OK;
    }
    p->scales_in = -1;
    if (n->n_in != 1)
        return cnv_fail(e, CNV_ERR_FORMAT, "Upsample-7 takes X alone, got %d inputs", n->n_in);
    const cnv_attr_def *a = cnv_attr_find(n, "scales");
    if (!a || a->type != CNV_ATTR_FLOATS)
        return cnv_fail(e, CNV_ERR_FORMAT, "Upsample-7 needs a `scales` attribute of floats");
    if (a->n < 0 || a->n > CNV_MAX_DIMS || (a->n && !a->floats))
        return cnv_fail(e, CNV_ERR_FORMAT, "scales has %d values", a->n);
    p->n_attr_scales = a->n;
    for (int i = 0; i < a->n; i++)
        p->attr_scales[i] = a->floats[i];
    return CNV_OK;
}

/* A scales or sizes input: NULL when absent or empty (opset 11 passes an
 * empty scales next to sizes). */
static const cnv_val *optional_in(const cnv_op_ctx *c, int k)
{
    if (k < 0 || k >= c->node->n_in || !c->in[k] || c->in[k]->count == 0)
        return NULL;
    return c->in[k];
}

static cnv_status resize_plan(cnv_op_ctx *c, size_t *state_size, size_t *work_size, cnv_err *e)
{
    (void)work_size;
    const resize_params *p = c->params;
    const cnv_shape *xs = &c->in[0]->shape;
    char sx[96];
    cnv_shape_str(xs, sx, sizeof sx);
    if (xs->ndim != 4)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "only 4-D (NCHW) inputs are supported, X is %s", sx);
    for (int d = 0; d < 4; d++)
        if (xs->dims[d] < 1)
            return cnv_fail(e, CNV_ERR_SHAPE, "X %s has an empty or unknown dimension", sx);

    const cnv_val *sv = optional_in(c, p->scales_in), *zv = optional_in(c, p->sizes_in);
    int n_given = sv ? (int)sv->count : zv ? (int)zv->count : p->n_attr_scales;
    if (p->scales_in >= 0 && !sv && !zv)
        return cnv_fail(e, CNV_ERR_FORMAT, p->sizes_in >= 0 ? "neither scales nor sizes is given"
                                                            : "scales is empty");
    if (sv && zv)
        return cnv_fail(e, CNV_ERR_FORMAT, "scales and sizes are both given; only one may be");
    if (sv && (!sv->is_const || !sv->data))
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "scales must be a float constant (known when planning)");
    if (zv && (!zv->is_const || !zv->i64))
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "sizes must be an int64 constant (known when planning)");
    if (zv && p->keep_ratio)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "keep_aspect_ratio_policy other than stretch is not supported");
    const cnv_val *given = sv ? sv : zv;
    if (given && given->shape.ndim != 1)
        return cnv_fail(e, CNV_ERR_SHAPE, "%s must be 1-D", sv ? "scales" : "sizes");
    int want = p->n_axes ? p->n_axes : 4;
    if (n_given != want)
        return cnv_fail(e, CNV_ERR_SHAPE, "%s has %d values, X %s needs %d", zv ? "sizes" : "scales",
                        n_given, sx, want);

    /* which of N, C, H, W each given value is for */
    int axis_of[4] = {0, 1, 2, 3}, seen[4] = {0, 0, 0, 0};
    for (int i = 0; i < p->n_axes; i++) {
        int64_t a = p->axes[i] < 0 ? p->axes[i] + 4 : p->axes[i];
        if (a < 0 || a >= 4 || seen[a]++)
            return cnv_fail(e, CNV_ERR_FORMAT, "axes[%d] = %lld is out of range or repeated for X %s", i,
                            (long long)p->axes[i], sx);
        axis_of[i] = (int)a;
    }
    double scale[4] = {1, 1, 1, 1}, len[4];
    int64_t out[4];
    for (int d = 0; d < 4; d++) {
        out[d] = xs->dims[d];
        len[d] = (double)xs->dims[d];
    }
    for (int i = 0; i < want; i++) {
        int d = axis_of[i];
        double in = (double)xs->dims[d];
        if (zv) {
            int64_t v = zv->i64[i];
            if (v < 1 || v > CNV_MAX_ELEMS)
                return cnv_fail(e, CNV_ERR_SHAPE, "sizes[%d] = %lld is out of range", i, (long long)v);
            out[d] = v;
            len[d] = (double)v;
            scale[d] = (double)v / in;
        } else {
            double s = sv ? sv->data[i] : p->attr_scales[i];
            if (!(s > 0.0) || !isfinite(s))
                return cnv_fail(e, CNV_ERR_FORMAT, "scales[%d] = %g must be positive", i, s);
            len[d] = in * s;
            if (!(len[d] >= 1.0) || len[d] > (double)CNV_MAX_ELEMS)
                return cnv_fail(e, CNV_ERR_SHAPE, "scales[%d] = %g makes dimension %d of X %s %s", i, s, d,
                                sx, len[d] < 1.0 ? "empty" : "too large");
            out[d] = (int64_t)floor(len[d]);
            scale[d] = s;
        }
    }
    if (scale[0] != 1.0 || scale[1] != 1.0 || out[0] != xs->dims[0] || out[1] != xs->dims[1])
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "only H and W can be resized; N and C of X %s must keep a scale of 1", sx);

    int64_t nc, q;
    if (!cnv_mul_i64(out[0], out[1], &nc) || !cnv_mul_i64(nc, out[2], &q) || !cnv_mul_i64(q, out[3], &q) ||
        q > CNV_MAX_ELEMS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "the output of X %s is too large", sx);
    resize_geom *g = (resize_geom *)c->geom;
    *g = (resize_geom){ .nc = nc, .h = xs->dims[2], .w = xs->dims[3], .oh = out[2], .ow = out[3],
                        .mode = p->mode, .coord = p->coord, .nearest = p->nearest,
                        .scale = {scale[2], scale[3]}, .len = {len[2], len[3]} };
    cnv_shape4(&c->out[0]->shape, out[0], out[1], out[2], out[3]);
    /* out[2] + out[3] <= 2^32, each tap a few words */
    *state_size = sizeof(rs_state) + (size_t)(out[2] + out[3]) * sizeof(rs_tap);
    return CNV_OK;
}

/* Output position o on an axis of `in` samples -> its input coordinate. */
static double source_coord(const resize_geom *g, int axis, int64_t o, int64_t in)
{
    double x = (double)o, s = g->scale[axis], len = g->len[axis];
    switch (g->coord) {
    case RC_ASYMMETRIC:
        return x / s;
    case RC_ALIGN_CORNERS:
        return len == 1.0 ? 0.0 : x * (double)(in - 1) / (len - 1.0);
    case RC_PYTORCH_HALF_PIXEL:
        return len > 1.0 ? (x + 0.5) / s - 0.5 : 0.0;
    default:
        return (x + 0.5) / s - 0.5;
    }
}

static double nearest_of(int mode, double x)
{
    double f = floor(x);
    switch (mode) {
    case RN_FLOOR:
        return f;
    case RN_CEIL:
        return ceil(x);
    case RN_ROUND_PREFER_CEIL:
        return x - f == 0.5 ? f + 1.0 : floor(x + 0.5);
    default:
        return x - f == 0.5 ? f : floor(x + 0.5);
    }
}

static void make_taps(const resize_geom *g, int axis, rs_tap *t, int64_t n_out, int64_t in)
{
    double last = (double)(in - 1);
    for (int64_t o = 0; o < n_out; o++) {
        double x = source_coord(g, axis, o, in);
        if (g->mode == RS_NEAREST)
            x = nearest_of(g->nearest, x);
        /* outside the input, both modes take the border sample */
        x = x < 0.0 ? 0.0 : x > last ? last : x;
        double f = floor(x);
        t[o].i0 = (int64_t)f;
        t[o].i1 = t[o].i0 + (t[o].i0 < in - 1);
        t[o].w1 = (float)(x - f);
        t[o].w0 = 1.0f - t[o].w1;
    }
}

static const rs_tap *taps(cnv_op_ctx *c)
{
    const resize_geom *g = (const resize_geom *)c->geom;
    rs_state *s = c->state;
    if (!s->ready) {
        make_taps(g, 0, s->taps, g->oh, g->h);
        make_taps(g, 1, s->taps + g->oh, g->ow, g->w);
        s->ready = 1;
    }
    return s->taps;
}

typedef struct rs_job {
    const resize_geom *g;
    const rs_tap *th, *tw;
    const float *x;
    float *y;
    const float *dy;
    float *dx;
    int store;
} rs_job;

static void forward_planes(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const rs_job *j = arg;
    const resize_geom *g = j->g;
    for (int64_t p = lo; p < hi; p++) {
        const float *x = j->x + p * g->h * g->w;
        float *y = j->y + p * g->oh * g->ow;
        for (int64_t oh = 0; oh < g->oh; oh++, y += g->ow) {
            const rs_tap *h = &j->th[oh];
            const float *r0 = x + h->i0 * g->w, *r1 = x + h->i1 * g->w;
            if (g->mode == RS_NEAREST) {
                for (int64_t ow = 0; ow < g->ow; ow++)
                    y[ow] = r0[j->tw[ow].i0];
                continue;
            }
            for (int64_t ow = 0; ow < g->ow; ow++) {
                const rs_tap *t = &j->tw[ow];
                y[ow] = h->w0 * (t->w0 * r0[t->i0] + t->w1 * r0[t->i1]) +
                        h->w1 * (t->w0 * r1[t->i0] + t->w1 * r1[t->i1]);
            }
        }
    }
}

/* Each output adds its gradient to the samples it read, by their weights;
 * a plane's samples belong to that plane alone, so threads take planes. */
static void backward_planes(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const rs_job *j = arg;
    const resize_geom *g = j->g;
    for (int64_t p = lo; p < hi; p++) {
        float *dx = j->dx + p * g->h * g->w;
        const float *dy = j->dy + p * g->oh * g->ow;
        if (j->store)
            memset(dx, 0, (size_t)(g->h * g->w) * sizeof *dx);
        for (int64_t oh = 0; oh < g->oh; oh++, dy += g->ow) {
            const rs_tap *h = &j->th[oh];
            float *r0 = dx + h->i0 * g->w, *r1 = dx + h->i1 * g->w;
            if (g->mode == RS_NEAREST) {
                for (int64_t ow = 0; ow < g->ow; ow++)
                    r0[j->tw[ow].i0] += dy[ow];
                continue;
            }
            for (int64_t ow = 0; ow < g->ow; ow++) {
                const rs_tap *t = &j->tw[ow];
                float a = h->w0 * dy[ow], b = h->w1 * dy[ow];
                r0[t->i0] += a * t->w0;
                r0[t->i1] += a * t->w1;
                r1[t->i0] += b * t->w0;
                r1[t->i1] += b * t->w1;
            }
        }
    }
}

static rs_job job_of(cnv_op_ctx *c)
{
    const resize_geom *g = (const resize_geom *)c->geom;
    const rs_tap *t = taps(c);
    return (rs_job){ .g = g, .th = t, .tw = t + g->oh, .x = c->in[0]->data, .y = c->out[0]->data,
                     .dy = c->out[0]->grad, .dx = c->in[0]->grad, .store = cnv_grad_store(c, 0) };
}

// y (N,C,OH,OW) = x (N,C,H,W) sampled at each output's taps
static void resize_forward(cnv_op_ctx *c)
{
    rs_job j = job_of(c);
    cnv_team_run(c->team, j.g->nc, forward_planes, &j);
}

/* dx += the taps' weights times dy. roi, scales and sizes get no gradient:
 * a zero one where the executor asks for it to be written. */
static void resize_backward(cnv_op_ctx *c)
{
    rs_job j = job_of(c);
    if (j.dx)
        cnv_team_run(c->team, j.g->nc, backward_planes, &j);
    for (int k = 1; k < c->node->n_in; k++)
        if (c->in[k] && c->in[k]->grad && cnv_grad_store(c, k))
            memset(c->in[k]->grad, 0, (size_t)c->in[k]->count * sizeof(float));
}

const cnv_op cnv_op_resize = {
    .type = "Resize",
    .min_in = 1, .max_in = 4, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE,
    .int_inputs = 1u << 3, /* sizes */
    .params_size = sizeof(resize_params),
    .parse = resize_parse,
    .plan = resize_plan,
    .forward = resize_forward,
    .backward = resize_backward,
};

const cnv_op cnv_op_upsample = {
    .type = "Upsample",
    .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .flags = CNV_OP_GRAD_STORE,
    .params_size = sizeof(resize_params),
    .parse = upsample_parse,
    .plan = resize_plan,
    .forward = resize_forward,
    .backward = resize_backward,
};
