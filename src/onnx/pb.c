/* Protocol Buffers wire-format primitives: the bounded reader and the
 * append-only writer declared in pb.h. */
#include "onnx/pb.h"

#include <string.h>

static size_t off(const cnv_pb *r, const uint8_t *p)
{
    return (size_t)(p - r->base);
}

void cnv_pb_init(cnv_pb *r, const void *data, size_t size, cnv_err *err)
{
    r->base = r->p = data;
    r->end = r->p + size;
    r->depth = 0;
    r->err = err;
    r->own = 0;
    r->budget = NULL;
}

int cnv_pb_charge(const cnv_pb *r, size_t bytes, const char *what)
{
    if (!r->budget)
        return 0;
    if (bytes > *r->budget) {
        cnv_fail(r->err, CNV_ERR_NOMEM,
                 "%s: decoding the model's values needs more than the memory limit of %.1f MiB "
                 "(cnv_set_memory_limit)",
                 what, (double)cnv_get_memory_limit() / (1 << 20));
        return -1;
    }
    *r->budget -= bytes;
    return 0;
}

int cnv_pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t *q = *p;
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (q == end)
            return -1; /* truncated */
        uint8_t b = *q++;
        /* The tenth byte holds bit 63 only: anything more overflows. */
        if (i == 9 && b > 1)
            return -1;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *p = q;
            *v = x;
            return 0;
        }
    }
    return -1; /* an eleventh byte would follow */
}

uint32_t cnv_pb_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t cnv_pb_le64(const uint8_t *p)
{
    return (uint64_t)cnv_pb_le32(p) | (uint64_t)cnv_pb_le32(p + 4) << 32;
}

static const char *wire_name(int wire)
{
    switch (wire) {
    case CNV_PB_VARINT: return "varint";
    case CNV_PB_I64: return "fixed64";
    case CNV_PB_LEN: return "length-delimited";
    case CNV_PB_I32: return "fixed32";
    default: return "invalid";
    }
}

int cnv_pb_next(cnv_pb *r, cnv_pb_field *f)
{
    if (r->p == r->end)
        return 0;
    const uint8_t *start = r->p;
    uint64_t tag;
    memset(f, 0, sizeof *f);
    f->offset = off(r, start);
    if (cnv_pb_varint(&r->p, r->end, &tag) != 0) {
        cnv_fail(r->err, CNV_ERR_FORMAT, "bad field tag (truncated or overlong varint) at byte %zu", f->offset);
        return -1;
    }
    if (tag > UINT32_MAX || (tag >> 3) == 0) {
        cnv_fail(r->err, CNV_ERR_FORMAT, "invalid field number %llu at byte %zu",
                 (unsigned long long)(tag >> 3), f->offset);
        return -1;
    }
    f->num = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    switch (f->wire) {
    case CNV_PB_VARINT:
        if (cnv_pb_varint(&r->p, r->end, &f->u) != 0) {
            cnv_fail(r->err, CNV_ERR_FORMAT, "field %u at byte %zu: truncated or overlong varint at byte %zu",
                     f->num, f->offset, off(r, r->p));
            return -1;
        }
        return 1;
    case CNV_PB_I64:
    case CNV_PB_I32: {
        size_t n = f->wire == CNV_PB_I64 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n) {
            cnv_fail(r->err, CNV_ERR_FORMAT, "field %u at byte %zu: truncated %s at byte %zu", f->num,
                     f->offset, wire_name(f->wire), off(r, r->p));
            return -1;
        }
        f->u = n == 8 ? cnv_pb_le64(r->p) : cnv_pb_le32(r->p);
        r->p += n;
        return 1;
    }
    case CNV_PB_LEN: {
        uint64_t len;
        if (cnv_pb_varint(&r->p, r->end, &len) != 0) {
            cnv_fail(r->err, CNV_ERR_FORMAT, "field %u at byte %zu: truncated or overlong length at byte %zu",
                     f->num, f->offset, off(r, r->p));
            return -1;
        }
        /* Compared in 64 bits against what remains: a length near 2^63 or
         * 2^64 can never wrap a pointer. */
        uint64_t left = (uint64_t)(r->end - r->p);
        if (len > left) {
            cnv_fail(r->err, CNV_ERR_FORMAT,
                     "field %u at byte %zu: length %llu runs past the end (%llu bytes left)",
                     f->num, f->offset, (unsigned long long)len, (unsigned long long)left);
            return -1;
        }
        f->data = r->p;
        f->len = (size_t)len;
        r->p += len;
        return 1;
    }
    default:
        cnv_fail(r->err, CNV_ERR_FORMAT, "field %u at byte %zu: unsupported wire type %d%s",
                 f->num, f->offset, f->wire, f->wire == 3 || f->wire == 4 ? " (group)" : "");
        return -1;
    }
}

