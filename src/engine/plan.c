/* The planner: from input shapes to every tensor's shape, each node's
 * geometry, the rewrites the ops' declarations allow (fused epilogues,
 * inputs placed inside their consumer's output), and the arenas of every
 * value, gradient, op state and the shared workspace. The same shapes step
 * also runs alone, without a session (cnv_model_infer_shapes). */
#include <string.h>

#include <cblas.h>

#include "engine/session.h"

#define ALIGN 64

/* ------------------------------------------------------------- carving */

/* Lays arrays out in one block: a first pass with base NULL measures, a
 * second one over the allocated block hands out the pointers. */
typedef struct carve {
    unsigned char *base;
    size_t used;
    int ok; /* no size overflowed */
} carve;

static void *take(carve *c, size_t count, size_t elem)
{
    size_t off, bytes;
    if (!cnv_add_size(c->used, ALIGN - 1, &off) || !cnv_mul_size(count, elem, &bytes) ||
        !cnv_add_size(off & ~(size_t)(ALIGN - 1), bytes, &c->used)) {
        c->ok = 0;
        return NULL;
    }
    off &= ~(size_t)(ALIGN - 1);
    return c->base ? c->base + off : NULL;
}

/* Rounds a byte count up to the alignment; 0 on overflow. */
static int round_up(size_t n, size_t *out)
{
    return cnv_add_size(n, ALIGN - 1, out) && ((*out &= ~(size_t)(ALIGN - 1)), 1);
}

/* ------------------------------------------------------- folded values */

/* Shape arithmetic folds to a few dozen small vectors; a file that asks for
 * more (a ConstantOfShape of a huge shape) is refused rather than
 * allocated. */
#define FOLD_MAX_BYTES ((size_t)64 << 20)

/* data holds INT64 or float values: malloc's alignment with next padded
 * to 16 bytes serves both. */
typedef struct fold_block {
    struct fold_block *next;
    void *pad;
    unsigned char data[];
} fold_block;

struct cnv_fold_arena {
    fold_block *head;
    size_t total;
};

cnv_status cnv_fold_values(cnv_op_ctx *c, cnv_val *out, int i64, void **values, cnv_err *e)
{
    cnv_fold_arena *a = c->arena;
    int64_t count = cnv_shape_count(&out->shape);
    size_t bytes;
    *values = NULL;
    if (count < 0 || !cnv_mul_size((size_t)count, 8, &bytes) || !cnv_add_size(a->total, bytes, &a->total) ||
        a->total > FOLD_MAX_BYTES)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "the values computed at plan time pass %zu MiB",
                        FOLD_MAX_BYTES >> 20);
    fold_block *b = cnv_malloc(sizeof *b + (bytes ? bytes : 1));
    if (!b)
        return cnv_fail(e, CNV_ERR_NOMEM, "out of memory folding a node at plan time");
    b->next = a->head;
    a->head = b;
    out->count = count;
    out->is_const = 1;
    out->data = i64 ? NULL : (float *)b->data;
    out->i64 = i64 ? (const int64_t *)b->data : NULL;
    *values = b->data;
    return CNV_OK;
}

void cnv_fold_alias(cnv_val *out, const cnv_val *in)
{
    out->shape = in->shape;
    out->count = in->count;
    out->data = in->data;
    out->i64 = in->i64;
    out->is_const = 1;
}

static void fold_arena_free(cnv_fold_arena *a)
{
    while (a->head) {
        fold_block *b = a->head;
        a->head = b->next;
        cnv_free(b);
    }
    a->total = 0;
}

/* -------------------------------------------------------------- shapes */

/* What the shapes step works on: one context and pointer array per node
 * (a session keeps them), or a single one reused by every node (a
 * shapes-only pass, which keeps nothing). */
