/* Feature visualization with composed objectives (cnv_render): weighted
 * terms over any tensors of the graph (class, channel, neuron, layer L2,
 * direction, diversity across the batch), ascended by the Lucid recipe
 * (lucid.c). Each distinct tensor gets one seed, the sum of its terms'
 * gradients, and one backward pass. */
#include <math.h>
#include <string.h>

#include "viz/lucid.h"

static const char *const kind_names[] = { "class", "channel", "neuron", "l2", "direction", "diversity" };
enum { N_KINDS = sizeof kind_names / sizeof kind_names[0] };

const char *cnv_objective_name(cnv_objective_kind kind)
{
    return (int)kind >= 0 && (int)kind < N_KINDS ? kind_names[kind] : NULL;
}

int cnv_objective_parse(const char *name)
{
    for (int k = 0; name && k < N_KINDS; k++)
        if (strcmp(name, kind_names[k]) == 0)
            return k;
    return -1;
}

cnv_objective cnv_objective_default(cnv_objective_kind kind)
{
    return (cnv_objective){ .kind = kind, .y = -1, .x = -1, .weight = 1.0f, .weight_last = 1.0f, .item = -1 };
}

cnv_render_params cnv_render_params_default(void)
{
    return (cnv_render_params){ .lucid = cnv_lucid_params_default(), .frame_every = 32 };
}

/* A tensor some terms are on: its shape per item and its seed. */
typedef struct target {
    int t, pre;       /* the tensor; its pre-activation for dead items, or -1 */
    int C;            /* channels (the second dim) */
    size_t P, per;    /* positions per channel; C * P */
    float *seed;      /* batch * per */
} target;

typedef struct term {
    const cnv_objective *o;
    target *tg;
    size_t unit;      /* NEURON: the position's offset in a channel */
} term;

typedef struct render {
    const cnv_viz *v;
    int n, batch;
    int first;        /* the pass's first item */
    term *terms;
    int n_terms;
    target *tg;
    int n_tg;
    float *scratch;   /* batch * the largest per: cnv_viz_layer_grads' */
    float *vals;      /* batch: each item's objective */
    float *gram;      /* diversity: batch Gram matrices and one gradient */
    float *prob;      /* a probability term's softmax (the largest per) */
    size_t gram_cap;  /* floats */
    float *grad;      /* a pass's input gradients (batch images) */
} render;

/* The weight of term o for item i of n. */
static float weight_of(const cnv_objective *o, int i, int n)
{
    if (o->item >= 0 && o->item != i)
        return 0.0f;
    if (n < 2)
        return o->weight;
    return o->weight + (o->weight_last - o->weight) * (float)i / (float)(n - 1);
}

/* ------------------------------------------------------------ diversity */

/* G (C x C) = A A^T / P for one item's activations A (C x P). */
static void gram(const float *A, int C, size_t P, float *G)
{
    for (int a = 0; a < C; a++)
        for (int b = a; b < C; b++) {
            const float *ra = A + (size_t)a * P, *rb = A + (size_t)b * P;
            float s = 0.0f;
            for (size_t p = 0; p < P; p++)
                s += ra[p] * rb[p];
            G[(size_t)a * C + b] = G[(size_t)b * C + a] = s / (float)P;
        }
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t j = 0; j < n; j++)
        s += (double)a[j] * b[j];
    return s;
}

void cnv_diversity(const float *A, int n, int C, size_t P, const float *w, float *val, float *dA, float *G)
{
    size_t cc = (size_t)C * C, per = (size_t)C * P;
    float *S = G + (size_t)n * cc;
    double norm[CNV_MAX_BATCH_DIVERSITY];
    for (int i = 0; i < n; i++) {
        gram(A + (size_t)i * per, C, P, G + (size_t)i * cc);
        norm[i] = sqrt(dot(G + (size_t)i * cc, G + (size_t)i * cc, cc));
        if (norm[i] > 0.0)
            for (size_t k = 0; k < cc; k++)
                G[(size_t)i * cc + k] = (float)(G[(size_t)i * cc + k] / norm[i]);
    }
    for (int i = 0; i < n; i++) {
        val[i] = 0.0f;
        if (n < 2 || !(norm[i] > 0.0))
            continue;
        const float *ui = G + (size_t)i * cc;
        double v = 0.0;
        memset(S, 0, cc * sizeof *S);
        for (int j = 0; j < n; j++) {
            if (j == i || !(norm[j] > 0.0))
                continue;
            const float *uj = G + (size_t)j * cc;
            v += dot(ui, uj, cc);
            float wij = -(w[i] + w[j]) / (float)(n - 1);
            for (size_t k = 0; k < cc; k++)
                S[k] += wij * uj[k];
        }
        val[i] = (float)(-v / (n - 1));
        /* through u = G / |G| */
        float proj = (float)dot(ui, S, cc);
        for (size_t k = 0; k < cc; k++)
            S[k] = (float)((S[k] - proj * ui[k]) / norm[i]);
        /* through G = A A^T / P: dA_i += 2 S A_i / P */
        const float *Ai = A + (size_t)i * per;
        float *di = dA + (size_t)i * per;
        for (int a = 0; a < C; a++)
            for (int b = 0; b < C; b++) {
                float f = 2.0f * S[(size_t)a * C + b] / (float)P;
                const float *rb = Ai + (size_t)b * P;
                float *ra = di + (size_t)a * P;
                for (size_t p = 0; p < P; p++)
                    ra[p] += f * rb[p];
            }
    }
}

