/* The native ONNX reader: decodes a ModelProto with the wire-format reader
 * of pb.c and builds the model through the builder calls only (the public
 * ones, and cnv_model_add_const_owned, which checks the same but takes the
 * decoded values instead of copying them), so a file can never create a
 * model the builder would refuse. Also the TensorProto (.pb) reader. */
#include "onnx/onnx.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static const char *const g_dtype_names[] = {
    "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
    "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
    "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
    "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0"};

const char *cnv_onnx_dtype_name(int64_t dt)
{
    if (dt >= 0 && dt < (int64_t)(sizeof g_dtype_names / sizeof g_dtype_names[0]))
        return g_dtype_names[dt];
    return "unknown";
}

/* A protobuf string as a C string; names with a NUL byte inside would be
 * silently cut, so they are malformed here. */
static cnv_status pb_string(const cnv_pb *r, const cnv_pb_field *f, const char *what, char **out)
{
    if (cnv_pb_expect(r, f, CNV_PB_LEN, what) != 0)
        return CNV_ERR_FORMAT;
    if (memchr(f->data, 0, f->len))
        return cnv_fail(r->err, CNV_ERR_FORMAT, "%s at byte %zu contains a NUL byte", what, f->offset);
    char *s = cnv_strndup((const char *)f->data, f->len);
    if (!s)
        return cnv_fail(r->err, CNV_ERR_NOMEM, "out of memory reading %s", what);
    cnv_free(*out); /* a repeated optional field: the last one wins */
    *out = s;
    return CNV_OK;
}

/* pb_string for a field whose absence means "", without allocation. */
static int pb_string_is(const cnv_pb_field *f, const char *s)
{
    size_t n = strlen(s);
    return f->wire == CNV_PB_LEN && f->len == n && memcmp(f->data, s, n) == 0;
}

static const char *dims_str(const int64_t *d, size_t n, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = '\0';
    if (n == 0)
        snprintf(buf, len, "(scalar)");
    for (size_t i = 0; i < n && k < len; i++) {
        int w = snprintf(buf + k, len - k, i ? "x%lld" : "%lld", (long long)d[i]);
        if (w < 0)
            break;
        k += (size_t)w;
    }
    return buf;
}

