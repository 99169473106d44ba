/* Internal model representation and the op interface: what a model stores
 * (tensors, nodes, attributes) and what every op implements (parse, plan,
 * forward, backward). See ops.c for the registry. */
#ifndef CNV_GRAPH_H
#define CNV_GRAPH_H

#include "core/base.h"
#include "core/shape.h"
#include "core/team.h"

typedef struct cnv_op cnv_op;

enum cnv_tensor_kind { CNV_T_INPUT, CNV_T_CONST, CNV_T_ACT };

typedef struct cnv_tensor_def {
    char *name;
    int kind;        /* enum cnv_tensor_kind */
    cnv_dtype dtype; /* CONST: as given; INPUT and ACT: float */
    cnv_shape shape; /* INPUT: declared (may hold -1); CONST: exact */
    void *data;      /* CONST: owned values (float or int64_t) */
    int producer;    /* ACT: index of the producing node; else -1 */
} cnv_tensor_def;

/* An attribute as the model stores it: a deep copy of the cnv_attr given
 * to cnv_model_add_node (strings and arrays owned by the node). */
typedef cnv_attr cnv_attr_def;

typedef struct cnv_node {
    char *name;
    char *op_type;
    const cnv_op *op;
    int n_in, n_out;
    int *in;  /* tensor indices; -1 for an absent optional input */
    int *out; /* tensor indices */
    int n_attrs;
    cnv_attr_def *attrs;
    void *params; /* op->params_size bytes, filled by op->parse */
} cnv_node;

struct cnv_model {
    cnv_err err;
    int64_t opset;
    int n_tensors, n_nodes;
    size_t cap_tensors, cap_nodes;
    cnv_tensor_def *tensors;
    cnv_node *nodes;
    int n_inputs, n_outputs;
    size_t cap_inputs, cap_outputs;
    int *inputs, *outputs; /* tensor indices */
    int n_meta;
    size_t cap_meta;
    char **meta_keys, **meta_values;
};

/* Index of the tensor with this name, or -1. */
int cnv_model_find(const cnv_model *m, const char *name);

/* The session's message buffer, for library code built on sessions (the
 * visualizations) to report through cnv_session_errmsg. NULL for NULL. */
cnv_err *cnv_session_err(cnv_session *s);

/* ---- attribute access for op parse functions ----
 * Each returns CNV_OK and the default when the attribute is absent, and an
 * error naming the node when it is present with the wrong type. */
const cnv_attr_def *cnv_attr_find(const cnv_node *n, const char *name);
cnv_status cnv_attr_get_int(const cnv_node *n, const char *name, int64_t dflt,
                            int64_t *out, cnv_err *e);
cnv_status cnv_attr_get_float(const cnv_node *n, const char *name, float dflt,
                              float *out, cnv_err *e);
/* *out is NULL and *count 0 when absent; the array is owned by the node. */
cnv_status cnv_attr_get_ints(const cnv_node *n, const char *name,
                             const int64_t **out, int *count, cnv_err *e);
cnv_status cnv_attr_get_string(const cnv_node *n, const char *name,
                               const char *dflt, const char **out, cnv_err *e);

/* ---- the op interface ---- */

/* One tensor as a session holds it. */
typedef struct cnv_val {
    float *data;        /* float values (activations, inputs, float consts);
                           during plan only constants have it */
    float *grad;        /* dL/d(this); NULL when no gradient is wanted */
    const int64_t *i64; /* int64 constants (shapes, pads); else NULL */
    cnv_shape shape;
    int64_t count;      /* elements */
    int is_const;       /* a model constant: value known at plan time */
} cnv_val;

#define CNV_GEOM_SIZE 512

/* Run-time options an op may consult. */
typedef struct cnv_run_opts {
    int relu_mode; /* cnv_relu_mode */
} cnv_run_opts;

