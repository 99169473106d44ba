/* cnnviz.h — libcnnviz: see what a trained convolutional network has learned.
 *
 * A CPU engine (float32, NCHW, OpenBLAS GEMM) that runs a CNN forward and
 * backward, computes the gradient of any score with respect to the input
 * image, and builds visualizations on it.
 *
 * USAGE: the gradient of a class score with respect to the input image,
 * the library's main job (compiled and run by `make test` from the
 * repository root, see tests/example.c; keep the two identical):
 *
 *     cnv_model *m = NULL;
 *     cnv_session *s = NULL;
 *     cnv_image img = {0};
 *     char err[256] = "";
 *     float seed[10] = {0}; // d(seed . scores) / d(input): here the score
 *     seed[9] = 1.0f;       // of class 9 of the default model, Ankle boot
 *     cnv_status st = cnv_image_load("docs/img/ankle_boot.png", &img, err, sizeof err);
 *     if (st == CNV_OK) st = cnv_model_load_onnx("weights/fashion_mnist.onnx", &m);
 *     if (st == CNV_OK) st = cnv_session_create(m, &s);
 *     if (st == CNV_OK) st = cnv_session_plan(s, 1, 28, 28);
 *     if (st == CNV_OK) st = cnv_session_set_image(s, 0, &img, NULL);
 *     if (st == CNV_OK) st = cnv_session_forward(s);
 *     if (st == CNV_OK) st = cnv_session_backward(s, cnv_model_score_tensor(m), seed, 10);
 *     if (st == CNV_OK) printf("d score / d pixel (14, 14): %g\n", cnv_session_input_grad(s)[14 * 28 + 14]);
 *     if (st != CNV_OK) fprintf(stderr, "%s\n", err[0] ? err : s ? cnv_session_errmsg(s) : cnv_model_errmsg(m));
 *     cnv_image_free(&img);
 *     cnv_session_free(s);
 *     cnv_model_free(m);
 *
 * CONVENTIONS
 * - Every fallible function returns a cnv_status. CNV_OK is 0. On failure the
 *   message of the handle that was called (cnv_model_errmsg,
 *   cnv_session_errmsg, ...) says what went wrong: which node, which
 *   tensor, which shape. cnv_status_string() gives a static text for the
 *   code alone.
 * - A model may be shared read-only by many threads, so the queries that
 *   only read it never write its message: those that can fail take an
 *   errbuf (char *, size), as do the functions without a handle (images).
 * - Constructors return the handle even when they fail (unless memory ran
 *   out), so that its message can be read; free it afterwards. Every _free
 *   accepts NULL.
 * - Pointers passed in are borrowed: the library copies what it keeps.
 *   Buffers the caller passes to be filled come with their length in
 *   elements. Pointers returned by the library are owned by the handle they
 *   came from and stay valid until the next call that re-plans or frees it.
 * - Tensors are named by index (cnv_model_tensor_index resolves a name
 *   once), so that running a plan does no string work.
 * - Options come in a params struct: get the defaults from
 *   cnv_X_params_default() and change what you need, so that fields added
 *   later keep old code working. Callbacks take their user pointer first.
 * - The library never prints, exits or aborts on anything a caller or a file
 *   can influence.
 *
 * THREADS
 * A cnv_model is read-only once built: any number of threads may share one,
 * each with its own cnv_session. A session is used by one thread at a time.
 * The functions that change a model (cnv_model_add_*, cnv_model_param when
 * its data is written) must not run while a session of that model runs.
 * cnv_set_threads and cnv_set_allocator are process-wide: call them before
 * other threads use the library. A session may split its work over
 * threads of its own (cnv_set_threads, cnv_session_set_threads); they
 * work only inside that session's calls, so a host running several
 * sessions at once should give each a share of the cores (for example
 * cnv_session_set_threads(s, 1) for one session per core).
 */
#ifndef CNNVIZ_H
#define CNNVIZ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define CNV_API __declspec(dllexport)
#elif defined(__GNUC__)
#define CNV_API __attribute__((visibility("default")))
#else
#define CNV_API
#endif

#define CNV_VERSION_MAJOR 0
#define CNV_VERSION_MINOR 2
#define CNV_VERSION_PATCH 0
#define CNV_VERSION_STRING "0.2.0"

CNV_API const char *cnv_version(void);

/* ---------------------------------------------------------------- status */

typedef enum cnv_status {
    CNV_OK = 0,
    CNV_ERR_INVALID_ARG, /* a bad argument: NULL handle, negative size, ... */
    CNV_ERR_NOMEM,       /* an allocation failed, or a size overflowed */
    CNV_ERR_IO,          /* a file could not be opened, read or written */
    CNV_ERR_FORMAT,      /* a file is malformed or truncated */
    CNV_ERR_UNSUPPORTED, /* an op, data type or attribute this engine lacks */
    CNV_ERR_SHAPE,       /* shapes do not fit together */
    CNV_ERR_NOT_FOUND,   /* no tensor, class or key of that name */
    CNV_ERR_STATE,       /* a call out of order (backward before forward) */
    CNV_ERR_CANCELLED    /* a progress callback asked to stop */
} cnv_status;

/* A static, never-NULL description of a status code. */
CNV_API const char *cnv_status_string(cnv_status st);

/* ------------------------------------------------------- process-wide */

/* Every allocation of the library goes through malloc_fn/free_fn when they
 * are set (pass NULL to restore malloc/free). Used to count allocations and
 * to inject failures in tests. Set it while no handle is alive. */
typedef struct cnv_allocator {
    void *(*malloc_fn)(void *user, size_t size);
    void (*free_fn)(void *user, void *ptr);
    void *user;
} cnv_allocator;
CNV_API void cnv_set_allocator(const cnv_allocator *a);

/* Threads each session uses for its GEMMs and loops; 0 means all cores.
 * Before the first call: the environment variable CNNVIZ_NUM_THREADS if
 * set, else all cores. Takes effect at a session's next plan.
 * A session splits each GEMM over its own threads, so planning one sets
 * OpenBLAS to one thread, process-wide (OpenBLAS has no per-call
 * setting): a host that uses OpenBLAS itself should know. */
CNV_API void cnv_set_threads(int n);
/* The most threads one session uses: a larger n (here, in
 * cnv_session_set_threads or $CNNVIZ_NUM_THREADS) is taken as this, and
 * cnv_get_threads tells. Over all sessions, a process starts at most 4
 * worker threads per core (and at least CNV_MAX_THREADS); a session
 * planned when they are all taken runs on fewer, down to its caller's. */
#define CNV_MAX_THREADS 256
/* The thread count sessions planned now would use (>= 1). */
CNV_API int cnv_get_threads(void);

/* The most memory one plan may take (values, gradients, op state and
 * workspace), in bytes: a plan that needs more fails with CNV_ERR_NOMEM,
 * its message giving the need and the limit, before anything is allocated.
 * 0 restores the default: the environment variable CNNVIZ_MAX_MEMORY when
 * set (bytes, or a number with a K, M or G suffix), else half of the
 * machine's physical memory. Process-wide; takes effect at the next plan. */
CNV_API void cnv_set_memory_limit(size_t bytes);
/* The limit plans made now would have (> 0). */
CNV_API size_t cnv_get_memory_limit(void);

/* ---------------------------------------------------------------- shapes */

#define CNV_MAX_DIMS 8

/* A tensor shape. In a model's declared inputs a dimension may be -1
 * (unknown until planning, like ONNX's dim_param). */
typedef struct cnv_shape {
    int ndim;
    int64_t dims[CNV_MAX_DIMS];
} cnv_shape;

/* Number of elements, or -1 when a dim is negative or the product
 * overflows. */
CNV_API int64_t cnv_shape_count(const cnv_shape *s);

/* Softmax of k raw class scores into probs (k values; may be the same
 * array): exp(s_j - log sum_i exp(s_i)), computed in double. */
CNV_API void cnv_softmax(const float *scores, int k, float *probs);

/* ----------------------------------------------------------------- model */

/* A network: named tensors (inputs, parameters, activations) and nodes in
 * an order where every node comes after the producers of its inputs. */
typedef struct cnv_model cnv_model;

typedef enum cnv_dtype {
    CNV_FLOAT32 = 1, /* ONNX TensorProto.FLOAT */
    CNV_INT64 = 7    /* ONNX TensorProto.INT64: shapes, pads, axes */
} cnv_dtype;

typedef enum cnv_attr_type {
    CNV_ATTR_INT,
    CNV_ATTR_INTS,
    CNV_ATTR_FLOAT,
    CNV_ATTR_FLOATS,
    CNV_ATTR_STRING,
    CNV_ATTR_TENSOR /* a constant tensor (ONNX Constant's value) */
} cnv_attr_type;

/* A node attribute, as in ONNX. All pointers are borrowed for the call. */
typedef struct cnv_attr {
    const char *name;
    cnv_attr_type type;
    int64_t i;            /* INT */
    float f;              /* FLOAT */
    const char *s;        /* STRING */
    const int64_t *ints;  /* INTS: n values */
    const float *floats;  /* FLOATS: n values */
    int n;
    /* TENSOR: dtype, shape and data (float or int64 values, per dtype) */
    cnv_dtype t_dtype;
    cnv_shape t_shape;
    const void *t_data;
} cnv_attr;

CNV_API cnv_status cnv_model_create(cnv_model **out);
CNV_API void cnv_model_free(cnv_model *m);
/* The message of the last failure on m; "" if none. Never NULL, even for a
 * NULL m. */
CNV_API const char *cnv_model_errmsg(const cnv_model *m);

/* The most a model may hold, loaded or built; more is refused with
 * CNV_ERR_UNSUPPORTED before it is stored. The largest CNNs have some
 * thousands of nodes. */
#define CNV_MAX_NODES 1000000
#define CNV_MAX_TENSORS 4000000       /* inputs, constants and activations */
#define CNV_MAX_NODE_IO (1 << 20)      /* inputs, or outputs, of one node */
#define CNV_MAX_ATTRS 1024             /* attributes of one node */
#define CNV_MAX_META 10000             /* metadata entries */
#define CNV_MAX_META_BYTES (64L << 20) /* their keys and values together */

/* Declares a graph input. dims may hold -1 for sizes given at planning. */
CNV_API cnv_status cnv_model_add_input(cnv_model *m, const char *name,
                                       const cnv_shape *shape);
/* Adds a constant tensor (weights, biases, shapes); data is copied. Float
 * constants are the parameters a trainer may update. */
CNV_API cnv_status cnv_model_add_const(cnv_model *m, const char *name,
                                       cnv_dtype dtype, const cnv_shape *shape,
                                       const void *data);
