/* Internal interface of the native ONNX reader and writer (read.c,
 * write.c): the TensorProto decoder they share and the loader with input
 * bindings that the conformance runner uses. They read and write the
 * engine's model representation (engine/model.h), nothing else of it. */
#ifndef CNV_ONNX_H
#define CNV_ONNX_H

#include "core/file.h"
#include "engine/model.h"
#include "onnx/pb.h"

/* Files larger than this are refused before reading (2 GiB, protobuf's own
 * limit for one message). */
#define CNV_ONNX_MAX_FILE ((size_t)2 << 30)

/* ONNX TensorProto.DataType values this code names. */
enum {
    CNV_ONNX_FLOAT = 1,
    CNV_ONNX_INT32 = 6,
    CNV_ONNX_INT64 = 7,
    CNV_ONNX_FLOAT16 = 10,
    CNV_ONNX_DOUBLE = 11
};

/* A decoded TensorProto. FLOAT, FLOAT16 and DOUBLE become CNV_FLOAT32;
 * INT32 and INT64 become CNV_INT64. name and data are owned (cnv_free);
 * data holds at least one byte even for an empty tensor. */
typedef struct cnv_onnx_tensor {
    char *name;
    cnv_dtype dtype;
    cnv_shape shape;
    int64_t count;
    void *data;
    int in_place; /* data lies in the reader's own bytes (cnv_pb.own), not
                     in a buffer of its own */
} cnv_onnx_tensor;

/* Decodes the TensorProto that r spans. `what` says where it sits
 * ("initializer", "attribute 'value' of node 'c1'") for messages. On failure
 * *t is left empty and the message is in r->err. */
cnv_status cnv_onnx_read_tensor(cnv_pb *r, const char *what, cnv_onnx_tensor *t);
void cnv_onnx_tensor_free(cnv_onnx_tensor *t);

/* The ONNX name of a TensorProto.DataType ("UINT8"), or "unknown". */
const char *cnv_onnx_dtype_name(int64_t dt);

/* Gives a graph input a value: the loader adds it as a constant instead of
 * an input. Used for the inputs a float engine cannot take at run time
 * (Reshape's shape, Pad's pads in the ONNX test cases). data is borrowed. */
typedef struct cnv_onnx_bind {
    cnv_dtype dtype;
    cnv_shape shape;
    const void *data; /* NULL: leave this input an input */
} cnv_onnx_bind;

/* cnv_model_load_onnx_memory with bindings: binds[k] applies to the k-th
 * graph input that is not an initializer (the order of ONNX test data's
 * input_k.pb). n_binds may be 0. */
cnv_status cnv_onnx_load(const void *data, size_t size, const cnv_onnx_bind *binds,
                         int n_binds, cnv_model **out);

/* cnv_model_load_onnx_memory on a buffer the library takes (cnv_malloc'd,
 * as cnv_model_load_onnx reads a file into): large FLOAT weights are used
 * where they lie, and the model keeps the buffer (else it is freed), also
 * on failure. *out is set as by the public loaders. */
cnv_status cnv_onnx_load_owned(void *data, size_t size, cnv_model **out);

/* Encodes m as a ModelProto into w (check w->failed afterwards). */
void cnv_onnx_encode(cnv_pbw *w, const cnv_model *m);

#endif
