/* Protocol Buffers wire-format primitives (src/onnx/pb.c): varint limits, lengths
 * past the end, forbidden wire types and field numbers, the nesting limit,
 * packed repeated fields, and the writer against hand-encoded bytes. */
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "onnx/pb.h"

static int varint(const uint8_t *b, size_t n, uint64_t *v, size_t *used)
{
    const uint8_t *p = b;
    int rc = cnv_pb_varint(&p, b + n, v);
    *used = (size_t)(p - b);
    return rc;
}

static void varint_edges(void **state)
{
    (void)state;
    uint64_t v;
    size_t used;
    const uint8_t zero[] = {0x00};
    assert_int_equal(varint(zero, 1, &v, &used), 0);
    assert_true(v == 0 && used == 1);
    const uint8_t v300[] = {0xac, 0x02};
    assert_int_equal(varint(v300, 2, &v, &used), 0);
    assert_true(v == 300 && used == 2);
    /* UINT64_MAX: nine 0xff then 0x01, ten bytes. */
    const uint8_t max[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(varint(max, 10, &v, &used), 0);
    assert_true(v == UINT64_MAX && used == 10);
    /* -1 as int64, as protobuf writes it */
    assert_int_equal((int64_t)v, -1);
    /* A tenth byte of 2 would set bit 64: overflow. */
    const uint8_t over[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    assert_int_equal(varint(over, 10, &v, &used), -1);
    /* Eleven bytes (overlong zero padding). */
    const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    assert_int_equal(varint(eleven, 11, &v, &used), -1);
    /* Non-minimal but within ten bytes is accepted, as protobuf does. */
    const uint8_t padded[] = {0x81, 0x80, 0x00};
    assert_int_equal(varint(padded, 3, &v, &used), 0);
    assert_true(v == 1 && used == 3);
    /* Unterminated, and empty. */
    const uint8_t unterminated[] = {0x80, 0x80};
    assert_int_equal(varint(unterminated, 2, &v, &used), -1);
    assert_int_equal(varint(zero, 0, &v, &used), -1);
}

/* Runs cnv_pb_next over buf until the end or an error; returns the last rc
 * and the message. */
static int walk(const uint8_t *buf, size_t n, cnv_err *e, int *fields)
{
    cnv_pb r;
    cnv_pb_field f;
    int rc;
    cnv_err_clear(e);
    cnv_pb_init(&r, buf, n, e);
    *fields = 0;
    while ((rc = cnv_pb_next(&r, &f)) > 0)
        (*fields)++;
    return rc;
}

static void fields_and_wire_types(void **state)
{
    (void)state;
    cnv_err e;
    int nf;
    /* field 1 varint 150, field 2 "hi", field 3 fixed32, field 4 fixed64 */
    const uint8_t ok[] = {0x08, 0x96, 0x01, 0x12, 0x02, 'h', 'i', 0x1d, 1, 2, 3, 4,
                          0x21, 1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(walk(ok, sizeof ok, &e, &nf), 0);
    assert_int_equal(nf, 4);
    cnv_pb r;
    cnv_pb_field f;
    cnv_pb_init(&r, ok, sizeof ok, &e);
    assert_int_equal(cnv_pb_next(&r, &f), 1);
    assert_true(f.num == 1 && f.wire == CNV_PB_VARINT && f.u == 150);
    assert_int_equal(cnv_pb_next(&r, &f), 1);
    assert_true(f.num == 2 && f.len == 2 && memcmp(f.data, "hi", 2) == 0);
    assert_int_equal(cnv_pb_next(&r, &f), 1);
    assert_true(f.num == 3 && f.u == 0x04030201u);
    assert_int_equal(cnv_pb_next(&r, &f), 1);
    assert_true(f.num == 4 && f.u == 0x0807060504030201ull);

    /* Wire types 3, 4 (groups), 6 and 7 are errors, named in the message. */
    for (int wt = 3; wt <= 7; wt++) {
        if (wt == 5)
            continue;
        uint8_t b[] = {(uint8_t)(1 << 3 | wt), 0, 0, 0, 0, 0, 0, 0, 0};
        assert_int_equal(walk(b, sizeof b, &e, &nf), -1);
        assert_non_null(strstr(e.msg, "wire type"));
        printf("wire type %d: %s\n", wt, e.msg);
    }
    /* Field number 0. */
    const uint8_t f0[] = {0x00, 0x01};
    assert_int_equal(walk(f0, sizeof f0, &e, &nf), -1);
    assert_non_null(strstr(e.msg, "field number 0"));
    /* A tag over 32 bits. */
    const uint8_t bigtag[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00};
    assert_int_equal(walk(bigtag, sizeof bigtag, &e, &nf), -1);
    /* Truncated fixed32 / fixed64 / varint value / tag. */
    const uint8_t t32[] = {0x1d, 1, 2, 3};
    assert_int_equal(walk(t32, sizeof t32, &e, &nf), -1);
    const uint8_t t64[] = {0x21, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(walk(t64, sizeof t64, &e, &nf), -1);
    const uint8_t tv[] = {0x08, 0x96};
    assert_int_equal(walk(tv, sizeof tv, &e, &nf), -1);
    const uint8_t ttag[] = {0x88};
    assert_int_equal(walk(ttag, sizeof ttag, &e, &nf), -1);
}

static void lengths(void **state)
{
    (void)state;
    cnv_err e;
    int nf;
    /* Length 3 with 2 bytes left. */
    const uint8_t past[] = {0x12, 0x03, 'a', 'b'};
    assert_int_equal(walk(past, sizeof past, &e, &nf), -1);
    assert_non_null(strstr(e.msg, "past the end"));
    printf("length past end: %s\n", e.msg);
    /* Length exactly what remains, and zero. */
    const uint8_t exact[] = {0x12, 0x02, 'a', 'b', 0x12, 0x00};
    assert_int_equal(walk(exact, sizeof exact, &e, &nf), 0);
    assert_int_equal(nf, 2);
    /* Lengths near 2^63 and 2^64: a pointer sum would wrap. */
    const uint8_t l63[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 'a'};
    assert_int_equal(walk(l63, sizeof l63, &e, &nf), -1);
    const uint8_t l63b[] = {0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 'a'};
    assert_int_equal(walk(l63b, sizeof l63b, &e, &nf), -1);
    const uint8_t l64[] = {0x12, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'};
    assert_int_equal(walk(l64, sizeof l64, &e, &nf), -1);
    /* Truncated length varint. */
    const uint8_t tl[] = {0x12, 0x80};
    assert_int_equal(walk(tl, sizeof tl, &e, &nf), -1);
}

/* Descends through LEN field 1 as deep as the data goes. */
static int descend(cnv_pb *r, int *depth)
{
    cnv_pb_field f;
    int rc;
    while ((rc = cnv_pb_next(r, &f)) > 0) {
        if (f.num == 1 && f.wire == CNV_PB_LEN) {
            cnv_pb sub;
            if (cnv_pb_sub(r, &f, &sub) != 0)
                return -1;
            if (sub.depth > *depth)
                *depth = sub.depth;
            if (descend(&sub, depth) != 0)
                return -1;
        }
    }
    return rc;
}

/* n messages each holding the next as field 1, built inside-out. */
static uint8_t *nested(int n, size_t *len)
{
    cnv_pbw w = {0};
    for (int i = 0; i < n; i++) {
        cnv_pbw x = {0};
        cnv_pbw_bytes(&x, 1, w.buf, w.len);
        assert_false(x.failed);
        cnv_pbw_free(&w);
        w = x;
    }
    *len = w.len;
    return w.buf;
}

static void nesting_limit(void **state)
{
    (void)state;
    cnv_err e;
    cnv_pb r;
    size_t len;
    int depth = 0;
    uint8_t *b = nested(CNV_PB_MAX_DEPTH, &len);
    cnv_pb_init(&r, b, len, &e);
    assert_int_equal(descend(&r, &depth), 0);
    assert_int_equal(depth, CNV_PB_MAX_DEPTH);
    cnv_free(b);

    b = nested(10000, &len);
    depth = 0;
    cnv_err_clear(&e);
    cnv_pb_init(&r, b, len, &e);
    assert_int_equal(descend(&r, &depth), -1);
    assert_int_equal(depth, CNV_PB_MAX_DEPTH);
    assert_non_null(strstr(e.msg, "nested deeper"));
    printf("10000 levels: %s\n", e.msg);
    cnv_free(b);
}

static void packed(void **state)
{
    (void)state;
    cnv_err e;
    cnv_pb r;
    cnv_pb_field f;
    cnv_pb_iter it;
    size_t n;
    uint64_t v;
    /* packed varints 1, 300, -1 (ten bytes) */
    const uint8_t pv[] = {0x0a, 13, 0x01, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    cnv_pb_init(&r, pv, sizeof pv, &e);
    assert_int_equal(cnv_pb_next(&r, &f), 1);
    assert_int_equal(cnv_pb_iter_init(&it, &r, &f, CNV_PB_VARINT, "x", &n), 0);
    assert_int_equal(n, 3);
    assert_true(cnv_pb_iter_next(&it, &v) && v == 1);
    assert_true(cnv_pb_iter_next(&it, &v) && v == 300);
    assert_true(cnv_pb_iter_next(&it, &v) && (int64_t)v == -1);
    assert_false(cnv_pb_iter_next(&it, &v));
    /* a packed varint cut in the middle */
    const uint8_t pbad[] = {0x0a, 2, 0x01, 0x80};
    cnv_pb_init(&r, pbad, sizeof pbad, &e);
    assert_int_equal(cnv_pb_next(&r, &f), 1);
    assert_int_equal(cnv_pb_iter_init(&it, &r, &f, CNV_PB_VARINT, "x", &n), -1);
    /* packed fixed32 with a partial element */
    const uint8_t pf[] = {0x0a, 6, 0, 0, 0x80, 0x3f, 0, 0};
    cnv_pb_init(&r, pf, sizeof pf, &e);
    assert_int_equal(cnv_pb_next(&r, &f), 1);
    assert_int_equal(cnv_pb_iter_init(&it, &r, &f, CNV_PB_I32, "x", &n), -1);
    assert_non_null(strstr(e.msg, "multiple of 4"));
    /* unpacked: one value per field */
    const uint8_t up[] = {0x0d, 0, 0, 0x80, 0x3f};
    cnv_pb_init(&r, up, sizeof up, &e);
    assert_int_equal(cnv_pb_next(&r, &f), 1);
    assert_int_equal(cnv_pb_iter_init(&it, &r, &f, CNV_PB_I32, "x", &n), 0);
    assert_int_equal(n, 1);
    assert_true(cnv_pb_iter_next(&it, &v) && v == 0x3f800000u);
    assert_false(cnv_pb_iter_next(&it, &v));
    /* wrong wire type for the element */
    assert_int_equal(cnv_pb_iter_init(&it, &r, &f, CNV_PB_VARINT, "x", &n), -1);
}

static void writer(void **state)
{
    (void)state;
    cnv_pbw w = {0};
    cnv_pbw_int(&w, 1, 150);
    cnv_pbw_string(&w, 2, "hi");
    cnv_pbw_float(&w, 3, 1.0f);
    cnv_pbw_int(&w, 4, -1);
    size_t mark = cnv_pbw_begin(&w, 5);
    const int64_t ints[2] = {1, 300};
    cnv_pbw_packed_ints(&w, 1, ints, 2);
    cnv_pbw_end(&w, mark);
    const uint8_t want[] = {0x08, 0x96, 0x01, 0x12, 0x02, 'h', 'i', 0x1d, 0, 0, 0x80, 0x3f,
                            0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                            0x2a, 0x05, 0x0a, 0x03, 0x01, 0xac, 0x02};
    assert_false(w.failed);
    assert_int_equal(w.len, sizeof want);
    assert_memory_equal(w.buf, want, sizeof want);
    cnv_pbw_free(&w);

    /* A payload over 127 bytes needs a two-byte length inserted. */
    uint8_t big[200];
    memset(big, 7, sizeof big);
    mark = cnv_pbw_begin(&w, 1);
    cnv_pbw_raw(&w, big, sizeof big);
    cnv_pbw_end(&w, mark);
    assert_int_equal(w.len, 1 + 2 + 200);
    assert_true(w.buf[1] == 0xc8 && w.buf[2] == 0x01 && w.buf[3] == 7 && w.buf[202] == 7);
    cnv_pbw_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(varint_edges),
        cmocka_unit_test(fields_and_wire_types),
        cmocka_unit_test(lengths),
        cmocka_unit_test(nesting_limit),
        cmocka_unit_test(packed),
        cmocka_unit_test(writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
