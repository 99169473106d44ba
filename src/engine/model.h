/* The model as the engine stores it: named tensors, nodes with deep-copied
 * attributes and their op, metadata, and the name indexes. Built through
 * the public cnv_model_add_* calls (the ONNX reader and the trainer's
 * builder use them too); read-only once sessions run on it. */
#ifndef CNV_MODEL_H
#define CNV_MODEL_H

#include "core/base.h"
#include "core/shape.h"
#include "core/strmap.h"

typedef struct cnv_op cnv_op;

enum cnv_tensor_kind { CNV_T_INPUT, CNV_T_CONST, CNV_T_ACT };

typedef struct cnv_tensor_def {
    char *name;
    int kind;        /* enum cnv_tensor_kind */
    cnv_dtype dtype; /* CONST: as given; INPUT and ACT: float */
    cnv_shape shape; /* INPUT: declared (may hold -1); CONST: exact */
    void *data;      /* CONST: owned values (float or int64_t) */
    int producer;    /* ACT: index of the producing node; else -1 */
    int activated;   /* read by an activation node (CNV_OP_ACTIVATION) */
    int in_blob;     /* CONST: data lies inside cnv_model.blob (not freed
                        on its own) */
    int file_type;   /* graph inputs and outputs: the ONNX element type the
                        file declared (FLOAT16 and DOUBLE run as float), so
                        a model written back says the same; 0 when none */
} cnv_tensor_def;

/* An attribute as the model stores it: a deep copy of the cnv_attr given
 * to cnv_model_add_node (strings and arrays owned by the node). */
typedef cnv_attr cnv_attr_def;

typedef struct cnv_node {
    char *name;
    const cnv_op *op; /* op->type is the node's op type */
    int n_in, n_out;
    int *in;  /* tensor indices; -1 for an absent optional input */
    int *out; /* tensor indices */
    int n_attrs;
    cnv_attr_def *attrs;
    void *params; /* op->params_size bytes, filled by op->parse */
} cnv_node;

/* Class names, parsed from the cnnviz.labels metadata whenever it is set
 * (labels.c): a copy of the text with its lines cut in place, and a
 * pointer to each. */
typedef struct cnv_labels {
    char *text;
    const char **names;
    int n;
} cnv_labels;

struct cnv_model {
    cnv_err err;
    int64_t opset;
    int n_tensors, n_nodes;
    size_t cap_tensors, cap_nodes;
    cnv_tensor_def *tensors;
    cnv_strmap tensor_index; /* name -> tensor index */
    cnv_node *nodes;
    int n_inputs, n_outputs;
    size_t cap_inputs, cap_outputs;
    int *inputs, *outputs; /* tensor indices */
    int n_meta;
    size_t cap_meta, meta_bytes; /* meta_bytes: keys and values, for CNV_MAX_META_BYTES */
    struct cnv_meta { char *key, *value; } *meta;
    cnv_strmap meta_index; /* key -> metadata index */
    cnv_labels labels;
    void *blob; /* the file a model was read from, when constants' values
                   lie inside it (the ONNX reader's, freed with the model) */
};

/* Index of the tensor with this name, or -1. */
int cnv_model_find(const cnv_model *m, const char *name);
/* cnv_model_add_const for values that need no copy: in a buffer of their
 * own (cnv_malloc'd, as the ONNX reader decodes them), which the model
 * takes, also when it fails (it is then freed); or, in_blob set, inside
 * the buffer the model keeps as m->blob (set by the caller, before or
 * after), which is freed only with it. */
cnv_status cnv_model_add_const_take(cnv_model *m, const char *name, cnv_dtype dtype, const cnv_shape *shape,
                                    void *data, int in_blob);
/* Constant t becomes a graph input of this declared shape, its values
 * dropped (an ONNX input whose initializer is only a default). */
cnv_status cnv_model_const_to_input(cnv_model *m, int t, const cnv_shape *shape);

/* Whether cnv_model_add_node knows op_type (the ONNX reader checks a
 * file's ops before it decodes the weights). */
int cnv_model_op_known(const char *op_type);

/* The metadata key whose value holds the class names. */
#define CNV_META_LABELS "cnnviz.labels"
/* Parses a cnnviz.labels text into *l (labels.c). On failure *l is
 * untouched and e says why (too many lines, out of memory). */
cnv_status cnv_labels_parse(const char *text, cnv_labels *l, cnv_err *e);
void cnv_labels_free(cnv_labels *l);

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

#endif