/* Adds a node. op_type is an ONNX operator name ("Conv", "Relu", ...).
 * An input name may be "" or NULL for an absent optional input. The node's
 * attributes are checked here; shapes are checked when a session plans. */
CNV_API cnv_status cnv_model_add_node(cnv_model *m, const char *op_type,
                                      const char *name,
                                      int n_inputs, const char *const *inputs,
                                      int n_outputs, const char *const *outputs,
                                      int n_attrs, const cnv_attr *attrs);
/* Marks a tensor as a graph output. */
CNV_API cnv_status cnv_model_add_output(cnv_model *m, const char *name);
/* Sets opset version the attributes follow (default 13). */
CNV_API cnv_status cnv_model_set_opset(cnv_model *m, int64_t version);

/* Key/value metadata (ONNX metadata_props). Setting replaces. */
CNV_API cnv_status cnv_model_set_meta(cnv_model *m, const char *key,
                                      const char *value);
/* The value for key, or NULL. Owned by m. */
CNV_API const char *cnv_model_get_meta(const cnv_model *m, const char *key);

/* Introspection. Tensors are named by index (0 .. count - 1, stable for
 * the model's life): inputs, constants and activations. Names are owned
 * by m. */
CNV_API int cnv_model_tensor_count(const cnv_model *m);
/* The index of the tensor with this name, or -1. */
CNV_API int cnv_model_tensor_index(const cnv_model *m, const char *name);
/* The name of tensor t, or NULL out of range. */
CNV_API const char *cnv_model_tensor_name(const cnv_model *m, int t);
/* Graph inputs and outputs: their tensors (-1 out of range), and each
 * input's declared shape (-1 for a size given at planning). */
CNV_API int cnv_model_input_count(const cnv_model *m);
CNV_API int cnv_model_input(const cnv_model *m, int i);
CNV_API cnv_status cnv_model_input_shape(const cnv_model *m, int i,
                                         cnv_shape *out);
CNV_API int cnv_model_output_count(const cnv_model *m);
CNV_API int cnv_model_output(const cnv_model *m, int i);
/* Nodes, in an order where each comes after the producers of its inputs:
 * op type and name (NULL out of range), the tensor of its first output and
 * of its k-th input (-1 for an absent optional input or out of range), and
 * the number of its inputs. */
CNV_API int cnv_model_node_count(const cnv_model *m);
CNV_API const char *cnv_model_node_op(const cnv_model *m, int i);
CNV_API const char *cnv_model_node_name(const cnv_model *m, int i);
CNV_API int cnv_model_node_output(const cnv_model *m, int i);
CNV_API int cnv_model_node_input(const cnv_model *m, int i, int k);
CNV_API int cnv_model_node_input_count(const cnv_model *m, int i);

/* Shapes without a session: what a plan for these input shapes (one per
 * graph input, as for cnv_session_plan_shapes) gives every tensor, into
 * shapes (n_shapes = cnv_model_tensor_count), and into flops (n_flops =
 * cnv_model_node_count; may be NULL) the floating-point operations of each
 * node's forward pass that are multiply-adds (convolutions, matrix
 * products; a multiply-add counts 2; 0 for the other ops). Allocates no
 * tensor, starts no thread and leaves OpenBLAS alone. */
CNV_API cnv_status cnv_model_infer_shapes(const cnv_model *m, int n_inputs,
                                          const cnv_shape *inputs,
                                          cnv_shape *shapes, int n_shapes,
                                          double *flops, int n_flops,
                                          char *errbuf, size_t errlen);

/* The tensor of raw class scores (logits): the input of a final op that
 * turns scores into probabilities (Softmax), else the first graph output;
 * -1 without outputs. The visualizations ascend and differentiate this
 * tensor, never the probabilities. */
CNV_API int cnv_model_score_tensor(const cnv_model *m);

/* Resolves a layer name a user typed into a tensor of m: the exact name of
 * a tensor, of a node (its first output), or a text that occurs in exactly
 * one node's output name ("features.7/expand3x3_activation").
 * CNV_ERR_NOT_FOUND when nothing or several tensors match (errbuf says
 * which), and for a constant. */
CNV_API cnv_status cnv_model_find_layer(const cnv_model *m, const char *text,
                                        int *tensor,
                                        char *errbuf, size_t errlen);

/* The layers `cnnviz layers` shows, in depth order: the output of every
 * activation (Relu), and every feature map (Conv output) that no
 * activation reads. When there are more than max (> 0), max of them,
 * evenly spaced, the first and the last included. Writes their tensors
 * into layers (max entries; or every one when max <= 0; may be NULL to
 * count) and returns how many. */
CNV_API int cnv_model_layers(const cnv_model *m, int max, int *layers);

/* The class names, from the cnnviz.labels metadata (one per line; a
 * leading WordNet id "n01440764 " is dropped): *names (may be NULL) points
 * to an array owned by m, and the count is returned (0 without labels).
 * Setting cnnviz.labels (cnv_model_set_meta) replaces them; more than
 * CNV_MAX_LABELS lines are refused there. */
#define CNV_MAX_LABELS 1000000
CNV_API int cnv_model_labels(const cnv_model *m, const char *const **names);
/* Reads a labels file (the same text, at most 64 MiB) into the model's
 * cnnviz.labels, so that cnv_model_save_onnx keeps them. */
CNV_API cnv_status cnv_model_load_labels(cnv_model *m, const char *path);
/* A class a user typed: a number ("281"; within the labels when the model
 * has some), or a label, compared without case, whole or its first
 * comma-separated name ("tabby" for "tabby, tabby cat"). */
CNV_API cnv_status cnv_model_find_class(const cnv_model *m, const char *text,
                                        int *cls,
                                        char *errbuf, size_t errlen);

/* A float constant's data, writable (for trainers), and its shape. */
CNV_API cnv_status cnv_model_param(cnv_model *m, const char *name,
                                   float **data, cnv_shape *shape);
/* Number of float constants and the i-th one's name. */
CNV_API int cnv_model_param_count(const cnv_model *m);
CNV_API const char *cnv_model_param_name(const cnv_model *m, int i);

/* --------------------------------------------------------------- session */

/* The per-thread state to run a model: activations, gradients and
 * workspace for one planned input shape. Borrows the model, which must
 * outlive it. */
typedef struct cnv_session cnv_session;

CNV_API cnv_status cnv_session_create(const cnv_model *m, cnv_session **out);
CNV_API void cnv_session_free(cnv_session *s);
CNV_API const char *cnv_session_errmsg(const cnv_session *s);
/* The model s runs (NULL for NULL). */
CNV_API const cnv_model *cnv_session_model(const cnv_session *s);

/* When on, backward also computes gradients of the float constants
 * (weights, biases), read with cnv_session_grad. Off by default: frozen
 * parameters cost nothing. Takes effect at the next plan. */
CNV_API cnv_status cnv_session_set_param_grads(cnv_session *s, int on);

/* ReLU backward rule: CNV_RELU_GRAD passes dy where y > 0 (the true
 * gradient; exactly 0 at y == 0); CNV_RELU_GUIDED passes dy where y > 0 and
 * dy > 0 (guided backpropagation, Springenberg et al. 2015). */
typedef enum cnv_relu_mode {
    CNV_RELU_GRAD = 0,
    CNV_RELU_GUIDED = 1,
    CNV_RELU_DECONV = 2 /* dy > 0, whatever y (Zeiler and Fergus 2014) */
} cnv_relu_mode;
CNV_API cnv_status cnv_session_set_relu_mode(cnv_session *s, cnv_relu_mode mode);

/* Plans only what tensor t depends on (-1: the whole model, the default).
 * The rest of the model is not planned, takes no memory and need not work
 * at the planned size (a network's later layers may need a larger input
 * than an early layer's visualization uses); reading or running past t
 * fails with CNV_ERR_STATE. Takes effect at the next plan. */
CNV_API cnv_status cnv_session_set_plan_target(cnv_session *s, int t);

/* Threads this session splits its work over: n >= 1, or 0 (the default)
 * for the process-wide cnv_set_threads setting. The session starts them
 * at its next plan and stops them when freed; they run only inside this
 * session's calls and never take signals. Results are deterministic: the
 * same inputs, batch size and thread count give the same bits. An image
 * gets exactly the values and gradients it gets alone on one thread
 * whenever no GEMM of its convolutions is split between threads: on one
 * thread, in a batch whose size is a multiple of the thread count or at
 * least four times it (threads then take whole images), and for products
 * too small to split. When one image's GEMMs are split (one image on 2
 * threads), OpenBLAS rounds the blocks differently: values differ in the
 * last bits (SqueezeNet's logits by up to 1.4e-6 of 10.9) and a
 * gradient can differ by more where a ReLU input within rounding of 0
 * switches (SqueezeNet's input gradient: up to 1.5e-4 of 0.017; both
 * results are equally valid). A session planned in a parent process
 * still works in a child after fork(), on the calling thread alone. */
CNV_API cnv_status cnv_session_set_threads(cnv_session *s, int n);

/* Plans for an image model's single 4-D input of shape n x C x h x w (C as
 * the model declares it). Planning allocates every buffer; forward and
 * backward then allocate nothing. Planning again with the same shape is a
 * no-op; another shape re-plans. */
CNV_API cnv_status cnv_session_plan(cnv_session *s, int n, int h, int w);
/* General form: one shape per graph input, in cnv_model_input order. */
CNV_API cnv_status cnv_session_plan_shapes(cnv_session *s, int n_inputs,
                                           const cnv_shape *shapes);

/* The buffer of tensor t's values (inputs are written here before
 * forward) and its planned shape (shape may be NULL). Owned by s; valid
 * until the next plan. Constants are read-only through this pointer. */
CNV_API cnv_status cnv_session_tensor(cnv_session *s, int t, float **data,
                                      cnv_shape *shape);
/* The first graph input's buffer, or NULL before planning. */
CNV_API float *cnv_session_input(cnv_session *s);

/* Runs every node. */
CNV_API cnv_status cnv_session_forward(cnv_session *s);
/* Runs only the nodes needed to compute tensor t. */
CNV_API cnv_status cnv_session_forward_to(cnv_session *s, int t);

/* The rest of a forward after the caller rewrote tensor `from`'s values in
 * place (cnv_session_tensor): runs the nodes after from's producer that
 * tensor `to` depends on (Ablation-CAM's "zero one channel of a layer").
 * Needs a forward that computed both first. */
CNV_API cnv_status cnv_session_forward_from(cnv_session *s, int from, int to);

/* Backward from a seed: computes d(sum(seed * T))/dX for T = tensor t and
 * every X that needs a gradient (the graph inputs, and the parameters
 * when cnv_session_set_param_grads is on). seed holds count values, T's
 * planned element count; it is borrowed. Needs a forward that computed T
 * first. */