/* What an op sees for one node of one session. */
typedef struct cnv_op_ctx {
    const cnv_node *node;
    const void *params;  /* node->params */
    cnv_val **in;        /* node->n_in entries; NULL for an absent input */
    cnv_val **out;       /* node->n_out entries */
    void *state;         /* state_size bytes from plan; 64-byte aligned */
    float *work;         /* shared scratch of at least work_size bytes */
    /* The session's threads, set before plan: an op may split its loops
     * over them (cnv_team_run) and size work per thread. team is NULL for
     * one thread. */
    cnv_team *team;
    int threads;
    const cnv_run_opts *opts;
    /* Backward only, one entry per input: 1 when in[k]->grad holds garbage
     * that backward must overwrite (=) instead of adding to. The executor
     * sets entries only for ops flagged CNV_OP_GRAD_STORE (it zeroes the
     * gradient itself for the others), and only for the first node that
     * writes that gradient in this backward pass. May be NULL: read it
     * with cnv_grad_store. */
    const unsigned char *grad_store;
    /* Conv only: a Relu that was fused into this node (its only consumer).
     * Forward also writes max(out[0], 0) into fused_relu->data; the Relu
     * node itself then does nothing in forward. NULL when not fused. */
    cnv_val *fused_relu;
    /* Plan-time geometry (output sizes, resolved pads, ...) that forward and
     * backward read; an op casts it to its own struct. */
    _Alignas(16) unsigned char geom[CNV_GEOM_SIZE];
} cnv_op_ctx;

/* Whether backward must overwrite in[k]->grad (see grad_store; a context
 * built without one, as op tests do, always accumulates). */
static inline int cnv_grad_store(const cnv_op_ctx *c, int k)
{
    return c->grad_store && c->grad_store[k];
}

/* cnv_op.flags: what the executor may do around an op. */
enum {
    /* backward honours cnv_op_ctx.grad_store */
    CNV_OP_GRAD_STORE = 1,
    /* no input may be absent (variadic ops); otherwise the first min_in
     * are required and the others optional */
    CNV_OP_ALL_REQUIRED = 2,
};

struct cnv_op {
    const char *type; /* ONNX op_type */
    int min_in, max_in, min_out, max_out;
    unsigned flags;   /* CNV_OP_* */
    /* Bit k set: input k is read as INT64 values (shapes, pads) at plan.
     * Every other present input must be a float tensor: the planner
     * refuses an INT64 constant there (forward reads float data, which it
     * does not have). */
    unsigned int_inputs;
    size_t params_size;
    /* Reads and checks the node's attributes into params (zeroed). May be
     * NULL when the op has no attributes. Runs once, when the node is
     * added; opset is the model's. */
    cnv_status (*parse)(const cnv_node *n, void *params, int64_t opset, cnv_err *e);
    /* Given c->in[k]->shape (and i64/data of constant inputs), sets every
     * c->out[k]->shape, fills c->geom, and reports the per-node state and
     * shared workspace it needs in bytes. Must check every shape it relies
     * on and fail with a message; forward/backward trust what plan
     * accepted. Runs at each re-plan. */
    cnv_status (*plan)(cnv_op_ctx *c, size_t *state_size, size_t *work_size,
                       cnv_err *e);
    /* Computes outputs from inputs. Must not allocate. */
    void (*forward)(cnv_op_ctx *c);
    /* Adds (+=) dL/d(in[k]) into in[k]->grad for every k whose grad is
     * non-NULL, from out[j]->grad (never NULL here). May be NULL for an op
     * with nothing differentiable (then no input may need a gradient). */
    void (*backward)(cnv_op_ctx *c);
};

/* Element-wise helpers (elementwise.c), shared by ops and the executor. */
void cnv_relu(const float *restrict x, float *restrict y, int64_t n);
/* dst += src */
void cnv_add_to(const float *restrict src, float *restrict dst, int64_t n);
/* dx += dy, or dx = dy when store (nothing when dx == dy: a Concat input
 * the planner placed inside the Concat's output gradient) */
void cnv_grad_pass(const float *dy, float *dx, int64_t n, int store);

/* Concat (concat.c): 1 when input k of a planned Concat is one contiguous
 * slice of its output, starting *offset elements in, so the planner may
 * place the input there. */
int cnv_concat_view(const cnv_op_ctx *c, int k, int64_t *offset);

/* Tests only: nonzero makes MaxPool plans take the SSE2 register path
 * even on a CPU with AVX2 (pool.c). */
extern int cnv_maxpool_no_avx2;

/* The registry: the op for an ONNX op_type, or NULL. */
const cnv_op *cnv_op_find(const char *type);
/* The registry in order (for docs and `info`). */
int cnv_op_count(void);
const cnv_op *cnv_op_at(int i);

#endif
