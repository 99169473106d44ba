/* Helpers on cnv_shape (the public cnv_shape_count is in shape.c too). */
#ifndef CNV_SHAPE_H
#define CNV_SHAPE_H

#include <stddef.h>

#include "cnnviz.h"

/* Sets *s to a 4-D shape. */
void cnv_shape4(cnv_shape *s, int64_t n, int64_t c, int64_t h, int64_t w);
int cnv_shape_equal(const cnv_shape *a, const cnv_shape *b);
/* "1x3x224x224" (or "scalar") into buf; returns buf. */
const char *cnv_shape_str(const cnv_shape *s, char *buf, size_t len);

#endif