typedef struct infer_job {
    const cnv_model *m;
    const cnv_shape *in_shapes;
    cnv_val *vals;           /* per tensor */
    cnv_val **io;            /* per node, or the widest node's */
    cnv_op_ctx *ctx;         /* per node, or one */
    unsigned char *store;    /* laid out like io; NULL: none */
    int per_node;
    cnv_team *team;
    const cnv_run_opts *opts;
    size_t *state_size;      /* per node; NULL: not wanted */
    size_t work_max;         /* out: the largest workspace asked for */
    double *flops;           /* per node; NULL: not wanted */
    int param_grads;         /* float constants need gradients: keep
                                the nodes that read them */
    cnv_fold_arena *arena;   /* folded values */
    unsigned char *folded;   /* per node: folded at plan time; NULL: not wanted */
    unsigned char *skip;     /* per node: past the plan target, not planned;
                                NULL: plan every node */
    cnv_err *err;
} infer_job;

/* Whether node n may be folded: its op can, and every present input is
 * known at plan time and needs no gradient. */
static int foldable(const infer_job *j, const cnv_node *n, const cnv_op_ctx *c)
{
    if (!n->op->fold)
        return 0;
    if (n->op->flags & CNV_OP_FOLD_SHAPES)
        return 1;
    for (int k = 0; k < n->n_in; k++) {
        const cnv_val *v = c->in[k];
        if (v && (!v->is_const || (j->param_grads && v->data && j->m->tensors[n->in[k]].kind == CNV_T_CONST)))
            return 0;
    }
    return 1;
}

/* Shapes: inputs as given, constants as stored, activations by each op's
 * plan, in node order (every node comes after its inputs' producers). */
static cnv_status infer(infer_job *j)
{
    const cnv_model *m = j->m;
    for (int i = 0; i < m->n_inputs; i++) {
        j->vals[m->inputs[i]].shape = j->in_shapes[i];
        j->vals[m->inputs[i]].count = cnv_shape_count(&j->in_shapes[i]);
    }
    for (int t = 0; t < m->n_tensors; t++) {
        const cnv_tensor_def *d = &m->tensors[t];
        cnv_val *v = &j->vals[t];
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
    size_t io_used = 0;
    j->work_max = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const cnv_node *n = &m->nodes[i];
        cnv_op_ctx *c = j->per_node ? &j->ctx[i] : j->ctx;
        size_t at = j->per_node ? io_used : 0;
        io_used += (size_t)n->n_in + (size_t)n->n_out;
        if (j->skip && j->skip[i]) {
            if (j->folded)
                j->folded[i] = 1; /* idle */
            continue;
        }
        memset(c, 0, sizeof *c);
        c->node = n;
        c->params = n->params;
        c->opts = j->opts;
        c->team = j->team;
        c->threads = cnv_team_size(j->team);
        c->in = j->io + at;
        c->out = c->in + n->n_in;
        c->grad_store = j->store ? j->store + at : NULL;
        for (int k = 0; k < n->n_in; k++)
            c->in[k] = n->in[k] >= 0 ? &j->vals[n->in[k]] : NULL;
        for (int k = 0; k < n->n_out; k++)
            c->out[k] = &j->vals[n->out[k]];
        size_t state = 0, work = 0;
        cnv_err e;
        cnv_err_clear(&e);
        int done = 0;
        cnv_status st = CNV_OK;
        if (foldable(j, n, c)) {
            c->arena = j->arena;
            st = n->op->fold(c, &done, &e);
            c->arena = NULL;
        }
        for (int k = 0; st == CNV_OK && !done && k < n->n_in; k++)
            if (c->in[k] && !(k < 32 && (n->op->int_inputs >> k & 1)) && c->in[k]->i64)
                return cnv_fail(j->err, CNV_ERR_UNSUPPORTED,
                                "node '%s' (%s): input %d ('%s') holds INT64 values; a float tensor is needed",
                                n->name, n->op->type, k, m->tensors[n->in[k]].name);
        if (st == CNV_OK && !done)
            st = n->op->plan(c, &state, &work, &e);
        if (st != CNV_OK)
            return cnv_fail(j->err, st, "node '%s' (%s): %s", n->name, n->op->type, e.msg);
        if (j->folded)
            j->folded[i] = (unsigned char)done;
        for (int k = 0; k < n->n_out; k++) {
            cnv_val *v = c->out[k];
            v->count = cnv_shape_count(&v->shape);
            if (!cnv_shape_ok(&v->shape)) {
                char buf[128];
                return cnv_fail(j->err, CNV_ERR_SHAPE, "node '%s' (%s): output '%s' of shape %s is too large",
                                n->name, n->op->type, m->tensors[n->out[k]].name,
                                cnv_shape_str(&v->shape, buf, sizeof buf));
            }
        }
        if (j->state_size)
            j->state_size[i] = state;
        if (work > j->work_max)
            j->work_max = work;
        if (j->flops)
            j->flops[i] = n->op->flops && !done ? n->op->flops(c) : 0.0;
    }
    return CNV_OK;
}

