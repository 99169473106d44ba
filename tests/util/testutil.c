/* Shared test helpers: data, one-node models, finite-difference checks. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

void tu_rng_init(tu_rng *r, uint64_t seed)
{
    r->s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    if (!r->s)
        r->s = 1;
}

static uint64_t next_u64(tu_rng *r)
{
    uint64_t x = r->s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->s = x;
}

float tu_uniform(tu_rng *r, float lo, float hi)
{
    double u = (double)(next_u64(r) >> 11) / 9007199254740992.0;
    return (float)(lo + (hi - lo) * u);
}

void tu_fill(tu_rng *r, float *x, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = tu_uniform(r, lo, hi);
}

cnv_shape tu_shape(int ndim, ...)
{
    cnv_shape s;
    memset(&s, 0, sizeof s);
    s.ndim = ndim;
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim; i++)
        s.dims[i] = va_arg(ap, int);
    va_end(ap);
    return s;
}

cnv_attr tu_attr_int(const char *name, int64_t v)
{
    cnv_attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.type = CNV_ATTR_INT;
    a.i = v;
    return a;
}

cnv_attr tu_attr_float(const char *name, float v)
{
    cnv_attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.type = CNV_ATTR_FLOAT;
    a.f = v;
    return a;
}

cnv_attr tu_attr_ints(const char *name, int n, const int64_t *v)
{
    cnv_attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.type = CNV_ATTR_INTS;
    a.ints = v;
    a.n = n;
    return a;
}

cnv_attr tu_attr_string(const char *name, const char *v)
{
    cnv_attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.type = CNV_ATTR_STRING;
    a.s = v;
    return a;
}

cnv_model *tu_one_node(const char *op_type, int n_in, const tu_tensor *ins, int n_attrs,
                       const cnv_attr *attrs)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    const char *names[16];
    assert_true(n_in <= 16);
    for (int i = 0; i < n_in; i++) {
        names[i] = ins[i].name;
        if (!ins[i].name || !ins[i].name[0])
            continue;
        cnv_status st = ins[i].is_const
                            ? cnv_model_add_const(m, ins[i].name, CNV_FLOAT32, &ins[i].shape, ins[i].data)
                            : cnv_model_add_input(m, ins[i].name, &ins[i].shape);
        if (st != CNV_OK)
            fail_msg("building %s: %s", op_type, cnv_model_errmsg(m));
    }
    const char *out = "y";
    if (cnv_model_add_node(m, op_type, "node", n_in, names, 1, &out, n_attrs, attrs) != CNV_OK)
        fail_msg("adding %s: %s", op_type, cnv_model_errmsg(m));
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

cnv_session *tu_session(cnv_model *m, const float *const *data, uint64_t seed)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    int n = cnv_model_input_count(m);
    cnv_shape shapes[16];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++)
        assert_int_equal(cnv_model_input_shape(m, i, &shapes[i]), CNV_OK);
    if (cnv_session_plan_shapes(s, n, shapes) != CNV_OK)
        fail_msg("planning: %s", cnv_session_errmsg(s));
    tu_rng r;
    tu_rng_init(&r, seed);
    for (int i = 0; i < n; i++) {
        float *x;
        cnv_shape sh;
        assert_int_equal(cnv_session_tensor(s, cnv_model_input(m, i), &x, &sh), CNV_OK);
        int64_t count = cnv_shape_count(&sh);
        if (data && data[i])
            memcpy(x, data[i], (size_t)count * sizeof(float));
        else
            tu_fill(&r, x, count, -1.0f, 1.0f);
    }
    return s;
}

int tu_t(const cnv_session *s, const char *name)
{
    return cnv_model_tensor_index(cnv_session_model(s), name);
}

int tu_batch(cnv_session *s)
{
    cnv_shape sh;
    if (cnv_session_tensor(s, cnv_model_input(cnv_session_model(s), 0), NULL, &sh) != CNV_OK || sh.ndim < 1)
        return 0;
    return (int)sh.dims[0];
}

cnv_status tu_backward(cnv_session *s, const char *name, const float *seed)
{
    int t = tu_t(s, name);
    cnv_shape sh;
    size_t count = t >= 0 && cnv_session_tensor(s, t, NULL, &sh) == CNV_OK ? (size_t)cnv_shape_count(&sh) : 0;
    return cnv_session_backward(s, t, seed, count);
}

cnv_status tu_find_layer(const cnv_model *m, const char *text, const char **name, char *err, size_t errlen)
{
    int t = -1;
    cnv_status st = cnv_model_find_layer(m, text, &t, err, errlen);
    if (st == CNV_OK)
        *name = cnv_model_tensor_name(m, t);
    return st;
}

int tu_layer_names(const cnv_model *m, int max, const char **names)
{
    int n = cnv_model_layers(m, max, NULL), *t = calloc((size_t)n + 1, sizeof *t);
    assert_non_null(t);
    n = cnv_model_layers(m, max, t);
    for (int i = 0; names && i < n; i++)
        names[i] = cnv_model_tensor_name(m, t[i]);
    free(t);
    return n;
}

const char *tu_input_name(const cnv_model *m, int i)
{
    return cnv_model_tensor_name(m, cnv_model_input(m, i));
}

cnv_preprocess tu_pp(int c, int h, int w, const float *mean, const float *std)
{
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, c, h, w);
    for (int k = 0; k < c && k < CNV_MAX_CHANNELS; k++) {
        pp.mean[k] = mean ? mean[k] : 0.0f;
        pp.std[k] = std ? std[k] : 1.0f;
    }
    return pp;
}

/* The model's preprocessing with mean and std replaced (NULL: 0 and 1) and
 * the size replaced where h, w > 0; its channels from the input when the
 * model's own cannot be read. */