CNV_API cnv_status cnv_session_backward(cnv_session *s, int t,
                                        const float *seed, size_t count);
/* The gradient computed by the last backward for tensor t (an input, or a
 * parameter when parameter gradients are on). Owned by s. */
CNV_API cnv_status cnv_session_grad(cnv_session *s, int t, float **grad);
/* The first graph input's gradient, or NULL. */
CNV_API float *cnv_session_input_grad(cnv_session *s);

/* Per-node timing for profiling (cnnviz bench --profile). When on (it
 * takes effect at the next plan, which zeroes the totals), forward and
 * backward add each node's wall time to its totals, read with
 * cnv_session_node_time (node as in cnv_model_node_op; seconds). */
CNV_API cnv_status cnv_session_set_profiling(cnv_session *s, int on);
CNV_API cnv_status cnv_session_node_time(cnv_session *s, int node,
                                         double *forward_s, double *backward_s);

/* ---- ONNX files ---- */

/* Loads an ONNX model (ModelProto) with the library's own protobuf decoder.
 * Supported: the default operator domain, FLOAT / FLOAT16 / DOUBLE (read as
 * float) and INT32 / INT64 (read as int64) tensors stored inside the file,
 * float graph inputs, Constant nodes (become constants). Refused with
 * CNV_ERR_UNSUPPORTED: external data, other data types and domains, ops the
 * engine lacks; with CNV_ERR_FORMAT: anything malformed or truncated. Files
 * over 2 GiB are refused. Like sqlite3_open, *out is set even on failure
 * (unless memory ran out) so cnv_model_errmsg(*out) says what is wrong
 * (which node, tensor or field); free it with cnv_model_free either way. */
CNV_API cnv_status cnv_model_load_onnx(const char *path, cnv_model **out);
/* The same from a buffer (borrowed; nothing points into it afterwards). */
CNV_API cnv_status cnv_model_load_onnx_memory(const void *data, size_t size,
                                              cnv_model **out);
/* Writes m as ONNX (IR version 8, the model's opset, weights as raw_data).
 * Writes a temporary file in the same directory and renames it over path,
 * so a failure leaves no partial file; the message is in cnv_model_errmsg. */
CNV_API cnv_status cnv_model_save_onnx(cnv_model *m, const char *path);

/* Reads one serialized ONNX TensorProto (the test data's input_0.pb).
 * FLOAT, FLOAT16 and DOUBLE give CNV_FLOAT32 values; INT32 and INT64 give
 * CNV_INT64. On success *values (and *name, when name is not NULL; "" if
 * the tensor has none) are allocated by the library: release each with
 * cnv_free_buffer. On failure the outputs are unchanged and errbuf (may be
 * NULL) holds the message. */
CNV_API cnv_status cnv_tensor_read_pb(const void *data, size_t size,
                                      cnv_dtype *dtype, cnv_shape *shape,
                                      void **values, char **name,
                                      char *errbuf, size_t errlen);
/* Frees a buffer the library returned (NULL is a no-op). */
CNV_API void cnv_free_buffer(void *p);

/* ---- images ---- */

/* An 8-bit image: rows top to bottom, channels interleaved (HWC), 1 (gray),
 * 3 (RGB) or 4 (RGBA) channels. data holds width*height*channels bytes.
 *
 * Conventions of the image functions (they have no handle):
 * - Each fallible one returns a cnv_status and, when errbuf is not NULL,
 *   writes a NUL-terminated message of at most errlen bytes into it ("" on
 *   success): which file, which size, what went wrong.
 * - An image the library fills (cnv_image *out) gets new data allocated
 *   through cnv_set_allocator's hook; release it with cnv_image_free. out
 *   is overwritten, not freed first: pass a zeroed or freed image. On
 *   failure *out is left zeroed, so cnv_image_free on it is always safe.
 * - Input images and buffers are borrowed for the call and never changed
 *   (except by cnv_image_draw_text, which draws into its image).
 * - An image made by the caller (own data pointer) may be passed anywhere
 *   as input; only cnv_image_free needs data from the library.
 */
typedef struct cnv_image {
    int width, height, channels;
    unsigned char *data;
} cnv_image;

/* Limits on decoded images: files are untrusted, and a 40-byte PNG may
 * claim 100000 x 100000 pixels. Checked on the header before decoding.
 * 2^26 pixels (64 Mpixel: a 48-megapixel photo fits) bounds what a tiny
 * run-length-coded or truncated file can make the decoder allocate to
 * 256 MiB of RGBA. */
#define CNV_IMAGE_MAX_SIDE 16384
#define CNV_IMAGE_MAX_PIXELS (1L << 26)
#define CNV_IMAGE_MAX_FILE_BYTES (256L << 20)

/* Decodes a PNG, JPEG, BMP, GIF (first frame), TGA, PSD, PNM (P5, P6) or
 * HDR file (stb_image), recognized by its first bytes; anything else is
 * refused before decoding. 16-bit images are reduced to 8 bits; gray+alpha
 * becomes RGBA; gray, RGB and RGBA keep their channels. 16-bit and HDR
 * images are accepted up to CNV_IMAGE_MAX_PIXELS / 4 pixels (they decode
 * at 2 and 4 bytes a sample first). */
CNV_API cnv_status cnv_image_load(const char *path, cnv_image *out,
                                  char *errbuf, size_t errlen);
CNV_API cnv_status cnv_image_load_memory(const void *data, size_t size,
                                         cnv_image *out,
                                         char *errbuf, size_t errlen);
/* Frees data and zeroes the image. NULL and zeroed images are fine. */
CNV_API void cnv_image_free(cnv_image *img);

/* A new image, every byte 0. */
CNV_API cnv_status cnv_image_create(int width, int height, int channels,
                                    cnv_image *out,
                                    char *errbuf, size_t errlen);
/* A copy with another channel count (1, 3 or 4): to gray by ITU-R 601
 * luma (0.299 R + 0.587 G + 0.114 B, rounded as PIL's convert("L")), gray
 * replicated to RGB, alpha dropped or set to 255. */
CNV_API cnv_status cnv_image_convert(const cnv_image *in, int channels,
                                     cnv_image *out,
                                     char *errbuf, size_t errlen);
/* Resampled copy of width x height by stb_image_resize: the triangle
 * (bilinear) filter along an axis that grows, the Mitchell filter (an
 * antialiasing cubic) along one that shrinks; edges clamped; RGBA colors
 * weighted by alpha. */
CNV_API cnv_status cnv_image_resize(const cnv_image *in, int width, int height,
                                    cnv_image *out,
                                    char *errbuf, size_t errlen);
/* Resizes each of c float planes h x w to oh x ow (the filters of
 * cnv_image_resize; values not clamped). in and out must not overlap. */
CNV_API cnv_status cnv_resize_chw(const float *in, int c, int h, int w,
                                  float *out, int oh, int ow,
                                  char *errbuf, size_t errlen);

/* Writes a PNG. The file is written beside path under a temporary name and
 * renamed into place, so a failure never leaves a partial file at path.
 * CNV_ERR_IO names the path and the system's reason. Every writer of the
 * library (PNG, GIF, ONNX) refuses a target that cnv_check_output
 * refuses, and an existing file keeps its permissions. */
CNV_API cnv_status cnv_image_write_png(const cnv_image *img, const char *path,
                                       char *errbuf, size_t errlen);

/* Whether path can be written as an output file: a regular file the user
 * may write, or a new name in a writable directory. A directory, FIFO,
 * device or read-only file is CNV_ERR_IO (errbuf says which), so a caller
 * can check its outputs before a long computation. */
CNV_API cnv_status cnv_check_output(const char *path, char *errbuf, size_t errlen);

/* Removes the temporary files of writes in progress (a PNG, GIF or ONNX
 * file being written beside its target). Async-signal-safe: for a SIGINT
 * or SIGTERM handler, after which the writes in progress fail. */
CNV_API void cnv_remove_temp_files(void);

/* ---- preprocessing: image <-> network input */

typedef enum cnv_fit {
    /* torchvision's evaluation transform: the shorter side is resized to
     * `resize` (the longer one to int(resize * long / short)), then the
     * center height x width is cropped (offsets rounded half to even, as
     * Python does). When a non-square crop would not fit, the image is
     * enlarged until it does (torchvision would pad with black). */
    CNV_FIT_CENTER_CROP = 0,
    /* Resized to height x width directly; the aspect ratio is not kept. */
    CNV_FIT_STRETCH = 1
} cnv_fit;

/* The order of a color input's first three channels. Caffe-era models
 * (the old ONNX model zoo, Keras' "caffe" mode: VGG, ResNet-50) take BGR. */
typedef enum cnv_channel_order {
    CNV_ORDER_RGB = 0,
    CNV_ORDER_BGR = 1
} cnv_channel_order;

/* How pixels become the network's input: the model's own convention. */
#define CNV_MAX_CHANNELS 4
typedef struct cnv_preprocess {
    int channels;       /* of the network input, 1..CNV_MAX_CHANNELS; images
                           convert to 1 (gray), 3 (RGB) and 4 (RGBA) */
    int height, width;  /* of the network input */
    /* Per channel of the network input (in its order), applied after
     * scaling pixels to [0,1]: x = (pixel / 255 - mean) / std. A gray
     * model uses [0]. Caffe's BGR 0..255 with the mean subtracted is
     * order BGR, mean = (103.939, 116.779, 123.68) / 255, std = 1 / 255. */
    float mean[CNV_MAX_CHANNELS], std[CNV_MAX_CHANNELS];
    cnv_fit fit;
    /* CNV_FIT_CENTER_CROP: the shorter side before cropping; 0 means
     * round(min(height, width) * 256 / 224), 256 for a 224 crop. */
    int resize;
    /* Which values the model gave (cnv_model_preprocess), CNV_PP_* bits;
     * the others are defaults. */
    unsigned found;
    /* Which image channel feeds each input channel: CNV_ORDER_BGR swaps
     * the first and third (3 or 4 channels only). */
    cnv_channel_order order;
} cnv_preprocess;

enum {
    CNV_PP_MEAN = 1,  /* cnnviz.mean */
    CNV_PP_STD = 2,   /* cnnviz.std */
    CNV_PP_SIZE = 4,  /* the declared input size, or cnnviz.image_size */
    CNV_PP_COLOR = 8, /* cnnviz.color */
    CNV_PP_ORDER = 16 /* cnnviz.channel_order */
};

/* Fills pp for a channels x height x width input: mean 0, std 1,
 * CNV_FIT_CENTER_CROP, resize 0, found 0, CNV_ORDER_RGB. */
