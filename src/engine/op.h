/* The op interface: what every op implements (parse, plan, forward,
 * backward) and what it declares about itself (flags, an epilogue it can
 * be, inputs that can live inside its output, its FLOPs). The planner and
 * the model queries consume the declarations; no code outside the ONNX
 * reader and the registry asks which op a node is. */
#ifndef CNV_OP_H
#define CNV_OP_H

#include "core/team.h"
#include "engine/model.h"

/* One tensor as a session holds it. */
typedef struct cnv_val {
    float *data;        /* float values (activations, inputs, float consts);
                           during plan only constants have it */
    float *grad;        /* dL/d(this); NULL when no gradient is wanted */
    const int64_t *i64; /* int64 constants (shapes, pads); else NULL */
    cnv_shape shape;
    int64_t count;      /* elements */
    int is_const;       /* known at plan time: a model constant, or folded
                           (cnv_op.fold) */
} cnv_val;

/* Where folded values live (plan.c): blocks freed with the plan. */
typedef struct cnv_fold_arena cnv_fold_arena;

#define CNV_GEOM_SIZE 512

/* Run-time options an op may consult. */
typedef struct cnv_run_opts {
    int relu_mode; /* cnv_relu_mode */
} cnv_run_opts;

/* y[i] = f(x[i]) for n values: the forward of an op that declares itself
 * an epilogue (cnv_op.epilogue). geom is its node's plan-time geometry
 * (cnv_op_ctx.geom: Clip's bounds, an activation's constants). */
typedef void (*cnv_pointwise_fn)(const float *restrict x, float *restrict y, int64_t n,
                                 const void *geom);

/* An epilogue the planner fused into a producer (an op flagged
 * CNV_OP_TAKES_EPILOGUE): its forward also writes fn(y) into out, block by
 * block while each block of its output y is in cache, at y's offsets; the
 * consumer node then does nothing in forward. fn is NULL when none. */
typedef struct cnv_epilogue {
    cnv_pointwise_fn fn;
    const void *geom; /* the consumer's cnv_op_ctx.geom */
    cnv_val *out;
} cnv_epilogue;

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
    cnv_epilogue epilogue; /* CNV_OP_TAKES_EPILOGUE ops only */
    /* CNV_OP_TAKES_SIGMOID ops only: 1 + the input that is a
     * CNV_OP_SIGMOID of the other input (x * Sigmoid(x)), when that
     * Sigmoid feeds nothing else; backward then does the Sigmoid's too
     * (plan.c, plan_swish). 0: no. */
    int fused_sigmoid;
    cnv_fold_arena *arena; /* plan time only: for cnv_fold_values */
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

/* cnv_op.flags */
enum {
    /* backward honours cnv_op_ctx.grad_store */
    CNV_OP_GRAD_STORE = 1 << 0,
    /* no input may be absent (variadic ops); otherwise the first min_in
     * are required and the others optional */
    CNV_OP_ALL_REQUIRED = 1 << 1,
    /* forward applies cnv_op_ctx.epilogue to out[0] when it is set */
    CNV_OP_TAKES_EPILOGUE = 1 << 2,
    /* What a node means to someone looking at the model (the layer queries
     * of engine/query.c): a pointwise activation, whose input is the
     * pre-activation; an op that computes learned features (a convolution);
     * an op that turns class scores into probabilities (the model's raw
     * scores are then its input). */
    CNV_OP_ACTIVATION = 1 << 3,
    CNV_OP_FEATURES = 1 << 4,
    CNV_OP_PROBABILITIES = 1 << 5,
    /* fold reads only its inputs' shapes (Shape): it is tried whatever
     * the inputs hold */
    CNV_OP_FOLD_SHAPES = 1 << 6,
    /* x * Sigmoid(x) (SiLU): the op is the logistic function, and the op
     * whose backward can do its backward too (cnv_op_ctx.fused_sigmoid:
     * Mul) */
    CNV_OP_SIGMOID = 1 << 7,
    CNV_OP_TAKES_SIGMOID = 1 << 8,
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
     * accepted. Runs at each re-plan, and in shapes-only passes (no data,
     * no team), so it must not depend on either. */
    cnv_status (*plan)(cnv_op_ctx *c, size_t *state_size, size_t *work_size,
                       cnv_err *e);
    /* Computes outputs from inputs. Must not allocate. */
    void (*forward)(cnv_op_ctx *c);
    /* Adds (+=) dL/d(in[k]) into in[k]->grad for every k whose grad is
     * non-NULL, from out[j]->grad (never NULL here). May be NULL for an op
     * with nothing differentiable (then no input may need a gradient). */
    void (*backward)(cnv_op_ctx *c);

    /* Optional declarations. */
    /* The op's forward is out[0] = epilogue(in[0]) element by element, so
     * the producer of in[0] may do it (CNV_OP_TAKES_EPILOGUE). */
    cnv_pointwise_fn epilogue;
    /* 1 when input k of the planned node is one contiguous slice of
     * out[0], *offset elements in (Concat): the planner may then place the
     * input there, and forward finds it in place. */
    int (*input_view)(const cnv_op_ctx *c, int k, int64_t *offset);
    /* The floating-point operations of one forward pass of the planned
     * node, for ops made of multiply-adds (a multiply-add counts 2); NULL
     * for the others, whose cost is their memory traffic. */
    double (*flops)(const cnv_op_ctx *c);
    /* Plan-time evaluation: shape arithmetic (Shape, Gather, Concat, ...
     * on INT64 values, as exports compute Reshape targets) and ops on
     * constants (an Identity or Cast of a weight). The planner calls it
     * instead of plan when every present input is known at plan time and
     * none needs a gradient (or always, with CNV_OP_FOLD_SHAPES). It either
     * sets every out[k]'s shape and values (cnv_fold_values, or
     * cnv_fold_alias) and *done = 1, or leaves *done 0 and plan runs.
     * A folded node does nothing in forward or backward. */
    cnv_status (*fold)(cnv_op_ctx *c, int *done, cnv_err *e);
};

/* For fold: *values gets room for out's values (out->shape set first), as
 * INT64 when i64 is nonzero, else float; out becomes known at plan time.
 * Fails when the plan's folded values would pass their limit. */
cnv_status cnv_fold_values(cnv_op_ctx *c, cnv_val *out, int i64, void **values, cnv_err *e);
/* For fold: out takes in's shape and values (borrowed) and becomes known
 * at plan time. */
void cnv_fold_alias(cnv_val *out, const cnv_val *in);

/* The registry (registry.c): the op for an ONNX op_type, or NULL. */
const cnv_op *cnv_op_find(const char *type);
/* The registry in order (for docs and `info`). */
int cnv_op_count(void);
const cnv_op *cnv_op_at(int i);

#endif
