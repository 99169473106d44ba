/* The session as the planner (plan.c) and the executor (session.c) share
 * it, and the one internal call the layers above make on it. */
#ifndef CNV_SESSION_H
#define CNV_SESSION_H

#include "engine/engine.h"
#include "engine/op.h"

struct cnv_session {
    cnv_err err;
    const cnv_model *m;
    cnv_run_opts opts;
    /* Asked for; each takes effect at the next plan. */
    int param_grads, profiling, threads_asked, target;

    /* The plan. When planned is 0, every pointer below is NULL. */
    int planned;
    int planned_param_grads, planned_threads, planned_target;
    cnv_team *team; /* the plan's threads; NULL for one (kept across plans) */
    void *book;     /* the bookkeeping arrays below: one allocation */
    void *data;     /* values and gradients: one allocation */
    void *state;    /* every node's op state: one allocation */
    void *work;     /* the workspace the nodes share */
    cnv_shape *in_shapes;    /* per graph input: its planned shape */
    cnv_val *vals;           /* per tensor */
    cnv_val **io;            /* per node: its in, then its out pointers */
    cnv_op_ctx *ctx;         /* per node */
    unsigned char *store;    /* per node input, laid out like io: grad_store */
    unsigned char *repeat;   /* per node input, laid out like io: the tensor
                                is also another input of the same node */
    unsigned char *tmark;    /* per tensor: scratch marks of forward_to/backward */
    unsigned char *nmark;    /* per node: likewise */
    unsigned char *valid;    /* per tensor: computed by the last forward */
    unsigned char *has_grad; /* per tensor: the plan gave it a gradient */
    unsigned char *unplanned; /* per node: past the plan target */
    unsigned char *gready;   /* per tensor: written in this backward */
    unsigned char *idle;     /* per node: nothing to do in forward (folded
                                at plan time, or an epilogue its producer
                                runs) */
    int *bwd_by;             /* per node: the node whose backward does
                                this one's (a Sigmoid in x * Sigmoid(x)),
                                or -1 */
    cnv_fold_arena *folds;   /* values folded at plan time */
    double *prof;            /* per node: forward and backward seconds;
                                NULL unless profiling */
};

/* Plans s for these input shapes unless that plan is in place (plan.c);
 * n >= 0 and shapes holds n shapes. */
cnv_status cnv_session_plan_now(cnv_session *s, int n, const cnv_shape *shapes);
/* Releases the plan, not the team (plan.c). */
void cnv_session_drop_plan(cnv_session *s);

#endif
