/* The session: plans a model for one set of input shapes (every buffer in
 * one arena, one shared workspace), then runs forward and backward with no
 * allocation. */
#include <string.h>

#include <cblas.h>

#include "core/clock.h"
#include "engine/graph.h"

#define ALIGN 64

struct cnv_session {
    cnv_err err;
    const cnv_model *m;
    cnv_run_opts opts;
    int param_grads;         /* asked for */
    int planned;             /* a plan is in place */
    int planned_param_grads; /* what the plan was made with */
    cnv_shape *in_shapes;    /* the planned shape of each graph input */
    cnv_val *vals;           /* one per model tensor */
    cnv_val **io;            /* every node's in/out pointer arrays, back to back */
    cnv_op_ctx *ctx;         /* one per node */
    void *arena;             /* activations and gradients */
    void *state_arena;       /* per-node op state */
    void *work_raw;          /* shared workspace */
    unsigned char *tmark;    /* per tensor: scratch marks for forward_to/backward */
    unsigned char *nmark;    /* per node: likewise */
    unsigned char *valid;    /* per tensor: computed by the last forward */
    unsigned char *has_grad; /* per tensor: the plan gave it a gradient buffer */
    unsigned char *gready;   /* per tensor: its gradient was written in this backward */
    unsigned char *store;    /* per node input (laid out like io): cnv_op_ctx.grad_store */
    unsigned char *fused;    /* per node: a Relu whose forward a Conv does */
    double *prof;            /* per node: forward and backward seconds; NULL when off */
    int profiling;           /* asked for */
    int threads_asked;       /* cnv_session_set_threads; 0: the process-wide setting */
    cnv_team *team;          /* the plan's threads; NULL for one */
    int planned_threads;     /* the thread count the plan was made for */
};

static void *align_up(void *p)
{
    uintptr_t u = (uintptr_t)p;
    return (void *)((u + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
}

/* Rounds a byte count up to the alignment; 0 on overflow. */
static int round_up(size_t n, size_t *out)
{
    return cnv_add_size(n, ALIGN - 1, out) && ((*out &= ~(size_t)(ALIGN - 1)), 1);
}

/* ------------------------------------------------------------ lifecycle */

static void drop_plan(cnv_session *s)
{
    cnv_free(s->in_shapes);
    cnv_free(s->vals);
    cnv_free(s->io);
    cnv_free(s->ctx);
    cnv_free(s->arena);
    cnv_free(s->state_arena);
    cnv_free(s->work_raw);
    cnv_free(s->tmark);
    cnv_free(s->nmark);
    cnv_free(s->valid);
    cnv_free(s->has_grad);
    cnv_free(s->gready);
    cnv_free(s->store);
    cnv_free(s->fused);
    cnv_free(s->prof);
    s->gready = s->store = s->fused = NULL;
    s->prof = NULL;
    s->in_shapes = NULL;
    s->vals = NULL;
    s->io = NULL;
    s->ctx = NULL;
    s->arena = s->state_arena = s->work_raw = NULL;
    s->tmark = s->nmark = s->valid = s->has_grad = NULL;
    s->planned = 0;
}

cnv_status cnv_session_create(const cnv_model *m, cnv_session **out)
{
    if (!out)
        return CNV_ERR_INVALID_ARG;
    *out = NULL;
    if (!m)
        return CNV_ERR_INVALID_ARG;
    cnv_session *s = cnv_calloc(1, sizeof *s);
    if (!s)
        return CNV_ERR_NOMEM;
    s->m = m;
    *out = s;
    return CNV_OK;
}

void cnv_session_free(cnv_session *s)
{
    if (!s)
        return;
    drop_plan(s);
    cnv_team_free(s->team);
    cnv_free(s);
}

cnv_status cnv_session_set_threads(cnv_session *s, int n)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    if (n < 0)
        return cnv_fail(&s->err, CNV_ERR_INVALID_ARG, "thread count %d: must be >= 0", n);
    s->threads_asked = n;
    return CNV_OK;
}

/* The thread count a plan made now would use. */
static int threads_wanted(const cnv_session *s)
{
    return s->threads_asked > 0 ? s->threads_asked : cnv_threads_setting();
}

/* Starts (or keeps) the team for the thread count wanted. The team splits
 * GEMMs itself, so OpenBLAS must not add threads of its own inside them
 * (nor, with one thread, multiply tiny GEMMs over the cores: it is much
 * slower at that than one thread). */
static cnv_status ensure_team(cnv_session *s)
{
    int want = threads_wanted(s);
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
    if (want <= 1) {
        cnv_team_free(s->team);
        s->team = NULL;
        return CNV_OK;
    }
    if (s->team && s->planned_threads == want)
        return CNV_OK;
    cnv_team_free(s->team);
    s->team = NULL;
    return cnv_team_create(want, &s->team, &s->err);
}

cnv_err *cnv_session_err(cnv_session *s)
{
    return s ? &s->err : NULL;
}

const char *cnv_session_errmsg(const cnv_session *s)
{
    return s ? s->err.msg : "no session (NULL handle)";
}

cnv_status cnv_session_set_param_grads(cnv_session *s, int on)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    s->param_grads = on != 0;
    return CNV_OK;
}

