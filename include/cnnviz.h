/* cnnviz.h — libcnnviz: see what a trained convolutional network has learned.
 *
 * A CPU engine (float32, NCHW, OpenBLAS GEMM) that runs a CNN forward and
 * backward, computes the gradient of any score with respect to the input
 * image, and builds visualizations on it.
 *
 * USAGE (this example is compiled and run by `make test`, see
 * tests/example.c; keep the two identical):
 *
 *     cnv_model *m = NULL;
 *     cnv_session *s = NULL;
 *     cnv_status st = cnv_model_load_onnx("weights/fashion_mnist.onnx", &m);
 *     if (st == CNV_OK) st = cnv_session_create(m, &s);
 *     if (st == CNV_OK) st = cnv_session_plan(s, 1, 28, 28);
 *     if (st == CNV_OK) st = cnv_session_forward(s);
 *     if (st != CNV_OK) fprintf(stderr, "%s\n", s ? cnv_session_errmsg(s) : cnv_model_errmsg(m));
 *     cnv_session_free(s);
 *     cnv_model_free(m);
 *
 * CONVENTIONS
 * - Every fallible function returns a cnv_status. CNV_OK is 0. On failure the
 *   handle's message (cnv_model_errmsg, cnv_session_errmsg) says what went
 *   wrong: which node, which tensor, which shape. cnv_status_string() gives a
 *   static text for the code alone.
 * - Constructors return the handle even when they fail (unless memory ran
 *   out), so that its message can be read; free it afterwards. Every _free
 *   accepts NULL.
 * - Pointers passed in are borrowed: the library copies what it keeps.
 *   Pointers returned by the library are owned by the handle they came from
 *   and stay valid until the next call that re-plans or frees it.
 * - The library never prints, exits or aborts on anything a caller or a file
 *   can influence.
 *
 * THREADS
 * A cnv_model is read-only once built: any number of threads may share one,
 * each with its own cnv_session. A session is used by one thread at a time.
 * The functions that change a model (cnv_model_add_*, cnv_model_param when
 * its data is written) must not run while a session of that model runs.
 * cnv_set_threads and cnv_set_allocator are process-wide: call them before
 * other threads use the library.
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
#define CNV_VERSION_MINOR 1
#define CNV_VERSION_PATCH 0
#define CNV_VERSION_STRING "0.1.0"

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
    void *(*malloc_fn)(size_t size, void *user);
    void (*free_fn)(void *ptr, void *user);
    void *user;
} cnv_allocator;
CNV_API void cnv_set_allocator(const cnv_allocator *a);

/* Threads used by GEMM and the library's own loops; 0 means all cores. */
CNV_API void cnv_set_threads(int n);

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

/* Introspection. Names are owned by m. */
CNV_API int cnv_model_input_count(const cnv_model *m);
CNV_API const char *cnv_model_input_name(const cnv_model *m, int i);
CNV_API cnv_status cnv_model_input_shape(const cnv_model *m, int i,
                                         cnv_shape *out);
CNV_API int cnv_model_output_count(const cnv_model *m);
CNV_API const char *cnv_model_output_name(const cnv_model *m, int i);
CNV_API int cnv_model_node_count(const cnv_model *m);
/* Op type, node name and first output of node i (NULLs if i is out of
 * range). */
CNV_API const char *cnv_model_node_op(const cnv_model *m, int i);
CNV_API const char *cnv_model_node_name(const cnv_model *m, int i);
CNV_API const char *cnv_model_node_output(const cnv_model *m, int i);
CNV_API int cnv_model_has_tensor(const cnv_model *m, const char *name);

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

/* When on, backward also computes gradients of the float constants
 * (weights, biases), read with cnv_session_grad. Off by default: frozen
 * parameters cost nothing. Takes effect at the next plan. */
CNV_API cnv_status cnv_session_set_param_grads(cnv_session *s, int on);

