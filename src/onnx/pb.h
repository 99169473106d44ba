/* Protocol Buffers wire format, by hand: a bounded reader over a byte span
 * (every length checked against what remains) and an append-only writer.
 * Enough for ONNX; no schema, no reflection, no groups. */
#ifndef CNV_PB_H
#define CNV_PB_H

#include <stddef.h>
#include <stdint.h>

#include "core/base.h"

/* Wire types. 3 and 4 (groups, deprecated since proto2) and 6, 7 (never
 * assigned) are rejected as malformed. */
enum { CNV_PB_VARINT = 0, CNV_PB_I64 = 1, CNV_PB_LEN = 2, CNV_PB_I32 = 5 };

/* Nested messages deeper than this are refused: a hostile file cannot make
 * a recursive reader overflow the stack. */
#define CNV_PB_MAX_DEPTH 64

/* Largest field number protobuf allows (2^29 - 1). */
#define CNV_PB_MAX_FIELD 536870911u

/* A reader over [p, end). base is the start of the whole buffer, so error
 * messages can give absolute byte offsets. err receives the messages. */
typedef struct cnv_pb {
    const uint8_t *p, *end, *base;
    int depth;
    cnv_err *err;
    /* The bytes are the reader's own copy of a file: a large tensor's raw
     * data is used where it lies (moved to alignment), not copied. */
    int own;
    /* Bytes the decoded values may still take (NULL: no bound), shared with
     * sub-readers: a varint of one byte decodes to eight, so a 2 GiB file
     * could otherwise ask for 16 GiB. */
    size_t *budget;
} cnv_pb;

/* One field as read by cnv_pb_next. */
typedef struct cnv_pb_field {
    uint32_t num;
    int wire;
    uint64_t u;          /* VARINT value, or the raw bits of I32 / I64 */
    const uint8_t *data; /* LEN: the payload, borrowed from the buffer */
    size_t len;
    size_t offset;       /* of the tag, from base, for messages */
} cnv_pb_field;

void cnv_pb_init(cnv_pb *r, const void *data, size_t size, cnv_err *err);

/* Reads the next field of the message into *f, skipping nothing: the caller
 * ignores numbers it does not know. Returns 1 for a field, 0 at the end of
 * the message, -1 when malformed (message in r->err). */
int cnv_pb_next(cnv_pb *r, cnv_pb_field *f);

/* A reader over the payload of LEN field f, one level deeper than r.
 * Returns 0, or -1 (message in r->err) past CNV_PB_MAX_DEPTH. */
/* Takes bytes from r's budget for values being decoded (what: for the
 * message); -1 with CNV_ERR_NOMEM set when they do not fit. */
int cnv_pb_charge(const cnv_pb *r, size_t bytes, const char *what);
int cnv_pb_sub(const cnv_pb *r, const cnv_pb_field *f, cnv_pb *sub);

/* Decodes one varint at *p (at most 10 bytes, value must fit 64 bits) and
 * advances *p. Returns 0, or -1 if truncated, overlong or overflowing. */
int cnv_pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);

/* Little-endian loads from unaligned bytes. */
uint32_t cnv_pb_le32(const uint8_t *p);
uint64_t cnv_pb_le64(const uint8_t *p);

/* The values of one occurrence of a repeated scalar field, packed (one LEN
 * field holding many) or not (the field itself). elem_wire is the element
 * encoding: CNV_PB_VARINT, CNV_PB_I32 or CNV_PB_I64. */
typedef struct cnv_pb_iter {
    const uint8_t *p, *end;
    int wire;
    int single;       /* unpacked: one value, in u */
    uint64_t u;
} cnv_pb_iter;

/* Checks the encoding and counts the values. Returns 0, or -1 when the
 * field has another wire type or a packed payload is malformed (a partial
 * element, an unterminated varint); the message names field `what`. */
int cnv_pb_iter_init(cnv_pb_iter *it, const cnv_pb *r, const cnv_pb_field *f,
                     int elem_wire, const char *what, size_t *count);
/* 1 and the next value (I32 in the low 32 bits), or 0 at the end. Only
 * valid after a successful cnv_pb_iter_init, which checked everything. */
int cnv_pb_iter_next(cnv_pb_iter *it, uint64_t *v);

/* Checks that f has wire type `wire`; else -1 with a message naming
 * field `what` at its offset. */
int cnv_pb_expect(const cnv_pb *r, const cnv_pb_field *f, int wire, const char *what);

/* ---- writer ---- */

/* A growing buffer. Any failed allocation sets failed; later calls do
 * nothing, so a writer checks once at the end. */
typedef struct cnv_pbw {
    uint8_t *buf;
    size_t len, cap;
    int failed;
} cnv_pbw;

void cnv_pbw_free(cnv_pbw *w);
void cnv_pbw_raw(cnv_pbw *w, const void *data, size_t n);
void cnv_pbw_varint(cnv_pbw *w, uint64_t v);
void cnv_pbw_tag(cnv_pbw *w, uint32_t field, int wire);
/* A VARINT field; negative int64 values take ten bytes, as protobuf does. */
void cnv_pbw_int(cnv_pbw *w, uint32_t field, int64_t v);
void cnv_pbw_float(cnv_pbw *w, uint32_t field, float v);
void cnv_pbw_bytes(cnv_pbw *w, uint32_t field, const void *data, size_t n);
void cnv_pbw_string(cnv_pbw *w, uint32_t field, const char *s);
void cnv_pbw_packed_ints(cnv_pbw *w, uint32_t field, const int64_t *v, size_t n);
void cnv_pbw_packed_floats(cnv_pbw *w, uint32_t field, const float *v, size_t n);
/* A nested message: begin writes the tag and returns a mark; end inserts
 * the payload length before the bytes written since. */
size_t cnv_pbw_begin(cnv_pbw *w, uint32_t field);
void cnv_pbw_end(cnv_pbw *w, size_t mark);

#endif
