/* The native ONNX writer: encodes the internal model (engine/model.h) as a
 * ModelProto with pb.c's writer, and saves it atomically (core/file.h). */
#include "onnx/onnx.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define IR_VERSION 8

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* raw_data is little-endian whatever the host. */
static void write_raw(cnv_pbw *w, const void *data, size_t count, size_t esize)
{
    size_t bytes = count * esize; /* count <= CNV_MAX_ELEMS, esize <= 8 */
    cnv_pbw_tag(w, 9, CNV_PB_LEN);
    cnv_pbw_varint(w, bytes);
    if (host_is_little_endian()) {
        cnv_pbw_raw(w, data, bytes);
        return;
    }
    const uint8_t *p = data;
    for (size_t i = 0; i < count; i++) {
        uint8_t b[8];
        for (size_t k = 0; k < esize; k++)
            b[k] = p[i * esize + esize - 1 - k];
        cnv_pbw_raw(w, b, esize);
    }
}

/* A TensorProto (without its enclosing tag). */
static void write_tensor(cnv_pbw *w, const char *name, cnv_dtype dt, const cnv_shape *sh,
                         const void *data)
{
    int64_t count = cnv_shape_count(sh);
    if (count < 0) {
        w->failed = 1;
        return;
    }
    cnv_pbw_packed_ints(w, 1, sh->dims, (size_t)sh->ndim);
    cnv_pbw_int(w, 2, dt == CNV_INT64 ? CNV_ONNX_INT64 : CNV_ONNX_FLOAT);
    if (name && name[0])
        cnv_pbw_string(w, 8, name);
    write_raw(w, data, (size_t)count, dt == CNV_INT64 ? 8 : 4);
}

/* A ValueInfoProto; shape NULL leaves the shape out. A -1 dim gets a
 * dim_param (N, C, H, W for images) when named is set or on axis 0. */
static void write_value_info(cnv_pbw *w, uint32_t field, const char *name, int elem,
                             const cnv_shape *shape, int named)
{
    size_t vi = cnv_pbw_begin(w, field);
    cnv_pbw_string(w, 1, name);
    size_t type = cnv_pbw_begin(w, 2);
    size_t tt = cnv_pbw_begin(w, 1);
    cnv_pbw_int(w, 1, elem);
    if (shape) {
        static const char *const nchw[4] = {"N", "C", "H", "W"};
        size_t sh = cnv_pbw_begin(w, 2);
        for (int i = 0; i < shape->ndim; i++) {
            size_t dim = cnv_pbw_begin(w, 1);
            if (shape->dims[i] >= 0) {
                cnv_pbw_int(w, 1, shape->dims[i]);
            } else if (named || i == 0) {
                char buf[16];
                snprintf(buf, sizeof buf, "d%d", i);
                cnv_pbw_string(w, 2, shape->ndim == 4 ? nchw[i] : i == 0 ? "N" : buf);
            } /* else an unnamed unknown size: neither field */
            cnv_pbw_end(w, dim);
        }
        cnv_pbw_end(w, sh);
    }
    cnv_pbw_end(w, tt);
    cnv_pbw_end(w, type);
    cnv_pbw_end(w, vi);
}

static void write_attr(cnv_pbw *w, const cnv_attr_def *a)
{
    size_t at = cnv_pbw_begin(w, 5);
    cnv_pbw_string(w, 1, a->name);
    switch (a->type) {
    case CNV_ATTR_FLOAT:
        cnv_pbw_int(w, 20, 1);
        cnv_pbw_float(w, 2, a->f);
        break;
    case CNV_ATTR_INT:
        cnv_pbw_int(w, 20, 2);
        cnv_pbw_int(w, 3, a->i);
        break;
    case CNV_ATTR_STRING:
        cnv_pbw_int(w, 20, 3);
        cnv_pbw_string(w, 4, a->s ? a->s : "");
        break;
    case CNV_ATTR_TENSOR: {
        cnv_pbw_int(w, 20, 4);
        size_t t = cnv_pbw_begin(w, 5);
        write_tensor(w, NULL, a->t_dtype, &a->t_shape, a->t_data);
        cnv_pbw_end(w, t);
        break;
    }
    case CNV_ATTR_FLOATS:
        cnv_pbw_int(w, 20, 6);
        cnv_pbw_packed_floats(w, 7, a->floats, (size_t)(a->n > 0 ? a->n : 0));
        break;
    case CNV_ATTR_INTS:
        cnv_pbw_int(w, 20, 7);
        cnv_pbw_packed_ints(w, 8, a->ints, (size_t)(a->n > 0 ? a->n : 0));
        break;
    default:
        w->failed = 1;
        break;
    }
    cnv_pbw_end(w, at);
}

