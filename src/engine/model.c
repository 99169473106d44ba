/* The model: named tensors, nodes with deep-copied attributes, metadata.
 * Built through the public cnv_model_add_* calls (the ONNX reader uses the
 * same calls), read-only once sessions run on it. */
#include <stdio.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/op.h"

const char *cnv_version(void)
{
    return CNV_VERSION_STRING;
}

/* ------------------------------------------------------------ lifecycle */

cnv_status cnv_model_create(cnv_model **out)
{
    if (!out)
        return CNV_ERR_INVALID_ARG;
    *out = cnv_calloc(1, sizeof **out);
    if (!*out)
        return CNV_ERR_NOMEM;
    (*out)->opset = 13;
    return CNV_OK;
}

static void free_attr(cnv_attr_def *a)
{
    cnv_free((void *)a->name);
    cnv_free((void *)a->s);
    cnv_free((void *)a->ints);
    cnv_free((void *)a->floats);
    cnv_free((void *)a->t_data);
}

static void free_node(cnv_node *n)
{
    cnv_free(n->name);
    cnv_free(n->in);
    cnv_free(n->out);
    for (int i = 0; i < n->n_attrs; i++)
        free_attr(&n->attrs[i]);
    cnv_free(n->attrs);
    cnv_free(n->params);
}

void cnv_model_free(cnv_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_tensors; i++) {
        cnv_free(m->tensors[i].name);
        if (!m->tensors[i].in_blob)
            cnv_free(m->tensors[i].data);
    }
    cnv_free(m->blob);
    for (int i = 0; i < m->n_nodes; i++)
        free_node(&m->nodes[i]);
    for (int i = 0; i < m->n_meta; i++) {
        cnv_free(m->meta[i].key);
        cnv_free(m->meta[i].value);
    }
    cnv_free(m->tensors);
    cnv_free(m->nodes);
    cnv_free(m->inputs);
    cnv_free(m->outputs);
    cnv_free(m->meta);
    cnv_labels_free(&m->labels);
    cnv_strmap_free(&m->tensor_index);
    cnv_strmap_free(&m->meta_index);
    cnv_free(m);
}

cnv_err *cnv_model_err(cnv_model *m)
{
    return m ? &m->err : NULL;
}

const char *cnv_model_errmsg(const cnv_model *m)
{
    return m ? m->err.msg : "no model (NULL handle)";
}

cnv_status cnv_model_set_opset(cnv_model *m, int64_t version)
{
    if (!m)
        return CNV_ERR_INVALID_ARG;
    if (version < 1 || version > 1000)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "opset version %lld is not valid",
                        (long long)version);
    m->opset = version;
    return CNV_OK;
}

/* -------------------------------------------------------------- tensors */

int cnv_model_find(const cnv_model *m, const char *name)
{
    return cnv_strmap_get(&m->tensor_index, name);
}

int cnv_model_tensor_count(const cnv_model *m)
{
    return m ? m->n_tensors : 0;
}

int cnv_model_tensor_index(const cnv_model *m, const char *name)
{
    return m && name ? cnv_model_find(m, name) : -1;
}

const char *cnv_model_tensor_name(const cnv_model *m, int t)
{
    return m && t >= 0 && t < m->n_tensors ? m->tensors[t].name : NULL;
}

static cnv_status check_name(cnv_model *m, const char *name, const char *what)
{
    if (!name || !name[0])
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "%s needs a non-empty name", what);
    if (cnv_model_find(m, name) >= 0)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "%s '%s': a tensor of that name exists already",
                        what, name);
    return CNV_OK;
}

static cnv_status check_shape(cnv_model *m, const char *name, const cnv_shape *s, int allow_unknown)
{
    if (!s || s->ndim < 0 || s->ndim > CNV_MAX_DIMS)
        return cnv_fail(&m->err, CNV_ERR_SHAPE, "tensor '%s': rank must be 0..%d", name,
                        CNV_MAX_DIMS);
    for (int i = 0; i < s->ndim; i++)
        if (s->dims[i] < 0 && !(allow_unknown && s->dims[i] == -1))
            return cnv_fail(&m->err, CNV_ERR_SHAPE, "tensor '%s': dimension %d is %lld", name, i,
                            (long long)s->dims[i]);
    return CNV_OK;
}

