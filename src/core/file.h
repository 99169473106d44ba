/* Files: a whole file read into memory with a size cap, and files written
 * beside their destination, then renamed into place (never half-written). */
#ifndef CNV_FILE_H
#define CNV_FILE_H

#include <stdio.h>

#include "core/base.h"

/* Reads a regular file or a pipe into a new buffer (cnv_free it), followed
 * by a NUL at data[size] so that a text can be read as a string.
 * More than max bytes is CNV_ERR_UNSUPPORTED; a directory or a device is
 * CNV_ERR_IO (a device such as /dev/zero would be read up to the cap
 * first). Messages name the path. */
cnv_status cnv_read_file(const char *path, size_t max, void **data, size_t *size, cnv_err *e);

/* A file being written: a new file next to `path` (same directory, so
 * rename() is atomic) that becomes `path` on commit. */
typedef struct cnv_tmpfile {
    FILE *f;
    char *tmp_path; /* owned */
    char *path;     /* owned copy of the destination */
    int slot;       /* in the table cnv_remove_temp_files reads; -1: none */
} cnv_tmpfile;

/* Whether path can be written as a file: a regular file the user may
 * write, or a new name in a writable directory. A directory, FIFO, device
 * or read-only file is refused (CNV_ERR_IO, naming it): the writers
 * replace their target by a rename, which would turn a device node into a
 * regular file. */
cnv_status cnv_output_check(const char *path, cnv_err *e);

/* Creates the temporary after cnv_output_check: "<dir>/.cnv<pid>-<n>.tmp"
 * beside path, with the permissions of the file it replaces, or the usual
 * 0666 & ~umask. */
cnv_status cnv_tmpfile_open(cnv_tmpfile *t, const char *path, cnv_err *e);
/* Flushes, syncs, closes and renames into place; on any failure the
 * temporary is removed. Frees t's strings either way. */
cnv_status cnv_tmpfile_commit(cnv_tmpfile *t, cnv_err *e);
/* Closes and removes the temporary (a no-op on a zeroed t). */
void cnv_tmpfile_abort(cnv_tmpfile *t);

#endif