CNV_API void cnv_preprocess_init(cnv_preprocess *pp, int channels,
                                 int height, int width);

/* The preprocessing a model asks for: channels from its first input
 * (which must be N x C x H x W, C in 1..CNV_MAX_CHANNELS), the size it
 * declares or, where it leaves H and W open, its cnnviz.image_size
 * metadata ("224x224"; 0 x 0 when neither says), mean and std from
 * cnnviz.mean and cnnviz.std ("0.485,0.456,0.406": one value per channel,
 * or one for all; else 0 and 1), checked against cnnviz.color ("gray",
 * "rgb" or "rgba"), the channel order from cnnviz.channel_order ("rgb"
 * or "bgr"; else RGB), and center cropping. pp->found says which the model
 * gave. Malformed or contradictory metadata is CNV_ERR_FORMAT, an input
 * that is no image CNV_ERR_UNSUPPORTED; the message goes to errbuf. */
CNV_API cnv_status cnv_model_preprocess(const cnv_model *m, cnv_preprocess *pp,
                                        char *errbuf, size_t errlen);

/* The one check every function taking a cnv_preprocess makes: 1 to
 * CNV_MAX_CHANNELS channels, a size of 1..CNV_IMAGE_MAX_SIDE, finite
 * means, finite positive standard deviations, a known fit, a resize of
 * 0..CNV_IMAGE_MAX_SIDE, a known channel order (BGR: 3 or 4 channels). (Turning an image into the input also needs 1, 3
 * or 4 channels.) */
CNV_API cnv_status cnv_preprocess_check(const cnv_preprocess *pp,
                                        char *errbuf, size_t errlen);

/* The 8-bit picture the network sees: pp->channels channels, pp->height x
 * pp->width. RGB inputs take gray images replicated and RGBA images with
 * alpha dropped (what PIL's convert("RGB") in a torchvision pipeline does);
 * gray inputs take the luma of color images (converted before resizing,
 * like convert("L")). An image that already has the input's size is used
 * as is, without resizing or cropping, so a picture the library saved at
 * the network's size is classified again on exactly the same pixels.
 * Resizing is cnv_image_resize; against torchvision's PIL pipeline the
 * network input differs by about a third of an 8-bit level on average
 * (docs/PREPROCESSING.md has the figures). */
CNV_API cnv_status cnv_image_prepare(const cnv_image *img,
                                     const cnv_preprocess *pp, cnv_image *out,
                                     char *errbuf, size_t errlen);
/* The part of a width x height image that cnv_image_prepare turns into
 * the network input under pp, in the image's own pixels (*x, *y: its top
 * left corner; fractions rounded): the window the center crop keeps, or
 * the whole image for CNV_FIT_STRETCH and for an image of the network's
 * size. A change made to the network input can be carried back onto the
 * full photo there (`cnnviz fool --full`). */
CNV_API cnv_status cnv_preprocess_window(const cnv_preprocess *pp, int width, int height, int *x, int *y,
                                         int *w, int *h, char *errbuf, size_t errlen);
/* The image channel (of a pp->channels image) that feeds input channel k
 * under pp->order: k itself, or 2 - k for k < 3 under BGR. */
CNV_API int cnv_preprocess_image_channel(const cnv_preprocess *pp, int k);
/* cnv_image_prepare, then scaled and normalized into out: float32 CHW in
 * pp->order, count = pp->channels * pp->height * pp->width values. */
CNV_API cnv_status cnv_image_to_tensor(const cnv_image *img,
                                       const cnv_preprocess *pp,
                                       float *out, size_t count,
                                       char *errbuf, size_t errlen);
/* cnv_image_to_tensor into batch item i of the session's first input, at
 * the planned size (which replaces pp's; pp NULL: the model's,
 * cnv_model_preprocess). The session must be planned for an image input
 * of pp's channels. */
CNV_API cnv_status cnv_session_set_image(cnv_session *s, int i,
                                         const cnv_image *img,
                                         const cnv_preprocess *pp);
/* The reverse, for an h x w tensor of pp->channels planes (pp's size does
 * not matter): each value x * std + mean, times 255, clamped to [0,255]
 * and rounded, into the image channel pp->order names. NaN becomes 0,
 * +inf 255. */
CNV_API cnv_status cnv_tensor_to_image(const float *chw,
                                       const cnv_preprocess *pp, int h, int w,
                                       cnv_image *out,
                                       char *errbuf, size_t errlen);

/* ---- maps (saliency, activations) */

/* A gray image of an h x w map scaled from its finite min..max to 0..255.
 * A constant map gives all zeros; NaN and -inf count as the minimum, +inf
 * as the maximum. */
CNV_API cnv_status cnv_map_to_gray(const float *map, int h, int w,
                                   cnv_image *out,
                                   char *errbuf, size_t errlen);
/* The heat colormap: t in [0,1] (clamped; NaN as 0) to RGB along dark
 * blue, blue, cyan, yellow, red, dark red (a jet-like ramp). */
CNV_API void cnv_heat_color(float t, unsigned char rgb[3]);
/* An RGB image: the map, normalized as in cnv_map_to_gray and resized to
 * the photo when sizes differ, in heat colors, blended over the photo:
 * out = (1 - alpha) * photo + alpha * heat, alpha in [0,1]. */
CNV_API cnv_status cnv_map_overlay(const cnv_image *photo, const float *map,
                                   int h, int w, float alpha, cnv_image *out,
                                   char *errbuf, size_t errlen);

/* ---- drawing */

/* Draws ASCII text (stb_easy_font's 12-pixel-high line, scaled by an
 * integer scale >= 1) with its top-left at (x, y), clipped to the image.
 * Characters outside 32..126 are drawn as '?'. rgb is used as is on RGB(A)
 * images (alpha set to 255) and as its luma on gray ones. */
CNV_API void cnv_image_draw_text(cnv_image *img, int x, int y,
                                 const char *text, int scale,
                                 const unsigned char rgb[3]);
/* Width in pixels of text drawn at scale; its height is 12 * scale. */
CNV_API int cnv_text_width(const char *text, int scale);

/* A contact sheet: n tiles (any sizes and channel counts) in a grid of
 * cols columns on white, each centered in a cell of the largest tile's
 * size, pad pixels apart, with labels[i] under tile i (labels or any
 * labels[i] may be NULL). Tiles under 64 pixels wide are enlarged by an
 * integer factor (nearest neighbour) so labels fit; the text is drawn 2x
 * when cells are 200 pixels wide or more; labels too long are cut with
 * "...". The result is RGB. */
CNV_API cnv_status cnv_image_grid(const cnv_image *tiles, int n, int cols,
                                  const char *const *labels, int pad,
                                  cnv_image *out,
                                  char *errbuf, size_t errlen);

/* ---- animated GIF */

/* Writes frames of one size into an animated GIF (giflib). Each frame gets
 * its own 256-color palette from giflib's median-cut quantizer
 * (GifQuantizeBuffer). The file is written under a temporary name and
 * renamed into place by cnv_gif_writer_close.
 *
 *     cnv_gif_writer *g = NULL;
 *     cnv_status st = cnv_gif_writer_open("dream.gif", w, h, 10, 1, &g);
 *     for (i = 0; st == CNV_OK && i < n; i++)
 *         st = cnv_gif_writer_add_frame(g, &frames[i]);
 *     if (st == CNV_OK) st = cnv_gif_writer_close(g);
 *     if (st != CNV_OK) fprintf(stderr, "%s\n", cnv_gif_writer_errmsg(g));
 *     cnv_gif_writer_free(g);
 */
typedef struct cnv_gif_writer cnv_gif_writer;

/* delay_cs: time each frame shows, in 1/100 s (0..65535). loop: nonzero
 * repeats forever, 0 plays once. Returns the handle even on failure
 * (unless memory ran out), for its message. */
CNV_API cnv_status cnv_gif_writer_open(const char *path, int width, int height,
                                       int delay_cs, int loop,
                                       cnv_gif_writer **out);
/* Appends a frame of the writer's size; 1, 3 or 4 channels (alpha is
 * dropped). After a failure the writer only accepts _free. */
CNV_API cnv_status cnv_gif_writer_add_frame(cnv_gif_writer *g,
                                            const cnv_image *frame);
/* Finishes the file and renames it into place. Needs at least one frame. */
CNV_API cnv_status cnv_gif_writer_close(cnv_gif_writer *g);
/* Frees the writer; an unclosed file is abandoned (its temporary removed). */
CNV_API void cnv_gif_writer_free(cnv_gif_writer *g);
CNV_API const char *cnv_gif_writer_errmsg(const cnv_gif_writer *g);
CNV_API int cnv_gif_writer_frames(const cnv_gif_writer *g);

/* -------------------------------------------------------------- training */

/* A labelled set of 8-bit images (n x c x h x w pixels) in memory, e.g. an
 * MNIST-format (IDX) file pair. Opaque; read with the accessors below. */
typedef struct cnv_dataset cnv_dataset;

/* Loads <dir>/<split>-images-idx3-ubyte[.gz] and the matching labels
 * (-labels-idx1-ubyte[.gz]); split is "train" or "t10k". The files are
 * checked (magic, sizes, counts against the data actually present) before
 * anything is trusted. Returns the handle even on failure (unless memory
 * ran out), for its message; free it. */
CNV_API cnv_status cnv_mnist_load(const char *dir, const char *split,
                                  cnv_dataset **out);
/* The same from two explicit paths (gzip or uncompressed). */
CNV_API cnv_status cnv_mnist_load_files(const char *images_path,
                                        const char *labels_path,
                                        cnv_dataset **out);
/* A dataset from memory: pixels (n*c*h*w bytes) and labels (n values, each
 * below n_classes <= 256) are copied. */
CNV_API cnv_status cnv_dataset_create(int n, int c, int h, int w, int n_classes,
                                      const uint8_t *pixels,
                                      const uint8_t *labels,
                                      cnv_dataset **out);
CNV_API void cnv_dataset_free(cnv_dataset *d);
CNV_API const char *cnv_dataset_errmsg(const cnv_dataset *d);
/* Image count (0 for NULL or a failed load), image shape, class count
 * (largest label + 1), and borrowed pointers to the pixels and labels. */
CNV_API int cnv_dataset_count(const cnv_dataset *d);
CNV_API void cnv_dataset_shape(const cnv_dataset *d, int *c, int *h, int *w);
CNV_API int cnv_dataset_classes(const cnv_dataset *d);
CNV_API const uint8_t *cnv_dataset_pixels(const cnv_dataset *d);
CNV_API const uint8_t *cnv_dataset_labels(const cnv_dataset *d);
/* Mean and standard deviation of every pixel scaled to [0,1]. */
CNV_API cnv_status cnv_dataset_stats(const cnv_dataset *d, double *mean,
                                     double *std);