/* --------------------------------------------------------- one term */

/* Adds term tm's value for the used items to vals and its gradient,
 * weighted, to its target's seed. A: the target's activations. */
static void term_pass(render *r, const term *tm, int used, const float *A)
{
    const cnv_objective *o = tm->o;
    const target *tg = tm->tg;
    size_t P = tg->P, per = tg->per;
    if (o->kind == CNV_OBJ_DIVERSITY) { /* the whole job is one batch: first is 0 */
        float val[CNV_MAX_BATCH_DIVERSITY], w[CNV_MAX_BATCH_DIVERSITY] = {0};
        for (int i = 0; i < used; i++)
            w[i] = weight_of(o, i, r->n);
        cnv_diversity(A, used, tg->C, P, w, val, tg->seed, r->gram);
        for (int i = 0; i < used; i++)
            r->vals[i] += w[i] * val[i];
        return;
    }
    for (int i = 0; i < used; i++) {
        float w = weight_of(o, r->first + i, r->n);
        if (w == 0.0f)
            continue;
        const float *a = A + (size_t)i * per;
        float *s = tg->seed + (size_t)i * per;
        double v = 0.0;
        switch (o->kind) {
        case CNV_OBJ_CLASS:
            if (o->probability) {
                /* p_c = softmax(a)_c; dp_c/da_k = p_c (1[k == c] - p_k) */
                cnv_softmax(a, (int)per, r->prob);
                float pc = r->prob[o->index];
                v = pc;
                for (size_t k = 0; k < per; k++)
                    s[k] += w * pc * (((int)k == o->index ? 1.0f : 0.0f) - r->prob[k]);
            } else {
                v = a[o->index];
                s[o->index] += w;
            }
            break;
        case CNV_OBJ_CHANNEL:
            for (size_t p = 0; p < P; p++) {
                v += a[(size_t)o->index * P + p];
                s[(size_t)o->index * P + p] += w / (float)P;
            }
            v /= (double)P;
            break;
        case CNV_OBJ_NEURON:
            v = a[(size_t)o->index * P + tm->unit];
            s[(size_t)o->index * P + tm->unit] += w;
            break;
        case CNV_OBJ_LAYER_L2:
            for (size_t j = 0; j < per; j++) {
                v += 0.5 * (double)a[j] * a[j];
                s[j] += w * a[j] / (float)per;
            }
            v /= (double)per;
            break;
        case CNV_OBJ_DIRECTION:
            for (int c = 0; c < tg->C; c++) {
                float d = o->direction[c];
                for (size_t p = 0; p < P; p++) {
                    v += (double)d * a[(size_t)c * P + p];
                    s[(size_t)c * P + p] += w * d / (float)P;
                }
            }
            v /= (double)P;
            break;
        case CNV_OBJ_DIVERSITY:
            break;
        }
        r->vals[i] += w * (float)v;
    }
}

/* Forward, every term's value for items first .. first + used - 1 into
 * r->vals and its gradient into its target's seed. */