/* ReLU backward rule: CNV_RELU_GRAD passes dy where y > 0 (the true
 * gradient; exactly 0 at y == 0); CNV_RELU_GUIDED passes dy where y > 0 and
 * dy > 0 (guided backpropagation, Springenberg et al. 2015). */
typedef enum cnv_relu_mode { CNV_RELU_GRAD = 0, CNV_RELU_GUIDED = 1 } cnv_relu_mode;
CNV_API cnv_status cnv_session_set_relu_mode(cnv_session *s, cnv_relu_mode mode);

/* Plans for an image model's single 4-D input of shape n x C x h x w (C as
 * the model declares it). Planning allocates every buffer; forward and
 * backward then allocate nothing. Planning again with the same shape is a
 * no-op; another shape re-plans. */
CNV_API cnv_status cnv_session_plan(cnv_session *s, int n, int h, int w);
/* General form: one shape per graph input, in cnv_model_input order. */
CNV_API cnv_status cnv_session_plan_shapes(cnv_session *s, int n_inputs,
                                           const cnv_shape *shapes);

/* The buffer of a tensor's values (inputs are written here before forward)
 * and its planned shape (shape may be NULL). Owned by s; valid until the
 * next plan. Constants are read-only through this pointer. */
CNV_API cnv_status cnv_session_tensor(cnv_session *s, const char *name,
                                      float **data, cnv_shape *shape);
/* The first graph input's buffer, or NULL before planning. */
CNV_API float *cnv_session_input(cnv_session *s);

/* Runs every node. */
CNV_API cnv_status cnv_session_forward(cnv_session *s);
/* Runs only the nodes needed to compute tensor name. */
CNV_API cnv_status cnv_session_forward_to(cnv_session *s, const char *name);

/* Backward from a seed: computes d(sum(seed * T))/dX for T the named tensor
 * and every X that needs a gradient (the graph inputs, and the parameters
 * when cnv_session_set_param_grads is on). seed has T's planned element
 * count; it is borrowed. Needs a forward that computed T first. */
CNV_API cnv_status cnv_session_backward(cnv_session *s, const char *name,
                                        const float *seed);
/* The gradient computed by the last backward for a tensor (an input, or a
 * parameter when parameter gradients are on). Owned by s. */
CNV_API cnv_status cnv_session_grad(cnv_session *s, const char *name,
                                    float **grad);
/* The first graph input's gradient, or NULL. */
CNV_API float *cnv_session_input_grad(cnv_session *s);

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

/* ---- visualizations: class models, fooling ---- */

/* Shared by the iterative visualizations. Conventions:
 * - They take a session of the model (planned or not: they plan it for the
 *   batch they need, so its buffers are re-planned) and the model itself,
 *   plus the per-channel mean and std that map pixels p in [0,1] to the
 *   network's input x = (p - mean) / std (NULL: 0 and 1). Images go in and
 *   come out normalized (NCHW floats), like the session's input.
 * - The class score they use is the model's raw score: its first output, or
 *   the input of that output's Softmax when it ends with one.
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

/* Class model visualization (Simonyan, Vedaldi, Zisserman 2014, "Deep
 * Inside Convolutional Networks", section 2): the image I that maximizes
 * the raw class score S_c(I) - l2 * ||I||^2 - l1 * ||I||_1, found by
 * gradient ascent from small random noise, with the implicit
 * regularizers of Yosinski et al. 2015: random jitter, periodic blur and
 * clamping to valid pixels. Each step, per batch item:
 *   roll the image by a random (dy, dx) in [-jitter, jitter]^2,
 *   g = dS_c/dI - 2 l2 I - l1 sign(I) at the rolled image,
 *   I += lr * g / ||g||_2 (or lr * g when normalize_grad is 0),
 *   roll back, clamp to the pixel range (when clamp), and every
 *   blur_every steps blur with a Gaussian of blur_sigma pixels. */
