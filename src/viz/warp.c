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
 * bilinear weights of the taps (y0, x0), (y0, x0+1), (y0+1, x0),
 * (y0+1, x0+1). */
typedef struct tap {
    int y0, x0;
    float wt[4];
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
        return (tap){ -2, -2, { 1.0f, 0.0f, 0.0f, 0.0f } };
    double y0 = floor(qy), x0 = floor(qx);
    float fy = (float)(qy - y0), fx = (float)(qx - x0);
    return (tap){ (int)y0, (int)x0, { (1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx } };
}

void cnv_warp_forward(const cnv_warp *t, const float *in, int c, int h, int w, const float *fill,
                      float *out)
{
    geometry g = geometry_of(t, h, w);
    size_t plane = (size_t)h * w;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            tap p = tap_at(&g, y, x);
            for (int k = 0; k < c; k++) {
                const float *src = in + k * plane;
                float v = 0.0f;
                for (int j = 0; j < 4; j++) {
                    int yy = p.y0 + j / 2, xx = p.x0 + j % 2;
                    int inside = yy >= 0 && yy < h && xx >= 0 && xx < w;
                    v += p.wt[j] * (inside ? src[(size_t)yy * w + xx] : fill[k]);
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
            for (int j = 0; j < 4; j++) {
                int yy = p.y0 + j / 2, xx = p.x0 + j % 2;
                if (yy < 0 || yy >= h || xx < 0 || xx >= w)
                    continue;
                for (int k = 0; k < c; k++)
                    din[k * plane + (size_t)yy * w + xx] += p.wt[j] * dout[k * plane + (size_t)y * w + x];
            }
        }
}
