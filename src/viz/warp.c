/* Random scale, rotation and shift of an image by bilinear sampling, and
 * its exact adjoint (lucid.h): the transformation robustness of the Lucid
 * recipe, differentiable so that the step reaches the parameters. */
#include <math.h>

#include "viz/lucid.h"

#define PI 3.14159265358979323846

cnv_warp cnv_warp_random(cnv_rng *rng, float smin, float smax, float rotate, float shift)
{
    cnv_warp t;
    t.scale = smin + (smax - smin) * cnv_rng_uniform(rng);
    t.angle = (float)((2.0 * cnv_rng_uniform(rng) - 1.0) * rotate * PI / 180.0);
    t.dy = shift * (2.0f * cnv_rng_uniform(rng) - 1.0f);
    t.dx = shift * (2.0f * cnv_rng_uniform(rng) - 1.0f);
    return t;
}

/* Where output pixel (y, x) samples: its top-left tap (y0, x0) and the
 * fractions (fy, fx) towards the next row and column. */
typedef struct tap {
    int y0, x0;
    float fy, fx;
} tap;

typedef struct geometry {
    double cy, cx, a, b; /* center; R(-angle) / scale = [a b; -b a] */
    double dy, dx;
} geometry;

static geometry geometry_of(const cnv_warp *t, int h, int w)
{
    double s = t->scale > 0.0f ? t->scale : 1.0;
    return (geometry){ .cy = (h - 1) / 2.0, .cx = (w - 1) / 2.0, .a = cos(t->angle) / s,
                       .b = sin(t->angle) / s, .dy = t->dy, .dx = t->dx };
}

static tap tap_at(const geometry *g, int y, int x)
{
    double ry = y - g->cy - g->dy, rx = x - g->cx - g->dx;
    double qy = g->a * ry + g->b * rx + g->cy, qx = -g->b * ry + g->a * rx + g->cx;
    /* far outside: every tap reads fill (and the int conversion stays
     * defined) */
    if (!(qy > -2.0 && qy < 1e7 && qx > -2.0 && qx < 1e7))
        return (tap){ -2, -2, 0.0f, 0.0f };
    double fy = floor(qy), fx = floor(qx);
    return (tap){ (int)fy, (int)fx, (float)(qy - fy), (float)(qx - fx) };
}

void cnv_warp_forward(const cnv_warp *t, const float *in, int c, int h, int w, const float *fill,
                      float *out)
{
    geometry g = geometry_of(t, h, w);
    size_t plane = (size_t)h * w;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            tap p = tap_at(&g, y, x);
            float wt[4] = { (1 - p.fy) * (1 - p.fx), (1 - p.fy) * p.fx, p.fy * (1 - p.fx), p.fy * p.fx };
            for (int k = 0; k < c; k++) {
                const float *src = in + k * plane;
                float v = 0.0f;
                for (int j = 0; j < 4; j++) {
                    int yy = p.y0 + j / 2, xx = p.x0 + j % 2;
                    int inside = yy >= 0 && yy < h && xx >= 0 && xx < w;
                    v += wt[j] * (inside ? src[(size_t)yy * w + xx] : fill[k]);
                }
                out[k * plane + (size_t)y * w + x] = v;
            }
        }
}

void cnv_warp_backward(const cnv_warp *t, const float *dout, int c, int h, int w, float *din)
{
    geometry g = geometry_of(t, h, w);
    size_t plane = (size_t)h * w;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            tap p = tap_at(&g, y, x);
            float wt[4] = { (1 - p.fy) * (1 - p.fx), (1 - p.fy) * p.fx, p.fy * (1 - p.fx), p.fy * p.fx };
            for (int j = 0; j < 4; j++) {
                int yy = p.y0 + j / 2, xx = p.x0 + j % 2;
                if (yy < 0 || yy >= h || xx < 0 || xx >= w)
                    continue;
                for (int k = 0; k < c; k++)
                    din[k * plane + (size_t)yy * w + xx] += wt[j] * dout[k * plane + (size_t)y * w + x];
            }
        }
}
