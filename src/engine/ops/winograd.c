/* F(4x4, 3x3) Winograd correlation (see winograd.h).
 *
 * With d a 6x6 input tile, g a 3x3 kernel and Y its 4x4 outputs,
 * Y = A^T [(G g G^T) .* (B^T d B)] A. Summed over input channels, the
 * element-wise product at each of the 36 points is a matrix product:
 * M[p] (out x tiles) = U[p] (out x in) V[p] (in x tiles). The three are
 * stored channel by channel, U as [o][p][i], V as [i][p][t], M as
 * [o][p][t], so that a transform reads or writes one contiguous block per
 * channel (36 planes apart it was a cache miss per run); the GEMMs take
 * them with leading dimensions of 36 rows. The transforms run on NB
 * tiles (or channels) at once, each value of a 6x6 array a run of NB
 * floats, so that GCC vectorizes every line across tiles; they are
 * compiled for AVX-512, AVX2 and the baseline (CNV_CLONES), and give the
 * same bits at each (no fused multiply-adds, the same order). */
#include "engine/ops/winograd.h"

#include <string.h>

#include "core/cpu.h"

#define NB 16 /* tiles or channels per run */
#define P36 36

int cnv_wino_geom_init(cnv_wino_geom *g, int64_t in, int64_t out, int64_t h, int64_t w, int64_t oh, int64_t ow,
                       int64_t pt, int64_t pl, int64_t block)
{
    int64_t tiles, t;
    memset(g, 0, sizeof *g);
    if (in < 1 || out < 1 || oh < 1 || ow < 1 || !cnv_mul_i64((oh + 3) / 4, (ow + 3) / 4, &tiles) ||
        tiles > CNV_MAX_ELEMS)
        return 0;
    if (block <= 0 || block > tiles)
        block = tiles;
    /* 36 (out x in) weights, 36 (in x block) tiles, 36 (out x block)
     * products: each a count of floats and a BLAS int */
    if (!cnv_mul_i64(in, out, &t) || !cnv_mul_i64(t, P36, &t) || t > CNV_MAX_ELEMS ||
        !cnv_mul_i64(in + out, block, &t) || !cnv_mul_i64(t, P36, &t) || t > CNV_MAX_ELEMS)
        return 0;
    *g = (cnv_wino_geom){ .in = in, .out = out, .h = h, .w = w, .oh = oh, .ow = ow, .pt = pt, .pl = pl,
                          .tiles_w = (ow + 3) / 4, .tiles = tiles, .block = block };
    return 1;
}

int64_t cnv_wino_weights_size(const cnv_wino_geom *g)
{
    return P36 * g->out * g->in;
}

int64_t cnv_wino_image_size(const cnv_wino_geom *g)
{
    return P36 * (g->in + g->out) * g->block;
}

/* ------------------------------------------------------------ transforms */

/* The rows of 6 G (6x3) applied to three runs at stride gs: o[k * os] for
 * k < 6. G's entries are sixths; 6 G's are 3/2, 1, 1/2, 1/4 and 6, exact
 * in binary, so only the additions round here, and the products carry
 * the 1/36 (the GEMMs' alpha). */
static inline void g_rows(const float *restrict g, int gs, float *restrict o, int os)
{
    for (int b = 0; b < NB; b++) {
        float g0 = g[b], g1 = g[gs + b], g2 = g[2 * gs + b];
        float even = g0 + g2, q = 0.25f * g0 + g2;
        o[b] = 1.5f * g0;
        o[os + b] = -(even + g1);
        o[2 * os + b] = -(even - g1);
        o[3 * os + b] = q + 0.5f * g1;
        o[4 * os + b] = q - 0.5f * g1;
        o[5 * os + b] = 6.0f * g2;
    }
}

/* The rows of B^T (6x6) applied to six runs. */
static inline void bt_rows(const float *restrict d, int ds, float *restrict o, int os)
{
    for (int b = 0; b < NB; b++) {
        float d0 = d[b], d1 = d[ds + b], d2 = d[2 * ds + b], d3 = d[3 * ds + b], d4 = d[4 * ds + b],
              d5 = d[5 * ds + b];
        o[b] = (4.0f * d0 - 5.0f * d2) + d4;
        o[os + b] = (d3 + d4) - 4.0f * (d1 + d2);
        o[2 * os + b] = (d4 - d3) + 4.0f * (d1 - d2);
        o[3 * os + b] = (d4 - d2) + 2.0f * (d3 - d1);
        o[4 * os + b] = (d4 - d2) - 2.0f * (d3 - d1);
        o[5 * os + b] = (4.0f * d1 - 5.0f * d3) + d5;
    }
}

