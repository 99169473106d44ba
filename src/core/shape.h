/* Helpers on cnv_shape (the public cnv_shape_count is in shape.c too). */
#ifndef CNV_SHAPE_H
#define CNV_SHAPE_H

#include <stddef.h>

#include "cnnviz.h"

/* Whether s is a shape the engine can hold: rank 0..CNV_MAX_DIMS, no
 * negative dim, and the product of its dims with zeros taken as 1 at most
 * CNV_MAX_ELEMS, so that every stride and partial product of an empty
 * tensor fits too (0 x 2^63 x 2^63 has no elements but overflows a
 * stride). */
int cnv_shape_ok(const cnv_shape *s);

/* Sets *s to a 4-D shape. */
void cnv_shape4(cnv_shape *s, int64_t n, int64_t c, int64_t h, int64_t w);
int cnv_shape_equal(const cnv_shape *a, const cnv_shape *b);
/* "1x3x224x224" (or "scalar") into buf; returns buf. */
const char *cnv_shape_str(const cnv_shape *s, char *buf, size_t len);

#endif