/* Appends a tensor and returns its index, or -1 when memory ran out. */
/* Fails unless `more` tensors fit within CNV_MAX_TENSORS (what: for the
 * message). */
static cnv_status tensor_room(cnv_model *m, const char *what, int more)
{
    if (m->n_tensors > CNV_MAX_TENSORS - more)
        return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED, "%s: the model would have more than %d tensors (the limit)",
                        what, CNV_MAX_TENSORS);
    return CNV_OK;
}

static int push_tensor(cnv_model *m, const char *name, int kind)
{
    if (!cnv_grow((void **)&m->tensors, &m->cap_tensors, (size_t)m->n_tensors + 1,
                  sizeof *m->tensors))
        return -1;
    cnv_tensor_def *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = cnv_strdup(name);
    if (!t->name || !cnv_strmap_put(&m->tensor_index, t->name, m->n_tensors)) {
        cnv_free(t->name);
        return -1;
    }
    t->kind = kind;
    t->dtype = CNV_FLOAT32;
    t->producer = -1;
    return m->n_tensors++;
}

/* Removes the last tensor (a node that failed halfway). */
static void pop_tensor(cnv_model *m)
{
    cnv_tensor_def *t = &m->tensors[--m->n_tensors];
    cnv_strmap_del(&m->tensor_index, t->name);
    cnv_free(t->name);
}

static int push_index(int **arr, size_t *cap, int *n, int v)
{
    if (!cnv_grow((void **)arr, cap, (size_t)*n + 1, sizeof **arr))
        return 0;
    (*arr)[(*n)++] = v;
    return 1;
}

cnv_status cnv_model_add_input(cnv_model *m, const char *name, const cnv_shape *shape)
{
    if (!m)
        return CNV_ERR_INVALID_ARG;
    cnv_status st = check_name(m, name, "input");
    if (st == CNV_OK)
        st = check_shape(m, name, shape, 1);
    if (st == CNV_OK)
        st = tensor_room(m, name, 1);
    if (st != CNV_OK)
        return st;
    if (!cnv_grow((void **)&m->inputs, &m->cap_inputs, (size_t)m->n_inputs + 1,
                  sizeof *m->inputs))
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory adding input '%s'", name);
    int t = push_tensor(m, name, CNV_T_INPUT);
    if (t < 0)
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory adding input '%s'", name);
    m->tensors[t].shape = *shape;
    m->inputs[m->n_inputs++] = t;
    return CNV_OK;
}

/* Checks a constant; *bytes gets the size of its values. */
static cnv_status check_const(cnv_model *m, const char *name, cnv_dtype dtype, const cnv_shape *shape,
                              const void *data, size_t *bytes)
{
    cnv_status st = check_name(m, name, "constant");
    if (st == CNV_OK)
        st = check_shape(m, name, shape, 0);
    if (st != CNV_OK)
        return st;
    if (dtype != CNV_FLOAT32 && dtype != CNV_INT64)
        return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED, "constant '%s': data type %d is not supported",
                        name, (int)dtype);
    int64_t count = cnv_shape_count(shape);
    if (!cnv_shape_ok(shape) || !cnv_mul_size((size_t)count, dtype == CNV_INT64 ? 8 : 4, bytes))
        return cnv_fail(&m->err, CNV_ERR_SHAPE, "constant '%s': too many elements", name);
    if (count > 0 && !data)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "constant '%s': no data", name);
    return CNV_OK;
}

cnv_status cnv_model_const_to_input(cnv_model *m, int t, const cnv_shape *shape)
{
    cnv_tensor_def *d = &m->tensors[t];
    cnv_status st = check_shape(m, d->name, shape, 1);
    if (st != CNV_OK)
        return st;
    if (!cnv_grow((void **)&m->inputs, &m->cap_inputs, (size_t)m->n_inputs + 1, sizeof *m->inputs))
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory adding input '%s'", d->name);
    if (!d->in_blob)
        cnv_free(d->data);
    d->data = NULL;
    d->in_blob = 0;
    d->kind = CNV_T_INPUT;
    d->dtype = CNV_FLOAT32;
    d->shape = *shape;
    m->inputs[m->n_inputs++] = t;
    return CNV_OK;
}