static cnv_status check_input_shapes(const cnv_model *m, int n, const cnv_shape *shapes, cnv_err *err)
{
    if (n != m->n_inputs)
        return cnv_fail(err, CNV_ERR_SHAPE, "the model has %d inputs, %d shapes given", m->n_inputs, n);
    for (int i = 0; i < n; i++) {
        const cnv_tensor_def *t = &m->tensors[m->inputs[i]];
        const cnv_shape *g = &shapes[i];
        char want[128], got[128];
        if (g->ndim < 0 || g->ndim > CNV_MAX_DIMS)
            return cnv_fail(err, CNV_ERR_INVALID_ARG, "input '%s': rank %d (0..%d)", t->name, g->ndim,
                            CNV_MAX_DIMS);
        for (int d = 0; g->ndim == t->shape.ndim && d < g->ndim; d++)
            if (g->dims[d] == 0)
                return cnv_fail(err, CNV_ERR_UNSUPPORTED,
                                "input '%s': dimension %d is 0; empty tensors are not supported", t->name, d);
        int ok = g->ndim == t->shape.ndim;
        for (int d = 0; ok && d < g->ndim; d++)
            ok = g->dims[d] >= 1 && (t->shape.dims[d] == -1 || t->shape.dims[d] == g->dims[d]);
        int64_t count = ok ? cnv_shape_count(g) : -1;
        if (!ok || count < 0 || count > CNV_MAX_ELEMS)
            return cnv_fail(err, CNV_ERR_SHAPE, "input '%s': shape %s does not fit the declared %s", t->name,
                            cnv_shape_str(g, got, sizeof got), cnv_shape_str(&t->shape, want, sizeof want));
    }
    return CNV_OK;
}

/* Pointers to every node's inputs and outputs, back to back. */
static size_t io_count(const cnv_model *m)
{
    size_t nio = 0;
    for (int i = 0; i < m->n_nodes; i++)
        nio += (size_t)m->nodes[i].n_in + (size_t)m->nodes[i].n_out;
    return nio;
}

cnv_status cnv_model_infer_shapes(const cnv_model *m, int n_inputs, const cnv_shape *inputs,
                                  cnv_shape *shapes, int n_shapes, double *flops, int n_flops,
                                  char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!m || n_inputs < 0 || (n_inputs && !inputs) || (shapes && n_shapes != m->n_tensors) ||
        (flops && n_flops != m->n_nodes))
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG,
                               "cnv_model_infer_shapes: %d shapes and %d FLOP counts for a model of %d tensors "
                               "and %d nodes",
                               n_shapes, n_flops, m ? m->n_tensors : 0, m ? m->n_nodes : 0);
    cnv_err e;
    cnv_err_clear(&e);
    cnv_status st = check_input_shapes(m, n_inputs, inputs, &e);
    if (st != CNV_OK)
        return cnv_errbuf_fail(errbuf, errlen, st, "%s", e.msg);
    size_t widest = 1;
    for (int i = 0; i < m->n_nodes; i++)
        if ((size_t)m->nodes[i].n_in + (size_t)m->nodes[i].n_out > widest)
            widest = (size_t)m->nodes[i].n_in + (size_t)m->nodes[i].n_out;
    cnv_run_opts opts = {0};
    cnv_fold_arena arena = {0};
    infer_job j = {.m = m, .in_shapes = inputs, .opts = &opts, .flops = flops, .arena = &arena, .err = &e};
    carve c = {NULL, 0, 1};
    unsigned char *block = NULL;
    for (;;) {
        j.vals = take(&c, (size_t)m->n_tensors + 1, sizeof *j.vals);
        j.io = take(&c, widest, sizeof *j.io);
        j.ctx = take(&c, 1, sizeof *j.ctx);
        if (block)
            break;
        if (!c.ok || !(block = cnv_calloc(1, c.used)))
            return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_NOMEM, "out of memory inferring shapes");
        c = (carve){block, 0, 1};
    }
    st = infer(&j);
    for (int t = 0; st == CNV_OK && shapes && t < m->n_tensors; t++)
        shapes[t] = j.vals[t].shape;
    fold_arena_free(&arena);
    cnv_free(block);
    return st == CNV_OK ? CNV_OK : cnv_errbuf_fail(errbuf, errlen, st, "%s", e.msg);
}

