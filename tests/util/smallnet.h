/* The small branching network the engine tests share (test_graph,
 * test_noalloc): conv -> relu -> maxpool -> {1x1 conv, 3x3 conv} each +
 * relu -> concat -> flatten (or global average pool) -> gemm. */
#ifndef CNV_SMALLNET_H
#define CNV_SMALLNET_H

#include <stdint.h>

#include "cnnviz.h"

/* Tensor names:
 *   x       input, N x 2 x H x W (N declared -1; H, W 8 x 8, or -1 with gap)
 *   c1, r1  conv 3x3 pad 1 to 4 channels, relu          N x 4 x H x W
 *   p1      maxpool 2x2 stride 2                        N x 4 x H/2 x W/2
 *   ca, ra  branch a: conv 1x1 to 3 channels, relu      N x 3 x H/2 x W/2
 *   cb, rb  branch b: conv 3x3 pad 1 to 5 channels, relu N x 5 x H/2 x W/2
 *   cat     concat of ra, rb on channels                N x 8 x H/2 x W/2
 *   flat    flatten (N x 128), or with gap: gap (N x 8 x 1 x 1) then flat
 *   logits  gemm to SN_CLASSES scores                   N x 10
 *   side    relu(fc.b): depends on no input, only on a parameter
 * Parameters: w1 b1 wa ba wb bb fc.w fc.b, uniform from seed. */
#define SN_CLASSES 10

/* Builds the network; fails the test on any error. gap: global average
 * pooling before flatten, so that any H, W (multiples of 2) plan. */
cnv_model *sn_build(int gap, uint64_t seed);

#endif