cnv_status cnv_model_add_const_take(cnv_model *m, const char *name, cnv_dtype dtype, const cnv_shape *shape,
                                    void *data, int in_blob)
{
    size_t bytes;
    cnv_status st = m ? check_const(m, name, dtype, shape, data, &bytes) : CNV_ERR_INVALID_ARG;
    if (st == CNV_OK)
        st = tensor_room(m, name, 1);
    int t = st == CNV_OK ? push_tensor(m, name, CNV_T_CONST) : -1;
    if (st == CNV_OK && t < 0)
        st = cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory adding constant '%s'", name);
    if (st != CNV_OK) {
        if (!in_blob)
            cnv_free(data);
        return st;
    }
    m->tensors[t].dtype = dtype;
    m->tensors[t].shape = *shape;
    m->tensors[t].data = data;
    m->tensors[t].in_blob = in_blob;
    return CNV_OK;
}

cnv_status cnv_model_add_const(cnv_model *m, const char *name, cnv_dtype dtype,
                               const cnv_shape *shape, const void *data)
{
    if (!m)
        return CNV_ERR_INVALID_ARG;
    size_t bytes;
    cnv_status st = check_const(m, name, dtype, shape, data, &bytes);
    if (st != CNV_OK)
        return st;
    void *copy = cnv_malloc(bytes);
    if (!copy)
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory for constant '%s' (%zu bytes)", name,
                        bytes);
    if (bytes)
        memcpy(copy, data, bytes);
    return cnv_model_add_const_take(m, name, dtype, shape, copy, 0);
}

/* ---------------------------------------------------------------- nodes */

static cnv_status copy_attr(cnv_model *m, const char *node, const cnv_attr *src, cnv_attr_def *dst)
{
    memset(dst, 0, sizeof *dst);
    if (!src->name || !src->name[0])
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "node '%s': attribute without a name", node);
    dst->name = cnv_strdup(src->name);
    if (!dst->name)
        return CNV_ERR_NOMEM;
    dst->type = src->type;
    dst->n = src->n;
    switch (src->type) {
    case CNV_ATTR_INT:
        dst->i = src->i;
        return CNV_OK;
    case CNV_ATTR_FLOAT:
        dst->f = src->f;
        return CNV_OK;
    case CNV_ATTR_STRING:
        dst->s = cnv_strdup(src->s ? src->s : "");
        return dst->s ? CNV_OK : CNV_ERR_NOMEM;
    case CNV_ATTR_INTS:
    case CNV_ATTR_FLOATS: {
        if (src->n < 0 || (src->n > 0 && !(src->type == CNV_ATTR_INTS ? (const void *)src->ints
                                                                       : (const void *)src->floats)))
            return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "node '%s': attribute '%s' has no values",
                            node, src->name);
        size_t elem = src->type == CNV_ATTR_INTS ? sizeof(int64_t) : sizeof(float);
        void *p = cnv_calloc((size_t)src->n + 1, elem);
        if (!p)
            return CNV_ERR_NOMEM;
        if (src->n)
            memcpy(p, src->type == CNV_ATTR_INTS ? (const void *)src->ints : (const void *)src->floats,
                   (size_t)src->n * elem);
        if (src->type == CNV_ATTR_INTS)
            dst->ints = p;
        else
            dst->floats = p;
        return CNV_OK;
    }
    case CNV_ATTR_TENSOR: {
        int64_t count = cnv_shape_count(&src->t_shape);
        if (src->t_dtype != CNV_FLOAT32 && src->t_dtype != CNV_INT64)
            return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED, "node '%s': tensor attribute '%s' has data type %d",
                            node, src->name, (int)src->t_dtype);
        if (!cnv_shape_ok(&src->t_shape) || (count > 0 && !src->t_data))
            return cnv_fail(&m->err, CNV_ERR_SHAPE, "node '%s': tensor attribute '%s' has a bad shape",
                            node, src->name);
        size_t bytes = (size_t)count * (src->t_dtype == CNV_INT64 ? 8 : 4);
        void *p = cnv_malloc(bytes);
        if (!p)
            return CNV_ERR_NOMEM;
        if (bytes)
            memcpy(p, src->t_data, bytes);
        dst->t_dtype = src->t_dtype;
        dst->t_shape = src->t_shape;
        dst->t_data = p;
        return CNV_OK;
    }
    }
    return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED, "node '%s': attribute '%s' has unknown type %d", node,
                    src->name, (int)src->type);
}