/* A small VGG-style classifier: two blocks of conv3x3-relu-conv3x3-relu-
 * maxpool2 (width1, then width2 channels), Flatten, Gemm(hidden)-relu,
 * Gemm(classes). Input "image" (-1 x channels x height x width), output
 * "logits"; weights He-initialized from seed, biases zero. */
typedef struct cnv_vgg_params {
    int channels, height, width; /* the input image; height, width >= 4 */
    int classes;
    int width1, width2, hidden;
    uint64_t seed;
} cnv_vgg_params;
/* 1 x 28 x 28 input, 10 classes, 24/48 channels, 128 hidden, seed 1 (the
 * shipped model: 32/64 would take over 15 minutes to train on 2 cores). */
CNV_API cnv_vgg_params cnv_vgg_params_default(void);
/* Adds the network to an empty model m. */
CNV_API cnv_status cnv_model_build_vgg(cnv_model *m, const cnv_vgg_params *p);

/* One training step's loss: runs forward on the batch of B images planned
 * in s (the caller filled the input), takes the softmax cross-entropy of
 * the B x K tensor `logits` against labels (n_labels = B values, each
 * below K), and runs backward from dL/dlogits = (softmax - onehot) / B, so
 * that with parameter gradients on, cnv_session_grad gives
 * d(mean loss)/d(parameter). Writes the mean loss and the number of correct
 * top-1 predictions (either may be NULL). Failures in s's message. */
CNV_API cnv_status cnv_train_loss_backward(cnv_session *s, int logits,
                                           const uint8_t *labels, int n_labels,
                                           double *loss, int *correct);

/* What the trainer reports after each epoch. */
typedef struct cnv_train_epoch {
    int epoch, epochs;    /* 1-based */
    double loss;          /* mean training loss over the epoch */
    double train_acc;     /* top-1 on the (augmented) training batches seen */
    double test_acc;      /* on the test set; -1 without one */
    double images_per_s;  /* training images per second (test pass excluded) */
    double seconds;       /* this epoch, test pass included */
    double total_seconds; /* since training started */
} cnv_train_epoch;
/* Return nonzero to stop training (cnv_train then returns
 * CNV_ERR_CANCELLED, with the weights of the last finished step). */
typedef int (*cnv_train_progress_fn)(void *user, const cnv_train_epoch *e);

#define CNV_AUG_SHIFT 1 /* random translation by up to max_shift pixels */
#define CNV_AUG_FLIP 2  /* random horizontal flip */

/* Mini-batch SGD with heavy-ball momentum and L2 weight decay:
 * g = dL/dw + weight_decay * w (weights only, not biases),
 * v = momentum * v + g, w -= lr_t * v, where lr_t rises linearly over the
 * first 2% of the steps, then decays to 0 along a cosine. Each epoch
 * visits the images in a new random order, in full batches only (the
 * remainder of the shuffled order waits for the next epoch). Inputs are
 * pixel/255 normalized with mean and std. Each batch is split between
 * `workers` threads, each running its share on a session of its own (the
 * gradients are summed in a fixed order; BLAS runs single-threaded
 * meanwhile). The weights depend only on the seed, the worker count and
 * the BLAS build: the same values give bit-identical weights. */
typedef struct cnv_train_params {
    const char *logits; /* the tensor the loss reads (default "logits") */
    int epochs, batch;
    float lr, momentum, weight_decay;
    float mean, std;
    int augment;         /* CNV_AUG_* flags */
    int max_shift;
    int max_train;       /* use only the first N training images; 0: all */
    int max_test;        /* evaluate on the first N test images; 0: all */
    uint64_t seed;
    int workers;         /* threads sharing each batch (0 or 1: none) */
    cnv_train_progress_fn progress; /* may be NULL */
    void *user;
} cnv_train_params;
/* 10 epochs of batch 64, lr 0.05, momentum 0.9, weight decay 5e-4, mean
 * 0.2860 / std 0.3530 (Fashion-MNIST), shifts of up to 2 pixels and flips,
 * seed 1, one worker. */
CNV_API cnv_train_params cnv_train_params_default(void);

/* Trains m's float parameters in place on train (test may be NULL: then no
 * test accuracy is reported). The datasets' images must match the model's
 * input. On failure m's message says why (a failing session's message is
 * copied there). */
CNV_API cnv_status cnv_train(cnv_model *m, const cnv_dataset *train,
                             const cnv_dataset *test,
                             const cnv_train_params *p);

/* Top-1 accuracy of m on d (every image, pixel/255 normalized with pp's
 * mean and std; pp NULL: the model's, cnv_model_preprocess), run in
 * batches of `batch` images on a session of its own. logits is the tensor
 * of the B x K class scores (-1: cnv_model_score_tensor). confusion, when
 * not NULL, has classes*classes entries: confusion[true * classes +
 * predicted] counts images; classes must then be at least K and d's class
 * count. Failures in m's message. */
CNV_API cnv_status cnv_evaluate(cnv_model *m, const cnv_dataset *d, int logits,
                                int batch, const cnv_preprocess *pp,
                                double *accuracy, int64_t *confusion,
                                int classes);

/* ---- visualizations: class models, fooling ---- */

/* Shared by the visualizations. Conventions:
 * - They take a session of the model (planned or not: they plan it for the
 *   batch they need, so its buffers are re-planned). Images go in and come
 *   out normalized (NCHW floats), like the session's input; where pixels
 *   matter (their valid range, 8-bit rounding, the noise they start from)
 *   their params name the preprocessing that maps pixels p in [0,1] to
 *   the input x = (p - mean) / std: NULL is the model's
 *   (cnv_model_preprocess), checked by cnv_preprocess_check either way.
 * - The class score they use is the model's raw score
 *   (cnv_model_score_tensor).
 * - Buffers they fill come with their length in floats; a wrong length is
 *   CNV_ERR_INVALID_ARG, with the length needed in the message.
 * - On failure the session's message (cnv_session_errmsg) says why.
 * - Results are deterministic for a given seed and thread count.
 *
 * A progress callback, called after every iteration (iter 1..total) with
 * the objective being ascended and the softmax probability of the target
 * class (both averaged over a batch). Returning non-zero stops the run:
 * the function returns CNV_ERR_CANCELLED and its outputs hold the images
 * of the last finished iteration. (Repeating this identical typedef is
 * valid C11, should another section need it first.) */
typedef int (*cnv_progress_fn)(void *user, int iter, int total, float objective,
                               float prob);
/* Receives snapshots of a batch of n normalized c x h x w images (borrowed
 * for the call), e.g. to make an animation. Non-zero cancels. */
typedef int (*cnv_frame_fn)(void *user, int iter, const float *images, int n,
                            int c, int h, int w);

/* Recipes: how a visualization that optimizes an image (class models,
 * neuron and layer pictures) parameterizes, transforms and steps it. */
typedef enum cnv_recipe {
    /* Olah, Mordvintsev, Schubert 2017 ("Feature Visualization"; the Lucid
     * library's defaults): the image is sigmoid(C z), z a Fourier basis
     * with amplitudes scaled by 1/frequency and C a square root of natural
     * photos' color covariance; every step sees it randomly scaled,
     * rotated, shifted (differentiably, with gray outside) and blurred, and
     * Adam ascends the objective. The default. cnv_lucid_params. */
    CNV_RECIPE_LUCID = 0,
    /* Gradient ascent on pixels with jitter rolls, blur, L2 decay and
     * clamping (Simonyan et al. 2014; Yosinski et al. 2015; Stanford's
     * CS231n): what cnnviz 0.1 did, bit for bit. */
    CNV_RECIPE_CS231N = 1
} cnv_recipe;

/* "lucid", "cs231n" (NULL for other values), and back (-1 if unknown). */
CNV_API const char *cnv_recipe_name(cnv_recipe r);
CNV_API int cnv_recipe_parse(const char *name);

/* The Lucid recipe's settings. Sizes are in pixels of a 224 x 224 image
 * and scale with the image's smaller side. */
typedef struct cnv_lucid_params {
    int iters;         /* Adam steps (default 512) */
    float lr;          /* Adam's step size (default 0.05) */
    int spectral;      /* 1: the 1/f Fourier basis (default); 0: pixels */
    int decorrelate;   /* 1: color decorrelation of 3-channel images
                          (default 1) */
    int sigmoid;       /* 1: sigmoid to [0, 1] (default); 0: clamp */
    float init_std;    /* std of the starting parameters; the image's
                          pixels then vary by about as much before the
                          sigmoid (default 0.01) */
    float shift;       /* random shift, at most, each axis (default 8) */
    float scale_min, scale_max; /* random scale (default 0.9, 1.1) */
    float rotate;      /* random rotation, at most, degrees (default 10) */
    float blur;        /* random Gaussian blur after the warp, sigma up
                          to this many pixels (default 1; 0: none) */
} cnv_lucid_params;
CNV_API cnv_lucid_params cnv_lucid_params_default(void);

/* Class model visualization (Simonyan, Vedaldi, Zisserman 2014, "Deep
 * Inside Convolutional Networks", section 2): an image I that maximizes
 * the raw class score S_c(I). By default (CNV_RECIPE_LUCID, see
 * cnv_recipe) I = sigmoid(C z(theta)), ascended with Adam on S_c of
 * randomly transformed copies. With CNV_RECIPE_CS231N it maximizes
 * S_c(I) - l2 * ||I||^2 - l1 * ||I||_1 by
 * gradient ascent from random noise, with the implicit
 * regularizers of Yosinski et al. 2015: random jitter, periodic blur and
 * clamping to valid pixels. Each step, per batch item:
 *   roll the image by a random (dy, dx) in [-jitter, jitter]^2,
 *   g = dS_c/dI - 2 l2 I - l1 sign(I) at the rolled image,
 *   I += lr * g / ||g||_2 (or lr * g when normalize_grad is 0),
 *   roll back, clamp to the pixel range (when clamp), and every
 *   blur_every steps blur with a Gaussian of blur_sigma pixels.
 * I is in the model's normalized units when its convention standardizes
 * pixels (every std from 1/16 to 4: torchvision's, Inception's, the
 * default model's). Otherwise (Caffe's 0..255, std 1/255) I is measured
 * in pixel standard deviations, normalized / (0.226 / std), so that lr,
 * l2, l1 and init_std mean the same picture for every convention. The
 * same holds for cnv_fool's lr. */