static void write_node(cnv_pbw *w, const cnv_model *m, int i_node)
{
    const cnv_node *n = &m->nodes[i_node];
    size_t nd = cnv_pbw_begin(w, 1);
    for (int i = 0; i < n->n_in; i++)
        cnv_pbw_string(w, 1, n->in[i] >= 0 ? m->tensors[n->in[i]].name : "");
    for (int i = 0; i < n->n_out; i++)
        cnv_pbw_string(w, 2, m->tensors[n->out[i]].name);
    if (n->name && n->name[0])
        cnv_pbw_string(w, 3, n->name);
    cnv_pbw_string(w, 4, cnv_model_node_op(m, i_node));
    for (int i = 0; i < n->n_attrs; i++)
        write_attr(w, &n->attrs[i]);
    cnv_pbw_end(w, nd);
}

/* Infers every tensor's shape (into all) with the unknown input dims set
 * (batch 1 or 2, other sizes `size` or twice that, by alt) and copies the
 * outputs' into out. Returns 0 when the shapes do not fit. */
static int infer_outputs(const cnv_model *m, cnv_shape *in, cnv_shape *all, int alt, int64_t size,
                         cnv_shape *out)
{
    for (int i = 0; i < m->n_inputs; i++) {
        in[i] = m->tensors[m->inputs[i]].shape;
        for (int k = 0; k < in[i].ndim; k++)
            if (in[i].dims[k] < 0)
                in[i].dims[k] = k == 0 ? 1 + alt : size * (1 + alt);
    }
    if (cnv_model_infer_shapes(m, m->n_inputs, in, all, m->n_tensors, NULL, 0, NULL, 0) != CNV_OK)
        return 0;
    for (int i = 0; i < m->n_outputs; i++)
        out[i] = all[m->outputs[i]];
    return 1;
}

/* onnx.checker wants a shape on every graph output. The model stores
 * none, so they are inferred (no session: nothing is allocated or run):
 * with the unknown input sizes at two values, a dim that stays put is
 * fixed and one that moves is unknown. An output whose shape cannot be
 * found gets ndim -1 (written without). */
static void output_shapes(const cnv_model *m, cnv_shape *out)
{
    for (int i = 0; i < m->n_outputs; i++)
        out[i].ndim = -1;
    cnv_shape *in = cnv_calloc(m->n_inputs ? (size_t)m->n_inputs : 1, sizeof *in);
    cnv_shape *all = cnv_calloc((size_t)m->n_tensors + 1, sizeof *all);
    cnv_shape *alt = cnv_calloc((size_t)m->n_outputs + 1, sizeof *alt);
    /* Small sizes first; a deep net that needs more gets ImageNet's. */
    int64_t size = 64;
    int ok = in && all && alt && infer_outputs(m, in, all, 0, size, out);
    if (in && all && alt && !ok)
        ok = infer_outputs(m, in, all, 0, size = 224, out);
    if (ok) {
        int ok2 = infer_outputs(m, in, all, 1, size, alt);
        for (int i = 0; i < m->n_outputs; i++)
            for (int k = 0; k < out[i].ndim; k++)
                if (!ok2 || alt[i].ndim != out[i].ndim || alt[i].dims[k] != out[i].dims[k])
                    out[i].dims[k] = -1;
    } else {
        for (int i = 0; i < m->n_outputs; i++)
            out[i].ndim = -1;
    }
    cnv_free(in);
    cnv_free(all);
    cnv_free(alt);
}