/* ------------------------------------------------------------ sessions */

/* The plan-time arrays that the session does not keep. */
typedef struct plan_tmp {
    size_t *state_size; /* per node */
    int *uses;          /* per tensor: how many node inputs read it */
    int *view;          /* per tensor: the output it lives inside, or -1 */
    int64_t *view_off;  /* per tensor: its offset there, in elements */
    unsigned char *gview; /* per tensor: its gradient lives there too */
} plan_tmp;

/* Hands out the session's bookkeeping and the plan-time arrays from one
 * block (base NULL: measures only). */
static void carve_book(cnv_session *s, plan_tmp *t, carve *c, int n_in)
{
    const cnv_model *m = s->m;
    size_t nt = (size_t)m->n_tensors + 1, nn = (size_t)m->n_nodes + 1, nio = io_count(m) + 1;
    s->in_shapes = take(c, (size_t)n_in + 1, sizeof *s->in_shapes);
    s->vals = take(c, nt, sizeof *s->vals);
    s->io = take(c, nio, sizeof *s->io);
    s->ctx = take(c, nn, sizeof *s->ctx);
    s->store = take(c, nio, 1);
    s->repeat = take(c, nio, 1);
    s->tmark = take(c, nt, 1);
    s->nmark = take(c, nn, 1);
    s->valid = take(c, nt, 1);
    s->has_grad = take(c, nt, 1);
    s->unplanned = take(c, nn, 1);
    s->gready = take(c, nt, 1);
    s->idle = take(c, nn, 1);
    s->bwd_by = take(c, nn, sizeof *s->bwd_by);
    s->prof = s->profiling ? take(c, 2 * nn, sizeof *s->prof) : NULL;
    t->state_size = take(c, nn, sizeof *t->state_size);
    t->uses = take(c, nt, sizeof *t->uses);
    t->view = take(c, nt, sizeof *t->view);
    t->view_off = take(c, nt, sizeof *t->view_off);
    t->gview = take(c, nt, 1);
}

static cnv_status alloc_book(cnv_session *s, plan_tmp *t, int n_in)
{
    carve c = {NULL, 0, 1};
    carve_book(s, t, &c, n_in);
    if (!c.ok || !(s->book = cnv_calloc(1, c.used)))
        return cnv_fail(&s->err, CNV_ERR_NOMEM, "out of memory planning");
    c = (carve){s->book, 0, 1};
    carve_book(s, t, &c, n_in);
    return CNV_OK;
}

void cnv_session_drop_plan(cnv_session *s)
{
    cnv_free(s->book);
    cnv_free(s->data);
    cnv_free(s->state);
    cnv_free(s->work);
    s->book = s->data = s->state = s->work = NULL;
    s->in_shapes = NULL;
    s->vals = NULL;
    s->io = NULL;
    s->ctx = NULL;
    s->store = s->repeat = s->tmark = s->nmark = s->valid = s->has_grad = s->gready = s->idle = s->unplanned =
        NULL;
    s->bwd_by = NULL;
    if (s->folds) {
        fold_arena_free(s->folds);
        cnv_free(s->folds);
        s->folds = NULL;
    }
    s->prof = NULL;
    s->planned = 0;
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

/* s->repeat: which node inputs name a tensor the node also reads at
 * another input (Concat(x, x, ...)), in one pass over the inputs with
 * count (per tensor, zero on entry and on return) as scratch. */
static void mark_repeats(cnv_session *s, int *count)
{
    const cnv_model *m = s->m;
    size_t at = 0; /* node i's inputs in the io layout */
    for (int i = 0; i < m->n_nodes; i++) {
        const cnv_node *n = &m->nodes[i];
        unsigned char *repeat = s->repeat + at;
        at += (size_t)n->n_in + (size_t)n->n_out;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                count[n->in[k]]++;
        for (int k = 0; k < n->n_in; k++)
            repeat[k] = n->in[k] >= 0 && count[n->in[k]] > 1;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                count[n->in[k]] = 0;
    }
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
        /* An op with no backward cannot pass a gradient on, nor a node
         * folded at plan time. */
        any = any && n->op->backward && !s->idle[i];
        for (int k = 0; k < n->n_out; k++)
            s->has_grad[n->out[k]] = (unsigned char)any;
    }
}