cnv_status cnv_session_set_relu_mode(cnv_session *s, cnv_relu_mode mode)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    if (mode != CNV_RELU_GRAD && mode != CNV_RELU_GUIDED)
        return cnv_fail(&s->err, CNV_ERR_INVALID_ARG, "unknown ReLU mode %d", (int)mode);
    s->opts.relu_mode = mode;
    return CNV_OK;
}

/* ------------------------------------------------------------- planning */

static cnv_status check_input_shapes(cnv_session *s, int n, const cnv_shape *shapes)
{
    const cnv_model *m = s->m;
    if (n != m->n_inputs)
        return cnv_fail(&s->err, CNV_ERR_SHAPE, "the model has %d inputs, %d shapes given", m->n_inputs,
                        n);
    for (int i = 0; i < n; i++) {
        const cnv_tensor_def *t = &m->tensors[m->inputs[i]];
        const cnv_shape *g = &shapes[i];
        char want[128], got[128];
        for (int d = 0; g->ndim == t->shape.ndim && d < g->ndim; d++)
            if (g->dims[d] == 0)
                return cnv_fail(&s->err, CNV_ERR_UNSUPPORTED,
                                "input '%s': dimension %d is 0; empty tensors are not supported", t->name, d);
        int ok = g->ndim == t->shape.ndim;
        for (int d = 0; ok && d < g->ndim; d++)
            ok = g->dims[d] >= 1 && (t->shape.dims[d] == -1 || t->shape.dims[d] == g->dims[d]);
        int64_t count = ok ? cnv_shape_count(g) : -1;
        if (!ok || count < 0 || count > CNV_MAX_ELEMS)
            return cnv_fail(&s->err, CNV_ERR_SHAPE, "input '%s': shape %s does not fit the declared %s",
                            t->name, cnv_shape_str(g, got, sizeof got),
                            cnv_shape_str(&t->shape, want, sizeof want));
    }
    return CNV_OK;
}

/* Which tensors carry a gradient: those that depend on a graph input, or on
 * a float parameter when parameter gradients are on. */
static void mark_grads(cnv_session *s)
{
    const cnv_model *m = s->m;
    for (int t = 0; t < m->n_tensors; t++) {
        const cnv_tensor_def *d = &m->tensors[t];
        s->has_grad[t] = d->kind == CNV_T_INPUT ||
                         (s->param_grads && d->kind == CNV_T_CONST && d->dtype == CNV_FLOAT32);
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const cnv_node *n = &m->nodes[i];
        int any = 0;
        for (int k = 0; k < n->n_in; k++)
            any |= n->in[k] >= 0 && s->has_grad[n->in[k]];
        /* An op with no backward cannot pass a gradient on. */
        any = any && n->op->backward;
        for (int k = 0; k < n->n_out; k++)
            s->has_grad[n->out[k]] = (unsigned char)any;
    }
}

/* Conv followed by Relu: the Conv's epilogue writes the Relu's output too
 * (one pass over the output instead of two), and the Relu node does
 * nothing in forward. Both tensors keep their own values, so every
 * activation stays readable. */