cnv_status cnv_model_add_node(cnv_model *m, const char *op_type, const char *name, int n_inputs,
                              const char *const *inputs, int n_outputs, const char *const *outputs,
                              int n_attrs, const cnv_attr *attrs)
{
    if (!m)
        return CNV_ERR_INVALID_ARG;
    char auto_name[32];
    if (!name || !name[0]) {
        snprintf(auto_name, sizeof auto_name, "node%d", m->n_nodes);
        name = auto_name;
    }
    if (!op_type)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "node '%s': no op type", name);
    const cnv_op *op = cnv_op_find(op_type);
    if (!op)
        return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED, "node '%s': op '%s' is not supported", name,
                        op_type);
    if (n_inputs < 0 || n_outputs < 0 || n_attrs < 0 || (n_inputs && !inputs) ||
        (n_outputs && !outputs) || (n_attrs && !attrs))
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "node '%s': bad argument counts", name);
    if (m->n_nodes >= CNV_MAX_NODES)
        return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED, "node '%s': the model would have more than %d nodes (the limit)",
                        name, CNV_MAX_NODES);
    if (n_inputs > CNV_MAX_NODE_IO || n_outputs > CNV_MAX_NODE_IO || n_attrs > CNV_MAX_ATTRS)
        return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED,
                        "node '%s': %d inputs, %d outputs, %d attributes (the limits are %d, %d and %d)", name,
                        n_inputs, n_outputs, n_attrs, CNV_MAX_NODE_IO, CNV_MAX_NODE_IO, CNV_MAX_ATTRS);
    cnv_status room = tensor_room(m, name, n_outputs);
    if (room != CNV_OK)
        return room;
    /* Trailing absent optional inputs do not count. */
    while (n_inputs > 0 && (!inputs[n_inputs - 1] || !inputs[n_inputs - 1][0]))
        n_inputs--;
    if (n_inputs < op->min_in || n_inputs > op->max_in)
        return cnv_fail(&m->err, CNV_ERR_FORMAT, "node '%s' (%s): %d inputs, expected %d to %d", name,
                        op_type, n_inputs, op->min_in, op->max_in);
    if (n_outputs < op->min_out || n_outputs > op->max_out)
        return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED, "node '%s' (%s): %d outputs, supported %d to %d",
                        name, op_type, n_outputs, op->min_out, op->max_out);
    int required = op->flags & CNV_OP_ALL_REQUIRED ? n_inputs : op->min_in;
    for (int i = 0; i < n_inputs; i++) {
        if ((!inputs[i] || !inputs[i][0]) && i < required)
            return cnv_fail(&m->err, CNV_ERR_FORMAT, "node '%s' (%s): input %d is required but absent (no name)",
                            name, op_type, i);
        if (!inputs[i] || !inputs[i][0])
            continue;
        int t = cnv_model_find(m, inputs[i]);
        if (t < 0)
            return cnv_fail(&m->err, CNV_ERR_FORMAT,
                            "node '%s' (%s): input '%s' is not defined before it (undefined "
                            "name, a cycle, or nodes out of topological order)",
                            name, op_type, inputs[i]);
        if (m->tensors[t].kind != CNV_T_CONST && m->tensors[t].dtype != CNV_FLOAT32)
            return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED, "node '%s': input '%s' is not float", name,
                            inputs[i]);
    }
    for (int i = 0; i < n_outputs; i++) {
        if (!outputs[i] || !outputs[i][0])
            return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED, "node '%s' (%s): output %d has no name", name,
                            op_type, i);
        if (cnv_model_find(m, outputs[i]) >= 0)
            return cnv_fail(&m->err, CNV_ERR_FORMAT, "node '%s' (%s): output '%s' is defined twice", name,
                            op_type, outputs[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(outputs[i], outputs[j]) == 0)
                return cnv_fail(&m->err, CNV_ERR_FORMAT, "node '%s' (%s): output '%s' appears twice",
                                name, op_type, outputs[i]);
    }

    if (!cnv_grow((void **)&m->nodes, &m->cap_nodes, (size_t)m->n_nodes + 1, sizeof *m->nodes))
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory adding node '%s'", name);
    cnv_node *n = &m->nodes[m->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->name = cnv_strdup(name);
    n->in = cnv_calloc((size_t)n_inputs + 1, sizeof *n->in);
    n->out = cnv_calloc((size_t)n_outputs + 1, sizeof *n->out);
    n->attrs = cnv_calloc((size_t)n_attrs + 1, sizeof *n->attrs);
    n->params = cnv_calloc(1, op->params_size ? op->params_size : 1);
    cnv_status st = CNV_OK;
    if (!n->name || !n->in || !n->out || !n->attrs || !n->params)
        st = CNV_ERR_NOMEM;
    for (int i = 0; st == CNV_OK && i < n_attrs; i++) {
        st = copy_attr(m, name, &attrs[i], &n->attrs[i]);
        n->n_attrs = i + 1; /* so that free_node releases what was copied */
    }
    for (int i = 0; st == CNV_OK && i < n_inputs; i++)
        n->in[i] = (inputs[i] && inputs[i][0]) ? cnv_model_find(m, inputs[i]) : -1;
    n->n_in = n_inputs;
    for (int i = 0; st == CNV_OK && i < n_outputs; i++)
        n->out[i] = -1; /* parse may look at n_out; the tensors come last */
    n->n_out = n_outputs;
    if (st == CNV_OK && op->parse) {
        cnv_err e;
        cnv_err_clear(&e);
        st = op->parse(n, n->params, m->opset, &e);
        if (st != CNV_OK) {
            cnv_fail(&m->err, st, "node '%s' (%s): %s", name, op_type, e.msg);
            free_node(n);
            return st;
        }
    }
    /* Output tensors last, so a node that fails to parse leaves no trace;
     * if memory runs out here the added tensors are rolled back. */
    int added = 0;
    for (int i = 0; st == CNV_OK && i < n_outputs; i++) {
        int t = push_tensor(m, outputs[i], CNV_T_ACT);
        if (t < 0) {
            st = CNV_ERR_NOMEM;
            break;
        }
        m->tensors[t].producer = m->n_nodes;
        n->out[i] = t;
        added++;
    }
    if (st != CNV_OK) {
        /* Roll back the tensors this node added. */
        for (int i = 0; i < added; i++)
            pop_tensor(m);
        free_node(n);
        if (st == CNV_ERR_NOMEM)
            return cnv_fail(&m->err, st, "out of memory adding node '%s'", name);
        return st; /* message already set */
    }
    if ((op->flags & CNV_OP_ACTIVATION) && n->n_in > 0 && n->in[0] >= 0)
        m->tensors[n->in[0]].activated = 1;
    m->n_nodes++;
    return CNV_OK;
}

