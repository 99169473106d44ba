/* The core modules every layer shares (src/core): the string map against a
 * plain reference under random puts and deletes, the two random streams
 * against splitmix64's published values, whole-file reads (caps, pipes,
 * directories, the NUL after the data), atomic writes, and log-sum-exp /
 * softmax against closed forms. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "core/file.h"
#include "core/numeric.h"
#include "core/rng.h"
#include "core/strmap.h"

/* ----------------------------------------------------------------- strmap */

enum { N_KEYS = 3000 };

/* Random puts, overwrites and deletes (which move entries back along
 * their probe chains) against an array that knows the truth. */
static void strmap_matches_reference(void **state)
{
    (void)state;
    static char keys[N_KEYS][16];
    int truth[N_KEYS];
    for (int i = 0; i < N_KEYS; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i * 7919 % 100003);
        truth[i] = -1;
    }
    cnv_strmap m = {0};
    tu_rng r;
    tu_rng_init(&r, 5);
    int present = 0;
    for (int step = 0; step < 40000; step++) {
        int k = (int)(tu_uniform(&r, 0.0f, 1.0f) * N_KEYS) % N_KEYS;
        float op = tu_uniform(&r, 0.0f, 1.0f);
        if (op < 0.6f) {
            present += truth[k] < 0;
            truth[k] = step;
            assert_int_equal(cnv_strmap_put(&m, keys[k], step), 1);
        } else {
            present -= truth[k] >= 0;
            truth[k] = -1;
            cnv_strmap_del(&m, keys[k]);
        }
        if (step % 997 == 0)
            for (int i = 0; i < N_KEYS; i++)
                assert_int_equal(cnv_strmap_get(&m, keys[i]), truth[i]);
    }
    for (int i = 0; i < N_KEYS; i++)
        assert_int_equal(cnv_strmap_get(&m, keys[i]), truth[i]);
    assert_int_equal((int)m.n, present);
    printf("strmap: %d keys present after 40000 random operations, capacity %zu\n", present, m.cap);
    assert_int_equal(cnv_strmap_get(&m, "absent"), -1);
    cnv_strmap_free(&m);
    cnv_strmap empty = {0};
    assert_int_equal(cnv_strmap_get(&empty, "x"), -1);
    cnv_strmap_del(&empty, "x");
}

/* A model of many names builds in time linear in their number: 100,000
 * tensors through the public builder, each looked up once more. */
static void model_name_index(void **state)
{
    (void)state;
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape s = tu_shape(1, 1);
    const float one = 1.0f;
    char name[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(name, sizeof name, "c%d", i);
        assert_int_equal(cnv_model_add_const(m, name, CNV_FLOAT32, &s, &one), CNV_OK);
    }
    for (int i = 0; i < 100000; i += 7) {
        snprintf(name, sizeof name, "c%d", i);
        assert_int_equal(cnv_model_tensor_index(m, name), i);
    }
    assert_int_equal(cnv_model_tensor_index(m, "c100000"), -1);
    assert_int_equal(cnv_model_add_const(m, "c5", CNV_FLOAT32, &s, &one), CNV_ERR_INVALID_ARG);
    for (int i = 0; i < 1000; i++) {
        char key[32], value[32];
        snprintf(key, sizeof key, "key%d", i);
        snprintf(value, sizeof value, "v%d", i);
        assert_int_equal(cnv_model_set_meta(m, key, value), CNV_OK);
    }
    assert_int_equal(cnv_model_set_meta(m, "key7", "again"), CNV_OK);
    assert_string_equal(cnv_model_get_meta(m, "key7"), "again");
    assert_string_equal(cnv_model_get_meta(m, "key999"), "v999");
    assert_null(cnv_model_get_meta(m, "key1000"));
    cnv_model_free(m);
}

/* -------------------------------------------------------------------- rng */

/* splitmix64 from state 0: the first outputs of the reference
 * implementation (Vigna's splitmix64.c, as quoted in many test suites). */
