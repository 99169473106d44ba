/* What the saliency methods share (saliency.c): the target a map explains
 * (a class score, a channel's mean or a unit of a 4-D layer), baselines,
 * the CAM layer, and bilinear upsampling. The methods live by family:
 * gradients along paths (attribution.c), class activation maps (cam.c),
 * perturbations and the deletion/insertion metrics (perturb.c). */
#ifndef CNV_VIZ_SALIENCY_H
#define CNV_VIZ_SALIENCY_H

#include "viz/viz.h"

/* The explained quantity, resolved once per call. */
typedef struct sal_target {
    int t;        /* its tensor */
    int layer;    /* 1: a channel or unit of a 4-D layer; 0: a class score */
    int index;    /* the class or channel */
    int y, x;     /* a layer's unit, or -1 for the channel's mean */
    int K;        /* classes per item (class), channels (layer) */
    int lh, lw;   /* a layer's planned height and width */
    size_t per;   /* values per batch item */
    float *prob;  /* K floats of scratch for the softmax */
} sal_target;

/* One call's state: the visualization's context, the checked parameters,
 * the target and what the image scored. */
typedef struct sal_ctx {
    cnv_viz v;
    cnv_saliency_params p;
    sal_target tg;
    const float *image;   /* c x h x w, borrowed */
    float score, prob;    /* the target on the image */
    float baseline_score; /* the path methods' S at the path's start */
    int passes;           /* forward passes run */
} sal_ctx;

/* Checks p, resolves the target and scores the image (planned at batch
 * 1); sal_end frees what it took and restores the ReLU mode. */
cnv_status sal_begin(sal_ctx *c, cnv_session *s, const float *image, size_t count, int h, int w,
                     const cnv_saliency_params *p, cnv_saliency_info *info);
void sal_end(sal_ctx *c, cnv_saliency_info *info);
/* Plans the session for n images (the model's fixed batch wins). */
cnv_status sal_plan(sal_ctx *c, int n);
/* The batch the session is planned for. */
int sal_batch(const sal_ctx *c);
/* Forward up to the target for the planned batch; values[i] (may be NULL)
 * receives item i's target value for i < used; probs likewise (class
 * targets: the softmax probability; layer targets: the value). Fails on a
 * non-finite score. Counts a pass. */
cnv_status sal_forward(sal_ctx *c, int used, float *values, float *probs);
/* sal_forward's reading of the values, after a forward the caller ran. */
cnv_status sal_read(sal_ctx *c, int used, float *values, float *probs);
/* The backward seed (planned batch x per floats) for items 0..used-1, zero
 * for the rest. */
void sal_seed(const sal_ctx *c, int batch, int used, float *seed);
/* Backward from the target for items 0..used-1 after sal_forward; *g is
 * the input gradient (batch x item). seed holds batch x per floats. */
cnv_status sal_backward(sal_ctx *c, int batch, int used, float *seed, const float **g);
/* Reports a pass to p.progress; CNV_ERR_CANCELLED when it says stop. */
cnv_status sal_progress(sal_ctx *c, int done, int total, float value);

/* The baseline b (c x h x w) for baseline kind `kind` (AUTO resolved by
 * the caller). */
cnv_status sal_baseline(const sal_ctx *c, cnv_baseline kind, float *b);

/* Bilinear upsampling of a u x v plane to h x w, half-pixel centers,
 * edges clamped (PyTorch's align_corners=False). */
void sal_bilinear(const float *in, int u, int v, float *out, int h, int w);

/* The CAM layer (p.layer or the default) after a forward at batch 1. */
cnv_status sal_cam_layer(sal_ctx *c, int *t);

/* The families. Each fills map (h x w) or, for the gradient methods, the
 * attribution (c x h x w, before the channel reduction). */
cnv_status sal_gradient_attribution(sal_ctx *c, float *attr);
cnv_status sal_cam(sal_ctx *c, float *map, cnv_saliency_info *info);
cnv_status sal_occlusion(sal_ctx *c, float *map);
cnv_status sal_rise(sal_ctx *c, float *map);

/* 1 for the methods sal_gradient_attribution computes. */
int sal_is_gradient(cnv_saliency_method m);
/* 1 for the methods whose map keeps the attribution's sign. */
int sal_is_signed(cnv_saliency_method m);

#endif
