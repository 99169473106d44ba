/* Internal helpers shared by the image files (image.c, gif.c, font.c). */
#ifndef CNV_IMAGE_H
#define CNV_IMAGE_H

#include "core/base.h"
#include "core/file.h"

/* Bytes of a w x h x c image after checking w, h > 0, c in {1,3,4} and
 * that the total fits an int (stb's sizes and strides are ints). */
int cnv_image_bytes(int w, int h, int c, size_t *bytes);

#endif