cnv_status cnv_model_add_output(cnv_model *m, const char *name)
{
    if (!m || !name)
        return CNV_ERR_INVALID_ARG;
    int t = cnv_model_find(m, name);
    if (t < 0)
        return cnv_fail(&m->err, CNV_ERR_NOT_FOUND, "graph output '%s' is not produced by any node",
                        name);
    for (int i = 0; i < m->n_outputs; i++)
        if (m->outputs[i] == t)
            return cnv_fail(&m->err, CNV_ERR_FORMAT, "graph output '%s' is listed twice", name);
    if (!push_index(&m->outputs, &m->cap_outputs, &m->n_outputs, t))
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory");
    return CNV_OK;
}

/* ------------------------------------------------------------- metadata */

cnv_status cnv_model_set_meta(cnv_model *m, const char *key, const char *value)
{
    if (!m || !key || !value)
        return CNV_ERR_INVALID_ARG;
    int i = cnv_strmap_get(&m->meta_index, key);
    size_t klen = strlen(key), vlen = strlen(value), old = i < 0 ? 0 : strlen(m->meta[i].value);
    if (i < 0 && m->n_meta >= CNV_MAX_META)
        return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED, "metadata '%.64s': more than %d entries (the limit)", key,
                        CNV_MAX_META);
    if (klen > CNV_MAX_META_BYTES || vlen > CNV_MAX_META_BYTES ||
        m->meta_bytes - old + (i < 0 ? klen : 0) + vlen > CNV_MAX_META_BYTES)
        return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED,
                        "metadata '%.64s': %zu bytes would bring the model's metadata past %ld bytes (the limit)",
                        key, vlen, (long)CNV_MAX_META_BYTES);
    cnv_labels labels = {0};
    int is_labels = strcmp(key, CNV_META_LABELS) == 0;
    cnv_status st = is_labels ? cnv_labels_parse(value, &labels, &m->err) : CNV_OK;
    if (st != CNV_OK)
        return st;
    char *v = cnv_strdup(value);
    if (!v) {
        cnv_labels_free(&labels);
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory");
    }
    if (i < 0) {
        char *k = cnv_strdup(key);
        if (!k || !cnv_grow((void **)&m->meta, &m->cap_meta, (size_t)m->n_meta + 1, sizeof *m->meta) ||
            !cnv_strmap_put(&m->meta_index, k, m->n_meta)) {
            cnv_free(k);
            cnv_free(v);
            cnv_labels_free(&labels);
            return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory");
        }
        i = m->n_meta++;
        m->meta[i].key = k;
        m->meta[i].value = NULL;
        m->meta_bytes += klen;
    }
    m->meta_bytes = m->meta_bytes - old + vlen;
    cnv_free(m->meta[i].value);
    m->meta[i].value = v;
    if (is_labels) {
        cnv_labels_free(&m->labels);
        m->labels = labels;
    }
    return CNV_OK;
}