static void plan_fusion(cnv_session *s)
{
    const cnv_model *m = s->m;
    for (int j = 0; j < m->n_nodes; j++) {
        const cnv_node *r = &m->nodes[j];
        if (strcmp(r->op_type, "Relu") != 0 || r->in[0] < 0)
            continue;
        int i = m->tensors[r->in[0]].producer;
        if (i < 0 || strcmp(m->nodes[i].op_type, "Conv") != 0 || s->ctx[i].fused_relu)
            continue;
        s->ctx[i].fused_relu = &s->vals[r->out[0]];
        s->fused[j] = 1;
    }
}

/* Concat inputs that can live inside the Concat's output: view[t] is the
 * output tensor (else -1) and view_off[t] the element offset. The Concat
 * then copies nothing in forward. When the Concat is the input's only
 * consumer, its gradient is the same slice of the output's gradient, so
 * gview[t] shares that too and backward copies nothing either. */
static void plan_concat_views(cnv_session *s, const int *uses, int *view, int64_t *view_off,
                              unsigned char *gview)
{
    const cnv_model *m = s->m;
    for (int t = 0; t < m->n_tensors; t++)
        view[t] = -1;
    for (int i = 0; i < m->n_nodes; i++) {
        const cnv_node *n = &m->nodes[i];
        if (strcmp(n->op_type, "Concat") != 0)
            continue;
        for (int k = 0; k < n->n_in; k++) {
            int t = n->in[k], once = 1;
            int64_t off;
            for (int q = 0; q < n->n_in; q++)
                once &= q == k || n->in[q] != t;
            if (t < 0 || !once || t == n->out[0] || m->tensors[t].kind != CNV_T_ACT || view[t] >= 0 ||
                !cnv_concat_view(&s->ctx[i], k, &off))
                continue;
            view[t] = n->out[0];
            view_off[t] = off;
            gview[t] = uses[t] == 1 && s->has_grad[t] && s->has_grad[n->out[0]];
        }
    }
}