/* A node whose op is an epilogue (cnv_op.epilogue), reading the output of
 * a node whose op takes one: the producer applies it to each block of its
 * output while the block is in cache (one pass over the output instead of
 * two), and the node does nothing in forward. Both tensors keep their own
 * values, so every activation stays readable. */
static void plan_epilogues(cnv_session *s)
{
    const cnv_model *m = s->m;
    for (int j = 0; j < m->n_nodes; j++) {
        const cnv_node *r = &m->nodes[j];
        if (!r->op->epilogue || r->n_in < 1 || r->in[0] < 0 || s->idle[j])
            continue;
        int i = m->tensors[r->in[0]].producer;
        if (i < 0 || !(m->nodes[i].op->flags & CNV_OP_TAKES_EPILOGUE) || m->nodes[i].out[0] != r->in[0] ||
            s->ctx[i].epilogue.fn)
            continue;
        s->ctx[i].epilogue = (cnv_epilogue){r->op->epilogue, s->ctx[j].geom, &s->vals[r->out[0]]};
        s->idle[j] = 1;
    }
}

static int is_graph_output(const cnv_model *m, int t)
{
    for (int k = 0; k < m->n_outputs; k++)
        if (m->outputs[k] == t)
            return 1;
    return 0;
}

/* x * Sigmoid(x) (SiLU, or Swish: EfficientNet's activation), all of one
 * shape, the Sigmoid feeding nothing but this Mul: the Mul's backward does
 * the Sigmoid's as well, in one pass over the elements instead of three
 * (binary.c), adding the same terms in the same order, so no bit changes;
 * the Sigmoid output's gradient is still written. The Sigmoid's own
 * backward then runs only when the Mul's does not (a backward from the
 * Sigmoid output). */
static void plan_swish(cnv_session *s, const int *uses)
{
    const cnv_model *m = s->m;
    for (int j = 0; j < m->n_nodes; j++)
        s->bwd_by[j] = -1;
    for (int j = 0; j < m->n_nodes; j++) {
        const cnv_node *n = &m->nodes[j];
        s->ctx[j].fused_sigmoid = 0;
        if (!(n->op->flags & CNV_OP_TAKES_SIGMOID) || n->n_in != 2 || s->idle[j])
            continue;
        for (int k = 0; k < 2; k++) {
            int t = n->in[k], x = n->in[1 - k], p = t >= 0 ? m->tensors[t].producer : -1;
            if (p < 0 || x < 0 || t == x || !(m->nodes[p].op->flags & CNV_OP_SIGMOID) || m->nodes[p].in[0] != x ||
                uses[t] != 1 || is_graph_output(m, t) || !s->has_grad[x] || !s->has_grad[t] || s->bwd_by[p] >= 0 ||
                !cnv_shape_equal(&s->vals[t].shape, &s->vals[x].shape) ||
                !cnv_shape_equal(&s->vals[x].shape, &s->vals[n->out[0]].shape))
                continue;
            s->ctx[j].fused_sigmoid = k + 1;
            s->bwd_by[p] = j;
            break;
        }
    }
}

/* Inputs that can live inside their consumer's output (cnv_op.input_view):
 * t->view[x] is that output (else -1) and t->view_off[x] the offset. The
 * consumer then copies nothing in forward. When it is the input's only
 * reader, the input's gradient is the same slice of the output's
 * gradient, so t->gview[x] shares that too and backward copies nothing
 * either. */
