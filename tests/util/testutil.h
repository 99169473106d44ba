/* Shared test helpers: random data, one-node models, a naive reference
 * harness and the central finite-difference gradient checker. */
#ifndef CNV_TESTUTIL_H
#define CNV_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cnnviz.h"

/* Deterministic generator (xorshift) for test data. */
typedef struct tu_rng { uint64_t s; } tu_rng;
void tu_rng_init(tu_rng *r, uint64_t seed);
float tu_uniform(tu_rng *r, float lo, float hi);
void tu_fill(tu_rng *r, float *x, int64_t n, float lo, float hi);

cnv_shape tu_shape(int ndim, ...); /* tu_shape(4, 2,3,7,5) */

/* An input or constant of a one-node model. */
typedef struct tu_tensor {
    const char *name;
    cnv_shape shape;
    const float *data;  /* for consts (copied); inputs are filled later */
    int is_const;
} tu_tensor;

/* A model with one node of op_type: inputs (graph inputs and float consts)
 * in order, one output named "y". Fails the test on any error. */
cnv_model *tu_one_node(const char *op_type, int n_in, const tu_tensor *ins,
                       int n_attrs, const cnv_attr *attrs);

/* Attribute constructors. */
cnv_attr tu_attr_int(const char *name, int64_t v);
cnv_attr tu_attr_float(const char *name, float v);
cnv_attr tu_attr_ints(const char *name, int n, const int64_t *v);
cnv_attr tu_attr_string(const char *name, const char *v);

/* Creates a session for m, plans every graph input with the shape the
 * model declares (no -1 allowed) and fills each input from data[i] (NULL:
 * uniform in [-1,1] from seed). Fails the test on error. */
cnv_session *tu_session(cnv_model *m, const float *const *data, uint64_t seed);

/* The index of tensor `name` of s's model (-1 when there is none: the
 * session's calls then fail with CNV_ERR_NOT_FOUND). */
int tu_t(const cnv_session *s, const char *name);
/* The batch size of s's planned first input. */
int tu_batch(cnv_session *s);
/* cnv_session_backward from tensor `name` with a seed of its planned
 * element count (-1 when it has none: the call then fails). */
cnv_status tu_backward(cnv_session *s, const char *name, const float *seed);
/* The name of a layer a user typed (cnv_model_find_layer), or NULL. */
cnv_status tu_find_layer(const cnv_model *m, const char *text, const char **name, char *err,
                         size_t errlen);
/* cnv_model_layers as names (names may be NULL to count). */
int tu_layer_names(const cnv_model *m, int max, const char **names);
/* The name of graph input i. */
const char *tu_input_name(const cnv_model *m, int i);
/* A preprocessing of c channels, h x w, with these means and standard
 * deviations (NULL: 0 and 1). */
cnv_preprocess tu_pp(int c, int h, int w, const float *mean, const float *std);

/* The visualizations with 0.1's arguments, so that their tests read as
 * before: mean and std (NULL: 0 and 1, whatever the model's metadata
 * says) become the params' preprocessing, and each buffer's length is the
 * one the call needs (the size from the params or the model). They call
 * the real functions; tests of the lengths themselves call those. */
cnv_status tu_classmodel(cnv_session *s, const cnv_model *m, const float *mean, const float *std, int n,
                         const int *classes, const cnv_classmodel_params *p, float *images, float *scores,
                         float *probs);
cnv_status tu_fool(cnv_session *s, const cnv_model *m, const float *mean, const float *std, const float *image,
                   int h, int w, int target, const cnv_fool_params *p, float *fooled, float *last_delta,
                   float *sum_delta, cnv_fool_result *r);
cnv_status tu_saliency(cnv_session *s, const cnv_model *m, const float *image, int h, int w,
                       const cnv_saliency_params *p, float *map, cnv_saliency_info *info);
cnv_status tu_neuron(cnv_session *s, const cnv_model *m, const float *mean, const float *std, int n,
                     const int *channels, const cnv_neuron_params *p, float *images, float *before, float *after);
cnv_status tu_dream(cnv_session *s, const cnv_model *m, const float *mean, const float *std,
                    const cnv_dream_params *p, float *out, int *channels);

/* Floats of a tensor of pp's channels and size. */
size_t tu_pp_len(const cnv_preprocess *pp);
/* cnv_tensor_to_image with 0.1's arguments: mean and std (NULL: 0 and 1)
 * for c channels. */
cnv_status tu_to_image(const float *chw, int c, int h, int w, const float *mean, const float *std,
                       cnv_image *out, char *err, size_t errlen);

/* Maximum |a-b| / max(1, |b|) over n values; index of the worst in *at. */
double tu_max_rel_diff(const float *a, const float *b, int64_t n, int64_t *at);

typedef struct tu_fd_result {
    double max_err;   /* max |analytic - numeric| / max(1, |numeric|) */
    int checked;      /* elements compared */
} tu_fd_result;

/* Central finite differences of f = sum(seed * T), T = tensor `out`,
 * accumulated in double, against cnv_session_backward's gradients for
 * every graph input and (when the session has parameter gradients on)
 * every float const. At most max_per_tensor elements of each are checked
 * (evenly spaced). h is the step. s must be planned with its inputs
 * filled; the inputs are restored afterwards. */
tu_fd_result tu_fd_check(cnv_session *s, cnv_model *m, const char *out,
                         double h, int max_per_tensor, uint64_t seed);

/* Reports to stdout as "FD <label>: max error E over N elements (tol T)"
 * and fails the test if E > tol. The line is what the issue notes quote. */
void tu_fd_assert(const char *label, tu_fd_result r, double tol);

/* Skips the calling test under `make valgrind` (tests/run.sh then sets
 * CNNVIZ_UNDER_VALGRIND): for the long quality runs (hundreds of
 * optimization steps, an epoch of training), up to hours under memcheck. The lighter tests of the same program run the same code on
 * smaller inputs, and `make test SANITIZE=1` runs these under ASan. */
void tu_skip_under_valgrind(const char *what);

/* A scratch directory for a group of tests, made under /tmp as
 * /tmp/<prefix>XXXXXX (0, or -1: cmocka setup's convention), and removed
 * with all it holds (0 or -1: teardown's). */
/* Runs a shell command; returns its exit status (-1: it did not exit)
 * and, when out is not NULL, its stdout (owned by the caller). */
int tu_run(const char *cmd, char **out);

int tu_scratch_make(const char *prefix);
int tu_scratch_remove(void);
/* The directory, and the path of name in it (one of four buffers used in
 * turn, so a call may take several). */
const char *tu_scratch_dir(void);
const char *tu_scratch(const char *name);

#endif