/* Half precision to single, exactly: every half value is a float. */
static float half_to_float(uint16_t h)
{
    int ex = (h >> 10) & 31, mant = h & 1023;
    float v;
    if (ex == 0)
        v = ldexpf((float)mant, -24); /* zero and subnormals */
    else if (ex == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexpf((float)(mant + 1024), ex - 25);
    return (h & 0x8000) ? -v : v;
}

/* Out-of-range double-to-float conversion is undefined in C: saturate. */
static float double_to_float(double d)
{
    if (d != d)
        return NAN;
    if (d > FLT_MAX)
        return INFINITY;
    if (d < -FLT_MAX)
        return -INFINITY;
    return (float)d;
}

static float bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double bits_to_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* ------------------------------------------------------------ tensors */

void cnv_onnx_tensor_free(cnv_onnx_tensor *t)
{
    if (!t)
        return;
    cnv_free(t->name);
    if (!t->in_place)
        cnv_free(t->data);
    memset(t, 0, sizeof *t);
}

/* Adds the count of one occurrence of a repeated scalar field to *total. */
static int count_values(cnv_pb *r, const cnv_pb_field *f, int wire, const char *what, size_t *total)
{
    cnv_pb_iter it;
    size_t n;
    if (cnv_pb_iter_init(&it, r, f, wire, what, &n) != 0)
        return -1;
    if (!cnv_add_size(*total, n, total)) {
        cnv_fail(r->err, CNV_ERR_FORMAT, "%s: too many values", what);
        return -1;
    }
    return 0;
}

cnv_status cnv_onnx_read_tensor(cnv_pb *r, const char *what, cnv_onnx_tensor *t)
{
    cnv_err *e = r->err;
    cnv_pb start = *r;
    cnv_pb_field f;
    cnv_pb_iter it;
    uint64_t v;
    size_t n;
    int rc;
    int64_t dims[CNV_MAX_DIMS];
    size_t ndim = 0;
    int64_t dt = 0;
    const uint8_t *raw = NULL;
    size_t raw_len = 0;
    int has_raw = 0, has_external = 0, has_segment = 0;
    uint64_t location = 0;
    /* Values per typed field, by field number: 4 float, 5 int32, 6 string,
     * 7 int64, 10 double, 11 uint64. */
    size_t typed[12] = {0};
    char *name = NULL;
    char label[CNV_ERR_LEN / 2], dbuf[160];
    cnv_status st = CNV_ERR_FORMAT;

    memset(t, 0, sizeof *t);
    while ((rc = cnv_pb_next(r, &f)) > 0) {
        switch (f.num) {
        case 1:
            if (cnv_pb_iter_init(&it, r, &f, CNV_PB_VARINT, "dims", &n) != 0)
                goto fail_prefix;
            while (cnv_pb_iter_next(&it, &v)) {
                if (ndim < CNV_MAX_DIMS)
                    dims[ndim] = (int64_t)v;
                ndim++;
            }
            break;
        case 2:
            if (cnv_pb_expect(r, &f, CNV_PB_VARINT, "data_type") != 0)
                goto fail_prefix;
            dt = (int32_t)(uint32_t)f.u;
            break;
        case 3:
            has_segment = 1;
            break;
        case 4:
            if (count_values(r, &f, CNV_PB_I32, "float_data", &typed[4]) != 0)
                goto fail_prefix;
            break;
        case 5:
            if (count_values(r, &f, CNV_PB_VARINT, "int32_data", &typed[5]) != 0)
                goto fail_prefix;
            break;
        case 6:
            typed[6]++;
            break;
        case 7:
            if (count_values(r, &f, CNV_PB_VARINT, "int64_data", &typed[7]) != 0)
                goto fail_prefix;
            break;
        case 8:
            if ((st = pb_string(r, &f, "tensor name", &name)) != CNV_OK)
                goto fail_prefix;
            st = CNV_ERR_FORMAT;
            break;
        case 9:
            if (cnv_pb_expect(r, &f, CNV_PB_LEN, "raw_data") != 0)
                goto fail_prefix;
            raw = f.data;
            raw_len = f.len;
            has_raw = 1;
            break;
        case 10:
            if (count_values(r, &f, CNV_PB_I64, "double_data", &typed[10]) != 0)
                goto fail_prefix;
            break;
        case 11:
            if (count_values(r, &f, CNV_PB_VARINT, "uint64_data", &typed[11]) != 0)
                goto fail_prefix;
            break;
        case 13:
            has_external = 1;
            break;
        case 14:
            if (cnv_pb_expect(r, &f, CNV_PB_VARINT, "data_location") != 0)
                goto fail_prefix;
            location = f.u;
            break;
        default:
            break; /* doc_string and fields newer than this reader */
        }
    }
    if (rc < 0)
        goto fail_prefix;

    if (name && name[0])
        snprintf(label, sizeof label, "%s '%s'", what, name);
    else
        snprintf(label, sizeof label, "%s", what);

    if (has_external || location == 1) {
        st = cnv_fail(e, CNV_ERR_UNSUPPORTED,
                      "%s keeps its data in an external file (data_location EXTERNAL); "
                      "external data is not supported, save the model with its weights inside",
                      label);
        goto fail;
    }
    if (location > 1) {
        st = cnv_fail(e, CNV_ERR_FORMAT, "%s: invalid data_location %llu", label,
                      (unsigned long long)location);
        goto fail;
    }
    if (has_segment) {
        st = cnv_fail(e, CNV_ERR_UNSUPPORTED, "%s is a segment of a larger tensor; segments are not supported", label);
        goto fail;
    }
    if (ndim > CNV_MAX_DIMS) {
        st = cnv_fail(e, CNV_ERR_UNSUPPORTED, "%s has rank %zu; at most %d dimensions are supported",
                      label, ndim, CNV_MAX_DIMS);
        goto fail;
    }
    /* The product of the non-zero dims must fit too, so that 0 x 2^62 x
     * 2^62 is refused rather than read as empty. */
    int64_t count = 1, nonzero = 1;
    for (size_t i = 0; i < ndim; i++) {
        if (dims[i] < 0) {
            st = cnv_fail(e, CNV_ERR_FORMAT, "%s has negative dimension %lld at axis %zu",
                          label, (long long)dims[i], i);
            goto fail;
        }
        if (!cnv_mul_i64(count, dims[i], &count) ||
            (dims[i] && !cnv_mul_i64(nonzero, dims[i], &nonzero))) {
            st = cnv_fail(e, CNV_ERR_FORMAT, "%s: the product of dims [%s] overflows", label,
                          dims_str(dims, ndim, dbuf, sizeof dbuf));
            goto fail;
        }
    }
    if (count > CNV_MAX_ELEMS) {
        st = cnv_fail(e, CNV_ERR_UNSUPPORTED, "%s has %lld elements (dims [%s]); the limit is %lld",
                      label, (long long)count, dims_str(dims, ndim, dbuf, sizeof dbuf),
                      (long long)CNV_MAX_ELEMS);
        goto fail;
    }

    size_t esize, field;
    cnv_dtype out_dt;
    switch (dt) {
    case CNV_ONNX_FLOAT: esize = 4; field = 4; out_dt = CNV_FLOAT32; break;
    case CNV_ONNX_INT32: esize = 4; field = 5; out_dt = CNV_INT64; break;
    case CNV_ONNX_INT64: esize = 8; field = 7; out_dt = CNV_INT64; break;
    case CNV_ONNX_FLOAT16: esize = 2; field = 5; out_dt = CNV_FLOAT32; break;
    case CNV_ONNX_DOUBLE: esize = 8; field = 10; out_dt = CNV_FLOAT32; break;
    case 0:
        st = cnv_fail(e, CNV_ERR_FORMAT, "%s has no data_type", label);
        goto fail;
    default:
        /* Positive numbers past the known table may be types of a newer
         * ONNX: beyond us rather than malformed. */
        st = cnv_fail(e, dt < 0 ? CNV_ERR_FORMAT : CNV_ERR_UNSUPPORTED,
                      "%s has data type %s (%lld); supported are FLOAT, FLOAT16, DOUBLE, INT32, INT64",
                      label, cnv_onnx_dtype_name(dt), (long long)dt);
        goto fail;
    }
    size_t others = 0;
    for (size_t k = 0; k < 12; k++)
        if (k != field)
            others += typed[k] ? 1 : 0;
    if (others) {
        st = cnv_fail(e, CNV_ERR_FORMAT, "%s of type %s holds values in a field of another type",
                      label, cnv_onnx_dtype_name(dt));
        goto fail;
    }
    if (has_raw && typed[field]) {
        st = cnv_fail(e, CNV_ERR_FORMAT, "%s has both raw_data and typed values", label);
        goto fail;
    }
    if (has_raw) {
        /* count <= 2^31 and esize <= 8: no overflow. */
        uint64_t need = (uint64_t)count * esize;
        if ((uint64_t)raw_len != need) {
            st = cnv_fail(e, CNV_ERR_FORMAT, "%s: raw_data holds %zu bytes but dims [%s] of %s need %llu",
                          label, raw_len, dims_str(dims, ndim, dbuf, sizeof dbuf),
                          cnv_onnx_dtype_name(dt), (unsigned long long)need);
            goto fail;
        }
    } else if ((uint64_t)typed[field] != (uint64_t)count) {
        st = cnv_fail(e, CNV_ERR_FORMAT, "%s holds %zu values but dims [%s] need %lld", label,
                      typed[field], dims_str(dims, ndim, dbuf, sizeof dbuf), (long long)count);
        goto fail;
    }

    size_t osize = out_dt == CNV_FLOAT32 ? 4 : 8;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* A large FLOAT tensor in the loader's own copy of a file stays where
     * it lies, moved down to a 4-byte boundary: no copy, and no second
     * buffer of its size. The 1 to 3 bytes it moves over are the raw_data
     * field's own tag and length (a length of 2^14 or more takes 3 bytes
     * as a varint), read already. */
    if (r->own && has_raw && dt == CNV_ONNX_FLOAT && raw_len >= ((size_t)1 << 14)) {
        uint8_t *at = (uint8_t *)((uintptr_t)raw & ~(uintptr_t)3);
        memmove(at, raw, raw_len);
        t->name = name;
        t->dtype = out_dt;
        t->shape.ndim = (int)ndim;
        for (size_t k = 0; k < ndim; k++)
            t->shape.dims[k] = dims[k];
        t->count = count;
        t->data = at;
        t->in_place = 1;
        return CNV_OK;
    }
#endif
    if (cnv_pb_charge(r, (size_t)count * osize, label)) {
        st = CNV_ERR_NOMEM;
        goto fail;
    }
    void *data = cnv_malloc((size_t)count * osize);
    if (!data) {
        st = cnv_fail(e, CNV_ERR_NOMEM, "out of memory for %s (%lld elements)", label, (long long)count);
        goto fail;
    }
    float *pf = data;
    int64_t *pi = data;
    if (has_raw) {
        for (int64_t i = 0; i < count; i++) {
            const uint8_t *b = raw + (size_t)i * esize;
            switch (dt) {
            case CNV_ONNX_FLOAT: pf[i] = bits_to_float(cnv_pb_le32(b)); break;
            case CNV_ONNX_INT32: pi[i] = (int32_t)cnv_pb_le32(b); break;
            case CNV_ONNX_INT64: pi[i] = (int64_t)cnv_pb_le64(b); break;
            case CNV_ONNX_FLOAT16: pf[i] = half_to_float((uint16_t)(b[0] | b[1] << 8)); break;
            default: pf[i] = double_to_float(bits_to_double(cnv_pb_le64(b))); break;
            }
        }
    } else {
        /* Second pass: the same fields, all checked by the first. */
        int64_t i = 0;
        int elem_wire = field == 4 ? CNV_PB_I32 : field == 10 ? CNV_PB_I64 : CNV_PB_VARINT;
        while (cnv_pb_next(&start, &f) > 0) {
            if (f.num != field)
                continue;
            cnv_pb_iter_init(&it, &start, &f, elem_wire, "", &n);
            while (i < count && cnv_pb_iter_next(&it, &v)) {
                switch (dt) {
                case CNV_ONNX_FLOAT: pf[i] = bits_to_float((uint32_t)v); break;
                case CNV_ONNX_INT32: pi[i] = (int32_t)(uint32_t)v; break;
                case CNV_ONNX_INT64: pi[i] = (int64_t)v; break;
                case CNV_ONNX_FLOAT16: pf[i] = half_to_float((uint16_t)v); break;
                default: pf[i] = double_to_float(bits_to_double(v)); break;
                }
                i++;
            }
        }
    }
    t->name = name;
    t->dtype = out_dt;
    t->shape.ndim = (int)ndim;
    for (size_t k = 0; k < ndim; k++)
        t->shape.dims[k] = dims[k];
    t->count = count;
    t->data = data;
    return CNV_OK;

fail_prefix:
    if (st != CNV_ERR_NOMEM)
        cnv_err_prefix(e, "%s", what);
fail:
    cnv_free(name);
    return st;
}

/* -------------------------------------------------------------- model */

/* Growable arrays used while loading. */
typedef struct fields {
    cnv_pb_field *v;
    size_t n, cap;
} fields;

typedef struct strlist {
    char **v;
    size_t n, cap;
} strlist;

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        cnv_free(l->v[i]);
    cnv_free(l->v);
    memset(l, 0, sizeof *l);
}

