/* Internal helpers shared by the image files. */
#ifndef CNV_IMAGE_H
#define CNV_IMAGE_H

#include "core/base.h"
#include "core/file.h"

/* Bytes of a w x h x c image after checking w, h > 0, c in {1,3,4} and
 * that the total fits an int (stb's sizes and strides are ints). */
int cnv_image_bytes(int w, int h, int c, size_t *bytes);
/* A usable input image: non-NULL data and a size within cnv_image_bytes;
 * what names the caller in the message. */
cnv_status cnv_image_check(const cnv_image *img, const char *what, char *buf, size_t len);
/* out = a new w x h x c image (uninitialized pixels). */
cnv_status cnv_image_alloc(int w, int h, int c, cnv_image *out, char *buf, size_t len);
/* The w x h window at (left, top) of `in` resized to width x height, made
 * without the rest: the same pixels as cnv_image_resize then a crop, at
 * the cost of the window (a 2x16384 image cropped to 224x224 no longer
 * makes 256x2097152 pixels first). */
cnv_status cnv_image_resize_crop(const cnv_image *in, int width, int height, int left, int top, int w, int h,
                                 cnv_image *out, char *buf, size_t len);
/* An h x w float plane with h, w > 0 whose bytes fit an int (stb's
 * strides are ints). */
int cnv_plane_ok(int h, int w);
/* Empties an errbuf (NULL or len 0: nothing). */
void cnv_errbuf_clear(char *buf, size_t len);
/* v in [0, 255] rounded to a byte; NaN and below 0 give 0, 255 and above
 * 255. */
unsigned char cnv_to_byte(double v);

#endif