static cnv_preprocess viz_pp(const cnv_model *m, const float *mean, const float *std, int h, int w)
{
    cnv_preprocess pp;
    if (cnv_model_preprocess(m, &pp, NULL, 0) != CNV_OK) {
        cnv_shape in = {0};
        cnv_model_input_shape(m, 0, &in);
        cnv_preprocess_init(&pp, in.ndim == 4 ? (int)in.dims[1] : 0, 0, 0);
    }
    for (int k = 0; k < CNV_MAX_CHANNELS; k++) {
        pp.mean[k] = mean && k < pp.channels ? mean[k] : 0.0f;
        pp.std[k] = std && k < pp.channels ? std[k] : 1.0f;
    }
    if (h > 0)
        pp.height = h;
    if (w > 0)
        pp.width = w;
    return pp;
}

/* Floats of n images of pp's size (0 for n < 1). */
static size_t images_len(const cnv_preprocess *pp, int n)
{
    return n > 0 ? (size_t)n * (size_t)pp->channels * (size_t)pp->height * (size_t)pp->width : 0;
}

cnv_status tu_classmodel(cnv_session *s, const cnv_model *m, const float *mean, const float *std, int n,
                         const int *classes, const cnv_classmodel_params *p, float *images, float *scores,
                         float *probs)
{
    cnv_classmodel_params q = p ? *p : cnv_classmodel_params_default();
    cnv_preprocess pp = viz_pp(m, mean, std, q.height, q.width);
    q.preprocess = &pp;
    return cnv_classmodel(s, n, classes, &q, images, images_len(&pp, n), scores, probs);
}

cnv_status tu_fool(cnv_session *s, const cnv_model *m, const float *mean, const float *std, const float *image,
                   int h, int w, int target, const cnv_fool_params *p, float *fooled, float *last_delta,
                   float *sum_delta, cnv_fool_result *r)
{
    cnv_fool_params q = p ? *p : cnv_fool_params_default();
    cnv_preprocess pp = viz_pp(m, mean, std, h, w);
    q.preprocess = &pp;
    return cnv_fool(s, image, images_len(&pp, 1), h, w, target, &q, fooled, last_delta, sum_delta, r);
}

cnv_status tu_saliency(cnv_session *s, const cnv_model *m, const float *image, int h, int w,
                       const cnv_saliency_params *p, float *map, cnv_saliency_info *info)
{
    cnv_preprocess pp = viz_pp(m, NULL, NULL, h, w);
    return cnv_saliency(s, image, images_len(&pp, 1), h, w, p, map, h > 0 && w > 0 ? (size_t)h * w : 0, info);
}

cnv_status tu_neuron(cnv_session *s, const cnv_model *m, const float *mean, const float *std, int n,
                     const int *channels, const cnv_neuron_params *p, float *images, float *before, float *after)
{
    cnv_neuron_params q = p ? *p : cnv_neuron_params_default();
    cnv_preprocess pp = viz_pp(m, mean, std, q.height, q.width);
    q.preprocess = &pp;
    return cnv_neuron(s, n, channels, &q, images, images_len(&pp, n), before, after);
}

cnv_status tu_dream(cnv_session *s, const cnv_model *m, const float *mean, const float *std,
                    const cnv_dream_params *p, float *out, int *channels)
{
    cnv_dream_params q = p ? *p : cnv_dream_params_default();
    cnv_preprocess pp = viz_pp(m, mean, std, q.height, q.width);
    q.preprocess = &pp;
    return cnv_dream(s, &q, out, out ? images_len(&pp, 1) : 0, channels, channels ? q.frames : 0);
}

size_t tu_pp_len(const cnv_preprocess *pp)
{
    return pp && pp->channels > 0 && pp->height > 0 && pp->width > 0
               ? (size_t)pp->channels * (size_t)pp->height * (size_t)pp->width
               : 0;
}

cnv_status tu_to_image(const float *chw, int c, int h, int w, const float *mean, const float *std,
                       cnv_image *out, char *err, size_t errlen)
{
    cnv_preprocess pp = tu_pp(c, h, w, mean, std);
    return cnv_tensor_to_image(chw, &pp, h, w, out, err, errlen);
}

double tu_max_rel_diff(const float *a, const float *b, int64_t n, int64_t *at)
{
    double worst = 0.0;
    if (at)
        *at = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(d <= worst)) { /* also catches NaN */
            worst = isnan(d) ? INFINITY : d;
            if (at)
                *at = i;
        }
    }
    return worst;
}