static cnv_status plan(cnv_session *s, int n_in, const cnv_shape *shapes)
{
    const cnv_model *m = s->m;
    cnv_status st = check_input_shapes(s, n_in, shapes);
    if (st != CNV_OK)
        return st;
    drop_plan(s);
    if ((st = ensure_team(s)) != CNV_OK)
        return st;
    s->planned_threads = threads_wanted(s);

    size_t nt = (size_t)m->n_tensors, nn = (size_t)m->n_nodes, nio = 0;
    for (int i = 0; i < m->n_nodes; i++)
        nio += (size_t)m->nodes[i].n_in + (size_t)m->nodes[i].n_out;
    s->in_shapes = cnv_calloc((size_t)n_in + 1, sizeof *s->in_shapes);
    s->vals = cnv_calloc(nt + 1, sizeof *s->vals);
    s->io = cnv_calloc(nio + 1, sizeof *s->io);
    s->ctx = cnv_calloc(nn + 1, sizeof *s->ctx);
    s->tmark = cnv_calloc(nt + 1, 1);
    s->nmark = cnv_calloc(nn + 1, 1);
    s->valid = cnv_calloc(nt + 1, 1);
    s->has_grad = cnv_calloc(nt + 1, 1);
    s->gready = cnv_calloc(nt + 1, 1);
    s->store = cnv_calloc(nio + 1, 1);
    s->fused = cnv_calloc(nn + 1, 1);
    s->prof = s->profiling ? cnv_calloc(2 * nn + 1, sizeof *s->prof) : NULL;
    size_t *state_size = cnv_calloc(nn + 1, sizeof *state_size);
    int *uses = cnv_calloc(nt + 1, sizeof *uses), *view = cnv_calloc(nt + 1, sizeof *view);
    int64_t *view_off = cnv_calloc(nt + 1, sizeof *view_off);
    unsigned char *gview = cnv_calloc(nt + 1, 1);
    if (!s->in_shapes || !s->vals || !s->io || !s->ctx || !s->tmark || !s->nmark || !s->valid ||
        !s->has_grad || !s->gready || !s->store || !s->fused || (s->profiling && !s->prof) ||
        !state_size || !uses || !view || !view_off || !gview) {
        st = cnv_fail(&s->err, CNV_ERR_NOMEM, "out of memory planning");
        goto fail;
    }
    memcpy(s->in_shapes, shapes, (size_t)n_in * sizeof *shapes);

    /* Shapes: inputs as given, constants as stored, activations by the ops. */
    for (int i = 0; i < n_in; i++) {
        s->vals[m->inputs[i]].shape = shapes[i];
        s->vals[m->inputs[i]].count = cnv_shape_count(&shapes[i]);
    }
    for (size_t t = 0; t < nt; t++) {
        const cnv_tensor_def *d = &m->tensors[t];
        cnv_val *v = &s->vals[t];
        if (d->kind != CNV_T_CONST)
            continue;
        v->shape = d->shape;
        v->count = cnv_shape_count(&d->shape);
        v->is_const = 1;
        if (d->dtype == CNV_FLOAT32)
            v->data = d->data;
        else
            v->i64 = d->data;
    }
    size_t io_used = 0, work_max = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const cnv_node *n = &m->nodes[i];
        cnv_op_ctx *c = &s->ctx[i];
        c->node = n;
        c->params = n->params;
        c->opts = &s->opts;
        c->team = s->team;
        c->threads = cnv_team_size(s->team);
        c->in = s->io + io_used;
        c->grad_store = s->store + io_used;
        io_used += (size_t)n->n_in;
        c->out = s->io + io_used;
        io_used += (size_t)n->n_out;
        for (int k = 0; k < n->n_in; k++) {
            c->in[k] = n->in[k] >= 0 ? &s->vals[n->in[k]] : NULL;
            if (n->in[k] >= 0)
                uses[n->in[k]]++;
        }
        for (int k = 0; k < n->n_out; k++)
            c->out[k] = &s->vals[n->out[k]];
        for (int k = 0; k < n->n_in; k++) {
            const cnv_tensor_def *d = n->in[k] >= 0 ? &m->tensors[n->in[k]] : NULL;
            int int_ok = k < 32 && (n->op->int_inputs >> k & 1);
            if (d && d->kind == CNV_T_ACT && d->dtype != CNV_FLOAT32) {
                st = cnv_fail(&s->err, CNV_ERR_UNSUPPORTED, "node '%s': input '%s' is not float",
                              n->name, d->name);
                goto fail;
            }
            if (d && !int_ok && c->in[k]->i64) {
                st = cnv_fail(&s->err, CNV_ERR_UNSUPPORTED,
                              "node '%s' (%s): input %d is an INT64 tensor, a float one is needed", n->name,
                              n->op_type, k);
                goto fail;
            }
        }
        size_t work = 0;
        cnv_err e;
        cnv_err_clear(&e);
        st = n->op->plan(c, &state_size[i], &work, &e);
        if (st != CNV_OK) {
            st = cnv_fail(&s->err, st, "node '%s' (%s): %s", n->name, n->op_type, e.msg);
            goto fail;
        }
        for (int k = 0; k < n->n_out; k++) {
            cnv_val *v = c->out[k];
            v->count = cnv_shape_count(&v->shape);
            if (v->count < 0 || v->count > CNV_MAX_ELEMS) {
                char buf[128];
                st = cnv_fail(&s->err, CNV_ERR_SHAPE, "node '%s' (%s): output '%s' of shape %s is too large",
                              n->name, n->op_type, m->tensors[n->out[k]].name,
                              cnv_shape_str(&v->shape, buf, sizeof buf));
                goto fail;
            }
        }
        if (work > work_max)
            work_max = work;
    }
    /* One arena: values of inputs and activations, then every gradient,
     * except what lives inside a Concat's output. */
    s->planned_param_grads = s->param_grads;
    mark_grads(s);
    plan_fusion(s);
    plan_concat_views(s, uses, view, view_off, gview);
    size_t total = 0, bytes;
    for (size_t t = 0; t < nt; t++) {
        int own_value = m->tensors[t].kind != CNV_T_CONST && view[t] < 0;
        int copies = own_value + (s->has_grad[t] && !gview[t]);
        for (int c = 0; c < copies; c++)
            if (!cnv_mul_size((size_t)s->vals[t].count, sizeof(float), &bytes) || !round_up(bytes, &bytes) ||
                !cnv_add_size(total, bytes, &total))
                goto too_big;
    }
    size_t state_total = 0;
    for (size_t i = 0; i < nn; i++)
        if (!round_up(state_size[i], &bytes) || !cnv_add_size(state_total, bytes, &state_total))
            goto too_big;
    if (!cnv_add_size(total, ALIGN, &total) || !cnv_add_size(state_total, ALIGN, &state_total) ||
        !cnv_add_size(work_max, ALIGN, &work_max))
        goto too_big;
    s->arena = cnv_malloc(total);
    s->state_arena = cnv_malloc(state_total);
    s->work_raw = cnv_malloc(work_max);
    if (!s->arena || !s->state_arena || !s->work_raw) {
        st = cnv_fail(&s->err, CNV_ERR_NOMEM,
                      "out of memory: the plan needs %zu bytes of tensors, %zu of state and %zu of workspace",
                      total, state_total, work_max);
        goto fail;
    }
    memset(s->arena, 0, total);
    memset(s->state_arena, 0, state_total);
    unsigned char *p = align_up(s->arena);
    for (size_t t = 0; t < nt; t++) {
        round_up((size_t)s->vals[t].count * sizeof(float), &bytes);
        if (m->tensors[t].kind != CNV_T_CONST && view[t] < 0) {
            s->vals[t].data = (float *)p;
            p += bytes;
        }
        if (s->has_grad[t] && !gview[t]) {
            s->vals[t].grad = (float *)p;
            p += bytes;
        }
    }
    /* A Concat's output may itself live in a later Concat's output: going
     * backwards places the outer one first. */
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        const cnv_node *n = &m->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            int t = n->in[k];
            if (t < 0 || view[t] != n->out[0])
                continue;
            s->vals[t].data = s->vals[view[t]].data + view_off[t];
            if (gview[t])
                s->vals[t].grad = s->vals[view[t]].grad + view_off[t];
        }
    }
    p = align_up(s->state_arena);
    float *work = align_up(s->work_raw);
    for (size_t i = 0; i < nn; i++) {
        s->ctx[i].state = state_size[i] ? p : NULL;
        s->ctx[i].work = work;
        round_up(state_size[i], &bytes);
        p += bytes;
    }
    cnv_free(state_size);
    cnv_free(uses);
    cnv_free(view);
    cnv_free(view_off);
    cnv_free(gview);
    s->planned = 1;
    return CNV_OK;

