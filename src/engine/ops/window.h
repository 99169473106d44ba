/* Sliding-window geometry shared by Conv and the pools: the auto_pad
 * attribute and the output size along one spatial axis. */
#ifndef CNV_WINDOW_H
#define CNV_WINDOW_H

#include "engine/op.h"

/* ONNX auto_pad: NOTSET uses the pads attribute; SAME_* pad so that the
 * output has ceil(in / stride) positions, the odd pad at the end (UPPER)
 * or at the beginning (LOWER); VALID does not pad. */
enum { CNV_PAD_NOTSET, CNV_PAD_SAME_UPPER, CNV_PAD_SAME_LOWER, CNV_PAD_VALID };

/* Reads the node's auto_pad attribute ("" counts as NOTSET). */
cnv_status cnv_auto_pad_parse(const cnv_node *n, int *mode, cnv_err *e);

/* One spatial axis: an input of `in`, a kernel of k taps d apart (its span
 * is (k - 1) * d + 1) at stride s. With NOTSET, *pb and *pe hold the pads
 * on entry; every mode leaves the pads it used there and the number of
 * window positions in *out. ceil_mode (NOTSET only) rounds the count up,
 * but drops a last window that would start in the end padding, as ONNX
 * and PyTorch do. Returns 0 when the span does not fit the padded input.
 * Sizes up to 2^31 cannot overflow. */
int cnv_window_axis(int mode, int64_t in, int64_t k, int64_t s, int64_t d, int ceil_mode, int64_t *pb,
                    int64_t *pe, int64_t *out);

#endif