const char *cnv_model_get_meta(const cnv_model *m, const char *key)
{
    if (!m || !key)
        return NULL;
    int i = cnv_strmap_get(&m->meta_index, key);
    return i >= 0 ? m->meta[i].value : NULL;
}

/* -------------------------------------------------------- introspection */

int cnv_model_input_count(const cnv_model *m)
{
    return m ? m->n_inputs : 0;
}

int cnv_model_input(const cnv_model *m, int i)
{
    return m && i >= 0 && i < m->n_inputs ? m->inputs[i] : -1;
}

cnv_status cnv_model_input_shape(const cnv_model *m, int i, cnv_shape *out)
{
    if (!m || !out || i < 0 || i >= m->n_inputs)
        return CNV_ERR_INVALID_ARG;
    *out = m->tensors[m->inputs[i]].shape;
    return CNV_OK;
}

int cnv_model_output_count(const cnv_model *m)
{
    return m ? m->n_outputs : 0;
}

int cnv_model_output(const cnv_model *m, int i)
{
    return m && i >= 0 && i < m->n_outputs ? m->outputs[i] : -1;
}

int cnv_model_node_count(const cnv_model *m)
{
    return m ? m->n_nodes : 0;
}

const char *cnv_model_node_op(const cnv_model *m, int i)
{
    return m && i >= 0 && i < m->n_nodes ? m->nodes[i].op->type : NULL;
}

const char *cnv_model_node_name(const cnv_model *m, int i)
{
    return m && i >= 0 && i < m->n_nodes ? m->nodes[i].name : NULL;
}

int cnv_model_node_output(const cnv_model *m, int i)
{
    return m && i >= 0 && i < m->n_nodes && m->nodes[i].n_out > 0 ? m->nodes[i].out[0] : -1;
}