too_big:
    st = cnv_fail(&s->err, CNV_ERR_NOMEM, "the plan for these input shapes does not fit in memory");
fail:
    cnv_free(state_size);
    cnv_free(uses);
    cnv_free(view);
    cnv_free(view_off);
    cnv_free(gview);
    drop_plan(s);
    return st;
}

cnv_status cnv_session_plan_shapes(cnv_session *s, int n_inputs, const cnv_shape *shapes)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    if (n_inputs < 0 || (n_inputs && !shapes))
        return cnv_fail(&s->err, CNV_ERR_INVALID_ARG, "no input shapes given");
    if (s->planned && n_inputs == s->m->n_inputs && s->planned_param_grads == s->param_grads &&
        !s->prof == !s->profiling && s->planned_threads == threads_wanted(s)) {
        int same = 1;
        for (int i = 0; same && i < n_inputs; i++)
            same = cnv_shape_equal(&s->in_shapes[i], &shapes[i]);
        if (same)
            return CNV_OK;
    }
    return plan(s, n_inputs, shapes);
}

cnv_status cnv_session_plan(cnv_session *s, int n, int h, int w)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    const cnv_model *m = s->m;
    if (m->n_inputs != 1 || m->tensors[m->inputs[0]].shape.ndim != 4)
        return cnv_fail(&s->err, CNV_ERR_SHAPE,
                        "cnv_session_plan needs a model with one 4-D image input; use cnv_session_plan_shapes");
    if (n < 1 || h < 1 || w < 1)
        return cnv_fail(&s->err, CNV_ERR_INVALID_ARG, "input size %dx%d, batch %d: each must be >= 1", h, w, n);
    int64_t c = m->tensors[m->inputs[0]].shape.dims[1];
    if (c < 1)
        return cnv_fail(&s->err, CNV_ERR_SHAPE, "the model's input does not declare its channel count");
    cnv_shape sh;
    cnv_shape4(&sh, n, c, h, w);
    return cnv_session_plan_shapes(s, 1, &sh);
}