typedef struct cnv_classmodel_params {
    int iters;           /* gradient steps (default 300) */
    float lr;            /* step size (default 25, normalized units) */
    int normalize_grad;  /* 1: step along g / ||g||_2 (default 1) */
    float l2;            /* weight of ||I||^2 (default 1e-3) */
    float l1;            /* weight of ||I||_1 (default 0) */
    int blur_every;      /* blur every N steps; 0: never (default 10) */
    float blur_sigma;    /* pixels (default 0.5) */
    int jitter;          /* max roll in pixels; 0: none (default 16) */
    int clamp;           /* clamp to the valid pixel range (default 1) */
    float init_std;      /* std of the initial noise, normalized (default 1) */
    int height, width;   /* image size; 0: the model's declared size */
    uint64_t seed;       /* item i starts from a stream of (seed, class i),
                            so a class gives the same image alone or in a
                            batch, up to GEMM rounding (default 0) */
    cnv_progress_fn progress; /* may be NULL */
    cnv_frame_fn frame;       /* may be NULL */
    int frame_every;          /* frame gets iteration 0, every Nth, and the
                                 last (default 10) */
    void *user;               /* passed to progress and frame */
} cnv_classmodel_params;
CNV_API cnv_classmodel_params cnv_classmodel_params_default(void);

/* Makes n class models in one batched run: images (n x c x h x w, caller-
 * allocated, h and w from p or the model) receives the class model of
 * classes[i] in item i. scores and probs (n values each, may be NULL)
 * receive each image's final raw score and softmax probability of its
 * class, from a last forward pass. */
CNV_API cnv_status cnv_classmodel(cnv_session *s, const cnv_model *m,
                                  const float *mean, const float *std,
                                  int n, const int *classes,
                                  const cnv_classmodel_params *p,
                                  float *images, float *scores, float *probs);

/* Fooling image (Szegedy et al. 2014, "Intriguing properties of neural
 * networks"): the smallest-effort change that makes the network call an
 * image `target`. Gradient ascent on the target's raw score from the real
 * image, I += lr * g / ||g||_2, clamped to the pixel range, until the
 * top-1 class is the target; the image is then rounded to 8 bits exactly
 * as cnv_tensor_to_image writes it and classified again, and the ascent
 * goes on if rounding undid the change, so a saved file is fooling too. */
typedef struct cnv_fool_params {
    int max_iters;            /* gradient steps at most (default 100) */
    float lr;                 /* L2 length of a step, normalized units
                                 (default 1) */
    cnv_progress_fn progress; /* may be NULL */
    void *user;
} cnv_fool_params;
CNV_API cnv_fool_params cnv_fool_params_default(void);

typedef struct cnv_fool_result {
    int fooled;         /* the 8-bit result's top-1 class is the target */
    int iters;          /* gradient steps taken */
    int before_class;   /* top-1 of the original, and its probability */
    float before_prob;
    int after_class;    /* top-1 of the 8-bit result, and its probability */
    float after_prob;
    float target_prob;  /* the target's probability on the result */
    float linf;         /* largest change of a pixel channel, gray levels */
    float mean_abs;     /* mean absolute change, gray levels (0..255) */
} cnv_fool_result;

/* image: one normalized c x h x w image (borrowed). fooled (same size,
 * caller-allocated) receives the 8-bit-rounded fooling image, normalized.
 * last_delta and sum_delta (same size, may be NULL) receive the last step
 * and the sum of all steps, normalized units. Not reaching the target in
 * max_iters is not an error: r->fooled is 0 and fooled holds the last
 * (rounded) image. */
CNV_API cnv_status cnv_fool(cnv_session *s, const cnv_model *m,
                            const float *mean, const float *std,
                            const float *image, int h, int w, int target,
                            const cnv_fool_params *p, float *fooled,
                            float *last_delta, float *sum_delta,
                            cnv_fool_result *r);

#ifdef __cplusplus
}
#endif

#endif
