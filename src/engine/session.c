/* The session's life and the executor: forward, forward up to a tensor,
 * and backward from a seed over the plan that plan.c made, with no
 * allocation. */
#include <string.h>

#include "core/clock.h"
#include "engine/session.h"

/* ------------------------------------------------------------ lifecycle */

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
    s->target = -1;
    *out = s;
    return CNV_OK;
}

void cnv_session_free(cnv_session *s)
{
    if (!s)
        return;
    cnv_session_drop_plan(s);
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

const cnv_model *cnv_session_model(const cnv_session *s)
{
    return s ? s->m : NULL;
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
    if (mode != CNV_RELU_GRAD && mode != CNV_RELU_GUIDED && mode != CNV_RELU_DECONV)
        return cnv_fail(&s->err, CNV_ERR_INVALID_ARG, "unknown ReLU mode %d", (int)mode);
    s->opts.relu_mode = mode;
    return CNV_OK;
}

cnv_status cnv_session_set_plan_target(cnv_session *s, int t)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    if (t < -1 || t >= s->m->n_tensors)
        return cnv_fail(&s->err, CNV_ERR_NOT_FOUND, "plan target %d: the model has %d tensors (-1: all)", t,
                        s->m->n_tensors);
    s->target = t;
    return CNV_OK;
}

/* ------------------------------------------------------------- planning */

cnv_status cnv_session_plan_shapes(cnv_session *s, int n_inputs, const cnv_shape *shapes)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    if (n_inputs < 0 || (n_inputs && !shapes))
        return cnv_fail(&s->err, CNV_ERR_INVALID_ARG, "no input shapes given");
    return cnv_session_plan_now(s, n_inputs, shapes);
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

/* A planned session and a tensor index of its model. */
static cnv_status need_tensor(cnv_session *s, int t, const char *what)
{
    cnv_status st = need_plan(s);
    if (st == CNV_OK && (t < 0 || t >= s->m->n_tensors))
        st = cnv_fail(&s->err, CNV_ERR_NOT_FOUND, "%s: no tensor %d (the model has %d; "
                      "cnv_model_tensor_index gives -1 for an unknown name)", what, t, s->m->n_tensors);
    int p = st == CNV_OK ? s->m->tensors[t].producer : -1;
    if (p >= 0 && s->unplanned[p])
        st = cnv_fail(&s->err, CNV_ERR_STATE, "%s: tensor '%s' is past the plan target '%s'", what,
                      s->m->tensors[t].name, s->m->tensors[s->planned_target].name);
    return st;
}

