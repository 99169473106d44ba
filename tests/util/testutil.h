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

#endif