/* f = sum(seed * T), accumulated in double, after a fresh forward. */
static double objective(cnv_session *s, const char *out, const float *seed, int64_t n)
{
    float *y;
    if (cnv_session_forward(s) != CNV_OK || cnv_session_tensor(s, tu_t(s, out), &y, NULL) != CNV_OK)
        fail_msg("forward: %s", cnv_session_errmsg(s));
    double f = 0.0;
    for (int64_t i = 0; i < n; i++)
        f += (double)seed[i] * (double)y[i];
    return f;
}

/* Compares the analytic gradient g of a tensor whose values x the check
 * may perturb in place. */
static void check_tensor(cnv_session *s, const char *out, const float *seed, int64_t n_out, float *x,
                         const float *g, int64_t count, double h, int max_n, tu_fd_result *r)
{
    int64_t step = count > max_n ? count / max_n : 1;
    for (int64_t i = 0; i < count; i += step) {
        float keep = x[i];
        x[i] = (float)(keep + h);
        double fp = objective(s, out, seed, n_out);
        x[i] = (float)(keep - h);
        double fm = objective(s, out, seed, n_out);
        x[i] = keep;
        /* the step actually taken in float, not the nominal h */
        double num = (fp - fm) / ((double)(float)(keep + h) - (double)(float)(keep - h));
        double err = fabs((double)g[i] - num) / fmax(1.0, fabs(num));
        if (!(err <= r->max_err))
            r->max_err = isnan(err) ? INFINITY : err;
        r->checked++;
    }
}

tu_fd_result tu_fd_check(cnv_session *s, cnv_model *m, const char *out, double h, int max_per_tensor,
                         uint64_t seed)
{
    tu_fd_result r = {0.0, 0};
    float *y;
    cnv_shape ysh;
    if (cnv_session_forward(s) != CNV_OK || cnv_session_tensor(s, tu_t(s, out), &y, &ysh) != CNV_OK)
        fail_msg("forward: %s", cnv_session_errmsg(s));
    int64_t n_out = cnv_shape_count(&ysh);
    float *sd = malloc((size_t)n_out * sizeof(float));
    assert_non_null(sd);
    tu_rng rng;
    tu_rng_init(&rng, seed);
    tu_fill(&rng, sd, n_out, -1.0f, 1.0f);
    if (cnv_session_backward(s, tu_t(s, out), sd, (size_t)n_out) != CNV_OK)
        fail_msg("backward: %s", cnv_session_errmsg(s));

    /* Keep copies of the analytic gradients: each probe's forward leaves
     * them alone, but tidy code should not rely on that. */
    int n_in = cnv_model_input_count(m), n_par = cnv_model_param_count(m);
    for (int k = 0; k < n_in + n_par; k++) {
        const char *name = k < n_in ? tu_input_name(m, k) : cnv_model_param_name(m, k - n_in);
        float *g, *x;
        cnv_shape sh;
        if (cnv_session_grad(s, tu_t(s, name), &g) != CNV_OK)
            continue; /* parameters when parameter gradients are off */
        if (k < n_in)
            assert_int_equal(cnv_session_tensor(s, tu_t(s, name), &x, &sh), CNV_OK);
        else
            assert_int_equal(cnv_model_param(m, name, &x, &sh), CNV_OK);
        int64_t count = cnv_shape_count(&sh);
        float *gc = malloc((size_t)count * sizeof(float) + 1);
        assert_non_null(gc);
        memcpy(gc, g, (size_t)count * sizeof(float));
        check_tensor(s, out, sd, n_out, x, gc, count, h, max_per_tensor, &r);
        free(gc);
    }
    free(sd);
    return r;
}

void tu_fd_assert(const char *label, tu_fd_result r, double tol)
{
    printf("FD %s: max error %.3g over %d elements (tol %.3g)\n", label, r.max_err, r.checked, tol);
    if (r.checked == 0)
        fail_msg("FD %s: nothing was checked", label);
    if (!(r.max_err <= tol))
        fail_msg("FD %s: max error %.3g exceeds %.3g", label, r.max_err, tol);
}

void tu_skip_under_valgrind(const char *what)
{
    const char *v = getenv("CNNVIZ_UNDER_VALGRIND");
    if (v && v[0] && strcmp(v, "0") != 0) {
        printf("skipped under valgrind: %s (runs in make test and make test SANITIZE=1)\n", what);
        skip();
    }
}

static char g_scratch[64];

int tu_scratch_make(const char *prefix)
{
    snprintf(g_scratch, sizeof g_scratch, "/tmp/%sXXXXXX", prefix);
    return mkdtemp(g_scratch) ? 0 : -1;
}

int tu_scratch_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_scratch);
    return g_scratch[0] && system(cmd) == 0 ? 0 : -1;
}

const char *tu_scratch_dir(void)
{
    return g_scratch;
}

const char *tu_scratch(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_scratch, name);
    return buf[k];
}

int tu_run(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0, k;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((k = fread(buf + len, 1, cap - 1 - len, p)) > 0) {
        len += k;
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