/* Appends f; more than max fields of this kind (`what`) are refused. */
static cnv_status fields_push(fields *a, const cnv_pb_field *f, cnv_err *e, size_t max, const char *what)
{
    if (a->n >= max)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED, "more than %zu %s; the limit is %zu", max, what, max);
    if (!cnv_grow((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v))
        return cnv_fail(e, CNV_ERR_NOMEM, "out of memory reading the model");
    a->v[a->n++] = *f;
    return CNV_OK;
}

static cnv_status strlist_push(strlist *l, const cnv_pb *r, const cnv_pb_field *f, const char *what)
{
    char *s = NULL;
    cnv_status st = pb_string(r, f, what, &s);
    if (st != CNV_OK)
        return st;
    if (l->n >= CNV_MAX_NODE_IO) {
        cnv_free(s);
        return cnv_fail(r->err, CNV_ERR_UNSUPPORTED, "more than %d values of %s; the limit is %d", CNV_MAX_NODE_IO,
                        what, CNV_MAX_NODE_IO);
    }
    if (!cnv_grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v)) {
        cnv_free(s);
        return cnv_fail(r->err, CNV_ERR_NOMEM, "out of memory reading %s", what);
    }
    l->v[l->n++] = s;
    return CNV_OK;
}

/* The loader's state. */
typedef struct loader {
    cnv_model *m;
    cnv_err *e;
    const cnv_onnx_bind *binds;
    int n_binds;
    int64_t opset; /* of the default domain; 0 when not imported */
    int own;       /* the bytes are the loader's own (cnv_pb.own) */
    /* Graph inputs a Keras-style export transposes from NHWC first, and
     * the Transpose nodes that do it (scan_nodes, adopt_nchw). */
    struct adoption {
        char *input;
        size_t node;
        int rank4; /* the input was declared 4-D: its dims were permuted */
    } adopt[4];
    int n_adopt;
    /* The first graph input that has an initializer of its name, or -1. */
    long shadowed;
} loader;

/* An attribute being read, with the storage it owns. */
typedef struct attr_buf {
    cnv_attr a;
    char *name, *s;
    int64_t *ints;
    float *floats;
    size_t n_ints, cap_ints, n_floats, cap_floats;
    cnv_onnx_tensor t;
} attr_buf;

static void attr_buf_free(attr_buf *b)
{
    cnv_free(b->name);
    cnv_free(b->s);
    cnv_free(b->ints);
    cnv_free(b->floats);
    cnv_onnx_tensor_free(&b->t);
}

static const char *attr_type_name(int64_t t)
{
    static const char *const names[] = {
        "UNDEFINED", "FLOAT", "INT", "STRING", "TENSOR", "GRAPH", "FLOATS", "INTS",
        "STRINGS", "TENSORS", "GRAPHS", "SPARSE_TENSOR", "SPARSE_TENSORS",
        "TYPE_PROTO", "TYPE_PROTOS"};
    return t >= 0 && t < (int64_t)(sizeof names / sizeof names[0]) ? names[t] : "unknown";
}

/* Reads an AttributeProto into b. node is the node's label for messages. */
static cnv_status read_attr(loader *L, cnv_pb *r, const char *node, int index, attr_buf *b)
{
    cnv_pb_field f, tf;
    cnv_pb_iter it;
    uint64_t v;
    size_t n;
    int rc, has_type = 0, has_f = 0, has_i = 0, has_s = 0, has_t = 0;
    int64_t type = 0, other = 0;
    char what[CNV_ERR_LEN / 2];
    cnv_status st;

    memset(b, 0, sizeof *b);
    snprintf(what, sizeof what, "%.180s attribute #%d", node, index);
    while ((rc = cnv_pb_next(r, &f)) > 0) {
        switch (f.num) {
        case 1:
            if ((st = pb_string(r, &f, "attribute name", &b->name)) != CNV_OK)
                goto prefix;
            break;
        case 20:
            if (cnv_pb_expect(r, &f, CNV_PB_VARINT, "attribute type") != 0)
                goto format;
            type = (int64_t)f.u;
            has_type = 1;
            break;
        case 2:
            if (cnv_pb_expect(r, &f, CNV_PB_I32, "attribute f") != 0)
                goto format;
            b->a.f = bits_to_float((uint32_t)f.u);
            has_f = 1;
            break;
        case 3:
            if (cnv_pb_expect(r, &f, CNV_PB_VARINT, "attribute i") != 0)
                goto format;
            b->a.i = (int64_t)f.u;
            has_i = 1;
            break;
        case 4:
            if ((st = pb_string(r, &f, "attribute s", &b->s)) != CNV_OK)
                goto prefix;
            has_s = 1;
            break;
        case 5:
            if (cnv_pb_expect(r, &f, CNV_PB_LEN, "attribute t") != 0)
                goto format;
            tf = f;
            has_t = 1;
            break;
        case 7:
            if (cnv_pb_iter_init(&it, r, &f, CNV_PB_I32, "attribute floats", &n) != 0)
                goto format;
            if (cnv_pb_charge(r, n * sizeof *b->floats, "attribute floats"))
                return CNV_ERR_NOMEM;
            if (!cnv_grow((void **)&b->floats, &b->cap_floats, b->n_floats + n, sizeof *b->floats))
                goto nomem;
            while (cnv_pb_iter_next(&it, &v))
                b->floats[b->n_floats++] = bits_to_float((uint32_t)v);
            break;
        case 8:
            if (cnv_pb_iter_init(&it, r, &f, CNV_PB_VARINT, "attribute ints", &n) != 0)
                goto format;
            if (cnv_pb_charge(r, n * sizeof *b->ints, "attribute ints"))
                return CNV_ERR_NOMEM;
            if (!cnv_grow((void **)&b->ints, &b->cap_ints, b->n_ints + n, sizeof *b->ints))
                goto nomem;
            while (cnv_pb_iter_next(&it, &v))
                b->ints[b->n_ints++] = (int64_t)v;
            break;
        case 6: other = 5; break;   /* g */
        case 9: other = 8; break;   /* strings */
        case 10: other = 9; break;  /* tensors */
        case 11: other = 10; break; /* graphs */
        case 22: other = 11; break; /* sparse_tensor */
        case 23: other = 12; break; /* sparse_tensors */
        case 14: other = 13; break; /* tp */
        case 15: other = 14; break; /* type_protos */
        case 21:
            return cnv_fail(L->e, CNV_ERR_UNSUPPORTED,
                            "%s refers to a function attribute (ref_attr_name); functions are not supported", what);
        default:
            break;
        }
    }
    if (rc < 0)
        goto format;
    if (!b->name || !b->name[0])
        return cnv_fail(L->e, CNV_ERR_FORMAT, "%s has no name", what);
    snprintf(what, sizeof what, "%.180s attribute '%.60s'", node, b->name);
    if (!has_type) {
        /* IR version 1 files carry no type: infer it from the field set. */
        type = other ? other : b->n_floats ? 6 : b->n_ints ? 7 : has_t ? 4 : has_s ? 3
             : has_f ? 1 : has_i ? 2 : 0;
    }
    b->a.name = b->name;
    switch (type) {
    case 1: b->a.type = CNV_ATTR_FLOAT; break;
    case 2: b->a.type = CNV_ATTR_INT; break;
    case 3:
        b->a.type = CNV_ATTR_STRING;
        if (!b->s && !(b->s = cnv_strdup("")))
            goto nomem;
        b->a.s = b->s;
        break;
    case 4: {
        if (!has_t)
            return cnv_fail(L->e, CNV_ERR_FORMAT, "%s has type TENSOR but no tensor", what);
        cnv_pb tr;
        if (cnv_pb_sub(r, &tf, &tr) != 0)
            goto format;
        if ((st = cnv_onnx_read_tensor(&tr, what, &b->t)) != CNV_OK)
            return st;
        b->a.type = CNV_ATTR_TENSOR;
        b->a.t_dtype = b->t.dtype;
        b->a.t_shape = b->t.shape;
        b->a.t_data = b->t.data;
        break;
    }
    case 6:
        if (b->n_floats > INT_MAX)
            return cnv_fail(L->e, CNV_ERR_UNSUPPORTED, "%s has too many values", what);
        b->a.type = CNV_ATTR_FLOATS;
        b->a.floats = b->floats;
        b->a.n = (int)b->n_floats;
        break;
    case 7:
        if (b->n_ints > INT_MAX)
            return cnv_fail(L->e, CNV_ERR_UNSUPPORTED, "%s has too many values", what);
        b->a.type = CNV_ATTR_INTS;
        b->a.ints = b->ints;
        b->a.n = (int)b->n_ints;
        break;
    case 0:
        return cnv_fail(L->e, CNV_ERR_FORMAT, "%s has no type and no value", what);
    default:
        return cnv_fail(L->e, type > 14 ? CNV_ERR_FORMAT : CNV_ERR_UNSUPPORTED,
                        "%s has type %s (%lld); supported are FLOAT, INT, STRING, TENSOR, FLOATS, INTS",
                        what, attr_type_name(type), (long long)type);
    }
    return CNV_OK;
nomem:
    return cnv_fail(L->e, CNV_ERR_NOMEM, "out of memory reading %s", what);
format:
    st = CNV_ERR_FORMAT;
prefix:
    if (st != CNV_ERR_NOMEM)
        cnv_err_prefix(L->e, "%s", what);
    return st;
}