void cnv_onnx_encode(cnv_pbw *w, const cnv_model *m)
{
    cnv_pbw_int(w, 1, IR_VERSION);
    cnv_pbw_string(w, 2, "libcnnviz");
    cnv_pbw_string(w, 3, CNV_VERSION_STRING);

    size_t g = cnv_pbw_begin(w, 7);
    for (int i = 0; i < m->n_nodes; i++)
        write_node(w, m, i);
    cnv_pbw_string(w, 2, "cnnviz");
    for (int i = 0; i < m->n_tensors; i++) {
        const cnv_tensor_def *t = &m->tensors[i];
        if (t->kind != CNV_T_CONST)
            continue;
        size_t init = cnv_pbw_begin(w, 5);
        write_tensor(w, t->name, t->dtype, &t->shape, t->data);
        cnv_pbw_end(w, init);
    }
    for (int i = 0; i < m->n_inputs; i++) {
        const cnv_tensor_def *t = &m->tensors[m->inputs[i]];
        write_value_info(w, 11, t->name, t->file_type ? t->file_type : CNV_ONNX_FLOAT, &t->shape, 1);
    }
    cnv_shape *shapes = m->n_outputs ? cnv_calloc((size_t)m->n_outputs, sizeof *shapes) : NULL;
    if (shapes)
        output_shapes(m, shapes);
    for (int i = 0; i < m->n_outputs; i++) {
        const cnv_tensor_def *t = &m->tensors[m->outputs[i]];
        int elem = t->file_type                                    ? t->file_type
                   : t->kind == CNV_T_CONST && t->dtype == CNV_INT64 ? CNV_ONNX_INT64
                                                                     : CNV_ONNX_FLOAT;
        const cnv_shape *sh = t->kind == CNV_T_CONST ? &t->shape
                            : shapes && shapes[i].ndim >= 0 ? &shapes[i] : NULL;
        write_value_info(w, 12, t->name, elem, sh, 0);
    }
    cnv_free(shapes);
    cnv_pbw_end(w, g);

    size_t op = cnv_pbw_begin(w, 8);
    cnv_pbw_int(w, 2, m->opset);
    cnv_pbw_end(w, op);

    for (int i = 0; i < m->n_meta; i++) {
        size_t kv = cnv_pbw_begin(w, 14);
        cnv_pbw_string(w, 1, m->meta[i].key);
        cnv_pbw_string(w, 2, m->meta[i].value);
        cnv_pbw_end(w, kv);
    }
}

static cnv_status write_file(cnv_model *m, const char *path, const uint8_t *data, size_t size)
{
    cnv_tmpfile t;
    cnv_status st = cnv_tmpfile_open(&t, path, &m->err);
    if (st != CNV_OK)
        return st;
    if (fwrite(data, 1, size, t.f) != size) {
        int e = errno ? errno : EIO;
        cnv_tmpfile_abort(&t);
        return cnv_fail(&m->err, CNV_ERR_IO, "cannot write '%s': %s", path, strerror(e));
    }
    return cnv_tmpfile_commit(&t, &m->err);
}

cnv_status cnv_model_save_onnx(cnv_model *m, const char *path)
{
    if (!m)
        return CNV_ERR_INVALID_ARG;
    if (!path || !path[0])
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "no path to save the model to");
    cnv_pbw w = {0};
    cnv_onnx_encode(&w, m);
    if (w.failed) {
        cnv_pbw_free(&w);
        return cnv_fail(&m->err, CNV_ERR_NOMEM, "out of memory encoding the model");
    }
    if (w.len > CNV_ONNX_MAX_FILE) {
        cnv_pbw_free(&w);
        return cnv_fail(&m->err, CNV_ERR_UNSUPPORTED, "the encoded model exceeds 2 GiB");
    }
    cnv_status st = write_file(m, path, w.buf, w.len);
    cnv_pbw_free(&w);
    if (st == CNV_OK)
        cnv_err_clear(&m->err);
    return st;
}