typedef struct cnv_classmodel_params {
    int iters;           /* gradient steps (default 300) */
    float lr;            /* step size, normalized units; 0: automatic,
                            25 at 3x224x224 and 25*sqrt(c*h*w/150528) at
                            other sizes, the same step per value (default) */
    int normalize_grad;  /* 1: step along g / ||g||_2 (default 1) */
    float l2;            /* weight of ||I||^2 (default 1e-3) */
    float l1;            /* weight of ||I||_1 (default 0) */
    int blur_every;      /* blur every N steps; 0: never (default 10) */
    float blur_sigma;    /* pixels (default 0.5) */
    int jitter;          /* max roll in pixels; 0: none; -1: automatic,
                            16 at 224 and round(16*min(h,w)/224), at least
                            1, at other sizes (default) */
    int clamp;           /* clamp to the valid pixel range (default 1) */
    int softmax;         /* 1: ascend the softmax probability instead of
                            the raw score, for comparison (default 0) */
    float init_std;      /* std of the initial noise, normalized (default 1) */
    int height, width;   /* image size; 0: the preprocessing's */
    const cnv_preprocess *preprocess; /* NULL: the model's (default) */
    uint64_t seed;       /* item i starts from a stream of (seed, class i),
                            so a class gives the same image alone or in a
                            batch, up to GEMM rounding (default 0) */
    cnv_progress_fn progress; /* may be NULL */
    cnv_frame_fn frame;       /* may be NULL */
    int frame_every;          /* frame gets iteration 0, every Nth, and the
                                 last; 0: never (default 10) */
    void *user;               /* passed to progress and frame */
    /* CNV_RECIPE_LUCID (default) follows cnv_lucid_params instead of the
     * fields from iters to init_std above (softmax still chooses the
     * objective); CNV_RECIPE_CS231N is the ascent described above. */
    cnv_recipe recipe;
    cnv_lucid_params lucid;
} cnv_classmodel_params;
CNV_API cnv_classmodel_params cnv_classmodel_params_default(void);
/* Replaces the automatic lr and jitter of p by the values cnv_classmodel
 * uses for c x h x w images (for reports). */
CNV_API void cnv_classmodel_params_resolve(cnv_classmodel_params *p, int c,
                                           int h, int w);

/* Makes n class models in one batched run: images (count = n x c x h x w
 * floats, h and w from p or the preprocessing) receives the class model
 * of classes[i] in item i. scores and probs (n values each, may be NULL)
 * receive each image's final raw score and softmax probability of its
 * class, from a last forward pass. */
CNV_API cnv_status cnv_classmodel(cnv_session *s, int n, const int *classes,
                                  const cnv_classmodel_params *p,
                                  float *images, size_t count,
                                  float *scores, float *probs);

/* Fooling image (Szegedy et al. 2014, "Intriguing properties of neural
 * networks"): a small change that makes the network call an image
 * `target` (not the smallest: the paper's box-constrained L-BFGS searches
 * for that). Gradient ascent on the target's raw score from the real
 * image, I += lr * g / ||g||_2, clamped to the pixel range, until the
 * top-1 class is the target; the image is then rounded to 8 bits exactly
 * as cnv_tensor_to_image writes it and classified again, and the ascent
 * goes on if rounding undid the change, so a saved file is fooling too. */
typedef struct cnv_fool_params {
    int max_iters;            /* gradient steps at most (default 100) */
    float lr;                 /* L2 length of a step, normalized units
                                 (default 1) */
    float min_prob;           /* go on until the target also has at least
                                 this probability, in [0,1) (default 0:
                                 stop as soon as it is top-1) */
    const cnv_preprocess *preprocess; /* NULL: the model's (default) */
    cnv_progress_fn progress; /* may be NULL */
    void *user;
} cnv_fool_params;
CNV_API cnv_fool_params cnv_fool_params_default(void);

typedef struct cnv_fool_result {
    int fooled;         /* the 8-bit result's top-1 class is the target,
                           with at least min_prob */
    int iters;          /* gradient steps taken */
    int before_class;   /* top-1 of the original, and its probability */
    float before_prob;
    int after_class;    /* top-1 of the 8-bit result, and its probability */
    float after_prob;
    float target_prob;  /* the target's probability on the result */
    float linf;         /* largest change of a pixel channel, gray levels */
    float mean_abs;     /* mean absolute change, gray levels (0..255) */
} cnv_fool_result;

/* image: one normalized c x h x w image (borrowed), count = c x h x w
 * floats. fooled (count floats) receives the 8-bit-rounded fooling image,
 * normalized. last_delta and sum_delta (count floats each, may be NULL)
 * receive the last step and the sum of all steps, normalized units. Not
 * reaching the target in max_iters is not an error: r->fooled is 0 and
 * fooled holds the last (rounded) image. */
CNV_API cnv_status cnv_fool(cnv_session *s, const float *image, size_t count,
                            int h, int w, int target,
                            const cnv_fool_params *p, float *fooled,
                            float *last_delta, float *sum_delta,
                            cnv_fool_result *r);

/* ---- visualizations: saliency, neurons, dream ---- */

/* These follow the conventions of the class-model section above: a session
 * of the model (re-planned for what they need), images in and out
 * normalized, failures in cnv_session_errmsg, results deterministic for a
 * seed and thread count, cnv_progress_fn / cnv_frame_fn callbacks that may
 * cancel (CNV_ERR_CANCELLED). Layers are named as users type them
 * (cnv_model_find_layer). */

/* Saliency maps: an h x w map of how much each pixel matters to one
 * target: a class score S_c (the raw score, as in the class-model
 * section), or a channel or unit of any 4-D layer (cnv_saliency_params).
 * docs/SALIENCY.md shows every method on the same photos with its cost.
 *
 * Gradient methods. Each computes an attribution a (c x h x w) and
 * reduces it over channels: "abs-max" methods take max_k |a_k| per pixel,
 * "signed" methods the sum over k of a_k (so the map sums to what the
 * attributions sum to). g(x) is the target's gradient at input x, b the
 * baseline (cnv_baseline), x the image, all in the model's normalized
 * units; NaN in a gradient stays NaN in the map. */
typedef enum cnv_saliency_method {
    /* abs-max: a = g(x) (Simonyan, Vedaldi, Zisserman 2014, "Deep Inside
     * Convolutional Networks", section 3). */
    CNV_SALIENCY_GRAD = 0,
    /* abs-max: a = the mean of g over `samples` noisy copies (SmoothGrad,
     * Smilkov et al. 2017): GRAD with smooth CNV_SMOOTH_MEAN. */
    CNV_SALIENCY_SMOOTHGRAD = 1,
    /* abs-max: guided backpropagation (Springenberg et al. 2015): every
     * ReLU passes only positive gradients where its input was positive. */
    CNV_SALIENCY_GUIDED = 2,
    /* Grad-CAM (Selvaraju et al. 2017) on a layer A (K x u x v):
     * ReLU(sum_k alpha_k A_k), alpha_k = mean over u x v of dS/dA_k. Every
     * CAM is computed at u x v and upsampled bilinearly to h x w
     * (half-pixel centers, edges clamped: PyTorch's align_corners=False). */
    CNV_SALIENCY_GRADCAM = 3,
    /* abs-max: Deconvnet (Zeiler and Fergus 2014): every ReLU passes the
     * positive part of its output's gradient, whatever its input was. */
    CNV_SALIENCY_DECONVNET = 4,
    /* signed: a = x * g(x) (gradient times input; Shrikumar et al. 2016):
     * integrated gradients' one-step value from the zero baseline. */
    CNV_SALIENCY_GRADXINPUT = 5,
    /* signed: integrated gradients (Sundararajan et al. 2017), the midpoint
     * Riemann sum a = (x - b) * (1/steps) sum_{i<steps} g(b + (i + 1/2) /
     * steps * (x - b)). Completeness: sum(a) ~ S(x) - S(b). */
    CNV_SALIENCY_IG = 6,
    /* signed: Blur IG (Xu et al. 2020): the path x(s) = the image blurred
     * by a Gaussian of sigma s (cnv_saliency_params.blur_max_sigma; s = 0
     * is the image), sampled at s_i = i/steps * max: a = sum_i g(x(m_i)) *
     * (x(s_i) - x(s_{i+1})) with m_i the midpoint. Completeness: sum(a) ~
     * S(x) - S(x(max)). No baseline. */
    CNV_SALIENCY_BLUR_IG = 7,
    /* signed: Guided IG (Kapishnikov et al. 2021): from the baseline to the
     * image in `steps` steps, each moving first the fraction
     * `guided_fraction` of the inputs with the smallest |gradient| (inputs
     * that lag behind the straight line by more than max_dist = 0.02 of it
     * catch up first); a = sum over steps of g * (the step taken). One
     * gradient per step, not batched. Completeness as IG. */
    CNV_SALIENCY_GUIDED_IG = 8,
    /* Guided Grad-CAM (Selvaraju et al. 2017): GUIDED's map times
     * GRADCAM's, pixel by pixel. */
    CNV_SALIENCY_GUIDED_GRADCAM = 9,
    /* Grad-CAM++ (Chattopadhyay et al. 2018), with g = dS/dA: ReLU(sum_k
     * w_k A_k), w_k = sum_ij ReLU(g_kij) a_kij, a_kij = g^2 / (2 g^2 +
     * (sum_ab A_kab) g^3 + 1e-7) where g != 0, else 0 (the exponential
     * closed form pytorch-grad-cam also uses). */
    CNV_SALIENCY_GRADCAM_PP = 10,
    /* LayerCAM (Jiang et al. 2021): ReLU(sum_k ReLU(g_kij) A_kij). */
    CNV_SALIENCY_LAYERCAM = 11,
    /* XGrad-CAM (Fu et al. 2020): ReLU(sum_k w_k A_k), w_k = sum_ij
     * A_kij g_kij / (sum_ab A_kab + 1e-7). */
    CNV_SALIENCY_XGRADCAM = 12,
    /* Eigen-CAM (Muhammad and Yeasin 2020): the projection of A's u*v
     * positions (centered: each channel's mean over positions removed) on
     * their first principal axis, signed so that it correlates positively
     * with the sum of the channels, then ReLU. Needs no gradient and no
     * target (class-agnostic: the target only fills cnv_saliency_info). */
    CNV_SALIENCY_EIGENCAM = 13,
    /* Score-CAM (Wang et al. 2020): ReLU(sum_k w_k A_k), w = softmax over k
     * of S(b + M_k * (x - b)), M_k = A_k upsampled to h x w and scaled to
     * [0, 1] ((M - min) / (max - min + 1e-8)). K forward passes, batched. */
    CNV_SALIENCY_SCORECAM = 14,
    /* Ablation-CAM (Desai and Ramaswamy 2020): ReLU(sum_k w_k A_k), w_k =
     * (S - S_k) / S with S_k the score when channel k of A is zeroed
     * (S == 0: w_k = S - S_k). K passes of the layers after A, batched. */
    CNV_SALIENCY_ABLATIONCAM = 15,
    /* Occlusion (Zeiler and Fergus 2014): a window x window square, slid by
     * stride (the last row and column of windows end at the image's edge),
     * is set to the baseline; each pixel gets the mean of S(x) -
     * S(occluded) over the windows covering it. Signed. Forward only,
     * batched. */
    CNV_SALIENCY_OCCLUSION = 16,
    /* RISE (Petsiuk et al. 2018): `masks` random masks M_i, each a
     * mask_cells x mask_cells grid of cells on with probability mask_prob,
     * upsampled bilinearly to (mask_cells + 1) cells and cropped at a random
     * offset within one cell; map = sum_i P(b + M_i * (x - b)) M_i /
     * (masks * mask_prob), with P the class's softmax probability (a layer
     * target: its value). Forward only, batched. */
    CNV_SALIENCY_RISE = 17
} cnv_saliency_method;
#define CNV_SALIENCY_METHODS 18