static cnv_status evaluate(render *r, int first, int used)
{
    r->first = first;
    cnv_status st = r->n_tg == 1 ? cnv_session_forward_to(r->v->s, r->tg[0].t) : cnv_session_forward(r->v->s);
    if (st != CNV_OK)
        return st;
    memset(r->vals, 0, (size_t)r->batch * sizeof *r->vals);
    for (int k = 0; k < r->n_tg; k++)
        memset(r->tg[k].seed, 0, (size_t)r->batch * r->tg[k].per * sizeof(float));
    for (int k = 0; k < r->n_terms; k++) {
        float *A;
        if ((st = cnv_session_tensor(r->v->s, r->terms[k].tg->t, &A, NULL)) != CNV_OK)
            return st;
        term_pass(r, &r->terms[k], used, A);
    }
    for (int i = 0; i < used; i++)
        if (!isfinite(r->vals[i]))
            return cnv_fail(r->v->err, CNV_ERR_FORMAT,
                            "render: the objective of item %d is %g: not finite (the model's weights "
                            "overflow, or make NaN, on this image)",
                            first + i, (double)r->vals[i]);
    return CNV_OK;
}

static void add_grad(void *arg, int i, float *g)
{
    const render *r = arg;
    float *dst = r->grad + (size_t)i * r->v->item;
    for (size_t j = 0; j < r->v->item; j++)
        dst[j] += g[j];
}

/* cnv_lucid_grad_fn */
static cnv_status render_grad(void *arg, int first, int used, float **grad, double *obj, double *prob)
{
    (void)prob;
    render *r = arg;
    cnv_status st = evaluate(r, first, used);
    if (st != CNV_OK)
        return st;
    for (int i = 0; i < used; i++)
        *obj += r->vals[i];
    memset(r->grad, 0, (size_t)used * r->v->item * sizeof *r->grad);
    *grad = r->grad;
    for (int k = 0; k < r->n_tg; k++) {
        const target *tg = &r->tg[k];
        if ((st = cnv_viz_layer_grads(r->v, tg->t, tg->pre, tg->seed, (size_t)r->batch * tg->per, tg->per, used,
                                      r->scratch, add_grad, r)) != CNV_OK)
            return st;
    }
    return CNV_OK;
}

/* ------------------------------------------------------------ set up */

/* Term k's tensor, checked against its shape once planned. */
static cnv_status resolve_tensor(const cnv_viz *v, const cnv_objective *o, int k, int *t)
{
    cnv_status st;
    if (o->kind == CNV_OBJ_CLASS && !o->layer)
        st = cnv_viz_score_tensor(v, t);
    else if (!o->layer)
        return cnv_fail(v->err, CNV_ERR_INVALID_ARG, "render: term %d (%s) needs a layer", k,
                        cnv_objective_name(o->kind));
    else
        st = cnv_viz_layer(v, o->layer, t);
    if (st != CNV_OK)
        return st;
    if (o->pre_activation) {
        int pre = cnv_model_pre_activation(v->m, *t);
        if (pre < 0)
            return cnv_fail(v->err, CNV_ERR_INVALID_ARG,
                            "render: term %d: '%s' is no activation's output, so it has no pre-activation", k,
                            cnv_model_tensor_name(v->m, *t));
        *t = pre;
    }
    return cnv_viz_depends(v, *t, "layer");
}

static cnv_status check_term(const cnv_viz *v, const cnv_objective *o, int k, int n)
{
    if (!cnv_objective_name(o->kind))
        return cnv_fail(v->err, CNV_ERR_INVALID_ARG, "render: term %d has kind %d, none of cnv_objective_kind", k,
                        (int)o->kind);
    if (!isfinite(o->weight) || !isfinite(o->weight_last) || o->item < -1 || o->item >= n)
        return cnv_fail(v->err, CNV_ERR_INVALID_ARG,
                        "render: term %d: weights %g..%g (finite), item %d (-1 or 0..%d)", k, (double)o->weight,
                        (double)o->weight_last, o->item, n - 1);
    if (o->probability && o->kind != CNV_OBJ_CLASS)
        return cnv_fail(v->err, CNV_ERR_INVALID_ARG, "render: term %d: a probability is a class's (kind class)", k);
    if (o->kind == CNV_OBJ_DIVERSITY && o->item != -1)
        return cnv_fail(v->err, CNV_ERR_INVALID_ARG, "render: term %d: diversity applies to every item (item -1)",
                        k);
    return CNV_OK;
}

/* The target's shape, and the term's index, position and direction
 * against it. */