static void plan_views(cnv_session *s, plan_tmp *t)
{
    const cnv_model *m = s->m;
    for (int x = 0; x < m->n_tensors; x++)
        t->view[x] = -1;
    for (int i = 0; i < m->n_nodes; i++) {
        const cnv_node *n = &m->nodes[i];
        if (!n->op->input_view || s->unplanned[i])
            continue;
        const unsigned char *repeat = s->repeat + (s->ctx[i].in - s->io);
        for (int k = 0; k < n->n_in; k++) {
            int x = n->in[k];
            int64_t off;
            if (x < 0 || repeat[k] || x == n->out[0] || m->tensors[x].kind != CNV_T_ACT || s->vals[x].is_const ||
                t->view[x] >= 0 ||
                !n->op->input_view(&s->ctx[i], k, &off))
                continue;
            t->view[x] = n->out[0];
            t->view_off[x] = off;
            t->gview[x] = t->uses[x] == 1 && s->has_grad[x] && s->has_grad[n->out[0]];
        }
    }
}

/* A 64-byte aligned pointer into a block allocated ALIGN bytes larger. */
static void *aligned(void *p)
{
    return (void *)(((uintptr_t)p + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
}

/* The plan's data in three blocks: the values of inputs and activations
 * with every gradient (but what lives inside another tensor), each node's
 * op state, and the workspace all nodes share. (Three, not one: one block
 * measured 2% slower on SqueezeNet's forward + backward, 1 thread.) */
static cnv_status alloc_data(cnv_session *s, const plan_tmp *t, size_t work)
{
    const cnv_model *m = s->m;
    size_t nt = (size_t)m->n_tensors, nn = (size_t)m->n_nodes;
    size_t tensors = 0, states = 0, bytes;
    for (size_t x = 0; x < nt; x++) {
        int own_value = !s->vals[x].is_const && t->view[x] < 0;
        int copies = own_value + (s->has_grad[x] && !t->gview[x]);
        for (int c = 0; c < copies; c++)
            if (!cnv_mul_size((size_t)s->vals[x].count, sizeof(float), &bytes) || !round_up(bytes, &bytes) ||
                !cnv_add_size(tensors, bytes, &tensors))
                goto too_big;
    }
    for (size_t i = 0; i < nn; i++)
        if (!round_up(t->state_size[i], &bytes) || !cnv_add_size(states, bytes, &states))
            goto too_big;
    size_t b_tensors, b_states, b_work, total, limit = cnv_get_memory_limit();
    if (!cnv_add_size(tensors, ALIGN, &b_tensors) || !cnv_add_size(states, ALIGN, &b_states) ||
        !cnv_add_size(work, ALIGN, &b_work) || !cnv_add_size(b_tensors, b_states, &total) ||
        !cnv_add_size(total, b_work, &total))
        goto too_big;
    if (total > limit)
        return cnv_fail(&s->err, CNV_ERR_NOMEM,
                        "the plan needs %.1f MiB (values and gradients %.1f, op state %.1f, workspace %.1f); "
                        "the memory limit is %.1f MiB (cnv_set_memory_limit, CNNVIZ_MAX_MEMORY)",
                        total / 1048576.0, tensors / 1048576.0, states / 1048576.0, work / 1048576.0,
                        limit / 1048576.0);
    /* zeroed: with the C library's allocator, untouched pages of a large
     * plan cost nothing until a forward writes them */
    if (!(s->data = cnv_calloc(1, b_tensors)) || !(s->state = cnv_calloc(1, b_states)) ||
        !(s->work = cnv_malloc(b_work)))
        return cnv_fail(&s->err, CNV_ERR_NOMEM,
                        "out of memory: the plan needs %zu bytes of tensors, %zu of state and %zu of workspace",
                        tensors, states, work);
    unsigned char *p = aligned(s->data);
    for (size_t x = 0; x < nt; x++) {
        round_up((size_t)s->vals[x].count * sizeof(float), &bytes);
        if (!s->vals[x].is_const && t->view[x] < 0) {
            s->vals[x].data = (float *)p;
            p += bytes;
        }
        if (s->has_grad[x] && !t->gview[x]) {
            s->vals[x].grad = (float *)p;
            p += bytes;
        }
    }
    /* An output that holds inputs may itself live in a later node's
     * output: going backwards places the outer one first. */
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        const cnv_node *n = &m->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            int x = n->in[k];
            if (x < 0 || t->view[x] != n->out[0])
                continue;
            s->vals[x].data = s->vals[t->view[x]].data + t->view_off[x];
            if (t->gview[x])
                s->vals[x].grad = s->vals[t->view[x]].grad + t->view_off[x];
        }
    }
    p = aligned(s->state);
    for (size_t i = 0; i < nn; i++) {
        s->ctx[i].state = t->state_size[i] ? p : NULL;
        s->ctx[i].work = aligned(s->work);
        round_up(t->state_size[i], &bytes);
        p += bytes;
    }
    return CNV_OK;
too_big:
    return cnv_fail(&s->err, CNV_ERR_NOMEM, "the plan for these input shapes does not fit in memory");
}