/* ------------------------------------------------------------- running */

static cnv_status need_plan(cnv_session *s)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    if (!s->planned)
        return cnv_fail(&s->err, CNV_ERR_STATE, "the session is not planned (call cnv_session_plan first)");
    return CNV_OK;
}

static cnv_status lookup(cnv_session *s, const char *name, int *t)
{
    *t = name ? cnv_model_find(s->m, name) : -1;
    if (*t < 0)
        return cnv_fail(&s->err, CNV_ERR_NOT_FOUND, "no tensor named '%s'", name ? name : "(null)");
    return CNV_OK;
}

cnv_status cnv_session_tensor(cnv_session *s, const char *name, float **data, cnv_shape *shape)
{
    int t;
    cnv_status st = need_plan(s);
    if (st == CNV_OK)
        st = lookup(s, name, &t);
    if (st != CNV_OK)
        return st;
    if (!s->vals[t].data)
        return cnv_fail(&s->err, CNV_ERR_UNSUPPORTED, "tensor '%s' is not a float tensor", name);
    if (data)
        *data = s->vals[t].data;
    if (shape)
        *shape = s->vals[t].shape;
    return CNV_OK;
}

float *cnv_session_input(cnv_session *s)
{
    return s && s->planned && s->m->n_inputs > 0 ? s->vals[s->m->inputs[0]].data : NULL;
}

/* Runs node i forward (a fused Relu's work was done by its Conv). */
static void run_forward(cnv_session *s, int i)
{
    const cnv_node *n = &s->m->nodes[i];
    double t0 = s->prof ? cnv_now() : 0.0;
    if (!s->fused[i])
        n->op->forward(&s->ctx[i]);
    if (s->prof)
        s->prof[2 * i] += cnv_now() - t0;
    for (int k = 0; k < n->n_out; k++)
        s->valid[n->out[k]] = 1;
    if (s->ctx[i].fused_relu)
        s->valid[s->ctx[i].fused_relu - s->vals] = 1;
}

cnv_status cnv_session_forward(cnv_session *s)
{
    cnv_status st = need_plan(s);
    if (st != CNV_OK)
        return st;
    for (int i = 0; i < s->m->n_nodes; i++)
        run_forward(s, i);
    return CNV_OK;
}

/* Marks in nmark the nodes whose outputs reach tensor t (its ancestors). */
static void mark_ancestors(cnv_session *s, int t)
{
    const cnv_model *m = s->m;
    memset(s->tmark, 0, (size_t)m->n_tensors);
    memset(s->nmark, 0, (size_t)m->n_nodes);
    s->tmark[t] = 1;
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        const cnv_node *n = &m->nodes[i];
        int reaches = 0;
        for (int k = 0; k < n->n_out; k++)
            reaches |= s->tmark[n->out[k]];
        if (!reaches)
            continue;
        s->nmark[i] = 1;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                s->tmark[n->in[k]] = 1;
    }
}

cnv_status cnv_session_forward_to(cnv_session *s, const char *name)
{
    int t;
    cnv_status st = need_plan(s);
    if (st == CNV_OK)
        st = lookup(s, name, &t);
    if (st != CNV_OK)
        return st;
    const cnv_model *m = s->m;
    mark_ancestors(s, t);
    memset(s->valid, 0, (size_t)m->n_tensors);
    for (int i = 0; i < m->n_nodes; i++)
        if (s->nmark[i])
            run_forward(s, i);
    return CNV_OK;
}

