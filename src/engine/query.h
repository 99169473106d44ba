/* Questions about a model that the layers above the engine ask (the
 * visualizations, the trainer): what a tensor is, in the terms the ops
 * declare about themselves (engine/op.h), never by op type. The public
 * ones (cnv_model_find_layer, cnv_model_layers, cnv_model_score_tensor)
 * are in query.c too. */
#ifndef CNV_QUERY_H
#define CNV_QUERY_H

#include "cnnviz.h"

/* The node that computes tensor t, or -1 (an input, a constant). */
int cnv_model_producer(const cnv_model *m, int t);

/* When tensor t is an activation's output, the activation's input (the
 * pre-activation); else -1. */
int cnv_model_pre_activation(const cnv_model *m, int t);

/* Whether node i's first output is a layer worth showing: an activation's
 * output or a feature map (what Grad-CAM and the layer sheets pick). */
int cnv_model_node_is_layer(const cnv_model *m, int i);

/* How many of node i's inputs are computed or graph inputs (not
 * constants): 2 or more for a node that joins branches (a Concat, a
 * residual Add, SiLU's Mul). */
int cnv_model_node_joins(const cnv_model *m, int i);

/* Whether tensor `from` feeds tensor `to`, directly or not. mark is
 * scratch of cnv_model_tensor_count(m) bytes. */
int cnv_model_feeds(const cnv_model *m, int from, int to, unsigned char *mark);

/* Whether every path from the graph inputs to tensor `to` passes through
 * tensor `via` (a block's output, not one of its branches): 0 when `to`
 * does not depend on an input at all. mark is scratch as above. */
int cnv_model_all_paths_through(const cnv_model *m, int via, int to, unsigned char *mark);

#endif