/* A Constant node becomes a constant tensor named after its output: the
 * engine needs no op for it, and a constant's value is known at planning
 * (Reshape's shape may come from one). */
static cnv_status add_constant(loader *L, const char *label, const strlist *ins,
                               const strlist *outs, attr_buf *attrs, size_t n_attrs)
{
    if (ins->n != 0 || outs->n != 1 || !outs->v[0][0])
        return cnv_fail(L->e, CNV_ERR_FORMAT, "%s must have no inputs and one output", label);
    if (n_attrs != 1)
        return cnv_fail(L->e, CNV_ERR_FORMAT, "%s must have exactly one value attribute, has %zu",
                        label, n_attrs);
    const cnv_attr *a = &attrs[0].a;
    const char *an = a->name;
    cnv_shape sh = {0};
    cnv_dtype dt;
    const void *data;
    if (strcmp(an, "value") == 0 && a->type == CNV_ATTR_TENSOR) {
        dt = a->t_dtype;
        sh = a->t_shape;
        data = a->t_data;
    } else if (strcmp(an, "value_float") == 0 && a->type == CNV_ATTR_FLOAT) {
        dt = CNV_FLOAT32;
        data = &a->f;
    } else if (strcmp(an, "value_int") == 0 && a->type == CNV_ATTR_INT) {
        dt = CNV_INT64;
        data = &a->i;
    } else if (strcmp(an, "value_floats") == 0 && a->type == CNV_ATTR_FLOATS) {
        dt = CNV_FLOAT32;
        sh.ndim = 1;
        sh.dims[0] = a->n;
        data = a->floats ? (const void *)a->floats : (const void *)"";
    } else if (strcmp(an, "value_ints") == 0 && a->type == CNV_ATTR_INTS) {
        dt = CNV_INT64;
        sh.ndim = 1;
        sh.dims[0] = a->n;
        data = a->ints ? (const void *)a->ints : (const void *)"";
    } else {
        return cnv_fail(L->e, CNV_ERR_UNSUPPORTED,
                        "%s: attribute '%s' is not supported (value, value_float(s), value_int(s) are)",
                        label, an);
    }
    return cnv_model_add_const(L->m, outs->v[0], dt, &sh, data);
}

static cnv_status read_node(loader *L, cnv_pb *r, size_t index)
{
    cnv_pb_field f;
    int rc;
    strlist ins = {0}, outs = {0};
    fields attr_fields = {0};
    char *name = NULL, *op = NULL, *domain = NULL;
    attr_buf *attrs = NULL;
    size_t n_attrs = 0;
    char label[CNV_ERR_LEN / 2];
    cnv_status st = CNV_OK;

    snprintf(label, sizeof label, "node #%zu", index);
    while ((rc = cnv_pb_next(r, &f)) > 0 && st == CNV_OK) {
        switch (f.num) {
        case 1: st = strlist_push(&ins, r, &f, "node input"); break;
        case 2: st = strlist_push(&outs, r, &f, "node output"); break;
        case 3: st = pb_string(r, &f, "node name", &name); break;
        case 4: st = pb_string(r, &f, "node op_type", &op); break;
        case 7: st = pb_string(r, &f, "node domain", &domain); break;
        case 5:
            st = cnv_pb_expect(r, &f, CNV_PB_LEN, "node attribute") ? CNV_ERR_FORMAT
                 : fields_push(&attr_fields, &f, L->e, CNV_MAX_ATTRS, "attributes in a node");
            break;
        default: break;
        }
    }
    if (rc < 0)
        st = CNV_ERR_FORMAT;
    if (st != CNV_OK) {
        if (st != CNV_ERR_NOMEM)
            cnv_err_prefix(L->e, "%s", label);
        goto done;
    }
    if (!op || !op[0]) {
        st = cnv_fail(L->e, CNV_ERR_FORMAT, "%s%s%s%s has no op_type", label, name ? " '" : "",
                      name ? name : "", name ? "'" : "");
        goto done;
    }
    if (name && name[0])
        snprintf(label, sizeof label, "node '%s' (%s)", name, op);
    else
        snprintf(label, sizeof label, "node #%zu (%s)", index, op);
    if (domain && domain[0] && strcmp(domain, "ai.onnx") != 0) {
        st = cnv_fail(L->e, CNV_ERR_UNSUPPORTED,
                      "%s is in operator domain '%s'; only the default ONNX domain is supported",
                      label, domain);
        goto done;
    }
    if (L->opset == 0) {
        st = cnv_fail(L->e, CNV_ERR_FORMAT,
                      "%s is in the default ONNX domain, which the model does not import (no opset_import)",
                      label);
        goto done;
    }
    if (ins.n > INT_MAX || outs.n > INT_MAX || attr_fields.n > INT_MAX) {
        st = cnv_fail(L->e, CNV_ERR_UNSUPPORTED, "%s has too many inputs, outputs or attributes", label);
        goto done;
    }
    if (attr_fields.n) {
        attrs = cnv_calloc(attr_fields.n, sizeof *attrs);
        if (!attrs) {
            st = cnv_fail(L->e, CNV_ERR_NOMEM, "out of memory reading %s", label);
            goto done;
        }
    }
    for (size_t i = 0; i < attr_fields.n; i++) {
        cnv_pb ar;
        if (cnv_pb_sub(r, &attr_fields.v[i], &ar) != 0) {
            st = CNV_ERR_FORMAT;
            goto done;
        }
        st = read_attr(L, &ar, label, (int)i, &attrs[i]);
        n_attrs = i + 1; /* attrs[i] owns storage even on failure */
        if (st != CNV_OK)
            goto done;
        for (size_t j = 0; j < i; j++)
            if (strcmp(attrs[j].name, attrs[i].name) == 0) {
                st = cnv_fail(L->e, CNV_ERR_FORMAT, "%s has attribute '%s' twice", label, attrs[i].name);
                goto done;
            }
    }
    /* An optional output nobody uses may be named "" (Dropout's mask). */
    while (outs.n > 0 && !outs.v[outs.n - 1][0])
        cnv_free(outs.v[--outs.n]);
    if (strcmp(op, "Constant") == 0) {
        st = add_constant(L, label, &ins, &outs, attrs, n_attrs);
        goto done;
    }
    for (int a = 0; a < L->n_adopt; a++)
        if (L->adopt[a].node == index && L->adopt[a].rank4) {
            /* the NHWC -> NCHW Transpose of an adopted input */
            st = cnv_model_add_node(L->m, "Identity", name ? name : "", 1, (const char *const *)ins.v,
                                    (int)outs.n, (const char *const *)outs.v, 0, NULL);
            goto done;
        }
    cnv_attr *list = NULL;
    if (n_attrs) {
        list = cnv_calloc(n_attrs, sizeof *list);
        if (!list) {
            st = cnv_fail(L->e, CNV_ERR_NOMEM, "out of memory reading %s", label);
            goto done;
        }
        for (size_t i = 0; i < n_attrs; i++)
            list[i] = attrs[i].a;
    }
    st = cnv_model_add_node(L->m, op, name ? name : "", (int)ins.n, (const char *const *)ins.v,
                            (int)outs.n, (const char *const *)outs.v, (int)n_attrs, list);
    cnv_free(list);
done:
    for (size_t i = 0; i < n_attrs; i++)
        attr_buf_free(&attrs[i]);
    cnv_free(attrs);
    cnv_free(attr_fields.v);
    strlist_free(&ins);
    strlist_free(&outs);
    cnv_free(name);
    cnv_free(op);
    cnv_free(domain);
    return st;
}

