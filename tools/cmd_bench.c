/* cnnviz bench: time forward and forward + input gradient per iteration,
 * against the machine's floating-point peak on one core. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cli_common.h"

/* OpenBLAS's own: which kernels it runs (OPENBLAS_CORETYPE can pin them). */
char *openblas_get_corename(void);

static const char usage[] =
    "usage: cnnviz bench [-m MODEL] [--size HxW] [--batch N] [--threads T] [--iters N] [--json]\n"
    "                    [--profile]\n"
    "Times one forward pass and one forward + backward to the input (the\n"
    "gradient of one class score per image, parameters frozen): median,\n"
    "min and max milliseconds over N iterations (default 30) after 3 warm-up\n"
    "runs, the achieved GFLOP/s, and the process's peak resident memory.\n"
    "--profile then runs N more iterations timing every node, and prints\n"
    "the time per op type and the slowest nodes (forward and backward ms\n"
    "per iteration).\n"
    "It also measures one core's peak: independent fused multiply-adds on\n"
    "the widest vectors the CPU has (AVX-512, else AVX2), and prints what\n"
    "fraction of it (times the threads) the forward pass and the forward +\n"
    "gradient reach, counting 2 x the forward FLOPs for the latter (the\n"
    "backward to the input repeats each product once), and which kernels\n"
    "OpenBLAS runs.\n";

static double now_ms(void)
{
    return cli_now() * 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stats {
    double median, min, max;
} stats;

static stats summarize(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    stats s = {n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]), t[0], t[n - 1]};
    return s;
}

/* Peak resident memory of this program in MB: VmHWM, which starts afresh
 * at exec, unlike getrusage's ru_maxrss, which keeps the peak of the
 * process that forked us (a Python benchmark driver: hundreds of MB). */
static double peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1.0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6))
            kb = atof(line + 6);
    if (f)
        fclose(f);
    if (kb < 0.0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = (double)ru.ru_maxrss;
    }
    return kb / 1024.0;
}

/* Forward FLOPs of the multiply-add ops (2 per multiply-add) for this
 * input shape; 0 when they cannot be inferred. */
static double forward_flops(const cnv_model *m, const cnv_shape *in)
{
    int nt = cnv_model_tensor_count(m), nn = cnv_model_node_count(m);
    cnv_shape *shapes = malloc(((size_t)nt + 1) * sizeof *shapes);
    double *flops = malloc(((size_t)nn + 1) * sizeof *flops), total = 0.0;
    if (shapes && flops && cnv_model_infer_shapes(m, 1, in, shapes, nt, flops, nn, NULL, 0) == CNV_OK)
        for (int i = 0; i < nn; i++)
            total += flops[i];
    free(shapes);
    free(flops);
    return total;
}

/* The input every run sees: n fixed pseudo-random values in [-1, 1). */
static void fill_input(float *x, size_t n)
{
    uint32_t r = 12345;
    for (size_t i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)((r >> 8) / 16777216.0 * 2.0 - 1.0);
    }
}