static cnv_status check_shape(const cnv_viz *v, term *tm, int k, int batch)
{
    const cnv_objective *o = tm->o;
    target *tg = tm->tg;
    cnv_shape sh;
    char buf[128];
    const char *name = cnv_model_tensor_name(v->m, tg->t);
    cnv_status st = cnv_session_tensor(v->s, tg->t, NULL, &sh);
    if (st != CNV_OK)
        return st;
    int64_t cnt = cnv_shape_count(&sh);
    if (sh.ndim < 2 || sh.dims[0] != batch || sh.dims[1] < 1 || cnt <= 0)
        return cnv_fail(v->err, CNV_ERR_SHAPE, "render: '%s' has shape %s: expected batch %d x channels x ...",
                        name, cnv_shape_str(&sh, buf, sizeof buf), batch);
    tg->C = (int)sh.dims[1];
    tg->per = (size_t)(cnt / sh.dims[0]);
    tg->P = tg->per / (size_t)tg->C;
    if ((o->kind == CNV_OBJ_CLASS || o->kind == CNV_OBJ_CHANNEL || o->kind == CNV_OBJ_NEURON) &&
        (o->index < 0 || o->index >= tg->C))
        return cnv_fail(v->err, CNV_ERR_INVALID_ARG, "render: term %d: %s %d is outside 0..%d of '%s'", k,
                        o->kind == CNV_OBJ_CLASS ? "class" : "channel", o->index, tg->C - 1, name);
    if (o->kind == CNV_OBJ_NEURON) {
        int H = sh.ndim == 4 ? (int)sh.dims[2] : 1, W = sh.ndim == 4 ? (int)sh.dims[3] : (int)tg->P;
        int y = o->y < 0 ? H / 2 : o->y, x = o->x < 0 ? W / 2 : o->x;
        if ((o->y < 0) != (o->x < 0) || y >= H || x >= W)
            return cnv_fail(v->err, CNV_ERR_INVALID_ARG,
                            "render: term %d: position (%d, %d) is outside '%s' (%d x %d; -1, -1: the center)", k,
                            o->y, o->x, name, H, W);
        tm->unit = (size_t)y * W + x;
    }
    if (o->kind == CNV_OBJ_DIRECTION) {
        if (!o->direction || o->n_direction != tg->C)
            return cnv_fail(v->err, CNV_ERR_INVALID_ARG,
                            "render: term %d: a direction needs %d values (the channels of '%s'), got %d", k, tg->C,
                            name, o->direction ? o->n_direction : 0);
        for (int c = 0; c < tg->C; c++)
            if (!isfinite(o->direction[c]))
                return cnv_fail(v->err, CNV_ERR_INVALID_ARG, "render: term %d: direction[%d] is not finite", k, c);
    }
    return CNV_OK;
}