/* A ValueInfoProto of a graph input or output. */
typedef struct value_info {
    char *name;
    int has_tensor_type, has_shape, other_type;
    int64_t elem;
    size_t ndim;
    cnv_shape shape;
} value_info;

static cnv_status read_shape(loader *L, cnv_pb *r, value_info *vi)
{
    cnv_pb_field f, g;
    int rc;
    vi->has_shape = 1;
    while ((rc = cnv_pb_next(r, &f)) > 0) {
        if (f.num != 1)
            continue;
        cnv_pb dr;
        if (cnv_pb_expect(r, &f, CNV_PB_LEN, "shape dim") != 0 || cnv_pb_sub(r, &f, &dr) != 0)
            return CNV_ERR_FORMAT;
        int64_t d = -1; /* dim_param or no value: known at planning */
        while ((rc = cnv_pb_next(&dr, &g)) > 0) {
            if (g.num == 1) {
                if (cnv_pb_expect(&dr, &g, CNV_PB_VARINT, "dim_value") != 0)
                    return CNV_ERR_FORMAT;
                d = (int64_t)g.u;
                if (d < 0)
                    return cnv_fail(L->e, CNV_ERR_FORMAT, "negative dim_value %lld at axis %zu",
                                    (long long)d, vi->ndim);
            } else if (g.num == 2) {
                if (cnv_pb_expect(&dr, &g, CNV_PB_LEN, "dim_param") != 0)
                    return CNV_ERR_FORMAT;
                d = -1;
            }
        }
        if (rc < 0)
            return CNV_ERR_FORMAT;
        if (vi->ndim < CNV_MAX_DIMS)
            vi->shape.dims[vi->ndim] = d;
        vi->ndim++;
    }
    return rc < 0 ? CNV_ERR_FORMAT : CNV_OK;
}

static cnv_status read_value_info(loader *L, cnv_pb *r, value_info *vi)
{
    cnv_pb_field f, g, h;
    cnv_pb tr, ttr, sr;
    int rc;
    cnv_status st;
    memset(vi, 0, sizeof *vi);
    while ((rc = cnv_pb_next(r, &f)) > 0) {
        if (f.num == 1) {
            if ((st = pb_string(r, &f, "name", &vi->name)) != CNV_OK)
                return st;
        } else if (f.num == 2) {
            if (cnv_pb_expect(r, &f, CNV_PB_LEN, "type") != 0 || cnv_pb_sub(r, &f, &tr) != 0)
                return CNV_ERR_FORMAT;
            while ((rc = cnv_pb_next(&tr, &g)) > 0) {
                if (g.num == 4 || g.num == 5 || g.num == 8 || g.num == 9) {
                    vi->other_type = 1;
                    continue;
                }
                if (g.num != 1)
                    continue;
                if (cnv_pb_expect(&tr, &g, CNV_PB_LEN, "tensor_type") != 0 || cnv_pb_sub(&tr, &g, &ttr) != 0)
                    return CNV_ERR_FORMAT;
                vi->has_tensor_type = 1;
                while ((rc = cnv_pb_next(&ttr, &h)) > 0) {
                    if (h.num == 1) {
                        if (cnv_pb_expect(&ttr, &h, CNV_PB_VARINT, "elem_type") != 0)
                            return CNV_ERR_FORMAT;
                        vi->elem = (int32_t)(uint32_t)h.u;
                    } else if (h.num == 2) {
                        if (cnv_pb_expect(&ttr, &h, CNV_PB_LEN, "shape") != 0 || cnv_pb_sub(&ttr, &h, &sr) != 0)
                            return CNV_ERR_FORMAT;
                        vi->ndim = 0;
                        if ((st = read_shape(L, &sr, vi)) != CNV_OK)
                            return st;
                    }
                }
                if (rc < 0)
                    return CNV_ERR_FORMAT;
            }
            if (rc < 0)
                return CNV_ERR_FORMAT;
        }
    }
    if (rc < 0)
        return CNV_ERR_FORMAT;
    if (!vi->name || !vi->name[0])
        return cnv_fail(L->e, CNV_ERR_FORMAT, "has no name");
    return CNV_OK;
}

/* A graph input; promote: it has an initializer of its name and is taken
 * as the input all the same (read_graph). */
static cnv_status read_input(loader *L, cnv_pb *r, size_t index, int *bind_index, int promote)
{
    value_info vi;
    char label[CNV_ERR_LEN / 2];
    cnv_status st = read_value_info(L, r, &vi);
    if (vi.name)
        snprintf(label, sizeof label, "graph input '%s'", vi.name);
    else
        snprintf(label, sizeof label, "graph input #%zu", index);
    if (st != CNV_OK) {
        if (st != CNV_ERR_NOMEM)
            cnv_err_prefix(L->e, "%s", label);
        goto done;
    }
    /* Older exporters list every initializer among the inputs too: those
     * are weights, not inputs. */
    int t = cnv_model_find(L->m, vi.name);
    if (t >= 0 && L->m->tensors[t].kind == CNV_T_CONST && !promote) {
        if (L->shadowed < 0)
            L->shadowed = (long)index;
        goto done;
    }
    int k = (*bind_index)++;
    if (k < L->n_binds && L->binds[k].data) {
        const cnv_onnx_bind *b = &L->binds[k];
        st = cnv_model_add_const(L->m, vi.name, b->dtype, &b->shape, b->data);
        goto done;
    }
    if (vi.other_type || !vi.has_tensor_type) {
        st = cnv_fail(L->e, CNV_ERR_UNSUPPORTED, "%s is not a tensor", label);
        goto done;
    }
    /* FLOAT16 and DOUBLE inputs take the image as float32 (the engine's
     * type); the file's type is kept for writing the model back. */
    if (vi.elem != CNV_ONNX_FLOAT && vi.elem != CNV_ONNX_FLOAT16 && vi.elem != CNV_ONNX_DOUBLE) {
        st = cnv_fail(L->e, CNV_ERR_UNSUPPORTED,
                      "%s has element type %s (%lld); the engine takes FLOAT, FLOAT16 or DOUBLE inputs", label,
                      cnv_onnx_dtype_name(vi.elem), (long long)vi.elem);
        goto done;
    }
    if (!vi.has_shape) {
        st = cnv_fail(L->e, CNV_ERR_UNSUPPORTED, "%s has no shape; its rank must be declared", label);
        goto done;
    }
    if (vi.ndim > CNV_MAX_DIMS) {
        st = cnv_fail(L->e, CNV_ERR_UNSUPPORTED, "%s has rank %zu; at most %d dimensions are supported",
                      label, vi.ndim, CNV_MAX_DIMS);
        goto done;
    }
    vi.shape.ndim = (int)vi.ndim;
    for (int a = 0; a < L->n_adopt; a++)
        if (vi.ndim == 4 && L->adopt[a].node != SIZE_MAX && !strcmp(L->adopt[a].input, vi.name)) {
            cnv_shape nhwc = vi.shape;
            cnv_shape4(&vi.shape, nhwc.dims[0], nhwc.dims[3], nhwc.dims[1], nhwc.dims[2]);
            L->adopt[a].rank4 = 1;
        }
    st = promote ? cnv_model_const_to_input(L->m, t, &vi.shape) : cnv_model_add_input(L->m, vi.name, &vi.shape);
    if (st == CNV_OK)
        L->m->tensors[cnv_model_find(L->m, vi.name)].file_type = (int)vi.elem;
done:
    cnv_free(vi.name);
    return st;
}