/* The CLI's names ("grad", "smoothgrad", "guided", "gradcam", "deconvnet",
 * "gradxinput", "ig", "blurig", "guidedig", "guided-gradcam", "gradcam++",
 * "layercam", "xgradcam", "eigencam", "scorecam", "ablationcam",
 * "occlusion", "rise"; NULL for other values), and back (-1 for an unknown
 * name). */
CNV_API const char *cnv_saliency_method_name(cnv_saliency_method method);
CNV_API int cnv_saliency_method_parse(const char *name);

/* What a method uses and gives, as CNV_SAL_* bits (0 for an unknown
 * method), so that a front end can tell which settings matter without a
 * table of its own. */
enum {
    CNV_SAL_TARGET = 1 << 0,      /* a target (every method but EIGENCAM) */
    CNV_SAL_LAYER = 1 << 1,       /* the CAM layer, `layer` */
    CNV_SAL_SMOOTH = 1 << 2,      /* noise smoothing: a gradient method, whose
                                     attribution cnv_saliency_attribution gives */
    CNV_SAL_STEPS = 1 << 3,       /* `steps` */
    CNV_SAL_BASELINE = 1 << 4,    /* `baseline` and its sigma or image */
    CNV_SAL_BATCHED = 1 << 5,     /* several images per pass even without
                                     smoothing: `batch` */
    CNV_SAL_SEEDED = 1 << 6,      /* random even without smoothing or a noise
                                     baseline: `seed` */
    CNV_SAL_SIGNED = 1 << 7,      /* the map keeps the attribution's sign */
    CNV_SAL_FORWARD_ONLY = 1 << 8 /* no gradient: forward passes only */
};
CNV_API unsigned cnv_saliency_method_flags(cnv_saliency_method method);

/* Where a path or a perturbation starts, in the model's normalized units. */
typedef enum cnv_baseline {
    CNV_BASELINE_AUTO = 0,  /* the method's usual one (below) */
    CNV_BASELINE_ZERO = 1,  /* 0: the normalization's mean color */
    CNV_BASELINE_BLACK = 2, /* pixel value 0 in every channel */
    CNV_BASELINE_BLUR = 3,  /* the image blurred by a Gaussian of sigma
                               baseline_sigma (cnv_blur_chw's kernel) */
    CNV_BASELINE_NOISE = 4, /* uniform noise over the image's min..max,
                               from the seed */
    CNV_BASELINE_IMAGE = 5  /* baseline_image */
} cnv_baseline;
/* AUTO is BLACK for IG, GUIDED_IG and RISE (their papers'), ZERO for
 * OCCLUSION and SCORECAM (Captum's and pytorch-grad-cam's), and for the
 * metrics BLACK (deletion) and BLUR (insertion; Petsiuk et al.). */

/* Noise smoothing of a gradient method's attribution a over `samples`
 * copies x + N(0, sigma^2), sigma = noise * (max - min of the image):
 * MEAN is SmoothGrad, SQUARE the mean of a^2 (SmoothGrad-squared; Hooker
 * et al. 2019), VAR the variance of a (VarGrad; Adebayo et al. 2018). The
 * channel reduction comes after: abs-max methods take the max over
 * channels of |mean| (MEAN) or of the mean square or variance; signed
 * methods their sum. Applies to GRAD, GUIDED, DECONVNET, GRADXINPUT, IG,
 * BLUR_IG, GUIDED_IG. */
typedef enum cnv_smooth {
    CNV_SMOOTH_NONE = 0,
    CNV_SMOOTH_MEAN = 1,
    CNV_SMOOTH_SQUARE = 2,
    CNV_SMOOTH_VAR = 3
} cnv_smooth;

typedef struct cnv_saliency_params {
    cnv_saliency_method method; /* default CNV_SALIENCY_GRAD */
    /* The target. A class score: class_index in the score tensor (-1: the
     * top-1 class of the image; default -1). When `score` names a 4-D
     * layer (as cnv_model_find_layer reads it), class_index is a channel
     * (-1: the channel with the largest mean on the image) and the target
     * is its spatial mean, or its unit (y, x) when y >= 0 and x >= 0. */
    int class_index;
    const char *score; /* the target tensor; NULL: the model's raw score
                          (default NULL) */
    int samples;       /* SMOOTHGRAD and smoothing: noisy copies
                          (default 25) */
    float noise;       /* smoothing: sigma / (max - min) (default 0.15) */
    int batch;         /* images per forward/backward pass of the methods
                          that make many; changes speed and memory, not the
                          result beyond GEMM rounding; 0: about 32768
                          pixels a pass, 8 images up to 64 x 64, 1 at
                          224 x 224 (default 0) */
    uint64_t seed;     /* noise, NOISE baselines, RISE's masks (default 0) */
    const char *layer; /* the CAM methods' layer A (as cnv_model_find_layer
                          reads it); NULL: the last activation, feature
                          map or join of branches, 4-D with u, v > 1,
                          that every path from the image to the target
                          passes through (a block's output: an Inception
                          block's concatenation, a residual sum; never
                          one branch) (default NULL) */
    cnv_progress_fn progress; /* multi-pass methods: after every pass,
                                 iter = passes done of total, objective =
                                 the target's value on the pass's first
                                 image (IG, SmoothGrad: their mean), prob =
                                 the image's probability (may be NULL) */
    void *user;
    int y, x;          /* a layer target's unit (default -1, -1: the mean) */
    cnv_smooth smooth; /* default NONE (SMOOTHGRAD implies MEAN) */
    int steps;         /* IG, BLUR_IG, GUIDED_IG: path steps (default 64) */
    cnv_baseline baseline;       /* default AUTO */
    float baseline_sigma;        /* BLUR baseline: sigma in pixels; 0: a
                                    tenth of the larger side (default 0) */
    const float *baseline_image; /* IMAGE baseline: c x h x w, borrowed */
    float blur_max_sigma;  /* BLUR_IG: the path's largest sigma in pixels;
                              0: 50 / 224 of the larger side, PAIR's 50 at
                              224 (default 0) */
    float guided_fraction; /* GUIDED_IG: inputs moved per sub-step
                              (default 0.25) */
    int window, stride;    /* OCCLUSION: 0: a seventh of the smaller side
                              (32 at 224, 4 at 28), half the window */
    int masks;             /* RISE: masks (default 2000) */
    int mask_cells;        /* RISE: grid side (default 7) */
    float mask_prob;       /* RISE: probability of a cell on (default 0.5) */
} cnv_saliency_params;
CNV_API cnv_saliency_params cnv_saliency_params_default(void);

/* What cnv_saliency explained. */
typedef struct cnv_saliency_info {
    int class_index;   /* the class (a layer target: the channel) */
    float score, prob; /* the target's value on the image, and its softmax
                          probability (a layer target: 0) */
    const char *layer; /* CAM methods: the layer used (owned by m); else NULL */
    int layer_height, layer_width; /* CAM methods: u and v */
    int is_signed;     /* the map has meaningful negative values (signed
                          methods, occlusion) */
    int passes;        /* forward passes run (each up to batch images) */
    float baseline_score; /* IG, GUIDED_IG: S(b); BLUR_IG: S(x(max));
                             else 0. With `score` and the map's sum it
                             checks completeness */
} cnv_saliency_info;

/* image: one normalized c x h x w image (borrowed, count = c x h x w
 * floats). map (map_count = h x w floats) receives the unnormalized
 * saliency map: NaN where the gradient was NaN, never rescaled
 * (cnv_map_to_gray does that). info may be NULL. The session's ReLU mode
 * is CNV_RELU_GRAD afterwards (GUIDED, DECONVNET, GUIDED_GRADCAM set their
 * mode for their passes and restore it). Deterministic for a seed, batch
 * and thread count. Allocates its buffers once per call (the session is
 * planned for `batch` images), nothing per pass. */
CNV_API cnv_status cnv_saliency(cnv_session *s, const float *image,
                                size_t count, int h, int w,
                                const cnv_saliency_params *p,
                                float *map, size_t map_count,
                                cnv_saliency_info *info);

/* The same for the attribution before the channel reduction: attr receives
 * c x h x w floats (attr_count of them). Gradient methods only (the rest
 * fail with CNV_ERR_INVALID_ARG); with smoothing SQUARE or VAR it holds
 * the mean square or the variance. */
CNV_API cnv_status cnv_saliency_attribution(cnv_session *s, const float *image,
                                            size_t count, int h, int w,
                                            const cnv_saliency_params *p,
                                            float *attr, size_t attr_count,
                                            cnv_saliency_info *info);

/* How well a map ranks pixels (Petsiuk et al. 2018): pixels are taken in
 * the order of the map's values (largest first; ties by position; NaN
 * last). DELETION replaces them, all channels at once, by the baseline
 * (AUTO: black) and follows the target's probability as they go;
 * INSERTION starts from the baseline (AUTO: the image blurred by sigma
 * a tenth of the larger side) and puts them back. curve[i], i = 0..steps,
 * is the probability (a layer target: its value) with the first
 * round(i * h * w / steps) pixels changed; the area under it is the
 * trapezoid rule's mean over [0, 1]. Lower deletion and higher insertion
 * areas mean a better map. */
typedef enum cnv_metric {
    CNV_METRIC_DELETION = 0,
    CNV_METRIC_INSERTION = 1
} cnv_metric;
/* "deletion", "insertion"; -1 for an unknown name. */
CNV_API const char *cnv_metric_name(cnv_metric metric);
CNV_API int cnv_metric_parse(const char *name);

/* The target (class_index, score, y, x; a -1 class is the image's top-1),
 * batch, baseline, baseline_sigma, baseline_image and seed come from p (NULL:
 * the defaults); steps >= 1; curve holds steps + 1 floats (may be NULL).
 * The session is planned for p->batch images. */