static void splitmix64_reference(void **state)
{
    (void)state;
    uint64_t s = 0;
    assert_true(cnv_splitmix64(&s) == 0xe220a8397b1dcdafULL);
    assert_true(cnv_splitmix64(&s) == 0x6e789e6aa1b965f4ULL);
    assert_true(cnv_splitmix64(&s) == 0x06c45d188009454fULL);
    assert_true(cnv_splitmix64(&s) == 0xf88bb8a8724c81ecULL);
    /* below: every value in range, each of 0..6 taken */
    int seen[7] = {0};
    s = 42;
    for (int i = 0; i < 7000; i++) {
        uint64_t v = cnv_splitmix64_below(&s, 7);
        assert_true(v < 7);
        seen[v]++;
    }
    for (int k = 0; k < 7; k++)
        assert_true(seen[k] > 800 && seen[k] < 1200);
    /* normal: mean 0, variance 1 within a few standard errors */
    double sum = 0, sum2 = 0;
    s = 7;
    for (int i = 0; i < 100000; i++) {
        double v = cnv_splitmix64_normal(&s);
        assert_true(isfinite(v));
        sum += v;
        sum2 += v * v;
    }
    double mean = sum / 1e5, var = sum2 / 1e5 - mean * mean;
    printf("splitmix64 normal: mean %.4f, variance %.4f over 100000\n", mean, var);
    assert_true(fabs(mean) < 0.02 && fabs(var - 1.0) < 0.03);
}

/* xorshift64*'s normals over many draws, and seeding by item. */
static void xorshift_normal(void **state)
{
    (void)state;
    cnv_rng r;
    cnv_rng_seed(&r, 3);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < 100000; i++) {
        double v = cnv_rng_normal(&r);
        sum += v;
        sum2 += v * v;
    }
    double mean = sum / 1e5, var = sum2 / 1e5 - mean * mean;
    printf("xorshift64* normal: mean %.4f, variance %.4f over 100000\n", mean, var);
    assert_true(fabs(mean) < 0.02 && fabs(var - 1.0) < 0.03);
}

/* ------------------------------------------------------------------- file */