static cnv_status read_output(loader *L, cnv_pb *r, size_t index)
{
    value_info vi;
    cnv_status st = read_value_info(L, r, &vi);
    if (st != CNV_OK) {
        if (st != CNV_ERR_NOMEM) {
            if (vi.name)
                cnv_err_prefix(L->e, "graph output '%s'", vi.name);
            else
                cnv_err_prefix(L->e, "graph output #%zu", index);
        }
    } else {
        st = cnv_model_add_output(L->m, vi.name);
        if (st == CNV_OK && vi.has_tensor_type && vi.elem > 0 && vi.elem < 64)
            L->m->tensors[cnv_model_find(L->m, vi.name)].file_type = (int)vi.elem;
    }
    cnv_free(vi.name);
    return st;
}

static cnv_status read_initializer(loader *L, cnv_pb *r, size_t index)
{
    cnv_onnx_tensor t;
    char what[64];
    snprintf(what, sizeof what, "initializer #%zu", index);
    cnv_status st = cnv_onnx_read_tensor(r, "initializer", &t);
    if (st != CNV_OK)
        return st;
    if (!t.name || !t.name[0]) {
        st = cnv_fail(L->e, CNV_ERR_FORMAT, "%s has no name", what);
    } else {
        /* the decoded values become the model's: no copy */
        st = cnv_model_add_const_take(L->m, t.name, t.dtype, &t.shape, t.data, t.in_place);
        t.data = NULL;
    }
    cnv_onnx_tensor_free(&t);
    return st;
}

/* ---------------------------------------------------------- node scan */

/* One node's op_type, inputs and (for a Transpose) whether its perm is
 * NHWC -> NCHW, without building anything. */
typedef struct node_scan {
    char *op, *name, *domain;
    strlist ins;
    int to_nchw;
} node_scan;

static void node_scan_free(node_scan *n)
{
    cnv_free(n->op);
    cnv_free(n->name);
    cnv_free(n->domain);
    strlist_free(&n->ins);
}

static cnv_status scan_node(loader *L, cnv_pb *r, size_t index, node_scan *n)
{
    cnv_pb_field f;
    fields attr_fields = {0};
    int rc;
    cnv_status st = CNV_OK;
    memset(n, 0, sizeof *n);
    while (st == CNV_OK && (rc = cnv_pb_next(r, &f)) > 0) {
        if (f.num == 1)
            st = strlist_push(&n->ins, r, &f, "node input");
        else if (f.num == 3)
            st = pb_string(r, &f, "node name", &n->name);
        else if (f.num == 4)
            st = pb_string(r, &f, "node op_type", &n->op);
        else if (f.num == 7)
            st = pb_string(r, &f, "node domain", &n->domain);
        else if (f.num == 5)
            st = cnv_pb_expect(r, &f, CNV_PB_LEN, "node attribute") ? CNV_ERR_FORMAT
                 : fields_push(&attr_fields, &f, L->e, CNV_MAX_ATTRS, "attributes in a node");
    }
    if (st == CNV_OK && rc < 0)
        st = CNV_ERR_FORMAT;
    for (size_t i = 0; st == CNV_OK && n->op && !strcmp(n->op, "Transpose") && i < attr_fields.n; i++) {
        cnv_pb ar;
        attr_buf b;
        memset(&b, 0, sizeof b);
        if (cnv_pb_sub(r, &attr_fields.v[i], &ar) != 0) {
            st = CNV_ERR_FORMAT;
            break;
        }
        st = read_attr(L, &ar, "Transpose", (int)i, &b);
        if (st == CNV_OK && b.a.name && !strcmp(b.a.name, "perm") && b.a.type == CNV_ATTR_INTS && b.a.n == 4)
            n->to_nchw = b.a.ints[0] == 0 && b.a.ints[1] == 3 && b.a.ints[2] == 1 && b.a.ints[3] == 2;
        attr_buf_free(&b);
    }
    cnv_free(attr_fields.v);
    if (st != CNV_OK && st != CNV_ERR_NOMEM)
        cnv_err_prefix(L->e, "node #%zu", index);
    return st;
}

/* Before anything is decoded: every node's op must be one the engine has,
 * so that a model with an unsupported op fails without decoding its
 * weights; and a Keras-style export, which takes NHWC images and
 * transposes them to NCHW first, is adopted as NCHW when that Transpose is
 * all that reads its graph input: read_input permutes the declared dims
 * and read_node makes the Transpose an Identity. Images then go in as
 * every command makes them, and gradients come out in the same layout
 * (docs/ONNX.md). */
static cnv_status scan_nodes(loader *L, cnv_pb *g, const fields *nodes)
{
    cnv_status st = CNV_OK;
    for (int pass = 0; pass < 2 && st == CNV_OK; pass++) {
        int *readers = NULL;
        if (pass == 1) {
            if (L->n_adopt == 0)
                break;
            readers = cnv_calloc((size_t)L->n_adopt, sizeof *readers);
            if (!readers)
                return cnv_fail(L->e, CNV_ERR_NOMEM, "out of memory reading the nodes");
        }
        for (size_t i = 0; st == CNV_OK && i < nodes->n; i++) {
            cnv_pb sub;
            node_scan n;
            if (cnv_pb_sub(g, &nodes->v[i], &sub) != 0)
                return CNV_ERR_FORMAT;
            sub.own = 0; /* read_node reads these bytes again */
            if ((st = scan_node(L, &sub, i, &n)) != CNV_OK) {
                node_scan_free(&n);
                break;
            }
            int default_domain = !n.domain || !n.domain[0] || !strcmp(n.domain, "ai.onnx");
            if (pass == 0 && n.op && default_domain && strcmp(n.op, "Constant") != 0 &&
                !cnv_model_op_known(n.op)) {
                st = cnv_fail(L->e, CNV_ERR_UNSUPPORTED, "node '%s': op '%s' is not supported",
                              n.name && n.name[0] ? n.name : "(unnamed)", n.op);
            } else if (pass == 0 && n.to_nchw && n.ins.n >= 1 && L->n_adopt < 4) {
                struct adoption *a = &L->adopt[L->n_adopt];
                if (!(a->input = cnv_strdup(n.ins.v[0])))
                    st = cnv_fail(L->e, CNV_ERR_NOMEM, "out of memory reading the nodes");
                else
                    a->node = i, L->n_adopt++;
            } else if (pass == 1) {
                for (size_t k = 0; k < n.ins.n; k++)
                    for (int a = 0; a < L->n_adopt; a++)
                        readers[a] += !strcmp(n.ins.v[k], L->adopt[a].input);
            }
            node_scan_free(&n);
        }
        /* Only an input read by its Transpose alone is adopted. */
        for (int a = 0; pass == 1 && a < L->n_adopt; a++)
            if (readers[a] != 1)
                L->adopt[a].node = SIZE_MAX;
        cnv_free(readers);
    }
    return st;
}