static cnv_status run(cnv_session *s, int n, const cnv_objective *objs, int n_terms, const cnv_render_params *pp,
                      float *images, size_t count, float *values)
{
    cnv_err *err = cnv_session_err(s);
    if (n < 1 || !objs || n_terms < 1 || n_terms > 1024 || !images)
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "render: needs n >= 1 (got %d), 1..1024 terms (got %d) and an output buffer", n, n_terms);
    cnv_render_params p = pp ? *pp : cnv_render_params_default();
    cnv_status st;
    if (p.frame_every < 0 || p.height < 0 || p.width < 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "render: frame_every %d, size %dx%d (none negative)",
                        p.frame_every, p.height, p.width);
    if ((st = cnv_lucid_check(&p.lucid, "render", err)) != CNV_OK)
        return st;
    cnv_viz v;
    if ((st = cnv_viz_begin(&v, s, "render", p.preprocess, p.height, p.width)) != CNV_OK ||
        (st = cnv_viz_check_len(&v, "images", count, n)) != CNV_OK)
        return st;
    render r = { .v = &v, .n = n, .n_terms = n_terms };
    int diverse = 0;
    for (int k = 0; k < n_terms; k++) {
        if ((st = check_term(&v, &objs[k], k, n)) != CNV_OK)
            return st;
        diverse |= objs[k].kind == CNV_OBJ_DIVERSITY;
    }
    r.batch = cnv_viz_batch(&v, n);
    if (diverse && (r.batch < n || n > CNV_MAX_BATCH_DIVERSITY))
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "render: diversity compares the items of one batch: %d items need a batch of %d (the "
                        "model allows %d; at most %d)",
                        n, n, r.batch, CNV_MAX_BATCH_DIVERSITY);
    r.terms = cnv_calloc((size_t)n_terms, sizeof *r.terms);
    r.tg = cnv_calloc((size_t)n_terms, sizeof *r.tg);
    if (!r.terms || !r.tg) {
        st = cnv_fail(err, CNV_ERR_NOMEM, "render: out of memory for %d terms", n_terms);
        goto done;
    }
    for (int k = 0; k < n_terms; k++) {
        int t, j;
        if ((st = resolve_tensor(&v, &objs[k], k, &t)) != CNV_OK)
            goto done;
        for (j = 0; j < r.n_tg && r.tg[j].t != t; j++)
            ;
        if (j == r.n_tg) {
            r.tg[j].t = t;
            r.tg[j].pre = cnv_model_pre_activation(v.m, t);
            r.n_tg++;
        }
        r.terms[k] = (term){ .o = &objs[k], .tg = &r.tg[j] };
    }
    /* one tensor: plan only what it needs (a layer early in a network
     * that needs a larger input further on can then be rendered small) */
    if ((st = cnv_session_set_plan_target(s, r.n_tg == 1 ? r.tg[0].t : -1)) != CNV_OK ||
        (st = cnv_session_plan(s, r.batch, v.h, v.w)) != CNV_OK)
        goto done;
    size_t most = 0, gram_need = 0;
    for (int k = 0; k < n_terms; k++) {
        if ((st = check_shape(&v, &r.terms[k], k, r.batch)) != CNV_OK)
            goto done;
        const target *tg = r.terms[k].tg;
        most = tg->per > most ? tg->per : most;
        size_t cc = (size_t)tg->C * tg->C;
        if (objs[k].kind == CNV_OBJ_DIVERSITY && cc * (size_t)(n + 1) > gram_need) {
            if (cc > CNV_MAX_ELEMS / (size_t)(n + 1)) {
                st = cnv_fail(err, CNV_ERR_INVALID_ARG, "render: diversity on %d channels is too large", tg->C);
                goto done;
            }
            gram_need = cc * (size_t)(n + 1);
        }
    }
    for (int k = 0; k < r.n_tg; k++)
        if (!(r.tg[k].seed = cnv_malloc((size_t)r.batch * r.tg[k].per * sizeof(float)))) {
            st = cnv_fail(err, CNV_ERR_NOMEM, "render: out of memory for the seeds");
            goto done;
        }
    r.scratch = cnv_malloc((size_t)r.batch * most * sizeof(float));
    r.vals = cnv_malloc((size_t)r.batch * sizeof(float));
    r.gram = gram_need ? cnv_malloc(gram_need * sizeof(float)) : NULL;
    uint64_t *streams = cnv_malloc((size_t)n * sizeof *streams);
    r.prob = cnv_malloc(most * sizeof(float));
    r.grad = cnv_malloc((size_t)r.batch * v.item * sizeof(float));
    if (!r.scratch || !r.vals || (gram_need && !r.gram) || !streams || !r.prob || !r.grad) {
        cnv_free(streams);
        st = cnv_fail(err, CNV_ERR_NOMEM, "render: out of memory for %d images", n);
        goto done;
    }
    for (int i = 0; i < n; i++)
        streams[i] = (uint64_t)i;
    cnv_lucid_job job = {
        .v = &v, .lucid = &p.lucid, .n = n, .batch = r.batch, .seed = p.seed, .streams = streams,
        .grad = render_grad, .arg = &r, .progress = p.progress, .frame = p.frame, .frame_every = p.frame_every,
        .user = p.user,
    };
    st = cnv_lucid_run(&job, images, NULL);
    cnv_free(streams);
    for (int first = 0; st == CNV_OK && values && first < n; first += r.batch) {
        int used = n - first < r.batch ? n - first : r.batch;
        float *in = cnv_session_input(s);
        memset(in, 0, (size_t)r.batch * v.item * sizeof *in);
        memcpy(in, images + (size_t)first * v.item, (size_t)used * v.item * sizeof *in);
        if ((st = evaluate(&r, first, used)) == CNV_OK)
            memcpy(values + first, r.vals, (size_t)used * sizeof *values);
    }
done:
    for (int k = 0; r.tg && k < r.n_tg; k++)
        cnv_free(r.tg[k].seed);
    cnv_free(r.terms);
    cnv_free(r.tg);
    cnv_free(r.scratch);
    cnv_free(r.vals);
    cnv_free(r.gram);
    cnv_free(r.prob);
    cnv_free(r.grad);
    return st;
}

cnv_status cnv_render(cnv_session *s, int n, const cnv_objective *terms, int n_terms, const cnv_render_params *p,
                      float *images, size_t count, float *values)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    cnv_status st = run(s, n, terms, n_terms, p, images, count, values);
    cnv_session_set_plan_target(s, -1);
    return st;
}