/* Per-node times summed by op type, then the slowest nodes. */
static void print_profile(cnv_session *s, const cnv_model *m, int output, const float *seed, size_t n_seed,
                          int iters)
{
    cnv_session_set_profiling(s, 1);
    cnv_shape in;
    if (cnv_session_tensor(s, cnv_model_input(m, 0), NULL, &in) != CNV_OK ||
        cnv_session_plan_shapes(s, 1, &in) != CNV_OK) {
        cli_error("--profile: %s", cnv_session_errmsg(s));
        return;
    }
    /* the new plan's input is new memory: the same image again (a zero
     * image leaves most ReLUs off and the backward sparse) */
    fill_input(cnv_session_input(s), (size_t)cnv_shape_count(&in));
    int n = cnv_model_node_count(m);
    double tot_f = 0.0, tot_b = 0.0;
    enum { MAX_TYPES = 64 };
    const char *types[MAX_TYPES];
    double tf[MAX_TYPES] = {0}, tb[MAX_TYPES] = {0};
    int nt = 0, *order = malloc((size_t)n * sizeof *order);
    double *per = malloc((size_t)n * sizeof *per), *base = calloc((size_t)n * 2, sizeof *base);
    if (!order || !per || !base) {
        free(order), free(per), free(base);
        return;
    }
    /* the new plan's first passes touch its memory for the first time
     * (page faults: 10x a pass on MobileNetV2): warm up, then count from
     * there */
    for (int k = -3; k < iters; k++) {
        if (k == 0)
            for (int i = 0; i < n; i++)
                cnv_session_node_time(s, i, &base[2 * i], &base[2 * i + 1]);
        cnv_session_forward(s);
        cnv_session_backward(s, output, seed, n_seed);
    }
    for (int i = 0; i < n; i++) {
        double f = 0.0, b = 0.0;
        cnv_session_node_time(s, i, &f, &b);
        f = (f - base[2 * i]) * 1e3 / iters, b = (b - base[2 * i + 1]) * 1e3 / iters;
        tot_f += f, tot_b += b;
        per[i] = f + b;
        order[i] = i;
        const char *op = cnv_model_node_op(m, i);
        int t = 0;
        while (t < nt && strcmp(types[t], op))
            t++;
        if (t == nt && nt < MAX_TYPES)
            types[nt++] = op;
        if (t < nt)
            tf[t] += f, tb[t] += b;
    }
    printf("profile over %d iterations (ms per iteration; the timer adds a little per node):\n", iters);
    printf("  %-20s %9s %9s %9s %6s\n", "op", "forward", "backward", "total", "share");
    for (int t = 0; t < nt; t++)
        printf("  %-20s %9.3f %9.3f %9.3f %5.1f%%\n", types[t], tf[t], tb[t], tf[t] + tb[t],
               100.0 * (tf[t] + tb[t]) / (tot_f + tot_b));
    printf("  %-20s %9.3f %9.3f %9.3f\n", "all nodes", tot_f, tot_b, tot_f + tot_b);
    for (int i = 1; i < n; i++) /* insertion sort, slowest first */
        for (int j = i; j > 0 && per[order[j]] > per[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    printf("  slowest nodes:\n");
    for (int k = 0; k < n && k < 12; k++) {
        int i = order[k];
        double f = 0.0, b = 0.0;
        cnv_session_node_time(s, i, &f, &b);
        f -= base[2 * i], b -= base[2 * i + 1];
        cnv_shape y;
        char buf[64] = "?";
        if (cnv_session_tensor(s, cnv_model_node_output(m, i), NULL, &y) == CNV_OK)
            for (int d = 0, len = 0; d < y.ndim && len < (int)sizeof buf - 24; d++)
                len += snprintf(buf + len, sizeof buf - (size_t)len, d ? "x%lld" : "%lld",
                                (long long)y.dims[d]);
        printf("  %3d %-12s %-18s %8.3f %8.3f  %s\n", i, cnv_model_node_op(m, i), buf, f * 1e3 / iters,
               b * 1e3 / iters, cnv_model_node_name(m, i));
    }
    free(order), free(per), free(base);
}


/* ------------------------------------------------------------ FMA peak */

#if defined(__x86_64__)
/* n rounds of 16 independent accumulators, each a fused multiply-add per
 * round: enough in flight to cover the FMA latency on two ports. */
__attribute__((target("avx512f"))) static float fma_avx512(long n)
{
    __m512 a[16], m = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 16; i++)
        a[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 16; i++)
            a[i] = _mm512_fmadd_ps(a[i], m, b);
    __m512 s = a[0];
    for (int i = 1; i < 16; i++)
        s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_avx2(long n)
{
    __m256 a[12], m = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_ps((float)i);
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_fmadd_ps(a[i], m, b);
    __m256 s = a[0];
    for (int i = 1; i < 12; i++)
        s = _mm256_add_ps(s, a[i]);
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[7];
}
#endif

/* One core's single-precision peak in GFLOP/s (best of 5 runs of about 20
 * ms), and the instruction set it used; 0 where neither exists. */
static double fma_peak(const char **isa)
{
    *isa = "none";
#if defined(__x86_64__)
    int wide = __builtin_cpu_supports("avx512f");
    if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        return 0.0;
    *isa = wide ? "AVX-512" : "AVX2+FMA";
    double flop_per_round = wide ? 16 * 16 * 2 : 12 * 8 * 2, best = 0.0;
    long n = 1000000;
    volatile float sink = 0.0f;
    for (int r = 0; r < 5; r++) {
        double t0 = cli_now();
        sink += wide ? fma_avx512(n) : fma_avx2(n);
        double dt = cli_now() - t0;
        double g = flop_per_round * (double)n / dt / 1e9;
        best = g > best ? g : best;
    }
    (void)sink;
    return best;
#else
    return 0.0;
#endif
}

int cmd_bench(int argc, char **argv)
{
    cli_model_opts mo = {0};
    int json = 0, batch = 1, iters = 30, profile = 0;
    const cli_opt opts[] = {
        CLI_OPT_INT("--batch", &batch, 1, INT_MAX),
        CLI_OPT_INT("--iters", &iters, 1, INT_MAX),
        CLI_OPT_SET("--json", &json),
        CLI_OPT_SET("--profile", &profile),
        {0},
    };
    const cli_spec spec = {"bench", usage, &mo, opts, NULL, 0};
    int rc = cli_parse(argc, argv, &spec, NULL);
    if (rc != CLI_RUN)
        return rc;
    cli_model cm;
    if ((rc = cli_model_open(&mo, &cm)) != 0)
        return rc;
    int threads = cnv_get_threads(); /* --threads, CNNVIZ_NUM_THREADS or all cores */
    cnv_session *s = NULL;
    cnv_status st = cnv_session_create(cm.model, &s);
    if (st == CNV_OK)
        st = cnv_session_plan(s, batch, cm.height, cm.width);
    float *y = NULL;
    cnv_shape ysh;
    if (st == CNV_OK)
        st = cnv_session_forward(s);
    if (st == CNV_OK)
        st = cnv_session_tensor(s, cm.output, &y, &ysh);
    if (st != CNV_OK) {
        cli_error("%s", s ? cnv_session_errmsg(s) : cnv_status_string(st));
        cnv_session_free(s);
        cli_model_close(&cm);
        return 1;
    }
    /* a fixed pseudo-random input; one class score per image as the seed */
    size_t n_in = (size_t)batch * cm.channels * cm.height * cm.width;
    fill_input(cnv_session_input(s), n_in);
    int64_t ny = cnv_shape_count(&ysh);
    float *seed = calloc((size_t)ny, sizeof *seed);
    double *tf = calloc((size_t)iters, sizeof *tf), *tb = calloc((size_t)iters, sizeof *tb);
    if (!seed || !tf || !tb) {
        free(seed), free(tf), free(tb);
        cnv_session_free(s);
        cli_model_close(&cm);
        return cli_error("out of memory");
    }
    int per = (int)(ny / batch);
    for (int b = 0; b < batch; b++)
        seed[(size_t)b * per + b % per] = 1.0f;
    for (int k = -3; k < iters; k++) {
        double t0 = now_ms();
        cnv_session_forward(s);
        double t1 = now_ms();
        cnv_session_forward(s);
        cnv_session_backward(s, cm.output, seed, (size_t)ny);
        double t2 = now_ms();
        if (k >= 0) {
            tf[k] = t1 - t0;
            tb[k] = t2 - t1;
        }
    }
    stats f = summarize(tf, iters), fb = summarize(tb, iters);
    cnv_shape in;
    cnv_session_tensor(s, cnv_model_input(cm.model, 0), NULL, &in);
    double gflop = forward_flops(cm.model, &in) / 1e9;
    double rss_mb = peak_rss_mb();
    const char *isa, *core = openblas_get_corename();
    double peak = fma_peak(&isa), fwd_gflops = gflop / (f.median / 1e3), fb_gflops = 2.0 * gflop / (fb.median / 1e3);
    double fwd_frac = peak > 0.0 ? fwd_gflops / (peak * threads) : 0.0, fb_frac = peak > 0.0 ? fb_gflops / (peak * threads) : 0.0;
    if (json) {
        printf("{\"model\": ");
        cli_json_string(stdout, cm.path);
        printf(", \"size\": [%d, %d], \"batch\": %d, \"threads\": %d, \"iters\": %d, "
               "\"forward_ms\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f}, "
               "\"forward_backward_ms\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f}, "
               "\"forward_gflop\": %.4f, \"forward_gflops\": %.2f, \"peak_rss_mb\": %.1f, "
               "\"fma_peak_gflops\": %.1f, \"fma_isa\": \"%s\", \"forward_peak_fraction\": %.3f, "
               "\"forward_backward_peak_fraction\": %.3f, \"openblas_core\": ",
               cm.height, cm.width, batch, threads, iters, f.median, f.min, f.max, fb.median, fb.min, fb.max,
               gflop, fwd_gflops, rss_mb, peak, isa, fwd_frac, fb_frac);
        cli_json_string(stdout, core ? core : "?");
        printf("}\n");
    } else {
        printf("%s at %dx%d, batch %d, threads %d, %d iterations\n", cm.path, cm.height, cm.width, batch,
               threads, iters);
        printf("  forward             median %8.3f ms  (min %.3f, max %.3f)  %.1f GFLOP/s\n", f.median, f.min,
               f.max, gflop / (f.median / 1e3));
        printf("  forward + input grad median %7.3f ms  (min %.3f, max %.3f)\n", fb.median, fb.min, fb.max);
        printf("  %.3f GFLOP per forward pass; peak RSS %.1f MB\n", gflop, rss_mb);
        if (peak > 0.0)
            printf("  one core's peak (%s FMA) %.1f GFLOP/s: forward at %.0f%%, forward + grad at %.0f%% of %d x it\n",
                   isa, peak, 100.0 * fwd_frac, 100.0 * fb_frac, threads);
        printf("  OpenBLAS kernels: %s\n", core ? core : "?");
    }
    if (profile)
        print_profile(s, cm.model, cm.output, seed, (size_t)ny, iters);
    free(seed), free(tf), free(tb);
    cnv_session_free(s);
    cli_model_close(&cm);
    return 0;
}