static cnv_status read_graph(loader *L, cnv_pb *g)
{
    fields nodes = {0}, inits = {0}, inputs = {0}, outputs = {0};
    cnv_pb_field f;
    cnv_pb sub;
    int rc = 0;
    cnv_status st = CNV_OK;
    while (st == CNV_OK && (rc = cnv_pb_next(g, &f)) > 0) {
        fields *dst = f.num == 1 ? &nodes : f.num == 5 ? &inits : f.num == 11 ? &inputs
                    : f.num == 12 ? &outputs : NULL;
        if (f.num == 15) {
            st = cnv_fail(L->e, CNV_ERR_UNSUPPORTED, "the graph has sparse initializers; they are not supported");
            break;
        }
        if (!dst)
            continue;
        if (cnv_pb_expect(g, &f, CNV_PB_LEN, f.num == 1 ? "graph node" : f.num == 5 ? "graph initializer"
                          : f.num == 11 ? "graph input" : "graph output") != 0) {
            st = CNV_ERR_FORMAT;
            break;
        }
        st = fields_push(dst, &f, L->e, f.num == 1 ? CNV_MAX_NODES : CNV_MAX_TENSORS,
                         f.num == 1 ? "nodes" : f.num == 5 ? "initializers" : f.num == 11 ? "graph inputs"
                                                                                         : "graph outputs");
    }
    if (st == CNV_OK && rc < 0)
        st = CNV_ERR_FORMAT;
    if (st == CNV_OK)
        st = scan_nodes(L, g, &nodes);
    for (size_t i = 0; st == CNV_OK && i < inits.n; i++)
        if ((st = cnv_pb_sub(g, &inits.v[i], &sub) ? CNV_ERR_FORMAT : CNV_OK) == CNV_OK)
            st = read_initializer(L, &sub, i);
    int bind_index = 0;
    for (size_t i = 0; st == CNV_OK && i < inputs.n; i++)
        if ((st = cnv_pb_sub(g, &inputs.v[i], &sub) ? CNV_ERR_FORMAT : CNV_OK) == CNV_OK)
            st = read_input(L, &sub, i, &bind_index, 0);
    /* ONNX: an input with an initializer is an input with a default value.
     * Weights listed among the inputs are that too, and stay weights; but
     * when every input has one, the image must go somewhere: the first
     * input is taken as the model's input (before, it was dropped and the
     * model had no input at all). */
    if (st == CNV_OK && L->m->n_inputs == 0 && L->shadowed >= 0 && L->n_binds == 0 &&
        (st = cnv_pb_sub(g, &inputs.v[L->shadowed], &sub) ? CNV_ERR_FORMAT : CNV_OK) == CNV_OK)
        st = read_input(L, &sub, (size_t)L->shadowed, &bind_index, 1);
    for (size_t i = 0; st == CNV_OK && i < nodes.n; i++)
        if ((st = cnv_pb_sub(g, &nodes.v[i], &sub) ? CNV_ERR_FORMAT : CNV_OK) == CNV_OK)
            st = read_node(L, &sub, i);
    for (size_t i = 0; st == CNV_OK && i < outputs.n; i++)
        if ((st = cnv_pb_sub(g, &outputs.v[i], &sub) ? CNV_ERR_FORMAT : CNV_OK) == CNV_OK)
            st = read_output(L, &sub, i);
    if (st == CNV_OK && outputs.n == 0)
        st = cnv_fail(L->e, CNV_ERR_FORMAT, "the graph has no outputs");
    cnv_free(nodes.v);
    cnv_free(inits.v);
    cnv_free(inputs.v);
    cnv_free(outputs.v);
    return st;
}

static cnv_status read_meta(loader *L, cnv_pb *r)
{
    cnv_pb_field f;
    char *key = NULL, *value = NULL;
    int rc;
    cnv_status st = CNV_OK;
    while (st == CNV_OK && (rc = cnv_pb_next(r, &f)) > 0) {
        if (f.num == 1)
            st = pb_string(r, &f, "metadata key", &key);
        else if (f.num == 2)
            st = pb_string(r, &f, "metadata value", &value);
    }
    if (st == CNV_OK && rc < 0)
        st = CNV_ERR_FORMAT;
    if (st == CNV_OK && (!key || !key[0]))
        st = cnv_fail(L->e, CNV_ERR_FORMAT, "a metadata entry has no key");
    if (st == CNV_OK)
        st = cnv_model_set_meta(L->m, key, value ? value : "");
    cnv_free(key);
    cnv_free(value);
    return st;
}

/* What a file that is not an ONNX model is, by its first bytes (only
 * signatures no ModelProto can start with), and what to do instead; NULL
 * when it may be a model. */