static void read_file_caps(void **state)
{
    (void)state;
    const char *p = tu_scratch("ten.bin");
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fwrite("0123456789", 1, 10, f);
    fclose(f);
    void *data;
    size_t size;
    cnv_err e;
    assert_int_equal(cnv_read_file(p, 10, &data, &size, &e), CNV_OK);
    assert_int_equal(size, 10);
    assert_memory_equal(data, "0123456789", 11); /* and the NUL after it */
    cnv_free(data);
    assert_int_equal(cnv_read_file(p, 9, &data, &size, &e), CNV_ERR_UNSUPPORTED);
    printf("9-byte cap: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "ten.bin"));
    assert_null(data);
    /* empty file: zero bytes, still terminated */
    p = tu_scratch("empty.bin");
    f = fopen(p, "wb");
    fclose(f);
    assert_int_equal(cnv_read_file(p, 10, &data, &size, &e), CNV_OK);
    assert_int_equal(size, 0);
    assert_int_equal(((char *)data)[0], 0);
    cnv_free(data);
    /* a directory, a device, a missing file */
    assert_int_equal(cnv_read_file(tu_scratch_dir(), 10, &data, &size, &e), CNV_ERR_IO);
    assert_non_null(strstr(e.msg, "directory"));
    assert_int_equal(cnv_read_file("/dev/zero", 10, &data, &size, &e), CNV_ERR_IO);
    assert_non_null(strstr(e.msg, "not a regular file"));
    assert_int_equal(cnv_read_file(tu_scratch("missing"), 10, &data, &size, &e), CNV_ERR_IO);
}

/* A pipe of unknown length is read to its end, across buffer growths, and
 * one longer than the cap is refused. */
static void read_file_pipe(void **state)
{
    (void)state;
    for (int over = 0; over < 2; over++) {
        const char *p = tu_scratch(over ? "fifo2" : "fifo1");
        assert_int_equal(mkfifo(p, 0600), 0);
        const size_t n = 300000;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int fd = open(p, O_WRONLY);
            unsigned char buf[1000];
            for (size_t done = 0; fd >= 0 && done < n; done += sizeof buf) {
                for (size_t i = 0; i < sizeof buf; i++)
                    buf[i] = (unsigned char)((done + i) * 31);
                if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
                    break;
            }
            _exit(0);
        }
        void *data;
        size_t size;
        cnv_err e;
        cnv_status st = cnv_read_file(p, over ? n - 1 : n, &data, &size, &e);
        if (over) {
            assert_int_equal(st, CNV_ERR_UNSUPPORTED);
        } else {
            assert_int_equal(st, CNV_OK);
            assert_int_equal(size, n);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(((unsigned char *)data)[i], (unsigned char)(i * 31));
            cnv_free(data);
        }
        int status;
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
}

/* The temporary appears beside the destination and becomes it on commit;
 * an abort leaves nothing. */
static void tmpfile_commit_abort(void **state)
{
    (void)state;
    cnv_tmpfile t;
    cnv_err e;
    const char *p = tu_scratch("out.txt");
    assert_int_equal(cnv_tmpfile_open(&t, p, &e), CNV_OK);
    assert_non_null(strstr(t.tmp_path, ".tmp"));
    assert_int_not_equal(access(p, F_OK), 0);
    fputs("hello", t.f);
    assert_int_equal(cnv_tmpfile_commit(&t, &e), CNV_OK);
    void *data;
    size_t size;
    assert_int_equal(cnv_read_file(p, 100, &data, &size, &e), CNV_OK);
    assert_string_equal(data, "hello");
    cnv_free(data);
    assert_int_equal(cnv_tmpfile_open(&t, p, &e), CNV_OK);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s", t.tmp_path);
    fputs("bye", t.f);
    cnv_tmpfile_abort(&t);
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(cnv_read_file(p, 100, &data, &size, &e), CNV_OK);
    assert_string_equal(data, "hello");
    cnv_free(data);
    assert_int_equal(cnv_tmpfile_open(&t, tu_scratch("no/such/dir/x"), &e), CNV_ERR_IO);
    assert_int_equal(cnv_tmpfile_open(&t, "", &e), CNV_ERR_INVALID_ARG);
}

/* ---------------------------------------------------------------- numeric */

static void softmax_closed_forms(void **state)
{
    (void)state;
    /* log(e^1 + e^2 + e^3) = 3 + log(1 + e^-1 + e^-2) */
    const float z[3] = {1, 2, 3};
    double want = 3.0 + log(1.0 + exp(-1.0) + exp(-2.0));
    assert_true(fabs(cnv_logsumexp(z, 3, 1) - want) < 1e-12);
    float p[3];
    cnv_softmax(z, 3, p);
    for (int i = 0; i < 3; i++)
        assert_true(fabs(p[i] - exp(z[i] - want)) < 1e-7);
    /* large values do not overflow, a stride skips */
    const float big[6] = {1000, -1, 1000, -1, 1000, -1};
    assert_true(fabs(cnv_logsumexp(big, 3, 2) - (1000.0 + log(3.0))) < 1e-9);
    float q[6];
    cnv_softmax_strided(big, 3, 2, q);
    for (int i = 0; i < 3; i++)
        assert_true(fabs(q[2 * i] - 1.0 / 3.0) < 1e-7);
    /* in place, -inf gives 0, NaN spreads */
    float r[3] = {0.0f, -INFINITY, 0.0f};
    cnv_softmax(r, 3, r);
    assert_true(r[0] == 0.5f && r[1] == 0.0f && r[2] == 0.5f);
    float n[2] = {NAN, 1.0f};
    cnv_softmax(n, 2, n);
    assert_true(isnan(n[0]) && isnan(n[1]));
    /* argmax: the first of equal values */
    const float a[4] = {1, 3, 3, 2};
    assert_int_equal(cnv_argmax(a, 4), 1);
    cnv_softmax(NULL, 3, p); /* no-op */
}

static int setup(void **state)
{
    (void)state;
    return tu_scratch_make("cnv_test_core_");
}

static int teardown(void **state)
{
    (void)state;
    return tu_scratch_remove();
}

/* cnv_exp against exp() in double at every 64th float of the normal
 * range of results, and at its edges. */
static void exp_against_libm(void **state)
{
    (void)state;
    double worst = 0.0;
    float at = 0.0f;
    long n = 0;
    for (float x = -87.3f; x < 88.72f; x = nextafterf(x, 100.0f)) {
        if (n++ % 64)
            continue;
        double want = exp((double)x), e = fabs(cnv_exp(x) - want) / want;
        if (e > worst)
            worst = e, at = x;
    }
    printf("cnv_exp: worst relative error %.3g (at %g) over %ld values\n", worst, (double)at, n / 64);
    assert_true(worst < 2.5e-7);
    assert_true(cnv_exp(0.0f) == 1.0f);
    assert_true(isinf(cnv_exp(88.73f)) && isinf(cnv_exp(1e30f)) && isinf(cnv_exp(INFINITY)));
    assert_true(cnv_exp(88.72f) > 3.3e38f && !isinf(cnv_exp(88.72f)));
    assert_true(cnv_exp(-104.5f) == 0.0f && cnv_exp(-INFINITY) == 0.0f);
    assert_true(cnv_exp(-100.0f) > 0.0f && cnv_exp(-100.0f) < 1e-43f);
    assert_true(isnan(cnv_exp(NAN)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strmap_matches_reference),
        cmocka_unit_test(model_name_index),
        cmocka_unit_test(splitmix64_reference),
        cmocka_unit_test(xorshift_normal),
        cmocka_unit_test(read_file_caps),
        cmocka_unit_test(read_file_pipe),
        cmocka_unit_test(tmpfile_commit_abort),
        cmocka_unit_test(softmax_closed_forms),
        cmocka_unit_test(exp_against_libm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