CNV_API cnv_status cnv_saliency_metric(cnv_session *s, const float *image,
                                       size_t count, int h, int w,
                                       const float *map, size_t map_count,
                                       cnv_metric metric, int steps,
                                       const cnv_saliency_params *p,
                                       float *curve, float *area);

/* Neuron visualization (Erhan et al. 2009; Yosinski et al. 2015,
 * "Understanding Neural Networks Through Deep Visualization"): the image
 * that maximizes the mean activation of one channel of a layer (or of one
 * unit). By default by the Lucid recipe (cnv_recipe); with
 * CNV_RECIPE_CS231N by gradient ascent from small noise with jitter, L2
 * decay, blur and clamping to valid pixels. Each step, per batch item:
 *   roll the image by a random (dy, dx) in [-jitter, jitter]^2,
 *   g = d(objective)/dI at the rolled image, run forward only up to the
 *     layer and backward from it,
 *   I += (lr / 255 / std_k) * g / mean|g| - decay * I   (lr in gray levels:
 *     the mean change of a pixel per step, whatever the model's std),
 *   roll back, clamp (when clamp), blur every blur_every steps.
 * A channel that is 0 everywhere (often the case on the starting noise)
 * has a zero gradient and would never move: when the layer is a Relu's
 * output and pre_relu is on, such a step follows the gradient of the same
 * objective on the Relu's input instead (the pre-activation, as feature
 * visualizations often use, e.g. "mixed4a_pre_relu" in Olah et al. 2017),
 * until the channel comes alive. */
typedef struct cnv_neuron_params {
    const char *layer;   /* the tensor (N x C x ... ; required) */
    int unit_y, unit_x;  /* -1, -1: the channel's mean (default); else the
                            single unit at (y, x) of a 4-D layer */
    int iters;           /* gradient steps (default 200) */
    float lr;            /* mean step, gray levels (default 2) */
    float decay;         /* L2 decay per step (default 0.001) */
    int blur_every;      /* blur every N steps; 0: never (default 4) */
    float blur_sigma;    /* pixels (default 0.5) */
    int jitter;          /* max roll in pixels (default 4) */
    int clamp;           /* clamp to valid pixels (default 1) */
    int pre_relu;        /* dead channels: the Relu's input (default 1) */
    float init_std;      /* initial noise std, gray levels (default 10) */
    int height, width;   /* image size; 0: the preprocessing's */
    const cnv_preprocess *preprocess; /* NULL: the model's (default) */
    int batch;           /* channels per batched pass; 0: all (default 0) */
    uint64_t seed;       /* item i starts from the stream (seed, channel),
                            so a channel gives the same image alone or in a
                            batch, up to GEMM rounding (default 0) */
    cnv_progress_fn progress; /* objective = mean over the batch; prob 0 */
    cnv_frame_fn frame;       /* may be NULL */
    int frame_every;          /* (default 10) */
    void *user;
    /* CNV_RECIPE_LUCID (default: see cnv_recipe) follows cnv_lucid_params
     * instead of the fields from iters to init_std (but pre_relu) above;
     * CNV_RECIPE_CS231N is the ascent described above. */
    cnv_recipe recipe;
    cnv_lucid_params lucid;
} cnv_neuron_params;
CNV_API cnv_neuron_params cnv_neuron_params_default(void);

/* images (count = n x c x h x w floats) receives the visualization of
 * channels[i] in item i. before and after (n values each, may be NULL)
 * receive the objective on the starting noise and on the result. */
CNV_API cnv_status cnv_neuron(cnv_session *s, int n, const int *channels,
                              const cnv_neuron_params *p,
                              float *images, size_t count,
                              float *before, float *after);

/* Deep dream (Mordvintsev, Olah, Tyka 2015, "Inceptionism") with a zoom:
 * gradient ascent on the L2 norm (or the mean) of a layer (or of one
 * channel), the gradient
 * normalized by its mean absolute value, at several octaves: the first
 * start x round(start * width / height), each next one octave_scale times
 * larger (at most the frame size), the last at height x width; the detail
 * added at one octave is upscaled (cnv_resize_chw) into the next. Then a
 * movie: each frame zooms the last one in by `zoom`, crops its center
 * back to height x width and takes frame_steps more steps. A step is:
 * roll by a random (dy, dx) in [-jitter, jitter]^2, g = d(objective)/dI,
 * I += (lr / 255 / std_k) * g / mean|g|, roll back, clamp. pre_relu as
 * for cnv_neuron (the progress objective is the layer's own mean). */
typedef struct cnv_dream_params {
    const char *layer;   /* the tensor (required) */
    int channel;         /* -1: the whole layer (default); else one channel */
    int channel_every;   /* > 0: a new random channel every N frames
                            (the first one too; default 0) */
    int height, width;   /* frame size; 0: the preprocessing's */
    const cnv_preprocess *preprocess; /* NULL: the model's (default) */
    int start;           /* first octave height (default 64) */
    int octaves;         /* >= 1 (default 4) */
    float octave_scale;  /* > 1 (default 1.4) */
    int steps;           /* steps per octave (default 20) */
    int frames;          /* movie frames; frame 0 is the octaves' result
                            (default 1) */
    float zoom;          /* per frame, >= 1 (default 1.05) */
    int frame_steps;     /* steps per frame after the first (default 5) */
    float lr;            /* mean step, gray levels (default 1.5) */
    int jitter;          /* max roll in pixels (default 16) */
    int clamp;           /* clamp to valid pixels (default 1) */
    int pre_relu;        /* dead channels: the Relu's input (default 1) */
    float init_std;      /* start noise std, gray levels (default 20) */
    const float *init;   /* start photo, c x height x width normalized,
                            instead of noise (borrowed; default NULL) */
    uint64_t seed;       /* noise, jitter, channels (default 0) */
    cnv_progress_fn progress; /* iter counts every step; prob is 0 */
    cnv_frame_fn frame;       /* each movie frame (iter = its index) */
    void *user;
    int l2;              /* 1: ascend half the mean square of the layer
                            (or channel), whose gradient is the activation
                            itself: Google's DeepDream notebook (default);
                            0: its mean, which is what 0.1 did */
} cnv_dream_params;
CNV_API cnv_dream_params cnv_dream_params_default(void);

/* Runs the octaves and the movie. out (count = c x height x width floats;
 * may be NULL) receives the last frame; channels (n_channels = frames
 * ints; may be NULL) the channel each frame ascended (-1: the whole
 * layer). */
CNV_API cnv_status cnv_dream(cnv_session *s, const cnv_dream_params *p,
                             float *out, size_t count,
                             int *channels, int n_channels);

/* ---- feature visualization with composed objectives ---- */

/* Olah et al. 2017's objectives, each over a tensor of the graph (named
 * as cnv_model_find_layer reads it) with the batch first: a sum of
 * weighted terms is what cnv_render ascends. */
typedef enum cnv_objective_kind {
    /* Score `index` of a B x K tensor: NULL layer is the model's raw
     * class scores (cnv_model_score_tensor). */
    CNV_OBJ_CLASS = 0,
    /* The mean of channel `index` over its positions. */
    CNV_OBJ_CHANNEL = 1,
    /* Channel `index` at (y, x) of a 4-D layer; -1, -1: the center. */
    CNV_OBJ_NEURON = 2,
    /* Half the mean square of the whole tensor (DeepDream's L2). */
    CNV_OBJ_LAYER_L2 = 3,
    /* The mean over positions of sum_c direction[c] * layer[c, position]:
     * a direction in the space of the layer's channels (n_direction =
     * its channel count). */
    CNV_OBJ_DIRECTION = 4,
    /* Diversity across the batch (Lucid's): minus the mean, over pairs
     * of items, of the cosine similarity of their Gram matrices (channels
     * x channels, over positions), so that the items differ in style.
     * Always applies to every item (`item` must be -1), of one batch (at
     * most 64). */
    CNV_OBJ_DIVERSITY = 5
} cnv_objective_kind;

/* "class", "channel", "neuron", "l2", "direction", "diversity" (NULL for
 * other values), and back (-1 for an unknown name). */
CNV_API const char *cnv_objective_name(cnv_objective_kind kind);
CNV_API int cnv_objective_parse(const char *name);

typedef struct cnv_objective {
    cnv_objective_kind kind;
    const char *layer;        /* the tensor (borrowed); CLASS: NULL is the
                                 model's raw class scores */
    int pre_activation;       /* 1: the layer's input when it is an
                                 activation's output (a Relu's input, for
                                 units that are rarely positive) */
    int probability;          /* CLASS: 1 for the softmax probability of
                                 the class over the tensor's K scores
                                 instead of the score itself */
    int index;                /* CLASS: the class; CHANNEL, NEURON: the
                                 channel */
    int y, x;                 /* NEURON: the position; -1, -1: the center */
    const float *direction;   /* DIRECTION: n_direction weights (borrowed) */
    int n_direction;
    /* The term's weight: `weight` for item 0, `weight_last` for item n-1
     * and linear in between (equal values: a constant weight; 1 and 0
     * with another term at 0 and 1: an interpolation across the batch).
     * A negative weight minimizes the term. */
    float weight, weight_last;
    int item;                 /* -1: every item; else only that one */
} cnv_objective;

/* A term of `kind` with weight 1 for every item and no position: fill in
 * the layer and index. */
CNV_API cnv_objective cnv_objective_default(cnv_objective_kind kind);

typedef struct cnv_render_params {
    cnv_lucid_params lucid;   /* the recipe (cnv_lucid_params_default) */
    int height, width;        /* image size; 0: the preprocessing's */
    const cnv_preprocess *preprocess; /* NULL: the model's (default) */
    uint64_t seed;            /* item i draws from the stream (seed, i) */
    cnv_progress_fn progress; /* objective: the sum over terms, mean over
                                 items; prob 0 */
    cnv_frame_fn frame;       /* may be NULL */
    int frame_every;          /* (default 32) */
    void *user;
} cnv_render_params;
CNV_API cnv_render_params cnv_render_params_default(void);

/* Renders n images in one batch by the Lucid recipe, each ascending the
 * sum of the terms that apply to it. images (count = n x c x h x w
 * floats) receives them, normalized; values (n floats, may be NULL) each
 * image's objective on a last forward pass of the images themselves.
 * Terms on several tensors cost one backward pass per tensor. */
CNV_API cnv_status cnv_render(cnv_session *s, int n, const cnv_objective *terms, int n_terms,
                              const cnv_render_params *p, float *images, size_t count,
                              float *values);

#ifdef __cplusplus
}
#endif

#endif