static const char *not_onnx(const uint8_t *p, size_t n)
{
    static const struct {
        const char *magic;
        size_t len, at;
        const char *what;
    } kinds[] = {
        {"\x89PNG", 4, 0, "a PNG image"},
        {"\xff\xd8\xff", 3, 0, "a JPEG image"},
        {"GIF8", 4, 0, "a GIF image"},
        {"PK\x03\x04", 4, 0,
         "a ZIP archive (a PyTorch .pt/.pth checkpoint or a .keras model?): export the model to ONNX first "
         "(torch.onnx.export, tf2onnx; docs/ONNX.md)"},
        {"\x89HDF", 4, 0, "an HDF5 file (a Keras .h5 model?): convert it to ONNX first with tf2onnx"},
        {"TFL3", 4, 4, "a TensorFlow Lite model: convert it to ONNX first with tf2onnx"},
        {"\x80\x02", 2, 0, "a Python pickle (a PyTorch checkpoint?): export the model with torch.onnx.export"},
        {"\x80\x04\x95", 3, 0, "a Python pickle (a PyTorch checkpoint?): export the model with torch.onnx.export"},
        {"\x7f" "ELF", 4, 0, "a program (ELF), not a model"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (n >= kinds[i].at + kinds[i].len && !memcmp(p + kinds[i].at, kinds[i].magic, kinds[i].len))
            return kinds[i].what;
    return NULL;
}

static cnv_status read_model(loader *L, const void *data, size_t size)
{
    cnv_pb r, sub;
    cnv_pb_field f, g, graph;
    fields meta = {0};
    int rc = 0, has_ir = 0, has_graph = 0;
    int64_t opset = 0;
    char other[64] = ""; /* a non-default domain imported, for messages */
    cnv_status st = CNV_OK;

    memset(&graph, 0, sizeof graph);
    if (size == 0)
        return cnv_fail(L->e, CNV_ERR_FORMAT, "empty file: not an ONNX model");
    if (size > CNV_ONNX_MAX_FILE)
        return cnv_fail(L->e, CNV_ERR_UNSUPPORTED, "model of %zu bytes; the limit is 2 GiB", size);
    const char *kind = not_onnx(data, size);
    if (kind)
        return cnv_fail(L->e, CNV_ERR_FORMAT, "not an ONNX model: this is %s", kind);
    cnv_pb_init(&r, data, size, L->e);
    r.own = L->own;
    size_t budget = cnv_get_memory_limit();
    r.budget = &budget;
    while (st == CNV_OK && (rc = cnv_pb_next(&r, &f)) > 0) {
        switch (f.num) {
        case 1:
            if (cnv_pb_expect(&r, &f, CNV_PB_VARINT, "ir_version") != 0)
                st = CNV_ERR_FORMAT;
            else if ((int64_t)f.u <= 0)
                st = cnv_fail(L->e, CNV_ERR_FORMAT, "invalid ir_version %lld", (long long)f.u);
            has_ir = 1;
            break;
        case 7:
            if (cnv_pb_expect(&r, &f, CNV_PB_LEN, "graph") != 0)
                st = CNV_ERR_FORMAT;
            else if (has_graph)
                st = cnv_fail(L->e, CNV_ERR_FORMAT, "the model has more than one graph");
            graph = f;
            has_graph = 1;
            break;
        case 8: {
            if (cnv_pb_expect(&r, &f, CNV_PB_LEN, "opset_import") != 0 || cnv_pb_sub(&r, &f, &sub) != 0) {
                st = CNV_ERR_FORMAT;
                break;
            }
            int is_default = 1;
            int64_t version = 0;
            while ((rc = cnv_pb_next(&sub, &g)) > 0) {
                if (g.num == 1) {
                    if (cnv_pb_expect(&sub, &g, CNV_PB_LEN, "opset domain") != 0) {
                        rc = -1;
                        break;
                    }
                    is_default = g.len == 0 || pb_string_is(&g, "ai.onnx");
                    if (!is_default && !other[0])
                        snprintf(other, sizeof other, "%.*s", (int)(g.len < 63 ? g.len : 63),
                                 (const char *)g.data);
                } else if (g.num == 2) {
                    if (cnv_pb_expect(&sub, &g, CNV_PB_VARINT, "opset version") != 0) {
                        rc = -1;
                        break;
                    }
                    version = (int64_t)g.u;
                }
            }
            if (rc < 0)
                st = CNV_ERR_FORMAT;
            else if (is_default) {
                if (version <= 0)
                    st = cnv_fail(L->e, CNV_ERR_FORMAT, "invalid opset version %lld for the default domain",
                                  (long long)version);
                opset = version;
            }
            break;
        }
        case 14:
            if (cnv_pb_expect(&r, &f, CNV_PB_LEN, "metadata_props") != 0)
                st = CNV_ERR_FORMAT;
            else
                st = fields_push(&meta, &f, L->e, CNV_MAX_META, "metadata entries");
            break;
        default:
            break;
        }
    }
    if (st == CNV_OK && rc < 0) {
        st = CNV_ERR_FORMAT;
        if (!has_ir) /* a file of another kind, most likely: say so first */
            cnv_err_prefix(L->e, "not an ONNX model (it does not start as one)");
    }
    if (st == CNV_OK && !has_ir)
        st = cnv_fail(L->e, CNV_ERR_FORMAT, "no ir_version: not an ONNX model");
    if (st == CNV_OK && !has_graph)
        st = cnv_fail(L->e, CNV_ERR_FORMAT, "the model has no graph");
    /* A model of another domain's ops alone (training, ML) needs no
     * default opset: read_node refuses its nodes as UNSUPPORTED, and a
     * default-domain node without the import as malformed. */
    if (st == CNV_OK && opset == 0 && !other[0])
        st = cnv_fail(L->e, CNV_ERR_FORMAT, "no opset_import for the default ONNX domain");
    L->opset = opset;
    /* The opset first: node attributes are checked against it. */
    if (st == CNV_OK && opset)
        st = cnv_model_set_opset(L->m, opset);
    for (size_t i = 0; st == CNV_OK && i < meta.n; i++)
        if ((st = cnv_pb_sub(&r, &meta.v[i], &sub) ? CNV_ERR_FORMAT : CNV_OK) == CNV_OK)
            st = read_meta(L, &sub);
    if (st == CNV_OK)
        st = cnv_pb_sub(&r, &graph, &sub) ? CNV_ERR_FORMAT : read_graph(L, &sub);
    cnv_free(meta.v);
    return st;
}

/* ----------------------------------------------------------- public */

static cnv_status load_into(cnv_model *m, const void *data, size_t size,
                            const cnv_onnx_bind *binds, int n_binds, int own)
{
    loader L = {.m = m, .e = &m->err, .binds = binds, .n_binds = n_binds, .own = own, .shadowed = -1};
    if (!data && size)
        return cnv_fail(L.e, CNV_ERR_INVALID_ARG, "NULL data");
    cnv_err_clear(L.e);
    cnv_status st = read_model(&L, data ? data : "", size);
    for (int a = 0; a < L.n_adopt; a++)
        cnv_free(L.adopt[a].input);
    /* The builder calls every argument error INVALID_ARG (a name defined
     * twice, an opset out of range); coming from a file it is malformed. */
    return st == CNV_ERR_INVALID_ARG ? CNV_ERR_FORMAT : st;
}

cnv_status cnv_onnx_load(const void *data, size_t size, const cnv_onnx_bind *binds,
                         int n_binds, cnv_model **out)
{
    if (!out)
        return CNV_ERR_INVALID_ARG;
    *out = NULL;
    cnv_model *m = NULL;
    cnv_status st = cnv_model_create(&m);
    *out = m;
    if (st != CNV_OK)
        return st;
    return load_into(m, data, size, binds, n_binds, 0);
}

/* A file read into a buffer of the library's own: the model keeps it, its
 * large weights used where they lie (a 500 MB model then takes 500 MB,
 * loaded in one read and a move). */
static cnv_status load_owned(cnv_model *m, void *data, size_t size)
{
    cnv_status st = load_into(m, data ? data : "", size, NULL, 0, data != NULL);
    int kept = 0;
    for (int t = 0; t < m->n_tensors; t++)
        kept |= m->tensors[t].in_blob;
    if (kept)
        m->blob = data;
    else
        cnv_free(data);
    return st;
}

cnv_status cnv_onnx_load_owned(void *data, size_t size, cnv_model **out)
{
    if (!out) {
        cnv_free(data);
        return CNV_ERR_INVALID_ARG;
    }
    *out = NULL;
    cnv_model *m = NULL;
    cnv_status st = cnv_model_create(&m);
    *out = m;
    if (st != CNV_OK) {
        cnv_free(data);
        return st;
    }
    return load_owned(m, data, size);
}

cnv_status cnv_model_load_onnx_memory(const void *data, size_t size, cnv_model **out)
{
    return cnv_onnx_load(data, size, NULL, 0, out);
}

cnv_status cnv_model_load_onnx(const char *path, cnv_model **out)
{
    if (!out)
        return CNV_ERR_INVALID_ARG;
    *out = NULL;
    cnv_model *m = NULL;
    cnv_status st = cnv_model_create(&m);
    *out = m;
    if (st != CNV_OK)
        return st;
    if (!path)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "NULL path");
    void *data;
    size_t size;
    st = cnv_read_file(path, CNV_ONNX_MAX_FILE, &data, &size, &m->err);
    if (st == CNV_OK) {
        st = load_owned(m, data, size);
        if (st != CNV_OK && st != CNV_ERR_NOMEM)
            cnv_err_prefix(&m->err, "%s", path);
    }
    return st;
}

cnv_status cnv_tensor_read_pb(const void *data, size_t size, cnv_dtype *dtype, cnv_shape *shape,
                              void **values, char **name, char *errbuf, size_t errlen)
{
    cnv_err e;
    cnv_pb r;
    cnv_onnx_tensor t;
    cnv_status st;
    e.msg[0] = '\0';
    if (!dtype || !shape || !values || (!data && size)) {
        st = cnv_fail(&e, CNV_ERR_INVALID_ARG, "NULL argument");
    } else if (size > CNV_ONNX_MAX_FILE) {
        st = cnv_fail(&e, CNV_ERR_UNSUPPORTED, "tensor of %zu bytes; the limit is 2 GiB", size);
    } else {
        cnv_pb_init(&r, data ? data : "", size, &e);
        size_t budget = cnv_get_memory_limit();
        r.budget = &budget;
        st = cnv_onnx_read_tensor(&r, "tensor", &t);
        if (st == CNV_OK) {
            char *nm = NULL;
            if (name && !(nm = cnv_strdup(t.name ? t.name : ""))) {
                st = cnv_fail(&e, CNV_ERR_NOMEM, "out of memory");
            } else {
                *dtype = t.dtype;
                *shape = t.shape;
                *values = t.data;
                t.data = NULL;
                if (name)
                    *name = nm;
            }
            cnv_onnx_tensor_free(&t);
        }
    }
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", st == CNV_OK ? "" : e.msg);
    return st;
}

void cnv_free_buffer(void *p)
{
    cnv_free(p);
}