int cnv_model_node_input(const cnv_model *m, int i, int k)
{
    return m && i >= 0 && i < m->n_nodes && k >= 0 && k < m->nodes[i].n_in ? m->nodes[i].in[k] : -1;
}

int cnv_model_node_input_count(const cnv_model *m, int i)
{
    return m && i >= 0 && i < m->n_nodes ? m->nodes[i].n_in : 0;
}

int cnv_model_param_count(const cnv_model *m)
{
    int n = 0;
    for (int i = 0; m && i < m->n_tensors; i++)
        n += m->tensors[i].kind == CNV_T_CONST && m->tensors[i].dtype == CNV_FLOAT32;
    return n;
}

const char *cnv_model_param_name(const cnv_model *m, int i)
{
    for (int k = 0; m && k < m->n_tensors; k++)
        if (m->tensors[k].kind == CNV_T_CONST && m->tensors[k].dtype == CNV_FLOAT32 && i-- == 0)
            return m->tensors[k].name;
    return NULL;
}

cnv_status cnv_model_param(cnv_model *m, const char *name, float **data, cnv_shape *shape)
{
    if (!m || !name)
        return CNV_ERR_INVALID_ARG;
    int t = cnv_model_find(m, name);
    if (t < 0 || m->tensors[t].kind != CNV_T_CONST || m->tensors[t].dtype != CNV_FLOAT32)
        return cnv_fail(&m->err, CNV_ERR_NOT_FOUND, "no float parameter named '%s'", name);
    if (data)
        *data = m->tensors[t].data;
    if (shape)
        *shape = m->tensors[t].shape;
    return CNV_OK;
}

/* ----------------------------------------------------------- attributes */

int cnv_model_op_known(const char *op_type)
{
    return op_type && cnv_op_find(op_type) != NULL;
}

const cnv_attr_def *cnv_attr_find(const cnv_node *n, const char *name)
{
    for (int i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0)
            return &n->attrs[i];
    return NULL;
}

static cnv_status wrong_type(const char *name, const char *want, cnv_err *e)
{
    return cnv_fail(e, CNV_ERR_FORMAT, "attribute '%s' must be %s", name, want);
}

cnv_status cnv_attr_get_int(const cnv_node *n, const char *name, int64_t dflt, int64_t *out, cnv_err *e)
{
    const cnv_attr_def *a = cnv_attr_find(n, name);
    *out = dflt;
    if (!a)
        return CNV_OK;
    if (a->type != CNV_ATTR_INT)
        return wrong_type(name, "an int", e);
    *out = a->i;
    return CNV_OK;
}

cnv_status cnv_attr_get_float(const cnv_node *n, const char *name, float dflt, float *out, cnv_err *e)
{
    const cnv_attr_def *a = cnv_attr_find(n, name);
    *out = dflt;
    if (!a)
        return CNV_OK;
    if (a->type == CNV_ATTR_INT) { /* some exporters write 1 for 1.0 */
        *out = (float)a->i;
        return CNV_OK;
    }
    if (a->type != CNV_ATTR_FLOAT)
        return wrong_type(name, "a float", e);
    *out = a->f;
    return CNV_OK;
}

cnv_status cnv_attr_get_ints(const cnv_node *n, const char *name, const int64_t **out, int *count,
                             cnv_err *e)
{
    const cnv_attr_def *a = cnv_attr_find(n, name);
    *out = NULL;
    *count = 0;
    if (!a)
        return CNV_OK;
    if (a->type != CNV_ATTR_INTS)
        return wrong_type(name, "a list of ints", e);
    *out = a->ints;
    *count = a->n;
    return CNV_OK;
}

cnv_status cnv_attr_get_string(const cnv_node *n, const char *name, const char *dflt, const char **out,
                               cnv_err *e)
{
    const cnv_attr_def *a = cnv_attr_find(n, name);
    *out = dflt;
    if (!a)
        return CNV_OK;
    if (a->type != CNV_ATTR_STRING)
        return wrong_type(name, "a string", e);
    *out = a->s;
    return CNV_OK;
}