/* The rows of A^T (4x6) applied to six runs. */
static inline void at_rows(const float *restrict m, int ms, float *restrict o, int os)
{
    for (int b = 0; b < NB; b++) {
        float m0 = m[b], m1 = m[ms + b], m2 = m[2 * ms + b], m3 = m[3 * ms + b], m4 = m[4 * ms + b],
              m5 = m[5 * ms + b];
        float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
        o[b] = (m0 + s12) + s34;
        o[os + b] = d12 + 2.0f * d34;
        o[2 * os + b] = s12 + 4.0f * s34;
        o[3 * os + b] = (d12 + 8.0f * d34) + m5;
    }
}

/* dst[p * stride + b] = r[p][b] for b < n: whole runs of NB as one
 * vector loop (a memcpy call per 64 bytes costs more than the copy). */
static inline void store_runs(float *restrict dst, int64_t stride, float r[P36][NB], int n)
{
    if (n == NB) {
        for (int p = 0; p < P36; p++)
            for (int b = 0; b < NB; b++)
                dst[p * stride + b] = r[p][b];
        return;
    }
    for (int p = 0; p < P36; p++)
        for (int b = 0; b < n; b++)
            dst[p * stride + b] = r[p][b];
}

/* r[p][b] = src[p * stride + b] for b < n, 0 for the others */
static inline void load_runs(const float *restrict src, int64_t stride, float r[P36][NB], int n)
{
    if (n == NB) {
        for (int p = 0; p < P36; p++)
            for (int b = 0; b < NB; b++)
                r[p][b] = src[p * stride + b];
        return;
    }
    for (int p = 0; p < P36; p++)
        for (int b = 0; b < NB; b++)
            r[p][b] = b < n ? src[p * stride + b] : 0.0f;
}

/* --------------------------------------------------------------- weights */

/* Output channel o: U[o][p][i] = (6G k 6G^T)[p] for every input channel
 * i, NB channels at a time; u is U[o]. */
CNV_CLONES static void weights_channel(const cnv_wino_geom *g, const float *k, int64_t si, int flip,
                                       float *restrict u)
{
    float kk[9][NB], t[6 * 3][NB], r[P36][NB];
    for (int64_t i0 = 0; i0 < g->in; i0 += NB) {
        int n = g->in - i0 < NB ? (int)(g->in - i0) : NB;
        for (int b = 0; b < NB; b++)
            for (int q = 0; q < 9; q++)
                kk[q][b] = b < n ? k[(i0 + b) * si + (flip ? 8 - q : q)] : 0.0f;
        for (int j = 0; j < 3; j++) /* columns of k: t = G k */
            g_rows(kk[j], 3 * NB, t[j], 3 * NB);
        for (int a = 0; a < 6; a++) /* rows of t: r = t G^T */
            g_rows(t[a * 3], NB, r[a * 6], NB);
        store_runs(u + i0, g->in, r, n);
    }
}

void cnv_wino_weights(const cnv_wino_geom *g, const float *k, int64_t so, int64_t si, int flip, float *u,
                      int64_t o0, int64_t o1)
{
    for (int64_t o = o0; o < o1; o++)
        weights_channel(g, k + o * so, si, flip, u + o * P36 * g->in);
}

/* ----------------------------------------------------------------- image */

typedef struct wino_job {
    const cnv_wino_geom *g;
    const float *u, *x, *bias;
    float *y, *v, *m;
    int store;
    cnv_wino_done_fn done;
    void *arg;
    int64_t t0, t1; /* this pass's tiles */
} wino_job;

/* d[a * 6 + c][b] = sample (a, c) of tile t0 + b of plane x, 0 outside
 * it and for b >= n. */
static void gather(const cnv_wino_geom *g, const float *x, int64_t t0, int n, float d[P36][NB])
{
    for (int b = 0; b < NB; b++) {
        if (b >= n) {
            for (int q = 0; q < P36; q++)
                d[q][b] = 0.0f;
            continue;
        }
        int64_t t = t0 + b, r0 = t / g->tiles_w * 4 - g->pt, c0 = t % g->tiles_w * 4 - g->pl;
        if (r0 >= 0 && r0 + 6 <= g->h && c0 >= 0 && c0 + 6 <= g->w) {
            const float *s = x + r0 * g->w + c0;
            for (int a = 0; a < 6; a++)
                for (int c = 0; c < 6; c++)
                    d[a * 6 + c][b] = s[a * g->w + c];
            continue;
        }
        for (int a = 0; a < 6; a++) {
            int64_t r = r0 + a;
            for (int c = 0; c < 6; c++) {
                int64_t col = c0 + c;
                d[a * 6 + c][b] = r >= 0 && r < g->h && col >= 0 && col < g->w ? x[r * g->w + col] : 0.0f;
            }
        }
    }
}