/* The same plan is in place: nothing to do. */
static int same_plan(const cnv_session *s, int n, const cnv_shape *shapes)
{
    if (!s->planned || n != s->m->n_inputs || s->planned_param_grads != s->param_grads ||
        s->planned_target != s->target ||
        !s->prof != !s->profiling || s->planned_threads != threads_wanted(s))
        return 0;
    for (int i = 0; i < n; i++)
        if (!cnv_shape_equal(&s->in_shapes[i], &shapes[i]))
            return 0;
    return 1;
}

cnv_status cnv_session_plan_now(cnv_session *s, int n, const cnv_shape *shapes)
{
    const cnv_model *m = s->m;
    if (same_plan(s, n, shapes))
        return CNV_OK;
    cnv_status st = check_input_shapes(m, n, shapes, &s->err);
    if (st != CNV_OK)
        return st;
    cnv_session_drop_plan(s);
    if ((st = ensure_team(s)) != CNV_OK)
        return st;
    s->planned_threads = threads_wanted(s);
    plan_tmp t;
    if ((st = alloc_book(s, &t, n)) != CNV_OK)
        return st;
    memcpy(s->in_shapes, shapes, (size_t)n * sizeof *shapes);
    if (!(s->folds = cnv_calloc(1, sizeof *s->folds))) {
        cnv_session_drop_plan(s);
        return cnv_fail(&s->err, CNV_ERR_NOMEM, "out of memory planning");
    }
    /* Past the target: every node whose outputs the target does not need. */
    s->planned_target = s->target;
    if (s->target >= 0) {
        unsigned char *need = s->tmark;
        memset(need, 0, (size_t)m->n_tensors);
        need[s->target] = 1;
        for (int i = m->n_nodes - 1; i >= 0; i--) {
            const cnv_node *n = &m->nodes[i];
            int hit = 0;
            for (int k = 0; k < n->n_out; k++)
                hit |= need[n->out[k]];
            s->unplanned[i] = (unsigned char)!hit;
            for (int k = 0; hit && k < n->n_in; k++)
                if (n->in[k] >= 0)
                    need[n->in[k]] = 1;
        }
    }
    infer_job j = {.m = m, .in_shapes = shapes, .vals = s->vals, .io = s->io, .ctx = s->ctx,
                   .store = s->store, .per_node = 1, .team = s->team, .opts = &s->opts,
                   .state_size = t.state_size, .param_grads = s->param_grads, .arena = s->folds,
                   .folded = s->idle, .skip = s->unplanned, .err = &s->err};
    if ((st = infer(&j)) != CNV_OK) {
        cnv_session_drop_plan(s);
        return st;
    }
    s->planned_param_grads = s->param_grads;
    mark_repeats(s, t.uses);
    mark_grads(s);
    for (int i = 0; i < m->n_nodes; i++)
        for (int k = 0; k < m->nodes[i].n_in; k++)
            if (m->nodes[i].in[k] >= 0)
                t.uses[m->nodes[i].in[k]]++;
    plan_epilogues(s);
    plan_swish(s, t.uses);
    plan_views(s, &t);
    if ((st = alloc_data(s, &t, j.work_max)) != CNV_OK) {
        cnv_session_drop_plan(s);
        return st;
    }
    s->planned = 1;
    return CNV_OK;
}