cnv_status cnv_session_backward(cnv_session *s, const char *name, const float *seed)
{
    int t;
    cnv_status st = need_plan(s);
    if (st == CNV_OK)
        st = lookup(s, name, &t);
    if (st != CNV_OK)
        return st;
    if (!seed)
        return cnv_fail(&s->err, CNV_ERR_INVALID_ARG, "backward from '%s': no seed", name);
    const cnv_model *m = s->m;
    cnv_val *v = &s->vals[t];
    if (m->tensors[t].kind == CNV_T_ACT && !s->valid[t])
        return cnv_fail(&s->err, CNV_ERR_STATE,
                        "backward from '%s': it was not computed by the last forward", name);

    mark_ancestors(s, t);
    /* The gradients this pass writes: the seed's, and every gradient input
     * of a node that runs. Each is overwritten by its first writer (the
     * op stores instead of adding, or the buffer is zeroed just before),
     * so nothing is cleared up front; the others are zeroed, as a tensor
     * the seed does not depend on has a zero gradient. */
    unsigned char *writes = s->tmark; /* free again after mark_ancestors */
    memset(writes, 0, (size_t)m->n_tensors);
    for (int i = 0; i < m->n_nodes; i++) {
        const cnv_node *n = &m->nodes[i];
        if (!s->nmark[i] || !s->has_grad[n->out[0]])
            continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                writes[n->in[k]] = 1;
    }
    writes[t] = 1;
    for (int k = 0; k < m->n_tensors; k++)
        if (s->vals[k].grad && !writes[k])
            memset(s->vals[k].grad, 0, (size_t)s->vals[k].count * sizeof(float));
    memset(s->gready, 0, (size_t)m->n_tensors);
    if (!v->grad)
        return CNV_OK; /* t does not depend on anything differentiable */
    memcpy(v->grad, seed, (size_t)v->count * sizeof(float));
    s->gready[t] = 1;
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        const cnv_node *n = &m->nodes[i];
        if (!s->nmark[i] || !s->has_grad[n->out[0]])
            continue;
        cnv_op_ctx *c = &s->ctx[i];
        double t0 = s->prof ? cnv_now() : 0.0;
        for (int k = 0; k < n->n_in; k++) {
            int x = n->in[k], once = 1;
            unsigned char *st_k = s->store + (c->in - s->io) + k;
            *st_k = 0;
            if (x < 0 || !c->in[k]->grad || s->gready[x])
                continue;
            for (int q = 0; q < n->n_in; q++)
                once &= q == k || n->in[q] != x;
            if ((n->op->flags & CNV_OP_GRAD_STORE) && once)
                *st_k = 1;
            else
                memset(c->in[k]->grad, 0, (size_t)c->in[k]->count * sizeof(float));
            s->gready[x] = 1;
        }
        n->op->backward(c);
        if (s->prof)
            s->prof[2 * i + 1] += cnv_now() - t0;
    }
    return CNV_OK;
}

cnv_status cnv_session_grad(cnv_session *s, const char *name, float **grad)
{
    int t;
    cnv_status st = need_plan(s);
    if (st == CNV_OK)
        st = lookup(s, name, &t);
    if (st != CNV_OK)
        return st;
    if (!s->vals[t].grad)
        return cnv_fail(&s->err, CNV_ERR_NOT_FOUND,
                        "tensor '%s' has no gradient (it does not depend on an input%s)", name,
                        s->param_grads ? " or a parameter" : "; parameter gradients are off");
    if (grad)
        *grad = s->vals[t].grad;
    return CNV_OK;
}

float *cnv_session_input_grad(cnv_session *s)
{
    return s && s->planned && s->m->n_inputs > 0 ? s->vals[s->m->inputs[0]].grad : NULL;
}

cnv_status cnv_session_set_profiling(cnv_session *s, int on)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    s->profiling = on != 0;
    return CNV_OK;
}

cnv_status cnv_session_node_time(const cnv_session *s, int node, double *forward_s, double *backward_s)
{
    if (!s || !s->prof || node < 0 || node >= s->m->n_nodes)
        return CNV_ERR_INVALID_ARG;
    if (forward_s)
        *forward_s = s->prof[2 * node];
    if (backward_s)
        *backward_s = s->prof[2 * node + 1];
    return CNV_OK;
}