/* Input channels [lo, hi): V[i][p][t - t0] = (B^T d B)[p] of every tile
 * t of the pass. */
CNV_CLONES static void input_part(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const wino_job *j = arg;
    const cnv_wino_geom *g = j->g;
    float d[P36][NB], t[P36][NB], r[P36][NB];
    int64_t plane = g->h * g->w;
    for (int64_t i = lo; i < hi; i++) {
        float *v = j->v + i * P36 * g->block;
        for (int64_t s = j->t0; s < j->t1; s += NB) {
            int n = j->t1 - s < NB ? (int)(j->t1 - s) : NB;
            gather(g, j->x + i * plane, s, n, d);
            for (int c = 0; c < 6; c++) /* columns: t = B^T d */
                bt_rows(d[c], 6 * NB, t[c], 6 * NB);
            for (int a = 0; a < 6; a++) /* rows: r = t B */
                bt_rows(t[a * 6], NB, r[a * 6], NB);
            store_runs(v + (s - j->t0), g->block, r, n);
        }
    }
}

/* Points [lo, hi): M[p] = U[p] V[p] / 36 (see g_rows), each one
 * single-threaded BLAS call. */
static void gemm_part(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const wino_job *j = arg;
    const cnv_wino_geom *g = j->g;
    int O = (int)g->out, I = (int)g->in, T = (int)(j->t1 - j->t0), ld = (int)(P36 * g->block);
    for (int64_t p = lo; p < hi; p++)
        cnv_sgemm(NULL, 0, 0, O, T, I, 1.0f / 36.0f, j->u + p * g->in, P36 * I, j->v + p * g->block, ld, 0.0f,
                  j->m + p * g->block, ld);
}

/* Output channels [lo, hi): each tile's 4x4 block (A^T M[o] A + bias)
 * into y, clipped at the plane's edges; the done hook after the last
 * pass. */
CNV_CLONES static void output_part(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const wino_job *j = arg;
    const cnv_wino_geom *g = j->g;
    float m[P36][NB], t[4 * 6][NB], r[16][NB];
    int64_t plane = g->oh * g->ow;
    for (int64_t o = lo; o < hi; o++) {
        const float *mo = j->m + o * P36 * g->block;
        float *y = j->y + o * plane, bias = j->bias ? j->bias[o] : 0.0f;
        for (int64_t s = j->t0; s < j->t1; s += NB) {
            int n = j->t1 - s < NB ? (int)(j->t1 - s) : NB;
            load_runs(mo + (s - j->t0), g->block, m, n);
            for (int c = 0; c < 6; c++) /* columns: t = A^T m */
                at_rows(m[c], 6 * NB, t[c], 6 * NB);
            for (int a = 0; a < 4; a++) /* rows: r = t A */
                at_rows(t[a * 6], NB, r[a * 4], NB);
            for (int q = 0; q < 16; q++)
                for (int b = 0; b < NB; b++)
                    r[q][b] += bias;
            for (int b = 0; b < n; b++) {
                int64_t tt = s + b, r0 = tt / g->tiles_w * 4, c0 = tt % g->tiles_w * 4;
                int rows = g->oh - r0 < 4 ? (int)(g->oh - r0) : 4, cols = g->ow - c0 < 4 ? (int)(g->ow - c0) : 4;
                float *dst = y + r0 * g->ow + c0;
                for (int a = 0; a < rows; a++)
                    for (int c = 0; c < cols; c++) {
                        if (j->store)
                            dst[a * g->ow + c] = r[a * 4 + c][b];
                        else
                            dst[a * g->ow + c] += r[a * 4 + c][b];
                    }
            }
        }
        if (j->done && j->t1 == g->tiles)
            j->done(j->arg, o);
    }
}

void cnv_wino_image(const cnv_wino_geom *g, cnv_team *team, const float *u, const float *x, const float *bias,
                    float *y, int store, cnv_wino_done_fn done, void *arg, float *scratch)
{
    wino_job j = { .g = g, .u = u, .x = x, .bias = bias, .y = y, .store = store, .done = done, .arg = arg,
                   .v = scratch, .m = scratch + P36 * g->in * g->block };
    for (int64_t t0 = 0; t0 < g->tiles; t0 += g->block) {
        j.t0 = t0;
        j.t1 = g->tiles - t0 < g->block ? g->tiles : t0 + g->block;
        cnv_team_run(team, g->in, input_part, &j);
        cnv_team_run(team, P36, gemm_part, &j);
        cnv_team_run(team, g->out, output_part, &j);
    }
}
