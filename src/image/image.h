/* Internal helpers shared by the image files (image.c, image_gif.c,
 * font.c): errbuf-style messages and the write-beside-then-rename files. */
#ifndef CNV_IMAGE_H
#define CNV_IMAGE_H

#include <stdio.h>

#include "core/base.h"

/* Formats a message into buf (NULL or len 0: nothing) and returns st. */
cnv_status cnv_errbuf_fail(char *buf, size_t len, cnv_status st,
                           const char *fmt, ...) CNV_PRINTF(4, 5);

/* Bytes of a w x h x c image after checking w, h > 0, c in {1,3,4} and
 * that the total fits an int (stb's sizes and strides are ints). */
int cnv_image_bytes(int w, int h, int c, size_t *bytes);

/* A file being written: a new file next to `path` (same directory, so
 * rename() is atomic) that becomes `path` on commit. */
typedef struct cnv_tmpfile {
    FILE *f;
    char *tmp_path;   /* owned */
    char *path;       /* owned copy of the destination */
} cnv_tmpfile;

cnv_status cnv_tmpfile_open(cnv_tmpfile *t, const char *path, char *buf,
                            size_t len);
/* Flushes, closes and renames into place; on any failure the temporary is
 * removed. Frees t's strings either way. */
cnv_status cnv_tmpfile_commit(cnv_tmpfile *t, char *buf, size_t len);
/* Closes and removes the temporary (a no-op on a zeroed t). */
void cnv_tmpfile_abort(cnv_tmpfile *t);

#endif