int cnv_pb_sub(const cnv_pb *r, const cnv_pb_field *f, cnv_pb *sub)
{
    if (r->depth + 1 > CNV_PB_MAX_DEPTH) {
        cnv_fail(r->err, CNV_ERR_FORMAT, "messages nested deeper than %d at byte %zu",
                 CNV_PB_MAX_DEPTH, f->offset);
        return -1;
    }
    sub->base = r->base;
    sub->p = f->data;
    sub->end = f->data + f->len;
    sub->depth = r->depth + 1;
    sub->err = r->err;
    sub->own = r->own;
    sub->budget = r->budget;
    return 0;
}

int cnv_pb_expect(const cnv_pb *r, const cnv_pb_field *f, int wire, const char *what)
{
    if (f->wire == wire)
        return 0;
    cnv_fail(r->err, CNV_ERR_FORMAT, "%s (field %u) at byte %zu has wire type %s, expected %s",
             what, f->num, f->offset, wire_name(f->wire), wire_name(wire));
    return -1;
}

int cnv_pb_iter_init(cnv_pb_iter *it, const cnv_pb *r, const cnv_pb_field *f,
                     int elem_wire, const char *what, size_t *count)
{
    memset(it, 0, sizeof *it);
    it->wire = elem_wire;
    if (f->wire == elem_wire) {
        it->single = 1;
        it->u = f->u;
        *count = 1;
        return 0;
    }
    if (f->wire != CNV_PB_LEN) {
        cnv_fail(r->err, CNV_ERR_FORMAT, "%s (field %u) at byte %zu has wire type %s, expected %s or packed",
                 what, f->num, f->offset, wire_name(f->wire), wire_name(elem_wire));
        return -1;
    }
    it->p = f->data;
    it->end = f->data + f->len;
    if (elem_wire == CNV_PB_VARINT) {
        size_t n = 0;
        const uint8_t *q = it->p;
        uint64_t v;
        while (q < it->end) {
            if (cnv_pb_varint(&q, it->end, &v) != 0) {
                cnv_fail(r->err, CNV_ERR_FORMAT, "%s (field %u): bad packed varint at byte %zu",
                         what, f->num, off(r, q));
                return -1;
            }
            n++;
        }
        *count = n;
        return 0;
    }
    size_t esize = elem_wire == CNV_PB_I64 ? 8 : 4;
    if (f->len % esize != 0) {
        cnv_fail(r->err, CNV_ERR_FORMAT, "%s (field %u) at byte %zu: packed length %zu is not a multiple of %zu",
                 what, f->num, f->offset, f->len, esize);
        return -1;
    }
    *count = f->len / esize;
    return 0;
}

int cnv_pb_iter_next(cnv_pb_iter *it, uint64_t *v)
{
    if (it->single) {
        if (it->single > 1)
            return 0;
        it->single = 2;
        *v = it->u;
        return 1;
    }
    if (it->p >= it->end)
        return 0;
    switch (it->wire) {
    case CNV_PB_VARINT:
        return cnv_pb_varint(&it->p, it->end, v) == 0;
    case CNV_PB_I64:
        *v = cnv_pb_le64(it->p);
        it->p += 8;
        return 1;
    default:
        *v = cnv_pb_le32(it->p);
        it->p += 4;
        return 1;
    }
}