cnv_status cnv_session_tensor(cnv_session *s, int t, float **data, cnv_shape *shape)
{
    cnv_status st = need_tensor(s, t, "cnv_session_tensor");
    if (st != CNV_OK)
        return st;
    if (!s->vals[t].data)
        return cnv_fail(&s->err, CNV_ERR_UNSUPPORTED, "tensor '%s' is not a float tensor", s->m->tensors[t].name);
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

/* Runs node i forward (an idle node's work was done at plan time or by its
 * producer). */
static void run_forward(cnv_session *s, int i)
{
    const cnv_node *n = &s->m->nodes[i];
    if (s->unplanned[i])
        return;
    double t0 = s->prof ? cnv_now() : 0.0;
    if (!s->idle[i])
        n->op->forward(&s->ctx[i]);
    if (s->prof)
        s->prof[2 * i] += cnv_now() - t0;
    for (int k = 0; k < n->n_out; k++)
        s->valid[n->out[k]] = 1;
    if (s->ctx[i].epilogue.fn)
        s->valid[s->ctx[i].epilogue.out - s->vals] = 1;
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

cnv_status cnv_session_forward_to(cnv_session *s, int t)
{
    cnv_status st = need_tensor(s, t, "forward");
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

cnv_status cnv_session_forward_from(cnv_session *s, int from, int to)
{
    cnv_status st = need_tensor(s, to, "forward");
    if (st == CNV_OK)
        st = need_tensor(s, from, "forward");
    if (st != CNV_OK)
        return st;
    const cnv_model *m = s->m;
    if (!s->valid[from] || !s->valid[to])
        return cnv_fail(&s->err, CNV_ERR_STATE, "forward from '%s' to '%s': the last forward computed %s",
                        m->tensors[from].name, m->tensors[to].name, s->valid[from] ? "the start only" : "not the start");
    mark_ancestors(s, to);
    if (!s->tmark[from])
        return cnv_fail(&s->err, CNV_ERR_INVALID_ARG, "forward from '%s': '%s' does not depend on it",
                        m->tensors[from].name, m->tensors[to].name);
    int pf = m->tensors[from].producer;
    for (int i = pf + 1; i < m->n_nodes; i++) {
        if (!s->nmark[i])
            continue;
        /* A node whose forward its producer does as an epilogue runs on its
         * own when that producer does not run again. */
        const cnv_node *n = &m->nodes[i];
        int p = n->n_in > 0 && n->in[0] >= 0 ? m->tensors[n->in[0]].producer : -1;
        if (s->idle[i] && !s->unplanned[i] && p >= 0 && p <= pf && s->ctx[p].epilogue.fn &&
            s->ctx[p].epilogue.out == &s->vals[n->out[0]])
            n->op->forward(&s->ctx[i]);
        else
            run_forward(s, i);
    }
    return CNV_OK;
}

cnv_status cnv_session_backward(cnv_session *s, int t, const float *seed, size_t count)
{
    cnv_status st = need_tensor(s, t, "backward");
    if (st != CNV_OK)
        return st;
    const cnv_model *m = s->m;
    const char *name = m->tensors[t].name;
    cnv_val *v = &s->vals[t];
    if (!seed)
        return cnv_fail(&s->err, CNV_ERR_INVALID_ARG, "backward from '%s': no seed", name);
    if (count != (size_t)v->count)
        return cnv_fail(&s->err, CNV_ERR_INVALID_ARG, "backward from '%s': a seed of %zu values, the tensor has %lld",
                        name, count, (long long)v->count);
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
        int by = s->bwd_by[i]; /* done by its consumer, if that one ran */
        if (by >= 0 && s->nmark[by] && s->has_grad[m->nodes[by].out[0]])
            continue;
        cnv_op_ctx *c = &s->ctx[i];
        double t0 = s->prof ? cnv_now() : 0.0;
        const unsigned char *repeat = s->repeat + (c->in - s->io);
        for (int k = 0; k < n->n_in; k++) {
            int x = n->in[k];
            unsigned char *st_k = s->store + (c->in - s->io) + k;
            *st_k = 0;
            if (x < 0 || !c->in[k]->grad || s->gready[x])
                continue;
            if ((n->op->flags & CNV_OP_GRAD_STORE) && !repeat[k])
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

cnv_status cnv_session_grad(cnv_session *s, int t, float **grad)
{
    cnv_status st = need_tensor(s, t, "cnv_session_grad");
    if (st != CNV_OK)
        return st;
    if (!s->vals[t].grad)
        return cnv_fail(&s->err, CNV_ERR_NOT_FOUND,
                        "tensor '%s' has no gradient (it does not depend on an input%s)", s->m->tensors[t].name,
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

cnv_status cnv_session_node_time(cnv_session *s, int node, double *forward_s, double *backward_s)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    if (!s->prof)
        return cnv_fail(&s->err, CNV_ERR_STATE, "no profile: cnv_session_set_profiling, then plan");
    if (node < 0 || node >= s->m->n_nodes)
        return cnv_fail(&s->err, CNV_ERR_INVALID_ARG, "node %d: the model has %d", node, s->m->n_nodes);
    if (forward_s)
        *forward_s = s->prof[2 * node];
    if (backward_s)
        *backward_s = s->prof[2 * node + 1];
    return CNV_OK;
}