/* ---- writer ---- */

void cnv_pbw_free(cnv_pbw *w)
{
    cnv_free(w->buf);
    memset(w, 0, sizeof *w);
}

static int reserve(cnv_pbw *w, size_t n)
{
    size_t need;
    if (w->failed)
        return 0;
    if (!cnv_add_size(w->len, n, &need) || !cnv_grow((void **)&w->buf, &w->cap, need, 1)) {
        w->failed = 1;
        return 0;
    }
    return 1;
}

void cnv_pbw_raw(cnv_pbw *w, const void *data, size_t n)
{
    if (n == 0 || !reserve(w, n))
        return;
    memcpy(w->buf + w->len, data, n);
    w->len += n;
}

static size_t varint_encode(uint8_t *b, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        b[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t)v;
    return n;
}

void cnv_pbw_varint(cnv_pbw *w, uint64_t v)
{
    uint8_t b[10];
    cnv_pbw_raw(w, b, varint_encode(b, v));
}

void cnv_pbw_tag(cnv_pbw *w, uint32_t field, int wire)
{
    cnv_pbw_varint(w, (uint64_t)field << 3 | (uint64_t)wire);
}

void cnv_pbw_int(cnv_pbw *w, uint32_t field, int64_t v)
{
    cnv_pbw_tag(w, field, CNV_PB_VARINT);
    cnv_pbw_varint(w, (uint64_t)v);
}

static void put_le32(uint8_t *b, uint32_t u)
{
    b[0] = (uint8_t)u;
    b[1] = (uint8_t)(u >> 8);
    b[2] = (uint8_t)(u >> 16);
    b[3] = (uint8_t)(u >> 24);
}

void cnv_pbw_float(cnv_pbw *w, uint32_t field, float v)
{
    uint32_t u;
    uint8_t b[4];
    memcpy(&u, &v, 4);
    put_le32(b, u);
    cnv_pbw_tag(w, field, CNV_PB_I32);
    cnv_pbw_raw(w, b, 4);
}

void cnv_pbw_bytes(cnv_pbw *w, uint32_t field, const void *data, size_t n)
{
    cnv_pbw_tag(w, field, CNV_PB_LEN);
    cnv_pbw_varint(w, n);
    cnv_pbw_raw(w, data, n);
}

void cnv_pbw_string(cnv_pbw *w, uint32_t field, const char *s)
{
    cnv_pbw_bytes(w, field, s, strlen(s));
}

void cnv_pbw_packed_ints(cnv_pbw *w, uint32_t field, const int64_t *v, size_t n)
{
    if (n == 0)
        return;
    size_t mark = cnv_pbw_begin(w, field);
    for (size_t i = 0; i < n; i++)
        cnv_pbw_varint(w, (uint64_t)v[i]);
    cnv_pbw_end(w, mark);
}

void cnv_pbw_packed_floats(cnv_pbw *w, uint32_t field, const float *v, size_t n)
{
    if (n == 0)
        return;
    size_t bytes;
    if (!cnv_mul_size(n, 4, &bytes)) {
        w->failed = 1;
        return;
    }
    cnv_pbw_tag(w, field, CNV_PB_LEN);
    cnv_pbw_varint(w, bytes);
    if (!reserve(w, bytes))
        return;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_le32(w->buf + w->len + 4 * i, u);
    }
    w->len += bytes;
}

size_t cnv_pbw_begin(cnv_pbw *w, uint32_t field)
{
    cnv_pbw_tag(w, field, CNV_PB_LEN);
    return w->len;
}

void cnv_pbw_end(cnv_pbw *w, size_t mark)
{
    if (w->failed)
        return;
    uint8_t b[10];
    size_t payload = w->len - mark;
    size_t n = varint_encode(b, payload);
    if (!reserve(w, n))
        return;
    /* Nesting in ONNX is shallow (model > graph > node > attribute >
     * tensor), so moving each payload once per level is cheap. */
    memmove(w->buf + mark + n, w->buf + mark, payload);
    memcpy(w->buf + mark, b, n);
    w->len += n;
}
